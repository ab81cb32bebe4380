"""A run passed to a child process (pickled: ``spawn``, ``Pool`` arguments) or inherited by one
(``fork``) records there as a secondary writer of the same run, labelled ``<host>-<pid>``
(docs/shared-runs.md, "Runs passed to child processes"). Real processes; one script runs every
case, so the spawned interpreters are paid once."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap

import pytest
from conftest import run_script

import tracklet
from tracklet.core.childrun import child_label

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork cases need fork")

SCRIPT = r'''
import copy, functools, json, multiprocessing as mp, os, sys
import tracklet

def spawned(run, out):
    out.put((os.getpid(), run.id, run.name, run.config["lr"]))
    run.log({"child/x": 3, "loss": 30})
    print("spawned child line")
    # no finish(): the part ends as the child does

def evaluate(i, run):
    run.log({"eval/acc": i / 10})
    return os.getpid()

def forked_finishes(run):
    run.log({"forked/y": 1})
    run.summary["forked/best"] = 9
    run.finish()

def forked_crashes(run):
    run.log({"crash/z": 1})
    raise ValueError("child broke")

def forked_idle(run):
    run.id, run.config["lr"]  # reads the run's identity: records nothing
    # a deepcopy (a trainer's arguments, a config holding the run) is the run itself, and records nothing
    assert copy.deepcopy({"run": run})["run"] is run and copy.copy(run) is run

if __name__ == "__main__":
    run = tracklet.init(project="p", id="mp1", name="parent-run", config={"lr": 0.1},
                        settings={"system_metrics": False, "capture_environment": False})
    run.log({"loss": 1.0})
    run.flush()
    spawn, fork = mp.get_context("spawn"), mp.get_context("fork")
    out = spawn.Queue()
    child = spawn.Process(target=spawned, args=(run, out))
    child.start(); seen = out.get(timeout=60); child.join()
    with spawn.Pool(2) as pool:  # the with block ends the workers with terminate() (SIGTERM)
        pool_pids = sorted(set(pool.map(functools.partial(evaluate, run=run), range(8), chunksize=1)))
    pids = {"spawned": seen[0], "pool": pool_pids}
    for name, target in (("finishes", forked_finishes), ("crashes", forked_crashes), ("idle", forked_idle)):
        process = fork.Process(target=target, args=(run,))
        process.start(); process.join()
        pids[name] = process.pid
    run.log({"loss": 0.5})
    run.finish()
    print(json.dumps({"pids": pids, "seen": seen[1:]}))
'''


def test_runs_passed_to_or_forked_into_child_processes_record_there_as_secondary_writers(root, tmp_path):
    script = tmp_path / "children.py"
    script.write_text(SCRIPT)
    done = run_script(f"import runpy, sys; sys.argv = [{str(script)!r}]; runpy.run_path({str(script)!r}, "
                      "run_name='__main__')", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ValueError: child broke" in done.stderr and "interrupted" not in done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    pids = told["pids"]
    assert told["seen"] == ["mp1", "parent-run", 0.1]  # the child reads the run's id, name and config
    label = lambda pid: child_label().rsplit("-", 1)[0] + f"-{pid}"  # noqa: E731
    (recorded,) = tracklet.Api(root).runs("p")  # one run, whatever wrote it
    assert recorded.id == "mp1" and recorded.state == "finished" and not recorded.damaged
    spawned, finishes, crashes = label(pids["spawned"]), label(pids["finishes"]), label(pids["crashes"])
    pool = [label(pid) for pid in pids["pool"]]
    assert set(recorded.parts) == {spawned, finishes, crashes, *pool}  # the idle child wrote nothing
    states = {name: part["state"] for name, part in recorded.parts.items()}
    assert states[spawned] == "finished" and states[finishes] == "finished"  # no finish(): ended as it exited
    assert all(states[name] == "finished" for name in pool)  # terminate()d pool workers end their part first
    assert states[crashes] == "failed" and recorded.parts[crashes]["exit_code"] == 1
    history = recorded.history()
    assert [v for v in history["child/x"] if v is not None] == [3]
    assert [v for v in history[f"loss/l:{spawned}"] if v is not None] == [30]  # the parent logs loss too
    assert [v for v in history["loss"] if v is not None] == [1.0, 0.5]
    accuracies = [v for key in ("eval/acc", *(f"eval/acc/l:{name}" for name in pool))
                  for v in history.get(key, []) if v is not None]
    assert sorted(accuracies) == [i / 10 for i in range(8)]
    summary = recorded.summary
    assert summary["forked/y"] == 1 and summary["forked/best"] == 9 and summary["crash/z"] == 1
    assert f"[{spawned}] spawned child line" in [line.text for line in recorded.console]
    assert recorded.config["lr"] == 0.1 and recorded.name == "parent-run"
    # the store shows the same run
    api = tracklet.Api(root)
    assert not api.index().failed
    row = api.store.run("p", "mp1")
    assert row["state"] == "finished" and set(row["metadata"]["parts"]) == set(recorded.parts)
    assert {"child/x", f"loss/l:{spawned}", "forked/y", "crash/z"} <= set(api.store.metric_keys("p"))


def test_a_pickled_run_is_the_same_object_in_its_own_process_and_once_per_child(root):
    # The process that forks is a fresh interpreter (tests never fork pytest's own process).
    done = run_script("""
        import json, os, pickle
        import forkprobe
        import tracklet

        run = tracklet.init(project="p", id="same", settings={"system_metrics": False, "capture_environment": False})
        data = pickle.dumps(run)
        in_its_own = pickle.loads(data) is run  # in the process that pickled it: the run itself
        pid = os.fork()
        if pid == 0:  # a Pool worker unpickles the run with every task: one object, one part
            code = 1
            try:
                first, second = pickle.loads(data), pickle.loads(data)
                first.log({"x": 1})
                second.log({"x": 2})
                first.finish()
                code = 0 if first is second and isinstance(first, tracklet.Run) else 2
            finally:
                os._exit(code)
        code = forkprobe.reap(pid)
        run.finish()
        print(json.dumps({"itself": in_its_own, "pid": pid, "code": code}))
    """, env={"TRACKLET_DIR": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told["itself"] is True
    assert told["code"] == 0, done.stderr
    recorded = tracklet.Api(root).run("p/same")
    assert list(recorded.parts) == [child_label().rsplit("-", 1)[0] + f"-{told['pid']}"]
    assert [v for v in recorded.history()["x"] if v is not None] == [1, 2]


def test_a_child_that_cannot_join_the_run_warns_once_and_goes_on(root):
    # The process that forks is a fresh interpreter (tests never fork pytest's own process).
    done = run_script("""
        import json, os, sys
        from pathlib import Path
        import forkprobe
        import tracklet

        run = tracklet.init(project="p", id="nojoin", settings={"system_metrics": False, "capture_environment": False})
        run.log({"loss": 1.0})
        parts = Path(run.dir) / "parts"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                import warnings

                parts.write_text("not a folder")  # the child's part can't be made
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    run.log({"child": 1})  # neither raises nor stalls
                    run.log({"child": 2})
                    run.summary["x"] = 3
                said = [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]
                sys.stderr.write(f"the child was warned: {said}\\n")
                code = 0 if len(said) == 1 and "could not record into run p/nojoin" in said[0] and run.id == "nojoin" else 2
                run.finish()
            finally:
                os._exit(code)
        code = forkprobe.reap(pid)
        parts.unlink()
        run.log({"loss": 0.5})
        run.finish()
        print(json.dumps({"code": code}))
    """, env={"TRACKLET_DIR": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 0, done.stderr
    recorded = tracklet.Api(root).run("p/nojoin")
    assert recorded.state == "finished" and recorded.parts == {} and "child" not in recorded.history()


def test_ops_in_a_child_that_joined_the_run_record_spans_into_its_part(root, tmp_path):
    """``@tracklet.op`` calls in a child holding the parent's run (spawned with it, or forked)
    record spans once the child has joined the run (its first use), as the parent's ops do; a
    ``create_new`` part never becomes current, so until session 35 they recorded nothing."""
    script = tmp_path / "childops.py"  # a file: spawn's child imports the parent's main module
    script.write_text(textwrap.dedent("""
        import json, multiprocessing as mp, os
        import tracklet

        @tracklet.op
        def work(x):
            return x * 2

        def child(run, tag):
            run.log({"child_loss": 0.5})
            work(tag)

        if __name__ == "__main__":
            run = tracklet.init(project="p", id="childops",
                                settings={"system_metrics": False, "capture_environment": False})
            work(0)
            for number, method in enumerate(("fork", "spawn"), 1):
                process = mp.get_context(method).Process(target=child, kwargs={"run": run, "tag": number})
                process.start()
                process.join(60)
                assert process.exitcode == 0, (method, process.exitcode)
            run.finish()
            print(json.dumps({"ok": True}))
    """))
    done = run_script("import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')", args=(str(script),),
                      env={"TRACKLET_DIR": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    traces = tracklet.Api(root).traces(project="p", run="childops")
    inputs = sorted(span.input_json for trace in traces for span in trace.spans)
    assert inputs == ['{"x":0}', '{"x":1}', '{"x":2}'], inputs
    assert {trace.run_id for trace in traces} == {"childops"}


def test_a_child_forked_while_another_thread_imports_still_joins_the_run(root, tmp_path):
    # A child forked amid another thread's import inherits the module half-imported, its import lock
    # held by a thread the child doesn't have: its first import of it waited for ever (a Pool forked
    # right after init() hung 2 times in 12, on datetime). While runs are live, a fork first waits
    # for imports under way (at most forksafe.FORK_WAIT). The module asks logging for a logger as it
    # imports (httpx does): logging's own fork hook holds its lock through the fork, so a wait that
    # ran after that hook (registered before logging was imported) waited for an import that couldn't
    # end, and forked it half-done. logging is imported here after tracklet, as a training script's
    # libraries import it after `import tracklet`; init() registers the wait after it.
    started = tmp_path / "slowmod.started"
    (tmp_path / "slowmod.py").write_text(f"import logging, time\nopen({str(started)!r}, 'w').close()\n"
                                         "time.sleep(0.5)\nlogging.getLogger('slowmod')\nVALUE = 7\n")
    done = run_script(f"""
        import multiprocessing as mp, os, sys, threading, time
        sys.path.insert(0, {str(tmp_path)!r})
        import tracklet
        import logging

        def child(run):
            import slowmod
            run.log({{"child/value": slowmod.VALUE}})

        if __name__ == "__main__":
            run = tracklet.init(project="p", id="imp", settings={{"system_metrics": False, "capture_environment": False}})
            importer = threading.Thread(target=lambda: __import__("slowmod"))
            importer.start()
            while not os.path.exists({str(started)!r}):  # the import is under way
                time.sleep(0.005)
            process = mp.get_context("fork").Process(target=child, args=(run,))
            process.start(); process.join(20)
            print("child exit", process.exitcode)
            if process.exitcode is None:
                process.kill()  # hung: leave no process behind
            importer.join()
            run.finish()
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr
    recorded = tracklet.Api(root).run("p/imp")
    assert recorded.summary["child/value"] == 7 and len(recorded.parts) == 1


