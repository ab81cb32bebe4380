"""No mutation lands unaudited (server/audit.py, "Changes that are files"): a request whose change
is files (record log bytes, a run file, an artifact blob) commits an intent before the change,
and its event deletes the intent in the event's own transaction. A real `tracklet server` killed
with SIGKILL between the change and its event (the test hook ``TRACKLET_TEST_AUDIT_KILL``, read
by the server process) and started again shows the change in its audit log, as ``unknown``;
SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import blake3
import httpx
import pytest
import sqlalchemy as sa
from conftest import QUIET
from serverproc import Server
from test_audit import _bearer, _cli, _events, mutating_routes

import tracklet
from tracklet.artifacts.packs import build_pack
from tracklet.core.layout import RunPaths
from tracklet.server.audit import DATABASE_ONLY, INTENT_LAPSE, AuditLog, AuditQuery, owner_alive, process_owner
from tracklet.server.schema import audit_intents
from tracklet.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def keyed_root(request, tmp_path):
    """A server's data root and store with an admin `root` (not started): (root, store, key)."""
    store = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    root = tmp_path / "srv"
    created = _cli("admin", "--dir", str(root), *(["--store", store] if store else []), "create-user", "root",
                   "--admin")
    assert created.returncode == 0, created.stderr
    return root, store, created.stdout.strip()


def test_a_server_killed_between_a_file_change_and_its_event_still_audits_the_change(keyed_root, root,
                                                                                      monkeypatch):
    server_root, store, key = keyed_root
    run = tracklet.init(project="vision", id="r1", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    log = RunPaths(root, "vision", "r1").log_file.read_bytes()
    blob = b"the weights"
    digest = hashlib.sha256(blob).hexdigest()
    chunk = os.urandom(5000)
    # A pack upload commits its intent in the worker call that stores the pack (audit.arms_itself).
    pack_id, pack = build_pack([(blake3.blake3(chunk).digest(), chunk)])
    server = Server(server_root, store=store, dev=False)
    try:
        for action, method, path, body in [
                ("put_log", "PUT", "/api/v1/runs/vision/r1/log?offset=0", log),
                ("put_file", "PUT", "/api/v1/runs/vision/r1/files/notes.txt", b"hello"),
                ("put_blob", "PUT", f"/api/v1/projects/vision/artifacts/_blobs/{digest}", blob),
                ("put_pack", "PUT", f"/api/v1/projects/vision/artifacts/_packs/{pack_id}", pack)]:
            monkeypatch.setenv("TRACKLET_TEST_AUDIT_KILL", action)
            server.start()  # (recovers what the previous one left)
            with pytest.raises(httpx.TransportError):  # the server died before it answered
                httpx.request(method, server.url + path, content=body, headers=_bearer(key), timeout=60)
            assert server.proc is not None and server.proc.wait(timeout=60) == -signal.SIGKILL
        monkeypatch.delenv("TRACKLET_TEST_AUDIT_KILL")
        server.start()
        with httpx.Client(base_url=server.url, timeout=30, headers=_bearer(key)) as http:
            events = [e for e in _events(http, key) if e["action"] in ("put_log", "put_file", "put_blob", "put_pack")]
            # Each has exactly one event, its outcome unknown; the changes happened (their bytes are there).
            # Each change happened (its bytes are there), and each has exactly one event: unknown outcome.
            assert http.get("/api/v1/runs/vision/r1/log/offset").json()["offset"] == len(log)
            assert http.get("/api/v1/runs/vision/r1/files/notes.txt").content == b"hello"
            # The blob's row (the project holds it) was the transaction killed: the client's resend completes it.
            assert http.put(f"/api/v1/projects/vision/artifacts/_blobs/{digest}", content=blob).status_code == 200
            assert http.get(f"/api/v1/projects/vision/artifacts/_blobs/{digest}").content == blob
            # The pack's rows were the transaction killed: sent again, the project holds its chunk.
            assert http.put(f"/api/v1/projects/vision/artifacts/_packs/{pack_id}", content=pack).status_code == 200
            missing = http.post("/api/v1/projects/vision/artifacts/_chunks/missing",
                                json={"chunks": [blake3.blake3(chunk).hexdigest()]})
            assert missing.status_code == 200 and missing.json()["missing"] == []
    finally:
        server.stop()
    assert [(e["action"], e["target"], e["status"], e["outcome"], e["actor"]) for e in events] == [
        ("put_log", "runs/vision/r1/log", 0, "unknown", "root"),
        ("put_file", "runs/vision/r1/files/notes.txt", 0, "unknown", "root"),
        ("put_blob", f"projects/vision/artifacts/_blobs/{digest}", 0, "unknown", "root"),
        ("put_pack", f"projects/vision/artifacts/_packs/{pack_id}", 0, "unknown", "root")]
    for event in events:
        assert event["detail"]["reason"].startswith("the server process stopped between the change")
        assert event["key_id"] == key.split("_")[1] and event["client"] == "127.0.0.1"
    with Store(store or f"sqlite:///{server_root / 'store.sqlite'}", root=server_root).engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(audit_intents)).scalar() == 0


