"""A bad value costs only itself: never its batch, its run's readability, or the training loop.

Each test logs something the recording path once mishandled (a whole batch dropped, a key number
left undefined so the run no longer read back, a silent rounding, a RecursionError raised into
training) and then checks that the run reads back fully through ``Api.history()``, ``tracklet
export`` and ``tracklet index``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main
from tracklet.core.encoder import HistoryEncoder, SummaryTracker, WarnOnce
from tracklet.core.reader import replay
from tracklet.core.recordlog import RecordLogWriter
from tracklet.core.sender import BatchSender
from tracklet.core.values import MAX_NESTING, Histogram

from conftest import read

INT64_MAX = 2**63 - 1


def tracklet_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]


def assert_readable_everywhere(run: tracklet.Run, tmp_path) -> dict:
    """The run's history reads back, exports to every format and indexes; returns the history."""
    history = read(run).history()
    root = str(tmp_path / "data")
    runner = CliRunner()
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"export.{fmt}"
        done = runner.invoke(main, ["--dir", root, "export", run.path, "-f", fmt, "-o", str(out)])
        assert done.exit_code == 0, done.output
    indexed = runner.invoke(main, ["--dir", root, "index"])
    assert indexed.exit_code == 0, indexed.output
    return history


# ---------------------------------------------------------------- item 1: summaries never fail a batch


def test_a_mean_whose_sum_overflows_is_inf_and_keeps_the_batch(start, tmp_path):
    run = start()
    run.define_metric("big", summary="mean")
    run.define_metric("both", summary="min,max,mean")
    for step in range(4):  # one key set: each key's values are one column of one batch
        run.log({"big": 1e308, "both": [math.inf, -math.inf, 1.0, 2.0][step], "loss": float(step), "fresh": step})
    run.log({"fresh": 10, "loss": 9.0})  # a key first defined in the batch above, used again later
    assert run.summary["big"] == math.inf
    both = run.summary["both"]
    assert both["min"] == -math.inf and both["max"] == math.inf and math.isnan(both["mean"])
    run.finish()
    history = assert_readable_everywhere(run, tmp_path)
    assert history["loss"] == [0.0, 1.0, 2.0, 3.0, 9.0]
    assert history["big"] == [1e308] * 4 + [None]
    assert history["fresh"] == [0, 1, 2, 3, 10]
    assert read(run).summary["big"] == math.inf


def test_summary_tracker_never_raises():
    summary = SummaryTracker()
    summary.define("*", ["min", "max", "mean"])
    summary.observe("a", [1e308, 1e308, -math.inf, math.inf, math.nan, 2**2000, True])
    summary.observe("b", [-1e308, -1e308])
    summary.observe("c", [2**1100, 1])
    assert math.isnan(summary.values["a"]["mean"]) and summary.values["a"]["max"] == math.inf
    assert summary.values["b"]["mean"] == -math.inf
    assert summary.values["c"] == {"min": 1, "max": 2**1100, "mean": math.inf}


def test_a_summary_value_that_cannot_be_encoded_leaves_the_other_keys_written(start):
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.summary["bad"] = "lone \ud800 surrogate"
        run.summary["good"] = 1.5
        run.log({"loss": 0.5})
        run.finish()
    assert any("'bad'" in m for m in tracklet_warnings(caught))
    summary = read(run).summary
    assert summary["good"] == 1.5 and summary["loss"] == 0.5 and "bad" not in summary


# ---------------------------------------------------------------- item 1: one bad value costs itself


class _LostTensor:
    """Looks like a torch tensor to tracklet; converting it raises, as a tensor on a lost device does."""

    __module__ = "torch"

    def detach(self):
        raise RuntimeError("CUDA error: device-side assert triggered")


BAD_VALUES = {
    "tensor whose conversion raises": _LostTensor,
    "lone surrogate in a str key": lambda: "bad \ud800",
    "int too long to write": lambda: 10**5000,
    "histogram protobuf refuses": lambda: Histogram(np_histogram=([-1], [0.0, 1.0])),
}


