"""Chunk-level artifact uploads to a tracking server (issue #15): a real `tracklet server` process,
blobs and packs on its data root or on S3 (a real s3rver process).

A file the local store keeps as chunks goes to the server as the chunks the project lacks, in
packs, then its recipe and a registration the server checks by rebuilding the file: a second
version of a checkpoint with 5% of its bytes changed sends about 5% of them (bytes counted on the
wire); a client killed mid-upload resumes and sends only the packs the server lacks; a pack with a
corrupt chunk and a recipe that doesn't rebuild its file are refused; downloads (ranged) give the
file back byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import serverproc
from serverproc import REPO
from test_artifacts_server import Backend, own_backend, blob_cache  # noqa: F401 (fixtures)

from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.packs import build_pack
from tracklet.artifacts.remote import RemoteArtifacts, upload_chunked, upload_version
from tracklet.artifacts.storage import ArtifactStore
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.errors import ArtifactError, ArtifactNotFound, RemoteError


@pytest.fixture
def backend(own_backend):  # noqa: F811 (a fixture)
    """A server of the test's own, which the test starts with ``backend.extra`` (test_artifacts_server's
    ``own_backend``; its ``backend`` is that module's shared server)."""
    return own_backend


MiB = 1 << 20
TENSORS = 40
TENSOR = MiB  # a 40 MiB "checkpoint" of 40 tensors of 1 MiB: 2 changed tensors are 5% of it


class Wire(httpx.HTTPTransport):
    """A real transport that counts every request and the bytes of every request body."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self.body_bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        self.body_bytes += int(request.headers.get("content-length", "0"))
        return super().handle_request(request)


def _checkpoint(path: Path, tensors: list[bytes]) -> bytes:
    data = b"".join(tensors)
    path.write_bytes(data)
    return data


def _commit(store: ArtifactStore, path: Path):
    return store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(path))}, project="p", aliases=[])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b3(data: bytes) -> str:
    """A chunked file's digest: ``blake3:`` and the BLAKE3 of its bytes."""
    import blake3

    return "blake3:" + blake3.blake3(data).hexdigest()


def test_a_second_version_sends_only_the_changed_chunks(servers, backend, tmp_path):  # noqa: F811
    server = servers(tmp_path / "server", extra=backend.extra)
    store = ArtifactStore(tmp_path / "root", chunk_threshold=MiB)
    tensors = [os.urandom(TENSOR) for _ in range(TENSORS)]
    path = tmp_path / "model.ckpt"
    v1 = _checkpoint(path, tensors)
    wire = Wire()
    client = ArtifactClient(HttpClient(server.url, transport=wire), tmp_path / "state")

    first = upload_version(client, store, _commit(store, path).info, [])
    first_wire = wire.body_bytes
    assert first_wire >= len(v1)  # every chunk once (plus the recipe, the manifest, the queries)
    assert any("/_packs/" in p for _, p in wire.sent) and not any("/_uploads" in p for _, p in wire.sent)

    tensors[7], tensors[23] = os.urandom(TENSOR), os.urandom(TENSOR)  # 5% of the bytes
    v2 = _checkpoint(path, tensors)
    wire.body_bytes = 0
    second = upload_version(client, store, _commit(store, path).info, [])
    assert second["version"]["index"] == 1
    # What changed (5%), the chunks cut across its edges, the recipe, the chunk query: under 8%.
    assert 0.05 * len(v2) <= wire.body_bytes <= 0.08 * len(v2), wire.body_bytes / len(v2)
    assert second["bytes_sent"] <= wire.body_bytes

    # The server's manifest keeps the recipe; another root downloads both versions byte for byte.
    served = Manifest.from_bytes(client.read("p", second["version"]["manifest"]))
    assert "recipe" in served["model.ckpt"].extra
    remote = RemoteArtifacts(ArtifactClient(HttpClient(server.url)), tmp_path / "reader")
    for selector, data in (("v0", v1), ("v1", v2)):
        out = Path(remote.artifact(f"p/ckpt:{selector}").download(tmp_path / selector))
        assert (out / "model.ckpt").read_bytes() == data
    # Sending v1 again sends nothing but queries.
    wire.body_bytes = 0
    again = upload_version(client, store, store.registry.version("p", "ckpt", "v0"), [])
    assert again["bytes_sent"] == 0 and wire.body_bytes < 0.01 * len(v1)
    assert first["bytes_sent"] >= len(v1)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_chunked_file_downloads_in_ranges(servers, tmp_path, request, database):
    """On PostgreSQL the chunks and files the project holds are rows of the deployment's database."""
    server = servers(tmp_path / "server", store=request.getfixturevalue("pg_url") if database == "postgresql" else None)
    store = ArtifactStore(tmp_path / "root", chunk_threshold=MiB)
    path = tmp_path / "model.ckpt"
    data = _checkpoint(path, [os.urandom(3 * MiB + 777)])
    answer = upload_version(ArtifactClient(HttpClient(server.url)), store, _commit(store, path).info, [])
    digest = _b3(data)
    url = f"/api/v1/projects/p/artifacts/_blobs/{digest}"
    with httpx.Client(base_url=server.url) as http:
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == data
        for start, end in ((0, 0), (100_000, 1_500_000), (len(data) - 5, len(data) - 1)):
            part = http.get(url, headers={"Range": f"bytes={start}-{end}"})
            assert part.status_code == 206 and part.content == data[start:end + 1]
            assert part.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert http.get(url, headers={"Range": "bytes=-10"}).content == data[-10:]
        # Another project holds none of it.
        assert http.get(f"/api/v1/projects/q/artifacts/_blobs/{digest}").status_code == 404
    assert answer["version"]["size"] == len(data)


