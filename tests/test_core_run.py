"""The run API: steps, config, summary, define_metric, lifecycle, settings, resume, disabled mode."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import pytest

import tracklet
from tracklet.core.settings import Settings, resolve_settings

from conftest import QUIET, read, run_script


def test_steps_advance_and_commit_false_merges_into_one_row(start):
    run = start()
    run.log({"a": 1})
    run.log({"b": 2}, commit=False)
    run.log({"c": 3})  # same row as b
    run.log({"d": 4}, step=10)  # explicit step: row stays open
    run.log({"e": 5}, step=10)
    run.log({"f": 6})  # joins step 10, then advances
    assert run.step == 11
    run.finish()
    history = read(run).history()
    assert history["_step"] == [0, 1, 10]
    assert history["b"] == [None, 2, None] and history["c"] == [None, 3, None]
    assert history["d"] == [None, None, 4] and history["e"] == [None, None, 5] and history["f"] == [None, None, 6]


def test_a_decreasing_step_is_refused_with_one_warning(start):
    run = start()
    run.log({"a": 1}, step=5)
    with pytest.warns(tracklet.TrackletWarning, match="step=2.*lower than the current step 5"):
        run.log({"a": 2}, step=2)
    run.log({"a": 3}, step=1)  # silently dropped after the first warning
    run.log({"a": 4}, step=6)
    run.finish()
    history = read(run).history()
    assert history["_step"] == [5, 6] and history["a"] == [1, 4]


def test_step_must_be_an_integer(start):
    run = start()
    import numpy as np

    run.log({"a": 1}, step=np.int64(3))
    with pytest.raises(TypeError, match="step must be an int"):
        run.log({"a": 1}, step=1.5)
    run.finish()
    assert read(run).history()["_step"] == [3]


def test_steps_given_as_int_enums_or_numpy_ints_are_recorded_as_the_ints_they_stand_for(start):
    """A training loop's step may be an ``IntEnum`` member or a numpy int (a counter read off an
    array): each row lands at the int it equals, whether the steps run consecutively or jump, and
    reads back as a plain int."""
    import enum

    import numpy as np

    class Phase(enum.IntEnum):
        WARMUP = 0
        TRAIN = 1
        EVAL = 2
        TEST = 3

    run = start()
    for phase in Phase:
        run.log({"a": int(phase)}, step=phase)
    for step in np.arange(4, 8):
        run.log({"a": int(step)}, step=step)
    run.log({"a": 10}, step=np.uint8(10))
    run.log({"a": 11}, step=Phase.TEST + 8)
    run.finish()
    recorded = read(run)
    history = recorded.history()
    assert history["_step"] == history["a"] == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    assert {type(step) for step in history["_step"]} == {int}
    assert recorded.summary["a"] == 11


def test_enum_members_logged_as_values_are_recorded_as_their_values(start, recwarn):
    """``run.log({"phase": Phase.TRAIN})`` (W&B records an ``IntEnum`` as its int, a str-mixin member
    as its string): each member is recorded as its value, in strict mode too, never as
    ``"Phase.TRAIN"``; an enum whose value isn't a scalar is dropped with a warning naming it, the
    row's other keys recorded."""
    import enum

    class Phase(enum.IntEnum):
        TRAIN = 1
        EVAL = 2

    class Split(str, enum.Enum):
        TRAIN = "train"

    class Rate(enum.Enum):
        LOW = 0.1

    class Shape(enum.Enum):
        SQUARE = (2, 2)

    run = start()
    run.log({"phase": Phase.TRAIN, "split": Split.TRAIN, "rate": Rate.LOW, "shape": Shape.SQUARE, "x": 1.0}, step=0)
    run.log({"phase": Phase.EVAL, "x": 2.0, "split": "eval"}, step=1)
    run.log({"mixed": "plain"}, step=2)  # a column of a str, then a str-mixin member, in one batch
    run.log({"mixed": Split.TRAIN}, step=3)
    run.finish()
    recorded = read(run)
    history = recorded.history()
    assert history["phase"][:2] == [1, 2] and {type(v) for v in history["phase"][:2]} == {int}
    assert history["split"][:2] == ["train", "eval"] and history["rate"][0] == 0.1 and history["x"][:2] == [1.0, 2.0]
    assert [v for v in history["mixed"] if v is not None] == ["plain", "train"]
    assert recorded.summary["mixed"] == "train"
    assert "shape" not in history
    assert any("'shape'" in str(w.message) and "Shape" in str(w.message) for w in recwarn)

    strict = start(settings={"strict": True})
    strict.log({"phase": Phase.TRAIN, "split": Split.TRAIN}, step=0)
    with pytest.raises(TypeError, match="'shape'"):
        strict.log({"shape": Shape.SQUARE}, step=1)
    strict.finish()
    assert read(strict).history()["phase"] == [1]


