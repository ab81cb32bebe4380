"""The store under bad input and contention, on SQLite and a real PostgreSQL: NUL in any text a
run records, a run whose transaction fails (others index, ids of rolled-back inserts are never
reused, after restarts too, and through a ``--dev`` server), readers while another process holds
the indexing lock, and filters fuzzed (only ``FilterSyntaxError``, any key found as written)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracklet
from tracklet.api import local as api_module
from tracklet.store import Store
from tracklet.store.filters import Field, FilterSyntaxError, compile_filter, compile_sort, parse_filter, parse_sort
from tracklet.store.schema import runs as runs_table
from tracklet.store.store import RUN_FIELDS
from tracklet.store.text import store_text

import serverproc
from conftest import QUIET, REPO

R = "\ufffd"  # what the store holds in place of NUL


def _record(root: Path, project: str, run_id: str, steps: int = 20, **init) -> tracklet.Run:
    settings_ = {**QUIET, **init.pop("settings", {})}
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=settings_, **init)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    return run


def _ids(store: Store, project: str, filter: str | None = None) -> list[str]:
    return sorted(row["run_id"] for row in store.runs(project, filter=filter))


def _cli(root: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return serverproc.cli(*args, env={"TRACKLET_DIR": str(root), **(env or {})}, timeout=timeout)


# ------------------------------------------------------------------------------------------------
# NUL in every text a run records


def _record_nul_run(root: Path, project: str = "p", run_id: str = "nul") -> tracklet.Run:
    run = tracklet.init(
        project=project, id=run_id, dir=str(root), settings={**QUIET, "console": "wrap"},
        name="na\x00me", tags=["t\x00ag", "plain"], group="gr\x00oup", job_type="jo\x00b", notes="no\x00tes",
        config={"k\x00ey": "va\x00lue", "nested": {"in\x00ner": 2}, "list": ["a\x00", 1]},
    )
    print("li\x00ne")
    run.log({"me\x00tric": 1.0, "text": "lo\x00gged"})
    run.log({"me\x00tric": 2.0})
    run.summary["su\x00m"] = "ma\x00ry"
    run.finish()
    return run


def test_nul_in_any_text_is_stored_as_u_fffd_and_found_on_both_backends(root, store_url):
    _record_nul_run(root)
    _record(root, "p", "good")
    store = Store(store_url, root=root)
    report = store.index()
    assert report.failed == [] and report.runs_updated == 2
    rows = {row["run_id"]: row for row in store.runs("p", fields=RUN_FIELDS)}
    row = rows["nul"]
    assert (row["name"], row["group_name"], row["job_type"], row["notes"]) == (
        f"na{R}me", f"gr{R}oup", f"jo{R}b", f"no{R}tes")
    assert row["tags"] == [f"t{R}ag", "plain"]
    assert row["config"] == {f"k{R}ey": f"va{R}lue", "nested": {f"in{R}ner": 2}, "list": [f"a{R}", 1]}
    assert row["summary"][f"su{R}m"] == f"ma{R}ry"
    assert f"me{R}tric" in row["keys"]
    # A filter finds it by the text as written (with \u0000) or as stored (with \ufffd).
    for text in ('config."k\\u0000ey" = "va\\u0000lue"', 'config."k\\ufffdey" = "va\\ufffdlue"',
                 'config.nested."in\\u0000ner" = 2', 'name = "na\\u0000me"', 'name ~ "A\\u0000M"',
                 'tags contains "t\\u0000ag"', 'group in ["gr\\u0000oup"]', 'summary."su\\u0000m" ~ "a\\u0000r"',
                 'summary."me\\u0000tric" = 2'):
        assert _ids(store, "p", text) == ["nul"], text
    assert [r["run_id"] for r in store.runs("p", order_by='-config.nested."in\\u0000ner"')][0] == "nul"
    (history,) = store.history("p/nul", "me\x00tric", buckets=None)
    assert history.values.tolist() == [1.0, 2.0]
    page = store.console("p/nul", search="li\x00ne")
    assert [line.text for line in page.lines] == [f"li{R}ne"]


def test_texts_longer_than_their_columns_are_cut_on_both_backends(root, store_url):
    """PostgreSQL refuses a varchar(n) value past n characters, which failed the whole run."""
    run = tracklet.init(project="p", id="long", dir=str(root), settings=QUIET, name="n" * 600, group="g" * 600,
                        job_type="j" * 200)
    run.log({"k" * 1100: 1.0, "short": 2.0})
    run.finish()
    store = Store(store_url, root=root)
    assert store.index().failed == []
    (row,) = store.runs("p", fields=RUN_FIELDS)
    assert (row["name"], row["group_name"], row["job_type"]) == ("n" * 512, "g" * 512, "j" * 128)
    assert row["keys"] == ["k" * 1024, "short"]
    (history,) = store.history("p/long", "k" * 1100, buckets=None)  # a longer key still names it
    assert history.values.tolist() == [1.0]


# ------------------------------------------------------------------------------------------------
# A run whose transaction fails


def _reject_run(engine: sa.Engine, run_id: str) -> None:
    """A real database trigger that makes inserting this run's row fail, as bad data would."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(
                "CREATE FUNCTION reject_run() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'rejected by the test trigger'; END $$ LANGUAGE plpgsql"))
            connection.execute(sa.text(
                f"CREATE TRIGGER reject_run BEFORE INSERT ON runs FOR EACH ROW "
                f"WHEN (NEW.run_id = '{run_id}') EXECUTE FUNCTION reject_run()"))
        else:
            connection.execute(sa.text(
                f"CREATE TRIGGER reject_run BEFORE INSERT ON runs WHEN NEW.run_id = '{run_id}' "
                "BEGIN SELECT RAISE(ABORT, 'rejected by the test trigger'); END"))


