"""W&B's data types. ``Histogram`` is recorded (it is a ``tracklet.Histogram``); ``Image``,
``Audio``, ``Video``, ``Html``, ``Object3D`` and ``Molecule`` are tracklet's media types
(``tracklet.media``, docs/media.md) with W&B's arguments, masks and boxes included: recorded off the
training thread; ``Table`` is a ``tracklet.Table`` (docs/tables.md), recorded as Parquet fragments.
``Plotly`` is a ``tracklet.Plotly`` (the figure's JSON); matplotlib figures, logged as they are or
in ``Image``/``Plotly``, are recorded as images (``recordable``). ``Graph`` is accepted so code
builds it as usual, and a logged key holding one is left out of the row with one warning. ``Artifact`` is a ``tracklet.Artifact``
(docs/artifacts.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any, Sequence

from tracklet.artifacts.artifact import Artifact as _TrackletArtifact
from tracklet.artifacts.manifest import ManifestEntry as _ManifestEntry
from tracklet.compat.wandb._messages import warn_once
from tracklet.core.modules import loaded
from tracklet.core.values import Histogram as _TrackletHistogram
from tracklet.errors import ArtifactError, TableError
from tracklet.media import Audio as _Audio
from tracklet.media import Html as _Html
from tracklet.media import Image as _Image
from tracklet.media import Molecule as _Molecule
from tracklet.media import Object3D as _Object3D
from tracklet.media import Plotly as _Plotly
from tracklet.media import figures as _figures
from tracklet.media.base import Media as _MediaBase
from tracklet.media import Video as _Video
from tracklet.media.table import Table as _TrackletTable
from tracklet.media.table import is_frame


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


class Image(_Image, WBValue):
    """``wandb.Image(data_or_path, mode=, caption=, grouping=, classes=, boxes=, masks=,
    file_type=, normalize=)``: a :class:`tracklet.Image` (recorded, masks and boxes included)."""

    _recorded = True

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None, masks: Any = None,
                 file_type: str | None = None, normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(data_or_path, mode=mode, caption=caption, grouping=grouping, classes=classes,
                         boxes=boxes, masks=masks, file_type=file_type, normalize=normalize)

    @property
    def image(self) -> Any:
        """W&B's ``Image.image``: the Pillow image (pixels as they are recorded), made when first
        read; for an image read back from a table or an artifact, its stored file."""
        pil = self.__dict__.get("_pil_image")
        if pil is None:
            pil = self.__dict__["_pil_image"] = self._pil()
        return pil

    def to_data_array(self) -> list[Any]:
        """W&B's ``to_data_array``: the pixels as a list of rows (a row a list of values, a value an
        int for a gray image, a tuple for RGB/RGBA), what ``Table.get_column(convert_to="numpy")``
        makes an array of."""
        import numpy as np

        array = np.asarray(self.image)
        rows = array.tolist()
        return rows if array.ndim == 2 else [[tuple(pixel) for pixel in row] for row in rows]


class Audio(_Audio, WBValue):
    """``wandb.Audio(data_or_path, sample_rate=, caption=)``: a :class:`tracklet.Audio`."""

    _recorded = True

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(data_or_path, sample_rate=sample_rate, caption=caption)


class Video(_Video, WBValue):
    """``wandb.Video(data_or_path, caption=, fps=, format=)``: a :class:`tracklet.Video`."""

    _recorded = True

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: float | None = None,
                 format: str | None = None, **kwargs: Any) -> None:
        super().__init__(data_or_path, caption=caption, fps=fps, format=format)


class Html(_Html, WBValue):
    """``wandb.Html(data, inject=True, data_is_not_path=False)``: a :class:`tracklet.Html`."""

    _recorded = True


class Object3D(_Object3D, WBValue):
    """``wandb.Object3D(data_or_path, caption=)`` (and ``from_file``, ``from_numpy``,
    ``from_point_cloud``): a :class:`tracklet.Object3D`."""

    _recorded = True


class Molecule(_Molecule, WBValue):
    """``wandb.Molecule(data_or_path, caption=)``: a :class:`tracklet.Molecule`."""

    _recorded = True


class Plotly(_Plotly, WBValue):
    """``wandb.Plotly(figure)``: a :class:`tracklet.Plotly` (the figure's JSON, drawn by the
    dashboard with a local plotly.js). A matplotlib figure, which W&B converts with plotly's
    ``mpl_to_plotly``, is recorded as the image it draws (``image_of``)."""

    _recorded = True

    def __init__(self, val: Any) -> None:
        if _figures.is_matplotlib(val):
            _MediaBase.__init__(self)
            self._image: Image | None = Image(val)
        else:
            self._image = None
            super().__init__(val)

    @classmethod
    def make_plot_media(cls, val: Any) -> "Image | Plotly":
        """W&B's helper: an ``Image`` of a matplotlib figure, else a ``Plotly``."""
        return Image(val) if _figures.is_matplotlib(val) else cls(val)


