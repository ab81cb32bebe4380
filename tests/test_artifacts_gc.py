"""Deleting artifact versions and collecting garbage (tracklet/artifacts/gc.py, ``tracklet artifact
rm|gc``): exactly the unreferenced blobs, packs and chunks go, everything a live version needs stays
(its download is still byte-exact), nothing written within the grace period goes, and a collection
waits for commits in flight."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.artifacts.gc import collect
from tracklet.artifacts.packs import PackStore, PackWriter
from tracklet.artifacts.storage import ArtifactStore, store_lock
from tracklet.errors import ArtifactError, ArtifactNotFound

MiB = 1 << 20


@pytest.fixture
def chunked(root, monkeypatch) -> Path:
    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "1MiB")
    return root


def _cli(root: Path, *args: str):
    from tracklet.cli.main import main

    return CliRunner().invoke(main, ["--dir", str(root), *args], catch_exceptions=False)


def _put(root: Path, directory: Path, *extra: str):
    result = _cli(root, "artifact", "put", str(directory), "-p", "proj", "-n", "model", "-q", *extra)
    assert result.exit_code == 0, result.output
    return result


def _files(base: Path) -> set[str]:
    return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}


def _expected_live(store_dir: Path, versions: list[dict]) -> tuple[set[str], set[str]]:
    """The blob and pack files the remaining versions need, worked out from the raw files."""
    blobs, chunks = set(), set()

    def blob(digest: str) -> Path:
        return store_dir / "blobs" / "sha256" / digest[:2] / digest

    for version in versions:
        blobs.add(version["manifest"])
        manifest = json.loads(blob(version["manifest"]).read_bytes())
        for item in manifest["contents"].values():
            recipe = item.get("extra", {}).get("recipe")
            if recipe:
                blobs.add(recipe)
                chunks |= {cid for cid, _ in json.loads(blob(recipe).read_bytes())["chunks"]}
            else:
                blobs.add(item["digest"])
    packs = PackStore(store_dir)
    live_packs = {pack_id for pack_id in packs.list_packs()
                  if any(cid.hex() in chunks for cid, _, _ in packs.read_entries(pack_id))}
    return ({f"blobs/sha256/{d[:2]}/{d}" for d in blobs},
            {f"packs/{p[:2]}/{p}.pack" for p in live_packs})


def _stored(store_dir: Path) -> set[str]:
    return {f for f in _files(store_dir) if f.startswith(("blobs/sha256/", "packs/")) and "/tmp/" not in f}


def test_gc_frees_exactly_the_unreferenced_and_live_versions_still_download_byte_exact(chunked, tmp_path):
    store_dir = chunked / "artifacts"
    contents = []
    for i in range(4):
        version = tmp_path / f"v{i}"
        version.mkdir()
        big = bytearray(os.urandom(3 * MiB)) if i == 0 else bytearray(contents[-1]["big.bin"])
        big[i * 700_000:i * 700_000 + 100] = os.urandom(100)  # each version edits its checkpoint a little
        files = {"big.bin": bytes(big), "small.txt": f"version {i}".encode(), "same.txt": b"unchanged"}
        for name, data in files.items():
            (version / name).write_bytes(data)
        contents.append(files)
        _put(chunked, version, *(["-a", "best"] if i == 1 else []))
    before = _stored(store_dir)

    refused = _cli(chunked, "artifact", "rm", "proj/model:v1")
    assert refused.exit_code == 2 and "alias(es) best" in refused.stderr
    assert "deleted proj/model:v0" in _cli(chunked, "artifact", "rm", "proj/model:v0").stdout
    dropped = _cli(chunked, "artifact", "rm", "proj/model:best", "--force")
    assert "deleted proj/model:v1 (aliases dropped: best)" in dropped.stdout

    dry = _cli(chunked, "artifact", "gc", "--grace", "0", "--dry-run", "-q")
    assert dry.exit_code == 0 and "would free" in dry.stdout
    assert _stored(store_dir) == before  # a dry run removes nothing
    result = _cli(chunked, "artifact", "gc", "--grace", "0", "-q")
    assert result.exit_code == 0 and "freed " in result.stdout, result.output

    remaining = [json.loads((store_dir / "projects/proj/model/versions" / f"v{n}.json").read_bytes()) for n in (2, 3)]
    live_blobs, live_packs = _expected_live(store_dir, remaining)
    after = _stored(store_dir)
    assert {f for f in after if f.startswith("blobs/")} == live_blobs
    assert {f for f in after if f.startswith("packs/")} == live_packs
    assert {f.split("would remove ", 1)[1] for f in dry.stdout.splitlines() if f.startswith("would remove")} \
        == before - after
    assert before - after  # v0's small files, both manifests, the recipes, v0-only chunks

    api = tracklet.Api(chunked)
    with pytest.raises(ArtifactNotFound):
        api.artifact("proj/model:v1")
    for number in (2, 3):
        artifact = api.artifact(f"proj/model:v{number}")
        out = Path(artifact.download(tmp_path / f"out{number}"))
        assert {name: (out / name).read_bytes() for name in contents[number]} == contents[number]
        artifact.verify(out)
    again = _cli(chunked, "artifact", "gc", "--grace", "0", "-q")
    assert "freed 0 bytes" in again.stdout

    for n in (2, 3):
        _cli(chunked, "artifact", "rm", f"proj/model:v{n}")
    _cli(chunked, "artifact", "gc", "--grace", "0", "-q")
    assert _stored(store_dir) == set()  # nothing referenced, nothing kept
    _put(chunked, tmp_path / "v0")
    assert api.artifact("proj/model:latest").version == "v4"  # numbers of deleted versions are not reused


def test_gc_keeps_unreferenced_files_written_within_the_grace_period(chunked, tmp_path):
    folder = tmp_path / "v0"
    folder.mkdir()
    (folder / "small.txt").write_text("small")
    (folder / "big.bin").write_bytes(os.urandom(2 * MiB))
    _put(chunked, folder)
    _cli(chunked, "artifact", "rm", "proj/model:v0")
    store = ArtifactStore(chunked)
    stored = _stored(store.directory)
    assert len(stored) == 4  # the small file, the recipe, the manifest, one pack

    kept = collect(store, grace=3600)  # all of it was written just now: a commit may be in flight
    assert (kept.kept_in_grace, kept.freed_bytes) == (4, 0) and _stored(store.directory) == stored
    packs, index = store.chunks()
    pack_id = packs.list_packs()[0]
    chunk_count = len(index.pack_chunks(pack_id))
    later = collect(store, grace=3600, now=time.time() + 7200)
    assert (later.blobs_removed, later.packs_removed, later.kept_in_grace) == (3, 1, 0)
    assert later.chunks_removed == chunk_count > 0
    assert index.pack_chunks(pack_id) == [] and pack_id not in index.packs()  # gone from the index too
    assert _stored(store.directory) == set()


def test_blobs_no_version_referenced_or_a_run_log_names_are_never_collected(chunked, start, tmp_path):
    """The blob store is shared: media and tables keep blobs in it, named in run logs, and a
    directory may serve several data roots. gc only removes what deleted versions referenced,
    and not what a run log of the data root names."""
    import numpy as np

    store = ArtifactStore(chunked)
    stranger, _ = store.blobs.put_bytes(b"a blob another feature or data root stored")
    run = start()
    run.log({"picture": tracklet.Image(np.full((8, 8, 3), 200, dtype=np.uint8))})
    run.finish()
    (media,) = tracklet.Api(chunked).run(run.path).media("picture")
    folder = tmp_path / "v0"
    folder.mkdir()
    (folder / "picture.png").write_bytes(media.read_bytes())  # the same bytes, also in an artifact
    (folder / "other.txt").write_text("only in the artifact")
    _put(chunked, folder)
    _cli(chunked, "artifact", "rm", "proj/model:v0")
    report = collect(store, grace=0, now=time.time() + 1)
    assert report.blobs_removed == 2  # the manifest and other.txt
    assert store.blobs.has(media.digest) and store.blobs.has(stranger)
    assert tracklet.Api(chunked).run(run.path).media("picture")[0].read_bytes() == media.read_bytes()


def test_stale_temporaries_go_and_fresh_ones_stay(chunked):
    store = ArtifactStore(chunked)
    stale, fresh = [], []
    for folder in (store.directory / "blobs" / "tmp", store.directory / "packs" / "tmp"):
        folder.mkdir(parents=True)
        (folder / "old.partial").write_bytes(b"x" * 10)
        os.utime(folder / "old.partial", (time.time() - 2 * 86400,) * 2)
        (folder / "new.partial").write_bytes(b"y")
        stale.append(folder / "old.partial")
        fresh.append(folder / "new.partial")
    report = collect(store, grace=0)
    assert (report.temporaries_removed, report.temporary_bytes) == (2, 20)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in fresh)


def test_gc_waits_for_a_commit_in_flight(chunked):
    store = ArtifactStore(chunked)
    holding, events = threading.Event(), []

    def commit_in_flight() -> None:
        with store_lock(store.directory, exclusive=False):
            holding.set()
            time.sleep(0.3)
            events.append("commit done")

    thread = threading.Thread(target=commit_in_flight)
    thread.start()
    holding.wait(10)
    collect(store, grace=0)
    events.append("gc done")
    thread.join()
    assert events == ["commit done", "gc done"]


def test_a_manifest_that_cannot_be_read_stops_gc_before_anything_is_removed(chunked, tmp_path):
    source = tmp_path / "d"
    source.mkdir()
    (source / "a.txt").write_text("a")
    _put(chunked, source)
    store = ArtifactStore(chunked)
    orphan, _ = store.blobs.put_bytes(b"orphan")
    version = json.loads((store.directory / "projects/proj/model/versions/v0.json").read_bytes())
    manifest = store.blobs.local_path(version["manifest"])
    assert manifest is not None
    os.chmod(manifest, 0o644)
    manifest.write_bytes(b"{damaged")
    with pytest.raises(ArtifactError, match="gc stopped, nothing removed: can't read the manifest of proj/model:v0"):
        collect(store, grace=0)
    assert store.blobs.has(orphan)
    assert hashlib.sha256(b"a").hexdigest() in {p.name for p in (store.directory / "blobs").rglob("*")}


def test_a_mostly_unreferenced_pack_is_rewritten_with_only_its_live_chunks(chunked, tmp_path):
    shared = os.urandom(MiB)
    versions = []
    for i in range(2):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        data = os.urandom(3 * MiB) + shared  # the first 3 MiB differ, the last 1 MiB is shared
        (folder / "ckpt.bin").write_bytes(data)
        versions.append(data)
        _put(chunked, folder)
    store_dir = chunked / "artifacts"
    old_packs = {f for f in _stored(store_dir) if f.startswith("packs/")}
    assert len(old_packs) == 2
    _cli(chunked, "artifact", "rm", "proj/model:v0")  # v0's pack: 3 MiB now unreferenced, 1 MiB v1 shares
    result = _cli(chunked, "artifact", "gc", "--grace", "0", "-q")
    assert "1 mostly unreferenced pack(s) rewritten" in result.stdout, result.stdout
    new_packs = {f for f in _stored(store_dir) if f.startswith("packs/")}
    assert len(new_packs) == 2 and len(new_packs & old_packs) == 1  # v1's own pack stays, v0's is replaced
    remaining = [json.loads((store_dir / "projects/proj/model/versions/v1.json").read_bytes())]
    assert {f for f in _stored(store_dir)} == set.union(*_expected_live(store_dir, remaining))
    replaced = (new_packs - old_packs).pop()
    assert 0.5 * MiB < (store_dir / replaced).stat().st_size < 1.1 * MiB  # the shared tail, not the 4 MiB
    artifact = tracklet.Api(chunked).artifact("proj/model:v1")
    out = Path(artifact.download(tmp_path / "out"))
    assert (out / "ckpt.bin").read_bytes() == versions[1]
    again = _cli(chunked, "artifact", "gc", "--grace", "0", "-q")
    assert "freed 0 bytes" in again.stdout and "rewritten" not in again.stdout


def test_an_unindexed_pack_duplicating_indexed_chunks_is_collected(chunked, tmp_path):
    """What a crash mid-repack, or two processes storing the same chunks at once, leaves: a pack
    whose chunks the index places elsewhere. It is re-indexed, found to hold nothing, removed."""
    folder = tmp_path / "v0"
    folder.mkdir()
    payload = os.urandom(2 * MiB)
    (folder / "ckpt.bin").write_bytes(payload)
    _put(chunked, folder)
    store = ArtifactStore(chunked)
    packs, _ = store.chunks()
    indexed = set(packs.list_packs())
    from tracklet.artifacts.chunking import chunk_file

    recipe = chunk_file(folder / "ckpt.bin")
    with PackWriter(packs, None) as writer:  # no index: as if the process died before indexing
        for cid, offset, length in list(recipe.offsets())[:5]:  # some of the same chunks
            writer.add_chunk(cid, payload[offset:offset + length])
    duplicate = set(packs.list_packs()) - indexed
    assert len(duplicate) == 1
    report = collect(store, grace=0, now=time.time() + 1)
    assert report.packs_removed == 1 and set(packs.list_packs()) == indexed
    out = Path(tracklet.Api(chunked).artifact("proj/model:v0").download(tmp_path / "out"))
    assert (out / "ckpt.bin").read_bytes() == payload


def test_gc_killed_after_forgetting_a_pack_never_leaves_the_index_naming_missing_chunks(chunked, tmp_path,
                                                                                        monkeypatch):
    """gc drops a pack's index rows before its file: a kill in between leaves an unindexed pack
    (re-indexed by the next gc or commit), never index rows for a missing pack, which a later
    commit would trust and skip writing those chunks."""
    folder = tmp_path / "v0"
    folder.mkdir()
    payload = os.urandom(2 * MiB)
    (folder / "big.bin").write_bytes(payload)
    _put(chunked, folder)
    _cli(chunked, "artifact", "rm", "proj/model:v0")
    store = ArtifactStore(chunked)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # the process dies at its first unlink

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", killed)
        with pytest.raises(KeyboardInterrupt):
            collect(store, grace=0, now=time.time() + 1)
    packs, index = store.chunks()
    assert index.stats()["chunks"] == 0 and len(packs.list_packs()) == 1  # unindexed, not indexed-but-gone
    _put(chunked, folder)  # the same content again: stored (its pack is the same file, indexed again)
    assert collect(store, grace=0, now=time.time() + 1).packs_removed == 0
    for name in ("out", "out2"):
        out = Path(tracklet.Api(chunked).artifact("proj/model:latest").download(tmp_path / name))
        assert (out / "big.bin").read_bytes() == payload
        _cli(chunked, "artifact", "rm", "proj/model:latest")
        collect(store, grace=0, now=time.time() + 1)
        _put(chunked, folder)
