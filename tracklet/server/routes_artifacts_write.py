"""Artifacts over HTTP: a project's blobs (which it lacks, upload, ranged download), resumable
uploads of large blobs, and committing a version (docs/server.md, docs/artifacts.md). Versions
and collections are read through ``routes_artifacts_read.py`` (the dashboard's routes).

Under ``/api/v1/projects/{project}/artifacts``: ``_blobs``, ``_uploads``, ``_chunks``, ``_packs`` and
``_files`` can't be artifact
names (a name starts with a letter or digit), so they never shadow a collection. Writing (POST,
PUT) needs the project's ``write`` role, reading ``read`` (``require_access``). The storage side
is ``artifact_blobs.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.from_thread
from fastapi import Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from tracklet.artifacts.fields import CollectionEdit, VersionEdit
from tracklet.artifacts.lookup import refused_guarded
from tracklet.artifacts.names import check_artifact_name
from tracklet.errors import ArtifactError, ArtifactNotFound
from tracklet.server.artifact_blobs import (MAX_PARTS, NotHeld, ServerArtifacts, Session, check_digest,
                                            check_file_digest)
from tracklet.server import audit
from tracklet.server.audit import arm, armed, arms_itself
from tracklet.server.auth import requires
from tracklet.server.params import version_param
from tracklet.server.body import bounded_router, read_body, read_body_into
from tracklet.server.events import alias_versions, removal_events, version_events
from tracklet.server.logs import BadRequest
from tracklet.server.byte_ranges import IMMUTABLE, headers_alone, range_answer, unchanged
from tracklet.server.models import (BatchResponse, BlobQuery, BlobQueryResponse, ChunkQuery, ChunkQueryResponse,
                                    CollectionDeleteResponse, CollectionUpdateRequest, CollectionUpdateResponse,
                                    CommitRequest, CommitResponse, FileRequest, FileResponse, PutBlobResponse,
                                    PutPackResponse, RejectedBlob, UploadPart, UploadRequest, UploadSession,
                                    VersionAliasesRequest, VersionAliasesResponse, VersionDeleteResponse,
                                    VersionEditRequest, errors)
from tracklet.server.routes_artifacts_read import _version_model

router = bounded_router(prefix="/api/v1/projects/{project}/artifacts", tags=["artifacts"])

_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The blob's bytes (or one part's), uncompressed.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_PIECE = 1 << 20  # bytes handed from the event loop to the writing thread at a time


def _artifacts(request: Request) -> ServerArtifacts:
    return request.app.state.tracklet.artifacts


def _name(name: str) -> str:
    try:
        return check_artifact_name(name)
    except ArtifactError as error:
        raise BadRequest(str(error)) from None


def _not_found(error: Exception) -> HTTPException:
    return HTTPException(status_code=404, detail=str(error))


# ------------------------------------------------------------------------ blobs


@router.post("/_blobs/missing", response_model=BlobQueryResponse, responses=errors(400),
             summary="Which of these blobs does the project lack?")
@requires("write", creates=True)
def missing_blobs(request: Request, project: str, query: BlobQuery) -> BlobQueryResponse:
    """Of up to 1,000 sha256 digests, those the project doesn't hold: the ones to upload. More
    digests in one request: 400 naming the limit."""
    return BlobQueryResponse(missing=_artifacts(request).missing(project, query.digests))


async def stream_body(request: Request, limit: int) -> Iterator[bytes]:
    """The request body as an iterator for a worker thread (each ``next`` hops to the event loop
    for about ``_PIECE`` bytes): bounded memory, whatever the body's size. 413 past ``limit``."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise HTTPException(status_code=415, detail=f"blobs are sent uncompressed; got Content-Encoding {encoding!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"a blob of {declared} bytes is more than one request may carry "
                            f"({limit} bytes): use an upload session (POST .../_uploads)")
    source = request.stream().__aiter__()
    received = 0

    async def piece() -> bytes | None:
        nonlocal received
        pieces: list[bytes] = []
        size = 0
        while size < _PIECE:
            try:
                chunk = await source.__anext__()
            except StopAsyncIteration:
                break
            pieces.append(chunk)
            size += len(chunk)
        received += size
        if received > limit:
            raise HTTPException(status_code=413, detail=f"the body is more than {limit} bytes")
        return b"".join(pieces) if pieces else None

    def chunks() -> Iterator[bytes]:
        while (data := anyio.from_thread.run(piece)) is not None:
            yield data

    return chunks()


