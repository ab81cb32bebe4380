"""The record log: one append-only file per run, the run's source of truth.

Layout: an 8-byte header (``MAGIC``), then frames. A frame is a little-endian ``uint32`` payload
length, a ``uint32`` CRC-32 of the payload, and the payload: one serialized ``tracklet.v1.Record``.
The strict scanner (uploads, server copies) stops at the first frame that is incomplete (a torn
tail after ``kill -9`` or power loss) or fails its checksum, and reports where. Readers scan with
``resync=True``: each damaged region is reported and reading goes on at the next intact frame.
A resumed writer never deletes bytes; an unreadable tail is moved to a sidecar file first.
docs/architecture.md ("The record log format, damage and recovery") has the rules and bounds.

The writer owns its file through an exclusive ``flock``: a reader that can take the lock knows no
process is writing the run any more.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any
from tracklet.errors import RecordLogError  # noqa: F401  (defined there; imported from here too)

try:
    import fcntl
except ImportError:  # Windows: liveness falls back to the exit record alone
    fcntl = None  # type: ignore[assignment]

MAGIC = b"TRKLOG\x01\n"
FRAME_HEADER = struct.Struct("<II")
# A length beyond this is damage, not data: no single record is allowed to be this big.
MAX_RECORD_BYTES = 1 << 30
LOG_FILE_NAME = "run.tlog"
PROBE_WAIT = 1.0  # how long a new writer waits out readers' shared-lock probes (RecordLogWriter._lock)
# Buffers per writev call (the OS's limit; POSIX guarantees at least 16).
_writev = getattr(os, "writev", None)
try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16


def frame(payload: bytes) -> bytes:
    return frame_header(payload) + payload


# zlib.crc32 releases the GIL for buffers of more than 5 KiB (CPython's zlibmodule.c). On the
# sender's worker, beside a training loop that holds the GIL, each release cost the worker a switch
# interval (5 ms) to get it back, in the middle of every record: a tight loop then left it twice as
# many rows to encode inside finish(). Pieces of at most this size are checksummed holding it
# (~1 µs a piece: 40 µs for a 2,000-row record).
_CRC_PIECE = 4096


def frame_header(payload: bytes) -> bytes:
    """The 8 bytes a frame of ``payload`` starts with (its length and CRC-32)."""
    if len(payload) <= _CRC_PIECE:
        return FRAME_HEADER.pack(len(payload), zlib.crc32(payload))
    view = memoryview(payload)
    crc = 0
    for start in range(0, len(view), _CRC_PIECE):
        crc = zlib.crc32(view[start : start + _CRC_PIECE], crc)
    return FRAME_HEADER.pack(len(payload), crc)


# The smallest frame a ``Gap`` record fits in: a header, the record's tag and length, a length field.
MIN_GAP_BYTES = FRAME_HEADER.size + 8


def gap_frame(length: int, reason: str) -> bytes | None:
    """Intact frames of exactly ``length`` bytes holding ``Gap`` records: what an upload puts
    where the local log is damaged, so every later frame keeps its offset. One frame, or two
    where a length prefix's growth makes one impossible (a few sizes, e.g. 139 bytes). ``None``
    when no record fits in ``length`` bytes (fewer than ``MIN_GAP_BYTES``)."""
    if length < MIN_GAP_BYTES:
        return None
    single = _one_gap_frame(length, reason)
    if single is not None:
        return single
    head = _one_gap_frame(2 * MIN_GAP_BYTES, "")
    tail = _one_gap_frame(length - 2 * MIN_GAP_BYTES, reason)
    return head + tail if head is not None and tail is not None else None


def _one_gap_frame(length: int, reason: str) -> bytes | None:
    from tracklet.proto import records_pb2 as pb

    if length < MIN_GAP_BYTES:
        return None
    reason = reason.encode("utf-8", "replace")[:200].decode("utf-8", "ignore")
    record = pb.Record()
    # A padding length whose own length prefix grows by a byte can overshoot by one: a space
    # more in the reason (or a shorter reason, for the smallest gaps) lands it exactly.
    for text in (reason, reason + " ", reason + "  ", reason[:-1], "", " ", "  "):
        record.gap.Clear()
        record.gap.length = length
        record.gap.reason = text
        estimate = length - FRAME_HEADER.size - record.ByteSize()
        for padding in range(max(0, estimate - 12), estimate + 1):
            record.gap.padding = bytes(padding)
            if FRAME_HEADER.size + record.ByteSize() == length:
                return frame(record.SerializeToString())
    return None


@dataclasses.dataclass
class Damage:
    """Bytes of a record log that hold no readable frame: from ``offset`` to ``end`` (the next
    intact frame, where reading resumed), or to the end of the file when ``end`` is ``None``."""

    offset: int
    file_size: int
    reason: str
    end: int | None = None

    @property
    def torn_tail(self) -> bool:
        """True when the damage is an incomplete last frame (what a killed writer leaves)."""
        return self.end is None and self.reason.startswith("incomplete")

    @property
    def length(self) -> int:
        """How many bytes were skipped."""
        return (self.file_size if self.end is None else self.end) - self.offset

    def describe(self, path: Path | str | None = None) -> str:
        where = f"record log {path} is damaged" if path is not None else "damaged"
        if self.end is None:
            return (
                f"{where} at byte {self.offset} ({self.reason}); "
                f"read every record before it, {self.length} byte(s) after it were skipped"
            )
        return (
            f"{where} at byte {self.offset} ({self.reason}); skipped {self.length} byte(s) "
            f"and resumed reading at the next intact frame, byte {self.end}"
        )


@dataclasses.dataclass
class ScanResult:
    payloads: list[tuple[int, bytes]]  # (offset of the frame, payload)
    end_offset: int  # where the last intact frame read ends
    damage: Damage | None  # the first damaged region, if any
    damages: list[Damage] = dataclasses.field(default_factory=list)  # every damaged region, in order

    def __post_init__(self) -> None:
        if self.damage is not None and not self.damages:
            self.damages = [self.damage]


BAD_HEADER = "bad header: not a tracklet record log, or its first bytes are damaged (zero-filled?)"


def scan(data: bytes, *, resync: bool = False) -> ScanResult:
    """Split a record log's bytes into payloads.

    Strict (the default): stop at the first damaged frame, and raise ``RecordLogError`` when the
    header is wrong; what uploads and copies use, since they move an intact prefix byte for byte.
    ``resync=True`` (what readers use): a bad header or a damaged frame is recorded as a
    :class:`Damage` and reading goes on at the next intact frame (see :func:`scan_frames`)."""
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            return ScanResult([], len(data), Damage(0, len(data), "incomplete header") if data else None)
        if not resync:
            raise RecordLogError("not a tracklet record log (bad header)")
        return ScanResult([], 0, Damage(0, len(data), BAD_HEADER))
    if data[: len(MAGIC)] != MAGIC:
        if not resync:
            raise RecordLogError("not a tracklet record log (bad header)")
        budget = _ResyncBudget(len(data))
        resume = _next_frame(data, 0, len(data), budget)
        bad = Damage(0, len(data), BAD_HEADER + budget.note(), resume)
        if resume is None:
            return ScanResult([], 0, bad)
        rest = scan_frames(data, resume, resync=True, budget=budget)
        return ScanResult(rest.payloads, rest.end_offset, bad, [bad, *rest.damages])
    return scan_frames(data, len(MAGIC), resync=resync)


def _frame_problem(data: bytes, offset: int, size: int) -> str | None:
    """Why the frame at ``offset`` is not intact, or ``None`` when it is."""
    if offset + FRAME_HEADER.size > size:
        return "incomplete frame header"
    length, checksum = FRAME_HEADER.unpack_from(data, offset)
    if length == 0:
        return "empty frame (zeroed bytes?)"  # a writer never frames an empty record
    if length > MAX_RECORD_BYTES:
        return f"implausible frame length {length}"
    start = offset + FRAME_HEADER.size
    if start + length > size:
        return f"incomplete frame: {length} byte(s) announced, {size - start} present"
    if zlib.crc32(data[start : start + length]) != checksum:
        return "checksum mismatch"
    return None


def scan_frames(data: bytes, offset: int, base: int = 0, *, resync: bool = False,
                budget: "_ResyncBudget | None" = None) -> ScanResult:
    """Frames in ``data`` from ``offset`` on (offsets reported as ``base + offset``): how an
    incremental reader continues from where it stopped.

    Strict by default: stop at the first damaged frame. With ``resync=True``, a damaged frame
    starts a :class:`Damage` region that ends at the next intact frame, and reading goes on from
    there; ``end_offset`` is then the end of the last intact frame read. The search is bounded
    (see ``_ResyncBudget``): on hostile input it costs a few passes over the bytes at most."""
    payloads: list[tuple[int, bytes]] = []
    damages: list[Damage] = []
    size = len(data)
    unpack = FRAME_HEADER.unpack_from
    crc32 = zlib.crc32
    header = FRAME_HEADER.size
    end_offset = offset
    while offset < size:
        if offset + header <= size:
            length, checksum = unpack(data, offset)
            end = offset + header + length
            if 0 < length <= MAX_RECORD_BYTES and end <= size:
                payload = data[offset + header : end]
                if crc32(payload) == checksum:
                    payloads.append((base + offset, payload))
                    offset = end_offset = end
                    continue
        problem = _frame_problem(data, offset, size) or "damaged frame"
        if not resync:
            damages.append(Damage(base + offset, base + size, problem))
            break
        if budget is None:
            budget = _ResyncBudget(size)
        resume = _next_frame(data, offset, size, budget)
        damages.append(Damage(base + offset, base + size, problem + budget.note(),
                              None if resume is None else base + resume))
        if resume is None:
            break
        offset = resume
    return ScanResult(payloads, base + end_offset, damages[0] if damages else None, damages)


class _ResyncBudget:
    """Bounds the search for the next intact frame on hostile input: at most ``candidates``
    positions examined one by one, and at most ``crc_bytes`` checksummed, per scan."""

    def __init__(self, size: int) -> None:
        self.candidates = 1_000_000 + size // 1024
        self.crc_bytes = 4 * size + (64 << 20)
        self.spent = False

    def note(self) -> str:
        return "; gave up looking for an intact frame after it (search limit reached)" if self.spent else ""


_RESYNC_CHUNK = 1 << 22


def _candidates(data: bytes, start: int, size: int) -> Any:
    """Offsets from ``start`` on where an intact frame could begin: a length below 16 MiB (its
    high byte zero) and a payload whose first byte is a length-delimited field's tag, as every
    ``Record`` begins (each kind is a message). Found with numpy, a chunk at a time."""
    import numpy as np

    tag_ok = _tag_table()
    buffer = np.frombuffer(data, dtype=np.uint8)
    last = size - FRAME_HEADER.size - 1  # the payload's first byte must be there
    position = start
    while position <= last:
        stop = min(last + 1, position + _RESYNC_CHUNK)
        high = buffer[position + 3 : stop + 3]
        first = buffer[position + 8 : stop + 8]
        hits = np.flatnonzero((high == 0) & tag_ok[first])
        for hit in hits.tolist():
            yield position + hit
        position = stop


_TAG_TABLE: Any = None


def _tag_table() -> Any:
    global _TAG_TABLE
    if _TAG_TABLE is None:
        import numpy as np

        _TAG_TABLE = np.array([byte & 7 == 2 for byte in range(256)], dtype=bool)
    return _TAG_TABLE


def _plausible_header(data: bytes, offset: int, size: int) -> bool:
    """Whether a frame could start at ``offset``: the end of the data, a header cut short by the
    end, or a length below 16 MiB followed by a tag byte (the cheap test before a checksum)."""
    if offset + FRAME_HEADER.size >= size:
        return True
    return data[offset + 3] == 0 and data[offset + 8] & 7 == 2


def _next_frame(data: bytes, damaged: int, size: int, budget: _ResyncBudget) -> int | None:
    """The offset of the next intact frame after the damaged one at ``damaged``, or ``None``.

    First the common case, one frame whose payload (or checksum) took a bit flip: its length is
    plausible and an intact frame (or the end) follows it. Otherwise every candidate position
    after ``damaged`` is tried in order; a candidate is checksummed only when what follows it
    could be a frame too, or it is small, which keeps garbage from costing a checksum per byte."""
    unpack = FRAME_HEADER.unpack_from
    header = FRAME_HEADER.size
    if damaged + header <= size:
        length, _ = unpack(data, damaged)
        after = damaged + header + length
        if 0 < length <= MAX_RECORD_BYTES and after < size and _frame_problem(data, after, size) is None:
            return after
    deferred: list[int] = []  # big candidates not followed by a plausible header: checked last
    for candidate in _candidates(data, damaged + 1, size):
        budget.candidates -= 1
        if budget.candidates < 0 or budget.crc_bytes < 0:
            budget.spent = True
            break
        length, checksum = unpack(data, candidate)
        end = candidate + header + length
        if end > size or length == 0:
            continue
        if length > _SMALL_FRAME and not _plausible_header(data, end, size):
            if len(deferred) < _MAX_DEFERRED:
                deferred.append(candidate)  # an intact frame that more damage follows, perhaps
            continue
        budget.crc_bytes -= length
        if zlib.crc32(data[candidate + header : end]) == checksum:
            return _first_intact(data, deferred, candidate, budget) or candidate
    return _first_intact(data, deferred, size, budget)


_SMALL_FRAME = 1 << 16
_MAX_DEFERRED = 4096


def _first_intact(data: bytes, candidates: list[int], before: int, budget: _ResyncBudget) -> int | None:
    """The first of ``candidates`` that is an intact frame ending by ``before``, within budget."""
    header = FRAME_HEADER.size
    for candidate in candidates:
        if candidate >= before:
            break
        if budget.crc_bytes < 0:
            budget.spent = True
            break
        length, checksum = FRAME_HEADER.unpack_from(data, candidate)
        end = candidate + header + length
        if end > before:
            continue
        budget.crc_bytes -= length
        if zlib.crc32(data[candidate + header : end]) == checksum:
            return candidate
    return None


def read_log_from(path: Path | str, offset: int, *, resync: bool = False) -> ScanResult:
    """The intact frames after byte ``offset`` (which must be a frame boundary, or 0); with
    ``resync``, also those after damaged regions (see :func:`scan_frames`)."""
    with open(path, "rb") as file:
        if offset <= 0:
            return scan(file.read(), resync=resync)
        file.seek(offset)
        return scan_frames(file.read(), 0, base=offset, resync=resync)


def read_log(path: Path | str, *, resync: bool = False) -> ScanResult:
    with open(path, "rb") as file:
        return scan(file.read(), resync=resync)


def read_first_payload(path: Path | str) -> bytes | None:
    """The first record's bytes (a run's ``RunStart``), reading no more of the file than needed."""
    with open(path, "rb") as file:
        head = file.read(len(MAGIC) + FRAME_HEADER.size)
        if len(head) < len(MAGIC) + FRAME_HEADER.size or head[: len(MAGIC)] != MAGIC:
            return None
        length, checksum = FRAME_HEADER.unpack_from(head, len(MAGIC))
        if length > MAX_RECORD_BYTES:
            return None
        payload = file.read(length)
    if len(payload) != length or zlib.crc32(payload) != checksum:
        return None
    return payload


def writer_alive(path: Path | str) -> bool | None:
    """Whether some process holds the run's writer lock. ``None`` when that can't be known."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing also releases a lock we took
    return False


