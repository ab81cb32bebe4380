"""Export a recorded run's history as CSV, JSON Lines or Parquet.

Every format has the columns ``_step`` (int), ``_timestamp`` (seconds since the epoch),
``_runtime`` (seconds since the run started), then one per logged key (or per key asked for), in
that order. Values come back exactly as :meth:`tracklet.RecordedRun.history` gives them.

**CSV** (``csv``; UTF-8, a header row, ``\\n`` line endings). One cell per value:

* missing value: an empty cell (so an empty *string* value reads back as missing too);
* ``float``: ``repr(value)``, which reads back bit for bit with ``float(cell)``; NaN and infinities
  are ``nan``, ``inf`` and ``-inf`` (``float()`` reads those too). A float always has a ``.``,
  an exponent or is one of those three words, so ``2.0`` is never written as ``2``;
* ``int``: decimal digits (int64 extremes included);
* ``bool``: ``true`` / ``false``;
* ``str``: the text itself;
* :class:`~tracklet.Histogram`: JSON text of ``Histogram.to_dict()``
  (``{"edges": [...], "counts": [...], "nan_count": 0, "inf_count": 0}``; a non-finite edge,
  possible only with ``Histogram(np_histogram=...)``, is the string ``"NaN"``/``"Infinity"``/
  ``"-Infinity"``: strict JSON, tracklet's one policy, ``tracklet.core.jsonsafe``);
* a structured value (a logged list that is not all numbers: ``["a cat", "a dog"]``,
  ``[[1, 2], [3, 4]]``): its JSON text, NaN and infinities in it as the strings above.

CSV has no types, so a cell alone cannot tell ``"1"`` (a string) from ``1``: use JSON Lines or
Parquet when types matter.

**JSON Lines** (``jsonl``; UTF-8, one JSON object per history row, ``\\n`` after each). A key a
row has no value for is absent from that row's object (``_step``, ``_timestamp`` and ``_runtime``
are always present). Numbers, strings and booleans are JSON's own; int64 extremes are written
exactly (Python's ``json`` reads them back exactly; JavaScript's ``JSON.parse`` does not beyond
2**53). NaN and infinities, which strict JSON has no literal for, are the *strings* ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (``float(text)`` reads them back); a logged string with one of
those texts is indistinguishable from them. (The same policy as every JSON tracklet writes:
``tracklet.core.jsonsafe``.) Histograms are objects, ``Histogram.to_dict()``; structured values
are JSON arrays.

**Parquet** (``parquet``; needs pyarrow: ``pip install 'tracklet[parquet]'``). One row per history
row; a missing value is null. Each key's column gets its type from its values:

* all ``float`` → ``double`` (NaN and infinities kept as such, not null);
* all ``int`` within int64 → ``int64``; all ``bool`` → ``bool``; all ``str`` → ``string``;
* ints and floats mixed, every int within ±2**53 → ``double`` (the numbers are exact; only the
  int/float distinction is lost);
* all histograms → ``struct<edges: list<double>, counts: list<int64>, nan_count: int64,
  inf_count: int64>``;
* structured values (lists), or any other mix (e.g. ``int`` and ``str``, ``bool`` and ``float``,
  huge ints with floats, ints outside int64) →
  ``string``, each cell the strict JSON text of its value (``1``, ``2.5``, ``"text"``, ``true``,
  a histogram object; NaN and infinities as the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``,
  which ``float()`` reads back), which ``json.loads`` reads back.
  Such fields carry the field metadata ``tracklet.encoding = json``.
* a key with no values at all → a column of type ``null``.

The file's schema metadata holds ``tracklet.run`` (``project/run_id``) and ``tracklet.format``.
The file is written in row groups that cost about 8 MB each to build (fewer, larger groups for
very wide histories), each built from the sparse columns only when it is written: a column with
no value in a group is a view of one shared all-null array, and one with values costs ~9 bytes a
row or, when its values are sparser, ~1 kB per run of rows with values (a chunk each), so a group
costs what its values need, never keys x rows.

Every format is written a chunk of rows at a time from the run's sparse history
(``tracklet.core.history``), so memory follows the values logged and one chunk, never
keys x rows.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Sequence

from tracklet.core.jsonsafe import dumps as to_json_text
from tracklet.core.jsonsafe import json_safe
from tracklet.core.reader import RUNTIME, STEP, TIMESTAMP, History
from tracklet.core.values import Histogram
from tracklet.errors import MissingDependency  # noqa: F401  (defined there; imported from here too)

FORMATS = ("csv", "jsonl", "parquet")
INDEX_COLUMNS = (STEP, TIMESTAMP, RUNTIME)
PARQUET_INSTALL_HINT = "pip install 'tracklet[parquet]'"
_EXACT_FLOAT_INT = 1 << 53
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# CSV rows are assembled about this many cells (rows x columns) at a time.
CSV_CHUNK_CELLS = 262_144
# A Parquet row group costs about this many bytes to build (see _column_cost), holds at least this
# many rows, and a file at most about this many column chunks (row groups x columns).
PARQUET_GROUP_BYTES = 8 << 20
PARQUET_MIN_GROUP_ROWS = 256
PARQUET_MAX_COLUMN_CHUNKS = 16_384


__all__ = ["FORMATS", "MissingDependency", "export_history", "history_for_export", "json_safe", "to_json_text"]


# ---------------------------------------------------------------- public entry point


def export_history(run: Any, fmt: str, out: str | os.PathLike[str] | IO[Any], keys: Sequence[str] | None = None) -> int:
    """Write ``run``'s history to ``out`` as ``fmt`` (``"csv"``, ``"jsonl"`` or ``"parquet"``).

    ``run`` is a :class:`tracklet.RecordedRun`. ``out`` is a path (written to a temporary file
    beside it, then renamed into place, so a failed export leaves no partial file) or an open file:
    text or binary for CSV and JSON Lines (written as UTF-8), binary for Parquet. ``keys`` limits
    the columns to those keys, in that order (``_step``, ``_timestamp`` and ``_runtime`` always come
    first); a key the run never logged raises ``KeyError``. Returns the number of rows written.

    See this module's documentation for how each format writes each kind of value.
    """
    fmt = check_format(fmt)
    if fmt == "parquet":
        _import_pyarrow()  # fail before reading the run when pyarrow is missing
    history = history_for_export(run, keys)
    writer = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[fmt]
    meta = {"tracklet.run": getattr(run, "path", ""), "tracklet.format": "tracklet-history-1"}
    if isinstance(out, (str, os.PathLike)):
        write_atomically(Path(out), lambda handle: writer(history, handle, meta))
    elif fmt == "parquet":
        if _is_text_stream(out):
            raise TypeError("parquet export needs a path or a binary file, not a text stream")
        writer(history, out, meta)
    else:
        writer(history, out, meta)
    return history.num_rows


def check_format(fmt: str) -> str:
    """The format name, lower-cased; ``ValueError`` naming the allowed ones otherwise."""
    name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if name not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return name


def history_for_export(run: Any, keys: Sequence[str] | None = None) -> History:
    """The run's history with the index columns first; ``KeyError`` for keys the run never logged.
    Columns stay as the run gave them (sparse): the writers stream rows without building lists."""
    if keys is None:
        return run.history()
    wanted = [k for k in dict.fromkeys(keys) if k not in INDEX_COLUMNS]
    known = set(run.keys())
    unknown = [k for k in wanted if k not in known]
    if unknown:
        available = ", ".join(run.keys()) or "(none)"
        raise KeyError(f"run {run.path} has no key(s) {', '.join(map(repr, unknown))}; its keys: {available}")
    history = run.history(wanted)
    if not isinstance(history, History):
        history = History(history)
    return history.select([*INDEX_COLUMNS, *wanted])


# ---------------------------------------------------------------- JSON helpers (also used by the CLI)


# ``json_safe`` and ``to_json_text`` (strict JSON, non-finite floats as "NaN"/"Infinity"/"-Infinity")
# live in ``tracklet.core.jsonsafe``, the one JSON policy; imported here for the CLI and old callers.


# ---------------------------------------------------------------- CSV


def _csv_cell(value: Any) -> str:
    kind = type(value)
    if value is None:
        return ""
    if kind is float:
        return repr(value)  # 'nan', 'inf', '-inf' for the non-finite ones
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is str:
        return str(value)
    if isinstance(value, (Histogram, list, dict)):
        return to_json_text(value)
    return str(value)


def _write_csv(history: History, out: IO[Any], meta: dict[str, str]) -> None:
    with _text(out) as text:
        writer = csv.writer(text, lineterminator="\n")
        names = list(history)
        writer.writerow(names)
        for start, stop, parts in history.chunks(names, size=max(1, CSV_CHUNK_CELLS // len(names))):
            cells = [[""] * len(names) for _ in range(stop - start)]
            for slot, rows, values in parts:
                for row, value in zip(rows, values):
                    cells[row - start][slot] = _csv_cell(value)
            writer.writerows(cells)


# ---------------------------------------------------------------- JSON Lines


def _write_jsonl(history: History, out: IO[Any], meta: dict[str, str]) -> None:
    with _text(out) as text:
        names = list(history)
        dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode  # after json_safe
        for start, stop, parts in history.chunks(names):
            records: list[dict[str, Any]] = [{} for _ in range(stop - start)]
            for slot, rows, values in parts:
                name = names[slot]
                for row, value in zip(rows, values):
                    records[row - start][name] = json_safe(value)
            text.write("".join(dumps(record) + "\n" for record in records))


# ---------------------------------------------------------------- Parquet


def _import_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependency(
            f"parquet export needs pyarrow, an optional extra; install it with: {PARQUET_INSTALL_HINT}"
        ) from None
    return pyarrow


def _histogram_type(pa: Any) -> Any:
    return pa.struct(
        [
            ("edges", pa.list_(pa.float64())),
            ("counts", pa.list_(pa.int64())),
            ("nan_count", pa.int64()),
            ("inf_count", pa.int64()),
        ]
    )


def _identity(value: Any) -> Any:
    return value


def _parquet_field(pa: Any, name: str, values: Any) -> tuple[Any, Any]:
    """(field, converter) for one history column, typed by the values it holds (``values``:
    its present values, a numpy array or a list)."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None:
        kinds = {{"f": float, "i": int, "b": bool}[dtype.kind]} if len(values) else set()
    else:
        kinds = {type(v) for v in values}
    if not kinds:
        return pa.field(name, pa.null()), _identity
    if kinds == {float}:
        return pa.field(name, pa.float64()), _identity
    if kinds == {int} and (dtype is not None or all(_INT64_MIN <= v <= _INT64_MAX for v in values)):
        return pa.field(name, pa.int64()), _identity
    if kinds == {bool}:
        return pa.field(name, pa.bool_()), _identity
    if kinds == {str}:
        return pa.field(name, pa.string()), _identity
    if kinds == {float, int} and all(
        type(v) is not int or -_EXACT_FLOAT_INT <= v <= _EXACT_FLOAT_INT for v in values
    ):
        return pa.field(name, pa.float64()), float
    if all(issubclass(kind, Histogram) for kind in kinds):
        return pa.field(name, _histogram_type(pa)), Histogram.to_dict
    return pa.field(name, pa.string(), metadata={"tracklet.encoding": "json"}), to_json_text


