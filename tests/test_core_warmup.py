"""A warm-up's thread across ``fork`` (``core/warmup.py``): a DataLoader forking its workers while
the media encoders are imported must not hand them half-imported modules, and a fork before the
work began must leave the child able to do it. (Its exit join: tests/test_server_query_warm.py.)"""

from __future__ import annotations

import os

import pytest

from conftest import run_script

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="fork hooks (POSIX)")


def test_a_fork_waits_for_the_work_under_way_and_the_child_sees_it_done():
    # The script's own before-fork hook, registered after the warm-up's, runs first (before-fork
    # hooks run last registered first): it lets the work end only once the fork has begun.
    result = run_script("""
        import os, threading
        from tracklet.core.warmup import WarmUp

        gate = threading.Event()
        warm_up = WarmUp("test-warm", gate.wait, fork_wait=600, exit_wait=600)
        os.register_at_fork(before=gate.set)
        warm_up.start()
        warm_up.begun.wait()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if warm_up.done.is_set() and not warm_up.running() else 1)
        print("child saw the work done", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child saw the work done True"


def test_a_fork_during_the_delay_does_not_wait_and_the_child_can_do_the_work():
    result = run_script("""
        import os
        from tracklet.core.warmup import WarmUp

        did = []
        warm_up = WarmUp("test-warm", lambda: did.append(os.getpid()), fork_wait=600, exit_wait=0.1)
        warm_up.start(delay=600)
        pid = os.fork()  # the work has not begun: no wait (fork_wait would outlast the test)
        if pid == 0:
            warm_up.start()
            os._exit(0 if warm_up.done.wait(60) and did == [os.getpid()] else 1)
        print("child did the work", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "parent not yet", did == [])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child did the work True parent not yet True"


def test_the_works_failure_ends_it_quietly():
    """A broken install (an import that raises) ends the warm-up without a traceback: whoever
    needs what it makes imports again and reports the error."""
    result = run_script("""
        from tracklet.core.warmup import WarmUp

        def work():
            import tracklet_no_such_module  # noqa: F401

        warm_up = WarmUp("test-warm", work, fork_wait=5, exit_wait=5)
        warm_up.start()
        print("done", warm_up.done.wait(60))
    """)
    assert result.returncode == 0 and result.stdout.strip() == "done True", result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr



def test_a_process_exiting_during_the_delay_skips_the_work(tmp_path):
    """A server stopped within its warm-up's delay must not import the whole query stack on its
    way out: exit ends a warm-up still in its delay without beginning the work (it joined the
    thread, which then did the work)."""
    marker = tmp_path / "worked"
    result = run_script(f"""
        from pathlib import Path
        from tracklet.core.warmup import WarmUp

        warm_up = WarmUp("test-warm", lambda: Path({str(marker)!r}).write_text("yes"), fork_wait=5, exit_wait=600)
        warm_up.start(delay=0.5)
        print("exiting")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "exiting", result.stdout + result.stderr
    assert not marker.exists()

