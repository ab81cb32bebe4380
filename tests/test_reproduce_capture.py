"""What a run records so it can be reproduced (#21): the untracked source files it imported, where
each package came from, allow-listed environment variables, the Python implementation, and the
artifact versions it used. All of it is captured on the environment thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracklet
from tracklet.core import filehash, provenance

from conftest import REPO


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def run_program(repo: Path, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, script], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert done.returncode == 0, done.stderr
    return done


def test_untracked_imported_files_are_snapshotted_and_ignored_ones_are_not(root, tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("secret_local.py\n")
    (repo / "tracked.py").write_text("VALUE = 1\n")
    (repo / "train.py").write_text(
        "import tracked, helper, pkg.inner, secret_local, big\n"
        "import tracklet\n"
        "run = tracklet.init(project='snap', settings={'console': 'off', 'system_metrics': False})\n"
        "run.log({'loss': helper.LOSS + pkg.inner.X})\n"
        "run.finish()\n")
    git(repo, "add", ".gitignore", "tracked.py", "train.py")
    git(repo, "commit", "-qm", "start")
    (repo / "helper.py").write_text("LOSS = 0.5\n")  # untracked, imported: snapshotted
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "inner.py").write_text("X = 0.25\n")
    (repo / "unused.py").write_text("raise SystemExit('never imported')\n")  # untracked, not imported
    (repo / "secret_local.py").write_text("TOKEN = 'x'\n")  # imported but git-ignored
    (repo / "big.py").write_text("#" * (provenance.MAX_CODE_FILE_BYTES + 10) + "\n")  # over the cap

    run_program(repo, "train.py")
    run_program(repo, "train.py")  # the same code again, as a sweep's next trial: stored once

    api = tracklet.Api(root)
    first, second = sorted(api.runs("snap"), key=lambda run: run.created_at or 0)
    code = first.metadata["code"]
    assert code["program"] == "train.py"
    assert sorted(entry["path"] for entry in code["files"]) == ["helper.py", "pkg/__init__.py", "pkg/inner.py"]
    assert len(code["skipped"]) == 1 and code["skipped"][0].startswith("big.py: ")
    assert "environment_incomplete" not in first.metadata
    # The snapshot is a `code` artifact (not run files), each run with a lineage edge to its version.
    assert not (Path(first.dir) / "files" / "code").exists()
    assert code["artifact"] == second.metadata["code"]["artifact"] == "snap/code-train.py:v0"
    assert [(ref["name"], ref["type"], ref["version"]) for ref in first.logged_artifacts] == [
        ("code-train.py", "code", 0)]
    assert second.logged_artifacts == first.logged_artifacts
    (version,) = api.artifact_versions("snap/code-train.py")
    assert version.type == "code" and version.logged_by().id == first.id
    assert {entry.path for entry in version.files()} == {"helper.py", "pkg/__init__.py", "pkg/inner.py"}
    folder = Path(version.download(str(tmp_path / "snapshot")))
    assert (folder / "helper.py").read_text() == "LOSS = 0.5\n" and (folder / "pkg" / "inner.py").read_text() == "X = 0.25\n"
    # One blob per file across both runs: content-addressed, named by the digests the runs recorded.
    digests = {entry["path"]: entry["sha256"] for entry in code["files"]}
    assert {entry.path: entry.digest for entry in version.files()} == digests
    blob_files = [path for path in (root / "artifacts" / "blobs").rglob("*") if path.is_file()]
    assert sum(path.name == digests["helper.py"] for path in blob_files) == 1



def test_a_code_snapshot_and_a_diff_are_stored_without_staging_files_the_stat_cache_or_openssl(root, tmp_path):
    """A run's code snapshot is logged inside ``finish()``, where every import is paid before it
    returns (and a tight training loop leaves the diff's hashing there too): its files go into the
    artifact from memory, so storing it imports neither ``tempfile`` nor ``shutil`` (a staging
    directory) nor ``sqlite3`` (the stat cache, which has nothing to say about bytes), and small
    files and diffs are hashed without loading OpenSSL (``_hashlib``). The version still holds
    every file with its bytes, and every digest is the sha256 hashlib gives."""
    import hashlib

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "tracked.py").write_text("VALUE = 1\n")
    (repo / "train.py").write_text(
        "import sys, helper, tracked\n"
        "import tracklet\n"
        "run = tracklet.init(project='snap', settings={'console': 'off', 'system_metrics': False, 'capture_wait': 30})\n"
        "run.log({'loss': helper.LOSS})\n"
        "run.finish()\n"
        "print(sorted(name for name in ('tempfile', 'shutil', 'sqlite3', '_hashlib') if name in sys.modules))\n")
    git(repo, "add", "train.py", "tracked.py")
    git(repo, "commit", "-qm", "start")
    (repo / "helper.py").write_text("LOSS = 0.5\n")  # untracked, imported: snapshotted
    (repo / "tracked.py").write_text("VALUE = 2\n")  # a tracked change: the diff

    run_program(repo, "train.py")  # the first run scans the package inventory (importlib.metadata imports them)
    done = run_program(repo, "train.py")
    assert done.stdout.strip().splitlines()[-1] == "[]"
    api = tracklet.Api(root)
    for run in api.runs("snap"):
        assert "environment_incomplete" not in run.metadata
        assert run.metadata["code"]["artifact"] == "snap/code-train.py:v0"
        assert run.metadata["code"]["files"][0]["sha256"] == hashlib.sha256(b"LOSS = 0.5\n").hexdigest()
        diff = (Path(run.dir) / "files" / "diff.patch").read_bytes()
        assert b"+VALUE = 2" in diff and run.metadata["git"]["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    (version,) = api.artifact_versions("snap/code-train.py")
    folder = Path(version.download(str(tmp_path / "snapshot")))
    assert [path.name for path in folder.iterdir()] == ["helper.py"]
    assert (folder / "helper.py").read_text() == "LOSS = 0.5\n"
    assert [entry.digest for entry in version.files()] == [hashlib.sha256(b"LOSS = 0.5\n").hexdigest()]


def test_each_code_snapshot_file_is_hashed_once(root, tmp_path):
    """A snapshot file's sha256 is computed where it is read (the record's ``code_files``) and
    carried into the ``code`` artifact's manifest entry and blob, not computed again for each:
    ``finish()`` waits on it. Counted by wrapping ``hashlib.sha256`` in the program."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(
        "import hashlib\n"
        "real, hashed = hashlib.sha256, []\n"
        "def counting(*args, **kwargs):\n"
        "    hashed.extend(args[:1])\n"
        "    return real(*args, **kwargs)\n"
        "hashlib.sha256 = counting\n"
        "import helper, tracklet\n"
        "run = tracklet.init(project='snap', settings={'console': 'off', 'system_metrics': False, 'capture_wait': 30})\n"
        "run.finish()\n"
        "print(sum(bytes(data) == b'LOSS = 0.5\\n' for data in hashed))\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "start")
    (repo / "helper.py").write_text("LOSS = 0.5\n")  # untracked, imported: snapshotted

    done = run_program(repo, "train.py")
    assert done.stdout.strip().splitlines()[-1] == "1"
    (run,) = tracklet.Api(root).runs("snap")
    assert run.metadata["code"]["artifact"] == "snap/code-train.py:v0"
    (version,) = tracklet.Api(root).artifact_versions("snap/code-train.py")
    assert [entry.digest for entry in version.files()] == [run.metadata["code"]["files"][0]["sha256"]]


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, filehash.SMALL_BYTES, filehash.SMALL_BYTES + 1, 3 * filehash.SMALL_BYTES])
@pytest.mark.parametrize("openssl_loaded", [False, True])
def test_sha256_of_bytes_is_hashlibs_whichever_implementation_computes_it(size, openssl_loaded, monkeypatch):
    """``filehash.sha256_hex`` takes CPython's built-in SHA-256 for small bytes while OpenSSL is not
    loaded, OpenSSL's otherwise: the digest is the same either way (digests name blobs)."""
    import hashlib

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = hashlib.sha256(data).hexdigest()
    if not openssl_loaded:
        monkeypatch.delitem(sys.modules, "_hashlib", raising=False)
    assert filehash.sha256_hex(data) == expected