def test_timestamps_paths_and_exact_numbers_are_recorded_as_w_and_b_records_them(start, recwarn):
    """W&B records a ``datetime``/``date``/``time`` (subclasses too: pandas' ``Timestamp``) as its
    ISO 8601 text and a path as its string; a logged ``Decimal`` or ``Fraction`` is a number,
    recorded as a float so it charts (exact text where no float holds it). Each was dropped with a
    warning before. Strict mode accepts exactly what is then recorded; config and summary keep a
    ``Decimal``'s exact text."""
    import datetime
    import decimal
    import fractions
    from pathlib import Path, PurePosixPath

    class Stamp(datetime.datetime):  # as pandas' Timestamp and freezegun's FakeDatetime are
        pass

    when = datetime.datetime(2026, 12, 5, 3, 4, 5, tzinfo=datetime.timezone.utc)
    row = {"when": when, "day": when.date(), "at": when.time(), "ckpt": Path("/ckpt/epoch-3.pt"),
           "posix": PurePosixPath("a/b"), "lr": decimal.Decimal("0.0003"), "third": fractions.Fraction(1, 3),
           "stamp": Stamp(2026, 1, 2, 3, 4, 5), "signaling": decimal.Decimal("sNaN"),
           "huge": fractions.Fraction(10**400, 3)}
    exact = decimal.Decimal("12345678901234567890.5")
    for settings in ({}, {"strict": True}):
        run = start(settings=settings, config={"budget": exact, "since": when})
        run.log(row, step=0)
        run.summary["best_at"] = when
        run.summary["budget"] = exact
        run.log({"span": datetime.timedelta(seconds=3)}, step=1)  # W&B's text: its ISO 8601 duration
        run.finish()
        recorded = read(run)
        history = recorded.history()
        assert history["when"][0] == "2026-12-05T03:04:05+00:00" and history["day"][0] == "2026-12-05"
        assert history["at"][0] == "03:04:05" and history["ckpt"][0] == "/ckpt/epoch-3.pt"
        assert history["posix"][0] == "a/b" and history["stamp"][0] == "2026-01-02T03:04:05"
        assert history["lr"][0] == 0.0003 and history["third"][0] == 1 / 3
        assert history["signaling"][0] == "sNaN" and history["huge"][0] == str(fractions.Fraction(10**400, 3))
        assert recorded.summary["best_at"] == "2026-12-05T03:04:05+00:00"
        assert recorded.summary["budget"] == "12345678901234567890.5"
        assert recorded.config["budget"] == "12345678901234567890.5"
        assert recorded.config["since"] == "2026-12-05T03:04:05+00:00"
        assert history["span"] == [None, "PT3S"]
    assert [str(w.message) for w in recwarn if "can't be logged" in str(w.message)] == []


def test_config_dict_and_attribute_style(start):
    @dataclasses.dataclass
    class Optim:
        name: str = "adam"
        betas: tuple = (0.9, 0.999)

    args = argparse.Namespace(batch_size=32, seed=1)
    run = start(config={"lr": 3e-4, "model": {"layers": 2}})
    run.config.epochs = 10
    run.config["optim"] = Optim()
    run.config.update(args)
    run.config.update({"lr": 1e-3})
    with pytest.raises(ValueError, match="'lr' already set"):
        run.config.update({"lr": 5.0}, allow_val_change=False)
    del run.config.seed
    assert run.config.lr == 1e-3 and run.config["epochs"] == 10
    with pytest.raises(AttributeError):
        _ = run.config.missing
    run.finish()
    config = read(run).config
    assert config == {
        "lr": 1e-3,
        "model": {"layers": 2},
        "epochs": 10,
        "optim": {"name": "adam", "betas": [0.9, 0.999]},
        "batch_size": 32,
    }
    assert list(config) == ["lr", "model", "epochs", "optim", "batch_size"]


