"""Threads that leave the process's signals to the user's threads.

Linux hands a signal sent to a process (Ctrl-C's SIGINT, a scheduler's SIGTERM or SIGUSR1 before
preemption) to any one of its threads that does not block it, and Python runs the handler on the
main thread only. When one of tracklet's threads takes the signal, a main thread blocked in a
system call (``time.sleep``, a lock, a socket read, a DataLoader's queue) is not woken: Ctrl-C
did nothing until that call returned. Measured on Linux 6.18: with three idle threads beside a
sleeping main thread, 1 SIGINT in 300 went unnoticed (a bare script, no tracklet).

So every thread tracklet starts in a run's process is started with the asynchronous signals
blocked (:func:`start`, :func:`start_new`, :class:`blocked`). A thread inherits its creator's
mask, so the threads those start (pools, libraries' own) block them too. Faults (SIGSEGV, SIGBUS,
SIGFPE, ...) and SIGPIPE stay unblocked: the kernel sends them to the thread at fault; so do the
profiling timers (SIGPROF, SIGVTALRM). A process
started from such a thread inherits the mask too, and a child with SIGTERM blocked can't be
stopped the usual way (``subprocess.Popen(restore_signals=True)`` resets handlers, never the mask;
measured: the child's ``SigBlk`` is the thread's). So:

- tracklet's own children (git) start with an empty mask (``os.posix_spawn``'s ``setsigmask``,
  :data:`NO_SIGNALS`); no other tracklet code on these threads starts a process, and the pools'
  threads (``core/pools.py``) run tracklet's jobs only (hashing, packs, uploads), which start none;
- a library's long-lived thread that starts processes is started :class:`unblocked`: fsspec's IO
  loop (``fsspec.asyn.get_loop``, started by the first async filesystem: s3fs, gcsfs), on which
  aiobotocore runs a profile's ``credential_process`` and asyncio starts any child. Where a
  filesystem is made on one of tracklet's threads (``artifacts/references.py``,
  ``artifacts/blobs.py``), it is made with the mask of the user's thread that started tracklet's
  (usually nothing blocked), so the loop thread, and google-auth's ``gcloud`` run from gcsfs's
  constructor, get the mask they would have in a program without tracklet (that thread may then
  take a signal, as it would there). Once per client, never on ``log()``'s path.

Where ``pthread_sigmask`` is missing (Windows), these start threads as usual.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the builtin, loaded at start; ``signal`` builds enums (~2 ms)
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")
ThreadT = TypeVar("ThreadT", bound=threading.Thread)

# Left unblocked: faults and SIGPIPE (sent to the thread at fault), SIGKILL/SIGSTOP (can't be), and
# profiling timers (SIGPROF, SIGVTALRM: a sampling profiler's handler samples the thread it lands on,
# so tracklet's CPU is shown as tracklet's, not as the training code's; nobody waits on them).
_UNBLOCKED = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT", "SIGPIPE",
              "SIGKILL", "SIGSTOP", "SIGPROF", "SIGVTALRM"}
_sigmask: Callable[[int, Iterable[int]], set[int]] | None = getattr(_signal, "pthread_sigmask", None)
ASYNC_SIGNALS: frozenset[int] = frozenset(
    set(_signal.valid_signals()) - {getattr(_signal, name) for name in _UNBLOCKED if hasattr(_signal, name)}
) if _sigmask is not None else frozenset()
NO_SIGNALS: tuple[int, ...] = ()  # ``setsigmask`` for a process tracklet starts: nothing blocked
# The mask of the last user thread (one not blocking them all) that started one of tracklet's: what
# ``unblocked`` gives back to one of tracklet's threads (a user who blocks SIGTERM keeps it blocked).
_starter_mask: frozenset[int] = frozenset()


class blocked:  # noqa: N801 - a context manager, named for how it reads: ``with blocked():``
    """Block :data:`ASYNC_SIGNALS` on this thread for the ``with`` block, then restore the mask it
    had (a signal that arrives meanwhile waits, and is delivered when it is restored)."""

    __slots__ = ("_previous",)

    def __enter__(self) -> None:
        global _starter_mask
        mask = _sigmask
        self._previous = mask(_signal.SIG_BLOCK, ASYNC_SIGNALS) if mask is not None else None
        if self._previous is not None and not ASYNC_SIGNALS <= self._previous:
            _starter_mask = frozenset(self._previous)  # a user's thread

    def __exit__(self, *exc: object) -> None:
        mask = _sigmask
        if mask is not None and self._previous is not None:
            mask(_signal.SIG_SETMASK, self._previous)


class unblocked:  # noqa: N801 - a context manager, as ``blocked``
    """On one of tracklet's threads (one blocking every one of :data:`ASYNC_SIGNALS`), take the
    mask of the user's thread that started tracklet's (usually nothing blocked) for the ``with``
    block, then restore the blocked one: for starting a library's thread or process that must not
    inherit the blocked mask (the module's docstring). On any other thread: nothing changes."""

    __slots__ = ("_previous",)

    def __enter__(self) -> None:
        mask = _sigmask
        self._previous = None
        if mask is None:
            return
        current = mask(_signal.SIG_BLOCK, ())
        if ASYNC_SIGNALS <= current:
            self._previous = current
            mask(_signal.SIG_SETMASK, (current - ASYNC_SIGNALS) | _starter_mask)

    def __exit__(self, *exc: object) -> None:
        mask = _sigmask
        if mask is not None and self._previous is not None:
            mask(_signal.SIG_SETMASK, self._previous)


def start(thread: ThreadT) -> ThreadT:
    """``thread.start()``, the new thread blocking :data:`ASYNC_SIGNALS` from its first instruction."""
    with blocked():
        thread.start()
    return thread


def later(seconds: float, function: Callable[[], Any]) -> threading.Timer:
    """A started daemon ``threading.Timer`` calling ``function`` after ``seconds`` (``cancel()`` it
    when no longer wanted), its thread blocking :data:`ASYNC_SIGNALS` as every tracklet thread does."""
    timer = threading.Timer(seconds, function)
    timer.daemon = True
    return start(timer)


def start_new(function: Callable[..., Any], args: tuple = ()) -> int:
    """``_thread.start_new_thread(function, args)`` (no ``threading.Thread`` bookkeeping, no wait
    for the thread to run), the new thread blocking :data:`ASYNC_SIGNALS`."""
    import _thread

    with blocked():
        return _thread.start_new_thread(function, args)


def blocks_async_signals() -> bool:
    """Whether this thread blocks every one of :data:`ASYNC_SIGNALS` (what :func:`start` gives)."""
    mask = _sigmask
    return mask is None or ASYNC_SIGNALS <= set(mask(_signal.SIG_BLOCK, ()))


# Waits on the main thread, in slices. CPython runs a signal's Python handler on the main thread
# between two bytecodes; a blocking call (a lock's acquire with or without a timeout, which
# ``Event.wait`` and ``Thread.join`` are) is woken early only when the signal interrupts its system
# call. One that lands after the main thread's last check for signals and before the call's system
# call begins, or that another thread takes (one of the user's not blocking it, or a main thread
# blocking it), sets the handler's flag and interrupts nothing: the Ctrl-C was seen only when the
# wait ended (``finish()``: up to ``finish_timeout`` later; ``artifact.wait()``: once the version
# was stored). Waited for in slices of at most SLICE seconds, the main thread runs the pending
# handler (raising KeyboardInterrupt) at the end of the slice it landed in: the caller's code runs
# between slices, where the interpreter checks for signals. Other threads run no handlers: they
# wait in one call, as before. A wait that is already over costs what it did (no slicing).
SLICE = 0.1


def _on_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def _in_slices(attempt: Callable[[float], bool], timeout: float | None) -> bool:
    """``attempt(seconds)`` (a wait of at most that long: whether what it waits for came) until it
    says so, each at most :data:`SLICE` seconds, for at most ``timeout`` (None: until it says so);
    its last answer."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if deadline is None else deadline - time.monotonic()
        if deadline is not None and left <= SLICE:
            return attempt(max(0.0, left))
        if attempt(SLICE):
            return True


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, in slices of at most :data:`SLICE` seconds on the main thread, so a
    Ctrl-C whose signal did not interrupt the wait is raised within one slice."""
    if not _on_main_thread() or event.is_set():
        return event.wait(timeout)
    return _in_slices(event.wait, timeout)


def join(thread: threading.Thread, timeout: float | None = None) -> None:
    """``thread.join(timeout)``, in slices on the main thread, as :func:`wait`."""
    if not _on_main_thread():
        thread.join(timeout)
        return
    thread.join(0)  # raises as ``join`` does for a thread never started, or the current one

    def joined(seconds: float) -> bool:
        thread.join(seconds)
        return not thread.is_alive()

    if thread.is_alive():
        _in_slices(joined, timeout)


def result(future: Future[T]) -> T:
    """``future.result()``, waited for in slices on the main thread, as :func:`wait`."""
    if _on_main_thread() and not future.done():
        from concurrent.futures import wait as wait_for  # concurrent.futures._base: no exit hook

        _in_slices(lambda seconds: bool(wait_for((future,), seconds).done), None)
    return future.result()


def acquire(lock: threading.Semaphore | threading.Lock) -> bool:
    """``lock.acquire()`` (True), in slices on the main thread, as :func:`wait`."""
    if not _on_main_thread():
        return lock.acquire()
    return _in_slices(lambda seconds: lock.acquire(timeout=seconds), None)


_NEVER = threading.Event()  # never set: what :func:`sleep` waits on


def sleep(seconds: float) -> None:
    """``time.sleep(seconds)``, in slices on the main thread, as :func:`wait` (a retry's backoff,
    which a server's ``Retry-After`` can make minutes long)."""
    if not _on_main_thread() or seconds <= 0:
        time.sleep(max(0.0, seconds))
        return
    _in_slices(_NEVER.wait, seconds)
