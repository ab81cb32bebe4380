"""The server's own tables (users, API keys, members, segment copies) have their own schema and
migrations, apart from the store's derived tables (SQLite and a real PostgreSQL): a fresh store
has none of them, a server's database has both schemas exactly, and a database made before the
move (the store's migrations as they were, tests/legacy_store_migrations/) upgrades in place with
every user, key, member and segment kept and working."""

from __future__ import annotations

import hashlib
import shutil
import time
import warnings
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from conftest import QUIET

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.server import schema as server_schema
from tracklet.server.auth import Accounts
from tracklet.store import Store
from tracklet.store import schema as store_schema
from tracklet.store.engine import create_engine

LEGACY_MIGRATIONS = Path(__file__).resolve().parent / "legacy_store_migrations"
SERVER_TABLE_NAMES = [table.name for table in server_schema.SERVER_TABLES]
ALICE_SECRET = "alice-secret-made-before-the-move"
REVOKED_SECRET = "revoked-secret"
ROOT_SECRET = "root-secret-made-before-the-move"


def _both_schemas() -> sa.MetaData:
    both = sa.MetaData()
    for table in (*store_schema.metadata.tables.values(), *server_schema.metadata.tables.values()):
        table.to_metadata(both)
    return both


def _index_dialects() -> dict[str, str]:
    """The indexes declared for one database only (``Index.ddl_if(dialect=...)``, which
    ``Table.to_metadata`` doesn't copy), by name: that database."""
    found = {}
    for metadata in (store_schema.metadata, server_schema.metadata):
        for table in metadata.tables.values():
            for index in table.indexes:
                dialect = getattr(getattr(index, "_ddl_if", None), "dialect", None)
                if dialect is not None and index.name is not None:
                    found[index.name] = dialect
    return found


def _schema_differences(engine: sa.Engine, metadata: sa.MetaData) -> list:
    def include_name(name: str | None, type_: str, parent: object) -> bool:
        return type_ != "table" or name not in ("alembic_version", server_schema.VERSION_TABLE)

    with engine.connect() as connection:
        def on_this_dialect(item, name, type_, reflected, compare_to) -> bool:  # an index's ddl_if(dialect=...)
            only = _index_dialects().get(name) if type_ == "index" else None
            return only is None or only == connection.dialect.name

        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name,
                                                               "include_object": on_this_dialect})
        with warnings.catch_warnings():  # (SQLite can't reflect an expression index; the one there is PostgreSQL's)
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index",
                                    UserWarning)
            return compare_metadata(context, metadata)


def _server_head() -> str:
    """The server's newest migration (each helper's adds one; the lead chains them at merge)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(server_schema.MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def _store_head() -> str:
    """The store's newest migration: the store's branch moves on without the server's."""
    from alembic.script import ScriptDirectory

    from tracklet.store.engine import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_a_store_has_no_server_tables_and_a_server_database_has_both_schemas_exactly(store_url, tmp_path):
    store = Store(store_url, root=tmp_path)
    assert not _tables(store.engine) & set(SERVER_TABLE_NAMES)  # the embedded store: derived tables only
    assert _schema_differences(store.engine, store_schema.metadata) == []
    Accounts(store)  # what a server (or `tracklet admin`) opens: the server's migrations run
    assert set(SERVER_TABLE_NAMES) <= _tables(store.engine)
    assert _schema_differences(store.engine, _both_schemas()) == []
    with store.engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {server_schema.VERSION_TABLE}")).scalar() == _server_head()
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _store_head()
    store.close()


def _recorded(root: Path, run_id: str, steps: int) -> bytes:
    run = tracklet.init(project="p", id=run_id, dir=str(root), settings={**QUIET, "console": "wrap"})
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)})
        if step % 10 == 0:
            print(f"step {step}")
    run.finish()
    return RunPaths(root, "p", run_id).log_file.read_bytes()


