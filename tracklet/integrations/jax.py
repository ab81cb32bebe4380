"""JAX: track a training-step function's metrics, and record XLA compilations.

    from tracklet.integrations.jax import track_step, watch_compilation

    run = tracklet.init(project="mlp")
    watch_compilation(run)                 # jax/compile_count, jax/compile_seconds, recompile alerts

    @track_step(run=run)                   # or track_step(train_step, run=run)
    @jax.jit
    def train_step(state, batch):
        ...
        return state, {"loss": loss, "grad_norm": grad_norm}

Neither waits for the device. :func:`track_step` hands the step's metric arrays to ``run.log`` as
they are, still computing; the run's background sender reads them (and waits for them, if it
must) on its own thread. Nothing here calls ``jax.device_get``, ``block_until_ready``, ``float()``
or ``np.asarray`` on the caller's thread, so the Python loop keeps dispatching ahead of the
device, exactly as it does untracked.

Importing this module does not import jax; :func:`watch_compilation` does.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any, Callable

from tracklet.core import forksafe
from tracklet.core import lifecycle
from tracklet.core.encoder import TrackletWarning
from tracklet.core.modules import loaded
from tracklet.errors import TrialPruned

__all__ = ["CompilationWatcher", "TrackedStep", "track_step", "watch_compilation"]

MetricsSelector = Callable[[Any], Any]


# --------------------------------------------------------------------------- track_step


def _is_scalar(value: Any) -> bool:
    """A 0-d array (jax, numpy) or a Python number: logged as ``loss`` when it is all a step returns."""
    if type(value) in (float, int):
        return True
    return getattr(value, "shape", None) == () and hasattr(value, "dtype")


def _as_metrics(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if _is_scalar(value):
        return {"loss": value}
    return None


def default_metrics(out: Any) -> Mapping[str, Any] | None:
    """The default rule for finding metrics in a step's output.

    The output itself if it is a dict; else, for a tuple or list, its last element if that is a
    dict; a single scalar (a 0-d array or a number), as the output or as a tuple's last element,
    is logged as ``loss``. Anything else: no metrics (a warning, once).
    """
    kind = type(out)
    if kind is tuple or kind is list:  # the usual shapes first, without an ABC check
        if not out:
            return None
        last = out[-1]
        return last if type(last) is dict else _as_metrics(last)
    if kind is dict or isinstance(out, Mapping):
        return out
    if isinstance(out, (tuple, list)):  # named tuples and other subclasses
        return _as_metrics(out[-1]) if out else None
    return _as_metrics(out)


class TrackedStep:
    """A training-step function that logs the metrics it returns. Made by :func:`track_step`.

    Call it exactly like the function it wraps; it returns the same output. ``run`` is the run it
    logs to (None until the first call when it starts or follows one), ``last_step`` the step of
    the latest call, ``calls`` the number of calls that returned. :meth:`finish` (or leaving a
    ``with`` block) finishes the run only if this wrapper started it.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        run: Any = None,
        prefix: str = "train/",
        every: int = 1,
        metrics: MetricsSelector | int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"track_step() wraps a callable; got {type(fn).__name__}")
        if type(every) is not int or every < 1:
            raise ValueError(f"every must be a positive int; got {every!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str; got {type(prefix).__name__}")
        if run is not None and init_kwargs:
            raise ValueError(
                "track_step() takes either run= (log to that run) or tracklet.init() arguments "
                f"(start a run on the first call), not both; got run= and {', '.join(sorted(init_kwargs))}"
            )
        if init_kwargs:  # checked now, not at the first call
            from tracklet.core.start import init_arguments

            init_kwargs = init_arguments("track_step", init_kwargs, own=("run", "prefix", "every", "metrics"))
        if metrics is None:
            select: MetricsSelector = default_metrics
        elif type(metrics) is int:
            index = metrics
            select = lambda out: _as_metrics(out[index])  # noqa: E731
        elif callable(metrics):
            select = lambda out: _as_metrics_or_none(metrics(out))  # noqa: E731
        else:
            raise TypeError(f"metrics must be a callable (output -> dict) or an int index; got {metrics!r}")
        try:
            functools.update_wrapper(self, fn, updated=())  # its attributes are reached through __getattr__
        except (AttributeError, TypeError):  # callables without __name__/__dict__ (e.g. partial objects)
            self.__wrapped__ = fn
        self._fn = fn
        self._select = select
        self._default_select = metrics is None
        self._prefix = prefix
        self._every = every
        self._bound = run
        self._init_kwargs = dict(init_kwargs) if init_kwargs else None
        self._follow = run is None and not init_kwargs
        self._run: Any = run
        self._owned = False
        self._started = False  # whether this wrapper has started a run (it does so at most once)
        self._owned_run: Any = None
        self._next: int | None = None
        self._keys: dict[tuple, tuple] = {}
        self._warned: set[str] = set()
        self.calls = 0
        self._traced = False

    # ------------------------------------------------------------ the hot path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = self._run
        if run is None or run.finished or (self._follow and lifecycle.current() is not run):
            run = self._resolve()
            if run is None:  # nothing to log to (a finished run of its own): just run the step
                return self._fn(*args, **kwargs)
        # One past this function's previous call, or the run's step if that is ahead (moved by
        # log() calls without step=, or by another tracked function): never behind, so no row is
        # refused. The run's step follows every call, logged or not, so that compile metrics
        # recorded during the call and log() calls without step= made after it land in this
        # call's row (what log(step=N) does too).
        step = self._next
        current = run.step
        if step is None or step < current:
            step = current
        elif step > current:
            run.set_step(step)
        out = self._fn(*args, **kwargs)  # an exception propagates as it is; nothing is counted
        self._next = step + 1
        calls = self.calls
        self.calls = calls + 1
        if calls % self._every == 0:  # the first call, then every N-th
            if calls == 0 and _holds_tracers(out):
                self._traced = True
                self._warn_once(
                    "traced",
                    f"tracklet.track_step: {self._name} returned jax tracers: the tracked function is being "
                    "traced (track_step is inside jax.jit, grad, vmap or scan), so it runs once per compilation, "
                    "not once per step. Put track_step outside: track_step(jax.jit(train_step)). "
                    "Nothing is logged from this wrapper",
                )
            if not self._traced:
                self._log(run, out, step)
        return out

    def _log(self, run: Any, out: Any, step: int) -> None:
        try:
            metrics = self._select(out)
        except Exception as error:  # a selector bug must not cost the training step its result
            self._warn_once(
                "select",
                f"tracklet.track_step: the metrics selector of {self._name} raised {type(error).__name__}: "
                f"{error}; nothing was logged for this call (this warning is shown once)",
            )
            return
        if metrics is None:
            if self._default_select:
                self._warn_once(
                    "no-metrics",
                    f"tracklet.track_step: {self._name} returned {type(out).__name__}, which holds no "
                    "dict of metrics (nor a scalar loss) where the default rule looks: the output itself or a "
                    "tuple's last element. Pass metrics=lambda out: ... to say where they are. "
                    "Nothing is logged for such calls (this warning is shown once)",
                )
            return
        prefix = self._prefix
        if prefix:
            keys = tuple(metrics)
            prefixed = self._keys.get(keys)
            if prefixed is None:
                prefixed = tuple(prefix + (k if isinstance(k, str) else str(k)) for k in keys)
                if len(self._keys) > 256:
                    self._keys.clear()
                self._keys[keys] = prefixed
            metrics = dict(zip(prefixed, metrics.values()))
        # The values go as they are: jax arrays, still being computed, are read on the sender's thread.
        run.log(metrics, step=step)

    # ------------------------------------------------------------ which run

    def _resolve(self) -> Any:
        """The slow path of ``__call__``: find (or start) the run to log to, or None."""
        run = self._run
        if self._bound is not None:
            if run.finished:
                self._warn_once(
                    "finished",
                    f"tracklet.track_step: the run {run.path} has finished; {self._name} goes on "
                    "running but logs nothing more (this warning is shown once)",
                )
                return None
            return run
        if self._follow:
            current = lifecycle.current()
            if current is None and not self._started:
                current = self._start_run({})
            if current is None:
                if run is not None and run.finished:
                    self._warn_once(
                        "finished",
                        f"tracklet.track_step: the run {run.path} has finished and no other run is active; "
                        f"{self._name} goes on running but logs nothing until tracklet.init() starts one "
                        "(this warning is shown once)",
                    )
                return None
            if current is not run:
                self._run = current
                self._next = None  # a new run: count from its step
                self._owned = current is self._owned_run
            return current
        # started from init_kwargs, on the first call
        if not self._started:
            return self._start_run(self._init_kwargs or {})
        if run is not None and run.finished:
            self._warn_once(
                "finished",
                f"tracklet.track_step: the run {run.path} that {self._name} started has finished; "
                f"{self._name} goes on running but logs nothing more (this warning is shown once)",
            )
        return None

    def _start_run(self, init_kwargs: dict[str, Any]) -> Any:
        import tracklet

        run = tracklet.init(**init_kwargs)
        self._started = True
        self._owned_run = run
        self._owned = True
        self._run = run
        self._next = None
        return run

    @property
    def last_step(self) -> int | None:
        """The step of the latest call that returned (None before the first)."""
        return None if self._next is None else self._next - 1

    @property
    def run(self) -> Any:
        """The run this step logs to: the one given, started, or followed (None before the first call
        when it starts or follows one)."""
        if self._follow:
            return lifecycle.current() or self._run
        return self._run

    @property
    def owns_run(self) -> bool:
        """True when this wrapper started its run (and so :meth:`finish` finishes it)."""
        return self._owned and self._run is not None

    # ------------------------------------------------------------ lifecycle

    def finish(self, exit_code: int | None = None) -> None:
        """Finish the run if this wrapper started it; a run it was given or follows is left alone
        (its owner finishes it)."""
        if self.owns_run:
            self._run.finish(exit_code)

    def __enter__(self) -> "TrackedStep":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if not self.owns_run:
            return
        if error is None:
            self._run.finish()
        else:
            self._run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)

    # ------------------------------------------------------------ plumbing

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """Decorating a method: ``self`` is passed on (one counter for all instances)."""
        if instance is None:
            return self
        return functools.partial(self, instance)

    def __getattr__(self, name: str) -> Any:
        # Attributes of the wrapped function (e.g. a jitted function's .lower, .trace, .eval_shape).
        if name.startswith("__") or name == "_fn":
            raise AttributeError(name)
        return getattr(self._fn, name)

    @property
    def _name(self) -> str:
        return getattr(self._fn, "__name__", None) or repr(self._fn)

    def _warn_once(self, token: str, message: str) -> None:
        if token not in self._warned:
            self._warned.add(token)
            warnings.warn(message, TrackletWarning, stacklevel=4)

    def __repr__(self) -> str:
        return f"<tracklet TrackedStep of {self._name}, every={self._every}, prefix={self._prefix!r}>"


