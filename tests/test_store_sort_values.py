"""Pages sorted by a config or summary key are read through ``run_sort_values`` (store migration
0015, ``tracklet/store/sort_values.py``) in exactly the order the JSON sort of
``filters.compile_sort`` gives: numbers numerically, then strings, then everything else (booleans,
nulls, objects, lists, missing keys), ties by run id in the last key's direction, both ways, with
other sort keys, filters and pages by offset. Each listing here is compared with the same listing
read as before (``sort_path`` answering None), on SQLite and PostgreSQL; the table itself is
compared with what its definition says it holds, after inserts, updates and deletes of runs and
after the migration fills it from a store that had runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from test_store_plans import SMALL, _store, statements, unsorted_plan
from tracklet.server import run_creators as creators
from tracklet.server import schema as server_schema
from tracklet.store import Store
from tracklet.store import sort_values
from tracklet.store.schema import projects, runs
from tracklet.store.sort_values import MAX_CHARS, MAX_DEPTH, path_text, sort_values as table

# Values of the key ``x`` (and nested ``n.x``, and the one key ``"d.x"``), chosen for their order:
# ints and floats that tie, negatives, ints past 2**53 and 2**63, strings that tie, unicode, an
# empty string, numbers as strings, booleans, null, containers, and (as the store keeps them) NaN.
VALUES: list[Any] = [3, 1.5, 1.5, -2, 0, -0.0, 2**53 + 1, 2**70, -(2**64), 1e300, 5e-324, "b", "a", "a", "",
                     "é", "Zed", "10", "1.5", True, False, None, {"y": 1}, [1, 2], math.nan, "a.b", "x\\y"]
SORTS = ["config.x", "-config.x", "-summary.x", "config.n.x", "-config.d.x", '-config."ké y"', "config.x,-name",
         "-config.x,created", "-summary.x,config.x", "config.missing"]
FILTERS = ["", 'state = "finished"', "config.x < 2 and config.x > -5", 'config.x > "a"']
# Whole; a page inside the numbers; pages across the numbers, the strings and the rest.
PAGES = [dict(), dict(limit=7, offset=5), dict(limit=10, offset=37), dict(limit=9, offset=70)]


def _config(rng: random.Random, i: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if i % 9:
        config["x"] = rng.choice(VALUES)
    if i % 4:
        config["n"] = {"x": rng.choice(VALUES)} if i % 3 else rng.choice(VALUES)
    if i % 5 == 0:
        config["d.x"] = rng.choice(VALUES)  # the dotted key alone: config.d.x finds it (no run nests d.x)
    config["ké y"] = rng.choice(VALUES)
    return config


def fill(store: Store, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        other = connection.execute(projects.insert().values(name="q").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id if i % 13 else other, "run_id": f"r{(i * 37) % 1000:03d}",
             "name": f"run {i % 4}", "state": ("finished", "crashed", "running")[i % 3], "tags": [],
             "config": _jsonable(_config(rng, i)), "summary": _jsonable({"x": rng.choice(VALUES)} if i % 6 else {}),
             "keys": [], "created_at": float(i % 5), "log_path": f"p/{i}.log", "metadata": {}}
            for i in range(count)])


def _jsonable(value: Any) -> Any:
    """As the indexer stores values (``ingest.json_safe``): NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


@contextmanager
def as_before() -> Iterator[None]:
    """Listings read as before 0015: the JSON sort over every run of the project."""
    original = sort_values.sort_path
    sort_values.sort_path = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        sort_values.sort_path = original


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request, tmp_path_factory):
    """A store of 130 runs in two projects with VALUES under every key, on each backend, and the
    same with a server's verified ``user`` (module-scoped: read-only tests)."""
    root = tmp_path_factory.mktemp("sorted")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'store.sqlite'}"
    else:
        from pgcluster import create_database

        url = create_database(request.getfixturevalue("postgres_url"), f"sorted{id(root) % 10**9}")
    store = Store(url, root=root)
    # No time limit: these tests compare orders, and under a full suite's load a filtered, sorted SQLite
    # listing of the 130 runs passed the default 5 s once (QueryTimeout). The limit has tests of its own
    # (test_store_filters.py).
    store.filter_timeout = None
    fill(store, 130)
    yield store
    store.close()


@pytest.mark.parametrize("order_by", SORTS)
def test_a_page_by_a_json_key_lists_what_the_json_sort_lists(filled, order_by):
    for text in FILTERS:
        for page in PAGES:
            kwargs = dict(order_by=order_by, filter=text or None, fields=("run_id", "config", "summary"), **page)
            found = filled.runs("p", **kwargs)
            with as_before():
                expected = filled.runs("p", **kwargs)
            assert found == expected, (text, page)


def _kind(row: dict[str, Any], order_by: str) -> int:
    """Which part of a listing sorted by ``order_by`` (its first key: config or summary) ``row``
    is in: 0 a number, 1 a string, 2 anything else or missing."""
    source, *keys = order_by.split(",")[0].lstrip("-").split(".")
    value: Any = row[source]
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        return 1
    return 0 if isinstance(value, (int, float)) and not isinstance(value, bool) else 2