@router.put("/_blobs/{digest}", response_model=PutBlobResponse, responses=errors(400, 413, 415),
            openapi_extra=_RAW_BODY, summary="Upload a blob (streamed, verified)")
@arms_itself
@requires("write", creates=True)
async def put_blob(request: Request, project: str, digest: str) -> PutBlobResponse:
    """Store the body as blob `digest` of the project: streamed to a temporary name while its
    sha256 is computed, made visible only if it matches (else 400, nothing stored). Sending a
    blob the server has stores nothing new. Blobs larger than the server's body limit go through
    an upload session."""
    artifacts = _artifacts(request)
    check_digest(digest)
    chunks = await stream_body(request, request.app.state.tracklet.max_body_bytes)
    try:
        size = await run_in_threadpool(armed, request, artifacts.store_chunks, project, digest, chunks)
    except ClientDisconnect:
        raise HTTPException(status_code=400, detail="the client disconnected before sending the whole blob") from None
    return PutBlobResponse(digest=digest, size=size)


@router.post("/_blobs/batch", response_model=BatchResponse, responses=errors(400, 413, 415),
             openapi_extra=_RAW_BODY, summary="Upload many small blobs in one request")
@arms_itself
@requires("write", creates=True)
async def put_blob_batch(request: Request, project: str) -> BatchResponse:
    """Up to 1,000 blobs, each framed as its sha256 (64 ASCII hex digits), its length (8 bytes,
    big-endian) and its bytes; the whole body within the server's body limit. Each blob is
    verified and stored on its own: one whose bytes don't match its digest is `rejected` (not
    stored), the others are stored. What makes many small files fast."""
    artifacts = _artifacts(request)
    body = await read_body(request, request.app.state.tracklet.max_body_bytes)
    stored, rejected = await run_in_threadpool(armed, request, artifacts.store_batch, project, body)
    return BatchResponse(stored=stored, rejected=[RejectedBlob(digest=d, detail=why) for d, why in rejected])


def _read(handle: Any, start: int, end: int) -> Iterator[bytes]:
    from tracklet.server.artifact_chunks import ChunkedFile

    try:
        if isinstance(handle, ChunkedFile):  # read only the chunks the range covers
            handle.seek(start, end)
        else:
            handle.seek(start)
        remaining = end - start
        while remaining > 0 and (chunk := handle.read(min(_PIECE, remaining))):
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


@router.get("/_blobs/{digest}", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The blob's bytes"},
                       206: {"description": "The requested range of the blob"}, **errors(400, 404, 416, 500)},
            summary="Download a blob (HTTP Range, HEAD and If-None-Match supported)")
def get_blob(request: Request, project: str, digest: str,
             range: str | None = Header(default=None)) -> StreamingResponse:  # noqa: A002 (the header's name)
    """The bytes of a blob the project holds, whole or one `Range: bytes=start-end`; the client
    checks them against the digest. A packed blob is checked by the server before a byte is sent:
    one whose bytes no longer match its digest (a damaged pack) is 500 naming it, never served.
    A blob never changes: the ETag is its digest, the answer is kept (`Cache-Control: private,
    max-age=31536000, immutable`), `If-None-Match` naming the ETag is a 304, and `HEAD` answers
    the same headers without the bytes."""
    try:
        handle, size = _artifacts(request).open_blob(project, check_file_digest(digest))
    except NotHeld as error:
        raise _not_found(error) from None
    except ArtifactError as error:  # a packed blob whose bytes no longer match: never served
        raise HTTPException(status_code=500, detail=str(error)) from None
    cached = unchanged(request, {"ETag": f'"{digest}"', "Cache-Control": IMMUTABLE})
    if cached is not None:
        handle.close()
        return cached  # type: ignore[return-value]
    start, end, status, headers = range_answer(range, size, handle, digest)
    headers["Cache-Control"] = IMMUTABLE
    if request.method == "HEAD":
        handle.close()
        return headers_alone(status, headers, "application/octet-stream")  # type: ignore[return-value]
    return StreamingResponse(_read(handle, start, end), status_code=status,
                             media_type="application/octet-stream", headers=headers)


