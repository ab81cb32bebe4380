"""``wandb.sdk.data_types.video``: ``Video``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Video

__all__ = ["Video"]
