"""A sweep as the dashboard shows it: read without the sweep's lock, never changing a byte.

:func:`project_sweeps` lists a project's sweeps (method, metric, state, trial counts, the best
trial); :func:`read_sweep` gives one sweep's spec, every trial (state, parameters, value, run,
agent, start and end), the best-so-far series and the agents; :func:`param_importance` the
parameters' importance for the metric (Optuna's PED-ANOVA evaluator), computed once per number of
complete trials.

Nothing here takes ``<root>/sweeps/<id>/lock`` or writes: the study is replayed from
``journal.log`` by a :class:`~tracklet.sweeps.journal_read.JournalReader` (whole lines only, so a
reader sees the study as of a finished operation), ``state.json`` and ``leases.json`` are
replaced atomically by their writers. Unlike :meth:`LocalController.status`, nothing is reaped: a
trial whose lease lapsed shows as running with its lease's expiry in the past until an agent's
next operation marks it failed. Each sweep's replayed study is kept (up to ``MAX_READERS``
sweeps) and catches up by reading only what was appended, so polling a sweep costs what changed.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import threading
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

from tracklet.core import forksafe
from tracklet.errors import SweepError, SweepNotFound
from tracklet.sweeps.controller import LocalController, list_sweeps, parse_sweep_id, summarize, sweeps_dir

MAX_READERS = 64  # sweeps whose replayed study is kept between requests
MAX_LISTED = 50  # sweeps a project's listing summarises (the newest): each summary replays a journal
MAX_TRIALS = 10_000  # trials one answer lists (the newest); counts and the best cover them all
MIN_IMPORTANCE_TRIALS = 4  # complete trials before importance means anything
LOG_DISTRIBUTIONS = frozenset({"log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values",
                               "q_log_uniform", "q_log_uniform_values", "log_normal", "q_log_normal"})
CATEGORICAL = frozenset({"categorical", "categorical_w_probabilities"})


def _flat_params(spec: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The searched parameters' values, by dotted name (what the trials table and axes show)."""
    found = {}
    for param in spec.searched:
        node: Any = config
        for part in param.path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            found[param.name] = node
    return found


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class SweepReader:
    """One sweep's spec and replayed study, shared by requests (thread-safe). By default a local
    sweep under ``root``; a server sweep passes its ``controller`` (which reads the sweep's state and
    leases), a ``backend`` factory (a read-only journal backend) and ``version`` (what changes when
    the journal grows)."""

    def __init__(self, root: Path, sweep_id: str, *, controller: Any = None,
                 backend: Callable[[], Any] | None = None, version: Callable[[], Any] | None = None) -> None:
        from tracklet.sweeps.journal_read import JournalReader, file_identity

        if controller is None:
            try:
                controller = LocalController(root, sweep_id)  # reads sweep.json: no lock, no write
            except (ValueError, KeyError, TypeError) as error:  # a damaged sweep.json, a config that no longer validates
                raise SweepError(f"{sweeps_dir(root) / sweep_id / 'sweep.json'}: {error}") from None
        self.controller = controller
        self.sweep_id = self.controller.sweep_id
        self.journal = str(self.controller.dir / "journal.log")
        self.identity = file_identity(self.journal) if backend is None else None
        journal = self.journal
        self._backend = backend or (lambda: JournalReader(journal))
        self._version = version or (lambda: _file_size(journal))
        self._lock = threading.Lock()
        self._study: Any = None
        self._importance_lock = threading.Lock()
        self._importance: tuple[int, dict[str, Any]] | None = None
        self._rows: tuple[Any, list[dict[str, Any]]] | None = None  # (journal version, rows): unchanged, not rebuilt

    def _load(self) -> Any:
        if self._study is None:
            from optuna.storages import JournalStorage

            from tracklet.sweeps.controller import _optuna

            optuna = _optuna()
            storage = JournalStorage(self._backend())
            try:
                self._study = optuna.load_study(study_name=self.sweep_id, storage=storage,
                                                sampler=optuna.samplers.RandomSampler())
            except KeyError:
                raise SweepError(f"sweep {self.sweep_id}'s journal has no study yet") from None
        return self._study

    def trial_rows(self) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """Every trial (the controller's rows, replayed up to now), the state file, the leases."""
        with self._lock:
            size = self._version()  # before replaying: a later append only makes it stale
            if self._rows is None or self._rows[0] != size:
                self._rows = (size, self.controller._trial_rows(self._load()))
            rows = self._rows[1]
        return rows, self.controller._state(), self.controller._leases()

    def summary(self) -> dict[str, Any]:
        rows, state, _ = self.trial_rows()
        return self._summary(rows, state)

    def _summary(self, rows: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, Any]:
        spec = self.controller.spec
        status = summarize(spec, rows, state)
        best = status["best"]
        return {
            "id": self.sweep_id, "project": self.controller.project, "method": spec.method,
            "state": status["state"],
            "metric": {"name": spec.metric.name, "goal": spec.metric.goal} if spec.metric else None,
            "metrics": [{"name": m.name, "goal": m.goal} for m in spec.objectives],
            "created": self.controller.info.get("created"), "run_cap": status["run_cap"],
            "grid_size": spec.grid_size() if spec.method == "grid" else None,
            "trial_count": len(rows), "counts": status["counts"],
            "best": None if best is None else {"trial": best["trial"], "value": best["value"],
                                               "run_id": _run_id(best.get("run"))},
        }

    def detail(self) -> dict[str, Any]:
        rows, state, leases = self.trial_rows()
        spec = self.controller.spec
        data = self._summary(rows, state)
        maximize = spec.metric is not None and spec.metric.maximize
        series = []
        best: float | None = None
        for row in rows:  # trial-number order
            value = _finite(row["value"]) if row["state"] == "complete" else None
            if value is None:
                continue
            best = value if best is None else (max(best, value) if maximize else min(best, value))
            series.append({"trial": row["trial"], "value": value, "best": best})
        trials = []
        for row in rows[-MAX_TRIALS:]:
            lease = leases.get(str(row["trial"])) if row["state"] == "running" else None
            trial = {
                "number": row["trial"], "state": row["state"], "value": _finite(row["value"]),
                "params": _flat_params(spec, row.get("config") or {}),
                "run_id": _run_id(row.get("run")), "agent": row.get("agent"),
                "start": row.get("start"), "end": row.get("end"), "error": row.get("error"),
                "lease_expires": lease.get("expires") if isinstance(lease, dict) else None,
                "last_step": row.get("last_step"),
                "random_while_gp_imports": bool(row.get("random_while_gp_imports")),
            }
            if row.get("values") is not None:  # several objectives
                trial["values"] = [_finite(v) for v in row["values"]]
            trials.append(trial)
        agents: dict[str, float] = {}
        for row in rows:
            if row.get("agent"):
                agents.setdefault(row["agent"], row.get("start") or math.inf)
        data.update({
            "pareto": self.pareto() if spec.multi_objective else None,
            "config": dict(spec.config),
            "parameters": [_parameter(param) for param in spec.searched],
            "trials": trials,
            "best_so_far": series[-MAX_TRIALS:],
            "agents": sorted(agents, key=lambda name: (agents[name], name)),
        })
        return data

    def pareto(self) -> list[int]:
        """The Pareto front of a multi-objective sweep: the numbers of the complete trials no other
        complete trial beats in every objective (Optuna's ``best_trials``, as ``sweep show`` locally)."""
        with self._lock:
            study = self._load()
            return sorted(trial.number for trial in study.best_trials)

    def importance(self) -> dict[str, Any]:
        """PED-ANOVA importances over the complete trials, cached per count of complete trials."""
        spec = self.controller.spec
        rows, _, _ = self.trial_rows()
        complete = sum(1 for row in rows if row["state"] == "complete" and _finite(row["value"]) is not None)
        result: dict[str, Any] = {"evaluator": "PED-ANOVA", "trials": complete, "importances": [], "note": None}
        if spec.metric is None:
            return {**result, "note": "the sweep has no metric"}
        if not spec.searched:
            return {**result, "note": "the sweep searches no parameter"}
        if complete < MIN_IMPORTANCE_TRIALS:
            return {**result, "note": f"importance needs {MIN_IMPORTANCE_TRIALS} complete trials; "
                                      f"{complete} so far"}
        with self._importance_lock:  # one computation per sweep at a time; others wait for its result
            if self._importance is not None and self._importance[0] == complete:
                return self._importance[1]
            result = {**result, **self._compute_importance()}
            self._importance = (complete, result)
            return result

    def _compute_importance(self) -> dict[str, Any]:
        from tracklet.sweeps import gp_imports
        from tracklet.sweeps.controller import _optuna

        optuna = _optuna()
        # one thread at a time: scikit-learn's SciPy may be importing on the GP's thread (gp_imports)
        gp_imports.serialized_import(*gp_imports.IMPORTANCE_MODULES)
        names = {param.key: param.name for param in self.controller.spec.searched}
        with self._lock:
            study = self._load()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning, few-trials warnings
                scores = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True)
        except (ValueError, RuntimeError) as error:
            return {"note": f"importance could not be computed: {error}"}
        return {"importances": [{"name": names.get(key, key), "importance": float(score)}
                                for key, score in scores.items() if math.isfinite(score)]}


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _run_id(path: str | None) -> str | None:
    return path.split("/", 1)[1] if path and "/" in path else path


