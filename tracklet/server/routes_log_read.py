"""A run's stored record log, read back by offset: how a client resumes on a machine that lacks it.

``GET /api/v1/runs/{project}/{run_id}/log?offset=N&limit=L`` answers the whole, intact frames of
the server's copy from byte ``N`` (0: the 8-byte header first) within about ``L`` bytes (at most
``MAX_LIMIT``; more only when a single frame is bigger), read through the server's ``LogSource``
(files under its root, or segments in shared storage with ``--logs``), so the bytes are exactly
the ones stored. ``X-Tracklet-Log-Size`` says how big the copy is; a client asks again from the
end of each answer until it has that many bytes (``tracklet/client/log_download.py``). With
``part=<label>``: a shared run's secondary writer's log (docs/shared-runs.md), so a secondary
restarted on another machine continues its part; ``X-Tracklet-Log-Part`` echoes the label.
"""

from __future__ import annotations

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from tracklet.core.recordlog import FRAME_HEADER, MAGIC, frame
from tracklet.server.logs import PART_DESCRIPTION as _PART, check_part, run_paths
from tracklet.server.models import errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

DEFAULT_LIMIT = 4 << 20
MAX_LIMIT = 16 << 20
SIZE_HEADER = "X-Tracklet-Log-Size"
PART_HEADER = "X-Tracklet-Log-Part"  # with part=: the label whose log this is


@router.get(
    "/{project}/{run_id}/log",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "description": f"Whole frames from `offset`; `{SIZE_HEADER}`: the stored log's size"},
               **errors(400, 404)},
    summary="Read a run's stored record log from an offset",
)
def get_log(
    request: Request,
    project: str,
    run_id: str,
    offset: int = Query(0, ge=0, le=2**62, description="0 (from the header) or a frame boundary of the stored log"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="About how many bytes to answer"),
    part: str | None = Query(None, max_length=128, description=_PART),
) -> Response:
    """The stored log's intact frames from `offset`, within about `limit` bytes; empty at its end.
    404 when the server has no log of the run; 400 when `offset` is past the end or no intact
    frame starts there (not a frame boundary, or the stored copy is damaged there)."""
    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id, check_part(app, part))
    if part is not None:
        app.copies.check_label(project, run_id, part)  # never another label's log on a case-insensitive file system
    source = app.indexer.source
    size = source.size(paths)
    what = f"{project}/{run_id}" if part is None else f"{project}/{run_id} part {part}"
    if size == 0:
        raise HTTPException(status_code=404, detail=f"no run {what} on this server" if part is None
                            else f"no part {part} of run {project}/{run_id} on this server")
    if offset > size or 0 < offset < len(MAGIC):
        raise HTTPException(status_code=400, detail=f"offset {offset} is not a frame boundary of the stored log "
                                                    f"of {what} ({size} bytes)")
    body = bytearray(MAGIC if offset == 0 else b"")
    position = max(offset, len(MAGIC))
    if position < size:
        # A client's offset may be no frame boundary: never read more than one answer's worth for it
        # (a frame bigger than ``limit`` is at most a request body: ``max_body_bytes``).
        result = source.read_from(paths, offset, limit, bound=max(limit, app.max_body_bytes) + FRAME_HEADER.size)
        for at, payload in result.payloads:
            if at != position:  # frames after a damaged region: their offsets would not match the copy's
                break
            body += frame(payload)
            position = at + FRAME_HEADER.size + len(payload)
        if position == max(offset, len(MAGIC)):
            raise HTTPException(status_code=400, detail=f"no intact frame starts at byte {position} of the stored "
                                                        f"log of {what} ({size} bytes)")
    headers = {SIZE_HEADER: str(size), "X-Content-Type-Options": "nosniff"}
    if part is not None:  # the echo a client checks: a server from before parts answers the run's own log
        headers[PART_HEADER] = part
    return Response(bytes(body), media_type="application/octet-stream", headers=headers)
