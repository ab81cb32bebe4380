"""Plain data (what :func:`~tracklet.core.values.structured` and ``to_plain`` return) as the bytes of a
``tracklet.v1.Value``, and what parsing those bytes costs a reader, in one walk.

The sender's worker records structured history values (lists W&B keeps as JSON) and the summary's
values this way. Building them as ``core/wire.py`` messages took a Python object or two per item
and two more walks to size and serialize them (~7-14 us an item here: 8 rows of ten 240 KB lists of
empty lists took the worker 35-70 s); this walk writes the bytes directly, and lays lists whose items
are all of one simple kind (empty lists or dicts, floats, strings, ``None``) out at C level. The
bytes are those ``wire`` (and protobuf's deterministic serializer) write for the same value:
tests/test_valuewire.py compares them.

The cost is ``core/parsecost.py``'s estimate of the bytes, computed from the value instead of its
wire format (no protobuf import, no second walk): ``VALUE`` per ``Value`` message, ``LIST`` per list
or map, ``ELEMENT`` per repeated element, ``ENTRY`` per map entry, and the bytes of every string. The
constants restate parsecost's shapes; tests/test_valuewire.py checks them against it and checks the
estimate equals ``parsecost.walk_cost`` of the bytes.
"""

from __future__ import annotations

import struct
from itertools import chain
from typing import Any

from tracklet.core.wire import varint as _varint
from tracklet.errors import Unsupported

# parsecost's costs of the messages a Value tree is made of (its _shape(...).instance), restated.
VALUE = 40  # a Value message
LIST = 24  # a ValueList or a ValueMap
ENTRY = 40  # a MapEntry
HISTOGRAM = 48  # a Histogram
ELEMENT = 20  # an element of a repeated message field, or a value of a packed varint field
STRING_COPY = 44  # beyond its bytes, an element of a repeated string field
DOUBLE = 16  # a value of a packed double field (twice its 8 bytes: the array grows)
# The messages of a history record around its values.
RECORD = 40
HISTORY_BATCH = 48
COLUMN = 88
KEY_DEFINITION = 40

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_double = struct.Struct("<d").pack

# A ValueList item's (field 1) tag and length, by length.
_ITEM = [b"\x0a" + bytes((n,)) for n in range(128)]
# A ValueList item that is a string Value of n bytes (n < 126): the item's tag and length, the string's.
_STRING_ITEM = [b"\x0a" + bytes((n + 2, 0x22, n)) for n in range(126)]
_EMPTY_LIST = b"\x32\x00"
_EMPTY_MAP = b"\x3a\x00"
_NULL = b"\x40\x00"
_TRUE, _FALSE = b"\x18\x01", b"\x18\x00"
_LEAVES = frozenset((str, float, type(None), bool))
_FEW = 8


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _item(payload: bytes) -> bytes:
    """``payload`` (a Value's bytes) as an item of a ValueList."""
    size = len(payload)
    return (_ITEM[size] if size < 128 else b"\x0a" + _varint(size)) + payload


def encode(value: Any) -> tuple[bytes, int]:
    """``value`` as the bytes of a ``Value`` and parsecost's estimate of parsing them (the Value's
    own instance included, not the slot of a repeated field that holds it). Raises as writing it as
    a ``wire`` message would: ``UnicodeEncodeError`` for a lone surrogate, ``ValueError`` for an int
    too long to write in decimal, :class:`~tracklet.errors.Unsupported` for a type plain data doesn't hold."""
    cost = [VALUE]
    return _value(value, cost), cost[0]


def _value(value: Any, cost: list[int]) -> bytes:
    """The bytes of a Value; adds to ``cost[0]`` what its contents cost (not its own instance)."""
    kind = type(value)
    if kind is list:
        return _list(value, cost)
    if kind is str:
        data = value.encode("utf-8")
        cost[0] += len(data)
        return b"\x22" + _varint(len(data)) + data
    if kind is float:
        return b"\x09" + _pack_double(value)
    if kind is dict:
        return _map(value, cost)
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x10" + _varint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)
        text = str(value).encode()  # ValueError past sys.get_int_max_str_digits() digits
        cost[0] += len(text)
        return b"\x52" + _varint(len(text)) + text
    if value is None:
        return _NULL
    if kind is bytes:
        cost[0] += len(value)
        return b"\x2a" + _varint(len(value)) + value
    from tracklet.core.values import Histogram

    if isinstance(value, Histogram):
        data, histogram_cost = histogram(value)
        cost[0] += histogram_cost
        return b"\x4a" + _varint(len(data)) + data
    raise Unsupported(kind.__qualname__)


