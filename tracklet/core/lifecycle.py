"""Process-wide hooks that keep runs honest: finish at interpreter exit, remember an exception that
escaped (so the run is marked failed with it), and disarm runs in a child created by fork."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the builtin (loaded at start); ``signal`` would build its enums
import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn
from tracklet.core import forksafe, threads
from tracklet.core.modules import loaded

if TYPE_CHECKING:
    from collections.abc import Callable

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
_main_watched = False  # _watch_main_module found the main module's code (or can't: Python < 3.12)
_monitoring: Any = None  # sys.monitoring, once _watch_main_module uses it


def register(run: "Run") -> None:
    _install()
    forksafe.arm_fork_wait()  # again if logging & co. were imported since (see there)
    if not _main_watched:
        _watch_main_module()
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
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _stop_waiting_on_sigint)


def _stop_waiting_on_sigint(signum: int, frame: Any) -> None:
    """SIGINT's handler once the process is exiting (:func:`interrupts_stop_waiting`)."""
    stop_waiting_at_exit()
    _signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as before


# Ctrl-C held while runs are being ended on the main thread (hold_ctrl_c): it ends their waits
# (between open_wait and close_wait), never the bookkeeping between them (the exit record, the next
# run at interpreter exit); one that arrives there is held for the next wait to act on.
_holder: int | None = None  # the thread (the main one) holding Ctrl-C, else None
_holding_at_exit = False  # the handler held was _stop_waiting_on_sigint
_held = False  # a Ctrl-C arrived outside a wait and no wait has taken it yet
_in_wait = False  # the holder is in a wait a Ctrl-C may end


def hold_ctrl_c() -> Callable[[], bool] | None:
    """Until the returned function is called, a Ctrl-C raises KeyboardInterrupt only inside a wait
    (:func:`open_wait` to :func:`close_wait`); one arriving between waits is held and handed to the
    next :func:`open_wait`. Before, one landing between two waits of ``finish()`` (or between two runs
    finished at exit) escaped it: the run had no exit record and read back as crashed, or the runs
    after it were not finished. The returned function puts the handler back and says whether a
    Ctrl-C is still held (no wait took it: the caller raises it once its work is done).

    None, and nothing changed: off the main thread (only it runs signal handlers: nothing interrupts
    another thread), under a SIGINT handler of the user's own, or while already holding."""
    global _holder, _holding_at_exit, _held, _in_wait
    me = threading.get_ident()
    if _holder is not None or me != threading.main_thread().ident:
        return None
    previous = _signal.getsignal(_signal.SIGINT)
    if previous is not _signal.default_int_handler and previous is not _stop_waiting_on_sigint:
        return None
    _holding_at_exit, _held, _in_wait = previous is _stop_waiting_on_sigint, False, False
    _holder = me
    _signal.signal(_signal.SIGINT, _hold_sigint)

    def release() -> bool:
        global _holder, _held
        held, _held = _held, False
        _holder = None  # from here a Ctrl-C is raised (_hold_sigint), not held and lost
        _signal.signal(_signal.SIGINT, previous)
        return held

    return release


def _hold_sigint(signum: int, frame: Any) -> None:
    global _held
    if _holding_at_exit:
        stop_waiting_at_exit()
    if _holder is None or _in_wait:
        _signal.default_int_handler(signum, frame)
    _held = True


def open_wait() -> bool:
    """The holder of Ctrl-C (:func:`hold_ctrl_c`) starts a wait: a Ctrl-C may end it from now to
    :func:`close_wait`. Whether a Ctrl-C was held since the last wait (taken now: the caller acts on
    it). Call it inside the ``try`` whose ``finally`` calls :func:`close_wait`. On any other
    thread, or when not holding: nothing, False."""
    global _in_wait, _held
    if _holder is None or threading.get_ident() != _holder:
        return False
    _in_wait = True
    held, _held = _held, False
    return held


