"""A real `tracklet server` process for tests (the ``servers`` fixture in conftest.py starts them).

``Server(root, dev=True)`` starts ``--dev`` (loopback, no keys); ``dev=False`` needs API keys
(``admin_key`` is an admin user's key, created with ``tracklet server users create`` before start).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import serverfork

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# TRACKLET_TEST_* variables that are not hooks read by the server's modules (cpureport.py's is pytest's).
_NOT_HOOKS = frozenset({"TRACKLET_TEST_FORK_SERVERS", "TRACKLET_TEST_CPU_REPORT"})


def _forkable(env: dict[str, str]) -> bool:
    """Fork the server from the pre-imported template (tests/serverfork.py) unless a test hook read at
    import time is set, or forking is turned off."""
    if env.get("TRACKLET_TEST_FORK_SERVERS", "1") == "0":
        return False
    return not any(name.startswith("TRACKLET_TEST_") and name not in _NOT_HOOKS for name in env)


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120,
        cwd: Path | None = None, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` run to its end, output captured as text (``subprocess.run``'s result),
    with this checkout's tracklet and ``env`` over this process's environment less the variables named in
    ``unset``; forked from the server template (tests/serverfork.py) under the same rule as a server."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    if _forkable(full_env):
        return serverfork.run(list(args), env=full_env, input=input, timeout=timeout,
                              cwd=None if cwd is None else str(cwd))
    return subprocess.run([sys.executable, "-m", "tracklet", *args], env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False, input=input, cwd=cwd)


def with_file_limit(nofile: int | None, command: list[str]) -> list[str]:
    """``command`` run with ``nofile`` as its open-file limit (soft and hard: ``ulimit -n``), by the shell
    it is exec'd from: a ``preexec_fn`` would run Python in the forked child of this threaded process,
    where a finalizer or at-fork hook can wait for ever on a lock another thread held (docs/sweeps.md)."""
    if not nofile:
        return command
    return ["/bin/sh", "-c", 'ulimit -n "$0" && exec "$@"', str(nofile), *command]


class CliProcess:
    """``python -m tracklet ARGS`` left running (``cli_process``): ``subprocess.Popen``'s interface as far as
    the tests use it, its output in files (``communicate`` reads them back as text). A context manager:
    leaving it kills a process still running and removes the files."""

    def __init__(self, proc: subprocess.Popen | serverfork.ForkedProcess, scratch: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._scratch = scratch
        self.stdout_path, self.stderr_path = scratch / "stdout", scratch / "stderr"

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.proc.terminate()

    def kill(self) -> None:
        self.proc.kill()

    def first_line(self, timeout: float = 180) -> str:
        """The first line it printed to stdout, newline included: what ``stdout.readline()`` on a pipe returns
        (what it wrote without a newline if it exited first, "" if nothing). Polls the output file until the
        line is there: a readiness limit (cold imports on a loaded machine), not a timing check."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            text = self.output()[0]
            if "\n" in text or exited:
                return text.split("\n", 1)[0] + "\n" if "\n" in text else text
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.proc.args, timeout, output=text)
            time.sleep(0.02)  # readiness polling only

    def wait_for(self, pattern: str, timeout: float = 180) -> tuple[re.Match[str], str]:
        """The first match of ``pattern`` in what it printed to stdout, and that output so far: polled for
        until printed (a readiness limit, not a timing check); ``AssertionError`` with its output if it
        exits first."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            out, err = self.output()
            if found := re.search(pattern, out):
                return found, out
            assert not exited, f"exited before printing {pattern!r}: {out}{err}"
            assert time.monotonic() < deadline, f"printed no {pattern!r} in {timeout} s: {out}{err}"
            time.sleep(0.02)  # readiness polling only

    def output(self) -> tuple[str, str]:
        """What it wrote to stdout and stderr so far ("" before a forked child opened its files)."""
        return tuple(path.read_bytes().decode(errors="replace") if path.exists() else ""
                     for path in (self.stdout_path, self.stderr_path))

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for it to end (``TimeoutExpired`` past ``timeout``, as Popen's), then its stdout and stderr."""
        self.proc.wait(timeout)
        return self.output()

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill it if it still runs; remove its output files."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)
        for path in (self.stdout_path, self.stderr_path):
            path.unlink(missing_ok=True)
        self._scratch.rmdir()


