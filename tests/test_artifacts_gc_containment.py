"""One damaged thing never stops a garbage collection (the server's ``tracklet admin artifact-gc``
and the local ``tracklet artifact gc``): a version whose manifest blob is missing or corrupt, a
chunked file whose recipe is gone, a row naming no blob, a pack whose chunks don't match their
ids. Each is named in the report; what it could reference is kept (on a server: every row of its
project); everything else is collected as if it weren't there, the grants whose bytes are gone
included."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import blake3
import pytest
import serverproc
import sqlalchemy as sa
from serverproc import REPO

from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.packs import build_pack
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.server.gc_live import LiveDigests, remove_stale, scratch_dir
from tracklet.server.schema import artifact_blobs
from tracklet.store import Store

HOUR = 3600.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit(artifacts: ServerArtifacts, project: str, name: str, entries: dict[str, tuple[str, int]]) -> str:
    """Commit a version of ``entries`` (path -> (digest, size)); its manifest's digest."""
    manifest = Manifest({path: ManifestEntry(path, digest, size) for path, (digest, size) in entries.items()}).to_bytes()
    artifacts.store_small(project, [(_sha(manifest), manifest)])
    artifacts.commit(project, name, type="model", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)
    return _sha(manifest)


def _chunked(artifacts: ServerArtifacts, project: str, chunks: list[bytes]) -> tuple[str, int, str, str]:
    """Send ``chunks`` as one pack, their recipe, and register the file: (its digest, size, pack
    id, recipe digest)."""
    ids = [blake3.blake3(chunk).digest() for chunk in chunks]
    pack_id, pack = build_pack(list(zip(ids, chunks)))
    artifacts.store_pack(project, pack_id, pack)
    data = b"".join(chunks)
    digest = "blake3:" + blake3.blake3(data).hexdigest()
    recipe = FileRecipe(size=len(data), digest=digest, chunks=tuple(zip(ids, map(len, chunks)))).to_json().encode()
    artifacts.store_small(project, [(_sha(recipe), recipe)])
    assert artifacts.register_file(project, digest, len(data), _sha(recipe))
    return digest, len(data), pack_id, _sha(recipe)


def _server(tmp_path: Path, request, backend: str, database: str) -> tuple[Path, str, ServerArtifacts]:
    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    store_url, options = None, None
    if backend == "s3":
        from s3server import BUCKET, S3_KEY, S3_SECRET

        store_url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
        options = {"endpoint_url": request.getfixturevalue("s3rver"), "key": S3_KEY, "secret": S3_SECRET}
    artifacts = ServerArtifacts(root, store_url, options, engine=Store(url, root=root).engine)
    artifacts.pack_small = False  # blobs as objects of their own: the test removes some
    return root, url, artifacts


def _has(artifacts: ServerArtifacts, digest: str) -> bool:
    artifacts.fs.invalidate_cache()
    return bool(artifacts.fs.exists(artifacts.blobs._path(digest)))