def is_dataframe(value: Any) -> bool:
    """``value`` is a pandas ``DataFrame`` (W&B's ``is_pandas_data_frame``; pandas is not imported)."""
    pandas = loaded("pandas")  # not one another thread is still importing (core/modules.py)
    return pandas is not None and isinstance(value, pandas.DataFrame)


def recordable(value: Any) -> Any:
    """What ``log()`` records for ``value``: a matplotlib figure (or ``pyplot``) becomes an
    ``Image``, a plotly figure a ``Plotly``, a ``Plotly`` made of a matplotlib figure its image, a
    pandas ``DataFrame`` a ``Table`` of it (as W&B's ``val_to_json`` makes one); anything else is
    returned as it is."""
    if is_dataframe(value):
        return Table(dataframe=value)
    if isinstance(value, Plotly):
        return value._image if value._image is not None else value
    if _figures.is_matplotlib(value):
        return Image(value)
    if _figures.is_plotly(value):
        return Plotly(value)
    return value


class Graph(_Media):
    pass


class JoinedTable(_Media):
    """``wandb.JoinedTable(table1, table2, join_key)``: two tables and the key (a column name, or
    ``[left, right]``) to join them on, as W&B's. Each side is a ``Table``, a ``PartitionedTable``,
    or a table entry of the artifact it is added to: its path (``"preds.table.json"``) or its entry
    (what ``artifact.add(table, "preds")`` returns). Stored in an artifact as W&B stores it
    (``artifact.add(joined, name)``: ``<name>.joined-table.json`` naming the two tables' files, a
    ``Table`` or ``PartitionedTable`` added to the artifact if it isn't there yet, an entry checked
    to be a table the artifact holds) and read back by ``artifact.get(name)``, its tables in
    ``_table1``/``_table2``. Logged to a run it is left out of the row with one warning (W&B logs
    only a reference to an artifact's copy); join logged tables in the dashboard or with
    ``tracklet.media.table_views`` (docs/tables.md)."""

    def __init__(self, table1: Any, table2: Any, join_key: Any) -> None:
        super().__init__()
        for which, table in (("table1", table1), ("table2", table2)):
            problem = _joined_side_problem(table)
            if problem is not None:
                raise ValueError(f"JoinedTable {which} should be an artifact path to a table or wandb.Table "
                                 f"object; got {problem}")
        keys = [join_key] if isinstance(join_key, str) else join_key
        if (not isinstance(keys, (list, tuple)) or len(keys) not in (1, 2)
                or not all(isinstance(key, str) for key in keys)):
            raise ValueError(f"JoinedTable join_key should be a column name or a list of two; got {join_key!r}")
        self._table1, self._table2, self._join_key = table1, table2, join_key


def _joined_side_problem(table: Any) -> str | None:
    """What keeps ``table`` from being a side of a ``JoinedTable`` (W&B takes a ``Table``, a
    ``PartitionedTable``, a path ending ``.table.json`` or an entry whose path does), in words;
    None when it may be one."""
    if isinstance(table, (_TrackletTable, PartitionedTable)):
        return None
    path = table if isinstance(table, str) else getattr(table, "path", None)
    if not isinstance(path, str):
        return type(table).__name__
    if path.endswith(".table.json"):
        return None
    what = repr(path[:200]) if isinstance(table, str) else f"{type(table).__name__} {path[:200]!r}"
    return f"{what}, which is not a table's path (a table entry's ends with '.table.json')"


class PartitionedTable(_Media):
    """``wandb.PartitionedTable(parts_path)``: a table made of the tables (``.table.json``) under
    the directory ``parts_path`` of an artifact, as W&B's. ``artifact.add(partitioned, name)``
    stores W&B's ``<name>.partitioned-table.json`` (``{"_type": "partitioned-table",
    "parts_path"}``); ``artifact.get(name)`` gives one whose ``iterrows()`` reads the parts one at a
    time. Logged to a run: not recorded (one warning)."""

    def __init__(self, parts_path: str = "") -> None:
        super().__init__()
        self.parts_path = parts_path
        self._parts: list[str] = []  # the part tables' paths, once read back from an artifact
        self._artifact: Any = None

    def iterrows(self) -> Iterator[tuple[int, list[Any]]]:
        """``(index, row)`` of every part's rows in turn (a part read when reached); the parts must
        have the same columns (W&B's ``ValueError`` otherwise)."""
        from tracklet.compat.wandb._artifact_objects import get_object

        columns = None
        index = 0
        for path in self._parts:
            part = get_object(self._artifact, path, tables_only=True)  # never a join's sides, nor media
            if not isinstance(part, Table):  # a document of the artifact's: in words, not AttributeError
                what = "a partitioned table" if isinstance(part, PartitionedTable) else "no table document"
                raise ValueError(f"PartitionedTable {self.parts_path!r}: part {path!r} of the artifact is not a "
                                 f"table ({what})")
            if columns is None:
                columns = part.columns
            elif part.columns != columns:
                raise ValueError(f"Table parts have non-matching columns. {columns} != {part.columns}")
            for _, row in part.iterrows():
                yield index, row
                index += 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartitionedTable) and other.parts_path == self.parts_path

    __hash__ = _Media.__hash__