def test_summary_is_the_last_value_unless_defined_otherwise(start):
    run = start()
    run.define_metric("val/loss", summary="min")
    run.define_metric("val/*", summary="max")  # later definition wins for val/acc only... and val/loss
    run.define_metric("val/loss", summary="min")
    run.define_metric("grad", summary="min,max,mean")
    run.define_metric("hidden", summary="none")
    run.define_metric("lr", summary="first")
    run.define_metric("span", summary="first,last")
    for step, (loss, acc, val) in enumerate([(3.0, 0.1, 2.0), (1.0, 0.5, float("nan")), (2.0, 0.3, 1.5)]):
        run.log({"train/loss": loss, "val/acc": acc, "val/loss": val, "grad": float(step), "hidden": 1,
                 "lr": 0.1 / (step + 1), "span": step})
    assert run.summary["lr"] == 0.1
    assert run.summary["span"] == {"first": 0, "last": 2}
    assert run.summary["train/loss"] == 2.0
    assert run.summary["val/acc"] == 0.5
    assert run.summary["val/loss"] == 1.5  # NaN ignored by min
    assert run.summary["grad"] == {"min": 0.0, "max": 2.0, "mean": 1.0}
    assert "hidden" not in run.summary
    run.summary["best_epoch"] = 7
    run.summary.update({"note": "ok"})
    del run.summary["note"]
    run.finish()
    summary = read(run).summary
    assert summary["train/loss"] == 2.0 and summary["val/loss"] == 1.5 and summary["best_epoch"] == 7
    assert summary["grad"] == {"min": 0.0, "max": 2.0, "mean": 1.0}
    assert "note" not in summary and "hidden" not in summary
    assert summary["lr"] == 0.1 and summary["span"] == {"first": 0, "last": 2}
    definitions = {d.name: d.summary for d in read(run).metric_definitions}
    assert definitions["grad"] == ["min", "max", "mean"]


def test_define_metric_rejects_an_unknown_mode(start):
    run = start()
    with pytest.raises(ValueError, match="'best'"):
        run.define_metric("loss", summary="best")


def test_module_level_api_follows_the_current_run(root):
    with pytest.raises(RuntimeError, match="init"):
        tracklet.log({"a": 1})
    with pytest.raises(RuntimeError, match="init"):
        tracklet.config["x"] = 1
    run = tracklet.init(project="m", config={"x": 1}, settings=QUIET)
    assert tracklet.run is run and tracklet.config.x == 1
    tracklet.log({"a": 1.0})
    tracklet.summary["s"] = 2
    tracklet.define_metric("a", summary="max")
    tracklet.alert("look", "something happened", level="WARN")
    tracklet.finish()
    assert tracklet.run is None
    recorded = read(run)
    assert recorded.state == "finished" and recorded.summary["s"] == 2
    assert [(a.title, a.level) for a in recorded.alerts] == [("look", "WARN")]


def test_init_finishes_the_previous_run(start):
    first = start()
    second = start()
    assert first.finished and not second.finished
    assert read(first).state == "finished"


def test_context_manager_marks_failure_with_the_exception(start):
    with pytest.raises(ZeroDivisionError):
        with start() as run:
            run.log({"a": 1})
            _ = 1 / 0
    recorded = read(run)
    assert recorded.state == "failed" and recorded.exit_code == 1
    assert recorded.error == "ZeroDivisionError: division by zero"
    assert "1 / 0" in recorded.traceback


def test_log_after_finish_is_an_error(start):
    run = start()
    run.finish()
    run.finish()  # idempotent
    with pytest.raises(RuntimeError, match="finished"):
        run.log({"a": 1})


