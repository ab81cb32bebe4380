"""The two forms of a file's digest in a manifest, and hashing a file or a stream in either.

- A file stored whole (below the chunking threshold), a reference and a blob: the **sha256** of
  its bytes, 64 lowercase hex digits. It is also the blob's key in the CAS (``blobs/sha256/...``).
- A file stored as chunks (at or above the threshold, since this rule): ``"blake3:"`` followed by
  the **BLAKE3** (32 bytes) of its whole bytes in 64 lowercase hex digits, the value ``b3sum FILE``
  prints. One BLAKE3 pass is faster than the FastCDC scan that cuts the file (and runs on several
  threads for large buffers), where a sha256 pass was the chunking pipeline's slowest stage, so it
  bounded how fast a checkpoint could be logged. It is a standard value anyone can check, and it
  does not depend on the chunking parameters (a tree over the chunk ids would).

The prefix makes the two unambiguous everywhere a digest travels (manifests, their ``path:digest``
lines, recipes, the server's tables). Chunked files logged before the rule keep their plain sha256
digests and recipes: everything that checks a file's bytes picks the hash from the digest's form
(:func:`file_hasher`), so old versions still verify and download.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

BLAKE3_PREFIX = "blake3:"
#: A buffer at least this large is hashed by BLAKE3 on several threads (``max_threads=AUTO``);
#: below it the threads cost more than they save.
BLAKE3_THREADED_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BLAKE3 = re.compile(r"blake3:[0-9a-f]{64}")
#: The longest digest a manifest entry may have (the server's column width).
MAX_FILE_DIGEST_LENGTH = len(BLAKE3_PREFIX) + 64
# Whether BLAKE3's thread pool (Rayon's, made once per process by the first threaded update, from
# that thread, whose signal mask its threads keep for good) was made with the signals blocked.
_pool_made = False
# Whether a threaded update ran in this process (Rayon's pool may exist from then on, whatever size
# it was given), and whether this process is a forked child of one where it ran: Rayon's pool came
# with the fork, but not its threads, so a threaded hash waited for ever (a Pool or DataLoader
# worker storing or checking an artifact after its parent stored a large one). Such a child hashes
# on its own thread.
_pool_maybe = False
_pool_forked_away = False


def _after_fork_in_child() -> None:
    global _pool_forked_away
    _pool_forked_away = _pool_forked_away or _pool_maybe or _pool_made


def blake3_threads(blake3: Any, threaded: bool = True) -> int:
    """``max_threads`` for a ``blake3.blake3`` hasher: ``AUTO`` (Rayon's pool) when ``threaded``,
    except in a forked child of a process that may have made the pool (its threads aren't there),
    else 1. Every threaded BLAKE3 hasher of tracklet's takes its count from here."""
    global _pool_maybe
    if not threaded or _pool_forked_away:
        return 1
    _pool_maybe = True
    return int(blake3.blake3.AUTO)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def is_sha256(text: object) -> bool:
    """Whether ``text`` is a sha256 in hex (64 lowercase hex digits)."""
    return isinstance(text, str) and _SHA256.fullmatch(text) is not None


def is_blake3(text: object) -> bool:
    """Whether ``text`` is a chunked file's digest: ``blake3:`` and 64 lowercase hex digits."""
    return isinstance(text, str) and _BLAKE3.fullmatch(text) is not None


def is_file_digest(text: object) -> bool:
    """Whether ``text`` is a manifest entry's digest in either form."""
    return is_sha256(text) or is_blake3(text)


def blake3_digest(hexdigest: str) -> str:
    """The manifest form of a BLAKE3 hex digest."""
    return BLAKE3_PREFIX + hexdigest


def algorithm(digest: str) -> str:
    """``"blake3"`` or ``"sha256"``: what produced ``digest`` (``ValueError`` for neither)."""
    if is_blake3(digest):
        return "blake3"
    if is_sha256(digest):
        return "sha256"
    raise ValueError(f"{digest!r:.80} is neither a sha256 nor a blake3: digest")


class FileHasher:
    """``update(bytes)`` then ``hexdigest()`` in the form of the digest it will be compared to:
    a plain sha256, or ``blake3:<hex>``.

    BLAKE3 runs on several threads (``threaded``, the default) for callers that feed it large
    pieces (4 MiB reads). A caller that feeds it one chunk at a time (~64 KiB: a file rebuilt or
    re-hashed from its chunks) passes ``threaded=False``: at that size the thread pool's hand-offs
    cost more than they save, about twice the CPU per GiB of one thread (0.45 vs 0.24 CPU s/GiB
    measured, docs/artifacts.md "Server CPU per byte"); at 4 MiB pieces the two cost the same."""

    def __init__(self, kind: str, *, threaded: bool = True) -> None:
        self.kind = kind
        self._blake3 = kind == "blake3"
        if self._blake3:
            import blake3

            threads = blake3_threads(blake3, threaded)
            self._hash: Any = blake3.blake3(max_threads=threads)
            self.update = self._update_first if threads != 1 and not _pool_made else self._hash.update  # type: ignore[method-assign,assignment]
        else:
            import hashlib  # here: a run that hashes only small bytes never loads OpenSSL (core/filehash.py)

            self._hash = hashlib.sha256()

    def update(self, data: Any) -> None:
        self._hash.update(data)

    def _update_first(self, data: Any) -> None:
        """``update`` until the pool is made: its threads (idle beside the training thread for the
        rest of the process) block the signals, as tracklet's own do (core/threads.py), even when
        a download or verify on the training thread hashes first."""
        global _pool_made
        from tracklet.core import threads

        with threads.blocked():
            self._hash.update(data)
        if len(data) >= BLAKE3_THREADED_BYTES:
            _pool_made = True
            self.update = self._hash.update  # type: ignore[method-assign]

    def hexdigest(self) -> str:
        digest = self._hash.hexdigest()
        return blake3_digest(digest) if self._blake3 else digest


def file_hasher(like: str, *, threaded: bool = True) -> FileHasher:
    """A hasher whose ``hexdigest()`` is comparable to the digest ``like`` (``threaded``: see
    ``FileHasher``)."""
    return FileHasher(algorithm(like), threaded=threaded)


def hash_file(path: str | os.PathLike[str], kind: str,
              on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(digest in ``kind``'s form, size) of a file, read in 4 MiB pieces (BLAKE3 spreads a piece
    over several threads)."""
    from tracklet.core.filehash import hash_handle

    hasher = FileHasher(kind)
    with open(path, "rb", buffering=0) as handle:
        size = hash_handle(handle, hasher, on_bytes, 4 << 20)
    return hasher.hexdigest(), size
