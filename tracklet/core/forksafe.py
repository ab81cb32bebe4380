"""What a forked child must not inherit as it is: module-level locks and the locks of process-wide
objects (released in the child), process-wide caches of objects holding locks or connections
(empty in the child), scratch directories removed at collection or exit (removed by the process that made them only),
and tracklet's own SIGTERM handlers (the child gets the default action back). And what a fork
waits for: a :func:`section` another thread is in (state no lock reset can repair, such as
OpenSSL's internal locks while a TLS context is built) and, while runs are live, the imports other
threads have under way.

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
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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


_caches: list[Any] = []  # dicts (cache) and Recent caches (recent)
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


class Recent:
    """A process-wide cache of objects holding connections per data root or file (an artifact store,
    a model registry, a report store) that keeps only the ``keep`` last used alive by itself; an
    older one stays found while anything else holds it (a run, an ``Artifact``, an ``Api``), so there
    is one per key at a time, and goes once nothing does (its connections closed by its own
    finalizer or ``__del__``). An unbounded dict (``cache``) kept every root's store open for the
    process's life: ~6 descriptors per root (two SQLite databases with their ``-wal`` and ``-shm``)
    in a notebook, a sweep agent or a test process going through hundreds of roots (ci54's workers
    ended holding 750-820). Empty again in a forked child, like ``cache``. Use under the caller's lock."""

    def __init__(self, keep: int) -> None:
        import collections

        self.keep = keep
        self._held: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._alive: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()

    def get(self, key: Any) -> Any:
        found = self._held.get(key)
        if found is not None:
            self._held.move_to_end(key)
            return found
        found = self._alive.get(key)
        if found is not None:
            self._hold(key, found)
        return found

    def __setitem__(self, key: Any, value: Any) -> None:
        self._alive[key] = value
        self._hold(key, value)

    def _hold(self, key: Any, value: Any) -> None:
        self._held[key] = value
        self._held.move_to_end(key)
        while len(self._held) > self.keep:
            self._held.popitem(last=False)

    def values(self) -> list[Any]:
        return list({id(value): value for value in [*self._held.values(), *self._alive.values()]}.values())

    def clear(self) -> None:
        self._held.clear()
        self._alive.clear()


# How many data roots' stores a process keeps open by itself (a process uses one root, mostly).
ROOTS_KEPT = 4


def recent(keep: int = ROOTS_KEPT) -> Recent:
    """A :class:`Recent` cache keeping the ``keep`` last used objects alive, emptied in a forked child."""
    made = Recent(keep)
    _caches.append(made)  # values() and clear() are all the fork hook uses
    return made


def release_with(owner: object, release: Callable[[], Any]) -> None:
    """Call ``release`` (an engine's ``dispose``) when ``owner`` is collected, in this process only
    (a forked child's copy going away leaves its parent's connections alone); not at exit, which
    closes them anyway."""
    weakref.finalize(owner, _release_in, release, os.getpid()).atexit = False


def _release_in(release: Callable[[], Any], pid: int) -> None:
    if os.getpid() == pid:
        release()


def close_in_opener(connection: Any, pid: int | None) -> None:
    """Close ``connection`` (an SQLite connection) if this process opened it (``pid``): a forked
    child's copy of an object going away must leave its parent's connection alone."""
    if connection is not None and pid == os.getpid():
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - closing at collection: another thread's use, interpreter shutdown
            pass


class own:
    """A descriptor for an attribute holding a store, a connection or a client (an artifact
    store, the store's SQLite engine, an HTTP client): read in another process than the one that
    set it (a child made by ``fork`` that got the object with everything else: a ``Pool`` worker's
    ``tracklet.Api``, an ``Artifact`` the parent fetched), it is first replaced by
    ``reopen(holder, parents)`` (None: opened again on first use, as if never opened), and the
    parent's is kept referenced, never used or closed there (closing an inherited SQLite connection
    could act on the parent's files; a lock one of the parent's threads held stayed held; an HTTP
    connection must not be shared by two processes). Costs an ``os.getpid()`` per read."""

    def __init__(self, reopen: Callable[[Any, Any], Any]) -> None:
        self._reopen = reopen
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_own_{name}"

    def __get__(self, holder: Any, owner: type | None = None) -> Any:
        if holder is None:
            return self
        value, pid = holder.__dict__.get(self._slot, (None, None))
        if value is not None and pid != os.getpid():
            _kept.append(value)
            value = self._reopen(holder, value)
            holder.__dict__[self._slot] = (value, os.getpid())
        return value

    def __set__(self, holder: Any, value: Any) -> None:
        holder.__dict__[self._slot] = (value, os.getpid())


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
    _reset_fork_gate_in_child()
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


