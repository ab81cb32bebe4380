"""What the server reads out of record logs for routes the store doesn't answer (table versions,
histograms), folded record by record and kept with the byte offset reached, so a log that grew
(a live run the dashboard polls every 2 s) is read from there on, not again from its start.

A log that shrank or was replaced (``resume`` moves an unreadable tail aside) is read again from
the start. Records pass the same ``RecordDecoder`` checks as every reader's; a record a fold fails
on is skipped alone. The folds of the ``size`` logs asked for last are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

State = TypeVar("State")
View = TypeVar("View")


class _Entry(Generic[State]):
    def __init__(self, state: State) -> None:
        self.lock = threading.Lock()
        self.state = state
        self.offset = 0
        self.identity: tuple[int, int] | None = None  # (device, inode)
        self.decoder: Any = None


class LogFolds(Generic[State]):
    """``get(log_file, view)``: ``view(state)`` of the fold of every record of ``log_file``, where
    ``make()`` starts a state and ``apply(state, record)`` folds one record into it."""

    def __init__(self, make: Callable[[], State], apply: Callable[[State, Any], None], size: int = 32) -> None:
        self._make = make
        self._apply = apply
        self._size = size
        self._entries: OrderedDict[str, _Entry[State]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, log_file: Path, view: Callable[[State], View]) -> View:
        from tracklet.core.decode import RecordDecoder
        from tracklet.core.recordlog import read_log_from

        path = str(log_file)
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(self._make())
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(path)
        with entry.lock:
            stat = log_file.stat()
            identity = (stat.st_dev, stat.st_ino)
            if entry.identity != identity or stat.st_size < entry.offset:
                entry.state, entry.offset, entry.identity, entry.decoder = self._make(), 0, identity, RecordDecoder()
            if stat.st_size > entry.offset:
                result = read_log_from(log_file, entry.offset, resync=True)
                state = entry.state
                entry.decoder.fold(result.payloads, lambda record: self._apply(state, record))
                entry.offset = max(entry.offset, result.end_offset)
            return view(entry.state)
