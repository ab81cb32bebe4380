"""``wandb.apis``: the public read API (``wandb.Api``), answered from tracklet's data root."""

from tracklet.compat.wandb.apis import public
from tracklet.compat.wandb.apis.public import Api

__all__ = ["Api", "public"]
