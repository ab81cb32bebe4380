"""Reads TFRecord files, the framing of TensorBoard's ``events.out.tfevents.*`` files.

A record is a little-endian ``uint64`` length, the masked CRC-32C of those 8 bytes, the data,
and the masked CRC-32C of the data (TensorFlow's public record format). Reading stops at the
first damaged or incomplete record; every record before it is returned and
:class:`~tracklet.core.recordlog.Damage` says where and why reading stopped.
"""

from __future__ import annotations

import struct

from tracklet.core.recordlog import MAX_RECORD_BYTES, Damage, ScanResult
from tracklet.importers.crc32c import MASK_DELTA, crc32c_value, masked_crc32c

HEADER = struct.Struct("<QI")
FOOTER = struct.Struct("<I")


def scan(data: bytes) -> ScanResult:
    """Split a TFRecord file's bytes into records (offset, data)."""
    payloads: list[tuple[int, bytes]] = []
    size = len(data)
    offset = 0
    damage = None
    unpack_header = HEADER.unpack_from
    unpack_footer = FOOTER.unpack_from
    crc = crc32c_value
    delta = MASK_DELTA
    # The checksum is masked inline (rotate right 15, add a constant): one call per check, as
    # event files hold a record per logged value.
    while offset < size:
        if offset + HEADER.size > size:
            damage = Damage(offset, size, "incomplete record header")
            break
        length, length_crc = unpack_header(data, offset)
        c = crc(data[offset : offset + 8])
        if ((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF) != length_crc:
            damage = Damage(offset, size, "length checksum mismatch")
            break
        if length > MAX_RECORD_BYTES:
            damage = Damage(offset, size, f"implausible record length {length}")
            break
        start = offset + HEADER.size
        end = start + length
        if end + FOOTER.size > size:
            present = max(0, size - start)
            damage = Damage(offset, size, f"incomplete record: {length} byte(s) announced, {present} present")
            break
        payload = data[start:end]
        c = crc(payload)
        if ((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF) != unpack_footer(data, end)[0]:
            damage = Damage(offset, size, "data checksum mismatch")
            break
        payloads.append((offset, payload))
        offset = end + FOOTER.size
    return ScanResult(payloads, offset, damage)


def frame(payload: bytes) -> bytes:
    """One record's bytes (used by tests to write damaged files on purpose)."""
    length = struct.pack("<Q", len(payload))
    return length + FOOTER.pack(masked_crc32c(length)) + payload + FOOTER.pack(masked_crc32c(payload))
