"""``GET .../artifacts/{name}/versions/{selector}/files/{path}`` serves every stored file of a
version, whatever the store made of it (a blob of its own, a small blob in a server's pack, a
large file stored as chunks), under ``tracklet ui`` (a local data root), on a server with its
blobs in a directory and on one with them on S3 (a real s3rver): whole and ranged (206), each byte
checked (a damaged chunk is a 500 naming the file, never wrong bytes), a missing one a 404 that
says why it can be. The chunk threshold is lowered to 1 MiB, so the "large" file is 3 MiB.

One app per backend (module-scoped): ``tracklet ui``'s in process (FastAPI's TestClient), each
server a real ``tracklet server`` process, its version sent as a client sends it (``upload_version``)."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem
from serverproc import Server
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.remote import upload_version
from tracklet.artifacts.storage import ArtifactStore
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.server import artifact_source
from tracklet.server.app import create_app

MiB = 1 << 20
FILES = {
    "scene.gltf": b'{"asset": {"version": "2.0"}}',  # small: a blob of its own locally, packed on a server
    "textures/wood.png": random.Random(1).randbytes(200_000),  # whole; checked piecewise below (IN_MEMORY lowered)
    "big.bin": random.Random(2).randbytes(3 * MiB + 12345),  # chunked (threshold 1 MiB)
}
URL = "/api/v1/projects/p/artifacts/scene/versions/latest/files/"


def _commit(root: Path, sources: Path) -> ArtifactStore:
    sources.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in FILES.items():
        path = sources / name.replace("/", "_")
        path.write_bytes(data)
        files[name] = LocalFile(str(path))
    store = ArtifactStore(root, chunk_threshold=MiB)
    store.commit("scene", "model", files, project="p", aliases=[])
    return store


@pytest.fixture(scope="module", params=["ui", "server", "s3"])
def served(request, tmp_path_factory):
    """(kind, client, store dir or None): a version holding FILES, served by one app."""
    base = tmp_path_factory.mktemp(request.param)
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("AWS_")]}
    try:
        if request.param == "ui":
            _commit(base / "root", base / "src")
            app = create_app(base / "root", shared_root=True, auth=False, index_on_start=False)
            with TestClient(app) as client:
                yield request.param, client, Packs(directory=base / "root" / "artifacts")
            return
        extra: tuple[str, ...] = ()
        if request.param == "s3":
            extra = ("--artifacts", f"s3://{BUCKET}/{uuid.uuid4().hex}", "--files-option",
                     f"endpoint_url={request.getfixturevalue('s3rver')}", "--files-option", f"key={S3_KEY}",
                     "--files-option", f"secret={S3_SECRET}")
        server = Server(base / "server", extra=extra).start()
        try:
            store = _commit(base / "root", base / "src")
            upload_version(ArtifactClient(HttpClient(server.url), base / "state"), store,
                           store.registry.version("p", "scene", "v0"), [])
            with httpx.Client(base_url=server.url, timeout=60) as client:
                yield request.param, client, (Packs(directory=base / "server" / "artifacts") if request.param == "server"
                                              else Packs(s3=s3_filesystem(request.getfixturevalue("s3rver")),
                                                         prefix=extra[1].removeprefix("s3://")))
        finally:
            server.stop_checked()
    finally:
        os.environ.update(saved)


class Packs:
    """A backend's packs, read and rewritten in place: a directory's files, or an S3 prefix's objects."""

    def __init__(self, directory: Path | None = None, s3=None, prefix: str = "") -> None:
        self.directory, self.s3, self.prefix = directory, s3, prefix

    def list(self) -> list:
        if self.directory is not None:
            return sorted(self.directory.rglob("*.pack"))
        return sorted(key for key in self.s3.find(self.prefix) if key.endswith(".pack"))

    def read(self, pack) -> bytes:
        return pack.read_bytes() if self.directory is not None else self.s3.cat_file(pack)

    def write(self, pack, data: bytes) -> None:
        if self.directory is not None:
            pack.chmod(0o644)
            pack.write_bytes(data)
        else:
            self.s3.pipe_file(pack, data)


@pytest.fixture
def piecewise(monkeypatch):
    """Files over 64 KiB are checked without being held whole (the path a 16 MiB+ blob takes)."""
    monkeypatch.setattr(artifact_source, "IN_MEMORY_BYTES", 64 << 10)


