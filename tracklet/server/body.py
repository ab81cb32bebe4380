"""Reading a request body with a size limit, before and after gzip decoding, or into a buffer the
route sized from its ``Content-Length``; and the same limit on the JSON bodies FastAPI parses for a
route's model parameters (``BoundedBodyRoute``), which it would otherwise read whole, at any size."""

from __future__ import annotations

import zlib

from typing import Any, Callable, Coroutine

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import ClientDisconnect

from tracklet.server.connections import BODY_INTO, BodyDisconnect, BodyOverflow, BodySink

DEFAULT_MAX_BODY_BYTES = 64 << 20
#: The largest JSON body a route with a model parameter takes (a report's 1 MiB of Markdown, a
#: model card's, fit): parsed JSON costs up to ~20x its bytes in Python objects (``[[],[],...]``).
MAX_JSON_BODY_BYTES = 8 << 20
_FRAMES_HINT = "send smaller chunks (whole frames) instead"


def _too_large(limit: int, what: str, hint: str) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"request body too large: {what} more than the server's limit of {limit} bytes; {hint}",
    )


async def read_body(request: Request, limit: int, hint: str = _FRAMES_HINT) -> bytes:
    """The request's body, decoded if ``Content-Encoding: gzip``; 413 past ``limit`` bytes
    (checked on the wire and again after decompression; its detail ends with ``hint``), 415 for
    other encodings."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise HTTPException(status_code=415, detail=f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"Content-Length {declared} is", hint)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "the body is", hint)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed by the server's idle timeout (connections.py)
        raise HTTPException(status_code=400, detail="the client disconnected before sending the whole body") from None
    raw = b"".join(chunks)
    if encoding != "gzip":
        return raw
    decoder = zlib.decompressobj(wbits=31)
    try:
        data = decoder.decompress(raw, limit + 1)
        if len(data) > limit or decoder.unconsumed_tail:
            raise _too_large(limit, "the decompressed body is", hint)
        data += decoder.flush()
    except zlib.error as error:
        raise HTTPException(status_code=400, detail=f"body is not valid gzip: {error}") from None
    if not decoder.eof:
        raise HTTPException(status_code=400, detail="body is not valid gzip: truncated stream")
    if len(data) > limit:
        raise _too_large(limit, "the decompressed body is", hint)
    return data


async def read_body_into(request: Request, view: memoryview) -> int:
    """Write the request's (identity-encoded) body into ``view`` and return its length: 400 if it is
    longer than ``view`` or the client disconnects first. Through the server's ``BODY_INTO``
    extension where the protocol offers it (the parser's callback writes each piece, the route
    wakes once), else piece by piece from ``request.stream()``."""
    body_into = request.scope.get("extensions", {}).get(BODY_INTO)
    try:
        if body_into is not None:
            return int(await body_into(view))
        sink = BodySink(view)
        async for piece in request.stream():
            sink.write(piece)
            if sink.overflow:
                break
        return sink.length()
    except (BodyDisconnect, ClientDisconnect):  # gone, or closed by the server's idle timeout
        raise HTTPException(status_code=400, detail="the client disconnected before sending the whole body") from None
    except BodyOverflow as error:
        raise HTTPException(status_code=400, detail=str(error)) from None


class BoundedBodyRoute(APIRoute):
    """A route whose JSON body (a model parameter's) is read through ``read_body`` with
    ``MAX_JSON_BODY_BYTES`` before FastAPI parses it: 413 naming the limit past it, and a gzip body
    decoded within it. FastAPI's own reading takes a body whole, whatever its size, and parses it
    (a 95 MiB ``_chunks/missing`` query was parsed before its 1,000-id limit refused it). Routes
    that read their body themselves (uploads: their own limits) are left as they are. Every
    ``APIRouter`` of the server uses this class, made by ``bounded_router`` (tests/test_server_json_bounds.py
    checks each)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.dependant.body_params:
            return handler

        async def bounded(request: Request) -> Response:
            request._body = await read_body(request, MAX_JSON_BODY_BYTES,
                                            f"a JSON body may take at most {MAX_JSON_BODY_BYTES >> 20} MiB")
            return await handler(request)

        return bounded


def bounded_router(**options: Any) -> APIRouter:
    """An ``APIRouter`` whose routes are ``BoundedBodyRoute``s; ``options`` are ``APIRouter``'s own
    (``prefix``, ``tags``, ``dependencies``). Every router of the server is made here, so none can
    forget the bound on its JSON bodies."""
    return APIRouter(route_class=BoundedBodyRoute, **options)
