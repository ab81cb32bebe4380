"""Readers of a record log (issue #12, items 3 and 12): a crashed run's summary is what its live
tracker would have had, and history is read sparsely, with memory following the values present."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import tracklet
from tracklet.core.encoder import SUMMARY_MODES, HistoryEncoder, SummaryTracker, WarnOnce
from tracklet.core.export import export_history
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter, read_log
from tracklet.core.values import fill_entries
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store
from tracklet.store.ingest import Indexer

from conftest import REPO, read

# ---------------------------------------------------------------- summary of a crashed run


def _crashed_log(root: Path) -> RunPaths:
    """A run killed before its last summary was written: history after the last SummaryUpdate,
    no exit record. Batches come from the live encoder."""
    paths = RunPaths(root, "p", "crashed")
    paths.run_dir.mkdir(parents=True)
    writer = RecordLogWriter(paths.log_file)
    encoder = HistoryEncoder(SummaryTracker(), WarnOnce())

    def record(fill) -> None:
        message = pb.Record()
        fill(message)
        writer.write(message.SerializeToString())

    def start(message: pb.Record) -> None:
        message.run_start.run_id, message.run_start.project, message.run_start.start_time = "crashed", "p", 1e9

    def define(name: str, modes: list[str], as_dict: bool = False):
        def fill(message: pb.Record) -> None:
            message.metric_definition.name = name
            message.metric_definition.summary.extend(SUMMARY_MODES[m] for m in modes)
            message.metric_definition.summary_as_dict = as_dict
        return fill

    def summary(items: dict):
        return lambda message: fill_entries(message.summary.items, items)

    def history(rows: list[tuple[int, dict]]) -> None:
        encoded = encoder.encode([(step, 1e9 + step, tuple(row), tuple(row.values())) for step, row in rows])
        writer.write(encoded.SerializeToString())

    record(start)
    record(define("acc", ["max"]))
    record(define("val", ["min", "mean"]))
    record(define("lr", ["min"], as_dict=True))
    history([(0, {"loss": 3.0, "acc": 0.1, "val": 4.0, "lr": 0.1}), (1, {"loss": 2.0, "acc": 0.5, "val": 2.0}),
             (2, {"loss": 1.0, "acc": 0.3, "val": 6.0})])
    # What the live tracker wrote after those rows, with an explicit summary["best"] = 7.
    record(summary({"loss": 1.0, "acc": 0.5, "val": {"min": 2.0, "mean": 4.0}, "best": 7}))
    history([(3, {"loss": 0.5, "acc": 0.2, "val": 1.0, "mixed": 1, "lr": 0.05}),
             (4, {"loss": 0.25, "acc": 0.9, "val": 3.0, "mixed": 2.5})])
    # Explicit sets later than the history: summary["loss"] = -1.0 and summary["best"] = 8.
    record(summary({"loss": -1.0, "best": 8}))
    history([(5, {"acc": 0.05, "text": "last words"})])
    writer.close()
    return paths


EXPECTED_CRASHED_SUMMARY = {
    "loss": -1.0,  # an explicit set later than the last logged loss wins
    "acc": 0.9,  # max, though the last written summary said 0.5
    "val": {"min": 1.0, "mean": 16.0 / 5},
    "best": 8,
    "mixed": 2.5,  # last value, whatever its type
    "text": "last words",
    "lr": {"min": 0.05},  # define_metric(summary_as_dict=True): W&B's shape, as live
}


def test_crashed_run_summary_follows_its_history_per_define_metric(root):
    _crashed_log(root)
    recorded = tracklet.Api(root).run("p/crashed")
    assert recorded.state == "crashed"
    assert recorded.summary == EXPECTED_CRASHED_SUMMARY


def test_store_indexes_a_crashed_runs_summary_from_its_history(root, store_url):
    _crashed_log(root)
    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("p")
    assert row["state"] == "crashed"
    assert row["summary"] == EXPECTED_CRASHED_SUMMARY
    assert [r.id for r in tracklet.Api(root, store_url=store_url).runs("p", filter="summary.acc > 0.8")] == ["crashed"]


def test_store_recomputes_the_summary_when_a_running_run_is_found_dead(root, store_url):
    """Indexed while alive (the stale summary is right then), found crashed later without new bytes."""
    _crashed_log(root)
    alive = {"value": True}
    store = Store(store_url, root=root)
    indexer = Indexer(store.engine, root, liveness=lambda log_file: alive["value"])  # as a server's heartbeats
    indexer.index()
    (row,) = store.runs("p")
    assert row["state"] == "running" and row["summary"]["acc"] == 0.5
    alive["value"] = False
    indexer.index()
    (row,) = store.runs("p")
    assert row["state"] == "crashed" and row["summary"] == EXPECTED_CRASHED_SUMMARY


def test_resumed_session_summary_starts_from_the_summary_so_far(root, start):
    """As live: a resumed run's tracker starts from the summary read back, not from the
    earlier session's running aggregates or definitions."""
    run = start(id="again")
    run.define_metric("acc", summary="max")
    run.log({"acc": 0.9})
    run.finish()
    resumed = start(id="again", resume="allow")
    resumed.log({"acc": 0.1})
    live = dict(resumed.summary)
    resumed.finish()
    assert read(resumed).summary == live == {"acc": 0.1}