def cli_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                nofile: int | None = None) -> CliProcess:
    """``python -m tracklet ARGS`` started and left running (``cli``'s environment, forked from the server
    template under the same rule): for a test that does something while the command runs. ``nofile``: its
    open-file limit (soft and hard), as a small ``ulimit -n``."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    scratch = Path(tempfile.mkdtemp(prefix="tracklet-cli-"))
    out, err = scratch / "stdout", scratch / "stderr"
    proc: subprocess.Popen | serverfork.ForkedProcess
    if _forkable(full_env):
        proc = serverfork.spawn(list(args), env=full_env, stdout=str(out), stderr=str(err), nofile=nofile,
                                cwd=None if cwd is None else str(cwd))
    else:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(with_file_limit(nofile, [sys.executable, "-m", "tracklet", *args]), env=full_env,
                                    stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=cwd)
    return CliProcess(proc, scratch)


class Server:
    """A `tracklet server` subprocess on a free loopback port."""

    def __init__(self, root: Path, *, store: str | None = None, extra: tuple[str, ...] = (), dev: bool = True,
                 nofile: int | None = None) -> None:
        """``nofile``: the process's open-file limit (soft and hard), as a small ``ulimit -n``."""
        self.root = root
        self.nofile = nofile
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = store
        self.dev = dev
        self.args = [sys.executable, "-m", "tracklet", "server", "--dir", str(root), "--port", str(self.port),
                     *(["--store", store] if store else []), *(["--dev"] if dev else []), *extra]
        self.proc: subprocess.Popen | serverfork.ForkedProcess | None = None
        # Outside the test's tmp_path (tests list what a server wrote there); the servers fixture
        # removes it once the test passed its check.
        logs = Path(tempfile.gettempdir()) / "tracklet-test-servers"
        logs.mkdir(exist_ok=True)
        self.log = logs / f"{os.getpid()}-{self.port}-{time.monotonic_ns()}.stderr"

    # stderr goes to a file, never to a pipe nobody reads: a server that wrote 64 KiB of warnings
    # (64 agents retrying through a restart) blocked on the full pipe and stopped answering.
    def stderr_text(self) -> str:
        """Everything the server printed to stderr so far (all its starts)."""
        try:
            return self.log.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        limit = self.nofile

        if _forkable(env):
            self.proc = serverfork.spawn(self.args[3:], env=env, stderr=str(self.log), nofile=limit)
            return
        with self.log.open("ab") as stderr:
            self.proc = subprocess.Popen(with_file_limit(limit, self.args), env=env, stdout=subprocess.DEVNULL,
                                         stderr=stderr)

    # A server that exits fails at once; one that is only slow to start (imports under a load of
    # 15+ on 2 cores took over 30 s) is waited for: a readiness limit, not a performance check.
    def start(self, timeout: float = 180.0) -> Server:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr_text()}")
            if self._healthy():
                return
            time.sleep(0.05)  # readiness polling only
        raise RuntimeError("server did not answer in time")

    def _healthy(self) -> bool:
        """Whether /api/v1/health answers 200. The standard library's client: each ``httpx.get`` builds
        an SSL context (~35 ms of CPU), paid on every poll of every server start."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/api/v1/health")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def stop_checked(self) -> None:
        """``stop``, then fail if any request raised in the server (its log names the exception);
        the log is removed once it passed."""
        self.stop()
        assert "Exception in ASGI application" not in self.stderr_text(), self.stderr_text()[-6000:]
        self.log.unlink(missing_ok=True)


class TreeServer(Server):
    """A ``tracklet server --dev`` subprocess running the code of another source tree (``tree``):
    what the benchmarks' A/B rounds compare against."""

    def __init__(self, root: Path, tree: Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.tree = tree

    def spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        with self.log.open("ab") as stderr:
            self.proc = subprocess.Popen(self.args, env=env, cwd=str(self.tree), stdout=subprocess.DEVNULL,
                                         stderr=stderr)


def settled_rss(process: Any) -> int:
    """The server's RSS once its background warm-up (server/query_warm.py: duckdb and pyarrow
    imported shortly after start) has loaded DuckDB and the RSS has settled, so what the test
    measures is the request's growth, not the warm-up's."""
    import importlib.util

    deadline = time.monotonic() + 120
    if importlib.util.find_spec("duckdb") is not None:
        while not any("duckdb" in m.path for m in process.memory_maps()):
            assert time.monotonic() < deadline, "the server never loaded duckdb"
            time.sleep(0.1)
    rss = process.memory_info().rss
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = process.memory_info().rss
        if abs(now - rss) < 1 << 20:
            return now
        rss = now
    return rss


def keyed_deployment(servers: Any, root_dir: Path, store: str | None, users: Any) -> tuple[Server, Any, dict[str, str]]:
    """A server that needs keys (``servers``: the fixture), with the admin ``root`` made by
    ``tracklet admin create-user`` before it starts and a user per name in ``users``: the server,
    an ``httpx.Client`` on its ``/api/v1`` with root's key (the caller closes it) and each user's key
    (``keys["root"]`` too)."""
    import httpx

    created = cli("admin", "--dir", str(root_dir), *(["--store", store] if store else []), "create-user", "root",
                  "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(root_dir, store=store, dev=False)
    key = created.stdout.strip()
    root = httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    keys = {name: root.post("/users", json={"name": name}).json()["key"] for name in users}
    return server, root, {**keys, "root": key}
