"""Reading windows of many series at once: the queries behind a chart of 100 overlaid runs.

A window of one series is answered from the coarsest pyramid level that still has at least
``buckets`` entries in it; the (at most two) entries that straddle the window's edges are replaced
by the finer entries under them, recursively down to points, so a bucket never counts a point
outside the window and a spike just outside can't leak in. Doing that series by series costs a
few SQL statements per series, and for a chart of many runs the statements' fixed cost was most
of the time. ``read_windows`` does it for every series together, breadth first: one statement
counts the points in every window, then one statement per level reads the blocks that level
needs for every series (the windows themselves, then the edges' refinements), in chunks of
``CHUNK`` series. The answer for each series is the same as reading it alone.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
import sqlalchemy as sa

from tracklet.store import blocks as B
from tracklet.store.schema import blocks
from tracklet.store.tail_cache import decoded_nbytes
from tracklet.core import forksafe

CHUNK = 400  # series per statement: well under SQLite's and PostgreSQL's parameter limits
CACHE_BYTES = 128 << 20  # decoded blocks kept per process (their stored bytes included)

Points = tuple[np.ndarray, np.ndarray]  # (steps int64, values float64)
LoggedPoints = tuple[np.ndarray, np.ndarray, "B.Logged | None"]  # and how they were logged (None: as floats)


@dataclasses.dataclass(frozen=True)
class WindowRequest:
    """One series (a ``series`` row) over [start, end] in steps; None: from its first / to its last."""

    row: Any
    start: int | None
    end: int | None


@dataclasses.dataclass
class _Piece:
    """Entries of one series at ``level`` that summarize exactly the points in [start, end]:
    ``parts`` (entry arrays and the finer pieces at the edges, in step order) once read."""

    series_id: int
    level: int
    start: int
    end: int
    parts: list[np.ndarray | _Piece] = dataclasses.field(default_factory=list)
    points: LoggedPoints | None = None  # level 0: the points themselves

    def entries(self) -> np.ndarray:
        if self.points is not None:
            return B.point_entries(self.points[0], self.points[1])
        parts = [part.entries() if isinstance(part, _Piece) else part for part in self.parts]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=B.ENTRY)


def _levels(count: int) -> list[int]:
    """Entries per level for a series of ``count`` points (level 0 = points)."""
    sizes = [count]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // B.FANOUT))
    return sizes


def choose_level(count: int, in_window: int, buckets: int) -> int:
    """The coarsest level whose entries in the window still number at least ``buckets``."""
    sizes = _levels(count)
    level = 0
    while level + 1 < len(sizes) and in_window // (B.FANOUT ** (level + 1)) >= buckets:
        level += 1
    return level


def bucketize_points(steps: np.ndarray, values: np.ndarray, start: int, end: int, buckets: int) -> np.ndarray:
    """``B.bucketize(B.point_entries(steps, values), ...)`` without building one entry per point."""
    if len(steps) == 0:
        return np.empty(0, dtype=B.ENTRY)
    span = max(end - start + 1, 1)
    index = np.clip(((steps - start) * buckets) // span, 0, buckets - 1)
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    ends = np.append(starts[1:], len(steps)) - 1
    finite = np.isfinite(values)
    bounded = np.where(finite, values, np.nan)
    merged = np.empty(len(starts), dtype=B.ENTRY)
    merged["first_step"] = steps[starts]
    merged["last_step"] = steps[ends]
    with np.errstate(invalid="ignore"):
        merged["min"] = np.fmin.reduceat(bounded, starts)
        merged["max"] = np.fmax.reduceat(bounded, starts)
    merged["last"] = values[ends]
    merged["count"] = ends - starts + 1
    merged["nonfinite"] = np.add.reduceat((~finite).astype(np.uint32), starts)
    return merged


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def _overlapping(windows: Iterable[tuple[int, int, int]]) -> sa.ColumnElement[bool]:
    """Blocks of these (series_id, start, end) that reach into their window: one IN per window."""
    by_window: dict[tuple[int, int], list[int]] = defaultdict(list)
    for series_id, start, end in windows:
        by_window[(start, end)].append(series_id)
    return sa.or_(*(
        sa.and_(blocks.c.series_id.in_(ids), blocks.c.last_step >= start, blocks.c.first_step <= end)
        for (start, end), ids in by_window.items()
    ))


class DecodedBlocks:
    """The decoded form of recently read blocks, least recently used dropped first, up to
    ``limit`` bytes. Keyed by the stored bytes themselves, so a block rewritten by an append (or
    a run re-indexed from scratch) can never be answered from a stale entry; hashing the bytes
    costs a tenth of decompressing them. Shared by the threads of a process. A level-0 block read
    without ``logged`` is kept without its int/bool part (None), which a later read that wants it
    decodes and keeps in its place."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        # (level, stored bytes) -> (decoded, whether a level-0 block's Logged was decoded)
        self._entries: OrderedDict[tuple[int, bytes], tuple[Any, bool]] = OrderedDict()
        self._bytes = 0
        self._lock = forksafe.lock()  # DECODED is process-wide: a forked child gets it unlocked

    def decode(self, level: int, data: bytes, *, logged: bool = True) -> Any:
        """The decoded block; ``logged=False``: a level-0 block's ``Logged`` may be None."""
        key = (level, bytes(data))
        with self._lock:
            found = self._entries.get(key)
            if found is not None and (found[1] or not logged):
                self._entries.move_to_end(key)
                return found[0]
        complete = level != 0 or logged
        decoded = B.decode_block(key[1], logged=logged) if level == 0 else B.decode_entries(key[1])
        with self._lock:
            before = self._entries.get(key)
            if before is None or complete and not before[1]:
                if before is not None:
                    self._bytes -= len(key[1]) + decoded_nbytes(before[0])
                self._entries[key] = (decoded, complete)
                self._entries.move_to_end(key)
                self._bytes += len(key[1]) + decoded_nbytes(decoded)
                while self._bytes > self.limit and self._entries:
                    (_, old), (dropped, _) = self._entries.popitem(last=False)
                    self._bytes -= len(old) + decoded_nbytes(dropped)
        return decoded


