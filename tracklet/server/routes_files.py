"""Run files over HTTP: upload (atomic, idempotent), list with sha256, download (docs/server.md).

Files belong to a run the server knows (one whose record log was uploaded); the run's project and
id and every file name are checked before they become part of a storage key (``files.py``).
"""

from __future__ import annotations

from fastapi import HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from tracklet.errors import DigestMismatch
from tracklet.server.audit import armed, arms_itself
from tracklet.server.body import bounded_router, read_body
from tracklet.server.auth import requires
from tracklet.server.byte_ranges import REVALIDATE, headers_alone, unchanged
from tracklet.server.files import MAX_NAME_CHARS, NameConflict, check_file_name, content_type, iter_chunks
from tracklet.server.logs import run_paths
from tracklet.server.models import FileEntry, FileList, PutFileResponse, errors

router = bounded_router(prefix="/api/v1/runs", tags=["files"])

_NAME = Path(..., description="The file's name relative to the run, e.g. `requirements.txt` or `media/a.txt`: "
             "'/'-separated parts of letters, digits, '.', '_', '-', each starting with a letter or digit")

_UNDER = ("Only the files in this folder of the run's (names still relative to the run), e.g. `parts/rank_1`: "
          "a shared run's secondary writer's files (docs/shared-runs.md)")


_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes, whole. Optionally `Content-Encoding: gzip`.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _known_run(request: Request, project: str, run_id: str) -> None:
    """400 for unsafe names, 404 unless the server has the run's record log, or a part of it (a
    shared run's secondary writer may upload before the primary: docs/shared-runs.md)."""
    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    source = app.indexer.source  # files under the root, or segments in shared storage (--logs)
    if not paths.log_file.is_file() and not source.size(paths) and not source.parts(paths):
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server: upload its record "
                            "log first (tracklet sync)")


def _no_file(project: str, run_id: str, name: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"run {project}/{run_id} has no file {name!r}")


@router.put(
    "/{project}/{run_id}/files/{name:path}",
    response_model=PutFileResponse,
    responses=errors(400, 404, 409, 412, 413, 415),
    openapi_extra=_RAW_BODY,
    summary="Store a run file (whole body, atomic)",
)
@arms_itself
@requires("write", creates=True)
async def put_file(request: Request, project: str, run_id: str, name: str = _NAME) -> PutFileResponse:
    """Replace the run's file `name` with the body; readers see the old file or the new one, never
    part of one. Sending the bytes already stored writes nothing (`written: false`). With an
    `X-Tracklet-Sha256` header, a body (decoded) that hashes to something else is refused (412:
    the file changed while it was sent; send it again) and nothing is stored."""
    state = request.app.state.tracklet
    check_file_name(name)  # 400 before reading the body
    _known_run(request, project, run_id)
    body = await read_body(request, state.max_body_bytes)  # why this route is async: it streams the body
    try:
        info, written = await run_in_threadpool(armed, request, state.files.put, project, run_id, name, body,
                                                expected_sha256=request.headers.get("x-tracklet-sha256"))
    except NameConflict as conflict:
        raise HTTPException(status_code=409, detail=str(conflict)) from None
    except DigestMismatch as mismatch:
        raise HTTPException(status_code=412, detail=str(mismatch)) from None
    return PutFileResponse(**info.as_dict(), written=written)


@router.get(
    "/{project}/{run_id}/files",
    response_model=FileList,
    responses=errors(400, 404),
    summary="List a run's files",
)
def list_files(request: Request, project: str, run_id: str,
               under: str | None = Query(None, max_length=MAX_NAME_CHARS, description=_UNDER)) -> FileList:
    """Name, size, sha256 and last update of each of the run's files, by name (with `under`: of
    those in that folder only, e.g. a shared run's secondary writer's `parts/<label>`)."""
    _known_run(request, project, run_id)
    found = request.app.state.tracklet.files.list(project, run_id, under)
    return FileList(files=[FileEntry(**info.as_dict()) for info in found])


@router.get(
    "/{project}/{run_id}/files/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"},
               **errors(400, 404)},
    summary="Download a run file (HEAD and If-None-Match supported)",
)
def get_file(request: Request, project: str, run_id: str, name: str = _NAME) -> StreamingResponse:
    """The file's bytes as stored, streamed, with a content type from its extension. The ETag is
    the file's sha256 (as the listing gives it); a live run may rewrite its files, so the answer
    is kept but asked about again each time (`Cache-Control: private, no-cache`): `If-None-Match`
    naming the ETag is a 304 while the file is unchanged. `HEAD` answers the headers alone, from
    the file's metadata without reading it: its ETag where this version's sha256 is known (a GET,
    the listing or its upload hashed it), none where it isn't yet (RFC 9110 lets a HEAD leave out
    what only the content gives)."""
    check_file_name(name)
    _known_run(request, project, run_id)
    files = request.app.state.tracklet.files
    if request.method == "HEAD":
        try:
            size, known = files.head(project, run_id, name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _no_file(project, run_id, name) from None
        headers = _file_headers(size)
        if known is not None:
            headers["ETag"] = f'"{known}"'
            cached = unchanged(request, headers)
            if cached is not None:
                return cached  # type: ignore[return-value]
        return headers_alone(200, headers, content_type(name))  # type: ignore[return-value]
    try:
        handle, size, sha256 = files.open_with_digest(project, run_id, name)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _no_file(project, run_id, name) from None
    headers = _file_headers(size)
    if sha256 is not None:  # None: rewritten as it was opened (no ETag claimed for these bytes)
        headers["ETag"] = f'"{sha256}"'
        cached = unchanged(request, headers)
        if cached is not None:
            handle.close()
            return cached  # type: ignore[return-value]
    return StreamingResponse(iter_chunks(handle), media_type=content_type(name), headers=headers)


def _file_headers(size: int) -> dict[str, str]:
    return {
        "Content-Length": str(size),
        # Served bytes are whatever a client uploaded: never sniffed, never run as a page.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": REVALIDATE,
    }


# HEAD: the same function (it answers the headers alone); not a second operation in the OpenAPI document
router.add_api_route("/{project}/{run_id}/files/{name:path}", get_file, methods=["HEAD"], include_in_schema=False)
