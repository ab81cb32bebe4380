"""Listing queries keep their plans when the database has planner statistics.

SQLite has none until someone runs ``ANALYZE`` (a user, an ops tool, ``PRAGMA optimize``);
PostgreSQL always has them (autovacuum). With them, a planner may pick another plan than without,
and the listing the dashboard shows first, a project's newest runs, went from reading a page of
the index to sorting every run of the project (docs/performance.md, session 24).

What a query costs is measured without a clock: on SQLite, the virtual-machine instructions it
runs (a progress handler called on each); on PostgreSQL, the rows its plan reads from ``runs``
(``EXPLAIN ANALYZE``). A page of 50 must cost about the same in a project of 3,000 runs as in one
of 300, with statistics gathered at each size: a plan that sorts or scans every run costs ten
times more at ten times the runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from tracklet.server import run_creators as creators
from tracklet.server import schema as server_schema
from tracklet.store import Store
from tracklet.store.schema import projects, runs

SMALL, LARGE = 300, 3000
USERS = 4
RUNNING = 3  # the oldest runs are still running (the dashboard's poll asks for them)


def fill(store: Store, count: int, *, users: bool) -> None:
    """``count`` runs of project ``p`` (the RUNNING oldest running, the rest finished), created one
    second apart; with ``users``, each
    created by one of USERS users (``run_creators``). One project, as on a new server: it is where
    SQLite's statistics mislead it (``projects`` of one row is scanned, not searched by name)."""
    with store.engine.begin() as connection:
        for name, size in (("p", count),):
            project_id = connection.execute(projects.insert().values(name=name).returning(projects.c.id)).scalar_one()
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i:06d}", "name": f"run {i}",
                 "state": "running" if i < RUNNING else "finished",
                 "tags": [], "config": {"lr": i / count}, "summary": {}, "keys": [], "created_at": float(i),
                 "log_path": f"{name}/r{i:06d}.log", "metadata": {}} for i in range(size)])
            if users:
                connection.execute(server_schema.run_creators.insert(), [
                    {"project": name, "run_id": f"r{i:06d}", "user_id": i % USERS + 1, "user_name": f"u{i % USERS}",
                     "created_at": 0.0}
                    for i in range(size)])
        if store.engine.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")


