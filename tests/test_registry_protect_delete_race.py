"""Deleting an artifact version through its registry links (``break_registry_links``) races what
guards a registry version: an alias protected on it, a promotion request opened onto it. The
deletion checks the guards holding the *artifact* collection's lock; whatever adds a guard holds
that lock too (after the registry collection's, as a link does), so one of the two always sees the
other: a protected alias (or a pending request) never names a version whose files were deleted,
and nothing deadlocks.

Deterministic on PostgreSQL: the guard is added while the deletion sits between its check and its
commit (observed through ``pg_locks``, no timing). Threads against real servers (SQLite and
PostgreSQL) for the many-round races, a watchdog only as a failure guard against a deadlock."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from conftest import QUIET

import tracklet
from tracklet.artifacts.registry import VersionInfo
from tracklet.errors import ArtifactError, ArtifactNotFound, PromotionRequired, RegistryError

WATCHDOG_S = 120  # only a failure guard: a deadlock would otherwise hang the suite


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def pg_registries(pg_url, tmp_path):
    """A server's PostgreSQL artifact registry and model registry on one database, wired as the
    server wires them (``routes_registry.registry_of``), with ``vision/m:v0`` linked as
    ``model/m:v0`` holding alias ``production``."""
    from tracklet.registry.sql import ModelRegistry
    from tracklet.server.artifact_registry_sql import SqlRegistry
    from tracklet.server.schema import migrate
    from tracklet.store import Store

    store = Store(pg_url, root=tmp_path)
    migrate(store.engine)
    artifacts = SqlRegistry(store.engine)
    registry = ModelRegistry(store.engine, holding=lambda connection, source: artifacts.holding(
        connection, source.project, source.name, source.version))
    info, _ = artifacts.commit(VersionInfo(project="vision", name="m", version=-1, type="model", digest=_sha(b"d"),
                                           manifest=_sha(b"m"), size=1, file_count=1), [])
    registry.link("model", "m", info, ["production"])
    yield store.engine, artifacts, registry
    store.close()


def _waiting_on_a_lock(engine: sa.Engine) -> bool:
    """Whether some backend waits for an advisory lock (the guard's writer, blocked by the deletion)."""
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar_one() > 0


def _guard(registry, kind: str) -> None:
    if kind == "protect":
        registry.protect("model", "m", "production")
    else:  # a promotion request opened onto v0: "staging" is protected, so moving it onto v0 opens one
        registry.set_alias("model", "m", "staging", "v0")


@pytest.mark.parametrize("kind", ["protect", "request"])
def test_a_guard_added_while_a_deletion_breaking_its_link_commits_waits_and_is_refused(pg_registries, kind):
    engine, artifacts, registry = pg_registries
    if kind == "request":
        registry.protect("model", "m", "staging")
    outcome: list[BaseException | None] = []

    def add_guard() -> None:
        try:
            _guard(registry, kind)
        except (ArtifactNotFound, RegistryError, PromotionRequired) as error:
            outcome.append(error)
        else:
            outcome.append(None)

    def check(connection) -> None:  # what the route's refuse_linked does with break_registry_links
        linked = registry.links_to("vision", "m", 0, connection=connection)
        assert [link.path for link in linked] == ["model/m:v0"]
        if registry.guarded(linked, connection=connection):
            raise ArtifactError("guarded")
        # Checked and found unguarded: now the guard is added, before the deletion commits.
        adder.start()
        while adder.is_alive() and not _waiting_on_a_lock(engine):
            adder.join(0.01)

    adder = threading.Thread(target=add_guard)
    artifacts.delete_version("vision", "m", 0, check=check)  # the deletion won: it checked first
    adder.join(WATCHDOG_S)
    assert not adder.is_alive(), "the guard's writer never finished (deadlock)"

    error = outcome[0]
    if kind == "protect" or not isinstance(error, PromotionRequired):
        assert isinstance(error, RegistryError) and "was deleted" in str(error), error  # refused, saying why
    assert registry.protections("model", "m").keys() == ({"staging"} if kind == "request" else set())
    assert registry.requests("model", "m") == []  # no request targets a version without files
    assert registry.guarded(registry.links_to("vision", "m", 0)) == []


def test_a_guard_added_before_the_deletion_checks_refuses_the_deletion(pg_registries):
    """The other order: the guard commits first, and the deletion's check sees it."""
    engine, artifacts, registry = pg_registries
    registry.protect("model", "m", "production")

    def check(connection) -> None:
        guarded = registry.guarded(registry.links_to("vision", "m", 0, connection=connection), connection=connection)
        if guarded:
            raise ArtifactError(", ".join(guarded))

    with pytest.raises(ArtifactError, match="protected alias production"):
        artifacts.delete_version("vision", "m", 0, check=check)
    assert artifacts.version("vision", "m", "v0").version == 0


# ------------------------------------------------------------ many rounds against real servers

ROUNDS = 10


def _server(servers, tmp_path, request, database: str):
    """A ``--dev`` server where an online run logged ``vision/m`` v0..v(ROUNDS-1), each linked as
    a registry version that holds alias ``a<N>``."""
    store_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    server = servers(tmp_path / "server", store=store_url)
    run = tracklet.init(project="vision", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for index in range(ROUNDS):
        (tmp_path / "m.bin").write_bytes(b"content %d" % index)
        assert run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait().upload_error is None
    run.finish()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for index in range(ROUNDS):
            response = http.post("/api/v1/registries/model/collections/m/links",
                                 json={"project": "vision", "name": "m", "version": index, "aliases": [f"a{index}"]})
            assert response.status_code == 200 and response.json()["link"]["version"] == index, response.text
    return server


def _at_once(*actions):
    """Run ``actions`` at once (released together); their answers. A deadlock fails the test."""
    start = threading.Barrier(len(actions))

    def go(action):
        start.wait()
        return action()

    with ThreadPoolExecutor(len(actions)) as pool:
        futures = [pool.submit(go, action) for action in actions]
        return [future.result(timeout=WATCHDOG_S) for future in futures]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_servers_protected_alias_never_names_a_version_whose_files_were_deleted(servers, tmp_path, request,
                                                                                  database):
    """Protecting alias ``aN`` and deleting ``vision/m:vN`` with ``break_registry_links`` at once,
    while another version is linked at the same moment (link and deletion lock in opposite
    orders if done naively): exactly one of protect and deletion wins each round, nothing
    deadlocks, and no protected alias names a version without files."""
    server = _server(servers, tmp_path, request, database)
    clients = [httpx.Client(base_url=server.url, timeout=WATCHDOG_S) for _ in range(3)]
    outcomes = []
    for number in range(ROUNDS):
        def protect(number=number) -> bool:
            response = clients[0].put(f"/api/v1/registries/model/collections/m/protections/a{number}",
                                      json={"approvals": 1})
            assert response.status_code in (200, 409), response.text
            return response.status_code == 200

        def delete(number=number) -> bool:
            response = clients[1].delete(f"/api/v1/projects/vision/artifacts/m/versions/v{number}",
                                         params={"break_registry_links": "true"})
            assert response.status_code in (200, 409), response.text
            return response.status_code == 200

        def link() -> bool:  # the same collections' locks, taken registry first
            response = clients[2].post("/api/v1/registries/model/collections/m/links",
                                       json={"project": "vision", "name": "m", "version": ROUNDS - 1})
            assert response.status_code in (200, 404), response.text
            return True

        protected, deleted, _ = _at_once(protect, delete, link)
        outcomes.append((protected, deleted))
    for client in clients:
        client.close()

    assert all(protected != deleted for protected, deleted in outcomes), outcomes  # exactly one wins each round
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/api/v1/registries/model/collections/m/protections")
        protected = {item["alias"] for item in answer.json()["protections"]}
        assert protected == {f"a{number}" for number, (won, _) in enumerate(outcomes) if won}
        for number in range(ROUNDS):  # the invariant: a protected alias names a version that has its files
            read = http.get(f"/api/v1/registries/model/collections/m/versions/v{number}")
            assert read.status_code == 200, read.text
            assert read.json()["files_deleted"] is outcomes[number][1], (number, read.json())


def test_a_data_roots_protected_alias_never_names_a_version_whose_files_were_deleted(tmp_path):
    """``tracklet artifact rm --force`` (``lookup.delete_version(break_links=True)``) and a local
    ``protect`` at once: the store's file lock and the registry's SQLite database, exactly one wins."""
    from tracklet.artifacts.lookup import delete_version
    from tracklet.registry.service import open_local

    root = tmp_path / "root"
    run = tracklet.init(project="vision", dir=str(root), settings=QUIET)
    logged = []
    for index in range(ROUNDS):
        (tmp_path / "m.bin").write_bytes(b"content %d" % index)
        logged.append(run.log_artifact(tmp_path / "m.bin", name="m", type="model").wait())
    run.finish()
    for index, artifact in enumerate(logged):
        artifact.link("model/m", aliases=[f"a{index}"])
    registry = open_local(root, create=False)
    assert registry is not None

    outcomes = []
    for index, artifact in enumerate(logged):
        def protect(index=index) -> bool:
            try:
                registry.protect("model", "m", f"a{index}")
            except RegistryError as error:
                assert "was deleted (its files are gone)" in str(error)
                return False
            return True

        def delete(info=artifact._info) -> bool:
            try:
                delete_version(root, info, break_links=True)
            except ArtifactError as error:
                assert "protected alias a" in str(error)
                return False
            return True

        outcomes.append(tuple(_at_once(protect, delete)))

    assert all(protected != deleted for protected, deleted in outcomes), outcomes
    assert registry.protections("model", "m").keys() == {f"a{n}" for n, (won, _) in enumerate(outcomes) if won}
    api = tracklet.Api(root)
    for link in registry.versions("model", "m"):
        if set(link.aliases) & registry.protections("model", "m").keys():
            assert api.artifact(f"vision/m:v{link.source_version}").version == f"v{link.source_version}"
