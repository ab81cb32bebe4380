"""`tracklet import mlflow`: runs written by MLflow's own client into a file store (mlruns/) and a
SQLite database import with their params, every metric point (step, value, time), times, status,
tags and artifact files, read back through tracklet.Api; importing again changes nothing; a run
MLflow can't read is reported and skipped; a path that isn't an MLflow store is a clear error and
is never written to."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
import os
import shutil
import sqlite3
import tracemalloc
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) writes the MLflow runs to import")

from click.testing import CliRunner  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.importers import SourceError, import_mlflow  # noqa: E402
from tracklet.importers import mlflow as mlflow_importer  # noqa: E402

T0 = 1_800_000_000_000  # ms, as MLflow keeps times
STEPS = 300
WEIGHTS = bytes(range(256)) * 64


@pytest.fixture(autouse=True)
def _file_store_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests write file stores with MLflow 3, which refuses to unless told (the importer reads
    them without this; test_file_store_needs_no_switch checks that)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def new_experiment(client: MlflowClient, name: str, artifacts: Path | None) -> str:
    """An experiment; a database's keeps its artifacts under ``artifacts`` (MLflow's default is
    ./mlruns, in the working directory)."""
    location = None if artifacts is None else (artifacts / hashlib.sha256(name.encode()).hexdigest()[:8]).as_uri()
    return client.create_experiment(name, artifact_location=location)


def store_uri(location: Path) -> tuple[str, Path | None]:
    """The tracking URI of a file store (``mlruns``) or database (``*.db``) path, and where a
    database's artifacts go."""
    if location.suffix == ".db":
        return f"sqlite:///{location}", location.parent / "artifacts"
    return location.as_uri(), None


def write_runs(location: Path, scratch: Path) -> dict[str, Any]:
    """Real MLflow runs through MlflowClient: what was logged, by run name."""
    uri, artifacts = store_uri(location)
    client = MlflowClient(tracking_uri=uri)
    experiment = new_experiment(client, "/Users/alice/churn study", artifacts)
    logged: dict[str, Any] = {}

    main_run = client.create_run(experiment, start_time=T0, run_name="baseline", tags={
        "mlflow.user": "alice", "mlflow.note.content": "first try", "mlflow.source.name": "train.py",
        "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567", "team": "growth", "draft": ""})
    run_id = main_run.info.run_id
    client.log_batch(run_id, params=[Param("lr", "0.001"), Param("layers", "4"), Param("optimizer", "adam"),
                                     Param("shuffle", "True"), Param("sizes", "[1, 2]")])
    loss = {step: 1.0 / (step + 1) for step in range(STEPS)}
    acc = {step: step / STEPS for step in range(0, STEPS, 10)}
    metrics = [Metric("loss", value, T0 + 100 * step, step) for step, value in loss.items()]
    metrics += [Metric("val/acc", value, T0 + 100 * step + 5, step) for step, value in acc.items()]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    files = scratch / "files"
    (files / "model").mkdir(parents=True)
    (files / "model" / "weights.bin").write_bytes(WEIGHTS)
    (files / "notes.txt").write_text("hello")
    client.log_artifacts(run_id, str(files))
    client.set_terminated(run_id, "FINISHED", end_time=T0 + 100 * STEPS)
    logged["baseline"] = {"id": run_id, "loss": loss, "acc": acc}

    for name, status in (("crashed-one", "FAILED"), ("stopped", "KILLED"), ("ongoing", None)):
        run = client.create_run(experiment, start_time=T0 + 1000, run_name=name,
                                tags={"mlflow.parentRunId": run_id})
        client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0 + 2000, step=0)
        if status is not None:
            client.set_terminated(run.info.run_id, status, end_time=T0 + 3000)
        logged[name] = {"id": run.info.run_id}

    other = new_experiment(client, "second", artifacts)
    run = client.create_run(other, start_time=T0, run_name="other")
    client.log_metric(run.info.run_id, "x", 1.0, timestamp=T0, step=0)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
    logged["other"] = {"id": run.info.run_id}
    return logged


