"""PyTorch Lightning: ``Trainer(logger=TrackletLogger(project="mnist"))``; Fabric:
``Fabric(loggers=[TrackletFabricLogger(project="mnist")])``.

What the logger records (docs/integrations/lightning.md has the whole contract):

- config: ``log_hyperparams`` (what ``save_hyperparameters()`` saved: dicts, nested dicts,
  argparse Namespaces, dataclasses) goes to ``run.config``; only keys whose value changed are
  recorded again on a later call.
- history: ``log_metrics(metrics, step)`` logs one row at the Lightning step with
  ``trainer/global_step`` beside it, so train, validation and epoch metrics logged at one step are
  one row. Where Lightning's step is lower than the run's (``test()`` after ``fit()``, a run
  resumed from an older checkpoint) rows go to the run's next free step instead, steps never go
  back, and ``trainer/global_step`` keeps Lightning's value.
- checkpoints (``log_model``): what ``ModelCheckpoint`` saved, through ``run.log_checkpoint``
  (path, size, SHA-256 off the training thread) with the global step, the monitored score,
  ``metadata={"epoch": ..., "best": ...}``. ``True``: the best and the last checkpoint when a
  Trainer call ends; ``"all"``: every checkpoint as it is saved.
- ``watch(model)``: histograms of gradients and/or parameters every ``log_freq`` steps, from
  per-parameter hooks that only clone tensors; the histograms are built on tracklet's thread.

Which run: the active one (``tracklet.run``) if there is one when the logger first needs a run
(then the logger never finishes it), else a run of its own, started lazily on global rank zero
only, so a DDP job records one run. With ``all_ranks=True`` every other rank joins that run as a
secondary writer (docs/shared-runs.md) labelled ``rank_<global rank>``, recording its own system
metrics and console (Lightning logs metrics on rank zero only, so no series is duplicated); the
run id is rank zero's, broadcast by the strategy when Lightning calls ``log_graph`` at the start
of every Trainer call (under Fabric, which never calls it: published by rank zero in the job's
``torch.distributed`` store at its first logging call, found there by the others at theirs), and
the part is finished by ``finalize``. ``finalize(status)`` finishes a run the logger started:
exit code 0 for ``"success"`` (and the SLURM requeue's ``"finished"``); for ``"failed"``, with the
exception Lightning is handling (it calls ``finalize`` inside its ``except`` block): exit code 130
and the ``KeyboardInterrupt`` for Ctrl+C, else exit code 1 and the exception. The next Trainer call
with the same logger (``fit()`` then ``test()``) resumes that run as a new session and finishes it
again, so a run always reads ``finished`` or ``failed`` between calls.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import warnings
import weakref
from collections.abc import Mapping
from typing import Any
from tracklet.core.modules import loaded

try:
    from lightning.fabric.loggers.logger import rank_zero_experiment
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.loggers.logger import Logger
except ImportError:  # the standalone pytorch_lightning / lightning_fabric packages
    try:
        from lightning_fabric.loggers.logger import rank_zero_experiment
        from lightning_fabric.utilities.rank_zero import rank_zero_only
        # The same class under the standalone package's name.
        from pytorch_lightning.loggers.logger import Logger  # type: ignore[assignment]
    except ImportError as error:
        raise ImportError(
            "tracklet.integrations.lightning needs PyTorch Lightning: pip install 'tracklet[lightning]'"
        ) from error

import tracklet
from tracklet.core import lifecycle
from tracklet.core.encoder import TrackletWarning
from tracklet.core.layout import RunPaths
from tracklet.core.run import new_run_id
from tracklet.core.settings import Settings, data_root, resolve_settings
from tracklet.core.start import init_arguments
from tracklet.core.values import to_plain
from tracklet.integrations._ranks import join_run_part, start_quietly
from tracklet.errors import TrialPruned

GLOBAL_STEP = "trainer/global_step"
_LOG_MODEL_VALUES = (False, True, "all")
# all_ranks without a Trainer (Fabric): the n-th such logger made in a process is the n-th in every
# process of the job, and finds rank zero's run under this key of the job's store
_STORE_KEY = "tracklet/all_ranks/{}"
_all_ranks_loggers = itertools.count()
_MISSING = object()


@dataclasses.dataclass
class _Saved:
    """What was known about a checkpoint when ``ModelCheckpoint`` reported it saved."""

    step: int | None
    epoch: int | None
    score: float | None
    monitor: str | None


def _number(value: Any) -> float | None:
    """A score as a float (tensors included); None when there is none."""
    if value is None:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


class TrackletLogger(Logger):
    """A Lightning logger that records to tracklet; see the module docstring.

    Args:
        project, **init_kwargs: :func:`tracklet.init`'s arguments (``name``, ``id``, ``resume``,
            ``config``, ``tags``, ``group``, ``job_type``, ``notes``, ``dir``, ``mode``,
            ``settings``, ...), used when the logger starts its own run; checked now (an unknown
            keyword is a ``TypeError``). ``name`` is the run's name; the ``name`` property
            (Lightning's "experiment name") is the project.
        log_model: ``False`` (default), ``True`` (best and last checkpoint when a Trainer call
            ends) or ``"all"`` (every checkpoint as ``ModelCheckpoint`` saves it).
        all_ranks: ``False`` (default): only global rank zero records. ``True``: every other rank
            records its system metrics and console into the same run, as the secondary writer
            ``rank_<global rank>`` (docs/shared-runs.md); rank zero records as before. Under
            Fabric the other ranks join at their ``log_dict``/``log`` calls (see ``log_metrics``).

    ``experiment`` is the :class:`tracklet.Run` on global rank zero (a no-op object elsewhere);
    ``version`` is its id, ``save_dir`` and ``log_dir`` its directory.
    """

    _tracklet_integration = True  # autolog: a tracklet integration is already attached
    _step_key: str | None = GLOBAL_STEP

    def __init__(
        self,
        project: str | None = None,
        *,
        log_model: bool | str = False,
        all_ranks: bool = False,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        # checked here, not once the model is built
        init_kwargs = init_arguments(type(self).__name__, {"project": project, **init_kwargs},
                                     own=("log_model", "all_ranks"))
        if log_model not in _LOG_MODEL_VALUES:
            raise ValueError(f"log_model must be False, True or 'all'; got {log_model!r}")
        if not isinstance(all_ranks, bool):
            raise TypeError(f"all_ranks must be True or False; got {all_ranks!r}")
        self._all_ranks = all_ranks
        self._part: Any = None  # all_ranks on a rank other than zero: this rank's secondary writer
        # all_ranks without a Trainer (Fabric): this logger's key in the job's store; rank zero
        # published its run there (True once done); other ranks: log calls until the next look
        self._store_key = _STORE_KEY.format(next(_all_ranks_loggers)) if all_ranks else ""
        self._published = not all_ranks
        self._store_calls, self._store_next = 0, 1
        self._rejoin_failed = False
        self._project = init_kwargs.pop("project")
        id = init_kwargs.pop("id", None)
        resume = init_kwargs.pop("resume", None)
        self._init_args: dict[str, Any] = init_kwargs  # the rest of tracklet.init's arguments
        # The id is fixed now, so every process (DDP ranks, ddp_spawn workers) agrees on version
        # and on the run directory before the run exists; only rank zero ever starts it.
        self._user_id = id
        self._id = id if id is not None else new_run_id()
        # our own id: a later process (a ddp_spawn worker, say) continues the same run
        self._resume = resume if id is not None or resume is not None else "allow"
        self._log_model = log_model
        self._run: Any = None
        self._owned = False
        self._offset = 0  # run step = Lightning step + offset (see _log_at)
        self._last_run_step: int | None = None  # the run step of the last row the logger wrote
        self._last_epoch: int | None = None
        self._module: Any = None  # weakref to the LightningModule (log_graph), for the trainer
        self._checkpoint_callbacks: dict[int, Any] = {}
        self._saved: dict[str, _Saved] = {}
        self._recorded: dict[str, float] = {}  # checkpoint path -> mtime when recorded
        self._watches: list[Any] = []  # torch_watch.ModelWatch
        self._warned: set[str] = set()

    # ---------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        """The project (Lightning's experiment name)."""
        run = self._run if self._run is not None else self._reusable()
        if run is not None:
            return run.project
        project = self._resolved().project
        return project if project is not None else "default"

    @property
    def version(self) -> str:
        """The run id."""
        run = self._run if self._run is not None else self._reusable()
        return run.id if run is not None else self._id

    @property
    def root_dir(self) -> str | None:
        """The project's runs directory (``log_dir`` is ``root_dir/version``)."""
        log_dir = self.log_dir
        return os.path.dirname(log_dir) if log_dir is not None else None

    @property
    def log_dir(self) -> str | None:
        """The run's directory (None in disabled mode). Known before the run starts."""
        run = self._run if self._run is not None else self._reusable()
        if run is not None:
            return run.dir
        settings = self._resolved()
        if settings.mode == "disabled":
            return None
        return str(RunPaths(data_root(settings), self.name, self._id).run_dir)

    @property
    def save_dir(self) -> str | None:
        """The run's directory: ``trainer.log_dir``; ``ModelCheckpoint`` without ``dirpath`` saves
        to ``<save_dir>/<name>/<version>/checkpoints`` (Lightning's layout) inside it."""
        return self.log_dir

    @property
    def experiment(self) -> "tracklet.Run":
        """The run (started or attached on first use). After a Trainer call ended, it is the
        finished run, readable as it is, until the next Trainer call resumes it. With
        ``all_ranks``, on any other rank: this rank's secondary writer of the run (from the start of
        its first Trainer call, or under Fabric from the logging call where it joined; a no-op object
        before, as on other ranks without ``all_ranks``)."""
        if self._part is not None and rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            return self._part
        return self._rank_zero_experiment

    @property
    @rank_zero_experiment
    def _rank_zero_experiment(self) -> "tracklet.Run":
        run = self._run
        if run is None:
            return self._attach()
        if run.finished and self._trainer_running():
            return self._writable()
        return run

    # ---------------------------------------------------------------- Logger API

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        plain = to_plain(params) if params is not None else {}
        if not isinstance(plain, dict):
            raise TypeError(f"log_hyperparams() takes a dict, Namespace or dataclass; got {type(params).__name__}")
        try:
            config = self._writable().config
            changed = {k: v for k, v in plain.items() if not _same(config.get(k, _MISSING), v)}
            if changed:
                config.update(changed)
        except Exception as error:
            self._failed("hyperparameters", error)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Metrics, on global rank zero. With ``all_ranks`` and no Trainer (Fabric calls this on
        every rank from ``log_dict``/``log``): rank zero publishes its run's project and id in the
        job's ``torch.distributed`` store; every other rank looks there (at its 1st, 2nd, 4th, 8th
        ... call until found: never a wait) and joins the run as ``rank_<global rank>``."""
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            if self._all_ranks and self._module is None:
                part = self._part
                if part is None:
                    if not self._published:
                        self._join_from_store()
                elif part.finished and not self._rejoin_failed:
                    self._rejoin(part)  # after finalize: continues, as rank zero's run does
            return
        try:
            run = self._writable()
            if not self._published and self._module is None:
                self._publish(run)
            epoch = metrics.get("epoch")
            if type(epoch) is int:
                self._last_epoch = epoch
            if step is None:
                run.log(dict(metrics))
                return
            row = dict(metrics)
            if self._step_key is not None:
                row[self._step_key] = int(step)
            self._log_at(run, int(step), row)
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:
            self._failed("metrics", error)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning calls this with the LightningModule at the start of every Trainer call, on
        every rank; the logger keeps a weak reference to reach the Trainer (epoch and monitored
        value of a checkpoint). With ``all_ranks``, the ranks agree on the run here and every rank
        but zero starts its secondary writer. No graph is recorded."""
        try:
            self._module = weakref.ref(model)
        except TypeError:
            self._module = None
        if self._all_ranks:
            self._join_all_ranks(getattr(model, "_trainer", None))

    def save(self) -> None:
        """Nothing to do: rows reach the record log within ``flush_interval`` on their own.
        (Lightning calls this after every batch.)"""

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """``ModelCheckpoint`` saved a file: remember it, and record it now with ``log_model="all"``."""
        try:
            self._checkpoint_saved(checkpoint_callback)
        except Exception as error:
            self._failed("a checkpoint", error)

    def _checkpoint_saved(self, checkpoint_callback: Any) -> None:
        path = getattr(checkpoint_callback, "_last_checkpoint_saved", None) or _newest(checkpoint_callback)
        if not path:
            return
        self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback
        trainer = self._trainer()
        monitor = getattr(checkpoint_callback, "monitor", None)
        score = None
        if monitor:
            best_k = getattr(checkpoint_callback, "best_k_models", None) or {}
            if path in best_k:
                score = _number(best_k[path])
            elif trainer is not None:
                score = _number(trainer.callback_metrics.get(monitor))
        step = getattr(checkpoint_callback, "_last_global_step_saved", None)
        if step is None and trainer is not None:
            step = trainer.global_step
        epoch = trainer.current_epoch if trainer is not None else self._last_epoch
        saved = _Saved(step=step, epoch=epoch, score=score, monitor=monitor or None)
        self._saved[path] = saved
        if self._log_model == "all":
            best = os.path.abspath(path) == os.path.abspath(getattr(checkpoint_callback, "best_model_path", "") or "")
            self._record_checkpoint(self._writable(), path, saved, best=best)

    def finalize(self, status: str) -> None:
        """End of a Trainer call: record the best and last checkpoints (``log_model=True``), then
        finish a run the logger started, by ``status`` and the exception being handled. On other
        ranks (``all_ranks``): finish this rank's secondary writer alike."""
        error = sys.exc_info()[1] if status not in ("success", "finished") else None
        interrupted = isinstance(error, KeyboardInterrupt)
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            part = self._part  # kept: the finished part is this rank's experiment until the next Trainer call
            if part is not None and not part.finished:
                try:
                    _finish(part, status, error)
                except Exception as failure:
                    self._failed("the end of this rank's part", failure)
            return
        if self._run is None:
            return
        try:
            if self._log_model is True and not interrupted:
                # not on Ctrl+C: digesting a large checkpoint would hold up the exit it asked for
                self._record_final_checkpoints()
        except Exception as failure:
            self._failed("the final checkpoints", failure)
        run = self._run
        if run.finished:
            return
        try:
            if not self._owned:
                run.flush()
            else:
                _finish(run, status, error)
        except Exception as failure:
            self._failed("the end of the run", failure)

    # ---------------------------------------------------------------- watch

    @rank_zero_only
    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100) -> None:
        """Histograms of ``model``'s gradients (``log="gradients"``), parameter values
        (``"parameters"``) or both (``"all"``) every ``log_freq`` steps.

        Under a Trainer, at every step ``s`` with ``(s + 1) % log_freq == 0`` (where Lightning
        logs with ``log_every_n_steps=log_freq``), in that step's row: ``gradients/<name>`` and
        ``parameters/<name>`` (the values the step's backward used). Elsewhere (Fabric, a plain
        module) every ``log_freq``-th backward pass of each parameter, at the run's current step.
        CPU tensors are cloned and binned off the training thread; accelerator tensors are binned
        where they live. Watching a model again replaces its earlier watch; :meth:`unwatch` removes
        it. The hooks are tracklet's one ``watch`` (``tracklet/core/torch_watch.py``).
        """
        from tracklet.core.torch_watch import ModelWatch, check_arguments

        check_arguments(log, log_freq)
        self.unwatch(model)
        if log is None:
            return
        watch = ModelWatch(model, log=log, log_freq=log_freq, record=self._record_watched,
                           warn=lambda message: self._warn_once("watch", f"tracklet: {message}"),
                           trainer_step=_trainer_step)
        self._watches.append(watch)

    def unwatch(self, model: Any = None) -> None:
        """Remove the hooks of ``watch(model)`` (of every watched model when ``model`` is None)."""
        keep = []
        for watch in self._watches:
            if model is None or watch.watches(model):
                watch.remove()
            else:
                keep.append(watch)
        self._watches = keep

    # ---------------------------------------------------------------- pickling (ddp_spawn)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # A spawned worker starts (or resumes) the run itself; the process-local parts stay here.
        if self._run is not None:
            state.update(_id=self._run.id, _user_id=self._run.id, _resume="allow")
        state.update(_run=None, _owned=False, _module=None, _checkpoint_callbacks={}, _watches=[], _part=None)
        return state

    # ---------------------------------------------------------------- internals

    def _resolved(self) -> Settings:
        args = self._init_args
        return resolve_settings(args.get("settings"), mode=args.get("mode"), dir=args.get("dir"), project=self._project)

    def _reusable(self) -> Any:
        """The active run the logger would attach to, before it has a run."""
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]  # Lightning sets it on the function
            return None
        active = lifecycle.current()
        return active if active is not None and self._user_id in (None, active.id) else None

    def _attach(self) -> Any:
        """First use: the active run (when no other id was asked for), else a run of our own."""
        active = self._reusable()
        if active is not None:
            self._use(active, owned=False)
            if self._project is not None and active.project != self._project:
                self._warn_once("project", f"tracklet: TrackletLogger(project={self._project!r}) records to the "
                                           f"active run {active.path}, in project {active.project!r}")
            config = self._init_args.get("config")
            if config is not None:
                active.config.update(config)
            return active
        run = start_quietly(project=self._project, id=self._id, resume=self._resume, **self._init_args)
        self._use(run, owned=True)
        if self._step_key is not None:
            # W&B's convention: the Trainer's step is every metric's x axis. Only on our own run:
            # a definition without summary= would replace a summary mode set on the user's run.
            run.define_metric("*", step_metric=self._step_key)
        return run

    def _join_all_ranks(self, trainer: Any) -> None:
        """``all_ranks``: agree on the run (rank zero's project and id, broadcast by the strategy:
        with the ``ddp`` launcher every rank made its own logger, and its own id) and, on every
        other rank, start its secondary writer ``rank_<global rank>``. A collective: Lightning
        calls ``log_graph`` on every rank at the same point."""
        if trainer is None or getattr(trainer, "world_size", 1) <= 1:
            return
        rank = trainer.global_rank
        try:
            project, run_id = trainer.strategy.broadcast((self.name, self.version) if rank == 0 else None, src=0)
        except Exception as error:
            self._failed("the run id from rank zero", error)
            return
        if rank == 0:
            return
        self._project, self._id = project, run_id
        try:
            self._part = join_run_part(self._part, project, run_id, f"rank_{rank}", self._init_args)
        except Exception as error:
            self._failed("this rank's part of the run", error)

    def _publish(self, run: Any) -> None:
        """``all_ranks`` without a Trainer, rank zero: put the run's project and id in the job's
        store (once the process group exists; a job of one process has nothing to publish)."""
        store = _job_store()
        if store is None:
            return
        self._published = True
        try:
            store.set(self._store_key, json.dumps([run.project, run.id]))
        except Exception as error:
            self._failed("the run id for the other ranks", error)

    def _join_from_store(self) -> None:
        """``all_ranks`` without a Trainer, another rank: join rank zero's run once it is published."""
        self._store_calls += 1
        if self._store_calls < self._store_next:
            return
        self._store_next *= 2
        try:
            store = _job_store()  # (torch's private accessor: its failure is this rank's, never the loop's)
            if store is None:
                return
            if not store.check([self._store_key]):
                return
            self._published = True  # found: never looked up again
            project, run_id = json.loads(store.get(self._store_key))
        except Exception as error:
            self._failed("the run id from rank zero", error)
            return
        self._project, self._id = project, run_id
        try:
            rank = rank_zero_only.rank  # type: ignore[attr-defined]
            self._part = join_run_part(self._part, project, run_id, f"rank_{rank}", self._init_args)
        except Exception as error:
            self._failed("this rank's part of the run", error)

    def _rejoin(self, part: Any) -> None:
        """``all_ranks`` without a Trainer, another rank, a logging call after ``finalize``: its part
        continues (a new session), as rank zero's run is resumed by its next logging call."""
        try:
            rank = rank_zero_only.rank  # type: ignore[attr-defined]
            self._part = join_run_part(part, part.project, part.id, f"rank_{rank}", self._init_args)
        except Exception as error:
            self._rejoin_failed = True  # not tried again at every call
            self._failed("this rank's part of the run", error)

    def _use(self, run: Any, *, owned: bool) -> None:
        self._run, self._owned = run, owned
        self._offset, self._last_run_step = 0, None

    def _writable(self) -> Any:
        """The run to write to: attached on first use; a finished run of ours resumed."""
        run = self._run
        if run is None:
            return self._attach()
        if run.finished and run.dir is not None:
            settings = dataclasses.asdict(run.settings)
            settings.pop("project", None)
            settings["capture_environment"] = False  # the first session captured it
            run = start_quietly(project=run.project, id=run.id, resume="allow", settings=settings)
            self._use(run, owned=True)
        return run

    def _log_at(self, run: Any, step: int, row: dict[str, Any]) -> None:
        """Log ``row`` at Lightning step ``step`` (plus the offset, 0 until a Lightning step is lower
        than the run's: then rows continue at the run's next free step, spacing kept)."""
        target = step + self._offset
        current = run.step
        if target < current:
            self._offset = current + (1 if self._last_run_step == current else 0) - step
            target = step + self._offset
        run.log(row, step=target)
        self._last_run_step = target

    def _trainer(self) -> Any:
        module = self._module() if self._module is not None else None
        return getattr(module, "_trainer", None) if module is not None else None

    def _trainer_running(self) -> bool:
        trainer = self._trainer()
        return trainer is not None and getattr(getattr(trainer, "state", None), "status", None) == "running"

    def _failed(self, what: str, error: Exception) -> None:
        """A recording failure warns (once per kind) and never stops training."""
        self._warn_once(what, f"tracklet: the Lightning logger could not record {what}: {error!r}; training goes on")

    def _record_checkpoint(self, run: Any, path: str, saved: _Saved, *, best: bool) -> None:
        metadata: dict[str, Any] = {"best": best}
        if saved.epoch is not None:
            metadata["epoch"] = int(saved.epoch)
        run.log_checkpoint(path, step=saved.step, score=saved.score, monitor=saved.monitor, metadata=metadata)
        try:
            self._recorded[path] = os.path.getmtime(path)
        except OSError:
            self._recorded[path] = math.nan

    def _record_final_checkpoints(self) -> None:
        for callback in list(self._checkpoint_callbacks.values()):
            try:
                best_path = getattr(callback, "best_model_path", "") or ""
                last_path = getattr(callback, "last_model_path", "") or ""
                best_score = _number(getattr(callback, "best_model_score", None))
                monitor = getattr(callback, "monitor", None) or None
            except ReferenceError:  # the callback (a weak proxy) is gone
                continue
            for path, best in ((best_path, True), (last_path, False)):
                if not path or not os.path.exists(path) or (best is False and path == best_path):
                    continue
                if self._recorded.get(path) == os.path.getmtime(path):
                    continue
                saved = self._saved.get(path) or _Saved(step=None, epoch=None, score=None, monitor=monitor)
                if best and saved.score is None:
                    saved = dataclasses.replace(saved, score=best_score)
                self._record_checkpoint(self._writable(), path, saved, best=best)

    def _record_watched(self, row: dict[str, Any], step: int | None) -> None:
        """A ``watch`` row: into the Trainer's step's row, or (no Trainer) the run's current step."""
        run = self._writable()
        if step is None:
            run.log(row, commit=False)
            return
        if self._step_key is not None:
            row[self._step_key] = step
        self._log_at(run, step, row)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, TrackletWarning, stacklevel=3)


