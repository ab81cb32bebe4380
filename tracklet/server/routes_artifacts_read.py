"""Read API for artifacts: a project's collections, a collection's versions, one version, its
files (a directory at a time or filtered, paged), a run's logged and used versions, and a lineage
graph around a run or a version (docs/server.md, "Artifacts").

Versions and manifests come from ``artifact_source(request)`` (the served data root's registry and
blobs, or what a deployment plugged in); lineage edges from the store (``Store.artifact_edges``,
derived from the runs' ``ArtifactLogged``/``ArtifactUsed`` records). Every route is on a
``{project}`` path, so ``require_access`` asks for ``read`` there; a lineage graph leaves out the
runs and versions of projects the caller may not read. Responses are bounded: versions and files
are paged (``limit`` at most 1,000), a lineage graph has at most ``max_nodes`` nodes.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

from fastapi import Header, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.names import check_artifact_name, parse_ref, version_number
from tracklet.artifacts.registry import VersionInfo
from tracklet.errors import ArtifactDeleted, ArtifactError, ArtifactNotFound, ChunkStoreError, TrackletError
from tracklet.server.artifact_source import ArtifactSource, EntryMissing, artifact_source
from tracklet.server.jsonable import json_value
from tracklet.core.run_tables import RUN_TABLE_TYPE
from tracklet.server.lineage_graph import DELETED_VERSION_FIELDS, Graph, build_graph
from tracklet.server.logs import run_paths
from tracklet.server.body import bounded_router
from tracklet.server.files import content_type
from tracklet.server.byte_ranges import IMMUTABLE, headers_alone, range_answer, unchanged
from tracklet.server.models import (
    ArtifactCollection,
    ArtifactCollectionsResponse,
    ArtifactDirEntry,
    ArtifactFileEntry,
    ArtifactFilesResponse,
    ArtifactVersion,
    ArtifactVersionResponse,
    ArtifactVersionsResponse,
    DamagedVersion,
    LineageEdge,
    LineageNode,
    LineageResponse,
    LineageRun,
    RunArtifact,
    RunArtifactsResponse,
    errors,
)

router = bounded_router(prefix="/api/v1", tags=["artifacts"])

_ERRORS = errors(400, 404, 500)
_NAME = Path(..., max_length=128, description="The collection's name, e.g. `mnist`")
_PIECE = 1 << 20  # bytes of a file handed to the response at a time
_SELECTOR = Path(..., max_length=128, description="`latest`, `vN` or an alias")
MAX_PAGE = 1000
RUN_EDGES = 10_000  # a run's logged and used versions listed at most


def _check_project(request: Request, project: str) -> None:
    run_paths(request.app.state.tracklet.root, project, "x")  # 400 for a bad project name


def _version(source: ArtifactSource, project: str, name: str, selector: str) -> VersionInfo:
    check_artifact_name(name)  # ArtifactNameError: a ValueError, 400
    try:
        return source.version(project, name, selector)
    except ArtifactNotFound as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    except ArtifactError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None


def _version_manifest(request: Request, project: str, name: str,
                      selector: str) -> tuple[ArtifactSource, VersionInfo, Manifest]:
    """The artifact source, the version ``selector`` names and its manifest (500 if it is unreadable)."""
    source = artifact_source(request)
    info = _version(source, project, name, selector)
    try:
        return source, info, source.manifest(info)
    except ArtifactError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None


def _version_model(info: VersionInfo) -> ArtifactVersion:
    return ArtifactVersion(
        project=info.project, name=info.name, version=f"v{info.version}", index=info.version, type=info.type,
        aliases=info.aliases, digest=info.digest, manifest=info.manifest, size=info.size, file_count=info.file_count,
        created_at=info.created_at or None, logged_by=info.logged_by, description=info.description,
        metadata=json_value(info.metadata) if isinstance(info.metadata, dict) else {},
        history_step=info.history_step if isinstance(info.history_step, int) else None,
        tags=[tag for tag in info.tags if isinstance(tag, str)] if isinstance(info.tags, list) else [],
    )


def _readable(request: Request) -> Container[str] | None:
    """The projects the caller may read (None: every one)."""
    authorizer = request.app.state.tracklet.authorizer
    if authorizer is None:
        return None
    return authorizer.accounts.readable_projects(request.state.principal)


@router.get("/projects/{project}/artifacts", response_model=ArtifactCollectionsResponse, responses=_ERRORS,
            response_model_exclude_unset=True, summary="A project's artifact collections")
def list_collections(request: Request, project: str,
                     type: str | None = Query(None, max_length=128, description="Only collections of this type")
                     ) -> ArtifactCollectionsResponse:
    """Each collection with a version: its type, version count, latest version, when that was
    made, its custom aliases, and its own description and tags (`collection.save()`). A collection whose registry files are damaged is listed with
    `error` saying what is wrong, and the others as usual."""
    _check_project(request, project)
    source = artifact_source(request)
    listed = []
    for name in source.collections(project):
        try:
            latest = source.version(project, name, "latest")
            fields = source.collection_fields(project, name)
        except ArtifactError as error:
            listed.append(ArtifactCollection(name=name, type="", versions=0, latest="", updated_at=None,
                                             aliases=[], error=str(error)))
            continue
        if type is not None and latest.type != type:
            continue
        custom = [alias for alias in latest.aliases if alias != "latest" and alias != f"v{latest.version}"]
        listed.append(ArtifactCollection(name=name, type=latest.type, versions=latest.version + 1,
                                         latest=f"v{latest.version}", updated_at=latest.created_at or None,
                                         aliases=custom, description=fields.description, tags=fields.tags))
    return ArtifactCollectionsResponse(collections=listed)


@router.get("/projects/{project}/artifacts/{name}/versions", response_model=ArtifactVersionsResponse,
            responses=_ERRORS, summary="A collection's versions, newest first")
def list_versions(request: Request, project: str, name: str = _NAME,
                  offset: int = Query(0, ge=0, le=2**31), limit: int = Query(100, ge=1, le=MAX_PAGE)
                  ) -> ArtifactVersionsResponse:
    """Versions newest first (`offset`, `limit` page them; `total` counts them all): aliases,
    digest, size, file count, when it was made, the run that logged it, description, metadata. A
    version whose registry file can't be read is in `damaged`, saying why; the others are listed."""
    _check_project(request, project)
    check_artifact_name(name)
    source = artifact_source(request)
    numbers = source.version_numbers(project, name)
    if not numbers:
        _version(source, project, name, "latest")  # its 404 says why: never logged, or every version deleted
        raise HTTPException(status_code=404, detail=f"no artifact {project}/{name} (no version of it has been logged)")
    listed: list[ArtifactVersion] = []
    damaged: list[DamagedVersion] = []
    for number in numbers[::-1][offset:offset + limit]:
        try:
            listed.append(_version_model(source.version(project, name, f"v{number}")))
        except ArtifactError as error:
            damaged.append(DamagedVersion(version=f"v{number}", index=number, detail=str(error)))
    return ArtifactVersionsResponse(project=project, name=name, type=listed[0].type if listed else "",
                                    total=len(numbers), versions=listed, damaged=damaged)


