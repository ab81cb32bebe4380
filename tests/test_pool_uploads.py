"""An online run's uploader sends what its child processes' parts left unsent (client/uploader.py,
docs/shared-runs.md "Runs passed to child processes"): a pool worker ended by its pool's SIGTERM
waits only briefly for its own upload, and the parent's uploader delivers the rest, with no
`tracklet sync`. Real processes (forked and spawned pools), a real server."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from conftest import run_script

import tracklet
from tracklet.client.sync import SyncClient
from tracklet.core.childrun import child_label
from tracklet.core.layout import RunPaths

POOL = r'''
import functools, json, multiprocessing as mp, os, signal, sys, time
import tracklet
from tracklet.core import childrun

childrun.TEARDOWN_UPLOAD_WAIT = 0.2  # what a torn-down worker waits for its own upload (2 s by default)

def work(i, run):
    run.log({"w/x": i, "w/text": "x" * 2000})
    return os.getpid()

def delivered(url, run_id, labels, root):
    """Whether the server holds each worker's part whole (its copy as long as the local log)."""
    import httpx
    for label in labels:
        size = os.path.getsize(os.path.join(root, "projects/p/runs", run_id, "parts", label + ".tlog"))
        answer = httpx.get(f"{url}/api/v1/runs/p/{run_id}/log/offset", params={"part": label}).json()
        if answer["offset"] != size:
            return False
    return True

