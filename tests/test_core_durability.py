"""The record log survives kill -9, damage, concurrency and fork; the sender never stalls or crashes
the training loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tracklet
from tracklet.core.recordlog import MAGIC, RecordLogWriter, read_log
from tracklet.core.sender import BatchSender

from conftest import REPO, killed_once_written, read, run_script

KILL_SCRIPT = """
import sys, tracklet
run = tracklet.init(project="killed", settings={"flush_interval": 0.2, "console": "off",
                                                "capture_environment": False, "system_metrics": False})
run.log({"value": 0.0})
print(run.path, flush=True)
sys.stdin.readline()  # step 0 is on disk: the sender's first wake-up (as init() returned) is over
for step in range(1, 100):  # fewer rows than wake the sender (batch_size): only its tick writes them
    run.log({"value": step * 0.5})
print("logged", flush=True)
sys.stdin.readline()  # they are on disk
step = 100
while True:  # logging as fast as it can until killed, so the kill most likely lands mid-write
    run.log({"value": step * 0.5})
    step += 1
"""


def _last_step_on_disk(root: Path, path: str, at_least: int, child: subprocess.Popen, why: str) -> int:
    """The last step the live run's log holds on disk, polled until it is ``at_least``."""
    # A bound for a stuck test (the tick is 0.1 s away), not a timing check.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        last = tracklet.Api(root).run(path).last_step
        if last is not None and last >= at_least:
            return last
        time.sleep(0.01)
    raise AssertionError(f"step {at_least} never reached the run's log while the process lived ({why})")


def test_sigkill_keeps_every_record_the_sender_wrote_unasked(root):
    """kill -9 keeps every record the sender had written before it, with no flush() or exit asked
    for: the rows its tick wrote (too few to wake it by their number) and those written while the
    process went on logging. Waits for the writes on disk instead of assuming they happen within a
    flush interval, which a loaded machine does not keep."""
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdin is not None and child.stdout is not None
        path = child.stdout.readline().strip()
        _last_step_on_disk(root, path, 0, child, "the sender's first wake-up")
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "logged\n"
        _last_step_on_disk(root, path, 99, child, "the sender's tick")
        child.stdin.write("go\n")
        child.stdin.flush()
        seen = _last_step_on_disk(root, path, 10_000, child, "the sender's drains")
        child.send_signal(signal.SIGKILL)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
    assert child.returncode == -signal.SIGKILL
    recorded = tracklet.Api(root).run(path)
    assert recorded.state == "crashed"
    steps = recorded.history()["_step"]
    assert steps == list(range(len(steps))), "the recorded steps have a gap"
    print(f"recorded {len(steps)} steps, {seen + 1} seen on disk before the kill")
    assert steps[-1] >= seen
    assert recorded.history()["value"][seen] == seen * 0.5


EARLY_KILL = """
import time, tracklet
run = tracklet.init(project="early", id="killed", config={"lr": 0.1},
                    settings={"console": "off", "system_metrics": False})
for step in range(3):
    run.log({"loss": 1.0 / (step + 1)})
run.config.update({"batch": 32})
print("started", flush=True)
time.sleep(600)  # training, until killed; the sender's next tick is flush_interval / 2 = 600 s away
"""


def _early_run_when_written(root: Path, deadline: float) -> tracklet.Run | None:
    """Run early/killed once its log holds the start, both config changes, the rows and the
    environment (read as the process writes it)."""
    while time.monotonic() < deadline:
        try:
            recorded = tracklet.Api(root).run("early/killed")
            if (recorded.config == {"lr": 0.1, "batch": 32} and recorded.last_step == 2
                    and "hostname" in recorded.metadata):
                return recorded
        except Exception:  # the run's directory or first record not there yet
            pass
        time.sleep(0.02)
    return None


