"""A webhook check as an approval condition (server/registry_checks.py): against a real local HTTP
server, the approval that would complete a promotion first asks the check, signed like an
automation; only a 2xx lets the alias move, anything else leaves the request pending with nothing
recorded and says why."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import httpx
import pytest
import serverproc
from conftest import QUIET

import tracklet

NET = "/registries/model/collections/net"


class Receiver:
    """A real HTTP server on loopback: answers ``status`` and keeps each request it got."""

    def __init__(self) -> None:
        self.status = 503
        self.delay = 0.0  # seconds before answering
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay)
                answer = b"model regressed on the canary set" if receiver.status >= 400 else b"ok"
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # the server gave up waiting (its timeout)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/check"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.close()


@pytest.fixture
def deployment(servers, tmp_path, receiver):
    """root (server admin) made a webhook automation to `receiver`; alice linked model/net:v0
    (production) and v1 and is the registry's admin; bob and carol are admins too."""
    created = serverproc.cli("admin", "--dir", str(tmp_path / "server"), "create-user", "root", "--admin", timeout=60)
    created.check_returncode()
    server = servers(tmp_path / "server", dev=False)
    root = httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {created.stdout.strip()}"})
    keys = {name: root.post("/users", json={"name": name}).json()["key"] for name in ("alice", "bob", "carol")}
    rule = root.post("/automations", json={"name": "canary", "event": "promotion.check", "action": "webhook",
                                           "url": receiver.url, "secret": "s3cret"}).json()
    slack = root.post("/automations", json={"name": "chat", "event": "run.alert", "action": "slack",
                                            "url": receiver.url}).json()
    run = tracklet.init(project="train", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name="net", aliases=["production"] if weights == b"one" else None)
    run.finish()
    clients = {name: httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"})
               for name, key in keys.items()}
    for name in ("bob", "carol"):
        assert clients["alice"].put(f"/registries/model/members/{name}", json={"role": "admin"}).status_code == 200
    yield root, clients, rule["id"], slack["id"]
    for client in (root, *clients.values()):
        client.close()


def _request(alice: httpx.Client) -> int:
    opened = alice.put(NET + "/aliases/production", json={"version": "v1", "reason": "ship v1"})
    assert opened.status_code == 409, opened.text
    return int(opened.json()["detail"].split("#")[1].split(" ")[0])


def test_a_promotion_moves_only_after_its_webhook_check_answers_ok(deployment, receiver):
    root, users, rule_id, _ = deployment
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    protected = alice.put(NET + "/protections/production", json={"approvals": 2, "check": rule_id})
    assert protected.json() == {"alias": "production", "approvals": 2, "check": rule_id, "check_timeout": 10.0, "approver_role": "admin"}
    assert alice.get(NET + "/protections").json() == {"protections": [
        {"alias": "production", "approvals": 2, "check": rule_id, "check_timeout": 10.0, "approver_role": "admin"}]}
    request_id = _request(alice)

    # The first of two approvals completes nothing: no check is asked.
    assert bob.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve"}).status_code == 200
    assert receiver.got == []

    # The second would move the alias: the check answers 503, so nothing happens and the reason is said.
    refused = carol.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve", "comment": "ok"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (f"promotion request #{request_id} stays pending: its check failed (canary: "
                                        "HTTP 503: model regressed on the canary set); approve again once it passes")
    state = alice.get("/registry-requests").json()["requests"]
    assert [(r["id"], r["state"], [v["reviewer"] for v in r["reviews"]]) for r in state] == [
        (request_id, "pending", ["bob"])]  # carol's approval was not recorded
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 0

    # What the check got: signed with the rule's secret, the request as its payload.
    headers, body = receiver.got[0]
    expected = hmac.new(b"s3cret", headers["x-tracklet-timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["x-tracklet-signature"] == "sha256=" + expected
    assert headers["x-tracklet-event"] == "promotion.check"
    document = json.loads(body)
    assert document["automation"] == "canary" and document["event"]["actor"] == "carol"
    assert document["event"]["subject"] == "model/net:production"
    payload = document["event"]["payload"]
    assert (payload["id"], payload["from_version"], payload["to_version"], payload["requester"]) == (
        request_id, 0, 1, "alice")

    # Once the check passes, the same approval goes through and the alias moves.
    receiver.status = 200
    approved = carol.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve", "comment": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["request"]["state"] == "approved"
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 1
    assert len(receiver.got) == 2

    # The audit log says what the check answered, for the refusal and the approval.
    events = root.get("/audit", params={"action": "review", "order": "asc"}).json()["events"]
    assert [(e["status"], (e["detail"] or {}).get("check"), (e["detail"] or {}).get("check_passed")) for e in events] == [
        (200, None, None), (409, "canary: HTTP 503: model regressed on the canary set", False),
        (200, "canary: HTTP 200", True)]


def test_an_unreachable_check_refuses_and_a_rejection_needs_no_check(deployment, receiver):
    root, users, rule_id, _ = deployment
    alice, bob = users["alice"], users["bob"]
    assert alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id}).status_code == 200
    receiver.close()  # nothing listens there any more
    request_id = _request(alice)
    refused = bob.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve"})
    assert refused.status_code == 409 and "its check failed (canary: ConnectError" in refused.json()["detail"]
    rejected = bob.post(f"/registry-requests/{request_id}/reviews", json={"decision": "reject", "comment": "no"})
    assert rejected.status_code == 200 and rejected.json()["request"]["state"] == "rejected"
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 0


