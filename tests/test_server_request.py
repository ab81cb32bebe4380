"""The request path's fixed cost, without changing what answers: route dispatch (server/dispatch.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Mount

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
