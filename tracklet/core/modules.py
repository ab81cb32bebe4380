"""Modules tracklet uses only when the program has loaded them (numpy, pandas, matplotlib, plotly,
torch, ...), looked up without importing them.

The one rule: code that reads names from a module it did not import itself takes the module from
:func:`loaded`, never from ``sys.modules`` directly. ``name in sys.modules`` stays fine as a gate
that only decides whether to look further (the look itself goes through :func:`loaded`), and so
do the running program's and the import system's own modules (``__main__``, ``_frozen_importlib``),
which are read whatever their state. tests/test_modules.py holds tracklet to this."""

from __future__ import annotations

import sys
from types import ModuleType

# Modules seen fully imported, by name: the spec is checked again only when ``sys.modules`` holds
# another object under that name (a module removed and imported anew, a test's stand-in).
_done: dict[str, ModuleType] = {}


def loaded(name: str) -> ModuleType | None:
    """Module ``name`` if it is imported, None if it isn't or is still being imported.

    ``sys.modules`` holds a module from the moment its import begins, so another thread's import
    in progress shows a module without most of its names: tracklet's own threads import pandas
    (pyarrow converting a logged table's rows does) while the training thread asks whether a value
    is a ``DataFrame``, and the sender thread asks for numpy to encode a column while the training
    thread imports it. Until that import is done no object of the module's classes exists, so the
    answer is "no", not ``AttributeError: partially initialized module 'pandas'`` (which dropped a
    ``wandb.plot`` chart logged right after a table, and a whole batch of rows on the sender).

    Cost: one dict lookup, plus one more once the module is known imported; the spec
    (``__spec__._initializing``, set by importlib while the module's code runs) is read only until
    then."""
    module = sys.modules.get(name)
    if module is None or _done.get(name) is module:
        return module
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    _done[name] = module
    return module
