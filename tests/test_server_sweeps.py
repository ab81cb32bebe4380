"""The read-only sweep routes (server/routes_sweeps.py over tracklet/sweeps/view.py) on a real local
sweep: trials run through tracklet's agent (complete, failed, one still running), read while an
agent holds the sweep's lock, never changing a byte of the sweep; bodies exactly their models;
the project's read role guards them; one damaged sweep doesn't break the listing."""

from __future__ import annotations

import fcntl
import json
import math
import threading
import time
from pathlib import Path

import pytest
from conftest import QUIET
from fastapi.testclient import TestClient

import tracklet
from tracklet.server.app import create_app
from tracklet.server.auth import Accounts
from tracklet.server.models import SweepImportanceResponse, SweepResponse, SweepsResponse
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.controller import LocalController, create_sweep

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")

CONFIG = {"method": "random", "seed": 5, "metric": {"name": "f", "goal": "minimize"},
          "parameters": {"x": {"min": -2.0, "max": 2.0}, "opt": {"values": ["adam", "sgd"]},
                         "net": {"parameters": {"width": {"values": [16, 32]}}}, "epochs": {"value": 3}}}


def objective() -> None:
    run = tracklet.init(settings=QUIET)
    run.log({"f": run.config["x"] ** 2 + (0.25 if run.config["opt"] == "sgd" else 0.0)})


def broken() -> None:
    tracklet.init(settings=QUIET)
    raise RuntimeError("diverged")


@pytest.fixture
def swept(tmp_path):
    """A data root with sweep `demo/<id>`: 6 complete trials, 1 failed, 1 running (leased, no run);
    and a grid sweep of another project."""
    root = tmp_path / "data"
    sweep_id = create_sweep(root, CONFIG, project="demo")
    quiet = {"log": lambda line: None}
    Agent(LocalController(root, sweep_id), count=6, **quiet).run_function(objective)
    Agent(LocalController(root, sweep_id), count=1, **quiet).run_function(broken)
    held = LocalController(root, sweep_id).next_trial("held-agent", ttl=3600)
    other = create_sweep(root, {"method": "grid", "parameters": {"a": {"values": [1, 2]}}}, project="elsewhere")
    app = create_app(root, shared_root=True, sweep_interval=3600)
    accounts = Accounts(app.state.tracklet.store)
    keys = {"admin": accounts.create_user("admin", admin=True).key, "reader": accounts.create_user("reader").key,
            "outsider": accounts.create_user("outsider").key}
    accounts.set_member("demo", "reader", "read")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {keys['reader']}"
        yield {"root": root, "id": sweep_id, "other": other, "held": held, "client": client, "keys": keys}


def _exact(model, response) -> dict:
    """The body, checked to be exactly what its model describes (as tests/test_server_contract.py)."""
    assert response.status_code == 200, response.text
    assert model.model_validate_json(response.content).model_dump_json(exclude_unset=True).encode() == response.content
    return response.json()


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_projects_sweeps_are_listed_with_counts_and_best(swept):
    client, sweep_id = swept["client"], swept["id"]
    listed = _exact(SweepsResponse, client.get("/api/v1/projects/demo/sweeps"))["sweeps"]
    assert [s["id"] for s in listed] == [sweep_id]  # not the other project's sweep
    (sweep,) = listed
    status = LocalController(swept["root"], sweep_id).status()  # what `tracklet sweep show` says
    assert sweep["counts"] == {"complete": 6, "failed": 1, "running": 1} == status["counts"]
    assert sweep["trial_count"] == 8 and sweep["method"] == "random" and sweep["state"] == "running"
    assert sweep["metric"] == {"name": "f", "goal": "minimize"}
    assert sweep["best"] == {"trial": status["best"]["trial"], "value": status["best"]["value"],
                             "run_id": f"{sweep_id}-{status['best']['trial']}"}
    assert client.get("/api/v1/projects/nobody/sweeps").json() == {"sweeps": [], "total": 0}


