"""``@tracklet.op``: a span per call of a function, recorded in the current run's log.

The caller pays for little, so an op can sit inside a training step:

- **disabled** (no current run, ``Settings.tracing`` off, a disabled-mode run): one read of
  ``lifecycle.trace_target``, then the plain call;
- **enabled**: a contextvar set and reset (so ops called inside this one become its children),
  two ``time.time_ns()`` reads, a counter for the span id, and one item appended to the run's
  sender queue holding *references* to the arguments and the result. Serializing them, redacting
  secrets, writing big payloads to the blob store and encoding the ``Span`` record happen on the
  sender's worker thread (``tracklet/tracing/record.py``).

So an argument the caller mutates after the call returns may be recorded in its later state
(docs/tracing.md: pass a copy, or ``capture="metadata"``). An exception the function raises is
recorded on the span and re-raised unchanged; a failure of tracklet's own bookkeeping is
reported once and never reaches the caller.

Generators and async generators get one span from their first ``next()`` to their end; the span
stays current only while the generator's own code runs (not while the consumer holds an item).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import os
import time
import warnings
from typing import Any, Callable, TypeVar, overload

from tracklet.core import lifecycle
from tracklet.errors import TrackletWarning

F = TypeVar("F", bound=Callable[..., Any])

CAPTURE_MODES = ("full", "metadata", "none")
# Items of a generator's output kept for its span (the count is recorded whole).
GENERATOR_ITEMS_KEPT = 1_000

# (trace id, span id) of the span whose code is running in this context, or None; ``_DROPPED``
# inside a trace its root op's sampling left out (its ops are plain calls).
_CURRENT: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("tracklet_span", default=None)
_DROPPED = (0, 0)
_time_ns = time.time_ns
_MASK64 = (1 << 64) - 1


def _seed() -> None:
    """Span ids: a random 64-bit start plus a counter (one C call per span, no syscall); trace ids:
    a random 64-bit half above the root span's id. Re-seeded in a forked child."""
    global _SPAN_BASE, _TRACE_HIGH, _counter
    _SPAN_BASE = int.from_bytes(os.urandom(8), "big")
    _TRACE_HIGH = int.from_bytes(os.urandom(8), "big") << 64
    _counter = itertools.count(1)


_SPAN_BASE = _TRACE_HIGH = 0
_counter = itertools.count(1)
_seed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_seed)


# Root sampling: a trace is kept when its id's mix (the low 64 bits times an odd constant,
# modulo 2**64: consecutive ids spread evenly) is below ``sample_rate * 2**64``. A function of the
# trace id alone, so anyone holding the id and the rate can tell whether it was kept.
_SAMPLE_MIX = 0x9E3779B97F4A7C15


def sampled(trace_id: int, sample_rate: float) -> bool:
    """Whether a trace with this id (an int, or 32 hex digits) is kept at ``sample_rate``."""
    if isinstance(trace_id, str):
        trace_id = int(trace_id, 16)
    return ((trace_id & _MASK64) * _SAMPLE_MIX) & _MASK64 < _threshold(sample_rate)


def _threshold(sample_rate: float) -> int:
    return min(1 << 64, int(sample_rate * (1 << 64)))


# ---------------------------------------------------------------- the tracing budget
# ``Settings.tracing_budget``: the share of a run's time its traced ops may cost. A token bucket
# per run: credit accrues at ``budget`` per nanosecond of wall time, up to ``budget *
# BUDGET_WINDOW_S`` (where it starts: the first seconds are traced whole); the sender's worker
# charges it the thread CPU time it spent building and delivering a drain's op call records
# (``OpCall.charge_batch``) plus ``UNTIMED_NS`` per call (the callers' side, which nothing times).
# While the credit is below zero, ``_over_budget`` is the run's id, and a
# trace that an op without a ``sample_rate`` of its own would start is left out whole (its ops
# are plain calls, as with sampling): one global read per root op, nothing per nested op.
BUDGET_WINDOW_S = 30.0
# A traced op's cost outside the worker's timing: the caller's contextvar, clocks and queue, the
# drain's wake-up and sink flush, the threads' hand-offs. Measured (CPU time of traced steps minus
# plain ones, less the timed part, 1,460 ops a step, load 20): 5.6-6.6 us when the timed part
# left out the records' delivery (~2 us a span, timed since); kept at 6 us, erring on the side of
# charging more.
UNTIMED_NS = 6_000
# What a traced op costs its caller depends on the machine (cache misses, a worker on another core
# trading the GIL): the callers' side is also measured, on the thread CPU time of a budgeted sync
# root op (``_measured_root``): a kept trace's time less the op's left-out calls' mean, per span it
# began. A run is charged the larger of that and ``UNTIMED_NS`` per call. One left-out call in
# ``LEFT_OUT_TIMED_EVERY`` is timed (a thread-clock read costs 0.1-0.7 us).
LEFT_OUT_TIMED_EVERY = 16
_thread_time_ns = time.thread_time_ns


