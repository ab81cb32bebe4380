"""One hop to the thread pool per request: the access check, the audit intent and a sync route.

FastAPI runs each sync dependency and each sync route function in a worker thread of its own
(``run_in_threadpool``), and validates a sync route's response model in yet another: a guarded
request to a sync route (``app.require_access`` and the route, both blocking on the database)
went to the thread pool and back three times, each trip a queue hand-off, a thread wake-up and an
event-loop wake-up (a fifth of the server's CPU for a small request).

``wrap_router(router)`` replaces each sync route function of ``router`` that declares no
dependency of its own with an ``async`` one of the same signature (``functools.wraps``: FastAPI
reads the original's parameters, so the OpenAPI schema is unchanged) that makes one trip: in one
worker call it runs the steps the router's guards *deferred* to it (``defer``: the access check,
then the audit intent and arming), then the route function, then the steps queued to follow it
(``after``: the audit event of a mutating request whose route wrote no row to carry it). The response model is validated on
the event loop (FastAPI does so for async routes): CPU work that never blocks.

A guard defers only on a route so wrapped (``defers``), where nothing runs between the guards and
the route function but parameter and body validation. The order a client sees stays: a request
whose parameters or body fail validation gets its deferred steps run first by
``validation_error`` (the app's ``RequestValidationError`` handler), so a missing key still
answers 401 before a malformed body's 422, as when the guard ran before validation. A request
that no guard deferred anything for (a ``--dev`` server's reads) runs the route function alone.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

_WRAPPED = "__tracklet_one_hop__"  # set on the async replacement of a sync route function
_STEPS = "one_hop_steps"  # request.state: the deferred steps not run yet, in order
_AFTER = "one_hop_after"  # request.state: steps to run with the route function's result, in order
# The request whose guards ran last in this task: the route function's wrapper runs its steps.
# Set by every guard that defers (``in_route`` always does on a wrapped route), so never a stale one.
_REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar("one_hop_request", default=None)


def wrapped(route: Any) -> bool:
    """Whether ``route`` (an ``APIRoute``, or None) runs its guards' deferred steps itself."""
    return bool(getattr(getattr(route, "endpoint", None), _WRAPPED, False))


def defers(request: Request) -> bool:
    """Whether the request's route runs deferred steps in its own worker call."""
    return wrapped(request.scope.get("route"))


def defer(request: Request, step: Callable[[], None]) -> bool:
    """Queue ``step`` (blocking work of a guard) to run in the route function's worker call, before
    the route, after the steps queued before it; False (nothing queued) where the route doesn't
    run deferred steps: the guard then runs ``step`` itself."""
    if not defers(request):
        return False
    steps: list[Callable[[], None]] | None = getattr(request.state, _STEPS, None)
    if steps is None:
        steps = []
        setattr(request.state, _STEPS, steps)
    steps.append(step)
    _REQUEST.set(request)
    return True


def after(request: Request, step: Callable[[Any], None]) -> None:
    """Queue ``step`` to run in the route function's worker call with what the route returned,
    once it returned (a route that raised runs none): e.g. the audit event of its answer. Only
    on a route that ``defers``."""
    steps: list[Callable[[Any], None]] | None = getattr(request.state, _AFTER, None)
    if steps is None:
        steps = []
        setattr(request.state, _AFTER, steps)
    steps.append(step)


def run_deferred(request: Request | None) -> None:
    """Run (and forget) the steps deferred for ``request``, in order; the first that raises
    stops the rest, as a failing guard stopped the guards after it."""
    if request is None:
        return
    steps: list[Callable[[], None]] | None = getattr(request.state, _STEPS, None)
    while steps:
        steps.pop(0)()


def _one_hop(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def route(*args: Any, **kwargs: Any) -> Any:
        request = _REQUEST.get()

        def work() -> Any:
            run_deferred(request)
            result = function(*args, **kwargs)
            steps: list[Callable[[Any], None]] | None = (getattr(request.state, _AFTER, None)
                                                         if request is not None else None)
            while steps:  # each once, as the deferred steps
                steps.pop(0)(result)
            return result

        return await run_in_threadpool(work)

    setattr(route, _WRAPPED, True)
    return route


def wrap_router(router: APIRouter) -> int:
    """Give each sync route function of ``router`` without dependencies of its own the one-hop
    wrapper (idempotent: the routers are module-level, shared by every app); how many routes
    have it. Call before the router is included (FastAPI reads ``route.endpoint`` then)."""
    count = 0
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        if wrapped(route):
            count += 1
            continue
        endpoint = route.endpoint
        if (inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint)
                or inspect.isasyncgenfunction(endpoint) or not inspect.isfunction(endpoint)
                or route.dependant.dependencies):
            continue
        route.endpoint = _one_hop(endpoint)
        count += 1
    return count


async def validation_error(request: Request, error: Exception) -> Response:
    """The app's ``RequestValidationError`` handler: the request's deferred guard steps first (a
    failing check answers as it did when it ran before validation), then FastAPI's own 422."""
    steps = getattr(request.state, _STEPS, None)
    if steps:
        try:
            await run_in_threadpool(run_deferred, request)
        except Exception as refused:
            handler = _handler(request.app, refused)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                return await handler(request, refused)
            return await run_in_threadpool(handler, request, refused)
    assert isinstance(error, RequestValidationError)
    return await request_validation_exception_handler(request, error)


def _handler(app: FastAPI, error: Exception) -> Callable[..., Any] | None:
    """The app's handler of ``error``'s class, as Starlette picks it (the nearest in its MRO)."""
    for cls in type(error).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None