def test_one_sweep_has_its_trials_runs_and_a_monotone_best_so_far(swept):
    client, sweep_id = swept["client"], swept["id"]
    sweep = _exact(SweepResponse, client.get(f"/api/v1/projects/demo/sweeps/{sweep_id}"))["sweep"]
    trials = sweep["trials"]
    assert [t["number"] for t in trials] == list(range(8))
    assert [t["state"] for t in trials] == ["complete"] * 6 + ["failed", "running"]
    for trial in trials:
        assert set(trial["params"]) == {"x", "opt", "net.width"}  # searched only, by dotted name
        assert -2 <= trial["params"]["x"] <= 2 and trial["params"]["opt"] in ("adam", "sgd")
        assert trial["run_id"] == f"{sweep_id}-{trial['number']}"
    for trial in trials[:6]:
        x, opt = trial["params"]["x"], trial["params"]["opt"]
        assert trial["value"] == pytest.approx(x ** 2 + (0.25 if opt == "sgd" else 0.0))
        assert trial["run_state"] == "finished" and trial["start"] < trial["end"] and trial["error"] is None
    failed, running = trials[6], trials[7]
    assert failed["value"] is None and "diverged" in failed["error"] and failed["run_state"] == "failed"
    assert running["agent"] == "held-agent" and running["end"] is None and running["run_state"] is None
    assert running["lease_expires"] > time.time() + 3000
    assert sweep["parameters"] == [
        {"name": "x", "distribution": "uniform", "log": False},
        {"name": "opt", "distribution": "categorical", "log": False, "values": ["adam", "sgd"]},
        {"name": "net.width", "distribution": "categorical", "log": False, "values": [16, 32]}]
    assert sweep["config"]["parameters"]["epochs"] == {"distribution": "constant", "value": 3}
    best = [point["best"] for point in sweep["best_so_far"]]
    values = [t["value"] for t in trials[:6]]
    assert [point["value"] for point in sweep["best_so_far"]] == values
    assert best == [min(values[:i + 1]) for i in range(6)] and best == sorted(best, reverse=True)
    assert sweep["agents"][-1] == "held-agent" and len(sweep["agents"]) == 2  # this process's agents, then held


def test_parameter_importance_ranks_the_parameter_that_matters(swept):
    client, sweep_id = swept["client"], swept["id"]
    path = f"/api/v1/projects/demo/sweeps/{sweep_id}"
    assert client.get(path).json()["sweep"]["trial_count"] == 8  # the server now keeps this sweep's replayed study
    LocalController(swept["root"], sweep_id).finish(swept["held"], 1)  # settle the running trial
    Agent(LocalController(swept["root"], sweep_id), count=10, log=lambda line: None).run_function(objective)
    after = client.get(path).json()["sweep"]  # ...and catches up with what agents appended since
    assert after["trial_count"] == 18 and after["counts"] == {"complete": 16, "failed": 2}
    found = _exact(SweepImportanceResponse, client.get(f"/api/v1/projects/demo/sweeps/{sweep_id}/importance"))
    assert found["evaluator"] == "PED-ANOVA" and found["trials"] == 16 and found["note"] is None
    names = [entry["name"] for entry in found["importances"]]
    assert sorted(names) == ["net.width", "opt", "x"] and names[0] == "x"  # f = x² (+ 0.25 for sgd)
    assert math.isclose(sum(entry["importance"] for entry in found["importances"]), 1.0)
    assert client.get(f"/api/v1/projects/demo/sweeps/{sweep_id}/importance").json() == found
    few = create_sweep(swept["root"], CONFIG, project="demo")
    empty = client.get(f"/api/v1/projects/demo/sweeps/{few}/importance").json()
    assert empty["importances"] == [] and "needs 4 complete trials; 0 so far" in empty["note"]


