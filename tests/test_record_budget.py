"""The writer never writes a history record its readers refuse: rows carrying many costly values
(structured values, strings, histograms, big ints, numbers) are cut into records whose parse cost, as
the encoder estimates it (never below ``parsecost``'s estimate), is at most ``MAX_VALUE_COST_PER_RECORD``
(well under ``parsecost.MAX_PARSE_BYTES``, and the worker's memory per record bounded); a large
payload whose estimate passes the readers' limit is checked with ``parsecost`` before it is written,
and a row too costly on its own is reported and not written, its neighbours kept. Rows of numbers
are written in as few records as before."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import tracklet
from tracklet.core import encoder, parsecost, sender
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter, read_log
from tracklet.core.sender import BatchSender, RowKeys
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store

from conftest import QUIET, read


def _sender(tmp_path: Path) -> tuple[BatchSender, Path]:
    """A sender writing to a real record log (``RecordLogWriter``) that nothing flushes on a timer."""
    path = tmp_path / "run.tlog"
    return BatchSender([RecordLogWriter(path)], flush_interval=600, batch_size=10**9, max_queue=10**9), path


def _histories(path: Path) -> list[pb.HistoryBatch]:
    """The history records of the log at ``path``, read back by the log's own reader."""
    scanned = read_log(path)
    assert scanned.damage is None
    records = [pb.Record.FromString(payload) for _, payload in scanned.payloads]
    return [record.history for record in records if record.WhichOneof("kind") == "history"]


def _cells(column: pb.Column) -> list[object]:
    """A column's values, of whichever kind it holds."""
    return (list(column.floats) or list(column.ints) or list(column.bools) or list(column.strings) or [
        [item.string_value for item in value.list_value.items] for value in column.values])


def _rows(histories: list[pb.HistoryBatch]) -> dict[int, dict[str, object]]:
    """Each step's values by key name, as the records hold them."""
    names: dict[int, str] = {}
    got: dict[int, dict[str, object]] = {}
    for history in histories:
        names.update((key.id, key.name) for key in history.new_keys)
        for column in history.columns:
            for row, cell in zip(list(column.rows) or range(len(history.steps)), _cells(column), strict=True):
                got.setdefault(history.steps[row], {})[names[column.key]] = cell
    return got


def test_the_budget_keeps_any_record_well_under_the_readers_limit():
    # The budget is in parsecost's units (the estimate is never below parsecost's: test_valuewire.py
    # and the records below check it): a record at the budget costs at most a quarter of the limit.
    assert encoder.MAX_VALUE_COST_PER_RECORD <= parsecost.MAX_PARSE_BYTES // 4
    assert encoder.STRING_COST >= parsecost._STRING_COPY
    # A payload the sender does not check could not be refused whatever it holds.
    assert sender.PARSE_CHECK_BYTES * parsecost.MAX_RATIO <= parsecost.MAX_PARSE_BYTES


def test_many_rows_of_large_structured_values_are_cut_into_records_readers_take(root, monkeypatch):
    """80 rows of a 25 KB list of short strings, with the readers' limit lowered to 16 MiB and the
    budget to 64 KiB (at 256 MiB the same needs 110 rows of 250 KB lists, ~35 s of CPU here): one
    record of them would cost ~24 MB to parse, past the limit; written as records within the budget,
    every row reads back through the local Api and the indexer, both at the lowered limit."""
    monkeypatch.setattr(parsecost, "MAX_PARSE_BYTES", 16 << 20)
    monkeypatch.setattr(encoder, "MAX_VALUE_COST_PER_RECORD", 4 << 20)  # ~13 of these rows (~300 KB each)
    assert encoder.MAX_VALUE_COST_PER_RECORD <= parsecost.MAX_PARSE_BYTES // 4
    rows = 80
    run = tracklet.init(project="p", id="big", dir=str(root), settings=QUIET)
    for step in range(rows):
        run.log({"loss": step / 2, "samples": [f"s{step}", *["a"] * 4_999]})
    run.finish()

    payloads = [payload for _, payload in read_log(RunPaths(root, "p", "big").log_file).payloads]
    history_costs = [parsecost.walk_cost(payload, 1 << 40) for payload in payloads
                     if pb.Record.FromString(payload).WhichOneof("kind") == "history"]
    assert sum(history_costs) > parsecost.MAX_PARSE_BYTES  # what one record of these rows would have cost
    assert len(history_costs) >= 7 and max(history_costs) <= encoder.MAX_VALUE_COST_PER_RECORD

    with warnings.catch_warnings():
        warnings.simplefilter("error", tracklet.TrackletWarning)  # no record skipped as too costly
        history = read(run).history()
    assert history["loss"] == [step / 2 for step in range(rows)]
    assert history["samples"] == [[f"s{step}", *["a"] * 4_999] for step in range(rows)]

    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    report = store.index()
    assert report.damaged == []
    (row,) = store.runs("p", fields=("last_step", "summary"))
    assert row["last_step"] == rows - 1 and row["summary"]["samples"][0] == f"s{rows - 1}"
    (series,) = store.history("p/big", "loss", buckets=None)
    assert series.steps.tolist() == list(range(rows))


