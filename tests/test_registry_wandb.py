"""W&B scripts that use the model registry, run unmodified under ``tracklet run --wandb``:
``run.link_model``/``link_artifact`` with W&B's registry paths, then loading by alias with
``use_model``, ``use_artifact`` and ``wandb.Api().artifact``."""

from __future__ import annotations

from test_wandb_compat import tracklet_run

import tracklet

SCRIPT = """
import json
import wandb

with open("model.pt", "wb") as f:
    f.write(b"weights v1")
run = wandb.init(project="mnist", job_type="train")
run.link_model("model.pt", registered_model_name="mnist-classifier", aliases=["staging"])
with open("model.pt", "wb") as f:
    f.write(b"weights v2")
artifact = wandb.Artifact("mnist-model", type="model")
artifact.add_file("model.pt")
run.log_artifact(artifact)
run.link_artifact(artifact, "my-team/wandb-registry-model/mnist-classifier", aliases=["production"])
run.finish()

run = wandb.init(project="mnist", job_type="eval")
path = run.use_model("wandb-registry-model/mnist-classifier:production")
staged = run.use_artifact("my-team/wandb-registry-model/mnist-classifier:staging")
with open(path, "rb") as f:
    production = f.read().decode()
with open(staged.download() + "/model.pt", "rb") as f:
    staging = f.read().decode()
latest = wandb.Api().artifact("wandb-registry-model/mnist-classifier:latest")
with open(run.use_model("models:/mnist-classifier@staging"), "rb") as f:  # MLflow's URI, as tracklet.Api takes it
    by_uri = f.read().decode()
run.finish()
print(json.dumps({"production": production, "staging": staging, "by_uri": by_uri, "latest": [latest.version, sorted(latest.aliases)],
                  "eval": run.id}))
"""


def test_an_unmodified_wandb_script_links_models_and_loads_them_by_alias(root, tmp_path):
    out = tracklet_run(tmp_path, SCRIPT)
    assert out["production"] == "weights v2" and out["staging"] == "weights v1" == out["by_uri"]
    assert out["latest"] == ["v1", ["latest", "production"]]
    api = tracklet.Api(root)
    assert [c["collection"] for c in api.registry_collections()] == ["mnist-classifier"]
    assert api.artifact("models:/mnist-classifier@production").source_qualified_name == "mnist/mnist-model:v0"
    api.index()
    used = api.artifact("mnist/mnist-model:v0").used_by()  # the eval run's input is the linked version
    assert [run.id for run in used] == [out["eval"]]


def test_aliases_of_a_registry_version_move_with_append_and_save(root, tmp_path, monkeypatch):
    """W&B's registry docs move an alias by editing the linked version's ``aliases`` and calling
    ``save()``: tracklet moves it in the registry, with its history and protection rules."""
    import pytest

    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.errors import CommError
    from tracklet.errors import PromotionRequired

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="mnist", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number in range(2):
            (tmp_path / "model.pt").write_bytes(f"weights v{number}".encode())
            run.link_model("model.pt", registered_model_name="classifier", aliases=["staging"] if number else [])
    api = wandb.Api()
    first = api.artifact("wandb-registry-model/classifier:v0")
    first.aliases.append("production")
    first.aliases.append("staging")  # moves it from v1
    first.save()
    assert api.artifact("wandb-registry-model/classifier:production").version == "v0"
    assert api.artifact("wandb-registry-model/classifier:staging").version == "v0"
    assert sorted(first.aliases) == ["production", "staging"]
    moves = tracklet.Api(root).alias_history("model/classifier")
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in moves[-2:]] == [
        ("production", None, 0, "artifact.save()"), ("staging", 1, 0, "artifact.save()")]

    first.aliases.remove("staging")
    first.save()
    with pytest.raises(CommError, match="no alias 'staging'"):
        api.artifact("wandb-registry-model/classifier:staging")

    tracklet.Api(root).registry.protect("model", "classifier", "production")
    latest = api.artifact("wandb-registry-model/classifier:latest")
    latest.aliases.append("production")
    with pytest.raises(PromotionRequired, match="is protected: promotion request #1"):
        latest.save()
    assert api.artifact("wandb-registry-model/classifier:production").version == "v0"  # until approved


