"""Replays a run's record log into what the read API shows: identity, config, summary, state,
history columns, console output. Reading never modifies the log and works while it is written."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from tracklet.core import identity, seeds
from tracklet.core.decode import InvalidRecord, RecordDecoder
from tracklet.core.encoder import TrackletWarning, mode_names
from tracklet.core.history import RUNTIME, STEP, TIMESTAMP, History, StepIndex, build_history  # noqa: F401 (re-exported)
from tracklet.core.recordlog import Damage, read_log, writer_alive
from tracklet.core.summary_fold import SummaryFold
from tracklet.core.values import from_value_message
from tracklet.proto import records_pb2 as pb


@dataclasses.dataclass
class ConsoleLine:
    time: float
    stream: str
    text: str
    partial: bool = False  # not ended when recorded (the process stopped before its newline)


@dataclasses.dataclass
class Alert:
    time: float
    title: str
    text: str
    level: str


@dataclasses.dataclass
class Checkpoint:
    path: str
    sha256: str
    size_bytes: int
    step: int
    score: float | None
    monitor: str
    time: float
    metadata: dict[str, Any]
    error: str


@dataclasses.dataclass
class MetricDefinition:
    name: str
    step_metric: str
    summary: list[str]
    hidden: bool


def add_console_line(lines: list[Any], open_lines: dict[str, int], stream: str, entry: Any, partial: bool) -> None:
    """Append ``entry`` to ``lines``, or, when the stream's last line was recorded partial (text not
    ended by a newline yet), put it in that line's place; ``open_lines`` maps a stream to the index
    of its partial line. Shared by the reader and the store's ingest, so both show one line."""
    index = open_lines.pop(stream, None)
    if index is None:  # the usual case
        index = len(lines)
        lines.append(entry)
    else:
        lines[index] = entry
    if partial:
        open_lines[stream] = index