def test_a_run_killed_right_after_it_started_keeps_its_start_config_rows_and_environment(root, tmp_path):
    """A run SIGKILLed in its first moments is still a run: the sender's first wake-up is as init()
    returns (not its first tick, flush_interval / 2 away: 600 s here), writing the start record, the
    config and what was logged meanwhile; a config change (and the environment record, once
    captured) wakes it again. Before, such a run's log held nothing at all, not even RunStart."""
    written, pid = killed_once_written(["-c", EARLY_KILL], cwd=tmp_path, ready="started\n",
                                  written=lambda deadline: _early_run_when_written(root, deadline))
    assert written is not None, "the run's start, config, rows or environment were not written before the tick"
    (recorded,) = tracklet.Api(root).runs("early")
    assert recorded.id == "killed" and recorded.state == "crashed" and recorded.exit_code is None
    assert recorded.config == {"lr": 0.1, "batch": 32}
    assert recorded.history()["loss"] == [1.0, 0.5, 1.0 / 3]
    assert recorded.metadata["host"] and recorded.metadata["pid"] == pid


def test_a_run_killed_as_init_returns_is_still_a_run_with_its_identity(root, tmp_path):
    """The start record is written by init() itself, before it returns: a process SIGKILLed before
    the sender's first GIL turn (here: in the statement after init(), which gives no thread a turn)
    still leaves a run, listed as crashed, with its name, tags and pid. Before, its log was empty."""
    code = ("import os, signal, tracklet\n"
            "run = tracklet.init(project='instant', id='gone', name='quick', tags=['t'], settings={'flush_interval': 1200,"
            " 'capture_environment': False, 'system_metrics': False, 'console': 'off'})\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    child = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    (recorded,) = tracklet.Api(root).runs("instant")
    assert (recorded.id, recorded.name, recorded.tags, recorded.state) == ("gone", "quick", ["t"], "crashed")
    assert recorded.metadata["pid"] > 0


def _write_run(start, steps: int = 200) -> tracklet.Run:
    run = start()
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "step": step})
        if step % 50 == 49:
            run.flush()  # several history records, so damage can fall between them
    run.finish()
    return run


def test_a_truncated_log_reads_up_to_the_tear_with_a_warning(start):
    run = _write_run(start)
    log_file = Path(run.dir) / "run.tlog"
    data = log_file.read_bytes()
    frames = read_log(log_file).payloads
    cut = frames[3][0] + 5  # inside the fourth frame
    log_file.write_bytes(data[:cut])
    with pytest.warns(tracklet.TrackletWarning, match=f"damaged at byte {frames[3][0]}.*incomplete"):
        recorded = read(run)
        history = recorded.history()
    assert recorded.state == "crashed" and recorded.damaged
    steps = history["_step"]
    assert steps == list(range(len(steps))) and 0 < len(steps) < 200


def test_a_bit_flip_skips_only_the_damaged_record(start):
    run = _write_run(start)
    log_file = Path(run.dir) / "run.tlog"
    data = bytearray(log_file.read_bytes())
    frames = read_log(log_file).payloads
    history_frames = [(offset, payload) for offset, payload in frames if len(payload) > 500]
    target, payload = history_frames[2]
    from tracklet.proto import records_pb2 as pb

    lost = set(pb.Record.FromString(payload).history.steps)  # the worker's tick may split a flush's rows
    data[target + 20] ^= 0x10
    log_file.write_bytes(bytes(data))
    with pytest.warns(tracklet.TrackletWarning, match=f"damaged at byte {target} \\(checksum mismatch\\)"):
        recorded = read(run)
        history = recorded.history()
    # That history record's rows are lost; reading resumes at the frame after it.
    assert lost and history["_step"] == [step for step in range(200) if step not in lost]
    assert recorded.damaged and f"byte {target} (checksum mismatch)" in recorded.damage
    assert recorded.summary["loss"] == 1.0 / 200  # records after the damage (the summary) are read



