"""A large artifact logged by a script that then ends (or is ended by Ctrl-C) without ``finish()``.

The run is finished by ``atexit``, after threading's exit hooks: ``concurrent.futures`` then takes
no new work, and a process that had not imported it (no torch, Lightning or pandas) can't import
it at all ("can't register atexit after shutdown"). A file of 64 MiB or more is stored as chunks,
with thread pools (hashing, pack writes, uploads): that version was lost. Each test runs a real
script on a real 70 MiB file, offline and online against a real server process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUIET, REPO, run_script
from serverproc import cli

import tracklet
from tracklet.core.pools import Pool, parallel_map
from tracklet.errors import ArtifactNotFound

MiB = 1 << 20

# No torch, pandas or Lightning: nothing imports concurrent.futures before the script ends.
_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import tracklet

    path, settings = sys.argv[1], eval(sys.argv[2])
    run = tracklet.init(project="exit", name="ends", settings=settings)
    run.log_artifact(path, name="weights", type="model")
    print("logged", flush=True)
    if sys.argv[3] == "wait-for-ctrl-c":
        while True:  # short sleeps: see the comment after _SCRIPT
            time.sleep(0.05)
    """
)

# A script waiting for the test's Ctrl-C waits in short sleeps, as a training loop runs steps, never
# in one long ``time.sleep``: CPython misses a SIGINT that arrives after its last check for signals
# and before the sleep's system call (the handler's flag is set; the call, not interrupted, runs to
# its end). Measured on this 2-core machine under load: a bare script (3 busy threads, all blocking
# signals, no tracklet) sent SIGINT as soon as it printed slept on through 1 Ctrl-C in 250, which is
# how the online Ctrl-C test here timed out at 300 s in CI. A short sleep sees the flag at the next
# one.


def _end(tmp_path: Path, env: dict[str, str], *, settings: dict | None = None, ctrl_c: bool = False,
         size: int = 70 * MiB) -> tuple[subprocess.CompletedProcess, Path]:
    """Write a random file of ``size`` bytes and run ``_SCRIPT`` on it to its end (with ``ctrl_c``:
    SIGINT as soon as it has logged the file)."""
    path = tmp_path / "weights.bin"
    with open(path, "wb") as handle:
        for _ in range(size // MiB):
            handle.write(os.urandom(MiB))
    args = [sys.executable, "-c", _SCRIPT, str(path), repr({**QUIET, **(settings or {})}),
            "wait-for-ctrl-c" if ctrl_c else "end"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1", **env}
    child = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if ctrl_c:
        assert child.stdout.readline() == "logged\n"
        child.send_signal(signal.SIGINT)
    try:
        out, err = child.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # what each of its threads was doing (faulthandler's dump on SIGABRT)
        child.send_signal(signal.SIGABRT)
        out, err = child.communicate(timeout=60)
        pytest.fail(f"the script did not end within 300 s; its threads, then stderr:\n{err}\nstdout:\n{out}")
    return subprocess.CompletedProcess(args, child.returncode, out, err), path


def _complete(version: tracklet.Artifact, source: Path, tmp_path: Path) -> None:
    """The version's files download, match its manifest (``verify``) and are the logged bytes."""
    target = Path(version.download(tmp_path / "back"))
    version.verify(target)
    assert (target / source.name).read_bytes() == source.read_bytes()


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["ends", "ctrl-c"])
def test_a_large_file_logged_last_offline_is_stored_whole_at_exit(tmp_path, ctrl_c):
    root = tmp_path / "root"
    done, source = _end(tmp_path, {"TRACKLET_DIR": str(root), "TRACKLET_MODE": "offline"}, ctrl_c=ctrl_c)
    assert done.returncode == (-signal.SIGINT if ctrl_c else 0), done.stderr
    assert "could not be stored" not in done.stderr and "still being stored" not in done.stderr, done.stderr
    version = tracklet.Api(root).artifact("exit/weights:latest")
    assert version.version == "v0" and version.logged_by() is not None
    assert version.manifest.entries["weights.bin"].digest.startswith("blake3:")  # stored as chunks
    _complete(version, source, tmp_path)


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["ends", "ctrl-c"])
def test_a_large_file_logged_last_online_reaches_the_server_at_exit(servers, tmp_path, monkeypatch, ctrl_c):
    server = servers(tmp_path / "server")
    env = {"TRACKLET_DIR": str(tmp_path / "writer"), "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": server.url}
    done, source = _end(tmp_path, env, ctrl_c=ctrl_c)
    assert done.returncode == (-signal.SIGINT if ctrl_c else 0), done.stderr
    assert "failed" not in done.stderr and "still being stored" not in done.stderr, done.stderr
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        version = api.artifact("exit/weights:latest")
        assert version.version == "v0"
        _complete(version, source, tmp_path)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_what_finish_timeout_left_at_exit_is_named_and_nothing_half_written_is_visible(servers, tmp_path, mode):
    """A ``finish_timeout`` too short for the version: exit says which artifact it left and what
    to do; the version is whole or absent, locally and on the server, and ``tracklet sync`` sends
    a version committed locally."""
    server = servers(tmp_path / "server")
    writer = tmp_path / "writer"
    env = {"TRACKLET_DIR": str(writer), "TRACKLET_MODE": mode, "TRACKLET_BASE_URL": server.url}
    done, source = _end(tmp_path, env, settings={"finish_timeout": 0.01}, size=200 * MiB)
    assert done.returncode == 0, done.stderr
    assert "artifacts still being stored at finish (after finish_timeout, 0.01 s)" in done.stderr, done.stderr
    assert ("tracklet sync" in done.stderr) == (mode == "online"), done.stderr
    # named: not stored (so not kept), or stored locally and not uploaded (what `tracklet sync` sends)
    assert ("\n  'weights' (model) is not stored" in done.stderr
            or "\n  exit/weights:v0 is stored locally" in done.stderr), done.stderr
    try:
        local = tracklet.Api(writer).artifact("exit/weights:latest")
    except ArtifactNotFound:
        local = None
    else:
        _complete(local, source, tmp_path / "local")
    synced = cli("--dir", str(writer), "sync", "--all", "--url", server.url, "--quiet")
    assert synced.returncode == 0, synced.stderr
    with tracklet.Api(base_url=server.url) as api:
        if local is None:
            with pytest.raises(ArtifactNotFound):
                api.artifact("exit/weights:latest")
        else:
            _complete(api.artifact("exit/weights:latest"), source, tmp_path / "remote")