# HEAD: the same function (it answers the headers alone); not a second operation in the OpenAPI document
router.add_api_route("/_blobs/{digest}", get_blob, methods=["HEAD"], include_in_schema=False)


# ------------------------------------------------------------------------ resumable uploads


def _session_model(artifacts: ServerArtifacts, session: Session) -> UploadSession:
    parts = artifacts.parts(session)
    return UploadSession(id=session.id, digest=session.digest, size=session.size, part_size=session.part_size,
                         part_count=session.part_count,
                         parts=[UploadPart(number=n, size=p["size"], sha256=p["sha256"]) for n, p in parts.items()])


@router.post("/_uploads", response_model=UploadSession, responses=errors(400),
             summary="Start a resumable upload of a large blob")
@requires("write", creates=True)
def start_upload(request: Request, project: str, body: UploadRequest) -> UploadSession:
    """A session for blob `digest` of `size` bytes, sent as parts of `part_size` bytes (PUT
    .../_uploads/{id}/parts/{n}, any order, any number at once), then completed."""
    artifacts = _artifacts(request)
    return _session_model(artifacts, artifacts.start(project, body.digest, body.size, body.part_size))


@router.get("/_uploads/{upload_id}", response_model=UploadSession, responses=errors(400, 404),
            summary="An upload session and the parts it holds (to resume)")
def get_upload(request: Request, project: str, upload_id: str) -> UploadSession:
    artifacts = _artifacts(request)
    try:
        return _session_model(artifacts, artifacts.session(project, upload_id))
    except NotHeld as error:
        raise _not_found(error) from None


@router.put("/_uploads/{upload_id}/parts/{number}", response_model=UploadPart, responses=errors(400, 404, 413),
            openapi_extra=_RAW_BODY, summary="Upload one part (kept only when received whole)")
@requires("write", creates=True)
async def put_upload_part(request: Request, project: str, upload_id: str,
                          number: int = Path(ge=1, le=MAX_PARTS, description="The part's number, from 1"),
                          x_tracklet_sha256: str | None = Header(default=None)) -> UploadPart:
    """Part `number` (1-based): exactly `part_size` bytes (the last: the rest). With
    `X-Tracklet-Sha256` the part must hash to it. A part cut short is not kept."""
    artifacts = _artifacts(request)
    try:
        session = await run_in_threadpool(artifacts.session, project, upload_id)
    except NotHeld as error:
        raise _not_found(error) from None
    data = await read_body(request, session.part_size)
    record = await run_in_threadpool(artifacts.put_part, session, number, data, x_tracklet_sha256)
    return UploadPart(number=number, size=record["size"], sha256=record["sha256"])


@router.post("/_uploads/{upload_id}/complete", response_model=PutBlobResponse, responses=errors(400, 404),
             summary="Assemble, verify and publish an upload's blob")
@requires("write", creates=True)
def complete_upload(request: Request, project: str, upload_id: str) -> PutBlobResponse:
    """Once every part is in: the blob is assembled, its sha256 checked (a mismatch: 400, the
    session is dropped, nothing visible) and made visible; the session is removed."""
    artifacts = _artifacts(request)
    try:
        session = artifacts.session(project, upload_id)
    except NotHeld as error:
        raise _not_found(error) from None
    return PutBlobResponse(digest=session.digest, size=artifacts.complete(session))


