"""The ``tracklet`` command line: projects, runs, show, export, demo, and its error paths."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main
from tracklet.core.export import json_safe
from tracklet.core.values import INT64_MAX, INT64_MIN

QUIET = {"console": "off", "capture_environment": False}


def _strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """alpha/one (finished, console captured), alpha/two "twin" (failed), beta/three "twin"."""
    root = tmp_path_factory.mktemp("cli-data")
    run = tracklet.init(
        dir=str(root), project="alpha", id="one", name="first-run", tags=["baseline"],
        config={"lr": 0.001, "model": {"layers": 4, "act": "gelu"}},
        settings={"console": "wrap", "capture_environment": False},
    )
    run.define_metric("val/loss", summary="min")
    print("hello from the training loop")
    print("[bold]not markup[/bold]")
    for step in range(5):
        row = {"loss": 1.0 / (step + 1), "ünï": step, "big": INT64_MAX if step % 2 else INT64_MIN}
        if step == 2:
            row["val/loss"] = 0.25
            row["note"] = "mid"
        if step == 3:
            row["loss"] = float("nan")
            row["val/loss"] = 0.5
        run.log(row)
    run.summary["best"] = float("inf")
    run.finish()

    with pytest.raises(RuntimeError):
        with tracklet.init(dir=str(root), project="alpha", id="two", name="twin", settings=QUIET) as failing:
            failing.log({"loss": 3.0})
            raise RuntimeError("boom")

    other = tracklet.init(dir=str(root), project="beta", id="three", name="twin", settings=QUIET)
    other.log({"acc": 0.5})
    other.finish()
    return root


def invoke(root, *args, env=None):
    runner = CliRunner()
    return runner.invoke(main, ["--dir", str(root), *args], env=env, catch_exceptions=False)


def assert_clean_error(result, *fragments):
    """Exit status 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tracklet: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- listing


def test_projects(runs_root):
    result = invoke(runs_root, "projects")
    assert result.exit_code == 0, result.output
    assert "alpha" in result.stdout and "beta" in result.stdout
    data = _strict_json(invoke(runs_root, "projects", "--json").stdout)
    assert [(p["project"], p["runs"]) for p in data] == [("alpha", 2), ("beta", 1)]


def test_projects_empty_root(tmp_path):
    result = invoke(tmp_path, "projects")
    assert result.exit_code == 0
    assert "No projects" in result.stdout
    assert _strict_json(invoke(tmp_path, "runs", "--json").stdout) == []


def test_runs_table(runs_root):
    result = invoke(runs_root, "runs", "alpha")
    assert result.exit_code == 0, result.output
    for text in ("one", "first-run", "finished", "two", "twin", "failed"):
        assert text in result.stdout
    assert "three" not in result.stdout
    everything = invoke(runs_root, "runs").stdout
    assert "three" in everything and "beta" in everything


def test_runs_json(runs_root):
    data = _strict_json(invoke(runs_root, "runs", "--json").stdout)
    by_path = {r["path"]: r for r in data}
    assert set(by_path) == {"alpha/one", "alpha/two", "beta/three"}
    one = by_path["alpha/one"]
    assert one["name"] == "first-run" and one["state"] == "finished" and one["exit_code"] == 0
    assert one["rows"] == 5 and one["last_step"] == 4
    assert one["tags"] == ["baseline"]
    assert one["summary"]["val/loss"] == 0.25  # define_metric(summary="min")
    assert one["summary"]["best"] == "Infinity"
    assert one["summary"]["big"] in (INT64_MIN, INT64_MAX)  # exact int64 either way
    assert one["summary"] == json_safe(tracklet.Api(runs_root).run("alpha/one").summary)
    assert isinstance(one["created_at"], float) and one["runtime"] >= 0
    assert by_path["alpha/two"]["state"] == "failed" and by_path["alpha/two"]["exit_code"] == 1
    assert [r["path"] for r in _strict_json(invoke(runs_root, "runs", "beta", "--json").stdout)] == ["beta/three"]


def test_runs_unknown_project(runs_root):
    assert_clean_error(invoke(runs_root, "runs", "gamma"), "gamma", "alpha, beta")


@pytest.mark.parametrize("command", [("artifact", "ls"), ("report", "ls"), ("traces", "export", "-o", "{out}"),
                                     ("media", "prune", "--keep-last", "1")])
def test_every_command_taking_a_project_names_an_unknown_one(runs_root, tmp_path, command):
    """A mistyped PROJECT was answered with silence (exit 0: nothing listed, an empty export
    written, "nothing to retire"); now as `tracklet runs` answers it: the projects there."""
    out = tmp_path / "spans.jsonl"
    words = [word.format(out=out) for word in command]
    assert_clean_error(invoke(runs_root, *words[:2], "gamma", *words[2:]), "no project 'gamma'", "alpha, beta")
    assert not out.exists()
    assert invoke(runs_root, *words[:2], "alpha", *words[2:]).exit_code == 0  # a project without any: fine


# ---------------------------------------------------------------- show


