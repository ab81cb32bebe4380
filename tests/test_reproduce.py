"""``tracklet reproduce`` and ``tracklet diff`` (#21) on a real git repository made in the test: a
training script (numpy, fixed seed) that reads a dataset artifact, with an uncommitted change and
an untracked helper module. The same with a torch model in a fresh uv environment:
test_reproduce_uv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import serverproc

import tracklet

from conftest import REPO

TRAIN = '''\
import numpy as np
import tracklet
from helper import features

SCALE = 1.0

run = tracklet.init(project="repro", config={"lr": 0.05, "epochs": 30, "seed": 7})
rng = np.random.default_rng(run.config["seed"])
folder = run.use_artifact("dataset:latest").download()
x, y = np.loadtxt(f"{folder}/data.txt", unpack=True)
y = y * SCALE
w = rng.normal(size=3)
for epoch in range(run.config["epochs"]):
    error = features(x) @ w - y
    w -= run.config["lr"] * features(x).T @ error / len(x)
    loss = float(np.mean(error ** 2))
    run.log({"loss": loss})
run.summary["final_loss"] = loss
run.finish()
'''
HELPER = "import numpy as np\n\ndef features(x):\n    return np.stack([x, x ** 2, np.ones_like(x)], 1)\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def cli(root: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``tracklet --dir ROOT ARGS`` in its own process. A reproduction that runs the program (in a child)
    starts cold, as a user's does; the other commands (``--dry-run``, ``show``, ``diff``, ``artifact``) fork
    from the server template where they may (serverproc.cli)."""
    if args[0] != "reproduce" or "--dry-run" in args:
        return serverproc.cli("--dir", str(root), *args, cwd=cwd, env=env, timeout=300)
    return subprocess.run([sys.executable, "-m", "tracklet", "--dir", str(root), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def log_dataset(root: Path, rows: list[tuple[float, float]], where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "data.txt").write_text("".join(f"{x} {y}\n" for x, y in rows))
    artifact = tracklet.Artifact("dataset", type="dataset")
    artifact.add_dir(str(where))
    artifact.save("repro", root=root)


def record(repo: Path, script: str = "train.py", env: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, script], cwd=repo, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert done.returncode == 0, done.stderr


def make_project(root: Path, tmp_path: Path, train: str = TRAIN, helper: str = HELPER) -> Path:
    """A repository with ``train`` committed (SCALE = 1.0), then changed without committing
    (SCALE = 3.0), and helper.py (``helper``) never committed; dataset v0 logged."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(train)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "train")
    (repo / "train.py").write_text(train.replace("SCALE = 1.0", "SCALE = 3.0"))
    (repo / "helper.py").write_text(helper)
    log_dataset(root, [(x / 10, (x / 10) ** 2) for x in range(-10, 11)], tmp_path / "ds0")
    return repo


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path]:
    """One run of ``make_project``'s numpy script (the torch one runs in test_reproduce_uv),
    recorded once for the tests that reproduce it: (its data root, the repository). After the
    run the work tree moves on (train.py changed again, the untracked helper gone), so whatever is
    restored comes from what the run recorded."""
    base = tmp_path_factory.mktemp("recorded")
    data = base / "data"
    repo = make_project(data, base)
    record(repo, env={"TRACKLET_DIR": str(data), "TRACKLET_CAPTURE_WAIT": "60"})
    (repo / "train.py").write_text(TRAIN.replace("SCALE = 1.0", "SCALE = 100.0"))
    (repo / "helper.py").unlink()
    return data, repo


@pytest.fixture
def project(root, recorded) -> Path:
    """The recorded run's data root copied into this test's (``root``): the repository."""
    shutil.copytree(recorded[0], root)
    return recorded[1]


def test_reproduce_reruns_the_run_in_a_fresh_directory_with_its_code_data_and_config(root, tmp_path, project):
    (original,) = tracklet.Api(root).runs("repro")
    # After the run: a new dataset version (the program asks for "latest").
    log_dataset(root, [(x / 10, 5.0) for x in range(-10, 11)], tmp_path / "ds1")

    target = tmp_path / "fresh"
    done = cli(root, "reproduce", original.path, "--dir", str(target), "--env", "current", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    new_path = done.stdout.strip().split(" as ")[1].split(" ")[0]

    copy = tracklet.Api(root).run(new_path)
    assert copy.id != original.id and copy.state == "finished"
    assert copy.config == original.config
    assert copy.summary["final_loss"] == pytest.approx(original.summary["final_loss"], rel=1e-5)
    assert copy.history(["loss"])["loss"] == pytest.approx(original.history(["loss"])["loss"], rel=1e-5)
    assert copy.metadata["reproduces"] == original.path and original.metadata["reproduces"] is None
    assert [(a["name"], a["version"]) for a in copy.used_artifacts] == [("dataset", 0)]
    # the tree: the commit, the uncommitted change, the untracked helper
    assert "SCALE = 3.0" in (target / "train.py").read_text()
    assert (target / "helper.py").read_text() == HELPER
    assert git(target, "rev-parse", "HEAD").strip() == original.metadata["git"]["commit"]


def test_set_overrides_reach_the_program_as_its_config(root, tmp_path, project):
    (original,) = tracklet.Api(root).runs("repro")
    done = cli(root, "reproduce", original.path, "--dir", str(tmp_path / "fresh"), "--set", "epochs=3",
               "--set", "note=\"x\"", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    copy = tracklet.Api(root).run(outcome["run"])
    assert copy.config == {**original.config, "epochs": 3, "note": "x"}
    assert len(copy.history(["loss"])["loss"]) == 3
    api = tracklet.Api(root)  # the store (what a server and the dashboard read) has the link too
    assert api.store.run("repro", copy.id, fields=("metadata",))["metadata"]["reproduces"] == original.path
    api.close()
    shown = cli(root, "show", copy.path).stdout
    assert f"Reproduces     {original.path}" in shown and "Code snapshot  1 untracked file(s)" in shown
    assert copy.history(["loss"])["loss"] == pytest.approx(original.history(["loss"])["loss"][:3], rel=1e-5)


def test_dry_run_prints_the_plan_and_does_nothing(root, tmp_path, project):
    (original,) = tracklet.Api(root).runs("repro")
    target = tmp_path / "fresh"
    done = cli(root, "reproduce", original.path, "--dir", str(target), "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = done.stdout
    commit = original.metadata["git"]["commit"]
    assert f"check out   {project} at {commit[:12]}" in plan
    assert "diff.patch" in plan and "helper.py" in plan
    assert "repro/dataset:v0" in plan and "python train.py" in plan
    assert not target.exists() and len(tracklet.Api(root).runs("repro")) == 1
    (tmp_path / f"reproduce-{original.id}").mkdir()
    (tmp_path / f"reproduce-{original.id}" / "taken").write_text("")  # the default directory is taken
    data = json.loads(cli(root, "reproduce", original.path, "--dry-run", "--json", cwd=tmp_path).stdout)
    assert data["directory"] == str(tmp_path / f"reproduce-{original.id}-2")
    assert data["ok"] and data["commit"] == commit and data["program"] == "train.py"
    assert data["artifacts"] == {"repro/dataset": 0} and data["code_files"] == ["helper.py"]
    # the untracked helper comes from the run's code artifact; with its blob gone, the plan says so
    assert data["code_source"] == "artifact repro/code-train.py:v0"
    assert "restore     untracked files the program imported (from artifact repro/code-train.py:v0): helper.py" in plan
    (entry,) = original.metadata["code"]["files"]
    (blob,) = (root / "artifacts" / "blobs").rglob(entry["sha256"])
    blob.unlink()
    gone = cli(root, "reproduce", original.path, "--dry-run", cwd=tmp_path)
    assert gone.returncode == 2
    assert "untracked file helper.py of the code snapshot is gone from artifact repro/code-train.py:v0" in gone.stdout


# A run recorded as tracklet did before code snapshots were artifacts: the files in files/code/.
OLDER_FORM = "import tracklet.core.run as module\nmodule.Run._log_code_snapshot = None  # type: ignore\n"


def test_a_run_whose_snapshot_is_in_its_run_files_still_reproduces(root, tmp_path):
    repo = _committed_repo(tmp_path)
    (repo / "train.py").write_text(SIMPLE.replace("import tracklet\n", "import tracklet\nimport helper\n"))
    git(repo, "commit", "-qam", "uses helper")
    (repo / "helper.py").write_text("FACTOR = 2\n")  # untracked, imported
    older = tmp_path / "older"
    older.mkdir()
    (older / "sitecustomize.py").write_text(OLDER_FORM)
    record(repo, env={"PYTHONPATH": f"{older}{os.pathsep}{REPO}"})
    (run,) = tracklet.Api(root).runs("repro")
    files = Path(run.dir) / "files" / "code"
    assert (files / "helper.py").read_text() == "FACTOR = 2\n"
    assert run.logged_artifacts == [] and run.metadata["code"]["artifact"] == ""
    (repo / "helper.py").unlink()

    target = tmp_path / "fresh"
    done = cli(root, "reproduce", run.path, "--dir", str(target), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["plan"]["code_source"] == str(files) and outcome["plan"]["code_files"] == ["helper.py"]
    assert (target / "helper.py").read_text() == "FACTOR = 2\n" and outcome["exit_code"] == 0
    copy = tracklet.Api(root).run(outcome["run"])  # recorded as runs are now: the snapshot an artifact
    assert copy.state == "finished" and copy.metadata["code"]["artifact"] == "repro/code-train.py:v0"
    # tracklet diff reads each form: the same code, so no code difference
    diff = json.loads(cli(root, "diff", run.path, copy.path, "--json").stdout)
    assert diff["code"]["diff"] == "" and diff["code"]["notes"] == []


SIMPLE = "import tracklet\nrun = tracklet.init(project='repro', config={'lr': 0.1})\nrun.log({'loss': 1.0})\nrun.finish()\n"


def _committed_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(SIMPLE)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "one")
    return repo


def _refused(root: Path, tmp_path: Path, run: str, expected: str, *extra: str) -> None:
    """The dry run names the problem (exit 2); reproducing stops before doing anything."""
    dry = cli(root, "reproduce", run, "--dry-run", *extra, cwd=tmp_path)
    assert dry.returncode == 2 and expected in dry.stdout, dry.stdout + dry.stderr
    target = tmp_path / "never"
    before = len(tracklet.Api(root).runs("repro"))
    done = cli(root, "reproduce", run, "--dir", str(target), *extra, cwd=tmp_path)
    assert done.returncode == 2 and expected in done.stderr and "nothing was done" in done.stderr, done.stderr
    assert not target.exists() and len(tracklet.Api(root).runs("repro")) == before


def test_the_plan_reads_each_installed_distributions_name_and_version_as_importlib_does():
    """The plan compares the recorded packages with this interpreter's from the metadata files'
    header lines (email's parser over each whole file made most of the dry run's time): every
    distribution of this environment (over 200, with torch, transformers, jax) reads the same."""
    from importlib import metadata

    from tracklet.reproduce.plan import name_and_version

    distributions = list(metadata.distributions())
    assert len(distributions) > 50
    for distribution in distributions:
        expected = (distribution.metadata.get("Name") or "", distribution.version or "")
        assert name_and_version(distribution) == expected, distribution


def test_a_run_recorded_outside_git_is_refused(root, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(SIMPLE)
    record(plain, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    (run,) = tracklet.Api(root).runs("repro")
    _refused(root, tmp_path, run.path, f"was recorded outside a git repository (in {plain})")


def test_a_commit_no_longer_in_the_repository_is_refused(root, tmp_path):
    repo = _committed_repo(tmp_path)
    (repo / "train.py").write_text(SIMPLE + "# two\n")
    git(repo, "commit", "-qam", "two")
    record(repo)
    (run,) = tracklet.Api(root).runs("repro")
    gone = run.metadata["git"]["commit"]
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    _refused(root, tmp_path, run.path, f"commit {gone} is no longer in the repository {repo}")


def test_a_gone_input_artifact_and_a_gone_repository_are_named(root, tmp_path):
    repo = _committed_repo(tmp_path)
    (repo / "train.py").write_text(SIMPLE.replace("run.log", "run.use_artifact('dataset'); run.log"))
    log_dataset(root, [(1, 2)], tmp_path / "ds0")
    record(repo)
    (run,) = tracklet.Api(root).runs("repro")
    assert cli(root, "artifact", "rm", "repro/dataset:v0", "--force").returncode == 0
    _refused(root, tmp_path, run.path, "input artifact repro/dataset:v0 is gone")
    log_dataset(root, [(5, 6)], tmp_path / "ds1")
    forced = cli(root, "reproduce", run.path, "--dir", str(tmp_path / "forced"), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr  # goes on: the program's own reference finds v1
    copy = tracklet.Api(root).run(forced.stdout.strip().split(" as ")[1].split(" ")[0])
    assert [(a["name"], a["version"]) for a in copy.used_artifacts] == [("dataset", 1)]
    os.rename(repo, tmp_path / "moved")
    dry = cli(root, "reproduce", run.path, "--dry-run", cwd=tmp_path)
    assert f"the repository {repo} the run was recorded in is gone" in dry.stdout


def test_a_non_empty_target_directory_is_refused(root, tmp_path):
    repo = _committed_repo(tmp_path)
    record(repo)
    (run,) = tracklet.Api(root).runs("repro")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    _refused(root, tmp_path, run.path, f"directory {occupied} exists and is not empty", "--dir", str(occupied))
    assert (occupied / "keep.txt").read_text() == "mine"


def test_a_venv_plan_pins_index_packages_and_names_packages_that_no_longer_install(root, tmp_path):
    """Index packages are pinned; one no package source here has (installed from a wheel house that
    is gone) can't be installed, nor can an editable install whose tree is gone: the plan names them."""
    import numpy

    repo = _committed_repo(tmp_path)
    site = tmp_path / "site-packages"
    source = tmp_path / "src" / "gonelib"
    source.mkdir(parents=True)
    for name, direct in (("gonelib", {"url": source.as_uri(), "dir_info": {"editable": True}}), ("pinnedlib", None)):
        info = site / f"{name}-1.2.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2\n")
        if direct:
            (info / "direct_url.json").write_text(json.dumps(direct))
    (repo / "train.py").write_text(f"import sys; sys.path.append({str(site)!r})\n" + SIMPLE)
    record(repo)
    (run,) = tracklet.Api(root).runs("repro")
    plan = json.loads(cli(root, "reproduce", run.path, "--env", "venv", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert f"numpy=={numpy.__version__}" in plan["requirements"] and f"-e {source}" in plan["requirements"]
    problems = [problem.split(":")[0] for problem in plan["problems"]]
    # (tracklet itself may be named too: a checkout on PYTHONPATH with an egg-info is recorded as tracklet==0.1.0)
    assert "package pinnedlib==1.2 no longer installs" in problems and not [p for p in problems if "gonelib" in p]
    assert "pinnedlib==1.2" not in plan["requirements"]  # --force goes on without it
    source.rename(tmp_path / "src" / "elsewhere")
    dry = cli(root, "reproduce", run.path, "--env", "venv", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 2 and f"package gonelib 1.2 was installed from {source}, which is gone" in dry.stdout
    assert "package pinnedlib==1.2 no longer installs: none of the package sources pip uses here has it" in dry.stdout
    assert cli(root, "reproduce", run.path, "--dry-run", cwd=tmp_path).returncode == 0  # --env current needs no source
    no_uv = cli(root, "reproduce", run.path, "--env", "uv", "--dry-run", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert no_uv.returncode == 2 and "--env uv needs uv on PATH" in no_uv.stdout, no_uv.stdout + no_uv.stderr


def test_the_python_version_is_recorded_and_the_plan_names_another_one_here(root, tmp_path, monkeypatch):
    """The run records this interpreter's version; a plan made under another Python says so (no
    second interpreter here: the planner is asked in this process with another version reported)."""
    import platform

    from tracklet.reproduce.plan import make_plan

    record(_committed_repo(tmp_path))
    (run,) = tracklet.Api(root).runs("repro")
    assert run.metadata["python"] == platform.python_version()
    here = make_plan(run, root, directory=tmp_path / "a")
    assert not [text for text in here.differences if text.startswith("Python ")]
    monkeypatch.setattr(platform, "python_version", lambda: "3.1.0")
    other = make_plan(run, root, directory=tmp_path / "a")
    assert f"Python {run.metadata['python']} recorded, 3.1.0 here (a different minor version)" in other.differences


def test_a_plan_says_why_the_runs_packages_were_not_recorded(root, tmp_path, monkeypatch):
    """A run that ended before its package list was captured (a sub-second script, the first in its
    environment: finish() waits capture_wait for it) gets a plan naming that reason and the setting
    that gives the capture longer, not only that the packages are missing."""
    import tracklet.reproduce.plan as planning

    record(_committed_repo(tmp_path), env={"TRACKLET_CAPTURE_WAIT": "60"})
    (run,) = tracklet.Api(root).runs("repro")
    recorded = planning._plan_environment

    def cut_short(plan, run, start, environment, files):
        del environment.packages[:]
        environment.incomplete.append("packages")
        environment.incomplete_reasons["packages"] = "not captured within the 0.1 s finish() waited for it (capture_wait)"
        recorded(plan, run, start, environment, files)

    monkeypatch.setattr(planning, "_plan_environment", cut_short)
    (said,) = [text for text in planning.make_plan(run, root, directory=tmp_path / "a").differences
               if "packages were not recorded" in text]
    assert "(not captured within the 0.1 s finish() waited for it (capture_wait))" in said
    assert "TRACKLET_CAPTURE_WAIT=5" in said
