"""A Ctrl-C (or a signal handler's ``sys.exit``) landing in ``finish()``: the run is still ended with
its exit and every row, and the exception then goes on to the caller. Python raises a signal's
exception at whatever line the main thread is on; here a trace function raises it on a chosen line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tracklet
from tracklet.core import lifecycle
from tracklet.core.run import Run

from conftest import QUIET

def _finish_code() -> set[Any]:
    """The code finish() runs on the caller's thread: Run._finish and what it calls of Run's, and
    the calls that queue the exit record and close the queue (a signal's exception lands on a
    function's first line too)."""
    from tracklet.core.run import _NoQueue
    from tracklet.core.sender import BatchSender

    return {item.__code__ for name, item in vars(Run).items()
            if callable(item) and name.startswith(("_finish", "_queue_exit"))} | {
        BatchSender.put_last.__code__, _NoQueue.__init__.__code__}


def _exit_records(run_dir: Path) -> int:
    """How many exit records the run's log holds."""
    from tracklet.core.recordlog import read_log
    from tracklet.proto import records_pb2

    count = 0
    for _, payload in read_log(run_dir / "run.tlog").payloads:
        record = records_pb2.Record()
        record.ParseFromString(payload)
        count += record.WhichOneof("kind") == "exit"
    return count


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_landing_on_any_line_of_finish_still_ends_the_run_with_its_rows(tmp_path: Path,
                                                                                      raised: type) -> None:
    """A SIGTERM handler's ``sys.exit`` (a sweep trial's stop, a cluster's), or a KeyboardInterrupt
    from a SIGINT handler of the script's own (Ctrl-C is held between waits only under Python's),
    landing on each line of finish() in turn: the run is ended, exit and rows, every time. It
    escaped from the lines between waits: no exit record, the run read back as crashed."""
    codes = _finish_code()
    target = 0
    while True:
        run = tracklet.init(project="p", dir=tmp_path, settings=tracklet.Settings(**QUIET))
        for step in range(20):
            run.log({"loss": float(step)})
        lines = 0

        def local(frame: Any, event: str, arg: Any, target: int = target) -> Any:
            nonlocal lines
            if event == "line":
                lines += 1
                if lines == target + 1:
                    raise raised()
            return local

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            return local if frame.f_code in codes else None

        sys.settrace(tracer)
        try:
            run.finish()
        except raised:
            pass
        finally:
            sys.settrace(None)
        if run in lifecycle.active_runs():  # landed before finish() began ending it: exit ends it
            run.finish()
        recorded = tracklet.Api(tmp_path).run(f"p/{run.id}")
        where = f"interrupted at finish()'s line event {target + 1}"
        assert recorded.state == "finished" and recorded.exit_code == 0, where
        assert list(recorded.history(["loss"])["loss"]) == [float(step) for step in range(20)], where
        assert _exit_records(Path(run.dir)) == 1, where  # an exit queued twice was written twice
        if lines <= target:  # finish() ran to its end without reaching the line: every line was tried
            break
        target += 1
    assert target > 20  # the lines tried


_INTERRUPTED_SHUTDOWN = textwrap.dedent(
    """
    import linecache, os, sys, time
    import tracklet
    from tracklet.core.sender import BatchSender

    run = tracklet.init(project="p", settings=tracklet.Settings(**eval(sys.argv[1])))
    for step in range(10_000):
        run.log({"loss": float(step)})
    code, landed = BatchSender.shutdown.__code__, []
    writev = os.writev

    def slow_disk(fd, buffers):  # the log's writes take a while (a busy or network disk)
        time.sleep(0.3)
        return writev(fd, buffers)

    os.writev = slow_disk

    def local(frame, event, arg):
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if event == "line" and not landed and ".join(" in line:
            landed.append(line)
            raise KeyboardInterrupt  # Ctrl-C, landing as the wait for the worker begins
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code is code else None)
    try:
        run.finish()
    except KeyboardInterrupt:
        print("KeyboardInterrupt", len(landed), flush=True)
    os._exit(0)  # the process ends as finish() returns (a script's last line)
    """
)


def test_a_first_interrupt_in_the_wait_for_the_rows_goes_on_waiting(tmp_path: Path) -> None:
    """The sender's shutdown (the wait that writes the last rows and the exit: writes made slow
    here, as on a busy disk) is where finish() spends its time, so where a single Ctrl-C most
    likely lands:
    the wait goes on, the run is ended with every row, then the KeyboardInterrupt is raised. (It
    ended the wait at once: a process ending then lost the exit, and the rows not yet written.)"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TRACKLET_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_SHUTDOWN, repr(QUIET)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "KeyboardInterrupt 1", done.stderr
    recorded = tracklet.Api(tmp_path).runs("p")[0]
    assert recorded.state == "finished" and recorded.exit_code == 0, done.stderr
    assert list(recorded.history(["loss"])["loss"]) == [float(step) for step in range(10_000)]
