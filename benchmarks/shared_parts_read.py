"""Reading a shared run with many writers: how the log reader's time grows with the number of parts.

    python benchmarks/shared_parts_read.py                 # W = 10, 100, 1,000 writers
    python benchmarks/shared_parts_read.py --writers 10 100 --steps 100
    python benchmarks/shared_parts_read.py --data /tmp/x   # keep (and reuse) the recorded runs there
    python benchmarks/shared_parts_read.py --profile /tmp/x.html   # pyinstrument of the largest W's reads

Each W records the shared run ``benchmarks/shared_parts.py`` indexes (its ``record``: a primary and
W secondary writers, each logging ``--keys`` metrics over ``--steps`` steps, ``loss`` the
primary's too, a summary-only ``best``, and
config ``lr`` and a key of its own), then times the reader (``tracklet.Api(root).run(...)``,
as the CLI and the dashboard's local mode read a run) reading the whole run: its summary, its full
history and its config, in a fresh ``Api`` each time (best of ``--repeat``, more at small W),
and counts the Python function calls of one more read (cProfile): a count, steady where times on
a shared machine are not. Merging the parts (``core/parts.merge_parts``) is most of it.

The table reports wall and CPU ms per writer and the scaling ratio: time per writer at W over time
per writer at the smallest W (1.0: linear in what was written; ~W/W0: quadratic). Absolute times
drift a lot on shared machines; compare ratios from one invocation (../shared/NOTES.md).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402
from benchmarks.shared_parts import PROJECT, RUN_ID, profiler_for, record, writer_arguments  # noqa: E402

import tracklet  # noqa: E402


def read_all(root: Path) -> tuple[int, int, int]:
    """Read the whole run as a user does: summary, history, config (sizes, to check the work was done)."""
    run = tracklet.Api(root).run(f"{PROJECT}/{RUN_ID}")
    summary = run.summary
    history = run.history()
    values = sum(len(history[key]) for key in history)  # every column built, as an export or a chart of each does
    assert values == len(history) * len(history["_step"])
    config = run.config
    return len(summary), len(history["_step"]), len(config)


def measure(root: Path, writers: int, keys: int, steps: int, repeat: int, profiler: Any) -> dict[str, Any]:
    built = 0.0
    if not (root / "projects").exists():
        built = time.perf_counter()
        record(root, writers, keys, steps, 0, 1000, config=True)
        built = time.perf_counter() - built
    best_wall = best_cpu = float("inf")
    sizes = (0, 0, 0)
    read_all(root)  # (first uses: imports, caches)
    for attempt in range(max(repeat, repeat * 100 // writers)):  # small W: more reads, each short
        if profiler is not None and attempt == 0:
            profiler.start()
        started, cpu = time.perf_counter(), time.process_time()
        sizes = read_all(root)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None and attempt == 0:
            profiler.stop()
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    counting = cProfile.Profile()  # one more read, untimed: its Python calls (a count, unlike times here)
    counting.enable()
    read_all(root)
    counting.disable()
    calls = pstats.Stats(counting).total_calls  # type: ignore[attr-defined]
    summary_entries, rows, config_entries = sizes
    assert summary_entries >= writers, (summary_entries, writers)  # every writer's `best` (one labelled each)
    assert config_entries == writers + 1, (config_entries, writers)  # `lr` and each writer's own key
    return {"writers": writers, "record_seconds": built, "seconds": best_wall,
            "ms_per_writer": 1000 * best_wall / writers, "cpu_ms_per_writer": 1000 * best_cpu / writers,
            "calls_per_writer": calls / writers, "summary_entries": summary_entries, "history_rows": rows, "config_entries": config_entries}


def main() -> None:
    parser = writer_arguments(__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="reads per W (the best is reported)")
    parser.add_argument("--data", type=Path, help="record the runs under DIR/w<W> and reuse them there "
                        "(default: a temporary directory per W, removed after)")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument HTML profile of the largest W's first read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    all_results = []
    for writers in sorted(args.writers):
        profiler = profiler_for(args, writers)
        if args.data is not None:
            root = args.data / f"w{writers}-k{args.keys}-s{args.steps}"
            root.mkdir(parents=True, exist_ok=True)
            all_results.append(measure(root, writers, args.keys, args.steps, args.repeat, profiler))
        else:
            with tempfile.TemporaryDirectory(prefix="tracklet-bench-parts-read-") as tmp:
                all_results.append(measure(Path(tmp), writers, args.keys, args.steps, args.repeat, profiler))
        if profiler is not None:
            args.profile.write_text(profiler.output_html())
    base = all_results[0]
    rows = []
    for found in all_results:
        row: list[Any] = [found["writers"], f"{found['seconds'] * 1000:.0f}"]
        for measure_ in ("ms_per_writer", "cpu_ms_per_writer"):
            ratio = found[measure_] / base[measure_] if base[measure_] else 0.0
            row += [f"{found[measure_]:.2f}", f"{ratio:.2f}x"]
        ratio = found["calls_per_writer"] / base["calls_per_writer"]
        row += [f"{found['calls_per_writer']:.0f}", f"{ratio:.2f}x"]
        row.append(f"{found['summary_entries']}/{found['history_rows']}/{found['config_entries']}")
        rows.append(row)
    print(f"keys {args.keys}, steps {args.steps}, best of {args.repeat}: reading the run's summary + history + "
          f"config; wall and CPU ms per writer and Python calls per writer (one more read, profiled), each with its "
          f"ratio to W={base['writers']}'s")
    print_table(rows, ["W", "read ms", "ms/W", "ratio", "cpu ms/W", "ratio", "calls/W", "ratio", "summary/rows/config"])
    write_json(args.json, all_results)


if __name__ == "__main__":
    main()
