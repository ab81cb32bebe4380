"""`tracklet import mlflow` and remote artifact locations: a store can name any URL (an internal
host's, a bucket this machine's credentials reach), so `s3://`, `http(s)://`, ... locations are not
fetched unless the user passes `--fetch-remote-artifacts`: the run imports without them, the warning
names the run, the location and the option, the marker records the location, and nothing is asked
of the host the store names. With the option, MLflow's own client fetches them (S3: boto3, here
against a real S3-speaking server, s3rver). Importing again is a no-op whichever options either
import had, except that a run imported without its files gets them once they can be read."""

from __future__ import annotations

import hashlib
import http.server
import json
import sqlite3
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) writes the MLflow stores to import")
pytest.importorskip("boto3", reason="MLflow's S3 artifact repository needs boto3")

from click.testing import CliRunner  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from s3server import BUCKET, S3_KEY, S3_SECRET, s3_filesystem  # noqa: E402
from test_import_mlflow import T0, WEIGHTS  # noqa: E402

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.importers import import_mlflow  # noqa: E402


class Recorder:
    """An HTTP server on loopback that records every request it gets (and answers 404): a host a
    store names, which an import that fetches nothing never asks."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                recorder.requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET  # noqa: N815
            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3(s3rver: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's S3 client (boto3) on the s3rver through MLflow's and AWS's variables; a prefix of
    this test's own in the bucket."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3rver)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"s3://{BUCKET}/mlflow-{uuid.uuid4().hex[:8]}"


def s3_run(database: Path, location: str, scratch: Path, name: str = "on-s3") -> str:
    """A finished run of experiment ``remote`` whose artifacts MLflow wrote to ``location`` (S3):
    ``model/weights.bin`` and ``notes.txt``; its id."""
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    found = client.get_experiment_by_name("remote")
    experiment = found.experiment_id if found else client.create_experiment("remote", artifact_location=location)
    run = client.create_run(experiment, start_time=T0, run_name=name)
    files = scratch / name
    (files / "model").mkdir(parents=True)
    (files / "model" / "weights.bin").write_bytes(WEIGHTS)
    (files / "notes.txt").write_text("hello")
    client.log_artifacts(run.info.run_id, str(files))
    client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0, step=0)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
    return run.info.run_id


def imported(location: Any, root: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_mlflow(location, root=root, **kwargs)


def files_of(root: Path, project: str, run_id: str, out: Path) -> dict[str, bytes]:
    artifact = tracklet.Api(root).artifact(f"{project}/mlflow-{run_id}:latest")
    directory = Path(artifact.download(str(out)))
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def written(root: Path) -> dict[str, str]:
    """Every file of the data root and its digest, but the store's index (a reader may write it)."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and "store" not in path.relative_to(root).parts[0]}


def test_s3_artifacts_are_not_fetched_by_default_and_are_with_the_option(s3: str, tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    run_id = s3_run(database, s3, tmp_path / "scratch")
    root = tmp_path / "root"

    [result] = imported(database, root)
    assert result.status == "imported"
    [message] = result.warnings
    assert f"run {run_id}" in message and f"{s3}/{run_id}/artifacts" in message
    assert "is a remote location (s3:)" in message and "--fetch-remote-artifacts" in message
    run = tracklet.Api(root).run(f"remote/{run_id}")
    assert run.summary == {"loss": 0.5} and run.logged_artifacts == []
    marker = json.loads((root / "projects" / "remote" / "runs" / run_id / "files" / "import.json").read_text())
    assert marker["artifacts"]["location"].startswith(s3) and "not fetched" in marker["artifacts"]["missing"]

    before = written(root)
    [again] = imported(database, root)  # the same options: nothing written, the reason said again
    assert (again.status, again.warnings) == ("unchanged", [message])
    assert written(root) == before

    [completed] = imported(database, root, fetch_remote_artifacts=True)  # the files now, the run as it was
    assert (completed.status, completed.warnings) == ("completed", [])
    assert files_of(root, "remote", run_id, tmp_path / "out") == {"model/weights.bin": WEIGHTS, "notes.txt": b"hello"}
    [logged] = tracklet.Api(root).run(f"remote/{run_id}").logged_artifacts
    assert logged["name"] == f"mlflow-{run_id}"

    before = written(root)
    for options in ({"fetch_remote_artifacts": True}, {}):  # with the option or without: nothing to do
        [again] = imported(database, root, **options)
        assert (again.status, again.warnings) == ("unchanged", [])
        assert written(root) == before
    assert len(tracklet.Api(root).artifact_versions(f"remote/mlflow-{run_id}")) == 1

    outcome = CliRunner().invoke(main, ["--dir", str(tmp_path / "root2"), "import", "mlflow", str(database), "-q",
                                        "--fetch-remote-artifacts"])
    assert outcome.exit_code == 0, outcome.output
    assert "warning" not in outcome.output
    assert files_of(tmp_path / "root2", "remote", run_id, tmp_path / "out2") == \
        {"model/weights.bin": WEIGHTS, "notes.txt": b"hello"}


def test_a_url_a_store_names_is_never_asked_without_the_option(recorder: Recorder, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A database whose rows name http:// and s3:// locations on a host of this network (here a
    recorder on loopback: MLflow's S3 client sent to it by MLFLOW_S3_ENDPOINT_URL): no request
    reaches it; every run imports, each with a warning naming its location and the option."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", recorder.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    database = tmp_path / "mlflow.db"
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.create_experiment("e")
    runs = {}
    for name, location in (("http", f"{recorder.url}/internal/admin"), ("s3", "s3://internal-bucket/secrets"),
                           ("gs", "gs://bucket/x"), ("other-server", "mlflow-artifacts://10.0.0.1:5000/1/x")):
        run = client.create_run(experiment, start_time=T0, run_name=name)
        client.log_metric(run.info.run_id, "loss", 1.0, timestamp=T0, step=0)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (location, run.info.run_id))
        connection.close()
        runs[name] = (run.info.run_id, location)
    results = {result.name: result for result in imported(database, tmp_path / "root")}
    assert {name: result.status for name, result in results.items()} == dict.fromkeys(runs, "imported")
    for name, (run_id, location) in runs.items():
        [message] = results[name].warnings
        assert f"run {run_id}" in message and location in message and "--fetch-remote-artifacts" in message
    assert recorder.requests == []
    assert all(result.without_artifacts for result in results.values())

    outcome = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "mlflow", str(database), "-q"])
    assert outcome.exit_code == 0, outcome.output
    assert "0 run(s) imported, 4 already there" in outcome.output
    assert "4 run(s) without their artifact files (the warnings above say why): e/" in outcome.output
    assert recorder.requests == []


