"""W&B's ``metric.impute`` in a bayes sweep: a failed run counts in the search at an imputed value
(worst by default, its own best or latest value), while it stays failed for the user; and every
config key tracklet accepts but does not act on is named in a warning as the sweep is created."""

from __future__ import annotations

import warnings

import pytest
from conftest import QUIET

import tracklet
from tracklet.errors import TrackletWarning
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.controller import LocalController, create_sweep
from tracklet.sweeps.remote import RemoteController, create_remote_sweep

optuna = pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")


def _bayes(**metric):
    return {"method": "bayes", "seed": 3, "metric": {"name": "loss", **metric},
            "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def _seen_by_search(controller):
    """(number, value) of each trial the sampler learns from (Optuna's COMPLETE trials)."""
    study = controller._study()
    return [(t.number, t.values[0]) for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]


def test_a_failed_trial_counts_as_the_worst_result_by_default(root):
    controller = LocalController(root, create_sweep(root, _bayes(), project="p"))
    for value in (1.0, 3.0):
        controller.tell(controller.next_trial("me"), value)
    result = controller.tell(controller.next_trial("me"), None, "the command exited with status 1")
    assert result.state == "failed" and "exited with status 1" in result.message
    assert "loss = 3" in result.message and "metric.impute: worst" in result.message
    assert _seen_by_search(controller) == [(0, 1.0), (1, 3.0), (2, 3.0)]
    status = controller.status()
    assert [row["state"] for row in status["trials"]] == ["complete", "complete", "failed"]
    assert status["trials"][2]["imputed"] == 3.0 and status["trials"][2]["value"] is None
    assert status["trials"][2]["error"] == result.message  # sweep show and the dashboard say it
    assert status["best"]["trial"] == 0 and status["counts"] == {"complete": 2, "failed": 1}


def test_worst_of_a_maximized_metric_is_the_smallest(root):
    controller = LocalController(root, create_sweep(root, _bayes(goal="maximize"), project="p"))
    for value in (0.2, 0.9):
        controller.tell(controller.next_trial("me"), value)
    controller.tell(controller.next_trial("me"), None, "crashed")
    assert _seen_by_search(controller)[-1] == (2, 0.2)


def test_with_nothing_to_impute_from_the_trial_fails_unseen(root):
    controller = LocalController(root, create_sweep(root, _bayes(), project="p"))
    result = controller.tell(controller.next_trial("me"), None, "crashed")
    assert result.state == "failed" and result.message == "crashed"
    assert _seen_by_search(controller) == []


@pytest.mark.parametrize("strategy, expected", [("best", 1.0), ("latest", 1.5)])
def test_best_and_latest_read_the_failed_runs_own_metric(root, monkeypatch, strategy, expected):
    sweep_id = create_sweep(root, _bayes(impute=strategy), project="p")
    controller = LocalController(root, sweep_id)
    lease = controller.next_trial("me")
    monkeypatch.setenv("TRACKLET_SWEEP_ID", sweep_id)
    monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", str(lease.trial))
    run = tracklet.init(settings=QUIET)
    for value in (2.0, 1.0, 1.5):
        run.log({"loss": value})
    run.finish(exit_code=1)
    result = controller.finish(lease, 1)
    assert result.state == "failed" and f"loss = {expected:g}" in result.message
    assert _seen_by_search(controller) == [(0, expected)]
    # a failed run that never logged the metric has no value of its own: it fails, unseen
    lease = controller.next_trial("me")
    assert controller.finish(lease, 1).message == "the command exited with status 1"
    assert len(_seen_by_search(controller)) == 1


def test_a_server_sweep_imputes_from_what_the_agent_read(root, tmp_path, servers):
    """Server mode: the agent reads the failed run's own value from its local record log and tells
    it with the failure; the server's controller imputes it."""
    server = servers(tmp_path / "srv")
    made = create_remote_sweep(server.url, _bayes(impute="latest"), project="p")

    def crashes() -> None:
        run = tracklet.init(settings=QUIET)
        for value in (2.0, 1.0, 1.5):
            run.log({"loss": value})
        raise RuntimeError("out of memory")

    agent = Agent(RemoteController(server.url, made["id"], root=root), log=lambda line: None, count=1)
    report = agent.run_function(crashes)
    (result,) = report.results
    assert result.state == "failed" and "out of memory" in result.message and "loss = 1.5" in result.message
    assert "metric.impute: latest" in result.message


def test_random_and_grid_sweeps_leave_failed_runs_failed(root):
    config = {**_bayes(), "method": "random"}
    controller = LocalController(root, create_sweep(root, config, project="p"))
    controller.tell(controller.next_trial("me"), 1.0)
    controller.tell(controller.next_trial("me"), None, "crashed")
    assert _seen_by_search(controller) == [(0, 1.0)]


@pytest.mark.parametrize("config, named", [
    ({**_bayes(impute="best"), "method": "random"}, "metric.impute: read by method: bayes only"),
    (_bayes(impute_while_running="latest"), "metric.impute_while_running: latest is not implemented"),
    ({**_bayes(), "early_terminate": {"type": "hyperband", "min_iter": 2, "strict": True}},
     "early_terminate.strict: not read"),
    ({**_bayes(), "job": "entity/project/job:v0"}, "job: W&B Launch sweeps are not supported"),
    ({**_bayes(), "image_uri": "repo/image:tag"}, "image_uri: W&B Launch sweeps are not supported"),
    ({**_bayes(), "controller": {"type": "cloud"}}, "controller.type: 'cloud' is not read"),
    ({**_bayes(), "entity": "team"}, "entity: not read"),
])
def test_a_key_accepted_but_not_acted_on_is_named_in_a_warning(root, config, named):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_sweep(root, config, project="p")
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackletWarning)]
    assert len(messages) == 1 and named in messages[0] and messages[0].startswith("sweep config: ")


def test_a_config_whose_every_key_is_used_warns_nothing(root):
    config = {**_bayes(impute="latest", impute_while_running="false"), "controller": {"type": "local"},
              "name": "n", "description": "d", "early_terminate": {"type": "hyperband", "min_iter": 2}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_sweep(root, config, project="p")
    assert not [w for w in caught if issubclass(w.category, TrackletWarning)]
