"""Read-only sweep routes: what the dashboard's sweep pages show (docs/sweeps.md, docs/dashboard.md).

``GET /api/v1/projects/{project}/sweeps`` lists the project's sweeps under the server's data root
(``tracklet ui``: the local data root, where local agents keep them); ``.../sweeps/{id}`` answers
one sweep in full (spec, trials, best-so-far, agents), each trial with its run's state from the
store; ``.../sweeps/{id}/importance`` the parameters' importance for the metric (PED-ANOVA),
computed once per number of complete trials and kept.

Everything is read through ``tracklet.sweeps.view``, which never takes a sweep's lock nor writes a
byte. The routes are plain ``def``s, so FastAPI runs them on its thread pool, off the event loop
(a first replay of a long journal or an importance computation takes a while). They are
``{project}`` routes: ``app.py``'s guard asks for ``read`` on the project, and a sweep is only
found through its own project.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from tracklet.core.settings import is_valid_name
from tracklet.errors import MissingDependency, SweepError, SweepNotFound
from tracklet.server.auth import role_at_least
from tracklet.server.logs import run_paths
from tracklet.server.models import SweepImportanceResponse, SweepResponse, SweepsResponse, errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/projects", tags=["sweeps"])

_ERRORS = errors(400, 404, 500)
_CHUNK = 500  # run ids per store query (bound parameters)


def _check(request: Request, project: str, sweep_id: str | None = None) -> Any:
    app = request.app.state.tracklet
    run_paths(app.root, project, "x")  # checks the project name (400)
    if sweep_id is not None and not is_valid_name(sweep_id):
        raise HTTPException(status_code=400, detail=f"{sweep_id!r} is not a sweep id")
    return app


def _readable(request: Request, app: Any, project: str) -> bool:
    """Whether the sender may see ``project``'s sweeps. The guard lets anyone "read" a project the
    store doesn't know (it has no runs to show), but sweeps live beside the store: a project
    without runs shows its sweeps only to those who hold read on it (server admins)."""
    if app.authorizer is None:
        return True
    _, role = app.authorizer.accounts.role(request.state.principal, project)
    return role_at_least(role, "read")


def _server_reader(app: Any, sweep_id: str) -> Any:
    """The reader of ``sweep_id`` if it is a server sweep (in the server's database), else None."""
    from tracklet.server.schema import migrate
    from tracklet.server.sweeps_db import reader, sweep_info

    migrate(app.store.engine)
    if sweep_info(app.store.engine, sweep_id) is None:
        return None
    return reader(app.store.engine, sweep_id, app.root)


def _unreadable(sweep_id: str, error: Exception) -> HTTPException:
    return HTTPException(status_code=500, detail=f"sweep {sweep_id} can't be read: {error}")


def _run_states(store: Any, project: str, run_ids: list[str]) -> dict[str, str]:
    states: dict[str, str] = {}
    for start in range(0, len(run_ids), _CHUNK):
        for row in store.runs(project, run_ids=run_ids[start:start + _CHUNK], fields=("state",)):
            states[row["run_id"]] = row["state"]
    return states


@router.get("/{project}/sweeps", response_model=SweepsResponse, response_model_exclude_unset=True,
            responses=errors(400),
            summary="A project's sweeps")
def list_sweeps(request: Request, project: str) -> SweepsResponse:
    """The newest 50 sweeps: method, metric, state, trials per state and the best trial of each; a
    sweep whose files can't be read is listed with `error` saying why. `total`: all the project's sweeps."""
    from tracklet.server.schema import migrate
    from tracklet.server.sweeps_db import project_sweep_infos, reader
    from tracklet.sweeps.view import project_sweeps

    app = _check(request, project)
    if not _readable(request, app, project):
        return SweepsResponse(sweeps=[], total=0)
    migrate(app.store.engine)
    entries, total = project_sweeps(app.root, project, extra=project_sweep_infos(app.store.engine, project),
                                    open_reader=lambda sweep_id: reader(app.store.engine, sweep_id, app.root))
    listed = [{**entry.summary, **({"error": entry.error} if entry.error else {})} for entry in entries]
    return SweepsResponse.model_validate({"sweeps": listed, "total": total})


@router.get("/{project}/sweeps/{sweep_id}", response_model=SweepResponse, response_model_exclude_unset=True,
            responses=_ERRORS, summary="One sweep: spec, trials, best-so-far, agents")
def get_sweep(request: Request, project: str, sweep_id: str) -> SweepResponse:
    """The sweep's normalized config and searched parameters, its newest 10,000 trials (state,
    parameters, value, run and its state, agent, start and end), the best value after each
    complete trial, and the agents in the order they started. 404 for a sweep not in `project`."""
    from tracklet.sweeps.view import read_sweep

    app = _check(request, project, sweep_id)
    try:
        if not _readable(request, app, project):
            raise SweepNotFound(sweep_id)
        sweep = read_sweep(app.root, project, sweep_id, found=_server_reader(app, sweep_id))
    except SweepNotFound:
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id!r} in project {project!r}") from None
    except (SweepError, MissingDependency, OSError, ValueError) as error:  # ValueError: a damaged state or lease file
        raise _unreadable(sweep_id, error) from None
    states = _run_states(app.store, project, [t["run_id"] for t in sweep["trials"] if t["run_id"]])
    for trial in sweep["trials"]:
        trial["run_state"] = states.get(trial["run_id"]) if trial["run_id"] else None
    return SweepResponse.model_validate({"sweep": sweep})


@router.get("/{project}/sweeps/{sweep_id}/importance", response_model=SweepImportanceResponse,
            responses=_ERRORS, summary="Parameter importance for the sweep's metric")
def get_importance(request: Request, project: str, sweep_id: str) -> SweepImportanceResponse:
    """Each searched parameter's share of the metric's variation among the best trials (Optuna's
    PED-ANOVA over the complete trials; normalized to sum to 1), most important first."""
    from tracklet.sweeps.view import param_importance

    app = _check(request, project, sweep_id)
    try:
        if not _readable(request, app, project):
            raise SweepNotFound(sweep_id)
        found = param_importance(app.root, project, sweep_id, found=_server_reader(app, sweep_id))
    except SweepNotFound:
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id!r} in project {project!r}") from None
    except (SweepError, MissingDependency, OSError, ValueError) as error:  # ValueError: a damaged state or lease file
        raise _unreadable(sweep_id, error) from None
    return SweepImportanceResponse.model_validate(found)
