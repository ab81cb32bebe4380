"""Peak memory of reading one run's history from its record log (issue #12, item 12):

    python benchmarks/reader_memory.py              # the sparse run and the distinct-keys run
    python benchmarks/reader_memory.py --quick      # a tenth of the sizes

Cases (each log written through the live run API, ``tracklet.init`` + ``run.log``):

* ``sparse``: 200k steps of ``loss`` and ``lr``, and 500 ``eval/*`` keys every 500 steps
  (a realistic run with an evaluation pass; ~6.5 MB of log);
* ``distinct``: 100k steps, each logging one key no other step logs (100k keys; ~7 MB).

Every measurement runs in a fresh interpreter and reports its peak RSS (``ru_maxrss``) beside
that of an interpreter that only imported tracklet, so the difference is what reading costs:
``history()`` (every key, plus one key read as a list and every row iterated), and exports to
/dev/null as CSV, JSON Lines and Parquet (the distinct-keys run: JSON Lines only, since CSV and
Parquet have a cell per key per row, 10^10 of them). Target: the sparse run in <= 100 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table  # noqa: E402

WRITE = """
import sys, tracklet
case, steps, every, evals = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
settings = {"capture_environment": False, "console": "off", "system_metrics": False,
            "flush_interval": 0.5}
run = tracklet.init(project="bench", id=case, settings=settings)
if case == "sparse":
    names = [f"eval/metric_{k}" for k in range(evals)]
    for step in range(steps):
        row = {"loss": 1.0 / (step + 1), "lr": 1e-3}
        if step % every == every - 1:
            row.update((name, step * 1e-6 + k) for k, name in enumerate(names))
        run.log(row)
else:
    for step in range(steps):
        run.log({f"key_{step}": float(step)})
run.finish()
"""

MEASURE = """
import os, resource, sys, tracklet
from tracklet.core.export import export_history
what = sys.argv[1]
if what != "baseline":
    run = tracklet.Api(os.environ["TRACKLET_DIR"]).run(sys.argv[2])
    if what == "history":
        history = run.history()
        column = history[sys.argv[3]]
        count = sum(1 for _ in history.rows())
        summary = run.summary
    else:
        with open(os.devnull, "wb") as sink:
            export_history(run, what, sink)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--case", choices=("sparse", "distinct", "all"), default="all")
    parser.add_argument("--skip", default="", help="comma-separated measurements to skip (e.g. parquet)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    cases = {
        "sparse": (200_000 // scale, 500, 500),
        "distinct": (100_000 // scale, 1, 0),
    }
    skipped = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TRACKLET_DIR": tmp, "PYTHONPATH": str(ROOT)}
        baseline = int(python(MEASURE, "baseline", env=env))
        rows = [("interpreter + import tracklet", f"{baseline} MB", "", "")]
        for case, (steps, every, evals) in cases.items():
            if args.case not in (case, "all"):
                continue
            python(WRITE, case, str(steps), str(every), str(evals), env=env)
            size = (Path(tmp) / "projects" / "bench" / "runs" / case / "run.tlog").stat().st_size
            key = "loss" if case == "sparse" else "key_0"
            # CSV and Parquet write a cell per key per row: 10^10 for the distinct-keys run.
            measured = ("history", "csv", "jsonl", "parquet") if case == "sparse" else ("history", "jsonl")
            for what in measured:
                if what in skipped:
                    continue
                peak = int(python(MEASURE, what, f"bench/{case}", key, env=env))
                rows.append((f"{case} ({steps:,} steps, {size / 1e6:.1f} MB log): {what}", f"{peak} MB",
                             f"+{peak - baseline} MB", "target <= 100 MB" if case == "sparse" else ""))
    print_table(rows, header=("peak RSS", "", "over baseline", ""))


if __name__ == "__main__":
    main()
