"""One HTTP ``Range: bytes=a-b`` of a stored file: what the artifact byte routes (``GET
.../_blobs/{digest}``, ``GET .../versions/{selector}/files/{path}``) answer 206 with."""

from __future__ import annotations

import re

from fastapi import HTTPException

from tracklet.server.logs import BadRequest

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=a-b``; None for the whole; 416 if outside."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise BadRequest(f"Range {header[:80]!r} is not supported: use one 'bytes=start-end'")
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise HTTPException(status_code=416, detail=f"range {header} is outside the blob's {size} bytes",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end
