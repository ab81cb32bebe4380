"""A chunked file downloaded from a server as the chunks this machine lacks (issue #15).

A server keeps the recipe of each file it was sent as chunks (the manifest entry's
``extra.recipe``, a blob the project holds). To put such a file into the machine's blob cache,
``fetch_chunked`` reads the recipe, finds each chunk here: in a file cached before (the cache
records the chunks of every chunked file it takes: ``BlobCache.locate_chunks``), or in the local
artifact store's packs (a version this machine logged itself), and fetches only the others from
the server, as ranged reads of the file (consecutive missing chunks in one request of at most
``MAX_RANGE`` bytes; the server reads only the chunks a range covers). Every chunk, local or
fetched, is checked against its blake3 id (a local one that fails is fetched instead), and the
whole file against its sha256 as the cache writes it: nothing is visible unless it matches.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tracklet.errors import ArtifactError, ChunkStoreError, RecipeError, RemoteError

if TYPE_CHECKING:
    from tracklet.artifacts.cache import BlobCache
    from tracklet.artifacts.chunking import FileRecipe
    from tracklet.artifacts.manifest import ManifestEntry
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient

__all__ = ["MAX_RANGE", "MAX_RECIPE_BYTES", "DeltaStats", "fetch_chunked"]

#: The most bytes one ranged request asks for (and one local run of chunks holds in memory).
MAX_RANGE = 16 << 20

#: A recipe names ~45 bytes of JSON per ~77 KiB chunk: 64 MiB covers files of ~100 TiB.
MAX_RECIPE_BYTES = 64 << 20

_CACHED, _PACKED, _REMOTE = 0, 1, 2


class DeltaStats:
    """What one ``fetch_chunked`` took from where: bytes fetched from the server (and requests),
    bytes read from cached files, and from the local store's packs."""

    def __init__(self) -> None:
        self.fetched_bytes = 0
        self.requests = 0
        self.cached_bytes = 0
        self.packed_bytes = 0


def _blake3(data: bytes | bytearray | memoryview) -> bytes:
    import blake3

    return blake3.blake3(data).digest()


def read_recipe(client: ArtifactClient, project: str, entry: ManifestEntry, recipe_digest: str) -> FileRecipe:
    """The server's recipe of ``entry`` (verified by its sha256, parsed and checked, and describing
    the entry's content), else ``ArtifactError`` naming the file."""
    from tracklet.artifacts.chunking import FileRecipe

    data = client.read(project, recipe_digest, limit=MAX_RECIPE_BYTES)
    try:
        recipe = FileRecipe.from_json(data)
    except RecipeError as error:
        raise ArtifactError(f"the recipe of {entry.path} on the server is damaged: {error}") from None
    if recipe.digest != entry.digest or recipe.size != entry.size:
        raise ArtifactError(f"the recipe {recipe_digest} of {entry.path} describes other content "
                            f"(digest {recipe.digest}, {recipe.size:,} bytes)")
    return recipe


def fetch_chunked(client: ArtifactClient, cache: BlobCache, project: str, entry: ManifestEntry,
                  recipe_digest: str, local: ArtifactStore | None = None) -> DeltaStats:
    """Put ``entry``'s file into ``cache``, fetching from the server only the chunks neither the
    cache's files nor ``local``'s packs hold. ``CacheFull`` if the cache can't take it."""
    recipe = read_recipe(client, project, entry, recipe_digest)
    stats = DeltaStats()
    with contextlib.ExitStack() as holds:
        cached = _hold_cached(cache, recipe, holds)
        packed = _locate_packed(local, [cid for cid in dict.fromkeys(recipe.chunk_ids) if cid not in cached])
        if cached or packed:
            pieces: Iterable[bytes | memoryview] = _pieces(client, project, entry.digest, recipe, cached, local,
                                                           packed, stats)
        else:  # nothing here: one streamed request (resumed with a Range if it breaks), checked whole
            pieces = _counted(client.iter_blob(project, entry.digest), stats)
        cache.put_stream(pieces, entry.digest, entry.size, chunks=list(recipe.offsets()))
    return stats


def _counted(pieces: Iterable[bytes], stats: DeltaStats) -> Iterator[bytes]:
    stats.requests += 1
    for piece in pieces:
        stats.fetched_bytes += len(piece)
        yield piece


