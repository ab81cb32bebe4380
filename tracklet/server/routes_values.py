"""Read API for the history values the store keeps no series of: strings and structured values
(a logged list that is not all numbers, kept as W&B keeps it: docs/wandb-compat.md), each key's
over steps. ``tracklet.Api(base_url=...).run(path).history()`` (and W&B's ``run.history()``
against a server) joins them to the numbers the store answers.

Read out of the run's record log through ``log_fold.LogFolds`` (the log source's windows, the
limits every reader applies: a structured value is at most ``MAX_STRUCTURED_BYTES``), kept per log
with the offset reached, so a request reads only what the log gained since the last one. What is
kept of a log is bounded (``KEPT_BYTES``: the first values in log order; a key past it is
``truncated``), and so is each answer: at most ``limit`` values per key and ``MAX_BYTES`` in all.
Rows logged at one step are merged as every reader merges them (the last value wins).
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
    """One key's strings and structured values: `values[i]` was logged at `steps[i]`. Structured
    values are JSON arrays (NaN and ±inf in them as the strings "NaN", "Infinity", "-Infinity")."""

    steps: list[int]
    values: list[Any]
    truncated: bool


class ValuesResponse(BaseModel):
    """The asked keys that hold strings or structured values (a key with none is left out)."""

    keys: dict[str, KeyValues]


class _Kept:
    """One key's (step, value, size) in step order as logged, rows at one step merged."""

    __slots__ = ("steps", "values", "sizes", "truncated")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[Any] = []
        self.sizes: list[int] = []
        self.truncated = False


class _Texts:
    """The fold of a log: key names by id, and every key's strings and structured values, at most
    ``KEPT_BYTES`` of them."""

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.kept: dict[str, _Kept] = {}
        self.budget = KEPT_BYTES

    def apply(self, record: Any) -> None:
        from tracklet.core.jsonsafe import json_safe
        from tracklet.core.values import from_value_message

        if record.WhichOneof("kind") != "history":
            return
        batch = record.history
        for definition in batch.new_keys:
            self.ids[definition.id] = definition.name
        steps = batch.steps
        pairs: dict[str, list[tuple[int, Any, int]]] = {}
        for column in batch.columns:
            name = self.ids.get(column.key)
            if name is None or not (len(column.strings) or len(column.values)):
                continue
            rows = list(column.rows) if len(column.rows) else range(len(column.strings) or len(column.values))
            if len(column.strings):
                items = [(row, text, len(text) + ENTRY_BYTES) for row, text in zip(rows, column.strings)]
            else:
                items = [(row, value, value.ByteSize() + ENTRY_BYTES) for row, value in zip(rows, column.values)]
            pairs.setdefault(name, []).extend(items)
        for name, items in pairs.items():
            kept = self.kept.get(name)
            if kept is None:
                kept = self.kept[name] = _Kept()
            for row, value, size in sorted(items, key=lambda item: item[0]):
                step = int(steps[row])
                merged = bool(kept.steps) and kept.steps[-1] == step  # rows at one step: the last value wins
                if size - (kept.sizes[-1] if merged else 0) > self.budget or (kept.truncated and not merged):
                    kept.truncated = True
                    continue
                plain = value if isinstance(value, str) else json_safe(from_value_message(value))
                if merged:
                    self.budget += kept.sizes[-1] - size
                    kept.values[-1], kept.sizes[-1] = plain, size
                else:
                    self.budget -= size
                    kept.steps.append(step)
                    kept.values.append(plain)
                    kept.sizes.append(size)


_FOLDS: LogFolds[_Texts] = LogFolds(_Texts, _Texts.apply, size=8)


def _answer(texts: _Texts, names: set[str], limit: int) -> ValuesResponse:
    """The asked keys' first values, at most ``limit`` each and ``MAX_BYTES`` in all (copies: the
    fold goes on as the log grows)."""
    budget = MAX_BYTES
    found: dict[str, KeyValues] = {}
    for name in sorted(names):
        kept = texts.kept.get(name)
        if kept is None:
            continue
        count = 0
        for size in kept.sizes[:limit]:
            if size > budget:
                break
            budget -= size
            count += 1
        found[name] = KeyValues(steps=kept.steps[:count], values=kept.values[:count],
                                truncated=kept.truncated or count < len(kept.steps))
    return ValuesResponse(keys=found)


@router.get("/{project}/{run_id}/values", response_model=ValuesResponse, responses=errors(400, 404),
            summary="History keys' strings and structured values over steps")
def get_values(
    request: Request,
    project: str,
    run_id: str,
    keys: str = Query(..., description="Comma-separated history keys, e.g. generated,phase"),
    limit: int = Query(10_000, ge=1, le=100_000, description="Values per key at most (the first ones)"),
) -> ValuesResponse:
    """The strings and structured values logged under `keys` (numbers: the `history` route), at
    most `limit` per key and 16 MiB in all, in step order; `truncated`: the key has more."""
    names = {key for key in (part.strip() for part in keys.split(",")) if key}
    if not names or len(names) > MAX_KEYS:
        raise HTTPException(status_code=400, detail=f"keys must name 1 to {MAX_KEYS} history keys, e.g. keys=generated")
    return _FOLDS.get(*run_log(request, project, run_id), lambda texts: _answer(texts, names, limit))
