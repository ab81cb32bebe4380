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
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tracklet.core.settings import check_name, is_valid_name
from tracklet.errors import MissingDependency, SweepError, SweepNotFound
from tracklet.sweeps import gp_imports, space
from tracklet.sweeps.samplers import GP_NEEDS_TORCH, gp_available, gp_sampler, tpe_sampler
from tracklet.sweeps.spec import SweepSpec, impute_strategy, parse, warn_unused
from tracklet.sweeps.threads import one_thread

DEFAULT_LEASE_TTL = 60.0
STATES = ("running", "paused", "stopped")
# Optuna's default startup (random) trials before a model is fitted; scaled down by the number of
# agents, since Optuna counts only *finished* trials and q agents ask q-1 more before one finishes.
BASE_STARTUP_TRIALS = 10
MIN_STARTUP_TRIALS = 3
GP_MAX_DIMS = 20
LAPSED = "tracklet_lapsed"
IMPUTED = "imputed"  # user attr of a failed trial told an imputed value (metric.impute: its strategy)
WARM_START = "warm_start"  # user attr of a trial added from an existing run
# user attr of a trial suggested at random because the GP's modules were still importing (``prepare``)
GP_LOADING = "random_while_gp_imports"


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
    state: str  # complete, failed, lapsed, pruned
    value: float | None  # the objective (single-objective sweeps)
    message: str
    values: tuple[float, ...] = ()  # every objective's value (multi-objective sweeps: ``value`` is None)


Next = Lease | Wait | Finished


class SweepController(Protocol):
    """What an agent needs from a sweep, whatever the transport (local files, HTTP)."""

    sweep_id: str

    @property
    def spec(self) -> SweepSpec: ...

    def next_trial(self, agent: str, *, ttl: float = DEFAULT_LEASE_TTL, resume_trial: int | None = None) -> Next: ...

    def heartbeat(self, lease: Lease) -> bool: ...

    def finish(self, lease: Lease, exit_code: int, error: str | None = None, *,
               stopped: bool | None = None) -> TrialResult: ...

    def tell(self, lease: Lease, value: float | Sequence[float] | None, error: str | None = None, *,
             stopped: bool | None = None) -> TrialResult: ...

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

    spec = check_engine(parse(config))
    project_name = project or spec.project or os.environ.get("TRACKLET_PROJECT") or DEFAULT_PROJECT
    check_name("project", project_name)
    sweep_id = check_name("sweep id", sweep_id) if sweep_id else _new_sweep_id()
    warn_unused(spec)
    directory = sweeps_dir(root) / sweep_id
    directory.mkdir(parents=True, exist_ok=False)
    (directory / "trials").mkdir()
    optuna = _optuna()
    directions = [("maximize" if m.maximize else "minimize") for m in spec.objectives] or ["minimize"]
    storage = _storage(directory)
    study = optuna.create_study(storage=storage, study_name=sweep_id, directions=directions)
    info: dict[str, Any] = {"id": sweep_id, "project": project_name, "config": spec.config, "created": time.time()}
    if spec.warm_start is not None:
        info["warm_start"] = warm_start(study, spec, Path(root), spec.warm_start.get("project") or project_name)
    storage._backend.flush()
    _write_json(directory / "state.json", {"state": "running"})
    _write_json(directory / "sweep.json", info)
    return sweep_id


def check_engine(spec: SweepSpec) -> SweepSpec:
    """``spec``, if its search can run here; a sweep that asks for ``sampler: gp`` where PyTorch
    is missing is refused as it is created, not at its first GP ask (``method: bayes`` searches
    with TPE there instead, with a warning: W&B configs name bayes without knowing the engine)."""
    if spec.method == "optuna" and (spec.sampler or {}).get("type") == "gp" and not gp_available():
        raise SweepError(f"sampler: gp: {GP_NEEDS_TORCH}")
    return spec


