"""A real GCS-speaking server for tests: gcp-storage-emulator (PyPI, in the test extra), the JSON
API Google Cloud Storage's clients speak, over plain HTTP.

The session fixture ``gcs_emulator`` (registered in conftest.py) starts one process on a free
loopback port, storing in memory, and yields its endpoint URL; tests keep apart by using a bucket
of their own (``gcs_filesystem(endpoint).mkdir(name)``). gcsfs finds it through
``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc import _free_port

# Read as gcsfs is imported (the first import in the process: conftest.py sets it for the tests'
# processes, and so their children): where it is "true" (gcsfs's default) gcsfs's filesystem asks
# each bucket over gRPC whether it is a zonal or hierarchical one, which the emulator doesn't speak
# (a 60 s timeout per request here: a test of a few objects took 10 minutes).
ZB_HNS = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


def _missing() -> str | None:
    for module, package in (("gcsfs", "gcsfs"), ("gcp_storage_emulator", "gcp-storage-emulator")):
        try:
            __import__(module)
        except ImportError:
            return package
    return None


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A real gcp-storage-emulator process on a free loopback port, in memory; yields its endpoint
    URL. gcsfs and the emulator are in the test extra (pinned in constraints.txt): a test
    environment without them fails here, naming the package, rather than skipping gs://."""
    package = _missing()
    if package is not None:
        pytest.fail(f"gs:// tests need {package}: pip install -c constraints.txt -e '.[test]'")
    import gcsfs

    if gcsfs.GCSFileSystem is not gcsfs.core.GCSFileSystem:
        pytest.fail(f"gcsfs was imported with {ZB_HNS}={os.environ.get(ZB_HNS)!r}: its requests would time out")
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="tracklet-gcs-emulator-", suffix=".log")[1])
    with log.open("wb") as output:  # a file, not a pipe nobody reads (a full one blocks the server)
        proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                 "--port", str(port), "--in-memory"], stdout=output, stderr=output)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: the bucket listing answers
            if proc.poll() is not None:
                pytest.fail(f"gcp-storage-emulator exited: {log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{endpoint}/storage/v1/b", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gcp-storage-emulator did not answer in time: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.unlink(missing_ok=True)


def gcs_filesystem(endpoint: str) -> Any:
    """A gcsfs filesystem on the emulator at ``endpoint``, anonymous, without caches (to read what
    the server holds)."""
    import gcsfs

    return gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True,
                               use_listings_cache=False)
