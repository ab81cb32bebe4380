"""Chunks of large artifact files on a tracking server: checking a pack a client sent, and reading a
chunked file back as one seekable stream (the SQL side, which project holds which chunk, is
``artifact_blobs.py``).

A client sends the chunks a project lacks in packs (``tracklet.artifacts.packs``' layout: chunk
bytes, an index of ``(blake3 id, offset, length)``, a footer). ``check_pack`` refuses a pack whose
index doesn't hash to its name, doesn't tile its data, or names a chunk whose bytes hash to
something else, before any of it is kept. ``ChunkedFile`` rebuilds a file from its recipe,
each chunk checked against its id as it is read, for the blob route's (ranged) downloads and for
the check of a file's digest when it is registered.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterator
from typing import Any

from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.packs import (ENTRY, FOOTER, MAX_UPLOAD_PACK_BYTES, MAX_UPLOAD_PACK_CHUNKS, ChunkLocator,
                                      PackReader, PackStore, decode_trailer, pack_id_of)
from tracklet.errors import ChunkStoreError, PackCorrupt, TrackletError
from tracklet.server.logs import BadRequest

# MAX_UPLOAD_PACK_BYTES (32 MiB), the largest pack one request may carry, and MAX_UPLOAD_PACK_CHUNKS
# are the client's packs' bounds too (artifacts/packs.py): a client's packs are about 8 or 16 MiB of
# chunks and close before a chunk would pass either.
#: Chunk ids per "which chunks does the project lack?" request.
MAX_CHUNK_IDS_PER_QUERY = 1000
#: Chunks located per query while a chunked file is read (~77 KiB each: about 20 MiB of file).
LOCATE_BATCH = 256
#: A recipe blob's largest size: ~70 bytes per chunk of ~77 KiB on average, a file of about 70 GiB.
MAX_RECIPE_BYTES = 64 << 20


#: Bytes of pack buffers out at once (lent to requests) by default: past it a pack gets 503.
MAX_PACK_BUFFER_BYTES = 512 << 20


class PackBuffersBusy(TrackletError):
    """Every byte the pool may lend is lent: the pack is answered 503 with ``Retry-After`` (a
    client sends it again), so a thousand packs at once cost bounded memory, not 17 GiB."""


class BufferPool:
    """Reusable buffers for pack bodies: a pack is received into memory the process has touched
    before, not into fresh pages. A fresh 8 MiB allocation is mapped anew and zeroed by the kernel
    page by page (``clear_page``: 63% of a server's CPU while it took packs, measured with perf),
    more than receiving, checking and writing the bytes. At most ``keep`` buffers are kept
    (``MAX_UPLOAD_PACK_BYTES`` each at most; a client's are 17 MiB: ~170 MiB held once a large
    upload ran: a streamed upload's 3 packs in flight and the ~5 a file's hash keeps,
    ``artifact_streams.MAX_HELD_BYTES``, or a sync's 8 smaller packs in flight); more packs at once
    get fresh ones, while the buffers lent stay within ``max_out_bytes`` (``PackBuffersBusy``
    past it; one buffer is always lent when none is out, so a cap below one pack still serves
    packs one at a time). Every buffer taken must be given back exactly once."""

    def __init__(self, keep: int = 10, max_out_bytes: int = MAX_PACK_BUFFER_BYTES) -> None:
        self.keep = keep
        self.max_out_bytes = max_out_bytes
        #: Bytes of the buffers lent now (taken, not yet given back).
        self.out_bytes = 0
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (its contents are stale: overwrite what you read);
        ``PackBuffersBusy`` if lending it would pass ``max_out_bytes``."""
        with self._lock:
            for index, buffer in enumerate(self._free):
                if len(buffer) >= size:
                    self._lend(len(buffer))
                    return self._free.pop(index)
            # A client's streamed pack (16 MiB of chunks, one more chunk, the index) gets room for any
            # other, so the buffer serves them all once given back; a smaller pack only its own size.
            length = size if size < 8 << 20 else max(size, 17 << 20)
            self._lend(length)
        try:
            return bytearray(length)
        except BaseException:
            with self._lock:
                self.out_bytes -= length
            raise

    def _lend(self, length: int) -> None:
        """Count ``length`` bytes as lent, or ``PackBuffersBusy`` (under ``_lock``)."""
        if self.out_bytes and self.out_bytes + length > self.max_out_bytes:
            raise PackBuffersBusy(f"{self.out_bytes >> 20} MiB of pack buffers are in use (the server's "
                                  f"limit is {self.max_out_bytes >> 20} MiB): send the pack again shortly")
        self.out_bytes += length

    def give(self, buffer: bytearray) -> None:
        """Take back a buffer ``take`` lent (kept for reuse while fewer than ``keep`` are)."""
        with self._lock:
            self.out_bytes -= len(buffer)
            if len(self._free) < self.keep and len(buffer) <= MAX_UPLOAD_PACK_BYTES:
                self._free.append(buffer)


#: A chunk id as sent: 64 lowercase hex digits (matched whole: no trailing newline).
_CHUNK_ID = re.compile(r"[0-9a-f]{64}")


def check_chunk_id(chunk_id: object) -> str:
    """``chunk_id`` if it is one (64 lowercase hex digits of a blake3), else ``BadRequest``. One
    regular expression match: checked for every id of every "which chunks do you lack?" query
    (~16k per GiB uploaded), where a per-character test was 40% of the query's CPU."""
    if not (isinstance(chunk_id, str) and _CHUNK_ID.fullmatch(chunk_id)):
        raise BadRequest(f"{str(chunk_id)[:80]!r} is not a chunk id (64 lowercase hex digits of a blake3)")
    return chunk_id


#: Chunk ids joined end to end, each 64 lowercase hex digits (``check_chunk_ids``).
_CHUNK_IDS = re.compile(r"(?:[0-9a-f]{64})*")


def check_chunk_ids(chunk_ids: list[str]) -> list[str]:
    """``chunk_ids`` if every one is a chunk id (``check_chunk_id``), else ``BadRequest`` naming the
    first that is not. Checked as a column (the ids' types and lengths, then one regular expression
    over them joined), not id by id in Python: a query's ~500-1,000 ids are checked on the server's
    interpreter lock (~16k per GiB uploaded); the per-id check runs only to name a fault."""
    if (set(map(type, chunk_ids)) <= {str} and set(map(len, chunk_ids)) <= {64}
            and _CHUNK_IDS.fullmatch("".join(chunk_ids))):
        return chunk_ids
    return [check_chunk_id(chunk_id) for chunk_id in chunk_ids]


def check_pack(pack_id: str, data: bytes | memoryview) -> list[tuple[bytes, int, int]]:
    """The entries of pack ``data`` sent as ``pack_id``: its index must hash to ``pack_id`` and tile
    its data, and every chunk's bytes must hash to its id. ``BadRequest`` naming what is wrong."""
    check_chunk_id(pack_id)
    if len(data) < FOOTER.size:
        raise BadRequest(f"pack {pack_id}: {len(data)} bytes is too short for a pack")
    _, count, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    if count > MAX_UPLOAD_PACK_CHUNKS:  # before an entry per chunk is built: ~300 bytes of Python each
        raise BadRequest(f"pack {pack_id}: its footer says {count} chunks; a pack may hold at most "
                         f"{MAX_UPLOAD_PACK_CHUNKS} (send them in several packs)")
    trailer_size = count * ENTRY.size + FOOTER.size
    if trailer_size > len(data):
        raise BadRequest(f"pack {pack_id}: its footer says {count} chunks, more than its {len(data)} bytes hold")
    trailer = bytes(data[len(data) - trailer_size:])
    try:
        entries = decode_trailer(trailer, len(data), pack_id)
    except PackCorrupt as error:
        raise BadRequest(str(error)) from None
    if pack_id_of(trailer) != pack_id:
        raise BadRequest(f"pack {pack_id}: its index hashes to {pack_id_of(trailer)}, not its name")
    import blake3

    view = memoryview(data)
    for cid, offset, length in entries:
        if blake3.blake3(view[offset:offset + length]).digest() != cid:
            raise BadRequest(f"pack {pack_id}: chunk {cid.hex()} at byte {offset} doesn't hash to its id: "
                             "the pack was not stored (send it again)")
    return entries


class ChunkedFile:
    """A file rebuilt from chunks, as a read-only file object (``seek``, ``read``, ``close``): what
    the blob route streams for a chunked file, whole or one range. Each chunk is checked against
    its blake3 id as it is read (``ChunkStoreError`` otherwise); the file's digest was checked when
    it was registered.

    Only what is read is fetched: ``seek(offset, end)`` narrows reads to ``[offset, end)`` (the
    bytes of one HTTP Range), and the chunks covering it are located through ``locator`` (the
    project's chunk rows) at most ``LOCATE_BATCH`` at a time, then read from their packs with
    adjacent chunks merged into reads of at most ``packs.MAX_READ`` bytes. So a range of a huge file
    costs the chunks it covers, and memory stays bounded by one lookup batch and one merged read
    whatever the file's size (the recipe itself is capped by ``MAX_RECIPE_BYTES``)."""

    def __init__(self, recipe: FileRecipe, packs: PackStore | None = None, locator: ChunkLocator | None = None, *,
                 reader: Any = None) -> None:
        """``packs`` and ``locator``: where the chunks are (a server's); or ``reader``, anything with
        ``iter_chunks(chunk_ids, name=)`` giving each chunk's bytes checked against its id (a local
        artifact store's, ``artifact_source.LocalChunks``)."""
        self.recipe = recipe
        if reader is None:
            assert packs is not None and locator is not None
            reader = PackReader(packs, locator, lookup_batch=LOCATE_BATCH)
        self.reader = reader
        self.starts: list[int] = []
        offset = 0
        for _, length in recipe.chunks:
            self.starts.append(offset)
            offset += length
        self.position = 0
        self.end = recipe.size
        self._pieces: Iterator[memoryview] | None = None
        self._buffer = memoryview(b"")

    def seek(self, offset: int, end: int | None = None) -> int:
        """Move to ``offset``; reads stop at ``end`` (the file's end when omitted)."""
        self.position = max(0, min(offset, self.recipe.size))
        self.end = self.recipe.size if end is None else max(self.position, min(end, self.recipe.size))
        self._pieces, self._buffer = None, memoryview(b"")
        return self.position

    def _start(self) -> Iterator[memoryview]:
        """The chunks from the one holding ``position`` to the one holding ``end - 1``; ``_buffer``
        holds the first, cut to start there."""
        if self.position >= self.end:
            return iter(())
        first = bisect.bisect_right(self.starts, self.position) - 1
        last = bisect.bisect_right(self.starts, self.end - 1) - 1
        pieces = self.reader.iter_chunks(self.recipe.chunk_ids[first:last + 1], name=self.recipe.digest)
        piece = next(pieces, None)
        self._buffer = memoryview(b"") if piece is None else piece[self.position - self.starts[first]:]
        return pieces

    def read(self, size: int = -1) -> bytes:
        pieces = self._pieces
        if pieces is None:
            pieces = self._pieces = self._start()
        wanted = self.end - self.position if size < 0 else min(size, self.end - self.position)
        out = bytearray()
        while len(out) < wanted:
            if not self._buffer:
                piece = next(pieces, None)
                if piece is None:
                    break
                self._buffer = piece
            take = self._buffer[:wanted - len(out)]
            out += take
            self._buffer = self._buffer[len(take):]
        self.position += len(out)
        return bytes(out)

    def close(self) -> None:
        self._pieces, self._buffer = None, memoryview(b"")

    def __enter__(self) -> ChunkedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MAX_CHUNK_IDS_PER_QUERY", "MAX_PACK_BUFFER_BYTES", "BufferPool", "PackBuffersBusy", "MAX_RECIPE_BYTES", "MAX_UPLOAD_PACK_BYTES", "MAX_UPLOAD_PACK_CHUNKS", "ChunkStoreError", "ChunkedFile",
           "check_chunk_id", "check_chunk_ids", "check_pack"]
