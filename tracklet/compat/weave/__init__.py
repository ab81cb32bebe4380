"""W&B Weave's tracing names over tracklet's: ``weave.init``, ``weave.op``, ``weave.Evaluation``,
``weave.Model``, ``weave.Dataset`` (docs/tracing.md, "Weave names").

Where the W&B compatibility layer is on (``tracklet run --wandb``, ``install_wandb()``), ``import
weave`` resolves to this module, as ``import wandb`` resolves to ``tracklet.compat.wandb``:

- ``weave.init("team/project")`` starts a tracklet run in ``project`` (``job_type="weave"``) so
  ops record into it; it returns the run;
- ``@weave.op`` / ``@weave.op()`` is ``@tracklet.op``;
- ``weave.Evaluation(dataset=, scorers=, trials=)``: ``await evaluation.evaluate(model)`` runs a
  ``tracklet.Evaluation`` into the current run (a ``weave.Model``'s ``predict`` is the model;
  a scorer may name the output ``output`` or, as older Weave code does, ``model_output``; a
  ``weave.Scorer`` instance scores with its ``score`` method) and returns its summary;
- ``weave.publish`` and ``weave.attributes`` are one warning each (no Weave server), ``weave.finish``
  finishes the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import tracklet
from tracklet.compat.wandb._messages import warn_once
from tracklet.core import lifecycle
from tracklet.tracing.evaluation import Evaluation as _Evaluation
from tracklet.tracing.ops import OP_MARK, is_op
from tracklet.tracing.ops import op as _op

_tracklet_compat = True


# Weave's ``UserSettings`` fields: its client, cache and display settings, nothing tracklet records.
_WEAVE_SETTINGS = frozenset({
    "disabled", "print_call_link", "display_viewer", "capture_code", "redact_pii", "redact_pii_fields",
    "capture_client_info", "capture_system_info", "client_parallelism", "use_server_cache",
    "server_cache_size_limit", "server_cache_dir", "scorers_dir", "max_calls_queue_size", "retry_max_attempts",
    "retry_max_interval", "implicitly_patch_integrations", "enable_disk_fallback", "http_timeout", "log_level",
    "use_parallel_table_upload", "should_redact_pii"})
# Weave's own ``init`` keywords besides ``settings``.
_WEAVE_KEYWORDS = ("global_postprocess_inputs", "global_postprocess_output", "global_attributes")


def init(project_name: str, *, autopatch_settings: Any = None, **kwargs: Any) -> Any:
    """Start a run in the project (the part after a ``/``: W&B's entity is not tracklet's) that
    ops record into, and return it. As Weave's ``init`` does, the installed ``openai`` and
    ``anthropic`` clients' calls are traced from here on (``tracklet.tracing.autopatch``), unless
    ``autopatch_settings={"openai": {"enabled": False}}`` (per provider) or the setting
    ``implicitly_patch_integrations=False`` says not. Weave's settings (a dict or an object with
    ``model_dump()``: ``print_call_link``, ...) are accepted and ignored; tracklet's own settings
    may be given there too. ``global_attributes`` and the ``global_postprocess_*`` hooks are one
    warning each and not applied."""
    project = project_name.split("/")[-1]
    patch = True
    settings = kwargs.get("settings")
    if settings is not None and not isinstance(settings, (dict, tracklet.Settings)) and hasattr(settings, "model_dump"):
        settings = settings.model_dump(exclude_unset=True)
    if isinstance(settings, dict):
        if settings.get("implicitly_patch_integrations") is False:
            patch = False
        kwargs["settings"] = {key: value for key, value in settings.items() if key not in _WEAVE_SETTINGS} or None
    for keyword in _WEAVE_KEYWORDS:
        if kwargs.pop(keyword, None) is not None:
            warn_once(f"weave-init-{keyword}", f"weave.init({keyword}=...) is not applied by tracklet; ignored")
    run = tracklet.init(project=project, job_type=kwargs.pop("job_type", "weave"), **kwargs)
    if patch:
        from tracklet.tracing import llm

        disabled = {provider for provider, options in (autopatch_settings or {}).items()
                    if isinstance(options, dict) and options.get("enabled") is False
                    or getattr(options, "enabled", True) is False}
        wanted = [provider for provider in llm.PROVIDERS if provider not in disabled]
        if wanted:
            llm.autopatch(wanted)
    return run


def op(function: Any = None, /, *, name: str | None = None, **_: Any) -> Any:
    """``@weave.op`` and ``@weave.op()``: ``@tracklet.op`` (Weave's other options are ignored)."""
    if function is None:
        return _op(name=name) if name else _op
    return _op(function) if name is None else _op(name=name)(function)


class Model:
    """A ``weave.Model``: subclass it with fields and a ``predict`` method (an op or not)."""

    def __init__(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)


class Scorer(Model):
    """A ``weave.Scorer``: subclass it with a ``score`` method (an op or not, sync or async) that
    names the row's fields it needs and ``output``; an instance is a scorer of an ``Evaluation``,
    its scores named by the class."""

    def score(self, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define score(...)")


def _scorer(scorer: Any) -> Any:
    """A ``Scorer`` (or any object with a ``score`` method that is not itself callable) as the
    function ``tracklet.Evaluation`` calls: the bound ``score`` under the class's name."""
    if callable(scorer) and not isinstance(scorer, Scorer):
        return scorer
    method = getattr(scorer, "score", None)
    if not callable(method):
        raise TypeError(f"weave.Evaluation: a scorer must be a function or have a score() method; "
                        f"got {type(scorer).__name__}")

    def score(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    score.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    score.__name__ = score.__qualname__ = type(scorer).__name__
    if is_op(method):  # its own span (``ExactMatch.score``, as Weave names it) is the scorer's
        setattr(score, OP_MARK, True)
    return score


def publish(obj: Any, name: str | None = None) -> None:
    """``weave.publish``: there is no Weave server to publish to; one warning, nothing done
    (log a dataset or model as an artifact instead: ``run.log_artifact``)."""
    warn_once("weave-publish", "weave.publish() is not provided: nothing published (log it as an artifact "
                               "with run.log_artifact to version it)")


def attributes(attrs: Any) -> Any:
    """``with weave.attributes({...}):``: not recorded (one warning); the block runs as is."""
    warn_once("weave-attributes", "weave.attributes() is not recorded on tracklet's spans; the block runs as is")
    return contextlib.nullcontext()


def finish() -> None:
    """``weave.finish()``: finish the run ``weave.init`` started."""
    run = lifecycle.current()
    if run is not None:
        run.finish()


class Dataset:
    """A ``weave.Dataset``: a name and its rows (a list of dicts)."""

    def __init__(self, name: str = "dataset", rows: Any = ()) -> None:
        self.name = name
        self.rows = list(rows)


class Evaluation:
    """``weave.Evaluation``: ``await evaluate(model)`` (see the module's docstring)."""

    def __init__(self, dataset: Any, scorers: Any = (), trials: int = 1, name: str | None = None,
                 **_: Any) -> None:
        rows = dataset.rows if isinstance(dataset, Dataset) else dataset
        self._evaluation = _Evaluation(dataset=rows, scorers=[_scorer(s) for s in scorers], trials=trials, name=name)

    async def evaluate(self, model: Any) -> dict[str, Any]:
        predict = model.predict if hasattr(model, "predict") else model
        run = lifecycle.current()  # weave.init's run, if any; else the evaluation starts its own
        # In a thread: a model or scorer may be async, and this coroutine's loop is running.
        return await asyncio.to_thread(self._evaluation.evaluate, predict, run=run)
