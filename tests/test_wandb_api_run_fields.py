"""W&B's public ``Run`` fields that scripts read (``user``, ``username``, ``heartbeat_at``,
``storage_id``, ``historyLineCount``, ``lastHistoryStep``), from the data root and from a real
``tracklet server`` the run was synced to: both answer the same."""

from __future__ import annotations

import datetime

import pytest

from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.errors import TrackletWarning

SETTINGS = {"console": "off", "x_disable_stats": True, "disable_git": True}


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(run_id: str) -> None:
    """Six rows: steps 0-4, then step 10; a row accumulated with commit=False counts once."""
    import tracklet.compat.wandb as wandb

    wandb.init(project="p", id=run_id, settings=SETTINGS)
    for step in range(5):
        wandb.log({"loss": 1.0 / (step + 1)}, commit=False)
        wandb.log({"acc": step / 5})
    wandb.log({"loss": 0.01}, step=10)
    wandb.finish()


def _fields(run) -> dict:
    return {"heartbeat_at": run.heartbeat_at, "heartbeatAt": run.heartbeatAt, "historyLineCount": run.historyLineCount,
            "history_line_count": run.history_line_count, "lastHistoryStep": run.lastHistoryStep,
            "storage_id": run.storage_id, "user": run.user, "created_at": run.created_at}


def test_public_run_fields_from_the_data_root_and_from_a_server(root, servers, monkeypatch):
    import tracklet
    import tracklet.compat.wandb as wandb

    monkeypatch.setenv("LOGNAME", "someone-os")  # what getpass.getuser() reads first

    _record("fields1")
    recorded = tracklet.Api().run("p/fields1")
    local = wandb.Api().run("someone/p/fields1")
    fields = _fields(local)
    assert fields["historyLineCount"] == fields["history_line_count"] == 6 == len(local.history(samples=1000))
    assert fields["lastHistoryStep"] == 10
    assert fields["storage_id"] == "p/fields1"
    # W&B's User: the OS user the run's process recorded (W&B's metadata "username"), unverified
    assert (fields["user"].username, fields["user"].name, fields["user"].verified) == ("someone-os", "someone-os", False)
    assert local.metadata["username"] == "someone-os"
    # The last record with a time is the exit: the heartbeat is when the run ended.
    assert fields["heartbeat_at"] == fields["heartbeatAt"] == _iso(recorded.created_at + recorded.runtime)
    assert fields["created_at"] <= fields["heartbeat_at"] <= _iso(datetime.datetime.now().timestamp())
    assert datetime.datetime.strptime(fields["heartbeat_at"], "%Y-%m-%dT%H:%M:%SZ")  # W&B's ISO text

    with pytest.warns(TrackletWarning, match="Run.username is deprecated. Please use Run.entity instead"):
        assert local.username == "someone"  # W&B answers the entity

    server = servers()
    with SyncClient(server.url) as client:
        client.sync_run(RunPaths(root, "p", "fields1"))
    remote = wandb.Api(overrides={"base_url": server.url}).run("p/fields1")
    assert _fields(remote) == fields


def test_heartbeat_moves_with_a_resumed_session_and_an_empty_run_has_no_rows(root):
    import tracklet.compat.wandb as wandb

    wandb.init(project="p", id="quiet", settings=SETTINGS)
    wandb.finish()
    empty = wandb.Api().run("p/quiet")
    assert (empty.historyLineCount, empty.lastHistoryStep) == (0, -1)
    first = empty.heartbeat_at
    assert first is not None

    import time

    time.sleep(1.1)  # the heartbeat is to the second (W&B's text)
    wandb.init(project="p", id="quiet", resume="allow", settings=SETTINGS)
    wandb.log({"loss": 1.0})
    wandb.finish()
    resumed = wandb.Api().run("p/quiet")
    assert resumed.heartbeat_at > first
    assert (resumed.historyLineCount, resumed.lastHistoryStep) == (1, 0)


def test_history_with_another_x_axis_gives_that_column_and_the_keys_as_w_and_b_asks_for_them(root):
    """W&B's ``history(keys=, x_axis=)`` asks its server for ``[x_axis, *keys]``
    (``runs.py _sampled_history``): only rows holding all of them, only those columns. Until
    session 29 ``_step`` came too (``h.to_numpy()`` had a column more) and rows without the x axis."""
    import tracklet.compat.wandb as wandb

    wandb.init(project="p", id="xaxis", settings=SETTINGS)
    wandb.define_metric("epoch")
    wandb.define_metric("val/acc", step_metric="epoch", step_sync=False)
    for epoch in range(3):
        wandb.log({"train/loss": 1.0 / (epoch + 1)})  # a row without the x axis
        wandb.log({"epoch": epoch, "val/acc": epoch / 10})
    wandb.log({"val/acc": 0.9})  # holds the key, not the x axis: left out, as W&B's
    wandb.finish()
    run = wandb.Api().run("p/xaxis")
    frame = run.history(keys=["val/acc"], x_axis="epoch")
    assert list(frame.columns) == ["epoch", "val/acc"]
    assert frame.to_numpy().tolist() == [[0, 0.0], [1, 0.1], [2, 0.2]]
    assert list(run.history(keys=["val/acc"]).columns) == ["_step", "val/acc"]  # the default x axis
    assert [row["_step"] for row in run.scan_history(keys=["epoch"])] == [1, 3, 5]
