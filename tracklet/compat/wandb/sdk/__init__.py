"""``wandb.sdk``: the module paths frameworks and scripts import from (``wandb.sdk.lib.RunDisabled``,
``wandb.sdk.lib.config_util.ConfigError``, ``wandb.sdk.wandb_run.Run``, ``wandb.sdk.lib.runid.generate_id``,
``wandb.sdk.artifacts.artifact.Artifact``, ``wandb.sdk.data_types.image.Image`` and the other media types)."""

from tracklet.compat.wandb.sdk import artifacts, data_types, lib, wandb_config, wandb_run, wandb_settings
from tracklet.compat.wandb.wandb_settings import Settings

__all__ = ["Settings", "artifacts", "data_types", "lib", "wandb_config", "wandb_run", "wandb_settings"]