def warm_start(study: Any, spec: SweepSpec, root: Path, project: str) -> dict[str, Any]:
    """Add ``project``'s finished runs under the data root ``root`` to ``study`` as complete trials
    (``add_trial``), before its first suggestion: each run whose config holds every parameter
    inside its distribution (constants at the sweep's value) and that logged the objective(s),
    read as a trial's are. Returns what was added and, per reason, how many runs were skipped."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import iter_runs
    from tracklet.sweeps.objective import objectives_of

    def recorded(run: Any, run_id: str) -> WarmRun:
        return WarmRun(run_id, lambda: run.state, lambda: run.config,
                       lambda: objectives_of(run, project, run_id, spec.objectives))

    return add_warm_trials(study, spec, project,
                           (recorded(RecordedRun(paths), paths.run_id) for paths in iter_runs(root, project)))


def warm_start_from_store(study: Any, spec: SweepSpec, store: Any, project: str) -> dict[str, Any]:
    """:func:`warm_start` from a store's runs (a tracking server's: the runs it ingested, whether
    its logs are files under its data root or ``--logs`` segments): state, config and summary
    from the run's row, the objective from its indexed history (``objective.store_objectives``)."""
    from tracklet.sweeps.objective import store_objectives

    def indexed(row: dict[str, Any]) -> WarmRun:
        return WarmRun(row["run_id"], lambda: row["state"], lambda: row["config"] or {},
                       lambda: store_objectives(store, project, row["run_id"], row["summary"] or {}, row["keys"] or [],
                                                spec.objectives))

    return add_warm_trials(study, spec, project,
                           (indexed(row) for row in store.runs(project, fields=("state", "config", "summary", "keys"))))


@dataclasses.dataclass(frozen=True)
class WarmRun:
    """A run a warm start may add, read lazily: its state, its config, its objective values (or
    why there are none)."""

    run_id: str
    state: Callable[[], str]
    config: Callable[[], Mapping[str, Any]]
    objectives: Callable[[], tuple[list[float] | None, str | None]]


def add_warm_trials(study: Any, spec: SweepSpec, project: str, runs: Iterable[WarmRun]) -> dict[str, Any]:
    """Add each finished run of ``runs`` that fits the sweep to ``study`` as a complete trial (see
    :func:`warm_start`); a run that can't be read is skipped, counted, and never stops the rest."""
    optuna = _optuna()
    distributions = space.distributions(spec)
    added: list[str] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for run in runs:
        try:
            state = run.state()
            if state != "finished":
                skip(f"not finished ({state})")
                continue
            params = space.encode(spec, run.config())
        except ValueError as error:
            skip(f"config outside the space ({str(error).split(':')[0]})")
            continue
        except Exception as error:  # noqa: BLE001 - a damaged run must not stop the sweep's creation
            skip(f"unreadable ({type(error).__name__})")
            continue
        try:
            values, _ = run.objectives() if spec.objectives else ([0.0], None)
        except Exception as error:  # noqa: BLE001 - as above
            skip(f"unreadable ({type(error).__name__})")
            continue
        if values is None:
            skip("objective not logged")
            continue
        path = f"{project}/{run.run_id}"
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values,
            user_attrs={WARM_START: True, "run": path, **({} if spec.objectives else {"no_metric": True})}))
        added.append(path)
    return {"project": project, "added": len(added), "runs": added, "skipped": skipped}


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


def _storage(directory: Path, *, held: bool = False) -> Any:
    """Optuna's ``JournalStorage`` over the sweep's journal file (written once per operation);
    ``held``: the caller holds the sweep's lock (the file is read once while it does)."""
    from optuna.storages import JournalStorage

    from tracklet.sweeps.journal import BatchedJournalFile

    backend = BatchedJournalFile(str(directory / "journal.log"))
    backend.hold(held)
    return JournalStorage(backend)


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


