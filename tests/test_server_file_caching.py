"""HEAD and conditional requests on every file route: a run's files (``GET .../runs/{p}/{r}/files/{name}``),
an artifact version's files (``GET .../artifacts/{name}/versions/{selector}/files/{path}``), a run's
media (``GET .../runs/{p}/{r}/media/{digest}``) and blobs (``GET .../artifacts/_blobs/{digest}``).

Each answers ``HEAD`` with a GET's status and headers (its Content-Length and Content-Type too) and no
body, from metadata (a HEAD of media or a run file reads none of the bytes: measured; a run file's
ETag is left out of a HEAD while its digest isn't known); carries a strong ETag, the content's sha256; answers an ``If-None-Match`` naming it (or ``*``, or a
list holding it, weak or not) with 304 and no body, ahead of a ``Range``; and says how long the bytes
may be kept: content-addressed ones (a version's files, blobs, media) immutable for a year, a run's
files (a live run may rewrite them) kept but revalidated, their ETag following the bytes. And the
media list carries a step past 2**53 - 1 as a string (JavaScript would round the number), which
``tracklet.Api`` reads back as the int it is.

One app per backend (module-scoped): ``tracklet ui`` over a data root (a real process), a ``tracklet
server`` on SQLite with its files and blobs in directories, and one with both on S3 (a real s3rver)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import QUIET
from s3server import BUCKET, S3_KEY, S3_SECRET
from serverproc import Server
from test_dashboard import start_ui

import tracklet
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.remote import upload_version
from tracklet.artifacts.storage import ArtifactStore, artifact_dir
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.client.sync import SyncClient
from tracklet.core.layout import RunPaths

NOTES = b"lr = 0.01\n" * 100
SCENE = b'{"asset": {"version": "2.0"}}' + b" " * 5000
IMMUTABLE = "private, max-age=31536000, immutable"
WEIGHTS = np.random.default_rng(2).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()  # a version's file a GET reads whole
STEP = 2**53 + 1  # no float: the media list carries it as a string of its digits


def _record(root: Path) -> None:
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    run.log({"picture": tracklet.Image(np.full((8, 8, 3), 200, np.uint8))}, step=STEP)
    run.finish()
    files = RunPaths(root, "p", "r").files_dir
    files.mkdir(parents=True, exist_ok=True)
    (files / "notes.txt").write_bytes(NOTES)
    # A run whose one picture is a few MiB (random pixels: PNG can't shrink them), still served from memory.
    big = tracklet.init(project="p", id="big", dir=str(root), settings=QUIET)
    big.log({"noise": tracklet.Image(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8))})
    big.finish()


def _commit(root: Path, sources: Path) -> ArtifactStore:
    sources.mkdir(parents=True, exist_ok=True)
    (sources / "scene.gltf").write_bytes(SCENE)
    (sources / "weights.bin").write_bytes(WEIGHTS)
    store = ArtifactStore(root)
    store.commit("scene", "model", {"models/scene.gltf": LocalFile(str(sources / "scene.gltf")),
                                    "weights.bin": LocalFile(str(sources / "weights.bin"))}, project="p", aliases=[])
    return store


class Served:
    """A backend under test: an HTTP client at its base URL, how to rewrite run r's notes.txt (and
    its path on a data root), the serving process's pid and its data root."""

    def __init__(self, kind: str, client: httpx.Client, rewrite, path: Path | None = None, pid: int = 0,
                 root: Path | None = None) -> None:
        self.kind, self.client, self.rewrite, self.path, self.pid, self.root = kind, client, rewrite, path, pid, root


