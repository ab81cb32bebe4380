"""Where the server's artifact read routes find versions and manifests: ``artifact_source(request)``.

The read routes (``routes_artifacts_read.py``) only read, through the small ``ArtifactSource``
protocol: a project's collection names, a collection's version numbers, one version by selector
(with its aliases), and a version's manifest. A page of versions reads only its versions, each on
its own, so one damaged version file is reported on its row and doesn't hide the others. ``LocalArtifactSource`` is the registry and blob store of a local artifact
directory (``<data root>/artifacts``, or ``$TRACKLET_ARTIFACT_DIR``): what ``tracklet ui`` and a
plain ``tracklet server`` serve. It writes nothing (no stat cache, no lock file), so it suits the
read-only ``tracklet ui``. A deployment with another registry (server mode's SQL registry) puts
its own source in with ``set_artifact_source(app, source)``.

One file of a version is read through ``open_entry`` (``EntryReader``: ``seek``, ``read``,
``close``), whatever the store made of it: a blob of its own, a small blob in a pack (a server's),
or a large file stored as chunks in packs (a local store's chunk index, or a server's chunk rows),
rebuilt as it is read (``ChunkedFile``). Every byte handed out is checked first: a small blob read
whole and hashed, a large one through ``VerifiedFiles`` (a local file, hashed once per piece while
unchanged) or hashed whole before it is opened again to be served (an object store), a chunked
file chunk by chunk against the chunk ids of its recipe (whose whole digest was checked when the
version was committed). ``EntryMissing`` (404) for bytes the store lacks, with why that can be;
``ArtifactError`` (500) for bytes that no longer match.

Manifests are immutable (named by their sha256), so the last few parsed ones are kept (at most
``MANIFESTS_KEPT``, holding ``ENTRIES_KEPT`` files in all besides the newest), and a file browser
paging through a large version parses its manifest once (100,000 files: 12 MB, ~3 s to read and
check on a loaded 2-core VM; then 30-200 ms a page).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request

from tracklet.artifacts.blobs import FsspecBlobStore
from tracklet.artifacts.fields import CollectionFields
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.registry import LocalRegistry, VersionInfo
from tracklet.artifacts.storage import artifact_dir, recipe_of
from tracklet.errors import ArtifactError, ChunkMissing

if TYPE_CHECKING:
    from tracklet.artifacts.manifest import ManifestEntry
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.server.artifact_blobs import ServerArtifacts

MANIFESTS_KEPT = 8  # parsed manifests kept per source (a 10,000-file manifest is a few MB parsed)
ENTRIES_KEPT = 300_000  # ... and files in them at most, beyond the newest one (memory stays bounded)
#: A whole blob up to this size is read into memory and hashed before it is served; a larger one
#: is checked without holding it (``_open_whole``).
IN_MEMORY_BYTES = 16 << 20
_PIECE = 1 << 20


class EntryMissing(ArtifactError):
    """The store lacks the bytes of a version's file (the message says which and why that can be)."""


class EntryReader(Protocol):
    """One stored file, read from ``seek(offset, end)`` on (``end``: where reads stop; the file's
    end when omitted): each byte ``read`` hands out was checked against the file's digest or its
    chunk's id first (``ArtifactError``, or ``OSError`` from a piece found damaged, otherwise)."""

    def seek(self, offset: int, end: int | None = None) -> int: ...

    def read(self, size: int = -1) -> bytes: ...

    def close(self) -> None: ...