@pytest.mark.parametrize("reading", ["as_chosen", "in_parts"])
def test_pages_at_every_part_boundary_list_the_reference_order(filled, monkeypatch, reading):
    """Pages starting just before, at and just after each boundary of the parts (the numbers, the
    strings, the rest, every run), and past every run, of three rows (across it) or to the end, list
    the reference order (the whole listing of the JSON sort) sliced at the page: as the store
    chooses to read each (on PostgreSQL a page reaching past ``JSON_SORT_PAST`` of the project's
    runs is read as the JSON sort), and with every page read in parts."""
    from tracklet.store import store as store_module

    if reading == "in_parts":
        if filled.engine.dialect.name == "sqlite":
            pytest.skip("SQLite reads every page before the runs' end in parts already")
        monkeypatch.setattr(store_module, "JSON_SORT_PAST", 2.0)  # never reached: parts up to the end
    fields = ("run_id", "config", "summary")
    for order_by in ("config.x", "-config.x", "-summary.x,config.x"):
        for text in (None, 'state = "finished"'):
            with as_before():
                reference = filled.runs("p", order_by=order_by, filter=text, fields=fields)
            kinds = [_kind(row, order_by) for row in reference]
            numbers, strings = kinds.count(0), kinds.count(1)
            assert numbers and strings and kinds.count(2)  # three parts, each of several runs
            boundaries = (numbers, numbers + strings, len(reference))
            offsets = sorted({0, len(reference) + 3} | {b + d for b in boundaries for d in (-1, 0, 1)})
            if reading == "in_parts":  # the pages PostgreSQL reads as the JSON sort (nearer ones: in parts)
                offsets = [offset for offset in offsets if offset >= numbers - 1]
            for offset in offsets:
                for limit in (3, None) if reading == "as_chosen" else (3,):
                    found = filled.runs("p", order_by=order_by, filter=text, fields=fields, offset=offset, limit=limit)
                    end = None if limit is None else offset + limit
                    assert found == reference[offset:end], (order_by, text, offset, limit)

def test_the_table_serves_each_key_it_can_and_only_those(filled):
    """``sort_path``: the path read for a key, or None where the table can't give the JSON sort's
    order (then the listing is read as before)."""
    from tracklet.store.filters import parse_sort
    from tracklet.store.schema import project_id_of

    def path(order_by: str) -> str | None:
        with filled.engine.connect() as connection:
            return sort_values.sort_path(connection, project_id_of("p"), parse_sort(order_by)[0][0])

    assert path("config.x") == "x"
    assert path("config.n.x") == "n.x"
    assert path("config.d.x") == "d\\.x"  # no run nests it: the one key "d.x"
    assert path('config."d.x"') == "d\\.x"
    assert path('config."ké y"') == "ké y"
    assert path("config.missing") == "missing"  # no run has it: every run is "missing", by run id
    assert path("config.a.b.c.d.e.f.g") is None  # deeper than MAX_DEPTH
    assert path("config." + ".".join(["k"] * MAX_DEPTH)) is not None
    assert path(f"config.{'k' * (MAX_CHARS + 1)}") is None
    with filled.engine.begin() as connection:
        project_id = connection.execute(sa.select(projects.c.id).where(projects.c.name == "p")).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": "long", "name": "long", "state": "finished", "tags": [],
             "config": {"text": "t" * (MAX_CHARS + 1), "n.x": 1}, "summary": {}, "keys": [],
             "log_path": "p/long.log", "metadata": {}}])
    try:
        assert path("config.text") is None  # a string too long for the index
        assert path("config.n.x") is None  # nested in some runs, the one key "n.x" in this one
        for order_by in ("config.text", "-config.n.x"):
            found = filled.runs("p", order_by=order_by, limit=20)
            with as_before():
                assert found == filled.runs("p", order_by=order_by, limit=20)
    finally:
        with filled.engine.begin() as connection:
            connection.execute(runs.delete().where(runs.c.run_id == "long"))


def _expected_rows(engine: sa.Engine) -> set[tuple[Any, ...]]:
    """What ``run_sort_values`` holds by its definition, computed here from the runs' JSON."""
    found = set()
    with engine.connect() as connection:
        for row in connection.execute(sa.select(runs.c.id, runs.c.project_id, runs.c.run_id, runs.c.config,
                                                runs.c.summary)):
            for source, document in ((0, row.config), (1, row.summary)):
                for keys, value in _leaves(document, ()):
                    path = path_text(keys)
                    if len(path) > MAX_CHARS:
                        continue
                    if isinstance(value, str):
                        rank, num, text = (1, None, value) if len(value) <= MAX_CHARS else (2, None, None)
                    else:
                        rank, num, text = 0, _double(value), None
                    found.add((row.id, source, path, row.project_id, row.run_id, rank, num, text))
    return found


def _double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _leaves(document: Any, keys: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if not isinstance(document, dict) or len(keys) >= MAX_DEPTH:
        return
    for key, value in document.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*keys, key))
        elif isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            yield (*keys, key), value


def _stored(engine: sa.Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(sa.select(
            table.c.run_pk, table.c.source, table.c.path, table.c.project_id, table.c.run_id, table.c.rank,
            table.c.num, table.c.text))}


