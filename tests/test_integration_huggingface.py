"""Hugging Face Trainer integration: a tiny BERT built from a config (no downloads) trains for a few
steps on random tokens, and the run is read back through the public Api."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tracklet  # noqa: E402
from tracklet.core import lifecycle  # noqa: E402
from tracklet.core.checkpoints import digest  # noqa: E402
from tracklet.integrations import huggingface as hf  # noqa: E402
from tracklet.integrations.huggingface import TrackletCallback, TrainingIncomplete  # noqa: E402

from conftest import QUIET, REPO, read, run_script  # noqa: E402

# A recording failure inside the callback is a TrackletWarning (training goes on): here it fails the test.
pytestmark = pytest.mark.filterwarnings("error::tracklet.core.encoder.TrackletWarning")

MAX_STEPS = 8


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Train on one intra-op thread: the tiny BERT's ops are too small to split, and with a thread
    per core each op woke and spun them all (2.5-4x the CPU of one thread on CI's 2 cores, where
    another test runs beside). The worker's own count is back for the next module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, size: int = 32, length: int = 8, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, 100, (size, length), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {
            "input_ids": self.input_ids[index],
            "attention_mask": torch.ones_like(self.input_ids[index]),
            "labels": self.labels[index],
        }


class ExplodingBert(transformers.BertForSequenceClassification):
    """Raises ``self.error`` in the forward of training step ``self.fail_at`` (1-based)."""

    fail_at: int | None = None
    error: BaseException | None = None
    calls = 0

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at and self.error is not None:
                raise self.error
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)


def tiny_config() -> transformers.BertConfig:
    return transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )


def tiny_model(cls=transformers.BertForSequenceClassification):
    torch.manual_seed(0)
    return cls(tiny_config())


def make_trainer(output_dir, callback, model=None, **overrides) -> transformers.Trainer:
    arguments = dict(
        output_dir=str(output_dir),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    arguments.update(overrides)
    return transformers.Trainer(
        model=model if model is not None else tiny_model(),
        args=transformers.TrainingArguments(**arguments),
        train_dataset=RandomTokens(),
        eval_dataset=RandomTokens(size=8, seed=1),
        callbacks=[callback] if callback is not None else None,
    )


def quiet_callback(**kwargs) -> TrackletCallback:
    return TrackletCallback(project=kwargs.pop("project", "hf"), settings=QUIET, **kwargs)


def only_run(root: Path, project: str = "hf") -> tracklet.RecordedRun:
    (recorded,) = tracklet.Api(root).runs(project)
    return recorded


def logged(trainer, key: str) -> dict[int, float]:
    """{global_step: value} of one key of the Trainer's own log history."""
    return {entry["step"]: entry[key] for entry in trainer.state.log_history if key in entry}


def column(history, key: str) -> dict[int, object]:
    return {step: value for step, value in zip(history["train/global_step"], history[key]) if value is not None}


# ---------------------------------------------------------------------------------------------- training


