"""Where the media and table read routes (``routes_media.py``, ``routes_tables.py``) find the blobs
a run's ``MediaLogged`` and ``TableLogged`` records name: ``media_blobs(request)``.

- ``tracklet ui`` (a local data root, ``shared_root``): the data root's artifacts directory
  (``artifact_dir``: ``<root>/artifacts`` or ``$TRACKLET_ARTIFACT_DIR``), where the run's own
  media worker wrote them.
- A tracking server: its artifacts' blob store (``artifact_blobs.py``: ``<dir>/artifacts`` or
  ``--artifacts URL``), which ``tracklet sync`` and online mode fill before they send the records
  (``client/media_sync.py``). A blob is served for a run only when the run's project holds it (a
  grant: someone with ``write`` there sent its bytes), so a record naming another project's
  digest reads nothing (a blob no project holds, written by runs recorded in the server's own
  data root rather than uploaded, is served for the runs naming it). Table fragments on an object store are copied (verified) into
  ``<dir>/cache/table-fragments`` for DuckDB, which reads local files.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse

from tracklet.artifacts.blobs import FsspecBlobStore
from tracklet.errors import ArtifactError
from tracklet.server.byte_ranges import IMMUTABLE, headers_alone, unchanged
from tracklet.server.fragment_cache import FragmentCache
from tracklet.server.verified_files import PieceReader, VerifiedFiles

if TYPE_CHECKING:
    from tracklet.server.artifact_blobs import ServerArtifacts

FRAGMENT_CACHE = "table-fragments"  # under <server dir>/cache
#: A blob up to this size is answered from memory, read whole and checked; a larger one from a
#: file checked on disk in 1 MiB pieces (a media record or a table's media cell, from an upload,
#: may name any blob its project holds: serving it must not cost its size in memory).
IN_MEMORY_BYTES = 16 << 20


class CheckedFile(NamedTuple):
    """A checked local file of the store, to be read through ``open()``'s :class:`PieceReader`
    (each piece sent compared with its hash from the check: ``verified_files.py``)."""

    path: Path
    open: Callable[[], PieceReader]


class _AsyncPieces:
    """A :class:`PieceReader` behind the ``seek``/``read`` a ``FileResponse`` awaits, in a
    worker thread as Starlette's own file reads."""

    def __init__(self, reader: PieceReader) -> None:
        self._reader = reader

    async def seek(self, position: int) -> int:
        return self._reader.seek(position)

    async def read(self, size: int) -> bytes:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._reader.read, size)


class CheckedFileResponse(FileResponse):
    """Starlette's ``FileResponse`` (``Range``, ``If-Range``, ``HEAD``, multipart ranges) whose
    bytes are read through a :class:`CheckedFile`'s reader: a damaged piece ends the response
    before any of its bytes are sent."""

    def __init__(self, checked: CheckedFile, **options: Any) -> None:
        super().__init__(checked.path, **options)
        self._checked = checked

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        extensions = scope.get("extensions") or {}
        if "http.response.pathsend" in extensions:  # the server would send the file itself, unchecked
            scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k != "http.response.pathsend"}}
        try:
            await super().__call__(scope, receive, send)
        except OSError as error:  # a damaged piece, or the disk failing: the response ends here, cut off
            import logging

            logging.getLogger("tracklet.server").warning("media blob not served in full: %s", error)

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:  # Starlette's one opening of the file
        import anyio.to_thread

        reader = await anyio.to_thread.run_sync(self._checked.open)
        try:
            yield _AsyncPieces(reader)
        finally:
            reader.close()


