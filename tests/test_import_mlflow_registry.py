"""`tracklet import mlflow` imports MLflow's model registry: registered models written by MLflow's
own client (a file store and a SQLite database; a tracking server) become collections of the
``model`` registry whose versions link the artifact versions holding their files, logged by the
imported runs (lineage), with MLflow's aliases and legacy stages as aliases and MLflow's fields on
the model card. A version whose run isn't in the import is reported by name and skipped; importing
again adds no version and moves aliases to where the source has them; the source is never written."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) writes the MLflow registry to import")

from click.testing import CliRunner  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from test_import_mlflow import T0, WEIGHTS, new_experiment, store_uri, tracking_server  # noqa: E402,F401

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.importers import import_mlflow  # noqa: E402
from tracklet.importers.mlflow_registry import collection_names  # noqa: E402
from tracklet.registry.service import open_local  # noqa: E402


@pytest.fixture(autouse=True)
def _file_store_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MLflow 3 writes file stores only when told; and its file registry, writing a version, opens
    the default store (``./mlflow.db``, created in the working directory): the test's directory."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)


def run_with_model(client: MlflowClient, experiment: str, name: str, weights: bytes, scratch: Path) -> str:
    """A finished run whose artifact files hold ``model/weights.bin``; its id."""
    run = client.create_run(experiment, start_time=T0, run_name=name)
    files = scratch / name / "model"
    files.mkdir(parents=True)
    (files / "weights.bin").write_bytes(weights)
    client.log_artifacts(run.info.run_id, str(files.parent))
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
    return run.info.run_id


def write_registry(uri: str, artifacts: Path | None, scratch: Path) -> dict[str, Any]:
    """Runs in two experiments and registered models over them, through MlflowClient."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    churn = new_experiment(client, "churn", artifacts)
    other = new_experiment(client, "other", artifacts)
    first = run_with_model(client, churn, "first", WEIGHTS, scratch)
    second = run_with_model(client, churn, "second", WEIGHTS[::-1], scratch)
    outside = run_with_model(client, other, "outside", b"outside", scratch)
    artifact_uri = client.get_run(first).info.artifact_uri
    client.create_registered_model("churn model", tags={"team": "growth"}, description="predicts churn")
    client.create_model_version("churn model", f"{artifact_uri}/model", first, description="the baseline",
                                tags={"data": "2026-11"})  # MLflow 2's source: under the run's artifacts
    client.create_model_version("churn model", f"runs:/{second}/model", second)
    client.create_model_version("churn model", f"runs:/{outside}/model", outside)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, and still in stores
        client.transition_model_version_stage("churn model", "1", "Production")
        client.transition_model_version_stage("churn model", "3", "Staging")
    client.set_registered_model_alias("churn model", "champion", "2")
    client.set_registered_model_alias("churn model", "challenger", "1")
    client.create_registered_model("gone")
    client.create_model_version("gone", f"runs:/{first}/model", first)
    client.delete_registered_model("gone")
    return {"client": client, "first": first, "second": second, "outside": outside}


