"""Worker CPU for rows of large structured values (lists W&B keeps as JSON), against a baseline tree.

    python benchmarks/worker_structured.py --baseline /path/to/main            # every shape, 3 rounds
    python benchmarks/worker_structured.py --shapes empty-lists --rows 8 --items 60000 --rounds 2

Each sample is a fresh process that starts an offline run, logs ``--rows`` rows of ``--keys`` keys, each
a list of ``--items`` items of the shape, and finishes it (``finish_timeout`` raised so nothing is
dropped): the worker's CPU is the process's CPU from the first ``log()`` to the end of ``finish()``
minus the calling thread's. Samples of this tree and of the baseline alternate (the machine is
shared); the table gives each one's median and their ratio, and the load before and after. Each
shape also runs at half the items, so a cost that is not linear in the items shows as a ratio far
from 2 between the two sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    # W&B's empty per-sample results: [[], [], ...]
    "empty-lists": "[[] for _ in range(n)]",
    # many small dicts
    "small-dicts": "[{'a': i, 'b': 'x'} for i in range(n)]",
    # short strings
    "strings": "['s%d' % i for i in range(n)]",
    # pairs nested 25 deep, n // 50 of them
    "deep": "[functools.reduce(lambda v, _: [v, 'x'], range(25), []) for _ in range(n // 50)]",
    # lists of two floats
    "float-pairs": "[[i / 3, -i / 7] for i in range(n)]",
}

_CHILD = r"""
import functools, json, os, sys, tempfile, time
import tracklet
n, rows, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
make = eval("lambda n: " + sys.argv[4], {"functools": functools})
data = [{f"k{k}": make(n) for k in range(keys)} for _ in range(rows)]
with tempfile.TemporaryDirectory() as root:
    run = tracklet.init(project="p", dir=root, settings={"console": "off", "capture_environment": False,
                                                         "system_metrics": False, "finish_timeout": 3600})
    process, caller = time.process_time(), time.thread_time()
    for row in data:
        run.log(row)
    caller = time.thread_time() - caller
    run.finish()
    print(json.dumps({"worker": time.process_time() - process - caller, "caller": caller}))
"""


def sample(tree: Path, shape: str, items: int, rows: int, keys: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(items), str(rows), str(keys), SHAPES[shape]],
                         env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def arguments(description: str | None, shapes: dict[str, str]) -> tuple[argparse.Namespace, dict[str, Path]]:
    """The command line of this benchmark and its read counterpart (reader_structured.py), and the
    trees to time: this checkout, and ``--baseline``'s."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (e.g. main's)")
    parser.add_argument("--shapes", nargs="*", default=list(shapes), choices=list(shapes))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    return args, {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})


def main() -> None:
    args, trees = arguments(__doc__, SHAPES)
    print("load before:", os.getloadavg())
    for shape in args.shapes:
        for items in (args.items // 2, args.items):
            taken: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    taken[name].append(sample(tree, shape, items, args.rows, args.keys))
            medians = {name: {part: statistics.median(s[part] for s in samples) for part in ("worker", "caller")}
                       for name, samples in taken.items()}
            line = f"{shape:12} {args.rows}x{args.keys} rows x {items:>6} items:"
            for name, median in medians.items():
                line += f"  {name}: worker {median['worker']:7.2f} s, log() {median['caller']:5.2f} s"
            if "baseline" in medians:
                line += f"  ratio (baseline/this, worker) {medians['baseline']['worker'] / medians['this']['worker']:6.1f}x"
            print(line, flush=True)
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
