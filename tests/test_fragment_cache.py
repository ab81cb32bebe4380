"""The server's cache of table fragments copied from an object store (server/fragment_cache.py,
docs/tables.md): bounded in bytes, least recently used out, never a copy used within min_age, and
an evicted fragment is copied again (verified) when a query asks for it."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import pytest

from tracklet.artifacts.blobs import FsspecBlobStore
from tracklet.server.fragment_cache import FragmentCache
from tracklet.server.media_blobs import MediaBlobs

KIB = 1024


@pytest.fixture
def store():
    """A real fsspec store that is not a local directory (the in-memory file system): its blobs
    are copied into the cache, as an S3 store's are."""
    return FsspecBlobStore(f"memory://fragments-{uuid.uuid4().hex}")


def _put(store, count: int, size: int = 100 * KIB) -> list[str]:
    return [store.put_bytes(os.urandom(size))[0] for _ in range(count)]


def _cached_bytes(directory) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_the_cache_stays_within_its_bound_and_keeps_the_most_recently_used(store, tmp_path):
    digests = _put(store, 8)
    blobs = MediaBlobs(store, None, tmp_path / "cache", cache_bytes=350 * KIB)
    blobs.cache.min_age = 0.0
    for i, digest in enumerate(digests):
        path = blobs.local_file("p", digest)
        assert path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == digest
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))  # used in this order
        assert _cached_bytes(tmp_path / "cache") <= 350 * KIB
    kept = {path.name for path in (tmp_path / "cache").rglob("*") if path.is_file()}
    assert kept == set(digests[-3:])  # 90% of 350 KiB holds three: the last used
    assert blobs.cache.total_bytes == _cached_bytes(tmp_path / "cache")
    again = blobs.local_file("p", digests[0])  # evicted: copied again, verified
    assert again is not None and hashlib.sha256(again.read_bytes()).hexdigest() == digests[0]
    assert _cached_bytes(tmp_path / "cache") <= 350 * KIB


def test_a_hit_marks_the_copy_used_so_it_outlives_older_ones(store, tmp_path):
    digests = _put(store, 4)
    blobs = MediaBlobs(store, None, tmp_path / "cache", cache_bytes=350 * KIB)
    blobs.cache.min_age = 0.0
    for i, digest in enumerate(digests[:3]):
        path = blobs.local_file("p", digest)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    assert blobs.local_file("p", digests[0]) is not None  # a hit: now the most recently used
    blobs.local_file("p", digests[3])
    kept = {path.name for path in (tmp_path / "cache").rglob("*") if path.is_file()}
    assert digests[0] in kept and digests[1] not in kept


def test_copies_used_within_min_age_are_never_evicted(store, tmp_path):
    """A query may have been handed a path it has not opened yet: such copies stay, even past the
    bound, and go once they are older."""
    digests = _put(store, 4)
    blobs = MediaBlobs(store, None, tmp_path / "cache", cache_bytes=250 * KIB)
    for digest in digests:
        assert blobs.local_file("p", digest) is not None
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 4
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    blobs.local_file("p", _put(store, 1)[0])
    assert _cached_bytes(tmp_path / "cache") <= 250 * KIB


def test_a_cache_found_on_disk_counts_toward_the_bound(store, tmp_path):
    """A restarted server reads what the directory holds before adding to it."""
    digests = _put(store, 5)
    first = MediaBlobs(store, None, tmp_path / "cache", cache_bytes=10 << 20)
    for digest in digests:
        first.local_file("p", digest)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    restarted = FragmentCache(tmp_path / "cache", max_bytes=250 * KIB)
    assert restarted.total_bytes == 5 * 100 * KIB
    second = MediaBlobs(store, None, tmp_path / "cache", cache_bytes=250 * KIB)
    second.local_file("p", _put(store, 1)[0])
    assert _cached_bytes(tmp_path / "cache") <= 250 * KIB


def test_the_bound_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACKLET_TABLE_CACHE_MB", "3")
    assert FragmentCache(tmp_path).max_bytes == 3 << 20
    monkeypatch.setenv("TRACKLET_TABLE_CACHE_MB", "lots")
    assert FragmentCache(tmp_path).max_bytes == 2 << 30
