"""Writes ``store/``: an artifact store as tracklet wrote it before chunked files were identified by
their BLAKE3 (commit 6101a2a): version ``p/ckpt:v0`` holds ``model.ckpt`` (``SOURCE_BYTES`` below)
stored as chunks, its manifest digest the file's sha256 and its recipe naming ``"sha256"``.

Run with the old code on the path, from this directory (it is how ``store/`` was made)::

    git archive 6101a2a tracklet | tar -x -C /tmp/old-tracklet
    PYTHONPATH=/tmp/old-tracklet python make.py

tests/test_artifacts_old_digests.py reads it with today's code.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

#: The checkpoint's bytes: 96 KiB random runs and 32 KiB of zeros, 320 KiB in all (several chunks).
SIZE = 320 * 1024
THRESHOLD = 256 * 1024


def source_bytes() -> bytes:
    rng = random.Random(15)
    return b"".join(rng.randbytes(96 * 1024) + bytes(32 * 1024) for _ in range(3))[:SIZE - 32 * 1024] + \
        rng.randbytes(32 * 1024)


def main() -> None:
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.storage import ArtifactStore

    here = Path(__file__).resolve().parent
    shutil.rmtree(here / "store", ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "model.ckpt"
        source.write_bytes(source_bytes())
        store = ArtifactStore(Path(work) / "root", here / "store", chunk_threshold=THRESHOLD)
        result = store.commit("ckpt", "model", {"model.ckpt": LocalFile(str(source))}, project="p", aliases=[])
        assert "recipe" in result.manifest["model.ckpt"].extra, "not stored as chunks"
        print(result.info.qualified_name, result.manifest["model.ckpt"].digest)
    (here / "store" / "gc.lock").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
