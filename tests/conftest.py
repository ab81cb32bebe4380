"""Shared fixtures: every test gets its own data root; runs are read back through the public Api."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklet
from tracklet.core import lifecycle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3server import s3rver  # noqa: E402,F401  (the session fixture)
from serverproc import Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A fresh data root, also set as TRACKLET_DIR so subprocesses and the CLI find it."""
    data = tmp_path / "data"
    monkeypatch.setenv("TRACKLET_DIR", str(data))
    for name in [k for k in os.environ if k.startswith("TRACKLET_") and k != "TRACKLET_DIR"]:
        monkeypatch.delenv(name)
    # Runs the tests record (in subprocesses too) wait for their whole environment capture: on a
    # loaded CI machine git and the package scan can take longer than finish()'s default bound, and
    # a test of what was captured must not depend on the load. Tests of the bound set capture_wait.
    monkeypatch.setenv("TRACKLET_CAPTURE_WAIT", "120")
    return data


@pytest.fixture(autouse=True)
def _finish_leftover_runs():
    yield
    for run in lifecycle.active_runs():
        run.finish()
    lifecycle.set_current(None)


@pytest.fixture
def start(root):
    """Start a quiet run (no console or environment capture) under the test's data root."""

    def _start(**kwargs) -> tracklet.Run:
        settings = {**QUIET, **kwargs.pop("settings", {})}
        kwargs.setdefault("project", "test")
        return tracklet.init(dir=str(root), settings=settings, **kwargs)

    return _start


def read(run: tracklet.Run) -> tracklet.RecordedRun:
    return tracklet.Api(Path(run.dir).parents[3]).run(run.path)


def run_script(code: str, *, env: dict | None = None, cwd: Path | None = None, check: bool = False,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter that imports this checkout's tracklet."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        check=check,
        timeout=timeout,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster (Debian's postgresql package: trust auth, fsync off, C
    locale) on a free loopback port, started for real once per session and removed after it.
    Yields the server URL without a database; `pg_url` gives each test a fresh database."""
    import pwd
    import shutil
    import subprocess
    import tempfile

    initdb = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = initdb.parent
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp dir: that is private to root, and the server runs as user postgres.
    base = Path(tempfile.mkdtemp(prefix="tracklet-pg-"))
    data, log = base / "data", base / "server.log"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=60)

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
           "--locale=C", "--no-sync")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
           f"-c listen_addresses=127.0.0.1 -c port={port} -c fsync=off -c unix_socket_directories={base}",
           "start")
    except subprocess.CalledProcessError as error:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {error.stderr}\n{server_log}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        try:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(postgres_url):
    """A new, empty database in the session's PostgreSQL cluster."""
    import sqlalchemy as sa

    name = f"t{next(_databases)}"
    admin = sa.create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{postgres_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each store test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def servers(tmp_path):
    """Start servers with ``servers(**kwargs)``; every one is killed at teardown."""
    started: list[Server] = []

    def _start(root: Path | None = None, **kwargs) -> Server:
        server = Server(root or tmp_path / f"server{len(started)}", **kwargs)
        started.append(server)
        return server.start()

    yield _start
    for server in started:
        server.stop()


# Files whose tests train real frameworks, drive Chromium, start several servers or fuzz: marked
# `slow`, so `python -m pytest -m "not slow"` is a fast subset for the edit-test loop (README).
SLOW_FILES = frozenset({
    "test_autolog.py", "test_dashboard.py", "test_integration_huggingface.py", "test_integration_jax.py",
    "test_integration_keras.py", "test_integration_lightning.py", "test_server_connections.py",
    "test_server_deployment.py", "test_server_fuzz.py", "test_wandb_compat.py", "test_import_wandb.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
