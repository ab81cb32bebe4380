"""``wandb.sdk.data_types.molecule``: ``Molecule``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Molecule

__all__ = ["Molecule"]
