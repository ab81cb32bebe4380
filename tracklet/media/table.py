"""``tracklet.Table``: rows of predictions (or anything tabular) logged under a key, stored as
Parquet fragments in the artifacts' blob store and queried with DuckDB (docs/tables.md).

    table = tracklet.Table(columns=["id", "label", "score"], log_mode="INCREMENTAL")
    table.add_data(7, "cat", 0.93)
    run.log({"preds": table})                      # a snapshot + a queue item: nothing written here
    tracklet.Api().run(path).table("preds").filter("score > 0.9").to_pandas()

The table keeps what was converted already as one Arrow table and rows added since as a list
(``add_data`` appends one; nothing is converted per row). ``log()`` takes a snapshot on the
caller's thread (``Table._at_log``): the Arrow table (immutable) and a shallow copy of the row
list; the run's logged-object worker (``media/worker.py``, the one media use) stores it off the
training thread (``TableSnapshot._record``, ``table_store.py``).

Log modes (as W&B's): ``IMMUTABLE`` (the default) and ``MUTABLE`` record the whole table at each
log, a version per log (identical content is stored once); changing an IMMUTABLE table after
logging it is allowed with a warning, as in W&B. ``INCREMENTAL`` records only the rows added since
the table's last log (a fragment per log, any number of them) and then lets go of them, so the
client's memory doesn't grow with the increments: ``len()``, ``get_dataframe()`` and
``get_column()`` then cover the rows not logged yet; read the whole table back with
``run.table(key)``.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 (imported now, not at exit: see below)
import dataclasses
import os
import threading
import warnings
from typing import Any, Sequence

from tracklet.core.logged import LoggedObject
from tracklet.core.stack import user_stacklevel
from tracklet.errors import TableError, TrackletWarning
from tracklet.media import table_arrow, table_cells

LOG_MODES = ("IMMUTABLE", "MUTABLE", "INCREMENTAL")

# A table logged just before a script ends (no ``finish()``, or an uncaught exception) is stored
# while the interpreter exits (``core/lifecycle.py`` finishes the run from ``atexit``). pyarrow
# imports pandas, when installed, the first time it converts a list, and pandas imports
# ``concurrent.futures.thread``, whose first import then fails ("can't register atexit after
# shutdown": it registers one of threading's exit hooks, and those have run): the table was lost
# with a warning in any script that had not imported pandas itself. Imported with this module
# (before any table exists; ~10 ms once), pandas' import at exit finds it done.


@dataclasses.dataclass
class TableState:
    """What the workers storing a table's snapshots remember of it (kept with the table, so it
    goes when the table does): the column types its first values set (INCREMENTAL increments keep
    them) and its last stored version, so an unchanged table logged again is not encoded again."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    known: dict[str, Any] = dataclasses.field(default_factory=dict)  # column -> Arrow type
    version: int = -1
    fragments: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)  # (digest, rows, bytes)
    columns: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, Arrow type)


