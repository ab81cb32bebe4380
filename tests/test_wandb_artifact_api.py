"""W&B's artifact calls as W&B's docs and examples write them, through ``tracklet.compat.wandb``:
moving a logged version's aliases (``artifact.aliases.append(...)``, ``artifact.save()``), listing
versions, collections and types through ``wandb.Api()``, and fetching one file or a prefix of an
artifact (``get_entry(name).download()``, ``download(path_prefix=)``). Each of these failed, or
silently did something else, before.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from tracklet.cli.main import main



def _log_dataset_versions(wandb, tmp_path) -> None:
    """``mnist`` v0 (``train``) and v1 (``latest``), and a ``cnn`` model, in project ``arts``."""
    data = tmp_path / "src"  # not "data": the data root (conftest) is there
    (data / "images").mkdir(parents=True)
    for number in range(2):
        (data / "images" / "a.bin").write_bytes(f"image {number}".encode())
        (data / "labels.csv").write_text(f"label,{number}\n")
        run = wandb.init(project="arts", job_type="dataset", settings=wandb.Settings(x_disable_stats=True))
        dataset = wandb.Artifact("mnist", type="dataset")
        dataset.add_dir(str(data))
        run.log_artifact(dataset, aliases=["train"] if number == 0 else [])
        if number == 0:
            (tmp_path / "model.pt").write_bytes(b"weights")
            model = wandb.Artifact("cnn", type="model")
            model.add_file(str(tmp_path / "model.pt"))
            run.log_artifact(model)
        run.finish()


def _log_versions(wandb, run, tmp_path, name: str, type: str, count: int,
                  aliases: dict[int, list[str]] | None = None):
    """Log ``count`` versions of ``name`` (each a different file) in ``run``; version N gets
    ``aliases[N]``. Returns the last, stored."""
    for number in range(count):
        (tmp_path / "file.bin").write_bytes(f"{name} {number}".encode())
        artifact = wandb.Artifact(name, type=type)
        artifact.add_file(str(tmp_path / "file.bin"))
        run.log_artifact(artifact, aliases=(aliases or {}).get(number, [])).wait()
    return artifact


def test_aliases_of_a_logged_version_move_with_append_and_save(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _log_dataset_versions(wandb, tmp_path)
    api = wandb.Api()
    artifact = api.artifact("entity/arts/mnist:v1")
    artifact.aliases.append("best")
    artifact.aliases.append("train")  # moves from v0
    artifact.save()
    assert api.artifact("arts/mnist:best").version == "v1"
    assert api.artifact("arts/mnist:train").version == "v1"
    assert api.artifact("arts/mnist:v0").aliases == []

    # Inside a run, as W&B's examples do it after use_artifact: save() saves the edit, it doesn't
    # try to log the version again.
    run = wandb.init(project="arts", job_type="promote")
    used = run.use_artifact("mnist:v0")
    used.aliases.append("golden")
    used.save()
    run.finish()
    assert api.artifact("arts/mnist:golden").version == "v0"

    used.aliases.remove("golden")
    used.description = "changed"
    used.tags.append("no:colons")
    with pytest.raises(ValueError, match="tag 'no:colons' is not valid"):
        used.save()
    assert api.artifact("arts/mnist:golden").version == "v0"  # nothing of a refused save is applied
    assert api.artifact("arts/mnist:v0").description != "changed"


def test_wandb_api_lists_versions_collections_and_types(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.errors import CommError

    monkeypatch.chdir(tmp_path)
    _log_dataset_versions(wandb, tmp_path)
    api = wandb.Api()
    versions = api.artifacts("dataset", "entity/arts/mnist")
    assert [(v.name, v.version, v.type) for v in versions] == [("mnist:v1", "v1", "dataset"), ("mnist:v0", "v0", "dataset")]
    assert versions[1].aliases == ["train"]
    assert [v.version for v in api.artifacts("dataset", "arts/mnist:latest")] == ["v1", "v0"]
    with pytest.raises(CommError, match="has type 'dataset', not 'model'"):
        api.artifacts("model", "arts/mnist")
    with pytest.raises(CommError, match="no artifact arts/nope"):
        api.artifacts("dataset", "arts/nope")

    assert api.artifact_exists("arts/mnist:train") and api.artifact_exists("entity/arts/mnist:v1")
    assert not api.artifact_exists("arts/mnist:v7")
    assert not api.artifact_exists("arts/nope:latest")
    assert not api.artifact_exists("arts/mnist:latest", type="model")
    assert api.artifact_collection_exists("arts/cnn", type="model")
    assert not api.artifact_collection_exists("arts/cnn", type="dataset")

    (collection,) = api.artifact_collections("entity/arts", "dataset")
    assert (collection.name, collection.type, collection.aliases) == ("mnist", "dataset", ["train"])
    assert [v.version for v in collection.artifacts()] == ["v1", "v0"]
    assert api.artifact_collection("model", "arts/cnn").name == "cnn"
    with pytest.raises(CommError, match="no artifact collection arts/mnist of type 'model'"):
        api.artifact_collection("model", "arts/mnist")
    assert [t.name for t in api.artifact_types("arts")] == ["dataset", "model"]
    assert [c.name for c in api.artifact_type("model", "arts").collections()] == ["cnn"]
    with pytest.raises(CommError, match="no artifact of type 'code'"):
        api.artifact_type("code", "arts")


def _check_registry_listings(api) -> None:
    """W&B's registries are projects: a registry collection's versions, its collection and the
    registry's collections list through the same calls, with entity or without."""
    for path in ("wandb-registry-model/classifier", "my-org/wandb-registry-model/classifier"):
        versions = api.artifacts("model", path)
        assert [(v.name, v.version, v.aliases) for v in versions] == [
            ("classifier:v1", "v1", ["latest", "production"]), ("classifier:v0", "v0", ["staging"])]
    assert versions[1].source_name.startswith("run-") and versions[1].download()
    collection = api.artifact_collection("model", "wandb-registry-model/classifier")
    assert (collection.name, collection.type, collection.aliases) == ("classifier", "model", ["production", "staging"])
    assert [v.version for v in collection.artifacts()] == ["v1", "v0"]
    assert [c.name for c in api.artifact_collections("my-org/wandb-registry-model", "model")] == ["classifier"]
    assert api.artifact_collections("wandb-registry-model", "dataset") == []
    assert [t.name for t in api.artifact_types("wandb-registry-model")] == ["model"]
    assert api.artifact_collection_exists("wandb-registry-model/classifier", "model")
    from tracklet.compat.wandb.errors import CommError

    with pytest.raises(CommError, match="no registry collection model/nope"):
        api.artifacts("model", "wandb-registry-model/nope")