@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 8192, 160_003])
def test_a_frame_checksums_the_whole_payload_whatever_its_size(size):
    """A frame's CRC-32 is taken a piece at a time (so the sender's worker keeps the GIL: zlib
    releases it for more than 5 KiB), and is still the CRC-32 of the whole payload, which every
    reader checks."""
    import zlib

    from tracklet.core.recordlog import FRAME_HEADER, frame_header

    payload = bytes(index * 7 % 251 for index in range(size))
    assert frame_header(payload) == FRAME_HEADER.pack(size, zlib.crc32(payload))

def test_garbage_is_not_a_record_log(tmp_path):
    bogus = tmp_path / "run.tlog"
    bogus.write_bytes(b"hello world, not a log")
    from tracklet.core.recordlog import RecordLogError

    with pytest.raises(RecordLogError, match="bad header"):
        read_log(bogus)


def test_resume_after_a_torn_tail_appends_after_the_intact_part(start):
    run = start(id="torn")
    for step in range(10):
        run.log({"a": step})
    run.finish()
    log_file = Path(run.dir) / "run.tlog"
    with open(log_file, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00garbage")  # a frame header announcing more than is there
    with pytest.warns(tracklet.TrackletWarning, match="resuming"):
        again = start(id="torn", resume="allow")
    again.log({"a": 10})
    again.finish()
    assert read_log(log_file).damage is None
    assert read(again).history()["a"] == list(range(11))


def test_a_second_writer_is_refused(start):
    run = start(id="busy")
    from tracklet.core.recordlog import RecordLogError

    with pytest.raises(RecordLogError, match="being written by another process"):
        RecordLogWriter(Path(run.dir) / "run.tlog", resume=True)
    assert read(run).state == "running"
    run.finish()


def test_a_readers_probe_of_a_new_log_does_not_refuse_its_writer(tmp_path):
    # writer_alive() takes a shared lock for microseconds (tracklet sync, an index pass, a parent's
    # uploader passing over its run's parts every upload_interval): a part whose writer opened its
    # log in that moment was refused as "being written by another process" and recorded nothing.
    # A probe is waited out; a writer's lock is still refused at once, and a reader holding its
    # shared lock past PROBE_WAIT gets an error naming that.
    import fcntl
    import threading
    import time

    from tracklet.core import recordlog
    from tracklet.core.recordlog import RecordLogError

    path = tmp_path / "part.tlog"
    path.write_bytes(b"")
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    released = threading.Timer(0.05, os.close, (probe,))  # the probe ends: its lock goes with it
    released.start()
    writer = RecordLogWriter(path)  # waits out the probe
    released.join()
    assert recordlog.writer_alive(path) is True
    with pytest.raises(RecordLogError, match="being written by another process"):
        RecordLogWriter(path, resume=True)
    writer.close()

    held = os.open(path, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
    try:
        started = time.monotonic()
        with pytest.raises(RecordLogError, match="held by readers"):
            RecordLogWriter(path, resume=True)
        assert time.monotonic() - started >= recordlog.PROBE_WAIT
    finally:
        os.close(held)


WORKER_SCRIPT = """
import sys, tracklet
index = int(sys.argv[1])
run = tracklet.init(project="crowd", name=f"worker-{index}", config={"index": index},
                    settings={"capture_environment": False})
for step in range(5000):
    run.log({"loss": index + step / 5000, "step": step})
print(f"worker {index} done")
"""


def test_eight_processes_logging_into_one_project_all_land_intact(root):
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(index)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(8)
    ]
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
    runs = tracklet.Api(root).runs("crowd")
    assert sorted(r.name for r in runs) == [f"worker-{i}" for i in range(8)]
    for recorded in runs:
        index = recorded.config["index"]
        history = recorded.history()
        assert recorded.state == "finished" and not recorded.damaged
        assert history["step"] == list(range(5000))
        assert history["loss"] == [index + step / 5000 for step in range(5000)]
        assert [line.text for line in recorded.console] == [f"worker {index} done"]


FORK_SCRIPT = """
import os, sys, tracklet
run = tracklet.init(project="forks", settings={"capture_environment": False})
run.log({"before": 1})
pid = os.fork()
if pid == 0:
    print("child prints still show")
    run.log({"from_child": 1})
    print("child line after its first log")
    sys.exit(0)  # a normal exit: atexit and finalizers run in the child
os.waitpid(pid, 0)
run.log({"after": 2})
print("parent done")
print("child", pid)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_records_as_a_secondary_writer_and_cannot_damage_the_parents_log(root):
    # The parent's writer (its threads, lock, buffered frames) is not the child's: the inherited run
    # object records into the run as a secondary writer on its first use (docs/shared-runs.md).
    done = run_script(FORK_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert "child prints still show" in done.stdout
    child = int(done.stdout.split("child ")[-1])
    (recorded,) = tracklet.Api(root).runs("forks")
    assert recorded.state == "finished" and not recorded.damaged
    (label,) = recorded.parts
    assert label.endswith(f"-{child}") and recorded.parts[label]["state"] == "finished"
    history = recorded.history()
    assert [v for v in history["before"] if v is not None] == [1] and [v for v in history["after"] if v is not None] == [2]
    assert [v for v in history["from_child"] if v is not None] == [1]
    lines = [line.text for line in recorded.console]
    assert "parent done" in lines and f"[{label}] child line after its first log" in lines
    frames = read_log(Path(recorded.dir) / "run.tlog").payloads
    assert sum(1 for _, p in frames if p[:1] == b"\x42") == 1  # one exit record (field 8, length-delimited)
    assert not any(b"from_child" in p for _, p in frames)  # nothing of the child's in the parent's log


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_the_sender_imports_its_encoder_records_its_own_run(root):
    # The sender imports its encoder on its own thread once init() returns; a fork in those
    # moments (a pool's worker started right after init) left the child with the module half
    # imported: the child's own run had no sender and recorded nothing (state crashed, no rows).
    done = run_script("""
        import os, sys, tracklet
        settings = {"capture_environment": False, "system_metrics": False}
        parent = tracklet.init(project="forks", name="parent", settings=settings)
        while "tracklet.core.encoder" not in sys.modules:  # the worker's import has begun
            pass
        pid = os.fork()
        if pid == 0:
            child = tracklet.init(project="forks", name="child", settings=settings)
            child.log({"x": 1.0})
            child.finish()
            os._exit(0)
        os.waitpid(pid, 0)
        parent.finish()
        """)
    assert done.returncode == 0, done.stderr
    assert "could not start" not in done.stderr
    runs = {run.name: run for run in tracklet.Api(root).runs("forks")}
    assert runs["child"].state == "finished"
    assert runs["child"].history(["x"])["x"] == [1.0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forks_from_two_threads_hold_sections_only_while_each_forks(root):
    # A fork waits for the sections other threads are in (core/forksafe.py: the sender's encoder
    # import, a TLS context being built) and no section begins while it is under way. Two threads
    # forking at once: one fork's end must not open the gate the other still holds, and once both
    # are done the gate is open (a fork that left it shut made every later encoder import, and so
    # every later run's sender, wait for ever: the next run recorded nothing and finish() hung).
    done = run_script("""
        import concurrent.futures.thread, logging, os, threading, time  # their fork hooks take locks: first
        a_forking, b_done = threading.Event(), threading.Event()

        def slow_for_a():  # registered before tracklet's wait: runs after it, A's fork under way
            if threading.current_thread().name == "A":
                a_forking.set()
                b_done.wait(30)

        os.register_at_fork(before=slow_for_a)
        from tracklet.core import forksafe
        with forksafe.section():  # the first section registers the fork's wait
            pass

        def fork():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        entered = threading.Event()

        def enter():
            with forksafe.section():
                entered.set()

        a = threading.Thread(target=fork, name="A")
        a.start()
        a_forking.wait(30)
        b = threading.Thread(target=fork, name="B")
        b.start()
        b.join(30)
        c = threading.Thread(target=enter)
        c.start()
        print("entered while A forks" if entered.wait(0.3) else "waited for A")
        b_done.set()
        a.join(30)
        print("entered after" if entered.wait(10) else "shut for ever")
        c.join(10)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["waited for A", "entered after"], done.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_nested_in_a_fork_or_in_the_gates_own_lock_neither_hangs_nor_opens_the_gate_early(root):
    # A signal handler runs on the main thread between any two bytecodes, also inside the fork
    # gate's own locked blocks (a section's entry or exit, a fork hook): one that forked there
    # hung for ever on the gate's lock (it wasn't re-entrant). And a fork nested in another fork's
    # hooks closed the gate's count for the outer fork as it ended: sections began while the outer
    # fork was still under way. Stood in for by forking inside the gate's lock, and by forking from
    # a fork hook that runs after tracklet's wait (between the outer fork's hooks).
    done = run_script("""
        import concurrent.futures.thread, logging, os, signal, threading  # their fork hooks: first
        from tracklet.core import forksafe

        def fork_and_reap():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        signal.alarm(20)  # a hang ends the script (SIGALRM's default action)
        with forksafe.section():  # registers the fork's wait
            pass
        with forksafe._fork_gate:  # a handler forking inside the gate's own block
            fork_and_reap()
        print("no hang")

        seen = []

        def nested():  # registered before tracklet's wait: runs after it, inside the outer fork
            if threading.current_thread().name == "outer" and not seen:
                seen.append(True)
                fork_and_reap()
                entered = threading.Event()

                def enter():
                    with forksafe.section():
                        entered.set()

                threading.Thread(target=enter, daemon=True).start()
                seen.append("entered" if entered.wait(0.3) else "kept out")

        os.register_at_fork(before=nested)
        with forksafe.section():  # the wait registered again, after `nested`
            pass
        forksafe._armed_with = None
        forksafe.arm_fork_wait()
        outer = threading.Thread(target=fork_and_reap, name="outer")
        outer.start()
        outer.join(20)
        print(seen[1])
        print("gate open" if not forksafe._forking else f"gate still shut: {forksafe._forking}")
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["no hang", "kept out", "gate open"], done.stdout


def test_a_signal_handler_that_logs_while_the_queue_is_sealed_does_not_hang(root):
    # A signal handler runs between any two bytecodes of the main thread, also while log() seals
    # the full open chunk under the sender's lock: a handler that logged (or printed, with the
    # console captured) past a chunk's worth sealed again, waited for that lock for ever, and the
    # training process hung. A trace function stands in for the handler: it runs Python code
    # between two lines of the sealing section, every time.
    done = run_script("""
        import sys, threading, tracklet
        from tracklet.core import sender
        run = tracklet.init(project="sealing", settings={"capture_environment": False, "system_metrics": False,
                                                         "batch_size": 8})
        fired = []

        def tracer(frame, event, arg):
            if frame.f_code.co_filename != sender.__file__:
                return None
            owner = frame.f_locals.get("self")
            if event == "line" and not fired and frame.f_code.co_name == "_seal" \\
                    and threading.current_thread() is threading.main_thread() and owner._seal_lock.locked():
                fired.append(True)
                sys.settrace(None)
                for i in range(100):  # the handler's rows: more than a chunk holds
                    run.log({"handler": float(i)})
            return tracer

        for step in range(50):
            if step == 20:
                sys.settrace(tracer)
            run.log({"loss": float(step)})
        sys.settrace(None)
        run.finish()
        assert fired
        """, timeout=60)  # a bound for the hang this test is about, not a timing check
    assert done.returncode == 0, done.stderr
    (recorded,) = tracklet.Api(root).runs("sealing")
    history = recorded.history(["handler", "loss"])
    assert [value for value in history["handler"] if value is not None] == [float(i) for i in range(100)]
    assert [value for value in history["loss"] if value is not None] == [float(step) for step in range(50)]


class _SlowSink:
    def __init__(self, release: threading.Event):
        self.release = release
        self.payloads: list[bytes] = []

    def write(self, payload: bytes) -> None:
        self.release.wait()
        self.payloads.append(payload)

    def flush(self, fsync: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def test_force_flush_and_shutdown_honour_their_timeouts():
    release = threading.Event()
    sender = BatchSender([_SlowSink(release)], flush_interval=0.05)
    sender.put((0, 0.0, ("a",), (1,)))
    assert sender.force_flush(timeout=0.05) is False
    release.set()
    assert sender.force_flush(timeout=10) is True
    assert sender.shutdown(timeout=10) is True


def test_shutdown_timeout_reports_what_was_not_recorded(capfd):
    release = threading.Event()
    sender = BatchSender([_SlowSink(release)], flush_interval=0.05)
    sender.put((0, 0.0, ("a",), (1,)))
    sender.force_flush(timeout=0.2)
    for step in range(1, 4):
        sender.put((step, 0.0, ("a",), (1,)))
    assert sender.shutdown(timeout=0.1, budget="finish()'s 30 s (settings.finish_timeout)") is False
    # row 0 is in the sink's write: not queued any more, not written yet
    err = capfd.readouterr().err
    assert "3 queued history rows were not recorded, and up to 1 more" in err
    # Named by the limit it ran out of (finish() passes what is left of its budget: "0.0s" said nothing)
    assert "did not finish within finish()'s 30 s (settings.finish_timeout)" in err
    release.set()


def test_a_full_queue_makes_log_wait_and_drops_nothing(start):
    run = start(settings={"max_queue": 50, "batch_size": 10})
    writer = run._sender.sinks[0]
    original = writer.write
    gate = threading.Event()

    def slow_write(payload):
        gate.wait()
        return original(payload)

    writer.write = slow_write
    threading.Timer(0.3, gate.set).start()
    with pytest.warns(tracklet.TrackletWarning, match="log\\(\\) is waiting for the background sender"):
        for step in range(500):
            run.log({"x": step})
    run.finish()
    assert read(run).history()["x"] == list(range(500))


def test_a_failing_sink_is_reported_and_training_goes_on(start):
    run = start()

    class Broken:
        def write(self, payload):
            raise OSError(28, "No space left on device")

        def flush(self, fsync=False):
            pass

        def close(self):
            pass

    run._sender.sinks.append(Broken())
    with pytest.warns(tracklet.TrackletWarning, match="No space left on device"):
        for step in range(100):
            run.log({"x": step})
        run.flush()
    run.finish()
    assert read(run).history()["x"] == list(range(100))  # the record log sink still got everything


def test_finish_fsyncs_and_the_log_starts_with_the_magic(start):
    run = start()
    run.log({"a": 1})
    run.finish()
    assert (Path(run.dir) / "run.tlog").read_bytes()[: len(MAGIC)] == MAGIC


def test_a_queue_full_while_the_worker_starts_is_no_warning(root):
    """Right after init() the worker is still importing the encoder (its first drain): a loop that
    fills the queue then waits once, silently; the warning is for a sender that falls behind."""
    from conftest import run_script

    done = run_script(
        """
        import warnings, tracklet
        warnings.simplefilter("error", tracklet.TrackletWarning)
        run = tracklet.init(project="q", settings={"console": "off", "capture_environment": False,
                                                    "system_metrics": False, "max_queue": 2_000, "batch_size": 100})
        # 2,000 rows fill the queue while the worker loads the encoder; the 500 after that never can.
        for step in range(2_500):
            run.log({"x": step})
        run.finish()
        """
    )
    assert done.returncode == 0, done.stderr
    (recorded,) = tracklet.Api(root).runs("q")
    assert recorded.history()["x"] == list(range(2_500))


def test_a_seed_set_after_the_queue_was_handed_on_in_chunks_is_recorded(start):
    """The run's seeds are queued by a hook bound at ``init()``; the sender hands its queue to the
    worker a chunk at a time (``CHUNK_ENTRIES``), so a binder of the first chunk's ``append`` would
    queue into a chunk already written, and the seed would be lost."""
    import random

    from tracklet.core.sender import CHUNK_ENTRIES

    run = start()
    rows = 3 * CHUNK_ENTRIES // 4  # rows of one value take 4 queue entries: three chunks handed on
    for step in range(rows):
        run.log({"x": float(step)})
    run.flush()
    random.seed(1234)
    run.log({"x": float(rows)})
    run.finish()
    recorded = read(run)
    assert recorded.history()["x"] == [float(step) for step in range(rows + 1)]
    assert {(seed["api"], seed["value"]) for seed in recorded.metadata["seeds"]} >= {("random.seed", "1234")}


def test_a_row_whose_log_is_interrupted_by_the_worker_taking_the_queue_is_recorded(start, monkeypatch):
    """``log()`` reads the clock, and the GIL may pass to the worker when that call returns; the
    worker then seals the open chunk and writes it. The row must go to the chunk open after that:
    here the clock itself waits for the worker to take and write everything queued (a flush), so a
    ``log()`` that had loaded the open chunk before reading the clock would append to a written
    chunk and lose the row. Both paths: a row of plain values and one that is flattened."""
    from tracklet.core import run as run_module

    run = start()
    clock = run_module._time
    drains: list[bool] = []

    def clock_then_drain() -> float:
        now = clock()
        drains.append(run._sender.force_flush(timeout=30))
        return now

    run.log({"x": 0.0, "d": {"a": 0}})
    monkeypatch.setattr(run_module, "_time", clock_then_drain)
    run.log({"x": 1.0})
    run.log({"d": {"a": 2}})
    monkeypatch.setattr(run_module, "_time", clock)
    run.log({"x": 3.0})
    run.finish()
    assert drains == [True, True]
    history = read(run).history()
    assert history["x"] == [0.0, 1.0, None, 3.0] and history["d/a"] == [0, None, 2, None]


def test_the_record_log_is_synced_by_close_and_asked_syncs_only_with_no_thread_of_its_own(tmp_path, monkeypatch):
    """The durability rule (docs/architecture.md, the record log): flushes hand frames to the OS,
    which keeps them through a kill of the process; the disk is asked only by ``flush(fsync=True)``
    (``run.flush(fsync=True)``) and by ``close()`` (``finish()``). No thread of the writer's own
    syncs behind it: one did in session 14 and cost the training thread GIL hand-offs (+31
    involuntary context switches and +10 log() calls over 25 us per 100k calls, measured)."""
    syncs: list[tuple[str, int]] = []  # (which call, the file's size then)
    real_fsync = os.fsync

    def recording(name):
        def sync(fd: int) -> None:
            syncs.append((name, os.fstat(fd).st_size))
            real_fsync(fd)
        return sync

    monkeypatch.setattr(os, "fsync", recording("fsync"))
    if hasattr(os, "fdatasync"):
        monkeypatch.setattr(os, "fdatasync", recording("fdatasync"))
    threads = set(threading.enumerate())
    path = tmp_path / "run.tlog"
    writer = RecordLogWriter(path)
    payload = b"x" * 1000
    for index in range(2000):  # ~2 MB in flushes of ~10 KB
        writer.write(payload)
        if index % 10 == 9:
            writer.flush()
    assert syncs == [] and set(threading.enumerate()) == threads
    assert len(read_log(path).payloads) == 2000  # handed to the OS: another reader sees every frame
    writer.write(payload)
    writer.flush(fsync=True)
    asked = path.stat().st_size
    writer.write(payload)
    writer.close()
    assert syncs == [("fsync", asked), ("fsync", path.stat().st_size)]
    assert set(threading.enumerate()) == threads
    assert len(read_log(path).payloads) == 2002
