"""``wandb.sdk.artifacts.artifact``: ``Artifact``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Artifact

__all__ = ["Artifact"]
