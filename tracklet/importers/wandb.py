"""``tracklet import wandb``: W&B offline runs (``wandb/offline-run-*/run-*.wandb``) → tracklet runs.

A ``.wandb`` file is W&B's own record of a run: framed (see :mod:`.leveldblog`) protobuf records
whose schema subset lives in ``proto/tracklet/proto/wandb_import.proto``. What is mapped:

- ``run``: id (the tracklet run id when it is a valid one), name, project, tags, group, job
  type, notes, start time, host; ``environment``: OS, Python, program and arguments, working
  directory, executable, git commit and remote, CPU model and count, memory, and the user name
  (``username``; from ``files/wandb-metadata.json`` for W&B versions that wrote it only there):
  the run's ``metadata["username"]``, unverified, as a live run's OS user is.
- ``config`` (the run record's and later updates): plain values, ``_wandb`` dropped. A config in
  W&B's upload shape (``{"key": {"value": ..., "desc": ...}}``) is unwrapped.
- ``history``: one tracklet row per W&B row at its ``_step``, with its ``_timestamp``; numbers,
  bools and strings as logged, nested dicts flattened with ``/`` as ``run.log`` does,
  ``wandb.Histogram`` as a tracklet histogram. Media (images, tables, ...) are dropped, counted.
  W&B writes a float with an integral value as an integer (``1.0`` → ``1``); a key with float
  values elsewhere gets floats throughout.
- ``summary``: W&B's final summary over the history's last values; ``_wandb``, ``_step``,
  ``_runtime`` and ``_timestamp`` dropped.
- ``output_raw``/``output``: console lines per stream with their times; ``stats``: system
  metrics (:mod:`.wandb_stats`); ``alert``: alerts; ``exit``: exit code and end time (a run
  without an exit record stays ``crashed``, as W&B shows it).

- ``metric``: ``define_metric`` definitions (key or glob, step metric, hidden, the summary modes
  tracklet keeps: min, max, mean, last, none); a defined key's summary keeps W&B's shape
  (``{"min": 0.02}``), as the W&B compatibility layer records it.

Not imported: files, artifacts, telemetry, the sweep id and entity.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from tracklet.compat import WANDB_DEFAULT_PROJECT
from tracklet.core.encoder import TrackletWarning
from tracklet.core.layout import RunPaths, check_name, is_valid_name
from tracklet.core.stack import user_stacklevel
from tracklet.core.values import Histogram, flatten
from tracklet.core.redact import redact_command, redact_url
from tracklet.importers import leveldblog
from tracklet.importers.wandb_stats import stats_records
from tracklet.importers.writer import (
    ImportedRun,
    RunWriter,
    SourceError,
    SourceIdentity,
    base_run_start,
    check_existing,
    exit_record,
    source_user_name,
)
from tracklet.proto import records_pb2 as pb
from tracklet.proto import wandb_import_pb2 as wpb

RESERVED = ("_step", "_timestamp", "_runtime")
_SUMMARY_MODES = ("min", "max", "mean", "last", "first", "none")  # W&B's modes that tracklet's summary tracker keeps
_WANDB_SUMMARY_FIELDS = ("min", "max", "mean", "best", "last", "first", "copy")  # those that give {mode: value}
DEFAULT_PROJECT = WANDB_DEFAULT_PROJECT  # what W&B calls a run's project when none was given
_STDOUT = wpb.OutputRecord.STDOUT

Progress = Callable[[int, int], None]

# The metadata file W&B keeps in a run directory's files/ (for older versions, the only place they
# wrote the user name); read for that name alone, at most this many bytes.
METADATA_FILE = "wandb-metadata.json"
METADATA_LIMIT = 1 << 20


# ---------------------------------------------------------------- finding runs


def find_run_files(path: Path) -> list[Path]:
    """The ``.wandb`` files under ``path``: the file itself, a run directory, a ``wandb/``
    directory of run directories, or a directory holding ``wandb/``."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".wandb":
            raise SourceError(f"{path} is not a .wandb file (W&B offline runs are wandb/offline-run-*/run-*.wandb)")
        return [path]
    found = sorted(path.glob("*.wandb"))
    if not found:
        found = sorted(path.glob("*/*.wandb"))
    if not found and (path / "wandb").is_dir():
        found = sorted((path / "wandb").glob("*/*.wandb"))
    if not found:
        raise SourceError(f"no W&B run files (run-*.wandb) in {path} or its run directories")
    unique: dict[Path, Path] = {}
    for file in sorted(found, key=lambda f: f.parent.is_symlink()):  # wandb/latest-run links to a run directory
        unique.setdefault(file.resolve(), file)
    return sorted(unique.values())