def test_a_training_run_records_config_history_summary_checkpoints(root, tmp_path, monkeypatch):
    callback = quiet_callback(config={"dataset": "random-tokens"})
    trainer = make_trainer(tmp_path / "out", callback, load_best_model_at_end=True, metric_for_best_model="loss")
    trainer.train()
    run = callback.run
    assert not run.finished and tracklet.run is run  # goes on after train(), as W&B's run: finished at exit
    # what atexit runs, in its order, in a process that ends normally (other tests may have set these)
    monkeypatch.setattr(lifecycle, "_escaped", None)
    monkeypatch.setattr(lifecycle, "_exit_status", None, raising=False)
    hf._finish_abandoned_at_exit()
    lifecycle._finish_live_runs()
    assert run.finished and lifecycle.current() is None

    recorded = only_run(root)
    assert recorded.path == run.path
    assert (recorded.state, recorded.exit_code, recorded.error) == ("finished", 0, None)

    # config: the model config at the top level, TrainingArguments under "training_args", counts, ours
    config = recorded.config
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (
        "bert", 32, 2, 100
    )
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    args = config["training_args"]
    assert (args["per_device_train_batch_size"], args["logging_steps"], args["max_steps"]) == (4, 2, MAX_STEPS)
    assert args["eval_strategy"] == "steps" and args["output_dir"] == str(tmp_path / "out")
    total = sum(p.numel() for p in trainer.model.parameters())
    assert config["model/num_parameters"] == total == config["model/num_trainable_parameters"]
    assert config["dataset"] == "random-tokens"
    assert "peft_config" not in config

    # history: the run's step is the Trainer's global step, also in train/global_step
    history = recorded.history()
    assert history["_step"] == history["train/global_step"] == [2, 4, 6, 8]
    assert column(history, "train/loss") == pytest.approx(logged(trainer, "loss"))
    assert sorted(column(history, "train/loss")) == [2, 4, 6, 8]
    assert column(history, "train/learning_rate") == pytest.approx(logged(trainer, "learning_rate"))
    assert column(history, "train/grad_norm") == pytest.approx(logged(trainer, "grad_norm"))
    assert column(history, "train/epoch")[8] == 1.0
    assert column(history, "eval/loss") == pytest.approx(logged(trainer, "eval_loss"))
    assert sorted(column(history, "eval/loss")) == [4, 8]
    assert set(column(history, "eval/runtime")) == {4, 8}
    assert not any(k.startswith("train/train_") or k == "train/total_flos" for k in recorded.keys())  # noqa: SIM118
    definitions = {d.name: d.step_metric for d in recorded.metric_definitions}
    assert definitions == {"train/*": "train/global_step", "eval/*": "train/global_step", "test/*": "train/global_step"}

    # summary: the Trainer's final totals under its own names, and the last value of every key
    final = trainer.state.log_history[-1]
    summary = recorded.summary
    for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"):
        assert summary[key] == pytest.approx(final[key]), key
    assert summary["train/global_step"] == MAX_STEPS
    assert summary["eval/loss"] == pytest.approx(logged(trainer, "eval_loss")[8])
    best = trainer.state.best_model_checkpoint
    assert summary["best_model_checkpoint"] == best and summary["best_metric"] == pytest.approx(trainer.state.best_metric)

    # checkpoints: one per save, matching the directories on disk, then the best one flagged
    saved = sorted((tmp_path / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in saved] == ["checkpoint-4", "checkpoint-8"]
    *per_save, best_record = recorded.checkpoints
    assert [Path(c.path) for c in per_save] == [p.absolute() for p in saved]
    eval_loss = logged(trainer, "eval_loss")
    for record, folder in zip(per_save, saved):
        step = int(folder.name.split("-")[1])
        assert (record.sha256, record.size_bytes) == digest(folder) and record.error == ""
        assert record.step == step and record.monitor == "eval/loss"
        assert record.score == pytest.approx(eval_loss[step])
        assert record.metadata["global_step"] == step and record.metadata["metric_for_best_model"] == "loss"
    assert per_save[0].metadata["best_so_far"] is True
    assert Path(best_record.path) == Path(best).absolute()
    assert best_record.metadata["best"] is True and best_record.monitor == "eval/loss"
    assert best_record.score == pytest.approx(trainer.state.best_metric)
    assert best_record.sha256 == digest(Path(best))[0]


def test_peft_config_and_trainable_parameter_counts(root, tmp_path):
    @dataclasses.dataclass
    class LoraConfig:  # stands for peft.LoraConfig: peft need not be installed
        r: int = 8
        target_modules: set = dataclasses.field(default_factory=lambda: {"query", "value"})

    model = tiny_model()
    model.peft_config = {"default": LoraConfig()}
    for parameter in model.bert.parameters():
        parameter.requires_grad_(False)
    callback = quiet_callback()
    make_trainer(tmp_path / "out", callback, model=model, max_steps=1, eval_strategy="no", save_strategy="no").train()

    config = only_run(root).config
    assert config["peft_config"] == {"default": {"r": 8, "target_modules": ["query", "value"]}}
    head = sum(p.numel() for p in model.classifier.parameters())
    assert config["model/num_trainable_parameters"] == head
    assert config["model/num_parameters"] == sum(p.numel() for p in model.parameters()) > head
    assert only_run(root).checkpoints == []


def test_an_active_run_is_reused_and_left_running(start, root, tmp_path):
    run = start(project="mine")
    run.define_metric("eval/loss", summary="min")
    for step in range(3):
        run.log({"user/prepare": step})
    callback = TrackletCallback(project="ignored")  # an active run wins over project=
    trainer = make_trainer(tmp_path / "out", callback)
    trainer.train()
    assert callback.run is run and not run.finished and tracklet.run is run
    trainer.evaluate()  # outside training: still the same run, still not finished
    assert not run.finished
    run.log({"user/after": 1})
    run.finish()

    assert tracklet.Api(root).projects() == ["mine"]
    recorded = read(run)
    assert recorded.state == "finished"
    assert recorded.config["hidden_size"] == 32 and recorded.config["training_args"]["logging_steps"] == 2
    history = recorded.history()
    # steps never go back: the Trainer's rows follow the user's, train/global_step keeps its steps
    global_steps = [s for s in history["train/global_step"] if s is not None]
    assert global_steps == [2, 4, 6, 8]  # evaluate() after training joins the row of global step 8
    assert history["_step"][:3] == [0, 1, 2] and history["_step"][3] > 2
    assert history["_step"] == sorted(set(history["_step"]))
    assert column(history, "eval/loss") == pytest.approx(logged(trainer, "eval_loss"))
    # the user's own definition still holds: no definitions are added to a run the callback did not start
    assert [d.name for d in recorded.metric_definitions] == ["eval/loss"]
    assert recorded.summary["eval/loss"] == pytest.approx(min(logged(trainer, "eval_loss").values()))
    assert len(recorded.checkpoints) == 2


def test_a_given_run_is_used_and_left_running(start, tmp_path):
    run = start(project="given")
    callback = TrackletCallback(run=run, id="ignored")
    make_trainer(tmp_path / "out", callback, max_steps=2, eval_strategy="no", save_strategy="no").train()
    assert callback.run is run and not run.finished
    run.finish()
    assert read(run).history()["train/global_step"] == [2]


def test_autolog_attaches_the_callback_to_a_trainer(start, root, tmp_path):
    run = start(project="auto")
    tracklet.autolog("huggingface")
    try:
        trainer = make_trainer(tmp_path / "out", None, max_steps=4, eval_strategy="no", save_strategy="no")
        (callback,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, TrackletCallback)]
        trainer.train()
    finally:
        tracklet.autolog(disable=True)
    assert callback.run is run and not run.finished
    run.finish()
    recorded = read(run)
    assert recorded.history()["train/global_step"] == [2, 4] and recorded.config["model_type"] == "bert"


