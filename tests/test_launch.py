"""``tracklet run -- COMMAND``: an unmodified script is recorded, and its exit code passes through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import tracklet

from conftest import REPO

SCRIPT = """
import subprocess, sys
print("training", sys.argv[1:])
if "--child" in sys.argv:
    # a process the script starts (like a DataLoader worker) must not start a run of its own
    subprocess.run([sys.executable, "-c", "import tracklet; print('child run:', tracklet.run)"], check=True)
if "--fail" in sys.argv:
    raise RuntimeError("diverged")
sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
"""


def _tracklet(*args, cwd=None, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tracklet", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, **kwargs,
    )


def test_a_script_that_never_imports_tracklet_is_recorded(root, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = _tracklet("run", "--project", "launch", "--name", "plain", "--", sys.executable, str(script), "--lr", "3", "--child")
    assert done.returncode == 0, done.stderr
    assert "training ['--lr', '3', '--child']" in done.stdout and "child run: None" in done.stdout
    (recorded,) = tracklet.Api(root).runs("launch")
    assert recorded.name == "plain" and recorded.state == "finished"
    assert recorded.metadata["command"][1:] == [str(script), "--lr", "3", "--child"]
    assert [line.text for line in recorded.console][0] == "training ['--lr', '3', '--child']"


def test_the_exit_code_passes_through_and_marks_the_run(root, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    assert _tracklet("run", "-p", "codes", "-n", "three", "--", sys.executable, str(script), "3").returncode == 3
    failed = _tracklet("run", "-p", "codes", "-n", "boom", "--", sys.executable, str(script), "--fail")
    assert failed.returncode == 1 and "RuntimeError: diverged" in failed.stderr
    runs = {r.name: r for r in tracklet.Api(root).runs("codes")}
    assert (runs["three"].state, runs["three"].exit_code) == ("failed", 3)
    assert (runs["boom"].state, runs["boom"].error) == ("failed", "RuntimeError: diverged")


def test_dir_option_and_a_missing_command(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    script = tmp_path / "train.py"
    script.write_text("print('ok')")
    done = _tracklet("--dir", str(elsewhere), "run", "-p", "d", "--", sys.executable, str(script))
    assert done.returncode == 0
    assert [r.state for r in tracklet.Api(elsewhere).runs("d")] == ["finished"]
    missing = _tracklet("run", "--", "no-such-program-here")
    assert missing.returncode == 2 and "command not found: no-such-program-here" in missing.stderr


def test_sigterm_ends_the_script_with_a_recorded_run(root, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.01)\n")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tracklet", "run", "-p", "term", "--", sys.executable, str(script)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert launcher.stdout.readline().strip() == "ready"
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(60) == 143
    (recorded,) = tracklet.Api(root).runs("term")
    assert (recorded.state, recorded.exit_code) == ("failed", 143)


def test_an_existing_sitecustomize_still_runs(root, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import builtins\nbuiltins.THEIRS_RAN = True\n")
    script = tmp_path / "train.py"
    script.write_text("import builtins\nprint('theirs ran:', getattr(builtins, 'THEIRS_RAN', False))\n")
    done = _tracklet("run", "-p", "chain", "--", sys.executable, str(script),
                     env={"PYTHONPATH": os.pathsep.join([str(REPO), str(theirs)])})
    assert "theirs ran: True" in done.stdout
    assert len(tracklet.Api(root).runs("chain")) == 1
