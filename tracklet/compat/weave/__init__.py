"""W&B Weave's tracing names over tracklet's: ``weave.init``, ``weave.op``, ``weave.Evaluation``,
``weave.Model``, ``weave.Dataset`` (docs/tracing.md, "Weave names").

Where the W&B compatibility layer is on (``tracklet run --wandb``, ``install_wandb()``), ``import
weave`` resolves to this module, as ``import wandb`` resolves to ``tracklet.compat.wandb``:

- ``weave.init("team/project")`` starts a tracklet run in ``project`` (``job_type="weave"``) so
  ops record into it; it returns the run;
- ``@weave.op`` / ``@weave.op()`` is ``@tracklet.op``;
- ``weave.Evaluation(dataset=, scorers=, trials=)``: ``await evaluation.evaluate(model)`` runs a
  ``tracklet.Evaluation`` into the current run (a ``weave.Model``'s ``predict`` is the model;
  a scorer may name the output ``output`` or, as older Weave code does, ``model_output``) and
  returns its summary.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tracklet
from tracklet.core import lifecycle
from tracklet.tracing.evaluation import Evaluation as _Evaluation
from tracklet.tracing.ops import op as _op

_tracklet_compat = True


def init(project_name: str, **kwargs: Any) -> Any:
    """Start a run in the project (the part after a ``/``: W&B's entity is not tracklet's) that
    ops record into, and return it."""
    project = project_name.split("/")[-1]
    return tracklet.init(project=project, job_type=kwargs.pop("job_type", "weave"), **kwargs)


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
        self._evaluation = _Evaluation(dataset=rows, scorers=scorers, trials=trials, name=name)

    async def evaluate(self, model: Any) -> dict[str, Any]:
        predict = model.predict if hasattr(model, "predict") else model
        run = lifecycle.current()  # weave.init's run, if any; else the evaluation starts its own
        # In a thread: a model or scorer may be async, and this coroutine's loop is running.
        return await asyncio.to_thread(self._evaluation.evaluate, predict, run=run)
