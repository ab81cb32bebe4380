"""Every route's change commits with its audit event or not at all (server/audit.py
``install_unit_of_work``: the request's first writing transaction on the server's database carries
its event). Failures are real: a SQLite trigger on a real `tracklet server`'s database refuses the
event of a change (status < 400), so the change must roll back and the client get a 503, whose own
event (the middleware's) is the request's one event."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
from test_audit import _bearer, _events, keyed_server  # noqa: F401  (a fixture)

from tracklet.store import Store

# (action, method, path, body, SQL counting what the change adds)
CHANGES = [
    ("create_user", "POST", "/api/v1/users", {"name": "carol"}, "SELECT count(*) FROM users WHERE name = 'carol'"),
    ("create_key", "POST", "/api/v1/keys", {"label": "ci"}, "SELECT count(*) FROM api_keys WHERE label = 'ci'"),
    ("set_member", "PUT", "/api/v1/projects/p/members/bob", {"role": "write"},
     "SELECT count(*) FROM project_members m JOIN users u ON u.id = m.user_id WHERE u.name = 'bob'"),
    ("create_automation", "POST", "/api/v1/automations",
     {"name": "hook", "event": "run.finished", "action": "webhook", "url": "http://127.0.0.1:9/x"},
     "SELECT count(*) FROM automations WHERE name = 'hook'"),
    ("create_report", "POST", "/api/v1/projects/p/reports", {"title": "weekly", "markdown": "# hi"},
     "SELECT count(*) FROM reports WHERE title = 'weekly'"),
    ("disable_user", "DELETE", "/api/v1/users/bob", None, "SELECT count(*) FROM users WHERE name = 'bob' AND disabled"),
]


def _sql(database, statement: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(statement).fetchall()


def test_a_failing_audit_insert_rolls_back_each_routes_change(keyed_server):  # noqa: F811
    server = keyed_server
    if not server.store_url.startswith("sqlite"):
        return  # the trigger below is SQLite's (the PostgreSQL walk is test_audit's property test)
    database = server.store_url.removeprefix("sqlite:///")
    Store(server.store_url).add_project("p")
    key = server.admin_key
    with httpx.Client(base_url=server.url, timeout=30, headers=_bearer(key)) as http:
        assert http.post("/api/v1/users", json={"name": "bob"}).status_code == 200  # the member routes' user
        _sql(database, "CREATE TRIGGER no_ok_audit BEFORE INSERT ON audit_events WHEN NEW.status < 400 "
                       "BEGIN SELECT RAISE(ABORT, 'the audit log is unavailable'); END")
        for action, method, path, body, count in CHANGES:
            before = _sql(database, count)
            answer = http.request(method, path, json=body)
            assert answer.status_code == 503, (action, answer.status_code, answer.text)
            assert "its audit event could not be written" in answer.json()["detail"]
            assert _sql(database, count) == before, f"{action} committed without its audit event"
        _sql(database, "DROP TRIGGER no_ok_audit")
        for action, method, path, body, count in CHANGES:
            answer = http.request(method, path, json=body)
            assert answer.status_code < 300, (action, answer.text)
            assert _sql(database, count)[0][0] >= 1, action
            events = [(e["status"], e["outcome"]) for e in _events(http, key, action=action)]
            if action == "create_user":
                events = events[1:]  # bob's, made before the trigger
            assert events == [(503, "error"), (answer.status_code, "ok")], action


def test_an_event_whose_commit_fails_is_not_counted_as_written(tmp_path):
    """The request's written ids name only events that committed: a COMMIT that fails after the
    event's insert (a deferred constraint here, real SQLite) takes the id out, so the middleware
    writes the event of the answer instead of trusting a lost one."""
    import sqlalchemy as sa
    from fastapi import FastAPI

    from tracklet.server import audit

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    audit.AuditLog(store.engine)
    audit.install_unit_of_work(FastAPI(), store.engine)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
                                   "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")

    class Route:
        name, status_code = "make_child", 201

    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/api/v1/children", "route": Route(), "headers": [],
             "state": {"audit_armed": True}}
    token = audit._REQUEST_SCOPE.set(scope)
    try:
        with store.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
            try:
                with connection.begin():
                    connection.exec_driver_sql("INSERT INTO child VALUES (1, 99)")  # no parent 99: COMMIT fails
            except sa.exc.IntegrityError:
                pass
        # (closing the connection rolled the failed transaction back: SQLite keeps it open after such a COMMIT)
        assert scope["state"]["audit_in_tx"] == []  # inserted, then lost with its transaction
        with store.engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO parent VALUES (99)")
        (event_id,) = scope["state"]["audit_in_tx"]  # the next writing transaction carried it
    finally:
        audit._REQUEST_SCOPE.reset(token)
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, action, status FROM audit_events")).all()
    assert rows == [(event_id, "make_child", 201)]
