"""What logging an image costs a training loop, beside W&B offline measured in the same run.

    python benchmarks/media.py            # ~1 minute
    python benchmarks/media.py --short    # fewer calls and rounds
    python benchmarks/media.py --targets  # only issue #16's two figures, against their targets (~40 s idle)

(a) caller latency of ``log({"img": Image(uint8 224×224×3)})`` (the constructor's copy included:
    it is what the caller pays), p50 / p99, for tracklet and for ``wandb.log({"img":
    wandb.Image(...)})`` in offline mode (the real wandb package, when installed), in the same
    process; the ratio is what means something on a shared machine. Twice: in bursts of 50 calls
    back to back with a 50 ms pause (more than the media worker encodes: its backlog grows), and
    one call per 20 ms numpy "training step" (the worker keeps up).
(b) slowdown of a training step (``--step-ms``, default 200 ms of numpy work in CPU time) that logs one new
    image per step, against the same loop without tracking, in alternating blocks; the process's
    CPU time (all threads: the media worker's PNG encoding and hashing count) and wall time, as
    medians of per-round ratios, and the CPU time it adds per step. Each tracked block ends with ``flush()``,
    which wakes the media worker and waits until it drained, so its work is paid inside the block (a
    wait for the worker's 0.1 s tick instead, as before, added up to 100 ms of idle time per block:
    several percent of wall time that no training loop waits for).
(c) the media worker's CPU per new image (convert, PNG, sha256, blob write, record) on one thread,
    with ISA-L's deflate (the media extra's ``isal``) and zlib's, and its share of a ``--step-ms`` step.

Beside each caller latency, a no-op call timed in the same loop (the machine's floor) and how many
calls of each the kernel preempted (involuntary context switches of the calling thread). In the
per-step measure each step is followed by one timed call, in turn: the image's ``log()``, a no-op,
``log({"loss": float})`` and a bare memcpy of the image into a buffer reused every time. After a
step every object and page the call touches is a cache and TLB miss on these VMs, so those three
are the floor an image's ``log()`` stands on (the bare copy of 150 KB alone reads 30-55 µs there,
against ~7 µs back to back).

    python benchmarks/media.py --baseline DIR   # A/B: the same measures with DIR's tracklet too

``--baseline`` runs the per-step latency and the step slowdown of the tracklet package in DIR
(another checkout, e.g. ``git archive main | tar -x -C DIR``) in child processes, alternating
with this checkout's, so that both are measured in the same minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("MEDIA_BENCH_TREE"):  # a --baseline child: that checkout's tracklet
    sys.path.insert(0, os.environ["MEDIA_BENCH_TREE"])

from benchmarks.report import print_table, write_json  # noqa: E402

import tracklet  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
SHAPE = (224, 224, 3)
STEP_MS_LATENCY = 20.0  # the numpy "training step" between calls in the per-step latency measure


def photo(seed: int):
    """A 224×224×3 uint8 image that compresses like a photograph (smooth gradients plus sensor
    noise), different for every seed. Pure noise would be deflate's worst case, no real image's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    phase = rng.random(3) * 6.28
    base = np.stack([np.sin(x / 17 + phase[0]) * 60 + y / 2, np.cos(y / 23 + phase[1]) * 70 + x / 3,
                     (x + y) / 4 + 40 * np.sin(phase[2])], -1)
    return (base + rng.normal(0, 4, SHAPE) + 60).clip(0, 255).astype(np.uint8)


def _percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_us": ordered[len(ordered) // 2] / 1000, "p99_us": ordered[int(len(ordered) * 0.99)] / 1000}