def test_allow_listed_variables_are_recorded_and_secrets_never(root):
    found = provenance.variables({
        "OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "0,1", "NCCL_DEBUG": "INFO", "PYTHONHASHSEED": "0",
        "NCCL_IB_AUTH_KEY": "hunter2", "TORCH_HUB_TOKEN": "t", "HOME": "/home/x", "AWS_SECRET_ACCESS_KEY": "s",
        "TORCH_HOME": "https://user:pw@example.com/cache"})
    assert found == {"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "0,1", "NCCL_DEBUG": "INFO",
                     "PYTHONHASHSEED": "0", "TORCH_HOME": "https://example.com/cache"}


def _fake_distribution(site: Path, name: str, version: str, direct_url: dict | None) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_package_sources_name_editable_trees_with_their_commit_and_vcs_installs(root, tmp_path):
    """An editable install's tree is recorded with the commit checked out there now (read from
    .git, so a new commit after the inventory was cached is seen), a VCS install with its commit."""
    source_tree = tmp_path / "mylib"
    source_tree.mkdir()
    git(source_tree, "init", "-q")
    git(source_tree, "commit", "-q", "--allow-empty", "-m", "one")
    site = tmp_path / "site-packages"
    _fake_distribution(site, "mylib", "0.3", {"url": source_tree.as_uri(), "dir_info": {"editable": True}})
    _fake_distribution(site, "vcslib", "1.0", {"url": "https://github.com/o/vcslib.git",
                                              "vcs_info": {"vcs": "git", "commit_id": "ab" * 20,
                                                           "requested_revision": "v1.0"}})
    code = ("import sys; sys.path.append(%r)\n"
            "import tracklet\n"
            "tracklet.init(project=%r, settings={'console': 'off', 'system_metrics': False}).finish()\n")

    def record(project: str) -> tracklet.RecordedRun:
        script = tmp_path / f"{project}.py"
        script.write_text(code % (str(site), project))
        run_program(tmp_path, script.name)
        (recorded,) = tracklet.Api(root).runs(project)
        return recorded

    first = record("src1")
    sources = {s["name"]: s for s in first.metadata["package_sources"]}
    head = git(source_tree, "rev-parse", "HEAD").strip()
    assert sources["mylib"]["editable"] and sources["mylib"]["commit"] == head
    assert sources["mylib"]["url"] == source_tree.as_uri()
    assert sources["vcslib"]["commit"] == "ab" * 20 and sources["vcslib"]["vcs"] == "git"
    requirements = (Path(first.dir) / "files" / "requirements.txt").read_text().splitlines()
    assert f"vcslib @ git+https://github.com/o/vcslib.git@{'ab' * 20}" in requirements
    assert any(line.startswith(f"-e {source_tree.as_uri()}") for line in requirements)

    git(source_tree, "commit", "-q", "--allow-empty", "-m", "two")  # the inventory is cached; HEAD moved
    second = record("src2")
    moved = {s["name"]: s for s in second.metadata["package_sources"]}["mylib"]["commit"]
    assert moved == git(source_tree, "rev-parse", "HEAD").strip() != head


