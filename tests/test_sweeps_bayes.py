"""``method: bayes`` searches exactly as Optuna's ``GPSampler`` with the sweep's seed: the same
suggestions, trial by trial, as a plain in-memory Optuna study on the same space, for a metric
minimized and one maximized; with a categorical, its start-up trials try every value first
(``covering_startup_sampler``), and otherwise the suggestions are still GPSampler's. So a regret
``bayes`` gets in benchmarks/sweeps.py is GPSampler's own, not a mapping, seeding or direction of
tracklet's."""

from __future__ import annotations

import math

import pytest

from tracklet.sweeps.controller import Lease, LocalController, create_sweep
from tracklet.sweeps.samplers import covering_startup_sampler

optuna = pytest.importorskip("optuna")

CHOICES = ["a", "b", "c", "d"]


def _objective(config: dict) -> float:
    return (config["x"] - 0.2) ** 2 + math.sin(5 * config["y"]) + 0.5 * CHOICES.index(config["cat"])


def _float_objective(config: dict) -> float:
    return (config["x"] - 0.2) ** 2 + math.sin(5 * config["y"])


def test_bayes_without_categoricals_suggests_what_plain_gpsampler_suggests(tmp_path):
    """No categorical: the covering start-up draws the floats as Optuna's RandomSampler with the
    same seed does, so Branin's and Hartmann-6's searches are GPSampler's, to the last digit."""
    trials = 11  # 10 random start-up trials, then a GP one
    config = {"method": "bayes", "seed": 3, "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": -1.0, "max": 1.0}}}
    controller = LocalController(tmp_path, create_sweep(tmp_path, config, project="p"))
    ours = []
    for _ in range(trials):
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        ours.append(lease.config)
        controller.tell(lease, _float_objective(lease.config))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=3))
    theirs = []
    for _ in range(trials):
        trial = study.ask()
        suggested = {"x": trial.suggest_float("x", 0.0, 1.0), "y": trial.suggest_float("y", -1.0, 1.0)}
        theirs.append(suggested)
        study.tell(trial, _float_objective(suggested))
    assert ours == theirs


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_bayes_suggests_what_optunas_gpsampler_suggests_with_the_same_seed(tmp_path, goal):
    trials = 13  # 10 start-up trials (every categorical value first), then the GP's
    config = {"method": "bayes", "seed": 5, "metric": {"name": "f", "goal": goal},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": -1.0, "max": 1.0},
                             "cat": {"values": CHOICES}}}
    controller = LocalController(tmp_path, create_sweep(tmp_path, config, project="p"))
    ours = []
    for _ in range(trials):
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        ours.append(lease.config)
        controller.tell(lease, _objective(lease.config))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=goal, sampler=optuna.samplers.GPSampler(
        seed=5, independent_sampler=covering_startup_sampler(5)))
    theirs = []
    for _ in range(trials):
        trial = study.ask()
        # tracklet searches a categorical as the index of its value (docs/sweeps.md)
        suggested = {"x": trial.suggest_float("x", 0.0, 1.0), "y": trial.suggest_float("y", -1.0, 1.0),
                     "cat": CHOICES[trial.suggest_categorical("cat", tuple(range(len(CHOICES))))]}
        theirs.append(suggested)
        study.tell(trial, _objective(suggested))
    assert ours == theirs


def _bayes_sweep(root, seed, *, cats=8):
    config = {"method": "bayes", "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "cat": {"values": list(range(cats))},
                             "small": {"values": ["a", "b", "c"]}}}
    if seed is not None:
        config["seed"] = seed
    return create_sweep(root, config, project="p")


@pytest.mark.parametrize("seed", [0, 1, 2, None])
def test_bayes_start_up_trials_try_every_categorical_value_first(tmp_path, seed):
    """A GP learns nothing about a categorical value no trial tried (Hartmann-6 + an 8-way
    categorical stayed on a wrong value on seeds whose random start-up missed the best one): the
    first n trials try each of a categorical's n values once, every categorical at once, and the
    values of two categoricals are not paired in lockstep."""
    controller = LocalController(tmp_path, _bayes_sweep(tmp_path, seed))
    configs = []
    for _ in range(9):
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        configs.append(lease.config)
        controller.tell(lease, lease.config["x"])
    assert sorted(c["cat"] for c in configs[:8]) == list(range(8))
    assert sorted(c["small"] for c in configs[:3]) == ["a", "b", "c"]
    assert sorted(c["small"] for c in configs[3:6]) == ["a", "b", "c"]
    assert len({c["x"] for c in configs}) == 9  # the floats stay random


def test_a_restarted_controller_and_a_second_agent_continue_the_cycle(tmp_path):
    """What was tried is read from the sweep's journal, not kept by the controller: a controller
    started again (a new agent process, or after a crash) continues the cycle instead of starting
    it over, and a trial still running counts as tried, so parallel agents spread over the values."""
    sweep_id = _bayes_sweep(tmp_path, 4)
    first = LocalController(tmp_path, sweep_id)
    seen = []
    for _ in range(3):
        lease = first.next_trial("a1")
        assert isinstance(lease, Lease)
        seen.append(lease.config["cat"])
        first.tell(lease, 1.0)
    running = first.next_trial("a1")  # left running: a1 is still at work on it
    assert isinstance(running, Lease)
    seen.append(running.config["cat"])
    restarted = LocalController(tmp_path, sweep_id)
    for _ in range(4):
        lease = restarted.next_trial("a2")
        assert isinstance(lease, Lease)
        seen.append(lease.config["cat"])
        restarted.tell(lease, 1.0)
    assert sorted(seen) == list(range(8))


PRELOAD_SCRIPT = """
import json, sys, time
import tracklet
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.controller import LocalController, create_sweep

root = sys.argv[1]
config = {"method": sys.argv[2], "metric": {"name": "f"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
sweep_id = create_sweep(root, config, project="p")
seen = {}

def trial():
    deadline = time.monotonic() + 120
    while "optuna._gp.gp" not in sys.modules and time.monotonic() < deadline and sys.argv[2] == "bayes":
        time.sleep(0.05)
    seen["gp"] = "optuna._gp.gp" in sys.modules
    seen["torch"] = "torch" in sys.modules
    run = tracklet.init(settings={"console": "off", "capture_environment": False, "system_metrics": False})
    run.log({"f": run.config["x"]})

Agent(LocalController(root, sweep_id), count=1, log=lambda line: None).run_function(trial)
print(json.dumps(seen))
"""


@pytest.mark.parametrize("method, loaded", [("bayes", True), ("random", False)])
def test_a_bayes_agent_imports_the_gp_while_its_first_random_trial_runs(tmp_path, method, loaded):
    """The GP's modules (torch, SciPy) take seconds to import; a bayes agent imports them while its
    start-up trials run, so the first GP suggestion doesn't add them between a trial's exit and the
    next one's start (issue #17: run exit -> next run start <= 1 s). Other methods import nothing."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "agent.py"
    script.write_text(PRELOAD_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "root"), method], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"gp": loaded, "torch": loaded}