@pytest.mark.parametrize("rearmed", [False, True], ids=["armed-before", "rearmed-amid-the-import"])
def test_a_fork_amid_loggings_first_import_in_a_section_waits_for_it_and_the_child_has_logging_whole(rearmed):
    # logging imported for the first time inside a section on another thread (s3fs's build imports
    # it): logging registers its fork hook halfway through its import, so that hook runs before the
    # fork's wait and holds logging's lock, which the rest of logging's import takes (its last-resort
    # handler). The wait held the lock the section needed, ran out after FORK_WAIT, and the child got
    # logging half-imported: its own `import logging` waited for ever (tests/test_fork_objects.py's
    # s3 test hung 2 in 12 so). Now the wait releases that hook's lock while it waits.
    # `rearmed`: the wait is armed again (another thread's section or init()) while logging's import
    # is under way, before it registers its hook: logging is in sys.modules by then, and that copy
    # counted logging's hook as older than itself (review41). A module counts once its import ended.
    # The importer pauses at those points until the fork's wait has begun: no timing involved.
    done = run_script(f"""
        import os, sys, threading, time
        import forkprobe
        import tracklet
        from tracklet.core import forksafe
        assert "logging" not in sys.modules
        forksafe.arm_fork_wait()
        REARMED = {rearmed}
        about_to_register, armed, registered = threading.Event(), threading.Event(), threading.Event()

        def pause_around_loggings_hook(frame, event, arg):
            if arg is os.register_at_fork and frame.f_globals.get("__name__") == "logging":
                if event == "c_call" and REARMED:  # logging is in sys.modules, its hook not registered yet
                    about_to_register.set()
                    armed.wait(30)
                elif event == "c_return":
                    registered.set()
                    while not forksafe._forking:  # the fork's wait has begun (logging's hook ran first)
                        time.sleep(0.001)

        def importer():
            sys.setprofile(pause_around_loggings_hook)
            with forksafe.section():
                import logging
            sys.setprofile(None)

        def when_registered():
            if REARMED:
                about_to_register.wait(30)
                forksafe.arm_fork_wait()  # as another thread's section would, amid that import
                armed.set()
            registered.wait(30)

        def in_child():  # hung: explained and ended (forkprobe)
            import logging
            logging.getLogger("child").addHandler(logging.NullHandler())

        print("child exit", forkprobe.fork_amid(importer, when_registered, in_child))
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr


def test_a_fork_amid_a_section_that_imported_concurrent_futures_lets_its_executor_start_first():
    # The same for concurrent.futures' fork hook, which holds its shutdown lock through the fork:
    # a section that imported concurrent.futures.thread and then starts an executor's work (s3fs's
    # build does) waited on that lock while the fork waited on the section, until FORK_WAIT ran
    # out. Now the section ends before the fork: the child's copy has the work submitted.
    done = run_script("""
        import os, sys, threading, time
        import forkprobe
        import tracklet
        from tracklet.core import forksafe
        assert "concurrent.futures.thread" not in sys.modules
        forksafe.arm_fork_wait()
        imported, submitted = threading.Event(), []

        def builder():
            with forksafe.section():
                import concurrent.futures.thread
                imported.set()
                while not forksafe._forking:  # the fork's wait has begun (the module's hook ran first)
                    time.sleep(0.001)
                executor = concurrent.futures.thread.ThreadPoolExecutor(1)
                submitted.append(executor.submit(int))
            executor.shutdown()

        print("child exit", forkprobe.fork_amid(builder, lambda: imported.wait(30), lambda: 0 if submitted else 3))
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr


def test_a_fork_waits_for_a_section_while_it_works_and_gives_up_on_one_that_is_stuck():
    # A fork's wait for other threads' sections ended after FORK_WAIT (5 s) of wall-clock time: on a
    # loaded machine s3fs's build (0.4 CPU s) took 5-8 s, the wait ran out, and the child, forked amid
    # s3fs's import, waited for ever on its import lock (tests/test_fork_objects.py's s3 test, 1 run in
    # 3). A fork now waits while a section's thread works (uses CPU time, or is running), and gives up
    # on one that hasn't for FORK_WAIT (waiting on something the forking thread holds). FORK_WAIT is
    # 0.5 s here: a section that works 5 times as long is waited for, one blocked on an event isn't
    # (its child is made with the section unfinished); the child says which. A section whose thread
    # waits on another that works (an s3fs build on fsspec's IO thread, which builds TLS contexts:
    # ci48's child hung in SSLContext) is waited for where it names that thread (helpers).
    done = run_script("""
        import os, threading, time
        import forkprobe
        from tracklet.core import forksafe

        forksafe.FORK_WAIT = 0.5

        def works():
            began = time.monotonic()
            while time.monotonic() - began < 5 * forksafe.FORK_WAIT:
                pass

        def a_section_that(does, helpers=None):
            entered, ended = threading.Event(), []

            def in_section():
                with forksafe.section(helpers):
                    entered.set()
                    while not forksafe._forking:  # the fork's wait has begun
                        time.sleep(0.001)
                    does()
                    ended.append(True)

            return forkprobe.fork_amid(in_section, lambda: entered.wait(30), lambda: 0 if ended else 3)

        working = a_section_that(works)
        helping = []

        def waits_on_a_thread_that_works():  # as an s3fs build waits on fsspec's IO thread
            helper = threading.Thread(target=works)
            helper.start()
            helping.append(helper.ident)
            helper.join()

        helped = a_section_that(waits_on_a_thread_that_works, lambda: helping)
        helping = []
        unnamed = a_section_that(waits_on_a_thread_that_works)  # (its helper not named: its thread idles)
        over = threading.Event()
        os.register_at_fork(after_in_parent=over.set)
        print(working, helped, unnamed, a_section_that(lambda: over.wait(60)))  # stuck until the fork is over
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    # Waited for the section that works, and the one whose named helper works; not the others.
    assert done.stdout.split() == ["0", "0", "3", "3"], done.stdout + done.stderr


def test_a_child_forked_while_another_thread_builds_the_tls_context_can_build_its_own():
    # A process's first TLS context build sets OpenSSL up, under OpenSSL's own read/write locks: a
    # child forked in those first milliseconds inherited one held by a thread it doesn't have, and its
    # own build (its upload client's) waited in pthread_rwlock_wrlock for ever. An online run's Pool
    # forked right after init(), as the uploader built its context, hung in ~5 of 8 tries. A fork now
    # waits for the build (forksafe.section). Fresh processes, each forking 0.5-4 ms into its first
    # build (measured without the wait: ~1 in 3 children hung); each child builds under a bound
    # (forkprobe: one still running is explained, then ended).
    attempt = """
        import ssl, sys
        import forkprobe
        from tracklet.client import http

        print(forkprobe.fork_amid(http.ssl_context, float(sys.argv[1]), ssl.create_default_context))
    """
    for delay in range(1, 9):
        for _ in range(2):
            done = run_script(attempt, args=(str(delay / 2000),), timeout=120)
            assert (done.returncode, done.stdout.strip()) == (0, "0"), f"forked {delay / 2} ms in: {done.stderr}"


def _self_signed_certificate(directory) -> None:
    """cert.pem and key.pem in ``directory``: a self-signed CA certificate for localhost and 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def _tls_server(directory, serve: str) -> None:
    """server.py in ``directory`` (with a certificate from ``_self_signed_certificate``), for the
    fork-amid-a-handshake tests below: a TLS server on loopback that prints its port, then runs
    ``serve``, which has ``context`` (the server's), ``listener`` and ``hold_the_hello(connection)``:
    once the client's ClientHello is in, it prints "hello" and waits for a line on stdin (the
    client waits for the server's answer meanwhile)."""
    _self_signed_certificate(directory)
    (directory / "server.py").write_text(textwrap.dedent("""
        import json, socket, ssl, sys
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1] + "/cert.pem", sys.argv[1] + "/key.pem")
        listener = socket.create_server(("127.0.0.1", 0))
        print(listener.getsockname()[1], flush=True)

        def hold_the_hello(connection):
            connection.recv(5, socket.MSG_PEEK)  # the ClientHello is in: the client waits for the answer
            print("hello", flush=True)
            sys.stdin.readline()  # until told to answer
    """) + textwrap.dedent(serve))


def test_a_tls_handshake_does_no_openssl_work_while_a_fork_is_under_way(tmp_path):
    # A process's first TLS handshake fetches OpenSSL's algorithms (key exchange, signatures, ciphers)
    # under OpenSSL's global locks: a child forked then (a Pool forked right after an online init(),
    # as the uploader made its first https connection) could inherit one held, and its own handshake
    # (its uploader's, the user's https download) waited for ever (measured: 1 child in ~50, forked
    # 0.3-7 ms into the parent's first handshake), and every handshake verifies certificates under the
    # lock of the context the child inherits. So each step of a handshake on tracklet's context is a
    # forksafe.section, and the waits for the server between steps are not (a fork waiting for a
    # stalled server would hold every fork of a Pool 5 s).
    # Here the client's thread has sent its ClientHello and waits for the server; the main thread
    # forks at once, and a fork hook that runs after tracklet's lets the server answer, then takes
    # 1 s: the client's next step waits for the fork, so the child is made with the handshake not
    # done (the context's own counter), and the parent's completes after it.
    _tls_server(tmp_path, """
        connection = listener.accept()[0]
        hold_the_hello(connection)
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(1)
    """)
    done = run_script(f"""
        import os, subprocess, sys, threading, time

        server = subprocess.Popen([sys.executable, {str(tmp_path / "server.py")!r}, {str(tmp_path)!r}],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        forking = []

        def answer_during_the_fork():  # registered before tracklet's fork hook: runs after it
            if forking:
                server.stdin.write("go\\n")
                server.stdin.flush()
                time.sleep(1)

        os.register_at_fork(before=answer_during_the_fork)
        from tracklet.client import http

        context = http.ssl_context()
        context.load_verify_locations({str(tmp_path / "cert.pem")!r})
        port = int(server.stdout.readline())

        def shake_hands():
            import socket
            context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost").close()

        first = threading.Thread(target=shake_hands)
        first.start()
        assert server.stdout.readline() == "hello\\n"
        forking.append(True)
        pid = os.fork()
        if pid == 0:
            os._exit(10 + context.session_stats()["connect_good"])
        _, status = os.waitpid(pid, 0)
        first.join()
        server.wait(30)
        print(os.waitstatus_to_exitcode(status), context.session_stats()["connect_good"])
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "1"]  # forked before the handshake completed; it completed after


def test_a_gcs_clients_tls_handshake_does_no_openssl_work_while_a_fork_is_under_way(tmp_path):
    # gcsfs's aiohttp session shakes hands on fsspec's IO thread; on aiohttp's default context (built
    # as aiohttp is imported) its steps were OpenSSL work a fork didn't wait for, as in the test above.
    # A gs:// client tracklet makes (artifacts/fsbuild.py) has a connector whose context, made in the
    # build's section, runs each handshake step in a section. Here a gs:// reference's info request goes
    # to a TLS server on loopback standing in for GCS (the emulator speaks plain HTTP): it has the
    # client's ClientHello and waits; the main thread forks, and a fork hook that runs after
    # tracklet's lets the server answer, waits 1 s and looks whether the server completed its side
    # (which needs the client's next step): it must not have. The request then completes after the
    # fork, verifying the server's certificate (SSL_CERT_FILE: the context loads the default CAs).
    _tls_server(tmp_path, """
        body = json.dumps({"kind": "storage#object", "bucket": "bucket", "name": "key", "size": "3",
                           "etag": "CAE=", "generation": "1", "metageneration": "1",
                           "updated": "2026-01-01T00:00:00.000Z"}).encode()
        first = True
        while True:
            connection = listener.accept()[0]
            if first:
                hold_the_hello(connection)
                first = False
            with context.wrap_socket(connection, server_side=True) as tls:
                print("shaken", flush=True)
                request = b""
                while b"\\r\\n\\r\\n" not in request:
                    request += tls.recv(65536)
                tls.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n"
                            b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
    """)
    done = run_script(f"""
        import os, select, subprocess, sys, threading, time

        os.environ.update(GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", NO_GCE_CHECK="true", CLOUDSDK_CONFIG=os.devnull,
                          SSL_CERT_FILE={str(tmp_path / "cert.pem")!r})
        server = subprocess.Popen([sys.executable, {str(tmp_path / "server.py")!r}, {str(tmp_path)!r}],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        forking, shaken_amid_the_fork = [], []

        def answer_during_the_fork():  # registered before tracklet's fork hook: runs after it
            if forking:
                server.stdin.write("go\\n")
                server.stdin.flush()
                time.sleep(1)
                shaken_amid_the_fork.append(bool(select.select([server.stdout], [], [], 0)[0]))

        os.register_at_fork(before=answer_during_the_fork)
        os.environ["STORAGE_EMULATOR_HOST"] = "https://127.0.0.1:" + server.stdout.readline().strip()
        from tracklet.artifacts import references

        store = references._GCS("probe")
        found = []
        first = threading.Thread(target=lambda: found.append(store.head("bucket", "key", None)))
        first.start()
        assert server.stdout.readline() == "hello\\n"
        forking.append(True)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        first.join()
        server.kill()
        print(os.waitstatus_to_exitcode(status), shaken_amid_the_fork, server.stdout.readline().strip(), found)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 [False] shaken [{'size': 3, 'etag': 'CAE=', 'version': '1'}]", done.stderr


def test_a_pool_worker_whose_sigterm_handler_cant_run_still_ends(root):
    # Pool.terminate() sends SIGTERM and joins each worker without a timeout. A SIGTERM arriving as a
    # worker's main thread goes back to block on its pool's task lock (which terminate() holds from then
    # on) never runs its Python handler: the worker hung the training process for ever. Stood in for by
    # a worker whose main thread can't take SIGTERM and is blocked in a read: the watcher on the signal
    # wakeup fd ends it (SIGKILL after childrun.LOST_SIGTERM_GRACE), its part's records kept. The
    # SIGTERM is taken by a thread of the worker's own that doesn't block it (the watcher, as every
    # tracklet thread, blocks it): CPython's C handler writes the wakeup fd on whichever thread.
    done = run_script("""
        import multiprocessing as mp, os, signal, threading, tracklet

        def work(run, ready, read_fd):
            run.log({"worker/x": 1})  # joins the run: its pool-end SIGTERM handler and watcher are set
            threading.Thread(target=threading.Event().wait, daemon=True).start()  # takes the SIGTERM
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
            ready.set()
            os.read(read_fd, 1)  # blocked for ever: nobody writes

        if __name__ == "__main__":
            run = tracklet.init(project="p", id="stuck", settings={"system_metrics": False,
                                                                   "capture_environment": False})
            context = mp.get_context("fork")
            ready, (read_fd, _) = context.Event(), os.pipe()
            worker = context.Process(target=work, args=(run, ready, read_fd), daemon=True)
            worker.start()
            assert ready.wait(60)
            worker.terminate()
            worker.join(30)
            print("worker exit", worker.exitcode)
            if worker.exitcode is None:
                worker.kill()  # hung: leave no process behind
            run.finish()
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"worker exit {-signal.SIGKILL}" in done.stdout, done.stdout + done.stderr
    recorded = tracklet.Api(root).run("p/stuck")
    assert recorded.summary["worker/x"] == 1 and [part["state"] for part in recorded.parts.values()] == ["crashed"]


def test_online_a_forked_childs_part_goes_to_the_parents_server(tmp_path, servers):
    # The process that forks is a fresh interpreter (tests never fork pytest's own process).
    from pathlib import Path

    server = servers(tmp_path / "server")
    local = tmp_path / "local"
    done = run_script("""
        import json, os, sys
        import forkprobe
        import tracklet

        local, url = sys.argv[1:3]
        run = tracklet.init(project="p", id="onl", settings={
            "dir": local, "console": "off", "system_metrics": False, "capture_environment": False,
            "mode": "online", "base_url": url, "upload_interval": 0.1})
        run.log({"loss": 1})
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run.log({"child/acc": 0.5})
                run.finish()  # its uploader sends the part before finish() returns
                code = 0
            finally:
                os._exit(code)
        code = forkprobe.reap(pid)
        run.finish()
        print(json.dumps({"pid": pid, "code": code}))
    """, args=(str(local), server.url), timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told["code"] == 0, done.stderr
    label = child_label().rsplit("-", 1)[0] + f"-{told['pid']}"
    run_dir = Path("projects/p/runs/onl")
    for name in ("run.tlog", f"parts/{label}.tlog"):
        assert (tmp_path / "server" / run_dir / name).read_bytes() == (local / run_dir / name).read_bytes()


def test_a_child_forked_while_tracklets_threads_hold_its_locks_still_records(root, tmp_path):
    # fork copies a lock as it is: one that tracklet's sender, environment, uploader, media or artifact
    # thread held at that moment (making a run's media or artifact worker, building the TLS context,
    # taking a buffer from the media pool, writing the artifact store's chunk index) stayed held in the
    # child for ever, and the child's first logged image, artifact or upload client (or its finish())
    # waited on it with the child's training. Here another thread holds those very locks as it forks
    # (in a fresh interpreter: tests never fork pytest's own process).
    done = run_script("""
        import json, os, sys, threading
        from pathlib import Path

        import numpy as np

        import forkprobe
        import tracklet
        from tracklet.artifacts.storage import open_store
        from tracklet.client import http
        from tracklet.core import run as run_module
        from tracklet.media import buffers

        root, folder = Path(sys.argv[1]), Path(sys.argv[2])
        run = tracklet.init(project="p", id="locks", settings={"system_metrics": False, "capture_environment": False})
        run.log({"loss": 1.0})
        (folder / "weights.bin").write_bytes(os.urandom(64 * 1024))
        store = open_store(root)  # the process's artifact store, as the parent's artifact worker holds it
        held, release = threading.Event(), threading.Event()

        def hold():
            with run_module._LOGGED_LOCK, run_module._WORKER_LOCK, http._ssl_lock, buffers.POOL._lock, \\
                    store._chunk_lock:
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(60)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run.log({"child/image": tracklet.Image(np.zeros((4, 4, 3), dtype="uint8"))})
                run.log_artifact(str(folder / "weights.bin"), name="weights", type="model").wait()
                http.HttpClient("http://127.0.0.1:9").close()  # what an online child's uploader makes first
                run.finish()
                code = 0
            finally:
                os._exit(code)
        release.set()
        holder.join()
        code = forkprobe.reap(pid)  # a child stuck on a lock: explained and ended, not hanging the test
        run.finish()
        print(json.dumps({"pid": pid, "code": code}))
    """, args=(str(root), str(tmp_path)), timeout=180,
        env={"TRACKLET_DIR": str(root), "TRACKLET_ARTIFACT_CHUNK_THRESHOLD": "4096"})  # the child's artifact is chunked
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told["code"] == 0, done.stderr
    recorded = tracklet.Api(root).run("p/locks")
    assert list(recorded.parts) == [child_label().rsplit("-", 1)[0] + f"-{told['pid']}"]
    assert recorded.media_keys() == ["child/image"]
    assert tracklet.Api(root).artifact("p/weights:v0").files()


def test_every_module_level_lock_outside_the_server_is_released_in_a_forked_child():
    # The class of the test above: a module-level lock is made by tracklet.core.forksafe (unlocked in
    # a forked child), or its module resets it in an os.register_at_fork hook of its own.
    import ast
    from pathlib import Path

    package = Path(tracklet.__file__).parent
    unsafe = []
    for path in sorted(package.rglob("*.py")):
        if "server" in path.relative_to(package).parts:
            continue  # the server's processes don't record runs: no child joins one
        source = path.read_text()
        if "Lock()" not in source:
            continue  # (parsed only where a lock is made: the rule costs milliseconds, not seconds)
        tree = ast.parse(source)
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                    and value.func.attr in ("Lock", "RLock") and "register_at_fork" not in source:
                unsafe.append(f"{path.relative_to(package)}:{node.lineno}")
    assert unsafe == [], "module-level locks a forked child may find held for ever (use core.forksafe.lock())"


def test_a_forked_child_ending_normally_leaves_the_parents_scratch_directories(root, tmp_path):
    # weakref.finalize runs in a forked child too (at its normal exit): an artifact draft's staged
    # snapshot (policy="mutable", a checkpoint about to be overwritten) was removed by a worker the
    # parent forked before logging it, and the version lost the file. The W&B disabled run's run.dir
    # is the same rule (tests/test_wandb_compat.py); the rule test below holds both.
    from pathlib import Path

    done = run_script(f"""
        import os, sys
        import tracklet

        run = tracklet.init(project="p", id="stage", settings={{"system_metrics": False, "capture_environment": False}})
        checkpoint = {str(tmp_path / "model.ckpt")!r}
        open(checkpoint, "wb").write(b"epoch 1")
        draft = tracklet.Artifact("model", type="model")
        draft.add_file(checkpoint, policy="mutable")  # snapshotted now
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a worker that ends normally (atexit and finalizers run in it)
        os.waitpid(pid, 0)
        open(checkpoint, "wb").write(b"epoch 2")
        run.log_artifact(draft).wait()
        run.finish()
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    version = tracklet.Api(root).artifact("p/model:v0")
    assert (Path(version.download(str(tmp_path / "got"))) / "model.ckpt").read_bytes() == b"epoch 1"


def test_scratch_directories_are_removed_by_the_process_that_made_them_only():
    import re
    from pathlib import Path

    package = Path(tracklet.__file__).parent
    found = [str(path.relative_to(package)) for path in package.rglob("*.py")
             if re.search(r"weakref\.finalize\([^\n]*rmtree", path.read_text())]
    assert found == [], "use tracklet.core.forksafe.remove_with (a forked child runs finalizers too)"


def test_a_pickled_run_holds_no_api_key_a_child_finds_by_itself(root, monkeypatch):
    # A run is pickled for a child process, but also wherever an object holding it is pickled (a
    # model or a config written to disk, shared): the key from TRACKLET_API_KEY (or tracklet login)
    # was written there in plain text. The child finds it where the parent did; a key given in code
    # alone travels with the run in multiprocessing's pickles only (the child needs it to upload).
    import pickle

    from tracklet.core.childrun import spec_of

    monkeypatch.setenv("TRACKLET_API_KEY", "tk-from-the-environment")
    quiet = {"system_metrics": False, "capture_environment": False}
    run = tracklet.init(project="p", id="key", settings=quiet)
    assert run.settings.api_key == "tk-from-the-environment"
    assert b"tk-from-the-environment" not in pickle.dumps(run)
    run.finish()
    coded = tracklet.init(project="p", id="key2", settings={**quiet, "api_key": "tk-given-in-code"})
    assert spec_of(coded)["settings"]["api_key"] == "tk-given-in-code"
    # a key given in code goes to a child (multiprocessing's pickler: spawn arguments, Pool tasks,
    # queues), never into a pickle written elsewhere (a model or a config holding the run, on disk)
    from multiprocessing.reduction import ForkingPickler

    assert b"tk-given-in-code" in bytes(ForkingPickler.dumps(coded))
    assert b"tk-given-in-code" not in pickle.dumps({"model": [coded]})
    assert pickle.loads(pickle.dumps(coded)) is coded  # (in this process: the run itself)
    coded.finish()


def test_a_child_forked_after_the_parent_hashed_a_chunked_file_stores_one_too(root, tmp_path):
    # A chunked file is hashed with BLAKE3 on Rayon's thread pool, made once per process. A forked
    # child has none of its threads, but Rayon's pool is there as the parent left it: the child's first
    # threaded hash waited for ever (a Pool or DataLoader worker storing or checking an artifact after
    # the parent logged a large one). A forked child hashes on its own thread once the parent may have
    # made the pool. (The parent is a fresh interpreter: tests never fork pytest's own process.)
    from pathlib import Path

    for name in ("parent", "child"):
        (tmp_path / f"{name}.bin").write_bytes(os.urandom(3 << 20))  # hashed in pieces over 1 MiB: threaded
    done = run_script("""
        import json, os, sys
        import forkprobe
        import tracklet

        parent, child = sys.argv[1:3]
        run = tracklet.init(project="p", id="rayon", settings={"system_metrics": False, "capture_environment": False})
        run.log_artifact(parent, name="parent", type="model").wait()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run.log_artifact(child, name="child", type="model").wait()
                run.finish()
                code = 0
            finally:
                os._exit(code)
        code = forkprobe.reap(pid)  # a child stuck in the hash: explained and ended, not hanging the test
        run.finish()
        print(json.dumps({"code": code}))
    """, args=(str(tmp_path / "parent.bin"), str(tmp_path / "child.bin")), timeout=180,
        env={"TRACKLET_DIR": str(root), "TRACKLET_ARTIFACT_CHUNK_THRESHOLD": "4096"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 0, done.stderr
    api = tracklet.Api(root)
    downloaded = api.artifact("p/child:v0").download(str(tmp_path / "got"))
    assert (Path(downloaded) / "child.bin").read_bytes() == (tmp_path / "child.bin").read_bytes()


def test_every_threaded_blake3_hasher_takes_its_thread_count_from_digests():
    # the class of the test above: blake3's AUTO (Rayon's pool) is asked for in core/digests.py only
    import re
    from pathlib import Path

    package = Path(tracklet.__file__).parent
    found = [str(path.relative_to(package)) for path in package.rglob("*.py")
             if path.name != "digests.py" and re.search(r"max_threads\s*=\s*blake3\.blake3\.AUTO", path.read_text())]
    assert found == [], "use tracklet.core.digests.blake3_threads (a forked child has no Rayon threads)"


def test_a_child_forked_while_another_thread_builds_the_tls_context_gets_it_whole():
    # An online run's uploader builds the process's TLS context right after init(); a Pool forked
    # then left the child with OpenSSL's state half-made by a thread it doesn't have, and the child's
    # own build waited for ever inside OpenSSL: its part was never uploaded ("did not finish within
    # 30s"). A fork waits for a build under way, so the child gets the context whole. (The process that
    # forks is a fresh interpreter: tests never fork pytest's own process.)
    done = run_script("""
        import json, os, threading, time

        import httpx

        import forkprobe
        from tracklet.client import http

        http._ssl_context = None
        building = threading.Event()
        real = httpx.create_ssl_context

        def build_slowly(*args, **kwargs):
            building.set()
            time.sleep(0.3)  # the CA bundle's load, stretched so that the fork lands inside it
            return real(*args, **kwargs)

        httpx.create_ssl_context = build_slowly
        builder = threading.Thread(target=http.ssl_context)
        builder.start()
        assert building.wait(60)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if http._ssl_context is not None else 1)
        builder.join()
        print(json.dumps({"code": forkprobe.reap(pid)}))
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 0, done.stderr


def test_a_fork_that_waited_for_the_tls_context_also_waits_for_the_import_after_it(root, tmp_path):
    # The uploader's thread builds the TLS context, then imports at once (httpx's transport imports
    # httpcore). A fork that waited for the build let that import begin after the wait for imports
    # under way had run: the child got the module half-imported, and its uploader waited for ever on
    # its import lock (its part never uploaded, under xdist's load 2 runs in 4).
    (tmp_path / "slowmod_after_tls.py").write_text("import time\ntime.sleep(0.5)\nVALUE = 7\n")
    done = run_script(f"""
        import os, sys, threading, time
        sys.path.insert(0, {str(tmp_path)!r})
        import httpx
        from tracklet.client import http  # its fork hook first, lifecycle's (at init) after it
        import tracklet

        run = tracklet.init(project="p", id="tls", settings={{"system_metrics": False, "capture_environment": False}})
        building = threading.Event()
        real = httpx.create_ssl_context

        def build_slowly(*args, **kwargs):
            building.set()
            time.sleep(0.3)  # stretched: the fork lands in the build
            return real(*args, **kwargs)

        httpx.create_ssl_context = build_slowly

        def uploader_like():
            http.ssl_context()
            import slowmod_after_tls  # at once, as HTTPTransport imports httpcore

        worker = threading.Thread(target=uploader_like)
        worker.start()
        building.wait(60)
        pid = os.fork()
        if pid == 0:
            module = sys.modules.get("slowmod_after_tls")
            whole = module is None or not getattr(module.__spec__, "_initializing", False)
            os._exit(0 if whole else 1)
        worker.join()
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        run.finish()
    """, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr


POOL_TEARDOWN = r'''
import functools, json, multiprocessing as mp, os, signal, sys
import tracklet

def work(i, run):
    run.log({"w/x": i})
    return os.getpid()

if __name__ == "__main__":
    url, server_pid = sys.argv[1], int(sys.argv[2])
    run = tracklet.init(project="p", id="teardown", settings={
        "console": "off", "system_metrics": False, "capture_environment": False, "mode": "online",
        "base_url": url, "upload_interval": 0.1, "finish_timeout": 3600, "upload_timeout": 3600})
    told = {}
    os.kill(server_pid, signal.SIGSTOP)  # a server that answers nothing: every upload hangs
    try:
        for method in ("fork", "spawn"):
            with mp.get_context(method).Pool(2) as pool:
                pids = sorted(set(pool.map(functools.partial(work, run=run), range(6), chunksize=1)))
                workers = list(pool._pool)
            # the with block's terminate() joined the workers: each ended its part and exited
            told[method] = {"pids": pids, "exits": {worker.pid: worker.exitcode for worker in workers}}
    finally:
        os.kill(server_pid, signal.SIGCONT)
    run.finish()
    print(json.dumps(told))
'''


def test_online_a_torn_down_pools_workers_end_their_parts_without_waiting_for_the_upload(root, tmp_path, servers):
    # Pool.terminate() (what `with Pool()` calls) joins each worker without a timeout: a worker
    # whose part waited for its upload up to finish_timeout (an hour here) stalled the training
    # process that long behind a slow or unreachable server (a stopped one here): the script would
    # not end. The parts end with their records on disk; the parent's finish() (or `tracklet sync`)
    # uploads what the workers left.
    from pathlib import Path

    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    server = servers(tmp_path / "server")
    script = tmp_path / "teardown.py"
    script.write_text(POOL_TEARDOWN)
    try:
        done = run_script(f"import runpy, sys; sys.argv = [{str(script)!r}, {server.url!r}, '{server.proc.pid}']; "
                          f"runpy.run_path({str(script)!r}, run_name='__main__')", timeout=90)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # the script's own may not have run (it was killed)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    labels = []
    for method, pool in told.items():
        # each worker that joined the run left by its SIGTERM's sys.exit(0) (or by the pool's stop
        # sentinel); one that got no task (a loaded machine: the other took all six) never joined, and
        # SIGTERM's default action ended it, unless it read the sentinel first: terminate() has the
        # task handler send one to each worker before it signals those still running (a race: the idle
        # worker exited 0 once in 6 runs of these files), and never tracklet's SIGTERM exit (143)
        exits = {int(pid): code for pid, code in pool["exits"].items()}
        assert all(code in ((0,) if pid in pool["pids"] else (0, -signal.SIGTERM)) for pid, code in exits.items()), \
            (method, exits, pool["pids"])
        labels += [child_label().rsplit("-", 1)[0] + f"-{pid}" for pid in pool["pids"]]
    # Each worker's part gave up its upload (the server was stopped all along, and its timeouts are
    # an hour: only the teardown's cut ends that wait) and said where the rest of it goes.
    gave_up = re.findall(r"this part \((\S+)\) is complete locally, and the run's online writer", done.stderr)
    assert sorted(gave_up) == sorted(labels), done.stderr
    recorded = tracklet.Api(root).run("p/teardown")
    assert sorted(recorded.parts) == sorted(labels)
    assert all(part["state"] == "finished" for part in recorded.parts.values())
    logged = [value for key, column in recorded.history().items() if key.split("/l:")[0] == "w/x"
              for value in column if value is not None]  # w/x, and w/x/l:<label> for the parts not owning it
    assert sorted(logged) == sorted([0, 1, 2, 3, 4, 5] * 2)
    synced = CliRunner().invoke(cli, ["sync", "p/teardown", "--url", server.url, "--quiet"])
    assert synced.exit_code == 0, synced.output
    run_dir = Path("projects/p/runs/teardown")
    for name in ("run.tlog", *(f"parts/{label}.tlog" for label in labels)):
        assert (tmp_path / "server" / run_dir / name).read_bytes() == (root / run_dir / name).read_bytes(), name
