"""The logged-object worker of a run: a small bounded pool of threads that encodes, hashes and
stores logged media (and tables) off the training thread.

``Run.log`` submits the logged objects of a row (``core/logged.py``); each goes to one of
``workers`` lanes chosen by its key, so the objects of one key are recorded in the order they were
logged. A lane's thread calls the object's ``_record`` (encoding: Pillow's PNG encoder, ``wave``,
GIF; hashing: sha256; storing: a blob written to a temporary name and renamed into the artifacts'
content-addressed store, so a blob visible there is always whole) and queues the record it returns
through the run's sender. Pillow, zlib and hashlib release the GIL while they work, so the
training thread runs meanwhile.

The queue is bounded by items (``settings.media_queue``) and bytes (``MAX_PENDING_BYTES``): a row
that would overflow it has its logged objects dropped, counted, with one warning; ``log()`` never
waits. ``close`` (``finish()``) records what is pending within its timeout.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable

from tracklet.core.logged import LoggedObject, Placement
from tracklet.media import buffers

# The most bytes of logged data (copies of arrays, ...) waiting to be encoded; more is dropped.
MAX_PENDING_BYTES = 512 << 20


class Context:
    """What a logged object's ``_record`` gets on the worker: the data root's blob store
    (opened on first use, on a worker thread) and the run's warning reporter."""

    def __init__(self, root: Path, warn: Callable[[Any, str], None]) -> None:
        self.root = root
        self.warn = warn
        self._blobs: Any = None
        self._lock = threading.Lock()

    @property
    def blobs(self) -> Any:
        """The artifacts' ``FsspecBlobStore`` (``<artifact dir>/blobs/sha256/...``)."""
        if self._blobs is None:
            with self._lock:
                if self._blobs is None:
                    from tracklet.artifacts.blobs import FsspecBlobStore
                    from tracklet.artifacts.storage import artifact_dir

                    self._blobs = FsspecBlobStore(artifact_dir(self.root))
        return self._blobs

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as a blob (once: the same bytes again write nothing); its sha256."""
        digest, _ = self.blobs.put_bytes(data)
        return str(digest)


class LoggedWorker:
    """``workers`` lanes, each a thread started on first use with a queue of its own."""

    def __init__(self, root: Path, put: Callable[[Any], None], warn: Callable[[Any, str], None], *,
                 workers: int = 2, max_pending: int = 256, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._put = put
        self._warn = warn
        self.context = Context(root, warn)
        self._lanes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(max(1, workers))]
        self._threads: list[threading.Thread | None] = [None] * len(self._lanes)
        self._max_pending = max_pending
        self._max_bytes = max_pending_bytes
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified as items are recorded
        self._pending = 0
        self._pending_bytes = 0
        self.dropped = 0  # items dropped because the queue was full
        self.recorded = 0  # items whose record was queued to the sender
        self._closed = False

    # ------------------------------------------------------------ caller side

    def submit(self, step: int, when: float, key: str, items: list[LoggedObject]) -> None:
        """Queue ``items`` logged under ``key`` at ``step``; drop them (counted) when full, except
        items that are not ``_droppable`` (tables' snapshots): for those, wait for room."""
        size = 0
        keep = False
        for item in items:
            if isinstance(item, LoggedObject):
                size += item._pending_bytes()
                keep = keep or not item._droppable
        with self._room:
            full = self._full(len(items), size)
            if full and keep and not self._closed:
                self._warn("logged-queue-wait", f"tracklet: log() is waiting for the media and tables worker "
                                                f"({self._pending} items queued): a table is never dropped")
                while full and not self._closed:
                    self._room.wait(0.05)
                    full = self._full(len(items), size)
            if full or self._closed:
                self.dropped += len(items)
            else:
                self._pending += len(items)
                self._pending_bytes += size
        if full or self._closed:
            self._warn("media-queue-full",
                       f"tracklet: the media queue is full ({self._max_pending} items or {self._max_bytes >> 20} MiB "
                       f"waiting to be encoded): key {key!r} at step {step} and later media are dropped while it "
                       "is, never waited for (the count is reported at finish). Log media less often, or raise "
                       "settings media_queue / media_workers.")
            return
        lane = hash(key) % len(self._lanes)  # one key's items are recorded in the order logged
        self._lanes[lane].put((step, when, key, items, size))
        if self._threads[lane] is None:
            self._start(lane)

    def _start(self, lane: int) -> None:
        with self._lock:
            if self._threads[lane] is not None:
                return
            thread = threading.Thread(target=self._loop, args=(self._lanes[lane],), name=f"tracklet-media-{lane}",
                                      daemon=True)
            self._threads[lane] = thread
        thread.start()

    # ------------------------------------------------------------ worker side

    def _loop(self, jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            step, when, key, items, size = job
            del job
            count = len(items)
            try:
                for index in range(count):
                    self._record_one(items[index], Placement(key, step, index, count, when))
            finally:
                # Let go of the items before saying they are done: an item freed here hands its
                # copies' buffers back for the next snapshots (media.buffers).
                del items
                with self._room:
                    self._pending -= count
                    self._pending_bytes -= size
                    self._room.notify_all()
            buffers.POOL.refill()

    def _full(self, count: int, size: int) -> bool:
        """Would ``count`` more items of ``size`` bytes overflow the queue? (Called holding the lock.)"""
        return (self._pending + count > self._max_pending
                or bool(self._pending and self._pending_bytes + size > self._max_bytes))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted so far is recorded (its record queued). False on timeout."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._room.wait(0.1 if left is None else min(left, 0.1))
        return True

    def _record_one(self, item: Any, where: Placement) -> None:
        if not isinstance(item, LoggedObject):
            self._warn(("logged-mixed", where.key),
                       f"tracklet: {where}: a list of media holds a {type(item).__name__}, which was left out "
                       "(the list's other items are recorded)")
            return
        try:
            record = item._record(self.context, where)
        except Exception as error:  # contained to this item: the row's other values are recorded
            self._warn(("logged-error", where.key, type(error)),
                       f"tracklet: {item._kind} at {where} could not be recorded: {error}; the rest of the row is "
                       "recorded and the run goes on")
            return
        if record is None:
            return
        try:
            self._put(record)
            self.recorded += 1
        except RuntimeError:  # the run finished before this item was stored (finish says so)
            pass

    def close(self, timeout: float) -> bool:
        """Record what is pending within ``timeout`` and stop the threads. False on timeout."""
        import time

        self._closed = True
        deadline = time.monotonic() + timeout
        for lane, thread in zip(self._lanes, self._threads):
            if thread is not None:
                lane.put(None)
        done = True
        for thread in self._threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
                done = done and not thread.is_alive()
        buffers.POOL.clear()  # the reserve served this run's bursts; a later run grows its own
        if self.dropped:
            self._warn("media-dropped", f"tracklet: {self.dropped} media item(s) were dropped because the media "
                                        "queue was full")
        return done
