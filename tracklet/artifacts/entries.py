"""What a draft artifact holds before it is stored: files to read, files given as bytes, file
references, and entries of an earlier version (``new_draft``). Kept light (no hashing, no storage) so that
building a draft, and importing ``tracklet.Artifact``, costs little."""

from __future__ import annotations

import dataclasses

from tracklet.artifacts.manifest import ManifestEntry
from tracklet.core.filehash import HashedBytes
from tracklet.errors import ArtifactError


@dataclasses.dataclass(frozen=True)
class LocalFile:
    """A draft's file, read when the draft is committed. ``added``: its stat key (path, size,
    mtime, inode: ``hashing.stat_key``) when ``add_file``/``add_dir`` took it
    (``policy="immutable"``), so a file changed after that and before it is read fails the version
    instead of storing the later content under it."""

    path: str
    added: tuple[str, int, int, int] | None = None


@dataclasses.dataclass(frozen=True)
class FileReference:
    """A ``file://`` reference: recorded (size, mtime, sha256 if ``checksum``), never copied."""

    uri: str
    path: str
    checksum: bool


class InMemoryFile:
    """A draft's file given as bytes (a run's code snapshot, ``Artifact._add_bytes``): stored as
    one blob when the draft is committed (whatever its size: it is in memory already), with no
    staging copy on disk and no stat cache lookup. ``data``: plain bytes, hashed at commit, or
    ``HashedBytes`` (a code snapshot's, hashed as it was read), whose digest is used as it is.
    A plain class: a frozen dataclass costs every import of ``tracklet.artifacts`` ~0.35 ms of CPU
    to create."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | HashedBytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"InMemoryFile({len(self.data)} bytes)"

    def hashed(self) -> HashedBytes:
        """The bytes with their sha256: hashed on the first call unless given as ``HashedBytes``,
        then kept, so the manifest's digest and the stored blob come from one hashing."""
        if not isinstance(self.data, HashedBytes):
            self.data = HashedBytes(self.data)
        return self.data


Pending = LocalFile | FileReference | ManifestEntry | InMemoryFile


def uri_path(uri: str) -> str:
    """The local path of a ``file://`` URI."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ArtifactError(f"file URI {uri!r} names host {parsed.netloc!r}; only local files can be referenced")
    return unquote(parsed.path)
