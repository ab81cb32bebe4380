"""Artifacts in local mode (tracklet/artifacts/, docs/artifacts.md): real files, real processes.

Round trips are byte-exact; re-logging unchanged content writes nothing and reads nothing (the
hasher's counter, not timing); versions and aliases stay consistent with two processes logging one
collection at once and after a ``kill -9`` mid-store; bad input fails with errors naming the file
while the run goes on; lineage is visible through ``tracklet.Api`` after indexing and a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import serverproc
from conftest import REPO

import tracklet
from tracklet.artifacts import hashing
from tracklet.errors import (ArtifactError, ArtifactNameError, ArtifactNotFound, ArtifactVerifyError, TrackletError,
                             TrackletWarning, UnsupportedReference)


def _tree(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def _blobs(root: Path) -> dict[str, tuple[int, int]]:
    """Every visible blob: name -> (size, mtime_ns)."""
    base = root / "artifacts" / "blobs" / "sha256"
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def dataset(tmp_path) -> Path:
    base = tmp_path / "dataset"
    (base / "images" / "deep").mkdir(parents=True)
    (base / "labels.csv").write_text("id,label\n1,cat\n2,dog\n")
    (base / "images" / "a.bin").write_bytes(os.urandom(300_000))
    (base / "images" / "deep" / "b.bin").write_bytes(os.urandom(1000))
    (base / "images" / "empty").write_bytes(b"")
    for path in base.rglob("*"):  # written a minute ago: not "racily" recent (hashing.RACY_NS)
        os.utime(path, (time.time() - 60, time.time() - 60))
    return base


def test_round_trip_is_byte_exact(start, root, dataset, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(50_000))
    run = start()
    artifact = tracklet.Artifact("mnist", type="dataset", description="digits", metadata={"rows": 2})
    artifact.add_dir(dataset, name="data")
    artifact.add_file(model, name="weights/model.pt")
    artifact.add_file(model)
    with artifact.new_file("notes/readme.txt") as handle:
        handle.write("héllo\n")
    with artifact.new_file("raw.bin", mode="wb") as handle:
        handle.write(b"\x00\x01")
    returned = run.log_artifact(artifact, aliases=["best"])
    assert returned is artifact
    artifact.wait()
    run.finish()
    assert artifact.version == "v0" and artifact.aliases == ["latest", "best"]
    assert artifact.qualified_name == "test/mnist:v0"
    expected = {f"data/{k}": v for k, v in _tree(dataset).items()}
    expected.update({"weights/model.pt": model.read_bytes(), "model.pt": model.read_bytes(),
                     "notes/readme.txt": "héllo\n".encode(), "raw.bin": b"\x00\x01"})
    manifest = artifact.manifest
    assert {entry.path: entry.digest for entry in manifest} == {k: hashlib.sha256(v).hexdigest()
                                                                for k, v in expected.items()}
    lines = "".join(f"{path}:{hashlib.sha256(expected[path]).hexdigest()}\n" for path in sorted(expected))
    assert artifact.digest == hashlib.sha256(lines.encode()).hexdigest()

    again = tracklet.Api(root).artifact("test/mnist:best")
    assert again.version == "v0" and again.type == "dataset" and again.metadata == {"rows": 2}
    assert again.description == "digits"
    target = Path(again.download(tmp_path / "out"))
    assert _tree(target) == expected
    again.verify(target)
    # The manifest keeps W&B's shape.
    document = json.loads(manifest.to_bytes())
    assert set(document["contents"]["model.pt"]) == {"digest", "size"}


def test_relogging_unchanged_content_returns_the_version_and_writes_and_reads_nothing(start, root, dataset):
    run = start()
    first = tracklet.Artifact("ds", "dataset")
    first.add_dir(dataset)
    run.log_artifact(first).wait()
    assert first.bytes_written > 300_000 and not first.reused
    blobs = _blobs(root)
    hashed = hashing.files_hashed()

    second = tracklet.Artifact("ds", "dataset")
    second.add_dir(dataset)
    run.log_artifact(second).wait()
    assert second.version == "v0" and second.reused
    assert second.bytes_written == 0
    assert hashing.files_hashed() == hashed  # every file a stat-cache hit: none read again
    assert _blobs(root) == blobs  # nothing rewritten
    # A changed file gives a new version, and only that file is read.
    (dataset / "labels.csv").write_text("id,label\n1,cat\n")
    third = tracklet.Artifact("ds", "dataset")
    third.add_dir(dataset)
    run.log_artifact(third).wait()
    assert third.version == "v1" and hashing.files_hashed() == hashed + 1
    assert third.bytes_written < 1000
    run.finish()


def test_a_same_size_rewrite_within_the_mtime_granularity_is_not_taken_for_unchanged(start, root, tmp_path):
    # File systems stamp mtimes coarsely: a rewrite right after hashing can keep size, mtime and
    # inode. Such a file's digest is not remembered, so logging it again reads it again.
    path = tmp_path / "weights.bin"
    path.write_bytes(b"A" * 1000)
    run = start()
    first = run.log_artifact(path, type="model").wait()
    stamp = path.stat()
    with open(path, "r+b") as handle:  # in place: same inode, same size
        handle.write(b"B" * 1000)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the same coarse mtime
    assert path.stat().st_ino == stamp.st_ino
    second = run.log_artifact(path, type="model").wait()
    run.finish()
    assert (first.version, second.version) == ("v0", "v1")
    assert second.manifest["weights.bin"].digest == hashlib.sha256(b"B" * 1000).hexdigest()


def test_new_draft_keeps_stored_files_and_adds_changes(start, root, dataset, tmp_path):
    run = start()
    base = tracklet.Artifact("ds", "dataset")
    base.add_dir(dataset)
    run.log_artifact(base).wait()
    draft = base.new_draft()
    extra = tmp_path / "extra.txt"
    extra.write_text("more")
    draft.add_file(extra)
    draft.remove("images/deep")
    run.log_artifact(draft).wait()
    run.finish()
    assert draft.version == "v1"
    assert sorted(e.path for e in draft.files()) == ["extra.txt", "images/a.bin", "images/empty", "labels.csv"]
    out = Path(draft.download(tmp_path / "v1"))
    assert (out / "images" / "a.bin").read_bytes() == (dataset / "images" / "a.bin").read_bytes()
    with pytest.raises(ArtifactError, match="can't change"):
        base.add_file(extra)


def test_aliases_move_and_are_unique_per_collection(start, root, tmp_path):
    run = start()
    versions = []
    for number, aliases in enumerate([["best", "prod"], ["best"], []]):
        path = tmp_path / f"m{number}.bin"
        path.write_bytes(f"model {number}".encode())
        artifact = tracklet.Artifact("model", "model")
        artifact.add_file(path, name="model.bin")
        versions.append(run.log_artifact(artifact, aliases=aliases))
    other = tmp_path / "other.bin"
    other.write_bytes(b"x")
    unrelated = tracklet.Artifact("other", "model")
    unrelated.add_file(other)
    run.log_artifact(unrelated, aliases=["best"]).wait()
    for artifact in versions:
        artifact.wait()
    run.finish()
    api = tracklet.Api(root)
    assert [a.version for a in versions] == ["v0", "v1", "v2"]
    assert api.artifact("test/model:best").version == "v1"
    assert api.artifact("test/model:prod").version == "v0"
    assert api.artifact("test/model").version == "v2"
    assert api.artifact("test/model:latest").aliases == ["latest"]
    assert api.artifact("test/other:best").version == "v0"  # aliases are per collection
    assert [a.aliases for a in api.artifact_versions("test/model")] == [["prod"], ["best"], ["latest"]]
    assert api.artifact_collections("test") == [
        {"name": "model", "type": "model", "versions": 3, "latest": "v2", "description": "", "tags": []},
        {"name": "other", "type": "model", "versions": 1, "latest": "v0", "description": "", "tags": []},
    ]
    with pytest.raises(ArtifactNotFound, match="no alias 'staging'"):
        api.artifact("test/model:staging")
    with pytest.raises(ArtifactNotFound):
        api.artifact("test/model:v9")
    with pytest.raises(ArtifactNameError, match="assigned automatically"):
        run2 = start()
        artifact = tracklet.Artifact("model", "model")
        artifact.add_file(other)
        run2.log_artifact(artifact, aliases=["v7"])


def test_a_committed_versions_aliases_are_edited_in_place_and_saved(start, root, tmp_path):
    """W&B's documented way to move aliases of a logged version: ``artifact.aliases.append("best")``
    (or assigning the list, or ``remove``) and then ``artifact.save()``; before, the edit was made
    on a copy and lost, and ``save()`` raised."""
    run = start()
    logged = []
    for number in range(2):
        path = tmp_path / f"m{number}.bin"
        path.write_bytes(f"model {number}".encode())
        # Metadata JSON doesn't hold as given (a tuple, a path): stored as its JSON form.
        artifact = tracklet.Artifact("model", "model", metadata={"shape": (28, 28), "source": tmp_path})
        artifact.add_file(path, name="model.bin")
        artifact.aliases.append("candidate")  # a draft's list is live too
        logged.append(run.log_artifact(artifact, aliases=["prod"] if number == 0 else []).wait())
    run.finish()
    assert logged[1].aliases == ["latest", "candidate"]
    logged[1].aliases.append("fresh")  # the logged object itself: its metadata is not an edit
    logged[1].save()
    assert logged[1].aliases == ["latest", "candidate", "fresh"]
    api = tracklet.Api(root)
    assert api.artifact("test/model:v0").aliases == ["prod"]
    first = api.artifact("test/model:v0")
    first.aliases.append("best")
    first.aliases.append("candidate")  # moves it from v1
    first.aliases.remove("prod")
    assert first.save() is first
    assert first.aliases == ["best", "candidate"]
    assert api.artifact("test/model:best").version == "v0"
    assert api.artifact("test/model:candidate").version == "v0"
    with pytest.raises(ArtifactNotFound, match="no alias 'prod'"):
        api.artifact("test/model:prod")
    latest = api.artifact("test/model:latest")
    assert latest.aliases == ["latest", "fresh"]
    latest.aliases = ["latest", "staging"]
    latest.save()
    assert api.artifact("test/model:staging").version == "v1"
    latest.save(aliases=["canary"])  # W&B-style extra aliases given to save()
    assert api.artifact("test/model:canary").aliases == ["latest", "canary", "staging"]

    # Refused edits raise a clear error and change nothing.
    bad = api.artifact("test/model:v1")
    bad.aliases.append("v0")
    with pytest.raises(ArtifactNameError, match="assigned automatically"):
        bad.save()
    bad = api.artifact("test/model:v1")
    bad.aliases.remove("latest")
    bad.aliases.append("gone")
    with pytest.raises(ArtifactError, match="'latest' always names the newest version"):
        bad.save()
    edited = api.artifact("test/model:v1")
    edited.metadata["accuracy"] = float("nan")  # JSON can't hold it: refused, the alias beside it too
    edited.aliases.append("gone")
    with pytest.raises(ArtifactError, match=r"metadata\['accuracy'\] is nan"):
        edited.save()
    with pytest.raises(ArtifactNotFound, match="no alias 'gone'"):
        api.artifact("test/model:gone")
    with pytest.raises(ArtifactError, match="list of strings"):
        edited.aliases = "best"
    unchanged = api.artifact("test/model:v1")
    unchanged.save()  # nothing edited: nothing to do
    assert unchanged.aliases == ["latest", "canary", "staging"]


_LOGGER = """
import os, sys, time
import tracklet
root, tag, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
run = tracklet.init(project="race", dir=root, settings={"console": "off", "capture_environment": False,
                                                       "system_metrics": False})
