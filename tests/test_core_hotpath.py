"""The recording hot path's costs, tested by structure rather than by the clock.

``init()`` leaves protobuf, the encoder, psutil and NVML to background threads, so the calling
thread pays for a run directory, a file and a few threads. The sender's worker takes the queue a
slice at a time and writes bounded records, so none of its single C calls (which hold the GIL, and
so stall ``log()`` on the training thread) covers more than a slice of rows.
"""

from __future__ import annotations

import json
import warnings

import pytest

from tracklet.core.recordlog import read_log
from tracklet.core.sender import DRAIN_SLICE, MAX_ROWS_PER_RECORD, BatchSender
from tracklet.core.warn import TrackletWarning
from tracklet.proto import records_pb2 as pb

from conftest import read, run_script


class _RecordingSink:
    """Keeps every record, and how many items were still queued when each was written."""

    def __init__(self) -> None:
        self.queued = lambda: 0  # the sender's queued_entries, once there is one
        self.payloads: list[bytes] = []
        self.queued_at_write: list[int] = []

    def write(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self.queued_at_write.append(self.queued())

    def flush(self, fsync: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def _histories(payloads: list[bytes]) -> list[tuple[pb.HistoryBatch, int]]:
    found = []
    for index, payload in enumerate(payloads):
        record = pb.Record.FromString(payload)
        if record.WhichOneof("kind") == "history":
            found.append((record.history, index))
    return found


def test_a_big_backlog_is_taken_in_slices_and_written_as_bounded_records():
    rows = 25_000
    sink = _RecordingSink()
    # Nothing wakes the worker before shutdown(): it finds all 25,000 rows queued at once.
    sender = BatchSender([sink], flush_interval=600, batch_size=10**9, max_queue=10**9)
    sink.queued = sender.queued_entries
    keys = ("loss", "acc")
    for step in range(rows):
        sender.put((step, float(step), keys, (step * 0.5, 1.0)))
    assert sender.shutdown(timeout=60)

    histories = _histories(sink.payloads)
    steps = [step for history, _ in histories for step in history.steps]
    assert steps == list(range(rows))  # every row, in order
    assert max(len(history.steps) for history, _ in histories) <= min(MAX_ROWS_PER_RECORD, DRAIN_SLICE)
    assert len(histories) >= rows // MAX_ROWS_PER_RECORD
    # The first record was written while the rest still waited in the queue: the worker took one
    # slice (and frees it before the next), not the whole backlog.
    queued = [sink.queued_at_write[index] for _, index in histories]
    assert queued[0] >= rows - DRAIN_SLICE
    assert queued == sorted(queued, reverse=True) and queued[-1] == 0


def test_a_worker_that_cannot_load_the_encoder_warns_and_never_blocks_the_caller(monkeypatch):
    def broken(self):
        raise ImportError("no protobuf here")

    monkeypatch.setattr(BatchSender, "_build", broken)
    sink = _RecordingSink()
    sender = BatchSender([sink], flush_interval=0.05, batch_size=5, max_queue=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(100):  # ten times max_queue: a producer must never wait on a dead end
            sender.put((step, 0.0, ("x",), (1.0,)))
        assert sender.force_flush(timeout=30)
        assert sender.shutdown(timeout=30)  # joins the worker: every warning of its is in by now
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackletWarning)]
    assert any("could not start" in m and "no protobuf here" in m for m in messages), messages
    assert sink.payloads == []


def test_the_run_api_imports_neither_protobuf_nor_the_encoder():
    done = run_script(
        """
        import sys
        import tracklet, tracklet.core.start, tracklet.core.run, tracklet.core.sender
        import tracklet.core.environment, tracklet.core.system
        from tracklet import TrackletWarning  # what a user's warnings filter names
        heavy = ("google.protobuf", "tracklet.proto", "tracklet.core.encoder", "tracklet.core.values", "psutil",
                 "pynvml", "secrets", "socket")
        print(sorted(name for name in sys.modules if name.startswith(heavy)))
        from tracklet.core import encoder
        print(TrackletWarning is encoder.TrackletWarning)  # one class, wherever it is imported from
        """,
        check=True,
    )
    assert done.stdout.split() == ["[]", "True"]


def test_init_leaves_protobuf_psutil_and_nvml_to_background_threads(tmp_path):
    """Default settings (console, environment capture, system metrics) and a config: the calling
    thread imports none of them during ``init()``, and nothing imports the reader (a new run reads
    nothing back); the run is recorded all the same."""
    done = run_script(
        f"""
        import json, sys, threading
        importers = {{}}

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name in ("google.protobuf", "tracklet.core.encoder", "psutil", "pynvml", "tracklet.core.reader"):
                    importers.setdefault(name, threading.current_thread().name)
                return None

        sys.meta_path.insert(0, Watch())
        import tracklet
        run = tracklet.init(project="p", dir={str(tmp_path)!r}, config={{"lr": 0.1}})
        during_init = dict(importers)
        run.log({{"loss": 1.0}})
        run.finish()
        print(json.dumps([during_init, importers, run.path]))
        """,
        check=True,
    )
    during_init, importers, path = json.loads(done.stdout.strip().splitlines()[-1])
    assert "MainThread" not in during_init.values(), during_init
    assert importers.get("tracklet.core.encoder", "").startswith("tracklet-sender"), importers
    assert "tracklet.core.reader" not in importers  # a new run reads nothing back: no reader, start to finish

    records = [pb.Record.FromString(payload) for _, payload in read_log(tmp_path / "projects" / "p" / "runs" /
                                                                        path.split("/")[1] / "run.tlog").payloads]
    kinds = [record.WhichOneof("kind") for record in records]
    assert kinds[0] == "run_start" and records[0].run_start.run_id == path.split("/")[1]
    assert {"config", "history", "exit"} <= set(kinds) and kinds.index("config") < kinds.index("history")


def test_run_start_stays_the_first_record_and_a_resumed_run_keeps_its_keys_and_summary(start):
    run = start(id="again", config={"lr": 0.1})
    run.log({"loss": 2.0, "acc": 0.5})
    run.finish()
    resumed = start(id="again", resume="allow", config={"batch": 8})
    resumed.log({"loss": 1.0})
    assert resumed.summary["acc"] == 0.5 and resumed.summary["loss"] == 1.0
    resumed.finish()
    recorded = read(resumed)
    assert recorded.config == {"lr": 0.1, "batch": 8}
    assert recorded.history()["loss"] == [2.0, 1.0]
    records = [pb.Record.FromString(payload) for _, payload in read_log(resumed.dir + "/run.tlog").payloads]
    assert records[0].WhichOneof("kind") == "run_start" and not records[0].run_start.resumed
    starts = [index for index, record in enumerate(records) if record.WhichOneof("kind") == "run_start"]
    assert len(starts) == 2 and records[starts[1]].run_start.resumed
    # the resumed part defines no key again: "loss" keeps the number the first part gave it
    defined = [key.name for record in records if record.WhichOneof("kind") == "history"
               for key in record.history.new_keys]
    assert sorted(defined) == ["acc", "loss"]


def test_log_queues_plain_rows_without_a_gc_tracked_object_per_call(start):
    """log()'s p99.9 was set by garbage collection: each queued row held two tuples, GC-tracked
    until the worker took them, so a gen-0 collection (~30 us) ran every ~350 calls, inside a
    log() call or on the worker while log() waited for the GIL. Plain rows are now queued as
    entries of the queue list itself (sender.RowKeys): logging allocates nothing that stays
    tracked, and the rows read back as logged, in order, key sets mixed."""
    import gc

    run = start(settings={"batch_size": 10**6, "max_queue": 10**6, "flush_interval": 600, "system_metrics": False})
    wide = {f"m{i}": i / 4 for i in range(10)}
    mixed = {"a": 1, "b": "x", "c": True}
    run.log(wide)
    run.log(mixed)
    # The worker loads its encoder and writes these first rows now, not during the count below
    # (gc.get_count() counts every thread's allocations; CI's clean process saw its imports: 123).
    assert run._sender.force_flush(timeout=60)
    gc.disable()
    try:
        before = gc.get_count()[0]
        for _ in range(1000):
            run.log(wide)
            run.log(mixed)
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert grown < 50, grown  # was ~2 per call: ~4,000
    run.log({"m0": 2**53 + 1, "a": 2.5})  # a key set of its own, after the others
    run.finish()
    history = read(run).history()
    assert len(history["_step"]) == 2003
    assert history["m3"][:3] == [0.75, None, 0.75] and history["b"][:4] == [None, "x", None, "x"]
    assert history["c"][1] is True and history["m0"][-1] == 2**53 + 1 and history["a"][-2:] == [1, 2.5]



def test_a_float_column_packed_in_one_pass_reads_back_every_value_as_logged(start):
    """The encoder packs a float column in one C-level pass and looks at its values' types only
    when a double of 2**49 or more (or an inf, a NaN) could have come from an int past 2**53:
    every kind of value a float column meets reads back with its value (and an int past 2**53, a
    str, with its type)."""
    import math

    import numpy as np

    run = start(settings={"system_metrics": False})
    columns = {
        "small": [0.5, 2**50 - 1, True, -3, np.float32(1.5), np.float64(-0.25)],
        "huge": [1.5, 1e300, -1e20, 2.0**60, 2**53, 7.0],
        "special": [0.5, math.inf, -math.inf, 2**52 + 1, -0.0, 1.0],
        "past_2_53": [0.5, 1e20, 2**53 + 1, 2.5, -(2**63), 1.0],
        "a_str": [0.5, 1.0, "high", 2.0, 3.0, 4.0],
    }
    for index in range(6):
        run.log({key: values[index] for key, values in columns.items()})
    run.log({"nan": 0.5})
    run.log({"nan": math.nan})

    class NoFloat:
        def __float__(self) -> float:
            raise RuntimeError("no float")

    with pytest.warns(TrackletWarning, match="key 'odd' at step 9 has a value of type"):
        for value in (0.5, NoFloat(), 1.5):
            run.log({"odd": value})
        run.flush()
    run.finish()
    history = read(run).history()
    for key, values in columns.items():
        assert history[key][:6] == [v if type(v) in (int, str) else float(v) for v in values], key
    assert [type(v) for v in history["past_2_53"][:6]] == [float, float, int, float, int, float]
    assert type(history["a_str"][2]) is str and history["small"][2] == 1.0
    assert math.copysign(1.0, history["special"][4]) == -1.0
    assert history["nan"][6] == 0.5 and math.isnan(history["nan"][7])
    assert history["odd"][8:] == [0.5, None, 1.5]

def _flat_rows(sender: BatchSender, rows: int) -> None:
    from tracklet.core.sender import RowKeys

    marker = RowKeys(("loss", "acc"))
    for step in range(rows):
        sender.put_many((marker, step, float(step), step * 0.5, 1.0))


def test_the_worker_yields_between_slices_to_producers_but_not_once_the_run_is_finishing(monkeypatch):
    """Between slices the worker yields the GIL (``time.sleep(0)``) so that ``log()`` waits at most
    one slice; once ``finish()`` waits for the whole queue there is nobody to yield to, and under
    load each yield handed the CPU to other processes (2-3 ms a slice at load 10 on 2 cores)."""
    import types

    from tracklet.core import sender as sender_module

    yields: list[float] = []
    monkeypatch.setattr(sender_module, "time", types.SimpleNamespace(
        sleep=yields.append, monotonic=sender_module.time.monotonic))
    rows = 3 * DRAIN_SLICE // 5  # three slices of 5-entry rows
    for finishing, expect_yields in ((False, True), (True, False)):
        yields.clear()
        sink = _RecordingSink()
        sender = BatchSender([sink], flush_interval=600, batch_size=10**9, max_queue=10**9)
        _flat_rows(sender, rows)
        if finishing:
            sender.wake(finishing=True)
        assert sender.force_flush(timeout=60)
        assert sender.shutdown(timeout=60)
        steps = [step for history, _ in _histories(sink.payloads) for step in history.steps]
        assert steps == list(range(rows))
        assert bool(yields) == expect_yields, (finishing, yields)


def test_finding_a_key_sets_rows_in_the_queue_never_compares_a_logged_value():
    """The worker finds each run of one key set's flat rows by comparing queue entries with the
    key set's marker: a value's own ``__eq__`` (a tensor's, an array's, one that raises) is never
    called, whatever follows the run, and every row is written in order."""
    from tracklet.core.sender import RowKeys

    compared: list[object] = []

    class Touchy:
        def __eq__(self, other: object) -> bool:
            compared.append(other)
            raise RuntimeError("compared")

        __hash__ = object.__hash__

        def __float__(self) -> float:
            return 2.0

    class Record:  # a queued item of another kind, with an __eq__ of its own
        __eq__ = Touchy.__eq__
        __hash__ = object.__hash__

        def SerializeToString(self) -> bytes:  # noqa: N802
            return b""

    sink = _RecordingSink()
    sender = BatchSender([sink], flush_interval=600, batch_size=10**9, max_queue=10**9)
    narrow, wide = RowKeys(("a",)), RowKeys(("b", "c"))
    step = 0
    for block in range(40):
        for _ in range(block % 7 + 1):
            sender.put_many((narrow, step, 1.0, Touchy()))
            step += 1
        for _ in range(block % 5 + 1):
            sender.put_many((wide, step, 1.0, Touchy(), 0.5))
            step += 1
        if block % 3 == 0:
            sender.put(Record())
    assert sender.shutdown(timeout=60)
    steps = [step for history, _ in _histories(sink.payloads) for step in history.steps]
    assert steps == list(range(step)) and not compared


_LIMITED_LOG_WRITER = """
import resource, signal, sys
from tracklet.core.recordlog import RecordLogWriter

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
writer = RecordLogWriter(sys.argv[1])
payloads = [bytes([index % 251]) * (20 + index % 97) for index in range(1500)]
offsets = [writer.write(payload) for payload in payloads]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
try:
    writer.flush()
except OSError as error:
    print("raised", error.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
writer.close()
print(" ".join(map(str, offsets)))
"""


def test_a_flush_cut_short_by_a_full_disk_writes_the_rest_on_the_next_flush(tmp_path):
    """Frames are handed to the OS as they were queued, header and payload apart (``writev``,
    at most IOV_MAX buffers a call): a write the disk cut short, in the middle of a frame, leaves
    the rest queued, and the next flush writes it after what was written, so every record reads
    back whole, at the offset ``write`` gave it. A file size limit stands in for a full disk."""
    import errno
    import subprocess
    import sys

    log = tmp_path / "run.tlog"
    limit = 40_000 + 3  # inside a frame, and past the first writev's buffers
    done = subprocess.run([sys.executable, "-c", _LIMITED_LOG_WRITER, str(log), str(limit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    failure, offsets = done.stdout.splitlines()
    assert failure == f"raised {errno.EFBIG}"
    scan = read_log(log)
    assert scan.damage is None
    assert [payload for _, payload in scan.payloads] == [bytes([index % 251]) * (20 + index % 97)
                                                         for index in range(1500)]
    assert [offset for offset, _ in scan.payloads] == [int(offset) for offset in offsets.split()]


def test_finish_runs_no_garbage_collection(start):
    """``finish()`` waits for the worker's last drain and the environment capture; a collection
    started by either (the capture unmarshals the package inventory: thousands of containers) held
    the GIL for milliseconds of a cold ``finish()``. Collection is paused for the call and resumed
    after it; here the threshold would start one every 10 allocations."""
    import gc

    run = start()
    for step in range(5_000):
        run.log({"loss": 1.0 / (step + 1), "config": {"lr": 0.1}})  # flattened: containers on both threads
    collections: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":  # ``finished`` is set once collection is paused (before: may be running)
            collections.append(run.finished)

    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    gc.set_threshold(10)
    try:
        run.finish()
        during = list(collections)
        assert gc.isenabled()
        gc.collect(0)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
    assert True not in during and len(collections) > len(during)  # none in finish(); resumed after it
    assert len(read(run).history()["loss"]) == 5_000
