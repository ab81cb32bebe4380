"""Registry roles over HTTP (server/registry_roles.py): every role (none, viewer, member, admin,
and no key at all) against every registry action, each answered as the matrix below says; the
first link into a registry makes its linker the registry's admin; and the migration keeps the
users of a registry made before roles working."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET

import tracklet

# (action, expected status for: no key, no role, viewer, member, admin). A protected alias's move
# is 409 for every role allowed to ask: it opens a promotion request, it never moves at once.
MATRIX = [
    ("read", 401, 403, 200, 200, 200),
    ("read_version", 401, 403, 200, 200, 200),
    ("history", 401, 403, 200, 200, 200),
    ("read_card", 401, 403, 200, 200, 200),
    ("list_members", 401, 403, 200, 200, 200),
    ("read_protections", 401, 403, 200, 200, 200),
    ("read_lineage", 401, 403, 200, 200, 200),  # also needs read on the version's project (all have it)
    ("link", 401, 403, 403, 200, 200),
    ("move_alias", 401, 403, 403, 200, 200),
    ("move_protected_alias", 401, 403, 403, 409, 409),
    ("remove_alias", 401, 403, 403, 200, 200),
    ("edit_card", 401, 403, 403, 200, 200),
    ("review", 401, 403, 403, 403, 200),
    ("protect", 401, 403, 403, 403, 200),
    ("manage_members", 401, 403, 403, 403, 200),
    ("unlink", 401, 403, 403, 200, 200),  # as W&B's registry: members unlink (not a protected alias's version)
]
WHO = ("nokey", "outsider", "viewer", "member", "radmin")


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args)


@pytest.fixture
def deployment(servers, tmp_path):
    """A server with keys; root (a server admin) linked model/net:v0 and v1 from project `train`,
    which every user may read; `production` is protected."""
    root = tmp_path / "server"
    created = _cli("admin", "--dir", str(root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(root, dev=False)
    admin = httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {created.stdout.strip()}"})
    keys = {name: admin.post("/users", json={"name": name}).json()["key"] for name in WHO[1:]}
    run = tracklet.init(project="train", dir=str(tmp_path / "root"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": created.stdout.strip()})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name="net", aliases=["production"] if weights == b"one" else None)
    run.finish()
    for name, role in (("viewer", "viewer"), ("member", "member"), ("radmin", "admin")):
        assert admin.put(f"/registries/model/members/{name}", json={"role": role}).status_code == 200
    for name in WHO[1:]:
        assert admin.put(f"/projects/train/members/{name}", json={"role": "read"}).status_code in (200, 204)
    assert admin.put("/registries/model/collections/net/protections/production", json={"approvals": 1}).status_code == 200
    yield server, admin, keys
    admin.close()


def _act(action: str, client: httpx.Client, admin: httpx.Client) -> httpx.Response:
    """Do ``action`` as ``client``, after ``admin`` (root) set up what it needs."""
    net = "/registries/model/collections/net"
    if action == "read":
        return client.get(net + "/versions")
    if action == "read_version":
        return client.get(net + "/versions/production")
    if action == "history":
        return client.get(net + "/history")
    if action == "read_card":
        return client.get(net + "/versions/v0/card")
    if action == "list_members":
        return client.get("/registries/model/members")
    if action == "read_protections":
        return client.get(net + "/protections")
    if action == "read_lineage":
        return client.get(net + "/versions/v0/lineage")
    if action == "link":
        source = admin.get(net + "/versions/v0").json()["link"]
        return client.post(net + "/links", json={"project": "train", "name": source["source_name"],
                                                 "version": source["source_version"]})
    if action == "move_alias":
        return client.put(net + "/aliases/staging", json={"version": "v1"})
    if action == "move_protected_alias":
        return client.put(net + "/aliases/production", json={"version": "v1"})
    if action == "remove_alias":
        assert admin.put(net + "/aliases/old", json={"version": "v0"}).status_code == 200
        return client.delete(net + "/aliases/old")
    if action == "edit_card":
        return client.put(net + "/versions/v0/card", json={"text": "# net\n"})
    if action == "review":
        opened = admin.put(net + "/aliases/production", json={"version": "v1"})
        assert opened.status_code == 409, opened.text
        (pending,) = [r for r in admin.get("/registry-requests").json()["requests"] if r["requester"] == "root"][-1:]
        return client.post(f"/registry-requests/{pending['id']}/reviews", json={"decision": "reject"})
    if action == "protect":
        return client.put(net + "/protections/gold", json={"approvals": 2})
    if action == "manage_members":
        return client.put("/registries/model/members/outsider", json={"role": "viewer"})
    if action == "unlink":  # a version of its own collection, linked anew each time (v0's source)
        source = admin.get(net + "/versions/v0").json()["link"]
        linked = admin.post("/registries/model/collections/scratch/links", json={
            "project": "train", "name": source["source_name"], "version": source["source_version"]})
        return client.delete(f"/registries/model/collections/scratch/versions/v{linked.json()['link']['version']}")
    raise AssertionError(action)


def test_every_role_against_every_registry_action(deployment):
    server, admin, keys = deployment
    seen: dict[tuple[str, str], int] = {}
    for who in WHO:
        headers = {} if who == "nokey" else {"Authorization": f"Bearer {keys[who]}"}
        with httpx.Client(base_url=server.url + "/api/v1", headers=headers) as client:
            for action, *_ in MATRIX:
                answer = _act(action, client, admin)
                seen[action, who] = answer.status_code
                if action == "manage_members" and answer.status_code == 200:
                    admin.delete("/registries/model/members/outsider")  # outsider stays without a role
    wanted = {(action, who): expected[index] for action, *expected in MATRIX for index, who in enumerate(WHO)}
    assert seen == wanted
    # Nobody's 409 moved the protected alias; the refusals changed nothing.
    production = admin.get("/registries/model/collections/net/versions/production").json()["link"]
    assert production["version"] == 0
    members = admin.get("/registries/model/members").json()["members"]
    assert {m["user"]: m["role"] for m in members} == {"viewer": "viewer", "member": "member", "radmin": "admin"}


def test_a_403_names_the_role_needed_and_listings_show_only_the_callers_registries(deployment):
    server, admin, keys = deployment
    with httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {keys['member']}"}) as member:
        refused = member.put("/registries/model/collections/net/protections/production", json={"approvals": 0})
        assert refused.status_code == 403
        assert refused.json()["detail"] == ("user 'member' needs the admin role in registry 'model' to protect "
                                            "(has member)")
        assert [(c["collection"], c["role"]) for c in member.get("/registries").json()["collections"]] == [
            ("net", "member")]
    with httpx.Client(base_url=server.url + "/api/v1",
                      headers={"Authorization": f"Bearer {keys['outsider']}"}) as outsider:
        assert outsider.get("/registries").json()["collections"] == []
        assert outsider.get("/registry-requests").json()["requests"] == []
        # outsider's first link into a registry without members makes them its admin
        source = admin.get("/registries/model/collections/net/versions/v1").json()["link"]
        made = outsider.post("/registries/team-a/collections/net/links",
                             json={"project": "train", "name": source["source_name"], "version": source["source_version"]})
        assert made.status_code == 200, made.text
        assert [(c["registry"], c["role"]) for c in outsider.get("/registries").json()["collections"]] == [
            ("team-a", "admin")]
        assert outsider.get("/registries/team-a/members").json()["members"] == [{"user": "outsider", "role": "admin"}]
    with httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {keys['member']}"}) as member:
        # ... and a registry with members is not taken over by linking into it
        assert member.post("/registries/team-a/collections/other/links",
                           json={"project": "train", "name": source["source_name"],
                                 "version": source["source_version"]}).status_code == 403


def test_the_migration_makes_earlier_linkers_admins_of_their_registries(tmp_path):
    """A database at s0007 (before roles) with a registry alice linked into: after the upgrade
    alice is that registry's admin, and nobody else got a role."""
    from alembic import command
    from alembic.config import Config

    from tracklet.server import schema as server_schema
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    config = Config()
    config.set_main_option("script_location", str(server_schema.MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "s0007")
        users = sa.table("users", sa.column("id"), sa.column("name"), sa.column("is_admin"), sa.column("created_at"),
                         sa.column("disabled"))
        connection.execute(users.insert(), [{"id": 1, "name": "alice", "is_admin": False, "created_at": 0,
                                             "disabled": False},
                                            {"id": 2, "name": "bob", "is_admin": False, "created_at": 0,
                                             "disabled": False}])
        links = sa.table("registry_links", *(sa.column(name) for name in (
            "registry", "collection", "version", "source_project", "source_name", "source_version",
            "source_digest", "linked_at", "linked_by")))
        connection.execute(links.insert(), [{"registry": "model", "collection": "net", "version": number,
                                             "source_project": "p", "source_name": "net", "source_version": number,
                                             "source_digest": "0" * 64, "linked_at": 0, "linked_by": "alice"}
                                            for number in (0, 1)])
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "s0009")
        assert connection.execute(sa.text("SELECT registry, user_id, role FROM registry_members")).all() == [
            ("model", 1, "admin")]


