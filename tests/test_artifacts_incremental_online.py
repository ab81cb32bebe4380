"""Incremental versions (W&B's ``wandb.Artifact(name, type, incremental=True)``) logged by online runs
in real processes against one real server: several processes released together, each appending its
own shards to one collection (one also removing a shard another job added), lose no increment; and a
server that doesn't answer when a version is logged leaves that version committed locally with its
base recorded, within ``finish_timeout``, so ``tracklet sync`` later merges it onto what landed on the
server meanwhile. (Before, the worker waited up to two HTTP timeouts, ~2 minutes, for the server's
base: ``finish()`` gave up after ``finish_timeout``, and the process ended with the version not
stored at all.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
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
from serverproc import REPO

import tracklet
from tracklet.artifacts.remote import upload_version
from tracklet.artifacts.storage import open_store
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient

PROJECT = "inc"

# One job: an online run that logs `rounds` incremental versions of PROJECT/<name>, each adding the
# job's own shard (and removing the paths `remove` names for that round, once the files `after` names
# for it exist), once `go` exists; `<ready>-r<round>` marks each round's version on the server. Prints,
# per version, the server's number, the upload's error, the local version's base.
JOB = """
    import json, os, sys, time
    from pathlib import Path
    import tracklet.compat.wandb as wandb

    name, job, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    remove, after, ready, go = json.loads(sys.argv[4]), json.loads(sys.argv[5]), Path(sys.argv[6]), Path(sys.argv[7])
    out = []
    with wandb.init(project="inc", job_type="shard") as run:
        ready.touch()
        while not go.exists():
            time.sleep(0.005)
        for r in range(rounds):
            Path(f"p{job}-r{r}.bin").write_bytes(os.urandom(1000) + bytes([job, r]))
            shard = wandb.Artifact(name, type="dataset", incremental=True)
            shard.add_file(f"p{job}-r{r}.bin", name=f"shards/p{job}-r{r}.bin")
            for path in remove.get(str(r), []):
                shard.remove(path)
            while not all(Path(done).exists() for done in after.get(str(r), [])):
                time.sleep(0.005)
            run.log_artifact(shard)
            shard.wait()
            Path(f"{ready}-r{r}").touch()  # this round's version is on the server
            out.append({"server": shard._server_version, "error": str(shard.upload_error or ""),
                        "base": shard._info.incremental_base})
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sqlite_server(module_servers, tmp_path_factory) -> Iterator:
    yield module_servers(tmp_path_factory.mktemp("incremental-online"))


@pytest.fixture(scope="module")
def pg_servers(module_servers, tmp_path_factory, postgres_url) -> Iterator:
    """Two server processes of one deployment on a PostgreSQL store (a database of its own in the
    session's cluster) and one data root: versions in ``artifact_versions``, numbered under an
    advisory lock per collection whichever process commits."""
    from pgcluster import create_database, drop_database

    name = f"incr{os.getpid()}"
    url = create_database(postgres_url, name)
    root = tmp_path_factory.mktemp("incremental-online-pg")
    yield module_servers(root, store=url), module_servers(root, store=url)
    module_servers.stop_using(url)
    drop_database(postgres_url, name)


@pytest.fixture(scope="module")
def pg_server(pg_servers) -> Iterator:
    yield pg_servers[0]


@pytest.fixture
def server(request) -> Iterator:
    """The module's server: on SQLite, or on PostgreSQL for a test parametrized over ``backend``."""
    backend = request.node.callspec.params.get("backend", "sqlite") if hasattr(request.node, "callspec") else "sqlite"
    yield request.getfixturevalue("pg_server" if backend == "postgresql" else "sqlite_server")


# The commit-id lookup on PostgreSQL (SqlRegistry) is covered by the merged version sent again;
# the re-add and the lost answer run on SQLite alone (their logic is the server's, not the store's).
BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


