"""The server's listing queries with and without planner statistics, this tree against a baseline:

    python benchmarks/list_plans.py --baseline /tmp/base        # a tree of the code before (git archive)
    python benchmarks/list_plans.py --runs 10000 --backend sqlite --rounds 2 --only "runs:"

SQLite has statistics only after ``ANALYZE`` (which a server never runs; a user, an ops tool or
``PRAGMA optimize`` may); PostgreSQL always has them (autovacuum's ANALYZE). A planner may choose
another plan with them, and a listing that was fast without them may read every row with them.

One server database of N runs in one project (a new server's shape: SQLite's statistics mislead it
most there) is made per backend and per tree, as that tree's server makes it (its migrations), then
filled: each run with its creator (20
users), two metric series and a trace of 4 spans; an artifact collection of 2,000 versions beside
200 of 10; a registry collection of 2,000 links. SQLite's file is copied and ``ANALYZE``d (so both
states hold the same rows); PostgreSQL is ``VACUUM ANALYZE``d. Then in rounds, each tree (A: the
baseline, B: this one) times every listing in a process of its own, the order alternating round by
round (A/B, B/A, ...); a listing's time is the median of ``--repeats`` after one warm run.
Reported: per listing and database, the median over rounds of A and B and A/B (above 1: B faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench"
USERS = 20
FIELDS = ("run_id", "name", "state", "tags", "created_at", "summary", "config", "user")


def fill(url: str, root: Path, count: int) -> None:
    """A server database at ``url`` with ``count`` runs and the rest (see the module)."""
    import sqlalchemy as sa

    from tracklet.registry.tables import registry_collections, registry_links
    from tracklet.server import schema as server_schema
    from tracklet.store import Store
    from tracklet.store.schema import projects, runs, series
    from tracklet.store.spans import spans

    store = Store(url, root=root)
    server_schema.migrate(store.engine)
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name=PROJECT).returning(projects.c.id)).scalar_one()
        connection.execute(server_schema.users.insert(), [
            {"id": i + 1, "name": f"u{i}", "is_admin": False, "created_at": 0.0, "disabled": False}
            for i in range(USERS)])
        for start in range(0, count, 5000):
            batch = range(start, min(count, start + 5000))
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i:07d}", "name": f"run {i}",
                 "state": "running" if i >= count - 5 else "finished", "tags": ["a"] if i % 3 else [],
                 "config": {"lr": (i % 1000) / 1000, "layers": i % 7}, "summary": {"loss": (i * 7919 % 10007) / 10007},
                 "keys": ["loss", "acc"], "created_at": float(i), "log_path": f"{PROJECT}/r{i:07d}.log",
                 "metadata": {"username": f"os{i % 5}"}} for i in batch])
            pks = dict(connection.execute(sa.select(runs.c.run_id, runs.c.id).where(
                runs.c.run_id.in_([f"r{i:07d}" for i in batch]))).all())
            named = "user_name" in server_schema.run_creators.c  # the name's copy: server migration s0020
            connection.execute(server_schema.run_creators.insert(), [
                {"project": PROJECT, "run_id": f"r{i:07d}", "user_id": (i * 7919) % USERS + 1, "created_at": 0.0,
                 **({"user_name": f"u{(i * 7919) % USERS}"} if named else {})}
                for i in batch])
            connection.execute(series.insert(), [
                {"run_pk": pks[f"r{i:07d}"], "key": key, "kind": "number", "count": 0}
                for i in batch for key in ("loss", "acc")])
            connection.execute(spans.insert(), [
                {"project_id": project_id, "run_pk": pks[f"r{i:07d}"], "run_id": f"r{i:07d}", "source": "log",
                 "trace_id": f"{i:032x}", "span_id": f"{i * 4 + j:016x}", "name": "step", "kind": "internal",
                 "start_ns": i * 10**9 + j, "end_ns": i * 10**9 + j + 1, "duration_ms": 0.0,
                 "status": "error" if i % 50 == 0 else "ok", "attributes": {}, "events": [], "links": []}
                for i in batch for j in range(4)])
        versions = [("model", v) for v in range(2000)] + [(f"data{c}", v) for c in range(200) for v in range(10)]
        connection.execute(server_schema.artifact_versions.insert(), [
            {"project": PROJECT, "name": name, "version": v, "type": "model", "digest": f"{v:064x}",
             "manifest": f"{v:064x}", "size": 1, "file_count": 1, "description": "", "metadata": "{}",
             "created_at": float(v), "logged_by": None} for name, v in versions])
        connection.execute(registry_collections.insert().values(registry="models", collection="best", type="model",
                                                                next_version=2000, created_at=0.0, updated_at=0.0))
        connection.execute(registry_links.insert(), [
            {"registry": "models", "collection": "best", "version": v, "source_project": PROJECT,
             "source_name": "model", "source_version": v, "source_digest": f"{v:064x}", "linked_at": float(v),
             "linked_by": "u0"} for v in range(2000)])
    store.close()


def listings(count: int) -> dict[str, Callable[[Any], Any]]:
    """What the dashboard and the API ask, by name: each takes the tree's ``Store`` (with a server's
    ``user`` field) and answers as the routes do."""
    from tracklet.registry.sql import ModelRegistry
    from tracklet.server.artifact_registry_sql import SqlRegistry
    from tracklet.store.spans import traces

    page = dict(fields=FIELDS, limit=50)
    recent = ", ".join(f"{PROJECT}/r{i:07d}" for i in range(count - 5, count)).split(", ")
    return {
        "runs: newest 50": lambda s: s.runs(PROJECT, **page),
        "runs: newest 50, page 101": lambda s: s.runs(PROJECT, **page, offset=5000),
        "runs: newest 50 finished": lambda s: s.runs(PROJECT, **page, filter="state = 'finished'"),
        "runs: newest 50, config.lr < 0.1": lambda s: s.runs(PROJECT, **page, filter="config.lr < 0.1"),
        "runs: newest 50 of user u7": lambda s: s.runs(PROJECT, **page, filter="user = 'u7'"),
        "runs: newest 50 finished or new": lambda s: s.runs(
            PROJECT, **page, filter=f'state = "finished" or created > {count - 2}'),
        "runs: 50 by -created": lambda s: s.runs(PROJECT, **page, order_by="-created"),
        "runs: 50 by created": lambda s: s.runs(PROJECT, **page, order_by="created"),
        "runs: 50 by name": lambda s: s.runs(PROJECT, **page, order_by="name"),
        "runs: 50 by -name": lambda s: s.runs(PROJECT, **page, order_by="-name"),
        "runs: 50 by -state": lambda s: s.runs(PROJECT, **page, order_by="-state"),
        "runs: 50 by state": lambda s: s.runs(PROJECT, **page, order_by="state"),
        "runs: 50 by name, page 101": lambda s: s.runs(PROJECT, **page, order_by="name", offset=5000),
        "runs: 50 by user": lambda s: s.runs(PROJECT, **page, order_by="user"),
        "runs: 50 by -user": lambda s: s.runs(PROJECT, **page, order_by="-user"),
        "runs: 50 by user, page 101": lambda s: s.runs(PROJECT, **page, order_by="user", offset=5000),
        "runs: 50 by config.lr": lambda s: s.runs(PROJECT, **page, order_by="config.lr"),
        "runs: 50 by -config.lr": lambda s: s.runs(PROJECT, **page, order_by="-config.lr"),
        "runs: 50 by summary.loss": lambda s: s.runs(PROJECT, **page, order_by="summary.loss"),
        "runs: 50 by -summary.loss": lambda s: s.runs(PROJECT, **page, order_by="-summary.loss"),
        "runs: 50 by config.lr, filtered": lambda s: s.runs(PROJECT, **page, order_by="config.lr",
                                                            filter="config.lr < 0.01"),
        "runs: dashboard poll (running or new)": lambda s: s.runs(
            PROJECT, fields=FIELDS, filter=f'(state = "running" or created > {count - 2})'),
        "runs: one run": lambda s: s.run(PROJECT, f"r{count // 2:07d}"),
        "metric keys of the project": lambda s: s.metric_keys(PROJECT),
        "history of 5 runs": lambda s: s.history(recent, ["loss", "acc"]),
        "traces: newest 50": lambda s: traces(s.engine, PROJECT, limit=50),
        "traces: newest 50 with an error": lambda s: traces(s.engine, PROJECT, limit=50,
                                                                 filters={"status": "error"}),
        "artifact versions of a collection": lambda s: SqlRegistry(s.engine).versions(PROJECT, "model"),
        "artifact collections": lambda s: SqlRegistry(s.engine).collections(PROJECT),
        "registry: 50 versions": lambda s: ModelRegistry(s.engine).versions("models", "best", limit=50, offset=1000),
    }


def measure(url: str, root: Path, count: int, repeats: int, only: str = "") -> dict[str, float]:
    """Every listing's (or those whose name holds ``only``) median seconds, with this process's
    tree (``sys.path``)."""
    from tracklet.server import run_creators as creators
    from tracklet.store import Store

    store = Store(url, root=root)
    store.project_joined_fields = creators.joined_fields
    found = {}
    try:
        for name, listing in listings(count).items():
            if only not in name:
                continue
            listing(store)  # warm
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                listing(store)
                times.append(time.perf_counter() - started)
            found[name] = statistics.median(times)
    finally:
        store.close()
    return found


def child(tree: Path, url: str, root: Path, count: int, repeats: int, *, mode: str = "--measure",
          only: str = "") -> Any:
    """``mode`` (``--measure`` or ``--fill``) run with ``tree``'s tracklet, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, __file__, mode, url, "--root", str(root), "--runs", str(count),
                           "--repeats", str(repeats), "--only", only],
                          env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1]) if mode == "--measure" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds, alternated (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per listing per round (median)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--baseline", type=Path, help="the tree to compare with (default: this one, A = B)")
    parser.add_argument("--only", default="", help="the listings whose name holds this text (e.g. 'runs:')")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--fill", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.root, args.runs, args.repeats, args.only)))
        return
    if args.fill:
        fill(args.fill, args.root, args.runs)
        return
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from benchmarks.report import print_table

    baseline = (args.baseline or ROOT).resolve()
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; A: {baseline}, B: {ROOT}")
    rows: list[list[str]] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="list-plans-")))
        # Each tree's databases are made by its own schema (a baseline may lack a migration).
        trees = {"A": baseline, "B": ROOT}
        databases: dict[str, dict[str, str]] = {}
        if args.backend in ("postgresql", "both"):
            import sqlalchemy as sa
            from pgcluster import create_database, postgres_cluster

            cluster = stack.enter_context(postgres_cluster())
        for label, tree in trees.items():
            if args.backend in ("sqlite", "both"):
                plain = scratch / f"sqlite{label}" / "store.sqlite"
                plain.parent.mkdir()
                child(tree, f"sqlite:///{plain}", plain.parent, args.runs, 0, mode="--fill")
                analyzed = scratch / f"analyzed{label}" / "store.sqlite"
                analyzed.parent.mkdir()
                shutil.copy(plain, analyzed)
                with sqlite3.connect(analyzed) as connection:
                    connection.execute("ANALYZE")
                databases.setdefault("SQLite", {})[label] = f"sqlite:///{plain}"
                databases.setdefault("SQLite + ANALYZE", {})[label] = f"sqlite:///{analyzed}"
            if args.backend in ("postgresql", "both"):
                url = create_database(cluster, f"bench{label.lower()}")
                child(tree, url, scratch / f"pg{label}", args.runs, 0, mode="--fill")
                engine = sa.create_engine(url)
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.exec_driver_sql("VACUUM ANALYZE")
                engine.dispose()
                databases.setdefault("PostgreSQL", {})[label] = url
        times: dict[tuple[str, str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for tree in ((baseline, ROOT) if round_ % 2 == 0 else (ROOT, baseline)):
                label = "B" if tree == ROOT else "A"
                for database, urls in databases.items():
                    root = scratch / (database.replace(" ", "") + label)
                    for name, seconds in child(tree, urls[label], root, args.runs, args.repeats,
                                               only=args.only).items():
                        times.setdefault((database, name, label), []).append(seconds)
        for database in databases:
            for name in (name for name in listings(args.runs) if args.only in name):
                a, b = (statistics.median(times[(database, name, label)]) for label in "AB")
                ratios = [x / y for x, y in zip(times[(database, name, "A")], times[(database, name, "B")])]
                rows.append([f"{database} {args.runs:,}: {name}", f"{a * 1e3:.2f}", f"{b * 1e3:.2f}",
                             f"{a / b:.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"])
    print_table(rows, header=["listing", "A ms", "B ms", "A/B", "A/B per round"])
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
