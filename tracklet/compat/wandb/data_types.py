"""W&B's data types. ``Histogram`` is recorded (it is a ``tracklet.Histogram``); the media and
table types are accepted so code builds them as usual, and a logged key holding one is left out of
the row with one warning per type: tracklet does not record media or tables yet. ``Artifact`` is a
``tracklet.Artifact`` (docs/artifacts.md).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from tracklet.artifacts.artifact import Artifact as _TrackletArtifact
from tracklet.compat.wandb._messages import not_supported
from tracklet.core.values import Histogram as _TrackletHistogram


class WBValue:
    """Base of every W&B data type; ``log()`` leaves out values tracklet can't record."""

    _recorded = False

    @property
    def _type_name(self) -> str:
        return f"wandb.{type(self).__name__}"


class Histogram(WBValue):
    """``wandb.Histogram(sequence, num_bins=64)`` or ``wandb.Histogram(np_histogram=(counts, edges))``:
    recorded as a :class:`tracklet.Histogram` (binned here, when it is made)."""

    _recorded = True

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        if np_histogram is not None:
            self._tracklet = _TrackletHistogram(np_histogram=(np_histogram[0], np_histogram[1]))
        else:
            self._tracklet = _TrackletHistogram(sequence if sequence is not None else [], bins=min(int(num_bins), 512))

    @property
    def histogram(self) -> list[int]:
        """The counts per bin."""
        return self._tracklet.counts

    @property
    def bins(self) -> list[float]:
        """The bin edges (one more than counts)."""
        return self._tracklet.edges

    def to_tracklet(self) -> _TrackletHistogram:
        return self._tracklet


class _Media(WBValue):
    """A media object: kept only as far as code reads it back (caption), never recorded."""

    def __init__(self, data_or_path: Any = None, *args: Any, caption: str | None = None, **kwargs: Any) -> None:
        self._caption = caption

    @property
    def caption(self) -> str | None:
        return self._caption


class Image(_Media):
    pass


class Audio(_Media):
    pass


class Video(_Media):
    pass


class Html(_Media):
    pass


class Object3D(_Media):
    pass


class Molecule(_Media):
    pass


class Plotly(_Media):
    pass


class Graph(_Media):
    pass


class Table(WBValue):
    """``wandb.Table(columns=..., data=..., dataframe=...)``: rows can be added and read back
    (``add_data``, ``add_column``, ``get_column``), but a logged table is not recorded yet."""

    def __init__(self, columns: Sequence[str] | None = None, data: Sequence[Sequence[Any]] | None = None,
                 rows: Sequence[Sequence[Any]] | None = None, dataframe: Any = None, **kwargs: Any) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        self.data: list[list[Any]] = [list(row) for row in (data if data is not None else rows or [])]
        width = len(self.data[0]) if self.data else 0
        self.columns: list[str] = list(columns) if columns is not None else [f"col{i}" for i in range(width)]

    def add_data(self, *values: Any) -> None:
        self.data.append(list(values))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        self.columns.append(name)
        for row, value in zip(self.data, data):
            row.append(value)

    def get_column(self, name: str, convert_to: str | None = None) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.data]

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def __len__(self) -> int:
        return len(self.data)


class Artifact(_TrackletArtifact, WBValue):
    """``wandb.Artifact(name, type, ...)``: a :class:`tracklet.Artifact` (content-addressed,
    versioned, with lineage; docs/artifacts.md) that takes W&B's extra arguments. ``add(obj)`` of a
    W&B media object is accepted with a warning and stores nothing."""

    def __init__(self, name: str, type: str, description: str | None = None, metadata: dict | None = None,
                 incremental: bool = False, use_as: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, type, description=description, metadata=metadata)

    def add(self, obj: Any, name: str, **kwargs: Any) -> None:
        not_supported("Artifact.add()", f"{name!r} is not stored (tracklet does not record W&B media or tables yet)")

    def download(self, root: str | os.PathLike | None = None, allow_missing_references: bool = False,
                 skip_cache: Any = None, path_prefix: Any = None, *, link: bool = True, progress: Any = None,
                 **kwargs: Any) -> str:
        """W&B's signature (its extra options are accepted and ignored) over ``tracklet.Artifact.download``."""
        return super().download(root, link=link, progress=progress)

    def save(self, project: str | None = None, settings: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """With a run active, log this artifact to it; else store it as a version of ``project``."""
        from tracklet.core import lifecycle

        run = lifecycle.current()
        if run is not None and project is None:
            run.log_artifact(self)
        else:
            super().save(project)

    @classmethod
    def _wrap(cls, artifact: _TrackletArtifact) -> "Artifact":
        """A committed tracklet Artifact as W&B's type (same version, same store)."""
        if isinstance(artifact, cls) or artifact.state != "committed":
            return artifact  # type: ignore[return-value]
        assert artifact._store is not None
        return cls._from_version(artifact._store, artifact._info)  # type: ignore[return-value]


class _PlotValue(WBValue):
    """What ``wandb.plot.*`` returns: accepted, not recorded."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @property
    def _type_name(self) -> str:
        return f"wandb.plot.{self.kind}"


def is_unrecorded(value: Any) -> bool:
    """A W&B data type (or a list of them) that ``log()`` leaves out."""
    if isinstance(value, WBValue):
        return not value._recorded
    if type(value) in (list, tuple) and value and isinstance(value[0], WBValue):
        return not value[0]._recorded
    return False


def type_label(value: Any) -> str:
    item = value[0] if type(value) in (list, tuple) else value
    return item._type_name


__all__ = [
    "Artifact", "Audio", "Graph", "Histogram", "Html", "Image", "Molecule", "Object3D", "Plotly", "Table",
    "Video", "WBValue", "is_unrecorded", "type_label",
]
