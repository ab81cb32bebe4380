"""Reusable host buffers for the snapshots media constructors take (``tracklet.media.snapshot``).

Why: copying a 224×224×3 image into fresh memory costs the caller about 35 page faults (glibc
serves an allocation that large with pages the kernel has to map and zero, and hands them back
when the copy is freed), measured at ~60 µs on the shared VMs against ~3 µs for the copy itself
into memory already mapped. A media item's copy lives only until the worker has encoded it, so
the pool keeps the buffers of recorded items and the next snapshot of that size copies into one.

A buffer goes back to the pool when the media item that holds it is freed (``Media.__del__``,
on the worker once the item is recorded: ``release``), and only if nothing else holds a view of
it. When the caller logs faster than items are recorded (a burst of images), returned buffers
don't suffice: each ``take`` that finds none raises that size's reserve by one, and the worker
(``refill``, before and after each job) allocates and touches buffers up to the whole reserve, so
the pages are mapped on the worker's time, not the caller's (at most ``MAX_RESERVE`` of a size).
Refilling a few buffers per job instead let a worker slower than the caller (images logged in
bursts on a loaded machine) fall behind the bursts: every copy of a burst then mapped fresh pages.
The pool keeps at most ``MAX_FREE_BYTES`` of free buffers (more are freed), and none larger than
``MAX_BUFFER_BYTES``; ``mapped_bytes`` counts the buffers it made that are free or lent out (lent
ones are held by queued media items, which the worker's queue bounds).
"""

from __future__ import annotations

import operator
import sys
from tracklet.core import forksafe
from typing import Any

MAX_FREE_BYTES = 64 << 20
MAX_BUFFER_BYTES = 32 << 20
MAX_RESERVE = 64  # buffers of one size refill keeps free, at most
_PAGE = 4096


