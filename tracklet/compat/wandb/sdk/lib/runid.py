"""``wandb.sdk.lib.runid``: ``generate_id``, as W&B's module has it."""

from tracklet.compat.wandb.util import generate_id

__all__ = ["generate_id"]
