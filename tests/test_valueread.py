"""Structured values read back fast (core/valueread.py) are exactly what the item-by-item decode
gives: same types (bools stay bools, ints ints), same float bits (NaN payloads, -0.0), fresh
containers, for values as the worker writes them, as protobuf writes them, and for bytes a writer
never lays out (unknown fields), which must take the item-by-item path."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklet.core import decode, valuewire
from tracklet.core.values import MAX_NESTING, from_value_message, histogram_from_message, parse_big_int
from tracklet.proto import records_pb2 as pb

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TEXT = st.text(max_size=6) | st.sampled_from(["", "é", "\U0001f600"])
_FLOAT = st.floats() | st.sampled_from([-0.0, 0.0, float("nan"), -float("nan"), float("inf"), -float("inf"),
                                        struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]])
_LEAF = st.none() | st.booleans() | _FLOAT | st.integers(-(2**70), 2**70) | _TEXT | st.binary(max_size=4)
# Long lists of one simple kind (the fast path), and of that kind but for one item (its fallback).
_KINDS = (_FLOAT, st.none(), st.just([]), st.just({}))
# Rows of floats ([x, y] pairs...): up to MAX_ROW (10) wide, and one past it.
_ROWS = st.integers(1, 11).flatmap(lambda width: st.lists(st.lists(_FLOAT, min_size=width, max_size=width),
                                                          min_size=8, max_size=30))
_UNIFORM = st.one_of(*(st.lists(kind, min_size=8, max_size=40) for kind in _KINDS), _ROWS)
_ODD = _LEAF | st.just([1]) | st.just({"a": None}) | st.lists(_FLOAT, max_size=11) | st.just([1.0, None])
_ALMOST = st.tuples(_UNIFORM, st.integers(0, 39), _ODD).map(
    lambda args: args[0][: args[1]] + [args[2]] + args[0][args[1]:])
_PLAIN = st.recursive(_LEAF | _UNIFORM | _ALMOST,
                      lambda children: st.lists(children, max_size=10) | st.dictionaries(_TEXT, children, max_size=4),
                      max_leaves=60)


def reference(message: Any) -> Any:
    """The item-by-item decode (``from_value_message`` before the fast path)."""
    which = message.WhichOneof("kind")
    if which == "map_value":
        return {entry.key: reference(entry.value) for entry in message.map_value.entries}
    if which == "list_value":
        return [reference(item) for item in message.list_value.items]
    if which == "histogram_value":
        return histogram_from_message(message.histogram_value)
    if which == "big_int_value":
        return parse_big_int(message.big_int_value)
    return None if which is None or which == "null_value" else getattr(message, which)


def exact(value: Any) -> Any:
    """``value`` with every type and float bit pattern made comparable with ``==``."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, list):
        return ("list", [exact(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(key, exact(item)) for key, item in value.items()])
    return (type(value).__name__, value)


def _check(message: pb.Value) -> None:
    got = from_value_message(message)
    assert exact(got) == exact(reference(message))
    containers: list[int] = []
    stack = [got]
    while stack:  # no list or dict is shared between items
        item = stack.pop()
        if isinstance(item, (list, dict)):
            containers.append(id(item))
            stack.extend(item if isinstance(item, list) else item.values())
    assert len(containers) == len(set(containers))


@_SETTINGS
@given(st.lists(st.one_of(*_KINDS), min_size=8, max_size=30), st.integers(0, 29), st.binary(min_size=1, max_size=3))
def test_bytes_a_writer_never_lays_out_are_read_item_by_item(items, where, unknown):
    data, _ = valuewire.encode(items)
    message = pb.Value.FromString(data)
    target = message.list_value.items[where % len(items)]
    # An unknown field (number 15, length-delimited) inside one item: protobuf keeps and rewrites it.
    target.MergeFromString(b"\x7a" + bytes((len(unknown),)) + unknown)
    _check(message)
    _check(pb.Value.FromString(message.SerializeToString()))


def _reference_problem(value: pb.Value) -> str | None:
    level, depth = [value], 0
    while level:
        below: list[pb.Value] = []
        for item in level:
            kind = item.WhichOneof("kind")
            if kind == "list_value":
                below.extend(item.list_value.items)
            elif kind == "map_value":
                below.extend(entry.value for entry in item.map_value.entries)
        if below:
            depth += 1
            if depth > MAX_NESTING:
                return "deep"
        level = below
    return None


# One test for the two properties of a plain value (they were two tests, each drawing its 300 values: the
# drawing, not the checks, took ~10 s of CPU a test).
@_SETTINGS
@given(_PLAIN, st.integers(MAX_NESTING - 3, MAX_NESTING + 1))
def test_what_is_read_is_what_the_item_by_item_decode_gives_and_the_depth_check_counts_a_uniform_list_as_one_level(
        value, depth):
    data, _ = valuewire.encode(value)
    _check(pb.Value.FromString(data))
    for nested in (value, [[] for _ in range(10)], [None] * 9):
        for _ in range(depth):
            nested = [nested]
        message = pb.Value.FromString(valuewire.encode(nested)[0])
        assert (decode.stored_value_problem(message) is None) == (_reference_problem(message) is None)