class Classes(WBValue):
    """``wandb.Classes([{"id": 1, "name": "cat"}, ...])``: the class set of an ``Image``'s masks and
    boxes (``Image(..., classes=wandb.Classes(...))``), as W&B's."""

    def __init__(self, class_set: Sequence[dict[str, Any]]) -> None:
        self._class_set = [dict(entry) for entry in class_set]

    def __repr__(self) -> str:
        return f"<wandb.Classes {self._class_set!r}>"


_WANDB_DEFAULT_COLUMNS = ("Input", "Output", "Expected")


def _first_row(data: Any) -> Any:
    """The first row of ``data`` (rows, or a 2-D numpy array), or None when it has none."""
    if data is None:
        return None
    if type(data).__module__.partition(".")[0] == "numpy":
        return data[0] if getattr(data, "ndim", 0) == 2 and len(data) else None
    try:
        return data[0] if len(data) else None
    except (TypeError, KeyError, IndexError):
        return None


class Table(_TrackletTable, WBValue):
    """``wandb.Table(columns=..., data=..., dataframe=..., log_mode=...)``: a
    :class:`tracklet.Table` (``add_data``, ``add_column``, ``get_column``, ``get_dataframe``,
    ``get_index``, ``iterrows``, ``data``); logged, it is recorded as Parquet fragments and read
    back with ``tracklet.Api().run(path).table(key)`` (docs/tables.md). W&B's ``dtype`` and
    ``optional`` are accepted and not used: column types are inferred. ``allow_mixed_types=True``
    stores a column whose values Arrow can't give one type as text (each value's ``str()``), where
    the default stores the values of another type than the column's first as nulls."""

    _recorded = True
    _nan_columns: frozenset[str] = frozenset()  # a pandas frame's float columns (their nulls were NaN)
    _frame_rows = 0  # the frame's rows (the first held)

    def __init__(self, columns: Sequence[str] | None = None, data: Any = None, rows: Any = None,
                 dataframe: Any = None, dtype: Any = None, optional: Any = True, allow_mixed_types: bool = False,
                 log_mode: str = "IMMUTABLE") -> None:
        self._mixed_as_text = bool(allow_mixed_types)
        if is_frame(data) and (dataframe is None or is_frame(dataframe)):
            # W&B's ``Table(data=df)``: the frame is the dataframe (``dataframe=`` first, as W&B reads them)
            dataframe, data = (data if dataframe is None else dataframe), None
        if dataframe is not None:
            columns = None  # W&B's table of a frame has the frame's columns, whatever ``columns=`` says
        if columns is None and dataframe is None:
            given = data if data is not None else rows
            first = _first_row(given)
            if first is None or len(first) == len(_WANDB_DEFAULT_COLUMNS):
                # W&B's default columns (its Table(), and rows of three values without names), so
                # add_data(x, y, z) and get_column("Input") work as they do there; rows of another
                # width, which W&B refuses, keep tracklet's col0, col1, ...
                columns = list(_WANDB_DEFAULT_COLUMNS)
        super().__init__(columns=columns, data=data, rows=rows, dataframe=dataframe, log_mode=log_mode)
        # A pandas frame's NaN cells are stored as nulls (Arrow's from_pandas; what is recorded stays
        # so), but W&B's get_column and data give them back as nan: the frame's float columns, and
        # its row count (its rows come first), say which nulls were NaN.
        if (dataframe is not None and type(dataframe).__module__.partition(".")[0] == "pandas"
                and self._arrow is not None):
            import numpy as np

            self._nan_columns = frozenset(str(name) for name, kind in dataframe.dtypes.items()
                                          if isinstance(kind, np.dtype) and kind.kind == "f")
            self._frame_rows = self._arrow.num_rows

    def _frame_rows_held(self) -> int:
        """How many of the rows held are the frame's (an INCREMENTAL log lets go of rows from the front)."""
        return max(0, self._frame_rows - self._released)

    @property
    def data(self) -> list[list[Any]]:
        """W&B's ``data``: the rows held, as lists; a NaN of the frame the table was made of is nan."""
        rows = super().data
        indices = [index for index, name in enumerate(self._columns) if name in self._nan_columns]
        if indices:
            import math

            for row in rows[:self._frame_rows_held()]:
                for index in indices:
                    if row[index] is None:
                        row[index] = math.nan
        return rows

    def iterrows(self) -> Iterator[tuple[int, list[Any]]]:
        """``(index, row)`` for each row held, as W&B's."""
        yield from enumerate(self.data)

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        """W&B's ``get_column``: the column's values; with ``convert_to="numpy"`` an array of them,
        an image cell as its pixels (``Image.to_data_array()``, as W&B converts every cell that has
        one), so a column of same-sized images is one N×H×W(×C) array. Other media cells stay
        objects. A NaN of the pandas frame the table was made of is nan (as W&B's), though stored
        as null."""
        values = super().get_column(name, convert_to)
        if convert_to is None and name in self._nan_columns:  # the frame's NaN: nan, as W&B's
            import math

            held = self._frame_rows_held()
            return [math.nan if value is None and index < held else value for index, value in enumerate(values)]
        if convert_to != "numpy" or getattr(values, "dtype", None) is None or values.dtype != object:
            return values
        import numpy as np

        cells = [value.to_data_array() if isinstance(value, Image) else value for value in values]
        if not any(isinstance(value, Image) for value in values):
            if len(values) and all(isinstance(value, np.ndarray) for value in values):
                # a list column (embeddings): W&B's np.array(values) stacks same-length rows into
                # one N×D array; Arrow's to_numpy gives an object array of N arrays
                try:
                    return np.array([value.tolist() for value in values])
                except ValueError:  # rows of different lengths: one array each, as Arrow gives them
                    return values
            return values
        try:
            return np.array(cells)
        except ValueError:  # images of different sizes: one array each (W&B raises here)
            return np.array([np.array(cell) if isinstance(value, Image) else cell
                             for cell, value in zip(cells, values)] + [None], dtype=object)[:-1]

    def add_computed_columns(self, fn: Any) -> "Table":
        """W&B's ``add_computed_columns``: ``fn(index, row)`` (``row`` a dict by column name)
        returns a dict of new columns' values for that row; every column any answer names is
        added, in the order first named (a row whose answer lacks one gets None). Returns the table."""
        names = self.columns
        computed = [fn(index, dict(zip(names, row))) for index, row in self.iterrows()]
        if not all(isinstance(values, dict) for values in computed):
            raise TypeError("add_computed_columns: fn must return a dict of column name to value for every row")
        for name in dict.fromkeys(name for values in computed for name in values):
            self.add_column(name, [values.get(name) for values in computed])
        return self

    def cast(self, col_name: str, dtype: Any, optional: bool = False) -> None:
        """W&B's ``cast``: accepted, nothing to do (column types are inferred when logged)."""
        if col_name not in self.columns:
            raise TableError(f"cast: no column {col_name!r}; columns: {', '.join(self.columns)}")


