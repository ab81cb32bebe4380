"""W&B compatibility (tracklet.compat.wandb): unmodified wandb scripts and the frameworks' own W&B
integrations record tracklet runs, read back through ``tracklet.Api`` and ``wandb.Api``.

Every script runs in a fresh interpreter under ``tracklet run --wandb`` (or the environment switch),
exactly as a user would run it, with the real ``wandb`` package installed alongside when it is (the
scripts assert that ``import wandb`` is tracklet's anyway). Frameworks are imported only in those
subprocesses: one each for Lightning, Hugging Face and Keras.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

import tracklet
from tracklet.cli.main import main

QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}
COMPAT_DIR = str(REPO / "tracklet" / "compat" / "wandb")


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tracklet_run(tmp_path, script: str, *args: str, env: dict | None = None, timeout: float = 300) -> dict:
    """Run ``script`` under ``tracklet run --wandb ARGS -- python``; return the JSON line it printed last."""
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, "-m", "tracklet", "run", "--wandb", *args, "--", sys.executable, str(path)],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# A wandb script as people write it, plus the checks only a test makes (printed as one JSON line).
PLAIN = """
import json, subprocess, sys, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda message, *rest: caught.append(str(message))

import wandb

run = wandb.init(project="plain", name="loop", config={"lr": 0.1, "layers": [4, 4]}, tags=["a", "b"],
                 group="g1", job_type="train", notes="first try", entity="team")
wandb.config.update({"batch_size": 32})
wandb.config.epochs = 2
wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch", summary="min")
wandb.define_metric("train/acc", summary="max")

for step in range(6):
    wandb.log({"train/loss": 1.0 / (step + 1)}, commit=False)   # accumulates ...
    wandb.log({"train/acc": step / 10})                          # ... into one row, then commits
wandb.log({"epoch": 1})                                          # step 6
wandb.log({"val/loss": 0.5})                                     # step 7: epoch filled in (step_sync)
wandb.log({"val/loss": 0.7, "epoch": 2}, step=10)                # explicit step; no commit yet
wandb.log({"extra": 1}, step=10, commit=True)                    # same row, then the step moves on
wandb.log({"late": 1}, step=3)                                   # backwards: warned and dropped
wandb.log({"late": 2}, step=4)                                   # dropped silently
wandb.log({"hist": wandb.Histogram([1, 2, 2, 3]), "img": wandb.Image([[0, 255], [255, 0]], caption="c"),
           "table": wandb.Table(columns=["a"])})
wandb.log({"pics": [wandb.Image([[0, 255], [255, 0]]), wandb.Image([[1, 2], [3, 4]])],
           "plot": wandb.plot.line(wandb.Table(columns=["x", "y"], data=[[0, 1], [1, 3]]), "x", "y"),
           "chart": wandb.Plotly({}), "graph": wandb.Graph()})
wandb.summary["best"] = 0.25
run.summary.update({"note": "ok"})

# recorded or accepted with one warning each, never raising (artifacts: tests/test_artifacts.py)
for _ in range(2):
    artifact = wandb.Artifact("model", type="model")
    artifact.add_file(__file__)
    run.log_artifact(artifact)
    run.log_code()
    wandb.log({"img": wandb.Image([[0, 255], [255, 0]])})
wandb.alert(title="done soon", text="almost", level=wandb.AlertLevel.WARN)
open("weights.txt", "w").write("w")
saved = wandb.save("weights.txt")

child = subprocess.run([sys.executable, "-c", "import wandb; print(wandb.__file__, wandb.run)"],
                       capture_output=True, text=True, check=True).stdout.split()
