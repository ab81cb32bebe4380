"""The run's table writer: a thread that turns logged table snapshots into Parquet fragments in
the artifacts' blob store and queues a ``TableLogged`` record for each, through the run's sender.

``log({"preds": table})`` only takes a snapshot and calls :meth:`TableWriter.submit`; converting
rows to Arrow, encoding Parquet (zstd, 128k-row row groups with min/max statistics, so DuckDB
skips row groups a filter excludes), hashing and writing run here. A fragment is a blob like any
artifact file: written under a temporary name and renamed into place once complete, so a reader
never sees a partial one, whatever was killed when; the record naming it is queued only after
that, so a record in the log always names fragments that exist. Identical content is stored once
(an IMMUTABLE table logged twice, unchanged, is not even encoded again).

Every fragment has one column of tracklet's own, ``__tracklet_row`` (the row's index in the
fragment, delta-encoded: a few bytes per row group), which keeps row order through queries.

The queue is bounded (``MAX_PENDING`` snapshots, ``MAX_PENDING_ROWS`` rows): when it is full,
``submit`` waits, as the sender's queue does, and never drops a table (one warning says so).
A table that fails to be stored is reported once and left out; the run goes on.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any

from tracklet.core.logged import RunContext
from tracklet.media import table_arrow
from tracklet.media.table import TableSnapshot

FRAGMENT_ROWS = 1 << 20  # rows per Parquet fragment (blob); a bigger table is stored as several
ROW_GROUP_ROWS = 128 * 1024
MAX_PENDING = 1024  # snapshots; small INCREMENTAL ones are a few KB each
MAX_PENDING_ROWS = 4_000_000
_MAX_TABLES = 1024  # tables whose last version is remembered (to skip re-encoding an unchanged one)


@dataclasses.dataclass
class _Stored:
    """What the writer remembers of one table (by its id)."""

    known: dict[str, Any]  # column -> Arrow type, set by the first values (INCREMENTAL: across increments)
    version: int = -1
    fragments: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)  # (digest, rows, bytes)
    columns: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, Arrow type)


@dataclasses.dataclass
class _Pending:
    key: str
    step: int
    time: float
    snapshot: TableSnapshot


def start_worker(context: RunContext) -> "TableWriter":
    """The run's table writer (``core/logged.py``'s ``ObjectWorker``), started."""
    return TableWriter(context)


class TableWriter:
    """One run's table writer thread."""

    def __init__(self, context: RunContext) -> None:
        self._context = context
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_rows = 0
        self._busy = False
        self._closed = False
        self._condition = threading.Condition()
        self._tables: collections.OrderedDict[str, _Stored] = collections.OrderedDict()
        self._blobs: Any = None
        self._warned_full = False
        self._thread = threading.Thread(target=self._run, name=f"tracklet-tables-{context.run_path}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ caller side

    def submit(self, key: str, step: int, snapshot: TableSnapshot) -> None:
        """Queue one snapshot; waits (never drops) while the queue is full."""
        rows = snapshot.row_count
        with self._condition:
            while self._pending and self._thread.is_alive() and (
                    len(self._pending) >= MAX_PENDING or self._pending_rows + rows > MAX_PENDING_ROWS):
                if not self._warned_full:
                    self._warned_full = True
                    self._context.warn("tables-full", f"tracklet: log() is waiting for the table writer, which has "
                                                      f"{len(self._pending)} tables to store; nothing is dropped")
                self._condition.wait(0.05)
            self._pending.append(_Pending(key, step, time.time(), snapshot))
            self._pending_rows += rows
            self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every table submitted so far is stored and its record queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while (self._pending or self._busy) and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._condition.wait(left if left is not None else 0.1)
        return True

    def close(self, timeout: float) -> bool:
        """Store what was submitted, within ``timeout`` seconds, and stop. False if some was not."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        return not self._pending

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending:
                    return
                item = self._pending.popleft()
                self._busy = True
            try:
                self._store(item)
            except Exception as error:  # contained: this table is left out, the run goes on
                self._context.warn(("table-failed", item.key, type(error)),
                                   f"tracklet: table {item.key!r} at step {item.step} could not be stored ({error!r}); "
                                   "it is not recorded, the run goes on")
            finally:
                with self._condition:
                    self._pending_rows -= item.snapshot.row_count
                    self._busy = False
                    self._condition.notify_all()
                del item

    def _store(self, item: _Pending) -> None:
        snapshot = item.snapshot
        incremental = snapshot.log_mode == "INCREMENTAL"
        stored = self._tables.get(snapshot.table_id)
        if stored is None:
            stored = self._tables[snapshot.table_id] = _Stored(known={})
            if len(self._tables) > _MAX_TABLES:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(snapshot.table_id)
        if incremental or stored.version != snapshot.version or not stored.fragments:
            where = f"table {item.key!r} at step {item.step}"
            report = self._reporter(item.key)
            table = snapshot.to_arrow(where, report, stored.known if incremental else None)
            stored.fragments = self._write_fragments(table)
            stored.columns = [(field.name, str(field.type)) for field in table.schema]
            stored.version = snapshot.version
            for field in table.schema:
                if stored.known.get(field.name) is None or table_arrow.pa_module().types.is_null(stored.known[field.name]):
                    stored.known[field.name] = field.type
            del table
        fields = dict(key=item.key, step=item.step, time=item.time, log_mode=snapshot.log_mode,
                      table_id=snapshot.table_id, increment=snapshot.increment if incremental else 0,
                      fragments=list(stored.fragments), columns=list(stored.columns))
        if incremental:
            stored.fragments = []  # each increment is new rows: nothing to reuse
        self._context.enqueue(lambda: table_record(fields))

    def _reporter(self, key: str) -> table_arrow.Report:
        """Warnings about a table's values: once per key and problem for the run."""
        warn = self._context.warn
        return lambda what, message: warn(("table-values", key, what), message)

    def _write_fragments(self, table: Any) -> list[tuple[str, int, int]]:
        """``table`` as Parquet blobs of at most ``FRAGMENT_ROWS`` rows: (digest, rows, bytes) each."""
        if self._blobs is None:
            from tracklet.artifacts.blobs import FsspecBlobStore
            from tracklet.artifacts.storage import artifact_dir

            self._blobs = FsspecBlobStore(artifact_dir(self._context.data_root))
        fragments = []
        for start in range(0, max(table.num_rows, 1), FRAGMENT_ROWS):
            part = table.slice(start, FRAGMENT_ROWS)
            data = parquet_bytes(part)
            digest, _ = self._blobs.put_bytes(data)
            fragments.append((digest, part.num_rows, len(data)))
            del data
        return fragments


def parquet_bytes(table: Any) -> bytes:
    """``table`` as a Parquet file, with tracklet's row column appended."""
    pa = table_arrow.pa_module()
    import numpy as np
    import pyarrow.parquet as pq

    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.append_column(table_arrow.ROW_COLUMN, rows)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                   use_dictionary=[name for name in table.column_names if name != table_arrow.ROW_COLUMN],
                   column_encoding={table_arrow.ROW_COLUMN: "DELTA_BINARY_PACKED"})
    return sink.getvalue().to_pybytes()


def table_record(fields: dict[str, Any]) -> Any:
    """The ``TableLogged`` record (built on the sender's worker)."""
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    logged = record.table_logged
    logged.key = fields["key"]
    logged.step = fields["step"]
    logged.time = fields["time"]
    logged.log_mode = pb.TableLogged.LogMode.Value(f"LOG_MODE_{fields['log_mode']}")  # type: ignore[assignment]
    logged.table_id = fields["table_id"]
    logged.increment = fields["increment"]
    total = 0
    for digest, rows, size in fields["fragments"]:
        fragment = logged.fragments.add()
        fragment.digest, fragment.rows, fragment.size_bytes = digest, rows, size
        total += rows
    logged.rows = total
    for name, kind in fields["columns"]:
        column = logged.columns.add()
        column.name, column.type = name, kind
    return record
