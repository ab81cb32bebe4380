"""Read API for the history values the store keeps no exact series of: strings, structured values
(a logged list that is not all numbers, kept as W&B keeps it: docs/wandb-compat.md), histograms
and ints outside int64 (the store's series hold those as the nearest float), each key's over
steps. ``tracklet.Api(base_url=...).run(path).history()`` (and W&B's ``run.history()`` against a
server) joins them to the numbers the store answers, so a run reads back from a server as it does
from its record log.

Read out of the run's record logs through ``log_fold.LogFolds`` (the log source's windows, the
limits every reader applies: a structured value is at most ``MAX_STRUCTURED_BYTES``), kept per log
with the offset reached, so a request reads only what each log gained since the last one. A shared
run's parts (docs/shared-runs.md) are read too, each writer's keys named as every reader names
them (a part's key another writer owns is ``<key>/l:<label>``: ``core/parts.Ownership``). What is
kept of a run, every writer's logs together, is bounded (``KEPT_BYTES``, and
``HISTOGRAM_KEPT_BYTES`` for histograms apart: the first values read; a key past it is
``truncated``), and so is each answer: at most ``limit`` values per key and ``MAX_BYTES`` in all.
Rows logged at one step are merged as every reader merges them (the last value wins; a number
logged after one of these at the same step takes its place, so that step is left to the store's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.log_fold import LogFolds, RunFold, run_fold, run_keys
from tracklet.server.models import errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

MAX_KEYS = 100
MAX_BYTES = 16 << 20  # per answer: values' characters or encoded bytes, plus ENTRY_BYTES each
KEPT_BYTES = 32 << 20  # per run kept, all its writers' logs (LogFolds keeps 8 runs): the same measure
HISTOGRAM_KEPT_BYTES = 16 << 20  # histograms per run kept, apart (a histogram's measure: about its JSON's length)
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
    """One key's (step, value, size, is a histogram) in step order as logged, rows at one step
    merged. A histogram is kept as its serialized message (what it costs in memory), made JSON
    when it is answered."""

    __slots__ = ("steps", "values", "sizes", "histograms", "truncated")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[Any] = []
        self.sizes: list[int] = []
        self.histograms: list[bool] = []
        self.truncated = False


_NUMBERS = ("floats", "ints", "bools")  # the fields of a Column the store keeps exact series of
_TEXT, _VALUE, _HISTOGRAM, _BIG_INT, _NUMBER = range(5)  # kinds of item; a number ends a kept value at its step


def _histogram_size(message: Any) -> int:
    """What a histogram counts against the budgets: about its JSON's length (an edge as a float's
    text, a count as an int's), more than its serialized message held in memory."""
    return 24 * len(message.edges) + 12 * len(message.counts)


def _budgets() -> dict[bool, int]:
    """What a run's folds may still keep, by "is a histogram": shared by its writers' logs."""
    return {False: KEPT_BYTES, True: HISTOGRAM_KEPT_BYTES}


