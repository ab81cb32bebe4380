"""Indexing a shared run with many writers: how an index pass's time grows with the number of parts.

    python benchmarks/shared_parts.py                 # W = 10, 100, 1,000 writers
    python benchmarks/shared_parts.py --writers 10 100 --steps 100
    python benchmarks/shared_parts.py --profile /tmp/x.html   # pyinstrument of the largest W's passes

Each W builds a shared run with the real client (docs/shared-runs.md): a primary, then W secondary
writers (``primary=False``, ``label=w<i>``), each logging ``--keys`` metrics over ``--steps`` steps
(the first key, ``loss``, the primary's too: every secondary's is ``loss/l:<label>``) and a
summary-only value of its own. Then it times (a) the first index pass over the run, (b) an
incremental pass after every writer grew a little (restarted under its label, ``--grow`` more
steps and a new summary value), and (c) a pass where nothing grew. It also counts, per pass, the
statements that read or write the run's row (``runs``): what a pass costs beyond the bytes it folds.

The table reports wall and CPU ms per writer and the scaling ratio: time per writer at W over time
per writer at the smallest W (1.0: linear in what was written; ~W/W0: quadratic). Absolute times drift a lot
on shared machines; compare ratios from one invocation (docs: ../shared/NOTES.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

import tracklet  # noqa: E402
from tracklet.store import Store  # noqa: E402

PROJECT = "bench"
RUN_ID = "shared"


def _quiet(root: Path) -> dict[str, Any]:
    return {"dir": str(root), "console": "off", "system_metrics": False, "capture_environment": False}


def record(root: Path, writers: int, keys: int, steps: int, first_step: int, summary_value: int,
           config: bool = False) -> None:
    """The primary (once) and every secondary writer, each logging ``steps`` steps from ``first_step``;
    with ``config``, each writer also sets config ``lr`` (the primary's in the run) and a key of its own."""
    quiet = _quiet(root)
    if first_step == 0:
        primary = tracklet.init(project=PROJECT, id=RUN_ID, settings=quiet, reinit="create_new",
                                config={"lr": 0.1} if config else None)
        for step in range(steps):
            primary.log({"loss": 1.0 / (step + 1)}, step=step)
        primary.finish()
    for index in range(writers):
        run = tracklet.init(project=PROJECT, id=RUN_ID, reinit="create_new",
                            settings={**quiet, "primary": False, "label": f"w{index:05d}"},
                            config={"lr": 0.2, f"seed_w{index:05d}": index} if config else None)
        for step in range(first_step, first_step + steps):
            run.log({"loss": 2.0 / (step + 1), **{f"m{k}/w": index + step * 0.5 + k for k in range(1, keys)}},
                    step=step)
        run.summary["best"] = summary_value + index  # summary-only: the first label's; others best/l:<label>
        run.finish()


class RunRowCounter:
    """Statements of a pass that read or write the ``runs`` table (the run's row)."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.reads = self.writes = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith("UPDATE RUNS "):
            self.writes += 1
        elif text.startswith("SELECT") and " FROM RUNS " in text + " " and "JOIN" not in text:
            self.reads += 1

    def take(self) -> tuple[int, int]:
        found = (self.reads, self.writes)
        self.reads = self.writes = 0
        return found


def measure(writers: int, keys: int, steps: int, grow: int, url: str | None, profiler: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracklet-bench-parts-") as tmp:
        root = Path(tmp)
        built = time.perf_counter()
        record(root, writers, keys, steps, 0, 1000)
        built = time.perf_counter() - built
        store = Store(url or f"sqlite:///{root / 'store.sqlite'}", root=root)
        counter = RunRowCounter(store.engine)
        results: dict[str, Any] = {"writers": writers, "record_seconds": built}
        for name in ("first", "grown", "unchanged"):
            if name == "grown":
                record(root, writers, keys, grow, steps, 2000)
            counter.take()
            if profiler is not None and name != "unchanged":
                profiler.start()
            started, cpu = time.perf_counter(), time.process_time()
            report = store.index()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            if profiler is not None and name != "unchanged":
                profiler.stop()
            assert not report.failed and not report.damaged, (report.failed, report.damaged)
            reads, writes = counter.take()
            results[name] = {"seconds": seconds, "ms_per_writer": 1000 * seconds / writers,
                             "cpu_ms_per_writer": 1000 * cpu / writers, "run_row_reads": reads,
                             "run_row_writes": writes, "points": report.points}
        shown = store.run(PROJECT, RUN_ID)
        results["summary_entries"] = len(shown["summary"])
        read = tracklet.Api(root).run(f"{PROJECT}/{RUN_ID}")  # the file reader agrees with the store
        assert shown["summary"] == read.summary, "the store's summary differs from the log reader's"
        store.engine.dispose()
        return results


def writer_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options both shared-run benchmarks take: ``--writers``, ``--keys``, ``--steps``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--keys", type=int, default=3, help="metrics per writer (the first is `loss`)")
    parser.add_argument("--steps", type=int, default=200, help="steps each writer logs (at first)")
    return parser


def profiler_for(args: argparse.Namespace, writers: int) -> Any:
    """A pyinstrument profiler for the largest W when ``--profile`` was given, else None."""
    if args.profile is None or writers != max(args.writers):
        return None
    from pyinstrument import Profiler

    return Profiler()


def main() -> None:
    parser = writer_arguments(__doc__)
    parser.add_argument("--grow", type=int, default=5, help="steps each writer adds before the incremental pass")
    parser.add_argument("--url", help="a store URL (default: a SQLite file per W)")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument HTML profile of the largest W's passes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    all_results = []
    for writers in sorted(args.writers):
        profiler = profiler_for(args, writers)
        all_results.append(measure(writers, args.keys, args.steps, args.grow, args.url, profiler))
        if profiler is not None:
            args.profile.write_text(profiler.output_html())
    base = all_results[0]
    rows = []
    for found in all_results:
        row: list[Any] = [found["writers"]]
        for name in ("first", "grown", "unchanged"):
            pass_ = found[name]
            for measure_ in ("ms_per_writer", "cpu_ms_per_writer"):
                ratio = pass_[measure_] / base[name][measure_] if base[name][measure_] else 0.0
                row += [f"{pass_[measure_]:.2f}", f"{ratio:.2f}x"]
            row.append(f"{pass_['run_row_reads']}/{pass_['run_row_writes']}")
        rows.append(row)
    print(f"keys {args.keys}, steps {args.steps} (+{args.grow}); per pass: wall ms per writer and CPU ms per writer, "
          f"each with its ratio to W={base['writers']}'s, and the run row's reads/writes")
    header = ["W"]
    for name in ("first", "grown", "unchanged"):
        header += [f"{name} ms/W", "ratio", "cpu ms/W", "ratio", "row r/w"]
    print_table(rows, header)
    write_json(args.json, all_results)


if __name__ == "__main__":
    main()
