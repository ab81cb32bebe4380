"""Chunked files are identified by the BLAKE3 of their bytes (``blake3:<hex>``, issue #15 A2,
docs/artifacts.md "Digests"); versions stored before, whose chunked files carry their sha256 and
sha256-keyed recipes, keep working: read, verify, download, dedupe, GC, the CLI, a server.

The old version is ``tests/data/sha256_chunked_store/store``, written by the code before the rule
(``make.py`` there says how); each test works on a copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from pathlib import Path

import blake3
import pytest
from test_artifacts_server import Backend, own_backend, blob_cache  # noqa: F401 (fixtures)

import tracklet
from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.remote import RemoteArtifacts, upload_version
from tracklet.artifacts.storage import ArtifactStore
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.errors import ArtifactError, ArtifactVerifyError, RecipeError


@pytest.fixture
def backend(own_backend):  # noqa: F811 (a fixture)
    """A server of the test's own, which the test starts with ``backend.extra`` (test_artifacts_server's
    ``own_backend``; its ``backend`` is that module's shared server)."""
    return own_backend


FIXTURE = Path(__file__).parent / "data" / "sha256_chunked_store"
MiB = 1 << 20


def _make_module():
    spec = importlib.util.spec_from_file_location("old_store_make", FIXTURE / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OLD = _make_module()


def _b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def _old_store(directory: Path) -> Path:
    """A writable copy of the old store at ``directory``."""
    shutil.copytree(FIXTURE / "store", directory)
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    return directory


def test_the_fixture_is_an_old_format_chunked_version(tmp_path):
    """What the rest relies on: the file is chunked and named by its sha256 (no BLAKE3 anywhere)."""
    data = OLD.source_bytes()
    store = ArtifactStore(tmp_path / "root", _old_store(tmp_path / "store"))
    info = store.registry.version("p", "ckpt", "v0")
    entry = store.manifest(info)["model.ckpt"]
    assert entry.digest == hashlib.sha256(data).hexdigest() and "recipe" in entry.extra
    recipe = json.loads(store.blobs.read_bytes(entry.extra["recipe"]))
    assert recipe["sha256"] == entry.digest and "blake3" not in recipe and len(recipe["chunks"]) > 1


def test_a_chunked_files_digest_is_its_blake3_and_verify_names_a_flipped_byte(start, root, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "1MiB")
    data = OLD.source_bytes() * 5  # 1.6 MB: chunked
    source = tmp_path / "model.ckpt"
    source.write_bytes(data)
    run = start()
    artifact = tracklet.Artifact("ckpt", type="model")
    artifact.add_file(source)
    run.log_artifact(artifact)
    artifact.wait()
    run.finish()
    entry = artifact.manifest["model.ckpt"]
    assert "recipe" in entry.extra  # stored as chunks
    assert entry.digest == _b3(data)  # what `b3sum model.ckpt` prints, after "blake3:"

    used = tracklet.Api().artifact("test/ckpt:v0")
    out = Path(used.download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == data
    used.verify(out)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 1
    (out / "model.ckpt").write_bytes(damaged)
    with pytest.raises(ArtifactVerifyError, match="model.ckpt: digest mismatch") as raised:
        used.verify(out)
    assert list(raised.value.problems) == ["model.ckpt"] and _b3(bytes(damaged)) in raised.value.problems["model.ckpt"]


def test_an_old_sha256_chunked_version_reads_verifies_downloads_dedupes_and_survives_gc(root, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from tracklet.artifacts.gc import collect
    from tracklet.cli.main import main

    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", str(OLD.THRESHOLD))
    directory = _old_store(root / "artifacts")
    data = OLD.source_bytes()
    old = tracklet.Api().artifact("p/ckpt:v0")
    assert old.manifest["model.ckpt"].digest == hashlib.sha256(data).hexdigest()
    out = Path(old.download(tmp_path / "v0"))
    assert (out / "model.ckpt").read_bytes() == data
    old.verify(out)
    cli = CliRunner().invoke(main, ["--dir", str(root), "artifact", "verify", "p/ckpt:v0", "--root", str(out)])
    assert cli.exit_code == 0 and "ok: 1 files match" in cli.output, cli.output
    (out / "model.ckpt").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    cli = CliRunner().invoke(main, ["--dir", str(root), "artifact", "verify", "p/ckpt:v0", "--root", str(out)])
    assert cli.exit_code != 0 and "model.ckpt: digest mismatch" in cli.output, cli.output

    # Logging the same bytes again: one new version (its digest is the BLAKE3 now), no chunk stored twice.
    store = ArtifactStore(root, directory)
    packs_before = sorted(p.name for p in (directory / "packs").rglob("*.pack"))
    source = tmp_path / "model.ckpt"
    source.write_bytes(data)
    again = store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(source))}, project="p", aliases=[])
    assert not again.reused and again.info.version == 1
    assert again.manifest["model.ckpt"].digest == _b3(data)
    assert sorted(p.name for p in (directory / "packs").rglob("*.pack")) == packs_before
    assert again.bytes_written < 4096  # the new recipe and manifest, no chunk

    # A collection keeps what both versions need; both still download byte for byte.
    collect(store, grace=0, now=time.time() + 1)
    for selector in ("v0", "v1"):
        target = tmp_path / f"after-gc-{selector}"
        version = tracklet.Api().artifact(f"p/ckpt:{selector}")
        assert (Path(version.download(target)) / "model.ckpt").read_bytes() == data
        version.verify(target)


