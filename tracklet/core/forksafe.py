"""What a forked child must not inherit as it is: module-level locks and the locks of process-wide
objects (released in the child), process-wide caches of objects holding locks or connections
(empty in the child), scratch directories removed at collection or exit (removed by the process that made them only),
and tracklet's own SIGTERM handlers (the child gets the default action back).

``fork`` copies a lock as it is: one that another thread held at that moment stays held in the
child for ever, since the thread that would release it is not there. tracklet's own threads (the
sender, the uploader, the environment capture, the system monitor, media and artifact workers)
take module-level locks at any moment, and a child forked then (a ``Pool``, a ``DataLoader``'s
workers, ``os.fork``) records into the run as a secondary writer (``core/childrun.py``): its first
logged image, artifact or upload waited on such a lock for ever, and the child's training with it.

So every module-level lock outside the server is made here (or reset by its module's own
``os.register_at_fork`` hook): :func:`lock` and :func:`rlock` return a plain ``threading`` lock
(no cost on use) that is put back to unlocked in a forked child. What the lock guarded is as the
holder left it; the modules using these keep nothing there that a half-done update breaks (a
cache filled once, a dict updated in one step). tests/test_child_processes.py holds tracklet to
this rule."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_locks: list[Any] = []


def lock() -> threading.Lock:
    """A ``threading.Lock`` that is unlocked in a child made by ``fork``."""
    made = threading.Lock()
    _locks.append(made)
    return made


def rlock() -> threading.RLock:
    """A ``threading.RLock`` that is unlocked (no owner) in a child made by ``fork``."""
    made = threading.RLock()
    _locks.append(made)
    return made


_caches: list[dict[Any, Any]] = []
_kept: list[Any] = []  # what the parent's caches held, in a forked child: never used, never closed there


def cache() -> dict[Any, Any]:
    """A process-wide cache (a dict) of objects that hold locks, connections or clients (an
    artifact store, a registry, an S3 client): empty again in a forked child, which makes its own.
    The parent's objects came with the fork as they were: a lock one of the parent's threads held
    (an artifact worker writing a chunk index) stayed held, and an SQLite connection or an HTTP
    client must not be used by two processes. They are kept referenced in the child, never closed
    there (closing an inherited SQLite connection could act on the parent's files)."""
    made: dict[Any, Any] = {}
    _caches.append(made)
    return made


def remove_with(owner: object, path: str) -> None:
    """Remove directory ``path`` (scratch space: a disabled W&B run's ``run.dir``, an artifact
    draft's staged files) when ``owner`` is collected or at exit, in this process only. A child
    forked meanwhile holds a copy of ``owner``, and ``weakref.finalize`` runs there too (at the
    child's normal exit, or when its copy goes away): it removed the parent's directory while the
    parent still used it (a checkpoint saved in ``run.dir``, a draft's files not yet logged)."""
    weakref.finalize(owner, _remove_in, path, os.getpid())


def _remove_in(path: str, pid: int) -> None:
    if os.getpid() == pid:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# tracklet's own SIGTERM handlers (sys.exit(143) instead of being killed: ``tracklet run``'s, a
# distributed train() call's, a pool worker's part): each is for the process that set it.
_sigterm_handlers: list[Any] = []


def sigterm_handler(handler: Any) -> Any:
    """Mark ``handler`` as one of tracklet's SIGTERM handlers (returns it): a child forked while it
    is set gets SIGTERM's default action back. Inherited, it turned a ``Pool`` worker's or a
    ``DataLoader`` worker's SIGTERM (``Pool.terminate()``, ``with Pool() as pool``, a loader shut
    down) into ``sys.exit(143)``: the worker's part of the run ended failed with exit code 143
    instead of finished, and a worker stuck in native code no longer died of it."""
    if handler not in _sigterm_handlers:
        _sigterm_handlers.append(handler)
    return handler


def _after_fork_in_child() -> None:
    if _sigterm_handlers:
        import _signal  # type: ignore[import-not-found]  # the builtin: ``signal`` would build its enums

        try:
            if _signal.getsignal(_signal.SIGTERM) in _sigterm_handlers:
                _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        except (ValueError, OSError, AttributeError):  # no SIGTERM here
            pass
    for made in _locks:
        reinit = getattr(made, "_at_fork_reinit", None)  # CPython 3.9+ (what threading's own locks use)
        if reinit is not None:
            reinit()
    for held in _caches:
        _kept.extend(held.values())
        held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