_POOLS_AT_EXIT = textwrap.dedent(
    """
    import atexit, sys, threading
    from tracklet.core.pools import Pool, parallel_map

    early = Pool(2, "early") if sys.argv[1] == "imported" else None
    if early is None:
        assert "concurrent.futures.thread" not in sys.modules

    def at_exit():
        if early is not None:  # made and used before exit: its threads were stopped by the exit hook
            early.submit(lambda: print("early pool:", threading.current_thread().name)).result()
        late = Pool(2, "late")
        names = parallel_map(lambda _: threading.current_thread().name, [1, 2, 3], 3, "x")
        failing = late.submit(lambda: 1 / 0)
        print("late pool:", late.inline, names, type(failing.exception()).__name__, flush=True)

    if early is not None:
        early.submit(print, "pool before exit").result()
    atexit.register(at_exit)
    """
)


@pytest.mark.parametrize("before", ["imported", "never"])
def test_a_pool_runs_its_jobs_on_the_calling_thread_at_interpreter_exit(before):
    """Whether ``concurrent.futures`` was imported (and its pools stopped by its exit hook) or
    can't be imported any more, a ``Pool`` at ``atexit`` does every job, on the calling thread."""
    done = subprocess.run([sys.executable, "-c", _POOLS_AT_EXIT, before], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ("early pool: MainThread" in done.stdout) == (before == "imported"), done.stdout
    assert "late pool: True ['MainThread', 'MainThread', 'MainThread'] ZeroDivisionError" in done.stdout


def test_a_pool_uses_its_threads_while_the_interpreter_runs():
    with Pool(2, "tracklet-test") as pool:
        assert not pool.inline
        assert pool.submit(lambda: threading.current_thread().name).result().startswith("tracklet-test")
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)
    assert parallel_map(lambda x: x * 2, [1, 2, 3], 2, "tracklet-test") == [2, 4, 6]


