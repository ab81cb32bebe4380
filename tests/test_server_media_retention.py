"""Media retention on a tracking server (issue #16, docs/media.md "Retention"): `tracklet media prune
--url` applies the policy to the server's runs and removes from its blob store (a real s3rver here)
only the blobs nothing else names; `tracklet sync` carries a locally pruned run's retention to the
server; `tracklet admin artifact-gc` keeps the blobs runs name (media are granted like artifact
files, but no artifact version references them).

Real `tracklet server` processes, real HTTP, real S3 protocol (s3rver); nothing timed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import serverproc
from conftest import QUIET
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem

import tracklet
from tracklet.artifacts.remote import UPLOAD_STATE_DIR
from tracklet.artifacts.storage import artifact_dir
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths
from tracklet.media import retention
from tracklet.server.artifact_blobs import encode_batch

pytest.importorskip("pyarrow")


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args, timeout=180)


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 20, 3), dtype=np.uint8)


def _log(root: Path, project: str, run_id: str, seeds: list[int]) -> list[str]:
    """A finished offline run logging one image per step under "img" (``seeds[step]``): the digests."""
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET)
    for step, seed in enumerate(seeds):
        run.log({"img": tracklet.Image(_pixels(seed))}, step=step)
    run.finish()
    return [item.digest for item in tracklet.Api(root).run(f"{project}/{run_id}").media("img")]


def _sync(url: str, root: Path, project: str, run_id: str) -> None:
    with SyncClient(url, blob_dir=artifact_dir(root), upload_state_dir=root / "cache" / UPLOAD_STATE_DIR) as client:
        client.sync_run(RunPaths(root, project, run_id))


def _steps(url: str, path: str) -> list[int]:
    answer = httpx.get(f"{url}/api/v1/runs/{path}/media", params={"key": "img"})
    assert answer.status_code == 200, answer.text
    return [entry["step"] for entry in answer.json()["media"]]


def test_a_prune_on_an_s3_server_removes_only_the_blobs_nothing_else_names(servers, root, tmp_path, s3rver,
                                                                          monkeypatch):
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKLET_ARTIFACT_PACK_SMALL", "0")  # each blob an S3 object of its own
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"
    server = servers(tmp_path / "server", extra=(
        "--artifacts", f"s3://{prefix}", "--files-option", f"endpoint_url={s3rver}",
        "--files-option", f"key={S3_KEY}", "--files-option", f"secret={S3_SECRET}"))
    # Run a: steps 0-3. Step 0's image is run b's too; step 1's bytes are also held by project
    # "other" (uploaded there, named by nothing); step 2's are a's alone; step 3 is kept.
    digests = _log(root, "vision", "a", [0, 1, 2, 3])
    _log(root, "vision", "b", [0])
    for run_id in ("a", "b"):
        _sync(server.url, root, "vision", run_id)
    other = httpx.post(f"{server.url}/api/v1/projects/other/artifacts/_blobs/batch",
                       content=encode_batch([(digests[1], (artifact_dir(root) / "blobs" / "sha256" / digests[1][:2]
                                                           / digests[1]).read_bytes())]),
                       headers={"Content-Type": "application/octet-stream"})
    assert other.status_code == 200, other.text
    s3 = s3_filesystem(s3rver)

    def on_s3(digest: str) -> bool:
        return s3.exists(f"{prefix}/blobs/sha256/{digest[:2]}/{digest}")

    assert all(on_s3(digest) for digest in digests)

    pruned = _cli("media", "prune", "vision", "--keep-last", "1", "--url", server.url, "--grace", "0")
    assert pruned.returncode == 0, pruned.stderr
    assert "retired 3 media item(s)" in pruned.stdout and "removed 1 stored blob(s)" in pruned.stdout, pruned.stdout
    assert _steps(server.url, "vision/a") == [3] and _steps(server.url, "vision/b") == [0]
    assert [on_s3(digest) for digest in digests] == [True, True, False, True]  # only step 2's blob went
    assert httpx.get(f"{server.url}/api/v1/runs/vision/b/media/{digests[0]}").status_code == 200
    # Pruning again (the route the command calls) retires nothing new and removes nothing more.
    again = httpx.post(f"{server.url}/api/v1/projects/vision/media/prune", json={"keep_last": 1, "grace_seconds": 0})
    assert again.status_code == 200 and (again.json()["runs"], again.json()["blobs_removed"]) == ([], 0), again.text


def test_sync_carries_a_local_prune_to_the_server_and_artifact_gc_keeps_run_media(servers, root, tmp_path):
    server = servers(tmp_path / "server")
    digests = _log(root, "vision", "a", [5, 6, 7])
    _sync(server.url, root, "vision", "a")  # synced before the prune: the server has every step
    report = retention.apply(root, retention.plan(root, "vision", 1), keep_last=1)
    assert report.blobs_removed == 2  # gone locally: the next sync must not look for them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "missing from the local blob store" warning
        _sync(server.url, root, "vision", "a")
    assert _steps(server.url, "vision/a") == [2]
    answer = httpx.put(f"{server.url}/api/v1/runs/vision/a/media/retention", json={"keys": {"img": 0}})
    assert answer.json()["keys"] == {"img": 2}  # retention only moves forward

    # A run never pruned keeps every blob through the server's artifact garbage collection.
    kept = _log(root, "vision", "b", [8, 9])
    _sync(server.url, root, "vision", "b")
    server.stop()
    collected = _cli("admin", "--dir", str(server.root), "artifact-gc", "--grace", "0")
    assert collected.returncode == 0, collected.stderr
    server.start()
    for digest in kept + digests[2:]:
        path = "b" if digest in kept else "a"
        assert httpx.get(f"{server.url}/api/v1/runs/vision/{path}/media/{digest}").status_code == 200, digest


def test_a_prune_on_a_server_removes_blobs_while_one_of_its_runs_is_running(servers, root, tmp_path, monkeypatch):
    """A run of the server still running (synced without its end) no longer holds every prune off:
    an uploaded blob is removed holding the grants locked, its grants checked again (an upload of
    the same bytes meanwhile keeps it or sends it again), so the retired blob only run a named goes.
    Before, the prune removed nothing and said a run was still running."""
    monkeypatch.setenv("TRACKLET_ARTIFACT_PACK_SMALL", "0")  # each blob a file of its own
    server = servers(tmp_path / "server")
    digests = _log(root, "vision", "a", [10, 11, 12])
    _sync(server.url, root, "vision", "a")
    running = tracklet.init(project="vision", id="live", dir=str(root), settings=QUIET)
    running.log({"img": tracklet.Image(_pixels(13))}, step=0)
    assert running.flush(timeout=60)
    try:
        _sync(server.url, root, "vision", "live")
        assert httpx.get(f"{server.url}/api/v1/runs/vision/live").json()["run"]["state"] == "running"
        blob = server.root / "artifacts" / "blobs" / "sha256" / digests[0][:2] / digests[0]
        assert blob.exists()
        pruned = _cli("media", "prune", "vision", "--keep-last", "1", "--url", server.url, "--grace", "0", "--key",
                      "img")
        assert pruned.returncode == 0, pruned.stderr
        assert "still running" not in pruned.stdout + pruned.stderr, pruned.stdout
        assert "removed 2 stored blob(s)" in pruned.stdout, pruned.stdout
        assert not blob.exists()
        assert _steps(server.url, "vision/a") == [2] and _steps(server.url, "vision/live") == [0]
    finally:
        running.finish()