@pytest.fixture(scope="module", params=["ui", "server", "s3"])
def served(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    root = base / "root"
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("AWS_")]}
    try:
        _record(root)
        store = _commit(root, base / "src")
        if request.param == "ui":
            process, url, token = start_ui(root)
            try:
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
                    notes = RunPaths(root, "p", "r").files_dir / "notes.txt"
                    yield Served("ui", client, notes.write_bytes, notes, process.pid, root)
            finally:
                process.terminate()
                process.wait(timeout=10)
            return
        extra: tuple[str, ...] = ()
        if request.param == "s3":
            prefix = f"{BUCKET}/{uuid.uuid4().hex}"
            extra = ("--artifacts", f"s3://{prefix}/artifacts", "--files", f"s3://{prefix}/files",
                     "--files-option", f"endpoint_url={request.getfixturevalue('s3rver')}",
                     "--files-option", f"key={S3_KEY}", "--files-option", f"secret={S3_SECRET}")
        server = Server(base / "server", extra=extra).start()
        try:
            with SyncClient(server.url, blob_dir=artifact_dir(root), upload_state_dir=base / "uploads") as sync:
                sync.sync_run(RunPaths(root, "p", "r"))
                sync.sync_run(RunPaths(root, "p", "big"))
            upload_version(ArtifactClient(HttpClient(server.url), base / "state"), store,
                           store.registry.version("p", "scene", "v0"), [])
            with httpx.Client(base_url=server.url, timeout=60) as client:
                def rewrite(data: bytes) -> None:
                    answer = client.put("/api/v1/runs/p/r/files/notes.txt", content=data)
                    assert answer.status_code == 200, answer.text

                rewrite(NOTES)
                assert server.proc is not None
                yield Served(request.param, client, rewrite, pid=server.proc.pid)
        finally:
            server.stop_checked()
    finally:
        os.environ.update(saved)


def _media(client: httpx.Client) -> tuple[str, bytes]:
    listed = client.get("/api/v1/runs/p/r/media")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["media"]
    whole = client.get(f"/api/v1/runs/p/r/media/{item['digest']}")
    assert whole.status_code == 200, whole.text
    return item["digest"], whole.content


def _routes(served: Served) -> dict[str, tuple[str, bytes, str]]:
    """Each content-addressed route: (URL, bytes, the content type a GET gives). The blob route is a
    server's (the blobs its projects hold, as clients upload them): a data root's blobs are no
    project's there, so under `tracklet ui` it answers 404, HEAD as GET."""
    digest, picture = _media(served.client)
    scene = hashlib.sha256(SCENE).hexdigest()
    routes = {"version file": ("/api/v1/projects/p/artifacts/scene/versions/v0/files/models/scene.gltf", SCENE, ""),
              "blob": (f"/api/v1/projects/p/artifacts/_blobs/{scene}", SCENE, "application/octet-stream"),
              "media": (f"/api/v1/runs/p/r/media/{digest}", picture, "image/png")}
    if served.kind == "ui":
        url = routes.pop("blob")[0]
        assert served.client.head(url).status_code == served.client.get(url).status_code == 404
    return routes


def _head_matches_get(client: httpx.Client, url: str, **headers) -> httpx.Response:
    got = client.get(url, headers=headers)
    head = client.head(url, headers=headers)
    assert head.status_code == got.status_code and head.content == b"", (url, head.status_code, head.content[:100])
    for name in ("content-length", "content-type", "etag", "cache-control", "content-range", "accept-ranges",
                 "x-content-type-options", "content-security-policy"):
        assert head.headers.get(name) == got.headers.get(name), (url, name, head.headers.get(name), got.headers.get(name))
    return got


