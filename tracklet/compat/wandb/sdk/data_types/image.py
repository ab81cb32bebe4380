"""``wandb.sdk.data_types.image``: ``Image``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Image

__all__ = ["Image"]