def test_a_corrupt_chunk_or_a_wrong_recipe_is_refused(servers, backend, tmp_path):  # noqa: F811
    import blake3

    from tracklet.artifacts.chunking import FileRecipe

    server = servers(tmp_path / "server", extra=backend.extra)
    chunks = [os.urandom(50_000 + i) for i in range(4)]
    ids = [blake3.blake3(c).digest() for c in chunks]
    client = ArtifactClient(HttpClient(server.url))
    pack_id, good = build_pack(list(zip(ids, chunks)))
    bad = bytearray(good)
    bad[120_000] ^= 1  # inside the third chunk; the index is intact
    with httpx.Client(base_url=server.url) as http:
        refused = http.put(f"/api/v1/projects/p/artifacts/_packs/{pack_id}", content=bytes(bad))
        assert refused.status_code == 400
        assert f"chunk {ids[2].hex()} at byte" in refused.json()["detail"]
        renamed = http.put(f"/api/v1/projects/p/artifacts/_packs/{'0' * 64}", content=good)
        assert renamed.status_code == 400 and "not its name" in renamed.json()["detail"]
    if backend.name == "local":
        assert not list((tmp_path / "server" / "artifacts").rglob("*.pack"))
    assert client.missing_chunks("p", [i.hex() for i in ids]) == {i.hex() for i in ids}  # nothing kept
    with pytest.raises(RemoteError, match="doesn't hash to its id"):
        client.upload_pack("p", pack_id, bytes(bad))

    client.upload_pack("p", pack_id, good)
    assert client.missing_chunks("p", [i.hex() for i in ids]) == set()
    data = b"".join(chunks)
    # A recipe claiming another digest than its chunks rebuild to is refused, nothing visible; so
    # is one whose chunks the project lacks. The file's BLAKE3 (today's clients) or its sha256 (a
    # client from before chunked files were named by their BLAKE3).
    for digest_of in (_b3, _sha):
        lie = digest_of(b"something else")
        lying = FileRecipe(size=len(data), digest=lie, chunks=tuple(zip(ids, map(len, chunks))))
        recipe_digest = client.upload_bytes("p", lying.to_json().encode())
        with pytest.raises(RemoteError, match=f"file {lie}: its chunks rebuild to {digest_of(data)}"):
            client.register_file("p", lie, len(data), recipe_digest)
        assert client.missing("p", [lie]) == {lie}
        with pytest.raises(ArtifactNotFound, match=f"holds no blob {lie}"):
            client.download("p", lie, tmp_path / "lie")
        assert not (tmp_path / "lie").exists()
        honest = FileRecipe(size=len(data), digest=digest_of(data), chunks=tuple(zip(ids, map(len, chunks))))
        other = client.upload_bytes("q", honest.to_json().encode())
        with pytest.raises(RemoteError, match="lacks 4 of its 4 chunks"):
            client.register_file("q", honest.digest, len(data), other)
        assert client.missing("p", [digest_of(data)]) == {digest_of(data)}
        assert client.register_file("p", honest.digest, len(data), client.upload_bytes("p", honest.to_json().encode()))
        assert client.missing("p", [digest_of(data)]) == set()
        out = tmp_path / "back"
        client.download("p", digest_of(data), out)
        assert out.read_bytes() == data