_FORKING_SCRIPT = textwrap.dedent(
    """
    import concurrent.futures.thread  # as torch, pandas and Lightning import it: the exit drain is registered
    import multiprocessing, os, sys
    import tracklet

    run = tracklet.init(project="exit", name="forks", settings={"finish_timeout": 600, "console": "off",
                                                                 "system_metrics": False})
    version = run.log_artifact(sys.argv[1], name="weights", type="model")
    child = multiprocessing.get_context("fork").Process(target=int)  # a DataLoader worker's way
    child.start()
    pending = version.state == "pending"
    child.join(120)
    print("pending at fork:", pending, "child exit code:", child.exitcode, flush=True)
    run.finish()
    """)


def test_a_forked_child_exits_at_once_while_the_parents_artifact_is_still_stored(tmp_path):
    """A child forked (multiprocessing, a DataLoader's workers) while the parent stores a version
    inherits the exit hook that waits for it, but no thread that stores it: it must not wait."""
    source = tmp_path / "weights.bin"
    with source.open("wb") as out:
        for _ in range(160):
            out.write(os.urandom(MiB))
    env = {**os.environ, "TRACKLET_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _FORKING_SCRIPT, str(source)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    if "pending at fork: True" not in done.stdout:
        pytest.skip("the version was stored before the fork: nothing to wait for")
    assert "child exit code: 0" in done.stdout, done.stdout  # None: still waiting 120 s later


_SILENT_SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import tracklet

    run = tracklet.init(project="exit", name="ends", settings=eval(sys.argv[2]))
    for step in range(300):
        run.log({"loss": 1.0 / (step + 1)})
    run.log_artifact(sys.argv[1], name="weights", type="model")
    print("logged", flush=True)
    while True:  # short sleeps: see the comment after _SCRIPT
        time.sleep(0.05)
    """
)


@contextlib.contextmanager
def _hung_server() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers (the kernel completes the
    handshakes; nothing reads): an online run's uploads wait on it until their timeouts."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        yield f"http://127.0.0.1:{hung.getsockname()[1]}"
    finally:
        hung.close()


# finish() of an online run whose last version a hung server never takes, sent signal argv[2] by a
# timer while it waits (SIGTERM: a handler that exits, as a sweep trial's). Prints what finish()
# raised. os._exit: interpreter exit would wait for that version again, and its upload retries for
# minutes (in the test process, those retries outlived the test and warned on others).
_INTERRUPTED_FINISH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    import tracklet

    signum = int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a pytest worker's child may inherit it ignored
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    run = tracklet.init(project="exit", settings=eval(sys.argv[3]))
    for step in range(100):
        run.log({"loss": float(step)})
    run.log_artifact(sys.argv[1], name="weights", type="model")
    threading.Timer(1.0, signal.pthread_kill, (threading.main_thread().ident, signum)).start()
    try:
        run.finish()
    except BaseException as error:
        print(type(error).__name__, flush=True)
    sys.stderr.flush()
    os._exit(0)
    """
)


