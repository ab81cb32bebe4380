"""The binary form of a report's streamed panel data (``GET .../reports/{id}/data?format=columns``;
docs/reports.md#binary-panel-data): the same answers as the JSON lines, with every numeric array
sent as raw little-endian columns instead of JSON text.

Why: a report of 20 panels × 50 runs is ~20 MB of JSON numbers, and the browser spends its paint
parsing them. As columns it is a fraction of the bytes and needs no parsing: typed-array views.

A stream is a sequence of frames, one per panel, in the order asked for::

    frame  := header_length:u32 body_length:u32 header body      (little-endian)
    header := UTF-8 JSON {"index", "stamp", "data"}                (as a JSON line)
    body   := the columns, each starting at a multiple of 8 bytes of the body

``data`` is the JSON answer (``{access, error, runs, history: {series}}``, or null when the
caller's ``known`` stamp is current) with two changes: it has ``columns``, a list of
``[dtype, offset, length]`` (dtype ``"i4"``, ``"f4"`` or ``"f8"``; offset in bytes into the body;
length in elements), and each series' arrays (``x``, ``steps``, ``values``, ``min``, ``max``,
``last``) are indexes into ``columns``. Series with the same x share one column (a panel's runs
that logged the same steps send their x once). What each array holds:

- ``x``, ``steps``: ``i4`` when every value is an integer that fits, else ``f8``;
- ``values`` (exact points) and ``last`` (each bucket's last value, what hover shows): ``f8``,
  the logged float64 exactly;
- ``min``/``max``: ``f4`` rounded outwards (min down, max up: a bucket's band still covers its
  extremes) when that moves no value by more than 1e-4 of the series' own spread and keeps every
  finite value finite and every non-zero one non-zero; else ``f8``.

NaN and ±inf are themselves (the JSON form writes them as the texts "NaN", "Infinity",
"-Infinity"). ``decode`` reads a stream back into the JSON form's dicts.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

MEDIA_TYPE = "application/vnd.tracklet.panel-columns"
_ALIGN = 8
_FRAME = struct.Struct("<II")
_CACHED = struct.Struct("<I")
_INT32 = np.iinfo(np.int32)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# A band drawn from float32 extremes moves by at most this share of the series' own spread: far
# below a device pixel of any chart the series is in (its y range spans at least that spread).
BAND_TOLERANCE = 1e-4
_DTYPES: dict[str, np.dtype[Any]] = {"i4": np.dtype("<i4"), "f4": np.dtype("<f4"), "f8": np.dtype("<f8")}


class _Columns:
    """A panel's columns as they are laid out in its body; equal columns are stored once."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.table: list[list[Any]] = []
        self.size = 0
        self._seen: dict[tuple[str, bytes], int] = {}

    def add(self, dtype: str, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array, dtype=_DTYPES[dtype]).tobytes()
        key = (dtype, data)
        found = self._seen.get(key)
        if found is not None:
            return found
        padding = -self.size % _ALIGN
        if padding:
            self.parts.append(b"\0" * padding)
            self.size += padding
        self.table.append([dtype, self.size, len(array)])
        self.parts.append(data)
        self.size += len(data)
        self._seen[key] = len(self.table) - 1
        return self._seen[key]

    def body(self) -> bytes:
        return b"".join(self.parts)


def _integer_dtype(values: np.ndarray) -> str:
    """``i4`` when every value is an integer in int32's range, else ``f8``."""
    if values.dtype.kind in "iu":
        if not len(values) or (values.min() >= _INT32.min and values.max() <= _INT32.max):
            return "i4"
        return "f8"
    as_float = values.astype(np.float64, copy=False)
    if not len(as_float):
        return "i4"
    if not np.isfinite(as_float).all() or as_float.min() < _INT32.min or as_float.max() > _INT32.max:
        return "f8"
    return "i4" if (as_float == np.floor(as_float)).all() else "f8"


def _outward_float32(values: np.ndarray, down: bool) -> np.ndarray:
    """``values`` as float32, each rounded down (``down``) or up where float32 can't hold it."""
    rounded = values.astype(np.float32)
    moved = rounded > values if down else rounded < values
    if moved.any():
        rounded[moved] = np.nextafter(rounded[moved], np.float32(-np.inf if down else np.inf))
    return rounded


