"""Packs: content-defined chunks stored in files of ~64 MiB, an index of where each chunk lives,
and the rebuilding of a file from its recipe.

A pack is the concatenated bytes of its chunks, then an index of ``(chunk id, offset, length)``
entries, then a fixed footer (layout in docs/artifacts.md, "Chunk-level dedupe"). Its id is the
blake3 digest of its index and footer: the index names every chunk by its own blake3 digest, so
the id commits to every byte of the pack, and is computed without hashing the data a second time.
Packs live under ``<root>/packs/<id[:2]>/<id>.pack`` on any fsspec filesystem (a local directory,
S3, ...). A pack is written under a temporary name in ``<root>/packs/tmp/`` and renamed once
complete, so a reader never sees a partial pack; a writer killed mid-pack leaves only a temporary
file behind (:meth:`PackStore.remove_stale_temporaries` sweeps them).

:class:`ChunkIndex` (SQLite) maps chunk ids to ``(pack, offset, length)``. It is derived data: a
pack is renamed into place before its chunks are indexed, and :meth:`ChunkIndex.rebuild` re-reads
every pack's index. The two tables are plain SQL meant to move to the server's PostgreSQL as is.

:class:`PackWriter` stores the chunks a store lacks (one pass over the file), and
:func:`reassemble` rebuilds a file byte for byte, verifying every chunk's blake3 and the file's
digest (BLAKE3, or sha256 for a file chunked before that rule) before the file appears under its name.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tracklet.artifacts.chunking import (
    CHUNK_ID_SIZE,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_PARAMS,
    ChunkingParams,
    FileChunker,
    FileRecipe,
)
from tracklet.core import forksafe, threads
from tracklet.core.digests import file_hasher
from tracklet.core.pools import Pool
from tracklet.artifacts.durable import sync_directory
from tracklet.artifacts.names import partial_path
from tracklet.errors import ChunkCorrupt, ChunkMissing, ChunkStoreError, DigestMismatch, PackCorrupt

if TYPE_CHECKING:
    from concurrent.futures import Future

    from fsspec import AbstractFileSystem

__all__ = [
    "DEFAULT_PACK_SIZE",
    "MAX_UPLOAD_PACK_BYTES",
    "MAX_UPLOAD_PACK_CHUNKS",
    "ChunkCorrupt",
    "ChunkIndex",
    "ChunkMissing",
    "ChunkStoreError",
    "DigestMismatch",
    "PackCorrupt",
    "PackInfo",
    "PackReader",
    "PackStore",
    "PackWriter",
    "reassemble",
    "upload_pack_room",
]

#: A pack is sealed once its chunk bytes reach this size (a pack never splits a chunk).
DEFAULT_PACK_SIZE = 64 * 1024 * 1024

PACK_MAGIC = b"TKLTPK01"
#: One index entry: chunk id (32 bytes), offset of the chunk in the pack (u64), length (u32).
ENTRY = struct.Struct("<32sQI")
#: The footer, the last bytes of a pack: offset of the index (u64), entry count (u32), magic.
FOOTER = struct.Struct("<QI8s")
#: Reads of adjacent chunks of one pack are merged up to this many bytes.
MAX_READ = 4 * 1024 * 1024
#: The largest chunk a pack may hold (pyfastcdc's own ceiling for max_size).
MAX_CHUNK = 16 * 1024 * 1024
#: The largest pack a server takes in one upload (its buffer for the body). An uploader closes a
#: pack before a chunk would take it past this (``upload_pack_room``): a pack of ``pack_bytes`` of
#: chunks plus one more chunk (up to ``MAX_CHUNK`` with the largest chunking parameters) plus its
#: index could pass it, and the server would refuse it on every try.
MAX_UPLOAD_PACK_BYTES = 32 << 20
#: The most chunks one uploaded pack may hold: the server keeps an index entry and a chunk row per
#: chunk in Python (~300 bytes), so a pack of tiny chunks (small files' tails, small chunking
#: parameters) would cost it ~7x its bytes; at this cap, ~10 MiB. tracklet's own packs hold ~1,000.
MAX_UPLOAD_PACK_CHUNKS = 1 << 15


def upload_pack_room(size: int, count: int, length: int) -> bool:
    """Whether a chunk of ``length`` bytes may join an upload pack of ``count`` chunks taking
    ``size`` bytes and stay within the server's limits (``MAX_UPLOAD_PACK_BYTES`` with its index,
    ``MAX_UPLOAD_PACK_CHUNKS``). A pack's first chunk always may (a chunk is at most ``MAX_CHUNK``)."""
    return (count < MAX_UPLOAD_PACK_CHUNKS
            and size + length + (count + 1) * ENTRY.size + FOOTER.size <= MAX_UPLOAD_PACK_BYTES)


@dataclass(frozen=True)
class PackInfo:
    """A sealed pack: its id, total size in bytes and its chunks ``(id, offset, length)``."""

    pack_id: str
    size: int
    entries: tuple[tuple[bytes, int, int], ...]

    @property
    def data_bytes(self) -> int:
        return sum(length for _, _, length in self.entries)


def _blake3(data: bytes | bytearray | memoryview) -> bytes:
    import blake3

    return blake3.blake3(data).digest()


def encode_trailer(entries: Sequence[tuple[bytes, int, int]], data_size: int) -> bytes:
    """The index and footer that end a pack whose chunk bytes take ``data_size`` bytes."""
    parts = [ENTRY.pack(cid, offset, length) for cid, offset, length in entries]
    parts.append(FOOTER.pack(data_size, len(entries), PACK_MAGIC))
    return b"".join(parts)


