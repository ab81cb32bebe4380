"""What parsing a record costs in memory, estimated from its wire format before it is parsed.

A frame's payload is parsed into protobuf's (upb's) objects, which cost far more than the bytes
for dense repeated fields: an empty ``Column`` is 2 bytes on the wire and ~97 bytes parsed, an
empty structured value (``Column.values``) 2 and ~48, a packed ``sint64`` of one byte 16 (the
array doubles as it grows). A frame within the server's body limit (64 MiB) could cost 3 GiB, and
one within ``MAX_RECORD_BYTES`` (a log read from disk) far more. Every place that parses a frame
from outside (the server's upload check, the indexer and readers through ``core/decode.py``,
resume downloads, ``tracklet sync``'s media scan) first asks :func:`record_parse_problem`.

The estimate walks the wire format with ``records.proto``'s descriptors, counting what upb
allocates per field: a message instance (its fields' slots), a repeated element's pointer or
value (twice, for the array's growth), a string's copy. It is an upper bound within ~2x of what
upb takes (measured: tests/test_parsecost.py), never below it, so it never refuses a record that
fits. It costs nothing for a payload too small to reach the limit whatever it holds (at most
``limit / MAX_RATIO`` bytes), one pass of C-level byte counting for packed arrays and strings, and
a Python step per other field only for larger payloads, stopping as soon as the limit is passed:
time is bounded by the payload's bytes and the limit.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from tracklet.errors import RecordRejected
from tracklet.proto import records_pb2 as pb

# The most memory parsing one record may take (what the estimate may reach): a frame of packed
# floats costs about its bytes, so any 64 MiB upload of numbers fits; a crafted frame of empty
# repeated messages is refused instead of costing ~50x its bytes.
MAX_PARSE_BYTES = 256 << 20

_SLOT = 8  # a scalar, a pointer to a sub-message or to a repeated field's array
_STRING_SLOT = 16  # upb's string view
_HEADER = 16  # a message's header and presence bits
_ELEMENT = 20  # a repeated element's pointer or value, twice over for the array's growth, and rounding
_STRING_COPY = 44  # beyond a repeated string's bytes: its view in the array (grown), the arena's rounding
_MAP_ENTRY = 64  # a map entry's hash table slot, beyond its key and value
_UNKNOWN = 16  # an unknown field is kept as its bytes plus a little

_STRING_TYPES = frozenset((FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES))
_FIXED_WIDTH = {FieldDescriptor.TYPE_DOUBLE: 8, FieldDescriptor.TYPE_FIXED64: 8, FieldDescriptor.TYPE_SFIXED64: 8,
                FieldDescriptor.TYPE_FLOAT: 4, FieldDescriptor.TYPE_FIXED32: 4, FieldDescriptor.TYPE_SFIXED32: 4}
# Messages nested deeper than protobuf's parser allows (100) aren't walked: the parser refuses them.
_MAX_DEPTH = 128
_LOW_BYTES = bytes(range(0x80))
_COUNT_PIECE = 1 << 20  # a varint's last byte; deleting them leaves its continuation bytes

# Field kinds, as the walk tells them apart.
_MESSAGE, _PACKED_VARINTS, _PACKED_FIXED, _STRING, _SCALAR = range(5)


@dataclasses.dataclass
class _Field:
    kind: int
    repeated: bool
    shape: "_Shape | None" = None  # a message field's type
    element: int = 0  # what each element of a repeated message or string field adds


@dataclasses.dataclass
class _Shape:
    instance: int  # what one parsed instance of the message costs, its fields' contents aside
    fields: dict[int, _Field]


_SHAPES: dict[Any, _Shape] = {}  # by descriptor: two pools may hold types of one name (tracing/otlp.py)


def _shape(descriptor: Any) -> _Shape:
    known = _SHAPES.get(descriptor)
    if known is not None:
        return known
    shape = _Shape(0, {})
    _SHAPES[descriptor] = shape  # before the fields: messages nest themselves (Value)
    slots = 0
    seen_oneofs: set[str] = set()
    for field in descriptor.fields:
        slot = _STRING_SLOT if field.type in _STRING_TYPES and not _is_repeated(field) else _SLOT
        oneof = field.containing_oneof
        if oneof is not None:  # members share one slot, plus the case
            if oneof.name not in seen_oneofs:
                seen_oneofs.add(oneof.name)
                slots += _STRING_SLOT + _SLOT
        else:
            slots += slot
        repeated = _is_repeated(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = _MAP_ENTRY if field.message_type.GetOptions().map_entry else 0
            shape.fields[field.number] = _Field(_MESSAGE, repeated, _shape(field.message_type),
                                                (_ELEMENT if repeated else 0) + entry)
        elif field.type in _STRING_TYPES:
            shape.fields[field.number] = _Field(_STRING, repeated, element=_STRING_COPY)
        elif repeated and field.type in _FIXED_WIDTH:
            shape.fields[field.number] = _Field(_PACKED_FIXED, repeated)
        elif repeated:
            shape.fields[field.number] = _Field(_PACKED_VARINTS, repeated)
        else:
            shape.fields[field.number] = _Field(_SCALAR, repeated)
    shape.instance = _HEADER + slots
    return shape


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _max_ratio(root: _Shape) -> int:
    """The most the estimate can charge per byte of payload, over every field of every message
    ``root`` may hold: how small a payload is safe without walking it."""
    ratio = max(_ELEMENT + _STRING_COPY, 2 * _ELEMENT)  # an empty string (2 bytes), a 1-byte varint
    seen: set[int] = set()
    shapes = [root]
    while shapes:
        shape = shapes.pop()
        if id(shape) in seen:
            continue
        seen.add(id(shape))
        for field in shape.fields.values():
            if field.kind == _MESSAGE and field.shape is not None:
                shapes.append(field.shape)
                # A singular message field repeated on the wire is merged into one instance.
                if field.repeated:
                    ratio = max(ratio, field.shape.instance + field.element)  # its smallest: 2 bytes
    return ratio // 2 + 1


_RATIOS: dict[Any, int] = {}


def _ratio(descriptor: Any) -> int:
    ratio = _RATIOS.get(descriptor)
    if ratio is None:
        ratio = _RATIOS[descriptor] = _max_ratio(_shape(descriptor))
    return ratio


#: The most a ``Record`` payload may cost per byte (at most ``MAX_PARSE_BYTES / MAX_RATIO`` bytes
#: are parsed unwalked).
MAX_RATIO = _ratio(pb.Record.DESCRIPTOR)


def parse_cost(payload: bytes, limit: int | None = None, message: Any = pb.Record.DESCRIPTOR) -> int:
    """An upper bound on the bytes parsing ``payload`` as a ``message`` (a descriptor; a ``Record``
    by default) allocates; once it passes ``limit`` (``MAX_PARSE_BYTES`` as it is at the call, by
    default) counting stops and what was counted so far (more than ``limit``) is returned. A
    payload that isn't valid wire format is counted as far as it can be (the parser then refuses it)."""
    if limit is None:
        limit = MAX_PARSE_BYTES
    ratio = _ratio(message)
    if len(payload) * ratio <= limit:
        return len(payload) * ratio
    return walk_cost(bytes(payload), limit, message)


