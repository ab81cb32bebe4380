"""``wandb.watch``: histograms of a PyTorch model's gradients and/or parameters every ``log_freq`` steps.

Gradients come from a hook on each parameter (``Tensor.register_hook``) that counts backward
passes; every ``log_freq``-th one bins that gradient on its own device (``torch.histc``, 64 bins)
and logs ``gradients/<name>`` into the current step with ``commit=False``, as W&B does. Parameters
are binned the same way, as ``parameters/<name>``, from a forward hook on each submodule that owns
parameters (so models whose top-level ``forward`` is never called, like a LightningModule's, are
covered), every ``log_freq``-th training-mode call. Between those steps a hook costs one counter
increment. ``log_graph`` is not supported (one warning).
"""

from __future__ import annotations

import sys
from typing import Any

from tracklet.compat.wandb._messages import not_supported, warn_once

BINS = 64
_MODES = {"gradients": (True, False), "parameters": (False, True), "all": (True, True), None: (False, False)}


def _histogram(tensor: Any) -> Any:
    """A tracklet Histogram of a tensor's finite values, binned where the tensor lives."""
    import torch

    from tracklet.core.values import Histogram

    flat = tensor.detach()
    if flat.is_sparse:
        flat = flat.coalesce().values()
    flat = flat.reshape(-1).float()
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        return None
    bounds = torch.aminmax(flat)
    low, high = float(bounds.min), float(bounds.max)
    if low == high:
        return Histogram(np_histogram=([int(flat.numel())], [low, high]))
    counts = torch.histc(flat, bins=BINS, min=low, max=high)
    step = (high - low) / BINS
    return Histogram(np_histogram=(counts.cpu().tolist(), [low + i * step for i in range(BINS)] + [high]))


class _Watched:
    """Hooks on one model; ``remove()`` takes them off."""

    def __init__(self, run: Any, model: Any, prefix: str, gradients: bool, parameters: bool, log_freq: int) -> None:
        self.model = model
        self._run = run
        self._log_freq = max(1, int(log_freq))
        self._handles: list[Any] = []
        self._prefix = prefix
        if gradients:
            for name, parameter in model.named_parameters():
                if parameter.requires_grad:
                    self._handles.append(parameter.register_hook(self._gradient_hook(name)))
        if parameters:
            for module_name, module in model.named_modules():
                owned = [(f"{module_name}.{n}" if module_name else n, p)
                         for n, p in module.named_parameters(recurse=False)]
                if owned:
                    self._handles.append(module.register_forward_hook(self._forward_hook(owned)))

    def _log(self, key: str, tensor: Any) -> None:
        try:
            histogram = _histogram(tensor)
            if histogram is not None:
                self._run.log({key: histogram}, commit=False)
        except Exception as error:  # a hook must never break backward or forward
            warn_once("watch-hook", f"wandb.watch could not record {key}: {error!r} (training goes on)")

    def _gradient_hook(self, name: str) -> Any:
        calls = [0]
        key = f"{self._prefix}gradients/{name}"

        def hook(grad: Any) -> None:
            calls[0] += 1
            if calls[0] % self._log_freq == 0:
                self._log(key, grad)

        return hook

    def _forward_hook(self, owned: list[tuple[str, Any]]) -> Any:
        calls = [0]

        def hook(module: Any, inputs: Any, output: Any) -> None:
            if not module.training:
                return
            calls[0] += 1
            if calls[0] % self._log_freq == 0:
                for name, parameter in owned:
                    self._log(f"{self._prefix}parameters/{name}", parameter)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class Watcher:
    """Every model ``watch`` attached hooks to, for ``unwatch``."""

    def __init__(self) -> None:
        self.watched: list[_Watched] = []

    def remove(self, models: Any) -> None:
        items = models if isinstance(models, (list, tuple)) else [models]
        targets = None if models is None else {id(m) for m in items}
        keep = []
        for watched in self.watched:
            if targets is None or id(watched.model) in targets:
                watched.remove()
            else:
                keep.append(watched)
        self.watched = keep


def watch_models(run: Any, models: Any, *, log: str | None, log_freq: int, idx: int | None, log_graph: bool,
                 previous: Watcher | None) -> Watcher:
    """Attach hooks to ``models`` (a module or a list of them); returns the run's :class:`Watcher`."""
    watcher = previous or Watcher()
    if log not in _MODES:
        warn_once("watch-log",
                  f"wandb.watch(log={log!r}) is not one of gradients, parameters, all, None; nothing is watched")
        return watcher
    if log_graph:
        not_supported("wandb.watch(log_graph=True)", "the model graph is not recorded (gradients and parameters are)")
    torch = sys.modules.get("torch")
    items = list(models) if isinstance(models, (list, tuple)) else [models]
    if torch is None or not all(isinstance(m, torch.nn.Module) for m in items):
        not_supported("wandb.watch() on anything but torch.nn.Module", "nothing is watched")
        return watcher
    gradients, parameters = _MODES[log]
    for position, model in enumerate(items):
        number = position if idx is None else idx + position
        prefix = f"graph_{number}/" if (len(items) > 1 or (idx or 0) > 0) else ""
        watcher.watched.append(_Watched(run, model, prefix, gradients, parameters, log_freq))
    return watcher