# ------------------------------------------------------------------------ chunks of large files


@router.post("/_chunks/missing", response_model=ChunkQueryResponse, responses=errors(400),
             summary="Which of these chunks does the project lack?")
@requires("write", creates=True)
def missing_chunks(request: Request, project: str, query: ChunkQuery) -> ChunkQueryResponse:
    """Of up to 1,000 chunk ids (blake3 hex), those the project doesn't hold: the ones to send in
    packs. More ids in one request: 400 naming the limit. With `stream` and `segment` (a file's
    chunks being streamed, in file order), the server hashes the file as they arrive."""
    return ChunkQueryResponse(missing=_artifacts(request).missing_chunks(project, query.chunks, stream=query.stream,
                                                                         segment=query.segment))


@router.put("/_packs/{pack_id}", response_model=PutPackResponse, responses=errors(400, 413, 415, 503),
            openapi_extra=_RAW_BODY, summary="Upload a pack of chunks (each chunk verified)")
@arms_itself
@requires("write", creates=True)
async def put_pack(request: Request, project: str, pack_id: str) -> PutPackResponse:
    """A pack (docs/artifacts.md, "Pack": chunk bytes, an index of blake3 id, offset and length
    per chunk, a footer) of at most 32 MiB, named by the blake3 of its index and footer. Every
    chunk's bytes must hash to its id and the index to `pack_id`, else 400 and nothing is kept;
    then the pack is stored whole and its chunks are held by the project. A pack cut short is
    not kept: send it again. While the server's pack buffers are all lent (`--max-pack-buffers-mb`),
    503 with `Retry-After`: send it again then."""
    from tracklet.server.artifact_chunks import MAX_UPLOAD_PACK_BYTES, PackBuffersBusy

    artifacts = _artifacts(request)
    declared = request.headers.get("content-length", "")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "") or not declared.isdigit() or int(declared) > MAX_UPLOAD_PACK_BYTES:
        body = await read_body(request, MAX_UPLOAD_PACK_BYTES)  # gzip, chunked, or refused (413)
        chunks = await run_in_threadpool(armed, request, artifacts.store_pack, project, pack_id, body)
        return PutPackResponse(pack=pack_id, chunks=chunks, size=len(body))
    size = int(declared)
    pool = artifacts.pack_buffers
    try:
        buffer = pool.take(size)  # each piece copied once, into memory touched before
    except PackBuffersBusy as error:  # the client's upload retries a 503 after Retry-After
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "1"}) from None
    view = memoryview(buffer)
    handed = False  # whether store() owns the buffer (it gives it back, now or later)

    def store() -> int:
        # The buffer goes back to the pool when nothing reads it any more (store_pack says when:
        # a file's hash may keep a pack that arrived ahead), never from the request: a cancelled
        # request must not hand out a buffer still read. Set here, in the thread: a request
        # cancelled before the thread starts gives the buffer back below, so the cap never leaks.
        nonlocal handed
        handed = True
        try:
            arm(request)  # the audit intent, before the change (arms_itself)
        except BaseException:
            pool.give(buffer)
            raise
        return artifacts.store_pack(project, pack_id, view[:size], release=lambda: pool.give(buffer))

    try:
        received = await read_body_into(request, view[:size])
        if received != size:
            raise HTTPException(status_code=400, detail=f"pack {pack_id}: {received} of {size} bytes arrived")
        chunks = await run_in_threadpool(store)
    finally:
        if not handed:
            pool.give(buffer)
    return PutPackResponse(pack=pack_id, chunks=chunks, size=size)


@router.post("/_files", response_model=FileResponse, responses=errors(400),
             summary="Register a large file held as chunks (rebuilt and verified)")