def test_disabled_mode_records_nothing_and_keeps_config(root):
    run = tracklet.init(project="d", mode="disabled", config={"lr": 0.1})
    run.log({"a": 1})
    run.log("not even a dict")
    run.config.batch = 4
    run.summary["x"] = 1
    run.define_metric("a", summary="min")
    assert run.config.lr == 0.1 and run.summary["x"] == 1 and run.dir is None
    run.finish()
    assert not root.exists()


def test_disabled_mode_from_the_environment(root, monkeypatch):
    monkeypatch.setenv("TRACKLET_MODE", "disabled")
    run = tracklet.init(project="d")
    run.log({"a": 1})
    run.finish()
    assert not root.exists()


def test_settings_priority_arguments_then_environment_then_defaults():
    environ = {"TRACKLET_FLUSH_INTERVAL": "0.25", "TRACKLET_STRICT": "yes", "TRACKLET_PROJECT": "envp"}
    resolved = resolve_settings({"strict": False}, environ=environ, project="argp")
    assert resolved.flush_interval == 0.25 and resolved.strict is False and resolved.project == "argp"
    assert resolve_settings(environ={}).flush_interval == Settings().flush_interval
    with pytest.raises(ValueError, match="TRACKLET_MAX_QUEUE"):
        resolve_settings(environ={"TRACKLET_MAX_QUEUE": "lots"})
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_settings(environ={}, mode="cloud")
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_settings({"flush_intervall": 1}, environ={})


def test_a_settings_object_wins_over_the_environment_even_with_default_values():
    environ = {"TRACKLET_CONSOLE": "off", "TRACKLET_STRICT": "yes", "TRACKLET_FLUSH_INTERVAL": "0.25"}
    given = Settings(console="wrap", strict=False)  # both equal the defaults: still the caller's choice
    resolved = resolve_settings(given, environ=environ)
    assert (resolved.console, resolved.strict) == ("wrap", False)
    assert resolved.flush_interval == 0.25  # not given: the environment's
    assigned = Settings()
    assigned.console = "wrap"  # set after construction: given too
    assert resolve_settings(assigned, environ=environ).console == "wrap"
    assert resolve_settings(Settings(), environ=environ).console == "off"  # nothing given: the environment wins
    assert resolve_settings(Settings("offline"), environ={"TRACKLET_MODE": "disabled"}).mode == "offline"


@pytest.mark.parametrize("project", ["../escape", "a/b", "", "with space", "x" * 200])
def test_bad_project_names_are_refused(root, project):
    with pytest.raises(ValueError, match="project .* is not valid"):
        tracklet.init(project=project, settings=QUIET)


def test_online_mode_needs_a_server_url(root):
    with pytest.raises(ValueError, match="mode='online' needs the tracking server's URL.*TRACKLET_BASE_URL"):
        tracklet.init(project="p", mode="online")


def test_resume_continues_steps_config_and_summary(start):
    run = start(id="resumable", config={"lr": 0.1}, name="first-name", tags=["a"])
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    run.finish()
    with pytest.raises(ValueError, match="already exists"):
        start(id="resumable")
    again = start(id="resumable", resume="allow")
    assert again.step == 2 and again.config.lr == 0.1 and again.name == "first-name" and again.tags == ["a"]
    assert again.summary["loss"] == 0.5
    again.log({"loss": 0.25, "new": 1})
    again.finish()
    recorded = read(again)
    history = recorded.history()
    assert history["_step"] == [0, 1, 2] and history["loss"] == [1.0, 0.5, 0.25] and history["new"] == [None, None, 1]
    assert recorded.metadata["sessions"] == 2 and recorded.state == "finished"


