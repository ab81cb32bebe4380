"""Artifacts on a tracking server: the blob store, which blobs each project holds, resumable
upload sessions and the version registry (the routes are ``routes_artifacts_write.py``).

**Blobs** are content-addressed like a client's (``blobs/sha256/ab/<digest>``, ``artifacts/blobs.py``)
in the server's data root (``<root>/artifacts``) or any fsspec URL (``--artifacts s3://bucket/prefix``).
A blob is written to a temporary name while its sha256 is computed, and renamed into place only
when the digest matches: nothing partial or wrong is ever visible, and two clients sending the
same blob at once both succeed, leaving one copy.

**Grants**: the store is shared by every project, but a project only *holds* a blob once someone
with write access to it sent the blob's bytes (a row of the server's ``artifact_blobs`` table,
``schema.py``, in the store's database: SQLite or the deployment's PostgreSQL).
"Which of these do you have?", downloads and commits only see a project's own grants, so knowing
a digest never gives access to another project's bytes (a blob already stored is hashed and not
written again; the bytes still have to be sent once per project).

**Upload sessions** (large blobs, resumable): ``uploads/<id>/session.json`` beside ``blobs/``,
one ``parts/<n>.json`` per part received whole and verified (its size, sha256 and, on S3, ETag).
On a local directory parts are files ``uploads/<id>/data/<n>``, concatenated into the blob when
the session completes; on S3 they are the parts of one S3 multipart upload to a temporary key,
completed, read back to check the sha256, then moved into place. A client killed mid-upload asks
for the session's parts and sends only the missing ones.

**Chunks** (large files, only what changed travels): a client asks which of a file's chunks the
project lacks (``missing_chunks``), sends those in packs (``store_pack``: every chunk's blake3
checked, the pack written whole to ``packs/ab/<id>.pack`` beside ``blobs/``, then its chunks
granted in ``artifact_chunks``), uploads the file's recipe as a blob, and registers the file
(``register_file``): the server rebuilds it from the project's chunks and keeps it
(``artifact_files``) only if it hashes to its sha256. A registered file counts as held like a
blob: commits accept it, and the blob route serves it rebuilt (ranged).

**Versions**: ``LocalRegistry`` over ``<root>/artifacts`` (one server process; the same rules as a
client's: ``vN`` and ``latest`` assigned, an alias unique per collection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tracklet.artifacts.durable import sync_directory, sync_file
from tracklet.core.digests import file_hasher, is_blake3, is_file_digest
from tracklet.artifacts.manifest import Manifest, is_sha256
from tracklet.artifacts.fields import CollectionEdit, CollectionFields, VersionEdit, check_tags
from tracklet.artifacts.registry import LocalRegistry, VersionInfo
from tracklet.artifacts.names import check_artifact_type
from tracklet.core.layout import check_name
from tracklet import errors
from tracklet.errors import ArtifactError, ArtifactNameError, ArtifactNotFound
from tracklet.server.artifact_registry_sql import SqlRegistry
from tracklet.server.logs import BadRequest
from tracklet.server.artifact_packed import PACKED_BLOB_BYTES, PackedBlobStore
from tracklet.server.schema import artifact_blobs, artifact_chunks, artifact_files, artifact_packed_blobs, migrate

MAX_DIGESTS_PER_QUERY = 1000
MIN_PART_BYTES = 5 << 20  # S3's smallest part (but the last)
MAX_PART_BYTES = 64 << 20
MAX_PARTS = 10_000  # S3's most parts per upload
MAX_SERVER_MANIFEST_BYTES = 64 << 20  # ~300k files: what one commit may describe
_READ = 1 << 20
SMALL_BLOB_BYTES = 8 << 20  # a blob up to this size is verified in memory and written in one piece
MAX_BATCH_BLOBS = 1000
STALE_UPLOAD_SECONDS = 7 * 24 * 3600  # an upload session untouched this long is aborted
PACK_SMALL_ENV = "TRACKLET_ARTIFACT_PACK_SMALL"  # "0": a batch's small blobs stored one object each (benchmarks)


NotHeld = errors.BlobNotHeld  # the project holds no such blob or upload session (404)


class DigestMismatch(BadRequest):
    """The bytes received don't hash to the digest they were sent as (400)."""


def check_digest(digest: object) -> str:
    """A blob's digest: a sha256 (``BadRequest`` if not)."""
    if not is_sha256(digest):
        raise BadRequest(f"{str(digest)[:80]!r} is not a sha256 digest (64 lowercase hex digits)")
    assert isinstance(digest, str)
    return digest


def check_file_digest(digest: object) -> str:
    """A file's digest as a manifest has it: a sha256, or ``blake3:`` and 64 lowercase hex digits
    for a file kept as chunks (``tracklet.core.digests``); ``BadRequest`` if neither."""
    if not is_file_digest(digest):
        raise BadRequest(f"{str(digest)[:80]!r} is not a file digest (a sha256: 64 lowercase hex digits, or "
                         "'blake3:' and 64 lowercase hex digits)")
    assert isinstance(digest, str)
    return digest


@dataclasses.dataclass(frozen=True)
class Session:
    """A resumable upload of one blob in parts of ``part_size`` bytes (the last may be shorter)."""

    id: str
    project: str
    digest: str
    size: int
    part_size: int
    created_at: float
    s3_upload_id: str | None = None

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))

    def part_length(self, number: int) -> int:
        if number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


#: The columns of a chunk row, in the order ``_keep_pack_and_rows`` gives them.
_CHUNK_ROW = ("project", "chunk_id", "pack_id", "pack_offset", "length", "created_at")


@functools.lru_cache(maxsize=32)
def _held_chunks_update(dialect: sa.Dialect, count: int) -> tuple[str, bool]:
    """``UPDATE ... RETURNING`` marking used now those of ``count`` chunk ids a project holds, as
    the driver's SQL (built once per dialect and count: ``_mark_held`` pads the ids to a power of
    two, so there are 11 counts; compiling one costs more than expanding the list once) and whether its
    parameters are positional (``used_at``, ``project``, then the ids) or named (``c0``, ``c1``...).
    SQLAlchemy expanding an ``IN`` list anew for each query cost ~1 ms of Python per 1,000 ids
    (measured on SQLite), ~16k ids per GiB uploaded, twice (the chunk queries, the registration)."""
    names = [f"c{index}" for index in range(count)]
    statement = (artifact_chunks.update()
                 .where(artifact_chunks.c.project == sa.bindparam("project"),
                        artifact_chunks.c.chunk_id.in_([sa.bindparam(name) for name in names]))
                 .values(created_at=sa.bindparam("used_at")).returning(artifact_chunks.c.chunk_id))
    compiled = statement.compile(dialect=dialect)
    if compiled.positional and tuple(compiled.positiontup or ()) != ("used_at", "project", *names):
        raise RuntimeError(f"held chunks' parameters came out as {tuple(compiled.positiontup or ())[:4]}...")
    return str(compiled), bool(compiled.positional)


def _mark_held(connection: sa.Connection, project: str, chunk_ids: list[str], now: float) -> set[str]:
    """Of ``chunk_ids`` (hex, at most ``MAX_DIGESTS_PER_QUERY``), those ``project`` holds, marked
    used at ``now`` in the same statement that finds them."""
    if not chunk_ids:
        return set()
    padded = 1 << (len(chunk_ids) - 1).bit_length()
    chunk_ids = chunk_ids + chunk_ids[:1] * (padded - len(chunk_ids))  # a repeated id matches its row once
    sql, positional = _held_chunks_update(connection.dialect, padded)
    parameters: Any = ((now, project, *chunk_ids) if positional else
                       {"used_at": now, "project": project, **{f"c{i}": cid for i, cid in enumerate(chunk_ids)}})
    return {row[0] for row in connection.exec_driver_sql(sql, parameters)}


