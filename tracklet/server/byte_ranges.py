"""One HTTP ``Range: bytes=a-b`` of a stored file: what the artifact byte routes (``GET
.../_blobs/{digest}``, ``GET .../versions/{selector}/files/{path}``) answer 206 with; and what every
file route (those two, run files, media) answers a ``HEAD`` (the headers alone) and an
``If-None-Match`` naming the file's ETag (304) with."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException, Request, Response

from tracklet.server.logs import BadRequest

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits only (RFC 9110's DIGIT)
# Positions of more digits than this are past any file's end: read as _FAR, not parsed (a header of
# 64 KiB of digits made int() raise past Python's 4,300 digits, a 500, and cost quadratic time below).
_MAX_DIGITS = 18
_FAR = 10**_MAX_DIGITS


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _FAR if len(digits) > _MAX_DIGITS else int(digits)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=a-b``; None for the whole; 416 if outside."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise BadRequest(f"Range {header[:80]!r} is not supported: use one 'bytes=start-end'")
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - _position(last)), size
    else:
        start, end = _position(first), min(size, _position(last) + 1) if last else size
    if start >= size or start >= end:
        raise HTTPException(status_code=416, detail=f"range {header[:80]!r} is outside the file's {size} bytes",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end


def range_answer(header: str | None, size: int, reader: Any, digest: str) -> tuple[int, int, int, dict[str, str]]:
    """What a byte route answers for ``Range`` ``header`` of a file of ``size`` bytes opened as
    ``reader`` (closed here if the range is refused): (start, end exclusive, status 200 or 206, headers:
    length, ranges accepted, the digest as ETag, sandboxed user content, and Content-Range for a 206)."""
    try:
        span = byte_range(header, size)
    except BaseException:
        reader.close()
        raise
    start, end = span or (0, size)
    headers = {"Content-Length": str(end - start), "Accept-Ranges": "bytes", "ETag": f'"{digest}"',
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return start, end, 206 if span else 200, headers


#: Cache-Control of content-addressed bytes (an artifact version's file, a blob, a media file: the
#: URL or the digest names the bytes, which never change): kept a year, never revalidated.
IMMUTABLE = "private, max-age=31536000, immutable"
#: Cache-Control of a run's file (a live run may rewrite it): kept, but asked about each time
#: (If-None-Match: a 304 while unchanged).
REVALIDATE = "private, no-cache"
# What a 304 repeats of the 200 it stands for (RFC 9110, 15.4.5)
_KEPT_BY_304 = ("etag", "cache-control", "content-location", "vary", "expires")


def not_modified(request: Request, etag: str) -> bool:
    """Whether the request's ``If-None-Match`` names ``etag`` (a quoted strong tag) or is ``*``:
    compared weakly, as RFC 9110 says for this header (a ``W/`` prefix ignored)."""
    value = request.headers.get("if-none-match")
    if value is None:
        return False
    if value.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in value.split(","))


def unchanged(request: Request, headers: dict[str, str]) -> Response | None:
    """A 304 (the headers it repeats: ETag, Cache-Control) when the request's ``If-None-Match``
    names ``headers["ETag"]``; None for an answer in full. Checked before ``Range``, as RFC 9110 says."""
    if not not_modified(request, headers["ETag"]):
        return None
    return Response(status_code=304, headers={k: v for k, v in headers.items() if k.lower() in _KEPT_BY_304})


def headers_alone(status: int, headers: dict[str, str], media_type: str) -> Response:
    """What a ``HEAD`` is answered: the GET's status and headers (Content-Length, Content-Type too),
    no body."""
    return Response(status_code=status, headers={**headers, "Content-Type": media_type})