def _accept_runs(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("DROP TRIGGER reject_run ON runs"))
        else:
            connection.execute(sa.text("DROP TRIGGER reject_run"))


def test_a_run_that_fails_to_index_blocks_no_other_run(root, store_url):
    """The failing run is the first of a new project: its rolled-back transaction created the
    project, whose id must not be reused by the project's other runs (in this process or after a
    restart)."""
    store = Store(store_url, root=root)
    _reject_run(store.engine, "a-bad")
    for run_id in ("a-bad", "b-good", "c-good"):
        _record(root, "fresh", run_id)
    report = store.index()
    assert [line.split(": ")[0] for line in report.failed] == ["fresh/a-bad"]
    assert "rejected by the test trigger" in report.failed[0] and "\n" not in report.failed[0]
    assert _ids(store, "fresh") == ["b-good", "c-good"]
    _record(root, "fresh", "d-good")
    assert [line.split(": ")[0] for line in store.index().failed] == ["fresh/a-bad"]
    assert _ids(store, "fresh") == ["b-good", "c-good", "d-good"]

    restarted = Store(store_url, root=root)
    _record(root, "fresh", "e-good")
    assert [line.split(": ")[0] for line in restarted.index().failed] == ["fresh/a-bad"]
    assert _ids(restarted, "fresh") == ["b-good", "c-good", "d-good", "e-good"]

    cli = _cli(root, "index", env={"TRACKLET_STORE": store_url})
    assert cli.returncode == 2, cli.stderr
    assert "could not be indexed" in cli.stderr and "fresh/a-bad: " in cli.stderr
    assert "rejected by the test trigger" in cli.stderr and "Indexed 0 of 5 runs" in cli.stdout
    assert "Traceback" not in cli.stderr

    _accept_runs(restarted.engine)
    assert restarted.index().failed == []
    assert _ids(restarted, "fresh") == ["a-bad", "b-good", "c-good", "d-good", "e-good"]
    cli = _cli(root, "index", env={"TRACKLET_STORE": store_url})
    assert cli.returncode == 0 and "Indexed 0 of 5 runs" in cli.stdout, cli.stdout + cli.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def server_store(request):
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def _server_engine(server) -> sa.Engine:
    from tracklet.store.engine import create_engine, store_url

    return create_engine(server.store or store_url(server.root))


def _listed(server, project: str, **params) -> list[str]:
    answer = httpx.get(f"{server.url}/api/v1/projects/{project}/runs", params=params, timeout=30)
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return sorted(run["run_id"] for run in answer.json()["runs"])


