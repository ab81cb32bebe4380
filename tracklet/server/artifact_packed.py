"""Small artifact blobs stored many to a pack on a tracking server (docs/artifacts.md, "Packed blobs").

One object per small file costs one object-store request each: 10,000 files of 40 kB were ~100
PUTs/s against a local S3 server, whatever the client did. So the blobs of a batch upload
(``POST .../_blobs/batch``) are written as **one pack** (``tracklet.artifacts.packs``' layout, the
chunk store's: member bytes, an index of ``(blake3 id, offset, length)``, a footer; under
``packs/ab/<id>.pack`` beside ``blobs/``) and each blob's place is a row of
``artifact_packed_blobs`` (sha256 -> pack, offset, length, blake3). Content addressing by sha256
is unchanged: manifests, grants (``artifact_blobs``), "which do you have?" and downloads name a
blob by its sha256 as before; only where its bytes are differs.

``PackedBlobStore`` is the server's blob store with that lookup in front: ``has``, ``size``,
``open``, ``read_bytes`` look for a placement first and read the member with one ranged read of
its pack, checked against its blake3 and its sha256 before a byte is served; a blob without a
placement is the object ``blobs/sha256/ab/<digest>`` (every blob stored before packing, single
PUTs, large blobs, manifests). So old data stays readable, and every reader of the server's blobs
(downloads, the read routes' manifests, media, garbage collection) sees packed blobs unchanged.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import sqlalchemy as sa

from tracklet.artifacts.blobs import FsspecBlobStore, ObjectIdentity
from tracklet.artifacts.packs import PackStore
from tracklet.errors import ArtifactError, ChunkStoreError
from tracklet.server.schema import artifact_packed_blobs

#: Blobs up to this size that arrive in a batch are packed; larger ones stay objects of their own.
PACKED_BLOB_BYTES = 1 << 20
_QUERY = 1000  # digests per SQL IN list


class Place(NamedTuple):
    """Where a packed blob's bytes are: its pack, their offset and length, and its blake3 (hex)."""

    pack_id: str
    offset: int
    length: int
    member: str


class PackedBlobStore(FsspecBlobStore):
    """The server's blob store (see the module): blobs packed by ``artifact_blobs.store_small``
    are found through ``artifact_packed_blobs``, the others as objects of their own. ``bind``
    gives it the database and the pack store before use."""

    engine: sa.Engine
    packs: PackStore

    def bind(self, engine: sa.Engine, packs: PackStore) -> None:
        self.engine = engine
        self.packs = packs

    def places(self, digests: Iterable[str], *, refresh: bool = False) -> dict[str, Place]:
        """The placements of the packed blobs among ``digests``. With ``refresh`` they are marked
        used now in the same transaction (an upload that will not write them again must not see
        them collected under it: the collection's DELETE re-checks the age)."""
        unique = list(dict.fromkeys(digests))
        found: dict[str, Place] = {}
        table = artifact_packed_blobs
        with self.engine.begin() as connection:
            for start in range(0, len(unique), _QUERY):
                batch = unique[start:start + _QUERY]
                if refresh:
                    connection.execute(table.update().where(table.c.digest.in_(batch)).values(created_at=time.time()))
                rows = connection.execute(sa.select(table.c.digest, table.c.pack_id, table.c.pack_offset,
                                                    table.c.length, table.c.member).where(table.c.digest.in_(batch)))
                for digest, pack_id, offset, length, member in rows:
                    found[digest] = Place(pack_id, int(offset), int(length), member)
        return found

    def place(self, digest: str) -> Place | None:
        return self.places([digest]).get(digest)

    def read_packed(self, digest: str, place: Place) -> bytes:
        """A packed blob's bytes, checked against its blake3 (the pack's index) and its sha256;
        ``ArtifactError`` naming the pack if they differ or the pack is gone."""
        import blake3

        try:
            data = self.packs.read_range(place.pack_id, place.offset, place.length)
        except FileNotFoundError:
            raise ArtifactError(f"blob {digest}: its pack {place.pack_id} is missing from {self.url}") from None
        except ChunkStoreError as error:
            raise ArtifactError(f"blob {digest}: {error}") from None
        if blake3.blake3(data).hexdigest() != place.member or hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"blob {digest} in pack {place.pack_id} at byte {place.offset} is damaged "
                                "(its bytes don't match its digest)")
        return bytes(data)

    # The blob store's reads, placements first ------------------------------------------------

    def has(self, digest: str) -> bool:
        return self.place(digest) is not None or super().has(digest)

    def size(self, digest: str) -> int:
        place = self.place(digest)
        return place.length if place is not None else super().size(digest)

    def open(self, digest: str) -> Any:
        """The blob as a read-only file object: a packed one read (and verified) whole first: it
        is at most ``PACKED_BLOB_BYTES``."""
        place = self.place(digest)
        if place is None:
            return super().open(digest)
        return io.BytesIO(self.read_packed(digest, place))

    def read_bytes(self, digest: str) -> bytes:
        place = self.place(digest)
        return super().read_bytes(digest) if place is None else self.read_packed(digest, place)

    def local_path(self, digest: str) -> Any:
        """The blob's own file on a local directory; None for a packed blob (no file of its own)."""
        return None if self.place(digest) is not None else super().local_path(digest)

    def object_identity(self, digest: str) -> ObjectIdentity | None:
        """The blob's own object's size and ETag; None for a packed blob (read and checked whole
        each time it is opened: it is at most ``PACKED_BLOB_BYTES``)."""
        return None if self.place(digest) is not None else super().object_identity(digest)