class MediaBlobs:
    """The blobs a served data root's media and tables read (see the module); ``artifacts``: a
    tracking server's ``ServerArtifacts`` (grants checked), ``None`` for a local data root."""

    def __init__(self, blobs: FsspecBlobStore, artifacts: ServerArtifacts | None, cache_dir: Path,
                 cache_bytes: int | None = None) -> None:
        self.blobs = blobs
        self.artifacts = artifacts
        self.cache_dir = cache_dir
        self.cache = FragmentCache(cache_dir, cache_bytes)
        self.verified = VerifiedFiles()  # large blob files checked, while unchanged on disk

    def held(self, project: str, digests: list[str]) -> set[str]:
        """Which of ``digests`` the project may read: all of them on a local data root; on a
        server those the project holds, and those no project holds (written into the server's
        data root by runs recorded there, not uploaded: nobody's upload to protect)."""
        if self.artifacts is None:
            return set(digests)
        held = self.artifacts.holding(project, digests)
        others = [digest for digest in digests if digest not in held]
        if others:
            held |= set(others) - self.artifacts.claimed(others)
        return held

    def read_bytes(self, project: str, digest: str) -> bytes | None:
        """The blob's bytes, checked against the digest; ``None`` when the project holds no such
        blob, or it is missing or damaged."""
        if digest not in self.held(project, [digest]):
            return None
        try:
            return bytes(self.blobs.read_bytes(digest))
        except (ArtifactError, OSError):
            return None

    def served(self, project: str, digest: str) -> bytes | Path | CheckedFile | None:
        """What a route answers for the blob: its bytes (up to ``IN_MEMORY_BYTES``) or a local file
        holding it (larger: a copy in the cache for an object store), checked against the digest
        either way; ``None`` when the project holds no such blob, or it is missing or damaged. A
        large file of the store is hashed once while it stays unchanged on disk
        (``verified_files.py``): a video's ``Range`` requests don't each hash it whole, and each
        reads it through a ``CheckedFile`` (the pieces it sends checked against their hashes)."""
        try:
            size = self.blobs.size(digest)
        except (FileNotFoundError, ArtifactError, OSError):
            size = None
        if size is None or size <= IN_MEMORY_BYTES:
            return self.read_bytes(project, digest)
        path = self.local_file(project, digest)
        if path is None or path != self.blobs.local_path(digest):
            return path  # None, or a cached copy checked as it was made
        pieces = self.verified.pieces(path, digest)
        if pieces is None:
            return None  # damaged in the store: not served
        return CheckedFile(path, lambda: self.verified.reader(path, digest, pieces))

    def stored_size(self, project: str, digest: str) -> int | None:
        """The blob's size from the store's metadata (a ``stat``, an object's or a pack row's length),
        without reading it: what a ``HEAD`` answers from, the blob being named by its digest; ``None``
        when the project holds no such blob or it is missing. (Damage is found by the GET that reads it.)"""
        if digest not in self.held(project, [digest]):
            return None
        try:
            return self.blobs.size(digest)
        except (FileNotFoundError, ArtifactError, OSError):
            return None

    def local_file(self, project: str, digest: str) -> Path | None:
        """A local file holding the blob (for DuckDB), or ``None`` when the project holds no such
        blob or it is missing; an object store's blob is copied into the cache first, verified."""
        if digest not in self.held(project, [digest]):
            return None
        path = self.blobs.local_path(digest)
        if path is not None:
            return path if path.is_file() else None
        found = self.cache.get(digest)
        if found is not None:
            return found
        cached = self.cache.path(digest)
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_name(f".{digest}.{uuid.uuid4().hex}.tmp")
        hasher = hashlib.sha256()
        try:
            with self.blobs.open(digest) as source, open(temporary, "wb") as target:
                while chunk := source.read(1 << 20):
                    hasher.update(chunk)
                    target.write(chunk)
            if hasher.hexdigest() != digest:
                return None  # damaged in the store: not served
            os.replace(temporary, cached)
        except (FileNotFoundError, ArtifactError):
            return None
        finally:
            temporary.unlink(missing_ok=True)
        self.cache.added(digest)
        return cached


def media_blobs(request: Request) -> MediaBlobs:
    """The app's ``MediaBlobs``: set by ``create_app``, else (an app made otherwise) the served
    data root's artifacts directory."""
    state = request.app.state
    found: MediaBlobs | None = getattr(state, "media_blobs", None)
    if found is None:
        from tracklet.artifacts.storage import artifact_dir

        root = state.tracklet.root
        found = MediaBlobs(FsspecBlobStore(artifact_dir(root)), None, root / "cache" / FRAGMENT_CACHE)
        state.media_blobs = found
    return found


