"""A run's history as sparse columns, read from its ``HistoryBatch`` records.

Most runs are sparse: a training loss every step, hundreds of evaluation metrics every few
hundred steps. Dense columns aligned with ``_step`` would cost a slot per key per row (500 eval
keys over 200k steps: 100M slots, ~0.9 GB), so each column is kept as the row positions that hold
a value and those values (numpy arrays for numbers), and a dense list is built only for a column
someone asks for. Memory is bounded by the values present, not by keys x rows.
"""

from __future__ import annotations

import heapq
from collections.abc import ItemsView, Mapping, MutableMapping, ValuesView
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from tracklet.core.decode import COLUMN_VALUE_FIELDS
from tracklet.core.values import from_value_message, histogram_from_message, parse_big_int
from tracklet.proto import records_pb2 as pb

if TYPE_CHECKING:
    import numpy as np

STEP, TIMESTAMP, RUNTIME = "_step", "_timestamp", "_runtime"

# Rows assembled at a time when iterating rows (``History.rows``, exports).
ROW_CHUNK = 4096
# A column with at most this many values is kept as two lists rather than two numpy arrays.
SMALL_COLUMN = 16

_DTYPES = {"floats": "float64", "ints": "int64", "bools": "bool"}

_NOT_BUILT = object()  # a column's value in the dict until its list is built

# A column's entries: the ascending row positions that hold a value (None: every row), and the
# values (a numpy array for one numeric type, else a list); never a None value.
Entries = tuple[Any, Any]