info = dict(
    file=wandb.__file__, version=wandb.__version__, child=child, path=run.path, id=run.id, dir=run.dir,
    saved=saved, step=run.step,
)
wandb.finish()
info["run_after_finish"] = wandb.run is None
info["warnings"] = caught
print(json.dumps(info))
"""


def test_a_plain_wandb_script_records_under_tracklet_run_wandb(root, tmp_path):
    out = tracklet_run(tmp_path, PLAIN)
    assert out["file"].startswith(COMPAT_DIR) and out["version"] == "0.21.0"
    assert out["child"][0].startswith(COMPAT_DIR) and out["child"][1] == "None"  # subprocesses get it too
    assert out["run_after_finish"] is True

    (recorded,) = tracklet.Api(root).runs("plain")
    assert tracklet.Api(root).artifact("plain/model").version == "v0"  # logged twice, same content: one version
    assert (recorded.name, recorded.state, recorded.id) == ("loop", "finished", out["id"])
    assert out["path"] == f"team/plain/{out['id']}"
    assert recorded.config == {"lr": 0.1, "layers": [4, 4], "batch_size": 32, "epochs": 2}
    assert (recorded.tags, recorded.group, recorded.job_type, recorded.notes) == (
        ["a", "b"], "g1", "train", "first try")

    rows = {row["_step"]: {k: v for k, v in row.items() if not k.startswith("_")} for row in recorded.history().rows()}
    for step in range(6):
        assert rows[step] == {"train/loss": 1.0 / (step + 1), "train/acc": step / 10}
    assert rows[6] == {"epoch": 1}
    assert rows[7] == {"val/loss": 0.5, "epoch": 1}               # step_sync filled the step metric in
    assert rows[10] == {"val/loss": 0.7, "epoch": 2, "extra": 1}
    assert not any("late" in row for row in rows.values())
    assert rows[11]["hist"].counts[0] == 1 and sum(rows[11]["hist"].counts) == 4
    assert "img" not in rows[11] and "table" not in rows[11]  # media are not history values
    # rows of media alone stay rows (the media are recorded beside them), so row counts match W&B's
    assert max(rows) == 14 and out["step"] == 15 and rows[12] == rows[13] == rows[14] == {}
    images = recorded.images("img")
    assert [(image.step, image.caption) for image in images] == [(11, "c"), (13, ""), (14, "")]
    assert all((image.to_numpy() == [[0, 255], [255, 0]]).all() for image in images)
    assert len({image.digest for image in images}) == 1  # the same image: one blob
    assert [(image.step, image.index, image.count) for image in recorded.images("pics")] == [(12, 0, 2), (12, 1, 2)]
    assert [(item.step, item.kind) for item in recorded.media("chart")] == [(12, "plotly")]  # wandb.Plotly: recorded

    summary = recorded.summary
    # define_metric(summary=...) in W&B's shape
    assert summary["val/loss"] == {"min": 0.5} and summary["train/acc"] == {"max": 0.5}
    assert summary["train/loss"] == 1 / 6
    assert (summary["best"], summary["note"]) == (0.25, "ok")
    definitions = {d.name: d for d in recorded.metric_definitions}
    assert definitions["val/*"].step_metric == "epoch"
    assert [(a.title, a.level) for a in recorded.alerts] == [("done soon", "WARN")]
    assert out["dir"] == os.path.join(recorded.dir, "files") and "weights.txt" in recorded.files()

    warned = out["warnings"]
    assert not any("image" in w.lower() for w in warned), warned  # media are recorded, not warned about
    for fragment in ("entity= is accepted", "lower than the current step",
                     "logging wandb.Graph"):
        assert sum(fragment in w for w in warned) == 1, (fragment, warned)
    assert not any("log_code" in w for w in warned), warned  # the script logged as a code artifact (test_wandb_code)
    assert not any("Table" in w for w in warned), warned  # tables are recorded (docs/tables.md)
    assert recorded.table_keys() == ["table", "plot_table"] and recorded.table("table").columns == ["a"]
    assert recorded.table("plot_table").chart["kind"] == "line"  # wandb.plot.*: W&B's table, with the chart
    assert recorded.table("table").count() == 0 and recorded.table("table").step == 11
    assert not any("log_artifact" in w or "artifact" in w.lower() for w in warned), warned


def test_the_environment_switch_with_autolog_and_in_script_install(root, tmp_path):
    script = tmp_path / "switch.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        import tracklet
        tracklet.autolog()                     # with TRACKLET_WANDB_COMPAT=1: import wandb is tracklet's
        import wandb
        from importlib.metadata import version
        run = wandb.init(project="switch", config={"seed": 1})
        wandb.log({"x": 1.5})
        wandb.finish()
        print(json.dumps({"file": wandb.__file__, "metadata": version("wandb"), "lazy": "tracklet.compat" in sys.argv}))
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, "TRACKLET_WANDB_COMPAT": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["file"].startswith(COMPAT_DIR) and out["metadata"] == "0.21.0"
    (recorded,) = tracklet.Api(root).runs("switch")
    assert recorded.config == {"seed": 1} and recorded.history(["x"])["x"] == [1.5]

    # import tracklet stays light: the compat layer is imported only when asked for
    light = subprocess.run([sys.executable, "-c", "import sys, tracklet; print(sorted(m for m in sys.modules if "
                            "m.startswith('tracklet.compat') or m == 'wandb'))"],
                           capture_output=True, text=True, env={**env, "TRACKLET_WANDB_COMPAT": ""}, timeout=60)
    assert light.stdout.strip() == "[]", light.stderr


def test_subpackages_named_in_the_docs_work_after_a_plain_import_tracklet(root, tmp_path):
    # docs/wandb-compat.md: `tracklet.compat.install_wandb()` at the top of a script;
    # docs/tracing.md: `tracklet.tracing.autopatch()`. Both raised AttributeError after `import tracklet`.
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import sys
        import tracklet
        assert "tracklet.compat" not in sys.modules and "tracklet.tracing" not in sys.modules
        tracklet.compat.install_wandb()
        tracklet.tracing.autopatch()
        import wandb
        run = wandb.init(project="plain")
        wandb.log({"x": 2.0})
        wandb.finish()
        print(wandb.__file__, tracklet.registry.__name__)
        try:
            tracklet.no_such_thing
        except AttributeError as error:
            print("missing:", error)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[-2:]
    assert first.startswith(COMPAT_DIR) and first.endswith(" tracklet.registry")
    assert second == "missing: module 'tracklet' has no attribute 'no_such_thing'"
    (recorded,) = tracklet.Api(root).runs("plain")
    assert recorded.history(["x"])["x"] == [2.0]


@pytest.mark.skipif(not (_have("lightning") and _have("torch")), reason="lightning is not installed")
def test_lightning_wandb_logger(root, tmp_path):
    out = tracklet_run(tmp_path, """
        import json, warnings
        import torch
        import lightning as L
        from lightning.pytorch.loggers import WandbLogger

        class Model(L.LightningModule):
            def __init__(self, lr=0.05, hidden=8):
                super().__init__()
                self.save_hyperparameters()
                self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = torch.nn.functional.mse_loss(self.net(x), y)
                self.log("train_loss", loss)
                return loss
            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

        torch.manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        logger = WandbLogger(project="lit", name="wandb-logger", log_model=False)
        model = Model()
        logger.watch(model, log="all", log_freq=2)
        trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, loader, loader)
        logger.log_table("samples", columns=["x"], data=[[1.0]])           # rows of media alone, as W&B
        logger.log_image("pictures", images=[torch.zeros(3, 4, 4)])        # keeps them (with step_sync)
        import wandb
        print(json.dumps({"experiment": type(logger.experiment).__module__, "id": logger.version,
                          "loggers": [type(l).__name__ for l in trainer.loggers]}))
        wandb.finish()
    """, timeout=300)
    assert out["experiment"].startswith("tracklet.compat.wandb")
    assert out["loggers"] == ["WandbLogger"]  # autolog added no second logger next to it
    (recorded,) = tracklet.Api(root).runs("lit")
    assert (recorded.id, recorded.name, recorded.state) == (out["id"], "wandb-logger", "finished")
    assert recorded.config["lr"] == 0.05 and recorded.config["hidden"] == 8
    history = recorded.history(["train_loss", "trainer/global_step", "epoch", "val_loss"])
    steps = [s for s, loss in zip(history["trainer/global_step"], history["train_loss"]) if loss is not None]
    assert steps == list(range(8))  # 4 batches x 2 epochs, each step logged once
    assert [v for v in history["val_loss"] if v is not None] and recorded.summary["epoch"] == 1
    rows = list(recorded.history().rows())
    media_rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows[-2:]]
    last_step = [r["trainer/global_step"] for r in rows[:-2] if r.get("trainer/global_step") is not None][-1]
    assert media_rows == [{"trainer/global_step": last_step}] * 2  # step_sync fills it in, as W&B does
    definitions = {d.name: d.step_metric for d in recorded.metric_definitions}
    assert definitions["*"] == "trainer/global_step"
    keys = recorded.keys()
    assert "gradients/net.0.weight" in keys and "parameters/net.2.bias" in keys  # watch(log="all", log_freq=2)


def test_lightning_wandb_logger_log_model_stores_the_best_checkpoint_or_all_as_they_are_saved(root, tmp_path):
    # One script, two loggers (each W&B run finished before the next starts): log_model=True stores the
    # best checkpoint as an artifact; log_model="all" logs every checkpoint as it is saved. (Two tests
    # before, each paying a fresh interpreter's torch and Lightning imports for a one-epoch fit.)
    # Lightning's default ModelCheckpoint keeps one file and deletes the previous epoch's when it
    # saves the next: each was snapshot when logged (Lightning passes policy="mutable").
    out = tracklet_run(tmp_path, """
        import json
        import torch
        import lightning as L
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        class Model(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Linear(4, 1)
            def training_step(self, batch, batch_idx):
                loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
                self.log("train_loss", loss)
                return loss
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
        logger = WandbLogger(project="litmodel", log_model=True)
        trainer = L.Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Model(), torch.utils.data.DataLoader(data, batch_size=8))
        best = logger.version
        wandb.finish()

        logger = WandbLogger(project="litall", log_model="all")
        trainer = L.Trainer(max_epochs=3, logger=logger, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Model(), torch.utils.data.DataLoader(data, batch_size=8))
        path = logger.download_artifact(f"model-{logger.version}:v0", save_dir="first")  # through use_artifact
        print(json.dumps({"best": best, "id": logger.version, "first_epoch": torch.load(path + "/model.ckpt")["epoch"]}))
    """, timeout=300)
    version = tracklet.Api(root).artifact(f"litmodel/model-{out['best']}:best")
    assert version.type == "model" and [e.path for e in version.files()] == ["model.ckpt"]
    assert version.metadata["original_filename"].endswith(".ckpt")
    assert version.logged_by().id == out["best"]

    assert out["first_epoch"] == 0
    api = tracklet.Api(root)
    versions = api.artifact_versions(f"litall/model-{out['id']}")
    assert [(v.version, sorted(v.aliases)) for v in versions] == [("v0", []), ("v1", []), ("v2", ["best", "latest"])]
    assert [v.metadata["original_filename"] for v in versions] == [
        "epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt"]
    assert all(v.logged_by().id == out["id"] for v in versions)
    assert [run.id for run in versions[0].used_by()] == [out["id"]]


@pytest.mark.skipif(not (_have("transformers") and _have("torch")), reason="transformers is not installed")
def test_hugging_face_trainer_report_to_wandb_and_wandb_log_model_checkpoint_logs_each_saved_checkpoint(root, tmp_path):
    # One script, two trainers (the first's W&B run finished before the second's starts), each with the
    # WANDB_PROJECT and WANDB_LOG_MODEL its WandbCallback reads as the trainer is made: "end" logs the
    # final model, "checkpoint" each saved checkpoint. (Two tests before, each paying a fresh
    # interpreter's torch and transformers imports.)
    out = tracklet_run(tmp_path, """
        import json
        import os
        import torch
        import transformers
        import wandb

        class RandomTokens(torch.utils.data.Dataset):
            def __init__(self):
                g = torch.Generator().manual_seed(0)
                self.ids = torch.randint(1, 100, (24, 8), generator=g)
                self.labels = torch.randint(0, 2, (24,), generator=g)
            def __len__(self):
                return len(self.labels)
            def __getitem__(self, i):
                return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                        "labels": self.labels[i]}

        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64)
        model = transformers.BertForSequenceClassification(config)
        args = transformers.TrainingArguments(
            output_dir="out-end", max_steps=6, logging_steps=2, per_device_train_batch_size=4, report_to="wandb",
            run_name="hf-run", save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=RandomTokens())
        trainer.train()
        names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
        wandb.finish()

        os.environ.update(WANDB_PROJECT="hfckpt", WANDB_LOG_MODEL="checkpoint")
        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64)
        args = transformers.TrainingArguments(
            output_dir="out", max_steps=6, per_device_train_batch_size=4, report_to="wandb", run_name="ckpt-run",
            save_strategy="steps", save_steps=3, use_cpu=True, disable_tqdm=True, logging_steps=3)
        trainer = transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                                       train_dataset=RandomTokens())
        trainer.train()
        print(json.dumps({"callbacks": names}))
    """, env={"WANDB_PROJECT": "hf", "WANDB_LOG_MODEL": "end"}, timeout=300)
    assert "WandbCallback" in out["callbacks"] and "TrackletCallback" not in out["callbacks"]
    (collection,) = tracklet.Api(root).artifact_collections("hf")  # WANDB_LOG_MODEL=end: the final model
    assert collection["name"] == "model-hf-run"
    versions = tracklet.Api(root).artifact_versions("hf/model-hf-run")
    assert [sorted(v.aliases) for v in versions] == [["base_model"], ["final_model", "latest"]]
    model = tracklet.Api(root).artifact("hf/model-hf-run:final_model")
    assert model.type == "model" and "config.json" in [entry.path for entry in model.files()]
    assert model.metadata["final_model"] is True
    (recorded,) = tracklet.Api(root).runs("hf")
    assert (recorded.name, recorded.state) == ("hf-run", "finished")
    config = recorded.config
    assert config["learning_rate"] == 1e-3 and config["num_hidden_layers"] == 2 and config["model/num_parameters"] > 0
    history = recorded.history(["train/loss", "train/global_step"])
    logged = [s for s, loss in zip(history["train/global_step"], history["train/loss"]) if loss is not None]
    assert logged == [2, 4, 6]
    assert recorded.summary["train_runtime"] > 0 and "train_loss" in recorded.summary
    assert {d.name: d.step_metric for d in recorded.metric_definitions}["*"] == "train/global_step"

    api = tracklet.Api(root)
    versions = api.artifact_versions("hfckpt/model-ckpt-run")
    assert [sorted(a for a in v.aliases if not a.startswith("epoch_")) for v in versions] == [
        ["base_model"], ["checkpoint_global_step_3"], ["checkpoint_global_step_6"], ["final_model", "latest"]]
    for step, version in ((3, versions[1]), (6, versions[2])):
        files = {entry.path: entry.digest for entry in version.files()}
        on_disk = tmp_path / "out" / f"checkpoint-{step}"
        assert files == {p.relative_to(on_disk).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in on_disk.rglob("*") if p.is_file()}
    final = {entry.path: entry.digest for entry in versions[3].files()}
    assert final["model.safetensors"] == {e.path: e.digest for e in versions[2].files()}["model.safetensors"]
    (recorded,) = api.runs("hfckpt")
    assert all(v.logged_by().id == recorded.id for v in versions)


@pytest.mark.skipif(not (_have("transformers") and _have("torch") and _have("optuna")),
                    reason="transformers or optuna is not installed")
def test_hugging_face_report_to_wandb_one_run_across_train_calls_and_a_run_per_trial(root, tmp_path):
    """As with W&B: transformers' WandbCallback keeps recording to the open run across train() calls
    and the evaluate() after them (its step goes on); each hyperparameter-search trial finishes the
    open run and starts its own; the last one is finished at exit."""
    tracklet_run(tmp_path, """
        import json
        import torch
        import transformers

        class RandomTokens(torch.utils.data.Dataset):
            def __len__(self):
                return 16
            def __getitem__(self, i):
                ids = torch.arange(1, 9) + i
                return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(i % 2)}

        def model():
            torch.manual_seed(0)
            return transformers.BertForSequenceClassification(transformers.BertConfig(
                vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))

        args = transformers.TrainingArguments(
            output_dir="out", max_steps=4, logging_steps=2, per_device_train_batch_size=4, report_to="wandb",
            run_name="stages", save_strategy="no", use_cpu=True, disable_tqdm=True)
        trainer = transformers.Trainer(model_init=model, args=args, train_dataset=RandomTokens(),
                                       eval_dataset=RandomTokens())
        trainer.train()
        trainer.train()
        trainer.evaluate()
        trainer.hyperparameter_search(
            direction="minimize", backend="optuna", n_trials=2, hp_name=lambda trial: f"trial-{trial.number}",
            hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)})
        print(json.dumps({"ok": True}))
    """, env={"WANDB_PROJECT": "hfcalls"}, timeout=300)
    runs = {run.name: run for run in tracklet.Api(root).runs("hfcalls")}
    assert sorted(runs) == ["stages", "trial-0", "trial-1"]
    stages = runs["stages"]
    assert (stages.state, stages.exit_code, stages.metadata["sessions"]) == ("finished", 0, 1)
    history = stages.history(["train/loss", "train/global_step", "eval/loss"])
    trained = [(step, gs) for step, gs, loss in zip(history["_step"], history["train/global_step"],
                                                    history["train/loss"]) if loss is not None]
    assert [gs for _, gs in trained] == [2, 4, 2, 4]  # the Trainer's step starts again; the run's goes on
    assert [step for step, _ in trained] == sorted(set(step for step, _ in trained))
    assert [v for v in history["eval/loss"] if v is not None]  # evaluate() after train(): the same run
    for name in ("trial-0", "trial-1"):
        trial = runs[name]
        assert trial.state == "finished" and trial.config["learning_rate"] != 5e-5
        history = trial.history(["train/loss", "train/global_step", "eval/loss"])
        assert [gs for gs, loss in zip(history["train/global_step"], history["train/loss"]) if loss is not None] == [2, 4]
        assert [v for v in history["eval/loss"] if v is not None]  # the objective's evaluate()


@pytest.mark.skipif(not (_have("keras") and _have("torch")), reason="keras 3 (torch backend) is not installed")
def test_keras_wandb_metrics_logger(root, tmp_path):
    tracklet_run(tmp_path, """
        import json
        import numpy as np
        import keras
        import wandb
        from wandb.integration.keras import WandbMetricsLogger, WandbModelCheckpoint

        wandb.init(project="keras", config={"epochs": 3})
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = x.sum(axis=1, keepdims=True).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
        history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
                            callbacks=[WandbMetricsLogger(log_freq=2), WandbModelCheckpoint("model.keras")])
        wandb.finish()
        print(json.dumps({"loss": history.history["loss"]}))
    """, env={"KERAS_BACKEND": "torch"}, timeout=300)
    (recorded,) = tracklet.Api(root).runs("keras")
    history = recorded.history(["epoch/epoch", "epoch/loss", "epoch/val_mae", "epoch/learning_rate"])
    epochs = [(e, lr) for e, lr in zip(history["epoch/epoch"], history["epoch/learning_rate"]) if e is not None]
    assert epochs == [(0, pytest.approx(0.01)), (1, pytest.approx(0.01)), (2, pytest.approx(0.01))]
    assert len([v for v in history["epoch/val_mae"] if v is not None]) == 3
    batches = [b for b in recorded.history(["batch/batch_step"])["batch/batch_step"] if b is not None]
    assert batches == [0, 2, 4, 6, 8, 10]  # 3 batches per epoch, logged at batches 0 and 2 of each, as W&B counts
    definitions = {d.name: d.step_metric for d in recorded.metric_definitions}
    assert definitions["batch/*"] == "batch/batch_step" and recorded.config == {"epochs": 3}
    checkpoints = recorded.checkpoints  # WandbModelCheckpoint: Keras saved, tracklet recorded each file
    assert len(checkpoints) == 3 and checkpoints[-1].path.endswith("model.keras")
    assert checkpoints[-1].monitor == "val_loss"
    # ... and logged each as a version of W&B's model artifact, with W&B's aliases. model.keras was
    # overwritten every epoch: each version holds that epoch's bytes (snapshot when logged).
    versions = tracklet.Api(root).artifact_versions(f"keras/run_{recorded.id}_model")
    assert [(v.version, sorted(v.aliases), v.type) for v in versions] == [
        ("v0", ["epoch_0"], "model"), ("v1", ["epoch_1"], "model"), ("v2", ["epoch_2", "latest"], "model")]
    assert [[e.path for e in v.files()] for v in versions] == [["model.keras"]] * 3
    assert len({v.digest for v in versions}) == 3
    assert all(v.logged_by().id == recorded.id for v in versions)


def test_wandb_api_reads_the_recorded_runs(root):
    pd = pytest.importorskip("pandas")
    import tracklet.compat.wandb as wandb

    settings = {"console": "off", "x_disable_stats": True, "disable_git": True}
    ids = []
    for index, lr in enumerate([0.1, 0.01, 0.001]):
        run = wandb.init(project="sweep", name=f"lr-{lr}", config={"lr": lr, "opt": "adam" if index else "sgd"},
                         tags=["base"] if index == 0 else ["tuned"], settings=settings, reinit="finish_previous")
        for step in range(10):
            wandb.log({"loss": lr * (10 - step)} if step % 2 else {"loss": lr * (10 - step), "acc": step / 10})
        ids.append(run.id)
        wandb.finish()

    api = wandb.Api()
    assert [r.name for r in api.runs("someone/sweep")] == ["lr-0.1", "lr-0.01", "lr-0.001"]  # oldest first
    assert [r.name for r in api.runs("sweep", order="-created_at")][0] == "lr-0.001"
    tuned = api.runs("sweep", filters={"config.lr": {"$lt": 0.05}, "tags": {"$in": ["tuned"]}}, order="-config.lr")
    assert [r.name for r in tuned] == ["lr-0.01", "lr-0.001"]
    assert [r.name for r in api.runs("sweep", filters={"$or": [{"config.opt": "sgd"}, {"display_name": "lr-0.001"}]})] \
        == ["lr-0.1", "lr-0.001"]

    run = api.run(f"someone/sweep/{ids[0]}")
    assert (run.id, run.name, run.state, run.config["lr"], run.summary["loss"], run.summary.acc) == (
        ids[0], "lr-0.1", "finished", 0.1, pytest.approx(0.1), 0.8)
    assert api.run(f"sweep/runs/{ids[0]}").id == ids[0] and run.lastHistoryStep == 9

    frame = run.history(keys=["acc"])
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["_step", "acc"]
    assert frame["_step"].tolist() == [0, 2, 4, 6, 8]  # only rows holding every key asked for
    sampled = run.history(samples=4)
    assert sampled["_step"].tolist() == [0, 3, 6, 9]
    assert {"_runtime", "_timestamp", "loss", "acc"} <= set(sampled.columns)
    scanned = list(run.scan_history(keys=["loss"], min_step=7))
    assert [(row["_step"], row["loss"]) for row in scanned] == [(7, pytest.approx(0.3)), (8, pytest.approx(0.2)),
                                                                 (9, pytest.approx(0.1))]
    with pytest.raises(wandb.errors.CommError):
        api.run("sweep/nosuchrun")


def test_run_objects_config_rules_and_disabled_mode(root):
    import tracklet.compat.wandb as wandb

    with pytest.raises(wandb.Error):
        wandb.log({"x": 1})  # as in W&B: no run yet
    run = wandb.init(project="rules", config={"lr": 0.1}, settings={"console": "off", "x_disable_stats": True},
                     config_exclude_keys=["secret"])
    assert wandb.run is run and isinstance(run, wandb.wandb_run.Run)
    with pytest.warns(tracklet.TrackletWarning, match="returning that run"):
        assert wandb.init(project="other") is run  # W&B's default: the active run comes back
    with pytest.raises(wandb.sdk.lib.config_util.ConfigError):
        wandb.config.lr = 0.2
    wandb.config.update({"lr": 0.2}, allow_val_change=True)
    wandb.config.setdefaults({"lr": 9, "wd": 0.01})
    import argparse

    wandb.config.update(argparse.Namespace(batch=8, secret="x"))
    assert wandb.config.as_dict() == {"lr": 0.2, "wd": 0.01, "batch": 8, "secret": "x"}
    assert (wandb.config.lr, wandb.config["wd"], "batch" in wandb.config) == (0.2, 0.01, True)
    wandb.summary.best = 3
    assert wandb.summary["best"] == 3 and dict(run.summary) == {"best": 3}
    # a summary op W&B doesn't have (W&B raises) is named as such, not as "not yet supported"
    with pytest.warns(tracklet.TrackletWarning, match="'avg' is not a W&B summary op"):
        wandb.define_metric("loss", summary="avg")
    run.finish()
    assert wandb.run is None

    disabled = wandb.init(project="rules", mode="disabled", config={"a": 1})
    assert isinstance(disabled, wandb.sdk.lib.RunDisabled) and os.path.isdir(disabled.dir)
    disabled.log({"x": 1})
    wandb.log({"x": 2, "val": {"acc": 0.5}})
    # as W&B's disabled run: the summary holds what was logged last (scripts read it after training)
    assert disabled.summary["x"] == 2 and wandb.summary["val"] == {"acc": 0.5}
    disabled.finish()
    assert [r.name for r in tracklet.Api(root).runs("rules")] == [run.name]


def test_a_disabled_runs_directory_is_removed_at_exit(tmp_path):
    """``mode="disabled"``'s ``run.dir`` is scratch space: what a script saves there (a checkpoint can be
    large) is gone when the process ends, not left in the temp directory run after run."""
    # A child forked meanwhile (a worker) that ends normally leaves it alone: the directory is the parent's.
    script = ("import sys, os; from tracklet.compat import wandb\n"
              "run = wandb.init(project='x', mode='disabled')\n"
              "open(os.path.join(run.dir, 'model.ckpt'), 'wb').write(bytes(1 << 20))\n"
              "pid = os.fork()\n"
              "if pid == 0: sys.exit(0)\n"
              "os.waitpid(pid, 0); print('kept by the child:', os.path.exists(os.path.join(run.dir, 'model.ckpt')))\n"
              "run.finish(); print(run.dir)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(tmp_path / "root")})
    assert done.returncode == 0, done.stderr
    scratch = done.stdout.strip().splitlines()[-1]
    assert "tracklet-wandb-disabled-" in scratch and not os.path.exists(scratch)
    assert "kept by the child: True" in done.stdout


# The same script under the real wandb (offline, then imported) and under tracklet's compat layer:
# a script's runs must look the same whichever way they were recorded.
SIDE_BY_SIDE = """
import json, sys
import numpy as np
import wandb