while time.time() < start_at:
    time.sleep(0.001)
logged = []
for index in range(6):
    path = os.path.join(root, f"{tag}-{index}.txt")
    with open(path, "w") as handle:
        handle.write(f"{tag} {index}")
    artifact = tracklet.Artifact("shared", "dataset")
    artifact.add_file(path, name="content.txt")
    logged.append(run.log_artifact(artifact))
for artifact in logged:
    artifact.wait()
    print(artifact.version, artifact.manifest["content.txt"].digest)
run.finish()
"""


def test_two_processes_logging_one_collection_get_distinct_versions(root):
    root.mkdir(parents=True)
    start_at = str(time.time() + 1.5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [subprocess.Popen([sys.executable, "-c", _LOGGER, str(root), tag, start_at], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    lines = [line.split() for out, _ in outputs for line in out.splitlines()]
    versions = [version for version, _ in lines]
    assert sorted(versions, key=lambda v: int(v[1:])) == [f"v{n}" for n in range(12)]
    api = tracklet.Api(root)
    for version, digest in lines:  # each version holds what its process logged
        assert api.artifact(f"race/shared:{version}").manifest["content.txt"].digest == digest
    assert api.artifact("race/shared").version == "v11"


_SLOW_STORE = """
import os, sys, time
import tracklet
from tracklet.artifacts import blobs