def test_intents_of_live_processes_stay_and_of_dead_ones_become_unknown_events(store_url, tmp_path):
    store = Store(store_url, root=tmp_path)
    log = AuditLog(store.engine)
    event = {"actor": "root", "action": "put_file", "method": "PUT", "target": "runs/p/r/files/a", "project": "p"}
    live = log.intend(event)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    host = socket.gethostname()
    dead_owner = f"{host}:{int(finished.stdout)}:1"
    assert owner_alive(process_owner()) is True and owner_alive(dead_owner) is False
    assert owner_alive("elsewhere.example:1:1") is None  # another host: nothing here can tell
    now = time.time()
    with store.engine.begin() as connection:
        for owner, at in [(dead_owner, now), ("elsewhere.example:7:1", now),
                          ("elsewhere.example:8:1", now - INTENT_LAPSE - 60)]:
            connection.execute(audit_intents.insert().values(time=at, owner=owner,
                                                             event='{"action": "put_log", "method": "PUT", '
                                                                   '"target": "runs/p/r/log"}'))
    assert log.recover() == 2  # the dead process's, and the other host's past the lapse
    assert log.recover() == 0  # once
    with store.engine.connect() as connection:
        left = connection.execute(sa.select(audit_intents.c.id, audit_intents.c.owner)).all()
    assert sorted(owner for _, owner in left) == sorted([process_owner(), "elsewhere.example:7:1"])
    recovered = [e for e in log.iterate(AuditQuery()) if e["outcome"] == "unknown"]
    assert [(e["action"], e["status"], e["detail"]["intent_owner"]) for e in recovered] == [
        ("put_log", 0, "elsewhere.example:8:1"), ("put_log", 0, dead_owner)]  # in the intents' time order
    # The live request's own event deletes its intent in the event's transaction.
    log.record(intent=live, **event, status=200, outcome="ok")
    with store.engine.connect() as connection:
        assert live not in [row.id for row in connection.execute(sa.select(audit_intents.c.id))]
    store.close()


def test_every_mutating_route_but_the_database_only_ones_commits_an_intent_first(tmp_path):
    """``DATABASE_ONLY`` names routes that exist (it can't rot), and none whose change is files."""
    from tracklet.server.app import create_app

    names = {route.name for _, _, route in mutating_routes(create_app(tmp_path / "walk", index_on_start=False))}
    assert DATABASE_ONLY <= names
    assert {"put_log", "put_file", "put_blob", "put_blob_batch", "put_pack", "put_upload_part", "start_upload",
            "complete_upload", "register_file", "commit_version"} <= names - DATABASE_ONLY
    # OTLP ingest stores rows only, its event in their transaction (store/spans_writer.py; docs/audit.md).
    assert "receive_traces" in DATABASE_ONLY