class ArtifactSource(Protocol):
    """What the artifact read routes need of a registry and its blobs."""

    def collections(self, project: str) -> list[str]:
        """Names of the project's collections that have a version, sorted."""
        ...

    def version_numbers(self, project: str, name: str) -> list[int]:
        """The collection's version numbers, ascending (``[]`` if it has none)."""
        ...

    def version(self, project: str, name: str, selector: str) -> VersionInfo:
        """The version ``selector`` (``latest``, ``vN``, an alias) names; ``ArtifactNotFound`` if none."""
        ...

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        """The collection's own description and tags (empty if never edited)."""
        ...

    def manifest(self, info: VersionInfo) -> Manifest:
        """The version's manifest, checked (``ArtifactError`` if its blob is missing or damaged)."""
        ...

    def open_entry(self, info: VersionInfo, entry: ManifestEntry) -> tuple[EntryReader, int]:
        """One of the version's stored files (not a reference), opened, and its size: whole blob,
        packed blob or chunked file alike. ``EntryMissing`` if the store lacks its bytes,
        ``ArtifactError`` if they are damaged (a small file's, found before this returns)."""
        ...

    def entry_size(self, info: VersionInfo, entry: ManifestEntry) -> int:
        """What a ``HEAD`` of one of the version's stored files answers from: its size, found from
        the store's metadata without reading its bytes (the blob's or the recipe's presence);
        ``EntryMissing`` if the store lacks it. Damage is found by the GET that reads it."""
        ...


class LocalArtifactSource:
    """The registry and blobs of a local artifact directory, read-only."""

    def __init__(self, directory: str | Path, blobs: FsspecBlobStore | None = None, registry: Any = None) -> None:
        """``blobs``: where the manifests are, if not in ``directory`` (a server's ``--artifacts``
        URL); ``registry``: the versions, if not the directory's (a server's ``SqlRegistry``)."""
        self.directory = Path(directory)
        self.registry = registry if registry is not None else LocalRegistry(self.directory)
        self.blobs = blobs if blobs is not None else FsspecBlobStore(self.directory)
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._lock = threading.Lock()
        self._store: ArtifactStore | None = None
        from tracklet.server.verified_files import VerifiedFiles

        self.verified = VerifiedFiles()  # large blob files checked, while unchanged on disk

    def collections(self, project: str) -> list[str]:
        return self.registry.collections(project)

    def version_numbers(self, project: str, name: str) -> list[int]:
        return self.registry.version_numbers(project, name)

    def version(self, project: str, name: str, selector: str) -> VersionInfo:
        return self.registry.version(project, name, selector)

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        return self.registry.collection_fields(project, name)

    def manifest(self, info: VersionInfo) -> Manifest:
        with self._lock:
            cached = self._manifests.get(info.manifest)
            if cached is not None:
                self._manifests.move_to_end(info.manifest)
                return cached
        manifest = Manifest.from_bytes(self.blobs.read_bytes(info.manifest),
                                       what=f"the manifest of {info.qualified_name}")
        with self._lock:
            self._manifests[info.manifest] = manifest
            while len(self._manifests) > 1 and (len(self._manifests) > MANIFESTS_KEPT or sum(
                    len(kept) for kept in self._manifests.values()) > ENTRIES_KEPT):
                self._manifests.popitem(last=False)
        return manifest

    #: Why a local store can lack a file's bytes (said after "missing from ...").
    MISSING = ("; a version an online run logged keeps its large files' chunks on its server only "
               "(read it there, or from a run that stored them locally)")

    def open_entry(self, info: VersionInfo, entry: ManifestEntry) -> tuple[EntryReader, int]:
        what = f"file {entry.path!r} of {info.qualified_name}"
        recipe = recipe_of(entry)
        if recipe is None:
            return _open_whole(self.blobs, entry.digest, what, self.verified, f"missing from the artifact store {self.directory}")
        store = self._local_store()
        try:
            parsed = store.read_recipe(recipe, what)
        except ArtifactError as error:
            if not self.blobs.has(recipe):
                raise EntryMissing(f"{what}: its recipe {recipe} is missing from the artifact store {self.directory}") from None
            raise ArtifactError(str(error)) from None
        from tracklet.server.artifact_chunks import ChunkedFile

        return _first_checked(ChunkedFile(parsed, reader=LocalChunks(store, what, self.MISSING)), what), parsed.size

    def entry_size(self, info: VersionInfo, entry: ManifestEntry) -> int:
        what = f"file {entry.path!r} of {info.qualified_name}"
        recipe = recipe_of(entry)
        try:
            if recipe is None:
                return int(self.blobs.size(entry.digest))
            if self.blobs.has(recipe):
                return entry.size
        except (FileNotFoundError, ArtifactError):
            pass
        raise EntryMissing(f"{what}: {recipe or entry.digest} is missing from the artifact store {self.directory}")

    def _local_store(self) -> ArtifactStore:
        """The directory's ``ArtifactStore``, for its chunk index and packs (read only here)."""
        with self._lock:
            if self._store is None:
                from tracklet.artifacts.storage import ArtifactStore

                self._store = ArtifactStore(self.directory.parent, self.directory)
            return self._store