if __name__ == "__main__":
    url, server_pid, run_id, interval, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5:]
    run = tracklet.init(project="p", id=run_id, settings={
        "console": "off", "system_metrics": False, "capture_environment": False, "mode": "online",
        "base_url": url, "upload_interval": interval, "finish_timeout": 60, "upload_timeout": 60})
    told = {"pid": os.getpid()}
    for method in methods:
        os.kill(server_pid, signal.SIGSTOP)  # unreachable while the pool works and is torn down
        try:
            with mp.get_context(method).Pool(2) as pool:  # the with block ends the workers by SIGTERM
                told[method] = sorted(set(pool.map(functools.partial(work, run=run), range(6), chunksize=1)))
        finally:
            os.kill(server_pid, signal.SIGCONT)
    if interval < 1:  # the parent's periodic passes deliver the parts of workers that are gone
        host = childrun.child_label().rsplit("-", 1)[0]
        labels = [f"{host}-{pid}" for method in methods for pid in told[method]]
        deadline = time.monotonic() + 60  # a bound for a stuck test, not a timing check
        while not delivered(url, run_id, labels, os.environ["TRACKLET_DIR"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        told["before_finish"] = delivered(url, run_id, labels, os.environ["TRACKLET_DIR"])
    run.finish()
    if interval < 1:  # a worker torn down after the run that passed it was finished: nobody delivers its part
        orphan = tracklet.init(project="p", id=run_id + "-orphan", settings={
            "console": "off", "system_metrics": False, "capture_environment": False, "mode": "online",
            "base_url": url, "upload_interval": interval, "upload_timeout": 0})
        os.kill(server_pid, signal.SIGSTOP)
        try:
            pool = mp.get_context("fork").Pool(2)
            told["orphan"] = sorted(set(pool.map(functools.partial(work, run=orphan), range(6), chunksize=1)))
            print("parent finishes", file=sys.stderr, flush=True)
            orphan.finish()
            pool.terminate()
        finally:
            os.kill(server_pid, signal.SIGCONT)
    print(json.dumps(told))
'''


def _labels(pids: list[int]) -> list[str]:
    host = child_label().rsplit("-", 1)[0]
    return [f"{host}-{pid}" for pid in pids]


def _run_pool(tmp_path: Path, server, run_id: str, interval: float, *methods: str):
    script = tmp_path / f"{run_id}.py"
    script.write_text(POOL)
    argv = [str(script), server.url, str(server.proc.pid), run_id, str(interval), *methods]
    try:
        done = run_script(f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')",
                          timeout=120)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # the script's own may not have run (it was killed)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _assert_server_holds(root: Path, server_root: Path, run_id: str, labels: list[str]) -> None:
    run_dir = Path("projects/p/runs") / run_id
    for name in ("run.tlog", *(f"parts/{label}.tlog" for label in labels)):
        local = (root / run_dir / name).read_bytes()
        assert (server_root / run_dir / name).read_bytes() == local, name


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("pool-uploads-server"))


def test_the_parents_finish_delivers_what_torn_down_pool_workers_left_unsent(root, tmp_path, server):
    # Each worker logs into the online run, and its pool ends it with SIGTERM while the server
    # answers nothing: the worker waits 0.2 s for its upload and exits, its part unsent. The
    # parent's uploader (one pass, at finish(): a 1-hour upload interval) sends every part.
    told, stderr = _run_pool(tmp_path, server, "final", 3600, "fork", "spawn")
    labels = _labels(told["fork"] + told["spawn"])  # the workers that took a task (and so joined the run)
    _assert_server_holds(root, server.root, "final", labels)
    # each worker said who uploads the rest of its part: the parent, alive and online
    assert stderr.count(f"the run's online writer in process {told['pid']}") == len(labels), stderr
    recorded = tracklet.Api(server.root).run("p/final")
    assert sorted(recorded.parts) == sorted(labels)
    assert all(part["state"] == "finished" for part in recorded.parts.values())


def test_the_parents_periodic_passes_deliver_the_parts_of_workers_that_are_gone(root, tmp_path, server):
    told, stderr = _run_pool(tmp_path, server, "periodic", 0.2, "fork")
    assert told["before_finish"] is True, told
    _assert_server_holds(root, server.root, "periodic", _labels(told["fork"]))
    # A worker torn down once the run that passed it was finished can't count on that process: its
    # message names `tracklet sync` (as the parent's own, whose upload was cut at 0 s, does).
    after = stderr.split("parent finishes", 1)[1]
    assert after.count("`tracklet sync p/periodic-orphan --url") == len(told["orphan"]) + 1, after
    assert "in process" not in after, after


def _part(root: Path, run_id: str, label: str, rows: int) -> RunPaths:
    """A finished part of run ``p/run_id`` written by ``label`` (a secondary writer, offline)."""
    part = tracklet.init(project="p", id=run_id, dir=str(root), settings={
        "mode": "offline", "primary": False, "label": label, "console": "off", "system_metrics": False,
        "capture_environment": False}, reinit="create_new")
    for step in range(rows):
        part.log({"x": step, "text": f"{step:06d}" * 50})
    part.finish()
    return RunPaths(root, "p", run_id, label)


def test_two_uploaders_of_one_part_store_each_byte_once(root, server):
    # The parent's uploader may send a part while the part's own (a worker's, in its last
    # moments) still does: both start at the server's offset and send the same bytes in chunks
    # at frame boundaries. The server appends under the copy's lock and takes a resend whose
    # overlap equals its bytes, so the copy is the local log, byte for byte.
    part = _part(root, "twice", "w-1", 400)
    size = part.log_file.stat().st_size
    results = []
    barrier = threading.Barrier(2)

    def upload() -> None:
        with SyncClient(server.url, chunk_bytes=4096) as client:
            barrier.wait()
            results.append(client.sync_run(part))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [result.offset for result in results] == [size, size]
    assert sum(result.sent_bytes for result in results) == size  # no byte stored twice
    assert (server.root / "projects/p/runs/twice/parts/w-1.tlog").read_bytes() == part.log_file.read_bytes()


def test_a_part_that_cannot_be_uploaded_is_reported_once_and_kept(root, server):
    # A damaged part (not a record log) beside an intact one: the parent's finish() sends its own
    # log and the intact part, says once what it could not send, and leaves the local part alone.
    run = tracklet.init(project="p", id="damaged", dir=str(root), settings={
        "mode": "online", "base_url": server.url, "upload_interval": 0.1, "console": "off",
        "system_metrics": False, "capture_environment": False, "finish_timeout": 60, "upload_timeout": 60})
    _part(root, "damaged", "good-1", 50)
    bad = RunPaths(root, "p", "damaged", "bad-1").log_file
    bad.write_bytes(b"not a record log\n" * 10)
    run.log({"x": 1})
    with pytest.warns(tracklet.TrackletWarning) as caught:
        run.finish()
    about_bad = [str(w.message) for w in caught if "bad-1" in str(w.message)]
    assert len(about_bad) == 1 and "tracklet sync p/damaged" in about_bad[0], [str(w.message) for w in caught]
    assert bad.read_bytes() == b"not a record log\n" * 10
    _assert_server_holds(root, server.root, "damaged", ["good-1"])


def test_a_part_that_is_no_regular_file_does_not_stall_the_upload(root, server, capfd):
    # The part names come from the run's directory on disk: a FIFO there (or a device, a socket)
    # named like a part was opened by the uploader's liveness probe, which waited for a writer for
    # ever: the uploader's later passes never came and finish() waited out upload_timeout, then
    # named `tracklet sync`. Such an entry is no part: it is passed over.
    run = tracklet.init(project="p", id="fifo", dir=str(root), settings={
        "mode": "online", "base_url": server.url, "upload_interval": 3600, "console": "off",
        "system_metrics": False, "capture_environment": False, "finish_timeout": 60, "upload_timeout": 5})
    fifo = RunPaths(root, "p", "fifo", "fifo-1").log_file
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    try:
        run.log({"x": 1})
        run.finish()
    finally:
        try:  # a probe stuck on the FIFO (the defect) is let go: a writer opens it
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waits: nothing is stuck
            pass
    assert "did not finish" not in capfd.readouterr().err
    _assert_server_holds(root, server.root, "fifo", [])