marker = sys.argv[2]
original_put, original_store = blobs.FsspecBlobStore.put_file, blobs.FsspecBlobStore.store_file


def progress(count):
    open(marker, "w").close()  # a partial blob is being written: the test kills us now
    time.sleep(60)


def slow_put(self, path, digest, on_bytes=None):  # a file whose digest is known (the stat cache)
    return original_put(self, path, digest, progress)


def slow_store(self, path, on_bytes=None):  # a new file, hashed as it is copied
    return original_store(self, path, progress)


if sys.argv[3] == "slow":
    blobs.FsspecBlobStore.put_file = slow_put
    blobs.FsspecBlobStore.store_file = slow_store
    blobs._CHUNK = 1 << 16
    blobs.INLINE_BYTES = 1 << 16  # the file is streamed into its blob, not read whole first
run = tracklet.init(project="kill", dir=sys.argv[1], settings={"console": "off", "capture_environment": False,
                                                               "system_metrics": False})
artifact = tracklet.Artifact("big", "model")
artifact.add_file(os.path.join(sys.argv[1], "..", "big.bin"), name="big.bin")
run.log_artifact(artifact).wait()
print(artifact.version)
run.finish()
"""


def test_kill_9_mid_store_leaves_no_partial_blob_visible_and_a_rerun_completes(root, tmp_path):
    root.mkdir(parents=True)
    payload = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(payload)
    marker = tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _SLOW_STORE, str(root), str(marker), "slow"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), process.communicate()
    partials = list((root / "artifacts" / "blobs" / "tmp").iterdir())
    assert partials and 0 < partials[0].stat().st_size < len(payload)  # killed mid-write
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    assert hashlib.sha256(payload).hexdigest() not in _blobs(root)
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(root).artifact("kill/big")
    for name in _blobs(root):  # whatever is visible is whole and correct
        blob = next((root / "artifacts" / "blobs" / "sha256").rglob(name))
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == name

    done = subprocess.run([sys.executable, "-c", _SLOW_STORE, str(root), str(marker), "fast"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["v0"]
    out = Path(tracklet.Api(root).artifact("kill/big:v0").download(tmp_path / "out"))
    assert (out / "big.bin").read_bytes() == payload


def test_a_draft_dropped_unlogged_leaves_no_staged_files():
    import gc

    draft = tracklet.Artifact("scratch", "dataset")
    with draft.new_file("notes.txt") as handle:
        handle.write("x")
    staging = Path(draft._staging)
    assert (staging / "new" / "notes.txt").read_text() == "x"
    del draft
    gc.collect()
    assert not staging.exists()


def test_bad_names_are_refused_with_clear_errors(tmp_path):
    for name in ("a/b", "..", "a..b", "", ".hidden", "x" * 129, "nul\0"):
        with pytest.raises(ArtifactNameError, match="artifact name"):
            tracklet.Artifact(name, "dataset")
    path = tmp_path / "f.txt"
    path.write_text("x")
    artifact = tracklet.Artifact("ok", "dataset")
    for name in ("../escape", "a/../../b", "/etc/passwd", "a\0b", "a//b", "dir/", ""):
        with pytest.raises(ArtifactNameError):
            artifact.add_file(path, name=name)
    assert artifact.add_file(path, name="./sub/./f.txt") == "sub/f.txt"
    with pytest.raises(ArtifactError, match="both a file and a directory"):
        artifact.add_file(path, name="sub/f.txt/inner")
    with pytest.raises(ArtifactError, match="both a file and a directory"):
        artifact.add_file(path, name="sub")
    artifact.remove("sub")
    assert artifact.add_file(path, name="sub") == "sub"  # free again once its files are removed
    with pytest.raises(ArtifactError, match=r"missing\.txt.*does not exist"):
        artifact.add_file(tmp_path / "missing.txt")
    with pytest.raises(ArtifactError, match="is a directory"):
        artifact.add_file(tmp_path)
    with pytest.raises(UnsupportedReference, match="'ftp'"):
        artifact.add_reference("ftp://host/key")
    with pytest.raises(ArtifactError, match="can't be reached"):
        artifact.add_reference((tmp_path / "gone").as_uri())
    assert isinstance(UnsupportedReference("x"), (TrackletError, NotImplementedError))


def test_errors_about_a_huge_name_quote_only_its_start(root, tmp_path):
    """A name, alias, path or reference of any length is named by its first 80 characters: the
    error of a 1 MB name was 1 MB (printed in full by a warning, a CLI, a log)."""
    huge = "x" * 1_000_000
    path = tmp_path / "f.txt"
    path.write_text("x")
    calls = [lambda: tracklet.Artifact(huge, "dataset"), lambda: tracklet.Artifact(huge + "/y", "dataset"),
             lambda: tracklet.Artifact("ok", "dataset").add_file(path, name="/" + huge),
             lambda: tracklet.Artifact("ok", "dataset").add_file(path, name=huge + "/../y"),
             lambda: tracklet.Artifact("ok", "dataset").add_file(path, name=huge[:4000] + "/a\0"),
             lambda: tracklet.Artifact("ok", "dataset").add_file(path, name="d/" + huge[:3000]),
             lambda: tracklet.Api(root).artifact("p/" + huge + ":v0"),
             lambda: tracklet.Api(root).artifact("p/q:" + huge),
             lambda: tracklet.Api(root).artifact("/".join([huge] * 4))]
    for call in calls:
        with pytest.raises(ArtifactNameError) as raised:
            call()
        assert len(str(raised.value)) < 400 and "xxxx'..." in str(raised.value)


def test_a_name_part_longer_than_a_file_system_takes_is_refused_by_every_way_of_adding(start, root, tmp_path, servers,
                                                                                       monkeypatch):
    """A part over 255 bytes (UTF-8) was stored, then every download failed with ``File name too
    long``; now each way of naming a file in a draft refuses it, and 255 bytes round-trips."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "g.txt").write_text("g")
    too_long = ["d/" + "x" * 256, "é" * 128, "a/" + "日" * 86 + "/b.txt"]  # 256, 256 and 258 bytes
    artifact = tracklet.Artifact("long-names", "dataset")
    for name in too_long:
        with pytest.raises(ArtifactNameError, match=r"a part of 25\d bytes.*at most 255 bytes.*never be downloaded"):
            artifact.add_file(path, name=name)
        with pytest.raises(ArtifactNameError, match="at most 255 bytes"):
            artifact.add_dir(tmp_path / "dir", name=name)
        with pytest.raises(ArtifactNameError, match="at most 255 bytes"):
            artifact.new_file(name).__enter__()
        with pytest.raises(ArtifactNameError, match="at most 255 bytes"):
            artifact.add_reference(path.as_uri(), name=name)
    longest = ["x" * 251 + ".txt", "é" * 127 + "a", "日" * 85]  # 255, 255 and 255 bytes
    for name in longest:
        artifact.add_file(path, name=f"ok/{name}")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    artifact.add_file(big, name="c" * 255)  # stored as chunks, rebuilt through a temporary beside it
    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "1MiB")
    run = start()
    run.log_artifact(artifact).wait()
    run.finish()
    expected = sorted([f"ok/{name}" for name in longest] + ["c" * 255])  # and nothing refused got in
    local = tmp_path / "download"
    version = tracklet.Api(root).artifact("test/long-names:v0")
    assert version.manifest["c" * 255].digest.startswith("blake3:")
    version.download(local)
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == expected
    assert (local / ("c" * 255)).read_bytes() == big.read_bytes()

    server = servers(tmp_path / "server", dev=True)  # and from a server, through its blob cache
    from serverproc import cli

    pushed = cli("--dir", str(root), "artifact", "push", "test/long-names:v0", "--url", server.url)
    assert pushed.returncode == 0, pushed.stderr
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    remote = tmp_path / "remote"
    tracklet.Api(base_url=server.url).artifact("test/long-names:v0").download(remote)
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()) == expected