def walk_cost(data: bytes, limit: int, message: Any = pb.Record.DESCRIPTOR) -> int:
    """:func:`parse_cost` without its shortcut for small payloads: the walk itself."""
    root = _shape(message)
    cost = root.instance
    # (resume position, end, shape) of the messages whose fields are being walked, outermost first
    stack: list[tuple[int, int, _Shape]] = []
    position, end, shape = 0, len(data), root
    while True:
        if position >= end:
            if not stack:
                return cost
            position, end, shape = stack.pop()
            continue
        tag = data[position]
        position += 1
        if tag >= 0x80:
            tag, position = _varint(data, position, tag)
            if position < 0:
                return cost
        wire_type = tag & 7
        field = shape.fields.get(tag >> 3)
        if wire_type == 2:
            if position >= end:
                return cost
            length = data[position]
            position += 1
            if length >= 0x80:
                length, position = _varint(data, position, length)
                if position < 0:
                    return cost
            stop = position + length
            if stop > end:
                return cost
            if field is None:
                cost += length + _UNKNOWN
            elif field.kind == _MESSAGE and field.shape is not None:
                cost += field.shape.instance + field.element
                if length:
                    if len(stack) >= _MAX_DEPTH:
                        return cost  # deeper than protobuf parses: the parser refuses it
                    stack.append((stop, end, shape))
                    end, shape = stop, field.shape
                    if cost > limit:
                        return cost
                    continue
            elif field.kind == _STRING:
                cost += length + (field.element if field.repeated else 0)
            elif field.kind == _PACKED_VARINTS:
                cost += _varint_count(data, position, stop) * _ELEMENT
            elif field.kind == _PACKED_FIXED:
                cost += 2 * length
            position = stop
        elif wire_type == 0:
            while position < end and data[position] >= 0x80:
                position += 1
            position += 1
            cost += _UNKNOWN if field is None else (_ELEMENT if field.repeated else 0)
        elif wire_type == 1 or wire_type == 5:
            position += 8 if wire_type == 1 else 4
            cost += _UNKNOWN if field is None else (_ELEMENT if field.repeated else 0)
        else:  # groups: not in proto3; the parser decides
            return cost
        if cost > limit:
            return cost


