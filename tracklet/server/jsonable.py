"""Turning store results into JSON under tracklet's one policy (``tracklet.core.jsonsafe``):
arrays as lists, NaN and ±inf as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracklet.core.jsonsafe import json_floats, json_safe
from tracklet.store import SeriesHistory, logged_json

_ARRAYS = ("x", "steps", "values", "first_steps", "min", "max", "last", "count", "nonfinite")


def floats(array: np.ndarray | None) -> list[Any] | None:
    """A numeric array as a JSON list (see ``json_floats``)."""
    return None if array is None else json_floats(array)


def series_json(history: SeriesHistory) -> dict[str, Any]:
    """One ``SeriesHistory`` as a dict; arrays that don't apply (exact vs bucketed) are left out."""
    data: dict[str, Any] = {"run": history.run, "key": history.key, "exact": history.exact}
    if history.stat is not None:
        data["stat"] = history.stat
    for name in _ARRAYS:
        array = getattr(history, name)
        if array is not None:
            data[name] = floats(np.asarray(array))
    if history.exact and history.values is not None and history.logged is not None:
        data.update(logged_json(np.asarray(history.values), history.logged))  # ints exact, bools named
    return data


def json_value(value: Any) -> Any:
    """A store value (a run row: config, summary, times) as strict JSON (see ``json_safe``)."""
    return json_safe(value)
