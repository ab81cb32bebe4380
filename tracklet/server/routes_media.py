"""Read API for a run's logged media (docs/media.md), from the store's ``media`` index and the
artifacts' blob store of the served data root.

``GET .../media`` lists the run's media (``key``, ``kind``: only those), by step; ``GET
.../media/{digest}`` answers one of the run's blobs (a media file, its thumbnail or a mask): only
digests the run's media name are served (a run's readers must not reach other blobs of the store),
with the item's MIME type, ``nosniff``, content-addressed caching, and ``Content-Security-Policy:
sandbox`` (no ``allow-same-origin``), so an HTML item can't act on the dashboard's origin even
when opened directly. Blobs come from ``media_blobs.py``: on a tracking server its artifacts' blob
store, and only blobs the run's project holds (``tracklet sync`` and online mode send them).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tracklet.server.auth import requires
from tracklet.server.logs import run_paths
from tracklet.server.media_blobs import blob_response
from tracklet.server.models import INT64_MAX, JsonStep, errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])
projects_router = bounded_router(prefix="/api/v1/projects", tags=["media"])

_DIGEST = re.compile(r"[0-9a-f]{64}")


class MediaMaskRef(BaseModel):
    name: str
    digest: str  # a PNG of class ids: GET .../media/{digest}
    class_labels: dict[str, str] = {}  # class id (as text) -> label


class MediaBox(BaseModel):
    """Corners as fractions of the image's width/height, or pixels when `pixel`."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float
    pixel: bool
    class_id: int
    caption: str
    scores: dict[str, float]


class MediaBoxesRef(BaseModel):
    name: str
    count: int  # boxes in the group (the first 1,000 are listed)
    boxes: list[MediaBox] = []
    class_labels: dict[str, str] = {}


class MediaEntry(BaseModel):
    """One logged media item (a `MediaLogged` record, as the store indexed it)."""

    key: str
    step: JsonStep  # past 2**53 - 1: a string of its digits (exact in JavaScript)
    index: int  # place in a list logged under the key
    kind: str  # image, audio, video, html, object3d, molecule
    digest: str  # the file: GET .../media/{digest}
    format: str
    mime: str
    size_bytes: int
    width: int
    height: int
    duration: float
    caption: str
    thumbnail: str  # digest of a PNG at most 256 px, "" if none (a small image is its own)
    time: float
    masks: list[MediaMaskRef]
    boxes: list[MediaBoxesRef]


class MediaListResponse(BaseModel):
    """The run's media, by step, then place in the logged list."""

    media: list[MediaEntry]