def _switches() -> int:
    """Involuntary context switches of the calling thread so far (Linux): the kernel preempting it."""
    import resource

    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def _latency(log_image, calls: int, between, floors: dict | None = None) -> dict[str, float]:
    """Caller time of ``log_image(array)`` (the constructor's copy included), ``between(i)`` run
    after each call (untimed); beside it, in the same loop, the time of a no-op call (the
    machine's floor: a preempted no-op reads milliseconds too), and how many of each were
    preempted by the kernel (involuntary context switches during the call).

    With ``floors`` (``{name: call(array)}``), every ``between`` is followed by one timed call, in
    turn: the image's, the no-op, then each floor (so each is as cold as the image's call)."""
    images = [photo(i) for i in range(8)]
    clock = time.perf_counter_ns

    def noop(data) -> None:
        return None

    samples, floor = [], []
    preempted = preempted_noop = 0
    if floors is not None:
        extra: dict[str, list[int]] = {name: [] for name in floors}
        for i in range(calls):
            data = images[i % 8]
            start = clock()
            noop(data)
            floor.append(clock() - start)
            between(i)
            for name, call in floors.items():
                start = clock()
                call(data)
                extra[name].append(clock() - start)
                between(i)
            switches = _switches()
            start = clock()
            log_image(data)
            samples.append(clock() - start)
            preempted += _switches() != switches
            between(i)
        noop_stats = _percentiles(floor)
        found = {**_percentiles(samples), "noop_p50_us": noop_stats["p50_us"], "noop_p99_us": noop_stats["p99_us"],
                 "preempted_calls": preempted, "preempted_noops": 0, "calls": calls}
        for name, values in extra.items():
            found[f"{name}_p50_us"] = _percentiles(values)["p50_us"]
        return found
    for i in range(calls):
        data = images[i % 8]
        switches = _switches()
        start = clock()
        noop(data)
        floor.append(clock() - start)
        middle = _switches()
        start = clock()
        log_image(data)
        samples.append(clock() - start)
        end = _switches()
        preempted_noop += middle != switches
        preempted += end != middle
        between(i)
    noop_stats = _percentiles(floor)
    return {**_percentiles(samples), "noop_p50_us": noop_stats["p50_us"], "noop_p99_us": noop_stats["p99_us"],
            "preempted_calls": preempted, "preempted_noops": preempted_noop, "calls": calls}


def _bursts(i: int) -> None:
    if i % 50 == 49:
        time.sleep(0.05)  # 50 calls back to back, then a pause (the worker can't keep up: a backlog grows)


def tracklet_latency(root: str, calls: int, between=_bursts, floors: bool = False) -> dict[str, float]:
    run = tracklet.init(project="bench-media", dir=root, settings={**QUIET, "media_queue": calls + 1})
    log, image = run.log, tracklet.Image
    reused = np.empty(int(np.prod(SHAPE)), np.uint8)
    extra = None
    if floors:
        def log_float(data) -> None:
            log({"loss": 0.5})

        def copy(data) -> None:
            memoryview(reused)[:] = memoryview(data).cast("B")  # a memcpy that keeps the GIL, as the pool's

        extra = {"log_float": log_float, "memcpy": copy}
    result = _latency(lambda data: log({"img": image(data)}), calls, between, extra)
    worker = run._logged
    run.finish()
    return {**result, "dropped": worker.dropped if worker else 0}


def wandb_latency(root: str, calls: int, between=_bursts) -> dict[str, float] | None:
    try:
        import wandb
    except ImportError:
        return None
    if getattr(wandb, "__file__", "").startswith(str(ROOT / "tracklet")):
        return None  # tracklet's compat layer, not W&B (a venv inside the checkout holds the real one)
    os.environ.update({"WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true", "WANDB_X_DISABLE_STATS": "true"})
    run = wandb.init(project="bench-media", mode="offline", dir=root)
    log, image = run.log, wandb.Image
    result = _latency(lambda data: log({"img": image(data)}), calls, between)
    run.finish()
    return result


def _make_step(target_ms: float):
    """A numpy "training step" and the repeats that make one step take ``target_ms`` of CPU time
    on this machine, as measured here and now (not assumed from another machine's speed).

    The repeats are first estimated by doubling them until a step takes a tenth of the target,
    then checked by timing whole steps with the clock the benchmark's step figures are read with
    (``process_time``), and scaled until the median of 3 steps is within 5% of the target (at most
    4 passes). The step's values stay in float's normal range (``+ 0.5`` keeps tanh's fixed point
    away from 0; without it they decayed into subnormals after ~1,000 repeats, whose arithmetic
    is 10-100x slower on some CPUs): its time is proportional to its repeats. The step sized by
    doubling alone ran 24 ms of CPU, not 200, on the 16-core GPU machine (Python 3.12).

    CPU, not wall time: on a loaded machine a wall-clock 200 ms holds a fraction of that in work,
    and every overhead would read as a larger share of a smaller step."""
    a = np.random.default_rng(1).random((96, 96))

    def step(repeats: int) -> float:
        x = a
        for _ in range(repeats):
            x = np.tanh(x @ a * 0.01 + 0.5)
        return float(x[0, 0])

    clock = time.process_time
    target = target_ms / 1000

    def timed(repeats: int) -> float:
        start = clock()
        step(repeats)
        return clock() - start

    repeats = 1
    while (spent := timed(repeats)) < target / 10 and repeats < 1 << 20:
        repeats *= 2
    repeats = max(1, round(repeats * target / max(spent, 1e-6)))
    for _ in range(4):
        measured = statistics.median(timed(repeats) for _ in range(3))
        if abs(measured - target) <= 0.05 * target:
            break
        repeats = max(1, round(repeats * target / max(measured, 1e-6)))
    return step, repeats


