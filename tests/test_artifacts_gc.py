"""Deleting artifact versions and collecting garbage (tracklet/artifacts/gc.py, ``tracklet artifact
rm|gc``): exactly the unreferenced blobs, packs and chunks go, everything a live version needs stays
(its download is still byte-exact), nothing written within the grace period goes, and a collection
waits for commits in flight."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.artifacts.gc import collect, summary
from tracklet.artifacts.packs import PackStore, PackWriter
from tracklet.artifacts.storage import ArtifactStore, store_lock
from tracklet.errors import ArtifactNotFound
from tracklet.media.retention import unversioned_blobs_in_use

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


@pytest.mark.parametrize("shared", [False, True])
def test_blobs_a_run_log_names_are_never_collected_nor_any_in_a_shared_store(chunked, start, tmp_path,
                                                                              monkeypatch, shared):
    """The blob store is shared: media and tables keep blobs in it, named in run logs, and a
    directory set by $TRACKLET_ARTIFACT_DIR may serve several data roots. gc never removes what a
    run log of the data root names; a blob no version references and no log names goes from the
    data root's own store, and stays in a shared one (another data root's runs may name it)."""
    if shared:
        monkeypatch.setenv("TRACKLET_ARTIFACT_DIR", str(tmp_path / "shared-artifacts"))
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
    report = collect(store, grace=0, now=time.time() + 1, orphan_check=unversioned_blobs_in_use)
    if shared:
        assert report.blobs_removed == 2  # the manifest and other.txt, which a deleted version referenced
        assert store.blobs.has(stranger) and report.orphans_kept == 1 and "may be shared" in report.orphans_note
    else:
        assert report.blobs_removed == 3 and not store.blobs.has(stranger)  # ... and the blob nothing names
    assert store.blobs.has(media.digest)
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
    report = collect(store, grace=3600)  # older than the grace period go, younger ones may be written to
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


def test_an_unreadable_manifest_keeps_every_blob_and_pack_names_the_version_and_gc_goes_on(chunked, tmp_path):
    """What a damaged manifest references can't be known, and blobs are shared by content: no blob
    or pack goes, the version is named, and the rest of the collection (temporaries) still runs."""
    source = tmp_path / "d"
    source.mkdir()
    (source / "a.txt").write_text("a")
    _put(chunked, source)
    store = ArtifactStore(chunked)
    orphan = _aged(store, b"orphan", 7 * 86400)
    stale = Path(store.blobs.base) / "tmp" / "stale.partial"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 7 * 86400,) * 2)
    version = json.loads((store.directory / "projects/proj/model/versions/v0.json").read_bytes())
    manifest = store.blobs.local_path(version["manifest"])
    assert manifest is not None
    os.chmod(manifest, 0o644)
    manifest.write_bytes(b"{damaged")
    before = _stored(store.directory)
    result = _cli(chunked, "artifact", "gc", "--grace", "1h", "-q")
    assert result.exit_code == 0
    assert "warning: can't read the manifest of proj/model:v0" in result.stderr
    assert "(no blob and no pack removed)" in result.stderr and "1 problem(s)" in result.stdout
    assert _stored(store.directory) == before and store.blobs.has(orphan)
    assert not stale.exists()


def test_an_unreadable_recipe_keeps_the_packs_and_a_damaged_pack_is_not_repacked(chunked, tmp_path):
    """A recipe gone: its chunks are unknown, so no pack goes, but blobs do. A pack to repack
    whose live chunk is damaged stays as it is, named; the other is repacked."""
    shared = [os.urandom(MiB), os.urandom(MiB)]
    for i, data in enumerate([os.urandom(3 * MiB) + shared[0], os.urandom(3 * MiB) + shared[1],
                              os.urandom(2 * MiB) + shared[0] + os.urandom(2 * MiB) + shared[1]]):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        (folder / "ckpt.bin").write_bytes(data)
        (folder / f"note{i}.txt").write_text(f"version {i}")
        _put(chunked, folder)
    store = ArtifactStore(chunked)
    packs, index = store.chunks()
    assert _cli(chunked, "artifact", "rm", "proj/model:v0").exit_code == 0
    assert _cli(chunked, "artifact", "rm", "proj/model:v1").exit_code == 0
    v0_note = hashlib.sha256(b"version 0").hexdigest()

    # v2's recipe gone: v0's note blob still goes, no pack does.
    from tracklet.artifacts.storage import recipe_of

    manifest = store.manifest(store.registry.version("proj", "model", "v2"))
    recipe = next(recipe_of(entry) for entry in manifest if recipe_of(entry))
    recipe_path = store.blobs.local_path(recipe)
    saved = recipe_path.read_bytes()
    recipe_path.unlink()
    packs_before = {f for f in _stored(store.directory) if f.startswith("packs/")}
    report = collect(store, grace=0, now=time.time() + 1, orphan_check=unversioned_blobs_in_use)
    assert any(f"recipe blob {recipe}" in problem and "(no pack removed)" in problem for problem in report.problems), report.problems
    assert not store.blobs.has(v0_note) and report.packs_removed == report.packs_repacked == 0
    assert {f for f in _stored(store.directory) if f.startswith("packs/")} == packs_before

    # The recipe back; one of the two mostly dead packs (v0's, v1's) damaged where a live chunk lies.
    recipe_path.write_bytes(saved)
    live = set(store.read_recipe(recipe, "v2").chunk_ids)
    sparse = sorted(pack_id for pack_id in index.packs() if 2 * sum(n for c, n in index.pack_chunks(pack_id)
                                                                    if c not in live) >= sum(
        n for _, n in index.pack_chunks(pack_id)))
    assert len(sparse) == 2
    damaged = sparse[0]
    offset = next(offset for cid, offset, _ in packs.read_entries(damaged) if cid in live)
    path = Path(packs.pack_path(damaged))
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    report = collect(store, grace=0, now=time.time() + 1)
    assert report.packs_repacked == 1, report
    assert [problem for problem in report.problems if problem.startswith(f"pack {damaged} not repacked")]
    assert path.exists()


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


_LIMITED_STORE = """
import resource, signal, sys
import tracklet

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG: a full disk
root, data = sys.argv[1], sys.argv[2]
artifact = tracklet.Artifact("shards", type="dataset")
artifact.add_dir(data)
resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
try:
    artifact.save("proj", root=root)
