"""Shared fixtures: every test gets its own data root; runs are read back through the public Api."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracklet
from tracklet.core import lifecycle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gcsserver import ZB_HNS, gcs_emulator  # noqa: E402,F401  (the session fixture)
from s3server import s3rver  # noqa: E402,F401  (the session fixture)
from serverproc import Server  # noqa: E402
import cpureport  # noqa: E402
import forkprobe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# gcsfs's plain JSON-API filesystem wherever it is imported in the tests' processes (tests/gcsserver.py):
# the emulator doesn't speak the gRPC gcsfs's default asks each bucket with (60 s timeouts); and no
# probe of a GCE metadata server for credentials (google-auth reads it as it is imported).
os.environ[ZB_HNS] = "false"
os.environ["NO_GCE_CHECK"] = "true"
TESTS = Path(__file__).resolve().parent
pytest_plugins = ["exitguard", "fdreport"]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A fresh data root, also set as TRACKLET_DIR so subprocesses and the CLI find it."""
    data = tmp_path / "data"
    monkeypatch.setenv("TRACKLET_DIR", str(data))
    for name in [k for k in os.environ if k.startswith("TRACKLET_") and k != "TRACKLET_DIR"]:
        monkeypatch.delenv(name)
    # Tests read what the environment capture recorded, on a loaded machine: finish() waits for it
    # (the default, 0.1 s, is for users' short runs). Tests of that bound set capture_wait themselves.
    monkeypatch.setenv("TRACKLET_CAPTURE_WAIT", "60")
    return data


@pytest.fixture(autouse=True)
def _finish_leftover_runs():
    yield
    for run in lifecycle.active_runs():
        run.finish()
    lifecycle.set_current(None)


@pytest.fixture(autouse=True)
def _fresh_once_per_process_messages():
    """W&B's layer says some warnings once a process; each test is a fresh script, so each sees
    them again whichever test in its worker said them first."""
    yield
    messages = sys.modules.get("tracklet.compat.wandb._messages")
    if messages is not None:
        messages._warned.clear()  # type: ignore[attr-defined]
        messages._said.clear()  # type: ignore[attr-defined]


@pytest.fixture
def start(root):
    """Start a quiet run (no console or environment capture) under the test's data root."""

    def _start(**kwargs) -> tracklet.Run:
        settings = {**QUIET, **kwargs.pop("settings", {})}
        kwargs.setdefault("project", "test")
        return tracklet.init(dir=str(root), settings=settings, **kwargs)

    return _start


def wait_for_system_sample(run: tracklet.Run) -> None:
    """Until the run's system monitor has taken its first sample: a run that ends sooner records no
    system metrics (the monitor starts one interval, at most 1 s, after init; finish() never waits
    for it). Scripts run by run_script wait with the same loop."""
    import time

    deadline = time.monotonic() + 60
    while not run._monitor.sampled:
        assert time.monotonic() < deadline, "the system monitor never took its first sample"
        time.sleep(0.005)


def read(run: tracklet.Run) -> tracklet.RecordedRun:
    return tracklet.Api(Path(run.dir).parents[3]).run(run.path)


