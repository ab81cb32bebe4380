"""Test servers forked from a pre-imported template instead of started cold.

CI is CPU-bound and the suite starts a few hundred `tracklet server` processes; a cold start spends
most of its ~2 s of CPU importing FastAPI, pydantic, SQLAlchemy, uvicorn and tracklet's server. One
template process per pytest process imports them once and waits on a Unix socket; each server is a
``fork()`` of it that sets its own environment, working directory, stderr file and open-file limit, then
runs the same command line ``python -m tracklet ...`` would. The forked process is the real server
(same code, same arguments); only the interpreter start and the imports are shared.

``run(args, env=, input=, timeout=)`` is ``subprocess.run([python, '-m', 'tracklet', *args],
capture_output=True, text=True)`` the same way, for the tests' CLI commands (a cold CLI start costs the
same imports: ~1-1.5 s of CPU each): the child's stdin, stdout and stderr are files the caller reads back.

``spawn(args, env=, stderr=, nofile=, cwd=)`` returns a ``ForkedProcess`` with the part of
``subprocess.Popen``'s interface the tests use (``pid``, ``poll``, ``wait``, ``send_signal``,
``terminate``, ``kill``, ``returncode``); the template is the parent, so it reaps the process and
reports its exit status.

Environment variables read when a module is imported can't reach a forked server (the template
imported the module before the test set them): a command line whose environment sets a
``TRACKLET_TEST_*`` variable is started cold instead (``serverproc.Server`` decides), and
``TRACKLET_TEST_FORK_SERVERS=0`` starts every server cold.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Imported by the template before it forks anything: what a `tracklet server` start imports.
PRELOAD = (
    "tracklet.cli.main", "uvicorn", "tracklet.server.app", "tracklet.server.automations_worker",
    "tracklet.server.connections", "tracklet.server.localaccess", "tracklet.store",
)

_template: _Template | None = None
_guard = threading.Lock()


class ForkedProcess:
    """A server forked by the template: ``subprocess.Popen``'s interface, as far as the tests use it."""

    def __init__(self, template: _Template, pid: int, args: list[str]) -> None:
        self._template = template
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._template.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.poll() is None:
            self._exited(timeout)
        while self.poll() is None:  # exited: until the template reaped it
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)  # waiting for the process to exit
        assert self.returncode is not None
        return self.returncode

    def _exited(self, timeout: float | None) -> None:
        """Block until the process ends or ``timeout`` passes, without asking the template: a pidfd
        becomes readable when the process exits (it is the template's child, not ours to wait for)."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:  # gone already
            return
        try:
            poller = select.poll()  # (select.select takes no descriptor past 1,023)
            poller.register(pidfd, select.POLLIN)
            poller.poll(None if timeout is None else timeout * 1000)
        finally:
            os.close(pidfd)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Template:
    """The client side of one template process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tracklet-server-template-"))
        self.path = str(self.dir / "socket")
        tests = str(Path(__file__).resolve().parent)
        code = (f"import sys; sys.path.insert(0, {tests!r}); import serverfork; "
                "args = serverfork.serve(sys.argv[1]); "
                "from tracklet.cli.main import main; main(args=args, prog_name='tracklet')")
        self.proc = subprocess.Popen([sys.executable, "-c", code, self.path], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server template did not start")
            time.sleep(0.02)  # readiness polling only

    def _ask(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = conn.makefile("rb").readline()
        if not reply:
            raise RuntimeError("the server template closed the connection")
        return json.loads(reply)

    def spawn(self, args: list[str], *, env: dict[str, str], stderr: str, nofile: int | None,
              stdin: str = os.devnull, stdout: str = os.devnull, cwd: str | None = None) -> int:
        return self._ask({"args": args, "env": env, "cwd": cwd or os.getcwd(), "stderr": stderr, "nofile": nofile,
                          "stdin": stdin, "stdout": stdout})["pid"]

    def status(self, pid: int) -> int | None:
        return self._ask({"status": pid})["code"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _running_template(env: dict[str, str]) -> _Template:
    global _template
    with _guard:
        if _template is None or _template.proc.poll() is not None:
            _template = _Template(env)
            atexit.register(_template.close)
        return _template


def spawn(args: list[str], *, env: dict[str, str], stderr: str, nofile: int | None = None,
          stdout: str = os.devnull, cwd: str | None = None) -> ForkedProcess:
    """Start ``python -m tracklet ARGS`` as a fork of this process's template (started on first use);
    ``stderr`` and ``stdout``: files it appends to; ``cwd``: its working directory (this process's if None)."""
    template = _running_template(env)
    return ForkedProcess(template, template.spawn(args, env=env, stderr=stderr, nofile=nofile, stdout=stdout,
                                                  cwd=cwd), args)


def run(args: list[str], *, env: dict[str, str], input: str | None = None, timeout: float = 120,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` forked from the template, run to its end: what ``subprocess.run`` with
    ``capture_output=True, text=True`` returns (``TimeoutExpired`` past ``timeout``, the child killed)."""
    template = _running_template(env)
    with tempfile.TemporaryDirectory(prefix="tracklet-cli-") as scratch:
        paths = {name: os.path.join(scratch, name) for name in ("stdin", "stdout", "stderr")}
        Path(paths["stdin"]).write_text(input or "")
        child = ForkedProcess(template, template.spawn(args, env=env, nofile=None, cwd=cwd, **paths), args)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        out, err = (Path(paths[name]).read_bytes().decode(errors="replace") for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess([sys.executable, "-m", "tracklet", *args], code, out, err)


# ---------------------------------------------------------------- the template process

def serve(path: str) -> list[str]:
    """The template's loop. Returns only in a forked child: the ``tracklet`` arguments it is to run."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    _warm_up()
    if threading.active_count() != 1:  # a fork would copy a thread's locks mid-use
        raise RuntimeError(f"the server template has threads after its imports: {threading.enumerate()}")
    parent = os.getppid()
    codes: dict[int, int] = {}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the client waits for the name: it appears once we listen
    listener.settimeout(1.0)
    while True:
        _reap(codes)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process is gone
                os._exit(0)
            continue
        with conn:
            conn.settimeout(None)
            request = json.loads(conn.makefile("rb").readline())
            if "status" in request:
                _reap(codes)
                # Told once (ForkedProcess keeps it): a pid comes back for a later child once reaped.
                conn.sendall(json.dumps({"code": codes.pop(request["status"], None)}).encode() + b"\n")
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _become(request)
                return request["args"]
            # The pid of an earlier child reaped and never asked about (its test gone): that code is
            # not this child's. (pid_max is 32,768 here: a CI run's forks wrap around it, and a
            # stale code made a CLI call "end" at once, its files read empty and then removed
            # under the child still starting.)
            codes.pop(pid, None)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _warm_up() -> None:
    """Build one throwaway app, so that what every server start would do again is done once here: the
    ~200 modules ``create_app`` imports lazily (routes, pydantic models, alembic and its migration
    scripts), about 0.5-1 s of CPU per forked server. Its stores are closed and its root removed before
    any fork; ``gc.freeze()`` then keeps the children's collections off the template's objects."""
    import gc

    from tracklet.server.app import create_app

    root = Path(tempfile.mkdtemp(prefix="tracklet-server-warm-up-"))
    try:
        app = create_app(root, index_on_start=False)
        app.state.tracklet.store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    gc.collect()
    gc.freeze()


def _reap(codes: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        codes[pid] = os.waitstatus_to_exitcode(status)


def _become(request: dict) -> None:
    """Make the forked child what ``subprocess.Popen(['python', '-m', 'tracklet', *args])`` would start."""
    stdin = os.open(request["stdin"], os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd, target in ((stdin, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    if request["nofile"]:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (request["nofile"], request["nofile"]))
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    tempfile.tempdir = None  # gettempdir() again from this process's TMPDIR
    sys.path.remove(str(Path(__file__).resolve().parent))
    sys.argv = [sys.argv[0], *request["args"]]
    signal.signal(signal.SIGINT, signal.default_int_handler)
