"""``tracklet run -- COMMAND``: an unmodified script is recorded, and its exit code passes through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tracklet

from conftest import REPO, run_script

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


POOL_SCRIPT = """
import multiprocessing as mp, os
import tracklet

def work(i):
    tracklet.run.log({"work/i": i})
    return os.getpid()

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:  # the with block ends the workers with SIGTERM
        print("workers", len(set(pool.map(work, range(4), chunksize=1))))
"""


def test_a_forked_pool_workers_part_ends_finished_when_the_pool_ends_it(root, tmp_path):
    # tracklet run's SIGTERM handler (sys.exit(143), for the script) was inherited by the workers a
    # fork Pool made: ending the pool (terminate(), SIGTERM) ended a worker's part failed, exit 143.
    # A forked child gets SIGTERM's default action back (core/forksafe.sigterm_handler).
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    done = _tracklet("run", "-p", "pool", "--", sys.executable, str(script),
                     env={"TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"})
    assert done.returncode == 0, done.stderr
    (recorded,) = tracklet.Api(root).runs("pool")
    assert recorded.state == "finished" and recorded.parts
    assert {(part["state"], part.get("exit_code")) for part in recorded.parts.values()} == {("finished", 0)}
    assert "interrupted" not in done.stderr


def test_a_child_forked_during_a_distributed_train_call_gets_sigterms_default_back():
    # The Hugging Face callback's SIGTERM -> sys.exit(143) during a distributed train() call is the
    # rank's: a DataLoader worker forked then is killed by SIGTERM as before, not left to exit(143).
    # (In a fresh interpreter: a pytest-xdist worker has a SIGTERM handler of its own.)
    done = run_script("""
        import os, signal
        from tracklet.integrations._ranks import end_cleanly_on_sigterm

        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        undo = end_cleanly_on_sigterm()
        assert undo is not None and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)
            _, status = os.waitpid(pid, 0)
        finally:
            undo()
        assert os.waitstatus_to_exitcode(status) == 0, "the forked child kept the rank's SIGTERM handler"
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


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


def test_an_exit_the_script_could_not_record_is_corrected_from_its_real_exit_code(root, tmp_path, monkeypatch):
    # raise SystemExit(n) / exit(n) / quit(n) end the process without sys.exit, and a SystemExit
    # raised in a function is seen by no hook: the launcher, which sees the real code, corrects the run
    from tracklet.cli.launch import run_command

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the child imports this checkout's tracklet
    for setting in ("CAPTURE_ENVIRONMENT", "SYSTEM_METRICS"):  # what the exit does not need: CI's CPU
        monkeypatch.setenv(f"TRACKLET_{setting}", "false")
    cases = {
        "raises_3": ("def main():\n    raise SystemExit(3)\nmain()", 3, "failed"),
        "exit_2": ("exit(2)", 2, "failed"),
        "quit_0": ("quit(0)", 0, "finished"),
        "message": ("raise SystemExit('message')", 1, "failed"),
        "none": ("raise SystemExit(None)", 0, "finished"),
    }
    for name, (tail, code, _state) in cases.items():
        script = tmp_path / f"{name}.py"
        script.write_text(f"print('training')\n{tail}\n")
        assert run_command([sys.executable, str(script)], project="ends", name=name) == code, name
    api = tracklet.Api(root)
    runs = {r.name: r for r in api.runs("ends")}
    for name, (_tail, code, state) in cases.items():
        for recorded in (runs[name], api.run(runs[name].path)):  # the store's row and the log's reader
            assert (recorded.state, recorded.exit_code, recorded.error) == (state, code, None), name


def test_a_correction_is_appended_only_to_an_intact_log_no_process_writes(start, tmp_path):
    import fcntl
    import json

    from tracklet.core.launchexit import correct_exits

    run = start(project="fix")
    run.log({"a": 1.0})
    run.finish()
    log = Path(run.dir) / "run.tlog"
    end = log.stat().st_size
    report = tmp_path / "exits"
    report.write_text("not json\n" + json.dumps({"log": str(log), "end": end, "exit_code": 0, "end_time": 1.5,
                                                  "runtime": 0.5}) + "\n")
    with open(log, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a process still writing it
        (problem,) = correct_exits(report, 3)
    assert "keeps exit code 0 though the command exited with 3" in problem and "being written" in problem
    assert log.stat().st_size == end
    assert correct_exits(report, 256) == []  # the same status as 0 (its low 8 bits): nothing to correct
    api = tracklet.Api(Path(run.dir).parents[3])
    assert [(r.state, r.exit_code) for r in api.runs("fix")] == [("finished", 0)]  # the store took the first exit
    online = {"server": "http://127.0.0.1:9", "root": str(Path(run.dir).parents[3]), "project": "fix",
              "run_id": run.id}
    report.write_text(json.dumps({"log": str(log), "end": end, "exit_code": 0, "end_time": 1.5, "runtime": 0.5,
                                  "online": online}) + "\n")
    corrected: list = []
    assert correct_exits(report, 3, corrected) == []
    assert [vars(found) for found in corrected] == [{**online, "root": Path(online["root"])}]  # its server is sent it
    for recorded in (api.run(run.path), *tracklet.Api(Path(run.dir).parents[3]).runs("fix")):  # log, store
        assert (recorded.state, recorded.exit_code, recorded.history()["a"]) == ("failed", 3, [1.0])
    with open(log, "ab") as torn:
        torn.write(b"\x07\x00")  # a torn frame after it: nothing is appended after that
    (problem,) = correct_exits(report, 4)
    assert "does not end with an intact frame" in problem
    other = tmp_path / "notes.txt"
    other.write_text("not a record log")
    report.write_text(json.dumps({"log": str(other), "end": 8, "exit_code": 0}) + "\n")
    (problem,) = correct_exits(report, 4)
    assert "not a tracklet record log" in problem and other.read_text() == "not a record log"


@pytest.mark.slow  # a server and a launched script (~7 s); the report's online run: the test above
def test_an_online_runs_correction_reaches_its_server(root, tmp_path, monkeypatch, servers, capfd):
    # The run's uploader sent its first exit (0) and stopped with the script: the launcher sends the
    # corrected one too, so the server and the data root agree.
    from tracklet.cli.launch import run_command

    server = servers(tmp_path / "server")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    for setting in ("CAPTURE_ENVIRONMENT", "SYSTEM_METRICS"):
        monkeypatch.setenv(f"TRACKLET_{setting}", "false")
    monkeypatch.setenv("TRACKLET_MODE", "online")
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    script = tmp_path / "main.py"
    script.write_text("print('training')\ndef main():\n    raise SystemExit(3)\nmain()\n")
    assert run_command([sys.executable, str(script)], project="online", name="ends") == 3
    for api in (tracklet.Api(root), tracklet.Api(base_url=server.url)):
        assert [(r.state, r.exit_code) for r in api.runs("online")] == [("failed", 3)]
    assert "not sent" not in capfd.readouterr().err
