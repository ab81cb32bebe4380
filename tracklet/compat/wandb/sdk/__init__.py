"""``wandb.sdk``: the module paths frameworks import from (``wandb.sdk.lib.RunDisabled``,
``wandb.sdk.lib.config_util.ConfigError``, ``wandb.sdk.wandb_run.Run``)."""

from tracklet.compat.wandb.sdk import lib, wandb_config, wandb_run, wandb_settings
from tracklet.compat.wandb.wandb_settings import Settings

__all__ = ["Settings", "lib", "wandb_config", "wandb_run", "wandb_settings"]
