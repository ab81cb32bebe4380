"""Server artifact-gc on a large disk store: time and peak Python memory of a collection over N
blob objects (half of them granted to a project, none referenced by a version, all past the grace
period), dry run (the listing and the decisions, nothing removed) by default.

    python benchmarks/artifact_gc_scale.py --objects 100000 [--rounds 3] [--workdir /tmp/x]
    python benchmarks/artifact_gc_scale.py --listing-only --objects 5000 --s3-endpoint http://127.0.0.1:PORT

``--listing-only``: only the listing of blob objects, the collection's (one folder at a time) and
fsspec's ``find`` (what it used before), alternated in one process: seconds and tracemalloc peak.
``--s3-endpoint``: the store in bucket ``tracklet`` of an S3 server there (s3rver's credentials).

The store is built once (files written directly, rows inserted in one transaction) and reused by
each round; a round runs in a fresh child process, once timed and once under ``tracemalloc``
(which slows it), so the two numbers don't disturb each other. Prints one JSON line per round."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_ROUND = r"""
import json, sys, time, tracemalloc, resource
from pathlib import Path
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.store import Store
root, traced = Path(sys.argv[1]), sys.argv[2] == "1"
artifacts = ServerArtifacts(root, engine=Store(f"sqlite:///{root / 'store.sqlite'}", root=root).engine)
if traced:
    tracemalloc.start()
started, cpu = time.perf_counter(), time.process_time()
report = collect(artifacts, grace=3600, dry_run=True)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = tracemalloc.get_traced_memory()[1] if traced else None
print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "traced_peak_mb": peak and round(peak / 2**20, 1),
                  "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "would_remove": report.blobs, "grants": report.grants}))
"""


def _artifacts(root: Path, endpoint: str | None) -> Any:
    from tracklet.server.artifact_blobs import ServerArtifacts
    from tracklet.store import Store

    url, options = None, None
    if endpoint:
        url, options = f"s3://tracklet/{root.name}", {"endpoint_url": endpoint, "key": "S3RVER", "secret": "S3RVER"}
    return ServerArtifacts(root, url, options, engine=Store(f"sqlite:///{root / 'store.sqlite'}", root=root).engine)


def build(root: Path, count: int, endpoint: str | None = None) -> None:
    import sqlalchemy as sa

    from tracklet.server.schema import artifact_blobs

    artifacts = _artifacts(root, endpoint)
    base = Path(artifacts.blobs.base) / "sha256"
    old = time.time() - 7 * 86400
    rows, batch = [], {}
    for number in range(count):
        data = number.to_bytes(8, "big")
        digest = hashlib.sha256(data).hexdigest()
        if endpoint:
            batch[artifacts.blobs._path(digest)] = data
            if len(batch) == 500:
                artifacts.fs.pipe(batch)
                batch = {}
        else:
            folder = base / digest[:2]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / digest
            path.write_bytes(data)
            os.utime(path, (old, old))
        if number % 2:
            rows.append({"project": "p", "digest": digest, "size": len(data), "created_at": old})
    if batch:
        artifacts.fs.pipe(batch)
    with artifacts.engine.begin() as connection:
        connection.execute(sa.insert(artifact_blobs), rows)


def listing_rounds(root: Path, endpoint: str | None, rounds: int) -> None:
    """The collection's listing against ``find``'s, alternated: seconds and tracemalloc peak."""
    import tracemalloc

    from tracklet.artifacts.manifest import is_sha256
    from tracklet.server.artifact_gc import _blob_objects

    artifacts = _artifacts(root, endpoint)

    def with_find() -> set[str]:
        base = f"{artifacts.blobs.base}/sha256"
        artifacts.fs.invalidate_cache(base)
        names = (str(path).rsplit("/", 1)[-1] for path in artifacts.fs.find(base))
        return {name for name in names if is_sha256(name)}

    for number in range(rounds):
        for name, listing in (("find", with_find), ("per_folder", lambda: _blob_objects(artifacts))):
            started = time.perf_counter()
            try:
                found = listing()
            except OSError as error:  # s3rver: a recursive listing of a few thousand keys fails
                print(json.dumps({"round": number, "listing": name, "error": str(error)}), flush=True)
                continue
            seconds = time.perf_counter() - started
            tracemalloc.start()
            listing()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(json.dumps({"round": number, "listing": name, "objects": len(found), "wall_s": round(seconds, 3),
                              "traced_peak_mb": round(peak / 2**20, 1),
                              "load": os.getloadavg()[0]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tracklet-gc-scale"))
    parser.add_argument("--listing-only", action="store_true")
    parser.add_argument("--s3-endpoint")
    args = parser.parse_args()
    root = args.workdir / (f"store-{args.objects}" + ("-s3" if args.s3_endpoint else ""))
    if not (root / "store.sqlite").exists():
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(root, args.objects, args.s3_endpoint)
        print(json.dumps({"built_objects": args.objects, "build_s": round(time.perf_counter() - started, 1)}))
    if args.listing_only or args.s3_endpoint:
        listing_rounds(root, args.s3_endpoint, args.rounds)
        return
    for number in range(args.rounds):
        for traced in ("0", "1"):
            done = subprocess.run([sys.executable, "-c", _ROUND, str(root), traced], capture_output=True, text=True,
                                  check=True)
            print(json.dumps({"round": number, "traced": traced == "1", **json.loads(done.stdout)}), flush=True)


if __name__ == "__main__":
    main()