class ServerArtifacts:
    """The server's artifacts (see the module): ``root`` is the server's data root; ``url``
    (with fsspec ``options``) puts the blobs elsewhere, e.g. ``s3://bucket/prefix``."""

    def __init__(self, root: Path, url: str | None = None, options: dict[str, Any] | None = None,
                 engine: sa.Engine | None = None, *, pack_small: bool | None = None) -> None:
        directory = Path(root) / "artifacts"
        self.root = Path(root)  # the server's data root (a collection's scratch files go under it)
        self.registry: LocalRegistry | SqlRegistry = LocalRegistry(directory)
        if engine is None:  # no server database at hand (a test, a tool): the grants table alone, beside the blobs
            directory.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(f"sqlite:///{directory / 'grants.sqlite'}")
            for table in (artifact_blobs, artifact_chunks, artifact_files, artifact_packed_blobs):
                table.create(engine, checkfirst=True)
        else:
            migrate(engine)  # the server's tables (a --dev server has no Accounts to do it)
            if engine.dialect.name == "postgresql":  # a deployment any number of processes may serve
                self.registry = SqlRegistry(engine)
        self.engine = engine
        from tracklet.server.artifact_chunks import BufferPool

        #: Pack bodies' buffers, shared by the server's requests (``create_app`` sets its cap).
        self.pack_buffers = BufferPool()
        # Blobs and packs on a local disk are fsync'd before any row names them (artifacts/durable.py).
        self.blobs = PackedBlobStore(url if url is not None else directory, options, durable=True)
        if self.blobs.fs is None:
            import fsspec

            self.blobs.fs = fsspec.filesystem("file")
        self.fs = self.blobs.fs
        self.uploads = self.blobs.base[: -len("/blobs")] + "/uploads"
        from tracklet.artifacts.packs import PackStore

        self.packs = PackStore(self.blobs.base[: -len("/blobs")], self.fs)
        self.blobs.bind(engine, self.packs)
        # Small blobs of a batch go many to a pack (artifact_packed.py); off: one object each (as before 0.13).
        self.pack_small = pack_small if pack_small is not None else os.environ.get(PACK_SMALL_ENV, "1") != "0"
        from tracklet.server.artifact_streams import FileStreams

        # Large files streamed as chunks are sha256'd as their packs arrive (artifact_streams.py).
        self.streams = FileStreams(self._held_chunks)

    @classmethod
    def connect(cls, root: Path, url: str | None = None, options: dict[str, Any] | None = None,
                engine: sa.Engine | None = None) -> ServerArtifacts:
        """``ServerArtifacts(...)`` checked at server start: ``ValueError`` naming the location if
        its backend is missing or its bucket does not exist."""
        try:
            artifacts = cls(root, url, options, engine)
        except ImportError as error:
            raise ValueError(f"the artifacts location {url} needs a package that is not installed: {error} "
                             "(for s3://: pip install 'tracklet[s3]')") from None
        if not artifacts.blobs.local:
            bucket = artifacts.blobs.base.split("/", 1)[0]
            try:
                exists = artifacts.fs.exists(bucket)
            except Exception as error:
                raise ValueError(f"cannot use the artifacts location {url}: {type(error).__name__}: {error}") from None
            if not exists:
                raise ValueError(f"cannot use the artifacts location {url}: bucket {bucket!r} does not exist "
                                 "(create it first)")
        return artifacts

    # ------------------------------------------------------------ grants

    def holding(self, project: str, digests: list[str]) -> set[str]:
        """Which of ``digests`` the project holds (queried 1,000 at a time)."""
        check_name("project", project)
        held: set[str] = set()
        unique = list(dict.fromkeys(digests))
        with self.engine.connect() as connection:
            for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
                batch = unique[start:start + MAX_DIGESTS_PER_QUERY]
                held.update(connection.execute(sa.select(artifact_blobs.c.digest).where(
                    artifact_blobs.c.project == project, artifact_blobs.c.digest.in_(batch))).scalars())
                held.update(connection.execute(sa.select(artifact_files.c.digest).where(
                    artifact_files.c.project == project, artifact_files.c.digest.in_(batch))).scalars())
        return held

    def touch(self, project: str, digests: list[str]) -> None:
        """Mark the project's blobs and chunked files among ``digests`` as used now: a garbage
        collection removes only what was neither sent nor referenced within its grace period, and
        it deletes a row only if it is still that old, so a commit that touched a row keeps it."""
        unique = list(dict.fromkeys(digests))
        now = time.time()
        with self.engine.begin() as connection:
            for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
                batch = unique[start:start + MAX_DIGESTS_PER_QUERY]
                for table in (artifact_blobs, artifact_files):
                    connection.execute(table.update().where(table.c.project == project, table.c.digest.in_(batch))
                                       .values(created_at=now))

    def holds(self, project: str, digest: str) -> bool:
        return bool(self.holding(project, [check_file_digest(digest)]))

    def claimed(self, digests: list[str]) -> set[str]:
        """Which of ``digests`` any project holds (1,000 per query): a blob no project holds was
        put into the store outside the upload routes (runs recorded in the server's own data root)."""
        found: set[str] = set()
        unique = list(dict.fromkeys(digests))
        with self.engine.connect() as connection:
            for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
                batch = unique[start:start + MAX_DIGESTS_PER_QUERY]
                found.update(connection.execute(sa.select(artifact_blobs.c.digest).distinct().where(
                    artifact_blobs.c.digest.in_(batch))).scalars())
        return found

    def release(self, project: str, digest: str, cutoff: float) -> tuple[int, bool]:
        """Drop ``project``'s grant of ``digest`` if it was last used before ``cutoff`` (the age
        condition is in the ``DELETE``: a grant an upload touched meanwhile stays). Returns the
        grants dropped and whether any project still holds the blob (as a blob or a chunked file):
        ``tracklet media prune`` on a server (``media_retention.py``)."""
        with self.engine.begin() as connection:
            dropped = connection.execute(artifact_blobs.delete().where(
                artifact_blobs.c.project == project, artifact_blobs.c.digest == digest,
                artifact_blobs.c.created_at < cutoff)).rowcount or 0
            held = any(connection.execute(sa.select(table.c.digest).where(table.c.digest == digest).limit(1)).first()
                       for table in (artifact_blobs, artifact_files))
        return dropped, held

    def grant(self, project: str, sizes: dict[str, int], objects: Iterable[str] = ()) -> None:
        """Record that ``project`` holds these blobs (digest -> size); one transaction, once the
        names of the blobs written so far are durable (``durable.py``). ``objects``: those of
        them stored as objects of their own (not packed), checked to be there inside the grant's
        transaction (``BlobCollected``, nothing granted, if one is gone: see ``_grant_objects``)."""
        gone = self._grant_objects(project, sizes, list(objects))
        if gone:
            raise errors.BlobCollected(f"blob {gone[0]} was removed by a garbage collection while it was being "
                                       "uploaded; send it again")

    def _grant_objects(self, project: str, sizes: dict[str, int], objects: list[str]) -> list[str]:
        """Grant ``sizes`` to ``project`` unless one of ``objects`` is missing from the store:
        then nothing is granted and the missing ones are returned. The check runs after the
        grants' write in the same transaction, and a garbage collection removes a blob object
        only holding the grants table locked, after checking again that no project holds it
        (``artifact_gc._remove_blobs``). So an upload that found the object stored (and wrote
        nothing) or wrote it just before a collection removed it learns it here, before any
        grant names a removed object: either its grant is first (the collection keeps the
        object) or the collection's delete is (the object is written again)."""
        if not sizes:
            return []
        self.blobs.sync()
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(artifact_blobs)
        statement = insert.on_conflict_do_update(index_elements=["project", "digest"],
                                                 set_={"created_at": insert.excluded.created_at})
        now = time.time()
        with self.engine.connect() as connection, connection.begin() as transaction:
            connection.execute(statement, [
                {"project": project, "digest": digest, "size": size, "created_at": now}
                for digest, size in sizes.items()])
            gone = self._missing_objects(objects)
            if gone:
                transaction.rollback()
        return gone

    def _missing_objects(self, digests: list[str]) -> list[str]:
        """Those of ``digests`` whose own object is not in the store now; on an object store the
        requests go out together (one round trip's wait for a batch, as ``fs.pipe`` wrote them)."""
        if self.blobs.local or len(digests) < 2 or not getattr(self.fs, "async_impl", False):
            return [digest for digest in digests if not self._object_exists(digest)]
        import asyncio

        from fsspec.asyn import sync

        paths = [self.blobs._path(digest) for digest in digests]
        for path in paths:
            self.fs.invalidate_cache(path)

        async def look() -> list[bool]:
            return list(await asyncio.gather(*(self.fs._exists(path) for path in paths)))

        found = sync(self.fs.loop, look)
        return [digest for digest, there in zip(digests, found) if not there]

    def _object_exists(self, digest: str) -> bool:
        """Whether blob ``digest``'s own object is in the store now (a packed blob's placement
        aside; on an object store asked afresh, not from a listing cached)."""
        path = self.blobs._path(digest)
        if self.blobs.local:
            return os.path.isfile(path)
        self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def missing(self, project: str, digests: list[str]) -> list[str]:
        """Which of ``digests`` the project does not hold (in the order given, once each). Those it
        holds are marked used now first (``touch``): the client will not send them, so a garbage
        collection running meanwhile must keep them (it deletes a row only if it is still old)."""
        if len(digests) > MAX_DIGESTS_PER_QUERY:
            raise BadRequest(f"{len(digests)} digests in one query; at most {MAX_DIGESTS_PER_QUERY} may be asked "
                             "about at once (split the list)")
        unique = list(dict.fromkeys(check_file_digest(d) for d in digests))
        check_name("project", project)
        self.touch(project, unique)
        held = self.holding(project, unique)
        return [digest for digest in unique if digest not in held]

    # ------------------------------------------------------------ blobs

    def open_blob(self, project: str, digest: str) -> tuple[Any, int]:
        """A blob the project holds, opened for reading, and its size; a file it holds as chunks,
        rebuilt as it is read (``ChunkedFile``); ``NotHeld`` otherwise."""
        if not self.holds(project, digest):
            raise NotHeld(f"project {project} holds no blob {digest}")
        recipe_digest = self._file_recipe(project, digest)
        if recipe_digest is not None:
            from tracklet.server.artifact_chunks import ChunkedFile

            recipe = self._read_recipe(project, recipe_digest)
            return ChunkedFile(recipe, self.packs, ProjectChunks(self, project)), recipe.size
        try:
            size = self.blobs.size(digest)
            return self.blobs.open(digest), size
        except FileNotFoundError:
            raise NotHeld(f"blob {digest} is missing from the server's store") from None

    def store_chunks(self, project: str, digest: str, chunks: Iterator[bytes]) -> int:
        """Store one blob from ``chunks`` (called on a worker thread: ``chunks`` may block), then
        grant it to ``project``. ``DigestMismatch`` (nothing visible) if the bytes don't hash to
        ``digest``. Bytes received. A blob of at most ``SMALL_BLOB_BYTES`` is verified in memory
        and written in one piece (``store_small``); a larger one is streamed to a temporary name
        and renamed into place once verified (a blob the store has is only hashed)."""
        check_digest(digest)
        pieces: list[bytes] = []
        held = 0
        for chunk in chunks:
            pieces.append(chunk)
            held += len(chunk)
            if held > SMALL_BLOB_BYTES:
                break
        else:
            rejected = self.store_small(project, [(digest, b"".join(pieces))])
            if rejected:
                raise DigestMismatch(rejected[0][1])
            return held
        rest = itertools.chain(pieces, chunks)
        if self.blobs.has(digest):
            hasher = hashlib.sha256()
            received = 0
            for chunk in rest:
                hasher.update(chunk)
                received += len(chunk)
            if hasher.hexdigest() != digest:
                raise _mismatch(digest, hasher.hexdigest(), received)
            self.grant(project, {digest: received}, [digest])  # collected since has(): BlobCollected, sent again
            return received
        writer = self.blobs.writer()
        try:
            for chunk in rest:
                writer.write(chunk)
        except BaseException:
            writer.discard()
            raise
        if not writer.publish(digest):
            raise _mismatch(digest, writer.hasher.hexdigest(), writer.size)
        self.grant(project, {digest: writer.size}, [digest])
        return writer.size

    def store_small(self, project: str, blobs: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
        """Store small blobs held in memory and grant them to ``project``: each is verified first,
        then written whole (on an object store one PUT per blob, all at once: an object appears
        complete or not at all; on a directory through a temporary name). Returns the rejected
        ``(digest, reason)`` pairs (a digest mismatch): the others are stored regardless."""
        rejected: list[tuple[str, str]] = []
        good: dict[str, bytes] = {}
        for digest, data in blobs:
            actual = hashlib.sha256(data).hexdigest()
            if actual != check_digest(digest):
                rejected.append((digest, str(_mismatch(digest, actual, len(data)))))
            else:
                good[digest] = data
        packable = {digest: data for digest, data in good.items() if 0 < len(data) <= PACKED_BLOB_BYTES}
        if self.pack_small and len(packable) > 1:
            self.store_packed(packable)
            loose = {digest: data for digest, data in good.items() if digest not in packable}
        else:
            loose = good
        sizes = {digest: len(data) for digest, data in good.items()}
        objects: set[str] = set()
        for _ in range(3):  # a collection removing one of them meanwhile: written again
            # Every object the grant names is checked each time, not only those written again:
            # the rolled-back grant left the others ungranted, and a collection may take them too.
            objects |= set(self._write_loose(loose))
            gone = self._grant_objects(project, sizes, sorted(objects))
            if not gone:
                return rejected
            loose = {digest: good[digest] for digest in gone}
        raise errors.BlobCollected(f"blob {gone[0]} was removed by garbage collections three times while it was "
                                   "being stored; send it again")

    def _write_loose(self, loose: dict[str, bytes]) -> list[str]:
        """Write verified blobs held in memory as objects of their own; on a directory, those
        stored already are left as they are, and so are those placed in a pack (their placements
        marked used now: a collection keeps them, ``store_packed``). The digests now stored as
        objects (the others are placed)."""
        if not self.blobs.local:
            if loose:
                self.fs.pipe({self.blobs._path(digest): data for digest, data in loose.items()})
            return list(loose)
        placed = self.blobs.places(loose) if loose else {}
        if placed:  # rarely: refreshed only then, so a batch of new blobs writes nothing here
            placed = self.blobs.places(placed, refresh=True)
        for digest, data in loose.items():
            if digest not in placed and not self._object_exists(digest):
                writer = self.blobs.writer()
                writer.write(data)
                writer.publish(digest)
        return [digest for digest in loose if digest not in placed]

    def store_packed(self, blobs: dict[str, bytes]) -> str | None:
        """Store verified small blobs as one pack (``artifact_packed.py``): those placed already
        are only marked used now; the others are written as a pack (whole or not at all, as a
        client's chunk packs: ``write_pack``), then their placements recorded. The pack's id, or
        None if every blob was placed already. A server killed in between leaves a pack no row
        names (collected after the grace period); the client, told nothing was stored, sends
        the blobs again."""
        import blake3

        from tracklet.artifacts.packs import build_pack
        from sqlalchemy.dialects import postgresql, sqlite

        placed = self.blobs.places(blobs, refresh=True)
        todo = [(digest, data) for digest, data in blobs.items() if digest not in placed]
        if not todo:
            return None
        members = [(blake3.blake3(data).digest(), data) for _, data in todo]
        pack_id, packed = build_pack(members)
        self.write_pack(pack_id, packed)
        now = time.time()
        rows = []
        offset = 0
        for (digest, data), (member, _) in zip(todo, members):
            rows.append({"digest": digest, "pack_id": pack_id, "pack_offset": offset, "length": len(data),
                         "member": member.hex(), "created_at": now})
            offset += len(data)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        self.blobs.sync()  # the pack's name is durable before its placements
        with self.engine.begin() as connection:  # placed meanwhile by another upload: its place stands
            connection.execute(dialect.insert(artifact_packed_blobs).on_conflict_do_nothing(), rows)
        self.keep_pack(pack_id, packed)
        return pack_id

    def store_batch(self, project: str, body: bytes) -> tuple[list[str], list[tuple[str, str]]]:
        """Store the blobs of a batch body (``encode_batch``'s frames); (stored digests, rejected
        ``(digest, reason)``). ``BadRequest`` for a malformed body (nothing stored)."""
        blobs = decode_batch(body)
        rejected = self.store_small(project, blobs)
        refused = {digest for digest, _ in rejected}
        return [digest for digest, _ in blobs if digest not in refused], rejected

    # ------------------------------------------------------------ chunks of large files

    def missing_chunks(self, project: str, chunk_ids: list[str], *, stream: str | None = None,
                       segment: int | None = None) -> list[str]:
        """Which of ``chunk_ids`` (blake3 hex) the project does not hold (in the order given, once
        each). With ``stream`` and ``segment``, ``chunk_ids`` are that segment of a file being
        streamed, in file order: it is sha256'd once held (``artifact_streams``)."""
        from tracklet.server.artifact_chunks import MAX_CHUNK_IDS_PER_QUERY, check_chunk_ids
        from tracklet.server.artifact_streams import is_stream_id

        check_name("project", project)
        if len(chunk_ids) > MAX_CHUNK_IDS_PER_QUERY:
            raise BadRequest(f"{len(chunk_ids)} chunk ids in one query; at most {MAX_CHUNK_IDS_PER_QUERY} may be "
                             "asked about at once (split the list)")
        unique = list(dict.fromkeys(check_chunk_ids(chunk_ids)))
        with self.engine.begin() as connection:
            # Held chunks are marked used now, in the same statement that finds them (UPDATE ...
            # RETURNING, one round trip, not an UPDATE then a SELECT): the client will not send
            # them, so a garbage collection in flight keeps them (its DELETE re-checks the age).
            held = _mark_held(connection, project, unique, time.time())
        if stream is not None:
            if not is_stream_id(stream) or segment is None or not 0 <= segment < 1 << 31:
                raise BadRequest(f"stream {str(stream)[:40]!r} segment {segment!r}: a stream is 32 lowercase hex "
                                 "digits and a segment a number from 0")
            lacking = [chunk for chunk in unique if chunk not in held]
            self.streams.announce(project, stream, segment, list(map(bytes.fromhex, chunk_ids)),
                                  set(map(bytes.fromhex, lacking)))
            return lacking
        return [chunk for chunk in unique if chunk not in held]

    def _held_chunks(self, project: str, chunk_ids: list[bytes]) -> Iterator[memoryview] | None:
        """The bytes of ``chunk_ids`` in order, read from the project's packs into one reused
        buffer (not checked against their ids: they were when they arrived), or None if the
        project lacks one of them."""
        from tracklet.artifacts.packs import Located, PackReader

        places = self._places(project, chunk_ids)
        if any(cid not in places for cid in chunk_ids):
            return None
        return PackReader(self.packs, Located(places), verify=False, reuse_buffer=True).iter_chunks(chunk_ids)

    def store_pack(self, project: str, pack_id: str, data: bytes | memoryview, *,
                   release: Callable[[], None] | None = None) -> int:
        """Keep a pack of chunks a client sent and grant its chunks to ``project`` (a chunk the
        project holds already keeps its place, marked used now): checked whole first (``check_pack``: nothing is kept
        from a pack with one bad chunk), then written in one piece (a temporary renamed into place
        on a directory, one PUT on an object store). Chunks granted. ``release``: ``data`` is a
        buffer lent by the caller, called exactly once when nothing reads it any more, which may be
        after this returns (a stream being hashed keeps a pack that arrived ahead, ``artifact_streams``)."""
        try:
            entries = self._keep_pack_and_rows(project, pack_id, data)
        except BaseException:
            if release is not None:
                release()
            raise
        view = memoryview(data)  # checked, and the bytes just written: hashed from here, not read back
        chunks = {cid: (view, offset, length) for cid, offset, length in entries}
        try:
            self.streams.received(project, chunks, len(data), release)  # calls release, now or later
        finally:
            self.streams.arrived(project, list(chunks))
        return len(entries)

    def _keep_pack_and_rows(self, project: str, pack_id: str, data: bytes | memoryview) -> list[tuple[bytes, int, int]]:
        """``store_pack``'s check, pack write and chunk rows: the pack's entries."""
        from tracklet.server.artifact_chunks import check_pack

        check_name("project", project)
        entries = check_pack(pack_id, data)
        self.write_pack(pack_id, data)
        now = time.time()
        sql, positional = self._chunk_rows_upsert
        # A chunk twice in the pack: one row, its first place.
        rows: dict[bytes, Any] = {cid: (project, cid.hex(), pack_id, offset, length, now)
                                  for cid, offset, length in reversed(entries)}
        values = list(rows.values()) if positional else [dict(zip(_CHUNK_ROW, row)) for row in rows.values()]
        self.blobs.sync()  # the pack's name is durable before the rows naming it
        with self.engine.begin() as connection:
            if values:
                connection.exec_driver_sql(sql, values)
        self.keep_pack(pack_id, data)
        return entries

    @functools.cached_property
    def _chunk_rows_upsert(self) -> tuple[str, bool]:
        """The chunk rows' insert as the driver's SQL (built once), and whether its parameters are
        positional (SQLite's ``?``: each row a tuple) or named (psycopg's: each row a dict). Handed to
        the driver's ``executemany`` as it is: SQLAlchemy building the statement and each row's
        parameters again for every pack was most of a pack's Python outside the hashing. A chunk the
        project holds keeps its place but is marked used now: an old row of an abandoned upload must
        not be collected under the upload that just sent the chunk again."""
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(artifact_chunks)
        statement = insert.on_conflict_do_update(index_elements=["project", "chunk_id"],
                                                 set_={"created_at": insert.excluded.created_at})
        compiled = statement.compile(dialect=self.engine.dialect, column_keys=list(_CHUNK_ROW))
        if compiled.positional and tuple(compiled.positiontup or ()) != _CHUNK_ROW:
            raise RuntimeError(f"chunk rows' parameters came out as {compiled.positiontup}, not {_CHUNK_ROW}")
        return str(compiled), bool(compiled.positional)

    def write_pack(self, pack_id: str, data: bytes | memoryview) -> None:
        """Put a checked pack's bytes in place under its id, whole or not at all (a temporary
        renamed on a directory, one PUT on an object store); nothing if it is there already."""
        final = self.packs.pack_path(pack_id)
        if self.blobs.local:  # the OS's calls: fsspec's exists (path parsing, an info dict) ran twice per pack
            if os.path.exists(final):
                return
            temporary = f"{self.packs.tmp_dir}/{uuid.uuid4().hex}.partial"
            os.makedirs(os.path.dirname(temporary), exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                sync_file(handle)  # on the disk before it is visible: a row may name it next
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(temporary, final)
            self.blobs.directory_syncs.add(os.path.dirname(final))
        else:
            self.fs.invalidate_cache(final)
            if not self.fs.exists(final):
                self.fs.pipe_file(final, bytes(data))

    def keep_pack(self, pack_id: str, data: bytes | memoryview) -> None:
        """Once rows name pack ``pack_id`` (chunks, placements): put it back if it is gone. A pack
        written by a server killed before its rows sat unclaimed, so a garbage collection may
        remove it between a retry's ``write_pack`` (which found it there and wrote nothing) and the
        retry's rows; the collection re-checks the rows after moving a pack aside and puts back one
        claimed meanwhile (``artifact_gc._remove_pack``), and this covers a collection that saw no
        rows yet: whichever of the two comes last restores the pack, so no row names a removed one."""
        self.write_pack(pack_id, data)
        self.blobs.sync()

    def _places(self, project: str, chunk_ids: list[bytes]) -> dict[bytes, tuple[str, int, int]]:
        """``chunk id -> (pack, offset, length)`` of the project's chunks among ``chunk_ids``."""
        places: dict[bytes, tuple[str, int, int]] = {}
        unique = list(dict.fromkeys(cid.hex() for cid in chunk_ids))
        with self.engine.connect() as connection:
            for start in range(0, len(unique), MAX_DIGESTS_PER_QUERY):
                rows = connection.execute(sa.select(
                    artifact_chunks.c.chunk_id, artifact_chunks.c.pack_id, artifact_chunks.c.pack_offset,
                    artifact_chunks.c.length).where(artifact_chunks.c.project == project,
                                                   artifact_chunks.c.chunk_id.in_(unique[start:start + MAX_DIGESTS_PER_QUERY])))
                for chunk_id, pack_id, offset, length in rows:
                    places[bytes.fromhex(chunk_id)] = (pack_id, offset, length)
        return places

    def _file_recipe(self, project: str, digest: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(artifact_files.c.recipe).where(
                artifact_files.c.project == project, artifact_files.c.digest == digest)).scalar()

    def _read_recipe(self, project: str, recipe_digest: str) -> Any:
        """The project's recipe blob ``recipe_digest``, parsed and checked (``BadRequest`` if not)."""
        from tracklet.artifacts.chunking import FileRecipe
        from tracklet.errors import RecipeError
        from tracklet.server.artifact_chunks import MAX_RECIPE_BYTES

        data = self._read_small_blob(project, recipe_digest, "recipe", MAX_RECIPE_BYTES)
        try:
            return FileRecipe.from_json(data)
        except RecipeError as error:
            raise BadRequest(f"the recipe {recipe_digest}: {error}") from None

    def register_file(self, project: str, digest: str, size: int, recipe_digest: str, *,
                      stream: str | None = None) -> bool:
        """Record that ``project`` holds file ``digest`` as the chunks its recipe blob lists: the
        recipe must describe that digest and size, the project must hold every chunk, and the file
        rebuilt from them (each chunk checked against its blake3) must hash to ``digest`` (its
        BLAKE3, ``blake3:<hex>``; or, from a client before that rule, its sha256).
        ``BadRequest`` naming what fails (nothing recorded). False if it was registered already.
        With the ``stream`` its chunks were sent in, the BLAKE3 computed while they arrived is used
        when it covers exactly the recipe's chunks (``artifact_streams``); else the file is read back."""
        check_file_digest(digest)
        check_digest(recipe_digest)
        if self._file_recipe(project, digest) is not None:
            if stream is not None:
                self.streams.forget(project, stream)
            self.touch(project, [digest])
            return False
        recipe = self._read_recipe(project, recipe_digest)
        if recipe.digest != digest or recipe.size != size:
            raise BadRequest(f"the recipe {recipe_digest} describes {recipe.size:,} bytes with digest "
                             f"{recipe.digest}, not file {digest} of {size:,} bytes")
        now = time.time()
        ids = recipe.chunk_ids
        unique_hex = list(dict.fromkeys(map(bytes.hex, ids)))
        held: set[str] = set()
        # Used now, so a collection running meanwhile keeps them; held, in the same statement
        # (RETURNING); where they are is asked only if the file is read back.
        with self.engine.begin() as connection:
            for start in range(0, len(unique_hex), MAX_DIGESTS_PER_QUERY):
                held.update(_mark_held(connection, project, unique_hex[start:start + MAX_DIGESTS_PER_QUERY], now))
        absent = [cid for cid in unique_hex if cid not in held]
        if absent:
            raise BadRequest(f"file {digest}: project {project} lacks {len(absent)} of its {len(unique_hex)} chunks "
                             f"(e.g. {absent[0]}): send them first")
        from tracklet.artifacts.packs import Located, PackReader
        from tracklet.server.artifact_chunks import ChunkStoreError

        # Each chunk was checked against its blake3 when its pack arrived, and the whole is checked
        # against the file's digest here (a damaged chunk fails it): hashed while the chunks
        # arrived when the client named its stream (streams hash BLAKE3: an old client's sha256
        # file reads back), else hashed as read back, no copy.
        streamed = self.streams.digest(project, stream, ids) if stream is not None else None
        if streamed is not None and is_blake3(digest):
            actual, size_read = streamed
        else:
            hasher = file_hasher(digest, threaded=False)  # fed a chunk at a time
            size_read = 0
            try:
                reader = PackReader(self.packs, Located(self._places(project, ids)), verify=False, reuse_buffer=True)
                for piece in reader.iter_chunks(recipe.chunk_ids, name=digest):
                    hasher.update(piece)
                    size_read += len(piece)
            except (ChunkStoreError, FileNotFoundError) as error:
                raise BadRequest(f"file {digest} can't be rebuilt from project {project}'s chunks: {error}") from None
            actual = hasher.hexdigest()
        if actual != digest or size_read != size:
            raise BadRequest(f"file {digest}: its chunks rebuild to {actual} "
                             f"({size_read:,} bytes); not registered")
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with self.engine.begin() as connection:
            connection.execute(dialect.insert(artifact_files).on_conflict_do_nothing(), [
                {"project": project, "digest": digest, "recipe": recipe_digest, "size": size, "created_at": now}])
        self.touch(project, [recipe_digest])
        return True

    # ------------------------------------------------------------ upload sessions

    def _session_dir(self, upload_id: str) -> str:
        if not (len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)):
            raise NotHeld(f"no upload session {upload_id[:40]!r}")
        return f"{self.uploads}/{upload_id}"

    def _temporary_key(self, upload_id: str) -> str:
        return f"{self.blobs.base}/tmp/{upload_id}.partial"

    def start(self, project: str, digest: str, size: int, part_size: int) -> Session:
        """A new upload session for blob ``digest`` of ``size`` bytes in parts of ``part_size``."""
        check_digest(digest)
        check_name("project", project)
        if type(size) is not int or size < 0:
            raise BadRequest(f"size must be a non-negative integer; got {size!r}")
        if type(part_size) is not int or not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise BadRequest(f"part_size must be {MIN_PART_BYTES}..{MAX_PART_BYTES} bytes; got {part_size!r}")
        if -(-size // part_size) > MAX_PARTS:
            raise BadRequest(f"a blob of {size} bytes needs more than {MAX_PARTS} parts of {part_size} bytes; "
                             "use larger parts")
        session = Session(uuid.uuid4().hex, project, digest, size, part_size, time.time())
        if not self.blobs.local:
            bucket, key, _ = self.fs.split_path(self._temporary_key(session.id))
            answer = self.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
            session = dataclasses.replace(session, s3_upload_id=answer["UploadId"])
        directory = self._session_dir(session.id)
        self.fs.makedirs(directory, exist_ok=True)
        self.fs.pipe_file(f"{directory}/session.json", json.dumps(dataclasses.asdict(session)).encode())
        return session

    def session(self, project: str, upload_id: str) -> Session:
        """The project's session ``upload_id``; ``NotHeld`` if there is none (or another project's)."""
        path = f"{self._session_dir(upload_id)}/session.json"
        try:
            self.fs.invalidate_cache(path)
            document = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            raise NotHeld(f"no upload session {upload_id} (completed, or never started)") from None
        session = Session(**document)
        if session.project != project:
            raise NotHeld(f"no upload session {upload_id} in project {project}")
        return session

    def parts(self, session: Session) -> dict[int, dict[str, Any]]:
        """The parts received whole and verified: number -> {size, sha256, etag}."""
        directory = f"{self._session_dir(session.id)}/parts"
        self.fs.invalidate_cache(directory)
        try:
            names = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base.endswith(".json") and base[:-5].isdigit():
                found[int(base[:-5])] = json.loads(self.fs.cat_file(name))
        return dict(sorted(found.items()))

    def put_part(self, session: Session, number: int, data: bytes, sha256: str | None) -> dict[str, Any]:
        """Keep part ``number`` (1-based) of ``session``: it must have its exact length and, if the
        client said, its sha256. A part sent again replaces the first."""
        if not 1 <= number <= session.part_count:
            raise BadRequest(f"part {number} is out of range: this upload has parts 1..{session.part_count}")
        expected = session.part_length(number)
        if len(data) != expected:
            raise BadRequest(f"part {number} must be {expected} bytes; got {len(data)}")
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise _mismatch(sha256, digest, len(data), what=f"part {number}")
        directory = self._session_dir(session.id)
        record: dict[str, Any] = {"size": len(data), "sha256": digest}
        if session.s3_upload_id is not None:
            bucket, key, _ = self.fs.split_path(self._temporary_key(session.id))
            answer = self.fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=session.s3_upload_id,
                                     PartNumber=number, Body=data)
            record["etag"] = answer["ETag"]
        else:
            final = f"{directory}/data/{number}"
            temporary = f"{final}.{uuid.uuid4().hex}.tmp"
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                sync_file(handle)  # the part's record below says it arrived whole: it must have
            os.replace(temporary, final)
            sync_directory(os.path.dirname(final))
        self.fs.makedirs(f"{directory}/parts", exist_ok=True)
        self.fs.pipe_file(f"{directory}/parts/{number}.json", json.dumps(record).encode())
        return record

    def complete(self, session: Session) -> int:
        """Assemble the parts into the blob, verify its sha256 and make it visible; then grant it
        and remove the session. ``BadRequest`` naming the missing parts; ``DigestMismatch`` (the
        session is removed: start again) if the whole doesn't hash to the session's digest."""
        parts = self.parts(session)
        missing = [n for n in range(1, session.part_count + 1) if n not in parts]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise BadRequest(f"upload {session.id} is missing part(s) {shown} of {session.part_count}")
        directory = self._session_dir(session.id)
        try:
            if session.s3_upload_id is None:
                self.store_chunks(session.project, session.digest, self._local_parts(directory, session))
            else:
                self._complete_s3(session, parts)
        except DigestMismatch:
            self.abort(session)
            raise
        self.abort(session)
        return session.size

    def _local_parts(self, directory: str, session: Session) -> Iterator[bytes]:
        for number in range(1, session.part_count + 1):
            with open(f"{directory}/data/{number}", "rb") as handle:
                while chunk := handle.read(_READ):
                    yield chunk

    def _complete_s3(self, session: Session, parts: dict[int, dict[str, Any]]) -> None:
        """Complete the multipart upload into the session's temporary object, verify it, then copy
        it to the blob's name and grant it. The temporary stays until the grant: a collection that
        removes the copy before the grant (an unheld object) is answered by copying it again, and
        a call again after a 503 or a lost answer (the multipart completed already) goes on from
        the temporary; the client never sends the parts twice."""
        temporary = self._temporary_key(session.id)
        bucket, key, _ = self.fs.split_path(temporary)
        try:
            self.fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=session.s3_upload_id,
                            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": parts[n]["etag"]}
                                                       for n in sorted(parts)]})
        except Exception:  # completed by an earlier call: its temporary is the whole blob
            self.fs.invalidate_cache(temporary)
            if not self.fs.exists(temporary):
                raise
        self.fs.invalidate_cache(temporary)
        hasher = hashlib.sha256()
        with self.fs.open(temporary, "rb") as handle:
            while chunk := handle.read(_READ):
                hasher.update(chunk)
        if hasher.hexdigest() != session.digest:
            self.fs.rm(temporary)
            raise _mismatch(session.digest, hasher.hexdigest(), session.size)
        final = self.blobs._path(session.digest)
        for _ in range(3):
            self.fs.copy(temporary, final)  # on the object store: no bytes through this server
            try:
                self.grant(session.project, {session.digest: session.size}, [session.digest])
            except errors.BlobCollected:
                continue
            self.fs.rm(temporary)
            return
        raise errors.BlobCollected(f"blob {session.digest} was removed by garbage collections three times while "
                                   "its upload completed; complete it again")

    def abort(self, session: Session) -> None:
        """Forget a session and what it received."""
        if session.s3_upload_id is not None:
            bucket, key, _ = self.fs.split_path(self._temporary_key(session.id))
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=session.s3_upload_id)
            except Exception:  # completed already, or gone: nothing left to abort
                pass
        try:
            self.fs.rm(self._session_dir(session.id), recursive=True)
        except FileNotFoundError:
            pass

    def sweep_uploads(self, max_age: float = STALE_UPLOAD_SECONDS) -> int:
        """Abort upload sessions started more than ``max_age`` seconds ago (a client that never
        came back): their parts are removed. Sessions removed."""
        try:
            self.fs.invalidate_cache(self.uploads)
            directories = self.fs.ls(self.uploads, detail=False)
        except FileNotFoundError:
            return 0
        cutoff = time.time() - max_age
        removed = 0
        for directory in directories:
            try:
                document = json.loads(self.fs.cat_file(f"{directory}/session.json"))
                session = Session(**document)
            except FileNotFoundError:
                continue  # being created, or removed meanwhile
            except (ValueError, TypeError):  # not a session file: old enough to go, by the directory's id
                continue
            if session.created_at < cutoff:
                self.abort(session)
                removed += 1
        return removed

    # ------------------------------------------------------------ versions

    def commit(self, project: str, name: str, *, type: str, manifest_digest: str, description: str,
               metadata: dict[str, Any], aliases: list[str], logged_by: str | None,
               history_step: int | None = None, tags: list[str] | None = None,
               incremental_base: str | None = None, commit_id: str | None = None) -> tuple[VersionInfo, bool]:
        """Add a version whose manifest is the project's blob ``manifest_digest``: the manifest must
        parse, and the project must hold every blob it names (``BadRequest`` listing the first
        missing ones). ``history_step`` and ``tags``: the version's (``VersionInfo``'s); a version
        returned as reused keeps its own. ``incremental_base``: an incremental version's base
        (the manifest blob it was merged onto, "" for none); see ``_commit_incremental``.
        ``commit_id`` (32 lowercase hex digits the client drew once per logged version): kept with
        the version this commit makes, or, where it makes none (the latest had its content), with
        the version it answers; the same commit sent again (its answer lost, a repeated sync)
        answers that version (reused), found by the id alone under the collection's lock, whatever
        landed since (``registry.commit(by_commit_id=True)``). Versions stored without one (before
        session 32, an older client) keep the rules before (``_logged_before``, ``_applied_before``).
        Returns (the version with its aliases, reused)."""
        check_digest(manifest_digest)
        if commit_id is not None and not (len(commit_id) == 32 and all(c in "0123456789abcdef" for c in commit_id)):
            raise BadRequest(f"{commit_id[:80]!r} is not a commit id (32 lowercase hex digits)")
        if incremental_base:
            check_digest(incremental_base)
        try:
            check_artifact_type(type)
            tags = check_tags(tags or [], f"artifact {project}/{name}")
        except ArtifactNameError as error:
            raise BadRequest(str(error)) from None
        manifest = self._read_manifest(project, manifest_digest, f"the manifest of {project}/{name}")
        named = [manifest_digest, *(entry.digest for entry in manifest if entry.ref is None)]
        self.touch(project, named)  # referenced now: a garbage collection in flight keeps them
        held = self.holding(project, named[1:])
        absent = [entry.path for entry in manifest if entry.ref is None and entry.digest not in held]
        if absent:
            raise BadRequest(f"{len(absent)} file(s) of the manifest have no blob in project {project}: "
                             + ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "") + " (upload them first)")
        if logged_by is not None:
            run_project, _, run_id = logged_by.partition("/")
            check_name("project", run_project)
            check_name("run id", run_id)
        info = VersionInfo(project=project, name=name, version=-1, type=type, digest=manifest.digest(),
                           manifest=manifest_digest, size=manifest.size, file_count=len(manifest),
                           description=description, metadata=metadata, logged_by=logged_by,
                           history_step=history_step, tags=tags, commit_id=commit_id)
        try:
            if logged_by is not None:  # the same run sending the same content again: that version
                earlier = self._logged_before(info)
                if earlier is None and incremental_base is not None:
                    earlier = self._applied_before(info, manifest, incremental_base)
                if earlier is not None:
                    if aliases:
                        self.registry.set_aliases(project, name, earlier.version, aliases, [])
                    return self.registry.version(project, name, f"v{earlier.version}"), True
            if incremental_base is not None:
                return self._commit_incremental(info, manifest, aliases, incremental_base)
            return self.registry.commit(info, aliases, by_commit_id=True)
        except ArtifactError as error:
            raise BadRequest(str(error)) from None

    def _read_small_blob(self, project: str, digest: str, kind: str, limit: int) -> bytes:
        """The bytes of the project's ``kind`` blob ``digest`` (a manifest, a recipe), at most
        ``limit`` of them (``BadRequest`` naming the blob if the project doesn't hold it or it is
        larger: what a client names is read with bounded memory)."""
        try:
            handle, size = self.open_blob(project, digest)
        except NotHeld:
            raise BadRequest(f"the {kind} blob {digest} was not uploaded to project {project}") from None
        with handle:
            if size > limit:
                raise BadRequest(f"the {kind} {digest} is {size:,} bytes; this server takes at most {limit:,}")
            return handle.read(limit + 1)

    def _read_manifest(self, project: str, digest: str, what: str) -> Manifest:
        """The project's manifest blob ``digest``, parsed and checked (``BadRequest`` naming why not)."""
        data = self._read_small_blob(project, digest, "manifest", MAX_SERVER_MANIFEST_BYTES)
        try:
            return Manifest.from_bytes(data, what=what)
        except ArtifactError as error:
            raise BadRequest(str(error)) from None

    def _commit_incremental(self, info: VersionInfo, manifest: Manifest, aliases: list[str],
                            base: str) -> tuple[VersionInfo, bool]:
        """Commit an incremental version (W&B's ``incremental=True``) whose ``manifest`` is the
        merge of its increment onto the version whose manifest blob is ``base`` ("" for none): as it
        is while that is still the collection's latest (checked under the collection's lock:
        ``registry.commit(base=)``); else its increment (``incremental.increment``: entries new or
        changed against the base, paths it dropped) merged onto the latest there is, written as a
        manifest blob of the project, and committed the same way, until it lands. The merge names
        only blobs the project holds (the latest version's and the checked manifest's)."""
        from tracklet.artifacts import incremental
        from tracklet.artifacts.registry import BaseMoved

        what = f"the base manifest of {info.project}/{info.name}"
        base_manifest = self._read_manifest(info.project, base, what) if base else Manifest({})
        changed, gone = incremental.increment(base_manifest, manifest)
        for _ in range(100):  # each try loses only to a commit that landed meanwhile
            try:
                return self.registry.commit(info, aliases, base=base, by_commit_id=True)
            except BaseMoved as moved:
                latest = moved.latest
            if latest is None:  # every version was deleted meanwhile: the increment alone
                merged, base = incremental.merged(None, changed, gone), ""
            else:
                merged = incremental.merged(self._read_manifest(info.project, latest.manifest,
                                                                f"the manifest of {latest.qualified_name}"),
                                            changed, gone)
                base = latest.manifest
            data = merged.to_bytes()
            digest = hashlib.sha256(data).hexdigest()
            self.touch(info.project, [entry.digest for entry in merged if entry.ref is None])
            rejected = self.store_small(info.project, [(digest, data)])
            if rejected:
                raise ArtifactError(f"the merged manifest of {info.project}/{info.name}: {rejected[0][1]}")
            info = dataclasses.replace(info, digest=merged.digest(), manifest=digest, size=merged.size,
                                       file_count=len(merged))
        raise BadRequest(f"artifact {info.project}/{info.name}: other versions kept landing while an incremental "
                         "version was merged onto the latest; send it again")

    def save_aliases(self, project: str, name: str, version: int, add: list[str],
                     remove: list[str]) -> VersionInfo:
        """Give ``project/name:v<version>`` the custom aliases ``add`` (each moved from whichever
        version holds it: one version per alias, in one locked transaction of the collection) and
        take ``remove`` off it (one that names another version now stays there): the rules of the
        local store's ``artifact.save()`` (``Artifact._save_aliases``), applied by the same
        registry code. ``latest`` and ``vN`` are not aliases one can give or take (``BadRequest``).
        Returns the version with its aliases after."""
        from tracklet.artifacts.names import LATEST, check_alias, custom_aliases

        if LATEST in remove:
            raise BadRequest(f"artifact {project}/{name}: 'latest' always names the newest version; it can't be "
                             "removed")
        try:
            added = custom_aliases(add)
            removed = [check_alias(alias) for alias in dict.fromkeys(remove) if alias not in added]
            self.registry.set_aliases(project, name, version, added, removed)
        except ArtifactNotFound:
            raise
        except ArtifactError as error:
            raise BadRequest(str(error)) from None
        return self.registry.version(project, name, f"v{version}")

    def edit_version(self, project: str, name: str, version: int, edit: VersionEdit) -> VersionInfo:
        """Apply ``edit`` to ``project/name:v<version>`` (``artifact.save()`` of an edited version:
        its description, metadata, tags and aliases; never its files) in one locked transaction of
        the collection, by the registry code the local store uses, after checking every field
        (``BadRequest`` naming the one at fault: nothing changes then). Returns the version after."""
        try:
            checked = edit.checked(f"artifact {project}/{name}:v{version}")
            return self.registry.edit_version(project, name, version, checked)
        except ArtifactNotFound:
            raise
        except ArtifactError as error:
            raise BadRequest(str(error)) from None

    def hold_version(self, connection: sa.Connection, source: Any) -> contextlib.AbstractContextManager[None]:
        """Hold artifact version ``source`` (project, name, version) until the model registry's
        link transaction on ``connection`` commits (``ModelRegistry(holding=)``): the collection's
        lock (PostgreSQL: its advisory lock in that transaction; else the version store's file
        lock), the version checked to exist."""
        return self.registry.holding(connection, source.project, source.name, source.version)

    def delete_version(self, project: str, name: str, version: int, *, drop_aliases: bool,
                       check: Callable[[sa.Connection | None], None] | None = None) -> tuple[VersionInfo, list[str]]:
        """Delete ``project/name:v<version>`` as ``tracklet artifact rm`` does locally
        (``LocalRegistry.delete_version``; ``check``, the caller's refusal of a version the model
        registry links, runs holding the collection's lock that a link holds too, so no link slips
        in between; given the deletion's transaction on PostgreSQL, else None): its number is never given again, ``latest`` falls back, a version with custom
        aliases only with ``drop_aliases``. Its blobs are left to ``artifact-gc``, and marked used
        once it is deleted, so the collection's grace period runs from the deletion (a client
        downloading the version it just read finishes). The deletion is the request's first
        write (a refusal writes nothing, so its audit event says what was answered). Returns
        (the version deleted, the aliases dropped)."""
        info = self.registry.version(project, name, f"v{version}")
        try:
            named = self._named_blobs(info)
        except (OSError, ArtifactError):
            named = [info.manifest]  # a damaged manifest: nothing more to keep for the grace period
        dropped = self.registry.delete_version(project, name, version, drop_aliases=drop_aliases, check=check)
        # The deletion is done: a failure to mark its blobs used (the database gone a moment) must
        # not answer 503 for it (the client's retry would find it deleted). Their grace period
        # then runs from their last use before.
        try:
            self.touch(project, named)
        except sa.exc.SQLAlchemyError as error:
            print(f"tracklet server: {info.qualified_name} was deleted, but its blobs could not be marked used "
                  f"({type(error).__name__}); artifact-gc's grace period runs from their last use", file=sys.stderr)
        return info, dropped

    def delete_collection(self, project: str, name: str, *,
                          check: Callable[[sa.Connection | None, list[int]], None] | None = None
                          ) -> tuple[list[VersionInfo], dict[str, int]]:
        """Delete every version of ``project/name`` and its aliases (W&B's
        ``ArtifactCollection.delete()``), as ``delete_version`` deletes one: numbers never given
        again, blobs left to ``artifact-gc`` and marked used now so its grace period runs from the
        deletion. ``check(connection, numbers)`` runs holding the collection's lock first.
        Returns (the versions deleted, the aliases dropped: alias -> version)."""
        named: list[str] = []
        for info in self.registry.versions(project, name):
            try:
                named.extend(self._named_blobs(info))
            except (OSError, ArtifactError):
                named.append(info.manifest)
        infos, dropped = self.registry.delete_collection(project, name, check=check)
        try:
            self.touch(project, list(dict.fromkeys(named)))
        except sa.exc.SQLAlchemyError as error:
            print(f"tracklet server: {project}/{name} was deleted, but its blobs could not be marked used "
                  f"({type(error).__name__}); artifact-gc's grace period runs from their last use", file=sys.stderr)
        return infos, dropped

    def update_collection(self, project: str, name: str, edit: CollectionEdit, *,
                          check: Callable[[sa.Connection | None, list[int]], None] | None = None
                          ) -> tuple[str, CollectionFields]:
        """Apply ``edit`` (type, description, tags replaced, added and removed) in one locked change
        of the collection (``LocalRegistry.update_collection``), ``BadRequest`` naming the field or
        tag at fault (nothing changes then); ``check`` as ``delete_collection``'s, when the type
        changes. Returns (the old type, the ``CollectionFields`` stored)."""
        try:
            previous, fields = self.registry.update_collection(project, name, edit, check=check)
        except ArtifactNotFound:
            raise
        except ArtifactError as error:
            raise BadRequest(str(error)) from None
        return str(previous), fields

    def _named_blobs(self, info: VersionInfo) -> list[str]:
        with self.open_blob(info.project, info.manifest)[0] as handle:
            data = handle.read(MAX_SERVER_MANIFEST_BYTES + 1)
        manifest = Manifest.from_bytes(data, what=f"the manifest of {info.qualified_name}")
        recipes = [entry.extra["recipe"] for entry in manifest
                   if entry.ref is None and isinstance(entry.extra.get("recipe"), str)]
        return [info.manifest, *(entry.digest for entry in manifest if entry.ref is None), *recipes]

    def _applied_before(self, info: VersionInfo, manifest: Manifest, base: str) -> VersionInfo | None:
        """An incremental version sent again (a retried commit whose answer was lost, a repeated
        ``tracklet sync``) that the server merged the first time, so ``_logged_before`` can't find
        its content: the newest version the same run logged, of the type, numbered after its base
        (after the last version with that manifest; any, if none has it: a client's own merge),
        that holds the increment (every file new or changed against the base, as sent, and none of
        the paths it dropped). Without this, the increment was merged again onto the latest: no
        new version while the latest still held it, but one that brought back a file another job
        removed meanwhile. For a commit that has a commit id, only versions stored without one are
        candidates (one with an id is found by it: ``commit``): this rule can't tell a retry from
        the same run re-adding, byte-identical, a file another job removed since; an id can."""
        from tracklet.artifacts import incremental

        versions = self.registry.versions(info.project, info.name)
        after = max((version.version for version in versions if base and version.manifest == base), default=-1)
        candidates = [version for version in versions
                      if version.version > after and version.logged_by == info.logged_by and version.type == info.type
                      and (info.commit_id is None or version.commit_id is None)]
        if not candidates:
            return None
        what = f"the base manifest of {info.project}/{info.name}"
        changed, gone = incremental.increment(self._read_manifest(info.project, base, what) if base else Manifest({}),
                                              manifest)
        if not changed and not gone:
            return None
        for version in sorted(candidates, key=lambda version: version.version, reverse=True):
            held = self._read_manifest(info.project, version.manifest, f"the manifest of {version.qualified_name}")
            if (all(path in held and (held[path].digest, held[path].size, held[path].ref)
                    == (entry.digest, entry.size, entry.ref) for path, entry in changed.items())
                    and not any(path in held for path in gone)):
                return version
        return None

    def _logged_before(self, info: VersionInfo) -> VersionInfo | None:
        """A version of the collection with ``info``'s content that the same run logged: what
        makes sending a run's versions again (``tracklet sync``, a retried commit) idempotent. A
        commit with a commit id matches only versions without one (``_applied_before``)."""
        for version in self.registry.versions(info.project, info.name):
            if (version.digest == info.digest and version.logged_by == info.logged_by and version.type == info.type
                    and (info.commit_id is None or version.commit_id is None)):
                return version
        return None


