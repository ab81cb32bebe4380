"""`tracklet import mlflow` reads artifact files from this machine's disk only inside the store's own
directory (a database's directory: where MLflow's default layout puts them) and the `--artifact-root`
directories: a database whose row names another directory (`file:///home/me/.ssh`), a `..` in the
location, or a link out of an allowed directory imports the run without those files, with a warning
naming the run, the directory and the option that allows it. Stores MLflow itself wrote in its default
layout import their files with no option."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) writes the MLflow stores to import")

from click.testing import CliRunner  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from test_import_mlflow import T0, WEIGHTS  # noqa: E402

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.importers import SourceError, import_mlflow  # noqa: E402

SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----"


def logged_run(uri: str, scratch: Path, name: str = "trained", experiment: str = "e") -> tuple[MlflowClient, Any]:
    """A finished run of experiment ``experiment`` with artifact file ``model/weights.bin``, written by
    MLflow with its default artifact location (relative to the working directory); the run."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, start_time=T0, run_name=name)
    files = scratch / name / "model"
    files.mkdir(parents=True)
    (files / "weights.bin").write_bytes(WEIGHTS)
    client.log_artifacts(run.info.run_id, str(files.parent))
    client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0, step=0)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
    return client, client.get_run(run.info.run_id)


def home_with_a_key(tmp_path: Path) -> Path:
    """A directory like ~/.ssh, outside every store."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519").write_text(SECRET)
    return ssh


def imported(location: Any, root: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_mlflow(location, root=root, **kwargs)


def artifact_files(root: Path, project: str, run_id: str, out: Path) -> dict[str, bytes]:
    artifact = tracklet.Api(root).artifact(f"{project}/mlflow-{run_id}:latest")
    directory = Path(artifact.download(str(out)))
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def set_artifact_uri(database: Path, run_id: str, uri: str) -> None:
    """What a crafted (or hand-edited) database holds: the run's row naming another location."""
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (uri, run_id))
    connection.close()