def _rows(request: Request, project: str, run_id: str, key: str | None, digest: str | None = None) -> list[dict[str, Any]]:
    """The run's media rows (``key``'s; with ``digest``, only those that may name it), less those
    a retention policy retired."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)  # 400 for a bad name
    if app.store.run(project, run_id, fields=("run_id",)) is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    rows = list(app.store.media(project, run_id, key) if digest is None else app.store.media_naming(project, run_id, digest))
    try:  # a retention policy applied to the run (`tracklet media prune`): its retired items are left out
        # (beside its log; on a --logs server beside its segments, read again after segments.RETENTION_TTL)
        cutoffs = app.copies.media_cutoffs(project, run_id)
    except ValueError:  # a damaged policy file: everything, as logged (the read API names the file)
        cutoffs = {}
    cutoffs = {app.store.media_key(key): step for key, step in cutoffs.items()}  # as logged; rows: as stored
    return [row for row in rows if row["step"] >= cutoffs.get(row["key"], row["step"])] if cutoffs else rows


def _entry(row: dict[str, Any]) -> MediaEntry:
    extra = row.get("extra") or {}
    return MediaEntry(
        key=row["key"], step=row["step"], index=row["idx"], kind=row["kind"], digest=row["digest"],
        format=row["format"], mime=row["mime"], size_bytes=row["size_bytes"], width=row["width"],
        height=row["height"], duration=row["duration"], caption=row["caption"], thumbnail=row["thumbnail"],
        time=row["time"], masks=[MediaMaskRef(**mask) for mask in extra.get("masks", [])],
        boxes=[MediaBoxesRef(**group) for group in extra.get("boxes", [])],
    )


@router.get("/{project}/{run_id}/media", response_model=MediaListResponse, responses=errors(400, 404),
            summary="A run's logged media (images, audio, video, ...)")
def list_media(
    request: Request,
    project: str,
    run_id: str,
    key: str | None = Query(None, max_length=1024, description="Only media logged under this key"),
    kind: str | None = Query(None, max_length=16, description="Only this kind: image, audio, video, html, ..."),
) -> MediaListResponse:
    """Every media item the run logged (or those under `key`, of `kind`), with the digests of its
    file, thumbnail and masks, which `GET .../media/{digest}` serves."""
    rows = _rows(request, project, run_id, key)
    return MediaListResponse(media=[_entry(row) for row in rows if kind is None or row["kind"] == kind])


@router.get("/{project}/{run_id}/media/{digest}", responses={**errors(400, 404), 200: {"content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    response_class=Response, summary="A file of a run's media (by sha256)")
def get_media_file(request: Request, project: str, run_id: str,
                   digest: str = Path(..., description="The sha256 of a file the run's media name")) -> Response:
    """The bytes of a media file, thumbnail or mask of this run, checked against the digest."""
    if not _DIGEST.fullmatch(digest):
        raise HTTPException(status_code=400, detail="a media file is named by its sha256 (64 lowercase hex digits)")
    rows = _rows(request, project, run_id, None, digest)  # the rows naming it, found by the database
    mime = _mime_of(rows, digest)
    if mime is None:
        raise HTTPException(status_code=404, detail=f"run {project}/{run_id} logged no media file {digest}")
    return blob_response(request, project, digest, mime, "media file")


# HEAD: the same function (it answers the headers alone); not a second operation in the OpenAPI document
router.add_api_route("/{project}/{run_id}/media/{digest}", get_media_file, methods=["HEAD"], include_in_schema=False)


def _mime_of(rows: list[dict[str, Any]], digest: str) -> str | None:
    """The MIME type the run's media give ``digest`` (thumbnails and masks are PNGs); None if no
    media item of the run names it."""
    for row in rows:
        if row["digest"] == digest:
            return str(row["mime"]) or "application/octet-stream"
        if row["thumbnail"] == digest or any(mask.get("digest") == digest
                                             for mask in (row.get("extra") or {}).get("masks", [])):
            return "image/png"
    return None


class MediaRetention(BaseModel):
    """A run's media retention: each key's first kept step (items before it are retired)."""

    keys: dict[str, int] = Field(..., max_length=10_000)
    policy: dict[str, Any] = Field(default_factory=dict, description="What retired them (keep_last, max_bytes)")


@router.put("/{project}/{run_id}/media/retention", response_model=MediaRetention, responses=errors(400, 404),
            summary="Move a run's media retention forward (tracklet sync sends a pruned run's)")
def put_media_retention(request: Request, project: str, run_id: str, body: MediaRetention) -> MediaRetention:
    """Each key's first kept step becomes the later of the server's and the body's (retention
    only moves forward: an item retired stays retired); answers the retention now in force. The
    retired items leave the media list; their blobs go with the next `POST
    /api/v1/projects/{project}/media/prune` on the server."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)  # 400 for a bad name
    if app.store.run(project, run_id, fields=("run_id",)) is None or not app.copies.has_log(project, run_id):
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server: sync its log first")
    if any(step < 0 or step > INT64_MAX + 1 or len(key) > 1024 for key, step in body.keys.items()):
        raise HTTPException(status_code=400, detail="retention keys are media keys (at most 1,024 characters) "
                            "mapped to a first kept step from 0 to 2**63 (past every step: the key retired whole)")
    try:
        merged = app.copies.merge_media_cutoffs(project, run_id, body.keys, body.policy)
    except ValueError as error:  # the server's own file is damaged
        raise HTTPException(status_code=400, detail=str(error)) from None
    return MediaRetention(keys=merged, policy=body.policy)


class MediaPruneRequest(BaseModel):
    """`tracklet media prune --url`: the policy, as the command's options."""

    keep_last: int | None = Field(None, ge=0, description="Per run and key, keep the media of the last N steps")
    max_bytes: int | None = Field(None, ge=0, description="Then retire a run's oldest steps until the rest fits")
    keys: list[str] | None = Field(None, max_length=1000, description="Only these keys (default: every key)")
    dry_run: bool = False
    keep_blobs: bool = Field(False, description="Retire the items but remove no stored blob")
    grace_seconds: float = Field(3600.0, ge=0, description="Keep blobs an upload used more recently than this")
    cursor: str | None = Field(None, max_length=200, description="The `next_cursor` of the prune's previous answer "
                               "(send the same options with it); none: a prune starts. Sent again (the answer was "
                               "lost), the page is answered as it was, nothing done twice")
    prune_id: str | None = Field(None, pattern="^[0-9a-f]{32}$", description="With no `cursor`: the new prune's id, "
                                 "chosen by the client (32 lowercase hex digits), so that a first page sent again "
                                 "(its answer lost) is answered as it was, nothing done twice. A server whose logs "
                                 "are segments (`--logs`) only")
    max_runs: int = Field(100, ge=1, le=100, description="Runs (their logs) this request reads at most: a server "
                          "whose logs are segments (`--logs`) answers the prune in pages")


