"""``wandb.sdk.lib.config_util``: ``ConfigError`` (Hugging Face's ``WandbCallback`` catches it)."""

from tracklet.compat.wandb._config import ConfigError

__all__ = ["ConfigError"]
