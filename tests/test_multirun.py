"""Several live runs in one process: ``tracklet.init(reinit="create_new")`` and W&B's
``wandb.init(reinit="create_new")``. Each run has its own record log, sender and uploader; finishing
one leaves the others recording; ``tracklet.run``/``wandb.run`` follow W&B's rule (a create_new run
never becomes the current one); interpreter exit finishes every live run with the process's exit
state; console capture gives every live run what is printed while it is live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import QUIET, REPO, read, run_script

import tracklet
from tracklet.compat.wandb.errors import Error as WandbError
from tracklet.compat.wandb.errors import UsageError
from tracklet.core import lifecycle


def _rows(run: tracklet.Run, key: str) -> list:
    return read(run).history([key])[key]


def test_two_and_three_live_runs_each_read_back_exactly_their_own_rows(start):
    first = start(reinit="create_new")
    second = start(reinit="create_new")
    for step in range(50):
        first.log({"loss": float(step)})
        second.log({"loss": 100.0 + step, "acc": step / 100})
    third = start(reinit="create_new", config={"which": 3})
    for step in range(50):
        third.log({"loss": -float(step)})
        first.log({"loss": 50.0 + step})
    second.finish()  # neither the first nor the last started: the others go on recording
    for step in range(10):
        first.log({"loss": 1000.0 + step})
        third.log({"loss": -1000.0 - step})
    assert lifecycle.live_runs() == [first, third]
    first.finish()
    third.log({"late": 1})
    third.finish()

    assert _rows(first, "loss") == [float(s) for s in range(50)] + [50.0 + s for s in range(50)] \
        + [1000.0 + s for s in range(10)]
    assert _rows(second, "loss") == [100.0 + s for s in range(50)]
    assert read(second).history(["acc"])["acc"] == [s / 100 for s in range(50)]
    assert _rows(third, "loss") == [-float(s) for s in range(50)] + [-1000.0 - s for s in range(10)] + [None]
    assert set(read(third).keys()) == {"loss", "late"}
    assert "acc" not in read(first).keys() and "late" not in read(second).keys()
    assert read(third).config == {"which": 3}
    assert [read(run).state for run in (first, second, third)] == ["finished"] * 3
    assert len({first.dir, second.dir, third.dir}) == 3
    assert lifecycle.live_runs() == []


def test_current_run_follows_wandbs_rule(start):
    assert tracklet.run is None
    lonely = start(reinit="create_new")
    assert tracklet.run is None  # a create_new run never becomes current, even the first one
    main = start()
    assert tracklet.run is main and lifecycle.live_runs() == [lonely, main]  # default init: the current run only
    side = start(reinit="create_new")
    assert tracklet.run is main
    tracklet.log({"x": 1.0})  # the module-level calls go to the current run
    side.log({"y": 2.0})
    assert start(reinit="return_previous") is side  # the live run started last, current or not
    main.finish()
    assert tracklet.run is None  # the current run finished: none is current, the others stay live
    with pytest.raises(RuntimeError, match="no run is active"):
        tracklet.log({"x": 2.0})
    side.log({"y": 3.0})
    replacement = start()  # nothing current to finish: the create_new runs go on
    assert tracklet.run is replacement and not side.finished and not lonely.finished
    last = start(reinit="finish_previous")  # every live run is finished first
    assert lonely.finished and side.finished and replacement.finished
    assert tracklet.run is last and lifecycle.live_runs() == [last]
    last.finish()
    assert read(main).history(["x"])["x"] == [1.0]
    assert _rows(side, "y") == [2.0, 3.0]
    with pytest.raises(ValueError, match="reinit must be one of"):
        start(reinit="sometimes")


def test_with_blocks_nest_and_an_error_fails_only_the_run_it_leaves(start):
    with start(reinit="create_new") as outer:
        with pytest.raises(ZeroDivisionError):
            with start(reinit="create_new") as inner:
                inner.log({"a": 1})
                raise ZeroDivisionError("in the inner run")
        outer.log({"b": 2})
    assert read(inner).state == "failed" and "ZeroDivisionError" in (read(inner).error or "")
    assert read(outer).state == "finished" and _rows(outer, "b") == [2]


SEVERAL_LIVE = """
import os, signal, sys, tracklet
quiet = {"console": "off", "capture_environment": False, "system_metrics": False}
current = tracklet.init(project="exit", name="current", settings=quiet)
runs = [current] + [tracklet.init(project="exit", name=f"side{i}", settings=quiet, reinit="create_new")
                    for i in range(2)]
