"""The scale-out deployment: several `tracklet server` processes, each with its own empty --dir,
sharing one PostgreSQL store and one S3 bucket (a real s3rver) for log segments and files. Any
process takes any request: online runs spread over them, a run uploaded half through one and
half through another, the same run synced through two at once, a process killed mid-sync; every
copy ends byte-identical with every step stored exactly once, and every process reads the same."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import serverproc
from conftest import QUIET, REPO
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem

import tracklet
from tracklet.core.layout import RunPaths


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


@pytest.fixture
def deployment(tmp_path, servers, pg_url, s3rver):
    """Three keyed server processes on one PostgreSQL and one bucket prefix; yields
    (servers, admin key, S3 prefix)."""
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"
    shared = ("--logs", f"s3://{prefix}/logs", "--files", f"s3://{prefix}/files",
              "--files-option", f"endpoint_url={s3rver}", "--files-option", f"key={S3_KEY}",
              "--files-option", f"secret={S3_SECRET}", "--heartbeat-lapse", "600")
    made = serverproc.cli("admin", "--store", pg_url, "--dir", str(tmp_path / "adm"), "create-user", "root", "--admin",
                          timeout=60)
    assert made.returncode == 0, made.stderr
    started = [servers(tmp_path / f"api{index}", store=pg_url, dev=False, extra=shared) for index in range(3)]
    return started, made.stdout.strip(), prefix


def _record(root: Path, run_id: str, steps: range, **init) -> None:
    run = tracklet.init(project="team", id=run_id, dir=str(root), settings=QUIET, **init)
    for step in steps:
        run.log({"loss": float(step)})
        if step % 500 == 499:
            run.flush()
    run.finish()


def _sync(url: str, root: Path, key: str, *runs: str) -> subprocess.CompletedProcess:
    return serverproc.cli("sync", "--url", url, "-q", "--chunk-mb", "0.01", *runs,
                          env={"TRACKLET_DIR": str(root), "TRACKLET_API_KEY": key}, timeout=180)


def _steps(url: str, key: str, run_id: str) -> list[int]:
    response = httpx.get(f"{url}/api/v1/runs/team/{run_id}/history", params={"keys": "loss", "buckets": 0},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    (loss,) = response.json()["series"]
    return loss["steps"]


def _segments_joined(prefix: str, endpoint: str, run_id: str) -> bytes:
    fs = s3_filesystem(endpoint)
    keys = sorted(fs.find(f"{prefix}/logs/team/{run_id}/"))
    return b"".join(fs.cat_file(key) for key in keys)


def test_any_process_takes_any_request(deployment, root, s3rver):
    apis, key, prefix = deployment
    online = """
import sys, tracklet
run = tracklet.init(project="team", id=sys.argv[1], mode="online", settings={
    "base_url": sys.argv[2], "upload_interval": 0.05, "console": "off", "system_metrics": False,
    "capture_environment": False})
for step in range(3000):
    run.log({"loss": float(step)})
    if step % 300 == 299:
        run.flush()
