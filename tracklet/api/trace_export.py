"""Spans as a table: one row per span of ``tracklet.Api().traces(...)``'s traces, written as
Parquet (needs pyarrow) or JSON Lines (``tracklet traces export``, docs/tracing.md).

Columns: the span's ids, name, kind, times, status, run and step, typed columns, cost (USD, from
the price table, None where unknown), and its inputs, output and attributes as JSON text (payloads
over 8 KiB read back from the blob store), so any DataFrame or SQL engine reads them without
tracklet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tracklet.core.export import write_atomically
from tracklet.errors import TrackletError

FORMATS = ("parquet", "jsonl")
PARQUET_INSTALL_HINT = "pip install 'tracklet[parquet]'"
# (column, pyarrow type name) in order.
COLUMNS = (
    ("trace_id", "string"), ("span_id", "string"), ("parent_span_id", "string"), ("name", "string"),
    ("kind", "string"), ("start_ns", "int64"), ("end_ns", "int64"), ("duration_ms", "float64"),
    ("status", "string"), ("status_message", "string"), ("run_id", "string"), ("step", "int64"),
    ("source", "string"), ("operation", "string"), ("provider", "string"), ("model", "string"),
    ("input_tokens", "int64"), ("output_tokens", "int64"), ("cost", "float64"), ("inputs", "string"),
    ("output", "string"), ("attributes", "string"),
)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)


def span_rows(traces: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """One dict per span (``COLUMNS``' keys), traces in the order given, spans by start."""
    for trace in traces:
        for span in trace.spans:
            row = {name: getattr(span, name) for name, _ in COLUMNS[:19]}
            row["inputs"], row["output"] = _json(span.inputs), _json(span.output)
            row["attributes"] = _json(span.attributes)
            yield row


def export_spans(traces: Iterable[Any], fmt: str, out: Path) -> int:
    """Write the traces' spans to ``out`` (replaced atomically) as ``fmt``; how many rows."""
    if fmt not in FORMATS:
        raise TrackletError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    rows = list(span_rows(traces))
    if fmt == "jsonl":
        def write(stream: Any) -> None:
            for row in rows:
                stream.write((json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TrackletError(f"parquet export needs pyarrow: {PARQUET_INSTALL_HINT}") from None
        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])
        table = pa.Table.from_pylist(rows, schema=schema)

        def write(stream: Any) -> None:
            pq.write_table(table, stream)
    # As `tracklet export` writes: a hidden file beside it renamed into place, with the umask's
    # permissions, and errors naming the file asked for (or its missing directory).
    write_atomically(Path(out), write)
    return len(rows)
