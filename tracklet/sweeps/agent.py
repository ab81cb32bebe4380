"""The agent: take a trial, run it, report how it ended, again.

``Agent.run_commands()`` starts the sweep's command per trial (``tracklet agent``);
``Agent.run_function(f)`` calls ``f`` in this process per trial (``wandb.agent(function=f)``),
each trial starting with no run live in the process (a live one is finished first, as W&B's
agent tears its session down before each trial) and ending every run the function left live.
Either way, while a trial runs a heartbeat thread renews its lease every ``ttl/3`` seconds; a
lease found lost (the trial was declared lapsed) stops the trial's process. The trial's process
gets ``TRACKLET_SWEEP_ID``, ``TRACKLET_SWEEP_TRIAL`` and ``TRACKLET_DIR``, so ``tracklet.init()``
(or ``wandb.init()``) in it records the trial's run with the trial's config; on Linux it is also
tied to the agent (``PR_SET_PDEATHSIG``, ``sweeps/launcher.py``): an agent killed with ``kill -9`` takes its trials with
it, so a trial whose lease lapsed is not still running when its point is retried elsewhere.

``--gpus 0-3 --gpus-per-trial 2`` runs one worker thread per GPU slice (here two), each pinning
``CUDA_VISIBLE_DEVICES`` for its trials. The agent stops after ``count`` trials, when the sweep has
nothing more (grid done, run cap, stopped), or after ``max_failures`` failed trials in a row (a
command that can't start must not burn the budget), raising :class:`~tracklet.errors.SweepError`.
Inside a SLURM job (``tracklet agent``) the agent is named after the job (``slurm_agent_name``):
the job requeued after a preemption first takes back the trial it was running, within its lease.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet import errors
from tracklet.core import threads as signal_threads
from tracklet.errors import SweepError
from tracklet.sweeps import launcher
from tracklet.sweeps.command import build_command, check_command
from tracklet.sweeps.controller import DEFAULT_LEASE_TTL, Finished, Lease, LocalController, TrialResult, Wait

if TYPE_CHECKING:
    from tracklet.sweeps.remote import RemoteController

DEFAULT_MAX_FAILURES = 5
PRUNED_TAG = "pruned"  # the tag a function trial's run gets when the pruner stopped it
DEFAULT_PRUNE_INTERVAL = 1.0  # seconds between looks at a running trial's metric (the run flushes each second)
KILL_DELAY = 10.0  # seconds between SIGTERM and SIGKILL when a trial must stop


def lease_ttl_from_env() -> float:
    """``$TRACKLET_SWEEP_LEASE_TTL`` (seconds), else the default (60)."""
    text = os.environ.get("TRACKLET_SWEEP_LEASE_TTL")
    if not text:
        return DEFAULT_LEASE_TTL
    try:
        ttl = float(text)
    except ValueError:
        ttl = -1.0
    if not ttl > 0:
        raise ValueError(f"TRACKLET_SWEEP_LEASE_TTL={text!r} is not a positive number of seconds")
    return ttl


def parse_gpus(text: str) -> list[str]:
    """``"0-3"``, ``"0,2,5"``, ``"0-1,4"`` → device ids, in order, no repeats."""
    found: list[str] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit() and int(low) <= int(high):
            items = [str(i) for i in range(int(low), int(high) + 1)]
        elif not dash and part.isdigit():
            items = [part]
        else:
            raise ValueError(f"--gpus: {part!r} is not a device number or a range like 0-3")
        found.extend(i for i in items if i not in found)
    if not found:
        raise ValueError("--gpus: no devices given")
    return found


def gpu_slices(gpus: list[str] | None, per_trial: int) -> list[str | None]:
    """One ``CUDA_VISIBLE_DEVICES`` value per worker (``[None]``: one worker, devices untouched)."""
    if per_trial < 1:
        raise ValueError(f"--gpus-per-trial must be >= 1; got {per_trial}")
    if not gpus:
        return [None]
    if len(gpus) < per_trial:
        raise ValueError(f"--gpus-per-trial {per_trial} needs at least {per_trial} devices; --gpus gives {len(gpus)}")
    return [",".join(gpus[i:i + per_trial]) for i in range(0, len(gpus) - per_trial + 1, per_trial)]


@dataclasses.dataclass
class AgentReport:
    results: list[TrialResult] = dataclasses.field(default_factory=list)
    stopped_because: str = ""


def slurm_agent_name(environ: Mapping[str, str] | None = None) -> str | None:
    """``slurm-<job id>.<task rank>`` inside a SLURM job, else None. SLURM requeues a preempted
    job with the environment it was submitted with and the same job id, so an agent named after
    it finds the trial it was running (``Agent._held_trial``) and resumes it."""
    environ = os.environ if environ is None else environ
    job = environ.get("SLURM_JOB_ID")
    if not job or not job.isdigit():
        return None
    rank = environ.get("SLURM_PROCID", "0")
    return f"slurm-{job}.{rank if rank.isdigit() else 0}"


class Agent:
    """Runs trials of one sweep; see the module docstring."""

    def __init__(self, controller: LocalController | RemoteController, *, count: int | None = None, ttl: float | None = None,
                 max_failures: int = DEFAULT_MAX_FAILURES, poll_interval: float = 1.0,
                 gpus: list[str] | None = None, gpus_per_trial: int = 1,
                 log: Callable[[str], None] | None = None, resume_trial: int | None = None,
                 prune_interval: float = DEFAULT_PRUNE_INTERVAL, name: str | None = None,
                 command_env: Mapping[str, str] | None = None) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1; got {count}")
        if max_failures < 1:
            raise ValueError(f"max failures must be >= 1; got {max_failures}")
        self.controller = controller
        self.count = count
        self.ttl = lease_ttl_from_env() if ttl is None else ttl
        self.max_failures = max_failures
        self.poll_interval = poll_interval
        self.slices = gpu_slices(gpus, gpus_per_trial)
        self.log = log or (lambda line: print(f"tracklet agent: {line}", file=sys.stderr, flush=True))
        self.resume_trial = resume_trial
        self.prune_interval = prune_interval
        self.name = name
        self.command_env = dict(command_env or {})  # more variables for command trials (W&B's agent: the redirect)
        self._function_running = threading.Event()
        self._prune_lock = threading.Lock()
        self.report = AgentReport()
        self._lock = threading.Lock()
        self._started = 0
        self._failures_in_row = 0
        self._last_failure = ""
        self._stop = threading.Event()
        self._interrupted = False
        self._errors: list[BaseException] = []
        self._processes: dict[int, subprocess.Popen] = {}
        self._stop_sent: dict[int, bool] = {}  # trials the pruner's stop was sent to (a signal, TrialPruned)
        self._function_pruned: dict[int, bool] = {}  # function trials stopped: whether TrialPruned landed

    # ------------------------------------------------------------ entry points

    def run_commands(self) -> AgentReport:
        """Run the sweep's command per trial until done (see the module docstring)."""
        spec = self.controller.spec
        check_command(spec.command, spec.program)  # a command that can't be built fails before any trial
        return self._run_workers(self._execute_command)

    def run_function(self, function: Callable[[], Any]) -> AgentReport:
        """Call ``function`` per trial in this process (one worker: runs are one at a time here)."""
        self.slices = [None]
        return self._run_workers(lambda lease, devices, worker: self._execute_function(function, lease))

    def _held_trial(self) -> int | None:
        """The running trial an agent of this name (``name``, e.g. a SLURM job's) took, if one
        is: the trial to resume when the same job starts again."""
        prefix = f"{self.name}-"
        for row in self.controller.status()["trials"]:
            if row["state"] == "running" and str(row.get("agent") or "").startswith(prefix):
                return int(row["trial"])
        return None

    # ------------------------------------------------------------ the loop

    def _run_workers(self, execute: Callable[[Lease, str | None, int], tuple[int, str | None]]) -> AgentReport:
        host = socket.gethostname() if self.name is None else f"{self.name}-{socket.gethostname()}"
        if self.resume_trial is None and self.name is not None:
            self.resume_trial = self._held_trial()
        prepare = getattr(self.controller, "prepare", None)  # local mode: the GP's imports, during the first trials
        if prepare is not None:
            prepare()
        if len(self.slices) == 1:
            self._worker(f"{host}-{os.getpid()}", self.slices[0], 0, execute)
        else:
            # Each worker sets its event when it ends. The main thread waits on the events, not on
            # Thread.join: a join interrupted by Ctrl-C can return early afterwards (CPython 3.11).
            done = [threading.Event() for _ in self.slices]
            threads = [threading.Thread(target=self._guarded_worker,
                                        args=(done[i], f"{host}-{os.getpid()}-{i}", devices, i, execute),
                                        name=f"tracklet-agent-{i}", daemon=True)
                       for i, devices in enumerate(self.slices)]
            for thread in threads:
                # Plain starts, not core/threads.py's: a worker starts its command trials'
                # processes (``subprocess.Popen``), which would inherit a blocked SIGTERM/SIGINT.
                # The main thread waits on the events in slices, so a Ctrl-C a worker takes is
                # seen within one.
                thread.start()
            try:
                for event in done:
                    while not event.wait(0.5):
                        pass
            except KeyboardInterrupt:
                self._interrupt()  # trials stop, and each worker gives its trial back before it ends
                deadline = time.monotonic() + KILL_DELAY + 5
                for event in done:
                    event.wait(max(0.0, deadline - time.monotonic()))
                raise
            if self._errors:
                raise self._errors[0]
        if self._failures_in_row >= self.max_failures:
            raise SweepError(f"stopping: {self._failures_in_row} trials failed in a row (last: {self._last_failure}); "
                             "fix the command or the program, then start the agent again")
        return self.report

    def _claim_slot(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self.count is not None and self._started >= self.count):
                return False
            self._started += 1
            return True

    def _unclaim_slot(self) -> None:
        with self._lock:
            self._started -= 1

    def _guarded_worker(self, done: threading.Event, *args: Any) -> None:
        """A worker thread: its failure stops the other workers and is raised by the agent."""
        try:
            self._worker(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            self._errors.append(error)
            self._interrupt()
        finally:
            done.set()

    def _worker(self, agent: str, devices: str | None, index: int,
                execute: Callable[[Lease, str | None, int], tuple[int, str | None]]) -> None:
        resume = self.resume_trial if index == 0 else None
        while self._claim_slot():
            outcome = self.controller.next_trial(agent, ttl=self.ttl, resume_trial=resume)
            resume = None
            if isinstance(outcome, Finished):
                self._unclaim_slot()
                self.report.stopped_because = outcome.reason
                self.log(f"nothing more to run: {outcome.reason}")
                self._stop.set()
                return
            if isinstance(outcome, Wait):
                self._unclaim_slot()
                self._stop.wait(self.poll_interval)
                continue
            lease = outcome
            shown = " ".join(f"{k}={v!r}" for k, v in _flat(lease.config).items())
            self.log(f"{'resuming' if lease.resumed else 'starting'} trial {lease.trial} "
                     f"(run {lease.project}/{lease.run_id}){' on GPUs ' + devices if devices else ''}: {shown}")
            lost = threading.Event()
            beating = threading.Event()
            pruned = threading.Event()
            heart = threading.Thread(target=self._heartbeat, args=(lease, lost, beating, pruned, threading.get_ident()),
                                     daemon=True, name=f"tracklet-heartbeat-{lease.trial}")
            signal_threads.start(heart)  # in a function trial's process: Ctrl-C is the training's
            watcher = None
            if self.controller.prunes:
                watcher = threading.Thread(target=self._watch, args=(lease, pruned, beating, threading.get_ident()),
                                           daemon=True, name=f"tracklet-prune-watch-{lease.trial}")
                signal_threads.start(watcher)
            try:
                exit_code, error = execute(lease, devices, index)
            except KeyboardInterrupt:
                beating.set()
                self.controller.release(lease, "the agent was interrupted")
                raise
            except BaseException as failure:
                beating.set()
                self.controller.release(lease, f"the agent failed: {failure!r}")
                raise
            finally:
                beating.set()
                heart.join()
                if watcher is not None:
                    watcher.join()
            if self._interrupted:  # the agent is stopping: the trial goes back (a grid point is rerun)
                self.controller.release(lease, "the agent was interrupted")
                return
            if lost.is_set():
                self.log(f"trial {lease.trial}: its lease was lost (the agent could not renew it in time); "
                         "the trial was stopped and marked failed")
                continue
            stopped = None
            if pruned.is_set():
                stopped = self._stop_landed(lease)
                if stopped:
                    error = None  # stopped by the agent: the controller tells the trial pruned
                elif exit_code in (-signal.SIGTERM, -signal.SIGKILL) and self._stop_sent.get(lease.trial):
                    exit_code, error = 0, None  # the stop reached a process whose run had ended on its own
            self._stop_sent.pop(lease.trial, None)
            result = self.controller.finish(lease, exit_code, error, stopped=stopped)
            self.report.results.append(result)
            self.log(f"trial {lease.trial} {result.state}: {result.message}")
            with self._lock:
                if result.state == "failed":
                    self._failures_in_row += 1
                    self._last_failure = f"trial {lease.trial}: {result.message}"
                    if self._failures_in_row >= self.max_failures:
                        self._stop.set()
                elif result.state == "complete":
                    self._failures_in_row = 0

    def _heartbeat(self, lease: Lease, lost: threading.Event, done: threading.Event, pruned: threading.Event,
                   worker: int) -> None:
        interval = max(lease.ttl / 3.0, 0.05)
        if getattr(self.controller, "server_prunes", False):  # the server prunes: learn it within a look
            interval = min(interval, self.prune_interval)
        while not done.wait(interval):
            try:
                alive = self.controller.heartbeat(lease)
            except Exception as error:  # noqa: BLE001 - a failed beat must not end the trial; the next one retries
                self.log(f"trial {lease.trial}: heartbeat failed ({error!r}); retrying")
                continue
            if alive == "pruned":  # the server's pruner, from the metric it ingested
                pruned.set()
                self.log(f"trial {lease.trial}: pruned by the server; stopping it")
                self._stop_trial(lease, worker)
                return
            if not alive:
                lost.set()
                process = self._processes.get(lease.trial)
                if process is not None:
                    _stop_process(process)
                return

    def _watch(self, lease: Lease, pruned: threading.Event, done: threading.Event, worker: int) -> None:
        """While the trial runs, report its run's new metric points to the controller (the run's
        real steps) and stop the trial when the pruner says so: its process gets SIGTERM; a
        function (``run_function``) gets :class:`TrialPruned` raised in its thread."""
        from tracklet.core.layout import RunPaths
        from tracklet.sweeps.tail import MetricTail

        metric = self.controller.spec.metric
        if metric is None:
            return
        tail = MetricTail(RunPaths(self.controller.root, lease.project, lease.run_id).log_file, metric.name)
        while not done.wait(self.prune_interval):
            try:
                points = tail.new_points()
                if not points:
                    continue
                step = self.controller.report(lease, points)  # the step the pruner stopped it at
                if step is None:
                    continue
            except Exception as error:  # noqa: BLE001 - a failed look must not end the trial; the next one retries
                self.log(f"trial {lease.trial}: reading its metric for pruning failed ({error!r}); retrying")
                continue
            pruned.set()
            value = next((v for s, v in reversed(points) if s == step), None)  # not this look's: pruned before
            shown = f" ({metric.name} = {value:g})" if value is not None else ""
            self.log(f"trial {lease.trial}: pruned at step {step}{shown}; stopping it")
            self._stop_trial(lease, worker)
            return

    def _stop_trial(self, lease: Lease, worker: int) -> None:
        """Stop a pruned trial: its process gets SIGTERM; a function gets :class:`TrialPruned`,
        from its run's next ``log()`` (``Run._stop_logging``: at the call's entry, before anything
        is recorded) or raised into its thread once that is outside tracklet's code
        (:meth:`_raise_outside_tracklet`), whichever comes first. Nothing happens when the trial
        already ended (its process exited, its function returned): the prune came too late, and
        :meth:`_stop_landed` says so."""
        with self._lock:  # the worker forgets the process under it once the process has exited
            process = self._processes.get(lease.trial)
            if process is not None and process.poll() is None:
                try:  # why, for the trial's run (core/sweeptrial.py): it ends tagged pruned, not crashed
                    from tracklet.core.sweeptrial import stop_file

                    stop_file(self.controller.root, lease.sweep_id, lease.trial).write_text("pruned")
                except OSError:
                    pass
                self._stop_sent[lease.trial] = True
                _stop_process(process)
                return
        if process is None:
            with self._prune_lock:
                # Only while the trial's run is live: once it is finishing or finished (finish(),
                # ``with wandb.init():`` left) the prune is too late, as for a command trial
                # (core/sweeptrial.py): raised into finish() it left the run crashed, and raised
                # into the function's work after it, it told a full run pruned.
                if not (self._function_running.is_set() and _trial_run_live()):
                    return
                runs = _trial_runs()
                _tag_pruned(runs)  # before the raise: the function may end its run itself (with wandb.init())
                stop = _LogStop()
                for run in runs:  # the next log() raises TrialPruned at its entry
                    run._stop_logging(stop)
                self._stop_sent[lease.trial] = True
            self._raise_outside_tracklet(worker, stop)

    def _raise_outside_tracklet(self, worker: int, stop: "_LogStop") -> None:
        """Raise :class:`TrialPruned` in the function trial's thread ``worker`` (a loop that
        doesn't log, or not soon) at a point where no tracklet code is running on it: one landing
        inside tracklet's code was caught by its guards that keep the tracker from stopping
        training (``wandb.log()``'s: the prune lost, the trial trained to the end) or cut its
        state changes half-way. The thread is looked at every millisecond until it is outside,
        the trial ended, or its ``log()`` raised the prune first (``stop.fired``: the function is
        ending; its cleanup isn't cut by a second one). The look and the raise are consecutive
        calls made holding the GIL, so the thread can't move between them unless the GIL changes
        hands right there. After ``KILL_DELAY`` seconds inside tracklet (one long call), it is
        raised where the thread is. Either way the guards on the caller's thread around
        ``log()`` let ``TrialPruned`` through (tests/test_trial_stop_rules.py), and one landing
        in ``finish()`` is ignored (``Run._finish``)."""
        deadline = time.monotonic() + KILL_DELAY
        while True:
            with self._prune_lock:
                if stop.fired or not self._function_running.is_set() or not _trial_run_live():
                    return
                if _outside_tracklet(worker) or time.monotonic() >= deadline:
                    _raise_in_thread(worker, TrialPruned)
                    return
            time.sleep(0.001)

    def _stop_landed(self, lease: Lease) -> bool:
        """Whether the pruner's stop reached the trial's run before it ended: only then is the
        trial told pruned; a trial whose run ended on its own first is told as it ended. A
        command trial's ``init()`` says what its SIGTERM handler did (``core/sweeptrial.py``:
        ``pruned``, ``late``, or ``installed``: the process exited before handling it); a
        program without that handler (its own, or no tracklet) goes by the signal reaching a
        live process. A function trial: whether :class:`TrialPruned` landed in it."""
        if not self._stop_sent.get(lease.trial):
            return False
        if lease.trial in self._function_pruned:
            return self._function_pruned.pop(lease.trial)
        from tracklet.core.sweeptrial import sigterm_file

        try:
            said = sigterm_file(self.controller.root, lease.sweep_id, lease.trial).read_text()[:32].strip()
        except OSError:
            return True
        return said not in ("installed", "late")

    def _interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            self._stop.set()
            processes = list(self._processes.values())
        for process in processes:
            _stop_process(process)

    # ------------------------------------------------------------ executing a trial

    def _trial_env(self, lease: Lease) -> dict[str, str]:
        extra = getattr(self.controller, "trial_env", None)  # server mode: record online, to the server
        return {
            "TRACKLET_DIR": str(self.controller.root.resolve()),
            "TRACKLET_SWEEP_ID": lease.sweep_id,
            "TRACKLET_SWEEP_TRIAL": str(lease.trial),
            "WANDB_SWEEP_ID": lease.sweep_id,
            **(extra() if extra is not None else {}),
        }

    def _execute_command(self, lease: Lease, devices: str | None, index: int) -> tuple[int, str | None]:
        spec = self.controller.spec
        json_file = self.controller.dir / "trials" / f"{lease.trial}.args.json"
        try:
            line = build_command(spec.command, spec.program, lease.config, json_file)
        except SweepError as error:
            return 1, str(error)
        env = {**os.environ, **self.command_env, **self._trial_env(lease)}
        from tracklet.core.sweeptrial import sigterm_file, stop_file

        for stale in (stop_file(self.controller.root, lease.sweep_id, lease.trial),
                      sigterm_file(self.controller.root, lease.sweep_id, lease.trial)):
            stale.unlink(missing_ok=True)  # an earlier process of this trial's (a resumed trial)
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices
        with self._lock:  # an interrupt either sees this process or stops it starting
            if self._interrupted:
                return 130, "the agent was interrupted"
            try:  # dying with this thread (launcher.py: no Python runs in the forked child)
                process = launcher.start(line, env)
            except OSError as error:
                return 127, f"the command could not start: {error.strerror or error}: {line[0]}"
            self._processes[lease.trial] = process
        try:
            code = process.wait()
        except KeyboardInterrupt:
            _stop_process(process)
            raise
        finally:
            with self._lock:
                self._processes.pop(lease.trial, None)
        if code < 0:
            return code, f"the command was killed by signal {-code}"
        return code, None

    def _execute_function(self, function: Callable[[], Any], lease: Lease) -> tuple[int, str | None]:
        from tracklet.core import lifecycle

        # W&B's agent tears its session down before each trial (``wandb.teardown()``), which
        # finishes every run live in the process with exit code 0: a script's own run started
        # before ``wandb.agent`` (``create_new`` ones too) ends as the first trial starts, and the
        # trial's ``wandb.init()`` starts the trial's run instead of returning that one.
        for live in lifecycle.live_runs():
            self.log(f"finishing run {live.path} before trial {lease.trial}: a function trial starts with no "
                     "run live in the process, as W&B's agent tears every run down (docs/sweeps.md)")
            live.finish(0)
        saved = {key: os.environ.get(key) for key in self._trial_env(lease)}
        os.environ.update(self._trial_env(lease))
        code, error = 0, None
        pruned = False
        try:
            self._function_running.set()
            try:
                function()
            finally:
                with self._prune_lock:  # a prune raised after this point can't land outside the try
                    self._function_running.clear()
        except TrialPruned:
            pruned = True
        except Exception as failure:  # noqa: BLE001 - the user's function failing fails its trial, not the agent
            traceback.print_exc()
            code, error = 1, f"the function raised {type(failure).__name__}: {failure}"
        finally:
            self._function_running.clear()  # also when TrialPruned landed before the inner finally's lock
            if self._stop_sent.get(lease.trial):
                self._function_pruned[lease.trial] = pruned
            # The trial ends its runs, as W&B's agent's teardown does: every run the function
            # started and left live (create_new ones too); none was live before it.
            current = lifecycle.current()
            ending = lifecycle.live_runs()
            if current is not None and current not in ending:
                ending.append(current)
            if pruned:
                _tag_pruned([run for run in ending if run._sweep_trial] or ending[-1:])
            for run in ending:
                run.finish(code)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return code, error


TrialPruned = errors.TrialPruned  # raised inside a trial's function when the pruner stops the trial


class _LogStop:
    """A pruned function trial's runs' ``log`` (``Run._stop_logging``): raises
    :class:`TrialPruned` at the call's entry, before anything is recorded, until the run ends.
    ``fired``: it did once (the agent raises no more into the thread)."""

    fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.fired = True
        raise TrialPruned("the sweep's pruner stopped this trial")


def _trial_runs() -> list[Any]:
    """The live run of the function trial (``Run._sweep_trial``; not a create_new run beside
    it), else the current run."""
    from tracklet.core import lifecycle

    current = lifecycle.current()
    return [run for run in lifecycle.live_runs() if run._sweep_trial] or ([current] if current else [])


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # tracklet/
# tracklet's frames that run a user's training inside them and pass its exceptions through (no
# handler around the call): a prune may land below them. (file below tracklet/, function)
_PASS_THROUGH = {(os.path.join("integrations", "autolog.py"), "fit"),  # keras Model.fit, patched
                 (os.path.join("integrations", "autolog.py"), "__init__")}  # a Trainer's, patched


def _outside_tracklet(thread_id: int) -> bool:
    """Whether the thread ``thread_id`` runs a trial's function with no tracklet frame (but
    :data:`_PASS_THROUGH`'s) between the function and where it is now: an exception raised
    there now lands in the user's code (or a library's it called), not inside tracklet's."""
    frame = sys._current_frames().get(thread_id)
    top = Agent._execute_function.__code__
    innermost = True
    while frame is not None:
        code = frame.f_code
        if code is top:
            return not innermost  # innermost: the agent's own frame, before or after the function
        name = code.co_filename
        if not os.path.isabs(name):  # imported through a relative sys.path entry
            name = os.path.abspath(name)
        if name.startswith(_PACKAGE) and (name[len(_PACKAGE):], code.co_name) not in _PASS_THROUGH:
            return False
        innermost = False
        frame = frame.f_back
    return False  # not in a trial's function


def _tag_pruned(runs: list[Any] | None = None) -> None:
    """Tag the function trial's run ``pruned`` (recorded as a run update): ``runs``, by default
    :func:`_trial_runs`."""
    if runs is None:
        runs = _trial_runs()
    for run in runs:
        if PRUNED_TAG not in run.tags:
            run.tags = [*run.tags, PRUNED_TAG]


def _trial_run_live() -> bool:
    """Whether this process has a sweep trial's run not yet finishing (``finish()`` unregisters
    a run first)."""
    from tracklet.core import lifecycle

    return any(run._sweep_trial for run in lifecycle.live_runs())


def _raise_in_thread(thread_id: int, exception: type[BaseException]) -> None:
    """Raise ``exception`` in the thread ``thread_id`` at its next Python bytecode (CPython's
    ``PyThreadState_SetAsyncExc``): how a function trial that doesn't log is stopped
    (:meth:`Agent._raise_outside_tracklet` says where)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception))


def _stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after ``KILL_DELAY`` seconds (in the background)."""
    if process.poll() is not None:
        return
    try:
        process.terminate()
    except OSError:
        return

    def kill_later() -> None:
        try:
            process.wait(KILL_DELAY)
        except subprocess.TimeoutExpired:
            try:
                process.kill()
            except OSError:
                pass

    signal_threads.start(threading.Thread(target=kill_later, name="tracklet-agent-kill-later", daemon=True))


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_agent(root: Path | str, sweep_id: str, **options: Any) -> AgentReport:
    """``tracklet agent SWEEP_ID``: run the sweep's command per trial (local mode)."""
    return Agent(LocalController(root, sweep_id), **options).run_commands()