run = wandb.init(config={"seed": 1})                       # no project: W&B's "uncategorized"
wandb.define_metric("loss", summary="min")
wandb.define_metric("acc", summary="max")
wandb.define_metric("avg", summary="mean")
wandb.define_metric("last", summary="last")
wandb.define_metric("span", summary="min,max")
wandb.define_metric("opening", summary="first")
wandb.define_metric("hidden_from_summary", summary="none")
wandb.define_metric("trainer/global_step")
wandb.define_metric("*", step_metric="trainer/global_step", step_sync=True)  # as Lightning's WandbLogger
for i in range(4):
    wandb.log({"loss": 1.0 / (i + 1), "acc": i / 10, "avg": float(i), "last": i, "span": i * 2, "opening": 5 - i,
               "hidden_from_summary": i, "plain": i, "trainer/global_step": 10 * i})
    wandb.log({"samples": [wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))]})  # media alone: a row still
    run.log({"table": wandb.Table(columns=["a"], data=[[i]])})
info = {"project": run.project, "id": run.id}
run.finish()
print(json.dumps(info))
"""


@pytest.mark.skipif(not _have("wandb"), reason="the real wandb package is needed for the side-by-side run")
def test_a_script_records_the_same_under_real_wandb_and_the_compat_layer(root, tmp_path):
    from tracklet.importers import import_wandb

    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "train.py").write_text(textwrap.dedent(SIDE_BY_SIDE))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(real_dir), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "WANDB_API_KEY": "", "NO_PROXY": "*", "WANDB_X_DISABLE_STATS": "true"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "train.py"], env=env, cwd=real_dir, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    real_info = json.loads(done.stdout.strip().splitlines()[-1])
    (imported,) = import_wandb(real_dir / "wandb", root=root)
    real = tracklet.Api(root).run(imported.path)

    compat_info = tracklet_run(tmp_path, SIDE_BY_SIDE)
    compat = tracklet.Api(root).run(f"{compat_info['project']}/{compat_info['id']}")

    assert real_info["project"] == compat_info["project"] == real.project == compat.project == "uncategorized"
    want = {"loss": {"min": 0.25}, "acc": {"max": 0.3}, "avg": {"mean": 1.5}, "last": {"last": 3},
            "span": {"min": 0, "max": 6}, "opening": {"first": 5}, "plain": 3, "trainer/global_step": 30}
    for recorded in (real, compat):
        summary = {k: v for k, v in recorded.summary.items() if k in want or k == "hidden_from_summary"}
        assert summary == want, recorded.path
    # media-only rows are kept, with the step metric step_sync fills in, as W&B writes them
    real_rows, compat_rows = list(real.history().rows()), list(compat.history().rows())
    assert len(real_rows) == len(compat_rows) == 12
    assert [r.get("trainer/global_step") for r in compat_rows] == [r.get("trainer/global_step") for r in real_rows] \
        == [0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30]
    assert [r["_step"] for r in compat_rows] == [r["_step"] for r in real_rows] == list(range(12))
    # W&B's filter on a define_metric summary finds both
    import tracklet.compat.wandb as wandb

    found = wandb.Api().runs("uncategorized", filters={"summary_metrics.loss.min": {"$lt": 0.3}})
    assert sorted(r.id for r in found) == sorted([real.id, compat.id])


def test_every_compat_warning_points_at_the_users_line(root, monkeypatch):
    import warnings

    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = wandb.init(project="where", settings={"console": "off", "x_disable_stats": True}); first = _line()
        run.log({"table": wandb.Table(columns=["a"])})                          # recorded: no warning
        run.log({"graph": wandb.Graph()}); unsupported = _line()                   # one "not yet supported"
        wandb.alert("t", "x", wait_duration="soon"); alert = _line()
        run.log({"x": 1}, step=5); run.log({"x": 2}, step=1); backwards = _line()  # tracklet.Run's own warning
        wandb.log({"x": 3}, step=2**63); too_far = _line()                         # ... and its step-range one
        wandb.finish()
    where = {str(w.message).split(":")[1].strip()[:20]: (w.filename, w.lineno) for w in caught}
    assert sorted(line for _, line in where.values()) == [unsupported, alert, backwards, too_far], where
    assert {filename for filename, _ in where.values()} == {__file__}, where
    assert first < unsupported


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_alert_wait_duration_and_init_dir_are_honoured(root, tmp_path, monkeypatch):
    import datetime
    import time

    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    monkeypatch.setattr(_messages, "_warned", set())
    elsewhere = tmp_path / "elsewhere"
    with warnings_recorded() as caught:
        run = wandb.init(project="honour", dir=str(elsewhere), settings={"console": "off", "x_disable_stats": True})
        for text in ("a", "b"):
            wandb.alert("loss spike", text)                   # W&B's default: one per title per minute
        wandb.alert("other", "c", wait_duration=0.01)
        time.sleep(0.05)                                      # longer than the wait: recorded again
        wandb.alert("other", "d", wait_duration=datetime.timedelta(seconds=0.01))
        wandb.alert("other", "not again", wait_duration=0)    # 0 is W&B's default too: a minute
        wandb.alert("slow", "e", wait_duration=3600)
        wandb.alert("slow", "f", wait_duration=3600)
        wandb.finish()
    assert not [str(w.message) for w in caught if "dir" in str(w.message) or "wait_duration" in str(w.message)]
    recorded = tracklet.Api(elsewhere).run(f"honour/{run.id}")  # dir= is the data root, as tracklet.init(dir=)
    assert [(a.title, a.text) for a in recorded.alerts] == [("loss spike", "a"), ("other", "c"), ("other", "d"),
                                                           ("slow", "e")]
    assert tracklet.Api(root).runs("honour") == []
    # W&B's default dir (the working directory; Lightning's WandbLogger passes save_dir=".") is tracklet's data root
    monkeypatch.chdir(tmp_path)
    run = wandb.init(project="honour", dir=".", settings={"console": "off", "x_disable_stats": True})
    wandb.finish()
    assert [r.id for r in tracklet.Api(root).runs("honour")] == [run.id]


def warnings_recorded():
    import warnings

    class Recorded(warnings.catch_warnings):
        def __enter__(self):
            caught = super().__enter__()
            warnings.simplefilter("always")
            return caught

    return Recorded(record=True)


def test_public_api_run_objects_as_export_scripts_use_them(root, tmp_path):
    import tracklet.compat.wandb as wandb
    from tracklet.core.values import Histogram

    settings = {"console": "off", "x_disable_stats": True, "disable_git": True}
    run = wandb.init(project="export", name="first", config={"lr": 0.1, "_private": 1, "opt": {"beta": 0.9}},
                     settings=settings)
    for step in range(3):
        wandb.log({"loss": 1.0 / (step + 1), "weights": wandb.Histogram([1, 2, 2, 3], num_bins=2)})
    run.summary["best"] = float("nan")
    run.summary["final_weights"] = wandb.Histogram([1, 2, 2, 3], num_bins=2)  # W&B keeps the histogram
    with warnings_recorded() as caught:
        run.summary.update({"sample": wandb.Table(columns=["a"], data=[[1]])})  # W&B: its file; here: log() it
    assert [str(w.message) for w in caught if "summary['sample'] = wandb.Table" in str(w.message)], caught
    with open(os.path.join(run.dir, "notes.txt"), "w") as handle:
        handle.write("kept with the run")
    run_id = run.id
    wandb.finish()
    log_file = os.path.join(tracklet.Api(root).run(f"export/{run_id}").dir, "run.tlog")
    recorded_bytes = open(log_file, "rb").read()

    # the W&B docs' export-to-CSV snippet
    api = wandb.Api()
    summary_list, config_list, name_list = [], [], []
    for found in api.runs("someone/export"):
        summary_list.append(found.summary._json_dict)
        config_list.append({k: v for k, v in found.config.items() if not k.startswith("_")})
        name_list.append(found.name)
    assert name_list == ["first"] and config_list == [{"lr": 0.1, "opt": {"beta": 0.9}}]
    (exported,) = summary_list
    assert exported["loss"] == pytest.approx(1 / 3) and exported["best"] != exported["best"]  # NaN kept
    assert exported["weights"] == {"_type": "histogram", "values": [1, 3], "bins": [1.0, 2.0, 3.0]}
    assert exported["final_weights"] == exported["weights"] and "sample" not in exported  # not its repr text
    json.dumps(exported)  # JSON data, as in W&B
    assert api.run(f"export/{run_id}").summary_metrics["weights"] == exported["weights"]

    found = api.run(f"export/{run_id}")
    assert [f.name for f in found.files()] == ["config.yaml", "notes.txt", "wandb-metadata.json", "wandb-summary.json"]
    with found.file("notes.txt").download(root=str(tmp_path / "down")) as handle:
        assert handle.read() == "kept with the run"
    assert [row["loss"] for row in found.scan_history(keys=["loss"])] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert len(found.history(pandas=False)) == 3
    for read in (found.history, found.scan_history):  # W&B: "keys must be specified in a list" (and no rows)
        with pytest.raises(wandb.errors.UsageError, match=r"keys must be specified in a list: keys=\['loss'\]"):
            read(keys="loss")

    # run.update() saves config and summary edits: appended to the record log, nothing rewritten
    found.config["lr"] = 0.2
    found.config["batch"] = 64
    del found.config["_private"]
    found.config["opt"]["beta"] = 0.99  # a nested value changed in place
    found.summary["best"] = 0.25
    found.summary.verdict = "good"
    found.update()
    assert open(log_file, "rb").read().startswith(recorded_bytes)
    again = wandb.Api().run(f"export/{run_id}")
    assert again.config == {"lr": 0.2, "batch": 64, "opt": {"beta": 0.99}}
    assert (again.summary["best"], again.summary.verdict) == (0.25, "good")
    assert again.summary["weights"] == exported["weights"] and again.state == "finished"  # W&B's JSON, as W&B's
    assert isinstance(tracklet.Api(root).run(f"export/{run_id}").summary["weights"], Histogram)  # not rewritten
    assert tracklet.Api(root).run(f"export/{run_id}").config == {"lr": 0.2, "batch": 64, "opt": {"beta": 0.99}}
    # derived stores see the edit like any record (the store indexes from the log)
    assert [r.id for r in tracklet.Api(root).runs("export", filter="summary.best = 0.25 and config.batch = 64")] \
        == [run_id]
    # name, tags, notes, group and job type edits are saved too (a RunUpdate record), with the config
    again.config["lr"] = 0.3
    again.tags.append("reviewed")
    again.name, again.notes, again.group, again.job_type = "renamed", "checked by hand", "g1", "eval"
    again.update()
    saved = wandb.Api().run(f"export/{run_id}")
    assert (saved.config["lr"], saved.name, saved.tags, saved.notes, saved.group, saved.job_type) == (
        0.3, "renamed", [*again.tags], "checked by hand", "g1", "eval")
    mine = tracklet.Api(root).run(f"export/{run_id}")
    assert (mine.name, mine.notes, mine.group, mine.job_type) == ("renamed", "checked by hand", "g1", "eval")
    assert "reviewed" in mine.tags and open(log_file, "rb").read().startswith(recorded_bytes)
    assert [r.id for r in tracklet.Api(root).runs("export", filter='name = "renamed" and group = "g1"')] \
        == [run_id]  # the store applies it too
    saved.tags = ["fine", 3]
    with pytest.raises(wandb.errors.UsageError, match="tags must be a list of strings"):
        saved.update()  # refused whole: nothing of it is saved
    assert wandb.Api().run(f"export/{run_id}").tags == [*again.tags]
    # W&B's summary.update() saves the summary at once, alone (its docs' snippet calls no run.update())
    fresh = wandb.Api().run(f"export/{run_id}")
    fresh.config["lr"] = 9
    fresh.summary["checked"] = True
    fresh.summary["accuracy_histogram"] = wandb.Histogram([1, 2, 2, 3], num_bins=2)  # W&B's docs' snippet
    fresh.summary.update()
    fresh.summary.update({"score": 0.5})
    reread = wandb.Api().run(f"export/{run_id}")
    assert (reread.summary["checked"], reread.summary["score"], reread.config["lr"]) == (True, 0.5, 0.3)
    assert reread.summary["accuracy_histogram"] == exported["weights"]
    reread.summary["sample"] = wandb.Table(columns=["a"], data=[[1]])
    reread.summary["also"] = 1
    with pytest.raises(wandb.errors.UsageError, match=r"summary\['sample'\] holds a wandb.Table"):
        reread.summary.update()
    assert "also" not in wandb.Api().run(f"export/{run_id}").summary  # nothing of it saved

    # a run still being recorded belongs to its writer: refused, nothing lost
    live = wandb.init(project="export", name="live", settings=settings, reinit="finish_previous")
    live.log({"x": 1})
    live.tracklet_run.flush()
    reading = wandb.Api().run(f"export/{live.id}")
    reading.config["lr"] = 1
    with pytest.raises(wandb.errors.CommError, match="being written"):
        reading.update()
    with pytest.raises(wandb.errors.CommError, match="being written"):
        reading.summary.update({"x": 2})
    wandb.finish()
    assert tracklet.Api(root).run(f"export/{live.id}").history(["x"])["x"] == [1]


# A vision/speech script as W&B's docs write it: images with masks and boxes, a list of images, audio.
MEDIA = """
import json, warnings
import numpy as np
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda message, *rest: caught.append(str(message))
import wandb

