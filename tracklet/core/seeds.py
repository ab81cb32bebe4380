"""The random seeds the program sets: ``random.seed``, ``numpy.random.seed``, ``torch.manual_seed``,
``torch.cuda.manual_seed_all``, and through them Lightning's ``seed_everything``, Hugging Face's
``set_seed`` (transformers, accelerate) and Keras' ``utils.set_random_seed``.

tracklet imports none of these libraries. ``install()`` (run by ``import tracklet``) replaces the
seeding functions of the modules already imported, and puts a finder first on ``sys.meta_path``
that does the same right after ``random``, ``numpy.random`` or ``torch`` is imported later. A
replaced function appends ``(function, seed, caller's module, caller's function)`` to a bounded
list, then calls the original: nothing else on the caller's thread. ``take()`` (at ``finish()``)
turns the calls since the previous ``take()`` into the run's seeds: primitive calls made by a
framework's seeding function are named after it (one entry for Lightning's three calls), and a
seeding call made inside another (the ``torch.cuda.manual_seed_all`` of ``torch.manual_seed``) is
not recorded.

Generators the program makes from a seed are recorded too: ``numpy.random.default_rng(seed)`` and
JAX's ``jax.random.PRNGKey(seed)`` / ``jax.random.key(seed)`` when called from the program's own
files (libraries make generators for themselves all the time); a seed that is a traced value
inside ``jit`` is recorded by its type. torch keeps the seed its default generator started from: when
the process's first run saw no torch seeding call (torch seeded before ``import tracklet``, or
never: then the seed came from the OS), ``torch.initial_seed()`` is recorded as that run's
``torch.initial_seed``. Seeds given to ``random`` or ``numpy.random`` before ``import tracklet``,
and seeding functions imported by name before it (``from random import seed``), are not seen.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

MAX_CALLS = 256  # calls kept between two runs' finish (a program that seeds in a loop)

# (function, seed, caller's module name, caller's function name), appended by the wrappers.
_calls: list[tuple[str, Any, str, str]] = []
_dropped = [0]
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


def _in_a_library(filename: str) -> bool:
    return "site-packages" in filename or "dist-packages" in filename


def _wrap(name: str, original: Callable[..., Any], user_code_only: bool = False) -> Callable[..., Any]:
    """``user_code_only``: a generator factory that libraries call for their own use (numpy's
    ``default_rng`` runs dozens of times while Lightning or transformers import): only the
    program's own calls (from a file outside site-packages) are recorded."""
    if getattr(original, "__tracklet_seed__", None) is not None:
        return original

    def seed(*args: Any, **kwargs: Any) -> Any:
        if _depth[0]:  # made by a seeding call being recorded (torch.manual_seed seeds CUDA itself)
            return original(*args, **kwargs)
        if user_code_only and _in_a_library(sys._getframe(1).f_code.co_filename):
            return original(*args, **kwargs)
        _depth[0] += 1
        try:
            result = original(*args, **kwargs)  # a seed it refuses (raises) is not recorded
        finally:
            _depth[0] -= 1
        if len(_calls) < MAX_CALLS:
            caller = sys._getframe(1)
            value = args[0] if args else next(iter(kwargs.values()), None)
            _calls.append((name, value, caller.f_globals.get("__name__", ""), caller.f_code.co_name))
        else:
            _dropped[0] += 1
        return result

    seed.__tracklet_seed__ = original  # type: ignore[attr-defined]
    seed.__wrapped__ = original  # type: ignore[attr-defined]
    seed.__name__ = getattr(original, "__name__", name.rpartition(".")[2])
    seed.__doc__ = getattr(original, "__doc__", None)
    return seed


def _patch(module: Any, attribute: str, name: str, user_code_only: bool = False) -> None:
    original = getattr(module, attribute, None)
    if callable(original):
        setattr(module, attribute, _wrap(name, original, user_code_only))


def _patch_random(module: Any) -> None:
    _patch(module, "seed", "random.seed")


def _patch_numpy_random(module: Any) -> None:
    _patch(module, "seed", "numpy.random.seed")
    _patch(module, "default_rng", "numpy.random.default_rng", user_code_only=True)


def _patch_torch(module: Any) -> None:
    _patch(module, "manual_seed", "torch.manual_seed")
    cuda = sys.modules.get("torch.cuda")
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
_taken_before = [False]  # a run of this process has taken its seeds already

# Seeding calls after which torch's initial seed is the one they set (so not worth recording).
_SEEDS_TORCH = ("torch.", "lightning.", "transformers.", "accelerate.", "keras.")


def install() -> None:
    """Patch the seeding functions of the modules already imported; hook the others' import."""
    global _finder
    if _finder is not None:
        return
    _finder = _Finder()
    sys.meta_path.insert(0, _finder)
    for name in PATCHERS:
        module = sys.modules.get(name)
        if module is not None:
            _patch_safely(name, module)


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


def summarize(calls: list[tuple[str, Any, str, str]]) -> list[tuple[str, str]]:
    """``(api, seed)`` per seeding, in order: consecutive calls of one framework function with one
    seed are one seeding."""
    out: list[tuple[str, str]] = []
    previous: tuple[str, str, str] | None = None
    for function, value, module, caller in calls:
        api = _origin(function, module, caller)
        text = _text(value)
        key = (api, text, module + ":" + caller)
        if api != function and previous == key:
            continue
        previous = key
        out.append((api, text))
    return out


def take() -> tuple[list[tuple[str, str]], int]:
    """The seeds set since the previous ``take()`` (``(api, seed)``), and how many calls past
    ``MAX_CALLS`` were not kept."""
    with _lock:
        calls = _calls[:]
        del _calls[:len(calls)]  # a call appended meanwhile stays for the next run
        dropped, _dropped[0] = _dropped[0], 0
        first, _taken_before[0] = not _taken_before[0], True
    taken = summarize(calls)
    if first and not any(api.startswith(_SEEDS_TORCH) for api, _ in taken):
        initial = _torch_initial_seed()
        if initial is not None:
            taken.insert(0, ("torch.initial_seed", initial))
    return taken, dropped


def _torch_initial_seed() -> str | None:
    """The seed torch's default generator started from, when torch is imported (never imports it)."""
    torch = sys.modules.get("torch")
    initial_seed = getattr(torch, "initial_seed", None)
    if not callable(initial_seed):
        return None
    try:
        return _text(initial_seed())
    except Exception:  # torch half-imported, or a stand-in module
        return None