def _band_columns(low: np.ndarray, high: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(dtype, min, max) of a bucketed series' extremes: float32 rounded outwards when that is
    faithful to the drawn band (see the module's docstring), else float64 as they are."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    both = np.concatenate([low, high])
    finite = both[np.isfinite(both)]
    if not len(finite) or np.abs(finite).max() > _FLOAT32_MAX:
        return ("f8", low, high) if len(finite) else ("f4", low.astype(np.float32), high.astype(np.float32))
    small_low, small_high = _outward_float32(low, True), _outward_float32(high, False)
    spread = float(finite.max() - finite.min())
    error = max(_largest_error(low, small_low), _largest_error(high, small_high))
    lost = bool(((low != 0) & (small_low == 0)).any() or ((high != 0) & (small_high == 0)).any())
    if lost or error > BAND_TOLERANCE * spread:
        return "f8", low, high
    return "f4", small_low, small_high


def _largest_error(values: np.ndarray, rounded: np.ndarray) -> float:
    finite = np.isfinite(values)
    if not finite.any():
        return 0.0
    return float(np.abs(rounded[finite].astype(np.float64) - values[finite]).max())


def encode_series(history: Any, by_step: bool, columns: _Columns) -> dict[str, Any]:
    """One ``SeriesHistory`` as the JSON form's series dict with its arrays as column indexes."""
    x = np.asarray(history.x)
    entry: dict[str, Any] = {"run": history.run.split("/", 1)[1], "key": history.key, "exact": history.exact,
                             "x": columns.add(_integer_dtype(x) if by_step else "f8", x)}
    if not by_step:
        steps = np.asarray(history.steps)
        entry["steps"] = columns.add(_integer_dtype(steps), steps)
    if history.exact:
        entry["values"] = columns.add("f8", np.asarray(history.values))
    else:
        dtype, low, high = _band_columns(history.min, history.max)
        entry["min"] = columns.add(dtype, low)
        entry["max"] = columns.add(dtype, high)
        entry["last"] = columns.add("f8", np.asarray(history.last))
    return entry


def encode_answer(answer: dict[str, Any], by_step: bool) -> tuple[bytes, bytes]:
    """(``data`` JSON, body) of a panel's answer whose ``history.series`` holds ``SeriesHistory``
    objects (``runsets.resolved_data(..., series_json=keep)``), or plain dicts of an answer that
    draws nothing (then no columns)."""
    columns = _Columns()
    series = [encode_series(history, by_step, columns) for history in answer["history"]["series"]]
    data = {**answer, "history": {"series": series}, "columns": columns.table}
    return json.dumps(data, separators=(",", ":"), default=str).encode(), columns.body()


def keep(history: Any, by_step: bool) -> Any:
    """``series_json`` for ``runsets.resolved_data`` that keeps each ``SeriesHistory`` as it is."""
    return history


def pack(data: bytes, body: bytes) -> bytes:
    """A panel's encoded answer as one bytes value (what the panel cache keeps)."""
    return _CACHED.pack(len(data)) + data + body


def unpack(packed: bytes) -> tuple[bytes, bytes]:
    (length,) = _CACHED.unpack_from(packed)
    end = _CACHED.size + length
    return packed[_CACHED.size:end], packed[end:]


def frame(index: int, stamp: str | None, data: bytes | None, body: bytes = b"") -> bytes:
    """One panel's frame of the stream (``data`` None: unchanged since the caller's stamp)."""
    head = json.dumps({"index": index, "stamp": stamp}).encode()[:-1]
    header = head + b',"data":' + (data if data is not None else b"null") + b"}"
    return _FRAME.pack(len(header), len(body)) + header + body


def frames(stream: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(header, body) of each frame of ``stream``; ``ValueError`` for a cut or malformed one."""
    at = 0
    while at < len(stream):
        if at + _FRAME.size > len(stream):
            raise ValueError(f"a frame's lengths are cut short at byte {at}")
        header_length, body_length = _FRAME.unpack_from(stream, at)
        start = at + _FRAME.size
        end = start + header_length + body_length
        if end > len(stream):
            raise ValueError(f"the frame at byte {at} needs {end - at} bytes; {len(stream) - at} are there")
        yield json.loads(stream[start:start + header_length]), stream[start + header_length:end]
        at = end


def _as_json_list(array: np.ndarray) -> list[Any]:
    from tracklet.core.jsonsafe import json_floats

    return json_floats(array)


def decode(stream: bytes) -> list[dict[str, Any]]:
    """The JSON lines a ``format=columns`` stream stands for: ``[{index, stamp, data}]`` with
    each series' arrays as lists (floats; non-finite ones as the JSON form's texts)."""
    lines = []
    for header, body in frames(stream):
        data = header.get("data")
        if data is not None:
            arrays = [np.frombuffer(body, dtype=_DTYPES[dtype], count=length, offset=offset)
                      for dtype, offset, length in data.pop("columns")]
            for series in data["history"]["series"]:
                for name in ("x", "steps", "values", "min", "max", "last"):
                    if name in series:
                        series[name] = _as_json_list(arrays[series[name]].astype(np.float64))
        lines.append(header)
    return lines
