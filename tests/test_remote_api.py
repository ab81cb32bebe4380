"""`tracklet.Api(base_url=...)` against a real server process that needs keys: the same runs,
values and histories as the local Api after a sync; filters, sorts and paging; console output,
system metrics and files; clear errors for unknown runs and bad keys."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import serverproc
from conftest import QUIET, REPO

import tracklet
from tracklet.api import remote
from tracklet.api.local import LocalApi
from tracklet.api.remote import RemoteApi
from tracklet.errors import RemoteError, RunNotFound


@pytest.fixture
def synced(tmp_path, servers, root):
    """Five runs recorded here, synced to a keyed server; yields (server, admin key)."""
    server_root = tmp_path / "srv"
    made = serverproc.cli("admin", "--dir", str(server_root), "create-user", "root", "--admin", timeout=60)
    made.check_returncode()
    key = made.stdout.strip()
    server = servers(server_root, dev=False)
    for index in range(5):
        run = tracklet.init(project="cmp", id=f"r{index}", dir=str(root), config={"lr": 10.0 ** -index, "seed": index},
                            tags=["even"] if index % 2 == 0 else [], settings=QUIET)
        for step in range(300):
            row = {"loss": 1.0 / (step + 1) + index, "acc": step / 300, "spiky": float("nan") if step == 7 else 0.5}
            if step % 10 == 0:
                row["eval/score"] = step * index
            run.log(row)
        run.summary["best"] = index
        run.finish()
    synced = serverproc.cli("sync", "--all", "--url", server.url, "-q",
                            env={"TRACKLET_DIR": str(root), "TRACKLET_API_KEY": key})
    assert synced.returncode == 0, synced.stderr
    return server, key


def test_remote_runs_match_the_local_ones(synced, root, monkeypatch):
    server, key = synced
    api = tracklet.Api(base_url=server.url, api_key=key)
    local = tracklet.Api(root)
    # one public type: both are Apis, the remote one answering from the server
    assert isinstance(api, tracklet.Api) and isinstance(api, RemoteApi) and api.base_url == server.url
    assert isinstance(local, tracklet.Api) and isinstance(local, LocalApi)
    assert api.projects() == local.projects() == ["cmp"]
    assert [r.id for r in api.runs("cmp", filter="config.seed >= 3", order_by="config.seed")] == [
        r.id for r in local.runs("cmp", filter="config.seed >= 3", order_by="config.seed")] == ["r3", "r4"]
    assert [r.id for r in api.runs("cmp", order_by="config.lr")] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in api.runs("cmp", filter='config.seed >= 2 and state = "finished"', order_by="-config.seed")] == [
        "r4", "r3", "r2"]
    monkeypatch.setattr(remote, "PAGE", 2)  # several pages, and a limit that ends inside one
    assert [r.id for r in api.runs("cmp", order_by="config.seed")] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r.id for r in api.runs("cmp", order_by="config.seed", limit=3, offset=1)] == ["r1", "r2", "r3"]
    assert api.runs("nothing-here") == []

    mine, theirs = local.run("cmp/r2"), api.run("cmp/r2")
    assert (theirs.state, theirs.exit_code, theirs.tags, theirs.last_step) == ("finished", 0, ["even"], mine.last_step)
    assert theirs.config == mine.config and theirs.summary["best"] == 2
    assert sorted(theirs.keys()) == ["acc", "eval/score", "loss", "spiky"]
    ours, remote_history = mine.history(["loss", "eval/score"]), theirs.history(["loss", "eval/score"])
    assert remote_history["_step"] == ours["_step"]
    assert remote_history["loss"] == ours["loss"] and remote_history["eval/score"] == ours["eval/score"]
    assert remote_history["_timestamp"] == pytest.approx(ours["_timestamp"], abs=1e-6)
    # _runtime too, as the local history (and W&B's run.history()) has it: seconds since the start
    assert list(remote_history) == list(ours) == ["_step", "_timestamp", "_runtime", "loss", "eval/score"]
    assert remote_history["_runtime"] == pytest.approx(ours["_runtime"], abs=1e-6)
    spiky = theirs.history(["spiky"])["spiky"]
    assert math.isnan(spiky[7]) and spiky[8] == 0.5  # NaN travels as "NaN" (strict JSON) and reads back as NaN

    (bucketed,) = api.history("cmp/r2", "loss", buckets=10)
    (exact,) = local.history("cmp/r2", "loss", buckets=10)
    assert not bucketed.exact and np.array_equal(bucketed.max, exact.max) and np.array_equal(bucketed.count, exact.count)
    (window,) = api.history([theirs], ["spiky"], start=5, end=9, buckets=None)
    assert window.steps.tolist() == [5, 6, 7, 8, 9] and math.isnan(window.values[2])


def _parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_local_and_remote_apis_have_the_same_calls(tmp_path):
    # The interface is Api's abstract methods; both implementations take the same parameters.
    interface = {name for name in dir(tracklet.Api) if not name.startswith("_")}
    assert {"projects", "runs", "run", "history", "close"} <= interface
    for name in interface:
        assert _parameters(getattr(LocalApi, name)) == _parameters(getattr(RemoteApi, name)) == _parameters(
            getattr(tracklet.Api, name)), name
    assert not inspect.isabstract(LocalApi) and not inspect.isabstract(RemoteApi)
    assert type(tracklet.Api(tmp_path)) is LocalApi and type(tracklet.Api(base_url="http://127.0.0.1:9")) is RemoteApi
    with pytest.raises(ValueError, match="not both"):
        tracklet.Api(tmp_path, base_url="http://127.0.0.1:9")
    with tracklet.Api(tmp_path) as local, tracklet.Api(base_url="http://127.0.0.1:9") as remote_api:
        assert local.projects() == [] and remote_api.base_url == "http://127.0.0.1:9"


def test_remote_errors_are_clear(synced):
    server, key = synced
    api = tracklet.Api(base_url=server.url, api_key=key)
    with pytest.raises(RunNotFound, match="no run cmp/missing"):
        api.run("cmp/missing")
    with pytest.raises(ValueError, match="project/run_id"):
        api.run("justanid")
    with pytest.raises(RemoteError, match="401.*revoked|401.*invalid") as refused:
        tracklet.Api(base_url=server.url, api_key="tlk_aaaa_bbbb").projects()
    assert "tracklet login" in str(refused.value)
    with pytest.raises(RemoteError, match="cannot reach"):
        tracklet.Api(base_url="http://127.0.0.1:9", api_key=key).projects()


def test_console_system_and_files_through_the_remote_api(tmp_path, servers, root):
    server = servers(tmp_path / "srv")  # --dev: no key
    code = """