@requires("write", creates=True)
def register_file(request: Request, project: str, body: FileRequest) -> FileResponse:
    """The file `digest` of `size` bytes is the chunks its `recipe` blob lists (uploaded first, as
    a blob): the server checks the project holds every chunk, rebuilds the file from them (each
    chunk checked against its id) and records it only if it hashes to `digest` (else 400). A
    registered file is held like a blob: commits may name it, and `GET .../_blobs/{digest}`
    serves it (ranged)."""
    registered = _artifacts(request).register_file(project, body.digest, body.size, body.recipe, stream=body.stream)
    return FileResponse(digest=body.digest, registered=registered)


# ------------------------------------------------------------------------ versions


@router.post("/{name}/versions", response_model=CommitResponse, responses=errors(400),
             summary="Commit a version (its blobs and manifest uploaded first)")
@requires("write", creates=True)
def commit_version(request: Request, project: str, name: str, body: CommitRequest) -> CommitResponse:
    """Add a version of `project/name` whose manifest is the blob `manifest`: the manifest must
    parse and every file's blob be in the project. `vN` and `latest` are assigned, `aliases` move
    to it; identical content to the latest version returns that one (`reused`, with its own
    `history_step` and `tags`). A tag that isn't valid answers 400 naming it. With
    `incremental_base`, the version's increment is merged onto the collection's latest version as
    it is when the commit lands (so two clients logging incremental versions at once keep both's files);
    sent again by the run that logged it (a retried commit, a repeated sync), it returns the version
    that first send made (`reused`), even after later versions changed its files: by its
    `commit_id` where it has one (a new log of byte-identical files has another id: a new commit)."""
    artifacts = _artifacts(request)
    previous = alias_versions(artifacts, project, name, body.aliases)
    info, reused = artifacts.commit(
        project, _name(name), type=body.type, manifest_digest=body.manifest, description=body.description,
        metadata=body.metadata, aliases=body.aliases, logged_by=body.logged_by, history_step=body.history_step,
        tags=body.tags, incremental_base=body.incremental_base, commit_id=body.commit_id)
    version_events(request, info, reused, previous)
    return CommitResponse(version=_version_model(info), reused=reused)


@router.post("/{name}/versions/{version}/aliases", response_model=VersionAliasesResponse, responses=errors(400, 404),
             summary="Move a version's custom aliases")
@requires("write", creates=False)  # changes what exists: never creates the project (a non-member: 403)
def save_version_aliases(request: Request, project: str, name: str, version: str,
                         body: VersionAliasesRequest) -> VersionAliasesResponse:
    """Point each of `add` at version `version` (`vN`), moving it from the version holding it,
    and take each of `remove` off it, in one locked transaction of the collection: an alias
    names one version of its collection at a time, and of two clients moving one alias at once
    the later wins. An alias of `remove` that names another version now (someone moved it
    since it was read) stays there. `latest` and `vN` are not custom aliases (400), nor is an
    invalid name. What `artifact.aliases.append(...)` + `artifact.save()` sends for a version
    of the server's (the local store's rules). Emits `alias.moved` for each alias that moved and
    `alias.removed` for each taken off."""
    artifacts = _artifacts(request)
    name, number = _name(name), version_param(version)
    before = alias_versions(artifacts, project, name, [*body.add, *body.remove])
    previous = {alias: before[alias] for alias in body.add}
    held = {alias: before[alias] for alias in body.remove if alias not in body.add}
    try:
        info = artifacts.save_aliases(project, name, number, body.add, body.remove)
    except ArtifactNotFound as error:
        raise _not_found(error) from None
    _alias_events(request, info, previous, held)
    return VersionAliasesResponse(version=_version_model(info))


def _alias_events(request: Request, info: Any, previous: dict[str, Any], held: dict[str, Any]) -> None:
    """The events of an alias edit of ``info`` (the version after it): ``alias.moved`` for each
    alias added (``previous``: where each was before), ``alias.removed`` for each taken off
    (``held``: where each was before) that it did take off."""
    moved = {alias: before for alias, before in previous.items() if alias in info.aliases}
    version_events(request, info, True, moved)
    removal_events(request, info.project, info.name, {alias: info.version for alias, before in held.items()
                                                      if before == info.version and alias not in info.aliases})


