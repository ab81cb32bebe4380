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

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from tracklet.media.retention import read_cutoffs
from tracklet.server.logs import run_paths
from tracklet.server.media_blobs import blob_response
from tracklet.server.models import errors

router = APIRouter(prefix="/api/v1/runs", tags=["read"])

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
    step: int
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


def _rows(request: Request, project: str, run_id: str, key: str | None) -> list[dict[str, Any]]:
    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)  # 400 for a bad name
    if app.store.run(project, run_id, fields=("run_id",)) is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    rows = list(app.store.media(project, run_id, key))
    try:  # a retention policy applied to the run (`tracklet media prune`): its retired items are left out
        cutoffs = read_cutoffs(paths.run_dir)
    except ValueError:  # a damaged policy file: everything, as logged (the read API names the file)
        cutoffs = {}
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
    rows = _rows(request, project, run_id, None)
    mime = _mime_of(rows, digest)
    if mime is None:
        raise HTTPException(status_code=404, detail=f"run {project}/{run_id} logged no media file {digest}")
    return blob_response(request, project, digest, mime, "media file")


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
