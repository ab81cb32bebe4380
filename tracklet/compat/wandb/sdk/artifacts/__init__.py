"""``wandb.sdk.artifacts``: the module path scripts import ``Artifact`` from (type hints:
``from wandb.sdk.artifacts.artifact import Artifact``)."""

from tracklet.compat.wandb.data_types import Artifact
from tracklet.compat.wandb.sdk.artifacts import artifact

__all__ = ["Artifact", "artifact"]