@router.get("/projects/{project}/artifacts/{name}/versions/{selector}", response_model=ArtifactVersionResponse,
            responses=_ERRORS, summary="One artifact version, with the runs that logged and used it")
def get_version(request: Request, project: str, name: str = _NAME, selector: str = _SELECTOR
                ) -> ArtifactVersionResponse:
    """The version `selector` names, the run that logged it and the runs that used it (from the
    store's lineage; runs of projects the caller may not read are left out)."""
    _check_project(request, project)
    info = _version(artifact_source(request), project, name, selector)
    edges, _ = request.app.state.tracklet.store.artifact_edges(versions=[(info.project, info.name, info.version)],
                                                               limit=RUN_EDGES)
    readable = _readable(request)
    logged_by: list[LineageRun] = []
    used_by: list[LineageRun] = []
    for edge in edges:
        if readable is not None and edge["run_project"] not in readable:
            continue
        run = LineageRun(project=edge["run_project"], run_id=edge["run_id"], name=edge["run_name"],
                         state=edge["run_state"])
        (logged_by if edge["direction"] == "logged" else used_by).append(run)
    return ArtifactVersionResponse(version=_version_model(info), logged_by=logged_by, used_by=used_by)


def _directory_page(manifest: Manifest, directory: str, offset: int, limit: int
                    ) -> tuple[list[ArtifactDirEntry], list[ArtifactFileEntry], int]:
    """The sub-directories (with their file counts and sizes) and files directly in ``directory``,
    directories first, both by name; the page ``offset:offset+limit`` of that list and its length."""
    prefix = f"{directory}/" if directory else ""
    dirs: dict[str, list[int]] = {}
    files = []
    for entry in manifest:
        if not entry.path.startswith(prefix):
            continue
        rest = entry.path[len(prefix):]
        head, slash, _ = rest.partition("/")
        if slash:
            totals = dirs.setdefault(head, [0, 0])
            totals[0] += 1
            totals[1] += entry.size
        else:
            files.append(entry)
    total = len(dirs) + len(files)
    names = sorted(dirs)
    page_dirs = [ArtifactDirEntry(path=prefix + name, name=name, files=dirs[name][0], size=dirs[name][1])
                 for name in names[offset:offset + limit]]
    skip = max(0, offset - len(names))
    page_files = [_file_model(entry) for entry in files[skip:skip + limit - len(page_dirs)]]
    return page_dirs, page_files, total


