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
