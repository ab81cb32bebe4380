"""The tracking server as a real process (`python -m tracklet server`) and `tracklet sync`:
byte-identical copies, idempotent resends, 409 on gaps, concurrent clients, a server killed with
SIGKILL mid-sync, malformed and oversized bodies, unsafe names, loopback only; SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import QUIET, REPO, run_script
import serverproc
from serverproc import Server, _free_port

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import MAGIC, frame, read_log
from tracklet.proto import records_pb2 as pb
from tracklet.client.sync import SyncClient, SyncError


def _record(root: Path, project: str, run_id: str, steps: int = 500, flush_every: int | None = None,
            exit_code: int | None = 0, **init) -> tracklet.Run:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET, **init)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps, "nan": float("nan") if step == 3 else 0.0})
        if flush_every and step % flush_every == flush_every - 1:
            run.flush()
    if exit_code is not None:
        run.finish(exit_code=exit_code)
    return run


def _sync(url: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    return serverproc.cli("sync", "--url", url, "-q", *args, env={"TRACKLET_DIR": str(root)})


def _copy(server: Server, project: str, run_id: str) -> bytes:
    path = RunPaths(server.root, project, run_id).log_file
    return path.read_bytes() if path.exists() else b""


def _local(root: Path, project: str, run_id: str) -> bytes:
    return RunPaths(root, project, run_id).log_file.read_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
def server_store(request):
    """The server's store: SQLite in its data root, or a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_sync_copies_logs_byte_identical_and_serves_them(root, servers, server_store):
    server = servers(store=server_store)
    _record(root, "vision", "fin", steps=700, config={"lr": 0.01, "model": {"depth": 4}})
    _record(root, "vision", "bad", steps=50, exit_code=1, config={"lr": 0.1})
    _record(root, "text", "t1", steps=20)
    live = _record(root, "text", "live", steps=300, flush_every=100, exit_code=None)
    live.flush()

    result = _sync(server.url, root, "--all")
    assert result.returncode == 0, result.stderr
    assert "Synced 4 of 4" in result.stdout
    for project, run_id in [("vision", "fin"), ("vision", "bad"), ("text", "t1"), ("text", "live")]:
        assert _copy(server, project, run_id) == _local(root, project, run_id)

    with httpx.Client(base_url=server.url) as http:
        projects = http.get("/api/v1/projects").json()["projects"]
        assert {(p["name"], p["runs"]) for p in projects} == {("vision", 2), ("text", 2)}
        rows = http.get("/api/v1/projects/vision/runs", params={"filter": "config.lr < 0.05"}).json()["runs"]
        assert [(r["run_id"], r["state"], r["path"]) for r in rows] == [("fin", "finished", "vision/fin")]
        rows = http.get("/api/v1/projects/vision/runs", params={"order_by": "-config.lr"}).json()["runs"]
        assert [(r["run_id"], r["state"], r["exit_code"]) for r in rows] == [("bad", "failed", 1), ("fin", "finished", 0)]
        detail = http.get("/api/v1/runs/vision/fin").json()["run"]
        assert detail["config"] == {"lr": 0.01, "model": {"depth": 4}}
        assert detail["summary"]["loss"] == pytest.approx(1 / 700) and detail["last_step"] == 699
        assert set(detail["keys"]) >= {"loss", "acc", "nan"}
        history = http.get("/api/v1/runs/vision/fin/history", params={"keys": "loss,nan", "buckets": 1000}).json()
        by_key = {s["key"]: s for s in history["series"]}
        assert by_key["loss"]["exact"] and by_key["loss"]["steps"] == list(range(700))
        assert by_key["loss"]["values"] == pytest.approx([1.0 / (s + 1) for s in range(700)])
        assert by_key["nan"]["values"][3] == "NaN" and by_key["nan"]["values"][4] == 0.0
        bucketed = http.get("/api/v1/runs/vision/fin/history", params={"keys": "loss", "buckets": 7}).json()
        (series,) = bucketed["series"]
        assert not series["exact"] and sum(series["count"]) == 700 and max(series["max"]) == 1.0

    # A second sync sends nothing.
    again = _sync(server.url, root, "--all")
    assert again.returncode == 0 and "0 new bytes" in again.stdout
    with SyncClient(server.url) as client:
        assert client.sync_run(RunPaths(root, "vision", "fin")).requests == 0

    # The live run goes on; the next sync sends only its new frames.
    before = len(_copy(server, "text", "live"))
    for step in range(300, 400):
        live.log({"loss": 0.5}, step=step)
    live.finish()
    with SyncClient(server.url) as client:
        result = client.sync_run(RunPaths(root, "text", "live"))
    assert result.sent_bytes == len(_local(root, "text", "live")) - before
    assert _copy(server, "text", "live") == _local(root, "text", "live")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/v1/runs/text/live").json()["run"]["state"] == "finished"
        (loss,) = http.get("/api/v1/runs/text/live/history", params={"keys": "loss", "buckets": 0}).json()["series"]
        assert loss["steps"] == list(range(400))


