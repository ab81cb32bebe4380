"""Digests of files in a thread pool, with a stat cache so an unchanged file is never read twice.

A file's digest is its sha256, or for a file stored as chunks ``blake3:<hex>``
(``tracklet.core.digests``); a cached digest of the other form than the one asked for counts
as a miss (the chunking threshold moved, or the cache predates the BLAKE3 rule).

``hashlib`` releases the GIL while it hashes a buffer, so several files hash in parallel and the
training thread keeps running. The stat cache maps ``(path, size, mtime_ns, inode)`` to a digest
in SQLite (``<data root>/cache/artifact-digests.sqlite``), shared by every run and command of the
data root: re-logging an unchanged artifact costs a ``stat`` and a lookup per file. A file is only
remembered if its ``stat`` is the same before and after it was read (it was not being written)
and it was last modified more than ``RACY_NS`` before (see there).

``files_hashed()`` counts the files this process actually read: tests assert cache hits with it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tracklet.core import forksafe
from tracklet.core.digests import hash_file, is_blake3
from tracklet.core.filehash import sha256_handle
from tracklet.core.pools import parallel_map

if TYPE_CHECKING:
    import sqlite3

CHUNK = 1 << 20
STAT_CACHE_FILE = "artifact-digests.sqlite"
# A file modified this close to when it was hashed is not remembered: file systems stamp mtimes
# coarsely (a kernel tick, 2 s on FAT), so a rewrite of the same size right after could keep the
# same stat and be taken for unchanged (git's "racily clean" entries). It is hashed again next time.
RACY_NS = 2_000_000_000
StatKey = tuple[str, int, int, int]

_counter_lock = forksafe.lock()
_files_hashed = 0


def files_hashed() -> int:
    """How many files this process has read to hash (stat-cache hits are not counted)."""
    return _files_hashed


def count_file_hashed() -> None:
    """Count one file read to hash it (by ``sha256_file`` or a pass that stores while hashing)."""
    global _files_hashed
    with _counter_lock:
        _files_hashed += 1


def stat_key(path: str, stat: os.stat_result) -> StatKey:
    return (path, stat.st_size, stat.st_mtime_ns, stat.st_ino)


def sha256_file(path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in 1 MiB pieces."""
    with open(path, "rb", buffering=0) as handle:
        result = sha256_handle(handle, on_bytes)
    count_file_hashed()
    return result


