"""Where a cold ``finish()``'s wall and CPU time go, measured inside the process that runs it.

``benchmarks/overhead.py``'s cold script calls :func:`install` between ``import tracklet`` and the
first ``init()`` (the modules it imports are the ones ``init()`` imports anyway, so the measured
``init()`` keeps its cost) and :func:`collect` after ``finish()``. One run of ``overhead.py
--targets`` on another machine then says why its ``finish()`` took what it took, without a
profiler or a second run.

What is measured, by wrapping the methods ``Run._finish`` calls (wall time, and the process's
CPU time over the same interval: all threads, so a phase that waits shows the background work
done meanwhile):

- ``environment``: ``EnvironmentCapture.finish``, the wait for the environment capture (bounded
  by ``capture_wait``); whether the capture was still running when it returned (the bound was
  hit), the parts not captured, whether the package inventory came from the cache ("hit"; "updated":
  a watched directory had changed, and only its added or changed entries were read: their CPU in
  ``updates``; "miss": a full scan, in ``scans``), and each
  part's thread CPU, wall time and when it ended (ms from ``finish()``'s start: negative =
  before it; a part that ends late was starved of the GIL by the training loop, or waited for
  git's processes);
- ``monitor``: ``SystemMonitor.stop``;
- ``drain``: ``BatchSender.force_flush``, the worker encoding and writing what was queued;
- ``close``: ``BatchSender.shutdown``, the exit record, the final write, ``fsync`` and close;
- ``fsync``: the wall time of ``os.fsync`` calls made during ``finish()`` (inside ``close``);
- ``other``: the rest of ``finish()`` (with a code snapshot: waiting for the artifact worker);
- ``code_snapshot``: the untracked imported files stored as a ``code`` artifact, if any (their
  count, and the capture thread's wall and CPU time logging them).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

_clock = time.perf_counter
_cpu = time.process_time

# Filled while the process runs; read by collect().
_state: dict[str, Any] = {"finish_start": None, "phases": {}, "parts": {}, "inventory": None, "scans": [],
                          "updates": [],
                          "environment_running_after_wait": None, "fsync_ms": 0.0}


def _add(name: str, wall: float, cpu: float) -> None:
    phases = _state["phases"]
    before = phases.get(name, (0.0, 0.0))
    phases[name] = (before[0] + wall * 1000, before[1] + cpu * 1000)


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = _clock(), _cpu()
        try:
            return function(*args, **kwargs)
        finally:
            _add(name, _clock() - wall, _cpu() - cpu)

    return timed


def install() -> None:
    """Wrap the phases of ``Run._finish`` and the environment capture's parts (call before ``init()``)."""
    from tracklet.core import environment, run, sender
    from tracklet.core.system import monitor

    finish = run.Run._finish

    def timed_finish(self: Any, *args: Any) -> Any:
        _state["finish_start"] = _clock()
        wall, cpu = _clock(), _cpu()
        try:
            return finish(self, *args)
        finally:
            _state["total"] = ((_clock() - wall) * 1000, (_cpu() - cpu) * 1000)

    run.Run._finish = timed_finish  # type: ignore[method-assign]

    capture_finish = environment.EnvironmentCapture.finish

    def timed_capture_finish(self: Any, timeout: float) -> None:
        wall, cpu = _clock(), _cpu()
        try:
            capture_finish(self, timeout)
        finally:
            _add("environment", _clock() - wall, _cpu() - cpu)
            _state["environment_running_after_wait"] = self._thread.is_alive()
            _state["incomplete"] = [part for part in self.PARTS if part not in self._done]
            _state["capture_wait_ms"] = timeout * 1000

    environment.EnvironmentCapture.finish = timed_capture_finish  # type: ignore[method-assign]
    monitor.SystemMonitor.stop = _timed("monitor", monitor.SystemMonitor.stop)  # type: ignore[method-assign]
    sender.BatchSender.force_flush = _timed("drain", sender.BatchSender.force_flush)  # type: ignore[method-assign]
    sender.BatchSender.shutdown = _timed("close", sender.BatchSender.shutdown)  # type: ignore[method-assign]

    # The capture's parts, on its own thread: thread CPU, and when each ended relative to finish().
    for name, method in (("prepare", "_prepare"), ("host", "_capture_host"), ("git", "_capture_git"),
                         ("packages", "_capture_packages"), ("code", "_capture_code"),
                         ("cache_after", "_cache_inventory")):
        setattr(environment.EnvironmentCapture, method, _part(name, getattr(environment.EnvironmentCapture, method)))

    # A code snapshot (untracked files the program imported, e.g. a train.py not committed yet)
    # is stored as a ``code`` artifact: the artifacts package's imports and its worker, in finish().
    log_code = run.Run._log_code_snapshot

    def timed_log_code(self: Any, files: dict[str, tuple[bytes, str]], program: str) -> None:
        wall, cpu = _clock(), time.thread_time()
        try:
            log_code(self, files, program)
        finally:
            _state["code_snapshot"] = {"files": len(files), "wall_ms": (_clock() - wall) * 1000,
                                       "cpu_ms": (time.thread_time() - cpu) * 1000}

    run.Run._log_code_snapshot = timed_log_code  # type: ignore[method-assign]

    cached = environment._cached_inventory

    def timed_cached(cache_dir: Any) -> Any:
        found = cached(cache_dir)
        if _state["inventory"] is None:  # the first read (in _prepare) says hit or miss
            _state["inventory"] = ("miss" if found is None else "updated" if _state["updates"] else "hit")
        return found

    environment._cached_inventory = timed_cached
    update = environment._update_inventory

    def timed_update(directories: Any) -> Any:
        wall, cpu = _clock(), time.thread_time()
        updated = update(directories)
        if updated is not directories:
            _state["updates"].append({"wall_ms": (_clock() - wall) * 1000,
                                      "cpu_ms": (time.thread_time() - cpu) * 1000})
        return updated

    environment._update_inventory = timed_update
    scan = environment._scan_packages

    def timed_scan() -> Any:
        wall, cpu = _clock(), time.thread_time()
        found = scan()
        _state["scans"].append({"packages": len(found[0]), "wall_ms": (_clock() - wall) * 1000,
                                "cpu_ms": (time.thread_time() - cpu) * 1000})
        return found

    environment._scan_packages = timed_scan

    fsync = os.fsync

    def timed_fsync(fd: Any) -> None:
        wall = _clock()
        try:
            fsync(fd)
        finally:
            if _state["finish_start"] is not None:
                _state["fsync_ms"] += (_clock() - wall) * 1000

    os.fsync = timed_fsync


