"""Content-defined chunking of large files: FastCDC cut points, blake3 chunk ids, a file recipe.

A file of at least :data:`CHUNK_THRESHOLD` bytes is cut into chunks of about 64 KiB whose
boundaries depend on the content (FastCDC 2020, ``pyfastcdc``), so an insertion or a deletion moves
only the cut points near it: a new version of a checkpoint shares every chunk away from its edits
with the old one. Each chunk is identified by its blake3 digest; the whole file gets its BLAKE3
(the artifact manifest's digest, ``blake3:<hex>``: ``tracklet.core.digests``) in the same
pass. The file is streamed in blocks of a few MiB, never read whole; reading, the whole-file
BLAKE3, the cutting and the chunks' blake3 run on threads of their own (each releases the GIL), so
on a machine with free cores they overlap (``_BlockPipeline``).

``chunk_file(path)`` returns the :class:`FileRecipe` (chunk ids and lengths in order, the file's
digest, size); ``tracklet.artifacts.packs`` stores the chunks and rebuilds files from recipes.
``pyfastcdc`` and ``blake3`` are imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracklet.core import threads
from tracklet.core.digests import BLAKE3_PREFIX, blake3_digest, is_blake3, is_sha256
from tracklet.errors import RecipeError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHUNK_THRESHOLD",
    "DEFAULT_PARAMS",
    "ChunkBatch",
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

#: Blocks queued between two stages of the pipeline (read -> file digest -> cut -> ids -> caller). With
#: one block in each stage's hands and the three the consumer holds (being cut, carried from, held
#: by the caller), about ``4 * READ_AHEAD + 7`` blocks are alive at once: ~25 MiB for any file size.
READ_AHEAD = 1

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
    digest and size, and the chunking parameters that produced the cut points.

    ``digest`` is in the manifest's form: ``blake3:<hex>`` (recorded as ``"blake3": <hex>``), or a
    plain sha256 for a file chunked before BLAKE3 identified chunked files (``"sha256": <hex>``);
    a recipe carries exactly one of the two."""

    size: int
    digest: str
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
        if is_blake3(self.digest):
            named = {"blake3": self.digest[len(BLAKE3_PREFIX):]}
        else:
            named = {"sha256": self.digest}
        return {
            "format": RECIPE_FORMAT,
            "size": self.size,
            **named,
            "chunker": self.params.to_dict(),
            "chunks": [[cid.hex(), length] for cid, length in self.chunks],
        }

    def to_json(self) -> str:
        """The recipe as compact JSON (its blob's bytes, encoded). Building it costs ~8 ms of
        Python per GiB of file: a caller that needs it twice keeps the bytes."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> FileRecipe:
        """Parse and check a recipe from outside (a manifest, a server): every field typed, exactly
        one file digest (``blake3`` or, from before, ``sha256``: 64 hex digits), every chunk id 64
        hex digits, every length within the chunker's bounds, lengths summing to size."""
        if not isinstance(data, dict):
            raise RecipeError(f"a recipe is a JSON object, got {type(data).__name__}")
        if data.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"recipe format is {data.get('format')!r:.80}, expected {RECIPE_FORMAT!r}")
        size, raw_chunks = data.get("size"), data.get("chunks")
        if type(size) is not int or size < 0:
            raise RecipeError(f"recipe 'size' must be a non-negative integer, got {size!r:.80}")
        digest = _recipe_digest(data)
        if not isinstance(raw_chunks, list):
            raise RecipeError("recipe 'chunks' must be a list")
        params = ChunkingParams.from_dict(data.get("chunker"))
        chunks = _well_formed_chunks(raw_chunks, size, params.max_size)
        if chunks is not None:
            return cls(size=size, digest=digest, chunks=chunks, params=params)
        chunks_seen: list[tuple[bytes, int]] = []  # something is wrong: find the first fault and name it
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
            chunks_seen.append((bytes.fromhex(hexid), length))
        if total != size:
            raise RecipeError(f"recipe chunks add up to {total} bytes, its size is {size}")
        return cls(size=size, digest=digest, chunks=tuple(chunks_seen), params=params)

    @classmethod
    def from_json(cls, text: str | bytes) -> FileRecipe:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecipeError(f"recipe is not JSON: {exc}") from None
        return cls.from_dict(data)


_HEX = re.compile(r"[0-9a-fA-F]*")