class StatCache:
    """``(path, size, mtime_ns, inode) -> digest`` (sha256, or ``blake3:<hex>``) in SQLite; any
    failure reads as a miss. The column is still named ``sha256`` (caches written before hold only those).

    The database is opened (and ``sqlite3`` imported: ~2-3 ms of CPU in a fresh process, with
    ``datetime``) at the first lookup or store that has something to look up or store: a commit of
    in-memory files only (a run's code snapshot, in ``finish()``) never opens it. A forked child
    holding one opens it again at its first use, with a free lock (``core/forksafe.own``: the
    parent's connection is left alone, never used or closed there)."""

    _db = forksafe.own(lambda cache, parents: cache._reopened())
    _lock = forksafe.own(lambda cache, parents: threading.Lock())

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._db = None
        self._origin = path
        self._path = path  # None once opened (or never to be)

    def _reopened(self) -> None:
        """In a forked child: not opened yet (at its first use)."""
        self._path = self._origin

    def _open(self) -> sqlite3.Connection | None:
        """The connection, opened on first use (call with the lock held); None if it can't be."""
        db = self._db  # first: a forked child's is None again, its path back
        path, self._path = self._path, None
        if path is None:
            return db
        import sqlite3

        from tracklet.core.readonly import can_write, connect_read_only, sqlite_is_read_only

        try:
            if path.exists() and sqlite_is_read_only(path):  # another user's root, a read-only mount:
                self._db = connect_read_only(path, timeout=10, check_same_thread=False, isolation_level=None)
                return self._db  # its digests are read; what this process learns isn't kept (a put fails: ignored)
            if not path.exists() and path.parent.exists() and not can_write(path.parent):
                return None  # nothing to read, nowhere to keep it: every lookup is a miss
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=10, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT NOT NULL, size INTEGER NOT NULL, "
                       "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL, "
                       "PRIMARY KEY (path, size, mtime_ns, inode))")
            self._db = db
        except (sqlite3.Error, OSError):
            self._db = None
        return self._db

    def get_many(self, keys: list[StatKey]) -> dict[StatKey, str]:
        if not keys:
            return {}
        found: dict[StatKey, str] = {}
        with self._lock:
            db = self._open()
            if db is None:
                return found
            import sqlite3

            try:
                for start in range(0, len(keys), 200):
                    part = keys[start:start + 200]
                    clause = " OR ".join(["(path=? AND size=? AND mtime_ns=? AND inode=?)"] * len(part))
                    rows = db.execute(f"SELECT path, size, mtime_ns, inode, sha256 FROM digests WHERE {clause}",
                                      [value for key in part for value in key]).fetchall()
                    found.update({(row[0], row[1], row[2], row[3]): row[4] for row in rows})
            except sqlite3.Error:
                return found
        return found

    def put_many(self, items: dict[StatKey, str]) -> None:
        if not items:
            return
        with self._lock:
            db = self._open()
            if db is None:
                return
            import sqlite3

            try:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
                               [(*key, digest) for key, digest in items.items()])
                db.execute("COMMIT")
            except sqlite3.Error:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def __del__(self) -> None:
        # Closed as it goes (its store left ``open_store``'s cache, unused): the connection itself
        # would wait for a full collection (it is in a cycle with its statement cache), its three
        # descriptors held till then. Not a forked child's copy: the parent's is left alone.
        try:
            forksafe.close_in_opener(*self.__dict__.get("_own__db", (None, None)))
        except Exception:  # noqa: BLE001 - at interpreter exit (its module's globals gone)
            pass

    def close(self) -> None:
        with self._lock:
            db = self._db  # (a forked child's is None: the parent's isn't closed here)
            self._path = None
            if db is not None:
                db.close()
                self._db = None


class Hasher:
    """Digests of many files at once: stat cache first, the rest hashed by ``workers`` threads."""

    def __init__(self, cache: StatCache, workers: int | None = None) -> None:
        self.cache = cache
        self.workers = workers or min(4, os.cpu_count() or 1)

    def digest_files(self, paths: Iterable[str], on_bytes: Callable[[int], None] | None = None, *,
                     blake3: Collection[str] = ()) -> dict[str, tuple[str, int]]:
        """``{path: (digest, size)}`` for existing regular files: sha256, or ``blake3:<hex>`` for
        the paths in ``blake3`` (chunked files); ``OSError`` (naming the file) for one that can't be read."""
        stats: dict[str, StatKey] = {}
        for path in dict.fromkeys(paths):
            stats[path] = stat_key(path, os.stat(path))
        known = self.cache.get_many(list(stats.values()))
        result = {path: (known[key], key[1]) for path, key in stats.items()
                  if key in known and is_blake3(known[key]) == (path in blake3)}
        todo = [path for path in stats if path not in result]
        if not todo:
            return result
        learned: dict[StatKey, str] = {}

        def one(path: str) -> tuple[str, tuple[str, int]]:
            started = time.time_ns()
            if path in blake3:
                digest, size = hash_file(path, "blake3", on_bytes)
                count_file_hashed()
            else:
                digest, size = sha256_file(path, on_bytes)
            after = stat_key(path, os.stat(path))
            if after == stats[path] and size == after[1] and started - after[2] > RACY_NS:
                learned[after] = digest
            return path, (digest, size)

        result.update(parallel_map(one, todo, self.workers, "tracklet-hash"))
        self.cache.put_many(learned)
        return result

    def remember(self, path: str, digest: str) -> None:
        """Record a digest computed elsewhere (a blob just written and verified)."""
        try:
            self.cache.put_many({stat_key(path, os.stat(path)): digest})
        except OSError:
            pass