run = wandb.init(project="media")
rng = np.random.default_rng(0)
class_labels = {0: "background", 1: "cat", 2: "dog"}
for epoch in range(3):
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mask = np.zeros((32, 48), dtype=np.uint8)
    mask[4:12, 8:20] = 1
    mask[20:, 30:] = 2
    boxes = {"predictions": {"box_data": [{"position": {"minX": 0.1, "maxX": 0.5, "minY": 0.2, "maxY": 0.6},
                                           "class_id": 1, "box_caption": "cat (0.93)", "scores": {"conf": 0.93}},
                                          {"position": {"middle": [36, 26], "width": 12, "height": 10},
                                           "domain": "pixel", "class_id": 2, "scores": {"conf": 0.5}}],
                             "class_labels": class_labels}}
    wandb.log({"epoch": epoch, "loss": 1.0 / (epoch + 1),
               "prediction": wandb.Image(image, caption=f"epoch {epoch}", boxes=boxes,
                                         masks={"ground_truth": {"mask_data": mask, "class_labels": class_labels}}),
               "samples": [wandb.Image(image[:, :, 0]), wandb.Image(image.astype(np.float32) / 255.0)],
               "speech": wandb.Audio(np.sin(np.arange(1600) / 10.0).astype(np.float32) * 0.3, sample_rate=16000,
                                     caption="a tone")})
