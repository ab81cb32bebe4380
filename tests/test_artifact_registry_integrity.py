"""A registry's versions and protected aliases hold against the artifact API's edits: W&B's
``delete(delete_aliases=True)`` never deletes a version a registry links (it did, silently,
leaving the protected ``production`` model without files), and ``artifact.aliases`` edits +
``save()`` on a registry version move its aliases in one transaction (a refused save moved some
aliases before; a stale view removed an alias someone else had just moved; each retry opened
another promotion request)."""

from __future__ import annotations

import pytest

from conftest import QUIET


def _registered(wandb, tmp_path, aliases_by_version: list[list[str]]) -> None:
    """``classifier`` in the model registry: one version per entry, with those aliases."""
    with wandb.init(project="mnist", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number, aliases in enumerate(aliases_by_version):
            (tmp_path / "model.pt").write_bytes(f"weights v{number}".encode())
            run.link_model(str(tmp_path / "model.pt"), registered_model_name="classifier", aliases=aliases)


def test_delete_aliases_never_deletes_a_version_a_registry_links(root, tmp_path, monkeypatch):
    import tracklet
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.errors import ArtifactNotFoundCommError
    from tracklet.errors import ArtifactDeleted, ArtifactError, TrackletWarning

    monkeypatch.chdir(tmp_path)
    _registered(wandb, tmp_path, [["production"]])
    tracklet.Api(root).registry.protect("model", "classifier", "production")
    api = wandb.Api()
    source = api.artifact(api.artifact("wandb-registry-model/classifier:production").source_qualified_name)
    with pytest.raises(ArtifactError, match="registered as model/classifier:v0"):
        source.delete(delete_aliases=True)
    production = api.artifact("wandb-registry-model/classifier:production")
    assert (tmp_path / "dl" / "model.pt").exists() is False
    production.download(str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "model.pt").read_bytes() == b"weights v0"

    with pytest.raises(ArtifactError, match=r"delete\(\) refuses it.*unlink\(\)"):
        production.delete()
    # Its protected alias keeps it, as it keeps the registry version from an unlink (docs/registry.md,
    # "Who may do what"): lifting the protection first is the registry's decision.
    with pytest.raises(ArtifactError, match=r"model/classifier:v0 \(protected alias production\)"):
        api.artifact(source.qualified_name).delete(delete_aliases=True, break_registry_links=True)
    tracklet.Api(root).registry.protect("model", "classifier", "production", 0)
    with pytest.warns(TrackletWarning, match="model/classifier:v0 linked"):
        api.artifact(source.qualified_name).delete(delete_aliases=True, break_registry_links=True)
    # The registry keeps the version and its alias: it reads back as deleted, naming both
    # (W&B's not-found error class through wandb.Api; tracklet's ArtifactDeleted through tracklet.Api).
    with pytest.raises(ArtifactNotFoundCommError, match="model/classifier:v0 links .*, which was deleted.*has no files"):
        api.artifact("wandb-registry-model/classifier:production")
    with pytest.raises(ArtifactDeleted, match="model/classifier:v0 links"):
        tracklet.Api(root).artifact("model/classifier:production")
    # Listing the collection gives what can be read (none here), naming what it left out.
    with pytest.warns(TrackletWarning, match="model/classifier:v0 left out"):
        assert tracklet.Api(root).artifact_versions("model/classifier") == []


def test_saving_a_stale_view_keeps_an_alias_someone_else_moved(root, tmp_path, monkeypatch):
    """W&B removes an alias from the artifact being edited only: A's stale view of v0 dropping
    ``staging`` doesn't undo B's move of it to v1 (it removed it from v1)."""
    import tracklet
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _registered(wandb, tmp_path, [["staging"], []])
    api = wandb.Api()
    seen_by_a = api.artifact("wandb-registry-model/classifier:v0")
    tracklet.Api(root).registry.set_alias("model", "classifier", "staging", "v1", actor="bob", reason="promote v1")
    seen_by_a.aliases.remove("staging")
    seen_by_a.save()
    assert api.artifact("wandb-registry-model/classifier:staging").version == "v1"
    assert tracklet.Api(root).alias_history("model/classifier")[-1].actor == "bob"


def test_a_refused_registry_save_moves_nothing_and_a_retry_opens_no_second_request(root, tmp_path, monkeypatch):
    import tracklet
    import tracklet.compat.wandb as wandb
    from tracklet.errors import PromotionRequired

    monkeypatch.chdir(tmp_path)
    _registered(wandb, tmp_path, [["production", "staging"], ["canary"]])
    tracklet.Api(root).registry.protect("model", "classifier", "production")
    api = wandb.Api()
    second = api.artifact("wandb-registry-model/classifier:v1")
    second.aliases.remove("canary")
    second.aliases.append("staging")  # would move from v0
    second.aliases.append("production")  # protected
    for _ in range(3):  # the first save and two retries
        with pytest.raises(PromotionRequired, match="promotion request #1 .*no alias was moved"):
            second.save()
    assert api.artifact("wandb-registry-model/classifier:v1").aliases == ["latest", "canary"]
    assert api.artifact("wandb-registry-model/classifier:v0").aliases == ["production", "staging"]
    assert [(r.id, r.alias, r.to_version) for r in tracklet.Api(root).registry.requests("model", "classifier")] == [
        (1, "production", 1)]

    first = api.artifact("wandb-registry-model/classifier:v0")
    first.aliases.remove("production")  # protected: refused before anything moves
    first.aliases.remove("staging")
    with pytest.raises(PromotionRequired, match="can't be removed"):
        first.save()
    assert api.artifact("wandb-registry-model/classifier:v0").aliases == ["production", "staging"]


def test_a_servers_registry_version_saves_its_aliases_in_one_move(servers, tmp_path, monkeypatch):
    """The same rules on a server (its own route: one transaction, the key's user as actor, an
    audit event): a stale removal keeps another user's move, a protected alias moves nothing."""
    import tracklet
    from tracklet.errors import PromotionRequired

    server = servers(tmp_path / "server")
    run = tracklet.init(project="train", dir=str(tmp_path / "writer"), mode="online",
                        settings={**QUIET, "base_url": server.url})
    for number in range(2):
        (tmp_path / "model.pt").write_bytes(f"weights {number}".encode())
        run.link_model(str(tmp_path / "model.pt"), registered_model_name="mnist",
                       aliases=["staging", "production"] if number == 0 else [])
    run.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    with tracklet.Api(base_url=server.url) as api:
        stale = api.artifact("model/mnist:v0")
        api.registry.set_alias("model", "mnist", "staging", "v1")
        stale.aliases.remove("staging")
        stale.aliases.append("canary")
        stale.save()
        assert api.artifact("model/mnist:staging").version == "v1"
        assert api.artifact("model/mnist:canary").version == "v0"
        api.registry.protect("model", "mnist", "production")
        second = api.artifact("model/mnist:v1")
        second.aliases.append("production")
        second.aliases.append("best")
        for _ in range(2):
            with pytest.raises(PromotionRequired, match="no alias was moved"):
                second.save()
        assert api.artifact("model/mnist:v1").aliases == ["latest", "staging"]
        assert [r.alias for r in api.registry.requests("model", "mnist")] == ["production"]
