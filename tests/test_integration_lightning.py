"""PyTorch Lightning integration: a 2-layer MLP on random tensors trains for 2 epochs of 4 batches
on the CPU, and the run is read back through the public Api."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from lightning.fabric.loggers.logger import _DummyExperiment  # noqa: E402
from lightning.fabric.utilities.rank_zero import rank_zero_only  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import tracklet  # noqa: E402
from tracklet.core import lifecycle  # noqa: E402
from tracklet.integrations.lightning import GLOBAL_STEP, TrackletFabricLogger, TrackletLogger  # noqa: E402

from conftest import QUIET, REPO  # noqa: E402

# A recording failure inside the logger is a TrackletWarning (training goes on): here it fails the test.
pytestmark = [
    pytest.mark.filterwarnings("error::tracklet.core.encoder.TrackletWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]

BATCHES = 4  # per epoch
EPOCHS = 2
STEPS = BATCHES * EPOCHS


@dataclasses.dataclass
class Optim:
    name: str = "sgd"
    momentum: float = 0.0


class MLP(L.LightningModule):
    def __init__(self, lr: float = 0.05, sizes: dict | None = None, run_args: argparse.Namespace | None = None,
                 optim: Optim | None = None, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["fail_at"])
        self.fail_at = fail_at
        sizes = sizes or {"hidden": 8}
        hidden = sizes["hidden"]
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise RuntimeError("boom in training_step")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(8 * BATCHES, 4, generator=generator)
    data = TensorDataset(inputs, torch.randn(8 * BATCHES, 1, generator=generator))
    return DataLoader(data, batch_size=8)


def model(**kwargs) -> MLP:
    torch.manual_seed(0)
    kwargs.setdefault("sizes", {"hidden": 8, "nested": {"depth": 2}})
    kwargs.setdefault("run_args", argparse.Namespace(seed=7, data="random"))
    kwargs.setdefault("optim", Optim())
    return MLP(**kwargs)


def trainer(tmp_path, logger, callbacks=(), **overrides) -> "L.Trainer":
    arguments = dict(
        accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False, logger=logger,
        default_root_dir=tmp_path, max_epochs=EPOCHS, log_every_n_steps=1, callbacks=list(callbacks),
    )
    arguments.update(overrides)
    return L.Trainer(**arguments)


def make_logger(root, **kwargs) -> TrackletLogger:
    kwargs.setdefault("project", "lit")
    return TrackletLogger(dir=str(root), settings=QUIET, **kwargs)


def recorded(root, logger) -> "tracklet.RecordedRun":
    return tracklet.Api(root).run(f"{logger.name}/{logger.version}")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def by_step(history, key) -> dict:
    return {s: v for s, v in zip(history["_step"], history[key]) if v is not None}


# ---------------------------------------------------------------- a whole fit()


def test_fit_records_config_history_summary_checkpoints_and_finishes(root, tmp_path):
    logger = make_logger(root, log_model=True, tags=["cpu"])
    version_before, dir_before = logger.version, logger.save_dir
    checkpoint = ModelCheckpoint(monitor="val_loss", save_last=True, save_top_k=1)
    fit = trainer(tmp_path, logger, [checkpoint])
    fit.fit(model(), loader(), loader(1))

    run = recorded(root, logger)
    assert run.state == "finished" and run.exit_code == 0
    assert logger.version == version_before == run.id and logger.name == "lit" == run.project
    assert logger.save_dir == logger.log_dir == dir_before == run.dir == fit.log_dir
    assert run.tags == ["cpu"]

    assert run.config == {
        "lr": 0.05,
        "sizes": {"hidden": 8, "nested": {"depth": 2}},
        "run_args": {"seed": 7, "data": "random"},
        "optim": {"name": "sgd", "momentum": 0.0},
    }

    history = run.history()
    # one row per trainer step, at the trainer's step, with trainer/global_step beside it
    assert history["_step"] == list(range(STEPS)) == history[GLOBAL_STEP]
    assert fit.global_step == STEPS
    assert sorted(by_step(history, "train_loss_step")) == list(range(STEPS))
    # validation and the epoch's train mean land in the row of the epoch's last batch
    val = by_step(history, "val_loss")
    assert sorted(val) == [BATCHES - 1, STEPS - 1]
    assert sorted(by_step(history, "train_loss_epoch")) == [BATCHES - 1, STEPS - 1]
    assert by_step(history, "epoch") == {s: s // BATCHES for s in range(STEPS)}

    assert [(d.name, d.step_metric) for d in run.metric_definitions] == [("*", GLOBAL_STEP)]

    summary = run.summary
    assert summary["val_loss"] == val[STEPS - 1]
    assert summary["val_loss"] == pytest.approx(float(fit.callback_metrics["val_loss"]))
    assert summary[GLOBAL_STEP] == STEPS - 1 and summary["epoch"] == EPOCHS - 1

    # log_model=True: the best and the last checkpoint, recorded when fit() ended
    checkpoints = {Path(c.path).name: c for c in run.checkpoints}
    best_name = Path(checkpoint.best_model_path).name
    assert set(checkpoints) == {best_name, "last.ckpt"}
    for c in checkpoints.values():
        assert Path(c.path).is_file() and c.error == ""
        assert c.sha256 == sha256(c.path) and c.size_bytes == Path(c.path).stat().st_size
        assert c.monitor == "val_loss"
        assert Path(c.path).is_relative_to(run.dir)  # ModelCheckpoint saves inside the run directory
    best, last = checkpoints[best_name], checkpoints["last.ckpt"]
    assert best.metadata["best"] is True and last.metadata["best"] is False
    assert best.score == pytest.approx(checkpoint.best_model_score.item()) == pytest.approx(min(val.values()))
    best_epoch = int(best_name.split("-")[0].split("=")[1])
    assert best.metadata["epoch"] == best_epoch and best.score == val[best_epoch * BATCHES + BATCHES - 1]
    assert best.step == (best_epoch + 1) * BATCHES  # the trainer's global step in the checkpoint
    assert last.score == val[STEPS - 1] and last.metadata["epoch"] == EPOCHS - 1 and last.step == STEPS
    assert lifecycle.current() is None  # the logger's run is finished and no longer current


def test_log_model_all_records_every_checkpoint_as_it_is_saved(root, tmp_path):
    logger = make_logger(root, log_model="all")
    checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=-1, filename="{epoch}")
    trainer(tmp_path, logger, [checkpoint]).fit(model(), loader(), loader(1))

    run = recorded(root, logger)
    val = by_step(run.history(), "val_loss")
    assert [Path(c.path).name for c in run.checkpoints] == ["epoch=0.ckpt", "epoch=1.ckpt"]
    for epoch, c in enumerate(run.checkpoints):
        assert c.step == (epoch + 1) * BATCHES and c.metadata["epoch"] == epoch
        assert c.score == val[epoch * BATCHES + BATCHES - 1]
        assert c.sha256 == sha256(c.path)
    assert run.checkpoints[0].metadata["best"] is True  # the best so far when it was saved
    assert run.checkpoints[1].metadata["best"] is (val[STEPS - 1] < val[BATCHES - 1])


def test_log_model_false_records_no_checkpoint(root, tmp_path):
    logger = make_logger(root)
    trainer(tmp_path, logger, [ModelCheckpoint(monitor="val_loss")]).fit(model(), loader(), loader(1))
    assert recorded(root, logger).checkpoints == []


# ---------------------------------------------------------------- failures


def test_an_exception_in_training_step_fails_the_run_with_it(root, tmp_path):
    logger = make_logger(root)
    with pytest.raises(RuntimeError, match="boom in training_step"):
        trainer(tmp_path, logger).fit(model(fail_at=5), loader(), loader(1))
    run = recorded(root, logger)
    assert run.state == "failed" and run.exit_code == 1
    assert run.error == "RuntimeError: boom in training_step"
    assert "training_step" in run.traceback
    assert run.history()["_step"] == list(range(5))


class InterruptAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_keyboard_interrupt_fails_the_run_with_exit_code_130(root, tmp_path, monkeypatch):
    """Lightning catches the KeyboardInterrupt, calls finalize("failed") while handling it, then
    sys.exit(1): the run is failed with exit code 130 and the KeyboardInterrupt as its error."""
    monkeypatch.setattr(lifecycle, "_exit_status", lifecycle._exit_status)  # Lightning calls sys.exit(1)
    handler = signal.getsignal(signal.SIGINT)
    logger = make_logger(root)
    try:
        with pytest.raises(SystemExit):
            trainer(tmp_path, logger, [InterruptAt(3)]).fit(model(), loader(), loader(1))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT from then on
    run = recorded(root, logger)
    assert run.state == "failed" and run.exit_code == 130
    assert run.error.startswith("KeyboardInterrupt")
    # interrupted after the optimizer step of step 2, before Lightning logged that step's metrics
    assert run.history()["_step"] == [0, 1]


# ---------------------------------------------------------------- watch


def test_watch_records_gradient_histograms_every_log_freq_steps(root, tmp_path):
    logger = make_logger(root)
    mlp = model()
    logger.watch(mlp, log="gradients", log_freq=3)
    fit = trainer(tmp_path, logger)
    fit.fit(mlp, loader(), loader(1))

    run = recorded(root, logger)
    history = run.history()
    names = [n for n, _ in mlp.named_parameters()]
    assert sorted(k for k in history if k.startswith("gradients/")) == sorted("gradients/" + n for n in names)
    assert not any(k.startswith("parameters/") for k in history)
    sizes = {n: p.numel() for n, p in mlp.named_parameters()}
    for name in names:
        values = by_step(history, "gradients/" + name)
        assert sorted(values) == [s for s in range(STEPS) if (s + 1) % 3 == 0]  # steps 2 and 5
        for value in values.values():
            if sizes[name] > 1:
                assert isinstance(value, tracklet.Histogram) and sum(value.counts) == sizes[name]
            else:  # a one-element tensor is a scalar (tracklet's rule for every logged tensor)
                assert isinstance(value, float)
    # the histograms share the row of the step's metrics
    assert by_step(history, "train_loss_step").keys() >= by_step(history, "gradients/net.0.weight").keys()

    logger.unwatch(mlp)
    trainer(tmp_path, logger, max_epochs=EPOCHS + 1).fit(mlp, loader(), loader(1))
    assert max(by_step(recorded(root, logger).history(), "gradients/net.0.weight")) == 5


def test_watch_all_records_parameters_as_used_by_the_step(root, tmp_path):
    logger = make_logger(root)
    mlp = model()
    logger.watch(mlp, log="all", log_freq=STEPS)

    seen = {}

    class Snapshot(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == STEPS - 1:
                seen["weight"] = pl_module.net[0].weight.detach().clone()
                seen["grad"] = pl_module.net[0].weight.grad.detach().clone()

    trainer(tmp_path, logger, [Snapshot()]).fit(mlp, loader(), loader(1))
    history = recorded(root, logger).history()
    parameters = by_step(history, "parameters/net.0.weight")
    gradients = by_step(history, "gradients/net.0.weight")
    assert list(parameters) == list(gradients) == [STEPS - 1]
    assert parameters[STEPS - 1] == tracklet.Histogram(seen["weight"].numpy())
    assert gradients[STEPS - 1] == tracklet.Histogram(seen["grad"].numpy())


def test_watch_arguments_are_checked(root):
    logger = make_logger(root)
    with pytest.raises(ValueError, match="log must be"):
        logger.watch(model(), log="weights")
    with pytest.raises(ValueError, match="log_freq"):
        logger.watch(model(), log_freq=0)


# ---------------------------------------------------------------- several calls, resume, reuse


def test_fit_then_test_with_one_logger_resumes_the_run_and_finishes_it_again(root, tmp_path):
    logger = make_logger(root)
    fit = trainer(tmp_path, logger)
    mlp = model()
    fit.fit(mlp, loader(), loader(1))
    assert recorded(root, logger).state == "finished"
    assert logger.experiment.finished  # readable, not reopened by reading it

    results = fit.test(mlp, loader(2))
    run = recorded(root, logger)
    assert run.state == "finished" and run.metadata["sessions"] == 2
    history = run.history()
    assert by_step(history, "test_loss") == {STEPS: pytest.approx(results[0]["test_loss"])}
    assert by_step(history, GLOBAL_STEP)[STEPS] == STEPS
    assert history["_step"] == list(range(STEPS + 1))
    assert run.config["lr"] == 0.05


class SetupNotes(MLP):
    def setup(self, stage):
        # before Lightning's own first write of a Trainer call
        self.logger.experiment.summary[f"setup/{getattr(stage, 'value', stage)}"] = 1


def test_the_experiment_is_resumed_when_used_early_in_a_later_trainer_call(root, tmp_path):
    logger = make_logger(root)
    torch.manual_seed(0)
    mlp = SetupNotes()
    fit = trainer(tmp_path, logger)
    fit.fit(mlp, loader(), loader(1))
    fit.test(mlp, loader(2))
    run = recorded(root, logger)
    assert run.summary["setup/fit"] == 1 and run.summary["setup/test"] == 1
    assert run.state == "finished" and run.metadata["sessions"] == 2


def test_a_recording_failure_warns_once_and_training_goes_on(root, tmp_path, monkeypatch):
    logger = make_logger(root)

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tracklet.Run, "log", broken)
    fit = trainer(tmp_path, logger)
    with pytest.warns(tracklet.TrackletWarning, match="could not record metrics: OSError") as caught:
        fit.fit(model(), loader(), loader(1))
    assert fit.global_step == STEPS
    assert len([w for w in caught if "could not record metrics" in str(w.message)]) == 1
    assert recorded(root, logger).state == "finished"


def test_a_lower_lightning_step_goes_to_the_next_free_row(root, tmp_path):
    """A new Trainer on a run that is further along (resume by id): rows never go back, each
    Lightning step still gets one row, and trainer/global_step keeps Lightning's step."""
    first = make_logger(root, id="resumable")
    trainer(tmp_path, first).fit(model(), loader(), loader(1))

    again = make_logger(root, id="resumable", resume="allow")
    assert again.version == "resumable"
    trainer(tmp_path, again, max_epochs=1).fit(model(), loader(), loader(1))
    run = recorded(root, again)
    assert run.state == "finished" and run.metadata["sessions"] == 2
    history = run.history()
    assert history["_step"] == list(range(STEPS + BATCHES))
    assert history[GLOBAL_STEP] == list(range(STEPS)) + list(range(BATCHES))
    assert sorted(by_step(history, "val_loss")) == [BATCHES - 1, STEPS - 1, STEPS + BATCHES - 1]


