"""The worker writes structured values as bytes in one walk (core/valuewire.py): the bytes are
protobuf's for the same value, the cost it counts is parsecost's estimate of them, and the history
encoder's estimate of a whole record (every value kind) is never below parsecost's, so the sender's
budget and its skipped re-check are sound."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklet.core import encoder, parsecost, valuewire, wire
from tracklet.core.encoder import HistoryEncoder, SummaryTracker
from tracklet.core.values import Histogram, Unsupported, fill_entries, structured, structured_bytes, to_value_message
from tracklet.proto import records_pb2 as pb

_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TEXT = st.text(max_size=12) | st.sampled_from(["", "é", "日本語", "\U0001f600", "x" * 200, "é" * 100])
_LEAF = st.none() | st.booleans() | st.floats() | st.integers() | st.integers(-(2**70), 2**70) | _TEXT | st.binary(
    max_size=8)
_HISTOGRAM = st.builds(lambda edges, counts, nan, inf: Histogram._raw(edges, counts, nan, inf),
                       st.lists(st.floats(), max_size=5), st.lists(st.integers(0, 2**64 - 1), max_size=5),
                       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
# Lists of one kind take the C-level paths: many items of one leaf type, or of empty containers.
_HOMOGENEOUS = st.one_of(*(st.lists(leaf, min_size=1, max_size=40) for leaf in (
    st.floats(), _TEXT, st.none(), st.booleans(), st.integers(-5, 5), st.just([]), st.just({}),
    st.sampled_from([[], {}]), st.sampled_from([[], [1]]))))
_PLAIN = st.recursive(_LEAF | _HISTOGRAM | _HOMOGENEOUS,
                      lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=4),
                      max_leaves=30)


def test_the_costs_restate_parsecosts_shapes():
    shapes = {name: parsecost._shape(getattr(pb, name).DESCRIPTOR).instance
              for name in ("Value", "ValueList", "ValueMap", "MapEntry", "Histogram", "Record", "HistoryBatch",
                           "Column", "KeyDefinition")}
    assert shapes == {"Value": valuewire.VALUE, "ValueList": valuewire.LIST, "ValueMap": valuewire.LIST,
                      "MapEntry": valuewire.ENTRY, "Histogram": valuewire.HISTOGRAM, "Record": valuewire.RECORD,
                      "HistoryBatch": valuewire.HISTORY_BATCH, "Column": valuewire.COLUMN,
                      "KeyDefinition": valuewire.KEY_DEFINITION}
    assert (valuewire.ELEMENT, valuewire.STRING_COPY) == (parsecost._ELEMENT, parsecost._STRING_COPY)
    assert valuewire.DOUBLE == 2 * 8  # parsecost: twice a packed fixed field's bytes


@_FAST
@given(_PLAIN)
def test_a_values_bytes_are_protobufs_and_its_cost_is_parsecosts(value):
    expected = pb.Value()
    to_value_message(value, expected)
    data, cost = valuewire.encode(value)
    assert data == expected.SerializeToString(deterministic=True)
    assert cost == parsecost.walk_cost(data, 1 << 60, pb.Value.DESCRIPTOR)
    built = wire.Message("Value")
    to_value_message(value, built)
    assert data == built.SerializeToString()


@_FAST
@given(st.dictionaries(_TEXT, _PLAIN | _HISTOGRAM, max_size=5))
def test_summary_entries_written_as_bytes_are_protobufs(items):
    built, expected = wire.Record(), pb.Record()
    for record in (built, expected):
        record.summary.SetInParent()
        fill_entries(record.summary.items, items)
    assert built.SerializeToString() == expected.SerializeToString(deterministic=True)


def test_what_a_value_message_refuses_is_refused_as_bytes():
    for value, error in (("\ud800", UnicodeEncodeError), ([1, "\udfff"], UnicodeEncodeError),
                         ({"k": object()}, Unsupported), ([object()], Unsupported)):
        with pytest.raises(error):
            to_value_message(value, wire.Message("Value"))
        with pytest.raises(error):
            structured_bytes(value) if isinstance(value, list) else fill_entries(wire.Record().summary.items,
                                                                                {"k": value})


def test_wandbs_lists_of_empty_lists_are_laid_out_at_once():
    # The shape that took the worker ~40 s for 8 rows: the bytes and the cost, by formula.
    value = structured([[] for _ in range(60_000)])
    data, cost = structured_bytes(value)
    assert data[:1] == b"\x32" and data.endswith(b"\x0a\x02\x32\x00" * 60_000)
    assert cost == parsecost.walk_cost(data, 1 << 60, pb.Value.DESCRIPTOR) == 40 + 24 + 60_000 * (20 + 40 + 24)


_CELL = st.one_of(st.floats(), st.integers(-(2**63), 2**63 - 1), st.booleans(), _TEXT,
                  st.integers(2**63, 2**200), st.integers(-(2**200), -(2**63) - 1), _HISTOGRAM,
                  st.lists(_PLAIN, min_size=1, max_size=4), st.none())


@_FAST
@given(st.lists(st.tuples(st.sampled_from([("a", "b"), ("b", "c", "d"), ("long key é" * 5,)]), st.data()),
                min_size=1, max_size=12))
def test_the_encoders_estimate_of_a_record_is_never_below_parsecosts(rows):
    """Rows of every value kind the encoder writes (numbers, strings, big ints, histograms, structured
    values, missing values, mixed columns), with several key sets: the record's estimate covers it."""
    built = []
    for step, (keys, data) in enumerate(rows):
        built.append((step, 1.0, keys, tuple(data.draw(_CELL) for _ in keys)))
    history = HistoryEncoder(SummaryTracker(), lambda key, text: None)
    record = history.encode(built)
    if record is None:
        return
    walked = parsecost.walk_cost(record.SerializeToString(), 1 << 60)
    assert walked <= history.cost <= 2 * walked + 1000


def test_histograms_and_big_ints_count_at_their_parse_cost():
    history = HistoryEncoder(SummaryTracker(), lambda key, text: None)
    histogram = Histogram._raw([float(edge) for edge in range(65)], list(range(64)))
    rows = [(step, 1.0, ("h", "n"), (histogram, 10**40 + step)) for step in range(100)]
    payload = history.encode(rows).SerializeToString()
    walked = parsecost.walk_cost(payload, 1 << 60)
    assert walked <= history.cost <= walked * 1.2
    assert history.cost > 100 * (16 * 65 + 20 * 64)  # the histograms' arrays, not only their bytes
    assert not math.isnan(history.cost)


def test_the_budget_constant_is_in_parsecosts_units():
    assert encoder.MAX_VALUE_COST_PER_RECORD <= parsecost.MAX_PARSE_BYTES // 4
