"""``tracklet diff RUN_A RUN_B`` (#21) on two runs of a real git repository with known differences:
config, an environment variable, an uncommitted change, the input artifact version, metrics."""

from __future__ import annotations

import json

import pytest

import tracklet

from test_reproduce import _committed_repo, cli, git, log_dataset, record


def test_diff_names_config_environment_code_inputs_and_metric_changes(root, tmp_path):
    repo = _committed_repo(tmp_path)
    script = ("import os, tracklet\n"
              "run = tracklet.init(project='repro', config={'lr': float(os.environ['LR']), 'batch': 32})\n"
              "run.use_artifact('dataset')\n"
              "run.log({'loss': float(os.environ['LOSS']), 'acc': 0.5})\n"
              "run.finish()\n")
    (repo / "train.py").write_text(script)
    git(repo, "commit", "-qam", "train")
    log_dataset(root, [(1, 2)], tmp_path / "ds0")
    record(repo, env={"LR": "0.1", "LOSS": "2.0", "OMP_NUM_THREADS": "1"})
    (repo / "train.py").write_text(script.replace("'batch': 32", "'batch': 64"))  # uncommitted
    log_dataset(root, [(3, 4)], tmp_path / "ds1")
    record(repo, env={"LR": "0.2", "LOSS": "1.5", "OMP_NUM_THREADS": "4"})
    first, second = sorted(tracklet.Api(root).runs("repro"), key=lambda r: r.created_at or 0)

    done = cli(root, "diff", first.path, second.path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "config:\n  batch: 32 -> 64\n  lr: 0.1 -> 0.2\n" in text
    assert "  variables.OMP_NUM_THREADS: '1' -> '4'" in text
    assert "inputs:\n  repro/dataset: 'v0' -> 'v1'" in text
    assert "  loss: 2.0 -> 1.5  (-25%)" in text and "acc" not in text.split("summary:")[1].split("code:")[0]
    assert "-run = tracklet.init(project='repro', config={'lr': float(os.environ['LR']), 'batch': 32})" in text
    assert "+run = tracklet.init(project='repro', config={'lr': float(os.environ['LR']), 'batch': 64})" in text

    data = json.loads(cli(root, "diff", first.path, second.path, "--json").stdout)
    loss = next(entry for entry in data["summary"] if entry["key"] == "loss")
    assert loss["relative"] == pytest.approx(-0.25) and loss["difference"] == pytest.approx(-0.5)
    assert data["packages"] == [] and data["code"]["commits"][0] == data["code"]["commits"][1]

    same = json.loads(cli(root, "diff", first.path, first.path, "--json").stdout)
    assert same["config"] == same["inputs"] == same["packages"] == [] and same["code"]["diff"] == ""