def test_lower_steps_keep_their_spacing_and_repeated_steps_share_a_row(root):
    logger = make_logger(root)
    logger.log_metrics({"a": 1.0}, step=10)
    logger.log_metrics({"a": 2.0}, step=20)
    logger.log_metrics({"b": 1.0}, step=0)  # lower than the run's step 20, whose row is used
    logger.log_metrics({"b": 2.0}, step=5)
    logger.log_metrics({"c": 3.0}, step=5)
    logger.finalize("success")
    history = recorded(root, logger).history()
    assert history["_step"] == [10, 20, 21, 26]
    assert history[GLOBAL_STEP] == [10, 20, 0, 5] and history["c"] == [None, None, None, 3.0]


def test_resume_must_be_allowed_for_an_existing_id(root, tmp_path):
    trainer(tmp_path, make_logger(root, id="taken")).fit(model(), loader(), loader(1))
    with pytest.raises(ValueError, match="already exists"):
        trainer(tmp_path, make_logger(root, id="taken")).fit(model(), loader(), loader(1))


def test_an_active_run_is_reused_and_left_running(start, root, tmp_path):
    run = start(project="mine")
    logger = TrackletLogger()  # what autolog attaches
    assert logger.version == run.id and logger.save_dir == run.dir and logger.name == "mine"
    trainer(tmp_path, logger).fit(model(), loader(), loader(1))
    assert logger.experiment is run and not run.finished and tracklet.run is run
    run.log({"after": 1})
    run.finish()
    recorded_run = tracklet.Api(root).run(run.path)
    assert recorded_run.state == "finished" and recorded_run.config["lr"] == 0.05
    assert recorded_run.history()["_step"] == list(range(STEPS))


