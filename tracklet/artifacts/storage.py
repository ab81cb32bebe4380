"""``ArtifactStore``: the registry, the blob store and the hasher of one artifact directory, and
the two things done with them: committing a draft as a version, and materializing a version.

Where it lives: ``$TRACKLET_ARTIFACT_DIR`` if set (a directory several data roots may share, so
identical files are stored once), else ``<data root>/artifacts``. Blobs go to ``blobs/`` under it
through fsspec; the stat cache is ``<data root>/cache/artifact-digests.sqlite``.

Committing reads each new or changed file once (a small one is hashed as it is copied into a
temporary blob, published under the digest it hashes to; a large one's BLAKE3 comes from the
chunking pass), and an unchanged one not at all (stat cache); a blob already stored is not written
again, so logging content identical to the latest version writes nothing and returns it.

Large files are chunked: a file of at least the chunk threshold (64 MiB; ``chunk_threshold=`` or
``$TRACKLET_ARTIFACT_CHUNK_THRESHOLD``, e.g. ``1MiB``) is cut into content-defined chunks
(``tracklet.artifacts.chunking``) stored in packs (``tracklet.artifacts.packs``, under ``packs/``,
indexed in ``chunk-index.sqlite``); only chunks the store lacks are written. Its manifest entry
has the whole file's BLAKE3 as ``digest`` (``blake3:<hex>``, ``tracklet.core.digests``; a
file chunked before that rule keeps its sha256, and reads as before) and names its recipe (the
chunk list, a blob of its own) in ``extra["recipe"]``. ``download()`` rebuilds such a file into a
hidden temporary next to its final name, checks its digest, then renames it: a killed download never leaves a partial file
under the final name.

Committing holds a shared lock on ``gc.lock`` and garbage collection (``tracklet.artifacts.gc``)
an exclusive one, so a collection never removes a blob or chunk that a commit in flight has
found already stored and is about to reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from tracklet.core import forksafe
from tracklet.artifacts.blobs import FsspecBlobStore, materialize
from tracklet.artifacts.disk_errors import download_error, store_error
from tracklet.core.digests import algorithm, file_hasher, hash_file, is_blake3, is_sha256
from tracklet.core.filehash import sha256_hex
from tracklet.artifacts.entries import FileReference, InMemoryFile, LocalFile, Pending, uri_path
from tracklet.artifacts.hashing import (RACY_NS, STAT_CACHE_FILE, Hasher, StatCache, StatKey, count_file_hashed,
                                       parallel_map, stat_key)
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.names import partial_path
from tracklet.artifacts.references import check_file_reference, content_digest, is_remote, known_size
from tracklet.artifacts.registry import LocalRegistry, VersionInfo, new_commit_id
from tracklet.errors import ArtifactError, ArtifactVerifyError, ChunkMissing, ChunkStoreError, RecipeError

ARTIFACT_DIR_ENV = "TRACKLET_ARTIFACT_DIR"
CHUNK_THRESHOLD_ENV = "TRACKLET_ARTIFACT_CHUNK_THRESHOLD"
LARGE_FILE_BYTES = 64 << 20  # files this large and larger are chunked (tracklet.artifacts.chunking)
CHUNK_INDEX_FILE = "chunk-index.sqlite"
#: An uploader's reads of chunks (``read_chunks``): bytes read per hold of ``gc.lock``, and the
#: chunk ids located at a time.
READ_SPAN_BYTES = 8 << 20
_SPAN_LOOKUP = 1024
GC_LOCK_FILE = "gc.lock"


class Progress(Protocol):
    """What the CLI's progress bar implements: totals once, then advances."""

    def start(self, files: int, size: int) -> None: ...

    def advance(self, files: int, size: int) -> None: ...


@dataclasses.dataclass
class CommitResult:
    info: VersionInfo
    manifest: Manifest
    reused: bool  # the latest version had the same content: it was returned, not a new one
    bytes_written: int
    files_written: int


def artifact_dir(data_root: Path) -> Path:
    configured = os.environ.get(ARTIFACT_DIR_ENV)
    return Path(configured).expanduser() if configured else data_root / "artifacts"


def chunk_threshold(configured: int | None = None) -> int:
    """Files of at least this many bytes are chunked: ``configured``, else
    ``$TRACKLET_ARTIFACT_CHUNK_THRESHOLD`` (``67108864``, ``64MiB``), else 64 MiB."""
    if configured is not None:
        return configured
    text = os.environ.get(CHUNK_THRESHOLD_ENV)
    if not text:
        return LARGE_FILE_BYTES
    from tracklet.artifacts.sizes import parse_size

    try:
        value = parse_size(text)
    except ValueError as error:
        raise ArtifactError(f"${CHUNK_THRESHOLD_ENV}: {error}") from None
    if value < 1:
        raise ArtifactError(f"${CHUNK_THRESHOLD_ENV} must be at least 1 byte, got {text!r}")
    return value


