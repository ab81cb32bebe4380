"""Keras 3: ``TrackletCallback`` records a ``model.fit()`` into a tracklet run.

    import keras
    from tracklet.integrations.keras import TrackletCallback

    model.fit(x, y, epochs=10, validation_split=0.1,
              callbacks=[TrackletCallback(project="mnist", log_freq=100),
                         keras.callbacks.ModelCheckpoint("best.keras", save_best_only=True)])

What it records (docs/integrations/keras.md has the details):

- ``epoch/<metric>`` for every metric Keras reports at the end of an epoch (``val_*`` included),
  ``epoch/epoch`` (epochs completed, as in ModelCheckpoint's ``{epoch}``) and
  ``epoch/learning_rate``;
- with ``log_freq=N``, ``batch/<metric>`` (Keras's running mean over the epoch so far) and
  ``batch/learning_rate`` every N training batches;
- the step of every row is the number of training batches completed (plus the run's step when
  ``fit()`` began), so batch and epoch charts share one x axis;
- ``config["keras"]``: backend and version, parameter counts, fit parameters, optimizer config;
- files written by the fit's ``keras.callbacks.ModelCheckpoint`` callbacks, as checkpoint
  records (path, size, SHA-256, score and monitor).

Run ownership: the callback uses the run passed as ``run=``, else the active run
(``tracklet.init()`` before ``fit()``), else it starts one at ``on_train_begin`` with
``project`` and the other ``tracklet.init`` arguments. Only a run it started is finished, with
exit code 0 at ``on_train_end``. Keras has no hook for a failed ``fit()``: an exception that
escapes the script marks the run ``failed`` through tracklet's exit hooks; use the callback as
a context manager to mark it failed where the exception is caught (a notebook, a retry loop).

Threading: the callback declares ``async_safe``, so on backends that allow it (JAX, torch) Keras
may call its batch hooks on a worker thread and convert the batch's logs off the training thread.
Rows are put back in batch order before they are logged. The learning rate is read on the
training thread in ``on_train_batch_begin`` (only for batches that end a logging interval), as
the backend tensor the coming update uses; the run's sender converts it, so logging never forces
a device sync of its own.
"""

from __future__ import annotations

import glob
import heapq
import math
import os
import string
import sys
import threading
import warnings
import weakref
from collections import deque
from typing import Any, Iterable, Literal, Mapping

try:
    import keras
except ModuleNotFoundError as _error:  # Keras 3 imports its backend at import time
    if _error.name and _error.name.split(".")[0] in {"tensorflow", "jax", "torch"}:
        raise ImportError(
            f"Keras could not load its backend ({_error.name} is not installed; KERAS_BACKEND="
            f"{os.environ.get('KERAS_BACKEND', 'unset, so tensorflow')}). Install one and select it before Keras "
            "is imported, e.g. pip install 'tracklet[keras,jax]' and KERAS_BACKEND=jax, or torch==2.13.0 "
            "and KERAS_BACKEND=torch, or install tensorflow"
        ) from _error
    raise

import tracklet
from tracklet.core import lifecycle
from tracklet.core.encoder import TrackletWarning
from tracklet.core.start import init_arguments
from tracklet.errors import TrialPruned

__all__ = ["TrackletCallback"]

# fit() arguments worth keeping in the config (Keras passes only verbose/epochs/steps to callbacks).
_FIT_ARGUMENTS = (
    "batch_size",
    "epochs",
    "initial_epoch",
    "shuffle",
    "steps_per_epoch",
    "validation_split",
    "validation_steps",
    "validation_batch_size",
    "validation_freq",
)
_FRAMES_TO_SEARCH = 12


