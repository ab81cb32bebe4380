"""Binary blocks of a metric series, and the min/max/last/count pyramid built over them.

A numeric series is stored at several levels. Level 0 holds the points: blocks of up to
``BLOCK_SIZE`` (step, value) pairs, steps delta-encoded and compressed, values raw float64. A
block holding a value logged as an int or a bool also keeps, after them, how each of its points
was logged (``Logged``): one byte where every point is an int its float64 holds exactly (within
2**53), or every point a bool; else each point's kind and the ints exactly (int64: past 2**53
too), compressed. Readers of the values as data give them back as logged, charts read the
float64s. Blocks an older tracklet
wrote have no such part and read as floats, as they did (``tracklet index --rebuild`` gives them
their ints); a float series' blocks are the same bytes as before.
Level L >= 1 holds one summary *entry* per ``FANOUT ** L`` consecutive points: first and last
step, min and max of the finite values, the last value, the point count and how many were
NaN or +-inf (so one NaN never poisons a bucket's min or max). A query for B buckets reads the
coarsest level that still has at least B entries in its window: between B and FANOUT * B
entries, whatever the series length.

Entries always start at a multiple of ``FANOUT ** L`` points, and ``BLOCK_SIZE`` is a multiple of
``FANOUT``, so appending points only ever changes the last block of each level. A level's full
blocks are stored whole, block ``k`` as row ``seq = k``; its last block while it is partial (the
*open* block) is stored in pieces of ``PIECE_SIZE`` entries, piece ``j`` of open block ``k`` as row
``seq = k + j``, so an append rewrites the piece its first new entry falls in and the pieces after
it, not the whole block (a server appends a few dozen points a second to each series: rewriting
whole open blocks re-encoded ~50 times the bytes appended). When an open block fills up it is
written whole over its first piece and its other pieces are deleted. Once a run ended (finished,
failed or crashed) its open blocks are *joined*, each stored as one row again (``Indexer``): a
chart reads one row per level, not up to 16; an append to a joined open block (a resumed run)
writes all of it as pieces again. Rows of a level in ``seq`` order hold its entries in order
either way, so readers need not know which rows are pieces.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple, Sequence

import numpy as np

FANOUT = 16
BLOCK_SIZE = 1024  # points per level-0 block, entries per summary block
PIECE_SIZE = 64  # entries per stored piece of a level's open block (BLOCK_SIZE is a multiple)

ENTRY = np.dtype(
    [
        ("first_step", "<i8"),
        ("last_step", "<i8"),
        ("min", "<f8"),
        ("max", "<f8"),
        ("last", "<f8"),
        ("count", "<u4"),
        ("nonfinite", "<u4"),
    ]
)

def stored_rows(length: int, changed: int, joined: bool = False) -> list[tuple[int, int, int]]:
    """The rows that store ``length`` entries of a level from the start of one of its blocks on,
    as (seq past that block's, first entry, end entry), leaving out the pieces of the open block
    that hold no entry from ``changed`` on (entries before it are stored already). ``joined``: the
    open block as one row too (a run that ended: its open blocks are read, no longer appended to)."""
    rows = []
    for start in range(0, length, BLOCK_SIZE):
        end = min(start + BLOCK_SIZE, length)
        block = start // BLOCK_SIZE
        if end - start == BLOCK_SIZE or joined:
            rows.append((block, start, end))
            continue
        first = start + max(0, changed - start) // PIECE_SIZE * PIECE_SIZE
        rows.extend((block + (piece - start) // PIECE_SIZE, piece, min(piece + PIECE_SIZE, end))
                    for piece in range(first, end, PIECE_SIZE))
    return rows


_POINTS_HEADER = struct.Struct("<IqI")  # point count, first step, compressed deltas length

# How a point was logged (``Logged``'s kinds): a float (or an int outside int64, kept as a double),
# an int, a bool.
FLOAT, INT, BOOL = 0, 1, 2


class Logged(NamedTuple):
    """How each point of a run of points was logged: ``kinds`` (uint8: FLOAT, INT or BOOL) and,
    for INT and BOOL points, the exact value in ``ints`` (int64; 0 for a float point). Kept only
    for points that hold an int or a bool (None otherwise: a series of floats pays nothing)."""

    kinds: np.ndarray
    ints: np.ndarray

    def take(self, index: Any) -> Logged:
        """The points ``index`` (a slice, a mask, indices) selects, like numpy's ``array[index]``."""
        return Logged(self.kinds[index], self.ints[index])


def floats_logged(count: int) -> Logged:
    """``count`` points logged as floats."""
    return Logged(np.zeros(count, dtype=np.uint8), np.zeros(count, dtype=np.int64))


def join_logged(parts: Sequence[tuple[int, Logged | None]]) -> Logged | None:
    """The ``Logged`` of consecutive runs of points, given as (points, Logged or None); None when
    none of them has one."""
    if len(parts) == 1:
        return parts[0][1]
    if all(logged is None for _, logged in parts):
        return None
    filled = [logged if logged is not None else floats_logged(count) for count, logged in parts]
    return Logged(np.concatenate([logged.kinds for logged in filled]),
                  np.concatenate([logged.ints for logged in filled]))


def join_points(pieces: Sequence[tuple[np.ndarray, np.ndarray, Logged | None]]
                ) -> tuple[np.ndarray, np.ndarray, Logged | None]:
    """Consecutive runs of level-0 points, each (steps, values, ``Logged`` or None), as one run
    (one piece: itself, not copied)."""
    if len(pieces) == 1:
        return pieces[0]
    return (np.concatenate([steps for steps, _, _ in pieces]), np.concatenate([values for _, values, _ in pieces]),
            join_logged([(len(steps), logged) for steps, _, logged in pieces]))


def as_logged(values: np.ndarray, logged: Logged | None) -> list[Any]:
    """Points' values as logged: a Python int for an int, a bool for a bool, a float otherwise."""
    if logged is None:
        return values.tolist()
    kinds = logged.kinds
    if (kinds == INT).all():
        return logged.ints.tolist()
    if (kinds == BOOL).all():
        return logged.ints.astype(bool).tolist()
    found = values.tolist()
    ints = np.flatnonzero(kinds == INT)
    exact = logged.ints[ints].tolist()
    for at, value in zip(ints.tolist(), exact):
        found[at] = value
    for at in np.flatnonzero(kinds == BOOL).tolist():
        found[at] = bool(logged.ints[at])
    return found


# The part after a level-0 block's values, by its first byte: every point an int that its float64
# holds exactly, every point a bool (that byte alone), or the kinds and ints compressed after it.
_ALL_EXACT_INTS, _ALL_BOOLS, _EACH = b"\x01", b"\x02", b"\x00"
_EXACT_LIMIT = 2**53  # ints within it are exact as float64s


def logged_part(logged: Logged | None) -> bytes:
    """What a level-0 block of these points keeps after its values (nothing for floats alone)."""
    if logged is None:
        return b""
    kinds = logged.kinds
    if not len(kinds) or kinds[0] == FLOAT and not kinds.any():
        return b""
    if kinds[0] == INT and (kinds == INT).all() and -_EXACT_LIMIT <= logged.ints.min() and logged.ints.max() <= _EXACT_LIMIT:
        return _ALL_EXACT_INTS
    if kinds[0] == BOOL and (kinds == BOOL).all():
        return _ALL_BOOLS
    return _EACH + zlib.compress(kinds.astype(np.uint8).tobytes() + logged.ints.astype("<i8").tobytes(), 1)


def uniform_part(logged: Logged | None) -> bytes | None:
    """``logged_part`` of every block cut from these points where it is the same for all (floats,
    exact ints or bools alone), so an append computes it once, not per block; else None."""
    part = logged_part(logged)
    return part if len(part) <= 1 else None


def encode_points(steps: np.ndarray, values: np.ndarray, logged: Logged | None = None, *,
                  part: bytes | None = None) -> bytes:
    """``part``: ``logged_part(logged)`` when known (``uniform_part``)."""
    count = len(steps)
    deltas = np.diff(steps.astype("<i8")).tobytes()
    packed = zlib.compress(deltas, 1)
    return (_POINTS_HEADER.pack(count, int(steps[0]) if count else 0, len(packed)) + packed
            + values.astype("<f8").tobytes() + (part if part is not None else logged_part(logged)))


def _decode_points(data: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    count, first, packed_length = _POINTS_HEADER.unpack_from(data)
    start = _POINTS_HEADER.size
    deltas = np.frombuffer(zlib.decompress(data[start : start + packed_length]), dtype="<i8")
    steps = np.empty(count, dtype=np.int64)
    if count:
        steps[0] = first
        np.cumsum(deltas, out=steps[1:])
        steps[1:] += first
    values = np.frombuffer(data, dtype="<f8", count=count, offset=start + packed_length)
    return steps, values, start + packed_length + 8 * count


def decode_points(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A level-0 block's steps and float64 values (what charts read)."""
    steps, values, _ = _decode_points(data)
    return steps, values


def decode_block(data: bytes, *, logged: bool = True) -> tuple[np.ndarray, np.ndarray, Logged | None]:
    """A level-0 block's steps, float64 values and, where it keeps one, its ``Logged``; with
    ``logged=False`` None instead, its int/bool part left undecoded (a chart reads floats)."""
    steps, values, end = _decode_points(data)
    if not logged or len(data) <= end:
        return steps, values, None
    count = len(steps)
    tag = data[end : end + 1]
    if tag == _ALL_EXACT_INTS:
        return steps, values, Logged(np.full(count, INT, dtype=np.uint8), values.astype(np.int64))
    if tag == _ALL_BOOLS:
        return steps, values, Logged(np.full(count, BOOL, dtype=np.uint8), values.astype(np.int64))
    trailer = zlib.decompress(data[end + 1 :])
    return steps, values, Logged(np.frombuffer(trailer, dtype=np.uint8, count=count),
                                 np.frombuffer(trailer, dtype="<i8", count=count, offset=count))


_INT_FIELDS = ("first_step", "last_step", "count", "nonfinite")
_FLOAT_FIELDS = ("min", "max", "last")
_ENTRIES_HEADER = struct.Struct("<II")  # entry count, compressed integer columns length


def encode_entries(entries: np.ndarray) -> bytes:
    """Column by column: the integer columns (steps, counts: regular) compressed, the float
    columns raw (incompressible, and decoding them costs nothing). ~1.8 bytes per point at level 1
    instead of 3, without paying to decompress the values."""
    integers = zlib.compress(b"".join(np.ascontiguousarray(entries[name]).tobytes() for name in _INT_FIELDS), 1)
    floats = b"".join(np.ascontiguousarray(entries[name]).tobytes() for name in _FLOAT_FIELDS)
    return _ENTRIES_HEADER.pack(len(entries), len(integers)) + integers + floats


def decode_entries(data: bytes) -> np.ndarray:
    count, packed = _ENTRIES_HEADER.unpack_from(data)
    start = _ENTRIES_HEADER.size
    integers = zlib.decompress(data[start : start + packed])
    entries = np.empty(count, dtype=ENTRY)
    offset = 0
    for name in _INT_FIELDS:
        field = ENTRY[name]
        entries[name] = np.frombuffer(integers, dtype=field, count=count, offset=offset)
        offset += field.itemsize * count
    offset = start + packed
    for name in _FLOAT_FIELDS:
        entries[name] = np.frombuffer(data, dtype="<f8", count=count, offset=offset)
        offset += 8 * count
    return entries


def point_entries(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Points as one-point entries, so every level merges the same way."""
    entries = np.empty(len(steps), dtype=ENTRY)
    finite = np.isfinite(values)
    entries["first_step"] = steps
    entries["last_step"] = steps
    entries["min"] = np.where(finite, values, np.nan)
    entries["max"] = entries["min"]
    entries["last"] = values
    entries["count"] = 1
    entries["nonfinite"] = ~finite
    return entries


def merge(entries: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Merge runs of consecutive entries (run i is ``entries[starts[i]:starts[i+1]]``) into one
    entry each. Min and max skip entries without a finite value (stored as NaN)."""
    if len(entries) == 0:
        return np.empty(0, dtype=ENTRY)
    ends = np.append(starts[1:], len(entries)) - 1
    merged = np.empty(len(starts), dtype=ENTRY)
    merged["first_step"] = entries["first_step"][starts]
    merged["last_step"] = entries["last_step"][ends]
    # fmin/fmax skip NaN without raising the invalid flag (no np.errstate: entering one cost as
    # much as the rest of a small merge, and a server's small append merges a few dozen times).
    merged["min"] = np.fmin.reduceat(entries["min"], starts)
    merged["max"] = np.fmax.reduceat(entries["max"], starts)
    merged["last"] = entries["last"][ends]
    merged["count"] = np.add.reduceat(entries["count"], starts)
    merged["nonfinite"] = np.add.reduceat(entries["nonfinite"], starts)
    return merged


def summarize(entries: np.ndarray) -> np.ndarray:
    """The next level up: one entry per ``FANOUT`` entries (the last one may be partial)."""
    return merge(entries, np.arange(0, len(entries), FANOUT))


def bucketize(entries: np.ndarray, start: int, end: int, buckets: int) -> np.ndarray:
    """Merge entries into at most ``buckets`` equal step ranges over [start, end], by the step of
    each entry's first point. Empty buckets are left out."""
    if len(entries) == 0:
        return np.empty(0, dtype=ENTRY)
    span = max(end - start + 1, 1)
    index = ((entries["first_step"] - start) * buckets) // span
    index = np.clip(index, 0, buckets - 1)
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    return merge(entries, starts)
