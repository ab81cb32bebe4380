"""Protected aliases and promotion requests (tracklet/registry/sql.py): four eyes before an alias
moves, every decision kept, and of concurrent promotions of one alias exactly one wins (PostgreSQL
row lock, real server processes' worth of engines)."""

from __future__ import annotations

import subprocess
import threading

import httpx
import pytest
import serverproc
import sqlalchemy as sa
from conftest import QUIET

import tracklet
from tracklet.artifacts.registry import VersionInfo
from tracklet.errors import PromotionCheckRequired, PromotionRequired, RegistryError
from tracklet.registry.sql import ModelRegistry
from tracklet.registry.tables import metadata


def _version(number: int) -> VersionInfo:
    return VersionInfo(project="p", name="net", version=number, type="model", digest=f"{number:064x}",
                       manifest="a" * 64, size=1, file_count=1)


def _registry(url: str) -> ModelRegistry:
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    return ModelRegistry(engine)


def test_a_protected_alias_moves_only_when_someone_else_approves(store_url):
    registry = _registry(store_url)
    for number in range(3):
        registry.link("model", "net", _version(number), actor="ci")
    registry.set_alias("model", "net", "production", "v0", actor="alice")
    registry.protect("model", "net", "production", approvals=2)
    with pytest.raises(PromotionRequired, match="promotion request #1 .to v2. waits for approval") as opened:
        registry.set_alias("model", "net", "production", "v2", actor="alice", reason="v2 wins the A/B test")
    request_id = opened.value.request_id
    assert registry.resolve("model", "net", "production").version == 0  # not moved yet
    with pytest.raises(RegistryError, match="someone else must review it"):
        registry.review(request_id, "approve", reviewer="alice")
    assert registry.review(request_id, "approve", reviewer="bob", comment="metrics checked").state == "pending"
    with pytest.raises(RegistryError, match="bob has reviewed promotion request #1 already"):
        registry.review(request_id, "approve", reviewer="bob")
    with pytest.raises(PromotionRequired, match="can't be removed"):
        registry.remove_alias("model", "net", "production", unconditional=True, actor="mallory")
    decided = registry.review(request_id, "approve", reviewer="carol")
    assert decided.state == "approved" and [r["reviewer"] for r in decided.reviews] == ["bob", "carol"]
    assert registry.resolve("model", "net", "production").version == 2
    last = registry.history("model", "net", "production")[-1]
    assert (last.from_version, last.to_version, last.actor, last.reason, last.request_id) == (
        0, 2, "alice", "v2 wins the A/B test", request_id)
    with pytest.raises(RegistryError, match="is approved: it can't be reviewed"):
        registry.review(request_id, "reject", reviewer="dave")

    # A rejection (with its comment) leaves the alias where it is; an unprotected alias moves at once.
    with pytest.raises(PromotionRequired) as second:
        registry.set_alias("model", "net", "production", "v1", actor="alice")
    rejected = registry.review(second.value.request_id, "reject", reviewer="bob", comment="v1 regressed on night images")
    assert rejected.state == "rejected" and rejected.reviews[0]["comment"] == "v1 regressed on night images"
    assert registry.resolve("model", "net", "production").version == 2
    assert [r.state for r in registry.requests(state=None)] == ["approved", "rejected"]
    assert registry.set_alias("model", "net", "staging", "v1", actor="alice") is not None


