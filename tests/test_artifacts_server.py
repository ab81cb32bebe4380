"""Artifacts in server mode (issue #15): a real `tracklet server` process, blobs on its data root or
on S3 (a real s3rver process), the client package over HTTP.

An online run's artifact reaches the server and downloads byte-identical on another data root; a
client killed mid-upload of a large blob resumes without sending its finished parts again and no
partial blob is ever visible; two processes upload one blob at once; 1,001 digests, a digest
mismatch and a reader's writes are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import serverproc
from conftest import QUIET
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem
from serverproc import REPO
from test_artifact_references import site  # noqa: F401, F811 (a loopback HTTP server with ETags)

import tracklet
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.remote import RemoteArtifacts, upload_version
from tracklet.artifacts.storage import ArtifactStore, store_lock
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.errors import ArtifactVerifyError, RemoteError

MiB = 1 << 20


@dataclasses.dataclass
class Backend:
    name: str
    extra: tuple[str, ...]
    blob_keys: Callable[[], list[str]]  # every object/file under the blob store's blobs/ (tmp included)
    pack_keys: Callable[[], list[str]]  # every pack under packs/ (small blobs of a batch, chunks)
    server: serverproc.Server | None = None  # the module's shared server on this store (``backend``)


@pytest.fixture(autouse=True)
def blob_cache(tmp_path, monkeypatch) -> Path:
    """Downloads from a server go through the machine's blob cache: one per test."""
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_DIR", str(tmp_path / "blob-cache"))
    return tmp_path / "blob-cache"


def _s3_extra(endpoint: str, prefix: str) -> tuple[str, ...]:
    return ("--artifacts", f"s3://{prefix}", "--files-option", f"endpoint_url={endpoint}",
            "--files-option", f"key={S3_KEY}", "--files-option", f"secret={S3_SECRET}")


def _blob_stores(name: str, where: Path | tuple[str, str]) -> tuple[Callable[[], list[str]], Callable[[], list[str]]]:
    """Every key under a blob store's blobs/ and every pack under its packs/: ``where`` is the local
    store's directory (a server's ``<dir>/artifacts``) or s3rver's (endpoint, prefix)."""
    if name == "local":
        assert isinstance(where, Path)
        base, packs = where / "blobs", where / "packs"
        return (lambda: sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()),
                lambda: sorted(p.name for p in packs.rglob("*.pack")))
    endpoint, prefix = where
    direct = s3_filesystem(endpoint)
    return (lambda: sorted(path[len(prefix) + len("/blobs/"):] for path in direct.find(f"{prefix}/blobs")),
            lambda: sorted(path.rsplit("/", 1)[-1] for path in direct.find(f"{prefix}/packs") if path.endswith(".pack")))


class Shared:
    """The module's `tracklet server --dev` processes, each started on first use and shared by its tests (each
    test's artifacts in projects, and registry collections, of its own; a test that needs a server's whole blob
    store to itself, or keys, starts its own): ``local()`` (blobs and a SQLite store in its data root),
    ``s3(endpoint)`` (blobs on s3rver) and ``postgresql(cluster)`` (a database of the module's own)."""

    def __init__(self, servers, base: Path) -> None:
        self.servers, self.base = servers, base
        # Started with the environment the module began with (not a test's monkeypatched one).
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        self.started: dict[str, serverproc.Server] = {}
        self.s3_prefix = f"{BUCKET}/{uuid.uuid4().hex}"
        self.database: tuple[str, str] | None = None  # (cluster URL, name)

    def _server(self, kind: str, **kwargs) -> serverproc.Server:
        if kind not in self.started:
            from unittest import mock

            with mock.patch.dict(os.environ, self.env, clear=True):
                self.started[kind] = self.servers(self.base / kind, **kwargs)
        return self.started[kind]

    def local(self) -> serverproc.Server:
        return self._server("local")

    def s3(self, endpoint: str) -> serverproc.Server:
        return self._server("s3", extra=_s3_extra(endpoint, self.s3_prefix))

    def postgresql(self, cluster: str) -> serverproc.Server:
        if self.database is None:
            from pgcluster import create_database

            self.database = (cluster, f"artifacts_server_{uuid.uuid4().hex[:12]}")
            self.url = create_database(cluster, self.database[1])
        return self._server("postgresql", store=self.url)

    def on(self, database: str, request: pytest.FixtureRequest) -> serverproc.Server:
        """The shared server on ``database`` (sqlite: ``local()``; postgresql: the session's cluster)."""
        return self.local() if database == "sqlite" else self.postgresql(request.getfixturevalue("postgres_url"))

    def close(self) -> None:
        """Stop the PostgreSQL server and drop its database (module_servers stops and checks the others)."""
        if self.database is not None:
            from pgcluster import drop_database

            self.started["postgresql"].stop()
            drop_database(*self.database)


@pytest.fixture(scope="module")
def shared(module_servers, tmp_path_factory) -> Iterator[Shared]:
    servers = Shared(module_servers, tmp_path_factory.mktemp("shared"))
    yield servers
    servers.close()


_names = iter(range(1_000_000))


def own(prefix: str) -> str:
    """A project (or registry collection) name no other test of the module uses."""
    return f"{prefix}{next(_names)}"