class TrackletFabricLogger(TrackletLogger):
    """The logger for Lightning Fabric: ``Fabric(loggers=[TrackletFabricLogger(project=...)])``
    and ``fabric.log_dict(metrics, step=...)``. The same as :class:`TrackletLogger` (which Fabric
    accepts too) without the ``trainer/global_step`` column: Fabric has no Trainer, and the step
    is the row's step already. Fabric never calls ``finalize``: the run finishes at interpreter
    exit (failed if an exception escaped), or call ``logger.finalize("success")``."""

    _step_key = None


def _job_store() -> Any:
    """The store of the job's default ``torch.distributed`` process group (every rank reaches it;
    ``set`` and ``check`` never wait for another rank), None outside a job of several processes."""
    dist = loaded("torch.distributed")
    if dist is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def _finish(run: Any, status: str, error: BaseException | None) -> None:
    """Finish ``run`` by Lightning's ``status`` and the exception being handled."""
    if status in ("success", "finished"):
        run.finish(0)
    elif isinstance(error, KeyboardInterrupt):
        run.finish(130, error=error)
    else:
        run.finish(1, error=error or RuntimeError(f"Lightning ended with status {status!r}"))


def _trainer_step(module: Any) -> int | None:
    """The step of the Trainer driving ``module`` (the optimizer steps taken), None without one."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return None
    step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", None)
    return trainer.global_step if step is None else step


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        if a == b:
            return True
    except Exception:
        return False
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _newest(checkpoint_callback: Any) -> str | None:
    """The checkpoint a callback saved last, by modification time (for callbacks without
    ``_last_checkpoint_saved``)."""
    paths: list[str] = []
    for attribute in ("last_model_path", "best_model_path"):
        path = getattr(checkpoint_callback, attribute, None)
        if path:
            paths.append(path)
    paths.extend(getattr(checkpoint_callback, "best_k_models", None) or {})
    existing = [p for p in paths if os.path.isfile(p)]
    return max(existing, key=os.path.getmtime) if existing else None


__all__ = ["GLOBAL_STEP", "TrackletFabricLogger", "TrackletLogger"]
