"""``BlobCache`` (tracklet/artifacts/cache.py): a size-capped LRU blob cache shared by processes.

Real processes write at once; the cap is checked from the cache's own lock (no reservation or
eviction in between), so "never exceeded" is checked exactly, not sampled loosely.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from tracklet.artifacts.cache import BlobCache, CacheFull, default_cap
from tracklet.errors import ArtifactError

KB = 1000


def _blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


def _put(cache: BlobCache, data: bytes, digest: str) -> None:
    cache.put_stream([data[i:i + 4096] for i in range(0, len(data), 4096)], digest, len(data))


def test_put_get_round_trip_and_a_wrong_digest_or_size_is_refused_leaving_nothing(tmp_path):
    cache = BlobCache(tmp_path / "cache", cap_bytes=1_000_000)
    data, digest = _blob(10 * KB)
    source = tmp_path / "source"
    source.write_bytes(data)
    assert not cache.has(digest)
    with cache.get(digest) as missing:
        assert missing is None
    path = cache.put_file(source, digest)
    assert cache.has(digest) and path.read_bytes() == data
    with cache.get(digest) as held:
        assert held == path
    other, other_digest = _blob(10 * KB)
    with pytest.raises(ArtifactError, match="not cached"):
        _put(cache, other, digest[::-1])  # bytes that hash to something else
    with pytest.raises(ArtifactError, match="more than the"):
        cache.put_stream([other], other_digest, len(other) - 1)
    with pytest.raises(ArtifactError, match="not cached"):
        cache.put_stream([other[:-1]], other_digest, len(other))
    assert not cache.has(other_digest) and not cache.has(digest[::-1])
    assert os.listdir(tmp_path / "cache" / "tmp") == []
    assert cache.stats() == {"entries": 1, "bytes": 10 * KB, "reserved": 0, "cap": 1_000_000}


def test_eviction_is_least_recently_used_first(tmp_path):
    cache = BlobCache(tmp_path / "cache", cap_bytes=30 * KB)
    blobs = [_blob(10 * KB) for _ in range(4)]
    for data, digest in blobs[:3]:
        _put(cache, data, digest)
    with cache.get(blobs[0][1]):  # a is used again: b is now the least recently used
        pass
    _put(cache, *blobs[3])
    assert [cache.has(digest) for _, digest in blobs] == [True, False, True, True]
    assert cache.evict_to(10 * KB) == 20 * KB
    assert [cache.has(digest) for _, digest in blobs] == [False, False, False, True]


def test_a_blob_larger_than_the_cap_or_with_no_room_left_is_refused(tmp_path):
    cache = BlobCache(tmp_path / "cache", cap_bytes=25 * KB)
    big, big_digest = _blob(26 * KB)
    with pytest.raises(CacheFull, match="larger than the cache's cap"):
        _put(cache, big, big_digest)
    first, second = _blob(20 * KB), _blob(20 * KB)
    _put(cache, *first)
    with cache.get(first[1]):  # in use: can't be evicted to make room
        with pytest.raises(CacheFull, match="no room"):
            _put(cache, *second)
    _put(cache, *second)  # released: now it can
    assert not cache.has(first[1]) and cache.has(second[1])


_FLOOD = """
import hashlib, os, sys
from tracklet.artifacts.cache import BlobCache, CacheFull
cache = BlobCache(sys.argv[1], cap_bytes=int(sys.argv[2]))
stored = refused = 0
for i in range(int(sys.argv[3])):
    data = os.urandom(int(sys.argv[4]) * (1 + i % 3))
    try:
        cache.put_stream([data[j:j + 8192] for j in range(0, len(data), 8192)], hashlib.sha256(data).hexdigest(),
                         len(data))
        stored += 1
    except CacheFull:
        refused += 1
print(stored, refused)
"""


def _flood(root, cap: int, count: int, size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _FLOOD, str(root), str(cap), str(count), str(size)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_more_than_the_cap_never_exceed_it(tmp_path):
    cap = 500 * KB
    root = tmp_path / "cache"
    cache = BlobCache(root, cap_bytes=cap)
    writers = [_flood(root, cap, 60, 40 * KB) for _ in range(2)]  # ~4.8 MB in all: ~10x the cap
    samples = 0
    while any(writer.poll() is None for writer in writers):
        stats = cache.stats(scan=True)
        assert stats["disk_bytes"] <= cap and stats["bytes"] + stats["reserved"] <= cap, stats
        samples += 1
    for writer in writers:
        out, err = writer.communicate()
        assert writer.returncode == 0, err
        assert out.split() == ["60", "0"]  # nothing was refused: eviction made room each time
    stats = cache.stats(scan=True)
    assert samples > 0 and 0 < stats["disk_bytes"] == stats["bytes"] <= cap and stats["reserved"] == 0
    for path in (root / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def test_a_blob_held_by_a_reader_survives_another_process_evicting_everything(tmp_path):
    root = tmp_path / "cache"
    cache = BlobCache(root, cap_bytes=200 * KB)
    data, digest = _blob(50 * KB)
    _put(cache, data, digest)
    with cache.get(digest) as held:
        flood = _flood(root, 200 * KB, 30, 30 * KB)
        out, err = flood.communicate(timeout=120)
        assert flood.returncode == 0, err
        assert held is not None and held.read_bytes() == data  # still there, whole
        linked = tmp_path / "linked"
        os.link(held, linked)
    assert cache.evict_to(0) > 0
    assert not cache.has(digest) and linked.read_bytes() == data  # the hard link keeps its bytes


_SLOW_WRITER = """
import sys, time
from tracklet.artifacts.cache import BlobCache

def pieces():
    yield b"x" * 1000
    open(sys.argv[2], "w").close()
    time.sleep(60)

BlobCache(sys.argv[1], cap_bytes=100_000).put_stream(pieces(), "0" * 64, 90_000)
"""


def test_a_killed_writers_reservation_and_partial_file_are_reclaimed(tmp_path):
    root, marker = tmp_path / "cache", tmp_path / "writing"
    cache = BlobCache(root, cap_bytes=100_000)
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(root), str(marker)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), writer.communicate()
    assert cache.stats()["reserved"] == 90_000
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    data, digest = _blob(50 * KB)  # needs the dead writer's room
    _put(cache, data, digest)
    assert cache.stats(scan=True) == {"entries": 1, "bytes": 50 * KB, "reserved": 0, "cap": 100_000,
                                      "disk_bytes": 50 * KB}
    assert os.listdir(root / "tmp") == []


def test_the_default_cap_is_a_tenth_of_the_disk_and_the_setting_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKLET_ARTIFACT_CACHE_SIZE", raising=False)
    total = shutil.disk_usage(tmp_path).total
    assert default_cap(tmp_path) == int(total * 0.10)
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_SIZE", "5%")
    assert default_cap(tmp_path) == int(total * 0.05)
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_SIZE", "2GiB")
    assert BlobCache(tmp_path / "cache").cap == 2 << 30
    monkeypatch.setenv("TRACKLET_ARTIFACT_CACHE_SIZE", "a lot")
    with pytest.raises(ArtifactError, match="TRACKLET_ARTIFACT_CACHE_SIZE: not a size"):
        BlobCache(tmp_path / "other")