def test_a_row_too_costly_alone_is_reported_and_its_neighbours_are_kept(root, monkeypatch):
    """The readers' limit lowered to 8 MiB (a row past 256 MiB alone would take GBs here): the row
    with four 250 KB lists (~12 MB parsed) is not written, with one warning naming its step and
    keys; the rows before and after it are, and the Api and the indexer read the log whole."""
    monkeypatch.setattr(parsecost, "MAX_PARSE_BYTES", 8 << 20)
    monkeypatch.setattr(sender, "PARSE_CHECK_BYTES", 0)
    run = tracklet.init(project="p", id="one", dir=str(root), settings=QUIET)
    costly = ["a"] * 49_990
    with pytest.warns(tracklet.TrackletWarning) as caught:
        for step in range(10):
            if step == 5:
                run.log({"loss": 5.0, "w": costly, "x": costly, "y": costly, "z": costly})
            else:
                run.log({"loss": float(step), "w": ["ok", step]})
        run.finish()
    messages = [str(w.message) for w in caught if "not recorded" in str(w.message)]
    assert len(messages) == 1, messages
    assert "the row at step 5 (keys 'loss', 'w', 'x', 'y', 'z') is not recorded" in messages[0]
    assert "more than 8 MiB of memory to parse" in messages[0]

    kept = [step for step in range(10) if step != 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracklet.TrackletWarning)  # no record skipped as too costly
        history = read(run).history()
    assert history["loss"] == [float(step) for step in kept]
    assert history["w"] == [["ok", step] for step in kept]
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    assert store.index().damaged == []
    (series,) = store.history("p/one", "loss", buckets=None)
    assert series.steps.tolist() == kept


@pytest.mark.parametrize("flat", [True, False], ids=["flat-rows", "tuple-rows"])
def test_rows_of_strings_and_lists_past_the_budget_arrive_whole_in_order(monkeypatch, tmp_path, flat):
    """A budget lowered to 64 KiB: rows of several key sets, strings and lists among floats, are cut into many
    records, each within the budget as parsecost measures it (one row alone aside); every value arrives once,
    in order."""
    monkeypatch.setattr(encoder, "MAX_VALUE_COST_PER_RECORD", 64 << 10)
    batch, path = _sender(tmp_path)
    wide, narrow = ("loss", "text", "items"), ("loss", "text")
    wide_marker, narrow_marker = RowKeys(wide), RowKeys(narrow)
    expected = {}
    for step in range(600):
        text = "t" * (step % 300 + 1)
        values = (float(step), text, [str(step)] * (step % 50 + 1)) if step % 4 else (float(step), text)
        expected[step] = dict(zip(wide if step % 4 else narrow, values))
        if flat:
            batch.put_many((wide_marker if step % 4 else narrow_marker, step, 1.0, *values))
        else:
            batch.put((step, 1.0, wide if step % 4 else narrow, values))
    assert batch.shutdown(timeout=120)

    histories = _histories(path)
    assert len(histories) > 20
    assert [step for history in histories for step in history.steps] == list(range(600))
    costs = [parsecost.walk_cost(payload, 1 << 40) for _, payload in read_log(path).payloads
             if pb.Record.FromString(payload).WhichOneof("kind") == "history"]
    for history, cost in zip(histories, costs, strict=True):
        assert len(history.steps) == 1 or cost <= 64 << 10
    assert _rows(histories) == expected