class MediaPruneRun(BaseModel):
    run_id: str
    retired: int  # items this prune retires
    retired_bytes: int
    kept_from: dict[str, int]  # each key's first kept step


class MediaPruneResponse(BaseModel):
    """What a prune retired and removed (`note`: why no blob was removed, when none could be). On
    a server whose logs are segments (`--logs`) one answer is one page of the prune: `runs` are the
    runs this page retired in; the blob counts and `note` are the prune's so far (final on the
    answer whose `next_cursor` is null); send the same request with `cursor` set to `next_cursor`
    until it is null."""

    runs: list[MediaPruneRun]
    blobs_removed: int
    bytes_freed: int
    blobs_kept_shared: int  # named by something besides the retired items, or held by another project
    grants_dropped: int  # the project's claims on blobs released (a packed blob's bytes: artifact-gc --repack)
    note: str
    next_cursor: str | None = Field(None, description="Send it back (`cursor`) for the prune's next page; "
                                    "null: the prune is over")
    phase: str = Field("", description="What this page did: retire (the project's runs planned and retired), seen "
                       "(every run's logs searched for the retired blobs), remove (blobs removed)")
    done: int = Field(0, description="What the phase has gone through so far: runs read, or blobs decided")


@projects_router.post("/{project}/media/prune", response_model=MediaPruneResponse, responses=errors(400, 403),
                      summary="Apply a media retention policy to a project's runs (admin)")
@requires("admin")
def prune_media(request: Request, project: str, body: MediaPruneRequest) -> MediaPruneResponse:
    """Retire the media before each key's last `keep_last` steps (then the oldest past `max_bytes`)
    in every run of the project; remove the blobs from the server's store (local or S3) that
    nothing else names: no kept item, run, table cell or artifact version, and no other
    project's grant (docs/media.md, "Retention"). Needs `admin` on the project. On a server
    whose logs are segments (`--logs`) the prune is answered in pages of at most `max_runs` runs
    read (`next_cursor`); a page asked for again with the same `cursor` (or, the first, the same
    `prune_id`) is answered as it was, so a client may retry one whose answer it lost."""
    from tracklet.server.media_retention import prune, prune_page
    from tracklet.server.segments import SegmentCopies

    app = request.app.state.tracklet  # the guard checked `admin` (requires)
    if body.keep_last is None and body.max_bytes is None:
        raise HTTPException(status_code=400, detail="say what to keep: keep_last, max_bytes, or both")
    if isinstance(app.copies, SegmentCopies):
        page = prune_page(app.copies, app.root, app.artifacts, app.store, project, keep_last=body.keep_last,
                          max_bytes=body.max_bytes, keys=body.keys, dry_run=body.dry_run, keep_blobs=body.keep_blobs,
                          grace=body.grace_seconds, cursor=body.cursor, max_runs=body.max_runs,
                          prune_id=None if body.cursor is not None else body.prune_id)
        return MediaPruneResponse(
            runs=[MediaPruneRun(run_id=run.run_id, retired=run.newly_retired, retired_bytes=run.newly_retired_bytes,
                                kept_from=run.cutoffs) for run in page.runs if run.newly_retired],
            blobs_removed=page.blobs_removed, bytes_freed=page.bytes_freed, blobs_kept_shared=page.blobs_kept_shared,
            grants_dropped=page.grants_dropped, note=page.note, next_cursor=page.next, phase=page.phase,
            done=page.done)
    if body.cursor is not None:
        raise HTTPException(status_code=400, detail="cursor: this server answers a prune in one page; "
                            "start the prune again without it")
    report, blobs = prune(app.root, app.artifacts, app.store, project, keep_last=body.keep_last,
                          max_bytes=body.max_bytes, keys=body.keys, dry_run=body.dry_run, keep_blobs=body.keep_blobs,
                          grace=body.grace_seconds)
    runs = [MediaPruneRun(run_id=run.run_id, retired=run.newly_retired, retired_bytes=run.newly_retired_bytes,
                          kept_from=run.cutoffs) for run in report.runs if run.newly_retired]
    return MediaPruneResponse(runs=runs, blobs_removed=report.blobs_removed, bytes_freed=report.bytes_freed,
                              blobs_kept_shared=report.blobs_kept_shared + blobs.kept_granted,
                              grants_dropped=blobs.grants_dropped, note=report.blobs_note or _running_note(blobs),
                              next_cursor=None, phase="", done=len(report.runs))


def _running_note(blobs: Any) -> str:
    """Why blobs no project holds were kept (a run of the server running: ``ServerMediaBlobs``)."""
    if not blobs.kept_running:
        return ""
    return (f"{blobs.kept_running} blob(s) no project holds kept: run {blobs.running} is still running (it may be "
            "storing the same bytes); prune again when no run is")
