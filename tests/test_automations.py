"""Automations (docs/audit.md#automations) on real `tracklet server` processes, delivering to a real
HTTP receiver on loopback that checks every signature: a webhook answered 500 is retried and then
delivered once, never again after the server restarts (PostgreSQL); an online run's alert, finish,
threshold crossing and artifact version reach their rules as signed webhooks and Slack-style
messages; a 4xx is not retried; rules are validated and only server admins manage them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET

import tracklet
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.server import events
from tracklet.server.schema import migrate
from tracklet.store import Store

SECRET = "s3cret-for-the-test"


class Receiver:
    """A webhook receiver on loopback: answers each path with the statuses queued for it (then
    200), and keeps every request with whether its signature and timestamp verified."""

    def __init__(self, statuses: dict[str, list[int]] | None = None, secret: str = SECRET) -> None:
        self.statuses = {path: list(codes) for path, codes in (statuses or {}).items()}
        self.secret = secret.encode()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers.get("X-Tracklet-Timestamp", "")
                expected = "sha256=" + hmac.new(receiver.secret, timestamp.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()
                verified = (hmac.compare_digest(expected, self.headers.get("X-Tracklet-Signature", ""))
                            and abs(time.time() - int(timestamp)) < 300)
                with receiver.lock:
                    queued = receiver.statuses.get(self.path, [])
                    status = queued.pop(0) if queued else 200
                    receiver.requests.append({"path": self.path, "status": status, "verified": verified,
                                              "key": self.headers.get("Idempotency-Key"),
                                              "event": self.headers.get("X-Tracklet-Event"),
                                              "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self, path: str) -> list[dict]:
        with self.lock:
            return [request for request in self.requests if request["path"] == path and request["status"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def _make(statuses: dict[str, list[int]] | None = None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield _make
    for item in made:
        item.close()


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)  # polling for the worker, not a timing assertion
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, env=env)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _alerting_run(root: Path, run_id: str, alerts: list[tuple[str, str]], resume: bool = False) -> None:
    run = tracklet.init(project="p", id=run_id, dir=str(root), settings=QUIET, resume="allow" if resume else None)
    for step, (title, level) in enumerate(alerts):
        run.log({"loss": 1.0 / (step + 1)})
        run.alert(title, f"text of {title}", level)
    run.log({"loss": 0.5})
    run.finish()


def test_a_webhook_is_signed_retried_on_500_and_never_sent_again_after_a_restart(servers, pg_url, tmp_path,
                                                                                   receiver, root):
    hook = receiver({"/alerts": [500]})
    server_root = tmp_path / "srv"
    created = _cli("admin", "--dir", str(server_root), "--store", pg_url, "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip()
    server = servers(server_root, store=pg_url, dev=False, extra=("--webhook-retry-base", "0.2"))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        made = http.post("/api/v1/automations", headers=_bearer(admin), json={
            "name": "alerts", "event": "run.alert", "filter": {"level": "WARN", "project": "p"},
            "url": f"{hook.url}/alerts", "secret": SECRET})
        assert made.status_code == 201, made.text
        rule = made.json()
        assert rule["secret"] == SECRET
        assert "secret" not in http.get("/api/v1/automations", headers=_bearer(admin)).json()["automations"][0]

    _alerting_run(root, "r1", [("warming up", "INFO"), ("diverged", "ERROR")])
    with SyncClient(server.url, api_key=admin) as client:
        client.sync_run(RunPaths(root, "p", "r1"))
    (first,) = wait_for(lambda: hook.delivered("/alerts"), "the alert's delivery")
    sent = [request for request in hook.requests if request["key"] == first["key"]]
    assert [request["status"] for request in sent] == [500, 200]  # retried after the 500, with the same key
    assert all(request["verified"] for request in hook.requests)
    event = first["body"]["event"]
    assert first["event"] == event["kind"] == "run.alert" and event["subject"] == "p/r1"
    assert (event["payload"]["title"], event["payload"]["level"], event["payload"]["seq"]) == ("diverged", "ERROR", 2)
    assert first["body"]["automation"] == "alerts" and first["body"]["id"] == first["key"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        (delivery,) = http.get(f"/api/v1/automations/{rule['id']}/deliveries", headers=_bearer(admin)).json()[
            "deliveries"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("delivered", 2, 200)
    assert [attempt["status"] for attempt in delivery["attempt_log"]] == [500, 200]
    assert delivery["idempotency_key"] == first["key"]

    # A restart: the worker starts again from the database. The run grows (its alerts are derived
    # again, from the first one), and a second run alerts: that one, only, is sent.
    server.stop()
    server.start()
    _alerting_run(root, "r1", [], resume=True)
    _alerting_run(root, "r2", [("out of memory", "ERROR")])
    with SyncClient(server.url, api_key=admin) as client:
        client.sync_run(RunPaths(root, "p", "r1"))
        client.sync_run(RunPaths(root, "p", "r2"))
    wait_for(lambda: len(hook.delivered("/alerts")) == 2, "the second run's alert")
    assert [request["body"]["event"]["subject"] for request in hook.delivered("/alerts")] == ["p/r1", "p/r2"]
    assert len(hook.requests) == 3  # 500 and 200 for r1's alert, 200 for r2's: nothing twice
    engine = sa.create_engine(pg_url)
    with engine.connect() as connection:
        # Every alert is an event once (the INFO one too: the rule's filter passes it over).
        assert sorted(connection.execute(sa.text("SELECT dedupe FROM event_outbox WHERE kind = 'run.alert'"))
                      .scalars()) == ["run.alert:p/r1:1", "run.alert:p/r1:2", "run.alert:p/r2:1"]
        assert connection.execute(sa.text("SELECT count(*) FROM automation_deliveries")).scalar() == 2
    engine.dispose()


def test_an_online_runs_events_reach_webhooks_and_slack(servers, tmp_path, receiver):
    hook = receiver({"/gone": [410]})
    server = servers(tmp_path / "srv", extra=("--webhook-retry-base", "0.2"))
    rules = [
        {"name": "everything", "event": "*", "url": f"{hook.url}/all", "secret": SECRET},
        {"name": "chat", "event": "run.alert", "action": "slack", "url": f"{hook.url}/slack", "secret": SECRET},
        {"name": "low-loss", "event": "metric.threshold", "filter": {"metric": "loss", "op": "<", "value": 0.2},
         "url": f"{hook.url}/threshold", "secret": SECRET},
        {"name": "other-project", "event": "run.finished", "filter": {"project": "elsewhere"},
         "url": f"{hook.url}/never", "secret": SECRET},
        {"name": "gone", "event": "run.finished", "url": f"{hook.url}/gone", "secret": SECRET},
    ]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ids = {rule["name"]: http.post("/api/v1/automations", json=rule).json()["id"] for rule in rules}
    data = tmp_path / "data.txt"
    data.write_text("rows\n")
    run = tracklet.init(project="p", id="online1", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for step in range(10):
        run.log({"loss": 1.0 / (step + 1)})
    run.alert("loss is low", "0.1 at step 9", "WARN")
    artifact = tracklet.Artifact("dataset", type="dataset")
    artifact.add_file(str(data))
    run.log_artifact(artifact, aliases=["best"])
    artifact.wait()
    run.finish()

    kinds = {"run.alert", "run.finished", "metric.threshold", "artifact.version", "alias.moved"}
    wait_for(lambda: {request["event"] for request in hook.delivered("/all")} >= kinds - {"metric.threshold"},
             "every event at the catch-all rule")
    everything = {request["event"]: request["body"]["event"] for request in hook.delivered("/all")}
    assert everything["run.finished"]["payload"]["state"] == "finished"
    assert everything["artifact.version"]["subject"] == "p/dataset:v0"
    assert everything["alias.moved"]["subject"] == "p/dataset:best"
    assert everything["alias.moved"]["payload"]["previous"] is None
    (chat,) = wait_for(lambda: hook.delivered("/slack"), "the Slack-style message")
    assert chat["body"] == {"text": "[WARN] p/online1: loss is low 0.1 at step 9"}
    (crossed,) = wait_for(lambda: hook.delivered("/threshold"), "the threshold webhook")
    assert crossed["body"]["event"]["payload"]["metric"] == "loss"
    assert crossed["body"]["event"]["payload"]["value"] == pytest.approx(0.1)
    assert all(request["verified"] for request in hook.requests)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        (gone,) = wait_for(lambda: [d for d in http.get(f"/api/v1/automations/{ids['gone']}/deliveries").json()[
            "deliveries"] if d["state"] != "pending"], "the refused delivery")
        assert http.get(f"/api/v1/automations/{ids['other-project']}/deliveries").json()["deliveries"] == []
    assert (gone["state"], gone["attempts"], gone["last_status"]) == ("failed", 1, 410)  # a 4xx is not retried
    assert [request["path"] for request in hook.requests].count("/gone") == 1
    assert not [request for request in hook.requests if request["path"] == "/never"]


def test_removing_an_alias_and_deleting_a_version_reach_their_rules(servers, tmp_path, receiver):
    """``alias.removed`` (an alias taken off a version, or dropped with it) and
    ``artifact.deleted`` reach rules of their kind, signed, as the routes changed the versions;
    a refused deletion emits nothing."""
    hook = receiver()
    server = servers(tmp_path / "srv", extra=("--webhook-retry-base", "0.2"))
    rules = [{"name": "deleted", "event": "artifact.deleted", "url": f"{hook.url}/deleted", "secret": SECRET},
             {"name": "removed", "event": "alias.removed", "url": f"{hook.url}/removed", "secret": SECRET},
             {"name": "chat", "event": "artifact.deleted", "action": "slack", "url": f"{hook.url}/slack",
              "secret": SECRET}]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for rule in rules:
            assert http.post("/api/v1/automations", json=rule).status_code == 201
    run = tracklet.init(project="p", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for index, aliases in enumerate([["best", "old"], ["prod"]]):
        (tmp_path / "m.bin").write_bytes(b"weights %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model", aliases=aliases).wait().upload_error is None
    run.finish()
    versions = "/api/v1/projects/p/artifacts/m/versions"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post(f"{versions}/v0/aliases", json={"add": [], "remove": ["old", "prod"]}).status_code == 200
        assert http.delete(f"{versions}/v1").status_code == 409  # holds prod: refused, no event
        assert http.delete(f"{versions}/v0", params={"delete_aliases": "true"}).status_code == 200
    (deleted,) = wait_for(lambda: hook.delivered("/deleted"), "the artifact.deleted webhook")
    assert deleted["event"] == "artifact.deleted" and deleted["verified"]
    event = deleted["body"]["event"]
    assert (event["subject"], event["payload"]["version"], event["payload"]["aliases_dropped"]) == ("p/m:v0", 0, ["best"])
    removed = wait_for(lambda: len(hook.delivered("/removed")) == 2 and hook.delivered("/removed"), "two alias.removed")
    # prod names v1, not v0: removing it from v0 removed nothing
    assert [(r["body"]["event"]["subject"], r["body"]["event"]["payload"]["previous"],
             r["body"]["event"]["payload"]["deleted"]) for r in removed] == [("p/m:old", 0, False), ("p/m:best", 0, True)]
    (chat,) = wait_for(lambda: hook.delivered("/slack"), "the Slack-style message")
    assert chat["body"] == {"text": "artifact version p/m:v0 deleted"}
    assert all(request["verified"] for request in hook.requests)
    assert len(hook.requests) == 4  # nothing for the refused deletion


def test_rules_are_validated_and_only_server_admins_manage_them(servers, tmp_path):
    server_root = tmp_path / "srv"
    created = _cli("admin", "--dir", str(server_root), "create-user", "root", "--admin")
    admin = created.stdout.strip()
    server = servers(server_root, dev=False)
    good = {"name": "n", "event": "run.alert", "url": "https://example.invalid/hook"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        alice = http.post("/api/v1/users", json={"name": "alice"}, headers=_bearer(admin)).json()
        assert http.post("/api/v1/automations", json=good).status_code == 401
        assert http.post("/api/v1/automations", json=good, headers=_bearer(alice["key"])).status_code == 403
        for bad, says in [({"event": "run.exploded"}, "unknown event"), ({"url": "ftp://x/y"}, "http(s) URL"),
                          ({"url": "https://a\x01b/hook"}, "http(s) URL"), ({"url": "http://h:99999999/"}, "http(s) URL"),
                          ({"filter": {"colour": "red"}}, "unknown filter keys"),
                          ({"event": "metric.threshold", "filter": {"metric": "loss"}}, "needs filter keys"),
                          ({"filter": {"metric": "loss", "op": "<", "value": 1}}, "only metric.threshold"),
                          ({"filter": {"level": "LOUD"}}, "level")]:
            refused = http.post("/api/v1/automations", json={**good, **bad}, headers=_bearer(admin))
            assert refused.status_code == 400 and says in refused.json()["detail"], (bad, refused.text)
        made = http.post("/api/v1/automations", json=good, headers=_bearer(admin))
        assert made.status_code == 201 and len(made.json()["secret"]) >= 32
        assert http.post("/api/v1/automations", json=good, headers=_bearer(admin)).status_code == 400  # name taken
        rule_id = made.json()["id"]
        assert http.delete(f"/api/v1/automations/{rule_id}", headers=_bearer(alice["key"])).status_code == 403
    env = {"TRACKLET_API_KEY": admin}
    added = _cli("automation", "add", "cli-rule", "--event", "metric.threshold", "--to", "http://127.0.0.1:9/h",
                 "--filter", "metric=acc", "--filter", "op=>=", "--filter", "value=0.9", "--url", server.url, env=env)
    assert added.returncode == 0, added.stderr
    assert "shown only now" in added.stderr and len(added.stdout.strip()) >= 32
    listed = _cli("automation", "ls", "--url", server.url, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "run.alert" in listed.stdout and '"op": ">="' in listed.stdout and '"value": 0.9' in listed.stdout
    refused = _cli("automation", "add", "bad", "--event", "run.alert", "--to", "ftp://x/", "--url", server.url, env=env)
    assert refused.returncode == 2 and "http(s) URL" in refused.stderr
    removed = _cli("automation", "rm", str(rule_id), "--url", server.url, env=env)
    assert removed.returncode == 0, removed.stderr
    assert _cli("automation", "rm", str(rule_id), "--url", server.url, env=env).returncode == 2  # 404


def test_emit_is_idempotent_with_a_dedupe_key_and_joins_the_callers_transaction(store_url, tmp_path):
    store = Store(store_url, root=tmp_path)
    migrate(store.engine)
    assert events.emit(store.engine, "run.finished", "p/r", {"state": "finished"}, dedupe="run.finished:p/r")
    assert events.emit(store.engine, "run.finished", "p/r", {"state": "finished"}, dedupe="run.finished:p/r") is None
    with pytest.raises(RuntimeError), store.engine.begin() as connection:  # rolled back with the mutation
        events.emit(connection, "artifact.version", "p/a:v0", {"version": 0})
        raise RuntimeError("the mutation failed")
    with pytest.raises(ValueError, match="unknown event kind"):
        events.emit(store.engine, "run.exploded", "p/r", {})
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT kind FROM event_outbox")).scalars().all() == ["run.finished"]
    store.close()


def test_a_run_the_heartbeat_sweep_marks_crashed_emits_run_crashed_once(tmp_path):
    """A run whose client went silent without an exit is marked crashed by the server's periodic
    pass (``index_all``), and that emits ``run.crashed`` once, as an upload's exit emits
    ``run.finished``. The log's mtime is set, not waited for."""
    import shutil

    from tracklet.server.app import create_app

    client = tmp_path / "client"
    run = tracklet.init(project="p", id="silent", dir=str(client), settings=QUIET)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    assert run.flush(timeout=30)
    server_root = tmp_path / "server"
    copy = RunPaths(server_root, "p", "silent").log_file
    copy.parent.mkdir(parents=True)
    shutil.copyfile(RunPaths(client, "p", "silent").log_file, copy)  # no exit record: the client is "alive"
    run.finish()
    app = create_app(server_root, index_on_start=False, auth=False, heartbeat_lapse=600)
    state = app.state.tracklet
    state.automations.create(name="crashes", event="run.crashed", filter={}, action="webhook",
                             url="http://127.0.0.1:9/hook", secret=SECRET, created_by="root")
    now = time.time()
    os.utime(copy, (now, now))  # it grew just now: running
    state.indexer.index_all()
    assert state.store.run("p", "silent", fields=("state",))["state"] == "running"
    os.utime(copy, (now - 3600, now - 3600))  # silent for an hour, past the 600 s lapse: crashed
    state.indexer.index_all()
    state.indexer.index_all()  # a later pass: no second event
    assert state.store.run("p", "silent", fields=("state",))["state"] == "crashed"
    with state.store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT kind, subject, payload FROM event_outbox")).all()
    assert [(kind, subject) for kind, subject, _ in rows] == [("run.crashed", "p/silent")]
    payload = json.loads(rows[0][2])
    assert (payload["state"], payload["exit_code"]) == ("crashed", None)
    assert payload["summary"]["loss"] == pytest.approx(0.2)