def test_the_table_follows_every_write_of_a_run(store_url, tmp_path):
    """Inserted, updated (values changed, added, removed, retyped; the project or id changed) and
    deleted runs: the table holds exactly each run's numbers and strings, nested to MAX_DEPTH keys,
    under MAX_CHARS, with keys that need escaping (dots, backslashes, quotes, unicode, NUL)."""
    store = Store(store_url, root=tmp_path)
    try:
        deep = {"a": {"b": {"c": {"d": {"e": {"f": 1, "g": {"too": "deep"}}}}}}}
        odd = {"a.b": 1, "a\\.b": 2, "a": {"b": 3}, 'q"k': "v", "é\u00a0k": "ü", "nul\x00k": "n\x00v", "": 4,
               "big": 2**80, "huge": 10**400, "sub": 1e-320, "long": "L" * (MAX_CHARS + 1),
               "k" * (MAX_CHARS + 1): 1, "list": [1, {"in": 2}], "t": True, "n": None}
        with store.engine.begin() as connection:
            project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
            other = connection.execute(projects.insert().values(name="q").returning(projects.c.id)).scalar_one()
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i}", "name": "", "state": "finished", "tags": [],
                 "config": [deep, odd, {}, {"lr": 0.1}][i % 4], "summary": {"loss": i / 3, "acc": "high"},
                 "keys": [], "log_path": f"p/{i}.log", "metadata": {}} for i in range(8)])
        assert _stored(store.engine) == _expected_rows(store.engine)
        with store.engine.begin() as connection:
            # Numbers no double holds, as JSON text (Python's floats can't spell them).
            connection.exec_driver_sql("UPDATE runs SET config = '{\"tiny\": -1e-400, \"over\": 2e308}' "
                                       "WHERE run_id = 'r7'")
            connection.execute(runs.update().where(runs.c.run_id == "r3").values(config={"lr": "0.1", "new": 2}))
            connection.execute(runs.update().where(runs.c.run_id == "r1").values(
                config={**odd, "a": {"b": "three"}, "t": 1}, summary={"loss": 1.0}))
            connection.execute(runs.update().where(runs.c.run_id == "r2").values(summary={}))
            connection.execute(runs.update().where(runs.c.run_id == "r4").values(project_id=other, run_id="moved"))
            connection.execute(runs.update().where(runs.c.run_id == "r5").values(name="renamed"))  # no JSON change
            connection.execute(runs.delete().where(runs.c.run_id == "r6"))
        assert _stored(store.engine) == _expected_rows(store.engine)
        with store.engine.connect() as connection:
            stored = {(row.path, row.num) for row in connection.execute(sa.select(table).where(table.c.run_id == "r1"))}
            r7 = {(row.path, row.num) for row in connection.execute(
                sa.select(table).where(table.c.run_id == "r7", table.c.source == 0))}
        assert {("huge", math.inf), ("sub", 1e-320), ("big", float(2**80))} <= stored
        assert ("nul\ufffdk", None) in stored and ("a\\.b", 1.0) in stored and ("a\\\\\\.b", 2.0) in stored
        assert r7 == {("tiny", 0.0), ("over", math.inf)}
    finally:
        store.close()


def test_a_run_indexed_from_its_log_keeps_its_latest_summary_values(root, store_url):
    """The indexer writes a live run's summary as it grows (here: three passes): the table holds
    its latest values, and a run gone from the data root (``Store.gc``) takes its rows along."""
    import shutil

    import tracklet
    from conftest import QUIET
    from tracklet.core.layout import RunPaths

    store = Store(store_url, root=root)
    try:
        made = []
        for n in range(3):
            run = tracklet.init(project="p", dir=str(root), config={"lr": 0.1 * (3 - n), "model": {"depth": n}},
                                settings=QUIET)
            for step in range(5):
                run.log({"loss": 1.0 / (step + 1 + n)})
            run.summary["best"] = f"b{n}"
            run.finish()
            made.append(run.id)
            store.index()
            assert _stored(store.engine) == _expected_rows(store.engine)
        listed = [row["run_id"] for row in store.runs("p", order_by="-summary.loss")]
        with as_before():
            assert listed == [row["run_id"] for row in store.runs("p", order_by="-summary.loss")]
        assert [row["run_id"] for row in store.runs("p", order_by="config.lr")] == made[::-1]
        shutil.rmtree(RunPaths(root, "p", made[0]).run_dir)
        assert store.gc() == 1
        assert _stored(store.engine) == _expected_rows(store.engine)
        assert {row[4] for row in _stored(store.engine)} == set(made[1:])
    finally:
        store.close()


@pytest.mark.parametrize("order_by, filter", [("config.lr", None), ("-config.lr", None),
                                             ("-config.lr", 'state = "finished"')])
def test_a_page_by_a_json_key_reads_the_sort_values_index_in_its_order(store_url, tmp_path, order_by, filter):
    """With planner statistics, a page of 50 by ``config.lr`` reads ``ix_run_sort_values_order``
    forwards or backwards and looks each run up: no sort of the project's runs (SQLite: no temp
    b-tree; PostgreSQL: no Sort node). The page costs of ``test_store_plans.py`` check this at ten
    times the runs, and a filter on the key and a server's listed users too (where, at 300 runs,
    PostgreSQL rightly sorts the few runs the filter leaves)."""
    store = _store(store_url, tmp_path, SMALL, server=False)
    try:
        with statements(store.engine) as seen:
            rows = store.runs("p", limit=50, order_by=order_by, filter=filter, fields=("run_id", "config"))
        assert len(rows) == 50
        lrs = [row["config"]["lr"] for row in rows]
        assert lrs == sorted(lrs, reverse=order_by.startswith("-"))
        # (PostgreSQL reads the project's id first, the page's statements name it as a constant)
        read = [seen_one for seen_one in seen if not seen_one[0].startswith("SELECT projects.id")]
        assert len(seen) - len(read) == (store.engine.dialect.name == "postgresql")
        assert len(read) == 2  # the probe of the key's paths, then the page (every run has a number)
        statement, parameters = read[1]
        plan = unsorted_plan(store, statement, parameters)
        assert any("ix_run_sort_values_order" in step for step in plan), plan
    finally:
        store.close()


