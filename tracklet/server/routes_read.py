"""The read half of the API: projects, runs with filters and sorts, run detail, histories."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from tracklet.errors import RunNotIndexed
from tracklet.server import run_creators
from tracklet.server.jsonable import json_value, series_json
from tracklet.server.logs import run_paths
from tracklet.server.body import bounded_router
from tracklet.store import LIST_FIELDS, RUN_FIELDS
from tracklet.server.models import (
    HistoryResponse,
    Project,
    ProjectsResponse,
    RunResponse,
    RunRow,
    RunsResponse,
    errors,
    json_response,
)

router = bounded_router(prefix="/api/v1", tags=["read"])


_ERRORS = errors(400, 404)


def _list_projects(store: Any) -> list[Project]:
    return [Project(name=name, runs=count) for name, count in store.projects()]


@router.get("/projects", response_model=ProjectsResponse, summary="Projects and their run counts")
def list_projects(request: Request) -> ProjectsResponse:
    """The projects the sender may read."""
    app = request.app.state.tracklet
    found = _list_projects(app.store)
    if app.authorizer is not None:
        readable = app.authorizer.accounts.readable_projects(request.state.principal)
        if readable is not None:
            found = [project for project in found if project.name in readable]
    return ProjectsResponse(projects=found)


@router.get("/projects/{project}/runs", response_model=RunsResponse, responses=_ERRORS, summary="A project's runs")
def list_runs(
    request: Request,
    project: str,
    filter: str | None = Query(None, description='Filter expression (docs/store.md), e.g. config.lr < 1e-3 and state = "finished"'),
    order_by: str | None = Query(None, description="Sort keys, comma-separated; '-' for descending"),
    limit: int | None = Query(None, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=2**62),
) -> Response:
    """Runs newest first unless `order_by` says otherwise; 400 for a bad filter or sort, 404 for
    an unknown project."""
    app = request.app.state.tracklet
    run_paths(app.root, project, "x")  # checks the project name (400)

    keys = app.authorizer is not None
    # A server without keys shows (and filters by) the user name each client recorded (the store's
    # `username` field: metadata.username); one with keys, the users they verified (run_creators,
    # the store's joined field `user`, read in the same query).
    fields = (*LIST_FIELDS, "user") if keys else (*LIST_FIELDS, "username")

    def query() -> list[dict[str, Any]]:
        if not app.store.project_exists(project):
            raise HTTPException(status_code=404, detail=f"no project {project!r} on this server")
        rows = app.store.runs(project, filter=filter, order_by=order_by, limit=limit, offset=offset, fields=fields)
        _add_users(app, rows)
        return rows

    rows = query()
    # Up to 10,000 rows: serialised as they are, not validated row by row (models.json_response).
    return json_response({"runs": [json_value(row) for row in rows]})


def _add_users(app: Any, rows: list[dict[str, Any]]) -> None:
    """Set each row's ``user`` (run_creators.run_user) from its verified creator (the row's joined
    ``user`` field, "" for none), or on a server without keys from the name the run recorded: a
    listing row's ``username`` field (taken out of the row), a whole row's ``metadata.username``."""
    keys = app.authorizer is not None
    for row in rows:
        verified = row.pop("user", None) or None
        claimed = row.pop("username", None)
        if claimed is None and isinstance(row.get("metadata"), dict):
            claimed = row["metadata"].get("username")
        row["user"] = run_creators.run_user(verified, claimed, keys=keys)


@router.get("/runs/{project}/{run_id}", response_model=RunResponse, response_model_exclude_unset=True,
            responses=_ERRORS, summary="One run")
def get_run(request: Request, project: str, run_id: str) -> RunResponse:
    """The run's store row: identity, state, config, summary, metric keys, `metadata` (how and
    where it ran: command, git commit, GPUs...) and `user` (who created it)."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    keys = app.authorizer is not None
    row = app.store.run(project, run_id, fields=(*RUN_FIELDS, "user") if keys else RUN_FIELDS)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    _add_users(app, [row])
    return RunResponse(run=RunRow.model_validate(json_value(row)))


@router.get("/runs/{project}/{run_id}/history", response_model=HistoryResponse, responses=_ERRORS,
            summary="Metric histories at a resolution")
def get_history(
    request: Request,
    project: str,
    run_id: str,
    keys: str = Query(..., description="Comma-separated metric keys, e.g. loss,val/acc"),
    x: str = Query("step", description="step, time, relative_time or a metric name"),
    start: float | None = Query(None, description="Window start, in the unit of x"),
    end: float | None = Query(None, description="Window end, in the unit of x"),
    buckets: int = Query(1000, ge=0, le=100_000, description="Buckets (0: every point)"),
) -> Response:
    """Min/max/last/count per bucket over equal step ranges, or the exact points when the window
    holds no more points than `buckets`: each value as logged, an int as a JSON integer (exact past
    2**53 too), a float as a JSON float (3.0 stays 3.0), a boolean as 1 or 0 named in `bools`."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    names = [key for key in (part.strip() for part in keys.split(",")) if key]
    if not names:
        raise HTTPException(status_code=400, detail="keys must name at least one metric, e.g. keys=loss,val/acc")
    try:
        histories = app.store.history(f"{project}/{run_id}", names, x=x, start=start, end=end, buckets=buckets or None)
    except RunNotIndexed:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server") from None
    # Millions of numbers at most: serialised as they are, not validated (models.json_response).
    return json_response({"series": [series_json(history) for history in histories]})
