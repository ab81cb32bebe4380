"""Ctrl-C (and a scheduler's SIGTERM/SIGUSR1) reach the training script's main thread.

Linux gives a signal sent to a process to any thread that doesn't block it; Python runs handlers
on the main thread only, so a signal one of tracklet's threads took left a main thread blocked in
``time.sleep`` (or a lock, a socket) unwoken: ``test_artifacts_exit``'s Ctrl-C tests hung 300 s
in CI (1 in ~300 tries on this machine, also with bare threads and no tracklet). Every thread
tracklet starts in a run's process now blocks those signals (``tracklet/core/threads.py``).
These tests look at each thread's mask in ``/proc`` (Linux), which is deterministic, where a
Ctrl-C loop would catch the old behaviour only now and then.

One race is CPython's own, whatever the masks: a SIGINT that reaches the main thread after its
last check for signals and before a blocking call's system call begins is seen only once that
call returns (1 in 250 under load with every other thread blocking signals, no tracklet), so the
scripts that wait for a test's Ctrl-C wait in short sleeps (``test_artifacts_exit.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import QUIET, REPO, run_script

from tracklet.core import threads
from tracklet.core.environment import _Command
from tracklet.core.pools import Pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread masks from /proc")

ASYNC = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGCHLD)


def _blocked(status: str) -> set[int]:
    """The signals a ``/proc/.../status`` text says are blocked."""
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


# A run with every thread tracklet starts in a training process: the sender, environment capture,
# system monitor, uploader (online), the artifact worker with its chunking threads and pools (a
# 70 MiB file is cut into chunks), a media worker. The masks of all threads
# but the main one are read while they run (several times) and printed as JSON.
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import numpy as np
    import tracklet

    seen = {}

    def look(when):
        names = {thread.native_id: thread.name for thread in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            if tid in before:
                continue
            try:
                with open(f"/proc/self/task/{tid}/status") as handle:
                    status = handle.read()
            except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
                continue
            # Which thread it is (Python's name; none for a library's native thread), and when.
            seen[tid] = f"{status}Python: {names.get(int(tid))}\\nSeen: {when}\\n"

    path, settings = sys.argv[1], eval(sys.argv[2])
    before = set(os.listdir("/proc/self/task"))  # numpy's (OpenBLAS) threads, started by the main thread
    run = tracklet.init(project="signals", settings=settings)
    look("after init")
    for step in range(50):
        run.log({"loss": 1.0 / (step + 1), "image": tracklet.Image(np.zeros((8, 8, 3), np.uint8))})
    artifact = run.log_artifact(path, name="weights", type="model")
    for _ in range(40):
        look("while the artifact is stored")
        time.sleep(0.02)
    artifact.wait()
    look("after the artifact's wait")
    print(json.dumps(seen))
    run.finish()
    """
)


def _thread_masks(tmp_path, env: dict[str, str]) -> dict[str, str]:
    path = tmp_path / "weights.bin"
    with open(path, "wb") as handle:
        for _ in range(70):
            handle.write(os.urandom(1 << 20))
    settings = {**QUIET, "system_metrics": True, "system_interval": 0.05}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(path), repr(settings)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _names(masks: dict[str, str]) -> list[str]:
    return [next((line for line in status.splitlines() if line.startswith("Python:")), tid) for tid, status in masks.items()]


def _assert_all_block(masks: dict[str, str]) -> None:
    assert len(masks) >= 5, masks.keys()  # the run's threads were there to be looked at
    for tid, status in masks.items():
        about = ", ".join(line for line in status.splitlines() if line.startswith(("Python:", "Seen:")))
        missing = [signal.Signals(number).name for number in ASYNC if number not in _blocked(status)]
        assert not missing, f"thread {tid} ({about}) would take {missing}; all: {_names(masks)}"


def test_every_thread_an_offline_run_starts_leaves_signals_to_the_main_thread(tmp_path):
    _assert_all_block(_thread_masks(tmp_path, {"TRACKLET_DIR": str(tmp_path / "root"), "TRACKLET_MODE": "offline"}))


