"""The local artifact store's chunked path (docs/artifacts.md, "Chunk-level dedupe"): large files
logged through ``log_artifact`` are stored as chunks in packs, rebuilt byte for byte by
``download()``, never visible half-written under their final name, and a new version with a few
changes adds only the chunks around them. The chunk threshold is lowered to 1 MiB so small files
exercise the same path as 64 MiB checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverproc import cli_process

import tracklet
from tracklet.artifacts import hashing
from tracklet.errors import ArtifactVerifyError

MiB = 1 << 20


@pytest.fixture
def chunked(root, monkeypatch) -> Path:
    """A data root whose artifact store chunks files of 1 MiB and more."""
    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "1MiB")
    return root


def _disk_bytes(base: Path) -> int:
    """Bytes of every file the store keeps for its data: blobs and packs (not the SQLite index)."""
    return sum(p.stat().st_size for sub in ("blobs", "packs") for p in (base / sub).rglob("*") if p.is_file())


def _checkpoint(tensors: int, tensor_bytes: int, seed: int) -> list[bytes]:
    import random

    rng = random.Random(seed)
    return [rng.randbytes(tensor_bytes) for _ in range(tensors)]


def _log(run: tracklet.Run, name: str, path: Path) -> tracklet.Artifact:
    artifact = tracklet.Artifact(name, type="model")
    artifact.add_file(path, name=path.name)
    run.log_artifact(artifact)
    artifact.wait()
    return artifact


def test_v2_of_a_checkpoint_with_5_percent_of_tensors_changed_adds_under_10_percent(start, chunked, tmp_path):
    tensors = _checkpoint(20, 400_000, seed=1)  # 8 MB: 20 tensors, one of them (5%) retrained below
    v1_path = tmp_path / "v1" / "model.ckpt"
    v1_path.parent.mkdir()
    v1_path.write_bytes(b"".join(tensors))
    run = start()
    store_dir = chunked / "artifacts"
    hashed = hashing.files_hashed()
    v1 = _log(run, "ckpt", v1_path)
    assert hashing.files_hashed() == hashed  # no separate hashing pass: the chunking pass gives the digest
    entry = v1.manifest["model.ckpt"]
    # A chunked file is identified by the BLAKE3 of its whole bytes (what `b3sum model.ckpt` prints).
    assert entry.digest == "blake3:" + blake3.blake3(v1_path.read_bytes()).hexdigest()
    assert "recipe" in entry.extra and not list((store_dir / "blobs").rglob(entry.digest.removeprefix("blake3:")))
    assert list((store_dir / "packs").rglob("*.pack"))
    before = _disk_bytes(store_dir)
    assert v1.bytes_written >= v1_path.stat().st_size

    tensors[7] = os.urandom(len(tensors[7]))
    v2_path = tmp_path / "v2" / "model.ckpt"
    v2_path.parent.mkdir()
    v2_path.write_bytes(b"".join(tensors))
    v2 = _log(run, "ckpt", v2_path)
    size = v2_path.stat().st_size
    assert v2.version == "v1"
    added = _disk_bytes(store_dir) - before
    assert v2.bytes_written == added
    assert 0.05 * size <= added <= 0.10 * size, added / size

    for artifact, source in ((v1, v1_path), (v2, v2_path)):
        out = Path(artifact.download(tmp_path / f"out-{artifact.version}"))
        assert (out / "model.ckpt").read_bytes() == source.read_bytes()
        assert os.listdir(out) == ["model.ckpt"]  # no temporary left beside it
        artifact.verify(out)
    again = _log(run, "ckpt", v2_path)  # unchanged: the same version, nothing written
    assert (again.version, again.reused, again.bytes_written) == ("v1", True, 0)


_EDIT = st.one_of(
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 4096)),
    st.tuples(st.just("truncate"), st.floats(0.5, 1), st.just(b"")),
)


def _apply(data: bytes, edit: tuple) -> bytes:
    kind, where, arg = edit
    at = int(where * len(data))
    if kind == "overwrite":
        return data[:at] + arg + data[at + len(arg):]
    if kind == "insert":
        return data[:at] + arg + data[at:]
    if kind == "delete":
        return data[:at] + data[at + arg:]
    return data[:at]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(MiB, 3 * MiB), edits=st.lists(_EDIT, min_size=1, max_size=3))
def test_chunked_files_round_trip_byte_exact_under_random_edits(start, chunked, tmp_path, seed, size, edits):
    import random

    original = random.Random(seed).randbytes(size)
    edited = original
    for edit in edits:
        edited = _apply(edited, edit)
    case = tmp_path / f"case-{seed}-{time.monotonic_ns()}"
    case.mkdir()
    (case / "a").mkdir()
    (case / "b").mkdir()
    (case / "a" / "f.bin").write_bytes(original)
    (case / "b" / "f.bin").write_bytes(edited)
    run = tracklet.run if tracklet.run is not None else start()
    name = f"prop-{case.name}"
    v1 = _log(run, name, case / "a" / "f.bin")
    v2 = _log(run, name, case / "b" / "f.bin")
    if edited != original and len(edited) >= MiB:
        # Each edit rewrites at most the chunks around it (up to 256 KiB each, a boundary may
        # shift into the next one), plus the new recipe and manifest. (Below the threshold the
        # file is stored whole.)
        assert v2.bytes_written <= len(edits) * 3 * 256 * 1024 + 64 * 1024
    for artifact, expected in ((v1, original), (v2, edited)):
        out = Path(artifact.download(case / f"out-{artifact.version}"))
        assert (out / "f.bin").read_bytes() == expected


_SLOW_DOWNLOAD = """
import sys, time
import tracklet
from tracklet.artifacts import packs

