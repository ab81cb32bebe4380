"""The request path's fixed cost, without changing what answers: route dispatch (server/dispatch.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from benchmarks.store import upload_ends
from tracklet.server import dispatch
from tracklet.server.app import create_app

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")  # PATCH: a method no route takes
_PARAM = re.compile(r"{([^}:]+)(?::([^}]+))?}")


def _concrete(path_format: str) -> list[str]:
    """A path a route's format stands for (its parameters filled in), then near misses."""
    def fill(match: re.Match[str]) -> str:
        return {"path": "a/b.txt", "int": "7", "float": "1.5"}.get(match.group(2) or "", f"x{match.group(1)[:3]}")

    path = _PARAM.sub(fill, path_format)
    return [path, path + "/", path.rsplit("/", 1)[0] or "/"]


def _requests(app: Any) -> list[tuple[str, str]]:
    """(method, path): every route's path with every method, near misses with GET and POST."""
    exact: set[str] = set()
    near = {"/", "/nothing", "/api/v1/nothing", "/api/v1/projects/p/nothing", "/assets/index.js", "/assets"}
    for route in app.routes:
        formats = []
        if dispatch._IncludedRouter is not None and isinstance(route, dispatch._IncludedRouter):
            for context in route.effective_route_contexts():
                inner = context.starlette_route or context
                formats.append(getattr(inner, "path_format", ""))
        else:
            formats.append(getattr(route, "path_format", ""))
        for path_format in formats:
            path, *misses = _concrete(path_format)
            exact.add(path)
            near.update(misses)
    return ([(method, path) for path in sorted(exact) for method in METHODS]
            + [(method, path) for path in sorted(near - exact) for method in ("GET", "POST")])


def test_dispatch_hands_every_request_to_the_route_the_router_would(tmp_path: Path, monkeypatch) -> None:
    """For every route of the server's app (its paths filled in, with a trailing slash, one
    segment more or less) and every method, the request reaches the same route with the same path
    parameters whether the router dispatches alone or the group expressions pick first."""
    app = create_app(tmp_path / "server", index_on_start=False)
    router = app.router
    front = router.middleware_stack
    assert isinstance(front, dispatch.GroupDispatch)
    reached: list[Any] = []

    async def api_handle(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        reached.append(("route", self.name, tuple(sorted(scope.get("path_params", {}).items())),
                        scope["method"] in (self.methods or {scope["method"]})))

    async def mount_handle(self: Mount, scope: Any, receive: Any, send: Any) -> None:
        reached.append(("mount", self.name, scope.get("path_params", {}).get("path")))

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            reached.append(("answer", message["status"], dict(message.get("headers", [])).get(b"location")))

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    monkeypatch.setattr(APIRoute, "handle", api_handle)
    monkeypatch.setattr(Mount, "handle", mount_handle)

    async def outcome(entry: Any, method: str, path: str) -> list[Any]:
        reached.clear()
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": b"", "headers": [], "scheme": "http", "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 1), "app": app, "state": {}}
        try:
            await entry(scope, receive, send)
        except HTTPException as error:  # the router's 404 (the app's handler answers it)
            reached.append(("raised", error.status_code))
        return list(reached)

    async def every_request() -> int:
        picked = 0
        for method, path in requests:
            alone = await outcome(router.app, method, path)
            assert alone, (method, path)
            assert await outcome(front, method, path) == alone, (method, path)
            picked += front.pick({"type": "http", "method": method, "path": path, "root_path": ""}) is not None
        return picked

    requests = _requests(app)
    assert len(requests) > 800  # every route's path and its near misses
    assert asyncio.run(every_request()) > len(requests) / 2  # the expressions picked most, the router had the rest


def _count_trips(monkeypatch) -> list[str]:
    """The names of the functions run in the thread pool from now on (``anyio.to_thread.run_sync``), in order."""
    import anyio.to_thread

    trips: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(function, "__name__", repr(function)))
        return await real(function, *args, **kwargs)
    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return trips