def test_a_databases_mlflow_artifacts_location_names_no_server_to_ask(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A database copied from a tracking server holds `mlflow-artifacts:/...` locations without a host:
    MLflow would ask whichever server the process's tracking URI names. Not fetched, even with the
    option; the warning says to import from the server."""
    database = tmp_path / "mlflow.db"
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    run = client.create_run(client.create_experiment("e"), start_time=T0, run_name="served")
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
                           (f"mlflow-artifacts:/1/{run.info.run_id}/artifacts", run.info.run_id))
    connection.close()
    for fetch in (False, True):
        [result] = imported(database, tmp_path / f"root-{fetch}", fetch_remote_artifacts=fetch)
        [message] = result.warnings
        assert result.status == "imported" and "without naming the server" in message
        assert "tracklet import mlflow http://" in message


def test_one_unreachable_location_costs_that_runs_files_only(s3: str, tmp_path: Path) -> None:
    """With the option, a run whose bucket doesn't exist imports without its files, saying so;
    the other run's files import; nothing fails the import."""
    database = tmp_path / "mlflow.db"
    good = s3_run(database, s3, tmp_path / "scratch")
    bad = s3_run(database, s3, tmp_path / "scratch", "gone")
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
                           (f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/x", bad))
    connection.close()
    results = {r.name: r for r in imported(database, tmp_path / "root", fetch_remote_artifacts=True)}
    assert (results["on-s3"].status, results["on-s3"].warnings) == ("imported", [])
    assert results["gone"].status == "imported"
    [message] = results["gone"].warnings
    assert "no-such-bucket" in message and "not imported" in message
    assert files_of(tmp_path / "root", "remote", good, tmp_path / "out")["model/weights.bin"] == WEIGHTS
    assert tracklet.Api(tmp_path / "root").run(f"remote/{bad}").logged_artifacts == []


def test_a_model_versions_remote_files_are_fetched_only_with_the_option(s3: str, s3rver: str, tmp_path: Path) -> None:
    """A registered version whose files are on S3 apart from its run's (an MLflow 3 logged model's
    place): skipped by default, saying why and which option fetches them; with it, linked to a
    version holding the files MLflow's client fetched."""
    database = tmp_path / "mlflow.db"
    run_id = s3_run(database, s3, tmp_path / "scratch")
    model_location = f"{s3}/models/m-1/artifacts"
    bucket = s3_filesystem(s3rver)
    bucket.pipe(f"{model_location.removeprefix('s3://')}/MLmodel", b"flavors: {}\n")
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    client.create_registered_model("m")
    client.create_model_version("m", model_location, run_id)

    results = imported(database, tmp_path / "root")
    [version] = results.models
    assert version.status == "skipped"
    assert "model 'm' version 1" in version.warnings[0] and model_location in version.warnings[0]
    assert "--fetch-remote-artifacts" in version.warnings[0]

    results = imported(database, tmp_path / "root", fetch_remote_artifacts=True)
    assert [r.status for r in results] == ["completed"]
    [version] = results.models
    assert (version.status, version.warnings) == ("imported", [])
    files = Path(tracklet.Api(tmp_path / "root").artifact("models:/m").download(str(tmp_path / "out")))
    assert (files / "MLmodel").read_bytes() == b"flavors: {}\n"
    again = imported(database, tmp_path / "root", fetch_remote_artifacts=True)
    assert [r.status for r in again] == ["unchanged"] and [v.status for v in again.models] == ["unchanged"]