def histogram(value: Any) -> tuple[bytes, int]:
    """A :class:`~tracklet.core.values.Histogram` as the bytes of a ``Histogram`` message (as
    ``values.fill_histogram`` fills one) and parsecost's estimate of parsing them."""
    from tracklet.core import wire
    from tracklet.core.values import fill_histogram

    message = wire.Message("Histogram")
    fill_histogram(message, value)
    return message.SerializeToString(), histogram_cost(value)


def histogram_cost(value: Any) -> int:
    """parsecost's estimate of a Histogram message holding ``value`` (its fields' arrays)."""
    return HISTOGRAM + DOUBLE * len(value.edges) + ELEMENT * len(value.counts)


def _list(items: list[Any], cost: list[int]) -> bytes:
    count = len(items)
    cost[0] += LIST + (ELEMENT + VALUE) * count
    if not count:
        return _EMPTY_LIST
    types = set(map(type, items))
    body: bytes | bytearray
    if count < _FEW:  # laying a few items out at C level costs more than their own walk
        body = b"".join([_item(_value(item, cost)) for item in items])
    elif len(types) == 1 and types <= _LEAVES or types <= {list, dict}:
        kind = next(iter(types)) if len(types) == 1 else None
        if kind is list and not any(items):
            cost[0] += LIST * count
            body = b"\x0a\x02\x32\x00" * count
        elif kind is dict and not any(items):
            cost[0] += LIST * count
            body = b"\x0a\x02\x3a\x00" * count
        elif kind is str:
            data = [text.encode("utf-8") for text in items]
            cost[0] += sum(map(len, data))
            if max(map(len, data)) < 126:
                body = b"".join(chain.from_iterable(zip(map(_STRING_ITEM.__getitem__, map(len, data)), data)))
            else:
                body = b"".join([_item(b"\x22" + _varint(len(text)) + text) for text in data])
        elif kind is float:
            doubles = struct.pack(f"<{count}d", *items)
            out = bytearray(11 * count)
            out[0::11] = b"\x0a" * count
            out[1::11] = b"\x09" * count
            out[2::11] = b"\x09" * count
            for byte in range(8):
                out[3 + byte :: 11] = doubles[byte::8]
            body = out
        elif kind is type(None):
            body = b"\x0a\x02\x40\x00" * count
        else:
            body = b"".join([_item(_value(item, cost)) for item in items])
    else:
        body = b"".join([_item(_value(item, cost)) for item in items])
    return b"\x32" + _varint(len(body)) + body


def _map(mapping: dict[Any, Any], cost: list[int]) -> bytes:
    cost[0] += LIST + (ELEMENT + ENTRY + VALUE) * len(mapping)
    if not mapping:
        return _EMPTY_MAP
    parts: list[bytes] = []
    for key, item in mapping.items():
        field = _KEY_FIELDS.get(key) if type(key) is str else None
        if field is None:
            field = _key_field(key)
        value = _value(item, cost)
        cost[0] += field[1]
        size = len(value)
        entry_size = len(field[0]) + 1 + (1 if size < 128 else len(_varint(size))) + size
        parts += (b"\x0a" + _varint(entry_size) + field[0] + b"\x12" + _varint(size), value)
    body = b"".join(parts)
    return b"\x3a" + _varint(len(body)) + body


# A map key's field (its tag, length and UTF-8 bytes; nothing for "") and its bytes' count, by key:
# the keys of a list of dicts repeat. Cleared when it holds _MAX_KEYS.
_KEY_FIELDS: dict[str, tuple[bytes, int]] = {}
_MAX_KEYS = 4096


def _key_field(key: Any) -> tuple[bytes, int]:
    name = (key if type(key) is str else _key_text(key)).encode("utf-8")
    field = (b"\x0a" + _varint(len(name)) + name if name else b"", len(name))
    if type(key) is str:
        if len(_KEY_FIELDS) >= _MAX_KEYS:
            _KEY_FIELDS.clear()
        _KEY_FIELDS[key] = field
    return field


def _key_text(key: Any) -> str:
    """A map key that is not a ``str``, as ``wire`` takes it for a string field (or raises as it does)."""
    from tracklet.core.wire import _check_string

    return _check_string(key)


def map_entry(key: Any, value: Any) -> bytes:
    """The bytes of a ``MapEntry`` (``key``, ``value`` plain data), as ``values.fill_entries`` writes one."""
    name = (key if type(key) is str else _key_text(key)).encode("utf-8")
    data = _value(value, [0])
    return (b"\x0a" + _varint(len(name)) + name if name else b"") + b"\x12" + _varint(len(data)) + data