def _since(keys: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """``keys`` less those there already now: what the test wrote to a store the module shares."""
    before = set(keys())
    return lambda: [key for key in keys() if key not in before]


@pytest.fixture(params=["local", "s3"])
def backend(request, shared, monkeypatch) -> Backend:
    """The module's shared server (``backend.server``) with its blobs in its data root (local) or on a real
    s3rver (``--artifacts s3://...``); ``blob_keys``/``pack_keys``: the keys and packs the test added."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    if request.param == "local":
        server, extra = shared.local(), ()
        blobs, packs = _blob_stores("local", server.root / "artifacts")
    else:
        endpoint = request.getfixturevalue("s3rver")
        server, extra = shared.s3(endpoint), _s3_extra(endpoint, shared.s3_prefix)
        blobs, packs = _blob_stores("s3", (endpoint, shared.s3_prefix))
    return Backend(request.param, extra, _since(blobs), _since(packs), server)


@pytest.fixture(params=["local", "s3"])
def own_backend(request, tmp_path, monkeypatch) -> Backend:
    """For a server of the test's own at ``tmp_path / "server"`` (``extra``: its arguments): blobs in
    `<server dir>/artifacts`, or on a real s3rver under a prefix of the test's own."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    if request.param == "local":
        return Backend("local", (), *_blob_stores("local", tmp_path / "server" / "artifacts"))
    endpoint = request.getfixturevalue("s3rver")
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"
    return Backend("s3", _s3_extra(endpoint, prefix), *_blob_stores("s3", (endpoint, prefix)))


def _published(keys: list[str]) -> list[str]:
    return [key for key in keys if key.startswith("sha256/")]


def _client(url: str, state: Path | None = None, key: str | None = None, **kwargs) -> ArtifactClient:
    return ArtifactClient(HttpClient(url, api_key=key), state, **kwargs)


class Counting(httpx.HTTPTransport):
    """A real transport that remembers each request's method and path (to count what was sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return super().handle_request(request)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- round trip


def test_online_run_logs_to_the_server_and_another_root_downloads(backend, tmp_path, monkeypatch):
    server, project = backend.server, own("vision")
    data = tmp_path / "dataset"
    (data / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "empty": b""}
    for name, content in files.items():
        (data / name).write_bytes(content)
    root = tmp_path / "writer"
    run = tracklet.init(project=project, id="train1", dir=str(root), mode="online", settings={
        **QUIET, "base_url": server.url})
    artifact = tracklet.Artifact("mnist", type="dataset", metadata={"rows": 3})
    artifact.add_dir(data)
    run.log_artifact(artifact, aliases=["best"])
    artifact.wait()
    assert artifact.upload_error is None
    run.finish()

    # Another machine: a fresh data root reads it from the server and downloads it.
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        remote = api.artifact(f"{project}/mnist:best")
        assert (remote.version, remote.type, remote.metadata) == ("v0", "dataset", {"rows": 3})
        assert sorted(remote.aliases) == ["best", "latest"]
        assert remote.digest == artifact.digest
        assert remote._info.logged_by == f"{project}/train1"
        target = Path(remote.download(tmp_path / "out"))
        assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == files
        remote.verify(target)
        assert [a.version for a in api.artifact_versions(f"{project}/mnist")] == ["v0"]
        assert api.artifact_collections(project) == [{"name": "mnist", "type": "dataset", "versions": 1,
                                                       "latest": "v0", "description": "", "tags": []}]
    # The blobs landed in the server's store, and only complete ones (nothing left in tmp/).
    keys = backend.blob_keys()
    # The manifest and the empty file are objects of their own; the two other files went in one
    # batch, stored as one pack (server/artifact_packed.py).
    assert len(_published(keys)) == 2 and keys == _published(keys)
    assert len(backend.pack_keys()) == 1

    # use_artifact in another online run with a fresh root resolves on the server.
    run = tracklet.init(project=project, id="eval1", dir=str(tmp_path / "evaluator"), mode="online", settings={
        **QUIET, "base_url": server.url})
    used = run.use_artifact("mnist:latest")
    assert used.version == "v0"
    assert Path(used.download(tmp_path / "eval-out"), "sub", "b.bin").read_bytes() == files["sub/b.bin"]
    run.finish()


_ENDS_WITHOUT_FINISH = textwrap.dedent(
    """
    import sys
    import torch
    import tracklet.compat.wandb as wandb

    run = wandb.init(project=sys.argv[2], id="noend")
    model = torch.nn.Linear(700, 700)  # 1.9 MiB of weights: chunked (threshold 1 MiB) and streamed
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        loss = model(torch.randn(8, 700)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        wandb.log({"loss": loss.item()})
    torch.save(model.state_dict(), sys.argv[1])
    checkpoint = wandb.Artifact("checkpoint", type="model")
    checkpoint.add_file(sys.argv[1])
    run.log_artifact(checkpoint, aliases=["last"])
    print("script ends", flush=True)  # no wandb.finish(): finished at interpreter exit
    """
)


def test_a_checkpoint_logged_last_by_a_script_that_just_ends_reaches_the_server(backend, tmp_path):
    """W&B scripts often end without ``finish()``. The run is finished at interpreter exit, after
    threading's exit hooks stopped ``concurrent.futures``: the upload of an artifact still under
    way failed with "cannot schedule new futures after interpreter shutdown"; now exit waits for
    it (within ``finish_timeout``) while the pools still work."""
    pytest.importorskip("torch")
    server, project = backend.server, own("atexit")
    checkpoint = tmp_path / "model.ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(tmp_path / "writer"), "TRACKLET_MODE": "online",
           "TRACKLET_BASE_URL": server.url, "TRACKLET_ARTIFACT_CHUNK_THRESHOLD": "1MiB"}
    done = subprocess.run([sys.executable, "-c", _ENDS_WITHOUT_FINISH, str(checkpoint), project], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "script ends" in done.stdout
    assert "failed" not in done.stderr and "interpreter shutdown" not in done.stderr, done.stderr
    with tracklet.Api(base_url=server.url) as api:
        version = api.artifact(f"{project}/checkpoint:last")
        assert version.version == "v0" and version._info.logged_by == f"{project}/noend"
        target = Path(version.download(tmp_path / "out"))
    assert (target / "model.ckpt").read_bytes() == checkpoint.read_bytes()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_second_version_uploads_only_what_the_server_lacks(shared, tmp_path, request, database):
    """On PostgreSQL the server's versions are rows (SqlRegistry), with the same rules."""
    server, project = shared.on(database, request), own("p")
    store = ArtifactStore(tmp_path / "root")
    source = tmp_path / "src"
    source.mkdir()
    for index in range(20):
        (source / f"f{index}.bin").write_bytes(os.urandom(5000))
    from tracklet.artifacts.entries import LocalFile

    client = _client(server.url, tmp_path / "state")

    def log(aliases: list[str]) -> dict:
        pending = {p.name: LocalFile(str(p)) for p in source.iterdir()}
        result = store.commit("files", "dataset", pending, project=project, aliases=[])
        return upload_version(client, store, result.info, aliases, result.manifest)

    first = log(["prod"])
    assert first["version"]["index"] == 0 and first["version"]["aliases"] == ["v0", "latest", "prod"]
    assert first["bytes_sent"] >= 20 * 5000
    (source / "f3.bin").write_bytes(b"changed")
    second = log([])
    info = second["version"]
    assert info["index"] == 1 and info["aliases"] == ["v1", "latest"]
    manifest_size = len(store.blobs.read_bytes(info["manifest"]))
    assert second["bytes_sent"] == len(b"changed") + manifest_size  # one changed file and the manifest
    again = log([])
    assert again["reused"] and again["bytes_sent"] == 0 and again["version"]["index"] == 1
    # Aliases move; the versions read back as the registry wrote them.
    (source / "f4.bin").write_bytes(b"changed too")
    assert log(["prod"])["version"]["aliases"] == ["v2", "latest", "prod"]
    assert [v["aliases"] for v in client.versions(project, "files")] == [["v0"], ["v1"], ["v2", "latest", "prod"]]
    assert client.version(project, "files", "prod")["index"] == 2
    if database == "postgresql":
        assert not (server.root / "artifacts" / "projects").exists()  # rows, not files


# ---------------------------------------------------------------- resumable uploads, kill -9


KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from tracklet.client import artifacts
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    url, state, path, digest, kill_part, project = sys.argv[1:7]
    part = 5 << 20
    original = artifacts._FileBody.__iter__

    def dying(self):
        sent = 0
        for chunk in original(self):
            if self.start == (int(kill_part) - 1) * part and sent >= self.length // 2:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-part: half of it is on the wire
            sent += len(chunk)
            yield chunk

    artifacts._FileBody.__iter__ = dying
    client = ArtifactClient(HttpClient(url), Path(state), workers=1, part_bytes=part, resumable_bytes=part)
    client.upload_file(project, path, digest, os.path.getsize(path))
    print("not killed")
''')


def test_a_killed_upload_resumes_without_resending_finished_parts(backend, tmp_path):
    server, project = backend.server, own("p")
    big = tmp_path / "big.bin"
    data = os.urandom(4 * 5 * MiB + 12345)  # 5 parts of 5 MiB, the last short
    big.write_bytes(data)
    digest = _sha(data)
    state = tmp_path / "state"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = subprocess.run([sys.executable, str(script), server.url, str(state), str(big), digest, "3", project],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()
    # The client recorded its session and finished parts; the server holds parts 1-2 and no blob.
    (recorded,) = state.glob("*.json")
    import json

    session_id = json.loads(recorded.read_bytes())["id"]
    assert json.loads(recorded.read_bytes())["parts"] == [1, 2]
    with httpx.Client(base_url=server.url) as http:
        session = http.get(f"/api/v1/projects/{project}/artifacts/_uploads/{session_id}").json()
        assert [p["number"] for p in session["parts"]] == [1, 2] and session["part_count"] == 5
        assert http.get(f"/api/v1/projects/{project}/artifacts/_blobs/{digest}").status_code == 404
    assert _published(backend.blob_keys()) == []

    # Resumed by a new process (here: a new client): parts 3-5 and the completion only.
    transport = Counting()
    client = ArtifactClient(HttpClient(server.url, transport=transport), state, part_bytes=5 * MiB,
                            resumable_bytes=5 * MiB)
    sent = client.upload_file(project, big, digest, len(data))
    assert sent == len(data) - 2 * 5 * MiB
    parts_sent = sorted(int(path.rsplit("/", 1)[1]) for method, path in transport.sent if "/parts/" in path)
    assert parts_sent == [3, 4, 5]
    assert not list(state.glob("*.json"))  # the session is done: its record is gone
    assert _published(backend.blob_keys()) == [f"sha256/{digest[:2]}/{digest}"]
    assert client.missing(project, [digest]) == set()
    target = tmp_path / "back.bin"
    client.download(project, digest, target)
    assert target.read_bytes() == data


def test_a_broken_download_resumes_with_a_range(shared, tmp_path):
    server, project = shared.local(), own("p")
    data = os.urandom(3 * MiB + 7)
    client = _client(server.url)
    digest = client.upload_bytes(project, data)
    target = tmp_path / "blob"
    Path(str(target) + ".partial").write_bytes(data[:MiB])  # what an interrupted download left
    transport = Counting()
    ranged = ArtifactClient(HttpClient(server.url, transport=transport))
    assert ranged.download(project, digest, target) == len(data) - MiB
    assert target.read_bytes() == data and not Path(str(target) + ".partial").exists()
    # A damaged partial file is caught by the digest check and not kept.
    Path(str(target) + ".partial").write_bytes(b"x" * MiB)
    with pytest.raises(RemoteError, match="arrived damaged"):
        ranged.download(project, digest, target)
    with httpx.Client(base_url=server.url) as http:
        url = f"/api/v1/projects/{project}/artifacts/_blobs/{digest}"
        part = http.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        assert http.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
        assert http.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


# ---------------------------------------------------------------- concurrency


UPLOADER = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    url, path, digest, go, resumable, project = sys.argv[1:7]
    client = ArtifactClient(HttpClient(url), Path(path + ".state" + str(os.getpid())), workers=2,
                            part_bytes=5 << 20, resumable_bytes=int(resumable))
    while not os.path.exists(go):
        time.sleep(0.01)
    print(client.upload_file(project, path, digest, os.path.getsize(path)))
''')


@pytest.mark.parametrize("resumable", [False, True])
def test_two_processes_upload_one_blob_at_once(backend, tmp_path, resumable):
    server, project = backend.server, own("p")
    data = os.urandom(12 * MiB + 1)
    path = tmp_path / "same.bin"
    path.write_bytes(data)
    digest = _sha(data)
    script = tmp_path / "uploader.py"
    script.write_text(UPLOADER)
    go = tmp_path / "go"
    threshold = str(5 * MiB if resumable else 1 << 40)
    procs = [subprocess.Popen([sys.executable, str(script), server.url, str(path), digest, str(go), threshold, project],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert int(out) == len(data)
    keys = backend.blob_keys()
    assert keys == [f"sha256/{digest[:2]}/{digest}"]  # one copy, no temporary left
    target = tmp_path / "back"
    _client(server.url).download(project, digest, target)
    assert target.read_bytes() == data


# ---------------------------------------------------------------- refusals


def test_more_than_1000_digests_in_one_query_are_refused(shared, tmp_path):
    server, project = shared.local(), own("p")
    digests = [_sha(str(i).encode()) for i in range(2500)]
    with httpx.Client(base_url=server.url) as http:
        refused = http.post(f"/api/v1/projects/{project}/artifacts/_blobs/missing", json={"digests": digests[:1001]})
        assert refused.status_code == 400 and "at most 1000" in refused.json()["detail"]
        assert http.post(f"/api/v1/projects/{project}/artifacts/_blobs/missing",
                         json={"digests": ["nothex"]}).status_code == 400
    transport = Counting()
    client = ArtifactClient(HttpClient(server.url, transport=transport))
    assert client.missing(project, digests) == set(digests)  # the client splits the list: 3 requests
    assert len(transport.sent) == 3


def test_a_digest_mismatch_is_refused_and_nothing_is_visible(backend, tmp_path):
    server, project = backend.server, own("p")
    data = os.urandom(100_000)
    wrong = _sha(b"something else")
    with httpx.Client(base_url=server.url) as http:
        refused = http.put(f"/api/v1/projects/{project}/artifacts/_blobs/{wrong}", content=data)
        assert refused.status_code == 400
        assert f"has sha256 {_sha(data)}, not {wrong}" in refused.json()["detail"]
        assert http.get(f"/api/v1/projects/{project}/artifacts/_blobs/{wrong}").status_code == 404
        # A part whose bytes don't match the hash the client sent is not kept...
        big = os.urandom(10 * MiB)
        session = http.post(f"/api/v1/projects/{project}/artifacts/_uploads",
                            json={"digest": wrong, "size": len(big), "part_size": 5 * MiB}).json()
        base = f"/api/v1/projects/{project}/artifacts/_uploads/{session['id']}"
        bad_part = http.put(f"{base}/parts/1", content=big[:5 * MiB], headers={"X-Tracklet-Sha256": "0" * 64})
        assert bad_part.status_code == 400 and "part 1" in bad_part.json()["detail"]
        assert http.put(f"{base}/parts/2", content=big[:10]).status_code == 400  # short part
        assert http.get(base).json()["parts"] == []
        # ...and a whole that doesn't hash to the session's digest is refused at completion.
        for number in (1, 2):
            assert http.put(f"{base}/parts/{number}", content=big[(number - 1) * 5 * MiB:number * 5 * MiB]
                            ).status_code == 200
        incomplete = http.post(f"{base}/complete")
        assert incomplete.status_code == 400 and f"not {wrong}" in incomplete.json()["detail"]
        assert http.get(base).status_code == 404  # the session is dropped
        assert http.post(f"/api/v1/projects/{project}/artifacts/_blobs/missing", json={"digests": [wrong]}).json() == {
            "missing": [wrong]}
    assert _published(backend.blob_keys()) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_commit_checks_the_manifest_and_every_blob(shared, tmp_path, request, database):
    """Also on PostgreSQL: which blobs a project holds is a server table in the store's database."""
    server, project, other = shared.on(database, request), own("p"), own("q")
    client = _client(server.url)
    present = client.upload_bytes(project, b"here")
    absent = _sha(b"never uploaded")
    manifest = Manifest({"a": ManifestEntry("a", present, 4), "b": ManifestEntry("b", absent, 14)})
    manifest_blob = client.upload_bytes(project, manifest.to_bytes())
    with pytest.raises(RemoteError, match=f"1 file\\(s\\) of the manifest have no blob in project {project}: b"):
        client.commit(project, "data", {"type": "dataset", "manifest": manifest_blob})
    garbage = client.upload_bytes(project, b'{"contents": 3}')
    with pytest.raises(RemoteError, match="not a valid manifest"):
        client.commit(project, "data", {"type": "dataset", "manifest": garbage})
    with pytest.raises(RemoteError, match=f"was not uploaded to project {project}"):
        client.commit(project, "data", {"type": "dataset", "manifest": _sha(b"nothing")})
    # A blob one project holds is not another's: asking, downloading and committing all say so.
    assert client.missing(other, [present]) == {present}
    with httpx.Client(base_url=server.url) as http:
        assert http.get(f"/api/v1/projects/{other}/artifacts/_blobs/{present}").status_code == 404
    good = client.upload_bytes(project, Manifest({"a": ManifestEntry("a", present, 4)}).to_bytes())
    with pytest.raises(RemoteError, match=f"have no blob in project {other}"):
        client.upload_bytes(other, Manifest({"a": ManifestEntry("a", present, 4)}).to_bytes())
        client.commit(other, "data", {"type": "dataset", "manifest": good})
    answer = client.commit(project, "data", {"type": "dataset", "manifest": good, "aliases": ["prod"]})
    assert answer["version"]["aliases"] == ["v0", "latest", "prod"] and not answer["reused"]
    with pytest.raises(RemoteError, match="has type 'dataset'"):
        client.commit(project, "data", {"type": "model", "manifest": good})
    with pytest.raises(RemoteError, match="artifact type 'new\\\\nline' is not valid: it has a control character"):
        client.commit(project, "other", {"type": "new\nline", "manifest": good})
    with pytest.raises(RemoteError, match="alias 'v7' is not allowed"):
        client.commit(project, "data", {"type": "dataset", "manifest": good, "aliases": ["v7"]})


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args)


def test_a_reader_can_download_but_not_upload(servers, tmp_path):
    root = tmp_path / "server"
    created = _cli("admin", "--dir", str(root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip()
    server = servers(root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        reader = http.post("/api/v1/users", json={"name": "reader"}).json()["key"]
        assert http.put("/api/v1/projects/p/members/reader", json={"role": "read"}).status_code in (200, 204)
    writer = _client(server.url, key=admin)
    data = b"model weights"
    digest = writer.upload_bytes("p", data)
    manifest = writer.upload_bytes("p", Manifest({"w": ManifestEntry("w", digest, len(data))}).to_bytes())
    writer.commit("p", "model", {"type": "model", "manifest": manifest})

    as_reader = _client(server.url, key=reader)
    for attempt in (lambda: as_reader.upload_bytes("p", b"mine"), lambda: as_reader.missing("p", [digest]),
                    lambda: as_reader.commit("p", "model", {"type": "model", "manifest": manifest})):
        with pytest.raises(RemoteError, match="HTTP 403"):
            attempt()
    assert as_reader.version("p", "model", "latest")["version"] == "v0"
    as_reader.download("p", digest, tmp_path / "w")
    assert (tmp_path / "w").read_bytes() == data
    # A user's first artifact upload creates the project, with them as its admin: others can't read it.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        alice = http.post("/api/v1/users", json={"name": "alice"}).json()["key"]
    as_alice = _client(server.url, key=alice)
    secret = as_alice.upload_bytes("secret", b"private")
    with pytest.raises(RemoteError, match="HTTP 403"):
        as_reader.versions("secret", "model")
    with pytest.raises(RemoteError, match="HTTP 403"):
        as_reader.download("secret", secret, tmp_path / "stolen")
    with pytest.raises(RemoteError, match="HTTP 403"):  # nor write to a project she isn't a member of
        as_alice.upload_bytes("p", b"mine")
    remote = RemoteArtifacts(as_reader, tmp_path / "reader-root")
    assert Path(remote.artifact("p/model").download(tmp_path / "dl"), "w").read_bytes() == data


def test_sync_sends_an_offline_runs_artifacts_once(shared, tmp_path, monkeypatch, capfd):
    server, project = shared.local(), own("nlp")
    root = tmp_path / "offline"
    run = tracklet.init(project=project, id="r1", dir=str(root), settings=QUIET)
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(50_000))
    run.log_artifact(str(model), name="model", type="model", aliases=["candidate"]).wait()
    model.write_bytes(os.urandom(50_000))
    run.log_artifact(str(model), name="model", type="model").wait()
    run.finish()
    for _ in range(2):  # a second sync adds no version (v0 is not the latest, and is not sent again)
        synced = _cli("--dir", str(root), "sync", f"{project}/r1", "--url", server.url, "--quiet")
        assert synced.returncode == 0, synced.stderr
    client = _client(server.url)
    versions = client.versions(project, "model")
    assert [v["aliases"] for v in versions] == [["v0", "candidate"], ["v1", "latest"]]
    assert {v["logged_by"] for v in versions} == {f"{project}/r1"}
    # `tracklet artifact push` sends a version logged outside any run.
    extra = tmp_path / "notes.txt"
    extra.write_text("notes")
    assert _cli("--dir", str(root), "artifact", "put", str(extra), "--project", project, "-q").returncode == 0
    pushed = _cli("--dir", str(root), "artifact", "push", f"{project}/notes.txt:latest", "--url", server.url)
    assert pushed.returncode == 0, pushed.stderr
    assert f"{project}/notes.txt:v0" in pushed.stdout
    # finish() waits for an artifact still being stored only within its timeout (here a collection
    # holds the store's lock, so the commit can't start), says so, and returns; the version is
    # committed whole once it can, and `tracklet sync` sends it.
    late = tracklet.init(project=project, id="r2", dir=str(root), settings={**QUIET, "finish_timeout": 0.5})
    dataset = tmp_path / "shard.bin"
    dataset.write_bytes(os.urandom(50_000))
    with store_lock(ArtifactStore(root).directory, exclusive=True):
        pending = late.log_artifact(str(dataset), name="shard", type="dataset")
        late.finish()
        assert "artifacts still being stored at finish" in capfd.readouterr().err
        assert pending.state != "committed"
    pending.wait(60)
    synced = _cli("--dir", str(root), "sync", f"{project}/r2", "--url", server.url, "--quiet")
    assert synced.returncode == 0, synced.stderr
    [shard] = client.versions(project, "shard")
    assert shard["logged_by"] == f"{project}/r2"
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "elsewhere"))
    with tracklet.Api(base_url=server.url) as api:
        notes = api.artifact(f"{project}/notes.txt")
        assert Path(notes.download(tmp_path / "n"), "notes.txt").read_text() == "notes"
        shard_back = api.artifact(f"{project}/shard:latest")
        assert Path(shard_back.download(tmp_path / "s"), "shard.bin").read_bytes() == dataset.read_bytes()


def test_abandoned_upload_sessions_are_swept(tmp_path):
    from tracklet.server.artifact_blobs import ServerArtifacts

    artifacts = ServerArtifacts(tmp_path / "server")
    data = os.urandom(6 * MiB)
    old = artifacts.start("p", _sha(data), len(data), 5 * MiB)
    artifacts.put_part(old, 1, data[:5 * MiB], None)
    assert artifacts.sweep_uploads(max_age=3600) == 0  # young: kept
    assert list(artifacts.parts(old)) == [1]
    assert artifacts.sweep_uploads(max_age=0) == 1
    assert not (tmp_path / "server" / "artifacts" / "uploads" / old.id).exists()
    from tracklet.server.artifact_blobs import NotHeld

    with pytest.raises(NotHeld):
        artifacts.session("p", old.id)


def test_a_batch_stores_each_good_blob_and_rejects_each_bad_one(backend, tmp_path):
    server, project = backend.server, own("p")
    good = [os.urandom(1000 + i) for i in range(5)]
    bad = os.urandom(500)
    frames = [(_sha(data), data) for data in good[:2]] + [(_sha(b"other"), bad)] + [(_sha(d), d) for d in good[2:]]
    body = b"".join(digest.encode() + len(data).to_bytes(8, "big") + data for digest, data in frames)
    with httpx.Client(base_url=server.url) as http:
        answer = http.post(f"/api/v1/projects/{project}/artifacts/_blobs/batch", content=body).json()
        assert answer["stored"] == [_sha(d) for d in good]
        assert [item["digest"] for item in answer["rejected"]] == [_sha(b"other")]
        assert f"has sha256 {_sha(bad)}" in answer["rejected"][0]["detail"]
        cut = http.post(f"/api/v1/projects/{project}/artifacts/_blobs/batch", content=body[:-10])
        assert cut.status_code == 400 and "more than the body holds" in cut.json()["detail"]
    assert _published(backend.blob_keys()) == [] and len(backend.pack_keys()) == 1  # the good ones, in one pack
    with httpx.Client(base_url=server.url) as http:
        for data in good:
            assert http.get(f"/api/v1/projects/{project}/artifacts/_blobs/{_sha(data)}").content == data
    # The client sends small files many to a request, and names a file whose bytes changed.
    paths = []
    for index in range(30):
        path = tmp_path / f"small{index}"
        path.write_bytes(os.urandom(2000))
        paths.append((str(path), _sha(path.read_bytes()), 2000))
    transport = Counting()
    client = ArtifactClient(HttpClient(server.url, transport=transport))
    assert client.upload_files(project, paths) == 30 * 2000
    assert transport.sent == [("POST", f"/api/v1/projects/{project}/artifacts/_blobs/batch")]
    Path(paths[3][0]).write_bytes(b"changed since hashed")
    with pytest.raises(RemoteError, match=f"refused 1 blob\\(s\\): {paths[3][0]}"):
        client.upload_files(project, paths)


@pytest.mark.parametrize("resumable", [False, True])
def test_a_large_file_goes_to_the_server_whole(shared, tmp_path, resumable):
    """With ``chunks=False`` (what a server without chunk routes gets) a large file stored whole is
    sent whole (in resumable parts, or one request); another root gets it. A chunked file goes as
    chunks (tests/test_artifacts_chunks_server.py; an old sha256-named one can go whole, there)."""
    from tracklet.artifacts.entries import LocalFile

    server, project = shared.local(), own("p")
    store = ArtifactStore(tmp_path / "root", chunk_threshold=64 << 20)
    data = os.urandom(11 * MiB + 3)
    (tmp_path / "ckpt.bin").write_bytes(data)
    result = store.commit("ckpt", "model", {"ckpt.bin": LocalFile(str(tmp_path / "ckpt.bin"))}, project=project,
                          aliases=[])
    (entry,) = result.manifest
    assert "recipe" not in entry.extra and store.blobs.has(entry.digest)
    client = ArtifactClient(HttpClient(server.url), tmp_path / "state", part_bytes=5 * MiB,
                            resumable_bytes=5 * MiB if resumable else 1 << 40)
    answer = upload_version(client, store, result.info, [], result.manifest, chunks=False)
    assert answer["version"]["digest"] == result.info.digest
    served = Manifest.from_bytes(client.read(project, answer["version"]["manifest"]))
    assert [dict(e.extra) for e in served] == [{}]
    remote = RemoteArtifacts(client, tmp_path / "other-root")
    assert Path(remote.artifact(f"{project}/ckpt").download(tmp_path / "out"), "ckpt.bin").read_bytes() == data


def test_downloads_go_through_the_capped_blob_cache(shared, tmp_path):
    from tracklet.artifacts.cache import BlobCache

    server, project = shared.local(), own("p")
    writer = _client(server.url)
    files = {"small.txt": b"tiny", "big.bin": os.urandom(200_000)}
    entries = {name: ManifestEntry(name, writer.upload_bytes(project, data), len(data)) for name, data in files.items()}
    writer.commit(project, "data", {"type": "dataset", "manifest": writer.upload_bytes(project, Manifest(entries).to_bytes())})

    transport = Counting()
    reader = ArtifactClient(HttpClient(server.url, transport=transport))
    cache = BlobCache(tmp_path / "cache", cap_bytes=1 << 20)
    remote = RemoteArtifacts(reader, tmp_path / "root", cache=cache)
    for target in ("one", "two"):  # the second download reads the cache, not the server
        out = Path(remote.artifact(f"{project}/data").download(tmp_path / target))
        assert {name: (out / name).read_bytes() for name in files} == files
    blob_gets = [path for method, path in transport.sent if "/_blobs/" in path and method == "GET"]
    assert len(blob_gets) == 1 + 2  # the manifest once (kept parsed), each file's blob once
    assert cache.has(entries["big.bin"].digest)

    # A cache too small for a file is never overfilled: that file goes straight to its place.
    tiny = BlobCache(tmp_path / "tiny-cache", cap_bytes=1000)
    out = Path(RemoteArtifacts(reader, tmp_path / "root2", cache=tiny).artifact(f"{project}/data").download(tmp_path / "three"))
    assert (out / "big.bin").read_bytes() == files["big.bin"]
    assert not tiny.has(entries["big.bin"].digest) and tiny.has(entries["small.txt"].digest)
    assert sum(p.stat().st_size for p in (tmp_path / "tiny-cache" / "blobs").rglob("*") if p.is_file()) <= 1000
    assert not [p for p in out.rglob("*.partial")]


def test_sql_registry_numbers_versions_once_across_processes(pg_url, tmp_path):
    """Several server processes (here: registries with locks of their own, on threads) commit to
    one collection at once: every version gets its own number, and one alias names one version."""
    from concurrent.futures import ThreadPoolExecutor

    from tracklet.artifacts.registry import VersionInfo
    from tracklet.server.artifact_registry_sql import SqlRegistry
    from tracklet.server.schema import migrate
    from tracklet.store import Store

    store = Store(pg_url, root=tmp_path)
    migrate(store.engine)
    registries = [SqlRegistry(store.engine) for _ in range(4)]

    def commit(index: int) -> int:
        info = VersionInfo(project="p", name="model", version=-1, type="model", digest=_sha(str(index).encode()),
                           manifest=_sha(b"m" + str(index).encode()), size=index, file_count=1,
                           metadata={"i": index})
        stored, reused = registries[index % 4].commit(info, ["best"])
        assert not reused and stored.metadata == {"i": index}
        return stored.version

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(commit, range(16)))
    assert sorted(numbers) == list(range(16))
    versions = registries[0].versions("p", "model")
    assert [v.version for v in versions] == list(range(16))
    assert sum("best" in v.aliases for v in versions) == 1 and "latest" in versions[-1].aliases
    store.close()


def test_use_artifact_online_falls_back_to_the_local_store_when_the_server_is_down(tmp_path):
    root = tmp_path / "root"
    (tmp_path / "data.txt").write_text("local")
    artifact = tracklet.Artifact("data", type="dataset")
    artifact.add_file(tmp_path / "data.txt")
    artifact.save("p", root=root)
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={
        **QUIET, "base_url": "http://127.0.0.1:9", "upload_timeout": 0.1})  # nothing listens on port 9
    used = run.use_artifact("data:latest")
    assert used.version == "v0"
    assert Path(used.download(tmp_path / "out"), "data.txt").read_text() == "local"
    with pytest.raises(RemoteError, match="127.0.0.1:9"):  # neither here nor reachable: the server's error
        run.use_artifact("missing:latest")
    run.finish()