def test_reading_neither_waits_for_the_sweeps_lock_nor_changes_a_byte(swept):
    client, sweep_id = swept["client"], swept["id"]
    directory = swept["root"] / "sweeps" / sweep_id
    with open(directory / "journal.log", "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "torn')  # a writer killed mid-line
    before = _snapshot(directory)
    answered = threading.Event()

    def read_all() -> None:
        for path in ("", f"/{sweep_id}", f"/{sweep_id}/importance"):
            assert client.get(f"/api/v1/projects/demo/sweeps{path}").status_code == 200
        answered.set()

    with open(directory / "lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # an agent mid-operation
        reader = threading.Thread(target=read_all)
        reader.start()
        assert answered.wait(60), "a read waited for the sweep's lock"
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    reader.join()
    assert _snapshot(directory) == before  # nothing reaped, nothing written, the torn line left alone


def test_the_sweep_routes_need_the_projects_read_role(swept):
    client, sweep_id, keys = swept["client"], swept["id"], swept["keys"]
    for path in ("/api/v1/projects/demo/sweeps", f"/api/v1/projects/demo/sweeps/{sweep_id}",
                 f"/api/v1/projects/demo/sweeps/{sweep_id}/importance"):
        denied = client.get(path, headers={"Authorization": f"Bearer {keys['outsider']}"})
        assert denied.status_code == 403 and "not a member" in denied.json()["detail"], path
        assert client.get(path, headers={"Authorization": ""}).status_code == 401, path
        assert client.get(path).status_code == 200, path
    # a sweep is found only through its own project: the reader of demo can't read elsewhere's
    other = client.get(f"/api/v1/projects/demo/sweeps/{swept['other']}")
    assert other.status_code == 404 and "no sweep" in other.json()["detail"]
    # elsewhere has no runs, so the guard lets anyone "read" it: its sweeps stay hidden all the same
    assert client.get("/api/v1/projects/elsewhere/sweeps").json() == {"sweeps": [], "total": 0}
    for path in (f"/{swept['other']}", f"/{swept['other']}/importance"):
        assert client.get(f"/api/v1/projects/elsewhere/sweeps{path}").status_code == 404
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    assert [s["id"] for s in client.get("/api/v1/projects/elsewhere/sweeps", headers=admin).json()["sweeps"]] == [
        swept["other"]]
    assert client.get("/api/v1/projects/demo/sweeps/nope").status_code == 404
    assert client.get("/api/v1/projects/demo/sweeps/-bad").status_code == 400
    assert client.get("/api/v1/projects/-bad/sweeps").status_code == 400


def test_a_damaged_sweep_is_reported_and_the_others_still_listed(swept):
    client, root = swept["client"], swept["root"]
    damaged = create_sweep(root, CONFIG, project="demo")
    with open(root / "sweeps" / damaged / "journal.log", "ab") as journal:
        journal.write(b"\x00\x00 not json\n")
    (root / "sweeps" / "junk").mkdir()
    (root / "sweeps" / "junk" / "sweep.json").write_text("{")  # not even a sweep
    listed = {s["id"]: s for s in _exact(SweepsResponse, client.get("/api/v1/projects/demo/sweeps"))["sweeps"]}
    assert set(listed) == {swept["id"], damaged}
    assert listed[swept["id"]]["counts"]["complete"] == 6 and "error" not in listed[swept["id"]]
    assert "not JSON" in listed[damaged]["error"] and listed[damaged]["trial_count"] == 0
    detail = client.get(f"/api/v1/projects/demo/sweeps/{damaged}")
    assert detail.status_code == 500 and f"sweep {damaged} can't be read" in detail.json()["detail"]
    assert json.loads(detail.content) == {"detail": detail.json()["detail"]}
    broken = create_sweep(root, CONFIG, project="demo")
    (root / "sweeps" / broken / "sweep.json").write_text('{"id": "x", "project": "demo"}')  # no config
    answer = client.get(f"/api/v1/projects/demo/sweeps/{broken}")
    assert answer.status_code == 500 and "sweep.json" in answer.json()["detail"]
    garbled = create_sweep(root, CONFIG, project="demo")
    (root / "sweeps" / garbled / "state.json").write_text("{not json")
    answer = client.get(f"/api/v1/projects/demo/sweeps/{garbled}")
    assert answer.status_code == 500 and f"sweep {garbled} can't be read" in answer.json()["detail"]
    assert client.get("/api/v1/projects/demo/sweeps").status_code == 200


def test_a_listing_summarises_only_the_newest_sweeps(swept, monkeypatch):
    from tracklet.sweeps import view

    client, root = swept["client"], swept["root"]
    newer = [create_sweep(root, CONFIG, project="demo") for _ in range(2)]
    monkeypatch.setattr(view, "MAX_LISTED", 2)  # each summary replays a journal: the listing is bounded
    listed = _exact(SweepsResponse, client.get("/api/v1/projects/demo/sweeps"))
    assert sorted(s["id"] for s in listed["sweeps"]) == sorted(newer) and listed["total"] == 3
