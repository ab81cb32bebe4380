"""Writes an imported run as a real tracklet run: the same directory layout and record log as a
run recorded live, so the Api, the store, ``tracklet sync`` and the dashboard see nothing unusual.

The record log is written to a temporary name in the run directory and renamed into place when
complete: an import that fails half-way leaves no half run behind. ``files/import.json`` beside
it names the source (kind, identity, paths, SHA-256 of the source bytes); that marker is what
makes importing again a no-op (see :func:`check_existing`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Iterable, Sequence

from tracklet.core.decode import COLUMN_VALUE_FIELDS
from tracklet.core.encoder import HistoryEncoder, SummaryTracker, WarnOnce
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import LOG_FILE_NAME, RecordLogWriter
from tracklet.core.values import fill_entries, to_plain
from tracklet.core.wire import Message
from tracklet.proto import records_pb2 as pb
from tracklet.errors import SourceError  # noqa: F401  (defined there; imported from here too)

MARKER_NAME = "import.json"
# Rows per HistoryBatch record, as the live sender writes at most.
ROWS_PER_RECORD = 10_000
# Encoded records buffered before they are written out (the record log writer's own buffer).
FLUSH_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class SourceIdentity:
    """What an imported run came from. ``identity`` decides the tracklet run id; ``sha256`` (of
    the source bytes) tells an unchanged source from one that grew since it was imported."""

    kind: str  # "wandb", "tensorboard" or "mlflow"
    identity: str
    paths: tuple[str, ...]
    sha256: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # more an importer records (mlflow: artifacts)

    def marker(self) -> dict[str, Any]:
        from tracklet import __version__

        return {
            "source": self.kind,
            "identity": self.identity,
            "paths": list(self.paths),
            "sha256": self.sha256,
            "imported_at": time.time(),
            "tracklet_version": __version__,
            **self.extra,
        }


@dataclasses.dataclass
class ImportedRun:
    """One source run and what happened to it: ``status`` is ``imported``, ``unchanged``
    (imported before from the same bytes: nothing written) or ``changed`` (imported before, and
    the source has changed since, e.g. a run that was still going: skipped, and said so),
    ``completed`` (MLflow: imported before without its artifact files, which this import could read:
    they were added to the run, nothing else changed) or ``skipped`` (the source run could not be
    read; ``warnings`` say why; nothing written)."""

    path: str  # project/run_id
    name: str
    source: str
    status: str
    points: int = 0
    rows: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)
    without_artifacts: bool = False  # MLflow: the run's artifact files couldn't be read (a warning says why)


def read_marker(paths: RunPaths) -> dict[str, Any] | None:
    try:
        return json.loads((paths.files_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def write_marker(paths: RunPaths, marker: dict[str, Any]) -> None:
    """Replace a run's import marker (atomically: a temporary file renamed over it)."""
    temp_marker = paths.files_dir / f".{MARKER_NAME}.importing"
    temp_marker.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(temp_marker, paths.files_dir / MARKER_NAME)


def check_existing(paths: RunPaths, source: SourceIdentity) -> str | None:
    """``None`` when the run doesn't exist yet; ``"unchanged"`` or ``"changed"`` when it was
    imported from this source before. Raises when the run id is taken by something else."""
    if not paths.run_dir.exists():
        return None
    marker = read_marker(paths)
    if marker is None and not paths.log_file.exists() and _left_by_an_import(paths):
        return None  # an import killed before its commit: the run was never made (RunWriter starts over)
    if marker is None and paths.log_file.exists():
        marker = _killed_in_commit(paths, source)
    if marker is None or marker.get("source") != source.kind or marker.get("identity") != source.identity:
        raise SourceError(
            f"run {paths.project}/{paths.run_id} already exists and was not imported from this "
            f"{source.kind} run ({source.identity}); pass --project to import it into another project"
        )
    return "unchanged" if marker.get("sha256") == source.sha256 else "changed"


def _left_by_an_import(paths: RunPaths) -> bool:
    """Whether the run's directory holds only what a :class:`RunWriter` makes before its commit
    (``files/``, empty or with the marker's temporary, and the record log's temporary): an import
    killed (``kill -9``, a power cut) before the run existed, which importing again must redo
    rather than refuse as a run of another source."""
    temporaries = {f".{LOG_FILE_NAME}.importing", paths.files_dir.name}
    try:
        if any(entry.name not in temporaries for entry in paths.run_dir.iterdir()):
            return False
        return not paths.files_dir.exists() or all(entry.name == f".{MARKER_NAME}.importing"
                                                   for entry in paths.files_dir.iterdir())
    except OSError:
        return False


