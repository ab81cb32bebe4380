"""What the Hugging Face ``TrackletCallback`` costs a ``Trainer``.

    python benchmarks/integration_huggingface.py            # ~1 minute
    python benchmarks/integration_huggingface.py --short    # a quick run
    python benchmarks/integration_huggingface.py --json out.json

(a) ``on_log`` on the training thread for a typical 4-key training log (median, p99), next to
    ``run.log`` of the same row: the callback's own share is the difference.
(b) ``on_save`` on the training thread (the checkpoint digest runs on tracklet's thread), and how
    long that digest takes there for a tiny BERT checkpoint.
(c) ``on_train_begin``: starting the run and recording model config, TrainingArguments and
    parameter counts.
(d) ``on_log`` inside a real ``Trainer`` run, every step logged: the step's compute has just
    evicted the CPU caches, so this is slower than (a), and closer to what training pays.
(e) a tiny BERT (2 layers, hidden 32) trained on the CPU with ``logging_steps=1``: process CPU
    time (every thread) and wall time per step with the callback against the same Trainer
    without it, in interleaved rounds, best of the rounds. The steps take a few ms, far less than
    any real model's, so this is the worst case for the ratio; on a shared machine the rounds
    vary by more than the callback costs, so read (a)-(d) for its cost and (e) as a bound.

Runs are QUIET (no console capture, environment capture or system monitor): this measures the
callback, not those features (see benchmarks/overhead.py and benchmarks/system_monitor.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402

import tracklet  # noqa: E402
from tracklet.core.checkpoints import digest  # noqa: E402
from tracklet.integrations.huggingface import TrackletCallback, rewrite_logs  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
LOGS = {"loss": 0.6931, "grad_norm": 0.52, "learning_rate": 4.375e-05, "epoch": 0.25}

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", category=UserWarning)


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, size: int = 64, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, 100, (size, length), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        ids = self.input_ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[index]}


def tiny_model() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return transformers.BertForSequenceClassification(config)


def training_args(output_dir: str, **overrides) -> transformers.TrainingArguments:
    arguments = dict(
        output_dir=output_dir, per_device_train_batch_size=4, logging_steps=1, eval_strategy="no",
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
    )
    arguments.update(overrides)
    return transformers.TrainingArguments(**arguments)


class _State:
    is_world_process_zero = True
    global_step = 0
    epoch = 0.0
    best_metric = None
    best_global_step = None
    best_model_checkpoint = None
    trial_name = None


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    samples_ns.sort()
    return samples_ns[len(samples_ns) // 2] / 1000, samples_ns[int(len(samples_ns) * 0.99)] / 1000


def on_log_latency(root: str, calls: int) -> dict[str, float]:
    args = training_args(os.path.join(root, "out"))
    state = _State()
    callback = TrackletCallback(project="bench", dir=root, settings=QUIET)
    callback.on_train_begin(args, state, None, model=tiny_model())
    run = callback.run
    clock = time.perf_counter_ns
    hook, direct = [], []
    for step in range(1, calls + 1):
        state.global_step = step
        start = clock()
        callback.on_log(args, state, None, logs=LOGS)
        hook.append(clock() - start)
    row = {**rewrite_logs(LOGS), "train/global_step": 0}
    for step in range(calls + 1, 2 * calls + 1):
        row["train/global_step"] = step
        start = clock()
        run.log(row, step=step)
        direct.append(clock() - start)
    run.finish()
    hook_median, hook_p99 = _percentiles(hook)
    log_median, log_p99 = _percentiles(direct)
    return {"on_log_median_us": hook_median, "on_log_p99_us": hook_p99, "log_median_us": log_median,
            "log_p99_us": log_p99}


def on_save_and_setup(root: str, rounds: int) -> dict[str, float]:
    output_dir = os.path.join(root, "save")
    model = tiny_model()
    checkpoint = os.path.join(output_dir, "checkpoint-1")
    model.save_pretrained(checkpoint)
    torch.save({"state": [torch.zeros(1000) for _ in range(20)]}, os.path.join(checkpoint, "optimizer.pt"))
    args = training_args(output_dir)
    state = _State()
    state.global_step = 1
    setups, saves, digests = [], [], []
    for _ in range(rounds):
        callback = TrackletCallback(project="bench", dir=root, settings=QUIET)
        start = time.perf_counter()
        callback.on_train_begin(args, state, None, model=model)
        setups.append(time.perf_counter() - start)
        callback.on_save(args, state, None)  # the first one also starts the digest thread
        for _ in range(10):
            start = time.perf_counter()
            callback.on_save(args, state, None)
            saves.append(time.perf_counter() - start)
        callback.run.finish()
        start = time.perf_counter()
        digest(Path(checkpoint))
        digests.append(time.perf_counter() - start)
    size = sum(f.stat().st_size for f in Path(checkpoint).iterdir())
    return {
        "on_train_begin_ms": statistics.median(setups) * 1000,
        "on_save_us": statistics.median(saves) * 1e6,
        "digest_ms": statistics.median(digests) * 1000,
        "checkpoint_kb": size / 1024,
    }


class _StepClock(transformers.TrainerCallback):
    """Process CPU time (every thread: tracklet's sender included) and wall time from the first
    step's start to the last step's start: every step in between, with its on_log calls."""

    def __init__(self) -> None:
        self.first = self.last = (0.0, 0.0)
        self.steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        now = (time.process_time(), time.perf_counter())
        if self.steps == 0:
            self.first = now
        self.last = now
        self.steps += 1


class _TimedCallback(TrackletCallback):
    """Times each ``on_log`` call inside a real Trainer (perf_counter: thread CPU clocks are a
    system call here, which costs more than what is measured)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.samples: list[int] = []

    def on_log(self, *args, **kwargs):
        start = time.perf_counter_ns()
        super().on_log(*args, **kwargs)
        self.samples.append(time.perf_counter_ns() - start)


def hook_time_in_training(root: str, steps: int) -> dict[str, float]:
    callback = _TimedCallback(project="bench", dir=root, settings=QUIET)
    trainer = transformers.Trainer(
        model=tiny_model(), args=training_args(os.path.join(root, "hooks"), max_steps=steps),
        train_dataset=RandomTokens(), callbacks=[callback],
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.train()
    median, p99 = _percentiles(callback.samples)
    return {"on_log_median_us": median, "on_log_p99_us": p99, "calls": len(callback.samples)}


def step_time(root: str, steps: int, with_tracklet: bool) -> tuple[float, float]:
    """(CPU, wall) seconds per step."""
    clock = _StepClock()
    callbacks = [clock]
    if with_tracklet:
        callbacks.append(TrackletCallback(project="bench", dir=root, settings=QUIET))
    trainer = transformers.Trainer(
        model=tiny_model(), args=training_args(os.path.join(root, "steps"), max_steps=steps),
        train_dataset=RandomTokens(), callbacks=callbacks,
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # no console output
    trainer.train()
    count = clock.steps - 1
    return (clock.last[0] - clock.first[0]) / count, (clock.last[1] - clock.first[1]) / count


def slowdown(root: str, steps: int, rounds: int) -> dict[str, float]:
    step_time(root, 20, True)  # warm up both paths
    step_time(root, 20, False)
    base, tracked = [], []
    for index in range(rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        for with_tracklet in order:
            (tracked if with_tracklet else base).append(step_time(root, steps, with_tracklet))
    # Best of the rounds, as timeit does: on a shared machine noise only ever adds time.
    cpu = min(c for c, _ in base), min(c for c, _ in tracked)
    wall = min(w for _, w in base), min(w for _, w in tracked)
    return {
        "step_cpu_ms": cpu[0] * 1000,
        "tracked_step_cpu_ms": cpu[1] * 1000,
        "slowdown_pct": (cpu[1] / cpu[0] - 1) * 100,
        "step_wall_ms": wall[0] * 1000,
        "tracked_step_wall_ms": wall[1] * 1000,
        "wall_slowdown_pct": (wall[1] / wall[0] - 1) * 100,
        "rounds": rounds,
        "steps": steps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="a quick run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    short = options.short
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as root:
        results["on_log"] = on_log_latency(root, 5_000 if short else 50_000)
        results["setup_save"] = on_save_and_setup(root, 5 if short else 20)
        results["hooks"] = hook_time_in_training(root, 100 if short else 500)
        results["training"] = slowdown(root, 100 if short else 300, 3 if short else 7)
    log, setup, training = results["on_log"], results["setup_save"], results["training"]
    rows = [
        ("on_log, 4-key training log: median", f"{log['on_log_median_us']:.2f} us"),
        ("on_log: p99", f"{log['on_log_p99_us']:.2f} us"),
        ("  run.log of the same row: median / p99", f"{log['log_median_us']:.2f} / {log['log_p99_us']:.2f} us"),
        ("on_save, training thread (after the first)", f"{setup['on_save_us']:.1f} us"),
        (f"  digest of a {setup['checkpoint_kb']:.0f} KB checkpoint, tracklet's thread", f"{setup['digest_ms']:.2f} ms"),
        ("on_train_begin (run start + config)", f"{setup['on_train_begin_ms']:.2f} ms"),
        (
            f"on_log inside a real Trainer ({results['hooks']['calls']} calls): median / p99",
            f"{results['hooks']['on_log_median_us']:.2f} / {results['hooks']['on_log_p99_us']:.2f} us",
        ),
        (
            f"tiny BERT step, CPU, no callback ({training['steps']} steps x {training['rounds']} rounds)",
            f"{training['step_cpu_ms']:.3f} ms",
        ),
        ("  with TrackletCallback, logging every step", f"{training['tracked_step_cpu_ms']:.3f} ms"),
        ("  slowdown, CPU (best of the rounds)", f"{training['slowdown_pct']:+.2f} %"),
        ("  slowdown, wall time", f"{training['wall_slowdown_pct']:+.2f} %"),
    ]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, tracklet {tracklet.__version__}")
    print_table(rows)
    write_json(options.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