def test_a_registry_collections_versions_list_as_a_projects_do(root, tmp_path, monkeypatch, servers):
    """``wandb.Api().artifacts("model", "wandb-registry-model/classifier")`` answered "no version
    of it has been logged" (and ``tracklet.Api().artifact_versions`` an empty list) for a
    collection holding two versions; the registry's collections listed none."""
    import tracklet
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="reg", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number, alias in enumerate(["staging", "production"]):
            weights = tmp_path / f"model-{number}.pt"
            weights.write_bytes(f"weights {number}".encode())
            run.link_model(str(weights), "classifier", aliases=[alias])
    assert [v.version for v in tracklet.Api(root).artifact_versions("model/classifier")] == ["v0", "v1"]
    assert [v.version for v in tracklet.Api(root).artifact_versions("models:/classifier")] == ["v0", "v1"]
    _check_registry_listings(wandb.Api())

    server = servers(tmp_path / "server")  # the same on a server: its run's versions, linked there
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "online"))
    monkeypatch.setenv("TRACKLET_MODE", "online")
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    with wandb.init(project="reg", settings=wandb.Settings(x_disable_stats=True)) as run:
        for number, alias in enumerate(["staging", "production"]):
            run.link_model(str(tmp_path / f"model-{number}.pt"), "classifier", aliases=[alias])
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "elsewhere"))
    _check_registry_listings(wandb.Api(overrides={"base_url": server.url}))


