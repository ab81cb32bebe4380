"""The BLAKE3 of a large file computed while its chunks arrive, so registering it does not read the
whole file back at the end (docs/artifacts.md, "Server mode").

A client streaming a file's chunks (``remote.ChunkStreamer``) names the file's **stream** (a random
id) and numbers its **segments** in its "which chunks do you lack?" queries: each query lists a
segment's chunk ids in file order, repeats included. Here, in the background, each segment is
hashed in order as soon as the project holds all its chunks (the query's answer says which it
lacks; the packs stored since tell which arrived, without asking the database): read back from the packs just written
(the page cache, on a directory) into one reused buffer, the file's BLAKE3 (the digest of a chunked
file, ``tracklet.core.digests``) and the sequence of ids hashed both advanced. When the client
registers the file with that stream, the server uses that digest only if the ids hashed are exactly
the recipe's chunk ids, in order (and the file is claimed by its BLAKE3: an older client's sha256
file is read back); otherwise (a stream this process never saw, a server restarted, another
process of a deployment, a gap, a read error) it reads the file back as before. So the check is the
same either way: the server's own stored chunk bytes, in the recipe's order, must hash to the
file's digest; the stream only moves that work off the end of the upload.

Bounded: at most ``MAX_STREAMS`` streams per process (idle ones dropped after ``IDLE_SECONDS``),
``MAX_PENDING_SEGMENTS`` segments waiting per stream (more and the stream is dropped: the
registration reads back), one read buffer per hashing worker, ``WORKERS`` workers.
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

_STREAM_ID = re.compile(r"[0-9a-f]{32}")

#: ``read(project, chunk ids)``: the chunks' bytes in order, or None if the project lacks one yet.
ChunkReader = Callable[[str, list[bytes]], "Iterator[memoryview] | None"]


def is_stream_id(value: object) -> bool:
    return isinstance(value, str) and _STREAM_ID.fullmatch(value) is not None


@dataclass
class _Stream:
    project: str
    content: Any = field(default_factory=lambda: FileHasher("blake3", threaded=False))  # the file's bytes so far, fed a chunk at a time
    ids: Any = field(default_factory=hashlib.sha256)  # of the chunk ids hashed so far, concatenated
    chunks: int = 0
    size: int = 0
    next_segment: int = 0
    pending: dict[int, list[bytes]] = field(default_factory=dict)  # segment -> its chunk ids
    waiting: dict[int, set[bytes]] = field(default_factory=dict)  # segment -> its chunks not arrived yet
    broken: bool = False  # a gap or a read error: the registration reads the file back
    touched: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while hashing
    scheduled: bool = False
    again: bool = False


class FileStreams:
    """Streams being hashed in one server process (see the module)."""

    def __init__(self, read: ChunkReader) -> None:
        self._read = read
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._lock = threading.Lock()
        self._pool: Any = None
        self.reads_avoided = 0  # registrations answered from a stream (for tests and benchmarks)

    def announce(self, project: str, stream: str, segment: int, chunk_ids: list[bytes], lacking: set[bytes]) -> None:
        """Segment ``segment`` of ``stream`` is ``chunk_ids`` (in file order), of which the project
        lacks ``lacking``; hash it once they arrived."""
        now = time.monotonic()
        with self._lock:
            key = (project, stream)
            state = self._streams.get(key)
            if state is None:
                for old_key, old in list(self._streams.items()):
                    if now - old.touched > IDLE_SECONDS:
                        del self._streams[old_key]
                if len(self._streams) >= MAX_STREAMS:
                    return  # not followed: its registration reads the file back
                state = self._streams[key] = _Stream(project)
            state.touched = now
            if segment < state.next_segment or segment in state.pending:
                return  # a query sent again
            if len(state.pending) >= MAX_PENDING_SEGMENTS:
                state.broken = True
                state.pending.clear()
                state.waiting.clear()
                return
            state.pending[segment] = list(chunk_ids)
            state.waiting[segment] = set(lacking)
            ready = segment == state.next_segment and not lacking
        if ready:
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
            self._streams.pop((project, stream), None)

    def digest(self, project: str, stream: str, chunk_ids: list[bytes]) -> tuple[str, int] | None:
        """``(blake3:<hex>, size)`` of the file streamed as ``stream`` if the chunks hashed for it are
        exactly ``chunk_ids`` in order (catching up first); None otherwise. Forgets the stream."""
        with self._lock:
            state = self._streams.pop((project, stream), None)
        if state is None:
            return None
        with state.lock:
            self._advance(state, force=True)  # what arrived through another process is in the database
            if state.broken or state.pending or state.chunks != len(chunk_ids):
                return None
            if state.ids.digest() != hashlib.sha256(b"".join(chunk_ids)).digest():
                return None
            self.reads_avoided += 1
            return state.content.hexdigest(), state.size

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

    def _advance(self, state: _Stream, *, force: bool = False) -> None:
        """Hash the pending segments that follow on from what is hashed and whose chunks all
        arrived (``force``: ask the database whether they are held) (under ``state.lock``)."""
        while not state.broken:
            with self._lock:
                ids = state.pending.get(state.next_segment)
                waiting = state.waiting.get(state.next_segment)
            if ids is None or (waiting and not force):
                return
            try:
                pieces = self._read(state.project, ids)
                if pieces is None:
                    return  # some chunk has not arrived yet: a later pack wakes it
                size = 0
                for piece in pieces:
                    state.content.update(piece)
                    size += len(piece)
            except Exception:  # noqa: BLE001 - a damaged or vanished pack: read back at registration
                state.broken = True
                return
            with self._lock:
                state.pending.pop(state.next_segment, None)
                state.waiting.pop(state.next_segment, None)
                state.next_segment += 1
                state.ids.update(b"".join(ids))
                state.chunks += len(ids)
                state.size += size
