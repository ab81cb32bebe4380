"""``method: bayes`` searches exactly as Optuna's ``GPSampler`` with the sweep's seed: the same
suggestions, trial by trial, as a plain in-memory Optuna study on the same space (floats and an
unordered categorical), for a metric minimized and one maximized. So a regret ``bayes`` gets in
benchmarks/sweeps.py is GPSampler's own, not a mapping, seeding or direction of tracklet's."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from gp_gate import block_gp_imports, trials_while_blocked, watch_gp_asks

import tracklet
from tracklet.cli.main import main
from tracklet.sweeps.controller import Lease, LocalController, create_sweep

optuna = pytest.importorskip("optuna")

CHOICES = ["a", "b", "c", "d"]


def _objective(config: dict) -> float:
    return (config["x"] - 0.2) ** 2 + math.sin(5 * config["y"]) + 0.5 * CHOICES.index(config["cat"])


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_bayes_suggests_what_optunas_gpsampler_suggests_with_the_same_seed(tmp_path, goal):
    trials = 13  # 10 random start-up trials, then the GP's
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
    study = optuna.create_study(direction=goal, sampler=optuna.samplers.GPSampler(seed=5))
    theirs = []
    for _ in range(trials):
        trial = study.ask()
        # tracklet searches a categorical as the index of its value (docs/sweeps.md)
        suggested = {"x": trial.suggest_float("x", 0.0, 1.0), "y": trial.suggest_float("y", -1.0, 1.0),
                     "cat": CHOICES[trial.suggest_categorical("cat", tuple(range(len(CHOICES))))]}
        theirs.append(suggested)
        study.tell(trial, _objective(suggested))
    assert ours == theirs


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
    # A module is in sys.modules from the start of its import: "optuna._gp.gp" is there before the
    # torch it imports (ci10 looked in between), so the wait is for both.
    while (not {"optuna._gp.gp", "torch"} <= sys.modules.keys() and time.monotonic() < deadline
           and sys.argv[2] == "bayes"):
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


SHORT_TRIALS_SCRIPT = """
import json, sys
import tracklet
from tracklet.sweeps.agent import Agent
from tracklet.sweeps.controller import LocalController, create_sweep

root = sys.argv[1]
config = {"method": "bayes", "seed": 0, "run_cap": 14, "metric": {"name": "f"},
          "parameters": {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(3)}}
sweep_id = create_sweep(root, config, project="p")
controller = LocalController(root, sweep_id)
for _ in range(10):  # the random start-up trials, done before the agent starts
    lease = controller.next_trial("earlier")
    controller.tell(lease, sum(lease.config.values()))


def trial():
    run = tracklet.init(settings={"console": "off", "capture_environment": False, "system_metrics": False})
    run.log({"f": sum(run.config[f"x{i}"] for i in range(3))})


Agent(controller, log=lambda line: None).run_function(trial)
print(json.dumps(controller.status()["counts"]))
"""


def test_a_bayes_agent_whose_gp_asks_come_before_its_imports_end_keeps_going(tmp_path):
    """An agent that reaches its first GP suggestion while the GP's modules are still being
    imported in the background (the start-up trials were short, or done by agents before it, or
    the machine was busy) waits for the imports and asks: two threads importing SciPy at once
    got a partly initialised module, and the agent stopped on ImportError."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "agent.py"
    script.write_text(SHORT_TRIALS_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "root")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]).get("complete") == 14


NO_TORCH_SCRIPT = """
import json, sys, warnings

class NoTorch:  # this interpreter as one where PyTorch was never installed
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from tracklet.errors import SweepError
from tracklet.sweeps.controller import LocalController, create_sweep

root = sys.argv[1]
parameters = {"x": {"min": 0.0, "max": 1.0}, "y": {"min": -1.0, "max": 1.0}}
controller = LocalController(root, create_sweep(root, {"method": "bayes", "seed": 0, "metric": {"name": "f"},
                                                       "parameters": parameters}, project="p"))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(14):
        lease = controller.next_trial("a")
        controller.tell(lease, (lease.config["x"] - 0.3) ** 2 + lease.config["y"] ** 2)
try:
    create_sweep(root, {"method": "optuna", "sampler": {"type": "gp"}, "metric": {"name": "f"},
                        "parameters": parameters}, project="p")
    refused = None
except SweepError as error:
    refused = str(error)
print(json.dumps({"counts": controller.status()["counts"], "uses_gp": controller.uses_gp(),
                  "warnings": sorted({str(w.message) for w in caught}), "refused": refused,
                  "torch": "torch" in sys.modules}))
"""


