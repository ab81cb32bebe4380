"""Logged values come back exactly as they went in."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tracklet
from tracklet.core.values import Histogram

from conftest import read

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def test_scalars_round_trip_exactly(start):
    run = start()
    rows = [
        {"f": 0.1, "i": 7, "b": True, "s": "hello"},
        {"f": float("nan"), "i": INT64_MAX, "b": False, "s": ""},
        {"f": float("inf"), "i": INT64_MIN, "b": True, "s": "ünïcødé ✓"},
        {"f": float("-inf"), "i": 0, "b": False, "s": "line\nbreak"},
        {"f": 5e-324, "i": -1, "b": True, "s": "x" * 10_000},
        {"f": 1.7976931348623157e308, "i": 2**53 + 1, "b": False, "s": "\x00nul"},
    ]
    for row in rows:
        run.log(row)
    run.finish()
    history = read(run).history()
    assert history["_step"] == list(range(len(rows)))
    for key in ("i", "b", "s"):
        assert history[key] == [row[key] for row in rows]
        assert [type(v) for v in history[key]] == [type(row[key]) for row in rows]
    floats = history["f"]
    assert floats[0] == 0.1 and math.isnan(floats[1]) and floats[2] == math.inf and floats[3] == -math.inf
    assert floats[4] == 5e-324 and floats[5] == 1.7976931348623157e308


def test_unicode_keys_and_ten_thousand_keys_in_one_call(start):
    run = start()
    wide = {f"k{i:05d}": i * 0.5 for i in range(10_000)}
    wide["損失/训练"] = 1.25
    wide["emoji 🚀"] = -3
    run.log(wide)
    run.log({"k00000": 1.0})
    run.finish()
    recorded = read(run)
    history = recorded.history()
    assert history.num_rows == 2
    assert history["k09999"] == [9999 * 0.5, None]
    assert history["損失/训练"] == [1.25, None]
    assert history["emoji 🚀"] == [-3, None]
    assert history["k00000"] == [0.0, 1.0]
    assert len(recorded.keys()) == 10_002


def test_nested_dicts_are_flattened_and_copied_at_log_time(start):
    run = start()
    stats = {"train": {"loss": 1.0, "inner": {"deep": 1}}, "lr": 0.1}
    for step in range(3):
        stats["train"]["loss"] = 1.0 / (step + 1)
        stats["train"]["inner"]["deep"] = step
        run.log(stats)  # the same nested dict object every call, mutated in between
    run.finish()
    history = read(run).history()
    assert history["train/loss"] == [1.0, 0.5, 1.0 / 3]
    assert history["train/inner/deep"] == [0, 1, 2]
    assert history["lr"] == [0.1, 0.1, 0.1]


def test_numpy_values(start):
    run = start()
    run.log({
        "f32": np.float32(0.25),
        "f64": np.float64(0.1),
        "i64": np.int64(INT64_MAX),
        "u8": np.uint8(200),
        "bool": np.bool_(True),
        "zero_d": np.array(3.5),
        "one": np.array([7]),
        "weights": np.arange(100, dtype=np.float64),
    })
    run.finish()
    history = read(run).history()
    assert history["f32"] == [0.25] and history["f64"] == [0.1]
    assert history["i64"] == [INT64_MAX] and type(history["i64"][0]) is int
    assert history["u8"] == [200] and history["bool"] == [True]
    assert history["zero_d"] == [3.5] and history["one"] == [7]
    weights = history["weights"][0]
    assert isinstance(weights, Histogram)
    assert sum(weights.counts) == 100 and len(weights.edges) == len(weights.counts) + 1
    assert weights.edges[0] == 0.0 and weights.edges[-1] == 99.0


def test_histogram_keeps_nan_and_inf_apart():
    hist = Histogram([1.0, 2.0, float("nan"), float("inf"), float("-inf"), 3.0], bins=4)
    assert sum(hist.counts) == 3 and hist.nan_count == 1 and hist.inf_count == 2
    with pytest.raises(ValueError, match="one more edge"):
        Histogram(np_histogram=([1, 2], [0.0, 1.0]))


def test_explicit_histogram_round_trips(start):
    run = start()
    given = Histogram(np_histogram=([1, 5, 2], [0.0, 0.5, 1.0, 1.5]))
    run.log({"h": given})
    run.finish()
    assert read(run).history()["h"] == [given]


def test_none_means_no_value_for_that_row(start):
    run = start()
    run.log({"a": 1.0, "b": None})
    run.log({"a": None, "b": 2.0})
    run.finish()
    history = read(run).history()
    assert history["a"] == [1.0, None] and history["b"] == [None, 2.0]


def test_unsupported_value_warns_once_per_key_and_keeps_the_rest(start):
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            run.log({"ok": float(step), "bad": object(), "worse": ...})
        run.flush()
    messages = [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]
    bad = [m for m in messages if "'bad'" in m]
    worse = [m for m in messages if "'worse'" in m]
    assert len(bad) == 1 and "object" in bad[0]
    assert len(worse) == 1 and "ellipsis" in worse[0]
    run.finish()
    history = read(run).history()
    assert history["ok"] == [0.0, 1.0, 2.0]
    assert "bad" not in history and "worse" not in history


def test_a_key_whose_type_changes_keeps_every_value(start):
    run = start()
    for value in (1, "two", 3.5, True, np.arange(4.0)):
        run.log({"x": value})
    run.finish()
    values = read(run).history()["x"]
    assert values[:4] == [1, "two", 3.5, True] and type(values[3]) is bool
    assert isinstance(values[4], Histogram)


def test_strict_mode_raises_before_recording_anything_from_the_call(start):
    run = start(settings={"strict": True})
    run.log({"a": 1.0})
    with pytest.raises(TypeError, match="'bad'.*object"):
        run.log({"a": 2.0, "bad": object()})
    run.log({"a": 3.0, "arr": np.zeros(3)})
    run.finish()
    history = read(run).history()
    assert history["a"] == [1.0, 3.0]
    assert "bad" not in history


def test_reserved_keys_are_refused_with_a_warning(start):
    run = start()
    with pytest.warns(tracklet.TrackletWarning, match="'_step' is reserved"):
        run.log({"_step": 5, "loss": 1.0})
        run.flush()
    run.finish()
    history = read(run).history()
    assert history["_step"] == [0] and history["loss"] == [1.0]


def test_log_rejects_a_non_mapping():
    run = tracklet.init(mode="disabled")
    run.log([1, 2])  # disabled: a no-op, even for bad input
    with pytest.raises(TypeError, match="dict"):
        tracklet.Run.log(run, [1, 2])  # the real method names the problem


def test_a_key_that_later_holds_a_dict_is_flattened(start):
    run = start()
    run.log({"a": 1.0, "b": 2})
    run.log({"a": {"x": 3.0, "y": {"z": 4}}, "b": 5})
    run.finish()
    history = read(run).history()
    assert history["a"] == [1.0, None] and history["a/x"] == [None, 3.0] and history["a/y/z"] == [None, 4]
    assert history["b"] == [2, 5]