class TrackletCallback(keras.callbacks.Callback):
    """Record a Keras 3 ``model.fit()`` into a tracklet run.

    Args:
        project: project of the run the callback starts when no run is active (ignored when a
            run is active or ``run`` is given).
        log_freq: ``"epoch"`` (default): one row per epoch. An int N (or ``"batch"`` for 1):
            also a row of batch metrics every N training batches.
        checkpoints: ``True`` (default): record the files written by every
            ``keras.callbacks.ModelCheckpoint`` in the same ``fit()``; ``False``: none; or a
            list of ModelCheckpoint callbacks to watch.
        run: a ``tracklet.Run`` to log to (never finished by the callback).
        **init_kwargs: other ``tracklet.init`` arguments (``name``, ``config``, ``tags``,
            ``dir``, ``settings``, ...) for the run the callback starts.
    """

    # Keras may dispatch this callback's batch hooks on a worker thread (see the module docstring).
    async_safe = True

    # Per-fit state that _reset_fit_state sets (declared here: the batch hooks above it read it).
    _epoch_base: int
    _last_end: int
    _pending_epoch: tuple[int, int, dict[str, Any]] | None

    def __init__(
        self,
        project: str | None = None,
        *,
        log_freq: int | str = "epoch",
        checkpoints: bool | Iterable[Any] = True,
        run: "tracklet.Run | None" = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._every = _parse_log_freq(log_freq)
        if checkpoints is True or checkpoints is False or checkpoints is None:
            self._explicit_checkpoints: list[Any] | None = None
            self._find_checkpoints = bool(checkpoints)
        else:
            self._explicit_checkpoints = list(checkpoints)
            bad = [c for c in self._explicit_checkpoints if not isinstance(c, keras.callbacks.ModelCheckpoint)]
            if bad:
                raise TypeError(f"checkpoints= takes ModelCheckpoint callbacks; got {type(bad[0]).__name__}")
            self._find_checkpoints = True
        if run is not None and not isinstance(run, tracklet.Run):
            raise TypeError(f"run= takes a tracklet.Run; got {type(run).__name__}")
        # checked here, not after the model is built
        init_kwargs = init_arguments("TrackletCallback", {"project": project, **init_kwargs},
                                     own=("log_freq", "checkpoints", "run"))
        self._project = init_kwargs.pop("project")
        self._init_kwargs = init_kwargs
        self._run_argument = run
        self._run: tracklet.Run | None = None
        self._owned = False
        self._in_fit = False
        self._managed = False  # inside ``with callback:`` the block, not on_train_end, ends an owned run
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._reset_fit_state()

    # ------------------------------------------------------------------ public

    @property
    def run(self) -> "tracklet.Run | None":
        """The run this callback logs to (None before ``fit()`` and after it finished its own run)."""
        return self._run

    def __enter__(self) -> "TrackletCallback":
        """``with TrackletCallback(...) as cb:``: a run the callback starts lasts until the block
        ends (every fit() in it, and ``cb.run.log(...)`` after them, go to that run)."""
        self._managed = True
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Literal[False]:
        """Finish a run this callback started: failed with ``error`` (exit code 130 for
        KeyboardInterrupt, else 1) when the block raised, else finished. Never swallows the error."""
        self._managed = False
        run = self._run
        if run is not None and self._owned and not run.finished:
            if error is None:
                run.finish(0)
            else:
                run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)
        if self._owned:
            self._run, self._owned = None, False
        self._in_fit = False
        return False

    # ------------------------------------------------------------------ fit lifecycle

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        run = self._acquire_run()
        self._run = run
        self._reset_fit_state()
        self._in_fit = True
        self._offset = run.step
        model = self.model
        callbacks, fit_arguments = _inspect_fit(self, sys._getframe(1))
        self._record_config(run, model, fit_arguments)
        self._watch_checkpoints(callbacks)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Every callback's on_epoch_end of the last epoch has run: its checkpoint files are final.
        self._scan_checkpoints()

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Training thread, in order, before the step: the only place where the optimizer state the
        # coming update uses is live on every backend (JAX donates it to the step).
        every = self._every
        if every is None:
            return  # log_freq="epoch": on_train_batch_end counts the batches
        learning_rates = None
        start = self._epoch_base + batch
        end = start + self._steps_per_execution
        if self._epoch_steps is not None:
            end = min(end, self._epoch_base + self._epoch_steps)
        if end // every > start // every:
            learning_rates = self._learning_rates(self._model_for_batches())
        with self._lock:
            self._begins.append((batch, learning_rates))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # The training thread, or one of Keras's callback threads (async dispatch): any order.
        with self._lock:
            if self._every is None:
                self._last_end = max(self._last_end, batch)
                return
            heapq.heappush(self._ends, batch)
            self._batch_logs[batch] = logs
            self._drain(self._every)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        with self._lock:  # Keras has waited for every batch hook of this epoch
            if self._every is None:
                if self._last_end >= 0:
                    self._batches = self._epoch_base + self._completed(self._last_end)
                self._last_end = -1
            else:
                self._drain(self._every)
            self._epoch_base = self._batches
            self._begins.clear()
            self._ends.clear()
            self._batch_logs.clear()
        run = self._run
        if run is None:
            return
        logs = dict(logs or {})
        row = {"epoch/" + str(key): value for key, value in logs.items()}
        row["epoch/epoch"] = epoch + 1
        for key, value in self._learning_rates(self.model).items():
            row.setdefault("epoch/" + key, value)
        step = self._step_at(self._batches)
        self._log(row, step)
        self._pending_epoch = (epoch, step, logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._scan_checkpoints()
        self._in_fit = False
        run = self._run
        if run is not None and self._owned and not self._managed:
            run.finish(0)
            self._run, self._owned = None, False

    # ------------------------------------------------------------------ the run

    def _acquire_run(self) -> "tracklet.Run":
        previous = self._run
        if previous is not None and self._in_fit and self._owned and not previous.finished:
            # The last fit() never reached on_train_end: an exception stopped it and was caught.
            previous.finish(1, error=RuntimeError(
                "model.fit() stopped before on_train_end (an exception interrupted it); the run was "
                "marked failed when the next fit() began"
            ))
        if previous is not None and not previous.finished and (self._owned or previous is self._run_argument):
            return previous
        self._owned = False
        if self._run_argument is not None:
            if self._run_argument.finished:
                raise RuntimeError("tracklet: the run given to TrackletCallback(run=...) has finished")
            return self._run_argument
        current = lifecycle.current()
        if current is not None:
            if self._project is not None and current.project != self._project:
                self._warn_once(
                    "project",
                    f"tracklet: TrackletCallback(project={self._project!r}) logs to the active run "
                    f"{current.path}; finish it first to start a run in {self._project!r}",
                )
            return current
        run = tracklet.init(project=self._project, **self._init_kwargs)
        self._owned = True
        return run

    def _log(self, row: dict[str, Any], step: int) -> None:
        run = self._run
        if run is None or run.finished:
            if run is not None:
                self._warn_once("finished", "tracklet: the run finished during fit(); the Keras callback stops logging")
            return
        try:
            run.log(row, step=step)
        except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
            raise
        except Exception as error:  # a tracker must not stop training
            self._warn_once("log", f"tracklet: the Keras callback could not log ({type(error).__name__}: {error}); "
                                   "training continues")

    def _step_at(self, batches: int) -> int:
        """The run step after ``batches`` training batches of this fit. Steps never go back: if
        the run's step moved past the callback's (someone else logged), the callback moves on."""
        step = self._offset + batches
        run = self._run
        if run is not None:
            current = run.step
            if step < current:
                self._offset += current - step
                step = current
        return step

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, TrackletWarning, stacklevel=3)

    # ------------------------------------------------------------------ batches

    def _reset_fit_state(self) -> None:
        self._offset = 0
        self._batches = 0  # training batches completed in this fit (in order)
        self._epoch_base = 0  # ... before the current epoch
        self._begins: deque[tuple[int, Any]] = deque()  # (begin step, learning rates) in call order
        self._ends: list[int] = []  # a heap of end steps whose hooks ran
        self._batch_logs: dict[int, Any] = {}
        self._last_end = -1  # log_freq="epoch": the highest batch index seen this epoch
        self._pending_epoch = None
        self._watches: list[_CheckpointWatch] = []
        self._variable_index: dict[int, int] = {}
        self._steps_per_execution = 1
        self._epoch_steps: int | None = None

    def _drain(self, every: int) -> None:
        """Match finished batch hooks to their begins in call order and log the rows that end a
        ``log_freq`` interval (``every`` batches). A hook that ran early waits for the earlier ones.
        Holds the lock."""
        begins, ends = self._begins, self._ends
        while begins and ends:
            end = ends[0]
            if len(begins) > 1 and end >= begins[1][0]:
                return  # the oldest begin's hook has not run yet
            heapq.heappop(ends)
            _, learning_rates = begins.popleft()
            logs = self._batch_logs.pop(end, None)
            before = self._batches
            self._batches = after = self._epoch_base + self._completed(end)
            if after // every > before // every:
                row = {"batch/" + str(key): value for key, value in (logs or {}).items()}
                if learning_rates:
                    for key, value in learning_rates.items():
                        row.setdefault("batch/" + key, value)
                self._log(row, self._step_at(after))

    def _completed(self, end: int) -> int:
        """Batches of this epoch completed when the hook for ``end`` ran. Keras reports a short
        last execution of an epoch (``steps_per_execution`` > 1) as a full one: clip it."""
        done = end + 1
        steps = self._epoch_steps
        return steps if steps is not None and done > steps else done

    def _model_for_batches(self) -> Any:
        """The model without ``self.model``'s side effect (on JAX it syncs the whole state back
        into the variables, which costs a state copy per call in the middle of an epoch)."""
        model = getattr(self, "_model", None)
        if model is not None and not hasattr(model, "optimizer"):
            model = getattr(model, "module", model)  # torch DistributedDataParallel
        return model

    # ------------------------------------------------------------------ learning rate

    def _learning_rates(self, model: Any) -> dict[str, Any]:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None or "lr" in self._warned:
            return {}
        try:
            inner = getattr(optimizer, "optimizers", None)
            if inner:
                return {f"learning_rate_{opt.name}": self._learning_rate(model, opt) for opt in inner}
            return {"learning_rate": self._learning_rate(model, optimizer)}
        except Exception as error:
            self._warn_once("lr", f"tracklet: could not read the learning rate ({type(error).__name__}: {error}); "
                                  "it is not logged")
            return {}

    def _learning_rate(self, model: Any, optimizer: Any) -> Any:
        """The rate the optimizer's next update uses, as a fresh backend tensor (no device sync)."""
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        rate = getattr(optimizer, "_learning_rate", None)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            return _detached(self._schedule(rate)(self._variable_value(model, optimizer._iterations)))
        if isinstance(rate, keras.Variable):
            return _detached(self._variable_value(model, rate), copy=True)
        if callable(rate):
            return _detached(rate())
        if rate is None:
            return _detached(optimizer.learning_rate, copy=True)
        return rate

    def _schedule(self, schedule: Any) -> Any:
        """With batch rows on JAX, the schedule compiled once per schedule object (tens of ms):
        then one dispatch (~6 us) per row instead of one per op of an eager evaluation (~270 us
        for ExponentialDecay on a CPU). Epoch rows alone evaluate it eagerly. A schedule that
        cannot be traced (Python control flow on the step) is evaluated eagerly."""
        if self._every is None or keras.backend.backend() != "jax":
            return schedule
        try:
            compiled = _compiled_schedules.get(schedule)
            if compiled is None:
                compiled = _compiled_schedules[schedule] = _Jitted(schedule)
        except TypeError:  # not weak-referenceable or not hashable
            return schedule
        return compiled

    def _variable_value(self, model: Any, variable: Any) -> Any:
        """A variable's current value. On JAX the variables are stale in the middle of an epoch
        (the trainer keeps the state apart from them until the epoch ends), so the value comes
        from that state when the variables are not in sync."""
        state = getattr(model, "_jax_state", None)
        if state and not getattr(model, "_jax_state_synced", True):
            values = state.get("optimizer_variables")
            if values:
                index = self._variable_index.get(id(variable))
                if index is None:
                    index = next((i for i, v in enumerate(model.optimizer.variables) if v is variable), -1)
                    self._variable_index[id(variable)] = index
                if 0 <= index < len(values):
                    return values[index]
                # Not among the trainer's optimizer variables: its own value is stale or a placeholder.
                raise LookupError(f"variable {getattr(variable, 'path', variable)!r} is not in the optimizer's state")
        return variable.value

    # ------------------------------------------------------------------ config

    def _record_config(self, run: tracklet.Run, model: Any, fit_arguments: dict[str, Any]) -> None:
        info: dict[str, Any] = {"backend": keras.backend.backend(), "version": keras.__version__}
        params = dict(self.params or {})
        try:
            trainable = _count(model.trainable_weights)
            non_trainable = _count(model.non_trainable_weights)
            info["model"] = {
                "name": model.name,
                "class": type(model).__name__,
                "total_params": trainable + non_trainable,
                "trainable_params": trainable,
                "non_trainable_params": non_trainable,
                "layers": len(getattr(model, "layers", ())),
            }
        except Exception:  # an unbuilt or unusual model: leave the counts out
            pass
        info["fit"] = {**fit_arguments, **params}
        try:
            self._steps_per_execution = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
        except (TypeError, ValueError):
            self._steps_per_execution = 1
        steps = params.get("steps")
        self._epoch_steps = steps if isinstance(steps, int) and steps > 0 else None
        info["fit"]["steps_per_execution"] = self._steps_per_execution
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            try:
                info["optimizer"] = {"class": type(optimizer).__name__, **optimizer.get_config()}
            except Exception:
                info["optimizer"] = {"class": type(optimizer).__name__}
        loss = getattr(model, "loss", None)
        if loss is not None:
            info["loss"] = _describe(loss)
        run.config.update({"keras": info})

    # ------------------------------------------------------------------ checkpoints

    def _watch_checkpoints(self, callbacks: list[Any] | None) -> None:
        if not self._find_checkpoints:
            return
        found = self._explicit_checkpoints
        if found is None:
            if callbacks is None:
                self._warn_once(
                    "callbacks",
                    "tracklet: could not find the callbacks of this fit(); pass "
                    "TrackletCallback(checkpoints=[model_checkpoint]) to record checkpoint files",
                )
                return
            found = [c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint)]
        self._watches = [w for w in map(_CheckpointWatch.create, found) if w is not None]

    def _scan_checkpoints(self) -> None:
        pending, self._pending_epoch = self._pending_epoch, None
        run = self._run
        if pending is None or run is None or run.finished or not self._watches:
            return
        epoch, step, logs = pending
        recorded: set[str] = set()
        for watch in self._watches:
            for path, score in watch.written(epoch, logs):
                if path in recorded:
                    continue  # two checkpoints' patterns match one file
                recorded.add(path)
                try:
                    run.log_checkpoint(
                        path,
                        step=step,
                        score=score,
                        monitor=watch.callback.monitor if score is not None else None,
                        metadata={
                            "epoch": epoch + 1,
                            "save_best_only": bool(watch.callback.save_best_only),
                            "save_weights_only": bool(watch.callback.save_weights_only),
                        },
                    )
                except Exception as error:
                    self._warn_once("checkpoint", f"tracklet: could not record checkpoint {path} "
                                                  f"({type(error).__name__}: {error})")


