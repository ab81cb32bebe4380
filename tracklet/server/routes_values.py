"""Read API for the history values the store keeps no series of: strings and structured values
(a logged list that is not all numbers, kept as W&B keeps it: docs/wandb-compat.md), each key's
over steps. ``tracklet.Api(base_url=...).run(path).history()`` (and W&B's ``run.history()``
against a server) joins them to the numbers the store answers.

Read from the run's record log at each request, through ``RecordDecoder`` (the limits every
reader applies: a structured value is at most ``MAX_STRUCTURED_BYTES``), converting only the
asked keys' string and structured columns. Each answer is bounded: at most ``limit`` values per
key and ``MAX_BYTES`` of values in all, the first ones in step order; ``truncated`` says a key
had more. Rows logged at one step are merged as every reader merges them (the last value wins).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.logs import run_paths
from tracklet.server.models import errors

router = APIRouter(prefix="/api/v1/runs", tags=["read"])

MAX_KEYS = 100
MAX_BYTES = 16 << 20  # of values (strings' characters, structured values' encoded bytes) per answer


class KeyValues(BaseModel):
    """One key's strings and structured values: `values[i]` was logged at `steps[i]`. Structured
    values are JSON arrays (NaN and ±inf in them as the strings "NaN", "Infinity", "-Infinity")."""

    steps: list[int]
    values: list[Any]
    truncated: bool


class ValuesResponse(BaseModel):
    """The asked keys that hold strings or structured values (a key with none is left out)."""

    keys: dict[str, KeyValues]


class _Collect:
    """The fold: key names by id, and the asked keys' (step, value) pairs in log order."""

    def __init__(self, names: set[str], limit: int) -> None:
        self.wanted = names
        self.limit = limit
        self.ids: dict[int, str] = {}
        self.found: dict[str, KeyValues] = {}
        self.budget = MAX_BYTES

    def apply(self, record: Any) -> None:
        from tracklet.core.jsonsafe import json_safe
        from tracklet.core.values import from_value_message

        if record.WhichOneof("kind") != "history":
            return
        batch = record.history
        for definition in batch.new_keys:
            if definition.name in self.wanted:
                self.ids[definition.id] = definition.name
        steps = batch.steps
        pairs: dict[str, list[tuple[int, Any, int]]] = {}
        for column in batch.columns:
            name = self.ids.get(column.key)
            if name is None or not (len(column.strings) or len(column.values)):
                continue
            rows = list(column.rows) if len(column.rows) else range(len(column.strings) or len(column.values))
            if len(column.strings):
                items = [(row, text, len(text)) for row, text in zip(rows, column.strings)]
            else:
                items = [(row, value, value.ByteSize()) for row, value in zip(rows, column.values)]
            pairs.setdefault(name, []).extend(items)
        for name, items in pairs.items():
            found = self.found.get(name)
            if found is None:
                found = self.found[name] = KeyValues(steps=[], values=[], truncated=False)
            for row, value, size in sorted(items, key=lambda item: item[0]):
                step = int(steps[row])
                if found.truncated or (len(found.steps) >= self.limit and found.steps[-1] != step) or size > self.budget:
                    found.truncated = True
                    continue
                self.budget -= size
                plain = value if isinstance(value, str) else json_safe(from_value_message(value))
                if found.steps and found.steps[-1] == step:  # rows at one step merge: the last value wins
                    found.values[-1] = plain
                else:
                    found.steps.append(step)
                    found.values.append(plain)


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
    most `limit` per key and 16 MiB in all, in step order."""
    from tracklet.core.decode import RecordDecoder
    from tracklet.core.recordlog import read_log_from

    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    names = {key for key in (part.strip() for part in keys.split(",")) if key}
    if not names or len(names) > MAX_KEYS:
        raise HTTPException(status_code=400, detail=f"keys must name 1 to {MAX_KEYS} history keys, e.g. keys=generated")
    if app.store.run(project, run_id, fields=("run_id",)) is None or not paths.log_file.is_file():
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    collect = _Collect(names, limit)
    RecordDecoder().fold(read_log_from(paths.log_file, 0, resync=True).payloads, collect.apply)
    return ValuesResponse(keys=collect.found)