def _env(machine: Path, url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "TRACKLET_DIR": str(machine), "TRACKLET_MODE": "online", "TRACKLET_BASE_URL": url,
            "TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false",
            "PYTHONPATH": str(REPO), **extra}


def _versions(url: str, name: str) -> list[dict[str, str]]:
    """Each version's files (path: digest), in the server's order."""
    with tracklet.Api(base_url=url) as api:
        versions = sorted(api.artifact_versions(f"{PROJECT}/{name}"), key=lambda version: int(version.version[1:]))
        assert [version.version for version in versions] == [f"v{n}" for n in range(len(versions))]  # unique
        return [{entry.path: entry.digest for entry in version.files()} for version in versions]


def _seed(tmp_path: Path, url: str, name: str, files: dict[str, bytes], incremental: bool = True) -> None:
    """The collection's first version (or, ``incremental``, a version onto its latest), logged by a
    run on a machine of its own (``tmp_path``)."""
    run = tracklet.init(project=PROJECT, dir=str(tmp_path / "seed"), mode="online",
                        settings={"console": "off", "capture_environment": False, "system_metrics": False,
                                  "base_url": url})
    first = tracklet.Artifact(name, type="dataset", incremental=incremental)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (tmp_path / Path(path).name).write_bytes(data)
        first.add_file(str(tmp_path / Path(path).name), name=path)
    assert run.log_artifact(first).wait().upload_error is None
    run.finish()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_jobs_released_together_lose_no_increment(server, tmp_path, backend, request):
    """Four processes (each its own data root: four machines), released by one barrier, each log
    three incremental versions of one collection; job 0 removes, in its first, a shard the seeding
    job added, and in its last, job 1's first shard (logged once that is on the server, while the
    other jobs' versions still land on bases holding it). Every version the server numbers holds its predecessor's files (less the removed
    one): no job's shard is lost, and the removed one doesn't come back through a job whose base
    still held them. On PostgreSQL (three jobs, two versions each) the jobs alternate between two
    server processes of one deployment: numbers stay unique and gapless across them."""
    urls = [server.url] if backend == "sqlite" else [peer.url for peer in request.getfixturevalue("pg_servers")]
    # PostgreSQL: three jobs of two versions each (the CPU is the processes' start), the same races
    name, (jobs, rounds) = f"shards-{backend}", (4, 3) if backend == "sqlite" else (3, 2)
    _seed(tmp_path, server.url, name, {"seed/keep.bin": b"keep", "seed/drop.bin": b"drop"})
    go = tmp_path / "go"
    procs = []
    for job in range(jobs):
        work = tmp_path / f"work-{job}"
        work.mkdir()
        # job 0 removes a seeded shard first, and last job 1's first shard (once it is on the server)
        remove = {"0": ["seed/drop.bin"], str(rounds - 1): ["shards/p1-r0.bin"]} if job == 0 else {}
        after = {str(rounds - 1): [str(tmp_path / "ready-1-r0")]} if job == 0 else {}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(JOB), name, str(job), str(rounds), json.dumps(remove),
             json.dumps(after), str(tmp_path / f"ready-{job}"), str(go)],
            cwd=work, env=_env(tmp_path / f"machine-{job}", urls[job % len(urls)]), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck test, not a timing check
        while not all((tmp_path / f"ready-{job}").exists() for job in range(jobs)):
            assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs
                                                                 if proc.poll() is not None]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        go.touch()
        told = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            told.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(version["error"] == "" for job in told for version in job)
    numbers = [version["server"] for job in told for version in job]
    assert sorted(numbers) == list(range(1, 1 + jobs * rounds))  # one server version per log, none shared
    versions = _versions(server.url, name)
    assert len(versions) == 1 + jobs * rounds
    removed = {"seed/drop.bin", "shards/p1-r0.bin"}
    for before, later in zip(versions, versions[1:]):
        assert {path: digest for path, digest in before.items() if path not in removed}.items() <= later.items()
    assert any("shards/p1-r0.bin" in version for version in versions)
    shards = {f"shards/p{job}-r{r}.bin" for job in range(jobs) for r in range(rounds)}
    assert set(versions[-1]) == shards - removed | {"seed/keep.bin"}
    # each job's versions name the base their local copy was merged onto (what a later send diffs)
    assert all(len(version["base"]) == 64 for job in told for version in job)


