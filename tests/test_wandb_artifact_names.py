"""``wandb.Artifact.name`` as W&B sets it: the collection's name while a draft, ``name:vN`` once
``wait()`` returns the stored version, read back (``use_artifact``, ``wandb.Api().artifact``) or read
through a registry collection; ``source_name`` names the version it was logged as."""

from __future__ import annotations

import tracklet

SETTINGS = {"console": "off", "x_disable_stats": True, "disable_git": True}


def test_a_logged_artifact_is_named_with_its_version(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("one")
    run = wandb.init(project="names", settings=SETTINGS)
    names = []
    for text in ("one", "two"):
        (tmp_path / "data.txt").write_text(text)
        artifact = wandb.Artifact("mnist", type="dataset")
        artifact.add_file(str(tmp_path / "data.txt"))
        assert (artifact.name, artifact.source_name) == ("mnist", "mnist")  # a draft: no version yet
        run.log_artifact(artifact)
        artifact.wait()
        names.append((artifact.name, artifact.source_name, artifact.qualified_name, artifact.version))
    linked = run.link_artifact(artifact, "wandb-registry-model/digits")
    unwaited = wandb.Artifact("notes", type="text")
    unwaited.add_file(str(tmp_path / "data.txt"))
    run.log_artifact(unwaited)
    run.finish()  # stores it; W&B renames an artifact only when wait() returns
    assert (unwaited.state, unwaited.name) == ("COMMITTED", "notes")  # W&B's states
    assert (unwaited.wait().name, unwaited.source_name) == ("notes:v0", "notes:v0")
    assert names == [("mnist:v0", "mnist:v0", "names/mnist:v0", "v0"), ("mnist:v1", "mnist:v1", "names/mnist:v1", "v1")]

    api = wandb.Api()
    assert api.artifact("names/mnist:latest").name == "mnist:v1"
    assert [a.name for a in api.artifacts("dataset", "names/mnist")] == ["mnist:v1", "mnist:v0"]
    # Read through the registry: the collection's name and version; the source is the logged version.
    registered = api.artifact("wandb-registry-model/digits:v0")
    assert (registered.name, registered.source_name, registered.is_link) == ("digits:v0", "mnist:v1", True)
    assert linked.name == "digits:v0"
    # tracklet's own Artifact keeps the collection's name.
    assert tracklet.Api().artifact("names/mnist:v1").name == "mnist"


def test_a_new_draft_is_a_wandb_artifact_named_with_its_version_once_logged(root, tmp_path, monkeypatch):
    """``new_draft()`` of a W&B artifact is a ``wandb.Artifact`` too: a draft named ``ds``, then
    ``ds:v1`` once logged and waited for, holding v0's files and the one added."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    run = wandb.init(project="drafts", settings=SETTINGS)
    first = wandb.Artifact("ds", type="dataset")
    first.add_file(str(tmp_path / "a.txt"))
    run.log_artifact(first).wait()
    draft = wandb.Api().artifact("drafts/ds:v0").new_draft()
    assert isinstance(draft, wandb.Artifact) and draft.name == "ds"
    draft.add_file(str(tmp_path / "b.txt"))
    run.log_artifact(draft)
    assert draft.wait().name == "ds:v1"
    assert sorted(entry.path for entry in draft.files()) == ["a.txt", "b.txt"]
    run.finish()