class _CheckpointWatch:
    """Which files one ModelCheckpoint wrote since the last look.

    Saving once per epoch, the path is the callback's ``filepath`` formatted for the epoch, and
    the file counts as written when the callback saved that epoch by its own rule (every epoch,
    or its ``best`` improved) or the file is new or changed (size, mtime, inode: a save the rule
    cannot predict, such as ``save_best_only`` without the monitored metric). Saving every N
    batches, or when the path cannot be formatted, every file matching the ``filepath`` pattern
    that is new or changed counts.
    """

    def __init__(self, callback: Any, pattern: str) -> None:
        self.callback = callback
        self.pattern = pattern
        self.seen = {path: _signature(path) for path in glob.glob(pattern)}
        self.best = _as_float(callback.best)

    @classmethod
    def create(cls, callback: Any) -> "_CheckpointWatch | None":
        filepath = str(callback.filepath)
        if "://" in filepath:
            return None  # a remote path (gs://...): nothing local to digest
        try:
            pattern = _glob_pattern(os.path.abspath(filepath))
        except ValueError:
            return None
        return cls(callback, pattern)

    def written(self, epoch: int, logs: Mapping[str, Any]) -> list[tuple[str, float | None]]:
        callback = self.callback
        by_epoch = callback.save_freq == "epoch"
        best = _as_float(callback.best)
        improved = best is not None and (self.best is None or best != self.best)
        self.best = best
        expected = None
        if by_epoch:
            try:
                expected = os.path.abspath(str(callback.filepath).format(epoch=epoch + 1, **logs))
            except (KeyError, ValueError, IndexError, AttributeError):
                expected = None
        saved_by_rule = by_epoch and (not callback.save_best_only or improved)
        # The exact path when it can be known: another checkpoint's files may match the pattern.
        paths = [expected] if expected is not None else glob.glob(self.pattern)
        found = []
        for path in paths:
            signature = _signature(path)
            if signature is None:
                continue
            if signature != self.seen.get(path) or (path == expected and saved_by_rule):
                found.append((signature[0], path))
            self.seen[path] = signature
        if by_epoch:
            score = _as_float(logs.get(callback.monitor))
        else:
            score = best if callback.save_best_only else None
        return [(path, score) for _, path in sorted(found)]


