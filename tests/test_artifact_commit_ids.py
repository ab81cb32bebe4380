"""Where a server keeps the commit ids it answered (docs/artifacts.md, "Sent again: the commit id"):
on PostgreSQL the table ``artifact_commits`` (server migration s0023), one row per commit, made or
reused, which goes with its version; on SQLite each collection's ``commits/<id>.json``. The same
rules on both registries: a commit sent again is answered with the version it answered, the commit
of a deleted version sent again is a new commit, and no alias listing, ``latest`` or deletion's
alias check sees a commit id. A database from before s0023, which kept a no-op commit's id as an
``artifact_aliases`` row ``#commit:<id>``, has them moved into the table (and back, migrated down).

End to end through real servers: tests/test_artifacts_incremental_online.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tracklet.artifacts.registry import LocalRegistry, VersionInfo
from tracklet.server import schema as server_schema
from tracklet.server.schema import artifact_aliases, artifact_commits

A, B, C, D, E, F = (letter * 32 for letter in "abcdef")


def _info(content: bytes, commit_id: str, run: str | None, name: str = "ds") -> VersionInfo:
    digest = hashlib.sha256(content).hexdigest()
    return VersionInfo(project="p", name=name, version=-1, type="dataset", digest=digest, manifest=digest,
                       size=len(content), file_count=1, logged_by=run, commit_id=commit_id)


def _commits(engine: sa.Engine) -> dict[str, tuple]:
    """Collection p/ds's commit ids: (version, logged_by, whether created_at is known)."""
    with engine.connect() as connection:
        return {row.commit_id: (row.version, row.logged_by, row.created_at is not None)
                for row in connection.execute(sa.select(artifact_commits).where(artifact_commits.c.name == "ds"))}


