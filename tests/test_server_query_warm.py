"""The server warms the table query stack once it has started (``server/query_warm.py``): a user's
first table request after ``tracklet ui`` or ``tracklet server`` starts does not import duckdb and
pyarrow itself (~0.3 s of CPU), and a server without them still starts and answers. Its routes'
state, which FastAPI readies on the first request (~0.3 s of CPU), is ready before any request
too (``dispatch.prepare``).

Each check runs in a fresh interpreter: in the test process these modules are imported already."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklet

from conftest import REPO

HEAVY = ("duckdb", "pyarrow", "pyarrow.parquet")


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_the_first_table_request_after_start_finds_the_query_stack_imported(start, root: Path):
    run = start(project="warm")
    run.log({"preds": tracklet.Table(columns=["id", "score"], data=[[i, i / 10] for i in range(10)])})
    run.finish()
    result = _run(f"""
        import sys, time
        from fastapi.testclient import TestClient
        from tracklet.server.app import create_app

        heavy = {HEAVY!r}
        app = create_app({str(root)!r}, auth=False)
        assert not [name for name in heavy if name in sys.modules], "imported before the server started"
        imported = []

        class Recorder:  # a finder that only records: every import of a module not loaded yet comes here
            def find_spec(self, name, path=None, target=None):
                imported.append(name)
                return None

        with TestClient(app) as client:
            stack = app.router.middleware_stack  # dispatch.GroupDispatch: its groups built on the first request
            deadline = time.monotonic() + 120  # no request at all: the server does both on its own
            while time.monotonic() < deadline and not (all(name in sys.modules for name in heavy) and stack._groups):
                time.sleep(0.05)
            print("loaded", [name for name in heavy if name in sys.modules], "routes ready", bool(stack._groups))
            assert client.get("/api/v1/health").status_code == 200
            from tracklet.server import query_warm
            assert query_warm.WARM_UP.done.wait(120)
            sys.meta_path.insert(0, Recorder())
            page = client.get("/api/v1/runs/{run.path}/tables/preds", params={{"filter": "score > 0.45", "sort": "score"}})
            assert page.status_code == 200, page.text
            print("rows", page.json()["rows"])
            print("request imported", sorted({{name.split(".")[0] for name in imported}} & {{"duckdb", "pyarrow"}}))
    """)
    assert result.returncode == 0, result.stderr
    assert f"loaded {list(HEAVY)!r} routes ready True" in result.stdout
    assert "rows [[5, 0.5], [6, 0.6], [7, 0.7], [8, 0.8], [9, 0.9]]" in result.stdout
    assert "request imported []" in result.stdout


def test_a_server_without_duckdb_starts_answers_and_its_warm_up_ends_quietly(root: Path):
    result = _run(f"""
        import sys
        sys.modules["duckdb"] = None  # as if it were not installed: importing it raises ImportError
        from fastapi.testclient import TestClient
        from tracklet.server import query_warm
        from tracklet.server.app import create_app

        with TestClient(create_app({str(root)!r}, auth=False)) as client:
            print("health", client.get("/api/v1/health").status_code)
            print("warm-up ended", query_warm.WARM_UP.done.wait(120))
            print("health again", client.get("/api/v1/health").status_code)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["health 200", "warm-up ended True", "health again 200"]
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, result.stderr


@pytest.mark.parametrize("module, start", [("tracklet.server.query_warm", "start(0)"), ("tracklet.media.warm", "start()")])
def test_a_process_exiting_while_a_warm_up_imports_waits_for_it(module: str, start: str):
    """Interpreter exit waits for a warm-up still importing: Python ends a daemon thread still
    running at exit with a forced unwind, and DuckDB's and pyarrow's C++ import code caught it and
    aborted the process ("terminate called after throwing an instance of ''"; seen on a server
    stopped a second after its start). The check runs after the warm-up's own exit hook (hooks run
    last registered first), and the process exits as soon as the warm-up has started."""
    result = _run(f"""
        import atexit, importlib
        state = {{}}
        atexit.register(lambda: print("done at exit", state["warm"].WARM_UP.done.is_set(),
                                      "thread alive", state["warm"].WARM_UP.running(), flush=True))
        state["warm"] = warm = importlib.import_module({module!r})
        warm.{start}
    """)
    assert result.returncode == 0, result.stderr
    assert "done at exit True thread alive False" in result.stdout, result.stdout + result.stderr


def test_a_process_exiting_as_the_warm_up_ends_waits_for_what_it_made_to_be_destroyed():
    """The warm-up's DuckDB cursor is destroyed as its function returns, after it said it was done
    (``DONE``); exit must wait for that too: a server exiting in that window aborted ("terminate
    called after throwing an instance of ''", CI). Here the cursor's teardown takes 0.5 s."""
    result = _run("""
        import atexit, sys, time
        # Registered before query_warm's own exit hook, so it runs after it (last registered first).
        atexit.register(lambda: print("at exit: thread alive",
                                      sys.modules["tracklet.server.query_warm"].WARM_UP.running(), flush=True))
        from tracklet.media import query
        from tracklet.server import query_warm

        real = query._cursor

        class SlowToDestroy:
            def __init__(self, cursor):
                self.cursor = cursor

            def sql(self, text):
                return self.cursor.sql(text)

            def close(self):
                self.cursor.close()

            def __del__(self):
                time.sleep(0.5)
                print("cursor destroyed", flush=True)

        query._cursor = lambda: SlowToDestroy(real())
        query_warm.start(0)
        query_warm.WARM_UP.done.wait(120)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["cursor destroyed", "at exit: thread alive False"], result.stdout