def _file_model(entry: Any) -> ArtifactFileEntry:
    return ArtifactFileEntry(path=entry.path, name=entry.path.rpartition("/")[2], size=entry.size,
                             digest=entry.digest, ref=entry.ref)


@router.get("/projects/{project}/artifacts/{name}/versions/{selector}/files", response_model=ArtifactFilesResponse,
            responses=_ERRORS, summary="A version's files: one directory at a time, or filtered")
def list_files(
    request: Request,
    project: str,
    name: str = _NAME,
    selector: str = _SELECTOR,
    dir: str = Query("", max_length=4096, description="The directory to list ('' for the top), e.g. `images/train`"),
    q: str | None = Query(None, max_length=1000,
                          description="Instead: every file whose path contains this (ignoring case), flat"),
    offset: int = Query(0, ge=0, le=2**31),
    limit: int = Query(200, ge=1, le=MAX_PAGE),
) -> ArtifactFilesResponse:
    """Without `q`: the entries of directory `dir`, sub-directories first (each with how many
    files it holds and their total size), then files (path, size, sha256 digest, and `ref` for a
    reference); with `q`: every file whose path contains `q`. Paged by `offset` and `limit`;
    `total` counts every entry, `next_offset` is where the next page starts (absent at the end)."""
    _check_project(request, project)
    _, info, manifest = _version_manifest(request, project, name, selector)
    directory = dir.strip("/")
    if q:
        needle = q.lower()
        matching = [entry for entry in manifest if needle in entry.path.lower()]
        dirs: list[ArtifactDirEntry] = []
        files, total = [_file_model(entry) for entry in matching[offset:offset + limit]], len(matching)
    else:
        if directory and not any(entry.path.startswith(directory + "/") for entry in manifest):
            raise HTTPException(status_code=404, detail=f"artifact {info.qualified_name} has no directory {directory!r}")
        dirs, files, total = _directory_page(manifest, directory, offset, limit)
    shown = offset + len(dirs) + len(files)
    return ArtifactFilesResponse(version=f"v{info.version}", dir=directory, q=q or None, total=total, offset=offset,
                                 dirs=dirs, files=files, next_offset=shown if shown < total else None)


@router.get("/projects/{project}/artifacts/{name}/versions/{selector}/files/{path:path}", response_class=StreamingResponse,
            responses={**errors(400, 404, 416, 500), 200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                       206: {"description": "The requested range of the file"}},
            summary="One of a version's files, by its path (HTTP Range, HEAD and If-None-Match supported)")
def get_file(
    request: Request,
    project: str,
    name: str = _NAME,
    selector: str = _SELECTOR,
    path: str = Path(..., max_length=4096, description="The file's path in the version, e.g. `models/scene.gltf`"),
    range: str | None = Header(default=None),  # noqa: A002 (the header's name)
) -> StreamingResponse:
    """The bytes of the file at `path` in the version's manifest (and only there: a path is looked
    up, never joined onto a directory), whole or one `Range: bytes=start-end` (206): a file stored
    whole, a small one in a pack, a large one stored as chunks alike, streamed, each byte checked
    against the file's digest (a chunked file's against its chunk ids) before it is sent; 404 for a
    path the version does not hold or bytes the store lacks, 400 for a reference (its bytes are not
    stored), 500 naming the file for bytes that no longer match (a damage found mid-file ends the
    response short). The dashboard's 3-D viewer reads a .gltf and the buffers and images beside it
    this way. A version's files never change: the ETag is the file's sha256; under `vN` the answer
    is kept (`Cache-Control: private, max-age=31536000, immutable`), under `latest` or an alias,
    which may name another version later, it is read again (`private, no-cache`). `If-None-Match`
    naming the ETag is a 304 (before the bytes are opened), and `HEAD` answers the same headers
    from the store's metadata, without opening the bytes (a damaged file is found by the GET)."""
    _check_project(request, project)
    source, info, manifest = _version_manifest(request, project, name, selector)
    if path not in manifest:
        raise HTTPException(status_code=404, detail=f"artifact {info.qualified_name} has no file {path!r}")
    entry = manifest[path]
    if entry.ref:
        raise HTTPException(status_code=400, detail=f"{path!r} of {info.qualified_name} is a reference ({entry.ref}): its bytes are not stored")
    # A version's files never change: kept by the browser when `vN` names the version; read again
    # (no-cache) under `latest` or an alias, which name another version once one is logged or moved.
    cache_control = IMMUTABLE if version_number(selector) is not None else "private, no-cache"
    cached = unchanged(request, {"ETag": f'"{entry.digest}"', "Cache-Control": cache_control})
    if cached is not None:
        return cached  # type: ignore[return-value]
    if request.method == "HEAD":  # from the store's metadata: the file is named by its digest, never read here
        try:
            size = source.entry_size(info, entry)
        except EntryMissing as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        _, _, status, headers = range_answer(range, size, _NOTHING_OPENED, entry.digest)
        headers["Cache-Control"] = cache_control
        return headers_alone(status, headers, content_type(path))  # type: ignore[return-value]
    try:
        reader, size = source.open_entry(info, entry)
    except EntryMissing as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    except ArtifactError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None
    start, end, status, headers = range_answer(range, size, reader, entry.digest)
    headers["Cache-Control"] = cache_control
    return _CheckedStream(_pieces(reader, start, end, f"file {path!r} of {info.qualified_name}"),
                          status_code=status, media_type=content_type(path), headers=headers)


