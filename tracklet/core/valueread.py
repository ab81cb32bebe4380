"""Lists of one simple kind in a ``tracklet.v1.Value``, read from their bytes at C level.

Decoding a structured history value item by item costs a ``WhichOneof`` call, a Python wrapper and
a dispatch per item (~1-3 us: 8 rows of ten lists of 60,000 empty lists took a reader ~18 s). The
lists W&B logs are mostly of one kind, and ``core/valuewire.py`` lays those out as runs of identical
item headers. :func:`uniform_items` serializes the ``ValueList`` once (protobuf, C level) and
compares it with that layout; when the bytes are exactly a list of empty lists, empty maps,
``None``\\ s, floats or equally long lists of floats (``[x, y]`` pairs), the items are built from the
bytes. Anything else (a mixed list, an unknown field, a non-canonical encoding) is not recognised
and is decoded item by item, so the result is always what the item-by-item decode gives.
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
# The longest list of floats a list of such lists may hold as rows (its item's length fits a byte).
MAX_ROW = 10

# Item kinds that may start a run of one simple kind (checked on a few items before serializing).
_EMPTY_KINDS = {"list_value": "items", "map_value": "entries"}


def _simple(item: Any) -> bool:
    """Whether ``item`` (a Value) is of a kind a uniform list can hold: an empty list or map, a
    null, a float."""
    kind = item.WhichOneof("kind")
    if kind in _EMPTY_KINDS:
        return not len(getattr(getattr(item, kind), _EMPTY_KINDS[kind]))
    return kind in ("null_value", "float_value")


def _row_width(item: Any) -> int:
    """How many items ``item`` (a Value) holds if it is a list of 1 to ``MAX_ROW`` items starting
    with a float (a candidate row of floats, e.g. an ``[x, y]`` pair); 0 otherwise."""
    if item.WhichOneof("kind") != "list_value":
        return 0
    items = item.list_value.items
    width = len(items)
    return width if 0 < width <= MAX_ROW and items[0].WhichOneof("kind") == "float_value" else 0


def uniform_kind(value_list: Any) -> tuple[str, bytes] | None:
    """``(kind, bytes)`` when every item of ``value_list`` (a ``ValueList`` message with at least
    ``FEW`` items) is of one simple kind in canonical encoding: kind is ``"list"``, ``"map"``, ``"null"``,
    ``"float"`` or ``"float-rows"`` (lists of floats, all of one length up to ``MAX_ROW``), bytes the
    list's serialization. None otherwise."""
    items = value_list.items
    count = len(items)
    if count < FEW:
        return None
    width = _row_width(items[0])
    if width and _row_width(items[count // 2]) == width == _row_width(items[-1]):
        data = value_list.SerializeToString()
        return ("float-rows", data) if _float_rows(data, count, width) else None
    if not (_simple(items[0]) and _simple(items[count // 2]) and _simple(items[-1])):
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


def _float_rows(data: bytes, count: int, width: int) -> bool:
    """Whether ``data`` (a ValueList's bytes) is exactly ``count`` items, each a list of ``width``
    float Values: item tag, its length, list_value's tag, its length, then ``width`` float items."""
    body = _FLOAT_ITEM * width
    stride = 4 + body
    if len(data) != stride * count:
        return False
    heads = (b"\x0a", bytes((2 + body,)), b"\x32", bytes((body,)))
    if any(data[at::stride] != head * count for at, head in enumerate(heads)):
        return False
    return all(data[4 + _FLOAT_ITEM * column + at :: stride] == bytes((head,)) * count
               for column in range(width) for at, head in enumerate(_FLOAT_HEAD))


def _float_row_lists(data: bytes, count: int) -> list[Any]:
    width = (len(data) // count - 4) // _FLOAT_ITEM
    stride = 4 + _FLOAT_ITEM * width
    doubles = bytearray(8 * count * width)
    for column in range(width):
        for byte in range(8):
            doubles[8 * column + byte :: 8 * width] = data[4 + _FLOAT_ITEM * column + 3 + byte :: stride]
    flat = list(struct.unpack(f"<{count * width}d", doubles))
    with _collector_paused():
        return [flat[start : start + width] for start in range(0, count * width, width)]


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
    "float-rows": _float_row_lists,
}


def uniform_items(value_list: Any) -> list[Any] | None:
    """The items of ``value_list`` (a ``ValueList``) as plain data when they are all of one simple
    kind (see :func:`uniform_kind`), built from its bytes; None when they are not."""
    found = uniform_kind(value_list)
    if found is None:
        return None
    kind, data = found
    return _BUILD[kind](data, len(value_list.items))
