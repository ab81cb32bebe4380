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
  possible only with ``Histogram(np_histogram=...)``, is the token ``NaN``/``Infinity``/``-Infinity``,
  which Python's ``json.loads`` reads).

CSV has no types, so a cell alone cannot tell ``"1"`` (a string) from ``1``: use JSON Lines or
Parquet when types matter.

**JSON Lines** (``jsonl``; UTF-8, one JSON object per history row, ``\\n`` after each). A key a
row has no value for is absent from that row's object (``_step``, ``_timestamp`` and ``_runtime``
are always present). Numbers, strings and booleans are JSON's own; int64 extremes are written
exactly (Python's ``json`` reads them back exactly; JavaScript's ``JSON.parse`` does not beyond
2**53). NaN and infinities, which strict JSON has no literal for, are the *strings* ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (``float(text)`` reads them back); a logged string with one of
those texts is indistinguishable from them. Histograms are objects, ``Histogram.to_dict()``.

**Parquet** (``parquet``; needs pyarrow: ``pip install 'tracklet[parquet]'``). One row per history
row; a missing value is null. Each key's column gets its type from its values:

* all ``float`` → ``double`` (NaN and infinities kept as such, not null);
* all ``int`` within int64 → ``int64``; all ``bool`` → ``bool``; all ``str`` → ``string``;
* ints and floats mixed, every int within ±2**53 → ``double`` (the numbers are exact; only the
  int/float distinction is lost);
* all histograms → ``struct<edges: list<double>, counts: list<int64>, nan_count: int64,
  inf_count: int64>``;
* any other mix (e.g. ``int`` and ``str``, ``bool`` and ``float``, huge ints with floats, ints
  outside int64) →
  ``string``, each cell the JSON text of its value (``1``, ``2.5``, ``"text"``, ``true``,
  ``NaN``/``Infinity``/``-Infinity``, a histogram object), which ``json.loads`` reads back exactly.
  Such fields carry the field metadata ``tracklet.encoding = json``.
* a key with no values at all → a column of type ``null``.

The file's schema metadata holds ``tracklet.run`` (``project/run_id``) and ``tracklet.format``.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import IO, Any, Sequence

from tracklet.core.reader import RUNTIME, STEP, TIMESTAMP, History
from tracklet.core.values import Histogram

FORMATS = ("csv", "jsonl", "parquet")
INDEX_COLUMNS = (STEP, TIMESTAMP, RUNTIME)
PARQUET_INSTALL_HINT = "pip install 'tracklet[parquet]'"
_EXACT_FLOAT_INT = 1 << 53
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class MissingDependency(ImportError):
    """An optional dependency an export format needs is not installed."""


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
        _write_atomically(Path(out), lambda handle: writer(history, handle, meta))
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
    """The run's history with the index columns first; ``KeyError`` for keys the run never logged."""
    if keys is None:
        return run.history()
    wanted = [k for k in dict.fromkeys(keys) if k not in INDEX_COLUMNS]
    known = set(run.keys())
    unknown = [k for k in wanted if k not in known]
    if unknown:
        available = ", ".join(run.keys()) or "(none)"
        raise KeyError(f"run {run.path} has no key(s) {', '.join(map(repr, unknown))}; its keys: {available}")
    history = run.history(wanted)
    ordered = History()
    for name in (*INDEX_COLUMNS, *wanted):
        ordered[name] = history[name]
    return ordered


# ---------------------------------------------------------------- JSON helpers (also used by the CLI)


def json_safe(value: Any) -> Any:
    """``value`` as strict-JSON-ready data: non-finite floats become ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; histograms become ``Histogram.to_dict()``; bytes become
    ``{"_type": "bytes", "base64": ...}``; tuples become lists."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or kind in (int, bool, str):
        return value
    if isinstance(value, Histogram):
        return json_safe(value.to_dict())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        import base64

        return {"_type": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float):
        return json_safe(float(value))
    if isinstance(value, int):
        return int(value)
    return str(value)


def to_json_text(value: Any) -> str:
    """JSON text of one value; non-finite floats as the tokens ``NaN``/``Infinity``/``-Infinity``
    (which Python's ``json.loads`` reads back), histograms as objects."""
    if isinstance(value, Histogram):
        value = value.to_dict()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


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
    if isinstance(value, Histogram):
        return to_json_text(value)
    return str(value)


def _write_csv(history: History, out: IO[Any], meta: dict[str, str]) -> None:
    with _text(out) as text:
        writer = csv.writer(text, lineterminator="\n")
        names = list(history)
        writer.writerow(names)
        columns = [history[name] for name in names]
        for row in zip(*columns):
            writer.writerow([_csv_cell(value) for value in row])


# ---------------------------------------------------------------- JSON Lines


def _write_jsonl(history: History, out: IO[Any], meta: dict[str, str]) -> None:
    with _text(out) as text:
        names = list(history)
        columns = [history[name] for name in names]
        dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
        for row in zip(*columns):
            record = {name: json_safe(value) for name, value in zip(names, row) if value is not None}
            text.write(dumps(record))
            text.write("\n")


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


def _parquet_column(pa: Any, name: str, values: list[Any]) -> tuple[Any, Any]:
    """(field, array) for one history column, typed by the values it holds."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.field(name, pa.null()), pa.nulls(len(values))
    if kinds == {float}:
        return pa.field(name, pa.float64()), pa.array(values, type=pa.float64())
    if kinds == {int} and all(v is None or _INT64_MIN <= v <= _INT64_MAX for v in values):
        return pa.field(name, pa.int64()), pa.array(values, type=pa.int64())
    if kinds == {bool}:
        return pa.field(name, pa.bool_()), pa.array(values, type=pa.bool_())
    if kinds == {str}:
        return pa.field(name, pa.string()), pa.array(values, type=pa.string())
    if kinds == {float, int} and all(
        type(v) is not int or -_EXACT_FLOAT_INT <= v <= _EXACT_FLOAT_INT for v in values
    ):
        floats = [None if v is None else float(v) for v in values]
        return pa.field(name, pa.float64()), pa.array(floats, type=pa.float64())
    if all(issubclass(kind, Histogram) for kind in kinds):
        data = [None if v is None else v.to_dict() for v in values]
        kind = _histogram_type(pa)
        return pa.field(name, kind), pa.array(data, type=kind)
    texts = [None if v is None else to_json_text(v) for v in values]
    field = pa.field(name, pa.string(), metadata={"tracklet.encoding": "json"})
    return field, pa.array(texts, type=pa.string())


def _write_parquet(history: History, out: Any, meta: dict[str, str]) -> None:
    pa = _import_pyarrow()
    import pyarrow.parquet as pq

    fields, arrays = [], []
    for name, values in history.items():
        if name == STEP:
            field, array = pa.field(name, pa.int64(), nullable=False), pa.array(values, type=pa.int64())
        elif name in (TIMESTAMP, RUNTIME):
            field, array = pa.field(name, pa.float64(), nullable=False), pa.array(values, type=pa.float64())
        else:
            field, array = _parquet_column(pa, name, values)
        fields.append(field)
        arrays.append(array)
    schema = pa.schema(fields, metadata=meta)
    table = pa.Table.from_arrays(arrays, schema=schema)
    pq.write_table(table, out)


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


def _write_atomically(path: Path, write: Any) -> None:
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