class _NothingOpened:
    """``range_answer``'s reader for a HEAD, which opens none."""

    def close(self) -> None:
        pass


_NOTHING_OPENED = _NothingOpened()

# HEAD: the same function (it answers the headers alone); not a second operation in the OpenAPI document
router.add_api_route("/projects/{project}/artifacts/{name}/versions/{selector}/files/{path:path}", get_file,
                     methods=["HEAD"], include_in_schema=False)


class _Damaged(TrackletError):
    """Bytes of a file found damaged (or gone) while its response was being sent."""


class _CheckedStream(StreamingResponse):
    """A ``StreamingResponse`` that a damage found mid-file ends short: logged as a warning, the
    body left incomplete (the client sees fewer bytes than its Content-Length, and the connection
    closed), never wrong bytes nor a traceback."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Damaged as error:
            import logging

            logging.getLogger("tracklet.server").warning("%s", error)


def _pieces(reader: Any, start: int, end: int, what: str) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of an opened entry, 1 MiB at a time (a sync iterator: Starlette reads
    it on a worker thread); ``_Damaged`` for bytes found damaged on the way."""
    try:
        reader.seek(start, end)
        remaining = end - start
        while remaining > 0:
            piece = reader.read(min(_PIECE, remaining))
            if not piece:
                raise _Damaged(f"{what} not served in full: the store gave {end - start - remaining} of {end - start} bytes")
            remaining -= len(piece)
            yield piece
    except (ArtifactError, ChunkStoreError, OSError) as error:
        raise _Damaged(f"{what} not served in full: {error}") from None
    finally:
        reader.close()


@router.get("/runs/{project}/{run_id}/artifacts", response_model=RunArtifactsResponse, responses=_ERRORS,
            summary="The artifact versions a run logged and used")
def run_artifacts(request: Request, project: str, run_id: str) -> RunArtifactsResponse:
    """In the order the run recorded them (each version once per direction), with each version's
    current aliases where the registry has it. Versions in projects the caller may not read are
    left out."""
    app = request.app.state.tracklet
    run_paths(app.root, project, run_id)
    if app.store.run(project, run_id, fields=("run_id",)) is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    edges, _ = app.store.artifact_edges(runs=[(project, run_id)], limit=RUN_EDGES)
    source = artifact_source(request)
    readable = _readable(request)
    logged: list[RunArtifact] = []
    used: list[RunArtifact] = []
    for edge in edges:
        if readable is not None and edge["project"] not in readable:
            continue
        if edge["type"] == RUN_TABLE_TYPE and edge["direction"] == "logged":
            continue  # its tables (those a run used): in its tables and its lineage, not among its artifacts
        aliases = list(edge["aliases"] or [])
        try:
            aliases = source.version(edge["project"], edge["name"], f"v{edge['version']}").aliases
        except (ArtifactError, ValueError):
            pass  # not in this registry (another artifact directory): the aliases it was recorded with
        item = RunArtifact(project=edge["project"], name=edge["name"], version=f"v{edge['version']}",
                           index=edge["version"], type=edge["type"], digest=edge["digest"], aliases=aliases,
                           time=edge["time"])
        (logged if edge["direction"] == "logged" else used).append(item)
    return RunArtifactsResponse(logged=logged, used=used)


@router.get("/projects/{project}/lineage", response_model=LineageResponse, responses=_ERRORS,
            response_model_exclude_unset=True, summary="The lineage graph around a run or an artifact version")
