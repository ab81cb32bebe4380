"""``wandb.Run``: W&B's run object over a :class:`tracklet.Run`.

``log`` keeps W&B's step and commit rules (tracklet's ``Run.log`` follows them: ``commit=False``
accumulates into the current step, ``step=N`` moves to N, a step lower than the current one is
dropped with a warning), records ``wandb.plot`` charts as their tables under ``<key>_table`` (with
the chart), records matplotlib figures (and ``pyplot``) as images and plotly figures as
``Plotly``, leaves out W&B values it cannot record yet with one warning per type, and fills in
``step_sync`` metrics. Nothing here raises into training: a failure inside tracklet is
reported once and the call returns.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any, Callable, Literal, Sequence

from tracklet.compat.wandb import data_types
from tracklet.compat.wandb._config import Config
from tracklet.compat.wandb._messages import not_supported, warn_once
from tracklet.compat.wandb._summary import Summary
from tracklet.compat.wandb.plot import CustomChart
from tracklet.core import forksafe
from tracklet.media import figures
from tracklet.errors import TrialPruned


_SUMMARY_OPS = {"min", "max", "mean", "last", "first", "none"}
_ALERT_LEVELS = {"INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR"}
_ALERT_WAIT_DEFAULT = 60.0  # seconds; W&B's default wait_duration


class Metric:
    """What ``define_metric`` returns (W&B's ``wandb_metric.Metric``): the definition's fields."""

    def __init__(self, name: str, step_metric: str | None, step_sync: bool | None, hidden: bool | None,
                 summary: list[str] | None) -> None:
        self.name = name
        self.step_metric = step_metric
        self.step_sync = step_sync
        self.hidden = hidden
        self.summary = summary

    def __repr__(self) -> str:
        return f"Metric(name={self.name!r}, step_metric={self.step_metric!r}, summary={self.summary!r})"


class _StepSync:
    """``define_metric(..., step_metric=S, step_sync=True)``: a logged row with a matching key but
    no ``S`` gets the last logged value of ``S`` added, as W&B does. Per key set the answer is
    cached, so rows pay one dict lookup."""

    def __init__(self) -> None:
        self.definitions: list[tuple[str, str]] = []  # (name or glob, step metric), in definition order
        self.step_metrics: set[str] = set()
        self.last: dict[str, Any] = {}
        self._needed: dict[tuple, tuple[str, ...]] = {}

    def define(self, name: str, step_metric: str) -> None:
        self.definitions = [d for d in self.definitions if d[0] != name] + [(name, step_metric)]
        self.step_metrics.add(step_metric)
        self._needed.clear()

    def _step_metric_of(self, key: str) -> str | None:
        for name, step_metric in self.definitions:
            if name == key:
                return step_metric
        for name, step_metric in reversed(self.definitions):
            if "*" in name and fnmatch.fnmatchcase(key, name) and key not in self.step_metrics:
                return step_metric
        return None

    def apply(self, row: Mapping[str, Any], keys: tuple | None = None) -> Mapping[str, Any]:
        """``row`` with the step metrics its keys call for filled in. ``keys`` are the keys the
        caller logged, when some (media) were left out of ``row``: they count, as in W&B."""
        if keys is None:
            keys = tuple(row)
        needed = self._needed.get(keys)
        if needed is None:
            found = {self._step_metric_of(k) for k in keys} - {None} - set(keys)
            needed = self._needed[keys] = tuple(sorted(found))  # type: ignore[arg-type]
            if len(self._needed) > 4096:
                self._needed.clear()
        for name in self.step_metrics.intersection(row):
            self.last[name] = row[name]
        missing = [name for name in needed if name in self.last]
        if not missing:
            return row
        filled = dict(row)
        for name in missing:
            filled[name] = self.last[name]
        return filled


_CODE_SKIPPED_DIRS = frozenset({".git", "wandb", "__pycache__", "node_modules", ".tox", ".mypy_cache"})


def _is_python(path: str, root: str | None = None) -> bool:
    return path.endswith(".py")


def _never(path: str, root: str | None = None) -> bool:
    return False


def _call_filter(function: Callable[..., bool], path: str, root: str) -> bool:
    """W&B calls ``include_fn``/``exclude_fn`` with (path, root), or (path) when that is all they take."""
    try:
        return bool(function(path, root))
    except TypeError:
        return bool(function(path))


def _code_files(base: str, include: Callable[..., bool], exclude: Callable[..., bool], run: Any) -> list[str]:
    from tracklet.core.settings import data_root as data_root_of

    try:
        data_root: str | None = os.path.abspath(data_root_of(run.settings))
    except Exception:  # a disabled run's settings: nothing of tracklet's to leave out
        data_root = None
    found = []
    for directory, subdirs, files in os.walk(base):
        subdirs[:] = sorted(d for d in subdirs if d not in _CODE_SKIPPED_DIRS
                            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
                            and os.path.join(directory, d) != data_root)
        for file in sorted(files):
            path = os.path.join(directory, file)
            if os.path.isfile(path) and _call_filter(include, path, base) and not _call_filter(exclude, path, base):
                found.append(path)
    return found


def _strip_unrecorded(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The row without the W&B values tracklet does not record (one warning per type), nested
    dicts included; W&B histograms become tracklet histograms, ``wandb.plot`` charts their tables
    (under ``<key>_table``, as W&B's) with the chart."""
    row: dict[str, Any] = {}
    for key, value in data.items():
        try:
            value = data_types.recordable(value)  # figures: matplotlib's as images, plotly's as Plotly
        except Exception as error:  # a figure that can't be drawn: left out alone, the row is kept
            warn_once(f"log-figure-{key}", f"the figure logged under {key!r} could not be recorded ({error!r}); "
                      "it is left out of the row, the rest is recorded")
            continue
        if isinstance(value, CustomChart):  # wandb.plot.*: its table, with the chart, under <key>_table
            row[value.table_key(key)] = value.to_tracklet(prefix + key)  # the chart's key as flattened
        elif data_types.is_unrecorded(value):
            label = data_types.type_label(value)
            hint = ("; store it in an artifact instead (artifact.add(joined, name), read back with "
                    "artifact.get(name)), as W&B logs one to a run only as a reference to such a copy"
                    if isinstance(value, data_types.JoinedTable) else "")
            warn_once(f"log-{label}", f"logging {label} is not yet supported; key {key!r} (and any later "
                      f"{label} values) are left out of the row, the rest is recorded{hint}")
        elif isinstance(value, data_types.Histogram):
            row[key] = value.to_tracklet()
        elif isinstance(value, Mapping):
            row[key] = _strip_unrecorded(value, f"{prefix}{key}/")
        else:
            row[key] = value
    return row


def _needs_stripping(data: Mapping[str, Any]) -> bool:
    """Whether the row holds a W&B value, a dict or a figure for ``_strip_unrecorded``. Types found
    to be none of those (strings, numpy scalars, tensors) are remembered, so later rows pay one
    set lookup for them instead of the isinstance and figure tests (~0.2 µs a value)."""
    for value in data.values():
        kind = type(value)
        if kind is float or kind is int or kind in _PLAIN_TYPES:
            continue
        if isinstance(value, (data_types.WBValue, Mapping)):
            return True
        if kind is list or kind is tuple:
            if value and isinstance(value[0], data_types.WBValue):
                return True
            continue
        if figures.is_matplotlib(value) or figures.is_plotly(value) or data_types.is_dataframe(value):
            return True
        if kind is not ModuleType and len(_PLAIN_TYPES) < _PLAIN_TYPES_MAX:  # (pyplot is a module: never cached)
            _PLAIN_TYPES.add(kind)
    return False


_PLAIN_TYPES: set[type] = set()  # value types that are never a W&B value, a mapping or a figure
_PLAIN_TYPES_MAX = 256


def _wait_seconds(wait_duration: Any) -> float:
    """``alert(wait_duration=)`` in seconds: a number or a ``timedelta``; W&B's default (one
    minute) when unset, or, with a warning, when it is neither."""
    if not wait_duration:
        return _ALERT_WAIT_DEFAULT
    if isinstance(wait_duration, (int, float)) and not isinstance(wait_duration, bool):
        return float(wait_duration)
    total_seconds = getattr(wait_duration, "total_seconds", None)
    if callable(total_seconds):
        return float(total_seconds())
    warn_once("alert-wait-duration", f"alert(wait_duration={wait_duration!r}) must be seconds or a timedelta; "
              "waiting one minute, as by default")
    return _ALERT_WAIT_DEFAULT


@dataclasses.dataclass
class RunStatus:
    """What ``run.status()`` returns, W&B's fields."""

    sync_items_total: int = 0
    sync_items_pending: int = 0
    sync_time: Any = None


class Run:
    """A W&B run backed by a tracklet run: ``wandb.init()`` returns one, ``wandb.run`` is the current one."""

    def __init__(self, run: Any, *, entity: str | None = None, allow_val_change: bool = False,
                 settings: Any = None) -> None:
        self._run = run
        self._entity = entity
        self._config = Config(run.config, allow_val_change)
        self._summary = Summary(run.summary)
        self._step_sync = _StepSync()
        self._watcher: Any = None
        self._saved: list[tuple[str, str]] = []  # save(policy="live"/"end") globs, copied again at finish
        self._settings = settings
        self._scratch_dir: str | None = None
        self._alerted: dict[str, float] = {}  # alert title -> when it was last recorded (monotonic)

    # ---------------------------------------------------------------- identity

    @property
    def id(self) -> str:
        return self._run.id

    @property
    def name(self) -> str:
        return self._run.name

    @name.setter
    def name(self, value: str) -> None:
        self._run.name = value  # recorded (a RunUpdate), as W&B saves it

    @property
    def display_name(self) -> str:
        return self._run.name

    @property
    def project(self) -> str:
        return self._run.project

    def project_name(self) -> str:
        return self._run.project

    @property
    def entity(self) -> str:
        return self._entity or ""

    @property
    def path(self) -> str:
        """``entity/project/id`` (``project/id`` without an entity); ``wandb.Api().run`` takes either."""
        return f"{self._entity}/{self.project}/{self.id}" if self._entity else f"{self.project}/{self.id}"

    @property
    def dir(self) -> str:
        """The run's files directory (tracklet's ``<run>/files``): files written here stay with the run.
        A shared run's secondary writer's is its own, ``<run>/parts/<label>.files`` (uploaded as the
        run's files ``parts/<label>/...``: docs/shared-runs.md), so two writers' files never clash."""
        paths = self._run._paths
        if paths is None:  # disabled mode: somewhere writable, removed with the run object or at exit
            if self._scratch_dir is None:
                self._scratch_dir = tempfile.mkdtemp(prefix="tracklet-wandb-disabled-")
                forksafe.remove_with(self, self._scratch_dir)  # by this process only, not a forked child
            return self._scratch_dir
        return str(paths.files_dir)

    @property
    def url(self) -> str | None:
        """A ``file://`` URL of the run's directory (there is no web page per run offline)."""
        return Path(self._run.dir).as_uri() if self._run.dir else None

    def get_url(self) -> str | None:
        return self.url

    def get_project_url(self) -> str | None:
        return Path(self._run.dir).parents[1].as_uri() if self._run.dir else None

    def get_sweep_url(self) -> None:
        return None

    @property
    def config(self) -> Config:
        return self._config

    @property
    def summary(self) -> Summary:
        return self._summary

    @property
    def step(self) -> int:
        return self._run.step

    @property
    def starting_step(self) -> int:
        return self._run.step if self._run.resumed else 0

    @property
    def resumed(self) -> bool:
        return self._run.resumed

    @property
    def start_time(self) -> float:
        return self._run.start_time

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._run.tags)

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._run.tags = list(value)

    @property
    def notes(self) -> str:
        return self._run.notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._run.notes = value

    @property
    def group(self) -> str:
        return self._run.group

    @property
    def job_type(self) -> str:
        return self._run.job_type

    @property
    def sweep_id(self) -> str | None:
        """The sweep whose trial this run is (``wandb.agent``, ``tracklet agent``), else None."""
        return getattr(self._run, "_sweep_id", None)

    @property
    def offline(self) -> bool:
        return self._run.settings.mode != "online"

    @property
    def disabled(self) -> bool:
        return self._run.settings.mode == "disabled"

    @property
    def settings(self) -> Any:
        from tracklet.compat.wandb.wandb_settings import Settings

        return self._settings if self._settings is not None else Settings(mode=self._run.settings.mode)

    @property
    def tracklet_run(self) -> Any:
        """The underlying :class:`tracklet.Run`."""
        return self._run

    def __repr__(self) -> str:
        return f"<wandb compat Run {self.path} (tracklet)>"

    def __copy__(self) -> Run:
        """The run itself: a run is a handle on what this process records (its step, its writer),
        so an object holding one that is copied (``copy.copy``, ``copy.deepcopy``: a config, a
        callback, a trainer's arguments) holds the same run, as W&B's copy of a run attaches to it.
        (``copy`` would otherwise go through ``__reduce_ex__``, which is for another process.)"""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Run:
        """The run itself (``__copy__``)."""
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        """W&B lets a child process log to a run passed to it (its service process takes every
        process's records): here a run sent to a child (``spawn``, ``Pool`` arguments,
        ``torch.multiprocessing.spawn``) records there as a secondary writer of the same run,
        joined on its first use (``tracklet.core.childrun``; docs/shared-runs.md)."""
        return (_child_run, (self._run, self._entity))

    # ---------------------------------------------------------------- recording

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:
        """Log ``data`` with W&B's step rules (see the module docstring)."""
        try:
            if sync is not None:
                not_supported("log(sync=...)", "it is ignored (tracklet always writes in the background)")
            if not isinstance(data, Mapping):
                warn_once("log-not-a-dict",
                          f"wandb.log() takes a dict; got {type(data).__name__}, which was not recorded")
                return
            logged_keys = None
            if _needs_stripping(data):
                logged_keys = tuple(data)
                # A row of media alone stays a row (W&B keeps its step's row, with the step
                # metrics step_sync fills in), so row counts match W&B's.
                data = _strip_unrecorded(data)
            if self._step_sync.definitions:
                data = self._step_sync.apply(data, logged_keys)
            self._run.log(data, step=step, commit=commit)
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:  # the tracker never stops training
            warn_once(f"log-failed-{type(error).__name__}",
                      f"wandb.log() failed and this call was not recorded: {error!r} (training goes on)")

    def define_metric(self, name: str, step_metric: Any = None, step_sync: bool | None = None,
                      hidden: bool | None = None, summary: str | None = None, goal: str | None = None,
                      overwrite: bool | None = None, **kwargs: Any) -> Metric | None:
        """Record how ``name`` (or a glob like ``"val/*"``) is summarised and plotted."""
        try:
            if isinstance(step_metric, Metric):
                step_metric = step_metric.name
            if not name or not isinstance(name, str):
                warn_once("define-no-name", "define_metric() needs a metric name; the call was ignored")
                return None
            modes: list[str] = []
            for op in (s.strip().lower() for s in (summary or "").split(",") if s.strip()):
                if op == "best" and goal in ("minimize", "min", "maximize", "max"):
                    op = "min" if goal.startswith("min") else "max"
                if op in _SUMMARY_OPS:
                    modes.append(op)
                elif op in ("best", "copy"):  # W&B's, kept as the last value here ("best" needs a goal)
                    not_supported(f"define_metric(summary={op!r})", "the summary keeps the last value instead")
                else:  # W&B raises wandb.Error ("Unhandled define_metric() arg: summary op")
                    warn_once(f"define-op-{op}", f"define_metric({name!r}, summary={op!r}): {op!r} is not a W&B summary "
                              "op (min, max, mean, first, last, none; best with goal=, copy), which W&B refuses; the "
                              "summary keeps the last value")
            for arg, value in (("overwrite", overwrite), ("goal", goal if "best" not in (summary or "") else None)):
                if value is not None:
                    not_supported(f"define_metric({arg}=...)", "it is ignored")
            if step_sync is None:
                step_sync = step_metric is not None
            # W&B's summary shape: {"min": 0.02} for summary="min", as wandb.Api() reads it back
            self._run.define_metric(name, step_metric=step_metric, summary=modes or None, hidden=bool(hidden),
                                    summary_as_dict=True)
            if step_metric and step_sync:
                self._step_sync.define(name, step_metric)
            return Metric(name, step_metric, step_sync, hidden, modes or None)
        except Exception as error:
            warn_once(f"define-failed-{type(error).__name__}", f"define_metric({name!r}) failed: {error!r}")
            return None

    def alert(self, title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
        """Record an alert (tracklet shows it on the run's page; it sends no notification). As in
        W&B, an alert whose title was alerted less than ``wait_duration`` ago (seconds or a
        ``timedelta``; default one minute) is not sent again: here, not recorded."""
        try:
            label = str(getattr(level, "value", level) or "INFO").upper()
            wait = _wait_seconds(wait_duration)
            now = time.monotonic()
            last = self._alerted.get(title)
            if last is not None and now - last < wait:
                return
            self._alerted[title] = now
            self._run.alert(title, text, _ALERT_LEVELS.get(label, "INFO"))
        except Exception as error:
            warn_once("alert-failed", f"wandb.alert() failed: {error!r}")

    def save(self, glob_str: str | os.PathLike | None = None, base_path: str | os.PathLike | None = None,
             policy: str = "live") -> list[str]:
        """Copy files matching ``glob_str`` into the run's ``files/``, keeping their layout below
        ``base_path``; without one, as W&B: below the working directory for a relative glob
        (``save("ckpt/*.pt")`` keeps ``ckpt/``), below the glob's directory's parent for an
        absolute one (one folder kept: ``save("/data/run123/*.txt")`` gives ``run123/...``).
        ``policy="live"`` or ``"end"``: copied again at finish (the paths as resolved now, whatever
        the working directory is then), so the last version is kept."""
        if glob_str is None:
            return []
        try:
            pattern = os.path.abspath(os.fspath(glob_str))
            if base_path is not None:
                base = os.path.abspath(os.fspath(base_path))
            elif not os.path.isabs(os.fspath(glob_str)):
                base = os.path.abspath(".")
            else:
                base = str(PurePath(pattern).parent.parent)
            copied = self._copy_files(pattern, base)
            if policy in ("live", "end"):
                self._saved.append((pattern, base))
            return copied
        except Exception as error:
            warn_once("save-failed", f"wandb.save({glob_str!r}) failed: {error!r}")
            return []

    def _copy_files(self, pattern: str, base: str) -> list[str]:
        """Copy the files matching the absolute glob ``pattern`` to their paths below ``base``."""
        if self._run.dir is None:
            return []
        files_dir = Path(self.dir)
        copied = []
        for source in glob.glob(pattern, recursive=True):
            if not os.path.isfile(source):
                continue
            relative = os.path.relpath(source, base)
            if relative.startswith(".."):
                relative = os.path.basename(source)
            target = files_dir / relative
            if Path(source).resolve() == target.resolve():
                copied.append(str(target))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied.append(str(target))
        return copied

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
              idx: int | None = None, log_graph: bool = False) -> None:
        """Histograms of gradients and/or parameters every ``log_freq`` steps (PyTorch modules)."""
        from tracklet.compat.wandb._watch import watch_models  # not .watch: that would shadow wandb.watch

        try:
            self._watcher = watch_models(self, models, log=log, log_freq=log_freq, idx=idx, log_graph=log_graph,
                                         previous=self._watcher)
        except Exception as error:
            warn_once("watch-failed", f"wandb.watch() failed and nothing is watched: {error!r} (training goes on)")

    def unwatch(self, models: Any = None) -> None:
        """Stop watching ``models`` (default: every watched model)."""
        if self._watcher is not None:
            self._watcher.remove(models)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Finish the run: ``exit_code`` 0 (default) marks it finished, anything else failed."""
        try:
            if self._watcher is not None:
                self._watcher.remove(None)
            for pattern, base in self._saved:
                self._copy_files(pattern, base)
            self._saved.clear()
            self._run.finish(exit_code)
        except Exception as error:
            warn_once("finish-failed", f"wandb.finish() failed: {error!r}")

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Literal[False]:
        from tracklet.core.run import _is_trial_pruned

        if error is None or _is_trial_pruned(error):  # pruned: stopped by its sweep, not failed (tagged pruned)
            self.finish()
        else:
            self._run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)
        return False

    # ---------------------------------------------------------------- artifacts (docs/artifacts.md)

    def log_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                     aliases: Any = None, tags: Any = None) -> Any:
        """Log a ``wandb.Artifact`` (or a path) as a tracklet artifact version; returns at once,
        stored in the background (``artifact.wait()``). ``tags`` are added to the draft's
        (W&B's tag names: a bad one raises ``ValueError`` before anything is logged)."""
        if isinstance(artifact_or_path, (str, os.PathLike)):
            artifact: Any = self._artifact_from_path(os.fspath(artifact_or_path), name, type or "unspecified")
        else:
            artifact = artifact_or_path
        if tags is not None and getattr(artifact, "_state", None) == "draft":  # tracklet's own state (W&B's is PENDING)
            artifact.tags = [*artifact.tags, *([tags] if isinstance(tags, str) else tags)]
        return self._run.log_artifact(artifact, type=type, aliases=_alias_list(aliases))

    def upsert_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                        aliases: Any = None, distributed_id: str | None = None) -> Any:
        """W&B's distributed artifacts (one version built by several runs): not supported;
        ``ArtifactError`` naming it (log the files from one process with ``log_artifact``)."""
        _no_distributed_artifacts("upsert_artifact")

    def finish_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                        aliases: Any = None, distributed_id: str | None = None) -> Any:
        """W&B's distributed artifacts: not supported (``upsert_artifact``)."""
        _no_distributed_artifacts("finish_artifact")

    def _artifact_from_path(self, path: str, name: str | None, type: str) -> Any:
        """W&B's rule for ``log_artifact(path)``: a file, a directory, or a reference URI
        (``s3://bucket/key``, ...), as artifact ``name`` (default ``run-<id>-<base name>``)."""
        import re

        if name is None:
            base = os.path.basename(path.rstrip("/"))
            name = f"run-{self._run.id}-" + re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]", "-", base))[:100]
        artifact = data_types.Artifact(name, type)
        if "://" in path and not os.path.exists(path):
            artifact.add_reference(path)
        elif os.path.isdir(path):
            artifact.add_dir(path)
        elif os.path.isfile(path):
            artifact.add_file(path)
        else:
            raise ValueError(f"path must be a file, directory or external reference like s3://bucket/path; "
                             f"{path!r} is none of these")
        return artifact

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, aliases: Any = None,
                     use_as: str | None = None) -> Any:
        """Record this run's use of an artifact version and return it (``download()`` it). No such
        version: ``CommError``, as W&B (also tracklet's ``ArtifactNotFound``). A version of another
        ``type`` than asked: W&B's ``ValueError`` and message (``type_mismatch``; also tracklet's
        ``ArtifactTypeMismatch``, an ``ArtifactNotFound``)."""
        from tracklet.compat.wandb.errors import ArtifactNotFoundCommError, type_mismatch
        from tracklet.errors import ArtifactNotFound, ArtifactTypeMismatch

        try:
            used = self._run.use_artifact(artifact_or_name, type=type)
        except ArtifactTypeMismatch as error:
            raise type_mismatch(error) from None
        except ArtifactNotFound as error:
            raise ArtifactNotFoundCommError(str(error)) from None
        if getattr(used, "type", None) == "run_table" and hasattr(used, "run_id"):  # a RunTableVersion
            table = self._logged_table(used)
            return table if table is not None else used
        return data_types.Artifact._wrap(used)

    def _logged_table(self, used: Any) -> Any:
        """The run table ``used`` (``run-<run id>-<key>:v<n>``, which tracklet's ``use_artifact``
        resolved and recorded as used, so lineage shows it) as ``wandb.Api().artifact`` reads it:
        W&B's documented ``run.use_artifact("run-<run-id>-<table-name>:<tag>").get("<table-name>")``
        (and its "adding data to resumed runs"). None if it can't be read."""
        import tracklet
        from tracklet.compat.wandb.apis._run_tables import run_table_artifact
        from tracklet.core.settings import data_root as data_root_of

        remote = self._run._artifact_remote()
        try:
            api = (tracklet.Api(base_url=remote[0], api_key=remote[1]) if remote is not None
                   else tracklet.Api(data_root_of(self._run.settings)))
            return run_table_artifact(api, used.project, f"{used.name}:v{used.version}")
        except Exception:  # an unreadable root, log or server: the recorded version stands for it
            return None

    def log_model(self, path: Any, name: str | None = None, aliases: Any = None) -> Any:
        """A file, directory or reference URI logged as a ``model`` artifact (default name
        ``run-<id>-<base name>``). W&B returns None; this returns the (pending) artifact."""
        return self.log_artifact(path, name=name, type="model", aliases=aliases)

    def use_model(self, name: str) -> str:
        """Use a model artifact version (``"name:alias"``, ``"name:v3"``) and download it; returns
        the path of its one file, or of the directory when it has several, as W&B does. An
        artifact whose type doesn't contain "model" raises ``AssertionError``, as in W&B."""
        artifact = self.use_artifact(name)
        if "model" not in str(artifact.type).lower():
            raise AssertionError(f"use_model() is only for 'model' artifacts; {name!r} is of type {artifact.type!r} "
                                 "(its type must contain 'model')")
        path = artifact.download()
        listed = os.listdir(path)
        return os.path.join(path, listed[0]) if len(listed) == 1 else path

    def link_artifact(self, artifact: Any, target_path: str, aliases: Any = None) -> Any:
        """Link a logged artifact version into a registry collection (``"wandb-registry-model/
        name"``, ``"model-registry/name"``, tracklet's ``"registry/collection"``; an entity in
        front is ignored) without copying it (docs/registry.md). Waits until the version is
        stored. W&B returns None; this returns the linked version."""
        linked = self._run.link_artifact(artifact, _registry_target(target_path), aliases=_alias_list(aliases))
        return data_types.Artifact._wrap(linked)

    def link_model(self, path: Any, registered_model_name: str, name: str | None = None,
                   aliases: Any = None) -> Any:
        """Log ``path`` as a ``model`` artifact (default name ``run-<id>-<base name>``) and link
        it to ``registered_model_name`` (a collection of the ``model`` registry, or a registry
        path). W&B returns None; this returns the linked version."""
        artifact = self.log_model(path, name=name)
        target = registered_model_name if "/" in str(registered_model_name) else f"model/{registered_model_name}"
        return self.link_artifact(artifact, target, aliases=aliases)

    # ---------------------------------------------------------------- accepted, not recorded

    def log_code(self, root: str | os.PathLike | None = ".", name: str | None = None,
                 include_fn: Callable[..., bool] | None = None,
                 exclude_fn: Callable[..., bool] | None = None) -> Any:
        """W&B's ``run.log_code``: the files under ``root`` that ``include_fn(path, root)`` takes
        (default: ``.py`` files) and ``exclude_fn(path, root)`` doesn't, logged as a ``code``
        artifact (default name ``source-<project>-<program>``, else ``source-<project>-<run id>``);
        returns it, or None when no file matched, as W&B does. Never read: ``.git``, ``wandb``,
        ``__pycache__``, ``node_modules``, virtual environments and the run's data root."""
        base = os.path.abspath(os.fspath(root if root is not None else "."))
        found = _code_files(base, include_fn or _is_python, exclude_fn or _never, self._run)
        if not found:
            warn_once(f"log-code-{base}", f"run.log_code(): no file under {base} matched; nothing logged")
            return None
        return self._log_code_files(base, found, name)

    def _log_code_files(self, base: str, found: list[str], name: str | None = None) -> Any:
        """``found`` (paths under ``base``) as a ``code`` artifact, each file under its path relative to ``base``."""
        import re

        if name is None:
            # W&B's: "source-" + make_artifact_name_safe(f"{project}-{program_relpath}"), the program's
            # path relative to the working directory ("sub/train.py": source-p-sub_train.py), whatever
            # root log_code reads. Until session 29 it was relative to that root ("../train.py" gave
            # "source-p-.-train.py") with "-" for W&B's "_". A program outside the working directory
            # (W&B: "None") is named by its file name; no program file (python -c): the run id.
            program = sys.argv[0] if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]) else None
            tail = self._run.id
            if program:
                tail = os.path.relpath(os.path.abspath(program), os.getcwd())
                if tail.startswith(".."):
                    tail = os.path.basename(program)
            name = "source-" + re.sub(r"[^a-zA-Z0-9_\-.]", "_", f"{self._run.project}-{tail}")
            if len(name) > 128:
                name = name[:63] + ".." + name[-63:]
            # W&B's server takes "..", which tracklet's names never hold (a name is a directory of
            # the store): one "." instead, as before session 29 (with "..", a program's path past
            # 121 characters or a file named "a..py" failed log_code and save_code)
            name = re.sub(r"\.{2,}", ".", name)
        artifact = data_types.Artifact(name, "code")
        for path in found:
            artifact.add_file(path, name=os.path.relpath(path, base))
        return self._run.log_artifact(artifact, type="code")

    def restore(self, name: str, run_path: str | None = None, replace: bool = False, root: str | None = None) -> Any:
        """``wandb.restore`` (W&B's ``run.restore`` is the same call)."""
        from tracklet.compat.wandb import restore

        return restore(name, run_path=run_path, replace=replace, root=root)

    def mark_preempting(self) -> None:
        """Record that this run expects to be preempted and resumed (``tracklet.Run.mark_preempting``):
        ``wandb.Api().run(path).state`` is ``preempting``, then ``preempted`` if the run ends other
        than finished, until a resumed session (``init(id=..., resume="allow")``) starts."""
        try:
            self._run.mark_preempting()
        except Exception as error:  # the tracker never stops training
            warn_once("mark-preempting-failed", f"run.mark_preempting() was not recorded: {error!r}")

    def status(self) -> RunStatus:
        """W&B's sync status: ``sync_items_pending`` is the records queued and not yet written to
        the run's record log (what tracklet's background writer has left to do); nothing is
        uploaded, so ``sync_items_total`` counts those too and ``sync_time`` is None."""
        sender = getattr(self._run, "_sender", None)
        try:
            pending = sender.queued_entries() if sender is not None else 0
        except Exception:  # a sender closed meanwhile: nothing left to write
            pending = 0
        return RunStatus(sync_items_total=pending, sync_items_pending=pending, sync_time=None)

    def display(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def to_html(self, *args: Any, **kwargs: Any) -> str:
        return ""

    def _label(self, *args: Any, **kwargs: Any) -> None:
        """W&B's telemetry label (called by integrations); nothing to record."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)

        def unsupported(*args: Any, **kwargs: Any) -> None:
            not_supported(f"run.{name}()", "it does nothing and returns None")

        return unsupported


class RunDisabled(Run):
    """The run ``wandb.init(mode="disabled")`` returns: every call is accepted and records nothing.
    As W&B's disabled run, ``log`` keeps the logged values in the summary (in memory only), so a
    script that reads ``run.summary["loss"]`` after training runs the same with W&B turned off."""

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:
        if isinstance(data, Mapping):
            try:
                self.summary.update(dict(data))
            except Exception:  # the tracker never stops training
                pass


__all__ = ["Metric", "Run", "RunDisabled"]


def _registry_target(target_path: str) -> str:
    """W&B's ``entity/project/collection`` link target without its entity (a tracklet registry
    has none): ``registry/collection``."""
    parts = str(target_path).split("/")
    return "/".join(parts[-2:]) if len(parts) == 3 else str(target_path)


def _alias_list(aliases: Any) -> list[str]:
    if aliases is None:
        return []
    if isinstance(aliases, str):
        return [aliases]
    return [str(alias) for alias in aliases]


def _no_distributed_artifacts(call: str) -> None:
    from tracklet.errors import ArtifactError

    raise ArtifactError(f"run.{call}(): W&B's distributed artifacts (a version built by several runs, "
                        "distributed_id) are not supported by tracklet; log the version from one process with "
                        "run.log_artifact() (a draft can gather every file first)")


def _child_run(run: Any, entity: str | None) -> "Run":
    """A W&B run unpickled in a child process: the same run, around the child's tracklet run."""
    return Run(run, entity=entity)

