"""Listing a server's runs with their users, with and without a covering index on run_creators
(``ix_run_creators_run_user`` on (project, run_id, user_id), proposed as server migration s0017):

    python benchmarks/run_creators_index.py                     # 10k and 50k runs, SQLite and PostgreSQL
    python benchmarks/run_creators_index.py --runs 10000 --rounds 5 --backend sqlite

A server database is made as a server makes it (the store's tables, then the server's migrations),
filled with N runs of one project, each created by one of 20 users (``run_creators``). Then, in
alternating rounds, the index is dropped (A: s0016's indexes only) or created again (B: s0017),
PostgreSQL's statistics refreshed (VACUUM ANALYZE, as autovacuum would, for index-only scans;
SQLite as a server runs it, without ANALYZE, unless --sqlite-analyze), and each listing timed as the run routes make it (``Store.runs`` with the server's
``run_creators.joined_fields``), a page of 50 as the routes ask for: the newest runs with
``user`` (the page joined), the first by ``user`` (every run joined, then sorted) and the first of
one user (a filter on ``user``: every run joined). Reported: the median of each, and the ratio A/B
(above 1: the index helps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.report import print_table  # noqa: E402

from tracklet.server import run_creators as creators  # noqa: E402
from tracklet.server import schema as server_schema  # noqa: E402
from tracklet.store import Store  # noqa: E402
from tracklet.store.schema import projects, runs  # noqa: E402

INDEX = "ix_run_creators_run_user"
USERS = 20
PROJECT = "bench"
LISTINGS = {
    "page of 50 with user": dict(fields=("run_id", "name", "state", "user"), limit=50),
    "first 50 sorted by user": dict(fields=("run_id", "name", "state", "user"), order_by="user", limit=50),
    "first 50 of user = u7": dict(fields=("run_id", "name", "state", "user"), filter="user = 'u7'", limit=50),
}


def fill(store: Store, count: int) -> None:
    engine = store.engine
    with engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name=PROJECT).returning(projects.c.id)).scalar_one()
        connection.execute(server_schema.users.insert(), [
            {"id": i + 1, "name": f"u{i}", "is_admin": False, "created_at": 0.0, "disabled": False}
            for i in range(USERS)])
        for start in range(0, count, 5000):
            batch = range(start, min(count, start + 5000))
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i:07d}", "name": f"run {i}", "state": "finished",
                 "tags": [], "config": {}, "summary": {}, "keys": [], "created_at": float(i),
                 "log_path": f"{PROJECT}/r{i:07d}.log", "metadata": {}} for i in batch])
            connection.execute(server_schema.run_creators.insert(), [
                {"project": PROJECT, "run_id": f"r{i:07d}", "user_id": (i * 7919) % USERS + 1,
                 "user_name": f"u{(i * 7919) % USERS}", "created_at": 0.0}
                for i in batch])


def set_index(engine: sa.Engine, present: bool, analyze: bool) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:  # s0017's index, whether the migrations have it or not
        connection.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {INDEX} ON run_creators (project, run_id, user_id)"
                                   if present else f"DROP INDEX IF EXISTS {INDEX}"))
        if not postgres and analyze:
            connection.execute(sa.text("ANALYZE"))
    if postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE run_creators"))
            connection.execute(sa.text("VACUUM ANALYZE runs"))


def time_listing(store: Store, repeats: int, **kwargs) -> float:
    store.runs(PROJECT, **kwargs)  # warm: the pages read from disk once
    best = []
    for _ in range(repeats):
        started = time.perf_counter()
        store.runs(PROJECT, **kwargs)
        best.append(time.perf_counter() - started)
    return statistics.median(best)


def measure(url: str, root: Path, count: int, rounds: int, repeats: int, analyze: bool) -> list[list[str]]:
    store = Store(url, root=root)
    try:
        server_schema.migrate(store.engine)
        store.project_joined_fields = creators.joined_fields
        fill(store, count)
        times: dict[tuple[str, bool], list[float]] = {}
        for round_ in range(rounds):
            for present in ((False, True) if round_ % 2 == 0 else (True, False)):  # A/B, then B/A
                set_index(store.engine, present, analyze)
                for name, kwargs in LISTINGS.items():
                    times.setdefault((name, present), []).append(time_listing(store, repeats, **kwargs))
        rows = []
        for name in LISTINGS:
            without, with_ = statistics.median(times[(name, False)]), statistics.median(times[(name, True)])
            ratios = [a / b for a, b in zip(times[(name, False)], times[(name, True)])]
            label = store.engine.dialect.name + (" (ANALYZE)" if analyze and store.engine.dialect.name == "sqlite" else "")
            rows.append([f"{label} {count:,} runs: {name}", f"{without * 1e3:.2f}",
                         f"{with_ * 1e3:.2f}", f"{without / with_:.2f}",
                         f"{min(ratios):.2f}-{max(ratios):.2f}"])
        return rows
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--rounds", type=int, default=6, help="A/B rounds, alternated (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per listing per round (median)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sqlite-analyze", action="store_true",
                        help="also run ANALYZE on SQLite (a server never does: without statistics SQLite "
                             "joins through the primary key's index, a unique one, and leaves the new index unused)")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    rows: list[list[str]] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="run-creators-")))
        postgres = None
        if args.backend in ("postgresql", "both"):
            from pgcluster import create_database, postgres_cluster

            postgres = stack.enter_context(postgres_cluster())
        for count in args.runs:
            if args.backend in ("sqlite", "both"):
                root = scratch / f"sqlite-{count}"
                rows += measure(f"sqlite:///{root / 'store.sqlite'}", root, count, args.rounds, args.repeats, False)
                if args.sqlite_analyze:
                    analyzed = scratch / f"sqlite-analyzed-{count}"
                    rows += measure(f"sqlite:///{analyzed / 'store.sqlite'}", analyzed, count, args.rounds,
                                    args.repeats, True)
            if postgres is not None:
                url = create_database(postgres, f"bench{count}")
                rows += measure(url, scratch / f"pg-{count}", count, args.rounds, args.repeats, True)
    print_table(rows, header=["listing", "A: s0016 ms", "B: s0017 ms", "A/B", "A/B per round"])
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