def test_a_file_gone_before_storing_fails_that_artifact_only_and_the_run_goes_on(start, root, tmp_path):
    run = start()
    doomed = tmp_path / "doomed.bin"
    doomed.write_bytes(b"soon gone")
    artifact = tracklet.Artifact("fragile", "dataset")
    artifact.add_file(doomed)
    doomed.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log_artifact(artifact)
        with pytest.raises(ArtifactError, match=r"doomed\.bin"):
            artifact.wait()
    assert artifact.state == "failed"
    assert any(issubclass(w.category, TrackletWarning) and "doomed.bin" in str(w.message) for w in caught)
    run.log({"loss": 1.0})
    fine = tmp_path / "fine.txt"
    fine.write_text("ok")
    good = tracklet.Artifact("fine", "dataset")
    good.add_file(fine)
    assert run.log_artifact(good).wait().version == "v0"
    run.finish()
    recorded = tracklet.Api(root).run(run.path)
    assert recorded.state == "finished" and recorded.summary["loss"] == 1.0
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(root).artifact("test/fragile")


def test_verify_and_download_name_every_mismatching_file(start, root, dataset, tmp_path):
    run = start()
    artifact = tracklet.Artifact("ds", "dataset")
    artifact.add_dir(dataset)
    run.log_artifact(artifact).wait()
    run.finish()
    copy = Path(artifact.download(tmp_path / "copy", link=False))
    artifact.verify(copy)
    (copy / "labels.csv").write_text("tampered")
    (copy / "images" / "deep" / "b.bin").unlink()
    (copy / "stray.txt").write_text("?")
    with pytest.raises(ArtifactVerifyError) as failure:
        artifact.verify(copy)
    assert failure.value.problems.keys() == {"labels.csv", "images/deep/b.bin", "stray.txt"}
    assert "digest mismatch" in failure.value.problems["labels.csv"]
    assert "labels.csv" in str(failure.value)

    # A damaged blob is found on download (its stat changed: it is hashed again), named.
    blob = root / "artifacts" / "blobs" / "sha256" / artifact.manifest["labels.csv"].digest[:2] / \
        artifact.manifest["labels.csv"].digest
    assert blob.stat().st_mode & 0o222 == 0  # blobs are read-only
    os.chmod(blob, 0o644)
    blob.write_text("corrupt")
    with pytest.raises(ArtifactVerifyError, match=r"labels\.csv: digest mismatch") as failure:
        tracklet.Api(root).artifact("test/ds").download(tmp_path / "again")
    assert list(failure.value.problems) == ["labels.csv"]


def test_download_links_read_only_blobs_and_skips_files_already_in_place(start, root, dataset, tmp_path):
    run = start()
    artifact = tracklet.Artifact("ds", "dataset")
    artifact.add_dir(dataset)
    run.log_artifact(artifact).wait()
    run.finish()
    hashed = hashing.files_hashed()
    out = Path(artifact.download(tmp_path / "out"))
    assert hashing.files_hashed() == hashed  # blobs were hashed as they were written: not read again
    labels = out / "labels.csv"
    blob = root / "artifacts" / "blobs" / "sha256" / artifact.manifest["labels.csv"].digest[:2] / \
        artifact.manifest["labels.csv"].digest
    # Reflink or hard link: never a writable alias of the blob.
    assert labels.stat().st_mode & 0o222 == 0 or labels.stat().st_ino != blob.stat().st_ino
    before = {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()}
    hashed = hashing.files_hashed()
    artifact.download(out)  # everything in place already: nothing read, nothing replaced
    assert hashing.files_hashed() == hashed
    assert {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()} == before
    # A file replaced locally is put back.
    labels.unlink()
    labels.write_text("mine")
    artifact.download(out)
    assert labels.read_text() == (dataset / "labels.csv").read_text()