def test_dev_server_indexes_good_runs_after_a_bad_one_and_after_restarts(root, servers, server_store, tmp_path):
    server = servers(tmp_path / "server", store=server_store)
    engine = _server_engine(server)
    _reject_run(engine, "a-bad")
    _record(root, "fresh", "a-bad")
    _record_nul_run(root, "fresh", "b-nul")
    _record(root, "fresh", "c-good")
    first = _cli(root, "sync", "--url", server.url, "-q", "fresh/a-bad")  # the project's first run fails
    assert first.returncode == 0, first.stderr  # the copy is acknowledged (durable); indexing is retried
    synced = _cli(root, "sync", "--url", server.url, "-q", "--all")
    assert synced.returncode == 0, synced.stderr
    assert _listed(server, "fresh") == ["b-nul", "c-good"]
    assert _listed(server, "fresh", filter='name = "na\\u0000me"') == ["b-nul"]

    server.stop()
    server = servers(tmp_path / "server", store=server_store)  # restarted: indexes at start
    _record(root, "fresh", "d-good")
    assert _cli(root, "sync", "--url", server.url, "-q", "fresh/d-good").returncode == 0
    assert _listed(server, "fresh") == ["b-nul", "c-good", "d-good"]

    _accept_runs(engine)
    server.stop()
    server = servers(tmp_path / "server", store=server_store)
    assert _listed(server, "fresh") == ["a-bad", "b-nul", "c-good", "d-good"]
    engine.dispose()


# ------------------------------------------------------------------------------------------------
# Readers while another process indexes

HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""

