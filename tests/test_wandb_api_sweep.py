"""``wandb.Api().sweep(path)`` (W&B's public API, as export scripts use it) on a sweep run with
``wandb.sweep`` / ``wandb.agent``: its config, state, runs and best run, from the data root and
from a tracking server serving it, through ``tracklet.Api().sweep``."""

from __future__ import annotations

import json

import pytest
from conftest import QUIET

import tracklet
import tracklet.compat.wandb as wandb

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")

CONFIG = {"method": "grid", "name": "lr-grid", "metric": {"name": "val_loss", "goal": "minimize"},
          "parameters": {"lr": {"values": [0.3, 0.1, 0.2]}}}


@pytest.fixture
def swept(root, monkeypatch) -> str:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    sweep_id = wandb.sweep(CONFIG, project="wb")

    def train() -> None:
        run = tracklet.init(settings=QUIET)
        run.log({"val_loss": run.config["lr"], "acc": 1 - run.config["lr"]})
        run.finish()

    wandb.agent(sweep_id, function=train, count=3)
    return sweep_id


def _check(api: wandb.Api, sweep_id: str) -> None:
    sweep = api.sweep(f"someone/wb/{sweep_id}")
    assert (sweep.id, sweep.project, sweep.name, sweep.state) == (sweep_id, "wb", "lr-grid", "FINISHED")
    assert sweep.config["metric"] == {"name": "val_loss", "goal": "minimize"} and sweep.expected_run_count == 3
    runs = sweep.runs
    assert sorted(run.config["lr"] for run in runs) == [0.1, 0.2, 0.3]
    assert sweep.best_run().config["lr"] == 0.1  # the sweep's metric and goal
    assert sweep.best_run(order="-acc").config["lr"] == 0.1 and sweep.best_run(order="+acc").config["lr"] == 0.3
    assert sweep.best_run(order="-nosuch") is None
    assert runs[0].sweep.id == sweep_id and api.run(f"wb/{runs[0].id}").sweep.id == sweep_id  # W&B's run.sweep
    # W&B's filter on a run's sweep (it raised "filtering or sorting runs on 'sweep' is not supported")
    assert sorted(run.id for run in api.runs("wb", filters={"sweep": sweep_id})) == sorted(run.id for run in runs)
    assert len(api.runs("wb", filters={"sweep": f"someone/wb/{sweep_id}", "config.lr": {"$lt": 0.25}})) == 2
    assert len(api.runs("wb", filters={"sweep": {"$in": ["nosuch12", sweep_id]}})) == 3
    assert api.runs("wb", filters={"sweep": {"$ne": sweep_id}}) == [] and api.runs("wb", filters={"sweep": "x"}) == []
    with pytest.raises(wandb.errors.CommError, match="no sweep"):
        api.sweep("wb/nosuch12")
    # W&B's Runs.histories (an export script's one call for every run), run.sweep_name, run.json_config
    assert all(run.sweep_name == sweep_id for run in runs)
    listed = api.runs("wb")
    rows = listed.histories(keys=["val_loss"])
    assert sorted((row["run_id"], row["val_loss"]) for row in rows) == sorted((run.id, run.config["lr"]) for run in runs)
    frame = listed.histories(keys=["val_loss"], format="pandas")
    assert list(frame.columns) == ["_step", "run_id", "val_loss"] and len(frame) == 3
    assert json.loads(runs[0].json_config) == {"lr": {"value": runs[0].config["lr"], "desc": None}}
    assert runs[0].rawconfig == {"lr": runs[0].config["lr"]}  # W&B's: the values, unwrapped
    # W&B's Sweep.path, order (the metric as a sort key: best_run's default), url and to_html
    assert sweep.path == ["someone", "wb", sweep_id] and sweep.order == "+summary_metrics.val_loss"
    assert sweep.best_run(order=sweep.order).id == sweep.best_run().id
    base = getattr(api.tracklet_api, "base_url", "http://127.0.0.1:8765")
    assert sweep.url == f"{base}/projects/wb/sweeps/{sweep_id}"
    assert sweep.to_html(height=300) == f'<iframe src="{sweep.url}" style="border:none;width:100%;height:300px;"></iframe>'
    assert sweep._repr_html_() == sweep.to_html()
    # W&B's Project.sweeps(), a notebook's way to find a project's sweeps (it raised AttributeError)
    project = api.project("wb", entity="someone")
    assert [found.id for found in project.sweeps()] == [sweep_id] and project.path == ["someone", "wb"]
    assert project.sweeps()[0].best_run().id == sweep.best_run().id and api.project("other").sweeps() == []


def test_a_sweep_reads_its_config_state_runs_and_best_run(root, swept):
    _check(wandb.Api(), swept)
    assert tracklet.Api(root).sweep(swept)["project"] == "wb"  # locally the id alone finds it


def test_the_same_from_a_server(root, swept, servers):
    server = servers(root)
    api = wandb.Api(overrides={"base_url": server.url})
    _check(api, swept)
    # a --dev server's one user (no keys): W&B's viewer, unverified
    assert (api.viewer.username, api.viewer.verified, api.viewer.admin) == ("dev", False, True)


def test_best_run_sorts_a_bare_order_key_largest_first_as_wandb_does(root, swept):
    # W&B's QueryGenerator.format_order_key gives a key without a sign the "-" direction:
    # best_run(order="acc") is the run with the largest acc (it was the smallest here)
    sweep = wandb.Api().sweep(f"wb/{swept}")
    assert sweep.best_run(order="acc").config["lr"] == 0.1
    assert sweep.best_run(order="summary_metrics.acc").config["lr"] == 0.1
    assert sweep.best_run(order="val_loss").config["lr"] == 0.3
    # config keys sort by the run's config (they were looked up in the summary: None)
    assert sweep.best_run(order="config.lr").config["lr"] == 0.3
    assert sweep.best_run(order="+config.lr").config["lr"] == 0.1


def _no_metric_sweep(root, monkeypatch) -> str:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    sweep_id = wandb.sweep({"method": "grid", "parameters": {"lr": {"values": [0.3, 0.1, 0.2]}}}, project="wb")

    def train() -> None:
        run = tracklet.init(settings=QUIET)
        run.log({"val_loss": run.config["lr"]})
        run.finish()

    wandb.agent(sweep_id, function=train, count=3)
    return sweep_id


@pytest.mark.parametrize("where", ["local", "server"])
def test_best_run_of_a_sweep_without_a_metric_is_its_most_recent_run(root, monkeypatch, capsys, servers, where):
    """W&B's ``best_run()`` with no metric and no order: the most recent run, with a warning."""
    sweep_id = _no_metric_sweep(root, monkeypatch)
    api = wandb.Api(overrides={"base_url": servers(root).url}) if where == "server" else wandb.Api()
    sweep = api.sweep(f"wb/{sweep_id}")
    runs = sweep.runs  # in trial order: the last one ran last
    assert len(runs) == 3 and runs[0].created_at <= runs[-1].created_at
    capsys.readouterr()
    assert sweep.best_run().id == runs[-1].id
    assert "couldn't find metric in sweep config, returning most recent run" in capsys.readouterr().err
    assert sweep.best_run(order="+val_loss").config["lr"] == 0.1  # an order still sorts
    assert sweep.best_run(order="-val_loss").config["lr"] == 0.3
