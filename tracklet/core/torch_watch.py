"""One torch ``watch``: histograms of a model's gradients and/or parameters every ``log_freq`` steps.

W&B's ``wandb.watch(model, log="gradients"|"parameters"|"all", log_freq=)``, used by the W&B
compatibility layer (``wandb.watch``, ``run.watch``) and by the Lightning logger
(``TrackletLogger.watch``). Each parameter that requires a gradient gets one hook that runs once
its gradient has been accumulated (``register_post_accumulate_grad_hook``; before torch 2.1 a
tensor hook on the gradient). Every ``log_freq``-th step the hook records ``gradients/<name>``
(the gradient) and ``parameters/<name>`` (the value that step's forward used) in one row; between
those steps it costs a counter increment. Which step it is and where the row goes is the caller's
(a Trainer's step and that step's row; elsewhere each parameter's own count of backward passes
and the run's current step, ``commit=False``, as W&B does).

The hook only clones (``detach().clone()``, on the tensor's device); the run's worker thread builds
the 64-bin histograms (NaN and infinities counted apart), so a watched step waits neither for
binning nor, on a GPU, for a device sync: the price is a copy of the watched tensors held until the
worker has binned them. A one-element tensor is recorded as a scalar (tracklet's rule for every
logged tensor). A hook never breaks backward: a failure is reported once and training goes on.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from tracklet.errors import TrialPruned

LOG_VALUES = ("gradients", "parameters", "all", None)

#: ``record(row, step)``: ``step`` is the caller's step (None: the run's current step).
Record = Callable[[dict[str, Any], "int | None"], None]


def check_arguments(log: Any, log_freq: Any) -> None:
    """``ValueError`` naming the problem unless ``log`` and ``log_freq`` are W&B's."""
    if log not in LOG_VALUES:
        raise ValueError(f"log must be 'gradients', 'parameters', 'all' or None; got {log!r}")
    if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
        raise ValueError(f"log_freq must be a positive int; got {log_freq!r}")


def snapshot(tensor: Any) -> Any:
    """What a hook records for ``tensor``: a clone (a sparse tensor's values), which the run's
    worker thread bins; the hook itself neither bins nor waits for the device."""
    tensor = tensor.detach()
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    return tensor.clone()


class ModelWatch:
    """The hooks on one model; :meth:`remove` takes them off.

    ``record(row, step)`` receives each row; ``trainer_step(module)``, when given, returns the
    step of the Trainer driving the module (None when there is none): rows are then recorded at
    ``(step + 1) % log_freq == 0``, all parameters in that step's row; without it each parameter
    counts its own backward passes. ``prefix`` goes before ``gradients/`` and ``parameters/``.
    ``warn(message)`` reports a hook's failure (once is the caller's choice).
    """

    def __init__(self, model: Any, *, log: str | None, log_freq: int, record: Record,
                 warn: Callable[[str], None], prefix: str = "",
                 trainer_step: Callable[[Any], int | None] | None = None) -> None:
        check_arguments(log, log_freq)
        self.given = model
        # Fabric's wrapper (fabric.setup(model)): parameter names as the user's module has them
        original = getattr(model, "_original_module", None)
        self.module = module = original if original is not None else model
        self._gradients = log in ("gradients", "all")
        self._parameters = log in ("parameters", "all")
        self._log_freq = log_freq
        self._record = record
        self._warn = warn
        self._prefix = prefix
        self._trainer_step = trainer_step
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        if log is None:
            return
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            self._counts[name] = 0
            if hasattr(param, "register_post_accumulate_grad_hook"):
                self._handles.append(param.register_post_accumulate_grad_hook(functools.partial(self._on_grad, name)))
            else:  # torch < 2.1: the hook sees the gradient before it is accumulated
                self._handles.append(param.register_hook(functools.partial(self._on_tensor_grad, name, param)))

    def _on_tensor_grad(self, name: str, param: Any, grad: Any) -> None:
        self._collect(name, param, grad)

    def _on_grad(self, name: str, param: Any) -> None:
        self._collect(name, param, param.grad)

    def _collect(self, name: str, param: Any, grad: Any) -> None:
        try:
            step = self._trainer_step(self.module) if self._trainer_step is not None else None
            if step is None:
                count = self._counts[name] = self._counts[name] + 1
                if count % self._log_freq:
                    return
            elif (step + 1) % self._log_freq:
                return
            row: dict[str, Any] = {}
            if self._gradients and grad is not None:
                row[f"{self._prefix}gradients/{name}"] = snapshot(grad)
            if self._parameters:
                row[f"{self._prefix}parameters/{name}"] = snapshot(param)
            if row:
                self._record(row, step)
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:  # never break the backward pass
            self._warn(f"watch() could not record {name}: {error!r}; training goes on")

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def watches(self, model: Any) -> bool:
        """Whether ``model`` is the model (or Fabric wrapper) this watch was given."""
        return model is self.given or model is self.module
