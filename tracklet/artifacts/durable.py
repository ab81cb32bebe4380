"""Making artifact bytes durable before anything names them (docs/artifacts.md, "Durability").

A blob or pack on a local disk is written to a temporary name, ``fsync``'d, renamed into place,
and its directory ``fsync``'d before the row that names it is committed (a server's grant or
placement, a local version file or chunk-index row). Without that, a power cut after the commit
can leave a row naming a file whose bytes never reached the disk (missing, or visible but short:
the rename reached the journal, the data did not). An object store (S3 through fsspec) has
nothing to do: a PUT that succeeded is durable.

The file's own ``fsync`` happens once per file, right before its rename (a visible name must
never hold short bytes, since a blob found under its digest is trusted). The directories' are
batched: a rename records its directory in a ``DirectorySyncs``, and whoever is about to commit
rows calls ``sync()`` once, which ``fsync``s each directory renamed into since the last call.

Within one process this covers a blob another thread published (one ``DirectorySyncs`` per store).
Across processes sharing a local store it does not: a version may name a blob that another process
renamed into place a moment before and whose directory that process has not synced yet (a window
of one commit; that process syncs it before its own version).
"""

from __future__ import annotations

import os
import threading
from typing import Any


def sync_file(handle: Any) -> None:
    """Flush a Python file object and ``fsync`` its descriptor."""
    handle.flush()
    os.fsync(handle.fileno())


def sync_directory(path: str) -> None:
    """``fsync`` a directory, so the names created or renamed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectorySyncs:
    """Directories that new names were renamed into, not yet ``fsync``'d (thread-safe).

    ``sync()`` returns only once every directory added before the call is durable: one caller
    syncs at a time, so a caller that finds the set emptied by another waits for that one to finish
    rather than committing while its directory is still being synced."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._sync_lock = threading.Lock()

    def add(self, directory: str) -> None:
        with self._pending_lock:
            self._pending.add(directory)

    def sync(self) -> int:
        """``fsync`` every pending directory; how many were synced."""
        with self._sync_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, set()
            left = sorted(pending)
            try:
                while left:
                    try:
                        sync_directory(left[-1])
                    except FileNotFoundError:  # removed meanwhile (a garbage collection): nothing to keep
                        pass
                    left.pop()
            finally:
                if left:  # a failure: the next caller tries these again
                    with self._pending_lock:
                        self._pending.update(left)
            return len(pending)
