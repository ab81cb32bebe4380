"""CRC-32C (Castagnoli), masked the way LevelDB and TFRecord files store it.

The checksum itself comes from ``google-crc32c`` (hardware-accelerated where the CPU has the
instruction, with its own pure-Python fallback); this module only adds the masking.
"""

from __future__ import annotations

try:
    import google_crc32c
except ImportError as error:
    from tracklet.core.export import MissingDependency

    raise MissingDependency(
        "tracklet import needs google-crc32c (the checksums of W&B and TensorBoard files): "
        "pip install 'tracklet[import]'"
    ) from error

MASK_DELTA = 0xA282EAD8
crc32c_value = google_crc32c.value  # the unmasked checksum, for loops that mask inline


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def mask(crc: int) -> int:
    """Rotate right by 15 bits and add a constant: what LevelDB and TFRecord store, so that a
    checksum computed over data that itself holds checksums stays well-distributed."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    return mask(google_crc32c.value(data))