class _Budget:
    __slots__ = ("credit", "at", "left_out", "warned", "caller_ns")

    def __init__(self, credit: float, at: int) -> None:
        self.credit = credit
        self.at = at
        self.left_out = 0  # traces left out while over budget
        self.warned = False
        # The callers' side of a traced op, charged per call: measured (``_measured_root``) when
        # that says more than the estimate.
        self.caller_ns = float(UNTIMED_NS)


_budgets: dict[str, _Budget] = {}
# The id (the very string object) of the run whose budget-sampled traces are left out now, or None;
# and when its credit is back to zero (``time.monotonic_ns``): the first root op after that is
# traced again (while every root is left out, no op call reaches the worker to charge).
_over_budget: str | None = None
_reopen_at = 0
_monotonic_ns = time.monotonic_ns


def charge(run: Any, calls: int, worker_ns: int) -> None:
    """The worker's side of the budget: ``calls`` op calls cost it ``worker_ns`` of its CPU time."""
    global _over_budget, _reopen_at
    fraction = run.settings.tracing_budget
    if fraction >= 1.0:
        if _over_budget is run.id:
            _over_budget = None
        return
    now = _monotonic_ns()
    cap = fraction * BUDGET_WINDOW_S * 1e9
    state = _budgets.get(run.id)
    if state is None:
        if len(_budgets) >= 64:
            _budgets.clear()
        state = _budgets[run.id] = _Budget(cap, now)
    state.credit = min(cap, state.credit + (now - state.at) * fraction) - worker_ns - calls * state.caller_ns
    state.at = now
    if state.credit >= 0:
        if _over_budget is run.id:
            _over_budget = None
        return
    _reopen_at = now + int(-state.credit / fraction) + 1
    _over_budget = run.id
    if not state.warned:
        state.warned = True
        try:
            warnings.warn(f"tracklet: traced ops cost more than {fraction * 100:g}% of run {run.id}'s time "
                          "(Settings.tracing_budget); while they do, traces started by ops without a sample_rate "
                          "of their own are left out whole. Set tracing_budget=1 to keep every trace "
                          "(docs/tracing.md).", TrackletWarning, stacklevel=2)
        except Exception:  # a warnings filter set to "error" must not fail the worker
            pass


def _left_out(run: Any) -> bool:
    """Whether a root op of ``run``, which is over its budget, is left out: True (counted) until
    the credit is back, then False (the op is traced; the worker charges it again)."""
    global _over_budget
    if _monotonic_ns() >= _reopen_at:
        _over_budget = None
        return False
    state = _budgets.get(run.id)
    if state is not None:
        state.left_out += 1
    return True


def budget_left_out(run: Any) -> int:
    """How many traces ``run``'s tracing budget has left out so far."""
    state = _budgets.get(run.id)
    return 0 if state is None else state.left_out