class History(dict):
    """A run's history as columns: ``history["loss"]`` is a list aligned with ``history["_step"]``.

    Columns ``_step`` (int), ``_timestamp`` (seconds since the epoch) and ``_runtime`` (seconds
    since the run started), then one per logged key, with ``None`` where a row has no value for
    that key. Rows logged at the same step are merged into one.

    Columns are stored sparsely and a column's list is built (once) when it is read, so a
    history of many keys logged now and then costs what was logged, not keys x rows; ``rows()``
    and the exports (``tracklet.core.export``) never build the lists.
    """

    def __init__(self, columns: Mapping[str, Sequence[Any]] | Iterable[tuple[str, Sequence[Any]]] | None = None,
                 **named: Sequence[Any]) -> None:
        super().__init__()
        # A column not built yet is held here; the dict itself maps its name to _NOT_BUILT, so the
        # dict's own keys, length and order are always the history's.
        self._sparse: dict[str, Entries] = {}
        self._length: int | None = None
        if columns is not None:
            self.update(columns)
        if named:
            self.update(named)

    @classmethod
    def from_entries(cls, length: int, columns: Iterable[tuple[str, Entries]]) -> "History":
        """A history of ``length`` rows from sparse columns ``(name, (rows, values))``."""
        history = cls()
        history._length = length
        for name, entries in columns:
            dict.__setitem__(history, name, _NOT_BUILT)
            history._sparse[name] = entries
        return history

    # ------------------------------------------------------------ mapping protocol

    def __getitem__(self, name: str) -> list[Any]:
        column = dict.__getitem__(self, name)
        if column is _NOT_BUILT:
            column = _dense(self._sparse.pop(name), self.num_rows)
            dict.__setitem__(self, name, column)
        return column

    def __setitem__(self, name: str, column: Sequence[Any]) -> None:
        self._sparse.pop(name, None)
        dict.__setitem__(self, name, column)

    def __delitem__(self, name: str) -> None:
        dict.__delitem__(self, name)
        self._sparse.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        # Defined here so that dict(history) and {**history} go through __getitem__.
        return dict.__iter__(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and all(name in other and self[name] == other[name] for name in self)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __repr__(self) -> str:
        return f"<History {self.num_rows} rows: {', '.join(self)}>"

    def __reduce__(self) -> Any:
        return (History, (dict(self.items()),))

    def values(self) -> ValuesView[list[Any]]:  # type: ignore[override]
        return ValuesView(self)

    def items(self) -> ItemsView[str, list[Any]]:  # type: ignore[override]
        return ItemsView(self)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def copy(self) -> "History":
        return self.select(list(self))

    pop = MutableMapping.pop
    popitem = MutableMapping.popitem
    setdefault = MutableMapping.setdefault
    update = MutableMapping.update

    def clear(self) -> None:
        dict.clear(self)
        self._sparse.clear()
        self._length = None

    # ------------------------------------------------------------ history

    @property
    def num_rows(self) -> int:
        if self._length is not None:
            return self._length
        for name in self:
            if name not in self._sparse:
                return len(dict.__getitem__(self, name))
        return 0

    def select(self, names: Sequence[str]) -> "History":
        """These columns, in this order, sharing this history's data (nothing is built)."""
        selected = History.from_entries(self.num_rows, ())
        for name in names:
            dict.__setitem__(selected, name, dict.__getitem__(self, name))
            if name in self._sparse:
                selected._sparse[name] = self._sparse[name]
        return selected

    def entries(self, name: str) -> Entries:
        """The column's present values: ``(rows, values)`` with ``rows`` the ascending row
        positions (a numpy array or a list; ``None`` when every row has a value) and ``values`` a
        numpy array (one numeric type) or a list, never holding ``None``."""
        import numpy as np

        entries = self._sparse.get(name)
        if entries is not None:
            return entries
        column = dict.__getitem__(self, name)
        rows = [index for index, value in enumerate(column) if value is not None]
        if len(rows) == len(column):
            return None, list(column)
        return np.array(rows, dtype=np.int64), [column[index] for index in rows]

    def chunks(self, names: Sequence[str] | None = None, size: int = ROW_CHUNK,
               plain: bool = True) -> Iterator[tuple[int, int, list[tuple[int, Any, Any]]]]:
        """The rows ``size`` at a time: ``(start, stop, parts)`` where ``parts`` holds, for each
        column (by its index in ``names``) that has values in rows ``start..stop``, ``(slot,
        rows, values)`` in column order: as lists of Python values, or with ``plain=False`` as
        stored (``rows`` a numpy array, or a ``range`` when every row has a value; ``values`` a
        numpy array or a list). Work and memory per chunk follow the values present in it, not
        the number of columns."""
        import numpy as np

        names = list(self) if names is None else list(names)
        columns = [self.entries(name) for name in names]
        heap: list[tuple[int, int]] = []
        for slot, (rows, values) in enumerate(columns):
            if len(values):
                heap.append((0 if rows is None else int(rows[0]), slot))
        heapq.heapify(heap)
        cursors = [0] * len(columns)
        total = self.num_rows
        for start in range(0, total, size):
            stop = min(total, start + size)
            parts: list[tuple[int, list[int], list[Any]]] = []
            while heap and heap[0][0] < stop:
                _, slot = heapq.heappop(heap)
                rows, values = columns[slot]
                first = cursors[slot]
                if rows is None:
                    last = min(stop, len(values))
                    part_rows: Any = range(first, last)
                else:
                    last = int(np.searchsorted(rows, stop, side="left"))
                    part_rows = _plain(rows[first:last]) if plain else rows[first:last]
                part_values = values[first:last]
                parts.append((slot, part_rows, _plain(part_values) if plain else part_values))
                cursors[slot] = last
                if last < len(values):
                    heapq.heappush(heap, (last if rows is None else int(rows[last]), slot))
            parts.sort(key=lambda item: item[0])
            yield start, stop, parts

    def rows(self) -> Iterator[dict[str, Any]]:
        """The history row by row, each without its missing keys (no column list is built)."""
        names = list(self)
        for start, stop, parts in self.chunks(names):
            chunk: list[dict[str, Any]] = [{} for _ in range(stop - start)]
            for slot, rows, values in parts:
                name = names[slot]
                for row, value in zip(rows, values):
                    chunk[row - start][name] = value
            yield from chunk

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame({name: self._column(name) for name in self})

    def _column(self, name: str) -> list[Any]:
        """The column as a list, without keeping it."""
        entries = self._sparse.get(name)
        return dict.__getitem__(self, name) if entries is None else _dense(entries, self.num_rows)


def _plain(values: Any) -> list[Any]:
    """A numpy array's or a list's values as a list of Python values."""
    return values if type(values) is list else (values.tolist() if hasattr(values, "tolist") else list(values))


def _dense(entries: Entries, length: int) -> list[Any]:
    rows, values = entries
    plain = _plain(values)
    if rows is None:
        return plain + [None] * (length - len(plain))
    column: list[Any] = [None] * length
    for row, value in zip(_plain(rows), plain):
        column[row] = value
    return column


# ---------------------------------------------------------------- building from records


class StepIndex:
    """The history's rows: steps and times once rows at one step are merged, and for each batch
    the row position every one of its rows went to."""

    def __init__(self, batches: Sequence[pb.HistoryBatch]) -> None:
        import numpy as np

        steps: list[np.ndarray] = []
        times: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        count = 0
        last_step: int | None = None
        for batch in batches:
            size = min(len(batch.steps), len(batch.times))
            batch_steps = np.array(batch.steps[:size], dtype=np.int64)
            batch_times = np.array(batch.times[:size], dtype=np.float64)
            if not len(batch_steps):
                self.positions.append(np.zeros(0, dtype=np.int64))
                continue
            new = np.ones(len(batch_steps), dtype=bool)
            new[1:] = batch_steps[1:] != batch_steps[:-1]
            if last_step is not None and batch_steps[0] == last_step:
                new[0] = False
            positions = count + np.cumsum(new) - 1
            # A merged row's time is that of the last row merged into it.
            last_of_row = np.ones(len(positions), dtype=bool)
            last_of_row[:-1] = positions[1:] != positions[:-1]
            row_times = batch_times[last_of_row]
            if not new[0]:
                times[-1] = times[-1].copy()
                times[-1][-1] = row_times[0]
                row_times = row_times[1:]
            if len(row_times):  # a batch wholly merged into the last row adds none (times[-1] stays that row's)
                steps.append(batch_steps[new])
                times.append(row_times)
            self.positions.append(positions)
            count = int(positions[-1]) + 1
            last_step = int(batch_steps[-1])
        self.steps = np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64)
        self.times = np.concatenate(times) if times else np.zeros(0, dtype=np.float64)
        self.batch_count = len(batches)

    def __len__(self) -> int:
        return len(self.steps)


