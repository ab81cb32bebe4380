"""Reads across many runs of one project at once: what the dashboard's charts need.

``GET /api/v1/projects/{project}/history?runs=a,b&keys=loss`` answers every (run, key) series in
one request and one store query (``Store.history`` takes many runs), so overlaying N runs costs
one round trip rather than N. ``GET /api/v1/projects/{project}/keys`` lists the metric keys that
the given runs (or all the project's runs) logged, which is what the charts workspace makes
panels from. Both are ``{project}`` routes, so ``app.py``'s guard asks for ``read`` there.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from tracklet.errors import RunNotIndexed
from tracklet.server.logs import run_paths
from tracklet.server.models import CompareHistoryResponse, MetricKeysResponse, errors, json_response
from tracklet.store import SeriesHistory
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/projects", tags=["read"])

MAX_RUNS = 1000
MAX_KEYS = 200


_ERRORS = errors(400, 404)


def _names(text: str, what: str, most: int, example: str) -> list[str]:
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise HTTPException(status_code=400, detail=f"{what} must name at least one, e.g. {what}={example}")
    if len(names) > most:
        raise HTTPException(status_code=400, detail=f"at most {most} {what} per request; got {len(names)}")
    return names


def compact_series(history: SeriesHistory, by_step: bool) -> dict[str, Any]:
    return history.as_json(by_step)


@router.get("/{project}/history", response_model=CompareHistoryResponse, responses=_ERRORS,
            summary="Metric histories of many runs at once")
def compare_history(
    request: Request,
    project: str,
    runs: str = Query(..., max_length=140_000, description="Comma-separated run ids of this project"),
    keys: str = Query(..., max_length=100_000, description="Comma-separated metric keys, e.g. loss,val/acc"),
    x: str = Query("step", description="step, time, relative_time or a metric name"),
    start: float | None = Query(None, description="Window start, in the unit of x"),
    end: float | None = Query(None, description="Window end, in the unit of x"),
    buckets: int = Query(1000, ge=0, le=100_000, description="Buckets per series (0: every point)"),
) -> Response:
    """For each run and key, min/max/last per bucket over equal step ranges of the window, or the
    exact points when the window holds no more than `buckets`. Give every run the same `start`
    and `end` to get buckets over the same step ranges. 404 when a run is unknown."""
    app = request.app.state.tracklet
    run_ids = _names(runs, "runs", MAX_RUNS, "3k2j9x,8fh2k1")
    names = _names(keys, "keys", MAX_KEYS, "loss,val/acc")
    for run_id in run_ids:
        run_paths(app.root, project, run_id)  # 400 for a bad name
    paths = [f"{project}/{run_id}" for run_id in run_ids]

    def query() -> list[dict[str, Any]]:
        histories = app.store.history(paths, names, x=x, start=start, end=end, buckets=buckets or None)
        return [compact_series(history, x == "step") for history in histories if len(history)]

    try:
        # Millions of numbers at most: serialised as they are, not validated (models.json_response).
        return json_response({"series": query()})
    except RunNotIndexed as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


@router.get("/{project}/keys", response_model=MetricKeysResponse, responses=_ERRORS,
            summary="The numeric metric keys some runs logged")
def metric_keys(
    request: Request,
    project: str,
    runs: str | None = Query(None, max_length=140_000, description="Comma-separated run ids (default: every run)"),
) -> MetricKeysResponse:
    """The union of the metric keys with numeric points (what can be charted) that the runs logged."""
    app = request.app.state.tracklet
    run_paths(app.root, project, "x")
    run_ids = _names(runs, "runs", MAX_RUNS, "3k2j9x,8fh2k1") if runs is not None else None
    for run_id in run_ids or ():
        run_paths(app.root, project, run_id)

    return MetricKeysResponse(keys=app.store.metric_keys(project, run_ids))