@dataclasses.dataclass(frozen=True)
class TableSnapshot(LoggedObject):
    """A table as it was when logged: what the run's logged-object worker (``media/worker.py``)
    stores off the caller's thread, through :meth:`_record`. ``arrow``: the part converted already
    (immutable); ``rows``: the rows after it (a list no one appends to any more); ``row_offset``:
    rows of this table logged before (INCREMENTAL). A full queue drops it like any media (``log()``
    never waits); a dropped INCREMENTAL snapshot hands its rows back to ``source`` (its table),
    which ``finish()`` logs if no later log of the key is taken (``media/worker.py``)."""

    _kind = "table"

    table_id: str
    log_mode: str
    state: TableState
    version: int
    columns: tuple[str, ...]
    arrow: Any
    rows: list[Any]
    row_offset: int = 0
    increment: int = 0
    source: Any = dataclasses.field(default=None, compare=False, repr=False)
    chart: Any = None  # a ``table_chart.TableChart`` when logged as a chart (``wandb.plot.*``)
    mixed_as_text: bool = False  # W&B's allow_mixed_types: a column of mixed types is stored as text

    @property
    def row_count(self) -> int:
        return (self.arrow.num_rows if self.arrow is not None else 0) + len(self.rows)

    def _pending_bytes(self) -> int:
        """What the snapshot holds until stored, about: the Arrow part's buffers (shared with the
        table until it changes) and ~100 bytes per listed row."""
        return (self.arrow.nbytes if self.arrow is not None else 0) + 100 * len(self.rows)

    def to_arrow(self, where: str, report: table_arrow.Report, known: dict[str, Any] | None = None,
                 cells: Any = None) -> Any:
        """The snapshot's rows as one Arrow table (type rules: ``table_arrow``). ``known``: column
        types earlier increments of the table set; ``cells``: what stores media cells
        (``table_cells``; without it, media are stored as their text)."""
        parts = []
        converted = 0
        if self.arrow is not None:
            parts.append(table_arrow.materialize(self.arrow))  # a pending DataFrame converts here, on the worker
            converted = self.arrow.num_rows
        if self.rows:
            parts.append(table_arrow.rows_to_arrow(self.rows, self.columns, where, report,
                                                   self.row_offset + converted, cells, self.mixed_as_text))
        if not parts:
            return table_arrow.empty_table(self.columns)
        return table_arrow.combine(parts, known or {}, where, report, self.row_offset, self.mixed_as_text)

    def _record(self, context: Any, where: Any) -> Any:
        """What the logged-object worker calls on its thread (``context``: ``.blobs``, ``.warn``;
        ``where``: ``.key``, ``.step``, ``.time``): Parquet fragments in the blob store and the
        ``TableLogged`` record naming them (``table_store.store_snapshot``)."""
        from tracklet.media.table_store import store_snapshot

        return store_snapshot(self, context, where.key, where.step, where.time)

    def _dropped(self) -> Any:
        """A full queue dropped this snapshot: an INCREMENTAL table takes its rows back, so its
        next ``log()`` records them (IMMUTABLE and MUTABLE tables still hold every row); the
        table, for ``finish()`` to log if no later log of the key is taken."""
        if self.source is not None and self.log_mode == "INCREMENTAL":
            self.source._take_back(self)
        return self.source


def is_frame(value: Any) -> bool:
    """Whether ``value`` is a data frame (pandas, a ``pyarrow.Table``, polars) rather than rows."""
    module = type(value).__module__.partition(".")[0]
    return (module == "pandas" and hasattr(value, "columns")) or (
        module in ("pyarrow", "polars") and hasattr(value, "column_names" if module == "pyarrow" else "columns"))


def _warn(what: str, message: str) -> None:
    """A Table's own warnings (on the caller's thread): ``table_arrow.Report``."""
    warnings.warn(message, TrackletWarning, stacklevel=user_stacklevel())


