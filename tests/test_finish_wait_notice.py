"""A Ctrl-C'd script whose run still stores media or tables: finish() (at exit) says what it is
waiting for and that a second Ctrl-C stops waiting, instead of a silent wait read as a hang; a
second Ctrl-C then ends the wait, and the run still ends. A real process gets real SIGINTs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import QUIET, REPO, TESTS

SCRIPT = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C's default (a background process of a
                                                          # non-interactive shell inherits SIGINT ignored)
import threading, time, tracklet
from tracklet.core.logged import LoggedObject

release = threading.Event()


class Slow(LoggedObject):
    \"\"\"Being stored until released (a table's first encoding importing pyarrow, a large image).\"\"\"

    def _record(self, context, where):
        print("STORING", flush=True)
        release.wait(120)  # a cap only: the test ends the wait with its second Ctrl-C
        return None


run = tracklet.init(project="p", id="slow", dir={root!r}, settings=tracklet.Settings(**{quiet!r}))
for step in range(300):  # more than the media queue holds (256): the rest are dropped, and reported
    run.log({{"loss": float(step), "picture": Slow()}})
while True:
    time.sleep(0.01)
"""


def test_ctrl_c_while_media_is_stored_says_what_finish_waits_for_and_a_second_stops_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(root=str(root), quiet=QUIET)], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(120, process.kill)  # a cap on a hang, not a timing assertion
    killer.start()
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().strip() == "STORING"
        process.send_signal(signal.SIGINT)  # the script's Ctrl-C: finish() at exit waits for the media
        seen = []
        for line in process.stderr:
            seen.append(line)
            if line.startswith("tracklet: finishing the run: waiting"):
                break
        notice = seen[-1] if seen else ""
        assert notice.startswith("tracklet: finishing the run: waiting"), "".join(seen)
        assert re.search(r"waiting up to \d+ s for \d+ media item\(s\) or table log\(s\) still being stored", notice), notice
        assert "press Ctrl-C again to stop waiting" in notice, notice
        process.send_signal(signal.SIGINT)  # the second: stop waiting
        rest = process.stderr.read()
        process.wait()
    finally:
        killer.cancel()
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGINT, "".join(seen) + rest
    assert "tracklet: interrupted: no longer waiting" in rest, rest
    assert "media or tables still being stored at finish were not recorded" in rest, rest
    # the drops are reported at finish though the wait was cut short (they were only at a whole wait)
    assert re.search(r"\d+ media item\(s\) were dropped because the media queue was full", rest), rest
    import tracklet

    recorded = tracklet.Api(root=str(root)).run("p/slow")
    assert recorded.state == "failed" and list(recorded.history()["loss"]) == [float(step) for step in range(300)]