@dataclasses.dataclass(frozen=True)
class ArtifactManifestEntry(_ManifestEntry):
    """W&B's ``ArtifactManifestEntry``: a manifest entry of a ``wandb.Artifact`` that can fetch
    its file (``download``) and has W&B's ``File`` name for its path (``name``)."""

    artifact: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, entry: _ManifestEntry, artifact: Any) -> "ArtifactManifestEntry":
        return cls(entry.path, entry.digest, entry.size, entry.ref, entry.extra, artifact)

    @property
    def name(self) -> str:
        return self.path

    @property
    def local_path(self) -> None:
        """W&B's ``local_path``: the file added from disk; None here (a reference, or a stored
        version's entry: ``download()`` gives the path it writes)."""
        return None

    birth_artifact_id = None

    def download(self, root: str | os.PathLike | None = None, skip_cache: Any = None, **kwargs: Any) -> str:
        """Fetch this file alone (checked against its digest) under ``root`` (default: where the
        artifact's ``download()`` puts its files) and return its path."""
        if self.artifact is None or self.artifact._state != "committed":
            raise ArtifactError(f"file {self.path!r} belongs to an artifact that is not stored yet: log it and "
                                "wait() first")
        return self.artifact.download_file(self.path, root)

    def ref_target(self) -> str:
        """The reference's URI (``ValueError`` for a stored file, as W&B)."""
        if self.ref is None:
            raise ValueError(f"file {self.path!r} is stored in the artifact, not a reference")
        return self.ref


