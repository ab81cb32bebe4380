"""Lists of one simple kind in a ``tracklet.v1.Value``, read from their bytes at C level.

Decoding a structured history value item by item costs a ``WhichOneof`` call, a Python wrapper and
a dispatch per item (~1-3 us: 8 rows of ten lists of 60,000 empty lists took a reader ~18 s). The
lists W&B logs are mostly of one kind, and ``core/valuewire.py`` lays those out as runs of identical
item headers. :func:`uniform_items` serializes the ``ValueList`` once (protobuf, C level) and
compares it with that layout; when the bytes are exactly a list of empty lists, empty maps,
``None``\\ s or floats, the items are built from the bytes. Anything else (a mixed list, an unknown
field, a non-canonical encoding) is not recognised and is decoded item by item, so the result is
always what the item-by-item decode gives.
"""

from __future__ import annotations

import contextlib
import gc
import struct
from typing import Any, Callable, Iterator

# Lists shorter than this are decoded item by item (serializing them costs more than their walk).
FEW = 8

# A ValueList item (field 1, 2 bytes) holding an empty list, empty map, or null Value.
_EMPTY_LIST_ITEM = b"\x0a\x02\x32\x00"
_EMPTY_MAP_ITEM = b"\x0a\x02\x3a\x00"
_NULL_ITEM = b"\x0a\x02\x40\x00"
# A ValueList item holding a float Value: tag, length 9, float_value's tag, then 8 bytes.
_FLOAT_HEAD = b"\x0a\x09\x09"
_FLOAT_ITEM = 11

# Item kinds that may start a run of one simple kind (checked on a few items before serializing).
_EMPTY_KINDS = {"list_value": "items", "map_value": "entries"}


def _simple(item: Any) -> bool:
    """Whether ``item`` (a Value) is of a kind a uniform list can hold: an empty list or map, a
    null, a float."""
    kind = item.WhichOneof("kind")
    if kind in _EMPTY_KINDS:
        return not len(getattr(getattr(item, kind), _EMPTY_KINDS[kind]))
    return kind in ("null_value", "float_value")


def uniform_kind(value_list: Any) -> tuple[str, bytes] | None:
    """``(kind, bytes)`` when every item of ``value_list`` (a ``ValueList`` message with at least
    ``FEW`` items) is of one simple kind in canonical encoding: kind is ``"list"``, ``"map"``, ``"null"``
    or ``"float"``, bytes the list's serialization. None otherwise."""
    items = value_list.items
    count = len(items)
    if count < FEW or not (_simple(items[0]) and _simple(items[count // 2]) and _simple(items[-1])):
        return None
    data = value_list.SerializeToString()
    size = len(data)
    if size == 4 * count:
        head = data[:4]
        if head in _PATTERNS and data == head * count:
            return _PATTERNS[head], data
        return None
    if (size == _FLOAT_ITEM * count and data[0::_FLOAT_ITEM] == b"\x0a" * count
            and data[1::_FLOAT_ITEM] == b"\x09" * count and data[2::_FLOAT_ITEM] == b"\x09" * count):
        return "float", data
    return None


_PATTERNS = {_EMPTY_LIST_ITEM: "list", _EMPTY_MAP_ITEM: "map", _NULL_ITEM: "null"}


def _floats(data: bytes, count: int) -> list[float]:
    doubles = bytearray(8 * count)
    for byte in range(8):
        doubles[byte::8] = data[3 + byte :: _FLOAT_ITEM]
    return list(struct.unpack(f"<{count}d", doubles))


def _empty_lists(data: bytes, count: int) -> list[Any]:
    with _collector_paused():
        return [[] for _ in range(count)]


def _empty_maps(data: bytes, count: int) -> list[Any]:
    with _collector_paused():
        return [{} for _ in range(count)]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Empty containers can't form a cycle: the collector's passes over them while they are made
    (a full one each time a quarter more objects live) cost several times the making itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_BUILD: dict[str, Callable[[bytes, int], list[Any]]] = {
    "list": _empty_lists,
    "map": _empty_maps,
    "null": lambda data, count: [None] * count,
    "float": _floats,
}


def uniform_items(value_list: Any) -> list[Any] | None:
    """The items of ``value_list`` (a ``ValueList``) as plain data when they are all of one simple
    kind (see :func:`uniform_kind`), built from its bytes; None when they are not."""
    found = uniform_kind(value_list)
    if found is None:
        return None
    kind, data = found
    return _BUILD[kind](data, len(value_list.items))
