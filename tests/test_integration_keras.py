"""Keras 3 integration (tracklet.integrations.keras.TrackletCallback).

Keras fixes its backend when it is first imported, and pytest runs every test file in one
process, so this file never imports keras itself: each scenario runs in a fresh interpreter with
KERAS_BACKEND set (``run_script``), prints what it saw as one JSON line, and the assertions read
the recorded runs back here through ``tracklet.Api``. The JAX scenarios and the torch one thus
work whatever another test file imported first. The whole file takes 15-50 s on a 2-core machine
(two JAX interpreters, one torch; most of it is importing and compiling).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # only matters if something in this process imports keras

import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import tracklet  # noqa: E402

from conftest import run_script  # noqa: E402


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


pytestmark = pytest.mark.skipif(not _have("keras"), reason="keras 3 is not installed")
needs_jax = pytest.mark.skipif(not _have("jax"), reason="jax is not installed")
needs_torch = pytest.mark.skipif(not _have("torch"), reason="torch is not installed")

QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}

# Shared by every script: 128 learnable rows, validation_split=0.25 leaves 96 = 6 batches of 16.
PRELUDE = """
import json, os, sys, threading, warnings
import numpy as np
import keras
import tracklet
from tracklet.integrations.keras import TrackletCallback

rng = np.random.default_rng(0)
x = rng.normal(size=(128, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(128, 1))).astype("float32")

def mlp(optimizer, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),  # 144 params
        keras.layers.BatchNormalization(),           # 32 trainable + 32 moving statistics
        keras.layers.Dense(1),                       # 17
    ])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"], **compile_kwargs)
    return model

def halve(epoch, lr):
    return 0.05 * 0.5 ** epoch

out = {}
"""
STEPS_PER_EPOCH = 6
PARAMS = {"total_params": 225, "trainable_params": 193, "non_trainable_params": 32}


def _run_keras(code: str, backend: str, cwd: Path, *, expect_rc: int = 0, timeout: float = 120,
               env: dict | None = None) -> dict:
    result = run_script(PRELUDE + code, env={**QUIET_ENV, "KERAS_BACKEND": backend, **(env or {})}, cwd=cwd,
                        timeout=timeout)
    assert result.returncode == expect_rc, result.stdout[-3000:] + result.stderr[-5000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(lines[-1])
    report["_stderr"] = result.stderr
    return report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5)


def _assert_epoch_rows(history: dict, steps: list[int], lrs: list[float]) -> dict:
    """Epoch rows sit at the global batch step of each epoch's end and hold epoch/epoch, the
    train and val metrics and the learning rate; returns {step: row}."""
    rows = {s: {k: history[k][i] for k in history} for i, s in enumerate(history["_step"])}
    for number, (step, lr) in enumerate(zip(steps, lrs, strict=True), start=1):
        row = rows[step]
        assert row["epoch/epoch"] == number
        for key in ("epoch/loss", "epoch/mae", "epoch/val_loss", "epoch/val_mae"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row)
        assert _close(row["epoch/learning_rate"], lr), row
    epoch_steps = [s for s, row in rows.items() if row.get("epoch/epoch") is not None]
    assert epoch_steps == steps
    return rows


def _expected_best_epochs(val_losses: list[float]) -> list[int]:
    best, improved = math.inf, []
    for number, value in enumerate(val_losses, start=1):
        if value < best:
            best = value
            improved.append(number)
    return improved


# ---------------------------------------------------------------------------------------------- JAX


JAX_MAIN = """
# 1. The callback starts and finishes its own run; ModelCheckpoints come after it in the list.
best = keras.callbacks.ModelCheckpoint("ckpt/best.keras", monitor="val_loss", save_best_only=True)
every = keras.callbacks.ModelCheckpoint("ckpt/w-{epoch:02d}.weights.h5", save_weights_only=True)
owned = TrackletCallback(project="keras", log_freq=2, name="owned")
model = mlp(keras.optimizers.SGD(0.05))
model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0,
          callbacks=[owned, best, every, keras.callbacks.LearningRateScheduler(halve)])
out["owned_run_left"] = owned.run is not None
out["current_after_owned"] = tracklet.run is not None

# 2. An active run is reused and left running; an LR schedule object; only this callback, so
#    Keras dispatches its batch hooks on worker threads (async), and rows must stay in order.
threads = set()
class Spy(TrackletCallback):
    def on_train_batch_end(self, batch, logs=None):
        threads.add(threading.current_thread() is threading.main_thread())
        super().on_train_batch_end(batch, logs)