def _frames(path: Path) -> list[int]:
    """Offsets of every frame boundary in a log (header end, each frame's end)."""
    result = read_log(path)
    return [offset for offset, _ in result.payloads] + [result.end_offset]


def test_resends_are_idempotent_and_gaps_answer_409(root, servers):
    server = servers()
    _record(root, "p", "r", steps=3000, flush_every=500)
    log_file = RunPaths(root, "p", "r").log_file
    data = log_file.read_bytes()
    bounds = _frames(log_file)
    assert len(bounds) > 5
    a, b, c = bounds[1], bounds[3], bounds[5]
    url = "/api/v1/runs/p/r/log"
    with httpx.Client(base_url=server.url) as http:
        assert http.get(url + "/offset").json() == {"offset": 0}
        first = http.put(url, params={"offset": 0}, content=data[:b])
        assert first.status_code == 200 and first.json() == {"offset": b, "appended": b}
        # The same request again, and a resend from an earlier frame: nothing new.
        assert http.put(url, params={"offset": 0}, content=data[:b]).json() == {"offset": b, "appended": 0}
        assert http.put(url, params={"offset": a}, content=data[a:b]).json() == {"offset": b, "appended": 0}
        # A resend that reaches further appends only the tail.
        grown = http.put(url, params={"offset": a}, content=gzip.compress(data[a:c]), headers={"Content-Encoding": "gzip"})
        assert grown.json() == {"offset": c, "appended": c - b}
        # A gap: 409 with where to resend from, nothing stored.
        gap = http.put(url, params={"offset": bounds[6]}, content=data[bounds[6]:bounds[7]])
        assert gap.status_code == 409 and gap.json()["offset"] == c
        # An overlap that differs from what is stored: 409.
        other = frame(b"not the same record")
        mismatch = http.put(url, params={"offset": bounds[4]}, content=other + data[c:bounds[6]])
        assert mismatch.status_code == 409 and "differs" in mismatch.json()["detail"]
        assert http.get(url + "/offset").json() == {"offset": c}
    assert _copy(server, "p", "r") == data[:c]

    # A client whose idea of the server's offset is ahead of it recovers from the 409.
    class Confused(SyncClient):
        asked = 0

        def server_offset(self, paths):
            self.asked += 1
            return bounds[7] if self.asked == 1 else super().server_offset(paths)

    with Confused(server.url, chunk_bytes=4096) as client:
        result = client.sync_run(RunPaths(root, "p", "r"))
    assert result.offset == len(data) and _copy(server, "p", "r") == data