except tracklet.errors.ArtifactError as error:
    print("raised:", error)
"""


def _blob_bytes(store_dir: Path) -> int:
    return sum(p.stat().st_size for p in (store_dir / "blobs" / "sha256").rglob("*") if p.is_file())


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and EFBIG as on Linux")
def test_a_failed_commit_s_blobs_stay_within_the_grace_period_and_go_after_it(root, tmp_path):
    """A commit that fails midway (here a file size limit: the disk "fills" at the last file) left
    the blobs it had written, which no version ever referenced: gc kept them for good before. They
    are kept within the grace period (a commit may be in flight) and reclaimed after it, and a
    live version's blobs stay."""
    import subprocess

    from conftest import REPO

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "weights.bin").write_bytes(os.urandom(300_000))
    live = tracklet.Artifact("model", type="model")
    live.add_dir(kept)
    live.save("proj", root=root)
    store = ArtifactStore(root)
    before_failure = _blob_bytes(store.directory)
    data = tmp_path / "shards"
    data.mkdir()
    for number in range(29):
        (data / f"a-{number:02}.bin").write_bytes(os.urandom(MiB))
    (data / "z-big.bin").write_bytes(os.urandom(3 * MiB))  # past the 2 MiB limit
    done = subprocess.run([sys.executable, "-c", _LIMITED_STORE, str(root), str(data)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and "raised:" in done.stdout, (done.stdout, done.stderr)
    left = _blob_bytes(store.directory) - before_failure
    assert left >= 10 * MiB  # the files stored before the failure (all 29 unless stored out of order)
    young = collect(store, grace=3600, orphan_check=unversioned_blobs_in_use)
    assert (young.blobs_removed, young.freed_bytes) == (0, 0) and young.kept_in_grace >= 10
    dry = _cli(root, "artifact", "gc", "--grace", "0", "--dry-run")
    assert dry.exit_code == 0 and f"would free {left:,} bytes" in dry.stdout, dry.stdout
    result = _cli(root, "artifact", "gc", "--grace", "0", "-q")
    assert result.exit_code == 0 and f"freed {left:,} bytes" in result.stdout, result.stdout
    assert _blob_bytes(store.directory) == before_failure
    target = tmp_path / "got"
    tracklet.Api(root).artifact("proj/model:v0").download(target, link=False)
    assert (target / "weights.bin").read_bytes() == (kept / "weights.bin").read_bytes()


_KILLED_STORE = """
import sys, time
import tracklet
from tracklet.artifacts.registry import LocalRegistry

def killed_before_the_version_is_written(self, info, aliases, **options):
    print("committing", flush=True)  # every blob, chunk and pack is written; the version file is not
    time.sleep(600)

LocalRegistry.commit = killed_before_the_version_is_written
root, data = sys.argv[1], sys.argv[2]
artifact = tracklet.Artifact("shards", type="dataset")
artifact.add_dir(data)
print("storing", flush=True)
artifact.save("proj", root=root)
"""


def test_a_commit_killed_midway_leaves_chunks_and_temporaries_that_go_after_the_grace_period(chunked, tmp_path):
    """kill -9 once a chunked file's packs and blobs are stored and before its version is written
    (the child stops itself there, so the kill never races the commit): what it stored is reclaimed
    by a collection after the grace period, and nothing before."""
    import signal
    import subprocess

    from conftest import REPO

    data = tmp_path / "big"
    data.mkdir()
    for number in range(6):
        (data / f"part-{number}.bin").write_bytes(os.urandom(8 * MiB))
    store = ArtifactStore(chunked)
    process = subprocess.Popen([sys.executable, "-c", _KILLED_STORE, str(chunked), str(data)],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout is not None and process.stdout.readline().strip() == "storing"
    assert process.stdout.readline().strip() == "committing"  # the kill lands between the blobs and the version
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    leftovers = {f for f in _files(store.directory) if f.startswith(("blobs/", "packs/"))}
    assert leftovers and not store.registry.projects()
    assert collect(store, grace=3600, orphan_check=unversioned_blobs_in_use).freed_bytes == 0
    without_check = collect(store, grace=0, now=time.time() + 1, dry_run=True)  # no check: unversioned blobs stay
    assert without_check.orphans_kept and "no check" in without_check.orphans_note
    report = collect(store, grace=0, now=time.time() + 1, orphan_check=unversioned_blobs_in_use)
    assert report.freed_bytes > 0
    assert not {f for f in _files(store.directory) if f.startswith(("blobs/", "packs/"))}


def test_commits_racing_gc_never_lose_a_blob_they_reference(chunked, tmp_path):
    """gc with no grace at all, again and again, while versions are committed: every version
    committed downloads byte-exact afterwards (the commit's shared gc.lock keeps its new blobs,
    written before its version file, from being taken for a failed commit's)."""
    store = ArtifactStore(chunked)
    stop, errors = threading.Event(), []

    def collector() -> None:
        while not stop.is_set():
            try:
                collect(ArtifactStore(chunked), grace=0, now=time.time() + 1, orphan_check=unversioned_blobs_in_use)
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

    thread = threading.Thread(target=collector)
    thread.start()
    contents = {}
    try:
        for number in range(8):
            folder = tmp_path / f"v{number}"
            folder.mkdir()
            contents[number] = {f"f{i}.bin": os.urandom(20_000 + i) for i in range(5)}
            contents[number]["big.bin"] = os.urandom(2 * MiB)
            for name, data in contents[number].items():
                (folder / name).write_bytes(data)
            artifact = tracklet.Artifact("model", type="model")
            artifact.add_dir(folder)
            artifact.save("proj", root=chunked)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    collect(store, grace=0, now=time.time() + 1, orphan_check=unversioned_blobs_in_use)
    for number, files in contents.items():
        target = tmp_path / f"got{number}"
        tracklet.Api(chunked).artifact(f"proj/model:v{number}").download(target, link=False)
        assert {p.name: p.read_bytes() for p in target.iterdir()} == files


def _aged(store: ArtifactStore, data: bytes, seconds: float) -> str:
    """A blob no version references, its time set ``seconds`` back (a failed commit's, say)."""
    digest, _ = store.blobs.put_bytes(data)
    then = time.time() - seconds
    os.utime(store.blobs.local_path(digest), (then, then))
    return digest


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_run_running_during_gc_keeps_what_it_writes_or_claims_and_old_orphans_go(chunked, start):
    """A data root that always has a run going reclaims blobs too: what no version references and
    no log names goes once older than the grace period and than the start of every running run;
    the running run's new media blob and an old blob whose bytes it logged again (claimed, not
    written) stay, and read back after it finishes."""
    store = ArtifactStore(chunked)
    orphan = _aged(store, b"a failed commit's blob, a week ago", 7 * 86400)
    page, fresh = "<p>logged again by a running run</p>", "<p>first logged by the running run</p>"
    claimed = _aged(store, page.encode(), 7 * 86400)
    run = start()
    run.log({"page": tracklet.Html(page, data_is_not_path=True), "fresh": tracklet.Html(fresh, data_is_not_path=True)})
    fresh_digest = hashlib.sha256(fresh.encode()).hexdigest()
    _wait_for(lambda: store.blobs.has(fresh_digest) and
              store.blobs.local_path(claimed).stat().st_mtime > time.time() - 3600, "the media worker stored nothing")
    report = collect(store, grace=0, orphan_check=unversioned_blobs_in_use)
    assert report.running_run == run.path and report.orphans_note == ""
    assert not store.blobs.has(orphan) and report.blobs_removed == 1
    assert store.blobs.has(claimed) and store.blobs.has(fresh_digest)
    assert report.kept_for_running >= 2 and f"since run {run.path} (running) started" in summary(report)
    run.finish()
    recorded = tracklet.Api(chunked).run(run.path)
    assert recorded.media("page")[0].read_bytes() == page.encode()
    assert recorded.media("fresh")[0].read_bytes() == fresh.encode()


def test_a_running_runs_temporary_in_flight_stays_whatever_the_grace(chunked, start):
    """A running run's media worker writing a table's blob (a ``BlobWriter``'s temporary in
    blobs/tmp, last written a minute ago) while ``gc --grace 0`` runs: the temporary stays and is
    published (it was removed as stale: the publish failed and the table was lost)."""
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.storage import artifact_dir

    store = ArtifactStore(chunked)
    run = start()
    writer = FsspecBlobStore(artifact_dir(chunked)).writer()
    data = b"a table's parquet bytes, written as the run goes"
    writer.write(data)
    writer._handle.flush()
    minute_ago = time.time() - 60
    os.utime(writer.temporary, (minute_ago, minute_ago))
    report = collect(store, grace=0, orphan_check=unversioned_blobs_in_use)
    assert report.temporaries_removed == 0
    assert writer.publish(hashlib.sha256(data).hexdigest())
    assert store.blobs.read_bytes(hashlib.sha256(data).hexdigest()) == data
    run.finish()


def test_a_blob_a_running_run_claims_while_gc_decides_stays(chunked, start):
    """A running run's media worker that finds a blob stored names it without writing it: its
    claim (``FsspecBlobStore.claim``), made after the collection listed the blob as old and before
    its record reaches the log, keeps the blob; an unclaimed one of the same age goes."""
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.storage import artifact_dir

    store = ArtifactStore(chunked)
    claimed = _aged(store, b"bytes a running run is logging again", 7 * 86400)
    unclaimed = _aged(store, b"bytes nobody uses", 7 * 86400)
    run = start()
    workers_store = FsspecBlobStore(artifact_dir(chunked))

    def claims_meanwhile(checked_store, digests):
        assert {claimed, unclaimed} <= digests  # listed as old already
        assert workers_store.claim(claimed)
        return unversioned_blobs_in_use(checked_store, digests)

    report = collect(store, grace=3600, orphan_check=claims_meanwhile)
    assert store.blobs.has(claimed) and not store.blobs.has(unclaimed)
    assert report.blobs_removed == 1 and report.kept_in_grace == 1  # claimed: used now
    run.finish()


def test_a_blob_claimed_before_gc_moves_it_aside_goes_back_and_one_claimed_after_is_written_again(chunked, start):
    """The last step before a blob goes: it is moved aside and its time checked again. Claimed
    just before the move, it goes back; claimed after, the claim finds it missing (the writer
    stores it again); a collection killed with blobs aside puts them back first."""
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.gc import _set_aside, restore_set_aside
    from tracklet.artifacts.storage import artifact_dir

    store = ArtifactStore(chunked)
    workers_store = FsspecBlobStore(artifact_dir(chunked))  # a run's media worker's
    first = _aged(store, b"claimed before the move", 7 * 86400)
    second = _aged(store, b"claimed after the move", 7 * 86400)
    run = start()
    cutoff = time.time() - 3600
    doomed = [(store.blobs.local_path(digest), 10, "blob") for digest in (first, second)]
    assert workers_store.claim(first)
    from tracklet.artifacts.gc import GcReport

    report = GcReport(dry_run=False, blobs_removed=2, blob_bytes=20)
    aside: dict[Path, Path] = {}
    left = _set_aside(store, doomed, cutoff, report, aside)
    assert [path.name for path, _, _ in left] == [second] and store.blobs.has(first)
    assert (report.blobs_removed, report.kept_for_running) == (1, 1)
    assert not workers_store.claim(second)  # moved aside: the writer stores it again
    assert restore_set_aside(store) == 1 and store.blobs.read_bytes(second) == b"claimed after the move"
    assert not list((Path(store.blobs.base) / "tmp").glob("*.gc-aside"))
    run.finish()