def _holds_tracers(out: Any) -> bool:
    """Whether a step's output holds jax tracers (checked on the first call only)."""

    jax_core = loaded("jax.core")
    tracer = getattr(jax_core, "Tracer", None)
    if tracer is None:
        return False
    try:
        import jax

        return any(isinstance(leaf, tracer) for leaf in jax.tree_util.tree_leaves(out))
    except Exception:  # noqa: BLE001  (an output jax cannot flatten: not traced)
        return False


def _as_metrics_or_none(value: Any) -> Mapping[str, Any] | None:
    return None if value is None else _as_metrics(value)


def track_step(
    fn: Callable[..., Any] | None = None,
    *,
    run: Any = None,
    prefix: str = "train/",
    every: int = 1,
    metrics: MetricsSelector | int | None = None,
    **init_kwargs: Any,
) -> Any:
    """Wrap a training-step function (jitted or not) so that each call logs the metrics it returns.

    ``@track_step``, ``@track_step(every=10)`` and ``track_step(train_step, run=run)`` all work.

    Metrics: by default the output itself if it is a dict, else a tuple's (or list's) last element
    if that is a dict; a lone scalar (0-d array or number) in either place is logged as ``loss``.
    ``metrics=`` says otherwise: an int picks that element of a tuple output, a callable takes the
    output and returns the dict (or a scalar, or None for "nothing this call"). Keys get ``prefix``
    (``"train/loss"``); nested dicts become ``train/a/b``.

    Steps: each call is recorded one step after the previous call, starting at the run's step (0
    for a new run; a resumed run continues), so call ``n`` is step ``n`` when nothing else moves the
    run's step. If something does (``log()`` calls without ``step=``, another tracked function),
    the call takes the run's step instead: steps never go back and no row is refused. The run's
    step follows every call, logged or not, so that your own ``run.log({...})`` without ``step=``
    after a call lands in that call's row. With ``every=N`` only every N-th call is logged (the
    first one included).

    The run: ``run=`` logs to that run, which the caller owns. Without it, ``tracklet.init()``
    keyword arguments (``project=``, ``config=``, ...) start a run on the first call, which this
    wrapper owns: end it with ``.finish()`` or use the wrapper as a context manager (or let the
    interpreter's exit finish it). With neither, the wrapper logs to the active run
    (``tracklet.run``) at each call, starting one with default settings if none is active.

    Cost: no device sync. The metric values (jax arrays) are passed to ``run.log`` unconverted; the
    run's background thread converts them. Do not donate a logged metric array to a later call
    (``donate_argnums``) before the run is flushed. An exception raised by the step propagates
    unchanged, nothing is logged for that call and the run is not finished by the wrapper.
    """
    def wrap(function: Callable[..., Any]) -> TrackedStep:
        return TrackedStep(function, run=run, prefix=prefix, every=every, metrics=metrics, init_kwargs=init_kwargs)

    if fn is None:
        return wrap
    return wrap(fn)