def test_a_store_with_runs_at_0014_fills_the_table_and_drops_it_migrated_down(store_url, tmp_path):
    """Migration 0015 fills ``run_sort_values`` from the runs a store holds (in batches of run ids:
    here ids far apart, so several batches), as its triggers would have; migrated back to 0014
    the table and triggers go, and listings sort as before."""
    from alembic import command
    from alembic.config import Config

    from conftest import store_at_revision
    from tracklet.store.engine import MIGRATIONS

    engine = store_at_revision(store_url, "0014")
    rng = random.Random(5)
    with engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"id": pk, "project_id": project_id, "run_id": f"r{pk:05d}", "name": "", "state": "finished",
             "tags": [], "config": _jsonable(_config(rng, pk)), "summary": {"x": pk % 7}, "keys": [],
             "log_path": f"p/{pk}.log", "metadata": {}}
            for pk in [*range(1, 40), *range(2000, 2010), *range(7999, 8003)]])
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT setval('runs_id_seq', 9000)")
    engine.dispose()
    store = Store(store_url, root=tmp_path)  # migrates to the head
    try:
        assert _stored(store.engine) == _expected_rows(store.engine)
        assert len(_stored(store.engine)) > 53
        pages = {order_by: _ids(store.runs("p", order_by=order_by, limit=20, offset=3)) for order_by in [*SORTS, "summary.x"]}
        for order_by, page in pages.items():
            with as_before():
                assert page == _ids(store.runs("p", order_by=order_by, limit=20, offset=3)), order_by
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0014")
        assert "run_sort_values" not in sa.inspect(store.engine).get_table_names()
        with store.engine.begin() as connection:  # no trigger left to write the table
            connection.execute(runs.update().where(runs.c.id == 1).values(config={"x": 1}))
        with as_before():
            assert _ids(store.runs("p", order_by="summary.x", limit=20, offset=3)) == pages["summary.x"]
    finally:
        store.close()


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["run_id"] for row in rows]


def _project_of_runs(store: Store, *rows: dict[str, Any]) -> None:
    """Project ``p`` holding a finished run ``r<i>`` per row (``config``, ``summary`` and any other
    field of ``runs`` given in the row), written straight to the tables."""
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"r{i}", "name": "", "state": "finished", "tags": [], "config": {},
             "summary": {}, "keys": [], "log_path": f"p/{i}.log", "metadata": {}, **row} for i, row in enumerate(rows)])


def test_a_server_page_by_a_json_key_lists_the_users(store_url, tmp_path):
    """On a server, a page by a config key with the verified ``user`` listed, or filtered by it,
    lists what the JSON sort lists."""
    store = _store(store_url, tmp_path, 60, server=True)
    try:
        assert store.project_joined_fields is creators.joined_fields and server_schema
        for kwargs in (dict(order_by="-config.lr", limit=7, offset=3, fields=("run_id", "user")),
                       dict(order_by="config.lr", filter="user = 'u1'", limit=5, fields=("run_id", "user")),
                       dict(order_by="config.lr,-user", limit=9, offset=50, fields=("run_id", "user"))):
            found = store.runs("p", **kwargs)
            with as_before():
                assert found == store.runs("p", **kwargs), kwargs
            assert found and all(row["user"] for row in found)
    finally:
        store.close()


def test_numbers_past_a_double_sort_as_infinities_on_both_backends(store_url, tmp_path):
    """An integer past a double's range sorts as +-infinity on both backends, as SQLite's cast has
    it: PostgreSQL's cast of it failed the whole listing (a 500 on a server) before 0015."""
    store = Store(store_url, root=tmp_path)
    try:
        _project_of_runs(store, *({"config": {"x": value}} for value in [1, 10**400, -(10**400), 2**1024, "s"]))
        assert _ids(store.runs("p", order_by="config.x")) == ["r2", "r0", "r1", "r3", "r4"]
        assert _ids(store.runs("p", order_by="-config.x")) == ["r3", "r1", "r0", "r2", "r4"]
    finally:
        store.close()