def test_autolog_attaches_a_logger_that_records_into_the_active_run(start, root, tmp_path):
    run = start(project="auto")
    tracklet.autolog(["lightning"])
    try:
        fit = trainer(tmp_path, False)
        assert [type(logger) for logger in fit.loggers] == [TrackletLogger]
        fit.fit(model(), loader(), loader(1))
    finally:
        tracklet.autolog(disable=True)
    assert not run.finished
    run.finish()
    recorded_run = tracklet.Api(root).run(run.path)
    assert recorded_run.history()["_step"] == list(range(STEPS)) and recorded_run.config["lr"] == 0.05


def test_reusing_an_active_run_of_another_project_warns_once(start, root, tmp_path):
    run = start(project="mine")
    logger = TrackletLogger(project="theirs", config={"extra": True})
    with pytest.warns(tracklet.TrackletWarning, match="records to the active run .*in project 'mine'"):
        assert logger.experiment is run
    assert logger.name == "mine" and run.config["extra"] is True


def test_another_active_run_is_neither_reused_for_another_id_nor_finished(start, root, tmp_path):
    other = start(project="other")
    logger = make_logger(root, id="own")
    trainer(tmp_path, logger).fit(model(), loader(), loader(1))
    assert logger.version == "own" and not other.finished and tracklet.run is other
    assert recorded(root, logger).state == "finished"