def test_one_file_or_a_prefix_is_downloaded_alone(root, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _log_dataset_versions(wandb, tmp_path)
    artifact = wandb.Api().artifact("arts/mnist:latest")
    assert [(f.name, f.size) for f in artifact.files()] == [("images/a.bin", 7), ("labels.csv", 8)]
    assert [f.name for f in artifact.files(names=["labels.csv"])] == ["labels.csv"]

    entry = artifact.get_entry("labels.csv")
    path = entry.download(tmp_path / "one")
    assert path == str(tmp_path / "one" / "labels.csv")
    assert open(path).read() == "label,1\n"
    assert sorted(os.listdir(tmp_path / "one")) == ["labels.csv"]
    assert artifact.get_path("images/a.bin").download() == os.path.join("artifacts", "mnist:v1", "images", "a.bin")
    with pytest.raises(ValueError, match="not a reference"):
        entry.ref_target()
    with pytest.raises(KeyError, match="no file 'nope.txt'"):
        artifact.get_entry("nope.txt")

    directory = artifact.download(str(tmp_path / "images-only"), path_prefix="images/")
    assert sorted(os.listdir(directory)) == ["images"]
    assert (tmp_path / "images-only" / "images" / "a.bin").read_bytes() == b"image 1"
    artifact.download(str(tmp_path / "starts-with"), path_prefix="a.bin")  # a prefix, not a substring
    assert not (tmp_path / "starts-with" / "images").exists()


def test_from_a_server_versions_list_lineage_is_the_servers_and_alias_moves_are_refused_clearly(
        root, tmp_path, monkeypatch, servers):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _log_dataset_versions(wandb, tmp_path)
    with wandb.init(project="arts", job_type="eval") as reader:
        reader.use_artifact("mnist:v0")
        reader_id = reader.id
    server = servers(tmp_path / "server")
    synced = CliRunner().invoke(main, ["--dir", str(root), "sync", "--all", "--url", server.url, "--quiet"])
    assert synced.exit_code == 0, synced.output
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "elsewhere"))  # another machine: nothing local
    api = wandb.Api(overrides={"base_url": server.url})
    assert [v.version for v in api.artifacts("dataset", "arts/mnist")] == ["v1", "v0"]
    assert api.artifact_exists("arts/mnist:train") and not api.artifact_exists("arts/mnist:v5")
    first = api.artifact("arts/mnist:v0")
    writer = first.logged_by()  # the server's lineage (it was None: this machine's store was asked)
    assert writer is not None and writer.job_type == "dataset" and writer.project == "arts"
    assert [run.id for run in first.used_by()] == [reader_id]
    assert api.artifact("arts/mnist:v1").used_by() == []
    # Lineage walked on from a run found there (it raised: the run had no Api to resolve with).
    assert ("mnist:v0", "v0") in [(artifact.name, artifact.version) for artifact in writer.logged_artifacts()]
    assert [(a.name, a.version) for a in first.used_by()[0].used_artifacts()] == [("mnist:v0", "v0")]
    remote = api.artifact("arts/mnist:latest")
    remote.aliases.append("best")
    remote.save()  # moved on the server, as W&B's save() does
    assert api.artifact("arts/mnist:best").version == "v1" and "best" in api.artifact("arts/mnist:v1").aliases
    from tracklet.errors import ArtifactNameError

    remote.aliases.append("v7")  # a bad alias is named as such first, wherever the version is
    with pytest.raises(ArtifactNameError):
        remote.save()


def test_w_and_b_cleanup_script_deletes_versions_without_aliases(root, tmp_path, monkeypatch):
    """W&B's documented clean-up: delete every version of a collection that has no alias
    (``artifact.delete()``, which was missing); one with aliases needs ``delete_aliases=True``,
    and a registered one is refused, as ``tracklet artifact rm`` refuses it."""
    import tracklet
    import tracklet.compat.wandb as wandb
    from tracklet.errors import ArtifactError, ArtifactNotFound

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="clean", settings=wandb.Settings(x_disable_stats=True)) as run:
        model = _log_versions(wandb, run, tmp_path, "model", "model", 4, {1: ["best"]})
        run.link_artifact(model, "wandb-registry-model/prod-models")  # v3, registered
    api = wandb.Api()
    for version in api.artifacts("model", "clean/model"):
        if len(version.aliases) == 0:  # W&B's snippet: v0 and v2 ("latest" is v3's)
            version.delete()
    assert [v.version for v in api.artifacts("model", "clean/model")] == ["v3", "v1"]
    with pytest.raises(ArtifactError, match="has alias\\(es\\) best"):
        api.artifact("clean/model:v1").delete()
    api.artifact("clean/model:v1").delete(delete_aliases=True)
    with pytest.raises(ArtifactNotFound):
        tracklet.Api(root).artifact("clean/model:best")
    with pytest.raises(ArtifactError, match="is registered as model/prod-models:v0"):
        api.artifact("clean/model:v3").delete()
    with pytest.raises(ArtifactError, match="a registry collection's version"):
        api.artifact("wandb-registry-model/prod-models:v0").delete()
    assert [v.version for v in api.artifacts("model", "clean/model")] == ["v3"]


