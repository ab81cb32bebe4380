"""A ``tracklet server`` moves its start-up objects out of Python's full garbage collections once its
warm-ups are done (``server/heap.py``): a full collection during an upload then walks what was made
since, not the ~200,000 objects of its modules and routes (it held the interpreter's lock ~0.1 s
each). Objects made later are still collected; an app made without ``freeze_heap`` (a test, a
program making several apps) freezes nothing.

Each check runs in a fresh interpreter: freezing is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_the_server_freezes_its_warm_heap_and_still_collects_later_garbage(tmp_path: Path):
    result = _run(f"""
        import gc, sys, time, weakref
        from fastapi.testclient import TestClient
        from tracklet.server import query_warm
        from tracklet.server.app import create_app

        app = create_app({str(tmp_path / "server")!r}, auth=False, freeze_heap=True)
        with TestClient(app) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not gc.get_freeze_count():
                time.sleep(0.05)
            print("warm before the freeze", query_warm.WARM_UP.done.is_set(), "duckdb" in sys.modules)
            print("frozen", gc.get_freeze_count() > 50_000)
            print("walked by a full collection", len(gc.get_objects()) * 4 < gc.get_freeze_count())
            assert client.get("/api/v1/health").status_code == 200

            class Node:
                pass

            node = Node()
            node.self = node  # a cycle: only the collector frees it
            alive = weakref.ref(node)
            del node
            gc.collect()
            print("later cycle collected", alive() is None)
    """)
    assert result.returncode == 0, result.stderr
    assert "warm before the freeze True True" in result.stdout
    assert "frozen True" in result.stdout
    assert "walked by a full collection True" in result.stdout
    assert "later cycle collected True" in result.stdout


def test_an_app_made_without_freeze_heap_freezes_nothing(tmp_path: Path):
    result = _run(f"""
        import gc, threading, time
        from fastapi.testclient import TestClient
        from tracklet.server import query_warm
        from tracklet.server.app import create_app

        app = create_app({str(tmp_path / "server")!r}, auth=False)
        with TestClient(app) as client:
            assert client.get("/api/v1/health").status_code == 200
            assert query_warm.WARM_UP.done.wait(120)
            deadline = time.monotonic() + 120  # the routes readied too: when a freeze would begin
            while time.monotonic() < deadline and not app.router.middleware_stack._groups:
                time.sleep(0.05)
            for thread in threading.enumerate():
                if thread.name == "tracklet-heap-freeze":
                    thread.join(120)
            print("frozen", gc.get_freeze_count())
    """)
    assert result.returncode == 0, result.stderr
    assert "frozen 0" in result.stdout


def test_the_tracklet_server_command_freezes_its_heap(tmp_path: Path):
    """``tracklet server`` itself (cli/serve.py) asks for the freeze: its own process, started as a
    user starts it (not forked from the tests' pre-frozen template), reports a frozen heap once
    it answers and the freeze thread is done. On stdin's first line the process reports
    ``gc.get_freeze_count()``; nothing is added to the server for the check."""
    from serverproc import Server

    server = Server(tmp_path / "server")
    watcher = textwrap.dedent("""
        import gc, sys, threading

        def report():
            sys.stdin.readline()
            for thread in threading.enumerate():
                if thread.name == "tracklet-heap-freeze":
                    thread.join(120)
            print("frozen", gc.get_freeze_count(), flush=True)

        threading.Thread(target=report, daemon=True).start()
        from tracklet.cli.main import main
        main(args=sys.argv[1:], prog_name="tracklet")
    """)
    proc = subprocess.Popen([sys.executable, "-c", watcher, *server.args[3:]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    server.proc = proc
    try:
        server.wait_ready()  # answering: its app has started, so a freeze thread exists if asked for
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("report\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        assert line[0] == "frozen" and int(line[1]) > 50_000, line
    finally:
        proc.kill()
        proc.wait(timeout=30)