def _hold_cached(cache: BlobCache, recipe: FileRecipe, holds: contextlib.ExitStack
                 ) -> dict[bytes, tuple[Any, int, int]]:
    """``chunk id -> (open cached file, offset, length)`` for the recipe's chunks that cached
    files hold; each such file is held (not evicted) until ``holds`` closes."""
    places = cache.locate_chunks(recipe.chunk_ids)
    files: dict[str, Any] = {}
    for digest in dict.fromkeys(digest for digest, _, _ in places.values()):
        path = holds.enter_context(cache.get(digest))
        if path is not None:
            files[digest] = holds.enter_context(open(path, "rb", buffering=0))
    return {cid: (files[digest], offset, length) for cid, (digest, offset, length) in places.items()
            if digest in files}


def _locate_packed(local: ArtifactStore | None, chunk_ids: list[bytes]) -> set[bytes]:
    if local is None or not chunk_ids:
        return set()
    try:
        with local._chunk_lock:
            _, index = local.chunks()
            return index.present(chunk_ids)
    except (ChunkStoreError, OSError, ArtifactError):
        return set()  # an unreadable local index: fetch instead


def _pieces(client: ArtifactClient, project: str, digest: str, recipe: FileRecipe,
            cached: dict[bytes, tuple[Any, int, int]], local: ArtifactStore | None, packed: set[bytes],
            stats: DeltaStats) -> Iterator[bytes | memoryview]:
    """The file's bytes in order: runs of consecutive chunks from one kind of source, each run at
    most ``MAX_RANGE`` bytes, every chunk checked against its id."""
    run: list[tuple[bytes, int, int]] = []  # (chunk id, offset in the file, length)
    kind = -1
    run_bytes = 0
    for cid, offset, length in recipe.offsets():
        source = _CACHED if cid in cached else _PACKED if cid in packed else _REMOTE
        if run and (source != kind or run_bytes + length > MAX_RANGE):
            yield from _read_run(client, project, digest, kind, run, cached, local, stats)
            run, run_bytes = [], 0
        kind = source
        run.append((cid, offset, length))
        run_bytes += length
    if run:
        yield from _read_run(client, project, digest, kind, run, cached, local, stats)


def _read_run(client: ArtifactClient, project: str, digest: str, kind: int, run: list[tuple[bytes, int, int]],
              cached: dict[bytes, tuple[Any, int, int]], local: ArtifactStore | None,
              stats: DeltaStats) -> Iterator[bytes | memoryview]:
    if kind == _CACHED:
        for part in _contiguous(run, cached):  # one read per stretch of one cached file
            handle, at, _ = cached[part[0][0]]
            size = sum(length for _, _, length in part)
            data = memoryview(os.pread(handle.fileno(), size, at))
            position = 0
            for cid, offset, length in part:
                piece = data[position : position + length]
                position += length
                if len(piece) == length and _blake3(piece) == cid:
                    stats.cached_bytes += length
                    yield piece
                else:  # a cached file that no longer holds what was recorded: ask the server
                    yield from _fetch(client, project, digest, [(cid, offset, length)], stats)
        return
    if kind == _PACKED and local is not None:
        try:
            pieces = [bytes(piece) for piece in local.chunk_reader([cid for cid, _, _ in run]).iter_chunks(
                [cid for cid, _, _ in run])]
        except (ChunkStoreError, OSError):
            pieces = []  # a pack gone or damaged since it was looked up: ask the server
        if len(pieces) == len(run):
            stats.packed_bytes += sum(len(piece) for piece in pieces)
            yield from pieces
            return
    yield from _fetch(client, project, digest, run, stats)


def _contiguous(run: list[tuple[bytes, int, int]], cached: dict[bytes, tuple[Any, int, int]]
                ) -> Iterator[list[tuple[bytes, int, int]]]:
    """``run`` split where the next chunk is not the next bytes of the same cached file."""
    part: list[tuple[bytes, int, int]] = []
    handle, end = None, -1
    for item in run:
        this, at, length = cached[item[0]]
        if part and (this is not handle or at != end):
            yield part
            part = []
        part.append(item)
        handle, end = this, at + length
    if part:
        yield part


def _fetch(client: ArtifactClient, project: str, digest: str, run: list[tuple[bytes, int, int]],
           stats: DeltaStats) -> Iterator[memoryview]:
    """Consecutive chunks of the file from the server in one ranged request, each checked."""
    start = run[0][1]
    end = run[-1][1] + run[-1][2]
    data = memoryview(client.read_range(project, digest, start, end))
    stats.requests += 1
    stats.fetched_bytes += end - start
    for cid, offset, length in run:
        piece = data[offset - start : offset - start + length]
        if _blake3(piece) != cid:
            raise RemoteError(f"chunk {cid.hex()} of blob {digest} (bytes {offset:,}-{offset + length - 1:,}) "
                                "arrived damaged from the server; nothing was kept")
        yield piece