# A fork waits for the sections and imports under way on other threads while their threads work (use
# CPU time, or are running or reading the disk): it gives up on them once none has worked for
# FORK_WAIT seconds (one waiting on something the forking thread holds), or after FORK_WAIT_MAX in all.
# A bound on the wall-clock time alone ran out under load: s3fs's build (~0.3 CPU s) took 5-8 s on a
# busy 2-core machine, the fork went ahead amid its import and the child waited for ever on s3fs's
# import lock (tests/test_fork_objects.py's s3 test failed 1 run in 3 of the fork test files so, and
# 4 tries in 5 on one loaded CPU).
FORK_WAIT = 5.0
FORK_WAIT_MAX = 60.0
# Re-entrant: a signal handler that forks runs on a thread that may be inside the gate's own blocks.
_fork_gate = threading.Condition(threading.RLock())
_in_sections: dict[int, int] = {}  # thread -> how many sections it is in
# thread in a section -> what names the threads doing its work while it waits on them (``section``'s helpers)
_section_helpers: dict[int, list[Callable[[], Iterable[int]]]] = {}
# thread -> how many of our before hooks it is inside (the hook may be registered twice; a fork from a
# signal handler amid a fork nests): only the outermost waits, and the last after-hook opens the gate.
_forking: dict[int, int] = {}
_import_wait_wanted: list[Callable[[], bool]] = []
_arm_lock = lock()


@contextmanager
def section(helpers: Callable[[], Iterable[int]] | None = None) -> Iterator[None]:
    """Code a fork on another thread waits for (while it works: ``FORK_WAIT``), and that
    doesn't begin while such a fork is under way: code that leaves state a forked child can't use
    when copied halfway, and no lock of ours guards. Building a TLS context is one: OpenSSL takes
    its own read/write locks throughout (~0.1 CPU s), and a child forked then (a ``Pool`` right
    after an online ``init()``, whose uploader builds one) inherited one held: the child's own
    upload client waited in ``pthread_rwlock_wrlock`` for ever, and so did its ``finish()``.
    Importing a module whose half-import would break the child is another (the sender's encoder).
    A fork from inside a section, on that same thread, doesn't wait for it. ``helpers`` names
    (``threading.get_ident()``) the threads that do the section's work while its own thread waits
    on them (fsspec's IO thread sets an s3fs client up): their work counts as the section's, so
    the fork doesn't give up on a section whose thread only waits (asked under the fork's lock:
    it must not block or import)."""
    arm_fork_wait()
    me = threading.get_ident()
    with _fork_gate:
        while any(thread != me for thread in _forking):
            _fork_gate.wait()
        _in_sections[me] = _in_sections.get(me, 0) + 1
        if helpers is not None:
            _section_helpers.setdefault(me, []).append(helpers)
    try:
        yield
    finally:
        with _fork_gate:
            left = _in_sections.pop(me) - 1
            if left:
                _in_sections[me] = left
            if helpers is not None:
                kept = _section_helpers.get(me, [])
                if helpers in kept:
                    kept.remove(helpers)
                if not kept:
                    _section_helpers.pop(me, None)
            _fork_gate.notify_all()


def _sections_elsewhere(me: int) -> list[int]:
    """The other threads in sections, and the threads their helpers name (under the fork gate)."""
    holders = [thread for thread in _in_sections if thread != me]
    if not holders:
        return []
    found = list(holders)
    for thread in holders:
        for helpers in _section_helpers.get(thread, ()):
            try:
                found += [helper for helper in helpers() if helper != me and helper not in found]
            except Exception:  # noqa: BLE001 - a helper that can't say: the section's own thread only
                continue
    return found


_tls_object_class: Any = None


def tls_object_class() -> type:
    """An ``ssl.SSLObject`` class (for a context's ``sslobject_class``: the objects its
    ``wrap_bio`` makes) whose every handshake step runs in a :func:`section`. A TLS connection on
    memory buffers (asyncio's and so aiohttp's, httpcore's TLS through an HTTPS proxy) hands the
    socket's bytes to OpenSSL between two calls of ``do_handshake``: each call is OpenSSL's work
    alone (the first handshake of a process fetches its algorithms under OpenSSL's global locks),
    never a wait for the server, which a fork would otherwise wait for too. ``ssl`` is imported
    at the first call."""
    global _tls_object_class
    if _tls_object_class is None:
        import ssl

        class HandshakeStepsInSections(ssl.SSLObject):
            def do_handshake(self) -> None:
                with section():
                    super().do_handshake()

        _tls_object_class = HandshakeStepsInSections
    return _tls_object_class