def set_media_blobs(app: FastAPI, root: Path, artifacts: ServerArtifacts | None) -> None:
    """Serve media and table blobs from a server's ``artifacts`` (``ServerArtifacts``), or, with
    ``None``, from data root ``root``'s artifacts directory (``tracklet ui``)."""
    from tracklet.artifacts.storage import artifact_dir

    blobs = artifacts.blobs if artifacts is not None else FsspecBlobStore(artifact_dir(root))
    app.state.media_blobs = MediaBlobs(blobs, artifacts, root / "cache" / FRAGMENT_CACHE)


def _blob_headers(digest: str) -> dict[str, str]:
    """What every answer about blob ``digest`` carries (a GET's, a HEAD's, a 304's): user content
    never sniffed as a page of this origin, immutable under its content's name."""
    return {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
            "Cache-Control": IMMUTABLE, "ETag": f'"{digest}"'}


def head_response(request: Request, project: str, digest: str, mime: str | None, what: str,
                  missing: str) -> Response | None:
    """A ``HEAD``'s answer for blob ``digest`` with the headers its GET sends, from metadata alone:
    one held in memory by a GET (``IN_MEMORY_BYTES`` or less) by its stored size, a larger one of a
    local store as the GET's ``FileResponse`` of the same file describes it (a ``stat``). None for a
    larger one of an object store (its GET serves a checked copy in the cache: that path answers)."""
    blobs = media_blobs(request)
    size = blobs.stored_size(project, digest)
    if size is None:
        raise HTTPException(status_code=404, detail=f"{what} {digest} is missing or damaged in the blob store{missing}")
    headers = _blob_headers(digest)
    cached = unchanged(request, headers)
    if cached is not None:
        return cached
    path = blobs.blobs.local_path(digest) if size > IN_MEMORY_BYTES else None
    if size > IN_MEMORY_BYTES and path is None:
        return None
    if mime is None:  # a blob logged without a type (a trace's, a table's): its first bytes say (a GET sniffs too)
        from tracklet.tracing.media import sniff_mime

        with blobs.blobs.open(digest) as handle:
            mime = sniff_mime(handle.read(4096))
    if path is not None:
        return FileResponse(path, media_type=mime, headers=headers)  # a HEAD: its stat headers, no body
    return headers_alone(200, {**headers, "Content-Length": str(size)}, mime)


def blob_response(request: Request, project: str, digest: str, mime: str | None, what: str,
                  missing: str = " (on a server: not uploaded yet; `tracklet sync` sends it)") -> Response:
    """The bytes of blob ``digest`` of ``project`` (``what`` names it in a 404, ``missing`` says
    why it may be), served immutable and sandboxed (a blob is user content: never sniffed as a
    page of this origin); a large one streamed from a checked file (``MediaBlobs.served``). An
    ``If-None-Match`` naming the digest is a 304, a ``HEAD`` the headers alone, from the store's
    metadata: the blob is named by its digest, so its ETag is known and only its size is looked up
    (``head_response``), never its bytes read."""
    if request.method == "HEAD":
        answered = head_response(request, project, digest, mime, what, missing)
        if answered is not None:
            return answered
    found = media_blobs(request).served(project, digest)
    if found is None:
        raise HTTPException(status_code=404, detail=f"{what} {digest} is missing or damaged in the blob store{missing}")
    headers = _blob_headers(digest)
    cached = unchanged(request, headers)
    if cached is not None:
        return cached
    if mime is None:
        from tracklet.tracing.media import sniff_mime

        if isinstance(found, (Path, CheckedFile)):
            with open(found if isinstance(found, Path) else found.path, "rb") as handle:
                mime = sniff_mime(handle.read(4096))
        else:
            mime = sniff_mime(found)
    if isinstance(found, bytes) and request.method == "HEAD":  # a file's answer (below) sends a HEAD's headers itself
        return headers_alone(200, {**headers, "Content-Length": str(len(found))}, mime)
    if isinstance(found, CheckedFile):
        return CheckedFileResponse(found, media_type=mime, headers=headers)
    if isinstance(found, Path):
        return FileResponse(found, media_type=mime, headers=headers)
    return Response(found, media_type=mime, headers=headers)