def build_history(batches: Sequence[pb.HistoryBatch], key_names: Mapping[int, str], index: StepIndex,
                  start_time: float | None, keys: Sequence[str] | None = None) -> History:
    """The history of ``keys`` (default: every key with a value) from ``batches``; only the
    columns of those keys are read."""
    import numpy as np

    wanted: set[int] | None = None
    if keys is not None:
        by_name = {name: key_id for key_id, name in key_names.items()}
        wanted = {by_name[k] for k in keys if k in by_name}
    parts: dict[int, list[tuple[Any, Any]]] = {}  # key -> [(row positions, values)], in log order
    for batch, positions in zip(batches, index.positions):
        pieces: dict[int, list[tuple[Any, Any]]] = {}  # key -> [(rows in the batch or None, values)]
        for column in batch.columns:
            if wanted is not None and column.key not in wanted:
                continue
            piece = _column_piece(column, len(positions))
            if piece is not None:
                pieces.setdefault(column.key, []).append(piece)
        for key_id, found in pieces.items():
            in_batch, values = found[0] if len(found) == 1 else _in_row_order(found)
            rows = positions[: len(values)] if in_batch is None else positions[in_batch]
            parts.setdefault(key_id, []).append((rows, values))
    start = start_time if start_time is not None else (float(index.times[0]) if len(index) else 0.0)
    length = len(index)
    columns: list[tuple[str, Entries]] = [
        (STEP, (None, index.steps)),
        (TIMESTAMP, (None, index.times)),
        (RUNTIME, (None, index.times - start)),
    ]
    names = [(key_names.get(key_id, str(key_id)), key_id) for key_id in parts]
    if keys is not None:
        order = {name: i for i, name in enumerate(keys)}
        names.sort(key=lambda pair: order.get(pair[0], 0))
    for name, key_id in names:
        columns.append((name, _merge(parts.pop(key_id), length)))
    present = {name for name, _ in columns}
    for name in keys or ():
        if name not in present:
            present.add(name)
            columns.append((name, (np.zeros(0, dtype=np.int64), [])))
    return History.from_entries(length, columns)


