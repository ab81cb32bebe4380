"""Which large local blob files the server has checked against their sha256, so that a file is
hashed once, not on every request: ``VerifiedFiles`` (``media_blobs.MediaBlobs.served``). A
browser seeking through a 2 GiB video sends a ``Range`` request per seek; hashing the whole file
for each cost 2 GiB of reading and hashing per request.

A check is remembered under what the file system says of the file: device, inode, size, mtime
and ctime, in nanoseconds. A write changes mtime and ctime, a file renamed over the path has
another inode, and ctime can't be set back (``utime`` sets it to now), so a file damaged or
replaced after its check no longer matches and is hashed again (a damaged one is refused: the
routes answer 404). A check is not remembered while the file changed less than ``SETTLED_NS``
before it began: a change within the same timestamp tick as the check would leave every field as
it was (git's "racy clean" index entries).

What no field shows, bits rotting beneath the file system, is caught by the pieces: the check
also keeps a 16-byte BLAKE3 hash of each ``HASHED_PIECE`` (256 KiB) of the file, and a response
served from a checked file reads whole pieces and compares each with its hash before sending any
of its bytes (:class:`PieceReader`): a ``Range`` request reads the one or two pieces it covers.
A piece that differs ends the response there (the headers are out: the client sees a cut-off
transfer, never the damaged bytes) and drops the file's check, so the next request hashes it
whole and is refused. At most ``max_entries`` checks are kept, and at most ``max_piece_bytes`` of
piece hashes (64 KiB per GiB of file), the least recently used first out.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: A file changed less than this before its check began is checked again on its next request
#: (2 s: the coarsest timestamps in use, FAT's, tick in 2 s; ext4, xfs and btrfs in nanoseconds).
SETTLED_NS = 2_000_000_000
DEFAULT_MAX_ENTRIES = 4096
#: Piece hashes kept for all checks together (a 2 GiB file's take 128 KiB).
DEFAULT_MAX_PIECE_BYTES = 64 << 20
PIECE = 1 << 20
HASHED_PIECE = 256 << 10  # a 64 KiB range reads one piece, or two where it crosses a boundary
PIECE_HASH_BYTES = 16

_Identity = tuple[int, int, int, int, int]


def _identity(stat: os.stat_result) -> _Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def piece_hash(data: bytes | bytearray | memoryview) -> bytes:
    """The hash a piece is checked against (BLAKE3, 16 bytes: rot is not an adversary; a write
    is caught by the file's identity)."""
    import blake3  # type: ignore[import-not-found,unused-ignore]

    return bytes(blake3.blake3(data).digest(length=PIECE_HASH_BYTES))


class _Hashers:
    """``update`` feeds the file's sha256 and the hash of each ``HASHED_PIECE`` of it."""

    def __init__(self) -> None:
        import hashlib

        self.sha256 = hashlib.sha256()
        self.pieces = bytearray()
        self._piece = bytearray()

    def update(self, data: memoryview) -> None:
        self.sha256.update(data)
        while len(data):
            if not self._piece and len(data) >= HASHED_PIECE:
                self.pieces += piece_hash(data[:HASHED_PIECE])
                data = data[HASHED_PIECE:]
                continue
            take = HASHED_PIECE - len(self._piece)
            self._piece += data[:take]
            data = data[take:]
            if len(self._piece) == HASHED_PIECE:
                self.pieces += piece_hash(self._piece)
                self._piece.clear()

    def finish(self) -> bytes:
        if self._piece:
            self.pieces += piece_hash(self._piece)
            self._piece.clear()
        return bytes(self.pieces)


class VerifiedFiles:
    """Local files found to hold the bytes their sha256 names, remembered while unchanged (see
    the module). Thread-safe: routes call ``holds`` from the server's worker threads, and
    requests for one file arriving together wait for one hashing."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, settled_ns: int = SETTLED_NS,
                 max_piece_bytes: int = DEFAULT_MAX_PIECE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_piece_bytes = max_piece_bytes
        self.settled_ns = settled_ns
        self.hashed_files = 0  # files hashed so far (every check that was not remembered)
        self.damaged_pieces = 0  # pieces found to differ from their check while served
        self._checked: OrderedDict[tuple[str, str], tuple[Hashable, bytes]] = OrderedDict()
        self._piece_bytes = 0
        self._lock = threading.Lock()
        self._hashing: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._checked)

    @property
    def piece_bytes(self) -> int:
        """The bytes of piece hashes held for all checks (bounded by ``max_piece_bytes``)."""
        with self._lock:
            return self._piece_bytes

    def holds(self, path: Path, digest: str) -> bool:
        """Whether the file at ``path`` holds the bytes whose sha256 is ``digest`` (False when it
        can't be read): hashed, unless it was checked before and is unchanged since."""
        return self.pieces(path, digest) is not None

    def pieces(self, path: Path, digest: str) -> bytes | None:
        """The piece hashes of the file at ``path`` (for :class:`PieceReader`) if it holds the
        bytes whose sha256 is ``digest``, else None: as ``holds``."""
        key = (str(path), digest)
        found = self._remembered(key, path)
        if found is not None:
            return found
        with self._one_at_a_time(key):
            found = self._remembered(key, path)  # checked by the request this one waited for
            if found is not None:
                return found
            return self._check(key, path, digest)

    def object_checked(self, name: str, digest: str, identity: Hashable) -> bool:
        """Whether the object-store blob ``name`` was found to hold the bytes whose sha256 is
        ``digest`` while the store said ``identity`` of it (``FsspecBlobStore.object_identity``:
        an overwrite changes its ETag), so that it need not be hashed whole again. An object
        store keeps its own checksums of what it holds, so no pieces are kept: what rot a disk
        hides from its file system, a store's checksums find."""
        with self._lock:
            found = self._checked.get((name, digest))
            if found is None or found[0] != identity:
                return False
            self._checked.move_to_end((name, digest))
            return True

    def object_hashed(self, name: str, digest: str, identity: Hashable | None, holds: bool) -> None:
        """``name`` was hashed whole: remembered if it holds ``digest``'s bytes and the store said
        ``identity`` of it before and after, else forgotten (hashed again next time)."""
        with self._lock:
            self.hashed_files += 1
        if holds and identity is not None:
            self._remember((name, digest), identity, b"")
        else:
            self._forget((name, digest))

    def reader(self, path: Path, digest: str, pieces: bytes) -> PieceReader:
        """A :class:`PieceReader` of the file, whose damage found drops its check."""
        return PieceReader(path, pieces, lambda: self._damaged((str(path), digest)))

    def _remembered(self, key: tuple[str, str], path: Path) -> bytes | None:
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return None
        with self._lock:
            found = self._checked.get(key)
            if found is None or found[0] != identity:
                return None
            self._checked.move_to_end(key)
            return found[1]

    def _check(self, key: tuple[str, str], path: Path, digest: str) -> bytes | None:
        from tracklet.core.filehash import hash_handle

        began = time.time_ns()
        hashers = _Hashers()
        try:
            with open(path, "rb", buffering=0) as handle:
                before = _identity(os.fstat(handle.fileno()))
                hash_handle(handle, hashers, None, PIECE)
                after = _identity(os.fstat(handle.fileno()))
        except OSError:
            return None
        with self._lock:
            self.hashed_files += 1
        holds = hashers.sha256.hexdigest() == digest
        pieces = hashers.finish()
        settled = began - max(before[3], before[4]) >= self.settled_ns
        if holds and settled and after == before:  # else: checked again next time
            self._remember(key, before, pieces)
        else:
            self._forget(key)
        return pieces if holds else None

    def _remember(self, key: tuple[str, str], identity: Hashable, pieces: bytes) -> None:
        with self._lock:
            old = self._checked.pop(key, None)
            if old is not None:
                self._piece_bytes -= len(old[1])
            self._checked[key] = (identity, pieces)
            self._piece_bytes += len(pieces)
            while len(self._checked) > self.max_entries or (self._piece_bytes > self.max_piece_bytes
                                                            and len(self._checked) > 1):
                self._piece_bytes -= len(self._checked.popitem(last=False)[1][1])

    def _damaged(self, key: tuple[str, str]) -> None:
        with self._lock:
            self.damaged_pieces += 1
        self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            old = self._checked.pop(key, None)
            if old is not None:
                self._piece_bytes -= len(old[1])

    @contextmanager
    def _one_at_a_time(self, key: tuple[str, str]) -> Iterator[None]:
        """Hold the lock of ``key``'s hashing (made on first use, dropped with its last user)."""
        with self._lock:
            lock, users = self._hashing.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._lock:
                users[0] -= 1
                if not users[0]:
                    del self._hashing[key]


class PieceReader:
    """``seek``/``read`` of a checked file that hand out only bytes of pieces found to match
    their hash: each piece a read touches is read whole and compared first (the last one is
    kept, so the 64 KiB reads of a response read each piece once). A piece that differs raises
    ``OSError`` and calls ``on_damage``. Not thread-safe: one per response."""

    def __init__(self, path: Path, pieces: bytes, on_damage: Callable[[], None]) -> None:
        self.path = path
        self._pieces = pieces
        self._on_damage = on_damage
        self._handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._position = 0
        self._piece_index = -1
        self._piece = b""

    def seek(self, position: int) -> int:
        self._position = position
        return position

    def read(self, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            index, offset = divmod(self._position, HASHED_PIECE)
            piece = self._load(index)
            chunk = piece[offset:offset + size]
            if not chunk:
                break
            out += chunk
            self._position += len(chunk)
            size -= len(chunk)
        return bytes(out)

    def _load(self, index: int) -> bytes:
        if index == self._piece_index:
            return self._piece
        if index * PIECE_HASH_BYTES >= len(self._pieces):
            return b""  # past the end of the file as checked
        piece = os.pread(self._handle.fileno(), HASHED_PIECE, index * HASHED_PIECE)
        while len(piece) < HASHED_PIECE and (more := os.pread(self._handle.fileno(), HASHED_PIECE - len(piece),
                                                              index * HASHED_PIECE + len(piece))):
            piece += more  # a short read before the end of the file
        expected = self._pieces[index * PIECE_HASH_BYTES:(index + 1) * PIECE_HASH_BYTES]
        if piece_hash(piece) != expected:
            self._on_damage()
            raise OSError(f"{self.path}: bytes {index * HASHED_PIECE}-{index * HASHED_PIECE + len(piece) - 1} "
                               "differ from the file's check (damaged on disk); not served")
        self._piece_index, self._piece = index, piece
        return piece

    def close(self) -> None:
        self._handle.close()