def test_saving_over_a_downloaded_file_never_changes_the_stored_version(start, root, tmp_path, servers, monkeypatch):
    """A fine-tuning script saves its weights over the ``model.pt`` it downloaded. As root (most
    containers) file modes don't protect a hard-linked blob: that rewrote the stored version for
    good. Downloads as root copy instead (or reflink); any other user gets a read-only file."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    original = weights.read_bytes()
    run = start()
    artifact = tracklet.Artifact("net", "model")
    artifact.add_file(weights)
    run.log_artifact(artifact).wait()
    run.finish()
    server = servers(tmp_path / "server", dev=True)
    from serverproc import cli

    pushed = cli("--dir", str(root), "artifact", "push", "test/net:v0", "--url", server.url)
    assert pushed.returncode == 0, pushed.stderr
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    for where, api in (("local", tracklet.Api(root)), ("server", tracklet.Api(base_url=server.url))):
        downloaded = Path(api.artifact("test/net:v0").download(tmp_path / where)) / "model.pt"
        model.load_state_dict(torch.load(downloaded))
        with torch.no_grad():
            model.weight.add_(1.0)
        try:
            torch.save(model.state_dict(), downloaded)  # fine-tuned weights over the downloaded file
        except PermissionError:
            assert os.geteuid() != 0  # a read-only hard link refuses it: nothing changed
        else:
            assert downloaded.read_bytes() != original
        again = Path(api.artifact("test/net:v0").download(tmp_path / f"{where}-again")) / "model.pt"
        assert again.read_bytes() == original, where
    tracklet.Api(root).artifact("test/net:v0").verify(tmp_path / "local-again")


def test_file_references_record_size_mtime_and_digest_without_copying(start, root, dataset, tmp_path):
    run = start()
    artifact = tracklet.Artifact("refs", "dataset")
    names = artifact.add_reference(dataset.as_uri(), name="data")
    assert "data/labels.csv" in names
    artifact.add_reference((dataset / "labels.csv").as_uri(), name="nosum.csv", checksum=False)
    run.log_artifact(artifact).wait()
    run.finish()
    entry = artifact.manifest["data/labels.csv"]
    assert entry.ref == (dataset / "labels.csv").as_uri()
    assert entry.digest == hashlib.sha256((dataset / "labels.csv").read_bytes()).hexdigest()
    assert entry.extra["mtime_ns"] == (dataset / "labels.csv").stat().st_mtime_ns
    assert entry.digest not in _blobs(root)  # not copied
    out = Path(artifact.download(tmp_path / "out"))
    assert (out / "data" / "images" / "a.bin").read_bytes() == (dataset / "images" / "a.bin").read_bytes()
    (dataset / "labels.csv").write_text("changed")
    with pytest.raises(ArtifactVerifyError, match=r"data/labels\.csv"):
        artifact.download(tmp_path / "out2")


def test_lineage_is_visible_through_api_after_indexing_and_a_rebuild(start, root, dataset, tmp_path):
    producer = start(name="producer")
    artifact = tracklet.Artifact("ds", "dataset")
    artifact.add_dir(dataset)
    producer.log_artifact(artifact)
    producer.finish()  # waits for the artifact
    assert artifact.state == "committed"
    consumers = []
    for name in ("consumer-1", "consumer-2"):
        consumer = start(name=name)
        used = consumer.use_artifact("ds:latest")
        assert used.version == "v0"
        consumer.finish()
        consumers.append(consumer.id)
    api = tracklet.Api(root)
    version = api.artifact("test/ds:v0")
    assert version.logged_by().id == producer.id
    assert [run.id for run in version.used_by()] == consumers
    done = serverproc.cli("index", "--rebuild")
    assert done.returncode == 0, done.stderr
    again = tracklet.Api(root).artifact("test/ds:v0")
    assert again.logged_by().id == producer.id
    assert [run.id for run in again.used_by()] == consumers


def test_using_an_artifact_logged_by_the_same_run_records_both_edges(start, root, tmp_path):
    run = start()
    path = tmp_path / "f.txt"
    path.write_text("x")
    artifact = run.log_artifact(path, type="dataset")  # a path: name from the file
    used = run.use_artifact(artifact)
    run.finish()
    assert used.qualified_name == "test/f.txt:v0"
    odd = tmp_path / "..my model...v2 (final).pt"
    odd.write_text("y")
    from tracklet.artifacts.worker import prepare  # a path's base name is made a valid artifact name

    assert prepare(odd, None, None).name == "my-model.v2--final-.pt"
    version = tracklet.Api(root).artifact("test/f.txt")
    assert version.logged_by().id == run.id and [r.id for r in version.used_by()] == [run.id]


def test_a_run_reads_its_own_writes_when_it_uses_a_name_it_just_logged(start, root, tmp_path):
    # log_artifact returns at once; using the name right after must find that version, not an
    # older one or none (Lightning's WandbLogger(log_model="all") reads its checkpoint back this way)
    run = start()
    weights = tmp_path / "weights"
    weights.mkdir()
    for i in range(40):
        (weights / f"w{i}.bin").write_bytes(os.urandom(200_000))
    first = run.log_artifact(weights, name="model", type="model")
    assert run.use_artifact("model").version == "v0"  # nothing committed before: ArtifactNotFound without the wait
    assert first.state == "committed"
    (weights / "w0.bin").write_bytes(os.urandom(200_000))
    run.log_artifact(weights, name="model", type="model")
    assert run.use_artifact("test/model:latest").version == "v1"  # not the older v0
    assert run.use_artifact("model:v1").version == "v1"
    run.finish()


def test_log_artifact_after_finish_and_types_that_clash_are_refused(start, tmp_path):
    run = start()
    path = tmp_path / "f.txt"
    path.write_text("x")
    first = run.log_artifact(path, name="thing", type="dataset")
    first.wait()
    other = tmp_path / "g.txt"
    other.write_text("y")
    with pytest.warns(TrackletWarning, match="could not be stored"):
        clash = run.log_artifact(other, name="thing", type="model")
        with pytest.raises(ArtifactError, match="has type 'dataset'"):
            clash.wait()
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.log_artifact(path)


def test_core_does_not_import_artifacts_at_module_level():
    code = textwrap.dedent("""
        import sys, tracklet
        run = tracklet.init(project="p", dir=sys.argv[1], settings={"console": "off",
                            "capture_environment": False, "system_metrics": False})
        run.log({"x": 1})
        run.finish()
        print(sorted(m for m in sys.modules if m.startswith("tracklet.artifacts")))
    """)
    done = subprocess.run([sys.executable, "-c", code, "/tmp/tracklet-artifacts-import-check"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cli_put_ls_show_get_verify(root, dataset, tmp_path):
    from click.testing import CliRunner

    from tracklet.cli.main import main

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--dir", str(root), *args], catch_exceptions=False)

    stored = invoke("artifact", "put", str(dataset), "-p", "proj", "-n", "images", "-a", "best", "-q")
    assert stored.exit_code == 0, stored.output
    assert "stored as proj/images:v0 (4 files" in stored.stdout
    again = invoke("artifact", "put", str(dataset), "-p", "proj", "-n", "images", "-q")
    assert "unchanged: same content as proj/images:v0" in again.stdout and "0 bytes written" in again.stdout
    listed = invoke("artifact", "ls", "--json")
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [
        {"project": "proj", "name": "images", "type": "dataset", "versions": 1, "latest": "v0", "description": "",
         "tags": []}]
    versions = invoke("artifact", "ls", "proj/images")
    assert "v0" in versions.stdout and "latest,best" in versions.stdout
    shown = json.loads(invoke("artifact", "show", "proj/images:best", "--json").stdout)
    assert {item["path"] for item in shown["files"]} == set(_tree(dataset))
    target = tmp_path / "got"
    got = invoke("artifact", "get", "proj/images:v0", "--root", str(target), "--copy", "-q")
    assert got.exit_code == 0 and _tree(target) == _tree(dataset)
    assert invoke("artifact", "verify", "proj/images", "--root", str(target)).exit_code == 0
    (target / "labels.csv").write_text("changed")
    bad = invoke("artifact", "verify", "proj/images", "--root", str(target))
    assert bad.exit_code == 2 and "labels.csv: digest mismatch" in bad.stderr
    missing = invoke("artifact", "get", "proj/nothing")
    assert missing.exit_code == 2 and "no artifact proj/nothing" in missing.stderr
    with_bar = invoke("artifact", "get", "proj/images:best", "--root", str(tmp_path / "bar"))
    assert with_bar.exit_code == 0 and "4/4 files" in with_bar.stderr


def test_cli_put_takes_w_and_b_s_project_name_alias_and_show_reads_as_bytes(root, dataset):
    """``wandb artifact put --name project/name:alias`` is how W&B's docs store a directory; it was
    refused (a ``/`` in the name). ``show`` printed the size as a bare number."""
    from click.testing import CliRunner

    from tracklet.cli.main import main

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--dir", str(root), "artifact", *args], catch_exceptions=False)

    stored = invoke("put", str(dataset), "--name", "my-team/vision/images:raw", "--type", "dataset", "-a", "best", "-q")
    assert stored.exit_code == 0, stored.output
    assert "stored as vision/images:v0" in stored.stdout
    shown = invoke("show", "vision/images:raw").stdout
    size = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    assert "aliases:     latest, best, raw\n" in shown and f"size:        {size:,} bytes\n" in shown
    assert "logged_by:   -\n" in shown  # stored outside any run
    again = invoke("put", str(dataset), "--name", "vision/images", "--project", "vision", "-q")
    assert again.exit_code == 0 and "unchanged: same content as vision/images:v0" in again.stdout
    clash = invoke("put", str(dataset), "--name", "vision/images", "--project", "other")
    assert clash.exit_code == 2 and "names project 'vision', --project 'other'" in clash.stderr
    numbered = invoke("put", str(dataset), "--name", "vision/images:v4")
    assert numbered.exit_code == 2 and "'v4' names a version, which is assigned" in numbered.stderr
    assert invoke("put", str(dataset), "--name", "vision/bad name").exit_code == 2
    assert [row["project"] for row in map(json.loads, invoke("ls", "--json").stdout.splitlines())] == ["vision"]


def test_cli_put_and_get_show_files_bytes_and_rate_on_stderr_and_quiet_hides_it(root, dataset, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return serverproc.cli("--dir", str(root), "artifact", *args, cwd=REPO, env={"COLUMNS": "160"})

    stored = cli("put", str(dataset), "-p", "proj", "-n", "images")
    assert stored.returncode == 0, stored.stderr
    size = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    assert "4/4 files" in stored.stderr and f"{size / 1000:.1f}/{size / 1000:.1f} kB" in stored.stderr
    assert "B/s" in stored.stderr  # the rate
    assert "stored as proj/images:v0" in stored.stdout  # the result on stdout, the bar on stderr

    fetched = cli("get", "proj/images:v0", "--root", str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    assert "4/4 files" in fetched.stderr and "B/s" in fetched.stderr
    quiet = cli("get", "proj/images:v0", "--root", str(tmp_path / "out2"), "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_damaged_registry_files_are_reported_not_followed(start, root, tmp_path):
    run = start()
    path = tmp_path / "f.txt"
    path.write_text("x")
    run.log_artifact(path, name="thing", type="dataset").wait()
    run.finish()
    version_file = root / "artifacts" / "projects" / "test" / "thing" / "versions" / "v0.json"
    document = json.loads(version_file.read_text())
    version_file.write_text(json.dumps({**document, "manifest": "../../../../etc/passwd"}))
    with pytest.raises(ArtifactError, match=r"v0\.json is damaged"):
        tracklet.Api(root).artifact("test/thing")
    version_file.write_text("{not json")
    with pytest.raises(ArtifactError, match="is damaged"):
        tracklet.Api(root).artifact("test/thing:v0")


_WANDB_PRODUCER = """
import json, os
import wandb

