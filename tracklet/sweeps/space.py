"""W&B distributions as Optuna distributions, and the engine's values back as config values.

What the engine searches is not always the value the program receives:

- ``uniform``, ``int_uniform``, ``log_uniform_values`` map directly (``FloatDistribution``,
  ``IntDistribution``, ``log=True``); W&B's exponent forms (``log_uniform``, ``inv_log_uniform``:
  min/max are natural-log exponents) are log-uniform between ``exp(min)`` and ``exp(max)``
  (``inv_log_uniform`` between ``exp(-max)`` and ``exp(-min)``); ``q_uniform`` is a stepped float.
- ``values`` are searched as the *index* of the value (a ``CategoricalDistribution`` over
  ``0..n-1``), so lists, dicts and mixed types are fine and ``1`` and ``True`` stay distinct.
- ``normal``, ``log_normal``, ``beta``, ``categorical_w_probabilities`` and the quantized forms
  are searched as a float ``u`` in (0, 1), "CDF space", and decoded through the distribution's
  inverse CDF (scipy's ``ppf``), as W&B does internally; ``q_*`` round the result to a multiple of q.

Optuna is imported by the functions that need it, never with this module.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from typing import Any

from tracklet.sweeps import gp_imports
from tracklet.sweeps.spec import Param, SweepSpec, _quantize, grid_values

_EPS = 1e-9  # CDF space is (0, 1): the ppf of 0 or 1 is infinite
_CDF_SPACE = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta", "categorical_w_probabilities",
              "q_log_uniform", "q_log_uniform_values")


def distribution(param: Param, method: str) -> Any:
    """The Optuna distribution the engine samples ``param`` from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    f = param.fields
    kind = param.distribution
    if method == "grid":
        if kind == "int_uniform":
            return IntDistribution(f["min"], f["max"])
        return CategoricalDistribution(tuple(range(len(grid_values(param)))))
    if kind == "categorical":
        return CategoricalDistribution(tuple(range(len(f["values"]))))
    if kind == "int_uniform":
        return IntDistribution(f["min"], f["max"])
    if kind == "uniform":
        return FloatDistribution(float(f["min"]), float(f["max"]))
    if kind == "q_uniform":
        return FloatDistribution(float(f["min"]), float(f["max"]), step=float(f["q"]))
    if kind in ("log_uniform_values", "inv_log_uniform_values"):
        return FloatDistribution(float(f["min"]), float(f["max"]), log=True)
    if kind == "log_uniform":
        return FloatDistribution(math.exp(f["min"]), math.exp(f["max"]), log=True)
    if kind == "inv_log_uniform":
        return FloatDistribution(math.exp(-f["max"]), math.exp(-f["min"]), log=True)
    if kind in _CDF_SPACE:
        return FloatDistribution(_EPS, 1.0 - _EPS)
    raise ValueError(f"{param.name}: no engine distribution for {kind}")  # constants never get here


def distributions(spec: SweepSpec) -> dict[str, Any]:
    return {param.key: distribution(param, spec.method) for param in spec.searched}


def grid_search_space(spec: SweepSpec) -> dict[str, list[Any]]:
    """Optuna ``GridSampler``'s search space: every point's engine value per parameter."""
    space: dict[str, list[Any]] = {}
    for param in spec.searched:
        if param.distribution == "int_uniform":
            space[param.key] = list(range(param.fields["min"], param.fields["max"] + 1))
        else:
            space[param.key] = list(range(len(grid_values(param))))
    return space


def grid_points(spec: SweepSpec) -> list[tuple[Any, ...]]:
    """Every grid point as engine values, in ``spec.searched`` order (for accounting)."""
    space = grid_search_space(spec)
    return list(itertools.product(*(space[p.key] for p in spec.searched)))


def decode_value(param: Param, engine_value: Any, method: str) -> Any:
    """The value the program receives for ``param`` when the engine chose ``engine_value``."""
    f = param.fields
    kind = param.distribution
    if kind == "constant":
        return f["value"]
    if method == "grid":
        return engine_value if kind == "int_uniform" else grid_values(param)[int(engine_value)]
    if kind == "categorical":
        return f["values"][int(engine_value)]
    if kind == "int_uniform":
        return int(engine_value)
    if kind in ("uniform", "log_uniform_values", "inv_log_uniform_values", "log_uniform", "inv_log_uniform"):
        return float(engine_value)
    if kind == "q_uniform":
        return _quantize(float(engine_value), f["q"])
    u = min(max(float(engine_value), _EPS), 1.0 - _EPS)
    if kind == "categorical_w_probabilities":
        cumulative = list(itertools.accumulate(f["probabilities"]))
        index = bisect.bisect_right(cumulative, u * cumulative[-1])
        return f["values"][min(index, len(f["values"]) - 1)]
    if kind == "q_log_uniform_values":
        low, high = math.log(f["min"]), math.log(f["max"])
        return _quantize(math.exp(low + u * (high - low)), f["q"])
    if kind == "q_log_uniform":
        return _quantize(math.exp(f["min"] + u * (f["max"] - f["min"])), f["q"])
    stats = _scipy_stats()
    if kind in ("normal", "q_normal"):
        value = float(stats.norm.ppf(u, loc=f["mu"], scale=f["sigma"]))
    elif kind in ("log_normal", "q_log_normal"):
        value = float(math.exp(stats.norm.ppf(u, loc=f["mu"], scale=f["sigma"])))
    else:  # beta, q_beta
        value = float(stats.beta.ppf(u, f["a"], f["b"]))
    return _quantize(value, f["q"]) if kind.startswith("q_") else value