@pytest.fixture(scope="module", params=["file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict]:
    """(kind, location to import, what was logged)."""
    base = tmp_path_factory.mktemp(f"mlflow-{request.param}")
    location = base / ("mlruns" if request.param == "file" else "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        logged = write_runs(location, base)
    return request.param, str(location), logged


def run_named(results: list, name: str) -> Any:
    return next(result for result in results if result.name == name)


def test_runs_import_with_their_params_metrics_times_status_and_tags(store: tuple[str, str, dict],
                                                                     tmp_path: Path) -> None:
    _, location, logged = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = import_mlflow(location, root=tmp_path)
    assert sorted(r.name for r in results) == ["baseline", "crashed-one", "ongoing", "other", "stopped"]
    assert {r.status for r in results} == {"imported"}
    api = tracklet.Api(tmp_path)
    base = logged["baseline"]
    run = api.run(f"Users-alice-churn-study/{base['id']}")  # the experiment's name made a project name
    assert run.name == "baseline" and run.state == "finished" and run.exit_code == 0
    assert run.created_at == T0 / 1000 and run.runtime == pytest.approx(STEPS * 0.1)
    assert run.config == {"lr": 0.001, "layers": 4, "optimizer": "adam", "shuffle": True, "sizes": "[1, 2]"}
    assert run.notes == "first try" and sorted(run.tags) == ["draft", "team=growth"]
    assert run.user is not None and run.user.name == "alice" and not run.user.verified
    assert run.environment_record.git_commit == "0123456789abcdef0123456789abcdef01234567"
    assert list(run.start_record.command) == ["train.py"]
    history = run.history()
    assert history["_step"] == list(range(STEPS))  # one row per step: both keys of a step in one row
    assert dict(zip(history["_step"], history["loss"])) == base["loss"]
    assert {s: v for s, v in zip(history["_step"], history["val/acc"]) if v is not None} == base["acc"]
    for step, when in zip(history["_step"], history["_timestamp"]):  # a step's latest point's time
        assert when == (T0 + 100 * step + (5 if step in base["acc"] else 0)) / 1000
    assert run.summary["loss"] == base["loss"][STEPS - 1] and run.summary["val/acc"] == base["acc"][290]

    states = {name: api.run(f"Users-alice-churn-study/{logged[name]['id']}")
              for name in ("crashed-one", "stopped", "ongoing")}
    assert (states["crashed-one"].state, states["crashed-one"].exit_code) == ("failed", 1)
    assert (states["stopped"].state, states["stopped"].exit_code) == ("failed", 130)
    assert "KILLED" in states["stopped"].error
    assert states["ongoing"].state == "crashed" and states["ongoing"].exit_code is None  # RUNNING: no exit
    assert states["ongoing"].group == base["id"]  # a child run's group is its parent's id
    assert any("RUNNING" in message for message in run_named(results, "ongoing").warnings)
    assert api.run(f"second/{logged['other']['id']}").summary == {"x": 1.0}


def test_artifact_files_become_an_artifact_version_the_run_logged(store: tuple[str, str, dict],
                                                                  tmp_path: Path) -> None:
    _, location, logged = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_mlflow(location, root=tmp_path, experiments=["/Users/alice/churn study"])
    api = tracklet.Api(tmp_path)
    run_id = logged["baseline"]["id"]
    run = api.run(f"Users-alice-churn-study/{run_id}")
    [version] = run.logged_artifacts
    assert (version["name"], version["type"]) == (f"mlflow-{run_id}", "mlflow-artifacts")
    artifact = api.artifact(f"Users-alice-churn-study/mlflow-{run_id}:latest")
    target = Path(artifact.download(str(tmp_path / "out")))
    assert (target / "model" / "weights.bin").read_bytes() == WEIGHTS
    assert (target / "notes.txt").read_text() == "hello"
    other = api.run(f"Users-alice-churn-study/{logged['stopped']['id']}")
    assert other.logged_artifacts == []  # a run without artifact files logs no version


def test_importing_again_changes_nothing_and_a_run_that_grew_reads_changed(store: tuple[str, str, dict],
                                                                          tmp_path: Path) -> None:
    kind, location, logged = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = import_mlflow(location, root=tmp_path, project="all")
        runs_dir = tmp_path / "projects" / "all" / "runs"
        logs = {p.name: hashlib.sha256((p / "run.tlog").read_bytes()).hexdigest() for p in runs_dir.iterdir()}
        again = import_mlflow(location, root=tmp_path, project="all")
    assert len(first) == 5 and {r.status for r in again} == {"unchanged"}
    assert {p.name: hashlib.sha256((p / "run.tlog").read_bytes()).hexdigest() for p in runs_dir.iterdir()} == logs
    assert len(tracklet.Api(tmp_path).artifact_versions(f"all/mlflow-{logged['baseline']['id']}")) == 1

    result = CliRunner().invoke(main, ["--dir", str(tmp_path), "import", "mlflow", location, "--project", "all", "-q"])
    assert result.exit_code == 0, result.output
    assert "0 run(s) imported, 5 already there" in result.output


def test_a_run_that_logged_more_since_reads_changed(tmp_path: Path) -> None:
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    run = client.create_run(client.create_experiment("e"), start_time=T0, run_name="going")
    client.log_metric(run.info.run_id, "loss", 1.0, timestamp=T0, step=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [r.status for r in import_mlflow(location, root=tmp_path / "root")] == ["imported"]
        client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0 + 1, step=1)
        [result] = import_mlflow(location, root=tmp_path / "root")
    assert result.status == "changed"
    assert tracklet.Api(tmp_path / "root").run(f"e/{run.info.run_id}").history()["loss"] == [1.0]


def test_a_damaged_run_is_reported_and_skipped_and_the_rest_imported(tmp_path: Path) -> None:
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    experiment = client.create_experiment("e")
    ids = []
    for name in ("good", "broken", "bad-line"):
        run = client.create_run(experiment, start_time=T0, run_name=name)
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), T0 + s, s) for s in range(5)])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
        ids.append(run.info.run_id)
    (location / experiment / ids[1] / "meta.yaml").write_text("{not: [yaml")
    with (location / experiment / ids[2] / "metrics" / "loss").open("a") as metric_file:
        metric_file.write("garbage here\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = import_mlflow(location, root=tmp_path / "root")
    by_id = {r.path.split("/")[1]: r for r in results}
    assert [by_id[run_id].status for run_id in ids] == ["imported", "skipped", "imported"]
    assert "can't read this run (while parsing" in by_id[ids[1]].warnings[0]  # meta.yaml's YAML error
    assert any("line 6" in message and "'loss'" in message for message in by_id[ids[2]].warnings)
    api = tracklet.Api(tmp_path / "root")
    for run_id in (ids[0], ids[2]):  # the bad line alone is dropped
        assert api.run(f"e/{run_id}").history()["loss"] == [1.0 / (s + 1) for s in range(5)]
    assert not (tmp_path / "root" / "projects" / "e" / "runs" / ids[1]).exists()

    result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root2"), "import", "mlflow", str(location), "-q"])
    assert result.exit_code == 0, result.output
    assert "2 run(s) imported, 0 already there, 1 skipped" in result.output
    assert f"skipped {location}/{experiment}/{ids[1]}" in result.output


def test_file_store_needs_no_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses to open a file store without MLFLOW_ALLOW_FILE_STORE; reading one to move
    off it needs no such setting, and leaves the environment as it was."""
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    run = client.create_run(client.create_experiment("e"), start_time=T0)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [r.status for r in import_mlflow(location, root=tmp_path / "root")] == ["imported"]
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ


def test_what_is_not_an_mlflow_store_is_a_clear_error_and_never_written(tmp_path: Path) -> None:
    cases: list[tuple[str, str]] = [(str(tmp_path / "missing"), "no such file or directory")]
    plain = tmp_path / "notes.txt"
    plain.write_text("hello")
    cases.append((str(plain), "is not an MLflow store"))
    other_db = tmp_path / "other.db"
    with sqlite3.connect(other_db) as connection:
        connection.execute("CREATE TABLE things (x)")
    cases.append((str(other_db), "not an MLflow one"))
    cases.append((f"sqlite:///{other_db}", "not an MLflow one"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((str(empty), "is not an MLflow file store"))
    cases.append(("http://127.0.0.1:9", "no MLflow tracking server answers there"))
    cases.append(("s3://bucket/mlruns", "not s3://"))
    before = other_db.read_bytes()
    for location, expected in cases:
        with pytest.raises(SourceError, match=expected):
            import_mlflow(location, root=tmp_path / "root")
        result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "mlflow", location])
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, location
    assert other_db.read_bytes() == before  # MLflow's store would have created its tables in it
    assert sorted(p.name for p in empty.iterdir()) == []  # ... and a default experiment here
    assert not (tmp_path / "missing").exists()


def test_a_database_of_another_schema_revision_is_refused_untouched(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    client.create_run(new_experiment(client, "e", tmp_path / "artifacts"), start_time=T0)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0123abcd4567'")  # what an older MLflow left
    before = database.read_bytes()
    with pytest.raises(SourceError, match="schema revision 0123abcd4567.*mlflow db upgrade"):
        import_mlflow(database, root=tmp_path / "root")
    assert database.read_bytes() == before


def test_experiment_names_become_valid_project_names() -> None:
    assert mlflow_importer.project_name("/Users/alice/churn study", "3") == "Users-alice-churn-study"
    assert mlflow_importer.project_name("Default", "0") == "Default"
    assert mlflow_importer.project_name("///", "7") == "mlflow-7"
    assert mlflow_importer.project_name("é" * 5 + "x" * 300, "1") == "x" * 128


def test_params_that_are_a_numbers_text_become_numbers() -> None:
    value = mlflow_importer.param_value
    assert [value(t) for t in ("4", "-2", "0.001", "1e-05", "True", "False")] == [4, -2, 0.001, 1e-05, True, False]
    for text in ("007", "1.0.0", "nan", "inf", "[1, 2]", "None", "", " 4", "0x10", "1_000"):
        assert value(text) == text, text


def test_the_source_type_says_what_the_source_name_is(tmp_path: Path) -> None:
    """``mlflow.source.type``: a project's source name is its URI (rerun with ``mlflow run``), a
    job's a job id (no command), a script's or notebook's its path."""
    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    sources = {
        "project": {"mlflow.source.type": "PROJECT", "mlflow.source.name": "https://bob:secret@git.example/ml.git",
                    "mlflow.project.entryPoint": "train"},
        "job": {"mlflow.source.type": "JOB", "mlflow.source.name": "jobs/42/run/7"},
        "notebook": {"mlflow.source.type": "NOTEBOOK", "mlflow.source.name": "/Users/bob/explore.ipynb"},
        "script": {"mlflow.source.type": "LOCAL", "mlflow.source.name": "train.py"},
    }
    ids = {}
    for name, tags in sources.items():
        run = client.create_run(experiment, start_time=T0, run_name=name, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
        ids[name] = run.info.run_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_mlflow(database, root=tmp_path / "root")
    api = tracklet.Api(tmp_path / "root")
    commands = {name: list(api.run(f"e/{run_id}").start_record.command) for name, run_id in ids.items()}
    assert commands == {"project": ["mlflow", "run", "https://git.example/ml.git", "-e", "train"],
                        "job": [], "notebook": ["/Users/bob/explore.ipynb"], "script": ["train.py"]}


def test_a_servers_whole_history_at_once_is_spooled_not_held() -> None:
    """A server that ignores the page size answers a key's whole history; while the keys are merged
    by step, each waiting key holds one page, not its history (MLflow 3's server pages, so this
    reads real ``Metric`` objects as the REST store returns them)."""
    points, keys = 20_000, 8
    streams = []
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for key in range(keys):
            history = [Metric(f"k{key}", 1.0 / (step + 1), T0 + step, step) for step in range(points)]
            held = tracemalloc.get_traced_memory()[0] - base
            stream = mlflow_importer.spooled(history, 500)
            streams.append((stream, next(stream)))
            del history
        waiting = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert waiting * 10 < held * keys, (waiting, held)  # measured ~20 KB a waiting key vs 4.2 MB a history
    for stream, first in streams:
        values = [first, *stream]
        assert values[0] == (0, T0 / 1000.0, 1.0) and len(values) == points
        assert values[-1] == (points - 1, (T0 + points - 1) / 1000.0, 1.0 / points)


def test_history_merges_keys_by_step_and_keeps_a_steps_last_value() -> None:
    streams = {"a": iter([(0, 1.0, 10.0), (1, 2.0, 11.0), (1, 3.0, 12.0), (3, 4.0, 13.0)]),
               "b": iter([(1, 2.5, 20.0), (2, 2.6, 21.0)])}
    counts: dict[str, int] = {}
    rows = list(mlflow_importer.merged_rows(streams, counts))
    assert [(step, when, keys, values) for step, when, keys, values in rows] == [
        (0, 1.0, ("a",), (10.0,)), (1, 3.0, ("a", "b"), (12.0, 20.0)), (2, 2.6, ("b",), (21.0,)),
        (3, 4.0, ("a",), (13.0,))]
    assert counts == {"collapsed": 1}


def _peak_import(location: Path, root: Path) -> tuple[int, int]:
    """(points imported, peak bytes Python allocated while importing), as in a process of its own (what
    `tracklet import mlflow` is): the objects alive before are frozen out of the cyclic collector's
    count, else a test worker's large heap defers the full collections that free the records' cycles
    (core/wire.py) and garbage grows with the points (ci24: 0.69 MB for 2,000 points, 1.63 MB for 20,000)."""
    gc.collect()
    gc.freeze()
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            [result] = import_mlflow(location, root=root)
        return result.points, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.unfreeze()


def _one_metric_run(location: Path, points: int, empty: Path | None = None) -> str:
    """A run of one metric of ``points`` points written by MLflow's client into ``location``; a
    database starts as a copy of ``empty`` where given (a store MLflow made and migrated, with nothing
    in it: its migrations take seconds, the same for every database)."""
    if empty is not None:
        shutil.copyfile(empty, location)
    uri, artifacts = store_uri(location)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(new_experiment(client, "long", artifacts), start_time=T0)
    for start in range(0, points, 1000):
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), T0 + s, s)
                                                   for s in range(start, min(points, start + 1000))])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + points)
    return run.info.run_id


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "small", "large"), [("file", 5_000, 60_000), ("sqlite", 1_000, 10_000)])
def test_a_long_history_imports_whole_in_bounded_memory(kind: str, small: int, large: int, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One metric of 60,000 points (a file store: read line by line) or 10,000 (a database: read a
    page at a time) imports every point, with a peak well under ten times that of a run twelve or ten
    times shorter (what a history held whole would take: measured 7.7 and 3.4 times the short run's,
    with the pages and chunks made unbounded)."""
    from tracklet.importers import writer

    # What bounds the memory (a page of points, rows per write, the record log's write buffer), made
    # small enough that the shorter run already fills it: the longer one must need no more.
    monkeypatch.setattr(writer, "FLUSH_BYTES", 64 << 10)
    monkeypatch.setattr(mlflow_importer, "ROWS_PER_CHUNK", 1000)
    monkeypatch.setattr(mlflow_importer, "PAGE_POINTS", 1000)
    monkeypatch.setattr(mlflow_importer, "MIN_PAGE_POINTS", 1000)
    empty = None
    if kind == "sqlite":
        empty = tmp_path / "empty.db"
        MlflowClient(tracking_uri=store_uri(empty)[0]).search_experiments()  # made and migrated
    peaks = {}
    for points in (small, large):
        base = tmp_path / str(points)
        base.mkdir()
        location = base / ("mlruns" if kind == "file" else "mlflow.db")
        run_id = _one_metric_run(location, points, empty)
        if points == small:  # MLflow's first-use imports and caches, outside the measure (once a process)
            _peak_import(location, base / "warm")
        imported, peaks[points] = _peak_import(location, base / "root")
        assert imported == points
        history = tracklet.Api(base / "root").run(f"long/{run_id}").history()
        assert history["_step"] == list(range(points)) and history["loss"][-1] == 1.0 / points
    # The history records written are garbage in reference cycles (core/wire.py's repeated fields point back
    # at their message), freed by the cyclic collector's older generations only: from a file store, the
    # fastest reader, more of them wait at the peak (measured 0.85 MB for 10,000 points, 2.3 MB for
    # 120,000, ~5 KB left after gc.collect(); a history held whole would be ~24 MB), so the bound there is
    # looser. A database's import is flat.
    assert peaks[large] < (2 if kind == "sqlite" else 4) * peaks[small], peaks


@contextlib.contextmanager
def mlflow_server(directory: Path, *options: str) -> Iterator[str]:
    """A real MLflow tracking server (`mlflow server`, one worker, SQLite ``server.db`` in
    ``directory``, its working directory) on loopback, started with ``options``; its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # its job runner needs the full mlflow
    log = (directory / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{directory / 'server.db'}", *options],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("mlflow server didn't start: "
                                         + (directory / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        log.close()


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server serving its artifacts (``mlflow-artifacts:/``, kept in
    ``server-artifacts``); its URL."""
    with mlflow_server(tmp_path, "--artifacts-destination", str(tmp_path / "server-artifacts")) as url:
        yield url


@pytest.mark.slow
def test_a_tracking_servers_runs_import_with_their_proxied_artifacts(tracking_server: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=tracking_server)
    run = client.create_run(client.create_experiment("remote"), start_time=T0, run_name="served",
                            tags={"mlflow.user": "bob"})
    client.log_batch(run.info.run_id, params=[Param("lr", "0.1")],
                     metrics=[Metric("loss", 1.0 / (s + 1), T0 + s, s) for s in range(500)])
    weights = tmp_path / "weights.bin"
    weights.write_bytes(WEIGHTS)
    client.log_artifact(run.info.run_id, str(weights), "model")  # through the server (mlflow-artifacts:/)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = import_mlflow(tracking_server, root=tmp_path / "root")
        [again] = import_mlflow(tracking_server, root=tmp_path / "root")
    assert (result.status, result.points, again.status) == ("imported", 500, "unchanged")
    api = tracklet.Api(tmp_path / "root")
    imported = api.run(f"remote/{run.info.run_id}")
    assert imported.state == "finished" and imported.config == {"lr": 0.1} and imported.user.name == "bob"
    assert imported.history()["loss"] == [1.0 / (s + 1) for s in range(500)]
    artifact = api.artifact(f"remote/mlflow-{run.info.run_id}:latest")
    assert (Path(artifact.download(str(tmp_path / "out"))) / "model" / "weights.bin").read_bytes() == WEIGHTS


@pytest.mark.parametrize("fetch", [False, True])
def test_artifacts_that_cannot_be_fetched_are_a_warning_and_the_run_imports(fetch: bool, tmp_path: Path) -> None:
    """An experiment whose artifacts live on a remote store (an FTP server that isn't there, on
    loopback): not fetched by default, and unreachable with --fetch-remote-artifacts; either way the
    run imports without them, and says so (the credentials in the location not repeated)."""
    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.create_experiment("e", artifact_location="ftp://user:secret@127.0.0.1:9/artifacts")
    run = client.create_run(experiment, start_time=T0, run_name="far")
    client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0, step=0)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = import_mlflow(database, root=tmp_path / "root", fetch_remote_artifacts=fetch)
    assert result.status == "imported"
    [message] = [m for m in result.warnings if "artifact files" in m]
    assert "not imported" in message and "secret" not in message
    assert ("--fetch-remote-artifacts" in message) is not fetch
    imported = tracklet.Api(tmp_path / "root").run(f"e/{run.info.run_id}")
    assert imported.summary == {"loss": 0.5} and imported.logged_artifacts == []


def test_a_moved_file_stores_artifact_files_import(tmp_path: Path) -> None:
    """A file store copied from another machine (or renamed) keeps each run's artifact_uri naming
    where it was written; its artifact files are in the run's own directory, and import from there
    (they were dropped silently: the run imported without its artifact)."""
    written = tmp_path / "cluster" / "mlruns"
    client = MlflowClient(tracking_uri=written.as_uri())
    run = client.create_run(client.create_experiment("e"), start_time=T0, run_name="trained")
    files = tmp_path / "files"
    files.mkdir()
    (files / "weights.bin").write_bytes(WEIGHTS)
    client.log_artifacts(run.info.run_id, str(files))
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1)
    moved = tmp_path / "copy" / "mlruns"
    (tmp_path / "cluster").rename(tmp_path / "copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = import_mlflow(moved, root=tmp_path / "root")
    assert result.status == "imported"
    artifact = tracklet.Api(tmp_path / "root").artifact(f"e/mlflow-{run.info.run_id}:latest")
    assert (Path(artifact.download(str(tmp_path / "out"))) / "weights.bin").read_bytes() == WEIGHTS


def test_a_file_stores_links_devices_and_long_lines_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A crafted file store: a metric file that is a link to /dev/zero (MLflow's reader, and the
    importer's, read it until memory ran out), a param that is a link to a file of this machine's
    (it became config), a metric line of 8 MiB (held whole), a run's artifacts/ a link to a home
    directory (its files became an artifact; now a warning). The metric link is dropped with a
    warning naming it, the run with the param link is skipped, the long line dropped; the rest imports."""
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    experiment = client.create_experiment("e")
    ids = []
    for name in ("zero", "secret", "long", "linked"):
        run = client.create_run(experiment, start_time=T0, run_name=name)
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), T0 + s, s) for s in range(5)],
                         params=[Param("lr", "0.1")])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
        ids.append(run.info.run_id)
    (location / experiment / ids[0] / "metrics" / "zero").symlink_to("/dev/zero")
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    (location / experiment / ids[1] / "params" / "lr").unlink()
    (location / experiment / ids[1] / "params" / "lr").symlink_to(secret)
    with (location / experiment / ids[2] / "metrics" / "loss").open("a") as metric_file:
        metric_file.write("1" * (8 << 20) + "\n")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (location / experiment / ids[3] / "artifacts").rmdir()
    (location / experiment / ids[3] / "artifacts").symlink_to(home)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_mlflow(location, root=tmp_path / "warm")  # MLflow's first-use imports, outside the measure
        tracemalloc.start()
        try:
            results = import_mlflow(location, root=tmp_path / "root")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < (4 << 20), peak
    by_id = {r.path.split("/")[1]: r for r in results}
    assert [by_id[run_id].status for run_id in ids] == ["imported", "skipped", "imported", "imported"]
    assert any("(links followed: " in message and "is outside the directories" in message
               for message in by_id[ids[3]].warnings)
    assert tracklet.Api(tmp_path / "root").run(f"e/{ids[3]}").logged_artifacts == []
    assert any("'zero'" in message and "not a regular file" in message for message in by_id[ids[0]].warnings)
    assert "params/lr is not a regular file" in by_id[ids[1]].warnings[0]
    assert any("line 6" in message and "longer than" in message for message in by_id[ids[2]].warnings)
    api = tracklet.Api(tmp_path / "root")
    for run_id in (ids[0], ids[2]):
        run = api.run(f"e/{run_id}")
        assert run.history()["loss"] == [1.0 / (s + 1) for s in range(5)] and "zero" not in run.summary
    assert not (tmp_path / "root" / "projects" / "e" / "runs" / ids[1]).exists()


