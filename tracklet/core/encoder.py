"""Turns batches of logged rows into ``HistoryBatch`` records, and keeps the run's summary.

Runs on the sender's worker thread. Rows arrive as ``(step, wall_time, {key: value})``. Rows that
share one key set (the usual case: the same keys every step) are transposed with ``zip`` at C
level, and a column whose values all have one builtin type is handed to protobuf's packed
``extend`` in one call. Only unusual values (numpy, tensors, mixed types) take a per-value path.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

from tracklet.core.values import Histogram, Unsupported, fill_histogram, flatten, to_scalar, type_name
from tracklet.proto import records_pb2 as pb

Row = tuple  # (step: int, time: float, keys: tuple, values: tuple)

RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})

_FIELD_FOR_TYPE = {float: "floats", int: "ints", bool: "bools", str: "strings"}

SUMMARY_MODES = {
    "last": pb.SUMMARY_MODE_LAST,
    "min": pb.SUMMARY_MODE_MIN,
    "max": pb.SUMMARY_MODE_MAX,
    "mean": pb.SUMMARY_MODE_MEAN,
    "none": pb.SUMMARY_MODE_NONE,
}
_MODE_NAMES = {number: name for name, number in SUMMARY_MODES.items()}


class TrackletWarning(UserWarning):
    """Something tracklet could not record as asked; the run goes on."""


class WarnOnce:
    """Emits each distinct warning once per run."""

    def __init__(self) -> None:
        self._seen: set[Any] = set()

    def __call__(self, token: Any, message: str) -> None:
        if token in self._seen:
            return
        self._seen.add(token)
        warnings.warn(message, TrackletWarning, stacklevel=2)


class SummaryTracker:
    """The run's summary: the last value of every logged key unless ``define_metric`` says otherwise,
    plus values set explicitly with ``run.summary[key] = value``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.dirty: dict[str, None] = {}  # insertion-ordered set
        self._definitions: list[tuple[str, tuple[str, ...]]] = []
        self._modes: dict[str, tuple[str, ...]] = {}
        self._stats: dict[str, list[float]] = {}  # key -> [min, max, sum, count]

    def define(self, pattern: str, modes: Sequence[str]) -> None:
        """A ``define_metric`` without ``summary=`` (only a step metric, say) leaves the summary
        of matching keys as earlier definitions set it, as W&B does."""
        if not modes:
            return
        self._definitions.append((pattern, tuple(modes)))
        self._modes.clear()

    def _modes_for(self, key: str) -> tuple[str, ...]:
        modes = ("last",)
        for pattern, defined in self._definitions:  # later definitions win
            if pattern == key or fnmatch.fnmatchcase(key, pattern):
                modes = defined
        self._modes[key] = modes
        return modes

    def observe(self, key: str, column: Sequence[Any]) -> None:
        modes = self._modes.get(key) or self._modes_for(key)
        self.dirty[key] = None
        if modes == ("last",):
            self.values[key] = column[-1]
            return
        if "none" in modes:
            self.values.pop(key, None)
            return
        numbers = [v for v in column if type(v) in (float, int, bool) and not (type(v) is float and math.isnan(v))]
        stats = self._stats.get(key)
        if numbers:
            low, high, total = min(numbers), max(numbers), math.fsum(numbers)
            if stats is None:
                stats = self._stats[key] = [low, high, total, len(numbers)]
            else:
                stats[0] = min(stats[0], low)
                stats[1] = max(stats[1], high)
                stats[2] += total
                stats[3] += len(numbers)
        result: dict[str, Any] = {}
        for mode in modes:
            if mode == "last":
                result[mode] = column[-1]
            elif stats is not None:
                result[mode] = {"min": stats[0], "max": stats[1], "mean": stats[2] / stats[3] if stats[3] else math.nan}[
                    mode
                ]
        if result:
            self.values[key] = result[modes[0]] if len(modes) == 1 else result

    def set(self, items: dict[str, Any], removed: Iterable[str] = ()) -> None:
        self.values.update(items)
        self.dirty.update(dict.fromkeys(items))
        for key in removed:
            self.values.pop(key, None)
            self.dirty[key] = None

    def take_update(self) -> pb.Record | None:
        """A ``SummaryUpdate`` with every key changed since the last call, or None."""
        if not self.dirty:
            return None
        from tracklet.core.values import fill_entries, to_plain

        record = pb.Record()
        update = record.summary
        update.SetInParent()
        present = {k: to_plain(self.values[k]) for k in self.dirty if k in self.values}
        fill_entries(update.items, present)
        update.removed.extend(sorted(k for k in self.dirty if k not in self.values))
        self.dirty.clear()
        return record


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
    """Encodes rows into ``HistoryBatch`` records, interning key names once per run."""

    def __init__(self, summary: SummaryTracker, warn: Callable[[Any, str], None], key_ids: dict[str, int] | None = None):
        self.summary = summary
        self._warn = warn
        self._key_ids: dict[Any, int] = dict(key_ids or {})
        self._next_id = max(self._key_ids.values(), default=-1) + 1

    def _key_id(self, key: Any, batch: pb.HistoryBatch) -> int:
        """The key's number, defining it in this batch if new; -1 for a key that can't be recorded."""
        key_id = self._key_ids.get(key)
        if key_id is not None:
            return key_id
        name = key if type(key) is str else str(key)
        if name in RESERVED_KEYS:
            self._warn(("reserved", name), f"tracklet: key {name!r} is reserved for the history's own columns; dropped")
            self._key_ids[key] = -1
            return -1
        if name != key and name in self._key_ids:
            key_id = self._key_ids[name]
        else:
            key_id = self._next_id
            self._next_id += 1
            definition = batch.new_keys.add()
            definition.id = key_id
            definition.name = name
            self._key_ids[name] = key_id
        self._key_ids[key] = key_id
        return key_id

    def encode(self, rows: Sequence[Row]) -> pb.Record:
        """Rows are ``(step, time, keys, values)``: two tuples per row, the same keys tuple object
        row after row in the usual case (then the key-set check below is an identity compare)."""
        record = pb.Record()
        batch = record.history
        steps, times, keysets, valuesets = zip(*rows)
        batch.steps.extend(steps)
        batch.times.extend(times)
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

    def _encode_group(
        self, batch: pb.HistoryBatch, keys: tuple, indices: Sequence[int], valuesets: Sequence[tuple]
    ) -> None:
        for key, column in zip(keys, zip(*valuesets)):
            field = _FIELD_FOR_TYPE.get(type(column[0]))
            if field == "bools" and set(map(type, column)) != {bool}:
                field = None  # the bools field would take ints silently
            if field is not None:
                key_id = self._key_id(key, batch)
                if key_id < 0:
                    continue
                target = batch.columns.add()
                target.key = key_id
                try:
                    # Fails as a whole (nothing added) on a value of another kind: a float field
                    # takes ints and numpy numbers as floats, and refuses str, None, arrays, tensors.
                    getattr(target, field).extend(column)
                except (TypeError, ValueError):
                    del batch.columns[-1]
                else:
                    if indices:
                        target.rows.extend(indices)
                    self.summary.observe(key if type(key) is str else str(key), column)
                    continue
            self._encode_slow(batch, key, indices, column)

    def _encode_nested(self, batch: pb.HistoryBatch, key: Any, indices: list[int], column: list[Any]) -> None:
        """Flatten mapping values (``{"train": {"loss": ...}}`` → ``train/loss``) and encode them."""
        prefix = key if type(key) is str else str(key)
        sub: dict[tuple, tuple[list[int], list[tuple]]] = {}
        for row, value in zip(indices, column):
            values = flatten(value, prefix + "/")
            group = sub.setdefault(tuple(values), ([], []))
            group[0].append(row)
            group[1].append(tuple(values.values()))
        for sub_keys, (sub_rows, members) in sub.items():
            self._encode_group(batch, sub_keys, sub_rows, members)

    def _encode_slow(self, batch: pb.HistoryBatch, key: Any, indices: Sequence[int], column: Sequence[Any]) -> None:
        """Per-value conversion: numpy, tensors, histograms, None, mixed types, unsupported values."""
        nested = [position for position, value in enumerate(column) if isinstance(value, Mapping)]
        if nested:  # a key set first seen with scalars, now with a dict under one key
            rows = list(indices) if indices else list(range(len(column)))
            self._encode_nested(batch, key, [rows[p] for p in nested], [column[p] for p in nested])
            taken = set(nested)
            kept = [p for p in range(len(column)) if p not in taken]
            if not kept:
                return
            indices, column = [rows[p] for p in kept], [column[p] for p in kept]
        by_type: dict[type, tuple[list[int], list[Any]]] = {}
        name = key if type(key) is str else str(key)
        for position, value in enumerate(column):
            if value is None:
                continue
            try:
                converted = to_scalar(value)
            except Unsupported as error:
                self._warn(
                    ("unsupported", name),
                    f"tracklet: key {name!r} has a value of type {error} that can't be logged; "
                    "that key is dropped from this call, the rest is recorded",
                )
                continue
            except Exception as error:  # a tensor that fails to convert must not stop the run
                self._warn(
                    ("conversion", name),
                    f"tracklet: key {name!r}: converting a {type_name(value)} failed ({error!r}); dropped",
                )
                continue
            kind = type(converted)
            bucket = by_type.get(kind)
            if bucket is None:
                bucket = by_type[kind] = ([], [])
            bucket[0].append(indices[position] if indices else position)
            bucket[1].append(converted)
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
            if kind is Histogram:
                for histogram in values:
                    fill_histogram(target.histograms.add(), histogram)
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
        self.summary.observe(name, observed)
