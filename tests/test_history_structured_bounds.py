"""A structured history value too large to record costs a bounded walk, on the caller and on the
worker, before it is dropped alone with one warning naming its key; nothing else of the run is
lost. A numpy ``NaT`` is "no value"; a crashed run's summary of a structured key is its last
value."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import read_log
from tracklet.core.summary_fold import SummaryFold
from tracklet.core import values
from tracklet.core.values import MAX_STRUCTURED_BYTES, Unrecordable, snapshot_containers, structured
from tracklet.proto import records_pb2 as pb

from conftest import read


def _tracklet_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]


def test_an_embedding_matrix_logged_as_nested_lists_is_dropped_and_every_other_row_kept(start):
    # W&B's common ``wandb.log({"emb": x.tolist()})``: it used to make finish() time out and
    # lose every ``loss`` row of the run
    emb = np.random.default_rng(0).random((1000, 1000)).tolist()
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            run.log({"emb": emb, "loss": float(step)})
        run.finish()
    emb.clear()  # the run held no reference to it
    messages = _tracklet_warnings(caught)
    (emb_warning,) = [m for m in messages if "'emb'" in m]
    assert "dropped" in emb_warning and "256 KiB" in emb_warning
    assert not [m for m in messages if "'loss'" in m]
    history = read(run).history()
    assert history["loss"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert "emb" not in history or history["emb"] == [None] * 5


def _dag(levels: int) -> list:
    """A list of ``2 ** levels`` paths to one leaf: each level holds the one below twice."""
    value: list = ["leaf"]
    for _ in range(levels):
        value = [value, value]
    return value


def test_a_dag_of_shared_lists_is_bounded_by_the_item_budget(start):
    # 2**20 paths: a copy of each path is 2**21 lists; the copy stops at the item budget
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"dag": _dag(20), "i": 1})
        run.log({"i": 2})
        run.finish()
    messages = [m for m in _tracklet_warnings(caught) if "'dag'" in m]
    assert len(messages) == 1 and "dropped" in messages[0]
    assert read(run).history()["i"] == [1, 2]
    row = {"dag": _dag(20), "small": [["a"], ["b"]], "tags": set(range(MAX_STRUCTURED_BYTES)),
           "numbers": [0.5] * MAX_STRUCTURED_BYTES}  # a histogram, of any length
    snapshot_containers(row)
    assert type(row["dag"]) is values.Oversized and type(row["tags"]) is values.Oversized
    assert row["small"] == [["a"], ["b"]] and row["numbers"] == [0.5] * MAX_STRUCTURED_BYTES


class _Counted(list):
    """A list that counts the items walked out of it (all instances together)."""

    items = 0

    def __iter__(self):
        for item in super().__iter__():
            _Counted.items += 1
            yield item


def test_the_workers_conversion_stops_once_a_value_passes_the_limit():
    # A shared sub-list is counted per visit, and the walk stops at the limit: not every one of
    # the 2**20 paths of this DAG is walked, nor every one of 10,000 strings of 1 KiB.
    value: list = [_Counted(["x" * 100])]
    for _ in range(20):
        value = [value, value]
    _Counted.items = 0
    with pytest.raises(Unrecordable, match="256 KiB"):
        structured(value)
    assert _Counted.items <= MAX_STRUCTURED_BYTES // 100
    _Counted.items = 0
    with pytest.raises(Unrecordable, match="256 KiB"):
        structured([_Counted(["x" * 1024] * 10_000)])
    assert _Counted.items <= MAX_STRUCTURED_BYTES // 1024 + 1
    assert structured([["x" * 1000] * 200]) == [["x" * 1000] * 200]  # 200 KB fits


def test_a_nat_is_no_value_for_its_row_without_a_warning(start):
    run = start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"t": np.datetime64("NaT"), "loss": 1.0})
        run.log({"t": np.datetime64("2024-01-01"), "loss": 2.0})
        run.finish()
    assert not _tracklet_warnings(caught)
    history = read(run).history()
    assert history["t"] == [None, "2024-01-01"] and history["loss"] == [1.0, 2.0]


def test_a_crashed_runs_summary_of_a_structured_key_is_its_last_value(start):
    # One batch holds the key as a list, a float, then a list again (a column of each type): the
    # summary a reader folds from history alone (no summary written: the run crashed) is the last
    run = start()
    for value in (["a"], 1.0, ["b"]):
        run.log({"x": value, "loss": 0.5})
    run.finish()
    records = []
    for _, payload in read_log(RunPaths(Path(run.dir).parents[3], run.project, run.id).log_file).payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    ids = {d.name: d.id for r in records if r.HasField("history") for d in r.history.new_keys}
    columns = [len([c for c in r.history.columns if c.key == ids["x"]]) for r in records if r.HasField("history")]
    assert 2 in columns  # the list and the float in one batch
    fold = SummaryFold()
    for record in records:
        if record.WhichOneof("kind") != "summary":
            fold.apply(record)
    assert fold.values["x"] == ["b"] and fold.values["loss"] == 0.5


def test_rows_of_wandbs_lists_of_empty_lists_are_all_recorded_within_finish(start):
    """8 rows of 10 keys, each a 240 KB list of empty lists (W&B's shape for empty per-sample
    results): the worker wrote them an item at a time and took ~40 s, so ``finish()``'s default
    30 s dropped rows. Now every row is recorded, whole, with no warning: each value in the log is
    protobuf's bytes for it (read back with protobuf: the Api's item-by-item decoding of 4.8M
    lists is slow, and not what this checks)."""
    run = start()
    assert run.settings.finish_timeout == 30
    empty = [[] for _ in range(60_000)]  # logged 80 times: log() copies it each time
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(8):
            run.log({f"k{key}": empty for key in range(10)} | {"loss": float(step)})
        run.finish()
    assert _tracklet_warnings(caught) == []
    expected = pb.Value()
    expected.list_value.items.add().list_value.SetInParent()
    expected.list_value.items.extend([expected.list_value.items[0]] * 59_999)
    expected_bytes = expected.SerializeToString(deterministic=True)
    names: dict[int, str] = {}
    found: dict[str, list[int]] = {}
    for _, payload in read_log(RunPaths(Path(run.dir).parents[3], run.project, run.id).log_file).payloads:
        record = pb.Record.FromString(payload)
        if record.WhichOneof("kind") != "history":
            continue
        names.update((key.id, key.name) for key in record.history.new_keys)
        for column in record.history.columns:
            rows = list(column.rows) or range(len(record.history.steps))
            steps = [record.history.steps[row] for row in rows]
            if column.values:
                assert all(value.SerializeToString(deterministic=True) == expected_bytes for value in column.values)
            found.setdefault(names[column.key], []).extend(steps)
    assert found == {"loss": list(range(8)), **{f"k{key}": list(range(8)) for key in range(10)}}