def test_content_addressed_files_answer_head_and_if_none_match_and_are_kept_immutable(served):
    client = served.client
    for what, (url, data, mime) in _routes(served).items():
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        got = _head_matches_get(client, url)
        assert got.content == data, what
        assert (got.headers["etag"], got.headers["cache-control"]) == (etag, IMMUTABLE), (what, dict(got.headers))
        assert not mime or got.headers["content-type"] == mime, (what, got.headers["content-type"])
        assert got.headers["content-length"] == str(len(data))
        for named in (etag, f"W/{etag}", f'"{"0" * 64}", {etag}', "*"):
            for method in ("GET", "HEAD"):
                unchanged = client.request(method, url, headers={"If-None-Match": named, "Range": "bytes=0-9"})
                assert unchanged.status_code == 304 and unchanged.content == b"", (what, named, method, unchanged.status_code)
                assert (unchanged.headers["etag"], unchanged.headers["cache-control"]) == (etag, IMMUTABLE)
        other = client.get(url, headers={"If-None-Match": f'"{"0" * 64}"'})
        assert other.status_code == 200 and other.content == data, what
        if what != "media":  # the artifact byte routes take ranges: a HEAD says what a ranged GET would
            ranged = _head_matches_get(client, url, Range="bytes=2-11")
            assert ranged.status_code == 206 and ranged.content == data[2:12], what
    missing = "/api/v1/projects/p/artifacts/scene/versions/v0/files/models/nowhere.bin"
    assert client.head(missing).status_code == client.get(missing).status_code == 404


def test_a_run_file_is_revalidated_and_its_etag_follows_its_bytes(served):
    client = served.client
    url = "/api/v1/runs/p/r/files/notes.txt"
    if served.path is not None:  # older than the file system's clock tick: the GET keeps its digest for the HEAD
        past = os.stat(served.path).st_mtime_ns - 60 * 10**9
        os.utime(served.path, ns=(past, past))
    try:
        got = _head_matches_get(client, url)
        etag = f'"{hashlib.sha256(NOTES).hexdigest()}"'
        assert got.content == NOTES and got.headers["etag"] == etag
        assert got.headers["cache-control"] == "private, no-cache"  # kept, never "immutable": a live run rewrites it
        listed = {entry["name"]: entry["sha256"] for entry in client.get("/api/v1/runs/p/r/files").json()["files"]}
        assert f'"{listed["notes.txt"]}"' == etag  # the listing's sha256
        for method in ("GET", "HEAD"):
            unchanged = client.request(method, url, headers={"If-None-Match": etag})
            assert unchanged.status_code == 304 and unchanged.content == b"", (method, unchanged.status_code)
            assert unchanged.headers["etag"] == etag
        served.rewrite(b"lr = 0.001\n")  # the run rewrote it: the old ETag no longer matches
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 200 and again.content == b"lr = 0.001\n"
        assert again.headers["etag"] == '"' + hashlib.sha256(b"lr = 0.001\n").hexdigest() + '"'
        assert client.head("/api/v1/runs/p/r/files/nowhere.txt").status_code == 404
    finally:
        served.rewrite(NOTES)


def test_a_run_file_rewritten_within_one_tick_of_the_file_systems_clock_gets_its_new_etag(served):
    """A data root's file rewritten in place with the same size within one tick of its file system's
    clock (a few ms on ext4 without fine-grained timestamps, 2 s on FAT) keeps its size, mtime and
    inode: the digest of bytes that recent is not kept, so the new bytes are never answered with the
    old ETag or a 304. (The tick is simulated: both versions are given one mtime, a minute ahead.)"""
    if served.kind != "ui":
        pytest.skip("a server writes each version of a run file to a new inode")
    url = "/api/v1/runs/p/r/files/notes.txt"
    ahead = (os.stat(served.path).st_mtime_ns + 60 * 10**9,) * 2
    try:
        before = b"lr = 0.02\n" * 100
        served.rewrite(before)
        os.utime(served.path, ns=ahead)
        first = served.client.get(url)
        assert first.content == before and first.headers["etag"] == '"' + hashlib.sha256(before).hexdigest() + '"'
        after = b"lr = 0.03\n" * 100
        served.rewrite(after)
        os.utime(served.path, ns=ahead)
        # A HEAD reads no bytes: these bytes' digest isn't known (too recent to keep), so it gives none.
        head = served.client.head(url, headers={"If-None-Match": first.headers["etag"]})
        assert head.status_code == 200 and "etag" not in head.headers, dict(head.headers)
        again = served.client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 200 and again.headers["etag"] == '"' + hashlib.sha256(after).hexdigest() + '"'
        assert served.client.get(url).content == after
    finally:
        served.rewrite(NOTES)


