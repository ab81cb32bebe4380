"""The sweep's Optuna journal, written once per controller operation.

Optuna's ``JournalFileBackend`` appends (and fsyncs) every operation on its own: asking a trial with
six parameters costs ~10 fsyncs. Every controller operation already runs under the sweep's
``flock``, so this backend buffers the operation's appends and :meth:`BatchedJournalFile.flush`
writes them with one ``write`` and one ``fsync`` before the lock is released. The file format is
``JournalFileBackend``'s (one JSON object per line), so Optuna's own tools read it.

A writer killed mid-write leaves a torn last line; the next flush cuts it (nothing in it was acted
on: the operation that wrote it never returned). Readers ignore a line without its newline. A write
cut short (a power cut, a kill inside a large write) can also leave whole lines of the operation
before the torn one: what they replay is a trial asked without all its parameters and no lease, so
the next operation reaps it as lapsed (controller.py requeues its grid point by its ``grid_id``).

Optuna's ``JournalStorage`` reads the backend on every storage call (an ask at 1,000 trials makes
dozens). While the caller holds the sweep's lock (:meth:`BatchedJournalFile.hold`) no other process
can append, so the file is read once per operation and later reads answer from memory.
"""

from __future__ import annotations

import json
import os
from typing import Any

from optuna.storages.journal import BaseJournalBackend


class BatchedJournalFile(BaseJournalBackend):
    """A journal file whose appends wait for :meth:`flush`; callers hold the sweep's lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        if not os.path.exists(path):
            open(path, "ab").close()
        self._offset = 0  # bytes of whole lines read so far
        self._count = 0  # logs in those bytes
        self._pending: list[dict[str, Any]] = []
        self._held = False  # the caller holds the sweep's lock: nobody else appends
        self._caught_up = False  # the file was read since the lock was taken

    def hold(self, held: bool) -> None:
        """The caller took (True) or is releasing (False) the sweep's lock: while it is held,
        the file is read once, at the first read."""
        self._held = held
        self._caught_up = False

    def _lines(self, start: int, end: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Whole lines from byte ``start`` (to ``end``) as logs, and the byte after the last one."""
        with open(self._path, "rb") as handle:
            handle.seek(start)
            data = handle.read() if end is None else handle.read(end - start)
        whole = data.rfind(b"\n") + 1
        return [json.loads(line) for line in data[:whole].splitlines() if line.strip()], start + whole

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        known = self._count
        if self._held and self._caught_up:
            new: list[dict[str, Any]] = []
        else:
            new, self._offset = self._lines(self._offset)
            self._count += len(new)
            self._caught_up = self._held
        if log_number_from < known:  # a reader starting over (a new storage object): from the top
            logs = self._lines(0, self._offset)[0][log_number_from:]
        else:
            logs = new[log_number_from - known:]
        return logs + self._pending[max(0, log_number_from - self._count):]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._pending.extend(logs)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write the buffered appends: one write, one fsync."""
        if not self._pending:
            return
        self.read_logs(self._count + len(self._pending))  # catch up with other processes' lines
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in self._pending).encode()
        with open(self._path, "r+b") as handle:
            handle.truncate(self._offset)  # a torn line left by a writer killed mid-write
            handle.seek(self._offset)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self._offset += len(data)
        self._count += len(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        """Forget the buffered appends (the operation failed; the caller drops its storage)."""
        self._pending.clear()