def test_the_triggers_are_there_at_head_and_a_migration_rebuilding_runs_keeps_them(store_url, tmp_path):
    """After ``upgrade head`` every trigger that writes ``run_sort_values`` is on ``runs``, on both
    backends (a later migration that loses one fails here, not silently in users' sort orders).
    SQLite's ``batch_alter_table`` rebuilds ``runs`` (copy, drop, rename) and loses them;
    ``sort_value_triggers.batch_alter_runs``, which migrations that change ``runs`` use, keeps them,
    and runs written after it are in the table."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    from tracklet.store import sort_value_triggers as triggers

    store = Store(store_url, root=tmp_path)
    try:
        sqlite = store.engine.dialect.name == "sqlite"
        with store.engine.connect() as connection:
            assert triggers.missing(connection) == []
        fill(store, 20)

        def rebuild(keeping: bool, nullable: bool) -> list[str]:
            with store.engine.connect() as connection:
                with connection.begin():
                    op = Operations(MigrationContext.configure(connection, opts={"render_as_batch": True}))
                    alter = triggers.batch_alter_runs(op) if keeping else op.batch_alter_table("runs")
                    with alter as batch:
                        batch.alter_column("notes", existing_type=sa.Text, nullable=nullable)
                    found = triggers.missing(connection)
                if sqlite:  # as engine.migrate does once the upgrade committed
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()
                return found

        assert rebuild(keeping=True, nullable=True) == []
        with store.engine.begin() as connection:
            connection.execute(runs.insert(), [
                {"project_id": 1, "run_id": f"new{i}", "name": "", "state": "finished", "tags": [],
                 "config": {"x": i}, "summary": {"x": str(i)}, "keys": [], "log_path": f"p/new{i}.log",
                 "metadata": {}} for i in range(3)])
            connection.execute(runs.update().where(runs.c.run_id == "r037").values(config={"x": -1}))
        assert _stored(store.engine) == _expected_rows(store.engine)
        assert rebuild(keeping=False, nullable=False) == (list(triggers.TRIGGERS) if sqlite else [])
    finally:
        store.close()


MIXED = ["user,-created", "-user,created", "state,-config.lr", "-state,config.lr", "state,-created", "-created,user",
         "user,-config.lr", "-config.lr,user", "config.lr,-state"]


def test_sorts_mixing_builtin_joined_and_json_keys_list_in_order(store_url, tmp_path):
    """Sorts of two keys mixing a server's ``user`` (its creators' index, then the runs without
    one), built-in fields and a config key, page by page: in the order the keys say, missing values
    (no creator, no creation time, no ``lr``) last in either direction, ties by run id in the last
    key's direction, against an order computed here (a config value: numbers, then strings)."""
    import functools

    store = _store(store_url, tmp_path, 40, server=True)
    try:
        with store.engine.begin() as connection:  # runs without a creator, a creation time, an lr
            # and a creator of a run the store doesn't hold (not indexed yet): not one of its runs
            connection.execute(server_schema.run_creators.insert().values(
                project="p", run_id="ghost", user_id=1, user_name="u0", created_at=0.0))
            connection.execute(runs.insert(), [
                {"project_id": 1, "run_id": run_id, "name": "", "state": state, "tags": [], "config": config,
                 "summary": {}, "keys": [], "created_at": created, "log_path": f"p/{run_id}.log", "metadata": {}}
                for run_id, state, config, created in [("x1", "crashed", {"lr": 0.5}, None), ("x2", "running", {}, 7.5),
                                                       ("x3", "finished", {"lr": "high"}, 8.5)]])
        fields = ("run_id", "user", "state", "created_at", "config")
        every = store.runs("p", fields=fields)
        value = {"user": lambda row: row["user"] or None, "state": lambda row: row["state"],
                 "created": lambda row: row["created_at"],
                 "config.lr": lambda row: row["config"].get("lr")}
        for order_by in MIXED:
            keys = [(key.lstrip("-"), key.startswith("-")) for key in order_by.split(",")]
            def compare(a: dict[str, Any], b: dict[str, Any], keys: list[tuple[str, bool]] = keys) -> int:
                for name, descending in keys:
                    x, y = value[name](a), value[name](b)
                    if x is None or y is None:
                        if (x is None) != (y is None):
                            return 1 if x is None else -1  # missing last, both ways
                        continue
                    if isinstance(x, str) != isinstance(y, str):  # numbers before strings, both ways
                        return 1 if isinstance(x, str) else -1
                    if x != y:
                        return (-1 if x < y else 1) * (-1 if descending else 1)
                return (-1 if a["run_id"] < b["run_id"] else 1) * (-1 if keys[-1][1] else 1)

            expected = [row["run_id"] for row in sorted(every, key=functools.cmp_to_key(compare))]
            assert len(expected) == 43
            # across the runs with a creator (40), then the others (43), and past every run
            for offset, limit in ((0, 7), (36, 10), (39, 2), (40, 2), (41, 1), (42, 3), (43, 1), (50, 5)):
                found = store.runs("p", order_by=order_by, offset=offset, limit=limit, fields=fields)
                assert [row["run_id"] for row in found] == expected[offset:offset + limit], (order_by, offset)
            assert [row["run_id"] for row in store.runs("p", order_by=order_by, fields=fields)] == expected, order_by
    finally:
        store.close()


def test_far_pages_by_a_json_key_cost_no_more_than_the_json_sort(store_url, tmp_path):
    """Pages at offsets past the key's numbers, without counting each part twice (read at the
    offset, then counted): a page past every run is told empty by the indexes alone (SQLite: a
    fifth of the JSON sort's VM instructions; PostgreSQL: the runs' index entries, no run read);
    on SQLite, a page that starts among the runs lacking the key, when most runs hold it, is read
    as that sort, and the last page of a key every run holds reads no run to find none lacks it;
    on PostgreSQL, every page reaching past a third of the project's runs is read as that sort
    (its one read of each run, after the runs' index entries). Each lists what the JSON sort lists."""
    from test_store_plans import listing_cost

    store = Store(store_url, root=tmp_path)
    try:
        _project_of_runs(store, *({"run_id": f"r{i:04d}", "config": {"lr": (i * 7919) % 400 / 400},
                                   "summary": {} if i % 50 == 0 else {"loss": (i * 31) % 400}} for i in range(400)))
        sqlite = store.engine.dialect.name == "sqlite"
        pages = {"past every run": dict(order_by="summary.loss", offset=1000, limit=50),
                 "among the runs lacking the key": dict(order_by="-summary.loss", offset=395, limit=50),
                 "the last page of a key every run holds": dict(order_by="config.lr", offset=380, limit=50)}
        for name, page in pages.items():
            cost, rows = listing_cost(store, project="p", **page)
            with as_before():
                before, expected = listing_cost(store, project="p", **page)
            assert rows == expected, name
            assert len(rows) == {"past every run": 0, "among the runs lacking the key": 5}.get(name, 20)
            if sqlite and name == "past every run":
                assert cost < before / 5, (name, cost, before)
            elif sqlite:  # the runs' index and the key's read first: a fifth more at most
                assert cost < 1.25 * before, (name, cost, before)
            else:  # PostgreSQL: the runs' index entries (past a third of them: the JSON sort's reading)
                assert cost <= (before + 1 if name == "past every run" else 2 * before + 1), (name, cost, before)
    finally:
        store.close()


