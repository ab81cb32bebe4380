"""Zero-code tracking: unmodified Lightning, Keras and JAX scripts under `tracklet run`, and the
safety of autolog's patches."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

import tracklet

from conftest import REPO

LIGHTNING_SCRIPT = """
import sys, torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset

class Model(L.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
extra = {}
if "--own-logger" in sys.argv:
    from tracklet.integrations.lightning import TrackletLogger
    extra["logger"] = TrackletLogger()
trainer = L.Trainer(max_epochs=2, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                    log_every_n_steps=2, default_root_dir=sys.argv[1], enable_checkpointing=False, **extra)
model = Model()
trainer.fit(model, DataLoader(data, batch_size=16))
print("loggers:", sorted(type(l).__name__ for l in trainer.loggers))
print("weights:", float(model.layer.weight.sum()))
"""

KERAS_SCRIPT = """
import numpy as np, keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(np.random.rand(64, 4), np.random.rand(64, 1), epochs=2, batch_size=16, verbose=0)
print("weights:", float(sum(w.sum() for w in model.get_weights())))
"""

HF_SCRIPT = """
import sys, torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

class Tokens(torch.utils.data.Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 100, (32, 8), generator=generator)
        self.labels = torch.randint(0, 2, (32,), generator=generator)
    def __len__(self):
        return len(self.ids)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}

torch.manual_seed(0)
config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
args = TrainingArguments(output_dir=sys.argv[1], max_steps=4, per_device_train_batch_size=8, logging_steps=2,
                         report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0)
trainer = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Tokens())
trainer.train()
print("callbacks:", sorted(type(c).__name__ for c in trainer.callback_handler.callbacks if "Tracklet" in type(c).__name__))
"""

JAX_SCRIPT = """
import jax, jax.numpy as jnp
@jax.jit
def step(w, x):
    return w - 0.1 * jax.grad(lambda w: jnp.sum((x @ w) ** 2))(w)
w = jnp.ones(3)
for n in (2, 2, 5):  # a new shape: a recompile
    w3 = step(w, jnp.ones((n, 3)))
print("done", float(w3.sum()))
"""


def _launch(root, project, code, tmp_path, *args, env=None):
    script = tmp_path / f"{project}.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "tracklet", "run", "-p", project, "--", sys.executable, str(script), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _plain(code, tmp_path, *args, env=None):
    script = tmp_path / "plain.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _plain_here(code, tmp_path, *args):
    """What ``_plain`` prints, the script run in this process instead of a fresh one: for a framework this
    module imports here anyway (Lightning: each Lightning test's importorskip), so the comparison costs
    no second import of it (~4 s of CPU, more on a loaded machine)."""
    import contextlib
    import io
    import runpy

    script = tmp_path / "plain.py"
    script.write_text(code)
    printed = io.StringIO()
    argv = sys.argv
    sys.argv = [str(script), *args]
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    return printed.getvalue()


def _line(output, prefix):
    return next(line for line in output.splitlines() if line.startswith(prefix))


def test_an_unmodified_lightning_script_is_recorded(root, tmp_path):
    pytest.importorskip("lightning")
    done = _launch(root, "lit", LIGHTNING_SCRIPT, tmp_path, str(tmp_path / "out"))
    assert "TrackletLogger" in _line(done.stdout, "loggers:")
    (run,) = tracklet.Api(root).runs("lit")
    assert run.state == "finished" and run.config["lr"] == 0.05
    history = run.history(["train_loss", "trainer/global_step"])
    assert history["trainer/global_step"][-1] is not None and any(v is not None for v in history["train_loss"])
    # the patch never changes results: the same weights as without tracklet
    plain = _plain_here(LIGHTNING_SCRIPT, tmp_path, str(tmp_path / "out2"))
    assert "Tracklet" not in _line(plain, "loggers:")  # plain: nothing of tracklet's attached in this process
    assert _line(done.stdout, "weights:") == _line(plain, "weights:")


def test_a_script_that_passes_its_own_tracklet_logger_gets_no_second_one(root, tmp_path):
    pytest.importorskip("lightning")
    done = _launch(root, "own", LIGHTNING_SCRIPT, tmp_path, str(tmp_path / "out"), "--own-logger")
    assert _line(done.stdout, "loggers:") == "loggers: ['TrackletLogger']"
    assert len(tracklet.Api(root).runs("own")) == 1


def test_an_unmodified_keras_script_is_recorded(root, tmp_path):
    import importlib.util

    if importlib.util.find_spec("keras") is None:  # not imported here: its backend is fixed per process
        pytest.skip("keras is not installed")
    env = {"KERAS_BACKEND": "jax"}
    done = _launch(root, "ker", KERAS_SCRIPT, tmp_path, env=env)
    (run,) = tracklet.Api(root).runs("ker")
    assert run.state == "finished"
    losses = [v for v in run.history(["epoch/loss"])["epoch/loss"] if v is not None]
    assert len(losses) == 2
    plain = _plain(KERAS_SCRIPT, tmp_path, env=env)
    assert _line(done.stdout, "weights:") == _line(plain.stdout, "weights:")


def test_an_unmodified_hugging_face_script_is_recorded(root, tmp_path):
    pytest.importorskip("transformers")
    done = _launch(root, "hf", HF_SCRIPT, tmp_path, str(tmp_path / "out"))
    assert _line(done.stdout, "callbacks:") == "callbacks: ['TrackletCallback']"
    (run,) = tracklet.Api(root).runs("hf")
    assert run.state == "finished" and run.config["hidden_size"] == 16
    history = run.history(["train/loss", "train/global_step"])
    logged = [(s, v) for s, v in zip(history["train/global_step"], history["train/loss"]) if v is not None]
    assert [s for s, _ in logged] == [2, 4]
    assert "train_runtime" in run.summary


def test_an_unmodified_jax_script_gets_compile_metrics(root, tmp_path):
    pytest.importorskip("jax")
    _launch(root, "jx", JAX_SCRIPT, tmp_path)
    (run,) = tracklet.Api(root).runs("jx")
    assert run.state == "finished"
    counts = [v for v in run.history(["jax/compile_count"])["jax/compile_count"] if v is not None]
    assert counts and counts[-1] >= 2  # the step compiled once per input shape


def test_a_failing_patch_warns_and_training_goes_on(monkeypatch):
    lightning = pytest.importorskip("lightning")
    import tracklet.integrations.lightning as integration
    from tracklet.integrations import autolog

    def broken(*args, **kwargs):
        raise RuntimeError("integration exploded")

    monkeypatch.setattr(integration, "TrackletLogger", broken)
    monkeypatch.setattr(autolog, "_warned", set())
    tracklet.autolog("lightning")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = lightning.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                                        enable_checkpointing=False, enable_model_summary=False)
        assert trainer.max_epochs == 1  # the Trainer was built as asked
        assert any("integration exploded" in str(w.message) for w in caught
                   if issubclass(w.category, tracklet.TrackletWarning))
    finally:
        tracklet.autolog(disable=True)
    assert not hasattr(lightning.Trainer.__init__, "__tracklet_original__")


def test_autolog_rejects_an_unknown_framework():
    with pytest.raises(ValueError, match="unknown framework.*'tensorflow'"):
        tracklet.autolog(["tensorflow"])
