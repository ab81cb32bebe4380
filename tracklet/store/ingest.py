"""Ingesting record logs into the store, incrementally, by file offset.

``Indexer.index()`` walks the data root's runs; for each it reads the record log from the offset
stored last time to the end of its last complete frame, folds the new records into the run's row
(identity, state, config, summary, keys, metadata), appends the new history points to each
series' blocks and the new console lines and system metric windows (``run_data.py``) to theirs,
``INDEX_CHUNK_BYTES`` of log per transaction, so a reader sees a run either before or after a
frame, never half of it, and memory stays bounded however long the log. Only one process
indexes a data root at a time (an exclusive lock file).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import logging
import math
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import sqlalchemy as sa

from tracklet.core import identity
from tracklet.core.decode import RecordDecoder
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import MAGIC, writer_alive
from tracklet.core.summary_fold import SummaryFold
from tracklet.core.values import Histogram, from_value_message
from tracklet.proto import records_pb2 as pb
from tracklet.store import blocks as B
from tracklet.store.lineage import (EDGE_KINDS, TableNumbers, artifact_edges, edge_of, edge_rows, new_run_numbers,
                                    insert_edges, table_edge, write_edges)
from tracklet.store.media import MEDIA_KINDS, media, media_rows, write_media
from tracklet.store.spans import SPAN_KINDS, log_span_rows, spans, write_spans
from tracklet.store.sort_values import sort_values
from tracklet.store.logsource import LocalLogs, LogSource, heartbeat_liveness  # noqa: F401  (imported from here too)
from tracklet.store.run_data import (RUN_DATA_KINDS, RunDataFold, alert_rows, console_rows, last_system_step,
                                     write_alerts, write_console)
from tracklet.store.tail_cache import RunTails, SeriesTail, TailCache
from tracklet.store.schema import alerts, blocks, console_lines, projects, run_parts, runs, series
from tracklet.store.text import column_length, fit, store_json, stored_key
from tracklet.errors import IndexerBusy  # noqa: F401  (defined there; imported from here too)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TIMESTAMP_KEY = "_timestamp"


def is_timestamp_key(key: str) -> bool:
    """``_timestamp`` or a shared run's part's ``_timestamp/l:<label>`` (its rows' times)."""
    return key == TIMESTAMP_KEY or key.startswith(TIMESTAMP_KEY + "/l:")


LOCK_FILE = "store.lock"
LOCK_POLL = 0.05  # seconds between tries while waiting for another process's indexing lock

log = logging.getLogger("tracklet.store")
# Plain text columns of the runs table with a length (name, group, job type, host): longer texts
# are cut to fit (the record log keeps them whole).
_SIZED_COLUMNS = {column.name: length for column in runs.columns
                  if (length := column_length(column)) and column.name != "run_id"}
# Log bytes folded per transaction. Folding costs up to ~30 bytes of memory per byte of log (a
# packed bool becomes a float64 value, an int64 step and order), so this bounds an indexing job.
INDEX_CHUNK_BYTES = 8 << 20
# Runs whose new records one transaction of ``Indexer.index()`` folds (at most INDEX_CHUNK_BYTES
# of log in all): a commit per run was most of the time spent indexing a sweep of small runs.
INDEX_GROUP_RUNS = 256
# One run's row, built once (building a statement per run costs more than running it).
_RUN_ROW = sa.select(runs).where(runs.c.project_id == sa.bindparam("project_id"),
                                 runs.c.run_id == sa.bindparam("run_id"))
# Advisory locks on runs (PostgreSQL), taken one after another in the order of the array given.
_LOCK_RUNS = sa.text("SELECT pg_advisory_xact_lock(k.key) FROM unnest(CAST(:keys AS bigint[])) AS k(key)")
# A group's new runs and their series: each inserted in one executemany without RETURNING (which
# SQLite runs a row at a time when the ids must follow the rows' order), their ids read back after.
_INSERT_RUNS = runs.insert()
_INSERT_SERIES = series.insert()
_NEW_RUN_IDS = sa.select(runs.c.id, runs.c.run_id).where(runs.c.project_id == sa.bindparam("project_id"),
                                                          runs.c.run_id.in_(sa.bindparam("run_ids", expanding=True)))
_NEW_SERIES_IDS = sa.select(series.c.id, series.c.run_pk, series.c.kind, series.c.key).where(
    series.c.run_pk.in_(sa.bindparam("run_pks", expanding=True)))
_IDS_PER_QUERY = 500
# A run's row updated, and some of its series of one kind read (a run indexed on its own: a
# server's every append), built once.
_UPDATE_RUN = runs.update().where(runs.c.id == sa.bindparam("run_pk"))
_PART_ROW = sa.select(run_parts).where(run_parts.c.run_pk == sa.bindparam("run_pk"),
                                       run_parts.c.label == sa.bindparam("label"))
# A part's fields kept in its ``run_parts`` row (store migration 0016), not in ``metadata["parts"]``.
_PART_ROW_FIELDS = ("offset", "last_step", "system_ms")
_RUN_SERIES = sa.select(series).where(series.c.run_pk == sa.bindparam("run_pk"), series.c.kind == sa.bindparam("kind"),
                                      series.c.key.in_(sa.bindparam("keys", expanding=True)))
# A new run's row before its records say otherwise (its name: the run id).
_NEW_RUN_DEFAULTS: dict[str, Any] = dict(tags=[], group_name="", job_type="", notes="", host="", state="running",
                                         deleted=False)
# Columns a new run's row may leave out (nullable, no default): a group's rows are given them all,
# so one executemany takes every row.
_OPTIONAL_RUN_COLUMNS = ("created_at", "updated_at", "exit_code")


# What ``index(rebuild=True)`` empties and re-derives from the record logs, children first. The
# store knows no other tables but ``projects`` (kept: see ``drop_derived``); a tracking server's
# own tables are not the store's (tracklet/server/schema.py) and a rebuild never touches them.
# ``spans`` is derived only where a run's log holds them (``run_pk`` set): spans received over
# OTLP have no record log and are kept (``drop_derived``).
# run_sort_values before runs: emptied in one statement, not a cascade per run.
DERIVED_TABLES = (blocks, series, console_lines, alerts, artifact_edges, media, spans, sort_values, run_parts, runs)


def json_safe(value: Any) -> Any:
    """JSON for the store: NaN and +-inf become null (PostgreSQL's JSONB refuses them; the record
    log keeps the real values), histograms become dicts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, Histogram):
        return json_safe(value.to_dict())
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclasses.dataclass
class IndexReport:
    """What one ``index()`` pass did. ``failed``: ``"project/run_id: reason"`` for each run that
    could not be indexed (its transaction rolled back; the other runs were indexed, and the run is
    tried again next pass). ``busy``: another process held the data root's indexing lock
    throughout, so this pass indexed nothing (``Store.index``; that process is indexing)."""

    runs_seen: int = 0
    runs_updated: int = 0
    points: int = 0
    bytes_read: int = 0
    # "project/run_id: what was skipped" for each run whose new bytes held damage or invalid records
    damaged: list[str] = dataclasses.field(default_factory=list)
    # "project/run_id: error" for each run that could not be indexed (the others were)
    failed: list[str] = dataclasses.field(default_factory=list)
    busy: bool = False


#: A pass that indexed at least this many runs (a first index of a data root, an import) ends with
#: ``analyze_after_import`` on PostgreSQL, at most once per ``ANALYZE_EVERY`` seconds per engine.
ANALYZE_AFTER_RUNS = 1000
ANALYZE_EVERY = 600.0
# The tables whose planner statistics a listing's plans rest on (``run_sort_values``' extended
# statistics, store migration 0017, are filled by its ANALYZE only).
_ANALYZED = ("runs", "run_sort_values")
_analyzed_at: weakref.WeakKeyDictionary[sa.Engine, float] = weakref.WeakKeyDictionary()


def analyze_after_import(engine: sa.Engine) -> bool:
    """PostgreSQL: gather the planner statistics of the tables a listing reads, after a pass that
    indexed many runs. Autovacuum analyzes a table once 10% of it changed, but only at its next
    round (a minute by default, never where it is off), and until then a freshly indexed project's
    pages are planned from no statistics or stale ones: a key's part misestimated, a page read as
    the whole part joined to every run (docs/store.md). ANALYZE reads a sample (bounded time) under
    a lock that blocks neither reads nor writes; SKIP_LOCKED gives up at once where another ANALYZE
    or VACUUM (autovacuum's) holds the table. At most once per ``ANALYZE_EVERY`` seconds per engine
    (a server's indexer passes, or the dashboard's, each a new ``Indexer``). False (nothing done) on
    SQLite, whose planner doesn't need it here, within that time, or where it failed: the next
    autovacuum round does it."""
    if engine.dialect.name != "postgresql":
        return False
    last = _analyzed_at.get(engine)
    if last is not None and time.monotonic() - last < ANALYZE_EVERY:  # a server whose passes each
        return False  # update that many live runs: autovacuum's rounds follow those changes
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"ANALYZE (SKIP_LOCKED) {', '.join(_ANALYZED)}")
    except sa.exc.DBAPIError:  # a statistics pass is never worth failing the index pass for
        return False
    _analyzed_at[engine] = time.monotonic()
    return True


def failure_reason(error: BaseException) -> str:
    """One line saying why indexing a run failed: the database's own message for a database
    error (SQLAlchemy's adds the whole statement and its parameters), else the exception."""
    cause = getattr(error, "orig", None) if isinstance(error, sa.exc.DBAPIError) else None
    shown = cause if cause is not None else error
    text = " ".join(str(shown).split())
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(shown).__name__}: {text}" if text else type(shown).__name__


class _Points:
    """New points of one key collected during an ingest pass, with the order they were logged in
    (batch number, row in the batch): a batch stores a key once per key set, so rows with and
    without an eval metric arrive as two groups, not in row order."""

    __slots__ = ("steps", "values", "order", "logged")

    def __init__(self) -> None:
        self.steps: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.order: list[np.ndarray] = []
        self.logged: list[B.Logged | None] = []  # None: logged as floats

    def add(self, steps: np.ndarray, values: np.ndarray, order: np.ndarray, logged: B.Logged | None = None) -> None:
        self.steps.append(steps)
        self.values.append(values)
        self.order.append(order)
        self.logged.append(logged)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) in the order logged, the last value of each step."""
        steps, values, _ = self.points()
        return steps, values

    def points(self) -> tuple[np.ndarray, np.ndarray, B.Logged | None]:
        """``arrays()`` and how each point was logged (None: every one as a float)."""
        steps, values, logged = B.join_points(list(zip(self.steps, self.values, self.logged)))
        order = np.concatenate(self.order)
        if len(order) > 1 and np.any(order[1:] < order[:-1]):
            by_row = np.argsort(order, kind="stable")
            steps, values = steps[by_row], values[by_row]
            logged = logged.take(by_row) if logged is not None else None
        # Several values of one key at one step (commit=False rows, a repeated log): keep the last.
        keep = np.append(steps[1:] != steps[:-1], True) if len(steps) else np.ones(0, dtype=bool)
        if keep.all():
            return steps, values, logged
        return steps[keep], values[keep], logged.take(keep) if logged is not None else None


class _RunFold:
    """What the new records of one run change."""

    def __init__(self, row: Any, run: tuple[str, str] = ("", "")) -> None:
        self.run = run  # (project, run_id): names the run tables it logs (``lineage.table_edge``)
        self.fields: dict[str, Any] = {}
        self.config: dict[str, Any] = dict(row.config) if row is not None else {}
        self.summary: dict[str, Any] = dict(row.summary) if row is not None else {}
        self.keys: list[str] = list(row.keys) if row is not None else []
        self.points: dict[str, _Points] = {}
        self.exit: pb.RunExit | None = None
        self.reopened = False
        self.last_time: float | None = None
        self.last_step: int | None = row.last_step if row is not None else None
        self.config_changed = self.summary_changed = self.keys_changed = False
        self.summary_set: set[str] = set()  # keys the new summary records set
        self.summary_removed: set[str] = set()  # keys they removed (and didn't set again after)
        self.config_set: set[str] = set()  # keys the new config records set
        self.batches = 0
        self.data = RunDataFold(row.metadata if row is not None else None)
        self.artifact_edges: list[Any] = []
        self.table_names: dict[str, str] = {}  # key -> its run table's name (lineage.table_edge)
        self.media: list[Any] = []  # MediaLogged messages
        self.spans: list[Any] = []  # Span messages
        # The run's identity (name, tags, group, ...) is its first start's, as one pass over its
        # log takes it: a later session's resumed start, however the log was cut into uploads,
        # changes none of it (a rename is a RunUpdate record). A row made by an upload that held
        # no start (its metadata has no sessions yet) takes the first start that comes.
        self.identified = row is not None and "sessions" in (row.metadata or {})

    def apply(self, record: pb.Record) -> None:
        kind = record.WhichOneof("kind")
        if kind == "history":
            self._history(record.history)
        elif kind == "config":
            for entry in record.config.items:
                self.config[entry.key] = json_safe(from_value_message(entry.value))
                self.config_set.add(entry.key)
            for key in record.config.removed:
                self.config.pop(key, None)
            self.config_changed = True
        elif kind == "summary":
            for entry in record.summary.items:
                self.summary[entry.key] = json_safe(from_value_message(entry.value))
                self.summary_set.add(entry.key)
                self.summary_removed.discard(entry.key)
            for key in record.summary.removed:
                self.summary.pop(key, None)
                self.summary_removed.add(key)  # (a shared run's other writers may hold it: _hand_on_removed)
                self.summary_set.discard(key)
            self.summary_changed = True
        elif kind == "run_start":
            start = record.run_start
            if not start.resumed or not self.identified:
                self.fields.update(
                    name=start.name, tags=list(start.tags), group_name=start.group, job_type=start.job_type,
                    notes=start.notes, host=start.host,
                )
                # (the first start indexed, resumed or not, is the run's start, as the log reader's:
                # a writer resumed onto a log its first process left empty writes a resumed start)
                self.fields["created_at"] = start.start_time
            self.identified = True
            self.exit = None
            self.reopened = True
            self.last_time = start.start_time
            self.data.run_start(start)
        elif kind == "run_update":
            changes = identity.changes_of(record.run_update)
            if "group" in changes:
                changes["group_name"] = changes.pop("group")
            self.fields.update(changes)
        elif kind == "exit":
            self.exit = record.exit
            self.last_time = record.exit.end_time
            self.data.run_exit(record.exit)
        elif kind == "seeds":
            self.data.seeds_set(record.seeds)
        elif kind in RUN_DATA_KINDS:
            self.data.apply(kind, record)
        elif kind in EDGE_KINDS:
            self.artifact_edges.append(edge_of(kind, record))
        elif kind == "table_logged" and self.run[1]:  # a run table's version (W&B's run_table artifact)
            self.artifact_edges.append(table_edge(self.run, record.table_logged, self.table_names))
        elif kind in MEDIA_KINDS:
            self.media.append(record.media)
        elif kind in SPAN_KINDS:
            self.spans.append(record.span)

    def _history(self, batch: pb.HistoryBatch) -> None:
        for definition in batch.new_keys:
            while len(self.keys) <= definition.id:
                self.keys.append("")
            self.keys[definition.id] = stored_key(definition.name)  # as its series' key is stored
            self.keys_changed = True
        if not batch.steps:
            return
        steps = _array(batch.steps, np.int64)
        times = _array(batch.times, np.float64)
        order = np.arange(len(steps), dtype=np.int64) + (self.batches << 32)  # (batch, row) as one number
        self.batches += 1
        self._add(TIMESTAMP_KEY, steps, times, order)
        self.last_step = int(steps[-1])
        self.last_time = float(times[-1])
        for column in batch.columns:
            logged = None
            if column.floats:
                values = _array(column.floats, np.float64)
            elif column.ints:
                exact = _array(column.ints, np.int64)
                values = exact.astype(np.float64)
                logged = B.Logged(np.full(len(exact), B.INT, dtype=np.uint8), exact)
            elif column.bools:
                exact = np.array(column.bools, dtype=np.int64)
                values = exact.astype(np.float64)
                logged = B.Logged(np.full(len(exact), B.BOOL, dtype=np.uint8), exact)
            elif column.big_ints:  # ints outside int64: charted as doubles (the record log keeps them exact)
                values = np.array([_as_double(text) for text in column.big_ints], dtype=np.float64)
            else:
                continue  # strings and histograms stay in the record log (Api.history reads them)
            rows = _array(column.rows, np.int64) if column.rows else None
            if rows is None:
                self._add(self.keys[column.key], steps, values, order, logged)
            else:
                self._add(self.keys[column.key], steps[rows], values, order[rows], logged)

    def _add(self, key: str, steps: np.ndarray, values: np.ndarray, order: np.ndarray,
             logged: B.Logged | None = None) -> None:
        points = self.points.get(key)
        if points is None:
            points = self.points[key] = _Points()
        points.add(steps, values, order, logged)


def _array(values: Any, dtype: Any) -> np.ndarray:
    """A repeated numeric field as an array: ``np.fromiter`` for the few values of a batch a
    training loop's timer flushed (~1 µs against ~2.5 µs for ``np.array``), ``np.array`` above."""
    count = len(values)
    return np.fromiter(values, dtype=dtype, count=count) if count < 32 else np.array(values, dtype=dtype)


class _NewRun:
    """A run first seen by a group transaction: its row and the first chunk's series points,
    console lines and alerts, written with the group's other new runs in a few executemany
    statements at the group's end (``Indexer._write_new_runs``), not a few statements per run."""

    __slots__ = ("row", "series", "console", "alerts", "edges", "media", "spans", "joined")

    def __init__(self, row: dict[str, Any], fold: _RunFold) -> None:
        self.row = row
        # (kind, key) -> (steps, values, logged), in the order ``_write_series`` would insert them
        self.series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, B.Logged | None]] = {
            ("number", key): points.points() for key, points in fold.points.items()}
        for kind, by_name in fold.data.system_series(None).items():  # a new run has no windows stored
            self.series.update(((kind, name), (*points.arrays(), None)) for name, points in by_name.items())
        self.console = fold.data.console
        self.alerts = fold.data.alerts
        self.edges = fold.artifact_edges
        self.media = fold.media
        self.spans = fold.spans
        self.joined = False  # its open blocks written as one row each (``BlockWriter.append``)

    def points(self) -> int:
        """Metric points, as ``_write_series`` counts them (not ``_timestamp``, not system metrics)."""
        return sum(len(steps) for (kind, key), (steps, _, _) in self.series.items()
                   if kind == "number" and key != TIMESTAMP_KEY)


