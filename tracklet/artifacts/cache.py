"""``BlobCache``: a size-capped, least-recently-used, content-addressed cache of blobs fetched from
a server, shared by every process on the machine.

Layout under the cache's root (``default_cache_dir()``: ``$TRACKLET_ARTIFACT_CACHE_DIR``, else
``$XDG_CACHE_HOME/tracklet/artifacts``, else ``~/.cache/tracklet/artifacts``)::

    blobs/sha256/ab/<digest>   complete, verified blobs (read-only)
    blobs/blake3/ab/<hex>      the same for files kept as chunks, by their ``blake3:<hex>`` digest
    tmp/<reservation>.partial  blobs being written
    cache.sqlite               entries (digest, size, last use), reservations (bytes promised to a
                               writer), and where each chunk of a cached chunked file lies in it
    cache.lock                 flock'd while space is reserved, blobs are published or evicted

The cap (``cap_bytes``; else ``$TRACKLET_ARTIFACT_CACHE_SIZE``, e.g. ``20GB`` or ``5%``; else 10% of
the size of the disk the cache is on) is never exceeded: before a blob is written, its size is
reserved under the lock, evicting least recently used blobs to make room; the bytes on disk (blobs
plus partial writes) never exceed the entries plus the reservations, which never exceed the cap.
A blob larger than the cap, or one there is no room for because every other blob is in use, is
refused with ``CacheFull`` (the caller then reads from the server directly).

Readers are safe against eviction by another process: ``get()`` holds a shared ``flock`` on the
blob file while the caller uses it, and eviction only deletes a blob it can lock exclusively
without waiting. A file materialized from the cache by a hard link keeps its bytes after the blob
is evicted (they are the user's file then, not the cache's).

A file the server keeps as content-defined chunks is cached whole, with its recipe's chunks
recorded (``chunks``: chunk id, blob, offset, length; dropped with the blob), so a later version
of it downloads only the chunks no cached file has (``artifacts/delta.py``).

Durability: a blob's bytes are ``fsync``'d before its rename (``artifacts/durable.py``), so a
power cut never leaves a short blob under its digest for a download to link out. The directory is
not synced: a name lost to a power cut only makes its entry over-count until eviction drops it,
and the blob is fetched again.

In local mode the artifact store's committed blobs are the data itself and are not in any cache;
this is for bytes that can be fetched again. Uploads don't copy into it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tracklet.core import forksafe
from tracklet.core.digests import BLAKE3_PREFIX, file_hasher, is_blake3, is_sha256
from tracklet.artifacts.durable import sync_file
from tracklet.core.processes import pid_alive
from tracklet.errors import ArtifactError

CACHE_DIR_ENV = "TRACKLET_ARTIFACT_CACHE_DIR"
CACHE_SIZE_ENV = "TRACKLET_ARTIFACT_CACHE_SIZE"
DEFAULT_CAP_FRACTION = 0.10
_PIECE = 1 << 20


class CacheFull(ArtifactError):
    """No room for a blob: larger than the cap, or every other blob is in use."""


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tracklet" / "artifacts"


def default_cap(root: Path) -> int:
    """``$TRACKLET_ARTIFACT_CACHE_SIZE`` (bytes, ``20GB``, ``5%`` of the disk), else 10% of the disk."""
    from tracklet.artifacts.sizes import parse_size

    total = shutil.disk_usage(root).total
    text = os.environ.get(CACHE_SIZE_ENV)
    if not text:
        return int(total * DEFAULT_CAP_FRACTION)
    try:
        return parse_size(text, whole=total)
    except ValueError as error:
        raise ArtifactError(f"${CACHE_SIZE_ENV}: {error}") from None


def _flock(handle: IO[Any], mode: int) -> bool:
    """Lock ``handle`` (fcntl flags); False if LOCK_NB was asked and it is held elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a blob open for reading can't be deleted there anyway
        return True
    try:
        fcntl.flock(handle.fileno(), mode)
    except BlockingIOError:
        return False
    return True