def pack_id_of(trailer: bytes) -> str:
    """A pack's id: the hex blake3 of its index and footer (which name every chunk by its hash)."""
    return _blake3(trailer).hex()


def build_pack(chunks: Sequence[tuple[bytes, bytes | bytearray | memoryview]]) -> tuple[str, bytes]:
    """A whole pack in memory from ``(chunk id, bytes)`` pairs (the caller vouches for the ids):
    its id and its bytes."""
    pack_id, trailer = pack_trailer(chunks)
    return pack_id, b"".join([*(data for _, data in chunks), trailer])  # one copy of each chunk


def pack_trailer(chunks: Sequence[tuple[bytes, bytes | bytearray | memoryview]]) -> tuple[str, bytes]:
    """The id and the trailer (index and footer) of the pack of ``(chunk id, bytes)`` pairs: the
    pack is their bytes in order, then the trailer. An uploader sends the pieces as they are (no
    copy joins them: ``client.artifacts.Pieces``)."""
    entries = []
    offset = 0
    for cid, data in chunks:
        entries.append((cid, offset, len(data)))
        offset += len(data)
    trailer = encode_trailer(entries, offset)
    return pack_id_of(trailer), trailer


def decode_trailer(trailer: bytes, pack_size: int, where: str) -> list[tuple[bytes, int, int]]:
    """The entries of a pack's index, checked against its size: every chunk inside the data part,
    in order and without overlap. ``trailer`` is the index plus footer; ``where`` names the pack."""
    if len(trailer) < FOOTER.size:
        raise PackCorrupt(f"pack {where}: {len(trailer)} bytes is too short for a footer")
    index_offset, count, magic = FOOTER.unpack_from(trailer, len(trailer) - FOOTER.size)
    if magic != PACK_MAGIC:
        raise PackCorrupt(f"pack {where}: not a tracklet pack (bad magic {magic!r})")
    if index_offset + count * ENTRY.size + FOOTER.size != pack_size:
        raise PackCorrupt(f"pack {where}: footer says {count} entries at {index_offset}, pack is {pack_size} bytes")
    if len(trailer) != count * ENTRY.size + FOOTER.size:
        raise PackCorrupt(f"pack {where}: index is {len(trailer)} bytes, footer says {count} entries")
    entries = []
    expected = 0
    for i in range(count):
        cid, offset, length = ENTRY.unpack_from(trailer, i * ENTRY.size)
        if offset != expected or not 0 < length <= MAX_CHUNK or offset + length > index_offset:
            raise PackCorrupt(f"pack {where}: index entry {i} ({offset}, {length}) is out of place")
        expected = offset + length
        entries.append((cid, offset, length))
    if expected != index_offset:
        raise PackCorrupt(f"pack {where}: chunks end at {expected}, index starts at {index_offset}")
    return entries


