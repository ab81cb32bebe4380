"""Checkpoint records: a checkpoint's path, size, digest and score, hashed off the caller's thread.

Hashing a multi-gigabyte checkpoint takes seconds, so ``Run.log_checkpoint`` only queues the
request; a daemon thread reads the file (or directory: a Hugging Face checkpoint is one) and
queues a ``Checkpoint`` record to the run's sender. ``finish()`` waits for pending digests within
its timeout. A file deleted before it could be read (ModelCheckpoint's ``save_top_k`` does that)
is still recorded, with ``error`` set. A file logged again unchanged (the Hugging Face
best checkpoint is logged at save and again as the best) is not read twice: digests are
remembered per run by path, size, modification time and inode, as git's index does.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tracklet.core import threads
from tracklet.core.values import fill_entries, to_plain
from tracklet.proto import records_pb2 as pb

_CHUNK = 1 << 20


FileDigests = dict[tuple[str, int, int, int], tuple[str, int]]


def digest(path: Path, known: FileDigests | None = None) -> tuple[str, int]:
    """SHA-256 and size in bytes of a file, or of a directory's files (relative path and digest of
    each, in sorted order) so that the same tree always gives the same digest. ``known`` maps
    (path, size, mtime_ns, inode) to digests already computed; new ones are added to it."""
    if path.is_file():
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if known is not None and key in known:
            return known[key]
        hasher = hashlib.sha256()
        size = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        if known is not None:
            known[key] = (hasher.hexdigest(), size)
        return hasher.hexdigest(), size
    if path.is_dir():
        hasher = hashlib.sha256()
        total = 0
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            child_digest, child_size = digest(child, known)
            hasher.update(f"{child.relative_to(path).as_posix()}\0{child_digest}\n".encode())
            total += child_size
        return hasher.hexdigest(), total
    raise FileNotFoundError(f"no such file or directory: {path}")


class CheckpointRecorder:
    """One daemon thread per run that digests checkpoints in the order they were logged."""

    def __init__(self, put: Callable[[Any], None]) -> None:
        self._put = put
        self._requests: queue.Queue[tuple | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.digests: FileDigests = {}  # only the checkpoint thread touches it

    def submit(self, path: str | os.PathLike, *, step: int, score: float | None, monitor: str | None,
               metadata: dict[str, Any] | None) -> None:
        resolved = Path(path).expanduser().absolute()
        plain_metadata = to_plain(metadata or {})
        if not isinstance(plain_metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict; got {type(metadata).__name__}")
        if score is not None:
            score = float(score)
        self._requests.put((resolved, step, score, monitor or "", plain_metadata, time.time()))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tracklet-checkpoints", daemon=True)
            threads.start(self._thread)

    def _run(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            self._put(self._record(*request))

    def _record(self, path: Path, step: int, score: float | None, monitor: str, metadata: dict,
                when: float) -> pb.Record:
        record = pb.Record()
        checkpoint = record.checkpoint
        checkpoint.path = str(path)
        checkpoint.step = step
        checkpoint.time = when
        checkpoint.monitor = monitor
        if score is not None:
            checkpoint.has_score = True
            checkpoint.score = score
        fill_entries(checkpoint.metadata, metadata)
        try:
            checkpoint.sha256, checkpoint.size_bytes = digest(path, self.digests)
        except Exception as error:  # a vanished file, or anything else: recorded, never the thread's end
            checkpoint.error = f"{type(error).__name__}: {error}"
        return record

    def close(self, timeout: float) -> bool:
        """Digest what is pending (within ``timeout``) and stop the thread. False on timeout."""
        if self._thread is None:
            return True
        self._requests.put(None)
        threads.join(self._thread, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)
        return not self._thread.is_alive()
