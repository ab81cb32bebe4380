"""``wandb.sdk.wandb_config``: the config class."""

from tracklet.compat.wandb._config import Config

__all__ = ["Config"]
