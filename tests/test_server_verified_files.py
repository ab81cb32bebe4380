"""``VerifiedFiles`` (tracklet/server/verified_files.py) on real files: which checks it remembers,
for how many files, and that requests arriving together hash a file once. Counted by its
``hashed_files``; nothing timed. The served routes: tests/test_server_media_ranges.py."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from tracklet.server.verified_files import VerifiedFiles


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