for step in range(20):
    for index, run in enumerate(runs):
        run.log({"v": index * 100 + step})
"""


@pytest.mark.parametrize("ending, state", [("", "finished"), ("sys.exit(3)", "failed"),
                                           ("raise RuntimeError('boom')", "failed")])
def test_interpreter_exit_finishes_every_live_run_with_the_exit_state(root, ending, state):
    done = run_script(SEVERAL_LIVE + ending)
    assert done.returncode == {"": 0, "sys.exit(3)": 3}.get(ending, 1), done.stderr
    runs = {run.name: run for run in tracklet.Api(root).runs("exit")}
    assert sorted(runs) == ["current", "side0", "side1"]
    for index, name in enumerate(["current", "side0", "side1"]):
        recorded = runs[name]
        assert recorded.state == state, (name, recorded.state)
        assert recorded.history(["v"])["v"] == [index * 100 + step for step in range(20)]  # rows kept
        if "boom" in ending:
            assert "RuntimeError: boom" in (recorded.error or "")
        if ending.startswith("sys.exit"):
            assert recorded.exit_code == 3


def test_a_killed_process_leaves_every_live_run_crashed_with_its_rows(root):
    done = run_script(SEVERAL_LIVE + """
for run in runs:
    run.flush(fsync=True)
os.kill(os.getpid(), signal.SIGKILL)
""")
    assert done.returncode == -signal.SIGKILL
    runs = tracklet.Api(root).runs("exit")
    assert len(runs) == 3
    for recorded in runs:
        assert recorded.state == "crashed"
        assert len(recorded.history(["v"])["v"]) == 20


def test_console_capture_gives_each_live_run_what_is_printed_while_it_is_live(root):
    done = run_script("""
        import sys, tracklet
        original_out, original_err = sys.stdout, sys.stderr
        settings = {"capture_environment": False, "system_metrics": False}
        a = tracklet.init(project="console", name="a", settings=settings, reinit="create_new")
        print("a only")
        b = tracklet.init(project="console", name="b", settings=settings, reinit="create_new")
        print("both")
        print("both, stderr", file=sys.stderr)
        a.finish()  # not the last started
        print("b only")
        b.finish()
        print("nobody")
        assert sys.stdout is original_out and sys.stderr is original_err, (sys.stdout, sys.stderr)
        # Finishing runs in any order never leaves a layer behind: 200 overlapping runs, each
        # finished after the next one started, and the streams are back to what they were.
        previous = tracklet.init(project="churn", settings=settings, reinit="create_new")
        for i in range(200):
            following = tracklet.init(project="churn", settings={**settings, "capture_environment": False},
                                      reinit="create_new")
            assert sys.stdout._original is original_out
            previous.finish()
            previous = following
        print("last churn line")
        previous.finish()
        assert sys.stdout is original_out and sys.stderr is original_err
        """, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == ["a only", "both", "b only", "nobody"]
    runs = {run.name: run for run in tracklet.Api(root).runs("console")}
    lines = {name: [(line.stream, line.text) for line in run.console] for name, run in runs.items()}
    assert lines["a"] == [("stdout", "a only"), ("stdout", "both"), ("stderr", "both, stderr")]
    assert lines["b"] == [("stdout", "both"), ("stderr", "both, stderr"), ("stdout", "b only")]


def test_a_print_in_flight_on_another_thread_survives_the_last_run_finishing(root):
    # print() holds sys.stdout as a borrowed reference while it writes (CPython 3.11 and before):
    # the tee taken out of the stream when the last run finished was freed under a print still
    # writing on another thread (a segfault, every time, with the run dropped as here).
    done = run_script("""
        import gc, io, sys, threading, tracklet

        class Gate(io.TextIOBase):
            \"\"\"A stream whose first write waits (a full pipe): a print() in flight while the run ends.\"\"\"
            def __init__(self):
                self.entered, self.go, self.text = threading.Event(), threading.Event(), []
            def write(self, text):
                if not self.entered.is_set():
                    self.entered.set()
                    self.go.wait()
                self.text.append(text)
                return len(text)

        gate = sys.stdout = Gate()
        run = tracklet.init(project="inflight", settings={"capture_environment": False, "system_metrics": False})
        printer = threading.Thread(target=print, args=("in flight",))
        printer.start()
        gate.entered.wait()
        run.finish()
        assert sys.stdout is gate
        del run
        gc.collect()
        litter = [type(f"Litter{i}", (), {})() for i in range(2000)]  # reuse whatever memory was freed
        gate.go.set()
        printer.join()
        sys.stdout = sys.__stdout__
        print(repr("".join(gate.text)))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == repr("in flight\n") + "\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_another_thread_held_the_console_lock_starts_its_own_runs(root):
    # A thread starting or finishing a run holds the tees' lock for a moment; a child forked then
    # (a pool's worker that starts its own run) inherited it held, and its init() waited forever.
    done = run_script("""
        import os, sys, threading, tracklet
        from tracklet.core import console
        settings = {"capture_environment": False, "system_metrics": False}
        parent = tracklet.init(project="fork", name="parent", settings=settings)
        parent.log({"x": 1.0})
        parent.flush()  # its sender past its first imports (a fork amid an import is another matter)
        original = sys.stdout._original
        held, release = threading.Event(), threading.Event()

        def hold():  # what another thread does while its run starts or finishes
            with console._tees_lock:
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            child = tracklet.init(project="fork", name="child", settings=settings, reinit="create_new")
            print("from the child")
            child.finish()
            os._exit(0 if sys.stdout is original else 3)  # the child's streams put back too
        release.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        print("from the parent")
        parent.finish()
        assert os.waitstatus_to_exitcode(status) == 0, status
        """, timeout=120)  # a bound for the hang this test is about, not a timing check
    assert done.returncode == 0, done.stderr
    runs = {run.name: run for run in tracklet.Api(root).runs("fork")}
    assert [line.text for line in runs["child"].console] == ["from the child"]
    assert [line.text for line in runs["parent"].console] == ["from the parent"]


