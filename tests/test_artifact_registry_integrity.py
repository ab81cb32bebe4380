"""A registry's versions and protected aliases hold against the artifact API's edits: W&B's
``delete(delete_aliases=True)`` never deletes a version a registry links (it did, silently,
leaving the protected ``production`` model without files), and ``artifact.aliases`` edits +
``save()`` on a registry version move its aliases in one transaction (a refused save moved some
aliases before; a stale view removed an alias someone else had just moved; each retry opened
another promotion request)."""

from __future__ import annotations

import pytest


def _registered(wandb, tmp_path, aliases_by_version: list[list[str]]) -> None:
    """``classifier`` in the model registry: one version per entry, with those aliases."""
    with wandb.init(project="mnist", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number, aliases in enumerate(aliases_by_version):
            (tmp_path / "model.pt").write_bytes(f"weights v{number}".encode())
            run.link_model(str(tmp_path / "model.pt"), registered_model_name="classifier", aliases=aliases)


def test_delete_aliases_never_deletes_a_version_a_registry_links(root, tmp_path, monkeypatch):
    import tracklet
    import tracklet.compat.wandb as wandb
    from tracklet.errors import ArtifactError, TrackletWarning

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

    with pytest.raises(ArtifactError, match="can't be deleted or unlinked"):
        production.delete()
    with pytest.warns(TrackletWarning, match="model/classifier:v0 linked"):
        api.artifact(source.qualified_name).delete(delete_aliases=True, break_registry_links=True)
