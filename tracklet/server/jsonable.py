"""Turning store results into JSON: arrays as lists, NaN and ±inf as null."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracklet.store import SeriesHistory

_ARRAYS = ("x", "steps", "values", "first_steps", "min", "max", "last", "count", "nonfinite")


def floats(array: np.ndarray | None) -> list[Any] | None:
    """A numeric array as a JSON list; NaN and ±inf become null."""
    if array is None:
        return None
    if array.dtype.kind in "iub":
        return array.tolist()
    return [value if math.isfinite(value) else None for value in array.astype(np.float64).tolist()]


def series_json(history: SeriesHistory) -> dict[str, Any]:
    """One ``SeriesHistory`` as a dict; arrays that don't apply (exact vs bucketed) are left out."""
    data: dict[str, Any] = {"run": history.run, "key": history.key, "exact": history.exact}
    if history.stat is not None:
        data["stat"] = history.stat
    for name in _ARRAYS:
        array = getattr(history, name)
        if array is not None:
            data[name] = floats(np.asarray(array))
    return data


def json_value(value: Any) -> Any:
    """A store value (config, summary, times) made strictly JSON: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value
