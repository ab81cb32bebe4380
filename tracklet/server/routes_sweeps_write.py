"""Server-mode sweep routes: create a sweep, and the agents' protocol (docs/sweeps.md, "Server mode").

An agent on any machine talks only HTTP (``tracklet.sweeps.remote.RemoteController``):

- ``POST /api/v1/projects/{project}/sweeps``: create a sweep (write; a new project is created for
  its sender, as a first upload does); ``GET /api/v1/sweeps/{id}``: its project and config (read);
  ``GET /api/v1/sweeps[?project=]``: the server sweeps of the projects the sender may read.
- ``POST .../sweeps/{id}/next``: a lease on the next trial, or ``wait`` / ``finished``. A routine
  call (``audit.ROUTINE``: agents poll it while a sweep is paused or full): audited only when it
  grants a lease, fails lapsed leases (its event's detail lists them: ``lapsed``), or is refused.
- ``POST .../sweeps/{id}/heartbeat``: renew the lease; the answer says ``stop: lost`` (it lapsed)
  or ``stop: pruned``: on each beat of a sweep that prunes, the server reads the trial's run's new
  metric points from its store (what ingest indexed from the run's upload), reports them to the
  trial at the run's steps and asks the pruner. A routine call (``audit.ROUTINE``): audited only
  when the lease is found lost or the pruner stops the trial (or the call is refused).
- ``POST .../sweeps/{id}/tell``: how the trial ended (its objective values or an error); a
  pruned trial is told ``PRUNED`` whatever its process's exit.
- ``POST .../sweeps/{id}/release``: give a trial back (the agent was interrupted).
- ``POST .../sweeps/{id}/control``: pause, resume, stop, or a new run cap (write).

The controller runs here (``sweeps_db.ServerController``): each call is one transaction on the
sweep's row in the server's database. Every route passes ``app.py``'s guard (``write`` on the
project for POSTs); a sweep is found only through its own project (404 otherwise).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException, Request

from tracklet.core.settings import is_valid_name
from tracklet.errors import MissingDependency, RunNotIndexed, SweepError, SweepNotFound
from tracklet.server import audit
from tracklet.server.logs import run_paths
from tracklet.server.body import bounded_router
from tracklet.server.auth import requires
from tracklet.server.models import (
    SweepControlRequest,
    SweepControlResponse,
    SweepCreated,
    SweepCreateRequest,
    SweepHeartbeatResponse,
    SweepInfoResponse,
    SweepLeaseModel,
    SweepNextRequest,
    SweepNextResponse,
    SweepReleaseRequest,
    SweepsResponse,
    SweepTellRequest,
    SweepTrialRef,
    SweepTrialResult,
    errors,
)

router = bounded_router(prefix="/api/v1", tags=["sweeps"])

_ERRORS = errors(400, 404)
MAX_PRUNE_POINTS = 10_000  # points one heartbeat reports to the pruner at most (the rest: next beat)


def _engine(request: Request) -> Any:
    from tracklet.server.schema import migrate

    engine = request.app.state.tracklet.store.engine
    migrate(engine)
    return engine


def _controller(request: Request, project: str, sweep_id: str) -> Any:
    from tracklet.server.sweeps_db import controller

    app = request.app.state.tracklet
    run_paths(app.root, project, "x")  # checks the project name (400)
    if not is_valid_name(sweep_id):
        raise HTTPException(status_code=400, detail=f"{sweep_id!r} is not a sweep id")
    try:
        found = controller(_engine(request), sweep_id, app.root)
    except SweepNotFound:
        found = None
    except MissingDependency as error:
        raise HTTPException(status_code=500, detail=str(error)) from None
    if found is None or found.project != project:
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id!r} in project {project!r} on this server")
    return found


def _lease(ctl: Any, body: SweepTrialRef) -> Any:
    from tracklet.sweeps.controller import Lease, trial_run_id

    return Lease(ctl.sweep_id, body.trial, trial_run_id(ctl.sweep_id, body.trial), ctl.project, {}, body.agent,
                 body.ttl)


@router.post("/projects/{project}/sweeps", response_model=SweepCreated, responses=errors(400, 409, 500),
             summary="Create a sweep on the server")
@requires("write", creates=True)
def create_sweep(request: Request, project: str, body: SweepCreateRequest) -> SweepCreated:
    """Validate the W&B sweep config and create its study in the server's database; agents then
    ask `.../sweeps/{id}/next`. 400 names every problem in the config."""
    from tracklet.server.sweeps_db import create_server_sweep, sweep_info
    from tracklet.sweeps.spec import parse

    app = request.app.state.tracklet
    run_paths(app.root, project, "x")
    principal = getattr(request.state, "principal", None)
    try:
        warm = parse(body.config).warm_start
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    source = (warm or {}).get("project")
    if source and source != project and app.authorizer is not None:
        app.authorizer.check(request, source, "read")  # a warm start reads that project's runs
        if not app.store.project_exists(source):
            raise HTTPException(status_code=404, detail=f"warm_start.project: no project {source!r} on this server")
    try:
        sweep_id = create_server_sweep(_engine(request), app.root, body.config, project=project,
                                       sweep_id=body.sweep_id, created_by=getattr(principal, "name", None),
                                       store=app.store)
    except MissingDependency as error:
        raise HTTPException(status_code=500, detail=str(error)) from None
    except ValueError as error:  # SweepSpecError is one; an id taken
        status = 409 if "exists already" in str(error) else 400
        raise HTTPException(status_code=status, detail=str(error)) from None
    info = sweep_info(_engine(request), sweep_id) or {}
    spec = parse(info["config"])
    return SweepCreated(id=sweep_id, project=project, method=spec.method,
                        grid_size=spec.grid_size() if spec.method == "grid" else None,
                        warm_start=info.get("warm_start"))


@router.get("/sweeps", response_model=SweepsResponse, response_model_exclude_unset=True, responses=errors(400),
            summary="The server's sweeps the sender may read")
def list_server_sweeps(request: Request, project: str | None = None) -> SweepsResponse:
    """The newest 50 server sweeps of the projects the sender may read (only `project`'s, if
    given), each as the project listing summarises it (`tracklet sweep ls --url`); `total`: how many
    there are. A sweep that can't be read is listed with `error` saying why."""
    from tracklet.server.auth import role_at_least
    from tracklet.server.sweeps_db import readable_sweep_infos, reader
    from tracklet.sweeps.view import MAX_LISTED, summarise

    app = request.app.state.tracklet
    if project is not None:
        run_paths(app.root, project, "x")  # checks the project name (400)

    def may_read(name: str) -> bool:
        if app.authorizer is None:
            return True
        _, role = app.authorizer.accounts.role(request.state.principal, name)
        return role_at_least(role, "read")

    engine = _engine(request)
    infos, total = readable_sweep_infos(engine, may_read, project=project, limit=MAX_LISTED)
    listed = summarise(infos, lambda info: reader(engine, info["id"], app.root))
    return SweepsResponse.model_validate({"sweeps": [{**entry.summary, **({"error": entry.error} if entry.error else {})}
                                                     for entry in listed], "total": total})


