"""``wandb.sdk.data_types.object_3d``: ``Object3D``, as W&B's module has it."""

from tracklet.compat.wandb.data_types import Object3D

__all__ = ["Object3D"]