def test_a_run_resumed_with_a_new_name_is_renamed_and_keeps_what_was_not_given(start, root):
    """W&B renames a run resumed with ``name=`` (a run resumed without one keeps its name)."""
    run = start(id="renamed", name="first-name", tags=["a"], notes="first notes", group="g1")
    run.log({"loss": 1.0})
    run.finish()
    again = start(id="renamed", resume="allow", name="second-name", notes="")
    assert again.name == "second-name" and again.notes == "" and again.tags == ["a"] and again.group == "g1"
    again.log({"loss": 0.5})
    again.finish()
    recorded = read(again)
    assert (recorded.name, recorded.notes, recorded.tags, recorded.group) == ("second-name", "", ["a"], "g1")
    listed = {r.id: r for r in tracklet.Api(str(root)).runs(again.project)}  # through the store
    assert listed["renamed"].name == "second-name"
    third = start(id="renamed", resume="allow")  # nothing given: the run's identity as it now is
    assert third.name == "second-name" and third.tags == ["a"]
    third.finish()
    assert read(third).name == "second-name"


def test_a_first_summary_survives_a_resume(start):
    run = start(id="warmup")
    run.define_metric("lr", summary="first")
    run.define_metric("loss", summary="first,min")
    run.log({"lr": 0.1, "loss": 2.0})
    run.log({"lr": 0.2, "loss": 1.0})
    run.finish()
    again = start(id="warmup", resume="allow")
    again.define_metric("lr", summary="first")
    again.define_metric("loss", summary="first,min")
    again.log({"lr": 0.3, "loss": 1.5})
    assert again.summary["lr"] == 0.1 and again.summary["loss"]["first"] == 2.0
    again.finish()
    summary = read(again).summary
    assert summary["lr"] == 0.1 and summary["loss"]["first"] == 2.0


def test_resume_must_needs_an_existing_run(start):
    with pytest.raises(ValueError, match="resume='must'"):
        start(id="nothere", resume="must")


def test_exit_status_of_a_script(root):
    script = """
        import tracklet
        run = tracklet.init(project="exit", name="{name}", settings={{"capture_environment": False}})
        run.log({{"a": 1.0}})
        {tail}
    """
    cases = {
        # sys.exit on another thread ends that thread only: the process exits 0
        "clean": ("import sys, threading; t = threading.Thread(target=sys.exit, args=(4,)); t.start(); t.join()",
                  "finished", 0, None),
        "raises": ("raise ValueError('bad things')", "failed", 1, "ValueError: bad things"),
        "interrupted": ("raise KeyboardInterrupt", "failed", 130, "KeyboardInterrupt: "),
        "exits_2": ("import sys; sys.exit(2)", "failed", 2, None),
        "exits_0": ("import sys; sys.exit(0)", "finished", 0, None),
        "argparse": ("import argparse; argparse.ArgumentParser().parse_args(['--nope'])", "failed", 2, None),
        # site's exit() and quit() raise SystemExit without sys.exit
        "exit_builtin": ("exit(2)", "failed", 2, None),
        "quit_builtin": ("quit(0)", "finished", 0, None),
    }
    if sys.version_info >= (3, 12):  # sys.monitoring: a SystemExit raised by the main module's own code
        cases.update({
            "raises_3": ("raise SystemExit(3)", "failed", 3, None),
            "raises_message": ("raise SystemExit('message')", "failed", 1, None),
            "raises_none": ("raise SystemExit(None)", "finished", 0, None),
            "caught": ("try: raise SystemExit(5)\n        except SystemExit: pass", "finished", 0, None),
        })
    for name, (tail, _state, _code, _error) in cases.items():
        run_script(script.format(name=name, tail=tail))
    api = tracklet.Api(root)
    by_name = {r.name: r for r in api.runs("exit")}
    for name, (_, state, code, error) in cases.items():
        recorded = by_name[name]
        assert (recorded.state, recorded.exit_code, recorded.error) == (state, code, error), name
        assert recorded.history()["a"] == [1.0]
    assert "ValueError: bad things" in by_name["raises"].traceback


