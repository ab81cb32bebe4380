"""Media and table blobs reach a tracking server (issue #16): online mode and `tracklet sync` send
the blobs a run's `MediaLogged`/`TableLogged` records name before the records, through the
artifacts' blob routes (dedup by sha256, verified on the server, per-project grants); the server's
media and table routes serve them; `Api(base_url=...)` reads images byte-exact and table rows.

Real `tracklet server` processes (SQLite and PostgreSQL stores), real HTTP; requests and bytes are
counted with a recording transport, never timed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import serverproc
from conftest import QUIET, REPO

import tracklet
from tracklet.artifacts.remote import UPLOAD_STATE_DIR
from tracklet.artifacts.storage import artifact_dir
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.errors import SyncError, TrackletWarning

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")


class Counting(httpx.HTTPTransport):
    """A real transport that records each request's method, path and body size."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append((request.method, request.url.path, len(request.content)))
        return super().handle_request(request)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, env=env, timeout=180)


def _pixels(seed: int, shape: tuple[int, ...] = (40, 30, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _log_media(run: tracklet.Run) -> dict[str, list[np.ndarray]]:
    """Images (one with a mask, a list of two, a big one with a thumbnail) and a table whose
    rows hold images; what was logged, by key."""
    mask = np.zeros((40, 30), dtype=np.uint8)
    mask[:10] = 1
    logged: dict[str, list[np.ndarray]] = {"pred": [], "samples": []}
    for step in range(3):
        pixels = _pixels(step)
        logged["pred"].append(pixels)
        run.log({"pred": tracklet.Image(pixels, caption=f"step {step}",
                                        masks={"truth": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat"}}}),
                 "loss": 1.0 / (step + 1)}, step=step)
    samples = [_pixels(10), _pixels(11, (300, 280, 3))]  # the second gets a thumbnail
    logged["samples"] = samples
    run.log({"samples": [tracklet.Image(x) for x in samples]}, step=3)
    table = tracklet.Table(columns=["id", "label", "score", "image"])
    for index in range(5):
        table.add_data(index, ["cat", "dog"][index % 2], index / 10, tracklet.Image(_pixels(20 + index, (8, 8, 3))))
    run.log({"preds": table}, step=4)
    return logged


def _local_blobs(root: Path) -> dict[str, bytes]:
    base = artifact_dir(root) / "blobs" / "sha256"
    return {path.name: path.read_bytes() for path in base.rglob("*") if path.is_file() and len(path.name) == 64}


def _check_read_back(url: str, path: str, logged: dict[str, list[np.ndarray]], key: str | None = None) -> None:
    api = tracklet.Api(base_url=url, api_key=key)
    run = api.run(path)
    images = run.images("pred")
    assert [(item.step, item.caption) for item in images] == [(0, "step 0"), (1, "step 1"), (2, "step 2")]
    for item, pixels in zip(images, logged["pred"]):
        assert np.array_equal(item.to_numpy(), pixels)  # byte-exact through lossless PNG, over HTTP
        assert item.masks["truth"].to_numpy()[:10].tolist() == np.ones((10, 30), dtype=np.uint8).tolist()
        assert item.masks["truth"].class_labels == {0: "bg", 1: "cat"}
        assert item.path is not None and hashlib.sha256(item.path.read_bytes()).hexdigest() == item.digest
    samples = run.media("samples")
    assert [(item.index, item.count) for item in samples] == [(0, 2), (1, 2)]
    for item, pixels in zip(samples, logged["samples"]):
        assert np.array_equal(item.to_numpy(), pixels)
    assert samples[1].thumbnail_path is not None and samples[1].thumbnail_path.is_file()
    assert set(run.media_keys()) == {"pred", "samples"}
    rows = run.table("preds").to_pandas()
    assert rows["id"].tolist() == [0, 1, 2, 3, 4] and rows["label"].tolist() == ["cat", "dog", "cat", "dog", "cat"]
    assert run.table("preds").filter("label = 'dog'").count() == 2
    # The cells' images are on the server too: the project holds every blob the table names.
    cells = [cell["digest"] for cell in rows["image"]]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    project = path.split("/")[0]
    for digest in cells:
        answer = httpx.get(f"{url}/api/v1/projects/{project}/artifacts/_blobs/{digest}", headers=headers)
        assert answer.status_code == 200 and hashlib.sha256(answer.content).hexdigest() == digest
    api.close()



def _served_byte_exact(url: str, project: str, blobs: dict[str, bytes]) -> None:
    """Each blob comes back from the project's blob route with exactly its bytes."""
    for digest, data in blobs.items():
        answer = httpx.get(f"{url}/api/v1/projects/{project}/artifacts/_blobs/{digest}")
        assert answer.status_code == 200 and answer.content == data, digest

@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, servers, tmp_path):
    store = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return servers(tmp_path / "server", store=store)


def test_an_online_runs_images_and_table_reach_the_server_byte_exact(server, root):
    run = tracklet.init(project="vision", id="online", dir=str(root), mode="online",
                        settings={**QUIET, "base_url": server.url, "upload_interval": 0.2})
    logged = _log_media(run)
    run.finish()
    _check_read_back(server.url, "vision/online", logged)
    # Every blob the run wrote locally is on the server, byte for byte, under the same digest
    # (stored as an object of its own or inside a pack of small blobs: the server's business).
    _served_byte_exact(server.url, "vision", _local_blobs(root))
    # The dashboard's media route serves the server run's thumbnail (the media card works there).
    entries = httpx.get(f"{server.url}/api/v1/runs/vision/online/media", params={"key": "samples"}).json()["media"]
    thumbnail = entries[1]["thumbnail"]
    answer = httpx.get(f"{server.url}/api/v1/runs/vision/online/media/{thumbnail}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"


def _sync_client(url: str, root: Path, transport: httpx.BaseTransport | None = None, **kwargs) -> SyncClient:
    return SyncClient(url, transport=transport, blob_dir=artifact_dir(root),
                      upload_state_dir=root / "cache" / UPLOAD_STATE_DIR, **kwargs)


def test_tracklet_sync_sends_an_offline_runs_blobs_once(servers, root, tmp_path):
    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", id="offline", dir=str(root), settings=QUIET)
    logged = _log_media(run)
    run.finish()
    blobs = _local_blobs(root)

    synced = _cli("--dir", str(root), "sync", "vision/offline", "--url", server.url, "-q")
    assert synced.returncode == 0, synced.stderr
    _check_read_back(server.url, "vision/offline", logged)

    # Again: nothing new travels, and no blob query is needed (the server has the whole log).
    transport = Counting()
    with _sync_client(server.url, root, transport) as client:
        result = client.sync_run(RunPaths(root, "vision", "offline"))
    assert (result.sent_bytes, result.media_sent, result.media_bytes, result.media_queries) == (0, 0, 0, 0)
    assert transport.sent[0][:2] == ("GET", "/api/v1/runs/vision/offline/log/offset")
    assert all(method == "GET" and "/artifacts/" not in path for method, path, _ in transport.sent)  # no upload

    # A second run logging some of the same images sends only the blobs the project lacks, after
    # one "which are missing?" query.
    again = tracklet.init(project="vision", id="second", dir=str(root), settings=QUIET)
    again.log({"pred": tracklet.Image(logged["pred"][0])}, step=0)
    fresh = _pixels(99)
    again.log({"pred": tracklet.Image(fresh)}, step=1)
    again.finish()
    new = {digest: data for digest, data in _local_blobs(root).items() if digest not in blobs}
    assert len(new) == 1
    transport = Counting()
    with _sync_client(server.url, root, transport) as client:
        result = client.sync_run(RunPaths(root, "vision", "second"))
    assert (result.media_sent, result.media_bytes, result.media_queries) == (1, len(next(iter(new.values()))), 1)
    blob_requests = [path for _, path, _ in transport.sent if "/artifacts/_blobs/" in path]
    assert blob_requests == ["/api/v1/projects/vision/artifacts/_blobs/missing",
                             "/api/v1/projects/vision/artifacts/_blobs/batch"]
    images = tracklet.Api(base_url=server.url).run("vision/second").images("pred")
    assert np.array_equal(images[1].to_numpy(), fresh) and np.array_equal(images[0].to_numpy(), logged["pred"][0])


KILLER = textwrap.dedent('''
    import os, signal, sys, threading
    from pathlib import Path
    from tracklet.client import artifacts
    from tracklet.client.sync import SyncClient
    from tracklet.core.layout import RunPaths

    url, root = sys.argv[1], Path(sys.argv[2])
    original = artifacts.ArtifactClient.upload_batch
    lock = threading.Lock()
    calls = []

    def dying(self, project, files):
        with lock:  # one batch at a time: the first is acknowledged whole, then the process dies
            if calls:
                os.kill(os.getpid(), signal.SIGKILL)
            calls.append(len(files))
            sent = original(self, project, files)
            print(len(files), sum(size for _, _, size in files), flush=True)
            return sent

    artifacts.ArtifactClient.upload_batch = dying
    client = SyncClient(url, blob_dir=root / "artifacts", upload_state_dir=root / "cache" / "artifact-uploads")
    client.sync_run(RunPaths(root, "vision", "many"))
    print("not killed")
''')


def test_a_killed_sync_resumes_sending_only_the_missing_blobs_and_no_record_goes_first(servers, root, tmp_path):
    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", id="many", dir=str(root), settings=QUIET)
    noise = [_pixels(100 + step, (420, 420, 3)) for step in range(24)]  # ~530 kB PNGs: 2-3 batches of 8 MiB
    for step, pixels in enumerate(noise):
        run.log({"noise": tracklet.Image(pixels)}, step=step)
    run.finish()
    blobs = _local_blobs(root)
    total = len(blobs)
    assert total == 48  # each image and its thumbnail

    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = subprocess.run([sys.executable, str(script), server.url, str(root)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr
    first_count, first_bytes = map(int, killed.stdout.split())
    assert 0 < first_count < total
    # The blobs went first: the server has none of the records, so it lists no image it can't serve.
    assert httpx.get(f"{server.url}/api/v1/runs/vision/many/log/offset").json()["offset"] == 0
    missing = httpx.post(f"{server.url}/api/v1/projects/vision/artifacts/_blobs/missing",
                         json={"digests": sorted(blobs)}).json()["missing"]
    assert len(missing) == total - first_count

    transport = Counting()
    with _sync_client(server.url, root, transport) as client:
        result = client.sync_run(RunPaths(root, "vision", "many"))
    assert result.media_sent == total - first_count
    assert result.media_bytes == sum(len(blobs[digest]) for digest in missing)
    assert result.media_bytes + first_bytes == sum(len(data) for data in blobs.values())
    images = tracklet.Api(base_url=server.url).run("vision/many").images("noise")
    assert len(images) == 24 and all(np.array_equal(item.to_numpy(), noise[item.step]) for item in images)


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused_and_never_visible(servers, root, tmp_path):
    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", id="damaged", dir=str(root), settings=QUIET)
    pixels = _pixels(7)
    run.log({"pred": tracklet.Image(pixels)}, step=0)
    run.finish()
    (digest,) = _local_blobs(root)
    local = artifact_dir(root) / "blobs" / "sha256" / digest[:2] / digest
    good = local.read_bytes()
    local.chmod(0o644)
    local.write_bytes(good[:-10] + b"0123456789")  # damaged on the client's disk after it was written

    with _sync_client(server.url, root) as client, pytest.raises(SyncError, match="sha256") as refused:
        client.sync_run(RunPaths(root, "vision", "damaged"))
    assert "records were not uploaded" in str(refused.value)
    stored = server.root / "artifacts" / "blobs" / "sha256" / digest[:2] / digest
    assert not stored.exists()
    assert httpx.get(f"{server.url}/api/v1/runs/vision/damaged/log/offset").json()["offset"] == 0
    # Sent directly, one at a time or in a batch: refused the same way, nothing stored.
    base = f"{server.url}/api/v1/projects/vision/artifacts/_blobs"
    assert httpx.put(f"{base}/{digest}", content=local.read_bytes()).status_code == 400
    frame = digest.encode() + len(local.read_bytes()).to_bytes(8, "big") + local.read_bytes()
    batch = httpx.post(f"{base}/batch", content=frame).json()
    assert batch["stored"] == [] and [item["digest"] for item in batch["rejected"]] == [digest]
    assert not stored.exists()
    assert httpx.post(f"{base}/missing", json={"digests": [digest]}).json()["missing"] == [digest]

    local.write_bytes(good)  # repaired: the next sync sends it and the records
    with _sync_client(server.url, root) as client:
        assert client.sync_run(RunPaths(root, "vision", "damaged")).media_sent == 1
    (image,) = tracklet.Api(base_url=server.url).run("vision/damaged").images()
    assert np.array_equal(image.to_numpy(), pixels) and stored.read_bytes() == good


def test_only_writers_upload_blobs_and_a_digest_alone_reads_nothing(servers, root, tmp_path):
    server_root = tmp_path / "server"
    created = _cli("admin", "--dir", str(server_root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip()
    server = servers(server_root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        alice = http.post("/api/v1/users", json={"name": "alice"}).json()["key"]
        reader = http.post("/api/v1/users", json={"name": "reader"}).json()["key"]
        carol = http.post("/api/v1/users", json={"name": "carol"}).json()["key"]
        writer = http.post("/api/v1/users", json={"name": "writer"}).json()["key"]

    run = tracklet.init(project="vision", id="alice", dir=str(root), settings=QUIET)
    logged = _log_media(run)
    run.finish()
    with _sync_client(server.url, root, api_key=alice) as client:  # creates the project, alice its admin
        assert client.sync_run(RunPaths(root, "vision", "alice")).media_sent > 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {alice}"}) as http:
        assert http.put("/api/v1/projects/vision/members/reader", json={"role": "read"}).status_code in (200, 204)
        assert http.put("/api/v1/projects/vision/members/writer", json={"role": "write"}).status_code in (200, 204)
    _check_read_back(server.url, "vision/alice", logged, key=reader)  # a reader reads ...

    before = set(_local_blobs(root))
    other = tracklet.init(project="vision", id="by-reader", dir=str(root), settings=QUIET)
    other.log({"pred": tracklet.Image(_pixels(55))})
    other.finish()
    (new,) = set(_local_blobs(root)) - before
    with _sync_client(server.url, root, api_key=reader) as client, pytest.raises(SyncError, match="HTTP 403"):
        client.sync_run(RunPaths(root, "vision", "by-reader"))  # ... but may not upload blobs
    assert new not in _digests_held(server.url, alice, "vision", [new])
    assert not (server_root / "artifacts" / "blobs" / "sha256" / new[:2] / new).exists()

    # Carol's own project names the digest of alice's first image in a record, without its bytes:
    # the store has the blob, but her project doesn't hold it, so her run serves nothing.
    image_digest = tracklet.Api(root).run("vision/alice").images("pred")[0].digest
    forged_root = tmp_path / "carol"
    forged = tracklet.init(project="carols", id="forged", dir=str(forged_root), settings=QUIET)
    forged.log({"pred": tracklet.Image(logged["pred"][0])})
    forged.finish()
    (artifact_dir(forged_root) / "blobs" / "sha256" / image_digest[:2] / image_digest).unlink()
    with _sync_client(server.url, forged_root, api_key=carol) as client, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = client.sync_run(RunPaths(forged_root, "carols", "forged"))
    assert result.media_unreadable == 1 and result.offset > 0
    assert any(issubclass(w.category, TrackletWarning) and "missing from the local blob store" in str(w.message)
               for w in seen)
    carol_headers = {"Authorization": f"Bearer {carol}"}
    answer = httpx.get(f"{server.url}/api/v1/runs/carols/forged/media/{image_digest}", headers=carol_headers)
    assert answer.status_code == 404
    answer = httpx.get(f"{server.url}/api/v1/runs/vision/alice/media/{image_digest}", headers=carol_headers)
    assert answer.status_code == 403

    # Retention: a prune on the server (it removes blobs) needs admin on the project; moving a
    # run's retention forward (what sync sends) needs write.
    for key, status in ((reader, 403), (writer, 403), (alice, 200)):
        answer = httpx.post(f"{server.url}/api/v1/projects/vision/media/prune", json={"keep_last": 0, "dry_run": True},
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == status, answer.text
    assert [run["retired"] for run in answer.json()["runs"]] == [5]  # would retire all 5 (a dry run)
    for key, status in ((reader, 403), (writer, 200)):
        answer = httpx.put(f"{server.url}/api/v1/runs/vision/alice/media/retention", json={"keys": {"pred": 0}},
                           headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == status, answer.text
    assert len(httpx.get(f"{server.url}/api/v1/runs/vision/alice/media", headers={
        "Authorization": f"Bearer {alice}"}).json()["media"]) == 5  # the dry run hid nothing


def _digests_held(url: str, key: str, project: str, digests) -> set[str]:
    digests = sorted(digests)
    answer = httpx.post(f"{url}/api/v1/projects/{project}/artifacts/_blobs/missing", json={"digests": digests},
                        headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return set(digests) - set(answer.json()["missing"])


def test_check_media_sends_the_blobs_of_a_run_synced_without_them(servers, root, tmp_path):
    """A run uploaded by a client that sent no blobs (a tracklet before this, or a SyncClient
    without ``blob_dir``): `tracklet sync --check-media` finds and sends them, once."""
    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", id="old", dir=str(root), settings=QUIET)
    logged = _log_media(run)
    run.finish()
    with SyncClient(server.url) as client:  # the log alone
        assert client.sync_run(RunPaths(root, "vision", "old")).media_sent == 0
    first = tracklet.Api(base_url=server.url).run("vision/old").images("pred")[0]
    with pytest.raises(Exception, match="404|no such file"):
        first.read_bytes()
    plain = _cli("--dir", str(root), "sync", "vision/old", "--url", server.url, "-q")
    assert plain.returncode == 0 and "media" not in plain.stdout  # only frames not yet sent are looked at
    checked = _cli("--dir", str(root), "sync", "vision/old", "--url", server.url, "-q", "--check-media")
    assert checked.returncode == 0, checked.stderr
    assert f"({len(_local_blobs(root))} media and table file(s))" in checked.stdout
    _check_read_back(server.url, "vision/old", logged)
    again = _cli("--dir", str(root), "sync", "vision/old", "--url", server.url, "-q", "--check-media")
    assert again.returncode == 0 and "0 new bytes" in again.stdout and "media" not in again.stdout


def test_a_server_keeping_blobs_on_s3_serves_media_and_queries_tables(servers, root, tmp_path, s3rver, monkeypatch):
    """`--artifacts s3://...` (a real s3rver): the blobs land there, and table fragments are copied
    (verified) into the server's cache for DuckDB."""
    import uuid

    from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"
    server = servers(tmp_path / "server", extra=(
        "--artifacts", f"s3://{prefix}", "--files-option", f"endpoint_url={s3rver}",
        "--files-option", f"key={S3_KEY}", "--files-option", f"secret={S3_SECRET}"))
    run = tracklet.init(project="vision", id="s3", dir=str(root), mode="online",
                        settings={**QUIET, "base_url": server.url, "upload_interval": 0.2})
    logged = _log_media(run)
    run.finish()
    _check_read_back(server.url, "vision/s3", logged)
    _served_byte_exact(server.url, "vision", _local_blobs(root))
    # The bytes are on S3 (as blobs of their own or packs of small ones), none on the server's disk.
    direct = s3_filesystem(s3rver)
    on_s3 = direct.find(prefix)
    assert sum(direct.size(path) for path in on_s3) >= sum(len(data) for data in _local_blobs(root).values())
    for kept_locally in ("blobs", "packs"):
        assert not any(path.is_file() for path in (server.root / "artifacts" / kept_locally).rglob("*"))
    assert any(path.is_file() for path in (server.root / "cache" / "table-fragments").rglob("*"))


BIG_KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from tracklet.client import artifacts
    from tracklet.client.sync import SyncClient
    from tracklet.core.layout import RunPaths

    url, root = sys.argv[1], Path(sys.argv[2])
    part = artifacts.PART_BYTES
    original = artifacts._FileBody.__iter__

    def dying(self):
        sent = 0
        for chunk in original(self):
            if self.start == 2 * part and sent >= self.length // 2:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-part 3: half of it is on the wire
            sent += len(chunk)
            yield chunk

    artifacts._FileBody.__iter__ = dying
    client = SyncClient(url, blob_dir=root / "artifacts", upload_state_dir=root / "cache" / "artifact-uploads")
    client.sync_run(RunPaths(root, "vision", "big"))
    print("not killed")
''')


def test_a_sync_killed_mid_part_of_a_large_fragment_resumes_with_the_missing_parts(servers, root, tmp_path):
    import json

    import pandas as pd

    from tracklet.client.artifacts import PART_BYTES, RESUMABLE_BYTES

    server = servers(tmp_path / "server")
    run = tracklet.init(project="vision", id="big", dir=str(root), settings=QUIET)
    frame = pd.DataFrame(np.random.default_rng(1).random((1_000_000, 5)), columns=list("abcde"))
    run.log({"scores": tracklet.Table(dataframe=frame)})  # ~40 MB of Parquet that doesn't compress
    run.finish()
    ((digest, data),) = [(d, b) for d, b in _local_blobs(root).items() if len(b) >= RESUMABLE_BYTES]
    parts = -(-len(data) // PART_BYTES)
    assert parts >= 4

    script = tmp_path / "killer.py"
    script.write_text(BIG_KILLER)
    killed = subprocess.run([sys.executable, str(script), server.url, str(root)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    (state,) = (root / "cache" / UPLOAD_STATE_DIR).glob("*.json")
    session_id = json.loads(state.read_bytes())["id"]
    session = httpx.get(f"{server.url}/api/v1/projects/vision/artifacts/_uploads/{session_id}").json()
    held = sorted(part["number"] for part in session["parts"])
    assert held and 3 not in held and len(held) < parts
    assert httpx.get(f"{server.url}/api/v1/runs/vision/big/log/offset").json()["offset"] == 0
    assert not (server.root / "artifacts" / "blobs" / "sha256" / digest[:2] / digest).exists()

    transport = Counting()
    with _sync_client(server.url, root, transport) as client:
        result = client.sync_run(RunPaths(root, "vision", "big"))
    sent_parts = sorted(int(path.rsplit("/", 1)[1]) for _, path, _ in transport.sent if "/parts/" in path)
    # Finished parts are never sent again, the part cut mid-body is. A part whose body had fully
    # arrived when the client died may still be stored by the server after `held` was read: it is
    # then neither held above nor sent (the resume finds it), so compare with what was sent.
    assert 3 in sent_parts and not set(sent_parts) & set(held), (sent_parts, held)
    sizes = {n: min(PART_BYTES, len(data) - (n - 1) * PART_BYTES) for n in range(1, parts + 1)}
    assert result.media_bytes == sum(sizes[n] for n in sent_parts)
    stored = server.root / "artifacts" / "blobs" / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == data
    table = tracklet.Api(base_url=server.url).run("vision/big").table("scores")
    assert table.count() == 1_000_000 and table.filter("a > 0.5").count() == int((frame["a"] > 0.5).sum())
