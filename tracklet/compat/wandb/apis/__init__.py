"""``wandb.apis``: the public read API (``wandb.Api``; ``PublicApi``, its older name), answered from
tracklet's data root."""

from tracklet.compat.wandb.apis import public
from tracklet.compat.wandb.apis.public import Api

PublicApi = Api

__all__ = ["Api", "PublicApi", "public"]
