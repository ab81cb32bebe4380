"""Traces: the OTLP/HTTP receiver ``POST /v1/traces`` and the read route behind
``tracklet.Api(base_url=...).traces`` (docs/tracing.md).

``/v1/traces`` takes what any OpenTelemetry exporter sends (``application/x-protobuf`` or
``application/json``, optionally gzip), at most ``MAX_TRACES_BODY_BYTES`` after decompression
(413 above; a JSON body is read span by span, and one of more than 200,000 spans, or with a
span too costly to parse, is a 413 too: ``tracklet/tracing/otlp_json.py``). Each resource's spans go to the project the ``X-Tracklet-Project`` header names,
else its ``tracklet.project`` resource attribute, else its ``service.name``; the sender needs
write access there (a new project is created for them, as an upload does). Spans that can't be
stored (bad ids, a bad project name) are counted in OTLP's partial success, not the whole request.
Decoding and the insert run in a worker thread, off the event loop.
"""

from __future__ import annotations

from typing import Any

import re

from fastapi import HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from tracklet.core.layout import check_name
from tracklet.server.body import bounded_router, read_body
from tracklet.server.models import errors

router = bounded_router(tags=["traces"])

MAX_TRACES_BODY_BYTES = 16 << 20


@router.post("/v1/traces", summary="Receive OTLP/HTTP trace exports (protobuf or JSON, gzip)",
             responses=errors(400, 413, 415, 503), response_class=Response)
async def receive_traces(request: Request) -> Response:
    from tracklet.server.audit import AuditMiddleware, record_in
    from tracklet.errors import OtlpTooLarge, SpanWriterBusy
    from tracklet.tracing.otlp import JSON, PROTOBUF, Decoded, OtlpError, decode, response_body

    state = request.app.state.tracklet
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in (PROTOBUF, JSON):
        raise HTTPException(status_code=415, detail=f"unsupported Content-Type {content_type[:100]!r}: send "
                                                    f"{PROTOBUF} or {JSON} (OTLP/HTTP)")
    body = await read_body(request, min(state.max_body_bytes, MAX_TRACES_BODY_BYTES))
    project = request.headers.get("x-tracklet-project") or None
    run = request.headers.get("x-tracklet-run") or None
    if project is not None:
        check_name("project", project)  # InvalidName: 400 naming the problem
    if run is not None:
        check_name("run id", run)
    audited = any(middleware.cls is AuditMiddleware for middleware in request.app.user_middleware)
    authorizer = state.authorizer

    def ingest(arrival: Any) -> Decoded:
        """Decode, check write access to each project named, store: one worker thread for all of
        it (a hop to the thread pool per step cost more server CPU than a small request's spans)."""
        decoded = decode(body, content_type, project=project, run=run)
        if authorizer is not None:
            for name in decoded.by_project:
                authorizer.check(request, name, "write", create=True)
        for name, rows in decoded.by_project.items():  # answered once committed (store/spans_writer.py)
            # The writer thread's transaction carries the request's audit event, where the app
            # audits (audit.py's unit of work follows the request's own threads only).
            state.store.add_received_spans(name, rows,
                                           (lambda connection: record_in(connection, request)) if audited else None,
                                           arrival)
        return decoded

    # Announced to the span writer while decoding, so that concurrent requests' spans share a
    # transaction (store/spans_writer.py).
    with state.store.span_writer().arriving() as arrival:
        try:
            decoded = await run_in_threadpool(ingest, arrival)
        except OtlpTooLarge as error:  # nothing stored; a smaller request would be taken
            raise HTTPException(status_code=413, detail=str(error)) from None
        except OtlpError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        except SpanWriterBusy as error:  # OTLP exporters retry a 503 after Retry-After
            raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "1"}) from None
    payload, media_type = response_body(content_type, decoded)
    return Response(content=payload, media_type=media_type)


