"""The ingest half of the API: clients upload their record logs by byte offset (docs/server.md)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tracklet.server import primaries, run_creators
from tracklet.server.audit import armed, arms_itself, note
from tracklet.server.auth import requires
from tracklet.server.body import bounded_router, read_body
from tracklet.server.logs import PART_DESCRIPTION, OffsetConflict, check_part, run_paths
from tracklet.server.models import (AppendResponse, OffsetConflictResponse, OffsetResponse, PrimaryClaimRequest,
                                    PrimaryClaimResponse, PrimaryHeldResponse, PrimaryHolder, errors)

router = bounded_router(prefix="/api/v1/runs", tags=["ingest"])


_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The client's record log bytes from `offset` to the end of a complete frame "
        "(from 0: including the 8-byte header). Optionally `Content-Encoding: gzip`.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


_PART = PART_DESCRIPTION


@router.put(
    "/{project}/{run_id}/log",
    response_model=AppendResponse, response_model_exclude_none=True,
    responses={**errors(400, 413, 415),
               409: {"model": OffsetConflictResponse, "description": "A gap or a mismatch: resume at `offset`"}},
    openapi_extra=_RAW_BODY,
    summary="Append record log bytes at an offset",
)
@arms_itself
@requires("write", creates=True)
async def put_log(
    request: Request,
    project: str,
    run_id: str,
    offset: int = Query(..., ge=0, le=2**62, description="Byte offset of the body's first byte in the client's log"),
    part: str | None = Query(None, max_length=128, description=_PART),
) -> AppendResponse | JSONResponse:
    """Append if `offset` is the stored size; accept a resend (offset below it) idempotently when
    the overlap matches; 409 with the stored size on a gap or a mismatch. The append to an empty
    copy starts the run: the user of the request's API key is recorded as its creator (the run's
    `user`); nothing the request says names another. With `part`, the bytes are the log of a
    shared run's secondary writer (docs/shared-runs.md), kept beside the run's own log."""
    app = request.app.state.tracklet
    creator = request.state.principal.user_id if part is None else None  # None on a --dev server: no keys
    run_paths(app.root, project, run_id, check_part(app, part))  # 400 before reading the body
    body = await read_body(request, app.max_body_bytes)  # why this route is async: it streams the body

    def append() -> Any:  # one trip to the thread pool: the audit intent, the append, its indexing and events
        result = armed(request, _append, app, project, run_id, offset, body, part)
        if creator is not None and result.appended == result.offset > 0:  # the copy was empty: this starts the run
            _record_creator(app, project, run_id, creator)
        if result.appended:
            run = run_paths(app.root, project, run_id)
            if part is None:
                app.indexer.index_run(run)
                if result.appended == result.offset:  # the run's first bytes: parts that came before it
                    app.indexer.index_parts(run)
            else:
                app.indexer.index_parts(run, part)
            _derive_events(app, project, run_id)
        return result

    try:
        result = await run_in_threadpool(append)
    except OffsetConflict as conflict:
        # (offset first, as ever: built by hand rather than from OffsetConflictResponse's field order)
        return JSONResponse(status_code=409, content={"offset": conflict.offset, "detail": str(conflict)})
    return AppendResponse(offset=result.offset, appended=result.appended, part=part)


def _append(app: Any, project: str, run_id: str, offset: int, body: bytes, part: str | None) -> Any:
    if part is None:
        return app.copies.append(project, run_id, offset, body)
    return app.copies.append(project, run_id, offset, body, part=part)


def _record_creator(app: Any, project: str, run_id: str, user_id: int) -> None:
    """Record who started the run (run_creators.py); a failure there is reported and never fails
    the upload, whose bytes are kept and indexed: the run then reads back with no user."""
    try:
        run_creators.record(app.store.engine, project, run_id, user_id)
    except Exception as error:
        print(f"tracklet server: the creator of {project}/{run_id} not recorded: {error!r}", file=sys.stderr)


def _derive_events(app: Any, project: str, run_id: str) -> None:
    """Events the upload caused (run finished or failed, alerts, thresholds: automations.py); a
    failure there is reported and never fails the upload, whose bytes are kept."""
    try:
        app.automations.after_ingest(app.store, project, run_id)
    except Exception as error:
        print(f"tracklet server: events of {project}/{run_id} not derived: {error!r}", file=sys.stderr)


@router.get(
    "/{project}/{run_id}/log/offset",
    response_model=OffsetResponse, response_model_exclude_none=True,
    responses=errors(400),
    summary="Where a client resumes uploading",
)
@requires("write", missing_ok=True)
def get_offset(request: Request, project: str, run_id: str,
               part: str | None = Query(None, max_length=128, description=_PART)) -> OffsetResponse:
    """The size of the server's copy of the run's record log (0 when the run is unknown): the
    upload's first request, so it needs `write` on the project, as the upload does (anyone may ask
    about a project that doesn't exist yet: 0; the upload creates it). With `part`: of that
    secondary writer's log."""
    app = request.app.state.tracklet
    if check_part(app, part) is None:
        return OffsetResponse(offset=app.copies.offset(project, run_id), part=None)
    return OffsetResponse(offset=app.copies.offset(project, run_id, part=part), part=part)


