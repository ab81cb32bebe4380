"""``wandb.sdk.data_types``: the module paths scripts import W&B's media and table types from
(type hints: ``from wandb.sdk.data_types.image import Image``)."""

from tracklet.compat.wandb.data_types import (
    Audio, Graph, Histogram, Html, Image, JoinedTable, Molecule, Object3D, PartitionedTable, Plotly, Table, Video,
)
from tracklet.compat.wandb.sdk.data_types import (
    audio, graph, histogram, html, image, molecule, object_3d, plotly, table, video,
)

__all__ = [
    "Audio", "Graph", "Histogram", "Html", "Image", "JoinedTable", "Molecule", "Object3D", "PartitionedTable", "Plotly",
    "Table", "Video", "audio", "graph", "histogram", "html", "image", "molecule", "object_3d", "plotly", "table", "video",
]
