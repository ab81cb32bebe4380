"""W&B scripts that use several processes: a run passed to a child process (pickled, as
multiprocessing's ``spawn`` start method and a ``Pool``'s arguments do, or inherited by ``fork``)
logs there, as in W&B, into the same run (a secondary writer ``<host>-<pid>``,
docs/shared-runs.md); the parent's run goes on recording."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_script

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.core.childrun import child_label


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_run_passed_to_or_inherited_by_a_child_process_logs_there(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The process that forks is a fresh interpreter (tests never fork pytest's own process).
    done = run_script("""
        import json, os, pickle
        import forkprobe
        import tracklet.compat.wandb as wandb

        run = wandb.init(project="mp", id="parent1", config={"lr": 0.1},
                         settings=wandb.Settings(console="off", x_disable_stats=True))
        run.log({"s1": 11})
        # W&B's own example passes the run to the child: Process(target=child, kwargs={"run": run}).
        # Until session 29 this was refused ("can't be sent to another process").
        sent = pickle.dumps(run)
        children, codes = [], []
        for how in ("pickled", "forked"):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    child = pickle.loads(sent) if how == "pickled" else wandb.run
                    assert isinstance(child, wandb.Run) and child.id == "parent1" and child.config["lr"] == 0.1
                    child.log({f"{how}/acc": 0.5, "s1": 99})
                    if how == "forked":
                        wandb.log({"forked/loss": 2.0})  # wandb.run is the inherited run
                    child.finish()
                    code = 0
                finally:
                    os._exit(code)
            codes.append(forkprobe.reap(pid))
            children.append(pid)
        run.log({"s1": 12})  # the run goes on
        wandb.finish()
        print(json.dumps({"children": children, "codes": codes}))
    """, env={"TRACKLET_DIR": str(root)}, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told["codes"] == [0, 0], done.stderr
    children = told["children"]
    host = child_label().rsplit("-", 1)[0]
    pickled, forked = (f"{host}-{pid}" for pid in children)
    recorded = tracklet.Api(root).run("mp/parent1")
    assert recorded.state == "finished" and set(recorded.parts) == {pickled, forked}
    assert all(part["state"] == "finished" for part in recorded.parts.values())
    summary = wandb.Api().run("mp/parent1").summary
    assert summary["s1"] == 12 and summary["pickled/acc"] == 0.5 and summary["forked/acc"] == 0.5
    assert summary["forked/loss"] == 2.0
    assert summary[f"s1/l:{pickled}"] == 99 and summary[f"s1/l:{forked}"] == 99  # the parent's key stays its own


def test_a_copied_run_is_the_run_itself(root, tmp_path, monkeypatch):
    """``copy.copy``/``copy.deepcopy`` of an object holding a run (a callback, a trainer's arguments)
    copy through ``__reduce_ex__`` unless told otherwise: refusing pickling made ``copy.copy(run)``
    (which worked) a TypeError saying the run can't be sent to another process. The copy holds the
    same run, as W&B's copy of a run attaches to it, so what it logs is the run's."""
    import copy

    monkeypatch.chdir(tmp_path)
    run = wandb.init(project="mp", id="copied1", settings=wandb.Settings(console="off", x_disable_stats=True))
    holder = {"run": run, "tracklet_run": run.tracklet_run, "lr": [0.1]}
    for copied in (copy.copy(holder), copy.deepcopy(holder)):
        assert copied["run"] is run and copied["tracklet_run"] is run.tracklet_run
    copy.deepcopy(holder)["run"].log({"s": 1})
    copy.copy(run).log({"s": 2})
    wandb.finish()
    assert [row["s"] for row in wandb.Api().run("mp/copied1").history(keys=["s"], pandas=False)] == [1, 2]