def test_bayes_without_pytorch_searches_with_tpe_and_says_so(tmp_path):
    """``tracklet[sweeps]`` leaves PyTorch out, which Optuna's GPSampler needs. A bayes sweep there
    ran its random start-up trials and then stopped at the first GP ask (ModuleNotFoundError:
    torch); it now searches with TPE from the start and says why once, and a sweep that names
    ``sampler: gp`` is refused as it is created, naming what to install."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "root")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["counts"] == {"complete": 14} and not seen["uses_gp"] and not seen["torch"]
    [warning] = [w for w in seen["warnings"] if "bayes" in w]
    assert "searches with TPE" in warning and "pip install torch" in warning
    assert seen["refused"] is not None and "sampler: gp" in seen["refused"] and "pip install torch" in seen["refused"]


LETTERS = list("abcdefgh")


def test_bayes_searches_a_dominating_categorical_on_its_own_then_inside_its_best_value(tmp_path):
    """Where one categorical's values shift the objective by more than everything else varies
    (Hartmann-6 + an 8-way categorical in benchmarks/sweeps.py: GPSampler's one kernel modelled the
    shifts and searched inside the best value no better than random), ``bayes`` tries every value
    of it once after the start-up trials, then keeps to the value of the best trial so far (the GP
    fitted to that value's trials picks the rest). A categorical that doesn't dominate leaves the
    search GPSampler's own (the test above)."""
    config = {"method": "bayes", "seed": 1, "metric": {"name": "f", "goal": "minimize"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0},
                             "cat": {"values": LETTERS}}}
    controller = LocalController(tmp_path, create_sweep(tmp_path, config, project="p"))
    taken = []
    for _ in range(10 + len(LETTERS) + 2):  # start-up, at most one per value, two inside the best
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        taken.append(lease.config["cat"])
        c = lease.config
        controller.tell(lease, (c["x"] - 0.3) ** 2 + (c["y"] - 0.6) ** 2 + 10.0 * LETTERS.index(c["cat"]))
    covered = next(n for n in range(len(taken)) if set(taken[:n + 1]) == set(LETTERS))
    assert covered < 10 + len(LETTERS)  # every value tried right after the start-up...
    after = taken[10:covered + 1]
    assert len(set(after)) == len(after) and not set(after) & set(taken[:10])  # ...each untried one once
    assert set(taken[covered + 1:]) == {"a"}  # then only the best value


def test_no_bayes_ask_waits_for_the_gp_imports_it_is_random_until_they_end(tmp_path, monkeypatch):
    """The GP's modules (torch, SciPy) import on ``prepare``'s thread while the start-up trials
    run; where they outlast those trials (short trials, a loaded machine) the first GP ask waited
    for them: 1.1 s of a 1.2 s handoff (benchmarks/sweeps.py, issue #17: run exit -> next run
    start <= 1 s). No ask waits: while the imports run, an ask past the start-up trials is random
    (and its trial says so); the first ask after they end is the GP's. Here one of the imports
    blocks until the test releases it, so an ask that waited would hang there."""
    release = block_gp_imports(tmp_path, monkeypatch)
    config = {"method": "bayes", "seed": 0, "metric": {"name": "f"},
              "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}}
    controller = LocalController(tmp_path / "root", create_sweep(tmp_path / "root", config, project="p"))
    asked_gp = watch_gp_asks(monkeypatch)
    loading = controller.prepare()
    assert loading is not None

    def run_trial() -> None:
        lease = controller.next_trial("agent")
        assert isinstance(lease, Lease)
        controller.tell(lease, (lease.config["x"] - 0.3) ** 2 + lease.config["y"])

    trials_while_blocked(run_trial, 13, release, loading)  # 10 start-up trials, then 3 that the GP would fit
    rows = controller.status()["trials"]
    assert [row["random_while_gp_imports"] for row in rows] == [False] * 10 + [True] * 3 + [False]
    assert asked_gp == [*range(10), 13]  # the GP's again once the imports ended
    # what a user reads: tracklet.Api().sweep's trials (the dashboard's rows) and `tracklet sweep show`
    with tracklet.Api(tmp_path / "root") as api:
        trials = api.sweep(f"p/{controller.sweep_id}")["trials"]
    assert [t["random_while_gp_imports"] for t in trials] == [False] * 10 + [True] * 3 + [False]
    shown = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "sweep", "show", controller.sweep_id])
    assert shown.exit_code == 0, shown.output
    marked = [int(line.split()[0]) for line in shown.stdout.splitlines() if line.endswith("(random: GP importing)")]
    assert marked == [10, 11, 12]


def test_a_gp_ask_runs_its_blas_and_torch_on_one_thread_and_gives_the_threads_back(tmp_path, monkeypatch):
    """Each GP ask is thousands of tiny SciPy (L-BFGS-B), NumPy and PyTorch calls; with OpenBLAS
    and PyTorch at a thread per core each call woke and spun every thread: 3-5x the CPU on 2
    cores, 1.7 s of CPU per trial on 16 (issue #17's handoff). Optuna's own limit sets
    ``OPENBLAS_NUM_THREADS``, which a loaded OpenBLAS never reads again. The ask runs with every
    loaded OpenBLAS and PyTorch at one thread, and the agent's process gets its threads back
    after it (``wandb.agent(function=)`` trains in that process)."""
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info, threadpool_limits

    config = {"method": "optuna", "sampler": {"type": "gp", "seed": 0, "n_startup_trials": 2},
              "metric": {"name": "f"}, "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}}
    controller = LocalController(tmp_path, create_sweep(tmp_path, config, project="p"))

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    seen: list[tuple[list[int], int]] = []
    plain = optuna.samplers.GPSampler.sample_relative

    def watched(self, study, trial, search_space):  # the real sampler, watched
        seen.append((blas_threads(), torch.get_num_threads()))
        return plain(self, study, trial, search_space)

    monkeypatch.setattr(optuna.samplers.GPSampler, "sample_relative", watched)
    import scipy.optimize  # noqa: F401 - SciPy's own OpenBLAS, loaded as the GP loads it

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            pools = len(blas_threads())
            assert pools, "no BLAS found loaded (NumPy and SciPy wheels each bring an OpenBLAS)"
            for _ in range(4):
                lease = controller.next_trial("agent")
                assert isinstance(lease, Lease)
                controller.tell(lease, (lease.config["x"] - 0.3) ** 2 + lease.config["y"])
            fitted = seen[2:]  # the asks after the two start-up trials fit the GP
            assert len(fitted) == 2 and all(blas == [1] * pools and threads == 1 for blas, threads in fitted)
            assert blas_threads() == [2] * pools and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