def _legacy_database(url: str, log: bytes, segments: Path | None) -> None:
    """A server's database as tracklet made it before the move: the store's migrations of then,
    users (one admin), keys (one revoked), a member, and a run's copy as two segments."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(LEGACY_MIGRATIONS))
    now = time.time()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        execute = connection.execute
        project = execute(sa.text("INSERT INTO projects (name) VALUES ('p') RETURNING id")).scalar()
        for name, admin in (("alice", False), ("root", True)):
            execute(sa.text("INSERT INTO users (name, is_admin, created_at, disabled) VALUES (:n, :a, :t, false)"),
                    {"n": name, "a": admin, "t": now})
        users = dict(execute(sa.text("SELECT name, id FROM users")).all())
        for key_id, user, secret, revoked in (("a1", "alice", ALICE_SECRET, None), ("a2", "alice", REVOKED_SECRET, now),
                                              ("r1", "root", ROOT_SECRET, None)):
            execute(sa.text("INSERT INTO api_keys (key_id, user_id, secret_hash, label, created_at, revoked_at) "
                            "VALUES (:k, :u, :h, 'old', :t, :r)"),
                    {"k": key_id, "u": users[user], "h": hashlib.sha256(secret.encode()).hexdigest(), "t": now,
                     "r": revoked})
        execute(sa.text("INSERT INTO project_members (project_id, user_id, role) VALUES (:p, :u, 'write')"),
                {"p": project, "u": users["alice"]})
        half = len(log) // 2  # a frame boundary is not needed: segments are byte ranges of the copy
        execute(sa.text("INSERT INTO log_heads (project, run_id, size, updated_at) VALUES ('p', 'r', :s, :t)"),
                {"s": len(log), "t": now})
        for offset, length in ((0, half), (half, len(log) - half)):
            execute(sa.text('INSERT INTO log_segments (project, run_id, "offset", length) VALUES (\'p\', \'r\', :o, :l)'),
                    {"o": offset, "l": length})
            if segments is not None:
                (segments / "p" / "r").mkdir(parents=True, exist_ok=True)
                (segments / "p" / "r" / f"{offset:016d}.seg").write_bytes(log[offset : offset + length])
    engine.dispose()


# The server's tables a database made before they moved out of the store's schema has (later
# revisions add others, empty at first).
MOVED_TABLE_NAMES = ["users", "api_keys", "project_members", "log_heads", "log_segments"]


def _rows(engine: sa.Engine) -> dict[str, list]:
    with engine.connect() as connection:
        return {name: sorted(map(tuple, connection.execute(sa.text(f"SELECT * FROM {name}")).all()), key=repr)
                for name in MOVED_TABLE_NAMES}


def test_a_server_database_made_before_the_move_upgrades_in_place_and_keeps_working(store_url, root, tmp_path):
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    log = _recorded(root, "r", 30)
    later = _recorded(tmp_path / "client", "r2", 5)
    server_root = tmp_path / "server"
    segments = tmp_path / "segments" if store_url.startswith("postgresql") else None
    url = store_url if segments is not None else f"sqlite:///{server_root / 'store.sqlite'}"
    if segments is None:  # a single server keeps each copy as a file where a client's log would be
        copy = RunPaths(server_root, "p", "r").log_file
        copy.parent.mkdir(parents=True)
        shutil.copyfile(RunPaths(root, "p", "r").log_file, copy)
    _legacy_database(url, log, segments)
    engine = create_engine(url)
    before = _rows(engine)
    assert all(before.values())

    store = Store(url, root=server_root)
    Accounts(store)  # the server's migrations adopt the tables
    assert _rows(engine) == before
    assert _schema_differences(engine, _both_schemas()) == []  # the layout a fresh database gets
    store.close()

    alice, root_key = {"Authorization": f"Bearer tlk_a1_{ALICE_SECRET}"}, {"Authorization": f"Bearer tlk_r1_{ROOT_SECRET}"}
    app = create_app(server_root, store_url=url, logs_url=str(segments) if segments is not None else None)
    with TestClient(app) as client:
        assert client.get("/api/v1/me", headers=alice).json()["user"] == "alice"
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer tlk_a2_{REVOKED_SECRET}"}).status_code == 401
        assert client.get("/api/v1/projects", headers=alice).json()["projects"] == [{"name": "p", "runs": 1}]
        assert client.get("/api/v1/projects/p/members", headers=root_key).json()["members"] == [
            {"user": "alice", "role": "write"}]
        # The copy (segments on PostgreSQL) is read: the run is indexed from it, whole.
        assert client.get("/api/v1/runs/p/r", headers=alice).json()["run"]["state"] == "finished"
        history = client.get("/api/v1/runs/p/r/history", params={"keys": "loss", "buckets": 0}, headers=alice).json()
        assert history["series"][0]["steps"] == list(range(30))
        console = client.get("/api/v1/runs/p/r/console", headers=alice).json()
        assert [line["text"] for line in console["lines"]] == [f"step {step}" for step in range(0, 30, 10)]
        assert client.get("/api/v1/runs/p/r/log/offset", headers=alice).json()["offset"] == len(log)
        # Alice's old write role still lets her upload.
        put = client.put("/api/v1/runs/p/r2/log", params={"offset": 0}, content=later,
                         headers={**alice, "Content-Type": "application/octet-stream"})
        assert put.status_code == 200, put.text
        assert client.get("/api/v1/projects", headers=alice).json()["projects"] == [{"name": "p", "runs": 2}]
    after = _rows(engine)
    for name in ("users", "project_members"):
        assert after[name] == before[name]
    assert [row[:6] + row[7:] for row in after["api_keys"]] == [row[:6] + row[7:] for row in before["api_keys"]]  # but last_used_at
    assert set(before["log_segments"]) <= set(after["log_segments"])
    engine.dispose()


def _migrate(engine: sa.Engine):
    """``to(revision, how=command.upgrade)``: the server's migrations run to ``revision`` on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(server_schema.MIGRATIONS))

    def to(revision: str, how=command.upgrade) -> None:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            how(config, revision)

    return to


