"""Small artifact blobs stored many to a pack on a tracking server (issue #15, A1: 10k small files
must not cost 10k object-store requests; server/artifact_packed.py).

A batch upload's small blobs become one pack (the chunk store's layout) and one placement row
each; sha256 stays each file's address. What users rely on, checked on a real server process
(disk and S3 through a real s3rver) and in process for the collection: files come back byte for
byte, whole and in ranges; a damaged member is refused, never served; blobs stored one object
each before packing stay readable beside packed ones; a pack goes only when none of its members
is held, after the grace period, and a pack written by a server killed before its rows goes too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from test_artifacts_chunks_server_gc import HOUR, _age, _objects, _read
from test_artifacts_server import Backend, Counting, _published, own_backend, blob_cache  # noqa: F401 (fixtures)

from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.artifacts.remote import RemoteArtifacts, upload_version
from tracklet.artifacts.storage import ArtifactStore
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.server.schema import artifact_packed_blobs
from tracklet.store import Store


@pytest.fixture
def backend(own_backend):  # noqa: F811 (a fixture)
    """A server of the test's own, which the test starts with ``backend.extra`` (test_artifacts_server's
    ``own_backend``; its ``backend`` is that module's shared server)."""
    return own_backend


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _server_artifacts(root: Path, **kwargs) -> tuple[Store, ServerArtifacts]:
    root.mkdir(exist_ok=True)
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    return store, ServerArtifacts(root, engine=store.engine, **kwargs)


def _commit(artifacts: ServerArtifacts, project: str, files: dict[str, bytes], name: str = "data") -> None:
    manifest = Manifest({path: ManifestEntry(path, _sha(data), len(data)) for path, data in files.items()}).to_bytes()
    artifacts.store_small(project, [(_sha(manifest), manifest)])
    artifacts.commit(project, name, type="dataset", manifest_digest=_sha(manifest), description="", metadata={},
                     aliases=[], logged_by=None)


def test_small_files_go_many_to_a_pack_and_come_back_whole_and_in_ranges(servers, backend, tmp_path):  # noqa: F811
    server = servers(tmp_path / "server", extra=backend.extra)
    data = tmp_path / "data"
    data.mkdir()
    files = {f"{index:03d}.bin": os.urandom(3000 + index) for index in range(300)}
    files["large.bin"] = os.urandom((1 << 20) + 1)  # over the packed size: an object of its own
    for name, content in files.items():
        (data / name).write_bytes(content)
    store = ArtifactStore(tmp_path / "root")
    result = store.commit("dataset", "shards", {name: LocalFile(str(data / name)) for name in files}, project="p",
                          aliases=[])
    transport = Counting()
    client = ArtifactClient(HttpClient(server.url, transport=transport), tmp_path / "state")
    upload_version(client, store, result.info, [], result.manifest)
    assert sum(path.endswith("/_blobs/batch") for _, path in transport.sent) == 1  # 300 files, one request
    # The manifest and the large file are objects; the 300 small files are one pack.
    assert _published(backend.blob_keys()) == sorted(
        f"sha256/{d[:2]}/{d}" for d in (_sha(files["large.bin"]), result.info.manifest))
    assert len(backend.pack_keys()) == 1

    remote = RemoteArtifacts(ArtifactClient(HttpClient(server.url)), tmp_path / "reader")
    out = Path(remote.artifact("p/dataset").download(tmp_path / "out"))
    assert {path.name: path.read_bytes() for path in out.iterdir()} == files
    one = files["007.bin"]
    with httpx.Client(base_url=server.url) as http:
        ranged = http.get(f"/api/v1/projects/p/artifacts/_blobs/{_sha(one)}", headers={"Range": "bytes=100-1099"})
        assert (ranged.status_code, ranged.content) == (206, one[100:1100])
        assert ranged.headers["content-range"] == f"bytes 100-1099/{len(one)}"
        # Another project knowing the digest gets nothing: the grants are per project as before.
        assert http.get(f"/api/v1/projects/q/artifacts/_blobs/{_sha(one)}").status_code == 404
    # Sending the version again sends no blob.
    again = upload_version(client, store, result.info, [], result.manifest)
    assert again["bytes_sent"] == 0 and again["reused"]