run.finish()
"""
    # Four online runs at once, spread over the three processes.
    clients = [subprocess.Popen([sys.executable, "-c", online, f"online{index}", apis[index % 3].url],
                                env=_env(TRACKLET_DIR=str(root), TRACKLET_API_KEY=key), stderr=subprocess.PIPE)
               for index in range(4)]
    for client in clients:
        _, err = client.communicate(timeout=180)
        assert client.returncode == 0 and b"refused" not in err, err.decode()

    # One run uploaded half through one process and half through another.
    _record(root, "halves", range(0, 4000))
    assert _sync(apis[0].url, root, key, "team/halves").returncode == 0
    _record(root, "halves", range(4000, 8000), resume="allow")
    assert _sync(apis[1].url, root, key, "team/halves").returncode == 0

    # The same run synced through two processes at once: appends serialize on the run's head row.
    _record(root, "twice", range(0, 20_000))
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda url=api.url: results.append(_sync(url, root, key, "team/twice")))
               for api in apis[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]

    # A process killed mid-sync; another finishes the run.
    _record(root, "killed", range(0, 30_000))
    proc = subprocess.Popen([sys.executable, "-m", "tracklet", "sync", "--url", apis[2].url, "-q", "--chunk-mb", "0.01",
                             "team/killed"], env=_env(TRACKLET_DIR=str(root), TRACKLET_API_KEY=key),
                            stderr=subprocess.PIPE)
    deadline_steps = 0
    while proc.poll() is None and deadline_steps < 400:
        offset = httpx.get(f"{apis[0].url}/api/v1/runs/team/killed/log/offset",
                           headers={"Authorization": f"Bearer {key}"}, timeout=10).json()["offset"]
        if offset > 0:
            break
        deadline_steps += 1
        threading.Event().wait(0.05)  # polling the shared offset through another process
    apis[2].kill()
    proc.kill()
    proc.wait(timeout=10)
    assert _sync(apis[0].url, root, key, "team/killed").returncode == 0

    expected = {**{f"online{i}": 3000 for i in range(4)}, "halves": 8000, "twice": 20_000, "killed": 30_000}
    for run_id, steps in expected.items():
        local = RunPaths(root, "team", run_id).log_file.read_bytes()
        assert _segments_joined(prefix, s3rver, run_id) == local, run_id
        for api in apis[:2]:  # every live process reads the same, every step exactly once
            assert _steps(api.url, key, run_id) == list(range(steps)), (run_id, api.url)
    states = {row["run_id"]: row["state"] for row in httpx.get(
        f"{apis[1].url}/api/v1/projects/team/runs", headers={"Authorization": f"Bearer {key}"}).json()["runs"]}
    assert states == dict.fromkeys(expected, "finished")
    for api in apis:  # nothing lives in a process's own directory
        assert not (api.root / "projects").exists()


def test_routes_that_read_a_runs_log_answer_from_segments_in_shared_storage(deployment, root):
    """With ``--logs`` in shared storage no process keeps a log file of its own: the routes the
    store doesn't answer (histograms, tables, history strings and structured values) read the
    run's segments, through any process (they answered 404 "no run", and the Api's history failed)."""
    apis, key, _ = deployment
    run = tracklet.init(project="team", id="texts", dir=str(root), settings=QUIET)
    for step in range(40):
        run.log({"loss": float(step), "phase": f"p{step % 3}", "top": [["a", step]],
                 "weights": tracklet.Histogram([0.0, 1.0, float(step)])})
    run.log({"table": tracklet.Table(columns=["x"], data=[[1], [2]])})
    run.finish()
    assert _sync(apis[0].url, root, key, "team/texts").returncode == 0
    remote = tracklet.Api(base_url=apis[2].url, api_key=key).run("team/texts")
    history = remote.history(["loss", "phase", "top"])
    assert history["phase"][:40] == [f"p{step % 3}" for step in range(40)]
    assert history["top"][:40] == [[["a", step]] for step in range(40)] and history["loss"][:3] == [0.0, 1.0, 2.0]
    headers = {"Authorization": f"Bearer {key}"}
    for api in apis[1:]:
        histograms = httpx.get(f"{api.url}/api/v1/runs/team/texts/histograms/weights", headers=headers, timeout=30)
        assert histograms.status_code == 200 and len(histograms.json()["steps"]) == 40, histograms.text
        tables = httpx.get(f"{api.url}/api/v1/runs/team/texts/tables", headers=headers, timeout=30)
        assert tables.status_code == 200 and "table" in tables.text, tables.text


def _define(key_id: int) -> bytes:
    """A frame defining key ``key_id`` with one value, built with the real proto classes."""
    from tracklet.core.recordlog import frame
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    record.history.new_keys.add(id=key_id, name=f"k{key_id}")
    record.history.steps.append(10_000 + key_id)
    record.history.times.append(1.0)
    record.history.columns.add(key=key_id).floats.append(1.0)
    return frame(record.SerializeToString())


def test_every_process_checks_uploads_against_the_runs_shared_key_table(deployment, root, s3rver):
    """Record validation (docs/server.md) with the run's key count known to whichever process
    takes the request: from the shared store and segments, not from what that process saw."""
    apis, key, prefix = deployment
    _record(root, "checked", range(0, 100))  # defines key 0 (loss)
    assert _sync(apis[0].url, root, key, "team/checked").returncode == 0
    url = "/api/v1/runs/team/checked/log"
    clients = [httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) for api in apis]
    try:
        size = clients[0].get(url + "/offset").json()["offset"]
        for client, key_id, status in [(clients[1], 50_000_000, 400), (clients[1], 2, 400), (clients[2], 1, 200),
                                       (clients[0], 3, 400), (clients[0], 2, 200)]:
            response = client.put(url, params={"offset": size}, content=_define(key_id))
            assert response.status_code == status, (key_id, response.text)
            if status == 400:
                assert f"frame at byte {size}" in response.json()["detail"]
            else:
                size = response.json()["offset"]
        keys = clients[1].get("/api/v1/runs/team/checked").json()["run"]["keys"]
    finally:
        for client in clients:
            client.close()
    assert keys == ["loss", "k1", "k2"]
    assert len(_segments_joined(prefix, s3rver, "checked")) == size


def test_shared_logs_need_postgresql(tmp_path, s3rver):
    result = serverproc.cli("server", "--dev", "--dir", str(tmp_path), "--logs", str(tmp_path / "segments"), timeout=60)
    assert result.returncode == 2 and "need a PostgreSQL store" in result.stderr


def test_a_taken_port_is_one_clear_error_and_port_0_serves_on_the_port_it_announces(tmp_path):
    """A taken port printed "tracklet server on http://...:PORT" and then uvicorn's raw
    ``[Errno 98]`` line; ``--port 0`` announced ``:0``. The address is now bound before it is
    announced."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = serverproc.cli("server", "--dev", "--dir", str(tmp_path / "taken"), "--port", str(port), timeout=60)
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is in use (another `tracklet server` or `tracklet ui`?)" in result.stderr
    assert "tracklet server on" not in result.stderr and "Errno" not in result.stderr

    _serves_where_it_announces(["--dir", str(tmp_path / "free")], "127.0.0.1")


