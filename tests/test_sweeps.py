"""Sweeps in local mode (tracklet/sweeps/, docs/sweeps.md): W&B's config validated and read back,
real Optuna studies under the data root, real agent processes (grid completeness with agents started
at once, kill -9 of an agent mid-trial), the search beating its random baseline, wandb.sweep/agent."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import QUIET, REPO, run_script

import tracklet
from tracklet.cli.main import main
from tracklet.errors import SweepError, SweepNotFound, SweepSpecError
from tracklet.sweeps import space
from tracklet.sweeps.agent import Agent, gpu_slices, parse_gpus
from tracklet.sweeps.command import build_command
from tracklet.sweeps.controller import Finished, LocalController, Wait, create_sweep
from tracklet.sweeps.spec import parse

DATA = Path(__file__).parent / "data" / "sweeps"
QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize("config, field", [
    ({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.01}}}, "parameters.lr.min: must be < max"),
    ({"method": "bayes", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, "metric: is required for method: bayes"),
    ({"method": "annealing", "parameters": {"x": {"value": 1}}}, "method: must be one of"),
    ({"parameters": {"x": {"value": 1}}}, "method: is required"),
    ({"method": "random"}, "parameters: is required"),
    ({"method": "random", "parameters": {"x": {"distribution": "uniform", "min": 0}}},
     "parameters.x.max: is required for distribution uniform"),
    ({"method": "random", "parameters": {"x": {"distribution": "gaussian"}}}, "parameters.x.distribution: unknown"),
    ({"method": "random", "parameters": {"x": {"distribution": "int_uniform", "min": 0.5, "max": 3}}},
     "parameters.x.min: must be an integer for int_uniform"),
    ({"method": "random", "parameters": {"x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}},
     "parameters.x.min: must be > 0"),
    ({"method": "random", "parameters": {"x": {"distribution": "normal", "sigma": -1}}},
     "parameters.x.sigma: must be > 0"),
    ({"method": "random", "parameters": {"x": {"values": []}}}, "parameters.x.values: must be a non-empty list"),
    ({"method": "random", "parameters": {"x": {"values": [1, 2], "probabilities": [0.5]}}},
     "parameters.x.probabilities: must be a list as long as values"),
    ({"method": "random", "parameters": {"x": {"values": [1], "bogus": 2}}}, "parameters.x.bogus: unknown key"),
    ({"method": "random", "parameters": {"opt": {"parameters": {"lr": {"min": 1.0, "max": 0.5}}}}},
     "parameters.opt.parameters.lr.min: must be < max"),
    ({"method": "grid", "parameters": {"lr": {"min": 0.0, "max": 1.0}}},
     "parameters.lr: grid search needs a finite set of values"),
    ({"method": "random", "metric": {"name": "loss", "goal": "lowest"}, "parameters": {"x": {"value": 1}}},
     "metric.goal: must be minimize or maximize"),
    ({"method": "random", "run_cap": 0, "parameters": {"x": {"value": 1}}}, "run_cap: must be an integer >= 1"),
    ({"method": "random", "command": "python train.py", "parameters": {"x": {"value": 1}}},
     "command: must be a non-empty list"),
    ({"method": "random", "command": ["${program}"], "parameters": {"x": {"value": 1}}},
     "command: uses ${program} but the config has no program"),
    ({"method": "random", "early_terminate": {"type": "hyperband", "eta": 1}, "parameters": {"x": {"value": 1}}},
     "early_terminate.eta: must be a number > 1"),
    ({"method": "optuna", "metric": {"name": "l"}, "sampler": "annealing", "parameters": {"x": {"value": 1}}},
     "sampler: must be one of tpe, gp"),
    ({"method": "random", "parameters": {"x": {"value": 1}}, "paramters": {}}, "paramters: unknown key"),
    ({"method": "bayes", "metrics": [{"name": "loss"}, {"name": "cost", "goal": "least"}],
      "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "metrics[1].goal: must be minimize or maximize"),
    ({"method": "bayes", "metrics": [{"goal": "maximize"}], "parameters": {"x": {"min": 0.0, "max": 1.0}}},
     "metrics[0].name: is required"),
    ({"method": "bayes", "metrics": [{"name": "a"}, {"name": "a", "goal": "maximize"}],
      "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "metrics[1].name: 'a' is already an objective"),
    ({"method": "bayes", "metrics": {"name": "a"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}},
     "metrics: must be a non-empty list"),
    ({"method": "bayes", "metric": {"name": "a"}, "metrics": [{"name": "b"}], "parameters": {"x": {"min": 0.0, "max": 1.0}}},
     "metrics: give metric: (one objective) or metrics: (several), not both"),
    ({"method": "bayes", "metrics": [{"name": "a"}, {"name": "b"}], "parameters": {"x": {"min": 0.0, "max": 1.0}},
      "early_terminate": {"type": "hyperband", "min_iter": 1}}, "early_terminate: Optuna prunes single-objective"),
    ({"method": "optuna", "sampler": "cmaes", "metrics": [{"name": "a"}, {"name": "b"}],
      "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "sampler: cmaes searches one objective"),
])
def test_an_invalid_config_is_refused_naming_the_field(config, field):
    with pytest.raises(SweepSpecError) as caught:
        parse(config)
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, tracklet.TrackletError)


def test_every_problem_is_named_at_once():
    with pytest.raises(SweepSpecError) as caught:
        parse({"method": "bayes", "parameters": {"a": {"min": 2, "max": 1}, "b": {"distribution": "nope"}}})
    assert [line.split(":")[0] for line in caught.value.problems] == ["metric", "parameters.a.min",
                                                                     "parameters.b.distribution"]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_wandb_example_configs_round_trip(name):
    import yaml  # type: ignore[import-untyped]

    original = yaml.safe_load((DATA / name).read_text())
    spec = parse((DATA / name).read_text())
    assert parse(spec.config) == spec  # the normalized config reads back as the same spec
    assert json.loads(json.dumps(spec.config)) == spec.config  # plain data: stored as JSON as it is
    for key, value in original.items():  # everything given is kept; parameters gain their distribution
        if key not in ("parameters", "metric", "early_terminate", "sampler", "pruner"):
            assert spec.config[key] == value

    def check(given, normalized):
        for pname, definition in given.items():
            if "parameters" in definition:
                check(definition["parameters"], normalized[pname]["parameters"])
            else:
                assert {k: v for k, v in normalized[pname].items() if k in definition} == definition
                assert normalized[pname]["distribution"] in space.__dict__["_CDF_SPACE"] + (
                    "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                    "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values")

    check(original["parameters"], spec.config["parameters"])


def test_wandb_inference_of_distributions():
    spec = parse((DATA / "mixed.yaml").read_text())
    kinds = {p.name: p.distribution for p in spec.params}
    assert kinds == {"learning_rate": "log_uniform_values", "batch_size": "int_uniform", "optimizer": "categorical",
                     "dropout": "uniform", "epochs": "constant"}
    nested = parse((DATA / "nested.yaml").read_text())
    assert [p.name for p in nested.params] == ["batch_size", "optimizer.lr", "optimizer.nadam.beta"]
    assert nested.grid_size() == 8


def test_every_distribution_decodes_inside_its_support():
    import optuna

    spec = parse((DATA / "distributions.yaml").read_text())
    dists = space.distributions(spec)
    sampler = optuna.samplers.RandomSampler(seed=3)
    study = optuna.create_study(sampler=sampler)
    seen_cp = set()
    for _ in range(200):
        trial = study.ask(dists)
        config = space.decode(spec, trial.params)
        study.tell(trial, 0.0)
        assert -1.0 <= config["u"] <= 1.0
        assert config["i"] in range(1, 9) and isinstance(config["i"], int)
        assert config["q"] in (0, 2, 4, 6, 8, 10)
        assert math.exp(-9.2) <= config["lu"] <= math.exp(-2.3) * (1 + 1e-9)
        assert 1e-4 <= config["luv"] <= 0.1
        assert config["qlu"] % 4 == 0 and config["qluv"] % 16 == 0 and 16 <= config["qluv"] <= 512
        assert math.exp(-5) <= config["ilu"] <= math.exp(-1) * (1 + 1e-9) and 1e-3 <= config["iluv"] <= 0.5
        assert math.isfinite(config["n"]) and config["ln"] > 0 and config["qln"] % 2 == 0
        assert float(config["qn"]).is_integer()
        assert 0 <= config["b"] <= 1 and 0 <= config["qb"] <= 1
        assert abs(config["qb"] * 10 - round(config["qb"] * 10)) < 1e-9
        assert config["c"] in ("relu", "gelu") and config["flag"] in (True, False) and config["k"] == "constant"
        seen_cp.add(config["cp"])
    assert seen_cp == {"a", "b", "c"}


def test_command_macros_are_wandbs():
    config = {"lr": 0.01, "deep": True, "shallow": False, "opt": {"beta": 0.9}}
    assert build_command(None, "train.py", config) == [
        "/usr/bin/env", sys.executable, "train.py", "--lr=0.01", "--deep=True", "--shallow=False",
        "--opt={'beta': 0.9}"]
    line = build_command(["${interpreter}", "${program}", "${args_no_boolean_flags}", "${args_no_hyphens}",
                          "${args_json}", "--home=${envvar:HOMEDIR}"], "t.py", config, environ={"HOMEDIR": "/h"})
    assert line == [sys.executable, "t.py", "--lr=0.01", "--deep", "--opt={'beta': 0.9}", "lr=0.01", "deep=True",
                    "shallow=False", "opt={'beta': 0.9}", json.dumps(config), "--home=/h"]
    with pytest.raises(SweepError, match=r"\$\{envvar:NOPE\}.*NOPE is not set"):
        build_command(["x", "${envvar:NOPE}"], None, config, environ={})


def test_an_agent_runs_a_command_with_args_json_file(root, tmp_path):
    """W&B's ``${args_json_file}``: the trial's program gets the path of a file holding its
    parameters as JSON. The agent's check of the command before any trial built it without a file
    and refused every sweep using the macro ("needs a file to write the parameters to")."""
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import json, sys, tracklet
        params = json.loads(open(sys.argv[1]).read())
        run = tracklet.init()
        run.log({"loss": params["a"] * 10 + len(params["b"])})
        run.finish()
    """))
    config = _grid(tmp_path, command=["${env}", "${interpreter}", "${program}", "${args_json_file}"])
    config["program"] = str(tmp_path / "t.py")
    sweep_id = create_sweep(root, config, project="p")
    report = Agent(LocalController(root, sweep_id), poll_interval=0.2, log=lambda line: None).run_commands()
    assert sorted((r.state, r.value) for r in report.results) == [
        ("complete", 11.0), ("complete", 11.0), ("complete", 21.0), ("complete", 21.0)], report