class _Texts:
    """The fold of a log: key names by id (``defined``: every name), and every key's strings,
    structured values and ints outside int64 (at most ``KEPT_BYTES`` of them per run) and
    histograms (``HISTOGRAM_KEPT_BYTES``: a run's many histograms never crowd its strings out),
    counted against ``budgets``, which the run's every log shares."""

    def __init__(self, budgets: dict[bool, int] | None = None) -> None:
        self.ids: dict[int, str] = {}
        self.defined: set[str] = set()
        self.kept: dict[str, _Kept] = {}
        self.budgets = budgets if budgets is not None else _budgets()

    def apply(self, record: Any) -> None:
        if record.WhichOneof("kind") != "history":
            return
        batch = record.history
        for definition in batch.new_keys:
            self.ids[definition.id] = definition.name
            self.defined.add(definition.name)
        steps = batch.steps
        pairs: dict[str, list[tuple[int, Any, int, int]]] = {}  # name -> (row, item, size, kind)
        numbers: list[tuple[str, Any]] = []
        for column in batch.columns:
            name = self.ids.get(column.key)
            if name is None:
                continue
            sizes: Iterable[int]
            if len(column.strings):
                data, kind, sizes = column.strings, _TEXT, map(len, column.strings)
            elif len(column.values):
                data, kind, sizes = column.values, _VALUE, (value.ByteSize() for value in column.values)
            elif len(column.histograms):
                data, kind, sizes = column.histograms, _HISTOGRAM, map(_histogram_size, column.histograms)
            elif len(column.big_ints):
                data, kind, sizes = column.big_ints, _BIG_INT, map(len, column.big_ints)
            else:
                numbers.append((name, column))
                continue
            rows = list(column.rows) if len(column.rows) else range(len(data))
            pairs.setdefault(name, []).extend(
                (row, item, size + ENTRY_BYTES, kind) for row, item, size in zip(rows, data, sizes))
        for name, column in numbers:  # only a key holding some of these values: its numbers' steps
            if name in pairs or name in self.kept:
                field = next((field for field in _NUMBERS if len(getattr(column, field))), None)
                count = len(getattr(column, field)) if field else 0
                rows = list(column.rows) if len(column.rows) else range(count)
                pairs.setdefault(name, []).extend((row, None, 0, _NUMBER) for row in rows)
        for name, items in pairs.items():
            kept = self.kept.get(name)
            if kept is None:
                kept = self.kept[name] = _Kept()
            for row, item, size, kind in sorted(items, key=lambda item: item[0]):
                self._keep(kept, int(steps[row]), item, size, kind)

    def _keep(self, kept: _Kept, step: int, item: Any, size: int, kind: int) -> None:
        """One item of a key, in log order; converted only when it is kept."""
        from tracklet.core.jsonsafe import json_safe
        from tracklet.core.values import from_value_message, parse_big_int

        merged = bool(kept.steps) and kept.steps[-1] == step  # rows at one step: the last value wins
        if merged:  # what the step's kept value frees, whatever replaces it
            self.budgets[kept.histograms[-1]] += kept.sizes[-1]
        histogram = kind == _HISTOGRAM
        value: Any = None
        if kind != _NUMBER and not (kept.truncated and not merged) and size <= self.budgets[histogram]:
            if kind == _TEXT:
                value = item
            elif kind == _VALUE:
                value = json_safe(from_value_message(item))
            elif kind == _HISTOGRAM:
                value = item.SerializeToString()
            else:
                value = parse_big_int(item)  # None for an entry that is no int (a damaged log): left out
        elif kind != _NUMBER:
            kept.truncated = True
        if value is None:  # a number, or nothing kept: a merged step's value goes (the store's, or none)
            if merged:
                kept.steps.pop()
                kept.values.pop()
                kept.sizes.pop()
                kept.histograms.pop()
            return
        self.budgets[histogram] -= size
        if merged:
            kept.values[-1], kept.sizes[-1], kept.histograms[-1] = value, size, histogram
        else:
            kept.steps.append(step)
            kept.values.append(value)
            kept.sizes.append(size)
            kept.histograms.append(histogram)


_FOLDS: LogFolds[_Texts] = LogFolds(_Texts, _Texts.apply, size=8, shared=_budgets)  # runs kept


def _merged(run: RunFold[_Texts], name: str) -> _Kept | None:
    """Key ``name`` of the run as its readers name it: its writer's kept values (a key several
    writers' keys are named, which only a writer's key literally named ``<key>/l:<label>`` makes:
    theirs by step, the one read last winning a step, as the reader's rows merge)."""
    sources = [kept for label, key in run_keys(run, lambda texts: texts.defined).get(name, ())
               for kept in [run.entries[label].state.kept.get(key)] if kept is not None and kept.steps]
    if len(sources) <= 1:
        return sources[0] if sources else None
    merged = _Kept()
    by_step: dict[int, tuple[Any, int, bool]] = {}
    for kept in sources:
        by_step.update(zip(kept.steps, zip(kept.values, kept.sizes, kept.histograms)))
        merged.truncated = merged.truncated or kept.truncated
    for step in sorted(by_step):
        value, size, histogram = by_step[step]
        merged.steps.append(step)
        merged.values.append(value)
        merged.sizes.append(size)
        merged.histograms.append(histogram)
    return merged


def _answer(run: RunFold[_Texts], names: set[str], limit: int) -> ValuesResponse:
    """The asked keys' first values, at most ``limit`` each and ``MAX_BYTES`` in all (copies: the
    folds go on as the logs grow)."""
    from tracklet.core.jsonsafe import json_safe
    from tracklet.core.values import histogram_from_message
    from tracklet.proto import records_pb2 as pb

    budget = MAX_BYTES
    found: dict[str, KeyValues] = {}
    for name in sorted(names):
        kept = _merged(run, name)
        if kept is None or not kept.steps:
            continue
        count = 0
        for size in kept.sizes[:limit]:
            if size > budget:
                break
            budget -= size
            count += 1
        positions = [at for at in range(count) if kept.histograms[at]]
        values = kept.values[:count]
        for at in positions:
            values[at] = json_safe(histogram_from_message(pb.Histogram.FromString(values[at])))
        found[name] = KeyValues(steps=kept.steps[:count], values=values,
                                truncated=kept.truncated or count < len(kept.steps), histograms=positions)
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
    return run_fold(_FOLDS, request, project, run_id, lambda run: _answer(run, names, limit))