def _scipy_stats() -> Any:
    """``scipy.stats``, imported one thread at a time (``gp_imports``: a server's request may
    decode while the GP's modules import in the background)."""
    gp_imports.serialized_import("scipy.stats")
    import scipy.stats  # type: ignore[import-untyped]

    return scipy.stats


def decode(spec: SweepSpec, engine_params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config: every parameter (constants included) at its place in the nested dict."""
    config: dict[str, Any] = {}
    for param in spec.params:
        value = param.fields["value"] if param.constant else decode_value(param, engine_params[param.key],
                                                                              spec.method)
        node = config
        for part in param.path[:-1]:
            node = node.setdefault(part, {})
        node[param.path[-1]] = value
    return config


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: ``1``, ``1.0`` and ``True`` are three different choices."""
    return a == b and (type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                              and not isinstance(a, bool) and not isinstance(b, bool)))


def encode_value(param: Param, value: Any, method: str) -> Any:
    """The engine value whose decoding is ``value`` (the inverse of :func:`decode_value`), for a
    finished run's config added to a study (warm start). Raises ``ValueError`` when ``value`` is
    outside ``param``'s support."""
    f = param.fields
    kind = param.distribution
    if kind in ("categorical", "categorical_w_probabilities") or method == "grid":
        choices = grid_values(param) if method == "grid" else list(f["values"])
        index = next((i for i, choice in enumerate(choices) if _same(choice, value)), None)
        if index is None:
            raise ValueError(f"{param.name}: {value!r} is not one of its values")
        if method == "grid" and kind == "int_uniform":
            return int(value)
        if kind == "categorical_w_probabilities" and method != "grid":
            cumulative = [0.0, *itertools.accumulate(f["probabilities"])]
            low, high = cumulative[index] / cumulative[-1], cumulative[index + 1] / cumulative[-1]
            if not high > low:
                raise ValueError(f"{param.name}: {value!r} has probability 0")
            return min(max((low + high) / 2, _EPS), 1.0 - _EPS)
        return index
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{param.name}: {value!r} is not a finite number")
    if kind == "int_uniform":
        if value != int(value):
            raise ValueError(f"{param.name}: {value!r} is not an integer")
        engine: Any = int(value)
    elif kind in _CDF_SPACE:
        engine = _cdf(param, float(value))
    else:
        engine = float(value)
    dist = distribution(param, method)
    if not dist._contains(dist.to_internal_repr(engine)):
        raise ValueError(f"{param.name}: {value!r} is outside [{f['min']}, {f['max']}]" if "min" in f
                         else f"{param.name}: {value!r} is outside its distribution")
    return engine


def _cdf(param: Param, value: float) -> float:
    """Where ``value`` sits in ``param``'s CDF space (the inverse of the ppf decoding)."""
    f = param.fields
    kind = param.distribution
    if kind in ("q_log_uniform_values", "q_log_uniform"):
        if value <= 0:
            raise ValueError(f"{param.name}: {value!r} is not > 0")
        low, high = (math.log(f["min"]), math.log(f["max"])) if kind == "q_log_uniform_values" else (f["min"], f["max"])
        u = (math.log(value) - low) / (high - low)
    else:
        stats = _scipy_stats()
        if kind in ("normal", "q_normal"):
            u = float(stats.norm.cdf(value, loc=f["mu"], scale=f["sigma"]))
        elif kind in ("log_normal", "q_log_normal"):
            if value <= 0:
                raise ValueError(f"{param.name}: {value!r} is not > 0")
            u = float(stats.norm.cdf(math.log(value), loc=f["mu"], scale=f["sigma"]))
        else:
            u = float(stats.beta.cdf(value, f["a"], f["b"]))
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"{param.name}: {value!r} is outside its distribution")
    return min(max(u, _EPS), 1.0 - _EPS)


def encode(spec: SweepSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's (nested) config as engine values for every searched parameter; raises
    ``ValueError`` naming the first parameter that is missing, outside its support, or (for a
    constant) different from the sweep's value."""
    engine: dict[str, Any] = {}
    for param in spec.params:
        found, value = _lookup(config, param.path)
        if not found:
            raise ValueError(f"{param.name}: not in the run's config")
        if param.constant:
            if not _same(value, param.fields["value"]):
                raise ValueError(f"{param.name}: {value!r}, the sweep holds it at {param.fields['value']!r}")
            continue
        engine[param.key] = encode_value(param, value, spec.method)
    return engine


def _lookup(config: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    """``config``'s value at ``path``: nested (``{"opt": {"lr": ..}}``) or flat with dots (``"opt.lr"``)."""
    node: Any = config
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            dotted = ".".join(path)
            return (True, config[dotted]) if dotted in config else (False, None)
        node = node[part]
    return True, node