STUCK_JOB = """
    import json, sys, time
    from pathlib import Path
    import tracklet

    Path("late.bin").write_bytes(b"late shard")
    run = tracklet.init(project="inc", settings={"finish_timeout": 3})
    print(json.dumps({"run": run.id}), flush=True)
    sys.stdin.readline()  # the test stops the server now
    late = tracklet.Artifact(sys.argv[1], type="dataset", incremental=True)
    late.add_file("late.bin", name="shards/late.bin")
    started = time.monotonic()
    run.log_artifact(late)
    logged = time.monotonic() - started
    run.finish()
    print(json.dumps({"log_s": logged, "finish_s": time.monotonic() - started - logged, "state": late.state}),
          flush=True)
"""


def test_a_server_not_answering_at_log_time_keeps_the_version_and_sync_merges_it(server, tmp_path):
    """The server stops answering (SIGSTOP: connections are accepted, nothing replies) between a
    run's start and its ``log_artifact`` of an incremental version. ``log_artifact`` returns at
    once, ``finish()`` within ``finish_timeout``, and the version is committed locally on the
    data root's latest (none), its base recorded, so that -- the server answering again and
    another job's version landed meanwhile -- ``tracklet sync`` delivers a version holding both."""
    name = "stuck"
    _seed(tmp_path, server.url, name, {"shards/first.bin": b"first"})
    machine, work = tmp_path / "machine", tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(STUCK_JOB), name], cwd=work,
                            env=_env(machine, server.url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        run_id = json.loads(proc.stdout.readline())["run"]
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=120)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    told = json.loads(out.strip().splitlines()[-1])
    assert told["state"] == "committed"
    store = open_store(machine)
    local = store.registry.version(PROJECT, name)
    assert local.incremental_base == ""  # the data root's latest (none), recorded
    assert local.base_unread == server.url  # and marked: the server's files are not in this copy
    assert [entry.path for entry in store.manifest(local)] == ["shards/late.bin"]
    # another job lands a version meanwhile
    (tmp_path / "other").mkdir()
    _seed(tmp_path / "other", server.url, name, {"shards/other.bin": b"other"})
    assert set(_versions(server.url, name)[-1]) == {"shards/first.bin", "shards/other.bin"}
    synced = subprocess.run([sys.executable, "-c", "from tracklet.cli.main import main; main()", "sync", f"{PROJECT}/{run_id}", "--url", server.url,
                             "-q"], env=_env(machine, server.url), capture_output=True, text=True, timeout=120)
    assert synced.returncode == 0, synced.stderr + synced.stdout
    versions = _versions(server.url, name)
    assert set(versions[-1]) == {"shards/first.bin", "shards/other.bin", "shards/late.bin"}
    assert len(versions) == 3