def wait_for_imports_while(wanted: Callable[[], bool]) -> None:
    """Make a fork also wait for other threads' imports under way whenever ``wanted()`` (while
    runs are live, ``core/lifecycle.py``): a child forked amid an import inherits that module
    half-imported, its import lock held by a thread the child doesn't have, and the child's first
    import of it waits for ever (measured: a ``Pool`` forked right after ``init()`` hung 2 times in
    12 on ``datetime``)."""
    if wanted not in _import_wait_wanted:
        _import_wait_wanted.append(wanted)
    arm_fork_wait()


# Modules whose own fork hooks hold a lock through the fork, that tracklet's threads may need.
_LOCKING_HOOKS = ("logging", "concurrent.futures.thread")
_armed_with: frozenset[str] | None = None  # which of them were loaded when the wait was last registered


def arm_fork_wait() -> None:
    """Register the fork's wait (once, and again whenever one of ``_LOCKING_HOOKS`` was imported
    since): ``os.fork`` runs the ``before`` hooks last registered first, and one registered after
    ours that takes a lock (``logging``'s, ``concurrent.futures``' shutdown lock) ran before our
    wait, holding that lock through it: the uploader, importing httpx (which asks ``logging`` for a
    logger at import), waited on it, our wait ran out, and the child inherited httpx half-imported.
    A copy registered later runs first and does the wait; an earlier copy then finds it done (each
    fork waits once). Cheap: called by every ``init()``, an online run's uploader start and every
    section. One of them imported after the last of those (on another thread, amid a fork) has its
    hook run before ours: ours releases that hook's lock while it waits (``_release_newer_hooks_locks``)."""
    global _armed_with
    # A module counts once its import has ended: ``logging`` is in ``sys.modules`` from its
    # import's first line but registers its hook halfway through, so a copy armed in between would
    # run after that hook yet count it as older, and keep its lock through the wait.
    loaded = frozenset(name for name in _LOCKING_HOOKS if _imported(name))
    if (_armed_with is not None and loaded <= _armed_with) or not hasattr(os, "register_at_fork"):
        return
    with _arm_lock:
        if _armed_with is None or not loaded <= _armed_with:
            os.register_at_fork(before=lambda: _before_fork(loaded), after_in_parent=_after_fork_in_parent)
            _armed_with = loaded


def _imported(name: str) -> bool:
    """Whether module ``name``'s import has ended (not only begun)."""
    module = sys.modules.get(name)  # any state: half-imported is what is asked about
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _held_once(lock: Any) -> bool:
    """Whether the current thread, which owns re-entrant ``lock``, took it once (Python 3.10's
    RLock has no ``_recursion_count``: its repr says the count)."""
    count = getattr(lock, "_recursion_count", None)
    return bool(count() == 1) if count is not None else " count=1 " in repr(lock)


def _release_newer_hooks_locks(armed_with: frozenset[str]) -> list[Any]:
    """Release, for the fork's wait, the locks that fork hooks registered after this copy of ours
    took on this thread (they ran first): ``logging``'s module lock and ``concurrent.futures``'
    shutdown lock, where the module was imported since this copy was registered (``armed_with``:
    what was loaded then). A thread in a section may need one to go on: ``logging`` first imported
    inside a section (s3fs's build imports it) registers its hook halfway through its own import,
    which then takes that lock to make its last-resort handler; the fork's wait held it, the import
    couldn't end, the wait ran out after ``FORK_WAIT`` and the child got ``logging`` half-imported
    (measured: 2 hangs in 12). Returns the locks released, which the caller takes again."""
    released: list[Any] = []
    module = sys.modules.get("logging")  # any state: partly imported is the case here
    lock = getattr(module, "_lock", None) if "logging" not in armed_with else None
    if lock is not None and getattr(lock, "_is_owned", None) and lock._is_owned() and _held_once(lock):
        lock.release()  # taken once, by logging's hook: not a section of this thread's own
        released.append(lock)
    module = sys.modules.get("concurrent.futures.thread")  # any state: only a whole import's hook took it
    spec = getattr(module, "__spec__", None)
    if module is not None and "concurrent.futures.thread" not in armed_with and not getattr(spec, "_initializing", True):
        lock = getattr(module, "_global_shutdown_lock", None)
        if lock is not None and lock.locked():  # its hook's acquire, on this thread
            lock.release()
            released.append(lock)
    return released


