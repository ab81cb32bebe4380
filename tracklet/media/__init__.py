"""Logged media: ``tracklet.Image``, ``Audio``, ``Video``, ``Html``, ``Object3D``, ``Molecule``,
``Plotly`` (docs/media.md). The constructors copy the caller's data; ``tracklet.media.worker`` encodes and
stores it off the training thread as blobs in the artifacts' content-addressed store;
``tracklet.media.read`` reads it back (``RecordedRun.media``/``images``).

Tables (docs/tables.md): ``tracklet.Table`` (``table.py``), rows to Arrow (``table_arrow.py``),
Parquet fragments stored by the same worker (``table_store.py``), and DuckDB queries over them
(``table_read.py``, ``query.py``, ``query_filter.py``: ``RecordedRun.table``)."""

from tracklet.media.audio import Audio
from tracklet.media.base import Media, MediaError
from tracklet.media.files import Html, Molecule, Object3D
from tracklet.media.image import Image
from tracklet.media.plotly import Plotly
from tracklet.media.table import Table
from tracklet.media.video import Video

__all__ = ["Audio", "Html", "Image", "Media", "MediaError", "Molecule", "Object3D", "Plotly", "Table", "Video"]
