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


# A categorical whose values' mean objectives spread this many times wider than the objective
# varies inside one value "dominates" the objective (see :func:`dominant_categorical`).
DOMINANT_RATIO = 3.0
# Random trials inside a dominating categorical's best value before its own GP fit: a GP fitted to
# one or two points sends the next suggestions to the cube's corners (Hartmann-6: stuck seeds).
INSIDE_STARTUP = 6


def dominant_categorical(values: Any, groups: Any) -> bool:
    """Whether ``groups`` (one categorical's value per trial) explain ``values`` (the trials'
    objectives) so much that the variation inside one value is lost beside the offsets between
    values: the spread (standard deviation) of the values' means is more than ``DOMINANT_RATIO``
    times the pooled spread inside the values that at least two trials took. False when no value
    was taken twice (nothing to say about the inside) or only one value was taken."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    keys, index = np.unique(np.asarray(groups), return_inverse=True)
    if len(keys) < 2:
        return False
    counts = np.bincount(index)
    means = np.bincount(index, weights=values) / counts
    repeated = counts[index] >= 2
    if not repeated.any():
        return False
    inside = float(np.sqrt(np.mean((values[repeated] - means[index][repeated]) ** 2)))
    between = float(np.std(means))
    return between > DOMINANT_RATIO * max(inside, 1e-12)


def _conditional_gp_class() -> Any:
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import GPSampler
    from optuna.study import StudyDirection

    try:
        from optuna.samplers._gp.sampler import _get_params
    except ImportError:  # Optuna moved its internals: the plain sampler
        return GPSampler
    method = getattr(GPSampler, "_sample_relative_impl", None)
    if method is None or list(inspect.signature(method).parameters) != [
            "self", "study", "completed_trials", "running_trials", "search_space"]:
        return GPSampler

    class ConditionalGPSampler(GPSampler):
        """``GPSampler`` that, where one categorical parameter dominates the objective
        (:func:`dominant_categorical`: its values' offsets dwarf the variation inside one value),
        searches that parameter on its own and fits the GP inside its best value only.

        One GP kernel over the whole space, fitted to values that jump between categorical values
        by more than the rest of the function's range, models the jumps and takes the variation
        inside the best value for noise: on Hartmann-6 plus an 8-way categorical worth 5 a value,
        GPSampler found the best value early and then did no better than random search inside it
        (benchmarks/sweeps.py). Here, once a categorical dominates, every one of its values is
        tried once (the untried ones first, at random), then each suggestion takes the value of
        the best trial so far and the GP, fitted to that value's trials alone, picks the other
        parameters (at random until the value has ``INSIDE_STARTUP`` trials). Without such a categorical (no categorical at all, or one whose offsets are
        small beside the rest, as on Branin plus the same categorical) it suggests exactly what
        ``GPSampler`` suggests. Single objective only."""

        inside_startup = INSIDE_STARTUP

        def _sample_relative_impl(self, study: Any, completed_trials: list[Any], running_trials: list[Any],
                                  search_space: dict[str, Any]) -> dict[str, Any]:
            if len(study.directions) == 1 and len(completed_trials) >= 2:
                chosen = self._dominant_choice(study, completed_trials, search_space)
                if chosen is not None:
                    name, value = chosen
                    inside = [t for t in completed_trials if t.params.get(name) == value]
                    rest = {key: d for key, d in search_space.items() if key != name}
                    if len(inside) < self.inside_startup or not rest:
                        return {name: value}  # the others from the independent (random) sampler
                    running = [t for t in running_trials if _get_params(t).get(name) == value]
                    params = super()._sample_relative_impl(study, inside, running, rest)
                    return {**params, name: value}
            return super()._sample_relative_impl(study, completed_trials, running_trials, search_space)

        def _dominant_choice(self, study: Any, completed_trials: list[Any],
                             search_space: dict[str, Any]) -> tuple[str, Any] | None:
            """The dominating categorical and the value to suggest for it, or None."""
            import numpy as np

            values = np.array([t.values[0] for t in completed_trials], dtype=float)
            if not np.isfinite(values).all():
                return None
            sign = 1.0 if study.directions[0] == StudyDirection.MINIMIZE else -1.0
            for name, distribution in search_space.items():
                if not isinstance(distribution, CategoricalDistribution) or len(distribution.choices) < 2:
                    continue
                taken = [t.params.get(name) for t in completed_trials]
                if not dominant_categorical(values, [repr(v) for v in taken]):
                    continue
                untried = [c for c in distribution.choices if c not in taken]
                if untried:
                    return name, untried[self._rng.rng.randint(len(untried))]
                return name, taken[int(np.argmin(sign * values))]
            return None

    return ConditionalGPSampler


_GP_CLASS: Any = None


GP_NEEDS_TORCH = ("Optuna's GPSampler needs PyTorch, which is not installed here (pip install torch; "
                  "a CPU build is enough: https://pytorch.org/get-started/locally/)")


def gp_available() -> bool:
    """Whether Optuna's ``GPSampler`` can run in this environment: it needs PyTorch, which
    ``tracklet[sweeps]`` leaves out (a CPU build is the user's choice, and a plain ``pip install
    torch`` on Linux is a multi-GB CUDA build). Looked up, not imported (seconds of CPU)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def gp_sampler(**options: Any) -> Any:
    """A GP sampler with ``options`` (GPSampler's) that conditions on a dominating categorical
    (``ConditionalGPSampler``); the plain ``GPSampler`` if Optuna's internals changed shape."""
    global _GP_CLASS
    if _GP_CLASS is None:
        _GP_CLASS = _conditional_gp_class()
    # a sweep's space is fixed: the only independent sampling is the sampler's own choice (above)
    options.setdefault("warn_independent_sampling", False)
    return _GP_CLASS(**options)