def _varint_count(data: bytes, start: int, stop: int) -> int:
    """How many varints end in ``data[start:stop]`` (bytes without the continuation bit), counted
    at C level a piece at a time: a copy of at most ``_COUNT_PIECE`` bytes at once."""
    count = 0
    for piece in range(start, stop, _COUNT_PIECE):
        end = min(stop, piece + _COUNT_PIECE)
        count += end - piece - len(data[piece:end].translate(None, _LOW_BYTES))
    return count


def _varint(data: bytes, position: int, first: int) -> tuple[int, int]:
    """The varint whose first byte ``first`` was read before ``position``, and the position after
    it; position -1 when it runs past the data or past ten bytes."""
    value = first & 0x7F
    shift = 7
    while position < len(data) and shift < 70:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    return 0, -1


def record_parse_problem(payload: bytes, limit: int | None = None, message: Any = pb.Record.DESCRIPTOR,
                         what: str = "record") -> str | None:
    """Why ``payload`` must not be parsed as a ``message`` (a ``Record`` by default; ``what`` names
    it): its parsed objects would take more than ``limit`` bytes (``MAX_PARSE_BYTES`` as it is at
    the call, by default: tests lower it); or ``None``."""
    if limit is None:
        limit = MAX_PARSE_BYTES
    if parse_cost(payload, limit, message) <= limit:
        return None
    return (f"a {len(payload):,}-byte {what} whose fields would take more than {limit >> 20} MiB of memory to "
            "parse (estimated from its wire format: dense repeated fields, e.g. millions of empty structured "
            "values or columns); refused unparsed")


# What ``json.loads`` allocates, at most, per token of a JSON text (Python 3.11's objects, measured with
# tracemalloc: tests/test_parsecost.py): an array (an empty list, 56 bytes, and its slot), an object (a
# dict of up to five entries, 184, and its slot), a value after a ``,`` or ``:`` (its slot, grown, and a
# float or int object), a string (its header; its characters are counted with the text's). ``[[],...]``
# takes ~22x its bytes, ``[{},...]`` ~25x, a typical OTLP span ~6x; the estimate is within ~2x above
# those (``[{},...]`` and lists of empty strings, 3-10x: not what a client sends).
_JSON_ARRAY = 72
_JSON_OBJECT = 200
_JSON_VALUE = 48
_JSON_STRING = 60
_JSON_BASE = 1024  # the decoded text's and the parser's own objects


_WIDENING_ESCAPE = re.compile(rb"\\u(?:0[1-9a-fA-F]|[1-9a-fA-F])")  # a \uXXXX escape past U+00FF
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")  # half of an astral character's escape


def json_parse_cost(text: bytes) -> int:
    """An upper bound on the bytes ``json.loads(text)`` allocates, from its tokens counted at C level
    (brackets, separators and quotes inside strings counted too: an overestimate): its text decoded
    and its strings' characters (up to 4 bytes a character where the text isn't ASCII), and
    ``_JSON_*`` per array, object, value and string. A few passes over the bytes, whatever they hold."""
    # the text decoded and its strings (and, not ASCII, the pieces a string is joined from), at up to
    # 4 bytes a character. In ASCII text an escape past U+00FF widens its whole string (2 bytes a
    # character; an astral pair's surrogates, 4): measured 4.8x and 7.3x its bytes.
    if not text.isascii():
        per_byte = 12
    elif _SURROGATE_ESCAPE.search(text):
        per_byte = 8
    elif _WIDENING_ESCAPE.search(text):
        per_byte = 6
    elif b"\\" in text:  # any other escape: its string is joined from pieces (measured 2.25x)
        per_byte = 3
    else:
        per_byte = 2
    characters = len(text) * per_byte
    return (_JSON_BASE + characters + _JSON_ARRAY * text.count(b"[") + _JSON_OBJECT * text.count(b"{")
            + _JSON_VALUE * (text.count(b",") + text.count(b":") + 1) + _JSON_STRING * (text.count(b'"') // 2))


def parse_record(payload: bytes, limit: int | None = None) -> pb.Record:
    """``payload`` parsed as a ``Record`` once its cost is known to be within ``limit``;
    ``RecordRejected`` naming the problem otherwise (too costly, or not a record at all)."""
    problem = record_parse_problem(payload, limit)
    if problem is not None:
        raise RecordRejected(problem)
    record = pb.Record()
    try:
        record.ParseFromString(payload)
    except (DecodeError, RuntimeError, ValueError) as error:  # bad wire format, bad UTF-8, nesting too deep
        raise RecordRejected(f"not a tracklet.v1.Record ({error or type(error).__name__})") from None
    return record
