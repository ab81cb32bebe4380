"""An artifact's manifest, in W&B's shape: ``{"version": 1, "storagePolicy": ..., "contents":
{path: {"digest", "size", "ref"?, "extra"?}}}``. A digest is the sha256 of the file's bytes (64 hex
digits), or, for a file stored as chunks, ``blake3:`` and the BLAKE3 of its bytes
(``tracklet.core.digests``: why, and how old versions read).

The manifest's own digest (an artifact version's identity) is the sha256 of the sorted
``path:digest`` lines, each ending in a newline: two artifacts with the same files under the same
names have the same digest, whatever their metadata. A manifest read back from storage is
checked (bounded size, valid paths and digests) before anything uses it.

A large file's entry names its recipe (its chunk list, ``tracklet.artifacts.chunking``) in
``extra["recipe"]``; ``digest`` is the whole file's, so the manifest's digest doesn't depend on how
the file was cut.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

from tracklet.core.digests import is_file_digest, is_sha256
from tracklet.core.filehash import sha256_hex
from tracklet.artifacts.names import check_entry_path
from tracklet.errors import ArtifactError

STORAGE_POLICY = "tracklet-cas-v1"
MAX_MANIFEST_BYTES = 1 << 30
__all__ = ["MAX_MANIFEST_BYTES", "STORAGE_POLICY", "Manifest", "ManifestEntry", "is_file_digest", "is_sha256"]


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One file: ``digest`` (sha256 hex of its bytes, or ``blake3:<hex>`` for a chunked file), ``size`` in bytes, ``ref`` (the URI of a
    reference, whose bytes are not stored) and ``extra`` (e.g. ``mtime_ns`` of a file reference)."""

    path: str
    digest: str
    size: int
    ref: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"digest": self.digest, "size": self.size}
        if self.ref is not None:
            item["ref"] = self.ref
        if self.extra:
            item["extra"] = dict(self.extra)
        return item


class Manifest:
    """The files of an artifact version, by path."""

    def __init__(self, entries: Mapping[str, ManifestEntry] | None = None) -> None:
        self.entries: dict[str, ManifestEntry] = dict(sorted((entries or {}).items()))

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def __getitem__(self, path: str) -> ManifestEntry:
        return self.entries[path]

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.entries.values())

    def digest(self) -> str:
        """sha256 over the sorted ``path:digest`` lines."""
        return sha256_hex("".join(f"{path}:{self.entries[path].digest}\n" for path in sorted(self.entries)).encode())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "storagePolicy": STORAGE_POLICY,
            "storagePolicyConfig": {"hash": "sha256"},
            "contents": {path: entry.as_json() for path, entry in sorted(self.entries.items())},
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "manifest") -> Manifest:
        """Parse and check a stored manifest; ``ArtifactError`` naming ``what`` if it is not one."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{what} is {len(data):,} bytes, more than a manifest may be")
        try:
            document = json.loads(data)
            contents = document["contents"]
            if document.get("version") != 1 or not isinstance(contents, dict):
                raise ValueError("not a version 1 manifest")
            entries = {}
            for path, item in contents.items():
                checked = check_entry_path(path)
                digest, size, ref, extra = item["digest"], item["size"], item.get("ref"), item.get("extra") or {}
                if not is_file_digest(digest) or type(size) is not int or size < 0:
                    raise ValueError(f"bad digest or size for {path!r}")
                if ref is not None and (not isinstance(ref, str) or digest.startswith("blake3:")) \
                        or not isinstance(extra, dict):
                    raise ValueError(f"bad ref or extra for {path!r}")
                entries[checked] = ManifestEntry(checked, digest, size, ref, extra)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(f"{what} is not a valid manifest: {error}") from None
        return cls(entries)