def _killed_in_commit(paths: RunPaths, source: SourceIdentity) -> dict[str, Any] | None:
    """A run whose import was killed between :meth:`RunWriter.commit`'s two renames (the log in
    place, the marker still its temporary): the marker put in place when it names ``source``."""
    temporary = paths.files_dir / f".{MARKER_NAME}.importing"
    try:
        marker = json.loads(temporary.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("source") != source.kind or marker.get("identity") != source.identity:
        return None
    os.replace(temporary, paths.files_dir / MARKER_NAME)
    return marker


class RunWriter:
    """Builds one run's record log, in the order a live run writes it: ``RunStart``, environment,
    config, history, console, system metrics, summary, exit. Call :meth:`commit` to put it in
    place, or :meth:`abort` to throw it away."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        paths.files_dir.mkdir(parents=True, exist_ok=True)
        self._temp = paths.run_dir / f".{LOG_FILE_NAME}.importing"
        if self._temp.exists():
            self._temp.unlink()  # left by an import that was killed
        self._writer = RecordLogWriter(self._temp)
        self.summary = SummaryTracker()
        self._warn = WarnOnce()
        self._encoder = HistoryEncoder(self.summary, self._warn)
        self.rows = 0
        self.points = 0

    def record(self, record: pb.Record | Message) -> None:
        self._writer.write(record.SerializeToString())

    def config(self, items: dict[str, Any]) -> None:
        if not items:
            return
        record = pb.Record()
        record.config.SetInParent()
        fill_entries(record.config.items, {key: to_plain(value) for key, value in items.items()})
        self.record(record)

    def define_metric(self, name: str, step_metric: str, modes: Sequence[str], hidden: bool) -> None:
        """A metric definition, applied to the summary of the history written after it in W&B's
        shape (``{mode: value}``)."""
        from tracklet.core.encoder import SUMMARY_MODES

        record = pb.Record()
        definition = record.metric_definition
        definition.name = name
        definition.step_metric = step_metric
        definition.summary.extend(SUMMARY_MODES[mode] for mode in modes)
        definition.hidden = hidden
        definition.summary_as_dict = True
        self.record(record)
        self.summary.define(name, list(modes), as_dict=True)

    def history(self, rows: Sequence[tuple]) -> None:
        """Rows are ``(step, time, keys, values)`` as ``Run.log`` queues them (rows sharing one
        keys tuple object take the encoder's fast path), in non-decreasing step order."""
        for start in range(0, len(rows), ROWS_PER_RECORD):
            chunk = rows[start : start + ROWS_PER_RECORD]
            record = self._encoder.encode(chunk)
            if record is None:  # no row of the chunk could be recorded (warned)
                continue
            self.points += sum(len(column.rows) or len(_column_values(column)) for column in record.history.columns)
            self.record(record)
            self._encoder.commit()
            self.rows += len(chunk)
            if self._writer._pending_bytes > FLUSH_BYTES:
                self._writer.flush()

    def console(self, stream: pb.ConsoleOutput.Stream, lines: Iterable[tuple[float, str]]) -> None:
        """Lines of one stream (``pb.ConsoleOutput.STREAM_STDOUT``/``STREAM_STDERR``), in order."""
        record = pb.Record()
        output = record.console
        output.stream = stream
        for when, text in lines:
            line = output.lines.add()
            line.time = when
            line.text = text
            if len(output.lines) >= 1000:
                self.record(record)
                record = pb.Record()
                output = record.console
                output.stream = stream
        if len(output.lines):
            self.record(record)

    def finish_summary(self, overrides: dict[str, Any], removed: Iterable[str] = ()) -> None:
        """The summary the history left (last values), with the source's own summary on top."""
        self.summary.set({key: to_plain(value) for key, value in overrides.items()}, removed)
        record = self.summary.take_update()
        if record is not None:
            self.record(record)

    def commit(self, source: SourceIdentity) -> None:
        """Make the run visible: the record log under its real name, and the import marker."""
        self._writer.close()
        marker = self.paths.files_dir / MARKER_NAME
        temp_marker = self.paths.files_dir / f".{MARKER_NAME}.importing"
        temp_marker.write_text(json.dumps(source.marker(), indent=2) + "\n")
        os.replace(self._temp, self.paths.log_file)
        os.replace(temp_marker, marker)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._temp.unlink(missing_ok=True)


def _column_values(column: pb.Column) -> Any:
    for field in COLUMN_VALUE_FIELDS:
        values = getattr(column, field)
        if len(values):
            return values
    return ()


def base_run_start(run_id: str, project: str, name: str, start_time: float) -> pb.Record:
    """A ``RunStart`` with what every import sets; the importer fills in what its source knows."""
    from tracklet import __version__

    record = pb.Record()
    start = record.run_start
    start.schema_version = pb.SCHEMA_VERSION_1
    start.run_id = run_id
    start.project = project
    start.name = name
    start.start_time = start_time
    start.tracklet_version = __version__
    return record


# At most this many characters of a user name a source records, as a live run keeps its OS user's.
USER_NAME_LIMIT = 256


def source_user_name(value: object) -> str:
    """A user name a source recorded, as the imported run's ``RunStart.username`` keeps it: a
    string's printable characters (no terminal escapes reach ``tracklet show``), stripped, at most
    ``USER_NAME_LIMIT``; "" for anything else. Unverified: the source file only says so, as a live
    run's OS user name is (docs/import.md, "Who ran an imported run")."""
    if not isinstance(value, str):
        return ""
    return "".join(char for char in value[: USER_NAME_LIMIT * 4] if char.isprintable()).strip()[:USER_NAME_LIMIT]


def exit_record(exit_code: int, end_time: float, start_time: float) -> pb.Record:
    record = pb.Record()
    record.exit.exit_code = int(exit_code)
    record.exit.end_time = end_time
    record.exit.runtime = max(0.0, end_time - start_time)
    return record
