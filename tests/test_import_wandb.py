"""`tracklet import wandb`: an offline run written by the real `wandb` package imports with the
values its script logged, point by point; importing again changes nothing; a truncated file
imports its intact prefix with a warning."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import textwrap
import warnings
from pathlib import Path

import pytest

pytest.importorskip("wandb", reason="the wandb package (test extra) is needed to write a real offline run")

import tracklet  # noqa: E402
from tracklet.cli.main import main  # noqa: E402
from tracklet.core.values import Histogram  # noqa: E402
from tracklet.importers import import_wandb, leveldblog  # noqa: E402
from tracklet.proto import wandb_import_pb2 as wpb  # noqa: E402

# The script logs with wandb and writes down, as JSON, exactly what it logged: the expectation.
SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    import numpy as np
    import wandb

    expected = {"rows": {}, "config": {"lr": 0.001, "layers": [64, 32], "optimizer": {"name": "adam", "beta": 0.9}}}
    run = wandb.init(project="imported", name="real-run", config=expected["config"], tags=["a", "b"],
                     group="grp", job_type="train", notes="written by wandb offline")

    def log(row, **kwargs):
        run.log(row, **kwargs)
        step = kwargs.get("step", run.step if kwargs.get("commit") is False else run.step - 1)
        expected["rows"].setdefault(str(step), {}).update(row)

    for i in range(300):
        log({"loss": 1.0 / (i + 1), "epoch": i // 100, "accuracy": min(1.0, i / 200),
             "phase": "warmup" if i < 50 else "main"})
    log({"partial": 1.5}, commit=False)                        # accumulates into the next row
    log({"partial_b": 7})
    log({"explicit": 2.5}, step=400)                           # an explicit step leaves a gap
    log({"explicit": float("nan"), "big": 2**40}, step=401)
    log({"flag": True}, step=402)
    hist_values = np.linspace(-1.0, 1.0, 101)
    run.log({"weights": wandb.Histogram(hist_values, num_bins=8)}, step=403)
    counts, edges = np.histogram(hist_values, bins=8)
    expected["histogram"] = {"step": 403, "counts": counts.tolist(), "edges": edges.tolist()}
    print("hello from the script")
    print("second line", file=sys.stderr)
    run.summary["best_accuracy"] = 0.99                        # a summary override
    run.summary["loss"] = 0.0001                               # overrides the last logged value
    run.config.update({"late_key": "set after init"})
    expected["config"]["late_key"] = "set after init"
    expected["run_id"] = run.id
    expected["summary"] = {"best_accuracy": 0.99, "loss": 0.0001}
    run.finish()
    json.dump(expected, open(sys.argv[1], "w"))
    """
)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A W&B offline run directory written by the real wandb package, and what it logged."""
    where = tmp_path_factory.mktemp("wandb-source")
    script = where / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(where), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "WANDB_API_KEY": "", "NO_PROXY": "*", "WANDB_CONSOLE": "wrap"}
    env.pop("PYTHONPATH", None)
    env.pop("WANDB_USERNAME", None)  # the run records no user (the W&B default offline)
    done = subprocess.run([sys.executable, str(script), str(where / "expected.json")], env=env, cwd=where,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return where / "wandb", json.loads((where / "expected.json").read_text())


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    return got == want and type(got) is type(want) or (type(want) is float and type(got) is float and got == want)


def test_offline_run_imports_with_identical_values(offline_run: tuple[Path, dict], tmp_path: Path) -> None:
    source, expected = offline_run
    results = import_wandb(source, root=tmp_path)
    assert [r.status for r in results] == ["imported"]
    run = tracklet.Api(tmp_path).run(results[0].path)
    assert run.id == expected["run_id"] and run.project == "imported"
    assert (run.name, run.tags, run.group, run.job_type, run.notes) == (
        "real-run", ["a", "b"], "grp", "train", "written by wandb offline")
    assert run.state == "finished"
    assert run.config == expected["config"]

    history = run.history()
    steps = history["_step"]
    rows = expected["rows"]
    assert steps == sorted(int(s) for s in rows) + [expected["histogram"]["step"]]
    for index, step in enumerate(steps[:-1]):
        logged = rows[str(step)]
        imported = {k: v[index] for k, v in history.items() if not k.startswith("_") and v[index] is not None}
        assert set(imported) == set(logged), step
        for key, value in logged.items():
            got = imported[key]
            # W&B stores 1.0 as 1; a key that holds floats elsewhere reads back as floats throughout
            want = float(value) if key in ("accuracy", "loss") else value
            assert _same(got, want), (step, key, got, want)
    histogram = history["weights"][-1]
    assert histogram == Histogram._raw(expected["histogram"]["edges"], expected["histogram"]["counts"])
    assert all(type(v) is float for v in history["accuracy"] if v is not None)
    assert all(type(v) is int for v in history["epoch"] if v is not None)

    # original wall times, increasing, around when the script ran
    times = history["_timestamp"]
    assert times == sorted(times) and run.created_at <= times[0] < run.created_at + 120

    summary = run.summary
    for key, value in expected["summary"].items():
        assert summary[key] == value
    assert summary["epoch"] == 2 and summary["phase"] == "main"
    assert not any(key.startswith("_") for key in summary)

    console = run.console
    texts = {(line.stream, line.text) for line in console}
    assert ("stdout", "hello from the script") in texts
    assert ("stderr", "second line") in texts


def test_importing_twice_is_a_no_op(offline_run: tuple[Path, dict], tmp_path: Path) -> None:
    source, _ = offline_run
    first = import_wandb(source, root=tmp_path)
    log = tmp_path / "projects" / "imported" / "runs" / first[0].path.split("/")[1] / "run.tlog"
    before = (log.read_bytes(), log.stat().st_mtime_ns)
    second = import_wandb(source, root=tmp_path)
    assert [r.status for r in second] == ["unchanged"]
    assert (log.read_bytes(), log.stat().st_mtime_ns) == before
    assert len(tracklet.Api(tmp_path).runs("imported")) == 1


def test_cli_imports_and_says_so_the_second_time(offline_run: tuple[Path, dict], tmp_path: Path) -> None:
    from click.testing import CliRunner

    source, expected = offline_run
    runner = CliRunner()
    first = runner.invoke(main, ["--dir", str(tmp_path), "import", "wandb", str(source), "--project", "moved", "-q"])
    assert first.exit_code == 0, first.output
    assert f"imported moved/{expected['run_id']}" in first.output
    again = runner.invoke(main, ["--dir", str(tmp_path), "import", "wandb", str(source), "--project", "moved", "-q"])
    assert again.exit_code == 0 and "unchanged, nothing to do" in again.output
    missing = runner.invoke(main, ["--dir", str(tmp_path), "import", "wandb", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file or directory" in missing.output
    assert "Traceback" not in missing.output


def test_truncated_file_imports_its_intact_prefix_with_a_warning(offline_run: tuple[Path, dict],
                                                                 tmp_path: Path) -> None:
    source, expected = offline_run
    original = next(source.glob("offline-run-*/run-*.wandb"))
    data = original.read_bytes()
    scanned = leveldblog.scan(data)
    assert scanned.damage is None
    # cut inside the record that holds step 150's history row
    def is_row_150(payload: bytes) -> bool:
        record = wpb.Record.FromString(payload)
        return record.WhichOneof("record_type") == "history" and record.history.step.num == 150

    cut_at = next(offset for offset, payload in scanned.payloads if is_row_150(payload)) + 20
    damaged_dir = tmp_path / "src" / "offline-run-cut"
    damaged_dir.mkdir(parents=True)
    (damaged_dir / original.name).write_bytes(data[:cut_at])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = import_wandb(damaged_dir, root=tmp_path / "root")
    assert any("damaged at byte" in str(w.message) and w.filename == __file__ for w in caught)  # the caller's line
    assert results[0].warnings and "incomplete" in results[0].warnings[0]
    run = tracklet.Api(tmp_path / "root").run(results[0].path)
    history = run.history(["loss"])
    assert history["_step"] == list(range(len(history["_step"])))
    assert 100 < len(history["_step"]) <= 150
    assert history["loss"] == [1.0 / (i + 1) for i in history["_step"]]
    assert run.state == "crashed"  # no exit record survived: as W&B shows such a run


def test_corrupt_checksum_stops_at_that_record(offline_run: tuple[Path, dict]) -> None:
    source, _ = offline_run
    data = bytearray(next(source.glob("offline-run-*/run-*.wandb")).read_bytes())
    scanned = leveldblog.scan(bytes(data))
    offset, _ = scanned.payloads[10]
    data[offset + 9] ^= 0xFF  # a byte of that record's data
    damaged = leveldblog.scan(bytes(data))
    assert damaged.damage is not None and damaged.damage.reason == "checksum mismatch"
    assert damaged.damage.offset == offset and len(damaged.payloads) == 10


def test_not_a_wandb_file_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    bogus = tmp_path / "run-x.wandb"
    bogus.write_bytes(b"this is not a W&B file at all")
    result = CliRunner().invoke(main, ["--dir", str(tmp_path / "root"), "import", "wandb", str(bogus)])
    assert result.exit_code == 2 and "not a W&B run file" in result.output
    assert "Traceback" not in result.output


def test_system_metrics_get_tracklet_names_units_and_rates() -> None:
    from tracklet.importers.wandb_stats import stats_records

    # names as wandb 0.31 writes them (one sample each), 10 s apart
    samples = [
        (100.0, {"memory_percent": 9.5, "proc.memory.rssMB": 62.0, "cpu": 12.0, "gpu.0.gpu": 80.0,
                 "gpu.0.memoryAllocatedBytes": 1e9, "network.sent": 1000.0, "disk.vda.in": 1.0,
                 "disk./.usagePercent": 27.0, "network.tcpRetransmits": 0.0}),
        (110.0, {"memory_percent": 10.0, "proc.memory.rssMB": 64.0, "cpu": 14.0, "gpu.0.gpu": 90.0,
                 "gpu.0.memoryAllocatedBytes": 2e9, "network.sent": 21000.0, "disk.vda.in": 11.0,
                 "disk./.usagePercent": 27.0, "network.tcpRetransmits": 0.0}),
    ]
    first, second = (dict((v.name, v.value) for v in r.stats.values) for r in stats_records(samples))
    assert first == {"memory.percent": 9.5, "process.rss_bytes": 62.0 * 2**20, "process.cpu_percent": 12.0,
                     "gpu.0.utilization_percent": 80.0, "gpu.0.memory_used_bytes": 1e9, "disk.percent": 27.0,
                     "wandb.network.tcpRetransmits": 0.0}  # rates need two samples, as in tracklet
    assert second["network.sent_bytes_per_s"] == 2000.0
    assert second["disk.read_bytes_per_s"] == 1.0 * 2**20
    assert second["gpu.0.memory_used_bytes"] == 2e9


RESUMED = textwrap.dedent(
    """
    import sys
    import wandb

    session = int(sys.argv[1])
    run = wandb.init(project="resumed", id="resume01", resume="allow", group="grp",
                     config={"session": session, f"only_{session}": True})
    for i in range(3):
        run.log({"loss": session + i / 10})
    run.summary["last_session"] = session
    run.finish()
    """
)


def _write_sessions(where: Path, sessions: range) -> None:
    (where / "resume.py").write_text(RESUMED)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(where), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "WANDB_API_KEY": "", "NO_PROXY": "*", "WANDB_X_DISABLE_STATS": "true"}
    env.pop("PYTHONPATH", None)
    for session in sessions:
        done = subprocess.run([sys.executable, "resume.py", str(session)], env=env, cwd=where, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        # W&B names a session's directory by its start second: a session that started within the
        # same second as the last would write into that one's directory (no real resume is that quick)
        time.sleep(1.0 - time.time() % 1.0 + 0.01)


def test_a_resumed_offline_run_imports_as_one_run_in_order(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _write_sessions(source, range(3))
    assert len(list((source / "wandb").glob("offline-run-*-resume01"))) == 3  # W&B: one directory per session

    results = import_wandb(source / "wandb", root=tmp_path / "root")
    assert [(r.path, r.status) for r in results] == [("resumed/resume01", "imported")]
    assert "latest-run" not in results[0].source
    run = tracklet.Api(tmp_path / "root").run("resumed/resume01")
    assert run.metadata["sessions"] == 3 and run.state == "finished" and run.group == "grp"
    history = run.history(["loss"])
    # W&B restarts each offline session at step 0; the sessions follow one another, as a tracklet resume does
    assert history["_step"] == list(range(9))
    assert history["loss"] == [0.0, 0.1, 0.2, 1.0, 1.1, 1.2, 2.0, 2.1, 2.2]
    assert history["_timestamp"] == sorted(history["_timestamp"])
    assert run.config == {"session": 2, "only_0": True, "only_1": True, "only_2": True}
    assert (run.summary["loss"], run.summary["last_session"]) == (2.2, 2)

    assert [r.status for r in import_wandb(source / "wandb", root=tmp_path / "root")] == ["unchanged"]
    _write_sessions(source, range(3, 4))  # resumed once more since: said so, not half-merged
    assert [r.status for r in import_wandb(source / "wandb", root=tmp_path / "root")] == ["changed"]


USER_RUN = textwrap.dedent(
    """
    import sys
    import wandb

    run = wandb.init(project="people", id=sys.argv[1])
    run.log({"loss": 1.0})
    run.finish()
    """
)


def _offline_run_of(where: Path, run_id: str, username: str | None) -> None:
    """A W&B offline run written by the real wandb package; ``username``: W&B's WANDB_USERNAME,
    which wandb records in the run's environment record (without it, offline, it records none)."""
    (where / "user_run.py").write_text(USER_RUN)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(where), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "WANDB_API_KEY": "", "NO_PROXY": "*", "WANDB_X_DISABLE_STATS": "true"}
    env.pop("PYTHONPATH", None)
    env.pop("WANDB_USERNAME", None)
    if username is not None:
        env["WANDB_USERNAME"] = username
    done = subprocess.run([sys.executable, "user_run.py", run_id], env=env, cwd=where, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_user_a_wandb_run_recorded_is_the_imported_runs_user_unverified(root: Path, tmp_path: Path,
                                                                             servers, monkeypatch) -> None:
    import re

    import httpx
    import serverproc
    from click.testing import CliRunner

    import tracklet.compat.wandb as compat_wandb
    from tracklet.api.remote import RemoteApi
    from tracklet.client.sync import SyncClient
    from tracklet.core.layout import RunPaths
    from tracklet.core.runuser import RunUser

    source = tmp_path / "src"
    source.mkdir()
    _offline_run_of(source, "byalice", "alice")
    _offline_run_of(source, "nobody", None)
    for run_dir in (source / "wandb").glob("offline-run-*-byalice"):  # the run file's own record wins
        (run_dir / "files" / "wandb-metadata.json").write_text(json.dumps({"username": "metadata-name"}))
    monkeypatch.setenv("LOGNAME", "importer")  # the importing machine's OS user: never the imported run's
    results = import_wandb(source / "wandb", root=root)
    assert sorted((r.path, r.status, r.warnings) for r in results) == [
        ("people/byalice", "imported", []), ("people/nobody", "imported", [])]

    api = tracklet.Api(root)
    assert api.run("people/byalice").user == RunUser("alice", verified=False)
    assert api.run("people/byalice").metadata["username"] == "alice"
    assert api.run("people/nobody").user is None and "username" not in api.run("people/nobody").metadata
    assert [run.id for run in api.runs("people", filter="user = alice")] == ["byalice"]
    assert [run.id for run in api.runs("people", filter="not user exists")] == ["nobody"]
    public = compat_wandb.Api()
    by_alice = public.run("people/byalice")
    assert (by_alice.user.username, by_alice.user.verified) == ("alice", False)
    assert public.run("people/nobody").user is None
    assert [run.id for run in public.runs("people", filters={"username": "alice"})] == ["byalice"]
    shown = CliRunner().invoke(main, ["--dir", str(root), "show", "people/byalice"], catch_exceptions=False)
    assert shown.exit_code == 0 and re.search(r"^User +alice \(unverified\) *$", shown.stdout, re.MULTILINE), shown.output

    # The dashboard over the data root (a --dev server: no keys) shows the name the source recorded, unverified.
    local = servers(root)
    with httpx.Client(base_url=local.url) as http:
        rows = {row["run_id"]: row["user"] for row in http.get("/api/v1/projects/people/runs").json()["runs"]}
    assert rows == {"byalice": {"name": "alice", "verified": False}, "nobody": None}

    # Synced to a server with keys, the run's creator is the user whose key uploaded it (verified);
    # the name the source recorded stays in its metadata.
    created = serverproc.cli("admin", "--dir", str(tmp_path / "keyed"), "create-user", "bob")
    assert created.returncode == 0, created.stderr
    keyed = servers(tmp_path / "keyed", dev=False)
    with SyncClient(keyed.url, api_key=created.stdout.strip()) as client:
        client.sync_run(RunPaths(root, "people", "byalice"))
    with httpx.Client(base_url=keyed.url, headers={"Authorization": f"Bearer {created.stdout.strip()}"}) as http:
        run = http.get("/api/v1/runs/people/byalice").json()["run"]
    assert run["user"] == {"name": "bob", "verified": True} and run["metadata"]["username"] == "alice"
    remote = RemoteApi(keyed.url, api_key=created.stdout.strip())
    try:
        synced = remote.run("people/byalice")
        assert (synced.user, synced.metadata["username"]) == (RunUser("bob", verified=True), "alice")
    finally:
        remote.close()


def test_an_older_wandb_runs_metadata_file_names_its_user(offline_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Older W&B versions wrote the user name only to files/wandb-metadata.json in the run directory; a damaged one is reported and the run imports without a user."""
    import shutil

    from tracklet.core.runuser import RunUser

    source, expected = offline_run
    original = next(source.glob("offline-run-*"))
    cases = {
        "old": (json.dumps({"os": "Linux", "host": "gpu-box", "username": "olduser", "executable": "python"}), "olduser"),
        "escapes": (json.dumps({"username": "eve\x1b]0;owned\x07" + "x" * 1000}), "eve]0;owned" + "x" * 245),
        "broken": ("{not json", None),
        "huge": (json.dumps({"username": "big", "pad": "x" * (1 << 20)}), None),
        "not-text": (json.dumps({"username": ["a"]}), None),
    }
    for case, (metadata, user) in cases.items():
        copy = tmp_path / case / original.name
        shutil.copytree(original, copy)
        (copy / "files" / "wandb-metadata.json").write_text(metadata)
        results = import_wandb(copy, root=tmp_path / case / "root")
        assert [r.status for r in results] == ["imported"]
        run = tracklet.Api(tmp_path / case / "root").run(results[0].path)
        assert run.user == (None if user is None else RunUser(user)), case
        assert run.history(["loss"])["_step"][:3] == [0, 1, 2]  # the run itself imports either way
        reported = [w for w in results[0].warnings if "wandb-metadata.json" in w]
        assert reported == (["files/wandb-metadata.json: not JSON (Expecting property name enclosed in double "
                             "quotes: line 1 column 2 (char 1)) (read for the run's user name); not imported"]
                            if case == "broken" else
                            ["files/wandb-metadata.json: larger than 1 MiB (read for the run's user name); not imported"]
                            if case == "huge" else []), case