def _bytes_read(pid: int) -> int:
    """What process ``pid`` has read through read(2) and its kin so far, from any file, the page
    cache's or not (``rchar`` of /proc/<pid>/io): a HEAD that reads a file whole shows as its size."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def test_a_head_answers_from_metadata_without_reading_the_bytes(served):
    """A ``HEAD`` of a media blob and of an artifact version's file (a few MiB: ones a GET reads into
    memory to check them) and of a run file reads none of them: the blob is named by its digest, the file's ETag is given where its digest
    is known and left out where it isn't (a fresh file under ``tracklet ui``), never hashed for a
    HEAD. Measured as the bytes the serving process read, against a GET of the same three."""
    if served.kind == "s3":
        pytest.skip("the bytes are in s3rver's process: the server reads none of them for a HEAD or a GET")
    if not Path(f"/proc/{served.pid}/io").exists():
        pytest.skip("no /proc/<pid>/io on this system")
    client = served.client
    (item,) = client.get("/api/v1/runs/p/big/media").json()["media"]
    media, size = f"/api/v1/runs/p/big/media/{item['digest']}", item["size_bytes"]
    assert (1 << 20) < size <= (16 << 20)  # held in memory by a GET (media_blobs.IN_MEMORY_BYTES), checked whole
    data = np.random.default_rng(1).integers(0, 256, 4 << 20, dtype=np.uint8).tobytes()
    name = f"weights-{uuid.uuid4().hex[:8]}.bin"
    url = f"/api/v1/runs/p/r/files/{name}"
    if served.root is not None:  # a data root's file nobody hashed yet, old enough for a GET to keep its digest
        path = RunPaths(served.root, "p", "r").files_dir / name
        path.write_bytes(data)
        past = os.stat(path).st_mtime_ns - 60 * 10**9
        os.utime(path, ns=(past, past))
    else:  # uploaded: the server kept the digest of what it wrote
        assert client.put(url, content=data).status_code == 200
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    version_file = "/api/v1/projects/p/artifacts/scene/versions/v0/files/weights.bin"
    before = _bytes_read(served.pid)
    for _ in range(3):
        head = client.head(version_file)
        assert (head.status_code, head.headers["content-length"]) == (200, str(len(WEIGHTS)))
        head = client.head(media)
        assert (head.status_code, head.headers["content-length"], head.headers["etag"]) == (200, str(size), f'"{item["digest"]}"')
        head = client.head(url)
        assert (head.status_code, head.headers["content-length"]) == (200, str(len(data)))
        assert head.headers.get("etag") == (None if served.root is not None else etag), dict(head.headers)
    read, whole = _bytes_read(served.pid) - before, size + len(data) + len(WEIGHTS)
    assert read < whole // 4, f"9 HEADs read {read:,} bytes; the three files hold {whole:,}"
    before = _bytes_read(served.pid)  # the measure sees reads: a GET of each reads its bytes
    assert client.get(media).status_code == 200 and client.get(url).headers["etag"] == etag
    assert client.get(version_file).content == WEIGHTS
    assert _bytes_read(served.pid) - before >= whole
    before = _bytes_read(served.pid)  # its digest known now: named by a HEAD, still unread, and a 304 to match
    assert client.head(url).headers["etag"] == etag
    assert client.head(url, headers={"If-None-Match": etag}).status_code == 304
    assert _bytes_read(served.pid) - before < len(data) // 4
    if served.root is not None:
        path.unlink()


def test_a_media_step_past_2_53_is_a_string_in_json_and_an_int_through_the_api(served):
    (entry,) = served.client.get("/api/v1/runs/p/r/media").json()["media"]
    assert entry["step"] == str(STEP)
    if served.kind != "ui":  # tracklet.Api(base_url=...): a server's
        (item,) = tracklet.Api(base_url=str(served.client.base_url)).run("p/r").media("picture")
        assert item.step == STEP and isinstance(item.step, int)
