"""The background sender: a bounded queue drained by one worker thread into record sinks.

Modelled on OpenTelemetry's ``BatchSpanProcessor``. The caller's side (``put``) appends to a list
and, only when a batch has built up, wakes the worker. The worker wakes on that signal or on a
timer (half the flush interval; the first wake-up follows ``init()`` at once, and the records
that say what a run is wake it via ``nudge``), drains what is queued, encodes history rows as column batches,
and hands each serialized record to every sink. ``force_flush`` and ``shutdown`` wait with
timeouts. A failure inside the worker is reported once and contained: it never reaches the
training loop.

The worker shares the GIL with the training thread, and a single C call (transposing rows, a
packed ``extend``, ``SerializeToString``, freeing drained rows) holds it for as long as it runs:
a ``log()`` call that needs the GIL then waits that long. So the worker takes the queue a slice
of ``DRAIN_SLICE`` items at a time, encodes at most ``MAX_ROWS_PER_RECORD`` rows per record,
frees each slice's rows before taking the next, and hands the GIL to the caller between slices.

No record is written that readers would refuse (``parsecost.MAX_PARSE_BYTES``): rows carrying
more structured values and strings than ``encoder.MAX_VALUE_COST_PER_RECORD`` allows are cut into more
records (``RecordOverBudget``), a payload over ``PARSE_CHECK_BYTES`` is checked before it is
written (halved if refused), and a single row too costly alone is reported and dropped.

The queue is a series of chunks: producers append to the open chunk (``queue``, a plain list), and
the producer whose append fills it (``CHUNK_ENTRIES``) seals it: a fresh list becomes the open
chunk and the full one goes to the worker whole. A list that grew to a whole batch (26k entries,
200 KB and more) was reallocated as it grew, on the caller's thread: per 100k ``log()`` calls of 10
floats, 450-1,200 calls took page faults and 9-12 copied the list into 26-94 fresh pages at once;
a chunk stays small enough (26 KB) to be served from memory the allocator already has (about 110
calls with one page fault each, no copies). Sealing (``_seal``) is
serialized by a lock and publishes chunks in order; a producer loads the open chunk and appends
to it with no call in between (no switch point of the GIL), so nothing is ever appended to a chunk
after it was handed on. Whoever keeps the open chunk in an attribute of its own (``Run._queue``,
for ``log()``'s speed) is named to ``bind`` and moved to each fresh chunk with it; everyone else
goes through ``put``.

This module, like ``tracklet.core.run``, imports neither protobuf nor the encoder: the worker
imports the encoder on its own thread, as soon as ``start_gate`` is set (``init()`` sets it as it
returns) or else at its first drain. The records every run writes (run start, config, history,
summary, console, exit) are ``core/wire.py`` messages, serialized without protobuf, so a run
that writes only those never imports protobuf (~30-40 ms of CPU in a fresh process, which a
short script's ``finish()`` used to wait for); records of other kinds are protobuf messages,
built by whoever queues them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol

from tracklet.core import forksafe, threads
from tracklet.core.warn import WarnOnce
from tracklet.errors import RecordOverBudget

if TYPE_CHECKING:
    from tracklet.core.encoder import HistoryEncoder, SummaryTracker
    from tracklet.core.wire import Message
    from tracklet.proto import records_pb2 as pb

# The most rows one HistoryBatch record holds; bigger drains become several records. Every C call
# the worker makes on rows covers at most this many (0.16 ms of CPU at most for 10 floats a row
# on a 2-vCPU VM, against 3.6 ms for transposing a 20k-row drain at once).
MAX_ROWS_PER_RECORD = 2_000
# Queue entries a row of 10 values takes (see RowKeys): ``batch_size`` and ``max_queue`` count rows
# of that size, so the queue's thresholds are that many entries per row.
ROW_ENTRIES = 13
# The most queue entries the worker takes (and later frees) at a time (2,000 rows of 10 values);
# between slices it lets the producers run.
DRAIN_SLICE = 2_000 * ROW_ENTRIES
# The open chunk is sealed and handed to the worker once it holds this many entries (250 rows of
# 10 values, 26 KB of pointers): see the module docstring. Fewer when ``batch_size`` is smaller.
# A slice joins whole chunks up to ``DRAIN_SLICE``: 8 chunks of such rows, one full record.
CHUNK_ENTRIES = 250 * ROW_ENTRIES
# A history payload larger than this is checked with ``parsecost.record_parse_problem`` before it is
# written (readers refuse a record whose parse would take more than ``MAX_PARSE_BYTES``); a smaller
# one can't cost that much whatever it holds (``MAX_PARSE_BYTES / MAX_RATIO`` is 3.6 MiB; checked
# in tests/test_record_budget.py), so ordinary records never import protobuf for the check.
PARSE_CHECK_BYTES = 3 << 20
_thread_time_ns = time.thread_time_ns


class RowKeys:
    """A key set's marker: ``Run.log`` queues a row of plain values as this marker, the step, the
    time, then one entry per value (``width`` entries in all), in one atomic ``extend``.

    Nothing of such a row is a GC-tracked object (floats, ints and strs are not; the marker and
    the key tuple are the key set's, made once), so logging triggers no garbage collection. A row
    queued as tuples kept two GC-tracked objects alive per call until the worker took it: a gen-0
    collection (~30 us here, on the caller or on the worker while the caller waits for the GIL)
    every ~350 calls, which set log()'s p99.9. Other rows and items stay one entry each."""

    __slots__ = ("keys", "width")

    def __init__(self, keys: tuple) -> None:
        self.keys = keys
        self.width = len(keys) + 3

    def __eq__(self, other: object) -> bool:
        """Identity, and a plain bool for any other object: comparing a list of markers with a list
        of queue entries (``_run_of``) never calls a value's ``__eq__`` (a tensor's, an array's)."""
        return self is other

    __hash__ = object.__hash__


# A live run's summary record is rewritten at most this often (and on every flush and at the end).
SUMMARY_INTERVAL = 5.0


class RecordSink(Protocol):
    """Where encoded records go. The record log is the first sink; an HTTP sink comes later."""

    def write(self, payload: bytes) -> object:
        """Take one serialized ``Record``; may buffer. What it returns is not used (the record
        log's writer returns the record's offset, for its own callers)."""

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered records on (to the OS); with ``fsync``, make them durable."""

    def close(self) -> None:
        """Flush durably and release resources."""


class ConsoleChunk:
    """Lines written to stdout (stream 1) or stderr (stream 2), queued by the console capture;
    ``partial``: one line not ended yet, as it stands (the stream's next line replaces it)."""

    __slots__ = ("stream", "time", "lines", "partial")

    def __init__(self, stream: int, when: float, lines: list[str], partial: bool = False) -> None:
        self.stream = stream
        self.time = when
        self.lines = lines
        self.partial = partial


class SummarySet:
    __slots__ = ("items", "removed")

    def __init__(self, items: dict[str, Any], removed: tuple[str, ...] = ()) -> None:
        self.items = items
        self.removed = removed


class DefineMetric:
    __slots__ = ("record", "pattern", "modes", "as_dict")

    def __init__(self, record: pb.Record, pattern: str, modes: list[str], as_dict: bool = False) -> None:
        self.record = record
        self.pattern = pattern
        self.modes = modes
        self.as_dict = as_dict


def _run_of(items: list[Any], start: int, marker: RowKeys) -> int:
    """Where the complete rows of ``marker``'s key set that follow each other from ``start`` end.
    Windows of rows are checked at C level, growing while they match (a slice of one key set's
    rows, the common case, takes a few checks); the window where the run ends is stepped row by
    row."""
    width = marker.width
    end = len(items)
    stop = start
    window = 4
    while True:
        take = min((end - stop) // width, window)
        if take == 0:
            return stop
        # Markers on the left: each entry is compared by identity, then (an entry that is not
        # ``marker``) by RowKeys.__eq__, so a value's own __eq__ (a tensor's) is never called.
        if [marker] * take == items[stop : stop + take * width : width]:
            stop += take * width
            window *= 4
            continue
        limit = stop + take * width
        while stop < limit and items[stop] is marker:
            stop += width
        return stop


class _Rows:
    """History rows taken from the queue for one record, in queue order, grouped by key set.

    A flat row (see RowKeys) is kept as where it starts in the slice it was taken from; a row
    queued as a tuple is copied into the same flat form (``extra``). Nothing is allocated per
    row but ints in lists: a GC-tracked object per row, made on the worker, would bring back
    the collections that flat rows avoid."""

    __slots__ = ("source", "extra", "queued_rows", "groups", "count")

    def __init__(self, source: list[Any]) -> None:
        self.source = source
        self.extra: list[Any] = []
        self.queued_rows: list[tuple] = []  # the rows queued as tuples, as they were
        # keys -> [width, starts (>= 0 in source, < 0: -1 - offset in extra), row counts, rows, [last row]]
        self.groups: dict[Any, list[Any]] = {}
        self.count = 0

    def add_flat(self, keys: tuple, width: int, start: int, count: int) -> None:
        group = self.groups.get(keys)
        if group is None:
            group = self.groups[keys] = [width, [], [], [], [0]]
        group[1].append(start)
        group[2].append(count)
        row = self.count
        if count == 1:
            group[3].append(row)
        else:
            group[3].extend(range(row, row + count))
        self.count = row + count
        group[4][0] = self.count

    def add_row(self, row: tuple) -> None:
        self.queued_rows.append(row)
        keys = row[2]
        offset = len(self.extra)
        self.extra += (None, row[0], row[1], *row[3])
        self.add_flat(keys, len(keys) + 3, -1 - offset, 1)

    def _entries(self, group: list[Any]) -> tuple[list[Any], int, int]:
        """A key set's rows' entries, one row after another, as (a list, where they start in it,
        where they end): the slice taken from the queue itself when they are one stretch of it
        (no copy), else a list joined from their stretches and the rows queued as tuples."""
        width, starts, counts = group[0], group[1], group[2]
        source, extra = self.source, self.extra
        if len(starts) == 1 and starts[0] >= 0:
            return source, starts[0], starts[0] + counts[0] * width
        joined: list[Any] = []
        for start, count in zip(starts, counts):
            if start >= 0:
                joined += source[start : start + count * width]
            else:
                joined += extra[-1 - start : -1 - start + width]
        return joined, 0, len(joined)

    def columns(self) -> tuple[list[Any], list[Any], list[tuple[tuple, Any, list[Any]]]]:
        """(steps, times, groups) for ``HistoryEncoder.encode_columns``: a group per key set
        (keys, the rows it has, or () for every row, and its columns), in the order of their last
        rows. Each key set's entries are joined and transposed with slices, at C level."""
        single = len(self.groups) == 1
        steps: list[Any] = [0] * self.count
        times: list[Any] = [0.0] * self.count
        built = []
        for keys, group in sorted(self.groups.items(), key=lambda item: item[1][4][0]):
            width, rows = group[0], group[3]
            source, start, end = self._entries(group)
            if single:
                steps, times = source[start + 1 : end : width], source[start + 2 : end : width]
            else:
                list(map(steps.__setitem__, rows, source[start + 1 : end : width]))
                list(map(times.__setitem__, rows, source[start + 2 : end : width]))
            columns = [source[index:end:width] for index in range(start + 3, start + width)]
            built.append((keys, () if single else rows, columns))
        return steps, times, built

    def tuples(self) -> list[tuple]:
        """Every row as ``(step, time, keys, values)`` (the encoder's per-row form), in order."""
        rows: list[tuple | None] = [None] * self.count
        for keys, group in self.groups.items():
            width = group[0]
            entries, start, end = self._entries(group)
            for at, row in zip(range(start, end, width), group[3]):
                rows[row] = (entries[at + 1], entries[at + 2], keys, tuple(entries[at + 3 : at + width]))
        return rows  # type: ignore[return-value]


def _row_count(items: list[Any]) -> int:
    """How many history rows ``items`` (queued entries) hold: one per row tuple or key-set marker."""
    return sum(1 for item in items if type(item) is tuple or type(item) is RowKeys)


def _parse_problem(payload: bytes, estimate: int) -> str | None:
    """Why readers would refuse ``payload`` (parsing it would take too much memory), or None.
    ``estimate``: the encoder's estimate of its parse cost (``HistoryEncoder.cost``), never below
    parsecost's: within the readers' limit, the payload is not walked again. Imported here, for
    large payloads only: parsecost imports protobuf. Should the check itself fail (no protobuf),
    the record is written: readers check it again."""
    try:
        from tracklet.core import parsecost

        if estimate <= parsecost.MAX_PARSE_BYTES:
            return None
        return parsecost.record_parse_problem(payload)
    except Exception:  # noqa: BLE001 - never lose a record to the check
        return None


class _Flush:
    __slots__ = ("done", "fsync")

    def __init__(self, fsync: bool) -> None:
        self.done = threading.Event()
        self.fsync = fsync


class _Stop:
    __slots__ = ()


class BatchSender:
    """Owns the queue, the worker thread, the encoder and the sinks of one run."""

    def __init__(
        self,
        sinks: list[RecordSink],
        *,
        flush_interval: float = 1.0,
        max_queue: int = 20_000,
        batch_size: int = 2_000,
        summary: SummaryTracker | None = None,
        key_ids: dict[str, int] | None = None,
        summary_values: dict[str, Any] | None = None,
        name: str = "tracklet-sender",
        start_gate: threading.Event | None = None,
    ) -> None:
        """``key_ids`` and ``summary_values``: a resumed run's key numbers and summary.
        ``start_gate``: once it is set, the worker builds its encoder (imports protobuf) without
        waiting for its first drain."""
        self.sinks = sinks
        self.warn = WarnOnce()
        # Built on first use (by the worker, once start_gate is set or at its first drain): see ``_build``.
        self._summary = summary
        self._encoder: HistoryEncoder | None = None
        self._key_ids = key_ids
        self._summary_values = summary_values
        self._build_lock = threading.Lock()
        # The open chunk (see the module docstring): producers only ever append to it; once it
        # holds ``chunk_entries`` the producer that filled it seals it (``backlog``) into ``_chunks``.
        self.queue: list[Any] = []
        self._chunks: deque[list[Any]] = deque()
        self._seal_lock = threading.Lock()
        # The thread sealing: a signal handler (or a __del__) that logs or prints runs on the thread
        # that may hold _seal_lock; its backlog() returns at once instead of waiting for itself.
        self._sealing = threading.local()
        self._bound: Any = None  # an object whose ``_queue`` is kept on the open chunk (see ``bind``)
        self._carry: list[Any] = []  # entries of a row a slice cut, for the next drain (never in practice)
        self._pending: list[list[Any]] = []  # the chunks of the worker's drain (each [] once taken)
        self._in_hand: list[Any] = []  # the slice of the drain the worker is encoding and writing
        self._tick = flush_interval / 2
        max_entries = max_queue * ROW_ENTRIES  # in queue entries, as len(queue) counts
        batch_entries = batch_size * ROW_ENTRIES
        # A producer seals the open chunk at this many entries (``Run.log`` checks it inline).
        self.chunk_entries = max(1, min(CHUNK_ENTRIES, batch_entries, max_entries))
        self._wake_chunks = -(-batch_entries // self.chunk_entries)  # sealed chunks that wake the worker
        self._max_chunks = -(-max_entries // self.chunk_entries)  # sealed chunks at which producers wait
        self._wake = threading.Event()
        self._space = threading.Event()
        self._stopped = False
        self._finishing = False  # set once the caller waits for the whole queue: no yields then
        self._woken = False
        self._warned_full = False
        self._summary_written = 0.0
        self._tick_hooks: list[Callable[[], list[Any]]] = []
        # Takes (step, key, value) for a logged object found in history (see HistoryEncoder.logged):
        # its submission, or None if the value isn't a logged object.
        self.logged_hook: Callable[[int, str, Any], Callable[[], None] | None] | None = None
        self._start_gate = start_gate
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        threads.start(self._worker)

    # ------------------------------------------------------------ caller side

    def put(self, item: Any) -> None:
        """Queue one item. Cheap unless the open chunk is full (then it is sealed, see ``backlog``).

        ``Run.log`` inlines this (``queue.append`` then the length check) to save a call. The
        item is built before the open chunk is loaded, and nothing is called between that load
        and the append: a chunk is never appended to once it was sealed (module docstring)."""
        queue = self.queue
        queue.append(item)
        if len(queue) >= self.chunk_entries:
            self.backlog()

    def put_last(self, item: Any) -> None:
        """Queue a producer's last item without waiting for room (``Run.finish``'s exit record):
        the shutdown that follows drains everything within ``finish()``'s budget, while a wait for
        room here was outside it (and outside its Ctrl-C handling)."""
        self.queue.append(item)

    def put_many(self, items: Any) -> None:
        """Queue several items in one atomic ``extend``."""
        queue = self.queue
        queue.extend(items)
        if len(queue) >= self.chunk_entries:
            self.backlog()

    def bind(self, owner: Any) -> None:
        """Keep ``owner._queue`` on the open chunk: set now and moved to each fresh chunk as the
        old one is sealed, as long as it still names the chunk being sealed (an owner that put
        something else there, such as a finished run's stand-in, is left alone)."""
        with self._seal_lock:
            self._bound = owner
            owner._queue = self.queue

    def _seal(self, force: bool = False) -> None:
        """Hand the open chunk to the worker and open a fresh one: when it holds ``chunk_entries``
        (a producer's ``backlog``), or whatever it holds (``force``: the worker, taking everything
        queued). Under the lock, so that chunks are published in the order they were open."""
        fresh: list[Any] = []  # made first: an allocation may run the GC, which may switch threads
        sealing = self._sealing
        sealing.busy = True
        try:
            with self._seal_lock:
                full = self.queue
                if not full or (not force and len(full) < self.chunk_entries):
                    return  # another producer sealed it first
                # A producer loads the open chunk and appends with no switch point in between: from
                # here on, every append lands in ``fresh``. The owner's attribute moves in the same
                # breath (no call between its test and its store), before ``full`` is published.
                self.queue = fresh
                owner = self._bound
                if owner is not None and owner._queue is full:
                    owner._queue = fresh
                self._chunks.append(full)
        finally:
            sealing.busy = False

    def queued_entries(self) -> int:
        """Entries queued and not yet taken into a slice by the worker (sealed chunks, the open
        one, and those of the worker's drain it has not reached)."""
        return sum(map(len, [*self._pending, *self._chunks])) + len(self.queue)

    def backlog(self) -> None:
        """Called by producers once the open chunk holds ``chunk_entries``: seal it, wake the
        worker once ``batch_size`` rows are sealed, and wait (never drop) while ``max_queue`` are.
        Called again by this thread amid a seal (a signal handler's log()): nothing; the chunk is
        sealed by the seal it interrupted, or the next time."""
        if getattr(self._sealing, "busy", False):
            return
        self._seal()
        chunks = self._chunks
        if len(chunks) >= self._wake_chunks and not self._woken:
            self._woken = True
            self._wake.set()
        if len(chunks) < self._max_chunks:
            return
        if not self._worker.is_alive():
            return  # shutdown already reported what is left; never block a training loop on a dead worker
        if threading.get_ident() == self._worker.ident:
            return  # queued by the worker itself (a tick hook's put): waiting for itself would never end
        # A worker still loading the encoder (right after init) is no reason to
        # warn: the wait ends once it has, and it happens once per process.
        if not self._warned_full and self._encoder is not None:
            self._warned_full = True
            from tracklet.core.stack import user_stacklevel

            self.warn(
                "queue-full",
                f"tracklet: log() is waiting for the background sender, which is about "
                f"{self.queued_entries() // ROW_ENTRIES} rows behind "
                f"(max_queue={self._max_chunks * self.chunk_entries // ROW_ENTRIES}); "
                "nothing is dropped. Log less often or raise max_queue.",
                stacklevel=user_stacklevel(),
            )
        while len(chunks) >= self._max_chunks and self._worker.is_alive():
            self._space.clear()
            self._wake.set()
            self._space.wait(0.05)

    def wake(self, finishing: bool = False) -> None:
        """Have the worker process what is queued now, without waiting for it. ``finishing``:
        the caller is about to wait for everything queued (``Run.finish``), so the worker no
        longer yields between slices to let producers log."""
        if finishing:
            self._finishing = True
        self._woken = True
        self._wake.set()

    def nudge(self) -> None:
        """Have the worker write what is queued at its next chance rather than at its next tick:
        for the records that say what a run is (its config, its identity, its environment), rare
        and worth keeping should the process be killed soon after. At most one ``Event.set`` per
        wake-up of the worker; the caller does no I/O."""
        if not self._woken:
            self._woken = True
            self._wake.set()

    def put_soon(self, item: Any) -> None:
        """``put`` then ``nudge``."""
        self.put(item)
        self.nudge()

    def force_flush(self, timeout: float | None = None, fsync: bool = False) -> bool:
        """Write everything queued so far to every sink. False if that didn't finish in ``timeout``."""
        if not self._worker.is_alive():
            return not self.queue and not self._chunks
        request = _Flush(fsync)
        self.queue.append(request)
        self._wake.set()
        return threads.wait(request.done, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)

    def shutdown(self, timeout: float | None = None, budget: str | None = None) -> bool:
        """Write everything queued, close the sinks (durably), stop the worker.

        Returns False when that didn't finish within ``timeout``; what was still queued then is
        reported on stderr as not recorded. ``budget`` names the limit ``timeout`` is what is left
        of (``Run.finish``'s ``finish_timeout``), so the report names the setting, not a remainder.
        """
        if self._stopped:
            if not self._worker.is_alive():
                return True
            # Asked again while the worker still works through the stop queued before (a Ctrl-C
            # ended the caller's first wait, ``Run.finish``): wait for it once more.
        else:
            self._stopped = self._finishing = True
            stop = _Stop()  # made before the open chunk is loaded (see put)
            self.queue.append(stop)
            self._wake.set()
        threads.join(self._worker, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)
        if self._worker.is_alive():
            queued = [item for chunk in [*self._pending, *self._chunks, self.queue] for item in chunk]
            pending = _row_count(queued)
            # The worker's slice: some of its rows may be written by now, so "up to".
            in_hand = _row_count([*self._in_hand, *self._carry])
            more = f", and up to {in_hand} more the worker was encoding or writing may not be" if in_hand else ""
            print(
                f"tracklet: the background sender did not finish within {budget or f'{timeout}s'}; "
                f"{pending} queued history rows were not recorded{more}",
                file=sys.stderr,
            )
            return False
        return True

    def add_tick_hook(self, hook: Callable[[], list[Any]]) -> None:
        """Call ``hook`` on the worker at every wake-up; the items it returns are processed with
        what was queued (so a producer need not wake the worker, nor wait on a full queue)."""
        self._tick_hooks.append(hook)

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    @property
    def summary(self) -> SummaryTracker:
        """The run's summary, kept by the worker (read it after a ``force_flush``)."""
        if self._summary is None or self._encoder is None:
            self._build()
        assert self._summary is not None
        return self._summary

    @property
    def encoder(self) -> HistoryEncoder:
        if self._encoder is None:
            self._build()
        assert self._encoder is not None
        return self._encoder

    @encoder.setter
    def encoder(self, encoder: HistoryEncoder) -> None:
        self._build()
        self._encoder = encoder

    def _build(self) -> None:
        """Import the encoder (and with it protobuf) and create the summary and encoder. The worker
        does this once ``start_gate`` is set (as ``init()`` returns), else at its first drain; any
        thread asking for them earlier builds them itself."""
        with self._build_lock:
            if self._encoder is not None:
                return
            # A child forked amid this import had no sender: the encoder and protobuf half-imported,
            # their import locks held by a thread it doesn't have (a pool forked right after init()).
            with forksafe.section():
                from tracklet.core.encoder import HistoryEncoder, SummaryTracker

            if self._summary is None:
                self._summary = SummaryTracker(self.warn)
                self._summary.restore(self._summary_values or {})
            self._encoder = HistoryEncoder(self._summary, self.warn, self._key_ids)
            self._encoder.logged = self._logged_late

    def _logged_late(self, step: int, key: str, value: Any) -> Callable[[], None] | None:
        """A logged object that reached a history row: handed to ``logged_hook`` (set by the run)."""
        hook = self.logged_hook
        return None if hook is None else hook(step, key, value)

    # ------------------------------------------------------------ worker side

    def _run(self) -> None:
        if self._start_gate is not None:
            self._start_gate.wait()
            if not self._start_encoding():
                self._discard()
                return
            # The first wake-up is now, not a tick away: what init() queued (the run's start and
            # its config) and whatever was logged while the encoder was imported reach the OS at
            # once, so a run killed in its first moments is still a run, with its identity.
            self._woken = True
            self._wake.set()
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            self._woken = False
            if self._encoder is None and not self._start_encoding():
                self._discard()
                return
            for hook in self._tick_hooks:
                try:
                    items = hook()
                    self.queue.extend(items)  # after what is queued, so in this drain
                except Exception as error:  # contained like every worker failure
                    self.warn(("tick-hook", type(error)), f"tracklet: a sender tick hook failed: {error!r}")
            if self._drain(self._take()):
                break
        self._close_sinks()

    def _start_encoding(self) -> bool:
        """Build the encoder (on the worker, so ``init()`` does not wait for its imports)."""
        try:
            self._build()
            return True
        except Exception as error:  # e.g. a broken protobuf install: report it, never block the caller
            self.warn(
                "worker-start",
                f"tracklet: the background sender could not start ({error!r}); nothing of this run is recorded past its start",
            )
            return False

    def _take(self) -> list[list[Any]]:
        """Everything queued now, as the chunks it was queued in (the open one sealed too), in order."""
        self._seal(force=True)
        chunks = self._chunks
        taken = [self._carry] if self._carry else []
        self._carry = []
        while chunks:
            taken.append(chunks.popleft())
        self._space.set()
        return taken

    def _drain(self, chunks: list[list[Any]]) -> bool:
        """Process the chunks taken when the worker woke, a slice (about ``DRAIN_SLICE`` entries of
        whole chunks) at a time, then write the summary (when due) and flush the sinks. True once
        the stop item was processed."""
        stop = False
        taken, count = 0, len(chunks)
        items: list[Any] = []
        self._pending = chunks
        while taken < count:
            while taken < count and len(items) < DRAIN_SLICE:
                if items:
                    items += chunks[taken]
                else:
                    items = chunks[taken]
                chunks[taken] = []  # the chunk's own list is freed here; its items live on in ``items``
                taken += 1
            self._in_hand = items
            plan, used = self._plan(items)
            carry = items[used:]
            del items[used:]
            stop = self._execute(items, plan) or stop
            while len(items) > DRAIN_SLICE:  # each C call frees at most a slice's rows
                del items[-DRAIN_SLICE:]
            self._in_hand = []
            del items, plan  # this slice's rows are freed now, not a whole drain's at once
            items = carry  # a row the slice cut (chunks hold whole rows: not in practice)
            if taken < count and not self._finishing:
                # Lets a producer waiting for the GIL run before the next slice. Not once the run
                # is finishing: its caller waits for this drain then, and under load the yield
                # gives the CPU to other processes (2-3 ms a slice at load 10-12 on 2 cores).
                time.sleep(0)
        self._carry = items
        self._pending = []
        self._write_summary(force=stop)
        self._flush_sinks(False)
        return stop

    def _discard(self) -> None:
        """The worker could not start: drop what is queued (answering flushes) until the stop."""
        while True:
            items = [item for chunk in self._take() for item in chunk]
            for item in items:
                if type(item) is _Flush:
                    item.done.set()
            if any(type(item) is _Stop for item in items):
                break
            self._wake.wait(self._tick)
            self._wake.clear()
            self._woken = False
        self._close_sinks()

    @staticmethod
    def _plan(items: list[Any]) -> tuple[list[int], int]:
        """The complete items at the head of ``items``, as pairs of ints: ``(start, rows)`` for
        a run of flat rows of one key set (see RowKeys), ``(start, 0)`` for any other item; and
        how many entries they take. Ints only: no object per row."""
        plan: list[int] = []
        position, end = 0, len(items)
        while position < end:
            item = items[position]
            if type(item) is RowKeys:
                width = item.width
                stop = position + width
                if stop > end:
                    break  # a row the slice cut: the next slice starts with it
                if stop + width <= end and items[stop] is item:
                    stop = _run_of(items, position, item)
                plan += (position, (stop - position) // width)
                position = stop
            else:
                plan += (position, 0)
                position += 1
        return plan, position

    def _execute(self, items: list[Any], plan: list[int]) -> bool:
        """Encode and write the planned items in order; True if the stop item was among them."""
        rows = _Rows(items)
        stop = False
        batch: list[Any] = []  # consecutive items of one type with ``batch_records`` (op calls)
        for index in range(0, len(plan), 2):
            start, count = plan[index], plan[index + 1]
            item = items[start]
            kind = type(item)
            if batch and kind is not type(batch[0]):
                self._write_op_batch(batch)
                batch = []
            if count:
                width = item.width
                while count:
                    take = min(count, MAX_ROWS_PER_RECORD - rows.count)
                    rows.add_flat(item.keys, width, start, take)
                    start += take * width
                    count -= take
                    if rows.count >= MAX_ROWS_PER_RECORD:
                        self._write_batch(rows)
                        rows = _Rows(items)
                continue
            if kind is tuple:
                rows.add_row(item)
                if rows.count >= MAX_ROWS_PER_RECORD:
                    self._write_batch(rows)
                    rows = _Rows(items)
                continue
            if rows.count:
                self._write_batch(rows)
                rows = _Rows(items)
            if kind is _Flush:
                self._write_summary()
                self._flush_sinks(item.fsync)
                item.done.set()
            elif kind is _Stop:
                stop = True
            elif hasattr(kind, "batch_records"):
                batch.append(item)
            else:
                self._guarded(self._handle, item)
        if batch:
            self._write_op_batch(batch)
        if rows.count:
            self._write_batch(rows)
        return stop

    def _write_batch(self, rows: _Rows) -> None:
        """Encode (column by column: no tuple per row) and write at most ``MAX_ROWS_PER_RECORD``
        rows; should that fail, they are encoded again as tuples, where a defect costs one row."""
        if len(rows.queued_rows) == rows.count:
            self._write_rows(rows.queued_rows)  # rows queued as tuples only: the per-row path, as before
            return
        encoder = self.encoder
        try:
            record = encoder.encode_columns(*rows.columns())
            payload = None if record is None else record.SerializeToString()
        except RecordOverBudget as over:
            encoder.rollback()
            self._write_cut(rows.tuples(), over)
            return
        except Exception:
            encoder.rollback()
            self._write_rows(rows.tuples())
            return
        if payload is None:
            return
        if len(payload) > PARSE_CHECK_BYTES and _parse_problem(payload, encoder.cost) is not None:
            encoder.rollback()
            tuples = rows.tuples()
            if len(tuples) > 1:  # cut in halves (not encoded whole again first)
                self._write_cut(tuples, RecordOverBudget(0, len(tuples) // 2))
            else:
                self._write_rows(tuples)  # a row too costly alone: reported
            return
        if self._deliver(payload):
            encoder.commit()
        else:
            encoder.rollback()

    def _write_op_batch(self, items: list[Any]) -> None:
        """Items whose type builds many records in one call (``batch_records``: a drain's op calls,
        tracing/record.py), written in order; one that failed is reported, the others written. The
        worker's thread CPU time on them, building and delivering both, goes to the type's
        ``charge_batch`` when it has one (the tracing budget: tracing/ops.py)."""
        kind = type(items[0])
        started = _thread_time_ns()
        try:
            payloads = kind.batch_records(items)
        except Exception:  # the batch as a whole: each item on its own, contained one by one
            for item in items:
                self._guarded(self._handle, item)
            payloads = []
        for payload in payloads:
            if isinstance(payload, BaseException):
                self.warn(("worker-error", "batch_records", type(payload)),
                          f"tracklet: recording failed in {kind.__qualname__}.batch_records: "
                          f"{payload!r}; the run goes on.")
            elif payload:
                self._deliver(payload)
        charge = getattr(kind, "charge_batch", None)
        if charge is not None:
            try:
                charge(items, _thread_time_ns() - started)
            except Exception:  # noqa: BLE001 - accounting never costs a record
                pass

    def _handle(self, item: Any) -> None:
        kind = type(item)
        if kind is ConsoleChunk:
            from tracklet.core.wire import Record

            record = Record()
            output = record.console
            output.stream = item.stream
            for text in item.lines:
                line = output.lines.add()
                line.time = item.time
                line.text = text
                if item.partial:
                    line.partial = True
            self._write(record)
        elif kind is SummarySet:
            self.summary.set(item.items, item.removed)
        elif kind is DefineMetric:
            self.summary.define(item.pattern, item.modes, item.as_dict)
            self._write(item.record)
        elif hasattr(kind, "SerializeToString"):  # a record (a protobuf or a wire message)
            self._write(item)
        elif callable(item):
            record = item()
            if record is not None:
                self._write(record)
        else:
            raise TypeError(f"unexpected item on the sender queue: {item!r}")

    def _write_rows(self, rows: list[tuple]) -> int | None:
        """Encode and write rows. A bad value never fails a batch (the encoder contains it); should
        encoding fail anyway, each half is retried on its own, so only the row at fault is lost.
        Rows carrying more structured values and strings than one record may (``RecordOverBudget``)
        are cut into records of the rows that fit (returned then: the sender cuts the rows after
        them alike); a record readers would refuse to parse (too costly) is written in halves, and
        a single row that is too costly on its own is reported, not written."""
        encoder = self.encoder
        try:
            record = encoder.encode(rows)
            payload = None if record is None else record.SerializeToString()
        except RecordOverBudget as over:
            encoder.rollback()
            return self._write_cut(rows, over)
        except Exception as error:
            encoder.rollback()
            if len(rows) > 1:
                middle = len(rows) // 2
                self._write_rows(rows[:middle])
                self._write_rows(rows[middle:])
            else:
                import traceback

                self.warn(
                    ("row-error", type(error)),
                    f"tracklet: the row at step {rows[0][0]!r} could not be recorded ({error!r}); the run goes on. "
                    f"{''.join(traceback.format_exception(type(error), error, error.__traceback__)[-3:]).strip()}",
                )
            return None
        if payload is None:
            return None
        problem = _parse_problem(payload, encoder.cost) if len(payload) > PARSE_CHECK_BYTES else None
        if problem is not None:
            encoder.rollback()
            if len(rows) > 1:
                return self._write_cut(rows, RecordOverBudget(0, len(rows) // 2))
            self._too_costly(rows[0], problem)
            return None
        if self._deliver(payload):
            encoder.commit()
        else:  # its key definitions are not in the log: define them again in the next record
            encoder.rollback()
        return None

    def _write_cut(self, rows: list[tuple], over: RecordOverBudget) -> int:
        """Write rows that were over one record's budget as records of as many rows as ``over``
        estimates fit; a record that is still over is cut again, and the records after it take
        the rows that fitted there. Returns the rows a record took last."""
        count = len(rows)
        cut = over.fit if 0 < over.fit < count else over.row if 0 < over.row < count else count // 2
        start = 0
        while start < count:
            fitted = self._write_rows(rows[start : start + cut])
            start += cut
            if fitted:
                cut = min(cut, fitted)
        return cut

    def _too_costly(self, row: tuple, problem: str) -> None:
        """Report a row whose record alone readers would refuse (not written; the run goes on)."""
        try:
            keys = ", ".join(repr(str(key)) for key in row[2][:10]) + (", ..." if len(row[2]) > 10 else "")
        except Exception:  # noqa: BLE001 - a key with no str(): the report names the step
            keys = "?"
        self.warn(
            ("row-too-costly", keys),
            f"tracklet: the row at step {row[0]!r} (keys {keys}) is not recorded: its record would be {problem}. "
            "Log fewer or smaller structured values per step; the run goes on (later rows of these keys "
            "that are as costly are dropped without another warning).",
        )

    def _write_summary(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._summary_written < SUMMARY_INTERVAL:
            return
        self._summary_written = now
        self._guarded(lambda: self._write(self.summary.take_update()))

    def _write(self, record: pb.Record | Message | None) -> None:
        if record is not None:
            self._deliver(record.SerializeToString())

    def _deliver(self, payload: bytes) -> bool:
        """Hand one record to every sink; True if every sink took it."""
        delivered = True
        for sink in self.sinks:
            delivered = self._guarded(sink.write, payload) and delivered
        return delivered

    def _flush_sinks(self, fsync: bool) -> None:
        for sink in self.sinks:
            self._guarded(sink.flush, fsync)

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            self._guarded(sink.close)

    def _guarded(self, function: Callable[..., Any], *args: Any) -> bool:
        """Call ``function``; True if it returned, False (after one warning per kind) if it raised."""
        try:
            function(*args)
            return True
        except Exception as error:  # contained: the training loop must never see this
            import traceback

            where = getattr(function, "__qualname__", repr(function))
            self.warn(
                ("worker-error", where, type(error)),
                f"tracklet: recording failed in {where}: {error!r}; the run goes on. "
                f"{''.join(traceback.format_exception_only(type(error), error)).strip()}",
            )
            return False

    def abandon_after_fork(self) -> None:
        """In a forked child the worker thread does not exist: drop the queue, don't wait for it."""
        self.queue.clear()
        self._chunks.clear()
        self._stopped = True

