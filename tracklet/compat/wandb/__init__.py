"""W&B's public Python API on top of tracklet: ``import tracklet.compat.wandb as wandb``.

Under ``tracklet run --wandb`` (or ``tracklet.compat.install_wandb()``) a plain ``import wandb``
resolves to this package, so unmodified scripts and the frameworks' own W&B integrations
(Lightning's ``WandbLogger``, Hugging Face ``report_to="wandb"``, Keras ``WandbMetricsLogger``)
record tracklet runs. Every call is either mapped onto what tracklet records or accepted with one
"not yet supported" warning; docs/wandb-compat.md lists them all.

``wandb.run``, ``wandb.config`` and ``wandb.summary`` are the current run's (``None`` and
pre-init placeholders before ``wandb.init()``). As in W&B, ``wandb.log()`` and the other run
calls before ``wandb.init()`` raise :class:`wandb.Error`.
"""

from __future__ import annotations

import enum
import os
from typing import Any

from tracklet.compat.redirect import WANDB_VERSION
from tracklet.compat.wandb import errors, plot, sdk, util, wandb_run
from tracklet.compat.wandb._init import current as _current_run
from tracklet.compat.wandb._init import finish, init
from tracklet.compat.wandb._messages import termerror, termlog, termwarn
from tracklet.compat.wandb.data_types import (
    Artifact,
    Audio,
    Classes,
    Graph,
    Histogram,
    Html,
    Image,
    JoinedTable,
    Molecule,
    PartitionedTable,
    Object3D,
    Plotly,
    Table,
    Video,
)
from tracklet.compat.wandb.errors import CommError, Error
from tracklet.compat.wandb.plot import plot_table
from tracklet.compat.wandb.wandb_run import Run
from tracklet.compat.wandb.wandb_settings import Settings

__version__ = WANDB_VERSION
_tracklet_compat = True  # how tracklet (autolog, the redirect) recognises this module as ``wandb``


class AlertLevel(enum.Enum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def _run_for(call: str) -> Run:
    run = _current_run()
    if run is None:
        raise Error(f"You must call wandb.init() before {call}()")
    return run


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None, sync: bool | None = None) -> None:
    """Log to the current run (``wandb.run.log``)."""
    _run_for("wandb.log").log(data, step=step, commit=commit, sync=sync)


def define_metric(name: str, step_metric: Any = None, step_sync: bool | None = None, hidden: bool | None = None,
                  summary: str | None = None, goal: str | None = None, overwrite: bool | None = None) -> Any:
    return _run_for("wandb.define_metric").define_metric(name, step_metric, step_sync, hidden, summary, goal, overwrite)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
          idx: int | None = None, log_graph: bool = False) -> None:
    _run_for("wandb.watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: Any = None) -> None:
    run = _current_run()
    if run is not None:
        run.unwatch(models)


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    _run_for("wandb.alert").alert(title, text, level, wait_duration)


def save(glob_str: Any = None, base_path: Any = None, policy: str = "live") -> list[str]:
    return _run_for("wandb.save").save(glob_str, base_path, policy)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None,
                 tags: Any = None) -> Any:
    return _run_for("wandb.log_artifact").log_artifact(artifact_or_path, name, type, aliases, tags)


def use_artifact(artifact_or_name: Any, type: str | None = None, aliases: Any = None, use_as: str | None = None) -> Any:
    return _run_for("wandb.use_artifact").use_artifact(artifact_or_name, type, aliases, use_as)


def log_model(path: Any, name: str | None = None, aliases: Any = None) -> Any:
    return _run_for("wandb.log_model").log_model(path, name, aliases)


def link_model(path: Any, registered_model_name: str, name: str | None = None, aliases: Any = None) -> Any:
    return _run_for("wandb.link_model").link_model(path, registered_model_name, name, aliases)


def use_model(name: str) -> str:
    return _run_for("wandb.use_model").use_model(name)


def mark_preempting() -> None:
    _run_for("wandb.mark_preempting").mark_preempting()


