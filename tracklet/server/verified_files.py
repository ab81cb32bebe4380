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
it was (git's "racy clean" index entries). What no field shows, bits rotting beneath the file
system, is caught by the next check of the file: after a restart, or once the check has been
evicted. At most ``max_entries`` checks are kept (about 200 bytes each), the least recently used
first out.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: A file changed less than this before its check began is checked again on its next request
#: (2 s: the coarsest timestamps in use, FAT's, tick in 2 s; ext4, xfs and btrfs in nanoseconds).
SETTLED_NS = 2_000_000_000
DEFAULT_MAX_ENTRIES = 4096
PIECE = 1 << 20

_Identity = tuple[int, int, int, int, int]


def _identity(stat: os.stat_result) -> _Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class VerifiedFiles:
    """Local files found to hold the bytes their sha256 names, remembered while unchanged (see
    the module). Thread-safe: routes call ``holds`` from the server's worker threads, and
    requests for one file arriving together wait for one hashing."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, settled_ns: int = SETTLED_NS) -> None:
        self.max_entries = max_entries
        self.settled_ns = settled_ns
        self.hashed_files = 0  # files hashed so far (every check that was not remembered)
        self._checked: OrderedDict[tuple[str, str], _Identity] = OrderedDict()
        self._lock = threading.Lock()
        self._hashing: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._checked)

    def holds(self, path: Path, digest: str) -> bool:
        """Whether the file at ``path`` holds the bytes whose sha256 is ``digest`` (False when it
        can't be read): hashed, unless it was checked before and is unchanged since."""
        key = (str(path), digest)
        if self._remembered(key, path):
            return True
        with self._one_at_a_time(key):
            if self._remembered(key, path):  # checked by the request this one waited for
                return True
            return self._check(key, path, digest)

    def _remembered(self, key: tuple[str, str], path: Path) -> bool:
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return False
        with self._lock:
            if self._checked.get(key) != identity:
                return False
            self._checked.move_to_end(key)
            return True

    def _check(self, key: tuple[str, str], path: Path, digest: str) -> bool:
        import hashlib

        from tracklet.core.filehash import hash_handle

        began = time.time_ns()
        hasher = hashlib.sha256()
        try:
            with open(path, "rb", buffering=0) as handle:
                before = _identity(os.fstat(handle.fileno()))
                hash_handle(handle, hasher, None, PIECE)
                after = _identity(os.fstat(handle.fileno()))
        except OSError:
            return False
        with self._lock:
            self.hashed_files += 1
        holds = hasher.hexdigest() == digest
        settled = began - max(before[3], before[4]) >= self.settled_ns
        if holds and settled and after == before:  # else: checked again next time
            self._remember(key, before)
        else:
            self._forget(key)
        return holds

    def _remember(self, key: tuple[str, str], identity: _Identity) -> None:
        with self._lock:
            self._checked[key] = identity
            self._checked.move_to_end(key)
            while len(self._checked) > self.max_entries:
                self._checked.popitem(last=False)

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._checked.pop(key, None)

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
