"""Compatibility layers that let code written for other trackers record to tracklet.

``tracklet.compat.wandb`` is W&B's public Python API mapped onto tracklet (docs/wandb-compat.md).
Use it directly (``import tracklet.compat.wandb as wandb``), or make ``import wandb`` resolve to
it for a whole process, frameworks' own W&B integrations included:

- ``tracklet run --wandb -- python train.py`` (or ``TRACKLET_WANDB_COMPAT=1 tracklet run -- ...``);
- ``install_wandb()`` at the top of a script, before anything imports ``wandb``;
- ``TRACKLET_WANDB_COMPAT=1`` with ``tracklet.autolog()``.

Importing this package is cheap: it imports neither the compat module nor any framework.
"""

from __future__ import annotations

ENV_SWITCH = "TRACKLET_WANDB_COMPAT"
# The project of a W&B run started without one (W&B's own name), in the compat layer and the importer.
WANDB_DEFAULT_PROJECT = "uncategorized"


def install_wandb(*, propagate: bool = True) -> None:
    """Make ``import wandb`` resolve to :mod:`tracklet.compat.wandb` in this process (and, with
    ``propagate``, in the Python subprocesses it starts, e.g. DDP workers); see
    :func:`tracklet.compat.redirect.install`."""
    from tracklet.compat.redirect import install

    install(propagate=propagate)


def uninstall_wandb() -> None:
    """Undo :func:`install_wandb` for this process (modules already imported stay imported)."""
    from tracklet.compat.redirect import uninstall

    uninstall()


def wandb_switch_on(environ: "dict[str, str] | None" = None) -> bool:
    """Whether the ``TRACKLET_WANDB_COMPAT`` environment switch is on (1, true, yes, on)."""
    import os

    value = (os.environ if environ is None else environ).get(ENV_SWITCH, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


__all__ = ["ENV_SWITCH", "install_wandb", "uninstall_wandb", "wandb_switch_on"]