def _serves_where_it_announces(arguments: list[str], host: str) -> None:
    """Start ``tracklet server --dev --port 0 ARGUMENTS``: its first line announces
    ``http://HOST:PORT`` (a real port, not 0) and the API answers there."""
    import re
    import select

    process = subprocess.Popen([sys.executable, "-m", "tracklet", "server", "--dev", "--port", "0", *arguments],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        announced = select.poll()  # (select.select takes no descriptor past 1,023)
        announced.register(process.stderr, select.POLLIN)
        assert announced.poll(60_000), "the server announced nothing within 60 s"
        line = process.stderr.readline()
        match = re.search(rf"http://{re.escape(host)}:(\d+) ", line)
        assert match and int(match[1]) != 0, line
        answered = None
        for _ in range(600):
            try:
                answered = httpx.get(f"http://{host}:{match[1]}/api/v1/projects", timeout=5)
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        assert answered is not None and answered.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_port_is_bound_before_the_server_opens_its_store(tmp_path, monkeypatch):
    """``create_app`` (the store's full index, audit recovery: minutes on a large server) ran
    before the port was bound, so a taken port was reported only after all that work."""
    import socket

    from click.testing import CliRunner

    import tracklet.server.app
    from tracklet.cli.main import main

    opened: list[Path] = []

    def create_app(root, **_):  # the spy: the real app is not wanted here
        opened.append(root)
        raise AssertionError("the app was created before the port was bound")

    monkeypatch.setattr(tracklet.server.app, "create_app", create_app)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        result = CliRunner().invoke(main, ["server", "--dev", "--dir", str(tmp_path / "s"), "--port",
                                           str(holder.getsockname()[1])])
    finally:
        holder.close()
    assert result.exit_code == 2 and "is in use" in result.output and opened == []


def test_an_ipv6_host_is_bracketed_in_the_announced_url(tmp_path):
    _serves_where_it_announces(["--host", "::1", "--dir", str(tmp_path / "v6")], "[::1]")