def test_a_trial_reaching_the_metrics_target_finishes_the_sweep(root):
    """W&B's ``metric.target``: once a run reaches it, no new run starts and the sweep is finished.
    It was accepted and ignored: the agent went on to the run cap."""
    config = {"method": "grid", "metric": {"name": "loss", "goal": "minimize", "target": 0.5},
              "parameters": {"a": {"values": [3, 2, 0.25, 1, 4]}}, "seed": 1}
    sweep_id = create_sweep(root, config, project="p")
    values = []

    def train():
        run = tracklet.init(settings=QUIET)
        values.append(run.config["a"])
        run.log({"loss": run.config["a"]})
        run.finish()

    report = Agent(LocalController(root, sweep_id), log=lambda line: None).run_function(train)
    assert 0.25 in values and values[-1] == 0.25 and len(values) < 5, values
    assert "reached the metric's target (loss = 0.25)" in report.stopped_because
    shown = LocalController(root, sweep_id).status()
    assert shown["state"] == "finished" and shown["counts"] == {"complete": len(values)}
    maximize = create_sweep(root, {**config, "metric": {"name": "loss", "goal": "maximize", "target": 3.5}},
                            project="p")
    values.clear()
    Agent(LocalController(root, maximize), log=lambda line: None).run_function(train)
    assert values[-1] == 4 and all(value < 3.5 for value in values[:-1])


def test_gpu_option_parsing():
    assert parse_gpus("0-3") == ["0", "1", "2", "3"] and parse_gpus("0,2,5-6") == ["0", "2", "5", "6"]
    assert gpu_slices(parse_gpus("0-3"), 2) == ["0,1", "2,3"] and gpu_slices(None, 1) == [None]
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus("a-b")


def test_import_tracklet_loads_no_optuna():
    result = run_script("""
        import sys, tracklet, tracklet.sweeps, tracklet.cli.main
        assert not [m for m in ("optuna", "scipy", "yaml") if m in sys.modules], sys.modules.keys()
    """)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the controller and init() in a trial


def _grid(tmp_path, **extra):
    config = {"method": "grid", "metric": {"name": "loss"}, "program": str(tmp_path / "train.py"),
              "parameters": {"a": {"values": [1, 2]}, "b": {"values": ["x", "y"]}, "k": {"value": 7}}, **extra}
    return config


def test_a_trial_records_its_run_with_the_sweep_config(root, monkeypatch):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    lease = controller.next_trial("me")
    monkeypatch.setenv("TRACKLET_SWEEP_ID", sweep_id)
    monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", str(lease.trial))
    with pytest.warns(tracklet.TrackletWarning, match="init\\(project='elsewhere'\\) is ignored"):
        run = tracklet.init(project="elsewhere", config={"a": 99, "lr": 0.1}, settings=QUIET)
    assert run.path == f"p/{sweep_id}-{lease.trial}" and f"sweep:{sweep_id}" in run.tags
    assert dict(run.config) == {"a": lease.config["a"], "lr": 0.1, "b": lease.config["b"], "k": 7}
    run.log({"loss": 3.0})
    run.log({"loss": 2.0})
    run.log({"loss": 2.5})
    run.finish()
    result = controller.finish(lease, 0)
    assert (result.state, result.value) == ("complete", 2.0)  # the best value, as W&B's metric_extremum
    # a restarted trial process resumes its run instead of starting another
    run = tracklet.init(settings=QUIET)
    assert run.resumed and run.path == f"p/{sweep_id}-{lease.trial}"
    run.finish()


def test_a_metric_never_logged_fails_the_trial_with_a_message(root, monkeypatch):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    lease = controller.next_trial("me")
    result = controller.finish(lease, 0)
    assert result.state == "failed" and "recorded no run" in result.message
    lease = controller.next_trial("me")
    monkeypatch.setenv("TRACKLET_SWEEP_ID", sweep_id)
    monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", str(lease.trial))
    run = tracklet.init(settings=QUIET)
    run.log({"acc": 1.0})
    run.finish()
    result = controller.finish(lease, 0)
    assert result.state == "failed" and "metric 'loss' was never logged" in result.message and "acc" in result.message
    rows = controller.status()["trials"]
    assert [r["state"] for r in rows] == ["failed", "failed"] and "never logged" in rows[1]["error"]


@pytest.mark.parametrize("method, extra", [("bayes", {}), ("random", {}), ("optuna", {"sampler": "nsga2"}),
                                           ("optuna", {"sampler": "tpe"})])