class TraceSpanModel(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    duration_ms: float
    status: str
    status_message: str
    step: int | None
    run_id: str
    source: str  # "log" (a run's @tracklet.op) or "otlp" (received at /v1/traces)
    operation: str
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    input_cost: float | None = None  # USD, from the price table (docs/tracing.md, "Cost")
    output_cost: float | None = None
    cost: float | None = None
    input: str  # JSON text, "" when stored as a blob (input_blob) or not captured
    input_blob: str
    output: str
    output_blob: str
    attributes: dict[str, Any]
    events: list[Any]
    links: list[Any]


class TraceModel(BaseModel):
    trace_id: str
    start_ns: int
    end_ns: int
    run_id: str
    input_tokens: int | None = None  # sums over the trace's spans
    output_tokens: int | None = None
    cost: float | None = None
    spans: list[TraceSpanModel]


class TracesResponse(BaseModel):
    """The project's latest traces, newest first, each with its spans by start."""

    traces: list[TraceModel]


@router.get("/api/v1/projects/{project}/traces", summary="A project's latest traces with their spans",
            responses=errors(404))
def list_traces(request: Request, project: str, run: str | None = None, limit: int = Query(100, ge=1, le=10_000),
                name: str | None = None, status: str | None = None, operation: str | None = None,
                provider: str | None = None, model: str | None = None, kind: str | None = None,
                source: str | None = None, trace_id: str | None = None) -> TracesResponse:
    filters = {key: value for key, value in (("name", name), ("status", status), ("operation", operation),
                                             ("provider", provider), ("model", model), ("kind", kind),
                                             ("source", source), ("trace_id", trace_id)) if value is not None}
    rows = request.app.state.tracklet.store.traces(project, run_id=run, filters=filters, limit=limit)
    return TracesResponse(traces=[TraceModel(**row) for row in rows])


_DIGEST = re.compile(r"[0-9a-f]{64}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_blobs(spans: list[dict[str, Any]]) -> dict[str, str]:
    """The blobs a trace's spans reference, with their MIME type where it is known: payloads
    stored as blobs (JSON over 8 KiB) and the media their payloads hold (the ``tracklet.media``
    attribute: images, audio, ... and long bytes; ``tracklet/tracing/media.py``), typed from their
    bytes when served."""
    from tracklet.tracing.media import MEDIA_ATTRIBUTE

    found: dict[str, str] = {}
    for span in spans:
        media = (span.get("attributes") or {}).get(MEDIA_ATTRIBUTE)
        for digest in media if isinstance(media, list) else []:
            if isinstance(digest, str):
                found.setdefault(digest, "")
        for field in ("input_blob", "output_blob"):
            if span.get(field):
                found[span[field]] = "application/json"
    return found


@router.get("/api/v1/projects/{project}/traces/{trace_id}/blobs/{digest}", responses={**errors(400, 404), 200: {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    response_class=Response, summary="A blob a trace's spans reference: a media argument or result, a large payload")
def get_trace_blob(request: Request, project: str,
                   trace_id: str = Path(..., description="The trace's id (32 lowercase hex digits)"),
                   digest: str = Path(..., description="The blob's sha256, as a span of the trace names it")) -> Response:
    """The bytes of an image, audio clip, video or long bytes an op took or returned (a span's
    payload holds ``{"_type": "tracklet.media", "sha256": ...}`` in its place), or of a payload
    stored as a blob; only blobs the trace's spans name, checked against the digest."""
    from tracklet.server.media_blobs import blob_response

    if not _TRACE_ID.fullmatch(trace_id):
        raise HTTPException(status_code=400, detail="a trace is named by its id (32 lowercase hex digits)")
    if not _DIGEST.fullmatch(digest):
        raise HTTPException(status_code=400, detail="a blob is named by its sha256 (64 lowercase hex digits)")
    check_name("project", project)
    rows = request.app.state.tracklet.store.traces(project, filters={"trace_id": trace_id}, limit=1)
    named = trace_blobs(rows[0]["spans"]) if rows else {}
    if digest not in named:
        raise HTTPException(status_code=404, detail=f"no span of trace {trace_id} in {project} names blob {digest}")
    return blob_response(request, project, digest, named[digest] or None, "blob")
