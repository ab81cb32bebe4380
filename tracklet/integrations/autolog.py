"""``tracklet.autolog()``: attach tracklet to Lightning, Hugging Face, Keras, JAX and the OpenAI and
Anthropic clients with no code.

Each framework gets a post-import hook: when its module is imported (or right away if it already
was), one entry point is patched. Lightning's ``Trainer.__init__`` and Hugging Face's
``Trainer.__init__`` get a ``TrackletLogger``/``TrackletCallback`` appended after they ran;
Keras's ``Model.fit`` gets a ``TrackletCallback`` added to its callbacks; importing JAX starts
watching compilations; importing ``openai`` or ``anthropic`` makes their chat calls spans
(``tracklet/tracing/llm.py``). Nothing is added where a tracklet integration is already attached.

Patches are safe (the idea of MLflow's ``safe_patch``): the original function always runs,
exactly once, with the user's arguments if anything of ours fails, and its own exceptions and
result pass through untouched. A failure inside tracklet's part becomes one ``TrackletWarning``.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Any, Callable, Iterable

from tracklet.core import forksafe
from tracklet.core.encoder import TrackletWarning
from tracklet.core.modules import loaded

FRAMEWORKS = ("lightning", "huggingface", "keras", "jax", "openai", "anthropic")

_lock = forksafe.rlock()
_patches: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
_pending: dict[str, Callable[[Any], None]] = {}  # module name -> patcher run after it is imported
_finder: "_PostImportFinder | None" = None
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, TrackletWarning, stacklevel=3)


# The frameworks' own W&B integrations: under tracklet's W&B compatibility layer they record to
# tracklet already, so autolog adds nothing next to them.
_WANDB_INTEGRATIONS = frozenset({"WandbLogger", "WandbCallback"})


def _is_tracklet(obj: Any) -> bool:
    if getattr(type(obj), "_tracklet_integration", False):
        return True
    return type(obj).__name__ in _WANDB_INTEGRATIONS and getattr(loaded("wandb"), "_tracklet_compat", False)


# ---------------------------------------------------------------- safe patching


def _patch(owner: Any, name: str, make: Callable[[Any], Callable[..., Any]]) -> None:
    original = owner.__dict__.get(name, getattr(owner, name))
    if getattr(original, "__tracklet_original__", None) is not None:
        return  # already patched
    patched = make(original)
    functools.update_wrapper(patched, original)
    patched.__tracklet_original__ = original  # type: ignore[attr-defined]
    setattr(owner, name, patched)
    _patches.append((owner, name, original))


def _after_init(attach: Callable[[Any], None], framework: str) -> Callable[[Any], Callable[..., Any]]:
    """Wrap ``__init__``: run the original, then ``attach(self)``; a failure in attach warns."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            try:
                attach(self)
            except Exception as error:
                _warn_once(framework, f"tracklet autolog could not attach to {framework}: {error!r}; training goes on")

        return __init__

    return make


# ---------------------------------------------------------------- framework patchers


def _patch_lightning(module: Any) -> None:
    def attach(trainer: Any) -> None:
        if any(_is_tracklet(logger) for logger in trainer.loggers):
            return
        from tracklet.integrations.lightning import TrackletLogger

        trainer.loggers = [*trainer.loggers, TrackletLogger()]

    _patch(module.Trainer, "__init__", _after_init(attach, "lightning"))


def _patch_huggingface(module: Any) -> None:
    def attach(trainer: Any) -> None:
        if any(_is_tracklet(callback) for callback in trainer.callback_handler.callbacks):
            return
        from tracklet.integrations.huggingface import TrackletCallback

        trainer.add_callback(TrackletCallback())

    _patch(module.Trainer, "__init__", _after_init(attach, "huggingface"))


def _patch_keras(module: Any) -> None:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                callbacks = list(kwargs.get("callbacks") or [])
                if not any(_is_tracklet(callback) for callback in callbacks):
                    from tracklet.integrations.keras import TrackletCallback

                    kwargs = {**kwargs, "callbacks": [*callbacks, TrackletCallback()]}
            except Exception as error:
                _warn_once("keras", f"tracklet autolog could not attach to keras: {error!r}; training goes on")
            return original(self, *args, **kwargs)

        return fit

    _patch(module.Model, "fit", make)


def _patch_jax(module: Any) -> None:
    from tracklet.integrations.jax import watch_compilation

    watch_compilation()


def _patch_llm(provider: str) -> Callable[[Any], None]:
    """The LLM client's chat calls become spans (``tracklet/tracing/llm.py``)."""

    def patch(module: Any) -> None:
        from tracklet.tracing.llm import autopatch

        autopatch(provider)

    return patch


# The module whose import triggers each patch, and the patcher.
_TARGETS: dict[str, tuple[tuple[str, Callable[[Any], None]], ...]] = {
    "lightning": (("lightning.pytorch", _patch_lightning), ("pytorch_lightning", _patch_lightning)),
    "huggingface": (("transformers.trainer", _patch_huggingface),),
    "keras": (("keras", _patch_keras),),
    "jax": (("jax", _patch_jax),),
    "openai": (("openai", _patch_llm("openai")),),
    "anthropic": (("anthropic", _patch_llm("anthropic")),),
}


# ---------------------------------------------------------------- post-import hooks


def _run_patcher(name: str, patcher: Callable[[Any], None], module: Any) -> None:
    try:
        patcher(module)
    except Exception as error:
        _warn_once(name, f"tracklet autolog could not patch {name}: {error!r}; training goes on")


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        with _lock:
            patcher = _pending.pop(self._name, None)
        if patcher is not None:
            _run_patcher(self._name, patcher, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders, then wraps the loader
    so the patcher runs right after the module's code."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, fullname)
                return spec
        return None


def _when_imported(name: str, patcher: Callable[[Any], None]) -> None:
    global _finder
    module = sys.modules.get(name)  # any state: a module mid-import is patched now (no later hook sees it)
    if module is not None:
        _run_patcher(name, patcher, module)
        return
    with _lock:
        _pending[name] = patcher
        if _finder is None:
            _finder = _PostImportFinder()
            sys.meta_path.insert(0, _finder)


def autolog(frameworks: Iterable[str] | str | None = None, *, disable: bool = False) -> None:
    """Attach tracklet to the given frameworks (default: all of ``FRAMEWORKS``) when they are used.

    The integrations log into the active run (``tracklet.run``), or start one when there is
    none. ``autolog(disable=True)`` removes every patch and pending hook. With the environment
    switch ``TRACKLET_WANDB_COMPAT=1``, ``import wandb`` also resolves to ``tracklet.compat.wandb``
    from here on (see docs/wandb-compat.md).
    """
    global _finder
    if disable:
        with _lock:
            for owner, name, original in reversed(_patches):
                setattr(owner, name, original)
            _patches.clear()
            _pending.clear()
            llm = loaded("tracklet.tracing.llm")
            if llm is not None:
                llm.unpatch()
            if _finder is not None and _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
            _finder = None
        return
    from tracklet.compat import install_wandb, wandb_switch_on

    if wandb_switch_on():
        install_wandb()
    if frameworks is None:
        chosen = list(FRAMEWORKS)
    else:
        chosen = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    unknown = [f for f in chosen if f not in _TARGETS]
    if unknown:
        raise ValueError(f"autolog: unknown framework(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FRAMEWORKS)}")
    for framework in chosen:
        for module_name, patcher in _TARGETS[framework]:
            _when_imported(module_name, patcher)