@router.get("/sweeps/{sweep_id}", response_model=SweepInfoResponse, responses=_ERRORS,
            summary="A server sweep's project and config (what an agent starts from)")
def get_sweep_info(request: Request, sweep_id: str) -> SweepInfoResponse:
    """404 unless the sender may read the sweep's project."""
    from tracklet.server.sweeps_db import controller

    app = request.app.state.tracklet
    if not is_valid_name(sweep_id):
        raise HTTPException(status_code=400, detail=f"{sweep_id!r} is not a sweep id")
    try:
        ctl = controller(_engine(request), sweep_id, app.root)
    except SweepNotFound:
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id!r} on this server") from None
    if app.authorizer is not None:
        from tracklet.server.auth import role_at_least

        _, role = app.authorizer.accounts.role(request.state.principal, ctl.project)
        if not role_at_least(role, "read"):
            raise HTTPException(status_code=404, detail=f"no sweep {sweep_id!r} on this server")
    return SweepInfoResponse(id=ctl.sweep_id, project=ctl.project, config=dict(ctl.spec.config),
                             state=ctl._state().get("state", "running"))


@router.post("/projects/{project}/sweeps/{sweep_id}/next", response_model=SweepNextResponse, responses=_ERRORS,
             summary="Lease the sweep's next trial")
def next_trial(request: Request, project: str, sweep_id: str, body: SweepNextRequest) -> SweepNextResponse:
    """A lease on a new trial (or, with `resume_trial`, that trial while it still runs), or why
    there is none now (`wait`) or ever (`finished`). Repeating a request with the same
    `request` id returns the same lease."""
    from tracklet.sweeps.controller import Finished, Lease

    ctl = _controller(request, project, sweep_id)
    try:
        outcome = ctl.next_trial(body.agent, ttl=body.ttl, resume_trial=body.resume_trial, request=body.request)
    except SweepError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    if isinstance(outcome, Lease):
        return SweepNextResponse(kind="lease", reason=None, lease=SweepLeaseModel(
            trial=outcome.trial, run_id=outcome.run_id, project=outcome.project, config=outcome.config,
            agent=outcome.agent, ttl=outcome.ttl, resumed=outcome.resumed))
    return SweepNextResponse(kind="finished" if isinstance(outcome, Finished) else "wait", reason=outcome.reason,
                             lease=None)