def _alias_rows(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return sorted(map(tuple, connection.execute(sa.select(artifact_aliases.c.alias, artifact_aliases.c.version))))


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator:
    """A new database, the store's tables only (its server tables migrated by the test)."""
    from tracklet.store import Store

    with Store(pg_url, root=tmp_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def head_store(postgres_url: str, tmp_path_factory) -> Iterator:
    """A database of the session's cluster at the server's head, shared by the module's tests
    (each its own collection, or one it deletes at its end)."""
    from pgcluster import create_database, drop_database

    from tracklet.store import Store

    name = f"commits{os.getpid()}"
    url = create_database(postgres_url, name)
    with Store(url, root=tmp_path_factory.mktemp("commit-ids")) as opened:
        server_schema.migrate(opened.engine)
        yield opened
    drop_database(postgres_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path: Path):
    """A server's registry: LocalRegistry on a data root (a server on SQLite), SqlRegistry on PostgreSQL."""
    if request.param == "sqlite":
        return LocalRegistry(tmp_path / "artifacts")
    from tracklet.server.artifact_registry_sql import SqlRegistry

    return SqlRegistry(request.getfixturevalue("head_store").engine)


def test_a_commit_is_answered_as_it_was_until_its_version_is_deleted(registry):
    def commit(content: bytes, commit_id: str, run: str) -> tuple[int, bool]:
        stored, reused = registry.commit(_info(content, commit_id, run), [], by_commit_id=True)
        assert not any(alias.startswith("#") for alias in stored.aliases)
        return stored.version, reused

    assert commit(b"one", A, "p/a") == (0, False)
    assert commit(b"one", C, "p/c") == (0, True)  # a no-op commit: the latest had its content
    assert commit(b"two", B, "p/b") == (1, False)
    assert commit(b"one", C, "p/c") == (0, True)  # sent again after v1 landed: answered as it was
    assert commit(b"one", A, "p/a") == (0, True)
    assert commit(b"three", F, "p/f") == (2, False)
    assert registry.alias_targets("p", "ds") == {"latest": 2}
    assert [version.aliases for version in registry.versions("p", "ds")] == [["v0"], ["v1"], ["v2", "latest"]]
    if hasattr(registry, "engine"):
        assert _alias_rows(registry.engine) == []  # no commit id among the aliases
        assert _commits(registry.engine) == {A: (0, "p/a", True), B: (1, "p/b", True), C: (0, "p/c", True),
                                             F: (2, "p/f", True)}

    assert registry.delete_version("p", "ds", 0) == []  # its commit ids are no aliases: no drop_aliases
    if hasattr(registry, "engine"):
        assert _commits(registry.engine) == {B: (1, "p/b", True), F: (2, "p/f", True)}  # v0's went with it
    # Its commits sent again are new commits: the latest (v2) has other content, so a new version,
    # numbered past every version ever made, answered as that one when sent once more; or the latest
    # had their content.
    assert commit(b"one", C, "p/c") == (3, False)
    assert commit(b"one", C, "p/c") == (3, True)
    assert commit(b"one", A, "p/a") == (3, True)
    assert commit(b"one", A, "p/a") == (3, True)
    # Another run's commit with the id is its own (ids are random: a copied one), not answered as C.
    assert commit(b"four", C, "p/other") == (4, False)

    registry.delete_collection("p", "ds")
    if hasattr(registry, "engine"):
        assert _commits(registry.engine) == {} and _alias_rows(registry.engine) == []


def test_a_commit_sent_again_is_found_by_its_primary_key(head_store):
    """The lookup of a commit sent again reads ``artifact_commits``' primary key (PostgreSQL's plan,
    with statistics of a collection's 300 commits; scans discouraged, as the table is small), not
    every commit of the collection."""
    from tracklet.server.artifact_registry_sql import SqlRegistry, recorded_commit

    store = head_store
    SqlRegistry(store.engine).commit(_info(b"one", A, "p/a", "many"), [], by_commit_id=True)
    with store.engine.begin() as connection:
        connection.execute(artifact_commits.insert(), [
            {"project": "p", "name": "many", "commit_id": f"{n:032x}", "version": 0, "logged_by": "p/a",
             "created_at": 1.0} for n in range(300)])
        connection.exec_driver_sql("ANALYZE artifact_commits")
    query = recorded_commit("p", "many", A).compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {query}").scalars())
    assert "artifact_commits_pkey" in plan and "Seq Scan" not in plan, plan


def test_a_database_at_s0022_has_its_commit_rows_moved_and_back(store):
    """Server migration s0023 on a PostgreSQL database written by s0022's server: its versions' ids
    and its ``#commit:<id>`` alias rows become ``artifact_commits`` rows, answered as before (a no-op
    commit's to any run that sends it again: its run wasn't recorded), and no alias row is left
    but the aliases; migrated down, the no-op commits' rows are aliases again and nothing else is."""
    from alembic import command
    from alembic.config import Config

    from tracklet.server.artifact_registry_sql import SqlRegistry

    config = Config()
    config.set_main_option("script_location", str(server_schema.MIGRATIONS))

    def to(revision: str, how=command.upgrade) -> None:
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            how(config, revision)

    to("s0022")
    with store.engine.begin() as connection:
        for number, (content, commit_id, run) in enumerate([(b"one", A, "p/a"), (b"two", B, "p/b"),
                                                            (b"two", None, "p/old")]):
            digest = hashlib.sha256(content).hexdigest()
            connection.execute(sa.text(
                "INSERT INTO artifact_versions (project, name, version, type, digest, manifest, size, file_count,"
                " description, metadata, created_at, logged_by, commit_id) VALUES ('p', 'ds', :number, 'dataset',"
                " :digest, :digest, 3, 1, '', '{}', 5.0, :run, :commit_id)"),
                {"number": number, "digest": digest, "run": run, "commit_id": commit_id})
        connection.execute(sa.text("INSERT INTO artifact_aliases (project, name, alias, version) VALUES"
                                   f" ('p', 'ds', 'best', 0), ('p', 'ds', '#commit:{C}', 1),"
                                   f" ('p', 'ds', '#commit:{D}', 0)"))
    server_schema.migrate(store.engine)  # to the head

    assert _alias_rows(store.engine) == [("best", 0)]
    assert _commits(store.engine) == {A: (0, "p/a", True), B: (1, "p/b", True), C: (1, None, False),
                                      D: (0, None, False)}
    registry = SqlRegistry(store.engine)
    assert registry.alias_targets("p", "ds") == {"best": 0, "latest": 2}
    # Sent again after v2 landed (other content than v0's): answered as they were.
    assert registry.commit(_info(b"two", C, "p/c"), [], by_commit_id=True)[0].version == 1
    assert registry.commit(_info(b"one", D, "p/d"), [], by_commit_id=True)[0].version == 0
    assert registry.commit(_info(b"one", A, "p/a"), [], by_commit_id=True)[0].version == 0
    registry.commit(_info(b"two", E, "p/e"), [], by_commit_id=True)  # a no-op commit after s0023

    to("s0022", command.downgrade)
    assert "artifact_commits" not in sa.inspect(store.engine).get_table_names()
    assert _alias_rows(store.engine) == [(f"#commit:{C}", 1), (f"#commit:{D}", 0), (f"#commit:{E}", 2),
                                         ("best", 0)]
    to("s0023")
    assert _alias_rows(store.engine) == [("best", 0)]
    assert _commits(store.engine) == {A: (0, "p/a", True), B: (1, "p/b", True), C: (1, None, False),
                                      D: (0, None, False), E: (2, None, False)}
