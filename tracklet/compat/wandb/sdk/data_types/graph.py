"""``wandb.sdk.data_types.graph``: ``Graph``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Graph

__all__ = ["Graph"]
