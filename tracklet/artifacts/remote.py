"""Artifacts on a tracking server: uploading a locally committed version, and reading versions
from the server into the local store (docs/artifacts.md, "Server mode").

- ``upload_version``: asks which of the version's blobs the project lacks (1,000 digests per
  request), uploads those in parallel from the local CAS (large ones resumably); of a file stored
  as chunks only the chunks the project lacks, in packs, then its recipe, and registers it
  (``upload_chunked``); then the manifest, then commits the version on the server (which
  assigns its own ``vN``).
- ``RemoteArtifacts``: ``artifact("project/name:alias")``, ``versions``, ``collections`` from the
  server; a version's ``download()`` (``ServerVersionStore``) fetches the blobs the machine's
  size-capped blob cache lacks (``fetch_blob``: verified, a broken transfer resumed with a
  ``Range``; a file the server keeps as chunks, only the chunks no cached file and no local pack
  holds: ``artifacts/delta.py``) and materializes the files from it as in local mode.

The HTTP side is ``tracklet.client.artifacts.ArtifactClient`` (digests, files, JSON).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.names import check_artifact_name, parse_ref, partial_path, version_number
from tracklet.artifacts.fields import VersionEdit
from tracklet.artifacts.registry import VersionInfo
from tracklet.artifacts.cache import BlobCache, CacheFull
from tracklet.artifacts.manifest import MAX_MANIFEST_BYTES
from tracklet.core import forksafe, threads
from tracklet.core.digests import is_blake3
from tracklet.core.pools import Pool
from tracklet.artifacts.storage import ArtifactStore, recipe_of
from tracklet.client.artifacts import ArtifactClient, ChunkRoutesMissing
from tracklet.errors import ArtifactError, ArtifactNotFound, ArtifactTypeMismatch, ArtifactVerifyError, ChunkStoreError

UPLOAD_STATE_DIR = "artifact-uploads"  # under <data root>/cache: resumable upload sessions
UPLOAD_PACK_BYTES = 8 << 20  # chunk bytes per pack sent to a server (a killed upload loses at most the packs in flight)
#: A streamed upload's packs (``ChunkStreamer``: 3 in flight): twice ``UPLOAD_PACK_BYTES``, two per
#: 32 MiB segment. Each pack costs both sides a request's fixed Python (HTTP, the audit intent and
#: event, two transactions, a thread-pool trip): with half as many packs per GiB the server's
#: interpreter ran ~15% fewer instructions per GiB (callgrind; docs/artifacts.md, "The many-core bound").
STREAM_PACK_BYTES = 16 << 20
STREAM_QUERY_PACKS = 2  # packs of chunks per "which chunks do you lack?" query (a segment)


def connect(base_url: str, data_root: str | os.PathLike, *, api_key: str | None = None,
            give_up_after: float = 300.0, attempts: int | None = None) -> ArtifactClient:
    """An ``ArtifactClient`` for the server at ``base_url``, keeping resumable uploads' state in
    ``<data_root>/cache/artifact-uploads``; requests retried for ``give_up_after`` seconds (or
    ``attempts`` attempts)."""
    from tracklet.client.http import HttpClient, RetryPolicy
    from tracklet.errors import RemoteError

    retry = RetryPolicy(base=0.25 if attempts else 0.5, cap=2.0 if attempts else 30.0, give_up_after=give_up_after,
                        attempts=attempts)
    http = HttpClient(base_url, api_key=api_key, retry=retry, error=RemoteError)
    return ArtifactClient(http, Path(data_root).expanduser() / "cache" / UPLOAD_STATE_DIR)


def upload_version(client: ArtifactClient, store: ArtifactStore, info: VersionInfo, aliases: list[str],
                   manifest: Manifest | None = None, *, chunks: bool = True,
                   commit_id: str | None = None) -> dict[str, Any]:
    """Send a locally committed version to the server: the blobs the project lacks, the chunks it
    lacks of files stored as chunks (``upload_chunked``; with ``chunks=False``, or to a server
    without chunk routes, such files go whole), the manifest, then the commit. Returns the
    server's answer (``version``: its ``ArtifactVersion``; ``reused``; ``bytes_sent``). An
    incremental version names its base (``incremental_base``, sent if the server lacks it): a server
    whose latest version is another by now merges the version's increment onto that one, so the
    answer's version may hold more files than the local one. Its commit id (``commit_id``, else
    ``info.commit_id``) goes with the commit, which is then sent again if its answer is lost: the
    server answers the version the first one made."""
    manifest = manifest if manifest is not None else store.manifest(info)
    whole_manifest = server_manifest(manifest)  # names no recipe: for files sent whole
    entries = {entry.digest: entry for entry in manifest if entry.ref is None}
    variants = {manifest.to_bytes(), whole_manifest.to_bytes()}
    digests = {hashlib.sha256(data).hexdigest(): data for data in variants}
    base = info.incremental_base  # an incremental version: its base's manifest, which the server diffs it with
    lacking = client.missing(info.project, [*entries, *digests, *([base] if base else [])])
    if base and base in lacking:
        client.upload_bytes(info.project, store.blobs.read_bytes(base))
    chunked = [entry for digest, entry in entries.items() if digest in lacking and recipe_of(entry) is not None]
    sent = 0
    sent_whole: set[str] = set()
    if chunked and chunks:
        try:
            sent += upload_chunked(client, store, info.project, chunked)
        except ChunkRoutesMissing:
            chunks = False
    if not chunks:
        sent_whole = {entry.digest for entry in chunked}
        blake3 = [entry.path for entry in chunked if is_blake3(entry.digest)]
        if blake3:  # a server keeps blobs by sha256: a BLAKE3-identified file can only go as chunks
            raise ArtifactError(f"artifact {info.qualified_name}: {', '.join(blake3[:3])} can't be sent whole (a "
                                "chunked file, identified by its BLAKE3): this server has no chunk routes; upgrade it")
    files: list[tuple[Any, str, int]] = []
    for digest, entry in entries.items():
        if digest not in lacking or (recipe_of(entry) is not None and digest not in sent_whole):
            continue
        local = store.blobs.local_path(digest) if recipe_of(entry) is None else None
        if local is not None and local.is_file():
            files.append((str(local), digest, entry.size))
        else:  # stored as chunks (or not a local directory): its bytes, rebuilt and checked as they are sent
            files.append((partial(store.entry_bytes, entry), digest, entry.size))
    whole = [item for item in files if not callable(item[0])]
    sent += client.upload_files(info.project, whole)
    for source, digest, size in files:
        if callable(source):
            sent += client.upload_file(info.project, source, digest, size)
    # The server keeps the recipes of chunked files it was sent as chunks; files sent whole name none.
    manifest_bytes = (manifest if chunks else whole_manifest).to_bytes()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    if manifest_digest in lacking:
        client.upload_bytes(info.project, manifest_bytes)
        sent += len(manifest_bytes)
    commit_id = commit_id or info.commit_id
    answer = client.commit(info.project, info.name, {
        "type": info.type, "manifest": manifest_digest, "description": info.description,
        "metadata": info.metadata, "aliases": [alias for alias in aliases if alias != "latest"],
        "logged_by": info.logged_by, "history_step": info.history_step, "tags": list(info.tags),
        **({} if base is None else {"incremental_base": base}),
        **({} if commit_id is None else {"commit_id": commit_id})}, idempotent=commit_id is not None)
    answer["bytes_sent"] = sent
    return answer


def upload_chunked(client: ArtifactClient, store: ArtifactStore, project: str, entries: list[ManifestEntry], *,
                   pack_bytes: int = UPLOAD_PACK_BYTES) -> int:
    """Send files the local store keeps as chunks: ask which chunks the project lacks (1,000 ids
    per request), send those in packs of about ``pack_bytes`` (read from the local packs, each
    chunk checked against its id, a few MiB at a time holding the store's ``gc.lock`` shared:
    ``ArtifactStore.read_chunks``; ``client.workers`` packs at a time), upload the recipes the
    project lacks, then register each file (the server rebuilds it from its chunks and checks its
    digest). Bytes sent. A killed upload resumes for free: the packs the server stored hold their
    chunks, and the next try asks again and sends only the rest."""
    from tracklet.artifacts.packs import pack_trailer, upload_pack_room
    from tracklet.client.artifacts import Pieces

    def build_pack(chunks: list[tuple[bytes, bytes | memoryview]]) -> tuple[str, Pieces]:
        pack_id, trailer = pack_trailer(chunks)  # the chunk bytes are sent from the reads, not joined
        return pack_id, Pieces([*(data for _, data in chunks), trailer])

    recipes = []
    for entry in entries:
        recipe_blob = recipe_of(entry)
        assert recipe_blob is not None
        recipe = store.read_recipe(recipe_blob, entry.path)
        if recipe.digest != entry.digest or recipe.size != entry.size:
            raise ArtifactError(f"{entry.path}: its recipe {recipe_blob} describes other content")
        recipes.append((entry, recipe_blob, recipe))
    ids = list(dict.fromkeys(cid for _, _, recipe in recipes for cid in recipe.chunk_ids))
    lacking = client.missing_chunks(project, [cid.hex() for cid in ids])
    todo = [cid for cid in ids if cid.hex() in lacking]
    sent = 0
    lock = threading.Lock()
    slots = threading.Semaphore(client.workers + 1)  # packs built but not sent yet: bounded memory

    def send(pack_id: str, data: Pieces) -> None:
        nonlocal sent
        try:
            count = client.upload_pack(project, pack_id, data)
        finally:
            slots.release()
        with lock:
            sent += count

    if todo:
        with Pool(client.workers, "tracklet-pack") as pool:
            futures = []
            batch: list[tuple[bytes, bytes | memoryview]] = []
            size = 0
            try:
                # Read a few MiB at a time holding gc.lock shared (``read_chunks``): a local
                # collection's repack waits for a read, not for the whole upload.
                for cid, piece in store.read_chunks(todo, name=entries[0].path):
                    if batch and not upload_pack_room(size, len(batch), len(piece)):
                        threads.acquire(slots)  # the pack is closed before this chunk takes it past the server's limits
                        futures.append(pool.submit(send, *build_pack(batch)))
                        batch, size = [], 0
                    batch.append((cid, piece))  # a view of one read of the local pack, sent as it is
                    size += len(piece)
                    if size >= pack_bytes:
                        threads.acquire(slots)
                        futures.append(pool.submit(send, *build_pack(batch)))
                        batch, size = [], 0
                        if any(future.done() and future.exception() for future in futures):
                            break
                if batch and not any(future.done() and future.exception() for future in futures):
                    threads.acquire(slots)
                    futures.append(pool.submit(send, *build_pack(batch)))
            except ChunkStoreError as error:
                raise ArtifactError(f"the chunks of {', '.join(e.path for e in entries[:3])} can't be read: "
                                    f"{error}") from None
            finally:
                for future in futures:  # in slices on the main thread: a Ctrl-C is seen (core/threads.py)
                    threads.result(future)
    recipe_digests = list(dict.fromkeys(recipe_blob for _, recipe_blob, _ in recipes))
    for recipe_blob in client.missing(project, recipe_digests):
        data = store.blobs.read_bytes(recipe_blob)
        client.upload_bytes(project, data)
        sent += len(data)
    for entry, recipe_blob, _ in recipes:
        client.register_file(project, entry.digest, entry.size, recipe_blob)
    return sent


#: ``0`` in the environment: an online run commits a version's large files locally as chunks and
#: uploads them after the commit (read back from its packs), as before session 13; otherwise (the
#: default) it streams their chunks to its server as they are cut and keeps no local copy of them
#: (``ServerChunks``). The A2 benchmark (``--only a2loop``) compares the two.
STREAM_CHUNKS_ENV = "TRACKLET_ARTIFACT_STREAM_CHUNKS"

#: Chunk ids per segment of a streamed file (one chunk query each: the server's limit per query).
MAX_SEGMENT_CHUNKS = 1000


class ChunkStreamer:
    """Sends chunks to a server in packs as they are given (on the cutting thread), so the upload
    overlaps the hashing and each chunk is copied once, while still in the CPU's cache. Every
    ``query_packs`` packs' worth of chunks (``pack_bytes`` each), a worker asks the server which of
    them the project lacks (one request: each costs the server a transaction, so not one per pack)
    and sends those in packs of about ``pack_bytes``. At most ``batches`` such batches are in flight
    (the cutting thread waits otherwise: memory stays under ``(batches + 1) * query_packs *
    pack_bytes``). A chunk given twice is sent once.

    A batch's chunks are copied into a buffer allocated once and reused for later batches, and a
    pack goes to the socket as views of that buffer (``Pieces``): a buffer grown chunk by chunk,
    or a fresh one per pack, costs the kernel a page fault and zeroing per 4 KiB each time, which
    was most of the client's CPU per GiB (``benchmarks/artifacts.py --only a2loop``). The buffers
    are numpy arrays, made unzeroed and filled by ``numpy.copyto`` a run of chunks at a time
    (``add_batch``): both the copy and the first touch of a new buffer's pages then happen outside
    the interpreter lock, which on many cores is what bounds the process (``benchmarks/
    artifacts_gil.py``: the client held it 1.1 s per GiB, about half of that zeroing and copying).

    The first error (a server down, refusing) stops it; ``error`` holds it and later chunks are
    dropped: the caller decides what to do (``ServerChunks`` stores the file locally instead).
    ``close()`` waits for what is in flight; ``sent`` is the bytes of the packs delivered."""

    def __init__(self, client: ArtifactClient, project: str, *, pack_bytes: int = STREAM_PACK_BYTES,
                 query_packs: int = STREAM_QUERY_PACKS, batches: int = 3) -> None:
        self.client = client
        self.project = project
        self.pack_bytes = pack_bytes
        self.batch_bytes = pack_bytes * query_packs
        self.sent = 0
        self.error: BaseException | None = None
        self.buffers_made = 0  # batch buffers allocated (the rest of the batches reuse them)
        self._pool = Pool(batches, "tracklet-stream")
        self._slots = threading.Semaphore(batches)
        self._lock = threading.Lock()
        self._futures: list[Any] = []
        self._free: list[Any] = []  # buffers (numpy arrays of bytes) whose batch is sent
        self._data: Any = None  # the batch being filled (a numpy array of bytes) ...
        self._used = 0  # ... up to here
        self._entries: list[tuple[bytes, int, int]] = []
        self._seen: set[bytes] = set()
        self._closed = False
        self._stream: str | None = None  # the file being streamed (start_file) ...
        self._segment = 0  # ... the number of its next segment ...
        self._sequence: list[bytes] = []  # ... and that segment's chunk ids so far, in file order

    def start_file(self) -> str:
        """The chunks given from now on, until ``end_file``, are one file's in order: its stream
        id. Each batch's chunk query then names the stream and lists the segment's ids in file order
        (repeats included), so the server hashes the file as they arrive and its registration
        (``register_file(..., stream=)``) needs no read back."""
        self._flush()
        self._stream, self._segment = uuid.uuid4().hex, 0
        return self._stream

    def end_file(self) -> None:
        """The file started with ``start_file`` is over: its last segment goes out."""
        self._flush()
        self._stream = None

    def add_batch(self, chunks: Sequence[tuple[bytes, bytes | bytearray | memoryview]],
                  span: bytes | bytearray | memoryview) -> None:
        """Chunks whose bytes lie back to back in ``span``, in order (a ``FileChunker`` batch and
        its ``span``), on the cutting thread. Their bytes are copied: each run of adjacent chunks
        not given before in one ``numpy.copyto``, which lets go of the interpreter lock while it
        copies (a slice assignment per chunk held it for the whole copy), so the other threads of
        the process (the sends, the chunking pipeline, the training) run meanwhile."""
        if self.error is not None or self._closed or not chunks:
            return
        import numpy as np

        source = np.frombuffer(span, dtype=np.uint8)
        offset = 0  # where the chunk starts in span
        run = -1  # where the run of chunks not copied yet starts in span (-1: none)
        for chunk_id, data in chunks:
            length = len(data)
            if self._stream is not None:
                # A full segment goes out before the next id joins it, with the batch so far: the
                # chunks a batch sends are the ones its segment asks about. (Ending it after the
                # id joined left that chunk's bytes to the next batch, whose query didn't name it:
                # it was never sent and the file's registration failed.)
                if len(self._sequence) >= MAX_SEGMENT_CHUNKS:
                    run = self._copy(source, run, offset)
                    self._flush()
                self._sequence.append(chunk_id)
            if chunk_id in self._seen:
                run = self._copy(source, run, offset)
                offset += length
                continue
            self._seen.add(chunk_id)
            if self._data is not None and self._used + (offset - run if run >= 0 else 0) + length > len(self._data):
                run = self._copy(source, run, offset)
                self._flush()
            if self._data is None:
                self._data = self._buffer(length)
                self._used = 0
            if run < 0:
                run = offset
            self._entries.append((chunk_id, self._used + offset - run, length))
            offset += length
            if self._used + offset - run >= self.batch_bytes:
                run = self._copy(source, run, offset)
                self._flush()
        self._copy(source, run, offset)

    def _copy(self, source: Any, start: int, end: int) -> int:
        """Copy ``source[start:end]`` (a run of chunks, none if ``start`` is -1) to the batch
        buffer after what it holds; -1 (no run pending)."""
        if start >= 0 and end > start:
            import numpy as np

            assert self._data is not None
            np.copyto(self._data[self._used:self._used + end - start], source[start:end])
            self._used += end - start
        return -1

    def _buffer(self, least: int) -> Any:
        """A batch buffer (a numpy array of bytes): a free one, else a new one (room for a batch
        plus its last chunk). A new one is not zeroed: its pages are faulted in by the copies,
        outside the interpreter lock (``bytearray(n)`` zeroed them all while holding it)."""
        import numpy as np

        with self._lock:
            if self._free and len(self._free[-1]) >= least:
                return self._free.pop()
        self.buffers_made += 1
        return np.empty(max(least, self.batch_bytes + (1 << 20)), dtype=np.uint8)

    def _flush(self) -> None:
        if not self._entries and not self._sequence:
            return
        data, used, entries = self._data, self._used, self._entries
        self._data, self._used, self._entries = None, 0, []
        segment = None
        if self._stream is not None and self._sequence:
            segment = (self._stream, self._segment, self._sequence)
            self._segment += 1
        self._sequence = []
        threads.acquire(self._slots)  # in slices on the main thread (core/threads.py)
        try:
            self._futures.append(self._pool.submit(self._send, data, used, entries, segment))
        except RuntimeError:  # the pool is shut down
            self._slots.release()

    def _send(self, data: Any, used: int, entries: list[tuple[bytes, int, int]],
              segment: tuple[str, int, list[bytes]] | None) -> None:
        from tracklet.artifacts.packs import encode_trailer, pack_id_of, upload_pack_room
        from tracklet.client.artifacts import Pieces

        try:
            if self.error is not None:
                return
            if segment is not None:
                stream, number, sequence = segment
                lacking = self.client.missing_chunks(self.project, [cid.hex() for cid in sequence], stream=stream,
                                                     segment=number)
            else:
                lacking = self.client.missing_chunks(self.project, [cid.hex() for cid, _, _ in entries])
            if data is None or not entries:
                return
            view = memoryview(data)[:used]
            pack: list[tuple[bytes, int, int]] = []
            runs: list[memoryview] = []  # the pack's chunk bytes: runs of adjacent chunks in ``data``
            run_start = run_end = -1
            size = 0

            def send_pack() -> None:
                nonlocal pack, runs, size, run_start, run_end
                runs.append(view[run_start:run_end])
                trailer = encode_trailer(pack, size)
                sent = self.client.upload_pack(self.project, pack_id_of(trailer), Pieces([*runs, trailer]))
                with self._lock:
                    self.sent += sent
                pack, runs, size = [], [], 0
                run_start = run_end = -1

            for number, (cid, start, length) in enumerate(entries):
                if cid.hex() in lacking:
                    if pack and not upload_pack_room(size, len(pack), length):
                        if self.error is not None:
                            return
                        send_pack()  # closed before this chunk takes it past the server's limits
                    pack.append((cid, size, length))
                    if start != run_end:
                        if run_end > run_start:
                            runs.append(view[run_start:run_end])
                        run_start = start
                    run_end = start + length
                    size += length
                if pack and (size >= self.pack_bytes or number == len(entries) - 1):
                    if self.error is not None:
                        return
                    send_pack()
        except BaseException as error:  # noqa: BLE001 - the caller decides (ServerChunks: store locally)
            self.error = error
        finally:
            if data is not None:
                with self._lock:
                    self._free.append(data)
            self._slots.release()

    def close(self) -> None:
        """Send what is buffered and wait for every pack in flight (idempotent)."""
        if self._closed:
            return
        if self.error is None:
            self._flush()
        self._closed = True
        for future in self._futures:
            threads.result(future)  # in slices on the main thread (core/threads.py)
        self._pool.shutdown(wait=True)
        self._free.clear()
        self._data = None


class ServerChunks:
    """Where an online run's commit puts the chunks of its large files (``ArtifactStore.commit``'s
    ``chunk_target``): on its server, not in local packs (docs/artifacts.md, "Server mode").

    ``write_file`` cuts a file in one pass (sha256, FastCDC, blake3, as a local ``PackWriter``) and
    streams its chunks to the server as they are cut (``ChunkStreamer``: only those the project
    lacks); nothing of them is written locally. ``register`` then sends the recipes and registers
    each file: the server rebuilds it from its chunks, checks its sha256 and holds it durably. Only
    then may the local version name the file without local chunks. Any failure (``error``, or
    ``register`` raising) and the commit stores the files' chunks locally instead
    (``PackWriter.write_missing`` from the source, each chunk checked against its id) and the
    upload after the commit sends them: a version that exists anywhere names bytes that are
    durable where it says."""

    packs: tuple[()] = ()  # no local packs
    new_bytes = 0  # bytes written to the local store

    def __init__(self, client: ArtifactClient, project: str, *, pack_bytes: int = STREAM_PACK_BYTES,
                 batches: int = 3) -> None:
        self.client = client
        self.project = project
        self.streamer = ChunkStreamer(client, project, pack_bytes=pack_bytes, batches=batches)
        self.streams: dict[str, str] = {}  # file digest -> the stream its chunks went in

    @property
    def error(self) -> BaseException | None:
        return self.streamer.error

    @property
    def sent(self) -> int:
        return self.streamer.sent

    def __enter__(self) -> ServerChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.streamer.close()

    def holds(self, digest: str) -> bool:
        """Whether the project holds file ``digest`` on the server (False if it can't be asked)."""
        try:
            return not self.client.missing(self.project, [digest])
        except Exception:  # noqa: BLE001 - then it is stored as if new
            return False

    def write_file(self, path: str | os.PathLike, *, on_bytes: Any = None) -> Any:
        """Cut ``path`` in one pass, stream its chunks; its ``FileRecipe``."""
        from tracklet.artifacts.chunking import DEFAULT_PARAMS, FileChunker, FileRecipe

        chunker = FileChunker(path, DEFAULT_PARAMS)
        chunks: list[tuple[bytes, int]] = []
        send = self.streamer
        stream = send.start_file()
        for batch in chunker:
            chunks.extend([(cid, len(data)) for cid, data in batch])
            send.add_batch(batch, batch.span)
            if on_bytes is not None:
                on_bytes(len(batch.span))
        send.end_file()
        self.streams[chunker.digest] = stream
        return FileRecipe(size=chunker.size, digest=chunker.digest, chunks=tuple(chunks), params=DEFAULT_PARAMS)

    def register(self, files: list[tuple[str, int, str, bytes]]) -> None:
        """Once every chunk is sent: upload the recipes ``(file digest, size, recipe blob, recipe
        bytes)`` the project lacks and register each file. Raises what failed (the streaming's
        first error included)."""
        self.streamer.close()
        if self.streamer.error is not None:
            raise self.streamer.error
        lacking = self.client.missing(self.project, [recipe for _, _, recipe, _ in files])
        for _, _, recipe, data in files:
            if recipe in lacking:
                self.client.upload_bytes(self.project, data)
                lacking.discard(recipe)
        for digest, size, recipe, _ in files:
            self.client.register_file(self.project, digest, size, recipe, stream=self.streams.get(digest))


def server_manifest(manifest: Manifest) -> Manifest:
    """``manifest`` as a server keeps it: each file whole, so no entry names a local chunk recipe
    (the version's digest, over paths and file digests, is the same)."""
    if not any("recipe" in entry.extra for entry in manifest):
        return manifest
    return Manifest({entry.path: dataclasses.replace(entry, extra={key: value for key, value in entry.extra.items()
                                                                  if key != "recipe"})
                     for entry in manifest})


def logged_by_run(store: ArtifactStore, project: str, run_id: str) -> list[VersionInfo]:
    """The local versions a run logged, oldest first per collection (what ``tracklet sync``
    sends after the run's log)."""
    run_path = f"{project}/{run_id}"
    return [info for name in store.registry.collections(project)
            for info in store.registry.versions(project, name) if info.logged_by == run_path]


def versions_of_run(store: ArtifactStore, root: str | os.PathLike, project: str, run_id: str) -> list[VersionInfo]:
    """The local versions a run logged, logged again (content an earlier version already had: that
    version, first logged by another run) or used, ordered by collection and version: what ``tracklet
    sync`` sends with the run, so the server holds the run's whole lineage (its code snapshot, its
    input data) even when the runs that first logged them are never synced. A version the run read
    from a server, not stored here, is left out: the server has it."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    found = {(info.project, info.name, info.version): info for info in logged_by_run(store, project, run_id)}
    paths = RunPaths(Path(root), project, run_id)
    # a shared run's parts are read with it; where only parts are (a secondary's node), each part
    reads = [RecordedRun(paths)] if paths.log_file.is_file() else [
        RecordedRun(paths.part_paths(label)) for label in paths.parts()]
    for ref in [ref for run in reads for ref in (*run.logged_artifacts, *run.used_artifacts)]:
        key = (ref["project"], ref["name"], ref["version"])
        if key in found:
            continue
        try:
            info = store.registry.version(ref["project"], ref["name"], f"v{ref['version']}")
        except ArtifactNotFound:
            continue
        if info.digest == ref["digest"]:
            found[key] = info
    return [found[key] for key in sorted(found)]


def push_run_versions(client: ArtifactClient, store: ArtifactStore, infos: Iterable[VersionInfo],
                      run_path: str) -> list[dict[str, Any]]:
    """``push`` for ``versions_of_run``: the versions ``run_path`` logged itself always (the server
    commit is idempotent for them), another's only where the server's collection has no version with
    that content yet (a version logged outside any run would otherwise be added again on each sync)."""
    on_server: dict[tuple[str, str], set[tuple[str, str]]] = {}
    todo = []
    for info in infos:
        if info.logged_by != run_path:
            key = (info.project, info.name)
            if key not in on_server:
                try:
                    on_server[key] = {(v["digest"], v["type"]) for v in client.versions(*key)}
                except ArtifactNotFound:
                    on_server[key] = set()
            if (info.digest, info.type) in on_server[key]:
                continue
            on_server[key].add((info.digest, info.type))
        todo.append(info)
    return push(client, store, todo)


def push(client: ArtifactClient, store: ArtifactStore, infos: Iterable[VersionInfo]) -> list[dict[str, Any]]:
    """Send local versions to the server (each with its custom aliases); the server's answers.
    A version the server has from the same run is not added again (idempotent)."""
    return [upload_version(client, store, info, [alias for alias in info.aliases
                                                 if alias != "latest" and version_number(alias) is None])
            for info in infos]


def fetch_blob(client: ArtifactClient, cache: BlobCache, project: str, digest: str, size: int, *,
               entry: ManifestEntry | None = None, local: ArtifactStore | None = None) -> bool:
    """Put blob ``digest`` into the machine's blob cache from the server (verified as it is
    written, nothing visible unless whole and matching); False if the cache has no room for it
    (``CacheFull``: the caller downloads it straight to its destination). A manifest ``entry``
    naming a recipe (a file the server keeps as chunks) is fetched as the chunks that neither
    cached files nor ``local``'s packs hold (``delta.fetch_chunked``).

    The one place server bytes enter a local store."""
    if cache.has(digest):
        return True
    recipe = recipe_of(entry) if entry is not None else None
    try:
        if recipe is not None and entry is not None:
            from tracklet.artifacts.delta import fetch_chunked

            fetch_chunked(client, cache, project, entry, recipe, local)
        else:
            cache.put_stream(client.iter_blob(project, digest), digest, size)
    except CacheFull:
        return False
    return True


class ServerVersions:
    """A server's versions with the writing calls of the local ``LocalRegistry`` that an
    ``Artifact`` makes (``set_aliases``, ``delete_version``, ``version``), each one request: the
    server applies the local store's rules in one transaction of the collection
    (``POST .../versions/vN/aliases``, ``DELETE .../versions/vN``), so ``artifact.aliases``
    edits + ``save()`` and ``delete()`` are the same code against a data root and a server."""

    remote = True  # a server's: Artifact.delete refuses break_registry_links here

    def __init__(self, client: ArtifactClient) -> None:
        self.client = client

    def version(self, project: str, name: str, selector: str) -> VersionInfo:
        return version_info(self.client.version(project, name, selector))

    def set_aliases(self, project: str, name: str, version: int, add: list[str], remove: list[str]) -> None:
        self.client.save_aliases(project, name, version, add, remove)

    def edit_version(self, project: str, name: str, version: int, edit: VersionEdit) -> VersionInfo:
        """``LocalRegistry.edit_version`` on the server (``PATCH .../versions/vN``); an edit of
        aliases alone goes through the aliases route, which older servers have too."""
        if not edit.changes_fields:
            self.set_aliases(project, name, version, edit.add_aliases, edit.remove_aliases)
            return self.version(project, name, f"v{version}")
        return version_info(self.client.edit_version(project, name, version, dataclasses.asdict(edit)))

    def delete_version(self, project: str, name: str, version: int, *, drop_aliases: bool = False,
                       break_links: bool = False) -> dict[str, Any]:
        """The server's answer: ``aliases_dropped``, ``registry_links_broken`` (``ArtifactClient.delete_version``)."""
        return self.client.delete_version(project, name, version, delete_aliases=drop_aliases,
                                          break_registry_links=break_links)