@contextlib.contextmanager
def store_lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """``flock`` on the artifact directory's ``gc.lock``: shared while committing or downloading,
    exclusive while collecting garbage. Without ``fcntl`` (Windows) the grace period alone protects.
    A store this user can't write (a read-only mount, another user's root) is read holding the
    lock shared through a read-only descriptor (``core/readonly.py``: the owner's collection still
    waits for it), or without it where there is no lock file (nothing was ever collected there)."""
    from tracklet.core.readonly import open_lock

    descriptor: int | None
    if exclusive:  # collecting deletes: it needs a store it can write, so the lock is opened for writing
        directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(directory / GC_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    else:
        with contextlib.suppress(OSError):  # a read-only store's directory is there or nothing is stored
            directory.mkdir(parents=True, exist_ok=True)
        descriptor = open_lock(directory / GC_LOCK_FILE)
    if descriptor is None:
        yield
        return
    try:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def recipe_of(entry: ManifestEntry) -> str | None:
    """The recipe blob a chunked entry names (None for a file stored whole or a reference);
    ``ArtifactError`` if ``extra["recipe"]`` is there but not a sha256."""
    recipe = entry.extra.get("recipe") if entry.ref is None else None
    if recipe is None:
        return None
    from tracklet.artifacts.manifest import is_sha256

    if not is_sha256(recipe):
        raise ArtifactError(f"the manifest entry of {entry.path} names a recipe that is not a sha256: {recipe!r:.80}")
    return str(recipe)


def _changed_since_added(name: str, path: str) -> ArtifactError:
    """A file added with ``policy="immutable"`` whose size, mtime or inode moved since
    ``add_file``/``add_dir`` took it: its content now is not what was added (a checkpoint saved
    under one name every epoch, the next epoch's written before this version was stored), and
    storing it would give this version another version's bytes."""
    return ArtifactError(
        f"{path} changed after it was added to artifact {name!r} and before it was stored "
        "(add_file/add_dir read a file when the artifact is stored): nothing was stored, so this "
        "version doesn't get the later content; add it with policy='mutable' to keep the content "
        "it had when added, or don't change it before artifact.wait()")


class ArtifactStore:
    """The artifacts of one data root."""

    # A forked child holding the store directly (not through an Artifact, which opens its own):
    # the chunk index's lock is free there, whichever of the parent's threads held it at the fork
    # (the index, the stat cache and the blob cache open their own connections: core/forksafe.own).
    _chunk_lock = forksafe.own(lambda store, parents: threading.Lock())

    def __init__(self, data_root: str | os.PathLike, directory: str | os.PathLike | None = None, *,
                 chunk_threshold: int | None = None) -> None:
        self.data_root = Path(data_root).expanduser()
        self.directory = Path(directory) if directory is not None else artifact_dir(self.data_root)
        self.registry = LocalRegistry(self.directory)
        # fsync'd before a version names them; commits hold gc.lock shared, so nothing is claimed
        self.blobs = FsspecBlobStore(self.directory, durable=True, claims=False)
        self.hasher = Hasher(StatCache(self.data_root / "cache" / STAT_CACHE_FILE))
        self.configured_threshold = chunk_threshold
        self._chunk_lock = threading.Lock()  # the chunk index's connection: one thread at a time
        self._chunk_store: tuple[Any, Any] | None = None

    @property
    def chunk_threshold(self) -> int:
        return chunk_threshold(self.configured_threshold)

    def reopened(self) -> ArtifactStore:
        """This store as this process opens it (a forked child holding the parent's: its SQLite
        connections and locks are the parent's, left alone)."""
        if self.directory == artifact_dir(self.data_root) and self.configured_threshold is None:
            return open_store(self.data_root)
        return ArtifactStore(self.data_root, self.directory, chunk_threshold=self.configured_threshold)

    def chunks(self) -> tuple[Any, Any]:
        """The pack store and chunk index (opened on first use; hold ``_chunk_lock`` to use them)."""
        if self._chunk_store is None:
            from tracklet.artifacts.packs import ChunkIndex, PackStore

            self._chunk_store = (PackStore(self.directory), ChunkIndex(self.directory / CHUNK_INDEX_FILE))
        return self._chunk_store

    def read_recipe(self, recipe: str, what: str) -> Any:
        """A recipe blob, parsed and checked (``ArtifactError`` naming ``what`` if it can't be)."""
        from tracklet.artifacts.chunking import FileRecipe

        try:
            return FileRecipe.from_json(self.blobs.read_bytes(recipe))
        except RecipeError as error:
            raise ArtifactError(f"the recipe of {what} is damaged: {error}") from None

    # ------------------------------------------------------------ committing

    def commit(self, name: str, type: str, pending: dict[str, Pending], *, project: str, aliases: list[str],
               description: str = "", metadata: dict[str, Any] | None = None, logged_by: str | None = None,
               progress: Progress | None = None, read_back: bool = False,
               chunk_target: Any = None, history_step: int | None = None,
               tags: list[str] | None = None, incremental_base: str | None = None,
               commit_id: str | None = None, base_unread: str | None = None) -> CommitResult:
        """Hash and store a draft's files and add it as a version of ``project/name`` (or return
        the latest version if it has the same content). ``read_back``: the version is read again
        at once (an online run uploads it), so its packs are written through the page cache rather
        than with direct I/O (``PackWriter``'s ``direct``). ``chunk_target`` (an online run's
        ``remote.ServerChunks``) takes the large files' chunks instead of local packs: streamed to the
        server as they are cut, the files registered there before the version is committed here;
        if that fails, they are stored locally after all (``_store_large``). ``history_step``: the
        logging run's last history step at ``log_artifact`` (``VersionInfo.history_step``); ``tags``:
        the version's (checked when the draft was given them); ``incremental_base``: an incremental
        version's base manifest blob (``VersionInfo.incremental_base``); ``commit_id``: the log's
        (``VersionInfo.commit_id``; drawn here if not given), kept with a new version and given to a
        reused one (the id its upload sends is the one ``tracklet sync`` sends again); and
        ``base_unread`` (``VersionInfo.base_unread``: the server whose latest it couldn't be built on)."""
        try:
            unhashed, large = self._unhashed(name, pending)
            to_hash = [item.path for item in pending.values() if isinstance(item, LocalFile) and item.path not in
                       unhashed or isinstance(item, FileReference) and item.checksum]
            digests = self.hasher.digest_files(to_hash, blake3=large)
        except OSError as error:
            raise store_error(name, error, error.filename, self.directory) from None
        entries: dict[str, ManifestEntry] = {}
        for path, item in pending.items():
            if isinstance(item, ManifestEntry):
                entries[path] = dataclasses.replace(item, path=path)
            elif isinstance(item, LocalFile) and item.path in unhashed:
                # Its digest comes from the pass that stores it (chunking, or a copy that hashes as
                # it goes): a new file is read once, not twice.
                entries[path] = ManifestEntry(path, "", unhashed[item.path][1])
            elif isinstance(item, LocalFile):
                digest, size = digests[item.path]
                entries[path] = ManifestEntry(path, digest, size)
            elif isinstance(item, InMemoryFile):
                entries[path] = ManifestEntry(path, item.hashed().digest, len(item.data))
            else:
                entries[path] = self._reference_entry(name, path, item, digests)
        manifest = Manifest(entries)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        with store_lock(self.directory, exclusive=False):
            written, overhead = self._store_files(name, manifest, pending, progress, read_back, chunk_target)
            try:
                manifest_blob, manifest_written = self.blobs.put_bytes(manifest.to_bytes())
                info = VersionInfo(project=project, name=name, version=-1, type=type, digest=manifest.digest(),
                                   manifest=manifest_blob, size=manifest.size, file_count=len(manifest),
                                   description=description or "", metadata=dict(metadata or {}),
                                   logged_by=logged_by, history_step=history_step, tags=list(tags or []),
                                   incremental_base=incremental_base, commit_id=commit_id or new_commit_id(),
                                   base_unread=base_unread)
                self.blobs.sync()  # every blob the version names is on the disk before the version file
                stored, reused = self.registry.commit(info, aliases, adopt_commit_id=True)
            except OSError as error:  # the manifest, or the version file
                raise store_error(name, error, None, self.directory) from None
        return CommitResult(stored, manifest, reused, sum(written) + overhead + manifest_written,
                            sum(1 for n in written if n))

    def _unhashed(self, name: str, pending: dict[str, Pending]) -> tuple[dict[str, StatKey], set[str]]:
        """The draft's local files whose digest the stat cache doesn't know: their stat before
        they are read (``OSError`` for one that can't be; ``ArtifactError`` for one changed since it
        was added: ``_changed_since_added``). They are hashed by the pass that stores them, so each
        is read once. And the local files that will be chunked (their digest is a BLAKE3: a cached
        sha256 of one, from before that rule or another threshold, is a miss)."""
        stats = {}
        for item in pending.values():
            if isinstance(item, LocalFile):
                key = stats[item.path] = stat_key(item.path, os.stat(item.path))
                if item.added is not None and key != item.added:
                    raise _changed_since_added(name, item.path)
        threshold = self.chunk_threshold
        large = {path for path, key in stats.items() if key[1] >= threshold}
        known = self.hasher.cache.get_many(list(stats.values())) if stats else {}
        return {path: key for path, key in stats.items()
                if key not in known or is_blake3(known[key]) != (path in large)}, large

    def _reference_entry(self, name: str, path: str, item: FileReference,
                         digests: dict[str, tuple[str, int]]) -> ManifestEntry:
        try:
            stat = os.stat(item.path)
        except OSError as error:
            raise store_error(name, error, item.path, self.directory) from None
        extra = {"mtime_ns": stat.st_mtime_ns}
        if item.checksum:
            digest, size = digests[item.path]
        else:  # W&B's choice: without a checksum the reference's identity is its URI and size
            digest, size = sha256_hex(f"{item.uri}\0{stat.st_size}".encode()), stat.st_size
            extra["checksum"] = False
        return ManifestEntry(path, digest, size, ref=item.uri, extra=extra)

    def _store_files(self, name: str, manifest: Manifest, pending: dict[str, Pending],
                     progress: Progress | None, read_back: bool = False,
                     chunk_target: Any = None) -> tuple[list[int], int]:
        """Store every local file: small ones as blobs (in parallel), large ones as chunks (one
        after another, into shared packs), recording each large file's recipe in its manifest
        entry. Bytes written per small file, then per large file; and the packs' index bytes."""
        threshold = self.chunk_threshold
        local = [(entry, pending[entry.path]) for entry in manifest if isinstance(pending[entry.path], LocalFile)]
        jobs = [job for job in local if job[0].size < threshold]
        large = [job for job in local if job[0].size >= threshold]
        lock = threading.Lock()

        def one(job: tuple[ManifestEntry, Any]) -> tuple[int, str, StatKey | None]:
            entry, item = job
            if entry.digest:
                written, digest, learned = self._store_entry(name, entry, item.path), entry.digest, None
            else:
                written, digest, learned = self._store_unhashed(name, entry, item.path)
            if progress is not None:
                with lock:
                    progress.advance(1, entry.size)
            return written, digest, learned

        if progress is not None:
            skipped = [entry for entry in manifest if not isinstance(pending[entry.path], (LocalFile, InMemoryFile))]
            progress.advance(len(skipped), sum(entry.size for entry in skipped))
        outcomes = parallel_map(one, jobs, self.hasher.workers, "tracklet-store")
        written = [count for count, _, _ in outcomes]
        learned: dict[StatKey, str] = {}
        for index, ((entry, item), (_, digest, source_key)) in enumerate(zip(jobs, outcomes)):
            if not entry.digest:  # hashed as it was stored
                entry = manifest.entries[entry.path] = dataclasses.replace(entry, digest=digest)
                jobs[index] = (entry, item)
            if source_key is not None:
                learned[source_key] = digest
        # New blobs were hashed as they were written: remember them, so a download needn't read them.
        for (entry, _), count in zip(jobs, written):
            blob = self.blobs.local_path(entry.digest)
            if (count or entry.size == 0) and blob is not None:  # any empty file has an empty file's digest
                try:
                    learned[stat_key(str(blob), os.stat(blob))] = entry.digest
                except OSError:
                    pass
        self.hasher.cache.put_many(learned)
        for entry in manifest:  # given as bytes: one blob each (no stat to remember)
            item = pending[entry.path]
            if isinstance(item, InMemoryFile):
                try:
                    written.append(self.blobs.put_bytes(item.hashed())[1])
                except OSError as error:
                    raise store_error(name, error, entry.path, self.directory) from None
                if progress is not None:
                    progress.advance(1, entry.size)
        overhead = 0
        if large:
            chunked, overhead = self._store_large(name, manifest, large, progress, read_back, chunk_target)
            written += chunked
        return written, overhead

    def _store_entry(self, name: str, entry: ManifestEntry, local_path: str) -> int:
        try:
            written = self.blobs.put_file(local_path, entry.digest)
        except OSError as error:
            raise store_error(name, error, local_path, self.directory) from None
        return written

    def _store_unhashed(self, name: str, entry: ManifestEntry, local_path: str) -> tuple[int, str, StatKey | None]:
        """Store a file the stat cache doesn't know, hashing it as it is copied (one read): (bytes
        written, its sha256, its stat to remember, or None when it was modified too recently to
        trust). ``ArtifactError`` if it changed while it was read (its stat moved)."""
        try:
            before = stat_key(local_path, os.stat(local_path))
            started = time.time_ns()
            digest, size, written = self.blobs.store_file(local_path)
            count_file_hashed()
            after = stat_key(local_path, os.stat(local_path))
        except OSError as error:
            raise store_error(name, error, local_path, self.directory) from None
        if after != before or size != entry.size:
            raise ArtifactError(f"{local_path} changed while it was being stored; log the artifact again once it is "
                                "written")
        return written, digest, after if started - after[2] > RACY_NS else None

    def _store_large(self, name: str, manifest: Manifest, jobs: list[tuple[ManifestEntry, Any]],
                     progress: Progress | None, read_back: bool = False,
                     chunk_target: Any = None) -> tuple[list[int], int]:
        """Store large files as chunks in packs, skipping chunks already stored, and point each
        one's manifest entry at its recipe. A file whose content is already stored (as a recipe
        whose chunks are all there, or whole as a blob) is not read at all.

        With ``chunk_target`` (``remote.ServerChunks``) the chunks go to the server instead, and
        the files are registered there before this returns (so before the version file names
        them); if streaming or registering fails, the chunks the local packs lack are read from
        the files again, each checked against its id, and stored locally."""
        from tracklet.artifacts.packs import PackWriter

        written: list[int] = []
        with self._chunk_lock:
            packs, index = self.chunks()
            recipes: dict[str, str] = {}  # file sha256 -> recipe blob, recorded once the packs are sealed
            # (entry, source, recipe blob, recipe, its JSON: the recipe blob's bytes)
            streamed: list[tuple[ManifestEntry, str, str, Any, bytes]] = []
            overhead = 0
            current: str | None = None  # the file being chunked, named if storing fails
            try:
                writer_context = chunk_target if chunk_target is not None else PackWriter(
                    packs, index, direct=not read_back)
                with writer_context as writer:
                    for entry, item in jobs:
                        current = item.path
                        on_bytes = None if progress is None else partial(progress.advance, 0)
                        recipe, digest, count, reported, cut = self._store_chunked(
                            name, entry, item.path, writer, index, on_bytes, chunk_target)
                        if recipe is not None:
                            entry = manifest.entries[entry.path] = dataclasses.replace(
                                entry, digest=digest, extra={**entry.extra, "recipe": recipe})
                            recipes[digest] = recipe
                        if cut is not None and recipe is not None and chunk_target is not None:
                            streamed.append((entry, item.path, recipe, *cut))
                        written.append(count)
                        if progress is not None:
                            progress.advance(1, entry.size - reported)
                overhead = sum(pack.size - pack.data_bytes for pack in writer.packs)
                current = None
                if streamed:
                    try:
                        chunk_target.register([(entry.digest, entry.size, recipe_blob, recipe_json)
                                               for entry, _, recipe_blob, _, recipe_json in streamed])
                    except Exception:  # noqa: BLE001 - the server didn't take them: keep them here
                        overhead += self._store_streamed_locally(name, streamed, packs, index, read_back)
            except ChunkStoreError as error:
                raise ArtifactError(f"artifact {name!r}: can't store chunks: {error}") from None
            except OSError as error:
                raise store_error(name, error, current, self.directory) from None
            if recipes:
                self.blobs.sync()  # the recipe blobs, before the index rows that name them
            for file_digest, recipe in recipes.items():
                index.add_recipe(file_digest, recipe)
        return written, overhead

    def _store_streamed_locally(self, name: str, streamed: list[tuple[ManifestEntry, str, str, Any, bytes]], packs: Any,
                                index: Any, read_back: bool) -> int:
        """Store in local packs the chunks of files whose streaming to a server failed, read from
        their sources again (each chunk checked against its id: a file changed since it was cut is
        an ``ArtifactError`` naming it); the bytes written (chunks and the packs' indexes)."""
        from tracklet.artifacts.packs import PackWriter
        from tracklet.errors import ChunkCorrupt

        added = 0
        with PackWriter(packs, index, direct=not read_back) as writer:
            for _, source, _, recipe, _ in streamed:
                ids = recipe.chunk_ids
                missing = set(ids) - index.present(ids)
                try:
                    added += writer.write_missing(source, recipe, missing)
                except ChunkCorrupt:
                    raise ArtifactError(f"{source} changed while it was being stored; log the artifact again once "
                                        "it is written") from None
        return added + sum(pack.size - pack.data_bytes for pack in writer.packs)

    def _store_chunked(self, name: str, entry: ManifestEntry, local_path: str, writer: Any, index: Any,
                       on_bytes: Callable[[int], None] | None,
                       chunk_target: Any = None) -> tuple[str | None, str, int, int, tuple[Any, bytes] | None]:
        """(recipe blob or None if stored whole, the file's digest, bytes written, bytes reported to
        ``on_bytes``, (the recipe, its JSON bytes) if the file was cut by this call, else None) for
        one large file. An entry without a digest yet gets it from this pass (its BLAKE3)."""
        if entry.digest:
            known = index.recipe_for(entry.digest)
            if known is not None and self._recipe_is_whole(known, entry, index):
                return known, entry.digest, 0, 0, None
            if is_sha256(entry.digest) and self.blobs.has(entry.digest):  # stored whole before: that will do
                return None, entry.digest, 0, 0, None
            if (known is not None and chunk_target is not None and self._recipe_matches(known, entry)
                    and chunk_target.holds(entry.digest)):  # streamed before: the server holds the file
                return known, entry.digest, 0, 0, None
            before_stat = None
        else:
            before_stat = stat_key(local_path, os.stat(local_path))
        started = time.time_ns()
        before = writer.new_bytes
        reported = 0

        def count(size: int) -> None:
            nonlocal reported
            reported += size
            if on_bytes is not None:
                on_bytes(size)

        recipe = writer.write_file(local_path, on_bytes=count)
        if before_stat is not None:  # hashed by this pass: it must not have changed during it
            after = stat_key(local_path, os.stat(local_path))
            if after != before_stat or recipe.size != entry.size:
                raise ArtifactError(f"{local_path} changed while it was being stored; log the artifact again once "
                                    "it is written")
            if started - after[2] > RACY_NS:
                self.hasher.cache.put_many({after: recipe.digest})
            entry = dataclasses.replace(entry, digest=recipe.digest)
        if recipe.digest != entry.digest or recipe.size != entry.size:
            raise ArtifactError(f"{local_path} changed while it was being stored (its digest is now "
                                f"{recipe.digest}, not {entry.digest}); log the artifact again once it is written")
        recipe_json = recipe.to_json().encode()
        recipe_blob, recipe_written = self.blobs.put_bytes(recipe_json)
        return recipe_blob, recipe.digest, writer.new_bytes - before + recipe_written, reported, (recipe, recipe_json)

    def _recipe_is_whole(self, recipe_blob: str, entry: ManifestEntry, index: Any) -> bool:
        """Whether a recorded recipe still rebuilds ``entry``: its blob is intact, it describes a
        file of that digest and size, and every chunk is in a pack."""
        recipe = self._recipe_matches(recipe_blob, entry)
        if recipe is None:
            return False
        ids = recipe.chunk_ids
        return len(index.present(ids)) == len(set(ids))

    def _recipe_matches(self, recipe_blob: str, entry: ManifestEntry) -> Any:
        """The recorded recipe if its blob is intact and describes ``entry``'s digest and size."""
        if not self.blobs.has(recipe_blob):
            return None
        try:
            recipe = self.read_recipe(recipe_blob, entry.path)
        except ArtifactError:
            return None
        return recipe if recipe.digest == entry.digest and recipe.size == entry.size else None

    # ------------------------------------------------------------ reading

    def manifest(self, info: VersionInfo) -> Manifest:
        return Manifest.from_bytes(self.blobs.read_bytes(info.manifest), what=f"the manifest of {info.qualified_name}")

    def download(self, info: VersionInfo, manifest: Manifest, root: Path, *, link: bool = True,
                 progress: Progress | None = None, allow_missing_references: bool = False) -> Path:
        """Materialize a version's files under ``root``: each checked against its digest first
        (blobs through the stat cache: an unchanged blob is not read again), then made by
        reflink, hard link or copy; files already there with the right content are left alone.
        ``ArtifactVerifyError`` names every file whose stored bytes are missing or damaged, and
        every reference that can't be reached or changed (``tracklet.artifacts.references``);
        ``allow_missing_references`` skips references whose object is gone (W&B's option)."""
        with store_lock(self.directory, exclusive=False):
            return self._download(info, manifest, root, link, progress, allow_missing_references)

    def _download(self, info: VersionInfo, manifest: Manifest, root: Path, link: bool,
                  progress: Progress | None, allow_missing_references: bool = False) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        sources = self._sources(info, manifest)
        targets = {entry.path: root.joinpath(*entry.path.split("/")) for entry in manifest}
        self._fetch_references(info, [entry for entry in manifest if is_remote(entry)], targets, progress,
                               allow_missing_references)
        present = [str(targets[entry.path]) for entry in manifest
                   if content_digest(entry) and targets[entry.path].is_file()]
        try:
            have = self.hasher.digest_files(present, blake3={str(targets[entry.path]) for entry in manifest
                                                             if is_blake3(entry.digest)})
        except OSError:
            have = {}
        made: list[str] = []
        for entry in manifest:
            target = targets[entry.path]
            if is_remote(entry):
                continue
            if content_digest(entry) and have.get(str(target), ("",))[0] == entry.digest:
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            on_bytes = None if progress is None or isinstance(sources[entry.path], Path) else \
                partial(progress.advance, 0)
            self._materialize_entry(info, entry, sources[entry.path], target, link, on_bytes)
            if content_digest(entry):  # only a digest of the bytes may go into the stat cache
                made.append(str(target))
            if progress is not None:
                progress.advance(1, 0 if on_bytes is not None else entry.size)
        learned = {}
        for target_path in made:
            try:
                learned[stat_key(target_path, os.stat(target_path))] = manifest[
                    Path(target_path).relative_to(root).as_posix()].digest
            except OSError:
                pass
        self.hasher.cache.put_many(learned)
        return root

    def _fetch_references(self, info: VersionInfo, entries: list[ManifestEntry], targets: dict[str, Path],
                          progress: Progress | None, allow_missing: bool = False) -> None:
        """Fetch remote references (in parallel), each checked against what was recorded;
        ``ArtifactVerifyError`` naming each one that can't be reached or changed."""
        from tracklet.artifacts.references import ReferenceMissing, fetch

        def one(entry: ManifestEntry) -> str | None:
            target = targets[entry.path]
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fetch(entry, target)
            except ReferenceMissing as error:
                return None if allow_missing else str(error)
            except (ArtifactError, OSError) as error:
                return str(error)
            return None

        outcomes = parallel_map(one, entries, self.hasher.workers, "tracklet-fetch")
        if progress is not None:
            progress.advance(len(entries), sum(entry.size for entry in entries))
        problems = {entry.path: why for entry, why in zip(entries, outcomes) if why is not None}
        if problems:
            raise ArtifactVerifyError(
                f"artifact {info.qualified_name}: {len(problems)} reference(s) can't be downloaded: "
                + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)

    def _sources(self, info: VersionInfo, manifest: Manifest) -> dict[str, Any]:
        """Each local entry's source (its blob, or the referenced file), checked against its
        digest (an unchecksummed file reference: against its recorded size and mtime); a chunked
        entry's source is its recipe, whose chunks are checked to be stored (the bytes are checked
        as the file is rebuilt). Remote references are fetched apart (``_fetch_references``)."""
        sources: dict[str, Any] = {}
        problems: dict[str, str] = {}
        chunked = {}
        for entry in manifest:
            if is_remote(entry):
                continue
            try:
                recipe_blob = recipe_of(entry)
            except ArtifactError as error:
                problems[entry.path] = str(error)
                continue
            if recipe_blob is not None:
                chunked[entry.path] = recipe_blob
            elif is_blake3(entry.digest):
                problems[entry.path] = "its digest is a BLAKE3 (a chunked file's) but its entry names no recipe"
            elif entry.ref is not None:
                sources[entry.path] = Path(uri_path(entry.ref))
                if not content_digest(entry):
                    problem = check_file_reference(entry, sources[entry.path])
                    if problem is not None:
                        problems[entry.path] = problem
            else:
                local = self.blobs.local_path(entry.digest)
                if local is None:
                    raise ArtifactError("downloading from a non-local blob store is not supported yet")
                sources[entry.path] = local
        problems.update(self._check_recipes(manifest, chunked, sources))
        checked = {path: source for path, source in sources.items()
                   if path not in chunked and content_digest(manifest[path])}
        digests: dict[str, tuple[str, int]] = {}
        try:
            digests = self.hasher.digest_files([str(source) for source in checked.values()])
        except OSError:  # one at a time, to name every file at fault
            for path, source in checked.items():
                try:
                    digests.update(self.hasher.digest_files([str(source)]))
                except OSError as error:
                    problems[path] = f"missing ({source}: {error.strerror or error})"
        for path, source in checked.items():
            if path not in problems and digests[str(source)][0] != manifest[path].digest:
                problems[path] = f"digest mismatch ({source} has sha256 {digests[str(source)][0]}, the manifest " \
                                 f"says {manifest[path].digest})"
        if problems:
            raise ArtifactVerifyError(
                f"artifact {info.qualified_name}: {len(problems)} file(s) can't be downloaded: "
                + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)
        return sources

    def entry_bytes(self, entry: ManifestEntry) -> Iterator[bytes | memoryview]:
        """The stored bytes of one file of a version, in pieces, whether stored whole or as chunks
        (for an uploader: a chunked file has no blob of its own). Chunks are checked against their
        ids as they are read, and the whole against the entry's digest at the end (``ArtifactError``)."""
        recipe_blob = recipe_of(entry)
        if entry.ref is not None:
            raise ArtifactError(f"{entry.path} is a reference ({entry.ref}); its bytes are not stored")
        if recipe_blob is None and is_blake3(entry.digest):
            raise ArtifactError(f"{entry.path}: its digest is a BLAKE3 (a chunked file's) but its entry names no recipe")
        hasher = file_hasher(entry.digest)
        if recipe_blob is None:
            with self.blobs.open(entry.digest) as handle:
                while piece := handle.read(1 << 20):
                    hasher.update(piece)
                    yield piece
        else:
            recipe = self.read_recipe(recipe_blob, entry.path)
            try:
                for _, piece in self.read_chunks(recipe.chunk_ids, name=entry.path):
                    hasher.update(piece)
                    yield piece
            except ChunkStoreError as error:
                raise ArtifactError(f"{entry.path} can't be read: {error}") from None
        if hasher.hexdigest() != entry.digest:
            raise ArtifactError(f"{entry.path}: the stored bytes hash to {hasher.hexdigest()}, not {entry.digest}")

    def _reader(self, recipe: Any) -> Any:
        """A ``PackReader`` for one recipe's chunks, located up front: reading doesn't hold the
        chunk index (other threads keep committing and downloading meanwhile)."""
        return self.chunk_reader(recipe.chunk_ids)

    def chunk_reader(self, chunk_ids: list[bytes]) -> Any:
        """A ``PackReader`` for these chunks, located up front (``iter_chunks(chunk_ids)`` then
        gives their bytes, each checked against its id). The caller holds ``gc.lock`` shared while
        it reads (a collection's repack may remove a pack otherwise); an uploader uses
        ``read_chunks``, which does so a span at a time."""
        from tracklet.artifacts.packs import Located, PackReader

        with self._chunk_lock:
            packs, index = self.chunks()
            places = index.locate(chunk_ids)
        return PackReader(packs, Located(places))

    def read_chunks(self, chunk_ids: list[bytes], *, name: str = "", span_bytes: int = READ_SPAN_BYTES
                    ) -> Iterator[tuple[bytes, memoryview]]:
        """Each of ``chunk_ids`` and its bytes (checked against its id), in order: what an uploader
        sends. They are read ``span_bytes`` at a time holding ``gc.lock`` shared, and given once it
        is released: a collection's repack can't remove a pack under a read, and is not held off
        while the consumer sends (a network upload of a large file). Chunks are located
        ``_SPAN_LOOKUP`` at a time; a collection that ran between two spans may have moved some
        (a pack is named by its content, so a place whose pack is still there reads right): a
        span whose pack is gone is located afresh and read again. ``name`` goes into error
        messages (``ChunkStoreError``: a chunk in no pack, or damaged)."""
        from tracklet.artifacts.packs import Located, PackReader

        def locate(ids: list[bytes]) -> tuple[Any, dict[bytes, tuple[str, int, int]]]:
            with self._chunk_lock:
                packs, index = self.chunks()
                return packs, index.locate(ids)

        packs: Any = None
        places: dict[bytes, tuple[str, int, int]] = {}
        start = 0
        while start < len(chunk_ids):
            ahead = chunk_ids[start : start + _SPAN_LOOKUP]
            with store_lock(self.directory, exclusive=False):
                if ahead[0] not in places:
                    packs, places = locate(ahead)
                span: list[bytes] = []
                size = 0
                for cid in ahead:
                    if span and cid not in places:
                        break  # beyond what was located: the next span locates it
                    span.append(cid)
                    size += places[cid][2] if cid in places else 0
                    if size >= span_bytes:
                        break
                try:
                    pieces = list(PackReader(packs, Located(places)).iter_chunks(span, name=name))
                except ChunkMissing:  # moved by a collection since they were located
                    packs, places = locate(ahead)
                    pieces = list(PackReader(packs, Located(places)).iter_chunks(span, name=name))
            yield from zip(span, pieces)
            start += len(span)

    def _check_recipes(self, manifest: Manifest, chunked: dict[str, str], sources: dict[str, Any]) -> dict[str, str]:
        """Read each chunked entry's recipe into ``sources``; the problems of those whose recipe is
        missing, damaged, for other content, or has chunks in no pack."""
        problems: dict[str, str] = {}
        if not chunked:
            return problems
        with self._chunk_lock:
            _, index = self.chunks()
            for path, recipe_blob in chunked.items():
                entry = manifest[path]
                try:
                    recipe = self.read_recipe(recipe_blob, path)
                except ArtifactError as error:
                    problems[path] = str(error)
                    continue
                if recipe.digest != entry.digest or recipe.size != entry.size:
                    problems[path] = f"its recipe {recipe_blob} describes other content (digest {recipe.digest})"
                    continue
                ids = recipe.chunk_ids
                missing = set(ids) - index.present(ids)
                if missing:
                    problems[path] = f"{len(missing)} of its chunks are in no pack (e.g. {min(missing).hex()})"
                    continue
                sources[path] = recipe
        return problems

    def _materialize_entry(self, info: VersionInfo, entry: ManifestEntry, source: Any, target: Path,
                           link: bool, on_bytes: Callable[[int], None] | None = None) -> None:
        if target.is_dir() and not target.is_symlink():
            raise ArtifactError(f"can't download {entry.path}: {target} is a directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not isinstance(source, Path):
                self._reassemble(info, entry, source, target, on_bytes)
                return
            # Made under a hidden temporary name, then renamed over the target: a copy cut short
            # (a full disk, kill -9) never leaves a partial file under the file's own name.
            temporary = partial_path(target)
            try:
                materialize(source, temporary, link=link and entry.ref is None)
                os.replace(temporary, target)
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink()
        except OSError as error:
            raise download_error(info.qualified_name, entry.path, target, error) from None

    def _reassemble(self, info: VersionInfo, entry: ManifestEntry, recipe: Any, target: Path,
                    on_bytes: Callable[[int], None] | None) -> None:
        """Rebuild a chunked file: into ``.<name>.<random>.partial`` beside ``target``, checked
        against its digest, then renamed over ``target`` (what a killed earlier try left beside
        it is removed first)."""
        from tracklet.artifacts.packs import reassemble

        for stale in target.parent.glob(f".{glob_escape(target.name)}.*.partial"):
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            reassemble(recipe, self._reader(recipe), target, on_bytes=on_bytes)
        except ChunkStoreError as error:
            raise ArtifactVerifyError(f"artifact {info.qualified_name}: {entry.path} can't be rebuilt: {error}",
                                      {entry.path: str(error)}) from None


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def verify_tree(info: VersionInfo, manifest: Manifest, root: Path) -> None:
    """Re-hash every file of ``manifest`` under ``root`` (no cache); ``ArtifactVerifyError``
    naming each file that is missing, differs, or is not in the manifest."""
    problems: dict[str, str] = {}
    for entry in manifest:
        path = root.joinpath(*entry.path.split("/"))
        if not content_digest(entry):  # a reference recorded by its identity: its size, if known
            try:
                size = path.stat().st_size
            except OSError as error:
                problems[entry.path] = f"missing ({error.strerror or error})"
                continue
            expected = known_size(entry)
            if expected is not None and size != expected:
                problems[entry.path] = f"size mismatch ({size:,} bytes; the manifest says {expected:,} bytes)"
            continue
        try:
            digest, size = hash_file(path, algorithm(entry.digest))
            count_file_hashed()
        except OSError as error:
            problems[entry.path] = f"missing ({error.strerror or error})"
            continue
        if digest != entry.digest:
            problems[entry.path] = f"digest mismatch ({digest}, {size:,} bytes; the manifest says " \
                                   f"{entry.digest}, {entry.size:,} bytes)"
    if root.is_dir():
        for base, _, names in os.walk(root):
            for file_name in names:
                relative = Path(base, file_name).relative_to(root).as_posix()
                if relative not in manifest:
                    problems[relative] = "not in the manifest"
    if problems:
        raise ArtifactVerifyError(
            f"{root} does not match artifact {info.qualified_name}: {len(problems)} problem(s): "
            + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)


def default_download_root(info: VersionInfo) -> Path:
    separator = "-" if sys.platform == "win32" else ":"
    return Path("artifacts") / f"{info.name}{separator}v{info.version}"


def cache_download_root(data_root: str | os.PathLike, info: VersionInfo) -> Path:
    """Where tracklet itself materializes a version it reads (``wandb`` compat's ``artifact.get``,
    an evaluation's dataset): once per version under the data root's cache, never the working
    directory that ``download()`` defaults to."""
    return Path(data_root) / "cache" / "artifact-files" / info.project / info.name / f"v{info.version}"


# The last few roots' stores stay open (a process uses one root, mostly); an older one stays while
# something holds it and is closed once nothing does (forksafe.Recent: a process going through
# hundreds of roots held ~6 descriptors for each for ever).
_stores = forksafe.recent()
_stores_lock = forksafe.lock()


def open_store(data_root: str | os.PathLike) -> ArtifactStore:
    """The process's ``ArtifactStore`` for a data root (one per root and artifact directory)."""
    root = Path(data_root).expanduser()
    key = (str(root), str(artifact_dir(root)))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = ArtifactStore(root)
        return store


Callback = Callable[[int], None]
