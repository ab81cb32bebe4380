"""The run-table version numbers a run's writers give their tables (``TableLogged.version_plus_one``;
docs/tables.md#lineage): version ``v<n>`` of ``run-<id>-<key>`` is taken from a per-run, per-key
counter in the run's directory, so every writer of a shared run on one machine (the primary and
its parts, docs/shared-runs.md) numbers one key's tables uniquely and without gaps, and a reader
or the store gets the same numbers whichever writer's log it reads or indexes first.

Taken on the logged-object worker (``table_store.store_snapshot``, once the fragments are
stored), never on the training thread. The counter is ``table-versions.json`` (key -> versions
taken) beside the run's log, replaced whole (a temporary file renamed over it) under an exclusive
``flock`` on ``table-versions.lock``:

- a writer killed while holding the lock releases it (the kernel drops a dead process's
  ``flock``), and one killed mid-write leaves the old counter (the rename is atomic);
- a counter that is missing or unreadable (a run resumed from a copied log, a deleted file, logs
  from before this) is made from the run's logs there, numbered by the readers' rule
  (``core/run_tables.version_numbers``), so a resumed run numbers on from its earlier versions;
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
LOCK = "table-versions.lock"
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
                self.warn("table-versions", f"tracklet: this run's table version counter ({self.run_dir / COUNTER}) "
                                            f"could not be used ({error}); tables are recorded without a writer's "
                                            "version number, which readers number by the order of the logs")
                return 0

    def _take(self, key: str) -> int:
        import fcntl

        descriptor = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
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
            counts = self._read()
            if counts is None:
                counts = self._from_logs()
            taken = counts.get(key, 0)
            counts[key] = taken + 1
            self._write(counts)
            return taken + 1
        finally:
            os.close(descriptor)  # and with it the lock

    def _read(self) -> dict[str, int] | None:
        try:
            with open(self.run_dir / COUNTER, "rb") as handle:
                data = handle.read(MAX_COUNTER_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            counts = json.loads(data) if len(data) <= MAX_COUNTER_BYTES else None
        except ValueError:
            return None
        if not isinstance(counts, dict) or not all(isinstance(value, int) and value >= 0 for value in counts.values()):
            return None
        return counts

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

    def _write(self, counts: dict[str, int]) -> None:
        temporary = self.run_dir / f".{COUNTER}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(counts, handle, separators=(",", ":"))
        os.replace(temporary, self.run_dir / COUNTER)


__all__ = ["COUNTER", "LOCK", "LOCK_WAIT", "VersionCounter"]
