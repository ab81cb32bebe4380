"""``VerifiedFiles`` (tracklet/server/verified_files.py) on real files: which checks it remembers,
for how many files, and that requests arriving together hash a file once. Counted by its
``hashed_files``; nothing timed. The served routes: tests/test_server_media_ranges.py."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tracklet.server.verified_files import HASHED_PIECE, PIECE_HASH_BYTES, VerifiedFiles


def _file(path: Path, data: bytes) -> tuple[Path, str]:
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_a_settled_file_is_hashed_once_and_a_just_changed_one_on_every_check(tmp_path):
    path, digest = _file(tmp_path / "a", os.urandom(3 << 20))
    settled = VerifiedFiles(settled_ns=0)
    assert all(settled.holds(path, digest) for _ in range(5))
    assert settled.hashed_files == 1 and len(settled) == 1
    # changed "now" from its point of view: a change in the same timestamp tick would not show
    racy = VerifiedFiles(settled_ns=10**18)
    assert all(racy.holds(path, digest) for _ in range(3))
    assert racy.hashed_files == 3 and len(racy) == 0


def test_a_file_that_does_not_hold_its_digest_is_refused_every_time_and_never_remembered(tmp_path):
    path, digest = _file(tmp_path / "a", b"x" * 1000)
    verified = VerifiedFiles(settled_ns=0)
    assert not verified.holds(path, hashlib.sha256(b"y").hexdigest())
    assert not verified.holds(tmp_path / "missing", digest)
    assert verified.holds(path, digest)
    path.chmod(0o644)
    with open(path, "r+b") as handle:  # same size, same mtime after: ctime still tells
        stat = os.fstat(handle.fileno())
        handle.write(b"z")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not verified.holds(path, digest) and not verified.holds(path, digest)
    assert verified.hashed_files == 4 and len(verified) == 0


def test_checks_are_bounded_least_recently_used_first_out(tmp_path):
    files = [_file(tmp_path / f"f{n}", bytes([n]) * 100) for n in range(3)]
    verified = VerifiedFiles(max_entries=2, settled_ns=0)
    for path, digest in files:
        assert verified.holds(path, digest)
    assert len(verified) == 2 and verified.hashed_files == 3
    assert verified.holds(*files[2]) and verified.holds(*files[1]) and verified.hashed_files == 3
    assert verified.holds(*files[0]) and verified.hashed_files == 4  # evicted first: hashed again
    assert verified.holds(*files[1]) and verified.hashed_files == 4  # used since: kept
    assert verified.holds(*files[2]) and verified.hashed_files == 5  # the least recently used: out


def test_checks_arriving_together_hash_the_file_once(tmp_path):
    path, digest = _file(tmp_path / "a", os.urandom(8 << 20))
    verified = VerifiedFiles(settled_ns=0)
    start = threading.Barrier(8)
    answers: list[bool] = []

    def check() -> None:
        start.wait()
        answers.append(verified.holds(path, digest))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 8 and verified.hashed_files == 1


def _damage(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 1]))


def test_a_reader_hands_out_only_pieces_that_match_their_check_and_drops_the_check_of_a_damaged_file(tmp_path):
    """Bits rotting beneath the file system change no field of the file's identity; what a
    response reads through a ``PieceReader`` is compared piece by piece with the hashes the one
    full check recorded, so a damaged piece is never handed out. (Damaged here with a write, which
    does change the identity: the reader doesn't look at it. End to end, with the identity unchanged:
    tests/test_server_media_ranges.py, on a loop-mounted file system.)"""
    data = os.urandom(5 * HASHED_PIECE + 1000)
    path, digest = _file(tmp_path / "a", data)
    verified = VerifiedFiles(settled_ns=0)
    pieces = verified.pieces(path, digest)
    assert pieces is not None and len(pieces) == 6 * PIECE_HASH_BYTES and verified.piece_bytes == len(pieces)
    reader = verified.reader(path, digest, pieces)
    reader.seek(HASHED_PIECE - 10)
    assert reader.read(20) == data[HASHED_PIECE - 10:HASHED_PIECE + 10]  # across a piece boundary
    reader.seek(len(data) - 5)
    assert reader.read(100) == data[-5:]  # the last, short piece; nothing past the end
    _damage(path, 3 * HASHED_PIECE + 7)
    reader.seek(2 * HASHED_PIECE)
    assert reader.read(1000) == data[2 * HASHED_PIECE:2 * HASHED_PIECE + 1000]  # an undamaged piece
    reader.seek(3 * HASHED_PIECE + 100)  # the damaged piece, away from the damaged byte: refused whole
    with pytest.raises(OSError, match=rf"bytes {3 * HASHED_PIECE}-{4 * HASHED_PIECE - 1} differ from the file's "
                                      "check"):
        reader.read(10)
    reader.close()
    assert verified.damaged_pieces == 1 and len(verified) == 0 and verified.piece_bytes == 0  # dropped
    assert not verified.holds(path, digest)  # the next request hashes it whole: refused


def test_piece_hashes_are_bounded_with_the_checks(tmp_path):
    files = [_file(tmp_path / f"f{n}", os.urandom(4 * HASHED_PIECE)) for n in range(3)]
    verified = VerifiedFiles(settled_ns=0, max_piece_bytes=9 * PIECE_HASH_BYTES)  # two files' pieces
    for path, digest in files:
        assert verified.holds(path, digest)
    assert len(verified) == 2 and verified.piece_bytes == 8 * PIECE_HASH_BYTES
    assert verified.holds(*files[0]) and verified.hashed_files == 4  # the least recently used went first
