"""sha256 of an open file, read in 1 MiB pieces: what artifacts and run-file uploads both hash with
(here, in the core layer, so the HTTP client can use it without importing artifacts)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

PIECE = 1 << 20


def sha256_handle(handle: Any, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of what is left to read from an open binary file, read into one 1 MiB
    buffer (hashlib releases the GIL on each piece)."""
    hasher = hashlib.sha256()
    size = hash_handle(handle, hasher, on_bytes)
    return hasher.hexdigest(), size


def hash_handle(handle: Any, hasher: Any, on_bytes: Callable[[int], None] | None = None,
                piece: int = PIECE) -> int:
    """Feed what is left to read from an open binary file to ``hasher.update``, read into one
    buffer of ``piece`` bytes; the bytes read."""
    size = 0
    buffer = bytearray(piece)
    view = memoryview(buffer)
    while read := handle.readinto(buffer):
        hasher.update(view[:read])
        size += read
        if on_bytes is not None:
            on_bytes(read)
    return size