def test_a_damaged_member_is_refused_and_never_served(servers, tmp_path):
    server = servers(tmp_path / "server")
    blobs = [os.urandom(2000), os.urandom(3000)]
    body = b"".join(_sha(d).encode() + len(d).to_bytes(8, "big") + d for d in blobs)
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/api/v1/projects/p/artifacts/_blobs/batch", content=body).status_code == 200
        [pack] = (tmp_path / "server" / "artifacts" / "packs").rglob("*.pack")
        damaged = bytearray(pack.read_bytes())
        damaged[2500] ^= 0xFF  # inside the second member
        pack.chmod(0o644)
        pack.write_bytes(bytes(damaged))
        assert http.get(f"/api/v1/projects/p/artifacts/_blobs/{_sha(blobs[0])}").content == blobs[0]
        refused = http.get(f"/api/v1/projects/p/artifacts/_blobs/{_sha(blobs[1])}")
        assert refused.status_code == 500 and "is damaged" in refused.json()["detail"]
        # A status the route's OpenAPI schema declares (the dashboard's generated types know it).
        schema = http.get("/openapi.json", timeout=120).json()  # built on the first request: slow under load
        route = schema["paths"]["/api/v1/projects/{project}/artifacts/_blobs/{digest}"]
        assert "500" in route["get"]["responses"]


def test_blobs_stored_one_object_each_stay_readable_beside_packed_ones(tmp_path):
    root = tmp_path / "server"
    store, before = _server_artifacts(root, pack_small=False)  # a server from before packed blobs
    old = [os.urandom(1000 + i) for i in range(3)]
    before.store_small("p", [(_sha(d), d) for d in old])
    assert len([p for p in _objects(root) if p.startswith("blobs/sha256/")]) == 3
    after = ServerArtifacts(root, engine=store.engine)  # the same data, packing on
    new = [os.urandom(1500 + i) for i in range(3)]
    after.store_small("p", [(_sha(d), d) for d in [old[0], *new]])  # one old blob sent again: packed too
    assert len(after.packs.list_packs()) == 1
    for data in [*old, *new]:
        assert _read(after, "p", _sha(data)) == data
        assert after.blobs.read_bytes(_sha(data)) == data and after.blobs.size(_sha(data)) == len(data)
    _commit(after, "p", {f"f{i}": d for i, d in enumerate([*old, *new])})
    _age(root, after, 2 * HOUR)
    report = collect(after, grace=HOUR)
    assert (report.blobs, report.packs, report.packed) == (0, 0, 0)  # all referenced: nothing goes
    store.close()


def test_a_pack_goes_only_when_none_of_its_members_is_held(tmp_path):
    root = tmp_path / "server"
    store, artifacts = _server_artifacts(root)
    kept, dropped = os.urandom(4000), os.urandom(6000)
    orphans = [os.urandom(2000), os.urandom(2500)]
    artifacts.store_small("p", [(_sha(kept), kept), (_sha(dropped), dropped)])  # one pack, one member committed
    artifacts.store_small("p", [(_sha(d), d) for d in orphans])  # a pack no version references
    _commit(artifacts, "p", {"kept.bin": kept})
    assert len(artifacts.packs.list_packs()) == 2

    young = collect(artifacts, grace=HOUR)  # within the grace period: nothing goes
    assert (young.grants, young.packed, young.packs) == (0, 0, 0)
    _age(root, artifacts, 2 * HOUR)
    dry = collect(artifacts, grace=HOUR, dry_run=True)
    report = collect(artifacts, grace=HOUR)
    assert (dry.packed, dry.packs) == (report.packed, report.packs) == (3, 1)
    assert len(artifacts.packs.list_packs()) == 1  # the orphans' pack went; the mixed one stays for `kept`
    assert _read(artifacts, "p", _sha(kept)) == kept
    assert report.mixed_packs == 1 and report.reclaimable_bytes >= len(dropped)
    assert not artifacts.holds("p", _sha(dropped)) and not artifacts.blobs.has(_sha(dropped))

    repacked = collect(artifacts, grace=HOUR, repack=0.5)  # the dead member is most of the pack
    assert repacked.repacked == 1
    assert _read(artifacts, "p", _sha(kept)) == kept  # read from the new pack
    _age(root, artifacts, 2 * HOUR)
    last = collect(artifacts, grace=HOUR)
    assert last.packs == 1 and len(artifacts.packs.list_packs()) == 1  # the old copy went
    assert (last.mixed_packs, last.reclaimable_bytes) == (0, 0)
    assert _read(artifacts, "p", _sha(kept)) == kept
    store.close()


