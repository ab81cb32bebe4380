"""The random seeds the program sets: ``random.seed``, ``numpy.random.seed``, ``torch.manual_seed``,
``torch.cuda.manual_seed_all``, and through them Lightning's ``seed_everything``, Hugging Face's
``set_seed`` (transformers, accelerate) and Keras' ``utils.set_random_seed``.

tracklet imports none of these libraries. ``install()`` (run by ``import tracklet``) replaces the
seeding functions of the modules already imported, and puts a finder first on ``sys.meta_path``
that does the same right after ``random``, ``numpy.random`` or ``torch`` is imported later. A
replaced function appends ``(function, seed, caller's module, caller's function)`` to a bounded
list, then calls the original, and (the first call after each of the worker's ticks) wakes the
open runs' sender workers: no I/O on the caller's thread. Each run's ``RunSeeds`` turns the new
calls into ``SeedsSet`` records on the run's sender worker when woken, at each of its ticks (and
at ``flush()`` and ``finish()``), so a run killed before it finishes keeps the seeds it set:
primitive calls made by a framework's seeding function are named after it (one entry for
Lightning's three calls), and a seeding call made inside another (the
``torch.cuda.manual_seed_all`` of ``torch.manual_seed``) is not recorded. A run's seeds are the
calls since the previous run of the process finished.

Generators the program makes from a seed are recorded too: ``numpy.random.default_rng(seed)`` and
JAX's ``jax.random.PRNGKey(seed)`` / ``jax.random.key(seed)`` when called from the program's own
files (libraries make generators for themselves all the time); a seed that is a traced value
inside ``jit`` is recorded by its type. torch keeps the seed its default generator started from: when
the process's first run saw no torch seeding call (torch seeded before ``import tracklet``, or
never: then the seed came from the OS), ``torch.initial_seed()`` is recorded as that run's
``torch.initial_seed``. Seeds given to ``random`` or ``numpy.random`` before ``import tracklet``,
and seeding functions imported by name before it (``from random import seed``), are not seen: a
run's first ``SeedsSet`` names the seeding modules imported before tracklet (``unknown_before``),
and ``tracklet reproduce``'s plan says their earlier seeds can't be known.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Sequence
from tracklet.core.modules import loaded

MAX_CALLS = 256  # calls kept between two runs' finish (a program that seeds in a loop)

# (function, seed, caller's module name, caller's function name), appended by the wrappers.
_calls: list[tuple[str, Any, str, str]] = []
_dropped = [0]  # calls past MAX_CALLS since the process started (a running count)
_base = [0]  # the number of calls ever made (and kept) before _calls[0]
_depth = [0]  # seeding calls in progress (one process-wide counter: seeding is rare)
_lock = threading.Lock()  # install / patch, not the wrappers

# The frameworks' seeding functions: (module prefix, function name) -> the name recorded.
FRAMEWORK_SEEDERS = {
    ("lightning", "seed_everything"): "lightning.seed_everything",
    ("pytorch_lightning", "seed_everything"): "lightning.seed_everything",
    ("lightning_fabric", "seed_everything"): "lightning.seed_everything",
    ("transformers", "set_seed"): "transformers.set_seed",
    ("accelerate", "set_seed"): "accelerate.set_seed",
    ("keras", "set_random_seed"): "keras.utils.set_random_seed",
}


# Where library code lives: the standard library, tracklet, and (by name) site-packages.
_LIBRARY_DIRS: tuple[str, ...] = ()


def _library_dirs() -> tuple[str, ...]:
    import os
    import sysconfig

    paths = sysconfig.get_paths()
    found = {os.path.join(os.path.realpath(paths[key]), "") for key in ("stdlib", "platstdlib") if key in paths}
    found.add(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ""))  # tracklet's own
    return tuple(sorted(found))


def _in_a_library(filename: str) -> bool:
    return ("site-packages" in filename or "dist-packages" in filename or filename.startswith(_LIBRARY_DIRS)
            or filename.startswith("<frozen"))


def _wrap(name: str, original: Callable[..., Any], user_code_only: bool = False,
          method: bool = False, unless: type | None = None) -> Callable[..., Any]:
    """``user_code_only``: a generator factory that libraries call for their own use (numpy's
    ``default_rng`` runs dozens of times while Lightning or transformers import): only the
    program's own calls (from a file outside the standard library, site-packages and tracklet)
    are recorded. ``method``: the seed is the second argument (after ``self``); ``unless``: calls
    on instances of this class are not recorded (``random.SystemRandom`` has no seed)."""
    if getattr(original, "__tracklet_seed__", None) is not None:
        return original
    first = 1 if method else 0

    def seed(*args: Any, **kwargs: Any) -> Any:
        if _depth[0]:  # made by a seeding call being recorded (torch.manual_seed seeds CUDA itself)
            return original(*args, **kwargs)
        if user_code_only and _in_a_library(sys._getframe(1).f_code.co_filename):
            return original(*args, **kwargs)
        if unless is not None and args and isinstance(args[0], unless):
            return original(*args, **kwargs)
        _depth[0] += 1
        try:
            result = original(*args, **kwargs)  # a seed it refuses (raises) is not recorded
        finally:
            _depth[0] -= 1
        if len(_calls) < MAX_CALLS:
            caller = sys._getframe(1)
            value = args[first] if len(args) > first else next(iter(kwargs.values()), None)
            _calls.append((name, value, caller.f_globals.get("__name__", ""), caller.f_code.co_name))
        else:
            _dropped[0] += 1
        if _waiting:  # an open run's sender to wake, so that the seed is written now, not at its next tick
            _wake_runs()
        return result

    seed.__tracklet_seed__ = original  # type: ignore[attr-defined]
    seed.__wrapped__ = original  # type: ignore[attr-defined]
    seed.__name__ = getattr(original, "__name__", name.rpartition(".")[2])
    seed.__doc__ = getattr(original, "__doc__", None)
    return seed


def _patch(module: Any, attribute: str, name: str, user_code_only: bool = False, **how: Any) -> None:
    original = getattr(module, attribute, None)
    if callable(original):
        setattr(module, attribute, _wrap(name, original, user_code_only, **how))


def _patch_random(module: Any) -> None:
    _patch(module, "seed", "random.seed")
    # Generators the program makes: random.Random(seed) and rng.seed(seed). A Python class, so its
    # methods are replaced in place (isinstance and pickling see the same class).
    generator, system = getattr(module, "Random", None), getattr(module, "SystemRandom", None)
    if isinstance(generator, type) and isinstance(system, type):
        _patch(generator, "__init__", "random.Random", user_code_only=True, method=True, unless=system)
        _patch(generator, "seed", "random.Random.seed", user_code_only=True, method=True, unless=system)


def _patch_numpy_random(module: Any) -> None:
    _patch(module, "seed", "numpy.random.seed")
    _patch(module, "default_rng", "numpy.random.default_rng", user_code_only=True)


def _patch_torch(module: Any) -> None:
    _patch(module, "manual_seed", "torch.manual_seed")
    cuda = loaded("torch.cuda")
    if cuda is not None:
        _patch(cuda, "manual_seed_all", "torch.cuda.manual_seed_all")


def _patch_jax_random(module: Any) -> None:
    _patch(module, "PRNGKey", "jax.random.PRNGKey", user_code_only=True)
    _patch(module, "key", "jax.random.key", user_code_only=True)


PATCHERS: dict[str, Callable[[Any], None]] = {
    "random": _patch_random, "numpy.random": _patch_numpy_random, "torch": _patch_torch,
    "jax.random": _patch_jax_random,
}


def _patch_safely(name: str, module: Any) -> None:
    try:
        with _lock:
            PATCHERS[name](module)
    except Exception:  # a module we don't know the shape of: its seeds are not recorded
        pass


class _Finder:
    """First on ``sys.meta_path``: for the modules in ``PATCHERS``, asks the other finders for the
    spec and patches the module once its loader has executed it. Every other import: one dict lookup."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in PATCHERS or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        loader = getattr(spec, "loader", None)
        execute = getattr(loader, "exec_module", None)
        if execute is None or isinstance(loader, type):  # a loader class (frozen, builtin) serves many modules
            return spec

        def exec_module(module: Any) -> None:
            execute(module)
            _patch_safely(name, module)

        try:
            loader.exec_module = exec_module  # type: ignore[union-attr]  # this loader instance only
        except (AttributeError, TypeError):
            pass
        return spec

    def find_module(self, name: str, path: Any = None) -> None:  # the pre-3.4 protocol: never used
        return None