info = {"path": f"{run.project}/{run.id}", "warnings": caught}
wandb.finish()
print(json.dumps(info))
"""


def test_an_unmodified_wandb_script_records_images_with_masks_and_boxes_and_audio(root, tmp_path):
    import numpy as np

    out = tracklet_run(tmp_path, MEDIA)
    assert out["warnings"] == []  # nothing dropped, nothing warned about
    recorded = tracklet.Api(root).run(out["path"])
    assert recorded.history()["loss"] == [1.0, 0.5, 1 / 3]
    predictions = recorded.images("prediction")
    assert [(p.step, p.caption, p.width, p.height) for p in predictions] == [
        (step, f"epoch {step}", 48, 32) for step in range(3)]
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(predictions[0].to_numpy(), first)
    truth = predictions[0].masks["ground_truth"]
    assert truth.class_labels == {0: "background", 1: "cat", 2: "dog"}
    assert truth.to_numpy()[5, 10] == 1 and truth.to_numpy()[25, 40] == 2 and truth.to_numpy()[0, 0] == 0
    cat, dog = predictions[0].boxes["predictions"].boxes
    assert (cat.label, cat.caption, cat.scores, cat.pixel) == ("cat", "cat (0.93)", {"conf": 0.93}, False)
    assert (dog.label, dog.min_x, dog.max_x, dog.min_y, dog.max_y, dog.pixel) == ("dog", 30, 42, 21, 31, True)
    samples = recorded.images("samples")
    assert [(s.step, s.index) for s in samples] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert np.array_equal(samples[0].to_numpy(), first[:, :, 0])
    assert np.array_equal(samples[1].to_numpy(), first)  # floats in [0, 1] scaled back to 0-255
    speech = recorded.media("speech")
    assert [(a.step, a.sample_rate, a.duration, a.caption) for a in speech] == [(s, 16000, 0.1, "a tone") for s in range(3)]
    assert len({a.digest for a in speech}) == 1  # the same tone each epoch: one blob


def test_wandb_table_add_computed_columns_and_cast_as_w_and_b(root):
    """W&B's ``Table.add_computed_columns(fn)`` (``fn(index, row_dict) -> {new column: value}``)
    and ``cast`` were missing (AttributeError); computed columns are recorded with the table."""
    import numpy as np

    import tracklet.compat.wandb as wandb

    run = wandb.init(project="tables", settings={"console": "off", "x_disable_stats": True})
    table = wandb.Table(columns=["image", "truth", "pred"])
    for index in range(3):
        table.add_data(wandb.Image(np.full((4, 4), index, dtype=np.uint8)), index, index if index else 5)
    table.cast("truth", "int")
    with pytest.raises(Exception, match="no column 'nope'"):
        table.cast("nope", "int")
    assert table.add_computed_columns(lambda ndx, row: {"correct": row["truth"] == row["pred"], "row": ndx}) is table
    assert table.columns == ["image", "truth", "pred", "correct", "row"]
    assert table.get_column("correct") == [False, True, True] and table.get_column("row") == [0, 1, 2]
    with pytest.raises(TypeError, match="must return a dict"):
        table.add_computed_columns(lambda ndx, row: row["truth"])
    # Every row's keys make columns (only the first row's did), None where a row lacks one.
    table.add_computed_columns(lambda ndx, row: {"flag": True} if ndx else {"note": "first"})
    assert table.columns == ["image", "truth", "pred", "correct", "row", "note", "flag"]
    assert table.get_column("note") == ["first", None, None] and table.get_column("flag") == [None, True, True]
    run.log({"preds": table})
    wandb.finish()
    got = tracklet.Api(root).run(f"tables/{run.id}").table("preds").to_pandas()
    assert got["correct"].tolist() == [False, True, True] and got["image"][0]["kind"] == "image"

def test_a_frames_nan_reads_back_from_the_wandb_table_as_nan_as_wandbs_and_is_recorded_as_null(root):
    """W&B's ``Table(dataframe=df).get_column("x")`` (and ``data``, ``iterrows``) give a NaN of the
    frame as nan, as they do for rows given with ``float("nan")``; tracklet's gave None (Arrow
    stores a frame's NaN as null). A None added later stays None; what is recorded is unchanged
    (null), and an INCREMENTAL table's frame rows, once logged, no longer count."""
    import math

    import numpy as np
    import pandas as pd

    import tracklet
    import tracklet.compat.wandb as wandb

    frame = pd.DataFrame({"x": [1.0, np.nan, np.inf], "f": np.array([np.nan, 1, 2], dtype=np.float32),
                          "s": ["a", None, "u"]})
    table = wandb.Table(dataframe=frame)
    x = table.get_column("x")
    assert x[0] == 1.0 and math.isnan(x[1]) and x[2] == math.inf and math.isnan(table.get_column("f")[0])
    assert table.get_column("s") == ["a", None, "u"]
    table.add_data(None, 3.0, None)
    assert table.get_column("x")[3] is None and math.isnan(table.data[1][0]) and table.data[3][0] is None
    assert math.isnan(list(table.iterrows())[1][1][0])
    assert np.isnan(table.get_column("x", convert_to="numpy")[1])
    rows = wandb.Table(columns=["x"], data=[[float("nan")], [None]]).get_column("x")
    assert math.isnan(rows[0]) and rows[1] is None  # rows given: as they were (as W&B's)
    run = wandb.init(project="nans", settings={"console": "off", "x_disable_stats": True})
    run.log({"t": table})
    growing = wandb.Table(dataframe=pd.DataFrame({"x": [np.nan]}), log_mode="INCREMENTAL")
    run.log({"g": growing})
    growing.add_data(None)
    assert growing.get_column("x") == [None]  # the frame's row was logged and let go of
    path = run.path
    run.finish()
    recorded = tracklet.Api(root).run(path).table("t").to_arrow()
    assert recorded.column("x").to_pylist() == [1.0, None, math.inf, None]  # stored as before: null


