"""The audit log (docs/audit.md) on real `tracklet server` processes (SQLite and PostgreSQL): every
mutating route of the app writes exactly one audit event, whatever its outcome, and a route added
later is audited without being told; events say who, what, when, from where and how it ended; the
log is append-only in the database; only server admins read it, over HTTP and `tracklet audit`,
with filters and cursor pagination."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET
from fastapi import routing
from fastapi.routing import APIRoute

import tracklet
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.server.audit import MUTATING
from tracklet.store import Store

# A value for each path parameter a route may have (none of them exists: the calls may fail, and
# are audited all the same).
SAMPLES = {"project": "p", "run_id": "r", "name": "model", "digest": "0" * 64, "upload_id": "u", "number": "1",
           "key_id": "nokey", "user": "nobody", "automation_id": "999999"}


def mutating_routes(app) -> list[tuple[str, str, APIRoute]]:
    """(method, path template, route) for every POST/PUT/PATCH/DELETE route of ``app`` (newer
    FastAPI keeps included routers lazy in ``app.routes``: ``iter_route_contexts`` walks them)."""
    contexts = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    found = []
    for context in contexts:
        route = getattr(context, "original_route", context)
        if isinstance(route, APIRoute):
            found += [(method, context.path, route) for method in route.methods & MUTATING]
    return sorted(found, key=lambda item: (item[1], item[0]))


def _concrete(path: str) -> str:
    def value(match: re.Match) -> str:
        name, convertor = match.group(1), match.group(2)
        if convertor == ":path":
            return "some/file.txt"
        return SAMPLES.get(name, "1" if convertor == ":int" else "x1")  # a route added later: any value

    return re.sub(r"{(\w+)(:\w+)?}", value, path)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, env=env)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _keyed(servers, root, store: str | None):
    """A server that needs keys, its admin `root` made with `tracklet admin create-user` first."""
    created = _cli("admin", "--dir", str(root), *(["--store", store] if store else []), "create-user", "root",
                   "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(root, store=store, dev=False)
    server.admin_key = created.stdout.strip()
    server.store_url = store or f"sqlite:///{root / 'store.sqlite'}"
    return server


@pytest.fixture(scope="module")
def keyed_server(module_store, module_servers, tmp_path_factory):
    """One keyed server per backend for the module's tests: each reads only the events written since it
    began (``_events_since``) and uses users and projects of its own."""
    return _keyed(module_servers, tmp_path_factory.mktemp("srv"), module_store)


@pytest.fixture(params=["sqlite", "postgresql"])
def own_keyed_server(request, tmp_path, servers):
    """A keyed server of the test's own: for a test of the whole log (every event, every page)."""
    return _keyed(servers, tmp_path / "srv", None if request.param == "sqlite" else request.getfixturevalue("pg_url"))


