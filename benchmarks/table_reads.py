"""What the server's table and log-fold routes keep and read per request (docs/performance.md,
"Table reads: what a request reads and keeps"), three measures:

    python benchmarks/table_reads.py entries             # table index: bytes an entry, entries per MiB
    python benchmarks/table_reads.py blobs --versions 10 1000
    python benchmarks/table_reads.py keys --parts 8 256 2048

``entries``: ``routes_tables._Tables`` (a writer's table index) fed N ``TableLogged`` records (20
keys, one fragment each) as the fold feeds them; tracemalloc's bytes held per entry, entries per
MiB, and what the index accounts (its ``bytes``) per entry.

``blobs``: a run logging table ``cells`` V times (one image cell each), served in process
(``create_app``, TestClient); ``GET .../table-blobs/{digest}?key=cells`` for the latest version's
cell, the run indexed already: ms per request (median of ``--repeat``), the ``read_from`` calls
and records read back per request (the records-kept cache emptied before each), and tracemalloc's
peak in one more request. Then the oldest version's cell, asked with ``version=0`` where the server takes it.

``keys``: a shared run (a primary and one part logging strings), the part's log copied to P
labels (``run_fold_parts.py``'s way); the ``values`` route's fold (``routes_values``) read once,
then each request finds every log unchanged and asks ``log_fold.run_keys``: ms per request for
``run_keys`` alone (median) and the writers asked for their keys per request.

Absolute times drift a lot on shared machines: compare ratios from one invocation, and two trees
alternated in one sitting (../shared/NOTES.md).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def entries(count: int) -> dict[str, Any]:
    from tracklet.proto import records_pb2 as pb
    from tracklet.server import routes_tables

    made = []
    for n in range(count):
        record = pb.Record()
        table = record.table_logged
        table.key = f"key/{n % 20}"
        table.step, table.time, table.log_mode, table.table_id = n, 1.7e9 + n, 1, f"t{n % 7}"
        table.version_plus_one = n // 20 + 1
        fragment = table.fragments.add()
        fragment.digest, fragment.rows = hashlib.sha256(str(n).encode()).hexdigest(), 3
        table.rows = 3
        made.append((record, n * 200, record.SerializeToString()))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tables = routes_tables._Tables()
    for record, offset, payload in made:
        tables.apply(record, (offset, payload))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    smallest = min(len(payload) for _, _, payload in made)
    return {"entries": count, "bytes_per_entry": held / count, "entries_per_mib": (1 << 20) * count / held,
            "accounted_per_entry": tables.bytes / count, "smallest_record_bytes": smallest}


def blobs(base: Path, versions: int, repeat: int) -> dict[str, Any]:
    import numpy as np
    from fastapi.testclient import TestClient

    import tracklet
    from tracklet.server import routes_tables
    from tracklet.server.app import create_app

    root = base / f"v{versions}"
    run = tracklet.init(project="p", id="r", dir=str(root), settings={**QUIET, "media_queue": versions + 16})
    for n in range(versions):
        pixels = np.full((4, 4, 3), n % 256, dtype=np.uint8)
        pixels[0, 0, 0] = n // 256
        run.log({"cells": tracklet.Table(columns=["img", "n"], data=[[tracklet.Image(pixels), n]])}, step=n)
    run.finish()
    app = create_app(root, auth=False)
    result: dict[str, Any] = {"versions": versions}
    with TestClient(app) as http:
        source = app.state.tracklet.indexer.source
        reads = [0]
        real = source.read_from

        def read_from(*args: Any, **kwargs: Any) -> Any:
            reads[0] += 1
            return real(*args, **kwargs)

        source.read_from = read_from
        page = http.get("/api/v1/runs/p/r/tables/cells", params={"limit": 1}).json()  # indexes the run
        latest = page["rows"][0][0]["digest"]
        oldest = http.get("/api/v1/runs/p/r/tables/cells", params={"limit": 1, "version": 0}).json()["rows"][0][0]

        assert http.get("/api/v1/runs/p/r/table-versions/cells").json()["total"] == versions

        def ask(digest: str, traced: bool = False, **params: Any) -> tuple[float, int, int]:
            routes_tables._KEPT.records.clear()
            routes_tables._KEPT.bytes = 0
            reads[0] = 0
            if traced:
                tracemalloc.start()
            start = time.perf_counter()
            response = http.get(f"/api/v1/runs/p/r/table-blobs/{digest}", params={"key": "cells", **params})
            took = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
            tracemalloc.stop()
            assert response.status_code == 200, response.text
            return took, reads[0], peak

        for label, digest, params in (("latest", latest, {}), ("oldest_v0", oldest["digest"], {"version": 0})):
            ask(digest, **params)  # (warm)
            samples = [ask(digest, **params) for _ in range(repeat)]
            result[f"{label}_ms"] = statistics.median(took for took, _, _ in samples) * 1e3
            result[f"{label}_reads"] = samples[-1][1]
            result[f"{label}_peak_kib"] = ask(digest, traced=True, **params)[2] / 1024
    return result


def keys(base: Path, parts: int, repeat: int) -> dict[str, Any]:
    import tracklet
    from tracklet.core.layout import RunPaths
    from tracklet.server import routes_values
    from tracklet.server.log_fold import run_keys
    from tracklet.store.logsource import LocalLogs

    root = base / f"k{parts}"
    for label in (None, "rank_0"):
        settings: dict[str, Any] = {**QUIET, "dir": str(root)}
        if label:
            settings.update(primary=False, label=label)
        run = tracklet.init(project="p", id="shared", settings=settings)
        for step in range(3):
            run.log({"text": f"{label}{step}", f"own_{label}": "x", "loss": float(step)}, step=step)
        run.finish()
    paths = RunPaths(root, "p", "shared")
    part = paths.part_paths("rank_0").log_file
    for n in range(1, parts):
        shutil.copyfile(part, paths.part_paths(f"rank_{n}").log_file)
    folds = routes_values.LogFolds(routes_values._Texts, routes_values._Texts.apply, shared=routes_values._budgets)
    source = LocalLogs(root)
    asked = [0]

    def names(texts: Any) -> Any:
        asked[0] += 1
        return texts.defined

    times: list[float] = []

    def view(run: Any) -> int:
        start = time.perf_counter()
        found = run_keys(run, names)
        times.append(time.perf_counter() - start)
        return len(found)

    count = folds.get_run(source, paths, view)
    times.clear()
    asked[0] = 0
    for _ in range(repeat):
        folds.get_run(source, paths, view)
    return {"parts": parts, "keys": count, "run_keys_us": statistics.median(times) * 1e6,
            "writers_asked_per_request": asked[0] / repeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["entries", "blobs", "keys"])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--versions", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--parts", type=int, nargs="+", default=[8, 256, 2048])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="table-reads-"))
    try:
        if args.what == "entries":
            results: list[dict[str, Any]] = [entries(args.entries)]
            rows = [[r["entries"], f"{r['bytes_per_entry']:.1f}", f"{r['entries_per_mib']:,.0f}",
                     f"{r['accounted_per_entry']:.1f}", r["smallest_record_bytes"]] for r in results]
            header = ["entries", "bytes/entry (held)", "entries/MiB", "bytes/entry (accounted)", "smallest record"]
        elif args.what == "blobs":
            results = [blobs(base, versions, args.repeat) for versions in args.versions]
            first = results[0]
            rows = [[r["versions"], f"{r['latest_ms']:.2f}", r["latest_reads"], f"{r['latest_peak_kib']:,.0f}",
                     f"{r['latest_ms'] / first['latest_ms']:.1f}", f"{r['oldest_v0_ms']:.2f}", r["oldest_v0_reads"]]
                    for r in results]
            header = ["versions", "latest: ms", "reads", "peak KiB", "ratio to first", "v0 by version: ms", "reads"]
        else:
            results = [keys(base, parts, args.repeat) for parts in args.parts]
            first = results[0]
            rows = [[r["parts"], r["keys"], f"{r['run_keys_us']:.1f}", f"{r['writers_asked_per_request']:.0f}",
                     f"{r['run_keys_us'] / first['run_keys_us']:.1f}"] for r in results]
            header = ["parts", "keys", "run_keys µs/request", "writers asked", "ratio to first"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print_table(rows, header=header)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
