"""``wandb.sdk.data_types.audio``: ``Audio``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Audio

__all__ = ["Audio"]