KILLED_SCRIPT = """
import sys, time, tracklet
run = tracklet.init(project="killed", settings={"flush_interval": 0.2, "capture_environment": False,
                                                "system_metrics": False})
run.define_metric("acc", summary="max")
run.define_metric("val", summary="min,mean")
print(run.path, flush=True)
step = 0
while True:
    run.log({"loss": 1.0 / (step + 1), "acc": (step * 7919 % 1000) / 1000, "val": float(step % 13)})
    step += 1
    time.sleep(0.002)
"""


def _kill_once_written(code: str, root: Path, written) -> str:
    """Start ``code`` (it prints its run's path first), wait until ``written(recorded run)`` holds
    for what its log has on disk, SIGKILL it and return the run's path. Waits for the sender's
    writes instead of assuming they happen within some time: a loaded machine keeps no schedule."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        path = child.stdout.readline().strip()
        deadline = time.monotonic() + 60  # a bound for a stuck test (the tick is 0.1 s away), not a timing check
        while not written(tracklet.Api(root).run(path)):
            assert time.monotonic() < deadline and child.poll() is None, "what was awaited never reached the log"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
    assert child.returncode == -signal.SIGKILL
    return path


def test_sigkilled_run_summary_is_that_of_its_recorded_history(root):
    """The last SummaryUpdate is written at most every 5 s; killed once rows are on disk (most
    likely before one), the run's summary still covers every row its log holds."""
    path = _kill_once_written(KILLED_SCRIPT, root, lambda recorded: (recorded.last_step or 0) > 20)
    recorded = tracklet.Api(root).run(path)
    assert recorded.state == "crashed"
    history = recorded.history()
    assert len(history["loss"]) > 20
    summary = recorded.summary
    assert summary["loss"] == history["loss"][-1]
    assert summary["acc"] == max(history["acc"])
    assert summary["val"]["min"] == min(history["val"])
    assert math.isclose(summary["val"]["mean"], sum(history["val"]) / len(history["val"]))


# ---------------------------------------------------------------- console lines before a kill

CONSOLE_SCRIPT = """
import sys, time, tracklet
run = tracklet.init(project="killed", settings={"flush_interval": 0.2, "capture_environment": False,
                                                "system_metrics": False})
sys.stdout.write(run.path + "\\n"); sys.stdout.flush()
for step in range(30):
    run.log({"step": step})
    print("line", step, flush=True)
    if step % 10 == 0:
        print("err", step, file=sys.stderr, flush=True)
time.sleep(600)  # until killed: no exit, no finish() or flush() writes these lines
"""
PRINTED = {f"line {step}" for step in range(30)} | {f"err {step}" for step in range(0, 30, 10)}


def test_console_lines_printed_before_a_kill_are_recorded_unasked(root):
    path = _kill_once_written(CONSOLE_SCRIPT, root, lambda recorded: PRINTED <= {line.text for line in recorded.console})
    recorded = tracklet.Api(root).run(path)
    assert recorded.state == "crashed"
    assert PRINTED <= {line.text for line in recorded.console}
    assert {line.text for line in recorded.console if line.stream == "stderr"} == {"err 0", "err 10", "err 20"}