marker = sys.argv[2]
original = packs.PackReader.iter_chunks


def slow(self, chunk_ids, *, name=""):
    for i, piece in enumerate(original(self, chunk_ids, name=name)):
        yield piece
        if i == 3:
            open(marker, "w").close()  # part of the file is written: the test kills us now
            time.sleep(60)


packs.PackReader.iter_chunks = slow
tracklet.Api(sys.argv[1]).artifact("kill/big:v0").download(sys.argv[3])
"""


def test_kill_9_mid_reassembly_leaves_nothing_under_the_final_name_and_a_rerun_completes(start, chunked, tmp_path):
    payload = os.urandom(4 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    run = start(project="kill")
    _log(run, "big", source)
    run.finish()
    out, marker = tmp_path / "out", tmp_path / "rebuilding"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _SLOW_DOWNLOAD, str(chunked), str(marker), str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), process.communicate()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    assert not (out / "big.bin").exists()
    partials = [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(partials) == 1 and partials[0].name.startswith(".big.bin.")  # hidden, never the final name

    artifact = tracklet.Api(chunked).artifact("kill/big:v0")
    artifact.download(out)
    assert (out / "big.bin").read_bytes() == payload
    assert os.listdir(out) == ["big.bin"]  # the killed try's temporary is gone
    artifact.verify(out)


def test_a_damaged_chunk_fails_the_download_naming_the_file_and_leaves_nothing(start, chunked, tmp_path):
    payload = os.urandom(2 * MiB)
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    run = start()
    artifact = _log(run, "weights", source)
    pack = next((chunked / "artifacts" / "packs").rglob("*.pack"))
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as handle:
        handle.seek(MiB)
        byte = handle.read(1)
        handle.seek(MiB)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ArtifactVerifyError) as caught:
        artifact.download(tmp_path / "out")
    assert list(caught.value.problems) == ["weights.bin"]
    assert os.listdir(tmp_path / "out") == []


def test_a_chunked_download_is_checked_by_verify(start, chunked, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * MiB))
    run = start()
    artifact = _log(run, "data", source)
    out = Path(artifact.download(tmp_path / "out"))
    artifact.verify(out)
    with open(out / "data.bin", "r+b") as handle:
        handle.seek(12345)
        handle.write(b"changed")
    with pytest.raises(ArtifactVerifyError, match="data.bin"):
        artifact.verify(out)
    artifact.download(out)  # the changed file is rebuilt
    artifact.verify(out)


def test_a_bad_chunk_threshold_is_a_clear_error(start, root, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "lots")
    source = tmp_path / "x.bin"
    source.write_bytes(b"x")
    run = start()
    artifact = tracklet.Artifact("x", type="data")
    artifact.add_file(source)
    with pytest.warns(tracklet.TrackletWarning, match="TRACKLET_ARTIFACT_CHUNK_THRESHOLD"):
        run.log_artifact(artifact)
        with pytest.raises(tracklet.TrackletError, match="not a size: 'lots'"):
            artifact.wait()
    run.log({"still": 1})  # the run goes on


class _Recorder:
    def __init__(self) -> None:
        self.total: tuple[int, int] | None = None
        self.advances: list[tuple[int, int]] = []

    def start(self, files: int, size: int) -> None:
        self.total = (files, size)

    def advance(self, files: int, size: int) -> None:
        self.advances.append((files, size))


def test_progress_counts_every_file_and_byte_and_moves_during_a_large_file(chunked, tmp_path):
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.storage import ArtifactStore

    (tmp_path / "big.bin").write_bytes(os.urandom(5 * MiB))
    (tmp_path / "small.txt").write_bytes(b"small")
    store = ArtifactStore(chunked)
    pending = {name: LocalFile(str(tmp_path / name)) for name in ("big.bin", "small.txt")}
    for step in ("put", "get"):
        recorder = _Recorder()
        if step == "put":
            result = store.commit("p", "data", pending, project="proj", aliases=[], progress=recorder)
        else:
            store.download(result.info, result.manifest, tmp_path / "out", progress=recorder)
        assert recorder.total == (2, 5 * MiB + 5)
        assert tuple(map(sum, zip(*recorder.advances))) == recorder.total
        assert sum(1 for files, size in recorder.advances if files == 0 and 0 < size < 5 * MiB) >= 2, step
    assert (tmp_path / "out" / "big.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()


def test_entry_bytes_gives_any_stored_file_whole_or_chunked(chunked, tmp_path):
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.storage import ArtifactStore

    files = {"big.bin": os.urandom(2 * MiB), "small.txt": b"small"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    store = ArtifactStore(chunked)
    result = store.commit("p", "data", {name: LocalFile(str(tmp_path / name)) for name in files}, project="proj",
                          aliases=[])
    manifest = store.manifest(result.info)
    assert "recipe" in manifest["big.bin"].extra
    assert {entry.path: b"".join(store.entry_bytes(entry)) for entry in manifest} == files


_SLOW_CHUNKED_STORE = """
import sys, time
import tracklet
from tracklet.artifacts import packs