def test_a_multi_objective_sweep_keeps_the_pareto_front(root, method, extra):
    config = {"method": method, "seed": 1, "parameters": {"x": {"min": 0.0, "max": 1.0}}, **extra,
              "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "acc", "goal": "maximize"}]}
    controller = LocalController(root, create_sweep(root, config, project="mo"))
    # (loss, acc): 0, 1 and 3 trade off; 2 is dominated by 1 (higher loss, lower acc); 4 by 0
    told = [(0.1, 0.5), (0.3, 0.9), (0.4, 0.8), (0.05, 0.2), (0.2, 0.4)]
    for values in told:
        lease = controller.next_trial("me")
        result = controller.tell(lease, list(values))
        assert result.state == "complete" and result.values == values and result.value is None
    status = controller.status()
    assert status["metric"] is None and [m["name"] for m in status["metrics"]] == ["loss", "acc"]
    assert [row["trial"] for row in status["pareto"]] == [0, 1, 3]
    assert status["trials"][2]["values"] == [0.4, 0.8] and status["best"] is None
    result = controller.tell(controller.next_trial("me"), [0.1])  # one value for two objectives
    assert result.state == "failed" and "loss, acc" in result.message
    text = CliRunner().invoke(main, ["--dir", str(root), "sweep", "show", controller.sweep_id]).stdout
    assert "metrics: minimize loss, maximize acc" in text and "Pareto front (3 trials; loss, acc):" in text
    assert "0.05, 0.2" in text


def test_a_multi_objective_trial_is_told_each_metrics_final_value(root, monkeypatch):
    config = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}},
              "metrics": [{"name": "loss"}, {"name": "acc", "goal": "maximize"}]}
    controller = LocalController(root, create_sweep(root, config, project="mo"))
    lease = controller.next_trial("me")
    monkeypatch.setenv("TRACKLET_SWEEP_ID", controller.sweep_id)
    monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", str(lease.trial))
    run = tracklet.init(settings=QUIET)
    run.log({"loss": 1.0, "acc": 0.9})  # the best acc and the best loss are different moments
    run.log({"loss": 0.5, "acc": 0.7})
    run.finish()
    assert controller.finish(lease, 0).values == (0.5, 0.7)
    lease = controller.next_trial("me")
    monkeypatch.setenv("TRACKLET_SWEEP_TRIAL", str(lease.trial))
    run = tracklet.init(settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    result = controller.finish(lease, 0)
    assert result.state == "failed" and "metric 'acc' was never logged" in result.message


def test_warm_start_adds_the_projects_finished_runs_that_fit_before_the_first_suggestion(root, tmp_path):
    def record(config, logged, fail=False):
        run = tracklet.init(project="warm", config=config, settings=QUIET)
        for row in logged:
            run.log(row)
        run.finish(1 if fail else 0)
        return run.id

    fits = [record({"x": 0.25, "opt": {"kind": "adam"}, "epochs": 3}, [{"loss": 0.9}, {"loss": 0.4}]),
            record({"x": 0.75, "opt.kind": "sgd", "epochs": 3, "other": 1}, [{"loss": 0.6}])]
    record({"x": 1.5, "opt": {"kind": "adam"}, "epochs": 3}, [{"loss": 0.1}])  # outside [0, 1]
    record({"x": 0.5, "opt": {"kind": "rmsprop"}, "epochs": 3}, [{"loss": 0.1}])  # not one of the values
    record({"x": 0.5, "opt": {"kind": "adam"}, "epochs": 9}, [{"loss": 0.1}])  # another constant
    record({"x": 0.5, "opt": {"kind": "adam"}, "epochs": 3}, [{"acc": 0.1}])  # no loss logged
    record({"x": 0.5, "opt": {"kind": "adam"}, "epochs": 3}, [{"loss": 0.01}], fail=True)  # failed
    config = tmp_path / "sweep.yaml"
    config.write_text("method: optuna\nsampler: {type: tpe, n_startup_trials: 2}\nrun_cap: 1\n"
                      "metric: {name: loss}\nparameters:\n  x: {min: 0.0, max: 1.0}\n"
                      "  opt: {parameters: {kind: {values: [adam, sgd]}}}\n  epochs: {value: 3}\n")
    result = CliRunner().invoke(main, ["--dir", str(root), "sweep", "create", str(config), "--project", "warm",
                                       "--warm-start"])
    assert result.exit_code == 0, result.output
    assert "Warm start: 2 finished run(s) of project warm added as trials" in result.stderr
    controller = LocalController(root, result.stdout.strip().splitlines()[-1])
    status = controller.status()
    rows = status["trials"]
    assert sorted(((r["run"], r["value"], r["config"]) for r in rows), key=str) == sorted([
        (f"warm/{fits[0]}", 0.4, {"x": 0.25, "opt": {"kind": "adam"}, "epochs": 3}),
        (f"warm/{fits[1]}", 0.6, {"x": 0.75, "opt": {"kind": "sgd"}, "epochs": 3})], key=str)
    assert status["counts"] == {"warm_start": 2} and status["best"]["value"] == 0.4
    assert status["warm_start"]["skipped"] == {"config outside the space (epochs)": 1,
                                               "config outside the space (opt.kind)": 1,
                                               "config outside the space (x)": 1, "not finished (failed)": 1,
                                               "objective not logged": 1}
    lease = controller.next_trial("me")  # the run cap counts the sweep's own runs only
    assert lease.trial == 2
    controller.tell(lease, 0.5)
    assert isinstance(controller.next_trial("me"), Finished)
    with pytest.raises(SweepSpecError, match="warm_start: a grid sweep runs every point itself"):
        create_sweep(root, {**_grid(root), "warm_start": True})


def test_grid_hands_out_each_point_once_and_waits_for_running_ones(root):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    leases = [controller.next_trial(f"agent{i}") for i in range(4)]
    points = {(lease.config["a"], lease.config["b"]) for lease in leases}
    assert points == {(1, "x"), (1, "y"), (2, "x"), (2, "y")}
    assert isinstance(controller.next_trial("agent9"), Wait)  # all running: one may still lapse
    for lease in leases:
        controller.finish(lease, 1)
    assert isinstance(controller.next_trial("agent9"), Finished)


def test_a_lapsed_lease_fails_the_trial_and_requeues_its_grid_point(root):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    dead = controller.next_trial("dead", ttl=0.2)
    time.sleep(0.3)
    later = [controller.next_trial("alive") for _ in range(4)]
    assert sorted((lease.config["a"], lease.config["b"]) for lease in later) == [(1, "x"), (1, "y"), (2, "x"),
                                                                                 (2, "y")]
    assert not controller.heartbeat(dead)
    assert controller.finish(dead, 0).state == "lapsed"  # a late result of a lapsed trial is discarded
    rows = controller.status()["trials"]
    assert rows[0]["state"] == "lapsed" and "lease lapsed" in rows[0]["error"]


def test_run_cap_and_stop(root):
    sweep_id = create_sweep(root, {"method": "random", "run_cap": 3, "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    controller = LocalController(root, sweep_id)
    leases = [controller.next_trial("a") for _ in range(3)]
    assert isinstance(controller.next_trial("b"), Wait)
    for lease in leases:
        controller.finish(lease, 1)
    assert isinstance(controller.next_trial("b"), Finished)
    controller.extend(4)
    lease = controller.next_trial("b")
    controller.set_state("stopped")
    assert isinstance(controller.next_trial("b"), Finished)
    assert controller.finish(lease, 1).state == "failed"  # a running trial still reports after a stop


def test_the_journal_survives_a_torn_write_and_optuna_reads_it(root):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    controller.tell(controller.next_trial("a"), 1.0)
    journal = root / "sweeps" / sweep_id / "journal.log"
    with open(journal, "ab") as handle:  # a writer killed mid-line
        handle.write(b'{"op_code":5,"worker_id":"x","trial_id":0,"par')
    fresh = LocalController(root, sweep_id)  # another process: replays the file, skips the torn line
    lease = fresh.next_trial("b")
    fresh.tell(lease, 2.0)
    assert journal.read_bytes().endswith(b"\n")
    study = optuna.load_study(study_name=sweep_id, storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.value for t in study.trials] == [1.0, 2.0]
    assert [r["value"] for r in controller.status()["trials"]] == [1.0, 2.0]


def test_a_controller_failing_mid_operation_loses_no_grid_point(root, monkeypatch):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    journal = root / "sweeps" / sweep_id / "journal.log"
    before = journal.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("tracklet.sweeps.controller._write_json", broken)
    with pytest.raises(OSError):
        controller.next_trial("a")
    monkeypatch.undo()
    assert journal.read_bytes() != before  # the trial was asked and flushed before its files were written
    lease = controller.next_trial("a")  # its trial has no lease: reaped, its point handed out again
    rows = controller.status()["trials"]
    assert rows[0]["state"] == "lapsed" and rows[1]["state"] == "running"
    assert (lease.trial, lease.config) == (1, rows[0]["config"])


def test_a_seeded_grid_hands_out_distinct_points_to_agents_in_different_processes(root):
    """Each agent process keeps its own sampler; a seeded grid's GridSampler must order the grid
    the same in all of them (the sweep's seed, not a per-process one), or a trial's ``grid_id``
    names another point in another process: duplicates, and points never run."""
    config = _grid(root, seed=3)
    config["parameters"]["a"] = {"values": [1, 2, 3, 4]}
    sweep_id = create_sweep(root, config, project="p")
    agents = [LocalController(root, sweep_id) for _ in range(3)]  # as three processes: a sampler each
    points = []
    for n in range(8):
        controller = agents[n % 3]
        lease = controller.next_trial(f"agent-{n % 3}")
        points.append((lease.config["a"], lease.config["b"]))
        controller.tell(lease, 1.0)
    assert sorted(points) == sorted((a, b) for a in (1, 2, 3, 4) for b in ("x", "y"))
    assert isinstance(agents[0].next_trial("agent-0"), Finished)


def test_a_restarted_job_takes_its_running_trial_back(root):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    first = controller.next_trial("job-1")
    again = controller.next_trial("job-1-requeued", resume_trial=first.trial)
    assert again.resumed and (again.trial, again.run_id, again.config) == (first.trial, first.run_id, first.config)
    assert not controller.heartbeat(first)  # the old holder lost it
    assert controller.finish(again, 1).state == "failed"
    fresh = controller.next_trial("job-1-requeued", resume_trial=first.trial)  # finished: a new trial instead
    assert not fresh.resumed and fresh.trial != first.trial


def test_heartbeats_keep_a_long_trial_alive(root):
    sweep_id = create_sweep(root, {"method": "random", "metric": {"name": "f"},
                                   "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    controller = LocalController(root, sweep_id)
    seen = []

    def slow():
        run = tracklet.init(settings=QUIET)
        time.sleep(4.0)  # longer than the lease: only heartbeats keep it
        seen.append(LocalController(root, sweep_id).status()["counts"])  # another process would reap here
        run.log({"f": run.config["x"]})

    report = Agent(controller, count=1, ttl=1.5, log=lambda line: None).run_function(slow)
    assert seen == [{"running": 1}] and [r.state for r in report.results] == ["complete"]
    assert controller.status()["state"] == "running"  # random search has no end but the run cap


def test_status_says_finished_when_the_grid_is_done(root):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)
    while not isinstance(lease := controller.next_trial("a"), Finished):
        controller.tell(lease, 1.0)
    assert controller.status()["state"] == "finished"


def test_unknown_sweep_id(root):
    with pytest.raises(SweepNotFound, match="no sweep 'nosuch1' under"):
        LocalController(root, "nosuch1")
    result = CliRunner().invoke(main, ["--dir", str(root), "agent", "nosuch1"])
    assert result.exit_code == 2 and "no sweep 'nosuch1'" in result.output
    result = CliRunner().invoke(main, ["--dir", str(root), "sweep", "show", "nosuch1"])
    assert result.exit_code == 2 and "no sweep 'nosuch1'" in result.output


def test_an_agent_for_a_sweep_with_nothing_to_run(root):
    sweep_id = create_sweep(root, {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    result = CliRunner().invoke(main, ["--dir", str(root), "agent", sweep_id])
    assert result.exit_code == 2 and "the sweep has no program: to run" in result.output
    assert LocalController(root, sweep_id).status()["trials"] == []  # no trial was taken


def test_a_bad_lease_ttl_is_refused(root, monkeypatch):
    sweep_id = create_sweep(root, {"method": "random", "program": "train.py",
                                   "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    monkeypatch.setenv("TRACKLET_SWEEP_LEASE_TTL", "soon")
    result = CliRunner().invoke(main, ["--dir", str(root), "agent", sweep_id])
    assert result.exit_code == 2 and "TRACKLET_SWEEP_LEASE_TTL='soon'" in result.output
    result = CliRunner().invoke(main, ["--dir", str(root), "agent", sweep_id, "--lease-ttl", "0"])
    assert result.exit_code == 2 and "--lease-ttl" in result.output


def test_cli_create_prints_the_id_last_and_refuses_a_bad_config(root, tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKLET_PROJECT", raising=False)
    good = tmp_path / "sweep.yaml"
    text = (DATA / "grid.yaml").read_text()
    assert "project: sweeps-examples\n" in text
    good.write_text(text)
    (tmp_path / "unnamed.yaml").write_text(text.replace("project: sweeps-examples\n", ""))

    def create(path: Path, *options: str) -> str:
        result = CliRunner().invoke(main, ["--dir", str(root), "sweep", "create", str(path), *options])
        assert result.exit_code == 0, result.output
        return result.stdout.strip().splitlines()[-1]

    # the project: --project, else the config's project: key, else the default
    sweep_id = create(good, "--project", "mine")
    assert LocalController(root, sweep_id).project == "mine"
    assert LocalController(root, create(good)).project == "sweeps-examples"
    assert LocalController(root, create(tmp_path / "unnamed.yaml")).project == "default"
    listed = CliRunner().invoke(main, ["--dir", str(root), "sweep", "ls", "--json", "--project", "mine"])
    assert [s["id"] for s in json.loads(listed.stdout)] == [sweep_id]
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters:\n  lr: {min: 1.0, max: 0.5}\n")
    result = CliRunner().invoke(main, ["--dir", str(root), "sweep", "create", str(bad)])
    assert result.exit_code == 2 and "parameters.lr.min: must be < max" in result.output


def test_cli_controls_a_sweep(root):
    sweep_id = create_sweep(root, _grid(root), project="p")
    controller = LocalController(root, sweep_id)

    def cli(*args):
        result = CliRunner().invoke(main, ["--dir", str(root), "sweep", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    cli("pause", sweep_id)
    assert isinstance(controller.next_trial("a"), Wait)
    cli("resume", sweep_id)
    lease = controller.next_trial("a")
    controller.tell(lease, 0.25)
    cli("stop", sweep_id)
    assert isinstance(controller.next_trial("a"), Finished)
    cli("extend", f"p/{sweep_id}", "--run-cap", "2")
    shown = json.loads(cli("show", sweep_id, "--json"))
    assert (shown["state"], shown["run_cap"], shown["counts"]) == ("running", 2, {"complete": 1})
    assert shown["best"]["value"] == 0.25 and shown["best"]["run"] == f"p/{sweep_id}-0"
    text = cli("show", sweep_id)
    assert "best: trial 0" in text and "1 complete of 4 grid points, run cap 2" in text
    # the run cap reached: `sweep ls` says finished, as `sweep show` does (it said running: the
    # state.json that pause/resume/stop/extend write), with the trials' counts
    controller.tell(controller.next_trial("a"), 0.5)
    assert json.loads(cli("show", sweep_id, "--json"))["state"] == "finished"
    listed = json.loads(cli("ls", "--json"))
    assert [(s["id"], s["state"], s["counts"]) for s in listed] == [(sweep_id, "finished", {"complete": 2})]
    assert f"{sweep_id}  finished grid" in cli("ls") and "(2 complete)" in cli("ls")


# ---------------------------------------------------------------- real agent processes


TRAIN = """
import os, sys, time
import tracklet

run = tracklet.init(config={"a": 0, "b": "none"})
if os.environ.get("HANG_ALWAYS"):  # a directory: say this trial started, then hang until stopped
    open(os.path.join(os.environ["HANG_ALWAYS"], os.environ["TRACKLET_SWEEP_TRIAL"]), "w").close()
    time.sleep(120)
marker = os.environ.get("HANG_MARKER")
if marker and not os.path.exists(marker):  # the first trial to get here hangs until killed
    open(marker, "w").write(str(os.getpid()))
    time.sleep(120)
with open(os.environ["TRIAL_LOG"], "a") as log:
    log.write(f"{run.config['a']},{run.config['b']},{os.environ['TRACKLET_SWEEP_TRIAL']},"
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', '-').replace(',', '+')}\\n")
run.log({"loss": float(run.config["a"]) + (0.5 if run.config["b"] == "y" else 0.0)})
run.finish()
if os.environ.get("FAIL_ALWAYS"):
    sys.exit(3)
"""


def _agent(root, sweep_id, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "tracklet", "--dir", str(root), "agent", sweep_id, "--poll-interval",
                             "0.2", *args], env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete_points(controller):
    rows = controller.status()["trials"]
    return [(r["config"]["a"], r["config"]["b"]) for r in rows if r["state"] == "complete"], rows


@pytest.mark.slow  # real agent processes
def test_grid_is_complete_with_four_agents_started_at_once(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    config = _grid(tmp_path)
    config["parameters"]["a"] = {"values": [1, 2, 3, 4]}
    sweep_id = create_sweep(root, config, project="p")
    log = tmp_path / "trials.log"
    agents = [_agent(root, sweep_id, env={"TRIAL_LOG": str(log)}) for _ in range(4)]
    outputs = [agent.communicate(timeout=240) for agent in agents]
    assert all(agent.returncode == 0 for agent in agents), outputs
    points, rows = _complete_points(LocalController(root, sweep_id))
    expected = sorted((a, b) for a in (1, 2, 3, 4) for b in ("x", "y"))
    assert sorted(points) == expected and len(rows) == 8  # every point, none twice, nothing else
    ran = sorted(tuple(line.split(",")[:2]) for line in log.read_text().splitlines())
    assert ran == sorted((str(a), b) for a, b in expected)  # each program ran exactly once per point
    served_by = {r["agent"] for r in rows}
    assert len(served_by) >= 2  # the agents shared the work
    for row in rows:  # each run is recorded with its point's config, tagged with the sweep
        run = tracklet.Api(root).run(row["run"])
        assert (run.config["a"], run.config["b"], run.config["k"]) == (*[row["config"][k] for k in "ab"], 7)
        assert f"sweep:{sweep_id}" in run.tags and run.state == "finished"


@pytest.mark.slow  # 8 real agent processes
def test_eight_agents_started_in_the_same_second_get_eight_distinct_grid_points(root, tmp_path):
    """W&B users' complaint (two agents started together get the same config): 8 agent
    processes started at once, one trial each, on an 8-point grid: every point once."""
    (tmp_path / "train.py").write_text(TRAIN)
    config = _grid(tmp_path)
    config["parameters"]["a"] = {"values": [1, 2, 3, 4]}
    sweep_id = create_sweep(root, config, project="p")
    log = tmp_path / "trials.log"
    agents = [_agent(root, sweep_id, "--count", "1", env={"TRIAL_LOG": str(log)}) for _ in range(8)]  # at once
    outputs = [agent.communicate(timeout=300) for agent in agents]
    assert all(agent.returncode == 0 for agent in agents), outputs
    points, rows = _complete_points(LocalController(root, sweep_id))
    expected = sorted((a, b) for a in (1, 2, 3, 4) for b in ("x", "y"))
    assert sorted(points) == expected and len(rows) == 8  # 8 distinct configs, no point twice
    assert len({r["agent"] for r in rows}) == 8  # one per agent
    ran = sorted(tuple(line.split(",")[:2]) for line in log.read_text().splitlines())
    assert ran == sorted((str(a), b) for a, b in expected)  # each program ran exactly once per point


@pytest.mark.slow  # real agent processes
def test_gpus_are_pinned_per_worker(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    sweep_id = create_sweep(root, _grid(tmp_path), project="p")
    log = tmp_path / "trials.log"
    agent = _agent(root, sweep_id, "--gpus", "0-3", "--gpus-per-trial", "2",
                   env={"TRIAL_LOG": str(log), "CUDA_VISIBLE_DEVICES": "7"})
    _out, err = agent.communicate(timeout=240)
    assert agent.returncode == 0, err
    devices = [line.split(",")[3] for line in log.read_text().splitlines()]
    assert len(devices) == 4 and set(devices) == {"0+1", "2+3"}  # two workers, each with its own pair


@pytest.mark.slow  # real agent processes
def test_kill_9_of_an_agent_mid_trial_lapses_its_lease_and_the_point_is_retried(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    sweep_id = create_sweep(root, _grid(tmp_path), project="p")
    marker, log = tmp_path / "hung.pid", tmp_path / "trials.log"
    env = {"TRIAL_LOG": str(log), "HANG_MARKER": str(marker)}
    victim = _agent(root, sweep_id, "--lease-ttl", "1.5", env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and victim.poll() is None, victim.communicate()
        time.sleep(0.1)
    trial_pid = int(marker.read_text())
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = _agent(root, sweep_id, "--lease-ttl", "1.5", env=env)
    _out, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err
    with pytest.raises(ProcessLookupError):  # the hung trial died with its agent (no orphan still running)
        for _ in range(100):
            os.kill(trial_pid, 0)
            time.sleep(0.1)
    points, rows = _complete_points(LocalController(root, sweep_id))
    assert sorted(points) == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]  # complete, no duplicates
    lapsed = [r for r in rows if r["state"] == "lapsed"]
    assert len(lapsed) == 1 and "lease lapsed" in lapsed[0]["error"]
    assert (lapsed[0]["config"]["a"], lapsed[0]["config"]["b"]) in points  # its point was run again
    assert len(log.read_text().splitlines()) == 4


@pytest.mark.slow  # real agent processes
def test_a_requeued_slurm_job_resumes_the_trial_it_was_running(root, tmp_path):
    """SLURM requeues a preempted job with the environment it was submitted with: no
    TRACKLET_SWEEP_TRIAL, the same SLURM_JOB_ID. The job's agent, killed mid-trial and started
    again within the lease, takes its own trial back (the same trial and run) instead of leaving it
    to lapse and starting another."""
    (tmp_path / "train.py").write_text(TRAIN)
    sweep_id = create_sweep(root, _grid(tmp_path), project="p")
    marker, log = tmp_path / "hung.pid", tmp_path / "trials.log"
    env = {"TRIAL_LOG": str(log), "HANG_MARKER": str(marker), "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0"}
    preempted = _agent(root, sweep_id, env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and preempted.poll() is None, preempted.communicate()
        time.sleep(0.1)
    os.kill(preempted.pid, signal.SIGKILL)
    preempted.wait()
    [held] = [r for r in LocalController(root, sweep_id).status()["trials"] if r["state"] == "running"]
    assert held["agent"].startswith("slurm-4242.0-")
    other_job = _agent(root, sweep_id, "--count", "1", env={**env, "SLURM_JOB_ID": "5151"})
    _out, err = other_job.communicate(timeout=120)  # another job's agent leaves the held trial alone
    assert other_job.returncode == 0, err
    requeued = _agent(root, sweep_id, "--count", "1", env=env)
    _out, err = requeued.communicate(timeout=120)
    assert requeued.returncode == 0, err
    rows = {r["trial"]: r for r in LocalController(root, sweep_id).status()["trials"]}
    assert rows[held["trial"]]["state"] == "complete" and rows[held["trial"]]["run"] == held["run"]
    assert sorted(r["state"] for r in rows.values()) == ["complete", "complete"]  # nothing lapsed, no third trial


CONTROLLER_KILL = """
import json, os, signal, sys
import optuna  # imported once, before the forks
import tracklet
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.controller import LocalController
from tracklet.sweeps.journal import BatchedJournalFile

root, sweep_id = sys.argv[1], sys.argv[2]
SETTINGS = {"console": "off", "capture_environment": False, "system_metrics": False}
real_flush, armed, calls = BatchedJournalFile.flush, [None], {}


def train():
    run = tracklet.init(settings=SETTINGS)
    run.log({"loss": 10.0 * run.config["a"] + (1.0 if run.config["b"] == "y" else 0.0)})
    run.finish()


def flush(self):
    # The kill: half of the operation's journal lines written (a torn line), or all of them
    # written and fsynced but nothing after (the trial's file, its lease).
    if armed[0] == "torn" and self.pending:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\\n" for log in self._pending).encode()
        with open(self._path, "ab") as handle:
            handle.write(data[:len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    wrote = self.pending
    real_flush(self)
    if armed[0] == "written" and wrote:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(operation, nth, how):
    real = getattr(LocalController, operation)

    def wrapped(self, *args, **kwargs):
        calls[operation] = calls.get(operation, 0) + 1
        armed[0] = how if calls[operation] == nth else None
        try:
            return real(self, *args, **kwargs)
        finally:
            armed[0] = None

    setattr(LocalController, operation, wrapped)


BatchedJournalFile.flush = flush
for point in sys.argv[3:]:  # each in a child process killed at that point of the controller
    operation, nth, how = point.split(":")
    pid = os.fork()
    if pid == 0:
        arm(operation, int(nth), how)
        # a long lease: no kill point leaves one behind (the ask's comes after its journal write,
        # the tell drops it before its own), so nothing waits for it; a short one could lapse under load
        Agent(LocalController(root, sweep_id), ttl=60.0, log=lambda line: None).run_function(train)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(point, "killed" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL else status, flush=True)
BatchedJournalFile.flush = real_flush
report = Agent(LocalController(root, sweep_id), ttl=60.0, poll_interval=0.2, log=lambda line: None).run_function(train)
print("survivor", report.stopped_because, flush=True)
"""


@pytest.mark.slow  # agent processes (forked from one)
def test_kill_9_of_the_local_controller_mid_operation_loses_no_trial_and_runs_no_point_twice(root, tmp_path):
    """Local mode's controller runs inside each agent process, under the sweep's file lock: agent
    processes SIGKILLed inside the controller's operations (an ask's journal write cut halfway:
    some of its lines whole, the next torn; an ask journaled and fsynced but its trial file and
    lease never written; a tell's journal write cut halfway), one after another on the same sweep, then an agent that finishes it. Every grid point
    completes exactly once with its own value, every trial the journal holds ended (none left
    running), each interrupted one is marked lapsed, and Optuna's own reader reads the journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    config = _grid(tmp_path)
    config["parameters"]["a"] = {"values": [1, 2, 3]}
    sweep_id = create_sweep(root, config, project="p")
    points = ["next_trial:2:torn", "next_trial:2:written", "tell:1:torn"]
    script = tmp_path / "kill.py"
    script.write_text(CONTROLLER_KILL)
    done = subprocess.run([sys.executable, str(script), str(root), sweep_id, *points], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{point} killed" for point in points] + [
        "survivor every grid point is done"], done.stderr

    status = LocalController(root, sweep_id).status()
    rows = status["trials"]
    complete = [r for r in rows if r["state"] == "complete"]
    expected = sorted((a, b) for a in (1, 2, 3) for b in ("x", "y"))
    assert sorted((r["config"]["a"], r["config"]["b"]) for r in complete) == expected  # each point exactly once
    assert all(r["value"] == 10.0 * r["config"]["a"] + (r["config"]["b"] == "y") for r in complete)
    lapsed = [r for r in rows if r["state"] == "lapsed"]
    # The three interrupted trials (the half-journaled ask, the ask without its lease, the torn
    # tell) failed as lapsed and their points ran again above; no other trial.
    assert len(lapsed) == 3 and len(rows) == len(complete) + 3, rows
    assert status["state"] == "finished" and not status["leases"]
    journal = root / "sweeps" / sweep_id / "journal.log"
    assert journal.read_bytes().endswith(b"\n")
    study = optuna.load_study(study_name=sweep_id, storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state.name for t in study.trials] == [
        "COMPLETE" if r["state"] == "complete" else "FAIL" for r in rows]
    for row in complete:  # each completed trial's run is recorded, finished, with its value
        run = tracklet.Api(root).run(row["run"])
        assert run.state == "finished" and run.summary["loss"] == row["value"]


@pytest.mark.slow  # real agent processes
def test_ctrl_c_gives_running_trials_back(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    sweep_id = create_sweep(root, _grid(tmp_path), project="p")
    controller = LocalController(root, sweep_id)
    started = tmp_path / "started"
    started.mkdir()
    agent = _agent(root, sweep_id, "--gpus", "0,1", env={"TRIAL_LOG": str(tmp_path / "log"),
                                                         "HANG_ALWAYS": str(started)})
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 2:  # both trials' programs are running
        assert time.monotonic() < deadline and agent.poll() is None, agent.communicate()
        time.sleep(0.2)
    agent.send_signal(signal.SIGINT)
    agent.communicate(timeout=60)
    rows = controller.status()["trials"]
    assert [r["state"] for r in rows].count("lapsed") == 2
    assert all("the agent was interrupted" in r["error"] for r in rows if r["state"] == "lapsed")
    assert [r["state"] for r in rows].count("waiting") == 2  # both grid points queued again


@pytest.mark.slow  # real agent processes
def test_an_agent_stops_after_failures_in_a_row(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    config = {"method": "random", "metric": {"name": "loss"}, "program": str(tmp_path / "train.py"),
              "parameters": {"a": {"values": [1, 2]}, "b": {"value": "x"}}}
    sweep_id = create_sweep(root, config, project="p")
    agent = _agent(root, sweep_id, "--max-failures", "3", env={"TRIAL_LOG": str(tmp_path / "log"),
                                                               "FAIL_ALWAYS": "1"})
    _out, err = agent.communicate(timeout=120)
    assert agent.returncode == 2
    assert "3 trials failed in a row" in err and "the command exited with status 3" in err
    assert len(LocalController(root, sweep_id).status()["trials"]) == 3


@pytest.mark.slow  # real agent processes
def test_run_cap_holds_across_agents(root, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    config = {"method": "random", "run_cap": 5, "metric": {"name": "loss"}, "program": str(tmp_path / "train.py"),
              "parameters": {"a": {"min": 0, "max": 100}, "b": {"values": ["x", "y"]}}}
    sweep_id = create_sweep(root, config, project="p")
    agents = [_agent(root, sweep_id, env={"TRIAL_LOG": str(tmp_path / "log")}) for _ in range(2)]
    for agent in agents:
        agent.communicate(timeout=240)
    rows = LocalController(root, sweep_id).status()["trials"]
    assert len(rows) == 5 and all(r["state"] == "complete" for r in rows)


# ---------------------------------------------------------------- the search itself


def _branin(x1: float, x2: float) -> float:
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def _search(root, method: str, budget: int, **extra) -> list[float]:
    config = {"method": method, "seed": 11, "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}, **extra}
    sweep_id = create_sweep(root, config, project="search")

    def objective():
        run = tracklet.init(settings=QUIET)
        run.log({"f": _branin(run.config["x1"], run.config["x2"])})

    Agent(LocalController(root, sweep_id), count=budget, log=lambda line: None).run_function(objective)
    rows = LocalController(root, sweep_id).status()["trials"]
    assert len(rows) == budget and all(r["state"] == "complete" for r in rows)
    return [r["value"] for r in rows]


def test_bayes_over_more_than_20_parameters_searches_as_optunas_tpe(root):
    """Issue #17's mapping: ``bayes`` is GPSampler up to 20 searched parameters, TPE beyond
    (a GP over that many dimensions fits slowly and models little from a sweep's budget)."""
    import optuna

    parameters = {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(21)}
    controller = LocalController(root, create_sweep(root, {"method": "bayes", "seed": 2, "metric": {"name": "f"},
                                                           "parameters": parameters}, project="wide"))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=2, n_startup_trials=10, constant_liar=False))
    distributions = {name: optuna.distributions.FloatDistribution(0.0, 1.0) for name in parameters}
    for _ in range(12):  # 10 random start-up trials, then TPE's
        lease = controller.next_trial("solo")
        trial = study.ask(distributions)
        assert lease.config == trial.params
        value = sum((v - 0.3) ** 2 for v in trial.params.values())
        controller.tell(lease, value)
        study.tell(trial, value)


@pytest.mark.parametrize("engine, sampler", [({"method": "bayes"}, "GPSampler"), ({"method": "random"}, "RandomSampler"),
                                             ({"method": "optuna", "sampler": "tpe"}, "TPESampler")])
def test_one_agent_searches_exactly_as_optunas_sampler(root, engine, sampler):
    """The controller adds no search behaviour of its own: a seeded sweep with one agent suggests
    what Optuna's sampler with that seed suggests, through the journal, leases and decoding. (It
    once built a new sampler per ask: GPSampler lost the kernel fit it warm-starts from, and
    Hartmann-6 regret was 0.18 instead of Optuna's 0.0034.)"""
    import optuna

    budget, seed = 14, 5  # 10 random startup trials, then the model's
    parameters = {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}
    controller = LocalController(root, create_sweep(root, {**engine, "seed": seed, "metric": {"name": "f"},
                                                           "parameters": parameters}, project="same"))
    startup = {} if sampler == "RandomSampler" else {"n_startup_trials": 10}
    study = optuna.create_study(sampler=getattr(optuna.samplers, sampler)(seed=seed, **startup))
    distributions = {name: optuna.distributions.FloatDistribution(p["min"], p["max"])
                     for name, p in parameters.items()}
    for _ in range(budget):
        lease = controller.next_trial("solo")
        trial = study.ask(distributions)
        assert lease.config == trial.params
        value = _branin(trial.params["x1"], trial.params["x2"])
        controller.tell(lease, value)
        study.tell(trial, value)


@pytest.mark.slow  # two searches of 16 trials
@pytest.mark.parametrize("method, extra", [("bayes", {}), ("optuna", {"sampler": {"type": "tpe",
                                                                                  "n_startup_trials": 5}})])
def test_the_search_beats_a_random_baseline_with_the_same_budget(root, method, extra):
    budget = 16
    baseline = _search(root, "random", budget)
    found = _search(root, method, budget, **extra)
    assert min(found) <= statistics.median(baseline)
    assert min(found[budget // 2:]) <= statistics.median(found[:budget // 2])  # later trials improve on the first


EPOCHS = 27


def _curve(q: float, epoch: int) -> float:
    """A synthetic learning curve: config ``q`` ends at ``0.1 * (q + 1)``; lower q is better at
    every epoch, so the best config is never behind at any band."""
    return 0.1 * (q + 1) + 1.0 / (epoch + 1)


def _curve_sweep(root, **extra):
    config = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"}, "seed": 3,
              "parameters": {"q": {"values": list(range(8))}}, **extra}
    sweep_id = create_sweep(root, config, project="curves")
    # An epoch's work, during which the agent watches the run's log; without a pruner nothing
    # watches, so the baseline's epochs take no time.
    epoch_seconds = 0.03 if "early_terminate" in extra else 0.0

    def train():
        with tracklet.init(settings={**QUIET, "flush_interval": 0.02}) as run:  # a prune ends it as an exception
            for epoch in range(EPOCHS):
                run.log({"loss": _curve(run.config["q"], epoch)}, step=epoch)
                time.sleep(epoch_seconds)

    Agent(LocalController(root, sweep_id), log=lambda line: None, prune_interval=0.02).run_function(train)
    return LocalController(root, sweep_id).status()


@pytest.mark.slow  # 8 trials of up to ~1 s, 8 without waits
def test_hyperband_prunes_bad_runs_early_on_their_real_step(root):
    pruned = _curve_sweep(root, early_terminate={"type": "hyperband", "min_iter": 2, "eta": 3})
    plain = _curve_sweep(root)
    assert plain["counts"] == {"complete": 8}
    assert pruned["counts"].get("pruned", 0) >= 1 and sum(pruned["counts"].values()) == 8
    api = tracklet.Api(root)
    steps = {}
    for row in pruned["trials"]:
        run = api.run(row["run"])
        steps[row["config"]["q"]] = len(run.history(["loss"])["loss"])
        if row["state"] == "pruned":
            assert "pruned" in run.tags and steps[row["config"]["q"]] < EPOCHS  # stopped early
            assert row["last_step"] is not None and row["last_step"] < EPOCHS - 1  # reported at the real step
        else:
            assert row["state"] == "complete" and steps[row["config"]["q"]] == EPOCHS
    assert pruned["best"]["config"]["q"] == 0 and pruned["best"]["value"] == plain["best"]["value"]
    assert pruned["state"] == "finished"  # pruned grid points are done, not rerun
    assert sum(steps.values()) < 8 * EPOCHS


CURVE = """
import time
import tracklet

run = tracklet.init(config={"q": 0})
for epoch in range(20):
    run.log({"loss": 0.1 * (run.config["q"] + 1) + 1.0 / (epoch + 1)}, step=epoch)
    time.sleep(0.15)
run.finish()
"""


@pytest.mark.slow  # a real agent process running 4 trials of ~3 s
def test_a_pruned_command_trial_is_stopped_and_marked_pruned(root, tmp_path):
    (tmp_path / "curve.py").write_text(CURVE)
    config = {"method": "grid", "seed": 1, "metric": {"name": "loss"}, "program": str(tmp_path / "curve.py"),
              "parameters": {"q": {"values": [0, 3, 2, 1]}},  # seeded: the grid order is fixed
              "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}
    sweep_id = create_sweep(root, config, project="p")
    agent = _agent(root, sweep_id, env={"TRACKLET_FLUSH_INTERVAL": "0.05"})
    _out, err = agent.communicate(timeout=240)
    assert agent.returncode == 0, err
    status = LocalController(root, sweep_id).status()
    assert sum(status["counts"].values()) == 4 and status["best"]["config"]["q"] == 0
    for row in status["trials"]:
        if row["state"] == "pruned":  # stopped by SIGTERM before its last epoch; not counted as failed
            run = tracklet.Api(root).run(row["run"])
            assert row["last_step"] < 19 and len(run.history(["loss"])["loss"]) < 20
            # the run ended cleanly on the agent's SIGTERM: finished and tagged pruned, not crashed
            assert run.state == "finished" and "pruned" in run.tags
    assert status["counts"].get("pruned", 0) >= 1 and "failed" not in status["counts"], err


def test_pruning_reports_the_real_step_and_tells_the_trial_pruned(root):
    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 1.0}, "metric": {"name": "loss"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    controller = LocalController(root, create_sweep(root, config, project="p"))
    lease = controller.next_trial("me")
    assert controller.prunes
    assert controller.report(lease, [(10, 0.5), (20, 0.8)]) is None
    assert controller.report(lease, [(20, 0.8), (30, float("nan")), (40, 1.5)]) == 40  # above the threshold
    assert controller.report(lease, [(50, 0.5)]) == 40  # pruned before: the prune's step again
    assert controller.heartbeat(lease)  # the lease stays the agent's until the trial's process ends
    result = controller.finish(lease, -15, "the command was killed by signal 15")
    assert result.state == "pruned" and "pruned at step 40" in result.message
    row = controller.status()["trials"][0]
    assert (row["state"], row["last_step"]) == ("pruned", 40)
    shown = CliRunner().invoke(main, ["--dir", str(root), "sweep", "show", controller.sweep_id]).stdout
    assert "1 pruned" in shown and "(pruned at step 40)" in shown
    with pytest.raises(SweepSpecError, match="early_terminate: pruning needs metric"):
        parse({"method": "random", "early_terminate": {"type": "hyperband", "min_iter": 1},
               "parameters": {"x": {"min": 0.0, "max": 1.0}}})


def test_the_agent_names_the_step_a_trial_was_pruned_at_not_the_looks_last(root):
    """The agent's "pruned at step N ...; stopping it" line named the last step its look read, not
    the step the pruner stopped the trial at (``report`` said only whether it was pruned). Here
    one look reads four points and the threshold stops the trial at the second."""
    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 1.0}, "metric": {"name": "loss"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweep_id = create_sweep(root, config, project="p")
    lines: list[str] = []

    def train():
        with tracklet.init(settings={**QUIET, "flush_interval": 3600}) as run:
            for step, loss in enumerate([0.5, 2.0, 0.25, 0.125]):
                run.log({"loss": loss}, step=step)
            run.flush(10)  # the four points reach the log together: the agent's look reads them all
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the pruner's stop lands here
                time.sleep(0.01)

    report = Agent(LocalController(root, sweep_id), count=1, log=lines.append, prune_interval=0.02).run_function(train)
    assert [result.state for result in report.results] == ["pruned"]
    stopping = [line for line in lines if line.endswith("stopping it")]
    assert stopping == ["trial 0: pruned at step 1 (loss = 2); stopping it"], lines
    (row,) = LocalController(root, sweep_id).status()["trials"]
    assert row["last_step"] == 1


def test_a_rung_is_judged_by_the_value_at_its_step_however_many_points_a_look_read(root):
    """Successive halving judges a rung by the value at the last step reported. Reported in one
    batch, a trial read late in its curve looked better at every rung it passed in that look, so a
    trial better at every step was pruned when the agent's look came early for it and late for
    the other (the flaky pruned-command test). Each step is now asked about in turn."""
    config = {"method": "random", "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}},
              "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}
    controller = LocalController(root, create_sweep(root, config, project="p"))

    def curve(offset, steps):
        return [(step, offset + 1.0 / (step + 1)) for step in steps]

    first = controller.next_trial("me")
    assert controller.report(first, curve(0.2, range(11))) is None  # one look read steps 0..10
    assert controller.tell(first, 0.2 + 1.0 / 11).state == "complete"
    second = controller.next_trial("me")
    assert controller.report(second, curve(0.1, range(4))) is None  # better than the first at every step
    assert controller.report(second, curve(0.1, range(4, 11))) is None
    third = controller.next_trial("me")
    assert controller.report(third, curve(0.5, range(11))) == 1  # worse at every step: pruned at step 1
    assert controller.finish(third, -15).state == "pruned"
    rows = {row["trial"]: row for row in controller.status()["trials"]}
    assert rows[third.trial]["last_step"] == 1  # stopped at the first rung, not at the look's last step
    study = controller._study()
    rung = study.trials[first.trial].system_attrs["completed_rung_0"]
    assert rung == 0.2 + 1.0 / 2  # the first trial's rung-0 value is its value at step 1


def test_a_prune_that_comes_after_the_trials_run_ended_leaves_the_trial_complete(root, tmp_path, monkeypatch):
    """The pruner's stop reaching a trial whose run already finished must not interrupt its
    ending nor call a full run pruned: the trial is told as it ended (complete), its run finished
    and not tagged. The program below gets its stop only after its run finished (its one point
    reaches the log at finish()), and waits until its SIGTERM handler has dealt with it."""
    program = tmp_path / "late.py"
    program.write_text(textwrap.dedent("""
        import os
        import sys
        import time
        from pathlib import Path

        import tracklet

        run = tracklet.init()
        run.log({"loss": 1.0}, step=0)
        run.finish()  # the point reaches the log only now (the flush interval is an hour)
        said = Path(os.environ["TRACKLET_DIR"], "sweeps", os.environ["TRACKLET_SWEEP_ID"], "trials",
                    os.environ["TRACKLET_SWEEP_TRIAL"] + ".sigterm")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the agent's stop came and was found too late
            if said.exists() and said.read_text() == "late":
                sys.exit(0)
            time.sleep(0.01)
        sys.exit(3)
    """))
    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 0.5}, "metric": {"name": "loss"},
              "program": str(program), "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweep_id = create_sweep(root, config, project="p")
    for key, value in {"PYTHONPATH": str(REPO), "TRACKLET_FLUSH_INTERVAL": "3600", **QUIET_ENV}.items():
        monkeypatch.setenv(key, value)
    report = Agent(LocalController(root, sweep_id), count=1, log=lambda line: None,
                   prune_interval=0.02).run_commands()
    _complete_after_a_late_prune(root, sweep_id, report)


def _complete_after_a_late_prune(root, sweep_id: str, report) -> None:
    """The one trial of ``report`` completed (its value 1.0), though the pruner saw its point, and its run
    finished untagged."""
    (result,) = report.results
    assert (result.state, result.value) == ("complete", 1.0), result.message
    (row,) = LocalController(root, sweep_id).status()["trials"]
    assert row["state"] == "complete" and row["last_step"] == 0  # the pruner did see the point
    run = tracklet.Api(root).run(row["run"])
    assert run.state == "finished" and "pruned" not in run.tags


def test_a_prune_that_comes_after_a_function_trials_run_ended_leaves_the_trial_complete(root):
    """The function-trial twin of the test above: a ``wandb.agent``/``run_function`` trial whose
    run has finished (``finish()``, ``with wandb.init():`` left) while the function goes on (an
    evaluation, a checkpoint upload) must not get ``TrialPruned`` raised into it, nor be told
    pruned with a full run. It was: the stop landed wherever the function was, and one landing
    inside ``finish()`` left the run ``crashed``. The function below waits until the agent's
    stop has been decided (the real ``_stop_trial``, watched)."""
    import threading

    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 0.5}, "metric": {"name": "loss"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweep_id = create_sweep(root, config, project="p")
    agent = Agent(LocalController(root, sweep_id), count=1, log=lambda line: None, prune_interval=0.02)
    decided = threading.Event()
    stop_trial = agent._stop_trial

    def watched_stop(lease, worker):
        try:
            stop_trial(lease, worker)
        finally:
            decided.set()

    agent._stop_trial = watched_stop

    def train():
        run = tracklet.init(settings={**QUIET, "flush_interval": 3600})
        run.log({"loss": 1.0}, step=0)
        run.finish()  # the point reaches the log only now: the pruner sees it once the run has ended
        assert decided.wait(120)
        for _ in range(1000):  # a pending TrialPruned lands at the loop's first jump back
            pass

    report = agent.run_function(train)
    _complete_after_a_late_prune(root, sweep_id, report)


@pytest.mark.parametrize("layer", ["tracklet", "wandb"])
def test_a_pruned_function_trial_in_a_with_block_ends_its_run_finished_and_tagged(root, layer):
    """A pruned command trial's run is ``finished`` and tagged ``pruned`` (docs/sweeps.md); a
    function trial whose run is a ``with`` block (``with wandb.init():``, W&B's documented form)
    was ``failed`` (exit code 1): the block's exit took the agent's ``TrialPruned`` for a crash."""
    from tracklet.compat import wandb

    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 0.5}, "metric": {"name": "loss"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweep_id = create_sweep(root, config, project="p")

    def train():
        started = tracklet.init(settings=QUIET) if layer == "tracklet" else wandb.init()
        with started as run:
            run.log({"loss": 1.0}, step=0) if layer == "tracklet" else run.log({"loss": 1.0})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the pruner's stop lands here
                time.sleep(0.01)

    report = Agent(LocalController(root, sweep_id), count=1, log=lambda line: None,
                   prune_interval=0.02).run_function(train)
    (result,) = report.results
    assert result.state == "pruned", result.message
    (row,) = LocalController(root, sweep_id).status()["trials"]
    run = tracklet.Api(root).run(row["run"])
    assert run.state == "finished" and "pruned" in run.tags


def _pruned_function_trial(root, agent, report, seen):
    (result,) = report.results
    assert result.state == "pruned", (result.message, seen)
    (row,) = LocalController(root, agent.controller.sweep_id).status()["trials"]
    run = tracklet.Api(root).run(row["run"])
    assert run.state == "finished" and "pruned" in run.tags
    return run


def _threshold_agent(root):
    config = {"method": "optuna", "pruner": {"type": "threshold", "upper": 0.5}, "metric": {"name": "loss"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    return Agent(LocalController(root, create_sweep(root, config, project="p")), count=1, log=lambda line: None,
                 prune_interval=0.02)


def _stop_while_inside(agent):
    """The event a trial sets inside tracklet's code: the agent's stop (the real ``_stop_trial``)
    waits for it, so the prune is made while the trial is there, for sure."""
    import threading

    inside = threading.Event()
    stop_trial = agent._stop_trial

    def stop_when_inside(lease, worker):
        assert inside.wait(60)
        stop_trial(lease, worker)

    agent._stop_trial = stop_when_inside
    return inside


def _wait_for_the_prune(agent, wandb, inside) -> None:
    """In a trial's thread, inside tracklet's code: let the agent stop the trial, and wait until
    it has made its stop (it tags the run, then stops it, under ``_prune_lock``)."""
    inside.set()
    deadline = time.monotonic() + 60
    while "pruned" not in wandb.run.tags and time.monotonic() < deadline:
        time.sleep(0.005)
    with agent._prune_lock:
        pass


def test_a_prune_reaching_a_function_trial_inside_wandb_log_stops_it(root, monkeypatch):
    """The agent stopped a function trial by raising ``TrialPruned`` in its thread at whatever
    bytecode it ran next; in a loop calling ``wandb.log()`` that is often inside ``log()``, whose
    guard (the tracker never stops training) caught it: a warning, and the trial trained on to its
    end, told complete. Here the agent's stop waits until the trial's thread is inside
    ``wandb.log()``'s guard (the 51st row's reading there), which waits until the stop was made, so
    the old stop landed inside the guard for sure; now that ``log()`` call raises it."""
    import traceback
    from collections.abc import Mapping

    from tracklet.compat import wandb
    from tracklet.errors import TrialPruned

    monkeypatch.setenv("TRACKLET_FLUSH_INTERVAL", "0.02")
    agent = _threshold_agent(root)
    inside = _stop_while_inside(agent)
    seen: dict[str, Any] = {}

    class Row(Mapping):
        def __init__(self, step: int) -> None:
            self._data = {"loss": 1.0, "n": step}
            self._read = False

        def __getitem__(self, key: str) -> float:
            return self._data[key]

        def __len__(self) -> int:
            return len(self._data)

        def __iter__(self):
            first, self._read = not self._read, True  # the first read is wandb.log()'s own, in its guard
            if first and "hook" not in seen and self._data["n"] == 50:
                seen["hook"] = 50
                _wait_for_the_prune(agent, wandb, inside)
                for _ in range(1000):  # the old stop, raised into the thread, lands here
                    pass
            return iter(self._data)

    def train():
        with wandb.init():
            step = 0
            deadline = time.monotonic() + 60
            try:
                while ("hook" not in seen or step < seen["hook"] + 2000) and time.monotonic() < deadline:
                    wandb.log(Row(step))  # a tight loop: most of its time is in log()
                    step += 1
            except TrialPruned as error:
                seen["raised by"] = traceback.extract_tb(error.__traceback__)[-1].filename
                raise
            seen["end"] = step

    report = agent.run_function(train)
    assert "hook" in seen and "end" not in seen  # stopped by the prune, not run to its end
    # raised by the run's log(), at its entry (not landing in the hook, inside the guard)
    assert Path(seen["raised by"]).parts[-2:] == ("sweeps", "agent.py")
    run = _pruned_function_trial(root, agent, report, seen)
    assert len(run.history(["n"])["n"]) == 50  # the call that met the prune recorded nothing


def test_a_prune_is_not_raised_into_a_function_trial_while_it_is_inside_tracklet(root, monkeypatch):
    """A trial that doesn't log gets ``TrialPruned`` raised into its thread, but only once the
    thread is out of tracklet's code: one landing inside it was caught by its guards (the prune
    lost) or cut its work half-way. Here the agent's stop waits until the trial is inside
    ``wandb.alert()``'s guard (its title's hash, which waits for the stop); it lands after the call
    returned."""
    from tracklet.compat import wandb

    monkeypatch.setenv("TRACKLET_FLUSH_INTERVAL", "0.02")
    agent = _threshold_agent(root)
    inside = _stop_while_inside(agent)
    seen: list[str] = []

    class Title(str):
        def __hash__(self) -> int:
            if not seen:
                seen.append("hook")
                _wait_for_the_prune(agent, wandb, inside)
                for _ in range(1000):  # the old stop, raised into the thread, lands here
                    pass
                seen.append("hook done")
            return str.__hash__(self)

    def train():
        with wandb.init():
            wandb.log({"loss": 1.0})
            wandb.alert(Title("a title"), "some text")  # in it, the pruner sees the point and stops the trial
            seen.append("alerted")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until the prune lands here
                for _ in range(1000):
                    pass
            seen.append("end")

    report = agent.run_function(train)
    assert seen == ["hook", "hook done", "alerted"]
    _pruned_function_trial(root, agent, report, seen)


def test_where_a_prune_may_be_raised_into_a_function_trial(root):
    """The agent's raise into a trial's thread waits while tracklet's code runs on it
    (``_outside_tracklet``), except inside tracklet's frames that run the training and pass its
    exceptions through: autolog's patched Keras ``Model.fit`` (training inside it would never be
    reached otherwise, only after ``KILL_DELAY``). Looked at from another thread, as the agent does."""
    import threading
    import types

    from tracklet.integrations import autolog
    from tracklet.sweeps import agent as agent_module

    sweep_id = create_sweep(root, {"method": "grid", "parameters": {"x": {"values": [1]}}}, project="p")
    seen: dict[str, bool] = {}

    def look(name: str) -> None:
        trial = threading.get_ident()
        looker = threading.Thread(target=lambda: seen.__setitem__(name, agent_module._outside_tracklet(trial)))
        looker.start()
        looker.join()

    class Model:
        def fit(self, *args, **kwargs):
            look("inside fit")

    class Attached:
        _tracklet_integration = True

    class Row(dict):
        def values(self):
            look("inside log")
            return super().values()

    def train():
        from tracklet.compat import wandb

        with wandb.init():
            look("training")
            Model().fit(callbacks=[Attached()])  # one of tracklet's already: the wrapper imports no keras
            wandb.log(Row(loss=1.0))

    autolog._patch_keras(types.SimpleNamespace(Model=Model))  # as autolog patches keras's Model
    try:
        assert Model.fit.__tracklet_original__ is not None
        Agent(LocalController(root, sweep_id), count=1, log=lambda line: None).run_function(train)
    finally:
        autolog._patches[:] = [patch for patch in autolog._patches if patch[0] is not Model]
    assert seen == {"training": True, "inside fit": True, "inside log": False}


def test_a_trial_pruned_landing_inside_finish_leaves_the_run_finished(root):
    """The agent raises ``TrialPruned`` into a function trial's thread at any bytecode; one
    landing inside ``finish()`` once the run is ending (between the check that the run is live and
    the raise landing) is too late and must not cut the ending short: it left the exit unwritten
    and the run ``crashed``. Here it is raised, as the agent raises it, while ``finish()`` shuts
    the sender down."""
    import threading

    from tracklet.sweeps.agent import TrialPruned, _raise_in_thread

    run = tracklet.init(project="late", settings=QUIET)
    run.log({"loss": 1.0})
    shut_down = run._shut_down_sender
    raised = []

    def pruned_meanwhile(left):
        if not raised:  # once, as the agent raises it once
            raised.append(True)
            _raise_in_thread(threading.get_ident(), TrialPruned)
            for _ in range(1000):  # it lands at the loop's first jump back
                pass
        return shut_down(left)

    run._shut_down_sender = pruned_meanwhile
    run.finish()
    recorded = tracklet.Api(root).run(f"late/{run.id}")
    assert recorded.state == "finished" and recorded.summary["loss"] == 1.0


def test_the_metric_tail_reads_only_new_points_with_their_steps(root):
    from tracklet.sweeps.tail import MetricTail

    run = tracklet.init(project="t", settings=QUIET)
    tail = MetricTail(root / "projects" / "t" / "runs" / run.id / "run.tlog", "loss")
    run.log({"loss": 1.0}, step=5)
    run.log({"acc": 0.5}, step=6)
    run.log({"loss": float("inf")}, step=7)
    run.flush(10)
    assert tail.new_points() == [(5, 1.0)]
    run.log({"loss": 0.5}, step=9)
    run.finish()
    assert tail.new_points() == [(9, 0.5)] and tail.new_points() == []


# ---------------------------------------------------------------- W&B's API


def test_a_wandb_trials_run_knows_its_sweep_id(root):
    """W&B's ``run.sweep_id`` is the sweep a trial's run belongs to (scripts name checkpoint
    folders and groups by it); it was always None. A run outside a sweep still has none."""
    from tracklet.compat import wandb

    sweep_id = create_sweep(root, {"method": "grid", "parameters": {"lr": {"values": [0.1]}}}, project="sid")
    seen = []

    def train():
        with wandb.init() as run:
            seen.append((run.sweep_id, wandb.run.sweep_id))

    wandb.agent(sweep_id, function=train, count=1)
    assert seen == [(sweep_id, sweep_id)]
    with wandb.init(project="sid", settings=wandb.Settings(mode="offline")) as run:
        assert run.sweep_id is None


@pytest.mark.slow  # real agent processes
def test_wandb_sweep_and_agent_script(root, tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent("""
        import wandb
        sweep_config = {
            "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
            "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "layers": {"value": 2}},
        }
        sweep_id = wandb.sweep(sweep_config, project="wb-sweep")

        def train():
            with wandb.init(config={"lr": 1.0, "epochs": 2}) as run:
                for epoch in range(wandb.config.epochs):
                    wandb.log({"val_loss": wandb.config.lr * (2 - epoch), "epoch": epoch})

        wandb.agent(sweep_id, function=train, count=5)
        print("SWEEP", sweep_id)
    """))
    result = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, str(script)], check=False,
                            env={**os.environ, "TRACKLET_DIR": str(root), "PYTHONPATH": str(REPO), **QUIET_ENV},
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    sweep_id = result.stdout.split("SWEEP ")[-1].strip()
    status = LocalController(root, sweep_id).status()
    assert status["project"] == "wb-sweep" and status["counts"] == {"complete": 3}  # the grid ends the agent
    values = sorted((r["config"]["lr"], r["value"]) for r in status["trials"])
    assert values == [(0.001, 0.001), (0.01, 0.01), (0.1, 0.1)]
    for row in status["trials"]:
        run = tracklet.Api(root).run(row["run"])
        assert run.config["epochs"] == 2 and run.config["lr"] == row["config"]["lr"] and run.config["layers"] == 2


def test_wandb_errors_for_bad_input(root):
    from tracklet.compat import wandb

    with pytest.raises(wandb.errors.UsageError, match="parameters.lr.min: must be < max"):
        wandb.sweep({"method": "grid", "parameters": {"lr": {"min": 1.0, "max": 0.1}}})
    with pytest.raises(wandb.errors.UsageError, match="no sweep 'nosuch1'"):
        wandb.agent("nosuch1", function=lambda: None)
    sweep_id = wandb.sweep({"method": "random", "metric": {"name": "loss"},
                            "parameters": {"x": {"min": 0.0, "max": 1.0}}}, project="bad")

    def broken():
        wandb.init(settings={"console": "off", "x_disable_stats": True, "disable_git": True})
        raise RuntimeError("boom")

    with pytest.raises(wandb.Error, match="5 trials failed in a row.*RuntimeError: boom"):
        wandb.agent(sweep_id, function=broken, count=20)
    rows = LocalController(root, sweep_id).status()["trials"]
    assert len(rows) == 5 and all(r["state"] == "failed" for r in rows)
    assert all(tracklet.Api(root).run(r["run"]).state == "failed" for r in rows)


def _can_unshare_network() -> bool:
    import shutil

    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow  # a real agent process
@pytest.mark.skipif(not _can_unshare_network(), reason="needs unshare -n (a network namespace of its own)")
def test_a_local_sweep_completes_with_networking_disabled(root, tmp_path):
    """Local mode needs no network at all: the agent and every trial run in a network namespace
    with no interface up (not even loopback), and the whole grid completes."""
    (tmp_path / "train.py").write_text(TRAIN + textwrap.dedent("""
        import socket
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError as error:
            open(os.environ["TRIAL_LOG"] + ".net", "a").write(type(error).__name__ + "\\n")
        """))
    sweep_id = create_sweep(root, _grid(tmp_path), project="p")
    log = tmp_path / "trials.log"
    agent = subprocess.run(["unshare", "-n", sys.executable, "-m", "tracklet", "--dir", str(root), "agent", sweep_id],
                           env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, "TRIAL_LOG": str(log)},
                           capture_output=True, text=True, timeout=240)
    assert agent.returncode == 0, agent.stderr
    points, rows = _complete_points(LocalController(root, sweep_id))
    assert sorted(points) == sorted((a, b) for a in (1, 2) for b in ("x", "y")) and len(rows) == 4
    assert len((tmp_path / "trials.log.net").read_text().splitlines()) == 4  # no trial could reach any address