def test_a_print_from_a_signal_handler_amid_a_captured_print_is_recorded_and_does_not_hang(root):
    # A signal handler runs between any two bytecodes of the main thread, so also while the console
    # capture holds a stream's lock for a print (a garbage-collected object's __del__ that prints
    # does too): a handler that printed ("SIGTERM: saving a checkpoint") waited for that lock for
    # ever, and the training process hung. A trace function stands in for the handler here: it
    # runs Python code between two lines of the capture's locked section, every time.
    done = run_script("""
        import sys, threading, tracklet
        from tracklet.core import console
        run = tracklet.init(project="signal", settings={"capture_environment": False, "system_metrics": False})
        fired = []

        def held(lines):
            lock = lines._lock
            return lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked()

        def tracer(frame, event, arg):
            if frame.f_code.co_filename != console.__file__:
                return None
            if event == "line" and not fired and isinstance(frame.f_locals.get("self"), console._Lines) \\
                    and frame.f_locals.get("text") == "\\n" and held(frame.f_locals["self"]):
                fired.append(True)
                sys.settrace(None)
                print("from the handler")  # the handler's print, on the thread holding the lock
            return tracer

        sys.settrace(tracer)
        print("step 1 done")
        sys.settrace(None)
        print("step 2 done")
        run.finish()
        assert fired
        """, timeout=60)  # a bound for the hang this test is about, not a timing check
    assert done.returncode == 0, done.stderr
    assert done.stdout == "step 1 done\nfrom the handler\nstep 2 done\n"
    (recorded,) = tracklet.Api(root).runs("signal")
    assert [line.text for line in recorded.console] == ["step 1 done", "from the handler", "step 2 done"]