def _check_name(name: Any, existing: Sequence[str], what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TableError(f"{what}: a column name must be a non-empty str; got {name!r}")
    if name.startswith(table_arrow.RESERVED_PREFIX):
        raise TableError(f"{what}: column names starting with {table_arrow.RESERVED_PREFIX!r} are tracklet's own; "
                         f"got {name!r}")
    if name in existing:
        raise TableError(f"{what}: there is already a column {name!r}")
    return name


class Table(LoggedObject):
    """A table to log under a key: ``Table(columns=[...], data=[[...], ...])``,
    ``Table(dataframe=df)`` (pandas, Arrow, polars), with ``log_mode`` ``"IMMUTABLE"`` (default),
    ``"MUTABLE"`` or ``"INCREMENTAL"`` (see the module's docstring and docs/tables.md)."""

    _kind = "table"
    _snapshot_at_log = True  # a table changes after it is logged
    _mixed_as_text = False  # W&B's allow_mixed_types (the compat layer's Table sets it)
    _columns_from_first_row = False  # made with neither columns nor rows (see add_data)

    def __init__(self, columns: Sequence[str] | None = None, data: Any = None, rows: Any = None,
                 dataframe: Any = None, *, log_mode: str = "IMMUTABLE") -> None:
        if log_mode not in LOG_MODES:
            raise TableError(f"tracklet.Table: log_mode must be one of {', '.join(LOG_MODES)}; got {log_mode!r}")
        self._log_mode = log_mode
        self._id = os.urandom(8).hex()
        self._state = TableState()
        self._version = 0
        self._logged_version: int | None = None
        self._key: str | None = None
        self._released = 0  # INCREMENTAL: rows logged and let go of
        self._increments = 0
        self._warned_immutable = False
        self._arrow: Any = None
        self._rows: list[list[Any]] = []
        if data is None:
            data = rows
        if is_frame(data):
            # W&B's ``Table(data=df)``: a frame given as data is the dataframe, not rows (a list of
            # it would be its column names).
            if dataframe is not None:
                raise TableError("tracklet.Table: pass data= or dataframe=, not both")
            data, dataframe = None, data
        if dataframe is not None and data is not None:
            raise TableError("tracklet.Table: pass data= or dataframe=, not both")
        converted = None if dataframe is None else table_arrow.arrow_of_dataframe(dataframe)
        if dataframe is not None and converted is None:  # a pandas frame of media (or other objects)
            frame = dataframe if columns is None else dataframe[list(columns)]
            columns, data = [str(name) for name in frame.columns], table_arrow.dataframe_rows(frame)
        elif converted is not None:
            self._arrow = converted
            names = list(self._arrow.column_names)
            for name in names:
                if name.startswith(table_arrow.RESERVED_PREFIX):
                    raise TableError(f"tracklet.Table(dataframe=...): column {name!r} uses the prefix "
                                     f"{table_arrow.RESERVED_PREFIX!r}, which is tracklet's own")
            if columns is not None and list(columns) != names:
                self._arrow = self._arrow.select(list(columns))  # ArrowInvalid or KeyError naming a missing one
                names = list(columns)
            self._columns = names
            return
        if data is not None and type(data).__module__.partition(".")[0] == "numpy":
            data = data.tolist()  # one C call; rows of Python scalars
        data = list(data) if data is not None else []
        # Made with neither columns nor rows: the first add_data() names them (col0, col1, ...),
        # rather than every row being left out as too wide for a table of no columns.
        self._columns_from_first_row = columns is None and not data
        if columns is None:
            width = len(data[0]) if data else 0
            columns = [f"col{index}" for index in range(width)]
        self._columns = []
        for name in columns:
            self._columns.append(_check_name(name, self._columns, "tracklet.Table"))
        kept = table_arrow.check_widths(data, len(self._columns), self._where(), _warn)
        self._rows = list(map(list, kept))

    # ------------------------------------------------------------ reading

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def log_mode(self) -> str:
        return self._log_mode

    def __len__(self) -> int:
        """Rows held: every row, or with INCREMENTAL the rows not logged yet."""
        return (self._arrow.num_rows if self._arrow is not None else 0) + len(self._rows)

    def to_arrow(self) -> Any:
        """The rows held as one ``pyarrow.Table`` (media cells as their text: they are stored only
        when the table is logged)."""
        if self._arrow is None or self._rows:
            snapshot = self._snapshot(self._rows, self._released)
            converted = snapshot.to_arrow(self._where(), _warn)
            if table_cells.holds_media(self._rows, len(self._columns)):
                return converted  # the rows stay as they are, for log() to store their media
            self._arrow, self._rows = converted, []
        self._arrow = table_arrow.materialize(self._arrow)
        return self._arrow

    def get_dataframe(self) -> Any:
        """The rows held as a pandas DataFrame (through Arrow); a table holding media gives them
        as the media objects (as W&B's ``get_dataframe``), in object columns."""
        held = self._rows_with_media()
        if held is not None:
            import pandas as pd

            return pd.DataFrame(held, columns=self._columns)
        return self.to_arrow().to_pandas()

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        """One column's values: a list, or with ``convert_to="numpy"`` a numpy array."""
        if name not in self._columns:
            raise TableError(f"{self._where()}: no column {name!r}; columns: {', '.join(self._columns)}")
        held = self._rows_with_media()
        if held is not None:
            index = self._columns.index(name)
            values = [row[index] for row in held]
            if convert_to == "numpy":
                import numpy as np

                from tracklet.media.base import Media

                return np.asarray(values, dtype=object if any(isinstance(v, Media) for v in values) else None)
            return values
        column = self.to_arrow().column(name)
        if convert_to == "numpy":
            return column.to_numpy(zero_copy_only=False)
        return column.to_pylist()

    def get_index(self) -> list[int]:
        return list(range(len(self)))

    @property
    def data(self) -> list[list[Any]]:
        """The rows held, as lists (a copy: change the table with ``add_data``/``add_column``);
        media cells as the media objects until the table is logged."""
        held = self._rows_with_media()
        if held is not None:
            return held
        names = self._columns
        return [[row[name] for name in names] for row in self.to_arrow().to_pylist()]

    def _rows_with_media(self) -> list[list[Any]] | None:
        """The rows as held, media objects included (as W&B's ``data`` and ``get_column`` give them),
        when they hold media; None otherwise. Media cells stay objects until the table is logged:
        converting them (``to_arrow``) would give their text, with a warning."""
        if not (self._rows and table_cells.holds_media(self._rows, len(self._columns))):
            return None
        names = self._columns
        arrow = table_arrow.materialize(self._arrow)
        head = [[row[name] for name in names] for row in arrow.to_pylist()] if arrow is not None else []
        return head + [list(row) for row in self._rows]

    # ------------------------------------------------------------ changing

    def add_data(self, *values: Any) -> None:
        """Append one row (a value per column). A row of the wrong width is left out with a
        warning naming the table and the row; the table is unchanged then. A table made with no
        columns and no rows takes its columns from its first row: ``col0``, ``col1``, ..."""
        if self._columns_from_first_row:
            self._columns_from_first_row = False
            if not self._columns and not len(self) and not self._released:
                self._columns = [f"col{index}" for index in range(len(values))]
        if len(values) != len(self._columns):
            _warn("width", f"tracklet: {self._where()}: add_data() got {len(values)} values for {len(self._columns)} "
                  f"columns ({', '.join(self._columns)}); row {self._released + len(self)} left out, the other "
                  "rows are kept")
            return
        self._changing()
        self._rows.append(list(values))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = False) -> None:
        """Add a column with a value for each row held."""
        _check_name(name, self._columns, self._where())
        values = list(data)
        if len(values) != len(self):
            raise TableError(f"{self._where()}: add_column({name!r}) got {len(values)} values for {len(self)} rows")
        if table_cells.holds_media(self._rows, len(self._columns)):
            # Rows holding media stay rows until logged (their media are stored then): the new
            # column's values join them, in new lists (a pending snapshot shares the old ones).
            converted = self._arrow.num_rows if self._arrow is not None else 0
            self._changing()
            if self._arrow is not None:
                head = table_arrow.column_array(values[:converted], name, self._where(), _warn, self._released,
                                                self._mixed_as_text)
                self._arrow = table_arrow.materialize(self._arrow).append_column(name, head)
            self._rows = [[*row, value] for row, value in zip(self._rows, values[converted:])]
            self._columns.append(name)
            return
        arrow = self.to_arrow()
        self._changing()
        array = table_arrow.column_array(values, name, self._where(), _warn, self._released, self._mixed_as_text)
        self._arrow = arrow.append_column(name, array)
        self._columns.append(name)

    def _changing(self) -> None:
        if self._log_mode == "IMMUTABLE" and self._logged_version is not None and not self._warned_immutable:
            self._warned_immutable = True
            _warn("immutable", f"tracklet: {self._where()} is IMMUTABLE and was logged already; logging it again records "
                  "another version (use log_mode='MUTABLE' for a table meant to change)")
        self._version += 1

    # ------------------------------------------------------------ logging (core/logged.py)

    def _snapshot(self, rows: list[Any], row_offset: int, source: Table | None = None) -> TableSnapshot:
        return TableSnapshot(self._id, self._log_mode, self._state, self._version, tuple(self._columns), self._arrow,
                             rows, row_offset, self._increments, source, mixed_as_text=self._mixed_as_text)

    def _at_log(self, key: str, step: int) -> TableSnapshot:
        """What ``log()`` hands to the logged-object worker (``core/logged.py``): the Arrow part
        and a shallow copy of the rows; with INCREMENTAL the rows not logged yet, which the table
        then lets go of."""
        self._key = key
        if self._log_mode == "INCREMENTAL":
            snapshot = self._snapshot(self._rows, self._released, self)
            self._released += len(self)
            self._arrow, self._rows = None, []
            self._increments += 1
        else:
            snapshot = self._snapshot(self._rows[:], 0, self)
        self._logged_version = self._version
        return snapshot

    def _take_back(self, snapshot: TableSnapshot) -> None:
        """An INCREMENTAL increment ``_at_log`` let go of was dropped by a full queue (right after,
        on the caller's thread): hold its rows again, so the next ``log()`` records them."""
        if snapshot.increment != self._increments - 1 or self._arrow is not None or self._rows:
            return  # the table changed since (another thread): the increment stays dropped
        self._arrow, self._rows = snapshot.arrow, snapshot.rows
        self._released -= snapshot.row_count
        self._increments -= 1

    def _where(self) -> str:
        if self._key is not None:
            return f"table {self._key!r}"
        shown = ", ".join(self._columns[:5]) + (", ..." if len(self._columns) > 5 else "")
        return f"a Table ({shown})"

    def __repr__(self) -> str:
        return f"<tracklet.Table {self._log_mode} columns={self._columns!r} rows={len(self)}>"
