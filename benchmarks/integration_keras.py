"""What TrackletCallback costs a Keras 3 ``fit()``.

    python benchmarks/integration_keras.py                    # JAX backend (~1 minute)
    python benchmarks/integration_keras.py --backend torch
    python benchmarks/integration_keras.py --short            # fewer steps and rounds

(a) The callback's own hooks, called directly on the training thread: median cost of one
    ``on_train_batch_begin`` + ``on_train_batch_end`` pair, for a batch that logs nothing and for
    one that logs a row (with the learning rate read from an ExponentialDecay schedule).
(b) ``fit()`` time per training step of a small MLP, against the same ``fit()`` without
    callbacks, interleaved in rounds in one process (median per configuration): with
    TrackletCallback at log_freq "epoch", 100 and 1, and with a do-nothing Keras callback that
    overrides ``on_train_batch_end``, which is what any per-batch callback that is not
    ``async_safe`` costs (Keras then calls batch hooks on the training thread and converts the
    batch's logs to Python floats there, a device sync per batch).

All runs log to an active run started once, so ``init``/``finish`` are not in the step times.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"), choices=["jax", "torch"])
    parser.add_argument("--steps", type=int, default=400, help="training steps per timed fit()")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="--steps 150 --rounds 3")
    args = parser.parse_args()
    if args.short:
        args.steps, args.rounds = 150, 3
    os.environ["KERAS_BACKEND"] = args.backend  # before keras is imported: fixed per process
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch's intra-op threads would only add noise here

    import keras
    import numpy as np

    import tracklet
    from tracklet.integrations.keras import TrackletCallback

    with tempfile.TemporaryDirectory() as root:
        run = tracklet.init(
            project="bench", dir=root,
            settings={"console": "off", "capture_environment": False, "system_metrics": False},
        )
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((32,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ])
        schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.9)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse", metrics=["mae"])
        batch = 32
        x = np.random.default_rng(0).normal(size=(args.steps * batch, 32)).astype("float32")
        y = np.random.default_rng(1).normal(size=(args.steps * batch, 10)).astype("float32")
        model.fit(x[: 4 * batch], y[: 4 * batch], batch_size=batch, epochs=1, verbose=0)  # compile

        hooks = hook_costs(TrackletCallback, model, run)

        class NoOpBatchCallback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pass

        configs = {
            "no callbacks": list,
            "keras no-op batch callback": lambda: [NoOpBatchCallback()],
            'TrackletCallback(log_freq="epoch")': lambda: [TrackletCallback(checkpoints=False)],
            "TrackletCallback(log_freq=100)": lambda: [TrackletCallback(log_freq=100, checkpoints=False)],
            "TrackletCallback(log_freq=1)": lambda: [TrackletCallback(log_freq=1, checkpoints=False)],
        }
        times: dict[str, list[float]] = {name: [] for name in configs}
        cpu: dict[str, list[float]] = {name: [] for name in configs}
        order = list(configs.items())
        for _, make in order:  # a round not counted: first-use costs (compiles, thread pools)
            model.fit(x[: 20 * batch], y[: 20 * batch], batch_size=batch, epochs=1, verbose=0, callbacks=make())
        for round_number in range(args.rounds):
            for name, make in order if round_number % 2 else order[::-1]:  # alternate: no position bias
                started, started_cpu = time.perf_counter(), time.process_time()
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=make())
                times[name].append((time.perf_counter() - started) / args.steps)
                cpu[name].append((time.process_time() - started_cpu) / args.steps)
        run.finish()

    print(f"Keras {keras.__version__}, backend {args.backend}, {os.cpu_count()} CPUs; "
          f"MLP 32-128-128-10, batch {batch}, {args.steps} steps per fit, {args.rounds} rounds")
    print()
    print("(a) TrackletCallback hooks, one batch (begin + end), on the calling thread")
    for name, cost in hooks.items():
        print(f"    {name:<40} {cost:8.2f} us")
    print()
    print("(b) fit() per training step, median over rounds: wall time, and CPU time of the whole process")
    print("    (all threads: a busy machine stretches wall time, CPU time shows the work added)")
    base, base_cpu = statistics.median(times["no callbacks"]), statistics.median(cpu["no callbacks"])
    width = max(len(n) for n in configs)
    for name in configs:
        wall, work = statistics.median(times[name]), statistics.median(cpu[name])
        print(f"    {name:<{width}}  wall {wall * 1e6:8.1f} us {100 * (wall / base - 1):+6.1f}%"
              f"   CPU {work * 1e6:8.1f} us {100 * (work / base_cpu - 1):+6.1f}%")
    spread = (max(times["no callbacks"]) - min(times["no callbacks"])) / base
    if spread > 0.1:
        print(f"    note: the baseline's wall times spread over {100 * spread:.0f}% of their median: the machine is "
              "busy, so smaller wall-time differences are noise")
    return 0


def hook_costs(callback_class, model, run, calls: int = 5000) -> dict[str, float]:
    """Median microseconds of on_train_batch_begin + on_train_batch_end, called directly."""
    logs = {"loss": 0.5, "mae": 0.25}
    results = {}
    for label, freq in (("log_freq='epoch' (no row)", "epoch"), ("log_freq=1 (a row every batch)", 1)):
        cb = callback_class(log_freq=freq, checkpoints=False, run=run)
        cb.set_model(model)
        cb.set_params({"verbose": 0, "epochs": 1, "steps": calls})
        cb.on_train_begin()
        cb.on_epoch_begin(0)
        clock = time.perf_counter_ns
        samples = []
        for b in range(calls):
            started = clock()
            cb.on_train_batch_begin(b)
            cb.on_train_batch_end(b, logs)
            samples.append(clock() - started)
        cb.on_epoch_end(0, logs)
        cb.on_train_end()
        results[label] = statistics.median(samples) / 1000
    run.flush()
    return results


if __name__ == "__main__":
    sys.exit(main())