def test_git_head_reads_packed_refs_and_worktrees(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    git(repo, "pack-refs", "--all")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert provenance.git_head(repo / "sub" / "dir") == head  # walks up; refs only in packed-refs
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    assert provenance.git_head(tmp_path / "wt") == head
    assert provenance.git_head(tmp_path / "elsewhere") == ""


def test_used_artifact_versions_are_read_back(root, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("1 2 3\n")
    run = tracklet.init(project="inputs", settings={"console": "off", "system_metrics": False,
                                                    "capture_environment": False})
    run.log_artifact(str(data), name="dataset", type="dataset").wait()
    data.write_text("4 5 6\n")
    run.log_artifact(str(data), name="dataset", type="dataset").wait()
    run.use_artifact("dataset:v0")
    run.use_artifact("dataset:v0")  # once in the list
    run.use_artifact("dataset:latest")
    run.finish()
    (recorded,) = tracklet.Api(root).runs("inputs")
    used = [(a["project"], a["name"], a["version"]) for a in recorded.used_artifacts]
    assert used == [("inputs", "dataset", 0), ("inputs", "dataset", 1)]


def test_files_imported_through_a_symbolic_link_to_the_repository_are_snapshotted(root, tmp_path):
    """A module found through a sys.path entry that is a link into the repository (PYTHONPATH=
    /link/lib) is named by its place in the repository."""
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "train.py").write_text(
        "import helper, tracklet\n"
        "tracklet.init(project='link', settings={'console': 'off', 'system_metrics': False}).finish()\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "start")
    (repo / "lib" / "helper.py").write_text("X = 1\n")
    link = tmp_path / "link"
    link.symlink_to(repo)
    run_program(repo, "train.py", env={"PYTHONPATH": f"{link / 'lib'}{os.pathsep}{REPO}"})
    (recorded,) = tracklet.Api(root).runs("link")
    assert recorded.metadata["code"]["program"] == "train.py"
    assert [entry["path"] for entry in recorded.metadata["code"]["files"]] == ["lib/helper.py"]


def test_imported_files_never_run_a_lazy_modules_getattr(tmp_path, monkeypatch):
    """A module in sys.modules whose __getattr__ raises or imports (lazy loaders) is read through its
    namespace only; a None placeholder is skipped."""
    import types

    class Lazy(types.ModuleType):
        def __getattr__(self, name: str):
            raise RuntimeError(f"lazy module asked for {name}")

    lazy = Lazy("lazy_thing")
    source = tmp_path / "mod.py"
    source.write_text("")
    plain = types.ModuleType("plain_thing")
    plain.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "lazy_thing", lazy)
    monkeypatch.setitem(sys.modules, "plain_thing", plain)
    monkeypatch.setitem(sys.modules, "missing_thing", None)
    assert provenance.imported_files(str(tmp_path)) == {"mod.py": str(source)}


def test_cuda_versions_are_read_from_the_torch_the_program_imported_and_the_plan_names_the_hardware(
        root, monkeypatch, tmp_path):
    """No GPU here: torch is faked at its boundary (``torch.version.cuda``, cuDNN's ``version()``) as
    NVML is (tests/fake_nvml.py, for the driver versions the system monitor records)."""
    import types

    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb
    from tracklet.reproduce.plan import make_plan

    monkeypatch.delitem(sys.modules, "torch", raising=False)  # (another test of this process may have imported it)
    monkeypatch.delitem(sys.modules, "torch.backends.cudnn", raising=False)
    assert provenance.cuda_versions() == ("", "")  # the program never imported torch: nothing asked
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(version=types.SimpleNamespace(cuda="12.4")))
    assert provenance.cuda_versions() == ("12.4", "")  # cuDNN not loaded: not asked
    monkeypatch.setitem(sys.modules, "torch.backends.cudnn", types.SimpleNamespace(version=lambda: 90100))
    environment = pb.Environment()
    provenance.capture_interpreter(environment, environ={})
    assert (environment.cuda_version, environment.cudnn_version) == ("12.4", "90100")

    def record(run_id, gpu):
        paths = RunPaths(root, "gpu", run_id)
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        writer = RecordLogWriter(paths.log_file)
        fills = [lambda r: (setattr(r.run_start, "run_id", run_id), setattr(r.run_start, "project", "gpu")),
                 lambda r: r.environment.CopyFrom(environment)]
        if gpu:
            fills.append(lambda r: (r.system_info.gpus.add(name=gpu), setattr(r.system_info, "driver_version",
                                                                              "550.54.15"),
                                    setattr(r.system_info, "cuda_driver_version", "12.4")))
        for fill in fills:
            record = pb.Record()
            fill(record)
            writer.write(record.SerializeToString())
        writer.close()
        return tracklet.Api(root).run(f"gpu/{run_id}")

    def hardware_lines(run):
        plan = make_plan(run, root, directory=tmp_path / "never")
        return [line for line in plan.differences if "GPU" in line]

    h100 = "NVIDIA H100 80GB HBM3"
    on_gpu, on_cpu = record("r1", h100), record("r2", None)
    monkeypatch.setattr("tracklet.core.system.nvidia.no_driver_in_sight", lambda *a: True)  # no GPU here
    assert hardware_lines(on_gpu) == [f"recorded on GPU(s) {h100} with driver 550.54.15, CUDA driver 12.4, CUDA 12.4, "
                                      "cuDNN 90100; here: no NVIDIA GPU: results may differ on other hardware"]
    assert hardware_lines(on_cpu) == []  # a CUDA build of torch on a machine without a GPU: no GPU line
    monkeypatch.undo()
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    from fake_nvml import fake_nvml, h100_sxm

    nvml = fake_nvml(monkeypatch, [h100_sxm(0)])  # the same GPU and driver here: nothing to say
    assert hardware_lines(on_gpu) == []
    assert hardware_lines(on_cpu) == [f"recorded without a GPU; here: {h100}: results may differ"]
    nvml.gpus.append(h100_sxm(1))
    assert hardware_lines(on_gpu) == [f"recorded on GPU(s) {h100} with driver 550.54.15, CUDA driver 12.4, CUDA 12.4, "
                                      f"cuDNN 90100; here: 2 × {h100} with driver 550.54.15: results may differ on "
                                      "other hardware"]
