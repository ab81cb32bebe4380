"""W&B scripts that use several processes: a run sent to a child process (multiprocessing's
``spawn`` start method, a ``Pool``'s arguments) is refused by name, saying what to call in the
child instead; the run itself goes on recording."""

from __future__ import annotations

import pickle

import pytest

import tracklet
import tracklet.compat.wandb as wandb


def test_a_run_sent_to_another_process_is_refused_naming_the_call_to_make_there(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = wandb.init(project="mp", id="parent1", settings=wandb.Settings(console="off", x_disable_stats=True))
    run.log({"s1": 11})
    # W&B's own example passes the run to the child: Process(target=child, kwargs={"run": run}).
    # Until session 29 this failed as "cannot pickle '_thread.lock' object".
    with pytest.raises(TypeError) as refused:
        pickle.dumps(run)
    message = str(refused.value)
    assert "mp/parent1" in message and "can't be sent to another process" in message
    assert ("wandb.init(project='mp', id='parent1', settings=wandb.Settings(mode=\"shared\", x_primary=False, "
            "x_label=\"worker-1\"))") in message
    with pytest.raises(TypeError, match=r"tracklet.init\(project='mp', id='parent1', settings=\{\"primary\": False"):
        pickle.dumps(run.tracklet_run)
    run.log({"s1": 12})  # the run goes on
    wandb.finish()
    assert wandb.Api().run("mp/parent1").summary["s1"] == 12
    assert tracklet.Api(root).run("mp/parent1").state == "finished"


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