def test_train_calls_evaluate_and_predict_record_one_run_on_one_step_axis(root, tmp_path):
    """W&B's contract: every train()/evaluate()/predict() call of the process records into the one
    run, finished at exit or explicitly. Each call's steps go on after the last row: nothing an
    earlier call logged is merged into, overwritten or refused as out of order."""
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback)
    trainer.train()
    run = callback.run
    first = logged(trainer, "eval_loss")
    trainer.train()  # curriculum stage 2: global_step starts again at 0
    second = logged(trainer, "eval_loss")
    # resumed from stage 2's checkpoint-4 (global_step 4), evaluating first (eval_on_start, at step 4 too)
    trainer.args.eval_on_start = True
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    third = logged(trainer, "eval_loss")
    metrics = trainer.evaluate()
    trainer.predict(RandomTokens(size=8, seed=2))
    assert callback.run is run and tracklet.run is run and not run.finished
    # fine-tuning with a new Trainer and callback: the open run is the active one (as W&B's callback
    # finds wandb.run); its rows go after the run's last one, which they must not merge into
    finetuning = quiet_callback()
    make_trainer(tmp_path / "tune", finetuning, model=trainer.model, max_steps=2, eval_strategy="no",
                 save_strategy="no").train()
    assert finetuning.run is run and not run.finished
    tracklet.finish()

    recorded = only_run(root)
    assert (recorded.state, recorded.exit_code, recorded.metadata["sessions"]) == ("finished", 0, 1)
    history = recorded.history()
    # call 2 goes on from call 1's last step (8 + global_step); call 3's evaluation at its first step
    # (4) would land on call 2's last row, so the call goes one step further
    assert history["_step"] == [2, 4, 6, 8, 10, 12, 14, 16, 17, 19, 21, 22]
    assert history["train/global_step"] == [2, 4, 6, 8, 2, 4, 6, 8, 4, 6, 8, 2]
    run_step = dict(zip(range(len(history["_step"])), history["_step"]))
    eval_loss = {run_step[i]: v for i, v in enumerate(history["eval/loss"]) if v is not None}
    assert eval_loss == pytest.approx({4: first[4], 8: first[8], 12: second[4], 16: second[8],
                                       17: third[4], 21: metrics["eval_loss"]})
    assert third[8] == pytest.approx(metrics["eval_loss"])  # the same model, the same data
    rows = list(history.rows())
    assert "test/loss" in rows[-2] and rows[-2]["train/global_step"] == MAX_STEPS  # predict() joined it
    assert "train/loss" in rows[-1] and "test/loss" not in rows[-1]
    assert len(recorded.metric_definitions) == 3  # defined once
    # checkpoints at the run step of their global step: stage 1's 4 and 8, stage 2's, stage 3's 8
    assert [(c.step, c.metadata["global_step"]) for c in recorded.checkpoints] == [
        (4, 4), (8, 8), (12, 4), (16, 8), (21, 8)]
    assert recorded.summary["train/global_step"] == 2 and "train_runtime" in recorded.summary  # the last call's