class RunState:
    """Everything a record log says, folded record by record."""

    def __init__(self) -> None:
        self.start: pb.RunStart | None = None
        self.sessions: list[pb.RunStart] = []
        # name, tags, notes, group, job_type: the first RunStart's, then each RunUpdate's changes
        self.identity: dict[str, Any] = {"name": "", "tags": [], "notes": "", "group": "", "job_type": ""}
        self.exit: pb.RunExit | None = None
        self.preempting = 0.0  # when the session said it expects to be preempted (RunUpdate.preempting); 0: not
        self.environment: pb.Environment | None = None
        self.seeds: dict[str, Any] = {}  # the last session's seeds, as RecordedRun.metadata gives them
        self.config: dict[str, Any] = {}
        self._summary = SummaryFold()
        self.metric_definitions: list[MetricDefinition] = []
        self.alerts: list[Alert] = []
        self.console: list[ConsoleLine] = []
        self._open_lines: dict[str, int] = {}  # stream -> index of its partial line in console
        self.key_names: dict[int, str] = {}
        self.batches: list[pb.HistoryBatch] = []
        self.stats: list[pb.SystemStats] = []
        self.system_info: pb.SystemInfo | None = None
        self.checkpoints: list[Checkpoint] = []
        self.media: list[pb.MediaLogged] = []  # read through tracklet.media (RecordedRun.media)
        self.tables: list[pb.TableLogged] = []  # every table version and increment, in log order
        # Trace spans (``@tracklet.op``) in the order they first appear; a span still open when it
        # was written (no end) is replaced by its finished record, if the log has one.
        self.spans: list[pb.Span] = []
        self._span_at: dict[bytes, int] = {}  # trace id + span id -> index in spans
        self.artifacts_used: list[pb.ArtifactVersionRef] = []  # ArtifactUsed records, in log order
        self.artifacts_logged: list[pb.ArtifactVersionRef] = []  # ArtifactLogged records, in log order
        self.last_step: int | None = None
        self.record_count = 0
        self.damage: Damage | None = None  # the first damaged region of the log
        self.damages: list[Damage] = []  # every damaged region, each skipped to the next intact frame
        self.invalid_records: list[InvalidRecord] = []  # intact frames that could not (all) be used
        self.invalid_count = 0  # records skipped whole
        self.partial_count = 0  # records kept without some history columns
        self._index: StepIndex | None = None
        # A shared run's secondary writers (core/parts.py): label -> its state, host, pid, ...;
        # their summary keys (``<label>/<key>``), merged into ``summary``.
        self.parts: dict[str, dict[str, Any]] = {}
        # A shared run's: the latest time any of its writers recorded (core/parts.merge_parts).
        self.merged_updated_at: float | None = None
        self.part_summary: dict[str, Any] = {}

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as the run's live tracker had it after the last record read: its last
        written summary for a run that ended cleanly; for a crashed or running run, also what
        the history logged after that implies (``tracklet.core.summary_fold``). A shared run's
        secondary writers' keys follow, under their labels (``core/parts.py``)."""
        if self.part_summary:
            return {**self._summary.values, **self.part_summary}
        return self._summary.values

    def apply(self, record: pb.Record) -> None:
        self.record_count += 1
        kind = record.WhichOneof("kind")
        if kind == "history":
            batch = record.history
            for definition in batch.new_keys:
                self.key_names[definition.id] = definition.name
            self.batches.append(batch)
            if batch.steps:
                self.last_step = batch.steps[-1]
        elif kind == "config":
            for entry in record.config.items:
                self.config[entry.key] = from_value_message(entry.value)
            for key in record.config.removed:
                self.config.pop(key, None)
        elif kind == "run_start":
            if self.start is None:
                self.start = record.run_start
                self.identity = identity.of_start(record.run_start)
            self.sessions.append(record.run_start)
            self.exit = None  # a resumed session reopens the run
            self.preempting = 0.0  # ... and is not marked preempting until it says so
            seeds.fold_session(self.seeds)
        elif kind == "run_update":
            self.identity.update(identity.changes_of(record.run_update))
            if record.run_update.preempting:
                self.preempting = record.run_update.preempting
        elif kind == "exit":
            self.exit = record.exit
            seeds.fold_exit(self.seeds, record.exit)
        elif kind == "seeds":
            seeds.fold_seeds_set(self.seeds, record.seeds)
        elif kind == "environment":
            self.environment = record.environment
        elif kind == "console":
            stream = "stderr" if record.console.stream == pb.ConsoleOutput.STREAM_STDERR else "stdout"
            for line in record.console.lines:
                add_console_line(self.console, self._open_lines, stream,
                                 ConsoleLine(line.time, stream, line.text, line.partial), line.partial)
        elif kind == "metric_definition":
            d = record.metric_definition
            self.metric_definitions.append(MetricDefinition(d.name, d.step_metric, mode_names(d.summary), d.hidden))
        elif kind == "alert":
            a = record.alert
            level = _enum_name(pb.Alert.Level, a.level).removeprefix("LEVEL_")
            self.alerts.append(Alert(a.time, a.title, a.text, level))
        elif kind == "stats":
            self.stats.append(record.stats)
        elif kind == "system_info":
            self.system_info = record.system_info
        elif kind == "checkpoint":
            c = record.checkpoint
            self.checkpoints.append(Checkpoint(
                c.path, c.sha256, c.size_bytes, c.step, c.score if c.has_score else None, c.monitor, c.time,
                {entry.key: from_value_message(entry.value) for entry in c.metadata}, c.error,
            ))
        elif kind == "media":
            self.media.append(record.media)
        elif kind == "table_logged":
            self.tables.append(record.table_logged)
        elif kind == "span":
            span = record.span
            span_key = span.trace_id + span.span_id
            index = self._span_at.get(span_key)
            if index is None:
                self._span_at[span_key] = len(self.spans)
                self.spans.append(span)
            elif not self.spans[index].end_time_unix_nano:
                self.spans[index] = span
        elif kind == "artifact_used":
            self.artifacts_used.append(record.artifact_used.artifact)
        elif kind == "artifact_logged":
            self.artifacts_logged.append(record.artifact_logged.artifact)
        # Unknown kinds (from a newer writer) are skipped.
        if kind in ("history", "summary", "metric_definition", "run_start"):
            self._summary.apply(record)  # last: should it fail, the record's own effect is kept

    @property
    def key_ids(self) -> dict[str, int]:
        return {name: key_id for key_id, name in self.key_names.items()}

    @property
    def next_step(self) -> int:
        return 0 if self.last_step is None else self.last_step + 1

    def history(self, keys: Sequence[str] | None = None) -> History:
        """The history of ``keys`` (default: every key), rows at one step merged into one. Only
        the columns of ``keys`` are read, and they are kept sparse (see ``core/history.py``)."""
        index = self._index
        if index is None or index.batch_count != len(self.batches):
            if self.parts:  # a shared run: rows of every writer merged by step (core/parts.py)
                from tracklet.core.parts import MergedStepIndex

                fresh: StepIndex = MergedStepIndex(self.batches)  # type: ignore[assignment]
            else:
                fresh = StepIndex(self.batches)
            index = self._index = fresh
        start = self.start.start_time if self.start is not None else None
        return build_history(self.batches, self.key_names, index, start, keys)

    def system_metrics(self, stat: str = "mean") -> History:
        """One row per stats window: ``_timestamp`` (window end), ``_runtime``, then one column per
        metric with its mean (``stat="mean"``) or max (``stat="max"``) in that window."""
        if stat not in ("mean", "max"):
            raise ValueError(f"stat must be 'mean' or 'max'; got {stat!r}")
        start = self.start.start_time if self.start is not None else 0.0
        times = [window.time for window in self.stats]
        columns: dict[str, list[Any]] = {}
        for row, window in enumerate(self.stats):
            for entry in window.values:
                column = columns.get(entry.name)
                if column is None:
                    column = columns[entry.name] = [None] * len(self.stats)
                column[row] = entry.value if stat == "mean" else entry.max
        history = History()
        history[TIMESTAMP] = times
        history[RUNTIME] = [t - start for t in times]
        for name in sorted(columns):
            history[name] = columns[name]
        return history


