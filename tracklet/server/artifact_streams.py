"""The BLAKE3 of a large file computed while its chunks arrive, so registering it does not read the
whole file back at the end (docs/artifacts.md, "Server mode").

A client streaming a file's chunks (``remote.ChunkStreamer``) names the file's **stream** (a random
id) and numbers its **segments** in its "which chunks do you lack?" queries: each query lists a
segment's chunk ids in file order, repeats included. The file's BLAKE3 (the digest of a chunked
file, ``tracklet.core.digests``) and the sequence of ids hashed advance chunk by chunk, in file
order, two ways: from a pack's checked bytes while they are still in memory (``received``, on
the thread that stored the pack: every chunk of it that continues the file where the hash stands),
and, for what that leaves (a pack that arrived ahead of one it follows, a chunk the project held
before), in the background once the project holds all of a segment's chunks (the query's answer
says which it lacks; the packs stored since tell which arrived, without asking the database),
read back from the packs just written (the page cache, on a directory) into one reused buffer. When the client
registers the file with that stream, the server uses that digest only if the ids hashed are exactly
the recipe's chunk ids, in order (and the file is claimed by its BLAKE3: an older client's sha256
file is read back); otherwise (a stream this process never saw, a server restarted, another
process of a deployment, a gap, a read error) it reads the file back as before. So the check is the
same either way: the server's own stored chunk bytes, in the recipe's order, must hash to the
file's digest; the stream only moves that work off the end of the upload.

A pack that arrives ahead of chunks it follows (the client sends several segments at once) is
kept in memory, its buffer lent by the route (``_Hold``), until the hash has passed the segments
that wait for its chunks, so they are hashed from memory too: at most ``MAX_HELD_BYTES`` for all
streams (past it, read back), and given up when a stream is registered, dropped, broken or quiet
for ``HOLD_SECONDS``.

Bounded: at most ``MAX_STREAMS`` streams per process (idle ones dropped after ``IDLE_SECONDS``),
``MAX_PENDING_SEGMENTS`` segments waiting per stream (more and the stream is dropped: the
registration reads back), one read buffer per hashing worker, ``WORKERS`` workers, and the held
packs' ``MAX_HELD_BYTES``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tracklet.core.digests import FileHasher

#: Streams followed at once per server process; a new one beyond that is not followed.
MAX_STREAMS = 64
#: Segments announced but not hashed yet, per stream (a client has at most 4 batches of 32 MiB in
#: flight: 3 being sent, 1 being filled). Memory: ~70 kB of ids per segment.
MAX_PENDING_SEGMENTS = 8
#: A stream nobody announced a segment for or registered in this long is forgotten.
IDLE_SECONDS = 600.0
#: Threads hashing streams (each stream is hashed by one at a time, in order).
WORKERS = 2
#: Pack bytes kept in memory, all streams together, for packs that arrived ahead of the chunks
#: they follow (a client sends 3 segments at once: two or three 32 MiB segments run ahead of the
#: one being hashed). Past it, such a pack's chunks are read back when the hash reaches them.
MAX_HELD_BYTES = 96 << 20
#: A stream with no query for this long gives up the packs it holds (its client may be gone).
HOLD_SECONDS = 30.0

_STREAM_ID = re.compile(r"[0-9a-f]{32}")

#: ``read(project, chunk ids)``: the chunks' bytes in order, or None if the project lacks one yet.
ChunkReader = Callable[[str, list[bytes]], "Iterator[memoryview] | None"]
#: A received chunk's checked bytes: ``(its pack's bytes, offset, length)``. Chunks that follow one
#: another in the file and in their pack are then hashed in one ``update`` (a pack's chunks mostly
#: do): one call, and one release of the interpreter lock, per run instead of per ~64 KiB chunk.
Piece = tuple[memoryview, int, int]


def is_stream_id(value: object) -> bool:
    return isinstance(value, str) and _STREAM_ID.fullmatch(value) is not None


class _Hold:
    """A stored pack's checked chunk bytes kept for the streams that will hash them; ``release``
    (the route's: its buffer goes back to the pool) runs once, when the last user lets go."""

    __slots__ = ("chunks", "size", "release", "users", "counted")

    def __init__(self, chunks: dict[bytes, Piece], size: int, release: Callable[[], None] | None) -> None:
        self.chunks = chunks
        self.size = size
        self.release = release
        self.users = 1  # the call that stores the pack
        self.counted = False  # in ``FileStreams.held_bytes``


@dataclass
class _Stream:
    project: str
    content: Any = field(default_factory=lambda: FileHasher("blake3", threaded=False))  # the file's bytes so far, fed a chunk at a time
    ids: Any = field(default_factory=hashlib.sha256)  # of the chunk ids hashed so far, concatenated
    chunks: int = 0
    size: int = 0
    next_segment: int = 0
    position: int = 0  # chunks of segment ``next_segment`` hashed so far
    pending: dict[int, list[bytes]] = field(default_factory=dict)  # segment -> its chunk ids
    waiting: dict[int, set[bytes]] = field(default_factory=dict)  # segment -> its chunks not arrived yet
    broken: bool = False  # a gap or a read error: the registration reads the file back
    closed: bool = False  # no longer followed (registered, dropped): holds nothing more
    touched: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while hashing
    scheduled: bool = False
    again: bool = False
    held: list[tuple[int, _Hold]] = field(default_factory=list)  # (the last segment that waits for it, pack)
    ahead: dict[bytes, Piece] = field(default_factory=dict)  # the held packs' chunks


class FileStreams:
    """Streams being hashed in one server process (see the module)."""

    def __init__(self, read: ChunkReader) -> None:
        self._read = read
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._lock = threading.Lock()
        self._pool: Any = None
        self.reads_avoided = 0  # registrations answered from a stream (for tests and benchmarks)
        self.bytes_read_back = 0  # chunk bytes hashed by reading them back from packs (the rest: from memory)
        self.held_bytes = 0  # of the packs held (``_Hold``)

    def announce(self, project: str, stream: str, segment: int, chunk_ids: list[bytes], lacking: set[bytes]) -> None:
        """Segment ``segment`` of ``stream`` is ``chunk_ids`` (in file order), of which the project
        lacks ``lacking``; hash it once they arrived."""
        now = time.monotonic()
        dropped: list[_Stream] = []
        ready = False
        with self._lock:
            key = (project, stream)
            state = self._streams.get(key)
            if state is None:
                for old_key, old in list(self._streams.items()):
                    if now - old.touched > IDLE_SECONDS:
                        dropped.append(self._streams.pop(old_key))
                if len(self._streams) >= MAX_STREAMS:
                    state = None  # not followed: its registration reads the file back
                else:
                    state = self._streams[key] = _Stream(project)
            if state is not None:
                state.touched = now
                if segment < state.next_segment or segment in state.pending:
                    pass  # a query sent again
                elif len(state.pending) >= MAX_PENDING_SEGMENTS:
                    state.broken = True
                    state.pending.clear()
                    state.waiting.clear()
                    dropped.append(state)
                else:
                    state.pending[segment] = list(chunk_ids)
                    state.waiting[segment] = set(lacking)
                    ready = segment == state.next_segment and not lacking
        for old in dropped:
            self._let_go(old)
        if ready and state is not None:
            self._schedule(state)

    def arrived(self, project: str, chunk_ids: list[bytes]) -> None:
        """``chunk_ids`` of ``project`` were stored: hash the segments that are complete now."""
        ready = []
        with self._lock:
            for (owner, _), state in self._streams.items():
                if owner != project or state.broken or not state.waiting:
                    continue
                for waiting in state.waiting.values():
                    waiting.difference_update(chunk_ids)
                if not state.waiting.get(state.next_segment, True):
                    ready.append(state)
        for state in ready:
            self._schedule(state)

    def forget(self, project: str, stream: str) -> None:
        """Drop ``stream`` (its file was registered already)."""
        with self._lock:
            state = self._streams.pop((project, stream), None)
        if state is not None:
            self._let_go(state)

    def digest(self, project: str, stream: str, chunk_ids: list[bytes]) -> tuple[str, int] | None:
        """``(blake3:<hex>, size)`` of the file streamed as ``stream`` if the chunks hashed for it are
        exactly ``chunk_ids`` in order (catching up first); None otherwise. Forgets the stream."""
        with self._lock:
            state = self._streams.pop((project, stream), None)
        if state is None:
            return None
        with state.lock:
            try:
                self._advance(state, force=True)  # what arrived through another process is in the database
                if state.broken or state.pending or state.chunks != len(chunk_ids):
                    return None
                if state.ids.digest() != hashlib.sha256(b"".join(chunk_ids)).digest():
                    return None
                self.reads_avoided += 1
                return state.content.hexdigest(), state.size
            finally:
                state.closed = True
                self._release(state, everything=True)

    def _schedule(self, state: _Stream) -> None:
        with self._lock:
            if state.scheduled:
                state.again = True
                return
            state.scheduled = True
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="tracklet-file-digest")
        try:
            self._pool.submit(self._run, state)
        except RuntimeError:  # shutting down: the registration reads back
            with self._lock:
                state.scheduled = False

    def _run(self, state: _Stream) -> None:
        while True:
            with state.lock:
                self._advance(state)
            with self._lock:
                if not state.again:
                    state.scheduled = False
                    return
                state.again = False

    def received(self, project: str, chunks: dict[bytes, Piece], size: int,
                 release: Callable[[], None] | None = None) -> None:
        """A pack of ``project`` of ``size`` bytes with ``chunks`` (id -> its checked bytes: a
        ``Piece`` of a buffer the caller lends) is being stored: hash those that continue a stream of the project
        where its hash stands, while they are in memory, and keep the pack for streams whose
        segments wait for more of its chunks (``_Hold``). ``release`` is called exactly once, now or
        when no stream needs the buffer any more."""
        hold = _Hold(chunks, size, release)
        try:
            now = time.monotonic()
            with self._lock:
                states = [state for (owner, _), state in self._streams.items()
                          if owner == project and not state.broken and state.pending]
                quiet = [state for state in self._streams.values()
                         if state.held and now - state.touched > HOLD_SECONDS]
            for state in quiet:
                self._let_go(state, close=False)
            for state in states:
                with state.lock:  # another pack's thread may be hashing it: then from where it stops
                    self._hash_from(state, chunks)
                    self._keep(state, hold)
        finally:
            self._unuse(hold)

    def _hash_from(self, state: _Stream, chunks: dict[bytes, Piece]) -> None:
        """Hash the chunks that continue ``state`` and are in ``chunks`` or a pack it holds
        (under ``state.lock``)."""
        ahead = state.ahead
        while not state.broken:
            with self._lock:
                ids = state.pending.get(state.next_segment)
            if ids is None:
                return
            start = position = state.position
            size = 0
            run: memoryview | None = None  # the bytes of the run of adjacent chunks not hashed yet
            run_start = run_end = 0
            while position < len(ids):
                piece = chunks.get(ids[position])
                if piece is None and (piece := ahead.get(ids[position])) is None:
                    break
                data, offset, length = piece
                if data is not run or offset != run_end:
                    if run is not None:
                        state.content.update(run[run_start:run_end])
                    run, run_start = data, offset
                run_end = offset + length
                size += length
                position += 1
            if run is not None:
                state.content.update(run[run_start:run_end])
            self._hashed(state, ids, start, position, size)
            if position < len(ids):
                return

    def _keep(self, state: _Stream, hold: _Hold) -> None:
        """Hold pack ``hold`` for ``state`` if the part of the file not hashed yet has one of its
        chunks and the bytes held stay within ``MAX_HELD_BYTES`` (under ``state.lock``)."""
        with self._lock:
            last = None
            for segment in sorted(state.pending, reverse=True):  # the last segment that needs it
                if segment < state.next_segment:
                    break
                ids = state.pending[segment]
                if not hold.chunks.keys().isdisjoint(ids[state.position:] if segment == state.next_segment else ids):
                    last = segment
                    break
            if last is None or state.closed or state.broken:
                return
            if not hold.counted:
                if self.held_bytes + hold.size > MAX_HELD_BYTES:
                    return
                hold.counted = True
                self.held_bytes += hold.size
            hold.users += 1
        state.held.append((last, hold))
        state.ahead.update(hold.chunks)

    def _release(self, state: _Stream, *, everything: bool = False) -> None:
        """Let go of the packs ``state`` holds that no segment left waits for (``everything``: all)
        (under ``state.lock``)."""
        if not state.held:
            return
        kept: list[tuple[int, _Hold]] = []
        for last, hold in state.held:
            if not everything and last >= state.next_segment:
                kept.append((last, hold))
                continue
            for cid, piece in hold.chunks.items():
                if state.ahead.get(cid) is piece:
                    del state.ahead[cid]
            self._unuse(hold)
        state.held = kept

    def _let_go(self, state: _Stream, *, close: bool = True) -> None:
        """A stream gives up its packs (``close``: it is no longer followed, and holds no more)."""
        with state.lock:
            state.closed = state.closed or close
            self._release(state, everything=True)

    def _unuse(self, hold: _Hold) -> None:
        with self._lock:
            hold.users -= 1
            if hold.users:
                return
            if hold.counted:
                self.held_bytes -= hold.size
        if hold.release is not None:
            hold.release()

    def _hashed(self, state: _Stream, ids: list[bytes], start: int, end: int, size: int) -> None:
        """Chunks ``ids[start:end]`` of segment ``next_segment`` are in the hash (under ``state.lock``)."""
        state.ids.update(b"".join(ids[start:end]))
        state.chunks += end - start
        state.size += size
        if end < len(ids):
            state.position = end
            return
        with self._lock:
            state.pending.pop(state.next_segment, None)
            state.waiting.pop(state.next_segment, None)
            state.next_segment += 1
            state.position = 0
        self._release(state)

    def _advance(self, state: _Stream, *, force: bool = False) -> None:
        """Hash the rest of the pending segments that follow on from what is hashed and whose
        chunks all arrived, read back (``force``: ask the database whether they are held) (under
        ``state.lock``)."""
        while not state.broken:
            with self._lock:
                ids = state.pending.get(state.next_segment)
                waiting = state.waiting.get(state.next_segment)
            if ids is None:
                return
            if state.ahead:
                self._hash_from(state, {})
                if state.pending.get(state.next_segment) is not ids:
                    continue  # the segment is done: the next
            if waiting and not force:
                return
            start = state.position
            try:
                pieces = self._read(state.project, ids[start:])
                if pieces is None:
                    return  # some chunk has not arrived yet: a later pack wakes it
                size = 0
                for piece in pieces:
                    state.content.update(piece)
                    size += len(piece)
            except Exception:  # noqa: BLE001 - a damaged or vanished pack: read back at registration
                state.broken = True
                self._release(state, everything=True)
                return
            self.bytes_read_back += size
            self._hashed(state, ids, start, len(ids), size)