def test_a_server_version_fetches_its_http_references_from_where_they_live(shared, site, tmp_path, monkeypatch):  # noqa: F811
    served, base = site
    weights = os.urandom(200_000)
    served.put("/models/weights.bin", weights)
    server, project = shared.local(), own("vision")
    run = tracklet.init(project=project, id="ref1", dir=str(tmp_path / "writer"), mode="online", settings={
        **QUIET, "base_url": server.url})
    artifact = tracklet.Artifact("model", type="model")
    artifact.add_reference(f"{base}/models/weights.bin")
    with artifact.new_file("card.txt") as f:
        f.write("a model card\n")
    run.log_artifact(artifact)
    artifact.wait()
    assert artifact.upload_error is None
    run.finish()

    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        remote = api.artifact(f"{project}/model:latest")
        target = Path(remote.download(tmp_path / "out"))
        assert (target / "weights.bin").read_bytes() == weights  # fetched from the site, not the server
        assert (target / "card.txt").read_text() == "a model card\n"

        served.put("/models/weights.bin", os.urandom(200_000))  # the object changed since it was logged
        with pytest.raises(ArtifactVerifyError, match="weights.bin"):
            remote.download(tmp_path / "changed")
        del served.files["/models/weights.bin"]  # and then it is gone
        with pytest.raises(ArtifactVerifyError, match="weights.bin"):
            remote.download(tmp_path / "gone")
        skipped = Path(remote.download(tmp_path / "skipped", allow_missing_references=True))
        assert not (skipped / "weights.bin").exists() and (skipped / "card.txt").is_file()