def test_finish_on_train_end_records_a_run_per_train_call(root, tmp_path):
    callback = quiet_callback(finish_on_train_end=True)
    trainer = make_trainer(tmp_path / "out", callback, save_strategy="no", max_steps=4)
    trainer.train()
    first = callback.run
    assert first.finished and lifecycle.current() is None
    metrics = trainer.evaluate()  # resumes the run for the call and finishes it again
    assert callback.run.finished
    trainer.predict(RandomTokens(size=8, seed=2))
    assert callback.run.finished and lifecycle.current() is None
    recorded = tracklet.Api(root).run(first.path)  # one run, three sessions
    assert recorded.state == "finished" and recorded.metadata["sessions"] == 3
    assert len(recorded.metric_definitions) == 3  # defined once, not again in each session
    history = recorded.history()
    rows = list(history.rows())
    assert rows[-2]["eval/loss"] == pytest.approx(metrics["eval_loss"]) and rows[-2]["train/global_step"] == 4
    assert "test/loss" in rows[-1] and rows[-1]["train/global_step"] == 4
    assert history["_step"] == sorted(set(history["_step"]))

    trainer.train()  # a new call, a new run
    second = callback.run
    assert second is not first and second.finished
    assert tracklet.Api(root).run(second.path).history()["_step"] == [2, 4]


def test_each_hyperparameter_search_trial_is_its_own_run(root, tmp_path):
    """As with W&B's callback: a trial's train() finishes the open run and starts the trial's; the
    evaluate() the search runs for a trial's objective joins that trial's run; a train() after the
    search starts a run of its own (trials without hp_name have no name of their own)."""
    pytest.importorskip("optuna")
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback, max_steps=2, eval_strategy="no", save_strategy="no")
    trainer.model_init = lambda trial=None: tiny_model()
    trainer.train()
    before = callback.run
    trials = []

    class Watch(transformers.TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            if state.is_hyper_param_search:
                trials.append(callback.run)

    trainer.add_callback(Watch())
    best = trainer.hyperparameter_search(
        direction="minimize", backend="optuna", n_trials=2,
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)},
    )
    assert before.finished and trials[0].finished and not trials[1].finished  # the last goes on, as W&B's
    trainer.train()
    after = callback.run
    assert trials[1].finished and after not in (before, *trials)
    after.finish()

    api = tracklet.Api(root)
    assert len(api.runs("hf")) == 4 and len({run.id for run in (before, *trials, after)}) == 4
    for run in trials:
        recorded = api.run(run.path)
        assert (recorded.state, recorded.metadata["sessions"]) == ("finished", 1)
        assert recorded.group == str(tmp_path / "out")  # W&B's callback groups trials by run_name or output_dir
        (row,) = recorded.history().rows()  # the objective's evaluate() joins training's last row
        assert row["train/global_step"] == 2 and "train/loss" in row and "eval/loss" in row
        assert recorded.config["training_args"]["learning_rate"] != 5e-5
    assert api.run(trials[int(best.run_id)].path).summary["eval/loss"] == pytest.approx(best.objective)
    for run in (before, after):
        assert api.run(run.path).history()["train/global_step"] == [2]


def test_hyperparameter_search_trials_are_runs_of_their_own_beside_the_users_active_run(start, root, tmp_path):
    """W&B's callback starts a run per trial (it finishes ``wandb.run`` first, the user's own run
    included). With the user's run active, each trial is a run of its own here too, and the
    user's run is left as the user left it: live, current (``tracklet.run``), none of the trials'
    rows or config in it; the next plain ``train()`` records into it again."""
    pytest.importorskip("optuna")
    mine = start(project="hf")
    mine.log({"user/prepare": 1})
    callback = TrackletCallback(project="hf", settings=QUIET)
    trainer = make_trainer(tmp_path / "out", callback, max_steps=2, eval_strategy="no", save_strategy="no")
    trainer.model_init = lambda trial=None: tiny_model()
    trials = []

    class Watch(transformers.TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            trials.append((callback.run, tracklet.run))

    trainer.add_callback(Watch())
    trainer.hyperparameter_search(
        direction="minimize", backend="optuna", n_trials=2,
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)},
    )
    assert [current for _, current in trials] == [mine, mine]  # the user's run stayed current throughout
    runs = [run for run, _ in trials]
    assert len({run.id for run in (mine, *runs)}) == 3 and runs[0].finished and not runs[1].finished
    assert not mine.finished and tracklet.run is mine
    trainer.train()  # after the search: the active run again
    assert callback.run is mine and runs[1].finished
    mine.finish()

    api = tracklet.Api(root)
    assert len(api.runs("hf")) == 3
    for run in runs:
        recorded = api.run(run.path)
        assert recorded.state == "finished" and recorded.history()["train/global_step"] == [2]
        assert recorded.config["training_args"]["learning_rate"] != 5e-5
    recorded = api.run(mine.path)
    # the user's row and the plain train() call's: no trial's rows
    assert recorded.history()["user/prepare"][0] == 1 and recorded.history()["train/global_step"] == [None, 2]


