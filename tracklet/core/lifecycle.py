"""Process-wide hooks that keep runs honest: finish at interpreter exit, remember an exception that
escaped (so the run is marked failed with it), and disarm runs in a child created by fork."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from tracklet.core.run import Run

_active: list["Run"] = []
_lock = threading.Lock()
_installed = False
_escaped: BaseException | None = None
_exit_status: int | None = None
# Background work that interpreter exit waits for, at most the given seconds each, after the live
# runs are finished (see wait_at_exit).
_exit_waits: list[tuple[threading.Event, float]] = []
_stopped_at_exit = False  # a Ctrl-C ended interpreter exit's wait (stop_waiting_at_exit)
_sigint_watched = False  # interrupts_stop_waiting has run
_previous_excepthook = sys.excepthook
_original_exit = sys.exit


def register(run: "Run") -> None:
    _install()
    with _lock:
        _active.append(run)


def unregister(run: "Run") -> None:
    global trace_target
    with _lock:
        if run in _active:
            _active.remove(run)
    if trace_target is run:
        trace_target = None


def wait_at_exit(done: threading.Event, timeout: float) -> None:
    """Have interpreter exit wait up to ``timeout`` seconds for ``done``, after finishing the live
    runs: daemon-thread work that outlives its run for the next one (the environment's package
    inventory cache) is not cut short by a script that ends right after ``finish()``."""
    _install()
    with _lock:
        _exit_waits.append((done, timeout))


def say_interrupted() -> None:
    print("tracklet: interrupted: no longer waiting for what the run is still storing; its rows and exit are "
          "written", file=sys.stderr)


def stop_waiting_at_exit() -> None:
    """A Ctrl-C ended interpreter exit's wait for the runs' artifacts (before ``atexit`` finishes
    the runs): finishing them then waits only for their own records (the rows, the exit), not for
    what they are still storing (capture, media, artifacts, uploads)."""
    global _stopped_at_exit
    if not _stopped_at_exit:
        _stopped_at_exit = True
        say_interrupted()


def waiting_stopped_at_exit() -> bool:
    """Whether a Ctrl-C ended interpreter exit's wait (:func:`stop_waiting_at_exit`)."""
    return _stopped_at_exit


def interrupts_stop_waiting() -> None:
    """From now on (the process is exiting), a Ctrl-C also stops finishing the runs from waiting
    for what they are still storing, wherever its KeyboardInterrupt lands: one raised between two
    waits, or at the first line of an exit hook, escaped without telling them (and the next wait
    then went on for the whole ``finish_timeout``). A SIGINT handler of the user's own is left as
    it is. Main thread only (where handlers are set)."""
    global _sigint_watched
    if _sigint_watched or threading.current_thread() is not threading.main_thread():
        return
    _sigint_watched = True
    import _signal  # type: ignore[import-not-found]  # the builtin; ``signal`` would build its enums

    if _signal.getsignal(_signal.SIGINT) is not _signal.default_int_handler:
        return

    def on_sigint(signum: int, frame: Any) -> None:
        stop_waiting_at_exit()
        _signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as before

    _signal.signal(_signal.SIGINT, on_sigint)


def active_runs() -> list["Run"]:
    with _lock:
        return list(_active)


def _install() -> None:
    global _installed, _previous_excepthook
    if _installed:
        return
    _installed = True
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    sys.exit = _exit
    atexit.register(_finish_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _excepthook(kind: Any, error: BaseException, tb: Any) -> None:
    global _escaped
    _escaped = error
    # The script ended: exit is next (in a REPL, ``python -i`` included, the session goes on).
    if threading.current_thread() is threading.main_thread() and not (hasattr(sys, "ps1") or sys.flags.interactive):
        interrupts_stop_waiting()
    if error.__traceback__ is None:
        error.__traceback__ = tb
    _previous_excepthook(kind, error, tb)


def _exit(status: Any = None) -> NoReturn:
    """``sys.exit`` that remembers the status, so a run ended by ``sys.exit(2)`` (argparse errors
    included) is recorded as failed with exit code 2. Atexit handlers can't see it otherwise."""
    global _exit_status
    if status is None or isinstance(status, int):
        _exit_status = status or 0
    else:
        _exit_status = 1  # sys.exit("message") exits with 1 after printing the message
    _original_exit(status)


def exit_reason() -> tuple[BaseException | None, int | None]:
    """Why the process is ending, as far as tracklet saw: the exception that escaped (or None)
    and the status given to ``sys.exit`` (or None)."""
    return _escaped, _exit_status


def _finish_at_exit() -> None:
    interrupts_stop_waiting()
    # Only a trial process has imported sweeptrial; importing it here would run dataclass code.
    sweeptrial = sys.modules.get("tracklet.core.sweeptrial")
    tag = getattr(sweeptrial, "exit_tag", None)  # a sweep trial stopped by its agent (pruned)
    owner = os.getpid()
    for run in active_runs():
        if run._pid != owner:
            continue
        if tag is not None and tag not in run.tags:
            run.tags = [*run.tags, tag]
        error = _escaped
        try:
            if error is not None:
                run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)
            else:
                run.finish(_exit_status or 0)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C (a SIGTERM's exit) while it waited: the run is ended
            pass
    with _lock:
        waits = list(_exit_waits)
        _exit_waits.clear()
    try:
        for done, timeout in waits:
            done.wait(timeout)
    except KeyboardInterrupt:  # Ctrl-C: stop waiting (what is left was optional: caches for the next run)
        pass
    if isinstance(_escaped, KeyboardInterrupt):
        _keep_exit_by_sigint()


def _keep_exit_by_sigint() -> None:
    """Let an interrupted script still end by SIGINT (exit status 130 / -2), as Python promises.

    CPython remembers an unhandled KeyboardInterrupt in a flag that every ``exec`` of source text
    clears (``dataclasses``, ``namedtuple`` and first imports of such modules do it), so whatever
    finishing a run ran may have turned the exit status into 1. Executing source text that raises
    KeyboardInterrupt sets the flag again; the exception itself is dropped here.
    """
    try:
        exec("raise KeyboardInterrupt", {})
    except KeyboardInterrupt:
        pass


def _after_fork_in_child() -> None:
    global _active, _lock, trace_target
    _lock = threading.Lock()  # the parent may have held it while forking
    trace_target = None  # the parent's run records nothing from here: ops become plain calls
    for run in _active:
        run._after_fork_in_child()
    _active = []
    _exit_waits.clear()  # the parent's threads are not in the child


_current: "Run | None" = None
# The run ``@tracklet.op`` records spans into (the current run, when it records and its settings
# leave tracing on), else None: the one read a disabled op makes (``tracklet/tracing/ops.py``).
trace_target: "Run | None" = None


def set_current(run: "Run | None") -> None:
    global _current, trace_target
    _current = run
    trace_target = run if run is not None and getattr(run, "_sender", None) is not None and run.settings.tracing else None


def current() -> "Run | None":
    """The run started last by ``tracklet.init()`` in this process, until it finishes."""
    run = _current
    return run if run is not None and not run.finished else None
