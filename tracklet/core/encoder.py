"""Turns batches of logged rows into ``HistoryBatch`` records, and keeps the run's summary.

Runs on the sender's worker thread. Rows arrive as ``(step, wall_time, {key: value})``. Rows that
share one key set (the usual case: the same keys every step) are transposed with ``zip`` at C
level, and a column whose values all have one builtin type is handed to a packed ``extend`` in
one call. Only unusual values (numpy, tensors, mixed types) take a per-value path. Records are
``core/wire.py`` messages: the bytes protobuf would write, without importing protobuf.

Encoding is total: whatever one value does (a conversion that raises, a string protobuf refuses, a
dict that contains itself), the failure is contained to that value of that key, reported once per
key with its step, and every other value of the batch is recorded. A key's number is *defined* in
the record that first uses it, and the encoder only treats it as known once the caller has
:meth:`HistoryEncoder.commit`-ted that record (written it); a record that was never written leaves
its keys to be defined again, with the same numbers, in the next record that uses them.

A record of several rows costs readers at most ``MAX_VALUE_COST_PER_RECORD`` to parse, estimated as
it is encoded (every value kind, at what ``core/parsecost.py`` would estimate): encoding stops with
:class:`~tracklet.errors.RecordOverBudget` as soon as it passes that, and the sender encodes the rows
again as smaller records. The estimate of the last record encoded is :attr:`HistoryEncoder.cost`.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import sys
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

from tracklet.core.values import (
    INT64_MAX,
    INT64_MIN,
    Histogram,
    Unrecordable,
    Unsupported,
    fill_entries,
    fill_histogram,
    flatten,
    structured_bytes,
    to_plain,
    to_scalar,
    type_name,
)
from tracklet.core import wire  # the records built here, without importing protobuf (core/wire.py)
from tracklet.core.valuewire import (
    COLUMN,
    DOUBLE,
    ELEMENT,
    HISTORY_BATCH,
    KEY_DEFINITION,
    RECORD,
    histogram_cost,
)
from tracklet.core.wire import doubles_or_none
from tracklet.core.warn import TrackletWarning, WarnOnce  # noqa: F401  (re-exported: their old home)
from tracklet.errors import RecordOverBudget

Row = tuple  # (step: int, time: float, keys: tuple, values: tuple)

RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})

_FIELD_FOR_TYPE: dict[Any, str] = {float: "floats", int: "ints", bool: "bools", str: "strings"}
# The kind under which ints outside int64 are bucketed (a str, so never a value's type).
_BIG_INT = "big_int"
# Every int up to this magnitude is exactly a double.
_EXACT_DOUBLE_INT = 2**53

# What parsing one history record of several rows may cost a reader, as the encoder estimates it
# while it builds the record (``core/parsecost.py``'s estimate, restated in ``core/valuewire.py``:
# a structured value's exact estimate, a string its UTF-8 bytes and ``STRING_COST``, a big int its
# digits and ``STRING_COST``, a histogram its arrays, a number ``_NUMBER_COST``, each column, row and
# key definition its message): past it the sender cuts the rows into more records. 64 MiB keeps a
# record's parse cost well within the 256 MiB readers accept (``parsecost.MAX_PARSE_BYTES``;
# tests/test_record_budget.py checks that the estimate is never below parsecost's), and the
# worker's memory per record bounded: it holds a structured value as its bytes (at most 1/21 of
# its cost: empty lists) besides the plain list it was converted to. Rows of long strings are rarely
# cut: 2,000 rows of 50 strings of 60 characters cost 12 MiB. A single row is never cut (the
# sender compares its estimate with the readers' limit instead, and checks it with parsecost
# only where the estimate passes the limit).
MAX_VALUE_COST_PER_RECORD = 64 << 20
# A string's cost beyond its bytes: parsecost counts 44 (its view and array slot, grown).
STRING_COST = 64
# A value of a packed column, by field: a double (8 bytes, twice over for the array's growth), or
# a varint (parsecost's element).
_NUMBER_COST = {"floats": DOUBLE, "ints": ELEMENT, "bools": ELEMENT}
# A record of the HistoryBatch kind, a row of it (its step and time), a column (its message and
# slot in the batch), a key definition (its message and slot, its name aside): parsecost's shapes.
RECORD_COST = RECORD + HISTORY_BATCH
ROW_COST = ELEMENT + DOUBLE
COLUMN_COST = COLUMN + ELEMENT
KEY_COST = KEY_DEFINITION + ELEMENT


def _utf8_size(texts: Sequence[str]) -> int:
    """The UTF-8 bytes of ``texts``: their length when all are ASCII (one C-level pass), else
    each encoded (a lone surrogate counted as protobuf would refuse it later: 3 bytes)."""
    if all(map(str.isascii, texts)):
        return sum(map(len, texts))
    return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)


def _decimal_digits(number: int) -> int:
    """At least the characters of ``str(number)`` (an int outside int64), without writing it."""
    return int(number.bit_length() * 0.30103) + 2


# The SummaryMode enum's numbers (checked against records_pb2 in tests/test_wire.py).
SUMMARY_MODES: dict[str, Any] = {
    "last": wire.SUMMARY_MODE_LAST,
    "min": wire.SUMMARY_MODE_MIN,
    "max": wire.SUMMARY_MODE_MAX,
    "mean": wire.SUMMARY_MODE_MEAN,
    "none": wire.SUMMARY_MODE_NONE,
    "first": wire.SUMMARY_MODE_FIRST,
}
_MODE_NAMES: dict[int, str] = {number: name for name, number in SUMMARY_MODES.items()}


# The byte of a native double that holds the sign and the exponent's top 7 bits.
_HIGH_BYTE = 7 if sys.byteorder == "little" else 0
# High bytes (sign masked) of the doubles below 2**49 in magnitude: every int there is a double
# exactly. A column whose doubles all have one of these needs no look at its values' types.
_BELOW_2_49 = bytes(b for b in range(256) if b & 0x7F < 0x43)


def _as_doubles(column: Sequence[Any]) -> memoryview[float] | None:
    """A float column as the packed native doubles the ``floats`` field takes (a view of doubles
    over the packed bytes: ``wire`` copies them once, protobuf reads them as floats), in one C-level pass over
    its values; None where that would not be exact or not take every value (the caller then looks
    at the values' types, as before).

    Packed by :func:`~tracklet.core.wire.doubles_or_none`, without a second pass over the values for their types:
    the only values the ``floats`` field must not take silently are ints past 2**53, which it
    would round, and those come out as doubles of at least 2**53, so only a column holding a
    double of 2**49 or more (or an inf, a NaN) has its types looked at."""
    packed = doubles_or_none(column)
    if packed is None:  # a value it refuses, or whose __float__ raised: the per-value path contains it
        return None
    if packed[_HIGH_BYTE::8].translate(None, _BELOW_2_49):
        if int in set(map(type, column)) and not _exact_as_doubles(column):
            return None
    return memoryview(packed).cast("d")


def _exact_as_doubles(column: Sequence[Any]) -> bool:
    """Whether every int of ``column`` (a float column that holds some) is a double exactly."""
    return all(-_EXACT_DOUBLE_INT <= value <= _EXACT_DOUBLE_INT for value in column if type(value) is int)


class SummaryTracker:
    """The run's summary: the last value of every logged key unless ``define_metric`` says otherwise,
    plus values set explicitly with ``run.summary[key] = value``.

    Never raises. Aggregates follow IEEE arithmetic where exact summing can't: ``min``/``max``
    skip NaN; ``mean`` is the exact mean of the values while it is finite, ``+inf``/``-inf`` when
    the values include only that infinity or their sum overflows a double, and NaN when they
    include both ``+inf`` and ``-inf``.
    """

    def __init__(self, warn: Callable[[Any, str], None] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.dirty: dict[str, None] = {}  # insertion-ordered set
        self.warn = warn or WarnOnce()
        self._definitions: list[tuple[str, tuple[str, ...], bool]] = []
        self._modes: dict[str, tuple[str, ...]] = {}
        self._as_dict: set[str] = set()  # keys whose definition asked for {mode: value} even with one mode
        self._stats: dict[str, list[Any]] = {}  # key -> [min, max, sum, count]
        self._first: dict[str, Any] = {}  # key -> its first value, for keys summarised by "first"
        self._restored: dict[str, Any] = {}  # a resumed run's summary as it was written

    def define(self, pattern: str, modes: Sequence[str], as_dict: bool = False) -> None:
        """A ``define_metric`` without ``summary=`` (only a step metric, say) leaves the summary
        of matching keys as earlier definitions set it, as W&B does. ``as_dict``: the summary
        is ``{mode: value}`` even with one mode (W&B's shape)."""
        if not modes:
            return
        self._definitions.append((pattern, tuple(modes), as_dict))
        self._modes.clear()
        self._as_dict.clear()

    def _modes_for(self, key: str) -> tuple[str, ...]:
        modes: tuple[str, ...] = ("last",)
        as_dict = False
        for pattern, defined, shape in self._definitions:  # later definitions win
            if pattern == key or fnmatch.fnmatchcase(key, pattern):
                modes, as_dict = defined, shape
        self._modes[key] = modes
        if as_dict:
            self._as_dict.add(key)
        return modes

    def observe(self, key: str, column: Sequence[Any]) -> None:
        modes = self._modes.get(key) or self._modes_for(key)
        self.dirty[key] = None
        if modes == ("last",) and key not in self._as_dict:
            self.values[key] = column[-1]
            return
        if "none" in modes:
            self.values.pop(key, None)
            return
        if "first" in modes and key not in self._first:
            self._first[key] = self._restored_first(key, modes, column[0])
        numbers = [v for v in column if type(v) in (float, int, bool) and not (type(v) is float and math.isnan(v))]
        stats = self._stats.get(key)
        if numbers:
            low, high, total = min(numbers), max(numbers), _sum(numbers)
            if stats is None:
                stats = self._stats[key] = [low, high, total, len(numbers)]
            else:
                stats[0] = min(stats[0], low)
                stats[1] = max(stats[1], high)
                stats[2] += total  # two floats: overflows to inf, inf + -inf is nan; never raises
                stats[3] += len(numbers)
        result: dict[str, Any] = {}
        for mode in modes:
            if mode == "last":
                result[mode] = column[-1]
            elif mode == "first":
                result[mode] = self._first[key]
            elif stats is not None:
                result[mode] = {"min": stats[0], "max": stats[1], "mean": stats[2] / stats[3] if stats[3] else math.nan}[
                    mode
                ]
        if result:
            self.values[key] = result[modes[0]] if len(modes) == 1 and key not in self._as_dict else result

    def restore(self, values: dict[str, Any]) -> None:
        """A resumed run's summary as it was written: a ``first`` value recorded before the
        resume stays the first."""
        self.values.update(values)
        self._restored = dict(values)

    def _restored_first(self, key: str, modes: tuple[str, ...], fallback: Any) -> Any:
        previous = self._restored.get(key)
        if isinstance(previous, dict):
            return previous.get("first", fallback)
        if previous is not None and modes == ("first",):
            return previous
        return fallback

    def set(self, items: dict[str, Any], removed: Iterable[str] = ()) -> None:
        self.values.update(items)
        self.dirty.update(dict.fromkeys(items))
        for key in removed:
            self.values.pop(key, None)
            self.dirty[key] = None

    def take_update(self) -> wire.Message | None:
        """A ``SummaryUpdate`` with every key changed since the last call, or None. A value that
        can't be encoded is left out with a warning naming its key; the other keys are written."""
        if not self.dirty:
            return None
        record = wire.Record()
        update = record.summary
        update.SetInParent()
        present = {k: to_plain(self.values[k], self._cut_reporter(k)) for k in self.dirty if k in self.values}
        fill_entries(update.items, present, self._failed)
        update.removed.extend(sorted(k for k in self.dirty if k not in self.values))
        self.dirty.clear()
        return record

    def _cut_reporter(self, key: str) -> Callable[[str, str], None]:
        def report(where: str, why: str) -> None:
            self.warn(("summary-cut", key), f"tracklet: summary key {key!r}: {why} (at {where!r})")

        return report

    def _failed(self, key: str, error: Exception) -> None:
        self.warn(("summary-error", key), f"tracklet: summary key {key!r} could not be recorded ({error!r}); left out")


def _sum(numbers: list[Any]) -> float:
    """The exact sum as a float (``math.fsum``), or IEEE's answer where fsum raises: ``inf`` with
    the overflow's sign, NaN for ``inf + -inf``."""
    try:
        return math.fsum(numbers)
    except (OverflowError, ValueError):
        total = 0.0
        for number in numbers:
            try:
                total += number
            except OverflowError:  # an int beyond the double range
                total += math.inf if number > 0 else -math.inf
        return total


def summary_modes(summary: str | Sequence[str] | None) -> list[str]:
    """Parse ``define_metric(summary=...)``: ``"min"``, ``"min,max"`` or a list of modes."""
    if summary is None:
        return []
    names = summary.split(",") if isinstance(summary, str) else list(summary)
    modes = [name.strip().lower() for name in names if name.strip()]
    unknown = [m for m in modes if m not in SUMMARY_MODES]
    if unknown:
        raise ValueError(f"summary mode(s) {', '.join(map(repr, unknown))} not one of {', '.join(SUMMARY_MODES)}")
    return modes


def mode_names(numbers: Iterable[int]) -> list[str]:
    return [_MODE_NAMES.get(n, "last") for n in numbers]


class HistoryEncoder:
    """Encodes rows into ``HistoryBatch`` records, interning key names once per run.

    Call :meth:`commit` once the record :meth:`encode` returned has been written, :meth:`rollback`
    if it wasn't: the summary and the set of defined keys follow only what was written.
    """

    def __init__(self, summary: SummaryTracker, warn: Callable[[Any, str], None], key_ids: dict[str, int] | None = None):
        self.summary = summary
        self._warn = warn
        # Keys whose definition is in the log (or that are dropped: -1), by key object and by name.
        self._key_ids: dict[Any, int] = dict(key_ids or {})
        # Every number ever given out, by name, so a definition written again reuses its number.
        self._assigned: dict[str, int] = dict(key_ids or {})
        self._next_id = max(self._assigned.values(), default=-1) + 1
        # What the record being built adds: key definitions, and (name, column) for the summary.
        self._pending: dict[Any, int] = {}
        self._observed: list[tuple[str, Sequence[Any]]] = []
        self._steps: Sequence[int] = ()
        # What parsing the record being built will cost a reader, estimated as it is built (see
        # MAX_VALUE_COST_PER_RECORD), and the most it may (None for a record of one row, which is
        # never cut: the sender checks its cost instead).
        self.cost = 0
        self._budget: int | None = None
        # Values (cells) the record has, those of the columns encoded so far, where the current
        # column starts among them, and how many were counted against the budget: what estimates
        # how many rows fit once over budget.
        self._cells_total = self._cells_done = self._column_start = self._costly_cells = 0
        # Where a logged object (core/logged.py) that reached history goes instead: a key set first
        # seen with plain values skips the caller's type scan (the run sets this). It returns the
        # object's submission (None: not a logged object), made by ``commit``: a record that is
        # cut and encoded again (MAX_VALUE_COST_PER_RECORD) or not written submits nothing.
        self.logged: Callable[[int, str, Any], Callable[[], None] | None] | None = None
        self._submissions: list[Callable[[], None]] = []

    # ------------------------------------------------------------ keys

    def _key_id(self, key: Any, batch: wire.Message) -> int:
        """The key's number, defining it in this batch if new; -1 for a key that can't be recorded."""
        key_id = self._key_ids.get(key)
        if key_id is not None:
            return key_id
        key_id = self._pending.get(key)
        if key_id is not None:
            return key_id
        try:
            name = key if type(key) is str else str(key)
        except Exception as error:
            self._warn(
                ("key-name", type(key)),
                f"tracklet: a key of type {type_name(key)} has no str() ({error!r}); its values are dropped",
            )
            self._key_ids[key] = -1
            return -1
        if name in RESERVED_KEYS:
            self._warn(("reserved", name), f"tracklet: key {name!r} is reserved for the history's own columns; dropped")
            self._key_ids[key] = -1
            return -1
        key_id = self._key_ids.get(name)
        if key_id is not None:  # a non-str key whose name is already defined
            self._pending[key] = key_id
            return key_id
        key_id = self._pending.get(name)
        if key_id is None:
            key_id = self._assigned.get(name)
            if key_id is None:
                key_id = self._assigned[name] = self._next_id
                self._next_id += 1
            definition = batch.new_keys.add()
            definition.id = key_id
            definition.name = name
            self.cost += KEY_COST + _utf8_size((name,))
            self._pending[name] = key_id
        self._pending[key] = key_id
        return key_id

    def commit(self) -> None:
        """The last encoded record was written: its keys are defined, its values count in the summary."""
        self._key_ids.update(self._pending)
        self._pending.clear()
        submissions, self._submissions = self._submissions, []
        for submit in submissions:
            try:
                submit()
            except Exception as error:  # noqa: BLE001 - one logged object, never the record
                self._warn(("logged-submit", type(error)), f"tracklet: a logged object in history could not be "
                                                          f"stored ({error!r}); the run goes on")
        observed, self._observed = self._observed, []
        for name, column in observed:
            try:
                self.summary.observe(name, column)
            except Exception as error:  # SummaryTracker is total; this guards against what it can't foresee
                self._warn(("summary-observe", name), f"tracklet: the summary of key {name!r} failed ({error!r})")

    def rollback(self) -> None:
        """The last encoded record was not written: forget what it defined, observed and found."""
        self._pending.clear()
        self._observed.clear()
        self._submissions.clear()

    # ------------------------------------------------------------ rows

    def encode(self, rows: Sequence[Row]) -> wire.Message | None:
        """Rows are ``(step, time, keys, values)``: two tuples per row, the same keys tuple object
        row after row in the usual case (then the key-set check below is an identity compare).

        Returns None when no row could be recorded. Raises ``RecordOverBudget`` when several rows
        carry more structured values and strings than one record may (the caller encodes them
        again in parts), else only on a defect of this module (the caller then retries smaller
        parts of the batch); a bad value never makes it raise."""
        self.rollback()  # a record encoded before and never committed was not written
        record = wire.Record()
        batch = record.history
        steps, times, keysets, valuesets = zip(*rows)
        try:
            batch.steps.extend(steps)
            batch.times.extend(times)
        except Exception:  # a step outside int64 or a time that is no number: drop those rows
            rows = self._recordable_rows(rows)
            if not rows:
                return None
            steps, times, keysets, valuesets = zip(*rows)
            del batch.steps[:], batch.times[:]
            batch.steps.extend(steps)
            batch.times.extend(times)
        self._steps = steps
        self._budget = MAX_VALUE_COST_PER_RECORD if len(steps) > 1 else None
        self.cost = RECORD_COST + ROW_COST * len(steps)
        self._cells_total, self._cells_done, self._costly_cells = len(steps) * len(valuesets[0]), 0, 0
        first = keysets[0]
        if keysets.count(first) == len(keysets):
            self._encode_group(batch, first, (), valuesets)
        else:
            groups: dict[tuple, tuple[list[int], list[tuple]]] = {}
            for index, (keys, values) in enumerate(zip(keysets, valuesets)):
                group = groups.get(keys)
                if group is None:
                    group = groups[keys] = ([], [])
                group[0].append(index)
                group[1].append(values)
            # Groups whose last row comes later are encoded later, so that the summary's "last"
            # value of a key is the one from the latest row that has it.
            for keys, (indices, members) in sorted(groups.items(), key=lambda item: item[1][0][-1]):
                self._encode_group(batch, keys, indices, members)
        return record

    def encode_columns(
        self, steps: Sequence[int], times: Sequence[float], groups: Sequence[tuple[tuple, Sequence[int], Sequence[Any]]]
    ) -> wire.Message | None:
        """The rows of :meth:`encode`, given as columns: ``groups`` holds, per key set in the
        order of their last rows, ``(keys, its rows in the batch or () for every row, one
        sequence of values per key)``. What the sender builds from rows queued flat (no tuple
        per row). Raises on a step or time protobuf refuses, or with ``RecordOverBudget``: the
        caller encodes the rows again with :meth:`encode`, which drops only those (or cuts)."""
        self.rollback()
        record = wire.Record()
        batch = record.history
        batch.steps.extend(steps)
        batch.times.extend(times)
        self._steps = steps
        self._budget = MAX_VALUE_COST_PER_RECORD if len(steps) > 1 else None
        self.cost = RECORD_COST + ROW_COST * len(steps)
        self._cells_total = sum(len(keys) * (len(indices) or len(steps)) for keys, indices, _ in groups)
        self._cells_done = self._costly_cells = 0
        for keys, indices, columns in groups:
            self._encode_columns(batch, keys, indices, columns)
        return record

    def _recordable_rows(self, rows: Sequence[Row]) -> list[Row]:
        """The rows whose step and time protobuf takes (a step past int64 reaches here only from an
        importer or a run advanced past 2**63 - 1; ``log()`` refuses explicit ones)."""
        kept = []
        probe = wire.HistoryBatch()
        for row in rows:
            try:
                probe.steps.append(row[0])
                probe.times.append(row[1])
            except Exception as error:
                self._warn(
                    ("bad-step", type(error)),
                    f"tracklet: a row at step {row[0]!r} (time {row[1]!r}) can't be recorded ({error!r}); "
                    "that row is dropped, the others are recorded",
                )
            else:
                kept.append(row)
        return kept

    def _encode_group(
        self, batch: wire.Message, keys: tuple, indices: Sequence[int], valuesets: Sequence[tuple]
    ) -> None:
        self._encode_columns(batch, keys, indices, zip(*valuesets))

    def _encode_columns(self, batch: wire.Message, keys: tuple, indices: Sequence[int], values: Iterable[Any]) -> None:
        columns, observed = batch.columns, self._observed
        for key, column in zip(keys, values):
            self._column_start = self._cells_done
            self._cells_done += len(column)
            field = _FIELD_FOR_TYPE.get(type(column[0]))
            if field == "bools" and set(map(type, column)) != {bool}:
                field = None  # the bools field would take ints silently
            elif field == "strings":
                if set(map(type, column)) != {str}:
                    field = None  # a str subclass (a (str, Enum) member) is recorded as to_scalar says
                else:
                    self._spend_strings(column, indices)
            elif field == "floats":
                # Packed in one C-level pass; None for a value the field refuses or an int past
                # 2**53 (which it would round: the slow path keeps it an int). Ints within 2**53
                # and bools still go to the floats field (as exact doubles, 1.0/0.0).
                doubles = _as_doubles(column)
                if doubles is None:
                    field = None
                else:
                    column_values: Any = doubles
            if field is not None:
                key_id = self._key_id(key, batch)
                if key_id < 0:
                    continue
                target = columns.add()
                target.key = key_id
                try:
                    # Fails as a whole (nothing added) on a value it refuses: a str with a lone
                    # surrogate, an int outside int64.
                    getattr(target, field).extend(column_values if field == "floats" else column)
                except Exception:
                    del columns[-1]
                else:
                    if indices:
                        target.rows.extend(indices)
                    self._spend_column(column, indices, _NUMBER_COST.get(field, 0))
                    observed.append((key if type(key) is str else str(key), column))
                    continue
            marks = len(columns), len(observed)
            try:
                self._encode_slow(batch, key, indices, column)
            except RecordOverBudget:
                raise
            except Exception as error:
                del columns[marks[0] :], observed[marks[1] :]
                self._encode_each(batch, key, indices, column, error)

    def _spend(self, cost: int, row: int, position: int) -> None:
        """Count the estimated parse ``cost`` of a value at ``row`` (of the batch; ``position`` in
        its column); ``RecordOverBudget`` once a record of several rows passes its budget."""
        self.cost += cost
        self._costly_cells += 1
        if self._budget is not None and self.cost > self._budget:
            raise self._over(row, position)

    def _spend_column(self, column: Sequence[Any], indices: Sequence[int], each: int) -> None:
        """Count a column just added (its message, its rows, ``each`` per value of ``column``: numbers;
        its strings were counted before) at once; past the budget, the cut falls at its last row."""
        self.cost += COLUMN_COST + ELEMENT * len(indices) + each * len(column)
        if each:
            self._costly_cells += len(column)
        if self._budget is not None and self.cost > self._budget:
            position = len(column) - 1
            raise self._over(indices[position] if indices else position, position)

    def _over(self, row: int, position: int) -> RecordOverBudget:
        """The budget was passed at ``position`` of the current column: how many rows would fit,
        were the values not yet seen as costly as those counted (fewer than fit when some of them
        are cheaper; the sender cuts again where that was too many)."""
        spent = self.cost
        unseen = max(0, self._cells_total - self._column_start - position - 1)
        costly = max(1, self._costly_cells)
        projected = spent * (costly + unseen) / costly
        # 7/8 of it: rows vary, and a record cut a row too late is encoded and cut once more.
        return RecordOverBudget(row, int(len(self._steps) * MAX_VALUE_COST_PER_RECORD * 7 / 8 / projected))

    def _spend_strings(self, column: Sequence[str], indices: Sequence[int]) -> None:
        """Count a column of strings (their UTF-8 bytes, and ``STRING_COST`` each) at C level; where
        it passes the budget is looked for only then."""
        budget = self._budget
        size = _utf8_size(column) + STRING_COST * len(column)
        if budget is None or self.cost + size <= budget:
            self.cost += size
            self._costly_cells += len(column)
            return
        sizes = itertools.accumulate(_utf8_size((text,)) + STRING_COST for text in column)
        position, passed = next((at, total) for at, total in enumerate(sizes) if self.cost + total > budget)
        self.cost += passed
        self._costly_cells += position + 1
        raise self._over(indices[position] if indices else position, position)

    def _encode_each(
        self, batch: wire.Message, key: Any, indices: Sequence[int], column: Sequence[Any], error: Exception
    ) -> None:
        """A column failed as a whole: record it value by value, dropping only the values that fail."""
        columns, observed = batch.columns, self._observed
        rows = indices or range(len(column))
        dropped: list[tuple[int, Any, Exception]] = []
        for row, value in zip(rows, column):
            marks = len(columns), len(observed)
            try:
                self._encode_slow(batch, key, [row], [value])
            except RecordOverBudget:
                raise
            except Exception as value_error:
                del columns[marks[0] :], observed[marks[1] :]
                dropped.append((row, value, value_error))
        if dropped:
            row, value, failure = dropped[0]
            self._warn(
                ("value-error", self._safe_name(key)),
                f"tracklet: key {self._safe_name(key)!r} at step {self._steps[row]}: a {type_name(value)} value "
                f"could not be recorded ({failure!r}); that value is dropped (and {len(dropped) - 1} more in "
                "this batch), the rest of its row and batch are recorded",
            )

    def _structured(self, name: str, bucket: tuple[list[int], list[Any]] | None) -> list[bytes] | None:
        """The ``Value`` bytes of a key's structured values (``bucket``: their rows in the batch and
        :func:`~tracklet.core.values.structured` lists); one too large to record is dropped from
        the bucket with a warning, the others are kept. None without a bucket. Each counts
        against the record's budget, at what parsing it costs a reader, as it is encoded."""
        if bucket is None:
            return None
        rows, values = bucket
        encoded: list[bytes] = []
        kept = 0
        for row, value in zip(rows, values):
            try:
                data, cost = structured_bytes(value)
            except Unrecordable as error:
                self._unrecordable(name, self._steps[row], error)
                continue
            rows[kept], values[kept] = row, value
            kept += 1
            encoded.append(data)
            self._spend(cost + ELEMENT, row, kept)  # and its slot in the column's values
        del rows[kept:], values[kept:]
        return encoded

    def _unrecordable(self, name: str, step: Any, error: Exception) -> None:
        self._warn(("unrecordable", name), f"tracklet: key {name!r} at step {step}: {error}; that value is dropped, "
                                           "the rest of its row and batch are recorded")

    def _step_at(self, indices: Sequence[int], position: int) -> Any:
        """The step of the value at ``position`` of a column whose rows are ``indices`` (or all)."""
        try:
            return self._steps[indices[position] if indices else position]
        except IndexError:
            return "?"

    def _safe_name(self, key: Any) -> str:
        try:
            return key if type(key) is str else str(key)
        except Exception:
            return f"<{type_name(key)}>"

    def _encode_nested(self, batch: wire.Message, key: Any, indices: list[int], column: list[Any]) -> None:
        """Flatten mapping values (``{"train": {"loss": ...}}`` → ``train/loss``) and encode them."""
        prefix = key if type(key) is str else str(key)
        sub: dict[tuple, tuple[list[int], list[tuple]]] = {}
        for row, value in zip(indices, column):
            values = flatten(value, prefix + "/", report=self._cut_reporter(prefix, row))
            group = sub.setdefault(tuple(values), ([], []))
            group[0].append(row)
            group[1].append(tuple(values.values()))
        for sub_keys, (sub_rows, members) in sub.items():
            if sub_keys:
                self._encode_group(batch, sub_keys, sub_rows, members)

    def _cut_reporter(self, key: str, row: int) -> Callable[[str, str], None]:
        def report(where: str, why: str) -> None:
            self._warn(
                ("nesting", key),
                f"tracklet: key {key!r} at step {self._steps[row]}: {why} at {where!r}; "
                "cut there, the rest is recorded",
            )

        return report

    def _encode_slow(self, batch: wire.Message, key: Any, indices: Sequence[int], column: Sequence[Any]) -> None:
        """Per-value conversion: numpy, tensors, histograms, None, mixed types, big ints, unsupported values."""
        nested = [position for position, value in enumerate(column) if isinstance(value, Mapping)]
        if nested:  # a key set first seen with scalars, now with a dict under one key
            rows = list(indices) if indices else list(range(len(column)))
            self._encode_nested(batch, key, [rows[p] for p in nested], [column[p] for p in nested])
            taken = set(nested)
            kept = [p for p in range(len(column)) if p not in taken]
            if not kept:
                return
            indices, column = [rows[p] for p in kept], [column[p] for p in kept]
        by_type: dict[Any, tuple[list[int], list[Any]]] = {}
        name = key if type(key) is str else str(key)
        for position, value in enumerate(column):
            if value is None:
                continue
            try:
                converted = to_scalar(value)
            except Unsupported as error:
                logged = self.logged
                submit = None if logged is None else logged(self._step_at(indices, position), name, value)
                if submit is not None:
                    self._submissions.append(submit)
                    continue
                self._warn(
                    ("unsupported", name),
                    f"tracklet: key {name!r} at step {self._step_at(indices, position)} has a value of type {error} "
                    "that can't be logged; that key is dropped from this call, the rest is recorded",
                )
                continue
            except Unrecordable as error:
                self._unrecordable(name, self._step_at(indices, position), error)
                continue
            except Exception as error:  # a tensor that fails to convert must not stop the run
                self._warn(
                    ("conversion", name),
                    f"tracklet: key {name!r} at step {self._step_at(indices, position)}: converting a "
                    f"{type_name(value)} failed ({error!r}); that value is dropped, the rest is recorded",
                )
                continue
            if converted is None:  # numpy's NaT: no value, as None
                continue
            kind: type | str = type(converted)
            row = indices[position] if indices else position
            if kind is str:
                self._spend(_utf8_size((converted,)) + STRING_COST, row, position)
            elif kind is Histogram:
                self._spend(histogram_cost(converted) + ELEMENT, row, position)
            elif kind is int and not INT64_MIN <= converted <= INT64_MAX:
                kind = _BIG_INT
                self._spend(_decimal_digits(converted) + STRING_COST, row, position)
            bucket = by_type.get(kind)
            if bucket is None:
                bucket = by_type[kind] = ([], [])
            bucket[0].append(row)
            bucket[1].append(converted)
        messages = self._structured(name, by_type.get(list))
        if messages is not None and not messages:
            del by_type[list]
        if not by_type:
            return
        key_id = self._key_id(key, batch)
        if key_id < 0:
            return
        every_row = not indices and len(by_type) == 1 and len(next(iter(by_type.values()))[0]) == len(column)
        for kind, (rows, values) in by_type.items():
            target = batch.columns.add()
            target.key = key_id
            if not every_row:
                target.rows.extend(rows)
            self._spend_column(values, () if every_row else rows, _NUMBER_COST.get(_FIELD_FOR_TYPE.get(kind, ""), 0))
            if kind is list:
                for data in messages or ():
                    target.values.append_encoded(data)
            elif kind is Histogram:
                for histogram in values:
                    fill_histogram(target.histograms.add(), histogram)
            elif kind is _BIG_INT:
                target.big_ints.extend(map(str, values))  # exact; ValueError past int's digit limit
            else:
                getattr(target, _FIELD_FOR_TYPE[kind]).extend(values)
        if len(by_type) == 1:
            observed = next(iter(by_type.values()))[1]
        else:  # the summary follows the values in row order, whatever their types
            pairs = sorted(
                ((row, value) for rows, values in by_type.values() for row, value in zip(rows, values)),
                key=lambda pair: pair[0],
            )
            observed = [value for _, value in pairs]
        self._observed.append((name, observed))
