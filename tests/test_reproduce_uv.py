"""``tracklet reproduce --env uv`` (#21), the issue's end-to-end case: a run of a tiny torch model
(fixed seed) that reads a dataset artifact, recorded in its own virtual environment from a git
repository with an uncommitted change and an untracked helper module, is run again in a fresh
directory and a fresh environment that uv builds from the run's recorded packages, from the
package sources pip on this machine uses (its index, find-links and uv's cache; nothing else)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import tracklet
from tracklet.reproduce.execute import pip_sources

from conftest import REPO
from test_reproduce import HELPER as NUMPY_HELPER
from test_reproduce import TRAIN as NUMPY_TRAIN
from test_reproduce import cli, log_dataset, make_project

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed (pip install uv)")

TRAIN = '''\
import numpy as np
import torch
import tracklet
from helper import make_model

SCALE = 1.0

run = tracklet.init(project="repro", config={"lr": 0.05, "epochs": 30, "seed": 7})
torch.manual_seed(run.config["seed"])
folder = run.use_artifact("dataset:latest").download()
data = torch.tensor(np.loadtxt(f"{folder}/data.txt"), dtype=torch.float32)
x, y = data[:, :1], data[:, 1:] * SCALE
model = make_model()
for epoch in range(run.config["epochs"]):
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    with torch.no_grad():  # plain SGD: torch.optim imports torch._dynamo and sympy (half the run's CPU)
        for parameter in model.parameters():
            parameter -= run.config["lr"] * parameter.grad
    run.log({"loss": loss.item()})
run.summary["final_loss"] = loss.item()
run.finish()
'''
HELPER = "import torch\n\ndef make_model():\n    return torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))\n"


@pytest.fixture(scope="module")
def recording_env(tmp_path_factory) -> Path:
    """A virtual environment with tracklet (editable, this checkout), its dependencies and torch
    (this interpreter's version: uv's cache has it) only."""
    venv = tmp_path_factory.mktemp("recording") / "venv"
    uv = shutil.which("uv")
    assert uv is not None
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *pip_sources(),
                    "-e", str(REPO), f"torch=={metadata.version('torch')}"], check=True, timeout=600)
    return venv / "bin" / "python"


def test_uv_reproduces_a_torch_run_in_a_fresh_environment_built_from_its_recorded_packages(
        root, tmp_path, recording_env):
    project = make_project(root, tmp_path, TRAIN, HELPER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(recording_env), "train.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    (original,) = tracklet.Api(root).runs("repro")
    recorded = original.metadata["packages"]
    assert "torch" in recorded and "pytest" not in recorded  # the small environment, not this one
    # After the run: a new dataset version (the program asks for "latest"), and the work tree moves on.
    log_dataset(root, [(x / 10, 5.0) for x in range(-10, 11)], tmp_path / "ds1")
    (project / "helper.py").unlink()

    dry = cli(root, "reproduce", original.path, "--env", "uv", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"uv venv + uv pip install: {len(recorded)} package(s)" in dry.stdout, dry.stdout

    target = tmp_path / "fresh"
    done = cli(root, "reproduce", original.path, "--env", "uv", "--dir", str(target), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    # progress: each step as it starts, the installer's own lines as they come, the time of each over a second
    progress = done.stderr
    assert "tracklet: plan: asking uv whether the run's" in progress
    assert re.search(r"^tracklet:   .*Installed \d+ packages", progress, re.MULTILINE), progress
    assert list(outcome["seconds"]) == ["checkout", "diff", "snapshot", "environment", "run"]
    for step, seconds in outcome["seconds"].items():
        assert f"tracklet: {step}: " in progress and (f"tracklet: {step}: done in" in progress) == (seconds >= 1.0)
    copy = tracklet.Api(root).run(outcome["run"])
    assert copy.metadata["executable"] == str(target / ".venv" / "bin" / "python")
    assert copy.metadata["packages"] == recorded
    assert copy.config == original.config and copy.metadata["reproduces"] == original.path
    assert [(a["name"], a["version"]) for a in copy.used_artifacts] == [("dataset", 0)]
    assert copy.summary["final_loss"] == pytest.approx(original.summary["final_loss"], rel=1e-6)
    assert copy.history(["loss"])["loss"] == pytest.approx(original.history(["loss"])["loss"], rel=1e-6)
    assert "SCALE = 3.0" in (target / "train.py").read_text() and (target / "helper.py").read_text() == HELPER


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


@pytest.fixture(scope="module")
def numpy_env(tmp_path_factory) -> Path:
    """A virtual environment with tracklet (editable, this checkout) and its own dependencies only:
    no pip inside (uv's venvs have none), so the package set a ``--env venv`` rebuild must match is
    exactly what the run recorded."""
    venv = tmp_path_factory.mktemp("recording-numpy") / "venv"
    uv = shutil.which("uv")
    assert uv is not None
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *pip_sources(),
                    "-e", str(REPO)], check=True, timeout=600)
    return venv / "bin" / "python"


@pytest.mark.slow  # pip installs ~20 packages into a fresh venv
def test_venv_rebuilds_the_recorded_package_set_with_pip_and_reruns_the_run(root, tmp_path, numpy_env):
    project = make_project(root, tmp_path, NUMPY_TRAIN, NUMPY_HELPER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(numpy_env), "train.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    (original,) = tracklet.Api(root).runs("repro")
    recorded = original.metadata["packages"]
    assert "numpy" in recorded and "tracklet" in recorded and "pip" not in recorded and "torch" not in recorded

    dry = cli(root, "reproduce", original.path, "--env", "venv", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"python -m venv + pip install: {len(recorded)} package(s)" in dry.stdout, \
        dry.stdout

    target = tmp_path / "fresh"
    done = cli(root, "reproduce", original.path, "--env", "venv", "--dir", str(target), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert re.search(r"^tracklet:   .*Successfully installed ", done.stderr, re.MULTILINE), done.stderr
    copy = tracklet.Api(root).run(outcome["run"])
    assert copy.metadata["executable"] == str(target / ".venv" / "bin" / "python")
    # the same distributions at the same versions, nothing more (no pip of the venv's own)
    assert copy.metadata["packages"] == recorded
    assert copy.config == original.config and copy.metadata["reproduces"] == original.path
    assert copy.summary["final_loss"] == pytest.approx(original.summary["final_loss"], rel=1e-9)
    assert "SCALE = 3.0" in (target / "train.py").read_text() and (target / "helper.py").read_text() == NUMPY_HELPER