def test_mlflows_default_layout_beside_the_database_imports_with_no_option(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlflow ui` / a script with `sqlite:///mlflow.db` in a project directory: MLflow stores the
    default artifact root `./mlruns` of the working directory as an absolute path (no scheme), here
    beside the database. (An absolute database URI: MLflow caches a store per URI.)"""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    client, run = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == str(project / "mlruns" / run.info.experiment_id)  # what MLflow stores
    assert run.info.artifact_uri == f"{experiment.artifact_location}/{run.info.run_id}/artifacts"
    monkeypatch.chdir(tmp_path)
    [result] = imported(project / "mlflow.db", tmp_path / "root")
    assert (result.status, result.warnings) == ("imported", [])
    assert artifact_files(tmp_path / "root", "e", run.info.run_id, tmp_path / "out") == {"model/weights.bin": WEIGHTS}


def test_artifacts_kept_outside_the_databases_directory_need_an_artifact_root(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A database written from another working directory keeps its artifacts there: refused with a
    warning that names the run, the directory and the option; the run's metrics import. With
    `--artifact-root` (the CLI's, as the warning says) the files import."""
    database = tmp_path / "dbs" / "mlflow.db"
    database.parent.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    _, run = logged_run(f"sqlite:///{database}", tmp_path / "scratch")
    run_id = run.info.run_id
    [result] = imported(database, tmp_path / "root")
    assert result.status == "imported"
    [message] = result.warnings
    assert f"run {run_id}" in message and str(workdir / "mlruns") in message
    assert f"--artifact-root {workdir / 'mlruns'}" in message  # the artifact root, for every run under it
    imported_run = tracklet.Api(tmp_path / "root").run(f"e/{run_id}")
    assert imported_run.summary == {"loss": 0.5} and imported_run.logged_artifacts == []

    outcome = CliRunner().invoke(main, ["--dir", str(tmp_path / "root2"), "import", "mlflow", str(database), "-q",
                                        "--artifact-root", str(workdir / "mlruns")])
    assert outcome.exit_code == 0, outcome.output
    assert "warning" not in outcome.output
    assert artifact_files(tmp_path / "root2", "e", run_id, tmp_path / "out") == {"model/weights.bin": WEIGHTS}


def database_hiding_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any, Any, Any]:
    """An MLflow database (in the working directory) with a run, and a deleted run "hidden" whose
    location and whose model "hidden" version 1 name a home's ~/.ssh: what a crafted row can point at."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    database = project / "mlflow.db"
    client, run = logged_run(f"sqlite:///{database}", tmp_path / "scratch")
    _, hidden = logged_run(f"sqlite:///{database}", tmp_path / "scratch", "hidden")
    ssh = home_with_a_key(tmp_path)
    set_artifact_uri(database, hidden.info.run_id, ssh.as_uri())
    client.delete_run(hidden.info.run_id)
    client.create_registered_model("hidden")
    client.create_model_version("hidden", str(ssh), hidden.info.run_id)
    return database, client, run, hidden


@pytest.mark.parametrize("how", ["another directory", "dot-dot", "encoded dot-dot", "relative dot-dot"])
def test_a_database_row_naming_a_directory_outside_imports_none_of_its_files(how: str, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    _, run = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch")
    ssh = home_with_a_key(tmp_path)
    uri = {"another directory": ssh.as_uri(),
           "dot-dot": f"{project}/mlruns/../../home/.ssh",
           "encoded dot-dot": f"file://{project}/mlruns/%2e%2e/%2E%2E/home/.ssh",
           "relative dot-dot": "mlruns/../../home/.ssh"}[how]  # read from the working directory, as MLflow does
    set_artifact_uri(project / "mlflow.db", run.info.run_id, uri)
    [result] = imported(project / "mlflow.db", tmp_path / "root")
    assert result.status == "imported"
    [message] = result.warnings
    assert f"run {run.info.run_id}" in message and "is outside the directories" in message
    assert str(project) in message and f"--artifact-root {ssh}" in message  # the resolved directory
    assert tracklet.Api(tmp_path / "root").run(f"e/{run.info.run_id}").logged_artifacts == []
    assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "root").rglob("*")
                                           if path.is_file())


def test_links_never_lead_out_of_an_allowed_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's artifact directory a link to ~/.ssh (refused, as its location resolves outside); a
    link to a file or a directory outside among a run's files (those skipped, the run's own files
    imported); an experiment directory that is a link out (refused)."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    ssh = home_with_a_key(tmp_path)
    _, linked = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch", "linked")
    _, mixed = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch", "mixed")
    _, moved = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch", "moved", experiment="other")
    artifacts = Path(linked.info.artifact_uri)
    for path in sorted(artifacts.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    artifacts.rmdir()
    artifacts.symlink_to(ssh)
    own = Path(mixed.info.artifact_uri)
    (own / "key").symlink_to(ssh / "id_ed25519")
    (own / "home").symlink_to(ssh)
    other = Path(moved.info.artifact_uri).parents[1]  # mlruns/<experiment id>
    other.rename(tmp_path / "elsewhere")
    other.symlink_to(tmp_path / "elsewhere")

    results = {result.name: result for result in imported(project / "mlflow.db", tmp_path / "root")}
    assert {name: result.status for name, result in results.items()} == \
        {"linked": "imported", "mixed": "imported", "moved": "imported"}
    [message] = results["linked"].warnings
    assert f"(links followed: {ssh})" in message and "is outside the directories" in message
    assert results["mixed"].warnings == []
    assert artifact_files(tmp_path / "root", "e", mixed.info.run_id, tmp_path / "out") == \
        {"model/weights.bin": WEIGHTS}
    [message] = results["moved"].warnings
    assert f"links followed: {tmp_path / 'elsewhere'}" in message
    assert f"--artifact-root {tmp_path / 'elsewhere'}" in message
    assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "root").rglob("*")
                                           if path.is_file())

    # What the warning says to pass allows it (the link's target, not the link)
    results = {result.name: result for result in imported(project / "mlflow.db", tmp_path / "root2",
                                                             artifact_roots=tmp_path / "elsewhere")}  # one, or a list
    assert results["moved"].warnings == []
    assert artifact_files(tmp_path / "root2", "other", moved.info.run_id, tmp_path / "out2") == \
        {"model/weights.bin": WEIGHTS}


def test_a_model_versions_location_outside_is_refused_and_the_run_imports(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered version whose files are outside the run's artifacts (an MLflow 3 logged model's
    place) naming ~/.ssh in a database: the version is skipped, saying why; nothing of it is read."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    client, run = logged_run(f"sqlite:///{project}/mlflow.db", tmp_path / "scratch")
    ssh = home_with_a_key(tmp_path)
    client.create_registered_model("m")
    client.create_model_version("m", str(ssh), run.info.run_id)
    results = imported(project / "mlflow.db", tmp_path / "root")
    [version] = results.models
    assert version.status == "skipped"
    assert "is outside the directories" in version.warnings[0] and "model 'm' version 1" in version.warnings[0]
    assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "root").rglob("*")
                                           if path.is_file())


def test_an_artifact_root_that_is_not_a_directory_is_a_clear_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logged_run(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "scratch")
    with pytest.raises(SourceError, match="--artifact-root .*missing: not a directory of this machine"):
        imported(tmp_path / "mlflow.db", tmp_path / "root", artifact_roots=[tmp_path / "missing"])
    with pytest.raises(SourceError, match="--artifact-root s3://bucket: not a directory of this machine"):
        imported(tmp_path / "mlflow.db", tmp_path / "root", artifact_roots=["s3://bucket"])


@pytest.mark.parametrize(("named", "why"), [("runs:/{hidden}/", "is outside the directories"),
                                           ("models:/hidden/1", "names another registered model's files")])
def test_a_model_versions_location_resolved_through_another_run_or_model_is_confined_too(
        named: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crafted database's version location naming another run (``runs:/<id>``: one deleted, not
    imported, whose row names ~/.ssh) or another model's version (``models:/``): MLflow resolves
    those itself, to the files the other row names, and its download copied ~/.ssh."""
    database, client, run, hidden = database_hiding_a_key(tmp_path, monkeypatch)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE model_versions SET storage_location = ?, source = ? WHERE name = 'm'",
                           (named.format(hidden=hidden.info.run_id),) * 2)
    connection.close()
    results = imported(database, tmp_path / "root")
    [version] = [result for result in results.models if result.name == "m version 1"]
    assert version.status == "skipped"
    assert why in version.warnings[0] and "model 'm' version 1" in version.warnings[0]
    assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "root").rglob("*")
                                           if path.is_file())