run = tracklet.init(project="keras", name="reused")
run.log({"before": 1.0})  # the run is at step 1 when fit() begins
schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5)
model = mlp(keras.optimizers.Adam(schedule))
cb = Spy(log_freq=1)
model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0, callbacks=[cb])
out["reused_finished_after_fit"] = run.finished
out["reused_is_current"] = tracklet.run is run
out["ran_on_worker_thread"] = False in threads
out["schedule"] = [float(schedule(i)) for i in range(13)]
run.log({"after": 2.0})

# 3. Batch hooks that finish out of order (as async dispatch allows) are logged in batch order.
cb = TrackletCallback(log_freq=2, checkpoints=False)
cb.set_model(model)
cb.set_params({"verbose": 0, "epochs": 1, "steps": 6})
cb.on_train_begin()
cb.on_epoch_begin(0)
for b in range(6):
    cb.on_train_batch_begin(b)
for b in (1, 0, 3, 5, 2, 4):
    cb.on_train_batch_end(b, {"loss": float(b)})
cb.on_epoch_end(0, {"loss": 5.0, "val_loss": 6.0})
cb.on_train_end()
out["unordered_start"] = run.step

# 4. steps_per_execution=4 over 6 batches: hooks at batches 4 and 6 (Keras calls the short last
#    execution a full one: batch index 7), rows where a log_freq=3 interval ends.
model = mlp("sgd", steps_per_execution=4)
model.fit(x, y, batch_size=16, epochs=1, validation_split=0.25, verbose=0,
          callbacks=[TrackletCallback(log_freq=3, checkpoints=False)])
run.finish()
out["reused"] = run.path
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def jax_main(tmp_path_factory):
    """One jax-backend interpreter runs JAX_MAIN, then INIT_ARGUMENTS (a fresh interpreter each cost a
    second Keras and JAX import, ~3-5 s of CPU): its data root, its working directory, what it printed."""
    cwd = tmp_path_factory.mktemp("keras-jax")
    root = cwd / "root"
    out = _run_keras(JAX_MAIN + INIT_ARGUMENTS, "jax", cwd, env={"TRACKLET_DIR": str(root)})
    return root, cwd, out