def test_a_database_run_whose_text_is_not_utf8_is_skipped_and_the_rest_imported(tmp_path: Path) -> None:
    """One run of an MLflow database with a param value that isn't UTF-8 (a damaged or crafted
    database): MLflow's search of the experiment failed whole on it, so nothing was imported."""
    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    ids = []
    for name in ("good", "bad"):
        run = client.create_run(experiment, start_time=T0 + len(ids), run_name=name)
        client.log_metric(run.info.run_id, "loss", 0.5, timestamp=T0, step=0)
        client.log_param(run.info.run_id, "p", "v")
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
        ids.append(run.info.run_id)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE params SET value = CAST(x'ff41' AS TEXT) WHERE run_uuid = ?", (ids[1],))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = import_mlflow(database, root=tmp_path / "root")
    assert [(r.path, r.status) for r in results] == [(f"e/{ids[0]}", "imported"), (f"e/{ids[1]}", "skipped")]
    assert "UTF-8" in results[1].warnings[0]
    assert tracklet.Api(tmp_path / "root").run(f"e/{ids[0]}").config == {"p": "v"}


def test_an_experiment_meta_yaml_that_is_a_link_to_a_device_is_a_clear_error(tmp_path: Path) -> None:
    """MLflow reads every experiment's meta.yaml to list any of them: a crafted store's FIFO there
    blocked the import for good, a link made it read what the link names. A meta.yaml (or tag) that
    is not a regular file is a one-line error naming the experiment; nothing written."""
    location = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=location.as_uri())
    client.create_experiment("e")
    evil = client.create_experiment("evil")
    (location / evil / "meta.yaml").unlink()
    (location / evil / "meta.yaml").symlink_to("/dev/zero")
    with pytest.raises(SourceError, match=f"experiment {evil} can't be read: .*meta.yaml is not a regular file"):
        import_mlflow(location, root=tmp_path / "root")
    assert not (tmp_path / "root").exists()


