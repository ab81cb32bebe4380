"""Run files on the tracking server (real `tracklet server` processes): `tracklet sync` and online
mode upload a run's files/ byte-identical, to a local directory or to S3 (a real s3rver process,
tests/s3); a second sync sends nothing, a changed file is sent again; unsafe names get 400 and
write nothing; oversized bodies 413; unknown runs and files 404."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import serverproc
from conftest import QUIET, run_script
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem
from serverproc import Server

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.client.sync import SyncClient


@dataclasses.dataclass
class Backend:
    """Where the server under test keeps files, and a way to read them without the server."""

    name: str
    extra: tuple[str, ...]  # tracklet server arguments
    read: Callable[[str], bytes]  # key "<project>/<run_id>/<name>" → the stored bytes
    keys: Callable[[], list[str]]  # every stored key (relative to the location)


@pytest.fixture(params=["local", "s3-env", "s3-options"])
def backend(request, tmp_path, monkeypatch) -> Backend:
    """local: the default `<server dir>/files`; s3-env: `--files s3://...` configured by the
    standard AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...); s3-options: the same
    through `--files-option` (and no AWS environment at all)."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    if request.param == "local":
        base = tmp_path / "server" / "files"

        def keys() -> list[str]:
            return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

        return Backend("local", (), lambda key: (base / key).read_bytes(), keys)
    endpoint = request.getfixturevalue("s3rver")
    prefix = f"{BUCKET}/{uuid.uuid4().hex}"  # one s3rver per session: a prefix per test
    if request.param == "s3-env":
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        extra: tuple[str, ...] = ("--files", f"s3://{prefix}")
    else:
        extra = ("--files", f"s3://{prefix}", "--files-option", f"endpoint_url={endpoint}",
                 "--files-option", f"key={S3_KEY}", "--files-option", f"secret={S3_SECRET}")
    direct = s3_filesystem(endpoint)
    return Backend(request.param, extra, lambda key: direct.cat_file(f"{prefix}/{key}"),
                   lambda: sorted(path[len(prefix) + 1:] for path in direct.find(prefix)))


# ---------------------------------------------------------------- helpers

def _record(root: Path, project: str, run_id: str, files: dict[str, bytes]) -> RunPaths:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET)
    for step in range(20):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    paths = RunPaths(root, project, run_id)
    for name, data in files.items():
        target = paths.files_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return paths


