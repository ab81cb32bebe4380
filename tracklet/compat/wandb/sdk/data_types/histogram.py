"""``wandb.sdk.data_types.histogram``: ``Histogram``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Histogram

__all__ = ["Histogram"]
