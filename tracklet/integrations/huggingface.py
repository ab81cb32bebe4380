"""Hugging Face Transformers: ``Trainer(callbacks=[TrackletCallback(project="nlp")])``.

What the callback records (docs/integrations/huggingface.md has the whole contract):

- config, at ``on_train_begin``: the model config (``model.config.to_dict()``) at the top level,
  as W&B's callback does; ``TrainingArguments.to_dict()`` under ``"training_args"``; PEFT adapter
  configs under ``"peft_config"`` when the model has a ``peft_config`` (duck-typed: peft need not
  be installed); ``"model/num_parameters"`` and ``"model/num_trainable_parameters"``; then the
  ``config=`` given to the callback, which wins.
- history, at ``on_log``: ``eval_*`` keys as ``eval/*``, ``test_*`` as ``test/*``, the rest as
  ``train/*``, each row at step ``state.global_step`` with ``train/global_step`` beside it. The
  Trainer's last log (``train_runtime``, ``train_samples_per_second``, ``total_flos``,
  ``train_loss`` ...) goes to ``run.summary`` under the Trainer's own names instead.
- ``on_evaluate`` and ``on_predict`` metrics (the ones ``on_log`` did not already record).
- checkpoints, at ``on_save``: ``<output_dir>/checkpoint-<global_step>`` through
  ``run.log_checkpoint`` (path, size, SHA-256 off-thread) with the monitored eval metric as its
  score; at ``on_train_end`` the Trainer's best checkpoint once more, with ``metadata["best"]``.

Which run: ``TrackletCallback(run=...)``, else the active one (``tracklet.run``) if there is one,
and then the callback never finishes it; otherwise the callback starts its own at its first event
(``on_train_begin``) and, as W&B's callback does, records every later ``train()``,
``evaluate()`` and ``predict()`` call of the process into it; the run is finished at process exit
(or by ``tracklet.finish()``, ``callback.run.finish()``, the context manager). A
hyperparameter-search trial (``state.is_hyper_param_search``) is its own run: its
``on_train_begin`` finishes the open one the callback started and starts the trial's; beside an
active run of the user's (or a given ``run=``) the trial's run is started with
``reinit="create_new"``, so the user's run stays current and untouched (W&B's callback finishes it). A call that continues the run
continues its step axis (``_continue_steps``). ``finish_on_train_end=True`` is the other contract: the
run is finished at ``on_train_end`` and each ``train()`` call starts a new one; an
``evaluate()``/``predict()`` after training resumes it for the call and finishes it again.

Only the world's process zero records anything, unless
``all_ranks=True``: then every other process joins that run as a secondary writer
(docs/shared-runs.md) labelled ``rank_<process index>``, recording its own system metrics and
console (no metrics: the callback logs on process zero only); the run id is process zero's,
broadcast through ``torch.distributed`` at ``on_train_begin``; the part goes on while process zero's
run does (a trial's new run: a new part), finished at that process's exit or explicitly, or at
``on_train_end`` with ``finish_on_train_end``; there
``callback.run`` is the part. Every process follows process zero's run. During a ``train()`` call
of a job of several processes, a SIGTERM (``torchrun`` stopping the job because a process failed)
ends the process as ``sys.exit(143)`` would, so its run or part ends ``failed`` with its rows
written (``_ranks.end_cleanly_on_sigterm``); the default is restored when the call ends, by any
path: ``Trainer.train`` is wrapped once (``_hook_train_returns``) to tell the callbacks.

An exception escaping ``trainer.train()`` never reaches a callback. Uncaught, it reaches
tracklet's ``sys.excepthook`` and the run is finished at interpreter exit as ``failed`` with that
exception (exit code 130 for ``KeyboardInterrupt``). Caught by the caller, the run is finished as
``failed`` (``TrainingIncomplete``) when the next ``train()`` begins or at interpreter exit. Use
the callback as a context manager (``with callback: trainer.train()``) to have it finished at once,
with the exception itself.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import glob
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from transformers import TrainerCallback
from tracklet.core import forksafe

import tracklet
from tracklet.core import lifecycle
from tracklet.core.encoder import TrackletWarning
from tracklet.core.start import init_arguments
from tracklet.core.values import to_plain
from tracklet.integrations._ranks import end_cleanly_on_sigterm, join_run_part
from tracklet.errors import TrainingIncomplete  # noqa: F401  (defined there; imported from here too)
from tracklet.errors import TrialPruned

GLOBAL_STEP = "train/global_step"
TRAINING_ARGS_KEY = "training_args"
PEFT_KEY = "peft_config"
NUM_PARAMETERS_KEY = "model/num_parameters"
NUM_TRAINABLE_KEY = "model/num_trainable_parameters"
# Only train()'s closing log (its totals) has it (total_flos is missing there when the model can't count its
# floating point operations, as in transformers 5 for some models).
_FINAL_LOG_KEY = "train_runtime"
_PREFIXES = (("eval_", "eval/"), ("test_", "test/"))
_KEPT_PREFIXES = ("train/", "eval/", "test/")
_CHECKPOINT_PREFIX = "checkpoint"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR


def _rewrite_key(key: Any) -> str:
    key = str(key)
    for prefix, group in _PREFIXES:
        if key.startswith(prefix):
            return group + key[len(prefix):]
    return key if key.startswith(_KEPT_PREFIXES) else "train/" + key


_rewritten: dict[Any, str] = {}  # the Trainer logs the same few keys over and over


def rewrite_logs(logs: Mapping[str, Any]) -> dict[str, Any]:
    """``eval_loss`` -> ``eval/loss``, ``test_f1`` -> ``test/f1``, ``loss`` -> ``train/loss``.

    Keys that already start with ``train/``, ``eval/`` or ``test/`` are kept as they are."""
    names = _rewritten
    try:
        return {names[key]: value for key, value in logs.items()}
    except KeyError:
        if len(names) > 10_000:
            names.clear()
        for key in logs:
            if key not in names:
                names[key] = _rewrite_key(key)
        return {names[key]: value for key, value in logs.items()}


def monitored_key(metric_for_best_model: str | None) -> str | None:
    """The Trainer's ``metric_for_best_model`` as the key it is logged under: ``loss`` and
    ``eval_loss`` both become ``eval/loss``."""
    if not metric_for_best_model:
        return None
    return "eval/" + metric_for_best_model.removeprefix("eval_")


def parameter_counts(model: Any) -> tuple[int, int] | None:
    """(total, trainable) parameters; ``ds_numel`` for DeepSpeed ZeRO-3 partitioned ones."""
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    total = trainable = 0
    for parameter in parameters():  # torch deduplicates shared (tied) parameters
        count = int(getattr(parameter, "ds_numel", 0) or parameter.numel())
        total += count
        if getattr(parameter, "requires_grad", False):
            trainable += count
    return total, trainable


def _plain_config(config: Any) -> Any:
    to_dict = getattr(config, "to_dict", None)
    return to_plain(to_dict() if callable(to_dict) else config)


def model_config(model: Any) -> dict[str, Any]:
    """The model's config (top-level keys), its PEFT configs and its parameter counts."""
    config: dict[str, Any] = {}
    model_settings = getattr(model, "config", None)
    if model_settings is not None:
        plain = _plain_config(model_settings)
        if isinstance(plain, dict):
            config.update(plain)
    peft = getattr(model, "peft_config", None)
    if peft:
        if isinstance(peft, Mapping):  # peft: {adapter name: PeftConfig}
            config[PEFT_KEY] = {str(name): _plain_config(value) for name, value in peft.items()}
        else:
            config[PEFT_KEY] = _plain_config(peft)
    counts = parameter_counts(model)
    if counts is not None:
        config[NUM_PARAMETERS_KEY], config[NUM_TRAINABLE_KEY] = counts
    return config