@router.patch("/{name}/versions/{version}", response_model=VersionAliasesResponse, responses=errors(400, 404),
              summary="Edit a version's description, metadata, tags and aliases (never its files)")
@requires("write", creates=False)  # who may move aliases may edit; never creates the project
def edit_version(request: Request, project: str, name: str, version: str,
                 body: VersionEditRequest) -> VersionAliasesResponse:
    """What `artifact.save()` of an edited committed version sends (W&B's way: mutate a version
    read back, then `save()`): a new `description`, metadata keys set (`set_metadata`) and
    unset (`unset_metadata`), or a new `metadata` replacing it whole (applied first; JSON, no NaN
    or infinity, at most 4 MiB after the edit), tags added and removed (W&B's tag names:
    letters, digits, `_`, `-`, words separated by spaces, at most 128 characters; at most 256 a
    version) and aliases moved as
    `POST .../versions/vN/aliases` moves them, all in one locked transaction of the collection,
    against the version as it is then: two clients setting different keys or tags at once both
    keep theirs. A field left out stays as it is; a version's files never change. Anything not valid answers
    400 naming it, and nothing changes. The audit event's detail says what the edit changed
    (metadata by its keys); each alias moved emits `alias.moved`, each taken off `alias.removed`."""
    artifacts = _artifacts(request)
    name, number = _name(name), version_param(version)
    edit = VersionEdit(description=body.description, metadata=body.metadata, set_metadata=body.set_metadata,
                       unset_metadata=body.unset_metadata, add_tags=body.add_tags, remove_tags=body.remove_tags,
                       add_aliases=body.add_aliases, remove_aliases=body.remove_aliases)
    before = alias_versions(artifacts, project, name, [*body.add_aliases, *body.remove_aliases])
    previous = {alias: before[alias] for alias in body.add_aliases}
    held = {alias: before[alias] for alias in body.remove_aliases if alias not in body.add_aliases}
    audit.note(request, **edit.summary())  # before the change commits: its event carries what changed
    try:
        info = artifacts.edit_version(project, name, number, edit)
    except ArtifactNotFound as error:
        raise _not_found(error) from None
    _alias_events(request, info, previous, held)
    return VersionAliasesResponse(version=_version_model(info))


@router.delete("/{name}/versions/{version}", response_model=VersionDeleteResponse,
               responses=errors(400, 403, 404, 409, 410),
               summary="Delete a version (its blobs go with a later artifact-gc)")