def test_four_clients_sync_different_runs_at_once(root, servers):
    server = servers()
    ids = [f"run{i}" for i in range(4)]
    for run_id in ids:
        _record(root, "team", run_id, steps=4000, flush_every=200)
    env = {"TRACKLET_DIR": str(root), "TRACKLET_BASE_URL": server.url}
    with ThreadPoolExecutor(len(ids)) as pool:  # four `tracklet sync` processes at once
        done = list(pool.map(lambda run_id: serverproc.cli("sync", "-q", "--chunk-mb", "0.01", f"team/{run_id}", env=env),
                             ids))
    for result in done:
        assert result.returncode == 0, result.stderr
    for run_id in ids:
        assert _copy(server, "team", run_id) == _local(root, "team", run_id)
    rows = httpx.get(f"{server.url}/api/v1/projects/team/runs").json()["runs"]
    assert sorted(r["run_id"] for r in rows) == ids and {r["last_step"] for r in rows} == {3999}


def _assert_every_step_once(server: Server, project: str, run_id: str, steps: int) -> None:
    response = httpx.get(f"{server.url}/api/v1/runs/{project}/{run_id}/history", params={"keys": "loss", "buckets": 0})
    (loss,) = response.json()["series"]
    assert loss["steps"] == list(range(steps))


def test_server_killed_mid_sync_then_a_second_sync_completes_exactly(root, servers, tmp_path):
    steps = 60_000
    _record(root, "long", "r", steps=steps, flush_every=500)
    local = _local(root, "long", "r")
    server = servers()
    killed = []

    def kill_partway(offset: int, total: int) -> None:
        if not killed and offset > total // 3:
            server.kill()
            killed.append(offset)

    with SyncClient(server.url, chunk_bytes=32 << 10, backoff_base=0.05, give_up_after=1.0) as client, \
            pytest.raises(SyncError, match="gave up"):
        client.sync_run(RunPaths(root, "long", "r"), progress=kill_partway)
    copy = RunPaths(server.root, "long", "r").log_file
    assert killed and 0 < copy.stat().st_size < len(local)
    # A server killed inside a write leaves a torn frame: the restarted server cuts it off.
    with open(copy, "ab") as handle:
        handle.write(local[copy.stat().st_size:][:100])
    server.start()
    assert httpx.get(f"{server.url}/api/v1/runs/long/r/log/offset").json()["offset"] == killed[0]

    with SyncClient(server.url, chunk_bytes=32 << 10) as client:
        client.sync_run(RunPaths(root, "long", "r"))
    assert _copy(server, "long", "r") == local
    _assert_every_step_once(server, "long", "r", steps)


def test_sync_outlasts_an_outage_longer_than_the_backoff_cap(root, servers):
    steps = 30_000
    _record(root, "long", "r", steps=steps, flush_every=500)
    server = servers()
    restarted: list[int] = []
    backoff_cap, outage = 0.2, 3.0

    def kill_and_restart(offset: int, total: int) -> None:
        if not restarted and offset > total // 2:
            server.kill()
            restarted.append(offset)
            # Back after 15 backoff caps (plus its start-up time) while the client keeps retrying.
            threading.Timer(outage, server.spawn).start()

    started = time.monotonic()
    with SyncClient(server.url, chunk_bytes=32 << 10, backoff_base=0.05, backoff_cap=backoff_cap,
                    give_up_after=60) as client:
        result = client.sync_run(RunPaths(root, "long", "r"), progress=kill_and_restart)
    assert time.monotonic() - started > outage > 10 * backoff_cap
    assert restarted and result.offset == len(_local(root, "long", "r"))
    assert _copy(server, "long", "r") == _local(root, "long", "r")
    _assert_every_step_once(server, "long", "r", steps)