def test_evaluate_without_training_records_a_run(root, tmp_path):
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback)
    metrics = trainer.evaluate()
    assert not callback.run.finished  # a later train() records into it
    callback.run.finish()
    recorded = only_run(root)
    assert recorded.state == "finished"
    assert recorded.config["model_type"] == "bert" and "training_args" in recorded.config
    (row,) = recorded.history().rows()
    assert row["eval/loss"] == pytest.approx(metrics["eval_loss"]) and row["train/global_step"] == 0


# ---------------------------------------------------------------------------------------------- failure

FAILING_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_integration_huggingface import ExplodingBert, make_trainer, tiny_model
from tracklet.integrations.huggingface import TrackletCallback

model = tiny_model(ExplodingBert)
model.fail_at, model.error = 6, {error}
trainer = make_trainer({out!r}, TrackletCallback(project="hf"), model=model)
{call}
print("after train()")
"""


def _failing(tmp_path, error: str, call: str = "trainer.train()"):
    code = FAILING_SCRIPT.format(tests=str(REPO / "tests"), out=str(tmp_path / "out"), error=error, call=call)
    env = {"TRACKLET_CONSOLE": "off", "TRACKLET_SYSTEM_METRICS": "false", "TRACKLET_CAPTURE_ENVIRONMENT": "false",
           "OMP_NUM_THREADS": "1"}  # as _one_torch_thread, in the script's process
    return run_script(code, env=env, timeout=120)


def _assert_recorded_up_to_the_failure(recorded, tmp_path):
    history = recorded.history()
    assert history["_step"] == history["train/global_step"] == [2, 4]  # step 6 never completed
    assert set(column(history, "train/loss")) == {2, 4} and set(column(history, "eval/loss")) == {4}
    (checkpoint,) = recorded.checkpoints
    assert Path(checkpoint.path) == (tmp_path / "out" / "checkpoint-4").absolute()
    assert checkpoint.sha256 == digest(Path(checkpoint.path))[0]
    assert not any(key in recorded.summary for key in ("train_runtime", "total_flos"))


def test_an_exception_escaping_train_fails_the_run_at_process_exit(root, tmp_path):
    done = _failing(tmp_path, 'RuntimeError("loss diverged")')
    assert done.returncode == 1, done.stderr
    assert "RuntimeError: loss diverged" in done.stderr and "after train()" not in done.stdout
    recorded = only_run(root)
    assert (recorded.state, recorded.exit_code, recorded.error) == ("failed", 1, "RuntimeError: loss diverged")
    assert "ExplodingBert" not in recorded.error and "in forward" in recorded.traceback
    _assert_recorded_up_to_the_failure(recorded, tmp_path)


def test_keyboard_interrupt_during_train_fails_the_run_with_130(root, tmp_path):
    done = _failing(tmp_path, "KeyboardInterrupt()")
    assert done.returncode in (130, -2), (done.returncode, done.stderr)
    recorded = only_run(root)
    assert (recorded.state, recorded.exit_code, recorded.error) == ("failed", 130, "KeyboardInterrupt: ")
    _assert_recorded_up_to_the_failure(recorded, tmp_path)


def test_an_exception_caught_by_the_caller_fails_the_run_at_exit(root, tmp_path, monkeypatch):
    # as in a process that ends normally (other tests may have left these set in this one)
    monkeypatch.setattr(lifecycle, "_escaped", None)
    monkeypatch.setattr(lifecycle, "_exit_status", None, raising=False)
    model = tiny_model(ExplodingBert)
    model.fail_at, model.error = 3, RuntimeError("out of memory")
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback, model=model, save_strategy="no")
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.train()
    assert not callback.run.finished
    hf._finish_abandoned_at_exit()  # what atexit runs before tracklet's own exit hook
    recorded = only_run(root)
    assert (recorded.state, recorded.exit_code) == ("failed", 1)
    assert recorded.error.startswith("TrainingIncomplete: trainer.train() stopped before on_train_end")
    assert "the process exited" in recorded.error
    assert recorded.history()["train/global_step"] == [2]


def test_the_context_manager_fails_the_run_with_the_exception_itself(root, tmp_path):
    model = tiny_model(ExplodingBert)
    model.fail_at, model.error = 3, ValueError("bad batch")
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback, model=model)
    with pytest.raises(ValueError, match="bad batch"), callback:
        trainer.train()
    assert callback.run.finished
    recorded = only_run(root)
    assert (recorded.state, recorded.exit_code, recorded.error) == ("failed", 1, "ValueError: bad batch")
    assert recorded.history()["train/global_step"] == [2]


def test_a_caught_failure_is_finished_as_failed_when_train_is_called_again(root, tmp_path):
    model = tiny_model(ExplodingBert)
    model.fail_at, model.error = 3, RuntimeError("flaky")
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback, model=model, save_strategy="no")
    with pytest.raises(RuntimeError, match="flaky"):
        trainer.train()
    first = callback.run
    assert not first.finished  # nothing told the callback: still running
    trainer.train()  # the model fails only once
    second = callback.run
    assert first.finished and not second.finished and second is not first
    second.finish()
    api = tracklet.Api(root)
    failed, finished = api.run(first.path), api.run(second.path)
    assert (failed.state, failed.exit_code) == ("failed", 1)
    assert failed.error.startswith("TrainingIncomplete:") and "a new trainer.train() call began" in failed.error
    assert finished.state == "finished" and finished.history()["train/global_step"] == [2, 4, 6, 8]


# ---------------------------------------------------------------------------------------------- units


class _State:
    def __init__(self, zero: bool) -> None:
        self.is_world_process_zero = zero
        self.global_step = 4
        self.epoch = 0.5
        self.best_metric = None
        self.best_global_step = None
        self.best_model_checkpoint = None
        self.trial_name = None


def test_only_world_process_zero_records(root, tmp_path):
    callback = quiet_callback()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state, model = _State(zero=False), tiny_model()
    callback.on_train_begin(args, state, None, model=model)
    callback.on_log(args, state, None, logs={"loss": 1.0}, model=model)
    callback.on_evaluate(args, state, None, metrics={"eval_loss": 1.0}, model=model)
    callback.on_predict(args, state, None, metrics={"test_loss": 1.0}, model=model)
    callback.on_save(args, state, None)
    callback.on_train_end(args, state, None)
    assert callback.run is None and lifecycle.current() is None and not root.exists()


DDP_SCRIPT = """
import os
import signal
import sys
import time
sys.path.insert(0, {tests!r})
import transformers
import tracklet
from test_integration_huggingface import make_trainer
from tracklet.integrations.huggingface import TrackletCallback

