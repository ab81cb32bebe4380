"""``wandb.sdk.data_types.plotly``: ``Plotly``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Plotly

__all__ = ["Plotly"]
