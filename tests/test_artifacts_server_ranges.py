"""Ranged and streamed downloads of a chunked file from the tracking server (issue #15): the blob
route serves a file a project holds as chunks by reading only the chunks a range covers, locating
them in the project's chunk rows as it reaches them, never the whole recipe's chunks at once.

The real app in process (FastAPI's TestClient), its real ``ServerArtifacts`` over SQLite and a
directory: the file goes in as a client sends it (packs, recipe blob, registration); the pack
reads and chunk look-ups the server makes are counted by wrapping its own methods."""

from __future__ import annotations

import hashlib
import random

import blake3
import pytest
from fastapi.testclient import TestClient

from tracklet.artifacts.chunking import chunk_file
from tracklet.artifacts.packs import build_pack
from tracklet.server.app import create_app

MiB = 1 << 20
PROJECT = "p"


@pytest.fixture
def served(tmp_path):
    """(client, artifacts, data, recipe): a ~12 MiB file held by project ``p`` as ~160 chunks."""
    data = random.Random(7).randbytes(12 * MiB)
    source = tmp_path / "model.ckpt"
    source.write_bytes(data)
    recipe = chunk_file(source)
    app = create_app(tmp_path / "server", auth=False, index_on_start=False)
    with TestClient(app) as client:
        artifacts = app.state.tracklet.artifacts
        pending: list[tuple[bytes, bytes]] = []
        for cid, offset, length in recipe.offsets():  # packs of ~2 MiB, as an uploader sends them
            pending.append((cid, data[offset:offset + length]))
            if sum(len(chunk) for _, chunk in pending) >= 2 * MiB:
                artifacts.store_pack(PROJECT, *build_pack(pending))
                pending = []
        if pending:
            artifacts.store_pack(PROJECT, *build_pack(pending))
        recipe_bytes = recipe.to_json().encode()
        recipe_digest = hashlib.sha256(recipe_bytes).hexdigest()
        assert artifacts.store_small(PROJECT, [(recipe_digest, recipe_bytes)]) == []
        assert artifacts.register_file(PROJECT, recipe.digest, recipe.size, recipe_digest)
        yield client, artifacts, data, recipe


class Counted:
    """Wraps the server's own pack reads and chunk look-ups (they still run) and counts them."""

    def __init__(self, artifacts, monkeypatch) -> None:
        self.reads: list[int] = []  # bytes per pack read
        self.lookups: list[int] = []  # chunk ids per look-up
        real_read, real_places = artifacts.packs.read_range, artifacts._places

        def read_range(pack_id, offset, length):
            self.reads.append(length)
            return real_read(pack_id, offset, length)

        def places(project, chunk_ids):
            self.lookups.append(len(chunk_ids))
            return real_places(project, chunk_ids)

        monkeypatch.setattr(artifacts.packs, "read_range", read_range)
        monkeypatch.setattr(artifacts, "_places", places)


def _covered(recipe, start: int, end: int) -> tuple[int, int]:
    """(chunks, bytes) of the chunks that hold bytes ``[start, end)``."""
    chunks = [(offset, length) for _, offset, length in recipe.offsets() if offset < end and offset + length > start]
    return len(chunks), sum(length for _, length in chunks)


@pytest.mark.parametrize("where", [0.0, 0.37, 0.999])
def test_a_range_of_a_chunked_file_reads_and_locates_only_the_chunks_it_covers(served, monkeypatch, where):
    client, artifacts, data, recipe = served
    start = int(where * (len(data) - 1000))
    end = start + 1000  # a thousand bytes: within one or two chunks
    counted = Counted(artifacts, monkeypatch)
    response = client.get(f"/api/v1/projects/{PROJECT}/artifacts/_blobs/{recipe.digest}",
                          headers={"Range": f"bytes={start}-{end - 1}"})
    assert response.status_code == 206
    assert response.content == data[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
    chunks, chunk_bytes = _covered(recipe, start, end)
    assert sum(counted.reads) == chunk_bytes  # not the rest of the file, nor a 4 MiB read ahead
    assert sum(counted.lookups) == chunks  # not the recipe's ~160 chunks


def test_a_whole_chunked_file_streams_in_bounded_look_ups_and_reads(served, monkeypatch):
    from tracklet.artifacts.packs import MAX_READ
    from tracklet.server.artifact_chunks import LOCATE_BATCH

    client, artifacts, data, recipe = served
    counted = Counted(artifacts, monkeypatch)
    response = client.get(f"/api/v1/projects/{PROJECT}/artifacts/_blobs/{recipe.digest}")
    assert response.status_code == 200 and "blake3:" + blake3.blake3(response.content).hexdigest() == recipe.digest
    # Located a batch at a time as the stream reaches them, read in merged reads of bounded size:
    # memory follows those bounds, not the file's size.
    assert max(counted.lookups) <= LOCATE_BATCH and sum(counted.lookups) == len(recipe.chunks)
    assert len(counted.lookups) >= len(recipe.chunks) / LOCATE_BATCH
    assert max(counted.reads) <= MAX_READ and sum(counted.reads) == len(data)


def test_ranges_at_every_boundary_give_the_exact_bytes(served):
    client, _, data, recipe = served
    starts = [offset for _, offset, _ in recipe.offsets()]
    url = f"/api/v1/projects/{PROJECT}/artifacts/_blobs/{recipe.digest}"
    for start, end in [(starts[5], starts[6]), (starts[5] - 1, starts[6] + 1), (0, 1),
                       (len(data) - 1, len(data)), (starts[10], starts[40])]:
        response = client.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        assert response.status_code == 206 and response.content == data[start:end], (start, end)
    assert client.get(url, headers={"Range": "bytes=-7"}).content == data[-7:]
    assert client.get(url, headers={"Range": f"bytes={len(data) - 5}-"}).content == data[-5:]
    assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