def test_get_column_as_numpy_stacks_a_list_column_into_one_array_as_wandbs(root):
    # W&B's get_column(convert_to="numpy") is np.array(values): an embeddings column of N rows of D
    # values is one N×D array; tracklet gave Arrow's object array of N arrays (shape (N,)).
    import numpy as np

    import tracklet.compat.wandb as wandb

    table = wandb.Table(columns=["id", "emb", "ragged"])
    table.add_data(1, np.array([0.1, 0.2, 0.3]), [1])
    table.add_data(2, [0.4, 0.5, 0.6], [2, 3])
    emb = table.get_column("emb", convert_to="numpy")
    assert emb.shape == (2, 3) and emb.dtype == np.float64 and emb[1].tolist() == [0.4, 0.5, 0.6]
    ragged = table.get_column("ragged", convert_to="numpy")  # rows of different lengths: one array each
    assert ragged.shape == (2,) and [list(row) for row in ragged] == [[1], [2, 3]]
    assert table.get_column("id", convert_to="numpy").tolist() == [1, 2]
    run = wandb.init(project="emb", settings={"console": "off", "x_disable_stats": True})
    run.log({"t": table})
    run.finish()
    back = wandb.Api().artifact(f"emb/run-{run.id}-t:latest").get("t")
    assert back.get_column("emb", convert_to="numpy").shape == (2, 3)


def test_wandb_table_is_a_tracklet_table_and_logging_it_records_it(root):
    import warnings

    import pandas as pd

    import tracklet.compat.wandb as wandb

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not supported" warning: a logged table is recorded
        run = wandb.init(project="tables", settings={"console": "off", "x_disable_stats": True})
        preds = wandb.Table(columns=["id", "label"], data=[[0, "cat"]], log_mode="INCREMENTAL",
                            dtype=None, allow_mixed_types=True)
        for step in range(3):
            preds.add_data(step + 1, "dog" if step % 2 else "cat")
            wandb.log({"preds": preds, "loss": 1.0 / (step + 1)})
        frame = wandb.Table(dataframe=pd.DataFrame({"x": [1.5, 2.5], "y": ["a", "b"]}))
        frame.add_column("z", [True, False])
        assert frame.get_column("z") == [True, False] and frame.columns == ["x", "y", "z"]
        assert list(frame.iterrows()) == [(0, [1.5, "a", True]), (1, [2.5, "b", False])]
        assert frame.get_dataframe()["x"].tolist() == [1.5, 2.5]
        run.log({"frame": frame})
        run.log({"df": pd.DataFrame({"k": [1, 2], "v": ["p", "q"]})})  # W&B logs a DataFrame as a Table of it
        wandb.finish()
    recorded = tracklet.Api(root).run(f"tables/{run.id}")
    assert recorded.table("df").to_pandas().to_dict("list") == {"k": [1, 2], "v": ["p", "q"]}
    assert recorded.table("preds").to_pandas().to_dict("list") == {"id": [0, 1, 2, 3],
                                                                   "label": ["cat", "cat", "dog", "cat"]}
    assert recorded.table("preds", step=0).count() == 2
    assert recorded.table("frame").filter("z = true").to_pandas().to_dict("list") == {"x": [1.5], "y": ["a"],
                                                                                       "z": [True]}
    assert isinstance(frame, tracklet.Table)