@BACKENDS
@pytest.mark.parametrize("commit_id", ["drawn", "none"])
def test_a_merged_version_sent_again_makes_no_second_version(server, tmp_path, monkeypatch, backend, commit_id):
    """An incremental version the server merged (its base was no longer the latest) sent again, as
    a retried commit whose answer was lost or a repeated `tracklet sync` does: no second version,
    whether nothing or another job's version landed meanwhile -- one that removed the version's file
    too: the retry doesn't bring it back (it used to, as a new version). Found by the version's
    commit id; a version sent without one (stored before ids, or by an older client: ``none``) by
    the rule before (the same run's newest version after its base holding its increment)."""
    name = f"retry-{commit_id}"
    _seed(tmp_path, server.url, name, {"shards/first.bin": b"first"})
    monkeypatch.chdir(tmp_path)
    Path("late.bin").write_bytes(b"late")
    offline = tmp_path / "offline"
    run = tracklet.init(project=PROJECT, dir=str(offline), mode="offline",
                        settings={"console": "off", "capture_environment": False, "system_metrics": False})
    late = tracklet.Artifact(name, type="dataset", incremental=True)
    late.add_file("late.bin", name="shards/late.bin")
    run.log_artifact(late).wait()
    run.finish()
    assert late._info.commit_id is not None and len(late._info.commit_id) == 32
    if commit_id == "none":
        late._info = dataclasses.replace(late._info, commit_id=None)
    store = open_store(offline)
    client = ArtifactClient(HttpClient(server.url))
    try:
        first = upload_version(client, store, late._info, [])
        assert (first["version"]["index"], first["reused"]) == (1, False)  # merged onto v0
        again = upload_version(client, store, late._info, [])  # the first answer lost: sent again
        assert (again["version"]["index"], again["reused"]) == (1, True)
        (tmp_path / "other").mkdir()
        _seed(tmp_path / "other", server.url, name, {"shards/other.bin": b"other"})  # v2, holding late's file
        again = upload_version(client, store, late._info, [])
        assert (again["version"]["index"], again["reused"]) == (1, True)
        run = tracklet.init(project=PROJECT, dir=str(tmp_path / "remover"), mode="online",
                            settings={"console": "off", "capture_environment": False, "system_metrics": False,
                                      "base_url": server.url})
        drop = tracklet.Artifact(name, type="dataset", incremental=True)
        drop.remove("shards/late.bin")
        assert run.log_artifact(drop).wait().upload_error is None  # v3
        run.finish()
        again = upload_version(client, store, late._info, [])
        assert (again["version"]["index"], again["reused"]) == (1, True)
    finally:
        client.http.close()
    versions = _versions(server.url, name)
    assert len(versions) == 4
    assert set(versions[2]) == {"shards/first.bin", "shards/late.bin", "shards/other.bin"}
    assert set(versions[-1]) == {"shards/first.bin", "shards/other.bin"}


# One run logs an incremental version adding `shards/x.bin`, then -- once the test has had another job
# remove that file -- the same bytes again: printing each version's server number.
READD_JOB = """
    import json, sys
    import tracklet

    run = tracklet.init(project="inc")
    numbers = []
    for round in range(2):
        if round:
            sys.stdin.readline()  # another job removed the file meanwhile
        shard = tracklet.Artifact(sys.argv[1], type="dataset", incremental=True)
        shard.add_file("x.bin", name="shards/x.bin")
        run.log_artifact(shard).wait()
        numbers.append({"server": shard._server_version, "error": str(shard.upload_error or ""),
                        "reused": shard.reused, "commit_id": shard._commit_id})
        print(json.dumps(numbers[-1]), flush=True)
    run.finish()
"""


def _remove(tmp_path: Path, url: str, name: str, path: str) -> None:
    """Another job (a run on a machine of its own) logs an incremental version removing ``path``."""
    run = tracklet.init(project=PROJECT, dir=str(tmp_path / "remover"), mode="online",
                        settings={"console": "off", "capture_environment": False, "system_metrics": False,
                                  "base_url": url})
    drop = tracklet.Artifact(name, type="dataset", incremental=True)
    drop.remove(path)
    assert run.log_artifact(drop).wait().upload_error is None
    run.finish()


