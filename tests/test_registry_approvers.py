"""Approval policies that name an approver role (docs/registry.md#protected-aliases-and-promotion-requests):
a protected alias takes N approvals from holders of its approver role or a higher registry role,
never the requester. Over HTTP on a real `tracklet server` with keys, on SQLite and PostgreSQL: a
member's approval counts where members approve; a viewer, a user without a role and the requester
get 403 naming the role needed; the Nth approval moves the alias; a rejection keeps its comment;
the policy is shown, changed and audited; and in-process the rule holds under the collection's
lock, and an older local registry.sqlite gains the column."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET
from serverproc import keyed_deployment

import tracklet
from tracklet.artifacts.registry import VersionInfo
from tracklet.errors import PromotionRequired, PromotionReviewRefused, RegistryError
from tracklet.registry.sql import ModelRegistry
from tracklet.registry.tables import metadata

NET = "/registries/model/collections/"
USERS = {"alice": "admin", "mia": "member", "max": "member", "vic": "viewer", "out": None}


@pytest.fixture(scope="module")
def keyed(module_store, module_servers, tmp_path_factory):
    """A server with keys (SQLite or PostgreSQL store) the module's tests share; each user of ``USERS``
    holds the role it names in registry `model`."""
    server, root, keys = keyed_deployment(module_servers, tmp_path_factory.mktemp("server"), module_store, USERS)
    for name, role in USERS.items():
        if role is not None:
            assert root.put(f"/registries/model/members/{name}", json={"role": role}).status_code == 200
    clients = {name: httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {secret}"},
                                  timeout=60) for name, secret in keys.items() if name != "root"}
    yield server, root, clients, keys["root"]
    for client in (root, *clients.values()):
        client.close()


_collections = iter(range(1_000_000))


@pytest.fixture
def deployment(keyed, tmp_path):
    """The module's server; root linked v0 and v1 into a collection of registry `model` of the test's own
    (its name), production on v0."""
    server, root, clients, key = keyed
    name = f"net{next(_collections)}"
    run = tracklet.init(project=f"train-{name}", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": key})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name=name, aliases=["production"] if weights == b"one" else None)
    run.finish()
    return server, root, clients, name


def _request(client: httpx.Client, net: str, version: str, reason: str = "") -> int:
    opened = client.put(net + "/aliases/production", json={"version": version, "reason": reason})
    assert opened.status_code == 409, opened.text
    return int(opened.json()["detail"].split("#")[1].split()[0])


def _review(client: httpx.Client, request_id: int, decision: str = "approve", comment: str = "") -> httpx.Response:
    return client.post(f"/registry-requests/{request_id}/reviews", json={"decision": decision, "comment": comment})


def test_members_approve_where_the_policy_says_members_and_others_get_403(deployment):
    server, root, users, collection = deployment
    net = NET + collection
    alice, mia, max_, vic, out = (users[name] for name in ("alice", "mia", "max", "vic", "out"))
    # A registry admin sets the policy: 2 approvals from members (or admins); everyone may read it.
    policy = alice.put(net + "/protections/production", json={"approvals": 2, "approver_role": "member"})
    assert policy.status_code == 200, policy.text
    assert policy.json() == {"alias": "production", "approvals": 2, "approver_role": "member", "check": None,
                             "check_timeout": None}
    assert vic.get(net + "/protections").json()["protections"] == [policy.json()]
    assert mia.put(net + "/protections/production", json={"approvals": 1}).status_code == 403  # admins set it

    request_id = _request(mia, net, "v1", reason="v1 wins")
    listed = {name: {r["id"]: r for r in client.get("/registry-requests").json()["requests"]}[request_id]
              for name, client in users.items() if name != "out"}
    assert listed["max"]["approver_role"] == "member"
    assert {name: item["may_review"] for name, item in listed.items()} == {
        "alice": True, "mia": False, "max": True, "vic": False}  # mia asked; vic is only a viewer

    refused = {name: _review(client, request_id) for name, client in (("vic", vic), ("out", out), ("mia", mia))}
    assert {name: answer.status_code for name, answer in refused.items()} == {"vic": 403, "out": 403, "mia": 403}
    assert refused["vic"].json()["detail"] == (
        f"vic may not review promotion request #{request_id}: alias 'production' of model/{collection} takes approvals "
        "from the member role or a higher one in registry 'model', and vic has viewer")
    assert refused["out"].json()["detail"].endswith("and out has no role there")
    assert refused["mia"].json()["detail"] == (f"promotion request #{request_id} was made by mia: someone else "
                                               "must review it")
    assert _review(vic, request_id, "reject", "no").status_code == 403  # a rejection is a review too

    first = _review(max_, request_id, comment="metrics checked")  # a member's approval counts
    assert first.status_code == 200, first.text
    assert first.json()["request"]["state"] == "pending"
    assert [r["reviewer"] for r in first.json()["request"]["reviews"]] == ["max"]
    assert root.get(net + "/versions/production").json()["link"]["version"] == 0  # 1 of 2: not moved
    assert _review(max_, request_id).status_code == 400  # once each

    second = _review(alice, request_id)  # an admin holds a higher role: counts too, and is the 2nd
    assert second.json()["request"]["state"] == "approved"
    assert root.get(net + "/versions/production").json()["link"]["version"] == 1
    moved = root.get(net + "/history", params={"alias": "production"}).json()["events"][-1]
    assert (moved["to_version"], moved["actor"], moved["request_id"]) == (1, "mia", request_id)

    # A rejection, with its comment, closes a request; the alias stays.
    back = _request(max_, net, "v0", reason="roll back")
    rejected = _review(mia, back, "reject", "regressed on night images")
    assert rejected.status_code == 200
    assert rejected.json()["request"]["state"] == "rejected"
    assert [(r["reviewer"], r["decision"], r["comment"]) for r in rejected.json()["request"]["reviews"]] == [
        ("mia", "reject", "regressed on night images")]
    assert root.get(net + "/versions/production").json()["link"]["version"] == 1


def test_a_policy_change_is_audited_and_applies_to_pending_requests(deployment):
    server, root, users, collection = deployment
    net = NET + collection
    alice, mia, max_ = users["alice"], users["mia"], users["max"]
    assert alice.put(net + "/protections/production", json={"approvals": 1, "approver_role": "member"}).status_code == 200
    request_id = _request(mia, net, "v1")
    # Back to admins only: max (a member) may no longer review the pending request.
    assert alice.put(net + "/protections/production", json={"approvals": 1}).json()["approver_role"] == "admin"
    refused = _review(max_, request_id)
    assert refused.status_code == 403 and "takes approvals from the admin role" in refused.json()["detail"]
    assert alice.put(net + "/protections/production", json={"approvals": 0}).status_code == 200  # lifted

    events = root.get("/audit", params={"action": "protect", "order": "asc",
                                        "target": f"registries/model/collections/{collection}/"}).json()["events"]
    assert [(e["actor"], e["status"]) for e in events] == [("alice", 200)] * 3
    details = [e["detail"] for e in events]
    assert details[0]["previous"] is None
    assert details[0]["policy"] == {"alias": "production", "approvals": 1, "approver_role": "member", "check": None,
                                    "check_timeout": None}
    assert details[1]["previous"]["approver_role"] == "member" and details[1]["policy"]["approver_role"] == "admin"
    assert details[2]["previous"]["approver_role"] == "admin" and details[2]["policy"] is None
    assert alice.put(net + "/protections/production",
                     json={"approvals": 1, "approver_role": "owner"}).status_code == 422  # not a registry role


def test_the_python_api_and_cli_show_and_set_the_policy(deployment):
    server, root, users, collection = deployment
    net = NET + collection
    alice_key = users["alice"].headers["Authorization"].split()[1]
    with tracklet.Api(base_url=server.url, api_key=alice_key) as api:
        api.registry.protect("model", collection, "production", 2, approver_role="viewer")
        (policy,) = api.registry.protections("model", collection).values()
        assert (policy.alias, policy.approvals, policy.approver_role) == ("production", 2, "viewer")
    env = {"TRACKLET_API_KEY": alice_key}
    shown = serverproc.cli("registry", "--url", server.url, "protections", f"model/{collection}", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "production\t2 approval(s)\tby viewer or higher\n"
    changed = serverproc.cli("registry", "--url", server.url, "protect", f"model/{collection}", "production", "--approvals", "1",
                             "--approver-role", "member", env=env)
    assert changed.returncode == 0, changed.stderr
    assert users["vic"].get(net + "/protections").json()["protections"][0]["approver_role"] == "member"


def _version(number: int) -> VersionInfo:
    return VersionInfo(project="p", name="net", version=number, type="model", digest=f"{number:064x}",
                       manifest="a" * 64, size=1, file_count=1)


def test_the_registry_checks_the_reviewers_role_against_the_policy_in_force(store_url):
    engine = sa.create_engine(store_url)
    metadata.create_all(engine)
    registry = ModelRegistry(engine)
    for number in range(2):
        registry.link("model", "net", _version(number), actor="ci")
    registry.protect("model", "net", "production", 1, approver_role="member")
    with pytest.raises(PromotionRequired) as opened:
        registry.set_alias("model", "net", "production", "v1", actor="alice")
    request_id = opened.value.request_id
    assert registry.request(request_id).approver_role == "member"
    for role in ("viewer", None):
        with pytest.raises(PromotionReviewRefused, match="takes approvals from the member role"):
            registry.review(request_id, "approve", reviewer="bob", reviewer_role=role, roles=True)
    assert registry.request(request_id).reviews == []  # a refusal records nothing
    previous = registry.protect("model", "net", "production", 1, approver_role="admin")
    assert (previous.approvals, previous.approver_role) == (1, "member")
    with pytest.raises(PromotionReviewRefused, match="the admin role"):
        registry.review(request_id, "approve", reviewer="bob", reviewer_role="member", roles=True)
    with pytest.raises(RegistryError, match="an approver role is one of viewer, member, admin"):
        registry.protect("model", "net", "production", 1, approver_role="owner")
    assert registry.review(request_id, "approve", reviewer="bob", reviewer_role="admin", roles=True).state == "approved"
    assert registry.resolve("model", "net", "production").version == 1
    engine.dispose()


def test_a_local_registry_made_before_approver_roles_gains_the_column(tmp_path):
    from tracklet.registry.service import open_local, registry_file

    path = registry_file(tmp_path)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as old:  # the table as it was before (no approver_role), one protection
        old.execute("CREATE TABLE registry_protections (registry VARCHAR(128), collection VARCHAR(128), "
                    "alias VARCHAR(128), approvals INTEGER NOT NULL, PRIMARY KEY (registry, collection, alias))")
        old.execute("INSERT INTO registry_protections VALUES ('model', 'net', 'production', 2)")
    registry = open_local(tmp_path)
    assert registry is not None
    (policy,) = registry.protections("model", "net").values()
    assert (policy.approvals, policy.approver_role) == (2, "admin")