def _importers_elsewhere(me: int) -> list[int]:
    """The other threads that hold a module's import lock (are executing a module's code)."""
    bootstrap = sys.modules.get("_frozen_importlib")  # any state: the import system
    owners: list[int] = []
    try:
        for ref in list(getattr(bootstrap, "_module_locks", {}).values()):
            lock = ref() if callable(ref) else ref
            owner = getattr(lock, "owner", None)
            if owner not in (None, 0, me):
                owners.append(owner)
    except Exception:  # another Python's import machinery: no wait
        return []
    return owners


def _work_of(thread: int) -> tuple[str, int] | None:
    """Thread ``thread``'s (a ``threading.get_ident()``) scheduler state and the CPU time it has used
    (clock ticks), from ``/proc`` (Linux); None where unknown (another system, a thread ``threading``
    doesn't know, one that has ended)."""
    known = getattr(threading, "_active", {}).get(thread)
    native = getattr(known, "native_id", None)
    if native is None:
        return None
    try:
        with open(f"/proc/self/task/{native}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # after the thread's name, which may hold anything
        return fields[0].decode(), int(fields[11]) + int(fields[12])  # state; utime + stime
    except (OSError, IndexError, ValueError):
        return None


class _Patience:
    """How long one fork waits for other threads' sections and imports: while one of those threads
    works (its CPU time grew, or it is running or waiting for the disk: state R or D), and until
    none has for ``FORK_WAIT`` seconds, at most ``FORK_WAIT_MAX`` in all. Where a thread's work
    can't be known, ``FORK_WAIT`` in all (as before)."""

    def __init__(self) -> None:
        self._began = self._worked = time.monotonic()
        self._looked = -1.0
        self._used: dict[int, int] = {}

    def waits_for(self, threads: list[int]) -> bool:
        """Whether the fork goes on waiting for ``threads`` (none: no)."""
        now = time.monotonic()
        if not threads or now - self._began >= FORK_WAIT_MAX:
            return False
        if now - self._looked < 0.05:  # (the imports' wait asks every millisecond)
            return now - self._worked < FORK_WAIT
        self._looked = now
        for thread in threads:
            work = self._used.get(thread), _work_of(thread)
            if work[1] is None:
                continue
            state, used = work[1]
            if state in ("R", "D") or (work[0] is not None and used != work[0]):
                self._worked = now
            self._used[thread] = used
        return now - self._worked < FORK_WAIT

    def left(self) -> float:
        """How long to wait before looking again."""
        now = time.monotonic()
        return max(0.0, min(0.1, self._worked + FORK_WAIT - now, self._began + FORK_WAIT_MAX - now))


def _before_fork(armed_with: frozenset[str]) -> None:
    me = threading.get_ident()
    with _fork_gate:
        depth = _forking.get(me, 0)
        _forking[me] = depth + 1  # from here no other thread begins a section until this fork is done
        if depth:  # a later-registered copy of this hook (or an outer fork) has waited
            return
    released = _release_newer_hooks_locks(armed_with)
    try:
        patience = _Patience()
        with _fork_gate:  # (a thread in a section is alive: it leaves it under the gate)
            while patience.waits_for(_sections_elsewhere(me)):
                _fork_gate.wait(patience.left())
        # Sections are closed, so a thread leaving one may only import now: wait for that too.
        if any(wanted() for wanted in _import_wait_wanted):
            while patience.waits_for(_importers_elsewhere(me)):
                time.sleep(0.001)
    finally:
        for lock in reversed(released):  # held through the fork again, as their hooks meant
            lock.acquire()


def _after_fork_in_parent() -> None:
    me = threading.get_ident()
    with _fork_gate:
        left = _forking.pop(me, 0) - 1
        if left > 0:
            _forking[me] = left
        _fork_gate.notify_all()


def _reset_fork_gate_in_child() -> None:
    global _fork_gate, _in_sections, _section_helpers, _forking
    _fork_gate, _in_sections, _section_helpers, _forking = threading.Condition(threading.RLock()), {}, {}, {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