def _events(http: httpx.Client, key: str, **params) -> list[dict]:
    response = http.get("/api/v1/audit", params={"limit": 10_000, **params}, headers=_bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def _last_id(http: httpx.Client, key: str) -> int | None:
    events = _events(http, key, order="desc", limit=1)
    return events[0]["id"] if events else None


def _events_since(http: httpx.Client, key: str, last: int | None, **params) -> list[dict]:
    """The events after event ``last`` (``_last_id`` before the test's requests; every event if None)."""
    return _events(http, key, **({} if last is None else {"after": last}), **params)


def test_every_mutating_route_writes_exactly_one_audit_event(keyed_server, tmp_path):
    from tracklet.server.app import create_app

    routes = mutating_routes(create_app(tmp_path / "walk", index_on_start=False))
    names = [route.name for _, _, route in routes]
    # The walk finds the routes we know of (it would miss nothing silently), each action names one route.
    assert {"put_log", "put_file", "commit_version", "put_blob", "create_key", "revoke_key", "create_user",
            "disable_user", "set_member", "remove_member", "create_automation", "remove_automation"} <= set(names)
    assert len(set(names)) == len(names)
    key = keyed_server.admin_key
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        start = _last_id(http, key)
        for method, path, route in routes:
            before = _last_id(http, key)
            target = _concrete(path)
            response = http.request(method, target, content=b"{}", headers={**_bearer(key),
                                                                             "Content-Type": "application/json"})
            written = _events_since(http, key, before)
            assert len(written) == 1, (method, path, response.status_code, written)
            (event,) = written
            assert event["action"] == route.name and event["method"] == method
            assert event["target"] == target.removeprefix("/api/v1/")
            assert event["status"] == response.status_code, (method, path)
            assert event["actor"] == "root" and event["key_id"] == key.split("_")[1]
            assert event["client"] == "127.0.0.1"
            assert event["project"] == ("p" if "{project}" in path else None)
        # Reads are not audited: the audit queries above wrote nothing themselves.
        assert len(_events_since(http, key, start)) == len(routes)
    # Each intent (the routes that change files commit one first) ended with its request's event.
    with Store(keyed_server.store_url).engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM audit_intents")).scalar() == 0


def test_a_route_added_later_is_audited_without_being_told(tmp_path):
    """The middleware audits by method and route, so a new mutating route needs no audit code; and
    the walk above enumerates it, so its test covers it too."""
    from fastapi import Depends
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app, require_access

    app = create_app(tmp_path / "srv", index_on_start=False, auth=False)

    @app.post("/api/v1/projects/{project}/novelty", dependencies=[Depends(require_access)])
    def novelty(project: str) -> dict:
        return {"ok": True}

    assert ("POST", "/api/v1/projects/{project}/novelty") in [(m, p) for m, p, _ in mutating_routes(app)]
    with TestClient(app) as client:
        assert client.post("/api/v1/projects/p/novelty").status_code == 200
        events = client.get("/api/v1/audit").json()["events"]
    assert [(e["action"], e["target"], e["project"], e["outcome"]) for e in events] == [
        ("novelty", "projects/p/novelty", "p", "ok")]


def test_events_say_who_what_from_where_and_the_outcome(keyed_server, root):
    server = keyed_server
    admin = server.admin_key
    with httpx.Client(base_url=server.url, timeout=30) as http:
        start = _last_id(http, admin)
        bob = http.post("/api/v1/users", json={"name": "bob"}, headers=_bearer(admin)).json()
        run = tracklet.init(project="vision", id="r1", dir=str(root), settings=QUIET)
        run.log({"loss": 1.0})
        run.finish()
        with SyncClient(server.url, api_key=admin) as client:
            client.sync_run(RunPaths(root, "vision", "r1"))
        # Bob may not manage vision's members: denied, and audited as his.
        assert http.put("/api/v1/projects/vision/members/bob", json={"role": "admin"},
                        headers=_bearer(bob["key"])).status_code == 403
        # A wrong secret for a real key id: 401, audited with the key id claimed, never the secret.
        forged = f"tlk_{bob['key_id']}_{'x' * 43}"
        assert http.post("/api/v1/keys", json={"label": "mine"}, headers=_bearer(forged)).status_code == 401
        assert http.put("/api/v1/projects/vision/members/bob", json={"role": "write"},
                        headers=_bearer(admin)).status_code == 204
        events = _events_since(http, admin, start)
    summary = [(e["actor"], e["action"], e["target"], e["status"], e["outcome"]) for e in events]
    assert summary[0] == ("root", "create_user", "users", 200, "ok")
    assert ("root", "put_log", "runs/vision/r1/log", 200, "ok") in summary
    assert summary[-3:] == [("bob", "set_member", "projects/vision/members/bob", 403, "denied"),
                            (None, "create_key", "keys", 401, "denied"),
                            ("root", "set_member", "projects/vision/members/bob", 204, "ok")]
    assert events[-2]["detail"] == {"claimed_key_id": bob["key_id"]}
    assert all(e["client"] == "127.0.0.1" and e["time"] > 0 for e in events)
    assert "x" * 43 not in json.dumps(events) and bob["key"] not in json.dumps(events)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def _random_sweep(server, project: str) -> str:
    """A random-search sweep on ``server`` in ``project``: its routes' base path."""
    pytest.importorskip("optuna")
    from tracklet.sweeps.remote import create_remote_sweep

    config = {"method": "random", "metric": {"name": "f"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweep = create_remote_sweep(server.url, config, project=project, api_key=server.admin_key)["id"]
    return f"/api/v1/projects/{project}/sweeps/{sweep}"


def test_routine_heartbeats_write_no_event_a_lapsed_lease_and_the_state_changes_do(keyed_server):
    """A sweep agent renews its lease once a second (64 agents: 5.5M events a day in an
    append-only table): a heartbeat that only renews is a routine call (``audit.ROUTINE``) and
    writes no event. What changes state still does: the lease granted (next), a heartbeat that
    finds its lease lapsed, a refused heartbeat, the trial's end (tell), the sweep paused."""
    key = keyed_server.admin_key
    base = _random_sweep(keyed_server, "beats")
    with httpx.Client(base_url=keyed_server.url, timeout=30, headers=_bearer(key)) as http:
        start = _last_id(http, key)
        lease = http.post(f"{base}/next", json={"agent": "a", "ttl": 60}).json()["lease"]
        granted = _last_id(http, key)
        for _ in range(30):
            beat = http.post(f"{base}/heartbeat", json={"trial": lease["trial"], "agent": "a", "ttl": 60})
            assert beat.json() == {"alive": True, "stop": None}
        assert _events(http, key, after=granted) == []  # 30 renewals, no event
        short = http.post(f"{base}/next", json={"agent": "b", "ttl": 0.2}).json()["lease"]
        time.sleep(0.5)  # b's lease lapses
        beat = http.post(f"{base}/heartbeat", json={"trial": short["trial"], "agent": "b", "ttl": 0.2})
        assert beat.json() == {"alive": False, "stop": "lost"}
        refused = http.post(f"{base}/heartbeat", json={"trial": lease["trial"], "agent": "a", "ttl": 60},
                            headers=_bearer(f"tlk_nokey_{'x' * 43}"))
        assert refused.status_code == 401
        assert http.post(f"{base}/tell", json={"trial": lease["trial"], "agent": "a", "values": [0.5]}).status_code == 200
        assert http.post(f"{base}/control", json={"state": "paused"}).status_code == 200
        events = _events(http, key, after=start)
    assert [(e["action"], e["status"], (e["detail"] or {}).get("change")) for e in events] == [
        ("next_trial", 200, "lease granted"), ("next_trial", 200, "lease granted"), ("heartbeat", 200, "lease lost"),
        ("heartbeat", 401, None), ("tell", 200, "leases lapsed"), ("control", 200, None)]
    assert events[2]["detail"] == {"change": "lease lost", "trial": short["trial"]}
    # the tell failed b's lapsed lease (the first call to reap it): its event names the trial
    assert events[4]["detail"] == {"change": "leases lapsed", "lapsed": [short["trial"]]}


def test_polling_next_writes_no_event_a_poll_that_grants_or_fails_a_lapsed_lease_does(keyed_server):
    """Agents poll `next` at their poll interval while a sweep is paused or its run cap is reached
    (answered `wait`): a routine call (``audit.ROUTINE``), so polls that change nothing write no
    event. A poll that grants a lease writes one, as does the poll that fails lapsed leases (agents
    killed): its detail names the trials that lapsed."""
    key = keyed_server.admin_key
    base = _random_sweep(keyed_server, "polls")
    with httpx.Client(base_url=keyed_server.url, timeout=30, headers=_bearer(key)) as http:
        leases = [http.post(f"{base}/next", json={"agent": agent, "ttl": 0.3}).json()["lease"] for agent in "ab"]
        assert http.post(f"{base}/control", json={"state": "paused"}).status_code == 200
        paused = _last_id(http, key)
        time.sleep(0.6)  # a's and b's leases lapse: their agents were killed
        first = http.post(f"{base}/next", json={"agent": "c", "ttl": 60}).json()
        assert first["kind"] == "wait"
        reaped = _events(http, key, after=paused)
        assert [(e["action"], e["status"], e["detail"]) for e in reaped] == [
            ("next_trial", 200, {"change": "leases lapsed", "lapsed": sorted(lease["trial"] for lease in leases)})]
        for _ in range(20):  # polls of the paused sweep
            assert http.post(f"{base}/next", json={"agent": "c", "ttl": 60}).json()["kind"] == "wait"
        assert _events(http, key, after=reaped[-1]["id"]) == []
        assert http.post(f"{base}/control", json={"state": "running", "run_cap": 1}).status_code == 200
        resumed = _last_id(http, key)
        lease = http.post(f"{base}/next", json={"agent": "c", "ttl": 60}).json()["lease"]
        for _ in range(20):  # the run cap is reached (lapsed trials do not count): wait for c's trial
            assert http.post(f"{base}/next", json={"agent": "d", "ttl": 60}).json()["kind"] == "wait"
        events = _events(http, key, after=resumed)
    assert [(e["action"], e["detail"]) for e in events] == [
        ("next_trial", {"change": "lease granted", "trial": lease["trial"]})]


def test_only_server_admins_read_the_audit_log(keyed_server):
    server = keyed_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        alice = http.post("/api/v1/users", json={"name": "alice"}, headers=_bearer(server.admin_key)).json()
        for path in ("/api/v1/audit", "/api/v1/automations"):
            assert http.get(path).status_code == 401
            refused = http.get(path, headers=_bearer(alice["key"]))
            assert refused.status_code == 403 and "not a server admin" in refused.json()["detail"]
            assert http.get(path, headers=_bearer(server.admin_key)).status_code == 200
    listed = _cli("audit", "ls", "--url", server.url, env={"TRACKLET_API_KEY": alice["key"]})
    assert listed.returncode == 2 and "403" in listed.stderr


def test_filters_pagination_and_export_over_http_and_the_cli(own_keyed_server, tmp_path):
    server = own_keyed_server
    admin = server.admin_key
    with httpx.Client(base_url=server.url, timeout=30) as http:
        users = [http.post("/api/v1/users", json={"name": f"u{i}"}, headers=_bearer(admin)).json() for i in range(3)]
        middle = time.time()
        for user in users:
            assert http.put(f"/api/v1/projects/p{user['user']}/members/{user['user']}", json={"role": "read"},
                            headers=_bearer(admin)).status_code == 204
            assert http.post("/api/v1/keys", json={"label": "more"}, headers=_bearer(user["key"])).status_code == 200
        everything = _events(http, admin)
        assert len(everything) == 9
        assert [e["actor"] for e in _events(http, admin, actor="u1")] == ["u1"]
        assert {e["action"] for e in _events(http, admin, action="set_member")} == {"set_member"}
        assert [e["target"] for e in _events(http, admin, target="projects/pu2/")] == ["projects/pu2/members/u2"]
        assert [e["project"] for e in _events(http, admin, project="pu0")] == ["pu0"]
        assert len(_events(http, admin, since=middle)) == 6
        assert len(_events(http, admin, until=middle)) == 3
        assert _events(http, admin, target="projects/pu2/", since=middle, actor="u2") == []
        # Pages of two, by cursor, oldest first and newest first: every event once, in order.
        for order, expected in (("asc", everything), ("desc", everything[::-1])):
            seen, after = [], None
            while True:
                page = http.get("/api/v1/audit", params={"limit": 2, "order": order,
                                                         **({"after": after} if after else {})},
                                headers=_bearer(admin)).json()
                seen += page["events"]
                after = page["next_after"]
                if after is None:
                    break
            assert seen == expected
    env = {"TRACKLET_API_KEY": admin}
    out = tmp_path / "audit.jsonl"
    done = _cli("audit", "export", "--url", server.url, "--actor", "u0", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["actor"] for line in out.read_text().splitlines()] == ["u0"]
    whole = _cli("audit", "export", "--url", server.url, env=env)  # to standard output, every event
    assert [json.loads(line) for line in whole.stdout.splitlines()] == everything
    listed = _cli("audit", "ls", "--url", server.url, "--action", "set_member", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["target"] for line in listed.stdout.splitlines()] == [
        "projects/pu2/members/u2", "projects/pu1/members/u1", "projects/pu0/members/u0"]  # newest first
    table = _cli("audit", "ls", "--url", server.url, "--since", "1970-01-01T00:00", "--limit", "1", env=env)
    assert table.returncode == 0 and "create_key" in table.stdout and "u2" in table.stdout


def test_the_audit_log_is_append_only_in_the_database(keyed_server):
    server = keyed_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        start = _last_id(http, server.admin_key)
        http.post("/api/v1/users", json={"name": "carol"}, headers=_bearer(server.admin_key))
    store = Store(server.store_url, root=server.root)
    table = sa.text("SELECT id, actor, action, target FROM audit_events ORDER BY id")
    with store.engine.connect() as connection:
        before = connection.execute(table).all()
    assert [(actor, action, target) for n, actor, action, target in before if start is None or n > start] == [
        ("root", "create_user", "users")]
    statements = ["UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"]
    if store.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(sa.text(statement))
    with store.engine.connect() as connection:
        assert connection.execute(table).all() == before  # every event as it was
    store.close()


def test_every_filter_and_page_agrees_with_reading_the_whole_log(store_url, tmp_path):
    """The query's two paths (a window read in order, then the prefix's index) give exactly what
    filtering every event would, page after page, both orders, on both backends (a small window so
    both paths run)."""
    import random

    from tracklet.server.audit import AuditLog, AuditQuery

    store = Store(store_url, root=tmp_path)
    log = AuditLog(store.engine, scan_window=7)
    rng = random.Random(5)
    for n in range(160):
        project = rng.choice(["a", "b", "ab", "c"])
        log.record(time=1000.0 + n + rng.random() * 3, actor=rng.choice(["u1", "u2", None]), key_id=None,
                   action=rng.choice(["put_log", "set_member", "create_key"]), method="PUT",
                   target=f"projects/{project}/{rng.choice(['members', 'runs'])}/{n}", project=project,
                   client="127.0.0.1", status=rng.choice([200, 403, 500]), outcome="ok", detail=None)
    everything = log.query(AuditQuery(limit=1000))
    assert len(everything) == 160
    # In time order (the times were made out of id order), ties by id.
    assert [(e["time"], e["id"]) for e in everything] == sorted((e["time"], e["id"]) for e in everything)
    assert [e["id"] for e in everything] != sorted(e["id"] for e in everything)

    def expected(query: AuditQuery) -> list[dict]:
        rows = [e for e in everything
                if (query.actor is None or e["actor"] == query.actor)
                and (query.action is None or e["action"] == query.action)
                and (query.project is None or e["project"] == query.project)
                and (not query.target_prefix or e["target"].startswith(query.target_prefix))
                and (query.since is None or e["time"] >= query.since)
                and (query.until is None or e["time"] < query.until)]
        return rows[::-1] if query.newest_first else rows

    for _ in range(60):
        since = rng.choice([None, 1000.0 + rng.randrange(160)])
        query = AuditQuery(actor=rng.choice([None, "u1"]), action=rng.choice([None, "put_log"]),
                           project=rng.choice([None, "a"]), target_prefix=rng.choice([None, "projects/a", "projects/ab/"]),
                           since=since, until=rng.choice([None, (since or 1000.0) + rng.randrange(1, 80)]),
                           newest_first=rng.random() < 0.5, limit=rng.choice([1, 3, 10, 1000]))
        assert [e["id"] for e in log.iterate(query, page=query.limit)] == [e["id"] for e in expected(query)], query
    store.close()