def test_rows_of_numbers_are_written_in_as_few_records_as_before_each_value_as_logged(tmp_path):
    """A fixed drain of float/int rows (two key sets queued flat, and rows queued as tuples) far under
    the budget: the records the encoder wrote before the budget existed (7 of them), every row at its
    step and time with each value as logged, floats as floats and ints as ints."""
    batch, path = _sender(tmp_path)
    wide = RowKeys(tuple(f"metric/{k}" for k in range(40)))
    narrow = RowKeys(("loss", "lr", "epoch"))
    expected: dict[int, dict[str, object]] = {}
    for step in range(5000):
        if step % 3:
            values = [step * 0.25 + k for k in range(40)]
            batch.put_many((wide, step, 1000.0 + step / 8, *values))
            expected[step] = dict(zip(wide.keys, values))
        else:
            values = [1.0 / (step + 1), 3e-4, step // 100]
            batch.put_many((narrow, step, 1000.0 + step / 8, *values))
            expected[step] = dict(zip(narrow.keys, values))
        if step % 997 == 0:
            batch.put((step, 1000.0 + step / 8, ("acc", "n"), (0.5, step)))
            expected[step].update(acc=0.5, n=step)
    assert batch.shutdown(timeout=120)
    assert len(read_log(path).payloads) == 7
    histories = _histories(path)
    got = _rows(histories)
    assert got == expected
    assert all(type(got[step][key]) is type(value) for step, row in expected.items() for key, value in row.items())
    times = {step: time for history in histories for step, time in zip(history.steps, history.times)}
    assert times == {step: 1000.0 + step / 8 for step in range(5000)}


def test_rows_over_the_budget_are_cut_into_records_that_are_mostly_full(monkeypatch, tmp_path):
    """The cut follows the encoder's estimate of how many rows fit (not halving): 600 rows of 20
    string keys (~2.2 KiB a row, ~10 budgets of 128 KiB) become about ten records, not dozens."""
    monkeypatch.setattr(encoder, "MAX_VALUE_COST_PER_RECORD", 128 << 10)
    batch, path = _sender(tmp_path)
    marker = RowKeys(("loss", *(f"text/{k}" for k in range(20))))
    for step in range(600):
        batch.put_many((marker, step, 1.0, float(step), *(f"{k:02d}" * 25 for k in range(20))))
    assert batch.shutdown(timeout=120)
    histories = _histories(path)
    assert [step for history in histories for step in history.steps] == list(range(600))
    assert all(sum(len(text) + 64 for column in history.columns for text in column.strings) <= 128 << 10
               for history in histories)
    assert 11 <= len(histories) <= 15, [len(history.steps) for history in histories]


@pytest.mark.parametrize("budget", [4000, encoder.MAX_VALUE_COST_PER_RECORD])
def test_a_cut_record_stores_each_logged_object_in_it_once(tmp_path, monkeypatch, budget):
    """Images reaching history under a key first seen with plain values are found by the encoder
    (the fast path skips the caller's type scan) and stored when the record holding their row is
    written: a record cut and encoded again must not store them twice (review: 18 images from 9,
    each step twice, with a small budget)."""
    import numpy as np

    monkeypatch.setattr(encoder, "MAX_VALUE_COST_PER_RECORD", budget)
    run = tracklet.init(project="p", id="r", dir=str(tmp_path), settings=QUIET)
    run.log({"img": 0.5, "s": "a"}, step=0)
    for step in range(1, 40):
        value = tracklet.Image(np.full((4, 4, 3), step, dtype=np.uint8)) if step % 4 == 0 else float(step)
        run.log({"img": value, "s": "x" * 300}, step=step)
    run.finish()
    media = tracklet.Api(tmp_path).run(run.path).media("img")
    assert [entry.step for entry in media] == list(range(4, 40, 4))
    history = tracklet.Api(tmp_path).run(run.path).history(keys=["s"])
    assert len(history["s"]) == 40


def test_rows_of_histograms_and_big_ints_are_cut_as_the_budget_says_and_read_back_whole(root, monkeypatch):
    """Histograms (a 64-bin one costs ~2.4 KB parsed from ~650 bytes) and ints past int64 count
    against the budget at parsecost's estimate, like structured values: with the budget lowered to
    256 KiB, 300 rows of four histograms and two big ints (~10 KB a row) are written as records
    within it (as parsecost measures them), each at least half full (the cut projects the cost of the
    cells not yet encoded from those counted: here the histograms', dearer than the big ints'), and
    every row reads back equal."""
    monkeypatch.setattr(encoder, "MAX_VALUE_COST_PER_RECORD", 256 << 10)
    run = tracklet.init(project="p", id="hist", dir=str(root), settings=QUIET)
    edges = [step / 64 for step in range(65)]
    rows = 300
    for step in range(rows):
        run.log({**{f"h{k}": tracklet.Histogram(np_histogram=([step + k] * 64, edges)) for k in range(4)},
                 "big": 10**30 + step, "neg": -(10**25) - step})
    run.finish()

    payloads = [payload for _, payload in read_log(RunPaths(root, "p", "hist").log_file).payloads]
    histories = [(pb.Record.FromString(payload).history, parsecost.walk_cost(payload, 1 << 40)) for payload in payloads
                 if pb.Record.FromString(payload).WhichOneof("kind") == "history"]
    assert [step for history, _ in histories for step in history.steps] == list(range(rows))
    assert all(cost <= 256 << 10 for history, cost in histories if len(history.steps) > 1)
    total = sum(cost for _, cost in histories)
    assert total > 8 * (256 << 10)  # one record of them would have passed the budget many times
    assert len(histories) <= 2 * total / (256 << 10) + 1  # cut where the budget says, not a row at a time

    with warnings.catch_warnings():
        warnings.simplefilter("error", tracklet.TrackletWarning)
        history = read(run).history()
    assert history["big"] == [10**30 + step for step in range(rows)]
    assert history["neg"] == [-(10**25) - step for step in range(rows)]
    assert [h.counts for h in history["h3"]] == [[step + 3] * 64 for step in range(rows)]
