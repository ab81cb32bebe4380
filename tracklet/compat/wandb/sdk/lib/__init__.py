"""``wandb.sdk.lib``: ``RunDisabled`` (Lightning's ``WandbLogger`` checks it) and ``config_util``."""

from tracklet.compat.wandb.sdk.lib import config_util, runid
from tracklet.compat.wandb.wandb_run import RunDisabled

__all__ = ["RunDisabled", "config_util", "runid"]