def lineage(
    request: Request,
    project: str,
    run: str | None = Query(None, max_length=128, description="Start at this run of the project (its id)"),
    artifact: str | None = Query(None, max_length=300,
                                 description="Or at this version of the project: `name:vN`, `name:alias`, `name`"),
    hops: int = Query(3, ge=1, le=10, description="Edges out from the start, at most"),
    max_nodes: int = Query(200, ge=1, le=1000, description="Nodes at most (then `truncated`)"),
) -> LineageResponse:
    """Runs and artifact versions up to `hops` edges from the start, both ways: a run points to
    the versions it logged, a version to the runs that used it. Each node has its `depth` (edges
    from the start). Runs and versions of projects the caller may not read are left out."""
    app = request.app.state.tracklet
    _check_project(request, project)
    if (run is None) == (artifact is None):
        raise HTTPException(status_code=400, detail="give one of run= or artifact=")
    source = artifact_source(request)

    def run_info(run_project: str, run_id: str) -> dict[str, Any] | None:
        row = app.store.run(run_project, run_id, fields=("run_id", "name", "state"))
        return None if row is None else {"kind": "run", "project": run_project, "run_id": run_id,
                                         "name": row["name"], "state": row["state"]}

    def version_info(version_project: str, name: str, number: int) -> dict[str, Any] | None:
        try:
            info = source.version(version_project, name, f"v{number}")
        except ArtifactDeleted:
            return DELETED_VERSION_FIELDS
        except (ArtifactError, ValueError):
            return _run_table_info(app.store, version_project, name, number)
        return {"kind": "artifact", "project": info.project, "name": info.name, "version": info.version,
                "type": info.type, "digest": info.digest, "aliases": info.aliases}

    if run is not None:
        run_paths(app.root, project, run)
        if run_info(project, run) is None:
            raise HTTPException(status_code=404, detail=f"no run {project}/{run} on this server")
        graph = build_graph(app.store, run=(project, run), hops=hops, max_nodes=max_nodes,
                            readable=_readable(request), run_info=run_info, version_info=version_info)
    else:
        ref = parse_ref(artifact or "")
        if ref.project not in (None, project):
            raise HTTPException(status_code=400, detail=f"artifact {artifact!r} is not in project {project!r}")
        try:
            start = (project, _version(source, project, ref.name, ref.selector).version)
        except HTTPException as error:  # a run table (run-<id>-<key>:vN), named as W&B names it?
            last = app.store.run_table_last(project, ref.name) if error.status_code == 404 else None
            number = last if ref.selector == "latest" else version_number(ref.selector)
            if last is None or number is None or not 0 <= number <= last:
                raise
            start = (project, number)
        graph = build_graph(app.store, version=(project, ref.name, start[1]), hops=hops, max_nodes=max_nodes,
                            readable=_readable(request), run_info=run_info, version_info=version_info)
    return graph_response(graph, hops)


def _run_table_info(store: Any, project: str, name: str, number: int) -> dict[str, Any] | None:
    """A lineage node's fields for version ``number`` of run table ``name`` (W&B's ``run_table``
    artifact ``run-<id>-<key>``: docs/tables.md#lineage), ``latest`` on its last; None if no
    run logged it."""
    last = store.run_table_last(project, name)
    if last is None or not 0 <= number <= last:
        return None
    return {"kind": "artifact", "project": project, "name": name, "version": number, "type": RUN_TABLE_TYPE,
            "digest": "", "aliases": ["latest"] if number == last else []}


def graph_response(graph: Graph, hops: int) -> LineageResponse:
    """``lineage_graph.build_graph``'s graph as the lineage routes answer it."""
    nodes = []
    for node_id, node in graph.nodes.items():
        if node["kind"] == "run":
            nodes.append(LineageNode(id=node_id, kind="run", project=node["project"], name=node["name"],
                                     depth=node["depth"], run_id=node["run_id"], state=node["state"]))
        else:
            fields: dict[str, Any] = {"files_deleted": True} if node.get("files_deleted") else {}
            nodes.append(LineageNode(id=node_id, kind="artifact", project=node["project"], name=node["name"],
                                     depth=node["depth"], version=f"v{node['version']}", type=node["type"],
                                     aliases=node["aliases"], **fields))
    edges = [LineageEdge(source=source_id, target=target_id, kind=kind)  # type: ignore[arg-type]
             for (source_id, target_id), kind in graph.edges.items()]
    return LineageResponse(root=graph.root, hops=hops, truncated=graph.truncated, nodes=nodes, edges=edges)