HISTORY_STEPS = 3_500


def _history_run(location: Path) -> tuple[str, dict[str, list[tuple[int, int, float]]]]:
    """A finished run whose metrics have many steps each, written by MLflow's client: ``loss`` at
    every step with NaN, +inf and -inf among its values; ``acc`` every 7th step, logged twice at each
    350th step (a later time and value: what a script that logs at MLflow's default step, or logs a
    step again, leaves); ``lr`` every step, three times at step 0. The points as logged, per key
    ``(step, time ms, value)``, in the order logged."""
    uri, _ = store_uri(location)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("history"), start_time=T0, run_name="history")
    logged: dict[str, list[tuple[int, int, float]]] = {"loss": [], "acc": [], "lr": []}
    specials = {17: math.nan, 18: math.inf, 19: -math.inf, 1_000: math.nan, HISTORY_STEPS - 1: math.inf}
    for step in range(HISTORY_STEPS):
        when = T0 + 10 * step
        logged["loss"].append((step, when, specials.get(step, 1.0 / (step + 1))))
        logged["lr"].append((step, when, step * 1e-4))
        if step == 0:
            logged["lr"] += [(0, when + 1, 0.5), (0, when + 2, 0.25)]
        if step % 7 == 0:
            logged["acc"].append((step, when, step / HISTORY_STEPS))
            if step % 350 == 0:
                logged["acc"].append((step, when + 1, -1.0 - step))
    metrics = [Metric(key, value, when, step) for key, points in logged.items() for step, when, value in points]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10 * HISTORY_STEPS)
    return run.info.run_id, logged


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_runs_whole_metric_history_arrives_every_point_once_in_order(kind: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole-history path, read directly from a real store (a file store's metric files, a
    database's metrics table, a page at a time: pages of 1,000 points here, so a key spans several):
    every point MLflow's own client returns arrives once, in its order, NaN and infinities included
    (as MLflow keeps them: a database keeps ±inf as ±1.797e308, and MLflow's client reads those back);
    the imported run holds one row per step with each key's last value at that step, and the import
    says how many points a repeated step dropped."""
    monkeypatch.setattr(mlflow_importer, "PAGE_POINTS", 1000)
    monkeypatch.setattr(mlflow_importer, "MIN_PAGE_POINTS", 1000)
    location = tmp_path / ("mlruns" if kind == "file" else "mlflow.db")
    run_id, logged = _history_run(location)
    uri, _ = store_uri(location)
    client = MlflowClient(tracking_uri=uri)

    source = mlflow_importer.MlflowSource(location)
    [experiment] = [e for e in source.experiments() if e.name == "history"]
    [(_, run, _)] = list(source.runs(experiment.experiment_id))
    assert source.metric_keys(run) == ["acc", "loss", "lr"]
    big = 1.7976931348623157e308
    for key, points in logged.items():
        dropped: dict[str, str] = {}
        read = list(source.history(run, key, 1000, dropped))
        theirs = [(m.step, m.timestamp / 1000, m.value) for m in client.get_metric_history(run_id, key)]
        assert len(read) == len(theirs) == len(points) and dropped == {}
        assert all(a[:2] == b[:2] and _same(a[2], b[2]) for a, b in zip(read, theirs)), key  # MLflow's, in order
        expected = [(step, when / 1000, value if kind == "file" or not math.isinf(value) else math.copysign(big, value))
                    for step, when, value in points]
        assert all(a[:2] == b[:2] and _same(a[2], b[2]) for a, b in zip(read, expected)), key  # as logged

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = import_mlflow(location, root=tmp_path / "root")
    duplicates = sum(1 for step, _, _ in logged["acc"] if step % 350 == 0) // 2 + 2
    assert duplicates == 12
    assert result.status == "imported"
    assert result.points == sum(len(points) for points in logged.values()) - duplicates
    assert any(m.startswith(f"{duplicates} metric point(s) shared a step") for m in result.warnings)
    history = tracklet.Api(tmp_path / "root").run(f"history/{run_id}").history()
    assert history["_step"] == list(range(HISTORY_STEPS))
    for key, points in logged.items():
        last = {}
        for step, _, value in points:  # the step's last point wins
            last[step] = value if kind == "file" or not math.isinf(value) else math.copysign(big, value)
        got = {step: value for step, value in zip(history["_step"], history[key]) if value is not None}
        assert list(got) == list(last), key
        assert all(_same(got[step], last[step]) for step in last), key
    for step in range(0, HISTORY_STEPS, 7):  # a step's time is the latest of its points
        assert history["_timestamp"][step] == (T0 + 10 * step + (2 if step == 0 else 1 if step % 350 == 0 else 0)) / 1000


_KILLED_IMPORT = """
import os, signal, sys, warnings
from tracklet.importers import import_mlflow, writer
real = writer.RunWriter.history
def history(self, rows):
    real(self, rows)
    if self.rows:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 amid the run's history
writer.RunWriter.history = history
warnings.simplefilter("ignore")
import_mlflow(sys.argv[1], root=sys.argv[2])
"""


def _small_run(location: Path) -> str:
    client = MlflowClient(tracking_uri=location.as_uri())
    run = client.create_run(client.create_experiment("e"), start_time=T0, run_name="killed")
    client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), T0 + s, s) for s in range(5)])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 5)
    return run.info.run_id


def test_what_a_killed_import_left_is_imported_anew_or_completed(tmp_path: Path) -> None:
    # What kill -9 leaves (test below, slow: a real kill): the run's files/ and the record log's
    # temporary without a marker; every later import refused the run for good ("already exists and
    # was not imported from this mlflow run"). Killed between the log's rename and the marker's, alike.
    location, root = tmp_path / "mlruns", tmp_path / "root"
    run_id = _small_run(location)
    run_dir = root / "projects" / "e" / "runs" / run_id
    (run_dir / "files").mkdir(parents=True)
    (run_dir / ".run.tlog.importing").write_bytes(b"half a log")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [r.status for r in import_mlflow(location, root=root)] == ["imported"]
        assert tracklet.Api(root).run(f"e/{run_id}").history()["loss"] == [1.0 / (s + 1) for s in range(5)]
        marker = run_dir / "files" / "import.json"
        marker.rename(marker.with_name(".import.json.importing"))  # as if killed between the two renames
        assert [r.status for r in import_mlflow(location, root=root)] == ["unchanged"]
        assert marker.is_file()
        marker.unlink()
        with pytest.raises(SourceError, match="already exists and was not imported"):  # a log, no marker: refused
            import_mlflow(location, root=root)


@pytest.mark.slow
def test_an_import_killed_midway_imports_on_the_next_try(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    location, root = tmp_path / "mlruns", tmp_path / "root"
    run_id = _small_run(location)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MLFLOW_ALLOW_FILE_STORE": "true"}
    killed = subprocess.run([sys.executable, "-c", _KILLED_IMPORT, str(location), str(root)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = root / "projects" / "e" / "runs" / run_id
    assert run_dir.is_dir() and not (run_dir / "run.tlog").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [r.status for r in import_mlflow(location, root=root)] == ["imported"]
        assert tracklet.Api(root).run(f"e/{run_id}").history()["loss"] == [1.0 / (s + 1) for s in range(5)]


def test_a_file_stores_metrics_folder_linked_out_is_refused(tmp_path: Path) -> None:
    # A file checked one by one (not a link, a regular file) still came through a folder that was a
    # link: `metrics -> ~/numbers` imported every file there whose lines read as numbers as metrics.
    location, outside = tmp_path / "mlruns", tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "private_number").write_text(f"{T0} 42.5 0\n")
    (outside / "sub" / "deep").write_text(f"{T0} 7 0\n")
    client = MlflowClient(tracking_uri=location.as_uri())
    experiment = client.create_experiment("e")
    ids = []
    for name in ("linked", "nested", "plain"):
        run = client.create_run(experiment, start_time=T0 + len(ids), run_name=name)
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 0.5, T0, 0), Metric("train/loss", 0.25, T0, 0)])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 10)
        ids.append(run.info.run_id)
    metrics = location / experiment / ids[0] / "metrics"
    shutil.rmtree(metrics)
    metrics.symlink_to(outside)
    nested = location / experiment / ids[1] / "metrics" / "train"
    shutil.rmtree(nested)
    nested.symlink_to(outside)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = import_mlflow(location, root=tmp_path / "root")
    by_id = {r.path.split("/")[1]: r for r in results}
    assert [by_id[run_id].status for run_id in ids] == ["skipped", "skipped", "imported"]
    assert "metrics is a symbolic link" in by_id[ids[0]].warnings[0]
    assert "metrics/train is a symbolic link" in by_id[ids[1]].warnings[0]
    assert tracklet.Api(tmp_path / "root").run(f"e/{ids[2]}").summary == {"loss": 0.5, "train/loss": 0.25}


def test_an_imported_database_is_left_with_no_connection_open(tmp_path: Path) -> None:
    """MLflow keeps an engine (a pool of connections) per database URI and store kind for the
    process's life: a process importing many databases (a notebook) held each one's descriptors
    for ever. The import empties those pools as it ends. (The database is written in another
    process, so the importing one holds only what the import opened.)"""
    from conftest import run_script

    template = tmp_path / "template" / "mlflow.db"
    template.parent.mkdir()
    made = run_script("""
    import sys
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{sys.argv[1]}")
    run = client.create_run(client.create_experiment("e"), run_name="r")
    client.log_metric(run.info.run_id, "loss", 0.5, step=0)
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_registered_model("m")  # the registry's store (an engine of its own) is read too
    client.create_model_version("m", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    """, args=(str(template),), timeout=120)
    assert made.returncode == 0, made.stderr
    done = run_script("""
    import shutil, sys, warnings
    from pathlib import Path

    from fdreport import open_targets
    from tracklet.importers import import_mlflow

    base = Path(sys.argv[1])
    for i in range(3):
        source = base / f"source{i}"
        source.mkdir()
        shutil.copy(base / "template" / "mlflow.db", source / "mlflow.db")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = import_mlflow(source / "mlflow.db", root=base / "root")
        print([run.status for run in result], len(result.models), sorted(open_targets(str(base / "source"))),
              flush=True)
    """, args=(str(tmp_path),), timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['imported'] 1 []", "['unchanged'] 1 []", "['unchanged'] 1 []"]