def test_every_thread_an_online_run_starts_leaves_signals_to_the_main_thread(servers, tmp_path):
    server = servers(tmp_path / "server")
    _assert_all_block(_thread_masks(tmp_path, {"TRACKLET_DIR": str(tmp_path / "writer"), "TRACKLET_MODE": "online",
                                               "TRACKLET_BASE_URL": server.url}))


def _own_status() -> str:
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as handle:
        return handle.read()


def test_a_started_thread_blocks_the_signals_and_its_starter_gets_its_mask_back():
    before = _blocked(_own_status())
    found: list[tuple[set[int], bool]] = []

    def report() -> None:
        found.append((_blocked(_own_status()), threads.blocks_async_signals()))

    thread = threads.start(threading.Thread(target=report))
    thread.join()
    blocked, says = found[0]
    assert set(ASYNC) <= blocked and says
    assert not {signal.SIGSEGV, signal.SIGPIPE, signal.SIGPROF} & blocked  # faults: to the thread at fault; profilers
    assert _blocked(_own_status()) == before and not threads.blocks_async_signals()


def test_a_pools_threads_block_the_signals_whoever_submits():
    with Pool(3, "test-pool") as pool:
        results = [pool.submit(threads.blocks_async_signals) for _ in range(12)]
        assert all(future.result() for future in results)
    assert not threads.blocks_async_signals()


def test_git_started_from_a_tracklet_thread_gets_no_blocked_signals(tmp_path, monkeypatch):
    """A process a tracklet thread starts would inherit its mask: git could then not be
    interrupted. It is started with an empty one. (git resets its own children's masks, so the
    ``git`` found on PATH here is a script that shows the mask it was started with.)"""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "git").write_text("#!/bin/sh\nexec grep SigBlk /proc/self/status\n")
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    out: list[str | None] = []

    def capture() -> None:
        command = _Command.start(["status"], str(tmp_path))
        assert command is not None
        out.append(command.output())

    threads.start(threading.Thread(target=capture)).join()
    assert out[0] is not None and out[0].startswith("SigBlk:"), out
    assert _blocked(out[0]) == set()


def test_a_function_trials_agent_threads_block_the_signals(tmp_path, monkeypatch):
    """``wandb.agent(function=...)`` runs the training in this process: the agent's heartbeat (and
    prune watcher) threads beside it must not take its Ctrl-C either."""
    import tracklet.compat.wandb as wandb

    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path))
    seen: dict[str, set[int]] = {}

    def train() -> None:
        run = wandb.init(settings=QUIET)
        for thread in threading.enumerate():
            if thread.name.startswith("tracklet-heartbeat") or thread.name.startswith("tracklet-prune-watch"):
                with open(f"/proc/self/task/{thread.native_id}/status") as handle:
                    seen[thread.name] = _blocked(handle.read())
        run.finish()

    sweep_id = wandb.sweep({"method": "random", "parameters": {"lr": {"values": [1, 2]}}}, project="p")
    wandb.agent(sweep_id, function=train, count=1, project="p")
    assert seen and all(set(ASYNC) <= blocked for blocked in seen.values()), seen


