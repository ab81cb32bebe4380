"""What the framework integrations share to record a distributed job's processes: a run started
beside the current one (``start_quietly``), and a non-zero rank's part of the run rank zero
started (``join_run_part``: a secondary writer, docs/shared-runs.md)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import tracklet
from tracklet.core import forksafe
from tracklet.core import lifecycle
from tracklet.core.settings import Settings


def start_quietly(**init_args: Any) -> Any:
    """``tracklet.init`` that leaves another active run alone (init would finish it): it stays
    current and running, and the new run is simply another live run."""
    other = lifecycle.current()
    if other is not None:
        lifecycle.set_current(None)
    try:
        return tracklet.init(**init_args)
    finally:
        if other is not None:
            lifecycle.set_current(other)


def join_run_part(part: Any, project: str, run_id: str, label: str, init_args: dict[str, Any]) -> Any:
    """This process's part, secondary writer ``label``, of run ``project/run_id``: ``part`` itself
    while it is that run's and live; otherwise ``part`` is finished and a part is started with the
    integration's ``dir``, ``mode``, ``settings`` and ``resume`` (not its name, config or tags: a
    secondary takes the run's; ``resume``: a rank restarted on another machine continues its part,
    downloaded from the server, as the primary continues the run)."""
    if part is not None and not part.finished:
        if part.id == run_id:
            return part
        part.finish(0)
    settings = init_args.get("settings")
    if isinstance(settings, Settings):
        settings = settings.explicit_fields()
    settings = {**(settings or {}), "primary": False, "label": label}
    return start_quietly(project=project, id=run_id, dir=init_args.get("dir"), mode=init_args.get("mode"),
                         settings=settings, resume=init_args.get("resume"))


def end_cleanly_on_sigterm() -> Callable[[], None] | None:
    """While a distributed job trains: a SIGTERM ends this process as ``sys.exit(143)`` would,
    instead of killing it. ``torchrun``'s agent sends SIGTERM to every other process of the job
    when one of them fails; killed, a process's run (or part) would lose the rows not yet written
    and read ``crashed``; ended this way, tracklet's exit hook writes them and finishes it
    ``failed`` with exit code 143 (``finish()`` holds a SIGTERM that lands in it). A second SIGTERM
    kills at once. Only from the main thread, and only when SIGTERM still has its default action
    (a program's or framework's own handler is left alone). Returns the undo (None if nothing was
    installed): it restores the default unless something replaced the handler since."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None
        signal.signal(signal.SIGTERM, forksafe.sigterm_handler(_on_sigterm))  # not a forked worker's
    except (ValueError, OSError, AttributeError):  # no SIGTERM here (Windows has one), or not allowed
        return None

    def undo() -> None:
        try:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):
            pass

    return undo


def _on_sigterm(signum: int, frame: Any) -> None:
    """:func:`end_cleanly_on_sigterm`'s handler (one function: a forked child gets the default back,
    ``core/forksafe.sigterm_handler``)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(128 + signum)