class AddedFileEntry:
    """What ``wandb.Artifact.add_file`` returns, as W&B's ``ArtifactManifestEntry``: ``path``
    (``name``), ``local_path`` (the absolute path added), ``size`` (the file's size now), ``ref``
    (None: a stored file), ``extra`` and ``digest``. tracklet reads an added file when the artifact
    is stored, not when it is added, so ``digest`` is ``""`` until then (as ``artifact.files()``
    lists a draft's) and the stored file's digest once the artifact is logged and stored
    (``wait()``). ``download()`` fetches the stored file, as a read-back entry's."""

    ref: str | None = None
    birth_artifact_id: str | None = None

    def __init__(self, artifact: Any, path: str, local_path: str, skip_cache: bool = False) -> None:
        self.artifact = artifact
        self.path = path
        self.local_path = local_path
        self.skip_cache = bool(skip_cache)
        self.extra: dict[str, Any] = {}
        try:
            self._size = os.stat(local_path).st_size
        except OSError:
            self._size = -1

    @property
    def name(self) -> str:
        return self.path

    def _stored(self) -> _ManifestEntry | None:
        if self.artifact._state != "committed":
            return None
        try:
            return self.artifact.get_entry(self.path)
        except KeyError:
            return None

    @property
    def digest(self) -> str:
        stored = self._stored()
        return "" if stored is None else stored.digest

    @property
    def size(self) -> int:
        stored = self._stored()
        return self._size if stored is None else stored.size

    def download(self, root: str | os.PathLike | None = None, skip_cache: Any = None, **kwargs: Any) -> str:
        """Fetch the stored file (checked against its digest) under ``root``; the artifact must be stored."""
        stored = self._stored()
        if stored is None:
            raise ArtifactError(f"file {self.path!r} belongs to an artifact that is not stored yet: log it and "
                                "wait() first")
        return ArtifactManifestEntry.of(stored, self.artifact).download(root)

    def ref_target(self) -> str:
        """As W&B: a stored file is not a reference (``ValueError``)."""
        raise ValueError(f"file {self.path!r} is stored in the artifact, not a reference")

    def __repr__(self) -> str:
        return f"ArtifactManifestEntry(path={self.path!r}, local_path={self.local_path!r}, digest={self.digest!r})"