@router.post(
    "/{project}/{run_id}/primary",
    response_model=PrimaryClaimResponse,
    responses={**errors(400), 409: {"model": PrimaryHeldResponse,
                                    "description": "Another writer holds the run's primary, or the run exists "
                                    "and the claim doesn't resume it: start as a secondary writer"}},
    summary="Claim a shared run's primary",
)
@requires("write", creates=True)
def claim_primary(request: Request, project: str, run_id: str, body: PrimaryClaimRequest
                  ) -> PrimaryClaimResponse | JSONResponse:
    """A shared run's writer (W&B's shared mode without `x_primary`) asks to be the run's primary
    before it starts: the first claim wins, across every server process and node sharing this
    database; the same `token` claiming again is granted again. A claim held by a live writer is
    refused (409, naming its host and pid), and so is one for a run the server holds whose
    claimant doesn't `resume` it: the claimant then starts as a secondary writer. A holder whose
    run finished, failed, crashed or went silent (the server's heartbeat lapse) gives way to a
    claim that resumes the run (docs/shared-runs.md, "Claiming the primary"). Needs `write`, as the
    upload that follows; like it, creates the project."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)  # 400 naming a bad name

    def run_log() -> primaries.RunLog:
        offset = app.copies.offset(project, run_id)
        row = app.store.run(project, run_id, fields=("state", "heartbeat_at")) if offset else None
        return primaries.RunLog(offset, None if row is None else row.get("state"),
                                None if row is None else row.get("heartbeat_at"))

    def taking(previous: primaries.Holder | None) -> None:  # the audit event of a takeover names who held it
        if previous is not None:
            note(request, replaces={"host": previous.host, "pid": previous.pid})
        else:  # (a takeover that lost the race to another: refused, it replaced nobody)
            detail = getattr(request.state, "audit_detail", None)
            if detail:
                detail.pop("replaces", None)

    result = primaries.claim(app.store.engine, project, run_id, token=body.token, host=body.host, pid=body.pid,
                             resume=body.resume, run_log=run_log, lapse=app.indexer.heartbeat_lapse, taking=taking)
    holder = None if result.holder is None else PrimaryHolder(**dataclasses.asdict(result.holder))
    state = result.log.state if result.log.offset else None
    if result.granted:
        assert holder is not None
        return PrimaryClaimResponse(primary=True, holder=holder, state=state, offset=result.log.offset)
    who = ("a writer that didn't claim it" if holder is None
           else f"{holder.host or 'an unnamed host'} (pid {holder.pid})")
    if result.live:
        detail = f"run {project}/{run_id}'s primary is held by {who}, a live writer: start as a secondary writer"
    else:
        detail = (f"run {project}/{run_id} exists on this server ({state or 'not indexed yet'}; its primary was "
                  f"{who}): pass resume to continue it as its primary, or start as a secondary writer")
    refused = PrimaryHeldResponse(detail=detail, primary=False, holder=holder, live=result.live, state=state,
                                  offset=result.log.offset)
    return JSONResponse(status_code=409, content=refused.model_dump())
