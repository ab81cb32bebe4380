"""A trial's objective: the sweep metric as its run recorded it.

As W&B's sweeps do (``metric_extremum``), the objective is the best value of the metric in the run's
history and summary: the smallest for ``goal: minimize``, the largest for ``maximize``.
Non-numeric and non-finite values are not candidates. A run that never logged the metric is a
failed trial, with a message that says so.

A multi-objective sweep (``metrics:``) is told each metric's *final* value instead: the run's
summary (the last value logged, unless the program set it), else the last finite point of its
history. The best of each metric taken on its own would combine different moments of the run into
a point it never reached, and the Pareto front would show trade-offs no model had.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tracklet.sweeps.spec import Metric


def _numbers(values: Any) -> list[float]:
    found = []
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found.append(float(value))
    return found


def read_objectives(root: Path, project: str, run_id: str,
                    metrics: tuple[Metric, ...]) -> tuple[list[float] | None, str | None]:
    """One value per objective (see the module docstring), or ``(None, problem)``."""
    if len(metrics) <= 1:
        value, problem = read_objective(root, project, run_id, metrics[0] if metrics else None)
        return (None if value is None else [value]), problem
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    paths = RunPaths(Path(root), project, run_id)
    if not paths.log_file.is_file():
        return None, (f"the command exited 0 but recorded no run {project}/{run_id}: does the program call "
                      "tracklet.init() (or wandb.init() under the W&B layer)?")
    return objectives_of(RecordedRun(paths), project, run_id, metrics)


def objectives_of(run: Any, project: str, run_id: str,
                  metrics: tuple[Metric, ...]) -> tuple[list[float] | None, str | None]:
    """:func:`read_objectives` of an open :class:`~tracklet.core.api.RecordedRun`."""
    logged_keys = run.keys()
    if len(metrics) == 1:
        metric = metrics[0]
        candidates = _numbers([run.summary.get(metric.name)])
        if metric.name in logged_keys:
            candidates += _numbers(run.history([metric.name])[metric.name])
        if not candidates:
            logged = ", ".join(logged_keys[:10]) or "nothing"
            return None, (f"metric {metric.name!r} was never logged as a finite number by run {project}/{run_id} "
                          f"(it logged: {logged})")
        return [(max if metric.maximize else min)(candidates)], None
    values = []
    for metric in metrics:
        candidates = _numbers([run.summary.get(metric.name)])
        if not candidates and metric.name in logged_keys:
            candidates = _numbers(run.history([metric.name])[metric.name])[-1:]
        if not candidates:
            logged = ", ".join(logged_keys[:10]) or "nothing"
            return None, (f"metric {metric.name!r} was never logged as a finite number by run {project}/{run_id} "
                          f"(it logged: {logged})")
        values.append(candidates[0])
    return values, None


def store_objectives(store: Any, project: str, run_id: str, summary: dict[str, Any], keys: list[str],
                     metrics: tuple[Metric, ...]) -> tuple[list[float] | None, str | None]:
    """:func:`objectives_of` for a run as a store indexed it (its summary, its keys, its history
    read page by page: memory stays bounded for a long series)."""
    import numpy as np

    path = f"{project}/{run_id}"
    values = []
    for metric in metrics:
        candidates = _numbers([summary.get(metric.name)])
        if metric.name in keys and (len(metrics) == 1 or not candidates):
            for _steps, page in store.history_pages(path, metric.name):
                finite = page[np.isfinite(page)]
                if not finite.size:
                    continue
                if len(metrics) > 1:
                    candidates = [float(finite[-1])]  # the last finite point, as objectives_of
                else:
                    candidates.append(float(finite.max() if metric.maximize else finite.min()))
        if not candidates:
            logged = ", ".join(keys[:10]) or "nothing"
            return None, (f"metric {metric.name!r} was never logged as a finite number by run {path} "
                          f"(it logged: {logged})")
        values.append((max if metric.maximize else min)(candidates) if len(metrics) == 1 else candidates[0])
    return values, None


def read_objective(root: Path, project: str, run_id: str, metric: Metric | None) -> tuple[float | None, str | None]:
    """``(value, None)``, or ``(None, problem)`` naming what is missing."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    paths = RunPaths(Path(root), project, run_id)
    if not paths.log_file.is_file():
        return None, (f"the command exited 0 but recorded no run {project}/{run_id}: does the program call "
                      "tracklet.init() (or wandb.init() under the W&B layer)?")
    if metric is None:
        return None, None
    values, problem = objectives_of(RecordedRun(paths), project, run_id, (metric,))
    return (values[0] if values else None), problem


def failed_run_values(spec: Any, root: Path, project: str, run_id: str) -> list[float] | None:
    """For a failed trial of a bayes sweep whose ``metric.impute`` is ``best`` or ``latest`` (W&B's
    ``impute``): the run's own best, or last, finite value of the metric, told with the failure
    so the search counts the trial at it; None otherwise (no such value, no run recorded, or
    another strategy: ``worst`` is the controller's to find)."""
    from tracklet.sweeps.spec import impute_strategy

    strategy = impute_strategy(spec)
    if strategy not in ("best", "latest"):
        return None
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    metric = spec.metric
    paths = RunPaths(Path(root), project, run_id)
    if not paths.log_file.is_file():
        return None
    try:
        run = RecordedRun(paths)
        if strategy == "best":
            values, _ = objectives_of(run, project, run_id, (metric,))
            return values
        history = _numbers(run.history([metric.name])[metric.name]) if metric.name in run.keys() else []
        latest = history[-1:] or _numbers([run.summary.get(metric.name)])
        return latest or None
    except Exception:  # a run log unreadable mid-write: the trial just fails, unseen by the search
        return None
