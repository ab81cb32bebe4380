"""The record log: one append-only file per run, the run's source of truth.

Layout: an 8-byte header (``MAGIC``), then frames. A frame is a little-endian ``uint32`` payload
length, a ``uint32`` CRC-32 of the payload, and the payload: one serialized ``tracklet.v1.Record``.
A reader stops at the first frame that is incomplete (a torn tail after ``kill -9`` or power loss)
or fails its checksum, and reports where. Everything before that point is intact.

The writer owns its file through an exclusive ``flock``: a reader that can take the lock knows no
process is writing the run any more.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: liveness falls back to the exit record alone
    fcntl = None  # type: ignore[assignment]

MAGIC = b"TRKLOG\x01\n"
FRAME_HEADER = struct.Struct("<II")
# A length beyond this is damage, not data: no single record is allowed to be this big.
MAX_RECORD_BYTES = 1 << 30
LOG_FILE_NAME = "run.tlog"


class RecordLogError(Exception):
    """The file is not a tracklet record log, or is already being written."""


def frame(payload: bytes) -> bytes:
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclasses.dataclass
class Damage:
    """Where and why reading stopped before the end of the file."""

    offset: int
    file_size: int
    reason: str

    @property
    def torn_tail(self) -> bool:
        """True when the damage is an incomplete last frame (what a killed writer leaves)."""
        return self.reason.startswith("incomplete")

    def describe(self, path: Path | str) -> str:
        lost = self.file_size - self.offset
        return (
            f"record log {path} is damaged at byte {self.offset} ({self.reason}); "
            f"read every record before it, {lost} byte(s) after it were skipped"
        )


@dataclasses.dataclass
class ScanResult:
    payloads: list[tuple[int, bytes]]  # (offset of the frame, payload)
    end_offset: int  # where the intact part ends
    damage: Damage | None


def scan(data: bytes) -> ScanResult:
    """Split a record log's bytes into payloads, stopping at the first damaged frame."""
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            return ScanResult([], len(data), Damage(0, len(data), "incomplete header") if data else None)
        raise RecordLogError("not a tracklet record log (bad header)")
    if data[: len(MAGIC)] != MAGIC:
        raise RecordLogError("not a tracklet record log (bad header)")
    return scan_frames(data, len(MAGIC))


def scan_frames(data: bytes, offset: int, base: int = 0) -> ScanResult:
    """Frames in ``data`` from ``offset`` on (offsets reported as ``base + offset``): how an
    incremental reader continues from where it stopped."""
    payloads: list[tuple[int, bytes]] = []
    size = len(data)
    unpack = FRAME_HEADER.unpack_from
    crc32 = zlib.crc32
    damage = None
    while offset < size:
        if offset + FRAME_HEADER.size > size:
            damage = Damage(base + offset, base + size, "incomplete frame header")
            break
        length, checksum = unpack(data, offset)
        start = offset + FRAME_HEADER.size
        if length > MAX_RECORD_BYTES:
            damage = Damage(base + offset, base + size, f"implausible frame length {length}")
            break
        end = start + length
        if end > size:
            damage = Damage(base + offset, base + size, f"incomplete frame: {length} byte(s) announced, {size - start} present")
            break
        payload = data[start:end]
        if crc32(payload) != checksum:
            damage = Damage(base + offset, base + size, "checksum mismatch")
            break
        payloads.append((base + offset, payload))
        offset = end
    return ScanResult(payloads, base + offset, damage)


def read_log_from(path: Path | str, offset: int) -> ScanResult:
    """The intact frames after byte ``offset`` (which must be a frame boundary, or 0)."""
    with open(path, "rb") as file:
        if offset <= 0:
            return scan(file.read())
        file.seek(offset)
        return scan_frames(file.read(), 0, base=offset)


def read_log(path: Path | str) -> ScanResult:
    with open(path, "rb") as file:
        return scan(file.read())


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


class RecordLogWriter:
    """Appends frames to a run's record log. Used by one thread (the sender's worker).

    Frames are collected in memory and handed to the OS by ``flush()``; ``fsync=True`` also asks
    the OS to put them on disk. Plain ``os.write`` on a raw descriptor (no ``io`` buffer) so a
    process forked from the writer has no buffered copy that it could write a second time.
    """

    def __init__(self, path: Path | str, *, resume: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        try:
            self._lock()
            size = os.fstat(self._fd).st_size
            if size == 0:
                os.write(self._fd, MAGIC)
                self.offset = len(MAGIC)
            elif not resume:
                raise RecordLogError(f"{self.path} already exists; pass resume to append to it")
            else:
                self.offset = self._recover_tail()
            os.lseek(self._fd, self.offset, os.SEEK_SET)
        except BaseException:
            os.close(self._fd)
            raise
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.recovered_damage: Damage | None = getattr(self, "recovered_damage", None)

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordLogError(f"{self.path} is being written by another process") from None

    def _recover_tail(self) -> int:
        """Cut a torn or damaged tail off an existing log so new frames follow intact ones."""
        result = read_log(self.path)
        self.recovered_damage = result.damage
        if result.damage is not None:
            os.ftruncate(self._fd, result.end_offset)
        if result.end_offset < len(MAGIC):
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, MAGIC)
            return len(MAGIC)
        return result.end_offset

    def write(self, payload: bytes) -> int:
        """Queue one record's bytes; returns the offset its frame will have in the file."""
        framed = frame(payload)
        offset = self.offset + self._pending_bytes
        self._pending.append(framed)
        self._pending_bytes += len(framed)
        return offset

    def flush(self, fsync: bool = False) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending = [data]
            written = 0
            try:
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            finally:  # on a failed write (disk full) keep what wasn't written for the next try
                self.offset += written
                self._pending = [data[written:]] if written < len(data) else []
                self._pending_bytes = len(data) - written
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
