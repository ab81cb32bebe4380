"""Server artifact-gc on a large disk store: time and peak Python memory of a collection over N
blob objects (half of them granted to a project, none referenced by a version, all past the grace
period), dry run (the listing and the decisions, nothing removed) by default.

    python benchmarks/artifact_gc_scale.py --objects 100000 [--rounds 3] [--workdir /tmp/x]

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


def build(root: Path, count: int) -> None:
    import sqlalchemy as sa

    from tracklet.server.artifact_blobs import ServerArtifacts
    from tracklet.server.schema import artifact_blobs
    from tracklet.store import Store

    artifacts = ServerArtifacts(root, engine=Store(f"sqlite:///{root / 'store.sqlite'}", root=root).engine)
    base = Path(artifacts.blobs.base) / "sha256"
    old = time.time() - 7 * 86400
    rows = []
    for number in range(count):
        data = number.to_bytes(8, "big")
        digest = hashlib.sha256(data).hexdigest()
        folder = base / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / digest
        path.write_bytes(data)
        os.utime(path, (old, old))
        if number % 2:
            rows.append({"project": "p", "digest": digest, "size": len(data), "created_at": old})
    with artifacts.engine.begin() as connection:
        connection.execute(sa.insert(artifact_blobs), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tracklet-gc-scale"))
    args = parser.parse_args()
    root = args.workdir / f"store-{args.objects}"
    if not (root / "store.sqlite").exists():
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(root, args.objects)
        print(json.dumps({"built_objects": args.objects, "build_s": round(time.perf_counter() - started, 1)}))
    for number in range(args.rounds):
        for traced in ("0", "1"):
            done = subprocess.run([sys.executable, "-c", _ROUND, str(root), traced], capture_output=True, text=True,
                                  check=True)
            print(json.dumps({"round": number, "traced": traced == "1", **json.loads(done.stdout)}), flush=True)


if __name__ == "__main__":
    main()