INDEX_LOOP = """
import sys, time
from tracklet.store import Store
store = Store(root=sys.argv[1])
print("indexing", flush=True)
while True:
    try:
        store.index()
    except Exception:  # busy (the test's own readers index too): try again
        pass
    time.sleep(0.005)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, text=True)
    process.stdout.readline()  # it holds the lock / has started
    return process


def test_readers_never_fail_while_another_process_holds_the_index_lock(root, monkeypatch):
    _record(root, "p", "r1", config={"lr": 0.1})
    tracklet.Api(root).index()
    _record(root, "p", "r2", config={"lr": 0.2})  # not indexed while the lock is held
    monkeypatch.setattr(api_module, "READER_INDEX_WAIT", 0.02)
    holder = _spawn(HOLD_LOCK, str(root / "store.lock"))
    try:
        for _ in range(20):
            api = tracklet.Api(root)
            assert [run.id for run in api.runs("p", filter="config.lr < 1")] == ["r1"]  # what is committed
            assert [h.run for h in api.history(["p/r1"], ["loss"])] == ["p/r1"]
        listed = _cli(root, "runs", "p", "--filter", "config.lr < 1", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [run["id"] for run in json.loads(listed.stdout)] == ["r1"]
        indexed = _cli(root, "index", "--wait", "0.2")
        assert indexed.returncode == 0, indexed.stderr
        assert "Skipped: another process is still indexing" in indexed.stdout
        assert "waiting up to 0.2s" in indexed.stderr
        assert tracklet.Api(root).index(wait=0.0).busy
    finally:
        holder.kill()
        holder.wait()
    assert sorted(run.id for run in tracklet.Api(root).runs("p", filter="config.lr < 1")) == ["r1", "r2"]


def test_queries_never_fail_while_another_process_indexes_a_live_run(root):
    run = tracklet.init(project="p", id="live", dir=str(root), config={"lr": 0.1}, settings=QUIET)
    run.log({"loss": 1.0})
    run.flush()
    indexer = _spawn(INDEX_LOOP, str(root))
    failures: list[BaseException] = []
    try:
        for step in range(40):
            run.log({"loss": 1.0 / (step + 2)})
            run.flush()
            try:
                api = tracklet.Api(root)
                assert [r.id for r in api.runs("p", filter="config.lr exists")] == ["live"]
                api.history(["p/live"], ["loss"])
            except Exception as error:  # collected: the assertion below shows every one
                failures.append(error)
    finally:
        indexer.kill()
        indexer.wait()
        run.finish()
    assert failures == []


# ------------------------------------------------------------------------------------------------
# Filters fuzzed

TOKENS = [
    "config.a", "summary.b", 'config."a\\"b"', "config.`x y`", 'config."\\u0000"', "config.a.b", "state", "name",
    "exit_code", "last_step", "created", "updated", "tags", "group", "=", "==", "!=", "<", "<=", ">", ">=", "~",
    "and", "or", "not", "in", "exists", "contains", "(", ")", "[", "]", ",", "1", "-2", ".5", "1e400", "1e308",
    "99999999999999999999999", "-99999999999999999999999", "9223372036854775807", "-9223372036854775809",
    "-7d", "2026-01-01", '"2026-01-01T12:00"', '"x"', '"a\\u0000b"', "'q'", "null", "true", "false", "finished",
    "+", "-", "-summary.b", "+config.a",
]


def _queries(engine: sa.Engine):
    def run(where=None, order_by=None):
        stmt = sa.select(runs_table.c.run_id)
        if where is not None:
            stmt = stmt.where(where)
        if order_by is not None:
            stmt = stmt.order_by(*order_by)
        with engine.connect() as connection:
            return connection.execute(stmt).scalars().all()

    return run


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    """A SQLite store with a few runs whose config and summary have awkward keys."""
    root = tmp_path_factory.mktemp("fuzz")
    for index, config in enumerate([{"a": 1, 'a"b': 2, "x y": "s"}, {"a": {"b": 3}, "\x00": "z"}, {}]):
        _record(root, "p", f"r{index}", config=config)
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    store.index()
    yield store
    store.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)))
def test_any_text_parses_or_raises_filter_syntax_error_and_runs(fuzz_store, text):
    query = _queries(fuzz_store.engine)
    try:
        expr = parse_filter(text)
    except FilterSyntaxError:
        pass
    else:
        query(where=compile_filter(expr, runs_table))
        assert parse_filter(str(expr)) == expr  # str() gives filter text that parses back
    try:
        keys = parse_sort(text)
    except FilterSyntaxError:
        pass
    else:
        query(order_by=compile_sort(keys, runs_table))


def test_fuzzed_filters_run_on_postgresql(pg_url, tmp_path):
    root = tmp_path / "data"
    _record(root, "p", "r0", config={"a": 1, 'a"b': 2, "\x00": "z"})
    store = Store(pg_url, root=root)
    store.index()
    query = _queries(store.engine)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(text=st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join))
    def check(text):
        try:
            query(where=compile_filter(parse_filter(text), runs_table))
        except FilterSyntaxError:
            pass
        try:
            query(order_by=compile_sort(parse_sort(text), runs_table))
        except FilterSyntaxError:
            pass

    check()
    store.close()


_counter = itertools.count()
KEY = st.text(min_size=1, max_size=6).filter(lambda key: not key.startswith("_"))


def test_any_config_key_is_found_as_written(store_url, tmp_path):
    """For any keys, a run logged with them is found by the filter that Field's quoting writes
    (one level and nested), and sorts by them."""
    root = tmp_path / "data"
    store = Store(store_url, root=root)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(keys=st.lists(KEY, min_size=1, max_size=5, unique_by=store_text), inner=KEY)
    def check(keys, inner):
        project = f"k{next(_counter)}"
        config = {key: index for index, key in enumerate(keys)}
        config[keys[0]] = {inner: -1}
        _record(root, project, "run", steps=0, config=config)
        store.index()
        for index, key in enumerate(keys[1:], start=1):
            field = str(Field("config", (key,)))
            assert _ids(store, project, f"{field} = {index}") == ["run"], field
            assert _ids(store, project, f"{field} != {index}") == []
            assert [r["run_id"] for r in store.runs(project, order_by=f"-{field}")] == ["run"]
        nested = str(Field("config", (keys[0], inner)))
        assert _ids(store, project, f"{nested} = -1") == ["run"], nested
        assert _ids(store, project, f"{nested} exists") == ["run"], nested

    check()
    store.close()


def test_bad_filters_are_400s_and_awkward_keys_200s_over_http(root, store_url):
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    _record(root, "p", "r", config={'a"b': 1, "a\\b": 2, "a\nb": 3, "\x00": 4})
    with TestClient(create_app(root, store_url=store_url, auth=False)) as client:
        def ask(**params):
            return client.get("/api/v1/projects/p/runs", params=params)

        for text, found in [('config."a\\"b" = 1', ["r"]), ('config."a\\\\b" = 2', ["r"]),
                            ('config."a\\nb" = 3', ["r"]), ('config."\\u0000" = 4', ["r"]),
                            ('config."\\u0000" = 5', []), ("exit_code = 99999999999999999999999", []),
                            ("exit_code < 99999999999999999999999", ["r"])]:
            answer = ask(filter=text)
            assert answer.status_code == 200, (text, answer.text)
            assert [run["run_id"] for run in answer.json()["runs"]] == found, text
        for sort in ('config."a\\"b"', '-config."\\u0000"', "-config.`a\\b`"):
            assert ask(order_by=sort).status_code == 200, sort
        for text, problem in [("config.a = 1e400", "number out of range"), ("exit_code = " + "9" * 5000,
                              "number out of range"), ("config.a >> 1", "unexpected token")]:
            answer = ask(filter=text)
            assert answer.status_code == 400 and problem in answer.json()["detail"], answer.text
            assert ask(order_by=text.split()[0] + " x").status_code == 400

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(text=st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join))
        def never_500(text):
            assert ask(filter=text).status_code in (200, 400)
            assert ask(order_by=text).status_code in (200, 400)

        never_500()


def test_integers_beyond_64_bits_compare_as_doubles():
    assert parse_filter("exit_code = 99999999999999999999999").value == 1e23
    assert parse_filter("last_step > -9223372036854775809").value == -9223372036854775809.0
    assert isinstance(parse_filter("last_step > 9223372036854775807").value, int)
    with pytest.raises(FilterSyntaxError, match="number out of range"):
        parse_filter("config.a = " + "1" * 400)



@pytest.mark.parametrize("more_steps", [0, 700])
def test_a_log_recorded_again_from_scratch_is_indexed_anew_whatever_its_size(root, store_url, more_steps):
    """The run directory deleted and the same id recorded anew: the new log may be exactly as long
    as the old one or longer, so its size can't tell; its first record (another start time) does."""
    import shutil

    def record(steps: int, scale: float) -> tracklet.Run:
        run = tracklet.init(project="again", id="same", dir=str(root), settings=QUIET)
        for step in range(steps):
            run.log({"loss": scale * step}, step=step)
        run.finish()
        return run

    store = Store(store_url, root=root)
    first = record(1000, 1.0)
    store.index()
    shutil.rmtree(first.dir)
    again = record(1000 + more_steps, 2.0)
    store.index()
    (series,) = store.history(again.path, "loss", start=0, end=10_000, buckets=50)
    assert series.count.sum() == 1000 + more_steps
    assert series.max.max() == 2.0 * (999 + more_steps)
    (row,) = store.runs("again")
    assert row["created_at"] == tracklet.Api(root).run(again.path).created_at