def step_slowdown(root: str, steps: int, rounds: int, step_ms: float) -> dict[str, float]:
    run = tracklet.init(project="bench-media", dir=root, settings=QUIET)
    step, repeats = _make_step(step_ms)  # sized with the run started: in the state the loop runs in
    pictures = [photo(i) for i in range(steps)]
    cpu, wall = time.process_time, time.perf_counter
    ratios: dict[str, list[float]] = {"cpu": [], "wall": []}
    plain_ms: list[float] = []
    plain_cpu_ms: list[float] = []
    added_cpu_ms: list[float] = []
    for _ in range(rounds):
        start_cpu, start_wall = cpu(), wall()
        for i in range(steps):
            value = step(repeats)
            pictures[i].copy()  # the caller's copy, not logged
        plain_cpu, plain_wall = cpu() - start_cpu, wall() - start_wall
        pictures = [picture + 1 for picture in pictures]  # new images each round: no dedupe shortcut
        start_cpu, start_wall = cpu(), wall()
        for i in range(steps):
            value = step(repeats)
            run.log({"img": tracklet.Image(pictures[i]), "loss": value})
        run.flush()  # wakes the media worker's lanes and waits for them: its work is paid in the block
        tracked_cpu, tracked_wall = cpu() - start_cpu, wall() - start_wall
        plain_ms.append(plain_wall / steps * 1000)
        plain_cpu_ms.append(plain_cpu / steps * 1000)
        added_cpu_ms.append((tracked_cpu - plain_cpu) / steps * 1000)
        ratios["cpu"].append(tracked_cpu / plain_cpu)
        ratios["wall"].append(tracked_wall / plain_wall)
    dropped = run._logged.dropped if run._logged else 0
    run.finish()
    cpu_ratio, wall_ratio = statistics.median(ratios["cpu"]), statistics.median(ratios["wall"])
    return {"step_ms": statistics.median(plain_ms), "step_cpu_ms": statistics.median(plain_cpu_ms),
            "cpu_slowdown_pct": (cpu_ratio - 1) * 100, "wall_slowdown_pct": (wall_ratio - 1) * 100,
            "added_ms_per_step_cpu": statistics.median(added_cpu_ms), "dropped": dropped}


def worker_cpu(root: str, images: int, rounds: int) -> dict[str, float]:
    """CPU time the media worker spends per new 224×224×3 image (convert, PNG, sha256, blob write,
    the record), measured on this thread (``thread_time``: what a core does for it, whoever runs
    it): the median of ``rounds`` rounds, with ISA-L's deflate (when installed) and with zlib's."""
    from tracklet.core.logged import Placement
    from tracklet.media import image as image_module
    from tracklet.media.worker import Context

    context = Context(Path(root), lambda token, message: None)
    pictures = [photo(1000 + i) for i in range(images)]
    found: dict[str, float] = {}
    deflaters = {"isal": image_module._isal_deflate(), "zlib": None}
    for name, deflater in deflaters.items():
        if name == "isal" and deflater is None:
            continue
        image_module._ISAL = deflater
        per_round = []
        for round_ in range(rounds):
            fresh = [picture ^ np.uint8(round_ + 1 + 16 * (name == "zlib")) for picture in pictures]  # new blobs
            start = time.thread_time()
            for i, picture in enumerate(fresh):
                tracklet.Image(picture)._record(context, Placement("img", i, 0, 1, 0.0))
            per_round.append((time.thread_time() - start) / images * 1000)
        found[f"{name}_ms"] = statistics.median(per_round)
    image_module._ISAL = image_module._UNSET
    return found


FIRST_BURSTS = 8