def replay(path: Path | str) -> RunState:
    """Read a record log into a :class:`RunState`: every intact, valid record, in order.

    Damaged regions are skipped to the next intact frame (``state.damages``); frames that pass
    their checksum but don't hold a usable record are skipped and counted
    (``state.invalid_records``); :func:`damage_summary` says it all in one line."""
    state = RunState()
    result = read_log(path, resync=True)
    decoder = RecordDecoder()
    decoder.fold(result.payloads, state.apply)
    state.damages = sorted([*result.damages, *decoder.gaps], key=lambda damage: damage.offset)
    state.damage = state.damages[0] if state.damages else None
    state.invalid_records = decoder.invalid
    state.invalid_count = decoder.invalid_count
    state.partial_count = decoder.partial_count
    return state


def _enum_name(enum: Any, number: int) -> str:
    """An enum value's name; a number a newer writer added reads as ``UNKNOWN_<n>``."""
    try:
        return enum.Name(number)
    except ValueError:
        return f"UNKNOWN_{number}"


def damage_summary(state: RunState, live: bool = False) -> str | None:
    """What of the log could not be read, in one line starting with "damaged", or ``None`` when
    all of it was. A live writer's incomplete last frame is not damage (it is being written)."""
    damages = [d for d in state.damages if not (live and d.torn_tail)]
    parts = []
    if damages:
        first = damages[0]
        text = f"at byte {first.offset} ({first.reason})"
        if len(damages) > 1:
            text += f" and {len(damages) - 1} more region(s) (" + ", ".join(
                f"byte {d.offset}: {d.reason}" for d in damages[1:4]) + (", ..." if len(damages) > 4 else "") + ")"
        text += f": {sum(d.length for d in damages)} byte(s) skipped"
        resumed = [d.end for d in damages if d.end is not None]
        if resumed:
            text += f", reading resumed at the next intact frame (byte {resumed[0]}" + (", ..." if len(resumed) > 1 else "") + ")"
        if damages[-1].end is None:
            text += f", nothing readable from byte {damages[-1].offset} to the end"
        parts.append(text)
    if state.invalid_count:
        details = "; ".join(r.describe() for r in state.invalid_records if r.whole)
        parts.append(f"{state.invalid_count} invalid record(s) skipped ({_clip(details)})")
    if state.partial_count:
        details = "; ".join(r.describe() for r in state.invalid_records if not r.whole)
        parts.append(f"{state.partial_count} record(s) read without some history columns ({_clip(details)})")
    if not parts:
        return None
    return "damaged " + "; ".join(parts) if damages else "damaged: " + "; ".join(parts)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_state_label(state: RunState, log_file: Path | str) -> str:
    """``running``, ``finished``, ``failed`` or ``crashed`` (no exit record and no live writer)."""
    if state.exit is not None:
        return "finished" if state.exit.exit_code == 0 else "failed"
    alive = writer_alive(log_file)
    if alive is None:
        return "running"
    return "running" if alive else "crashed"


def warn_damage(state: RunState, log_file: Path | str, live: bool) -> None:
    summary = damage_summary(state, live)
    if summary is None:
        return  # a live writer's last frame may simply be half-written
    warnings.warn(f"tracklet: record log {log_file} is {summary}; every other record was read",
                  TrackletWarning, stacklevel=3)


def keys_in_logged_order(records: Iterable[Any]) -> list[str]:
    """The keys of ``records`` (``MediaLogged`` or ``TableLogged`` messages) in the order first
    logged: by the step and time of each key's first record, not the records' order in the log,
    since the worker stores each key on its own lane and a small item logged later can be
    recorded before a larger earlier one (one key's records keep their order)."""
    first: dict[str, tuple[int, float]] = {}
    for record in records:
        first.setdefault(record.key, (record.step, record.time))
    return sorted(first, key=first.__getitem__)