def _parameter(param: Any) -> dict[str, Any]:
    """A searched parameter as the dashboard's axes need it: its values if categorical, log scale."""
    described: dict[str, Any] = {"name": param.name, "distribution": param.distribution,
                                 "log": param.distribution in LOG_DISTRIBUTIONS}
    if param.distribution in CATEGORICAL:
        described["values"] = list(param.fields["values"])
    return described


_readers: collections.OrderedDict[tuple[str, str], SweepReader] = collections.OrderedDict()
_readers_lock = forksafe.lock()


def reader(root: Path | str, sweep_id: str) -> SweepReader:
    """The kept reader of ``sweep_id`` under ``root`` (a new one when its journal file is new)."""
    from tracklet.sweeps.journal_read import file_identity

    sweep_id = parse_sweep_id(sweep_id)
    key = (str(Path(root).resolve()), sweep_id)
    return kept_reader(key, lambda: SweepReader(Path(root), sweep_id),
                       lambda found: found.identity == file_identity(found.journal))


def kept_reader(key: tuple[str, str], make: Callable[[], SweepReader],
                current: Callable[[SweepReader], bool] = lambda found: True) -> SweepReader:
    """The reader kept under ``key`` while ``current`` says it still is, else a new one (``make``)."""
    with _readers_lock:
        found = _readers.get(key)
        if found is not None and current(found):
            _readers.move_to_end(key)
            return found
    made = make()
    with _readers_lock:
        _readers[key] = made
        _readers.move_to_end(key)
        while len(_readers) > MAX_READERS:
            _readers.popitem(last=False)
    return made