marker = sys.argv[2]
original = packs.PackWriter.add_chunk
count = 0


def slow(self, chunk_id, data):
    global count
    original(self, chunk_id, data)
    count += 1
    if count == 5 and sys.argv[3] == "slow":
        self._open.handle.flush()
        open(marker, "w").close()  # some chunks are in the pack being written: the test kills us now
        time.sleep(60)


packs.PackWriter.add_chunk = slow
run = tracklet.init(project="kill", dir=sys.argv[1], settings={"console": "off", "capture_environment": False,
                                                               "system_metrics": False})
artifact = tracklet.Artifact("big", "model")
artifact.add_file(sys.argv[4], name="big.bin")
run.log_artifact(artifact).wait()
print(artifact.version)
run.finish()
"""


def test_kill_9_mid_chunked_store_leaves_no_pack_or_version_visible_and_a_rerun_completes(chunked, tmp_path):
    from tracklet.artifacts.packs import PackStore
    from tracklet.errors import ArtifactNotFound

    payload = os.urandom(3 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    marker = tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _SLOW_CHUNKED_STORE, str(chunked), str(marker)]
    process = subprocess.Popen([*args, "slow", str(source)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), process.communicate()
    store_dir = chunked / "artifacts"
    assert [p.stat().st_size > 0 for p in (store_dir / "packs" / "tmp").iterdir()] == [True]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    assert PackStore(store_dir).list_packs() == []  # the partial pack never became visible
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(chunked).artifact("kill/big")

    done = subprocess.run([*args, "fast", str(source)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["v0"]
    out = Path(tracklet.Api(chunked).artifact("kill/big:v0").download(tmp_path / "out"))
    assert (out / "big.bin").read_bytes() == payload


def test_what_log_artifact_imports_on_the_callers_thread_leaves_the_store_to_the_worker():
    """The store's modules (SQLite, hashing, packs) load on the artifact thread, not the caller's."""
    code = ("import sys, tracklet, tracklet.artifacts.run_hooks; "
            "print(sorted(m for m in sys.modules if m.startswith('tracklet.artifacts.')))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = eval(done.stdout)
    assert "tracklet.artifacts.run_hooks" in loaded
    assert not {"tracklet.artifacts.storage", "tracklet.artifacts.hashing", "tracklet.artifacts.packs"} & set(loaded)


def test_two_processes_storing_the_same_large_file_at_once_make_one_version(chunked, tmp_path):
    source = tmp_path / "big"
    source.mkdir()
    payload = os.urandom(6 * MiB)
    (source / "big.bin").write_bytes(payload)
    command = ["--dir", str(chunked), "artifact", "put", str(source), "-p", "proj", "-n", "big", "-q"]
    with cli_process(*command) as first, cli_process(*command) as second:
        outputs = [writer.communicate(timeout=120) for writer in (first, second)]
    assert [writer.returncode for writer in (first, second)] == [0, 0], outputs
    assert sorted("stored as" in out for out, _ in outputs) == [False, True]  # the other found it stored
    versions = tracklet.Api(chunked).artifact_versions("proj/big")
    assert [artifact.version for artifact in versions] == ["v0"]
    out = Path(versions[0].download(tmp_path / "out"))
    assert (out / "big.bin").read_bytes() == payload


def test_a_store_whose_lock_cant_be_opened_is_still_read_and_never_collected(chunked, start, tmp_path):
    """Downloads take the store's lock shared when they can (a read-only mount can't create it);
    garbage collection needs it exclusively, or does nothing."""
    from tracklet.artifacts.gc import collect
    from tracklet.artifacts.storage import ArtifactStore

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2 * MiB))
    run = start()
    _log(run, "ro", source)
    run.finish()
    lock = chunked / "artifacts" / "gc.lock"
    lock.unlink()
    lock.mkdir()  # opening it fails, as creating it would on a read-only mount
    out = Path(tracklet.Api(chunked).artifact("test/ro:v0").download(tmp_path / "out"))
    assert (out / "big.bin").read_bytes() == source.read_bytes()
    with pytest.raises(IsADirectoryError):
        collect(ArtifactStore(chunked), grace=0)