@pytest.fixture(scope="module")
def planned(postgres_url, tmp_path_factory):
    """A PostgreSQL store of 2,000 runs where most ``run_sort_values`` entries are the summary's
    numbers (5 a run) and config has a key of strings (``opt``, every run's distinct) and one of
    numbers (``lr``), and a second project of 20 runs holds the same config keys, with planner statistics (VACUUM ANALYZE; module-scoped: read-only tests)."""
    from pgcluster import create_database

    root = tmp_path_factory.mktemp("planned")
    store = Store(create_database(postgres_url, f"planned{id(root) % 10**9}"), root=root)
    _project_of_runs(store, *({"run_id": f"r{i:04d}", "config": {"opt": f"o{(i * 7) % 2000:04d}",
                                                                 "lr": (i * 7919) % 2000 / 2000,
                                                                 **({"rare": 1} if i == 1000 else {})},
                               "summary": {f"m{k}": float(i % 7) for k in range(5)}} for i in range(2000)))
    with store.engine.begin() as connection:  # another project holding the keys: the runs' share of p is < 1
        project_id = connection.execute(projects.insert().values(name="q").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"q{i}", "name": "", "state": "finished", "tags": [],
             "config": {"opt": "x", "lr": 0.5}, "summary": {}, "keys": [], "log_path": f"q/{i}.log", "metadata": {}}
            for i in range(20)])
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    yield store
    store.close()


def test_a_page_of_a_keys_strings_reads_the_page_not_the_part(planned):
    """With planner statistics, the first page of a key whose values are strings (every run's
    ``config.opt``, in a store where most values are numbers of the summary) reads the page's
    index entries and runs: PostgreSQL's estimate of the key's strings multiplied in the shares of
    config values and of strings among every key's values, and it read the whole part joined to
    every run of the project, then sorted it (2,000 runs: at 300 a hash join of every run is the
    cheaper plan, by any estimate). SQLite's planner has no such estimate to take."""
    from test_store_plans import listing_cost

    for order_by in ("config.opt", "-config.opt"):
        cost, rows = listing_cost(planned, project="p", order_by=order_by, limit=50)
        with as_before():
            expected = planned.runs("p", order_by=order_by, limit=50)
        assert rows == expected and len(rows) == 50
        # the page's 50 entries and runs, and the probes of the key's index (its numbers: none)
        assert cost <= 2 * 50 + 5, (order_by, cost)


def test_the_key_statistics_are_there_and_a_page_into_a_part_reads_up_to_it(planned):
    """The extended statistics of store migration 0017 (source, path and rank: a path is of one
    source, its values mostly of one kind) tell PostgreSQL how many entries a key's part holds, so
    a page at an offset under a third of the runs is read up to its end through the key's index
    (each entry's run by id), besides the count of the project's runs that chose the reading (three
    times the page's end in index entries): without them the planner took a key's part for a few
    dozen entries and, at an offset, read the whole part hash-joined to every run of the project
    and sorted (strings at a tenth: 2.4 times the JSON sort's rows; numbers at a fifth: 2.9), and
    counted a strings key's (empty) numbers part as a hash join of every run. With more than one
    project the runs' condition on the project is left out of a part's join (each entry is of the
    project already): the planner multiplied the project's share of the runs in twice. And the
    project's id is a constant the planner sees (PostgreSQL), not a subquery: it took a key's
    entries for half of them (two projects), and a page at a quarter of the runs (offset 500) read
    the whole part again (6,193 rows against the JSON sort's 2,020)."""
    from test_store_plans import listing_cost

    with planned.engine.connect() as connection:
        kinds = connection.exec_driver_sql(
            "SELECT stxkind, dependencies IS NOT NULL FROM pg_statistic_ext JOIN pg_stats_ext "
            "ON statistics_name = stxname WHERE stxname = 'st_run_sort_values_kind'").all()
    assert kinds == [(["f", "m"], True)], kinds  # dependencies and MCV list, gathered by the ANALYZE
    for order_by, offset in (("config.opt", 200), ("-config.opt", 200), ("-config.lr", 500), ("config.lr", 500)):
        cost, rows = listing_cost(planned, project="p", order_by=order_by, limit=50, offset=offset)
        with as_before():
            json_cost, expected = listing_cost(planned, project="p", order_by=order_by, limit=50, offset=offset)
        assert rows == expected and len(rows) == 50
        end = offset + 50
        # the page's end in entries and runs, the count's entries, and the probes of the key's
        # entries (without the statistics: 2.4-2.9 times the JSON sort's 2,000 rows)
        assert cost <= 6 * end + 100 and cost < 1.7 * json_cost, (order_by, offset, cost, json_cost)


def test_a_page_by_a_key_one_run_holds_reads_the_runs_lacking_it_by_index(planned):
    """A page by a key that one run of 2,000 holds lists it, then the runs lacking the key, each
    found by its own entry's lookup (run, source, path): the anti-join PostgreSQL planned for them
    read every entry of the table first (14,000 rows at 2,000 runs, 140,000 at 20,000)."""
    from test_store_plans import listing_cost

    for order_by in ("config.rare", "-config.rare"):
        cost, rows = listing_cost(planned, project="p", order_by=order_by, limit=50)
        with as_before():
            expected = planned.runs("p", order_by=order_by, limit=50)
        assert rows == expected and len(rows) == 50 and rows[0]["run_id"] == "r1000"
        # the key's entry and its run, the page's runs, and the probes of the key's index
        assert cost <= 2 * 50 + 25, (order_by, cost)


