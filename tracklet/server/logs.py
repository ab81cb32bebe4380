"""The server's copies of record logs: validated, serialized, durable appends by offset.

A copy lives where a client's log would (``<root>/projects/<project>/runs/<run_id>/run.tlog``)
so the ordinary ``Indexer`` reads it. Every append to one run holds that run's lock, writes the
new bytes after the current end and fsyncs before it is acknowledged. The first time a process
touches a copy it cuts a torn tail (a server killed inside a write) back to the last intact frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet.core.layout import InvalidName, RunPaths
from tracklet.core.recordlog import FRAME_HEADER, MAGIC, RecordLogError, read_log, scan, scan_frames
from tracklet.core.validate import RecordRejected, check_record, decode_record
from tracklet.errors import BadRequest, OffsetConflict  # noqa: F401  (defined there; imported from here too)

if TYPE_CHECKING:
    from tracklet.store import Store


@dataclasses.dataclass
class AppendResult:
    offset: int  # the copy's size after the append: where the next request starts
    appended: int  # new bytes written (0 for a pure resend)


def run_paths(root: Path, project: str, run_id: str, part: str | None = None) -> RunPaths:
    """``RunPaths`` for client-supplied names (``part``: a shared run's secondary writer's label,
    docs/shared-runs.md): ``BadRequest`` (HTTP 400) naming the problem when one is not a valid
    name."""
    try:
        return RunPaths(root, project, run_id, part)
    except InvalidName as error:
        raise BadRequest(str(error)) from None


def _copy_key(paths: RunPaths) -> tuple[str, str]:
    """A copy's key in the per-copy caches and locks: the run, or one of its parts."""
    return (paths.project, paths.run_id if paths.part is None else f"{paths.run_id}/{paths.part}")


def check_frames(body: bytes, offset: int) -> None:
    """Raise ``BadRequest`` unless ``body`` is whole, intact frames (after the header at offset 0)."""
    if offset == 0:
        if len(body) < len(MAGIC) or body[: len(MAGIC)] != MAGIC:
            raise BadRequest(
                f"a body at offset 0 must start with the record log header {MAGIC!r}; got {body[:8]!r}"
            )
        try:
            result = scan(body)
        except RecordLogError as error:
            raise BadRequest(str(error)) from None
    elif 0 < offset < len(MAGIC):
        raise BadRequest(f"offset {offset} is inside the record log header; use 0 or a frame boundary")
    else:
        result = scan_frames(body, 0)
    if result.damage is not None:
        raise BadRequest(
            f"body is not whole, intact frames: {result.damage.reason} at body byte {result.damage.offset} "
            f"(request offset {offset} + {result.damage.offset}); nothing was stored"
        )


def check_records(tail: bytes, at: int, known_keys: int, run: str = "") -> int:
    """Raise ``BadRequest`` naming the first frame of ``tail`` (whole frames that will be stored
    at byte ``at`` of a copy whose records defined ``known_keys`` key ids) that isn't a record
    every consumer can fold (``core/validate.py``); return the key count after the tail. ``run``
    (``project/run_id``) is named in the error."""
    skip = len(MAGIC) if at == 0 else 0  # a copy's first bytes are the header
    for offset, payload in scan_frames(tail, skip, base=at).payloads:
        try:
            known_keys = check_record(decode_record(payload), known_keys)
        except RecordRejected as error:
            log = f"the log of run {run}" if run else "the log"
            raise BadRequest(f"the frame at byte {offset} of {log} is not a valid record: {error}; "
                             "nothing of this request was stored") from None
    return known_keys