def _sync_cli(url: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    """``tracklet sync`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli("sync", "--url", url, "-q", *args, env={"TRACKLET_DIR": str(root)})


def _listing(url: str, project: str, run_id: str) -> dict[str, dict]:
    response = httpx.get(f"{url}/api/v1/runs/{project}/{run_id}/files")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["files"]}


def _raw(server: Server, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """A request with its target sent exactly as written (httpx would normalize '..' away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


FILES = {
    "requirements.txt": b"numpy==2.1.0\ntorch==2.5.1\n",
    "diff.patch": b"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-lr = 0.1\n+lr = 0.01\n",
    "media/notes.md": "# notes: \u00e9t\u00e9 \u2713\n".encode(),
    "blob.bin": os.urandom(300_000),  # incompressible, several read chunks
    "empty.txt": b"",
}


# ---------------------------------------------------------------- tests

def test_sync_uploads_files_byte_identical_then_only_what_changed(root, servers, backend, tmp_path):
    server = servers(tmp_path / "server", extra=backend.extra)
    local = _record(root, "vision", "r1", FILES)

    result = _sync_cli(server.url, root, "--all")
    assert result.returncode == 0, result.stderr
    listing = _listing(server.url, "vision", "r1")
    assert sorted(listing) == sorted(FILES)
    for name, data in FILES.items():
        assert listing[name]["size"] == len(data)
        assert listing[name]["sha256"] == hashlib.sha256(data).hexdigest()
        response = httpx.get(f"{server.url}/api/v1/runs/vision/r1/files/{name}")
        assert response.status_code == 200
        assert response.content == data
        assert backend.read(f"vision/r1/{name}") == data  # the storage itself, not through the server
    assert backend.keys() == sorted(f"vision/r1/{name}" for name in FILES)  # no temporary leftovers
    assert httpx.get(f"{server.url}/api/v1/runs/vision/r1/files/requirements.txt").headers["content-type"] \
        == "text/plain; charset=utf-8"
    assert httpx.get(f"{server.url}/api/v1/runs/vision/r1/files/blob.bin").headers["content-type"] \
        == "application/octet-stream"

    with SyncClient(server.url) as client:
        again = client.sync_run(local)
        assert (again.sent_bytes, again.files_sent) == (0, 0)
        assert _listing(server.url, "vision", "r1") == listing  # nothing rewritten

        changed = b"numpy==2.1.0\ntorch==2.5.2\n"  # same size, other bytes: the sha256 tells
        assert len(changed) == len(FILES["requirements.txt"])
        (local.files_dir / "requirements.txt").write_bytes(changed)
        (local.files_dir / "media" / "new.txt").write_bytes(b"added later\n")
        assert client.sync_run(local).files_sent == 2
    after = _listing(server.url, "vision", "r1")
    assert after["requirements.txt"]["sha256"] == hashlib.sha256(changed).hexdigest()
    assert backend.read("vision/r1/requirements.txt") == changed
    assert backend.read("vision/r1/media/new.txt") == b"added later\n"
    assert {name: after[name] for name in listing if name != "requirements.txt"} == \
        {name: entry for name, entry in listing.items() if name != "requirements.txt"}


@pytest.mark.parametrize("backend", ["local", "s3-env"], indirect=True)
def test_an_online_run_carries_its_files(root, servers, backend, tmp_path):
    server = servers(tmp_path / "server", extra=backend.extra)
    run = tracklet.init(project="live", id="online", dir=str(root), mode="online",
                        settings={**QUIET, "base_url": server.url, "upload_interval": 0.05})
    run.log({"loss": 1.0})
    (Path(run.dir) / "files").mkdir(exist_ok=True)
    (Path(run.dir) / "files" / "config.yaml").write_bytes(b"lr: 0.01\n")
    run.finish()
    assert backend.read("live/online/config.yaml") == b"lr: 0.01\n"
    assert httpx.get(f"{server.url}/api/v1/runs/live/online/files/config.yaml").content == b"lr: 0.01\n"


ATTACKS = [
    "../x", "%2e%2e/x", "..%2fx", "a/../../b", "a/./b", "a%5cb", "a\\b", "%2Fetc/passwd", "/etc/passwd",
    "a//b", "a/", "x%00y", ".hidden", "a/.tmp", "sp%20ace", "x" * 600,
]


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and "store.sqlite" not in p.name)


@pytest.mark.parametrize("backend", ["local", "s3-env"], indirect=True)
@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_unsafe_names_get_400_and_write_nothing(root, servers, backend, tmp_path, method):
    server = servers(tmp_path / "server", extra=backend.extra)
    _record(root, "p", "r", {})
    assert _sync_cli(server.url, root, "p/r").returncode == 0
    before = _files_under(tmp_path)
    for name in ATTACKS:
        status, body = _raw(server, method, f"/api/v1/runs/p/r/files/{name}", b"owned" if method == "PUT" else b"")
        assert status == 400, (name, status, body)
        assert b"file name" in body and b"is not valid" in body, body
    for target in ["/api/v1/runs/%2e%2e/r/files/x", "/api/v1/runs/p/%2e%2e/files/x", "/api/v1/runs/p/a%5cb/files/x"]:
        status, body = _raw(server, method, target, b"owned" if method == "PUT" else b"")
        assert status == 400, (target, status, body)
    assert backend.keys() == []
    assert _files_under(tmp_path) == before
    assert not list(Path("/").glob("x")) and not list(tmp_path.parent.glob("x"))


def test_oversized_bodies_413_unknown_runs_and_files_404(root, servers, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # an explicit --files directory
    server = servers(tmp_path / "server", extra=("--files", str(elsewhere), "--max-body-mb", "1"))
    _record(root, "p", "r", {})
    assert _sync_cli(server.url, root, "p/r").returncode == 0
    with httpx.Client(base_url=server.url) as http:
        too_big = http.put("/api/v1/runs/p/r/files/big.bin", content=b"x" * ((1 << 20) + 1))
        assert too_big.status_code == 413 and "too large" in too_big.json()["detail"]
        bomb = gzip.compress(b"\0" * (8 << 20))  # 8 KiB on the wire, 8 MiB decoded
        assert http.put("/api/v1/runs/p/r/files/bomb.bin", content=bomb,
                        headers={"Content-Encoding": "gzip"}).status_code == 413
        assert http.put("/api/v1/runs/p/r/files/ok.bin", content=gzip.compress(b"fits"),
                        headers={"Content-Encoding": "gzip"}).json()["written"] is True

        assert http.get("/api/v1/runs/p/r/files/nope.txt").status_code == 404
        assert http.get("/api/v1/runs/p/r/files/media").status_code == 404
        assert http.get("/api/v1/runs/p/unknown/files").status_code == 404
        assert http.put("/api/v1/runs/p/unknown/files/a.txt", content=b"a").status_code == 404
        assert http.put("/api/v1/runs/p/r/files/ok.bin/x", content=b"a").status_code == 409  # ok.bin is a file
        again = http.put("/api/v1/runs/p/r/files/ok.bin", content=b"fits")
        assert again.json()["written"] is False  # identical content: idempotent
        assert [e["name"] for e in http.get("/api/v1/runs/p/r/files").json()["files"]] == ["ok.bin"]
    assert sorted(p.relative_to(elsewhere).as_posix() for p in elsewhere.rglob("*") if p.is_file()) == ["p/r/ok.bin"]
    assert not (tmp_path / "server" / "files").exists()


def test_files_that_vanish_or_are_refused_are_skipped_with_a_warning(root, servers, tmp_path):
    server = servers(tmp_path / "server")
    local = _record(root, "p", "r", {"good.txt": b"kept\n", "bad name.txt": b"refused\n"})
    (local.files_dir / "vanished.txt").symlink_to(tmp_path / "does-not-exist")
    with SyncClient(server.url) as client, pytest.warns(tracklet.TrackletWarning) as caught:
        result = client.sync_run(local)
    messages = "\n".join(str(w.message) for w in caught)
    assert "vanished.txt" in messages and "bad name.txt" in messages and "is not valid" in messages
    assert result.files_sent == 1 and result.offset == local.log_file.stat().st_size
    assert RunPaths(server.root, "p", "r").log_file.read_bytes() == local.log_file.read_bytes()
    assert sorted(_listing(server.url, "p", "r")) == ["good.txt"]


def test_a_bad_s3_location_stops_the_server_at_start(servers, s3rver, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3rver)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(RuntimeError, match="cannot use the files location s3://no-such-bucket/x.*does not exist"):
        servers(tmp_path / "server", extra=("--files", "s3://no-such-bucket/x"))


def test_importing_tracklet_and_its_sync_client_loads_no_storage_library():
    result = run_script("import sys, tracklet, tracklet.client.sync; "
                        "print(sorted(m for m in ('fsspec', 's3fs', 'fastapi') if m in sys.modules))", check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["local", "s3-env"], indirect=True)
def test_a_large_file_is_streamed_and_a_body_that_does_not_match_its_sha256_is_refused(root, servers, backend, tmp_path):
    from tracklet.client import files as client_files

    server = servers(tmp_path / "server", extra=backend.extra)
    big = os.urandom(client_files.WHOLE_BYTES + 3 * client_files.PIECE + 17)  # hashed, then sent from disk in pieces
    local = _record(root, "p", "r", {"model.bin": big})
    with SyncClient(server.url) as client:
        assert client.sync_run(local).files_sent == 1
    assert backend.read("p/r/model.bin") == big
    assert _listing(server.url, "p", "r")["model.bin"]["sha256"] == hashlib.sha256(big).hexdigest()

    with httpx.Client(base_url=server.url) as http:  # a body that changed after it was hashed
        stale = http.put("/api/v1/runs/p/r/files/model.bin", content=gzip.compress(b"other bytes"),
                         headers={"Content-Encoding": "gzip", "X-Tracklet-Sha256": hashlib.sha256(big).hexdigest()})
        assert stale.status_code == 412 and "nothing was stored" in stale.json()["detail"]
        fresh = http.put("/api/v1/runs/p/r/files/new.bin", content=b"abc",
                         headers={"X-Tracklet-Sha256": hashlib.sha256(b"abd").hexdigest()})
        assert fresh.status_code == 412
    assert backend.read("p/r/model.bin") == big  # the stored file is untouched
    assert backend.keys() == ["p/r/model.bin"]  # nothing half-written, no temporary left visible
