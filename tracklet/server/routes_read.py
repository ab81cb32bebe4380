"""The read half of the API: projects, runs with filters and sorts, run detail, histories."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from tracklet.server.jsonable import json_value, series_json
from tracklet.server.logs import run_paths
from tracklet.store.query import RunNotIndexed
from tracklet.store.schema import projects, runs
from tracklet.store.store import RUN_FIELDS

router = APIRouter(prefix="/api/v1", tags=["read"])


class ErrorResponse(BaseModel):
    detail: str


class Project(BaseModel):
    name: str
    runs: int


class ProjectsResponse(BaseModel):
    projects: list[Project]


class RunsResponse(BaseModel):
    """Store rows: run_id, path, name, state, tags, group_name, job_type, notes, host, created_at,
    updated_at, heartbeat_at, exit_code, config, summary, last_step."""

    runs: list[dict[str, Any]]


class RunResponse(BaseModel):
    """One run's row, with its config, summary, metric keys and metadata (command, cwd, pid, python,
    platform, git, cpu, memory, gpu: what the run page's overview shows)."""

    run: dict[str, Any]


class HistoryResponse(BaseModel):
    """One entry per (run, key): exact points (`x`, `steps`, `values`) or buckets (`x`, `steps`,
    `first_steps`, `min`, `max`, `last`, `count`, `nonfinite`); NaN and ±inf are null."""

    series: list[dict[str, Any]]


_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}


def _project_known(store: Any, project: str) -> bool:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(projects.c.id).where(projects.c.name == project)).first() is not None


def _list_projects(store: Any) -> list[Project]:
    stmt = (
        sa.select(projects.c.name, sa.func.count(runs.c.id))
        .select_from(projects.outerjoin(runs, sa.and_(runs.c.project_id == projects.c.id, runs.c.deleted.is_(False))))
        .group_by(projects.c.name).order_by(projects.c.name)
    )
    with store.engine.connect() as connection:
        return [Project(name=name, runs=count) for name, count in connection.execute(stmt)]


@router.get("/projects", response_model=ProjectsResponse, summary="Projects and their run counts")
async def list_projects(request: Request) -> ProjectsResponse:
    """The projects the sender may read."""
    app = request.app.state.tracklet
    found = await run_in_threadpool(_list_projects, app.store)
    if app.authorizer is not None:
        readable = await run_in_threadpool(app.authorizer.accounts.readable_projects, request.state.principal)
        if readable is not None:
            found = [project for project in found if project.name in readable]
    return ProjectsResponse(projects=found)


@router.get("/projects/{project}/runs", response_model=RunsResponse, responses=_ERRORS, summary="A project's runs")
async def list_runs(
    request: Request,
    project: str,
    filter: str | None = Query(None, description='Filter expression (docs/store.md), e.g. config.lr < 1e-3 and state = "finished"'),
    order_by: str | None = Query(None, description="Sort keys, comma-separated; '-' for descending"),
    limit: int | None = Query(None, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=2**62),
) -> RunsResponse:
    """Runs newest first unless `order_by` says otherwise; 400 for a bad filter or sort, 404 for
    an unknown project."""
    app = request.app.state.tracklet
    run_paths(app.root, project, "x")  # checks the project name (400)

    def query() -> list[dict[str, Any]]:
        if not _project_known(app.store, project):
            raise HTTPException(status_code=404, detail=f"no project {project!r} on this server")
        return app.store.runs(project, filter=filter, order_by=order_by, limit=limit, offset=offset)

    rows = await run_in_threadpool(query)
    return RunsResponse(runs=[json_value(row) for row in rows])


@router.get("/runs/{project}/{run_id}", response_model=RunResponse, responses=_ERRORS, summary="One run")
async def get_run(request: Request, project: str, run_id: str) -> RunResponse:
    """The run's store row: identity, state, config, summary, metric keys and `metadata` (how and
    where it ran: command, git commit, GPUs...)."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)  # names are checked, so quoting below is safe
    rows = await run_in_threadpool(
        app.store.runs, project, filter=f'run_id = "{run_id}"', fields=RUN_FIELDS, limit=1
    )
    if not rows:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    return RunResponse(run=json_value(rows[0]))


@router.get("/runs/{project}/{run_id}/history", response_model=HistoryResponse, responses=_ERRORS,
            summary="Metric histories at a resolution")
async def get_history(
    request: Request,
    project: str,
    run_id: str,
    keys: str = Query(..., description="Comma-separated metric keys, e.g. loss,val/acc"),
    x: str = Query("step", description="step, time, relative_time or a metric name"),
    start: float | None = Query(None, description="Window start, in the unit of x"),
    end: float | None = Query(None, description="Window end, in the unit of x"),
    buckets: int = Query(1000, ge=0, le=100_000, description="Buckets (0: every point)"),
) -> HistoryResponse:
    """Min/max/last/count per bucket over equal step ranges, or the exact points when the window
    holds no more points than `buckets`."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    names = [key for key in (part.strip() for part in keys.split(",")) if key]
    if not names:
        raise HTTPException(status_code=400, detail="keys must name at least one metric, e.g. keys=loss,val/acc")
    try:
        histories = await run_in_threadpool(
            app.store.history, f"{project}/{run_id}", names, x=x, start=start, end=end, buckets=buckets or None
        )
    except RunNotIndexed:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server") from None
    return HistoryResponse(series=[series_json(history) for history in histories])