def run_script(code: str, *, env: dict | None = None, cwd: Path | None = None, check: bool = False,
               timeout: float = 60, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter that imports this checkout's tracklet (and, from this
    folder, ``forkprobe``), with ``args`` as its ``sys.argv[1:]``. One still running after
    ``timeout`` seconds fails the test with what it and the processes it started were doing (py-spy's
    dumps, faulthandler's stacks on SIGABRT) and what it had written."""
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}", "PYTHONFAULTHANDLER": "1", **(env or {})}
    command = [sys.executable, "-c", textwrap.dedent(code), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                          cwd=cwd) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = [process.pid, *forkprobe.descendants(process.pid)]
            explained = "".join(forkprobe.explain(pid) for pid in hung)
            for pid in hung:
                _signal_quietly(pid, signal.SIGABRT)  # faulthandler: each thread's Python stack on stderr
            try:
                stdout, stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                for pid in hung:
                    _signal_quietly(pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
            raise AssertionError(f"the script ran past {timeout} s:\n{explained}--- its stdout:\n{stdout}\n"
                                 f"--- its stderr:\n{stderr}") from None
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


def _signal_quietly(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:  # ended meanwhile
        pass


def killed_once_written(args: list[str], *, cwd: Path, ready: str,
                        written: Callable[[float], Any]) -> tuple[Any, int]:
    """Start ``python ARGS`` (this checkout's tracklet, a 1,200 s flush interval, so no tick comes),
    wait for its line ``ready``, then for ``written(deadline)`` (a poll of what reached disk, ``None``
    until then), SIGKILL it and return what ``written`` found and the process's pid."""
    child = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_FLUSH_INTERVAL": "1200"})
    try:
        assert child.stdout is not None and child.stdout.readline() == ready
        # waits until written (a bound for a stuck test, far below the tick; not a timing check)
        found = written(time.monotonic() + 60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(60)
    assert child.returncode == -signal.SIGKILL
    return found, child.pid


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster (tests/pgcluster.py), started for real once per session and
    removed after it. Yields the server URL without a database; `pg_url` gives each test a fresh
    database."""
    from pgcluster import Unavailable, postgres_cluster

    try:
        cluster = postgres_cluster()
        url = cluster.__enter__()
    except Unavailable as why:
        pytest.skip(str(why))
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield url
    finally:
        cluster.__exit__(None, None, None)


_databases = iter(range(1, 1_000_000))
# The databases pg_url and fresh_url made for the test running now (this process's): the next test's
# pg_url drops them before it makes its own (its servers are stopped by then; a connection a test left
# open is closed with them). Kept instead, a worker's few hundred (~10 MB each) were written to disk
# and took seconds to remove at the session's end.
_made: list[str] = []


@pytest.fixture
def pg_url(postgres_url):
    """A new, empty database in the session's PostgreSQL cluster."""
    from pgcluster import create_database

    name = f"t{next(_databases)}"
    url = create_database(postgres_url, name, drop=tuple(_made))
    _made[:] = [name]
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each store test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def fresh_url(store_url, request):
    """``fresh_url(root)``: a new, empty store of ``store_url``'s backend for data root ``root``
    (where a test compares with one pass over a whole log)."""
    def url(root: Path) -> str:
        if store_url.startswith("sqlite"):
            root.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{root / 'store.sqlite'}"
        from pgcluster import create_database
        name = f"t{next(_databases)}"
        _made.append(name)
        return create_database(request.getfixturevalue("postgres_url"), name)
    return url


class ServerSet:
    """``tracklet server`` processes started by one fixture (``servers``, ``module_servers``): started with
    ``set(**kwargs)``, stopped together, their stderr checked for unhandled exceptions."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[Server] = []
        self._checked: dict[Path, int] = {}  # each server's stderr: what check_new() read already

    def __call__(self, root: Path | None = None, **kwargs) -> Server:
        server = Server(root or self.base / f"server{len(self.started)}", **kwargs)
        self.started.append(server)
        return server.start()

    def check_new(self) -> None:
        """A request the server failed with an unhandled exception is a defect even when the client
        retried past it (a race in the sweep routes showed only as tracebacks on stderr): fail on one
        written since the last check."""
        for server in self.started:
            text = server.stderr_text()
            new, self._checked[server.log] = text[self._checked.get(server.log, 0):], len(text)
            assert "Exception in ASGI application" not in new, new[-6000:]

    def stop_using(self, store: str) -> None:
        """Stop the servers started on ``store`` (a database about to be dropped), checking their stderr."""
        for server in self.started:
            if server.store == store:
                server.stop()
        self.check_new()

    def close(self) -> None:
        for server in self.started:
            server.stop()
        self.check_new()
        for server in self.started:
            server.log.unlink(missing_ok=True)


@pytest.fixture
def servers(tmp_path):
    """Start servers with ``servers(**kwargs)``; every one is killed at teardown."""
    started = ServerSet(tmp_path)
    yield started
    started.close()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory):
    """``servers`` shared by a module's tests (a deployment they share: each test uses names of its own,
    so the tests stay independent in any order); each test's end checks their stderr for a crash."""
    started = ServerSet(tmp_path_factory.mktemp("servers"))
    _module_server_sets.append(started)
    yield started
    _module_server_sets.remove(started)
    started.close()


# The module_servers sets open now: module_store stops those on its database before it drops it (pytest
# finalizes module_store's PostgreSQL param before module_servers, which doesn't depend on it: the
# servers ran on, their connections killed by DROP ... WITH (FORCE), until the module's end).
_module_server_sets: list[ServerSet] = []


@pytest.fixture(autouse=True)
def _module_servers_crash_check(request):
    yield
    if "module_servers" in request.fixturenames:
        request.getfixturevalue("module_servers").check_new()


_module_databases = iter(range(1, 1_000_000))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store(request):
    """The ``--store`` of a module's shared server, on each backend: ``None`` (SQLite in the server's data
    root) or a PostgreSQL database of the module's own, dropped after its tests. Ask for it before
    ``module_servers``, so its servers stop before it is dropped."""
    if request.param == "sqlite":
        yield None
        return
    from pgcluster import create_database, drop_database

    cluster = request.getfixturevalue("postgres_url")
    name = f"m{next(_module_databases)}"
    url = create_database(cluster, name)
    yield url
    for server_set in _module_server_sets:
        server_set.stop_using(url)
    drop_database(cluster, name)


# Files whose tests train real frameworks, drive Chromium, start several servers or fuzz: marked
# `slow`, so `python -m pytest -m "not slow"` is a fast subset for the edit-test loop (README).
SLOW_FILES = frozenset({
    "test_autolog.py", "test_dashboard.py", "test_integration_huggingface.py", "test_integration_jax.py",
    "test_integration_keras.py", "test_integration_lightning.py", "test_server_connections.py",
    "test_server_deployment.py", "test_server_fuzz.py", "test_wandb_compat.py", "test_import_wandb.py",
    "test_hardening_attacks.py",
})


def pytest_configure(config):
    cpureport.register(config)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


def store_at_revision(url: str, revision: str) -> Any:
    """An engine on the store at ``url`` migrated up to ``revision`` only: what an older tracklet
    left, for a test of the migrations after it (``Store(url)`` then migrates to the head)."""
    from tracklet.store.engine import create_engine, migrate

    engine = create_engine(url)
    migrate(engine, revision)
    return engine

