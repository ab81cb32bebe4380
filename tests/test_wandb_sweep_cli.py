"""W&B's sweep command line over tracklet (tracklet/compat/wandb/cli.py): a job written for W&B runs
`wandb sweep sweep.yaml` and `wandb agent ID` unchanged under `tracklet run --wandb` (a `wandb`
command first on PATH) or as `python -m wandb` (the import redirect): a real W&B sweep YAML
(bayes, distributions, early_terminate hyperband, W&B's command macros) and an argparse program
that calls `wandb.init()` run as a tracklet sweep in the data root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from serverproc import REPO

import tracklet
from tracklet.sweeps.controller import LocalController

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")

QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}

SWEEP_YAML = """\
program: train.py
method: bayes
metric:
  name: val_loss
  goal: minimize
parameters:
  lr:
    distribution: log_uniform_values
    min: 0.0001
    max: 0.1
  batch_size:
    distribution: q_log_uniform_values
    q: 8
    min: 16
    max: 256
  optimizer:
    values: ["adam", "sgd"]
  dropout:
    distribution: normal
    mu: 0.2
    sigma: 0.05
  epochs:
    value: 4
early_terminate:
  type: hyperband
  min_iter: 2
  eta: 3
command:
  - ${env}
  - ${interpreter}
  - ${program}
  - ${args}
"""

TRAIN = """\
import argparse

