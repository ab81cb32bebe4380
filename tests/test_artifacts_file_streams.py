"""A large file's sha256 computed by the server while its chunks arrive (issue #15, A2; docs/artifacts.md,
"Server mode"): registering a file whose chunks were streamed needs no read back of the whole file,
and the check is as strict as the read back: a digest that doesn't match is refused with nothing
registered, and a stream that doesn't cover exactly the recipe's chunks falls back to reading."""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid

import blake3
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklet.artifacts.chunking import FileRecipe
from tracklet.artifacts.packs import build_pack
from tracklet.server import artifact_streams
from tracklet.server.artifact_blobs import NotHeld, ServerArtifacts
from tracklet.server.logs import BadRequest

CHUNK = 64 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b3(data: bytes) -> str:
    """A chunked file's digest: its BLAKE3, as ``b3sum`` prints it, after ``blake3:``."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def _file(chunks: int = 40) -> tuple[list[bytes], list[bytes]]:
    """A file of ``chunks`` random chunks with one repeated (ids repeat in a recipe): chunks, ids."""
    pieces = [os.urandom(CHUNK) for _ in range(chunks)]
    pieces[7] = pieces[3]
    return pieces, [blake3.blake3(piece).digest() for piece in pieces]


def _recipe(artifacts: ServerArtifacts, project: str, ids: list[bytes], pieces: list[bytes], *,
            digest: str | None = None) -> str:
    data = b"".join(pieces)
    recipe = FileRecipe(size=len(data), digest=digest or _b3(data), chunks=tuple(zip(ids, map(len, pieces))))
    text = recipe.to_json().encode()
    artifacts.store_small(project, [(_sha(text), text)])
    return _sha(text)


def _stream(artifacts: ServerArtifacts, project: str, ids: list[bytes], pieces: list[bytes], *,
            segments: list[int] | None = None) -> str:
    """Announce the file in segments of 16 chunk ids (in the order ``segments`` says, all by
    default) and send its chunks in packs of 10, the last pack first: packs arrive out of order."""
    stream = uuid.uuid4().hex
    numbers = list(range((len(ids) + 15) // 16)) if segments is None else segments
    for number in numbers:
        artifacts.missing_chunks(project, [cid.hex() for cid in ids[number * 16:(number + 1) * 16]],
                                 stream=stream, segment=number)
    unique = dict(zip(ids, pieces))
    packs = [list(unique.items())[start:start + 10] for start in range(0, len(unique), 10)]
    for pack in reversed(packs):
        artifacts.store_pack(project, *build_pack(pack))
    return stream


@pytest.fixture
def artifacts(tmp_path) -> ServerArtifacts:
    return ServerArtifacts(tmp_path / "server")


def _read(artifacts: ServerArtifacts, project: str, digest: str) -> bytes:
    handle, _ = artifacts.open_blob(project, digest)
    with handle:
        return handle.read()


def test_a_streamed_file_is_registered_without_reading_it_back(artifacts):
    pieces, ids = _file()
    stream = _stream(artifacts, "p", ids, pieces, segments=[2, 0, 1])  # segments announced out of order
    recipe = _recipe(artifacts, "p", ids, pieces)
    digest = _b3(b"".join(pieces))

    assert artifacts.register_file("p", digest, len(b"".join(pieces)), recipe, stream=stream)
    assert artifacts.streams.reads_avoided == 1
    assert _read(artifacts, "p", digest) == b"".join(pieces)


def test_a_streamed_file_whose_digest_does_not_match_is_refused_and_nothing_is_registered(artifacts):
    pieces, ids = _file()
    stream = _stream(artifacts, "p", ids, pieces)
    lie = _b3(b"something else")  # the client claims the chunks make a file they don't make
    recipe = _recipe(artifacts, "p", ids, pieces, digest=lie)

    with pytest.raises(BadRequest, match=f"file {lie}: its chunks rebuild to {_b3(b''.join(pieces))}"):
        artifacts.register_file("p", lie, len(b"".join(pieces)), recipe, stream=stream)
    assert artifacts.missing("p", [lie]) == [lie]  # not held: nothing visible
    with pytest.raises(NotHeld, match=f"holds no blob {lie}"):
        artifacts.open_blob("p", lie)


@pytest.mark.parametrize("gap", ["a segment never announced", "another file's stream", "more segments waiting than followed"])
def test_a_stream_that_does_not_cover_the_recipe_falls_back_to_reading_the_file(artifacts, gap, monkeypatch):
    pieces, ids = _file()
    if gap == "more segments waiting than followed":  # 3 segments announced before any chunk arrives
        monkeypatch.setattr(artifact_streams, "MAX_PENDING_SEGMENTS", 2)
        stream = _stream(artifacts, "p", ids, pieces)
    elif gap == "a segment never announced":
        stream = _stream(artifacts, "p", ids, pieces, segments=[0, 2])
    else:
        other_pieces, other_ids = _file(20)
        stream = _stream(artifacts, "p", other_ids, other_pieces)
        _stream(artifacts, "p", ids, pieces)
    recipe = _recipe(artifacts, "p", ids, pieces)
    digest = _b3(b"".join(pieces))

    assert artifacts.register_file("p", digest, len(b"".join(pieces)), recipe, stream=stream)
    assert artifacts.streams.reads_avoided == 0  # read back, and checked the same way
    assert _read(artifacts, "p", digest) == b"".join(pieces)


def test_a_bad_stream_name_is_refused(artifacts):
    with pytest.raises(BadRequest, match="32 lowercase hex"):
        artifacts.missing_chunks("p", ["ab" * 32], stream="../x", segment=0)


def test_an_online_commits_streamed_file_is_registered_from_its_stream(tmp_path):
    """The real client (``ServerChunks``: segments, repeats, chunks seen earlier) against the real
    app over HTTP (uvicorn in this process, so the test can read the server's count)."""
    import socket
    import threading

    import uvicorn

    from tracklet.artifacts.remote import ServerChunks
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.client.http import HttpClient
    from tracklet.server.app import create_app

    app = create_app(tmp_path / "server", auth=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.02)  # until it listens
        repeated = os.urandom(2 << 20)
        data = repeated + os.urandom(6 << 20) + repeated + os.urandom(3 << 20)  # repeats across segments
        path = tmp_path / "model.bin"
        path.write_bytes(data)
        client = ArtifactClient(HttpClient(f"http://127.0.0.1:{port}"), tmp_path / "state")
        with ServerChunks(client, "p", pack_bytes=1 << 20) as target:  # 2 MiB segments: several
            recipe = target.write_file(path)
            text = recipe.to_json().encode()
            target.register([(recipe.digest, recipe.size, _sha(text), text)])
        client.http.close()
        artifacts = app.state.tracklet.artifacts
        assert recipe.digest == _b3(data)
        assert artifacts.streams.reads_avoided == 1  # hashed as it arrived, not read back
        assert _read(artifacts, "p", recipe.digest) == data
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("size", [0, 1, 1023, 1025, 64 * 1024 + 7, 3 * (1 << 20) + 11])
def test_a_file_hashed_a_chunk_at_a_time_on_one_thread_has_its_blake3(size):
    """The server's stream and read back hash a file one ~64 KiB chunk at a time on one thread
    (``FileHasher(threaded=False)``: a thread pool costs twice the CPU per GiB at that piece size);
    the digest is the file's BLAKE3 all the same, as b3sum and the threaded hasher give it."""
    from tracklet.core.digests import FileHasher

    data = os.urandom(size)
    one, threaded = FileHasher("blake3", threaded=False), FileHasher("blake3")
    for start in range(0, size, CHUNK - 5):  # pieces not aligned to BLAKE3's 1 KiB blocks
        one.update(memoryview(data)[start:start + CHUNK - 5])
        threaded.update(data[start:start + CHUNK - 5])
    assert one.hexdigest() == threaded.hexdigest() == _b3(data)


@pytest.mark.parametrize("bad", ["a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 64 + "\n", " " + "a" * 63, 7, None])
def test_a_query_naming_something_that_is_not_a_chunk_id_is_refused(artifacts, bad):
    """Every id of a "which chunks do you lack?" query is 64 lowercase hex digits, matched whole (a
    trailing newline or an uppercase digit is refused too), else 400 naming it and nothing asked."""
    good = blake3.blake3(b"x").hexdigest()
    with pytest.raises(BadRequest, match="is not a chunk id"):
        artifacts.missing_chunks("p", [good, bad])
    assert artifacts.missing_chunks("p", [good]) == [good]


def _store_lent(artifacts: ServerArtifacts, project: str, pack: list[tuple[bytes, bytes]], released: list[str]) -> None:
    """Store ``pack`` from a lent buffer, as the pack route does; ``released`` gets its id each
    time the server gives the buffer back, and the buffer is overwritten then, as the pool's next
    borrower would (a stream still reading it after release hashes the wrong bytes)."""
    pack_id, data = build_pack(pack)
    buffer = bytearray(data)

    def release() -> None:
        released.append(pack_id)
        buffer[:] = bytes(len(buffer))

    artifacts.store_pack(project, pack_id, memoryview(buffer), release=release)


def _three_segments(artifacts: ServerArtifacts) -> tuple[list[bytes], list[bytes], str, list[list[tuple[bytes, bytes]]]]:
    """A file of 48 chunks announced as 3 segments of 16 (as a client sending 3 at once does),
    and its unique chunks in packs of 8: pieces, ids, stream, packs."""
    pieces, ids = _file(48)
    stream = uuid.uuid4().hex
    for number in range(3):
        artifacts.missing_chunks("p", [cid.hex() for cid in ids[number * 16:(number + 1) * 16]], stream=stream,
                                 segment=number)
    unique = dict(zip(ids, pieces))
    return pieces, ids, stream, [list(unique.items())[start:start + 8] for start in range(0, len(unique), 8)]


def test_packs_that_arrive_ahead_are_hashed_from_memory_and_each_buffer_is_given_back_once(artifacts):
    """A client sends several segments at once, so packs arrive ahead of the chunks they follow:
    they are kept (their buffers lent) until the hash reaches them, and nothing is read back from
    the packs on disk. Each lent buffer is given back exactly once, none before the hash is past it."""
    pieces, ids, stream, packs = _three_segments(artifacts)
    released: list[str] = []
    for pack in [packs[2], packs[4], packs[1], packs[3], packs[5], packs[0]]:  # the first last
        _store_lent(artifacts, "p", pack, released)
        assert artifacts.streams.held_bytes <= artifact_streams.MAX_HELD_BYTES
    recipe = _recipe(artifacts, "p", ids, pieces)
    digest = _b3(b"".join(pieces))

    assert artifacts.register_file("p", digest, len(b"".join(pieces)), recipe, stream=stream)
    assert artifacts.streams.reads_avoided == 1 and artifacts.streams.bytes_read_back == 0
    assert sorted(released) == sorted(build_pack(pack)[0] for pack in packs)  # each once
    assert artifacts.streams.held_bytes == 0
    assert _read(artifacts, "p", digest) == b"".join(pieces)


def test_runs_of_chunks_are_hashed_in_file_order_whatever_their_place_in_the_packs(artifacts):
    """The stream hashes a run of chunks that follow one another both in the file and in one pack
    with one update: only such runs. Chunks in a pack in the reverse of file order, a chunk that
    continues the file in another pack at the very offset where the run ended (the first pack's
    bytes there are its index), and a repeat of an earlier chunk: the digest is the file's all the
    same, hashed from memory (nothing read back)."""
    pieces = [os.urandom(CHUNK) for _ in range(24)]
    pieces.append(pieces[3])  # a repeat: its bytes lie in the first pack, not after the run before it
    ids = [blake3.blake3(piece).digest() for piece in pieces]
    chunk = list(zip(ids, pieces))
    first = chunk[0:8]  # file order
    second = chunk[16:24] + [chunk[8]]  # chunk 8 at offset 8 * CHUNK, where the first pack's run ends
    third = list(reversed(chunk[9:16]))  # adjacent in the pack, backwards in the file
    stream = uuid.uuid4().hex
    artifacts.missing_chunks("p", [cid.hex() for cid in ids], stream=stream, segment=0)
    released: list[str] = []
    for pack in (second, third, first):  # the first last: the others are held until the hash reaches them
        _store_lent(artifacts, "p", pack, released)
    data = b"".join(pieces)
    recipe = _recipe(artifacts, "p", ids, pieces)

    assert artifacts.register_file("p", _b3(data), len(data), recipe, stream=stream)
    assert artifacts.streams.reads_avoided == 1 and artifacts.streams.bytes_read_back == 0
    assert sorted(released) == sorted(build_pack(pack)[0] for pack in (first, second, third))
    assert _read(artifacts, "p", _b3(data)) == data


@pytest.mark.parametrize("case", ["no room to hold packs", "the stream is dropped", "a pack is refused"])
def test_packs_not_held_are_read_back_and_every_lent_buffer_comes_back(artifacts, case, monkeypatch):
    """Past ``MAX_HELD_BYTES`` a pack that arrived ahead is not kept: its chunks are read back when
    the hash reaches them, and the file's digest is checked the same. A stream given up (its file
    registered without it) lets go of what it held; a pack refused is given back at once."""
    if case == "no room to hold packs":
        monkeypatch.setattr(artifact_streams, "MAX_HELD_BYTES", 0)
    pieces, ids, stream, packs = _three_segments(artifacts)
    released: list[str] = []
    if case == "a pack is refused":
        pack_id, data = build_pack(packs[0])
        damaged = bytearray(data)
        damaged[10] ^= 1
        with pytest.raises(BadRequest, match="doesn't hash to its id"):
            artifacts.store_pack("p", pack_id, memoryview(damaged), release=lambda: released.append("refused"))
        assert released == ["refused"]
        assert artifacts.missing_chunks("p", [packs[0][0][0].hex()]) == [packs[0][0][0].hex()]  # nothing kept
        released.clear()
    for pack in reversed(packs[1:]):
        _store_lent(artifacts, "p", pack, released)
    if case == "the stream is dropped":  # before the first pack came, which the others follow
        assert artifacts.streams.held_bytes > 0 and not released
        artifacts.streams.forget("p", stream)
        assert artifacts.streams.held_bytes == 0 and len(released) == len(packs) - 1
    _store_lent(artifacts, "p", packs[0], released)
    recipe = _recipe(artifacts, "p", ids, pieces)
    digest = _b3(b"".join(pieces))

    if case == "the stream is dropped":
        assert artifacts.register_file("p", digest, len(b"".join(pieces)), recipe, stream=stream)
        assert artifacts.streams.reads_avoided == 0  # read back: the stream was given up
    else:
        assert artifacts.register_file("p", digest, len(b"".join(pieces)), recipe, stream=stream)
        assert artifacts.streams.reads_avoided == 1
        if case == "no room to hold packs":
            assert artifacts.streams.bytes_read_back > 0
    assert sorted(released) == sorted(build_pack(pack)[0] for pack in packs)
    assert artifacts.streams.held_bytes == 0
    assert _read(artifacts, "p", digest) == b"".join(pieces)


def test_a_stream_gone_quiet_gives_its_packs_back_and_still_verifies(artifacts, monkeypatch):
    """A client that stops querying (gone, or very slow) doesn't pin the packs its stream holds:
    once it has been quiet for ``HOLD_SECONDS``, the next pack any upload stores lets them go; the
    stream goes on, reading back what it no longer holds."""
    pieces, ids, stream, packs = _three_segments(artifacts)
    released: list[str] = []
    for pack in packs[1:]:
        _store_lent(artifacts, "p", pack, released)
    assert artifacts.streams.held_bytes > 0 and not released

    monkeypatch.setattr(artifact_streams, "HOLD_SECONDS", 0.0)
    other, other_ids = _file(8)
    _store_lent(artifacts, "q", list(zip(other_ids, other)), released)  # another project's upload
    assert artifacts.streams.held_bytes == 0 and len(released) == len(packs)  # its own, and the quiet ones

    _store_lent(artifacts, "p", packs[0], released)
    digest = _b3(b"".join(pieces))
    assert artifacts.register_file("p", digest, len(b"".join(pieces)), _recipe(artifacts, "p", ids, pieces),
                                   stream=stream)
    assert artifacts.streams.reads_avoided == 1 and artifacts.streams.bytes_read_back > 0
    assert _read(artifacts, "p", digest) == b"".join(pieces)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_chunk_query_of_any_length_names_exactly_the_chunks_lacking_and_marks_the_held_used(tmp_path, request,
                                                                                            database):
    """The held chunks' ``UPDATE ... RETURNING`` is built per padded length (a power of two, the
    ids repeated to fill it): whatever a query's length, one id or 1,000, across the padding's
    boundaries and with repeats of its own, the answer is exactly the ids the project lacks, in the
    order asked, once each, and every held chunk asked about is marked used now."""
    from tracklet.server.schema import artifact_chunks
    from tracklet.store import Store

    root = tmp_path / "server"
    root.mkdir()
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{root / 'store.sqlite'}"
    artifacts = ServerArtifacts(root, engine=Store(url, root=root).engine)
    pieces = [os.urandom(64) for _ in range(600)]
    held = [blake3.blake3(piece).digest() for piece in pieces]
    pack_id, data = build_pack(list(zip(held, pieces)))
    artifacts.store_pack("p", pack_id, data)
    lacking = [os.urandom(32).hex() for _ in range(600)]
    rng = random.Random(7)
    for length in (1, 2, 3, 4, 5, 63, 64, 65, 511, 512, 513, 1000):
        asked = [rng.choice((rng.choice(held).hex(), rng.choice(lacking))) for _ in range(length)]
        before = time.time()
        answer = artifacts.missing_chunks("p", asked)
        assert answer == list(dict.fromkeys(cid for cid in asked if cid in set(lacking))), length
        with artifacts.engine.connect() as connection:
            used = dict(connection.execute(sa.select(artifact_chunks.c.chunk_id, artifact_chunks.c.created_at)
                                           .where(artifact_chunks.c.project == "p")).all())
        assert all(used[cid] >= before for cid in asked if cid not in answer), length


@given(ids=st.lists(st.sampled_from(["ab" * 32, "0f" * 32, "AB" * 32, "ab" * 31, "ab" * 33, "ab" * 31 + "g0",
                                     "ab" * 31 + "a\n", 7, None, ""]), max_size=8))
@settings(max_examples=300, deadline=None)
def test_a_querys_ids_checked_as_a_column_are_refused_exactly_when_one_id_is(ids):
    """``check_chunk_ids`` checks a query's ids together (one regular expression over them joined):
    it accepts exactly the lists whose every id ``check_chunk_id`` accepts, and otherwise names the
    first id that is not one."""
    from tracklet.server.artifact_chunks import check_chunk_id, check_chunk_ids

    first_bad = None
    for chunk_id in ids:
        try:
            check_chunk_id(chunk_id)
        except BadRequest as error:
            first_bad = str(error)
            break
    if first_bad is None:
        assert check_chunk_ids(ids) == ids
    else:
        with pytest.raises(BadRequest) as raised:
            check_chunk_ids(ids)
        assert str(raised.value) == first_bad
