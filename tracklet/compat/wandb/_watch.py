"""``wandb.watch``: histograms of a PyTorch model's gradients and/or parameters every ``log_freq``
steps, through tracklet's one ``watch`` (``tracklet/core/torch_watch.py``).

Every ``log_freq``-th backward pass of each parameter records ``gradients/<name>`` and (with
``log="parameters"`` or ``"all"``) ``parameters/<name>`` into the current step with
``commit=False``, as W&B does. Several models, or ``idx``, prefix the keys with ``graph_<n>/``.
``log_graph`` is not supported (one warning); a ``log`` that is not W&B's watches nothing (one
warning).
"""

from __future__ import annotations

from typing import Any

from tracklet.compat.wandb._messages import not_supported, warn_once
from tracklet.core.torch_watch import LOG_VALUES, ModelWatch
from tracklet.core.modules import loaded


class Watcher:
    """Every model ``watch`` attached hooks to, for ``unwatch``."""

    def __init__(self) -> None:
        self.watched: list[ModelWatch] = []

    def remove(self, models: Any) -> None:
        items = models if isinstance(models, (list, tuple)) else [models]
        keep = []
        for watched in self.watched:
            if models is None or any(watched.watches(m) for m in items):
                watched.remove()
            else:
                keep.append(watched)
        self.watched = keep


def watch_models(run: Any, models: Any, *, log: str | None, log_freq: int, idx: int | None, log_graph: bool,
                 previous: Watcher | None) -> Watcher:
    """Attach hooks to ``models`` (a module or a list of them); returns the run's :class:`Watcher`."""
    watcher = previous or Watcher()
    if log not in LOG_VALUES:
        warn_once("watch-log",
                  f"wandb.watch(log={log!r}) is not one of gradients, parameters, all, None; nothing is watched")
        return watcher
    if log_graph:
        not_supported("wandb.watch(log_graph=True)", "the model graph is not recorded (gradients and parameters are)")
    torch = loaded("torch")
    items = list(models) if isinstance(models, (list, tuple)) else [models]
    if torch is None or not all(isinstance(m, torch.nn.Module) for m in items):
        not_supported("wandb.watch() on anything but torch.nn.Module", "nothing is watched")
        return watcher

    def record(row: dict[str, Any], step: int | None) -> None:
        run.log(row, commit=False)

    def warn(message: str) -> None:
        warn_once("watch-hook", f"wandb.{message}")

    for position, model in enumerate(items):
        number = position if idx is None else idx + position
        prefix = f"graph_{number}/" if (len(items) > 1 or (idx or 0) > 0) else ""
        watcher.watched.append(ModelWatch(model, log=log, log_freq=max(1, int(log_freq)), record=record, warn=warn,
                                          prefix=prefix))
    return watcher