class ServerArtifactSource(LocalArtifactSource):
    """A tracking server's artifacts: its registry (a directory's, or the SQL one), and the files a
    project holds in its blob store (``--artifacts``: a directory or S3), packed small blobs and
    chunked files (``ServerArtifacts``) included."""

    def __init__(self, directory: str | Path, artifacts: ServerArtifacts) -> None:
        super().__init__(directory, blobs=artifacts.blobs, registry=artifacts.registry)
        self.artifacts = artifacts

    def open_entry(self, info: VersionInfo, entry: ManifestEntry) -> tuple[EntryReader, int]:
        from tracklet.server.artifact_blobs import NotHeld
        from tracklet.server.artifact_chunks import ChunkedFile

        what = f"file {entry.path!r} of {info.qualified_name}"
        # A committed version's files are all held by its project (the commit checks): a file not
        # held, or not there, was lost from the store since; never "not uploaded yet".
        missing = f"missing from the server's artifact store ({self.artifacts.blobs.url})"
        try:
            if recipe_of(entry) is None:
                if not self.artifacts.holds(info.project, entry.digest):
                    raise NotHeld(entry.digest)
                return _open_whole(self.blobs, entry.digest, what, self.verified, missing)
            handle, size = self.artifacts.open_blob(info.project, entry.digest)
        except NotHeld:
            raise EntryMissing(f"{what}: {entry.digest} is {missing}") from None
        if isinstance(handle, ChunkedFile):
            return _first_checked(handle, what), size
        handle.close()  # a file stored whole after all (sent whole by an older client): its blob, checked
        return _open_whole(self.blobs, entry.digest, what, self.verified, missing)

    def entry_size(self, info: VersionInfo, entry: ManifestEntry) -> int:
        what = f"file {entry.path!r} of {info.qualified_name}"
        if not self.artifacts.holds(info.project, entry.digest):  # a chunked file is held as one too
            raise EntryMissing(f"{what}: {entry.digest} is missing from the server's artifact store "
                               f"({self.artifacts.blobs.url})")
        if recipe_of(entry) is not None:
            return entry.size
        try:
            return int(self.blobs.size(entry.digest))
        except (FileNotFoundError, ArtifactError):
            raise EntryMissing(f"{what}: {entry.digest} is missing from the server's artifact store "
                               f"({self.artifacts.blobs.url})") from None


class LocalChunks:
    """A local artifact store's chunks, as ``ChunkedFile`` reads them: each checked against its id
    (``ArtifactStore.read_chunks``, a span at a time holding ``gc.lock`` shared)."""

    def __init__(self, store: ArtifactStore, what: str, missing: str) -> None:
        self.store, self.what, self.missing = store, what, missing

    def iter_chunks(self, chunk_ids: list[bytes], *, name: str = "") -> Any:
        try:
            for _, piece in self.store.read_chunks(chunk_ids, name=self.what):
                yield piece
        except ChunkMissing as error:
            raise EntryMissing(f"{self.what}: {error}{self.missing}") from None


class _Bytes:
    """A checked blob held in memory, as an ``EntryReader``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position, self.end = memoryview(data), 0, len(data)

    def seek(self, offset: int, end: int | None = None) -> int:
        self.position = max(0, min(offset, len(self.data)))
        self.end = len(self.data) if end is None else max(self.position, min(end, len(self.data)))
        return self.position

    def read(self, size: int = -1) -> bytes:
        stop = self.end if size < 0 else min(self.end, self.position + size)
        out = bytes(self.data[self.position:stop])
        self.position = stop
        return out

    def close(self) -> None:
        self.data = memoryview(b"")


class _Handle:
    """A file object (``seek(position)``, ``read(size)``) as an ``EntryReader``: reads stop at ``end``."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle, self.size, self.position, self.end = handle, size, 0, size

    def seek(self, offset: int, end: int | None = None) -> int:
        self.position = self.handle.seek(max(0, min(offset, self.size)))
        self.end = self.size if end is None else max(self.position, min(end, self.size))
        return self.position

    def read(self, size: int = -1) -> bytes:
        wanted = self.end - self.position if size < 0 else min(size, self.end - self.position)
        out = self.handle.read(wanted) if wanted > 0 else b""
        self.position += len(out)
        return bytes(out)

    def close(self) -> None:
        self.handle.close()


