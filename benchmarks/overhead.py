"""How much does tracklet cost a training loop? All measurements in one run, one table.

    python benchmarks/overhead.py            # full run (~1 minute)
    python benchmarks/overhead.py --short    # what CI runs; exits 1 if the step slowdown exceeds --max-slowdown
    python benchmarks/overhead.py --targets  # issue #13's three targets only, pass/fail (~10-40 s); exits 1 on a fail

(a) ``log()`` latency on the caller's thread, 10 floats per call (median, p99); its tail (p99.9,
    max, calls over 1 ms) beside a no-op measured in the same process, in alternating blocks.
(b) throughput: points per second until 100k steps x 10 floats are durable (finish() returned).
(c) ``init()`` and ``finish()`` latency (finish after 20k steps), warm (a later run in the same
    process, environment capture off) and cold (a fresh process per sample, default settings;
    beside the same script with nothing captured in the background, in alternating processes).
(d) slowdown of a ~200 us numpy training step that logs 10 floats every step, against the same
    loop without tracklet, interleaved in the same process (ratio, not wall-clock); a naive
    synchronous JSON-lines writer is measured in the same rounds as a reference.
(e) ``import tracklet`` time and whether it imported an ML framework; peak RSS overhead of a
    process that logs 100k steps against one that runs the same loop without tracklet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# One BLAS thread: the "training step" then takes the same time in every block, and the
# background sender's thread is not fighting BLAS threads for this machine's cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

import tracklet  # noqa: E402

QUIET = {"console": "off", "capture_environment": False}
METRICS = [f"metric_{i}" for i in range(10)]


def _row(step: int) -> dict[str, float]:
    base = 1.0 / (step + 1)
    return {name: base * (i + 1) for i, name in enumerate(METRICS)}


def log_latency(root: str, calls: int) -> dict[str, float]:
    run = tracklet.init(project="bench", dir=root, settings=QUIET)
    rows = [_row(i) for i in range(1000)]
    clock = time.perf_counter_ns
    overhead = min(-(clock() - clock()) for _ in range(1000))
    samples = []
    log = run.log
    for i in range(calls):
        row = rows[i % 1000]
        start = clock()
        log(row)
        samples.append(clock() - start - overhead)
    run.finish()
    samples.sort()
    return {
        "median_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def _tail(samples: list[int], fast: int = 0) -> dict[str, float]:
    """p99.9 and max (us) and the counts of samples over 25 us (p99.9's target: p99.9 is at most
    that while fewer than 0.1 % of the calls are over it) and over 1 ms, from per-call times in ns.
    ``fast``: how many more calls took under ``_KEPT_NS`` and were not kept (the no-op's)."""
    ordered = sorted(samples)
    at = int((len(ordered) + fast) * 0.999) - fast
    return {
        "p999_us": (ordered[at] if at >= 0 else _KEPT_NS) / 1000,
        "max_ms": ordered[-1] / 1e6 if ordered else 0.0,
        "over_25us": sum(1 for s in ordered if s > 25_000),
        "over_1ms": sum(1 for s in ordered if s > 1_000_000),
        "calls": len(ordered) + fast,
    }


# The no-op keeps only its calls slower than this (it makes many more calls than log(); see below).
_KEPT_NS = 1_000


def log_stalls(root: str, calls: int, block: int = 10_000) -> dict[str, dict[str, float]]:
    """Stalls of ``log()`` in a tight loop (10 floats per call) beside a no-op measured in the same
    process: rounds of a ``log()`` block of ``block`` calls, then a no-op block.

    A ``log()`` block is longer than the sender's batch size, so its worker wakes and encodes
    during the block as in a training loop: a call that waits for the GIL while the worker holds it
    shows here. After each ``log()`` block ``run.flush()`` (not timed) lets the worker catch up, so
    the no-op block that follows measures the machine's own noise (steal, preemption), not the
    worker. A no-op block makes at least ``block`` calls and goes on for as long as the ``log()``
    block before it took: its max then covers as much time as log()'s (10k no-op calls take ~1 ms
    against 5-20 ms for 10k ``log()`` calls, and a no-op measured over a tenth of the time rarely
    met the machine's stalls; its counts are per as many calls as it made, in ``calls``). Tail
    figures only mean something beside the no-op's, on this machine, in this run.
    """
    run = tracklet.init(project="bench", dir=root, settings=QUIET)
    rows = [_row(i) for i in range(1000)]
    clock = time.perf_counter_ns
    overhead = min(-(clock() - clock()) for _ in range(1000))

    def noop(data: dict[str, float]) -> None:
        return None

    logged: list[int] = []
    slow_noops: list[int] = []  # the no-op's calls over _KEPT_NS; the others are only counted
    fast_noops = 0
    log = run.log
    for _ in range(max(1, calls // block)):
        began = clock()
        for i in range(block):
            row = rows[i % 1000]
            start = clock()
            log(row)
            logged.append(clock() - start - overhead)
        span = clock() - began
        run.flush()
        began = clock()
        made, kept = 0, len(slow_noops)
        while made < block or clock() - began < span:
            for i in range(1000):
                row = rows[i]
                start = clock()
                noop(row)
                took = clock() - start - overhead
                if took > _KEPT_NS:
                    slow_noops.append(took)
            made += 1000
        fast_noops += made - (len(slow_noops) - kept)
    run.finish()
    return {"log": _tail(logged), "noop": _tail(slow_noops, fast_noops)}


def throughput(root: str, steps: int) -> dict[str, float]:
    rows = [_row(i) for i in range(1000)]
    run = tracklet.init(project="bench", dir=root, settings=QUIET)
    start = time.perf_counter()
    log = run.log
    for i in range(steps):
        log(rows[i % 1000])
    run.finish()  # fsyncs the record log: everything is durable when it returns
    elapsed = time.perf_counter() - start
    return {"points_per_s": steps * len(METRICS) / elapsed, "seconds": elapsed}


def init_finish(root: str, repeats: int, steps: int) -> dict[str, float]:
    inits, finishes = [], []
    row = _row(0)
    for _ in range(repeats):
        start = time.perf_counter()
        run = tracklet.init(project="bench", dir=root, settings=QUIET)
        inits.append(time.perf_counter() - start)
        for _ in range(steps):
            run.log(row)
        start = time.perf_counter()
        run.finish()
        finishes.append(time.perf_counter() - start)
    return {"init_ms": statistics.median(inits) * 1000, "finish_ms": statistics.median(finishes) * 1000}


def _make_step(target_us: float):
    """A numpy 'training step' calibrated to take about target_us of CPU time.

    CPU, not wall time: on a loaded machine the wall time of a calibration pass includes waiting
    for a CPU, which made the step calibrated shorter (184-460 us of wall from one run to the next
    at load 17), and a fixed cost per step a larger percentage of a shorter step."""
    rng = np.random.default_rng(0)
    size = 64
    a = rng.standard_normal((size, size))
    b = rng.standard_normal((size, size))

    def step(repeats: int) -> float:
        out = a
        for _ in range(repeats):
            out = np.tanh(out @ b * 0.01)
        return float(out[0, 0])

    repeats = 1
    while True:
        start = time.thread_time()
        for _ in range(200):
            step(repeats)
        per_step = (time.thread_time() - start) / 200 * 1e6
        if per_step >= target_us or repeats > 10_000:
            break
        repeats = max(repeats + 1, int(repeats * target_us / max(per_step, 1.0)))
    return step, repeats, per_step


def step_slowdown(root: str, steps: int, rounds: int, target_us: float = 200.0) -> dict[str, Any]:
    """Rounds of three blocks, each ``steps`` training steps: without tracking, with tracklet, and
    with a naive synchronous JSON-lines writer (a reference point measured in the same run), and
    one more untracked block at the end. Each tracked (and naive) block is compared with the mean
    of the untracked blocks just before and just after it, so a machine that speeds up or slows
    down during the run (another process starting, steal time) moves both sides of the ratio
    alike; the slowdowns are medians of those per-round ratios.

    Cost is the process's CPU time (all threads: the caller's ``log()`` and the worker's encoding
    and I/O both count), which, unlike wall time, the steal time of a busy virtual machine does
    not inflate; the wall-time ratio is reported beside it. A tracked block ends with
    ``run.flush()`` so the worker's work for its rows is paid inside it.
    """
    step, repeats, _ = _make_step(target_us)
    plain: list[tuple[float, float]] = []  # (CPU, wall) of each untracked block
    tracked: list[tuple[float, float]] = []
    naive_cpu: list[float] = []
    run = tracklet.init(project="bench", dir=root, settings=QUIET)
    log = run.log
    cpu, wall = time.process_time, time.perf_counter

    def untracked() -> None:
        start_cpu, start_wall = cpu(), wall()
        for _ in range(steps):
            value = step(repeats)
            {name: value * (j + 1) for j, name in enumerate(METRICS)}  # the same dict work, not logged
        plain.append((cpu() - start_cpu, wall() - start_wall))

    with open(os.path.join(root, "naive.jsonl"), "w") as naive:
        for _ in range(rounds):
            untracked()
            start_cpu, start_wall = cpu(), wall()
            for _ in range(steps):
                value = step(repeats)
                log({name: value * (j + 1) for j, name in enumerate(METRICS)})
            run.flush()
            tracked.append((cpu() - start_cpu, wall() - start_wall))
            start_cpu = cpu()
            for i in range(steps):
                value = step(repeats)
                row = {name: value * (j + 1) for j, name in enumerate(METRICS)}
                naive.write(json.dumps({"_step": i, "_timestamp": time.time(), **row}) + "\n")
            naive.flush()
            naive_cpu.append(cpu() - start_cpu)
        untracked()
    run.finish()
    ratios: dict[str, list[float]] = {"cpu": [], "wall": [], "jsonl": []}
    for index in range(rounds):
        (before_cpu, before_wall), (after_cpu, after_wall) = plain[index], plain[index + 1]
        around_cpu, around_wall = (before_cpu + after_cpu) / 2, (before_wall + after_wall) / 2
        ratios["cpu"].append(tracked[index][0] / around_cpu)
        ratios["wall"].append(tracked[index][1] / around_wall)
        ratios["jsonl"].append(naive_cpu[index] / around_cpu)
    pct = {name: (statistics.median(values) - 1) * 100 for name, values in ratios.items()}
    low, high = _median_interval(ratios["cpu"])
    return {
        "step_us": statistics.median(wall_time for _, wall_time in plain) / steps * 1e6,
        "step_cpu_us": statistics.median(cpu_time for cpu_time, _ in plain) / steps * 1e6,
        "added_cpu_us_per_step": statistics.median(
            tracked[index][0] - (plain[index][0] + plain[index + 1][0]) / 2 for index in range(rounds)) / steps * 1e6,
        "slowdown_pct": pct["cpu"],
        # Where the median could have landed with other rounds: a single reading of a short run is
        # one draw from this range (the --short gate's spans several percent on a shared VM).
        "slowdown_pct_90ci": [(low - 1) * 100, (high - 1) * 100],
        "cpu_ratios": ratios["cpu"],
        "wall_slowdown_pct": pct["wall"],
        "naive_jsonl_slowdown_pct": pct["jsonl"],
    }


def _median_interval(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 90 % bootstrap interval of the median of ``values`` (fixed seed: the same data gives the
    same interval)."""
    import random

    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(resamples * 0.05)], medians[int(resamples * 0.95) - 1]


def slowdown_args(short: bool) -> tuple[int, int]:
    return (500, 41) if short else (1000, 101)


_RSS_SCRIPT = """
import resource, sys, numpy as np
tracked = sys.argv[1] == "1"
if tracked:
    import tracklet
    run = tracklet.init(project="bench", dir=sys.argv[2], settings={"console": "off", "capture_environment": False})
names = [f"metric_{i}" for i in range(10)]
for step in range(100_000):
    row = {n: step * 0.5 + i for i, n in enumerate(names)}
    if tracked:
        run.log(row)
if tracked:
    run.finish()
# VmHWM: this process's peak RSS. ru_maxrss would also count the parent's, which Linux carries
# across fork and exec.
try:
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_and_import(root: str) -> dict[str, Any]:
    def peak_kb(tracked: bool) -> int:
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, "1" if tracked else "0", root],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        return int(out.stdout.strip().splitlines()[-1])

    rss = statistics.median([peak_kb(True) - peak_kb(False) for _ in range(3)]) / 1024
    probe = (
        "import sys, time; t = time.perf_counter(); import tracklet; "
        "print(time.perf_counter() - t); "
        "print(sorted(m for m in ('torch', 'jax', 'tensorflow', 'transformers', 'lightning', 'numpy') if m in sys.modules))"
    )
    times: list[float] = []
    frameworks = ""  # the frameworks the import loaded, as the probe printed the list
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
        first, second = out.stdout.strip().splitlines()
        times.append(float(first))
        frameworks = second
    return {"import_ms": statistics.median(times) * 1000, "rss_overhead_mb": rss, "import_loads": frameworks}


_COLD_SCRIPT = """
import sys, time
clock = time.perf_counter
start = began = clock()
import json
baseline = clock() - start
from benchmarks import finish_phases  # not timed: where finish()'s time goes (see that module)
start = clock()
import tracklet
finish_phases.install()  # imports only what init() imports next
settings = json.loads(sys.argv[2])
run = tracklet.init(project="cold", dir=sys.argv[1], settings=settings)
first_init = clock() - start
row = {f"metric_{i}": 0.5 for i in range(10)}
for _ in range(20_000):
    run.log(row)
start, cpu = clock(), time.process_time()
run.finish()
finish, finish_cpu = clock() - start, time.process_time() - cpu
print(json.dumps([baseline, first_init, finish, finish_cpu, time.process_time(), clock() - began]))
print(json.dumps(finish_phases.collect()))
"""
# The same script with nothing captured in the background: what finish() costs for the sender
# alone (its imports, encoding the rows it has not yet, fsync), the baseline for capture's share.
_QUIET_COLD = {"capture_environment": False, "system_metrics": False, "console": "off"}


def cold_start(root: str, samples: int, quiet: bool = True) -> dict[str, Any]:
    """``import tracklet`` + the first ``init()``, and ``finish()`` after 20k steps, each sample in a
    fresh process with default settings (environment capture and system metrics on), as a short
    script or a notebook pays them. ``import json`` in the same processes is the baseline. Bytecode
    is written and reused as on a user's machine; the first process (which writes it and the
    package inventory cache) is not counted."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    measured: dict[str, list] = {"default": [], "quiet": [], "default_phases": [], "quiet_phases": []}
    kinds = (("default", {}), ("quiet", _QUIET_COLD)) if quiet else (("default", {}),)
    for sample in range(samples + 1):
        for name, settings in kinds:  # alternating, same load
            out = subprocess.run([sys.executable, "-c", _COLD_SCRIPT, root, json.dumps(settings)], capture_output=True,
                                 text=True, check=True, cwd=ROOT, env=env)
            if sample:
                *_, figures, phases = out.stdout.strip().splitlines()
                measured[name].append(json.loads(figures))
                measured[f"{name}_phases"].append(json.loads(phases))
    baseline, first_init, finish, finish_cpu, script_cpu, script = (statistics.median(column) * 1000
                                                                    for column in zip(*measured["default"]))
    each = {"first_init_ms": [round(sample[1] * 1000, 2) for sample in measured["default"]],
            "finish_ms": [round(sample[2] * 1000, 2) for sample in measured["default"]]}
    if not quiet:
        return {"import_json_ms": baseline, "import_and_first_init_ms": first_init, "cold_finish_ms": finish,
                "cold_finish_cpu_ms": finish_cpu, "each": each, "phases": measured["default_phases"]}
    quiet_finish, quiet_cpu, quiet_script_cpu, quiet_script = (statistics.median(column) * 1000
                                                               for column in list(zip(*measured["quiet"]))[2:])
    return {"import_json_ms": baseline, "import_and_first_init_ms": first_init, "cold_finish_ms": finish,
            "cold_finish_cpu_ms": finish_cpu, "cold_script_cpu_ms": script_cpu, "cold_script_ms": script,
            "cold_finish_no_capture_ms": quiet_finish, "cold_finish_no_capture_cpu_ms": quiet_cpu,
            "cold_script_no_capture_cpu_ms": quiet_script_cpu, "cold_script_no_capture_ms": quiet_script, "each": each,
            "phases": measured["default_phases"]}


def finish_phase_rows(samples: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Rows of a table saying where the cold ``finish()`` went, from ``finish_phases.collect()`` of
    each sample: per phase the median wall and CPU (process, all threads) over the samples, how
    often the environment wait ran out (``capture_wait``) and what was then missing, whether the
    package inventory came from its cache, and the capture's parts (thread CPU, and when each ended:
    ms from finish()'s start, negative = before it)."""
    count = len(samples)

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def phase(name: str) -> tuple[float, float]:
        return (median([s["phases"].get(name, [0.0, 0.0])[0] for s in samples]),
                median([s["phases"].get(name, [0.0, 0.0])[1] for s in samples]))

    rows = [("finish(), as timed inside it", "{:.1f} / {:.1f} ms".format(*(median([s["total"][i] for s in samples])
                                                                           for i in (0, 1))), "wall / CPU")]
    for name, label in (("environment", "environment capture wait"), ("monitor", "system monitor stop"),
                        ("drain", "worker drain + encode (force_flush)"),
                        ("close", "exit record, last write, fsync, close"), ("other", "the rest")):
        rows.append((f"  {label}", "{:.1f} / {:.1f} ms".format(*phase(name)), "median wall / CPU"))
    rows.append(("    of which os.fsync (wall)", f"{median([s['fsync_ms'] for s in samples]):.1f} ms", ""))
    ran_out = sum(1 for s in samples if s["environment_running_after_wait"])
    missing: dict[str, int] = {}
    for sample in samples:
        for part in sample["incomplete"]:
            missing[part] = missing.get(part, 0) + 1
    rows.append(("  capture still running after capture_wait", f"{ran_out}/{count}",
                 ("incomplete: " + ", ".join(f"{part} {n}/{count}" for part, n in missing.items())) if missing
                 else "every record complete"))
    hits = sum(1 for s in samples if s["inventory"] in ("hit", "updated"))
    scans = [scan for s in samples for scan in s["scans"]]
    updates = [update for s in samples for update in s.get("updates", ())]
    rows.append(("  package inventory from its cache", f"{hits}/{count}",
                 (f"{len(updates)} brought up to date after an install (median {median([x['cpu_ms'] for x in updates]):.1f} "
                  "ms CPU), " if updates else "") +
                 f"{len(scans)} scans before finish() returned" + (
                     ", median {:.0f} ms wall / {:.0f} ms CPU for {} packages".format(
                         median([x["wall_ms"] for x in scans]), median([x["cpu_ms"] for x in scans]),
                         max(x["packages"] for x in scans)) if scans else "")))
    snapshots = [s["code_snapshot"] for s in samples if s.get("code_snapshot")]
    rows.append(("  code snapshot stored (untracked imported files)", f"{len(snapshots)}/{count}",
                 "none: nothing imported from the repository is untracked" if not snapshots else
                 "{} files; logging it: {:.1f} ms wall / {:.1f} ms CPU on the capture thread (median), and the "
                 "artifact worker's close in the rest".format(max(x["files"] for x in snapshots),
                                                                median([x["wall_ms"] for x in snapshots]),
                                                                median([x["cpu_ms"] for x in snapshots]))))
    for part in ("prepare", "host", "git", "packages", "code"):
        cpus = [s["parts"][part]["cpu_ms"] for s in samples if part in s["parts"]]
        ends = [s["parts"][part]["ended_ms"] for s in samples
                if part in s["parts"] and s["parts"][part]["ended_ms"] is not None]
        walls = [s["parts"][part]["wall_ms"] for s in samples if part in s["parts"]]
        rows.append((f"    capture part {part}", f"{median(cpus):.1f} ms CPU",
                     f"{median(walls):.1f} ms wall, ended {median(ends):+.1f} ms from finish(); "
                     f"done in {len(cpus)}/{count}"))
    return rows


# Issue #13's targets, as ``--targets`` checks them.
FIRST_INIT_TARGET_MS = 50.0
COLD_FINISH_TARGET_MS = 20.0
P999_TARGET_US = 25.0
MAX_OVER_NOOP_TARGET_MS = 5.0


def targets(samples: int = 15, calls: int = 100_000) -> int:
    """Issue #13's three targets, each with pass/fail, in well under a minute: (1) ``import
    tracklet`` + the first ``init()`` and (2) ``finish()`` after 20k steps, each the median of
    ``samples`` fresh processes with default settings (the worst beside it), ``import json`` in
    the same processes as the baseline; (3) ``log()`` of 10 floats, ``calls`` calls in 10k-call
    blocks beside a no-op in the same process: p99.9 and the max against the no-op's max. Meant for
    an idle machine: the load average is printed before and after. Returns the exit status."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as root:
        cold = cold_start(root, samples, quiet=False)
        stalls = log_stalls(root, calls)
    load_after = os.getloadavg()
    log, noop = stalls["log"], stalls["noop"]
    each = cold["each"]
    checks = [
        ("1. import tracklet + first init(), cold", f"{cold['import_and_first_init_ms']:.1f} ms",
         f"worst {max(each['first_init_ms']):.1f} ms; import json {cold['import_json_ms']:.2f} ms",
         f"<= {FIRST_INIT_TARGET_MS:.0f} ms", cold["import_and_first_init_ms"] <= FIRST_INIT_TARGET_MS),
        ("2. finish() after 20k steps, cold", f"{cold['cold_finish_ms']:.1f} ms",
         f"worst {max(each['finish_ms']):.1f} ms, {sum(v > COLD_FINISH_TARGET_MS for v in each['finish_ms'])}/"
         f"{len(each['finish_ms'])} over; {cold['cold_finish_cpu_ms']:.1f} ms CPU",
         f"<= {COLD_FINISH_TARGET_MS:.0f} ms", cold["cold_finish_ms"] <= COLD_FINISH_TARGET_MS),
        ("3a. log() p99.9, 10 floats", f"{log['p999_us']:.1f} us",
         f"no-op {noop['p999_us']:.1f} us; {log['over_25us']} calls over 25 us (no-op {noop['over_25us']} "
         f"of {noop['calls']:,})",
         f"<= {P999_TARGET_US:.0f} us", log["p999_us"] <= P999_TARGET_US),
        ("3b. log() max - no-op max", f"{log['max_ms'] - noop['max_ms']:+.1f} ms",
         f"log() {log['max_ms']:.1f} ms, no-op {noop['max_ms']:.1f} ms", f"<= {MAX_OVER_NOOP_TARGET_MS:.0f} ms",
         log["max_ms"] - noop["max_ms"] <= MAX_OVER_NOOP_TARGET_MS),
    ]
    rows = [(name, value, target, "pass" if ok else "FAIL", note) for name, value, note, target, ok in checks]
    rows.append(("load average (1 min), before / after", f"{load_before[0]:.1f} / {load_after[0]:.1f}", "",
                 "", f"{os.cpu_count()} CPUs; {samples} cold samples, {calls:,} log() calls"))
    print_table(rows, header=("target (issue #13)", "median", "target", "", "beside it"))
    print()
    print_table(finish_phase_rows(cold["phases"]), header=("where the cold finish() goes", "median", ""))
    return 0 if all(ok for *_, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="a quick run for CI")
    parser.add_argument("--max-slowdown", type=float, default=None, help="fail (exit 1) above this step slowdown, in %%")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--targets", action="store_true",
                        help="only issue #13's three targets, with pass/fail (exits 1 on a fail)")
    args = parser.parse_args()
    if args.targets:
        return targets()

    short = args.short
    results: dict[str, dict] = {"load": {"before": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory() as root:
        results["log"] = log_latency(root, 20_000 if short else 200_000)
        results["stalls"] = log_stalls(root, 20_000 if short else 100_000)
        results["throughput"] = throughput(root, 20_000 if short else 100_000)
        results["init_finish"] = init_finish(root, 5 if short else 20, 20_000)
        results["slowdown"] = step_slowdown(root, *slowdown_args(short))
        results["cold"] = cold_start(root, 3 if short else 9)
        if not short:
            results["process"] = memory_and_import(root)
    results["load"]["after"] = os.getloadavg()[0]

    rows = [
        ("log() median, 10 floats", f"{results['log']['median_us']:.2f} us", "<= 2 us"),
        ("log() p99, 10 floats", f"{results['log']['p99_us']:.2f} us", "<= 10 us"),
        (
            "log() p99.9 / max, 10k-call blocks",
            f"{results['stalls']['log']['p999_us']:.1f} us / {results['stalls']['log']['max_ms']:.1f} ms",
            "p99.9 <= 25 us; max <= no-op max + 5 ms",
        ),
        (
            "  baseline: no-op p99.9 / max, same run",
            f"{results['stalls']['noop']['p999_us']:.1f} us / {results['stalls']['noop']['max_ms']:.1f} ms",
            "(interleaved blocks, each as long as the log() block before it)",
        ),
        (
            "log() calls over 25 us / over 1 ms (no-op)",
            f"{results['stalls']['log']['over_25us']} / {results['stalls']['log']['over_1ms']} "
            f"({results['stalls']['noop']['over_25us']} / {results['stalls']['noop']['over_1ms']})",
            f"of {results['stalls']['log']['calls']:,} log() and {results['stalls']['noop']['calls']:,} no-op calls; "
            "p99.9 target: < 0.1 % over 25 us",
        ),
        ("points/s until durable", f"{results['throughput']['points_per_s']:,.0f}", ">= 2,000,000"),
        ("init()", f"{results['init_finish']['init_ms']:.2f} ms", "<= 10 ms"),
        ("finish() after 20k steps", f"{results['init_finish']['finish_ms']:.2f} ms", "<= 20 ms"),
        (
            f"step slowdown, CPU ({results['slowdown']['step_cpu_us']:.0f} us CPU step)",
            f"{results['slowdown']['slowdown_pct']:.2f} % (+{results['slowdown']['added_cpu_us_per_step']:.1f} us; "
            "90 % interval {:.1f} .. {:.1f} %)".format(*results["slowdown"]["slowdown_pct_90ci"]),
            "<= 1 %",
        ),
        ("step slowdown, wall time", f"{results['slowdown']['wall_slowdown_pct']:.2f} %", "(noisy on a shared VM)"),
        (
            "  reference: naive sync JSON-lines writer",
            f"{results['slowdown']['naive_jsonl_slowdown_pct']:.2f} %",
            "(same run, CPU)",
        ),
    ]
    cold = results["cold"]
    rows += [
        ("cold: import tracklet + first init()", f"{cold['import_and_first_init_ms']:.1f} ms", "<= 50 ms"),
        ("cold: finish() after 20k steps", f"{cold['cold_finish_ms']:.1f} ms", "<= 20 ms"),
        ("  its CPU time (all threads)", f"{cold['cold_finish_cpu_ms']:.1f} ms", "(same processes)"),
        ("  the whole script: wall / CPU", f"{cold['cold_script_ms']:.0f} / {cold['cold_script_cpu_ms']:.0f} ms "
         f"({cold['cold_script_no_capture_ms']:.0f} / {cold['cold_script_no_capture_cpu_ms']:.0f} nothing captured)",
         "(import to finish(); CPU from interpreter start)"),
        (
            "  baseline: the same, nothing captured",
            f"{cold['cold_finish_no_capture_ms']:.1f} ms ({cold['cold_finish_no_capture_cpu_ms']:.1f} ms CPU)",
            "(alternating processes)",
        ),
        ("  baseline: import json, same processes", f"{cold['import_json_ms']:.2f} ms", "(fresh process each)"),
    ]
    if "process" in results:
        rows += [
            ("import tracklet", f"{results['process']['import_ms']:.1f} ms", "<= 100 ms"),
            ("frameworks imported by it", results["process"]["import_loads"], "[]"),
            ("peak RSS overhead, 100k steps", f"{results['process']['rss_overhead_mb']:.1f} MB", "<= 20 MB"),
        ]
    rows.append(("load average (1 min), before / after", f"{results['load']['before']:.1f} / {results['load']['after']:.1f}",
                 f"({os.cpu_count()} CPUs)"))
    print_table(rows, header=("measure", "result", "target"))
    write_json(args.json, results)
    if args.max_slowdown is not None:
        # This machine kind is a shared VM (steal time): one noisy attempt is retried, a real
        # regression fails every attempt.
        attempts = [results["slowdown"]["slowdown_pct"]]
        while attempts[-1] > args.max_slowdown and len(attempts) < 3:
            with tempfile.TemporaryDirectory() as root:
                attempts.append(step_slowdown(root, *slowdown_args(short))["slowdown_pct"])
        best = min(attempts)
        verdict = "FAIL" if best > args.max_slowdown else "ok"
        shown = ", ".join(f"{a:.2f}%" for a in attempts)
        print(f"{verdict}: step slowdown {best:.2f}% (attempts: {shown}); limit {args.max_slowdown}%")
        return 1 if best > args.max_slowdown else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