@requires("write", creates=False)  # changes what exists: never creates the project (a non-member: 403)
def delete_version(request: Request, project: str, name: str, version: str,
                   delete_aliases: bool = Query(False, description="Delete it with its custom aliases (else 409 "
                                                "naming them)"),
                   break_registry_links: bool = Query(False, description=(
                       "Delete it though the model registry links it (else 409 naming its registry versions): "
                       "needs the member role (what unlinking needs) in every registry linking it (else 403); "
                       "refused (409) while a protected alias names one of its registry versions or a pending "
                       "promotion request targets one, as an unlink is; those registry versions are left without "
                       "files"))) -> VersionDeleteResponse:
    """Delete version `version` (`vN`) as `tracklet artifact rm` does locally: its number is
    never given again and `latest` falls back to the highest version left. A version holding
    custom aliases answers 409 naming them unless `delete_aliases`; one the model registry
    links answers 409 naming its registry versions (they would be left without files; the
    registry keeps its versions) unless `break_registry_links`, which also needs the member role
    in every registry linking it (the role that may unlink them, and so take the same way round:
    403 naming the role and registry otherwise) and is refused (409), for every role, while a
    protected alias names one of those registry versions or a pending promotion request targets
    one (what refuses their unlink too): those
    registry versions then read back as `files_deleted`, and the deletion's audit event
    (`registry_links_broken`) and `artifact.deleted` event name them. The links are read, and
    the roles checked, holding the collection's lock that a new link holds too: a link made at
    the same moment is either refused or among those named. Its blobs stay until `tracklet admin
    artifact-gc`, whose grace period runs from the deletion. Emits `alias.removed` for each alias
    dropped, then `artifact.deleted`. A version deleted already answers 410 (a retried deletion
    whose answer was lost finds its work done), one that never existed 404."""
    artifacts = _artifacts(request)
    name, number = _name(name), version_param(version)
    broken: list[str] = []

    def refuse_linked(connection: Any) -> None:  # holding the collection's lock, which a new link holds too
        linked, registry = _registry_links(request, project, name, number, connection)
        links = [link.path for link in linked]
        if links and not break_registry_links:
            raise ArtifactError(f"{project}/{name}:v{number} is registered as {', '.join(links)}: deleting it "
                                "would leave those registry versions without files (a member of their registries "
                                "may delete it anyway: `tracklet artifact rm --url URL --break-registry-links`, "
                                "`delete(break_registry_links=True)`, `?break_registry_links=true`)")
        if links:
            _require_registry_role(request, f"{project}/{name}:v{number}", links)
            same = connection is not None and connection.engine is registry.engine
            guarded = registry.guarded(linked, connection=connection if same else None)
            if guarded:
                raise ArtifactError(refused_guarded(f"{project}/{name}:v{number}", guarded))
            broken[:] = links
            audit.note(request, registry_links_broken=links)  # before the deletion commits: its event says so

    try:
        info, dropped = artifacts.delete_version(project, name, number, drop_aliases=delete_aliases,
                                                 check=refuse_linked)
    except ArtifactNotFound as error:
        if artifacts.registry.was_deleted(project, name, number):  # a retry of a deletion that was done, say
            raise HTTPException(status_code=410, detail=f"{project}/{name}:v{number} was deleted") from None
        raise _not_found(error) from None
    except ArtifactError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    removal_events(request, project, name, dict.fromkeys(dropped, number), deleted=info, links_broken=broken)
    return VersionDeleteResponse(deleted=_version_model(info), aliases_dropped=dropped, registry_links_broken=broken)


def _refuse_linked_collection(request: Request, project: str, name: str, doing: str) -> Any:
    """A collection operation's ``check``: 409 naming the model registry versions that link one of
    the collection's versions (read holding its lock, which a new link holds too)."""
    def check(connection: Any, numbers: list[int]) -> None:
        links = sorted(link.path for number in numbers
                       for link in _registry_links(request, project, name, number, connection)[0])
        if links:
            raise HTTPException(status_code=409, detail=(
                f"artifact collection {project}/{name} can't be {doing}: the model registry links {', '.join(links)} "
                "to its versions (unlink them first); nothing was changed"))
    return check


@router.delete("/{name}", response_model=CollectionDeleteResponse, responses=errors(400, 403, 404, 409),
               summary="Delete a collection: every version and alias (blobs go with a later artifact-gc)")
@requires("admin", creates=False)
def delete_collection(request: Request, project: str, name: str) -> CollectionDeleteResponse:
    """Delete every version of `project/name` and its custom aliases (W&B's
    `ArtifactCollection.delete()`), in one locked change of the collection: each version as
    `DELETE .../versions/vN?delete_aliases=true` deletes it (its number never given again). Needs
    the project's admin role (deleting one version needs write). 409, changing nothing, while the
    model registry links one of its versions (unlink those first); 404 for a collection without
    versions. Emits `alias.removed` for each alias and `artifact.deleted` for each version."""
    artifacts = _artifacts(request)
    name = _name(name)
    try:
        infos, dropped = artifacts.delete_collection(project, name,
                                                     check=_refuse_linked_collection(request, project, name, "deleted"))
    except ArtifactNotFound as error:
        raise _not_found(error) from None
    for info in infos:
        removal_events(request, project, name, {alias: number for alias, number in dropped.items()
                                                if number == info.version}, deleted=info)
    return CollectionDeleteResponse(deleted=[_version_model(info) for info in infos], aliases_dropped=sorted(dropped))


