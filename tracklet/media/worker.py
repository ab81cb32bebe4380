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
waits, for media or tables alike. A dropped table log loses no rows: the table still holds them
(a dropped INCREMENTAL increment hands its rows back), so its next ``log()`` under that key records
them, and ``close`` (``finish()``) logs, at the step of its last dropped log, a table whose last
log was dropped (``LoggedObject._dropped``). ``close`` (``finish()``) records what is pending within its timeout.

**The caller never wakes a working lane.** Handing an item over is an ``append`` to the lane's
deque; no lock is released and no event set, so no system call: waking a sleeping thread from
``log()`` let an oversubscribed kernel preempt the training thread right there (measured: a
per-step ``log()`` of one image at a p50 of 0.2-3.3 ms, every slow call an involuntary context
switch). A lane wakes itself every ``WAKE_INTERVAL`` seconds while it has work recently, and
takes everything queued each time (a busy lane loops without sleeping). The caller wakes a lane
only when ``WAKE_ITEMS`` items wait for it (a burst: encoding should start before the next tick)
or when the lane has dozed off after ``DOZE_AFTER`` seconds without items (so an idle run costs
no wake-ups at all): at most one wake per burst or per idle spell, never one per image.

The bound that keeps: an item logged while its lane keeps up is being encoded within
``WAKE_INTERVAL`` (0.1 s), and its record reaches the operating system within about
``flush_interval / 2`` after it is stored (the sender's tick): about 0.6 s plus the encoding at
the default settings, inside the "logged more than a second earlier survives ``kill -9``" rule.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tracklet.core import threads
from tracklet.core.logged import LoggedObject, Placement
from tracklet.media import buffers, warm

# The most bytes of logged data (copies of arrays, ...) waiting to be encoded; more is dropped.
MAX_PENDING_BYTES = 512 << 20
# Seconds between a working lane's looks at its queue (the longest an item waits to start encoding).
WAKE_INTERVAL = 0.1
# Items queued for a sleeping lane at which the caller wakes it instead of waiting for its tick.
WAKE_ITEMS = 8
# Seconds without items after which a lane stops ticking (the next item wakes it): a caller pays
# for at most one wake per this many seconds, when a wake's few ms are under 0.1% of the time.
DOZE_AFTER = 10.0


class Context:
    """What a logged object's ``_record`` gets on the worker: the data root's blob store
    (opened on first use, on a worker thread) and the run's warning reporter."""

    def __init__(self, root: Path, warn: Callable[[Any, str], None], paths: Any = None) -> None:
        self.root = root
        self.warn = warn
        self._blobs: Any = None
        self._lock = threading.Lock()
        self.versions: Any = None  # the run's table version counter (``table_versions``); None: no run directory
        if paths is not None:
            from tracklet.media.table_versions import VersionCounter

            self.versions = VersionCounter(paths, warn)

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


class _Lane:
    """One worker thread's queue: a deque the caller appends to, and the event that wakes the
    thread when it sleeps (``state``: what the thread is doing, read by the caller without a lock)."""

    WORKING, TICKING, DOZING = 0, 1, 2

    __slots__ = ("jobs", "event", "state", "thread")

    def __init__(self) -> None:
        self.jobs: collections.deque[Any] = collections.deque()
        self.event = threading.Event()
        self.state = _Lane.WORKING
        self.thread: threading.Thread | None = None


class LoggedWorker:
    """``workers`` lanes, each a thread started on first use with a queue of its own."""

    def __init__(self, root: Path, put: Callable[[Any], None], warn: Callable[[Any, str], None], *,
                 workers: int = 2, max_pending: int = 256, max_pending_bytes: int = MAX_PENDING_BYTES,
                 wake_interval: float = WAKE_INTERVAL, paths: Any = None) -> None:
        self._put = put
        self._warn = warn
        self.context = Context(root, warn, paths)
        self._lanes = [_Lane() for _ in range(max(1, workers))]
        self._max_pending = max_pending
        self._max_bytes = max_pending_bytes
        self._wake_interval = wake_interval
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified as items are recorded
        self._pending = 0
        self._pending_bytes = 0
        self.dropped = 0  # items dropped because the queue was full
        self.recorded = 0  # items whose record was queued to the sender
        self.caller_wakes = 0  # times submit() woke a sleeping lane (a burst, or a lane dozing)
        self._closed = False
        self._late: dict[str, tuple[int, float, Any]] = {}  # key -> (step, time, object) to log at close
        self.late_recorded = 0  # dropped table logs logged again at close

    # ------------------------------------------------------------ caller side

    def submit_row(self, step: int, keys: tuple[str, ...], values: tuple[Any, ...]) -> bool:
        """``log()``'s path for a key set first seen holding logged objects only (``log({"img":
        Image(x)})``): submit each value under its key, as ``submit`` does, and return True; False,
        having taken none, when a value is no logged object now or the worker is closed (the row
        then takes ``log()``'s general path, which says why).

        Why a path of its own: right after a training step every object and code line the caller
        touches is a cache and TLB miss (~5 µs a function call on the shared VMs); the general
        path built a dict, scanned it twice and made a list per value before ``submit``."""
        if self._closed:
            return False
        for value in values:
            if not isinstance(value, LoggedObject):
                return False
        when = time.time()
        for key, item in zip(keys, values):
            if item._snapshot_at_log:
                item = item._at_log(key, step)
            self._enqueue(step, when, key, [item], item._pending_bytes())
        return True

    def submit(self, step: int, when: float, key: str, items: list[LoggedObject]) -> None:
        """Queue ``items`` logged under ``key`` at ``step``; drop them (counted, one warning) when
        the queue is full: never wait. A table that reached here without its snapshot (a row
        ``log()`` sent to history as plain values: ``Run._logged_in_history``, on the sender's
        thread) is snapshotted now."""
        size = 0
        for index, item in enumerate(items):
            if isinstance(item, LoggedObject):
                if item._snapshot_at_log:
                    items[index] = item = item._at_log(key, step)
                size += item._pending_bytes()
        self._enqueue(step, when, key, items, size)

    def _enqueue(self, step: int, when: float, key: str, items: list[Any], size: int) -> None:
        count = len(items)
        with self._lock:  # the lock itself, not the Condition over it: a Python-level __enter__ fewer
            pending = self._pending
            full = (self._closed or pending + count > self._max_pending
                    or bool(pending and self._pending_bytes + size > self._max_bytes))  # _full, inlined
            if not full:
                self._pending = pending + count
                self._pending_bytes += size
        if full:
            self._drop(step, key, items, when)
            return
        if self._late:
            self._late.pop(key, None)  # this log (of the same table, or a newer one) holds those rows now
        lane = self._lanes[hash(key) % len(self._lanes)]  # one key's items are recorded in the order logged
        jobs = lane.jobs
        jobs.append((step, when, key, items, size))
        if lane.thread is None:
            self._start(lane)
        elif (lane.state == _Lane.DOZING or (lane.state == _Lane.TICKING and len(jobs) >= WAKE_ITEMS)) \
                and not lane.event.is_set():
            # The state is read after the append: a lane that said DOZING before its last look at
            # ``jobs`` finds this job there, or is seen dozing here (see _loop).
            self.caller_wakes += 1
            lane.event.set()

    def _drop(self, step: int, key: str, items: list[Any], when: float = 0.0) -> None:
        """The queue is full: count ``items`` dropped, say so once per run (``finish()`` reports
        the count), and let each item undo what logging it took (``LoggedObject._dropped``); what
        that hands back (a table) is logged at ``close`` unless a later log of ``key`` is taken."""
        with self._lock:
            self.dropped += len(items)
        self._warn("media-queue-full",
                   f"tracklet: the media queue is full ({self._max_pending} items or {self._max_bytes >> 20} MiB "
                   f"waiting to be encoded): key {key!r} at step {step} and later media and tables are dropped "
                   "while it is, never waited for (an INCREMENTAL table keeps the rows for its next log(); the "
                   "count is reported at finish). Log media less often, or raise settings media_queue / "
                   "media_workers.")
        for item in items:
            if isinstance(item, LoggedObject):
                try:
                    again = item._dropped()
                except Exception:  # pragma: no cover - never fail the caller's log() over a drop
                    continue
                if again is not None and len(items) == 1:
                    self._late[key] = (step, when, again)

    def _start(self, lane: _Lane) -> None:
        with self._lock:
            if lane.thread is not None:
                return
            index = self._lanes.index(lane)
            thread = threading.Thread(target=self._loop, args=(lane,), name=f"tracklet-media-{index}", daemon=True)
            lane.thread = thread
        threads.start(thread)

    def _wake_all(self) -> None:
        """Have every lane look at its queue now (flush, close: someone waits for them)."""
        for lane in self._lanes:
            lane.event.set()

    # ------------------------------------------------------------ worker side

    def _loop(self, lane: _Lane) -> None:
        # Start the encoders' imports on a thread of their own, here rather than on the caller's
        # thread (Thread.start waits for the new thread to run), and map the copy buffers a burst
        # finds missing while they are imported (media.warm).
        warm.wait(buffers.POOL.refill)
        jobs = lane.jobs
        idle_since = time.monotonic()
        while True:
            if not jobs:
                # Say how long this lane will sleep before the last look at the queue, so a
                # caller appending meanwhile either is seen here or sees the state and wakes it.
                dozing = time.monotonic() - idle_since >= DOZE_AFTER
                lane.state = _Lane.DOZING if dozing else _Lane.TICKING
                if not jobs:
                    lane.event.wait(None if dozing else self._wake_interval)
                lane.event.clear()
                lane.state = _Lane.WORKING
                continue
            job = jobs.popleft()
            if job is None:
                return
            self._run_job(job)
            idle_since = time.monotonic()

    def _run_job(self, job: tuple[Any, ...]) -> None:
        step, when, key, items, size = job
        del job
        count = len(items)
        # Map the spare buffers the caller's copies found missing (a burst began) before encoding:
        # the rest of the burst then copies into them (media.buffers).
        buffers.POOL.refill()
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

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted so far is recorded (its record queued). False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake_all()
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
        """Log the tables whose last log a full queue dropped (at that step), record what is
        pending within ``timeout`` and stop the threads. False on timeout."""
        self._log_late()
        self._closed = True
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            if lane.thread is not None:
                lane.jobs.append(None)
                lane.event.set()
        done = True
        try:
            for lane in self._lanes:
                if lane.thread is not None:
                    threads.join(lane.thread, max(0.0, deadline - time.monotonic()))  # in slices (core/threads.py)
                    done = done and not lane.thread.is_alive()
        except BaseException:  # a Ctrl-C that ended the wait: the drops are still reported
            self._report_dropped()
            raise
        buffers.POOL.clear()  # the reserve served this run's bursts; a later run grows its own
        if self.context.versions is not None:
            self.context.versions.close()
        self._report_dropped()
        return done

    def _report_dropped(self) -> None:
        if self.dropped:
            late = (f"; {self.late_recorded} table(s) whose last log was dropped were logged at finish with the "
                    "rows they held" if self.late_recorded else "")
            self._warn("media-dropped", f"tracklet: {self.dropped} media item(s) were dropped because the media "
                                        f"queue was full{late}")

    @property
    def pending(self) -> int:
        """Media items and table logs queued and not recorded yet."""
        return self._pending

    def _log_late(self) -> None:
        """``close``'s first step, on the caller's thread: each table whose last log under a key was
        dropped is logged again there (past the queue's bound: the run is ending), so no row the
        table held is lost."""
        late, self._late = self._late, {}
        for key, (step, when, source) in late.items():
            item = source._at_log(key, step)
            with self._lock:
                self._pending += 1
            lane = self._lanes[hash(key) % len(self._lanes)]
            lane.jobs.append((step, when, key, [item], 0))
            if lane.thread is None:
                self._start(lane)
            self.late_recorded += 1