def test_a_blob_another_project_holds_keeps_its_place(tmp_path):
    root = tmp_path / "server"
    store, artifacts = _server_artifacts(root)
    shared = [os.urandom(3000), os.urandom(3100)]
    artifacts.store_small("p", [(_sha(d), d) for d in shared])  # p never commits
    artifacts.store_small("q", [(_sha(d), d) for d in shared])  # q sends the same bytes: nothing written again
    assert len(artifacts.packs.list_packs()) == 1
    _commit(artifacts, "q", {"a": shared[0], "b": shared[1]})
    _age(root, artifacts, 2 * HOUR)
    report = collect(artifacts, grace=HOUR)
    assert report.grants == 2 and (report.packed, report.packs) == (0, 0)  # p's grants went, not the bytes
    assert not artifacts.holds("p", _sha(shared[0]))
    assert [_read(artifacts, "q", _sha(d)) for d in shared] == shared
    store.close()


def test_a_pack_written_by_a_server_killed_before_its_rows_is_reused_or_collected(tmp_path):
    """kill -9 between writing a pack and recording it: the client was told nothing, sends the
    batch again, and the same members make the same pack (its id is their hashes); a batch never
    sent again leaves a pack no row names, collected after the grace period."""
    import blake3

    from tracklet.artifacts.packs import build_pack

    root = tmp_path / "server"
    store, artifacts = _server_artifacts(root)
    blobs = [os.urandom(2000), os.urandom(2100)]
    pack_id, pack = build_pack([(blake3.blake3(d).digest(), d) for d in blobs])
    artifacts.write_pack(pack_id, pack)  # the pack in place, then the process died: no rows, no grants
    assert artifacts.missing("p", [_sha(d) for d in blobs]) == [_sha(d) for d in blobs]
    artifacts.store_small("p", [(_sha(d), d) for d in blobs])  # the retry
    assert artifacts.packs.list_packs() == [pack_id]
    assert [_read(artifacts, "p", _sha(d)) for d in blobs] == blobs

    lost = [os.urandom(1000), os.urandom(1100)]
    lost_id, lost_pack = build_pack([(blake3.blake3(d).digest(), d) for d in lost])
    artifacts.write_pack(lost_id, lost_pack)  # never sent again
    _commit(artifacts, "p", {"a": blobs[0], "b": blobs[1]})
    _age(root, artifacts, 2 * HOUR)
    report = collect(artifacts, grace=HOUR)
    assert report.packs == 1 and artifacts.packs.list_packs() == [pack_id]
    with artifacts.engine.connect() as connection:  # the retried batch's placements, in the reused pack
        rows = connection.execute(artifact_packed_blobs.select()).all()
    assert sorted((row.digest, row.pack_id) for row in rows) == sorted((_sha(d), pack_id) for d in blobs)
    store.close()


@pytest.mark.parametrize("size", [0, (1 << 20) + 1])
def test_empty_and_large_blobs_of_a_batch_stay_objects(tmp_path, size):
    root = tmp_path / "server"
    store, artifacts = _server_artifacts(root)
    odd, small = os.urandom(size), os.urandom(100)
    artifacts.store_small("p", [(_sha(odd), odd), (_sha(small), small), (_sha(small[:50]), small[:50])])
    assert f"blobs/sha256/{_sha(odd)[:2]}/{_sha(odd)}" in _objects(root)
    assert [_read(artifacts, "p", _sha(d)) for d in (odd, small, small[:50])] == [odd, small, small[:50]]
    store.close()
