"""The one JSON policy for numbers JSON has no literal for (NaN, +inf, -inf).

Strict JSON (RFC 8259) has no NaN or infinities. Python's ``json`` writes the bare tokens
``NaN``/``Infinity``, which JavaScript's ``JSON.parse``, ``jq`` and most other readers refuse, so
everything tracklet writes as JSON is strict JSON, and a non-finite float in it is the **string**
``"NaN"``, ``"Infinity"`` or ``"-Infinity"``: the tracking server's responses (series arrays and
run rows), ``tracklet export --format jsonl``, ``tracklet show --json`` and ``runs --json``, and
the JSON text in CSV histogram cells and Parquet ``json`` columns.

``float(text)`` reads each back. In a numeric array (a history series) the strings are
unambiguous, and :func:`float_from_json` turns them back into floats (``tracklet.Api(base_url=...)``
does); in a value position, a logged string with one of these three texts reads the same.

The store's own JSON columns (config, summary) are storage, not output: they hold null for these
values (PostgreSQL's JSONB refuses NaN, and numeric filters must not meet strings there); the record
log keeps the real floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tracklet.core.values import Histogram

__all__ = ["NONFINITE", "dumps", "float_from_json", "json_floats", "json_safe", "nonfinite_text"]

#: The three texts, and the floats they stand for.
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def nonfinite_text(value: float) -> str:
    """``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` for a non-finite float."""
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def json_safe(value: Any) -> Any:
    """``value`` as strict-JSON-ready data: non-finite floats become their texts (above);
    histograms become ``Histogram.to_dict()``; bytes become ``{"_type": "bytes", "base64": ...}``;
    tuples become lists; numpy scalars their Python numbers; anything else its ``str()``."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else nonfinite_text(value)
    if value is None or kind in (int, bool, str):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Histogram):
        return json_safe(value.to_dict())
    if isinstance(value, (bytes, bytearray)):
        import base64

        return {"_type": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float):
        return json_safe(float(value))
    if isinstance(value, int):
        return int(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return str(value)


def json_floats(array: Any) -> list[Any]:
    """A numeric array (numpy or a sequence) as a JSON list: ints stay ints, non-finite floats
    become their texts. One vectorized finiteness check; a Python pass only over arrays that
    hold a non-finite value."""
    import numpy as np

    values = np.asarray(array)
    if values.dtype.kind in "iub":
        return values.tolist()
    values = values.astype(np.float64, copy=False)
    if np.isfinite(values).all():
        return values.tolist()
    return [v if math.isfinite(v) else nonfinite_text(v) for v in values.tolist()]


def float_from_json(value: Any) -> float:
    """A number of a JSON numeric array back as a float: the three texts become NaN/±inf, and
    null (missing) becomes NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return NONFINITE[value]
    return float(value)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` under this policy (UTF-8 text, not ASCII-escaped)."""
    separators = None if indent is not None else (",", ":")
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, indent=indent, separators=separators)