class ProjectChunks:
    """Where a project's chunks are (a ``packs.ChunkLocator``), looked up in its chunk rows when
    asked: a ranged read of a chunked file locates only the chunks it reaches."""

    def __init__(self, artifacts: ServerArtifacts, project: str) -> None:
        self.artifacts = artifacts
        self.project = project

    def locate(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int]]:
        return self.artifacts._places(self.project, list(chunk_ids))


def encode_batch(blobs: list[tuple[str, bytes]]) -> bytes:
    """Blobs as one request body: per blob its sha256 (64 ASCII hex digits), its length (8 bytes,
    big-endian) and its bytes."""
    return b"".join(digest.encode() + len(data).to_bytes(8, "big") + data for digest, data in blobs)


def decode_batch(body: bytes) -> list[tuple[str, bytes]]:
    """The ``(digest, bytes)`` of a batch body; ``BadRequest`` naming the offset of a bad frame."""
    blobs: list[tuple[str, bytes]] = []
    offset = 0
    view = memoryview(body)
    while offset < len(body):
        if len(blobs) == MAX_BATCH_BLOBS:
            raise BadRequest(f"a batch holds at most {MAX_BATCH_BLOBS} blobs")
        header = bytes(view[offset:offset + 72])
        if len(header) < 72:
            raise BadRequest(f"batch body: a frame header at byte {offset} is cut short")
        try:
            digest = check_digest(header[:64].decode("ascii"))
        except UnicodeDecodeError:
            raise BadRequest(f"batch body: no digest at byte {offset}") from None
        size = int.from_bytes(header[64:], "big")
        if offset + 72 + size > len(body):
            raise BadRequest(f"batch body: blob {digest} at byte {offset} says {size} bytes, more than the body holds")
        blobs.append((digest, bytes(view[offset + 72:offset + 72 + size])))
        offset += 72 + size
    return blobs


def _mismatch(expected: str, actual: str, size: int, what: str = "the body") -> DigestMismatch:
    return DigestMismatch(f"{what} ({size:,} bytes) has sha256 {actual}, not {expected}: it was not stored "
                          "(send the bytes again)")