def test_log_copy_keys_widen_to_a_part_of_the_longest_names_and_narrow_back_only_when_every_key_fits(store_url,
                                                                                                        tmp_path):
    """Server migration s0024 widens ``log_heads.run_id`` and ``log_segments.run_id`` to 257
    characters (a 128-character run id, ``/``, a 128-character label: a shared run's part on a
    --logs server) keeping every row; the downgrade refuses, naming the table, the row and what to
    do, while a part's key is longer than s0023's 128 (nothing changed: still at s0024, every row
    kept), and narrows the columns back once none is."""
    store = Store(store_url, root=tmp_path)
    engine = store.engine
    to = _migrate(engine)

    def widths() -> list[int]:
        inspector = sa.inspect(engine)
        return [next(column["type"].length for column in inspector.get_columns(table) if column["name"] == "run_id")
                for table in ("log_heads", "log_segments")]

    def insert(key: str, size: int) -> None:
        with engine.begin() as connection:
            connection.execute(server_schema.log_heads.insert().values(project="p", run_id=key, size=size,
                                                                       updated_at=1.0))
            connection.execute(server_schema.log_segments.insert().values(project="p", run_id=key, offset=0,
                                                                          length=size))

    def rows() -> list[tuple]:
        with engine.connect() as connection:
            return [*sorted(map(tuple, connection.execute(sa.select(server_schema.log_heads)))),
                    *sorted(map(tuple, connection.execute(sa.select(server_schema.log_segments))))]

    def version() -> str:
        with engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT version_num FROM {server_schema.VERSION_TABLE}")).scalar()

    to("s0023")
    assert widths() == [128, 128]
    insert("r", 10)
    insert("r/w1", 5)
    before = rows()
    to("s0024")
    assert widths() == [257, 257] and rows() == before
    longest = "r" * 128 + "/" + "w" * 128
    insert(longest, 7)
    with_longest = rows()
    try:
        to("s0023", command.downgrade)
    except RuntimeError as error:
        message = str(error)
    else:
        raise AssertionError("the downgrade narrowed a column that holds a longer key")
    assert "log_heads has 1 row(s)" in message and longest in message and "longer than 128" in message, message
    assert "Delete those parts' rows" in message, message
    assert version() == "s0024" and widths() == [257, 257] and rows() == with_longest
    with engine.begin() as connection:
        for table in (server_schema.log_heads, server_schema.log_segments):
            connection.execute(table.delete().where(table.c.run_id == longest))
    to("s0023", command.downgrade)
    assert version() == "s0023" and widths() == [128, 128] and rows() == before
    server_schema.migrate(engine)  # to the head again
    assert widths() == [257, 257] and rows() == before
    store.close()