def test_only_global_rank_zero_records(root, tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = make_logger(root, log_model=True)
    assert isinstance(logger.experiment, _DummyExperiment)
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.watch(model())
    logger.finalize("success")
    assert logger.version and logger.save_dir  # known on every rank, for Lightning's paths
    assert not (root / "projects").exists()


def test_a_failing_job_store_lookup_stays_out_of_the_training_loop(root, monkeypatch):
    """``all_ranks`` under Fabric, another rank: looking up rank zero's run goes through torch's
    private store accessor; if that fails (a torch that renamed it), ``fabric.log()`` goes on, with
    a warning naming what failed."""
    import tracklet.integrations.lightning as integration

    def renamed() -> None:
        raise ImportError("cannot import name '_get_default_store'")

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    monkeypatch.setattr(integration, "_job_store", renamed)
    logger = make_logger(root, all_ranks=True)
    with pytest.warns(tracklet.TrackletWarning, match="rank zero"):
        logger.log_metrics({"loss": 1.0}, step=0)
    logger.log_metrics({"loss": 0.5}, step=1)


# ---------------------------------------------------------------- the logger API directly


def test_log_hyperparams_takes_namespaces_dataclasses_and_records_changes_only(root):
    logger = make_logger(root)
    logger.log_hyperparams(argparse.Namespace(lr=0.1, inner=argparse.Namespace(k=1)))
    logger.log_hyperparams(Optim(momentum=0.9))
    logger.log_hyperparams({"lr": 0.1, "extra": [1, 2]})
    logger.log_metrics({"loss": 2.0})  # no step: the run's next row
    logger.log_metrics({"loss": 1.0}, step=5)
    logger.finalize("success")
    run = recorded(root, logger)
    assert run.config == {"lr": 0.1, "inner": {"k": 1}, "name": "sgd", "momentum": 0.9, "extra": [1, 2]}
    assert run.history()["_step"] == [0, 5] and run.history()[GLOBAL_STEP] == [None, 5]
    assert run.state == "finished"


def test_a_failed_status_without_an_exception_still_fails_the_run(root):
    logger = make_logger(root)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("failed")
    run = recorded(root, logger)
    assert run.state == "failed" and "status 'failed'" in run.error


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="project"):
        TrackletLogger(project="not a name")
    with pytest.raises(ValueError, match="log_model"):
        TrackletLogger(log_model="best")
    with pytest.raises(TypeError, match="all_ranks"):
        TrackletLogger(all_ranks="yes")


