"""Reader CPU for rows of large structured values (lists W&B keeps as JSON), against a baseline tree.

    python benchmarks/reader_structured.py --baseline /path/to/main            # every shape, 3 rounds
    python benchmarks/reader_structured.py --shapes empty-lists --rows 8 --items 60000 --rounds 5

The read counterpart of ``worker_structured.py`` (same shapes, plus ``scalars``: float-only history,
``--items`` rows of ``--keys`` floats, whose read path the structured one must not slow). This tree
records each shape once (an offline run); then fresh processes of this tree and of the baseline, in
alternation (the machine is shared), read it back with ``tracklet.Api(root).run(...).history()``,
timing the process's CPU for that call. The table gives each one's median and their ratio, and
the load before and after. Each shape also runs at half the items, so a cost that is not linear in
the items shows as a ratio far from 2 between the two sizes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_structured import SHAPES as WORKER_SHAPES, arguments  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {**WORKER_SHAPES, "scalars": "None"}

_WRITE = r"""
import functools, sys
import tracklet
root, n, rows, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
make = eval("lambda n: " + sys.argv[5], {"functools": functools})
if sys.argv[5] == "None":  # float-only: n rows of `keys` floats
    data = [{f"k{k}": i / (k + 1) for k in range(keys)} for i in range(n)]
else:
    data = [{f"k{k}": make(n) for k in range(keys)} for _ in range(rows)]
run = tracklet.init(project="p", dir=root, settings={"console": "off", "capture_environment": False,
                                                     "system_metrics": False, "finish_timeout": 3600})
for row in data:
    run.log(row)
run.finish()
print(run.path)
"""

_READ = r"""
import json, sys, time
import tracklet
root, path = sys.argv[1], sys.argv[2]
api = tracklet.Api(root)
started = time.process_time()
history = api.run(path).history()
print(json.dumps({"read": time.process_time() - started, "columns": len(history)}))
"""


def record(shape: str, items: int, rows: int, keys: int, root: str) -> str:
    out = subprocess.run([sys.executable, "-c", _WRITE, root, str(items), str(rows), str(keys), SHAPES[shape]],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def sample(tree: Path, root: str, path: str) -> float:
    out = subprocess.run([sys.executable, "-c", _READ, root, path], env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True, cwd=tree)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["read"])


def main() -> None:
    args, trees = arguments(__doc__, SHAPES)
    print("load before:", os.getloadavg())
    for shape in args.shapes:
        for items in (args.items // 2, args.items):
            with tempfile.TemporaryDirectory() as root:
                path = record(shape, items, args.rows, args.keys, root)
                taken: dict[str, list[float]] = {name: [] for name in trees}
                for _ in range(args.rounds):
                    for name, tree in trees.items():
                        taken[name].append(sample(tree, root, path))
            medians = {name: statistics.median(samples) for name, samples in taken.items()}
            line = f"{shape:12} {args.rows}x{args.keys} rows x {items:>6} items:"
            for name, median in medians.items():
                line += f"  {name}: read {median:7.3f} s"
            if "baseline" in medians:
                line += f"  ratio (baseline/this) {medians['baseline'] / medians['this']:6.2f}x"
            print(line, flush=True)
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
