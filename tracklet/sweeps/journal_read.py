"""A sweep's Optuna journal read by someone who never writes it (the dashboard's routes).

:class:`JournalReader` is an Optuna journal backend over ``journal.log`` that reads whole lines
incrementally (a ``JournalStorage`` over it replays only what was appended since its last read)
and refuses to append. It takes no lock: the controller writes each operation's lines with one
``write`` under the sweep's lock, and a line without its newline (being written, or torn by a
writer killed mid-write) is not read until it is whole; a writer cuts a torn line before it
appends, and only ever past the last newline. So a reader sees a prefix of the journal made of
whole operations' lines, which Optuna replays as the study at that moment.
"""

from __future__ import annotations

import json
import os
from typing import Any

from optuna.storages.journal import BaseJournalBackend

from tracklet.errors import SweepError


class JournalReader(BaseJournalBackend):
    """Read ``path`` (a ``JournalFileBackend`` file) from the top, then only what was appended."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._offset = 0  # bytes of whole lines read so far
        self._count = 0  # logs in those bytes

    @property
    def offset(self) -> int:
        return self._offset

    def _lines(self, start: int, end: int | None = None) -> tuple[list[dict[str, Any]], int]:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(start)
                data = handle.read() if end is None else handle.read(end - start)
        except FileNotFoundError:
            return [], start
        whole = data.rfind(b"\n") + 1
        logs = []
        position = start
        for line in data[:whole].split(b"\n")[:-1]:
            if line.strip():
                try:
                    logs.append(json.loads(line))
                except ValueError:
                    raise SweepError(f"{self._path}: the journal line at byte {position} is not JSON; "
                                     "the study can't be read past it") from None
            position += len(line) + 1
        return logs, start + whole

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        known = self._count
        new, self._offset = self._lines(self._offset)
        self._count += len(new)
        if log_number_from < known:  # a storage starting over: from the top
            return self._lines(0, self._offset)[0][log_number_from:]
        return new[log_number_from - known:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise SweepError("a sweep's journal is read-only here (the dashboard never changes a sweep)")


def file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or None when it is missing: a new file means a new reader."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
