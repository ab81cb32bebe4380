"""Downloads of chunked files from a tracking server fetch only the chunks this machine lacks
(issue #15): a real `tracklet server` process, its artifacts on its disk or on S3 (a real s3rver
process), and the response bytes the client receives counted on the wire.

After v1 of a checkpoint is downloaded (or logged on this machine), v2 with 5% of its tensors
changed transfers about 5% of its bytes; every chunk taken from this machine is checked, so a
damaged cached file costs a fetch, never a wrong file; a damaged chunk from the server leaves
nothing visible.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import httpx
import pytest
from test_artifacts_server import own_backend, blob_cache  # noqa: F401 (fixtures)

from tracklet.artifacts.cache import BlobCache
from tracklet.artifacts.entries import LocalFile
from tracklet.artifacts.remote import RemoteArtifacts, upload_version
from tracklet.artifacts.storage import ArtifactStore
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.errors import ArtifactError, RemoteError


@pytest.fixture
def backend(own_backend):  # noqa: F811 (a fixture)
    """A server of the test's own, which the test starts with ``backend.extra`` (test_artifacts_server's
    ``own_backend``; its ``backend`` is that module's shared server)."""
    return own_backend


MiB = 1 << 20
TENSORS = 40
CHANGED = 2  # 2 of 40 tensors of 1 MiB: 5% of the file


class Received(httpx.HTTPTransport):
    """A real transport that counts the bytes of every response body as the client reads them;
    ``damage``: flip one byte in the middle of every response whose path ends with it."""

    def __init__(self, damage: str | None = None) -> None:
        super().__init__()
        self.bytes = 0
        self.ranges = 0
        self.damage = damage

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        inner = response.stream
        outer = self
        self.ranges += response.status_code == 206
        damaged = self.damage is not None and request.url.path.endswith(self.damage)

        class Counting(httpx.SyncByteStream):
            def __iter__(self):
                flipped = not damaged
                for piece in inner:  # type: ignore[union-attr]
                    outer.bytes += len(piece)
                    if not flipped and len(piece) > 2:
                        piece = bytearray(piece)
                        piece[len(piece) // 2] ^= 1
                        piece = bytes(piece)
                        flipped = True
                    yield piece

            def close(self) -> None:
                inner.close()  # type: ignore[union-attr]

        response.stream = Counting()
        return response


def _versions(tmp_path: Path) -> tuple[bytes, bytes]:
    rng = random.Random(15)
    tensors = [os.urandom(MiB) for _ in range(TENSORS)]
    v1 = b"".join(tensors)
    for index in rng.sample(range(TENSORS), CHANGED):
        tensors[index] = os.urandom(MiB)
    return v1, b"".join(tensors)


def _upload(server_url: str, root: Path, versions: list[bytes], tmp_path: Path) -> ArtifactStore:
    """Log each of ``versions`` as ``p/ckpt`` in a store at ``root`` and send it to the server."""
    store = ArtifactStore(root, chunk_threshold=MiB)
    client = ArtifactClient(HttpClient(server_url))
    for number, data in enumerate(versions):
        path = tmp_path / f"upload-{number}.ckpt"
        path.write_bytes(data)
        result = store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(path))}, project="p", aliases=[])
        upload_version(client, store, result.info, [])
    client.http.close()
    return store


def _reader(server_url: str, root: Path, transport: httpx.HTTPTransport, cache: Path) -> RemoteArtifacts:
    return RemoteArtifacts(ArtifactClient(HttpClient(server_url, transport=transport)), root,
                           BlobCache(cache, cap_bytes=1 << 30))


def test_a_second_version_downloads_only_its_changed_chunks(servers, backend, tmp_path):  # noqa: F811
    server = servers(tmp_path / "server", extra=backend.extra)
    v1, v2 = _versions(tmp_path)
    _upload(server.url, tmp_path / "trainer", [v1, v2], tmp_path)
    wire = Received()
    remote = _reader(server.url, tmp_path / "reader", wire, tmp_path / "cache")

    first = Path(remote.artifact("p/ckpt:v0").download(tmp_path / "v0"))
    assert (first / "model.ckpt").read_bytes() == v1
    assert wire.bytes >= len(v1)  # nothing cached yet: the whole file (in ranges), the manifest, the recipe

    wire.bytes = 0
    second = Path(remote.artifact("p/ckpt:v1").download(tmp_path / "v1"))
    assert (second / "model.ckpt").read_bytes() == v2
    changed = sum(v1[i:i + MiB] != v2[i:i + MiB] for i in range(0, len(v1), MiB)) * MiB  # whole tensors: a
    # changed tensor's first byte is the old one 1 time in 256 (this compared first bytes and flaked)
    assert changed == CHANGED * MiB
    # About the changed fraction: the changed tensors, the chunks straddling their edges, the recipe.
    assert changed <= wire.bytes <= changed + 24 * 256 * 1024, (wire.bytes, changed)
    assert wire.bytes < 0.10 * len(v2)

    # Both versions are in the cache; downloading either again fetches no file bytes.
    wire.bytes = 0
    Path(remote.artifact("p/ckpt:v1").download(tmp_path / "again"))
    assert wire.bytes < 64 * 1024


