"""Modules tracklet uses only when the program has loaded them (pandas, matplotlib, plotly), looked
up without importing them."""

from __future__ import annotations

import sys
from types import ModuleType


def loaded(name: str) -> ModuleType | None:
    """Module ``name`` if it is imported, None if it isn't or is still being imported.

    ``sys.modules`` holds a module from the moment its import begins, so another thread's import
    in progress shows a module without most of its names: tracklet's own threads import pandas
    (pyarrow converting a logged table's rows does) while the training thread asks whether a value
    is a ``DataFrame``. Until that import is done no object of the module's classes exists, so the
    answer is "no", not ``AttributeError: partially initialized module 'pandas'`` (which dropped a
    ``wandb.plot`` chart logged right after a table)."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module