@router.patch("/{name}", response_model=CollectionUpdateResponse, responses=errors(400, 403, 404, 409),
              summary="Edit a collection: its type, its own description and tags (added, removed or replaced)")
@requires("write", creates=False)  # as a version's edit; a type change checks admin below
def update_collection(request: Request, project: str, name: str,
                      body: CollectionUpdateRequest) -> CollectionUpdateResponse:
    """What W&B's `ArtifactCollection.save()` sends (and `change_type`), applied as one locked
    change of the collection: all of it or nothing. `type`: every version of `project/name` gets
    it (a version of the old type committed to it later is refused, 400, as a collection keeps
    one type); this needs the project's admin role (403, changing nothing, not the fields sent
    with it either) and is refused (409, changing nothing) while the model registry links one of
    its versions. `description` and the tags are the collection's own (not its versions'): they
    need the write role, as a version's edit does. `add_tags` and `remove_tags` change only the
    tags they name (against the tags stored when the edit lands: two clients adding different
    tags at once both keep theirs; removing one that isn't there is no error); `tags` replaces
    them whole (applied first). W&B's tag names as a version's (letters, digits, `_`, `-`,
    words separated by spaces; at most 128 characters), at most 256 a collection. Every field
    is checked before anything changes (400 naming the one at fault, or the tag); a field left
    out stays as it is. 404 for a collection without versions."""
    artifacts = _artifacts(request)
    name = _name(name)
    edit = CollectionEdit(type=body.type, description=body.description, tags=body.tags, add_tags=body.add_tags,
                          remove_tags=body.remove_tags)
    try:
        edit = edit.checked(f"artifact collection {project}/{name}")
    except ArtifactError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    audit.note(request, **edit.summary())
    check = None
    if edit.type is not None:
        authorizer = request.app.state.tracklet.authorizer
        if authorizer is not None:  # a type change rewrites every version: the admin role, as deleting them
            authorizer.check(request, project, "admin")
        check = _refuse_linked_collection(request, project, name, "given another type")
    try:
        previous, fields = artifacts.update_collection(project, name, edit, check=check)
    except ArtifactNotFound as error:
        raise _not_found(error) from None
    return CollectionUpdateResponse(name=name, type=edit.type if edit.type is not None else previous,
                                    previous_type=previous, description=fields.description, tags=fields.tags)


def _registry_links(request: Request, project: str, name: str, version: int,
                    connection: Any = None) -> tuple[list[Any], Any]:
    """The model registry versions (``Link``s) that link ``project/name:v<version>`` (none where
    the server has no registry yet) and the registry, read in ``connection`` if given (the
    deletion's transaction: the registry is in the same database, and the deletion needs no
    second connection)."""
    from tracklet.server.routes_registry import registry_of

    try:
        registry = registry_of(request)
    except HTTPException:  # a data root nothing was linked in (tracklet ui)
        return [], None
    if connection is not None and connection.engine is not registry.engine:  # a data root's registry file
        connection = None
    return registry.links_to(project, name, version, connection=connection), registry


def _require_registry_role(request: Request, source: str, links: list[str]) -> None:
    """403 unless the caller holds the registry role ``break_links`` needs (member: what unlinking
    needs, so no one passes this way who couldn't unlink the versions and then delete ``source``)
    in every registry of ``links`` (``registry/collection:vN``)."""
    from tracklet.server.registry_roles import ACTIONS
    from tracklet.server.routes_registry import role_of

    for registry in sorted({link.split("/", 1)[0] for link in links}):
        allowed, role, who = role_of(request, registry, "break_links")
        if not allowed:
            named = ", ".join(link for link in links if link.split("/", 1)[0] == registry)
            raise HTTPException(status_code=403, detail=(
                f"user {who!r} needs the {ACTIONS['break_links']} role in registry {registry!r} to delete {source}, "
                f"which {named} link(s): they would be left without files" + (f" (has {role})" if role else
                                                                                " (not a member)")))