def _same(a: Any, b: Any) -> bool:
    """Equal plain values (NaN equals NaN); anything else only when it is the same object."""
    if a is b:
        return True
    if type(a) not in (int, float, bool, str) or type(b) not in (int, float, bool, str):
        return False
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


# Callbacks inside a train() call whose run they started; see _finish_abandoned_at_exit. Strong
# references: a callback whose Trainer was dropped after a caught exception must still be found.
_training: set[TrackletCallback] = set()
_exit_guard_lock = forksafe.lock()
_exit_guard_installed = False


def _install_exit_guard() -> None:
    """Registered after tracklet's own exit hook (atexit runs the later one first)."""
    global _exit_guard_installed
    with _exit_guard_lock:
        if not _exit_guard_installed:
            _exit_guard_installed = True
            atexit.register(_finish_abandoned_at_exit)


def _finish_abandoned_at_exit() -> None:
    escaped, status = lifecycle.exit_reason()
    if escaped is not None or status:
        return  # tracklet's exit hook records the exception or exit code that ended the process
    for callback in list(_training):
        callback._finish_abandoned("the process exited")


_train_hook_lock = forksafe.lock()


def _hook_train_returns() -> None:
    """Wrap ``transformers.Trainer.train`` (once; the original always runs) so that each
    ``TrackletCallback`` of the trainer hears when a ``train()`` call returns or raises: no
    callback event follows an exception escaping ``train()``, and the SIGTERM handler of a
    distributed call (``_ranks.end_cleanly_on_sigterm``) must not outlive the call that needed it."""
    import transformers

    with _train_hook_lock:
        original = transformers.Trainer.__dict__.get("train")
        if not callable(original) or getattr(original, "__tracklet_original__", None) is not None:
            return

        @functools.wraps(original)
        def train(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(self, *args, **kwargs)
            finally:
                _train_returned(self)

        train.__tracklet_original__ = original  # type: ignore[attr-defined]
        transformers.Trainer.train = train  # type: ignore[method-assign]


def _train_returned(trainer: Any) -> None:
    try:
        callbacks = list(trainer.callback_handler.callbacks)
    except Exception:  # a trainer without the usual handler: nothing of ours to tell
        return
    for callback in callbacks:
        if isinstance(callback, TrackletCallback):
            callback._train_returned()


class TrackletCallback(TrainerCallback):
    """Records a ``transformers.Trainer``'s training to tracklet; see the module docstring.

    ``run``: a run to record to (the callback never finishes it); otherwise the active run, else
    one the callback starts, with ``project`` and ``**init_kwargs`` (checked now: an unknown keyword
    is a ``TypeError``) but ``config`` going to :func:`tracklet.init`; its name defaults to ``TrainingArguments.run_name`` (or the
    hyperparameter-search trial's name). ``config`` is added to the run's config last.
    ``log_checkpoints=False`` records no checkpoints. ``all_ranks=True``: every other process of
    a distributed job records its console and system metrics into the run, as the secondary
    writer ``rank_<process index>``. ``finish_on_train_end=True``: the run the callback started
    is finished at the end of each ``train()`` call, so each call records a run of its own
    (by default the run goes on across the process's calls, as with W&B's callback).
    """

    _tracklet_integration = True

    def __init__(
        self,
        project: str | None = None,
        *,
        run: Any = None,
        log_checkpoints: bool = True,
        all_ranks: bool = False,
        finish_on_train_end: bool = False,
        **init_kwargs: Any,
    ) -> None:
        # checked here, not after the model has loaded
        init_kwargs = init_arguments("TrackletCallback", {"project": project, **init_kwargs},
                                     own=("run", "log_checkpoints", "all_ranks", "finish_on_train_end"))
        if not isinstance(all_ranks, bool):
            raise TypeError(f"all_ranks must be True or False; got {all_ranks!r}")
        if not isinstance(finish_on_train_end, bool):
            raise TypeError(f"finish_on_train_end must be True or False; got {finish_on_train_end!r}")
        self._all_ranks = all_ranks
        self._per_call = finish_on_train_end  # each train() call a run of its own (finished at on_train_end)
        self._trial = False  # the run (or part) was started for a hyperparameter-search trial
        self._close_call = False  # the run was resumed for this evaluate()/predict() call: finished after it
        self._part: Any = None  # all_ranks, on a process other than zero: its secondary writer
        self._undo_sigterm: Any = None  # a distributed train() call: see _ranks.end_cleanly_on_sigterm
        self._resume_failed = False  # the part could not be resumed for this evaluate()/predict() call
        self._part_resumed = False  # the part was resumed for this evaluate()/predict() call
        name = init_kwargs.pop("name", None)
        config = init_kwargs.pop("config", None)
        self._init_args: dict[str, Any] = init_kwargs  # the rest of tracklet.init's arguments
        self._given = run  # a run to record to; never finished by the callback
        self._name = name
        self._config = to_plain(config) if config is not None else None
        if self._config is not None and not isinstance(self._config, dict):
            raise TypeError(f"TrackletCallback(config=...) takes a dict, dataclass or Namespace; got {type(config).__name__}")
        self._log_checkpoints = log_checkpoints
        self._run: Any = None
        self._owned = False  # True for a run this callback started (or resumed): it finishes it
        self._configured: Any = None  # the run the config was recorded to
        self._offset = 0  # run step = global_step + offset (0 for a run the callback started)
        self._floor = -1  # a train() call continuing a run: its rows go after this run step
        self._in_train = False
        self._last_row: tuple[Any, int, dict[str, Any]] = (None, -1, {})
        self._last_step = -1  # the run step of _last_row
        self._last_eval: tuple[int, dict[str, Any]] = (-1, {})
        self._warned: set[str] = set()
        _hook_train_returns()  # before the train() call this callback records

    @property
    def run(self) -> tracklet.Run | None:
        """The run this callback records to (None before the first event). With ``all_ranks``, on
        a process other than zero: this process's secondary writer of the run (from the start of
        its first ``train()`` call; once finished, still the part until the next call)."""
        return self._part if self._part is not None else self._run

    # ---------------------------------------------------------------- Trainer events

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._finish_abandoned("a new trainer.train() call began")
        if not state.is_world_process_zero:
            if self._all_ranks:
                self._join_all_ranks(args, None)
                self._begin_call(args, recording=self._part is not None)
            return
        run = None
        try:
            run = self._attach(args, state, model, fresh=True)
        finally:
            if self._all_ranks:  # the other processes wait for the run id, even if it failed to start
                self._join_all_ranks(args, run)
        self._begin_call(args, recording=self._owned)
        self._continue_steps(run, state.global_step)
        with self._recording("on_train_begin"):
            self._record_config(run, args, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._attach(args, state, model, fresh=False)
        try:  # the hot path: try/except costs nothing, a context manager ~1 us
            if _FINAL_LOG_KEY in logs:  # the totals of the train() call: summary, not history
                run.summary.update({k: v for k, v in logs.items() if k != "epoch"})
                row = {"train/epoch": logs["epoch"]} if "epoch" in logs else {}
            else:
                row = rewrite_logs(logs)
            self._log_row(run, row, state.global_step)
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:
            self._failed("on_log", error)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            self._part_call(args)
            return
        self._last_eval = (state.global_step, dict(metrics or {}))
        if metrics:
            run = self._attach(args, state, model, fresh=False)
            with self._recording("on_evaluate"):
                row = rewrite_logs(metrics)
                last_run, last_step, last_row = self._last_row
                already = last_run is run and last_step == state.global_step and all(
                    key in last_row and _same(last_row[key], value) for key, value in row.items()
                )
                if not already:  # Trainer.evaluate() passes the metrics to on_log first
                    self._log_row(run, row, state.global_step)
        if not self._in_train:
            self._end_call()

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """``all_ranks``, on a process other than zero, in an ``evaluate()``/``predict()`` call
        after training: its part is resumed at the call's first batch (its console from there on)."""
        part = self._part
        if part is not None and part.finished and not self._in_train and not self._resume_failed \
                and not state.is_world_process_zero:
            self._resume_part(args)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                   model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            self._part_call(args)
            return
        if metrics:
            run = self._attach(args, state, model, fresh=False)
            with self._recording("on_predict"):
                self._log_row(run, rewrite_logs(metrics), state.global_step)
        if not self._in_train:
            self._end_call()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = self._run
        if not state.is_world_process_zero or not self._log_checkpoints or run is None or run.finished:
            return
        with self._recording("on_save"):
            step = state.global_step
            monitor = monitored_key(args.metric_for_best_model)
            score = None
            eval_step, metrics = self._last_eval
            if monitor is not None and eval_step == step:
                value = rewrite_logs(metrics).get(monitor)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    score = float(value)
            best_step = _best_step(state)
            metadata = {
                "global_step": step,
                "epoch": state.epoch,
                "best_so_far": best_step is not None and best_step == step,
                "best_metric": state.best_metric,
                "metric_for_best_model": args.metric_for_best_model,
                "greater_is_better": args.greater_is_better,
            }
            run.log_checkpoint(
                checkpoint_dir(args.output_dir, step), step=step + self._offset, score=score,
                monitor=monitor, metadata=metadata,
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_train_call()
        if not state.is_world_process_zero:
            part = self._part  # kept: the finished part is callback.run until the next call
            if part is not None and not part.finished and self._per_call:
                with self._recording("the end of this process's part"):
                    part.finish(0)
            return
        run = self._run
        if run is None or run.finished:
            return
        with self._recording("on_train_end"):
            best = state.best_model_checkpoint
            if best:
                best_step = _best_step(state)
                if best_step is None:
                    best_step = state.global_step
                run.summary.update({
                    "best_model_checkpoint": str(best),
                    "best_metric": state.best_metric,
                    "best_global_step": best_step,
                })
                if self._log_checkpoints:
                    run.log_checkpoint(
                        best, step=best_step + self._offset, score=state.best_metric,
                        monitor=monitored_key(args.metric_for_best_model),
                        metadata={
                            "best": True,
                            "global_step": best_step,
                            "metric_for_best_model": args.metric_for_best_model,
                            "greater_is_better": args.greater_is_better,
                        },
                    )
        if self._owned and self._per_call:
            run.finish(0)

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> TrackletCallback:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        """Finish the run this callback started: ``failed`` with ``error`` if one is escaping
        (exit code 130 for ``KeyboardInterrupt``), else finished. A run it did not start is
        left as it is."""
        self._end_train_call()
        for run in (self._run if self._owned else None, self._part):
            if run is None or run.finished:
                continue
            if error is None:
                run.finish(0)
            else:
                run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)

    # ---------------------------------------------------------------- internals

    def _attach(self, args: Any, state: Any, model: Any, *, fresh: bool) -> Any:
        """The run to record to: the one in use (at the start of a ``train()`` call, ``fresh``,
        one the callback started only if the call continues it: not a hyperparameter-search trial,
        not after a trial's run, not with ``finish_on_train_end``), else the active run, else
        (outside a ``train()`` call, ``fresh=False``) this callback's last run resumed for the
        call, else a new run."""
        run = self._run
        in_trial = fresh and bool(getattr(state, "is_hyper_param_search", False))
        if run is not None and not run.finished:
            if not fresh or not (in_trial or (self._owned and (self._trial or self._per_call))):
                return run
            if self._owned:
                run.finish(0)  # the last trial's run (W&B's callback finishes it here too), or a call's run
        given = self._given
        current = given if given is not None and not given.finished else lifecycle.current()
        if current is not None and not in_trial:
            self._use(current, owned=False)
            if self._configured is not current and not fresh:
                with self._recording("config"):
                    self._record_config(current, args, model)
            return current
        if run is not None and self._owned and not fresh:
            try:
                resumed = self._resume(run)
            except Exception as error:  # e.g. its directory was removed: record to a new run instead
                self._failed("resume", error)
            else:
                self._use(resumed, owned=True, define=False)  # the log has the definitions
                self._configured = resumed
                self._close_call = True  # it was finished: finished again after this call
                return resumed
        trial = getattr(state, "trial_name", None)
        name = self._name or (str(trial) if trial else None) or _run_name(args)
        init_args = dict(self._init_args)
        if current is not None:  # a trial beside the user's run: that one stays current, untouched
            init_args["reinit"] = "create_new"
        if in_trial and init_args.get("group") is None:  # a search's trials grouped as W&B's callback does
            group = getattr(args, "run_name", None) or getattr(args, "output_dir", None)
            if group:
                init_args["group"] = str(group)
        run = tracklet.init(name=name, **init_args)
        self._use(run, owned=True)
        self._trial = in_trial
        if not fresh:
            with self._recording("config"):
                self._record_config(run, args, model)
        return run

    def _join_all_ranks(self, args: Any, run: Any) -> None:
        """``all_ranks``: process zero broadcasts its run's project and id (``None`` if it has no
        run) through ``torch.distributed`` (the Trainer's process group); every other process
        starts its secondary writer ``rank_<process index>`` of that run. A collective: the
        Trainer calls ``on_train_begin`` on every process."""
        if getattr(args, "world_size", 1) <= 1:
            return
        try:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError("all_ranks needs the Trainer's torch.distributed process group")
            message = [(run.project, run.id) if run is not None else None]
            dist.broadcast_object_list(message, src=0)
        except Exception as error:
            self._failed("the run id from process zero", error)
            return
        index = getattr(args, "process_index", 0)
        if index == 0 or message[0] is None:
            return
        project, run_id = message[0]
        with self._recording("this process's part of the run"):
            self._part = join_run_part(self._part, project, run_id, f"rank_{index}", self._init_args)

    def _begin_call(self, args: Any, *, recording: bool) -> None:
        """A ``train()`` call begins: ``recording`` (a run or part this callback finishes) is
        finished as failed if the call never ends (``_finish_abandoned``); in a distributed job, a
        SIGTERM (``torchrun`` stopping the job when a peer failed) ends the process cleanly."""
        self._in_train = True
        if recording:
            _training.add(self)
            if getattr(args, "world_size", 1) > 1 and self._undo_sigterm is None:
                self._undo_sigterm = end_cleanly_on_sigterm()

    def _train_returned(self) -> None:
        """A ``train()`` call of the trainer returned or raised (``_hook_train_returns``): the
        SIGTERM handler of a distributed call is restored whatever the path. A call that raised
        keeps its run for ``_finish_abandoned`` (the next call, or exit)."""
        undo, self._undo_sigterm = self._undo_sigterm, None
        if undo is not None:
            with self._recording("SIGTERM's handler"):
                undo()

    def _end_train_call(self) -> None:
        self._in_train = False
        _training.discard(self)
        undo, self._undo_sigterm = self._undo_sigterm, None
        if undo is not None:
            undo()

    def _resume_part(self, args: Any) -> None:
        """``all_ranks``, a process other than zero, outside ``train()``: its finished part
        continues (a new session of it) for an ``evaluate()``/``predict()`` call."""
        part = self._part
        try:
            self._part = join_run_part(part, part.project, part.id, f"rank_{getattr(args, 'process_index', 0)}",
                                       self._init_args)
            self._part_resumed = True  # finished again at the end of the call
        except Exception as error:
            self._resume_failed = True  # not tried again at every batch of this call
            self._failed("this process's part of the run", error)

    def _part_call(self, args: Any) -> None:
        """``on_evaluate``/``on_predict`` on a process other than zero: outside ``train()``, a
        finished part (``finish_on_train_end``, or finished by you) is resumed for the call (if
        no batch did) and finished again at its end, as process zero's run is; a live part goes on."""
        part = self._part
        if part is None or self._in_train:
            return
        if part.finished and not self._resume_failed:
            self._resume_part(args)
        self._resume_failed = False
        resumed, self._part_resumed = self._part_resumed, False
        part = self._part
        if resumed and not part.finished:
            with self._recording("the end of this process's part"):
                part.finish(0)

    def _use(self, run: Any, *, owned: bool, define: bool = True) -> None:
        if run is self._run:
            return
        self._run, self._owned, self._offset = run, owned, 0
        self._trial = self._close_call = False
        self._last_row, self._last_step, self._floor = (None, -1, {}), -1, -1
        if owned:
            _install_exit_guard()
        if owned and define:
            with self._recording("define_metric"):
                # Only on runs the callback starts: a definition without summary= would replace
                # a summary mode the user set on their own run.
                for pattern in ("train/*", "eval/*", "test/*"):
                    run.define_metric(pattern, step_metric=GLOBAL_STEP)

    @staticmethod
    def _resume(run: Any) -> Any:
        settings = dataclasses.asdict(run.settings)
        settings.pop("project", None)
        settings["capture_environment"] = False  # the first session captured it
        return tracklet.init(project=run.project, id=run.id, resume="allow", settings=settings)

    def _record_config(self, run: Any, args: Any, model: Any) -> None:
        self._configured = run
        config = model_config(model) if model is not None else {}
        to_dict = getattr(args, "to_dict", None)
        if callable(to_dict):
            config[TRAINING_ARGS_KEY] = to_dict()
        if self._config is not None:
            config.update(self._config)
        run.config.update(config)

    def _continue_steps(self, run: Any, global_step: int) -> None:
        """A ``train()`` call begins at ``global_step`` (0, or a checkpoint's step). On a run this
        callback has already logged to (an earlier call's run, continued), the call's steps go on
        from the last row's: run step = that step + (Trainer step - ``global_step``), so a second
        call from step 0 continues the axis and a call resumed from that run's last checkpoint
        keeps run step = ``global_step``. No row of the call goes to that last row's step or
        before (``_run_step``); on a run with rows this callback did not log (the user's, one
        resumed from another process, another callback's), none goes to the run's current step or
        before (it may hold a row logged with ``step=``): nothing logged before the call is merged
        into or refused."""
        if run is None:
            self._floor = -1
        elif self._last_row[0] is run:
            self._floor = self._last_step
            self._offset = max(0, self._last_step - global_step)
        else:
            self._floor = run.step if run.step > 0 else -1

    def _run_step(self, run: Any, global_step: int) -> int:
        """The run step for a Trainer step: ``global_step + offset``. A run the callback started
        uses ``global_step`` itself; on a run that is already further along (the user's own run, a
        resumed one, a continued one) rows go to the run's current step and on from there, since
        steps never go back, and a continued call's rows go after the rows of the calls before
        it (``_continue_steps``); ``train/global_step`` always holds the Trainer's step."""
        step = global_step + self._offset
        low = run.step if run.step > self._floor else self._floor + 1
        if step < low:
            self._offset = low - global_step
            step = low
        return step

    def _log_row(self, run: Any, row: dict[str, Any], global_step: int) -> None:
        row[GLOBAL_STEP] = global_step
        step = self._run_step(run, global_step)
        run.log(row, step=step)
        self._last_row = (run, global_step, row)
        self._last_step = step

    def _end_call(self) -> None:
        """After an ``evaluate()``/``predict()`` call outside training: finish the run again if it
        is this callback's and was finished before the call (resumed for it) or
        ``finish_on_train_end`` is set."""
        run = self._run
        close, self._close_call = self._close_call, False
        if run is not None and self._owned and not run.finished and (close or self._per_call):
            run.finish(0)

    def _finish_abandoned(self, why: str) -> None:
        """A ``train()`` call that never reached ``on_train_end``: its exception was caught."""
        if not self._in_train:
            return
        self._end_train_call()
        for run in (self._run if self._owned else None, self._part):
            if run is None or run.finished:
                continue
            error = TrainingIncomplete(
                f"trainer.train() stopped before on_train_end (an exception was raised in it and caught by the "
                f"caller); {why}"
            )
            with self._recording("the end of an abandoned train() call"):
                run.finish(1, error=error)

    @contextlib.contextmanager
    def _recording(self, where: str) -> Iterator[None]:
        """Recording failures warn (once per event) and never stop training."""
        try:
            yield
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:
            self._failed(where, error)

    def _failed(self, where: str, error: Exception) -> None:
        if where not in self._warned:
            self._warned.add(where)
            warnings.warn(
                f"tracklet: the Hugging Face callback could not record {where}: {error!r}; training goes on",
                TrackletWarning,
                stacklevel=4,
            )


def checkpoint_dir(output_dir: str, global_step: int) -> str:
    """Where the Trainer saved the checkpoint of ``global_step``: ``<output_dir>/checkpoint-<N>``,
    or ``<output_dir>/<trial run>/checkpoint-<N>`` during a hyperparameter search."""
    folder = f"{_CHECKPOINT_PREFIX}-{global_step}"
    path = os.path.join(output_dir, folder)
    if not os.path.isdir(path):
        nested = [p for p in glob.glob(os.path.join(glob.escape(output_dir), "*", folder)) if os.path.isdir(p)]
        if nested:
            return max(nested, key=os.path.getmtime)
    return path


def _best_step(state: Any) -> int | None:
    """The global step of the best checkpoint: ``state.best_global_step`` (newer transformers),
    else the ``-<N>`` of ``state.best_model_checkpoint``."""
    step = getattr(state, "best_global_step", None)
    if step is not None:
        return int(step)
    best = getattr(state, "best_model_checkpoint", None)
    if not best:
        return None
    tail = os.path.basename(os.path.normpath(str(best))).rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def _run_name(args: Any) -> str | None:
    name = getattr(args, "run_name", None)
    if not name or name == getattr(args, "output_dir", None):
        return None  # older transformers default run_name to output_dir
    return str(name)


__all__ = ["TrackletCallback", "TrainingIncomplete", "rewrite_logs"]
