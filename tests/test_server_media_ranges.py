"""A large media file served by a real `tracklet server` process (routes_media.py, media_blobs.py,
verified_files.py): checked against its digest once, not on each of the ``Range`` requests a
browser seeking through a video sends, and refused again (404) once damaged on disk.

What the server read is its process's ``rchar`` (/proc/PID/io: the bytes its ``read`` calls
returned), so hashing the file whole shows as at least its size: a count, nothing timed.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import QUIET

import tracklet
from tracklet.artifacts.storage import artifact_dir
from tracklet.server.media_blobs import IN_MEMORY_BYTES
from tracklet.server.verified_files import HASHED_PIECE, SETTLED_NS

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="reads /proc/PID/io (Linux)")

SIZE = IN_MEMORY_BYTES + (8 << 20)  # past the in-memory bound: served from the checked file


def _bytes_read(pid: int) -> int:
    """What the process's ``read`` calls returned so far (its ``rchar``), in bytes."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def _settle(path: Path) -> None:
    """Until the file last changed ``SETTLED_NS`` ago: only then is a check of it remembered (a
    change within the same timestamp tick would not show). A precondition, not a measurement."""
    changed = max(path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    wait = (changed + SETTLED_NS - time.time_ns()) / 1e9
    if wait > 0:
        time.sleep(wait + 0.01)


def _video(root: Path, data: bytes) -> str:
    """A finished run p/v of root logging ``data`` as an mp4 under "clip": the file's digest."""
    source = root.parent / "clip.mp4"
    source.write_bytes(data)
    run = tracklet.init(project="p", id="v", dir=str(root), settings=QUIET)
    run.log({"clip": tracklet.Video(str(source), format="mp4")})
    run.finish()
    (item,) = tracklet.Api(root).run("p/v").media("clip")
    return item.digest


def test_range_requests_of_a_checked_large_file_hash_it_once_and_a_damaged_one_is_refused(tmp_path, servers):
    root = tmp_path / "server"
    data = random.Random(7).randbytes(SIZE)
    digest = _video(root, data)
    assert digest == hashlib.sha256(data).hexdigest()
    blob = artifact_dir(root) / "blobs" / "sha256" / digest[:2] / digest
    _settle(blob)
    server = servers(root)
    pid = server.proc.pid
    import psutil

    from serverproc import settled_rss

    settled_rss(psutil.Process(pid))  # the start-up warm-up's imports read files too: done before counting
    url = f"{server.url}/api/v1/runs/p/v/media/{digest}"
    spans = random.Random(1)

    with httpx.Client(timeout=120) as http:
        def ranged(first: int, last: int) -> httpx.Response:
            return http.get(url, headers={"Range": f"bytes={first}-{last}"})

        before = _bytes_read(pid)
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-security-policy"] == "sandbox"
        assert _bytes_read(pid) - before >= 2 * SIZE  # checked (hashed whole), then sent from the file
        assert ranged(0, 99).content == data[:100]  # the route's first ranged answer, not counted

        before = _bytes_read(pid)
        for _ in range(20):  # a browser seeking: each answered from the file, none hashing it again
            first = spans.randrange(SIZE - (1 << 16))
            last = first + spans.randrange(1 << 16)
            answer = ranged(first, last)
            assert answer.status_code == 206 and answer.content == data[first:last + 1]
            assert answer.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
        tail = http.get(url, headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206 and tail.content == data[-1000:]
        # each range reads the (one or two) 256 KiB pieces it covers, checked; one hashing would be 24 MiB
        assert _bytes_read(pid) - before < 21 * 2 * HASHED_PIECE + (1 << 20)

        # Damaged after its check, same size, and its mtime even set back: ctime moved, so it is
        # hashed again and refused, to ranges and whole reads alike.
        stat = blob.stat()
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as handle:
            handle.seek(SIZE // 2)
            handle.write(bytes([data[SIZE // 2] ^ 1]))
        os.utime(blob, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert blob.stat().st_size == SIZE and blob.stat().st_mtime_ns == stat.st_mtime_ns
        for answer in (ranged(0, 99), ranged(SIZE // 2, SIZE // 2 + 10), http.get(url)):
            assert answer.status_code == 404 and "missing or damaged" in answer.json()["detail"]

        # Repaired: checked again, and served.
        with open(blob, "r+b") as handle:
            handle.seek(SIZE // 2)
            handle.write(data[SIZE // 2:SIZE // 2 + 1])
        _settle(blob)
        answer = ranged(SIZE // 2 - 5, SIZE // 2 + 5)
        assert answer.status_code == 206 and answer.content == data[SIZE // 2 - 5:SIZE // 2 + 6]
        # A file renamed over the blob (another inode), damaged, with the same size: refused.
        replacement = blob.with_name("replacement")
        replacement.write_bytes(data[:-1] + b"\0")
        os.replace(replacement, blob)
        assert ranged(0, 9).status_code == 404


@pytest.fixture
def loop_fs(tmp_path) -> Iterator[tuple[Path, Path]]:
    """An ext4 file system in an image file, loop-mounted (root only: skipped elsewhere): the
    mount point and the image, whose bytes can then be changed beneath the file system."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4 to loop-mount a file system")
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(160 << 20)
    mount.mkdir()
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mount)],
                                                      capture_output=True).returncode == 0
    if not mounted:
        pytest.skip(f"can't loop-mount a file system here: {made.stderr.strip()}")
    try:
        yield mount, image
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_bits_rotting_beneath_the_file_system_are_never_served(loop_fs, servers):
    """A byte of a checked blob changed in the device's image, not through the file system: the
    file's identity (size, mtime, ctime, inode) is as it was, so its check stands; each range is
    read through the pieces' hashes, so the damaged piece is never sent (its response is cut off),
    the others still are, and the next request hashes the file whole and is refused (404)."""
    mount, image = loop_fs
    root = mount / "server"
    data = random.Random(11).randbytes(SIZE)
    digest = _video(root, data)
    blob = artifact_dir(root) / "blobs" / "sha256" / digest[:2] / digest
    _settle(blob)
    server = servers(root)
    url = f"{server.url}/api/v1/runs/p/v/media/{digest}"
    damaged = 5 * HASHED_PIECE + 1234  # in piece 5
    with httpx.Client(timeout=120) as http:
        def ranged(first: int, last: int) -> httpx.Response:
            return http.get(url, headers={"Range": f"bytes={first}-{last}"})

        assert ranged(damaged - 10, damaged + 10).content == data[damaged - 10:damaged + 11]  # checked, served

        stat = blob.stat()
        os.sync()
        with open(image, "r+b") as handle:  # the file's bytes, found in the image by their content
            content, at, found = handle.read(), 0, 0
            while (at := content.find(data[damaged:damaged + 64], at)) >= 0:  # the blob (the logged clip's too)
                handle.seek(at)
                handle.write(bytes([data[damaged] ^ 1]))
                at, found = at + 1, found + 1
            assert found
            handle.flush()
            os.fsync(handle.fileno())
        with open(blob, "rb") as handle:  # its cached pages dropped: the next read reaches the device
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            handle.seek(damaged)
            assert handle.read(1) == bytes([data[damaged] ^ 1])  # rotted, beneath the file system
        after = blob.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
            stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

        assert ranged(100, 199).content == data[100:200]  # an undamaged piece: served
        with pytest.raises(httpx.HTTPError):  # the damaged one: cut off before any of its bytes
            ranged(damaged - 10, damaged + 10)
        for answer in (ranged(100, 199), http.get(url)):  # the check dropped: hashed again, refused
            assert answer.status_code == 404 and "missing or damaged" in answer.json()["detail"]
    assert "media blob not served in full" in server.stderr_text() and "differ from the file's check" in \
        server.stderr_text()


def test_a_checked_files_response_sends_only_pieces_that_match_their_hashes(tmp_path):
    """Where no file system can be loop-mounted: Starlette's ``FileResponse`` machinery (ranges,
    whole reads) reads through the pieces' hashes. One hash made to differ from its piece, as rot
    beneath the file system would make the piece differ from its hash: that piece is never sent,
    the others are, and the file's check is dropped."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from tracklet.server.media_blobs import CheckedFile, CheckedFileResponse
    from tracklet.server.verified_files import PIECE_HASH_BYTES, VerifiedFiles

    data = random.Random(3).randbytes(6 * HASHED_PIECE)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    verified = VerifiedFiles(settled_ns=0)
    pieces = verified.pieces(path, digest)
    assert pieces is not None
    at = 4 * PIECE_HASH_BYTES
    rotted = pieces[:at] + bytes([pieces[at] ^ 1]) + pieces[at + 1:]  # piece 4's bytes no longer match

    def blob(request: object) -> CheckedFileResponse:
        return CheckedFileResponse(CheckedFile(path, lambda: verified.reader(path, digest, rotted)))

    with TestClient(Starlette(routes=[Route("/blob", blob)])) as client:
        good = client.get("/blob", headers={"Range": f"bytes={HASHED_PIECE - 5}-{HASHED_PIECE + 5}"})
        assert good.status_code == 206 and good.content == data[HASHED_PIECE - 5:HASHED_PIECE + 6]
        ranged = client.get("/blob", headers={"Range": f"bytes={4 * HASHED_PIECE + 10}-{4 * HASHED_PIECE + 20}"})
        assert ranged.status_code == 206 and ranged.content == b""  # cut off before any of piece 4's bytes
        whole = client.get("/blob")
        assert whole.status_code == 200 and whole.content == data[:4 * HASHED_PIECE]  # pieces 0-3, then cut off
        assert int(whole.headers["content-length"]) == len(data)
    assert verified.damaged_pieces == 2 and len(verified) == 0


def test_a_checked_files_response_never_hands_the_file_to_a_server_that_sends_paths(tmp_path):
    """An ASGI server offering ``http.response.pathsend`` would send a whole file itself, unchecked:
    the checked response reads it through the pieces instead."""
    import anyio

    from tracklet.server.media_blobs import CheckedFile, CheckedFileResponse
    from tracklet.server.verified_files import PIECE_HASH_BYTES, VerifiedFiles

    data = random.Random(4).randbytes(3 * HASHED_PIECE)
    path = tmp_path / "blob"
    path.write_bytes(data)
    verified = VerifiedFiles(settled_ns=0)
    pieces = verified.pieces(path, hashlib.sha256(data).hexdigest())
    assert pieces is not None
    rotted = pieces[:PIECE_HASH_BYTES] + bytes([pieces[PIECE_HASH_BYTES] ^ 1]) + pieces[PIECE_HASH_BYTES + 1:]
    response = CheckedFileResponse(CheckedFile(path, lambda: verified.reader(path, "d", rotted)))
    sent: list[dict] = []
    scope = {"type": "http", "method": "GET", "headers": [], "asgi": {"spec_version": "2.4"},
             "extensions": {"http.response.pathsend": {}}}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    anyio.run(response, scope, receive, send)
    assert [message["type"] for message in sent][:1] == ["http.response.start"]
    assert not [message for message in sent if message["type"] == "http.response.pathsend"]
    assert b"".join(message.get("body", b"") for message in sent) == data[:HASHED_PIECE]  # then cut off
