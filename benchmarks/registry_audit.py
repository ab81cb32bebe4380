"""The audit log against issue #18's targets:

    python benchmarks/registry_audit.py                     # 100k events (quick; SQLite in a temporary root)
    python benchmarks/registry_audit.py --events 1000000    # the issue's size: filtered over 1M events <= 200 ms
    python benchmarks/registry_audit.py --url postgresql://...   # a PostgreSQL store (an empty database)

(a) one page (100 events) of the audit log filtered by actor, action, project, target prefix,
time range and combinations, first and deep pages (a cursor), over ``--events`` events of 200
users, 40 actions and 500 projects spread over 30 days; (b) writing one audit event and emitting
its event to the outbox (``events.emit``) in one transaction, what a mutation adds: p99 <= 20 ms
with the alias move itself (the registry's part, not measured here).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.report import print_table  # noqa: E402

from tracklet.server import events  # noqa: E402
from tracklet.server.audit import AuditLog, AuditQuery  # noqa: E402
from tracklet.server.schema import audit_events  # noqa: E402
from tracklet.store import Store  # noqa: E402

DAYS = 30
START = 1.8e9
ACTORS = [f"user{i}" for i in range(200)]
ACTIONS = [f"action_{i}" for i in range(40)]
PROJECTS = [f"project{i}" for i in range(500)]


def fill(engine: sa.Engine, count: int, seed: int = 0) -> None:
    """``count`` events, in time order, in chunks of 50k (executemany)."""
    rng = random.Random(seed)
    step = DAYS * 86400 / count
    chunk: list[dict] = []
    with engine.begin() as connection:
        for n in range(count):
            project = rng.choice(PROJECTS)
            actor = ACTORS[min(int(rng.paretovariate(1.2)) - 1, len(ACTORS) - 1)]  # a few busy users
            action = rng.choice(ACTIONS)
            chunk.append({"time": START + n * step, "actor": actor, "key_id": f"k{ACTORS.index(actor)}",
                          "action": action, "method": "PUT", "target": f"runs/{project}/r{n % 997}/log",
                          "project": project, "client": "10.0.0.1", "status": 200, "outcome": "ok", "detail": None})
            if len(chunk) == 50_000:
                connection.execute(audit_events.insert(), chunk)
                chunk = []
        if chunk:
            connection.execute(audit_events.insert(), chunk)
        connection.execute(sa.text("ANALYZE"))


def timed(function, repeat: int) -> tuple[float, float]:
    """(median, max) milliseconds of ``repeat`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--url", default=None, help="a store URL (default: SQLite in a temporary data root)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.url or f"sqlite:///{Path(tmp) / 'store.sqlite'}", root=Path(tmp))
        log = AuditLog(store.engine)
        started = time.perf_counter()
        fill(store.engine, args.events)
        print(f"{args.events:,} audit events written in {time.perf_counter() - started:.1f} s "
              f"({store.engine.dialect.name})")
        day = 86400
        middle = START + DAYS * day / 2
        deep = log.query(AuditQuery(newest_first=False, limit=1, after=args.events // 2))[0]["id"]
        queries = {
            "actor (busy user)": AuditQuery(actor="user0"),
            "actor (rare user)": AuditQuery(actor="user199"),
            "action": AuditQuery(action="action_7"),
            "project": AuditQuery(project="project42"),
            "target prefix": AuditQuery(target_prefix="runs/project42/"),
            "target prefix (broad)": AuditQuery(target_prefix="runs/"),
            "time range (1 day)": AuditQuery(since=middle, until=middle + day),
            "actor + 1 day": AuditQuery(actor="user3", since=middle, until=middle + day),
            "actor + action + 1 day": AuditQuery(actor="user1", action="action_3", since=middle, until=middle + day),
            "project + action": AuditQuery(project="project7", action="action_9"),
            "no match (unknown actor)": AuditQuery(actor="nobody"),
            "actor, deep page (cursor)": AuditQuery(actor="user0", after=deep),
            "newest first, actor": AuditQuery(actor="user5", newest_first=True),
            "newest first, time range": AuditQuery(since=middle, until=middle + day, newest_first=True),
        }
        rows = []
        worst = 0.0
        for name, query in queries.items():
            found = len(log.query(query))
            median, most = timed(lambda query=query: log.query(query), args.repeat)
            worst = max(worst, most)
            rows.append((name, f"{found}", f"{median:.2f}", f"{most:.2f}"))
        print_table(rows, ("filter (a page of 100)", "events", "median ms", "max ms"))
        print(f"worst filtered page: {worst:.1f} ms (target <= 200 ms over 1M events)")

        def write_one() -> None:
            with store.engine.begin() as connection:
                connection.execute(audit_events.insert().values(
                    time=time.time(), actor="user1", key_id="k1", action="move_alias", method="PUT",
                    target="registry/models/mnist:production", project="registry", client="10.0.0.1", status=200,
                    outcome="ok"))
                events.emit(connection, "alias.moved", "registry/mnist:production",
                            {"name": "mnist", "alias": "production", "version": 3, "previous": 2}, project="registry",
                            actor="user1")

        times = []
        for _ in range(max(200, args.repeat * 10)):
            started = time.perf_counter()
            write_one()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"audit event + outbox event in one transaction: median {statistics.median(times):.2f} ms, "
              f"p99 {p99:.2f} ms (target, with the alias move: <= 20 ms p99)")
        store.close()


if __name__ == "__main__":
    main()