def iter_payloads(read: Callable[[int, int], bytes], start: int, end: int,
                  chunk_bytes: int = 16 << 20) -> Iterator[bytes]:
    """The payloads of a stored copy's frames in bytes [start, end) (start: 0 or a frame
    boundary), read through ``read(start, end)`` about ``chunk_bytes`` at a time."""
    position = max(start, len(MAGIC))
    while position < end:
        data = read(position, min(end, position + chunk_bytes))
        result = scan_frames(data, 0, base=position)
        if not result.payloads:
            if result.damage is None or not result.damage.torn_tail or len(data) < FRAME_HEADER.size:
                return  # a damaged stored copy: nothing more to count
            length = FRAME_HEADER.unpack_from(data)[0]  # one frame bigger than the chunk
            result = scan_frames(read(position, min(end, position + FRAME_HEADER.size + length)), 0, base=position)
            if not result.payloads:
                return
        for _, payload in result.payloads:
            yield payload
        position = result.end_offset


def _count_keys(payload: bytes, known: int) -> int:
    """The key count after a stored record (lenient: copies stored before validation existed
    may hold anything; this never allocates per id)."""
    try:
        record = decode_record(payload)
    except RecordRejected:
        return known
    if record.WhichOneof("kind") == "history":
        for definition in record.history.new_keys:
            known = max(known, definition.id + 1)
    return known


class KeyCounts:
    """How many key ids each run's copy defines: the state ``check_records`` needs.

    Cached per run with the copy size it belongs to. When the size moved (after a restart, or
    another server process appended), counting starts from what the store indexed (the run's
    ``log_offset`` and ``keys``) or from the cache, whichever is further, and reads on from there."""

    def __init__(self, store: Store | None = None) -> None:
        """``store``: the ``Store`` whose ``indexed_keys`` give a starting point (None: count from
        the copy's first byte)."""
        self.store = store
        self._cache: dict[tuple[str, str], tuple[int, int]] = {}
        self._guard = threading.Lock()

    def known(self, project: str, run_id: str) -> bool:
        """Whether a count of the run is cached (at some size): a start that needs no store."""
        with self._guard:
            return (project, run_id) in self._cache

    def indexed(self, project: str, run_id: str) -> tuple[int, int] | None:
        """(log offset, key count) as the store has the run, or None."""
        if self.store is None:
            return None
        try:
            return self.store.indexed_keys(project, run_id)
        except Exception:  # no store tables yet, or the store is unreachable: count from the copy
            return None

    def at(self, project: str, run_id: str, size: int, read: Callable[[int, int], bytes],
           indexed: Callable[[], tuple[int, int] | None] | None = None) -> int:
        """The key count of the copy's first ``size`` bytes; call with the run's append lock held
        (``indexed``: where the store's count comes from, instead of asking the store now)."""
        with self._guard:
            cached = self._cache.get((project, run_id))
        if cached is not None and cached[0] == size:
            return cached[1]
        start, count = 0, 0
        from_store = indexed() if indexed is not None else self.indexed(project, run_id)
        for candidate in (cached, from_store):
            if candidate is not None and start < candidate[0] <= size:
                start, count = candidate
        for payload in iter_payloads(read, start, size):
            count = _count_keys(payload, count)
        self.set(project, run_id, size, count)
        return count

    def set(self, project: str, run_id: str, size: int, count: int) -> None:
        with self._guard:
            self._cache[(project, run_id)] = (size, count)


def new_tail(body: bytes, offset: int, size: int, stored: Callable[[int, int], bytes]) -> bytes:
    """What of ``body`` (the client's bytes from ``offset``) to append to a copy of ``size``
    bytes: all of it when ``offset == size``; for a resend, the part past ``size`` once the
    overlap equals ``stored(offset, ...)``; ``OffsetConflict`` on a gap, a mismatch or a tail
    that doesn't start on a frame boundary. The rules of every copy store (local or segments)."""
    if offset > size:
        raise OffsetConflict(f"gap: the server has {size} byte(s) of this run, the body starts at {offset}", size)
    if offset == size:
        return body
    overlap = min(len(body), size - offset)
    if stored(offset, offset + overlap) != body[:overlap]:
        raise OffsetConflict(f"the body differs from the stored bytes at offset {offset}: the log was replaced?", size)
    tail = body[overlap:]
    if tail:
        try:
            check_frames(tail, size)
        except BadRequest:
            raise OffsetConflict(f"offset {size} is not a frame boundary of the body", size) from None
    return tail


