"""What a request for a shared run's tables costs a plain server when nothing was logged since the
last one: the per-request metadata work of ``log_fold.LogFolds.get_run`` (listing the run's
parts, each copy's size and identity, the checks over each writer's fold) at 8, 256 and 2,048 parts.

    python benchmarks/run_fold_parts.py                  # P = 8, 256, 2,048 parts
    python benchmarks/run_fold_parts.py --parts 8 64 --repeat 50

One real shared run is recorded (a primary and one part, each logging a few tables), and the part's
log copied to P labels (readers take a part's label from its file name), in a scratch data root.
The server's table fold (``routes_tables._FOLDS``) reads the run through the server's log source
(``LocalLogs``) once, then each timed request finds every log as it was: what it costs is the
metadata. Reported: ms per request (median of ``--repeat``), the system calls that stat or list a
path per request (counted through ``os.stat``/``os.scandir``), and the ratio of the time to the
8-part case's (the first P): ~P/8 is linear in the parts. Absolute times drift a lot on shared
machines; compare ratios from one invocation (../shared/NOTES.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def record(root: Path, parts: int) -> Path:
    import tracklet
    from tracklet.core.layout import RunPaths

    for label in (None, "rank_0"):
        settings: dict[str, Any] = {**QUIET, "dir": str(root)}
        if label:
            settings.update(primary=False, label=label)
        run = tracklet.init(project="p", id="shared", settings=settings)
        for step in range(3):
            run.log({"t": tracklet.Table(columns=["i"], data=[[step]]), "loss": float(step)}, step=step)
        run.finish()
    paths = RunPaths(root, "p", "shared")
    part = paths.part_paths("rank_0").log_file
    for n in range(1, parts):
        shutil.copyfile(part, paths.part_paths(f"rank_{n}").log_file)
    return paths.run_dir


class Counted:
    """Counts calls of ``os.stat`` and ``os.scandir`` (what ``Path.stat`` and ``exists`` go
    through on Python 3.11+), each one system call."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> "Counted":
        self._stat, self._scandir = os.stat, os.scandir

        def stat(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return self._stat(*args, **kwargs)

        def scandir(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return self._scandir(*args, **kwargs)

        os.stat, os.scandir = stat, scandir  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        os.stat, os.scandir = self._stat, self._scandir  # type: ignore[assignment]


def measure(base: Path, parts: int, repeat: int) -> dict[str, Any]:
    from tracklet.core.layout import RunPaths
    from tracklet.server.routes_tables import _FOLDS
    from tracklet.store.logsource import LocalLogs

    root = base / f"p{parts}"
    record(root, parts)
    source = LocalLogs(root)
    paths = RunPaths(root, "p", "shared")

    def view(run: Any) -> int:
        return sum(len(getattr(tables, "refs", tables)) for tables in run.writers.values())  # (or records)

    def request() -> int:
        return _FOLDS.get_run(source, paths, view)

    records = request()
    assert records == 3 * (parts + 1), records
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        request()
        times.append(time.perf_counter() - start)
    with Counted() as counted:
        request()
    return {"parts": parts, "ms": statistics.median(times) * 1e3, "syscalls": counted.calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, nargs="+", default=[8, 256, 2048])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="run-fold-parts-"))
    try:
        results = [measure(base, parts, args.repeat) for parts in args.parts]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first = results[0]
    print_table([[r["parts"], f"{r['ms']:.3f}", r["syscalls"], f"{r['ms'] / first['ms']:.1f}",
                  f"{r['parts'] / first['parts']:.0f}"] for r in results],
                header=["parts", "ms/request", "stat+scandir calls", "time ratio", "parts ratio"])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
