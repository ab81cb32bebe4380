"""``core/validate.py``: what every consumer of a record log may rely on. Logs tracklet writes
always pass (no false refusals at a server); the store indexer skips records that don't, even
from a log on disk, instead of padding a key list to a hostile size."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import MAGIC, frame, read_log
from tracklet.core.validate import RecordRejected, check_record, decode_record
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store

from conftest import QUIET


def _key_count(log_file) -> int:
    """Every record of the log through the validator, in order; the run's key count at the end."""
    known = 0
    for _, payload in read_log(log_file).payloads:
        known = check_record(decode_record(payload), known)
    return known


def test_every_record_tracklet_writes_passes(root):
    run = tracklet.init(project="p", id="r", dir=str(root), config={"lr": 0.1, "layers": [1, 2]},
                        settings={**QUIET, "console": "wrap"})
    run.define_metric("val/*", summary="max")
    run.define_metric("loss", summary=["min", "mean", "last"])
    for step in range(300):
        row = {"loss": 1.0 / (step + 1), "epoch": step // 10, "ok": step % 2 == 0}
        if step % 3 == 0:
            row["val/acc"] = np.float32(step / 300)  # a sparse key, a numpy value
        if step % 50 == 0:
            row["weights"] = tracklet.Histogram(np.arange(step + 10))
            row["note"] = f"step {step}"
            row["nested"] = {"a": step, "b": {"c": float(step)}}
            row["huge"] = 2**70 + step  # past int64: a big_ints column
        if step == 100:
            row["loss"] = "diverged?"  # a key whose type changes
            row["maybe"] = None
        run.log(row, commit=step % 7 != 0)
    print("to the console", file=sys.stdout)
    print("and its errors", file=sys.stderr)
    for level in ("INFO", "WARN", "ERROR"):
        run.alert("an alert", level=level)
    run.summary["best"] = 1
    run.finish()
    resumed = tracklet.init(project="p", id="r", dir=str(root), resume="must", settings=QUIET)
    resumed.log({"loss": 0.5, "after_resume": 1})
    resumed.finish(exit_code=3)

    names = tracklet.Api(root).run("p/r").history().keys() - {"_step", "_timestamp", "_runtime"}
    assert _key_count(RunPaths(root, "p", "r").log_file) == len(names) >= 10


def _batch(define: tuple[int, ...] = (), key: int | None = None) -> pb.Record:
    record = pb.Record()
    for key_id in define:
        record.history.new_keys.add(id=key_id, name=f"k{key_id}")
    record.history.steps.append(0)
    record.history.times.append(1.0)
    if key is not None:
        record.history.columns.add(key=key).floats.append(2.0)
    return record


def test_key_ids_are_dense_and_bounded_by_what_is_defined():
    assert check_record(_batch(define=(0, 1), key=1), 0) == 2
    assert check_record(_batch(define=(1, 0), key=0), 0) == 2  # any order within a batch
    assert check_record(_batch(define=(0,), key=0), 3) == 3  # redefining a known id
    assert check_record(_batch(key=2), 3) == 3
    for record, known in [(_batch(define=(2**32 - 1,)), 0), (_batch(define=(0, 2)), 0), (_batch(define=(4,)), 3),
                          (_batch(key=3), 3), (_batch(define=(3,), key=4), 3)]:
        with pytest.raises(RecordRejected):
            check_record(record, known)
    # A key name longer than the store's column is accepted (the store indexes it cut to fit; the
    # log keeps it whole): a run that logs one must still sync.
    long_name = _batch()
    long_name.history.new_keys.add(id=0, name="x" * 5000)
    assert check_record(long_name, 0) == 1
    with pytest.raises(RecordRejected, match="not a tracklet.v1.Record"):
        decode_record(b"\xff\xff\xff")


def test_the_indexer_skips_a_hostile_record_in_a_log_on_disk(root, store_url):
    """A log file on disk is a trust boundary too: a record with KeyDefinition.id 50,000,000 is
    skipped (core/decode.py), never used as a size; the records around it are indexed."""
    paths = RunPaths(root, "p", "hostile")
    paths.run_dir.mkdir(parents=True)
    later = _batch(define=(1,), key=1)
    later.history.steps[0] = 1
    paths.log_file.write_bytes(MAGIC + b"".join(frame(r.SerializeToString()) for r in (
        _batch(define=(0,), key=0), _batch(define=(50_000_000,), key=50_000_000), later)))
    store = Store(store_url, root=root)
    report = store.index()
    assert len(report.damaged) == 1 and "key id 50000000" in report.damaged[0], report.damaged
    (row,) = store.runs("p", fields=("keys", "last_step"))
    assert row["keys"] == ["k0", "k1"] and row["last_step"] == 1
    (k1,) = store.history("p/hostile", "k1", buckets=None)
    assert k1.steps.tolist() == [1] and k1.values.tolist() == [2.0]


def test_a_history_column_is_checked_by_the_fields_it_fills_whatever_their_number():
    """``RecordDecoder`` reads a column's filled value fields in one call (``decode._column_problem``):
    a column with one field filled is kept; one with several is dropped, named in field order; a
    column whose values don't match its rows is dropped; an empty column is kept."""
    from tracklet.core.decode import RecordDecoder

    record = pb.Record()
    batch = record.history
    batch.new_keys.add(id=0, name="a")
    batch.new_keys.add(id=1, name="b")
    batch.new_keys.add(id=2, name="c")
    batch.new_keys.add(id=3, name="d")
    batch.steps.extend([0, 1])
    batch.times.extend([1.0, 2.0])
    batch.columns.add(key=0, floats=[0.5, 1.5])
    batch.columns.add(key=1, big_ints=["1", "2"], bools=[True, False])
    batch.columns.add(key=2, rows=[1], strings=["x", "y"])
    batch.columns.add(key=3)
    decoder = RecordDecoder()
    decoded = decoder.decode(0, record.SerializeToString())
    assert decoded is not None
    assert [column.key for column in decoded.history.columns] == [0, 3]
    assert decoder.partial_count == 1
    reason = decoder.invalid[0].reason
    assert "key id 1 has values of several types (bools, big_ints)" in reason
    assert "key id 2 has 2 value(s) for 1 row(s)" in reason
