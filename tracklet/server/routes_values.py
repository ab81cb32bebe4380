"""Read API for the history values the store keeps no exact series of: strings, structured values
(a logged list that is not all numbers, kept as W&B keeps it: docs/wandb-compat.md), histograms
and ints outside int64 (the store's series hold those as the nearest float), each key's over
steps. ``tracklet.Api(base_url=...).run(path).history()`` (and W&B's ``run.history()`` against a
server) joins them to the numbers the store answers, so a run reads back from a server as it does
from its record log.

Read out of the run's record log through ``log_fold.LogFolds`` (the log source's windows, the
limits every reader applies: a structured value is at most ``MAX_STRUCTURED_BYTES``), kept per log
with the offset reached, so a request reads only what the log gained since the last one. What is
kept of a log is bounded (``KEPT_BYTES``: the first values in log order; a key past it is
``truncated``), and so is each answer: at most ``limit`` values per key and ``MAX_BYTES`` in all.
Rows logged at one step are merged as every reader merges them (the last value wins; a number
logged after one of these at the same step takes its place, so that step is left to the store's).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.log_fold import LogFolds, run_log
from tracklet.server.models import errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

MAX_KEYS = 100
MAX_BYTES = 16 << 20  # per answer: values' characters or encoded bytes, plus ENTRY_BYTES each
KEPT_BYTES = 32 << 20  # per log kept (LogFolds keeps 8): the same measure
ENTRY_BYTES = 64  # what one kept (step, value) costs beside its text: an int, a str, list slots


class KeyValues(BaseModel):
    """One key's strings, structured values, histograms and ints outside int64: `values[i]` was
    logged at `steps[i]`. Structured values are JSON arrays (NaN and ±inf in them as the strings
    "NaN", "Infinity", "-Infinity"); an int outside int64 is a JSON integer (exact: parse it as a
    big integer); `histograms` lists the positions in `values` that hold a histogram, an object
    `{"edges", "counts", "nan_count", "inf_count"}` (a JSON array at any other position is a
    structured value)."""

    steps: list[int]
    values: list[Any]
    truncated: bool
    histograms: list[int] = []


class ValuesResponse(BaseModel):
    """The asked keys that hold strings or structured values (a key with none is left out)."""

    keys: dict[str, KeyValues]


class _Kept:
    """One key's (step, value, size, is a histogram) in step order as logged, rows at one step merged."""

    __slots__ = ("steps", "values", "sizes", "histograms", "truncated")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[Any] = []
        self.sizes: list[int] = []
        self.histograms: list[bool] = []
        self.truncated = False

    def drop_last(self) -> int:
        """Let the last value go (a number logged after it at its step); the size it freed."""
        self.steps.pop()
        self.values.pop()
        self.histograms.pop()
        return self.sizes.pop()


_NUMBERS = ("floats", "ints", "bools")  # the fields of a Column the store keeps exact series of
_NUMBER = object()  # an item that is a number: it ends a kept value at its step (the last value wins)


