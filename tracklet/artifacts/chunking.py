"""Content-defined chunking of large files: FastCDC cut points, blake3 chunk ids, a file recipe.

A file of at least :data:`CHUNK_THRESHOLD` bytes is cut into chunks of about 64 KiB whose
boundaries depend on the content (FastCDC 2020, ``pyfastcdc``), so an insertion or a deletion moves
only the cut points near it: a new version of a checkpoint shares every chunk away from its edits
with the old one. Each chunk is identified by its blake3 digest; the whole file gets its sha256 (the
artifact manifest's digest) in the same pass. The file is streamed in blocks of a few MiB, never
read whole, and the sha256 runs on a reader thread (hashlib and file reads release the GIL) while
the calling thread cuts and hashes chunks.

``chunk_file(path)`` returns the :class:`FileRecipe` (chunk ids and lengths in order, sha256,
size); ``tracklet.artifacts.packs`` stores the chunks and rebuilds files from recipes.
``pyfastcdc`` and ``blake3`` are imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracklet.errors import RecipeError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHUNK_THRESHOLD",
    "DEFAULT_PARAMS",
    "ChunkingParams",
    "FileChunker",
    "FileRecipe",
    "RecipeError",
    "chunk_file",
    "chunk_id",
    "should_chunk",
]

#: Files at least this large are chunked; smaller ones are stored whole (one blob per file).
CHUNK_THRESHOLD = 64 * 1024 * 1024

#: Bytes read from the file per block (plus room for the carried-over tail of the previous one).
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024

#: Blocks read ahead of the cutting thread. With the block being filled and the three the cutting
#: side holds (being cut, carried from, held by the caller), about ``READ_AHEAD + 4`` blocks are
#: alive at once: ~14 MiB (tracemalloc peak) for any file size.
READ_AHEAD = 2

RECIPE_FORMAT = "tracklet.recipe.v1"
CHUNK_ID_SIZE = 32  # blake3's default digest length


@dataclass(frozen=True)
class ChunkingParams:
    """FastCDC 2020 parameters. Two versions of a file share chunks only when cut with the same
    parameters, so they are recorded in every recipe.

    ``avg_size`` is FastCDC's normalization point; pyfastcdc's chunks average about
    ``avg_size + min_size`` (measured: 77 KiB on random data at the defaults, 64/16/256 KiB, the
    fastcdc-rs defaults; Hugging Face's Xet uses a 64 KiB target in 8-128 KiB).
    """

    avg_size: int = 64 * 1024
    min_size: int = 16 * 1024
    max_size: int = 256 * 1024
    normalization: int = 1

    def __post_init__(self) -> None:
        # pyfastcdc's own limits, checked here so a bad value fails before any file is opened.
        if not 64 <= self.min_size <= 1 << 20:
            raise ValueError(f"min_size {self.min_size} is outside [64, 1 MiB]")
        if not 256 <= self.avg_size <= 4 << 20:
            raise ValueError(f"avg_size {self.avg_size} is outside [256, 4 MiB]")
        if not 1024 <= self.max_size <= 16 << 20:
            raise ValueError(f"max_size {self.max_size} is outside [1 KiB, 16 MiB]")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(f"need min_size <= avg_size <= max_size, got {self}")
        if self.normalization not in (0, 1, 2, 3):
            raise ValueError(f"normalization {self.normalization} is not 0, 1, 2 or 3")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": "fastcdc2020",
            "avg_size": self.avg_size,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "normalization": self.normalization,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ChunkingParams:
        if not isinstance(data, dict) or data.get("algorithm") != "fastcdc2020":
            raise RecipeError(f"recipe 'chunker' is not a fastcdc2020 parameter set: {data!r:.200}")
        try:
            values = {key: data[key] for key in ("avg_size", "min_size", "max_size", "normalization")}
        except KeyError as exc:
            raise RecipeError(f"recipe 'chunker' lacks {exc.args[0]!r}") from None
        if not all(type(value) is int for value in values.values()):
            raise RecipeError(f"recipe 'chunker' values must be integers: {values!r}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise RecipeError(f"recipe 'chunker': {exc}") from None


DEFAULT_PARAMS = ChunkingParams()


def should_chunk(size: int, threshold: int = CHUNK_THRESHOLD) -> bool:
    """Whether a file of ``size`` bytes is stored as chunks (True) or as one blob."""
    return size >= threshold


def chunk_id(data: bytes | bytearray | memoryview) -> bytes:
    """A chunk's id: the 32-byte blake3 digest of its bytes."""
    import blake3

    return blake3.blake3(data).digest()


@dataclass(frozen=True)
class FileRecipe:
    """How to rebuild one file from chunks: the chunk ids and lengths in file order, the file's
    sha256 (hex) and size, and the chunking parameters that produced the cut points."""

    size: int
    sha256: str
    chunks: tuple[tuple[bytes, int], ...]
    params: ChunkingParams = DEFAULT_PARAMS

    @property
    def chunk_ids(self) -> list[bytes]:
        return [cid for cid, _ in self.chunks]

    def offsets(self) -> Iterator[tuple[bytes, int, int]]:
        """``(chunk id, offset in the file, length)`` for every chunk, in order."""
        offset = 0
        for cid, length in self.chunks:
            yield cid, offset, length
            offset += length

    def unique_bytes(self) -> int:
        """Bytes the file needs stored once each chunk is stored once (repeats count once)."""
        return sum(dict(self.chunks).values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECIPE_FORMAT,
            "size": self.size,
            "sha256": self.sha256,
            "chunker": self.params.to_dict(),
            "chunks": [[cid.hex(), length] for cid, length in self.chunks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> FileRecipe:
        """Parse and check a recipe from outside (a manifest, a server): every field typed, every
        chunk id 64 hex digits, every length within the chunker's bounds, lengths summing to size."""
        if not isinstance(data, dict):
            raise RecipeError(f"a recipe is a JSON object, got {type(data).__name__}")
        if data.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"recipe format is {data.get('format')!r:.80}, expected {RECIPE_FORMAT!r}")
        size, sha256, raw_chunks = data.get("size"), data.get("sha256"), data.get("chunks")
        if type(size) is not int or size < 0:
            raise RecipeError(f"recipe 'size' must be a non-negative integer, got {size!r:.80}")
        if not (isinstance(sha256, str) and len(sha256) == 64 and _is_hex(sha256)):
            raise RecipeError(f"recipe 'sha256' must be 64 hex digits, got {sha256!r:.80}")
        if not isinstance(raw_chunks, list):
            raise RecipeError("recipe 'chunks' must be a list")
        params = ChunkingParams.from_dict(data.get("chunker"))
        chunks: list[tuple[bytes, int]] = []
        total = 0
        for i, item in enumerate(raw_chunks):
            if not (isinstance(item, list) and len(item) == 2):
                raise RecipeError(f"recipe chunk {i} must be [id, length]")
            hexid, length = item
            if not (isinstance(hexid, str) and len(hexid) == 2 * CHUNK_ID_SIZE and _is_hex(hexid)):
                raise RecipeError(f"recipe chunk {i}: id must be {2 * CHUNK_ID_SIZE} hex digits")
            if type(length) is not int or not 0 < length <= params.max_size:
                raise RecipeError(f"recipe chunk {i}: length {length!r:.40} is outside [1, {params.max_size}]")
            total += length
            if total > size:
                raise RecipeError(f"recipe chunks add up to more than its size {size}")
            chunks.append((bytes.fromhex(hexid), length))
        if total != size:
            raise RecipeError(f"recipe chunks add up to {total} bytes, its size is {size}")
        return cls(size=size, sha256=sha256.lower(), chunks=tuple(chunks), params=params)

    @classmethod
    def from_json(cls, text: str | bytes) -> FileRecipe:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecipeError(f"recipe is not JSON: {exc}") from None
        return cls.from_dict(data)


_HEX = re.compile(r"[0-9a-fA-F]*")


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None  # a regex: 10x a per-character loop on a 16k-chunk recipe


class FileChunker:
    """One streaming pass over a file: iterate for batches of ``(chunk id, chunk bytes)``, one
    batch per block read, in file order; after the last batch ``size`` and ``sha256`` are set.

    The chunk bytes are read-only memoryviews into the block they were read in. Blocks are reused
    two batches later unless a consumer still holds a view into one (then a fresh block replaces
    it), so keeping chunk bytes is safe, it only costs memory. Cut points are exactly those of
    FastCDC over the whole file at once: a chunk is cut in a block only when at least ``max_size``
    bytes follow its start there (or the file ends), else its bytes are carried over to the front
    of the next block.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: ChunkingParams = DEFAULT_PARAMS,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size < params.max_size:
            raise ValueError(f"block_size {block_size} is below max_size {params.max_size}")
        self.path = os.fspath(path)
        self.params = params
        self.block_size = block_size
        self.size = 0
        self.sha256 = ""
        self._started = False

    def __iter__(self) -> Iterator[list[tuple[bytes, memoryview]]]:
        if self._started:
            raise RuntimeError("a FileChunker makes one pass; make another for a second")
        self._started = True
        return self._batches()

    def _batches(self) -> Iterator[list[tuple[bytes, memoryview]]]:
        import blake3
        import pyfastcdc

        p = self.params
        cdc = pyfastcdc.FastCDC(
            p.avg_size,
            min_size=p.min_size,
            max_size=p.max_size,
            normalized_chunking=p.normalization,  # type: ignore[arg-type]
        )
        headroom = p.max_size  # the carried-over tail (< max_size) is copied in front of the new bytes
        reader = _BlockReader(self.path, self.block_size, headroom)
        carry: memoryview = memoryview(b"")
        done: list[bytearray] = []  # blocks already cut, oldest first; recycled two batches on
        try:
            while True:
                block, count, eof = reader.next_block()
                start = headroom - len(carry)
                block[start:headroom] = carry
                view = memoryview(block)[start : headroom + count].toreadonly()
                batch, carry = _cut(cdc, blake3.blake3, view, p.max_size, eof)
                del view
                done.append(block)
                del block
                if len(done) > 2:  # the caller has moved past that block's batch: reuse it
                    reader.recycle(done.pop(0))
                if batch:
                    yield batch
                del batch
                if eof:
                    break
        finally:
            reader.close()
        self.size, self.sha256 = reader.size, reader.hexdigest()


def _cut(
    cdc: Any, hasher: Any, view: memoryview, max_size: int, eof: bool
) -> tuple[list[tuple[bytes, memoryview]], memoryview]:
    """The chunks of ``view`` that are final, with their ids, and the tail to carry over."""
    batch: list[tuple[bytes, memoryview]] = []
    end = len(view)
    for chunk in cdc.cut_buf(view):
        if not eof and end - chunk.offset < max_size:
            return batch, view[chunk.offset :]
        data = view[chunk.offset : chunk.offset + chunk.length]
        batch.append((hasher(data).digest(), data))
    return batch, memoryview(b"")


class _BlockReader:
    """Reads a file in blocks on a thread of its own, hashing each with sha256 as it goes (both
    release the GIL, so they overlap the caller's chunking). Each block is a bytearray with
    ``headroom`` free bytes in front; at most ``READ_AHEAD`` filled blocks wait in the queue. Blocks
    handed back through ``recycle`` are filled again (no new allocation, no page faults)."""

    def __init__(self, path: str, block_size: int, headroom: int) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._block_size = block_size
        self._headroom = headroom
        self._sha = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue[tuple[bytearray, int, bool] | BaseException] = queue.Queue(READ_AHEAD)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracklet-chunk-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            eof = False
            while not eof and not self._stop.is_set():
                try:
                    block = self._free.get_nowait()
                except queue.Empty:
                    block = bytearray(self._headroom + self._block_size)
                view = memoryview(block)
                count = 0
                while count < self._block_size:
                    n = self._file.readinto(view[self._headroom + count :])
                    if not n:
                        eof = True
                        break
                    count += n
                self._sha.update(view[self._headroom : self._headroom + count])
                self.size += count
                view.release()
                self._put((block, count, eof))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: tuple[bytearray, int, bool] | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_block(self) -> tuple[bytearray, int, bool]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def recycle(self, block: bytearray) -> None:
        """Take ``block`` back for reading into, unless something still holds a view into it."""
        try:
            # Resizing a bytearray that has live views raises BufferError; a shrink by one byte
            # and back never reallocates.
            last = block.pop()
        except BufferError:
            return
        block.append(last)
        self._free.put(block)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._file.close()


def chunk_file(
    path: str | os.PathLike[str] | Path,
    params: ChunkingParams = DEFAULT_PARAMS,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FileRecipe:
    """Cut ``path`` into content-defined chunks and return its recipe (nothing is stored)."""
    chunker = FileChunker(path, params, block_size=block_size)
    chunks: list[tuple[bytes, int]] = []
    for batch in chunker:
        chunks.extend((cid, len(data)) for cid, data in batch)
    return FileRecipe(size=chunker.size, sha256=chunker.sha256, chunks=tuple(chunks), params=params)
