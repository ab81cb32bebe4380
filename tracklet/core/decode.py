"""Decoding a record log's frames into records every reader can fold without raising.

A frame that passes its checksum can still hold bytes that are not a ``Record`` (a bug, a
mutated file with a recomputed CRC, a hostile upload), or a ``HistoryBatch`` whose columns don't
fit its rows (a key id that no ``KeyDefinition`` named, a row index past the batch, more values
than rows). :class:`RecordDecoder` parses each payload, drops what can't be read and counts it:

* a payload whose parsed objects would take more than ``parsecost.MAX_PARSE_BYTES`` (estimated
  from its wire format before it is parsed: ``core/parsecost.py``), a payload that doesn't parse,
  or a history batch whose steps and times disagree or that
  defines an absurd key id, is skipped whole (an :class:`InvalidRecord`);
* a column that doesn't fit its batch, or whose key was never defined (its definition may have
  been in a damaged frame), is removed from the batch and counted; the batch's other columns
  are kept;
* a structured value (``Column.values``) larger than ``MAX_STRUCTURED_BYTES`` or nested deeper
  than ``MAX_NESTING`` lists and maps is removed from its column and counted (naming its key);
  the column's other values are kept. Its size is protobuf's count (C level), and its depth is
  walked only within that size, so checking costs what the value's bytes allow.

Unknown fields and record kinds (from a newer writer) are not damage: protobuf keeps or skips
them, and readers skip kinds they don't know. Both the replaying reader (``core/reader.py``) and
the store's indexer (``store/ingest.py``) decode through this, so they agree on what is valid.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

from tracklet.core import valueread
from tracklet.core.parsecost import parse_record
from tracklet.core.recordlog import FRAME_HEADER, Damage
from tracklet.core.values import MAX_NESTING, MAX_STRUCTURED_BYTES
from tracklet.errors import RecordRejected
from tracklet.proto import records_pb2 as pb

# Key ids are assigned 0, 1, 2, ... as keys first appear; one beyond this is damage, not data.
MAX_KEY_ID = (1 << 20) - 1
# Details kept per reader; beyond this only the count grows (a hostile file can hold millions).
MAX_DETAILS = 100
# The value fields of a history Column: exactly one is filled.
COLUMN_VALUE_FIELDS = ("floats", "ints", "bools", "strings", "histograms", "big_ints", "values")
_VALUE_FIELDS = frozenset(COLUMN_VALUE_FIELDS)


@dataclasses.dataclass
class InvalidRecord:
    """A frame with an intact checksum whose content could not be (fully) used."""

    offset: int  # the frame's offset in the record log
    reason: str
    whole: bool = True  # False when only part of the record (some columns) was dropped

    def describe(self) -> str:
        return f"byte {self.offset}: {self.reason}"


class RecordDecoder:
    """Parses payloads in log order, keeping the key ids defined so far to check columns."""

    def __init__(self, known_key_ids: Iterable[int] = ()) -> None:
        self.known_keys: set[int] = set(known_key_ids)
        self.key_names: dict[int, str] = {}  # as defined in this reader's records: for what it reports
        self.invalid: list[InvalidRecord] = []  # the first MAX_DETAILS
        self.invalid_count = 0  # records skipped whole
        self.partial_count = 0  # records kept without some of their columns
        # Regions the recording machine's log had damaged, which an upload replaced by Gap records
        # (adjacent gap frames merged): damage as the copy's readers must report it.
        self.gaps: list[Damage] = []

    def _note(self, offset: int, reason: str, whole: bool = True) -> None:
        if whole:
            self.invalid_count += 1
        else:
            self.partial_count += 1
        if len(self.invalid) < MAX_DETAILS:
            self.invalid.append(InvalidRecord(offset, reason, whole))

    def skipped(self, offset: int, error: BaseException) -> None:
        """Count a record that decoded but that a reader failed to fold (a bug's safety net)."""
        self._note(offset, f"could not be read: {type(error).__name__}: {error}")

    def fold(self, payloads: Iterable[tuple[int, bytes]], apply: Callable[[pb.Record], Any]) -> None:
        """Decode every ``(offset, payload)`` frame and hand each valid record to ``apply``; a
        record ``apply`` fails on is counted (``skipped``) and never stops the ones after it."""
        for offset, payload in payloads:
            record = self.decode(offset, payload)
            if record is None:
                continue
            try:
                apply(record)
            except Exception as error:
                self.skipped(offset, error)

    def decode(self, offset: int, payload: bytes) -> pb.Record | None:
        """The record in ``payload`` (the frame at ``offset``), or ``None`` when it is invalid."""
        try:  # too costly to parse (core/parsecost.py), or not a record at all
            record = parse_record(payload)
        except RecordRejected as error:
            self._note(offset, str(error))
            return None
        except Exception as error:  # whatever else the parser may raise is the frame's fault, never the reader's
            self._note(offset, f"not a tracklet.v1.Record ({type(error).__name__}: {error})")
            return None
        kind = record.WhichOneof("kind")
        if kind == "gap":
            self._gap(offset, len(payload), record.gap.reason)
            return None
        if kind == "history":
            problem = self._check_history(offset, record.history)
            if problem is not None:
                self._note(offset, problem)
                return None
        return record

    def _gap(self, offset: int, payload_size: int, reason: str) -> None:
        end = offset + FRAME_HEADER.size + payload_size  # the frame itself, whatever it claims
        if self.gaps and self.gaps[-1].end == offset:
            self.gaps[-1].end = end
            return
        if len(self.gaps) < MAX_DETAILS:
            self.gaps.append(Damage(offset, end, f"damaged where it was recorded ({reason[:200] or 'unreadable'}); "
                                                 "the upload put a gap record in its place", end=end))

    def _check_history(self, offset: int, batch: pb.HistoryBatch) -> str | None:
        rows = len(batch.steps)
        if len(batch.times) != rows:
            return f"history batch with {rows} step(s) but {len(batch.times)} time(s)"
        defined = [definition.id for definition in batch.new_keys]
        if defined and max(defined) > MAX_KEY_ID:
            return f"history batch defines key id {max(defined)}, beyond {MAX_KEY_ID}"
        self.known_keys.update(defined)
        for definition in batch.new_keys:
            self.key_names[definition.id] = definition.name
        dropped: list[int] = []
        reasons: list[str] = []
        for index, column in enumerate(batch.columns):
            problem = self._column_problem(column, rows)
            if problem is None and len(column.values):
                problem = self._drop_bad_values(offset, column)
            if problem is not None:
                dropped.append(index)
                reasons.append(problem)
        if dropped:
            for index in reversed(dropped):
                del batch.columns[index]
            more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
            self._note(offset, f"dropped {len(dropped)} column(s) of a history batch: "
                               + "; ".join(reasons[:3]) + more, whole=False)
        return None

    def _drop_bad_values(self, offset: int, column: pb.Column) -> str | None:
        """Remove the structured values a writer could not have written (too large, too deep)
        from ``column``, noting each; a problem to drop the column for when none is left."""
        bad = [index for index, value in enumerate(column.values) if stored_value_problem(value) is not None]
        if not bad:
            return None
        name = self.key_names.get(column.key, f"key id {column.key}")
        why = stored_value_problem(column.values[bad[0]])
        if len(bad) == len(column.values):
            return f"{name!r}: every structured value ({why})"
        if not column.rows:
            column.rows.extend(range(len(column.values)))
        for index in reversed(bad):
            del column.values[index]
            del column.rows[index]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        self._note(offset, f"dropped a structured value of {name!r}: {why}{more}", whole=False)
        return None

    def _column_problem(self, column: pb.Column, rows: int) -> str | None:
        if column.key not in self.known_keys:
            return f"key id {column.key} was never defined"
        # The non-empty fields in one call (field-number order, which is COLUMN_VALUE_FIELDS'):
        # a getattr and a len per possible field cost ~15% of a first index of a metrics log.
        filled = [(field.name, len(value)) for field, value in column.ListFields() if field.name in _VALUE_FIELDS]
        if len(filled) > 1:
            return f"key id {column.key} has values of several types ({', '.join(name for name, _ in filled)})"
        count = filled[0][1] if filled else 0
        if column.rows:
            if count != len(column.rows):
                return f"key id {column.key} has {count} value(s) for {len(column.rows)} row(s)"
            if max(column.rows) >= rows:
                return f"key id {column.key} points at row {max(column.rows)} of a batch of {rows}"
        elif count > rows:
            return f"key id {column.key} has {count} value(s) for a batch of {rows} row(s)"
        elif count and count < rows:
            return f"key id {column.key} has {count} value(s) for a batch of {rows} row(s)"
        return None


def stored_value_problem(value: pb.Value) -> str | None:
    """Why a structured history value can't be what a writer wrote, or None: larger than
    ``MAX_STRUCTURED_BYTES`` (protobuf's own count), or lists and maps nested deeper than
    ``MAX_NESTING`` (walked without recursion, only once the size is known to be in bounds; a list
    of one simple kind, ``valueread.uniform_kind``, is one step of it, not one per item)."""
    size = value.ByteSize()
    if size > MAX_STRUCTURED_BYTES:
        return f"{size} bytes, more than the {MAX_STRUCTURED_BYTES} a history value may take"
    level: list[pb.Value] = [value]
    depth = 0
    while level:
        below: list[pb.Value] = []
        for item in level:
            kind = item.WhichOneof("kind")
            if kind == "list_value":
                items = item.list_value.items
                # Items of one simple kind have nothing below them: one stands for them all.
                uniform = len(items) >= valueread.FEW and valueread.uniform_kind(item.list_value) is not None
                below.extend(items[:1] if uniform else items)
            elif kind == "map_value":
                below.extend(entry.value for entry in item.map_value.entries)
        if below:
            depth += 1
            if depth > MAX_NESTING:
                return f"nested deeper than {MAX_NESTING} levels"
        level = below
    return None
