"""``wandb.sweep``, ``wandb.agent`` and ``wandb.controller`` over ``tracklet.sweeps``. Local mode
(the default): the sweep lives under tracklet's data root, no server, nothing leaves the machine.
Server mode, with ``TRACKLET_MODE=online`` and ``TRACKLET_BASE_URL`` (as online runs): the sweep
lives on that server and ``wandb.agent`` talks HTTP to it (``tracklet.sweeps.remote``).

tracklet's own errors become W&B's: an invalid config or an unknown sweep id is a
``wandb.errors.UsageError``; an agent stopped by failures in a row raises ``wandb.Error``, so a
script whose every trial failed does not exit 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracklet.compat.wandb._messages import not_supported, termlog
from tracklet.compat.wandb.errors import Error, UsageError
from tracklet.errors import SweepError, SweepNotFound, SweepSpecError


def _root() -> Path:
    from tracklet.core.settings import default_data_root

    return Path(os.environ.get("TRACKLET_DIR") or default_data_root()).expanduser()


def _project(project: str | None) -> str | None:
    from tracklet.compat.wandb._init import _safe_name

    return _safe_name("project", project or os.environ.get("WANDB_PROJECT") or None)


def create(sweep: Any, *, entity: str | None = None, project: str | None = None, prior_runs: Any = None) -> str:
    config = sweep() if callable(sweep) else sweep
    if prior_runs:
        not_supported("wandb.sweep(prior_runs=...)", "the runs are not added to the sweep")
    sweep_id, made_in = create_sweep(config, project=project)
    termlog(f"Created sweep with ID: {sweep_id}")
    termlog(f"Run sweep agents with: {agent_command(f'{made_in}/{sweep_id}')}  (or wandb.agent({sweep_id!r}, "
            "function=...))")
    return sweep_id


def agent_command(reference: str) -> str:
    """The command line that runs agents for sweep ``reference`` with ``import wandb`` being
    tracklet's in the trials: ``wandb agent`` where that is tracklet's (under ``tracklet run
    --wandb``), else ``python -m tracklet.compat.wandb agent``. (``tracklet agent`` would run the
    trials with whatever ``wandb`` is installed: the real one asks for a W&B login.)"""
    import shutil

    found = shutil.which("wandb")
    try:
        ours = found is not None and b"tracklet.compat.wandb" in Path(found).read_bytes()[:4096]
    except OSError:
        ours = False
    return f"wandb agent {reference}" if ours else f"python -m tracklet.compat.wandb agent {reference}"


def _compat_environment() -> dict[str, str]:
    """What a command trial of W&B's agent needs so that its ``import wandb`` is tracklet's (as
    under ``tracklet run --wandb``): the switch, and the launch directory (its ``sitecustomize``
    installs the redirect) first on ``PYTHONPATH``."""
    from tracklet.compat import ENV_SWITCH
    from tracklet.compat.redirect import LAUNCH_DIR

    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(LAUNCH_DIR) not in entries:
        entries.insert(0, str(LAUNCH_DIR))
    return {ENV_SWITCH: "1", "PYTHONPATH": os.pathsep.join(entries)}


def create_sweep(config: Any, *, project: str | None = None) -> tuple[str, str]:
    """Create the sweep (on the server in online mode, else under the data root); its id and project.
    An invalid config is a ``UsageError`` naming every problem."""
    from tracklet.sweeps.controller import LocalController
    from tracklet.sweeps.controller import create_sweep as create_local
    from tracklet.sweeps.remote import create_remote_sweep, server_url

    if isinstance(config, dict) and project is None and config.get("project"):
        project = str(config["project"])
    try:
        url = server_url()
        if url is not None:
            made = create_remote_sweep(url, config, project=_project(project))
            return made["id"], made["project"]
        sweep_id = create_local(_root(), config, project=_project(project))
        return sweep_id, LocalController(_root(), sweep_id).project
    except SweepSpecError as error:
        raise UsageError(str(error)) from None


def set_state(sweep_id: str, state: str) -> None:
    """``wandb sweep --pause|--resume|--stop|--cancel SWEEP_ID``: pause, resume or stop the sweep."""
    try:
        _controller(sweep_id).set_state(state)
    except (SweepNotFound, ValueError) as error:
        raise UsageError(str(error)) from None


def _controller(sweep_id: str) -> Any:
    from tracklet.sweeps.controller import LocalController
    from tracklet.sweeps.remote import RemoteController, server_url

    url = server_url()
    return RemoteController(url, sweep_id, root=_root()) if url is not None else LocalController(_root(), sweep_id)


def run_agent(sweep_id: str, *, function: Callable[[], Any] | None, entity: str | None, project: str | None,
              count: int | None) -> None:
    from tracklet.sweeps.agent import Agent

    if function is not None and not callable(function):
        raise UsageError(f"wandb.agent(function=...) must be callable; got {function!r}")
    try:
        controller = _controller(sweep_id)
        agent = Agent(controller, count=count, log=lambda line: termlog(f"Agent: {line}"),
                      command_env=_compat_environment())  # the trials' import wandb is tracklet's, as W&B's is W&B's
        if function is None:
            agent.run_commands()
        else:
            agent.run_function(function)
    except (SweepNotFound, SweepSpecError, ValueError) as error:
        raise UsageError(str(error)) from None
    except SweepError as error:
        raise Error(str(error)) from None


class LocalControllerShim:
    """``wandb.controller()``: tracklet needs no controller process (agents drive the study)."""

    def __init__(self, sweep_id_or_config: Any = None, project: str | None = None) -> None:
        self._config = sweep_id_or_config if isinstance(sweep_id_or_config, dict) else None
        self.sweep_id = sweep_id_or_config if isinstance(sweep_id_or_config, str) else None
        self._project = project

    def create(self) -> str:
        if self._config is None:
            raise UsageError("wandb.controller(config).create() needs a sweep config")
        self.sweep_id = create(self._config, project=self._project)
        return self.sweep_id

    def run(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to run: agents ask the study for trials themselves."""

    def done(self) -> bool:
        return True
