"""Artifact bytes are durable before anything names them (issue #15, ``artifacts/durable.py``).

A model of what survives a power cut, kept at the OS boundary of this process: a file's bytes
survive once its inode was ``fsync``'d; a name survives once its directory was ``fsync``'d after
the rename (or link) that created it. Every time the server commits a database transaction, a
version file is created, or the local chunk index records a pack or a recipe, every blob, pack and
version file in the store must already be durable by that model (real files, real SQLite; nothing
else is faked). Without the fsyncs, the first grant after a blob is written fails."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
import sqlalchemy as sa

from tracklet.artifacts.cache import BlobCache
from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.packs import ChunkIndex, build_pack
from tracklet.artifacts.registry import LocalRegistry
from tracklet.artifacts.storage import ArtifactStore
from tracklet.server.artifact_blobs import MIN_PART_BYTES, ServerArtifacts

MiB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PowerCutModel:
    """Which files of ``root`` would survive a power cut now (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = 0
        self.synced_inodes: set[tuple[int, int]] = set()
        self.inode_synced_at: dict[tuple[int, int], int] = {}  # the last fsync of each file's inode
        self.directory_synced: dict[str, int] = {}
        self.named_at: dict[str, int] = {}
        self.file_fsyncs = 0
        self.violations: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_fsync, real_replace, real_rename, real_link = os.fsync, os.replace, os.rename, os.link

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self.clock += 1
            status = os.fstat(fd)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                self.directory_synced[os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))] = self.clock
            else:
                self.synced_inodes.add((status.st_dev, status.st_ino))
                self.inode_synced_at[(status.st_dev, status.st_ino)] = self.clock
                self.file_fsyncs += 1

        def naming(real):  # noqa: ANN001, ANN202 - wraps os.replace, os.rename, os.link alike
            def call(source, target, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
                real(source, target, *args, **kwargs)
                self.clock += 1
                self.named_at[os.path.realpath(target)] = self.clock
            return call

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", naming(real_replace))
        monkeypatch.setattr(os, "rename", naming(real_rename))
        monkeypatch.setattr(os, "link", naming(real_link))

    def durable(self, path: Path) -> bool:
        real = os.path.realpath(path)
        status = os.stat(real)
        named = self.named_at.get(real)  # a name made in place, not by a rename: never trusted here
        return ((status.st_dev, status.st_ino) in self.synced_inodes and named is not None
                and self.directory_synced.get(os.path.dirname(real), 0) > named)

    def bytes_synced_before_named(self, path: Path) -> bool:
        """Whether ``path``'s bytes were on the disk before the rename that named it (so a power
        cut can lose the name, never leave it naming short bytes)."""
        real = os.path.realpath(path)
        status = os.stat(real)
        named = self.named_at.get(real)
        synced = self.inode_synced_at.get((status.st_dev, status.st_ino))
        return named is not None and synced is not None and synced < named

    def stored_files(self, only_packs: bool = False) -> Iterator[Path]:
        yield from (p for p in (self.root / "packs").glob("??/*.pack"))
        if not only_packs:
            yield from (self.root / "blobs" / "sha256").rglob("*")
            yield from (self.root / "projects").glob("*/*/versions/v*.json")

    def check(self, when: str, only_packs: bool = False) -> None:
        self.violations += [f"{when}: {p.relative_to(self.root)}" for p in self.stored_files(only_packs)
                            if p.is_file() and not self.durable(p)]


@pytest.fixture
def model(tmp_path, monkeypatch) -> PowerCutModel:
    model = PowerCutModel(tmp_path / "root" / "artifacts")
    model.install(monkeypatch)
    real_create = LocalRegistry._create_version

    def create_version(registry, directory, info):  # noqa: ANN001, ANN202
        model.check("before a version file")
        real_create(registry, directory, info)
        model.check("after a version file")

    monkeypatch.setattr(LocalRegistry, "_create_version", create_version)
    return model


def test_a_server_commits_no_row_before_the_bytes_it_names_are_durable(tmp_path, model):
    artifacts = ServerArtifacts(tmp_path / "root")
    sa.event.listen(artifacts.engine, "commit", lambda connection: model.check("a server commit"))

    small = [os.urandom(3000 + i) for i in range(3)]
    artifacts.store_small("p", [(_sha(small[0]), small[0])])  # one loose blob
    artifacts.store_small("p", [(_sha(b), b) for b in small[1:]])  # a batch: one pack of blobs
    large = os.urandom(9 * MiB)  # streamed to a temporary blob, renamed once verified
    artifacts.store_chunks("p", _sha(large), iter([large[:MiB], large[MiB:]]))

    chunks = [os.urandom(50_000 + i) for i in range(3)]
    ids = [blake3.blake3(c).digest() for c in chunks]
    pack_id, pack = build_pack(list(zip(ids, chunks)))
    before = model.file_fsyncs
    artifacts.store_pack("p", pack_id, pack)
    assert model.file_fsyncs - before == 1  # one fsync for the pack, not one per chunk
    whole = b"".join(chunks)
    recipe = FileRecipe(size=len(whole), digest=_sha(whole), chunks=tuple(zip(ids, map(len, chunks))))
    recipe_bytes = recipe.to_json().encode()
    artifacts.store_small("p", [(_sha(recipe_bytes), recipe_bytes)])
    assert artifacts.register_file("p", _sha(whole), len(whole), _sha(recipe_bytes))

    # A resumable upload: a part recorded as received is on the disk.
    blob = os.urandom(MIN_PART_BYTES + 1000)
    session = artifacts.start("p", _sha(blob), len(blob), MIN_PART_BYTES)
    for number in (1, 2):
        artifacts.put_part(session, number, blob[(number - 1) * MIN_PART_BYTES:number * MIN_PART_BYTES], None)
        part = Path(artifacts.uploads) / session.id / "data" / str(number)
        assert model.durable(part), f"part {number} is recorded before its bytes are on the disk"
    artifacts.complete(session)

    manifest = Manifest({"small.bin": ManifestEntry("small.bin", _sha(small[0]), len(small[0])),
                         "large.bin": ManifestEntry("large.bin", _sha(large), len(large)),
                         "chunked.bin": ManifestEntry("chunked.bin", _sha(whole), len(whole)),
                         "parts.bin": ManifestEntry("parts.bin", _sha(blob), len(blob))})
    manifest_bytes = manifest.to_bytes()
    artifacts.store_small("p", [(_sha(manifest_bytes), manifest_bytes)])
    info, _ = artifacts.commit("p", "data", type="dataset", manifest_digest=_sha(manifest_bytes), description="",
                               metadata={}, aliases=["best"], logged_by=None)
    assert info.version == 0
    assert len(list(model.stored_files())) >= 7  # the check looked at the files it is about
    assert model.violations == []


def test_the_local_store_makes_a_versions_bytes_durable_before_the_version(tmp_path, model, monkeypatch):
    files = tmp_path / "files"
    files.mkdir()
    (files / "small.txt").write_bytes(b"hello")
    (files / "medium.bin").write_bytes(os.urandom(5 * MiB))  # over INLINE_BYTES: copied while hashed
    (files / "large.bin").write_bytes(os.urandom(3 * MiB))  # chunked into a pack
    store = ArtifactStore(tmp_path / "root", chunk_threshold=2 * MiB)
    for method in ("add_pack", "add_recipe"):  # the chunk index's rows
        real = getattr(ChunkIndex, method)

        def recorded(index, *args, _real=real, _method=method):  # noqa: ANN001, ANN002, ANN202
            model.check(f"before the chunk index's {_method}", only_packs=_method == "add_pack")
            return _real(index, *args)

        monkeypatch.setattr(ChunkIndex, method, recorded)
    pending = {name: LocalFile(str(files / name)) for name in ("small.txt", "medium.bin", "large.bin")}
    before = model.file_fsyncs
    result = store.commit("data", "dataset", pending, project="p", aliases=["best"])
    assert result.info.version == 0
    assert len(list(model.stored_files())) >= 6
    # One fsync a file written (2 blobs, a pack, a recipe, the manifest, the version file, the
    # aliases), not one a chunk.
    assert model.file_fsyncs - before <= 7
    assert model.violations == []


def test_the_download_cache_names_no_blob_before_its_bytes_are_on_the_disk(tmp_path, monkeypatch):
    """A cached blob is trusted by its name and hard-linked into downloads: a power cut must not
    leave a short one under its digest (written, renamed, the data not yet on the disk)."""
    model = PowerCutModel(tmp_path / "cache")
    model.install(monkeypatch)
    cache = BlobCache(tmp_path / "cache", cap_bytes=64 * MiB)
    streamed, copied = os.urandom(3 * MiB + 7), os.urandom(5000)
    cache.put_stream(iter([streamed[:MiB], streamed[MiB:]]), _sha(streamed), len(streamed))
    source = tmp_path / "source.bin"
    source.write_bytes(copied)
    cache.put_file(source, _sha(copied))
    blobs = [path for path in (tmp_path / "cache" / "blobs").rglob("*") if path.is_file()]
    assert sorted(p.name for p in blobs) == sorted([_sha(streamed), _sha(copied)])
    assert [p.name for p in blobs if not model.bytes_synced_before_named(p)] == []
