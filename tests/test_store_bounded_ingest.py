"""Indexing folds a log's new bytes a chunk per transaction (issue #12 item 5: bound memory per
indexing job): a long log's first indexing takes memory for a chunk, not for the whole log, and
ends with the same store as one pass."""

from __future__ import annotations

import tracemalloc

import pytest

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import read_log
from tracklet.store import Store, ingest

from conftest import QUIET


@pytest.mark.filterwarnings("ignore:.*waiting for the background sender")
def test_a_long_log_is_indexed_chunk_by_chunk_in_bounded_memory(root, store_url, monkeypatch):
    run = tracklet.init(project="p", id="long", dir=str(root), settings=QUIET)
    steps = 300_000
    for step in range(steps):
        run.log({"a": float(step), "b": step, "c": step % 2 == 0, "d": 0.5})
    run.finish()
    log_file = RunPaths(root, "p", "long").log_file
    frames = read_log(log_file).payloads
    chunk = max(len(payload) for _, payload in frames) // 2  # the biggest frames outgrow a chunk
    assert len(frames) > 10

    monkeypatch.setattr(ingest, "INDEX_CHUNK_BYTES", chunk)
    store = Store(store_url, root=root)
    tracemalloc.start()
    try:
        report = store.index()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.bytes_read == log_file.stat().st_size
    # One pass over the whole log peaks at ~7 times the log's size; a chunk at ~10 times a frame's.
    assert peak < log_file.stat().st_size / 2, (peak, log_file.stat().st_size)

    (row,) = store.runs("p", fields=("state", "last_step", "summary", "keys"))
    assert (row["state"], row["last_step"]) == ("finished", steps - 1)
    assert row["summary"] == {"a": steps - 1.0, "b": steps - 1, "c": False, "d": 0.5}
    assert row["keys"] == ["a", "b", "c", "d"]
    for key in ("a", "b"):
        (series,) = store.history("p/long", key, buckets=None)
        assert series.steps.tolist() == list(range(steps))
        assert series.values.tolist() == [float(s) for s in range(steps)]
    assert store.index().bytes_read == 0


def test_a_crashed_runs_log_indexed_in_chunks_settles_its_state_once(root, monkeypatch):
    """The chunks before the last read as `running`; the last finds the writer dead, and the
    crashed run's summary is folded from the whole log once, not once per chunk."""
    from conftest import run_script

    done = run_script(f"""
import os, tracklet
run = tracklet.init(project="p", id="dies", dir={str(root)!r}, settings={QUIET!r})
for step in range(60_000):
    run.log({{"loss": float(step)}})
run.flush()
os._exit(9)
""")
    assert done.returncode == 9, done.stderr
    monkeypatch.setattr(ingest, "INDEX_CHUNK_BYTES", 64 << 10)
    folds = []
    whole_log_fold = ingest.Indexer._summary_from_log
    monkeypatch.setattr(ingest.Indexer, "_summary_from_log",
                        lambda self, paths: folds.append(paths) or whole_log_fold(self, paths))
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    report = store.index()
    assert report.bytes_read > 4 * (64 << 10)  # several chunks
    (row,) = store.runs("p", fields=("state", "last_step", "summary"))
    assert (row["state"], row["last_step"], row["summary"]["loss"]) == ("crashed", 59_999, 59_999.0)
    assert len(folds) == 1


@pytest.mark.filterwarnings("ignore:.*waiting for the background sender")
def test_a_crashed_runs_summary_fold_reads_its_log_in_bounded_memory(root, monkeypatch):
    """Finding a run crashed folds its summary from the whole log: a window at a time, so a
    long crashed log takes memory for a chunk, like the ingest pass, and the summary still
    covers every step."""
    from conftest import run_script

    done = run_script(f"""
import os, tracklet
run = tracklet.init(project="p", id="dies", dir={str(root)!r}, settings={QUIET!r})
for step in range(200_000):
    run.log({{"loss": float(step), "acc": step % 7, "flag": step % 2 == 0}})
run.flush()
os._exit(9)
""")
    assert done.returncode == 9, done.stderr
    log_file = RunPaths(root, "p", "dies").log_file
    frames = read_log(log_file).payloads
    chunk = max(len(payload) for _, payload in frames) // 2
    assert len(frames) > 10
    monkeypatch.setattr(ingest, "INDEX_CHUNK_BYTES", chunk)
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    tracemalloc.start()
    try:
        store.index()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < log_file.stat().st_size / 2, (peak, log_file.stat().st_size)
    (row,) = store.runs("p", fields=("state", "last_step", "summary"))
    assert (row["state"], row["last_step"]) == ("crashed", 199_999)
    assert row["summary"] == {"loss": 199_999.0, "acc": 199_999 % 7, "flag": False}


def test_a_crashed_runs_first_indexing_reads_its_log_once(root, monkeypatch):
    """A long crashed run's first query indexed its log twice: the ingest pass, then a second
    read of the whole log for the crashed run's summary. The ingest pass folds that summary as it
    reads, so the first indexing reads each byte once (and the summary is the same)."""
    from conftest import run_script

    done = run_script(f"""
import os, tracklet
run = tracklet.init(project="p", id="dies", dir={str(root)!r}, settings={QUIET!r})
for step in range(60_000):
    run.log({{"loss": float(step), "acc": step % 7}})
run.summary["best"] = 3.5
run.flush()
os._exit(9)
""")
    assert done.returncode == 9, done.stderr
    monkeypatch.setattr(ingest, "INDEX_CHUNK_BYTES", 64 << 10)
    read: list[int] = []
    read_from = ingest.LocalLogs.read_from

    def counted(self, paths, offset, limit):
        result = read_from(self, paths, offset, limit)
        read.append(result.end_offset - offset)
        return result

    monkeypatch.setattr(ingest.LocalLogs, "read_from", counted)
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    report = store.index()
    size = RunPaths(root, "p", "dies").log_file.stat().st_size
    assert report.bytes_read > 4 * (64 << 10)  # several chunks
    assert sum(read) == report.bytes_read, (sum(read), report.bytes_read, size)  # once, not twice
    (row,) = store.runs("p", fields=("state", "summary"))
    assert row["state"] == "crashed"
    assert row["summary"] == {"loss": 59_999.0, "acc": 59_999 % 7, "best": 3.5}


def test_a_querys_lasting_implicit_indexing_says_what_it_does(root, monkeypatch):
    """A first query that indexes for a while (a long crashed run's log) says so on stderr
    instead of reading as a hang; here the indexing waits until the notice is out."""
    import io
    import threading

    from tracklet.api import local

    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    said = threading.Event()

    class Stderr(io.StringIO):
        def write(self, text):
            if "tracklet: indexing what the record logs" in text:
                said.set()
            return super().write(text)

    stderr = Stderr()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(local, "INDEX_NOTICE_AFTER", 0.01, raising=False)
    index_runs = ingest.Indexer.index_runs
    monkeypatch.setattr(ingest.Indexer, "index_runs",
                        lambda self, runs: said.wait(20) and index_runs(self, runs))
    assert tracklet.Api(root=str(root)).run("p/r").state == "finished"
    assert len(tracklet.Api(root=str(root)).traces(project="p")) == 0
    assert said.is_set(), stderr.getvalue()
    assert f"indexing what the record logs under {root} gained since the last index" in stderr.getvalue()