def test_a_run_adding_again_a_file_another_job_removed_makes_a_new_version(server, tmp_path):
    """A run logs an incremental version adding a file; another job removes it; the same run adds
    the same bytes again. The second log is a new commit (its own commit id), so the server's
    latest holds the file again -- not taken for a retry of the first commit, which has the same
    run, content and increment (the server's latest manifest being its base's again, the local
    copy is even the same version: ``reused`` there)."""
    name = "readd"
    _seed(tmp_path, server.url, name, {"shards/first.bin": b"first"})
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.bin").write_bytes(b"the same bytes both times")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READD_JOB), name], cwd=work,
                            env=_env(tmp_path / "machine", server.url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = json.loads(proc.stdout.readline() or "null")
        assert first is not None, proc.stderr.read()
        first.pop("commit_id")
        assert first == {"server": 1, "error": "", "reused": False}
        _remove(tmp_path, server.url, name, "shards/x.bin")  # v2: v0's files again
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    second = json.loads(out.strip().splitlines()[-1])
    second.pop("commit_id")
    assert second == {"server": 3, "error": "", "reused": True}  # locally the same version as the first
    versions = _versions(server.url, name)
    assert [sorted(version) for version in versions] == [
        ["shards/first.bin"], ["shards/first.bin", "shards/x.bin"], ["shards/first.bin"],
        ["shards/first.bin", "shards/x.bin"]]


class DroppingProxy:
    """A TCP proxy in front of a server that forwards everything, except that it drops the answer
    to the first artifact commit (``POST .../versions``) it forwards: the server has committed it
    (its answer began), the client's connection is closed with no answer -- a lost answer, as a
    network cut or a restarting load balancer leaves it. ``actions``: what becomes of each commit
    in turn (later ones are forwarded): ``drop`` (its answer, as above), ``refuse`` (not forwarded:
    answered 400, as a gateway refusing it: an upload that doesn't land), ``forward``. With
    ``rename_commit_id``: the commits' ``commit_id`` field is renamed on the way (``commit_xx``,
    the same length), so the server ignores it, as one from before session 32 does. With ``hold``:
    requests matching it are never forwarded nor answered (a server that doesn't answer them), and
    nothing is dropped."""

    COMMIT = re.compile(rb"POST [^ ]*/artifacts/[^ /]+/versions HTTP/1\.1")
    HOST = re.compile(rb"(?i)^host: 127\.0\.0\.1:\d+", re.MULTILINE)
    REFUSAL = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 34\r\n"
               b"connection: close\r\n\r\n{\"detail\": \"refused by the proxy\"}")

    def __init__(self, port: int, hold: re.Pattern[bytes] | None = None, actions: tuple[str, ...] = ("drop",),
                 rename_commit_id: bool = False) -> None:
        self.upstream = port
        self.hold = hold
        self.actions = actions
        self.rename_commit_id = rename_commit_id
        self.held = 0  # requests held
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.commits = 0  # commit requests seen
        self.dropped = 0  # answers dropped
        self.refused = 0  # commits refused
        self.renamed = 0  # commit ids renamed
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            committing = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, committing), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, committing), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, committing: threading.Event) -> None:
        try:
            while data := client.recv(1 << 16):
                if self.hold is not None and self.hold.search(data):
                    with self.lock:
                        self.held += 1
                    continue  # never forwarded: the client waits for an answer that doesn't come
                if self.hold is None and self.COMMIT.search(data):
                    with self.lock:
                        action = self.actions[self.commits] if self.commits < len(self.actions) else "forward"
                        self.commits += 1
                        self.refused += action == "refuse"
                    if action == "refuse":
                        client.sendall(self.REFUSAL)
                        client.shutdown(socket.SHUT_RDWR)
                        break
                    if action == "drop":
                        committing.set()
                if self.rename_commit_id and b'"commit_id"' in data:
                    with self.lock:
                        self.renamed += 1
                    data = data.replace(b'"commit_id"', b'"commit_xx"')
                # the server answers only requests naming its own address (DNS rebinding protection)
                upstream.sendall(self.HOST.sub(b"Host: 127.0.0.1:%d" % self.upstream, data))
        except OSError:
            pass
        finally:
            upstream.close()

    def _answers(self, upstream: socket.socket, client: socket.socket, committing: threading.Event) -> None:
        try:
            while data := upstream.recv(1 << 16):
                if committing.is_set():  # the commit's answer: the server committed it; the client gets nothing
                    with self.lock:
                        self.dropped += 1
                    client.shutdown(socket.SHUT_RDWR)
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