def test_the_logger_pickles_without_its_run(root, tmp_path):
    logger = make_logger(root)
    trainer(tmp_path, logger).fit(model(), loader(), loader(1))
    copy = pickle.loads(pickle.dumps(logger))
    assert copy.version == logger.version and copy._run is None
    copy.log_metrics({"later": 1.0}, step=100)  # a spawned worker continues the same run
    copy.finalize("success")
    run = recorded(root, logger)
    assert by_step(run.history(), "later") == {100: 1.0} and run.state == "finished"


def test_disabled_mode_records_nothing(root, tmp_path):
    logger = make_logger(root, mode="disabled")
    trainer(tmp_path, logger).fit(model(), loader(), loader(1))
    assert logger.save_dir is None and not (root / "projects").exists()


# ---------------------------------------------------------------- Fabric


def test_fabric_log_dict_records_with_the_fabric_logger(root):
    logger = TrackletFabricLogger(project="fab", dir=str(root), settings=QUIET)
    fabric = L.Fabric(accelerator="cpu", devices=1, loggers=[logger])
    fabric.launch()
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net, optimizer = fabric.setup(net, optimizer)
    assert fabric.logger is logger
    logger.log_hyperparams({"lr": 0.1})
    logger.watch(net, log="gradients", log_freq=2)
    for step in range(4):
        loss = net(torch.randn(8, 4)).pow(2).mean()
        fabric.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        fabric.log_dict({"loss": loss, "lr": 0.1}, step=step)
    logger.finalize("success")
    run = recorded(root, logger)
    assert run.state == "finished" and run.config == {"lr": 0.1}
    history = run.history()
    assert history["_step"] == [0, 1, 2, 3] and GLOBAL_STEP not in history
    assert all(isinstance(v, float) for v in history["loss"])
    # outside a Trainer: every 2nd backward pass, in the run's current row (the last logged step)
    assert sorted(by_step(history, "gradients/weight")) == [0, 2]


