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
wait for the thread: under ``subprocess.Popen`` with a ``preexec_fn`` (how the agent started every
command trial) a before-fork hook joining the thread waited its whole timeout while the imports
stood still (measured on CPython 3.11; under ``os.fork`` they went on), so every trial start
waited 10 s while they ran. A child forked while the thread was inside an import (``os.fork`` in a function trial, not
a command trial: ``exec`` follows there) that imports the same module may hang on that module's
lock.

A process that exits while the thread imports waits for it (threading's exit hook, which runs
before ``atexit``'s callbacks, at most ``EXIT_WAIT`` seconds): Python ends a daemon thread still running at exit inside C++ code (torch's import)
with a forced unwind that torch catches, and the process aborted (``terminate called after
throwing an instance of ''``, exit status 134; seen on a server stopped seconds after its
start, which now begins the imports itself: ``server/sweeps_warm.py``). Importing this module
imports nothing heavy.

Why a child process first (:func:`warm_shared_libraries`): CPython holds the interpreter lock
while an extension module's ``dlopen`` runs, and ``import torch`` loads ``torch._C`` with
libtorch's ~1 GB of shared libraries behind it. With those files out of the page cache (right
after a big job, or a reboot) that ``dlopen`` reads them from disk with the lock held: the agent's
asks waited up to ~1 s for the lock and a handoff took 1.2 s (issue #17's <= 1 s). A child
process loads the same libraries first (``ctypes``, nothing of it in this process): the pages the
loader touches are then in the page cache, and the waiting for the disk happens in the child,
while this process's thread waits for it without the lock. What is left is the loader's CPU
(~0.2 s for ``torch._C``, as with a warm cache).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

from tracklet.core import threads

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
_warm_child: subprocess.Popen[bytes] | None = None  # the child loading the shared libraries, while it runs
_exiting = threading.Event()  # the interpreter exits: the import thread starts no import
# The longest a process's exit waits for the import thread (see the module docstring).
EXIT_WAIT = 30.0
# The shared libraries the GP's imports load with the interpreter lock held, read into the page
# cache first by a child process: per top-level package, the globs under its directory the child
# loads, in the order the package loads them (torch's own ``__init__`` loads its global
# dependencies, then ``torch._C``, which loads the rest), and the big ones behind them, whose first
# pages all cached mean the cache is warm (no child).
SHARED_LIBRARIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("torch", ("lib/libtorch_global_deps.so", "_C.*.so"), ("lib/libtorch_cpu.so", "lib/libtorch_cuda.so",
                                                          "lib/libtorch_python.so")),)
# The longest the child loading them may take: after it, the imports go on without it.
WARM_TIMEOUT = 60.0
# The child: loads each library it is given (a library that fails to load is left out).
_WARM_CHILD = """
import ctypes, sys
for path in sys.argv[1:]:
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass
"""


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
        threads.start(_thread)  # in an agent's process a function trial trains beside it: its Ctrl-C isn't ours
        return _thread


def warm_shared_libraries() -> list[str]:
    """Have a child process load the ``SHARED_LIBRARIES`` of every package not imported here yet,
    and wait for it (at most ``WARM_TIMEOUT`` seconds) without holding the interpreter lock:
    afterwards this process's own ``dlopen`` of them reads nothing from disk (see the module
    docstring). Skipped when those libraries and the big ones behind them all have their first
    page cached already (the child costs ~0.4 s of CPU). Returns the files given to the child
    (empty: nothing to do, cached already, not Linux, or the child could not start). Nothing is
    loaded into this process; a failure only leaves the cache cold."""
    global _warm_child
    if not sys.platform.startswith("linux"):
        return []
    paths: list[str] = []
    probes: list[str] = []
    for package, loaded, behind in SHARED_LIBRARIES:
        if package in sys.modules:
            continue
        for directory in _package_directories(package):
            paths += [str(path) for pattern in loaded for path in sorted(directory.glob(pattern))]
            probes += [str(path) for pattern in behind for path in sorted(directory.glob(pattern))]
    if not paths or _exiting.is_set() or all(_first_page_cached(path) for path in [*paths, *probes]):
        return []
    try:
        with threads.unblocked():  # from the import thread: the child gets the user's mask, not the blocked one
            child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WARM_CHILD, *paths], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return []
    _warm_child = child
    try:
        child.wait(WARM_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    finally:
        _warm_child = None
    return paths


def _first_page_cached(path: str) -> bool:
    """Whether the first page of ``path`` is in the page cache (read with ``RWF_NOWAIT``, which
    fails rather than wait for the disk). A library whose ELF header is cached was loaded recently:
    its other pages the loader touches are most likely cached too. Unknown counts as not cached.

    Not ``mincore`` (what the tests look with, tests/gp_gate.py): for a file this process neither
    owns nor may write, the usual case for a torch installed by another user or by root, Linux
    (5.2 on) reports every page resident, so the libraries would never be warmed. The read has a
    side effect instead: a miss starts read-ahead of the file's first pages (16 KiB seen on Linux
    6.18), so a second look finds them cached. Harmless here: a miss is acted on at once, by the
    child loading every one of the files."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT) == 1
    except (OSError, AttributeError):  # EAGAIN: not cached; AttributeError: no RWF_NOWAIT here
        return False
    finally:
        os.close(fd)


def _package_directories(package: str) -> list[Path]:
    """Where ``package`` would be imported from, without importing it (none if it isn't installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    return [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []


def _load(modules: tuple[str, ...]) -> None:
    global _failed
    try:
        warm_shared_libraries()
        if _exiting.is_set():
            return
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
    """At the interpreter's exit: start no import, stop the child loading the shared libraries (the
    thread then ends at once), and let an import already started end rather than kill the thread
    inside torch."""
    _exiting.set()
    child = _warm_child
    if child is not None:
        child.kill()
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(EXIT_WAIT)


# Before atexit's callbacks (threading's own exit hooks run first, as concurrent.futures' do):
# weakref.finalize's atexit callback, registered once torch's import makes its first finalizer
# (after this module's), runs before callbacks registered earlier; finalizers the import made after
# it ran were then called at module teardown, each printing "Exception ignored in: <finalize
# object ...> TypeError: 'NoneType' object is not callable" (torch.library's _del_library).
_register_exit = getattr(threading, "_register_atexit", atexit.register)
_register_exit(_wait_at_exit)


def _after_fork_in_child() -> None:
    """The child has no import thread, and a lock its parent's thread held would stay held."""
    global _lock, _start_lock, _thread, _warm_child
    _lock = threading.Lock()
    _start_lock = threading.Lock()
    _thread = None
    _warm_child = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
