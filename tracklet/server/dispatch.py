"""Route dispatch in front of FastAPI's router: one regular expression per group of routes.

FastAPI's router tries its routes in order until one matches: the server's ~150 routes sit in
~20 included routers, and each router tried runs each of its routes' regular expressions with
bookkeeping around every one, then, once one matches, runs them all again to pick it. A request
for a route near the end (a sweep heartbeat, an alias move, ``/v1/traces``) paid for every
earlier router: a sixth to a third of its CPU in the event loop, and of a health probe's, three
quarters.

``install(app)`` puts ``GroupDispatch`` in front of the router (``Router.middleware_stack``,
Starlette's own hook). For each top-level route (an included router, a mount, a route) it keeps
the alternation of its routes' path expressions, for each method (the routes that take it) and
for any method: one ``re`` match per group tells whether the group has a route that matches the
request fully, or only by path (405). The first group that matches fully answers, else the first
that matches by path, exactly as the router would pick (it too takes the first full match, else
the first partial one), and the group then picks its route itself, once. A request that no group
matches goes to the router, which answers as before (slash redirects, low-priority routes, 404).
A route whose path expression can't be read is always asked itself (``matches``). The
expressions are rebuilt when the router's own route list changes (not a route added to a router
already included: the server adds none).

Which route answers never changes (``tests/test_server_request.py`` checks every route of the
app); only routes that could not have matched are no longer tried. Where FastAPI's internals this
mirrors are missing (another FastAPI version), nothing is installed.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Receive, Scope, Send

import fastapi.routing

# The router's own steps, replayed for the route picked here; None where this FastAPI lacks them
# (it then dispatches alone).
_IncludedRouter: Any = getattr(fastapi.routing, "_IncludedRouter", None)
_apply_router_form_limits: Any = getattr(fastapi.routing, "_apply_router_form_limits", None)
_route_selected: Any = getattr(fastapi.routing, "_route_selected", None)
_update_scope: Any = getattr(fastapi.routing, "_update_scope", None)
get_route_path: Any = getattr(fastapi.routing, "get_route_path", None)
_REPLAYED = (_IncludedRouter, _apply_router_form_limits, _route_selected, _update_scope, get_route_path)

_GROUP_NAME = re.compile(r"\(\?P<[^>]+>")
ANY = "*"  # the key of a group's expression for any method


class Group:
    """One top-level route of the router and what it can match: ``expressions[method]`` (and
    ``expressions[ANY]``) match a path iff one of its routes matches it with that method (with
    any method); None: unknown, ask the route."""

    def __init__(self, route: BaseRoute) -> None:
        self.route = route
        self.included = _IncludedRouter is not None and isinstance(route, _IncludedRouter)
        self.expressions = _expressions(route, self.included)

    def full(self, method: str, path: str) -> bool:
        assert self.expressions is not None
        expression = self.expressions.get(method) or self.expressions.get("")
        return expression is not None and expression.match(path) is not None

    def partial(self, path: str) -> bool:
        assert self.expressions is not None
        return self.expressions[ANY].match(path) is not None


def _expressions(route: BaseRoute, included: bool) -> dict[str, re.Pattern[str]] | None:
    """The group's path expressions by method ("": routes taking every method), or None."""
    members: list[tuple[str, frozenset[str] | None]] = []
    candidates = list(route.effective_route_contexts()) if included else [route]  # type: ignore[attr-defined]
    for candidate in candidates:
        matcher = getattr(candidate, "starlette_route", None) or candidate
        regex = getattr(matcher, "path_regex", None)
        if type(getattr(candidate, "original_route", None)).__name__ == "_FrontendRouteGroup" or regex is None:
            return None
        methods = getattr(matcher, "methods", None)
        if isinstance(matcher, Mount) or not methods:
            methods = None
        members.append((_GROUP_NAME.sub("(?:", regex.pattern), frozenset(methods) if methods else None))
    if not members:
        return None
    every = [pattern for pattern, methods in members if methods is None]
    names = {name for _, methods in members for name in (methods or ())}
    found = {name: _alternation([p for p, m in members if m is None or name in m]) for name in names}
    found[""] = _alternation(every)
    found[ANY] = _alternation([pattern for pattern, _ in members])
    return {name: expression for name, expression in found.items() if expression is not None}


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


class GroupDispatch:
    """The ASGI app in front of ``router.app`` (see the module docstring)."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self._built: tuple[int, int] | None = None
        self._groups: list[Group] = []

    def groups(self) -> list[Group]:
        """A ``Group`` per top-level route, in the router's order; rebuilt when its routes change."""
        # The top level's own count and version (FastAPI's whole-tree version walks every
        # included router on each call): the server adds no route to a router once included.
        state = (len(self.router.routes), getattr(self.router, "_routes_version", 0))
        if state != self._built:
            self._groups = [Group(route) for route in self.router.routes]
            self._built = state
        return self._groups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router
        if scope["type"] != "http":
            await router.app(scope, receive, send)
            return
        _apply_router_form_limits(scope, router.form_limits)
        if "router" not in scope:
            scope["router"] = router
        picked = self.pick(scope)
        if picked is None:
            await router.app(scope, receive, send)  # nothing here matches: the router's own answer
            return
        route, child_scope = picked
        _update_scope(scope, child_scope)
        _route_selected(scope=scope, path=getattr(route, "path_format", None), mount=isinstance(route, Mount))
        await route.handle(scope, receive, send)

    def pick(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        """The top-level route the router would hand the request to (the first that matches it
        fully, else the first that matches its path), with its child scope; None: none does."""
        path = get_route_path(scope)
        method = scope["method"]
        partial: tuple[BaseRoute, Scope] | None = None
        for group in self.groups():
            if group.expressions is not None:
                if group.full(method, path):
                    match = Match.FULL
                elif partial is None and group.partial(path):
                    match = Match.PARTIAL
                else:
                    continue
                if group.included:  # it picks its route itself when handling (its matches() says nothing more)
                    child_scope: Scope = {}
                else:
                    match, child_scope = group.route.matches(scope)
            else:
                match, child_scope = group.route.matches(scope)
            if match == Match.FULL:
                return group.route, child_scope
            if match == Match.PARTIAL and partial is None:
                partial = (group.route, child_scope)
        return partial


def prepare(app: FastAPI) -> None:
    """Build ``app``'s groups now (on the event loop's thread, where requests build them too):
    FastAPI readies its routes' state (their parameters' and responses' pydantic adapters) on the
    first request that walks them, ~0.3 s of CPU for the server's routes. The server's lifespan
    calls this a moment after start (``query_warm.DELAY``), so the dashboard's first page doesn't
    pay it; a request that came sooner has built them already (this then does nothing)."""
    stack = getattr(app.router, "middleware_stack", None)
    if isinstance(stack, GroupDispatch):
        stack.groups()


def install(app: FastAPI) -> bool:
    """Put ``GroupDispatch`` in front of ``app``'s router; False where this FastAPI lacks what it
    replays (the router then dispatches alone, as before)."""
    router = app.router
    if None in _REPLAYED or getattr(router, "middleware_stack", None) != router.app:
        return False
    router.middleware_stack = GroupDispatch(router)
    return True