import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1.0)
parser.add_argument("--batch_size", type=int, default=1)
parser.add_argument("--optimizer", default="none")
parser.add_argument("--dropout", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
run = wandb.init(config=vars(args))
assert wandb.config.lr == args.lr and wandb.config.optimizer == args.optimizer  # the agent passed ${args}
for epoch in range(wandb.config.epochs):
    wandb.log({"val_loss": abs(wandb.config.lr - 0.01) + 1.0 / (epoch + 1), "epoch": epoch})
run.finish()
"""


def _wandb(root, cwd, *args: str, via: str = "path") -> subprocess.CompletedProcess:
    """`wandb ARGS` as a job script runs it under `tracklet run --wandb`: the `wandb` on PATH, or
    `python -m wandb`."""
    command = ["wandb", *args] if via == "path" else [sys.executable, "-m", "wandb", *args]
    return subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", *command],
                          env={**os.environ, "TRACKLET_DIR": str(root), "PYTHONPATH": str(REPO), **QUIET_ENV},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # real agent and trial processes
def test_wandb_sweep_and_wandb_agent_run_a_wandb_sweep_yaml_unchanged(root, tmp_path):
    (tmp_path / "sweep.yaml").write_text(SWEEP_YAML)
    (tmp_path / "train.py").write_text(TRAIN)
    created = _wandb(root, tmp_path, "sweep", "--project", "wb", "sweep.yaml")
    assert created.returncode == 0, created.stderr
    assert "wandb: Creating sweep from: sweep.yaml" in created.stderr
    sweep_id = re.search(r"wandb: Creating sweep with ID: (\S+)", created.stderr).group(1)
    assert f"wandb: Run sweep agent with: wandb agent wb/{sweep_id}" in created.stderr
    controller = LocalController(root, sweep_id)
    assert controller.project == "wb" and controller.spec.method == "bayes"
    assert controller.spec.early_terminate == {"type": "hyperband", "min_iter": 2, "eta": 3} or controller.prunes

    ran = _wandb(root, tmp_path, "agent", "--count", "3", f"wb/{sweep_id}")
    assert ran.returncode == 0, ran.stderr
    status = LocalController(root, sweep_id).status()
    assert sum(status["counts"].values()) == 3 and set(status["counts"]) <= {"complete", "pruned"}, status["counts"]
    api = tracklet.Api(root)
    for row in status["trials"]:
        config = row["config"]
        assert 0.0001 <= config["lr"] <= 0.1 and config["batch_size"] % 8 == 0 and config["optimizer"] in ("adam", "sgd")
        run = api.run(row["run"])  # the trial's run, recorded by the program's wandb.init()
        assert run.project == "wb" and f"sweep:{sweep_id}" in run.tags
        assert run.config["lr"] == config["lr"] and run.config["epochs"] == 4
        if row["state"] == "complete":
            assert row["value"] == pytest.approx(min(run.history(["val_loss"])["val_loss"]))

    # --stop through `python -m wandb`: an agent started after it has nothing to run
    stopped = _wandb(root, tmp_path, "sweep", "--stop", f"wb/{sweep_id}", via="module")
    assert stopped.returncode == 0, stopped.stderr
    assert LocalController(root, sweep_id).status()["state"] == "stopped"
    after = _wandb(root, tmp_path, "agent", sweep_id)
    assert after.returncode == 0 and "the sweep was stopped" in after.stderr
    assert sum(LocalController(root, sweep_id).status()["counts"].values()) == 3


def test_the_wandb_command_refuses_what_it_cannot_do(root, tmp_path, capsys):
    from tracklet.compat.wandb.cli import main

    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "can't read the sweep config" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("method: grid\nparameters:\n  lr: {min: 1.0, max: 0.5}\n")
    assert main(["sweep", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "wandb: ERROR" in err and "parameters.lr.min: must be < max" in err
    assert main(["agent", "nosuch1"]) == 2 and "no sweep 'nosuch1'" in capsys.readouterr().err
    assert main(["sweep", "--stop", "nosuch1"]) == 2 and "no sweep 'nosuch1'" in capsys.readouterr().err
    assert main(["sweep", "--update", "abc", "x.yaml"]) == 2 and "--update" in capsys.readouterr().err
    assert main(["frob"]) == 2 and "`wandb frob` is not provided" in capsys.readouterr().err
    # a job script's `wandb sync` after offline training: the message names what to run instead
    assert main(["sync", "wandb/offline-run-x"]) == 2 and "`tracklet sync --all`" in capsys.readouterr().err
    assert main(["login"]) == 0  # accepted: nothing to log in to
    assert not (root / "sweeps").exists() or not any((root / "sweeps").iterdir())  # nothing was created


def test_the_wandb_command_on_path_says_which_layer_it_is(root, tmp_path):
    shown = _wandb(root, tmp_path, "--version")
    assert shown.returncode == 0 and "tracklet" in shown.stdout
    assert _wandb(root, tmp_path, "--version", via="module").stdout == shown.stdout
    missing = _wandb(root, tmp_path, "sweep", "missing.yaml")
    assert missing.returncode == 2 and "can't read the sweep config missing.yaml" in missing.stderr


def test_the_agent_command_wandb_sweep_prints_runs_the_trials_with_tracklets_wandb(root, tmp_path, capsys, monkeypatch):
    """Outside `tracklet run --wandb` (no switch, the real wandb installed), `wandb.sweep` prints the
    agent command to run, and that command's trials `import wandb` as tracklet's: their runs are
    recorded, where they used to start the real wandb (which asks for a W&B login) and fail."""
    import tracklet.compat.wandb as wandb

    monkeypatch.delenv("TRACKLET_WANDB_COMPAT", raising=False)
    (tmp_path / "train.py").write_text(
        "import wandb\nassert 'tracklet' in wandb.__file__, wandb.__file__\n"
        "with wandb.init() as run:\n    wandb.log({'val_loss': wandb.config.lr})\n")
    config = {"program": "train.py", "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
              "parameters": {"lr": {"values": [0.5]}}}
    sweep_id = wandb.sweep(config, project="hinted")
    hint = re.search(r"Run sweep agents with: (.+?)  \(or", capsys.readouterr().err).group(1)
    assert hint == f"python -m tracklet.compat.wandb agent hinted/{sweep_id}"
    command = hint.replace("python", sys.executable, 1).split()
    env = {k: v for k, v in os.environ.items() if k != "TRACKLET_WANDB_COMPAT"}
    ran = subprocess.run(command, env={**env, "TRACKLET_DIR": str(root), "PYTHONPATH": str(REPO), **QUIET_ENV},
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and "trial 0 complete: val_loss = 0.5" in ran.stderr, ran.stderr
    (recorded,) = tracklet.Api(root).runs("hinted")
    assert recorded.config == {"lr": 0.5} and recorded.summary["val_loss"] == 0.5