PARTIAL_SCRIPT = """
import sys, time, tracklet
run = tracklet.init(project="killed", settings={"flush_interval": 0.2, "capture_environment": False,
                                                "system_metrics": False})
print(run.path, flush=True)
sys.stderr.write("epoch 1: ")  # a line not ended yet
for percent in range(0, 101, 10):
    sys.stderr.write(f"\\rprogress {percent}%")  # a progress bar's redraws
    time.sleep(0.02)
time.sleep(600)  # until killed: the bar's last redraw is never ended by a newline
"""


def _stderr_texts(recorded: tracklet.RecordedRun) -> list[str]:
    return [line.text for line in recorded.console if line.stream == "stderr"]


def test_a_line_still_being_written_reaches_the_log_without_its_newline(root):
    """Text without its newline yet (a progress bar, print(end="")) is recorded as it stands
    once it has waited a flush interval, instead of being lost with the process."""
    path = _kill_once_written(PARTIAL_SCRIPT, root, lambda recorded: _stderr_texts(recorded)[-1:] == ["progress 100%"])
    texts = _stderr_texts(tracklet.Api(root).run(path))
    assert texts and texts[-1] == "progress 100%"


def _partial_lines(run: tracklet.Run) -> list[str]:
    """The texts recorded as partial console lines so far, in the run's log on disk."""
    records = [pb.Record.FromString(payload) for _, payload in read_log(Path(run.dir) / "run.tlog").payloads]
    return [line.text for r in records if r.WhichOneof("kind") == "console" for line in r.console.lines
            if line.partial]


def _until_partial(run: tracklet.Run, text: str) -> None:
    deadline = time.monotonic() + 60  # a bound for a stuck test (the tick is 0.05 s away), not a timing check
    while text not in _partial_lines(run):
        assert time.monotonic() < deadline, f"{text!r} was never recorded as a partial line"
        time.sleep(0.01)


def test_a_partial_line_is_replaced_by_the_rest_of_it(start, root):
    run = start(settings={"console": "wrap", "flush_interval": 0.1})
    sys.stdout.write("epoch 1: ")
    _until_partial(run, "epoch 1: ")
    sys.stdout.write("loss 0.5")
    _until_partial(run, "epoch 1: loss 0.5")
    print(" done")
    for percent in (10, 50):
        sys.stdout.write(f"\r{percent}%")
        _until_partial(run, f"{percent}%")
    print()
    print("next")
    run.finish()
    assert set(_partial_lines(run)) == {"epoch 1: ", "epoch 1: loss 0.5", "10%", "50%"}
    texts = [(line.text, line.partial) for line in read(run).console if line.stream == "stdout"]
    assert texts == [("epoch 1: loss 0.5 done", False), ("50%", False), ("next", False)]
    page = tracklet.Api(root).store.console(run.path, stream="stdout")  # indexed in one pass
    assert [line.text for line in page.lines] == [text for text, _ in texts]


# ---------------------------------------------------------------- sparse history


def _sparse_run(start, steps: int, keys: int, every: int, name: str) -> tracklet.RecordedRun:
    run = start(name=name)
    names = [f"eval/m{k}" for k in range(keys)]
    for step in range(steps):
        row = {"loss": 1.0 / (step + 1)}
        if step % every == every - 1:
            row.update((n, float(step + k)) for k, n in enumerate(names))
        run.log(row)
    run.finish()
    return read(run)


def _read_peak(recorded: tracklet.RecordedRun, keys=None) -> int:
    """tracemalloc's peak while building the history, iterating its rows and exporting it."""
    _ = recorded._read  # the record log itself, read first: not what is measured here
    tracemalloc.start()
    try:
        history = recorded.history(keys)
        for _ in history.rows():
            pass
        with open(os.devnull, "w") as sink:
            export_history(recorded, "jsonl", sink, keys=keys)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_history_memory_follows_the_values_present_not_keys_times_rows(start):
    # Twice the steps and twice the eval keys: 2x the values, 4x the keys x rows.
    small = _sparse_run(start, 2_000, 200, 200, "small")
    large = _sparse_run(start, 4_000, 400, 400, "large")
    values = {r: sum(len([v for v in col if v is not None]) for k, col in r.history().items() if not k.startswith("_"))
              for r in (small, large)}
    assert values[large] == 2 * values[small]
    small_peak, large_peak = _read_peak(small), _read_peak(large)
    assert large_peak < 3 * small_peak  # dense columns: ~4x
    # and in absolute terms: well under a dense slot per key and row (8 bytes each)
    assert large_peak < 400 * 4_000 * 8 / 2