def uses_gp(spec: SweepSpec) -> bool:
    """Whether a sweep of ``spec`` asks Optuna's ``GPSampler`` (``bayes`` up to ``GP_MAX_DIMS``
    parameters where PyTorch is installed, or ``method: optuna`` with ``sampler: gp``)."""
    if spec.method == "bayes":
        return len(spec.searched) <= GP_MAX_DIMS and gp_available()
    return spec.method == "optuna" and (spec.sampler or {}).get("type") == "gp"


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
        self._cached_sampler: tuple[tuple[int, bool], Any] | None = None
        self._max_agents = 1
        self._pruner_obj: Any = None
        self._study_obj: Any = None
        self._plain_sampler: Any = None
        self._holding = False  # inside an operation: the sweep's lock is held

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
            self._holding = True
            if self._storage_obj is not None:
                self._storage_obj._backend.hold(True)
            try:
                yield
                self._flush()
            except BaseException:
                if self._storage_obj is not None:
                    self._storage_obj._backend.discard()
                    self._storage_obj = None  # its memory holds what was discarded: read the file again
                    self._study_obj = None
                raise
            finally:
                self._holding = False
                if self._storage_obj is not None:
                    self._storage_obj._backend.hold(False)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _flush(self) -> None:
        if self._storage_obj is not None:
            self._storage_obj._backend.flush()

    def _study(self) -> Any:
        """The sweep's study, kept between operations with its storage (which reads only the
        journal lines other processes appended since). Its sampler is a plain one here: only
        ``next_trial`` asks with the search's sampler, so no sampler hook runs on a tell (Optuna's
        GridSampler would try to stop an optimize loop there is none of)."""
        optuna = _optuna()
        if self._storage_obj is None:
            self._storage_obj = self._new_storage()
            self._study_obj = None
        if self._study_obj is None:
            self._plain_sampler = optuna.samplers.RandomSampler()
            self._study_obj = optuna.load_study(study_name=self.sweep_id, storage=self._storage_obj,
                                                sampler=self._plain_sampler, pruner=self._pruner())
        self._study_obj.sampler = self._plain_sampler
        return self._study_obj

    def _new_storage(self) -> Any:
        """The study's ``JournalStorage`` (here over ``journal.log``; the server's over a table),
        told whether the operation creating it holds the sweep's lock."""
        return _storage(self.dir, held=self._holding)

    def _write_trial(self, number: int, data: dict[str, Any]) -> None:
        """Where ``init()`` in the trial's process finds its config (``trials/<n>.json``)."""
        _write_json(self.dir / "trials" / f"{number}.json", data, durable=False)

    def uses_gp(self) -> bool:
        """Whether this sweep's sampler is Optuna's ``GPSampler`` (:func:`uses_gp`)."""
        return uses_gp(self._spec)

    def prepare(self) -> threading.Thread | None:
        """Start importing the GP's modules (``gp_imports.GP_MODULES``: torch, SciPy, seconds of
        CPU) on the process's background thread, so that no suggestion pays for them between one
        trial's exit and the next one's start (issue #17: <= 1 s). The agent calls it once as it
        starts, a server as it makes the controller of a GP sweep. Until the thread ends, an ask
        that would fit the GP is served at random instead (:meth:`_gp_loading`); an import that
        fails is left to the first GP ask after it, which imports again and reports it. The
        thread, or None (not a GP sweep, or the modules are imported)."""
        if not self.uses_gp():
            return None
        return gp_imports.start()

    def _fits_gp(self, sampler: Any, complete: int) -> bool:
        """Whether asking ``sampler`` with ``complete`` finished trials fits the GP: a GP sweep
        past the sampler's start-up trials (its ``n_startup_trials``; where Optuna renamed it,
        the fewest any agent count gives). A start-up ask is random and imports nothing."""
        if not self.uses_gp():
            return False
        return complete >= getattr(sampler, "_n_startup_trials", MIN_STARTUP_TRIALS)

    def _gp_loading(self) -> bool:
        """Whether the background GP imports (:meth:`prepare`) still run. An ask that would fit the
        GP then never waits for them (a first GP ask that did spent 1.1 s of its 1.2 s waiting: the
        imports outlast the start-up trials when trials are short or the machine loaded), and
        never imports beside them either (two threads importing SciPy's circular ``stats``/``qmc``
        modules at once get a partly initialised module: ImportError, the agent stopped): it is
        suggested by the GP sampler's independent (random) sampler, as a start-up trial is, and
        the trial says so (user attr ``GP_LOADING``). The GP takes over at the first ask after
        the imports end, fitted to every finished trial, the random ones included."""
        return gp_imports.importing()

    def _pruner(self) -> Any:
        if self._pruner_obj is None:
            self._pruner_obj = build_pruner(self._spec)
        return self._pruner_obj

    @property
    def prunes(self) -> bool:
        """Whether running trials are watched for pruning (``early_terminate`` or ``pruner:``)."""
        return pruning_enabled(self._spec)

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
            counted = sum(1 for t in trials if not t.user_attrs.get(LAPSED) and not t.user_attrs.get(WARM_START))
            cap = self.run_cap()
            if not waiting:
                target = self._target_reached(trials)
                if target is not None:
                    return self._wait_or_finish(running, target)
                if cap is not None and counted >= cap:
                    return self._wait_or_finish(running, f"the run cap ({cap}) is reached")
                if self._spec.method == "grid" and not self._unvisited_grid_points(trials):
                    return self._wait_or_finish(running, "every grid point is done")
            agents = {lease["agent"] for lease in leases.values()} | {agent}
            study.sampler = self._sampler(len(agents), len(trials))
            fits = self._fits_gp(study.sampler, sum(1 for t in trials if t.state == optuna.trial.TrialState.COMPLETE))
            loading = fits and self._gp_loading()
            if loading:  # at random, as a start-up trial: never wait for the GP's imports
                study.sampler = getattr(study.sampler, "_independent_sampler", None) or optuna.samplers.RandomSampler()
                fits = False
            elif fits:  # nobody prepared them (a script's controller): here, one import at a time
                gp_imports.serialized_import(*gp_imports.GP_MODULES)
            with warnings.catch_warnings(), one_thread() if fits else contextlib.nullcontext():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning and friends
                trial = study.ask(space.distributions(self._spec))
            if loading:
                trial.set_user_attr(GP_LOADING, True)
            config = space.decode(self._spec, trial.params)
            run_id = trial_run_id(self.sweep_id, trial.number)
            trial.set_user_attr("run_id", run_id)
            trial.set_user_attr("agent", agent)
            self._flush()  # the trial is on disk before anything refers to it
            self._write_trial(trial.number, {"sweep_id": self.sweep_id, "trial": trial.number, "run_id": run_id,
                                             "project": self.project, "config": config})
            leases[str(trial.number)] = self._lease_record(agent, ttl)
            self._changed("lease granted", trial=trial.number)
            self._save_leases(leases)
            return Lease(self.sweep_id, trial.number, run_id, self.project, config, agent, ttl)

    def heartbeat(self, lease: Lease) -> bool:
        """Renew ``lease``; False when it is no longer the agent's (it lapsed: stop the trial)."""
        with self._locked():
            leases = self._leases()
            record = leases.get(str(lease.trial))
            if record is None or record["agent"] != lease.agent or record["expires"] < time.time():
                return False
            leases[str(lease.trial)] = {**record, **self._lease_record(lease.agent, lease.ttl)}
            self._save_leases(leases)
            return True

    def report(self, lease: Lease, points: Sequence[tuple[int, float]], *, ended: bool = False) -> int | None:
        """Report the trial's metric at the run's steps (``(step, value)``, as logged) and ask the
        pruner after each step, in step order, as a training loop calling ``trial.report`` and
        ``should_prune`` every step would: so a decision never depends on how many points one look
        happened to read (successive halving judges a rung by the value at the last step reported:
        a trial read late in its curve would look better at every rung it passed in that look).
        Reporting stops at the step the pruner stops the trial: that step is returned (None while
        the trial goes on; a trial pruned before returns its prune's step again), and the trial is
        told ``PRUNED`` when it ends (unless the agent says its stop came too late: :meth:`tell`).
        Not the last step of ``points``: a look reading steps past the prune's would name the wrong
        one (the agent's "pruned at step" line). ``ended``: the
        trial's run already ended; all its points are reported (later trials are compared with
        them) and it is not marked pruned. Steps reported before are skipped; non-finite values
        are not reported."""
        optuna = _optuna()
        with self._locked():
            leases = self._leases()
            record = leases.get(str(lease.trial))
            if record is None or record["agent"] != lease.agent:
                return None  # lapsed: the heartbeat stops the trial
            if record.get("pruned") and "pruned_step" in record:
                return int(record["pruned_step"])
            study = self._study()
            trial = optuna.trial.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, lease.trial))
            frozen = study._storage.get_trial(trial._trial_id)
            if record.get("pruned"):  # pruned by an agent of an earlier version: its last step reported
                return max(frozen.intermediate_values, default=-1)
            if frozen.state != optuna.trial.TrialState.RUNNING:
                return None
            known = set(frozen.intermediate_values)
            asking = True
            for step, value in sorted(points):
                if step in known or not math.isfinite(value):
                    continue
                trial.report(float(value), int(step))
                known.add(step)
                if asking and trial.should_prune():
                    if not ended:
                        record["pruned"] = True
                        record["pruned_step"] = int(step)
                        self._changed("trial pruned", trial=lease.trial)
                        self._save_leases(leases)
                        return int(step)
                    asking = False  # past a rung it didn't pass: record no later rung for it
            return None

    def finish(self, lease: Lease, exit_code: int, error: str | None = None, *,
               stopped: bool | None = None) -> TrialResult:
        """The trial's process ended with ``exit_code``: tell the study the run's metric (read
        from its record log), or that the trial failed and why. ``stopped``: see :meth:`tell`."""
        from tracklet.sweeps.objective import failed_run_values, read_objectives

        values = None
        if exit_code == 0 and error is None:  # read before taking the lock: a long log takes a while
            values, error = read_objectives(self.root, self.project, lease.run_id, self._spec.objectives)
        elif error is None:
            error = f"the command exited with status {exit_code}"
        if error is not None:
            values = failed_run_values(self._spec, self.root, self.project, lease.run_id)
        return self.tell(lease, values, error, stopped=stopped)

    def tell(self, lease: Lease, value: float | Sequence[float] | None, error: str | None = None, *,
             stopped: bool | None = None) -> TrialResult:
        """Record how trial ``lease`` ended: its objective ``value`` (one per objective in a
        multi-objective sweep), or ``error`` (failed). A trial the pruner stopped is told
        ``PRUNED``, unless ``stopped`` is False: the agent's stop came after the trial's run had
        ended on its own, so it is told as it ended. A lease that lapsed meanwhile keeps the
        trial failed and the result is discarded."""
        optuna = _optuna()
        objectives = self._spec.objectives
        values = None if value is None else [float(v) for v in value] if isinstance(value, Sequence) else [value]
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
            if record.get("pruned") and stopped is not False:
                study.tell(lease.trial, state=optuna.trial.TrialState.PRUNED)
                self._save_leases(leases)
                frozen = study._storage.get_trial(trial._trial_id)
                step = frozen.last_step
                return TrialResult(lease.trial, "pruned", frozen.value,
                                   f"pruned at step {step}" + ("" if frozen.value is None else
                                                                f" ({objectives[0].name} = {frozen.value:g})"))
            if error is None and objectives:
                if values is None or len(values) != len(objectives) or not all(math.isfinite(v) for v in values):
                    names = ", ".join(m.name for m in objectives)
                    error = f"the objective {names} is {value!r}, not {len(objectives)} finite number(s)"
            imputed = self._imputed(study, values) if error is not None else None
            if error is not None and imputed is not None:
                # W&B's bayes search counts a failed run at an imputed value; the run stays failed.
                strategy = impute_strategy(self._spec)
                message = f"{error} (the search counts it as {objectives[0].name} = {imputed:g}: metric.impute: {strategy})"
                trial.set_user_attr("error", message)  # what sweep show, the dashboard and a server show
                trial.set_user_attr(IMPUTED, strategy)
                study.tell(lease.trial, imputed)
                result = TrialResult(lease.trial, "failed", None, message)
            elif error is not None:
                trial.set_user_attr("error", error)
                study.tell(lease.trial, state=optuna.trial.TrialState.FAIL)
                result = TrialResult(lease.trial, "failed", None, error)
            else:
                if not objectives:
                    trial.set_user_attr("no_metric", True)
                told = values if objectives and values is not None else [0.0]
                study.tell(lease.trial, told if len(told) > 1 else told[0])
                shown = "done" if not objectives else ", ".join(
                    f"{m.name} = {v:g}" for m, v in zip(objectives, told))
                result = TrialResult(lease.trial, "complete", told[0] if len(told) == 1 and objectives else None,
                                     shown, tuple(told) if objectives else ())
            self._save_leases(leases)
            return result

    def _imputed(self, study: Any, values: list[float] | None) -> float | None:
        """The value a failed trial counts as in a bayes search (``metric.impute``, W&B's default
        ``worst``): ``best``/``latest``, the run's own best or last value of the metric (``values``,
        read by the agent: :func:`~tracklet.sweeps.objective.imputable_value`); ``worst``, the
        worst result of the sweep's complete trials. None (the trial fails, unseen by the search)
        where there is no such value."""
        strategy = impute_strategy(self._spec)
        if strategy is None or self._spec.metric is None:
            return None
        if strategy in ("best", "latest"):
            return values[0] if values and len(values) == 1 and math.isfinite(values[0]) else None
        optuna = _optuna()
        told = [trial.values[0] for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if not trial.user_attrs.get("no_metric") and len(trial.values or ()) == 1
                and math.isfinite(trial.values[0])]
        if not told:
            return None
        return (min if self._spec.metric.maximize else max)(told)

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
            # the Pareto front: complete trials no other complete trial dominates (Optuna's own)
            pareto = {t.number for t in study.best_trials} if self._spec.multi_objective else None
        summary = summarize(self._spec, trials, state)
        return {
            "id": self.sweep_id, "project": self.project, "method": self._spec.method,
            "state": summary["state"], "run_cap": summary["run_cap"],
            "metric": dataclasses.asdict(self._spec.metric) if self._spec.metric else None,
            "metrics": [dataclasses.asdict(m) for m in self._spec.objectives],
            "pareto": [row for row in trials if row["trial"] in pareto] if pareto is not None else None,
            "grid_size": self._spec.grid_size() if self._spec.method == "grid" else None,
            "counts": summary["counts"], "best": summary["best"], "trials": trials,
            "leases": [{"trial": int(n), **record} for n, record in sorted(leases.items(), key=lambda i: int(i[0]))],
            "created": self.info.get("created"), "warm_start": self.info.get("warm_start"),
        }

    # ------------------------------------------------------------ internals

    def _lease_record(self, agent: str, ttl: float) -> dict[str, Any]:
        return {"agent": agent, "expires": time.time() + ttl, "ttl": ttl, "host": socket.gethostname()}

    def _target_reached(self, trials: list[Any]) -> str | None:
        """Why no new trial starts when a complete trial of this sweep (not one a warm start
        added) reached the metric's ``target``, as in W&B; else None."""
        metric = self._spec.metric
        if metric is None or metric.target is None:
            return None
        optuna = _optuna()
        for trial in trials:
            if (trial.state == optuna.trial.TrialState.COMPLETE and not trial.user_attrs.get(WARM_START)
                    and not trial.user_attrs.get(IMPUTED) and len(trial.values or ()) == 1 and metric.reached(trial.values[0])):
                return f"trial {trial.number} reached the metric's target ({metric.name} = {trial.values[0]:g})"
        return None

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
        self._changed("lease granted", trial=number, resumed=True)
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
        lapsed: list[int] = []
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
                lapsed.append(number)
            study.tell(number, state=optuna.trial.TrialState.FAIL)
            point = self._grid_point_of(frozen) if self._spec.method == "grid" else None
            if point is not None:
                study.enqueue_trial(point)
            leases.pop(str(number), None)
            changed = True
        if lapsed:
            self._changed("leases lapsed", lapsed=sorted(lapsed))
        if changed:
            self._save_leases(leases)
        return leases

    def _changed(self, what: str, **detail: Any) -> None:
        """An operation, inside its lock, changed the sweep in a way worth a record of its own (a
        lease granted, lapsed leases failed, a trial pruned): nothing here; the server's
        controller audits it (``audit.changed``), so that an agent's polls and beats that change
        nothing write no audit event."""

    def _grid_point_of(self, frozen: Any) -> dict[str, Any] | None:
        """The grid point a lapsed trial held, to run again: its parameters, or, when the journal
        holds only part of the ask that made it (a write cut short: a power cut, or a process
        killed inside a large write), the point of the ``grid_id`` GridSampler gave it. None
        when it got no ``grid_id``: GridSampler never counted its point as taken."""
        keys = [p.key for p in self._spec.searched]
        if all(key in frozen.params for key in keys):
            return dict(frozen.params)
        grid_id = frozen.system_attrs.get("grid_id")
        sampler = self._grid_sampler()
        points = getattr(sampler, "_all_grids", None)  # GridSampler's points, by grid_id
        names = getattr(sampler, "_param_names", None)
        if not isinstance(grid_id, int) or points is None or names is None or not 0 <= grid_id < len(points):
            return None
        return dict(zip(names, points[grid_id]))

    def _grid_sampler(self) -> Any:
        """A GridSampler as every process of this sweep builds it: seeded with the sweep's own seed
        (not a per-process one), so a ``grid_id`` names the same point in every process."""
        return _optuna().samplers.GridSampler(space.grid_search_space(self._spec), seed=self._spec.seed)

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
        """The sampler for this ask: one per controller (process), kept between asks, because
        samplers carry state from ask to ask that the search depends on (GPSampler warm-starts
        its kernel fit from the previous one; a GP refitted from scratch each ask got stuck in
        Hartmann-6's local optima 5 seeds in 10). It is rebuilt only when more agents appear
        (fewer random startup trials). A seeded sweep seeds it from (seed, the trial count at the
        first ask): reproducible for one agent, and no two agent processes share a sequence
        (each ask sees a distinct trial count, under the lock).

        TPE's constant liar (Optuna 5's default: running trials count as bad, so parallel
        agents spread out) is off while this process has seen no other agent at work: with one
        agent the only running trial is the one being asked, so it changes no suggestion, and it
        costs a quarter of an ask at 1,000 trials (a second fetch of the trials, the suggestion
        written to the journal again)."""
        self._max_agents = max(self._max_agents, agents)
        startup = max(MIN_STARTUP_TRIALS, BASE_STARTUP_TRIALS - (self._max_agents - 1))
        key = (startup, self._max_agents > 1)
        if self._cached_sampler is None or self._cached_sampler[0] != key:
            self._cached_sampler = (key, self._new_sampler(startup, trials, liar=key[1]))
        return self._cached_sampler[1]

    def _new_sampler(self, startup: int, trials: int, *, liar: bool = True) -> Any:
        optuna = _optuna()
        spec = self._spec
        seed = None if spec.seed is None else _derived_seed(spec.seed, trials)
        samplers = optuna.samplers
        if spec.method == "grid":
            return self._grid_sampler()
        if spec.method == "random":
            return samplers.RandomSampler(seed=seed)
        if spec.method == "bayes":
            if len(spec.searched) <= GP_MAX_DIMS:
                if gp_available():
                    return gp_sampler(seed=seed, n_startup_trials=startup)
                # Not a failure at the first GP ask, after the start-up trials: TPE, said once.
                warnings.warn(f"method: bayes searches with TPE: {GP_NEEDS_TORCH}", RuntimeWarning, stacklevel=2)
            return tpe_sampler(seed=seed, n_startup_trials=startup, constant_liar=liar)
        options = dict(spec.sampler or {"type": "tpe"})
        kind = options.pop("type")
        if kind == "gp" and not gp_available():
            raise SweepError(f"sampler: gp: {GP_NEEDS_TORCH}")
        if options.get("seed") is not None:
            options["seed"] = _derived_seed(options["seed"], trials)
        elif seed is not None:
            options["seed"] = seed
        if kind in ("tpe", "gp"):
            options.setdefault("n_startup_trials", startup)
        if kind == "tpe":
            options.setdefault("constant_liar", liar)
        classes = {"tpe": tpe_sampler, "gp": samplers.GPSampler, "random": samplers.RandomSampler,
                   "cmaes": samplers.CmaEsSampler, "qmc": samplers.QMCSampler, "nsga2": samplers.NSGAIISampler}
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
            imputed = trial.values[0] if trial.user_attrs.get(IMPUTED) and trial.values else None
            if imputed is not None:
                state = "failed"  # told an imputed value for the search's sake: its run failed
            told = (trial.values if trial.state.name == "COMPLETE" and imputed is None
                    and not trial.user_attrs.get("no_metric") else None)
            values = [v if math.isfinite(v) else None for v in told] if told else None
            value = values[0] if values is not None and len(values) == 1 else None
            try:
                config = space.decode(self._spec, trial.params or trial.system_attrs.get("fixed_params") or {})
            except (KeyError, IndexError, ValueError):
                config = {}
            rows.append({
                "trial": trial.number, "state": state,
                "value": value, "values": values,
                "config": config, "run": trial.user_attrs.get("run") or (
                    f"{self.project}/{trial.user_attrs['run_id']}" if "run_id" in trial.user_attrs else None),
                "warm_start": bool(trial.user_attrs.get(WARM_START)),
                "random_while_gp_imports": bool(trial.user_attrs.get(GP_LOADING)),
                "last_step": trial.last_step,
                "agent": trial.user_attrs.get("agent"), "error": trial.user_attrs.get("error"),
                "imputed": imputed if imputed is None or math.isfinite(imputed) else None,
                "start": trial.datetime_start.timestamp() if trial.datetime_start else None,
                "end": trial.datetime_complete.timestamp() if trial.datetime_complete else None,
            })
        return rows