def _finish_interrupted(tmp_path: Path, signum: int) -> tuple[str, str]:
    """``_INTERRUPTED_FINISH_SCRIPT`` run to its end: what finish() raised, and the script's stderr.
    The run must be ended (finished, exit code 0: it did finish) with all its rows."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(MiB))
    settings = {**QUIET, "finish_timeout": 600.0}
    with _hung_server() as url:
        env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(tmp_path / "writer"),
               "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": url}
        done = subprocess.run([sys.executable, "-c", _INTERRUPTED_FINISH_SCRIPT, str(path), str(int(signum)),
                               repr(settings)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)  # not the 600 s finish_timeout
    assert done.returncode == 0, done.stderr
    recorded = tracklet.Api(tmp_path / "writer").runs("exit")[0]
    assert recorded.state == "finished" and recorded.exit_code == 0, done.stderr
    assert list(recorded.history(["loss"])["loss"]) == [float(step) for step in range(100)]
    return done.stdout.strip(), done.stderr


def test_a_second_ctrl_c_stops_waiting_and_the_run_still_ends_with_every_row(tmp_path):
    """Ctrl-C, then Ctrl-C again while exit waits for a version that can't reach a hung server (it
    accepts connections and never answers): the second one ends the wait at once, without a
    traceback, and the run is recorded as ended by Ctrl-C (exit code 130, not crashed) with all its
    rows; the version left behind is named. Before, the second Ctrl-C escaped ``finish()``: no exit
    record, the run read back as crashed (or, caught by the exit hook, the wait went on for the
    whole ``finish_timeout``)."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(2 * MiB))
    writer = tmp_path / "writer"
    settings = {**QUIET, "finish_timeout": 600.0}
    with _hung_server() as url:
        env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(writer), "TRACKLET_MODE": "online",
               "TRACKLET_BASE_URL": url}
        child = subprocess.Popen([sys.executable, "-c", _SILENT_SERVER_SCRIPT, str(path), repr(settings)],
                                 env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stderr is not None
            assert child.stdout.readline() == "logged\n"
            child.send_signal(signal.SIGINT)
            seen = []
            while not (seen and seen[-1].startswith("KeyboardInterrupt")):  # the script ended; exit now waits
                line = child.stderr.readline()
                assert line, "".join(seen)
                seen.append(line)
            time.sleep(0.5)  # a person's second Ctrl-C, once exit is waiting (any moment works, see below)
            child.send_signal(signal.SIGINT)
            _, rest = child.communicate(timeout=120)  # not the 600 s finish_timeout
        finally:
            child.kill()
    err = "".join(seen) + rest
    assert child.returncode == -signal.SIGINT, err
    assert "Exception ignored in atexit callback" not in err, err  # finish() was not cut short
    assert "artifacts still being stored at finish (interrupted (Ctrl-C))" in err, err
    assert "'weights' (model) is not stored" in err or "exit/weights:v0 is stored locally" in err, err
    run = tracklet.Api(writer).runs("exit")[0]
    assert run.state == "failed" and run.exit_code == 130
    assert list(run.history(["loss"])["loss"]) == [1.0 / (step + 1) for step in range(300)]


def test_ctrl_c_during_finish_ends_the_run_then_stops_the_script(tmp_path):
    """``finish()`` waiting for a version a hung server never takes; Ctrl-C: the run is ended with
    its rows and exit, the version left is named, and the KeyboardInterrupt then goes on to the
    caller (a loop over configs stops, as the user asked)."""
    raised, err = _finish_interrupted(tmp_path, signal.SIGINT)
    assert raised == "KeyboardInterrupt", err
    assert "tracklet: interrupted: no longer waiting" in err, err
    assert "artifacts still being stored at finish (interrupted (Ctrl-C))" in err, err


def test_a_sigterm_exit_during_finish_still_ends_the_run_with_its_exit(tmp_path):
    """A SIGTERM handler that exits (a sweep trial's stop, ``sys.exit(143)``; a cluster's) landing
    while ``finish()`` waits: the run is still ended (not crashed) and the SystemExit goes on."""
    raised, err = _finish_interrupted(tmp_path, signal.SIGTERM)
    assert raised == "SystemExit", err


# finish() with a Ctrl-C that arrives between its waits: SIGINT raised on the main thread by the
# clock read that stamps the run's end, just before the exit record is queued.
_CTRL_C_BETWEEN_WAITS_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import tracklet
    from tracklet.core import run as run_module

    signal.signal(signal.SIGINT, signal.default_int_handler)  # a pytest worker's child may inherit it ignored
    run = tracklet.init(project="exit", settings=eval(sys.argv[1]))
    for step in range(100):
        run.log({"loss": float(step)})
    clock = run_module._time

    def ctrl_c_then_clock():
        signal.raise_signal(signal.SIGINT)
        return clock()

    run_module._time = ctrl_c_then_clock
    try:
        run.finish()
    except BaseException as error:
        print(type(error).__name__, flush=True)
    sys.stderr.flush()
    os._exit(0)
    """
)


def test_a_ctrl_c_between_finishs_waits_still_ends_the_run_then_goes_on(tmp_path):
    """A Ctrl-C that lands between two of ``finish()``'s waits (here: as the run's end time is read,
    before its exit record is queued) is held until the run is ended, then raised to the caller.
    Before, it escaped ``finish()`` there: no exit record, the run read back as crashed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(tmp_path / "writer")}
    done = subprocess.run([sys.executable, "-c", _CTRL_C_BETWEEN_WAITS_SCRIPT, repr(QUIET)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KeyboardInterrupt", done.stderr
    recorded = tracklet.Api(tmp_path / "writer").runs("exit")[0]
    assert recorded.state == "finished" and recorded.exit_code == 0, done.stderr
    assert list(recorded.history(["loss"])["loss"]) == [float(step) for step in range(100)]



# An online run whose last version a hung server never takes, with Ctrl-Cs that don't interrupt the
# main thread's wait: the main thread blocks SIGINT, so the kernel hands the process's SIGINT to the
# user's other thread (tracklet's own block it) and CPython only sets the handler's flag, as for a
# SIGINT landing between the main thread's last check for signals and its blocking call's system
# call. That thread sends one SIGINT per stage of argv[2] ("a,b;c": once the main thread waits in a
# call made inside functions a and b, then once it waits inside c), each once the main thread sits
# in the wait's blocking call (its stack shows the same place in threading.py twice, 50 ms apart:
# past its last check for signals). argv[3]: "artifact.wait" waits for the version before finish(),
# "exit" leaves the run to interpreter exit.
# Prints what each raised; os._exit: interpreter exit would wait for the version again.
_MISSED_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import tracklet

    signal.signal(signal.SIGINT, signal.default_int_handler)  # a pytest worker's child may inherit it ignored
    main = threading.main_thread().ident
    stages = [set(stage.split(",")) for stage in sys.argv[2].split(";")]

    def blocked_in(frame, inside):
        # the main thread's place when it sits in a blocking call in threading.py made inside `inside`
        if frame is None or not frame.f_code.co_filename.endswith("threading.py"):
            return None
        place, names = (frame.f_code, frame.f_lasti), set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        return place if inside <= names else None

    def ctrl_c_once_waiting():
        for inside in stages:
            seen = None
            while True:
                place = blocked_in(sys._current_frames().get(main), inside)
                if place is not None and place == seen:
                    break
                seen = place
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_waiting, daemon=True).start()  # before the mask: it takes SIGINT
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    run = tracklet.init(project="exit", settings=eval(sys.argv[4]))
    for step in range(100):
        run.log({"loss": float(step)})
    artifact = run.log_artifact(sys.argv[1], name="weights", type="model")

    def waiting_for_artifact():
        artifact.wait()

    if sys.argv[3] == "artifact.wait":
        try:
            waiting_for_artifact()
        except BaseException as error:
            print(type(error).__name__, "from artifact.wait()", flush=True)
    if sys.argv[3] == "exit":
        sys.exit()  # interpreter exit waits for the version, then finishes the run
    try:
        run.finish()
    except BaseException as error:
        print(type(error).__name__, "from finish()", flush=True)
    sys.stderr.flush()
    os._exit(0)
    """
)


@pytest.mark.parametrize("first", ["finish", "artifact.wait", "exit"])
def test_a_ctrl_c_that_does_not_interrupt_the_wait_still_ends_it(tmp_path, first):
    """A Ctrl-C whose signal interrupts no system call of the main thread (it landed just before
    the wait's, or another thread took it) while ``finish()`` (or first ``artifact.wait()``) waits
    for a version a hung server never takes, or interpreter exit does: the wait, in short slices,
    sees it at the end of the one it landed in; the run is ended with its rows and exit and the
    KeyboardInterrupt goes on (at exit: the waits stop, the run is finished). Before, the one long
    wait ran on to the 300 s ``finish_timeout`` (``artifact.wait()``: for ever)."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(MiB))
    settings = {**QUIET, "finish_timeout": 300.0}
    with _hung_server() as url:
        env = {"TRACKLET_DIR": str(tmp_path / "writer"), "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": url}
        stages = {"finish": "_finish_waits,close", "artifact.wait": "waiting_for_artifact;_finish_waits,close",
                  "exit": "_drain_workers"}[first]  # exit: threading's exit hook waiting for the version
        done = run_script(_MISSED_CTRL_C_SCRIPT, env=env, cwd=tmp_path, timeout=120,  # not the 300 s finish_timeout
                          args=(str(path), stages, first, repr(settings)))
    assert done.returncode == 0, done.stderr
    raised = {"finish": ["KeyboardInterrupt from finish()"], "exit": [],  # exit: it stopped the wait, no more
              "artifact.wait": ["KeyboardInterrupt from artifact.wait()", "KeyboardInterrupt from finish()"]}[first]
    assert done.stdout.splitlines() == raised, done.stderr
    assert "artifacts still being stored at finish (interrupted (Ctrl-C))" in done.stderr, done.stderr
    recorded = tracklet.Api(tmp_path / "writer").runs("exit")[0]
    assert recorded.state == "finished" and recorded.exit_code == 0, done.stderr
    assert list(recorded.history(["loss"])["loss"]) == [float(step) for step in range(100)]