def first_bursts(bursts: int = FIRST_BURSTS, early: bool = False) -> dict[str, object]:
    """A run's first bursts of 50 images back to back (a 50 ms pause after each), in a process
    that has not logged media before (the media encoders not imported yet): per burst, the page
    faults of the calling thread (copies into fresh memory: the pool has no buffers yet) and the
    caller's p50; and the seconds from the first ``log()`` to the worker's first recorded image
    (it imports its encoders first). ``early``: ``tracklet.Image`` is looked up before ``init()``
    and 0.5 s of "setup" follow it (a script that imports what it logs at its top), else the
    first ``tracklet.Image`` is touched in the first burst (the worst case)."""
    import resource

    images = [photo(i) for i in range(8)]
    clock = time.perf_counter_ns
    faults: list[int] = []
    p50s: list[float] = []
    first_record = None
    with tempfile.TemporaryDirectory() as root:
        if early:
            tracklet.Image  # noqa: B018 (the lookup imports tracklet.media)
        run = tracklet.init(project="bench-media", dir=root, settings={**QUIET, "media_queue": 50 * bursts + 1})
        if early:
            time.sleep(0.5)
        started = time.perf_counter()

        def look() -> None:
            nonlocal first_record
            if first_record is None and run._logged is not None and run._logged.recorded:
                first_record = time.perf_counter() - started

        for _ in range(bursts):
            times = []
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for i in range(50):
                start = clock()
                run.log({"img": tracklet.Image(images[i % 8])})
                times.append(clock() - start)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
            p50s.append(statistics.median(times) / 1000)
            look()
            time.sleep(0.05)
            look()
        while first_record is None and time.perf_counter() - started < 30:
            time.sleep(0.01)
            look()
        run.finish()
    return {"faults": faults, "p50_us": p50s, "first_record_s": first_record}


def _first_bursts_ab(baseline: Path | None, rounds: int) -> list[list[str]]:
    """``first_bursts`` in fresh child processes, this checkout and ``baseline``'s alternating."""
    import json
    import subprocess

    trees = [("this checkout", ROOT)] + ([("baseline", baseline)] if baseline else [])
    found: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(rounds):
        for early in (False, True):
            for label, tree in trees:
                command = [sys.executable, str(Path(__file__).resolve()), "--child-first"]
                if early:
                    command.append("--early")
                env = {**os.environ, "MEDIA_BENCH_TREE": str(tree), "PYTHONPATH": str(tree)}
                output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
                found.setdefault((label, early), []).append(json.loads(output.strip().splitlines()[-1]))
    rows = []
    for (label, early), runs in found.items():
        when = "Image imported before init, 0.5 s setup" if early else "first Image in the burst"
        faults = [statistics.median(column) for column in zip(*(run["faults"] for run in runs))]
        p50s = [statistics.median(column) for column in zip(*(run["p50_us"] for run in runs))]
        first = [run["first_record_s"] for run in runs if run["first_record_s"] is not None]
        rows.append([f"first {FIRST_BURSTS} bursts of 50, {label}, {when}: caller faults per burst",
                     " ".join(f"{value:.0f}" for value in faults),
                     "p50 per burst " + " ".join(f"{value:.0f}" for value in p50s) + " us; first image recorded "
                     + (f"{statistics.median(first):.2f} s" if first else "never") + " after the first log() "
                     f"(medians of {len(runs)} runs)"])
    return rows


def _child(calls: int, steps: int, rounds: int, step_ms: float) -> dict[str, object]:
    """The measures ``--baseline`` repeats for each checkout: per-step caller latency (with its
    floors) and the step slowdown."""
    step, repeats = _make_step(STEP_MS_LATENCY)
    with tempfile.TemporaryDirectory() as root:
        return {"tracklet": str(Path(tracklet.__file__).parents[1]),
                "per_step": tracklet_latency(root, calls, lambda i: step(repeats), floors=True),
                "step": step_slowdown(root, steps, rounds, step_ms)}