RANK = int(os.environ["RANK"])


class Hello(transformers.TrainerCallback):
    call = "first"

    def on_step_end(self, args, state, control, **kwargs):
        print(f"hello from rank {{args.process_index}} at step {{state.global_step}}", flush=True)
        if state.global_step == 1:
            # every process's callback.run is its writer of the run (process 1's: its part), tracklet.run too
            run = callback.run
            print(f"RANK {{RANK}} {{self.call}} RUN {{run.id}} {{type(run).__name__}} {{tracklet.run is run}}", flush=True)
        if state.global_step == state.max_steps and self.call == "first":
            # A run ended before its first system sample records none (by design): 4 tiny steps take
            # well under a second on an idle machine, so each process lives on until its first sample
            # (here: before TrackletCallback's on_train_end finishes its part; conftest's
            # wait_for_system_sample, where a fixed sleep could end first on a loaded machine).
            deadline = time.monotonic() + 60
            while not callback.run._monitor.sampled:
                assert time.monotonic() < deadline, "the system monitor never took its first sample"
                time.sleep(0.005)

    def on_prediction_step(self, args, state, control, **kwargs):
        print(f"rank {{args.process_index}} evaluates", flush=True)

    def on_log(self, args, state, control, **kwargs):
        if self.call == "caught":
            raise RuntimeError("every rank fails")
        if self.call == "failing":  # process 1 raises mid-training; process 0 is busy elsewhere
            if RANK == 1:
                raise RuntimeError("rank 1 fails")
            time.sleep(120)  # until torchrun's agent, seeing process 1 fail, stops this one (SIGTERM)