class LocalFiles:
    """The few fsspec filesystem calls a ``PackStore`` makes, on a local directory with the OS's
    calls: importing fsspec cost a run's first chunked commit 0.3-0.8 s (and its file objects a
    Python-level layer per chunk written)."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def cat_file(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        with open(path, "rb", buffering=0) as handle:
            if start:
                handle.seek(start)
            return handle.read() if end is None else handle.read(end - (start or 0))

    def open(self, path: str, mode: str = "rb") -> Any:
        return open(path, mode)  # noqa: SIM115 - the caller closes it

    def find(self, path: str) -> list[str]:
        return sorted(os.path.join(base, name) for base, _, names in os.walk(path) for name in names)

    def ls(self, path: str, detail: bool = False) -> list[str]:
        return sorted(os.path.join(path, name) for name in os.listdir(path))

    def rm(self, path: str, recursive: bool = False) -> None:
        if recursive and os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        else:
            os.unlink(path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        os.makedirs(path, exist_ok=exist_ok)

    def mv(self, source: str, target: str) -> None:
        os.replace(source, target)


class PackStore:
    """Packs under ``<root>/packs/`` on an fsspec filesystem (a local directory, through the OS's
    calls, when ``fs`` is omitted)."""

    def __init__(self, root: str | os.PathLike[str], fs: AbstractFileSystem | LocalFiles | None = None) -> None:
        self.fs: Any = LocalFiles() if fs is None else fs
        self.root = os.fspath(root).rstrip("/")
        self.packs_dir = f"{self.root}/packs"
        self.tmp_dir = f"{self.packs_dir}/tmp"

    @property
    def is_local(self) -> bool:
        if isinstance(self.fs, LocalFiles):
            return True
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    def pack_path(self, pack_id: str) -> str:
        if len(pack_id) != 64 or not all(c in "0123456789abcdef" for c in pack_id):
            raise ValueError(f"not a pack id: {pack_id!r:.80}")
        return f"{self.packs_dir}/{pack_id[:2]}/{pack_id}.pack"

    def list_packs(self) -> list[str]:
        """Ids of the complete packs (temporaries are not listed)."""
        if not self.fs.exists(self.packs_dir):
            return []
        ids = []
        for path in self.fs.find(self.packs_dir):
            folder, _, name = path.rstrip("/").rpartition("/")
            pack_id = name[: -len(".pack")]
            # Only <id[:2]>/<id>.pack: temporaries and anything else there are not packs.
            if name.endswith(".pack") and len(pack_id) == 64 and folder.endswith(f"/{pack_id[:2]}"):
                ids.append(pack_id)
        return sorted(ids)

    def read_entries(self, pack_id: str) -> list[tuple[bytes, int, int]]:
        """A pack's index, read from its tail and checked (size, layout, and its id)."""
        path = self.pack_path(pack_id)
        size = self.fs.size(path)
        if size < FOOTER.size:
            raise PackCorrupt(f"pack {path}: {size} bytes is too short for a footer")
        footer = self.fs.cat_file(path, start=size - FOOTER.size, end=size)
        _, count, _ = FOOTER.unpack(footer)
        trailer_size = count * ENTRY.size + FOOTER.size
        if trailer_size > size:
            raise PackCorrupt(f"pack {path}: footer says {count} entries, more than the pack holds")
        trailer = self.fs.cat_file(path, start=size - trailer_size, end=size)
        entries = decode_trailer(trailer, size, path)
        if pack_id_of(trailer) != pack_id:
            raise PackCorrupt(f"pack {path}: its index doesn't hash to its name")
        return entries

    def read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        path = self.pack_path(pack_id)
        data = self.fs.cat_file(path, start=offset, end=offset + length)
        if len(data) != length:
            raise PackCorrupt(f"pack {path}: wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def read_range_into(self, pack_id: str, offset: int, target: memoryview) -> None:
        """Read ``len(target)`` bytes at ``offset`` into ``target`` (a reused buffer: no fresh pages
        to fault in and zero, unlike a new ``bytes`` per read), from a local pack."""
        path = self.pack_path(pack_id)
        with open(path, "rb", buffering=0) as handle:
            handle.seek(offset)
            got = 0
            while got < len(target):
                count = handle.readinto(target[got:])
                if not count:
                    raise PackCorrupt(f"pack {path}: wanted {len(target)} bytes at {offset}, got {got}")
                got += count

    def verify(self, pack_id: str) -> PackInfo:
        """Read a whole pack back: index, id and every chunk's hash. Raises on any difference."""
        entries = self.read_entries(pack_id)
        path = self.pack_path(pack_id)
        with self.fs.open(path, "rb") as f:
            for cid, offset, length in entries:
                f.seek(offset)
                if _blake3(f.read(length)) != cid:
                    raise ChunkCorrupt(f"pack {path}: chunk {cid.hex()} at {offset} doesn't match its id")
        return PackInfo(pack_id, self.fs.size(path), tuple(entries))

    def remove_stale_temporaries(self) -> int:
        """Delete what writers that died left in ``packs/tmp/``; returns how many. Only for when no
        writer is running (a live writer's temporary looks the same)."""
        if not self.fs.exists(self.tmp_dir):
            return 0
        paths = self.fs.ls(self.tmp_dir, detail=False)
        for path in paths:
            self.fs.rm(path)
        return len(paths)


def _set_wal(db: sqlite3.Connection, deadline: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock: two processes
    creating the index at once can get "database is locked" from it at once, without SQLite's busy
    timeout (seen in CI: one of two processes storing the same file died of it)."""
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


class ChunkIndex:
    """Which pack holds which chunk: a SQLite database of two tables (schema in ``SCHEMA``).

    Safe to share between processes (SQLite locking, WAL); one connection per instance and
    process, used from one thread at a time: a forked child holding one opens its own at its first
    use (``core/forksafe.own``; the parent's is left alone, never used or closed there)."""

    _connection = forksafe.own(lambda index, parents: index._connect())

    SCHEMA = (
        (
            "CREATE TABLE IF NOT EXISTS packs ("
            " pack_id TEXT PRIMARY KEY, size INTEGER NOT NULL, chunk_count INTEGER NOT NULL,"
            " data_bytes INTEGER NOT NULL)"
        ),
        (
            "CREATE TABLE IF NOT EXISTS chunks ("
            " chunk_id BLOB PRIMARY KEY, pack_id TEXT NOT NULL, pack_offset INTEGER NOT NULL,"
            " length INTEGER NOT NULL) WITHOUT ROWID"
        ),
        "CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks (pack_id)",
        # A stored large file: its digest (manifest form: blake3:<hex>, or an old sha256) -> the sha256 of its recipe blob (the artifact store's
        # shortcut for "this file is already stored": no chunking pass for unchanged content).
        "CREATE TABLE IF NOT EXISTS recipes (file_sha256 TEXT PRIMARY KEY, recipe TEXT NOT NULL)",
    )
    #: SQLite's default limit on host parameters is 999 in old builds; stay under it.
    BATCH = 500

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        from tracklet.core.readonly import read_only_error, sqlite_is_read_only

        #: Opened read-only: a store this user can't write (a read-only mount, another user's root).
        self.read_only = os.path.exists(self.path) and sqlite_is_read_only(self.path)
        self._opened_as = ""  # the read-only URI it was opened with
        self._read_state: tuple[Any, ...] | None = None  # what it read (core/readonly.read_state), if it sees no commits
        if self.read_only:  # its tables are there (whoever wrote the store made them)
            self._open_read_only()
            return
        directory = Path(self.path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        except (OSError, sqlite3.OperationalError):
            if os.access(directory, os.W_OK):
                raise
            raise read_only_error(directory, "the artifact store has no chunk index (nothing was stored as chunks "
                                  "in it) and one can't be made") from None
        _set_wal(self._db, deadline=time.monotonic() + 30)
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            for statement in self.SCHEMA:
                self._db.execute(statement)

    def _open_read_only(self) -> None:
        self._connection = self._connect_read_only()

    def _connect_read_only(self) -> sqlite3.Connection:
        from tracklet.core.readonly import connect_read_only, read_state, sees_every_commit

        state = read_state(self.path)
        self._opened_as = state[0]
        connection = connect_read_only(self.path, uri=self._opened_as, timeout=30, check_same_thread=False)
        self._read_state = None if sees_every_commit(self.path, self._opened_as) else state
        return connection

    def _connect(self) -> sqlite3.Connection:
        """A connection of this process's own (a forked child's; its tables are there)."""
        if self.read_only:
            return self._connect_read_only()
        connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection; one read ``immutable`` or from a private copy (``core/readonly.py``) is
        opened again first where the file has changed since (its owner wrote it: a repack moved
        chunks to another pack, a collection removed packs), as such a connection keeps what it read."""
        if self._read_state is not None:
            from tracklet.core.readonly import read_state

            if read_state(self.path) != self._read_state:  # the old connection closes once no thread uses it
                self._open_read_only()
        return self._connection

    def close(self) -> None:
        self._connection.close()

    def __del__(self) -> None:
        # Closed as it goes (as StatCache's): not a forked child's copy, whose parent's is left alone.
        try:
            forksafe.close_in_opener(*self.__dict__.get("_own__connection", (None, None)))
        except Exception:  # noqa: BLE001 - at interpreter exit (its module's globals gone)
            pass

    def __enter__(self) -> ChunkIndex:  # noqa: PYI034 - final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_pack(self, info: PackInfo) -> None:
        """Record a sealed pack and its chunks (a chunk already held by another pack keeps that
        one)."""
        with self._db:
            self._db.execute(
                "INSERT INTO packs (pack_id, size, chunk_count, data_bytes) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (info.pack_id, info.size, len(info.entries), info.data_bytes),
            )
            self._db.executemany(
                "INSERT INTO chunks (chunk_id, pack_id, pack_offset, length) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(cid, info.pack_id, offset, length) for cid, offset, length in info.entries],
            )

    def locate(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int]]:
        """``chunk id -> (pack id, offset, length)`` for those of ``chunk_ids`` that are stored."""
        ids = list(dict.fromkeys(chunk_ids))
        found = self._locate(ids)
        if len(found) < len(ids) and self._reopen():  # a writer may have added them since it was opened
            found = self._locate(ids)
        return found

    def _locate(self, ids: list[bytes]) -> dict[bytes, tuple[str, int, int]]:
        found: dict[bytes, tuple[str, int, int]] = {}
        for i in range(0, len(ids), self.BATCH):
            part = ids[i : i + self.BATCH]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT chunk_id, pack_id, pack_offset, length FROM chunks WHERE chunk_id IN ({marks})", part
            )
            for cid, pack_id, offset, length in rows:
                found[bytes(cid)] = (pack_id, offset, length)
        return found

    def _reopen(self) -> bool:
        """An index read ``immutable`` (``core/readonly.py``: no writer had it open) or from a private
        copy of it and its ``-wal`` is opened again where that has changed, so that what a writer
        added since is seen; False for one read through its writer's ``-shm`` (it sees every commit)."""
        if not self._opened_as:
            return False
        from tracklet.core.readonly import sees_every_commit, sqlite_read_uri

        now = sqlite_read_uri(self.path)
        if now == self._opened_as and sees_every_commit(self.path, now):
            return False
        self._open_read_only()  # the old connection closes once no thread uses it
        return True

    def present(self, chunk_ids: Iterable[bytes]) -> set[bytes]:
        """The subset of ``chunk_ids`` that some pack holds (one query per 500 ids, reading the
        index's keys only: asked once per block a store cuts)."""
        found: set[bytes] = set()
        ids = list(dict.fromkeys(chunk_ids))
        for i in range(0, len(ids), self.BATCH):
            part = ids[i : i + self.BATCH]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT chunk_id FROM chunks WHERE chunk_id IN ({marks})", part)
            found.update(bytes(cid) for (cid,) in rows)
        return found

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, bytes):
            return False
        row = self._db.execute("SELECT 1 FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
        return row is not None

    def stats(self) -> dict[str, int]:
        packs, size, data = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(data_bytes), 0) FROM packs"
        ).fetchone()
        (chunks,) = self._db.execute("SELECT count(*) FROM chunks").fetchone()
        return {"packs": packs, "pack_bytes": size, "data_bytes": data, "chunks": chunks}

    def add_recipe(self, file_sha256: str, recipe: str) -> None:
        """Remember that the file with ``file_sha256`` is stored as recipe blob ``recipe``."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO recipes (file_sha256, recipe) VALUES (?, ?)",
                             (file_sha256, recipe))

    def recipe_for(self, file_sha256: str) -> str | None:
        """The recipe blob recorded for a file's sha256, if any (the caller checks it is still whole)."""
        row = self._db.execute("SELECT recipe FROM recipes WHERE file_sha256 = ?", (file_sha256,)).fetchone()
        return None if row is None else str(row[0])

    def forget_recipes(self, recipes: Iterable[str]) -> int:
        """Drop the shortcuts that point at ``recipes`` (recipe blobs being removed)."""
        items = [(recipe,) for recipe in recipes]
        with self._db:
            cursor = self._db.executemany("DELETE FROM recipes WHERE recipe = ?", items)
        return cursor.rowcount

    def packs(self) -> dict[str, int]:
        """``pack id -> size`` of every indexed pack."""
        return {str(pack_id): size for pack_id, size in self._db.execute("SELECT pack_id, size FROM packs")}

    def pack_chunks(self, pack_id: str) -> list[tuple[bytes, int]]:
        """``(chunk id, length)`` of the chunks the index places in ``pack_id``."""
        rows = self._db.execute("SELECT chunk_id, length FROM chunks WHERE pack_id = ?", (pack_id,))
        return [(bytes(cid), length) for cid, length in rows]

    def move_chunks(self, info: PackInfo) -> None:
        """Record a pack that a repacking wrote: its chunks now live there (their rows are moved
        from the packs they were in, which the caller removes next)."""
        with self._db:
            self._db.execute(
                "INSERT INTO packs (pack_id, size, chunk_count, data_bytes) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (info.pack_id, info.size, len(info.entries), info.data_bytes),
            )
            self._db.executemany(
                "INSERT INTO chunks (chunk_id, pack_id, pack_offset, length) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (chunk_id) DO UPDATE SET pack_id = excluded.pack_id, pack_offset = excluded.pack_offset",
                [(cid, info.pack_id, offset, length) for cid, offset, length in info.entries],
            )

    def remove_packs(self, pack_ids: Iterable[str]) -> None:
        """Forget packs (deleted by a garbage collection) and every chunk placed in them."""
        items = [(pack_id,) for pack_id in pack_ids]
        with self._db:
            self._db.executemany("DELETE FROM chunks WHERE pack_id = ?", items)
            self._db.executemany("DELETE FROM packs WHERE pack_id = ?", items)

    def rebuild(self, store: PackStore) -> int:
        """Add every complete pack of ``store`` that the index lacks (after a crash between a
        pack's rename and its indexing, or for a new index); returns how many were added. A pack
        whose index is damaged is skipped and named in the ``PackCorrupt`` raised at the end."""
        known = {row[0] for row in self._db.execute("SELECT pack_id FROM packs")}
        added, damaged = 0, []
        for pack_id in store.list_packs():
            if pack_id in known:
                continue
            try:
                entries = store.read_entries(pack_id)
            except (PackCorrupt, ValueError):
                damaged.append(pack_id)
                continue
            size = store.fs.size(store.pack_path(pack_id))
            self.add_pack(PackInfo(pack_id, size, tuple(entries)))
            added += 1
        if damaged:
            raise PackCorrupt(f"{len(damaged)} damaged pack(s) left out of the index: {', '.join(damaged[:10])}")
        return added


#: A local pack's bytes are handed to the kernel's writeback every this many bytes, so the disk
#: writes while chunking goes on and the fsync that seals the pack waits for little (packs written
#: through the page cache: where direct I/O is refused, or not durable).
WRITEBACK_EVERY = 8 * 1024 * 1024

#: A durable local pack is written with direct I/O (``O_DIRECT``) in pieces of this many bytes.
DIRECT_PIECE = 4 * 1024 * 1024
#: Direct I/O wants file offsets, lengths and buffer addresses aligned to the device's logical
#: block; 4096 is a multiple of every common one (and the buffer is page-aligned memory).
DIRECT_ALIGN = 4096


class DirectFile:
    """A new local file written with direct I/O: the bytes go from two reused, page-aligned buffers
    straight to the disk, not through the page cache.

    Measured on the first store of a 256 MiB checkpoint (perf): copying the chunks into new
    page-cache pages (``copy_folio_from_iter_atomic``) took 24% of the process's CPU, more than the
    file's sha256; with direct I/O the kernel copies nothing (the device reads the buffer) and the
    chunk bytes are copied once, into a buffer that stays in the CPU's cache (L3). A durable pack must
    reach the disk before it is renamed anyway, so the fsync that seals it has little left to do.

    Writes are buffered up to :data:`DIRECT_PIECE` bytes and written a whole piece at a time, by a
    writer thread while the next piece fills (a direct write waits for the disk). The
    last, unaligned bytes (and the pack's index) are written through the page cache on ``flush``,
    after which the file is written normally. A file system that refuses direct I/O (at open or at
    the first write: ``EINVAL``) gets the same bytes through the page cache; ``direct_bytes`` says
    how many bytes went directly.
    """

    def __init__(self, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        direct_flag = getattr(os, "O_DIRECT", 0)  # Linux, FreeBSD; not macOS or Windows
        self.direct = False
        self.direct_bytes = 0
        fd = -1
        if direct_flag:
            try:
                fd = os.open(path, flags | direct_flag, 0o666)
                self.direct = True
            except OSError as error:
                if error.errno != errno.EINVAL:  # EINVAL: this file system has no direct I/O
                    raise
        if fd < 0:
            fd = os.open(path, flags, 0o666)
        self._fd = fd
        # Two buffers: one fills while the other is written by the writer thread.
        # Private anonymous memory: page-aligned, and cheaper to fault in than mmap's default
        # shared mapping (shmem).
        private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self._buffers = [mmap.mmap(-1, DIRECT_PIECE, flags=private) for _ in range(2)] if self.direct else []
        self._views = [memoryview(buffer) for buffer in self._buffers]
        self._view = self._views[0] if self._views else memoryview(b"")
        self._fill = 0
        self._writer: Pool | None = None
        self._pending: Future[None] | None = None
        self.closed = False

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        source = memoryview(data)
        size = source.nbytes
        if not self.direct:
            self._drain()
            _write_all(self._fd, source)
            return size
        view, position = self._view, 0
        while position < size:
            take = min(size - position, DIRECT_PIECE - self._fill)
            view[self._fill : self._fill + take] = source[position : position + take]
            self._fill += take
            position += take
            if self._fill == DIRECT_PIECE:
                self._fill = 0
                self._write_behind(view)
                view = self._view
        return size

    def _write_behind(self, full: memoryview) -> None:
        """Hand a full buffer to the writer thread (a direct write waits for the disk, with the
        GIL released) and fill the other one meanwhile."""
        self._wait()
        if self._writer is None:
            self._writer = Pool(1, "tracklet-pack-write")
        self._pending = self._writer.submit(self._write, full)
        self._view = self._views[1] if full is self._views[0] else self._views[0]

    def _wait(self) -> None:
        pending = self._pending
        if pending is not None:
            try:
                threads.result(pending)  # in slices on the main thread: a Ctrl-C is seen (core/threads.py)
            finally:
                # Forgotten once it ended (its own error raised here once); a wait a Ctrl-C cut
                # short keeps it, so what comes next (``close``) waits for it before writing more.
                if pending.done():
                    self._pending = None

    def flush(self) -> None:
        """Write everything written so far: the aligned part directly, the rest through the page
        cache (from here on the file is written normally)."""
        self._wait()
        fill, self._fill = self._fill, 0
        aligned = fill - fill % DIRECT_ALIGN
        if self.direct and aligned:
            self._write(self._view[:aligned])
        self._stop_direct()
        if fill > aligned:
            _write_all(self._fd, self._view[aligned:fill])

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            if self._writer is not None:
                self._writer.shutdown(wait=True)  # a write that failed has been raised, or is dropped
            os.close(self._fd)
            self._view = memoryview(b"")
            # A slice of a buffer may outlive this: a failed write's traceback holds the piece it
            # was writing (and a profiler may hold any frame). Closing would then raise BufferError
            # in place of the write's own error (a full disk); the memory goes with the last view.
            for view in self._views:
                with contextlib.suppress(BufferError):
                    view.release()
            for buffer in self._buffers:
                with contextlib.suppress(BufferError):
                    buffer.close()

    def _write(self, piece: memoryview) -> None:
        """Write ``piece`` at the file's position: directly, unless the file system refuses it."""
        while piece:
            try:
                written = os.write(self._fd, piece)
            except OSError as error:
                if error.errno != errno.EINVAL or not self.direct:
                    raise
                # Direct I/O refused (a file system that takes O_DIRECT at open and not at write,
                # or an unaligned offset after a short write): the rest goes through the page cache.
                self._stop_direct()
                continue
            if self.direct:
                self.direct_bytes += written
            piece = piece[written:]

    def _drain(self) -> None:
        """Write the buffered bytes through the page cache (the file is no longer direct)."""
        self._wait()
        if self._fill:
            fill, self._fill = self._fill, 0
            _write_all(self._fd, self._view[:fill])

    def _stop_direct(self) -> None:
        if not self.direct:
            return
        import fcntl

        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        self.direct = False


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


@dataclass
class _OpenPack:
    path: str
    handle: Any
    entries: list[tuple[bytes, int, int]] = field(default_factory=list)
    data_size: int = 0
    handed: int = 0  # bytes of the pack handed to writeback so far

    def start_writeback(self) -> None:
        """Ask the kernel to start writing back what was written since the last call, without
        waiting for it (``posix_fadvise(DONTNEED)`` does that for dirty pages; it drops none of
        them). Chunk bytes stay written one by one right after they are hashed, while they are in
        the CPU's cache: moving the writes to a thread of their own, in larger pieces, measured
        3-4x the CPU for them here."""
        fadvise = getattr(os, "posix_fadvise", None)  # not on macOS or Windows
        if fadvise is None or getattr(self.handle, "direct", False):  # direct I/O: on its way already
            return
        self.handle.flush()
        with contextlib.suppress(OSError, AttributeError, ValueError):  # a file without a descriptor
            fadvise(self.handle.fileno(), self.handed, self.data_size - self.handed, os.POSIX_FADV_DONTNEED)
        self.handed = self.data_size


class PackWriter:
    """Writes chunks into packs of about ``pack_size`` bytes in ``store``, skipping chunks that are
    already stored: those in ``index`` (when given), in the ``have`` set passed per file, and those
    this writer has written. Sealed packs are renamed into place, then added to ``index``.

    Use as a context manager: leaving it normally seals the last pack; leaving it by an exception
    deletes the unfinished pack. ``on_pack`` is called with each sealed pack (to upload it while
    the next one fills, say); ``on_chunk`` with each chunk written, its id and bytes (valid only
    during the call: an online run sends them to its server as they are cut). ``durable`` fsyncs a local pack before its rename, so it is never
    visible with missing bytes even after a power cut, and writes it with direct I/O
    (:class:`DirectFile`) unless ``direct`` is False: a pack about to be read again (uploaded right
    after the commit) is cheaper written through the page cache, where the reads find it (read back
    from the disk, 256 MiB of packs cost 0.26 CPU s and 0.9 s here, against 0.03 s from the cache).
    """

    def __init__(
        self,
        store: PackStore,
        index: ChunkIndex | None = None,
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        durable: bool = True,
        on_pack: Callable[[PackInfo], None] | None = None,
        direct: bool = True,
        on_chunk: Callable[[bytes, bytes | bytearray | memoryview], None] | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.pack_size = pack_size
        self.durable = durable
        self.direct = direct
        self.on_pack = on_pack
        self.on_chunk = on_chunk
        self.packs: list[PackInfo] = []
        self.new_bytes = 0
        self._written: set[bytes] = set()
        self._open: _OpenPack | None = None

    def __enter__(self) -> PackWriter:  # noqa: PYI034 - final class
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write_file(
        self,
        path: str | os.PathLike[str],
        have: Container[bytes] = frozenset(),
        params: ChunkingParams = DEFAULT_PARAMS,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        on_bytes: Callable[[int], None] | None = None,
    ) -> FileRecipe:
        """Chunk ``path`` in one pass, store the chunks not already stored, return its recipe.
        ``on_bytes`` is told how many bytes of the file each batch covered (for a progress bar)."""
        chunker = FileChunker(path, params, block_size=block_size)
        chunks: list[tuple[bytes, int]] = []
        written = self._written
        for batch in chunker:
            ids = [cid for cid, _ in batch]
            lengths = [len(data) for _, data in batch]
            chunks.extend(zip(ids, lengths))
            stored = self._stored(ids, have)
            for cid, data in batch:
                if cid not in stored and cid not in written:  # written: also a repeat within the batch
                    self.add_chunk(cid, data)
            if on_bytes is not None:
                on_bytes(sum(lengths))
        return FileRecipe(size=chunker.size, digest=chunker.digest, chunks=tuple(chunks), params=params)

    def write_missing(self, path: str | os.PathLike[str], recipe: FileRecipe, missing: Collection[bytes]) -> int:
        """Second pass of a two-pass upload: read from ``path`` only the chunks of ``recipe`` named
        in ``missing`` (e.g. what a server said it lacks) and store them; returns bytes stored.
        Each chunk is checked against its id, so a file changed since it was chunked is an error."""
        wanted = set(missing)
        stored = 0
        with open(path, "rb") as f:
            for cid, offset, length in recipe.offsets():
                if cid not in wanted or cid in self._written:
                    continue
                f.seek(offset)
                data = f.read(length)
                if len(data) != length or _blake3(data) != cid:
                    raise ChunkCorrupt(f"{os.fspath(path)} changed since it was chunked (at byte {offset})")
                self.add_chunk(cid, data)
                stored += length
        return stored

    def _stored(self, ids: list[bytes], have: Container[bytes]) -> set[bytes]:
        stored = {cid for cid in ids if cid in have} if have else set()
        if self.index is not None:
            stored |= self.index.present(cid for cid in ids if cid not in stored)
        return stored

    def add_chunk(self, chunk_id: bytes, data: bytes | bytearray | memoryview) -> None:
        """Append one chunk to the open pack (opening one if needed), sealing the pack when full.
        The caller vouches that ``chunk_id`` is the blake3 of ``data``."""
        if len(chunk_id) != CHUNK_ID_SIZE or not 0 < len(data) <= MAX_CHUNK:
            raise ValueError(f"bad chunk: id of {len(chunk_id)} bytes, {len(data)} bytes of data")
        if self._open is None:
            self._open = self._start_pack()
        pack = self._open
        pack.handle.write(data)
        if self.on_chunk is not None:  # while its bytes are still in the CPU's cache
            self.on_chunk(chunk_id, data)
        pack.entries.append((chunk_id, pack.data_size, len(data)))
        pack.data_size += len(data)
        self._written.add(chunk_id)
        self.new_bytes += len(data)
        if pack.data_size >= self.pack_size:
            self.seal()
        elif self.durable and pack.data_size - pack.handed >= WRITEBACK_EVERY and self.store.is_local:
            pack.start_writeback()

    def _start_pack(self) -> _OpenPack:
        self.store.fs.makedirs(self.store.tmp_dir, exist_ok=True)
        path = f"{self.store.tmp_dir}/{uuid.uuid4().hex}.partial"
        if self.durable and self.direct and self.store.is_local:  # it must reach the disk: write it there directly
            return _OpenPack(path=path, handle=DirectFile(path))
        return _OpenPack(path=path, handle=self.store.fs.open(path, "wb"))

    def seal(self) -> PackInfo | None:
        """Finish the open pack: write its index, rename it to its id, index its chunks."""
        pack, self._open = self._open, None
        if pack is None:
            return None
        try:
            trailer = encode_trailer(pack.entries, pack.data_size)
            pack.handle.write(trailer)
            if self.durable and self.store.is_local:
                pack.handle.flush()
                os.fsync(pack.handle.fileno())
            pack.handle.close()
            pack_id = pack_id_of(trailer)
            final = self.store.pack_path(pack_id)
            fs = self.store.fs
            if fs.exists(final):  # the same chunks in the same order: already stored
                fs.rm(pack.path)
            else:
                fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                fs.mv(pack.path, final)
                if self.durable and self.store.is_local:
                    sync_directory(os.path.dirname(final))
        except BaseException:
            self._discard(pack)
            raise
        info = PackInfo(pack_id, pack.data_size + len(trailer), tuple(pack.entries))
        self.packs.append(info)
        if self.index is not None:
            self.index.add_pack(info)
        if self.on_pack is not None:
            self.on_pack(info)
        return info

    def close(self) -> None:
        """Seal the last pack."""
        self.seal()

    def abort(self) -> None:
        """Drop the unfinished pack (its chunks are not stored; sealed packs stay)."""
        pack, self._open = self._open, None
        if pack is not None:
            self._discard(pack)

    def _discard(self, pack: _OpenPack) -> None:
        for cid, _, _ in pack.entries:  # not stored after all: write them again if asked
            self._written.discard(cid)
        with contextlib.suppress(Exception):  # removing the temporary is what matters
            pack.handle.close()
        try:
            self.store.fs.rm(pack.path)
        except FileNotFoundError:
            pass


class ChunkLocator(Protocol):
    """What ``PackReader`` needs of an index: where chunks are (a ``ChunkIndex``, or a mapping
    looked up from one beforehand, so reading needn't hold the index's connection)."""

    def locate(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int]]: ...


class Located:
    """A ``ChunkLocator`` over places already looked up (``ChunkIndex.locate``)."""

    def __init__(self, places: dict[bytes, tuple[str, int, int]]) -> None:
        self.places = places

    def locate(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int]]:
        return {cid: self.places[cid] for cid in chunk_ids if cid in self.places}


class PackReader:
    """Reads chunks back through ``index``, merging reads of adjacent chunks of one pack and
    checking each chunk's bytes against its id."""

    def __init__(self, store: PackStore, index: ChunkLocator, *, lookup_batch: int = 4096, verify: bool = True,
                 reuse_buffer: bool = False) -> None:
        """``verify=False``: chunks are not checked against their ids, for a reader that checks the
        whole they rebuild against its digest anyway (a server registering a file).
        ``reuse_buffer``: a local store's reads go into one buffer, reused: each chunk given is
        valid only until the next is asked for (a consumer that hashes or copies it at once)."""
        self.store = store
        self.index = index
        self.lookup_batch = lookup_batch
        self.verify = verify
        self._buffer = bytearray(MAX_READ) if reuse_buffer and store.is_local else None

    def iter_chunks(self, chunk_ids: Sequence[bytes], *, name: str = "") -> Iterator[memoryview]:
        """The bytes of each of ``chunk_ids``, in order, located ``lookup_batch`` at a time as
        they are reached (a consumer that stops early costs only what it read). ``name`` (the
        file being rebuilt) goes into error messages."""
        where = f" (for {name})" if name else ""
        lookup_batch = self.lookup_batch
        for start in range(0, len(chunk_ids), lookup_batch):
            ids = chunk_ids[start : start + lookup_batch]
            places = self.index.locate(ids)
            run: list[tuple[bytes, int]] = []  # (chunk id, length) of adjacent chunks in one pack
            run_pack, run_start, run_end = "", 0, 0
            for cid in ids:
                place = places.get(cid)
                if place is None:
                    yield from self._read_run(run_pack, run_start, run, where)
                    raise ChunkMissing(f"chunk {cid.hex()} is in no pack{where}")
                pack_id, offset, length = place
                if run and (pack_id != run_pack or offset != run_end or run_end - run_start + length > MAX_READ):
                    yield from self._read_run(run_pack, run_start, run, where)
                    run = []
                if not run:
                    run_pack, run_start, run_end = pack_id, offset, offset
                run.append((cid, length))
                run_end += length
            yield from self._read_run(run_pack, run_start, run, where)

    def _read_run(self, pack_id: str, start: int, run: list[tuple[bytes, int]], where: str) -> Iterator[memoryview]:
        if not run:
            return
        total = sum(length for _, length in run)
        try:
            if self._buffer is not None:
                if total > len(self._buffer):  # one chunk larger than MAX_READ
                    self._buffer = bytearray(total)
                data = memoryview(self._buffer)[:total]
                self.store.read_range_into(pack_id, start, data)
            else:
                data = memoryview(self.store.read_range(pack_id, start, total))
        except FileNotFoundError:
            raise ChunkMissing(f"pack {pack_id} is indexed but missing{where}") from None
        pos = 0
        verify = self.verify
        for cid, length in run:
            piece = data[pos : pos + length]
            if verify and _blake3(piece) != cid:
                raise ChunkCorrupt(f"chunk {cid.hex()} in pack {pack_id} doesn't match its id{where}")
            pos += length
            yield piece


def reassemble(recipe: FileRecipe, reader: PackReader, dest: str | os.PathLike[str], *, durable: bool = True,
               on_bytes: Callable[[int], None] | None = None) -> Path:
    """Rebuild the file ``recipe`` describes at ``dest``, byte for byte.

    The bytes go to a temporary file next to ``dest`` and are checked against the recipe's size and
    digest (``digests.file_hasher``: BLAKE3 or an old recipe's sha256); only then is the file renamed to ``dest`` (replacing what was there). On any error
    (a chunk missing or corrupt, a digest mismatch, a full disk) the temporary file is removed and
    an error naming ``dest`` is raised: nothing partial is left visible.
    """
    dest_path = Path(dest)
    tmp = partial_path(dest_path)
    hasher = file_hasher(recipe.digest, threaded=False)  # fed a chunk at a time
    size = 0
    try:
        with open(tmp, "xb") as f:
            for piece in reader.iter_chunks(recipe.chunk_ids, name=str(dest_path)):
                hasher.update(piece)
                f.write(piece)
                size += len(piece)
                if on_bytes is not None:
                    on_bytes(len(piece))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if size != recipe.size or hasher.hexdigest() != recipe.digest:
            raise DigestMismatch(
                f"{dest_path}: rebuilt {size} bytes with digest {hasher.hexdigest()}, "
                f"expected {recipe.size} bytes with digest {recipe.digest}"
            )
        os.replace(tmp, dest_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest_path