def test_a_guarded_sync_route_answers_with_one_trip_to_the_thread_pool(tmp_path: Path, monkeypatch) -> None:
    """The access check, the audit arming and a sync route run in one worker call (one_hop.py),
    not one each (and the response model is validated on the event loop): what a request costs
    in hand-offs between the event loop and the thread pool, counted."""
    from fastapi.testclient import TestClient

    from tracklet.server.auth import Accounts

    app = create_app(tmp_path / "server", index_on_start=False, sweep_interval=3600)
    key = Accounts(app.state.tracklet.store).create_user("admin", admin=True).key
    config = {"method": "random", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        sweep = client.post("/api/v1/projects/p/sweeps", json={"config": config}).json()["id"]
        lease = client.post(f"/api/v1/projects/p/sweeps/{sweep}/next", json={"agent": "a", "ttl": 600}).json()["lease"]
        trips = _count_trips(monkeypatch)
        for method, path, body in (
                ("GET", f"/api/v1/projects/p/sweeps/{sweep}", None),
                ("POST", f"/api/v1/projects/p/sweeps/{sweep}/heartbeat", {"trial": lease["trial"], "agent": "a", "ttl": 600}),
                ("POST", "/api/v1/projects/p/sweeps", {"config": config})):
            trips.clear()
            answer = client.request(method, path, json=body)
            assert answer.status_code in (200, 201), (path, answer.text)
            assert len(trips) == 1, (method, path, trips)


def test_a_deferred_check_still_answers_before_validation(tmp_path: Path) -> None:
    """A request both unauthorized and malformed gets the guard's answer (401, 403, or 400 for a
    bad project name), as when the guard ran before parameter and body validation; an authorized
    malformed one gets 422. The audit events say the same (one_hop.validation_error)."""
    from fastapi.testclient import TestClient

    from tracklet.server.audit import AuditQuery
    from tracklet.server.auth import Accounts

    app = create_app(tmp_path / "server", index_on_start=False, sweep_interval=3600)
    accounts = Accounts(app.state.tracklet.store)
    admin = accounts.create_user("admin", admin=True).key
    reader = accounts.create_user("reader").key
    accounts.set_member("p", "reader", "read")
    bad = {"config": "not a mapping"}
    with TestClient(app) as client:
        none = client.post("/api/v1/projects/p/sweeps", json=bad)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer", none.text
        assert "missing API key" in none.json()["detail"]
        assert client.post("/api/v1/projects/p/sweeps", json=bad,
                           headers={"Authorization": "Bearer tlk_nope_nope"}).status_code == 401
        refused = client.post("/api/v1/projects/p/sweeps", json=bad, headers={"Authorization": f"Bearer {reader}"})
        assert refused.status_code == 403 and "needs write access" in refused.json()["detail"], refused.text
        named = client.post("/api/v1/projects/no%20spaces/sweeps", json=bad, headers={"Authorization": f"Bearer {admin}"})
        assert named.status_code == 400, named.text
        malformed = client.post("/api/v1/projects/p/sweeps", json=bad, headers={"Authorization": f"Bearer {admin}"})
        assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"][:2] == ["body", "config"]
        # An intent route (artifact upload start: not DATABASE_ONLY) refused before validation.
        assert client.post("/api/v1/projects/p/artifacts/_uploads", json={"nope": 1},
                           headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    events = app.state.tracklet.audit.query(AuditQuery(action="create_sweep"))
    assert [(event["status"], event["actor"]) for event in events] == [
        (401, None), (401, None), (403, "reader"), (400, "admin"), (422, "admin")]
    uploads = app.state.tracklet.audit.query(AuditQuery(action="start_upload"))
    assert [(event["status"], event["actor"]) for event in uploads] == [(403, "reader")]
    assert app.state.tracklet.audit.recover() == 0  # no intent left behind


def test_an_online_runs_next_upload_is_admitted_without_the_database_until_access_changes(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """An upload whose key passed the same check moments ago (auth.ADMITTED_FOR) makes one trip to
    the thread pool (the append), not two (the key and role lookups too). A key revoked or a
    member removed through the server is refused at the next request; by another process sharing
    the database (``tracklet admin``: here a second ``Accounts``), once ``admitted_for`` passed."""
    from fastapi.testclient import TestClient

    from tracklet.server.auth import Accounts

    app = create_app(tmp_path / "server", index_on_start=False, sweep_interval=3600)
    authorizer = app.state.tracklet.authorizer
    elsewhere = Accounts(app.state.tracklet.store)  # as `tracklet admin` on the same database
    admin = elsewhere.create_user("admin", admin=True).key
    writer = elsewhere.create_user("writer")
    elsewhere.set_member("p", "writer", "write")

    data = _record_log(tmp_path / "client", rows=80)
    ends = iter(upload_ends(data, 256))
    sent = [0]

    def upload(client: TestClient, key: str, run_id: str, scheme: str = "Bearer") -> int:
        end = next(ends)
        trips.clear()
        answer = client.put(f"/api/v1/runs/p/{run_id}/log", params={"offset": sent[0]}, content=data[sent[0] : end],
                            headers={"Authorization": f"{scheme} {key}"})
        if answer.status_code == 200:
            sent[0] = end
        return answer.status_code

    trips: list[str] = []
    with TestClient(app) as client:
        assert upload(client, writer.key, "r") == 200
        trips = _count_trips(monkeypatch)
        assert upload(client, writer.key, "r") == 200 and len(trips) == 1, trips
        # The same key however its header is spelled: one remembered check, not one per spelling.
        assert upload(client, writer.key + " ", "r", scheme="BEARER") == 200 and len(trips) == 1, trips
        # Through the server: at once, however long a passed check is trusted.
        authorizer.admitted_for = 3600.0
        answer = client.delete("/api/v1/projects/p/members/writer", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 204, answer.text
        assert upload(client, writer.key, "r") == 403
        elsewhere.set_member("p", "writer", "write")
        assert upload(client, writer.key, "r") == 200
        # Elsewhere: once the passed check is no longer trusted.
        authorizer.admitted_for = 0.0
        elsewhere.revoke_key(writer.key_id)
        assert upload(client, writer.key, "r") == 401


def _record_log(directory: Path, rows: int) -> bytes:
    """A run's record log: its start, then ``rows`` rows of one float, one a record."""
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb

    directory.mkdir(parents=True)
    writer = RecordLogWriter(directory / "log")
    start = pb.Record()
    start.run_start.run_id, start.run_start.project, start.run_start.start_time = "r", "p", 1.8e9
    writer.write(start.SerializeToString())
    for step in range(rows):
        record = pb.Record()
        if step == 0:
            record.history.new_keys.add(id=0, name="loss")
        record.history.steps.append(step)
        record.history.times.append(1.8e9 + step)
        record.history.columns.add(key=0).floats.append(1.0 / (step + 1))
        writer.write(record.SerializeToString())
    writer.close()
    return (directory / "log").read_bytes()
