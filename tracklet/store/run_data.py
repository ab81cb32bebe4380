"""Indexing what a record log holds besides metrics: console lines, system metrics, run metadata.

The ``Indexer`` hands these records to a ``RunDataFold`` while it folds a run's new records, and
writes what it collected in the same transaction as the run's row and series:

- **Console**: each ``ConsoleOutput`` line becomes a ``console_lines`` row, numbered on from the
  run's last stored line, so a live run's new lines are read with ``seq > after`` alone. A line
  longer than ``MAX_LINE_CHARS`` is cut there, with a note of how much was cut (the record log
  keeps it whole); NUL characters (which PostgreSQL's text refuses) become U+FFFD.
- **System metrics**: a ``SystemStats`` window becomes one point of two pyramid series per
  metric, kind ``system`` (the window's mean) and ``system_max`` (its max), whose step is the
  window's end in integer milliseconds since the epoch. Time queries then read O(buckets)
  entries like step queries do, and a one-sample spike survives in ``system_max`` at any zoom.
- **Alerts**: each ``Alert`` becomes an ``alerts`` row (time, level, title, text), numbered on
  from the run's last stored one like console lines; a title or text past ``MAX_ALERT_TITLE`` /
  ``MAX_ALERT_TEXT`` characters is cut (with a note; the record log keeps it whole).
- **Metadata**: command, cwd, pid, Python, platform, git state, CPU, memory and GPUs, from
  ``RunStart``, ``Environment`` and ``SystemInfo``: the ``runs.metadata`` JSON column.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sqlalchemy as sa

from tracklet.core import seeds
from tracklet.core.reader import add_console_line
from tracklet.core.redact import redact_command, redact_url
from tracklet.proto import records_pb2 as pb
from tracklet.store.schema import alerts, console_lines, series
from tracklet.store.text import store_text, stored_key

SYSTEM_KIND = "system"  # series of window means
SYSTEM_MAX_KIND = "system_max"  # series of window maxima
MAX_LINE_CHARS = 8192  # a console line's stored text (a screenful of a long line); the log has all
MAX_ALERT_TITLE = 1024
MAX_ALERT_TEXT = 8192
RUN_DATA_KINDS = frozenset({"console", "stats", "system_info", "environment", "alert"})
_LATEST_MS = 10**13 * 1000  # window times are clipped to [0, year ~318,000] before they become steps


def stream_name(stream: int) -> str:
    return "stderr" if stream == pb.ConsoleOutput.STREAM_STDERR else "stdout"


def stored_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """A console line (or an alert's text) as the store keeps it: at most ``limit`` characters
    plus a note of the cut, without NUL characters."""
    text = store_text(text)
    if len(text) > limit:
        text = f"{text[:limit]} [… {len(text) - limit} more characters in the record log]"
    return text


def alert_level(level: int) -> str:
    """INFO, WARN or ERROR, as ``tracklet show`` says it (UNSPECIFIED: unset, or a number this
    version doesn't know)."""
    name = pb.Alert.Level.Name(level) if level in pb.Alert.Level.values() else "LEVEL_UNSPECIFIED"
    return name.removeprefix("LEVEL_")


class FixedPoints:
    """Points of one series that are already final (the shape ``Indexer._write_series`` takes)."""

    __slots__ = ("steps", "values")

    def __init__(self, steps: np.ndarray, values: np.ndarray) -> None:
        self.steps = steps
        self.values = values

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.steps, self.values


def strictly_increasing(steps: np.ndarray, after: int | None) -> np.ndarray:
    """``steps`` moved forward where needed so each is above the one before (and above ``after``):
    a clock that stepped back (NTP, a run resumed on another host) must not break the order a
    pyramid series relies on, and no window may be merged away. s'[i] = max(s[i], s'[i-1] + 1)."""
    if not len(steps):
        return steps
    index = np.arange(len(steps), dtype=np.int64)
    floor = np.int64(-(2**62)) if after is None else np.int64(after + 1)
    return np.maximum.accumulate(np.maximum(steps - index, floor)) + index


class RunDataFold:
    """Console lines, system windows and metadata from one ingest pass over a run's new records."""

    def __init__(self, metadata: dict[str, Any] | None) -> None:
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata_changed = False
        self.console: list[tuple[float, str, str]] = []  # (time, stream, text)
        self.alerts: list[tuple[float, str, str, str]] = []  # (time, level, title, text)
        self._open_lines: dict[str, int] = {}  # stream -> index of its partial line in console
        self.window_times: list[float] = []
        # per metric: the windows it appears in (index into window_times), means, maxima
        self.system: dict[str, tuple[list[int], list[float], list[float]]] = {}

    def run_start(self, start: pb.RunStart) -> None:
        seeds.fold_session(self.metadata)  # a session's seeds replace the previous session's
        if start.resumed and self.metadata:
            self.metadata["sessions"] = int(self.metadata.get("sessions", 1)) + 1
        else:  # the first session says how the run was started
            self.metadata.update(
                command=redact_command(start.command), cwd=start.cwd, pid=start.pid, python=start.python_version,
                platform=start.platform, host=start.host, tracklet_version=start.tracklet_version, sessions=1,
            )
            if start.reproduces:  # tracklet reproduce: the run this one reproduces (docs/reproduce.md)
                self.metadata["reproduces"] = start.reproduces
            if start.username:  # the OS user (W&B's metadata name); a server with keys records its own
                self.metadata["username"] = start.username
        self.metadata_changed = True

    def run_exit(self, end: pb.RunExit) -> None:
        """An older writer's seeds (core/seeds.py), all in its ``RunExit``."""
        if seeds.fold_exit(self.metadata, end):
            self.metadata_changed = True

    def seeds_set(self, seeds_set: pb.SeedsSet) -> None:
        """The random seeds the program set (core/seeds.py), as ``RecordedRun.metadata`` gives
        them: the last session's, recorded as the program set them."""
        if seeds.fold_seeds_set(self.metadata, seeds_set):
            self.metadata_changed = True

    def apply(self, kind: str, record: pb.Record) -> None:
        """One record of a kind in ``RUN_DATA_KINDS``."""
        if kind == "console":
            stream = stream_name(record.console.stream)
            for line in record.console.lines:
                entry = (line.time if math.isfinite(line.time) else 0.0, stream, stored_line(line.text))
                # A partial line (not ended yet) is replaced by the stream's next line when both
                # arrive in one pass; one indexed in an earlier pass stays a line of its own.
                add_console_line(self.console, self._open_lines, stream, entry, line.partial)
        elif kind == "alert":
            alert = record.alert
            self.alerts.append((alert.time if math.isfinite(alert.time) else 0.0, alert_level(alert.level),
                                stored_line(alert.title, MAX_ALERT_TITLE), stored_line(alert.text, MAX_ALERT_TEXT)))
        elif kind == "stats":
            self._stats(record.stats)
        elif kind == "system_info":
            self._system_info(record.system_info)
        elif kind == "environment":
            self._environment(record.environment)

    def _stats(self, stats: pb.SystemStats) -> None:
        window = len(self.window_times)
        self.window_times.append(stats.time)
        for entry in stats.values:
            name = stored_key(entry.name)
            found = self.system.get(name)
            if found is None:
                found = self.system[name] = ([], [], [])
            found[0].append(window)
            found[1].append(entry.value)
            found[2].append(entry.max)

    def _environment(self, env: pb.Environment) -> None:
        self.metadata["git"] = {
            "commit": env.git_commit, "branch": env.git_branch, "remote": redact_url(env.git_remote), "root": env.git_root,
            "dirty": env.git_dirty, "diff_sha256": env.git_diff_sha256,
        } if env.git_root else None
        self.metadata.update(
            hostname=env.hostname, os=env.os, executable=env.executable, cpu_model=env.cpu_model,
            cpu_count=env.cpu_count, memory_total_bytes=env.memory_total_bytes,
        )
        if env.incomplete:
            self.metadata["environment_incomplete"] = list(env.incomplete)
            self.metadata["environment_incomplete_reasons"] = dict(sorted(env.incomplete_reasons.items()))
        if "gpu" not in self.metadata:  # the system monitor's SystemInfo says more, when there is one
            self.metadata["gpu"] = {"count": len(env.gpus), "names": list(env.gpus)}
        self.metadata_changed = True

    def _system_info(self, info: pb.SystemInfo) -> None:
        devices = [
            {"index": g.index, "nvml_index": g.nvml_index, "name": g.name, "uuid": g.uuid,
             "memory_total_bytes": g.memory_total_bytes}
            for g in info.gpus
        ]
        self.metadata["gpu"] = {
            "count": len(devices), "names": [d["name"] for d in devices], "driver_version": info.driver_version,
            "cuda_driver_version": info.cuda_driver_version, "physical_count": info.physical_gpu_count,
            "cuda_visible_devices": info.cuda_visible_devices, "devices": devices,
        }
        self.metadata["system_notes"] = list(info.notes)
        self.metadata_changed = True

    def system_series(self, after: int | None) -> dict[str, dict[str, FixedPoints]]:
        """The new system points by series kind and metric name. ``after`` is the last step
        (millisecond) already stored for the run; every window gets a step above it."""
        if not self.window_times:
            return {}
        times = np.nan_to_num(np.asarray(self.window_times, dtype=np.float64) * 1000.0, nan=0.0)
        steps = strictly_increasing(np.round(np.clip(times, 0.0, _LATEST_MS)).astype(np.int64), after)
        means: dict[str, FixedPoints] = {}
        maxima: dict[str, FixedPoints] = {}
        for name, (windows, mean, peak) in self.system.items():
            at = steps[np.asarray(windows, dtype=np.int64)]
            means[name] = FixedPoints(at, np.asarray(mean, dtype=np.float64))
            maxima[name] = FixedPoints(at, np.asarray(peak, dtype=np.float64))
        return {SYSTEM_KIND: means, SYSTEM_MAX_KIND: maxima}


def last_system_step(connection: sa.Connection, run_pk: int) -> int | None:
    """The step (milliseconds) of the run's last stored system window, if any (its own: not a
    shared run's secondary writers', ``<name>/l:<label>``, which keep their own times)."""
    return connection.execute(
        sa.select(sa.func.max(series.c.last_step)).where(series.c.run_pk == run_pk, series.c.kind == SYSTEM_KIND,
                                                         sa.not_(series.c.key.like("%/l:%")))
    ).scalar()


def console_rows(run_pk: int, lines: list[tuple[float, str, str]], after: int = 0) -> list[dict[str, Any]]:
    """``console_lines`` rows for ``lines``, numbered on from the run's line ``after``."""
    return [{"run_pk": run_pk, "seq": after + number, "time": when, "stream": stream, "text": text}
            for number, (when, stream, text) in enumerate(lines, start=1)]


def alert_rows(run_pk: int, found: list[tuple[float, str, str, str]], after: int = 0) -> list[dict[str, Any]]:
    """``alerts`` rows for ``found``, numbered on from the run's alert ``after``."""
    return [{"run_pk": run_pk, "seq": after + number, "time": when, "level": level, "title": title, "text": text}
            for number, (when, level, title, text) in enumerate(found, start=1)]


def write_console(connection: sa.Connection, run_pk: int, lines: list[tuple[float, str, str]]) -> None:
    """Append console lines after the run's last stored one."""
    last = connection.execute(
        sa.select(sa.func.max(console_lines.c.seq)).where(console_lines.c.run_pk == run_pk)
    ).scalar() or 0
    connection.execute(console_lines.insert(), console_rows(run_pk, lines, last))


def write_alerts(connection: sa.Connection, run_pk: int, found: list[tuple[float, str, str, str]]) -> None:
    """Append alerts after the run's last stored one."""
    last = connection.execute(sa.select(sa.func.max(alerts.c.seq)).where(alerts.c.run_pk == run_pk)).scalar() or 0
    connection.execute(alerts.insert(), alert_rows(run_pk, found, last))
