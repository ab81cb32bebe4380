"""``tracklet reproduce`` of a distributed run (#21): a run recorded by one process of a torchrun
launch is reproduced by a torchrun launch of as many processes, the recorded rank records the new
run, and a run that spanned machines is named as what can't be restored here. Real
``torch.distributed`` (gloo, on the CPU) and real torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracklet

from conftest import REPO
from test_reproduce import _refused, cli, git

pytest.importorskip("torch")

TRAIN = """\
import torch
import torch.distributed as dist
import tracklet

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(10 + rank)  # rank-specific seeding
run = tracklet.init(project="repro", config={"lr": 0.1}) if rank == 0 else None
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
if run is not None:
    run.log({"total": float(total), "world": dist.get_world_size()})
    run.finish()
dist.destroy_process_group()
"""


def _repo(tmp_path: Path, source: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(source)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "train")
    return repo


def test_a_torchrun_run_is_reproduced_by_torchrun_with_as_many_processes(root, tmp_path):
    repo = _repo(tmp_path, TRAIN)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "train.py"], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root),
                               "TMPDIR": str(tmp_path)})  # torchrun's agent leaves a torchelastic_* there
    assert done.returncode == 0, done.stderr
    (original,) = tracklet.Api(root).runs("repro")
    assert original.summary["total"] == 3.0  # both processes took part

    plan = json.loads(cli(root, "reproduce", original.path, "--dry-run", "--json", cwd=tmp_path).stdout)
    assert plan["ok"], plan["problems"]
    assert plan["launcher"] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert plan["rank"] == "0" and "WORLD_SIZE" not in plan["variables"] and "RANK" not in plan["variables"]
    text = cli(root, "reproduce", original.path, "--dry-run", cwd=tmp_path).stdout
    assert "run         python -m torch.distributed.run --standalone --nproc-per-node=2 train.py" in text
    assert "  seeds       torch.manual_seed(10) " in text  # rank 0's, set before init(): the run's
    assert "  seeds       of rank 0's process, which recorded this run\n" in text
    assert "  seeds       rank(s) 1: not known (they recorded no run of their own;" in text
    assert (plan["rank_seeds"], plan["ranks_unrecorded"], plan["world"]) == ([], ["1"], 2)

    reproduced = cli(root, "reproduce", original.path, "--dir", str(tmp_path / "again"), "--env", "current",
                     cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
    assert reproduced.returncode == 0, reproduced.stderr
    runs = {run.id: run for run in tracklet.Api(root).runs("repro")}
    (new,) = [run for run in runs.values() if run.id != original.id]  # one new run: rank 0's
    assert new.metadata["reproduces"] == original.path
    assert new.summary["total"] == 3.0 and new.summary["world"] == 2
    assert new.config == original.config


SEEDED_RANK = "import os, random\nimport tracklet\nrandom.seed(int(os.environ['SEED']))\ntracklet.init(project='repro').finish()\n"


def test_the_plan_lists_the_seeds_of_the_other_ranks_of_its_launch_that_recorded_runs(root, tmp_path):
    """Ranks 0 and 2 of one launch (torchrun's variables, set by hand here) record runs, rank 1 of
    another launch too: the plan of rank 0's run lists rank 2's seeds from its run, and names
    ranks 1 and 3 as not known (the other launch's rank 1 is not this launch's)."""
    repo = _repo(tmp_path, SEEDED_RANK)
    launch = {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1"}
    for rank, port, seed in (("0", "29500", "10"), ("2", "29500", "12"), ("1", "29501", "21")):
        done = subprocess.run([sys.executable, "train.py"], cwd=repo, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root), **launch,
                                   "RANK": rank, "LOCAL_RANK": rank, "MASTER_PORT": port, "SEED": seed})
        assert done.returncode == 0, done.stderr
    runs = {(run.metadata["variables"]["MASTER_PORT"], run.metadata["variables"]["RANK"]): run.path
            for run in tracklet.Api(root).runs("repro")}
    plan = json.loads(cli(root, "reproduce", runs["29500", "0"], "--dry-run", "--json", cwd=tmp_path).stdout)
    assert plan["rank"] == "0" and plan["seeds"] == [{"api": "random.seed", "value": "10"}]
    assert plan["rank_seeds"] == [{"rank": "2", "run": runs["29500", "2"],
                                   "seeds": [{"api": "random.seed", "value": "12"}]}]
    assert plan["ranks_unrecorded"] == ["1", "3"]
    text = cli(root, "reproduce", runs["29500", "0"], "--dry-run", cwd=tmp_path).stdout
    assert "  seeds       of rank 0's process, which recorded this run\n" in text
    assert f"  seeds       rank 2: random.seed(12) (its own run {runs['29500', '2']})\n" in text
    assert "  seeds       rank(s) 1, 3: not known (they recorded no run of their own;" in text


def test_a_run_of_several_machines_is_named_as_what_cannot_be_restored(root, tmp_path):
    """Recorded as rank 3 of 4 processes on 2 machines (torchrun's variables, set by hand here)."""
    repo = _repo(tmp_path, "import tracklet\ntracklet.init(project='repro').finish()\n")
    launch = {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1",
              "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    done = subprocess.run([sys.executable, "train.py"], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root), **launch})
    assert done.returncode == 0, done.stderr
    (original,) = tracklet.Api(root).runs("repro")
    assert original.metadata["variables"]["WORLD_SIZE"] == "4"  # recorded
    _refused(root, tmp_path, original.path, "the run was one of 4 processes on 2 machines (torchrun)")
    plan = json.loads(cli(root, "reproduce", original.path, "--dry-run", "--json", cwd=tmp_path).stdout)
    assert plan["rank"] == "3" and plan["launcher"][-1] == "--nproc-per-node=2"
    assert any("recorded by rank 3 of 4" in text for text in plan["differences"])


def test_only_the_recorded_rank_claims_the_reproduction(tmp_path, monkeypatch):
    from tracklet.core import reproduction

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"project": "p", "run_id": "new", "reproduces": "p/old", "config": {},
                                "artifacts": {}, "rank": "1"}))
    monkeypatch.setattr(reproduction, "_claimed", set())
    monkeypatch.setenv("RANK", "0")
    assert reproduction.current(str(spec)) is None  # rank 0 records an ordinary run
    monkeypatch.setattr(reproduction, "_claimed", set())
    monkeypatch.setenv("RANK", "1")
    claimed = reproduction.current(str(spec))
    assert claimed is not None and claimed.run_id == "new" and claimed.rank == "1"