def append_record(path: Path | str, end: int, payload: bytes, *, max_tail: int) -> None:
    """Append one record to a log no process is writing, whose writer closed it with its last
    frame ending at byte ``end``: the bytes after ``end`` (at most ``max_tail``; what a sender that
    outlived its ``finish()`` wrote) must be intact frames, so the new one follows an intact frame.
    ``RecordLogError`` when the log is being written, is shorter, or its tail is not intact; the
    log is then left as it was. On disk (fsync) when this returns."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordLogError(f"{path} is being written by another process") from None
        size = os.fstat(fd).st_size
        if os.read(fd, len(MAGIC)) != MAGIC:
            raise RecordLogError(f"{path} is not a tracklet record log (bad header)")
        if size < end or end < len(MAGIC):
            raise RecordLogError(f"{path} holds {size} byte(s), not the {end} its writer closed it with")
        if size > end:
            if size - end > max_tail:
                raise RecordLogError(f"{path} grew by {size - end} byte(s) after its writer closed it")
            os.lseek(fd, end, os.SEEK_SET)
            tail = b""
            while len(tail) < size - end and (chunk := os.read(fd, size - end - len(tail))):
                tail += chunk
            if scan_frames(tail, 0, base=end).end_offset != size:
                raise RecordLogError(f"{path} does not end with an intact frame")
        os.lseek(fd, size, os.SEEK_SET)
        view = memoryview(frame(payload))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # and the lock


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclasses.dataclass
class Recovery:
    """What a resumed writer found in the existing log, and what it did about it."""

    path: Path
    damages: list[Damage]
    records: int  # intact records in the log
    size: int  # the log's size before anything was moved
    sidecar: Path | None = None  # where the unreadable tail went
    moved_bytes: int = 0

    @property
    def damaged(self) -> bool:
        return bool(self.damages)

    def describe(self) -> str:
        """Exactly what was kept and where, for the resume warning."""
        kept = [d for d in self.damages if d.end is not None]
        parts = [f"resuming {self.path}: it holds {self.records} intact record(s) in {self.size} byte(s)"]
        if kept:
            regions = ", ".join(f"bytes {d.offset}-{d.end} ({d.reason})" for d in kept[:5])
            more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
            parts.append(f"damaged region(s) {regions}{more} stay in place and readers skip them; "
                         "every intact record after them is still read")
        if self.sidecar is not None:
            tail = self.damages[-1]
            parts.append(f"the unreadable last {self.moved_bytes} byte(s) from byte {tail.offset} ({tail.reason}) "
                         f"were moved to {self.sidecar}; nothing was deleted")
        parts.append("new records are appended after the last intact one")
        return "; ".join(parts)


class RecordLogWriter:
    """Appends frames to a run's record log. Used by one thread (the sender's worker).

    Frames are collected in memory and handed to the OS by ``flush()``; ``fsync=True`` also asks
    the OS to put them on disk. Plain ``os.write`` on a raw descriptor (no ``io`` buffer) so a
    process forked from the writer has no buffered copy that it could write a second time.
    """

    def __init__(self, path: Path | str, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.recovery: Recovery | None = None  # what resuming found and did (damage, a sidecar)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        try:
            self._lock()
            size = os.fstat(self._fd).st_size
            if size == 0:
                self._write_header()
                self.offset = len(MAGIC)
            elif not resume:
                raise RecordLogError(f"{self.path} already exists; pass resume to append to it")
            else:
                self.offset = self._recover_tail()
            os.lseek(self._fd, self.offset, os.SEEK_SET)
        except BaseException:
            os.close(self._fd)
            raise
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0

    def _write_header(self) -> None:
        """Start a new log. If the header can't be written (a full disk), the empty file is
        removed, so no run is left that readers would list as damaged, and the error names it."""
        try:
            if os.write(self._fd, MAGIC) != len(MAGIC):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:
            os.ftruncate(self._fd, 0)
            self.path.unlink(missing_ok=True)
            raise OSError(error.errno, f"cannot start the record log: {error.strerror}", str(self.path)) from error

    def _lock(self) -> None:
        """Take the writer's exclusive lock, or raise if another process writes the log. A reader's
        probe (``writer_alive``: a shared lock held for microseconds, by ``tracklet sync``, a
        parent's uploader passing over its run's parts, an index pass) is waited out, at most
        ``PROBE_WAIT`` seconds: a part started as a probe looked at it was refused as "being
        written"."""
        if fcntl is None:
            return
        deadline = time.monotonic() + PROBE_WAIT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            try:  # only shared holders (readers' probes), or a writer's exclusive lock?
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordLogError(f"{self.path} is being written by another process") from None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            if time.monotonic() >= deadline:
                raise RecordLogError(f"{self.path} is held by readers for over {PROBE_WAIT:.0f} s "
                                     "(a shared lock); it can't be written now") from None
            time.sleep(0.001)

    def _recover_tail(self) -> int:
        """Prepare an existing log for appending without destroying any byte of it.

        Every region the readers can't read stays where it is when intact frames follow it (the
        readers skip it and read on). Only unreadable bytes at the very end (a torn last frame, a
        zero-filled tail, garbage) are moved out of the way, into a sidecar file
        ``run.tlog.damaged-<offset>`` next to the log, so new frames follow an intact one."""
        result = read_log(self.path, resync=True)
        size = os.fstat(self._fd).st_size
        tail = result.damages[-1] if result.damages and result.damages[-1].end is None else None
        self.recovery = Recovery(self.path, result.damages, len(result.payloads), size)
        if tail is None:
            return size
        self.recovery.sidecar = self._move_aside(tail.offset, size)
        self.recovery.moved_bytes = size - tail.offset
        cut = tail.offset if tail.offset >= len(MAGIC) or result.payloads else 0
        os.ftruncate(self._fd, cut)
        os.fsync(self._fd)
        if cut < len(MAGIC):  # nothing readable at all: the log starts again with a fresh header
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, MAGIC)
            return len(MAGIC)
        return cut

    def _move_aside(self, offset: int, size: int) -> Path:
        """Copy bytes ``offset..size`` of the log into a new sidecar file, on disk before the log
        is cut; returns its path."""
        for attempt in range(1000):
            suffix = f".damaged-{offset}" + (f".{attempt}" if attempt else "")
            sidecar = self.path.with_name(self.path.name + suffix)
            try:
                fd = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            except FileExistsError:
                continue
            break
        else:
            raise RecordLogError(f"cannot create a sidecar file for the damaged tail of {self.path}")
        try:
            with open(self.path, "rb") as source:
                source.seek(offset)
                while chunk := source.read(1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.path.parent)
        return sidecar

    def write(self, payload: bytes) -> int:
        """Queue one record's bytes; returns the offset its frame will have in the file.

        The frame's header and the payload are kept as they are (no copy of the payload):
        ``flush`` hands them to the OS in one ``writev``."""
        offset = self.offset + self._pending_bytes
        self._pending += (frame_header(payload), payload)
        self._pending_bytes += FRAME_HEADER.size + len(payload)
        return offset

    def flush(self, fsync: bool = False) -> None:
        pending = self._pending
        # On a failed write (disk full) what wasn't written stays pending, for the next try.
        while pending:
            if _writev is None:  # no writev (Windows): one buffer
                pending[:] = [b"".join(pending)]
                written = os.write(self._fd, pending[0])
            else:
                written = _writev(self._fd, pending[:_IOV_MAX])
            self.offset += written
            self._pending_bytes -= written
            done = 0
            while done < len(pending) and written >= len(pending[done]):
                written -= len(pending[done])
                done += 1
            del pending[:done]
            if written:  # a buffer written in part: its rest goes next
                pending[0] = memoryview(pending[0])[written:]
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush(fsync=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    def abandon_after_fork(self) -> None:
        """In a forked child: forget buffered frames and drop the inherited descriptor (and lock)."""
        self._pending.clear()
        self._pending_bytes = 0
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