def test_history_of_some_keys_reads_only_those(start):
    wide = _sparse_run(start, 2_000, 300, 100, "wide")
    narrow = _sparse_run(start, 2_000, 3, 100, "narrow")
    assert _read_peak(wide, ["loss"]) < 2 * _read_peak(narrow, ["loss"])
    history = wide.history(["eval/m7", "loss"])
    assert list(history) == ["_step", "_timestamp", "_runtime", "eval/m7", "loss"]
    assert history["eval/m7"][99] == 106.0 and history["eval/m7"][100] is None


def test_sparse_history_reads_like_dense_columns(start):
    run = start()
    run.log({"a": 1, "b": "x"})
    run.log({"a": 2.5}, commit=False)  # merged into the next row
    run.log({"c": True})
    run.log({"a": 3})
    run.log({"b": "y", "a": 4.0})
    run.finish()
    history = read(run).history()
    expected = {
        "_step": [0, 1, 2, 3],
        "a": [1, 2.5, 3.0, 4.0],
        "b": ["x", None, None, "y"],
        "c": [None, True, None, None],
    }
    assert {k: history[k] for k in expected} == expected
    assert [type(v) for v in history["a"]] == [int, float, float, float]  # 2.5 and 3 shared a float column
    assert history.num_rows == 4 and len(history) == 6
    assert list(history.rows())[1] == {"_step": 1, "_timestamp": history["_timestamp"][1],
                                       "_runtime": history["_runtime"][1], "a": 2.5, "c": True}
    # Still a dict to everything that takes one: built columns, whichever way it is read.
    fresh = read(run).history()
    assert json.loads(json.dumps(fresh)) == {**fresh} == dict(fresh.items()) == history
    assert pickle.loads(pickle.dumps(fresh)) == history and isinstance(fresh, dict)
    assert dict(history) == {k: history[k] for k in history} and history == dict(history)
    frame = history.to_pandas()
    assert list(frame.columns) == list(history) and frame["a"].tolist() == [1.0, 2.5, 3.0, 4.0]
    out = io.StringIO()
    export_history(read(run), "csv", out)
    assert out.getvalue().splitlines()[1:] == [
        f"{s},{t!r},{r!r},{a},{b},{c}" for s, t, r, a, b, c in zip(
            history["_step"], history["_timestamp"], history["_runtime"], ["1", "2.5", "3.0", "4.0"],
            ["x", "", "", "y"], ["", "true", "", ""])
    ]


def test_sparse_history_and_summary_keep_ints_beyond_int64(start):
    run = start()
    run.log({"big": 2**70, "x": 1.0})
    run.log({"x": 2.0})
    run.log({"big": -(2**65)})
    run.finish()
    recorded = read(run)
    assert recorded.history(["big"])["big"] == [2**70, None, -(2**65)]
    assert recorded.summary["big"] == -(2**65)
    out = io.StringIO()
    export_history(recorded, "jsonl", out, keys=["big"])
    assert [json.loads(line).get("big") for line in out.getvalue().splitlines()] == [2**70, None, -(2**65)]


def test_rows_at_one_step_over_several_records_merge_into_one(start):
    """Several records each holding only rows of the step before (a framework logging one step's
    metrics from several hooks, flushed in between) merge into that step's one row."""
    run = start()
    run.log({"a": 1.0}, step=5)
    for key in ("b", "c", "d"):
        run.flush()
        run.log({key: 2.0}, step=5)
    run.flush()
    run.log({"e": 3.0}, step=6)
    run.finish()
    history = read(run).history()
    assert history["_step"] == [5, 6]
    assert [history[k] for k in "abcde"] == [[1.0, None], [2.0, None], [2.0, None], [2.0, None], [None, 3.0]]
