"""``tracklet reproduce RUN --set lr=0.01`` of an argparse program recorded as ``train.py --lr 0.5``:
the new run's config says 0.01 while the program reads ``--lr 0.5`` from its command line. The
plan warns, naming the argument (dry run and real run); ``--rewrite-args`` passes the new value
on the command line instead, where that is unambiguous."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_reproduce import cli, git

import tracklet
from tracklet.reproduce.plan import Plan, plan_overridden_arguments

from conftest import REPO

ARGPARSE = '''\
import argparse
import tracklet

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=8)
args = parser.parse_args()
run = tracklet.init(project="repro", config=vars(args))
for epoch in range(args.epochs):
    run.log({"loss": 1.0 / (epoch + 1)})
run.summary["lr_used"] = args.lr
run.summary["epochs_used"] = args.epochs
run.finish()
'''


def _recorded(root, tmp_path, program: str, *arguments: str) -> tracklet.Run:
    """The run of ``program`` (committed as ``train.py`` in a new git repo) run with ``arguments``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(program)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "train")
    done = subprocess.run([sys.executable, "train.py", *arguments], cwd=repo, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                            "TRACKLET_DIR": str(root), "TRACKLET_CAPTURE_WAIT": "60"})
    assert done.returncode == 0, done.stderr
    (run,) = tracklet.Api(root).runs("repro")
    return run


@pytest.fixture
def original(root, tmp_path) -> tracklet.Run:
    return _recorded(root, tmp_path, ARGPARSE, "--lr", "0.5", "--epochs=2", "--batch-size", "16")


def test_the_plan_warns_when_a_set_key_is_also_a_recorded_argument(root, tmp_path, original):
    dry = cli(root, "reproduce", original.path, "--dry-run", "--set", "lr=0.01", "--set", "epochs=3", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "warnings:" in dry.stdout
    assert "--set lr=0.01 sets the new run's config, but the recorded command line also passes --lr 0.5" in dry.stdout
    assert "--epochs=2" in dry.stdout and "pass --rewrite-args" in dry.stdout
    assert "train.py --lr 0.5 --epochs=2 --batch-size 16" in dry.stdout  # the command is left as recorded
    # the real run says it too, and the program indeed trains with the recorded value
    done = cli(root, "reproduce", original.path, "--dir", str(tmp_path / "a"), "--set", "lr=0.01", "--json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert any("--lr 0.5" in text for text in plan["argument_warnings"]) and plan["rewritten"] == []
    copy = tracklet.Api(root).run(json.loads(done.stdout)["run"])
    assert copy.config["lr"] == 0.01 and copy.summary["lr_used"] == 0.5


def test_rewrite_args_passes_the_new_values_on_the_command_line(root, tmp_path, original):
    done = cli(root, "reproduce", original.path, "--dir", str(tmp_path / "b"), "--rewrite-args",
               "--set", "lr=0.01", "--set", "epochs=3", "--set", "batch_size=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "argument    --lr 0.5 -> --lr 0.01 (--set lr)" in done.stderr
    assert "argument    --epochs 2 -> --epochs 3 (--set epochs)" in done.stderr
    assert "train.py --lr 0.01 --epochs=3 --batch-size 4" in done.stderr and "warnings:" not in done.stderr
    new_path = done.stdout.strip().split(" as ")[1].split(" ")[0]
    copy = tracklet.Api(root).run(new_path)
    assert (copy.summary["lr_used"], copy.summary["epochs_used"]) == (0.01, 3)
    assert (copy.config["lr"], copy.config["epochs"], copy.config["batch_size"]) == (0.01, 3, 4)
    assert len(copy.history(["loss"])["loss"]) == 3


@pytest.mark.parametrize("arguments, value, why", [
    (["--lr", "0.5", "--lr=0.1"], 0.01, "it appears more than once"),
    (["--x", "--lr"], 0.01, "it has no value on the command line"),
    (["--lr", "0.5"], [0.1, 0.2], "has no one command-line spelling"),
    (["--lr", "0.5"], True, "has no one command-line spelling"),
])
def test_an_ambiguous_argument_is_warned_about_and_left_as_it_is(arguments, value, why):
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."), arguments=list(arguments),
                overrides={"lr": value})
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.arguments == arguments and plan.rewritten == []
    (warning,) = plan.argument_warnings
    assert why in warning and "edit the command by hand" in warning


def test_an_argument_of_another_name_is_left_alone():
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."),
                arguments=["--lr-schedule", "cos", "--lrx=1"], overrides={"lr": 0.01})
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.argument_warnings == [] and plan.rewritten == []


@pytest.mark.parametrize("arguments", [["--name", "base", "--lr", "0.5"], ["--name=base", "--lr=0.5"]])
@pytest.mark.parametrize("overrides", [{"name": "-ablation"}, {"name": "--x"}, {"lr": -0.25}, {"lr": -1e-05}])
def test_a_value_that_looks_like_an_option_is_rewritten_so_argparse_reads_it_back(arguments, overrides):
    """`--name -ablation` makes argparse stop with "expected one argument" (a value starting with
    `-` reads as an option); `--name=-ablation` is that value whatever it looks like."""
    import argparse

    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--name")
    parser.add_argument("--lr", type=float)
    parser.add_argument("-x", action="store_true")  # a short option: negative numbers no longer read as values
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."), arguments=list(arguments),
                overrides=dict(overrides))
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.argument_warnings == [] and len(plan.rewritten) == 1
    (key, value), = overrides.items()
    assert getattr(parser.parse_args(plan.arguments), key) == value


