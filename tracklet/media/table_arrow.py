"""A table's rows and DataFrames as one Arrow table, with the type rules docs/tables.md states.

- A DataFrame (pandas; an Arrow table; anything with ``__arrow_c_stream__``, such as polars)
  converts through Arrow as a whole (``pa.Table.from_pandas``), never row by row. A pandas frame
  of plain columns is only copied on the caller's thread (``PendingFrame``) and converted where
  it is first needed: on the logged-object worker, or when the caller reads the table.
- Rows convert a column at a time (``pa.array`` over the column, C-level): a column's type is
  what Arrow infers from its values, widened where Arrow widens (ints with floats make a double
  column; nulls take any type).
- A value of another kind than its column (a string in a number column, a number in a string
  column, an int in a bool column) is a *type change*: the column keeps the type of its first
  values, and the value is stored as null, with one warning naming the table, the column and the
  row. Only a column with such a value is converted value by value.
- A column whose values Arrow can't store at all (arbitrary objects) is stored as their text
  (``str()``), with a warning.
- A row of the wrong width is left out, with a warning naming the table and the row; the other
  rows are kept.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

# Column names tracklet keeps for itself in the Parquet fragments (the row order within a
# fragment; the fragment a row came from, in queries).
RESERVED_PREFIX = "__tracklet_"
ROW_COLUMN = "__tracklet_row"

# Takes (what, message): ``what`` says which problem it is (e.g. ``"type:score"``), so a run's writer
# warns once per table and problem, not once per increment; the message names the table, column and row.
Report = Callable[[str, str], None]

_MAX_LISTED = 3  # bad values named in one warning; the count says how many more


def pa_module() -> Any:
    """pyarrow, or an ImportError saying which extra brings it."""
    try:
        import pyarrow
    except ImportError as error:  # pragma: no cover - pyarrow is in the tables extra
        from tracklet.errors import MissingDependency

        raise MissingDependency("tracklet tables need pyarrow: pip install 'tracklet[tables]'") from error
    return pyarrow


class PendingFrame:
    """A pandas DataFrame copied on the caller's thread and converted to Arrow (``from_pandas``,
    as a whole) once, where first asked for (``materialize``): on the logged-object worker when
    the table is logged, so ``Table(dataframe=df)`` costs the caller the copy only (with pandas'
    copy-on-write a shallow one, microseconds, the deep copy then the worker's; else ~7-160 ms
    for 1M rows × 10 columns, page faults included), not the ~15 ms of CPU more and a thread
    pool's start of the conversion, or on the caller when it reads the table first. Only frames whose conversion
    can't fail are deferred (``arrow_of_dataframe``). Stands in for the Arrow part where the
    table needs only its size and names."""

    def __init__(self, frame: Any, copy_first: bool = False) -> None:
        self._frame = frame
        self._copy_first = copy_first  # ``frame`` is a copy-on-write snapshot: copy it deep before converting
        self._arrow: Any = None
        self._lock = threading.Lock()  # the worker and the caller may both ask
        self.num_rows = len(frame)
        self.nbytes = int(frame.memory_usage(index=False, deep=False).sum())
        self.column_names = [str(name) for name in frame.columns]

    def select(self, names: list[str]) -> "PendingFrame":
        """Only ``names``, in that order (a KeyError names a column the frame doesn't have)."""
        return PendingFrame(self._frame[names], self._copy_first)

    def arrow(self) -> Any:
        with self._lock:
            if self._arrow is None:
                # from_pandas shares numeric buffers: they must be this table's own, not the caller's
                frame = self._frame.copy(deep=True) if self._copy_first else self._frame
                self._arrow = pa_module().Table.from_pandas(frame, preserve_index=False, nthreads=1)
                self._frame = None  # the Arrow table holds the data now
            return self._arrow


def _copy_on_write() -> bool:
    """Whether pandas copies on write (pandas 3 always; pandas 2 when its option is on)."""
    import pandas as pd

    if int(pd.__version__.partition(".")[0]) >= 3:
        return True
    return getattr(pd.options.mode, "copy_on_write", False) is True


def materialize(part: Any) -> Any:
    """A table's Arrow part as a ``pyarrow.Table`` (a ``PendingFrame`` converted)."""
    return part.arrow() if isinstance(part, PendingFrame) else part


def _converts_whole(frame: Any) -> bool:
    """Whether ``from_pandas`` surely converts every column of ``frame``: numpy bools, ints,
    floats, dates and durations; pandas' strings, nullable numbers and bools, dates with a time
    zone, Arrow-backed columns; categoricals of those; object columns of text only
    (``infer_dtype``, a C scan). Anything else (media, other objects, complex numbers) is
    converted on the caller, where a frame that doesn't convert takes the rows path."""
    return all(_converts(column.dtype, column) for _, column in frame.items())


def _converts(dtype: Any, values: Any) -> bool:
    import pandas as pd
    from pandas.api.types import infer_dtype

    if isinstance(dtype, pd.CategoricalDtype):
        return _converts(dtype.categories.dtype, dtype.categories)
    if isinstance(dtype, (pd.StringDtype, pd.BooleanDtype, pd.DatetimeTZDtype, pd.ArrowDtype)):
        return True
    if getattr(dtype, "kind", None) in ("i", "u", "f") and isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return True  # Int64, Float64 and the like (nullable)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return False
    if dtype.kind in "biufmM":
        return True
    return dtype.kind == "O" and infer_dtype(values, skipna=True) in ("string", "empty")


def arrow_of_dataframe(frame: Any) -> Any:
    """``frame`` as an Arrow table the caller can't change afterwards: a pandas DataFrame is
    copied (``from_pandas`` would share its numeric buffers) and converted as a whole, later
    (a ``PendingFrame``) when nothing in it can fail to convert; an Arrow
    table is immutable and taken as it is; other frames convert through the Arrow stream protocol.
    None for a pandas DataFrame Arrow can't convert (a column of media, as W&B scripts build
    predictions tables, or of other objects): take its rows (``dataframe_rows``) instead."""
    pa = pa_module()
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if type(frame).__module__.partition(".")[0] == "pandas":
        from tracklet.errors import TableError

        names = [str(name) for name in frame.columns]
        if len(set(names)) != len(names):
            duplicated = sorted({name for name in names if names.count(name) > 1})
            raise TableError(f"tracklet.Table(dataframe=...): duplicate column names {duplicated}")
        if _converts_whole(frame):
            # With pandas' copy-on-write (always on from pandas 3) a shallow copy is a snapshot:
            # a later change to ``frame`` copies the data it changes, on the caller's side; the
            # deep copy, which Arrow's zero-copy conversion needs, is then the worker's.
            lazy = _copy_on_write()
            copy = frame.copy(deep=not lazy)
            copy.columns = names
            return PendingFrame(copy, copy_first=lazy)
        copy = frame.copy(deep=True)
        copy.columns = names
        try:
            return pa.Table.from_pandas(copy, preserve_index=False)
        except _arrow_errors(pa):
            return None  # a column of media or other objects: the caller takes the frame's rows
    if hasattr(frame, "__arrow_c_stream__"):
        return pa.table(frame)
    if hasattr(frame, "to_arrow"):
        return frame.to_arrow()
    raise TypeError(f"tracklet.Table(dataframe=...) takes a pandas DataFrame, an Arrow table or a frame with "
                    f"the Arrow stream protocol; got {type(frame).__name__}")


def dataframe_rows(frame: Any) -> list[list[Any]]:
    """A pandas DataFrame's rows as lists of Python values (a column at a time): the path for a
    frame holding media, whose cells are stored on the worker (``table_cells``), or objects Arrow
    can't store (then stored as their text, ``column_array``)."""
    columns = [frame[name].tolist() for name in frame.columns]
    return [list(row) for row in zip(*columns)]


def _arrow_errors(pa: Any) -> tuple[type[BaseException], ...]:
    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def column_array(values: Sequence[Any], column: str, where: str, report: Report, row_offset: int = 0,
                 mixed_as_text: bool = False) -> Any:
    """One column's values as an Arrow array: inferred by Arrow in one call; only when that fails,
    value by value (the first values set the type, values that don't fit it become nulls), or
    with ``mixed_as_text`` (W&B's ``allow_mixed_types``) every value as its text (``str()``)."""
    pa = pa_module()
    errors = _arrow_errors(pa)
    try:
        return pa.array(values)
    except errors:
        pass
    if mixed_as_text:
        return _as_text(values)
    kind = None
    for value in values:
        if value is None:
            continue
        try:
            kind = pa.scalar(value).type
            break
        except errors:
            continue
    if kind is None:
        shown = next(type(v).__name__ for v in values if v is not None)
        report(f"text:{column}", f"tracklet: {where}: column {column!r} holds values Arrow can't store ({shown}); stored as their "
               f"text (str())")
        return pa.array([None if value is None else str(value) for value in values], type=pa.string())
    return _convert_each(values, kind, column, where, report, row_offset)


def _as_text(values: Sequence[Any]) -> Any:
    pa = pa_module()
    return pa.array([value if value is None or isinstance(value, str) else str(value) for value in values],
                    type=pa.string())


def _convert_each(values: Sequence[Any], kind: Any, column: str, where: str, report: Report,
                  row_offset: int) -> Any:
    """``values`` as an array of ``kind``; each value that doesn't convert is a null, reported."""
    pa = pa_module()
    errors = _arrow_errors(pa)
    kept: list[Any] = []
    bad: list[tuple[int, Any]] = []
    for index, value in enumerate(values):
        if value is None:
            kept.append(None)
            continue
        try:
            pa.scalar(value, type=kind)
            kept.append(value)
        except errors:
            kept.append(None)
            bad.append((row_offset + index, value))
    if bad:
        listed = ", ".join(f"row {row}: {_show(value)} ({type(value).__name__})" for row, value in bad[:_MAX_LISTED])
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        report(f"type:{column}", f"tracklet: {where}: column {column!r} is {kind} (set by its first values); {len(bad)} value(s) "
               f"of another type stored as null ({listed}{more}); the rest of each row is kept")
    try:
        return pa.array(kept, type=kind)
    except errors as error:  # a value that converted alone but not in the array: give up on the column's values
        report(f"failed:{column}", f"tracklet: {where}: column {column!r} could not be stored ({error}); stored as nulls")
        return pa.nulls(len(values), type=kind)


def check_widths(rows: Sequence[Sequence[Any]], width: int, where: str, report: Report,
                 row_offset: int = 0) -> Sequence[Sequence[Any]]:
    """``rows`` without those of another width than ``width`` (each reported)."""
    widths = set(map(len, rows))
    if widths <= {width}:
        return rows
    bad = [index for index, row in enumerate(rows) if len(row) != width]
    listed = ", ".join(f"row {row_offset + index} has {len(rows[index])}" for index in bad[:_MAX_LISTED])
    more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    report("width", f"tracklet: {where}: {len(bad)} row(s) of the wrong width left out (the table has {width} columns; "
           f"{listed}{more}); the other rows are kept")
    return [row for row in rows if len(row) == width]


def rows_only(count: int) -> Any:
    """A ``pyarrow.Table`` of no columns and ``count`` rows (a table logged with ``columns=[]``:
    ``from_arrays`` of no arrays has no rows)."""
    pa = pa_module()
    return pa.table({"rows": pa.nulls(count)}).select([])


def rows_to_arrow(rows: Sequence[Sequence[Any]], columns: Sequence[str], where: str, report: Report,
                  row_offset: int = 0, cells: Callable[[Sequence[Any], str, int], Any] | None = None,
                  mixed_as_text: bool = False) -> Any:
    """Rows (each a sequence of one value per column) as an Arrow table, a column at a time.
    ``cells``: what stores a column of media (``table_cells.media_cells``), on the worker;
    ``mixed_as_text``: a column of mixed types as text (:func:`column_array`)."""
    pa = pa_module()
    rows = check_widths(rows, len(columns), where, report, row_offset)
    if not columns:
        return rows_only(len(rows))
    values = list(zip(*rows)) if rows else [()] * len(columns)
    arrays = []
    for name, column_values in zip(columns, values):
        array = cells(column_values, name, row_offset) if cells is not None else None
        arrays.append(array if array is not None else column_array(column_values, name, where, report, row_offset,
                                                                   mixed_as_text))
    return pa.Table.from_arrays(arrays, names=list(columns))


def conform(table: Any, known: dict[str, Any], where: str, report: Report, row_offset: int = 0,
            mixed_as_text: bool = False) -> Any:
    """``table`` with each column of a type ``known`` already has made to fit it: where Arrow can
    unify the two (int and double, null and anything) the column is left for ``concat`` to
    widen; otherwise its values are converted to the known type one by one (nulls, reported), or
    with ``mixed_as_text`` to a known text type as their text."""
    pa = pa_module()
    errors = _arrow_errors(pa)
    for index, field in enumerate(table.schema):
        kind = known.get(field.name)
        if kind is None or kind == field.type:
            continue
        try:
            pa.unify_schemas([pa.schema([(field.name, kind)]), pa.schema([field])], promote_options="permissive")
            continue
        except errors:
            pass
        values = table.column(index).to_pylist()
        converted = (_as_text(values) if mixed_as_text and pa.types.is_string(kind)
                     else _convert_each(values, kind, field.name, where, report, row_offset))
        table = table.set_column(index, field.name, converted)
    return table


def combine(parts: Sequence[Any], known: dict[str, Any], where: str, report: Report, row_offset: int = 0,
            mixed_as_text: bool = False) -> Any:
    """Arrow tables (an earlier part's types win over a later part's) as one table, with the
    columns of all; ``known``: column types set before these parts (earlier increments);
    ``mixed_as_text``: as :func:`conform`'s."""
    pa = pa_module()
    known = dict(known)
    conformed = []
    offset = row_offset
    for part in parts:
        part = conform(part, known, where, report, offset, mixed_as_text)
        for field in part.schema:
            if known.get(field.name) is None or pa.types.is_null(known[field.name]):
                known[field.name] = field.type
        conformed.append(part)
        offset += part.num_rows
    if len(conformed) == 1:
        return conformed[0]
    return pa.concat_tables(conformed, promote_options="permissive")


def empty_table(columns: Sequence[str]) -> Any:
    """A table of ``columns`` with no rows (type null: the first values set the types)."""
    pa = pa_module()
    return pa.Table.from_arrays([pa.array([], type=pa.null()) for _ in columns], names=list(columns))