# The client's pack upload, SIGKILLed halfway through the body of its `kill_at`-th pack.
DIE_MID_PACK = textwrap.dedent('''
    original = ArtifactClient.upload_pack
    count = 0

    def dying(self, project, pack_id, data):
        global count
        count += 1
        if count == kill_at:
            data = data if isinstance(data, bytes) else b"".join(data)  # a streamer's Pieces

            def body():
                yield data[: len(data) // 2]
                os.kill(os.getpid(), signal.SIGKILL)  # mid-pack: half of it is on the wire
                yield data[len(data) // 2:]
            self.http.request("PUT", f"{self._base(project)}/_packs/{pack_id}", content=body(),
                              headers={"Content-Length": str(len(data))})
        return original(self, project, pack_id, data)

    ArtifactClient.upload_pack = dying
''')


KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from tracklet.artifacts import remote
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    url, root, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {die_mid_pack}
    store = ArtifactStore(root, chunk_threshold=1 << 20)
    client = ArtifactClient(HttpClient(url), Path(root) / "state", workers=1)
    remote.upload_version(client, store, store.registry.version("p", "ckpt", "v0"), [])
    print("not killed")
''').replace("{die_mid_pack}", DIE_MID_PACK)


def test_a_killed_chunk_upload_resumes_with_the_packs_the_server_lacks(servers, backend, tmp_path):  # noqa: F811
    server = servers(tmp_path / "server", extra=backend.extra)
    root = tmp_path / "root"
    store = ArtifactStore(root, chunk_threshold=MiB)
    path = tmp_path / "model.ckpt"
    data = _checkpoint(path, [os.urandom(TENSOR) for _ in range(TENSORS)])
    _commit(store, path)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = subprocess.run([sys.executable, str(script), server.url, str(root), "3"],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()
    client = ArtifactClient(HttpClient(server.url))
    with pytest.raises(ArtifactNotFound):  # nothing committed
        client.version("p", "ckpt", "latest")
    # Two packs (about 16 MiB) arrived whole; the one cut short is not kept.
    recipe = store.read_recipe(store.manifest(store.registry.version("p", "ckpt", "v0"))["model.ckpt"].extra["recipe"],
                               "model.ckpt")
    lacking = client.missing_chunks("p", [cid.hex() for cid in recipe.chunk_ids])
    held = sum(length for cid, length in recipe.chunks if cid.hex() not in lacking)
    assert 16 * MiB <= held < 17 * MiB

    wire = Wire()
    resumed = upload_version(ArtifactClient(HttpClient(server.url, transport=wire)), store,
                             store.registry.version("p", "ckpt", "v0"), [])
    assert len(data) - held <= resumed["bytes_sent"] < len(data) - held + MiB  # the rest, the recipe, the manifest
    out = Path(RemoteArtifacts(client, tmp_path / "reader").artifact("p/ckpt").download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == data


def test_an_older_server_without_chunk_routes_gets_whole_files(servers, tmp_path):
    """``chunks=False`` is what the client falls back to when a server answers 404 to the chunk
    query. A chunked file named by its BLAKE3 can't go whole (a server keeps blobs by sha256): a
    clear error naming it, and the server gets no version. One of a version stored before that
    rule (named by its sha256) is rebuilt from the local chunks and sent whole, its manifest names
    no recipe."""
    import shutil

    server = servers(tmp_path / "server")
    store = ArtifactStore(tmp_path / "root", chunk_threshold=MiB)
    path = tmp_path / "model.ckpt"
    _checkpoint(path, [os.urandom(2 * MiB + 5)])
    client = ArtifactClient(HttpClient(server.url), tmp_path / "state")
    with pytest.raises(ArtifactError, match="model.ckpt can't be sent whole .*no chunk routes"):
        upload_version(client, store, _commit(store, path).info, [], chunks=False)
    assert client.collections("p") == []

    old = Path(__file__).parent / "data" / "sha256_chunked_store"
    shutil.copytree(old / "store", tmp_path / "old-store")
    store = ArtifactStore(tmp_path / "old-root", tmp_path / "old-store")
    spec = __import__("importlib.util").util.spec_from_file_location("old_store_make", old / "make.py")
    make = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(make)
    data = make.source_bytes()
    wire = Wire()
    client = ArtifactClient(HttpClient(server.url, transport=wire), tmp_path / "state")
    answer = upload_version(client, store, store.registry.version("p", "ckpt", "v0"), [], chunks=False)
    assert not any("/_packs/" in p or "/_chunks/" in p for _, p in wire.sent)
    served = Manifest.from_bytes(client.read("p", answer["version"]["manifest"]))
    assert dict(served["model.ckpt"].extra) == {}
    out = Path(RemoteArtifacts(client, tmp_path / "reader").artifact("p/ckpt").download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == data


def _streamed_commit(store: ArtifactStore, path: Path, target, project: str = "p"):
    return store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(path))}, project=project, aliases=[],
                        chunk_target=target)


def _local_pack_bytes(store: ArtifactStore) -> int:
    return sum(p.stat().st_size for p in (store.directory / "packs").glob("??/*.pack"))


def test_an_online_commit_streams_its_chunks_and_keeps_no_local_copy(servers, tmp_path, monkeypatch):
    """An online run's commit cuts a large file once and streams its chunks to the server
    (``remote.ServerChunks``): no local pack is written, each chunk crosses the wire once, the
    file is registered on the server before the local version file exists, the upload after the
    commit sends no pack, v2 streams only what changed, and both versions come back byte for
    byte. A server it can't reach costs nothing but the fallback: the chunks are stored locally
    and the upload after the commit sends every one."""
    from serverproc import _free_port

    from tracklet.artifacts.registry import LocalRegistry
    from tracklet.artifacts.remote import ServerChunks, connect

    server = servers(tmp_path / "server")
    store = ArtifactStore(tmp_path / "root", chunk_threshold=MiB)
    registered_before_version: list[bool] = []
    stream_wire = Wire()
    real_create = LocalRegistry._create_version

    def create_version(registry, directory, info):  # noqa: ANN001, ANN202
        registered_before_version.append(("POST", "/api/v1/projects/p/artifacts/_files") in stream_wire.sent)
        real_create(registry, directory, info)

    monkeypatch.setattr(LocalRegistry, "_create_version", create_version)
    tensors = [os.urandom(TENSOR) for _ in range(TENSORS)]
    path = tmp_path / "model.ckpt"
    versions = []
    for changed in ((), (7, 23)):
        for index in changed:
            tensors[index] = os.urandom(TENSOR)  # 5% of the bytes
        data = _checkpoint(path, tensors)
        os.utime(path, (1e9 + len(versions),) * 2)  # not written just now: the stat cache may remember it
        stream_wire.sent.clear()
        target = ServerChunks(ArtifactClient(HttpClient(server.url, transport=stream_wire)), "p", pack_bytes=MiB)
        result = _streamed_commit(store, path, target)
        assert target.error is None and registered_before_version[-1]
        # 10 batches of 4 MiB (4 packs each) went through at most batches + 1 = 4 buffers, reused:
        # a buffer per batch (and per pack) cost the kernel a page fault per 4 KiB each time.
        assert target.streamer.buffers_made <= 4, target.streamer.buffers_made
        assert _local_pack_bytes(store) == 0  # the chunks live on the server only
        after_wire = Wire()
        client = ArtifactClient(HttpClient(server.url, transport=after_wire), tmp_path / "state")
        answer = upload_version(client, store, result.info, [], result.manifest)
        assert not any("/_packs/" in p for _, p in after_wire.sent)  # nothing left to send after the commit
        assert answer["bytes_sent"] < 0.01 * len(data)  # the manifest
        share = target.sent / len(data)
        assert (1.0 <= share <= 1.01) if not changed else (0.05 <= share <= 0.08), share
        versions.append((answer["version"]["index"], data))
    remote = RemoteArtifacts(ArtifactClient(HttpClient(server.url)), tmp_path / "reader")
    for index, data in versions:
        out = Path(remote.artifact(f"p/ckpt:v{index}").download(tmp_path / f"v{index}"))
        assert (out / "model.ckpt").read_bytes() == data
    # The same content again: the server holds the file, nothing is cut or sent.
    again_wire = Wire()
    again = ServerChunks(ArtifactClient(HttpClient(server.url, transport=again_wire)), "p")
    assert _streamed_commit(store, path, again).reused and again.sent == 0
    assert not any("/_packs/" in p or "/_chunks/" in p for _, p in again_wire.sent)

    unreachable = ServerChunks(connect(f"http://127.0.0.1:{_free_port()}", tmp_path / "root", attempts=1), "q",
                               pack_bytes=2 * MiB)
    data = _checkpoint(path, [os.urandom(TENSOR) for _ in range(8)])
    result = _streamed_commit(store, path, unreachable, project="q")
    assert unreachable.error is not None and unreachable.sent == 0
    assert _local_pack_bytes(store) >= len(data)  # stored locally after all
    answer = upload_version(ArtifactClient(HttpClient(server.url), tmp_path / "state"), store, result.info, [],
                            result.manifest)
    assert answer["bytes_sent"] >= len(data)
    out = Path(remote.artifact("q/ckpt:v0").download(tmp_path / "q"))
    assert (out / "model.ckpt").read_bytes() == data


def test_chunks_streamed_a_block_at_a_time_go_in_the_same_packs_as_one_at_a_time(servers, tmp_path, monkeypatch):
    """``ChunkStreamer.add_batch`` copies each run of adjacent new chunks of a block in one call:
    where a repeated chunk breaks a run, a batch buffer fills mid-run and a stream segment ends
    mid-run, the packs (their ids name every chunk id and length in them) are exactly those of
    the chunks given one at a time, each new chunk is sent once, and the server, which hashes the
    streamed file as its segments arrive, registers it: its bytes arrived intact and in order."""
    from tracklet.artifacts import remote
    from tracklet.artifacts.chunking import DEFAULT_PARAMS, FileChunker, chunk_file

    monkeypatch.setattr(remote, "MAX_SEGMENT_CHUNKS", 7)  # segments end mid-block
    server = servers(tmp_path / "server")
    repeated = [os.urandom(300 * 1024) for _ in range(2)]
    data = _checkpoint(tmp_path / "model.ckpt", [piece for number in range(24)
                                                 for piece in (os.urandom(200 * 1024), repeated[number % 2])])
    recipe = chunk_file(tmp_path / "model.ckpt")
    assert len(recipe.chunks) > len(dict(recipe.chunks)) + 20  # chunks repeat, within blocks and across them
    packs: dict[str, list[str]] = {}
    for project, batched in (("batched", True), ("single", False)):
        wire = Wire()
        # 256 KiB packs, 4 per batch: a batch buffer fills in the middle of a 2 MiB block's run.
        streamer = remote.ChunkStreamer(ArtifactClient(HttpClient(server.url, transport=wire)), project,
                                        pack_bytes=256 * 1024, query_packs=4)
        stream = streamer.start_file()
        chunker = FileChunker(tmp_path / "model.ckpt", DEFAULT_PARAMS)
        for batch in chunker:
            if batched:
                streamer.add_batch(batch, batch.span)
            else:
                for cid, piece in batch:
                    alone = bytes(piece)
                    streamer.add_batch([(cid, alone)], alone)
        streamer.end_file()
        streamer.close()
        assert streamer.error is None
        assert recipe.unique_bytes() <= streamer.sent < recipe.unique_bytes() + 64 * 1024  # each chunk once
        client = ArtifactClient(HttpClient(server.url))
        recipe_blob = client.upload_bytes(project, recipe.to_json().encode())
        assert client.register_file(project, _b3(data), len(data), recipe_blob, stream=stream)
        packs[project] = sorted(path for _, path in wire.sent if "/_packs/" in path)
        client.download(project, _b3(data), tmp_path / f"{project}.out")
        assert (tmp_path / f"{project}.out").read_bytes() == data
    assert packs["batched"] and [p.rsplit("/", 1)[1] for p in packs["batched"]] == \
        [p.rsplit("/", 1)[1] for p in packs["single"]]


STREAM_KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.remote import ServerChunks
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient

    url, root, source, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {die_mid_pack}
    store = ArtifactStore(root, chunk_threshold=1 << 20)
    target = ServerChunks(ArtifactClient(HttpClient(url)), "p", pack_bytes=2 << 20, batches=1)  # packs in order
    store.commit("ckpt", "model", {"model.ckpt": LocalFile(source)}, project="p", aliases=[], chunk_target=target)
    print("not killed")
''').replace("{die_mid_pack}", DIE_MID_PACK)


