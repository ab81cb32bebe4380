"""The run's table writer: a thread that stores logged table snapshots (``table_store.py``:
Parquet fragments in the artifacts' blob store) and queues the ``TableLogged`` record of each
through the run's sender, in the order they were logged.

``log({"preds": table})`` only takes a snapshot and calls :meth:`TableWriter.submit`; converting
rows to Arrow, encoding Parquet, hashing and writing run here, off the training thread.

The queue is bounded (``MAX_PENDING`` snapshots, ``MAX_PENDING_ROWS`` rows): when it is full,
``submit`` waits, as the sender's queue does, and never drops a table (an INCREMENTAL table's
rows would be lost for good); one warning says so. A table that fails to be stored is reported
once and left out; the run goes on.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any

from tracklet.core.logged import RunContext
from tracklet.media.table import TableSnapshot

MAX_PENDING = 1024  # snapshots; small INCREMENTAL ones are a few KB each
MAX_PENDING_ROWS = 4_000_000


@dataclasses.dataclass
class _Pending:
    key: str
    step: int
    time: float
    snapshot: TableSnapshot


def start_worker(context: RunContext) -> "TableWriter":
    """The run's table writer (``core/logged.py``'s ``ObjectWorker``), started."""
    return TableWriter(context)


class TableWriter:
    """One run's table writer thread."""

    def __init__(self, context: RunContext) -> None:
        self._context = context
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_rows = 0
        self._busy = False
        self._closed = False
        self._condition = threading.Condition()
        self._blobs: Any = None  # the artifacts' FsspecBlobStore, opened on the writer thread
        self._warned_full = False
        self._thread = threading.Thread(target=self._run, name=f"tracklet-tables-{context.run_path}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ caller side

    def submit(self, key: str, step: int, snapshot: TableSnapshot) -> None:
        """Queue one snapshot; waits (never drops) while the queue is full."""
        rows = snapshot.row_count
        with self._condition:
            while self._pending and self._thread.is_alive() and (
                    len(self._pending) >= MAX_PENDING or self._pending_rows + rows > MAX_PENDING_ROWS):
                if not self._warned_full:
                    self._warned_full = True
                    self._context.warn("tables-full", f"tracklet: log() is waiting for the table writer, which has "
                                                      f"{len(self._pending)} tables to store; nothing is dropped")
                self._condition.wait(0.05)
            self._pending.append(_Pending(key, step, time.time(), snapshot))
            self._pending_rows += rows
            self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every table submitted so far is stored and its record queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while (self._pending or self._busy) and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._condition.wait(left if left is not None else 0.1)
        return True

    def close(self, timeout: float) -> bool:
        """Store what was submitted, within ``timeout`` seconds, and stop. False if some was not."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        return not self._pending

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending:
                    return
                item = self._pending.popleft()
                self._busy = True
            try:
                self._store(item)
            except Exception as error:  # contained: this table is left out, the run goes on
                self._context.warn(("table-failed", item.key, type(error)),
                                   f"tracklet: table {item.key!r} at step {item.step} could not be stored ({error!r}); "
                                   "it is not recorded, the run goes on")
            finally:
                with self._condition:
                    self._pending_rows -= item.snapshot.row_count
                    self._busy = False
                    self._condition.notify_all()
                del item

    def _store(self, item: _Pending) -> None:
        if self._blobs is None:
            from tracklet.artifacts.blobs import FsspecBlobStore
            from tracklet.artifacts.storage import artifact_dir

            self._blobs = FsspecBlobStore(artifact_dir(self._context.data_root))
        record = item.snapshot.store(self._blobs, item.key, item.step, item.time, self._context.warn)
        self._context.enqueue(record)
