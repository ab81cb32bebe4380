"""A command trial's start runs no Python in the forked child (tracklet/sweeps/launcher.py), yet the
trial still dies with the agent thread that started it, and a command that can't run is named.

An agent in a process with threads started each trial with ``Popen(preexec_fn=...)``: CPython then ran
the at-fork hooks of every module, and cleared the other threads' states, in the child before exec.
A trial hung there for ever (a finalizer waiting on a condition a thread of the parent held: CI)."""

from __future__ import annotations

import signal
import sys

import pytest

from conftest import run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def test_a_trials_start_runs_no_python_in_the_forked_child(tmp_path):
    marker, ran = tmp_path / "hook-ran-in-a-child", tmp_path / "trial-ran"
    done = run_script(f"""
        import os, sys
        from tracklet.sweeps.agent import Agent
        from tracklet.sweeps.controller import LocalController, create_sweep

        parent = os.getpid()

        def in_child():  # a module's at-fork hook: what a preexec_fn's child ran (and could hang in)
            if os.getppid() == parent:
                open({str(marker)!r}, "a").write(str(os.getpid()) + "\\n")

        os.register_at_fork(after_in_child=in_child)
        program = {str(tmp_path / "train.py")!r}
        open(program, "w").write("open({str(ran)!r}, 'a').write('x')\\n")
        root = {str(tmp_path / "data")!r}
        sweep_id = create_sweep(root, {{"method": "grid", "program": program,
                                        "parameters": {{"lr": {{"values": [0.1, 0.2]}}}}}}, project="p")
        report = Agent(LocalController(root, sweep_id), log=lambda line: None).run_commands()
        print(sorted(result.state for result in report.results))
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ran.read_text() == "xx", done.stdout + done.stderr  # both trials ran
    assert not marker.exists(), marker.read_text()  # and no Python ran in a child before its exec


def test_a_trial_dies_with_the_thread_that_started_it_and_a_missing_command_is_named(tmp_path):
    """And the launcher imports the standard library's modules, not a trial's own os.py or signal.py."""
    up = tmp_path / "trial-up"
    done = run_script(f"""
        import os, subprocess, sys, threading, time
        from tracklet.sweeps import launcher

        try:
            launcher.start(["no-such-command-here", "--x"], {{}})
        except OSError as error:
            print("missing:", error.errno, error.strerror, error.filename)

        started = []

        def start():  # as an agent's worker thread: it starts the trial, then ends (an agent killed)
            trial = "import time; open({str(up)!r}, 'w').close(); time.sleep(600)"
            started.append(launcher.start([sys.executable, "-c", trial], dict(os.environ)))
            while not os.path.exists({str(up)!r}):  # the trial runs its own code (exec'd)
                time.sleep(0.01)

        # a trial's working directory or PYTHONPATH with modules named as the standard library's
        shadow = {str(tmp_path / "shadow")!r}
        os.makedirs(shadow)
        for name in ("os", "signal", "ctypes"):
            open(os.path.join(shadow, name + ".py"), "w").write("raise SystemExit('shadowed')")
        os.chdir(shadow)
        launcher.start([sys.executable, "-c", "print('ran', flush=True)"], {{**os.environ, "PYTHONPATH": shadow}}).wait()

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
        try:
            print("trial:", started[0].wait(timeout=30))  # this process lives on: only the thread ended
        except subprocess.TimeoutExpired:
            started[0].kill()
            print("trial: outlived the thread that started it")
    """, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "missing: 2 No such file or directory no-such-command-here" in done.stdout, done.stdout
    assert f"trial: {-signal.SIGTERM}" in done.stdout, done.stdout + done.stderr
    assert "ran" in done.stdout.split() and "shadowed" not in done.stderr, done.stdout + done.stderr