def pruning_enabled(spec: SweepSpec) -> bool:
    return spec.early_terminate is not None or (spec.pruner is not None and spec.pruner.get("type") != "nop")


def build_pruner(spec: SweepSpec) -> Any:
    """The study's pruner. ``early_terminate: {type: hyperband, min_iter, eta}`` is W&B's
    asynchronous successive halving (bands at ``min_iter * eta**k``; a run below the top ``1/eta``
    of the runs that reached a band stops): Optuna's ``SuccessiveHalvingPruner`` with
    ``min_resource=min_iter``, ``reduction_factor=eta``, on the run's real step. Given
    ``max_iter`` and ``s`` instead, ``min_iter`` is ``max_iter / eta**s``. ``pruner:`` (method
    optuna) names an Optuna pruner and its options. Otherwise none (``NopPruner``; Optuna's own
    default, MedianPruner, would stop runs a user never asked to stop)."""
    optuna = _optuna()
    pruners = optuna.pruners
    early = spec.early_terminate
    if early is not None:
        eta = early.get("eta", 3)
        min_iter = early.get("min_iter")
        if min_iter is None:
            min_iter = max(1, int(early["max_iter"] / eta ** early["s"]))
        return pruners.SuccessiveHalvingPruner(min_resource=int(min_iter), reduction_factor=int(round(eta)),
                                               min_early_stopping_rate=0)
    options = dict(spec.pruner or {"type": "nop"})
    kind = options.pop("type")
    classes = {"nop": pruners.NopPruner, "median": pruners.MedianPruner, "percentile": pruners.PercentilePruner,
               "hyperband": pruners.HyperbandPruner, "successive_halving": pruners.SuccessiveHalvingPruner,
               "threshold": pruners.ThresholdPruner, "patient": pruners.PatientPruner,
               "wilcoxon": pruners.WilcoxonPruner}
    if kind == "patient":
        options.setdefault("wrapped_pruner", None)
    try:
        return classes[kind](**options)
    except (TypeError, ValueError) as error:
        raise SweepError(f"pruner: {error}") from None


