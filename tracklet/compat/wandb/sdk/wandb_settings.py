"""``wandb.sdk.wandb_settings``: the settings class."""

from tracklet.compat.wandb.wandb_settings import Settings

__all__ = ["Settings"]