@pytest.mark.parametrize("reference", ["alpha/one", "one", "first-run", "alpha/first-run"])
def test_show_by_path_id_or_name(runs_root, reference):
    result = invoke(runs_root, "show", reference)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("alpha/one", "first-run", "finished", "baseline", "model.layers", "gelu", "val/loss",
                 "History: 5 rows", "ünï", "hello from the training loop", "[bold]not markup[/bold]"):
        assert text in out, text


def test_show_json(runs_root):
    data = _strict_json(invoke(runs_root, "show", "alpha/one", "--json").stdout)
    assert data["path"] == "alpha/one" and data["state"] == "finished"
    assert data["config"] == {"lr": 0.001, "model": {"layers": 4, "act": "gelu"}}
    assert data["history"] == {"rows": 5, "last_step": 4, "keys": ["loss", "ünï", "big", "val/loss", "note"]}
    assert data["summary"]["best"] == "Infinity"
    assert [line["text"] for line in data["console"]][:2] == ["hello from the training loop", "[bold]not markup[/bold]"]
    assert data["metadata"]["host"] and data["metadata"]["command"]
    assert data["metric_definitions"] == [{"name": "val/loss", "step_metric": "", "summary": ["min"], "hidden": False}]
    assert data["error"] is None and data["dir"].endswith("one")


def test_show_failed_run(runs_root):
    result = invoke(runs_root, "show", "alpha/two")
    assert result.exit_code == 0, result.output
    assert "failed (exit code 1)" in result.stdout
    assert "RuntimeError: boom" in result.stdout
    data = _strict_json(invoke(runs_root, "show", "alpha/two", "--json").stdout)
    assert data["error"] == "RuntimeError: boom" and "Traceback" in data["traceback"]


def test_a_run_name_is_taken_wherever_a_run_id_is(runs_root):
    from tracklet.cli.serve import resolve_run

    # the name "twin" is shared across projects, but unique within each: project/name picks one
    assert tracklet.Api(runs_root).run("beta/twin").id == "three"
    assert tracklet.Api(runs_root).run("alpha/twin").id == "two"
    assert _strict_json(invoke(runs_root, "show", "beta/twin", "--json").stdout)["path"] == "beta/three"
    exported = invoke(runs_root, "export", "alpha/first-run", "-f", "jsonl")
    assert exported.exit_code == 0 and exported.stdout.count("\n") == 5, exported.output
    paths = resolve_run(runs_root, "alpha/first-run")  # tracklet sync's lookup
    assert (paths.project, paths.run_id) == ("alpha", "one")
    assert (resolve_run(runs_root, "first-run").run_id, resolve_run(runs_root, "three").run_id) == ("one", "three")
    with pytest.raises(ValueError, match="matches 2 runs"):
        resolve_run(runs_root, "twin")


def test_show_errors(runs_root):
    assert_clean_error(invoke(runs_root, "show", "nope"), "no run", "'nope'")
    assert_clean_error(invoke(runs_root, "show", "alpha/nope"), "no run alpha/nope")
    assert_clean_error(invoke(runs_root, "show", "alpha/not a name"), "no run alpha/not a name")
    assert_clean_error(invoke(runs_root, "show", "twin"), "matches 2 runs", "alpha/two", "beta/three")
    assert_clean_error(invoke(runs_root, "show", "bad name!/x"), "not valid")


