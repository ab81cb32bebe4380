"""Logged media across runs, for the dashboard's media grid (docs/dashboard.md, Compare tab).

``GET /api/v1/projects/{project}/media/keys?runs=a,b`` lists the media keys the runs logged (per
run: kind, items, steps, first and last step); ``GET /api/v1/projects/{project}/media?runs=a,b&key=k&step=s``
answers, for each run, the page of its items at the latest step at or before ``s`` (and, unless
``steps=false``, the steps the key holds items at, for the slider). One request for every run of
the grid, each run read by index seeks: moving the slider over runs of thousands of logged
images reads one step's items per run, never a run's whole list (the per-run route lists it all).
Both are ``{project}`` GET routes: ``app.py``'s guard asks for ``read`` there, as for the per-run
media routes; the files themselves come from ``GET /api/v1/runs/{project}/{run_id}/media/{digest}``.
Items a retention policy retired (``tracklet media prune``) are left out, as there.
"""

from __future__ import annotations

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.body import bounded_router
from tracklet.server.logs import run_paths
from tracklet.server.models import INT64_MAX, JsonStep, errors
from tracklet.server.routes_compare import _names
from tracklet.server.routes_media import MediaEntry, _entry

router = bounded_router(prefix="/api/v1/projects", tags=["read"])

MAX_RUNS = 20  # columns of one grid
MAX_ITEMS = 64  # items of one step per run and request (a logged list is paged)
MAX_STEPS = 5000  # steps listed per run; more are thinned evenly (the first and last kept)
MAX_KEYS = 2000  # (run, key) rows of the key list


class MediaKeyRun(BaseModel):
    run_id: str
    kind: str  # its last item's (a key holds one kind, as logged)
    items: int
    steps: int  # distinct steps holding items
    first_step: JsonStep
    last_step: JsonStep


class MediaKeySummary(BaseModel):
    key: str
    kinds: list[str]
    runs: list[MediaKeyRun]  # only the runs that logged the key


class MediaKeysResponse(BaseModel):
    """The media keys of the runs, by key; `truncated`: more (run, key) pairs than were listed."""

    keys: list[MediaKeySummary]
    truncated: bool


class RunMediaAtStep(BaseModel):
    """One run's column of the grid: the items at `step`, the latest step at or before the one
    asked (null when the run has none there: see `first_step`)."""

    run_id: str
    step: JsonStep | None
    count: int  # items at `step` (a logged list: page with offset/limit)
    offset: int
    items: list[MediaEntry]
    first_step: JsonStep | None  # null: the run logged nothing under the key
    last_step: JsonStep | None
    steps: list[JsonStep] | None  # the key's steps (null with steps=false; thinned past 5,000)
    step_count: int | None  # how many steps there are (steps may be thinned)


class MediaGridResponse(BaseModel):
    key: str
    step: JsonStep | None  # the step asked (null: each run's last)
    runs: list[RunMediaAtStep]


_ERRORS = errors(400, 404)


def _run_ids(request: Request, project: str, runs: str) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The runs named (validated, at most MAX_RUNS) and their retention's first kept steps."""
    app = request.app.state.tracklet
    run_ids = _names(runs, "runs", MAX_RUNS, "3k2j9x,8fh2k1")
    retired = {}
    for run_id in run_ids:
        run_paths(app.root, project, run_id)  # 400 for a bad name
        try:
            cutoffs = app.copies.media_cutoffs(project, run_id)
        except ValueError:  # a damaged policy file: everything, as the per-run route answers
            cutoffs = {}
        if cutoffs:
            retired[run_id] = cutoffs
    return run_ids, retired


def _all_found(project: str, run_ids: list[str], found: dict[str, int]) -> None:
    missing = [run_id for run_id in run_ids if run_id not in found]
    if missing:
        raise HTTPException(status_code=404, detail=f"no run {project}/{missing[0]} on this server"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def _thinned(steps: list[int]) -> list[int]:
    if len(steps) <= MAX_STEPS:
        return steps
    last = len(steps) - 1
    return [steps[round(i * last / (MAX_STEPS - 1))] for i in range(MAX_STEPS)]


@router.get("/{project}/media/keys", response_model=MediaKeysResponse, responses=_ERRORS,
            summary="The media keys some runs logged")
def media_keys(
    request: Request,
    project: str,
    runs: str = Query(..., max_length=4000, description="Comma-separated run ids of this project (at most 20)"),
) -> MediaKeysResponse:
    """Each media key the runs logged, with its kinds and, per run that logged it, its kind, item
    and step counts and first and last step. 404 when a run is unknown."""
    app = request.app.state.tracklet
    run_ids, retired = _run_ids(request, project, runs)
    found, rows = app.store.media_keys_of_runs(project, run_ids, retired, MAX_KEYS + 1)
    _all_found(project, run_ids, found)
    run_of = {pk: run_id for run_id, pk in found.items()}
    order = {run_id: place for place, run_id in enumerate(run_ids)}
    keys: dict[str, MediaKeySummary] = {}
    for row in rows[:MAX_KEYS]:
        summary = keys.setdefault(row["key"], MediaKeySummary(key=row["key"], kinds=[], runs=[]))
        if row["kind"] not in summary.kinds:
            summary.kinds.append(row["kind"])
        summary.runs.append(MediaKeyRun(run_id=run_of[row["run_pk"]], kind=row["kind"], items=row["items"],
                                        steps=row["steps"], first_step=row["first_step"], last_step=row["last_step"]))
    for summary in keys.values():
        summary.runs.sort(key=lambda run: order[run.run_id])
    return MediaKeysResponse(keys=list(keys.values()), truncated=len(rows) > MAX_KEYS)


@router.get("/{project}/media", response_model=MediaGridResponse, responses=_ERRORS,
            summary="Several runs' media of one key at a step")
def media_grid(
    request: Request,
    project: str,
    runs: str = Query(..., max_length=4000, description="Comma-separated run ids of this project (at most 20)"),
    key: str = Query(..., min_length=1, max_length=1024, description="The media key"),
    step: int | None = Query(None, ge=0, le=INT64_MAX, description="Show each run's latest step at or before this (default: its last)"),
    offset: int = Query(0, ge=0, le=1_000_000, description="First item of a step's list to answer"),
    limit: int = Query(8, ge=1, le=MAX_ITEMS, description="Items per run (at most 64)"),
    steps: bool = Query(True, description="Also list each run's steps of the key (for a slider)"),
) -> MediaGridResponse:
    """For each run, in the order given: the items of `key` at the latest step at or before
    `step` (`offset`.. `offset + limit` of them, by place in the logged list; `count` says how
    many there are), with the digests `GET /api/v1/runs/{project}/{run_id}/media/{digest}` serves.
    A run without the key has no items, empty `steps` and a null `first_step`. 404 when a run is
    unknown."""
    app = request.app.state.tracklet
    run_ids, retired = _run_ids(request, project, runs)
    found, answers = app.store.media_grid(project, run_ids, key, step, retired, offset=offset, limit=limit,
                                          with_steps=steps)
    _all_found(project, run_ids, found)
    columns = []
    for answer in answers:
        listed = answer["steps"]
        columns.append(RunMediaAtStep(
            run_id=answer["run_id"], step=answer["step"], count=answer["count"], offset=offset,
            items=[_entry(row) for row in answer["items"]], first_step=answer["first_step"],
            last_step=answer["last_step"], steps=None if listed is None else _thinned(listed),
            step_count=None if listed is None else len(listed)))
    return MediaGridResponse(key=key, step=step, runs=columns)