# ---------------------------------------------------------------- reading one run


def _path(item: Any) -> str | tuple[str, ...]:
    parts = tuple(item.nested_key) or (item.key,)
    return parts[0] if len(parts) == 1 else parts


def _parts(path: str | tuple[str, ...]) -> tuple[str, ...]:
    return (path,) if isinstance(path, str) else path


def _set_nested(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[path[-1]] = value


def _loads(text: str) -> Any:
    return json.loads(text) if text else None


def _plain_items(items: wpb.MergedItems) -> bool:
    """Whether merged items pair up: each had one ``nested_key`` and one ``value_json``."""
    return not (items.key or items.none or items.boolean or items.integer or items.number or items.text
                or items.json) and len(items.nested_key) == len(items.value_json)


def wandb_histogram(value: dict[str, Any]) -> Histogram | None:
    """A W&B histogram (``{"_type": "histogram", "values": counts, "bins": edges}``), or None
    when its shape is not one tracklet can hold (then the key is dropped, counted)."""
    counts, edges = value.get("values"), value.get("bins")
    if not isinstance(counts, list) or not isinstance(edges, list) or len(edges) != len(counts) + 1:
        return None
    try:
        return Histogram._raw([float(e) for e in edges], [max(0, int(round(c))) for c in counts])
    except (TypeError, ValueError, OverflowError):
        return None


class WandbRun:
    """Everything one ``.wandb`` file says, folded record by record.

    History and summary records, nearly all of a file, are read through the merged views of
    ``wandb_import.proto`` (one C-level parse per record, no Python object per item); a record
    those can't pair up (nested keys, typed values) is read item by item through ``Record``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run: wpb.RunRecord | None = None
        self.environment = wpb.EnvironmentRecord()
        self.config: dict[Any, str] = {}
        self.summary: dict[Any, str] = {}
        self.rows: list[tuple] = []
        self.console: dict[pb.ConsoleOutput.Stream, list[tuple[float, str]]] = {}
        self.stats: list[tuple[float, dict[str, float]]] = []
        self.alerts: list[wpb.AlertRecord] = []
        self.metrics: list[wpb.MetricRecord] = []  # define_metric() calls, in order
        self.exit: wpb.RunExitRecord | None = None
        self.last_time = 0.0
        self.dropped: dict[str, str] = {}  # key -> why
        self.damage: leveldblog.Damage | None = None
        self.sha256 = ""
        self._keysets: dict[tuple, tuple] = {}
        self._kinds: set[tuple[tuple, tuple]] = set()  # (keys, value types) of fast-path rows
        self._slow_types: dict[str, set[type]] = {}
        self._summary_memo: dict[bytes, list[tuple[Any, str]]] = {}
        self._payloads: list[bytes] = []

    # ------------------------------------------------------------ reading

    def read(self, progress: Progress | None = None) -> "WandbRun":
        """Read and fold the whole file."""
        return self.load(self.path.read_bytes()).fold(progress)

    def load(self, data: bytes) -> "WandbRun":
        """Check the framing and find the run record, without folding the rest: enough to tell
        whether this file was imported before."""
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            result = leveldblog.scan(data)
        except leveldblog.NotAWandbFile as error:
            raise SourceError(f"{self.path}: {error}") from None
        self.damage = result.damage
        self._payloads = [payload for _, payload in result.payloads]
        view = wpb.RecordView()
        for payload in self._payloads[:64]:  # the run record comes right after the header
            view.ParseFromString(payload)
            if view.WhichOneof("record_type") is None:
                try:
                    record = wpb.Record.FromString(payload)
                except Exception:
                    continue
                if record.WhichOneof("record_type") == "run":
                    self.run = record.run
                    break
        return self

    def fold(self, progress: Progress | None = None) -> "WandbRun":
        total = len(self._payloads)
        view = wpb.RecordView()
        for index, payload in enumerate(self._payloads):
            try:
                view.ParseFromString(payload)
                kind = view.WhichOneof("record_type")
                if kind == "history" and self._history_fast(view.history):
                    pass
                elif kind == "summary" and self._summary_fast(view.summary, payload):
                    pass
                else:
                    self._apply(wpb.Record.FromString(payload))
            except Exception:  # a checksummed record that isn't a W&B record: not ours to guess at
                self.dropped[f"record {index}"] = "unreadable record"
                continue
            if progress is not None and index % 8192 == 0:
                progress(index, total)
        if progress is not None:
            progress(total, total)
        self._payloads = []
        return self

    def _apply(self, record: wpb.Record) -> None:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            self._history(record.history)
        elif kind == "summary":
            self._fold(self.summary, record.summary)
        elif kind == "output_raw":
            self._output(record.output_raw, raw=True)
        elif kind == "output":
            self._output(record.output, raw=False)
        elif kind == "config":
            self._fold(self.config, record.config)
        elif kind == "stats":
            self._stats(record.stats)
        elif kind == "run":
            if self.run is None or not self.run.run_id:
                self.run = record.run
            self._fold(self.config, record.run.config)
            self._fold(self.summary, record.run.summary)
        elif kind == "environment":
            self.environment.MergeFrom(record.environment)
        elif kind == "exit":
            self.exit = record.exit
        elif kind == "alert":
            self.alerts.append(record.alert)
        elif kind == "metric":
            if (record.metric.name or record.metric.glob_name) and not record.metric.expanded_from_glob:
                self.metrics.append(record.metric)

    @staticmethod
    def _fold(target: dict[Any, str], update: Any) -> list[tuple[Any, str]] | None:
        """Apply a config or summary update; returns its (path, json) pairs when replaying them
        alone is equivalent (no removals, no whole dicts), so an identical record can be."""
        pairs: list[tuple[Any, str]] | None = []
        for item in update.update:
            path = _path(item)
            if item.value_json[:1] == "{":  # a whole dict replaces what was set below it
                parts = _parts(path)
                for key in [k for k in target if len(_parts(k)) > len(parts) and _parts(k)[: len(parts)] == parts]:
                    del target[key]
                pairs = None
            target[path] = item.value_json
            if pairs is not None:
                pairs.append((path, item.value_json))
        for item in update.remove:
            parts = _parts(_path(item))
            for key in [k for k in target if _parts(k)[: len(parts)] == parts]:
                del target[key]
            pairs = None
        return pairs

    def _summary_fast(self, view: wpb.SummaryView, payload: bytes) -> bool:
        """Fold a summary record; False when it must be read through ``Record`` instead."""
        update = view.update
        if len(view.remove.nested_key) or len(view.remove.key) or not _plain_items(update):
            if len(payload) >= 512:
                return False
            # W&B repeats some small summary records (its own runtime) row after row: fold each
            # distinct one once, then replay its pairs
            content = view.SerializeToString()
            memo = self._summary_memo.get(content)
            if memo is not None:
                self.summary.update(memo)
                return True
            pairs = self._fold(self.summary, wpb.Record.FromString(payload).summary)
            if pairs is not None:
                if len(self._summary_memo) >= 1024:
                    self._summary_memo.clear()
                self._summary_memo[content] = pairs
            return True
        texts = "\n".join(update.value_json)  # JSON text never holds a raw newline
        if texts.startswith("{") or "\n{" in texts:
            return False
        self.summary.update(zip(update.nested_key, update.value_json))
        return True

    def _history_fast(self, view: wpb.HistoryView) -> bool:
        items = view.item
        if not _plain_items(items):
            return False
        try:
            values = json.loads("[" + ",".join(items.value_json) + "]")
        except ValueError:
            return False
        row = dict(zip(items.nested_key, values))
        if len(row) != len(values):
            return False
        self._finish_row(row, view.step.num)
        return True

    def _history(self, history: wpb.HistoryRecord) -> None:
        """The general path: nested keys, typed values."""
        row: dict[str, Any] = {}
        for item in history.item:
            _set_nested(row, _parts(_path(item)), _typed_value(item))
        self._finish_row(row, history.step.num)

    def _finish_row(self, row: dict[str, Any], step_num: int) -> None:
        step = row.pop("_step", None)
        when = row.pop("_timestamp", None)
        row.pop("_runtime", None)
        if type(when) in (int, float):
            self.last_time = float(when)
        step = int(step) if type(step) in (int, float) else step_num
        keys = tuple(sorted(row))
        values = tuple(map(row.__getitem__, keys))
        kinds = tuple(map(type, values))
        if dict in kinds or list in kinds:
            row = self._convert({key: row[key] for key in keys})
            keys, values = tuple(row), tuple(row.values())
            for key, value in zip(keys, values):
                self._slow_types.setdefault(key, set()).add(type(value))
        else:
            self._kinds.add((self._keysets.setdefault(keys, keys), kinds))
        self.rows.append((step, self.last_time, self._keysets.setdefault(keys, keys), values))

    def _convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Histograms and nested dicts to what tracklet logs; media dropped (and counted)."""
        out: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, dict):
                kind = value.get("_type")
                if kind == "histogram":
                    histogram = wandb_histogram(value)
                    if histogram is not None:
                        out[key] = histogram
                    else:
                        self.dropped.setdefault(key, "histogram of an unexpected shape")
                elif isinstance(kind, str):
                    self.dropped.setdefault(key, f"W&B {kind} (media is not imported)")
                else:
                    out.update(self._convert(flatten(value, key + "/")))
            else:
                out[key] = value
        return out

    def _output(self, output: Any, raw: bool) -> None:
        when = output.timestamp.seconds + output.timestamp.nanos / 1e9
        stream = pb.ConsoleOutput.STREAM_STDOUT if output.output_type == _STDOUT else pb.ConsoleOutput.STREAM_STDERR
        text = output.line if raw else output.line + "\n"
        self.console.setdefault(stream, []).append((when, text))

    def _stats(self, stats: wpb.StatsRecord) -> None:
        when = stats.timestamp.seconds + stats.timestamp.nanos / 1e9
        values = {}
        for item in stats.item:
            try:
                value = float(json.loads(item.value_json))
            except (ValueError, TypeError):
                continue
            values[item.key] = value
        self.stats.append((when, values))

    # ------------------------------------------------------------ results

    def history_rows(self) -> list[tuple]:
        """The rows, with integral values of float keys made floats again (see the module doc)."""
        types = {key: set(kinds) for key, kinds in self._slow_types.items()}
        for keys, kinds in self._kinds:
            for key, kind in zip(keys, kinds):
                types.setdefault(key, set()).add(kind)
        mixed = {key for key, kinds in types.items() if int in kinds and float in kinds}
        if not mixed:
            return self.rows
        positions: dict[tuple, tuple[int, ...]] = {}
        rows = []
        for row in self.rows:
            keys = row[2]
            where = positions.get(keys)
            if where is None:
                where = positions[keys] = tuple(i for i, key in enumerate(keys) if key in mixed)
            if where and any(type(row[3][i]) is int for i in where):
                values = list(row[3])
                for i in where:
                    if type(values[i]) is int:
                        values[i] = float(values[i])
                row = (row[0], row[1], keys, tuple(values))
            rows.append(row)
        return rows

    def config_dict(self) -> dict[str, Any]:
        config = _unflatten(self.config)
        config.pop("_wandb", None)
        if config and all(isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"}
                          for v in config.values()):
            config = {key: value["value"] for key, value in config.items()}  # W&B's upload shape
        return config

    def metric_definitions(self) -> list[tuple[str, str, list[str], bool]]:
        """``(name or glob, step metric, summary modes tracklet keeps, hidden)`` per definition."""
        found = []
        for metric in self.metrics:
            modes = [mode for mode in _SUMMARY_MODES if getattr(metric.summary, mode)]
            found.append((metric.name or metric.glob_name, metric.step_metric, modes, metric.options.hidden))
        return found

    def _summarised(self, key: str) -> bool:
        """Whether ``define_metric(summary=...)`` covers ``key`` (the last matching definition)."""
        covered = False
        for metric in self.metrics:
            pattern = metric.name or metric.glob_name
            if pattern == key or (metric.glob_name and fnmatch.fnmatchcase(key, metric.glob_name)):
                covered = any(getattr(metric.summary, mode) for mode in _WANDB_SUMMARY_FIELDS)
        return covered

    def summary_dict(self) -> dict[str, Any]:
        """W&B's final summary; a ``define_metric(summary=...)`` key keeps W&B's shape
        (``{"min": 0.02}``), other nested dicts are flattened as ``run.log`` does."""
        summary = _unflatten(self.summary)
        for key in ("_wandb", *RESERVED):
            summary.pop(key, None)
        shaped = {key: summary.pop(key) for key in list(summary)
                  if isinstance(summary[key], dict) and "_type" not in summary[key] and self._summarised(key)}
        return {**self._convert(summary), **shaped}

    def console_lines(self, stream: pb.ConsoleOutput.Stream) -> list[tuple[float, str]]:
        """The stream's text split into lines, each with the time its first character was
        written; a carriage return keeps what follows it (a progress bar's last state)."""
        lines: list[tuple[float, str]] = []
        pending, since = "", None
        for when, text in self.console.get(stream, ()):
            if since is None:
                since = when
            parts = (pending + text).split("\n")
            for part in parts[:-1]:
                lines.append((since, part[part.rfind("\r") + 1 :] if "\r" in part else part))
                since = when
            pending = parts[-1]
            if not pending:
                since = None
        if pending:
            lines.append((since if since is not None else 0.0, pending[pending.rfind("\r") + 1 :]))
        return lines

    def user_name(self) -> str:
        """Who ran the run, as W&B recorded it (unverified): the environment record's ``username``
        (newer versions, 0.31 for one, write it when the script set ``WANDB_USERNAME`` or
        ``wandb.Settings(username=...)``), else the ``username`` of ``files/wandb-metadata.json``
        beside the run file (older versions wrote it only there); "" when neither names one."""
        return source_user_name(self.environment.username) or self._metadata_user_name()

    def _metadata_user_name(self) -> str:
        where = self.path.parent / "files" / METADATA_FILE
        if not where.is_file():  # none (W&B 0.31 offline writes none), or a FIFO or device: never opened
            return ""
        try:
            with where.open("rb") as file:
                data = file.read(METADATA_LIMIT + 1)
        except OSError as error:
            return self._no_metadata(f"unreadable ({error.strerror or error})")
        if len(data) > METADATA_LIMIT:
            return self._no_metadata(f"larger than {METADATA_LIMIT >> 20} MiB")
        try:
            metadata = json.loads(data)
        except (ValueError, RecursionError) as error:
            return self._no_metadata(f"not JSON ({str(error)[:200]})")
        if not isinstance(metadata, dict):
            return self._no_metadata("not a JSON object")
        return source_user_name(metadata.get("username"))

    def _no_metadata(self, why: str) -> str:
        self.dropped[f"files/{METADATA_FILE}"] = why + " (read for the run's user name)"
        return ""

    @property
    def start_time(self) -> float:
        if self.run is not None and self.run.HasField("start_time"):
            return self.run.start_time.seconds + self.run.start_time.nanos / 1e9
        if self.environment.HasField("started_at"):
            return self.environment.started_at.seconds + self.environment.started_at.nanos / 1e9
        return self.rows[0][1] if self.rows else 0.0

    @property
    def end_time(self) -> float:
        latest = [self.last_time, self.start_time]
        latest += [chunks[-1][0] for chunks in self.console.values() if chunks]
        if self.stats:
            latest.append(self.stats[-1][0])
        if self.exit is not None and self.exit.runtime > 0:
            latest.append(self.start_time + self.exit.runtime)
        return max(latest)