def test_a_machine_that_logged_v1_downloads_only_what_it_lacks_of_v2(servers, backend, tmp_path):  # noqa: F811
    """The chunks of the data root's own packs count: a version logged here is not fetched again."""
    server = servers(tmp_path / "server", extra=backend.extra)
    v1, v2 = _versions(tmp_path)
    _upload(server.url, tmp_path / "here", [v1], tmp_path)
    _upload(server.url, tmp_path / "elsewhere", [v1, v2], tmp_path)  # the server keeps v2 as p/ckpt:v1
    wire = Received()
    remote = _reader(server.url, tmp_path / "here", wire, tmp_path / "cache")
    out = Path(remote.artifact("p/ckpt:v1").download(tmp_path / "out"))
    assert (out / "model.ckpt").read_bytes() == v2
    assert CHANGED * MiB <= wire.bytes < 0.10 * len(v2)


def test_a_damaged_cached_file_costs_a_fetch_not_a_wrong_file(servers, tmp_path):
    server = servers(tmp_path / "server")
    v1, v2 = _versions(tmp_path)
    _upload(server.url, tmp_path / "trainer", [v1, v2], tmp_path)
    wire = Received()
    remote = _reader(server.url, tmp_path / "reader", wire, tmp_path / "cache")
    remote.artifact("p/ckpt:v0").download(tmp_path / "v0")
    cache = BlobCache(tmp_path / "cache", cap_bytes=1 << 30)
    import blake3

    cached = cache.path("blake3:" + blake3.blake3(v1).hexdigest())  # a chunked file: cached by its BLAKE3
    os.chmod(cached, 0o644)
    with open(cached, "r+b") as handle:  # damage every byte of the cached v1 (a disk fault, a user's edit)
        handle.write(bytes(b ^ 0xFF for b in v1[: 4 * MiB]))
    wire.bytes = 0
    out = Path(remote.artifact("p/ckpt:v1").download(tmp_path / "v1"))
    assert (out / "model.ckpt").read_bytes() == v2
    changed = {index for index in range(TENSORS) if v1[index * MiB:(index + 1) * MiB] != v2[index * MiB:(index + 1) * MiB]}
    needed = len(changed | {0, 1, 2, 3}) * MiB  # the changed tensors and the damaged ones: fetched
    assert wire.bytes >= needed - 512 * 1024, (wire.bytes, needed)


@pytest.mark.parametrize("have_v1", [False, True], ids=["whole", "chunks"])
def test_damaged_bytes_from_the_server_leave_nothing_visible(servers, tmp_path, have_v1):
    """Without v1 the file comes in one streamed request, checked by its BLAKE3; with v1 cached,
    as the chunks it lacks, each checked by its id."""
    import blake3

    server = servers(tmp_path / "server")
    v1, v2 = _versions(tmp_path)
    _upload(server.url, tmp_path / "trainer", [v1, v2], tmp_path)
    if have_v1:
        _reader(server.url, tmp_path / "reader", Received(), tmp_path / "cache").artifact("p/ckpt:v0").download(
            tmp_path / "v0")
    cache = BlobCache(tmp_path / "cache", cap_bytes=1 << 30)
    held = cache.stats(scan=True)
    remote = _reader(server.url, tmp_path / "reader", Received(damage=blake3.blake3(v2).hexdigest()),
                     tmp_path / "cache")
    with pytest.raises(RemoteError if have_v1 else ArtifactError, match="arrived damaged" if have_v1 else "not cached"):
        remote.artifact("p/ckpt:v1").download(tmp_path / "v1")
    assert [p.name for p in (tmp_path / "v1").iterdir()] == []  # no file, no partial file
    assert cache.stats(scan=True) == held  # nothing new in the cache, no temporary left


def test_an_evicted_file_takes_its_chunk_rows_with_it(tmp_path):
    import blake3

    cache = BlobCache(tmp_path / "cache", cap_bytes=3 * MiB)
    data = os.urandom(2 * MiB)
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    chunks = [(blake3.blake3(data[:MiB]).digest(), 0, MiB), (blake3.blake3(data[MiB:]).digest(), MiB, MiB)]
    cache.put_stream([data], digest, len(data), chunks=chunks)
    assert cache.locate_chunks([chunks[1][0]]) == {chunks[1][0]: (digest, MiB, MiB)}
    other = os.urandom(2 * MiB)
    cache.put_stream([other], hashlib.sha256(other).hexdigest(), len(other))  # evicts the first
    assert not cache.has(digest)
    assert cache.locate_chunks([cid for cid, _, _ in chunks]) == {}