def test_run_order_index_and_prune_states_come_and_go_with_s0025_keeping_every_head(store_url, tmp_path):
    """Server migration s0025 adds ``ix_log_heads_run_order`` (PostgreSQL only: the order a
    --logs server pages its heads in) and the paged media prune's state tables, keeping every
    head; its downgrade drops them (heads kept), and upgrading again brings them back."""
    store = Store(store_url, root=tmp_path)
    engine = store.engine
    postgresql = engine.dialect.name == "postgresql"
    to = _migrate(engine)

    def found() -> tuple[bool, bool]:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        with engine.connect() as connection:
            index = connection.execute(sa.text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_log_heads_run_order'")
                                       ).scalar_one() == 1 if postgresql else False
        return index, {"media_prune_states", "media_prune_digests"} <= tables

    def heads() -> list[tuple]:
        with engine.connect() as connection:
            return sorted(map(tuple, connection.execute(sa.select(server_schema.log_heads))))

    to("s0024")
    with engine.begin() as connection:
        connection.execute(server_schema.log_heads.insert(), [
            {"project": "p", "run_id": key, "size": 3, "updated_at": 1.0} for key in ("r", "r/w1", "s")])
    before = heads()
    assert found() == (False, False)
    to("s0025")
    assert found() == (postgresql, True) and heads() == before
    to("s0024", command.downgrade)
    assert found() == (False, False) and heads() == before
    server_schema.migrate(engine)  # to the head again
    assert found() == (postgresql, True) and heads() == before
    store.close()


def test_prune_answers_and_starts_come_and_go_with_s0026_keeping_every_prune_state(store_url, tmp_path):
    """Server migration s0026 adds ``media_prune_states.answer`` (a page's answer, replayed to a
    retry of its cursor) and ``.started`` (the prune's start: a grant used since is kept), both
    null for a state written before it (answered as before); its downgrade drops them, keeping
    the states, and upgrading again brings them back."""
    store = Store(store_url, root=tmp_path)
    engine = store.engine
    to = _migrate(engine)

    def columns() -> list[str]:
        return [column["name"] for column in sa.inspect(engine).get_columns("media_prune_states")]

    def states() -> list[tuple]:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text("SELECT token, phase, step FROM media_prune_states"))]

    to("s0025")
    row = {"token": "a" * 32, "project": "p", "policy": "{}", "phase": "seen", "step": 3, "after": "p/r", "done": 2,
           "running": "", "note": "", "removed": 0, "freed": 0, "kept_shared": 0, "grants": 0, "kept_running": 0,
           "updated_at": 1.0}
    with engine.begin() as connection:
        connection.execute(sa.text(f"INSERT INTO media_prune_states ({', '.join(row)}) "
                                   f"VALUES ({', '.join(':' + name for name in row)})"), row)
    assert not {"answer", "started"} & set(columns())
    to("s0026")
    assert {"answer", "started"} <= set(columns()) and states() == [("a" * 32, "seen", 3)]
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT answer, started FROM media_prune_states")).one() == (None, None)
    to("s0025", command.downgrade)
    assert not {"answer", "started"} & set(columns()) and states() == [("a" * 32, "seen", 3)]
    server_schema.migrate(engine)  # to the head again
    assert {"answer", "started"} <= set(columns()) and states() == [("a" * 32, "seen", 3)]
    store.close()