# ---------------------------------------------------------------------- helpers


def _parse_log_freq(log_freq: Any) -> int | None:
    if log_freq == "epoch":
        return None
    if log_freq == "batch":
        return 1
    if isinstance(log_freq, int) and not isinstance(log_freq, bool) and log_freq > 0:
        return log_freq
    raise ValueError(f'log_freq must be "epoch", "batch" or a positive number of batches; got {log_freq!r}')


def _inspect_fit(callback: Any, frame: Any) -> tuple[list[Any] | None, dict[str, Any]]:
    """The callbacks of the fit() this callback is part of (the CallbackList calling it) and the
    arguments fit() was called with, read from the calling frames; (None, {}) when not found."""
    callbacks = None
    arguments: dict[str, Any] = {}
    try:
        for _ in range(_FRAMES_TO_SEARCH):
            if frame is None:
                break
            local = frame.f_locals
            owner = local.get("self")
            if callbacks is None and isinstance(owner, keras.callbacks.CallbackList):
                members = list(getattr(owner, "callbacks", ()))
                if any(c is callback for c in members):
                    callbacks = members
            elif frame.f_code.co_name == "fit" and isinstance(owner, keras.Model):
                arguments = {k: local[k] for k in _FIT_ARGUMENTS if _is_plain(local.get(k, object()))}
                break
            frame = frame.f_back
    except Exception:  # introspection is best effort: without it, only checkpoint discovery is lost
        return callbacks, arguments
    finally:
        del frame
    return callbacks, arguments