def _damaged_run(root: Path, project: str, run_id: str) -> None:
    """A finished run whose second history record's checksum is broken."""
    from tracklet.core.recordlog import read_log

    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET)
    for step in range(60):
        run.log({"loss": float(step)})
        if step % 20 == 19:
            run.flush()
    run.finish()
    log_file = Path(run.dir) / "run.tlog"
    from tracklet.proto import records_pb2 as pb

    frames = [offset for offset, payload in read_log(log_file).payloads
              if pb.Record.FromString(payload).WhichOneof("kind") == "history"]
    data = bytearray(log_file.read_bytes())
    data[frames[1] + 20] ^= 0x10
    log_file.write_bytes(bytes(data))


def test_runs_indexed_in_groups_equal_runs_indexed_one_by_one(root, store_url, tmp_path):
    """Several runs per transaction: a run that fails rolls back its group, whose other runs (a
    damaged one, one longer than a chunk) are then indexed alone; each damage is reported once
    and the store equals one indexed a run per transaction."""
    from tracklet.store.ingest import Indexer

    _damaged_run(root, "g", "a-damaged")
    _record(root, "g", "b-bad")
    _record(root, "g", "c-long", steps=3000)
    for run_id in ("d-good", "e-good", "f-good"):
        _record(root, "g", run_id)
    stores = {}
    for group_runs, url in ((3, store_url), (1, f"sqlite:///{tmp_path / 'one-by-one.sqlite'}")):
        store = stores[group_runs] = Store(url, root=root)
        _reject_run(store.engine, "b-bad")
        indexer = Indexer(store.engine, root)
        indexer.group_runs, indexer.chunk_bytes = group_runs, 4096
        report = indexer.index()
        assert [line.split(": ")[0] for line in report.failed] == ["g/b-bad"]
        assert [line.split(": ")[0] for line in report.damaged] == ["g/a-damaged"]
        assert report.runs_updated == 5 and report.runs_seen == 6
    fields = tuple(field for field in RUN_FIELDS if field != "heartbeat_at")
    grouped, alone = (stores[n].runs("g", fields=fields, order_by="run_id") for n in (3, 1))
    assert [row["run_id"] for row in grouped] == ["a-damaged", "c-long", "d-good", "e-good", "f-good"]
    assert grouped == alone
    for row in grouped:
        path = f"g/{row['run_id']}"
        (mine,), (theirs,) = (stores[n].history(path, "loss", buckets=None) for n in (3, 1))
        assert mine.steps.tolist() == theirs.steps.tolist() and mine.values.tolist() == theirs.values.tolist()


