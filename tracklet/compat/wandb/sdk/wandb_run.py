"""``wandb.sdk.wandb_run``: the run class."""

from tracklet.compat.wandb.wandb_run import Run, RunDisabled

__all__ = ["Run", "RunDisabled"]
