"""An uploaded pack's bounds (``artifacts/packs.py``: ``MAX_UPLOAD_PACK_BYTES``,
``MAX_UPLOAD_PACK_CHUNKS``): a client closes a pack before a chunk would take it past either, so
the server never refuses one of its packs (which the upload would send again forever), and the
server refuses a pack of more chunks before building an entry per chunk."""

from __future__ import annotations

import os

import pytest

from test_artifacts_chunks_server import Wire

from tracklet.artifacts import remote
from tracklet.artifacts.chunking import ChunkingParams
from tracklet.artifacts.packs import (MAX_CHUNK, MAX_UPLOAD_PACK_BYTES, MAX_UPLOAD_PACK_CHUNKS, build_pack,
                                      upload_pack_room)
from tracklet.client.artifacts import ArtifactClient
from tracklet.client.http import HttpClient
from tracklet.errors import RemoteError


def _chunk(data: bytes) -> tuple[bytes, bytes]:
    import blake3

    return blake3.blake3(data).digest(), data


def test_the_largest_chunking_parameters_allow_a_chunk_that_fills_a_pack():
    largest = ChunkingParams(min_size=1 << 20, avg_size=4 << 20, max_size=MAX_CHUNK)  # pyfastcdc's ceilings
    assert largest.max_size == MAX_CHUNK == MAX_UPLOAD_PACK_BYTES // 2
    # a streamed pack's rule before: close once its chunks reach STREAM_PACK_BYTES, so one byte short
    # of it plus a largest chunk plus the index is past the server's limit
    assert remote.STREAM_PACK_BYTES - 1 + MAX_CHUNK + 2 * 44 + 20 > MAX_UPLOAD_PACK_BYTES
    assert not upload_pack_room(remote.STREAM_PACK_BYTES - 1, 1, MAX_CHUNK)
    assert upload_pack_room(0, 0, MAX_CHUNK)  # a pack's first chunk always fits
    assert not upload_pack_room(MAX_UPLOAD_PACK_CHUNKS, MAX_UPLOAD_PACK_CHUNKS, 1)


def test_a_stream_of_the_largest_chunks_goes_in_packs_the_server_takes(servers, tmp_path):
    server = servers(tmp_path / "server")
    wire = Wire()
    streamer = remote.ChunkStreamer(ArtifactClient(HttpClient(server.url, transport=wire)), "p")
    first, largest = _chunk(os.urandom(remote.STREAM_PACK_BYTES - 1)), _chunk(os.urandom(MAX_CHUNK))
    streamer.add_batch([first], first[1])
    streamer.add_batch([largest], largest[1])
    streamer.close()
    assert streamer.error is None  # it was a 413: "the upload of pack ... is larger than 33554432 bytes"
    packs = [path for _, path in wire.sent if "/_packs/" in path]
    assert len(packs) == 2 and streamer.sent == len(first[1]) + len(largest[1]) + 2 * (44 + 20)  # + two indexes
    client = ArtifactClient(HttpClient(server.url))
    assert client.missing_chunks("p", [first[0].hex(), largest[0].hex()]) == set()


def test_a_pack_of_too_many_chunks_is_refused_and_a_client_never_sends_one(servers, tmp_path):
    server = servers(tmp_path / "server")
    client = ArtifactClient(HttpClient(server.url))
    tiny = [_chunk(number.to_bytes(4, "little")) for number in range(MAX_UPLOAD_PACK_CHUNKS + 1)]
    pack_id, data = build_pack(tiny)
    with pytest.raises(RemoteError, match=rf"its footer says {MAX_UPLOAD_PACK_CHUNKS + 1} chunks; a pack may hold "
                                          rf"at most {MAX_UPLOAD_PACK_CHUNKS}"):
        client.upload_pack("p", pack_id, data)
    # the streamer (a batch of chunks not part of a file stream: one query, no segments) splits them
    wire = Wire()
    streamer = remote.ChunkStreamer(ArtifactClient(HttpClient(server.url, transport=wire)), "p")
    streamer.add_batch(tiny, b"".join(piece for _, piece in tiny))
    streamer.close()
    assert streamer.error is None
    assert len([path for _, path in wire.sent if "/_packs/" in path]) == 2
    assert client.missing_chunks("p", [cid.hex() for cid, _ in tiny]) == set()