run = wandb.init(project="wb", job_type="prepare")
os.makedirs("samples/train", exist_ok=True)
for index in range(3):
    with open(f"samples/train/{index}.txt", "wb") as handle:
        handle.write(os.urandom(1000 + index))
dataset = wandb.Artifact("mnist", type="dataset", description="toy", metadata={"samples": 3})
dataset.add_dir("samples")
with dataset.new_file("meta/classes.json", policy="mutable") as handle:   # W&B's arguments
    json.dump(["a", "b"], handle)
run.log_artifact(dataset, aliases=["train"])
with open("model.pt", "wb") as handle:
    handle.write(os.urandom(7000))
model = wandb.Artifact("classifier", type="model")
model.add_file("model.pt")
logged = wandb.log_artifact(model, aliases=["best"])
wandb.log_model("model.pt", name="weights-file", aliases=["prod"])     # one file
os.makedirs("bert", exist_ok=True)
for name in ("config.json", "weights.bin"):
    with open(os.path.join("bert", name), "wb") as handle:
        handle.write(os.urandom(500))
run.log_model("bert", aliases=["best"])                                # a directory: run-<id>-bert
print(json.dumps({"id": run.id, "dataset": dataset.wait().version, "model": logged.wait().version,
                  "is_wandb": isinstance(logged, wandb.Artifact)}))