@pytest.mark.parametrize("named", ["runs:/{hidden}/", "models:/hidden/1"])
def test_a_runs_location_resolved_through_another_run_or_model_is_confined_too(
        named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crafted database's run row naming another run's (a deleted one's, naming ~/.ssh) or a
    model version's location: MLflow's download resolves those through the store to wherever the
    other row points."""
    database, client, run, hidden = database_hiding_a_key(tmp_path, monkeypatch)
    set_artifact_uri(database, run.info.run_id, named.format(hidden=hidden.info.run_id))
    results = imported(database, tmp_path / "root")
    [result] = [result for result in results if result.name == "trained"]
    assert result.status == "imported"
    [message] = result.warnings
    assert f"run {run.info.run_id}" in message
    assert ("is outside the directories" if named.startswith("runs:") else "names another registered model") in message
    assert tracklet.Api(tmp_path / "root").run(f"e/{run.info.run_id}").logged_artifacts == []
    assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "root").rglob("*")
                                           if path.is_file())


def data_root_files(root: Path) -> dict[str, bytes]:
    """Every file of the data root but the store's index (reading runs may build it) and the caches
    (the digest cache remembers files an import hashed; its SQLite WAL is checkpointed, and its
    -wal/-shm removed, whenever its last connection closes, which no import's outcome decides)."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and path.relative_to(root).parts[0] not in ("store", "cache")}


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_importing_again_is_a_no_op_with_and_without_artifact_root(kind: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose artifacts are outside its directory (a database written from another working
    directory; a file store whose experiment keeps them elsewhere), imported again and again with and
    without `--artifact-root`: each import after the first writes nothing and says `unchanged`, but
    for the one that can first read the files the first one could not: it adds them to the run
    (`completed`), once. (Before, the run's digest held the files this import could read: an import
    with the option read `changed` after one without, and every later one too.)"""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    outside = tmp_path / "work" / "mlruns"
    outside.mkdir(parents=True)
    if kind == "sqlite":
        store = tmp_path / "dbs" / "mlflow.db"
        store.parent.mkdir()
        monkeypatch.chdir(tmp_path / "work")  # MLflow's default artifact root: ./mlruns of the working directory
        client, run = logged_run(f"sqlite:///{store}", tmp_path / "scratch")
    else:
        store = tmp_path / "mlruns"
        client = MlflowClient(tracking_uri=store.as_uri())
        client.create_experiment("e", artifact_location=(outside / "1").as_uri())
        client, run = logged_run(store.as_uri(), tmp_path / "scratch")
    run_id = run.info.run_id
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(outside)
    root = tmp_path / "root"

    [first] = imported(store, root)
    assert first.status == "imported" and f"--artifact-root {outside}" in first.warnings[0]
    snapshot = data_root_files(root)
    [again] = imported(store, root)
    assert (again.status, again.warnings) == ("unchanged", first.warnings)  # still without its files: said again
    assert data_root_files(root) == snapshot

    outcome = CliRunner().invoke(main, ["--dir", str(root), "import", "mlflow", str(store), "-q",
                                        "--artifact-root", str(outside)])
    assert outcome.exit_code == 0, outcome.output
    assert "its artifact files, not imported then, added now" in outcome.output and "warning" not in outcome.output
    assert artifact_files(root, "e", run_id, tmp_path / "out") == {"model/weights.bin": WEIGHTS}
    api_run = tracklet.Api(root).run(f"e/{run_id}")
    assert [version["name"] for version in api_run.logged_artifacts] == [f"mlflow-{run_id}"]
    assert api_run.summary == {"loss": 0.5} and api_run.state == "finished"  # the rest as it was

    snapshot = data_root_files(root)
    for roots in ([outside], [], [outside]):
        [again] = imported(store, root, artifact_roots=roots)
        assert (again.status, again.warnings) == ("unchanged", [])
        assert data_root_files(root) == snapshot
    outcome = CliRunner().invoke(main, ["--dir", str(root), "import", "mlflow", str(store), "-q",
                                        "--artifact-root", str(outside)])
    assert "0 run(s) imported, 1 already there" in outcome.output
    assert data_root_files(root) == snapshot

    fresh = tmp_path / "fresh"  # with the option from the first import on
    assert [r.status for r in imported(store, fresh, artifact_roots=[outside])] == ["imported"]
    snapshot = data_root_files(fresh)
    assert [(r.status, r.warnings) for r in imported(store, fresh, artifact_roots=[outside])] == [("unchanged", [])]
    assert data_root_files(fresh) == snapshot

    # A file the run logged since is a change of the source: `changed`, nothing written
    extra = tmp_path / "extra.txt"
    extra.write_text("more")
    client.log_artifact(run_id, str(extra))
    assert [r.status for r in imported(store, fresh, artifact_roots=[outside])] == ["changed"]
    assert data_root_files(fresh) == snapshot


def test_a_run_imported_by_an_earlier_tracklet_reads_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Markers written before the marker kept the artifact files apart hold one digest of the run and
    the files then imported: read back as `unchanged` (with its files, or without them: then an import
    that can read them adds them), not as `changed`."""
    import json

    from tracklet.importers import mlflow as mlflow_importer

    database = tmp_path / "dbs" / "mlflow.db"
    database.parent.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    _, run = logged_run(f"sqlite:///{database}", tmp_path / "scratch")
    run_id = run.info.run_id
    source = mlflow_importer.MlflowSource(database)
    source.experiments()
    [(_, source_run, _)] = list(source.runs(run.info.experiment_id))
    metrics = source.metric_state(source_run)
    for name, roots, files in (("with", [workdir / "mlruns"], [("model/weights.bin", len(WEIGHTS))]),
                               ("without", [], [])):
        root = tmp_path / name
        imported(database, root, artifact_roots=roots)
        marker_file = root / "projects" / "e" / "runs" / run_id / "files" / "import.json"
        marker = json.loads(marker_file.read_text())
        del marker["artifacts"]
        marker["sha256"] = mlflow_importer.run_digest(source_run, metrics, files)  # what they wrote
        marker_file.write_text(json.dumps(marker))
        snapshot = data_root_files(root)
        [again] = imported(database, root, artifact_roots=roots)
        assert again.status == "unchanged"
        assert data_root_files(root) == snapshot
    [completed] = imported(database, tmp_path / "without", artifact_roots=[workdir / "mlruns"])
    assert (completed.status, completed.warnings) == ("completed", [])
    assert artifact_files(tmp_path / "without", "e", run_id, tmp_path / "out") == {"model/weights.bin": WEIGHTS}