def _typed_value(item: Any) -> Any:
    which = item.WhichOneof("value")
    if which is None:
        return _loads(item.value_json)
    if which == "none":
        return None
    if which == "json":
        return _loads(item.json)
    return getattr(item, which)


def _unflatten(raw: dict[Any, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(raw, key=lambda p: len(_parts(p))):  # whole dicts first, then what was set inside
        try:
            value = _loads(raw[path])
        except ValueError:
            continue
        _set_nested(out, _parts(path), value)
    return out


# ---------------------------------------------------------------- writing one run


def tracklet_run_id(wandb_id: str) -> str:
    """The W&B run id when it is a valid tracklet run id (W&B's generated ids always are),
    else a stable digest of it."""
    if is_valid_name(wandb_id):
        return wandb_id
    return "wandb-" + hashlib.sha256(wandb_id.encode()).hexdigest()[:12]


def _run_start(source: WandbRun, run_id: str, project: str) -> pb.Record:
    info = source.run or wpb.RunRecord()
    env = source.environment
    record = base_run_start(run_id, project, info.display_name or run_id, source.start_time)
    start = record.run_start
    start.tags.extend(info.tags)
    start.group = info.run_group
    start.job_type = info.job_type
    start.notes = info.notes
    start.host = info.host or env.host
    start.python_version = env.python.split()[-1] if env.python else ""
    start.platform = env.os
    program = [p for p in (env.executable, env.program or env.code_path) if p]
    if program or env.args:
        start.command.extend(redact_command([*program, *env.args]))
    start.cwd = env.root
    start.username = source.user_name()
    return record


def _environment(source: WandbRun) -> pb.Record | None:
    env = source.environment
    git = env.git if env.HasField("git") else (source.run.git if source.run is not None else wpb.GitRepoRecord())
    record = pb.Record()
    out = record.environment
    out.hostname = env.host or (source.run.host if source.run is not None else "")
    out.os = env.os
    out.cpu_model = env.cpu.model
    out.cpu_count = env.cpu_count_logical or env.cpu.count_logical or env.cpu_count
    out.memory_total_bytes = float(env.memory.total)
    out.executable = env.executable
    out.git_commit = git.commit
    out.git_remote = redact_url(git.remote_url)
    if env.gpu_type:
        out.gpus.extend([env.gpu_type] * max(1, env.gpu_count))
    return record if out.ByteSize() else None


def _load(path: Path) -> WandbRun:
    source = WandbRun(path).load(path.read_bytes())
    if source.run is None:
        raise SourceError(f"{path}: no run record in the first intact records; is this a W&B run file?")
    return source


def _wandb_id(source: WandbRun) -> str:
    assert source.run is not None
    return source.run.run_id or source.path.stem.removeprefix("run-")


def import_run_file(path: Path, root: Path, project: str | None = None,
                    progress: Progress | None = None) -> ImportedRun:
    """Import one ``.wandb`` file into the data root; a no-op when it was imported before."""
    report = None if progress is None else (lambda _file, done, total: progress(done, total))
    return import_sessions([_load(path)], root, project, report)


def _session_order(source: WandbRun) -> tuple[float, str]:
    return (source.start_time, str(source.path))


def import_sessions(sessions: list[WandbRun], root: Path, project: str | None = None,
                    progress: Callable[[Path, int, int], None] | None = None) -> ImportedRun:
    """Import the sessions of one W&B run (loaded, not yet folded) as one tracklet run.

    W&B writes one offline run directory per ``wandb.init(id=..., resume=...)`` session, all with
    the run's id. They become one run, one tracklet session each, in the order they started.
    W&B restarts the step at 0 in each offline session (it cannot know the last step offline); a
    session whose first step is not past the previous session's last step continues after it, as
    a resumed tracklet run does."""
    sessions = sorted(sessions, key=_session_order)
    first = sessions[0]
    assert first.run is not None
    wandb_id = _wandb_id(first)
    run_id = tracklet_run_id(wandb_id)
    target_project = project or first.run.project or DEFAULT_PROJECT
    paths = RunPaths(root, target_project, run_id)
    digest = first.sha256 if len(sessions) == 1 else hashlib.sha256(
        "\n".join(source.sha256 for source in sessions).encode()).hexdigest()
    identity = SourceIdentity("wandb", f"{first.run.entity}/{first.run.project}/{wandb_id}".lstrip("/"),
                              tuple(str(source.path.resolve()) for source in sessions), digest)
    name = next((s.run.display_name for s in reversed(sessions) if s.run is not None and s.run.display_name), run_id)
    result = ImportedRun(f"{target_project}/{run_id}", name, ", ".join(str(s.path) for s in sessions), "imported")
    for source in sessions:
        if source.damage is not None:
            message = "W&B run file " + source.damage.describe(source.path)
            result.warnings.append(message)
            warnings.warn("tracklet: " + message, TrackletWarning, stacklevel=user_stacklevel())
    existing = check_existing(paths, identity)
    if existing is not None:
        result.status = existing
        return result
    for source in sessions:
        report = None if progress is None else (lambda done, total, file=source.path: progress(file, done, total))
        source.fold(report)
    writer = RunWriter(paths)
    try:
        _write(writer, sessions, run_id, target_project)
        writer.commit(identity)
    except BaseException:
        writer.abort()
        raise
    result.points, result.rows = writer.points, writer.rows
    dropped: dict[str, str] = {}
    for source in sessions:
        for key, why in source.dropped.items():
            dropped.setdefault(key, why)
    for key, why in dropped.items():
        result.warnings.append(f"{key}: {why}; not imported")
    return result


def _continue_steps(rows: list[tuple], last_step: int | None) -> list[tuple]:
    """A later session's rows, moved past ``last_step`` when they start at or before it."""
    if last_step is None or not rows or rows[0][0] > last_step:
        return rows
    offset = last_step + 1 - rows[0][0]
    return [(step + offset, when, keys, values) for step, when, keys, values in rows]


def _write(writer: RunWriter, sessions: list[WandbRun], run_id: str, project: str) -> None:
    levels = {"INFO": pb.Alert.LEVEL_INFO, "WARN": pb.Alert.LEVEL_WARN, "ERROR": pb.Alert.LEVEL_ERROR}
    defined: set[tuple] = set()
    last_step: int | None = None
    for index, source in enumerate(sessions):
        start = _run_start(source, run_id, project)
        start.run_start.resumed = index > 0
        writer.record(start)
        environment = _environment(source)
        if environment is not None:
            writer.record(environment)
        writer.config(source.config_dict())
        for definition in source.metric_definitions():
            key = (definition[0], definition[1], tuple(definition[2]), definition[3])
            if key not in defined:
                defined.add(key)
                writer.define_metric(*definition)
        rows = _continue_steps(source.history_rows(), last_step)
        if rows:
            last_step = rows[-1][0]
        writer.history(rows)
        for stream in sorted(source.console):
            writer.console(stream, source.console_lines(stream))
        for record in stats_records(source.stats):
            writer.record(record)
        for alert in source.alerts:
            record = pb.Record()
            record.alert.title, record.alert.text = alert.title, alert.text
            record.alert.level = levels.get(alert.level.upper(), pb.Alert.LEVEL_INFO)
            record.alert.time = source.last_time
            writer.record(record)
        writer.finish_summary(source.summary_dict())
        if source.exit is not None:
            writer.record(exit_record(source.exit.exit_code, source.end_time, source.start_time))


def import_wandb(path: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                 progress: Callable[[Path, int, int], None] | None = None) -> list[ImportedRun]:
    """Import every W&B offline run under ``path`` (see :func:`find_run_files`) into the data
    root (default: ``$TRACKLET_DIR`` or the per-user one). The run directories of one resumed
    run (same run id and project) become one run (:func:`import_sessions`). Returns one
    :class:`ImportedRun` per run, ``status="unchanged"`` for those imported before."""
    from tracklet.importers import data_root

    if project is not None:
        check_name("project", project)  # before reading anything
    target = data_root(root)
    by_name: dict[str, list[Path]] = {}
    for file in find_run_files(Path(path)):
        by_name.setdefault(file.stem, []).append(file)  # run-<id>.wandb: one run's sessions share the name
    results = []
    for files in by_name.values():
        runs: dict[tuple[str, str, str], list[WandbRun]] = {}
        for file in files:
            source = _load(file)
            assert source.run is not None
            runs.setdefault((source.run.entity, source.run.project, _wandb_id(source)), []).append(source)
        for sessions in sorted(runs.values(), key=lambda found: _session_order(min(found, key=_session_order))):
            results.append(import_sessions(sessions, target, project, progress))
    return results


__all__ = ["WandbRun", "find_run_files", "import_run_file", "import_sessions", "import_wandb", "tracklet_run_id"]