@pytest.mark.parametrize("arguments, config, value", [
    (["--verbose", "data.csv"], {"verbose": True}, 0),  # a store_true flag, then a positional
    (["--shuffle", "train.txt", "--lr", "0.5"], {"shuffle": True, "lr": 0.5}, "no"),
    (["--epochs", "10"], {"epochs": 3}, 5),  # what follows isn't the value the run recorded: not its value
])
def test_what_follows_a_flag_is_its_value_only_if_the_run_recorded_it_so(arguments, config, value):
    # `--verbose data.csv` with `--set verbose=0` replaced the positional data.csv by 0: the command
    # lost its input file. What follows a flag is taken as its value only when it reads back as
    # the value the run's config recorded for the key.
    key = arguments[0][2:]
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."), arguments=list(arguments),
                config=dict(config), overrides={key: value})
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.arguments == arguments and plan.rewritten == []
    (warning,) = plan.argument_warnings
    assert "edit the command by hand" in warning and "not the value the run recorded" in warning


def test_a_recorded_value_read_back_alike_is_rewritten():
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."),
                arguments=["--lr", "5e-1", "--name=base", "--steps", "0x10"], config={"lr": 0.5, "name": "base"},
                overrides={"lr": 0.01, "name": "new", "steps": 3})
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.arguments == ["--lr", "0.01", "--name=new", "--steps", "3"] and plan.argument_warnings == []


def test_arguments_shown_in_the_plan_are_quoted_as_a_shell_reads_them():
    # "--name hé llo -> --name new run" reads as four words: pasted into a shell, it isn't the command run.
    plan = Plan(run="p/r", root=Path("."), env="current", directory=Path("."),
                arguments=["--name", "hé llo", "--tag=a b", "--tag", "c"], config={"name": "hé llo"},
                overrides={"name": "new run", "tag": "d"})
    plan_overridden_arguments(plan, rewrite=True)
    assert plan.rewritten == ["--name 'hé llo' -> --name 'new run' (--set name)"]
    (warning,) = plan.argument_warnings
    assert "also passes '--tag=a b', --tag c:" in warning, warning


NESTED = '''\
import argparse
import tracklet

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="")
args = parser.parse_args()
run = tracklet.init(project="repro", config={"lr": 0.1, "model": {"depth": 2, "width": 8}, "name": args.name})
run.summary["depth_used"] = run.config["model"]["depth"]
run.finish()
'''


def test_the_plan_shows_the_config_the_run_gets_and_the_command_quoted_as_a_shell_needs(root, tmp_path):
    """``--set model.depth=4`` is shown applied into the nested ``model`` (marked as set), not
    beside the recorded ``model={'depth': 2}``; an argument with a space is quoted in the printed
    command, in the plan and in the real run's ``run:`` line alike, so it can be pasted."""
    original = _recorded(root, tmp_path, NESTED, "--name", "hé llo")
    dry = cli(root, "reproduce", original.path, "--dry-run", "--set", "model.depth=4", "--set", "lr=0.5",
              cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    (config_line,) = [line for line in dry.stdout.splitlines() if line.startswith("  config ")]
    assert config_line.split(None, 1)[1] == ("lr=0.5 (--set), model={'depth': 4, 'width': 8} (--set model.depth), "
                                             "name='hé llo'")
    assert "python train.py --name 'hé llo'  (in .)" in dry.stdout
    real = cli(root, "reproduce", original.path, "--dir", str(tmp_path / "a"), "--set", "model.depth=4",
               cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    # (a step lasting a second also prints "tracklet: run: done in N s")
    (run_line,) = [line for line in real.stderr.splitlines() if line.startswith("tracklet: run: ") and " (in " in line]
    assert run_line.split(" (in ")[0].endswith("train.py --name 'hé llo'")
    copy = tracklet.Api(root).run(real.stdout.strip().split(" as ")[1].split(" ")[0])
    assert copy.config["model"] == {"depth": 4, "width": 8} and copy.summary["depth_used"] == 4