# every process: console and system metrics (each process's own, by label)
settings = {{"console": "wrap", "capture_environment": False, "system_interval": 0.1, "system_window": 0.2}}
callback = TrackletCallback(project="hf", dir={root!r}, settings=settings, all_ranks=True)
trainer = make_trainer({out!r}, callback, max_steps=4, save_strategy="no", eval_strategy="no")
hello = Hello()
trainer.add_callback(hello)
trainer.train()
print(f"RANK {{RANK}} after first RUN {{callback.run.id}} finished={{callback.run.finished}}", flush=True)
hello.call = "second"
trainer.train()  # the same run (one per process, as W&B's callback records), every process in it
trainer.evaluate()  # into it, on every process
print(f"RANK {{RANK}} after evaluate RUN {{callback.run.id}} finished={{callback.run.finished}}", flush=True)
callback.run.finish()  # on each process: the run (process zero) or its part
# finish_on_train_end=True: a run per train() call
trainer.remove_callback(callback)
trainer.remove_callback(hello)
callback = TrackletCallback(project="hf", dir={root!r}, settings=settings, all_ranks=True, finish_on_train_end=True)
trainer.add_callback(callback)
trainer.add_callback(hello)  # after it, as before: its on_prediction_step sees the part resumed
hello.call = "third"
trainer.train()
print(f"RANK {{RANK}} after third RUN {{callback.run.id}} finished={{callback.run.finished}}", flush=True)
trainer.evaluate()  # resumes it on every process, and finishes it again
print(f"RANK {{RANK}} after evaluating the third RUN {{callback.run.id}} finished={{callback.run.finished}}", flush=True)
hello.call = "caught"  # every process raises at its first log; the caller catches it
try:
    trainer.train()
except RuntimeError as error:
    print(f"RANK {{RANK}} caught {{error}}; SIGTERM default={{signal.getsignal(signal.SIGTERM) is signal.SIG_DFL}}",
          flush=True)
