"""The digests a server's collection must keep (``artifact_gc``), held on disk rather than in memory.

A server's live set (every blob committed versions and runs name, per project) grows with the
store: ~500 bytes a digest as Python sets, so 50 MB at 100,000 blobs. ``LiveDigests`` keeps it in
a scratch SQLite file instead (one ``WITHOUT ROWID`` table keyed by digest then project, its page
cache capped), written once while manifests are read and read back one ``sha256/<xx>/`` prefix at
a time, an index range each: the collection's memory is then one prefix's worth. The file is the
collection's own (removed on ``close``); nothing else reads it.

Where: ``<data root>/.gc-scratch/`` (``scratch_dir``), not the system's temporary directory, so a
collection killed with ``kill -9`` leaves its file where the next one finds it. The owner holds an
exclusive ``flock`` on its file while it lives (the kernel drops it when the process dies, however
it dies); each collection starts by removing the files whose lock it can take (their owners are
gone) and never one whose lock is held (a collection running meanwhile). A file is created under a
``.new`` name, locked, then renamed to its ``.sqlite`` name, so no collection sees an unlocked
``.sqlite`` of a live one; a ``.new`` left by a kill in that instant goes once an hour old.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

_BATCH = 5000
_CACHE_KIB = 4096  # SQLite's page cache for the scratch file
SCRATCH_DIR = ".gc-scratch"
_PREFIX = "gc-live-"
_NEW_AGE = 3600.0  # a ``.new`` file older than this is a killed collection's (it is renamed at once)


def scratch_dir(root: Path) -> Path:
    """Where the collections of the server whose data root is ``root`` keep their scratch files."""
    return Path(root) / SCRATCH_DIR


def _lock(descriptor: int, *, wait: bool) -> bool:
    """An exclusive ``flock`` on ``descriptor``: False if another open file holds one (``wait`` off).
    Without ``fcntl`` (Windows): True (no lock; files of killed collections are then left)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def remove_stale(directory: Path, now: float | None = None) -> list[Path]:
    """Remove the scratch files in ``directory`` that no live collection holds (see the module);
    the paths removed."""
    if not hasattr(os, "O_NOFOLLOW") or not directory.is_dir():
        return []
    try:
        import fcntl  # noqa: F401  (without flock a live file can't be told from a dead one's)
    except ImportError:
        return []
    now = time.time() if now is None else now
    removed = []
    for path in directory.glob(_PREFIX + "*"):
        if path.suffix not in (".sqlite", ".new"):
            continue
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or a link: not ours
            continue
        try:
            if path.suffix == ".new" and now - os.fstat(descriptor).st_mtime < _NEW_AGE:
                continue
            if _lock(descriptor, wait=False):
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            os.close(descriptor)
    return removed


class LiveDigests:
    """(project, digest) pairs something references; ``add`` them, then read them back by prefix.
    ``directory``: where its scratch file goes (``scratch_dir``; its killed collections' files are
    removed first); None: the system's temporary directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self._held: int | None = None
        if directory is None:
            handle, self.path = tempfile.mkstemp(prefix="tracklet-" + _PREFIX, suffix=".sqlite")
            os.close(handle)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            remove_stale(directory)
            handle, fresh = tempfile.mkstemp(prefix=_PREFIX, suffix=".new", dir=directory)
            _lock(handle, wait=True)  # a new file: nobody else holds it
            self.path = fresh[: -len(".new")] + ".sqlite"
            os.rename(fresh, self.path)
            self._held = handle  # open (and locked) until close
        self._db = sqlite3.connect(self.path)
        self._db.executescript(f"""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -{_CACHE_KIB};
            CREATE TABLE live (digest TEXT NOT NULL, project TEXT NOT NULL, PRIMARY KEY (digest, project))
                WITHOUT ROWID;""")
        self._pending: list[tuple[str, str]] = []
        self.projects: set[str] = set()

    def add(self, project: str, digests: Iterable[str]) -> None:
        self.projects.add(project)
        for digest in digests:
            self._pending.append((digest, project))
            if len(self._pending) >= _BATCH:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT OR IGNORE INTO live VALUES (?, ?)", self._pending)
            self._pending = []

    def has(self, project: str, digest: str) -> bool:
        self._flush()
        return self._db.execute("SELECT 1 FROM live WHERE digest = ? AND project = ?", (digest, project)
                                ).fetchone() is not None

    def prefix(self, low: str, high: str | None) -> dict[str, set[str]]:
        """Per project, the digests from ``low`` (inclusive) to ``high`` (exclusive; None: to the end)."""
        self._flush()
        found: dict[str, set[str]] = {}
        if high is None:
            rows = self._db.execute("SELECT digest, project FROM live WHERE digest >= ?", (low,))
        else:
            rows = self._db.execute("SELECT digest, project FROM live WHERE digest >= ? AND digest < ?", (low, high))
        for digest, project in rows:
            found.setdefault(project, set()).add(digest)
        return found

    def close(self) -> None:
        self._db.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        if self._held is not None:
            os.close(self._held)  # after the unlink: no other collection takes it for a dead one's first
            self._held = None

    def __enter__(self) -> LiveDigests:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
