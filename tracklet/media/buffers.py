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
(``refill``, between items) allocates and touches buffers up to the reserve, so the pages are
mapped on the worker's time, not the caller's (at most ``MAX_RESERVE`` of a size). The pool keeps at most ``MAX_FREE_BYTES`` of free
buffers (more are freed), and none larger than ``MAX_BUFFER_BYTES``.
"""

from __future__ import annotations

import sys
import threading
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
        self._free_bytes = 0
        self._max_free = max_free_bytes
        self._max_buffer = max_buffer_bytes
        self._lock = threading.Lock()

    @property
    def free_bytes(self) -> int:
        return self._free_bytes

    def take(self, nbytes: int) -> Any:
        """A 1-D uint8 array of at least ``nbytes`` (a free one when there is one of its size)."""
        size = -(-nbytes // _PAGE) * _PAGE
        with self._lock:
            stack = self._free.get(size)
            if stack:
                self._free_bytes -= size
                return stack.pop()
            if size <= self._max_buffer:
                self._reserve[size] = min(self._reserve.get(size, 0) + 1, MAX_RESERVE,
                                         self._max_free // size)
        import numpy as np

        return np.empty(size, dtype=np.uint8)

    def give(self, buffer: Any) -> None:
        """Keep ``buffer`` (from ``take``) for a later ``take``, unless the pool is full."""
        size = int(buffer.nbytes)
        if size > self._max_buffer or size % _PAGE:
            return
        with self._lock:
            if self._free_bytes + size > self._max_free:
                return
            self._free.setdefault(size, []).append(buffer)
            self._free_bytes += size

    def refill(self, most: int = 8) -> int:
        """Allocate and touch up to ``most`` buffers where a size has fewer free than its reserve
        (on the worker's thread, between items); how many were made."""
        made = 0
        while made < most:
            with self._lock:
                size = next((size for size, want in self._reserve.items()
                             if len(self._free.get(size, ())) < want), 0)
                if not size or self._free_bytes + size > self._max_free:
                    return made
            import numpy as np

            buffer = np.empty(size, dtype=np.uint8)
            buffer.fill(0)  # maps every page now, in one numpy call that releases the GIL meanwhile
            self.give(buffer)
            made += 1
        return made

    def clear(self) -> None:
        """Free every buffer the pool keeps, and forget the reserves."""
        with self._lock:
            self._free.clear()
            self._reserve.clear()
            self._free_bytes = 0


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


def copy_array(array: Any, keep: list[Any]) -> Any:
    """A C-ordered copy of the numpy array ``array`` in a pooled buffer, which is appended to
    ``keep`` (its owner gives it back through ``release``). Arrays of objects, empty ones and very
    large ones are copied as numpy copies them.

    A C-contiguous array (the usual image) is copied by a memoryview assignment, which keeps the
    GIL: numpy's copy releases it for large arrays, and a media worker waiting for the GIL then
    takes it, so the caller would wait for the worker's next pause (measured: 16 µs a copy with a
    thread waiting, against 3.5 µs)."""
    import numpy as np

    nbytes = array.nbytes
    if array.dtype.hasobject or not 0 < nbytes <= MAX_BUFFER_BYTES or array.dtype.itemsize == 0:
        return array.copy()
    buffer = POOL.take(nbytes)
    copy = buffer[:nbytes].view(array.dtype).reshape(array.shape)
    try:
        if not array.flags.c_contiguous:
            raise ValueError("not C-contiguous")
        memoryview(buffer)[:nbytes] = memoryview(array).cast("B")
    except (ValueError, TypeError):  # strided, or a dtype the buffer protocol can't show
        np.copyto(copy, array, casting="no")
    keep.append(buffer)
    return copy


def tensor_as_array(tensor: Any) -> Any:
    """The CPU torch tensor ``tensor`` (not requiring grad) as a numpy array sharing its memory,
    when numpy has its dtype; else None (the caller clones it). Only attribute reads and
    ``numpy()``: torch's methods (``clone``, ``copy_``, even ``detach``) release the GIL."""
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):  # bfloat16, a conjugate or negative view, sparse, ...
        return None
