"""`tracklet import mlflow http://...` against a real `mlflow server` process (the installed
mlflow-skinny's): a metric of 20,000 points imports whole, read a page at a time (MLflow 3.2+ pages
metric history) and, from a server that answers a key's whole history at once (MLflow before 3.2:
its stores ignored the page size), through the importer's spool; a server's artifact locations on
this machine's disk (`--no-serve-artifacts`) are read only inside `--artifact-root` (a `runs:/`
location too, resolved through the server), and a `mlflow-artifacts:` location naming another host is
not fetched."""

from __future__ import annotations

import http.server
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) runs the MLflow server")

from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from test_import_mlflow import T0, WEIGHTS, mlflow_server, tracking_server  # noqa: E402,F401

import tracklet  # noqa: E402
from tracklet.importers import import_mlflow  # noqa: E402
from tracklet.importers import mlflow as mlflow_importer  # noqa: E402

pytestmark = pytest.mark.slow
POINTS = 20_000
HISTORY = "/api/2.0/mlflow/metrics/get-history"


def long_run(url: str) -> str:
    """A finished run of experiment ``long`` with keys ``loss`` (every step) and ``lr`` (every 4th),
    ``POINTS`` steps, logged through the server."""
    client = MlflowClient(tracking_uri=url)
    run = client.create_run(client.create_experiment("long"), start_time=T0, run_name="long")
    metrics = [Metric("loss", 1.0 / (s + 1), T0 + s, s) for s in range(POINTS)]
    metrics += [Metric("lr", s / POINTS, T0 + s, s) for s in range(0, POINTS, 4)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + POINTS)
    return run.info.run_id


def check_history(root: Path, run_id: str) -> None:
    history = tracklet.Api(root).run(f"long/{run_id}").history()
    assert history["_step"] == list(range(POINTS))
    assert history["loss"] == [1.0 / (s + 1) for s in range(POINTS)]
    assert history["lr"] == [s / POINTS if s % 4 == 0 else None for s in range(POINTS)]


class WholeHistory:
    """A proxy in front of a real MLflow 3 server that answers ``get-history`` as MLflow before 3.2
    did: the key's whole history in one answer, no page token (the page size and token dropped from
    the request; MLflow's SQL store then returns every point). Every other request passes through.
    ``pages``: the metric keys of the history requests, in order."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pages: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._forward()

            def do_POST(self) -> None:  # noqa: N802
                self._forward()

            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                if path == HISTORY:
                    fields = urllib.parse.parse_qs(query)
                    proxy.pages.append(fields["metric_key"][0])
                    query = urllib.parse.urlencode({key: value for key, value in fields.items()
                                                    if key not in ("max_results", "page_token")}, doseq=True)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                request = urllib.request.Request(f"{proxy.upstream}{path}{'?' + query if query else ''}", data=body,
                                                 method=self.command,
                                                 headers={"Content-Type": self.headers.get("Content-Type", "")})
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (loopback)
                        status, answer, kind = response.status, response.read(), response.headers["Content-Type"]
                except urllib.error.HTTPError as error:
                    status, answer, kind = error.code, error.read(), error.headers["Content-Type"]
                self.send_response(status)
                self.send_header("Content-Type", kind or "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> WholeHistory:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def imported(location: str, root: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_mlflow(location, root=root, **kwargs)


def test_a_long_history_from_a_server_imports_whole_paged_or_all_at_once(tracking_server: str,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    run_id = long_run(tracking_server)
    client = MlflowClient(tracking_uri=tracking_server)
    run = client.get_run(run_id)
    # What a server serving its artifacts stores: locations its artifact API resolves, not a path
    assert client.get_experiment(run.info.experiment_id).artifact_location == f"mlflow-artifacts:/{run.info.experiment_id}"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{run.info.experiment_id}/{run_id}/artifacts"

    [paged] = imported(tracking_server, tmp_path / "paged")  # MLflow 3.18's server: pages of 10,000
    assert (paged.status, paged.points) == ("imported", POINTS + POINTS // 4)
    check_history(tmp_path / "paged", run_id)

    with WholeHistory(tracking_server) as old_server:
        [whole] = imported(old_server.url, tmp_path / "whole")
    # One request per key: each answered with its whole history (more than a page: spooled)
    assert sorted(old_server.pages) == ["loss", "lr"] and POINTS > mlflow_importer.PAGE_POINTS
    assert (whole.status, whole.points, whole.warnings) == ("imported", POINTS + POINTS // 4, [])
    check_history(tmp_path / "whole", run_id)


def test_a_servers_local_artifact_paths_need_an_artifact_root(tmp_path: Path) -> None:
    """`mlflow server --no-serve-artifacts`: clients write a run's files to the local path the server
    names. A server's answer is no reason to read this machine's disk: refused by default, with a
    warning naming the option; read with it. A `mlflow-artifacts://other-host/...` location (MLflow
    would fetch it from that host) is refused too."""
    served = tmp_path / "served"
    with mlflow_server(tmp_path, "--no-serve-artifacts", "--default-artifact-root", str(served)) as url:
        client = MlflowClient(tracking_uri=url)
        experiment = client.create_experiment("e")
        assert client.get_experiment(experiment).artifact_location == str(served / experiment)  # what it stores
        runs = []
        for name in ("local", "elsewhere", "through"):
            run = client.create_run(experiment, start_time=T0, run_name=name)
            weights = tmp_path / "weights.bin"
            weights.write_bytes(WEIGHTS)
            client.log_artifact(run.info.run_id, str(weights))
            client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
            runs.append(run.info.run_id)
        with sqlite3.connect(tmp_path / "server.db") as connection:
            connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
                               (f"mlflow-artifacts://127.0.0.1:9/{experiment}/{runs[1]}/artifacts", runs[1]))
            # MLflow's download resolves runs:/ through the server to the row it names: a local path here
            connection.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (f"runs:/{runs[0]}/", runs[2]))
        connection.close()

        results = {r.name: r for r in imported(url, tmp_path / "root")}
        [message] = results["local"].warnings
        assert f"run {runs[0]}" in message and f"--artifact-root {served}" in message
        [message] = results["elsewhere"].warnings
        assert "mlflow-artifacts://127.0.0.1:9/" in message and "names another server" in message
        [message] = results["through"].warnings
        assert f"run {runs[2]}" in message and "is outside the directories" in message
        api = tracklet.Api(tmp_path / "root")
        assert [api.run(f"e/{run_id}").logged_artifacts for run_id in runs] == [[], [], []]

        results = {r.name: r for r in imported(url, tmp_path / "allowed", artifact_roots=[served])}
        assert results["local"].warnings == [] and results["through"].warnings == []
        artifact = tracklet.Api(tmp_path / "allowed").artifact(f"e/mlflow-{runs[0]}:latest")
        assert (Path(artifact.download(str(tmp_path / "out"))) / "weights.bin").read_bytes() == WEIGHTS