def test_api_registries_and_registry_list_collections_and_versions(root, tmp_path, monkeypatch):
    """W&B 0.19+'s registry API: ``wandb.Api().registries()`` / ``.registry(name)``, their
    ``collections()`` and ``versions()`` with filters (an AttributeError before)."""
    import pytest

    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.errors import CommError, UsageError

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="mnist", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number in range(2):
            (tmp_path / "model.pt").write_bytes(f"weights v{number}".encode())
            run.link_model("model.pt", registered_model_name="classifier", aliases=["production"] if number else [])
        (tmp_path / "rows.csv").write_text("a,b\n")
        data = run.log_artifact("rows.csv", name="rows", type="dataset")
        data.wait()
        run.link_artifact(data, "wandb-registry-datasets/rows", aliases=["golden"])
    api = wandb.Api()
    registries = api.registries()
    assert [(r.name, r.full_name) for r in registries] == [("datasets", "wandb-registry-datasets"),
                                                           ("model", "wandb-registry-model")]
    assert [c.name for c in registries.collections()] == ["rows", "classifier"]
    assert [(v.version, v.type) for v in registries.versions()] == [("v0", "dataset"), ("v1", "model"), ("v0", "model")]
    assert [v.version for v in registries.versions(filter={"alias": "production"})] == ["v1"]
    assert [r.name for r in api.registries(filter={"name": {"$regex": "^mod"}})] == ["model"]
    model = api.registry("wandb-registry-model")
    assert model.name == "model" and model.artifact_types == ["model"]
    assert [c.name for c in model.collections(filter={"name": {"$in": ["classifier"]}})] == ["classifier"]
    assert [c.name for c in model.collections(filter={"name": "other"})] == []
    assert [v.version for v in api.registry("datasets").versions()] == ["v0"]
    with pytest.raises(CommError, match="no registry 'nope' .*registries: datasets, model"):
        api.registry("nope")
    with pytest.raises(UsageError, match="can't filter on 'stage'"):
        registries.versions(filter={"stage": "prod"})
    # $regex as W&B's (RE2) and the run filters read it: a flag group works, a backreference is refused
    assert [r.name for r in api.registries(filter={"name": {"$regex": "(?i)^MOD"}})] == ["model"]
    with pytest.raises(UsageError, match=r"\$regex '\(o\)\\\\1'"):
        api.registries(filter={"name": {"$regex": r"(o)\1"}})


def test_link_artifact_of_a_draft_logs_it_first_as_wandb_does(root, tmp_path, monkeypatch):
    """W&B's ``run.link_artifact(artifact, target)`` logs a draft not logged yet; tracklet's
    raised ``artifact 'det' was not logged: nothing to wait for``."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"weights")
    with wandb.init(project="reg", settings=wandb.Settings(x_disable_stats=True)) as run:
        draft = wandb.Artifact("detector", type="model")
        draft.add_file("w.bin")
        linked = run.link_artifact(draft, "wandb-registry-model/detector", aliases=["candidate"])
        assert (linked.version, linked.source_qualified_name) == ("v0", "reg/detector:v0")
        assert not draft.is_draft() and draft.version == "v0"
        plain = tracklet.Artifact("plain", type="model")  # tracklet's own run takes a draft the same way
        plain.add_file(str(tmp_path / "w.bin"))
        assert run.tracklet_run.link_artifact(plain, "model/plain").source_qualified_name == "reg/plain:v0"
    api = wandb.Api()
    assert api.artifact("wandb-registry-model/detector:candidate").source_qualified_name == "reg/detector:v0"
    assert [r.id for r in [api.artifact("reg/detector:v0").logged_by()]] == [run.id]