def close_wait() -> None:
    """The wait :func:`open_wait` started is over: a Ctrl-C is held again."""
    global _in_wait
    if _holder is not None and threading.get_ident() == _holder:
        _in_wait = False


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
    _hook_quitters()
    atexit.register(_finish_at_exit)
    # While runs are live, a fork waits for other threads' imports under way (core/forksafe.py): the
    # child's run joins as a secondary writer on first use (core/childrun.py), which imports.
    forksafe.wait_for_imports_while(lambda: bool(_active))
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
    _note_exit_status(status)
    _original_exit(status)


def _note_exit_status(status: Any) -> None:
    """Remember the status a ``SystemExit(status)`` ends the process with, as the interpreter
    computes it: None is 0, an int itself, anything else 1 (it prints it). Only on the main thread:
    ``sys.exit`` on another thread ends that thread, never the process (its status stays 0)."""
    global _exit_status
    if threading.current_thread() is not threading.main_thread():
        return
    if status is None or isinstance(status, int):
        _exit_status = status or 0
    else:
        _exit_status = 1  # sys.exit("message") exits with 1 after printing the message


def _hook_quitters() -> None:
    """``exit(n)`` and ``quit(n)`` (the ``site`` module's builtins) raise ``SystemExit`` themselves,
    without ``sys.exit``: wrapped the same way (a subclass of site's ``Quitter``: same repr, same
    ``isinstance``). Nothing without ``site`` (``python -S``) or where something else replaced them."""
    sitebuiltins = sys.modules.get("_sitebuiltins")  # any state: site's own
    quitter = getattr(sitebuiltins, "Quitter", None)
    if quitter is None:
        return
    import builtins

    class RecordingQuitter(quitter):  # type: ignore[misc, valid-type]
        def __call__(self, code: Any = None) -> NoReturn:
            _note_exit_status(code)
            super().__call__(code)
            raise SystemExit(code)  # not reached: Quitter raises it

    for name in ("exit", "quit"):
        current: Any = getattr(builtins, name, None)
        if type(current) is quitter:
            setattr(builtins, name, RecordingQuitter(current.name, current.eof))


def _watch_main_module() -> None:
    """Python 3.12+: see a ``raise SystemExit(n)`` in the main module's own top-level code (the
    usual ``raise SystemExit(main())``), which no hook sees: it is not ``sys.exit``, the excepthook
    is not called for it, and the interpreter clears the status before ``atexit`` handlers run.

    ``sys.monitoring``'s CALL event, on that one code object only (a local event): the first call
    made at each of its call sites runs :func:`_on_main_call`, which turns that site's event off
    (``DISABLE``) unless it calls ``SystemExit``; so a training loop at the top level pays one
    callback per call site, once, and nothing after. Its PY_RETURN (the module ended normally)
    forgets any status noted (one caught, ``try: sys.exit(2) except SystemExit: ...``). A
    ``SystemExit`` raised in a function (``def main(): raise SystemExit(2)``) is not seen: only a
    global RAISE event would see it, and that runs a callback for every exception any thread
    raises (``tracklet run`` corrects the run's exit code from the process's, cli/launch.py).
    Main thread only, from the main module's frame (not at ``tracklet run``'s startup: its
    launcher corrects)."""
    global _main_watched, _monitoring
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        _main_watched = True  # Python < 3.12: nothing to watch with
        return
    if threading.current_thread() is not threading.main_thread():
        return
    main = sys.modules.get("__main__")  # any state: the running program
    frame: Any = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and main is not None
                                     and frame.f_globals is getattr(main, "__dict__", None)):
        frame = frame.f_back
    if frame is None:
        return  # started outside the main module's code (sitecustomize, a REPL's nested call)
    _main_watched = True
    _monitoring = monitoring
    for tool in (4, 3):  # the ids CPython leaves unassigned (0-2 and 5: debugger, coverage, profiler, optimizer)
        try:
            monitoring.use_tool_id(tool, "tracklet")
        except ValueError:  # taken
            continue
        events = monitoring.events
        try:
            monitoring.register_callback(tool, events.CALL, _on_main_call)
            monitoring.register_callback(tool, events.PY_RETURN, _on_main_return)
            monitoring.set_local_events(tool, frame.f_code, events.CALL | events.PY_RETURN)
        except Exception:  # never in the way of the script
            monitoring.free_tool_id(tool)
        return