def _store_content(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every derived row of a store by natural keys (project, run id, series kind and key), not by
    database ids: what a store indexed one way must equal, row for row, indexed another way."""
    from tracklet.store.lineage import artifact_edges
    from tracklet.store.media import media
    from tracklet.store.schema import alerts, blocks, console_lines, projects, series

    run = sa.select(runs_table.c.id, projects.c.name.label("project"), runs_table.c.run_id).join(
        projects, projects.c.id == runs_table.c.project_id).subquery()
    who = (run.c.project, run.c.run_id)
    skip = {"id", "project_id", "heartbeat_at"}
    queries = {
        "runs": sa.select(*who, *(c for c in runs_table.c if c.name not in skip)).join(run, run.c.id == runs_table.c.id),
        "series": sa.select(*who, series.c.kind, series.c.key, series.c.count, series.c.first_step,
                            series.c.last_step).join(run, run.c.id == series.c.run_pk),
        "blocks": sa.select(*who, series.c.kind, series.c.key, blocks.c.level, blocks.c.seq, blocks.c.first_step,
                            blocks.c.last_step, blocks.c.count, blocks.c.data).join(
            series, series.c.id == blocks.c.series_id).join(run, run.c.id == series.c.run_pk),
        "console": sa.select(*who, *(c for c in console_lines.c if c.name != "run_pk")).join(
            run, run.c.id == console_lines.c.run_pk),
        "alerts": sa.select(*who, *(c for c in alerts.c if c.name != "run_pk")).join(run, run.c.id == alerts.c.run_pk),
        "edges": sa.select(*who, *(c for c in artifact_edges.c if c.name != "run_pk")).join(
            run, run.c.id == artifact_edges.c.run_pk),
        "media": sa.select(*who, *(c for c in media.c if c.name != "run_pk")).join(run, run.c.id == media.c.run_pk),
    }
    with engine.connect() as connection:
        return {name: sorted((tuple(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else
                                    bytes(v) if isinstance(v, memoryview) else v for v in row)
                              for row in connection.execute(query)), key=repr)
                for name, query in queries.items()}


def _rich_run(root: Path, project: str, run_id: str, steps: int = 30, first: int = 0, **init) -> tracklet.Run:
    """A run with everything the store indexes from a record log: config, sparse and dense metrics,
    console lines on both streams, alerts, a summary, run metadata."""
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings={**QUIET, "console": "wrap"},
                        config={"lr": 0.1, "name": run_id}, tags=["t", run_id], **init)
    for step in range(first, first + steps):
        row = {"loss": 1.0 / (step + 1), "flag": step % 2 == 0}
        if step % 7 == 0:
            row["eval/acc"] = step / steps
            row["samples"] = [tracklet.Image([[step % 256, 1], [2, 3]], caption=f"{run_id} {step}"),
                              tracklet.Image([[0, 255], [255, 0]])]
            print(f"{run_id} step {step}")
            print(f"{run_id} warning {step}", file=sys.stderr)
        run.log(row, step=step)
    run.alert(f"{run_id} done", text="all steps logged", level="WARN")
    run.summary["best"] = 0.5
    run.finish(exit_code=0 if run_id[-1] != "x" else 3)
    return run


def _stats_and_crashed_run(root: Path, project: str, run_id: str) -> None:
    """A run whose writer died (no exit record, no lock held: crashed, its summary folded from the
    log) with system metric windows, written record by record with the real writer."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import RecordLogWriter
    from tracklet.proto import records_pb2 as pb

    paths = RunPaths(root, project, run_id)
    paths.run_dir.mkdir(parents=True)
    writer = RecordLogWriter(paths.log_file)
    record = pb.Record()
    record.run_start.run_id, record.run_start.project, record.run_start.start_time = run_id, project, 1.8e9
    writer.write(record.SerializeToString())
    for window in range(12):
        record = pb.Record()
        record.stats.time, record.stats.window_start = 1.8e9 + 10 * (window + 1), 1.8e9 + 10 * window
        for name in ("cpu.percent", f"gpu.{window % 2}.util"):
            entry = record.stats.values.add()
            entry.name, entry.value, entry.max, entry.samples = name, float(window), window + 0.5, 5
        writer.write(record.SerializeToString())
    record = pb.Record()
    definition = record.history.new_keys.add()
    definition.id, definition.name = 0, "loss"
    record.history.steps.extend([0, 1, 2])
    record.history.times.extend([1.8e9 + 1, 1.8e9 + 2, 1.8e9 + 3])
    column = record.history.columns.add()
    column.key = 0
    column.floats.extend([3.0, 2.0, 1.0])
    writer.write(record.SerializeToString())
    for version, kind in enumerate(("artifact_used", "artifact_logged", "artifact_logged")):
        record = pb.Record()
        edge = getattr(record, kind)
        edge.artifact.project, edge.artifact.name, edge.artifact.version = project, "model", version
        edge.artifact.type, edge.artifact.digest, edge.time = "model", f"{version:064x}", 1.8e9 + 5 + version
        if kind == "artifact_logged":
            edge.aliases.extend(["latest", f"v{version}"])
        writer.write(record.SerializeToString())
    writer.close()


@pytest.mark.parametrize("group_runs", [4, 256])
def test_a_group_indexed_in_batches_stores_what_one_run_per_transaction_stores(root, store_url, tmp_path,
                                                                                group_runs):
    """New runs of a group are inserted in a few executemany statements (rows, series, blocks,
    console lines, alerts), beside runs already stored (appended to) and runs recorded anew: the
    store holds exactly what indexing each run in a transaction of its own holds, on both
    backends; a run that makes a batched statement fail is the only one lost, in both passes."""
    from tracklet.store.ingest import Indexer

    for run_id in ("a", "b-failx"):
        _rich_run(root, "old", run_id)
    _rich_run(root, "old", "c-replaced")
    stores = {"batched": Store(store_url, root=root),
              "alone": Store(f"sqlite:///{tmp_path / 'alone.sqlite'}", root=root)}

    def index(name: str) -> tuple[list[str], int]:
        indexer = Indexer(stores[name].engine, root)
        if name == "batched":
            indexer.group_runs = group_runs
            report = indexer.index()
            return [line.split(": ")[0] for line in report.failed], report.points
        failed, points = [], 0
        for paths in indexer.run_dirs():  # the path that writes each run at once, in its own transaction
            try:
                points += indexer.index_run(paths)[0]
            except sa.exc.DBAPIError:
                failed.append(f"{paths.project}/{paths.run_id}")
        return failed, points

    first = {name: index(name) for name in stores}
    assert first["batched"] == first["alone"] and first["batched"][0] == []
    # Second pass: new runs (one rejected by the database, a crashed one with system metrics, in a
    # second project), an old run resumed with more steps, one recorded again from scratch.
    import shutil

    shutil.rmtree(root / "projects" / "old" / "runs" / "c-replaced")
    _rich_run(root, "old", "c-replaced", steps=40)
    _rich_run(root, "old", "a", steps=60, first=30, resume="allow")
    for run_id in ("d", "e-bad", "f", "g-x", "h", "i", "j"):
        _rich_run(root, "new", run_id, steps=10 + len(run_id) * 25)
    _stats_and_crashed_run(root, "new", "k-crashed")
    for store in stores.values():
        _reject_run(store.engine, "e-bad")
    second = {name: index(name) for name in stores}
    assert second["batched"] == second["alone"] and second["batched"][0] == ["new/e-bad"]
    batched, alone = (_store_content(stores[name].engine) for name in ("batched", "alone"))
    for table in ("runs", "series", "blocks", "console", "alerts", "edges", "media"):
        assert batched[table] == alone[table], table
    runs = {row[1]: row for row in batched["runs"]}
    assert sorted(runs) == ["a", "b-failx", "c-replaced", "d", "f", "g-x", "h", "i", "j", "k-crashed"]
    assert {row[2] for row in batched["series"] if row[1] == "k-crashed"} == {"number", "system", "system_max"}
    assert {row[1] for row in batched["console"]} >= {"a", "d", "j"} and len(batched["alerts"]) == 10  # "a" resumed: 2
    assert [(row[2], row[6]) for row in sorted(batched["edges"])] == [(1, 0), (2, 1), (3, 2)]  # seq, version
    # two images at every 7th step of every run ("a" resumed: its first 30 steps and its next 60)
    assert {row[1] for row in batched["media"]} == set(runs) - {"k-crashed"}
    media_a = stores["batched"].media("old", "a", "samples")
    assert [(m["step"], m["idx"]) for m in media_a][:4] == [(0, 0), (0, 1), (7, 0), (7, 1)]
    assert len(media_a) == 2 * len([s for s in range(90) if s % 7 == 0])
    assert media_a[0]["caption"] == "a 0" and media_a[0]["kind"] == "image" and len(media_a[0]["digest"]) == 64
    crashed = stores["batched"].runs("new", filter='run_id = "k-crashed"')[0]
    assert crashed["state"] == "crashed" and crashed["summary"]["loss"] == 1.0


def test_indexing_a_group_of_new_runs_takes_statements_per_group_not_per_run(root, store_url):
    """A sweep of small runs costs a few statements per group transaction, however many runs it
    holds (each statement paid a compile and a round trip: most of the time of a sweep's indexing)."""
    from tracklet.store.ingest import Indexer

    def statements(count: int, project: str) -> int:
        for n in range(count):
            _record(root / project, project, f"r{n:03d}", steps=5)
        store = Store(store_url, root=root / project)
        executed: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *args: executed.append(args[2]))
        report = Indexer(store.engine, root / project).index()
        assert report.runs_updated == count and not report.failed
        store.close()
        return len(executed)

    assert statements(40, "many") == statements(4, "few")


