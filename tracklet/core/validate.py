"""Checks that a decoded ``tracklet.v1.Record`` is one the readers and the store can fold safely.

A record log crosses trust boundaries: a server takes uploads from any key holder, and the store
indexes logs it finds on disk. CRC-32 only says a frame arrived as it was written, not that its
writer was honest or sane, and the format has numbers that consumers use as sizes and indices:
``KeyDefinition.id`` (an index into the run's key table), ``Column.rows`` (indices into the
batch's steps), and value counts that must line up with them. One frame with ``id = 50,000,000``
would make the store pad a 50M-entry list. These checks keep every consumer's work proportional
to the bytes it was given.

``check_record(record, known_keys)`` is a pure function: ``known_keys`` is how many key ids the
run defined before this record (ids are dense: ``0 .. known_keys - 1``); it returns the count
after it, or raises ``InvalidRecord`` naming the problem. The rules are what tracklet's own
encoder writes (``core/encoder.py``), so a log written by tracklet always passes:

- a batch's new key ids continue the run's ids without a gap (redefining a known id is allowed);
- a column's key is a defined id, at most one of its value fields is filled, its row indices are
  within the batch, and it has one value per row (per listed row when ``rows`` is set);
- a batch has one time per step;
- key names fit the store (``MAX_KEY_NAME_CHARS``);
- enum fields hold values this version knows (readers name them).

Sizes that only grow with the payload (strings, histograms, steps) are bounded by the frame's
length, which the caller bounds (the server's body limit, ``MAX_RECORD_BYTES`` on disk).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from tracklet.proto import records_pb2 as pb

# The store's ``series.key`` column (``store/schema.py``): a longer name can't be indexed.
MAX_KEY_NAME_CHARS = 1024

_VALUE_FIELDS = ("floats", "ints", "bools", "strings", "histograms")
_ALERT_LEVELS = frozenset(pb.Alert.Level.values())
_STREAMS = frozenset(pb.ConsoleOutput.Stream.values())
_SUMMARY_MODES = frozenset(pb.SummaryMode.values())
_SCHEMA_VERSIONS = frozenset(pb.SchemaVersion.values())


class InvalidRecord(ValueError):
    """A record that consumers of the log must not fold: the message says what is wrong."""


def decode_record(payload: bytes) -> pb.Record:
    """A frame's payload as a ``Record``; ``InvalidRecord`` when it isn't one (bad wire format,
    invalid UTF-8 in a string, nesting past protobuf's depth limit)."""
    record = pb.Record()
    try:
        record.ParseFromString(payload)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InvalidRecord(f"not a tracklet.v1.Record ({error or type(error).__name__})") from None
    return record


def check_record(record: pb.Record, known_keys: int) -> int:
    """Raise ``InvalidRecord`` unless ``record`` is safe to fold into a run that has defined
    ``known_keys`` key ids so far; return how many the run has defined after it."""
    kind = record.WhichOneof("kind")
    if kind == "history":
        return _check_history(record.history, known_keys)
    if kind == "console":
        if record.console.stream not in _STREAMS:
            raise InvalidRecord(f"console output has an unknown stream {record.console.stream}")
    elif kind == "alert":
        if record.alert.level not in _ALERT_LEVELS:
            raise InvalidRecord(f"alert has an unknown level {record.alert.level}")
    elif kind == "metric_definition":
        unknown = [mode for mode in record.metric_definition.summary if mode not in _SUMMARY_MODES]
        if unknown:
            raise InvalidRecord(f"metric definition has an unknown summary mode {unknown[0]}")
    elif kind == "run_start":
        if record.run_start.schema_version not in _SCHEMA_VERSIONS:
            raise InvalidRecord(f"run start has an unknown schema version {record.run_start.schema_version}")
    return known_keys


def _check_history(batch: pb.HistoryBatch, known_keys: int) -> int:
    steps = len(batch.steps)
    if len(batch.times) != steps:
        raise InvalidRecord(f"history batch has {steps} step(s) but {len(batch.times)} time(s)")
    new_ids: set[int] = set()
    for definition in batch.new_keys:
        if len(definition.name) > MAX_KEY_NAME_CHARS:
            raise InvalidRecord(f"key id {definition.id} has a name of {len(definition.name)} characters; "
                                f"at most {MAX_KEY_NAME_CHARS} are allowed")
        if definition.id >= known_keys:
            new_ids.add(definition.id)
    defined = known_keys + len(new_ids)
    if new_ids and max(new_ids) >= defined:  # a gap: the new ids aren't known_keys, known_keys + 1, ...
        raise InvalidRecord(f"history batch defines key id {max(new_ids)} but the run has {known_keys} key(s) "
                            f"and the batch {len(new_ids)} new one(s): key ids must be dense "
                            f"({known_keys}..{defined - 1})")
    for position, column in enumerate(batch.columns):
        if column.key >= defined:
            raise InvalidRecord(f"column {position} refers to key id {column.key}, which is not defined "
                                f"(the run has {defined} key(s))")
        filled = [(field, len(getattr(column, field))) for field in _VALUE_FIELDS if len(getattr(column, field))]
        if len(filled) > 1:
            raise InvalidRecord(f"column {position} (key id {column.key}) fills {filled[0][0]} and {filled[1][0]}; "
                                "a column holds values of one type")
        values = filled[0][1] if filled else 0
        rows = len(column.rows)
        if rows:
            highest = max(column.rows)
            if highest >= steps:
                raise InvalidRecord(f"column {position} (key id {column.key}) has row index {highest} in a batch "
                                    f"of {steps} row(s)")
            if values != rows:
                raise InvalidRecord(f"column {position} (key id {column.key}) lists {rows} row(s) but has "
                                    f"{values} value(s)")
        elif values and values != steps:
            raise InvalidRecord(f"column {position} (key id {column.key}) has {values} value(s) for a batch of "
                                f"{steps} row(s)")
    return defined