def _write_parquet(history: History, out: Any, meta: dict[str, str]) -> None:
    """Row groups of about ``PARQUET_GROUP_CELLS`` values, built one at a time from the sparse
    columns; within a group a column absent from it shares one all-null array and a sparse one is
    chunks (see :func:`_arrow_part`), so memory follows the values in a group, not keys x rows."""
    pa = _import_pyarrow()
    import pyarrow.parquet as pq

    names = list(history)
    fields, converters = [], []
    row_cost = 0.0
    for name in names:
        rows, values = history.entries(name)
        row_cost += _column_cost(rows, len(values), history.num_rows)
        if name == STEP:
            field, convert = pa.field(name, pa.int64(), nullable=False), _identity
        elif name in (TIMESTAMP, RUNTIME):
            field, convert = pa.field(name, pa.float64(), nullable=False), _identity
        else:
            field, convert = _parquet_field(pa, name, values)
        fields.append(field)
        converters.append(convert)
    schema = pa.schema(fields, metadata=meta)
    group_rows = _parquet_group_rows(history.num_rows, len(names), row_cost)
    with pq.ParquetWriter(out, schema) as writer:
        for start, stop, parts in history.chunks(names, size=group_rows, plain=False):
            present = {slot: (rows, values) for slot, rows, values in parts}
            nulls = _NullArrays(pa, stop - start)
            arrays = []
            for slot, field in enumerate(fields):
                part = present.get(slot)
                if part is None:
                    arrays.append(nulls.of(field.type, stop - start))
                else:
                    arrays.append(_arrow_part(pa, field.type, converters[slot], start, stop, *part, nulls))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            del arrays, present, nulls  # this group's arrays go before the next group's are built


