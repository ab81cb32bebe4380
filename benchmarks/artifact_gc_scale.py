"""Server artifact-gc at scale: wall, CPU, peak Python memory (tracemalloc) and max RSS of a
collection over N blob objects (half granted to project p and unreferenced, a quarter granted and
referenced by committed versions, a quarter granted to no project; all past the grace period),
dry run (every decision made, nothing removed) by default.

    python benchmarks/artifact_gc_scale.py --objects 100000 [--rounds 3] [--workdir /tmp/x]
        [--store postgresql+psycopg://...] [--s3-endpoint http://127.0.0.1:PORT]
        [--tree /path/to/another/checkout ...]

``--tree``: also run each round with tracklet imported from that checkout (a baseline made with
``git archive``), alternating trees round by round, so the ratios come from the same minutes.
``--listing-only``: only the listing of blob objects, the collection's and fsspec's ``find``.
``--s3-endpoint``: the store in bucket ``tracklet`` of an S3 server there (s3rver's credentials).
``--store``: a database URL (default: SQLite in the work dir); a PostgreSQL one gets its own database.

The store is built once and reused; a round runs in a fresh child process, once timed and once
under ``tracemalloc`` (which slows it). With a tree whose ``collect`` takes ``on_removed`` (as
``tracklet admin artifact-gc`` passes), the removed paths are handed on, not kept. One JSON line
per round."""

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
import inspect, json, os, sys, time, tracemalloc, resource
from pathlib import Path
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_gc import collect
from tracklet.store import Store
root, traced, url, endpoint = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]
store_url, options = None, None
if endpoint:
    store_url, options = f"s3://tracklet/{root.name}", {"endpoint_url": endpoint, "key": "S3RVER", "secret": "S3RVER"}
artifacts = ServerArtifacts(root, store_url, options, engine=Store(url, root=root).engine)
kwargs = {"on_removed": lambda path: None} if "on_removed" in inspect.signature(collect).parameters else {}
if traced:
    tracemalloc.start()
started, cpu = time.perf_counter(), time.process_time()
report = collect(artifacts, grace=3600, dry_run=True, **kwargs)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = tracemalloc.get_traced_memory()[1] if traced else None
print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "traced_peak_mb": peak and round(peak / 2**20, 1),
                  "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "would_remove": report.blobs, "grants": report.grants, "load": os.getloadavg()[0]}))
"""


def _artifacts(root: Path, endpoint: str | None, url: str) -> Any:
    from tracklet.server.artifact_blobs import ServerArtifacts
    from tracklet.store import Store

    store_url, options = None, None
    if endpoint:
        store_url, options = f"s3://tracklet/{root.name}", {"endpoint_url": endpoint, "key": "S3RVER",
                                                            "secret": "S3RVER"}
    return ServerArtifacts(root, store_url, options, engine=Store(url, root=root).engine)


def build(root: Path, count: int, endpoint: str | None, url: str) -> None:
    import sqlalchemy as sa

    from tracklet.artifacts.manifest import Manifest, ManifestEntry
    from tracklet.server.schema import artifact_blobs

    artifacts = _artifacts(root, endpoint, url)
    base = Path(artifacts.blobs.base) / "sha256"
    old = time.time() - 7 * 86400
    rows, batch, referenced = [], {}, []

    def put(digest: str, data: bytes) -> None:
        nonlocal batch
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

    for number in range(count):
        data = number.to_bytes(8, "big")
        digest = hashlib.sha256(data).hexdigest()
        put(digest, data)
        if number % 4 in (1, 3):  # granted, referenced by nothing
            rows.append({"project": "p", "digest": digest, "size": len(data), "created_at": old})
        elif number % 4 == 2:  # granted and referenced by a version
            rows.append({"project": "p", "digest": digest, "size": len(data), "created_at": old})
            referenced.append((digest, len(data)))
    manifests = []
    for start in range(0, len(referenced), 5000):
        manifest = Manifest({f"f{start + i}": ManifestEntry(f"f{start + i}", digest, size)
                             for i, (digest, size) in enumerate(referenced[start:start + 5000])}).to_bytes()
        digest = hashlib.sha256(manifest).hexdigest()
        put(digest, manifest)
        rows.append({"project": "p", "digest": digest, "size": len(manifest), "created_at": old})
        manifests.append(digest)
    if batch:
        artifacts.fs.pipe(batch)
    with artifacts.engine.begin() as connection:
        connection.execute(sa.insert(artifact_blobs), rows)
    for number, digest in enumerate(manifests):
        artifacts.commit("p", f"data{number}", type="dataset", manifest_digest=digest, description="", metadata={},
                         aliases=[], logged_by=None)


def listing_rounds(root: Path, endpoint: str | None, rounds: int) -> None:
    """The collection's listing against ``find``'s, alternated: seconds and tracemalloc peak."""
    import tracemalloc

    from tracklet.artifacts.manifest import is_sha256
    from tracklet.server.artifact_gc import _blob_objects

    artifacts = _artifacts(root, endpoint, f"sqlite:///{root / 'store.sqlite'}")

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
    parser.add_argument("--store", help="a database URL (default: SQLite in the work dir)")
    parser.add_argument("--tree", action="append", default=[], type=Path,
                        help="another checkout to alternate with (its tracklet imported)")
    args = parser.parse_args()
    root = args.workdir / (f"store-{args.objects}" + ("-s3" if args.s3_endpoint else "") +
                           ("-pg" if args.store else ""))
    url = args.store or f"sqlite:///{root / 'store.sqlite'}"
    if not (root / "built").exists():
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(root, args.objects, args.s3_endpoint, url)
        (root / "built").write_text("")
        print(json.dumps({"built_objects": args.objects, "build_s": round(time.perf_counter() - started, 1)}))
    if args.listing_only:
        listing_rounds(root, args.s3_endpoint, args.rounds)
        return
    trees = [Path(__file__).resolve().parents[1], *args.tree]
    for number in range(args.rounds):
        for tree in trees if number % 2 == 0 else trees[::-1]:
            for traced in ("0", "1"):
                done = subprocess.run([sys.executable, "-c", _ROUND, str(root), traced, url, args.s3_endpoint or ""],
                                      capture_output=True, text=True, check=True,
                                      env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
                print(json.dumps({"round": number, "tree": tree.name, "traced": traced == "1",
                                  **json.loads(done.stdout)}), flush=True)


if __name__ == "__main__":
    main()