def test_blake3s_thread_pool_made_from_the_training_thread_blocks_the_signals():
    """A download or verify of a chunked (BLAKE3) file on the training thread makes BLAKE3's
    thread pool there (once per process, threads idle for good after): they block the signals too."""
    script = textwrap.dedent(
        """
        import os, signal
        from tracklet.core.digests import FileHasher

        hasher = FileHasher("blake3")
        hasher.update(os.urandom(8 << 20))
        hasher.hexdigest()
        out = {}
        for tid in os.listdir("/proc/self/task"):
            if int(tid) != os.getpid():
                with open(f"/proc/self/task/{tid}/status") as handle:
                    out[tid] = handle.read()
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=True)
    masks = {tid: _blocked(status) for tid, status in json.loads(done.stdout).items()}
    if not masks:
        pytest.skip("BLAKE3 hashed on one thread here")
    assert all(set(ASYNC) <= blocked for blocked in masks.values()), masks


# A fresh process (fsspec's IO loop is one per process): on one of tracklet's threads, the S3
# client an s3:// reference uses is made, then S3 is listed with credentials from a profile's
# credential_process (aiobotocore runs it from fsspec's loop thread); then a child started on that
# loop (asyncio's subprocess, as aiobotocore starts the helper) is sent SIGTERM and SIGINT.
_CHILDREN_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, signal, sys, threading
    import fsspec.asyn
    from tracklet.artifacts.references import _S3
    from tracklet.core import threads

    out = {}

    def on_tracklet_thread():
        client = _S3("signals").fs()
        out["listed"] = client.ls(sys.argv[1], refresh=True) is not None
        io = next(t for t in threading.enumerate() if t.name == "fsspecIO")
        with open(f"/proc/self/task/{io.native_id}/status") as handle:
            out["loop thread"] = next(line for line in handle if line.startswith("SigBlk:"))

        async def stopped(number):
            child = await asyncio.create_subprocess_exec("sleep", "60")
            with open(f"/proc/{child.pid}/status") as handle:
                out[f"child {number}"] = next(line for line in handle if line.startswith("SigBlk:"))
            child.send_signal(number)
            try:
                return await asyncio.wait_for(child.wait(), 20)
            except asyncio.TimeoutError:
                child.kill()
                return await child.wait()

        out["returncodes"] = [fsspec.asyn.sync(client.loop, stopped, number)
                              for number in (signal.SIGTERM, signal.SIGINT)]

    threads.start(threading.Thread(target=on_tracklet_thread)).join()
    print(json.dumps(out))
    """
)


def test_children_of_the_s3_clients_loop_started_from_a_tracklet_thread_take_sigterm_and_sigint(s3rver, tmp_path):
    """fsspec starts its IO loop thread from the thread that makes the first async file system;
    from one of tracklet's threads (blocked mask) the loop thread, and every process it starts (a
    profile's ``credential_process`` helper, any asyncio child), blocked SIGTERM and SIGINT: a
    helper that hung could then not be stopped. The client is made unblocked
    (``threads.unblocked``), so they take both normally."""
    from s3server import BUCKET, S3_KEY, S3_SECRET

    helper = tmp_path / "helper.py"
    helper.write_text(textwrap.dedent(f"""
        import json
        with open("/proc/self/status") as handle, open({str(tmp_path / "helper.mask")!r}, "w") as out:
            out.write(next(line for line in handle if line.startswith("SigBlk:")))
        print(json.dumps({{"Version": 1, "AccessKeyId": {S3_KEY!r}, "SecretAccessKey": {S3_SECRET!r}}}))
        """))
    config = tmp_path / "aws-config"
    config.write_text(f"[profile helper]\ncredential_process = {sys.executable} {helper}\nregion = us-east-1\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"PYTHONPATH": str(REPO), "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "helper",
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_S3_ENDPOINT_URL": s3rver,
                "AWS_EC2_METADATA_DISABLED": "true"})
    done = subprocess.run([sys.executable, "-c", _CHILDREN_SCRIPT, BUCKET], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["listed"]
    for what in ("loop thread", f"child {signal.SIGTERM}", f"child {signal.SIGINT}"):
        assert not _blocked(out[what]) & set(ASYNC), (what, out[what])
    assert not _blocked((tmp_path / "helper.mask").read_text()) & set(ASYNC)  # the credential_process helper
    assert out["returncodes"] == [-signal.SIGTERM, -signal.SIGINT]  # stopped by the signal, not killed


def test_unblocked_gives_a_tracklet_thread_its_starters_mask_and_leaves_other_threads_alone():
    """``threads.unblocked`` (around making an fsspec file system on one of tracklet's threads)
    gives back the mask of the user's thread that started it: a signal the user blocked stays
    blocked for the library's thread and children too; on a user's thread it changes nothing."""
    seen: list[set[int]] = []

    def inside() -> None:
        seen.append(_blocked(_own_status()))
        with threads.unblocked():
            seen.append(_blocked(_own_status()))
        seen.append(_blocked(_own_status()))

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})  # the user's own choice
    try:
        threads.start(threading.Thread(target=inside)).join()
        with threads.unblocked():  # a user's thread: as it was
            seen.append(_blocked(_own_status()))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    tracklets, during, after, users = seen
    assert set(ASYNC) <= tracklets and after == tracklets
    assert signal.SIGUSR2 in during and not {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} & during
    assert signal.SIGUSR2 in users and signal.SIGTERM not in users