SHARED_RANK = """\
import os, random
import tracklet
rank = os.environ["RANK"]
random.seed(int(os.environ["SEED"]))
secondary = {"primary": False} if rank != "0" else {}  # label rank_<RANK>: the default under a launcher
tracklet.init(project="repro", id="shared", settings=secondary).finish()
"""


def test_a_shared_run_is_reproduced_from_its_primary_naming_its_secondaries(root, tmp_path):
    """Ranks 1 and 0 of one launch (torchrun's variables, set by hand) write one shared run: the
    plan says the run was written by 2 processes, reproduces rank 0's (the primary's) environment,
    and names rank 1 as its secondary writer with the seeds its part recorded, not as a rank that
    recorded nothing."""
    repo = _repo(tmp_path, SHARED_RANK)
    launch = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    for rank in ("1", "0"):  # the secondary first: ranks start in any order
        done = subprocess.run([sys.executable, "train.py"], cwd=repo, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root), **launch,
                                   "RANK": rank, "LOCAL_RANK": rank, "SEED": f"1{rank}"})
        assert done.returncode == 0, done.stderr
    plan = json.loads(cli(root, "reproduce", "repro/shared", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert plan["ok"], plan["problems"]
    assert plan["rank"] == "0" and plan["seeds"] == [{"api": "random.seed", "value": "10"}]
    assert [(w["label"], w["rank"], w["state"], w["seeds"]) for w in plan["secondaries"]] == [
        ("rank_1", "1", "finished", [{"api": "random.seed", "value": "11"}])]
    assert plan["ranks_unrecorded"] == [] and plan["rank_seeds"] == []
    text = cli(root, "reproduce", "repro/shared", "--dry-run", cwd=tmp_path).stdout
    assert "  writers     the run was written by 2 processes: its primary (rank 0), whose environment" in text
    assert "secondary writer(s) rank_1 (rank 1), whose parts of the run record no environment" in text
    assert "  seeds       secondary writer rank_1: random.seed(11) (its part of this run)\n" in text
    assert "rank(s) 1: not known" not in text
