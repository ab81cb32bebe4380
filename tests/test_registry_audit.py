"""A registry change and its audit event commit together (server/audit.py ``record_in``, written in
the change's own transaction through ``ModelRegistry(on_write=...)``): no change without its event,
no "ok" event for a change that rolled back, and still exactly one event per request. Failures are
real: SQLite triggers on the server's own database refuse the inserts."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from conftest import QUIET

import tracklet

NET = "/api/v1/registries/model/collections/net"


@pytest.fixture
def server(servers, tmp_path):
    server = servers(tmp_path / "server", dev=True)
    run = tracklet.init(project="train", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name="net", aliases=["staging"] if weights == b"one" else None)
    run.finish()
    return server, tmp_path / "server" / "store.sqlite"


def _events(client: httpx.Client, action: str) -> list[tuple[int, str]]:
    found = client.get("/api/v1/audit", params={"action": action, "order": "asc"}).json()["events"]
    return [(event["status"], event["outcome"]) for event in found]


def _sql(database, statement: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(statement).fetchall()


def test_an_alias_move_never_commits_without_its_audit_event(server):
    server, database = server
    _sql(database, "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events WHEN NEW.action = 'set_alias' "
                   "BEGIN SELECT RAISE(ABORT, 'the audit log is unavailable'); END")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        moved = client.put(NET + "/aliases/staging", json={"version": "v1", "reason": "try v1"})
        assert moved.status_code == 503
        assert "the audit log is unavailable" in moved.json()["detail"]
        assert client.get(NET + "/versions/staging").json()["link"]["version"] == 0  # not moved
        assert [e["to_version"] for e in client.get(NET + "/history").json()["events"]] == [0]
        assert _sql(database, "SELECT count(*) FROM event_outbox WHERE kind = 'alias.moved' "
                              "AND subject = 'model/net:staging'") == [(1,)]  # the first link's only
        assert _events(client, "set_alias") == []  # nothing could be written: and nothing changed
        _sql(database, "DROP TRIGGER no_audit")
        assert client.put(NET + "/aliases/staging", json={"version": "v1"}).status_code == 200
        assert client.get(NET + "/versions/staging").json()["link"]["version"] == 1
        assert _events(client, "set_alias") == [(200, "ok")]


def test_a_change_that_rolls_back_has_only_its_failures_event(server):
    """The outbox refuses the change's event: the change, its event and its in-transaction audit
    event roll back together; the one audit event is the 500 the client got."""
    server, database = server
    _sql(database, "CREATE TRIGGER no_outbox BEFORE INSERT ON event_outbox WHEN NEW.kind = 'alias.moved' "
                   "BEGIN SELECT RAISE(ABORT, 'the outbox is full'); END")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.put(NET + "/aliases/staging", json={"version": "v1"}).status_code == 503
        assert client.get(NET + "/versions/staging").json()["link"]["version"] == 0
        assert _events(client, "set_alias") == [(503, "error")]


def test_every_registry_change_has_exactly_one_event_with_the_status_answered(server):
    server, _ = server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [
            ("set_alias", client.put(NET + "/aliases/production", json={"version": "v0"})),
            ("protect", client.put(NET + "/protections/production", json={"approvals": 1})),
            ("set_alias", client.put(NET + "/aliases/production", json={"version": "v1"})),  # opens a request
            ("save_card", client.put(NET + "/versions/v1/card", json={"text": "# net"})),
            ("remove_alias", client.delete(NET + "/aliases/staging")),
            ("remove_alias", client.delete(NET + "/aliases/production")),  # protected: refused
            ("save_aliases", client.post(NET + "/versions/v1/aliases", json={"add": ["canary"]})),
            ("save_aliases", client.post(NET + "/versions/v1/aliases",  # opens nothing new: names #1
                                         json={"add": ["production", "best"], "remove": ["canary"]})),
        ]
        assert [(action, answer.status_code) for action, answer in answers] == [
            ("set_alias", 200), ("protect", 200), ("set_alias", 409), ("save_card", 200), ("remove_alias", 200),
            ("remove_alias", 409), ("save_aliases", 200), ("save_aliases", 409)]
        assert "promotion request #1 " in answers[-1][1].json()["detail"]
        assert client.get(NET + "/versions/canary").json()["link"]["version"] == 1  # the refused save moved nothing
        for action in ("set_alias", "protect", "save_card", "remove_alias", "save_aliases"):
            expected = [(answer.status_code, "ok" if answer.status_code < 400 else "rejected")
                        for name, answer in answers if name == action]
            assert _events(client, action) == expected, action
