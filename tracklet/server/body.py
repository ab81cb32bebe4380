"""Reading a request body with a size limit, before and after gzip decoding, or into a buffer the
route sized from its ``Content-Length``."""

from __future__ import annotations

import zlib

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from tracklet.server.connections import BODY_INTO, BodyDisconnect, BodyOverflow, BodySink

DEFAULT_MAX_BODY_BYTES = 64 << 20


def _too_large(limit: int, what: str) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"request body too large: {what} more than the server's limit of {limit} bytes; "
        "send smaller chunks (whole frames) instead",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, decoded if ``Content-Encoding: gzip``; 413 past ``limit`` bytes
    (checked on the wire and again after decompression), 415 for other encodings."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise HTTPException(status_code=415, detail=f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"Content-Length {declared} is")
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "the body is")
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
            raise _too_large(limit, "the decompressed body is")
        data += decoder.flush()
    except zlib.error as error:
        raise HTTPException(status_code=400, detail=f"body is not valid gzip: {error}") from None
    if not decoder.eof:
        raise HTTPException(status_code=400, detail="body is not valid gzip: truncated stream")
    if len(data) > limit:
        raise _too_large(limit, "the decompressed body is")
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