hello.call = "failing"
trainer.train()
"""


def test_a_distributed_job_records_every_rank_into_one_run_with_all_ranks(root, tmp_path):
    """torchrun, 2 CPU processes (gloo): process 1 joins process 0's run as the secondary writer
    rank_1, across train() calls and an evaluate() after them (one run, W&B's contract), its
    callback.run (and tracklet.run) its part; then, with finish_on_train_end, in a run per call and
    an evaluate() after one. Then process 1 fails mid-training: its part reads failed with its
    error, and process 0, stopped by torchrun's SIGTERM, ends the run failed with what it recorded
    kept."""
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(REPO / "tests"), root=str(root), out=str(tmp_path / "out")))
    # TMPDIR: torchrun's agent leaves a torchelastic_* directory in the temp directory
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    env.pop("TRACKLET_DIR", None)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode != 0 and "RuntimeError: rank 1 fails" in result.stderr, output
    api = tracklet.Api(root)
    calls = {}
    for call in ("first", "second", "third", "caught", "failing"):
        run_ids = {line.split()[4] for line in result.stdout.splitlines() if line.startswith(f"RANK 0 {call} RUN")}
        assert len(run_ids) == 1, f"{call}: {run_ids}\n{result.stdout}\n{result.stderr[-6000:]}"
        (run_id,) = run_ids
        calls[call] = api.run(f"hf/{run_id}")
        # process 1's callback.run is its part of process 0's run, and tracklet.run in that process
        assert f"RANK 1 {call} RUN {run_id} Run True" in result.stdout, output
    assert len(api.runs("hf")) == 4
    first, third, failing = calls["first"], calls["third"], calls["failing"]
    # a train() whose exception the caller caught: SIGTERM's default is back on every process (the
    # handler stayed installed until the next train() or exit); the run ends failed at that next call
    for rank in (0, 1):
        assert f"RANK {rank} caught every rank fails; SIGTERM default=True" in result.stdout, output
    assert (calls["caught"].state, calls["caught"].exit_code) == ("failed", 1)
    assert calls["second"].id == first.id  # one run across train() calls

    for run in (first, third):
        assert run.state == "finished" and run.exit_code == 0  # process zero's
        assert {label: part["state"] for label, part in run.parts.items()} == {"rank_1": "finished"}
        texts = [line.text for line in run.console]
        assert "[rank_1] hello from rank 1 at step 1" in texts and "hello from rank 0 at step 1" in texts
        # evaluate() after train(): process 1's part records it (its console)
        assert "[rank_1] rank 1 evaluates" in texts and "eval/loss" in run.history()
    # the part goes on across calls and the evaluate(), until finished
    assert f"RANK 1 after first RUN {first.id} finished=False" in result.stdout
    assert f"RANK 1 after evaluate RUN {first.id} finished=False" in result.stdout
    history = first.history()  # metrics from process zero only: each series once
    assert history["train/global_step"] == [2, 4, 2, 4] and history["_step"] == [2, 4, 6, 8]  # logging_steps=2
    assert None not in history["train/loss"]
    assert not [key for key in history if "/l:" in key]
    assert [name for name in first.system_metrics() if name.endswith("/l:rank_1")]
    # finish_on_train_end: the part is finished with the call (kept as callback.run until the next
    # one), resumed for the evaluate() after it and finished again
    assert f"RANK 1 after third RUN {third.id} finished=True" in result.stdout
    assert f"RANK 1 after evaluating the third RUN {third.id} finished=True" in result.stdout
    assert third.history()["train/global_step"][:2] == [2, 4]

    # process 1 raised at step 2: its part failed with its error
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    assert (failing.parts["rank_1"]["state"], failing.parts["rank_1"]["exit_code"]) == ("failed", 1)
    part = RecordedRun(RunPaths(root, "hf", failing.id, "rank_1"))
    assert part.error == "RuntimeError: rank 1 fails"
    # process 0 was busy past its step-2 log when torchrun stopped it (SIGTERM): the run ended
    # failed (143: 128 + SIGTERM), not killed and left crashed, with its step-2 row written
    assert (failing.state, failing.exit_code) == ("failed", 143)
    assert failing.history()["train/global_step"] == [2]
    assert "[rank_1] hello from rank 1 at step 1" in [line.text for line in failing.console]


def test_rewrite_logs_and_the_monitored_key():
    assert hf.rewrite_logs({"loss": 1, "eval_loss": 2, "test_f1": 3, "epoch": 1.0, "eval/acc": 4, "train/x": 5}) == {
        "train/loss": 1, "eval/loss": 2, "test/f1": 3, "train/epoch": 1.0, "eval/acc": 4, "train/x": 5,
    }
    assert hf.monitored_key("loss") == hf.monitored_key("eval_loss") == "eval/loss"
    assert hf.monitored_key("accuracy") == "eval/accuracy" and hf.monitored_key(None) is None


def test_checkpoint_dir_finds_a_hyperparameter_search_trial_folder(tmp_path):
    assert hf.checkpoint_dir(str(tmp_path), 4) == os.path.join(str(tmp_path), "checkpoint-4")
    trial = tmp_path / "run-3" / "checkpoint-4"
    trial.mkdir(parents=True)
    assert hf.checkpoint_dir(str(tmp_path), 4) == str(trial)


def test_a_recording_failure_warns_once_and_training_goes_on(root, tmp_path, monkeypatch):
    def broken(model):
        raise RuntimeError("config exploded")

    monkeypatch.setattr(hf, "model_config", broken)
    callback = quiet_callback()
    trainer = make_trainer(tmp_path / "out", callback, max_steps=2, eval_strategy="no", save_strategy="no")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    callback.run.finish()
    messages = [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]
    assert len(messages) == 1 and "could not record on_train_begin" in messages[0] and "config exploded" in messages[0]
    recorded = only_run(root)
    assert recorded.state == "finished" and recorded.history()["train/global_step"] == [2]


def test_bad_arguments_fail_when_the_callback_is_made():
    with pytest.raises(TypeError, match="config"):
        TrackletCallback(config=["not", "a", "dict"])
    with pytest.raises(ValueError, match="project"):
        TrackletCallback(project="no spaces/allowed")
    with pytest.raises(TypeError, match="all_ranks"):
        TrackletCallback(all_ranks="yes")
    with pytest.raises(TypeError, match="finish_on_train_end"):
        TrackletCallback(finish_on_train_end=1)


def test_training_incomplete_is_a_runtime_error():
    assert issubclass(TrainingIncomplete, RuntimeError)


def test_disabled_mode_trains_and_writes_nothing(root, tmp_path):
    callback = TrackletCallback(project="hf", mode="disabled")
    trainer = make_trainer(tmp_path / "out", callback, max_steps=4)
    trainer.train()
    trainer.evaluate()
    assert isinstance(callback.run, tracklet.Run) and not callback.run.finished
    callback.run.finish()
    assert not root.exists() and (tmp_path / "out" / "checkpoint-4").is_dir()


def test_init_arguments_reach_the_run_and_an_unknown_one_fails_at_once(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    callback = TrackletCallback(project="hf", dir=elsewhere, settings=QUIET, name="named", tags=["a", "b"],
                                notes="a note", group="sweep-1", job_type="train", id="hf-run")
    make_trainer(tmp_path / "out", callback).train()
    callback.run.finish()
    run = tracklet.Api(elsewhere).run("hf/hf-run")  # dir= (a PathLike) is the data root
    assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("named", ["a", "b"], "a note", "sweep-1",
                                                                       "train")
    assert run.state == "finished" and not (root / "projects").exists()
    with pytest.raises(TypeError, match="TrackletCallback\\(\\) got an unexpected keyword argument 'tgas'"):
        TrackletCallback(tgas=["a"])
    with pytest.raises(ValueError, match="run id 'a/b' is not valid"):
        TrackletCallback(id="a/b")