_finder: _Finder | None = None
# Seeding modules already imported when tracklet was: what they were given before is not known.
_imported_before: list[str] = []

# Seeding calls after which torch's initial seed is the one they set (so not worth recording).
_SEEDS_TORCH = ("torch.", "lightning.", "transformers.", "accelerate.", "keras.")


def install() -> None:
    """Patch the seeding functions of the modules already imported; hook the others' import."""
    global _finder
    if _finder is not None:
        return
    global _LIBRARY_DIRS
    _LIBRARY_DIRS = _library_dirs()
    _finder = _Finder()
    sys.meta_path.insert(0, _finder)
    for name in PATCHERS:
        module = sys.modules.get(name)  # any state: a module mid-import is patched now (no later hook sees it)
        if module is not None:
            _imported_before.append(name)
            _patch_safely(name, module)
    import os

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    """A forked child's runs are its own: its parent's are never read again there, and the lock
    may have been held by a thread the child doesn't have."""
    global _lock
    _lock = threading.Lock()
    _open.clear()
    del _waiting[:]


def _text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (bool, int, float, str, bytes)):
        text = repr(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
    else:
        try:
            text = str(int(value))  # a numpy or torch integer scalar
        except Exception:
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."


def _origin(function: str, module: str, caller: str) -> str:
    """The name a call is recorded under: the framework function that made it, else its own."""
    top = module.partition(".")[0]
    return FRAMEWORK_SEEDERS.get((top, caller), function)


def summarize(calls: list[tuple[str, Any, str, str]],
              previous: tuple[str, str, str] | None = None) -> tuple[list[tuple[str, str]], tuple[str, str, str] | None]:
    """``(api, seed)`` per seeding, in order: consecutive calls of one framework function with one
    seed are one seeding. ``previous``: the last seeding of the calls summarized before these
    (returned for the next calls, so a framework's calls split between two records stay one)."""
    out: list[tuple[str, str]] = []
    for function, value, module, caller in calls:
        api = _origin(function, module, caller)
        text = _text(value)
        key = (api, text, module + ":" + caller)
        if api != function and previous == key:
            continue
        previous = key
        out.append((api, text))
    return out, previous


def _torch_initial_seed() -> str | None:
    """The seed torch's default generator started from, when torch is imported (never imports it)."""
    torch = loaded("torch")
    initial_seed = getattr(torch, "initial_seed", None)
    if not callable(initial_seed):
        return None
    try:
        return _text(initial_seed())
    except Exception:  # torch half-imported, or a stand-in module
        return None


# Open runs whose sender worker has not been woken for a seeding call since its last tick: the
# first seeding call after a tick wakes it (one ``Event.set``, on the caller's thread), later ones
# until the next tick cost the wrapper one truth test of this list.
_waiting: list["RunSeeds"] = []


def _wake_runs() -> None:
    """Wake the sender of every run in ``_waiting`` (and take it out: its tick puts it back)."""
    while _waiting:
        try:
            run = _waiting.pop()  # atomic: another thread's wrapper may be emptying it too
        except IndexError:
            return
        run.wake()


# Where the next run's seeds start: the calls made since the previous run of the process
# finished (or since tracklet was imported) are that run's, as those made while it runs.
_next_start = [0, 0]  # (call position, dropped count)
_open: set["RunSeeds"] = set()
_closed_one = [False]  # a run of this process has finished already


class RunSeeds:
    """One run's seeds, recorded as the program sets them: ``tick()`` (on the sender's worker, at
    each wake-up; a seeding call wakes it) appends a ``SeedsSet`` record of the calls since its
    previous one to the run's queue, so a run killed before ``finish()`` keeps the seeds it set;
    ``close()`` (at ``finish()``) queues the rest. Both append under one lock, so the records
    are queued in the order of the calls. The wrappers on the training thread only append to
    ``_calls``, trimmed at a run's finish up to the first call an open run has not read."""

    def __init__(self, append: Callable[[Any], None], wake: Callable[[], None] | None = None) -> None:
        """``append``: queues one item on the run's sender (its ``put``; never the bound ``append`` of
        its open chunk, which the sender hands on to its worker as it fills); ``wake``: has the
        run's sender worker wake up now (its ``wake``), so that a seeding call is written within
        one wake-up of the worker, not at its next tick: the program's thread does no I/O."""
        self._append = append
        self._wake = wake
        self._armed = False  # in _waiting
        self._previous: tuple[str, str, str] | None = None
        self._seeded_torch = False
        self._unknown = list(_imported_before)  # said once, in the run's first SeedsSet
        self.closed = False
        with _lock:
            self._position, self._dropped_seen = _next_start
            _open.add(self)
            pending = _base[0] + len(_calls) > self._position or _dropped[0] > self._dropped_seen
        if pending:  # seeded before init(): written with the run's start record
            self.wake()
        else:
            self._arm()

    def _arm(self) -> None:
        """Have the next seeding call wake the sender (once: it is taken out of ``_waiting`` then)."""
        if self._wake is not None and not self._armed and not self.closed:
            self._armed = True
            _waiting.append(self)

    def wake(self) -> None:
        """Wake the run's sender worker (a seeding call was made); its tick arms this again."""
        self._armed = False
        if self._wake is not None and not self.closed:
            self._wake()

    def _take(self) -> tuple[list[tuple[str, str]], int]:
        """The seedings since the previous take (under ``_lock``)."""
        start = max(self._position, _base[0]) - _base[0]
        calls = _calls[start:]
        self._position = _base[0] + start + len(calls)
        dropped, self._dropped_seen = _dropped[0] - self._dropped_seen, _dropped[0]
        taken, self._previous = summarize(calls, self._previous)
        if any(api.startswith(_SEEDS_TORCH) for api, _ in taken):
            self._seeded_torch = True
        return taken, dropped

    def tick(self, deferred: bool = False) -> list[Any]:
        """A sender tick hook: queue a record of the new calls (none: returns at once).
        ``deferred`` (``Run.flush`` on the program's thread): queue it to be built on the worker."""
        self._arm()
        if self.closed or (_base[0] + len(_calls) == self._position and _dropped[0] == self._dropped_seen
                           and not self._unknown):
            return []
        with _lock:
            if not self.closed:
                taken, dropped = self._take()
                if taken or dropped or self._unknown:
                    unknown, self._unknown = self._unknown, []
                    self._append((lambda: record(taken, dropped, unknown)) if deferred
                                 else record(taken, dropped, unknown))
        return []

    def close(self) -> None:
        """The run finishes: queue (as a deferred record) the seeds set since the last tick, and
        for the process's first run that saw no torch seeding, ``torch.initial_seed``."""
        with _lock:
            if self.closed:
                return
            self.closed = True
            if self._armed:
                try:
                    _waiting.remove(self)
                except ValueError:  # a seeding call on another thread has just taken it out
                    pass
            taken, dropped = self._take()
            first, _closed_one[0] = not _closed_one[0], True
            _open.discard(self)
            _next_start[:] = [self._position, self._dropped_seen]
            keep = min([self._position, *(run._position for run in _open)])
            if keep > _base[0]:
                del _calls[:keep - _base[0]]
                _base[0] = keep
            if first and not self._seeded_torch:
                initial = _torch_initial_seed()
                if initial is not None:
                    taken.append(("torch.initial_seed", initial))
            if taken or dropped or self._unknown:
                unknown, self._unknown = self._unknown, []
                self._append(lambda: record(taken, dropped, unknown))


def record(seeds: list[tuple[str, str]], dropped: int, unknown: Sequence[str] = ()) -> Any:
    """A ``SeedsSet`` record, built without protobuf (core/wire.py)."""
    from tracklet.core import wire

    message = wire.Record()
    seeds_set = message.seeds
    seeds_set.SetInParent()
    for api, value in seeds:
        seeds_set.seeds.add(api=api, value=value)
    if dropped:
        seeds_set.dropped = dropped
    if unknown:
        seeds_set.unknown_before.extend(unknown)
    return message


# ---------------------------------------------------------------- reading

SEED_KEYS = ("seeds", "seeds_dropped", "seeds_unknown")  # what a run's metadata says of its seeds


def fold_session(metadata: dict[str, Any]) -> bool:
    """A session starts (a ``RunStart``): the seeds are the last session's. True if it changed."""
    return any([metadata.pop(key, None) is not None for key in SEED_KEYS])


def fold_seeds_set(metadata: dict[str, Any], seeds_set: Any) -> bool:
    """A ``SeedsSet`` record into a run's metadata (``seeds``: ``{"api", "value"}`` in order;
    ``seeds_dropped``; ``seeds_unknown``: the seeding modules imported before tracklet). True if
    it changed."""
    if seeds_set.seeds:
        added = [{"api": seed.api, "value": seed.value} for seed in seeds_set.seeds]
        metadata["seeds"] = [*metadata.get("seeds", []), *added]  # a new list: the old may be a stored row's
    if seeds_set.dropped:
        metadata["seeds_dropped"] = int(metadata.get("seeds_dropped", 0)) + seeds_set.dropped
    if seeds_set.unknown_before:
        metadata["seeds_unknown"] = list(seeds_set.unknown_before)
    return bool(seeds_set.seeds or seeds_set.dropped or seeds_set.unknown_before)


def fold_exit(metadata: dict[str, Any], end: Any) -> bool:
    """A ``RunExit``: an older writer's seeds are all in it (a newer one leaves them empty)."""
    if not (end.seeds or end.seeds_dropped):
        return False
    metadata["seeds"] = [{"api": seed.api, "value": seed.value} for seed in end.seeds]
    if end.seeds_dropped:
        metadata["seeds_dropped"] = end.seeds_dropped
    return True
