"""``tracklet reproduce --env uv`` (#21): a run recorded in its own virtual environment is run again
in a fresh one that uv builds from the run's recorded packages, from the package sources pip on
this machine uses (its index, find-links and uv's cache; nothing else)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tracklet
from tracklet.reproduce.execute import pip_sources

from conftest import REPO
from test_reproduce import cli, git, log_dataset

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed (pip install uv)")

TRAIN = '''\
import numpy as np
import tracklet
from helper import features

run = tracklet.init(project="repro", config={"lr": 0.1, "steps": 40, "seed": 3})
rng = np.random.default_rng(run.config["seed"])
folder = run.use_artifact("dataset").download()
x, y = np.loadtxt(f"{folder}/data.txt", unpack=True)
w = rng.normal(size=2)
for step in range(run.config["steps"]):
    error = features(x) @ w - y
    w -= run.config["lr"] * features(x).T @ error / len(x)
    run.log({"loss": float(np.mean(error ** 2))})
run.finish()
'''


@pytest.fixture(scope="module")
def recording_env(tmp_path_factory) -> Path:
    """A virtual environment with tracklet (editable, this checkout) and its dependencies only."""
    venv = tmp_path_factory.mktemp("recording") / "venv"
    uv = shutil.which("uv")
    assert uv is not None
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *pip_sources(),
                    "-e", str(REPO)], check=True, timeout=600)
    return venv / "bin" / "python"


def test_uv_builds_a_fresh_environment_from_the_recorded_packages(root, tmp_path, recording_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "train")
    (repo / "helper.py").write_text("import numpy as np\n\ndef features(x):\n    return np.stack([x, np.ones_like(x)], 1)\n")
    log_dataset(root, [(x / 4, 2 * x / 4 + 1) for x in range(12)], tmp_path / "ds0")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(recording_env), "train.py"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (original,) = tracklet.Api(root).runs("repro")
    recorded = original.metadata["packages"]
    assert "numpy" in recorded and "pytest" not in recorded  # the small environment, not this one

    dry = cli(root, "reproduce", original.path, "--env", "uv", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"uv venv + uv pip install: {len(recorded)} package(s)" in dry.stdout, dry.stdout

    target = tmp_path / "fresh"
    done = cli(root, "reproduce", original.path, "--env", "uv", "--dir", str(target), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    copy = tracklet.Api(root).run(done.stdout.strip().split(" as ")[1].split(" ")[0])
    assert copy.metadata["executable"] == str(target / ".venv" / "bin" / "python")
    assert copy.metadata["packages"] == recorded
    assert copy.config == original.config and copy.metadata["reproduces"] == original.path
    assert copy.history(["loss"])["loss"] == pytest.approx(original.history(["loss"])["loss"], rel=1e-9)


def test_pip_sources_follow_pip_configuration(tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://mirror.example/simple\nfind-links = /wheels /more\n")
    options = pip_sources({"PIP_CONFIG_FILE": str(config), "PIP_EXTRA_INDEX_URL": "file:///local/simple"})
    pairs = list(zip(options[::2], options[1::2]))
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert ("--find-links", "/wheels") in pairs and ("--find-links", "/more") in pairs
    assert ("--extra-index-url", "file:///local/simple") in pairs
    # like pip, the best version from every index (uv's default stops at the first index with the package)
    assert ("--index-strategy", "unsafe-best-match") in pairs
    assert "--index-strategy" not in pip_sources({"PIP_CONFIG_FILE": str(config), "HOME": str(tmp_path),
                                                  "XDG_CONFIG_DIRS": str(tmp_path / "none")})


def test_pip_sources_read_the_xdg_configuration_pip_reads(tmp_path):
    system, user = tmp_path / "xdg-system" / "pip", tmp_path / "xdg-user" / "pip"
    system.mkdir(parents=True)
    user.mkdir(parents=True)
    (system / "pip.conf").write_text("[global]\nindex-url = https://system.example/simple\n")
    (user / "pip.conf").write_text("[global]\nfind-links = /user-wheels\n")
    options = pip_sources({"XDG_CONFIG_DIRS": str(tmp_path / "xdg-system"),
                           "XDG_CONFIG_HOME": str(tmp_path / "xdg-user")})
    pairs = list(zip(options[::2], options[1::2]))
    assert ("--index-url", "https://system.example/simple") in pairs and ("--find-links", "/user-wheels") in pairs