def test_malformed_bodies_are_refused_and_nothing_is_stored(servers):
    server = servers()
    record = frame(b"\x0a\x00")
    cases = [
        (0, b"definitely not a record log", "header"),
        (0, MAGIC + record[:-1], "incomplete frame"),
        (0, MAGIC + record + record[:5], "incomplete frame"),
        (0, MAGIC + record[:4] + b"\x00\x00\x00\x00" + record[8:], "checksum"),
        (3, b"abc", "inside the record log header"),
    ]
    with httpx.Client(base_url=server.url) as http:
        for offset, body, message in cases:
            response = http.put("/api/v1/runs/p/r/log", params={"offset": offset}, content=body)
            assert response.status_code == 400, (body, response.text)
            assert message in response.json()["detail"]
        bad_gzip = http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=b"\x1f\x8b nope",
                            headers={"Content-Encoding": "gzip"})
        assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.json()["detail"]
        assert http.put("/api/v1/runs/p/r/log", params={"offset": -1}, content=MAGIC).status_code == 422
        assert http.get("/api/v1/runs/p/r/log/offset").json() == {"offset": 0}
    assert not (server.root / "projects").exists()


def _batch(*, define: tuple[int, ...] = (), key: int | None = None, steps: int = 1, rows: tuple[int, ...] = (),
           values: int | None = None, times: int | None = None) -> bytes:
    """One framed HistoryBatch built with the real proto classes: ``define`` key ids (named
    ``k<id>``), a float column for ``key`` with ``values`` values (default: one per row)."""
    record = pb.Record()
    batch = record.history
    for key_id in define:
        batch.new_keys.add(id=key_id, name=f"k{key_id}")
    batch.steps.extend(range(steps))
    batch.times.extend([1.0] * (steps if times is None else times))
    if key is not None:
        column = batch.columns.add(key=key, rows=rows)
        column.floats.extend([0.5] * (values if values is not None else len(rows) or steps))
    return frame(record.SerializeToString())


def test_a_huge_key_id_gets_400_without_the_server_growing(servers, server_store):
    """Issue #12 item 5: one small frame with a valid CRC and KeyDefinition.id = 50,000,000 made
    ingest pad a 50M-entry list (29 s of CPU, 1.9 GB of RSS)."""
    import psutil

    server = servers(store=server_store)
    upload = MAGIC + _batch(define=(50_000_000,), key=50_000_000)
    assert len(upload) < 100
    process = psutil.Process(server.proc.pid)
    before = serverproc.settled_rss(process)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=upload)
        assert response.status_code == 400, response.text
        assert "frame at byte 8" in response.json()["detail"] and "key id 50000000" in response.json()["detail"]
        assert http.get("/api/v1/runs/p/r/log/offset").json() == {"offset": 0}
        assert http.get("/api/v1/runs/p/r").status_code == 404
        grown = process.memory_info().rss - before
        assert grown < 50 << 20, f"the server grew by {grown >> 20} MiB"
        # The run can still be uploaded properly.
        good = MAGIC + _batch(define=(0,), key=0)
        assert http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=good).status_code == 200
        assert http.get("/api/v1/runs/p/r").json()["run"]["keys"] == ["k0"]


def test_records_that_consumers_cant_fold_are_refused_with_their_offset(root, servers, server_store):
    """The class behind the huge key id: every record is checked against the run's key table
    before any byte is kept (core/validate.py), and the table survives a server restart."""
    server = servers(store=server_store)
    _record(root, "p", "r", steps=50)  # defines keys 0, 1 and 2 (loss, acc, nan)
    data = _local(root, "p", "r")
    end = len(data)
    future = pb.Record()
    future.run_start.schema_version = 7
    cases = [
        (frame(b"\xff\xff\xff\xff"), "not a tracklet.v1.Record"),  # passes the CRC, isn't protobuf
        (_batch(define=(5,), key=5), "key ids must be dense"),
        (_batch(define=(4, 6)), "key ids must be dense"),
        (_batch(key=4), "not defined"),
        (_batch(key=0, steps=2, rows=(0, 7)), "row index 7"),
        (_batch(key=0, steps=3, values=2), "2 value(s) for a batch of 3"),
        (_batch(key=0, steps=3, rows=(0, 1), values=1), "lists 2 row(s) but has 1"),
        (_batch(steps=3, times=2), "3 step(s) but 2 time(s)"),
        (frame(future.SerializeToString()), "schema version 7"),
    ]
    url = "/api/v1/runs/p/r/log"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.put(url, params={"offset": 0}, content=data).json() == {"offset": end, "appended": end}
        for bad, message in cases:
            for prefix in (b"", _batch(define=(3,), key=3)):  # the bad frame first, or after a good one
                response = http.put(url, params={"offset": end}, content=prefix + bad)
                assert response.status_code == 400, (message, response.text)
                detail = response.json()["detail"]
                assert message in detail and f"frame at byte {end + len(prefix)}" in detail, detail
                assert "nothing of this request was stored" in detail
        assert http.get(url + "/offset").json() == {"offset": end}
    assert _copy(server, "p", "r") == data

    server.stop()
    server.start()  # the key table is rebuilt from the store and the copy
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.put(url, params={"offset": end}, content=_batch(define=(4,), key=4)).status_code == 400
        ok = http.put(url, params={"offset": end}, content=_batch(define=(3,), key=3, steps=1))
        assert ok.status_code == 200, ok.text
        assert http.get("/api/v1/runs/p/r").json()["run"]["keys"] == ["loss", "acc", "nan", "k3"]