def test_a_wandb_table_made_without_columns_or_from_a_dataframe_as_data_keeps_its_rows(root):
    """W&B's ``wandb.Table()`` has the columns Input, Output, Expected, and ``wandb.Table(data=df)``
    takes a pandas frame as its dataframe. Until session 35 the first had no columns (every
    ``add_data`` row was left out as too wide) and the second recorded the frame's column names as
    its rows (``list(df)``)."""
    import pandas as pd

    import tracklet.compat.wandb as wandb

    run = wandb.init(project="tables", settings={"console": "off", "x_disable_stats": True})
    samples = wandb.Table()
    assert samples.columns == ["Input", "Output", "Expected"]
    samples.add_data("2+2", "4", "4")
    assert samples.get_column("Input") == ["2+2"]
    assert wandb.Table(data=[[1, 2, 3]]).columns == ["Input", "Output", "Expected"]  # as W&B
    assert wandb.Table(data=[[1, 2]]).columns == ["col0", "col1"]  # W&B refuses this width
    frame = wandb.Table(data=pd.DataFrame({"k": [1, 2], "v": ["p", "q"]}))
    assert frame.columns == ["k", "v"] and frame.data == [[1, "p"], [2, "q"]]
    run.log({"samples": samples, "frame": frame})
    wandb.finish()
    recorded = tracklet.Api(root).run(f"tables/{run.id}")
    assert recorded.table("samples").to_pandas().to_dict("list") == {"Input": ["2+2"], "Output": ["4"],
                                                                     "Expected": ["4"]}
    assert recorded.table("frame").to_pandas().to_dict("list") == {"k": [1, 2], "v": ["p", "q"]}


def test_a_wandb_table_of_a_frame_has_the_frames_columns_whatever_columns_says(root):
    """W&B's table of a pandas frame (``data=df`` or ``dataframe=df``) takes the frame's columns and
    ignores ``columns=``; given both, ``dataframe=`` is read. tracklet raised ``KeyError`` for
    ``columns`` not in the frame and ``TableError`` for a frame passed both ways."""
    import pandas as pd

    import tracklet.compat.wandb as wandb

    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    for made in (wandb.Table(columns=["x", "y"], data=frame), wandb.Table(columns=["b"], data=frame),
                 wandb.Table(columns=["b"], dataframe=frame), wandb.Table(data=frame, dataframe=frame)):
        assert made.columns == ["a", "b"] and made.data == [[1, 3], [2, 4]]


def test_a_wandb_table_allowing_mixed_types_keeps_every_value(root):
    """``wandb.Table(allow_mixed_types=True)`` (W&B's Keras WandbEvalCallback makes its tables so):
    a column mixing types keeps each value, as its text. Values of another type than the column's
    first were stored as nulls (and read back so, even before logging: ``iterrows``, ``data``)."""
    import warnings

    import tracklet.compat.wandb as wandb

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user asked for mixed types: nothing to warn about
        run = wandb.init(project="tables", settings={"console": "off", "x_disable_stats": True})
        mixed = wandb.Table(columns=["a", "b", "n"], data=[[1, "x", 1]], allow_mixed_types=True)
        mixed.add_data("two", 2.5, 2)
        mixed.add_data(None, True, 3)
        assert [row for _, row in mixed.iterrows()] == [["1", "x", 1], ["two", "2.5", 2], [None, "True", 3]]
        mixed.add_column("c", [1, "one", [1]])
        run.log({"mixed": mixed})
        wandb.finish()
    got = tracklet.Api(root).run(f"tables/{run.id}").table("mixed").to_arrow().to_pydict()
    assert got == {"a": ["1", "two", None], "b": ["x", "2.5", "True"], "n": [1, 2, 3], "c": ["1", "one", "[1]"]}
    with pytest.warns(tracklet.TrackletWarning, match="stored as null"):  # the default is unchanged
        assert wandb.Table(columns=["a"], data=[[1], ["two"]]).data == [[1], [None]]


def _log_tables_and_weights(tmp_path) -> str:
    """A run that logs a table three times, an artifact after the first, then a chart: its id."""
    import tracklet.compat.wandb as wandb

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 10)
    run = wandb.init(project="listed", settings={"console": "off", "x_disable_stats": True})
    preds = wandb.Table(columns=["id", "label"], log_mode="MUTABLE")
    for step in range(3):
        preds.add_data(step, f"label {step}")
        wandb.log({"preds": preds})
        if step == 0:
            artifact = wandb.Artifact("weights", type="model")
            artifact.add_file(str(weights))
            run.log_artifact(artifact).wait()
    wandb.log({"curve": wandb.plot.line(wandb.Table(columns=["x", "y"], data=[[0, 1], [1, 2]]), "x", "y")})
    wandb.finish()
    return run.id


def _check_logged_tables_listed(api, run_id: str) -> None:
    listed = api.run(f"listed/{run_id}").logged_artifacts()
    table = f"listed/run-{run_id}-preds"
    assert [(a.qualified_name, a.type) for a in listed] == [
        (f"{table}:v0", "run_table"), ("listed/weights:v0", "model"), (f"{table}:v1", "run_table"),
        (f"{table}:v2", "run_table"), (f"listed/run-{run_id}-curve_table:v0", "run_table")]  # in the order logged
    assert [a.aliases for a in listed if a.type == "run_table"] == [[], [], ["latest"], ["latest"]]
    for version, artifact in enumerate(a for a in listed if a.qualified_name.startswith(table)):
        assert artifact.version == f"v{version}" and artifact.name == f"run-{run_id}-preds:v{version}"
        assert artifact.get("preds").get_column("id") == list(range(version + 1))  # the rows at that log
        assert api.artifact(artifact.qualified_name).get("preds").data == artifact.get("preds").data
    assert listed[-1].get("curve_table").columns == ["x", "y"]


def test_logged_tables_are_listed_in_logged_artifacts_as_w_and_b_lists_them(root, tmp_path):
    import tracklet.compat.wandb as wandb

    _check_logged_tables_listed(wandb.Api(), _log_tables_and_weights(tmp_path))


def test_a_run_synced_to_a_server_lists_its_logged_tables_as_w_and_b_does(root, tmp_path, servers):
    import tracklet.compat.wandb as wandb

    run_id = _log_tables_and_weights(tmp_path)
    server = servers(tmp_path / "server")
    synced = CliRunner().invoke(main, ["--dir", str(root), "sync", f"listed/{run_id}", "--url", server.url,
                                       "--quiet"])
    assert synced.exit_code == 0, synced.output
    _check_logged_tables_listed(wandb.Api(overrides={"base_url": server.url}), run_id)


def test_a_table_logged_under_a_key_with_a_slash_is_the_artifact_w_and_b_names_and_reads_back(root):
    """``wandb.log({"val/preds": table})``: W&B names its artifact ``run-<id>-valpreds-<crc>`` (an
    artifact name holds no ``/``); ``logged_artifacts()`` lists that name and ``api.artifact`` of it
    (or of the name as listed) reads the table back; the names are W&B's own (its
    ``sanitize_artifact_name`` gave them)."""
    import tracklet.compat.wandb as wandb

    run = wandb.init(project="slashed", id="tablekeys1", settings={"console": "off", "x_disable_stats": True})
    wandb.log({"val/preds": wandb.Table(columns=["id"], data=[[1], [2]]), "preds": wandb.Table(columns=["id"], data=[[3]])})
    wandb.log({"eval/cm": wandb.plot.confusion_matrix(y_true=[0, 1], preds=[0, 0], class_names=["a", "b"])})
    wandb.finish()
    api = wandb.Api()
    listed = api.run(f"slashed/{run.id}").logged_artifacts()
    assert sorted(a.name for a in listed) == ["run-tablekeys1-evalcm_table-mRrrzg:v0", "run-tablekeys1-preds:v0",
                                              "run-tablekeys1-valpreds-vh8a2g:v0"]
    for artifact in listed:
        assert api.artifact(artifact.qualified_name).get(artifact._key).data == artifact.get(artifact._key).data
    assert api.artifact("slashed/run-tablekeys1-valpreds-vh8a2g:latest").get("val/preds").get_column("id") == [1, 2]


def test_wandb_save_keeps_the_folders_w_and_b_keeps(root, tmp_path, monkeypatch):
    """``wandb.save`` lays files out in ``files/`` as W&B's docstring says: a relative glob keeps
    its path below the working directory, ``base_path`` cuts the path there, an absolute glob
    without one keeps its last folder; ``policy="live"`` copies the file again at finish from
    where it was, even after the script changed directory."""
    import tracklet.compat.wandb as wandb

    work = tmp_path / "work"
    for name in ("these/are/myfiles/a.txt", "files/x/saveme.txt", "files/y/saveme.txt", "ckpt/m.pt"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(name)
    monkeypatch.chdir(work)
    run = wandb.init(project="saved", settings={"console": "off", "x_disable_stats": True, "x_disable_meta": True})
    wandb.save("ckpt/*.pt")
    run.save("these/are/myfiles/*", base_path="these", policy="now")
    run.save("files/*/saveme.txt", policy="now")
    run.save(str(work / "these/are/myfiles/*.txt"), policy="now")
    (work / "ckpt/m.pt").write_text("trained")
    monkeypatch.chdir(tmp_path)
    wandb.finish()
    files = Path(tracklet.Api(root).run(f"saved/{run.id}").dir) / "files"
    assert sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file()) == [
        "are/myfiles/a.txt", "ckpt/m.pt", "files/x/saveme.txt", "files/y/saveme.txt", "myfiles/a.txt"]
    assert (files / "ckpt/m.pt").read_text() == "trained"  # "live": copied again at finish