def test_a_registry_with_collections_but_no_members_is_not_claimed_by_linking(deployment):
    """A registry linked into before roles by no user of this server (e.g. a --dev server's `dev`)
    has no admin after the upgrade; a user linking into it does not become one."""
    server, admin, keys = deployment
    source = admin.get("/registries/model/collections/net/versions/v0").json()["link"]
    body = {"project": "train", "name": source["source_name"], "version": source["source_version"]}
    assert admin.post("/registries/legacy/collections/net/links", json=body).status_code == 200  # root: no role row
    with httpx.Client(base_url=server.url + "/api/v1",
                      headers={"Authorization": f"Bearer {keys['outsider']}"}) as outsider:
        refused = outsider.post("/registries/legacy/collections/other/links", json=body)
        assert refused.status_code == 403, refused.text
        missing = outsider.post("/registries/fresh/collections/net/links", json={**body, "version": 99})
        assert missing.status_code == 404  # a failed link claims nothing
        assert outsider.get("/registries/fresh/members").status_code == 403
    assert admin.get("/registries/legacy/members").json()["members"] == []


def test_two_first_links_into_a_new_registry_make_one_admin(pg_url, tmp_path):
    """Two users' first links into one new registry at the same moment (PostgreSQL, where nothing
    else serializes the two transactions): one becomes its admin, the other gets no role."""
    import threading

    import sqlalchemy as sa

    from tracklet.server.auth import Principal
    from tracklet.server.registry_roles import RegistryRoles
    from tracklet.server.schema import migrate as migrate_server, users

    from tracklet.store import Store

    engine = Store(pg_url, root=tmp_path).engine
    try:
        migrate_server(engine)
        with engine.begin() as connection:
            ids = {name: connection.execute(users.insert().values(name=name, is_admin=False, disabled=False,
                                                                   created_at=0.0).returning(users.c.id)).scalar()
                   for name in ("alice", "bob")}
        both_read = threading.Barrier(2, timeout=5)

        @sa.event.listens_for(engine, "before_cursor_execute")
        def meet(conn, cursor, statement, params, context, executemany):
            if statement.lstrip().upper().startswith("SELECT REGISTRY_MEMBERS.USER_ID"):
                try:
                    both_read.wait()  # both are about to read "no members" (the lock makes one wait first)
                except threading.BrokenBarrierError:
                    pass

        roles = RegistryRoles(engine)
        got: dict[str, str | None] = {}
        threads = [threading.Thread(target=lambda name=name: got.__setitem__(
            name, roles.claim(Principal(ids[name], name, False), "newreg"))) for name in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(member["role"] for member in roles.members("newreg")) == ["admin"]
        assert sorted(role or "none" for role in got.values()) == ["admin", "none"]
    finally:
        engine.dispose()