class Artifact(_TrackletArtifact, WBValue):
    """``wandb.Artifact(name, type, ...)``: a :class:`tracklet.Artifact` (content-addressed,
    versioned, with lineage; docs/artifacts.md) that takes W&B's extra arguments; ``add(obj, name)`` and
    ``get(name)`` store and read back a ``Table`` or media object as W&B does."""

    def __init__(self, name: str, type: str, description: str | None = None, metadata: dict | None = None,
                 incremental: bool = False, use_as: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, type, description=description, metadata=metadata, incremental=incremental)
        self._name_versioned = False  # W&B names a logged artifact ``name:vN`` once wait() returns
        self._distributed_id: str | None = None

    def wait(self, timeout: float | None = None) -> "Artifact":
        """Block until the version is stored (``tracklet.Artifact.wait``); from then on ``name``
        carries its version, as W&B's does after ``wait()``."""
        super().wait(timeout)
        self._name_versioned = True
        return self

    @classmethod
    def _from_version(cls, store: Any, info: Any) -> "Artifact":
        """A stored version read back: named with its version at once, as W&B's."""
        artifact = super()._from_version(store, info)
        artifact._name_versioned = True  # type: ignore[attr-defined]
        return artifact  # type: ignore[return-value]

    def add_file(self, local_path: str | os.PathLike, name: str | None = None, is_tmp: bool | None = False,
                 skip_cache: bool | None = False, policy: str | None = None, overwrite: bool = False,
                 **kwargs: Any) -> Any:
        """W&B's signature. ``policy="mutable"`` snapshots the file now; by default (and with
        ``"immutable"``) it is read when the artifact is stored, after ``log_artifact`` returns,
        so no second copy of it is made (W&B's default copies every file first). Returns the
        entry added (``AddedFileEntry``: ``path``, ``local_path``, ``size``, ``digest``...), as
        W&B's returns its ``ArtifactManifestEntry`` (``tracklet.Artifact.add_file`` returns the name)."""
        path = self._with_policy(super().add_file, local_path, name, policy)
        return AddedFileEntry(self, path, os.path.abspath(os.fspath(local_path)), bool(skip_cache))

    def add_dir(self, local_path: str | os.PathLike, name: str | None = None, skip_cache: bool | None = False,
                policy: str | None = None, merge: bool = False, **kwargs: Any) -> None:
        """W&B's signature; ``policy`` as for ``add_file``."""
        self._with_policy(super().add_dir, local_path, name, policy)

    def _with_policy(self, add: Any, local_path: Any, name: Any, policy: str | None) -> Any:
        """``add(..., policy=)``; a snapshot that fails (a full temporary directory) falls back,
        with one warning, to reading the file when the artifact is stored: frameworks call this
        from training callbacks, which must not fail for it."""
        if policy != "mutable":
            return add(local_path, name, policy=policy or "immutable")
        before = dict(self._pending)
        try:
            return add(local_path, name, policy="mutable")
        except ArtifactError as error:
            if "can't snapshot" not in str(error):
                raise
            self._pending, self._dirs = before, None
            warn_once("artifact-snapshot", f"{error}; the file is read when the artifact is stored instead "
                                           "(don't change it before artifact.wait())")
            return add(local_path, name, policy="immutable")

    def add_reference(self, uri: Any, name: Any = None, checksum: bool = True,
                      max_objects: int | None = None) -> list[Any]:
        """W&B's ``add_reference``: returns the entries added (``path``, ``ref``, ``digest``,
        ``size``, ``extra``)."""
        names = super().add_reference(str(uri), None if name is None else str(name), checksum, max_objects)
        entries = {entry.path: entry for entry in self.files()}
        return [entries[added] for added in names]

    def add(self, obj: Any, name: str, overwrite: bool = False, **kwargs: Any) -> Any:
        """W&B's ``add``: a ``Table`` or media object stored under ``name`` as W&B stores it
        (``<name>.table.json`` and the media files; ``_artifact_objects``); returns its entry."""
        from tracklet.compat.wandb._artifact_objects import add_object

        path = add_object(self, obj, name)
        try:
            return self.get_entry(path)
        except KeyError:  # a draft lists its files once stored
            return path

    def get(self, name: str) -> Any:
        """W&B's ``get``: the ``Table`` or media object ``add`` stored under ``name``, or None."""
        from tracklet.compat.wandb._artifact_objects import get_object

        return get_object(self, name)

    def download(self, root: str | os.PathLike | None = None, allow_missing_references: bool = False,
                 skip_cache: Any = None, path_prefix: Any = None, multipart: Any = None, *, link: bool = True,
                 progress: Any = None, **kwargs: Any) -> str:
        """W&B's signature over ``tracklet.Artifact.download``: ``allow_missing_references``
        skips references whose object is gone, ``path_prefix`` downloads only the files whose
        path starts with it; ``skip_cache`` and ``multipart`` are accepted and ignored."""
        return super().download(root, link=link, progress=progress, allow_missing_references=allow_missing_references,
                                path_prefix=path_prefix)

    def files(self, names: Sequence[str] | None = None, per_page: int = 50) -> list[Any]:
        """W&B's ``files``: the entries (``name``, ``path``, ``size``, ``digest``, ``ref``;
        ``download(root)``), of ``names`` only if given."""
        wanted = None if names is None else set(names)
        return [ArtifactManifestEntry.of(entry, self) for entry in super().files()
                if wanted is None or entry.path in wanted]

    @property
    def name(self) -> str:
        """W&B's ``name``: the collection's name (``mnist``) until ``wait()`` returns the stored
        version, then ``mnist:v0``, as W&B sets it (a version read back is named so at once); a
        version read through a registry collection gives that collection's name and version.
        ``tracklet.Artifact.name`` stays the collection's name."""
        collection = _TrackletArtifact.name.fget(self)  # type: ignore[attr-defined]
        return f"{collection}:{self.version}" if self._versioned() else collection

    @property
    def source_name(self) -> str:
        """W&B's ``source_name``: the name of the artifact the version was logged to, with its own
        version once named (``mnist:v0``; for a registry version, what it links to)."""
        return f"{self._name}:{self.source_version}" if self._versioned() else self._name

    def _versioned(self) -> bool:
        """Whether ``name`` carries the version: stored, and waited for or read back (not while a
        worker may commit it behind the caller: the name must not change between two reads)."""
        return self._name_versioned and self._state == "committed"

    @property
    def id(self) -> str | None:
        """A stable id of the version (``project/name:vN``; W&B's is an opaque string), None for a draft."""
        return self.qualified_name if self._state == "committed" else None

    @property
    def entity(self) -> None:
        """tracklet has no entities (W&B's team or user): None."""
        return None

    @property
    def created_at(self) -> str:  # type: ignore[override]
        """When the version was stored, as W&B gives it: an ISO 8601 string (UTC); the epoch
        seconds are ``tracklet.Artifact.created_at``."""
        return _iso_utc(_TrackletArtifact.created_at.fget(self))  # type: ignore[attr-defined]

    @property
    def updated_at(self) -> str:
        """``created_at``: a stored version never changes (its aliases aside)."""
        return self.created_at

    @property
    def file_count(self) -> int:
        return len(self.files())

    @property
    def ttl(self) -> None:
        """No time-to-live: versions are kept until deleted (``delete``, ``tracklet artifact rm``)."""
        return None

    @ttl.setter
    def ttl(self, value: Any) -> None:
        """W&B's TTL policy: accepted; a duration is not kept (one warning), as tracklet deletes
        versions only when asked (``delete``, ``tracklet artifact rm``)."""
        if value is not None and str(value) != "INHERIT":
            warn_once("artifact-ttl", "artifact.ttl is not supported: tracklet keeps a version until it is deleted "
                                      "(artifact.delete(), `tracklet artifact rm`)")

    @property
    def use_as(self) -> None:
        return None  # deprecated in W&B; never kept

    def is_draft(self) -> bool:
        """Whether it is a draft not logged yet (W&B's: its state is ``PENDING``)."""
        return self._state == "draft"

    @property
    def state(self) -> str:
        """W&B's ``state``: ``"PENDING"`` until the version is stored (a draft, one being stored,
        or one whose storing failed: ``wait()`` raises why), ``"COMMITTED"`` once stored, and
        ``"DELETED"`` once ``delete()`` succeeded. ``tracklet.Artifact.state`` keeps tracklet's
        lowercase states (``draft``, ``pending``, ``committed``, ``failed``, ``deleted``)."""
        if self._deleted:
            return "DELETED"
        return "COMMITTED" if self._state == "committed" else "PENDING"

    @property
    def linked_artifacts(self) -> Any:
        """W&B's ``linked_artifacts``: the registry collections' versions that link this version,
        as ``wandb.Artifact``s (``tracklet.Artifact.linked_artifacts``); also callable."""
        found = _TrackletArtifact.linked_artifacts.fget(self)  # type: ignore[attr-defined]
        return type(found)(self._wrap(artifact) for artifact in found)

    @property
    def distributed_id(self) -> str | None:
        """W&B's ``distributed_id``: kept as set; tracklet has no distributed artifacts, so
        ``run.upsert_artifact``/``finish_artifact`` raise ``ArtifactError`` saying so."""
        return self._distributed_id

    @distributed_id.setter
    def distributed_id(self, value: str | None) -> None:
        self._distributed_id = value

    @property
    def digest_algorithm(self) -> str:
        """How ``digest`` is computed: ``"sha256"`` over the sorted ``path:digest`` lines of the
        files (W&B's is an enum of its own manifest digest, an MD5)."""
        return "sha256"

    def json_encode(self) -> dict[str, Any]:
        """W&B's ``json_encode``: the version as W&B refers to one in a config or table
        (``artifactVersion``, its ``id``, ``version``, ``sequenceName``)."""
        self._committed_info("JSON reference")
        return {"_type": "artifactVersion", "_version": "v0", "id": self.id, "version": self.source_version,
                "sequenceName": self._name, "usedAs": None}

    def get_added_local_path_name(self, local_path: str) -> str | None:
        """W&B's ``get_added_local_path_name``: the name in this draft of a file added from
        ``local_path`` (``add_file``, ``add_dir``), or None."""
        path = os.path.abspath(os.fspath(local_path))
        for name, item in self._pending.items():
            if getattr(item, "path", None) == path:
                return name
        return None

    @property
    def collection(self) -> Any:
        """W&B's ``collection``: the collection the version was read from, an
        ``ArtifactCollection`` (``name``, ``type``, ``project``, ``aliases``, ``versions()``);
        for a version read through a registry collection, that collection (in the "project"
        ``wandb-registry-<registry>``, as W&B names registries), else ``source_collection``."""
        from tracklet.registry.refs import WANDB_PREFIX

        info = self._committed_info("collection")
        if self._link is None:
            return self.source_collection
        from tracklet.compat.wandb.apis._artifact_lists import ArtifactCollection

        return ArtifactCollection(self._reading_api(), WANDB_PREFIX + self._link.registry, self._link.collection,
                                  info.type)

    @property
    def source_collection(self) -> Any:
        """W&B's ``source_collection``: the collection the version was logged to
        (``project/name``), read where the version was read (a data root or a server)."""
        from tracklet.compat.wandb.apis._artifact_lists import ArtifactCollection

        info = self._committed_info("collection")
        return ArtifactCollection(self._reading_api(), info.project, info.name, info.type)

    @property
    def source_project(self) -> str:
        return self._committed_info("project").project

    @property
    def source_entity(self) -> None:
        return None  # tracklet has no entities

    @property
    def source_artifact(self) -> "Artifact":
        """W&B's ``source_artifact``: for a registry collection's version, the artifact version it
        links to; any other version is its own source."""
        info = self._committed_info("source artifact")
        if self._link is None:
            return self
        assert self._store is not None
        return type(self)._from_version(self._store, info)

    @property
    def linked_at(self) -> str | None:
        """When this registry collection's version was linked (ISO 8601, UTC); None for a version
        that isn't a link, as W&B."""
        self._committed_info("link time")
        return None if self._link is None else _iso_utc(self._link.linked_at)

    def file(self, root: str | os.PathLike | None = None) -> str:
        """W&B's ``file``: download the version's one file under ``root`` (default
        ``./artifacts/<name:vN>``) and return its path; ``ValueError`` if it has several, as W&B."""
        entries = self.files()
        if len(entries) != 1:
            raise ValueError(f"artifact {self.qualified_name} holds {len(entries)} files, not one: call download() "
                             "to get all files, or get_entry(name).download()")
        return self.download_file(entries[0].path, root)

    def __getitem__(self, name: str) -> Any:
        """``artifact[name]``: ``get(name)``, as W&B."""
        return self.get(name)

    def __setitem__(self, name: str, item: Any) -> Any:
        """``artifact[name] = table``: ``add(table, name)``, as W&B."""
        return self.add(item, name)

    def _reading_api(self) -> Any:
        """A ``tracklet.Api`` of where this version was read: its server, else its data root."""
        import tracklet
        from tracklet.api.remote import RemoteApi

        http = getattr(getattr(self._store, "client", None), "http", None)
        if self._link is not None and self._registry is not None:
            http = getattr(getattr(self._registry, "client", None), "http", None) or http
        if http is not None:
            return RemoteApi.over(http)
        assert self._store is not None
        return tracklet.Api(self._store.data_root)

    def logged_by(self) -> Any:
        """The run that logged the version, as ``wandb.Api().run`` gives it (``history()`` a
        DataFrame, ``path`` a list), or None."""
        found = super().logged_by()
        return None if found is None else self._public_run(found)

    def used_by(self) -> list[Any]:
        """The runs that used the version, as ``wandb.Api().run`` gives them."""
        return [self._public_run(found) for found in super().used_by()]

    def _public_run(self, recorded: Any) -> Any:
        """``recorded`` as W&B's public Run, bound to an Api of where it was read (its data root,
        or the server this version was read from: its ``logged_artifacts()`` resolve there)."""
        import tracklet
        from tracklet.api.remote import RemoteApi
        from tracklet.compat.wandb.apis.public import Run

        if hasattr(recorded, "_paths"):
            return Run(recorded, None, tracklet.Api(recorded._paths.root))
        return Run(recorded, None, RemoteApi.over(recorded._http))

    def get_entry(self, name: str) -> Any:
        """W&B's ``get_entry``: the file's entry, whose ``download(root)`` fetches that file alone."""
        return ArtifactManifestEntry.of(super().get_entry(name), self)

    get_path = get_entry  # W&B's older name

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None,
                 policy: str | None = None) -> Iterator[Any]:
        """W&B's signature; the file is staged in the draft either way (``policy`` is accepted)."""
        with super().new_file(name, mode, encoding) as handle:
            yield handle

    def save(self, project: str | None = None, settings: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """With a run active, log this artifact to it; else store it as a version of ``project``.
        A logged (committed) version saves its alias edits (``aliases.append``, as in W&B)."""
        from tracklet.core import lifecycle

        if self._state == "committed":
            super().save()
            return
        run = lifecycle.current()
        if run is not None and project is None:
            run.log_artifact(self)
        else:
            super().save(project)

    @classmethod
    def _wrap(cls, artifact: _TrackletArtifact) -> "Artifact":
        """A committed tracklet Artifact as W&B's type (same version, same store)."""
        if isinstance(artifact, cls) or artifact._state != "committed":
            return artifact  # type: ignore[return-value]
        assert artifact._store is not None
        wrapped = cls._from_version(artifact._store, artifact._info)
        wrapped._link = artifact._link  # read through a registry collection: its version and aliases
        wrapped._registry = artifact._registry
        wrapped._deleted = artifact._deleted
        return wrapped


def _iso_utc(moment: float) -> str:
    """Epoch seconds as W&B gives times: ISO 8601, UTC, to the second."""
    import datetime

    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    "Artifact", "Audio", "Classes", "Graph", "Histogram", "Html", "Image", "JoinedTable", "Molecule", "Object3D",
    "PartitionedTable", "Plotly", "Table", "Video", "WBValue", "is_unrecorded", "recordable", "type_label",
]