@dataclasses.dataclass(frozen=True)
class Listed:
    """A sweep of the listing: its summary, or why it can't be read (one sweep never breaks the list)."""

    summary: dict[str, Any]
    error: str | None = None


def project_sweeps(root: Path | str, project: str, *, extra: list[dict[str, Any]] | None = None,
                   open_reader: Callable[[str], SweepReader] | None = None) -> tuple[list[Listed], int]:
    """``project``'s newest ``MAX_LISTED`` sweeps under ``root``, each summarised (or its error),
    and how many it has in all. ``extra``: more sweeps (a server's: ``sweep.json``'s fields and
    ``state``), read through ``open_reader``."""
    local = [info for info in list_sweeps(Path(root))
             if info.get("project") == project and isinstance(info.get("id"), str)]
    others = [{**info, "_extra": True} for info in extra or []]
    found = sorted(local + others, key=lambda info: info.get("created") or 0, reverse=True)
    return summarise(found[:MAX_LISTED], lambda info: (
        open_reader(info["id"]) if info.get("_extra") and open_reader else reader(root, info["id"]))), len(found)


def summarise(infos: list[dict[str, Any]], open_reader: Callable[[dict[str, Any]], SweepReader]) -> list[Listed]:
    """Each sweep of ``infos`` (``sweep.json``'s fields and ``state``) summarised through the reader
    ``open_reader`` gives it, or, when it can't be read, listed with why."""
    listed = []
    for info in infos:
        try:
            listed.append(Listed(open_reader(info).summary()))
        except Exception as error:  # noqa: BLE001 - a damaged sweep is reported in its row, not raised
            listed.append(Listed({"id": info["id"], "project": info.get("project", ""), "method": "",
                                  "state": info.get("state", ""), "metric": None, "metrics": [],
                                  "created": info.get("created"), "run_cap": None, "grid_size": None,
                                  "trial_count": 0, "counts": {}, "best": None}, f"can't read the sweep: {error}"))
    return listed


def read_sweep(root: Path | str, project: str, sweep_id: str, *, found: SweepReader | None = None) -> dict[str, Any]:
    """One sweep of ``project`` in full (:meth:`SweepReader.detail`); ``SweepNotFound`` if it isn't
    there. ``found``: the sweep's reader (a server sweep's), else the local sweep under ``root``."""
    found = found or reader(root, sweep_id)
    if found.controller.project != project:
        raise SweepNotFound(f"no sweep {sweep_id!r} in project {project!r}")
    return found.detail()


def param_importance(root: Path | str, project: str, sweep_id: str, *,
                     found: SweepReader | None = None) -> dict[str, Any]:
    found = found or reader(root, sweep_id)
    if found.controller.project != project:
        raise SweepNotFound(f"no sweep {sweep_id!r} in project {project!r}")
    return found.importance()