@pytest.mark.parametrize("make_bad", BAD_VALUES.values(), ids=BAD_VALUES.keys())
@pytest.mark.parametrize("column_type", ["str", "float", "int"])
def test_one_bad_value_is_dropped_alone_with_one_warning_naming_key_and_step(start, tmp_path, make_bad, column_type):
    run = start()
    good = {"str": lambda step: f"v{step}", "float": lambda step: step / 2, "int": lambda step: step}[column_type]
    expected = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(6):
            value = make_bad() if step in (2, 4) else good(step)
            run.log({"loss": float(step), "x": value, f"first_seen_{step}": step})
            expected.append(None if step in (2, 4) else value)
        run.flush()
        run.log({"loss": 6.0, "x": good(6), "first_seen_2": 22, "first_seen_4": 44})
        expected.append(good(6))
        run.finish()
    messages = [m for m in tracklet_warnings(caught) if "'x'" in m]
    assert len(messages) == 1 and "step 2" in messages[0], tracklet_warnings(caught)
    history = assert_readable_everywhere(run, tmp_path)
    assert history["loss"] == [float(step) for step in range(7)]
    assert history["x"] == expected
    assert history["first_seen_2"] == [None, None, 2, None, None, None, 22]
    assert history["first_seen_4"] == [None, None, None, None, 4, None, 44]


def test_a_self_referencing_dict_under_a_key_set_first_seen_as_plain(start, tmp_path):
    run = start()
    run.log({"a": 1.0, "b": 2.0})
    run.flush()
    looped: dict = {"x": 3.0}
    looped["self"] = looped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"a": looped, "b": 4.0, "fresh": 1})  # a new key set: flattened (and cut) on the caller
        run.log({"a": 5.0, "b": 6.0})
        run.log({"a": looped, "b": 7.0})  # the plain key set: flattened (and cut) on the worker
        run.log({"a": 8.0, "b": 9.0, "fresh": 2})
        run.finish()
    assert sum("'a'" in m and "contains itself" in m for m in tracklet_warnings(caught)) == 1
    history = assert_readable_everywhere(run, tmp_path)
    assert history["b"] == [2.0, 4.0, 6.0, 7.0, 9.0]
    assert history["a"] == [1.0, None, 5.0, None, 8.0] and history["a/x"] == [None, 3.0, None, 3.0, None]
    assert history["fresh"] == [None, 1, None, None, 2]


