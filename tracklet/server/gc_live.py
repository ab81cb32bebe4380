"""The digests a server's collection must keep (``artifact_gc``), held on disk rather than in memory.

A server's live set (every blob committed versions and runs name, per project) grows with the
store: ~500 bytes a digest as Python sets, so 50 MB at 100,000 blobs. ``LiveDigests`` keeps it in
a scratch SQLite file instead (one ``WITHOUT ROWID`` table keyed by digest then project, its page
cache capped), written once while manifests are read and read back one ``sha256/<xx>/`` prefix at
a time, an index range each: the collection's memory is then one prefix's worth. The file is the
collection's own (a temporary file, removed on ``close``); nothing else reads it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable

_BATCH = 5000
_CACHE_KIB = 4096  # SQLite's page cache for the scratch file


class LiveDigests:
    """(project, digest) pairs something references; ``add`` them, then read them back by prefix."""

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="tracklet-gc-live-", suffix=".sqlite")
        os.close(handle)
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

    def __enter__(self) -> LiveDigests:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