def _on_main_call(code: Any, offset: int, function: Any, arg0: Any) -> Any:
    """CALL at a call site of the main module's top-level code (see :func:`_watch_main_module`)."""
    if isinstance(function, type) and issubclass(function, SystemExit):
        _note_exit_status(None if arg0 is _monitoring.MISSING else arg0)
        return None
    return _monitoring.DISABLE


def _on_main_return(code: Any, offset: int, value: Any) -> None:
    """The main module's code ended normally: the process exits 0, whatever SystemExit was caught."""
    global _exit_status
    _exit_status = None


def exit_reason() -> tuple[BaseException | None, int | None]:
    """Why the process is ending, as far as tracklet saw: the exception that escaped (or None)
    and the status given to ``sys.exit`` (or None)."""
    return _escaped, _exit_status


def _finish_at_exit() -> None:
    interrupts_stop_waiting()
    release = hold_ctrl_c()  # a Ctrl-C between two runs stops their waits, not the finishing of the rest
    try:
        _finish_live_runs()
        with _lock:
            waits = list(_exit_waits)
            _exit_waits.clear()
        try:
            for done, timeout in waits:
                try:
                    if open_wait():
                        raise KeyboardInterrupt
                    threads.wait(done, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)
                finally:
                    close_wait()
        except KeyboardInterrupt:  # Ctrl-C: stop waiting (what is left was optional: caches for the next run)
            pass
    finally:
        if release is not None:
            release()
    if isinstance(_escaped, KeyboardInterrupt):
        _keep_exit_by_sigint()


def _finish_live_runs() -> None:
    # Only a trial process has imported sweeptrial; importing it here would run dataclass code.
    sweeptrial = loaded("tracklet.core.sweeptrial")
    tag = getattr(sweeptrial, "exit_tag", None)  # a sweep trial stopped by its agent (pruned)
    owner = os.getpid()
    # Under `tracklet run`: the launcher corrects an exit code not seen here (core/launchexit.py).
    launched = os.environ.get("TRACKLET_LAUNCH_REPORT")
    for run in active_runs():
        if run._pid != owner:
            continue
        try:
            # the trial's run, not a create_new run beside it
            if tag is not None and run._sweep_trial and tag not in run.tags:
                run.tags = [*run.tags, tag]
            error = _escaped
            if error is not None:
                run.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)
            else:
                run.finish(_exit_status or 0)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C (a SIGTERM's exit) while it waited: the run is ended
            stop_waiting_at_exit()  # and the runs after it don't wait either
        if launched:
            from tracklet.core.launchexit import report_exit

            report_exit(run)


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
    """The current run (``tracklet.run``, ``wandb.run``): the run started last by ``tracklet.init()``
    in this process without ``reinit="create_new"``, until it finishes. A ``create_new`` run never
    becomes current, and finishing the current run leaves none current even while other runs are
    live (W&B's rule for ``wandb.run``)."""
    run = _current
    return run if run is not None and not run.finished else None


def live_runs() -> list["Run"]:
    """This process's runs not yet finishing, oldest first (a forked child's are not its own)."""
    owner = os.getpid()
    return [run for run in active_runs() if run._pid == owner and not run.finished]


def most_recent() -> "Run | None":
    """The run started last that is not yet finishing, current or not: what ``init()`` returns
    with ``reinit="return_previous"`` (W&B's ``most_recent_active_run``)."""
    live = live_runs()
    return live[-1] if live else None