def test_the_trainer_logger_works_with_fabric_too(root):
    logger = TrackletLogger(project="fab", dir=str(root), settings=QUIET)
    fabric = L.Fabric(accelerator="cpu", devices=1, loggers=logger)
    fabric.log_dict({"loss": 1.5}, step=3)
    fabric.log("acc", 0.5, step=3)
    logger.finalize("success")
    history = recorded(root, logger).history()
    assert history["_step"] == [3] and history["loss"] == [1.5] and history["acc"] == [0.5]
    assert history[GLOBAL_STEP] == [3]


# ---------------------------------------------------------------- DDP: one run per job, every rank in it


DDP_SCRIPT = """
import sys
import time
sys.path.insert(0, {tests!r})
import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_integration_lightning import model, loader, EPOCHS
from tracklet.integrations.lightning import TrackletLogger


class Hello(Callback):
    def on_train_batch_end(self, trainer, *args):
        print(f"hello from rank {{trainer.global_rank}} at step {{trainer.global_step}}", flush=True)

    def on_train_end(self, trainer, *args):
        # every rank's experiment is its writer of the run: rank 1's its part (all_ranks)
        experiment = trainer.logger.experiment
        experiment.summary[f"fits/rank_{{trainer.global_rank}}"] = experiment.summary.get(
            f"fits/rank_{{trainer.global_rank}}", 0) + 1
        # one string a print: with console capture each of print's pieces is its own write, and the
        # two ranks' writes to the one pipe interleave
        print(f"RANK {{trainer.global_rank}} EXPERIMENT {{experiment.id}} {{type(experiment).__name__}}", flush=True)
        # A run ended before its first system sample records none (by design): the tiny fit takes
        # ~0.1 s on an idle machine, so each rank lives on until its first sample (interval 0.1 s;
        # conftest's wait_for_system_sample, where a fixed sleep waited 1.5 s a fit and rank).
        deadline = time.monotonic() + 60
        while not experiment._monitor.sampled:
            assert time.monotonic() < deadline, "the system monitor never took its first sample"
            time.sleep(0.005)


# every rank: console and system metrics (each rank's own, by label)
settings = {{"console": "wrap", "capture_environment": False, "system_interval": 0.1, "system_window": 0.2}}
logger = TrackletLogger(project="ddp", dir={root!r}, settings=settings, log_model=True, all_ranks=True)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, log_every_n_steps=1,
                    enable_progress_bar=False, enable_model_summary=False, logger=logger,
                    default_root_dir={tmp!r}, callbacks=[ModelCheckpoint(monitor="val_loss"), Hello()])
trainer.fit(model(), loader(), loader(1))
print(f"RANK {{trainer.global_rank}} VERSION {{logger.version}}", flush=True)
# a second Trainer.fit with the same logger: every rank records into the run again
again = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, log_every_n_steps=1,
                  enable_progress_bar=False, enable_model_summary=False, logger=logger,
                  default_root_dir={tmp!r}, callbacks=[Hello()], enable_checkpointing=False)
again.fit(model(), loader())
"""