def test_of_two_concurrent_promotions_of_one_alias_exactly_one_wins(pg_url):
    setup = _registry(pg_url)
    for number in range(3):
        setup.link("model", "net", _version(number), actor="ci")
    setup.set_alias("model", "net", "production", "v0", actor="ci")
    setup.protect("model", "net", "production", approvals=1)
    for round_ in range(5):
        ids = []
        for target in ("v1", "v2"):
            with pytest.raises(PromotionRequired) as opened:
                setup.set_alias("model", "net", "production", target, actor="alice", reason=f"round {round_}")
            ids.append(opened.value.request_id)
        # Two server processes: each its own engine and connection pool.
        workers = [ModelRegistry(sa.create_engine(pg_url)) for _ in ids]
        barrier = threading.Barrier(len(ids))
        outcomes: dict[int, object] = {}

        def approve(registry: ModelRegistry, request_id: int, barrier: threading.Barrier = barrier,
                    outcomes: dict[int, object] = outcomes) -> None:
            barrier.wait()
            try:
                outcomes[request_id] = registry.review(request_id, "approve", reviewer="bob").state
            except RegistryError as error:
                outcomes[request_id] = error

        threads = [threading.Thread(target=approve, args=pair) for pair in zip(workers, ids)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        won = [request_id for request_id, outcome in outcomes.items() if outcome == "approved"]
        assert len(won) == 1, outcomes
        (lost,) = set(ids) - set(won)
        assert isinstance(outcomes[lost], RegistryError) and "superseded" in str(outcomes[lost])
        moves = [event for event in setup.history("model", "net", "production") if event.request_id in ids]
        assert [event.request_id for event in moves] == won
        assert setup.resolve("model", "net", "production").version == (1 if won[0] == ids[0] else 2)
        assert setup.request(lost).state == "superseded"
        setup.protect("model", "net", "production", approvals=0)  # back to v0 for the next round
        setup.set_alias("model", "net", "production", "v0", actor="ci")
        setup.protect("model", "net", "production", approvals=1)
        for worker in workers:
            worker.engine.dispose()


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m tracklet ARGS`` (forked from the server template where it may be: serverproc.cli)."""
    return serverproc.cli(*args)


def test_promotion_over_http_checks_who_asks(servers, tmp_path):
    root = tmp_path / "server"
    created = _cli("admin", "--dir", str(root), "create-user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    server = servers(root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created.stdout.strip()}"}) as admin:
        keys = {name: admin.post("/api/v1/users", json={"name": name}).json()["key"]
                for name in ("alice", "bob", "viewer", "eve")}
    # alice trains (her first upload creates project "train", alice its admin) and links two versions.
    run = tracklet.init(project="train", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name="net", aliases=["production"] if weights == b"one" else None)
    run.finish()
    # alice's first link made her the `model` registry's admin; she gives bob and viewer roles there.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['alice']}"}) as alice:
        for name, role in (("bob", "member"), ("viewer", "viewer")):
            assert alice.put(f"/api/v1/registries/model/members/{name}", json={"role": role}).status_code == 200

    # eve (writer of her own project only) can't add her model to alice's collection.
    intruder = tracklet.init(project="eve-lab", dir=str(tmp_path / "eve"), mode="online",
                             settings={**QUIET, "base_url": server.url, "api_key": keys["eve"]})
    model.write_bytes(b"eve's weights")
    with pytest.raises(tracklet.TrackletError, match="403"):
        intruder.link_model(model, registered_model_name="net", aliases=["production"])
    intruder.finish()

    def api(user: str) -> tracklet.Api:
        return tracklet.Api(base_url=server.url, api_key=keys[user])

    with api("bob") as bob:
        with pytest.raises(tracklet.TrackletError, match="403"):
            bob.registry.protect("model", "net", "production", 1)  # a registry admin's
    with api("alice") as alice:
        alice.registry.protect("model", "net", "production", 1)
        with pytest.raises(PromotionRequired) as opened:
            alice.registry.set_alias("model", "net", "production", "v1", reason="ship v1")
        request_id = opened.value.request_id
        with pytest.raises(RegistryError, match="someone else must review it"):
            alice.registry.review(request_id, "approve")
    with api("viewer") as viewer:
        assert viewer.artifact("models:/net@production").version == "v0"
        with pytest.raises(tracklet.TrackletError, match="403"):
            viewer.registry.review(request_id, "approve")
    with api("bob") as bob:
        assert [r.id for r in bob.registry.requests()] == [request_id]
        with pytest.raises(tracklet.TrackletError, match="403"):
            bob.registry.review(request_id, "approve")  # a member may request, not review
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['alice']}"}) as alice:
        assert alice.put("/api/v1/registries/model/members/bob", json={"role": "admin"}).status_code == 200
    with api("bob") as bob:
        assert bob.registry.review(request_id, "approve", comment="looks good").state == "approved"
        assert bob.artifact("models:/net@production").version == "v1"
        last = bob.alias_history("model/net", alias="production")[-1]
        assert (last.from_version, last.to_version, last.actor, last.request_id) == (0, 1, "alice", request_id)


def test_every_change_is_reported_inside_its_transaction(store_url):
    """What the server hooks in (its audit log, automations) sees each change once, and commits with it."""
    seen: list[tuple[str, dict]] = []
    engine = sa.create_engine(store_url)
    metadata.create_all(engine)

    def on_event(connection: sa.Connection, kind: str, payload: dict) -> None:
        assert connection.in_transaction()
        seen.append((kind, payload))

    registry = ModelRegistry(engine, on_event=on_event)
    registry.link("model", "net", _version(0), ["staging"], actor="ci")
    registry.link("model", "net", _version(0), actor="ci")  # the same link again: nothing new
    registry.protect("model", "net", "production", 1)
    with pytest.raises(PromotionRequired) as opened:
        registry.set_alias("model", "net", "production", "v0", actor="alice")
    registry.review(opened.value.request_id, "approve", reviewer="bob")
    assert [kind for kind, _ in seen] == ["version.linked", "alias.moved", "promotion.requested",
                                          "promotion.decided", "alias.moved"]
    assert seen[-1][1]["request_id"] == opened.value.request_id and seen[-2][1]["state"] == "approved"

    def refuse(connection: sa.Connection, kind: str, payload: dict) -> None:
        raise RuntimeError("the audit log is unavailable")

    registry.on_event = refuse  # a hook that fails: the change is not made
    with pytest.raises(RuntimeError):
        registry.set_alias("model", "net", "staging", "v0", actor="alice")  # already there: no event, no call
        registry.remove_alias("model", "net", "staging", expected=0, actor="alice")
    assert registry.resolve("model", "net", "staging").version == 0
    assert [event.alias for event in registry.history("model", "net")] == ["staging", "production"]


def test_an_approval_that_needs_a_check_records_nothing_until_checked(store_url):
    """``review(..., checked=False)``: the approval that would move the alias raises and rolls back
    (the server then runs the webhook check outside the lock); earlier approvals and rejections
    need no check."""
    registry = _registry(store_url)
    for number in range(2):
        registry.link("model", "net", _version(number), actor="ci")
    registry.set_alias("model", "net", "production", "v0", actor="ci")
    registry.protect("model", "net", "production", approvals=2)
    with pytest.raises(PromotionRequired) as opened:
        registry.set_alias("model", "net", "production", "v1", actor="alice")
    request_id = opened.value.request_id
    assert registry.review(request_id, "approve", reviewer="bob", checked=False).state == "pending"
    with pytest.raises(PromotionCheckRequired, match="its check must pass first"):
        registry.review(request_id, "approve", reviewer="carol", checked=False)
    pending = registry.request(request_id)
    assert (pending.state, [r["reviewer"] for r in pending.reviews]) == ("pending", ["bob"])
    assert registry.resolve("model", "net", "production").version == 0
    assert registry.review(request_id, "approve", reviewer="carol", checked=True).state == "approved"
    assert registry.resolve("model", "net", "production").version == 1