# --------------------------------------------------------------------------- compilation events

# Emitted by jax (jax._src.dispatch) through jax.monitoring, as duration events with fun_name=...:
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # XLA compile (or persistent-cache load)
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"  # tracing a Python function to a jaxpr
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # lowering the jaxpr to MLIR
_EVENTS = frozenset({BACKEND_COMPILE_EVENT, TRACE_EVENT, LOWER_EVENT})

_lock = forksafe.rlock()
_watchers: tuple["CompilationWatcher", ...] = ()
_listening = False
_primitive_names: frozenset[str] | None = None


class _RunCompileStats:
    __slots__ = ("count", "seconds", "trace_seconds", "functions", "alerted")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.trace_seconds = 0.0
        self.functions: dict[str, int] = {}
        self.alerted: set[str] = set()


class CompilationWatcher:
    """Records jax's compilation events in a run. Made by :func:`watch_compilation`.

    Every XLA compilation is recorded as one history row at the run's current step:
    ``jax/compile_count`` (compilations since watching began, per run), ``jax/compile_seconds``
    (their total time), ``jax/last_compile_seconds`` and ``jax/trace_seconds`` (total time spent
    tracing and lowering Python functions, which precedes compiling them). A function compiled more
    than ``warn_after`` times raises one WARN alert in the run and one :class:`TrackletWarning`.
    """

    def __init__(self, run: Any, prefix: str, warn_after: int | None) -> None:
        self._run = run
        self.prefix = prefix
        self.warn_after = warn_after
        self._keys = tuple(prefix + k for k in ("compile_count", "compile_seconds", "last_compile_seconds", "trace_seconds"))
        self._stats: dict[int, tuple[Any, _RunCompileStats]] = {}
        self._stopped = False

    @property
    def run(self) -> Any:
        """The run it records in: the one given, else the active run (None when there is none)."""
        if self._run is not None:
            return self._run
        return lifecycle.current()

    @property
    def active(self) -> bool:
        """False once stopped, or once the run it was given has finished."""
        return not self._stopped and not (self._run is not None and self._run.finished)

    def stats(self, run: Any = None) -> dict[str, Any]:
        """What it has seen for ``run`` (default: :attr:`run`): ``compile_count``, ``compile_seconds``,
        ``trace_seconds`` and ``functions`` (compilations per jitted function name)."""
        target = self.run if run is None else run
        entry = self._stats.get(id(target)) if target is not None else None
        stats = entry[1] if entry is not None and entry[0] is target else _RunCompileStats()
        return {
            "compile_count": stats.count,
            "compile_seconds": stats.seconds,
            "trace_seconds": stats.trace_seconds,
            "functions": dict(stats.functions),
        }

    def stop(self) -> None:
        """Stop recording. When no watcher is left, jax's listener is unregistered too."""
        global _watchers
        with _lock:
            self._stopped = True
            _watchers = tuple(w for w in _watchers if w is not self)
            _release_listener_if_idle()

    def __enter__(self) -> "CompilationWatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        target = self._run.path if self._run is not None else "the active run"
        state = "active" if self.active else "stopped"
        return f"<tracklet CompilationWatcher for {target}, {state}>"

    # ------------------------------------------------------------ called from jax's listener

    def _stats_for(self, run: Any) -> _RunCompileStats:
        entry = self._stats.get(id(run))
        if entry is None or entry[0] is not run:
            if len(self._stats) > 64:  # a long-lived follower of many runs keeps the live ones only
                self._stats = {k: v for k, v in self._stats.items() if not v[0].finished}
            entry = (run, _RunCompileStats())
            self._stats[id(run)] = entry
        return entry[1]

    def _record(self, run: Any, event: str, seconds: float, fun_name: str) -> None:
        stats = self._stats_for(run)
        if event != BACKEND_COMPILE_EVENT:
            stats.trace_seconds += seconds
            return
        stats.count += 1
        stats.seconds += seconds
        compiled = stats.functions.get(fun_name, 0) + 1
        stats.functions[fun_name] = compiled
        # At the run's current step: inside a tracked step call, that call's step.
        run.log(dict(zip(self._keys, (stats.count, stats.seconds, seconds, stats.trace_seconds))), step=run.step)
        limit = self.warn_after
        if limit is not None and compiled > limit and fun_name not in stats.alerted and not _is_primitive(fun_name):
            stats.alerted.add(fun_name)
            title = f"{fun_name} compiled {compiled} times"
            text = (
                f"jax compiled {fun_name} {compiled} times in this run (the last took {seconds:.3g} s). "
                "Every new input shape, "
                "dtype, weak type or static-argument value compiles a jitted function again: pad or bucket "
                "shapes, keep dtypes fixed, and check static arguments. jax.config.update("
                "'jax_explain_cache_misses', True) logs why each compilation happened."
            )
            run.alert(title, text, level="WARN")
            warnings.warn(f"tracklet: {title}: accidental recompiles? {text}", TrackletWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside jax, jaxlib, flax and
    tracklet: the user's line whose call compiled."""
    import os
    import sys
    from types import FrameType

    # any state: a module's file is known from the start of its import
    files = (getattr(sys.modules.get(name), "__file__", None) for name in ("jax", "jaxlib", "flax", "tracklet"))
    prefixes = tuple(os.path.dirname(file) + os.sep for file in files if file)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(prefixes):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 2


def _is_primitive(fun_name: str) -> bool:
    """Eager jax operations compile as ``jit(<primitive>)``, once per new shape; they are counted
    but never alerted about (a loop of eager ops on varying shapes is not a jitted function that
    recompiles)."""
    global _primitive_names
    if _primitive_names is None:
        names: set[str] = set()
        try:
            import jax.extend.core as jex_core
            import jax.extend.core.primitives as primitives

            for attribute in dir(primitives):
                value = getattr(primitives, attribute, None)
                if isinstance(value, jex_core.Primitive):
                    names.add(value.name)
        except Exception:  # noqa: BLE001  (jax.extend's layout differs across versions: alert on all)
            pass
        _primitive_names = frozenset(names)
    inner = fun_name[4:-1] if fun_name.startswith("jit(") and fun_name.endswith(")") else fun_name
    return inner in _primitive_names


def _on_duration_event(event: str, duration_secs: float, **kwargs: Any) -> None:
    """The one listener registered with jax, for the whole process; routes to the watchers."""
    if event not in _EVENTS:
        return
    watchers = _watchers
    if not watchers:
        return
    try:
        targets: dict[int, tuple[Any, CompilationWatcher]] = {}
        dead = False
        for watcher in watchers:
            if watcher._run is not None:
                run = watcher._run
                if run.finished:
                    dead = True
                    continue
                targets[id(run)] = (run, watcher)  # a watcher given this run wins over a follower
            else:
                run = lifecycle.current()
                if run is not None and id(run) not in targets:
                    targets[id(run)] = (run, watcher)
        fun_name = str(kwargs.get("fun_name", "?"))
        for run, watcher in targets.values():
            watcher._record(run, event, float(duration_secs), fun_name)
        if dead:
            _prune()
    except TrialPruned:  # a sweep pruned the trial (Run._stop_logging): training stops
        raise
    except Exception as error:  # noqa: BLE001  (never break a jax compilation)
        _report_listener_error(error)


def _prune() -> None:
    """Drop watchers whose run has finished. Runs inside jax's listener loop, so the listener itself
    stays registered (removing it from jax's list mid-iteration would skip another listener); it is
    unregistered at the next stop() or watch_compilation() that finds no watcher left."""
    global _watchers
    with _lock:
        _watchers = tuple(w for w in _watchers if w.active)


_listener_errors: set[str] = set()


def _report_listener_error(error: BaseException) -> None:
    kind = type(error).__name__
    if kind not in _listener_errors:
        _listener_errors.add(kind)
        warnings.warn(
            f"tracklet: recording a jax compilation event failed ({kind}: {error}); compilation goes on "
            "(this warning is shown once)",
            TrackletWarning,
            stacklevel=2,
        )


def _registered_listeners() -> list[Any] | None:
    """jax's duration listeners, when this jax version lets us see them."""
    try:
        from jax._src import monitoring as jax_monitoring

        return jax_monitoring.get_event_duration_listeners()
    except (ImportError, AttributeError):
        return None


def _ensure_listener() -> None:
    global _listening
    import jax.monitoring

    registered = _registered_listeners()
    if registered is not None:
        _listening = _on_duration_event in registered  # someone may have cleared jax's listeners
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
        _listening = True


def _release_listener_if_idle() -> None:
    global _listening
    if _watchers or not _listening:
        return
    import jax.monitoring

    unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
    if unregister is None:  # older jax: the listener stays, a no-op without watchers
        return
    registered = _registered_listeners()
    if registered is None or _on_duration_event in registered:
        try:
            unregister(_on_duration_event)
        except (AssertionError, ValueError):
            pass
    _listening = False


def watch_compilation(run: Any = None, *, prefix: str = "jax/", warn_after: int | None = 5) -> CompilationWatcher:
    """Record jax's compilations in ``run`` (default: whichever run is active when one happens).

    Each XLA compilation adds ``jax/compile_count``, ``jax/compile_seconds`` (cumulative),
    ``jax/last_compile_seconds`` and ``jax/trace_seconds`` (cumulative tracing and lowering) at the
    run's current step. Counts are per run and start when watching starts; eager operations
    (``jnp.ones(...)`` outside ``jit``) compile too and are counted. A jitted function compiled
    more than ``warn_after`` times (new shapes, dtypes or static arguments each compile it again)
    raises one WARN alert in the run and one warning; ``warn_after=None`` turns that off.

    jax's listeners are process-global: this registers one listener for the process, whatever the
    number of calls, and routes events to the watchers. Calling it again for the same run returns
    the same watcher. A watcher given a run stops by itself when that run finishes; ``stop()`` ends
    any watcher (and unregisters jax's listener when none is left). For the same run, a watcher
    given the run takes precedence over one that follows the active run, so nothing is counted twice.
    """
    global _watchers
    if warn_after is not None and (type(warn_after) is not int or warn_after < 1):
        raise ValueError(f"warn_after must be a positive int or None; got {warn_after!r}")
    if run is not None and not hasattr(run, "_finished"):
        raise TypeError(f"watch_compilation(run=...) takes a tracklet run; got {type(run).__name__}")
    with _lock:
        _watchers = tuple(w for w in _watchers if w.active)
        for watcher in _watchers:
            if watcher._run is run:
                if watcher.prefix != prefix or watcher.warn_after != warn_after:
                    raise ValueError(
                        f"jax compilations are already watched for this run with prefix={watcher.prefix!r}, "
                        f"warn_after={watcher.warn_after!r}; stop() that watcher first to change them"
                    )
                _ensure_listener()
                return watcher
        watcher = CompilationWatcher(run, prefix, warn_after)
        _watchers = (*_watchers, watcher)
        _ensure_listener()
        return watcher