@needs_jax
def test_jax_fit_records_metrics_config_lr_and_checkpoints(jax_main):
    root, tmp_path, out = jax_main
    api = tracklet.Api(root)
    runs = {r.name: r for r in api.runs("keras")}

    # --- 1. the owned run
    owned = runs["owned"]
    assert owned.state == "finished" and owned.exit_code == 0
    assert out["owned_run_left"] is False and out["current_after_owned"] is False
    keras_config = owned.config["keras"]
    assert keras_config["backend"] == "jax"
    assert {k: keras_config["model"][k] for k in PARAMS} == PARAMS
    assert keras_config["model"]["class"] == "Sequential"
    fit = keras_config["fit"]
    assert (fit["epochs"], fit["steps"], fit["batch_size"], fit["validation_split"]) == (3, 6, 16, 0.25)
    assert keras_config["optimizer"]["class"] == "SGD" and _close(keras_config["optimizer"]["learning_rate"], 0.05)
    assert keras_config["loss"] == "mse"

    history = owned.history()
    lrs = [0.05, 0.025, 0.0125]
    rows = _assert_epoch_rows(history, [6, 12, 18], lrs)
    batch_steps = [s for s, row in rows.items() if row.get("batch/loss") is not None]
    assert batch_steps == list(range(2, 19, 2))  # every 2 batches, step = batches completed
    for step in batch_steps:
        assert _close(rows[step]["batch/learning_rate"], lrs[(step - 1) // STEPS_PER_EPOCH])
        assert rows[step]["batch/mae"] is not None
    # Keras's batch logs are running means over the epoch: the last one equals the epoch's.
    assert _close(rows[6]["batch/loss"], rows[6]["epoch/loss"])
    summary = owned.summary
    assert summary["epoch/epoch"] == 3 and _close(summary["epoch/val_loss"], rows[18]["epoch/val_loss"])
    assert _close(summary["epoch/learning_rate"], 0.0125)

    checkpoints = owned.checkpoints
    weights = [c for c in checkpoints if c.path.endswith(".weights.h5")]
    assert [Path(c.path).name for c in weights] == ["w-01.weights.h5", "w-02.weights.h5", "w-03.weights.h5"]
    assert [c.step for c in weights] == [6, 12, 18] and [c.metadata["epoch"] for c in weights] == [1, 2, 3]
    for record in weights:
        assert record.error == "" and record.sha256 == _sha256(Path(record.path))
        assert record.size_bytes == Path(record.path).stat().st_size
        assert record.metadata["save_weights_only"] is True
    val_losses = [rows[s]["epoch/val_loss"] for s in (6, 12, 18)]
    bests = [c for c in checkpoints if c.path.endswith("best.keras")]
    assert [c.metadata["epoch"] for c in bests] == _expected_best_epochs(val_losses)
    for record in bests:
        assert record.path == str(tmp_path / "ckpt" / "best.keras") and record.monitor == "val_loss"
        assert _close(record.score, val_losses[record.metadata["epoch"] - 1])
        assert record.step == 6 * record.metadata["epoch"] and record.metadata["save_best_only"] is True
    assert bests[-1].sha256 == _sha256(tmp_path / "ckpt" / "best.keras")  # the file as it is now
    assert len({c.sha256 for c in bests}) == len(bests)

    # --- 2. the reused run: not finished by the callback, steps continue from the run's step
    assert out["reused_finished_after_fit"] is False and out["reused_is_current"] is True
    assert out["ran_on_worker_thread"] is True
    reused = runs["reused"]
    assert reused.state == "finished" and "keras" in reused.config
    history = reused.history()
    rows = {s: {k: history[k][i] for k in history} for i, s in enumerate(history["_step"])}
    batch_steps = [s for s, row in rows.items() if row.get("batch/loss") is not None]
    assert batch_steps[:12] == list(range(2, 14))  # offset 1 (the run's step) + batches 1..12
    for step in range(2, 14):  # the rate the step's update used: schedule(iterations before it)
        assert _close(rows[step]["batch/learning_rate"], out["schedule"][step - 2]), step
    assert [s for s, row in rows.items() if row.get("epoch/epoch") is not None][:2] == [7, 13]
    assert _close(rows[7]["epoch/learning_rate"], out["schedule"][6])  # what the next update will use
    assert rows[0]["before"] == 1.0 and rows[13]["after"] == 2.0  # the user's row after fit joins step 13

    # --- 3. out-of-order batch hooks
    start = 14  # the run's step when the third callback began (the "after" row advanced it)
    assert [rows[start + n]["batch/loss"] for n in (2, 4, 6)] == [1.0, 3.0, 5.0]
    assert rows[start + 6]["epoch/loss"] == 5.0 and rows[start + 6]["epoch/val_loss"] == 6.0
    assert out["unordered_start"] == start + 6

    # --- 4. steps_per_execution
    start += 6
    assert [s for s in rows if s > start and rows[s].get("batch/loss") is not None] == [start + 4, start + 6]
    assert [s for s in rows if s > start and rows[s].get("epoch/epoch") is not None] == [start + 6]
    assert reused.config["keras"]["fit"]["steps_per_execution"] == 4
    assert not [line for line in out["_stderr"].splitlines() if "TrackletWarning" in line]


# ---------------------------------------------------------------------------------------------- torch


TORCH_MAIN = """
# A file per improvement, named from the epoch's logs; weights every 4 batches, across epochs.
best = keras.callbacks.ModelCheckpoint("ckpt/best-{epoch:02d}-{val_loss:.4f}.keras", save_best_only=True)
batches = keras.callbacks.ModelCheckpoint("ckpt/b-{epoch}-{batch}.weights.h5", save_weights_only=True, save_freq=4)
cb = TrackletCallback(project="keras", name="torch")   # log_freq="epoch": no batch rows
model = mlp(keras.optimizers.Adam(0.05))
model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0,
          callbacks=[best, batches, keras.callbacks.LearningRateScheduler(halve), cb])  # checkpoints first
out["current"] = tracklet.run is not None
print(json.dumps(out))
"""


@needs_torch
def test_torch_backend(root, tmp_path):
    out = _run_keras(TORCH_MAIN, "torch", tmp_path)
    assert out["current"] is False
    run = tracklet.Api(root).runs("keras")[0]
    assert run.state == "finished"
    config = run.config["keras"]
    assert config["backend"] == "torch" and {k: config["model"][k] for k in PARAMS} == PARAMS
    assert config["optimizer"]["class"] == "Adam"
    history = run.history()
    rows = _assert_epoch_rows(history, [6, 12, 18], [0.05, 0.025, 0.0125])
    assert not any(key.startswith("batch/") for key in run.keys())  # noqa: SIM118 (RecordedRun.keys())
    val_losses = [rows[s]["epoch/val_loss"] for s in (6, 12, 18)]
    checkpoints = run.checkpoints
    assert all(c.error == "" and c.sha256 == _sha256(Path(c.path)) for c in checkpoints)
    bests = [c for c in checkpoints if Path(c.path).name.startswith("best-")]
    assert [c.metadata["epoch"] for c in bests] == _expected_best_epochs(val_losses)
    assert sorted(c.path for c in bests) == sorted(str(p) for p in (tmp_path / "ckpt").glob("best-*.keras"))
    for record in bests:
        epoch = record.metadata["epoch"]
        assert record.step == 6 * epoch and record.monitor == "val_loss"
        assert _close(record.score, val_losses[epoch - 1])
        assert Path(record.path).name == f"best-{epoch:02d}-{val_losses[epoch - 1]:.4f}.keras"
    # save_freq=4 over 6-batch epochs saves after batches 4 | 2, 6 | 4: found at each epoch's end.
    by_batch = [c for c in checkpoints if Path(c.path).name.startswith("b-")]
    assert [Path(c.path).name for c in by_batch] == ["b-1-4.weights.h5", "b-2-2.weights.h5", "b-2-6.weights.h5",
                                                     "b-3-4.weights.h5"]
    assert [c.step for c in by_batch] == [6, 12, 12, 18]
    assert all(c.score is None and c.monitor == "" for c in by_batch)


# ---------------------------------------------------------------------------------------------- failures


JAX_FAILURES = """
class Boom(keras.layers.Layer):
    \"\"\"Raises on its n-th call (run_eagerly: every batch calls it from Python).\"\"\"
    def __init__(self, at, error, **kwargs):
        super().__init__(**kwargs)
        self.at, self.error, self.calls = at, error, 0
    def call(self, inputs):
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return inputs

def model_with(layer, optimizer="sgd"):
    model = keras.Sequential([keras.Input((8,)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", run_eagerly=True)
    return model

# 0. Arguments are checked when the callback is made.
errors = []
for kwargs in ({"log_freq": 0}, {"log_freq": "step"}, {"log_freq": True}, {"checkpoints": [object()]}, {"run": "no"},
               {"project": "no spaces"}):
    try:
        TrackletCallback(**kwargs)
    except (ValueError, TypeError) as error:
        errors.append("ValueError" if isinstance(error, ValueError) else type(error).__name__)  # InvalidName is one
out["errors"] = errors
out["batch"] = TrackletCallback(log_freq="batch")._every

# 1. Used as a context manager, the block is the run: two fit()s and a test metric after them.
with TrackletCallback(project="fail", name="managed") as cb:
    model = mlp("sgd")
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=1, validation_split=0.25, verbose=0, callbacks=[cb])
        out["managed_open_after_fit"] = not cb.run.finished
    cb.run.log({"test/loss": model.evaluate(x, y, verbose=0)[0]})
out["managed_left"] = cb.run is not None

#    A KeyboardInterrupt during fit in such a block marks its run failed (130).
try:
    with TrackletCallback(project="fail", name="interrupted", log_freq=1) as cb:
        model_with(Boom(5, KeyboardInterrupt())).fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
except KeyboardInterrupt:
    out["interrupted_run_left"] = cb.run is not None

# 2. An exception caught by the script, then fit() again with the same callback: the interrupted
#    run is marked failed when the next fit() begins, and the new fit() gets a run of its own.
cb = TrackletCallback(project="fail", name="retried")  # log_freq="epoch"
try:
    model_with(Boom(4, ValueError("first try"))).fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
except ValueError:
    first = cb.run
    out["first_still_running"] = not first.finished
decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
model_with(Boom(10**9, ValueError()), keras.optimizers.SGD(decay)).fit(
    x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
out["first_finished"] = first.finished
print(json.dumps(out), flush=True)

# 3. Uncaught: the exception ends the process; tracklet's exit hooks mark the run failed with it.
model_with(Boom(6, RuntimeError("boom from layer"))).fit(
    x, y, batch_size=16, epochs=3, verbose=0, callbacks=[TrackletCallback(project="fail", name="uncaught", log_freq=1)])
"""


@needs_jax
def test_owned_run_lifecycle_and_failures(root, tmp_path):
    out = _run_keras(JAX_FAILURES, "jax", tmp_path, expect_rc=1)
    assert "boom from layer" in out["_stderr"]
    assert out["errors"] == ["ValueError", "ValueError", "ValueError", "TypeError", "TypeError", "ValueError"]
    assert out["batch"] == 1
    runs = tracklet.Api(root).runs("fail")
    by_name: dict[str, list] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)

    (managed,) = by_name["managed"]
    assert out["managed_open_after_fit"] is True and out["managed_left"] is False
    assert managed.state == "finished"
    history = managed.history()
    assert [s for s, e in zip(history["_step"], history["epoch/epoch"], strict=True) if e is not None] == [6, 12]
    assert history["epoch/epoch"][-1] == 1 and history["test/loss"][-1] is not None  # test/loss joins step 12

    (interrupted,) = by_name["interrupted"]
    assert out["interrupted_run_left"] is False
    assert (interrupted.state, interrupted.exit_code, interrupted.error) == ("failed", 130, "KeyboardInterrupt: ")
    assert interrupted.history()["batch/loss"]  # what was logged before the interrupt is kept

    assert out["first_still_running"] is True and out["first_finished"] is True
    newest, oldest = by_name["retried"]  # newest first
    assert oldest.state == "failed" and "stopped before on_train_end" in oldest.error
    # The only callback and log_freq="epoch": async batch hooks only count batches (8 of 16 rows).
    assert newest.state == "finished" and newest.history()["_step"] == [8]
    assert newest.history()["epoch/epoch"] == [1] and newest.config["keras"]["fit"]["steps"] == 8
    assert _close(newest.history()["epoch/learning_rate"][0], 0.1 * 0.5 ** (8 / 4))  # schedule(8), eagerly

    (uncaught,) = by_name["uncaught"]
    assert uncaught.state == "failed" and uncaught.exit_code == 1
    assert "boom from layer" in uncaught.error and "RuntimeError" in uncaught.traceback
    steps = uncaught.history()["_step"]
    assert steps and steps == sorted(steps) and uncaught.history()["batch/loss"][0] is not None


# ---------------------------------------------------------------------------------------------- light checks


def test_import_tracklet_does_not_import_keras():
    result = run_script("import sys, tracklet, tracklet.integrations; print('keras' in sys.modules)", check=True)
    assert result.stdout.strip() == "False"



@pytest.mark.skipif(_have("tensorflow"), reason="tensorflow is installed: Keras's default backend works")
def test_keras_without_a_backend_says_how_to_choose_one(tmp_path):
    """`pip install tracklet[keras]` alone gives a Keras that defaults to tensorflow: importing the
    callback then says what to install and set, instead of a bare ModuleNotFoundError."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)  # no keras.json choosing a backend
    code = """
import os
os.environ.pop("KERAS_BACKEND", None)
try:
    from tracklet.integrations.keras import TrackletCallback
except ImportError as error:
    print(type(error).__name__, error)
"""
    import subprocess
    import sys
    from conftest import REPO

    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.startswith("ImportError "), done.stdout + done.stderr
    assert "KERAS_BACKEND=jax" in done.stdout and "tensorflow" in done.stdout


INIT_ARGUMENTS = """
# after JAX_MAIN, in its process (jax_main)
try:
    TrackletCallback(project="kp", tgas=["a"])
except TypeError as error:
    out["unknown"] = str(error)
from pathlib import Path
callback = TrackletCallback(project="kp", dir=Path.cwd() / "elsewhere", name="named", tags=["a", "b"],
                            notes="a note", group="sweep-1", job_type="train", id="keras-run")
model = mlp("sgd")
model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
print(json.dumps(out))
"""


@needs_jax
def test_init_arguments_reach_the_run_and_an_unknown_one_fails_at_once(jax_main):
    root, tmp_path, out = jax_main  # root: the process's TRACKLET_DIR
    assert out["unknown"].startswith("TrackletCallback() got an unexpected keyword argument 'tgas'")
    run = tracklet.Api(tmp_path / "elsewhere").run("kp/keras-run")  # dir= (a PathLike) is the data root
    assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("named", ["a", "b"], "a note", "sweep-1",
                                                                       "train")
    assert run.state == "finished" and "kp" not in tracklet.Api(root).projects()
    assert tracklet.Api(tmp_path / "elsewhere").projects() == ["kp"]