def source_state(location: Path) -> dict[str, str]:
    """Every file of the source and its digest (MLflow may add an empty ``.trash/`` to a file store)."""
    if location.is_file():
        return {location.name: hashlib.sha256(location.read_bytes()).hexdigest()}
    return {str(path.relative_to(location)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(location.rglob("*")) if path.is_file() and ".trash" not in path.parts}


@pytest.fixture(params=["file", "sqlite"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    location = tmp_path / ("mlruns" if request.param == "file" else "mlflow.db")
    uri, artifacts = store_uri(location)
    return location, write_registry(uri, artifacts, tmp_path / "scratch")


def imported(location: Path, root: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_mlflow(location, root=root, **kwargs)


def test_versions_link_the_runs_artifact_versions_with_aliases_stages_and_cards(source: tuple[Path, dict],
                                                                                tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    location, made = source
    before = source_state(location)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    results = imported(location, tmp_path / "root", experiments=["churn"])
    assert source_state(location) == before  # read only
    assert list((tmp_path / "cwd").iterdir()) == []  # nor a default store of MLflow's made in the working directory
    by_name = {result.name: result for result in results.models}
    assert sorted(by_name) == ["churn model version 1", "churn model version 2", "churn model version 3"]
    assert (by_name["churn model version 1"].status, by_name["churn model version 1"].path) == \
        ("imported", "model/churn-model:v0")
    assert (by_name["churn model version 2"].status, by_name["churn model version 2"].path) == \
        ("imported", "model/churn-model:v1")
    skipped = by_name["churn model version 3"]
    assert skipped.status == "skipped" and made["outside"] in skipped.warnings[0]

    api = tracklet.Api(tmp_path / "root")
    champion = api.artifact("models:/churn-model@champion")
    assert (champion.version, champion.source_name) == ("v1", f"mlflow-{made['second']}")
    assert (Path(champion.download(str(tmp_path / "out"))) / "model" / "weights.bin").read_bytes() == WEIGHTS[::-1]
    assert champion.logged_by().path == f"churn/{made['second']}"  # registry version → artifact version → run
    production = api.artifact("models:/churn-model@production")  # the legacy stage, as an alias
    assert production.version == "v0" and production.logged_by().path == f"churn/{made['first']}"
    assert api.artifact("model/churn-model:challenger").version == "v0"
    assert "staging" not in open_local(tmp_path / "root").resolve("model", "churn-model").aliases  # v3 skipped

    card = open_local(tmp_path / "root").card("model", "churn-model", 0)
    assert card is not None
    for line in ('model: "churn model"', "version: 1", f'run_id: "{made["first"]}"', 'stage: "Production"',
                 'tags: {"data": "2026-11"}', 'model_description: "predicts churn"', 'model_tags: {"team": "growth"}',
                 'path_in_artifact: "model"', "the baseline"):
        assert line in card.text, line
    assert not open_local(tmp_path / "root").has_collection("model", "gone")  # deleted in MLflow


def test_importing_again_adds_no_version_and_aliases_follow_the_source(source: tuple[Path, dict],
                                                                      tmp_path: Path) -> None:
    location, made = source
    root = tmp_path / "root"
    imported(location, root, experiments=["churn"])
    registry = open_local(root)
    registry.set_alias("model", "churn-model", "reviewed", "v0", actor="alice")  # set by hand in tracklet
    client = made["client"]
    client.set_registered_model_alias("churn model", "champion", "1")  # moved in MLflow
    client.delete_registered_model_alias("churn model", "challenger")  # and dropped

    results = imported(location, root)  # every experiment now: version 3's run is in the import
    statuses = sorted((result.name, result.status) for result in results.models)
    assert statuses == [("churn model version 1", "unchanged"), ("churn model version 2", "unchanged"),
                        ("churn model version 3", "imported")]
    links = registry.versions("model", "churn-model")
    assert [link.version for link in links] == [0, 1, 2]
    aliases = {alias: link.version for link in links for alias in link.aliases if not alias.startswith("v")}
    assert aliases == {"champion": 0, "production": 0, "staging": 2, "reviewed": 0, "latest": 2}
    assert [event.reason for event in registry.history("model", "churn-model", "challenger")][-1].startswith(
        "tracklet import mlflow")

    moves = len(registry.history("model", "churn-model"))
    again = imported(location, root)
    assert {result.status for result in again.models} == {"unchanged"}
    assert [link.version for link in registry.versions("model", "churn-model")] == [0, 1, 2]
    assert len(registry.history("model", "churn-model")) == moves  # nothing moved


def test_the_cli_reports_each_version_and_names_the_skipped_one(tmp_path: Path) -> None:
    location = tmp_path / "mlflow.db"
    uri, artifacts = store_uri(location)
    made = write_registry(uri, artifacts, tmp_path / "scratch")
    result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "mlflow", str(location),
                                       "--experiment", "churn", "-q"])
    assert result.exit_code == 0, result.output
    assert "registered model/churn-model:v1: MLflow model churn model version 2 (aliases: champion)" in result.output
    assert "skipped MLflow model churn model version 3" in result.output
    assert f"its run {made['outside']} is not in this import" in result.output
    assert "2 model version(s) registered, 0 already there, 1 skipped" in result.output
    quiet = CliRunner().invoke(main, ["--dir", str(tmp_path / "root2"), "import", "mlflow", str(location),
                                      "--no-models", "-q"])
    assert quiet.exit_code == 0 and "model version" not in quiet.output
    assert open_local(tmp_path / "root2", create=False) is None


def test_a_file_store_without_models_is_not_written(tmp_path: Path) -> None:
    """MLflow's file registry creates ``models/`` in a store it opens; a store without one is not opened."""
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    run_with_model(client, new_experiment(client, "e", None), "r", WEIGHTS, tmp_path / "scratch")
    assert not (location / "models").exists()
    results = imported(location, tmp_path / "root")
    assert [result.status for result in results] == ["imported"] and results.models == []
    assert not (location / "models").exists()


@pytest.mark.slow  # mlflow.pyfunc's import and log_model: ~14 s
def test_an_mlflow3_logged_models_files_become_an_artifact_version_the_run_logged(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 keeps a logged model's files apart from the run's (``models:/m-<id>``)."""
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
            return model_input

    location = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{location}")
    mlflow.set_tracking_uri(f"sqlite:///{location}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(run_name="trained") as run:
                info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="echo")
    finally:
        mlflow.set_tracking_uri(None)
    model_id = info.model_id
    results = imported(location, tmp_path / "root")
    [version] = results.models
    assert (version.status, version.path) == ("imported", "model/echo:v0"), version.warnings
    artifact = tracklet.Api(tmp_path / "root").artifact("models:/echo")
    assert artifact.source_name == f"mlflow-{model_id}" and artifact.metadata["mlflow_model_id"] == model_id
    files = Path(artifact.download(str(tmp_path / "out")))
    assert (files / "MLmodel").is_file() and (files / "python_model.pkl").is_file()
    assert artifact.logged_by().path == f"Default/{run.info.run_id}"
    again = imported(location, tmp_path / "root")
    assert [m.status for m in again.models] == ["unchanged"]


def test_collection_names_are_valid_and_distinct() -> None:
    names = collection_names(["churn model", "churn-model", "a/b", "ok", "!!!"])
    assert names["ok"] == "ok" and names["a/b"] == "a-b"
    assert len(set(names.values())) == 5 and names["churn model"] != names["churn-model"]
    assert names["!!!"].startswith("mlflow-model-")


@pytest.mark.slow
def test_a_tracking_servers_registry_imports(tracking_server: str, tmp_path: Path) -> None:  # noqa: F811
    made = write_registry(tracking_server, None, tmp_path / "scratch")
    results = imported(tracking_server, tmp_path / "root", experiments=["churn"])
    statuses = sorted((result.name, result.status) for result in results.models)
    assert statuses == [("churn model version 1", "imported"), ("churn model version 2", "imported"),
                        ("churn model version 3", "skipped")]
    champion = tracklet.Api(tmp_path / "root").artifact("models:/churn-model@champion")
    assert (Path(champion.download(str(tmp_path / "out"))) / "model" / "weights.bin").read_bytes() == WEIGHTS[::-1]
    assert champion.logged_by().path == f"churn/{made['second']}"
    again = imported(tracking_server, tmp_path / "root", experiments=["churn"])
    assert sorted(result.status for result in again.models) == ["skipped", "unchanged", "unchanged"]

    # An MLflow 3 logged model through the server: its files are downloaded (mlflow-artifacts:/).
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[str]:
            return model_input

    mlflow.set_tracking_uri(tracking_server)
    try:
        mlflow.set_experiment("churn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(run_name="served-model") as run:
                info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="echo")
    finally:
        mlflow.set_tracking_uri(None)
    results = imported(tracking_server, tmp_path / "root", experiments=["churn"])
    [echo] = [result for result in results.models if result.name == "echo version 1"]
    assert (echo.status, echo.path) == ("imported", "model/echo:v0"), echo.warnings
    artifact = tracklet.Api(tmp_path / "root").artifact("models:/echo")
    assert artifact.source_name == f"mlflow-{info.model_id}"
    assert (Path(artifact.download(str(tmp_path / "echo"))) / "MLmodel").is_file()
    assert artifact.logged_by().path == f"churn/{run.info.run_id}"
    assert os.environ.get("MLFLOW_TRACKING_URI") is None


def test_a_damaged_version_is_reported_and_the_others_imported(tmp_path: Path) -> None:
    location = tmp_path / "mlruns"
    uri, artifacts = store_uri(location)
    write_registry(uri, artifacts, tmp_path / "scratch")
    (location / "models" / "churn model" / "version-1" / "meta.yaml").write_text("{ not: yaml: [")
    results = imported(location, tmp_path / "root")
    statuses = {result.name: result.status for result in results.models}
    assert statuses == {"churn model version 1": "skipped", "churn model version 2": "imported",
                        "churn model version 3": "imported"}
    [damaged] = [result for result in results.models if result.status == "skipped"]
    assert "MLflow can't read it" in damaged.warnings[0]
    assert tracklet.Api(tmp_path / "root").artifact("models:/churn-model@champion").version == "v0"


def test_a_protected_alias_the_source_moved_opens_a_promotion_request(tmp_path: Path) -> None:
    location = tmp_path / "mlflow.db"
    uri, artifacts = store_uri(location)
    made = write_registry(uri, artifacts, tmp_path / "scratch")
    root = tmp_path / "root"
    imported(location, root, experiments=["churn"])
    registry = open_local(root)
    registry.protect("model", "churn-model", "champion", approvals=1)
    made["client"].set_registered_model_alias("churn model", "champion", "1")
    results = imported(location, root, experiments=["churn"])
    [first] = [result for result in results.models if result.name == "churn model version 1"]
    assert any("alias 'champion' not moved" in message and "promotion request" in message
               for message in first.warnings), first.warnings
    assert registry.resolve("model", "churn-model", "champion").version == 1  # where it was, until approved
    [request] = registry.requests("model", "churn-model")
    assert (request.alias, request.to_version, request.state) == ("champion", 0, "pending")


def test_same_files_twice_one_version_another_types_collection_skipped_and_cards_follow(tmp_path: Path) -> None:
    location = tmp_path / "mlflow.db"
    uri, artifacts = store_uri(location)
    made = write_registry(uri, artifacts, tmp_path / "scratch")
    client = made["client"]
    client.create_model_version("churn model", f"runs:/{made['first']}/model", made["first"])  # version 4: 1's files
    root = tmp_path / "root"
    run = tracklet.init(project="mine", dir=str(root), mode="offline")
    taken = tracklet.Artifact("taken", type="model")
    weights = tmp_path / "mine.bin"
    weights.write_bytes(b"mine")
    taken.add_file(str(weights))
    run.link_model(taken, registered_model_name="taken")  # a collection of another type than MLflow's
    run.finish()
    client.create_registered_model("taken")
    client.create_model_version("taken", f"runs:/{made['first']}/model", made["first"])

    results = imported(location, root)
    by_name = {result.name: result for result in results.models}
    assert by_name["churn model version 4"].path == "model/churn-model:v0"
    assert any("the same files as MLflow version 1" in m for m in by_name["churn model version 4"].warnings)
    assert by_name["taken version 1"].status == "skipped"
    assert "holds versions of type 'model'" in by_name["taken version 1"].warnings[0]
    assert [link.version for link in open_local(root).versions("model", "taken")] == [0]  # untouched

    registry = open_local(root)
    revisions = len(registry.card_revisions("model", "churn-model", 1))
    client.update_model_version("churn model", "2", description="retrained on December data")
    imported(location, root)
    card = registry.card("model", "churn-model", 1)
    assert card is not None and "retrained on December data" in card.text
    assert len(registry.card_revisions("model", "churn-model", 1)) == revisions + 1
    registry.save_card("model", "churn-model", 1, "# my own card", author="alice")  # edited by hand
    client.update_model_version("churn model", "2", description="again")
    imported(location, root)
    assert registry.card("model", "churn-model", 1).text == "# my own card"


def test_a_crafted_file_store_naming_a_directory_outside_it_imports_none_of_its_files(tmp_path: Path) -> None:
    """A file store's run whose meta.yaml names a home directory as its artifact location, and a
    registered model version whose source is one: neither directory is read (their files became
    artifacts of the data root, a private key with them); each is a warning naming it, and the
    runs still import. MLflow keeps a file store's artifact files and logged models inside it."""
    import re

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri(), registry_uri=location.as_uri())
    experiment = client.create_experiment("e")
    ids = []
    for name in ("named", "registered"):
        run = client.create_run(experiment, start_time=T0, run_name=name)
        client.log_param(run.info.run_id, "lr", "0.1")
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
        ids.append(run.info.run_id)
    meta = location / experiment / ids[0] / "meta.yaml"
    meta.write_text(re.sub(r"artifact_uri: .*", f"artifact_uri: {home.as_uri()}", meta.read_text()))
    client.create_registered_model("m")
    client.create_model_version("m", str(home), ids[1])

    results = import_mlflow(location, root=tmp_path / "root")
    by_id = {result.path.split("/")[1]: result for result in results}
    assert [by_id[run_id].status for run_id in ids] == ["imported", "imported"]
    assert any("is outside the directories" in message and ": the file store)" in message
               for message in by_id[ids[0]].warnings)
    [version] = results.models
    assert version.status == "skipped" and "is outside the directories" in version.warnings[0]
    held = [path for path in (tmp_path / "root").rglob("*") if path.is_file() and b"PRIVATE KEY" in path.read_bytes()]
    assert held == []


@pytest.mark.parametrize("before", ["unset", "variable", "set"])
def test_mlflows_tracking_uri_is_the_sources_while_read_and_as_it_was_after(before: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry read sets MLflow's process-wide tracking URI to the source (its file registry
    reads logged models through ``MlflowClient()``) with MLflow's public API, and puts back what the
    process had: nothing, the ``MLFLOW_TRACKING_URI`` variable, or a ``set_tracking_uri`` value."""
    import mlflow

    location = tmp_path / "mlruns"
    uri, artifacts = store_uri(location)
    write_registry(uri, artifacts, tmp_path / "scratch")
    elsewhere = (tmp_path / "elsewhere").as_uri()
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        if before == "variable":
            monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
        elif before == "set":
            mlflow.set_tracking_uri(elsewhere)
        results = imported(location, tmp_path / "root", experiments=["churn"])
        assert [result.status for result in results.models] == ["imported", "imported", "skipped"]
        if before == "unset":
            assert not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ
        else:
            assert mlflow.get_tracking_uri() == os.environ["MLFLOW_TRACKING_URI"] == elsewhere
        assert not (tmp_path / "elsewhere").exists()  # the source was read, not the process's store
    finally:
        mlflow.set_tracking_uri(None)
