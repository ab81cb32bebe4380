"""Storing one logged table snapshot: Arrow, then Parquet fragments in the artifacts' blob store,
then the ``TableLogged`` record naming them. Runs on a thread of the run's logged-object worker
(``media/worker.py``), which calls ``TableSnapshot._record``; one key's snapshots are stored in
the order they were logged (the worker's lane is chosen by key).

Parquet: zstd, dictionary-encoded where values repeat (text, ints, bools), 128k-row row groups
with min/max statistics (DuckDB skips the row groups a filter
excludes), at most ``FRAGMENT_ROWS`` rows per fragment (a bigger table is several). Every fragment
has one column of tracklet's own, ``__tracklet_row`` (the row's index in the fragment,
delta-encoded: a few bytes per row group), which keeps row order through queries. A fragment is a
blob like any artifact file: written under a temporary name and renamed into place once complete,
so a reader never sees a partial one; the record naming it is made only after that. Identical
content is stored once, and an unchanged table logged again is not even encoded again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from tracklet.media import table_arrow, table_cells

if TYPE_CHECKING:
    from tracklet.media.table import TableSnapshot
    from tracklet.proto import records_pb2 as pb

FRAGMENT_ROWS = 1 << 20
ROW_GROUP_ROWS = 128 * 1024
DICTIONARY_BYTES = 64 * 1024


def store_snapshot(snapshot: TableSnapshot, context: Any, key: str, step: int, when: float) -> pb.Record:
    """Store ``snapshot`` (logged under ``key`` at ``step``, at time ``when``) through ``context``
    (the logged-object worker's: ``.blobs``, the artifacts' ``FsspecBlobStore``; ``.warn(token,
    message)``) and return its ``TableLogged`` record. Problems with values are warned once per
    key and problem; the rows are kept. Media cells are stored by ``table_cells``."""
    state = snapshot.state
    incremental = snapshot.log_mode == "INCREMENTAL"
    warn: Callable[[Any, str], None] = context.warn
    with state.lock:  # one snapshot of a table at a time: the known column types, the last version
        if incremental or state.version != snapshot.version or not state.fragments:
            where = f"table {key!r} at step {step}"
            report: table_arrow.Report = lambda what, message: warn(("table-values", key, what), message)  # noqa: E731
            cells = table_cells.media_cells(context, key, step, when, where, report)
            table = snapshot.to_arrow(where, report, state.known if incremental else None, cells)
            state.fragments = write_fragments(context.blobs, table)
            state.columns = [(field.name, str(field.type)) for field in table.schema]
            state.version = snapshot.version
            is_null = table_arrow.pa_module().types.is_null
            for field in table.schema:
                if state.known.get(field.name) is None or is_null(state.known[field.name]):
                    state.known[field.name] = field.type
            del table
        fragments, columns = list(state.fragments), list(state.columns)
        if incremental:
            state.fragments = []  # an increment is new rows: nothing to reuse
    # Its run-table version, from the run's counter, once everything it names is stored (a log
    # that failed takes none); one key's logs come here in the order logged (one lane per key).
    versions = getattr(context, "versions", None)
    version_plus_one = versions.take(key) if versions is not None else 0
    return table_record(key=key, step=step, time=when, log_mode=snapshot.log_mode, table_id=snapshot.table_id,
                        increment=snapshot.increment if incremental else 0, fragments=fragments, columns=columns,
                        chart=snapshot.chart, version_plus_one=version_plus_one)


def write_fragments(blobs: Any, table: Any) -> list[tuple[str, int, int]]:
    """``table`` as Parquet blobs of at most ``FRAGMENT_ROWS`` rows: (digest, rows, bytes) each."""
    fragments = []
    for start in range(0, max(table.num_rows, 1), FRAGMENT_ROWS):
        # Bounded by the rows left: Arrow's slice of a table of no columns doesn't clamp its length
        # (a 2-row ``Table(columns=[])`` was stored as 1,048,576 rows).
        part = table.slice(start, min(FRAGMENT_ROWS, max(table.num_rows - start, 0)))
        digest, size = _store_parquet(blobs, part)
        fragments.append((digest, part.num_rows, size))
    return fragments


class _BlobSink:
    """A blob being written (``FsspecBlobStore.writer``) as the file object Arrow writes to."""

    closed = False

    def __init__(self, blob: Any) -> None:
        self.blob = blob

    def write(self, data: Any) -> int:
        self.blob.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _store_parquet(blobs: Any, table: Any) -> tuple[str, int]:
    """``table`` as a Parquet blob: (digest, bytes). Written straight into the blob store, hashed
    as it is written (a 1M-row fragment is ~50 MB: an in-memory file that grows, then its copy as
    ``bytes``, cost more CPU in page faults than encoding it); through 1 MiB writes, so the worker
    takes the GIL ~50 times for it, not at every page."""
    if not hasattr(blobs, "writer"):  # a store that takes whole blobs only
        data = parquet_bytes(table)
        digest, _ = blobs.put_bytes(data)
        return digest, len(data)
    pa = table_arrow.pa_module()
    blob = blobs.writer()
    try:
        with pa.output_stream(_BlobSink(blob), buffer_size=1 << 20) as stream:
            write_parquet(table, stream)
        digest, size = blob.hasher.hexdigest(), blob.size
        if getattr(blobs, "claim", blobs.has)(digest):  # stored before: identical content is stored once
            blob.discard()
        elif not blob.publish(digest):  # pragma: no cover - the bytes hashed as they were written
            raise OSError(f"a table fragment's blob did not match its digest {digest}")
    except BaseException:
        blob.discard()
        raise
    return digest, size


def parquet_bytes(table: Any) -> bytes:
    """``table`` as a Parquet file, with tracklet's row column appended."""
    pa = table_arrow.pa_module()
    sink = pa.BufferOutputStream()
    write_parquet(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_parquet(table: Any, where: Any) -> None:
    """``table`` as a Parquet file written to ``where`` (an Arrow output stream), with tracklet's
    row column appended."""
    pa = table_arrow.pa_module()
    import numpy as np
    import pyarrow.parquet as pq

    # Dictionary encoding where values repeat (text, ints, bools): on floats it only costs (Arrow
    # tries, then falls back; 1M rows x 6 float columns: 2.3 s instead of 0.5 s, and a bigger file).
    # A column chunk whose dictionary outgrows DICTIONARY_BYTES falls back to plain values there:
    # an id column (every value distinct) stops being hashed after ~8k values, not 128k.
    types = pa.types
    dictionary = [field.name for field in table.schema
                  if types.is_string(field.type) or types.is_large_string(field.type) or types.is_integer(field.type)
                  or types.is_boolean(field.type) or types.is_binary(field.type)]
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.append_column(table_arrow.ROW_COLUMN, rows)
    pq.write_table(table, where, compression="zstd", row_group_size=ROW_GROUP_ROWS, use_dictionary=dictionary,
                   dictionary_pagesize_limit=DICTIONARY_BYTES,
                   column_encoding={table_arrow.ROW_COLUMN: "DELTA_BINARY_PACKED"})


def table_record(*, key: str, step: int, time: float, log_mode: str, table_id: str, increment: int,
                 fragments: list[tuple[str, int, int]], columns: list[tuple[str, str]],
                 chart: Any = None, version_plus_one: int = 0) -> pb.Record:
    """The ``TableLogged`` record (``chart``: a ``table_chart.TableChart`` to record with it;
    ``version_plus_one``: its writer's run-table version number + 1, 0 for none)."""
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    logged = record.table_logged
    logged.key = key
    logged.step = step
    logged.time = time
    logged.log_mode = pb.TableLogged.LogMode.Value(f"LOG_MODE_{log_mode}")  # type: ignore[assignment]
    logged.table_id = table_id
    logged.increment = increment
    logged.version_plus_one = version_plus_one
    total = 0
    for digest, rows, size in fragments:
        fragment = logged.fragments.add()
        fragment.digest, fragment.rows, fragment.size_bytes = digest, rows, size
        total += rows
    logged.rows = total
    for name, kind in columns:
        column = logged.columns.add()
        column.name, column.type = name, kind
    if chart is not None:
        from tracklet.media.table_chart import write_chart

        write_chart(chart, logged.chart)
    return record
