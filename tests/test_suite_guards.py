"""The test suite's own guards: a hung test fails with its stacks and the session goes on; a process that
cannot exit after the last test ends with its stacks. Without them one hang holds CI to its limit, silently."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_a_hung_test_fails_with_its_stack_and_a_process_that_cannot_exit_ends(tmp_path):
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent("""
        import threading

        def test_waits_for_ever():
            threading.Event().wait()

        def test_leaves_a_thread_that_never_ends():
            def never_ending_worker():
                threading.Event().wait()
            threading.Thread(target=never_ending_worker).start()  # not a daemon: the exit waits for it
    """))
    env = {**os.environ, "PYTHONPATH": str(TESTS), "TRACKLET_TEST_EXIT_GRACE": "2"}
    # The repository's pytest settings (-c), its timeout shortened; the hang guard a plugin of its own.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "exitguard", "-p", "no:cacheprovider", "-o", "timeout=2", "-q", str(tmp_path / "test_hangs.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert "FAILED test_hangs.py::test_waits_for_ever - Failed: Timeout" in output, output
    assert "1 failed, 1 passed" in output, output  # the session went on past the hung test
    assert done.returncode != 0
    assert "never_ending_worker" in output, output  # the stack of what held the exit
