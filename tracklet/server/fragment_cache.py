"""The server's local copies of table fragments kept on an object store (``<dir>/cache/
table-fragments``; DuckDB reads local files): bounded in bytes, least recently used first out.

A copy is marked used (its mtime) each time a query asks for it. When the copies pass
``max_bytes``, the least recently used are deleted until they fit in 90% of it, except copies used
within the last ``min_age`` seconds (a query may have been handed the path and not opened it yet;
on Linux a file a query has open stays readable after it is deleted). The sizes are read from the
directory once, then counted as copies come and go; several server processes sharing the directory
each count their own, and one that finds a copy gone copies it again. Disk use can pass the bound
only by copies all in use within ``min_age``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

DEFAULT_MAX_BYTES = 2 << 30  # TRACKLET_TABLE_CACHE_MB overrides
MIN_AGE_SECONDS = 60.0


def default_max_bytes() -> int:
    """``$TRACKLET_TABLE_CACHE_MB`` (MiB, at least 1) or 2 GiB."""
    value = os.environ.get("TRACKLET_TABLE_CACHE_MB", "").strip()
    try:
        return max(1, int(value)) << 20 if value else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


class FragmentCache:
    """Copies under ``directory/<first two hex digits>/<sha256>``, at most about ``max_bytes``."""

    def __init__(self, directory: Path, max_bytes: int | None = None, min_age: float = MIN_AGE_SECONDS) -> None:
        self.directory = directory
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self.min_age = min_age
        self._sizes: dict[str, int] | None = None  # digest -> bytes, read from disk on first use
        self._total = 0
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    def get(self, digest: str) -> Path | None:
        """The copy of ``digest``, marked used now; None if there is none."""
        path = self.path(digest)
        try:
            os.utime(path)
        except OSError:
            return None
        return path

    def added(self, digest: str) -> None:
        """Count the copy just renamed into place at ``path(digest)``, then evict if over the bound."""
        try:
            size = self.path(digest).stat().st_size
        except OSError:
            return
        with self._lock:
            sizes = self._load()
            self._total += size - sizes.get(digest, 0)
            sizes[digest] = size
            if self._total > self.max_bytes:
                self._evict(keep=digest)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            self._load()
            return self._total

    def _load(self) -> dict[str, int]:
        if self._sizes is None:
            self._sizes = {}
            for prefix in _scandir(self.directory):
                for entry in _scandir(Path(prefix.path)):
                    if entry.is_file() and not entry.name.startswith("."):
                        self._sizes[entry.name] = entry.stat().st_size
            self._total = sum(self._sizes.values())
        return self._sizes

    def _evict(self, keep: str) -> None:
        """Delete least recently used copies until the rest fit in 90% of the bound (lock held)."""
        sizes = self._load()
        now = time.time()
        used: list[tuple[float, str]] = []
        for digest in sizes:
            try:
                used.append((self.path(digest).stat().st_mtime, digest))
            except OSError:
                used.append((0.0, digest))  # gone (another process evicted it): forget it below
        target = self.max_bytes * 9 // 10
        for last_used, digest in sorted(used):
            if self._total <= target:
                break
            if digest == keep or now - last_used < self.min_age:
                continue
            try:
                self.path(digest).unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            self._total -= sizes.pop(digest)


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return [entry for entry in entries if entry.is_dir() or entry.is_file()]
    except OSError:
        return []
