"""Garbage collection on a tracking server (issue #15): blobs, packs and chunked files that an
upload sent but never committed are removed after the grace period (`tracklet admin artifact-gc`,
`server/artifact_gc.py`); nothing a committed version references is, whatever its age, and a blob
another project still holds stays."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest
from serverproc import REPO

from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.packs import build_pack
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.store import Store

HOUR = 3600.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunked_file(artifacts: ServerArtifacts, project: str, chunks: list[bytes]) -> tuple[str, bytes, str, str]:
    """Send ``chunks`` in one pack, the recipe, and register the file: (its sha256, bytes, pack id,
    recipe digest)."""
    ids = [blake3.blake3(c).digest() for c in chunks]
    pack_id, pack = build_pack(list(zip(ids, chunks)))
    artifacts.store_pack(project, pack_id, pack)
    data = b"".join(chunks)
    recipe = FileRecipe(size=len(data), sha256=_sha(data), chunks=tuple(zip(ids, map(len, chunks)))).to_json().encode()
    artifacts.store_small(project, [(_sha(recipe), recipe)])
    assert artifacts.register_file(project, _sha(data), len(data), _sha(recipe))
    return _sha(data), data, pack_id, _sha(recipe)


def _read(artifacts: ServerArtifacts, project: str, digest: str) -> bytes:
    handle, _ = artifacts.open_blob(project, digest)
    with handle:
        return handle.read()


def _objects(root: Path) -> set[str]:
    base = root / "artifacts"
    return {p.relative_to(base).as_posix() for sub in ("blobs", "packs") for p in (base / sub).rglob("*") if p.is_file()}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_what_no_version_references_goes_after_the_grace_period(tmp_path, request, database):
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)

    # A committed version: a small file and a chunked file (one of whose chunks a later orphan repeats).
    small = os.urandom(3000)
    artifacts.store_small("p", [(_sha(small), small)])
    kept_chunks = [os.urandom(40_000 + i) for i in range(4)]
    kept_digest, kept_data, kept_pack, _ = _chunked_file(artifacts, "p", kept_chunks)
    manifest = Manifest({"small.bin": ManifestEntry("small.bin", _sha(small), len(small)),
                         "model.ckpt": ManifestEntry("model.ckpt", kept_digest, len(kept_data))}).to_bytes()
    artifacts.store_small("p", [(_sha(manifest), manifest)])
    artifacts.commit("p", "ckpt", type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)

    # Uploads that never committed: a blob, a pack of chunks never registered, a registered chunked
    # file (its own pack, and one chunk shared with the committed file), and a blob project q
    # committed too (the store keeps one copy for both).
    orphan = os.urandom(2000)
    artifacts.store_small("p", [(_sha(orphan), orphan)])
    loose = [os.urandom(30_000), os.urandom(31_000)]
    loose_pack, loose_bytes = build_pack([(blake3.blake3(c).digest(), c) for c in loose])
    artifacts.store_pack("p", loose_pack, loose_bytes)
    orphan_digest, _, orphan_pack, orphan_recipe = _chunked_file(artifacts, "p", [os.urandom(45_000), kept_chunks[1]])
    shared = os.urandom(1000)
    artifacts.store_small("p", [(_sha(shared), shared)])
    artifacts.store_small("q", [(_sha(shared), shared)])
    q_manifest = Manifest({"shared": ManifestEntry("shared", _sha(shared), len(shared))}).to_bytes()
    artifacts.store_small("q", [(_sha(q_manifest), q_manifest)])
    artifacts.commit("q", "data", type="dataset", manifest_digest=_sha(q_manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    before = _objects(root)

    young = collect(artifacts, grace=HOUR)  # everything is younger than the grace period
    assert (young.blobs, young.packs, young.grants, young.chunks) == (0, 0, 0, 0)
    assert _objects(root) == before

    later = time.time() + 2 * HOUR
    dry = collect(artifacts, grace=HOUR, now=later, dry_run=True)
    assert _objects(root) == before
    report = collect(artifacts, grace=HOUR, now=later)
    assert sorted(report.removed) == sorted(dry.removed)
    gone = before - _objects(root)
    assert gone == {f"blobs/sha256/{d[:2]}/{d}" for d in (_sha(orphan), orphan_recipe)} | {
        f"packs/{d[:2]}/{d}.pack" for d in (loose_pack, orphan_pack)}
    assert (report.blobs, report.packs, report.files) == (2, 2, 1)
    assert report.blob_bytes >= len(orphan)
    # Nothing a committed version references went; the shared blob stays for q (p's grant went).
    assert _read(artifacts, "p", kept_digest) == kept_data
    assert _read(artifacts, "p", _sha(small)) == small
    assert _read(artifacts, "q", _sha(shared)) == shared
    assert artifacts.missing("p", [_sha(orphan), orphan_digest, _sha(shared), kept_digest, _sha(small)]) == [
        _sha(orphan), orphan_digest, _sha(shared)]
    assert f"packs/{kept_pack[:2]}/{kept_pack}.pack" in _objects(root)
    chunk_ids = [blake3.blake3(c).hexdigest() for c in [*loose, *kept_chunks]]
    assert artifacts.missing_chunks("p", chunk_ids) == chunk_ids[:2]
    again = collect(artifacts, grace=HOUR, now=later)
    assert (again.blobs, again.packs, again.grants, again.files, again.chunks) == (0, 0, 0, 0, 0)

    # The same through the command line, with --grace 0: a new orphan goes, the versions stay.
    another = os.urandom(500)
    artifacts.store_small("p", [(_sha(another), another)])
    store.close()
    ran = subprocess.run([sys.executable, "-m", "tracklet", "admin", "--dir", str(root), "--store", url, "artifact-gc",
                          "--grace", "0"],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert f"removed {root / 'artifacts' / 'blobs'}" in ran.stdout and _sha(another) in ran.stdout
    assert "removed 1 blob(s)" in ran.stdout
    store = Store(url, root=root)
    artifacts = ServerArtifacts(root, engine=store.engine)
    assert _read(artifacts, "p", kept_digest) == kept_data
    store.close()
