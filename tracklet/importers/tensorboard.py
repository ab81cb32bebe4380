"""``tracklet import tensorboard``: TensorBoard event files → tracklet runs.

Every directory under LOGDIR that holds ``events.out.tfevents.*`` files is a TensorBoard run and
becomes one tracklet run, named by its path under LOGDIR, with these exceptions, which are
folded into their parent directory's run (when the parent holds event files too), because that
is how the writers made them:

- ``SummaryWriter.add_scalars(main_tag, {tag: value})`` writes each ``tag`` into a child
  directory ``<main_tag>_<tag>``; it becomes the key ``main_tag/tag`` of the parent run.
- ``SummaryWriter.add_hparams(hparams, metrics)`` writes a child directory holding the hparams
  plugin's session record and the metrics; the hparams become the parent run's config and the
  metrics its keys.

Per event: ``simple_value`` and scalar tensors (plugin ``scalars``, as newer writers write them)
become numbers (float32 values exactly), ``histo`` and TF2 histogram tensors become tracklet
histograms, text tensors become strings; images, audio and other plugins are dropped (counted).
A row per step, at the latest wall time of that step's events (tracklet keeps one time per
step). No exit status exists in TensorBoard: a run is recorded as finished at its last event.
Nor does an event file name who wrote it (only the host, in its file name): an imported run has
no user (``run.user`` None), never the importing machine's.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tracklet.core.encoder import TrackletWarning
from tracklet.core.layout import RunPaths, check_name
from tracklet.core.values import Histogram
from tracklet.importers import tfrecord
from tracklet.importers.writer import (
    ImportedRun,
    RunWriter,
    SourceError,
    SourceIdentity,
    base_run_start,
    check_existing,
    exit_record,
)
from tracklet.proto import tensorboard_import_pb2 as tbpb

DEFAULT_PROJECT = "tensorboard"
EVENT_FILE = re.compile(r"(^|\.)tfevents\.")
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8", 10: "?", 19: "<f2"}
_FLOAT_TAGS = {"scalars"}

Progress = Callable[[int, int], None]


def is_event_file(path: Path) -> bool:
    return path.is_file() and EVENT_FILE.search(path.name) is not None


def find_run_dirs(logdir: Path) -> list[Path]:
    """Directories under ``logdir`` (itself included) that hold event files, sorted."""
    logdir = Path(logdir)
    if not logdir.exists():
        raise SourceError(f"{logdir}: no such directory")
    if logdir.is_file():
        raise SourceError(f"{logdir} is a file; pass the log directory that holds event files")
    found = set()
    for directory, _, files in os.walk(logdir, followlinks=False):
        if any(EVENT_FILE.search(name) for name in files):
            found.add(Path(directory))
    if not found:
        raise SourceError(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}")
    return sorted(found)


class TensorBoardRun:
    """The events of one run directory (and the child directories folded into it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[Path] = []
        self.points: dict[str, dict[int, Any]] = {}  # key -> step -> value
        self.times: dict[int, float] = {}  # step -> latest wall time
        self.config: dict[str, Any] = {}
        self.first_time: float | None = None
        self.last_time = 0.0
        self.dropped: dict[str, str] = {}
        self.damaged: list[str] = []
        self.has_hparams = False

    def read_file(self, path: Path, key_for: Callable[[str], str] = str, progress: Progress | None = None,
                  data: bytes | None = None) -> None:
        if data is None:
            data = path.read_bytes()
        self.files.append(path)
        result = tfrecord.scan(data)
        if result.damage is not None:
            self.damaged.append("TensorBoard event file " + result.damage.describe(path))
        total = len(result.payloads)
        parse = tbpb.Event.FromString
        first, last = self.first_time, self.last_time
        points, times = self.points, self.times
        keys: dict[str, dict[int, Any]] = {}  # tag -> that key's points, for this file
        for index, (_, payload) in enumerate(result.payloads):
            try:
                event = parse(payload)
            except Exception:
                self.dropped[f"{path.name} record {index}"] = "not an Event"
                continue
            when = event.wall_time
            if first is None or when < first:
                first = when
            if when > last:
                last = when
            step = event.step
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":  # the common case, inline
                    converted: Any = value.simple_value
                else:
                    converted = self._other(value)
                    if converted is None:
                        continue
                target = keys.get(value.tag)
                if target is None:
                    target = keys[value.tag] = points.setdefault(key_for(value.tag), {})
                target[step] = converted
                if when > times.get(step, -1.0):
                    times[step] = when
            if progress is not None and index % 8192 == 0:
                progress(index, total)
        self.first_time, self.last_time = first, last
        if progress is not None:
            progress(total, total)

    def _other(self, value: Any) -> Any:
        """A summary value other than ``simple_value``: its tracklet value, or None (hparams
        are taken into the config; what isn't imported is counted in ``dropped``)."""
        kind = value.WhichOneof("value")
        plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
        if plugin == "hparams":
            self._hparams(value.metadata.plugin_data.content)
            return None
        if kind == "histo":
            return histogram_from_proto(value.histo)
        if kind == "tensor":
            return self._tensor(value.tag, value.tensor, plugin)
        self.dropped.setdefault(value.tag, f"{kind or plugin or 'empty'} summaries are not imported")
        return None

    def _tensor(self, tag: str, tensor: Any, plugin: str) -> Any:
        array = tensor_array(tensor)
        if array is None:
            self.dropped.setdefault(tag, f"tensor of dtype {tensor.dtype} is not imported")
            return None
        if plugin == "histograms" and array.ndim == 2 and array.shape[1] == 3:
            if not len(array):
                return None
            edges = [float(array[0, 0]), *map(float, array[:, 1])]
            return Histogram._raw(edges, [max(0, int(round(c))) for c in array[:, 2]])
        if plugin == "text" or array.dtype == object:
            return "\n".join(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in array.flat)
        if array.size == 1 and (plugin in _FLOAT_TAGS or not plugin):
            return array.reshape(()).item()
        self.dropped.setdefault(tag, f"{plugin or 'tensor'} summaries of shape {list(array.shape)} are not imported")
        return None

    def _hparams(self, content: bytes) -> None:
        data = tbpb.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") != "session_start_info":
            return
        self.has_hparams = True
        for name, value in data.session_start_info.hparams.items():
            which = value.WhichOneof("kind")
            converted: Any = None if which in (None, "null_value") else getattr(value, which)
            if which == "number_value" and converted.is_integer() and abs(converted) < 2**53:
                converted = int(converted)  # hparams hold every number as a double; 32 was logged as 32
            self.config[name] = converted

    def rows(self) -> list[tuple]:
        """One row per step, in step order: ``(step, time, keys, values)``."""
        by_step: dict[int, dict[str, Any]] = {}
        for key, points in self.points.items():
            for step, value in points.items():
                row = by_step.get(step)
                if row is None:
                    row = by_step[step] = {}
                row[key] = value
        keysets: dict[tuple, tuple] = {}
        rows = []
        for step in sorted(by_step):
            row = by_step[step]
            keys = tuple(row)
            rows.append((step, self.times[step], keysets.setdefault(keys, keys), tuple(row.values())))
        return rows


def tensor_array(tensor: Any) -> np.ndarray | None:
    """A TensorProto's values as a numpy array of its shape; None for a dtype not read here."""
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.dtype == 7:  # DT_STRING
        values = np.array(list(tensor.string_val), dtype=object)
    elif tensor.dtype in _DTYPES:
        dtype = np.dtype(_DTYPES[tensor.dtype])
        if tensor.tensor_content:
            values = np.frombuffer(tensor.tensor_content, dtype=dtype)
        elif tensor.dtype == 19:
            values = np.array(tensor.half_val, dtype=np.uint16).view(np.float16)
        else:
            field = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val", 10: "bool_val"}[tensor.dtype]
            values = np.array(getattr(tensor, field), dtype=dtype)
    else:
        return None
    count = int(np.prod(shape)) if shape else 1
    if values.size == 1 and count > 1:
        values = np.repeat(values, count)  # a tensor written as one repeated value
    if values.size != count:
        return None
    return values.reshape(shape)


def histogram_from_proto(histo: Any) -> Histogram | None:
    """TensorBoard's ``HistogramProto``: bucket ``i`` counts values up to ``bucket_limit[i]``
    (from the previous limit). The first bucket's left edge is the histogram's minimum, and a
    last limit of ±DBL_MAX (TensorFlow's catch-all) is clamped to its maximum."""
    limits = list(histo.bucket_limit)
    counts = list(histo.bucket)
    if not limits or len(limits) != len(counts):
        return None
    left = min(histo.min, limits[0])
    if abs(limits[-1]) >= 1e300:
        limits[-1] = max(histo.max, limits[-2] if len(limits) > 1 else left)
    return Histogram._raw([float(left), *map(float, limits)], [max(0, int(round(c))) for c in counts])


# ---------------------------------------------------------------- grouping directories


def _scalar_tags(directory: Path) -> tuple[set[str], bool]:
    """The tags of ``directory``'s event files, and whether they hold hparams."""
    probe = TensorBoardRun(directory)
    for path in sorted(p for p in directory.iterdir() if is_event_file(p)):
        probe.read_file(path)
    return set(probe.points), probe.has_hparams


def _suffixed(suffix: str) -> Callable[[str], str]:
    """Tag → key for a run directory named after its one tag: ``tag/suffix``."""
    return lambda tag: f"{tag}/{suffix}"


def plan_runs(logdir: Path) -> dict[Path, list[tuple[Path, Callable[[str], str]]]]:
    """Which directories make one run: run directory → [(directory, tag → key)], itself first."""
    directories = find_run_dirs(logdir)
    present = set(directories)
    plan: dict[Path, list[tuple[Path, Callable[[str], str]]]] = {d: [(d, str)] for d in directories}
    for directory in directories:
        parent = directory.parent
        if directory == logdir or parent not in present or parent not in plan:
            continue
        tags, has_hparams = _scalar_tags(directory)
        if has_hparams:
            plan[parent].append((directory, str))
            del plan[directory]
        elif len(tags) == 1:
            tag = next(iter(tags))
            prefix = tag.replace("/", "_") + "_"
            if directory.name.startswith(prefix) and len(directory.name) > len(prefix):
                suffix = directory.name[len(prefix):]
                plan[parent].append((directory, _suffixed(suffix)))
                del plan[directory]
    return plan


# ---------------------------------------------------------------- writing


def run_name(logdir: Path, directory: Path) -> str:
    relative = directory.relative_to(logdir).as_posix()
    return logdir.resolve().name if relative == "." else relative


def import_run_dir(logdir: Path, directory: Path, parts: list[tuple[Path, Callable[[str], str]]], root: Path,
                   project: str | None = None, progress: Progress | None = None) -> ImportedRun:
    source = TensorBoardRun(directory)
    files = [(path, key_for) for part, key_for in parts
             for path in sorted(p for p in part.iterdir() if is_event_file(p))]
    contents = [path.read_bytes() for path, _ in files]
    digest = hashlib.sha256()
    for (path, _), data in zip(files, contents):
        digest.update(path.name.encode() + b"\0" + data)
    name = run_name(logdir, directory)
    # The first event file's name holds its creation time, host and pid: the run's identity,
    # whichever directory the log was moved to.
    identity = f"{name}/{files[0][0].name}"
    run_id = "tb-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
    target_project = project or DEFAULT_PROJECT
    paths = RunPaths(root, target_project, run_id)
    result = ImportedRun(f"{target_project}/{run_id}", name, str(directory), "imported")
    sha = SourceIdentity("tensorboard", identity, tuple(str(p.resolve()) for p, _ in files), digest.hexdigest())
    existing = check_existing(paths, sha)
    if existing is not None:
        result.status = existing
        return result
    for number, ((path, key_for), data) in enumerate(zip(files, contents)):
        report = None
        if progress is not None:  # per mille of each file, files one after another
            def report(done: int, total: int, n: int = number) -> None:
                progress(n * 1000 + done * 1000 // max(1, total), len(files) * 1000)
        source.read_file(path, key_for, report, data)
    for message in source.damaged:
        result.warnings.append(message)
        warnings.warn("tracklet: " + message, TrackletWarning, stacklevel=2)
    start_time = source.first_time or 0.0
    writer = RunWriter(paths)
    try:
        record = base_run_start(run_id, target_project, name, start_time)
        record.run_start.cwd = str(directory.resolve())
        writer.record(record)
        writer.config(source.config)
        writer.history(source.rows())
        writer.finish_summary({})
        writer.record(exit_record(0, max(source.last_time, start_time), start_time))
        writer.commit(sha)
    except BaseException:
        writer.abort()
        raise
    result.points, result.rows = writer.points, writer.rows
    for key, why in source.dropped.items():
        result.warnings.append(f"{key}: {why}")
    return result


def import_tensorboard(path: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> list[ImportedRun]:
    """Import every TensorBoard run under ``path`` into the data root (default:
    ``$TRACKLET_DIR`` or the per-user one). Returns one :class:`ImportedRun` per run,
    ``status="unchanged"`` for those imported before."""
    from tracklet.importers import data_root

    if project is not None:
        check_name("project", project)  # before reading anything
    logdir = Path(path)
    target = data_root(root)
    results = []
    for directory, parts in plan_runs(logdir).items():
        name = run_name(logdir, directory)
        report = None if progress is None else (lambda done, total, name=name: progress(name, done, total))
        results.append(import_run_dir(logdir, directory, parts, target, project, report))
    return results


__all__ = ["TensorBoardRun", "find_run_dirs", "histogram_from_proto", "import_tensorboard", "plan_runs"]
