"""One sweep's controller: Optuna 5 through ask/tell, trials handed out as leases.

:class:`SweepController` is what an agent talks to: ``next_trial`` (a :class:`Lease`, or
:class:`Wait`, or :class:`Finished`), ``heartbeat`` (renew the lease while the trial runs),
``finish`` (the trial's process ended: read its run's metric and ``tell`` the study). This session
has one implementation, :class:`LocalController`, over the data root with no server: every
operation takes an exclusive ``flock`` on ``<root>/sweeps/<id>/lock``, so any number of agent
processes on the machine share one study and see each other's trials. An HTTP transport (agents
on several machines, the server running the controller) implements the same three calls.

What is on disk (``<root>/sweeps/<sweep_id>/``):

- ``sweep.json``: the id, the project, the validated config, the creation time.
- ``journal.log``: the Optuna study (``JournalStorage`` over ``JournalFileBackend``): an
  append-only log of every ask and tell, replayed by each process, so a controller killed at any
  point loses nothing: what it appended is there, what it didn't was never handed out.
- ``leases.json``: which agent holds which running trial, until when (rewritten atomically).
- ``state.json``: ``running``, ``paused`` or ``stopped``, and a ``run_cap`` set by ``extend``.
- ``trials/<n>.json``: trial ``n``'s config and run id, read by ``tracklet.init()`` in the trial.

Leases: a trial is handed out with a lease of ``ttl`` seconds that the agent renews by heartbeat
while the trial's process runs. Every operation first reaps lapsed leases (the agent was killed,
its machine lost): the trial is told ``FAIL`` (user attr ``tracklet_lapsed``) and, in a grid
sweep, its point is enqueued again, so every point is run exactly once to completion. A running
trial without a lease (the controller died between ``ask`` and writing the lease) is reaped too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tracklet.core.settings import check_name, is_valid_name
from tracklet.errors import MissingDependency, SweepError, SweepNotFound
from tracklet.sweeps import space
from tracklet.sweeps.spec import SweepSpec, parse

DEFAULT_LEASE_TTL = 60.0
STATES = ("running", "paused", "stopped")
# Optuna's default startup (random) trials before a model is fitted; scaled down by the number of
# agents, since Optuna counts only *finished* trials and q agents ask q-1 more before one finishes.
BASE_STARTUP_TRIALS = 10
MIN_STARTUP_TRIALS = 3
GP_MAX_DIMS = 20
LAPSED = "tracklet_lapsed"


@dataclasses.dataclass(frozen=True)
class Lease:
    """A trial handed to an agent: run ``config`` as run ``project/run_id`` while renewing the lease."""

    sweep_id: str
    trial: int
    run_id: str
    project: str
    config: dict[str, Any]
    agent: str
    ttl: float
    resumed: bool = False


@dataclasses.dataclass(frozen=True)
class Wait:
    """Nothing to hand out now (paused, or every remaining point is running elsewhere): ask again."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Finished:
    """The sweep has nothing more for any agent (grid done, run cap reached, stopped)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class TrialResult:
    trial: int
    state: str  # complete, failed, lapsed
    value: float | None
    message: str


Next = Lease | Wait | Finished


class SweepController(Protocol):
    """What an agent needs from a sweep, whatever the transport (local files, HTTP)."""

    sweep_id: str

    @property
    def spec(self) -> SweepSpec: ...

    def next_trial(self, agent: str, *, ttl: float = DEFAULT_LEASE_TTL, resume_trial: int | None = None) -> Next: ...

    def heartbeat(self, lease: Lease) -> bool: ...

    def finish(self, lease: Lease, exit_code: int, error: str | None = None) -> TrialResult: ...

    def tell(self, lease: Lease, value: float | None, error: str | None = None) -> TrialResult: ...

    def release(self, lease: Lease, reason: str) -> None: ...


def sweeps_dir(root: Path) -> Path:
    return Path(root) / "sweeps"


def _new_sweep_id() -> str:
    from tracklet.core.run import new_run_id

    return new_run_id()


def parse_sweep_id(reference: str) -> str:
    """``ID``, ``project/ID`` or W&B's ``entity/project/ID``: the id."""
    sweep_id = str(reference).rstrip("/").rsplit("/", 1)[-1]
    if not is_valid_name(sweep_id):
        raise SweepNotFound(f"{reference!r} is not a sweep id")
    return sweep_id


