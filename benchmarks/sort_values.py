"""Pages of runs sorted by a config or summary key, read through ``run_sort_values`` (store
migration 0015) or as before (every run of the project sorted), and what keeping the table costs
the indexer:

    python benchmarks/sort_values.py                      # 50k runs, SQLite and PostgreSQL
    python benchmarks/sort_values.py --runs 10000 --backend sqlite --skip-indexing
    python benchmarks/sort_values.py --runs 2000 --skip-indexing --user-pages   # far pages, by user too

Listings: one store per backend of N runs in one project (config: a float ``lr``, a string
``optimizer``, a nested int ``model.depth``; summary: 10 floats, a few runs without ``loss``), with
planner statistics (SQLite ``ANALYZE``, PostgreSQL ``VACUUM ANALYZE``). Each page is read by
``Store.runs`` in one process, A: as before (``sort_values.sort_path`` answers None, so the JSON
sort of ``filters.compile_sort`` orders every run), B: through the table, alternating A/B, B/A.
Reported per page: SQLite's virtual-machine instructions (a progress handler called on each) or
PostgreSQL's rows read from ``runs`` and ``run_sort_values`` (EXPLAIN ANALYZE; in parentheses, those
of them that are entries of an index read alone), and the median ms. Pages at offsets: a tenth to
the end of the order, under and past the third of the runs where PostgreSQL reads the JSON sort
(``store.JSON_SORT_PAST``), among and past the runs lacking the key.

``--user-pages``: a server's store (three in four runs credited to a user) and pages sorted by
``user`` across and past the credited runs, A: read at the offset, then counted (``JoinedSort.rows``
None, as before), B: the creators' index asked first.

Indexing: 3 runs of 30,000 steps logging 10 floats, recorded once (``--summary-every-drain``:
the sender writes the summary at each wake-up instead of every 5 s, many more summary updates to
index), indexed into fresh stores with the triggers dropped (A: what the indexer wrote before
0015) or kept (B), whole (one pass) and append by append (``chunk_bytes`` 64 KiB: a transaction
per piece, as a server indexes a live run), alternating; the median seconds (SQLite: this
process's CPU, which SQLite's work is part of; PostgreSQL: wall) and B/A. ``--updates N``: N
updates of a run's summary (10 changed floats, a transaction each) with and without the triggers.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.report import print_table  # noqa: E402

from test_store_plans import cost, statements  # noqa: E402  (the plan tests' cost units)

from tracklet.store import Store  # noqa: E402
from tracklet.store import sort_values  # noqa: E402
from tracklet.store.schema import projects, runs  # noqa: E402

PROJECT = "bench"
FIELDS = ("run_id", "name", "state", "created_at", "config", "summary")
PAGES = {
    "config.lr": dict(order_by="config.lr", limit=50),
    "-config.lr": dict(order_by="-config.lr", limit=50),
    "-summary.loss": dict(order_by="-summary.loss", limit=50),
    "config.optimizer (strings)": dict(order_by="config.optimizer", limit=50),
    "-config.model.depth (ties)": dict(order_by="-config.model.depth", limit=50),
    "summary.loss, offset 5,000": dict(order_by="summary.loss", limit=50, offset=5000),
    "summary.loss + state filter": dict(order_by="summary.loss", limit=50, filter="state = 'finished'"),
    "config.lr + config filter": dict(order_by="config.lr", limit=50, filter="config.lr >= 0.5"),
}
TRIGGERS = ("insert", "config", "summary", "copies")


def far_pages(count: int) -> dict[str, dict[str, Any]]:
    """Pages further into the order, by the runs in the project (one in 50 lacks ``loss``): under
    and past the third of the runs where PostgreSQL reads the JSON sort (``store.JSON_SORT_PAST``),
    and at the end."""
    lacking = len(range(0, count, 50))
    return {
        "config.optimizer (strings), offset a tenth": dict(order_by="config.optimizer", limit=50, offset=count // 10),
        "-config.lr, offset a fifth": dict(order_by="-config.lr", limit=50, offset=count // 5),
        "summary.loss, offset 3/10": dict(order_by="summary.loss", limit=50, offset=count * 3 // 10),
        "config.lr, offset half": dict(order_by="config.lr", limit=50, offset=count // 2),
        "summary.loss, offset 95%": dict(order_by="summary.loss", limit=50, offset=count * 95 // 100),
        "summary.loss, offset past every run": dict(order_by="summary.loss", limit=50, offset=count + 1000),
        "-summary.loss, among the runs lacking it": dict(order_by="-summary.loss", limit=50,
                                                        offset=count - lacking + lacking // 2),
        "summary.loss, across into the runs lacking it": dict(order_by="summary.loss", limit=50,
                                                             offset=count - lacking - 25),
        "config.lr, its last page": dict(order_by="config.lr", limit=50, offset=count - 20),
    }


def split_cost(engine: sa.Engine, statement: str, parameters: Any) -> tuple[int, int]:
    """PostgreSQL: (rows read from runs and run_sort_values, of them index entries read alone:
    an Index Only Scan's), from EXPLAIN ANALYZE as ``test_store_plans.cost`` counts them; SQLite:
    (VM instructions, 0)."""
    if engine.dialect.name == "sqlite":
        return cost(engine, statement, parameters), 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        (plan,) = cursor.fetchone()
    finally:
        raw.close()
    found = [0, 0]

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") in ("runs", "run_sort_values"):
            read = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
            found[0] += read
            if node["Node Type"] == "Index Only Scan":
                found[1] += read
        for child in node.get("Plans", []):
            walk(child)

    for top in plan:
        walk(top["Plan"])
    return found[0], found[1]


def fill(store: Store, count: int) -> None:
    rng = random.Random(7)
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name=PROJECT).returning(projects.c.id)).scalar_one()
        for start in range(0, count, 5000):
            rows = []
            for i in range(start, min(count, start + 5000)):
                summary = {f"m{k}": rng.random() for k in range(9)}
                if i % 50:
                    summary["loss"] = rng.random()
                rows.append({"project_id": project_id, "run_id": f"r{i:07d}", "name": f"run {i}",
                             "state": "finished" if i % 10 else "crashed", "tags": [],
                             "config": {"lr": rng.random(), "optimizer": rng.choice(["adam", "sgd", "adamw", "lion"]),
                                        "model": {"depth": rng.randrange(4, 40)}, "seed": i},
                             "summary": summary, "keys": [], "created_at": float(i),
                             "log_path": f"{PROJECT}/r{i:07d}.log", "metadata": {}})
            connection.execute(runs.insert(), rows)
        if store.engine.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")


@contextmanager
def legacy(on: bool) -> Iterator[None]:
    original = sort_values.sort_path
    if on:
        sort_values.sort_path = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        sort_values.sort_path = original


def listings(url: str, root: Path, count: int, rounds: int, repeats: int) -> list[list[str]]:
    store = Store(url, root=root)
    try:
        fill(store, count)
        costs: dict[tuple[str, bool], tuple[int, int]] = {}
        times: dict[tuple[str, bool], list[float]] = {}
        pages: dict[tuple[str, bool], list[str]] = {}
        listed_pages = {**PAGES, **far_pages(count)}
        for round_ in range(rounds):
            for before in ((True, False) if round_ % 2 == 0 else (False, True)):
                with legacy(before):
                    for name, kwargs in listed_pages.items():
                        if round_ == 0:
                            with statements(store.engine) as seen:
                                rows = store.runs(PROJECT, fields=FIELDS, **kwargs)
                            pages[(name, before)] = [row["run_id"] for row in rows]
                            split = [split_cost(store.engine, s, p) for s, p in seen]
                            costs[(name, before)] = (sum(c for c, _ in split), sum(e for _, e in split))
                        store.runs(PROJECT, fields=FIELDS, **kwargs)
                        spent = []
                        for _ in range(repeats):
                            started = time.perf_counter()
                            store.runs(PROJECT, fields=FIELDS, **kwargs)
                            spent.append(time.perf_counter() - started)
                        times.setdefault((name, before), []).append(statistics.median(spent))
        rows = []
        for name in listed_pages:
            assert pages[(name, True)] == pages[(name, False)], f"{name}: the pages differ"
            a, b = statistics.median(times[(name, True)]), statistics.median(times[(name, False)])
            rows.append([f"{store.engine.dialect.name} {count:,}: {name}", _cost(costs[(name, True)]),
                         _cost(costs[(name, False)]), f"{costs[(name, False)][0] / costs[(name, True)][0]:.2f}",
                         f"{a * 1e3:.2f}", f"{b * 1e3:.2f}", f"{b / a:.2f}"])
        return rows
    finally:
        store.close()


def user_pages(url: str, root: Path, count: int, rounds: int, repeats: int) -> list[list[str]]:
    """Pages of a server's runs sorted by ``user`` (three in four runs credited), across and past
    the credited runs: A: read at the offset among the credited runs, then counted when none is
    there (``JoinedSort.rows`` None, as before); B: the creators' index tells the page starts past
    them, and they are counted. Cost: SQLite VM instructions; PostgreSQL rows read from runs,
    run_creators and users."""
    import dataclasses

    from test_store_plans import _rows_read, _store

    from tracklet.server import run_creators as creators
    from tracklet.server import schema as server_schema

    store = _store(url, root, count, server=True)
    credited = 3 * count // 4
    with store.engine.begin() as connection:
        connection.execute(server_schema.run_creators.delete().where(
            server_schema.run_creators.c.run_id >= f"r{credited:06d}"))
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")

    def joined(before: bool) -> Any:
        fields = creators.joined_fields(PROJECT_OF_USERS)
        if before:
            fields = dataclasses.replace(fields, sorts={"user": dataclasses.replace(fields.sorts["user"], rows=None)})
        return lambda project: fields

    def page_cost(statement: str, parameters: Any) -> int:
        if store.engine.dialect.name == "sqlite":
            return cost(store.engine, statement, parameters)
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            (plan,) = cursor.fetchone()
            return _rows_read(plan, ("runs", "run_creators", "users"))
        finally:
            raw.close()

    pages = {"user, offset among the uncredited runs": dict(order_by="user", offset=credited + count // 8),
             "-user, its last page": dict(order_by="-user", offset=count - 20),
             "user, offset half (within the credited)": dict(order_by="user", offset=count // 2)}
    fields = ("run_id", "name", "state", "user")
    try:
        costs: dict[tuple[str, bool], int] = {}
        times: dict[tuple[str, bool], list[float]] = {}
        listed: dict[tuple[str, bool], list[str]] = {}
        for round_ in range(rounds):
            for before in ((True, False) if round_ % 2 == 0 else (False, True)):
                store.project_joined_fields = joined(before)
                for name, kwargs in pages.items():
                    if round_ == 0:
                        with statements(store.engine) as seen:
                            rows = store.runs(PROJECT_OF_USERS, fields=fields, limit=50, **kwargs)
                        listed[(name, before)] = [row["run_id"] for row in rows]
                        costs[(name, before)] = sum(page_cost(s, p) for s, p in seen)
                    spent = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        store.runs(PROJECT_OF_USERS, fields=fields, limit=50, **kwargs)
                        spent.append(time.perf_counter() - started)
                    times.setdefault((name, before), []).append(statistics.median(spent))
        rows = []
        for name in pages:
            assert listed[(name, True)] == listed[(name, False)], f"{name}: the pages differ"
            a, b = statistics.median(times[(name, True)]), statistics.median(times[(name, False)])
            rows.append([f"{store.engine.dialect.name} {count:,}: {name}", f"{costs[(name, True)]:,}",
                         f"{costs[(name, False)]:,}", f"{costs[(name, False)] / costs[(name, True)]:.2f}",
                         f"{a * 1e3:.2f}", f"{b * 1e3:.2f}", f"{b / a:.2f}"])
        return rows
    finally:
        store.close()


PROJECT_OF_USERS = "p"  # test_store_plans.fill's project


def _cost(found: tuple[int, int]) -> str:
    return f"{found[0]:,}" + (f" ({found[1]:,})" if found[1] else "")


def record_runs(root: Path, steps: int, every_drain: bool) -> None:
    import tracklet
    from tracklet.core import sender

    if every_drain:
        sender.SUMMARY_INTERVAL = 0.0
    for n in range(3):
        run = tracklet.init(project=PROJECT, dir=str(root), config={"lr": 0.1 * n, "model": {"depth": n}},
                            settings={"console": "off", "capture_environment": False, "system_metrics": False})
        for step in range(steps):
            run.log({f"m{k}": step * 0.001 + k for k in range(10)})
        run.finish()


def drop_triggers(store: Store) -> None:
    with store.engine.begin() as connection:
        for name in TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS tr_runs_sort_values_{name}" + (
                " ON runs" if store.engine.dialect.name == "postgresql" else ""))


def summary_updates(url: str, root: Path, rounds: int, updates: int) -> list[list[str]]:
    """What one summary update of 10 changed floats costs the writing transaction, with the
    triggers (B) and without (A): ``updates`` updates of one run's row (one per transaction, as an
    append's), alternating stores A/B per round; wall and this process's CPU (SQLite's is in it)."""
    stores = {}
    for triggers in (False, True):
        store = Store(url(f"upd{int(triggers)}"), root=root / f"upd{int(triggers)}")
        fill(store, 2000)
        if not triggers:
            drop_triggers(store)
        stores[triggers] = store
    spent: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    try:
        for round_ in range(rounds):
            for triggers in ((False, True) if round_ % 2 == 0 else (True, False)):
                store = stores[triggers]
                wall, cpu = time.perf_counter(), time.process_time()
                for n in range(updates):
                    with store.engine.begin() as connection:
                        connection.execute(runs.update().where(runs.c.run_id == f"r{n % 2000:07d}").values(
                            summary={f"m{k}": n * 0.001 + k for k in range(10)}))
                spent[triggers].append(((time.perf_counter() - wall) / updates, (time.process_time() - cpu) / updates))
    finally:
        for store in stores.values():
            store.close()
    rows = []
    for at, what in ((0, "wall"), (1, "CPU of this process")):
        a = statistics.median(t[at] for t in spent[False])
        b = statistics.median(t[at] for t in spent[True])
        rows.append([f"{stores[True].engine.dialect.name}: an update of 10 summary values, {what}",
                     f"{a * 1e6:.0f} us", f"{b * 1e6:.0f} us", f"{b / a:.2f}"])
    return rows


def index_time(url: str, root: Path, triggers: bool, chunk: int | None) -> tuple[float, int]:
    store = Store(url, root=root)
    try:
        if not triggers:
            drop_triggers(store)
        indexer = store.indexer()
        if chunk:
            indexer.chunk_bytes = chunk
        summaries = [0]

        def count(connection, cursor, statement, parameters, context, executemany) -> None:
            if statement.startswith("UPDATE runs") and "summary" in statement:
                summaries[0] += len(parameters) if executemany else 1

        sa.event.listen(store.engine, "before_cursor_execute", count)
        started = time.process_time() if store.engine.dialect.name == "sqlite" else time.perf_counter()
        report = indexer.index()
        spent = (time.process_time() if store.engine.dialect.name == "sqlite" else time.perf_counter()) - started
        assert not report.failed, report.failed
        return spent, summaries[0]
    finally:
        store.close()


def indexing(make_url: Any, scratch: Path, backend: str, steps: int, rounds: int, every_drain: bool) -> list[list[str]]:
    root = scratch / f"runs-{backend}"
    record_runs(root, steps, every_drain)
    rows = []
    for chunk in (None, 64 << 10):
        times: dict[bool, list[float]] = {True: [], False: []}
        updates = 0
        for round_ in range(rounds):
            for triggers in ((False, True) if round_ % 2 == 0 else (True, False)):
                url = make_url(f"idx{round_}{int(triggers)}{chunk or 0}")
                spent, updates = index_time(url, root, triggers, chunk)
                times[triggers].append(spent)
        a, b = statistics.median(times[False]), statistics.median(times[True])
        ratios = sorted(t / f for t, f in zip(times[True], times[False]))
        rows.append([f"{backend}: 3 x {steps:,} steps x 10 floats, {'64 KiB pieces' if chunk else 'whole'}",
                     str(updates), f"{a:.3f}", f"{b:.3f}", f"{b / a:.3f}", f"{ratios[0]:.3f}-{ratios[-1]:.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--index-rounds", type=int, default=6)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--skip-listings", action="store_true")
    parser.add_argument("--summary-every-drain", action="store_true")
    parser.add_argument("--updates", type=int, default=0, help="also time this many summary updates, A/B")
    parser.add_argument("--user-pages", action="store_true", help="also pages of a server's runs sorted by user, A/B")
    args = parser.parse_args()
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    listed: list[list[str]] = []
    indexed: list[list[str]] = []
    users: list[list[str]] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sort-values-")))
        postgres = None
        if args.backend in ("postgresql", "both"):
            from pgcluster import create_database, postgres_cluster

            postgres = stack.enter_context(postgres_cluster())
        backends = [b for b in ("sqlite", "postgresql") if args.backend in (b, "both")]
        for backend in backends:
            def make_url(name: str, backend: str = backend) -> str:
                if backend == "sqlite":
                    (scratch / name).mkdir(parents=True, exist_ok=True)
                    return f"sqlite:///{scratch / name / 'store.sqlite'}"
                return create_database(postgres, name)

            if not args.skip_listings:
                listed += listings(make_url(f"list{args.runs}"), scratch / f"list-{backend}", args.runs, args.rounds,
                                   args.repeats)
            if args.user_pages:
                users += user_pages(make_url(f"users{args.runs}"), scratch / f"users-{backend}", args.runs,
                                    args.rounds, args.repeats)
            if args.updates:
                indexed += summary_updates(make_url, scratch / f"upd-{backend}", args.index_rounds, args.updates)
            if not args.skip_indexing:
                indexed += indexing(make_url, scratch, backend, args.steps, args.index_rounds, args.summary_every_drain)
    if listed:
        print_table(listed, header=["page of 50", "A cost", "B cost", "B/A cost", "A ms", "B ms", "B/A ms"])
        print("cost: SQLite VM instructions; PostgreSQL rows read from runs and run_sort_values, index entries "
              "included (in parentheses: of them, entries of an index read alone)")
    if users:
        print_table(users, header=["page of 50 by user", "A cost", "B cost", "B/A cost", "A ms", "B ms", "B/A ms"])
        print("cost: SQLite VM instructions; PostgreSQL rows read from runs, run_creators and users, index entries "
              "included")
    if indexed:
        for row in indexed:
            print(" | ".join(row))
        print("indexing: summary updates indexed, A s (no triggers), B s, B/A, B/A per round (SQLite: CPU s, "
              "PostgreSQL: wall s); updates: A, B, B/A")
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
