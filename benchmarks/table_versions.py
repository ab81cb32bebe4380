"""What the writer-assigned run-table version number (docs/tables.md#lineage; the run directory's
counter under a flock, ``media/table_versions.py``) costs a table log.

    python benchmarks/table_versions.py [--blocks 9] [--per-block 200] [--writers 3]

V1: the caller's ``run.log({"t": Table(10 rows)})`` (the training thread), counter on vs off
(off: the writer records no number, as before), alternating blocks in one process; median per log
of each, and the ratio.
V2: the logged-object worker's cost of one 10-row table (``table_store.store_snapshot``: Arrow,
Parquet, the blob store, the record), counter on vs off, alternating blocks; median and ratio.
V3: ``VersionCounter.take`` alone, one process, and ``--writers`` processes of one run taking
numbers at once (contended lock): median per take.

Ratios, not absolute times, mean anything on a shared machine (docs/benchmarks notes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TAKER = """
import sys, time
from tracklet.core.layout import RunPaths
from tracklet.media.table_versions import VersionCounter
root, count, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
counter = VersionCounter(RunPaths(root, "p", "r"), lambda token, message: print(message))
while time.time() < go:
    time.sleep(0.001)
start = time.perf_counter()
for _ in range(count):
    counter.take("k")
print((time.perf_counter() - start) / count)
"""


def _blocks(blocks: int, run_one) -> tuple[list[float], list[float]]:
    on, off = [], []
    for block in range(blocks * 2):
        (on if block % 2 == 0 else off).append(run_one(block % 2 == 0))
    return on, off


def v1(root: Path, blocks: int, per_block: int) -> dict:
    import tracklet
    from tracklet.media import table_versions

    real = table_versions.VersionCounter.take
    run = tracklet.init(project="p", id="v1", dir=str(root), settings={"console": "off", "system_metrics": False,
                                                                        "capture_environment": False})
    step = [0]

    def one(counting: bool) -> float:
        table_versions.VersionCounter.take = real if counting else (lambda self, key: 0)  # type: ignore[method-assign]
        tables = [tracklet.Table(columns=["a", "b"], data=[[i, float(i)] for i in range(10)]) for _ in range(per_block)]
        start = time.perf_counter()
        for table in tables:
            run.log({"t": table}, step=step[0])
            step[0] += 1
        spent = (time.perf_counter() - start) / per_block
        run._logged_worker().flush(None)  # the worker done before the next block
        return spent

    try:
        on, off = _blocks(blocks, one)
    finally:
        table_versions.VersionCounter.take = real  # type: ignore[method-assign]
        run.finish()
    return {"on": statistics.median(on), "off": statistics.median(off)}


def v2(root: Path, blocks: int, per_block: int) -> dict:
    import tracklet
    from tracklet.core.layout import RunPaths
    from tracklet.core.logged import Placement
    from tracklet.media.worker import Context

    paths = RunPaths(root, "p", "v2")
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    counting, plain = Context(root, lambda token, message: None, paths), Context(root, lambda token, message: None)

    def one(on: bool) -> float:
        context = counting if on else plain
        snapshots = [tracklet.Table(columns=["a", "b"], data=[[i, float(i)] for i in range(10)])._at_log("t", n)
                     for n in range(per_block)]
        start = time.perf_counter()
        for n, snapshot in enumerate(snapshots):
            snapshot._record(context, Placement("t", n, 0, 1, time.time()))
        return (time.perf_counter() - start) / per_block

    on, off = _blocks(blocks, one)
    return {"on": statistics.median(on), "off": statistics.median(off)}


def v3(root: Path, writers: int, count: int) -> dict:
    from tracklet.core.layout import RunPaths
    from tracklet.media.table_versions import VersionCounter

    paths = RunPaths(root, "p", "r")
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    counter = VersionCounter(paths, lambda token, message: None)
    counter.take("warm")
    start = time.perf_counter()
    for _ in range(count):
        counter.take("k")
    alone = (time.perf_counter() - start) / count
    go = time.time() + 1.5
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    takers = [subprocess.Popen([sys.executable, "-c", TAKER, str(root), str(count), str(go)], env=env,
                               stdout=subprocess.PIPE, text=True) for _ in range(writers)]
    contended = [float(taker.communicate()[0].strip().splitlines()[-1]) for taker in takers]
    final = VersionCounter(paths, lambda token, message: None).take("k") - 1
    return {"alone": alone, "contended": statistics.median(contended), "numbers": final,
            "expected": count * (writers + 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--writers", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="table-versions-") as work:
        root = Path(work)
        caller = v1(root / "v1", args.blocks, args.per_block)
        worker = v2(root / "v2", args.blocks, args.per_block)
        takes = v3(root / "v3", args.writers, args.per_block * 5)
    print(f"V1 caller's log(table): on {caller['on'] * 1e6:.1f} us, off {caller['off'] * 1e6:.1f} us, "
          f"ratio {caller['on'] / caller['off']:.3f}")
    print(f"V2 worker's store of a 10-row table: on {worker['on'] * 1e6:.0f} us, off {worker['off'] * 1e6:.0f} us, "
          f"ratio {worker['on'] / worker['off']:.3f} (+{(worker['on'] - worker['off']) * 1e6:.0f} us)")
    print(f"V3 take(): alone {takes['alone'] * 1e6:.1f} us, {args.writers} writers at once "
          f"{takes['contended'] * 1e6:.1f} us each; numbers taken {takes['numbers']} of {takes['expected']} "
          f"({'gapless' if takes['numbers'] == takes['expected'] else 'MISMATCH'})")


if __name__ == "__main__":
    main()