def _timed_left_out(op: OpInfo, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A budgeted sync root op's call left out by the budget: the plain call, its thread CPU time
    folded into ``op.left_out_ns`` (one call in ``LEFT_OUT_TIMED_EVERY``)."""
    op.left_out_calls += 1
    if op.left_out_calls % LEFT_OUT_TIMED_EVERY:
        return function(*args, **kwargs)
    started = _thread_time_ns()
    result = function(*args, **kwargs)
    spent = _thread_time_ns() - started
    op.left_out_ns = spent if not op.left_out_ns else 0.875 * op.left_out_ns + 0.125 * spent
    return result


def _measured_root(op: OpInfo, run: Any, spent_ns: int, spans: int) -> None:
    """A budgeted sync root op's kept trace took its caller ``spent_ns`` of thread CPU time and
    began ``spans`` spans: what that is over the op's left-out calls, per span, is what a traced
    op costs the caller here; the run's per-call charge follows it (never below the estimate)."""
    state = _budgets.get(run.id)
    if state is None or not op.left_out_ns or spans <= 0:
        return
    per_span = (spent_ns - op.left_out_ns) / spans
    measured = 0.75 * state.caller_ns + 0.25 * per_span
    state.caller_ns = max(float(UNTIMED_NS), measured)


class OpInfo:
    """What is resolved once, at decoration: the name, the capture mode, the signature."""

    __slots__ = ("name", "capture", "signature", "kind", "positional", "template", "threshold", "budgeted",
                 "left_out_ns", "left_out_calls")

    def __init__(self, function: Callable[..., Any], name: str | None, capture: str, kind: str,
                 sample_rate: float | None = None) -> None:
        self.name = name or getattr(function, "__qualname__", None) or getattr(function, "__name__", "op")
        self.capture = capture
        self.kind = kind  # "function", "coroutine", "generator", "async_generator"
        # A trace this op starts is kept when its id's mix is below this (None: always kept).
        self.threshold: int | None = None if sample_rate is None or sample_rate >= 1.0 else _threshold(sample_rate)
        # No sample rate of its own: the traces it starts are left out while the run is over its
        # tracing budget (``charge``).
        self.budgeted = sample_rate is None
        # The caller's thread CPU time of this op's calls as the root of a trace the budget left
        # out (a running mean of the timed ones; 0: none timed yet), and how many there were.
        self.left_out_ns = 0.0
        self.left_out_calls = 0
        self.template: bytes | None = None  # the worker's serialized Span fields every call shares
        try:
            self.signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            self.signature = None
        # Names positional arguments bind to, when that is all there is to binding (no *args,
        # no positional-only parameter); else None and the worker uses the signature.
        self.positional: tuple[str, ...] | None = None
        if self.signature is not None:
            kinds = [p.kind for p in self.signature.parameters.values()]
            if inspect.Parameter.VAR_POSITIONAL not in kinds and inspect.Parameter.POSITIONAL_ONLY not in kinds:
                self.positional = tuple(p.name for p in self.signature.parameters.values()
                                        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)


NEW, SEEN_OPEN, WRITTEN = 0, 1, 2
_NO_KWARGS: dict[str, Any] = {}


class OpCall:
    """One call, queued for the run's sender worker when it starts, which calls it to get the
    ``Span`` record (``tracklet.tracing.record.span_record``). Holds references, copies nothing.

    Queued at the start rather than the end, so a span still open when the worker drains is seen
    (its start is written: after a kill it reads as unfinished) at no cost to calls that end
    first. The handshake, with no lock: the caller sets every field, then ``end``, then reads
    ``state``, and queues the call again only if the worker saw it open; the worker sets ``state``
    before it reads ``end``, and writes a finished span once (``WRITTEN``)."""

    __slots__ = ("op", "run", "trace_id", "span_id", "parent_id", "start", "end", "step", "args", "kwargs",
                 "result", "error", "items", "state")

    def __init__(self, op: OpInfo, run: Any, trace_id: int, span_id: int, parent_id: int, start: int,
                 step: int) -> None:
        self.op = op
        self.run = run
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.start = start
        self.end = 0
        self.step = step
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = _NO_KWARGS  # shared, never mutated: replaced at the call's end
        self.result: Any = None
        self.error: BaseException | None = None
        self.items: int = -1  # a generator's count of items yielded; -1 for other ops
        # The worker's view (see the class's docstring): NEW; SEEN_OPEN once the worker found it
        # still running (it wrote the span's start, so the caller queues the call again at its
        # end); WRITTEN once its finished span was written. Only the worker sets it.
        self.state = NEW

    def __call__(self) -> Any:
        """The record to write now: the finished span, its start (still open), or None (written
        before)."""
        from tracklet.tracing.record import claim, open_span_record

        state = claim(self)
        if state == WRITTEN:
            return self._record()
        return open_span_record(self) if state == SEEN_OPEN else None

    def _record(self) -> Any:
        from tracklet.tracing.record import span_record

        return span_record(self)

    def open_attributes(self) -> dict[str, Any]:
        """Attributes of the span's start record (an LLM call's GenAI keys known at its start)."""
        return {}

    @staticmethod
    def batch_records(calls: list[Any]) -> list[Any]:
        """The sender's worker hands a drain's consecutive op calls here at once: each one's
        serialized ``Record`` (or the exception that failed it), in order."""
        from tracklet.tracing.record import batch_records

        return batch_records(calls)

    @staticmethod
    def charge_batch(calls: list[Any], worker_ns: int) -> None:
        """The sender's worker spent ``worker_ns`` of its thread CPU time building and delivering
        the records of ``calls`` (one ``batch_records``): charged to their run's tracing budget."""
        charge(calls[0].run, len(calls), worker_ns)


_warned: set[str] = set()


def _contained(where: str, error: BaseException) -> None:
    """tracklet's own failure around an op call: one warning per place, never raised."""
    if where in _warned:
        return
    _warned.add(where)
    try:
        warnings.warn(f"tracklet: recording an op's span failed in {where} ({error!r}); calls go on untraced",
                      TrackletWarning, stacklevel=3)
    except Exception:  # a warnings filter set to "error" must not reach the caller either
        pass


def _begin(op: OpInfo, run: Any, parent: tuple[int, int] | None, kind: type[OpCall] = OpCall,
           queue: bool = True) -> tuple[Any, Any]:
    """A call's span starts under ``parent`` (the context's current span; not ``_DROPPED``: such
    calls are plain calls before they get here): made current, and queued (``queue=False``: the
    caller queues it once it has set its own fields). No span (``None``) when this call would
    start a trace its root sampling leaves out: then with the token that marks the context so."""
    span_id = ((_SPAN_BASE + next(_counter)) & _MASK64) or 1
    if parent is None:
        trace_id, parent_id = _TRACE_HIGH | span_id, 0
        threshold = op.threshold
        if threshold is not None:
            if ((trace_id & _MASK64) * _SAMPLE_MIX) & _MASK64 >= threshold:
                return None, _CURRENT.set(_DROPPED)
        elif _over_budget is not None and _over_budget is run.id and op.budgeted and _left_out(run):
            return None, _CURRENT.set(_DROPPED)
    else:
        trace_id, parent_id = parent
    call = kind(op, run, trace_id, span_id, parent_id, _time_ns(), run._step)
    if queue:  # ``run._enqueue(call)``, inlined (a frame less on every traced call)
        pending = run._queue
        pending.append(call)
        if len(pending) >= run._chunk_entries:
            run._backlog()
    return call, _CURRENT.set((trace_id, span_id))


def _end(call: OpCall, token: contextvars.Token[Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         result: Any, error: BaseException | None) -> None:
    end = _time_ns()
    _CURRENT.reset(token)
    if call.op.capture != "none":
        call.args = args
        call.kwargs = kwargs
        call.result = result
    call.error = error
    call.end = end  # last: the worker reads the other fields once it sees an end
    if call.state:
        call.run._enqueue(call)


def _wrap_function(function: Callable[..., Any], op: OpInfo,
                   record: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """The generic wrapper (``*args, **kwargs``) of a sync function; its recording calls go on to
    ``record`` (``_recorder``'s), which the wrapper over the function's own parameters calls
    directly (``_same_signature``)."""
    current, dropped = _CURRENT.get, _DROPPED  # closure cells: no global lookups per call
    record = record or _recorder(function, op)

    @functools.wraps(function)
    def traced(*args: Any, **kwargs: Any) -> Any:
        parent = current()
        if parent is dropped:  # inside a trace sampling left out: the plain call
            return function(*args, **kwargs)
        run = lifecycle.trace_target
        if run is None:
            return function(*args, **kwargs)
        return record(parent, run, args, kwargs)

    return traced


def _recorder(function: Callable[..., Any], op: OpInfo) -> Callable[..., Any]:
    """A call of ``function`` while ``run`` records, under ``parent`` (not ``_DROPPED``): its span
    begun, the call made, its span ended; tracklet's own failures contained."""

    def record(parent: tuple[int, int] | None, run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            call, token = _begin(op, run, parent)
        except Exception as error:
            _contained("op start", error)
            return function(*args, **kwargs)
        if call is None:  # the root of a trace sampling (or the budget) leaves out
            try:
                if op.budgeted:
                    return _timed_left_out(op, function, args, kwargs)
                return function(*args, **kwargs)
            finally:
                _CURRENT.reset(token)
        # A kept trace of a root the budget has left out before: its caller's side is measured.
        started = _thread_time_ns() if op.left_out_ns and parent is None and op.budgeted else 0
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            try:
                _end(call, token, args, kwargs, None, error)
            except Exception as own:
                _contained("op end", own)
            raise
        try:
            _end(call, token, args, kwargs, result, None)
            if started:
                _measured_end(op, call, started)
        except Exception as own:
            _contained("op end", own)
        return result

    return record


def _measured_end(op: OpInfo, call: OpCall, started: int) -> None:
    """A measured kept root (``record``) has ended: its caller's thread CPU time since ``started``
    and the spans it began, read off the span id counter (one id skipped), to ``_measured_root``."""
    spans = (_SPAN_BASE + next(_counter) - call.span_id) & _MASK64  # the root and those it began
    _measured_root(op, call.run, _thread_time_ns() - started, spans)


_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<not passed>"})()


def _same_signature(function: Callable[..., Any], op: OpInfo, record: Callable[..., Any]) -> Callable[..., Any] | None:
    """A wrapper with ``function``'s own parameters (positional-or-keyword ones only; else None),
    for the calls that record nothing (no run, or inside a trace sampling left out): one context
    read, then ``function`` called with the arguments as they came, without the ``*args, **kwargs``
    packing and unpacking a generic wrapper pays on every call (measured: most of a left-out op's
    cost inside a training step). Calls that record go straight to ``record`` (no generic wrapper
    between: a frame, a keywords dict and a second context read less) with the arguments passed
    (a parameter left at its default is not passed, as before)."""
    signature = op.signature
    if signature is None or not signature.parameters or len(signature.parameters) > 32:
        return None
    parameters = list(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD or p.name.startswith("_tl_") or not p.name.isidentifier()
           for p in parameters):
        return None
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    optional = [p for p in parameters if p.default is not inspect.Parameter.empty]
    if [p.name for p in parameters[: len(required)]] != required:
        return None
    namespace: dict[str, Any] = {"_tl_function": function, "_tl_record": record, "_tl_get": _CURRENT.get,
                                 "_tl_dropped": _DROPPED, "_tl_lifecycle": lifecycle, "_tl_missing": _MISSING,
                                 "_tl_no_keywords": _NO_KWARGS}
    for number, parameter in enumerate(optional):
        namespace[f"_tl_default{number}"] = parameter.default
    signature_text = ", ".join(required + [f"{p.name}=_tl_missing" for p in optional])
    plain = ", ".join(required + [f"_tl_default{number} if {p.name} is _tl_missing else {p.name}"
                                  for number, p in enumerate(optional)])
    defaults = "".join(f", _tl_default{number}" for number in range(len(optional)))
    arguments = "(" + "".join(name + ", " for name in required) + ")"
    source = (f"def _tl_make(_tl_function, _tl_record, _tl_get, _tl_dropped, _tl_lifecycle, _tl_missing, "
              f"_tl_no_keywords{defaults}):\n"
              f"  def op_call({signature_text}):\n"
              f"    _tl_parent = _tl_get()\n"
              f"    if _tl_parent is _tl_dropped:\n"
              f"      return _tl_function({plain})\n"
              f"    _tl_run = _tl_lifecycle.trace_target\n"
              f"    if _tl_run is None:\n"
              f"      return _tl_function({plain})\n"
              + ("    _tl_keywords = {}\n"
                 + "".join(f"    if {p.name} is not _tl_missing:\n      _tl_keywords[{p.name!r}] = {p.name}\n"
                           for p in optional)
                 + f"    return _tl_record(_tl_parent, _tl_run, {arguments}, _tl_keywords)\n"
                 if optional else f"    return _tl_record(_tl_parent, _tl_run, {arguments}, _tl_no_keywords)\n")
              + "  return op_call\n")
    try:
        exec(compile(source, f"<tracklet.op {op.name}>", "exec"), namespace)  # noqa: S102 - our own text
        wrapper = namespace["_tl_make"](*(namespace[key] for key in (
            "_tl_function", "_tl_record", "_tl_get", "_tl_dropped", "_tl_lifecycle", "_tl_missing", "_tl_no_keywords")),
            *(namespace[f"_tl_default{number}"] for number in range(len(optional))))
    except Exception:  # noqa: BLE001 - an odd signature: the generic wrapper serves
        return None
    return functools.wraps(function)(wrapper)


def _wrap_coroutine(function: Callable[..., Any], op: OpInfo) -> Callable[..., Any]:
    current, dropped = _CURRENT.get, _DROPPED  # closure cells: no global lookups per call

    @functools.wraps(function)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        parent = current()
        if parent is dropped:  # inside a trace sampling left out: the plain call
            return await function(*args, **kwargs)
        run = lifecycle.trace_target
        if run is None:
            return await function(*args, **kwargs)
        try:
            call, token = _begin(op, run, parent)
        except Exception as error:
            _contained("op start", error)
            return await function(*args, **kwargs)
        if call is None:  # the root of a trace sampling leaves out
            try:
                return await function(*args, **kwargs)
            finally:
                _CURRENT.reset(token)
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            try:
                _end(call, token, args, kwargs, None, error)
            except Exception as own:
                _contained("op end", own)
            raise
        try:
            _end(call, token, args, kwargs, result, None)
        except Exception as own:
            _contained("op end", own)
        return result

    return traced


class _GeneratorSpan:
    """A generator op's span: made at its first resume, current only while the generator runs."""

    __slots__ = ("call", "items", "count", "args", "kwargs", "done")

    def __init__(self, op: OpInfo, run: Any, parent: tuple[int, int] | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        call, token = _begin(op, run, parent)
        _CURRENT.reset(token)
        self.call = call  # None: the root of a trace sampling leaves out (its code runs unrecorded)
        self.items: list[Any] = []
        self.count = 0
        self.args = args
        self.kwargs = kwargs
        self.done = False

    def enter(self) -> contextvars.Token[Any]:
        call = self.call
        return _CURRENT.set(_DROPPED if call is None else (call.trace_id, call.span_id))

    def took(self, item: Any) -> None:
        if self.call is None:
            return
        self.count += 1
        if len(self.items) < GENERATOR_ITEMS_KEPT:
            self.items.append(item)

    def finish(self, error: BaseException | None) -> None:
        if self.done or self.call is None:
            return
        self.done = True
        try:
            call = self.call
            end = _time_ns()
            call.items = self.count
            if call.op.capture != "none":
                call.args, call.kwargs, call.result = self.args, self.kwargs, self.items
            call.error = error
            call.end = end
            if call.state:
                call.run._enqueue(call)
        except Exception as own:
            _contained("op end", own)


def _start_generator_span(op: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _GeneratorSpan | None:
    run = lifecycle.trace_target
    if run is None:
        return None
    parent = _CURRENT.get()
    if parent is _DROPPED:  # inside a trace sampling left out
        return None
    try:
        return _GeneratorSpan(op, run, parent, args, kwargs)
    except Exception as error:
        _contained("op start", error)
        return None


def _wrap_generator(function: Callable[..., Any], op: OpInfo) -> Callable[..., Any]:
    @functools.wraps(function)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if lifecycle.trace_target is None:
            return (yield from function(*args, **kwargs))
        inner = function(*args, **kwargs)
        span = _start_generator_span(op, args, kwargs)
        if span is None:
            return (yield from inner)
        # The delegation ``yield from`` does, by hand, so the span is current only inside ``inner``.
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = span.enter()
            try:
                if thrown is not None:
                    error, thrown = thrown, None
                    item = inner.throw(error)
                else:
                    item = inner.send(sent)
            except StopIteration as stop:
                span.finish(None)
                return stop.value
            except BaseException as error:
                span.finish(error)
                raise
            finally:
                _CURRENT.reset(token)
            span.took(item)
            try:
                sent = yield item
            except GeneratorExit:
                try:
                    inner.close()
                finally:
                    span.finish(None)
                raise
            except BaseException as error:
                thrown, sent = error, None

    return traced


def _wrap_async_generator(function: Callable[..., Any], op: OpInfo) -> Callable[..., Any]:
    @functools.wraps(function)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        inner = function(*args, **kwargs)
        span = _start_generator_span(op, args, kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = span.enter() if span is not None else None
            try:
                if thrown is not None:
                    error, thrown = thrown, None
                    item = await inner.athrow(error)
                else:
                    item = await inner.asend(sent)
            except StopAsyncIteration:
                if span is not None:
                    span.finish(None)
                return
            except BaseException as error:
                if span is not None:
                    span.finish(error)
                raise
            finally:
                if token is not None:
                    _CURRENT.reset(token)
            if span is not None:
                span.took(item)
            try:
                sent = yield item
            except GeneratorExit:
                try:
                    await inner.aclose()
                finally:
                    if span is not None:
                        span.finish(None)
                raise
            except BaseException as error:
                thrown, sent = error, None

    return traced


OP_MARK = "__tracklet_op__"  # set on every op's wrapper: what ``is_op`` reads


def is_op(function: Any) -> bool:
    """Whether ``function`` (or the function of a bound method) records spans itself: an
    ``@tracklet.op`` (``@weave.op``), so a caller that would trace it (an evaluation) needn't."""
    return bool(getattr(getattr(function, "__func__", function), OP_MARK, False))


def _decorate(function: Any, name: str | None, capture: str, sample_rate: float | None) -> Any:
    if isinstance(function, (staticmethod, classmethod)):
        return type(function)(_decorate(function.__func__, name, capture, sample_rate))
    if not callable(function):
        raise TypeError(f"tracklet.op decorates a function or method; got {type(function).__name__}")
    if inspect.isasyncgenfunction(function):
        op = OpInfo(function, name, capture, "async_generator", sample_rate)
        wrapped = _wrap_async_generator(function, op)
    elif inspect.isgeneratorfunction(function):
        op = OpInfo(function, name, capture, "generator", sample_rate)
        wrapped = _wrap_generator(function, op)
    elif inspect.iscoroutinefunction(function):
        op = OpInfo(function, name, capture, "coroutine", sample_rate)
        wrapped = _wrap_coroutine(function, op)
    else:
        op = OpInfo(function, name, capture, "function", sample_rate)
        record = _recorder(function, op)
        wrapped = _same_signature(function, op, record) or _wrap_function(function, op, record)
    setattr(wrapped, OP_MARK, True)
    return wrapped


@overload
def op(function: F, /) -> F: ...


@overload
def op(*, name: str | None = None, capture: str = "full", sample_rate: float | None = None) -> Callable[[F], F]: ...


def op(function: Any = None, /, *, name: str | None = None, capture: str = "full",
       sample_rate: float | None = None) -> Any:
    """Record a span for each call of the decorated function or method while a run is current.

    ``@tracklet.op`` or ``@tracklet.op(name="retrieve", capture="metadata")``. ``name``: the span's
    name (default: the function's qualified name). ``capture``: ``"full"`` records the arguments
    (by parameter name) and the return value, secrets redacted (docs/tracing.md); ``"metadata"``
    only their types; ``"none"`` neither. ``sample_rate`` (0 to 1): the share of the traces this
    op starts (when called outside any op) that are recorded, whole: a trace left out records
    none of its ops, which cost about a disabled op's call. The choice is a function of the trace
    id (:func:`sampled`). Without one (``None``), the op's traces are kept while the run is within
    its ``Settings.tracing_budget`` (default 1% of its time) and left out whole while it is over. Works on sync and async functions, generators and async generators,
    methods, static and class methods.
    """
    if capture not in CAPTURE_MODES:
        raise ValueError(f"tracklet.op: capture must be one of {', '.join(CAPTURE_MODES)}; got {capture!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"tracklet.op: name must be a string; got {type(name).__name__}")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
                                    or not 0.0 <= sample_rate <= 1.0):
        raise ValueError(f"tracklet.op: sample_rate must be a number from 0 to 1; got {sample_rate!r}")
    rate = None if sample_rate is None else float(sample_rate)
    if function is None:
        return lambda f: _decorate(f, name, capture, rate)
    return _decorate(function, name, capture, rate)


def current_span_ids() -> tuple[str, str] | None:
    """The (trace id, span id) in hex of the op running in this context, or None."""
    current = _CURRENT.get()
    if current is None or current is _DROPPED:
        return None
    return f"{current[0]:032x}", f"{current[1]:016x}"