PROXIED_JOB = """
    import json, sys
    import tracklet

    run = tracklet.init(project="inc")
    shard = tracklet.Artifact(sys.argv[1], type="dataset", incremental=True)
    shard.add_file("y.bin", name="shards/y.bin")
    run.log_artifact(shard).wait()
    run.finish()
    print(json.dumps({"server": shard._server_version, "error": str(shard.upload_error or "")}))
"""


def test_a_commit_whose_answer_is_lost_is_sent_again_and_lands_once(server, tmp_path):
    """An online run's incremental version goes through a proxy that forwards its commit to the
    server and drops the answer. The run's own client sends the commit again (it carries its
    commit id, so it may be repeated) and the server answers the version the first send made: the
    upload succeeds, numbered as that version, and the server holds one version for it."""
    name = "lost"
    _seed(tmp_path, server.url, name, {"shards/first.bin": b"first"})
    work = tmp_path / "work"
    work.mkdir()
    (work / "y.bin").write_bytes(b"y")
    proxy = DroppingProxy(server.port)
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(PROXIED_JOB), name], cwd=work,
                              env=_env(tmp_path / "machine", proxy.url), capture_output=True, text=True, timeout=120)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"server": 1, "error": ""}
    assert (proxy.commits, proxy.dropped) == (2, 1)  # sent, its answer lost, sent again
    versions = _versions(server.url, name)
    assert [sorted(version) for version in versions] == [["shards/first.bin"], ["shards/first.bin", "shards/y.bin"]]


SLOW_BASE_JOB = """
    import json, sys, warnings
    import tracklet
    from tracklet.artifacts import incremental

    incremental.BASE_WAIT_S = 0.2  # the wait for the server's base, shortened: the proxy never answers it
    run = tracklet.init(project="inc")
    shard = tracklet.Artifact(sys.argv[1], type="dataset", incremental=True)
    shard.add_file("slow.bin", name="shards/slow.bin")
    run.log_artifact(shard).wait()
    run.finish()
    print(json.dumps({"files": sorted(f.path for f in shard.files()), "base_unread": shard.base_unread,
                      "server": shard._server_version, "error": str(shard.upload_error or "")}))
"""