#: Parts (secondary writers' logs) a shared run may have on a server by default (``tracklet server
#: --max-parts-per-run``): a part per rank of a 2,048-GPU job.
MAX_PARTS_PER_RUN = 2048


class LogCopies:
    """All record log copies under one data root, with a lock per run."""

    def __init__(self, root: Path, key_counts: KeyCounts | None = None, *,
                 max_parts: int = MAX_PARTS_PER_RUN) -> None:
        """``max_parts``: how many parts a shared run may have here; the upload that would start
        one more is refused (400, naming the limit and the run)."""
        self.root = Path(root)
        self.key_counts = key_counts if key_counts is not None else KeyCounts()
        self.max_parts = max_parts
        self._guard = threading.Lock()
        # A lock per copy while someone uses it: a client asking offsets of runs or labels that don't
        # exist (any number of them) leaves nothing behind.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], threading.Lock] = weakref.WeakValueDictionary()
        self._verified: set[tuple[str, str]] = set()

    def _lock(self, paths: RunPaths) -> threading.Lock:
        key = _copy_key(paths)
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _size(self, paths: RunPaths) -> int:
        """The copy's intact size (0 when there is none); call with the run's lock held. A part
        is checked against the run's other parts the first time (``_check_label``)."""
        key = _copy_key(paths)
        log_file = paths.log_file
        if key not in self._verified and paths.part is not None:
            check_label(paths)
        if not log_file.is_file():
            return 0
        if key not in self._verified:
            self._recover(log_file)
            self._verified.add(key)
        return log_file.stat().st_size

    def _check_new_part(self, paths: RunPaths) -> None:
        """Refuse a part that would take the run past ``max_parts`` (one ``scandir``, on a
        part's first upload only). The run's other parts are counted: this one's own file may be
        there already, empty (its first write failed, or the server was killed inside it), and is
        no part past the limit when uploaded again."""
        count = len([label for label in paths.parts() if label != paths.part])
        if count >= self.max_parts:
            raise BadRequest(f"run {paths.project}/{paths.run_id} has {count} parts (secondary writers' logs), the "
                             f"most this server keeps for one run (--max-parts-per-run {self.max_parts}): part "
                             f"{paths.part!r} was not stored; use fewer labels (one per node, not per process) or "
                             "ask the server's operator to raise the limit")

    @staticmethod
    def _recover(log_file: Path) -> None:
        try:
            result = read_log(log_file)
        except RecordLogError as error:  # never written by this server: don't guess, don't delete
            raise RuntimeError(f"the server's copy {log_file} is not a record log: {error}") from None
        if result.damage is not None:
            end = 0 if result.end_offset < len(MAGIC) else result.end_offset
            with open(log_file, "r+b") as handle:
                handle.truncate(end)
                os.fsync(handle.fileno())

    def check_label(self, project: str, run_id: str, part: str) -> None:
        """400 when another part of the run has a label that differs from ``part`` in case only."""
        check_label(run_paths(self.root, project, run_id, part))

    # A run's media retention (docs/media.md, "Retention"): its media-retention.json beside its log.
    # SegmentCopies has the same three methods, for its copies in shared storage.

    def has_log(self, project: str, run_id: str) -> bool:
        """Whether the run's own log is here."""
        return run_paths(self.root, project, run_id).log_file.is_file()

    def media_cutoffs(self, project: str, run_id: str) -> dict[str, int]:
        """Each media key's first kept step (``retention.read_cutoffs``: ValueError for a damaged file)."""
        from tracklet.media.retention import read_cutoffs

        return read_cutoffs(run_paths(self.root, project, run_id).run_dir)

    def merge_media_cutoffs(self, project: str, run_id: str, cutoffs: dict[str, int],
                            policy: dict[str, Any]) -> dict[str, int]:
        """Move the run's retention forward to ``cutoffs`` (``retention.merge_cutoffs``); the cutoffs now in force."""
        from tracklet.media.retention import merge_cutoffs

        return merge_cutoffs(run_paths(self.root, project, run_id).run_dir, cutoffs, policy)

    def offset(self, project: str, run_id: str, part: str | None = None) -> int:
        """Where the client resumes: the size of the stored copy (of the run's part ``part``),
        0 when the run is unknown."""
        paths = run_paths(self.root, project, run_id, part)
        with self._lock(paths):
            return self._size(paths)

    def append(self, project: str, run_id: str, offset: int, body: bytes, part: str | None = None) -> AppendResult:
        """Apply ``body`` (the client's log bytes from ``offset``; ``part``: of the run's part
        written by that label): append, accept a resend, or raise ``OffsetConflict`` on a gap or a
        mismatch."""
        paths = run_paths(self.root, project, run_id, part)
        counted = _copy_key(paths)[1]
        indexed = (lambda: None) if part is not None else None  # the store counts the run's own keys only
        if offset < 0:
            raise BadRequest(f"offset must be 0 or more; got {offset}")
        if body:
            check_frames(body, offset)
        with self._lock(paths):
            size = self._size(paths)

            def stored(start: int, end: int) -> bytes:
                with open(paths.log_file, "rb") as handle:
                    handle.seek(start)
                    return handle.read(end - start)

            tail = new_tail(body, offset, size, stored)
            # A new part is created under the run's own lock too (the lock order: a part's, then the
            # run's), so two labels that differ in case, or the parts past the limit, can't race in.
            creating = bool(tail) and size == 0 and part is not None
            with self._lock(run_paths(self.root, project, run_id)) if creating else contextlib.nullcontext():
                if creating:
                    check_label(paths)
                    self._check_new_part(paths)
                if tail:
                    keys = check_records(tail, size, self.key_counts.at(project, counted, size, stored, indexed),
                                         f"{project}/{counted}")
                    self._write(paths, size, tail)
                    self.key_counts.set(project, counted, size + len(tail), keys)
            return AppendResult(offset=size + len(tail), appended=len(tail))

    @staticmethod
    def _write(paths: RunPaths, at: int, data: bytes) -> None:
        run_dir = paths.log_file.parent  # the run's directory, or its parts/
        created = not run_dir.is_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.log_file, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            os.lseek(fd, at, os.SEEK_SET)
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:  # disk full, I/O error: leave the copy as it was acknowledged
                os.ftruncate(fd, at)
                raise
        finally:
            os.close(fd)
        if created:  # make the new directory entries durable too
            for directory in (run_dir, run_dir.parent, run_dir.parent.parent):
                dir_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)


def check_label(paths: RunPaths) -> None:
    """``BadRequest`` when another part of the run has a label that differs from ``paths.part``
    in case only (``Rank_1`` beside ``rank_1``): on a case-insensitive file system the two would
    be one file, so a server refuses the second label everywhere, and so behaves alike on every
    file system. (The characters and length were checked by ``RunPaths``.)"""
    assert paths.part is not None
    folded = paths.part.casefold()
    for label in paths.parts():
        if label != paths.part and label.casefold() == folded:
            raise BadRequest(f"part {paths.part!r} of run {paths.project}/{paths.run_id} differs only in case from its "
                             f"part {label!r}: labels of one run must differ in more than case (a case-insensitive "
                             "file system holds one file for both); pick another label")


PART_DESCRIPTION = ("A shared run's secondary writer's label: the bytes are that writer's log, kept beside the "
                    "run's own (docs/shared-runs.md)")


def check_part(app: Any, part: str | None) -> str | None:
    """``part``, where the server keeps it: files under its data root (``LogCopies``) or segments
    in shared storage (``segments.SegmentCopies``, keyed by run and label)."""
    return part
