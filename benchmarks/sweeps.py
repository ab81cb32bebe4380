"""Sweeps against issue #17's targets, through tracklet's own controller (a real sweep under a
temporary data root: JournalStorage, the file lock, leases), one run:

    python benchmarks/sweeps.py            # 10 seeds x 50 trials per function; TPE latency at 1,000 trials
    python benchmarks/sweeps.py --quick    # 3 seeds x 20 trials; latency at 200 trials

(a) simple regret (best found - optimum) after the budget, median [IQR] over seeds, on Branin,
Hartmann-6 and Branin + an 8-way unordered categorical (offsets 0..35), for ``method: random``,
``bayes`` (Optuna's GPSampler) and ``optuna`` with TPE, printed beside W&B bayes's figures from the
issue (its sweeps controller run locally, 50 trials, 10 seeds); the target is bayes <= 1/10 of
random; (b) ``next_trial`` latency (ask under the lock, lease written) with TPE at N trials,
median and p99 (target p99 <= 50 ms at 1,000). Trials are told their value directly
(``LocalController.tell``): no training runs are started, so the figures are the controller's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402
from tracklet.sweeps.controller import Lease, LocalController, create_sweep  # noqa: E402

BRANIN_MIN = 0.397887
HARTMANN6_MIN = -3.32237
# W&B bayes (wandb/sweeps HEAD), 50 trials, median of 10 seeds: docs/research, issue #17.
WANDB_BAYES = {"branin": 0.0050, "hartmann6": 0.38, "branin+8cat": 1.33}
_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(c: dict[str, Any]) -> float:
    x1, x2 = c["x1"], c["x2"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def hartmann6(c: dict[str, Any]) -> float:
    x = [c[f"x{i}"] for i in range(6)]
    return -sum(_ALPHA[i] * math.exp(-sum(_A[i][j] * (x[j] - _P[i][j] * 1e-4) ** 2 for j in range(6)))
                for i in range(4))


def branin_cat(c: dict[str, Any]) -> float:
    return branin(c) + 5.0 * "abcdefgh".index(c["cat"])  # only 'a' reaches the optimum


PROBLEMS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], float], float]] = {
    "branin": ({"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}, branin, BRANIN_MIN),
    "hartmann6": ({f"x{i}": {"min": 0.0, "max": 1.0} for i in range(6)}, hartmann6, HARTMANN6_MIN),
    "branin+8cat": ({"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0},
                     "cat": {"values": list("abcdefgh")}}, branin_cat, BRANIN_MIN),
}
ENGINES = {"random": {"method": "random"}, "bayes (GP)": {"method": "bayes"},
           "optuna TPE": {"method": "optuna", "sampler": "tpe"}}


def sweep_once(root: Path, parameters: dict[str, Any], objective: Callable[[dict[str, Any]], float],
               engine: dict[str, Any], seed: int | None, budget: int) -> tuple[float, list[float]]:
    """Run ``budget`` sequential trials; the best value and each ``next_trial`` latency (s)."""
    config = {**engine, **({} if seed is None else {"seed": seed}), "metric": {"name": "f", "goal": "minimize"}, "parameters": parameters}
    controller = LocalController(root, create_sweep(root, config, project="bench"))
    best, latencies = math.inf, []
    for _ in range(budget):
        started = time.perf_counter()
        lease = controller.next_trial("bench")
        latencies.append(time.perf_counter() - started)
        assert isinstance(lease, Lease), lease
        value = objective(lease.config)
        best = min(best, value)
        controller.tell(lease, value)
    return best, latencies


def _quartiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.4g} [{q[0]:.2g}, {q[2]:.2g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds x 20 trials; latency at 200 trials")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--latency-trials", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    seeds = args.seeds or (3 if args.quick else 10)
    budget = args.trials or (20 if args.quick else 50)
    latency_n = args.latency_trials or (200 if args.quick else 1000)
    results: dict[str, Any] = {"seeds": seeds, "trials": budget, "regret": {}}
    with tempfile.TemporaryDirectory(prefix="tracklet-bench-sweeps-") as directory:
        root = Path(directory)
        rows = []
        for problem, (parameters, objective, optimum) in PROBLEMS.items():
            regrets: dict[str, list[float]] = {}
            for name, engine in ENGINES.items():
                regrets[name] = [sweep_once(root, parameters, objective, engine, seed, budget)[0] - optimum
                                 for seed in range(seeds)]
            results["regret"][problem] = regrets
            random_median = statistics.median(regrets["random"])
            bayes_median = statistics.median(regrets["bayes (GP)"])
            verdict = "met" if bayes_median <= random_median / 10 else "missed"
            rows.append([problem, _quartiles(regrets["random"]), _quartiles(regrets["bayes (GP)"]),
                         _quartiles(regrets["optuna TPE"]), f"{WANDB_BAYES[problem]:g}",
                         f"bayes <= random/10: {verdict}"])
        print(f"(a) simple regret after {budget} trials, median [IQR] of {seeds} seeds")
        print_table(rows, ["function", "random", "bayes (GP)", "optuna TPE", "W&B bayes @50", "target"])
        # unseeded, as a production sweep: the agent keeps its sampler between asks
        _, latencies = sweep_once(root, PROBLEMS["hartmann6"][0], hartmann6, ENGINES["optuna TPE"], None, latency_n)
        tail = sorted(latencies[-min(100, latency_n):])
        p99 = tail[min(len(tail) - 1, math.ceil(0.99 * len(tail)) - 1)]
        results["latency_ms"] = {"trials": latency_n, "median": statistics.median(tail) * 1e3, "p99": p99 * 1e3}
        print(f"\n(b) next_trial latency with TPE (Hartmann-6), the last {len(tail)} of {latency_n} trials")
        print_table([["TPE", f"{statistics.median(tail) * 1e3:.1f} ms", f"{p99 * 1e3:.1f} ms",
                      "p99 <= 50 ms at 1,000 trials: " + ("met" if p99 <= 0.05 else "missed")
                      + ("" if latency_n >= 1000 else f" (measured at {latency_n})")]],
                    ["engine", "median", "p99", "target"])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