def _is_plain(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _count(weights: Iterable[Any]) -> int:
    unique = {id(w): w for w in weights}
    return int(sum(math.prod(int(d) for d in w.shape) for w in unique.values()))


def _describe(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    name = getattr(value, "name", None) or getattr(value, "__name__", None)
    return str(name) if name else type(value).__name__


def _detached(value: Any, copy: bool = False) -> Any:
    """A value safe to hand to ``run.log``: the sender reads it later, so it must not change.
    JAX arrays are immutable, but the trainer donates its state to the next step, so a state
    array is copied (on the device, asynchronously); torch tensors are detached and cloned
    (variables are updated in place); other backends' tensors become floats."""
    backend = keras.backend.backend()
    if backend == "jax":
        if copy and hasattr(value, "shape"):
            return _jax_copy(value)
        return value
    if backend == "torch" and hasattr(value, "detach"):
        value = value.detach()
        return value.clone() if copy else value
    if isinstance(value, (int, float)):
        return value
    return float(keras.ops.convert_to_numpy(value))


_jax_identity: Any = None
_compiled_schedules: "weakref.WeakKeyDictionary[Any, _Jitted]" = weakref.WeakKeyDictionary()


def _jax_copy(value: Any) -> Any:
    """A copy in a new device buffer, dispatched asynchronously (a compiled identity: ~6 us, a
    quarter of ``jnp.array(value, copy=True)``)."""
    global _jax_identity
    if _jax_identity is None:
        import jax

        _jax_identity = jax.jit(lambda v: v)
    return _jax_identity(value)


class _Jitted:
    """``jax.jit(schedule)``, falling back to calling the schedule if tracing it fails."""

    def __init__(self, schedule: Any) -> None:
        import jax

        self._schedule = schedule
        self._compiled: Any = jax.jit(schedule.__call__)

    def __call__(self, step: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(step)
            except Exception:
                self._compiled = None
        return self._schedule(step)


def _glob_pattern(filepath: str) -> str:
    """ModelCheckpoint's ``filepath`` (a format string: ``ckpt-{epoch:02d}.keras``) as a glob."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(filepath):
        parts.append(glob.escape(literal))
        if field is not None:
            parts.append("*")
    return "".join(parts)


def _signature(path: str) -> tuple | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return (info.st_mtime_ns, info.st_size, info.st_ino, info.st_ctime_ns)
    latest, total, count = info.st_mtime_ns, 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                child = os.stat(os.path.join(root, name))
            except OSError:
                continue
            latest, total, count = max(latest, child.st_mtime_ns), total + child.st_size, count + 1
    return (latest, total, count)


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