def test_every_stored_file_whole_and_ranged(served, piecewise):
    kind, client, _ = served
    for name, data in FILES.items():
        whole = client.get(URL + name)
        assert whole.status_code == 200, (kind, name, whole.text[:300])
        assert whole.content == data and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-security-policy"] == "sandbox"
        for start, end in ((0, 9), (len(data) // 2, len(data) // 2 + MiB), (len(data) - 5, len(data) - 1)):
            part = client.get(URL + name, headers={"Range": f"bytes={start}-{end}"})
            assert part.status_code == 206, (kind, name, part.text[:300])
            assert part.content == data[start:end + 1]
            assert part.headers["content-range"] == f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
        assert client.get(URL + name, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert client.get(URL + "textures/wood.png").headers["content-type"] == "image/png"
    missing = client.get(URL + "nothere.bin")
    assert missing.status_code == 404 and "has no file 'nothere.bin'" in missing.json()["detail"]


def test_any_range_header_is_answered_and_only_a_fixed_version_is_cached_for_good(served):
    """Every Range a client may send is a 206, 416 or 400, never a 500: positions of thousands of
    digits (past Python's int() limit) are past any file's end, non-ASCII digits are no digits.
    ``vN`` names one version for good (cached as immutable); ``latest`` and aliases move."""
    kind, client, _ = served
    data, far = FILES["scene.gltf"], "9" * 5000
    for header, status, content in ((f"bytes={far}-", 416, b""), (f"bytes=0-{far}", 206, data),
                                    (f"bytes=-{far}", 206, data), ("bytes=00000000000000000000001-2", 206, data[1:3]),
                                    ("bytes=\u0663-", 400, b""), ("bytes=1-0", 416, b"")):
        answer = client.get(URL + "scene.gltf", headers={"Range": header.encode()})
        assert answer.status_code == status, (kind, header[:40], answer.text[:300])
        assert status != 206 or answer.content == content
        assert len(answer.content) < 1000  # the header is not echoed whole
    assert client.get(URL + "scene.gltf").headers["cache-control"] == "private, no-cache"
    fixed = client.get(URL.replace("/latest/", "/v0/") + "scene.gltf")
    assert fixed.content == data and "immutable" in fixed.headers["cache-control"]


def test_a_damaged_chunk_is_a_500_naming_the_file_and_lost_bytes_a_404_saying_why(served):
    kind, client, stored = served
    packs = stored.list()
    assert packs
    saved = {pack: stored.read(pack) for pack in packs}
    try:
        for pack in packs:  # a byte of each pack's first chunk flipped
            data = bytearray(saved[pack])
            data[10] ^= 0xFF
            stored.write(pack, bytes(data))
        broken = client.get(URL + "big.bin")
        assert broken.status_code == 500 and "'big.bin'" in broken.json()["detail"], broken.text[:300]
        for name, data in FILES.items():  # a server's packed small blobs too: right bytes or a 500, never wrong ones
            answer = client.get(URL + name)
            assert answer.content == data if answer.status_code == 200 else (
                answer.status_code == 500 and repr(name) in answer.json()["detail"]), (kind, name, answer.text[:300])
    finally:
        for pack, data in saved.items():
            stored.write(pack, data)
    assert client.get(URL + "big.bin").content == FILES["big.bin"]
    # damage past the first chunk, found once the answer has begun: it ends short, never with wrong bytes
    pack = max(packs, key=lambda p: len(saved[p]))
    data = bytearray(saved[pack])
    data[len(data) * 2 // 3] ^= 0xFF
    stored.write(pack, bytes(data))
    received = b""
    try:
        with client.stream("GET", URL + "big.bin") as answer:
            assert answer.status_code == 200
            for piece in answer.iter_raw():
                received += piece
    except (httpx.HTTPError, RuntimeError):
        pass  # the connection closed short of Content-Length
    finally:
        stored.write(pack, saved[pack])
    assert len(received) < len(FILES["big.bin"]) and FILES["big.bin"].startswith(received)
    if kind != "ui":
        return  # the server packed its small blobs: none has a file of its own to lose
    # An online run's version keeps its large files' chunks on the server: the local store lacks them.
    for pack in packs:
        pack.rename(pack.with_name(pack.name + ".away"))
    try:
        answer = client.get(URL + "big.bin")
        assert answer.status_code == 404, answer.text[:300]
        assert "'big.bin'" in answer.json()["detail"] and "online run" in answer.json()["detail"]
    finally:
        for pack in packs:
            pack.with_name(pack.name + ".away").rename(pack)
    blob = next(p for p in stored.directory.rglob("*") if p.is_file() and p.parent.parent.name == "sha256"
                and p.read_bytes() == FILES["textures/wood.png"])
    moved = blob.with_name(blob.name + ".away")
    blob.rename(moved)
    try:
        lost = client.get(URL + "textures/wood.png")
        assert lost.status_code == 404, lost.text[:300]
        detail = lost.json()["detail"]
        assert "'textures/wood.png'" in detail and "missing" in detail and "not uploaded yet" not in detail
    finally:
        moved.rename(blob)


def test_an_object_store_blob_is_hashed_once_while_its_etag_stays_and_again_once_rewritten(s3rver, piecewise):
    """A file stored whole on S3, past ``IN_MEMORY_BYTES``, was read and hashed whole for every request:
    each Range request of a video (one per seek) read the whole object. It is hashed once and
    remembered under the object's size and ETag; bytes rewritten in place change the ETag, so they
    are hashed again and refused, and the original bytes put back are served again."""
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.errors import ArtifactError
    from tracklet.server.verified_files import VerifiedFiles

    options = {"endpoint_url": s3rver, "key": S3_KEY, "secret": S3_SECRET}
    blobs = FsspecBlobStore(f"s3://{BUCKET}/{uuid.uuid4().hex}", options)
    data = random.Random(3).randbytes(300_000)
    digest, _ = blobs.put_bytes(data)
    verified = VerifiedFiles()

    def served(start: int = 0, end: int | None = None) -> bytes:
        reader, size = artifact_source._open_whole(blobs, digest, "file 'v.mp4'", verified, "missing")
        try:
            assert size == len(data)
            reader.seek(start, end)
            return reader.read()
        finally:
            reader.close()

    assert served() == data
    for start in (0, 100_000, 299_990):  # a seek each
        assert served(start, start + 5_000) == data[start:start + 5_000]
    assert verified.hashed_files == 1
    s3 = s3_filesystem(s3rver)
    key = blobs._path(digest)
    damaged = bytearray(data)
    damaged[200_000] ^= 0xFF
    s3.pipe_file(key, bytes(damaged))  # same size, other bytes: another ETag
    with pytest.raises(ArtifactError, match="damaged"):
        served(0, 10)
    with pytest.raises(ArtifactError, match="damaged"):  # not remembered as good meanwhile
        served(0, 10)
    s3.pipe_file(key, data)
    assert served(150_000) == data[150_000:] and verified.hashed_files == 4
    assert served(10, 20) == data[10:20] and verified.hashed_files == 4