def unsorted_plan(store: Store, statement: str, parameters: Any) -> list[str]:
    """The plan's steps of ``statement`` as the driver ran it, checked to sort nothing itself (no
    temporary b-tree on SQLite, no Sort node on PostgreSQL): the index gives the order."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.engine.dialect.name == "sqlite":
            plan = [row[3] for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()]
            assert not any("TEMP B-TREE" in step for step in plan), plan
        else:
            cursor.execute("EXPLAIN (FORMAT TEXT) " + statement, parameters)
            plan = [row[0] for row in cursor.fetchall()]
            assert not any("Sort" in step for step in plan), plan
    finally:
        raw.close()
    return plan


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``engine`` runs meanwhile, with their parameters as the driver got them (not a
    transaction's start: ``store._one_snapshot``'s BEGIN or SET TRANSACTION; nor a filtered listing's
    ``SET LOCAL statement_timeout``, which reads nothing: Store.filter_timeout)."""
    seen: list[tuple[str, Any]] = []

    def record(connection, cursor, statement, parameters, context, executemany) -> None:
        if not statement.startswith(("BEGIN", "SET TRANSACTION", "SET LOCAL statement_timeout")):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def cost(engine: sa.Engine, statement: str, parameters: Any) -> int:
    """What running ``statement`` costs, in units that follow the rows its plan goes through: SQLite's
    VM instructions, PostgreSQL's rows read from the runs and their sort values (benchmarks use it too)."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            raw.driver_connection.set_progress_handler(count, 1)
            try:
                raw.cursor().execute(statement, parameters).fetchall()
            finally:
                raw.driver_connection.set_progress_handler(None, 1)
            return steps[0]
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        (plan,) = cursor.fetchone()
        return _rows_read(plan if isinstance(plan, list) else json.loads(plan), ("runs", "run_sort_values"))
    finally:
        raw.close()


def _rows_read(nodes: list[dict[str, Any]], tables: tuple[str, ...]) -> int:
    read = 0
    for node in nodes:
        plan = node.get("Plan", node)
        if plan.get("Relation Name") in tables:
            read += (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
        read += _rows_read(plan.get("Plans", []), tables)
    return read


def listing_cost(store: Store, **kwargs: Any) -> tuple[int, list[dict[str, Any]]]:
    """The cost of ``store.runs(...)``'s statements (its query of runs, and the count that may
    choose its plan first), and its rows."""
    with statements(store.engine) as seen:
        rows = store.runs(**kwargs)
    return sum(cost(store.engine, statement, parameters) for statement, parameters in seen), rows


def _by_name(count: int) -> list[str]:
    return [f"r{i:06d}" for i in sorted(range(count), key=lambda i: f"run {i}")]


PAGES = {
    "newest 50": dict(limit=50),
    "newest 50, second page": dict(limit=50, offset=50),
    "newest 50 finished": dict(limit=50, filter="state = 'finished'"),
    "newest 50 of a config range": dict(limit=50, filter="config.lr >= 0"),
    # Each part has its index, but nearly every run is finished: the union of the parts' runs
    # would read them all (Store._alternatives_are_few), the newest-first order reads 50.
    "newest 50 finished or new": dict(limit=50, filter='state = "finished" or created > 100000'),
    "50 by -created": dict(limit=50, order_by="-created"),
    "50 by created": dict(limit=50, order_by="created"),
    "50 by name": dict(limit=50, order_by="name"),
    "50 by -name": dict(limit=50, order_by="-name"),
    "50 by state": dict(limit=50, order_by="state"),
    "50 by -state": dict(limit=50, order_by="-state"),
    # Read in the order of ix_run_sort_values_order (store migration 0015): before it, both planners
    # read every run of the project and sorted them by the JSON value.
    "50 by config.lr": dict(limit=50, order_by="config.lr"),
    "50 by -config.lr": dict(limit=50, order_by="-config.lr"),
    "50 by config.lr, second page": dict(limit=50, offset=50, order_by="config.lr"),
    "50 by -config.lr, finished": dict(limit=50, order_by="-config.lr", filter="state = 'finished'"),
    "50 by config.lr of a config range": dict(limit=50, order_by="config.lr", filter="config.lr >= 0.5"),
}
# The runs each page lists first, by the runs in the project (None: any of the ties).
ORDERS = {
    "50 by created": lambda count: [f"r{i:06d}" for i in range(count)],
    "50 by config.lr": lambda count: [f"r{i:06d}" for i in range(count)],
    "50 by -config.lr": lambda count: [f"r{i:06d}" for i in range(count - 1, -1, -1)],
    "50 by config.lr, second page": lambda count: [f"r{i:06d}" for i in range(count)],
    "50 by config.lr of a config range": lambda count: [f"r{i:06d}" for i in range(count // 2, count)],
    "50 by name": _by_name,
    "50 by -name": lambda count: _by_name(count)[::-1],
}
SERVER_PAGES = {
    "newest 50 with their users": dict(limit=50, fields=("run_id", "name", "state", "user")),
    "newest 50 of one user": dict(limit=10, fields=("run_id", "name", "state", "user"), filter="user = 'u1'"),
    # The page is numbered by a window over the sort (Store.runs), which PostgreSQL 15 read to the
    # end of the ties of its last run (every finished run) unless its frame is ROWS.
    "50 by -state with their users": dict(limit=50, order_by="-state", fields=("run_id", "name", "state", "user")),
    # Read in the order of ix_run_creators_project_user_run (server migration s0020): before it, both
    # planners joined every run to its creator and sorted them all (SQLite 11,390 / 86,990 VM
    # instructions, PostgreSQL 300 / 3,000 runs read at 300 / 3,000 runs).
    "50 by user": dict(limit=50, order_by="user", fields=("run_id", "name", "state", "user")),
    "50 by -user": dict(limit=50, order_by="-user", fields=("run_id", "name", "state", "user")),
    "50 by user, second page": dict(limit=50, offset=50, order_by="user", fields=("run_id", "name", "state", "user")),
    "50 by -config.lr with their users": dict(limit=50, order_by="-config.lr", fields=("run_id", "name", "state", "user")),
    "50 by config.lr of one user": dict(limit=10, order_by="config.lr", fields=("run_id", "user"), filter="user = 'u1'"),
}


def _store(url: str, root, count: int, *, server: bool) -> Store:
    store = Store(url, root=root)
    if server:
        server_schema.migrate(store.engine)
        store.project_joined_fields = creators.joined_fields
        with store.engine.begin() as connection:
            connection.execute(server_schema.users.insert(), [
                {"id": i + 1, "name": f"u{i}", "is_admin": False, "created_at": 0.0, "disabled": False}
                for i in range(USERS)])
    fill(store, count, users=server)
    return store


@pytest.fixture
def stores(store_url, fresh_url, tmp_path):
    """``stores(server)``: a store of SMALL runs and one of LARGE (``store_url``'s backend), each
    with planner statistics; ``server``: with a server's tables and its verified ``user`` field."""
    made: list[Store] = []

    def make(server: bool) -> tuple[Store, Store]:
        small = _store(store_url, tmp_path / "small", SMALL, server=server)
        large = _store(fresh_url(tmp_path / "large"), tmp_path / "large", LARGE, server=server)
        made.extend((small, large))
        return small, large

    yield make
    for store in made:
        store.close()


@pytest.mark.parametrize("server", [False, True], ids=["store", "server"])
def test_a_page_of_runs_costs_the_same_at_ten_times_the_runs(stores, server):
    small, large = stores(server)
    pages = {**PAGES, **SERVER_PAGES} if server else PAGES
    for name, kwargs in pages.items():
        small_cost, small_rows = listing_cost(small, project="p", **kwargs)
        large_cost, large_rows = listing_cost(large, project="p", **kwargs)
        limit, offset = kwargs["limit"], kwargs.get("offset", 0)
        assert len(large_rows) == limit, name
        listed = [row["run_id"] for row in large_rows]
        if name in ORDERS:
            assert listed == ORDERS[name](LARGE)[offset:offset + limit], name
        elif "state" in kwargs.get("order_by", ""):
            states = [row["state"] for row in large_rows]
            assert states == sorted(states, reverse=kwargs["order_by"].startswith("-")), name
        elif "filter" not in kwargs and "order_by" not in kwargs:  # newest first, ties (none here) by run id
            assert listed == [f"r{i:06d}" for i in range(LARGE - 1 - offset, LARGE - 1 - offset - limit, -1)], name
        if "user" in kwargs.get("fields", ()):
            assert all(row["user"] for row in large_rows), name
        if kwargs.get("order_by", "").lstrip("-").startswith("user"):  # by name, ties by run id
            keys = [(row["user"], row["run_id"]) for row in store_rows(large, kwargs)]
            assert keys == sorted(keys, reverse=kwargs["order_by"].startswith("-")), name
        assert large_cost < 2 * small_cost, f"{name}: {large_cost} at {LARGE} runs, {small_cost} at {SMALL}"


def store_rows(store: Store, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The page ``kwargs`` asks for, with each run's user."""
    return store.runs("p", **{**kwargs, "fields": ("run_id", "user")})


@pytest.mark.parametrize("order_by", ["user", "-user"])
def test_a_page_by_user_reads_the_creators_index_in_its_order(store_url, tmp_path, order_by):
    """A server's page of runs sorted by their creator reads ``ix_run_creators_project_user_run``
    (project, user_name, run_id) in its order and looks up each run it lists (server migration
    s0020), with statistics gathered: no sort of the project's runs (SQLite: no temp b-tree;
    PostgreSQL: no Sort node; the costs above). A second sort key (``user,name``) sorts each
    user's runs: those of the page's users, not the project's."""
    store = _store(store_url, tmp_path, SMALL, server=True)
    try:
        with statements(store.engine) as seen:
            rows = store.runs("p", limit=50, order_by=order_by, fields=("run_id", "user"))
        assert len(rows) == 50 and len(seen) == 1  # every run has a creator: one statement
        statement, parameters = seen[0]
        plan = unsorted_plan(store, statement, parameters)
        assert any("ix_run_creators_project_user_run" in step for step in plan), plan
    finally:
        store.close()


def test_the_newest_traces_are_grouped_in_the_index_order_with_statistics(tmp_path):
    """The traces list groups a project's spans by trace: read in the order of the index on
    (project_id, trace_id, span_id), the grouping needs no sort. Through a join of ``projects``,
    SQLite with statistics read them through another index and sorted every span to group them
    (1.3-1.7 times slower at 200,000 spans: docs/performance.md, session 24)."""
    from tracklet.store.spans import spans, traces

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    try:
        with store.engine.begin() as connection:
            project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
            connection.execute(spans.insert(), [
                {"project_id": project_id, "run_id": "", "source": "otlp", "trace_id": f"{i:032x}",
                 "span_id": f"{i * 3 + j:016x}", "name": "call", "kind": "internal", "start_ns": i * 1000 + j,
                 "end_ns": i * 1000 + j + 1, "duration_ms": 0.0, "status": "ok", "attributes": {}, "events": [],
                 "links": []} for i in range(300) for j in range(3)])
            connection.exec_driver_sql("ANALYZE")
        with statements(store.engine) as seen:
            found = traces(store.engine, "p", limit=5)
        assert [trace["trace_id"] for trace in found] == [f"{i:032x}" for i in range(299, 294, -1)]
        statement, parameters = seen[0]
        with store.engine.connect() as connection:
            plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        assert not any("FOR GROUP BY" in step for step in plan), plan
        assert any("uq_spans_project_trace_span" in step for step in plan), plan
    finally:
        store.close()


@pytest.mark.parametrize("server", [False, True], ids=["store", "server"])
def test_the_dashboards_poll_costs_the_same_at_ten_times_the_runs(stores, server):
    """Every 2 s the dashboard asks for the runs that are running or newer than the newest it has
    (web/src/pages/project.ts), optionally within the user's filter. As one ``or`` a planner read
    every run of the project (30-95 ms at 50,000 runs); each part by its own index, it reads the
    few runs of the answer."""
    small, large = stores(server)
    fields = ("run_id", "name", "state", "user") if server else ("run_id", "name", "state")
    for base in ("", "config.lr >= 0 and "):
        costs = []
        for store, count in ((small, SMALL), (large, LARGE)):
            found_cost, rows = listing_cost(store, project="p", fields=fields,
                                            filter=f'{base}(state = "running" or created > {count - 3})')
            assert [row["run_id"] for row in rows] == [f"r{i:06d}" for i in (count - 1, count - 2)] + [
                f"r{i:06d}" for i in range(RUNNING - 1, -1, -1)], base
            costs.append(found_cost)
        assert costs[1] < 2 * costs[0], f"{base}poll: {costs[1]} at {LARGE} runs, {costs[0]} at {SMALL}"


def test_runs_without_a_creation_time_come_last_newest_and_oldest_first(store_url, tmp_path):
    """Newest first (the default order, and ``-created``) and oldest first (``created``) put a run
    that has no creation time yet after every run that has one, on SQLite and PostgreSQL alike
    (newest first put it first on PostgreSQL before session 24; oldest first reads
    ``ix_runs_project_created`` in its order on both: the page tests above)."""
    store = Store(store_url, root=tmp_path)
    try:
        fill(store, 5, users=False)
        with store.engine.begin() as connection:
            connection.execute(runs.update().where(runs.c.run_id == "r000003").values(created_at=None))
        expected = ["r000004", "r000002", "r000001", "r000000", "r000003"]
        assert [row["run_id"] for row in store.runs("p")] == expected
        assert [row["run_id"] for row in store.runs("p", order_by="-created")] == expected
        assert [row["run_id"] for row in store.runs("p", limit=2, offset=3)] == expected[3:]
        oldest = ["r000000", "r000001", "r000002", "r000004", "r000003"]
        assert [row["run_id"] for row in store.runs("p", order_by="created")] == oldest
        assert [row["run_id"] for row in store.runs("p", order_by="created", limit=2, offset=3)] == oldest[3:]
    finally:
        store.close()


@pytest.mark.parametrize("text", [
    'state = "running" or created > 297',
    'config.lr < 0.5 and (state in ["running", "crashed"] or created >= 290)',
    '(state = "running" and config.lr < 0.001) or created < 2 or created = 150',
    'state = "finished" or created > 297',
    'state = "running" or created > -7d',
])
def test_a_filter_read_by_its_indexes_lists_what_the_plain_filter_lists(store_url, tmp_path, text):
    """An ``or`` of indexed conditions is answered as the union of each part's runs
    (``filters.indexed_alternatives``); the same filter under ``not not``, which the store reads
    as one condition, lists the same runs in the same order, page by page."""
    store = Store(store_url, root=tmp_path)
    try:
        fill(store, SMALL, users=False)
        with store.engine.begin() as connection:
            connection.execute(runs.update().where(runs.c.run_id.in_(["r000150", "r000296"])).values(created_at=None))
            connection.execute(runs.update().where(runs.c.run_id == "r000298").values(deleted=True))
        for kwargs in ({}, dict(limit=3, offset=1), dict(order_by="name")):
            listed = store.runs("p", filter=text, **kwargs)
            assert listed == store.runs("p", filter=f"not not ({text})", **kwargs), kwargs
            assert listed or kwargs
    finally:
        store.close()


def test_a_store_at_0012_gains_the_name_index_and_loses_it_migrated_down(store_url, tmp_path):
    """Migration 0013 adds ``ix_runs_project_name`` to a store that has runs, and a page by name
    then reads the page's rows, not the project's (the page tests above: old code 6-10x at ten
    times the runs); migrated back to 0012 the index goes and the listing answers the same."""
    from alembic import command
    from alembic.config import Config

    from conftest import store_at_revision
    from tracklet.store.engine import MIGRATIONS

    def indexes(engine: sa.Engine) -> set[str]:
        return {index["name"] for index in sa.inspect(engine).get_indexes("runs")}

    engine = store_at_revision(store_url, "0012")
    assert "ix_runs_project_name" not in indexes(engine)
    with engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"r{i:06d}", "name": f"run {i}", "state": "finished", "tags": [],
             "config": {}, "summary": {}, "keys": [], "created_at": float(i), "log_path": f"p/r{i:06d}.log",
             "metadata": {}} for i in range(SMALL)])
    engine.dispose()
    store = Store(store_url, root=tmp_path)  # migrates to the head
    try:
        assert "ix_runs_project_name" in indexes(store.engine)
        by_name = [row["run_id"] for row in store.runs("p", order_by="-name", limit=5)]
        assert by_name == _by_name(SMALL)[::-1][:5]
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0012")
        assert "ix_runs_project_name" not in indexes(store.engine)
        assert [row["run_id"] for row in store.runs("p", order_by="-name", limit=5)] == by_name
    finally:
        store.close()


