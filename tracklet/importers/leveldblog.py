"""Reads W&B's ``run-*.wandb`` files: a LevelDB-log framed stream of serialized records.

Layout (from LevelDB's public log format and W&B's datastore): a 7-byte file header (``:W&B``,
a little-endian ``uint16`` magic ``0xBEE1``, a version byte), then 32 KiB blocks of physical
records. A physical record is a 7-byte header — ``uint32`` checksum, ``uint16`` length, one type
byte (FULL 1, FIRST 2, MIDDLE 3, LAST 4) — and its data; a logical record longer than what is
left of a block is split FIRST, MIDDLE..., LAST across blocks. A block's last 0-6 bytes, too
few for a header, are zero padding. The checksum covers the type byte and the data: W&B writes
plain CRC-32 (IEEE, zlib's), where LevelDB itself writes a masked CRC-32C; both are accepted
(the first record decides which one the file uses).

Reading stops at the first damaged or incomplete record, like tracklet's own record log reader:
every logical record before it is returned, and :class:`~tracklet.core.recordlog.Damage` says
where and why reading stopped.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable

from tracklet.core.recordlog import Damage, ScanResult
from tracklet.importers.crc32c import masked_crc32c
from tracklet.errors import NotAWandbFile  # noqa: F401  (defined there; imported from here too)

FILE_HEADER = struct.Struct("<4sHB")
IDENT = b":W&B"
MAGIC = 0xBEE1
BLOCK_SIZE = 32 * 1024
RECORD_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


_TYPE_CRC = [zlib.crc32(bytes((kind,))) for kind in range(256)]  # CRC-32 of the type byte, to seed with


def _ieee(data: bytes, kind: int) -> int:
    return zlib.crc32(data, _TYPE_CRC[kind])


def _castagnoli(data: bytes, kind: int) -> int:
    return masked_crc32c(bytes((kind,)) + data)


def scan(data: bytes) -> ScanResult:
    """Split a ``.wandb`` file's bytes into logical records (offset of the first fragment, bytes)."""
    size = len(data)
    if size < FILE_HEADER.size:
        if IDENT.startswith(data[:4]):
            return ScanResult([], size, Damage(0, size, "incomplete header") if data else None)
        raise NotAWandbFile("not a W&B run file (no :W&B header)")
    ident, magic, _version = FILE_HEADER.unpack_from(data, 0)
    if ident != IDENT or magic != MAGIC:
        raise NotAWandbFile("not a W&B run file (bad header)")
    payloads: list[tuple[int, bytes]] = []
    checksum: Callable[[bytes, int], int] | None = None
    ieee = False
    crc32, seeds = zlib.crc32, _TYPE_CRC
    unpack = RECORD_HEADER.unpack_from
    header_size = RECORD_HEADER.size
    offset = FILE_HEADER.size
    end_offset = offset  # the end of the last complete logical record
    parts: list[bytes] = []
    first_offset = offset
    damage = None
    while offset < size:
        left_in_block = BLOCK_SIZE - offset % BLOCK_SIZE
        if left_in_block < header_size:  # the block's zero padding
            offset += left_in_block
            if not parts:
                end_offset = min(offset, size)
            continue
        if offset + header_size > size:
            damage = Damage(offset, size, "incomplete record header")
            break
        expected, length, kind = unpack(data, offset)
        start = offset + header_size
        end = start + length
        if end > size:
            damage = Damage(offset, size, f"incomplete record: {length} byte(s) announced, {size - start} present")
            break
        if length > left_in_block - header_size:
            damage = Damage(offset, size, f"record length {length} crosses a block boundary")
            break
        fragment = data[start:end]
        if kind == 0 and length == 0 and expected == 0:  # zeroed space a writer preallocated
            offset += left_in_block
            continue
        if ieee:  # W&B's checksum, inline: a record per logged row
            if crc32(fragment, seeds[kind]) != expected:
                damage = Damage(offset, size, "checksum mismatch")
                break
        elif checksum is None:
            checksum = next((f for f in (_ieee, _castagnoli) if f(fragment, kind) == expected), None)
            if checksum is None:
                damage = Damage(offset, size, "checksum mismatch")
                break
            ieee = checksum is _ieee
        elif checksum(fragment, kind) != expected:
            damage = Damage(offset, size, "checksum mismatch")
            break
        if kind == FULL and not parts:
            payloads.append((offset, fragment))
            end_offset = end
        elif kind == FIRST and not parts:
            parts, first_offset = [fragment], offset
        elif kind == MIDDLE and parts:
            parts.append(fragment)
        elif kind == LAST and parts:
            parts.append(fragment)
            payloads.append((first_offset, b"".join(parts)))
            parts = []
            end_offset = end
        else:
            damage = Damage(offset, size, f"unexpected record type {kind}")
            break
        offset = end
    if parts:  # the damage (or the end of the file) came inside a split record: it starts there
        reason = damage.reason if damage is not None else "incomplete record: the file ends inside a split record"
        damage = Damage(first_offset, size, reason)
    return ScanResult(payloads, end_offset, damage)