def summarize(spec: SweepSpec, trials: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, Any]:
    """From a sweep's trial rows (``_trial_rows``) and ``state.json``: the trials per state (runs
    added by a warm start count as ``warm_start``), the sweep's state (``finished`` once nothing
    runs and the run cap or the grid is exhausted, or a trial reached the metric's ``target``), the run cap and the best complete trial. Pure:
    ``status()`` and the dashboard's reader share it."""
    counts: dict[str, int] = {}
    for row in trials:
        state_name = "warm_start" if row.get("warm_start") else row["state"]  # not runs this sweep started
        counts[state_name] = counts.get(state_name, 0) + 1
    run_state = state.get("state", "running")
    cap = state.get("run_cap", spec.run_cap)
    if run_state == "running" and not counts.get("running") and not counts.get("waiting"):
        settled = sum(n for s, n in counts.items() if s not in ("lapsed", "warm_start"))
        reached = spec.metric is not None and any(
            row["state"] == "complete" and not row.get("warm_start") and spec.metric.reached(row.get("value"))
            for row in trials)
        if reached or (cap is not None and settled >= cap) or (
                spec.method == "grid"
                and sum(counts.get(s, 0) for s in ("complete", "failed", "pruned")) >= spec.grid_size()):
            run_state = "finished"
    scored = [row for row in trials if row["state"] == "complete" and row["value"] is not None]
    maximize = spec.metric is not None and spec.metric.maximize
    best = (max if maximize else min)(scored, key=lambda row: row["value"]) if scored else None
    return {"state": run_state, "run_cap": cap, "counts": counts, "best": best}


def _derived_seed(seed: int, trials: int) -> int:
    """The seed of a sampler built for the ask after ``trials`` trials: ``seed`` itself for the
    first ask of a sweep (one agent then searches exactly as Optuna's sampler with that seed),
    else distinct per (seed, trials), so no two agent processes share a random sequence."""
    import hashlib

    if trials == 0:
        return seed
    return int.from_bytes(hashlib.blake2b(f"{seed}/{trials}".encode(), digest_size=4).digest(), "big")


def open_controller(root: Path | str, sweep_id: str) -> LocalController:
    """The controller for ``sweep_id`` (local mode: the data root)."""
    return LocalController(root, sweep_id)
