"""A real S3-speaking server for tests: s3rver (npm, installed in tests/s3 by `npm ci --prefix tests/s3`).

The session fixture ``s3rver`` (registered in conftest.py) starts one process on a free loopback
port with a fresh directory and the bucket ``tracklet``, and yields its endpoint URL; tests keep
apart by using a prefix of their own.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc import REPO, _free_port

S3RVER = REPO / "tests" / "s3" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
BUCKET = "tracklet"
S3_KEY = S3_SECRET = "S3RVER"  # s3rver's built-in credentials


@pytest.fixture(scope="session")
def s3rver() -> Iterator[str]:
    """A real s3rver process (npm, tests/s3) on a free loopback port with a fresh directory and
    the bucket ``tracklet``; yields its endpoint URL."""
    node = shutil.which("node")
    if not S3RVER.is_file() or node is None:
        pytest.skip("s3rver is not installed: run `npm ci --prefix tests/s3` (needs Node.js)")
    pytest.importorskip("s3fs", reason="S3 needs s3fs: pip install 'tracklet[s3]'")
    storage = Path(tempfile.mkdtemp(prefix="tracklet-s3rver-"))
    port = _free_port()
    log = storage.with_name(storage.name + ".stderr")  # a file, not a pipe nobody reads (a full one blocks s3rver)
    with log.open("wb") as stderr:
        proc = subprocess.Popen([node, str(S3RVER), "-d", str(storage), "-a", "127.0.0.1", "-p", str(port), "-s",
                                 "--configure-bucket", BUCKET],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: the bucket answers
            if proc.poll() is not None:
                pytest.fail(f"s3rver exited: {log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{endpoint}/{BUCKET}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("s3rver did not answer in time")
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(storage, ignore_errors=True)
        log.unlink(missing_ok=True)


def s3_filesystem(endpoint: str) -> Any:
    """An s3fs filesystem on the s3rver at ``endpoint``, without caches (to read what the server wrote)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, key=S3_KEY, secret=S3_SECRET, skip_instance_cache=True,
                             use_listings_cache=False)