def test_the_key_presence_check_reads_the_index_not_the_table(planned):
    """``sort_values.sort_path`` asks for the first entry of each of its probes in the index's
    order: a few entries read, for keys of the project written last (``q``'s, after 14,000 rows
    of ``p``) and for the long strings no run holds, which a sequential scan reads the whole table
    to find absent."""
    from test_store_plans import cost, statements
    from tracklet.store.filters import parse_sort

    with planned.engine.connect() as connection:
        project_q = connection.execute(sa.select(projects.c.id).where(projects.c.name == "q")).scalar_one()
    for order_by, expected in (("config.lr", "lr"), ("config.rare", "rare"), ("summary.m0", "m0")):
        ((field, _),) = parse_sort(order_by)
        with statements(planned.engine) as seen, planned.engine.connect() as connection:
            path = sort_values.sort_path(connection, sa.literal_column(str(project_q), sa.Integer), field)
        read = sum(cost(planned.engine, statement, parameters) for statement, parameters in seen)
        assert len(seen) == 1 and read <= 4, (order_by, read)
        assert path == expected, (order_by, path)


def test_a_large_index_pass_gathers_the_planner_statistics(pg_url, root, monkeypatch):
    """An index pass that indexed many runs (``ingest.ANALYZE_AFTER_RUNS``, here lowered to 2)
    ends with an ANALYZE of the tables a listing reads on PostgreSQL, so a freshly indexed project's
    key statistics exist before autovacuum's next round (or where it is off); at most once per
    ``ingest.ANALYZE_EVERY`` seconds per engine (a server whose passes each update that many runs)."""
    import tracklet
    from conftest import QUIET
    from tracklet.store import ingest

    monkeypatch.setattr(ingest, "ANALYZE_AFTER_RUNS", 2)
    store = Store(pg_url, root=root)
    try:
        for n in range(3):
            run = tracklet.init(project="p", dir=str(root), config={"lr": 0.1 * n, "opt": f"o{n}"}, settings=QUIET)
            run.log({"loss": 1.0 / (n + 1)})
            run.finish()

        def gathered() -> list[Any]:
            with store.engine.connect() as connection:
                return connection.exec_driver_sql(
                    "SELECT dependencies IS NOT NULL FROM pg_stats_ext WHERE statistics_name = "
                    "'st_run_sort_values_kind'").scalars().all()

        assert gathered() in ([], [False])  # analyzed at the migration, empty then
        assert store.index().runs_updated == 3
        assert gathered() == [True]
        with store.engine.connect() as connection:
            analyzed = connection.exec_driver_sql(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                "AND relname IN ('runs', 'run_sort_values') ORDER BY relname").scalars().all()
        assert analyzed == ["run_sort_values", "runs"]

        def last_analyze() -> Any:
            with store.engine.connect() as connection:
                return connection.exec_driver_sql("SELECT last_analyze FROM pg_stat_user_tables "
                                                  "WHERE relname = 'run_sort_values'").scalar()

        def pass_over_new_runs(count: int) -> None:
            for n in range(count):
                run = tracklet.init(project="p", dir=str(root), config={"lr": 1.0 + n}, settings=QUIET)
                run.finish()
            assert store.index().runs_updated == count

        first = last_analyze()
        pass_over_new_runs(2)  # as many runs again, within ANALYZE_EVERY: a live server's pass (each a new Indexer)
        assert last_analyze() == first
        monkeypatch.setattr(ingest, "ANALYZE_EVERY", 0.0)
        pass_over_new_runs(2)
        assert last_analyze() > first
    finally:
        store.close()


def test_a_store_at_0016_gains_the_key_statistics_and_loses_them_migrated_down(store_url, tmp_path):
    """Migration 0017 creates ``run_sort_values``' extended statistics on PostgreSQL and gathers
    them for the runs a store holds already (a store not written again has them too); migrated
    back to 0016 they go. On SQLite both are no-ops. Listings list the same throughout."""
    from alembic import command
    from alembic.config import Config

    from conftest import store_at_revision
    from tracklet.store.engine import MIGRATIONS

    engine = store_at_revision(store_url, "0016")
    with engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"r{i:03d}", "name": "", "state": "finished", "tags": [],
             "config": {"opt": f"o{i % 13}", "lr": i / 40}, "summary": {"loss": i % 7}, "keys": [],
             "log_path": f"p/{i}.log", "metadata": {}} for i in range(40)])
    engine.dispose()
    postgresql = store_url.startswith("postgresql")

    def statistics(store: Store) -> list[Any]:
        if not postgresql:
            return []
        with store.engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT statistics_name, dependencies IS NOT NULL FROM pg_stats_ext "
                "WHERE tablename = 'run_sort_values'").all()

    store = Store(store_url, root=tmp_path)  # migrates to the head
    try:
        assert statistics(store) == ([("st_run_sort_values_kind", True)] if postgresql else [])
        pages = {order_by: _ids(store.runs("p", order_by=order_by, limit=10, offset=5))
                 for order_by in ("config.opt", "-config.lr", "summary.loss")}
        for order_by, page in pages.items():
            with as_before():
                assert page == _ids(store.runs("p", order_by=order_by, limit=10, offset=5)), order_by
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0016")
        assert statistics(store) == []
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0016"
        for order_by, page in pages.items():
            assert page == _ids(store.runs("p", order_by=order_by, limit=10, offset=5)), order_by
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        assert statistics(store) == ([("st_run_sort_values_kind", True)] if postgresql else [])
    finally:
        store.close()


