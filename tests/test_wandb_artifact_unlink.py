"""W&B's ``artifact.unlink()`` over tracklet's registry: a registry version leaves its collection
(its aliases first, every step in the alias history), the artifact version it linked stays; not a
link, a protected alias, a pending promotion request: refused, nothing changed; a server's
server's registry: the same, there (its admin role, tests/test_registry_roles.py)."""

from __future__ import annotations

import httpx
import pytest
from conftest import QUIET

import tracklet
from tracklet.errors import ArtifactNotLinked, PromotionRequired, RegistryError

SETTINGS = {"console": "off", "x_disable_stats": True, "disable_git": True}


def _register(wandb, tmp_path, aliases_by_version: list[list[str]]) -> None:
    """``classifier`` in the model registry: one version per entry, with those aliases."""
    with wandb.init(project="mnist", settings=SETTINGS) as run:
        for number, aliases in enumerate(aliases_by_version):
            (tmp_path / "model.pt").write_bytes(f"weights v{number}".encode())
            run.link_model(str(tmp_path / "model.pt"), registered_model_name="classifier", aliases=aliases)


def _state(registry) -> tuple:
    return ([(link.version, link.aliases) for link in registry.versions("model", "classifier")],
            len(registry.history("model", "classifier")))


def test_unlink_removes_the_registry_version_and_records_it(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.errors import CommError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACKLET_ACTOR", "alice")
    _register(wandb, tmp_path, [["staging"], ["candidate"], []])
    api = wandb.Api()
    staging = api.artifact("wandb-registry-model/classifier:staging")
    source = staging.source_qualified_name
    staging.unlink()

    registry = tracklet.Api(root).registry
    assert [(link.version, link.aliases) for link in registry.versions("model", "classifier")] == [
        (1, ["v1", "candidate"]), (2, ["v2", "latest"])]
    with pytest.raises(CommError, match="no version v0"):
        api.artifact("wandb-registry-model/classifier:v0")
    with pytest.raises(CommError, match="no alias 'staging'"):
        api.artifact("wandb-registry-model/classifier:staging")
    # The history says what happened: the alias taken off, then the version itself.
    last = [(event.alias, event.from_version, event.to_version, event.actor, event.reason)
            for event in registry.history("model", "classifier")[-2:]]
    assert last == [("staging", 0, None, "alice", "artifact.unlink()"), ("v0", 0, None, "alice", "artifact.unlink()")]
    # The artifact version it linked is untouched, and no longer registered: delete() may take it.
    assert api.artifact(source).download(str(tmp_path / "dl")).endswith("dl")
    assert (tmp_path / "dl" / "model.pt").read_bytes() == b"weights v0"
    project, rest = source.split("/", 1)
    name, number = rest.rsplit(":v", 1)
    assert registry.links_to(project, name, int(number)) == []

    # Unlinking the latest: latest falls back; a new link never takes a number given before.
    api.artifact("wandb-registry-model/classifier:latest").unlink()
    assert registry.resolve("model", "classifier", "latest").version == 1
    with wandb.init(project="mnist", settings=SETTINGS) as run:
        (tmp_path / "model.pt").write_bytes(b"weights v3")
        run.link_model(str(tmp_path / "model.pt"), registered_model_name="classifier")
    assert [link.version for link in registry.versions("model", "classifier")] == [1, 3]


def test_unlink_is_refused_for_what_the_registry_protects(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _register(wandb, tmp_path, [["production"], []])
    api = wandb.Api()
    registry = tracklet.Api(root).registry
    before = _state(registry)

    # Not a link: W&B's ValueError, pointing at delete().
    source = api.artifact(api.artifact("wandb-registry-model/classifier:v0").source_qualified_name)
    with pytest.raises(ValueError, match="is not a linked artifact.*use delete") as refused:
        source.unlink()
    assert isinstance(refused.value, ArtifactNotLinked)

    registry.protect("model", "classifier", "production")
    with pytest.raises(PromotionRequired, match="protected alias.*production.*nothing was changed"):
        api.artifact("wandb-registry-model/classifier:production").unlink()
    # v1 is the target of a pending promotion: decide it first.
    with pytest.raises(PromotionRequired):
        registry.set_alias("model", "classifier", "production", "v1", actor="bob")
    with pytest.raises(RegistryError, match="pending promotion request.*#1.*approve or reject"):
        api.artifact("wandb-registry-model/classifier:v1").unlink()
    assert _state(registry) == before  # nothing was changed
    registry.review(1, "reject", reviewer="carol")
    api.artifact("wandb-registry-model/classifier:v1").unlink()
    assert [link.version for link in registry.versions("model", "classifier")] == [0]


def test_unlink_of_a_servers_registry_version_unlinks_it_there(root, servers, tmp_path):
    import tracklet.compat.wandb as wandb

    server = servers()
    run = tracklet.init(project="train", dir=str(tmp_path / "client"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for weights in (b"one", b"two"):
        (tmp_path / "model.pt").write_bytes(weights)
        run.link_model(tmp_path / "model.pt", registered_model_name="net",
                       aliases=["production"] if weights == b"one" else ["staging"])
    run.finish()
    api = wandb.Api(overrides={"base_url": server.url})
    remote = tracklet.Api(base_url=server.url).registry
    remote.protect("model", "net", "production")
    with pytest.raises(PromotionRequired, match="protected alias.*production.*nothing was changed"):
        api.artifact("wandb-registry-model/net:production").unlink()
    with pytest.raises(ValueError, match="is not a linked artifact"):
        api.artifact(api.artifact("wandb-registry-model/net:v1").source_qualified_name).unlink()
    api.artifact("wandb-registry-model/net:staging").unlink()
    assert [(link.version, link.aliases) for link in remote.versions("model", "net")] == [
        (0, ["v0", "latest", "production"])]
    assert [(event.alias, event.from_version, event.to_version, event.reason)
            for event in remote.history("model", "net")[-2:]] == [
        ("staging", 1, None, "artifact.unlink()"), ("v1", 1, None, "artifact.unlink()")]
    # One audit event per request, the refused one included, as every registry change has.
    audit = httpx.get(f"{server.url}/api/v1/audit", params={"action": "unlink_version", "order": "asc"}).json()
    assert [(event["status"], event["outcome"], event["target"]) for event in audit["events"]] == [
        (409, "rejected", "registries/model/collections/net/versions/v0"),
        (200, "ok", "registries/model/collections/net/versions/v1")]