def _ab(baseline: Path, args: argparse.Namespace, calls: int, steps: int, rounds: int) -> list[list[str]]:
    """This checkout against ``baseline``'s, in child processes, alternating twice."""
    import json
    import subprocess

    found: dict[str, list[dict]] = {"this checkout": [], "baseline": []}
    for _ in range(2):
        for label, tree in (("this checkout", ROOT), ("baseline", baseline)):
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "--step-ms", str(args.step_ms)]
            if args.short:
                command.append("--short")
            env = {**os.environ, "MEDIA_BENCH_TREE": str(tree), "PYTHONPATH": str(tree)}
            output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            found[label].append(json.loads(output.strip().splitlines()[-1]))
    rows = []
    for label, runs in found.items():
        per_step = [run["per_step"] for run in runs]
        slow = [run["step"] for run in runs]

        def median(values: list[float]) -> float:
            return statistics.median(values)

        rows.append([f"A/B {label} ({runs[0]['tracklet']}): log(Image) per step p50, floors",
                     f"{median([r['p50_us'] for r in per_step]):.1f} us",
                     f"no-op {median([r['noop_p50_us'] for r in per_step]):.1f}, log(float) "
                     f"{median([r['log_float_p50_us'] for r in per_step]):.1f}, memcpy 150 KB "
                     f"{median([r['memcpy_p50_us'] for r in per_step]):.1f} us (medians of 2 runs)"])
        rows.append([f"A/B {label}: one image per step, slowdown (CPU / wall)",
                     f"{median([r['cpu_slowdown_pct'] for r in slow]):.1f}% / "
                     f"{median([r['wall_slowdown_pct'] for r in slow]):.1f}%",
                     f"+{median([r['added_ms_per_step_cpu'] for r in slow]):.2f} ms CPU per image "
                     "(runs: " + ", ".join(f"{r['wall_slowdown_pct']:.1f}" for r in slow) + "% wall)"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--targets", action="store_true",
                        help="only issue #16's two figures (caller p50 beside W&B's, the step slowdown): ~40 s")
    parser.add_argument("--step-ms", type=float, default=200.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure beside this one (A/B)")
    parser.add_argument("--first-bursts", type=int, default=0, metavar="ROUNDS",
                        help="only the first-bursts measure, in ROUNDS fresh processes per checkout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--early", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    calls, wandb_calls, steps, rounds = (300, 100, 5, 5) if args.short else (1000, 300, 10, 9)
    if args.child_first:
        import json

        print(json.dumps(first_bursts(early=args.early)))
        return
    if args.first_bursts:
        rows = _first_bursts_ab(args.baseline.resolve() if args.baseline else None, args.first_bursts)
        print_table(rows, ["measure", "value", "note"])
        print("load average (1, 5, 15 min): " + ", ".join(f"{value:.1f}" for value in os.getloadavg()))
        return
    if args.child:
        import json

        print(json.dumps(_child(calls // 3, steps, rounds, args.step_ms)))
        return
    results: dict[str, object] = {}
    if args.targets:
        with tempfile.TemporaryDirectory() as root:
            results["tracklet"] = ours = tracklet_latency(root, calls)
            results["wandb"] = theirs = wandb_latency(root, wandb_calls)
            results["step"] = slow = step_slowdown(root, 10, 7, args.step_ms)
        results["load_average"] = os.getloadavg()
        results["targets"] = targets = issue_targets(ours, theirs, slow, None)
        print("\n".join(targets))
        print("load average (1, 5, 15 min): " + ", ".join(f"{value:.1f}" for value in os.getloadavg()))
        write_json(args.json, results)
        return
    step, repeats = _make_step(STEP_MS_LATENCY)

    def train_step(i: int) -> None:
        step(repeats)

    with tempfile.TemporaryDirectory() as root:
        results["tracklet"] = ours = tracklet_latency(root, calls)
        results["wandb"] = theirs = wandb_latency(root, wandb_calls)
        results["tracklet_per_step"] = ours_step = tracklet_latency(root, calls // 3, train_step, floors=True)
        results["wandb_per_step"] = theirs_step = wandb_latency(root, wandb_calls // 3, train_step)
        results["worker"] = encoder = worker_cpu(root, 20, rounds)
        results["step"] = slow = step_slowdown(root, steps, rounds, args.step_ms)
    rows = []
    for label, mine, peer in (("in bursts of 50", ours, theirs),
                              (f"one per {STEP_MS_LATENCY:.0f} ms numpy step", ours_step, theirs_step)):
        rows.append([f"tracklet log(Image 224x224x3), {label}: p50 / p99",
                     f"{mine['p50_us']:.1f} / {mine['p99_us']:.1f} us",
                     f"no-op beside it {mine['noop_p50_us']:.2f} / {mine['noop_p99_us']:.1f} us; preempted "
                     f"{mine['preempted_calls']} / no-op {mine['preempted_noops']} of {mine['calls']}; "
                     f"dropped {mine['dropped']}"])
        if "memcpy_p50_us" in mine:
            rows.append(["  floors after each step, p50: log({'loss': float}) / bare memcpy of the image",
                         f"{mine['log_float_p50_us']:.1f} / {mine['memcpy_p50_us']:.1f} us",
                         f"the image's log() above is "
                         f"{mine['p50_us'] - mine['log_float_p50_us'] - mine['memcpy_p50_us']:.1f} us over their sum"])
        if peer:
            rows.append([f"W&B offline log(wandb.Image), {label}: p50 / p99",
                         f"{peer['p50_us']:.1f} / {peer['p99_us']:.1f} us",
                         f"tracklet is 1/{peer['p50_us'] / mine['p50_us']:.0f} of it (p50)"])
    for name, ms in encoder.items():
        rows.append([f"worker CPU per image ({name.removesuffix('_ms')} deflate)", f"{ms:.2f} ms",
                     f"{ms / args.step_ms * 100:.2f}% of a {args.step_ms:.0f} ms step"])
    rows.append([f"one image per {slow['step_cpu_ms']:.0f} ms (CPU) step, {slow['step_ms']:.0f} ms wall: "
                 "slowdown (CPU / wall)",
                 f"{slow['cpu_slowdown_pct']:.1f}% / {slow['wall_slowdown_pct']:.1f}%",
                 f"+{slow['added_ms_per_step_cpu']:.2f} ms CPU per image ({_share(slow)}); dropped {slow['dropped']}"])
    rows += _first_bursts_ab(args.baseline.resolve() if args.baseline else None, 1 if args.short else 2)
    if args.baseline:
        rows += _ab(args.baseline.resolve(), args, calls, steps, rounds)
    load = os.getloadavg()
    results["load_average"] = load
    print_table(rows, ["measure", "value", "note"])
    print("load average (1, 5, 15 min): " + ", ".join(f"{value:.1f}" for value in load))
    results["targets"] = targets = issue_targets(ours, theirs, slow, ours_step)
    print("\n".join(targets))
    write_json(args.json, results)


def _share(slow: dict) -> str:
    """The image's added CPU as a share of the step it was logged in."""
    return f"{slow['added_ms_per_step_cpu'] / slow['step_cpu_ms'] * 100:.2f}% of the {slow['step_cpu_ms']:.0f} ms step"


def issue_targets(ours: dict, theirs: dict | None, slow: dict, per_step: dict | None) -> list[str]:
    """Issue #16's two media figures, as the issue defines them, each against its target, and
    the per-step cold-cache figure as information (the lead's decision: not a target)."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    p50 = ours["p50_us"]
    lines = ["", "Issue #16 targets (benchmarks/media.py):",
             f"  1. log({{'img': Image(uint8 224x224x3)}}) caller p50: {p50:.1f} us (target <= 50 us: "
             f"{verdict(p50 <= 50)})"]
    if theirs:
        ratio = theirs["p50_us"] / p50
        lines.append(f"     W&B offline log(wandb.Image) p50 {theirs['p50_us']:.1f} us in the same run: tracklet is "
                     f"1/{ratio:.0f} of it (target <= 1/20: {verdict(ratio >= 20)})")
    else:
        lines.append("     W&B ratio: not measured (wandb is not installed: pip install wandb)")
    noise = " (negative: below this run's noise)" if min(slow["wall_slowdown_pct"], slow["cpu_slowdown_pct"]) < 0 else ""
    lines.append(f"  2. one image per {slow['step_cpu_ms']:.0f} ms (CPU) step ({slow['step_ms']:.0f} ms wall here): "
                 f"slowdown {slow['wall_slowdown_pct']:.2f}% wall (target <= 1%: "
                 f"{verdict(slow['wall_slowdown_pct'] <= 1)}), {slow['cpu_slowdown_pct']:.2f}% CPU (the figure that "
                 f"holds under load: {verdict(slow['cpu_slowdown_pct'] <= 1)}){noise}; "
                 f"each image +{slow['added_ms_per_step_cpu']:.2f} ms CPU ({_share(slow)}); dropped {slow['dropped']}")
    if per_step is not None:
        lines.append(f"  information, not a target: the same call once after each {STEP_MS_LATENCY:.0f} ms numpy "
                     f"step (cold caches) p50 {per_step['p50_us']:.1f} us (benchmarks/media_floor.py breaks it down)")
    return lines


if __name__ == "__main__":
    main()