def test_config_defaults_yaml_in_the_working_directory_is_each_runs_config_as_in_w_and_b(root, tmp_path, monkeypatch):
    """W&B loads ``config-defaults.yaml`` (``{key: {desc, value}}``) from the working directory as
    every run's config, and ``init(config=)`` overrides it (W&B's sweeps tutorials rely on it); one
    that doesn't parse is left out with a warning, and the run starts."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config-defaults.yaml").write_text(
        "epochs:\n  desc: Number of epochs\n  value: 100\nbatch_size:\n  desc: Batch size\n  value: 32\n")
    quiet = {"console": "off", "x_disable_stats": True, "x_disable_meta": True}
    with wandb.init(project="defaults", settings=quiet) as run:
        assert dict(wandb.config) == {"epochs": 100, "batch_size": 32}
    with wandb.init(project="defaults", config={"batch_size": 8, "lr": 0.1}, settings=quiet) as overridden:
        assert dict(wandb.config) == {"epochs": 100, "batch_size": 8, "lr": 0.1}
    recorded = {r.id: r.config for r in tracklet.Api(root).runs("defaults")}
    assert recorded == {run.id: {"epochs": 100, "batch_size": 32}, overridden.id: {"epochs": 100, "batch_size": 8, "lr": 0.1}}
    (tmp_path / "config-defaults.yaml").write_text("epochs: [1,\n")
    with pytest.warns(tracklet.TrackletWarning, match="config-defaults.yaml could not be read"):
        with wandb.init(project="defaults", config={"lr": 0.2}, settings=quiet):
            assert dict(wandb.config) == {"lr": 0.2}


def test_wandb_config_paths_files_are_read_into_the_config_at_init(root, tmp_path, monkeypatch):
    """``WANDB_CONFIG_PATHS``: comma-separated YAML files (``config-defaults.yaml``'s shape), a later
    file's keys over an earlier one's, over ``config-defaults.yaml`` and ``init(config=)`` (what W&B
    0.31 gives for its ``config_paths`` setting); a missing file is skipped, a broken one warned
    about and left out."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("wandb_version: 1\nlr:\n  desc: x\n  value: 0.1\nbatch:\n  value: 8\n")
    (tmp_path / "b.yaml").write_text("lr:\n  value: 0.2\nwd:\n  value: 0.01\n")
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")
    (tmp_path / "config-defaults.yaml").write_text("lr:\n  value: 0.5\ndrop:\n  value: 0.3\n")
    monkeypatch.setenv("WANDB_CONFIG_PATHS", "a.yaml, b.yaml,missing.yaml")
    quiet = {"console": "off", "x_disable_stats": True, "x_disable_meta": True}
    with wandb.init(project="paths", config={"batch": 16}, settings=quiet) as run:
        assert dict(wandb.config) == {"lr": 0.2, "drop": 0.3, "batch": 8, "wd": 0.01}
    (recorded,) = tracklet.Api(root).runs("paths")
    assert recorded.id == run.id and recorded.config == {"lr": 0.2, "drop": 0.3, "batch": 8, "wd": 0.01}
    monkeypatch.setenv("WANDB_CONFIG_PATHS", "broken.yaml,b.yaml")
    with pytest.warns(tracklet.TrackletWarning, match="WANDB_CONFIG_PATHS: .*broken.yaml could not be read"):
        with wandb.init(project="paths", settings=quiet):
            assert dict(wandb.config) == {"lr": 0.2, "drop": 0.3, "wd": 0.01}


def test_a_wandb_setting_left_unset_or_turned_off_is_not_warned_about(root):
    """``wandb.Settings(sync_tensorboard=False, log_internal=None)`` asks for nothing tracklet lacks,
    so ``init`` warns nothing (as ``init(sync_tensorboard=False)`` already did); the feature turned
    on is still warned about once."""
    import tracklet.compat.wandb as wandb

    quiet = {"console": "off", "x_disable_stats": True, "x_disable_meta": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wandb.init(project="quiet", settings=wandb.Settings(sync_tensorboard=False, log_internal=None, **quiet)).finish()
    assert [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)] == []
    with pytest.warns(tracklet.TrackletWarning, match=r"wandb.Settings\(sync_tensorboard\) is not yet supported"):
        wandb.init(project="quiet", settings=wandb.Settings(sync_tensorboard=True, **quiet)).finish()


def test_w_and_b_module_paths_scripts_import_types_from_are_provided():
    """``from wandb.sdk.artifacts.artifact import Artifact`` (type hints, helper modules) and the like
    import under the redirect (``wandb.X`` is ``tracklet.compat.wandb.X``) and give the types
    ``wandb.Artifact``, ``wandb.Image``... are; before, such a script stopped at the import."""
    import importlib

    import tracklet.compat.wandb as wandb

    for module, names in [
        ("sdk.artifacts.artifact", ["Artifact"]), ("sdk.artifacts", ["Artifact"]), ("sdk.lib.runid", ["generate_id"]),
        ("sdk.data_types.image", ["Image"]), ("sdk.data_types.table", ["Table", "JoinedTable", "PartitionedTable"]),
        ("sdk.data_types.histogram", ["Histogram"]), ("sdk.data_types.video", ["Video"]),
        ("sdk.data_types.audio", ["Audio"]), ("sdk.data_types.html", ["Html"]), ("sdk.data_types.object_3d", ["Object3D"]),
        ("sdk.data_types.plotly", ["Plotly"]), ("sdk.data_types", ["Image", "Table"]), ("apis", ["PublicApi"]),
    ]:
        found = importlib.import_module(f"tracklet.compat.wandb.{module}")
        for name in names:
            expected = {"generate_id": wandb.util.generate_id, "PublicApi": wandb.Api}.get(name) or getattr(wandb, name)
            assert getattr(found, name) is expected, (module, name)


def test_wandb_integrations_not_provided_say_so_and_what_to_use_instead():
    """``import wandb.sklearn`` (or ``wandb.integration.xgboost``, ``wandb.tensorboard``...) under the
    redirect raises ModuleNotFoundError naming the integration and what to use instead, where it
    read "No module named 'wandb.sklearn'", as if W&B were installed broken; ``wandb.sklearn`` the
    same as an AttributeError. A name W&B doesn't have is still the plain error."""
    from tracklet.compat.redirect import WandbRedirect

    import tracklet.compat.wandb as wandb

    finder = WandbRedirect()
    for name, says in [("wandb.sklearn", "wandb.plot.confusion_matrix()"), ("wandb.integration.xgboost", "a callback of your own"),
                       ("wandb.tensorboard", "tracklet import tensorboard"), ("wandb.keras", "wandb.integration.keras")]:
        with pytest.raises(ModuleNotFoundError, match=rf"{name} \(W&B's .* is not provided by tracklet's W&B layer.*{says}"):
            finder.find_spec(name)
    assert finder.find_spec("wandb.nosuch") is None and finder.find_spec("wandb.plot") is not None
    with pytest.raises(AttributeError, match="wandb.sklearn .* not provided"):
        wandb.sklearn.plot_roc  # noqa: B018


def test_resume_auto_without_an_id_continues_the_last_run_started_here_unless_it_finished(root, tmp_path, monkeypatch):
    """W&B's ``wandb.init(resume=True)`` / ``resume="auto"`` with no id (a preemptible job restarted
    in its directory): the last run started from this working directory is continued when it did not
    finish (failed, crashed), and a new run starts after one that finished, as W&B's
    ``wandb-resume.json`` does, or beside one still being recorded; before, every restart started
    a new run."""
    import tracklet.compat.wandb as wandb

    quiet = {"console": "off", "x_disable_stats": True, "x_disable_meta": True}
    monkeypatch.chdir(tmp_path)
    first = wandb.init(project="auto", resume=True, settings=quiet)
    wandb.log({"loss": 1.0})
    first.finish(exit_code=1)  # preempted: the job failed
    again = wandb.init(project="auto", resume="auto", settings=quiet)
    assert (again.id, again.resumed, again.step) == (first.id, True, 1)
    wandb.log({"loss": 0.5})
    again.finish()
    fresh = wandb.init(project="auto", resume=True, settings=quiet)
    assert fresh.id != first.id and not fresh.resumed
    fresh.finish(exit_code=1)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")  # another directory: its own last run
    elsewhere = wandb.init(project="auto", resume=True, settings=quiet)
    assert elsewhere.id not in (first.id, fresh.id)
    beside = wandb.init(project="auto", resume=True, reinit="create_new", settings=quiet)
    assert beside.id != elsewhere.id  # still being recorded (a job beside it): a new run, not a failed resume
    beside.finish()
    elsewhere.finish()
    history = tracklet.Api(root).run(f"auto/{first.id}").history().rows()
    assert [row["loss"] for row in history] == [1.0, 0.5]