def test_default_root_from_environment(runs_root, monkeypatch):
    monkeypatch.setenv("TRACKLET_DIR", str(runs_root))
    result = CliRunner().invoke(main, ["show", "beta/three", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _strict_json(result.stdout)["name"] == "twin"


# ---------------------------------------------------------------- export


def test_export_csv_to_stdout(runs_root):
    result = invoke(runs_root, "export", "alpha/one", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    history = tracklet.Api(runs_root).run("alpha/one").history()
    assert [int(r["_step"]) for r in rows] == history["_step"]
    assert [float(r["_timestamp"]) for r in rows] == history["_timestamp"]
    assert [r["loss"] for r in rows] == ["1.0", "0.5", "0.3333333333333333", "nan", "0.2"]
    assert [r["big"] for r in rows] == [str(INT64_MIN), str(INT64_MAX)] * 2 + [str(INT64_MIN)]
    assert [r["note"] for r in rows] == ["", "", "mid", "", ""]
    assert [r["ünï"] for r in rows] == ["0", "1", "2", "3", "4"]


def test_export_jsonl_to_file_with_keys(runs_root, tmp_path):
    target = tmp_path / "out.jsonl"
    result = invoke(runs_root, "export", "one", "-f", "jsonl", "-o", str(target), "--keys", "val/loss,loss")
    assert result.exit_code == 0, result.output
    assert "Wrote 5 rows" in result.stderr
    rows = [_strict_json(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [list(r)[3:] for r in rows] == [["loss"], ["loss"], ["val/loss", "loss"], ["val/loss", "loss"], ["loss"]]
    assert rows[3]["loss"] == "NaN" and rows[2]["val/loss"] == 0.25


def test_export_parquet_format_from_suffix(runs_root, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "out.parquet"
    result = invoke(runs_root, "export", "alpha/one", "-o", str(target))
    assert result.exit_code == 0, result.output
    table = pq.read_table(target)
    assert table.column("big").to_pylist() == [INT64_MIN, INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN]
    loss = table.column("loss").to_pylist()
    assert loss[:3] == [1.0, 0.5, 1 / 3] and math.isnan(loss[3])
    assert table.column("note").to_pylist() == [None, None, "mid", None, None]


def test_export_errors(runs_root, tmp_path):
    assert_clean_error(invoke(runs_root, "export", "alpha/one", "--format", "xml"), "csv, jsonl, parquet")
    assert_clean_error(invoke(runs_root, "export", "alpha/one", "--format", "parquet"), "-o FILE")
    assert_clean_error(invoke(runs_root, "export", "alpha/one", "--keys", "loss,missing"), "'missing'")
    assert_clean_error(invoke(runs_root, "export", "ghost", "-f", "csv"), "no run")
    missing_dir = str(tmp_path / "no" / "x.csv")
    assert_clean_error(invoke(runs_root, "export", "alpha/one", "-o", missing_dir), "No such directory")


def test_export_parquet_without_pyarrow(runs_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = invoke(runs_root, "export", "alpha/one", "-f", "parquet", "-o", str(tmp_path / "x.parquet"))
    assert_clean_error(result, "pip install 'tracklet[parquet]'")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- demo


def test_demo_records_a_finished_run(tmp_path):
    result = invoke(tmp_path, "demo", "--steps", "300", "--name", "demo-test")
    assert result.exit_code == 0, result.output
    recorded = tracklet.Api(tmp_path).run("demo-test")
    assert recorded.project == "demo"
    assert f"show {recorded.path}" in result.stdout and f"export {recorded.path}" in result.stdout
    assert str(tmp_path) in result.stdout
    assert recorded.state == "finished" and recorded.exit_code == 0
    assert tracklet.run is None  # the demo finished its run
    history = recorded.history()
    assert history.num_rows == 300 and history["_step"] == list(range(300))
    assert {"train/loss", "train/lr", "train/grad_norm", "epoch", "eval/loss", "eval/acc", "weights/fc1"} <= set(
        recorded.keys()
    )
    assert all(type(v) is float for v in history["train/loss"])
    assert all(type(v) is int for v in history["epoch"]) and history["epoch"][-1] == 5
    evals = [v for v in history["eval/loss"] if v is not None]
    assert 5 <= len(evals) < 300
    assert recorded.summary["eval/loss"] == min(evals)  # define_metric("eval/loss", summary="min")
    lr = history["train/lr"]
    assert lr[0] < max(lr) and lr[-1] < max(lr) / 10  # warmup, then decay
    histograms = [h for h in history["weights/fc1"] if h is not None]
    assert histograms and sum(histograms[0].counts) == 4096
    assert recorded.config["steps"] == 300
    assert any("epoch" in line.text for line in recorded.console)


def test_demo_rejects_a_bad_project(tmp_path):
    assert_clean_error(invoke(tmp_path, "demo", "--project", "no spaces", "--steps", "3"), "not valid")


# ---------------------------------------------------------------- as a program


def test_python_dash_m(runs_root):
    done = subprocess.run(
        [sys.executable, "-m", "tracklet", "--dir", str(runs_root), "runs", "--json"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert {r["path"] for r in _strict_json(done.stdout)} == {"alpha/one", "alpha/two", "beta/three"}
    failed = subprocess.run(
        [sys.executable, "-m", "tracklet.cli.main", "--dir", str(runs_root), "show", "ghost"],
        capture_output=True, text=True, timeout=30,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"tracklet: error: no run with id or name 'ghost' under {runs_root}"]


def test_demo_with_ui_records_then_serves_the_dashboard(tmp_path):
    """README's quick start: `tracklet demo --ui` records the demo run, then serves the dashboard
    (token URL printed) with that run in it."""
    import httpx
    import serverproc

    # Forked from the server template (serverproc.cli_process), not a cold interpreter start.
    process = serverproc.cli_process("--dir", str(tmp_path), "demo", "--steps", "50", "--name", "quick", "--ui",
                                     "--port", "0", "--no-open")
    try:
        found, printed = process.wait_for(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)")
        lines = printed[:found.end()].splitlines(keepends=True)  # up to the URL's line
        assert any("Recorded demo run demo/" in line for line in lines)
        auth = {"Authorization": f"Bearer {found.group(2)}"}
        for _ in range(300):  # the ui indexes the data root every second
            answer = httpx.get(found.group(1) + "api/v1/projects/demo/runs", headers=auth, timeout=10)
            if answer.status_code == 200 and answer.json()["runs"]:
                break
            threading.Event().wait(0.1)
        assert [run["name"] for run in answer.json()["runs"]] == ["quick"]
        assert httpx.get(found.group(1) + "api/v1/projects/demo/runs", timeout=10).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.close()