def test_ddp_records_one_run_with_every_rank_in_it(root, tmp_path):
    # strategy="ddp" re-executes this script for rank 1 (its own logger, its own id until rank 0's
    # is broadcast); all_ranks=True: rank 1 joins rank 0's run as the secondary writer rank_1.
    # The default (rank zero only) is test_only_global_rank_zero_records.
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT).format(
        tests=str(REPO / "tests"), root=str(root), tmp=str(tmp_path / "lightning")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TRACKLET_DIR", None)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = tracklet.Api(root).runs("ddp")
    assert len(runs) == 1
    run = runs[0]
    assert f"RANK 0 VERSION {run.id}" in result.stdout and f"RANK 1 VERSION {run.id}" in result.stdout
    assert run.state == "finished" and run.exit_code == 0  # the primary's: rank 0
    assert {label: part["state"] for label, part in run.parts.items()} == {"rank_1": "finished"}
    # metrics, config and checkpoints from rank 0 only: each series once, no rank_1 copy.
    # Each rank sees half of the 4 batches per epoch: 2 steps per epoch; the second fit's epoch
    # continues at the run's next rows.
    history = run.history()
    assert history["_step"] == list(range((EPOCHS + 1) * BATCHES // 2))
    # every rank's experiment is its writer of the run (rank 1's: its part), in both fits
    assert result.stdout.count(f"RANK 1 EXPERIMENT {run.id} Run") == 2
    assert result.stdout.count(f"RANK 0 EXPERIMENT {run.id} Run") == 2
    assert (run.summary["fits/rank_0"], run.summary["fits/rank_1"]) == (2, 2)
    assert not [key for key in history if "/l:" in key]
    assert run.config["lr"] == 0.05
    assert [c.metadata["best"] for c in run.checkpoints] == [True]
    assert Path(run.checkpoints[0].path).is_relative_to(run.dir)
    # each rank's console and system metrics
    texts = [line.text for line in run.console]
    assert texts.count("[rank_1] hello from rank 1 at step 1") == 2 and "hello from rank 0 at step 1" in texts
    assert not [text for text in texts if text.startswith("[rank_1] hello from rank 0")]
    system = run.system_metrics()
    assert [name for name in system if name.endswith("/l:rank_1")]
    assert [name for name in system if "/l:" not in name]


DDP_FAILING_RANK = """
import sys
sys.path.insert(0, {tests!r})
import lightning as L
from test_integration_lightning import MLP, loader
from tracklet.integrations.lightning import TrackletLogger


class FailsOnRankOne(MLP):
    def training_step(self, batch, batch_idx):
        if self.global_rank == 1 and self.global_step == 1:
            raise RuntimeError("rank 1 fails")
        return super().training_step(batch, batch_idx)


settings = {{"console": "wrap", "capture_environment": False, "system_metrics": False}}
logger = TrackletLogger(project="ddp", dir={root!r}, settings=settings, all_ranks=True)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, log_every_n_steps=1,
                    enable_progress_bar=False, enable_model_summary=False, logger=logger,
                    default_root_dir={tmp!r}, enable_checkpointing=False)
trainer.fit(FailsOnRankOne(), loader())
""".replace("EPOCHS", str(EPOCHS))


def test_a_rank_failing_mid_training_fails_its_part_and_the_run_stays_readable(root, tmp_path):
    """Rank 1 raises at its second step: its part reads failed (exit code 1, its error in its
    exit), rank 0's collective fails with the peer gone and fails the run; what rank 0 recorded
    before stays in the one run."""
    script = tmp_path / "train_fails.py"
    script.write_text(textwrap.dedent(DDP_FAILING_RANK).format(
        tests=str(REPO / "tests"), root=str(root), tmp=str(tmp_path / "lightning")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TRACKLET_DIR", None)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=240)
    assert result.returncode != 0 and "rank 1 fails" in result.stderr
    (run,) = tracklet.Api(root).runs("ddp")
    assert (run.state, run.exit_code) == ("failed", 1)  # rank 0's: its collective lost its peer
    assert (run.parts["rank_1"]["state"], run.parts["rank_1"]["exit_code"]) == ("failed", 1)
    assert run.history()["train_loss_step"]  # rank 0's rows before the failure
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    assert "rank 1 fails" in RecordedRun(RunPaths(root, "ddp", run.id, "rank_1")).error  # its part's exit says why


FABRIC_DDP = """
import torch
import lightning as L
from tracklet.integrations.lightning import TrackletFabricLogger

settings = {{"console": "wrap", "capture_environment": False, "system_metrics": False}}
logger = TrackletFabricLogger(project="fab", dir={root!r}, settings=settings, all_ranks=True)
fabric = L.Fabric(accelerator="cpu", devices=2, strategy="ddp", loggers=[logger])
fabric.launch()  # re-executes this script for rank 1: its own logger
torch.manual_seed(0)
net = fabric.setup(torch.nn.Linear(4, 1))
optimizer = fabric.setup_optimizers(torch.optim.SGD(net.parameters(), lr=0.1))
for step in range(4):
    loss = net(torch.randn(8, 4)).pow(2).mean()
    fabric.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    fabric.log_dict({{"loss": loss}}, step=step)  # every rank: rank 0 records, the others join its run
    if step == 0:
        fabric.barrier()  # rank 0 has published its run: rank 1 finds it at its next call
    print(f"hello from rank {{fabric.global_rank}} at step {{step}}", flush=True)
experiment = logger.experiment
print(f"RANK {{fabric.global_rank}} EXPERIMENT {{experiment.id}} {{type(experiment).__name__}}", flush=True)
logger.finalize("success")
# logging after finalize: every rank continues its writer of the run (rank 0 the run, rank 1 its part)
fabric.log_dict({{"loss": 0.0}}, step=4)
print(f"hello again from rank {{fabric.global_rank}}", flush=True)
logger.finalize("success")
"""


def test_fabric_ddp_records_every_rank_into_one_run_with_all_ranks(root, tmp_path):
    # Fabric never calls log_graph: rank 0 publishes its run in the job's torch.distributed store
    # at its first log_dict, and rank 1 joins it as rank_1 at a later log_dict of its own.
    script = tmp_path / "fabric_ddp.py"
    script.write_text(FABRIC_DDP.format(root=str(root)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("TRACKLET_DIR", None)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = tracklet.Api(root).runs("fab")
    assert run.state == "finished" and run.exit_code == 0
    assert {label: part["state"] for label, part in run.parts.items()} == {"rank_1": "finished"}
    # every rank's experiment is its writer of the run (rank 1's: its part)
    assert f"RANK 0 EXPERIMENT {run.id} Run" in result.stdout and f"RANK 1 EXPERIMENT {run.id} Run" in result.stdout
    history = run.history()  # rank 0's metrics only
    assert history["_step"] == [0, 1, 2, 3, 4] and not [key for key in history if "/l:" in key]
    texts = [line.text for line in run.console]
    assert "[rank_1] hello from rank 1 at step 3" in texts and "hello from rank 0 at step 3" in texts
    assert "[rank_1] hello again from rank 1" in texts and "hello again from rank 0" in texts
    assert not [text for text in texts if text.startswith("[rank_1] hello from rank 0")]


# ---------------------------------------------------------------- tracklet.init arguments


def test_init_arguments_reach_the_run_and_an_unknown_one_fails_at_once(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    logger = TrackletLogger(project="lit", dir=elsewhere, settings=QUIET, name="named", tags=["a", "b"],
                            notes="a note", group="sweep-1", job_type="train", config={"extra": 1})
    trainer(tmp_path, logger).fit(model(), loader(), loader(1))
    run = tracklet.Api(elsewhere).run(f"lit/{logger.version}")  # dir= (a PathLike) is the data root
    assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("named", ["a", "b"], "a note", "sweep-1",
                                                                       "train")
    assert run.config["extra"] == 1 and not (root / "projects").exists()
    with pytest.raises(TypeError, match="TrackletLogger\\(\\) got an unexpected keyword argument 'tgas'"):
        TrackletLogger(project="lit", tgas=["a"])
    with pytest.raises(ValueError, match="project '../x' is not valid"):
        TrackletLogger(project="../x")