@pytest.mark.parametrize("where", ["_leave", "_install"])  # a run's finish, and another's start
def test_a_signal_handler_finishing_a_run_amid_another_runs_start_or_finish_does_not_hang(root, where):
    # A SIGTERM handler that finishes the runs (a preempted job saving what it has) runs between
    # any two bytecodes of the main thread, so also while a run's start or finish holds the
    # console's tees lock: the handler's finish waited for that lock for ever. A trace function
    # stands in for the handler, as above: it finishes run b inside run a's locked section.
    done = run_script(f"""
        import sys, tracklet
        from tracklet.core import console
        quiet = {{"capture_environment": False, "system_metrics": False}}
        b = tracklet.init(project="handler", name="b", reinit="create_new", settings=quiet)
        fired = []

        def tracer(frame, event, arg):
            if frame.f_code.co_filename != console.__file__:
                return None
            lock = console._tees_lock
            held = lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked()
            if event == "line" and not fired and frame.f_code.co_name == {where!r} and held:
                fired.append(True)
                sys.settrace(None)
                b.finish()  # the handler
            return tracer

        if {where!r} == "_leave":
            a = tracklet.init(project="handler", name="a", reinit="create_new", settings=quiet)
            print("a and b")
            sys.settrace(tracer)
            a.finish()
        else:
            sys.settrace(tracer)
            a = tracklet.init(project="handler", name="a", reinit="create_new", settings=quiet)
            sys.settrace(None)
            print("a alone")
            a.finish()
        sys.settrace(None)
        assert fired
        print("after")
        assert not isinstance(sys.stdout, console._Tee), sys.stdout
        """, timeout=60)  # a bound for the hang this test is about, not a timing check
    assert done.returncode == 0, done.stderr
    runs = {run.name: [line.text for line in run.console] for run in tracklet.Api(root).runs("handler")}
    assert runs == ({"a": ["a and b"], "b": ["a and b"]} if where == "_leave" else {"a": ["a alone"], "b": []})