def _as_double(text: str) -> float:
    """A ``Column.big_ints`` entry as a double: +-inf past the double range, NaN if it isn't an int."""
    try:
        number = int(text)
    except ValueError:
        return math.nan
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


class Indexer:
    """The one writer of a store. ``index()`` ingests every run under ``root`` that has new bytes.

    The logs come from ``source`` (``tracklet/store/logsource.py``): by default the files under
    ``root``, where ``liveness(log_file)`` tells a running run from a crashed one when the log has
    no exit record (by default whether a process holds the writer's lock). On PostgreSQL each
    run's transaction holds an advisory lock on the run, so server processes that share a store
    may index the same run at once without ingesting a byte twice."""

    def __init__(self, engine: sa.Engine, root: str | Path,
                 liveness: Callable[[Path], bool | None] = writer_alive, *, source: LogSource | None = None) -> None:
        self.engine = engine
        self.root = Path(root)
        self.source: LogSource = source if source is not None else LocalLogs(self.root, liveness)
        self._project_ids: dict[str, int] = {}  # committed projects' ids, by name
        self._uncommitted: dict[str, int] = {}  # ids the current run's transaction created
        self.damaged: list[str] = []  # what index_run found damaged since the last index() began
        self.chunk_bytes = INDEX_CHUNK_BYTES
        self.group_runs = INDEX_GROUP_RUNS
        self._block_writer: BlockWriter | None = None  # the group transaction's, flushed at its end
        self._pending: list[_NewRun] | None = None  # the group transaction's new runs, written at its end
        self._ended: list[int] = []  # the group's runs that ended, their open blocks joined at its end
        self._new_runs: set[int] = set()  # ids of the runs the current transaction inserted
        self._prefetched: dict[tuple[str, str], Any] = {}  # the group's rows (None: new), read locked
        self._tails = TailCache()  # series tails of the runs indexed one by one (a server's appends)
        # A run's summary folded alongside the ingest pass that read its log from the first byte,
        # with the offset it reached: a run that pass finds crashed takes it, not a second read of
        # the whole log (_summary_from_log). Kept from one chunk to the next of that pass only.
        self._summaries: dict[tuple[str, str], tuple[SummaryFold, int]] = {}
        # Run pk -> its run tables' version numbers as its last chunk left them (lineage.TableNumbers),
        # kept from one chunk of a pass to the next: a chunk reads only the table names it hasn't seen.
        self._table_numbers: dict[int, TableNumbers] = {}
        self._forgotten = False  # _fold_part forgot its run (a part recorded again): _index_parts indexes it anew

    def _locked(self, wait: float, on_wait: Callable[[], None] | None) -> Any:
        """The data root's indexing lock (an open file holding ``flock``), waiting up to ``wait``
        seconds for another process to release it (``on_wait`` is called once if it must wait);
        ``IndexerBusy`` if it is still held then."""
        from tracklet.store.engine import is_read_only

        if is_read_only(self.engine):
            from tracklet.core.readonly import read_only_error

            raise read_only_error(self.root, "indexing writes the store", "what is indexed there can be read as "
                                  "it is; to index what was logged since, run `tracklet index` as a user who can "
                                  "write it")
        if fcntl is None:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_FILE, "a+")
        deadline = time.monotonic() + wait
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise IndexerBusy(f"another process is indexing {self.root}") from None
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(min(LOCK_POLL, max(0.0, deadline - time.monotonic())))

    def run_dirs(self) -> Iterator[RunPaths]:
        """Every run the source has a log of."""
        return self.source.runs()

    def index(self, *, wait: float = 0.0, on_wait: Callable[[], None] | None = None,
              rebuild: bool = False) -> IndexReport:
        """Ingest every run with new bytes, under the data root's lock (waiting up to ``wait``
        seconds for another process to release it, else ``IndexerBusy``). A run that fails is
        reported in ``IndexReport.failed`` and doesn't stop the others. With ``rebuild``, first
        empty the tables derived from the record logs (``DERIVED_TABLES``), so every log is
        indexed from its first byte."""
        lock = self._locked(wait, on_wait)
        try:
            if rebuild:
                self.drop_derived()
            return self.index_runs(self.run_dirs())
        finally:
            if lock is not None:
                lock.close()

    def index_runs(self, runs_to_index: Iterable[RunPaths]) -> IndexReport:
        """Ingest these runs' new records, ``group_runs`` runs per transaction, as ``index()``
        does, without taking the data root's lock (for a caller that holds it, or is the store's
        only writer: a tracking server). A run that fails is reported in ``IndexReport.failed``
        and doesn't stop the others."""
        report = IndexReport()
        self.damaged = report.damaged
        group: list[RunPaths] = []
        self._table_numbers.clear()
        try:
            for paths in runs_to_index:
                report.runs_seen += 1
                group.append(paths)
                if len(group) >= self.group_runs:
                    self._index_group(group, report)
                    self._index_parts(group, report)
                    self._table_numbers.clear()  # kept for one group's pass only
                    group = []
            if group:
                self._index_group(group, report)
                self._index_parts(group, report)
        finally:
            self._table_numbers.clear()
        if report.runs_updated >= ANALYZE_AFTER_RUNS:
            analyze_after_import(self.engine)
        return report

    def index_parts(self, paths: RunPaths, labels: list[str] | None = None) -> IndexReport:
        """``_index_parts`` of one run (of its parts ``labels`` only, when given), without the data
        root's lock (for its only writer: a tracking server, after a part's upload)."""
        report = IndexReport()
        self.damaged = report.damaged
        self._table_numbers.clear()
        try:
            self._index_parts([paths], report, labels)
        finally:
            self._table_numbers.clear()  # kept for this pass only
        return report

    def _index_parts(self, group: list[RunPaths], report: IndexReport, labels: list[str] | None = None) -> None:
        """Ingest the new records of each shared run's parts (its secondary writers' logs,
        ``parts/<label>.tlog``) into the run, by ``core/parts.py``'s rules, after the run's own
        log: its row must exist (a part whose primary hasn't started waits on disk, unless the
        source lists such runs, ``LocalLogs.part_only_runs``: then the first part makes the row,
        ``metadata["no_primary"]``, until the primary's log is indexed into it). Each part's
        offset, last step and system time are its ``run_parts`` row; what readers show of it (state,
        keys, host, config) the run's ``metadata["parts"]``. The source lists a run's parts
        (``LogSource.parts``: files on disk, or a server's segments); a failure is reported like a
        run's and doesn't stop the others."""
        todo = self.parts_to_index(group, heads=True) if labels is None else [(paths, labels) for paths in group]
        for paths, run_labels in todo:
            pending = list(run_labels)
            damaged_before = len(self.damaged)
            try:  # the parts that grew, in as few transactions as their bytes allow: the run's row read and written once each
                while pending:
                    damaged_before = len(self.damaged)
                    with self._transaction() as connection:
                        points, read, pending = self._fold_parts(connection, paths, pending)
                    report.points += points
                    report.bytes_read += read
            except Exception:  # that transaction rolled back: the rest one part at a time, so a failure stays with its part
                del self.damaged[damaged_before:]  # (found again as they are)
                for label in pending:
                    try:
                        left = [label]
                        while left:
                            with self._transaction() as connection:
                                points, read, left = self._fold_parts(connection, paths, left)
                            report.points += points
                            report.bytes_read += read
                    except Exception as error:  # this part's transaction rolled back; the others go on
                        reason = failure_reason(error)
                        log.warning("indexing %s/%s part %s failed: %s", paths.project, paths.run_id, label, reason)
                        report.failed.append(f"{paths.project}/{paths.run_id} part {label}: {reason}")
                    if self._forgotten:
                        break
            if self._forgotten:  # a part was recorded again from scratch: the run is indexed anew
                self._forgotten = False
                self._index_one(paths, report)  # its own log (none: its parts make its row)
                self._index_parts([paths], report, self.source.parts(paths))

    def parts_to_index(self, group: Iterable[RunPaths], *, heads: bool = False) -> list[tuple[RunPaths, list[str]]]:
        """Of the parts on disk of these runs, those an index pass has work for: their rows of
        ``run_parts`` (offset, state) are read for all of them in a few read-only queries, and a
        part is left out when its log is as big as what was indexed of it and it isn't a
        ``running`` part whose writer died meanwhile (``source.alive``). A run the store doesn't
        have yet is left out too: its own first indexing ingests its parts (unless its primary never
        started, ``_part_only``: then its parts make it). So a pass over
        unchanged shared runs costs a ``stat`` per part, not a transaction per part. With ``heads``
        (a full pass, ``index_runs``, which reads each run's own log's head as well: ``_replaced``),
        a part as big as indexed is also one whose log was recorded again from scratch as long as
        the old one (a job run again): its first start (one frame) isn't the one indexed."""
        shared = [(paths, labels) for paths in group if (labels := self.source.parts(paths))]
        if not shared:
            return []
        recorded = self._recorded_parts([paths for paths, _ in shared])
        todo: list[tuple[RunPaths, list[str]]] = []
        for paths, labels in shared:
            known = recorded.get((paths.project, paths.run_id))
            if known is None:
                if self._part_only(paths):  # its primary never started: the first part makes its row
                    todo.append((paths, labels))
                continue
            changed = [label for label in labels if self._part_changed(paths.part_paths(label), known.get(label))]
            if heads and (same := [label for label in labels if label not in changed]):
                changed += self._parts_recorded_again(paths, same, known)
            if changed:
                todo.append((paths, sorted(changed)))
        return todo

    def _parts_recorded_again(self, paths: RunPaths, labels: list[str],
                              known: Mapping[str, tuple[int, str]]) -> list[str]:
        """Of run ``paths``' parts ``labels`` (each as big as indexed), those recorded again from
        scratch (``_part_replaced``): the run's parts' entries read once, a frame per part."""
        if getattr(self.source, "started_at", None) is None:
            return []
        with self.engine.connect() as connection:
            metadata = connection.execute(
                sa.select(runs.c.metadata).select_from(runs.join(projects, projects.c.id == runs.c.project_id))
                .where(projects.c.name == paths.project, runs.c.run_id == paths.run_id)).scalar()
        entries = (metadata or {}).get("parts") or {}
        return [label for label in labels if self._part_replaced(
            paths.part_paths(label), known[label][0], entries.get(label) or {})]

    def _recorded_parts(self, runs_with_parts: list[RunPaths]) -> dict[tuple[str, str], dict[str, tuple[int, str]]]:
        """(offset, state) of each part of these runs that has a ``run_parts`` row, by (project,
        run id) and label: one read-only query per project and 500 runs; a run the store lacks is
        missing, one without rows maps to {}."""
        by_project: dict[str, list[str]] = {}
        for paths in runs_with_parts:
            by_project.setdefault(paths.project, []).append(paths.run_id)
        found: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
        with self.engine.connect() as connection:
            for project, run_ids in by_project.items():
                for start in range(0, len(run_ids), 500):
                    stmt = (sa.select(runs.c.run_id, run_parts.c.label, run_parts.c.log_offset, run_parts.c.state)
                            .select_from(runs.join(projects, projects.c.id == runs.c.project_id)
                                         .outerjoin(run_parts, run_parts.c.run_pk == runs.c.id))
                            .where(projects.c.name == project, runs.c.run_id.in_(run_ids[start : start + 500])))
                    for run_id, label, offset, state in connection.execute(stmt):
                        labels = found.setdefault((project, run_id), {})
                        if label is not None:
                            labels[label] = (int(offset), state)
        return found

    def _part_changed(self, part: RunPaths, recorded: tuple[int, str] | None) -> bool:
        """Whether ``_fold_part`` has work for ``part``, whose ``run_parts`` row has ``recorded``
        (offset, state); one without a row (new, or indexed before store migration 0016) has."""
        if recorded is None:
            return True
        try:
            size = self.source.size(part)
        except OSError:
            return True  # let the fold report it
        if size != recorded[0]:
            return True
        return recorded[1] == "running" and self.source.alive(part) is False

    def _fold_parts(self, connection: sa.Connection, paths: RunPaths, labels: list[str]
                    ) -> tuple[int, int, list[str]]:
        """Ingest the new records of parts ``labels`` of run ``paths`` in this transaction, in order,
        until ``chunk_bytes`` of log were read (each chunk of a part: up to ``chunk_bytes``); returns
        (points added, bytes read, the labels left for the next transaction: the one it stopped in
        first). The run's row is read once and written once (``_SharedRun``): a pass over a run whose
        W writers grew costs what they wrote plus O(W) once, not O(W) per part."""
        project_id = self._project_id(connection, paths.project)
        self._lock_run(connection, paths)
        row = connection.execute(_RUN_ROW, {"project_id": project_id, "run_id": paths.run_id}).first()
        if row is None:  # the run's own log isn't indexed yet: the parts wait for it, unless the
            if not self._part_only(paths):  # primary never started where runs are listed from parts
                return 0, 0, []
            self._write_run(connection, project_id, paths, None, store_json({
                "log_offset": 0, "heartbeat_at": time.time(), "metadata": {"no_primary": True}}))
            row = connection.execute(_RUN_ROW, {"project_id": project_id, "run_id": paths.run_id}).one()
            # (not a run without series for _write_series: this transaction folds several chunks and
            # parts into it, each after the series the ones before it wrote)
            self._new_runs.discard(row.id)
        run = _SharedRun(row, project_id)
        points = read = 0
        left: list[str] = []
        for at, label in enumerate(labels):
            while True:
                added, bytes_read, more = self._fold_part(connection, paths, label, run)
                if self._forgotten:  # the run's row is gone (a part recorded again): _index_parts indexes it anew
                    return points, read, []
                points += added
                read += bytes_read
                if not more or read >= self.chunk_bytes:
                    break
            if read >= self.chunk_bytes:
                left = labels[at + (1 if not more else 0):]
                break
        self._write_shared(connection, run)
        self._tails.take(row.id, None)  # the run's series changed behind what the indexer kept of them
        return points, read, left

    @staticmethod
    def _write_shared(connection: sa.Connection, run: _SharedRun) -> None:
        """Write what folding parts changed of the run's row (``_SharedRun``), in one statement: its
        summary, its config (``core/parts.merged_config``, once), its metadata (what readers show of
        each part) and the state parts set (``_shared_state``), its identity and ``updated_at``."""
        row = run.row
        values = dict(run.values)
        if run.summary_changed:
            values["summary"] = run.summary
        if run.config_changed:  # the run's config by the rule of core/parts.py (merged_config)
            values["config"] = _config_with_parts(dict(row.config or {}), run.parts)
            run.metadata_changed = True
        if run.metadata_changed:
            run.metadata["parts"] = run.parts
            values.update(_shared_state(run.metadata, row))  # where parts set the run's state (core/parts.py)
            values["metadata"] = run.metadata
        if values:
            connection.execute(_UPDATE_RUN, {"run_pk": row.id, **store_json(values)})
            if values.get("state", "running") != "running" and row.state == "running":
                join_open_blocks(connection, row.id)

    def _fold_part(self, connection: sa.Connection, paths: RunPaths, label: str,
                   run: _SharedRun) -> tuple[int, int, bool]:
        """Ingest up to ``chunk_bytes`` of part ``label`` of run ``paths`` into ``run`` (the run's row
        as this transaction has it: ``_write_shared`` writes it); returns (points added, bytes read,
        whether more chunks follow)."""
        from types import SimpleNamespace

        from tracklet.core.parts import PRIMARY, SETS_STATE_KEY, console_text, labelled, part_state_label, system_key

        row = run.row
        known_parts = run.parts
        shown = dict(known_parts.get(label) or {})  # what readers show of the part (metadata["parts"])
        tracked = connection.execute(_PART_ROW, {"run_pk": row.id, "label": label}).first()
        if tracked is None:  # new, or indexed before store migration 0016: these were in its entry then
            offset, last_step, system_ms = (int(shown.get("offset", 0)), shown.get("last_step"),
                                            shown.get("system_ms"))
        else:
            offset, last_step, system_ms = int(tracked.log_offset), tracked.last_step, tracked.system_ms
        info = {name: value for name, value in shown.items() if name not in _PART_ROW_FIELDS}
        part = paths.part_paths(label)
        size = self.source.size(part)
        if size < offset or self._part_replaced(part, offset, info):
            # Recorded again from scratch (its log deleted and the label started again): read from the
            # old offset, the new log's start, config and first rows were lost. As a primary's log
            # recorded again, the run is indexed anew (_index_parts), its parts from their first byte,
            # where this data root holds what its row was made of (its own log, or its parts alone).
            if self._own_log_here(paths) or run.metadata.get("no_primary"):
                forget_run(connection, row.id)
                self._tails.take(row.id, None)
                self._table_numbers.pop(row.id, None)
                self._forgotten = True
                return 0, 0, False
            self.damaged.append(f"{paths.project}/{paths.run_id}: part {label} was recorded again from scratch "
                                f"({size} bytes; {offset} indexed of the log it replaced); `tracklet index "
                                "--rebuild` where the run's own log is indexes it again")
            return 0, 0, False
        if size == offset:
            # (no state yet: an empty log, its writer killed as it created it, or a server's copy
            # whose first write failed: running until its writer is found dead, as the reader has it)
            if info.get("state", "running") == "running" and self.source.alive(part) is False:
                info["state"] = "crashed"  # its summary as the whole part implies it (its writer died:
                # its last written summary may be older than its history)
                run.add_summary(run.part_summary_names(label, info, self._summary_from_log(part)))
            if tracked is None or tracked.state != (info.get("state") or "running"):  # (or indexed before 0016)
                self._save_part(connection, row.id, label, tracked is not None, offset,
                                info.get("state") or "running", last_step, system_ms)
            if info != shown:
                run.set_part(label, info)
            return 0, 0, False
        result = self.source.read_from(part, offset, self.chunk_bytes)
        part_config = _part_config(row.config or {}, info)
        fold = _RunFold(SimpleNamespace(config=dict(part_config), summary={}, keys=list(info.get("keys") or []),
                                        last_step=None, metadata=None), (paths.project, paths.run_id))
        fold.identified = _part_started(shown)  # a later session's resumed start changes none of it
        decoder = RecordDecoder(key_id for key_id, name in enumerate(fold.keys) if name)
        decoder.fold(result.payloads, fold.apply)
        self._note_damage(part, result, decoder)
        more = offset < result.end_offset < size and offset + self.chunk_bytes < size
        exit = fold.exit
        state = part_state_label(exit, None if exit is not None or more else self.source.alive(part))
        if exit is None and not fold.reopened and info.get("state") in ("finished", "failed"):
            state = info["state"]
        joined = state != "running"
        # Names by the ownership rule (core/parts.py): a key this part now owns that another part's
        # series held until now moves to that part's labelled name first.
        # Its summary entry by core/parts.summary_owner: a history key outranks a summary-only one.
        for key in sorted(run.new_keys(label, fold.keys)):
            held = run.owner(key)
            holder = run.summary_holder_of(key)
            if holder == PRIMARY and key not in run.primary:
                run.hold_for_primary(key)  # the primary set it in its summary: its entry stays the primary's
            if held is not None and held != PRIMARY and label < held:
                primary_entry = key in run.primary_held
                run.summary_changed |= key in run.summary and not primary_entry
                self._rename_key(connection, row.id, None if primary_entry else run.summary, key,
                                 labelled(held, key))
            if holder is not None and holder not in (PRIMARY, label) and key not in run.first_label:
                run.release_summary(holder, key)  # a part that only set it in its summary
            elif holder == label:
                run.release_summary_only(label, key, info)
            run.add_keys(label, [key])
            if run.summary_holder_of(key) == label and holder != label:
                run.take_summary(label, key)
        # Its rows' times: series "_timestamp/l:<label>" beside the primary's "_timestamp" (a row of
        # the run at a step is every writer's row there, its time the latest of theirs, as
        # core/parts.MergedStepIndex has it: api/remote.RemoteRun.history merges them).
        own_points = {run.part_key(label, key): found for key, found in fold.points.items() if key != TIMESTAMP_KEY}
        if TIMESTAMP_KEY in fold.points:
            own_points[labelled(label, TIMESTAMP_KEY)] = fold.points[TIMESTAMP_KEY]
        points = self._write_series(connection, row.id, "number", own_points, None, joined)
        info["keys"] = fold.keys
        for key in sorted({stored_key(key) for key in fold.summary_removed}):  # (by core/parts.summary_claim)
            run.remove_summary(label, key, info)
        if state == "crashed":  # its summary as its tracker had it at the kill (as a crashed run's)
            run.add_summary(run.part_summary_names(label, info, self._summary_from_log(part)))
        elif fold.summary_changed:
            run.add_summary(run.part_summary_names(label, info, fold.summary))
        if fold.config_changed:  # the run's config: merged once, as the transaction ends (_write_shared)
            own = dict(fold.config)
            if own.pop(SETS_STATE_KEY, None):  # update_finish_state: this part sets the run's state too
                info["sets_state"] = True
            info["config"] = own
            run.config_changed = True
        if fold.data.console:
            write_console(connection, row.id, [(when, stream, console_text(label, text))
                                               for when, stream, text in fold.data.console])
        if fold.data.alerts:
            write_alerts(connection, row.id, [(when, level, console_text(label, title), text)
                                              for when, level, title, text in fold.data.alerts])
        if fold.media:  # under their keys: items of several writers under one key list together
            write_media(connection, row.id, fold.media)
        if fold.artifact_edges:
            write_edges(connection, row.id, fold.artifact_edges, self._table_numbers)
        if fold.spans:  # its traces are the run's (trace and span ids are random: no two writers share one)
            write_spans(connection, log_span_rows(run.project_id, row.id, paths.run_id, fold.spans))
        if fold.data.window_times:
            last_ms = system_ms
            for kind, by_name in fold.data.system_series(int(last_ms) if last_ms is not None else None).items():
                renamed = {stored_key(system_key(label, name)): found for name, found in by_name.items()}
                self._write_series(connection, row.id, kind, renamed, None, joined)
                system_ms = max([int(found.steps[-1]) for found in renamed.values() if len(found.steps)]
                                + ([int(last_ms)] if last_ms is not None else []))
        if fold.last_time is not None and (run.updated_at is None or fold.last_time > run.updated_at):
            run.updated_at = run.values["updated_at"] = fold.last_time  # the latest any writer recorded
        if fold.fields and (run.metadata.get("no_primary") or int(row.log_offset or 0) <= len(MAGIC)):
            # a run whose primary never started, or recorded nothing (killed as it created its log:
            # no start indexed of it), is named, tagged, ... as its first part (by label) is
            run.values.update(run.first_part_identity(paths, label, _part_started(shown), fold.fields))
        if fold.fields.get("created_at") is not None and "start_time" not in info:
            info["start_time"] = fold.fields["created_at"]  # its first start: tells a log recorded again apart
        if fold.fields.get("host"):
            info["host"] = fold.fields["host"]
        if fold.data.metadata.get("pid"):
            info["pid"] = fold.data.metadata["pid"]
        info.update(state=state, exit_code=exit.exit_code if exit is not None else info.get("exit_code")
                    if state != "running" else None)
        # The part's offset, last step and system time: its own row. The run's metadata is written
        # only when what readers show of the part changed (its state, keys, host): not per chunk.
        self._save_part(connection, row.id, label, tracked is not None, result.end_offset, state,
                        fold.last_step if fold.last_step is not None else last_step, system_ms)
        if info != shown:
            run.set_part(label, info)
        return points, result.end_offset - offset, more

    @staticmethod
    def _save_part(connection: sa.Connection, run_pk: int, label: str, exists: bool, offset: int, state: str,
                   last_step: Any, system_ms: Any) -> None:
        """Write part ``label``'s row of ``run_parts`` (one row: what changes with every chunk)."""
        fields = {"log_offset": offset, "state": state, "last_step": None if last_step is None else int(last_step),
                  "system_ms": None if system_ms is None else int(system_ms)}
        if exists:
            connection.execute(run_parts.update().where(run_parts.c.run_pk == run_pk, run_parts.c.label == label)
                               .values(**fields))
        else:
            connection.execute(run_parts.insert().values(run_pk=run_pk, label=label, **fields))

    def _part_only(self, paths: RunPaths) -> bool:
        """Whether run ``paths`` is listed from its parts alone: no ``run.tlog`` (its primary never
        started) where the source lists such runs (``LocalLogs.part_only_runs``)."""
        return bool(getattr(self.source, "part_only_runs", False)) and not paths.log_file.exists()

    def _part_replaced(self, part: RunPaths, offset: int, info: Mapping[str, Any]) -> bool:
        """Whether ``part``'s log is another than the one indexed up to ``offset``: its first start
        (one frame read) isn't the one indexed (``info["start_time"]``; a part indexed before it was
        kept is taken for the same log)."""
        started_at = getattr(self.source, "started_at", None)
        recorded = info.get("start_time")
        if started_at is None or recorded is None or offset <= len(MAGIC):
            return False
        started = started_at(part)
        return started is not None and started != recorded

    def _own_log_here(self, paths: RunPaths) -> bool:
        """Whether run ``paths``' own log (``run.tlog``, maybe empty) is in this data root."""
        return isinstance(self.source, LocalLogs) and paths.log_file.exists()

    def _take_keys_from_parts(self, connection: sa.Connection, row: Any, fold: _RunFold) -> None:
        """The primary logs keys a shared run's part owned until now (core/parts.py): that part's
        series and summary entry move to ``<key>/l:<label>``, the key is the primary's."""
        from tracklet.core.parts import labelled, owner

        parts = {label: {key for key in (info.get("keys") or []) if key}
                 for label, info in (row.metadata or {}).get("parts", {}).items()}
        primary_held = set((row.metadata or {}).get("primary_summary_keys") or [])
        for key in sorted({key for key in fold.keys if key} - set(row.keys or [])):
            held = owner(key, (), parts)
            if held is None:
                continue
            if key in primary_held:  # the key's summary entry is the primary's already: its series alone moves
                self._rename_key(connection, row.id, None, key, labelled(held, key))
                continue
            primary_value = fold.summary.get(key)
            name = labelled(held, key)
            self._rename_key(connection, row.id, fold.summary, key, name)
            fold.summary.pop(stored_key(name), None)
            if key in (row.summary or {}):  # the part's value, as the row had it
                fold.summary[stored_key(name)] = row.summary[key]
            if key in fold.summary_set:  # the primary's own value, set in these records
                fold.summary[key] = primary_value
            fold.summary_changed = True

    @staticmethod
    def _rename_key(connection: sa.Connection, run_pk: int, summary: dict[str, Any] | None, key: str,
                    name: str) -> None:
        """Move the run's history key ``key`` (its series, its summary entry unless ``summary`` is
        None: the entry is the primary's) to ``name``: a writer that owns the key now takes its
        place (the ownership rule, core/parts.py)."""
        connection.execute(series.update().where(series.c.run_pk == run_pk, series.c.kind == "number",
                                                 series.c.key == key).values(key=stored_key(name)))
        if summary is not None and key in summary:
            summary[stored_key(name)] = summary.pop(key)

    def drop_derived(self) -> None:
        """Delete every row of the tables derived from record logs, in one transaction. Projects
        stay (the server's project members refer to them; a project's runs come back from its
        logs); a server's own tables are not the store's and are never touched."""
        with self.engine.begin() as connection:
            for table in DERIVED_TABLES:
                if table is spans:  # spans received over OTLP have no log to come back from
                    connection.execute(spans.delete().where(spans.c.run_pk.isnot(None)))
                else:
                    connection.execute(table.delete())
        self._tails.clear()
        self._table_numbers.clear()

    def _index_group(self, group: list[RunPaths], report: IndexReport) -> None:
        """Index the first chunk of each run of ``group`` in one transaction (what makes a sweep
        of thousands of small runs fast: one commit, not one per run), then each run's remaining
        chunks on its own. If any run fails, the group's transaction rolls back and its runs are
        indexed one by one, so the failure stays with the run at fault."""
        group = sorted(group, key=lambda p: (p.project, p.run_id))  # one lock order in every process
        damaged_before = len(self.damaged)
        done: list[tuple[RunPaths, int, int, bool]] = []
        try:
            with self._transaction() as connection, self._group_writer(connection):
                self._prefetch_rows(connection, group)
                read_total = 0
                for at, paths in enumerate(group):
                    if read_total >= self.chunk_bytes:  # the transaction's share of log is folded
                        group = group[at:]
                        break
                    points, read, more = self._fold_chunk(connection, paths)
                    read_total += read
                    done.append((paths, points, read, more))
                else:
                    group = []
        except Exception:  # retry this group run by run: only the run at fault fails
            del self.damaged[damaged_before:]
            group = [paths for paths, *_ in done] + group
            done = []
        for paths, points, read, more in done:
            if more:
                self._index_one(paths, report, points, read)
            else:
                self._tally(report, points, read)
        if group and not done:
            for paths in group:
                self._index_one(paths, report)
        elif group:  # the transaction's log budget ran out: the rest as a group of their own
            self._index_group(group, report)

    def _prefetch_rows(self, connection: sa.Connection, group: list[RunPaths]) -> None:
        """Lock the group's runs and read their rows in a few queries, not one per run."""
        self._lock_runs(connection, group)
        by_project: dict[str, list[str]] = {}
        for paths in group:
            by_project.setdefault(paths.project, []).append(paths.run_id)
        found: dict[tuple[str, str], Any] = {(paths.project, paths.run_id): None for paths in group}
        for project, run_ids in by_project.items():
            project_id = self._project_id(connection, project)
            for start in range(0, len(run_ids), 500):
                for row in connection.execute(sa.select(runs).where(
                        runs.c.project_id == project_id, runs.c.run_id.in_(run_ids[start : start + 500]))):
                    found[(project, row.run_id)] = row
        self._prefetched = found

    def _index_one(self, paths: RunPaths, report: IndexReport, points: int = 0, read: int = 0) -> None:
        """Index one run to the end of its log, chunk by chunk; a failure is reported in
        ``report.failed`` (that chunk's transaction rolled back) and doesn't stop the others."""
        try:
            added, more_read = self._index_chunks(paths)
        except Exception as error:  # this run's transaction rolled back; index the others
            reason = failure_reason(error)
            log.warning("indexing %s/%s failed: %s", paths.project, paths.run_id, reason)
            report.failed.append(f"{paths.project}/{paths.run_id}: {reason}")
            added = more_read = 0
        self._tally(report, points + added, read + more_read)

    @staticmethod
    def _tally(report: IndexReport, points: int, read: int) -> None:
        if read or points:
            report.runs_updated += 1
        report.points += points
        report.bytes_read += read

    @contextlib.contextmanager
    def _group_writer(self, connection: sa.Connection) -> Iterator[None]:
        """One ``BlockWriter`` for every run of a group transaction, so their blocks and series
        counts are written in a few statements at its end, not a few per run."""
        self._block_writer = BlockWriter(connection, [])
        self._pending = []
        self._ended = []
        try:
            yield
            self._write_new_runs(connection, self._pending)
            self._block_writer.flush()
            for run_pk in self._ended:
                join_open_blocks(connection, run_pk)
        finally:
            self._block_writer = None
            self._pending = None
            self._ended = []

    def _write_new_runs(self, connection: sa.Connection, pending: list[_NewRun]) -> None:
        """Insert a group's new runs, their series, console lines, alerts and artifact edges: one
        executemany per table (per set of run columns), and the series' blocks through the group's
        ``BlockWriter``.
        If a statement fails, the group's transaction rolls back and its runs are indexed one by
        one (``_index_group``), so only the run at fault is lost."""
        if not pending:
            return
        by_columns: dict[tuple[str, ...], list[int]] = {}
        for at, new in enumerate(pending):
            for name in _OPTIONAL_RUN_COLUMNS:
                new.row.setdefault(name, None)
            by_columns.setdefault(tuple(sorted(new.row)), []).append(at)
        for ats in by_columns.values():
            connection.execute(_INSERT_RUNS, [pending[at].row for at in ats])
        by_project: dict[int, list[str]] = {}
        for new in pending:
            by_project.setdefault(new.row["project_id"], []).append(new.row["run_id"])
        ids: dict[tuple[int, str], int] = {}
        for project_id, run_ids in by_project.items():
            for start in range(0, len(run_ids), _IDS_PER_QUERY):
                found_ids = connection.execute(_NEW_RUN_IDS, {"project_id": project_id,
                                                              "run_ids": run_ids[start : start + _IDS_PER_QUERY]})
                ids.update(((project_id, run_id), run_pk) for run_pk, run_id in found_ids)
        run_pks = [ids[(new.row["project_id"], new.row["run_id"])] for new in pending]
        series_rows: list[dict[str, Any]] = []
        points: list[tuple[np.ndarray, np.ndarray, B.Logged | None]] = []
        console: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []
        media_found: list[dict[str, Any]] = []
        span_rows: list[dict[str, Any]] = []
        for run_pk, new in zip(run_pks, pending):
            for (kind, key), (steps, values, logged) in new.series.items():
                counts = ({"count": len(steps), "first_step": int(steps[0]), "last_step": int(steps[-1])}
                          if len(steps) else {"count": 0, "first_step": None, "last_step": None})
                series_rows.append({"run_pk": run_pk, "key": key, "kind": kind, **counts})
                points.append((steps, values, logged))
            console.extend(console_rows(run_pk, new.console))
            found.extend(alert_rows(run_pk, new.alerts))
            if new.edges:
                new_edges = edge_rows(run_pk, new.edges)
                self._table_numbers[run_pk] = new_run_numbers(new_edges)  # its later chunks number on from these
                edges.extend(new_edges)
            media_found.extend(media_rows(run_pk, new.media))
            if new.spans:
                span_rows.extend(log_span_rows(new.row["project_id"], run_pk, new.row["run_id"], new.spans))
        writer = self._block_writer
        assert writer is not None  # set by _group_writer around this call
        if series_rows:
            connection.execute(_INSERT_SERIES, series_rows)
            series_ids: dict[tuple[int, str, str], int] = {}
            for start in range(0, len(run_pks), _IDS_PER_QUERY):
                rows = connection.execute(_NEW_SERIES_IDS, {"run_pks": run_pks[start : start + _IDS_PER_QUERY]})
                series_ids.update(((r.run_pk, r.kind, r.key), r.id) for r in rows)
            joined = {run_pk for run_pk, new in zip(run_pks, pending) if new.joined}
            for row, (steps, values, logged) in zip(series_rows, points):
                if len(steps):
                    series_id = series_ids[(row["run_pk"], row["kind"], row["key"])]
                    writer.append(series_id, 0, steps, values, int(steps[0]), counted=True,
                                  joined=row["run_pk"] in joined, logged=logged)
        if console:
            connection.execute(console_lines.insert(), console)
        if found:
            connection.execute(alerts.insert(), found)
        if edges:
            insert_edges(connection, edges)
        if media_found:
            connection.execute(media.insert(), media_found)
        write_spans(connection, span_rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """One run's transaction. Ids it creates (a new project's) are cached only once it
        commits: an id from a rolled-back insert names nothing, and caching it would fail every
        later run of that project (a foreign key violation) until the process restarts."""
        self._uncommitted = {}
        self._new_runs = set()
        try:
            with self.engine.begin() as connection:
                yield connection
            self._project_ids.update(self._uncommitted)
            self._tails.commit()
        finally:
            self._tails.discard()
            self._uncommitted = {}
            self._new_runs = set()
            self._prefetched = {}

    def _project_id(self, connection: sa.Connection, name: str) -> int:
        project_id = self._project_ids.get(name) or self._uncommitted.get(name)
        if project_id is None:
            project_id = connection.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
            if project_id is None:
                try:
                    with connection.begin_nested():  # another process may create it at the same moment
                        inserted = connection.execute(projects.insert().values(name=name)).inserted_primary_key
                        assert inserted is not None  # projects has a primary key
                        project_id = inserted[0]
                except sa.exc.IntegrityError:
                    project_id = connection.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar_one()
            self._uncommitted[name] = project_id  # cached when the transaction commits
        return project_id

    @staticmethod
    def _lock_run(connection: sa.Connection, paths: RunPaths) -> None:
        """Serialize the indexing of one run across processes (PostgreSQL; SQLite has one writer)."""
        Indexer._lock_runs(connection, [paths])

    @staticmethod
    def _lock_runs(connection: sa.Connection, group: list[RunPaths]) -> None:
        """``_lock_run`` for each run of ``group``, in its order (every process locks a group in
        one order), in one statement per 1,000 runs."""
        if connection.dialect.name != "postgresql" or not group:
            return
        keys = [int.from_bytes(hashlib.blake2b(f"{p.project}/{p.run_id}".encode(), digest_size=8).digest(),
                               "big", signed=True) for p in group]
        for start in range(0, len(keys), 1000):
            connection.execute(_LOCK_RUNS, {"keys": keys[start : start + 1000]}).all()

    def index_run(self, paths: RunPaths) -> tuple[int, int]:
        """Ingest one run's new records, ``chunk_bytes`` of log per transaction (so memory stays
        bounded however much is new: a long log's first indexing, a server's backlog); returns
        (points added, bytes read)."""
        try:
            return self._index_chunks(paths)
        finally:
            self._table_numbers.clear()  # kept for one pass over a run's log only

    def _index_chunks(self, paths: RunPaths) -> tuple[int, int]:
        """``index_run``'s chunks, the table numbers kept after them (a group's pass: ``index_runs``)."""
        points = read = 0
        while True:
            added, chunk, more = self._index_chunk(paths)
            points, read = points + added, read + chunk
            if not more:
                return points, read

    def _replaced(self, paths: RunPaths, row: Any) -> bool:
        """A log recorded again from scratch under the same id (the run directory deleted, the same
        id started anew) can be as long as the old one or longer: its first record's start time
        tells it apart. Sources that can't read a log's head cheaply (segments) skip the check."""
        started_at = getattr(self.source, "started_at", None)
        # (nothing of the log indexed yet, its header at most: no start of it to differ from; a
        # shared run's row may have its first part's start time meanwhile)
        if started_at is None or row.created_at is None or int(row.log_offset or 0) <= len(MAGIC):
            return False
        started = started_at(paths)
        return started is not None and started != row.created_at

    def _index_chunk(self, paths: RunPaths) -> tuple[int, int, bool]:
        """Ingest up to ``chunk_bytes`` of one run's new records in a transaction of its own."""
        with self._transaction() as connection:
            return self._fold_chunk(connection, paths)

    def _fold_chunk(self, connection: sa.Connection, paths: RunPaths) -> tuple[int, int, bool]:
        """Ingest up to ``chunk_bytes`` of one run's new records (at least one whole frame) in
        ``connection``'s transaction; returns (points added, bytes read, whether more chunks
        follow), (0, 0, False) when there was nothing new."""
        project_id = self._project_id(connection, paths.project)
        if (paths.project, paths.run_id) in self._prefetched:  # locked and read with its group
            row = self._prefetched[(paths.project, paths.run_id)]
        else:
            self._lock_run(connection, paths)
            row = connection.execute(_RUN_ROW, {"project_id": project_id, "run_id": paths.run_id}).first()
        offset = row.log_offset if row is not None else 0
        size = self.source.size(paths)
        if size == 0 and self._part_only(paths):
            # No run.tlog here: a shared run whose primary never started, or whose primary's log is on
            # another node sharing this store. Its parts here are indexed (_fold_part); the row, if
            # another node's indexing made it, is that node's to update (never forgotten for a log
            # this root lacks).
            return 0, 0, False
        if row is not None and (size < offset or self._replaced(paths, row)):  # start over
            forget_run(connection, row.id)
            self._tails.take(row.id, None)  # what it kept of the run is gone with it
            self._table_numbers.pop(row.id, None)
            row, offset = None, 0
        # (a row its parts made, its primary's log here now: even an empty one is the primary's
        # start, killed as it created it, whose state is the run's from now on: folded below)
        arrived = row is not None and bool((row.metadata or {}).get("no_primary")) and self._own_log_here(paths)
        if row is not None and size == offset and not arrived:
            self._refresh_liveness(connection, row, paths)
            return 0, 0, False
        result = self.source.read_from(paths, offset, self.chunk_bytes)
        fold = _RunFold(row, (paths.project, paths.run_id))
        decoder = RecordDecoder(key_id for key_id, name in enumerate(fold.keys) if name)
        summary = self._summary_pass(paths, offset)
        decoder.fold(result.payloads, fold.apply if summary is None else _both(summary, fold.apply))
        if summary is not None:
            self._summaries[(paths.project, paths.run_id)] = (summary, result.end_offset)
        self._note_damage(paths, result, decoder)
        if row is not None and fold.keys_changed and (row.metadata or {}).get("parts"):
            self._take_keys_from_parts(connection, row, fold)
        if row is not None and (fold.config_set or fold.summary_set or fold.keys_changed) and (
                row.metadata or {}).get("parts"):
            _take_from_parts(fold, row)
        if row is not None and fold.summary_removed and (row.metadata or {}).get("parts"):
            _hand_on_removed(fold, row)
        if row is not None and fold.config_changed and fold.data.metadata.get("parts"):
            parts_now = dict(fold.data.metadata["parts"])  # a key the primary removed may be a part's again
            fold.config = _config_with_parts(fold.config, parts_now)
            fold.data.metadata["parts"] = parts_now
            fold.data.metadata_changed = True
        # More chunks follow this pass: the last one (even one that reads nothing) settles
        # liveness, so a crashed run's whole-log summary fold runs once, not per chunk.
        more = offset < result.end_offset < size and offset + self.chunk_bytes < size
        values = self._run_values(paths, row, fold, result.end_offset, final=not more)
        if not more:  # the pass over this run's log ends here
            self._summaries.pop((paths.project, paths.run_id), None)
        if row is not None and _shares_state(row.metadata):  # its parts set its state too (core/parts.py)
            metadata = dict(fold.data.metadata)
            metadata.pop("no_primary", None)  # its primary started
            previous = metadata.get("primary") or {"state": "running" if (row.metadata or {}).get("no_primary")
                                                   else row.state, "exit_code": row.exit_code}
            metadata["primary"] = {"state": values.get("state", previous["state"]),
                                   "exit_code": values.get("exit_code", previous["exit_code"])}
            values.update(store_json({**_shared_state(metadata, None), "metadata": metadata}))
        if row is None and self._pending is not None:  # a group's new run: written at the group's end
            values.update(project_id=project_id, run_id=paths.run_id, log_path=self.source.location(paths))
            new = _NewRun({**_NEW_RUN_DEFAULTS, "name": paths.run_id, **values}, fold)
            # Open blocks as one row where the run ended or the pass's next chunk (of 8 MiB) rewrites them.
            new.joined = more or new.row["state"] != "running"
            self._pending.append(new)
            return new.points(), result.end_offset - offset, more
        # A run indexed on its own (not with a group, whose writer is shared) keeps its series'
        # tails for its next append: kept from its last one if its row is as that one left it.
        kept = (None if self._block_writer is not None
                else RunTails() if row is None else self._tails.take(row.id, (row.log_offset, row.heartbeat_at, row.state)))
        run_pk = self._write_run(connection, project_id, paths, row, values)
        state = values.get("state", row.state if row is not None else "running")
        version = (values["log_offset"], values["heartbeat_at"], state)
        if kept is not None:
            self._tails.stage(run_pk, version, kept)
        joined = state != "running"  # open blocks as one row: the run ended
        points = self._write_series(connection, run_pk, "number", fold.points, kept, joined)
        if fold.data.console:
            write_console(connection, run_pk, fold.data.console)
        if fold.data.alerts:
            write_alerts(connection, run_pk, fold.data.alerts)
        if fold.artifact_edges:
            write_edges(connection, run_pk, fold.artifact_edges, self._table_numbers)
        if fold.media:
            write_media(connection, run_pk, fold.media)
        if fold.spans:
            write_spans(connection, log_span_rows(project_id, run_pk, paths.run_id, fold.spans))
        if fold.data.window_times:
            system = fold.data.system_series(last_system_step(connection, run_pk))
            for kind, by_name in system.items():
                self._write_series(connection, run_pk, kind, by_name, kept, joined)
        if state != "running":
            self._join_ended(connection, run_pk, version)
        return points, result.end_offset - offset, more

    def _join_ended(self, connection: sa.Connection, run_pk: int, version: Any) -> None:
        """The run ended (finished, failed, crashed): its series' open blocks are joined, each
        stored as one row (``join_open_blocks``), now or, in a group transaction, once the group's
        blocks are written. What the indexer kept of the run is dropped: it was kept as pieces."""
        if self._block_writer is not None:
            self._ended.append(run_pk)
        else:
            join_open_blocks(connection, run_pk)
            self._tails.stage(run_pk, version, RunTails())

    def _note_damage(self, paths: RunPaths, result: Any, decoder: RecordDecoder) -> None:
        """Say what of the new bytes was skipped (a damaged region, an invalid record); a torn
        last frame is not damage (a live writer's next pass reads it whole)."""
        parts = [d.describe() for d in [*result.damages, *decoder.gaps] if not d.torn_tail]
        if decoder.invalid_count:
            parts.append(f"{decoder.invalid_count} invalid record(s) skipped")
        if decoder.partial_count:
            parts.append(f"{decoder.partial_count} record(s) indexed without some history columns")
        if decoder.invalid:
            parts.append("first: " + decoder.invalid[0].describe())
        if parts:  # a part's damage names the part (its own log, parts/<label>.tlog), not the run's log
            where = f"{paths.project}/{paths.run_id}" + (f" part {paths.part}" if paths.part is not None else "")
            self.damaged.append(f"{where}: " + "; ".join(parts))

    def _state(self, fold: _RunFold, row: Any, paths: RunPaths, final: bool = True) -> dict[str, Any]:
        if fold.exit is not None:
            return {"state": "finished" if fold.exit.exit_code == 0 else "failed", "exit_code": fold.exit.exit_code}
        if row is not None and not fold.reopened and _primary_state(row) in ("finished", "failed"):
            return {}
        if not final:  # a chunk with more to come: the run reads as being recorded
            return {"state": "running", "exit_code": None} if row is None or fold.reopened else {}
        alive = self.source.alive(paths)
        return {"state": "running" if alive in (True, None) else "crashed", "exit_code": None}

    def _refresh_liveness(self, connection: sa.Connection, row: Any, paths: RunPaths) -> None:
        """A run whose writer died without an exit record is crashed, though its log didn't grow."""
        if (row.metadata or {}).get("no_primary"):
            return  # no primary (yet): the parts' liveness is _fold_part's
        if _primary_state(row) == "running" and self.source.alive(paths) is False:
            changed: dict[str, Any] = {"state": "crashed"}
            if _shares_state(row.metadata):  # its parts set its state too (core/parts.py)
                metadata = {**row.metadata, "primary": {"state": "crashed", "exit_code": None}}
                changed = store_json({**_shared_state(metadata, None), "metadata": metadata})
            connection.execute(runs.update().where(runs.c.id == row.id).values(
                summary=_with_part_summary(self._summary_from_log(paths), row.summary or {}, row.keys,
                                           row.metadata), **changed))
            if changed.get("state", "crashed") != "running":
                join_open_blocks(connection, row.id)

    def _summary_from_log(self, paths: RunPaths) -> dict[str, Any]:
        """A crashed run's summary as its live tracker had it at the kill: its last written
        summary can be seconds older than its history (``core/summary_fold.py``). Reads the
        whole log once, when the run is found crashed, a window of ``chunk_bytes`` at a time, so
        memory follows the window, not the log; found crashed by a pass that read the log from its
        first byte (its first indexing), that pass's own fold (``_summary_pass``), not a second read."""
        offset, size = 0, self.source.size(paths)
        kept = self._summaries.pop((paths.project, paths.run_id), None)
        if kept is not None:  # this ingest pass read the log from its first byte, folding it too
            return {key: json_safe(value) for key, value in kept[0].values.items()}
        fold = SummaryFold()
        decoder = RecordDecoder()  # what the ingest pass reads, and it reports what it can't
        while offset < size:
            result = self.source.read_from(paths, offset, self.chunk_bytes)
            decoder.fold(result.payloads, fold.apply)
            if result.end_offset <= offset:  # nothing intact past here
                break
            offset = result.end_offset
        return {key: json_safe(value) for key, value in fold.values.items()}

    def _summary_pass(self, paths: RunPaths, offset: int) -> SummaryFold | None:
        """The summary fold this chunk feeds: a new one for a pass from the log's first byte,
        the one the previous chunk of the pass left if this chunk goes on where it ended, else
        None (an append to a run indexed before: its summary, if it crashed, is read whole)."""
        kept = self._summaries.pop((paths.project, paths.run_id), None)
        if offset == 0:
            return SummaryFold()
        return kept[0] if kept is not None and kept[1] == offset else None

    def _run_values(self, paths: RunPaths, row: Any, fold: _RunFold, end_offset: int,
                    final: bool = True) -> dict[str, Any]:
        """What the new records change in the run's row (every column, for a new run)."""
        values: dict[str, Any] = dict(fold.fields)
        values.update(self._state(fold, row, paths, final))
        if values.get("state") == "crashed":
            # (the parts' entries as these records left them: a key the primary handed on is a part's)
            fold.summary = _with_part_summary(self._summary_from_log(paths), fold.summary, fold.keys,
                                              fold.data.metadata)
            fold.summary_changed = True
        values.update(log_offset=end_offset, heartbeat_at=time.time(), last_step=fold.last_step)
        if fold.last_time is not None:
            values["updated_at"] = fold.last_time
            if row is not None and (row.metadata or {}).get("parts") and (row.updated_at or 0) > fold.last_time:
                values["updated_at"] = row.updated_at  # a shared run's: the latest any writer recorded
        if fold.config_changed or row is None:
            values["config"] = fold.config
        if fold.summary_changed or row is None:
            values["summary"] = fold.summary
        if fold.keys_changed or row is None:
            values["keys"] = fold.keys
        if fold.data.metadata_changed or row is None:
            values["metadata"] = fold.data.metadata
        values = store_json(values)  # NUL in any text (name, tags, JSON keys and strings): text.py
        for name, length in _SIZED_COLUMNS.items():
            if isinstance(values.get(name), str):
                values[name] = fit(values[name], length)
        return values

    def _write_run(self, connection: sa.Connection, project_id: int, paths: RunPaths, row: Any,
                   values: dict[str, Any]) -> int:
        """Insert or update the run's row with ``values`` (``_run_values``); returns its id."""
        if row is None:
            run_pk = connection.execute(
                runs.insert().returning(runs.c.id),
                {**_NEW_RUN_DEFAULTS, "name": paths.run_id, **values, "project_id": project_id,
                 "run_id": paths.run_id, "log_path": self.source.location(paths)},
            ).scalar_one()
            self._new_runs.add(run_pk)
            return run_pk
        connection.execute(_UPDATE_RUN, {**values, "run_pk": row.id})
        return row.id

    def _write_series(self, connection: sa.Connection, run_pk: int, kind: str, new: Mapping[str, Any],
                      kept: RunTails | None = None, joined: bool = False) -> int:
        """Append new points (``new[key].arrays()``: steps, values) to the run's series of ``kind``;
        returns the number of points, not counting ``_timestamp``. A handful of statements per
        call, however many series (a run's system metrics are a few hundred). ``joined``: each open
        block as one row (``BlockWriter.append``). ``kept``: the run's
        series as the last append left them (``TailCache``): neither their rows nor their tail
        blocks are read again where it holds them all; updated with what this append writes."""
        if not new:
            return 0
        existing: dict[str, Any] = {}
        if kept is not None:
            for key in new:
                series_id = kept.ids.get((kind, key))
                tail = kept.series.get(series_id) if series_id is not None else None
                if series_id is None or tail is None:
                    break
                existing[key] = _SeriesRow(series_id, tail.count, tail.first_step)
        if len(existing) < len(new) and run_pk not in self._new_runs:  # (a new run has no series yet)
            existing = {
                r.key: r for r in connection.execute(
                    _RUN_SERIES, {"run_pk": run_pk, "kind": kind, "keys": list(new)})
            }
        missing = [key for key in new if key not in existing]
        if missing:
            inserted = connection.execute(
                series.insert().returning(series.c.id, series.c.key, series.c.count, series.c.first_step,
                                          sort_by_parameter_order=True),
                [{"run_pk": run_pk, "key": key, "kind": kind, "count": 0} for key in missing])
            existing.update((r.key, r) for r in inserted)
        if kept is not None:
            kept.ids.update(((kind, key), row.id) for key, row in existing.items())
        targets = [(existing[key].id, existing[key].count or 0) for key in new]
        shared = self._block_writer
        writer = shared if shared is not None else BlockWriter(connection, [], kept.series if kept is not None else None)
        writer.load(targets)
        total = 0
        for key, points in new.items():
            steps, values, logged = points.points() if isinstance(points, _Points) else (*points.arrays(), None)
            if not len(steps):
                continue
            current = existing[key]
            old_count = current.count or 0
            first_step = current.first_step if old_count else int(steps[0])
            writer.append(current.id, old_count, steps, values, first_step, joined=joined, logged=logged)
            total += len(steps) if not is_timestamp_key(key) else 0
        if shared is None:
            writer.flush()
        return total


class _SharedRun:
    """A shared run's row as one transaction that folds its parts has it (``Indexer._fold_parts``):
    read once, changed in memory by each part's chunks, written once (``Indexer._write_shared``).
    Who owns each history key (the primary, else the first label whose part logs it), which part
    holds each summary-only key, the summary keys the primary holds though a part logs them
    (``metadata["primary_summary_keys"]``: ``core/parts.summary_owner``) and which parts recorded
    a start are kept as indexes, so a chunk
    costs what it holds, not the number of the run's parts (a run of 1,000 writers)."""

    def __init__(self, row: Any, project_id: int) -> None:
        self.row = row
        self.project_id = project_id
        self.metadata: dict[str, Any] = dict(row.metadata or {})
        self.parts: dict[str, Any] = dict(self.metadata.get("parts") or {})  # metadata["parts"], by label
        self.summary: dict[str, Any] = dict(row.summary or {})
        self.updated_at = row.updated_at
        self.values: dict[str, Any] = {}  # other columns the parts set (updated_at, a part-only run's identity)
        self.summary_changed = self.metadata_changed = self.config_changed = False
        self.primary = {key for key in (row.keys or []) if key}
        self.first_label: dict[str, str] = {}  # history key: the first label (in order) whose part logs it
        self.part_keys: dict[str, set[str]] = {}  # each part's history keys, made when a part is folded
        self.summary_holder: dict[str, str] = {}  # a summary-only key: the part whose it is (summary_keys)
        # summary keys the primary set that a part logs as a history key: the key's entry is the primary's
        self.primary_held: set[str] = set(self.metadata.get("primary_summary_keys") or [])
        started = []  # labels of the parts whose start was indexed, in order
        for label, info in self.parts.items():
            for key in info.get("keys") or []:
                if key and (key not in self.first_label or label < self.first_label[key]):
                    self.first_label[key] = label
            for key in info.get("summary_keys") or []:
                self.summary_holder[key] = label
            if _part_started(info):
                started.append(label)
        self.started = sorted(started)

    def owner(self, key: str) -> str | None:
        """``core/parts.owner`` of history key ``key`` among the primary and every part."""
        from tracklet.core.parts import PRIMARY

        return PRIMARY if key in self.primary else self.first_label.get(key)

    def summary_holder_of(self, key: str) -> str | None:
        """``core/parts.summary_owner`` of summary key ``key`` as indexed so far: whose value the
        run's entry ``key`` is (``PRIMARY``, a label), None when no writer has it yet."""
        from tracklet.core.parts import PRIMARY

        if key in self.primary or key in self.primary_held:
            return PRIMARY
        held = self.summary_holder.get(key) or self.first_label.get(key)
        if held is not None:
            return held
        return PRIMARY if key in self.summary else None  # (every part's plain entry is held above)

    def summary_rank(self, writer: str | None, key: str) -> tuple[int, str]:
        """How writer ``writer`` ranks for summary key ``key`` (lowest owns it): the primary, then
        the parts that log it as a history key, then those that only set it, each in label order
        (``core/parts.summary_claim`` of a writer with a value)."""
        from tracklet.core.parts import PRIMARY, summary_claim

        if writer is None or writer == PRIMARY:
            return (0, PRIMARY)
        return summary_claim(writer, key in self._keys_of(writer), True) or (2, writer)

    def release_summary(self, holder: str, key: str, info: dict[str, Any] | None = None) -> None:
        """Part ``holder`` no longer holds summary key ``key``: its value (in the run's summary)
        moves to ``<key>/l:<holder>``; ``info`` is the part's entry where its caller keeps it."""
        from tracklet.core.parts import labelled

        if key in self.summary:
            self.summary[stored_key(labelled(holder, key))] = self.summary.pop(key)
            self.summary_changed = True
        self.summary_holder.pop(key, None)
        entry = info if info is not None else self.parts.get(holder)
        if entry is not None and key in (entry.get("summary_keys") or []):
            kept = sorted(set(entry["summary_keys"]) - {key})
            if info is not None:
                info["summary_keys"] = kept
            else:
                self.parts[holder] = {**entry, "summary_keys": kept}
                self.metadata_changed = True

    def release_summary_only(self, label: str, key: str, info: dict[str, Any]) -> None:
        """Part ``label`` (its entry ``info``), which held summary-only key ``key``, logs it as a
        history key now: it holds the key as the key's history owner (its value stays)."""
        self.summary_holder.pop(key, None)
        info["summary_keys"] = sorted(set(info.get("summary_keys") or []) - {key})

    def take_summary(self, label: str, key: str) -> None:
        """Part ``label`` owns summary key ``key`` now: its value set until now under
        ``<key>/l:<label>`` is the key's."""
        from tracklet.core.parts import labelled

        name = stored_key(labelled(label, key))
        if name in self.summary:
            self.summary[key] = self.summary.pop(name)
            self.summary_changed = True

    def hold_for_primary(self, key: str) -> None:
        """The run's entry ``key`` is the primary's, though a part logs ``key`` as a history key."""
        if key not in self.primary_held:
            self.primary_held.add(key)
            self.metadata["primary_summary_keys"] = sorted(self.primary_held)
            self.metadata_changed = True

    def part_key(self, label: str, key: str) -> str:
        """``core/parts.part_key``: the run's name for part ``label``'s history key ``key``."""
        from tracklet.core.parts import labelled

        return key if self.owner(key) in (label, None) else labelled(label, key)

    def _keys_of(self, label: str) -> set[str]:
        found = self.part_keys.get(label)
        if found is None:
            found = self.part_keys[label] = {key for key in (self.parts.get(label) or {}).get("keys") or [] if key}
        return found

    def new_keys(self, label: str, keys: Iterable[str]) -> set[str]:
        """Of ``keys`` (part ``label``'s, as its chunk has them), those its part didn't log until now."""
        return {key for key in keys if key} - self._keys_of(label)

    def add_keys(self, label: str, keys: Iterable[str]) -> None:
        """Part ``label`` logs ``keys`` from now on."""
        own = self._keys_of(label)
        for key in keys:
            if key:
                own.add(key)
                held = self.first_label.get(key)
                if held is None or label < held:
                    self.first_label[key] = label

    def set_part(self, label: str, info: dict[str, Any]) -> None:
        """What readers show of part ``label`` changed to ``info``."""
        self.parts[label] = info
        self.metadata_changed = True
        at = bisect.bisect_left(self.started, label)
        if _part_started(info) and self.started[at : at + 1] != [label]:
            self.started.insert(at, label)

    def add_summary(self, named: Mapping[str, Any]) -> None:
        """Summary entries under the run's names (``part_summary_names``)."""
        for key, value in named.items():
            if key not in self.summary or self.summary[key] != value:
                self.summary[key] = value
                self.summary_changed = True

    def part_summary_names(self, label: str, info: dict[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
        """Part ``label``'s summary entries ``found`` under the run's names, by
        ``core/parts.summary_owner``: the key's where this part owns it (the primary neither logs
        nor set it, no other part logs it as a history key before this one in label order, ...),
        else ``<key>/l:<label>``; where a part that ranks after this one held the key, that part's
        value (in the run's summary) moves to its labelled name. ``info["summary_keys"]`` keeps
        the summary-only keys the part holds (and ``parts`` those the others lost)."""
        from tracklet.core.parts import PRIMARY, labelled

        own = {key for key in (info.get("keys") or []) if key}
        taken = set(info.get("summary_keys") or []) - own
        named: dict[str, Any] = {}
        for key, value in found.items():
            key = stored_key(key)
            held = self.summary_holder_of(key)
            if held is not None and held != label:
                if held == PRIMARY or self.summary_rank(held, key) < self.summary_rank(label, key):
                    named[labelled(label, key)] = value
                    continue
                self.release_summary(held, key)  # a part ranked after this one held it
                self.summary.pop(stored_key(labelled(label, key)), None)  # (this part's value is the key's now)
            if key not in own:
                taken.add(key)
                self.summary_holder[key] = label
            named[key] = value
        info["summary_keys"] = sorted(taken)
        return named

    def remove_summary(self, label: str, key: str, info: dict[str, Any]) -> None:
        """Part ``label`` (its entry ``info``) removed summary key ``key``, by
        ``core/parts.summary_claim``: its value goes (the key's, or ``<key>/l:<label>``); where it
        held the key without logging it, the next claim's value (a part's ``<key>/l:<other>``: the
        primary's and a logging part's claims rank before its) is the key's now."""
        from tracklet.core.parts import first_claim, labelled, summary_claim

        if self.summary_holder_of(key) != label:
            name = stored_key(labelled(label, key))
            if name in self.summary:
                del self.summary[name]
                self.summary_changed = True
            return
        if key in self.summary:
            del self.summary[key]
            self.summary_changed = True
        if key in self._keys_of(label):
            return  # it logs the key: the key stays its, without a value
        self.summary_holder.pop(key, None)
        info["summary_keys"] = sorted(set(info.get("summary_keys") or []) - {key})
        heir = first_claim(summary_claim(other, key in self._keys_of(other), True) for other in self.parts
                           if other != label and stored_key(labelled(other, key)) in self.summary)
        if heir is None:
            return
        self.summary[key] = self.summary.pop(stored_key(labelled(heir, key)))
        if key not in self._keys_of(heir):
            self.summary_holder[key] = heir
            entry = self.parts[heir]
            self.parts[heir] = {**entry, "summary_keys": sorted({*(entry.get("summary_keys") or []), key})}
            self.metadata_changed = True

    def first_part_identity(self, paths: RunPaths, label: str, indexed_before: bool,
                            fields: Mapping[str, Any]) -> dict[str, Any]:
        """The columns of a run whose primary never started that part ``label``'s new records set
        (``fields``: its start, its renames): the run is its first part's in label order, as the log
        reader has it, however the parts were indexed. A part indexed after one that comes later in
        label order replaces that part's identity whole (what it leaves unset goes back to a new
        run's); a part after another one sets nothing. Parts whose start wasn't indexed (an empty log)
        don't count, as the reader's first part is its first with a start."""
        if self.started and self.started[0] < label:
            return {}
        if indexed_before or not [other for other in self.started[:2] if other != label]:
            return dict(fields)
        return {**{key: _NEW_RUN_DEFAULTS[key] for key in ("tags", "group_name", "job_type", "notes", "host")},
                "name": paths.run_id, "created_at": None, **fields}


def _part_started(info: Mapping[str, Any]) -> bool:
    """Whether a part's start was indexed (its ``metadata["parts"]`` entry ``info`` has its host or
    pid): an entry alone may be an empty log's, found crashed before its writer ever started."""
    return bool(info.get("host") or info.get("pid"))


def _part_config(config: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """A part's own config as indexed so far (``info["config"]``; a run indexed before it was kept:
    the keys it gave the run's config ``config``, as the row has them)."""
    if "config" in info:
        return dict(info["config"])
    return {key: config[key] for key in (info.get("config_keys") or []) if key in config}


def _config_with_parts(config: Mapping[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    """The run's config from ``config`` (the primary's keys, and those ``parts`` gave it until now)
    by ``core/parts.merged_config``: each part's ``config_keys`` in ``parts`` are updated."""
    from tracklet.core.parts import merged_config

    own_configs = {}
    for label, info in parts.items():
        own_configs[label] = _part_config(config, info)
    given_before = {key for info in parts.values() for key in (info.get("config_keys") or [])}
    primary = {key: value for key, value in config.items() if key not in given_before}
    merged, given = merged_config(primary, own_configs)
    for label, info in parts.items():
        parts[label] = {**info, "config": own_configs[label], "config_keys": sorted(given.get(label, []))}
    return merged


def _primary_state(row: Any) -> str:
    """A run's primary's own state: the row's, unless its parts set the run's state too (then the
    primary's is kept in ``metadata["primary"]``); "" where its primary never started (the row's
    state is its parts', never the primary's: a primary's log arriving without an exit record is
    running or crashed by its own writer, whatever the parts did)."""
    metadata = row.metadata or {}
    if metadata.get("no_primary"):
        return ""
    own = metadata.get("primary")
    return str(own["state"]) if isinstance(own, dict) and own.get("state") else row.state


def _both(summary: SummaryFold, apply: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Hand each record to the summary fold (a record it fails on is left out of the summary
    only, as ``_summary_from_log``'s own pass did) and to ``apply``."""
    def both(record: Any) -> Any:
        try:
            summary.apply(record)
        except Exception:  # noqa: BLE001 - left out of the crashed run's summary, as a second pass would
            pass
        return apply(record)

    return both


def _shares_state(metadata: Any) -> bool:
    """Whether a run's state is not its primary's alone: its primary never started, or a part sets
    the run's state (``update_finish_state``; core/parts.py)."""
    from tracklet.core.parts import sets_state

    metadata = metadata or {}
    return bool(metadata.get("no_primary") or metadata.get("primary")
                or any(sets_state(info) for info in (metadata.get("parts") or {}).values()))


def _shared_state(metadata: dict[str, Any], row: Any) -> dict[str, Any]:
    """The ``state`` and ``exit_code`` of a run whose parts set its state too (``run_state``), {}
    for one whose state is its primary's alone. The primary's own state is kept (or first
    recorded, from ``row``) in ``metadata["primary"]``."""
    from tracklet.core.parts import run_state

    if not _shares_state(metadata):
        return {}
    own = None
    if not metadata.get("no_primary"):
        if not metadata.get("primary"):
            assert row is not None
            metadata["primary"] = {"state": row.state, "exit_code": row.exit_code}
        own = (metadata["primary"]["state"], metadata["primary"].get("exit_code"))
    state, exit_code = run_state(own, metadata.get("parts") or {})
    return {"state": state, "exit_code": exit_code}


def _take_from_parts(fold: _RunFold, row: Any) -> None:
    """The primary sets config keys, or summary keys, a shared run's parts held until now
    (core/parts.py: the primary's wins), or logs as a history key a summary-only key a part held:
    they are no longer those parts', so the parts' later values don't replace the primary's; a
    part's summary value moves to ``<key>/l:<label>``. A summary key the primary sets that a part
    logs as a history key is kept in ``metadata["primary_summary_keys"]``."""
    from tracklet.core.parts import labelled, owner

    parts = dict(fold.data.metadata.get("parts") or {})
    logged = {key for key in fold.keys if key} - set(row.keys or [])  # its new history keys
    taking = fold.summary_set | logged
    changed = False
    for label, info in parts.items():
        config_keys, summary_keys = set(info.get("config_keys") or []), set(info.get("summary_keys") or [])
        moved = summary_keys & taking
        if not (config_keys & fold.config_set or moved):
            continue
        parts[label] = {**info, "config_keys": sorted(config_keys - fold.config_set),
                        "summary_keys": sorted(summary_keys - taking)}
        for key in moved:
            if key in (row.summary or {}):  # the part's value, as the row had it
                fold.summary[stored_key(labelled(label, key))] = row.summary[key]
                fold.summary_changed = True
            if key not in fold.summary_set:  # (logged, not set: the primary's entry has no value yet)
                fold.summary.pop(key, None)
                fold.summary_changed = True
        changed = True
    primary_held = set(fold.data.metadata.get("primary_summary_keys") or [])
    part_keys = {label: {key for key in (info.get("keys") or []) if key} for label, info in parts.items()}
    for key in sorted(fold.summary_set - set(fold.keys) - primary_held):
        held = owner(key, (), part_keys)  # a part's history key: its summary entry was that part's
        if held is None:
            continue
        if key in (row.summary or {}):
            fold.summary[stored_key(labelled(held, key))] = row.summary[key]
            fold.summary_changed = True
        primary_held.add(key)
        fold.data.metadata["primary_summary_keys"] = sorted(primary_held)
        changed = True
    if changed:
        fold.data.metadata["parts"] = parts
        fold.data.metadata_changed = True


def _hand_on_removed(fold: _RunFold, row: Any) -> None:
    """The primary removed summary keys (``fold.summary_removed``) of a shared run, by
    ``core/parts.summary_claim``: a key it logs stays its (without a value); a key it only set is
    the next claim's, whose value moves from ``<key>/l:<label>`` to the key (a part that only set
    it holds it in its ``summary_keys``); a key a part held, not the primary, keeps that part's
    value (the primary had none to remove)."""
    from tracklet.core.parts import first_claim, labelled, summary_claim

    metadata = fold.data.metadata
    parts = dict(metadata.get("parts") or {})
    part_keys = {label: {key for key in (info.get("keys") or []) if key} for label, info in parts.items()}
    primary_held = set(metadata.get("primary_summary_keys") or [])
    logged = {key for key in fold.keys if key}
    changed = False
    for key in sorted(fold.summary_removed - logged):
        holders = [label for label, info in parts.items() if key in (info.get("summary_keys") or [])]
        history_owner = min((label for label, keys in part_keys.items() if key in keys), default=None)
        if key not in primary_held and (holders or history_owner is not None):
            if key in (row.summary or {}):  # a part's value: the primary had none of it
                fold.summary[key] = row.summary[key]
            continue
        if key in primary_held:
            primary_held.discard(key)
            metadata["primary_summary_keys"] = sorted(primary_held)
            changed = True
        heir = first_claim(summary_claim(label, key in part_keys[label], stored_key(labelled(label, key)) in fold.summary)
                           for label in parts)
        if heir is None:
            continue
        name = stored_key(labelled(heir, key))
        if name in fold.summary:
            fold.summary[key] = fold.summary.pop(name)
            fold.summary_changed = True
        if key not in part_keys[heir]:  # a part that only set it holds it now
            parts[heir] = {**parts[heir], "summary_keys": sorted({*(parts[heir].get("summary_keys") or []), key})}
            changed = True
    if changed:
        metadata["parts"] = parts
        fold.data.metadata_changed = True


def _with_part_summary(own: dict[str, Any], summary: Mapping[str, Any], keys: Any, metadata: Any) -> dict[str, Any]:
    """``own`` (a crashed primary's summary, folded again from its log) with the entries of
    ``summary`` (the run's, ownership moves of the new records applied) that a shared run's parts
    hold (core/parts.py): ``<key>/l:<label>`` names, keys a part logs that the primary (its
    history keys ``keys``) doesn't, and summary-only keys a part took that the primary never set.
    The primary's own entries are its log's, never an older value the row held."""
    from tracklet.core.parts import SYSTEM_LABEL_SEPARATOR

    parts = (metadata or {}).get("parts") or {}
    if not parts:
        return own
    primary = {key for key in (keys or []) if key}
    logged = {key for part in parts.values() for key in (part.get("keys") or []) if key}
    taken = {key for part in parts.values() for key in (part.get("summary_keys") or [])}
    held = set((metadata or {}).get("primary_summary_keys") or [])  # the primary's, though a part logs them
    merged = dict(own)
    for key, value in summary.items():
        _, separator, label = key.rpartition(SYSTEM_LABEL_SEPARATOR)
        if (separator and label in parts) or (key in logged and key not in primary and key not in held):
            merged[key] = value
        elif key in taken and key not in primary:
            merged.setdefault(key, value)
    return merged


def forget_run(connection: sa.Connection, run_pk: int) -> None:
    """Delete a run and everything indexed for it."""
    ids = sa.select(series.c.id).where(series.c.run_pk == run_pk)
    connection.execute(blocks.delete().where(blocks.c.series_id.in_(ids)))
    connection.execute(series.delete().where(series.c.run_pk == run_pk))
    connection.execute(console_lines.delete().where(console_lines.c.run_pk == run_pk))
    connection.execute(alerts.delete().where(alerts.c.run_pk == run_pk))
    connection.execute(artifact_edges.delete().where(artifact_edges.c.run_pk == run_pk))
    connection.execute(media.delete().where(media.c.run_pk == run_pk))
    connection.execute(spans.delete().where(spans.c.run_pk == run_pk))
    connection.execute(run_parts.delete().where(run_parts.c.run_pk == run_pk))
    connection.execute(runs.delete().where(runs.c.id == run_pk))


_JOIN_ROW = blocks.update().where(blocks.c.series_id == sa.bindparam("sid"), blocks.c.level == sa.bindparam("lvl"),
                                  blocks.c.seq == sa.bindparam("low")).values(
    last_step=sa.bindparam("last"), count=sa.bindparam("entries"), data=sa.bindparam("joined"))


def join_open_blocks(connection: sa.Connection, run_pk: int) -> None:
    """Store each open block of the run's series that is in pieces as one row (``blocks.py``):
    its pieces' entries joined into the first, the others deleted. For a run that ended, whose
    blocks are read from then on, one row per level instead of up to 16. Reads the data of those
    open blocks only (most are one row already: written so by the chunk that ended the run)."""
    in_pieces = connection.execute(
        sa.select(blocks.c.series_id, blocks.c.level)
        .where(blocks.c.series_id.in_(sa.select(series.c.id).where(series.c.run_pk == run_pk)),
               blocks.c.count < B.BLOCK_SIZE)  # full blocks are single rows
        .group_by(blocks.c.series_id, blocks.c.level).having(sa.func.count() > 1)).all()
    for start in range(0, len(in_pieces), 100):
        chunk = in_pieces[start : start + 100]
        rows = connection.execute(
            sa.select(blocks.c.series_id, blocks.c.level, blocks.c.seq, blocks.c.last_step,
                      blocks.c.count.label("entries"), blocks.c.data)
            .where(sa.tuple_(blocks.c.series_id, blocks.c.level).in_([tuple(place) for place in chunk]),
                   blocks.c.count < B.BLOCK_SIZE)
            .order_by(blocks.c.series_id, blocks.c.level, blocks.c.seq)).all()
        joins = []
        for (series_id, level), group in itertools.groupby(rows, key=lambda r: (r.series_id, r.level)):
            pieces = list(group)
            if level == 0:
                data = B.encode_points(*B.join_points([B.decode_block(piece.data) for piece in pieces]))
            else:
                data = B.encode_entries(np.concatenate([B.decode_entries(piece.data) for piece in pieces]))
            joins.append({"sid": series_id, "lvl": level, "low": pieces[0].seq, "high": pieces[-1].seq + 1,
                          "last": pieces[-1].last_step, "entries": sum(piece.entries for piece in pieces),
                          "joined": data})
        connection.execute(BlockWriter._delete_pieces, joins)
        connection.execute(_JOIN_ROW, joins)


@functools.cache
def _upsert_blocks(dialect: str) -> Any:
    """``INSERT INTO blocks ... ON CONFLICT (series_id, level, seq) DO UPDATE`` (SQLite, PostgreSQL):
    an append's rewritten last blocks in one statement instead of a delete and an insert. Only ever
    the last block of a level is rewritten, so no block past the new ones is left behind. Built
    once per dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(blocks)
    return statement.on_conflict_do_update(
        index_elements=[blocks.c.series_id, blocks.c.level, blocks.c.seq],
        set_={column: statement.excluded[column] for column in ("first_step", "last_step", "count", "data")})


def _tail_blocks(old_count: int) -> list[tuple[int, int]]:
    """The (level, seq) of the partial last block of each level that appending to a series of
    ``old_count`` points rewrites (what ``BlockWriter.append`` loads)."""
    size = B.BLOCK_SIZE
    needed = [(0, old_count // size)] if old_count % size else []
    affected, below, level = old_count, old_count, 1  # first changed entry and entries, level below
    while below > 1:
        affected //= B.FANOUT
        if affected % size:
            needed.append((level, affected // size))
        below, level = -(-below // B.FANOUT), level + 1
    return needed


def _kept(array: np.ndarray, last: int) -> np.ndarray:
    """``array[last:]`` (a level's last block) to keep until the next append: the array itself when
    that is all of it (an array this append made, which nothing changes), else a copy (a view would
    keep all of a long append's array alive)."""
    return array if last == 0 else array[last:].copy()


class _SeriesRow:
    """What ``_write_series`` needs of a series' row (read, or kept from the last append)."""

    __slots__ = ("id", "count", "first_step")

    def __init__(self, series_id: int, count: int, first_step: int | None) -> None:
        self.id, self.count, self.first_step = series_id, count, first_step


class BlockWriter:
    """Appends points to many series of one store in a few statements: the blocks that appends
    rewrite (the last of each level) are read in one query up front, and the rewritten blocks
    and series counts are written with executemany, flushed every ``FLUSH_BYTES`` of blocks."""

    FLUSH_BYTES = 64 << 20
    _update = series.update().where(series.c.id == sa.bindparam("sid")).values(
        count=sa.bindparam("new_count"), first_step=sa.bindparam("first"), last_step=sa.bindparam("last"))
    _delete_pieces = blocks.delete().where(blocks.c.series_id == sa.bindparam("sid"), blocks.c.level == sa.bindparam("lvl"),
                                           blocks.c.seq > sa.bindparam("low"), blocks.c.seq < sa.bindparam("high"))

    def __init__(self, connection: sa.Connection, targets: list[tuple[int, int]],
                 kept: dict[int, SeriesTail] | None = None) -> None:
        """``targets``: (series id, current point count) of every series that will be appended to.
        ``kept``: series tails kept from earlier appends (``TailCache.take``), used instead of
        reading the store where a series' count matches; updated with the tails ``append`` writes."""
        self.connection = connection
        self.kept = kept
        self.tails: dict[tuple[int, int, int], list[bytes]] = {}  # stored rows of a block, in order
        self.joined: set[tuple[int, int, int]] = set()  # open blocks ``load`` found stored as one row
        self.decoded: dict[tuple[int, int, int], Any] = {}
        self._upsert = _upsert_blocks(connection.dialect.name)
        self.inserts: list[dict[str, Any]] = []
        self.upserts: list[dict[str, Any]] = []
        self.updates: list[dict[str, int]] = []
        self.deletes: list[dict[str, int]] = []
        self.pending_bytes = 0
        self.load(targets)

    def load(self, targets: list[tuple[int, int]]) -> None:
        """Read the tail blocks that appending to ``targets`` ((series id, current point count)
        each) rewrites; more series may be appended to after each ``load``."""
        wanted: list[tuple[int, int, int]] = []
        for series_id, count in targets:
            needed = _tail_blocks(count)
            tail = self.kept.get(series_id) if self.kept is not None else None
            if tail is not None and tail.count == count and all(place in tail.blocks for place in needed):
                self.decoded.update(((series_id, *place), tail.blocks[place]) for place in needed)
            else:
                wanted.extend((series_id, level, seq) for level, seq in needed)
        # Each is its level's last block: the rows from its seq on (its pieces, if it is open).
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            block_of = {(series_id, level): seq for series_id, level, seq in chunk}
            rows = self.connection.execute(
                sa.select(blocks.c.series_id, blocks.c.level, blocks.c.seq, blocks.c.count.label("entries"),
                          blocks.c.data)
                .where(sa.or_(*(sa.and_(blocks.c.series_id == series_id, blocks.c.level == level, blocks.c.seq >= seq)
                                for series_id, level, seq in chunk)))
                .order_by(blocks.c.seq))
            for r in rows:
                place = (r.series_id, r.level, block_of[(r.series_id, r.level)])
                self.tails.setdefault(place, []).append(r.data)
                if B.PIECE_SIZE < r.entries < B.BLOCK_SIZE:  # more than a piece holds: a joined open block
                    self.joined.add(place)

    def _points(self, series_id: int, seq: int) -> tuple[np.ndarray, np.ndarray, B.Logged | None]:
        """The level-0 block ``seq`` of a series (steps, values, how they were logged), as ``load``
        found it."""
        kept = self.decoded.get((series_id, 0, seq))
        if kept is not None:
            return kept
        return B.join_points([B.decode_block(data) for data in self.tails[(series_id, 0, seq)]])

    def _entries(self, series_id: int, level: int, seq: int) -> np.ndarray:
        """The summary block ``seq`` of a series' ``level``, as ``load`` found it."""
        kept = self.decoded.get((series_id, level, seq))
        if kept is not None:
            return kept
        pieces = [B.decode_entries(data) for data in self.tails[(series_id, level, seq)]]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _store(self, series_id: int, level: int, seq: int, length: int, changed: int, stored: int,
               piece: Callable[[int, int], tuple[int, int, bytes]], replaces: bool, joined: bool) -> None:
        """Write a level's entries from the start of its block ``seq`` on (``length`` of them, those
        before ``changed`` stored already, ``stored`` of them in that block before): full blocks
        whole, the open block's pieces from the one holding ``changed`` on, or as one row where
        ``joined`` (``B.stored_rows``); ``piece(start, end)`` gives the first and last step and the
        encoded entries of a row. Over the old rows where ``replaces``, else new (a series' first
        points)."""
        if (series_id, level, seq) in self.joined:
            changed = 0  # stored as one row: its pieces are all written anew
        rows = []
        for offset, start, end in B.stored_rows(length, changed, joined):
            first_step, last_step, data = piece(start, end)
            rows.append(dict(series_id=series_id, level=level, seq=seq + offset, first_step=first_step,
                             last_step=last_step, count=end - start, data=data))
            self.pending_bytes += len(data)
        if B.PIECE_SIZE < stored < B.BLOCK_SIZE and (joined or length >= B.BLOCK_SIZE):  # written whole: its pieces go
            self.deletes.append({"sid": series_id, "lvl": level, "low": seq,
                                 "high": seq + B.BLOCK_SIZE // B.PIECE_SIZE})
        (self.upserts if replaces else self.inserts).extend(rows)

    def append(self, series_id: int, old_count: int, steps: np.ndarray, values: np.ndarray, first_step: int,
               *, counted: bool = False, joined: bool = False, logged: B.Logged | None = None) -> None:
        """Append points to a series: rewrite the changed rows of its last level-0 block and, level
        by level, of the summary entries the new points change (only ever the last block of each
        level). ``logged``: how the points were logged (None: as floats). ``counted``: the series' row already has its new count and first and last step (a
        series inserted with its points), so it isn't updated. ``joined``: the run ended, each
        level's open block is written as one row (and not kept for a next append)."""
        if not counted:
            self.updates.append({"sid": series_id, "new_count": old_count + len(steps), "first": first_step,
                                 "last": int(steps[-1])})
        size = B.BLOCK_SIZE
        seq = old_count // size
        new_count = old_count + len(steps)
        if old_count % size:
            steps, values, logged = B.join_points([self._points(series_id, seq), (steps, values, logged)])
        base = seq * size
        replaces = old_count > 0

        uniform = B.uniform_part(logged)  # the same for every block: not computed per block

        def points(start: int, end: int) -> tuple[int, int, bytes]:
            return int(steps[start]), int(steps[end - 1]), B.encode_points(
                steps[start:end], values[start:end],
                logged.take(slice(start, end)) if logged is not None and uniform is None else None, part=uniform)

        def entries(start: int, end: int) -> tuple[int, int, bytes]:
            chunk = current[start:end]
            return int(chunk["first_step"][0]), int(chunk["last_step"][-1]), B.encode_entries(chunk)

        self._store(series_id, 0, seq, len(steps), old_count - base, old_count - base, points, replaces, joined)
        last = (len(steps) - 1) // size * size  # each level's last block: what the series' next append rewrites
        tail: dict[tuple[int, int], Any] = {(0, seq + last // size): (
            _kept(steps, last), _kept(values, last),
            B.Logged(_kept(logged.kinds, last), _kept(logged.ints, last)) if logged is not None else None)}

        # Level 0 as entries, from the first point of the first level-1 entry the new points change on.
        below_base = old_count // B.FANOUT * B.FANOUT
        below = B.point_entries(steps[below_base - base :], values[below_base - base :])
        below_changed, below_new = old_count, below_base + len(below)  # first changed entry, entries
        stored_below = old_count  # entries the level below had before
        level = 1
        while below_new > 1:
            # The first entry at this level that the new points change: the one over the first
            # changed entry below (a partial entry below is changed, and so is the entry over it).
            affected = below_changed // B.FANOUT
            stored = -(-stored_below // B.FANOUT)
            fresh = B.summarize(below[affected * B.FANOUT - below_base :])
            seq = affected // size
            base = seq * size
            if affected > base:
                kept = self._entries(series_id, level, seq)[: affected - base]
                current = np.empty(len(kept) + len(fresh), dtype=B.ENTRY)  # (concatenate: slow on records)
                current[: len(kept)] = kept
                current[len(kept) :] = fresh
            else:
                current = fresh
            self._store(series_id, level, seq, len(current), affected - base, stored - base, entries, replaces,
                        joined)
            last = (len(current) - 1) // size * size
            tail[(level, seq + last // size)] = _kept(current, last)
            below, below_base = current, base
            below_changed, below_new, stored_below = affected, base + len(current), stored
            level += 1
        if self.kept is not None and joined:
            self.kept.pop(series_id, None)  # kept as pieces, or not at all
        elif self.kept is not None:
            self.kept[series_id] = SeriesTail(new_count, first_step, tail)
        if self.pending_bytes >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is pending: the pieces of filled-up open blocks deleted, rewritten blocks
        over the old ones, new blocks, series counts."""
        for statement, rows in ((self._delete_pieces, self.deletes), (self._upsert, self.upserts),
                                (_INSERT_BLOCKS, self.inserts), (self._update, self.updates)):
            if rows:
                sql, names = _driver_sql(self.connection, statement)
                self.connection.exec_driver_sql(sql, rows if names is None else [
                    tuple(row[name] for name in names) for row in rows])
        self.inserts, self.upserts, self.updates, self.deletes, self.pending_bytes = [], [], [], [], 0


_INSERT_BLOCKS = blocks.insert()
_DRIVER_SQL: dict[tuple[str, str, str, int], tuple[str, tuple[str, ...] | None]] = {}


def _driver_sql(connection: sa.Connection, statement: Any) -> tuple[str, tuple[str, ...] | None]:
    """A statement built once (a module's or a class's) as its dialect's driver takes it, compiled
    once per dialect, driver and parameter style, and the names of its parameters in order where the driver takes them by
    position (SQLite's ``?``; None: by name, each row a dict, as psycopg's). An append's blocks
    and counts go to the driver's ``executemany`` as they are: SQLAlchemy processing each row's
    parameters again was most of the statements' Python on a server's small appends."""
    key = (connection.dialect.name, connection.dialect.driver, connection.dialect.paramstyle, id(statement))
    found = _DRIVER_SQL.get(key)
    if found is None:
        compiled = statement.compile(dialect=connection.dialect)
        found = _DRIVER_SQL[key] = (compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None)
    return found