def create_sweep(root: Path, config: Any, *, project: str | None = None, sweep_id: str | None = None) -> str:
    """Validate ``config``, create the sweep's study under ``root`` and return its id."""
    from tracklet.core.start import DEFAULT_PROJECT

    spec = parse(config)
    project_name = project or spec.project or os.environ.get("TRACKLET_PROJECT") or DEFAULT_PROJECT
    check_name("project", project_name)
    sweep_id = check_name("sweep id", sweep_id) if sweep_id else _new_sweep_id()
    directory = sweeps_dir(root) / sweep_id
    directory.mkdir(parents=True, exist_ok=False)
    (directory / "trials").mkdir()
    optuna = _optuna()
    direction = "maximize" if spec.metric is not None and spec.metric.maximize else "minimize"
    storage = _storage(directory)
    optuna.create_study(storage=storage, study_name=sweep_id, direction=direction)
    storage._backend.flush()
    _write_json(directory / "state.json", {"state": "running"})
    _write_json(directory / "sweep.json", {"id": sweep_id, "project": project_name, "config": spec.config,
                                           "created": time.time()})
    return sweep_id


def list_sweeps(root: Path) -> list[dict[str, Any]]:
    """Every sweep under ``root`` (``sweep.json`` plus its state), newest first."""
    base = sweeps_dir(root)
    found = []
    if base.is_dir():
        for entry in base.iterdir():
            try:
                info = json.loads((entry / "sweep.json").read_text())
                info["state"] = json.loads((entry / "state.json").read_text()).get("state", "running")
            except (OSError, ValueError):
                continue
            found.append(info)
    found.sort(key=lambda info: info.get("created", 0), reverse=True)
    return found


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise MissingDependency(f"sweeps need Optuna 5: pip install 'tracklet[sweeps]' ({error})") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(directory: Path) -> Any:
    """Optuna's ``JournalStorage`` over the sweep's journal file (written once per operation)."""
    from optuna.storages import JournalStorage

    from tracklet.sweeps.journal import BatchedJournalFile

    return JournalStorage(BatchedJournalFile(str(directory / "journal.log")))


def _write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    """Replace ``path`` atomically. ``durable=False`` skips the fsync, for files whose loss in a
    power cut is recovered from (the leases: a trial without one is reaped as lapsed)."""
    from tracklet.core.atomicfile import replace_atomically

    replace_atomically(path, json.dumps(data).encode(), durable=durable)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def trial_run_id(sweep_id: str, trial: int) -> str:
    """The run a trial records: fixed by the trial, so a restarted trial resumes its run."""
    return f"{sweep_id}-{trial}"


