"""The last block of each level of the series this process appended to, kept between appends.

A small append (an online run's upload, about once a second: a few dozen rows) rewrites the
last, partial block of every level of each series it touches (``blocks.py``). Reading those
blocks back and decoding them was a statement and about a fifth of the indexing CPU of every
such append; a ``TailCache`` keeps them, decoded, as the transaction that wrote them committed.

A run's tails are used only while the run's row still carries the version they were written
with: its ``log_offset``, ``heartbeat_at`` (a fresh ``time.time()`` at every write of the row)
and ``state``, read under the run's lock in the appending transaction. Any other writer of the
run (another server process sharing the store, ``tracklet index``, a rebuild, the run indexed
anew, a pass that found it crashed and joined its open blocks into single rows) writes another
version, and its blocks are read from the store as before. Each series' point
count is checked too. The cache holds at most ``max_bytes`` of arrays, least recently used runs
out first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

Points = tuple[np.ndarray, np.ndarray, Any]  # a level-0 block: steps, values, blocks.Logged or None
Block = Points | np.ndarray  # a level >= 1 block: summary entries (blocks.ENTRY)
Version = tuple[int, Any, str]  # the run row's (log_offset, heartbeat_at, state)

MAX_BYTES = 64 << 20


class SeriesTail:
    """One series' point count, first step, and last block at each level by (level, seq), decoded."""

    __slots__ = ("count", "first_step", "blocks", "nbytes")

    def __init__(self, count: int, first_step: int, blocks: dict[tuple[int, int], Block]) -> None:
        self.count = count
        self.first_step = first_step
        self.blocks = blocks
        self.nbytes = sum(decoded_nbytes(block) for block in blocks.values())


def decoded_nbytes(block: Block) -> int:
    """Memory held by a decoded block: its points' (steps, values, logged) arrays, or its entries
    array (a level-0 block's ``Logged`` is a tuple of two); the tail cache and the decoded-block
    cache (``windows.py``) count their budgets with it."""
    if isinstance(block, tuple):
        return sum(decoded_nbytes(part) for part in block if part is not None)
    return int(block.nbytes)


class RunTails:
    """One run's series as this process last committed them: ids by (kind, key), tails by id."""

    __slots__ = ("ids", "series")

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.series: dict[int, SeriesTail] = {}

    def nbytes(self) -> int:
        return sum(tail.nbytes for tail in self.series.values())


class TailCache:
    """Series tails by run, as committed; ``take`` a run's before appending to it, ``stage``
    what the transaction wrote, and ``commit`` or ``discard`` with the transaction."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[int, tuple[Version, RunTails, int]] = OrderedDict()
        self._bytes = 0
        self._staged: dict[int, tuple[Version, RunTails]] = {}

    def take(self, run_pk: int, version: Version | None) -> RunTails:
        """The run's series if the run's row is still at ``version``, else none; either way the
        run's entry leaves the cache until a commit stages it again."""
        entry = self._runs.pop(run_pk, None)
        if entry is None:
            return RunTails()
        self._bytes -= entry[2]
        return entry[1] if entry[0] == version else RunTails()

    def stage(self, run_pk: int, version: Version, tails: RunTails) -> None:
        """What the run's series tails are once the current transaction commits the run's row
        at ``version``."""
        self._staged[run_pk] = (version, tails)

    def commit(self) -> None:
        """The current transaction committed: what it staged is the store's state."""
        for run_pk, (version, tails) in self._staged.items():
            size = tails.nbytes()
            if size > self.max_bytes:
                continue
            old = self._runs.pop(run_pk, None)
            if old is not None:
                self._bytes -= old[2]
            self._runs[run_pk] = (version, tails, size)
            self._bytes += size
        self._staged = {}
        while self._bytes > self.max_bytes:
            _, (_, _, size) = self._runs.popitem(last=False)
            self._bytes -= size

    def discard(self) -> None:
        """The current transaction rolled back: what it staged never happened."""
        self._staged = {}

    def clear(self) -> None:
        self._runs.clear()
        self._staged = {}
        self._bytes = 0