def test_an_old_and_a_new_version_sync_to_a_server_and_download_byte_exact(servers, backend, tmp_path):  # noqa: F811
    server = servers(tmp_path / "server", extra=backend.extra)
    directory = _old_store(tmp_path / "store")
    store = ArtifactStore(tmp_path / "root", directory, chunk_threshold=OLD.THRESHOLD)
    data = OLD.source_bytes()
    client = ArtifactClient(HttpClient(server.url), tmp_path / "state")
    first = upload_version(client, store, store.registry.version("p", "ckpt", "v0"), [])
    assert first["bytes_sent"] >= len(data)  # the server rebuilt the file and checked its sha256
    source = tmp_path / "model.ckpt"
    source.write_bytes(data)
    new = store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(source))}, project="p", aliases=[])
    second = upload_version(client, store, new.info, [])
    assert second["bytes_sent"] < 4096  # every chunk is on the server already: the recipe and manifest
    served = Manifest.from_bytes(client.read("p", second["version"]["manifest"]))
    assert served["model.ckpt"].digest == _b3(data)

    remote = RemoteArtifacts(ArtifactClient(HttpClient(server.url)), tmp_path / "reader")
    for selector in ("v0", "v1"):
        version = remote.artifact(f"p/ckpt:{selector}")
        out = Path(version.download(tmp_path / f"out-{selector}"))
        assert (out / "model.ckpt").read_bytes() == data
        version.verify(out)
    whole = tmp_path / "whole.bin"  # the file streamed whole (rebuilt by the server), checked by its BLAKE3
    client.download("p", _b3(data), whole)
    assert whole.read_bytes() == data


@pytest.mark.parametrize("digest", [
    "blake3:" + "0" * 63,  # short
    "blake3:" + "A" * 64,  # upper case
    "sha256:" + "0" * 64,  # an unknown algorithm
    "BLAKE3:" + "0" * 64,
    "0" * 64 + "0",
])
def test_a_manifest_with_a_malformed_digest_is_refused_naming_it(digest):
    document = {"version": 1, "contents": {"model.ckpt": {"digest": digest, "size": 3}}}
    with pytest.raises(ArtifactError, match="bad digest or size for 'model.ckpt'"):
        Manifest.from_bytes(json.dumps(document).encode())


def test_a_reference_can_not_claim_a_blake3_digest():
    document = {"version": 1, "contents": {"d.bin": {"digest": "blake3:" + "0" * 64, "size": 3,
                                                     "ref": "s3://bucket/d.bin"}}}
    with pytest.raises(ArtifactError, match="bad ref or extra for 'd.bin'"):
        Manifest.from_bytes(json.dumps(document).encode())


def test_a_recipe_names_exactly_one_file_digest():
    recipe = FileRecipe(size=3, digest=_b3(b"abc"), chunks=((blake3.blake3(b"abc").digest(), 3),))
    document = recipe.to_dict()
    assert document["blake3"] == blake3.blake3(b"abc").hexdigest() and "sha256" not in document
    assert FileRecipe.from_dict(document) == recipe
    with pytest.raises(RecipeError, match="exactly one of 'blake3' and 'sha256'"):
        FileRecipe.from_dict({**document, "sha256": hashlib.sha256(b"abc").hexdigest()})
    with pytest.raises(RecipeError, match="exactly one of 'blake3' and 'sha256'"):
        FileRecipe.from_dict({key: value for key, value in document.items() if key != "blake3"})
    with pytest.raises(RecipeError, match="recipe 'blake3' must be 64 hex digits"):
        FileRecipe.from_dict({**document, "blake3": "blake3:" + document["blake3"]})