@pytest.mark.parametrize("backend", ["disk", "s3"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_server_collection_contains_each_unreadable_thing_to_its_project(backend, database, tmp_path, request):
    root, url, artifacts = _server(tmp_path, request, backend, database)
    blobs = {name: os.urandom(3000) for name in ("good_kept", "good_orphan", "bad_kept", "bad_orphan",
                                                 "row_orphan", "rec_orphan")}
    for name, data in blobs.items():
        artifacts.store_small(name.split("_")[0], [(_sha(data), data)])

    def entry(name: str) -> tuple[str, int]:
        return _sha(blobs[name]), len(blobs[name])

    # good: a version, an orphan, and two mixed packs (a live chunk, a dead one) to repack, one of
    # which is damaged where its live chunk lies.
    good_files = {"kept.bin": entry("good_kept")}
    packs = []
    for number in range(2):
        live, dead = os.urandom(40_000), os.urandom(60_000)
        pack_id, pack = build_pack([(blake3.blake3(dead).digest(), dead), (blake3.blake3(live).digest(), live)])
        artifacts.store_pack("good", pack_id, pack)
        live_digest = "blake3:" + blake3.blake3(live).hexdigest()
        recipe = FileRecipe(size=len(live), digest=live_digest,
                            chunks=((blake3.blake3(live).digest(), len(live)),)).to_json().encode()
        artifacts.store_small("good", [(_sha(recipe), recipe)])
        assert artifacts.register_file("good", live_digest, len(live), _sha(recipe))
        good_files[f"live{number}.bin"] = (live_digest, len(live))
        packs.append((pack_id, len(dead)))
    good_manifest = _commit(artifacts, "good", "m", good_files)
    damaged_pack, offset = packs[0]
    path = artifacts.packs.pack_path(damaged_pack)
    data = bytearray(artifacts.fs.cat_file(path))
    data[offset + 10] ^= 0xFF
    artifacts.fs.pipe_file(path, bytes(data))

    # bad: one version's manifest blob is gone (its grant left naming nothing), another reads.
    lost_manifest = _commit(artifacts, "bad", "lost", {"kept.bin": entry("bad_kept")})
    _commit(artifacts, "bad", "fine", {"other.bin": entry("bad_kept")})
    artifacts.fs.rm(artifacts.blobs._path(lost_manifest))
    # rec: a committed chunked file whose recipe blob is gone, and a pack no file names.
    file_digest, file_size, _, recipe_digest = _chunked(artifacts, "rec", [os.urandom(50_000)])
    _commit(artifacts, "rec", "f", {"file.bin": (file_digest, file_size)})
    artifacts.fs.rm(artifacts.blobs._path(recipe_digest))
    loose_chunk = os.urandom(30_000)
    loose_pack, loose = build_pack([(blake3.blake3(loose_chunk).digest(), loose_chunk)])
    artifacts.store_pack("rec", loose_pack, loose)
    # row: a grant that names no blob.
    with artifacts.engine.begin() as connection:
        connection.execute(sa.insert(artifact_blobs).values(project="row", digest="../../etc/passwd", size=1,
                                                            created_at=0.0))

    later = time.time() + 2 * HOUR
    dry = collect(artifacts, grace=HOUR, now=later, dry_run=True)
    report = collect(artifacts, grace=HOUR, now=later, repack=0.5)
    for result in (dry, report):
        assert result.held_projects == ["bad", "rec"]
        text = "\n".join(result.problems)
        assert f"the manifest of bad/lost:v0 can't be read: blob {lost_manifest} is missing" in text
        assert "bad/fine" not in text  # the version beside it reads
        assert f"the recipe {recipe_digest} of file {file_digest} in project rec can't be read" in text
        assert "a grant in project row names '../../etc/passwd', not a sha256" in text
    assert f"pack {damaged_pack} not repacked" in "\n".join(report.problems)
    assert "so no row of project(s) bad, rec was removed" in report.summary()
    assert sorted(report.removed) == sorted(dry.removed)

    # Everything of the held projects stays; the good project's orphan goes, its version stays.
    for name in ("good_kept", "bad_kept", "bad_orphan", "rec_orphan"):
        assert _has(artifacts, _sha(blobs[name])), name
    assert not _has(artifacts, _sha(blobs["good_orphan"])) and not _has(artifacts, _sha(blobs["row_orphan"]))
    assert report.blobs == 2 and report.packs == 0  # the bad row is left alone, its project collected
    assert loose_pack in artifacts.packs.list_packs()
    assert artifacts.missing("rec", [_sha(blobs["rec_orphan"])]) == []
    assert artifacts.missing_chunks("rec", [blake3.blake3(loose_chunk).hexdigest()]) == []
    # The grants naming the lost manifest and recipe went (their bytes are gone): the next upload sends them.
    assert report.dangling_grants == 2 and report.dangling_live == sorted([lost_manifest, recipe_digest])
    assert artifacts.missing("bad", [lost_manifest]) == [lost_manifest]
    assert artifacts.missing("rec", [recipe_digest]) == [recipe_digest]
    # The healthy mixed pack was repacked, the damaged one left as it was.
    assert report.repacked == 1 and damaged_pack in artifacts.packs.list_packs()
    assert _has(artifacts, good_manifest)

    if backend == "disk" and database == "sqlite":  # the command says so, and exits 0
        artifacts.engine.dispose()
        ran = serverproc.cli("admin", "--dir", str(root), "--store", url, "artifact-gc", "--grace", "0", "--dry-run")
        assert ran.returncode == 0, ran.stderr
        assert f"warning: the manifest of bad/lost:v0 can't be read: blob {lost_manifest} is missing" in ran.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_server_collection_killed_midway_removes_nothing_referenced_and_leaves_no_grant_without_bytes(
        database, tmp_path, request):
    """``kill -9`` of ``tracklet admin artifact-gc`` while it removes (prefix by prefix): every blob
    a committed version references reads back, every grant left names bytes that are there (no
    client is told a blob is held that isn't), and the next collection finishes the work."""
    root, url, artifacts = _server(tmp_path, request, "disk", database)
    kept = [os.urandom(2000) for _ in range(50)]
    artifacts.store_small("p", [(_sha(data), data) for data in kept])
    _commit(artifacts, "p", "m", {f"f{number}.bin": (_sha(data), len(data)) for number, data in enumerate(kept)})
    orphans = [os.urandom(64) for _ in range(3000)]
    for start in range(0, len(orphans), 500):
        artifacts.store_small("p", [(_sha(data), data) for data in orphans[start:start + 500]])
    with artifacts.engine.begin() as connection:  # all of it sent a week ago
        connection.execute(artifact_blobs.update().values(created_at=artifact_blobs.c.created_at - 7 * 24 * HOUR))
    week_ago = time.time() - 7 * 24 * HOUR
    for path in (root / "artifacts" / "blobs").rglob("*"):
        if path.is_file():
            os.utime(path, (week_ago, week_ago))
    artifacts.engine.dispose()
    command = [sys.executable, "-u", "-m", "tracklet", "admin", "--dir", str(root), "--store", url, "artifact-gc",
               "--grace", "1h"]
    temporary = tmp_path / "system-tmp"  # the child's TMPDIR: a killed collection leaves nothing there
    temporary.mkdir()
    child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temporary)},
                             stdout=subprocess.PIPE, text=True)
    removed = 0
    assert child.stdout is not None
    for line in child.stdout:
        removed += line.startswith("removed ")
        if removed == 1000:
            break
    child.kill()
    child.wait(timeout=60)
    assert removed == 1000, "the collection finished before it was killed"

    artifacts = ServerArtifacts(root, engine=Store(url, root=root).engine)
    for data in kept:
        handle, _ = artifacts.open_blob("p", _sha(data))
        with handle:
            assert handle.read() == data
    with artifacts.engine.connect() as connection:
        granted = list(connection.execute(sa.select(artifact_blobs.c.digest)).scalars())
    assert removed <= len(orphans) + len(kept) + 1 - len(granted) < len(orphans)  # killed midway
    assert [digest for digest in granted if not _has(artifacts, digest)] == []

    assert list(temporary.iterdir()) == []
    assert [path.suffix for path in scratch_dir(root).iterdir()] == [".sqlite"]  # its live set, found by the next
    report = collect(artifacts, grace=HOUR)
    assert list(scratch_dir(root).iterdir()) == []
    assert report.blobs >= 1 and not report.problems  # the rest: a killed collection's ungranted objects too
    assert [data for data in orphans if _has(artifacts, _sha(data))] == []
    assert artifacts.missing("p", [_sha(data) for data in kept]) == []