def test_a_check_must_be_a_webhook_automation_on_a_protected_alias(deployment, receiver):
    root, users, rule_id, slack_id = deployment
    alice = users["alice"]
    for body, detail in (({"approvals": 1, "check": slack_id}, f"automation #{slack_id} (chat) is a slack rule: a "
                          "check must be a webhook"),
                         ({"approvals": 1, "check": 999}, "no automation #999 to check promotions with"),
                         ({"approvals": 0, "check": rule_id}, "a check guards promotions: it needs approvals of at "
                          "least 1")):
        answer = alice.put(NET + "/protections/production", json=body)
        assert (answer.status_code, answer.json()["detail"]) == (400, detail)
    # Lifting the protection lifts its check: the alias moves at once, asking nobody.
    assert alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id}).status_code == 200
    assert alice.put(NET + "/protections/production", json={"approvals": 0}).status_code == 200
    assert alice.put(NET + "/aliases/production", json={"version": "v1"}).status_code == 200
    assert receiver.got == []


def test_each_check_has_its_own_bounded_timeout(deployment, receiver):
    """A check answering after its protection's timeout fails the approval (nothing recorded); the
    timeout is listed with the protection, defaults to 10 s, and out-of-bounds values are refused."""
    root, users, rule_id, _ = deployment
    alice, bob = users["alice"], users["bob"]
    for timeout in (0.1, 121, "soon", True):
        refused = alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id,
                                                                     "check_timeout": timeout})
        assert refused.status_code == 422, (timeout, refused.text)
    assert alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id}).status_code == 200
    assert alice.get(NET + "/protections").json()["protections"] == [
        {"alias": "production", "approvals": 1, "check": rule_id, "check_timeout": 10.0, "approver_role": "admin"}]
    set_ = alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id, "check_timeout": 0.5})
    assert set_.status_code == 200 and set_.json()["check_timeout"] == 0.5
    assert alice.get(NET + "/protections").json()["protections"][0]["check_timeout"] == 0.5
    receiver.status, receiver.delay = 200, 3.0  # a 2xx, but after the check's 0.5 s
    request_id = _request(alice)
    late = bob.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve"})
    assert late.status_code == 409 and "its check failed (canary: ReadTimeout" in late.json()["detail"], late.text
    assert alice.get("/registry-requests?state=pending").json()["requests"][0]["reviews"] == []
    receiver.delay = 0.0
    assert alice.put(NET + "/protections/production", json={"approvals": 1, "check": rule_id,
                                                             "check_timeout": 5}).status_code == 200
    request_id = _request(alice)
    assert bob.post(f"/registry-requests/{request_id}/reviews", json={"decision": "approve"}).status_code == 200
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 1


def test_the_migration_keeps_existing_checks_at_ten_seconds(tmp_path):
    """A database at s0009 with a check: after s0010 the check has its own timeout column, 10 s."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from tracklet.server import schema as server_schema
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    config = Config()
    config.set_main_option("script_location", str(server_schema.MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "s0009")
        connection.execute(sa.text("INSERT INTO automations (id, name, event, filter, action, url, secret, created_at) "
                                   "VALUES (1, 'canary', 'promotion.check', '{}', 'webhook', 'http://x', 's', 0)"))
        connection.execute(sa.text("INSERT INTO registry_checks VALUES ('model', 'net', 'production', 1)"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "s0010")
        assert connection.execute(sa.text("SELECT alias, automation_id, timeout FROM registry_checks")).all() == [
            ("production", 1, 10.0)]
