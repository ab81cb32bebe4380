"""What the server reads out of record logs for routes the store doesn't answer (table versions,
histograms, history strings and structured values), folded record by record and kept with the byte offset reached, so a log that grew
(a live run the dashboard polls every 2 s) is read from there on, not again from its start.

A log that shrank or was replaced (``resume`` moves an unreadable tail aside) is read again from
the start. Records pass the same ``RecordDecoder`` checks as every reader's; a record a fold fails
on is skipped alone. The folds of the ``size`` logs asked for last are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

if TYPE_CHECKING:
    from tracklet.core.layout import RunPaths
    from tracklet.store.logsource import LogSource

State = TypeVar("State")
View = TypeVar("View")


class _Entry(Generic[State]):
    def __init__(self, state: State) -> None:
        self.lock = threading.Lock()
        self.state = state
        self.offset = 0
        self.identity: tuple[int, int] | None = None  # (device, inode)
        self.decoder: Any = None


WINDOW_BYTES = 8 << 20  # read a log this much at a time: a request holds one window, not the whole log


class LogFolds(Generic[State]):
    """``get(source, paths, view)``: ``view(state)`` of the fold of every record of the run's log,
    where ``make()`` starts a state and ``apply(state, record)`` folds one record into it. The log
    is read through the server's ``LogSource`` (its files, or segments in shared storage with
    ``--logs``) ``WINDOW_BYTES`` at a time."""

    def __init__(self, make: Callable[[], State], apply: Callable[[State, Any], None], size: int = 32) -> None:
        self._make = make
        self._apply = apply
        self._size = size
        self._entries: OrderedDict[str, _Entry[State]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: LogSource, paths: RunPaths, view: Callable[[State], View]) -> View:
        from tracklet.core.decode import RecordDecoder

        path = str(paths.log_file)
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(self._make())
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(path)
        with entry.lock:
            size = source.size(paths)
            identity = _file_identity(paths.log_file)
            if entry.decoder is None or entry.identity != identity or size < entry.offset:
                entry.state, entry.offset, entry.identity, entry.decoder = self._make(), 0, identity, RecordDecoder()
            state = entry.state
            while entry.offset < size:
                result = source.read_from(paths, entry.offset, limit=WINDOW_BYTES)
                entry.decoder.fold(result.payloads, lambda record: self._apply(state, record))
                if result.end_offset <= entry.offset:
                    break  # nothing intact further on yet (a frame still being written)
                entry.offset = result.end_offset
            return view(state)


def _file_identity(log_file: Path) -> tuple[int, int] | None:
    """(device, inode) of a log kept as a file, so a log replaced under the same name is read
    again; None for one kept as segments (it only grows)."""
    try:
        stat = log_file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def run_log(request: Any, project: str, run_id: str) -> tuple[LogSource, RunPaths]:
    """The server's log source and the run's paths; 404 unless the server knows the run (its store
    has it: a log under the root alone is not enough, so access follows the project's members)."""
    from fastapi import HTTPException

    from tracklet.server.logs import run_paths

    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    if app.store.run(project, run_id, fields=("run_id",)) is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    return app.indexer.source, paths