def _part(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def timed(self: Any, *args: Any) -> Any:
        cpu, started = time.thread_time(), _clock()
        try:
            return method(self, *args)
        finally:
            _state["parts"][name] = {"cpu_ms": (time.thread_time() - cpu) * 1000, "wall_ms": (_clock() - started) * 1000,
                                     "ended_at": _clock(), "thread": threading.current_thread().name}

    return timed


def collect() -> dict[str, Any]:
    """What was measured, as JSON-ready values (ms); call after ``finish()``."""
    total = _state.get("total", (0.0, 0.0))
    start = _state["finish_start"]
    parts = {}
    for name, part in _state["parts"].items():
        part = dict(part)
        ended = part.pop("ended_at")
        part["ended_ms"] = None if start is None else (ended - start) * 1000
        parts[name] = {key: (round(value, 3) if isinstance(value, float) else value) for key, value in part.items()}
    phases = {name: [round(wall, 3), round(cpu, 3)] for name, (wall, cpu) in _state["phases"].items()}
    phases["other"] = [round(total[0] - sum(wall for wall, _ in phases.values()), 3),
                       round(total[1] - sum(cpu for _, cpu in phases.values()), 3)]
    return {
        "total": [round(total[0], 3), round(total[1], 3)],
        "phases": phases,
        "fsync_ms": round(_state["fsync_ms"], 3),
        "environment_running_after_wait": _state["environment_running_after_wait"],
        "incomplete": _state.get("incomplete", []),
        "inventory": _state["inventory"],
        "scans": _state["scans"],
        "updates": _state["updates"],
        "code_snapshot": _state.get("code_snapshot"),
        "parts": parts,
    }