def test_a_run_started_inside_redirect_stdout_leaves_no_tee_behind(root):
    # The redirect put the first run's tee back while the shared tee was the second run's: once
    # both finished, that tee stayed in sys.stdout for good, one more dead layer per round.
    done = run_script("""
        import contextlib, io, sys, tracklet
        original = sys.stdout
        settings = {"capture_environment": False, "system_metrics": False}
        for i in range(3):
            outer = tracklet.init(project="redirect", name=f"outer{i}", settings=settings, reinit="create_new")
            with contextlib.redirect_stdout(io.StringIO()):
                inner = tracklet.init(project="redirect", name=f"inner{i}", settings=settings, reinit="create_new")
                print(f"inside {i}")
            print(f"outside {i}")
            inner.finish()
            outer.finish()
            assert sys.stdout is original, (i, sys.stdout, getattr(sys.stdout, "_original", None))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"outside {i}" for i in range(3)]
    runs = {run.name: run for run in tracklet.Api(root).runs("redirect")}
    for i in range(3):
        assert [line.text for line in runs[f"outer{i}"].console] == [f"outside {i}"]
        assert [line.text for line in runs[f"inner{i}"].console] == [f"inside {i}"]


def test_online_runs_stream_side_by_side_to_a_real_server(servers, tmp_path):
    server = servers(tmp_path / "srv")
    settings = {**QUIET, "base_url": server.url}
    runs = [tracklet.init(project="p", dir=str(tmp_path / "client"), mode="online", settings=settings,
                          reinit="create_new", id=f"live{index}") for index in range(3)]
    for step in range(30):
        for index, run in enumerate(runs):
            run.log({"loss": index + step / 100})
    runs[1].finish()
    for step in range(30, 40):
        runs[0].log({"loss": step / 100})
        runs[2].log({"loss": 2 + step / 100})
    runs[2].finish()
    runs[0].finish()
    api = tracklet.Api(base_url=server.url)
    assert api.run("p/live0").history(["loss"])["loss"] == [step / 100 for step in range(40)]
    assert api.run("p/live1").history(["loss"])["loss"] == [1 + step / 100 for step in range(30)]
    assert api.run("p/live2").history(["loss"])["loss"] == [2 + step / 100 for step in range(40)]
    for index in range(3):
        local = tmp_path / "client" / "projects" / "p" / "runs" / f"live{index}" / "run.tlog"
        server_copy = tmp_path / "srv" / "projects" / "p" / "runs" / f"live{index}" / "run.tlog"
        assert server_copy.read_bytes() == local.read_bytes()  # each run's uploader sent its own log
        assert api.run(f"p/live{index}").state == "finished"


def test_wandb_globals_follow_wandbs_rule(root):
    import tracklet.compat.wandb as wandb

    settings = wandb.Settings(console="off", x_disable_stats=True)
    tracking = wandb.init(project="w", settings=settings, reinit="create_new")
    assert wandb.run is None  # create_new never sets wandb.run
    with pytest.raises(WandbError, match="before wandb.log"):
        wandb.log({"x": 1})
    primary = wandb.init(project="w", settings=settings, reinit="finish_previous")
    assert tracking._run.finished and wandb.run is primary
    side = wandb.init(project="w", settings=settings, reinit="create_new")
    assert wandb.run is primary
    wandb.log({"x": 1.0})
    wandb.config.update({"lr": 0.1})
    side.log({"y": 1.0})
    assert dict(side.config) == {}  # wandb.config is the global run's
    with pytest.warns(Warning, match="returning that run"):
        assert wandb.init(project="w", settings=settings) is side  # "default": the most recent live run
    assert wandb.init(project="w", settings=settings, reinit="return_previous") is side
    with pytest.raises(UsageError, match="Cannot resume a run while another run is active"):
        wandb.init(project="w", id=primary.id, resume="must", settings=settings)
    primary.finish()
    assert wandb.run is None and not side._run.finished  # the global is unset, not switched
    wandb.finish()  # no wandb.run: nothing to finish
    assert not side._run.finished
    side.log({"y": 2.0})
    side.finish()
    assert wandb.Api(overrides={"root": str(root)}).run(f"w/{side.id}").history(pandas=False)[0]["y"] == 1.0
    assert read(side._run).history(["y"])["y"] == [1.0, 2.0]
    assert read(primary._run).history(["x"])["x"] == [1.0]
    assert read(primary._run).config == {"lr": 0.1}


CREATE_NEW_SCRIPT = """
import json
import wandb

assert getattr(wandb, "_tracklet_compat", False)
ids = []
with wandb.init(project="nested", reinit="create_new") as tracking_run:
    assert wandb.run is None
    for x in range(3):
        with wandb.init(project="nested", reinit="create_new", config={"x": x}) as run:
            for y in range(5):
                run.log({"x_plus_y": x + y})
            tracking_run.log({"x": x})
            ids.append(run.id)
print(json.dumps({"tracking": tracking_run.id, "children": ids}))
"""


def test_an_unmodified_wandb_script_using_create_new(root, tmp_path):
    path = tmp_path / "nested.py"
    path.write_text(textwrap.dedent(CREATE_NEW_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, str(path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_SYSTEM_METRICS": "false"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    api = tracklet.Api(root)
    assert api.run(f"nested/{printed['tracking']}").history(["x"])["x"] == [0, 1, 2]
    for x, run_id in enumerate(printed["children"]):
        child = api.run(f"nested/{run_id}")
        assert child.history(["x_plus_y"])["x_plus_y"] == [x + y for y in range(5)]
        assert child.config == {"x": x} and child.state == "finished"
        assert "x" not in child.keys()
    assert len(set(printed["children"])) == 3


def test_in_a_sweep_trial_a_create_new_run_beside_the_trials_is_an_ordinary_run(root):
    trial_dir = root / "sweeps" / "sw1" / "trials"
    trial_dir.mkdir(parents=True)
    (trial_dir / "0.json").write_text(json.dumps({"project": "sweepy", "run_id": "trial0", "config": {"lr": 0.5}}))
    done = run_script("""
        import json, tracklet
        quiet = {"console": "off", "capture_environment": False, "system_metrics": False}
        trial = tracklet.init(project="ignored", config={"lr": 0.1}, settings=quiet)
        extra = tracklet.init(project="evals", config={"lr": 0.1}, settings=quiet, reinit="create_new")
        trial.log({"loss": 1.0}); extra.log({"score": 2.0})
        print(json.dumps([trial.path, extra.path, trial.tags, extra.tags]))
        """, env={"TRACKLET_SWEEP_ID": "sw1", "TRACKLET_SWEEP_TRIAL": "0"})
    assert done.returncode == 0, done.stderr
    trial_path, extra_path, trial_tags, extra_tags = json.loads(done.stdout.strip().splitlines()[-1])
    assert trial_path == "sweepy/trial0" and trial_tags == ["sweep:sw1"]
    assert extra_path.startswith("evals/") and extra_path != "evals/trial0" and extra_tags == []
    api = tracklet.Api(root)
    assert api.run(trial_path).config == {"lr": 0.5} and api.run(extra_path).config == {"lr": 0.1}


def test_an_interrupt_landing_on_any_line_of_one_runs_finish_leaves_the_other_recording(start, root):
    """A Ctrl-C (KeyboardInterrupt) landing on each line of one live run's ``finish()`` in turn:
    that run is ended with its rows and exit, and the other live run is untouched (still live,
    still current if it was) and records to its end."""
    from test_finish_interrupted import _finish_code

    codes = _finish_code()
    other = start()  # the current run
    target = 0
    while True:
        run = start(reinit="create_new")
        for step in range(10):
            run.log({"loss": float(step)})
            other.log({"other": float(target * 10 + step)})
        lines = 0

        def local(frame, event, arg, target=target):
            nonlocal lines
            if event == "line":
                lines += 1
                if lines == target + 1:
                    raise KeyboardInterrupt
            return local

        sys.settrace(lambda frame, event, arg: local if frame.f_code in codes else None)
        try:
            run.finish()
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        if run in lifecycle.live_runs():  # landed before finish() began ending it
            run.finish()
        where = f"interrupted at finish()'s line event {target + 1}"
        recorded = read(run)
        assert recorded.state == "finished" and recorded.history(["loss"])["loss"] == [float(s) for s in range(10)], where
        assert not other.finished and tracklet.run is other and lifecycle.live_runs() == [other], where
        if lines <= target:
            break
        target += 1
    other.finish()
    assert read(other).history(["other"])["other"] == [float(s) for s in range(10 * (target + 1))]
    assert target > 20


@pytest.mark.parametrize("reinit", ["default", "create_new"])
def test_a_function_trial_starts_with_no_live_run_and_ends_the_runs_it_started(root, monkeypatch, reinit):
    """``wandb.agent(function=...)`` in this process, as W&B's agent: before each trial it tears
    the session down (``wandb.teardown()``), which finishes every live run with exit code 0, so a
    run the script started before the agent ends (finished, what it logged kept) as the first
    trial starts, and the trial's ``wandb.init()`` records the trial's run with its config
    instead of returning the script's run (W&B's default ``return_previous``). Each trial ends
    its current run and every run the function left live, tagged by the trial's config."""
    pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")
    import tracklet.compat.wandb as wandb

    monkeypatch.setenv("TRACKLET_DIR", str(root))
    settings = wandb.Settings(console="off", x_disable_stats=True, disable_git=True)
    outer = wandb.init(project="agent", settings=settings, reinit=reinit)
    outer.log({"before": 1})
    sweep_id = wandb.sweep({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                            "parameters": {"lr": {"values": [0.1, 0.2]}}}, project="agent")
    left_live = []

    def train() -> None:
        assert outer._run.finished  # ended before the trial started
        trial = wandb.init(settings=settings)  # the trial's run: no run is live to return
        side = wandb.init(project="agent-side", settings=settings, reinit="create_new")
        trial.log({"loss": trial.config["lr"]})
        side.log({"seen": trial.config["lr"]})
        left_live.append((trial, side))

    wandb.agent(sweep_id, function=train, count=2)
    assert len(left_live) == 2 and left_live[0][0] is not outer
    for trial, side in left_live:
        assert trial._run.finished and side._run.finished
        assert trial._run._sweep_trial and not side._run._sweep_trial
        assert read(trial._run).history(["loss"])["loss"] == [trial._run.config["lr"]]
        assert f"sweep:{sweep_id}" in read(trial._run).tags and read(side._run).tags == []
    assert sorted(trial._run.config["lr"] for trial, _ in left_live) == [0.1, 0.2]
    recorded = read(outer._run)
    assert recorded.state == "finished" and recorded.exit_code == 0 and recorded.history(["before"])["before"] == [1]
    assert f"sweep:{sweep_id}" not in recorded.tags and "lr" not in recorded.config
    assert wandb.run is None
    with pytest.warns(tracklet.TrackletWarning, match="this run has finished"):
        outer.log({"after": 1})  # not recorded: the run ended, as its W&B run was torn down


def test_starting_a_run_that_is_live_in_this_process_again_is_refused_naming_it(start):
    live = start(id="twice", reinit="create_new")
    current = start()
    for reinit in ("create_new", None):
        with pytest.raises(ValueError, match="run test/twice is live in this process"):
            start(id="twice", resume="allow", reinit=reinit)
        assert not current.finished  # refused before anything was finished
    current.finish()
    live.log({"a": 1})
    live.finish()
    again = start(id="twice", resume="allow", reinit="create_new")  # finished: resumed as usual
    again.log({"a": 2})
    again.finish()
    assert _rows(again, "a") == [1, 2]
