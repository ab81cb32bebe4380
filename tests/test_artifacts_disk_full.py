"""A disk that fills while an artifact is stored or downloaded: a real small tmpfs (root only;
skipped otherwise), and a file size limit (``RLIMIT_FSIZE``, any user on Linux) for a write that
fails the same way without a mount.

What a user relies on: the error is an ``ArtifactError`` naming the file at fault (not a bare
``OSError`` whose ``write()`` carries no file name, nor "can't read" for a failed write), says
which disk is full, the run goes on, and a download cut short leaves no partial file under the
file's own name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracklet.errors import ArtifactError

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs, unmounted after the test."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _files(directory: Path, count: int, size: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (directory / f"part-{number}.bin").write_bytes(os.urandom(size))
    return directory


_TRAIN = textwrap.dedent(
    """
    import sys
    import tracklet

    data, small = sys.argv[1], sys.argv[2]
    run = tracklet.init(project="full", id="fullrun")
    run.log({"loss": 1.0})
    big = tracklet.Artifact("shards", type="dataset")
    big.add_dir(data)
    run.log_artifact(big)
    try:
        big.wait()
    except tracklet.errors.ArtifactError as error:
        print("wait raised:", error)
    run.log({"loss": 0.5})
    after = tracklet.Artifact("labels", type="dataset")
    after.add_file(small)
    run.log_artifact(after)
    after.wait()
    print("stored after:", after.version)
    run.finish()
    print("training went on")
    """
)


def test_storing_onto_a_full_disk_names_the_file_and_the_disk_and_the_run_goes_on(small_disk: Path,
                                                                                  tmp_path: Path):
    data = _files(tmp_path / "shards", 4, 3 * MiB)  # 12 MiB into an 8 MiB disk
    small = tmp_path / "labels.csv"
    small.write_text("id,label\n0,cat\n")
    root = small_disk / "root"
    done = subprocess.run([sys.executable, "-c", _TRAIN, str(data), str(small)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root)})
    assert done.returncode == 0, done.stderr
    assert "training went on" in done.stdout
    raised = next(line for line in done.stdout.splitlines() if line.startswith("wait raised:"))
    assert f"can't store {data}{os.sep}part-" in raised  # the file being written when the disk filled
    assert "No space left on device" in raised and "can't read" not in raised
    assert f"the disk holding the artifact store ({root / 'artifacts'}) is full" in raised
    assert "stored after: v0" in done.stdout  # a later artifact that fits is stored

    import tracklet

    api = tracklet.Api(root)
    assert list(api.run("full/fullrun").history()["loss"]) == [1.0, 0.5]
    assert [entry.path for entry in api.artifact("full/labels:v0").files()] == ["labels.csv"]
    with pytest.raises(tracklet.errors.ArtifactNotFound):
        api.artifact("full/shards:latest")


def test_a_download_onto_a_full_disk_names_the_file_and_leaves_no_partial_file(small_disk: Path,
                                                                                 tmp_path: Path):
    import tracklet

    data = _files(tmp_path / "shards", 3, 3 * MiB)
    store_root = tmp_path / "data"
    artifact = tracklet.Artifact("shards", type="dataset")
    artifact.add_dir(data)
    artifact.save("full", root=store_root)
    version = tracklet.Api(store_root).artifact("full/shards:v0")

    for link in (True, False):  # a hard link can't cross disks: both copy, the second by request
        target = small_disk / f"download-{link}"
        with pytest.raises(ArtifactError) as raised:
            version.download(target, link=link)
        message = str(raised.value)
        assert "artifact full/shards:v0: can't download part-" in message
        assert "No space left on device" in message and f"the disk holding {target} is full" in message
        assert ".partial" not in message
        on_disk = sorted(path.name for path in target.iterdir())
        complete = [name for name in on_disk if (target / name).stat().st_size == 3 * MiB]
        assert on_disk == complete  # nothing cut short under its name, no temporary left behind
        assert len(on_disk) < 3
        for name in on_disk:
            (target / name).unlink()

    target = tmp_path / "roomy"  # the same version downloads whole where there is room
    version.download(target)
    version.verify(target)


_LIMITED_DOWNLOAD = textwrap.dedent(
    """
    import resource, signal, sys
    import tracklet

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    store_root, target = sys.argv[1], sys.argv[2]
    version = tracklet.Api(store_root).artifact("limited/shards:v0")
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        version.download(target, link=False)
    except tracklet.errors.ArtifactError as error:
        print("raised:", error)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and EFBIG as on Linux")
def test_a_write_refused_by_a_file_size_limit_fails_the_download_naming_the_file(tmp_path: Path):
    import tracklet

    data = _files(tmp_path / "shards", 1, 3 * MiB)
    store_root = tmp_path / "data"
    artifact = tracklet.Artifact("shards", type="dataset")
    artifact.add_dir(data)
    artifact.save("limited", root=store_root)
    target = tmp_path / "download"
    done = subprocess.run([sys.executable, "-c", _LIMITED_DOWNLOAD, str(store_root), str(target)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert f"raised: artifact limited/shards:v0: can't download part-0.bin to {target / 'part-0.bin'}: " \
           "File too large" in done.stdout
    assert list(target.iterdir()) == []  # no partial part-0.bin, no temporary


def test_a_download_from_a_server_onto_a_full_disk_names_the_file(small_disk: Path, tmp_path: Path, servers,
                                                                  monkeypatch):
    """The same through a real `tracklet server`: the blob cache is on a roomy disk, the
    download root on the full one."""
    import tracklet
    from serverproc import cli

    data = _files(tmp_path / "shards", 3, 3 * MiB)
    store_root = tmp_path / "data"
    artifact = tracklet.Artifact("shards", type="dataset")
    artifact.add_dir(data)
    artifact.save("remote", root=store_root)
    server = servers(tmp_path / "server", dev=True)
    pushed = cli("--dir", str(store_root), "artifact", "push", "remote/shards:v0", "--url", server.url)
    assert pushed.returncode == 0, pushed.stderr
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    version = tracklet.Api(base_url=server.url).artifact("remote/shards:v0")
    target = small_disk / "download"
    with pytest.raises(ArtifactError) as raised:
        version.download(target, link=False)
    message = str(raised.value)
    assert "artifact remote/shards:v0: can't download part-" in message
    assert "No space left on device" in message and f"the disk holding {target} is full" in message
    on_disk = sorted(path.name for path in target.iterdir())
    assert all((target / name).stat().st_size == 3 * MiB for name in on_disk) and len(on_disk) < 3