wandb.finish()
"""

_WANDB_CONSUMER = """
import hashlib, json, os, sys
import wandb

def tree(path):
    return {os.path.relpath(os.path.join(base, name), path): hashlib.sha256(open(os.path.join(base, name), "rb").read()).hexdigest()
            for base, _, names in os.walk(path) for name in names}

run = wandb.init(project="wb", job_type="evaluate")
dataset = run.use_artifact("mnist:train")
data_dir = dataset.download()
model_dir = wandb.use_artifact("wb/classifier:best", type="model").download(root="model")
api_model = wandb.Api().artifact("wb/classifier:latest")
model_file = run.use_model("weights-file:prod")                          # one file: its path
bert_dir = wandb.use_model(f"run-{sys.argv[1]}-bert:best")               # several: the directory
try:
    run.use_model("mnist:train")
    not_a_model = None
except AssertionError as error:
    not_a_model = str(error)
print(json.dumps({"id": run.id, "data": tree(data_dir), "model": tree(model_dir), "version": dataset.version,
                  "metadata": dataset.metadata, "api": api_model.version, "type": api_model.type,
                  "model_file": [os.path.basename(model_file), hashlib.sha256(open(model_file, "rb").read()).hexdigest()],
                  "bert": tree(bert_dir), "not_a_model": not_a_model}))