class LocalController:
    """The controller over the data root (no server): see the module docstring."""

    def __init__(self, root: Path | str, sweep_id: str) -> None:
        self.root = Path(root)
        self.sweep_id = parse_sweep_id(sweep_id)
        self.dir = sweeps_dir(self.root) / self.sweep_id
        try:
            self.info = json.loads((self.dir / "sweep.json").read_text())
        except FileNotFoundError:
            raise SweepNotFound(f"no sweep {self.sweep_id!r} under {sweeps_dir(self.root)} "
                                "(`tracklet sweep ls` lists the sweeps there)") from None
        self._spec = parse(self.info["config"])
        self.project: str = self.info["project"]
        self._storage_obj: Any = None
        self._cached_sampler: tuple[int, Any] | None = None

    @property
    def spec(self) -> SweepSpec:
        return self._spec

    # ------------------------------------------------------------ the lock and the study

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The sweep's lock, for one operation: what it appended to the journal is written (one
        fsync) before the lock is released; an operation that fails writes nothing."""
        with open(self.dir / "lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
                self._flush()
            except BaseException:
                if self._storage_obj is not None:
                    self._storage_obj._backend.discard()
                    self._storage_obj = None  # its memory holds what was discarded: read the file again
                raise
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _flush(self) -> None:
        if self._storage_obj is not None:
            self._storage_obj._backend.flush()

    def _study(self, sampler: Any = None) -> Any:
        optuna = _optuna()
        if self._storage_obj is None:
            self._storage_obj = _storage(self.dir)
        return optuna.load_study(study_name=self.sweep_id, storage=self._storage_obj, sampler=sampler)

    def _state(self) -> dict[str, Any]:
        return _read_json(self.dir / "state.json", {"state": "running"})

    def _leases(self) -> dict[str, Any]:
        return _read_json(self.dir / "leases.json", {})

    def _save_leases(self, leases: dict[str, Any]) -> None:
        _write_json(self.dir / "leases.json", leases, durable=False)

    def run_cap(self) -> int | None:
        return self._state().get("run_cap", self._spec.run_cap)

    # ------------------------------------------------------------ the agent's calls

    def next_trial(self, agent: str, *, ttl: float = DEFAULT_LEASE_TTL, resume_trial: int | None = None) -> Next:
        """A lease on the next trial for ``agent``; ``resume_trial`` takes over that trial when it
        is still running (a preempted job restarted), else a new one is handed out."""
        if not ttl > 0:
            raise ValueError(f"lease ttl must be > 0 seconds; got {ttl!r}")
        with self._locked():
            study = self._study()
            leases = self._reap(study, self._leases())
            state = self._state().get("state", "running")
            if resume_trial is not None:
                resumed = self._resume(study, leases, agent, ttl, resume_trial)
                if resumed is not None:
                    return resumed
            if state == "stopped":
                return Finished("the sweep was stopped")
            if state == "paused":
                return Wait("the sweep is paused")
            optuna = _optuna()
            trials = study.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
            counted = sum(1 for t in trials if not t.user_attrs.get(LAPSED))
            cap = self.run_cap()
            if not waiting:
                if cap is not None and counted >= cap:
                    return self._wait_or_finish(running, f"the run cap ({cap}) is reached")
                if self._spec.method == "grid" and not self._unvisited_grid_points(trials):
                    return self._wait_or_finish(running, "every grid point is done")
            agents = {lease["agent"] for lease in leases.values()} | {agent}
            study.sampler = self._sampler(len(agents), len(trials))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning and friends
                trial = study.ask(space.distributions(self._spec))
            config = space.decode(self._spec, trial.params)
            run_id = trial_run_id(self.sweep_id, trial.number)
            trial.set_user_attr("run_id", run_id)
            trial.set_user_attr("agent", agent)
            self._flush()  # the trial is on disk before anything refers to it
            _write_json(self.dir / "trials" / f"{trial.number}.json",
                        {"sweep_id": self.sweep_id, "trial": trial.number, "run_id": run_id,
                         "project": self.project, "config": config}, durable=False)
            leases[str(trial.number)] = self._lease_record(agent, ttl)
            self._save_leases(leases)
            return Lease(self.sweep_id, trial.number, run_id, self.project, config, agent, ttl)

    def heartbeat(self, lease: Lease) -> bool:
        """Renew ``lease``; False when it is no longer the agent's (it lapsed: stop the trial)."""
        with self._locked():
            leases = self._leases()
            record = leases.get(str(lease.trial))
            if record is None or record["agent"] != lease.agent or record["expires"] < time.time():
                return False
            leases[str(lease.trial)] = self._lease_record(lease.agent, lease.ttl)
            self._save_leases(leases)
            return True

    def finish(self, lease: Lease, exit_code: int, error: str | None = None) -> TrialResult:
        """The trial's process ended with ``exit_code``: tell the study the run's metric (read
        from its record log), or that the trial failed and why."""
        from tracklet.sweeps.objective import read_objective

        value = None
        if exit_code == 0 and error is None:  # read before taking the lock: a long log takes a while
            value, error = read_objective(self.root, self.project, lease.run_id, self._spec.metric)
        elif error is None:
            error = f"the command exited with status {exit_code}"
        return self.tell(lease, value, error)

    def tell(self, lease: Lease, value: float | None, error: str | None = None) -> TrialResult:
        """Record how trial ``lease`` ended: its objective ``value``, or ``error`` (failed). A
        lease that lapsed meanwhile keeps the trial failed and the result is discarded."""
        optuna = _optuna()
        metric = self._spec.metric
        with self._locked():
            study = self._study()
            leases = self._reap(study, self._leases())
            record = leases.get(str(lease.trial))
            if record is None or record["agent"] != lease.agent:
                return TrialResult(lease.trial, "lapsed", None, f"trial {lease.trial}'s lease lapsed before it ended; "
                                   "its result is discarded (the trial was marked failed)")
            del leases[str(lease.trial)]
            trial = optuna.trial.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, lease.trial))
            if error is None and metric is not None and (value is None or not math.isfinite(value)):
                error = f"the objective {metric.name} is {value!r}, not a finite number"
            if error is not None:
                trial.set_user_attr("error", error)
                study.tell(lease.trial, state=optuna.trial.TrialState.FAIL)
                result = TrialResult(lease.trial, "failed", None, error)
            else:
                if metric is None:
                    trial.set_user_attr("no_metric", True)
                study.tell(lease.trial, 0.0 if value is None else value)
                result = TrialResult(lease.trial, "complete", value,
                                     "done" if metric is None else f"{metric.name} = {value:g}")
            self._save_leases(leases)
            return result

    def release(self, lease: Lease, reason: str) -> None:
        """Give a trial back unfinished (the agent was interrupted): it is treated as a lapsed
        lease at once: failed, and in a grid sweep its point is run again."""
        with self._locked():
            leases = self._leases()
            record = leases.get(str(lease.trial))
            if record is None or record["agent"] != lease.agent:
                return
            record["expires"] = 0.0
            record["reason"] = reason
            self._reap(self._study(), leases)

    # ------------------------------------------------------------ control

    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"sweep state must be one of {', '.join(STATES)}; got {state!r}")
        with self._locked():
            self._write_state(state=state)

    def extend(self, run_cap: int) -> None:
        """Raise (or set) the run cap; a stopped sweep runs again."""
        if not isinstance(run_cap, int) or run_cap < 1:
            raise ValueError(f"run cap must be an integer >= 1; got {run_cap!r}")
        with self._locked():
            self._write_state(run_cap=run_cap, state="running")

    def _write_state(self, **changes: Any) -> None:
        _write_json(self.dir / "state.json", {**self._state(), **changes})

    def status(self) -> dict[str, Any]:
        """The sweep's state, counts per trial state, the best trial, live leases."""
        with self._locked():
            study = self._study()
            leases = self._reap(study, self._leases())
            trials = self._trial_rows(study)
            state = self._state()
        summary = summarize(self._spec, trials, state)
        return {
            "id": self.sweep_id, "project": self.project, "method": self._spec.method,
            "state": summary["state"], "run_cap": summary["run_cap"],
            "metric": dataclasses.asdict(self._spec.metric) if self._spec.metric else None,
            "grid_size": self._spec.grid_size() if self._spec.method == "grid" else None,
            "counts": summary["counts"], "best": summary["best"], "trials": trials,
            "leases": [{"trial": int(n), **record} for n, record in sorted(leases.items(), key=lambda i: int(i[0]))],
            "created": self.info.get("created"),
        }

    # ------------------------------------------------------------ internals

    def _lease_record(self, agent: str, ttl: float) -> dict[str, Any]:
        return {"agent": agent, "expires": time.time() + ttl, "ttl": ttl, "host": socket.gethostname()}

    def _wait_or_finish(self, running: list[Any], reason: str) -> Next:
        if running:
            return Wait(f"{reason} once the {len(running)} running trial(s) end")
        return Finished(reason)

    def _resume(self, study: Any, leases: dict[str, Any], agent: str, ttl: float, number: int) -> Lease | None:
        optuna = _optuna()
        try:
            frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, number))
        except KeyError:
            return None
        if frozen.state != optuna.trial.TrialState.RUNNING:
            return None
        leases[str(number)] = self._lease_record(agent, ttl)
        self._save_leases(leases)
        config = space.decode(self._spec, frozen.params)
        return Lease(self.sweep_id, number, trial_run_id(self.sweep_id, number), self.project, config, agent, ttl,
                     resumed=True)

    def _reap(self, study: Any, leases: dict[str, Any]) -> dict[str, Any]:
        """Fail the running trials whose lease lapsed (or that never got one) and requeue their
        grid points; drop leases of trials that are no longer running."""
        optuna = _optuna()
        now = time.time()
        changed = False
        running = {t.number: t for t in study.get_trials(deepcopy=False)
                   if t.state == optuna.trial.TrialState.RUNNING}
        for number in [n for n in leases if int(n) not in running]:
            del leases[number]
            changed = True
        for number, frozen in running.items():
            record = leases.get(str(number))
            if record is not None and record["expires"] >= now:
                continue
            trial = optuna.trial.Trial(study, frozen._trial_id)
            holder = f"agent {record['agent']}" if record else "no agent"
            trial.set_user_attr(LAPSED, True)
            if record is not None and record.get("reason"):
                trial.set_user_attr("error", f"given back by {holder}: {record['reason']}")
            else:
                trial.set_user_attr("error", f"the lease lapsed ({holder} stopped renewing it): the agent or its "
                                             "machine died; the trial was marked failed")
            study.tell(number, state=optuna.trial.TrialState.FAIL)
            if self._spec.method == "grid":
                study.enqueue_trial(dict(frozen.params))
            leases.pop(str(number), None)
            changed = True
        if changed:
            self._save_leases(leases)
        return leases

    def _grid_point(self, trial: Any) -> tuple[Any, ...] | None:
        params = trial.params if trial.params else trial.system_attrs.get("fixed_params") or {}
        try:
            return tuple(params[p.key] for p in self._spec.searched)
        except KeyError:
            return None

    def _unvisited_grid_points(self, trials: list[Any]) -> set[tuple[Any, ...]]:
        optuna = _optuna()
        taken = set()
        for trial in trials:
            if trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get(LAPSED):
                continue  # its point was enqueued again
            point = self._grid_point(trial)
            if point is not None:
                taken.add(point)
        return set(space.grid_points(self._spec)) - taken

    def _sampler(self, agents: int, trials: int) -> Any:
        """The sampler for this ask. An unseeded sweep keeps one per startup count (samplers cache
        what they derive from the study, e.g. TPE's search space). A seeded sweep builds one per ask
        with a seed derived from the trial count, so neither two asks nor two agent processes
        repeat a random sequence."""
        spec = self._spec
        startup = max(MIN_STARTUP_TRIALS, BASE_STARTUP_TRIALS - (agents - 1))
        seeded = spec.seed is not None or (spec.sampler or {}).get("seed") is not None
        if seeded:
            return self._new_sampler(startup, trials)
        if self._cached_sampler is None or self._cached_sampler[0] != startup:
            self._cached_sampler = (startup, self._new_sampler(startup, trials))
        return self._cached_sampler[1]

    def _new_sampler(self, startup: int, trials: int) -> Any:
        optuna = _optuna()
        spec = self._spec
        seed = None if spec.seed is None else _derived_seed(spec.seed, trials)
        samplers = optuna.samplers
        if spec.method == "grid":
            return samplers.GridSampler(space.grid_search_space(spec), seed=seed)
        if spec.method == "random":
            return samplers.RandomSampler(seed=seed)
        if spec.method == "bayes":
            if len(spec.searched) <= GP_MAX_DIMS:
                return samplers.GPSampler(seed=seed, n_startup_trials=startup)
            return samplers.TPESampler(seed=seed, n_startup_trials=startup)
        options = dict(spec.sampler or {"type": "tpe"})
        kind = options.pop("type")
        if options.get("seed") is not None:
            options["seed"] = _derived_seed(options["seed"], trials)
        elif seed is not None:
            options["seed"] = seed
        if kind in ("tpe", "gp"):
            options.setdefault("n_startup_trials", startup)
        classes = {"tpe": samplers.TPESampler, "gp": samplers.GPSampler, "random": samplers.RandomSampler,
                   "cmaes": samplers.CmaEsSampler, "qmc": samplers.QMCSampler}
        try:
            return classes[kind](**options)
        except TypeError as error:
            raise SweepError(f"sampler: {error}") from None

    def _trial_rows(self, study: Any) -> list[dict[str, Any]]:
        rows = []
        for trial in study.get_trials(deepcopy=False):
            state = trial.state.name.lower()
            if state == "fail":
                state = "lapsed" if trial.user_attrs.get(LAPSED) else "failed"
            value = trial.value if trial.state.name == "COMPLETE" and not trial.user_attrs.get("no_metric") else None
            try:
                config = space.decode(self._spec, trial.params or trial.system_attrs.get("fixed_params") or {})
            except (KeyError, IndexError, ValueError):
                config = {}
            rows.append({
                "trial": trial.number, "state": state,
                "value": value if value is None or math.isfinite(value) else None,
                "config": config, "run": f"{self.project}/{trial.user_attrs['run_id']}"
                if "run_id" in trial.user_attrs else None,
                "agent": trial.user_attrs.get("agent"), "error": trial.user_attrs.get("error"),
                "start": trial.datetime_start.timestamp() if trial.datetime_start else None,
                "end": trial.datetime_complete.timestamp() if trial.datetime_complete else None,
            })
        return rows