def _recipe_digest(data: dict[str, Any]) -> str:
    """The file digest a recipe records, in the manifest's form: ``blake3`` (``blake3:<hex>``) or,
    in a recipe from before BLAKE3, ``sha256``; exactly one of them."""
    named = [key for key in ("blake3", "sha256") if key in data]
    if len(named) != 1:
        raise RecipeError(f"a recipe names its file's digest as exactly one of 'blake3' and 'sha256', got {named}")
    value = data[named[0]]
    if not (isinstance(value, str) and len(value) == 64 and _is_hex(value)):
        raise RecipeError(f"recipe {named[0]!r} must be 64 hex digits, got {value!r:.80}")
    value = value.lower()
    digest = blake3_digest(value) if named[0] == "blake3" else value
    assert is_blake3(digest) or is_sha256(digest)
    return digest


def _well_formed_chunks(raw_chunks: list[Any], size: int, max_size: int) -> tuple[tuple[bytes, int], ...] | None:
    """``FileRecipe.from_dict``'s chunks when every one passes its checks, tested a column at a time
    (the ids' types and lengths, one regular expression over all ids, the lengths' types and
    bounds, their sum) rather than per chunk in Python: a server parses a 1 GiB file's recipe
    (~16k chunks) holding its interpreter lock, and the chunk-by-chunk loop took 11.6 ms of it
    (this, 7.7). None if any check fails (or an item is not exactly a list): the caller's loop then
    names the first fault."""
    if not raw_chunks:
        return () if size == 0 else None
    if set(map(type, raw_chunks)) != {list} or set(map(len, raw_chunks)) != {2}:
        return None
    hexids, lengths = zip(*raw_chunks)
    if set(map(type, hexids)) != {str} or set(map(len, hexids)) != {2 * CHUNK_ID_SIZE}:
        return None
    if set(map(type, lengths)) != {int} or min(lengths) <= 0 or max(lengths) > max_size or sum(lengths) != size:
        return None  # lengths are positive: a running total passes size only if the sum does
    joined = "".join(hexids)
    if not _is_hex(joined):
        return None
    return tuple(zip(map(bytes.fromhex, hexids), lengths))


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None  # a regex: 10x a per-character loop on a 16k-chunk recipe


class ChunkBatch(list[tuple[bytes, memoryview]]):
    """One block's final chunks, ``(chunk id, read-only view of its bytes)`` in file order, and
    ``span``: one view of all their bytes back to back (a block's chunks are consecutive in it),
    so a consumer that copies them can do it in one call rather than one per chunk."""

    __slots__ = ("span",)

    def __init__(self, chunks: list[tuple[bytes, memoryview]], span: memoryview) -> None:
        super().__init__(chunks)
        self.span = span