def restore(name: str, run_path: str | None = None, replace: bool = False, root: str | None = None) -> Any:
    """W&B's ``wandb.restore``: run file ``name`` of ``run_path`` (default: the current run) copied
    into ``root`` (default: the current run's files directory, else the working directory) unless
    it is there already (``replace=True``: always), opened for reading; None if the run has no such
    file. The run is read from the data root, else from the server at ``TRACKLET_BASE_URL``."""
    from tracklet.compat.wandb.apis.public import Api
    from tracklet.core.settings import data_root

    run = _current_run()
    if run_path is None:
        if run is None:
            raise ValueError("run_path required when calling wandb.restore before wandb.init")
        run_path = f"{run.project}/{run.id}"
    if root is None:
        root = run.dir if run is not None else os.getcwd()
    path = os.path.join(root, name)
    if os.path.exists(path) and not replace:
        return open(path)
    # The data root first ("root": None is the default one), then the server at TRACKLET_BASE_URL.
    sources: list[dict[str, Any]] = [{"root": str(data_root(run._run.settings)) if run is not None else None}]
    if os.environ.get("TRACKLET_BASE_URL"):
        sources.append({"base_url": os.environ["TRACKLET_BASE_URL"]})
    for overrides in sources:
        try:
            found = Api(overrides=overrides).run(run_path)
        except CommError:
            continue
        if name not in [file.name for file in found.files()]:
            return None
        return found.file(name).download(root=root, replace=True)
    raise CommError(f"wandb.restore(): no run {run_path!r} here"
                    + ("" if os.environ.get("TRACKLET_BASE_URL") else " (set TRACKLET_BASE_URL to read a server's)"))


def login(key: str | None = None, relogin: bool | None = None, host: str | None = None, anonymous: Any = None,
          timeout: Any = None, verify: bool = False, **kwargs: Any) -> bool:
    """Nothing to log in to: tracklet records locally (``tracklet login`` is for a tracklet server)."""
    termlog("tracklet records runs locally; wandb.login() is not needed (for a tracklet server, use "
            "`tracklet login`)", repeat=False)
    return True


def require(requirement: str | None = None, experiment: Any = None) -> None:
    """W&B feature flags (``wandb.require("service")``): nothing to turn on."""


def setup(settings: Any = None) -> None:
    """W&B's service setup: nothing to set up."""


def teardown(exit_code: int | None = None) -> None:
    finish(exit_code)


def sweep(sweep: Any, entity: str | None = None, project: str | None = None, prior_runs: Any = None) -> str:
    """Create a sweep from a W&B sweep config (a dict, or a function returning one) under tracklet's
    data root and return its id (``tracklet.sweeps``; docs/sweeps.md). ``prior_runs`` are not
    imported yet (one warning)."""
    from tracklet.compat.wandb._sweeps import create

    return create(sweep, entity=entity, project=project, prior_runs=prior_runs)


def agent(sweep_id: str, function: Any = None, entity: str | None = None, project: str | None = None,
          count: int | None = None) -> None:
    """Run trials of sweep ``sweep_id``: ``function`` in this process per trial, with
    ``wandb.config`` filled from the suggestion once it calls ``wandb.init()``; without a function,
    the sweep's program or command, as ``tracklet agent`` does."""
    from tracklet.compat.wandb._sweeps import run_agent

    run_agent(sweep_id, function=function, entity=entity, project=project, count=count)


def controller(sweep_id_or_config: Any = None, entity: str | None = None, project: str | None = None) -> Any:
    """W&B's local controller: tracklet's agents drive the sweep themselves, so this returns an
    object whose ``run()`` returns at once (and ``create()`` makes a sweep from a config)."""
    from tracklet.compat.wandb._sweeps import LocalControllerShim

    return LocalControllerShim(sweep_id_or_config, project=project)


def __getattr__(name: str) -> Any:
    if name == "run":
        return _current_run()
    if name in ("config", "summary"):
        run = _current_run()
        if run is not None:
            return getattr(run, name)
        from tracklet.compat.wandb._config import PreInitConfig

        return PreInitConfig() if name == "config" else {}
    if name == "Api":
        from tracklet.compat.wandb.apis.public import Api

        return Api
    if name in ("apis", "integration"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    from tracklet.compat.redirect import NOT_PROVIDED

    if name in NOT_PROVIDED:
        what, instead = NOT_PROVIDED[name]
        raise AttributeError(f"wandb.{name} (W&B's {what} integration) is not provided by tracklet's W&B layer "
                             f"(docs/wandb-compat.md, Frameworks); {instead}")
    raise AttributeError(f"module 'wandb' (tracklet's W&B compatibility layer) has no attribute {name!r}")


__all__ = [
    "AlertLevel", "Api", "Artifact", "Audio", "Classes", "Error", "Graph", "Histogram", "Html", "Image", "JoinedTable",
    "Molecule", "Object3D", "PartitionedTable", "Plotly", "Run", "Settings", "Table", "Video", "__version__", "agent", "alert", "controller", "define_metric",
    "errors", "finish", "init", "link_model", "log", "log_artifact", "log_model", "login", "mark_preempting", "plot", "plot_table",
    "require",
    "restore", "save", "sdk", "setup", "sweep", "teardown", "termerror", "termlog", "termwarn", "unwatch",
    "use_artifact", "use_model", "util", "wandb_run", "watch",
]