class ServerVersionStore:
    """What a version read from a server downloads through (the ``ArtifactStore`` calls an
    ``Artifact`` makes: ``manifest``, ``download``): manifests from the server, file bytes
    through the size-capped ``BlobCache`` (``artifacts/cache.py``), materialized by reflink, hard
    link or copy as in local mode; its aliases moved and the version deleted on the server
    (``registry``: ``ServerVersions``)."""

    def __init__(self, client: ArtifactClient, data_root: str | os.PathLike, cache: BlobCache | None = None) -> None:
        self.client = client
        self.registry = ServerVersions(client)
        self.data_root = Path(data_root).expanduser()  # for lineage (logged_by, used_by) read locally
        self._cache = cache
        self._manifests: dict[str, Manifest] = {}
        self._local: ArtifactStore | None = None

    def local_chunks(self) -> ArtifactStore | None:
        """The data root's artifact store when it keeps chunks (versions this machine logged):
        a source of chunks for downloads; None when it has no chunk index (nothing created)."""
        if self._local is None:
            from tracklet.artifacts.storage import CHUNK_INDEX_FILE, artifact_dir

            if not (artifact_dir(self.data_root) / CHUNK_INDEX_FILE).is_file():
                return None
            self._local = ArtifactStore(self.data_root)
        return self._local

    def reopened(self) -> ServerVersionStore:
        """This store as this process opens it (a forked child holding the parent's): its own
        blob cache's connection and local store; the client opens its own connections as it is used."""
        cache = None if self._cache is None else BlobCache(self._cache.root, self._cache.cap)
        return ServerVersionStore(self.client, self.data_root, cache)

    @property
    def cache(self) -> BlobCache:
        if self._cache is None:
            self._cache = BlobCache()
        return self._cache

    def lineage(self, info: VersionInfo, direction: str) -> list[Any]:
        """The server's runs that logged (``direction="logged"``) or used (``"used"``) the version,
        as ``tracklet.api.remote.RemoteRun``s: its lineage, not this machine's store's."""
        found = self.client.lineage(info.project, info.name, f"v{info.version}")
        return lineage_runs(self.client.http, found["logged_by" if direction == "logged" else "used_by"],
                            f"{info.qualified_name}'s lineage")

    def manifest(self, info: VersionInfo) -> Manifest:
        manifest = self._manifests.get(info.manifest)
        if manifest is None:
            data = self.client.read(info.project, info.manifest, limit=MAX_MANIFEST_BYTES)
            manifest = self._manifests[info.manifest] = Manifest.from_bytes(
                data, what=f"the manifest of {info.qualified_name}")
        return manifest

    def download(self, info: VersionInfo, manifest: Manifest, root: Path, *, link: bool = True,
                 progress: Any = None, allow_missing_references: bool = False) -> Path:
        """Each file of ``manifest`` under ``root``: left alone if it is there with the right
        digest, else fetched into the cache (unless cached) and materialized through a hidden
        temporary renamed into place. A remote reference (``s3://``, ``gs://``, ``http(s)://``)
        is fetched from where it lives and checked against what was recorded, as in local mode
        (``allow_missing_references`` skips one whose object is gone); a ``file://`` reference
        (not stored on a server) is an ``ArtifactVerifyError`` naming it, after the other files
        are done."""
        from tracklet.artifacts.blobs import materialize
        from tracklet.artifacts.disk_errors import download_error
        from tracklet.core.digests import algorithm, hash_file
        from tracklet.artifacts.references import ReferenceMissing, fetch, is_remote

        root.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress.start(len(manifest), manifest.size)
        problems: dict[str, str] = {}
        for entry in manifest:
            target = root.joinpath(*entry.path.split("/"))
            if entry.ref is not None and is_remote(entry):
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fetch(entry, target)
                except ReferenceMissing as error:
                    if not allow_missing_references:
                        problems[entry.path] = str(error)
                except (ArtifactError, OSError) as error:
                    problems[entry.path] = str(error)
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            if entry.ref is not None:
                problems[entry.path] = f"reference {entry.ref} is not stored on the server"
                continue
            if target.is_file() and target.stat().st_size == entry.size and \
                    hash_file(target, algorithm(entry.digest))[0] == entry.digest:
                if progress is not None:
                    progress.advance(1, entry.size)
                continue
            if target.is_dir() and not target.is_symlink():
                raise ArtifactError(f"can't download {entry.path}: {target} is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = partial_path(target)
            try:
                made = False
                if fetch_blob(self.client, self.cache, info.project, entry.digest, entry.size, entry=entry,
                              local=self.local_chunks() if recipe_of(entry) is not None else None):
                    with self.cache.get(entry.digest) as cached:
                        if cached is not None:
                            materialize(cached, temporary, link=link)
                            made = True
                if not made:  # no room in the cache, or evicted at once: straight to the file
                    self.client.download(info.project, entry.digest, temporary)
                os.replace(temporary, target)
            except OSError as error:
                raise download_error(info.qualified_name, entry.path, target, error) from None
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                with contextlib.suppress(OSError):
                    Path(str(temporary) + ".partial").unlink()
            if progress is not None:
                progress.advance(1, entry.size)
        if problems:
            raise ArtifactVerifyError(
                f"artifact {info.qualified_name}: {len(problems)} file(s) can't be downloaded: "
                + "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:20]), problems)
        return root


def version_info(document: dict[str, Any]) -> VersionInfo:
    """A server's ``ArtifactVersion`` as a ``VersionInfo``."""
    return VersionInfo(project=document["project"], name=document["name"], version=int(document["index"]),
                       type=document["type"], digest=document["digest"], manifest=document["manifest"],
                       size=document["size"], file_count=document["file_count"],
                       description=document.get("description") or "", metadata=dict(document.get("metadata") or {}),
                       created_at=document.get("created_at") or 0.0, logged_by=document.get("logged_by"),
                       aliases=list(document.get("aliases") or []),
                       # an older server's answer has neither: no history step, no tags
                       history_step=document.get("history_step"), tags=list(document.get("tags") or []))


def lineage_runs(http: Any, rows: list[Any], what: str) -> list[Any]:
    """The runs of a server's lineage ``rows`` (``project``, ``run_id``, ``name``, ``state``) as
    ``RemoteRun``s that fetch the rest of their row only when asked (no request per run up
    front: a version may have thousands of users, and one deleted since no longer fails them
    all). A row whose project or run id is not a valid name (it would be a path segment of the
    run's URLs) or that lacks them is left out, with one warning saying how many."""
    import warnings

    from tracklet.core.extensions import load
    from tracklet.core.layout import check_name
    from tracklet.errors import TrackletWarning

    runs, bad = [], 0
    for row in rows:
        try:
            project, run_id = check_name("project", row["project"]), check_name("run id", row["run_id"])
        except (TypeError, KeyError, ValueError):
            bad += 1
            continue
        known = {key: row[key] for key in ("name", "state") if isinstance(row.get(key), str)}
        runs.append(load("remote_runs").RemoteRun(http, {**known, "run_id": run_id}, project))
    if bad:
        warnings.warn(f"tracklet: {bad} run(s) of {what} from the server were malformed (no valid project and run "
                      "id): left out", TrackletWarning, stacklevel=3)
    return runs


class RemoteArtifacts:
    """Artifact versions on a tracking server, downloaded through the local store of ``data_root``."""

    store: Any = forksafe.own(lambda artifacts, parents: parents.reopened())  # a forked child's own

    def __init__(self, client: ArtifactClient, data_root: str | os.PathLike, cache: BlobCache | None = None) -> None:
        self.client = client
        self.store = ServerVersionStore(client, data_root, cache)

    def _artifact(self, info: VersionInfo) -> Artifact:
        return Artifact._from_version(self.store, info)

    def artifact(self, reference: str, *, default_project: str | None = None, type: str | None = None) -> Artifact:  # noqa: A002
        """The version ``reference`` (``project/name:alias``) names on the server."""
        ref = parse_ref(reference)
        project = ref.project or default_project
        if project is None:
            raise ArtifactError(f"artifact reference {reference!r} needs a project: use 'project/name:alias'")
        info = version_info(self.client.version(project, ref.name, ref.selector))
        if type is not None and info.type != type:
            raise ArtifactTypeMismatch.of(info.qualified_name, info.type, type)
        return self._artifact(info)

    def versions(self, project: str, name: str) -> list[Artifact]:
        infos = [version_info(document) for document in self.client.versions(project, check_artifact_name(name))]
        return [self._artifact(info) for info in infos]

    def collections(self, project: str, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        """``{"name", "type", "versions", "latest", "description", "tags"}`` per collection, as the
        local ``Api`` gives (a server older than migration s0018 gives no description and tags)."""
        return [{**{key: item[key] for key in ("name", "type", "versions", "latest")},
                 "description": item.get("description", ""), "tags": list(item.get("tags", []))}
                for item in self.client.collections(project, type) if not item.get("error")]
