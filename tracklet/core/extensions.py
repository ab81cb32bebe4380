"""Parts of tracklet above the core that a run calls into, plugged in from above.

The core imports nothing from the layers above it (tests/test_layers.py). Where a ``Run`` method
needs one of them (``log_artifact`` needs ``tracklet.artifacts``), the package's ``__init__``,
which every import of tracklet runs first, registers a loader here; the core calls
:func:`load` when the method is first used, so nothing is imported before that.
"""

from __future__ import annotations

from typing import Any, Callable

_LOADERS: dict[str, Callable[[], Any]] = {}


def provide(name: str, loader: Callable[[], Any]) -> None:
    """Register ``loader``, which imports and returns the part called ``name``."""
    _LOADERS[name] = loader


def load(name: str) -> Any:
    """The part called ``name`` (e.g. ``"artifacts"``: ``tracklet.artifacts.run_hooks``)."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise RuntimeError(f"tracklet's {name} are not available: import tracklet first")
    return loader()