def test_keys_of_a_record_that_was_not_written_are_defined_again(tmp_path):
    """A sink failure after encoding must not leave key numbers the log never defined."""

    class FailsOnce:
        def __init__(self, sink):
            self.sink, self.failed = sink, False

        def write(self, payload):
            if not self.failed:
                self.failed = True
                raise OSError("disk unplugged")
            self.sink.write(payload)

        def flush(self, fsync=False):
            self.sink.flush(fsync)

        def close(self):
            self.sink.close()

    path = tmp_path / "run.tlog"
    sender = BatchSender([FailsOnce(RecordLogWriter(path))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = ("loss", "acc")
        sender.put((0, 0.0, keys, (1.0, 0.1)))
        sender.force_flush(10)
        sender.put((1, 1.0, keys, (2.0, 0.2)))
        sender.shutdown(10)
    assert any("disk unplugged" in m for m in tracklet_warnings(caught))
    history = replay(path).history()
    assert history["_step"] == [1] and history["loss"] == [2.0] and history["acc"] == [0.2]


def test_an_encoder_defect_costs_only_the_rows_it_hits(tmp_path):
    """Whatever escapes the encoder (here an injected defect on one row) is contained to that row."""

    class Defective(HistoryEncoder):
        def _encode_group(self, batch, keys, indices, valuesets):
            if any(values[0] == 13.0 for values in valuesets):
                raise RuntimeError("injected defect")
            super()._encode_group(batch, keys, indices, valuesets)

    path = tmp_path / "run.tlog"
    sender = BatchSender([RecordLogWriter(path)])
    sender.encoder = Defective(sender.summary, sender.warn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(40):
            sender.put((step, float(step), (f"k{step % 3}", "loss"), (float(step), float(step))))
        sender.shutdown(10)
    messages = tracklet_warnings(caught)
    assert len(messages) == 1 and "step 13" in messages[0] and "injected defect" in messages[0]
    history = replay(path).history()
    assert history["_step"] == [s for s in range(40) if s != 13]
    assert history["loss"] == [float(s) for s in range(40) if s != 13]
    assert sender.summary.values["loss"] == 39.0


# ---------------------------------------------------------------- item 1: steps are checked on the caller


@pytest.mark.parametrize("step", [2**63, 2**64 + 5])
def test_a_step_beyond_int64_is_refused_and_later_rows_are_kept(start, tmp_path, step):
    run = start()
    run.log({"loss": 1.0})
    with pytest.warns(tracklet.TrackletWarning, match=r"2\*\*63 - 1.*not recorded"):
        run.log({"loss": 2.0}, step=step)
    run.set_step(step)  # refused the same way (once: no second warning)
    run.log({"loss": 3.0})
    run.log({"loss": 4.0}, step=INT64_MAX)
    run.finish()
    history = assert_readable_everywhere(run, tmp_path)
    assert history["_step"] == [0, 1, INT64_MAX] and history["loss"] == [1.0, 3.0, 4.0]


def test_strict_mode_raises_for_a_step_beyond_int64(start):
    run = start(settings={"strict": True})
    with pytest.raises(ValueError, match="2\\*\\*63"):
        run.log({"loss": 1.0}, step=2**63)
    run.log({"loss": 2.0})
    run.finish()
    assert read(run).history()["loss"] == [2.0]


def test_rows_whose_step_protobuf_refuses_are_dropped_alone():
    """The worker's own check, for rows that reach it anyway (an importer, a step advanced past int64)."""
    encoder = HistoryEncoder(SummaryTracker(), WarnOnce())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = encoder.encode([(1, 0.0, ("a",), (1.0,)), (2**63, 0.0, ("a",), (2.0,)), (3, 0.0, ("a",), (3.0,))])
    assert list(record.history.steps) == [1, 3] and list(record.history.columns[0].floats) == [1.0, 3.0]
    assert any("step 9223372036854775808" in m for m in tracklet_warnings(caught))


# ---------------------------------------------------------------- item 4: integers stay exact


def test_ints_beyond_int64_stay_exact_in_history_config_and_summary(start, tmp_path):
    big, negative = 2**70 + 1, -(2**80) - 3
    run = start(config={"seed": big, "nested": {"n": negative, "list": [big, 1]}})
    run.log({"n": big, "m": 1})
    run.log({"n": negative, "m": 2**64})
    run.log({"n": 5, "m": np.uint64(2**64 - 1)})
    run.summary["total"] = big
    run.finish()
    recorded = read(run)
    history = assert_readable_everywhere(run, tmp_path)
    assert history["n"] == [big, negative, 5] and history["m"] == [1, 2**64, 2**64 - 1]
    assert all(type(v) is int for v in history["n"] + history["m"])
    assert recorded.config["seed"] == big and recorded.config["nested"] == {"n": negative, "list": [big, 1]}
    assert recorded.summary["total"] == big and recorded.summary["n"] == 5
    exported = CliRunner().invoke(main, ["--dir", str(tmp_path / "data"), "export", run.path, "-f", "jsonl"])
    assert [json.loads(line)["n"] for line in exported.output.splitlines()] == [big, negative, 5]


def test_ints_in_a_key_that_also_holds_floats_keep_their_value_and_type(start):
    run = start()
    values = [2**53 + 1, 0.5, True, 2**70 + 1, -(2**63), 1.5]  # one batch, one column of mixed types
    for value in values:
        run.log({"x": value})
    run.log({"y": 0.5})
    run.log({"y": 10**400})  # beyond the double range: protobuf's floats field raises for it
    run.finish()
    history = read(run).history()
    assert history["x"][:6] == values and [type(v) for v in history["x"][:6]] == [type(v) for v in values]
    assert history["y"][6:] == [0.5, 10**400]


def test_an_int_past_2_53_after_a_float_of_its_key_stays_exact_everywhere(start, tmp_path):
    """A float first, then 2**53 + 1 under the same key in the same flush (one column of one batch,
    which the encoder's all-float fast path once wrote as doubles: 2**53 + 1 read back as 2**53)."""
    import pyarrow.parquet as pq

    run = start()
    big = 2**53 + 1
    for value in (0.5, big, -big, 2.5):
        run.log({"x": value})
    run.log({"y": 0.25})
    run.log({"y": 2**53})  # exactly representable: the column may stay a double column
    run.finish()
    history = assert_readable_everywhere(run, tmp_path)
    assert history["x"][:4] == [0.5, big, -big, 2.5]
    assert [type(v) for v in history["x"][:4]] == [float, int, int, float]
    assert history["y"][4:] == [0.25, 2**53]
    root, runner = str(tmp_path / "data"), CliRunner()
    jsonl = runner.invoke(main, ["--dir", root, "export", run.path, "-f", "jsonl"]).output
    assert [json.loads(line).get("x") for line in jsonl.splitlines()][:4] == [0.5, big, -big, 2.5]
    csv_text = runner.invoke(main, ["--dir", root, "export", run.path, "-f", "csv"]).output
    assert [line.split(",")[3] for line in csv_text.splitlines()[1:5]] == ["0.5", str(big), str(-big), "2.5"]
    column = pq.read_table(tmp_path / "export.parquet").column("x").to_pylist()[:4]
    assert [json.loads(cell) for cell in column] == [0.5, big, -big, 2.5]  # mixed: exact JSON text per cell


# ---------------------------------------------------------------- item 15: cycles and depth never raise


def _deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"d": value}
    return value


def test_log_cuts_a_self_reference_and_deep_nesting_with_one_warning_per_key(start, tmp_path):
    run = start()
    looped: dict = {"x": 1.0}
    looped["again"] = looped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            run.log({"loop": looped, "deep": _deep(5000), "loss": float(step)})
        run.finish()
    messages = tracklet_warnings(caught)
    assert len([m for m in messages if "'loop'" in m]) == 1 and len([m for m in messages if "'deep'" in m]) == 1
    history = assert_readable_everywhere(run, tmp_path)
    assert history["loss"] == [0.0, 1.0, 2.0] and history["loop/x"] == [1.0, 1.0, 1.0]
    assert not any(name.startswith("deep") for name in history)  # cut above its only leaf


def test_config_and_summary_cut_cycles_and_depth_and_stay_readable(start, tmp_path):
    run = start()
    looped: dict = {"lr": 0.1}
    looped["self"] = looped
    chain: list = [1]
    chain.append(chain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.config.update({"opt": looped, "deep": _deep(5000), "ok": 1})
        run.config.chain = chain
        run.config["medium"] = _deep(40)  # deeper than a record parser reads: once unreadable
        run.summary["loop"] = looped
        run.summary.update(deep=_deep(5000))
        run.log({"loss": 1.0})
        run.finish()
    messages = tracklet_warnings(caught)
    for key in ("opt", "deep", "chain", "medium"):
        assert len([m for m in messages if f"config key {key!r}" in m]) == 1, messages
    assert len([m for m in messages if "summary key 'loop'" in m]) == 1
    recorded = read(run)
    assert recorded.config["opt"] == {"lr": 0.1, "self": None}
    assert recorded.config["chain"] == [1, None] and recorded.config["ok"] == 1
    assert recorded.summary["loop"] == {"lr": 0.1, "self": None} and recorded.summary["loss"] == 1.0
    depth, node = 0, recorded.config["medium"]
    while isinstance(node, dict):
        depth, node = depth + 1, node["d"]
    assert node is None and depth == MAX_NESTING - 1  # cut, every level above it kept (the update is level 0)
    assert_readable_everywhere(run, tmp_path)


def test_strict_mode_refuses_a_self_referencing_dict_with_a_clear_error(start):
    run = start(settings={"strict": True})
    looped: dict = {}
    looped["self"] = looped
    with pytest.raises(ValueError, match="'a'.*contains itself"):
        run.log({"a": looped, "b": 1.0})
    run.log({"b": 2.0})
    run.finish()
    assert read(run).history()["b"] == [2.0]


def test_the_store_indexes_big_ints_and_cut_values(root, store_url):
    from tracklet.store import Store

    looped: dict = {"lr": 0.1}
    looped["self"] = looped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracklet.TrackletWarning)
        run = tracklet.init(project="p", dir=str(root), config={"seed": 2**70 + 1, "opt": looped},
                            settings={"console": "off", "capture_environment": False, "system_metrics": False})
        for step in range(3):
            run.log({"n": [2**64, -(2**70), 7][step], "loss": float(step)})
        run.finish()
    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("p", fields=("state", "config", "summary", "keys"))
    assert row["state"] == "finished" and row["config"] == {"seed": 2**70 + 1, "opt": {"lr": 0.1, "self": None}}
    assert row["summary"]["n"] == 7 and sorted(row["keys"]) == ["loss", "n"]
    (history,) = store.history(run.path, "n", buckets=None)
    assert history.values.tolist() == [float(2**64), float(-(2**70)), 7.0]