class BufferPool:
    """Free uint8 buffers by size (a multiple of 4 KiB); thread-safe."""

    def __init__(self, max_free_bytes: int = MAX_FREE_BYTES, max_buffer_bytes: int = MAX_BUFFER_BYTES) -> None:
        self._free: dict[int, list[Any]] = {}
        self._reserve: dict[int, int] = {}  # buffers of each size ``refill`` keeps free
        self._mapped = 0  # bytes of the buffers this pool made that are free or lent out
        self._max_free = max_free_bytes
        self._max_buffer = max_buffer_bytes
        self._lock = forksafe.lock()  # POOL is process-wide: a forked child gets it unlocked

    @property
    def free_bytes(self) -> int:
        return sum(size * len(stack) for size, stack in list(self._free.items()))

    @property
    def mapped_bytes(self) -> int:
        """Bytes of the buffers this pool made (``take``, ``refill``) that it keeps free or that are
        lent out and not yet freed: what it holds mapped, at most ``MAX_FREE_BYTES`` more than what
        its holders (queued media items) keep."""
        return self._mapped

    def take(self, nbytes: int) -> Any:
        """A 1-D uint8 array of at least ``nbytes`` (a free one when there is one of its size).

        A free buffer is taken without the lock (``list.pop`` is atomic under the GIL): on the
        caller's thread after a training step every object touched is a cache and TLB miss
        (measured: ~5 µs for a no-op call, ~20 µs for ``with lock``), so the common path touches
        as few as it can."""
        size = -(-nbytes // _PAGE) * _PAGE
        stack = self._free.get(size)
        if stack:
            try:
                return stack.pop()
            except IndexError:  # another thread took the last one meanwhile
                pass
        if size <= self._max_buffer:
            with self._lock:
                self._reserve[size] = min(self._reserve.get(size, 0) + 1, MAX_RESERVE, self._max_free // size)
                self._mapped += size
        import numpy as np

        return np.empty(size, dtype=np.uint8)

    def give(self, buffer: Any) -> None:
        """Keep ``buffer`` (from ``take``) for a later ``take``, unless the pool is full."""
        size = int(buffer.nbytes)
        if size > self._max_buffer or size % _PAGE:
            return
        with self._lock:
            if self.free_bytes + size > self._max_free:
                self._mapped -= size
                return
            self._free.setdefault(size, []).append(buffer)

    def drop(self, buffer: Any) -> None:
        """``buffer`` (from ``take``) is not coming back (something else still views it): stop
        counting it in ``mapped_bytes``."""
        size = int(buffer.nbytes)
        if size <= self._max_buffer and not size % _PAGE:
            with self._lock:
                self._mapped -= size

    def refill(self, most: int = MAX_RESERVE) -> int:
        """Allocate and touch buffers where a size has fewer free than its reserve, up to ``most``
        (on the worker's thread, between jobs); how many were made."""
        made = 0
        while made < most:
            with self._lock:
                size = next((size for size, want in self._reserve.items()
                             if len(self._free.get(size, ())) < want), 0)
                if not size or self.free_bytes + size > self._max_free:
                    return made
                self._mapped += size
            import numpy as np

            buffer = np.empty(size, dtype=np.uint8)
            buffer.fill(0)  # maps every page now, in one numpy call that releases the GIL meanwhile
            self.give(buffer)
            made += 1
        return made

    def clear(self) -> None:
        """Free every buffer the pool keeps, and forget the reserves."""
        with self._lock:
            self._mapped -= self.free_bytes
            self._free.clear()
            self._reserve.clear()


POOL = BufferPool()


def _refs_alone() -> int:
    """``sys.getrefcount`` of a buffer popped from its owner's list in ``release`` when nothing
    else refers to it (measured the way ``release`` counts, so it follows the interpreter's rules)."""
    buffers = [object()]
    while buffers:
        buffer = buffers.pop()
        return sys.getrefcount(buffer)
    return 0


_ALONE = _refs_alone()


def release(buffers: list[Any]) -> None:
    """Give the buffers in ``buffers`` (emptied) back to the pool: each only when nothing else refers
    to it (an array viewing it would otherwise see its bytes change when it is reused)."""
    while buffers:
        buffer = buffers.pop()
        if sys.getrefcount(buffer) <= _ALONE:
            POOL.give(buffer)
        else:
            POOL.drop(buffer)


NDARRAY: Any = None  # numpy.ndarray, once a copy has needed numpy (Image's constructor tests for it)

# memoryview formats of numpy's plain numeric dtypes in native byte order (no objects, no records)
_PLAIN_FORMATS = frozenset("?bBhHiIlLqQefdg")


class PooledCopy(tuple):
    """A copy of a C-contiguous array in a pooled ``buffer``: what ``copy_dense`` returns, a tuple
    ``(buffer, shape, dtype, nbytes)``. The numpy view of it (``numpy()``) is made on the worker: an
    ndarray made on the caller's thread cost it ~13 µs after a training step (cold caches). A tuple
    subclass, made by ``tuple.__new__``, so making one runs no Python-level ``__init__`` either."""

    __slots__ = ()

    buffer = property(operator.itemgetter(0))
    shape = property(operator.itemgetter(1))
    dtype = property(operator.itemgetter(2))
    nbytes = property(operator.itemgetter(3))

    def numpy(self) -> Any:
        """The copy as an array (a view of the pooled buffer)."""
        return NDARRAY(self[1], self[2], buffer=self[0])

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


def copy_dense(array: Any, keep: list[Any]) -> Any:
    """``copy_array`` for a numpy array (``NDARRAY`` known) on the path a plain image takes: a
    C-contiguous array of a plain numeric dtype is copied into a pooled buffer (appended to
    ``keep``) and returned as a ``PooledCopy``; any other array goes to ``copy_array``. Its checks
    ask the memoryview, not the dtype, and a free buffer is popped here, not in a call of
    ``BufferPool.take``: every object and function the caller touches costs it (see ``take``)."""
    source = memoryview(array)
    size = source.nbytes
    if not (source.c_contiguous and source.format in _PLAIN_FORMATS and 0 < size <= MAX_BUFFER_BYTES):
        return copy_array(array, keep)
    stack = POOL._free.get(-(-size // _PAGE) * _PAGE)
    try:
        buffer = stack.pop() if stack else POOL.take(size)
    except IndexError:  # another thread took the last one meanwhile
        buffer = POOL.take(size)
    memoryview(buffer)[:size] = source.cast("B")
    keep.append(buffer)
    return tuple.__new__(PooledCopy, (buffer, source.shape, array.dtype, size))

# A strided array is copied as the whole memory span its elements lie in (one memcpy that keeps the
# GIL) when that span is at most this many times the array's own bytes; else numpy copies it.
MAX_SPAN_RATIO = 4


def copy_array(array: Any, keep: list[Any]) -> Any:
    """A copy of the numpy array ``array`` in a pooled buffer, which is appended to ``keep`` (its
    owner gives it back through ``release``). Arrays of objects, empty ones and very large ones are
    copied as numpy copies them.

    The copy is one memcpy by a memoryview assignment, which keeps the GIL: numpy's copy releases
    it for more than 500 items, and a media worker waiting for the GIL then takes it, so the caller
    would wait for the worker's next pause (measured: 16 µs a copy with a thread waiting, against
    3.5 µs). A C-contiguous array (the usual image) is copied as it is. Any other array (a
    transposed or permuted view, Fortran order, flipped axes, a crop or a stride) is copied as the
    span of memory its elements lie in, and the copy is a view of the buffer with the same strides
    (the worker makes it contiguous when it encodes): every layout that is a permutation or a flip
    of a dense block costs one memcpy of its own size. A sparse view whose span is more than
    ``MAX_SPAN_RATIO`` times its size (a small crop of a large array) is copied by numpy.

    On the caller's thread after a training step every object touched is a cache and TLB miss,
    so the dense path touches few: the memoryview tells contiguity (no ``flags`` object) and the
    copy is a view made with the ``ndarray`` type kept here."""
    global NDARRAY
    if NDARRAY is None:
        import numpy

        NDARRAY = numpy.ndarray
    dtype = array.dtype
    nbytes = array.nbytes
    if dtype.hasobject or not 0 < nbytes <= MAX_BUFFER_BYTES or dtype.itemsize == 0:
        return array.copy()
    try:
        source: Any = memoryview(array)
    except (ValueError, TypeError, BufferError):  # a dtype the buffer protocol can't show (datetime64)
        source = None
    if source is not None and source.c_contiguous:
        buffer = POOL.take(nbytes)
        try:
            memoryview(buffer)[:nbytes] = source.cast("B")
        except (ValueError, TypeError):  # a format memoryview can't cast to bytes
            NDARRAY(array.shape, dtype, buffer=buffer)[...] = array
        keep.append(buffer)
        return NDARRAY(array.shape, dtype, buffer=buffer)
    if array.flags.c_contiguous:
        import numpy as np

        buffer = POOL.take(nbytes)
        copy = NDARRAY(array.shape, dtype, buffer=buffer)
        np.copyto(copy, array, casting="no")
        keep.append(buffer)
        return copy
    span = _span(array)
    if span is None:
        return array.copy()
    first, size = span
    buffer = POOL.take(size)
    try:
        memoryview(buffer)[:size] = memoryview(first).cast("B")
    except (ValueError, TypeError):
        POOL.give(buffer)
        return array.copy()
    offset = array.__array_interface__["data"][0] - first.__array_interface__["data"][0]
    keep.append(buffer)
    return NDARRAY(array.shape, dtype, buffer=buffer, offset=offset, strides=array.strides)


def _span(array: Any) -> tuple[Any, int] | None:
    """The bytes a non-contiguous ``array``'s elements lie in, as a C-contiguous uint8 array over
    them, and their count; None when that span is too large a multiple of the array's size or its
    strides don't fit its items."""
    import numpy as np

    itemsize = array.dtype.itemsize
    if any(stride % itemsize for stride in array.strides):
        return None
    # Flip the axes with negative strides: the view starts at the span's lowest address.
    low = array[tuple(slice(None, None, -1) if stride < 0 else slice(None) for stride in array.strides)]
    size = itemsize + sum((length - 1) * stride for length, stride in zip(low.shape, low.strides))
    if size > MAX_SPAN_RATIO * array.nbytes or size > MAX_BUFFER_BYTES:
        return None
    raw = np.lib.stride_tricks.as_strided(low, shape=(size // itemsize,), strides=(itemsize,))
    return raw.view(np.uint8), size


def tensor_as_array(tensor: Any) -> Any:
    """The CPU torch tensor ``tensor`` (not requiring grad) as a numpy array sharing its memory,
    when numpy has its dtype; else None (the caller clones it). Only attribute reads and
    ``numpy()``: torch's methods (``clone``, ``copy_``, even ``detach``) release the GIL."""
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):  # bfloat16, a conjugate or negative view, sparse, ...
        return None