class _Texts:
    """The fold of a log: key names by id, and every key's strings and structured values, at most
    ``KEPT_BYTES`` of them."""

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.kept: dict[str, _Kept] = {}
        self.budget = KEPT_BYTES

    def apply(self, record: Any) -> None:
        from tracklet.core.jsonsafe import json_safe
        from tracklet.core.values import from_value_message, histogram_from_message, parse_big_int

        if record.WhichOneof("kind") != "history":
            return
        batch = record.history
        for definition in batch.new_keys:
            self.ids[definition.id] = definition.name
        steps = batch.steps
        pairs: dict[str, list[tuple[int, Any, int, bool]]] = {}
        numbers: list[tuple[str, Any]] = []
        for column in batch.columns:
            name = self.ids.get(column.key)
            if name is None:
                continue
            if len(column.strings):
                data: Any = column.strings
                convert: Any = lambda text: (text, len(text))  # noqa: E731
            elif len(column.values):
                data = column.values
                convert = lambda value: (json_safe(from_value_message(value)), value.ByteSize())  # noqa: E731
            elif len(column.histograms):
                data = column.histograms
                convert = lambda message: (json_safe(histogram_from_message(message)), message.ByteSize())  # noqa: E731
            elif len(column.big_ints):
                data = column.big_ints
                convert = lambda text: (parse_big_int(text), len(text))  # noqa: E731 - None: not an int, left out
            else:
                numbers.append((name, column))
                continue
            histogram = data is column.histograms
            rows = list(column.rows) if len(column.rows) else range(len(data))
            found = pairs.setdefault(name, [])
            for row, item in zip(rows, data):
                value, size = convert(item)
                if value is not None:
                    found.append((row, value, size + ENTRY_BYTES, histogram))
        for name, column in numbers:  # only a key holding some of these values: its numbers' steps
            if name in pairs or name in self.kept:
                field = next((field for field in _NUMBERS if len(getattr(column, field))), None)
                count = len(getattr(column, field)) if field else 0
                rows = list(column.rows) if len(column.rows) else range(count)
                pairs.setdefault(name, []).extend((row, _NUMBER, 0, False) for row in rows)
        for name, items in pairs.items():
            kept = self.kept.get(name)
            if kept is None:
                kept = self.kept[name] = _Kept()
            for row, value, size, histogram in sorted(items, key=lambda item: item[0]):
                step = int(steps[row])
                merged = bool(kept.steps) and kept.steps[-1] == step  # rows at one step: the last value wins
                if value is _NUMBER:
                    if merged:
                        self.budget += kept.drop_last()
                    continue
                if size - (kept.sizes[-1] if merged else 0) > self.budget or (kept.truncated and not merged):
                    kept.truncated = True
                    continue
                if merged:
                    self.budget += kept.sizes[-1] - size
                    kept.values[-1], kept.sizes[-1], kept.histograms[-1] = value, size, histogram
                else:
                    self.budget -= size
                    kept.steps.append(step)
                    kept.values.append(value)
                    kept.sizes.append(size)
                    kept.histograms.append(histogram)


_FOLDS: LogFolds[_Texts] = LogFolds(_Texts, _Texts.apply, size=8)


def _answer(texts: _Texts, names: set[str], limit: int) -> ValuesResponse:
    """The asked keys' first values, at most ``limit`` each and ``MAX_BYTES`` in all (copies: the
    fold goes on as the log grows)."""
    budget = MAX_BYTES
    found: dict[str, KeyValues] = {}
    for name in sorted(names):
        kept = texts.kept.get(name)
        if kept is None or not kept.steps:
            continue
        count = 0
        for size in kept.sizes[:limit]:
            if size > budget:
                break
            budget -= size
            count += 1
        found[name] = KeyValues(steps=kept.steps[:count], values=kept.values[:count],
                                truncated=kept.truncated or count < len(kept.steps),
                                histograms=[at for at in range(count) if kept.histograms[at]])
    return ValuesResponse(keys=found)


@router.get("/{project}/{run_id}/values", response_model=ValuesResponse, responses=errors(400, 404),
            summary="History keys' strings, structured values, histograms and ints outside int64 over steps")
def get_values(
    request: Request,
    project: str,
    run_id: str,
    keys: str = Query(..., description="Comma-separated history keys, e.g. generated,phase"),
    limit: int = Query(10_000, ge=1, le=100_000, description="Values per key at most (the first ones)"),
) -> ValuesResponse:
    """The strings, structured values, histograms and ints outside int64 logged under `keys`
    (other numbers: the `history` route), at most `limit` per key and 16 MiB in all, in step
    order; `truncated`: the key has more."""
    names = {key for key in (part.strip() for part in keys.split(",")) if key}
    if not names or len(names) > MAX_KEYS:
        raise HTTPException(status_code=400, detail=f"keys must name 1 to {MAX_KEYS} history keys, e.g. keys=generated")
    return _FOLDS.get(*run_log(request, project, run_id), lambda texts: _answer(texts, names, limit))
