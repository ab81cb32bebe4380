"""The sweeps' SciPy and PyTorch imports: one thread at a time, and the GP's in the background.

Why one at a time: two threads importing SciPy's circular modules (``scipy.stats`` and its
``_qmc``) at once hand one of them a partly initialised module: ``ImportError: partially
initialized module 'scipy.stats._qmc'``, which stopped a bayes agent. In one process several
threads may want them: the GP's background import (below), a request's ``next_trial`` decoding a
``normal`` parameter (``space.py``), a dashboard request computing parameter importance
(``optuna.importance`` pulls in scikit-learn, hence SciPy, where it is installed), a GP ask. Every
such import in this package goes through :func:`serialized_import`, under one process-wide lock,
a module at a time (a thread that needs ``scipy.stats`` waits at most for the module being
imported, never for all of the GP's); a module is only used once it was imported whole.

Why in the background: the GP's modules (``GP_MODULES``: torch and SciPy, seconds of CPU) are
needed from the first ask past the random start-up trials. An ask that imported them put seconds
between one trial's exit and the next one's start (issue #17: <= 1 s). :func:`start` imports them
on a daemon thread (``tracklet-sweep-gp-import``, one per process): the local agent starts it as
it starts (``LocalController.prepare``), a server as a GP sweep is created or its controller made
(``server/sweeps_db.py``). While it runs (:func:`importing`), an ask that would fit the GP is
answered at random instead and its trial marked (``controller.GP_LOADING``); no ask waits for it.

A forked child gets a fresh import lock and no thread (``_after_fork_in_child``); a fork does not
wait for the thread: under ``subprocess.Popen`` with a ``preexec_fn`` (how the agent starts every
command trial) a before-fork hook joining the thread waited its whole timeout while the imports
stood still (measured on CPython 3.11; under ``os.fork`` they went on), so every trial start
waited 10 s while they ran. A child forked while the thread was inside an import (``os.fork`` in a function trial, not
a command trial: ``exec`` follows there) that imports the same module may hang on that module's
lock.

A process that exits while the thread imports waits for it (``atexit``, at most ``EXIT_WAIT``
seconds): Python ends a daemon thread still running at exit inside C++ code (torch's import)
with a forced unwind that torch catches, and the process aborted (``terminate called after
throwing an instance of ''``, exit status 134; seen on a server stopped seconds after its
start, which now begins the imports itself: ``server/sweeps_warm.py``). Importing this module
imports nothing heavy.
"""

from __future__ import annotations

import atexit
import importlib
import os
import threading

# What the background thread imports: the GP's modules and what they pull in (torch, SciPy).
GP_MODULES = ("optuna._gp.gp", "optuna._gp.acqf", "optuna._gp.optim_mixed", "optuna._gp.prior",
              "optuna._gp.search_space", "scipy.optimize", "scipy.stats")
# What parameter importance imports: Optuna's evaluators (fANOVA's imports scikit-learn, hence SciPy).
IMPORTANCE_MODULES = ("optuna.importance",)

_lock = threading.Lock()  # held by the one thread importing one of these modules
_imported: set[str] = set()  # modules imported whole through serialized_import
_start_lock = threading.Lock()
_thread: threading.Thread | None = None
_failed = False  # the background imports failed once: not tried again in the background
# The longest a process's exit waits for the import thread (see the module docstring).
EXIT_WAIT = 30.0


def serialized_import(*modules: str) -> None:
    """Import ``modules``, each under the process's one import lock (see the module docstring);
    a module imported whole before costs a set lookup. An import's error is raised to the caller."""
    for name in modules:
        if name in _imported:
            continue
        with _lock:
            importlib.import_module(name)
            _imported.add(name)


def start() -> threading.Thread | None:
    """Import ``GP_MODULES`` on a background daemon thread, unless a thread is at it already (then
    that one is returned), they all are imported, or a thread failed to import them before (None).
    An import that fails ends the thread quietly and is not tried again here (a server would have
    started a thread per request): the next GP ask imports again (:func:`serialized_import`) and
    reports the error."""
    global _thread
    with _start_lock:
        if _thread is not None and _thread.is_alive():
            return _thread
        modules = tuple(GP_MODULES)
        if _failed or all(name in _imported for name in modules):
            return None
        _thread = threading.Thread(target=_load, args=(modules,), name="tracklet-sweep-gp-import", daemon=True)
        _thread.start()
        return _thread


def _load(modules: tuple[str, ...]) -> None:
    global _failed
    try:
        serialized_import(*modules)
    except Exception:  # noqa: BLE001 - the GP ask imports again and reports the failure
        _failed = True


def importing() -> bool:
    """Whether the background thread still imports the GP's modules (an ask then must not fit the GP)."""
    thread = _thread
    return thread is not None and thread.is_alive()


def running() -> threading.Thread | None:
    """The background import thread while it runs, else None."""
    thread = _thread
    return thread if thread is not None and thread.is_alive() else None


def _wait_at_exit() -> None:
    """At the interpreter's exit: let the imports end rather than kill the thread inside torch."""
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(EXIT_WAIT)


atexit.register(_wait_at_exit)


def _after_fork_in_child() -> None:
    """The child has no import thread, and a lock its parent's thread held would stay held."""
    global _lock, _start_lock, _thread
    _lock = threading.Lock()
    _start_lock = threading.Lock()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