def test_pruning_keeps_the_outbox_bounded_and_never_drops_what_is_pending_or_deduplicated(store_url, tmp_path):
    """Finished deliveries older than the retention go with their attempts, then dispatched events
    with no delivery left; pending deliveries, undispatched events, recent ones and events with a
    dedupe key stay. Times are set, not waited for."""
    from tracklet.server.automations import Automations
    from tracklet.server.automations_worker import AutomationWorker, DeliveryPolicy
    from tracklet.store import Store

    store = Store(store_url, root=tmp_path)
    automations = Automations(store.engine)
    automations.create(name="all", event="*", filter={}, action="webhook", url="http://127.0.0.1:9/x", secret=SECRET)
    worker = AutomationWorker(automations, policy=DeliveryPolicy(retention=86400.0))
    now = time.time()
    ids = {name: events.emit(store.engine, "run.finished", f"p/{name}", {}, dedupe="run.finished:p/kept"
                             if name == "dedupe" else None)
           for name in ("delivered", "failed", "pending", "dedupe", "recent")}
    worker.dispatch()
    ids["undispatched"] = events.emit(store.engine, "run.failed", "p/undispatched", {})
    old = now - 10 * 86400
    with store.engine.begin() as connection:
        for name, state, finished in (("delivered", "delivered", old), ("failed", "failed", old),
                                      ("pending", "pending", None), ("dedupe", "delivered", old),
                                      ("recent", "delivered", now)):
            connection.execute(sa.text("UPDATE automation_deliveries SET state = :state, finished_at = :finished "
                                       "WHERE event_id = :id"), {"state": state, "finished": finished, "id": ids[name]})
            if name != "recent":
                connection.execute(sa.text("UPDATE event_outbox SET time = :old WHERE id = :id"),
                                   {"old": old, "id": ids[name]})
        connection.execute(sa.text("UPDATE event_outbox SET time = :old WHERE id = :id"),
                           {"old": old, "id": ids["undispatched"]})
        delivery = connection.execute(sa.text("SELECT id FROM automation_deliveries WHERE event_id = :id"),
                                      {"id": ids["delivered"]}).scalar()
        connection.execute(sa.text("INSERT INTO automation_attempts (delivery_id, attempt, time, status, duration) "
                                   "VALUES (:d, 1, :t, 200, 0.1)"), {"d": delivery, "t": old})

    assert worker.prune(now=now, batch=1) == 5  # 3 old finished deliveries, then 2 events without any
    with store.engine.connect() as connection:
        kept = {row.subject for row in connection.execute(sa.text("SELECT subject FROM event_outbox"))}
        delivered = {row.subject for row in connection.execute(sa.text(
            "SELECT e.subject FROM automation_deliveries d JOIN event_outbox e ON e.id = d.event_id"))}
        attempts = connection.execute(sa.text("SELECT count(*) FROM automation_attempts")).scalar()
    assert kept == {"p/pending", "p/dedupe", "p/recent", "p/undispatched"}
    assert delivered == {"p/pending", "p/recent"}
    assert attempts == 0
    assert worker.prune(now=now) == 0
    # The dedupe key still holds: the event is not derived again.
    assert events.emit(store.engine, "run.finished", "p/dedupe", {}, dedupe="run.finished:p/kept") is None
    store.close()


