"""The run-table version numbers a run's writers give their tables (``TableLogged.version_plus_one``;
docs/tables.md#lineage): version ``v<n>`` of ``run-<id>-<key>`` is taken from a per-run, per-key
counter in the run's directory, so every writer of a shared run on one machine (the primary and
its parts, docs/shared-runs.md) numbers one key's tables uniquely and without gaps, and a reader
or the store gets the same numbers whichever writer's log it reads or indexes first.

Taken on the logged-object worker (``table_store.store_snapshot``, once the fragments are
stored), never on the training thread. The counter is ``table-versions.json`` (key -> versions
taken) beside the run's log, kept open by each writer and rewritten in place by one ``write``
under an exclusive ``flock`` on it (17-25 us a take here; a temporary file renamed over it cost
~350 us):

- a writer killed while holding the lock releases it (the kernel drops a dead process's
  ``flock``); one killed in its ``write`` dies before or after it, never within (the text only
  grows, so one write replaces it whole);
- a counter that is missing, empty or unreadable (a run resumed from a copied log, a deleted file,
  logs from before this, a power loss mid-write) is made from the run's logs there, numbered by
  the readers' rule (``core/run_tables.version_numbers``), so a resumed run numbers on from its
  earlier versions;
- a writer that can't take a number (a read-only run directory, no ``flock`` on the platform, the
  lock held past ``LOCK_WAIT``: a stopped process) records the table without one (0), warned
  once: readers number it by the log rule, and the run goes on.

Writers on different machines don't share a counter (each numbers from its own run directory):
where two gave one key the same number, readers number the later one by the log rule (docs).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

COUNTER = "table-versions.json"
LOCK_WAIT = 2.0  # seconds a writer waits for another writer's lock before logging without a number
_POLL = 0.002
MAX_COUNTER_BYTES = 64 << 20  # a counter file over this is not read (made again from the logs)


class VersionCounter:
    """One writer's access to its run's counter (``paths``: the writer's ``RunPaths``)."""

    def __init__(self, paths: Any, warn: Callable[[Any, str], None]) -> None:
        self.paths = paths
        self.warn = warn
        self.run_dir = Path(paths.run_dir)
        self._lock = threading.Lock()  # the worker's lanes of one process take turns
        self._descriptor: int | None = None  # the counter file, open while the run is
        self._off = False  # the run directory refused (read-only, no flock): no numbers this run

    def take(self, key: str) -> int:
        """``n + 1`` for the next version ``v<n>`` of ``key``; 0 when none could be taken."""
        if self._off:
            return 0
        with self._lock:
            try:
                return self._take(key)
            except (OSError, ImportError) as error:
                self._off = True
                self._close()
                self.warn("table-versions", f"tracklet: this run's table version counter ({self.run_dir / COUNTER}) "
                                            f"could not be used ({error}); tables are recorded without a writer's "
                                            "version number, which readers number by the order of the logs")
                return 0

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def _take(self, key: str) -> int:
        import fcntl

        if self._descriptor is None:
            self._descriptor = os.open(self.run_dir / COUNTER, os.O_RDWR | os.O_CREAT, 0o644)
        descriptor = self._descriptor
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.warn(("table-versions-wait", key),
                              f"tracklet: another writer held this run's table version lock over {LOCK_WAIT:g} s; "
                              f"table {key!r} was recorded without a writer's version number (readers number "
                              "it by the order of the logs)")
                    return 0
                time.sleep(_POLL)
        try:
            size = os.fstat(descriptor).st_size
            counts = _parse(os.pread(descriptor, size, 0)) if size <= MAX_COUNTER_BYTES else None
            if counts is None:  # none yet, or damaged (a power loss mid-write): from the logs
                counts = self._from_logs()
            taken = counts.get(key, 0)
            counts[key] = taken + 1
            # Rewritten in place by one write: its counts only grow and keys are only added, so the
            # text never gets shorter than what it replaces (a process killed in a write() to a file
            # dies before or after it, never within); after a damaged one, cut to its length.
            payload = json.dumps(counts, sort_keys=True, separators=(",", ":")).encode("utf-8")
            os.pwrite(descriptor, payload, 0)
            if len(payload) < size:
                os.ftruncate(descriptor, len(payload))
            return taken + 1
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _from_logs(self) -> dict[str, int]:
        """Each key's count of versions from the run's logs on this machine (its own log, its parts)."""
        from tracklet.core.layout import RunPaths
        from tracklet.core.run_tables import run_logged_tables, version_numbers

        paths = RunPaths(self.paths.root, self.paths.project, self.paths.run_id)
        records = run_logged_tables(paths)
        if records is None:  # a damaged log: the reader reads past damage
            from tracklet.core.api import RecordedRun

            try:
                records = list(RecordedRun(paths)._read.tables)
            except Exception:  # no readable log at all: nothing to number on from
                records = []
        counts: dict[str, int] = {}
        for record, number in zip(records, version_numbers(records)):
            counts[record.key] = max(counts.get(record.key, 0), number + 1)
        return counts


def _parse(data: bytes) -> dict[str, int] | None:
    """The counter's counts, or None when it is empty, damaged or too big to be one."""
    if not data or len(data) > MAX_COUNTER_BYTES:
        return None
    try:
        counts = json.loads(data)
    except ValueError:
        return None
    if not isinstance(counts, dict) or not all(type(value) is int and value >= 0 for value in counts.values()):
        return None
    return counts


__all__ = ["COUNTER", "LOCK_WAIT", "VersionCounter"]
