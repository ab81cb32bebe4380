"""W&B's sweep configuration, read and validated: :func:`parse` turns a YAML/dict config into a
:class:`SweepSpec`, or raises :class:`~tracklet.errors.SweepSpecError` whose lines each name the
field at fault (``parameters.lr.min: must be < max (got 0.1 >= 0.01)``).

The accepted shape is W&B's (``wandb/sweeps``'s ``schema.json``): ``method`` (grid, random, bayes),
``metric: {name, goal}``, ``parameters`` (``value``, ``values`` [+ ``probabilities``], ``min``/``max``,
a ``distribution``, nested ``parameters``), ``early_terminate: {type: hyperband, ...}``, ``run_cap``,
``program``, ``command`` with W&B's macros. tracklet adds ``method: optuna`` (with ``sampler:`` and
``pruner:``; W&B's ``method: custom`` + ``scheduler: {engine: optuna}`` reads the same) and a
top-level ``seed``. A parameter without ``distribution`` gets W&B's inferred one: ``values`` →
categorical, ``value`` → constant, ``min``/``max`` both integers → int_uniform, else uniform.

This module imports neither Optuna nor YAML: validating a config is cheap.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from tracklet.errors import SweepSpecError

METHODS = ("grid", "random", "bayes", "optuna")
GOALS = ("minimize", "maximize")
# distribution -> (required fields, optional fields with their defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {}),
    "categorical_w_probabilities": (("values", "probabilities"), {}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
# Sampled in W&B's exponent form: min/max are natural-log exponents.
EXPONENT_FORMS = ("log_uniform", "q_log_uniform", "inv_log_uniform")
OPTUNA_SAMPLERS = ("tpe", "gp", "random", "cmaes", "qmc", "nsga2")
# Samplers that can't search more than one objective (Optuna's CmaEsSampler).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
OPTUNA_PRUNERS = ("nop", "median", "percentile", "hyperband", "successive_halving", "threshold", "patient",
                  "wilcoxon")
MAX_GRID_POINTS = 1_000_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TOP_LEVEL = {"method", "metric", "parameters", "early_terminate", "run_cap", "command", "program", "project",
              "entity", "name", "description", "controller", "apiVersion", "kind", "job", "image_uri", "scheduler",
              "sampler", "pruner", "seed", "metrics", "warm_start"}
_PARAM_KEYS = {"distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma", "a", "b",
               "parameters"}


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"
    target: float | None = None
    # W&B's bayes search: the value a failed (or metric-less) run counts as (worst, best, latest).
    impute: str | None = None
    # W&B's bayes search with a running run's metric so far: not implemented (see ``unused_keys``).
    impute_while_running: str | None = None

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"

    def reached(self, value: float | None) -> bool:
        """Whether ``value`` reaches ``target`` (W&B's: a run reaching it finishes the sweep)."""
        if self.target is None or value is None:
            return False
        return value >= self.target if self.maximize else value <= self.target


@dataclasses.dataclass(frozen=True)
class Param:
    """One swept (or constant) parameter. ``path`` is its place in the nested config
    (``("optimizer", "lr")``); ``fields`` its distribution's fields with defaults filled."""

    path: tuple[str, ...]
    distribution: str
    fields: Mapping[str, Any]

    @property
    def name(self) -> str:
        """Dotted, as shown to users (``optimizer.lr``)."""
        return ".".join(self.path)

    @property
    def key(self) -> str:
        """The name the engine knows it by: ``/`` joins nested names (W&B's names may hold dots)."""
        return "/".join(self.path)

    @property
    def constant(self) -> bool:
        return self.distribution == "constant"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep configuration. ``config`` is the normalized dict (every parameter's
    ``distribution`` and defaults filled): :func:`parse` of it gives an equal spec."""

    method: str
    metric: Metric | None
    params: tuple[Param, ...]
    config: Mapping[str, Any]
    run_cap: int | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    project: str | None = None
    early_terminate: Mapping[str, Any] | None = None
    sampler: Mapping[str, Any] | None = None
    pruner: Mapping[str, Any] | None = None
    seed: int | None = None
    metrics: tuple[Metric, ...] = ()
    warm_start: Mapping[str, Any] | None = None  # {"project": name or None}

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """What the study optimizes: ``metric``, or each of ``metrics`` (multi-objective)."""
        return (self.metric,) if self.metric is not None else self.metrics

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def searched(self) -> tuple[Param, ...]:
        """The parameters the engine chooses (constants are not among them)."""
        return tuple(p for p in self.params if not p.constant)

    def grid_size(self) -> int:
        size = 1
        for param in self.searched:
            size *= len(grid_values(param))
        return size


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def grid_values(param: Param) -> list[Any]:
    """The finite set a grid search walks for ``param`` (its values, an int range, a q-grid)."""
    f = param.fields
    if param.distribution == "constant":
        return [f["value"]]
    if param.distribution in ("categorical", "categorical_w_probabilities"):
        return list(f["values"])
    if param.distribution == "int_uniform":
        return list(range(f["min"], f["max"] + 1))
    if param.distribution == "q_uniform":
        count = (f["max"] - f["min"]) / f["q"]
        return [_quantize(f["min"] + i * f["q"], f["q"]) for i in range(round(count) + 1)]
    raise ValueError(f"{param.name}: {param.distribution} has no finite grid")


def _quantize(value: float, q: float) -> float:
    """W&B's quantization: the nearest multiple of ``q`` (an int when both are whole)."""
    quantized = round(value / q) * q
    if float(q).is_integer() and float(quantized).is_integer():
        return float(int(quantized)) if isinstance(q, float) else int(quantized)
    return quantized


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def parse(config: Any) -> SweepSpec:
    """Validate a W&B sweep config (a dict, or YAML/JSON text) and return the spec."""
    if isinstance(config, (str, bytes)):
        config = load_text(config)
    if isinstance(config, SweepSpec):
        return config
    if not isinstance(config, Mapping):
        raise SweepSpecError(f"sweep config: must be a mapping (YAML/JSON object); got {type(config).__name__}")
    problems = _Problems()
    normalized: dict[str, Any] = {}
    for key in config:
        if key not in _TOP_LEVEL:
            problems.add(str(key), f"unknown key (known: {', '.join(sorted(_TOP_LEVEL))})")
    method = config.get("method")
    scheduler = config.get("scheduler")
    if method == "custom":
        if isinstance(scheduler, Mapping) and scheduler.get("engine") == "optuna":
            method = "optuna"
        else:
            problems.add("method", "'custom' needs scheduler: {engine: optuna} (tracklet's engine is Optuna)")
    elif scheduler is not None and not (isinstance(scheduler, Mapping) and scheduler.get("engine") == "wandb"):
        problems.add("scheduler", "only {engine: optuna} with method: custom, or {engine: wandb}, is accepted")
    if method is None:
        problems.add("method", f"is required: one of {', '.join(METHODS)}")
    elif method not in METHODS and method != "custom":
        problems.add("method", f"must be one of {', '.join(METHODS)}; got {method!r}")

    metric = _metric(config.get("metric"), problems) if "metric" in config else None
    metrics: tuple[Metric, ...] = ()
    if "metrics" in config:
        if "metric" in config:
            problems.add("metrics", "give metric: (one objective) or metrics: (several), not both")
        metrics = _metrics(config["metrics"], problems)
    if method in ("bayes", "optuna") and metric is None and "metric" not in config and "metrics" not in config:
        problems.add("metric", f"is required for method: {method} (name: the key to optimize, goal: minimize|maximize; "
                               "or metrics: [{name, goal}, ...] for several objectives)")

    params: list[Param] = []
    if "parameters" not in config:
        problems.add("parameters", "is required: at least one parameter")
    else:
        _parameters(config["parameters"], (), problems, params)
        normalized["parameters"] = _normalized_parameters(params)

    run_cap = config.get("run_cap")
    if run_cap is not None and (not _is_int(run_cap) or run_cap < 1):
        problems.add("run_cap", f"must be an integer >= 1; got {run_cap!r}")
    program = config.get("program")
    if program is not None and (not isinstance(program, str) or not program):
        problems.add("program", f"must be a path (a non-empty string); got {program!r}")
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not command:
            problems.add("command", "must be a non-empty list of strings (macros: ${env} ${interpreter} "
                                    "${program} ${args} ...)")
        else:
            for index, item in enumerate(command):
                if not isinstance(item, str):
                    problems.add(f"command[{index}]", f"must be a string; got {item!r}")
            if "${program}" in command and program is None:
                problems.add("command", "uses ${program} but the config has no program:")
    project = config.get("project")
    if project is not None and not isinstance(project, str):
        problems.add("project", f"must be a string; got {project!r}")
    seed = config.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        problems.add("seed", f"must be an integer >= 0; got {seed!r}")
    early = _early_terminate(config["early_terminate"], problems) if "early_terminate" in config else None
    sampler = pruner = None
    if method == "optuna":
        sampler = _choice(config.get("sampler", "tpe"), "sampler", OPTUNA_SAMPLERS, problems)
        pruner = _choice(config.get("pruner", "nop"), "pruner", OPTUNA_PRUNERS, problems)
        if len(metrics) > 1 and sampler is not None and sampler.get("type") in SINGLE_OBJECTIVE_SAMPLERS:
            several = ", ".join(name for name in OPTUNA_SAMPLERS if name not in SINGLE_OBJECTIVE_SAMPLERS)
            problems.add("sampler", f"{sampler['type']} searches one objective; metrics: has {len(metrics)} "
                                    f"(use one of {several})")
        if len(metrics) > 1 and pruner is not None and pruner.get("type") != "nop":
            problems.add("pruner", "Optuna prunes single-objective trials only; metrics: has several objectives "
                                   "(use pruner: nop)")
    else:
        for key in ("sampler", "pruner"):
            if key in config:
                problems.add(key, f"is only read with method: optuna (method is {method!r})")
    warm_start = _warm_start(config["warm_start"], method, problems) if "warm_start" in config else None
    prunes = early is not None or (pruner is not None and pruner.get("type") != "nop")
    if prunes and metric is None and "metric" not in config and "metrics" not in config:
        problems.add("early_terminate" if early is not None else "pruner",
                     "pruning needs metric: {name, goal} (the logged value runs are compared on)")
    if len(metrics) > 1 and early is not None:
        problems.add("early_terminate", "Optuna prunes single-objective trials only; metrics: has several "
                                        "objectives (remove early_terminate:)")
    if method == "grid" and params and not problems.lines:
        for param in params:
            if param.constant:
                continue
            try:
                grid_values(param)
            except ValueError:
                problems.add(f"parameters.{param.name}", "grid search needs a finite set of values (value, values, "
                             f"int_uniform or q_uniform); got distribution {param.distribution}")
        if not problems.lines:
            size = SweepSpec("grid", None, tuple(params), {}).grid_size()
            if size > MAX_GRID_POINTS:
                problems.add("parameters", f"the grid has {size:,} points; at most {MAX_GRID_POINTS:,} are allowed")
    if problems.lines:
        raise SweepSpecError(problems.lines)

    for key, value in config.items():
        if key != "parameters":
            normalized[key] = value
    if metric is not None:
        normalized["metric"] = {k: v for k, v in dataclasses.asdict(metric).items() if v is not None}
    if metrics:
        normalized["metrics"] = [{k: v for k, v in dataclasses.asdict(m).items() if v is not None} for m in metrics]
    if early is not None:
        normalized["early_terminate"] = early
    if sampler is not None:
        normalized["sampler"], normalized["pruner"] = sampler, pruner
    if "warm_start" in config:
        normalized["warm_start"] = warm_start if warm_start is not None else False
    return SweepSpec(
        method=str(method), metric=metric, params=tuple(params), config=normalized, run_cap=run_cap,
        program=program, command=tuple(command) if command else None, project=project, early_terminate=early,
        sampler=sampler, pruner=pruner, seed=seed, metrics=metrics, warm_start=warm_start,
    )


def impute_strategy(spec: SweepSpec) -> str | None:
    """How a failed trial of ``spec`` counts in the search, as W&B's bayes search does
    (``metric.impute``, default ``worst``); None where nothing is imputed (not ``method: bayes``,
    or several objectives)."""
    if spec.method != "bayes" or spec.metric is None:
        return None
    return spec.metric.impute or "worst"


def unused_keys(spec: SweepSpec) -> list[str]:
    """One line per key of ``spec``'s config that tracklet accepts (W&B's configs carry it) but
    does not act on, saying so; :func:`warn_unused` warns with them as a sweep is created."""
    config = spec.config
    lines = []
    metric: Mapping[str, Any] = config["metric"] if isinstance(config.get("metric"), Mapping) else {}
    if "impute" in metric and spec.method != "bayes":
        lines.append(f"metric.impute: read by method: bayes only (method is {spec.method}); a failed run "
                     "is not counted in this search")
    while_running = metric.get("impute_while_running")
    if while_running not in (None, False, "false"):
        lines.append(f"metric.impute_while_running: {while_running} is not implemented: a running run counts "
                     "as pending in tracklet's search, not with its metric so far")
    for index, item in enumerate(config.get("metrics") or ()):
        for key in ("impute", "impute_while_running"):
            if isinstance(item, Mapping) and key in item:
                lines.append(f"metrics[{index}].{key}: not read (a multi-objective sweep leaves failed runs "
                             "out of the search)")
    early = config.get("early_terminate")
    if isinstance(early, Mapping) and "strict" in early:
        lines.append("early_terminate.strict: not read (W&B's hyperband does not read it either)")
    for key in ("job", "image_uri"):
        if key in config:
            lines.append(f"{key}: W&B Launch sweeps are not supported; the agent runs program/command")
    controller = config.get("controller")
    if isinstance(controller, Mapping) and controller.get("type") not in (None, "local"):
        lines.append(f"controller.type: {controller.get('type')!r} is not read; tracklet's controller runs with "
                     "the agents (local) or on the tracking server")
    if "entity" in config:
        lines.append("entity: not read (tracklet has projects, no entities)")
    return lines


def warn_unused(spec: SweepSpec) -> None:
    """Warn once per key that ``spec`` sets and tracklet does not act on (:func:`unused_keys`)."""
    import warnings

    from tracklet.errors import TrackletWarning

    for line in unused_keys(spec):
        warnings.warn(f"sweep config: {line}", TrackletWarning, stacklevel=3)


def load_text(text: str | bytes) -> Any:
    """A YAML (or JSON) document as Python data; a syntax error names its line."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError as error:
        from tracklet.errors import MissingDependency

        raise MissingDependency(f"reading a sweep config needs PyYAML: pip install 'tracklet[sweeps]' ({error})") from None

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SweepSpecError(f"sweep config: not valid YAML: {error}") from None


def _metrics(value: Any, problems: _Problems) -> tuple[Metric, ...]:
    """``metrics: [{name, goal}, ...]``: the objectives of a multi-objective sweep."""
    if not isinstance(value, list) or not value:
        problems.add("metrics", f"must be a non-empty list of {{name, goal}} mappings; got {value!r}")
        return ()
    found: list[Metric] = []
    for index, item in enumerate(value):
        metric = _metric(item, problems, f"metrics[{index}]")
        if metric is None:
            continue
        if any(m.name == metric.name for m in found):
            problems.add(f"metrics[{index}].name", f"{metric.name!r} is already an objective")
            continue
        found.append(metric)
    return tuple(found) if len(found) == len(value) else ()


def _metric(value: Any, problems: _Problems, where: str = "metric") -> Metric | None:
    if not isinstance(value, Mapping):
        problems.add(where, f"must be a mapping with name: and goal:; got {value!r}")
        return None
    for key in value:
        if key not in ("name", "goal", "target", "impute", "impute_while_running"):
            problems.add(f"{where}.{key}", "unknown key (known: name, goal, target, impute, impute_while_running)")
    name, goal, target = value.get("name"), value.get("goal", "minimize"), value.get("target")
    ok = True
    if not isinstance(name, str) or not name:
        problems.add(f"{where}.name", f"is required: the logged key to optimize; got {name!r}")
        ok = False
    if goal not in GOALS:
        problems.add(f"{where}.goal", f"must be minimize or maximize; got {goal!r}")
        ok = False
    if target is not None and not _is_number(target):
        problems.add(f"{where}.target", f"must be a number; got {target!r}")
        ok = False
    for key, allowed in (("impute", ("latest", "best", "worst")),
                         ("impute_while_running", ("latest", "best", "worst", "false", False))):
        if key in value and value[key] not in allowed:
            problems.add(f"{where}.{key}", f"must be one of {', '.join(map(str, allowed))}; got {value[key]!r}")
    if not ok:
        return None
    while_running = value.get("impute_while_running")
    return Metric(str(name), str(goal), float(target) if target is not None else None,
                  impute=value.get("impute") if value.get("impute") in ("latest", "best", "worst") else None,
                  impute_while_running=while_running if while_running in ("latest", "best", "worst") else None)


def _parameters(value: Any, prefix: tuple[str, ...], problems: _Problems, out: list[Param]) -> None:
    where = ".".join(("parameters",) + tuple(p for part in prefix for p in (part, "parameters")))
    if not isinstance(value, Mapping) or not value:
        problems.add(where, f"must be a non-empty mapping of parameter names to definitions; got {value!r}")
        return
    for name, definition in value.items():
        path = prefix + (str(name),)
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.add(at, "a parameter name must start with a letter or '_' and hold only letters, digits, "
                             "'_', '.' and '-'")
            continue
        if not isinstance(definition, Mapping):
            problems.add(at, f"must be a mapping (value:, values:, min:/max:, distribution:); got {definition!r}")
            continue
        unknown = [k for k in definition if k not in _PARAM_KEYS]
        if unknown:
            problems.add(f"{at}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_PARAM_KEYS))})")
            continue
        if "parameters" in definition:
            if len(definition) > 1:
                problems.add(at, "a nested parameters: mapping can't be combined with other keys")
                continue
            _parameters(definition["parameters"], path, problems, out)
            continue
        param = _parameter(path, at, definition, problems)
        if param is not None:
            out.append(param)


def _infer(definition: Mapping[str, Any]) -> str | None:
    if "value" in definition:
        return "constant"
    if "values" in definition:
        return "categorical_w_probabilities" if "probabilities" in definition else "categorical"
    if "min" in definition and "max" in definition:
        return "int_uniform" if _is_int(definition["min"]) and _is_int(definition["max"]) else "uniform"
    return None


def _parameter(path: tuple[str, ...], at: str, definition: Mapping[str, Any], problems: _Problems) -> Param | None:
    distribution = definition.get("distribution") or _infer(definition)
    if distribution is None:
        problems.add(at, "give value:, values:, min: and max:, or a distribution:")
        return None
    if distribution not in DISTRIBUTIONS:
        problems.add(f"{at}.distribution", f"unknown distribution {distribution!r} (known: "
                                           f"{', '.join(DISTRIBUTIONS)})")
        return None
    required, optional = DISTRIBUTIONS[distribution]
    before = len(problems.lines)
    for key in definition:
        if key != "distribution" and key not in required and key not in optional:
            problems.add(f"{at}.{key}", f"is not a field of distribution {distribution}")
    for key in required:
        if key not in definition:
            problems.add(f"{at}.{key}", f"is required for distribution {distribution}")
    if len(problems.lines) > before:
        return None
    fields: dict[str, Any] = {**optional, **{k: v for k, v in definition.items() if k != "distribution"}}
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in fields and not _is_number(fields[key]):
            problems.add(f"{at}.{key}", f"must be a finite number; got {fields[key]!r}")
    if len(problems.lines) > before:
        return None
    if "min" in fields and not fields["min"] < fields["max"]:
        problems.add(f"{at}.min", f"must be < max (got {fields['min']!r} >= {fields['max']!r})")
    if distribution == "int_uniform":
        for key in ("min", "max"):
            if not _is_int(fields[key]):
                problems.add(f"{at}.{key}", f"must be an integer for int_uniform; got {fields[key]!r}")
    if distribution in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values") \
            and fields["min"] <= 0:
        problems.add(f"{at}.min", f"must be > 0 for {distribution} (a log scale); got {fields['min']!r}")
    for key in ("q", "sigma", "a", "b"):
        if key in fields and not fields[key] > 0:
            problems.add(f"{at}.{key}", f"must be > 0; got {fields[key]!r}")
    if distribution == "q_uniform" and not problems.lines[before:]:
        steps = (fields["max"] - fields["min"]) / fields["q"]
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            problems.add(f"{at}.q", f"max - min must be a whole number of q steps (got ({fields['max']!r} - "
                                    f"{fields['min']!r}) / {fields['q']!r} = {steps:g})")
    if "values" in fields:
        values = fields["values"]
        if not isinstance(values, list) or not values:
            problems.add(f"{at}.values", f"must be a non-empty list; got {values!r}")
        elif "probabilities" in fields:
            weights = fields["probabilities"]
            if not isinstance(weights, list) or len(weights) != len(values):
                problems.add(f"{at}.probabilities", f"must be a list as long as values ({len(values)}); "
                                                    f"got {weights!r}")
            elif not all(_is_number(w) and w >= 0 for w in weights) or not sum(weights) > 0:
                problems.add(f"{at}.probabilities", f"must be numbers >= 0 with a positive sum; got {weights!r}")
            elif abs(sum(weights) - 1.0) > 1e-6:
                problems.add(f"{at}.probabilities", f"must sum to 1; got {sum(weights):g}")
    if len(problems.lines) > before:
        return None
    return Param(path, distribution, fields)


def _normalized_parameters(params: list[Param]) -> dict[str, Any]:
    """The ``parameters`` mapping back from the parsed parameters (nested where they were)."""
    root: dict[str, Any] = {}
    for param in params:
        node = root
        for part in param.path[:-1]:
            node = node.setdefault(part, {"parameters": {}})["parameters"]
        node[param.path[-1]] = {"distribution": param.distribution, **param.fields}
    return root


def _early_terminate(value: Any, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or value.get("type") != "hyperband":
        problems.add("early_terminate.type", f"must be hyperband; got {value!r}")
        return None
    result: dict[str, Any] = {"type": "hyperband", "eta": 3}  # strict: only when given (nothing reads it)
    for key, item in value.items():
        if key not in ("type", "min_iter", "max_iter", "s", "eta", "strict"):
            problems.add(f"early_terminate.{key}", "unknown key (known: type, min_iter, max_iter, s, eta, strict)")
        elif key in ("min_iter", "max_iter") and (not _is_int(item) or item < 1):
            problems.add(f"early_terminate.{key}", f"must be an integer >= 1; got {item!r}")
        elif key == "eta" and not (_is_number(item) and item > 1):
            problems.add("early_terminate.eta", f"must be a number > 1; got {item!r}")
        elif key == "s" and not (_is_number(item) and item > 0):
            problems.add("early_terminate.s", f"must be a number > 0; got {item!r}")
        elif key == "strict" and not isinstance(item, bool):
            problems.add("early_terminate.strict", f"must be true or false; got {item!r}")
        result[key] = item
    if "min_iter" not in value and not ("max_iter" in value and "s" in value):
        problems.add("early_terminate", "give min_iter, or max_iter and s")
    return result


def _warm_start(value: Any, method: Any, problems: _Problems) -> dict[str, Any] | None:
    """``warm_start: true`` (the sweep's project) or ``{project: NAME}``; ``false``: none."""
    if value is False or value is None:
        return None
    options = {"project": None} if value is True else dict(value) if isinstance(value, Mapping) else None
    if options is None:
        problems.add("warm_start", f"must be true, false or {{project: NAME}}; got {value!r}")
        return None
    for key in options:
        if key != "project":
            problems.add(f"warm_start.{key}", "unknown key (known: project)")
    project = options.get("project")
    if project is not None and (not isinstance(project, str) or not project):
        problems.add("warm_start.project", f"must be a project name; got {project!r}")
    if method == "grid":
        problems.add("warm_start", "a grid sweep runs every point itself; warm start is for random, bayes and optuna")
    return {"project": project}


def _choice(value: Any, field: str, allowed: tuple[str, ...], problems: _Problems) -> dict[str, Any] | None:
    """``sampler: tpe`` or ``sampler: {type: tpe, seed: 1, n_startup_trials: 5}``."""
    options = {"type": value} if isinstance(value, str) else dict(value) if isinstance(value, Mapping) else None
    if options is None or options.get("type") not in allowed:
        problems.add(f"{field}.type" if isinstance(value, Mapping) else field,
                     f"must be one of {', '.join(allowed)}; got {value!r}")
        return None
    for key in options:
        if not isinstance(key, str) or not key.isidentifier():
            problems.add(f"{field}.{key}", "option names must be identifiers")
    return options