# The main thread blocks SIGINT; the user's other thread, which does not, sends it once the main
# thread sits in the blocking call of the wait argv[1] names (the same place in threading.py twice,
# 50 ms apart: past its last check for signals). The kernel hands SIGINT to that thread, and CPython
# only sets the handler's flag: what happens to a Ctrl-C landing just before a blocking call's
# system call. The wait never ends by itself. Prints what it raised.
_MISSED_CTRL_C_WAIT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from concurrent.futures import Future
    from tracklet.core import threads
    from tracklet.core.pools import Pool

    signal.signal(signal.SIGINT, signal.default_int_handler)  # a pytest worker's child may inherit it ignored
    main = threading.main_thread().ident

    def blocked_place():
        frame = sys._current_frames().get(main)
        if frame is None:
            return None
        code = frame.f_code
        # threading.py's waits; the sleep between an HTTP request's tries (time.sleep: no frame of its own)
        retry_sleep = code.co_filename.endswith(os.path.join("client", "http.py")) and code.co_name == "_retrying"
        if not (code.co_filename.endswith("threading.py") or retry_sleep):
            return None
        return code, frame.f_lasti

    def ctrl_c_once_blocked():
        seen = None
        while True:
            place = blocked_place()
            if place is not None and place == seen:
                break
            seen = place
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    never = threading.Event()
    stuck = threading.Thread(target=never.wait, daemon=True)
    stuck.start()

    def pool_shutdown():
        pool = Pool(1, "stuck-pool")
        pool.submit(never.wait)
        pool.shutdown(wait=True)

    def http_retry():  # a server asking to be asked again in an hour: the sleep between tries
        import http.server
        from tracklet.client.http import HttpClient

        class Busy(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(429)
                self.send_header("Retry-After", "3600")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        HttpClient(f"http://127.0.0.1:{server.server_address[1]}").request("GET", "/")

    def pack_pending_write():  # a pack file's direct write the writer thread has not finished
        import tempfile
        from tracklet.artifacts.packs import DirectFile

        pack = DirectFile(os.path.join(tempfile.mkdtemp(), "pack"))
        pack._pending = Future()
        pack.flush()

    waits = {"wait": lambda: threads.wait(never), "wait-timeout": lambda: threads.wait(never, 3600.0),
             "sleep": lambda: threads.sleep(3600.0), "http-retry": http_retry, "pack-write": pack_pending_write,
             "join": lambda: threads.join(stuck), "join-timeout": lambda: threads.join(stuck, 3600.0),
             "result": lambda: threads.result(Future()), "acquire": lambda: threads.acquire(threading.Semaphore(0)),
             "pool-shutdown": pool_shutdown}
    threading.Thread(target=ctrl_c_once_blocked, daemon=True).start()  # before the mask: it takes SIGINT
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        waits[sys.argv[1]]()
    except BaseException as error:
        print(type(error).__name__, flush=True)
    never.set()  # the pool's thread (not a daemon) ends, so the interpreter can exit
    """
)


@pytest.mark.parametrize("wait", ["wait", "wait-timeout", "join", "join-timeout", "result", "acquire", "pool-shutdown",
                                  "sleep", "http-retry", "pack-write"])
def test_a_main_thread_wait_sees_a_ctrl_c_that_did_not_interrupt_it(wait):
    """``threads.wait``/``join``/``result``/``acquire`` (``finish()``'s waits, ``artifact.wait()``,
    an artifact's uploads and downloads), and ``Pool.shutdown(wait=True)`` (``parallel_map``'s
    ``finally``), wait on the main thread in short slices: a Ctrl-C whose
    signal interrupted no system call there (it landed just before the call's, or another thread
    took it) is raised at the end of the slice it landed in. A plain ``Event.wait()`` and the others
    saw it only when the wait ended: here, never. So do the sleeps between an HTTP request's tries
    (``threads.sleep``: a server's ``Retry-After`` can ask for minutes; ``sync``, ``finish()``'s
    upload, an artifact's download) and a pack file's wait for its pending direct write."""
    done = run_script(_MISSED_CTRL_C_WAIT, args=(wait,), timeout=60)
    assert done.stdout.strip() == "KeyboardInterrupt", done.stderr


def test_main_thread_waits_answer_as_the_plain_calls_do():
    """``threads.join``/``acquire``/``wait``/``result`` on the main thread (pytest's) give what the
    plain call gives: a thread never started can't be joined (RuntimeError, as ``join()`` says;
    the sliced join returned as if it had ended), nor the current thread; ``acquire`` is True;
    a wait that timed out is False; a future's exception is raised."""
    from concurrent.futures import Future

    assert threading.current_thread() is threading.main_thread()
    never = threading.Thread(target=lambda: None)
    for timeout in (None, 0.0, 0.05):
        with pytest.raises(RuntimeError) as plain:
            never.join(timeout)
        with pytest.raises(RuntimeError) as sliced:
            threads.join(never, timeout)
        assert str(sliced.value) == str(plain.value)
    with pytest.raises(RuntimeError, match="current thread"):
        threads.join(threading.current_thread(), 0.05)
    lock = threading.Lock()
    assert threads.acquire(lock) is True and lock.locked()
    lock.release()
    assert threads.wait(threading.Event(), 0.05) is False and threads.wait(threading.Event(), -1) is False
    failed: Future[int] = Future()
    failed.set_exception(ValueError("x"))
    with pytest.raises(ValueError):
        threads.result(failed)


def test_a_pool_childs_threads_block_the_signals(root):
    """A pool worker (a daemonic multiprocessing child) that joins the run starts the run's threads
    and the watcher of a SIGTERM its handler can't run (``tracklet-pool-sigterm``,
    core/childrun.py): none of them, the watcher included, takes the worker's SIGINT or SIGTERM."""
    done = run_script("""
        import json, multiprocessing as mp, os, sys, threading

        def masks(run):
            run.log({"x": 1})  # joins the run: its threads, the SIGTERM handler and its watcher
            main = threading.main_thread().native_id
            names = {thread.native_id: thread.name for thread in threading.enumerate()}
            seen = {}
            for tid in os.listdir("/proc/self/task"):
                if int(tid) == main:
                    continue
                with open(f"/proc/self/task/{tid}/status") as handle:
                    line = next(line for line in handle if line.startswith("SigBlk:"))
                seen[names.get(int(tid), tid)] = int(line.split()[1], 16)
            return seen

        if __name__ == "__main__":
            import tracklet

            run = tracklet.init(project="p", id="pool", settings=eval(sys.argv[1]))
            with mp.get_context("fork").Pool(1) as pool:
                print(json.dumps(pool.apply(masks, (run,))))
            run.finish()
    """, args=(repr(QUIET),), timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "tracklet-pool-sigterm" in seen, seen
    for name, mask in seen.items():
        missing = [signal.Signals(number).name for number in (signal.SIGINT, signal.SIGTERM) if not mask >> (number - 1) & 1]
        assert not missing, f"the pool child's thread {name} would take {missing}; all: {sorted(seen)}"


def test_a_pack_files_pending_write_a_ctrl_c_cut_short_is_still_waited_for():
    """A Ctrl-C raised while a pack file waits for its pending direct write (``threads.result``, in
    slices) leaves the write pending: ``close()`` (the pack's discard as the interrupt unwinds)
    waits for it before writing the rest and closing the descriptor. The wait forgot it first, so
    the rest was written beside it (two writes at once on one descriptor)."""
    done = run_script("""
        import _thread, os, tempfile, threading
        from concurrent.futures import Future
        from tracklet.artifacts.packs import DirectFile

        pack = DirectFile(os.path.join(tempfile.mkdtemp(), "pack"))
        pending = pack._pending = Future()
        threading.Timer(0.3, _thread.interrupt_main).start()
        try:
            pack.flush()
        except KeyboardInterrupt:
            print("interrupted", pack._pending is pending)
        threading.Timer(0.3, pending.set_result, (None,)).start()
        pack.close()
        print("closed after the write", pending.done())
    """, timeout=60)
    assert done.stdout.split("\n")[:2] == ["interrupted True", "closed after the write True"], (done.stdout, done.stderr)