def test_an_online_commit_killed_mid_stream_leaves_no_version_and_resumes_sending_each_byte_once(servers, tmp_path):
    """kill -9 of an online run while its chunks stream: no local version and no local pack (the
    version is committed only after the server registered the file), the server keeps the packs
    that arrived whole and not the one cut short; logging again sends only the rest."""
    from tracklet.artifacts.chunking import chunk_file
    from tracklet.artifacts.remote import ServerChunks

    server = servers(tmp_path / "server")
    root = tmp_path / "root"
    path = tmp_path / "model.ckpt"
    data = _checkpoint(path, [os.urandom(MiB) for _ in range(12)])
    script = tmp_path / "killer.py"
    script.write_text(STREAM_KILLER)
    killed = subprocess.run([sys.executable, str(script), server.url, str(root), str(path), "3"],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()
    store = ArtifactStore(root, chunk_threshold=MiB)
    with pytest.raises(ArtifactNotFound):
        store.registry.version("p", "ckpt", "latest")
    assert _local_pack_bytes(store) == 0
    client = ArtifactClient(HttpClient(server.url))
    recipe = chunk_file(path)
    lacking = client.missing_chunks("p", [cid.hex() for cid in recipe.chunk_ids])
    held = sum(length for cid, length in recipe.chunks if cid.hex() not in lacking)
    assert 4 * MiB <= held < 5 * MiB  # two packs of about 2 MiB arrived whole; the third, cut short, is not kept

    wire = Wire()
    target = ServerChunks(ArtifactClient(HttpClient(server.url, transport=wire)), "p", pack_bytes=2 * MiB)
    result = _streamed_commit(store, path, target)
    assert target.error is None
    assert len(data) - held <= target.sent < len(data) - held + 64 * 1024  # the rest (and the packs' indexes)
    answer = upload_version(client, store, result.info, [], result.manifest)
    out = Path(RemoteArtifacts(client, tmp_path / "reader").artifact(f"p/ckpt:v{answer['version']['index']}")
               .download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == data


def test_an_online_runs_large_file_reaches_the_server_without_a_local_copy(servers, tmp_path, monkeypatch):
    """Through a real online run: ``log_artifact`` of a file over the chunk threshold streams its
    chunks (the worker's ``ServerChunks``); the data root keeps no pack, the version is on the
    server, and another machine downloads it byte for byte."""
    import tracklet
    from conftest import QUIET

    monkeypatch.setenv("TRACKLET_ARTIFACT_CHUNK_THRESHOLD", "1MiB")
    server = servers(tmp_path / "server")
    path = tmp_path / "model.ckpt"
    data = _checkpoint(path, [os.urandom(MiB) for _ in range(3)])
    root = tmp_path / "writer"
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    artifact = run.log_artifact(path, name="ckpt", type="model")
    artifact.wait()
    assert artifact.upload_error is None
    run.finish()
    assert not list(root.rglob("*.pack"))
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        out = Path(api.artifact("p/ckpt:latest").download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == data


class _GcOnFirstPack(ArtifactClient):
    """A real client that, before sending its first pack, runs ``tracklet artifact gc --grace 0``
    (a separate process) on the store it uploads from and waits for it to finish."""

    def __init__(self, url: str, state: Path, root: Path) -> None:
        super().__init__(HttpClient(url), state, workers=1)
        self.root = root
        self.gc: subprocess.CompletedProcess[str] | None = None

    def upload_pack(self, project, pack_id, data):
        if self.gc is None:
            self.gc = serverproc.cli("--dir", str(self.root), "artifact", "gc", "--grace", "0", "-q", timeout=300)
        return super().upload_pack(project, pack_id, data)


def test_a_local_repack_while_chunks_upload_moves_them_under_the_upload_without_failing_it(servers, tmp_path):
    """A local ``tracklet artifact gc`` that repacks the pack a version's chunks are being read from
    for an upload (its other chunks were a deleted version's): the upload reads its chunks holding
    the store's gc.lock shared a few MiB at a time, located afresh each time, so the collection
    runs between two of them (it is not held off for the whole upload) and the upload reads the
    rest from the new pack. Before, the chunks were all located up front and read without the
    lock: the upload failed on the removed pack."""
    server = servers(tmp_path / "server")
    root = tmp_path / "root"
    store = ArtifactStore(root, chunk_threshold=MiB)
    shared = os.urandom(12 * MiB)
    path = tmp_path / "model.ckpt"
    _checkpoint(path, [os.urandom(20 * MiB), shared])
    _commit(store, path)  # v0: one pack, 20 MiB only it references and the 12 MiB v1 shares
    v1 = _checkpoint(path, [os.urandom(MiB), shared])
    _commit(store, path)
    packs_before = set(store.chunks()[0].list_packs())
    removed = serverproc.cli("--dir", str(root), "artifact", "rm", "p/ckpt:v0")
    assert removed.returncode == 0, removed.stderr
    client = _GcOnFirstPack(server.url, tmp_path / "state", root)
    entry = store.manifest(store.registry.version("p", "ckpt", "v1"))["model.ckpt"]
    upload_chunked(client, store, "p", [entry], pack_bytes=256 << 10)  # as `tracklet sync` uploads it
    assert client.gc is not None and client.gc.returncode == 0, client.gc and client.gc.stderr
    assert "1 mostly unreferenced pack(s) rewritten" in client.gc.stdout, client.gc.stdout
    assert len(set(store.chunks()[0].list_packs()) - packs_before) == 1  # the shared chunks moved meanwhile
    answer = upload_version(ArtifactClient(HttpClient(server.url)), store, store.registry.version("p", "ckpt", "v1"),
                            [])
    assert answer["bytes_sent"] < MiB  # every chunk was there: the recipe and the manifest
    out = Path(RemoteArtifacts(ArtifactClient(HttpClient(server.url)), tmp_path / "reader").artifact("p/ckpt")
               .download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == v1