def test_unsafe_names_are_refused(servers):
    server = servers()
    with httpx.Client(base_url=server.url) as http:
        for project, run_id in [("p", "%2E%2E"), ("%2E%2E", "r"), ("p", ".hidden"), ("a%20b", "r"), ("p", "x" * 200)]:
            put = http.put(f"/api/v1/runs/{project}/{run_id}/log", params={"offset": 0}, content=MAGIC)
            assert put.status_code == 400 and "is not valid" in put.json()["detail"], put.text
            assert http.get(f"/api/v1/runs/{project}/{run_id}/log/offset").status_code == 400
            assert http.get(f"/api/v1/runs/{project}/{run_id}").status_code == 400
        # A slash never reaches a handler as part of a name.
        assert http.put("/api/v1/runs/p/..%2F..%2Fx/log", params={"offset": 0}, content=MAGIC).status_code == 404
    assert not (server.root / "projects").exists()
    assert sorted(p.name for p in server.root.parent.iterdir()) == [server.root.name]


def test_oversized_bodies_get_413(servers):
    server = servers(extra=("--max-body-mb", "1"))
    big = MAGIC + frame(b"x" * (1 << 20))
    with httpx.Client(base_url=server.url) as http:
        response = http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=big)
        assert response.status_code == 413 and "too large" in response.json()["detail"]
        bomb = gzip.compress(big)  # small on the wire, too big decompressed
        assert len(bomb) < 1 << 20
        response = http.put("/api/v1/runs/p/r/log", params={"offset": 0}, content=bomb,
                            headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413 and "decompressed" in response.json()["detail"]
        assert http.get("/api/v1/runs/p/r/log/offset").json() == {"offset": 0}


def test_read_api_errors_and_openapi(root, servers):
    server = servers()
    _record(root, "p", "r", steps=10)
    _record(root, "p", "by-dir", steps=10)
    assert _sync(server.url, root, "p/r").returncode == 0
    assert _sync(server.url, root, str(RunPaths(root, "p", "by-dir").run_dir)).returncode == 0  # a directory
    assert _copy(server, "p", "by-dir") == _local(root, "p", "by-dir")
    with httpx.Client(base_url=server.url) as http:
        bad_filter = http.get("/api/v1/projects/p/runs", params={"filter": "config.lr >> 1"})
        assert bad_filter.status_code == 400 and "unexpected token" in bad_filter.json()["detail"]
        assert http.get("/api/v1/projects/p/runs", params={"order_by": "-nonsense"}).status_code == 400
        assert http.get("/api/v1/projects/nope/runs").status_code == 404
        assert http.get("/api/v1/runs/p/nope").status_code == 404
        assert http.get("/api/v1/runs/p/nope/history", params={"keys": "loss"}).status_code == 404
        assert http.get("/api/v1/runs/p/r/history", params={"keys": ","}).status_code == 400
        assert http.get("/api/v1/runs/p/r/history", params={"keys": "loss", "x": "time"}).status_code == 200
        schema = http.get("/openapi.json").json()
    assert {
        "/api/v1/runs/{project}/{run_id}/log", "/api/v1/runs/{project}/{run_id}/log/offset", "/api/v1/projects",
        "/api/v1/projects/{project}/runs", "/api/v1/runs/{project}/{run_id}", "/api/v1/runs/{project}/{run_id}/history",
    } <= set(schema["paths"])
    put = schema["paths"]["/api/v1/runs/{project}/{run_id}/log"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"] and {"400", "409", "413"} <= set(put["responses"])


def test_sync_command_errors(root, tmp_path):
    _record(root, "p", "r", steps=5)
    unreachable = f"http://127.0.0.1:{_free_port()}"
    result = _sync(unreachable, root, "p/r", "--give-up-after", "0.3", "--backoff-cap", "0.05")
    assert result.returncode == 2 and "gave up" in result.stderr and "tracklet sync" in result.stderr
    assert "no run" in _sync(unreachable, root, "p/missing").stderr
    assert "--all" in _sync(unreachable, root).stderr


def test_a_crashed_runs_torn_tail_is_not_sent(root, servers):
    server = servers()
    run = _record(root, "p", "crashed", steps=2000, flush_every=100, exit_code=None)
    run.flush()
    intact = _local(root, "p", "crashed")
    with open(RunPaths(root, "p", "crashed").log_file, "ab") as handle:  # a writer killed mid-frame
        handle.write(frame(b"\x0a" * 100)[:50])
    with SyncClient(server.url, chunk_bytes=1024) as client:  # frames bigger than a chunk go whole
        result = client.sync_run(RunPaths(root, "p", "crashed"))
        assert result.offset == len(intact) and _copy(server, "p", "crashed") == intact
        assert client.sync_run(RunPaths(root, "p", "crashed")).requests == 0
    run.finish()


# ---------------------------------------------------------------- online mode


def _online(root: Path, url: str, run_id: str, resume: str | None = None, **settings) -> tracklet.Run:
    return tracklet.init(project="live", id=run_id, dir=str(root), mode="online", resume=resume,
                         settings={**QUIET, "base_url": url, "upload_interval": 0.05, **settings})


def test_an_online_run_streams_to_the_server_as_it_goes(root, servers):
    server = servers()
    run = _online(root, server.url, "streamed")
    for step in range(2000):
        run.log({"loss": 1.0 / (step + 1)})
    run.flush()
    deadline = time.monotonic() + 30
    while len(_copy(server, "live", "streamed")) < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the server's copy while the run is still live
    assert len(_copy(server, "live", "streamed")) > 1000  # arrived before finish()
    run.finish()
    assert _copy(server, "live", "streamed") == _local(root, "live", "streamed")
    detail = httpx.get(f"{server.url}/api/v1/runs/live/streamed", timeout=10).json()
    assert detail["run"]["state"] == "finished"


def test_sync_while_the_online_uploader_sends_the_same_run(root, servers):
    """Issue #12 item 17: `tracklet sync --all` next to a live online run warned "recorded again
    from scratch?" when the run's uploader moved the server past the size sync had read. Here the
    uploader sends new frames exactly between sync's look at the log and its question to the
    server (a transport that lets it run first), which is where the two used to race."""
    server = servers()
    run = _online(root, server.url, "both")
    paths = RunPaths(root, "live", "both")

    def uploader_catches_up() -> None:
        for step in range(200):
            run.log({"loss": float(step)})
        run.flush()
        deadline = time.monotonic() + 30
        while len(_copy(server, "live", "both")) < paths.log_file.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.02)  # the online uploader sends what was flushed

    class UploaderFirst(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/log/offset"):
                uploader_catches_up()
            return super().handle_request(request)

    with SyncClient(server.url, transport=UploaderFirst()) as client:
        for _ in range(3):
            result = client.sync_run(paths)
            assert result.offset == len(_copy(server, "live", "both"))
    run.finish()
    assert _copy(server, "live", "both") == _local(root, "live", "both")
    _assert_every_step_once(server, "live", "both", 600)


def test_an_unreachable_server_never_blocks_training(root, servers, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    # finish() waits upload_timeout (0.5 s) for the upload, not finish_timeout (an hour) of retries:
    # a script whose log() or finish() waited for the server would not end (run_script's bound
    # guards a stuck test; it is not a timing check).
    done = run_script(f"""
        import tracklet
        run = tracklet.init(project="live", id="outage", mode="online", settings={{
            **{QUIET!r}, "base_url": {dead!r}, "upload_interval": 0.05, "upload_timeout": 0.5,
            "finish_timeout": 3600}})
        for step in range(3000):
            run.log({{"loss": float(step)}})
        run.finish()
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "did not finish within" in done.stderr, done.stderr
    assert tracklet.Api(root).run("live/outage").history()["loss"] == [float(s) for s in range(3000)]
    server = servers()
    done = _sync(server.url, root, "live/outage")
    assert done.returncode == 0, done.stderr
    assert _copy(server, "live", "outage") == _local(root, "live", "outage")


def test_an_online_run_catches_up_after_the_server_restarts(root, servers):
    server = servers()
    run = _online(root, server.url, "restart")
    for step in range(1000):
        run.log({"loss": float(step)})
    run.flush()
    server.kill()
    for step in range(1000, 2000):
        run.log({"loss": float(step)})
    server.start()
    run.finish()
    assert _copy(server, "live", "restart") == _local(root, "live", "restart")
    _assert_every_step_once(server, "live", "restart", 2000)


def test_a_run_whose_client_dies_shows_as_crashed_after_its_heartbeat_lapses(root, servers):
    server = servers(extra=("--heartbeat-lapse", "4", "--sweep-interval", "0.2"))
    script = f"""
import os, tracklet
run = tracklet.init(project="live", id="dies", mode="online", settings={{
    "base_url": "{server.url}", "upload_interval": 0.05, "console": "off", "capture_environment": False,
    "system_metrics": False}})
for step in range(500):
    run.log({{"loss": float(step)}})
run.flush()
import time
deadline = time.time() + 30
while not os.path.exists("{server.root}/projects/live/runs/dies/run.tlog") and time.time() < deadline:
    time.sleep(0.05)
import httpx
while time.time() < deadline:  # the uploader sent what was flushed: the server's copy ends at step 499
    answer = httpx.get("{server.url}/api/v1/runs/live/dies", timeout=5)
    if answer.status_code == 200 and answer.json()["run"]["last_step"] == 499:
        break
    time.sleep(0.05)
os._exit(9)  # killed: no exit record, no more uploads
"""
    from conftest import run_script

    run_script(script)
    states = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}/api/v1/runs/live/dies", timeout=5)
        if response.status_code == 200:
            states.append(response.json()["run"]["state"])
            if states[-1] == "crashed":
                break
        time.sleep(0.1)  # polling the server's periodic sweep
    assert states[0] == "running" and states[-1] == "crashed"

    # Resumed, it streams on from where the server's copy ends and finishes there.
    run = _online(root, server.url, "dies", resume="allow")
    assert run.step == 500
    for step in range(500, 700):
        run.log({"loss": float(step)})
    run.finish()
    row = httpx.get(f"{server.url}/api/v1/runs/live/dies", timeout=5).json()["run"]
    assert (row["state"], row["exit_code"], row["last_step"]) == ("finished", 0, 699)
    assert _copy(server, "live", "dies") == _local(root, "live", "dies")
    _assert_every_step_once(server, "live", "dies", 700)


def test_an_index_pass_skips_unchanged_runs_but_still_sees_a_writer_die(root, monkeypatch):
    """`tracklet ui`'s pass every second: a run indexed up to its log's size and not running costs a
    stat, no index_run; a running run is still checked, so a writer killed without its log growing
    turns the run crashed."""
    from tracklet.core.recordlog import writer_alive
    from tracklet.server.indexing import StoreIndexer
    from tracklet.store import Store
    from tracklet.store.ingest import Indexer

    _record(root, "p", "done", steps=20)
    script = ("import sys, time, tracklet\n"
              f"run = tracklet.init(project='p', id='live', dir={str(root)!r}, settings={QUIET!r})\n"
              "run.log({'loss': 1.0}); run.flush(); print('ok', flush=True); time.sleep(120)\n")
    writer = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ok"
        calls: list[str] = []  # the runs whose log a pass reads (grouped, or alone)
        fold_chunk = Indexer._fold_chunk
        monkeypatch.setattr(Indexer, "_fold_chunk", lambda self, connection, paths: calls.append(paths.run_id)
                            or fold_chunk(self, connection, paths))
        store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
        indexer = StoreIndexer(store, root, liveness=writer_alive, shared_root=True)

        indexer.index_all()
        assert sorted(calls) == ["done", "live"] and _states(store) == {"done": "finished", "live": "running"}
        calls.clear()
        indexer.index_all()
        assert calls == ["live"]  # the finished run is skipped; the running one is checked
        log_size = RunPaths(root, "p", "live").log_file.stat().st_size
        writer.kill()
        writer.wait()
        assert RunPaths(root, "p", "live").log_file.stat().st_size == log_size
        calls.clear()
        indexer.index_all()
        assert calls == ["live"] and _states(store) == {"done": "finished", "live": "crashed"}
        calls.clear()
        indexer.index_all()
        assert calls == []  # nothing changed: no index_run at all
        _record(root, "p", "new", steps=5)
        indexer.index_all()
        assert calls == ["new"] and _states(store)["new"] == "finished"
    finally:
        writer.kill()
        writer.wait()



def test_the_servers_indexing_pass_indexes_many_runs_per_transaction(root, store_url):
    """At startup (and every pass) a server with a backlog of runs, a sweep's, commits a group of
    runs at a time, not one run per transaction; a run that fails is logged and the others index."""
    import sqlalchemy as sa

    from tracklet.server.indexing import StoreIndexer
    from tracklet.store import Store

    for n in range(12):
        _record(root, "sweep", f"r{n:02d}", steps=5)
    store = Store(store_url, root=root)
    with store.engine.begin() as connection:  # a real trigger that fails one run's insert
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("CREATE FUNCTION reject_run() RETURNS trigger AS $$ BEGIN "
                                       "RAISE EXCEPTION 'rejected'; END $$ LANGUAGE plpgsql"))
            connection.execute(sa.text("CREATE TRIGGER reject_run BEFORE INSERT ON runs FOR EACH ROW "
                                       "WHEN (NEW.run_id = 'r05') EXECUTE FUNCTION reject_run()"))
        else:
            connection.execute(sa.text("CREATE TRIGGER reject_run BEFORE INSERT ON runs WHEN NEW.run_id = 'r05' "
                                       "BEGIN SELECT RAISE(ABORT, 'rejected'); END"))
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda connection: commits.append(1))
    StoreIndexer(store, root).index_all()
    assert sorted(row["run_id"] for row in store.runs("sweep")) == [f"r{n:02d}" for n in range(12) if n != 5]
    assert len(commits) == 11  # the group rolled back, then its runs alone: only the bad one is lost
    with store.engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER reject_run ON runs" if connection.dialect.name == "postgresql"
                                   else "DROP TRIGGER reject_run"))
    for n in range(12, 40):
        _record(root, "sweep", f"r{n:02d}", steps=5)
    commits.clear()
    StoreIndexer(store, root).index_all()
    assert len(store.runs("sweep")) == 40
    assert len(commits) == 1


def _states(store) -> dict[str, str]:
    import sqlalchemy as sa

    from tracklet.store.schema import runs

    with store.engine.connect() as connection:
        return {row.run_id: row.state for row in connection.execute(sa.select(runs.c.run_id, runs.c.state))}
