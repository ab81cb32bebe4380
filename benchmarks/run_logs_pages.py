"""A ``--logs`` server's walk of every run's logs (``SegmentCopies.run_logs``, keyset pages of
``RUN_LOGS_BATCH`` heads), with and without ``ix_log_heads_run_order`` (server migration s0025), and
the single query that listed every head before the walk was paged:

    python benchmarks/run_logs_pages.py                      # 50k, 100k and 200k runs
    python benchmarks/run_logs_pages.py --runs 100000 --rounds 3

A throwaway PostgreSQL cluster (tests/pgcluster.py) holds N runs in 10 projects, each run with its
own head and two parts' (``<run>/w1``, ``<run>/w2``). In alternating rounds the walk is timed with
the index (B: s0025), without it (A: dropped; each page sorts every head), and as one query (the
old walk: every head listed, then grouped). Reported: the median of each and the ratios. Only
ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tracklet.core.layout import RunPaths  # noqa: E402
from tracklet.server import segments  # noqa: E402
from tracklet.server.schema import log_heads  # noqa: E402
from tracklet.store import Store  # noqa: E402


def one_query(copies: segments.SegmentCopies) -> int:
    """The walk before it was paged: every head in one query, grouped by run."""
    with copies.engine.connect() as connection:
        keys = connection.execute(sa.select(log_heads.c.project, log_heads.c.run_id).where(log_heads.c.size > 0)
                                  .order_by(log_heads.c.project, log_heads.c.run_id)).all()
    found: dict[tuple[str, str], list[RunPaths]] = {}
    for project, key in keys:
        run_id, _, label = key.partition("/")
        found.setdefault((project, run_id), []).append(RunPaths(copies.root, project, run_id, label or None))
    return len(found)


def main() -> None:
    import fsspec
    from pgcluster import create_database, postgres_cluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with postgres_cluster() as url, __import__("tempfile").TemporaryDirectory() as scratch:
        for runs in args.runs or [50_000, 100_000, 200_000]:
            store = Store(create_database(url, f"walk{runs}"), root=Path(scratch) / f"root{runs}")
            copies = segments.SegmentCopies(store.engine, fsspec.filesystem("file"), f"{scratch}/seg", Path(scratch),
                                            heartbeat_lapse=600)
            rows = [{"project": f"p{index % 10}", "run_id": key, "size": 100, "updated_at": 0.0}
                    for index in range(runs) for key in (f"run{index:07d}", f"run{index:07d}/w1", f"run{index:07d}/w2")]
            with store.engine.begin() as connection:
                for start in range(0, len(rows), 10_000):
                    connection.execute(log_heads.insert(), rows[start:start + 10_000])
            times: dict[str, list[float]] = {"paged, index (s0025)": [], "paged, no index": [], "one query": []}
            for _ in range(args.rounds):
                for name in times:
                    with store.engine.begin() as connection:
                        connection.exec_driver_sql("DROP INDEX IF EXISTS ix_log_heads_run_order")
                        if name != "paged, no index":
                            connection.exec_driver_sql("CREATE INDEX ix_log_heads_run_order ON log_heads "
                                                       "(project, split_part(run_id, '/', 1), run_id)")
                    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                        connection.exec_driver_sql("VACUUM ANALYZE log_heads")
                    start = time.perf_counter()
                    count = (one_query(copies) if name == "one query"
                             else sum(1 for _ in copies.run_logs()))
                    times[name].append(time.perf_counter() - start)
                    assert count == runs, (name, count)
            pages = -(-3 * runs // segments.RUN_LOGS_BATCH)
            medians = {name: statistics.median(values) for name, values in times.items()}
            print(f"{runs} runs ({3 * runs} heads, {pages} pages): "
                  + ", ".join(f"{name} {value:.2f} s" for name, value in medians.items())
                  + f"; no index / index {medians['paged, no index'] / medians['paged, index (s0025)']:.2f}"
                  + f", one query / index {medians['one query'] / medians['paged, index (s0025)']:.2f}", flush=True)
            store.close()


if __name__ == "__main__":
    main()