DECODED = DecodedBlocks()


class WindowReader:
    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def read(self, requests: Sequence[WindowRequest], buckets: int | None, *,
             logged: bool = False) -> list[tuple[bool, Any]]:
        """Per request: ``(True, (steps, values))``, the exact points (every point when
        ``buckets`` is None, or when the window has no more than ``buckets``), or ``(False,
        entries)``: at most ``buckets`` merged entries over equal step ranges of the window.
        ``logged``: exact points as ``(steps, values, blocks.Logged or None)``, how each was logged."""
        answers: list[tuple[bool, Any] | None] = [None] * len(requests)
        tops: list[tuple[int, _Piece]] = []
        windows: list[tuple[int, int, int]] = []
        for index, request in enumerate(requests):
            row = request.row
            if row.count == 0:
                answers[index] = (True, (np.empty(0, dtype=np.int64), np.empty(0), None)[: 3 if logged else 2])
                continue
            start = row.first_step if request.start is None else request.start
            end = row.last_step if request.end is None else request.end
            tops.append((index, _Piece(row.id, 0, start, end)))
            windows.append((row.id, start, end))
        if buckets is not None:
            counts = self._window_counts([(p.series_id, p.start, p.end) for _, p in tops],
                                         {requests[i].row.id: requests[i].row for i, _ in tops})
            for index, piece in tops:
                piece.level = choose_level(requests[index].row.count, counts[piece.series_id], buckets)
        self._fill([piece for _, piece in tops], logged)
        for index, piece in tops:
            if piece.points is not None:
                steps, values, _ = piece.points
                if buckets is None or len(steps) <= buckets:
                    answers[index] = (True, piece.points if logged else (steps, values))
                else:
                    answers[index] = (False, bucketize_points(steps, values, piece.start, piece.end, buckets))
            else:
                answers[index] = (False, B.bucketize(piece.entries(), piece.start, piece.end, buckets or 1))
        return [answer for answer in answers if answer is not None]  # every one is set

    def _window_counts(self, windows: list[tuple[int, int, int]], rows: dict[int, Any]) -> dict[int, int]:
        """Points per series in its window, counting the two edge blocks whole (an upper bound);
        a window that covers the whole series is its count, without asking."""
        counts: dict[int, int] = {}
        partial = []
        for series_id, start, end in windows:
            row = rows[series_id]
            if start <= row.first_step and end >= row.last_step:
                counts[series_id] = row.count
            else:
                counts[series_id] = 0
                partial.append((series_id, start, end))
        for chunk in _chunks(partial):
            stmt = (sa.select(blocks.c.series_id, sa.func.sum(blocks.c.count))
                    .where(blocks.c.level == 0, _overlapping(chunk)).group_by(blocks.c.series_id))
            for series_id, total in self.connection.execute(stmt):
                counts[series_id] = int(total or 0)
        return counts

    def _fill(self, pieces: list[_Piece], logged: bool) -> None:
        """Read every piece, coarsest level first; edges add finer pieces to the levels below
        (``logged``: with how each point was logged, else its ``Logged`` left undecoded)."""
        by_level: dict[int, list[_Piece]] = defaultdict(list)
        for piece in pieces:
            by_level[piece.level].append(piece)
        level = max(by_level, default=-1)
        while level >= 0:
            for chunk in _chunks(by_level.pop(level, [])):
                found = self._blocks(level, chunk, logged)
                for piece in chunk:
                    data = [decoded for first, last, decoded in found.get(piece.series_id, ())
                            if last >= piece.start and first <= piece.end]
                    if level == 0:
                        piece.points = self._points(data, piece.start, piece.end)
                    else:
                        by_level[level - 1].extend(self._split(piece, data))
            level -= 1

    def _blocks(self, level: int, pieces: Sequence[_Piece], logged: bool) -> dict[int, list[tuple[int, int, Any]]]:
        """Decoded blocks at ``level`` reaching into any piece's window, per series, in order."""
        stmt = (sa.select(blocks.c.series_id, blocks.c.first_step, blocks.c.last_step, blocks.c.data)
                .where(blocks.c.level == level, _overlapping((p.series_id, p.start, p.end) for p in pieces))
                .order_by(blocks.c.series_id, blocks.c.seq))
        found: dict[int, list[tuple[int, int, Any]]] = defaultdict(list)
        for row in self.connection.execute(stmt):
            found[row.series_id].append((row.first_step, row.last_step, DECODED.decode(level, row.data, logged=logged)))
        return found

    @staticmethod
    def _points(data: list[LoggedPoints], start: int, end: int) -> LoggedPoints:
        if not data:
            return np.empty(0, dtype=np.int64), np.empty(0), None
        steps, values, logged = B.join_points(data)
        inside = (steps >= start) & (steps <= end)
        if inside.all():
            return steps, values, logged
        return steps[inside], values[inside], logged.take(inside) if logged is not None else None

    @staticmethod
    def _split(piece: _Piece, data: list[np.ndarray]) -> list[_Piece]:
        """Keep the entries wholly inside the piece's window; return finer pieces for the (at most
        two) that straddle its edges. Steps grow along a series, so only the first and last blocks
        need trimming, by binary search (no copies: structured arrays are slow to copy)."""
        kept = [block for block in data if len(block)]
        if not kept:
            return []
        kept[0] = kept[0][np.searchsorted(kept[0]["last_step"], piece.start, "left"):]
        kept[-1] = kept[-1][: np.searchsorted(kept[-1]["first_step"], piece.end, "right")]
        kept = [block for block in kept if len(block)]
        if not kept:
            return []
        head, tail = kept[0][0], kept[-1][-1]
        single = len(kept) == 1 and len(kept[0]) == 1
        before: list[_Piece] = []
        after: list[_Piece] = []
        if head["first_step"] < piece.start:
            before.append(_Piece(piece.series_id, piece.level - 1, piece.start, min(piece.end, int(head["last_step"]))))
            kept[0] = kept[0][1:]
        if tail["last_step"] > piece.end and (not single or head["first_step"] >= piece.start):
            after.append(_Piece(piece.series_id, piece.level - 1, max(piece.start, int(tail["first_step"])), piece.end))
            kept = [block for block in kept if len(block)]
            kept[-1] = kept[-1][:-1]
        piece.parts = [*before, *(block for block in kept if len(block)), *after]
        return before + after