import tracklet
run = tracklet.init(project="live", id="page", settings={"system_interval": 0.05, "system_window": 0.2, "capture_wait": 60})
for step in range(5):
    print(f"epoch {step} done")
    run.log({"loss": step})
import time; time.sleep(0.6)
while not run._monitor.sampled:  # a run that ends before its first system sample records none
    time.sleep(0.005)
run.finish()
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(root)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)
    serverproc.cli("sync", "--all", "--url", server.url, "-q", env={"TRACKLET_DIR": str(root)}).check_returncode()
    run = tracklet.Api(base_url=server.url).run("live/page")
    lines = run.console()
    assert [line.text for line in lines] == [f"epoch {step} done" for step in range(5)]
    assert [line.text for line in run.console(search="EPOCH 3")] == ["epoch 3 done"]
    series = run.system_metrics(buckets=0)
    names = {item.key for item in series}
    assert {"cpu.percent", "memory.percent"} <= names and {item.stat for item in series} == {"mean", "max"}
    # The local system_metrics() columns (W&B's history(stream="system") and run.system_metrics read them)
    local = tracklet.Api(root).run("live/page").system_metrics()
    for stat in ("mean", "max"):
        mine, theirs = tracklet.Api(root).run("live/page").system_metrics(stat), run.system_history(stat)
        assert list(theirs) == list(mine) and theirs.num_rows == mine.num_rows > 0
        for name in mine:
            assert theirs[name] == pytest.approx(mine[name], abs=2e-3), (stat, name)  # window ends: whole ms
    from tracklet.compat.wandb.apis.public import Api as WandbApi

    wandb_run = WandbApi(overrides={"base_url": server.url}).run("live/page")
    system = wandb_run.history(stream="system", pandas=False)
    assert [row["cpu.percent"] for row in system] == pytest.approx(local["cpu.percent"])
    assert wandb_run.system_metrics["cpu.percent"] == pytest.approx(local["cpu.percent"][-1])
    # ... also under W&B's names and units (bytes as MB), as W&B's history(stream="events") and
    # system_metrics give them, from the server and from the data root alike
    assert [row["system.memory_percent"] for row in system] == pytest.approx(local["memory.percent"])
    assert wandb_run.system_metrics["system.proc.memory.rssMB"] == pytest.approx(local["process.rss_bytes"][-1] / 2**20)
    events = WandbApi(overrides={"root": str(root)}).run("live/page").history(stream="events", keys=["system.cpu"],
                                                                               pandas=False)
    assert [row["system.cpu"] for row in events] == [v for v in local["process.cpu_percent"] if v is not None]
    assert "requirements.txt" in run.files()
    assert run.metadata["command"][-1] == "-c"
