"""sha256 of an open file, read in 1 MiB pieces: what artifacts and run-file uploads both hash with
(here, in the core layer, so the HTTP client can use it without importing artifacts); and of small
bytes in memory without loading OpenSSL (:func:`sha256_hex`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

PIECE = 1 << 20
#: Bytes in memory up to this size are hashed by CPython's built-in SHA-256 (see :func:`sha256_hex`).
SMALL_BYTES = 1 << 16


def sha256_hex(data: bytes) -> str:
    """The sha256 (hex) of ``data``. Up to ``SMALL_BYTES`` (a source file, a diff, a manifest)
    through CPython's built-in SHA-256, unless ``hashlib`` has loaded OpenSSL already: loading it
    costs ~3 ms of CPU in a fresh process, which a run's code snapshot or a dirty work tree's diff
    paid inside ``finish()``, against ~0.2 ms to hash 64 KiB the built-in way (~300 MB/s, OpenSSL
    ~1.5 GB/s). Bigger data goes to OpenSSL, which also releases the GIL while it hashes."""
    if len(data) <= SMALL_BYTES and "_hashlib" not in sys.modules:
        builtin = _builtin_sha256()
        if builtin is not None:
            return str(builtin(data).hexdigest())
    import hashlib

    return hashlib.sha256(data).hexdigest()


class HashedBytes:
    """Bytes together with their sha256, computed here from these very bytes: the one way to hand
    ``BlobStore.put_bytes`` (and an artifact's in-memory file) a digest it does not hash again. A
    digest string from anywhere else (a record, a manifest, a server's answer) can't become one
    without the bytes being hashed, so a blob is never stored under a name its bytes don't hash
    to. What a run's code snapshot is made of: each file is hashed once, as it is read."""

    __slots__ = ("_data", "_digest")

    def __init__(self, data: bytes) -> None:
        frozen = bytes(data)  # a bytearray or memoryview could change after it was hashed
        self._data = frozen
        self._digest = sha256_hex(frozen)

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def digest(self) -> str:
        """The sha256 (hex) of ``data``."""
        return self._digest

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"HashedBytes({len(self._data)} bytes, sha256 {self._digest[:12]})"


_BUILTIN_SHA256: list[Any] = []  # CPython's built-in constructor (or None), once looked up


def _builtin_sha256() -> Any:
    """CPython's own SHA-256 constructor (``_sha2`` from 3.12, ``_sha256`` before), or None in
    an interpreter built without it. Looked up once: a failed import searches all of ``sys.path``."""
    if not _BUILTIN_SHA256:
        name = "_sha2" if sys.version_info >= (3, 12) else "_sha256"
        try:
            _BUILTIN_SHA256.append(importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            _BUILTIN_SHA256.append(None)
    return _BUILTIN_SHA256[0]


def sha256_handle(handle: Any, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of what is left to read from an open binary file, read into one 1 MiB
    buffer (hashlib releases the GIL on each piece)."""
    import hashlib

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