def _column_piece(column: pb.Column, batch_rows: int) -> tuple[Any, Any] | None:
    """``(rows in the batch, or None for its first rows in order; values)`` of one column."""
    import numpy as np

    field = _filled_field(column)
    if field is None:
        return None
    data = getattr(column, field)
    dtype = _DTYPES.get(field)
    if dtype is not None:
        values: Any = np.array(data, dtype=dtype)
    elif field == "histograms":
        values = [histogram_from_message(h) for h in data]
    elif field == "big_ints":
        values = [parse_big_int(text) for text in data]  # None for text that isn't an int
    elif field == "values":
        values = [from_value_message(value) for value in data]  # structured: lists (of dicts...)
    else:
        values = list(data)
    if not column.rows and (field != "big_ints" or None not in values):
        return None, values[:batch_rows]
    in_batch = (np.array(column.rows, dtype=np.int64) if column.rows else np.arange(len(values)))[: len(values)]
    values = values[: len(in_batch)]
    valid = (in_batch >= 0) & (in_batch < batch_rows)
    if field == "big_ints":
        valid &= np.array([value is not None for value in values], dtype=bool)
    if not valid.all():  # a row this batch doesn't have: that value alone is left out
        in_batch = in_batch[valid]
        values = values[valid] if dtype is not None else [v for v, ok in zip(values, valid.tolist()) if ok]
    return in_batch, values


def _in_row_order(pieces: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Several columns of one key in one batch (values of several types, or rows with different
    key sets) as one, in row order."""
    import numpy as np

    in_batch = np.concatenate([np.arange(len(v)) if rows is None else rows for rows, v in pieces])
    values = _concatenate([v for _, v in pieces])
    by_row = np.argsort(in_batch, kind="stable")
    return in_batch[by_row], _take(values, by_row)


def _concatenate(chunks: list[Any]) -> Any:
    """Values from several pieces: one numpy array when they share one numeric type, else a
    list keeping each value's own type (ints and floats logged under one key stay so)."""
    import numpy as np

    if all(isinstance(c, np.ndarray) for c in chunks) and len({c.dtype for c in chunks}) == 1:
        return np.concatenate(chunks)
    return [v for c in chunks for v in _plain(c)]


def _take(values: Any, indices: Any) -> Any:
    if type(values) is list:
        return [values[i] for i in indices.tolist()]
    return values[indices]


def _merge(parts: list[tuple[Any, Any]], length: int) -> Entries:
    """One key's column from its pieces (in log order, so rows never decrease): the last value
    at each row kept."""
    import numpy as np

    if len(parts) == 1:
        rows, values = parts[0]
    else:
        rows = np.concatenate([p[0] for p in parts])
        values = _concatenate([p[1] for p in parts])
    if len(rows) > 1 and np.any(rows[1:] == rows[:-1]):  # several values at one merged row: keep the last
        keep = np.append(rows[1:] != rows[:-1], True)
        rows = rows[keep]
        values = _take(values, np.flatnonzero(keep))
    if len(rows) == length and (length == 0 or int(rows[-1]) == length - 1):
        return None, values
    if len(rows) <= SMALL_COLUMN:  # a key logged a few times: lists cost less than two arrays
        return rows.tolist(), _plain(values)
    return np.array(rows, dtype=np.int64), values


def _filled_field(column: pb.Column) -> str | None:
    for field in COLUMN_VALUE_FIELDS:
        if len(getattr(column, field)):
            return field
    return None