def test_a_collection_removes_the_scratch_files_of_dead_collections_and_never_a_live_ones(tmp_path):
    """A scratch file whose owner died (its ``flock`` gone with it) is removed by the next
    collection; one a collection still holds (here: this process's other ``LiveDigests``) stays
    and keeps working; so does a ``.new`` file young enough to be a collection starting."""
    folder = scratch_dir(tmp_path)
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tracklet.server.gc_live import LiveDigests\n"
        f"live = LiveDigests(Path({str(folder)!r}))\n"
        "live.add('p', ['ab' * 32])\n"
        "os.kill(os.getpid(), 9)\n")], env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert killed.returncode == -9
    (dead,) = folder.iterdir()
    starting = folder / "gc-live-starting.new"
    starting.write_bytes(b"")
    with LiveDigests(folder) as running:
        running.add("p", ["cd" * 32])
        assert not dead.exists() and starting.exists()
        with LiveDigests(folder) as other:
            other.add("q", ["ef" * 32])
            assert Path(running.path).exists()
            assert running.prefix("cd", "ce") == {"p": {"cd" * 32}}
        assert remove_stale(folder) == [] and Path(running.path).exists()
        hour_ago = time.time() - 2 * HOUR
        os.utime(starting, (hour_ago, hour_ago))
        assert remove_stale(folder) == [starting]
    assert list(folder.iterdir()) == []
