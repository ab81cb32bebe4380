"""What does the JAX integration cost a training loop? One run, one table.

    python benchmarks/integration_jax.py            # full run (~1 minute on CPU)
    python benchmarks/integration_jax.py --short    # quick check (~15 s)
    python benchmarks/integration_jax.py --json out.json

(a) the wrapper's cost on the caller's thread: a step function that returns a ready-made dict of
    10 jax scalars, called bare and through ``track_step`` (median per call, interleaved blocks),
    and ``run.log`` of the same dict called directly (the part that is the core's, not the wrapper's).
(b) slowdown of a jitted MLP train step (optax adam, 10 metrics returned) tracked with
    ``track_step``, against the same loop untracked, in the same rounds: CPU time of the whole
    process (the sender's thread converting the arrays counts) and wall time. Reference, same
    rounds: logging ``{k: float(v)}`` by hand, which syncs with the device every step.
(c) the sender's cost per row of 10 jax scalars (converted on its thread) against 10 floats.
(d) one compilation event through ``watch_compilation``'s listener (it logs one row).

Runs on whatever backend jax picks (CPU here; on a GPU the device-sync reference in (b) costs
far more, since the Python loop then stops running ahead of the device at every step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import tracklet  # noqa: E402
from tracklet.integrations import jax as tj  # noqa: E402
from tracklet.integrations.jax import track_step, watch_compilation  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
NAMES = [f"metric_{i}" for i in range(10)]


def wrapper_cost(root: str, calls: int, rounds: int) -> dict[str, float]:
    """Per call, on the caller's thread only: every block starts with the sender idle (flushed,
    untimed), so its conversions of earlier rows do not compete for the GIL inside the block."""
    ready = {name: jnp.float32(i) for i, name in enumerate(NAMES)}
    prefixed = {f"log/{name}": value for name, value in ready.items()}
    jax.block_until_ready(ready)

    def step(x):
        return x, ready

    # Blocks of fewer rows than batch_size and a long flush interval: the sender wakes only at the
    # untimed flush between blocks.
    run = tracklet.init(project="bench-jax", dir=root, settings={**QUIET, "flush_interval": 60.0})
    assert calls < run.settings.batch_size
    tracked = track_step(step, run=run)
    tracked_10 = track_step(step, run=run, every=10, prefix="every10/")
    counter = [0]

    def log_by_hand(x):  # what track_step hands to run.log, called directly: the core's share
        counter[0] += 1
        run.log(prefixed, step=counter[0])

    clock = time.perf_counter_ns
    samples: dict[str, list[float]] = {"bare": [], "log": [], "tracked": [], "tracked_10": []}
    for _ in range(rounds):
        for name, fn in (("bare", step), ("log", log_by_hand), ("tracked", tracked), ("tracked_10", tracked_10)):
            run.flush()
            counter[0] = run.step + 1
            begin = clock()
            for i in range(calls):
                fn(i)
            samples[name].append((clock() - begin) / calls / 1000)
    run.finish()
    median = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "bare_call_us": median["bare"],
        "run_log_10_jax_us": median["log"],
        "tracked_overhead_us": median["tracked"] - median["bare"],
        "tracked_every10_overhead_us": median["tracked_10"] - median["bare"],
    }


def _mlp_problem(width: int, batch: int):
    rng = np.random.default_rng(0)
    din = 32
    params = {
        "w1": jnp.asarray(rng.normal(size=(din, width)) / np.sqrt(din), jnp.float32),
        "b1": jnp.zeros(width),
        "w2": jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), jnp.float32),
        "b2": jnp.zeros(width),
        "w3": jnp.asarray(rng.normal(size=(width, 1)) / np.sqrt(width), jnp.float32),
    }
    tx = optax.adam(1e-3)
    x = jnp.asarray(rng.normal(size=(batch, din)), jnp.float32)
    y = jnp.sin(x.sum(axis=1, keepdims=True))

    @jax.jit
    def train_step(params, opt_state):
        def loss_fn(p):
            h = jax.nn.relu(x @ p["w1"] + p["b1"])
            h = jax.nn.relu(h @ p["w2"] + p["b2"])
            pred = h @ p["w3"]
            return jnp.mean((pred - y) ** 2), pred

        (loss, pred), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "pred_mean": pred.mean(), "pred_std": pred.std()}
        metrics.update({f"norm_{k}": jnp.linalg.norm(v) for k, v in params.items()})
        metrics["update_norm"] = optax.tree.norm(updates)
        return params, opt_state, metrics  # 10 metrics

    return train_step, params, tx.init(params)


def step_slowdown(root: str, steps: int, rounds: int, width: int, batch: int) -> dict[str, float]:
    train_step, params, opt_state = _mlp_problem(width, batch)
    run = tracklet.init(project="bench-jax", dir=root, settings=QUIET)
    tracked = track_step(train_step, run=run)
    state = {"p": params, "s": opt_state}

    def plain_loop():
        p, s = state["p"], state["s"]
        for _ in range(steps):
            p, s, metrics = train_step(p, s)
        jax.block_until_ready((p, s, metrics))

    def tracked_loop():
        p, s = state["p"], state["s"]
        for _ in range(steps):
            p, s, metrics = tracked(p, s)
        jax.block_until_ready((p, s, metrics))
        run.flush()  # the sender's conversions for these rows are paid inside the block

    def by_hand_loop():
        p, s = state["p"], state["s"]
        for _ in range(steps):
            p, s, metrics = train_step(p, s)
            run.log({f"hand/{k}": float(v) for k, v in metrics.items()})  # a device sync per value
        jax.block_until_ready((p, s, metrics))
        run.flush()

    for loop in (plain_loop, tracked_loop, by_hand_loop):  # compile and warm up
        loop()
    cpu, wall = time.process_time, time.perf_counter
    plain_times: list[float] = []
    ratios: dict[str, list[float]] = {"cpu": [], "wall": [], "hand_cpu": [], "hand_wall": []}
    for _ in range(rounds):
        measured = {}
        for name, loop in (("plain", plain_loop), ("tracked", tracked_loop), ("hand", by_hand_loop)):
            start_cpu, start_wall = cpu(), wall()
            loop()
            measured[name] = (cpu() - start_cpu, wall() - start_wall)
        plain_times.append(measured["plain"][1] / steps)
        ratios["cpu"].append(measured["tracked"][0] / measured["plain"][0])
        ratios["wall"].append(measured["tracked"][1] / measured["plain"][1])
        ratios["hand_cpu"].append(measured["hand"][0] / measured["plain"][0])
        ratios["hand_wall"].append(measured["hand"][1] / measured["plain"][1])
    run.finish()
    pct = {name: (statistics.median(values) - 1) * 100 for name, values in ratios.items()}
    return {
        "step_us": statistics.median(plain_times) * 1e6,
        "slowdown_cpu_pct": pct["cpu"],
        "slowdown_wall_pct": pct["wall"],
        "by_hand_float_cpu_pct": pct["hand_cpu"],
        "by_hand_float_wall_pct": pct["hand_wall"],
    }


def sender_cost(root: str, rows: int) -> dict[str, float]:
    jax_row = {name: jnp.float32(i) for i, name in enumerate(NAMES)}
    jax.block_until_ready(jax_row)
    float_row = {name: float(i) for i, name in enumerate(NAMES)}
    out = {}
    for label, row in (("floats", float_row), ("jax", jax_row)):
        run = tracklet.init(project="bench-jax", dir=root, settings=QUIET)
        for _ in range(rows):
            run.log(row)
        run.flush()
        begin = time.process_time()
        for _ in range(rows):
            run.log(row)
        run.flush()
        out[f"{label}_row_us"] = (time.process_time() - begin) / rows * 1e6
        run.finish()
    return {"sender_float_row_us": out["floats_row_us"], "sender_jax_row_us": out["jax_row_us"]}


def compile_event_cost(root: str, events: int) -> dict[str, float]:
    run = tracklet.init(project="bench-jax", dir=root, settings=QUIET)
    watcher = watch_compilation(run, warn_after=None)
    begin = time.perf_counter()
    for _ in range(events):
        tj._on_duration_event(tj.BACKEND_COMPILE_EVENT, 0.01, fun_name="jit(step)")
    per_event = (time.perf_counter() - begin) / events
    begin = time.perf_counter()
    for _ in range(events):
        tj._on_duration_event("/jax/some/other_event", 0.01, fun_name="jit(step)")
    per_other = (time.perf_counter() - begin) / events
    watcher.stop()
    run.finish()
    return {"compile_event_us": per_event * 1e6, "other_event_us": per_other * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--width", type=int, default=256, help="MLP width of the (b) train step")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    short = args.short
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        results.update(wrapper_cost(root, calls=1000, rounds=15 if short else 41))
        results.update(step_slowdown(root, steps=200, rounds=7 if short else 21, width=args.width, batch=args.batch))
        results.update(sender_cost(root, rows=5000 if short else 20000))
        results.update(compile_event_cost(root, events=2000))
    backend = jax.default_backend()
    rows = [
        ("(a) track_step on the caller's thread, 10 jax scalars, every call", f"{results['tracked_overhead_us']:.2f} µs"),
        ("(a) of which run.log(10 jax scalars, step=) itself", f"{results['run_log_10_jax_us']:.2f} µs"),
        ("(a) the same, every=10", f"{results['tracked_every10_overhead_us']:.2f} µs"),
        ("(b) jitted MLP step (untracked)", f"{results['step_us']:.0f} µs"),
        ("(b) slowdown with track_step, CPU time", f"{results['slowdown_cpu_pct']:.2f} %"),
        ("(b) slowdown with track_step, wall time", f"{results['slowdown_wall_pct']:.2f} %"),
        ("(b) reference: run.log({k: float(v)}) by hand, CPU time", f"{results['by_hand_float_cpu_pct']:.2f} %"),
        ("(b) reference: the same, wall time", f"{results['by_hand_float_wall_pct']:.2f} %"),
        ("(c) sender, per row of 10 floats", f"{results['sender_float_row_us']:.2f} µs"),
        ("(c) sender, per row of 10 jax scalars", f"{results['sender_jax_row_us']:.2f} µs"),
        ("(d) one compile event, watched", f"{results['compile_event_us']:.2f} µs"),
        ("(d) one other jax.monitoring duration event", f"{results['other_event_us']:.2f} µs"),
    ]
    print(f"jax {jax.__version__}, backend {backend}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print_table(rows)
    write_json(args.json, {"backend": backend, "jax": jax.__version__, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