def _first_checked(reader: Any, what: str) -> Any:
    """``reader`` (a ``ChunkedFile``), its first chunk read once to find a missing or damaged
    store before a route answers (the chunks of a range are read again from ``seek`` on)."""
    from tracklet.errors import ChunkStoreError

    try:
        reader.seek(0, 1)
        reader.read(1)
        reader.seek(0)
    except ChunkStoreError as error:
        reader.close()
        raise ArtifactError(f"{what} can't be read: {error}") from None
    except BaseException:
        reader.close()
        raise
    return reader


def _open_whole(blobs: Any, digest: str, what: str, verified: Any, missing: str) -> tuple[EntryReader, int]:
    """Blob ``digest`` (a file stored whole), opened checked: up to ``IN_MEMORY_BYTES`` read and
    hashed whole; larger, a local file through ``verified`` (``VerifiedFiles``: hashed once per
    piece while unchanged, each piece served compared with its hash), an object store's hashed
    whole as it is streamed, once while the store says the same of it (its size and ETag), then
    opened again to be served."""
    import hashlib

    try:
        identity = blobs.object_identity(digest)  # an object store's: its size and ETag, in one request
        size = identity.size if identity is not None else int(blobs.size(digest))
    except (FileNotFoundError, ArtifactError):
        raise EntryMissing(f"{what}: {digest} is {missing}") from None
    damaged = f"{what}: {digest} is damaged in the artifact store (its bytes don't match its digest)"
    if size <= IN_MEMORY_BYTES:
        try:
            return _Bytes(blobs.read_bytes(digest)), size
        except ArtifactError as error:
            if not blobs.has(digest):
                raise EntryMissing(f"{what}: {digest} is {missing}") from None
            raise ArtifactError(f"{what}: {error}") from None
    path = blobs.local_path(digest)
    if path is not None:
        pieces = verified.pieces(path, digest)
        if pieces is None:
            raise ArtifactError(damaged)
        return _Handle(verified.reader(path, digest, pieces), size), size
    # An object store's blob is hashed whole once, then remembered while the store says the same of
    # it (its ETag): a video's Range requests (a seek each) don't each read and hash it whole.
    name = f"{blobs.url}/{digest}"
    if identity is None or not verified.object_checked(name, digest, identity):
        hasher = hashlib.sha256()
        with blobs.open(digest) as handle:
            while piece := handle.read(_PIECE):
                hasher.update(piece)
        holds = hasher.hexdigest() == digest
        unchanged = identity is not None and blobs.object_identity(digest) == identity  # while it was hashed
        verified.object_hashed(name, digest, identity if unchanged else None, holds)
        if not holds:
            raise ArtifactError(damaged)
    return _Handle(blobs.open(digest), size), size


def set_artifact_source(app: FastAPI, source: ArtifactSource) -> None:
    """Serve artifacts from ``source`` instead of the data root's local artifact directory."""
    app.state.artifact_source = source


def artifact_source(request: Request) -> ArtifactSource:
    """The artifact source of the app serving ``request``: the one set with
    ``set_artifact_source``, else (made on first use) the local artifact directory of the data
    root the server serves (``artifact_dir``: ``<root>/artifacts`` or ``$TRACKLET_ARTIFACT_DIR``)."""
    state = request.app.state
    source: ArtifactSource | None = getattr(state, "artifact_source", None)
    if source is None:
        source = LocalArtifactSource(artifact_dir(state.tracklet.root))
        state.artifact_source = source
    return source
