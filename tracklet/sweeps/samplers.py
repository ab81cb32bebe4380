"""Optuna samplers as the controller builds them, with what a long-lived controller can cache.

A controller process keeps its sampler between asks (controller.py). Optuna's TPE re-derives every
finished trial's parameters in its internal representation on every ask (a Python loop over
trials x parameters: about a third of an ask at 1,000 trials). A finished trial's parameters never
change, and in a sweep a parameter's distribution is fixed by the spec, so :class:`CachingTPESampler`
converts each finished trial once. It samples exactly what ``TPESampler`` samples (tests compare
the two); if Optuna's internal method it refines ever changes shape, :func:`tpe_sampler` falls back
to the plain sampler.

Optuna is imported by the functions that need it, never with this module.
"""

from __future__ import annotations

import inspect
from typing import Any


def _caching_tpe_class() -> Any:
    import numpy as np
    from optuna.samplers import TPESampler

    method = getattr(TPESampler, "_get_internal_repr", None)
    if method is None or list(inspect.signature(method).parameters) != ["self", "trials", "search_space", "study"]:
        return TPESampler

    class CachingTPESampler(TPESampler):
        """``TPESampler`` that converts a finished trial's parameters once (see the module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # parameter names -> trial number -> the finished trial's values in internal form
            self._finished_rows: dict[tuple[str, ...], dict[int, tuple[float, ...]]] = {}

        def _get_internal_repr(self, trials: list[Any], search_space: dict[str, Any],
                               study: Any) -> dict[str, Any]:
            names = tuple(search_space)
            cache = self._finished_rows.setdefault(names, {})
            rows: list[tuple[float, ...]] = []
            for trial in trials:
                row = cache.get(trial.number)
                if row is None:
                    finished = trial.state.is_finished()
                    params = trial.params if finished else self._get_params(trial, study)
                    if not search_space.keys() <= params.keys():
                        continue
                    row = tuple(search_space[name].to_internal_repr(params[name]) for name in names)
                    if finished:
                        cache[trial.number] = row
                rows.append(row)
            columns = np.asarray(rows, dtype=float).reshape(len(rows), len(names)).T
            return {name: columns[i] for i, name in enumerate(names)}

    return CachingTPESampler


_TPE_CLASS: Any = None


def tpe_sampler(**options: Any) -> Any:
    """A TPE sampler with ``options`` (TPESampler's), caching what a kept sampler may cache."""
    global _TPE_CLASS
    if _TPE_CLASS is None:
        _TPE_CLASS = _caching_tpe_class()
    return _TPE_CLASS(**options)