def _delivery_processes(server) -> list:
    import psutil

    return [child for child in psutil.Process(server.proc.pid).children()
            if "spawn_main" in " ".join(child.cmdline())]


@pytest.mark.parametrize("ending", ["terminate", "kill"])
def test_tracklet_server_delivers_from_a_process_of_its_own_that_ends_with_the_server(servers, tmp_path, receiver,
                                                                                       ending):
    """`tracklet server` sends webhooks from a child process (no request thread or GIL of the
    server's is spent on a delivery), started once a rule exists and woken as events are written,
    and that process never outlives the server: a stopped server's, and a killed one's (the pipe it
    waits on closes), exit."""
    import psutil

    hook = receiver()
    server = servers(tmp_path / "srv", extra=("--webhook-retry-base", "0.2"))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/api/v1/health").status_code == 200
        assert _delivery_processes(server) == []  # no rule, nothing to deliver: no second interpreter
        assert http.post("/api/v1/automations", json={"name": "all", "event": "*", "url": f"{hook.url}/all",
                                                      "secret": SECRET}).status_code == 201
        data = tmp_path / "data.txt"
        data.write_text("rows\n")
        run = tracklet.init(project="p", id="r1", dir=str(tmp_path / "client"), mode="online",
                            settings={**QUIET, "base_url": server.url})
        artifact = tracklet.Artifact("dataset", type="dataset")
        artifact.add_file(str(data))
        run.log_artifact(artifact)
        artifact.wait()
        run.finish()
    wait_for(lambda: {request["event"] for request in hook.delivered("/all")} >= {"artifact.version", "run.finished"},
             "the webhooks, from the delivery process")
    (deliverer,) = _delivery_processes(server)
    assert all(request["verified"] for request in hook.requests)
    assert deliverer.is_running() and deliverer.pid != server.proc.pid
    server.stop() if ending == "terminate" else server.kill()
    try:
        deliverer.wait(timeout=30)
    except psutil.TimeoutExpired:
        deliverer.kill()
        raise AssertionError(f"the delivery process outlived its server ({ending})") from None