def test_a_server_database_at_s0019_gains_the_creators_names_and_their_index(store_url, tmp_path):
    """Server migration s0020 copies each creator's name into ``run_creators`` and indexes
    (project, user_name, run_id): a page by user of runs credited before it lists them by name;
    migrated back to s0019, the column and index go."""
    from alembic import command
    from alembic.config import Config

    store = Store(store_url, root=tmp_path)
    try:
        config = Config()
        config.set_main_option("script_location", str(server_schema.MIGRATIONS))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "s0019")
        with store.engine.begin() as connection:
            project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i:03d}", "name": f"run {i}", "state": "finished",
                 "tags": [], "config": {}, "summary": {}, "keys": [], "created_at": float(i),
                 "log_path": f"p/r{i:03d}.log", "metadata": {}} for i in range(30)])
            for n, name in enumerate(("zed", "amy", "bob")):
                connection.exec_driver_sql(
                    "INSERT INTO users (id, name, is_admin, created_at, disabled) VALUES "
                    f"({n + 1}, '{name}', false, 0, false)")
            for i in range(27):  # the last three runs have no creator
                connection.exec_driver_sql("INSERT INTO run_creators (project, run_id, user_id, created_at) "
                                           f"VALUES ('p', 'r{i:03d}', {i % 3 + 1}, 0)")
        server_schema.migrate(store.engine)  # to the head
        indexes = {index["name"] for index in sa.inspect(store.engine).get_indexes("run_creators")}
        assert "ix_run_creators_project_user_run" in indexes
        store.project_joined_fields = creators.joined_fields
        listed = [(row["user"], row["run_id"]) for row in store.runs("p", order_by="user", fields=("user",))]
        names = {0: "zed", 1: "amy", 2: "bob"}
        assert listed == sorted((names[i % 3], f"r{i:03d}") for i in range(27)) + [("", f"r{i:03d}") for i in (27, 28, 29)]
        page = store.runs("p", order_by="-user", limit=5, offset=2, fields=("user",))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "s0019")
        assert "user_name" not in {column["name"] for column in sa.inspect(store.engine).get_columns("run_creators")}
    finally:
        store.close()
    assert [row["user"] for row in page] == ["zed"] * 5