def _online_versions(server, project: str, root: Path, tmp_path: Path, contents: list[bytes], first: int = 0) -> list[tracklet.Artifact]:
    """Versions of ``PROJECT/m`` an online run logged to ``server`` (one per content, in order,
    numbered from ``first`` on the server)."""
    run = tracklet.init(project=project, dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    logged = []
    for index, content in enumerate(contents):
        (tmp_path / "m.bin").write_bytes(content)
        logged.append(run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait())
        assert logged[-1].upload_error is None and logged[-1]._server_version == first + index
    run.finish()
    return logged


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_servers_versions_move_aliases_and_are_deleted_by_the_same_code_as_local_ones(shared, tmp_path, monkeypatch,
                                                                                        request, database):
    """``aliases.append`` + ``save()`` and ``delete()`` on a version of a server's project (read
    through ``Api(base_url=)``, or logged by an online run) go to the server, with the local
    store's rules: one version per alias, ``latest``/``vN`` fixed, an alias removed from a stale
    view stays where someone moved it, custom aliases need ``delete_aliases``, a registered
    version is refused, a deleted number is never given again, its blobs stay for the GC."""
    import warnings

    from tracklet.errors import ArtifactError, ArtifactNameError, ArtifactNotFound

    server, project = shared.on(database, request), own("vision")
    writer = tmp_path / "writer"
    logged = _online_versions(server, project, writer, tmp_path, [b"v0", b"v1", b"v2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "the server's copy keeps its aliases" any more
        logged[0].aliases.append("best")
        logged[0].save()
    assert tracklet.Api(writer).artifact(f"{project}/m:best").version == "v0"  # the local store's copy moved too
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        assert api.artifact(f"{project}/m:best").version == "v0"
        one, stale = api.artifact(f"{project}/m:v1"), api.artifact(f"{project}/m:v0")
        one.aliases.append("best")
        one.save()
        assert one.aliases == ["best"] and api.artifact(f"{project}/m:best").version == "v1"
        assert api.artifact(f"{project}/m:v0").aliases == []  # moved, not copied: one version per alias
        stale.aliases.remove("best")  # this view still shows best on v0; it is on v1 now
        stale.save()
        assert api.artifact(f"{project}/m:best").version == "v1"
        with pytest.raises(ArtifactNameError):
            one.aliases.append("v7")
            one.save()
        one.aliases = ["best"]
        latest = api.artifact(f"{project}/m:latest")
        latest.aliases.remove("latest")
        with pytest.raises(ArtifactError, match="'latest' always names the newest version"):
            latest.save()
        client = _client(server.url)
        with pytest.raises(ArtifactError, match="'latest' always names the newest version"):
            client.save_aliases(project, "m", 1, [], ["latest"])
        with pytest.raises(ArtifactError, match="alias 'v7' is not allowed"):
            client.save_aliases(project, "m", 1, ["v7"], [])
        with pytest.raises(ArtifactNotFound, match=f"{project}/m:v9 does not exist"):
            client.save_aliases(project, "m", 9, ["best"], [])

        two = api.artifact(f"{project}/m:v2")
        two.aliases.append("best")
        two.save()
        with pytest.raises(ArtifactError, match=r"has alias.*best.*\(delete\(delete_aliases=True\)"):
            two.delete()
        assert api.artifact(f"{project}/m:best").version == "v2"  # a refused delete changes nothing
        file_digest = two.manifest.entries["m.bin"].digest
        two.delete(delete_aliases=True)
        with pytest.raises(ArtifactNotFound, match=rf"{project}/m:v2 was deleted \(`tracklet artifact rm`"):
            api.artifact(f"{project}/m:v2")
        with pytest.raises(ArtifactNotFound):
            api.artifact(f"{project}/m:best")
        assert api.artifact(f"{project}/m:latest").version == "v1"
        assert client.read(project, file_digest) == b"v2"  # its blobs stay until artifact-gc

        collection = own("m")  # the registry is the server's: a collection of the test's own
        one.link(f"model/{collection}")
        with pytest.raises(ArtifactError, match=f"is registered as model/{collection}:v0"):
            api.artifact(f"{project}/m:v1").delete()
        assert api.artifact(f"{project}/m:v1").version == "v1"

    _online_versions(server, project, writer, tmp_path, [b"v3"], first=3)  # v2's number is never given again
    with pytest.raises(ArtifactError, match=r"has alias.*best.*\(delete\(delete_aliases=True\)"):  # best: v0's still
        logged[0].delete()
    with tracklet.Api(base_url=server.url) as api:
        assert api.artifact(f"{project}/m:v0").version == "v0"  # refused before the server's copy was touched
    logged[0].delete(delete_aliases=True)  # an online run's version: the server's copy and the local one
    with tracklet.Api(base_url=server.url) as api:
        with pytest.raises(ArtifactNotFound):
            api.artifact(f"{project}/m:v0")
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(writer).artifact(f"{project}/m:v0")
    with httpx.Client(base_url=server.url) as http:
        events = http.get("/api/v1/audit", params={"project": project, "limit": 1000}).json()["events"]
    actions = [(event["action"], event["target"].rsplit("/", 1)[-1], event["status"]) for event in events
               if event["action"] in ("save_version_aliases", "delete_version")]
    assert [entry for entry in actions if entry[0] == "delete_version"] == [
        ("delete_version", "v2", 409), ("delete_version", "v2", 200), ("delete_version", "v1", 409),
        ("delete_version", "v0", 200)]  # each as answered: a refusal is audited as one
    assert [status for action, _, status in actions if action == "save_version_aliases"] == [
        200, 200, 200, 400, 400, 404, 200]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_artifact_rm_with_url_deletes_a_servers_version_with_the_servers_rules(shared, tmp_path, request, database):
    """``tracklet artifact rm REF --url URL`` deletes the server's version (REF's alias resolved
    there), never the data root's: custom aliases need --force, a version the server's registry
    links is refused with --force too, a deleted one is gone for good (404 after)."""
    server, project, collection = shared.on(database, request), own("vision"), own("m")
    writer = tmp_path / "writer"
    _online_versions(server, project, writer, tmp_path, [b"v0", b"v1", b"v2"])
    client = _client(server.url)
    client.save_aliases(project, "m", 1, ["best"], [])
    with httpx.Client(base_url=server.url) as http:
        assert http.post(f"/api/v1/registries/model/collections/{collection}/links",
                         json={"project": project, "name": "m", "version": 0}).status_code == 200
    rm = ("--dir", str(writer), "artifact", "rm")

    refused = _cli(*rm, f"{project}/m:best", "--url", server.url)
    assert refused.returncode != 0 and "has alias(es) best" in refused.stderr, refused.stderr
    forced = _cli(*rm, f"{project}/m:best", "--url", server.url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"deleted {project}/m:v1 on {server.url} (aliases dropped: best)" in forced.stdout
    linked = _cli(*rm, f"{project}/m:v0", "--url", server.url, "--force")
    assert linked.returncode != 0 and f"is registered as model/{collection}:v0" in linked.stderr, linked.stderr
    assert _cli(*rm, f"{project}/m:v2", "--url", server.url).returncode == 0
    gone = _cli(*rm, f"{project}/m:v2", "--url", server.url)
    assert gone.returncode != 0 and f"{project}/m:v2" in gone.stderr
    assert not [run for run in (refused, linked, gone) if "Traceback" in run.stderr]  # a clear error, each

    assert [version["index"] for version in client.versions(project, "m")] == [0]
    local = tracklet.Api(writer)  # the data root's copies are not the server's: untouched
    assert [local.artifact(f"{project}/m:v{n}").version for n in range(3)] == ["v0", "v1", "v2"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_clients_moving_one_alias_at_once_leave_it_on_one_version(shared, tmp_path, request, database):
    """Each move is one locked transaction of the collection: whatever the interleaving, the alias
    always names one version (a reader never finds it missing mid-move), one version holds it
    once the moves are done, and the last move wins."""
    from concurrent.futures import ThreadPoolExecutor

    server, project = shared.on(database, request), own("vision")
    _online_versions(server, project, tmp_path / "writer", tmp_path, [b"a", b"b"])
    clients = [_client(server.url), _client(server.url)]

    def move(target: int) -> set[int]:
        seen = set()
        for _ in range(15):
            clients[target].save_aliases(project, "m", target, ["best"], [])
            seen.add(clients[target].version(project, "m", "best")["index"])  # found, on some version
        return seen

    with ThreadPoolExecutor(2) as pool:
        assert set().union(*pool.map(move, [0, 1])) <= {0, 1}
    holders = [v["index"] for v in clients[0].versions(project, "m") if "best" in v["aliases"]]
    assert len(holders) == 1
    clients[1].save_aliases(project, "m", 1, ["best"], [])  # the last writer wins
    assert clients[0].version(project, "m", "best")["index"] == 1


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_deletion_sent_again_after_its_answer_was_lost_finds_its_work_done(shared, tmp_path, request, database):
    """A deleted version answers 410, not 404 (review: a retried DELETE whose first attempt had
    committed raised "not found" and left an online run's local copy behind). An online run's
    version whose server copy is gone already is deleted locally and the call succeeds; a
    server's version deleted twice says it was deleted; one that never existed is still 404."""
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient
    from tracklet.errors import ArtifactDeleted, ArtifactNotFound

    server, project = shared.on(database, request), own("vision")
    writer = tmp_path / "writer"
    logged = _online_versions(server, project, writer, tmp_path, [b"v0", b"v1"])
    client = ArtifactClient(HttpClient(server.url))
    client.delete_version(project, "m", 0)  # the first attempt: done, its answer lost
    logged[0].delete()  # the online run's call: the server's copy is gone already, so only the local one goes
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(writer).artifact(f"{project}/m:v0")
    with pytest.raises(ArtifactDeleted, match=f"{project}/m:v0 was deleted"):
        client.delete_version(project, "m", 0)
    with pytest.raises(ArtifactNotFound) as never:
        client.delete_version(project, "m", 7)
    assert not isinstance(never.value, ArtifactDeleted)
    with tracklet.Api(base_url=server.url) as api:
        assert api.artifact(f"{project}/m:latest").version == "v1"


def test_artifact_gc_reclaims_a_failed_commit_s_blobs_and_a_killed_server_s_leftovers_after_the_grace_period(
        servers, own_backend, tmp_path, request):
    """What a refused commit uploaded (granted, no version), a blob object a server killed before
    its grant left (no grant at all) and temporaries a killed writer left stay within the grace
    period (an upload may be in flight) and go after it; a committed version reads back."""
    backend = own_backend  # the GC reads every blob of its server's store: a server of its own
    server = servers(tmp_path / "server", extra=backend.extra)
    client = _client(server.url)
    kept = os.urandom(200_000)
    good = client.upload_bytes("p", Manifest({"w.bin": ManifestEntry("w.bin", client.upload_bytes("p", kept),
                                                                     len(kept))}).to_bytes())
    client.commit("p", "model", {"type": "model", "manifest": good})
    failed = [client.upload_bytes("p", os.urandom(300_000)) for _ in range(4)]
    manifest = Manifest({f"f{n}": ManifestEntry(f"f{n}", digest, 300_000) for n, digest in enumerate(failed)}
                        | {"lost": ManifestEntry("lost", _sha(b"never sent"), 10)})
    with pytest.raises(RemoteError, match="have no blob in project p"):
        client.commit("p", "data", {"type": "dataset", "manifest": client.upload_bytes("p", manifest.to_bytes())})
    orphan = os.urandom(100_000)
    leftovers = {f"sha256/{_sha(orphan)[:2]}/{_sha(orphan)}": orphan, "tmp/0123abcd.partial": b"x" * 5000}
    if backend.name == "local":
        base = tmp_path / "server" / "artifacts"
        for key, data in leftovers.items():
            (base / "blobs" / key).parent.mkdir(parents=True, exist_ok=True)
            (base / "blobs" / key).write_bytes(data)
        (base / "packs" / "tmp").mkdir(parents=True, exist_ok=True)
        (base / "packs" / "tmp" / "dead.partial").write_bytes(b"p" * 7000)
    else:
        direct = s3_filesystem(request.getfixturevalue("s3rver"))
        prefix = backend.extra[1][len("s3://"):]
        for key, data in leftovers.items():
            direct.pipe(f"{prefix}/blobs/{key}", data)
        direct.pipe(f"{prefix}/packs/tmp/dead.partial", b"p" * 7000)
    before = backend.blob_keys()
    assert set(leftovers) <= set(before) and {f"sha256/{d[:2]}/{d}" for d in failed} <= set(before)

    def gc(*args: str) -> str:
        ran = serverproc.cli("admin", "--dir", str(server.root), "artifact-gc", *backend.extra, *args)
        assert ran.returncode == 0, ran.stderr
        return ran.stdout

    gc("--grace", "1h")  # everything is younger: kept
    assert backend.blob_keys() == before and client.missing("p", failed) == set()
    dry = gc("--grace", "0", "--dry-run")
    assert "0123abcd.partial" in dry and "dead.partial" in dry and _sha(orphan) in dry, dry
    assert backend.blob_keys() == before
    out = gc("--grace", "0")
    assert "removed 6 blob(s)" in out and "2 stale temporary file(s) (12,000 bytes) removed" in out, out
    assert set(backend.blob_keys()) == {f"sha256/{d[:2]}/{d}" for d in (good, _sha(kept))}
    assert client.read("p", _sha(kept)) == kept