def test_numbers_past_a_double_filter_and_sort_as_infinities_everywhere(store_url, tmp_path):
    """The class of the test above: every reading of a JSON number on PostgreSQL (filters' comparisons,
    ``in``, list equality, a sort's later keys, a sort the table can't serve) takes an integer past a
    double's range as +-infinity, as SQLite does, where one such run failed every listing of the
    project that read the key (a 500 on a server); and a list compares its numbers as doubles on both
    backends, as a single number does (PostgreSQL's jsonb equality compared them exactly)."""
    store = Store(store_url, root=tmp_path)
    values = [1, 10**400, -(10**400), "s", [2**53 + 1], [1, 10**400], {"x": 2}]
    try:
        _project_of_runs(store, *({"config": {"x": value, "y": 0, "x.x": value}} for value in values))

        def ids(**kwargs: Any) -> list[str]:
            return _ids(store.runs("p", **kwargs))

        assert ids(filter="config.x > 0", order_by="run_id") == ["r0", "r1"]
        assert ids(filter="config.x < 1e308", order_by="run_id") == ["r0", "r2"]
        assert ids(filter="config.x in [1, 2]", order_by="run_id") == ["r0"]
        assert ids(filter="config.x = [9007199254740992]") == ["r4"]  # 2**53 + 1 as a double is 2**53
        assert ids(filter="config.x = [1, 1e308] or config.x = [1, 2]") == []
        assert ids(order_by="config.y,-config.x") == ["r1", "r0", "r2", "r3", "r6", "r5", "r4"]
        # r6 nests x.x, the others hold the one key "x.x": read by the JSON sort, not the table
        assert ids(order_by="-config.x.x") == ["r1", "r6", "r0", "r2", "r3", "r5", "r4"]
    finally:
        store.close()


def _write_once_after(store: Store, table: str, write: Any) -> Any:
    """A listener that runs ``write`` (in a connection of its own) once, right after the first
    ordered read of ``table``: a writer between a page's statements."""
    written: list[bool] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if not written and table in statement and "ORDER BY" in statement:
            written.append(True)
            with store.engine.begin() as other:
                write(other)

    listener.written = written  # type: ignore[attr-defined]
    return listener


def test_a_server_page_by_user_is_read_from_one_snapshot_too(store_url, tmp_path):
    """The runs a server credits to a user, then the others: a run whose creator row went between
    the two reads was listed twice."""
    store = _store(store_url, tmp_path, 20, server=True)
    try:
        before = _ids(store.runs("p", order_by="user", limit=100))
        gone = before[0]
        listener = _write_once_after(store, "run_creators", lambda other: other.execute(
            server_schema.run_creators.delete().where(server_schema.run_creators.c.run_id == gone)))
        sa.event.listen(store.engine, "after_cursor_execute", listener)
        try:
            page = _ids(store.runs("p", order_by="user", limit=100))
        finally:
            sa.event.remove(store.engine, "after_cursor_execute", listener)
        assert listener.written and page == before
        assert _ids(store.runs("p", order_by="user", limit=100))[-1] == gone  # no creator now: last
    finally:
        store.close()


def test_a_page_is_read_from_one_snapshot_while_runs_are_written(store_url, tmp_path):
    """A page by a JSON key reads its parts (numbers, strings, the rest) in statements of their own:
    a run written between them (its loss turned NaN, stored null: from the numbers to the rest) was
    listed twice in one page, as another that got its first value was listed in none. All are read
    from one snapshot, as the one statement of before read them."""
    store = Store(store_url, root=tmp_path)
    try:
        _project_of_runs(store, *({"state": "running", "summary": {"loss": float(i)} if i < 3 else {}} for i in range(6)))
        before = _ids(store.runs("p", order_by="summary.loss", limit=10))
        assert before == ["r0", "r1", "r2", "r3", "r4", "r5"]
        written: list[bool] = []

        def write_between_parts(conn, cursor, statement, parameters, context, executemany):
            if written or "run_sort_values" not in statement or "ORDER BY" not in statement:
                return
            written.append(True)  # after the numbers' part was read: r0 diverges, r5 gets its first loss
            with store.engine.begin() as other:
                other.execute(runs.update().where(runs.c.run_id == "r0").values(summary={"loss": None}))
                other.execute(runs.update().where(runs.c.run_id == "r5").values(summary={"loss": 0.5}))

        sa.event.listen(store.engine, "after_cursor_execute", write_between_parts)
        try:
            page = _ids(store.runs("p", order_by="summary.loss", limit=10))
        finally:
            sa.event.remove(store.engine, "after_cursor_execute", write_between_parts)
        assert written and page == before  # the listing as it was when the page was begun
        assert _ids(store.runs("p", order_by="summary.loss", limit=10)) == ["r5", "r1", "r2", "r0", "r3", "r4"]
    finally:
        store.close()


def test_a_failed_upgrade_that_rebuilt_runs_gives_the_pool_its_connection_with_foreign_keys_on(tmp_path):
    """``batch_alter_runs`` turns SQLite's foreign keys off for the rebuild; ``migrate`` turns them on
    again once the upgrade ends, failed too: else the engine's pooled connection deleted runs without
    their series, blocks and sort values (ON DELETE CASCADE off)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    from tracklet.store import sort_value_triggers as triggers
    from tracklet.store.engine import _opened, create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    try:
        Store(str(engine.url), root=tmp_path).close()
        with pytest.raises(sa.exc.OperationalError):
            with _opened(engine) as connection:
                op = Operations(MigrationContext.configure(connection, opts={"render_as_batch": True}))
                with triggers.batch_alter_runs(op) as batch:
                    batch.alter_column("notes", existing_type=sa.Text, nullable=True)
                connection.exec_driver_sql("SELECT no_such_column FROM runs")  # a later step fails
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