def _new_points(store: Any, project: str, run_id: str, metric: str, after: int) -> list[tuple[int, float]]:
    """The run's ``metric`` points past step ``after``, as the server's store indexed them."""
    points: list[tuple[int, float]] = []
    try:
        for steps, values in store.history_pages(f"{project}/{run_id}", metric, start=after + 1):
            points.extend((int(s), float(v)) for s, v in zip(steps.tolist(), values.tolist()) if math.isfinite(v))
            if len(points) >= MAX_PRUNE_POINTS:
                break
    except (ValueError, RunNotIndexed):  # the run (or the metric) is not in the store yet
        return []
    return points[:MAX_PRUNE_POINTS]


@router.post("/projects/{project}/sweeps/{sweep_id}/heartbeat", response_model=SweepHeartbeatResponse,
             responses=_ERRORS, summary="Renew a trial's lease; learn whether to stop it")
def heartbeat(request: Request, project: str, sweep_id: str, body: SweepTrialRef) -> SweepHeartbeatResponse:
    """`alive: false, stop: lost` once the lease lapsed (the trial was failed; stop it).
    `stop: pruned`: the pruner stopped the trial from its run's metric as the server ingested it."""
    ctl = _controller(request, project, sweep_id)
    lease = _lease(ctl, body)
    if not ctl.heartbeat(lease):
        audit.changed("lease lost", trial=body.trial)  # lapsed, or not this agent's: the agent stops the trial
        return SweepHeartbeatResponse(alive=False, stop="lost")
    metric = ctl.spec.metric
    if not ctl.prunes or metric is None:
        return SweepHeartbeatResponse(alive=True, stop=None)
    record = ctl.lease_record(body.trial) or {}
    if record.get("pruned"):
        return SweepHeartbeatResponse(alive=True, stop="pruned")
    points = _new_points(request.app.state.tracklet.store, project, lease.run_id, metric.name,
                         int(record.get("reported", -1)))
    if not points:
        return SweepHeartbeatResponse(alive=True, stop=None)
    pruned_at = ctl.report(lease, points)
    if pruned_at is None:
        ctl.mark_reported(lease, points[-1][0])
    return SweepHeartbeatResponse(alive=True, stop=None if pruned_at is None else "pruned")


@router.post("/projects/{project}/sweeps/{sweep_id}/tell", response_model=SweepTrialResult, responses=_ERRORS,
             summary="Report how a trial ended")
def tell(request: Request, project: str, sweep_id: str, body: SweepTellRequest) -> SweepTrialResult:
    """The trial's objective values (one per objective), or `error` (failed). A trial the pruner
    stopped is recorded pruned whatever else is told, unless `stopped: false` (the agent's stop came
    after the trial's run had ended on its own); a lapsed lease's result is discarded
    (`state: lapsed`). Telling again what was told returns the same result."""
    ctl = _controller(request, project, sweep_id)
    lease = _lease(ctl, body)
    metric = ctl.spec.metric
    record = ctl.lease_record(body.trial) or {}
    if ctl.prunes and metric is not None and body.error is None and record.get("agent") == body.agent:
        # The rest of the run's curve, so later trials are compared with all of it at every rung.
        points = _new_points(request.app.state.tracklet.store, project, lease.run_id, metric.name,
                             int(record.get("reported", -1)))
        if points:
            ctl.report(lease, points, ended=True)
    result = ctl.tell(lease, body.values, body.error, stopped=body.stopped)
    return SweepTrialResult(trial=result.trial, state=result.state,
                            value=result.value if result.value is None or math.isfinite(result.value) else None,
                            values=[v for v in result.values if math.isfinite(v)], message=result.message)


@router.post("/projects/{project}/sweeps/{sweep_id}/release", response_model=SweepControlResponse,
             responses=_ERRORS, summary="Give a trial back unfinished")
def release(request: Request, project: str, sweep_id: str, body: SweepReleaseRequest) -> SweepControlResponse:
    """The trial is failed at once and, in a grid sweep, its point is run again."""
    ctl = _controller(request, project, sweep_id)
    ctl.release(_lease(ctl, body), body.reason)
    return SweepControlResponse(state=ctl._state())


@router.post("/projects/{project}/sweeps/{sweep_id}/control", response_model=SweepControlResponse,
             responses=_ERRORS, summary="Pause, resume or stop a sweep; set its run cap")
def control(request: Request, project: str, sweep_id: str, body: SweepControlRequest) -> SweepControlResponse:
    ctl = _controller(request, project, sweep_id)
    try:
        if body.run_cap is not None:
            ctl.extend(body.run_cap)
        if body.state is not None:
            ctl.set_state(body.state)
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    return SweepControlResponse(state=ctl._state())