def summarize(spec: SweepSpec, trials: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, Any]:
    """From a sweep's trial rows (``_trial_rows``) and ``state.json``: the trials per state, the
    sweep's state (``finished`` once nothing runs and the run cap or the grid is exhausted), the
    run cap and the best complete trial. Pure: ``status()`` and the dashboard's reader share it."""
    counts: dict[str, int] = {}
    for row in trials:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    run_state = state.get("state", "running")
    cap = state.get("run_cap", spec.run_cap)
    if run_state == "running" and not counts.get("running") and not counts.get("waiting"):
        settled = sum(n for s, n in counts.items() if s != "lapsed")
        if (cap is not None and settled >= cap) or (
                spec.method == "grid" and counts.get("complete", 0) + counts.get("failed", 0) >= spec.grid_size()):
            run_state = "finished"
    scored = [row for row in trials if row["state"] == "complete" and row["value"] is not None]
    maximize = spec.metric is not None and spec.metric.maximize
    best = (max if maximize else min)(scored, key=lambda row: row["value"]) if scored else None
    return {"state": run_state, "run_cap": cap, "counts": counts, "best": best}


def _derived_seed(seed: int, trials: int) -> int:
    """The seed of the sampler built for the ask after ``trials`` trials: distinct per (seed,
    trials), so neither two asks nor two seeds share a random sequence."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"{seed}/{trials}".encode(), digest_size=4).digest(), "big")


def open_controller(root: Path | str, sweep_id: str) -> LocalController:
    """The controller for ``sweep_id`` (local mode: the data root)."""
    return LocalController(root, sweep_id)