def test_an_interrupted_script_still_exits_by_sigint_whatever_finishing_the_run_executes(root):
    # CPython forgets an unhandled KeyboardInterrupt when any source text is exec'd at exit
    # (dataclasses, namedtuple, first imports); shells and schedulers read 130 / SIGINT as "interrupted"
    done = run_script("""
        import collections
        import tracklet
        from tracklet.core.run import Run
        real_finish = Run.finish
        def finish_that_execs(self, *args, **kwargs):
            collections.namedtuple("Point", "x y")  # exec's its generated source
            return real_finish(self, *args, **kwargs)
        Run.finish = finish_that_execs
        run = tracklet.init(project="interrupt", settings={"capture_environment": False})
        run.log({"a": 1.0})
        raise KeyboardInterrupt
    """)
    assert done.returncode in (130, -2), (done.returncode, done.stderr)
    (recorded,) = tracklet.Api(root).runs("interrupt")
    assert (recorded.state, recorded.exit_code, recorded.error) == ("failed", 130, "KeyboardInterrupt: ")


def test_summary_reads_reflect_every_log_call_before_them(start):
    run = start()
    for i in range(5000):
        run.log({"x": i})
    assert run.summary["x"] == 4999
    assert math.isclose(run.summary.as_dict()["x"], 4999)
    run.finish()


def test_summary_last_follows_row_order_when_key_sets_differ(start):
    run = start()
    run.log({"loss": 1.0})
    run.log({"loss": 2.0, "eval/acc": 0.5})
    run.log({"loss": 3.0})
    assert run.summary["loss"] == 3.0
    run.finish()
    assert read(run).summary["loss"] == 3.0


def test_checkpoints_are_recorded_with_digest_size_and_score(start, tmp_path):
    import hashlib

    weights = tmp_path / "epoch=1.ckpt"
    weights.write_bytes(b"\x00weights" * 1000)
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"tensor bytes")
    (folder / "config.json").write_text("{}")
    gone = tmp_path / "deleted.ckpt"
    run = start()
    run.log({"loss": 1.0})
    run.log_checkpoint(weights, score=0.25, monitor="val/loss", metadata={"epoch": 1})
    run.log_checkpoint(folder, step=500)
    run.log_checkpoint(gone)
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.log_checkpoint(weights)
    first, second, third = read(run).checkpoints
    assert first.path == str(weights) and first.step == 1 and first.score == 0.25 and first.monitor == "val/loss"
    assert first.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest() and first.size_bytes == 8000
    assert first.metadata == {"epoch": 1} and first.error == ""
    assert second.step == 500 and second.size_bytes == len(b"tensor bytes") + 2 and second.score is None
    (folder / "config.json").write_text("{} ")
    from tracklet.core.checkpoints import digest

    assert digest(folder)[0] != second.sha256  # the directory digest covers every file
    assert third.error.startswith("FileNotFoundError") and third.sha256 == ""


def test_a_checkpoint_logged_again_unchanged_is_not_read_again(start, tmp_path, monkeypatch):
    from tracklet.core import checkpoints

    folder = tmp_path / "checkpoint-100"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights" * 1000)
    (folder / "config.json").write_text("{}")
    opened: list[str] = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        if "b" in mode and str(file).startswith(str(folder)):
            opened.append(Path(file).name)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "open", counting_open, raising=False)
    run = start()
    run.log_checkpoint(folder, step=100)
    run.log_checkpoint(folder, step=200, metadata={"best": True})  # the same files: no second read
    deadline = time.monotonic() + 30
    while len(read(run).checkpoints) < 2 and time.monotonic() < deadline:
        run.flush()
        time.sleep(0.02)  # waiting for the checkpoint thread, not timing it
    (folder / "config.json").write_text('{"changed": true}')
    run.log_checkpoint(folder, step=300)  # only the changed file is read again
    run.finish()
    first, second, third = read(run).checkpoints
    assert sorted(opened) == ["config.json", "config.json", "model.safetensors"]
    assert (second.sha256, second.size_bytes) == (first.sha256, first.size_bytes)
    assert (third.sha256, third.size_bytes) == checkpoints.digest(folder) != (first.sha256, first.size_bytes)


def test_define_metric_without_summary_keeps_an_earlier_summary_mode(start):
    run = start()
    run.define_metric("eval/*", summary="min")
    run.define_metric("eval/*", step_metric="train/global_step")  # only the x axis
    for value in (3.0, 1.0, 2.0):
        run.log({"eval/loss": value})
    assert run.summary["eval/loss"] == 1.0
    run.finish()