def test_a_line_the_database_refuses_in_a_batched_insert_loses_only_its_run(root, store_url):
    """The group's console lines go in one executemany after its runs and series: a line the
    database refuses (a real trigger, as a constraint would) fails that statement, and the group is
    indexed again run by run, so only the run whose log holds the line is left out."""
    for run_id in ("a", "b-poisoned", "c"):
        run = tracklet.init(project="lines", id=run_id, dir=str(root), settings={**QUIET, "console": "wrap"})
        print(f"{run_id}: hello")
        if run_id == "b-poisoned":
            print("poison")
        run.log({"loss": 1.0})
        run.finish()
    store = Store(store_url, root=root)
    with store.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("CREATE FUNCTION reject_line() RETURNS trigger AS $$ BEGIN "
                                       "RAISE EXCEPTION 'line rejected'; END $$ LANGUAGE plpgsql"))
            connection.execute(sa.text("CREATE TRIGGER reject_line BEFORE INSERT ON console_lines FOR EACH ROW "
                                       "WHEN (NEW.text = 'poison') EXECUTE FUNCTION reject_line()"))
        else:
            connection.execute(sa.text("CREATE TRIGGER reject_line BEFORE INSERT ON console_lines "
                                       "WHEN NEW.text = 'poison' BEGIN SELECT RAISE(ABORT, 'line rejected'); END"))
    report = store.index()
    assert [line.split(": ")[0] for line in report.failed] == ["lines/b-poisoned"]
    assert "line rejected" in report.failed[0]
    assert _ids(store, "lines") == ["a", "c"]
    assert [line.text for line in store.console("lines/c").lines] == ["c: hello"]
