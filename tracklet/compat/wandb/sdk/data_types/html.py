"""``wandb.sdk.data_types.html``: ``Html``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Html

__all__ = ["Html"]
