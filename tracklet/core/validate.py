"""The strict check a tracking server applies to every record before it accepts an upload.

A record log crosses a trust boundary at a server: any key holder may upload, and CRC-32 only
says a frame arrived as it was written, not that its writer was honest or sane. The format has
numbers that consumers use as sizes and indices: ``KeyDefinition.id`` (an index into the run's
key table), ``Column.rows`` (indices into the batch's steps), and value counts that must line up
with them. One 89-byte frame with ``id = 50,000,000`` used to make the store pad a 50M-entry list.

Readers of logs on disk are lenient instead (``core/decode.py``: skip what can't be read, drop
columns that don't fit, keep the rest). A server must not store what they would skip: an
acknowledged byte is never taken back, and every process reading the copy would pay for it
again. So ``check_record`` refuses everything ``RecordDecoder`` would skip or drop, and more:

- the record decodes as a ``tracklet.v1.Record`` (``decode_record``), and its parsed objects take
  at most ``MAX_PARSE_BYTES`` (``core/parsecost.py``: estimated from the wire format before
  parsing, since dense repeated fields cost up to ~50x their bytes once parsed);
- a batch's new key ids continue the run's ids without a gap (ids are dense, so the key table
  grows only by what a frame defines; redefining a known id is allowed), up to ``MAX_KEY_ID``;
- a column's key is a defined id, at most one of its value fields is filled, its row indices are
  within the batch, and it has one value per row (per listed row when ``rows`` is set);
- a batch has one time per step;
- a ``RunStart``'s schema version is one this version knows.

``check_record(record, known_keys)`` is a pure function: ``known_keys`` is how many key ids the
run defined before this record (``0 .. known_keys - 1``); it returns the count after it, or
raises ``RecordRejected`` naming the problem. tracklet's own encoder (``core/encoder.py``)
always writes records that pass. Sizes that only grow with the payload (strings, histograms,
steps) are bounded by the frame's length, which the server's body limit bounds.

A per-value policy limit that every reader enforces by dropping that value alone is not a reason
to refuse a frame: a structured value (``Column.values``) over ``MAX_STRUCTURED_BYTES`` or nested
deeper than ``MAX_NESTING`` (``decode.stored_value_problem``: a writer with another cap, an
importer) is accepted, and readers drop it with a warning, keeping the rest of its batch.
Refusing it made ``tracklet sync`` and the online uploader resend the same chunk forever, so none
of the run's later data arrived. (A value nested past protobuf's own depth limit doesn't parse,
and ``decode_record`` refuses it.)
"""

from __future__ import annotations

from tracklet.core.decode import COLUMN_VALUE_FIELDS, MAX_KEY_ID
from tracklet.core.parsecost import parse_record
from tracklet.proto import records_pb2 as pb
from tracklet.errors import RecordRejected  # noqa: F401  (defined there; imported from here too)

_SCHEMA_VERSIONS = frozenset(pb.SchemaVersion.values())


def decode_record(payload: bytes) -> pb.Record:
    """A frame's payload as a ``Record``; ``RecordRejected`` when it isn't one (bad wire format,
    invalid UTF-8 in a string, nesting past protobuf's depth limit) or when parsing it would take
    more memory than ``parsecost.MAX_PARSE_BYTES`` (checked on the wire format, before parsing)."""
    return parse_record(payload)


def check_record(record: pb.Record, known_keys: int) -> int:
    """Raise ``RecordRejected`` unless ``record`` is safe to fold into a run that has defined
    ``known_keys`` key ids so far; return how many the run has defined after it."""
    kind = record.WhichOneof("kind")
    if kind == "history":
        return _check_history(record.history, known_keys)
    if kind == "run_start" and record.run_start.schema_version not in _SCHEMA_VERSIONS:
        raise RecordRejected(f"run start has schema version {record.run_start.schema_version}, which this server "
                             "doesn't know (a newer client?)")
    return known_keys


def _check_history(batch: pb.HistoryBatch, known_keys: int) -> int:
    steps = len(batch.steps)
    if len(batch.times) != steps:
        raise RecordRejected(f"history batch has {steps} step(s) but {len(batch.times)} time(s)")
    new_ids: set[int] = set()
    for definition in batch.new_keys:
        if definition.id >= known_keys:
            new_ids.add(definition.id)
    defined = known_keys + len(new_ids)
    if defined > MAX_KEY_ID + 1:
        raise RecordRejected(f"history batch takes the run past {MAX_KEY_ID + 1} keys")
    if new_ids and max(new_ids) >= defined:  # a gap: the new ids aren't known_keys, known_keys + 1, ...
        raise RecordRejected(f"history batch defines key id {max(new_ids)} but the run has {known_keys} key(s) "
                             f"and the batch {len(new_ids)} new one(s): key ids must be dense "
                             f"({known_keys}..{defined - 1})")
    for position, column in enumerate(batch.columns):
        if column.key >= defined:
            raise RecordRejected(f"column {position} refers to key id {column.key}, which is not defined "
                                 f"(the run has {defined} key(s))")
        filled = [(field, len(getattr(column, field))) for field in COLUMN_VALUE_FIELDS if len(getattr(column, field))]
        if len(filled) > 1:
            raise RecordRejected(f"column {position} (key id {column.key}) fills {filled[0][0]} and {filled[1][0]}; "
                                 "a column holds values of one type")
        values = filled[0][1] if filled else 0
        rows = len(column.rows)
        if rows:
            highest = max(column.rows)
            if highest >= steps:
                raise RecordRejected(f"column {position} (key id {column.key}) has row index {highest} in a batch "
                                     f"of {steps} row(s)")
            if values != rows:
                raise RecordRejected(f"column {position} (key id {column.key}) lists {rows} row(s) but has "
                                     f"{values} value(s)")
        elif values and values != steps:
            raise RecordRejected(f"column {position} (key id {column.key}) has {values} value(s) for a batch of "
                                 f"{steps} row(s)")
    return defined