def _parquet_group_rows(rows: int, columns: int, row_cost: float | None = None) -> int:
    """Rows per row group: about ``PARQUET_GROUP_BYTES`` to build each (``row_cost``: bytes per
    row of the history, :func:`_column_cost` summed over its columns; 9 a cell when not given),
    but no more than ``PARQUET_MAX_COLUMN_CHUNKS`` column chunks in the file (the writer keeps
    ~1.5 kB of metadata per chunk until it closes)."""
    columns = max(1, columns)
    cost = rows * columns * _DENSE_BYTES if row_cost is None else rows * row_cost
    wanted = max(1, int(-(-cost // PARQUET_GROUP_BYTES)))
    groups = max(1, min(wanted, PARQUET_MAX_COLUMN_CHUNKS // columns))
    return max(PARQUET_MIN_GROUP_ROWS, -(-rows // groups))


def _column_cost(rows: Any, count: int, length: int) -> float:
    """Bytes per history row that building a column's part of a row group costs: ~9 (a data
    buffer and a validity bit per row) when its values come in long enough runs, else the
    chunks its runs become (``_CHUNK_BYTES`` each); nothing for a column with no value, whose
    groups share one all-null array."""
    if not count or not length:
        return 0.0
    if rows is None or isinstance(rows, range):
        return float(_DENSE_BYTES)
    import numpy as np

    runs = 1 + int(np.count_nonzero(np.diff(np.asarray(rows, dtype=np.int64)) != 1))
    return min(float(_DENSE_BYTES), runs * _CHUNK_BYTES / length)


_NUMPY_FOR_ARROW = {"double": "float64", "int64": "int64", "bool": "bool"}
# A column with values in a row group is built dense (a data buffer of the group's length and a
# validity bitmap: ~9 bytes a row) unless that costs more than a chunked array: each run of rows
# with values a slice of them, with slices of one shared all-null array between (two Arrow
# arrays a run, ~1 kB with their C++ metadata). So a column costs what the cheaper way does.
_DENSE_BYTES = 9
_CHUNK_BYTES = 1024
SPARSE_ROWS_PER_RUN = _CHUNK_BYTES // _DENSE_BYTES


class _NullArrays:
    """All-null arrays of one row group's length, one per type, shared by every column that needs
    nulls there (Arrow arrays are immutable: a slice is a view)."""

    def __init__(self, pa: Any, length: int) -> None:
        self._pa = pa
        self._length = length
        self._by_type: dict[Any, Any] = {}

    def of(self, kind: Any, length: int) -> Any:
        full = self._by_type.get(kind)
        if full is None:
            full = self._by_type[kind] = self._pa.nulls(self._length, type=kind)
        return full if length == self._length else full.slice(0, length)


def _arrow_part(pa: Any, kind: Any, convert: Any, start: int, stop: int, rows: Any, values: Any,
                nulls: _NullArrays | None = None) -> Any:
    """Rows ``start..stop`` of one column as an Arrow array (or a chunked array when sparse, see
    ``SPARSE_ROWS_PER_RUN``), from its values at ``rows``. Numbers go through numpy buffers
    (``pa.array`` on Python data would import pandas, ~50 MB)."""
    import numpy as np

    length = stop - start
    if isinstance(rows, range) and len(rows) == length:
        return _present_array(pa, kind, convert, values)
    offsets = np.asarray(rows, dtype=np.int64) - start
    breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
    if (len(breaks) + 1) * SPARSE_ROWS_PER_RUN < length:
        nulls = nulls or _NullArrays(pa, length)
        present = _present_array(pa, kind, convert, values)
        places = offsets.tolist()
        bounds = [0, *breaks.tolist(), len(places)]
        chunks, position = [], 0
        for first, last in zip(bounds, bounds[1:]):
            if places[first] > position:
                chunks.append(nulls.of(kind, places[first] - position))
            chunks.append(present.slice(first, last - first))
            position = places[last - 1] + 1
        if position < length:
            chunks.append(nulls.of(kind, length - position))
        return pa.chunked_array(chunks, type=kind)
    dtype = _NUMPY_FOR_ARROW.get(str(kind))
    if dtype is None:  # strings, histograms, JSON text: rare, through Python values
        column: list[Any] = [None] * length
        for row, value in zip(offsets.tolist(), _converted(values, convert)):
            column[row] = value
        return pa.array(column, type=kind)
    data = np.zeros(length, dtype=dtype)
    data[offsets] = _numbers(values, convert, dtype)
    valid = np.zeros(length, dtype=bool)
    valid[offsets] = True
    return pa.Array.from_buffers(kind, length, [pa.py_buffer(np.packbits(valid, bitorder="little")),
                                                _data_buffer(pa, data, dtype)], null_count=length - len(offsets))


def _converted(values: Any, convert: Any) -> list[Any]:
    plain = values.tolist() if hasattr(values, "tolist") else list(values)
    return plain if convert is _identity else [convert(v) for v in plain]


def _numbers(values: Any, convert: Any, dtype: str) -> Any:
    import numpy as np

    return np.asarray(values if convert is _identity else [convert(v) for v in values], dtype=dtype)


def _data_buffer(pa: Any, data: Any, dtype: str) -> Any:
    import numpy as np

    if dtype == "bool":
        return pa.py_buffer(np.packbits(data, bitorder="little"))
    return pa.py_buffer(np.ascontiguousarray(data))


def _present_array(pa: Any, kind: Any, convert: Any, values: Any) -> Any:
    """A column's present values, in order and without nulls, as an Arrow array of ``kind``."""
    dtype = _NUMPY_FOR_ARROW.get(str(kind))
    if dtype is None:
        return pa.array(_converted(values, convert), type=kind)
    data = _numbers(values, convert, dtype)
    return pa.Array.from_buffers(kind, len(data), [None, _data_buffer(pa, data, dtype)], null_count=0)


# ---------------------------------------------------------------- file handling


def _is_text_stream(out: Any) -> bool:
    if isinstance(out, io.TextIOBase):
        return True
    if isinstance(out, (io.RawIOBase, io.BufferedIOBase)):
        return False
    mode = getattr(out, "mode", None)
    if isinstance(mode, str):
        return "b" not in mode
    return hasattr(out, "encoding")  # e.g. click's and pytest's stream wrappers


class _text:
    """Context manager: a text stream over ``out`` (itself if it is one; a UTF-8 wrapper over a
    binary one, detached afterwards so the caller's stream stays open)."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._wrapper: io.TextIOWrapper | None = None

    def __enter__(self) -> Any:
        if _is_text_stream(self._out):
            return self._out
        self._wrapper = io.TextIOWrapper(self._out, encoding="utf-8", newline="", write_through=True)
        return self._wrapper

    def __exit__(self, *exc: Any) -> None:
        if self._wrapper is not None:
            self._wrapper.flush()
            self._wrapper.detach()


def write_atomically(path: Path, write: Any) -> None:
    """Write through ``write(binary_stream)`` to a hidden file beside ``path``, then rename it into
    place: readers never see a half-written export, and a failure leaves nothing behind."""
    path = path.expanduser()
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such directory", str(path.parent))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        with open(temporary, "xb") as stream:  # honours the umask, unlike mkstemp
            write(stream)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError) and error.filename == str(temporary):
            error.filename = str(path)  # name the file the caller asked for, not our temporary
        raise