def test_w_and_b_artifact_attributes_scripts_read(root, tmp_path, monkeypatch):
    """Attributes W&B scripts print or key on: ``id``, ``entity``, ``created_at`` (an ISO 8601
    string, as W&B and the run tables' ``created_at`` give it: it was epoch seconds),
    ``updated_at``, ``file_count``, ``ttl``, ``is_draft()``, and ``logged_by()`` as W&B's Run."""
    import datetime

    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    _log_dataset_versions(wandb, tmp_path)
    draft = wandb.Artifact("fresh", type="dataset")
    assert draft.is_draft() and draft.id is None
    version = wandb.Api().artifact("arts/mnist:v1")
    assert not version.is_draft() and version.id == "arts/mnist:v1" and version.entity is None
    assert version.file_count == 2 and version.ttl is None
    assert version.created_at.endswith("Z")  # UTC, as W&B writes it
    stored = datetime.datetime.fromisoformat(version.created_at.replace("Z", "+00:00"))
    assert abs(stored.timestamp() - tracklet_created_at(root, "arts/mnist:v1")) < 1
    assert version.updated_at == version.created_at
    writer = version.logged_by()  # W&B's public Run (it was tracklet's RecordedRun: path a str, history not pandas)
    assert isinstance(writer, wandb.apis.public.Run) and writer.path[-2] == "arts" and writer.job_type == "dataset"
    assert writer.history().__class__.__name__ == "DataFrame" and version.used_by() == []


def tracklet_created_at(root, reference: str) -> float:
    import tracklet

    return tracklet.Api(root).artifact(reference).created_at


def test_a_missing_artifact_is_a_comm_error_as_w_and_b_raises_it(root, tmp_path, monkeypatch):
    """W&B scripts try ``use_artifact("ckpt:latest")`` and catch ``wandb.errors.CommError`` on the
    first run; tracklet raised its own ``ArtifactNotFound``, which that ``except`` let through."""
    import tracklet.compat.wandb as wandb
    from tracklet.errors import ArtifactNotFound

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="resume", settings=wandb.Settings(x_disable_stats=True)) as run:
        try:
            checkpoint = run.use_artifact("ckpt:latest")
        except wandb.errors.CommError as error:
            checkpoint = None
            assert "no artifact resume/ckpt" in str(error)
        assert checkpoint is None
        with pytest.raises(wandb.errors.CommError):
            wandb.use_artifact("resume/ckpt:v3", type="model")
        with pytest.raises(wandb.errors.CommError):
            run.use_model("ckpt:latest")
        with pytest.raises(ArtifactNotFound):  # tracklet's own class still catches it
            run.use_artifact("ckpt:latest")
    with pytest.raises(wandb.errors.CommError) as raised:
        wandb.Api().artifact("resume/ckpt:latest")
    assert isinstance(raised.value, ArtifactNotFound)


def test_a_runs_artifacts_leave_out_a_deleted_version_with_a_warning(root, tmp_path, monkeypatch):
    """After ``artifact.delete()``, ``run.logged_artifacts()``/``used_artifacts()`` of every run
    that touched the version raised ArtifactNotFound: the deleted one is left out, with a warning.
    A run that used two versions of one collection lists both."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    with wandb.init(project="p", settings=wandb.Settings(x_disable_stats=True)) as run:
        _log_versions(wandb, run, tmp_path, "ds", "dataset", 3)
        writer = run.id
    with wandb.init(project="p", settings=wandb.Settings(x_disable_stats=True)) as user:
        user.use_artifact("ds:v0")
        user.use_artifact("ds:v1")
        reader = user.id
    api = wandb.Api()
    assert [a.version for a in api.run(f"p/{reader}").used_artifacts()] == ["v0", "v1"]
    api.artifact("p/ds:v0").delete()
    with pytest.warns(Warning, match="deleted since, left out: p/ds:v0"):
        assert [a.version for a in api.run(f"p/{writer}").logged_artifacts()] == ["v1", "v2"]
    with pytest.warns(Warning, match="deleted since, left out: p/ds:v0"):
        assert [a.version for a in api.run(f"p/{reader}").used_artifacts()] == ["v1"]


def test_a_servers_lineage_rows_are_checked_and_their_runs_fetched_only_when_read():
    """A malformed lineage row (no run id, a project that is a path) raised a bare KeyError
    losing the whole list, or went unescaped into the run's URL; every run was fetched up front
    (one request each). A bad row is left out with one warning; the runs read lazily."""
    from tracklet.artifacts.remote import lineage_runs
    from tracklet.client.http import HttpClient
    from tracklet.errors import TrackletWarning

    rows = [{"project": "arts", "run_id": "abc123", "name": "eval", "state": "finished"},
            {"project": "../admin", "run_id": "x"}, {"project": "arts"}, "not a row",
            {"project": "arts", "run_id": "a/b"}]
    with HttpClient("http://127.0.0.1:9") as nowhere:  # nothing listens: no request may be made
        with pytest.warns(TrackletWarning, match="4 run\\(s\\) of v0's lineage from the server were malformed"):
            runs = lineage_runs(nowhere, rows, "v0's lineage")
        assert [(run.path, run.name, run.state) for run in runs] == [("arts/abc123", "eval", "finished")]