def test_a_version_built_without_the_servers_slow_base_is_marked_incomplete_locally(server, tmp_path):
    """The server doesn't answer the read of its latest version (a proxy holds it) within the
    artifact thread's wait: the version is built on the data root's latest (none here) and
    uploaded, and the server merges it onto its latest. Its local copy lacks the server's files,
    and says so: a warning when it is stored naming the server and `tracklet sync`, the version
    marked (``base_unread``: the server's URL), `tracklet artifact show` printing it, ``download()``
    warning; the server's version holds both."""
    name = "slow"
    _seed(tmp_path, server.url, name, {"shards/first.bin": b"first"})
    machine, work = tmp_path / "machine", tmp_path / "work"
    work.mkdir()
    (work / "slow.bin").write_bytes(b"slow")
    proxy = DroppingProxy(server.port, hold=re.compile(rb"GET [^ ]*/artifacts/slow/versions/latest HTTP"))
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(SLOW_BASE_JOB), name], cwd=work,
                              env=_env(machine, proxy.url), capture_output=True, text=True, timeout=120)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert proxy.held == 1
    told = json.loads(done.stdout.strip().splitlines()[-1])
    assert told == {"files": ["shards/slow.bin"], "base_unread": proxy.url, "server": 1, "error": ""}
    assert "could not be read" in done.stderr and "tracklet sync" in done.stderr
    assert [sorted(version) for version in _versions(server.url, name)] == [
        ["shards/first.bin"], ["shards/first.bin", "shards/slow.bin"]]
    shown = subprocess.run([sys.executable, "-m", "tracklet", "artifact", "show", f"{PROJECT}/{name}:latest"],
                           env=_env(machine, server.url), capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"incomplete:  built on this data root's latest: {proxy.url}'s latest could not be read" in shown.stdout
    local = tracklet.Api(machine).artifact(f"{PROJECT}/{name}:latest")
    assert local.base_unread == proxy.url
    with pytest.warns(tracklet.errors.TrackletWarning, match="may lack files only the server's version holds"):
        local.download(tmp_path / "copy")
    assert sorted(path.name for path in (tmp_path / "copy" / "shards").iterdir()) == ["slow.bin"]


# ---------------------------------------------------------------- every commit's id (session 32)
# Every logged version (not only incremental ones) carries a commit id, so every commit is retried by
# the client and resent by `tracklet sync` under the id it was first sent with.


def _online(machine: Path, url: str) -> tracklet.Run:
    return tracklet.init(project=PROJECT, dir=str(machine), mode="online",
                         settings={"console": "off", "capture_environment": False, "system_metrics": False,
                                   "base_url": url})


@pytest.mark.parametrize("server_ids", ["kept", "ignored"])
def test_a_plain_log_artifact_whose_answer_is_lost_is_sent_again_and_lands_once(sqlite_server, tmp_path, server_ids):
    """A plain (not incremental) ``log_artifact`` of an online run goes through a proxy that drops
    its commit's answer. The run's own client sends the commit again (every commit carries a commit
    id now) and the server answers the version the first send made: the upload succeeds and the
    server holds one version. Before, the upload failed ("not sent again") and waited for
    ``tracklet sync``. ``ignored``: the proxy renames the id on the way, as a server from before
    session 32 ignores it: the retry is still answered once (the same run's same content, the rule
    before ids), one retry, no loop."""
    name = f"plain-lost-{server_ids}"
    (tmp_path / "model.bin").write_bytes(b"weights")
    proxy = DroppingProxy(sqlite_server.port, rename_commit_id=server_ids == "ignored")
    try:
        run = _online(tmp_path / "machine", proxy.url)
        model = tracklet.Artifact(name, type="dataset")
        model.add_file(str(tmp_path / "model.bin"))
        run.log_artifact(model).wait()
        run.finish()
    finally:
        proxy.close()
    assert model.upload_error is None
    assert (model._server_version, model.reused) == (0, False)
    assert (proxy.commits, proxy.dropped) == (2, 1)  # sent, its answer lost, sent again
    assert proxy.renamed == (2 if server_ids == "ignored" else 0)
    assert _versions(sqlite_server.url, name) == [{"model.bin": model.manifest["model.bin"].digest}]


def test_sync_after_a_lost_upload_sends_the_id_that_was_sent(sqlite_server, tmp_path):
    """The re-add of a file another job removed, whose upload doesn't land (a proxy refuses the
    commit), is delivered by ``tracklet sync``: the local store reuses the run's first version for
    it (the same files), and that version now keeps the id the failed upload sent, so sync sends
    the new commit -- a new version holding the file again -- not the first one's id (which the
    server answered with the first version: the re-add was lost). Synced again: no second copy."""
    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    name = "readd-sync"
    _seed(tmp_path, sqlite_server.url, name, {"shards/first.bin": b"first"})
    work, machine = tmp_path / "work", tmp_path / "machine"
    work.mkdir()
    (work / "x.bin").write_bytes(b"the same bytes both times")
    proxy = DroppingProxy(sqlite_server.port, actions=("forward", "refuse"))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READD_JOB), name], cwd=work,
                            env=_env(machine, proxy.url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = json.loads(proc.stdout.readline() or "null")
        assert first is not None, proc.stderr.read()
        assert (first["server"], first["error"]) == (1, "")
        _remove(tmp_path, sqlite_server.url, name, "shards/x.bin")  # v2: v0's files again
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    second = json.loads(out.strip().splitlines()[-1])
    assert second["reused"] and second["server"] is None and "refused by the proxy" in second["error"]
    assert proxy.refused == 1
    local = open_store(machine).registry.version(PROJECT, name)
    assert local.version == 0 and local.commit_id == second["commit_id"] != first["commit_id"]  # the id sent
    for _ in range(2):  # synced, then synced again
        synced = CliRunner().invoke(cli, ["--dir", str(machine), "sync", "--all", "--url", sqlite_server.url, "-q"])
        assert synced.exit_code == 0, synced.output
        versions = _versions(sqlite_server.url, name)
        assert [sorted(version) for version in versions] == [
            ["shards/first.bin"], ["shards/first.bin", "shards/x.bin"], ["shards/first.bin"],
            ["shards/first.bin", "shards/x.bin"]]


@BACKENDS
def test_a_no_op_commit_sent_again_is_answered_as_it_was(server, tmp_path, monkeypatch, backend):
    """A commit that made no version (the server's latest already had its content: answered with
    that version) is sent again after another job's version landed, as a retry whose answer was
    lost or a repeated ``tracklet sync`` does: it is answered with the version the first send
    answered, for a plain version (it used to add its content again as a new version) and an
    incremental one (its increment was merged again onto the latest, bringing back a file the other
    job had removed). Its id is recorded with the version it answered (PostgreSQL: a row no alias
    listing shows, which goes with the version: deleting the version needs no ``delete_aliases``)."""
    monkeypatch.chdir(tmp_path)
    Path("model.bin").write_bytes(b"the same content")
    offline = tmp_path / "offline"
    run = tracklet.init(project=PROJECT, dir=str(offline), mode="offline",
                        settings={"console": "off", "capture_environment": False, "system_metrics": False})
    drafts = {}
    for kind in ("plain", "incremental"):
        drafts[kind] = tracklet.Artifact(f"noop-{kind}-{backend}", type="dataset", incremental=kind == "incremental")
        drafts[kind].add_file("model.bin", name="shards/model.bin")
        run.log_artifact(drafts[kind]).wait()
    run.finish()
    store = open_store(offline)
    client = ArtifactClient(HttpClient(server.url))
    try:
        for kind, draft in drafts.items():
            name = f"noop-{kind}-{backend}"
            # another job logged the same content first (with another file, for the incremental
            # version merged onto it): the server's v0
            _seed(tmp_path / f"same-{kind}", server.url, name, {"shards/model.bin": b"the same content",
                                                                **({"shards/keep.bin": b"keep"} if draft.incremental
                                                                   else {})})
            first = upload_version(client, store, draft._info, [])
            assert (first["version"]["index"], first["reused"]) == (0, True)  # no version made
            if kind == "plain":  # a job changes the collection meanwhile
                _seed(tmp_path / f"other-{kind}", server.url, name, {"shards/model.bin": b"other"}, incremental=False)
            else:
                _remove(tmp_path / f"other-{kind}", server.url, name, "shards/model.bin")
            again = upload_version(client, store, draft._info, [])  # the first answer lost: sent again
            assert (again["version"]["index"], again["reused"]) == (0, True)
            assert not any(alias.startswith("#") for alias in again["version"]["aliases"])
            assert len(_versions(server.url, name)) == 2
    finally:
        client.http.close()
    with tracklet.Api(base_url=server.url) as api:
        api.artifact(f"{PROJECT}/noop-plain-{backend}:v0").delete()  # its recorded commit id is no alias
    with tracklet.Api(base_url=server.url) as api:
        assert [version.version for version in api.artifact_versions(f"{PROJECT}/noop-plain-{backend}")] == ["v1"]