class FileChunker:
    """One streaming pass over a file: iterate for batches of ``(chunk id, chunk bytes)``
    (``ChunkBatch``), one batch per block read, in file order; after the last batch ``size`` and
    ``digest`` (the whole file's BLAKE3, ``blake3:<hex>``) are set.

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
        self.digest = ""
        self._started = False

    def __iter__(self) -> Iterator[ChunkBatch]:
        if self._started:
            raise RuntimeError("a FileChunker makes one pass; make another for a second")
        self._started = True
        return self._batches()

    def _batches(self) -> Iterator[ChunkBatch]:
        reader = _BlockPipeline(self.path, self.block_size, self.params)
        done: list[bytearray] = []  # blocks already handed out, oldest first; recycled two batches on
        try:
            while True:
                block, batch, eof = reader.next_block()
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
        self.size, self.digest = reader.size, reader.hexdigest()


class _BlockPipeline:
    """Reads a file in blocks and cuts them, in four threads so that the stages overlap on
    separate cores: one reads (into reused blocks), one computes the whole file's BLAKE3 (on
    several threads per block, ``max_threads``), one finds the FastCDC cut points, one computes
    the chunks' blake3 ids; the consumer (``FileChunker``'s caller) only stores or sends them.
    File reads, blake3 and pyfastcdc's scan all release the GIL, so with free cores the pipeline
    runs at the pace of its slowest stage (the FastCDC scan, ~0.3 CPU s/GiB; a whole-file sha256
    here was ~0.6 s/GiB even with SHA-NI) instead of the sum of them. Blocks flow in order through bounded queues
    (``READ_AHEAD`` each), so memory stays at a few dozen MiB for any file.

    Each block is a bytearray with ``max_size`` free bytes in front, where the cutting thread
    copies the tail of the previous block that was not cut yet (a chunk is cut only when at
    least ``max_size`` bytes follow its start, or the file ends), so the cut points are exactly
    those of FastCDC over the whole file at once. Blocks handed back through ``recycle`` are
    filled again (no new allocation, no page faults)."""

    def __init__(self, path: str, block_size: int, params: ChunkingParams) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._block_size = block_size
        self._params = params
        self._headroom = params.max_size
        import blake3

        from tracklet.core.digests import blake3_threads

        self._file_hash = blake3.blake3(max_threads=blake3_threads(blake3))  # 1 in a forked child (Rayon's pool)
        self.size = 0
        self._stop = threading.Event()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._read: queue.Queue[Any] = queue.Queue(READ_AHEAD)
        self._hashed: queue.Queue[Any] = queue.Queue(READ_AHEAD)
        self._cut: queue.Queue[Any] = queue.Queue(READ_AHEAD)
        self._ids: queue.Queue[Any] = queue.Queue(READ_AHEAD)
        self._threads = [threading.Thread(target=target, name=f"tracklet-chunk-{name}", daemon=True)
                         for name, target in (("reader", self._run_reader), ("digest", self._run_digest),
                                              ("cutter", self._run_cutter), ("ids", self._run_ids))]
        for thread in self._threads:
            threads.start(thread)

    def _run_reader(self) -> None:
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
                view.release()
                self._put(self._read, (block, count, eof))
        except BaseException as exc:  # noqa: BLE001 - handed down the pipeline, the consumer raises it
            self._put(self._read, exc)

    def _run_digest(self) -> None:
        while not self._stop.is_set():
            item = self._get(self._read)
            if isinstance(item, tuple):
                block, count, eof = item
                with memoryview(block) as view:
                    self._file_hash.update(view[self._headroom : self._headroom + count])
                self.size += count
            self._put(self._hashed, item)
            if not isinstance(item, tuple) or item[2]:
                return

    def _run_cutter(self) -> None:
        p = self._params
        try:
            import pyfastcdc

            cdc = pyfastcdc.FastCDC(p.avg_size, min_size=p.min_size, max_size=p.max_size,
                                    normalized_chunking=p.normalization)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - the consumer raises it
            self._put(self._cut, exc)
            return
        headroom = self._headroom
        carry: memoryview = memoryview(b"")
        while not self._stop.is_set():
            item = self._get(self._hashed)
            if not isinstance(item, tuple):
                self._put(self._cut, item)
                return
            block, count, eof = item
            try:
                start = headroom - len(carry)
                block[start:headroom] = carry
                view = memoryview(block)[start : headroom + count].toreadonly()
                cuts, tail = _cut_points(cdc, view, p.max_size, eof)
                carry = view[tail:]
            except BaseException as exc:  # noqa: BLE001 - the consumer raises it
                self._put(self._cut, exc)
                return
            self._put(self._cut, (block, view, cuts, eof))
            del view, block
            if eof:
                return

    def _get(self, source: queue.Queue[Any]) -> Any:
        while not self._stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        return RuntimeError("the chunking pipeline was closed")

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        while not self._stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run_ids(self) -> None:
        try:
            import blake3

            hasher = blake3.blake3
        except BaseException as exc:  # noqa: BLE001 - the consumer raises it
            self._put(self._ids, exc)
            return
        while not self._stop.is_set():
            item = self._get(self._cut)
            if not isinstance(item, tuple):
                self._put(self._ids, item)
                return
            block, view, cuts, eof = item
            try:
                batch = ChunkBatch([(hasher(chunk).digest(), chunk) for chunk in (view[o : o + n] for o, n in cuts)],
                                   view[cuts[0][0] : cuts[-1][0] + cuts[-1][1]] if cuts else view[:0])
            except BaseException as exc:  # noqa: BLE001 - the consumer raises it
                self._put(self._ids, exc)
                return
            self._put(self._ids, (block, batch, eof))
            del view, block, batch, item
            if eof:
                return

    def next_block(self) -> tuple[bytearray, ChunkBatch, bool]:
        """The next block, its final chunks (blake3 id, read-only view of the bytes) in order, and
        whether the file ends there."""
        item = self._ids.get()
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
        """The whole file's digest in the manifest's form (``blake3:<hex>``)."""
        return blake3_digest(self._file_hash.hexdigest())

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            threads.join(thread)  # in slices on the main thread (core/threads.py)
        self._file.close()


def _cut_points(cdc: Any, view: memoryview, max_size: int, eof: bool) -> tuple[list[tuple[int, int]], int]:
    """The ``(offset, length)`` of the chunks of ``view`` that are final, and where the tail to
    carry over to the next block starts."""
    cuts: list[tuple[int, int]] = []
    end = len(view)
    for chunk in cdc.cut_buf(view):
        if not eof and end - chunk.offset < max_size:
            return cuts, chunk.offset
        cuts.append((chunk.offset, chunk.length))
    return cuts, end


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
    return FileRecipe(size=chunker.size, digest=chunker.digest, chunks=tuple(chunks), params=params)
