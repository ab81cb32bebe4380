"""Read API for a run page's live data: console output, alerts and system metrics, from the store.

``GET .../console`` pages a run's console lines by number, so a live run is tailed by asking for
what comes after the last line seen (``next_after``); ``GET .../alerts`` lists the run's alerts
(``after``: only newer ones); ``GET .../system`` answers system-metric
charts (mean and max per window, bucketed like metric histories); ``GET .../system/names`` lists
what the run recorded. Names are checked before anything else (400), unknown runs are 404.
"""

from __future__ import annotations

from typing import Literal

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from tracklet.errors import RunNotIndexed
from tracklet.server.jsonable import series_json
from tracklet.server.logs import run_paths
from tracklet.server.body import bounded_router
from tracklet.server.models import (
    Alert,
    AlertsResponse,
    ConsoleLine,
    ConsoleResponse,
    SystemNamesResponse,
    SystemResponse,
    errors,
    json_response,
)

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

_INT_LIMIT = 2**62  # line numbers beyond any run's, and within every database's integers


_ERRORS = errors(400, 404)


def _not_found(project: str, run_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")


@router.get("/{project}/{run_id}/console", response_model=ConsoleResponse, responses=_ERRORS,
            summary="Console output, paged by line number")
def get_console(
    request: Request,
    project: str,
    run_id: str,
    after: int = Query(0, ge=0, le=_INT_LIMIT, description="Only lines numbered above this (a page's next_after)"),
    before: int | None = Query(None, ge=1, le=_INT_LIMIT, description="Only lines numbered below this"),
    limit: int = Query(1000, ge=1, le=10_000, description="Lines at most"),
    q: str | None = Query(None, max_length=1000, description="Only lines containing this, ignoring case"),
    stream: Literal["stdout", "stderr"] | None = Query(None, description="Only this stream"),
    tail: bool = Query(False, description="The last `limit` lines instead of the first"),
) -> ConsoleResponse:
    """The run's console lines (stdout and stderr as captured, one line each, cut at 8,192
    characters) numbered from 1, oldest first."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    try:
        page = app.store.console(f"{project}/{run_id}", after=after, before=before, limit=limit, search=q or None,
                                 stream=stream, tail=tail)
    except RunNotIndexed:
        raise _not_found(project, run_id) from None
    return ConsoleResponse(
        lines=[ConsoleLine(seq=line.seq, time=line.time, stream=line.stream, text=line.text) for line in page.lines],
        next_after=page.next_after, last_seq=page.last_seq,
    )


@router.get("/{project}/{run_id}/alerts", response_model=AlertsResponse, responses=_ERRORS,
            summary="A run's alerts (run.alert)")
def get_alerts(
    request: Request,
    project: str,
    run_id: str,
    after: int = Query(0, ge=0, le=_INT_LIMIT, description="Only alerts numbered above this"),
    limit: int = Query(1000, ge=1, le=10_000, description="Alerts at most"),
) -> AlertsResponse:
    """The alerts the run recorded with `run.alert(title, text, level)`: time, level (INFO, WARN,
    ERROR), title and text (a title past 1,024 or a text past 8,192 characters is cut; the record
    log keeps them whole)."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    try:
        found = app.store.alerts(f"{project}/{run_id}", after=after, limit=limit)
    except RunNotIndexed:
        raise _not_found(project, run_id) from None
    return AlertsResponse(alerts=[Alert(seq=a.seq, time=a.time, level=a.level, title=a.title, text=a.text)
                                  for a in found])


@router.get("/{project}/{run_id}/system/names", response_model=SystemNamesResponse, responses=_ERRORS,
            summary="The system metrics a run recorded")
def get_system_names(request: Request, project: str, run_id: str) -> SystemNamesResponse:
    """Names such as `gpu.0.utilization_percent` or `cpu.percent`, sorted."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    try:
        names = app.store.system_names(f"{project}/{run_id}")
    except RunNotIndexed:
        raise _not_found(project, run_id) from None
    return SystemNamesResponse(names=names)


@router.get("/{project}/{run_id}/system", response_model=SystemResponse, responses=_ERRORS,
            summary="System metrics at a resolution")
def get_system(
    request: Request,
    project: str,
    run_id: str,
    names: str | None = Query(None, max_length=100_000,
                              description="Comma-separated, e.g. gpu.0.memory_used_bytes,cpu.percent (default: all)"),
    x: Literal["time", "relative_time"] = Query("time", description="time (epoch seconds) or relative_time"),
    start: float | None = Query(None, description="Window start, in the unit of x"),
    end: float | None = Query(None, description="Window end, in the unit of x"),
    buckets: int = Query(1000, ge=0, le=100_000, description="Buckets (0: every window)"),
    stats: str = Query("mean,max", description="mean and/or max, comma-separated"),
) -> Response:
    """Per name, the windows' means (`stat: mean`) and maxima (`stat: max`): min/max/last/count
    per bucket over equal time ranges, or the exact windows when there are no more than
    `buckets`. In the `max` series a bucket's `max` is the highest sample of its windows, so a
    one-sample spike shows at every zoom."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    wanted = [name for name in (part.strip() for part in (names or "").split(",")) if name] or None
    chosen = [stat for stat in (part.strip() for part in stats.split(",")) if stat]
    path = f"{project}/{run_id}"

    try:
        histories = app.store.system_history(path, wanted, x=x, start=start, end=end,
                                             buckets=buckets or None, stats=chosen)
        names_recorded = app.store.system_names(path)
    except RunNotIndexed:
        raise _not_found(project, run_id) from None
    # Many windows of many metrics: serialised as they are, not validated (models.json_response).
    return json_response({"names": names_recorded, "series": [series_json(h) for h in histories]})