class BlobCache:
    """A size-capped LRU cache of sha256-addressed blobs (see the module's docstring).

    A forked child holding one (a ``Pool`` worker's ``Api`` fetching artifacts) opens its own
    SQLite connection and gets a free thread lock at its first use (``core/forksafe.own``): the
    parent's connection is left alone, never used or closed there, and a lock one of the parent's
    threads held as it forked (a download publishing a blob) doesn't stall the child."""

    _db = forksafe.own(lambda cache, parents: cache._connect())
    _thread_lock = forksafe.own(lambda cache, parents: threading.Lock())

    def __init__(self, root: str | os.PathLike | None = None, cap_bytes: int | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.blob_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.cap = cap_bytes if cap_bytes is not None else default_cap(self.root)
        if self.cap < 0:
            raise ArtifactError(f"a cache cap can't be negative: {self.cap}")
        self._thread_lock = threading.Lock()
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._locked():
            self._db.execute("CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                             "last_used REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_used)")
            self._db.execute("CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, "
                             "size INTEGER NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS chunks (chunk_id BLOB NOT NULL, digest TEXT NOT NULL, "
                             "offset INTEGER NOT NULL, length INTEGER NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS chunks_by_id ON chunks (chunk_id)")
            self._db.execute("CREATE INDEX IF NOT EXISTS chunks_by_blob ON chunks (digest)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "cache.sqlite", timeout=60, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # a connection's own setting (WAL is the file's)
        return db

    def close(self) -> None:
        with self._thread_lock:
            self._db.close()

    def __del__(self) -> None:
        # Closed as it goes (an Api's, an artifact's): the connection itself would wait for a full
        # collection (it is in a cycle with its statement cache). Not a forked child's copy: the
        # parent's is left alone.
        try:
            forksafe.close_in_opener(*self.__dict__.get("_own__db", (None, None)))
        except Exception:  # noqa: BLE001 - at interpreter exit (its module's globals gone)
            pass

    # ------------------------------------------------------------ reading

    def path(self, digest: str) -> Path:
        """Where blob ``digest`` lives (whether or not it is there)."""
        if is_blake3(digest):  # a file the server keeps as chunks, cached whole
            hexdigest = digest[len(BLAKE3_PREFIX):]
            return self.root / "blobs" / "blake3" / hexdigest[:2] / hexdigest
        if not is_sha256(digest):
            raise ArtifactError(f"not a sha256 or blake3: digest: {digest!r:.80}")
        return self.blob_dir / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextlib.contextmanager
    def get(self, digest: str) -> Iterator[Path | None]:
        """The blob's path while the block runs (None if it is not cached): it is not evicted
        meanwhile, so the caller can copy or hard-link it. Marks it most recently used."""
        path = self.path(digest)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            yield None
            return
        try:
            _flock(handle, _lock_flag("LOCK_SH"))
            try:
                still_there = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                still_there = False  # evicted between our open and our lock
            if not still_there:
                yield None
                return
            self._touch(digest)
            yield path
        finally:
            handle.close()

    def locate_chunks(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int]]:
        """Where cached files hold these chunks: ``chunk id -> (blob digest, offset, length)``, for
        the ids some cached chunked file contains (its blob may be evicted by the time it is
        read: hold it with ``get`` and check)."""
        ids = list(dict.fromkeys(chunk_ids))
        found: dict[bytes, tuple[str, int, int]] = {}
        with self._thread_lock:
            for start in range(0, len(ids), 500):
                batch = ids[start : start + 500]
                marks = ",".join("?" * len(batch))
                for chunk_id, digest, offset, length in self._db.execute(
                        f"SELECT chunk_id, digest, offset, length FROM chunks WHERE chunk_id IN ({marks})", batch):
                    found.setdefault(bytes(chunk_id), (digest, offset, length))
        return found

    def _touch(self, digest: str) -> None:
        with self._thread_lock:
            self._db.execute("UPDATE entries SET last_used = ? WHERE digest = ?", (time.time(), digest))

    # ------------------------------------------------------------ writing

    def put_file(self, source: str | os.PathLike, digest: str) -> Path:
        """Copy ``source`` in as blob ``digest`` (checked: ``ArtifactError`` if its bytes don't hash
        to it); the blob's path. ``CacheFull`` if it can't fit."""
        size = os.stat(source).st_size
        with open(source, "rb") as handle:
            return self.put_stream(iter(lambda: handle.read(_PIECE), b""), digest, size)

    def put_stream(self, pieces: Iterable[bytes | bytearray | memoryview], digest: str, size: int, *,
                   chunks: Iterable[tuple[bytes, int, int]] = ()) -> Path:
        """Store the bytes of ``pieces`` (exactly ``size`` of them, hashing to ``digest``) as a blob;
        its path. Nothing is visible under the digest unless all of it arrived and matched.
        ``chunks``: ``(chunk id, offset, length)`` of the file's content-defined chunks (its
        recipe), recorded with the blob for ``locate_chunks``."""
        final = self.path(digest)
        if final.is_file():
            self._touch(digest)
            return final
        reservation = self._reserve(size)
        temporary = self.tmp_dir / f"{reservation}.partial"
        try:
            hasher = file_hasher(digest)
            written = 0
            with open(temporary, "xb") as target:
                for piece in pieces:
                    written += len(piece)
                    if written > size:
                        raise ArtifactError(f"blob {digest}: more than the {size:,} bytes announced arrived")
                    hasher.update(piece)
                    target.write(piece)
                if written == size:
                    # On the disk before its rename: after a power cut a name under blobs/ must never
                    # hold short bytes (a download hard-links a cached blob, trusted by its name).
                    sync_file(target)
            if written != size or hasher.hexdigest() != digest:
                raise ArtifactError(f"blob {digest}: got {written:,} bytes with digest {hasher.hexdigest()}, expected "
                                    f"{size:,} bytes with digest {digest}; not cached")
            os.chmod(temporary, 0o444)
            self._publish(reservation, temporary, digest, size, chunks)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self._release(reservation)
            raise
        return final

    def _reserve(self, size: int) -> str:
        """Promise ``size`` bytes to a writer, evicting LRU blobs to make room; its reservation id."""
        if size > self.cap:
            raise CacheFull(f"a blob of {size:,} bytes is larger than the cache's cap ({self.cap:,} bytes)")
        reservation = uuid.uuid4().hex
        with self._locked():
            self._clear_dead_reservations()
            used = self._used()
            if used + size > self.cap:
                used -= self._evict(used + size - self.cap)
            if used + size > self.cap:
                raise CacheFull(f"no room for {size:,} bytes in the cache ({used:,} of {self.cap:,} bytes are held "
                                "by blobs in use or being written)")
            self._db.execute("INSERT INTO reservations (id, pid, size) VALUES (?, ?, ?)",
                             (reservation, os.getpid(), size))
        return reservation

    def _publish(self, reservation: str, temporary: Path, digest: str, size: int,
                 chunks: Iterable[tuple[bytes, int, int]] = ()) -> None:
        final = self.path(digest)
        with self._locked():
            if final.is_file():  # another writer got there first
                temporary.unlink()
            else:
                # Recorded before the rename: a kill in between over-counts (safe), never under-counts;
                # a chunk row naming a blob that isn't there is skipped by its reader.
                self._db.execute("INSERT OR REPLACE INTO entries (digest, size, last_used) VALUES (?, ?, ?)",
                                 (digest, size, time.time()))
                self._db.execute("DELETE FROM chunks WHERE digest = ?", (digest,))
                self._db.executemany("INSERT INTO chunks (chunk_id, digest, offset, length) VALUES (?, ?, ?, ?)",
                                     ((chunk_id, digest, offset, length) for chunk_id, offset, length in chunks))
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, final)
            self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation,))

    def _release(self, reservation: str) -> None:
        with self._locked():
            self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation,))

    def _clear_dead_reservations(self) -> None:
        """Drop the reservations (and partial files) of processes that died mid-write."""
        for reservation, pid in self._db.execute("SELECT id, pid FROM reservations").fetchall():
            if pid != os.getpid() and not pid_alive(pid):
                with contextlib.suppress(OSError):
                    (self.tmp_dir / f"{reservation}.partial").unlink()
                self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation,))

    def _used(self) -> int:
        (entries,) = self._db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()
        (reserved,) = self._db.execute("SELECT coalesce(sum(size), 0) FROM reservations").fetchone()
        return int(entries) + int(reserved)

    # ------------------------------------------------------------ evicting

    def evict_to(self, cap: int) -> int:
        """Evict least recently used blobs (not those in use) until at most ``cap`` bytes are held;
        bytes freed."""
        with self._locked():
            self._clear_dead_reservations()
            excess = self._used() - cap
            return self._evict(excess) if excess > 0 else 0

    def _evict(self, wanted: int) -> int:
        """Remove LRU blobs nobody holds until ``wanted`` bytes are freed (or none is left); freed."""
        freed = 0
        rows = self._db.execute("SELECT digest, size FROM entries ORDER BY last_used, digest").fetchall()
        for digest, size in rows:
            if freed >= wanted:
                break
            if self._remove_blob(digest):
                self._db.execute("DELETE FROM entries WHERE digest = ?", (digest,))
                self._db.execute("DELETE FROM chunks WHERE digest = ?", (digest,))
                freed += size
        return freed

    def _remove_blob(self, digest: str) -> bool:
        path = self.path(digest)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return True  # gone already: only the entry is left to drop
        with handle:
            if not _flock(handle, _lock_flag("LOCK_EX") | _lock_flag("LOCK_NB")):
                return False  # a reader holds it
            path.unlink()
        return True

    # ------------------------------------------------------------ bookkeeping

    def stats(self, *, scan: bool = False) -> dict[str, int]:
        """``entries``, ``bytes`` (held by entries), ``reserved``, ``cap``; with ``scan``, also
        ``disk_bytes``: the sizes of the files under ``blobs/`` and ``tmp/``, summed under the lock
        (so with no eviction or reservation in between)."""
        with self._locked():
            entries, held = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
            (reserved,) = self._db.execute("SELECT coalesce(sum(size), 0) FROM reservations").fetchone()
            result = {"entries": int(entries), "bytes": int(held), "reserved": int(reserved), "cap": self.cap}
            if scan:
                result["disk_bytes"] = sum(p.stat().st_size for base in (self.blob_dir, self.tmp_dir) if base.is_dir()
                                           for p in base.rglob("*") if p.is_file())
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads one at a time, then other processes' through ``cache.lock``;
        the SQLite statements inside run as one transaction."""
        with self._thread_lock, open(self.root / "cache.lock", "a+b") as handle:
            _flock(handle, _lock_flag("LOCK_EX"))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _lock_flag(name: str) -> int:
    try:
        import fcntl
    except ImportError:
        return 0
    return int(getattr(fcntl, name))