wandb.finish()
"""


def _digests(base: Path) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in _tree(base).items()}


def _wandb_script(tmp_path: Path, code: str, *args: str) -> dict:
    path = tmp_path / "script.py"
    path.write_text(code)
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, str(path), *args],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "off",
                               "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not yet supported" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_unmodified_wandb_script_logs_a_dataset_and_a_model_and_a_second_run_uses_them(root, tmp_path):
    produced = _wandb_script(tmp_path, _WANDB_PRODUCER)
    assert produced == {"id": produced["id"], "dataset": "v0", "model": "v0", "is_wandb": True}
    consumer_dir = tmp_path / "consumer"
    consumer_dir.mkdir()
    used = _wandb_script(consumer_dir, _WANDB_CONSUMER, produced["id"])
    # Byte-exact: every file as the producer wrote it.
    samples = _digests(tmp_path / "samples")
    assert used["data"] == {**samples, "meta/classes.json": hashlib.sha256(b'["a", "b"]').hexdigest()}
    model_digest = hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    assert used["model"] == {"model.pt": model_digest}
    assert used["model_file"] == ["model.pt", model_digest]  # use_model of a one-file model: the file
    assert used["bert"] == _digests(tmp_path / "bert")
    assert "only for 'model' artifacts" in used["not_a_model"]
    assert used["version"] == "v0" and used["metadata"] == {"samples": 3}
    assert (used["api"], used["type"]) == ("v0", "model")

    api = tracklet.Api(root)
    names = ["wb/mnist:train", "wb/classifier:best", "wb/weights-file:prod", f"wb/run-{produced['id']}-bert:best"]
    for name in names:
        version = api.artifact(name)
        assert version.logged_by().id == produced["id"], name
        assert [run.id for run in version.used_by()] == [used["id"]], name
    assert api.artifact(f"wb/run-{produced['id']}-bert").type == "model"
    import tracklet.compat.wandb as wandb

    expected = sorted(["wb/classifier:v0", "wb/mnist:v0", "wb/weights-file:v0", f"wb/run-{produced['id']}-bert:v0"])
    consumer = wandb.Api().run(f"wb/{used['id']}")
    assert sorted(a.qualified_name for a in consumer.used_artifacts()) == expected
    producer = wandb.Api().run(f"wb/{produced['id']}")
    assert sorted(a.qualified_name for a in producer.logged_artifacts()) == expected


def test_an_artifact_logged_just_before_the_script_ends_is_stored_at_exit(root, tmp_path):
    # finish() runs at exit, after concurrent.futures stops taking work: storing must not need it.
    code = textwrap.dedent("""
        import os, sys
        import tracklet
        root, data = sys.argv[1], sys.argv[2]
        run = tracklet.init(project="exit", dir=root, settings={"console": "off", "capture_environment": False,
                                                                "system_metrics": False})
        os.makedirs(data)
        for index in range(20):
            with open(os.path.join(data, f"{index}.bin"), "wb") as handle:
                handle.write(os.urandom(200_000))
        artifact = tracklet.Artifact("last", "dataset")
        artifact.add_dir(data)
        run.log_artifact(artifact)
    """)
    done = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / "files")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0 and "could not be stored" not in done.stderr, done.stderr
    version = tracklet.Api(root).artifact("exit/last")
    assert len(version.files()) == 20 and version.logged_by() is not None


def test_the_blob_store_works_over_any_fsspec_file_system(tmp_path):
    # The seam server mode (S3) will use: an fsspec URL instead of a local directory.
    from tracklet.artifacts.blobs import FsspecBlobStore

    store = FsspecBlobStore("memory://tracklet-test-cas")
    path = tmp_path / "payload.bin"
    payload = os.urandom(3 << 20)
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    assert not store.has(digest) and store.local_path(digest) is None
    assert store.put_file(str(path), digest) == len(payload)
    assert store.has(digest) and store.read_bytes(digest) == payload
    assert store.put_file(str(path), digest) == 0  # already there: nothing written
    assert store.fs.ls(store.base + "/tmp") == []  # no temporary left behind
    with pytest.raises(ArtifactError, match="changed while it was being stored"):
        store.put_file(str(path), "0" * 64)
    assert not store.has("0" * 64) and store.fs.ls(store.base + "/tmp") == []
    small, written = store.put_bytes(b"manifest")
    assert written == 8 and store.read_bytes(small) == b"manifest"
    with store.fs.open(f"{store.base}/sha256/{small[:2]}/{small}", "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(ArtifactError, match="is damaged"):
        store.read_bytes(small)


def test_a_blob_is_stored_only_under_the_digest_its_bytes_hash_to(start, root, tmp_path):
    # Content addressing: no caller can name the digest bytes are stored under. A digest string
    # is no way in; HashedBytes carry the sha256 of the very bytes they hold, and an in-memory
    # file of a draft is stored under what its bytes hash to.
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.core.filehash import HashedBytes

    store = FsspecBlobStore(str(tmp_path / "cas"))
    claimed = "0" * 64
    with pytest.raises(TypeError):
        store.put_bytes(b"payload", claimed)  # type: ignore[call-arg]
    assert not store.has(claimed) and not store.has(hashlib.sha256(b"payload").hexdigest())
    buffer = bytearray(b"original bytes")
    hashed = HashedBytes(buffer)
    buffer[:] = b"changed meanwhile"  # after hashing: what is stored is what was hashed
    with pytest.raises(AttributeError):
        hashed.digest = claimed  # type: ignore[misc]
    digest, written = store.put_bytes(hashed)
    assert digest == hashlib.sha256(b"original bytes").hexdigest() and written == len(b"original bytes")
    assert store.read_bytes(digest) == b"original bytes" and not store.has(claimed)
    run = start()
    artifact = tracklet.Artifact("snapshot", "code")
    artifact._add_bytes("plain.py", b"x = 1\n")
    artifact._add_bytes("hashed.py", HashedBytes(b"y = 2\n"))
    run.log_artifact(artifact).wait()
    run.finish()
    entries = {entry.path: entry.digest for entry in artifact.files()}
    assert entries == {"plain.py": hashlib.sha256(b"x = 1\n").hexdigest(),
                       "hashed.py": hashlib.sha256(b"y = 2\n").hexdigest()}
    assert _tree(Path(artifact.download(tmp_path / "out"))) == {"plain.py": b"x = 1\n", "hashed.py": b"y = 2\n"}


def test_a_mutable_file_is_snapshot_when_added_so_overwriting_it_after_logging_is_safe(start, root, tmp_path):
    checkpoint = tmp_path / "model.keras"
    checkpoint.write_bytes(b"epoch 0 weights")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"folder v0")
    run = start()
    artifact = tracklet.Artifact("ckpt", "model")
    artifact.add_file(checkpoint, policy="mutable")
    artifact.add_dir(folder, name="dir", policy="mutable")
    checkpoint.write_bytes(b"epoch 1 weights, rewritten in place")  # before the artifact is even logged
    (folder / "weights.bin").unlink()
    run.log_artifact(artifact).wait()
    run.finish()
    out = Path(artifact.download(tmp_path / "out"))
    assert _tree(out) == {"model.keras": b"epoch 0 weights", "dir/weights.bin": b"folder v0"}
    with pytest.raises(ArtifactError, match="policy must be 'mutable' or 'immutable'"):
        tracklet.Artifact("x", "model").add_file(checkpoint, policy="copy")


def test_an_immutable_file_changed_after_it_was_added_fails_the_version_rather_than_storing_the_later_bytes(
        start, root, tmp_path):
    # W&B's checkpoint loop (one file name, rewritten every epoch, each epoch's artifact logged
    # without wait()): an earlier version got a later epoch's bytes under its alias, silently.
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"epoch 0")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"dir 0")
    run = start()
    first = tracklet.Artifact("ckpt", "model")
    first.add_file(checkpoint)
    in_dir = tracklet.Artifact("ckpt-dir", "model")
    in_dir.add_dir(folder)
    checkpoint.write_bytes(b"epoch 1, longer")  # before either is logged: their files are read when stored
    (folder / "w.bin").write_bytes(b"dir 1, longer")
    with pytest.raises(ArtifactError, match=r"model.pt changed after it was added to artifact 'ckpt' .*"
                                            r"policy='mutable'"):
        run.log_artifact(first).wait()
    with pytest.raises(ArtifactError, match=r"w.bin changed after it was added to artifact 'ckpt-dir'"):
        run.log_artifact(in_dir).wait()
    second = tracklet.Artifact("ckpt", "model")
    second.add_file(checkpoint)  # unchanged since added: stored as ever
    run.log_artifact(second, aliases=["e1"]).wait()
    run.finish()
    assert second.version == "v0"
    assert _tree(Path(second.download(tmp_path / "out"))) == {"model.pt": b"epoch 1, longer"}


@pytest.mark.parametrize("odd", ["new\nline", "tab\there", "esc\x1b[31m", "del\x7f", "sep\u2028x"])
def test_a_type_with_a_control_character_is_refused_for_new_versions_and_a_stored_one_still_lists_on_one_line(
        root, dataset, odd):
    from click.testing import CliRunner

    from tracklet.cli.main import main

    with pytest.raises(ArtifactNameError, match="control character"):
        tracklet.Artifact("images", type=odd)
    artifact = tracklet.Artifact("images", type="dataset")
    artifact.add_dir(dataset)
    artifact.save("proj", root=root)
    # A version stored before the check (or by another tool) with such a type reads back as stored.
    version_file = root / "artifacts" / "projects" / "proj" / "images" / "versions" / "v0.json"
    document = json.loads(version_file.read_bytes())
    document["type"] = odd
    os.chmod(version_file, 0o644)
    version_file.write_text(json.dumps(document))
    assert tracklet.Api(root).artifact("proj/images:v0").type == odd

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--dir", str(root), "artifact", *args], catch_exceptions=False)

    listed = invoke("ls")
    assert listed.exit_code == 0 and listed.stdout.splitlines() == [
        f"proj/images  type={odd!r}  versions=1  latest=v0"]
    assert [json.loads(line)["type"] for line in invoke("ls", "--json").stdout.splitlines()] == [odd]
    shown = invoke("show", "proj/images:v0").stdout.splitlines()
    assert f"type:        {odd!r}" in shown
    assert sum(line.startswith("type:") for line in shown) == 1
