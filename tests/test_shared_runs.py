"""Shared runs (W&B's shared mode): several processes write one run, each into its own log.

Real writer processes into one data root: secondaries that start before the primary's log
exists, one killed mid-run, one that goes on after the primary finished; then the readers that
show the merged run (``tracklet.Api``'s ``RecordedRun``, the store, the dashboard's API) and an
unmodified W&B shared-mode script.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import serverfork

import tracklet

REPO = Path(__file__).resolve().parents[1]
RUN = "shared1"

WRITER = """
import os, sys, time
import tracklet
root, label, mode = sys.argv[1:4]
settings = {"dir": root, "flush_interval": 0.1, "capture_environment": False,
            "system_metrics": label == "rank_1", "system_interval": 0.1, "system_window": 0.2}
if label != "primary":
    settings.update(primary=False, label=label)
base = {"primary": 0, "rank_1": 100, "rank_2": 200, "rank_3": 300}[label]
run = tracklet.init(project="p", id=sys.argv[4], config={label + "_cfg": 1, "lr": 0.1 if label == "primary" else 9},
                    settings=settings)
for step in range(5):
    run.log({"loss": base + step})
print("hello from", label, flush=True)
if mode == "hang":  # killed mid-run: what it flushed stays
    run.flush()  # (not a sleep for flush_interval's tick: on a loaded machine it can come later)
    open(os.path.join(root, label + ".ready"), "w").close()
    time.sleep(120)
if mode == "after":  # goes on after the primary finished
    while not os.path.exists(os.path.join(root, "primary.done")):
        time.sleep(0.05)
    run.log({"late": 7}, step=5)
if label == "rank_1":
    time.sleep(1.4)  # a system metrics window
run.finish()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "wrap"}


def _writer(root: Path, label: str, mode: str = "plain", run_id: str = RUN) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), label, mode, run_id], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """Secondaries start first (no run.tlog yet), rank_2 is killed mid-run, the primary finishes
    while rank_3 still records."""
    root = tmp_path_factory.mktemp("shared")
    rank_1 = _writer(root, "rank_1")
    rank_2 = _writer(root, "rank_2", "hang")
    rank_3 = _writer(root, "rank_3", "after")
    _wait_for(root / "rank_2.ready", rank_2)
    assert not (root / "projects" / "p" / "runs" / RUN / "run.tlog").exists()  # the race: no primary yet
    rank_2.send_signal(signal.SIGKILL)
    rank_2.wait()
    primary = _writer(root, "primary")
    out, err = primary.communicate(timeout=120)
    assert primary.returncode == 0, err
    (root / "primary.done").touch()
    for process in (rank_1, rank_3):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    return root


def test_recorded_run_merges_every_writer(shared_root):
    run = tracklet.Api(shared_root).run(f"p/{RUN}")
    assert run.state == "finished"  # the primary's, though rank_2 crashed and rank_3 ended later
    parts = run.parts
    assert {label: info["state"] for label, info in parts.items()} == {
        "rank_1": "finished", "rank_2": "crashed", "rank_3": "finished"}
    assert parts["rank_1"]["exit_code"] == 0 and parts["rank_2"]["exit_code"] is None
    history = run.history()
    assert history["_step"] == [0, 1, 2, 3, 4, 5]  # rows of every writer merged by step
    assert history["loss"] == [0, 1, 2, 3, 4, None]
    # "loss" is the primary's; each secondary's own copy is under its label
    assert history["loss/l:rank_1"] == [100, 101, 102, 103, 104, None]
    assert history["loss/l:rank_2"] == [200, 201, 202, 203, 204, None]  # flushed before the kill
    assert history["late"] == [None] * 5 + [7]  # rank_3's alone: its name; logged after the primary finished
    assert run.summary["loss"] == 4 and run.summary["loss/l:rank_3"] == 304 and run.summary["loss/l:rank_2"] == 204
    assert run.summary["late"] == 7
    assert run.config["lr"] == 0.1  # the primary's value wins
    assert run.config["rank_1_cfg"] == 1 and run.config["primary_cfg"] == 1
    texts = [line.text for line in run.console]
    assert "hello from primary" in texts and "[rank_1] hello from rank_1" in texts
    assert "[rank_2] hello from rank_2" in texts
    system = run.system_metrics()
    assert any(name.endswith("/l:rank_1") for name in system)  # each node's metrics under its label
    shown = serverfork.run(["show", f"p/{RUN}"], env={**_env(), "TRACKLET_DIR": str(shared_root), "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "rank_1 (finished" in shown.stdout and "rank_2 (crashed" in shown.stdout


def test_store_and_api_index_every_part(shared_root):
    api = tracklet.Api(shared_root)
    report = api.index()
    assert not report.failed
    store = api.store
    keys = store.metric_keys("p")
    assert {"loss", "loss/l:rank_1", "loss/l:rank_2", "loss/l:rank_3", "late"} <= set(keys)
    row = store.run("p", RUN)
    assert row["state"] == "finished"
    assert store.part_labels("p", RUN) == ["rank_1", "rank_2", "rank_3"]  # (a --logs server's read routes' list)
    assert row["summary"] == tracklet.Api(shared_root).run(f"p/{RUN}").summary  # as the log reader has it
    assert row["summary"]["late"] == 7 and row["summary"]["loss"] == 4
    assert row["summary"]["loss/l:rank_2"] == 204  # killed: what its history implies
    assert row["config"]["lr"] == 0.1 and row["config"]["rank_3_cfg"] == 1
    assert {label: info["state"] for label, info in row["metadata"]["parts"].items()} == {
        "rank_1": "finished", "rank_2": "crashed", "rank_3": "finished"}
    found = {h.key: list(h.values) for h in api.history([f"p/{RUN}"], keys=["loss", "loss/l:rank_2"], buckets=None)}
    assert found == {"loss": [0, 1, 2, 3, 4], "loss/l:rank_2": [200, 201, 202, 203, 204]}
    again = api.index()  # nothing new: no part is read twice
    assert again.points == 0
    assert [list(h.values) for h in api.history([f"p/{RUN}"], keys=["loss/l:rank_1"], buckets=None)] == [
        [100, 101, 102, 103, 104]]
    api.close()


def test_dashboard_api_shows_the_merged_run(shared_root, servers):
    import httpx

    server = servers(shared_root)  # the dashboard's server over the data root (tracklet ui's)
    with httpx.Client(base_url=server.url) as client:
        console = client.get(f"/api/v1/runs/p/{RUN}/console").json()
        texts = [line["text"] for line in console["lines"]]
        assert "[rank_3] hello from rank_3" in texts and "hello from primary" in texts
        names = client.get(f"/api/v1/runs/p/{RUN}/system/names").json()
        assert any(name.endswith("/l:rank_1") for name in json.dumps(names).split('"'))
        history = client.get(f"/api/v1/runs/p/{RUN}/history", params={"keys": "loss/l:rank_1,late"})
        assert history.status_code == 200 and "loss/l:rank_1" in history.text and '"late"' in history.text


def test_parts_indexed_as_they_grow(tmp_path, store_url):
    """A secondary that ends after an index pass, then restarts under its label (appending to
    its part): each pass adds only what is new; its media are the run's, under its label."""
    import numpy as np

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    primary = tracklet.init(project="p", id="grow", settings=quiet, reinit="create_new")
    primary.log({"loss": 1.0})
    primary.finish()
    api = tracklet.Api(tmp_path, store_url=store_url)
    api.index()
    for values in ([1, 2], [3]):
        secondary = tracklet.init(project="p", id="grow", settings={**quiet, "primary": False, "label": "w1"},
                                  reinit="create_new")
        assert secondary.name == primary.name  # the run's name in every process
        for value in values:
            secondary.log({"acc": value})
        if values == [3]:
            secondary.log({"img": tracklet.Image(np.zeros((4, 4, 3), dtype=np.uint8))})
        secondary.finish()
        report = api.index()
        assert not report.failed and not report.damaged
    assert [list(h.values) for h in api.history(["p/grow"], keys=["acc"], buckets=None)] == [[1, 2, 3]]
    media_rows = api.store.media("p", "grow")
    assert [row["key"] for row in media_rows] == ["img"]
    from tracklet.artifacts.gc import named_in_run_logs
    from tracklet.media.read import logged_digests

    digest = media_rows[0]["digest"]  # a blob only the part names: kept by every collector
    assert digest in logged_digests(tmp_path) and named_in_run_logs(tmp_path, {digest}) == {digest}
    assert api.store.run("p", "grow")["metadata"]["parts"]["w1"]["state"] == "finished"
    run = tracklet.Api(tmp_path).run("p/grow")
    assert run.history(["acc"])["acc"] == [1, 2, 3, None]
    assert [item.step for item in run.media("img")] == [3]
    assert run.metadata["parts"]["w1"]["state"] == "finished" and "damage" not in run.metadata["parts"]["w1"]
    api.store.index(rebuild=True)  # the store is derived: parts come back from their logs
    assert [list(h.values) for h in api.history(["p/grow"], keys=["acc"], buckets=None)] == [[1, 2, 3]]
    api.close()


def test_a_key_logged_by_several_writers_belongs_to_one(tmp_path, store_url):
    """The owner of a key (the primary, else the first label) takes its name, also when it starts
    logging the key after another writer's values were indexed under it; the store and the log
    reader agree at every step."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)

    def record(row, label=None, resume=None):
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="own", settings={**quiet, **extra}, resume=resume, reinit="create_new")
        run.log(row)
        run.finish()
        assert not api.index().failed
        keys = sorted(set(api.store.metric_keys("p")) - {"_timestamp"})
        stored = {h.key: list(h.values) for h in api.history(["p/own"], keys=keys, buckets=None)}
        read = tracklet.Api(tmp_path).run("p/own")
        assert stored == {key: [v for v in read.history([key])[key] if v is not None] for key in keys}
        assert api.store.run("p", "own")["summary"] == read.summary
        return stored

    record({"a": 1})
    assert record({"x": 20, "y": 2}, "w2") == {"a": [1], "x": [20], "y": [2]}  # w2's alone: their names
    assert record({"y": 1}, "w1") == {"a": [1], "x": [20], "y": [1], "y/l:w2": [2]}  # w1 comes first
    assert record({"x": 10}, resume="allow") == {"a": [1], "x": [10], "x/l:w2": [20], "y": [1], "y/l:w2": [2]}
    api.close()


def test_an_index_pass_skips_unchanged_parts(tmp_path, store_url):
    """A pass over shared runs whose logs didn't grow writes nothing (counted as the store's
    commits): not a transaction per part, on a server's periodic pass (``StoreIndexer``) nor in
    ``tracklet index`` beyond its one group transaction; a part that grew is picked up."""
    import sqlalchemy as sa

    from tracklet.server.indexing import StoreIndexer

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}

    def record(run_id: str, label: str | None, value: int) -> None:
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id=run_id, settings={**quiet, **extra}, resume="allow", reinit="create_new")
        run.log({"acc" if label else "loss": value})
        run.finish()

    for run_id in ("s1", "s2"):
        for label in (None, "w1", "w2", "w3"):
            record(run_id, label, 1)
    api = tracklet.Api(tmp_path, store_url=store_url)
    commits: list[int] = []
    sa.event.listen(api.store.engine, "commit", lambda connection: commits.append(1))
    server_pass = StoreIndexer(api.store, tmp_path)
    server_pass.index_all()  # (the store indexed what there was as it opened)
    commits.clear()
    server_pass.index_all()
    assert commits == []  # nothing grew: no transaction at all
    assert not api.index().failed and len(commits) == 1  # the local indexer: its one group transaction, no part's
    commits.clear()
    record("s2", "w2", 2)  # a part grows
    server_pass.index_all()
    assert len(commits) == 1  # that part's transaction only
    stored = {h.run: list(h.values) for h in api.history(["p/s1", "p/s2"], keys=["acc/l:w2"], buckets=None)}
    assert stored == {"p/s1": [1], "p/s2": [1, 2]}
    api.close()


def test_parts_indexed_before_migration_0016_go_on_from_their_offsets(tmp_path, store_url):
    """Store migration 0016 keeps a part's offset in ``run_parts``, not the run's metadata: migrated
    down, the offsets go back into ``metadata["parts"]``; migrated up again, indexing goes on from
    them (no record twice), writing each part's row once; a part's chunk then writes its row and
    leaves the run's metadata as it was."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from tracklet.server.indexing import StoreIndexer
    from tracklet.store.engine import MIGRATIONS
    from tracklet.store.schema import run_parts, runs

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}

    def record(label: str | None, value: int) -> None:
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="mig", settings={**quiet, **extra}, resume="allow", reinit="create_new")
        run.log({"acc" if label else "loss": value})
        run.finish()

    for label in (None, "w1", "w2"):
        record(label, 1)
    api = tracklet.Api(tmp_path, store_url=store_url)
    store = api.store
    metadata_before = store.run("p", "mig")["metadata"]
    assert set(metadata_before["parts"]["w1"]) >= {"state", "keys"} and "offset" not in metadata_before["parts"]["w1"]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
    assert "run_parts" not in sa.inspect(store.engine).get_table_names()
    with store.engine.connect() as connection:
        legacy = connection.execute(sa.select(runs.c.metadata)).scalar_one()["parts"]
    size = (tmp_path / "projects/p/runs/mig/parts/w1.tlog").stat().st_size
    assert legacy["w1"]["offset"] == size and legacy["w1"]["last_step"] == 0
    api.close()
    record("w1", 2)  # grows while the store is at 0015
    api = tracklet.Api(tmp_path, store_url=store_url)  # migrates to the head, indexes
    commits: list[int] = []
    sa.event.listen(api.store.engine, "commit", lambda connection: commits.append(1))
    StoreIndexer(api.store, tmp_path).index_all()
    assert commits == []  # each part got its row as the store opened
    assert [list(h.values) for h in api.history(["p/mig"], keys=["acc", "acc/l:w2"], buckets=None)] == [[1, 2], [1]]
    with api.store.engine.connect() as connection:
        rows = {row.label: row.log_offset for row in connection.execute(sa.select(run_parts))}
    assert rows == {label: (tmp_path / f"projects/p/runs/mig/parts/{label}.tlog").stat().st_size
                    for label in ("w1", "w2")}
    assert "offset" not in api.store.run("p", "mig")["metadata"]["parts"]["w1"]
    statements: list[str] = []
    sa.event.listen(api.store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(" ".join(statement.split())))
    record("w2", 2)
    StoreIndexer(api.store, tmp_path).index_all()
    assert any(sql.startswith("UPDATE run_parts") for sql in statements)
    assert not [sql for sql in statements if sql.startswith("UPDATE runs") and "metadata" in sql]
    assert [list(h.values) for h in api.history(["p/mig"], keys=["acc/l:w2"], buckets=None)] == [[1, 2]]
    api.close()


def test_secondary_needs_an_id_and_a_free_label(tmp_path):
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "primary": False, "label": "r1"}
    with pytest.raises(ValueError, match="pass id="):
        tracklet.init(project="p", settings=quiet, reinit="create_new")
    with pytest.raises(ValueError, match="label"):
        tracklet.init(project="p", id="x", settings={**quiet, "label": "../up"}, reinit="create_new")
    first = tracklet.init(project="p", id="x", settings=quiet, reinit="create_new")
    try:
        with pytest.raises(ValueError, match="live in this process"):
            tracklet.init(project="p", id="x", settings=quiet, reinit="create_new")
    finally:
        first.finish()


WANDB_DDP = """
import json, os, subprocess, sys
import wandb

rank = int(os.environ.get("RANK", "0"))
if rank == 0:
    run = wandb.init(project="ddp", id="ddp1", settings=wandb.Settings(mode="shared", x_primary=True, x_label="rank_0"))
    for child_rank in ("1", "2"):
        child = subprocess.Popen([sys.executable, __file__], env={**os.environ, "RANK": child_rank})
        assert child.wait() == 0
elif rank == 1:
    run = wandb.init(project="ddp", id="ddp1", settings=wandb.Settings(
        mode="shared", x_primary=False, x_label="rank_1", x_update_finish_state=False))
else:  # x_primary left out (W&B's default, True): W&B lets it write the run too
    run = wandb.init(project="ddp", id="ddp1", settings=wandb.Settings(mode="shared", x_label="rank_2"))
for step in range(3):
    run.log({"loss": rank * 10 + step})
print("rank", rank, "done")
run.finish()
if rank == 0:
    print(json.dumps({"id": run.id}))
"""


def test_unmodified_wandb_shared_mode_script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(WANDB_DDP))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_DIR": str(tmp_path / "data"),
           "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}
    env.pop("RANK", None)
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not supported" not in done.stderr
    run = tracklet.Api(tmp_path / "data").run("ddp/ddp1")
    assert run.state == "finished" and run.parts["rank_1"]["state"] == "finished"
    assert run.parts["rank_2"]["state"] == "finished"
    history = run.history()
    assert history["loss"] == [0, 1, 2] and history["loss/l:rank_1"] == [10, 11, 12]
    assert history["loss/l:rank_2"] == [20, 21, 22]
    assert "[rank_1] rank 1 done" in [line.text for line in run.console]


def test_online_parts_upload_beside_the_run(tmp_path, servers):
    """Online, each writer uploads its own log (a part with ``part=``), byte for byte, and the
    server's store shows the merged run; a secondary that uploads before the primary is kept."""
    import httpx

    server = servers(tmp_path / "server")
    local = tmp_path / "local"
    settings = {"dir": str(local), "console": "wrap", "system_metrics": False, "capture_environment": False,
                "mode": "online", "base_url": server.url, "upload_interval": 0.1}
    secondary = tracklet.init(project="p", id="online1", settings={**settings, "primary": False, "label": "node2"},
                              reinit="create_new")
    secondary.log({"loss": 5})
    secondary.finish()  # before the primary exists anywhere
    primary = tracklet.init(project="p", id="online1", settings=settings, reinit="create_new")
    primary.log({"loss": 1})
    primary.finish()
    run_dir = Path("projects/p/runs/online1")
    for name in ("run.tlog", "parts/node2.tlog"):
        assert (tmp_path / "server" / run_dir / name).read_bytes() == (local / run_dir / name).read_bytes()
    with httpx.Client(base_url=server.url) as client:
        run = client.get("/api/v1/runs/p/online1").json()["run"]
        assert run["summary"]["loss"] == 1 and run["summary"]["loss/l:node2"] == 5
        history = client.get("/api/v1/runs/p/online1/history", params={"keys": "loss/l:node2"})
        assert history.status_code == 200 and "loss/l:node2" in history.text
        answer = client.get("/api/v1/runs/p/online1/log/offset", params={"part": "node2"}).json()
        assert answer == {"offset": (local / run_dir / "parts/node2.tlog").stat().st_size, "part": "node2"}
        assert "part" not in client.get("/api/v1/runs/p/online1/log/offset").json()
        bad = client.get("/api/v1/runs/p/online1/log/offset", params={"part": "../x"})
        assert bad.status_code == 400 and "label" in bad.text
    # recorded offline, then `tracklet sync` sends the run's log and each part
    quiet = {"dir": str(local), "console": "off", "system_metrics": False, "capture_environment": False}
    for extra in ({"primary": False, "label": "r1"}, {}):
        later = tracklet.init(project="p", id="later", settings={**quiet, **extra}, reinit="create_new")
        later.log({"acc": 0.5})
        later.finish()
    done = serverfork.run(["sync", "p/later", "--url", server.url], env={**_env(), "TRACKLET_DIR": str(local)})
    assert done.returncode == 0, done.stderr
    later_dir = Path("projects/p/runs/later")
    for name in ("run.tlog", "parts/r1.tlog"):
        assert (tmp_path / "server" / later_dir / name).read_bytes() == (local / later_dir / name).read_bytes()
    # another node holds only its secondary's part (the primary's log is elsewhere): `tracklet sync --all`
    # there (`--all` too) sends the part and the artifact versions it logged
    node_b = tmp_path / "node_b"
    other = tracklet.init(project="p", id="later", settings={**quiet, "dir": str(node_b), "primary": False,
                                                               "label": "nodeb"}, reinit="create_new")
    (tmp_path / "weights.bin").write_bytes(b"rank weights")
    other.log_artifact(str(tmp_path / "weights.bin"), name="rank-weights", type="model")
    other.finish()
    done = serverfork.run(["sync", "p/later", "--url", server.url], env={**_env(), "TRACKLET_DIR": str(node_b)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "server" / later_dir / "parts/nodeb.tlog").is_file()
    with httpx.Client(base_url=server.url) as client:
        version = client.get("/api/v1/projects/p/artifacts/rank-weights/versions/v0")
        assert version.status_code == 200, version.text


CRASHING_PRIMARY = """
import os, sys, time
import tracklet
run = tracklet.init(project="p", id="crash", resume="allow", settings={
    "dir": sys.argv[1], "console": "off", "system_metrics": False, "capture_environment": False,
    "flush_interval": 0.1})
run.summary["best"] = 2
run.log({"loss": 1})
run.flush()  # in the log, as flush_interval's tick would have it (a sleep for it: later under load)
os._exit(0)  # killed: no exit record
"""


def test_a_crashed_primary_keeps_its_summary_and_takes_its_keys(tmp_path, store_url):
    """The primary's summary folded again from its log when it crashed: its summary-only entries
    are its latest, and a key it took from a part in its last records is its value (the part's
    under ``<key>/l:<label>``): the store agrees with the log reader."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    primary = tracklet.init(project="p", id="crash", settings=quiet, reinit="create_new")
    primary.summary["best"] = 1
    primary.log({"a": 1})
    primary.finish()
    secondary = tracklet.init(project="p", id="crash", settings={**quiet, "primary": False, "label": "w1"},
                              reinit="create_new")
    secondary.log({"loss": 5})
    secondary.finish()
    assert not api.index().failed
    assert api.store.run("p", "crash")["summary"]["loss"] == 5
    done = subprocess.run([sys.executable, "-c", CRASHING_PRIMARY, str(tmp_path)], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not api.index().failed
    read = tracklet.Api(tmp_path).run("p/crash")
    assert read.state == "crashed"
    assert read.summary["best"] == 2 and read.summary["loss"] == 1 and read.summary["loss/l:w1"] == 5
    stored = api.store.run("p", "crash")
    assert stored["state"] == "crashed" and stored["summary"] == read.summary
    api.close()


def test_a_part_before_its_primary_keeps_its_blobs(tmp_path):
    """A secondary that records (and is still running) before the primary's ``init()``: every
    collector reads its part (the blobs it names are kept; it counts as running), though no
    ``run.tlog`` exists yet, and ``tracklet sync --all`` finds it."""
    import numpy as np

    from tracklet.artifacts.gc import _running_since, named_in_run_logs
    from tracklet.client.sync import local_runs
    from tracklet.media.read import logged_digests
    from tracklet.media.retention import _running_runs, _times_named_in_logs

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False,
             "primary": False, "label": "early"}
    secondary = tracklet.init(project="p", id="first", settings=quiet, reinit="create_new")
    try:
        secondary.log({"img": tracklet.Image(np.zeros((4, 4, 3), dtype=np.uint8))})
        secondary.log({"tab": tracklet.Table(columns=["a"], data=[[1]])})
        assert secondary.flush(timeout=60)
        part = tmp_path / "projects/p/runs/first/parts/early.tlog"
        digests = logged_digests(tmp_path)
        assert digests and named_in_run_logs(tmp_path, digests) == digests
        assert set(_times_named_in_logs(tmp_path, digests)) == digests
        assert _running_since(tmp_path) is not None and "p/first" in _running_runs(tmp_path)
        assert [paths.part for paths in local_runs(tmp_path)] == ["early"] and part.is_file()
        from tracklet.server.artifact_blobs import ServerArtifacts
        from tracklet.server.media_retention import media_references

        assert digests <= media_references(tmp_path, ServerArtifacts(tmp_path))["p"]  # a server's gc
    finally:
        secondary.finish()


HOLDER = """
import os, sys, time
import tracklet
run = tracklet.init(project="p", id="dup", settings={"dir": sys.argv[1], "console": "off", "system_metrics": False,
                                                      "primary": False, "label": "rank_1"})
open(os.path.join(sys.argv[1], "holding"), "w").close()
while not os.path.exists(os.path.join(sys.argv[1], "release")):
    time.sleep(0.05)
run.finish()
"""


def test_wandb_secondary_whose_label_another_process_holds_still_records(tmp_path):
    """W&B lets two processes share an ``x_label``; here each part has one writer, so the second
    one records under its label with its pid (one warning) instead of recording nothing."""
    import tracklet.compat.wandb as wandb

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "holding", holder)
        with pytest.warns(Warning, match="recorded as .rank_1-"):
            run = wandb.init(project="p", id="dup", dir=str(tmp_path), settings=wandb.Settings(
                mode="shared", x_primary=False, x_label="rank_1", x_disable_meta=True))
        run.log({"loss": 1})
        run.finish()
    finally:
        (tmp_path / "release").touch()
        holder.communicate(timeout=60)
    part = tmp_path / f"projects/p/runs/dup/parts/rank_1-{os.getpid()}.tlog"
    assert part.is_file()


def test_a_config_or_summary_key_the_primary_sets_stays_the_primarys(tmp_path, store_url):
    """A secondary's config key, or a key it alone set in the summary, is the run's until the
    primary sets that key; the secondary's values of it don't replace the primary's then (its
    summary value reads ``<key>/l:<label>``), as the log reader and a rebuilt store have it."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    secondary = {**quiet, "primary": False, "label": "w1"}
    api = tracklet.Api(tmp_path, store_url=store_url)
    for settings, config, best, resume in ((quiet, {"a": 1}, None, None), (secondary, {"lr": 9}, 9, None),
                                           (quiet, {"lr": 0.1}, 1, "allow"), (secondary, {"lr": 8, "b": 2}, 8, None)):
        run = tracklet.init(project="p", id="cfg", settings=settings, resume=resume, reinit="create_new")
        run.config.update(config)
        if best is not None:
            run.summary["best"] = best
        run.finish()
        assert not api.index().failed
        read = tracklet.Api(tmp_path).run("p/cfg")
        assert api.store.run("p", "cfg")["summary"] == read.summary
    assert read.config == {"a": 1, "lr": 0.1, "b": 2} == api.store.run("p", "cfg")["config"]
    assert read.summary["best"] == 1 and read.summary["best/l:w1"] == 8
    api.store.index(rebuild=True)
    assert api.store.run("p", "cfg")["config"] == read.config and api.store.run("p", "cfg")["summary"] == read.summary
    api.close()


# Each writer: (label, None for the primary; history value of "loss" or None; summary["loss"] or None).
_SUMMARY_CASES = {
    # c sets "loss" in its summary only, b logs it as a history key: b's is the key, c's labelled
    "summary_only_after_history": ([("c", None, 1), ("b", 0.5, 2)], {"loss": 2, "loss/l:c": 1}),
    # c logs "loss" as a history key, b (before c in label order) only sets it in its summary
    "history_after_summary_only": ([("c", 0.5, 1), ("b", None, 2)], {"loss": 1, "loss/l:b": 2}),
    # the primary only sets it in its summary, b logs it: the entry stays the primary's, b's series "loss"
    "primary_summary_only": ([(None, None, 0), ("b", 0.5, 2)], {"loss": 0, "loss/l:b": 2}),
    # the primary logs it, c only sets it in its summary
    "primary_history": ([(None, 0.5, 0), ("c", None, 3)], {"loss": 0, "loss/l:c": 3}),
}


@pytest.mark.parametrize("case", sorted(_SUMMARY_CASES))
def test_a_summary_key_one_writer_logs_and_another_only_sets_keeps_both_values(tmp_path, store_url, case):
    """One writer of a shared run sets a summary key only in its summary, another logs it as a
    history key (docs/shared-runs.md, core/parts.summary_owner): neither value is lost, the key is
    its owner's (the primary, else the history key's owner) and the other value ``loss/l:<label>``,
    whichever writer records first and whether the store indexes between them or after both (the
    store once kept one of the two values, or showed another than the log reader)."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    writers, expected = _SUMMARY_CASES[case]
    api = tracklet.Api(tmp_path, store_url=store_url)
    for order, between in ((writers, True), (writers[::-1], True), (writers, False)):
        run_id = f"{order[0][0] or 'primary'}-{between}"
        for label, logged, best in order:
            extra = {"primary": False, "label": label} if label else {}
            run = tracklet.init(project="p", id=run_id, settings={**quiet, **extra}, reinit="create_new")
            if logged is not None:
                run.log({"loss": logged})
            run.log({"x": 1.0})
            run.summary["loss"] = best
            run.finish()
            if between:
                assert not api.index().failed
        assert not api.index().failed
        read = tracklet.Api(tmp_path).run(f"p/{run_id}")
        found = {key: value for key, value in read.summary.items() if key.startswith("loss")}
        assert found == expected, (run_id, read.summary)
        assert api.store.run("p", run_id)["summary"] == read.summary, run_id
        history = read.history()
        assert [list(h.values) for h in api.store.history(f"p/{run_id}", "loss", buckets=None)] == [
            [value for value in history["loss"] if value is not None]], run_id
    api.store.index(rebuild=True)
    for run_id in ("b-True", "c-True", "primary-True", "b-False", "c-False", "primary-False"):
        if api.store.run("p", run_id) is not None:
            assert api.store.run("p", run_id)["summary"] == tracklet.Api(tmp_path).run(f"p/{run_id}").summary
    api.close()


def test_a_part_is_never_uploaded_to_a_server_that_ignores_part(tmp_path):
    """A server from before shared runs ignores ``part=`` and answers of the run's own log: the
    part is refused before any byte is sent (it would become, or be appended to, the primary's log)."""
    import httpx

    from tracklet.client.sync import SyncClient, SyncError
    from tracklet.core.layout import RunPaths

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False,
             "primary": False, "label": "r1"}
    run = tracklet.init(project="p", id="old", settings=quiet, reinit="create_new")
    run.log({"a": 1})
    run.finish()
    requests: list[str] = []

    def older_server(request: httpx.Request) -> httpx.Response:
        requests.append(request.method)
        return httpx.Response(200, json={"offset": 0} if request.method == "GET" else {"offset": 0, "appended": 0})

    with SyncClient("http://old.invalid", transport=httpx.MockTransport(older_server)) as client:
        with pytest.raises(SyncError, match="keeps no shared runs' parts"):
            client.sync_run(RunPaths(tmp_path, "p", "old", "r1"))
    assert requests == ["GET"]


@pytest.fixture(scope="module")
def parts_server(module_servers, tmp_path_factory):
    """One server for the online tests below, keeping at most 3 parts per run."""
    return module_servers(tmp_path_factory.mktemp("parts-server"), extra=("--max-parts-per-run", "3"))


def _online(root: Path, server, **extra) -> dict:
    return {"dir": str(root), "console": "off", "system_metrics": False, "capture_environment": False,
            "mode": "online", "base_url": server.url, "upload_interval": 0.1, **extra}


def test_a_secondary_restarted_on_another_machine_continues_its_part(tmp_path, parts_server):
    """A secondary resumed (``resume="allow"``, as its script resumes the primary) on a machine
    without its part downloads it from the server (``GET .../log?part=``) and appends: its steps go
    on, the server's part grows byte for byte, no upload is refused."""
    import httpx

    node_a, node_b = tmp_path / "a", tmp_path / "b"
    primary = tracklet.init(project="p", id="moved", settings=_online(node_a, parts_server), reinit="create_new")
    primary.log({"loss": 1})
    rank = tracklet.init(project="p", id="moved", resume="allow", reinit="create_new",
                         settings=_online(node_a, parts_server, primary=False, label="rank_1"))
    rank.log({"acc": 1})
    rank.log({"acc": 2})
    rank.finish()
    rank = tracklet.init(project="p", id="moved", resume="allow", reinit="create_new",
                         settings=_online(node_b, parts_server, primary=False, label="rank_1"))
    assert rank.step == 2  # its steps go on
    rank.log({"acc": 3})
    rank.finish()
    primary.finish()
    part = Path("projects/p/runs/moved/parts/rank_1.tlog")
    moved, earlier = (node_b / part).read_bytes(), (node_a / part).read_bytes()
    assert moved.startswith(earlier) and len(moved) > len(earlier)
    assert (parts_server.root / part).read_bytes() == moved
    with httpx.Client(base_url=parts_server.url) as client:
        assert client.get("/api/v1/runs/p/moved").json()["run"]["metadata"]["parts"]["rank_1"]["state"] == "finished"
        history = client.get("/api/v1/runs/p/moved/history", params={"keys": "acc", "buckets": 0})
        assert history.status_code == 200, history.text
        assert history.json()["series"][0]["values"] == [1, 2, 3]
        missing = client.get("/api/v1/runs/p/moved/log", params={"part": "rank_9"})
        assert missing.status_code == 404 and "part rank_9" in missing.text


def test_part_labels_and_count_are_checked_by_the_server(tmp_path, parts_server):
    """A label that differs from another part's in case only is refused (one file on a
    case-insensitive file system), on every route; the part past ``--max-parts-per-run`` is
    refused naming the limit and the run; the run's other logs are kept."""
    import httpx

    from tracklet.client.sync import SyncClient
    from tracklet.core.layout import RunPaths
    from tracklet.errors import TrackletError

    # The client refuses a label differing in case from a part it holds: W1 is written on another node.
    for label in ("w1", "W1", "w2", "w3", "w4"):
        node = tmp_path / ("other" if label == "W1" else "here")
        quiet = {"dir": str(node), "console": "off", "system_metrics": False, "capture_environment": False}
        run = tracklet.init(project="p", id="many", reinit="create_new", settings={**quiet, "primary": False,
                                                                                    "label": label})
        run.log({"a": 1})
        run.finish()
    tmp_path = tmp_path / "here"
    with SyncClient(parts_server.url) as client:
        client.sync_run(RunPaths(tmp_path, "p", "many", "w1"))
        with pytest.raises(TrackletError, match="differs only in case from its part 'w1'"):
            client.sync_run(RunPaths(tmp_path.parent / "other", "p", "many", "W1"))
        client.sync_run(RunPaths(tmp_path, "p", "many", "w2"))
        client.sync_run(RunPaths(tmp_path, "p", "many", "w3"))
        with pytest.raises(TrackletError, match=r"p/many has 3 parts.*--max-parts-per-run 3"):
            client.sync_run(RunPaths(tmp_path, "p", "many", "w4"))
        # a part the server holds, left empty (its first write failed, the server killed inside it),
        # is one of the 3: uploaded again, it is not a part past the limit
        (parts_server.root / "projects/p/runs/many/parts/w3.tlog").write_bytes(b"")
        client.sync_run(RunPaths(tmp_path, "p", "many", "w3"))
        assert (parts_server.root / "projects/p/runs/many/parts/w3.tlog").read_bytes() == (
            tmp_path / "projects/p/runs/many/parts/w3.tlog").read_bytes()
    with httpx.Client(base_url=parts_server.url) as http:
        read = http.get("/api/v1/runs/p/many/log", params={"part": "W1"})
        assert read.status_code == 400 and "differs only in case" in read.text
        assert http.get("/api/v1/runs/p/many/log", params={"part": "w1"}).headers["X-Tracklet-Log-Part"] == "w1"
    assert sorted(path.name for path in (parts_server.root / "projects/p/runs/many/parts").iterdir()) == [
        "w1.tlog", "w2.tlog", "w3.tlog"]


def test_offsets_asked_of_any_number_of_labels_keep_no_state(tmp_path):
    """A client may ask the offset of any run or label (a new part's first question): the server
    keeps a lock per log copy only while a request uses it, so 5,000 labels that never upload leave
    nothing behind (an authenticated client can't grow the server's memory by asking), and a
    lock in use is the one every request for that copy gets."""
    import gc

    from tracklet.core.layout import RunPaths
    from tracklet.server.logs import LogCopies

    copies = LogCopies(tmp_path)
    assert all(copies.offset("p", "r", f"w{index}") == 0 for index in range(5000))
    assert copies.offset("p", "r") == 0
    gc.collect()
    assert len(copies._locks) == 0
    held = copies._lock(RunPaths(tmp_path, "p", "r", "w1"))
    with held:
        assert copies._lock(RunPaths(tmp_path, "p", "r", "w1")) is held


def test_a_part_is_never_read_back_from_a_server_that_ignores_part(tmp_path):
    """A server from before shared runs answers ``GET .../log?part=`` with the primary's log: the
    secondary refuses it (no part is made of another writer's records)."""
    import httpx

    from tracklet.client.http import HttpClient
    from tracklet.client.log_download import download_log
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import MAGIC
    from tracklet.errors import ResumeError

    def older_server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MAGIC, headers={"X-Tracklet-Log-Size": str(len(MAGIC))})

    paths = RunPaths(tmp_path, "p", "old", "r1")
    with HttpClient("http://old.invalid", transport=httpx.MockTransport(older_server), error=ResumeError) as http:
        with pytest.raises(ResumeError, match="serves no shared runs' parts"):
            download_log(http, paths)
    assert not paths.log_file.exists() and not paths.run_dir.exists()


def test_a_secondarys_files_upload_under_its_label(tmp_path, parts_server, monkeypatch):
    """Files a secondary writer saves (``wandb.save``, files written to ``run.dir``) on its own
    node are uploaded as the run's files ``parts/<label>/<name>``: two ranks' ``output.log`` are
    two files; ``?under=`` lists one writer's."""
    import httpx

    import tracklet.compat.wandb as wandb

    for name, value in {"MODE": "online", "BASE_URL": parts_server.url, "CONSOLE": "off", "SYSTEM_METRICS": "false",
                        "CAPTURE_ENVIRONMENT": "false", "UPLOAD_INTERVAL": "0.1"}.items():
        monkeypatch.setenv(f"TRACKLET_{name}", value)
    for label in ("rank_1", "rank_2"):
        monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / label))
        run = wandb.init(project="p", id="files1", reinit="create_new",
                         settings=wandb.Settings(mode="shared", x_primary=False, x_label=label))
        assert Path(run.dir) == tmp_path / label / f"projects/p/runs/files1/parts/{label}.files"
        Path(run.dir, "output.log").write_text(f"hello from {label}")
        (tmp_path / "ckpt").mkdir(exist_ok=True)
        (tmp_path / "ckpt" / "last.txt").write_text(label)
        run.save(str(tmp_path / "ckpt" / "last.txt"), base_path=str(tmp_path))
        run.finish()
    with httpx.Client(base_url=parts_server.url) as client:
        listed = client.get("/api/v1/runs/p/files1/files").json()["files"]
        assert [entry["name"] for entry in listed] == [
            "parts/rank_1/ckpt/last.txt", "parts/rank_1/output.log", "parts/rank_2/ckpt/last.txt", "parts/rank_2/output.log"]
        assert client.get("/api/v1/runs/p/files1/files/parts/rank_2/output.log").text == "hello from rank_2"
        one = client.get("/api/v1/runs/p/files1/files", params={"under": "parts/rank_1"}).json()["files"]
        assert [entry["name"] for entry in one] == ["parts/rank_1/ckpt/last.txt", "parts/rank_1/output.log"]
        assert client.get("/api/v1/runs/p/files1/files", params={"under": "parts/rank_9"}).json()["files"] == []


def test_wandb_shared_mode_without_x_primary_joins_a_finished_run(tmp_path):
    """W&B lets a process in shared mode write a run whose primary finished (a late evaluator):
    without ``x_primary`` it joins as a secondary writer (one warning) instead of failing with
    "already exists"; the run's state stays its primary's."""
    import tracklet.compat.wandb as wandb

    quiet = {"x_disable_meta": True, "x_disable_stats": True, "console": "off"}
    primary = wandb.init(project="p", id="late", dir=str(tmp_path), settings=wandb.Settings(
        mode="shared", x_primary=True, **quiet))
    primary.log({"loss": 1.0})
    primary.finish()
    with pytest.warns(Warning, match="joins run late, which another process started"):
        evaluator = wandb.init(project="p", id="late", dir=str(tmp_path), settings=wandb.Settings(
            mode="shared", x_label="eval", **quiet))
    evaluator.log({"eval/acc": 0.5})
    evaluator.finish()
    run = tracklet.Api(tmp_path).run("p/late")
    assert run.state == "finished" and run.parts["eval"]["state"] == "finished"
    assert run.history()["eval/acc"] == [0.5] and run.summary["loss"] == 1.0


def test_wandb_shared_mode_x_primary_true_continues_its_run_or_joins_a_live_one(tmp_path):
    """``x_primary=True`` says this process is the primary: restarted (no ``resume=``) on the run
    it started, it continues it as its primary (its steps go on, no part), not as a secondary; a
    second process saying so while the primary is live joins as a secondary, warned that two
    processes took the primary's part."""
    import tracklet.compat.wandb as wandb

    quiet = {"x_disable_meta": True, "x_disable_stats": True, "console": "off"}
    first = wandb.init(project="p", id="again", dir=str(tmp_path), settings=wandb.Settings(
        mode="shared", x_primary=True, **quiet))
    first.log({"loss": 1.0})
    first.finish()
    restarted = wandb.init(project="p", id="again", dir=str(tmp_path), settings=wandb.Settings(
        mode="shared", x_primary=True, **quiet))
    restarted.log({"loss": 0.5})
    with pytest.warns(Warning, match="another live process is writing run again as its primary"):
        second = wandb.init(project="p", id="again", dir=str(tmp_path), reinit="create_new",
                            settings=wandb.Settings(mode="shared", x_primary=True, x_label="two", **quiet))
    second.log({"acc": 0.9})
    second.finish()
    restarted.finish()
    run = tracklet.Api(tmp_path).run("p/again")
    assert run.history()["loss"] == [1.0, 0.5] and set(run.parts) == {"two"}
    assert [acc for acc in run.history()["acc"] if acc is not None] == [0.9] and run.state == "finished"


def test_labels_that_differ_only_in_case_never_share_a_part_file(tmp_path):
    """``Rank_1`` and ``rank_1`` are one file on a case-insensitive file system (macOS): a
    secondary whose label differs from an existing part's only in case is refused, whatever the
    file system, naming both (here, where they would be two files, the rule is what is tested);
    W&B's ``x_label`` takes ``<label>-<pid>`` instead, with one warning, and records."""
    import tracklet.compat.wandb as wandb
    from tracklet.errors import InvalidName

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "primary": False}
    first = tracklet.init(project="p", id="case", settings={**quiet, "label": "Rank_1"}, reinit="create_new")
    first.log({"a": 1})
    first.finish()
    with pytest.raises(InvalidName, match="'rank_1' differs only in case from 'Rank_1'"):
        tracklet.init(project="p", id="case", settings={**quiet, "label": "rank_1"}, reinit="create_new")
    again = tracklet.init(project="p", id="case", settings={**quiet, "label": "Rank_1"}, reinit="create_new")
    again.finish()  # the same label, the same case: a restarted writer appends to its part
    with pytest.warns(Warning, match="differs from it only in case"):
        run = wandb.init(project="p", id="case", dir=str(tmp_path), settings=wandb.Settings(
            mode="shared", x_primary=False, x_label="rank_1", x_disable_meta=True, console="off"))
    run.log({"a": 2})
    run.finish()
    names = sorted(path.name for path in (tmp_path / "projects/p/runs/case/parts").glob("*.tlog"))
    assert names == sorted(["Rank_1.tlog", f"rank_1-{os.getpid()}.tlog"])
    assert len({name.casefold() for name in names}) == len(names)  # no two would be one file on macOS


def _both(api, root, run_id):
    """The run as the log reader and as the store (indexed now) have it; they agree."""
    assert not api.index().failed
    read = tracklet.Api(root).run(f"p/{run_id}")
    stored = api.store.run("p", run_id)
    assert (stored["state"], stored["exit_code"]) == (read.state, read.exit_code)
    assert stored["config"] == read.config and stored["summary"] == read.summary
    assert (stored["name"], stored["tags"], stored["group_name"], stored["job_type"], stored["notes"],
            stored["created_at"]) == (read.name, read.tags, read.group, read.job_type, read.notes, read.created_at)
    assert stored["updated_at"] == read.updated_at  # the latest any writer recorded
    listed = {run.id: run for run in tracklet.Api(root).runs("p")}[run_id]  # a listing: not read whole
    assert (listed.name, listed.tags, listed.group, listed.created_at) == (read.name, read.tags, read.group,
                                                                           read.created_at)
    return read, stored


def test_a_run_whose_primary_never_started_is_listed_from_its_parts(tmp_path, store_url):
    """Rank 0 crashed before init(), or only secondaries were launched: the run is listed from
    its parts (Api.runs, the store, tracklet show), named as its first part started, its state
    from its parts; once its primary starts, the run is the primary's as usual."""
    from click.testing import CliRunner

    from tracklet.cli.main import main as cli

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    for label, code in (("w2", 0), ("w1", 0)):
        run = tracklet.init(project="p", id="orphan", name=f"named-{label}", reinit="create_new",
                            settings={**quiet, "primary": False, "label": label})
        run.log({"loss": 1.0 if label == "w1" else 2.0})
        run.finish(exit_code=code)
    assert [run.id for run in tracklet.Api(tmp_path).runs("p")] == ["orphan"]
    read, stored = _both(api, tmp_path, "orphan")
    assert read.state == "finished" and read.name == "named-w1" == stored["name"]
    assert read.metadata["no_primary"] and stored["metadata"]["no_primary"]
    assert read.history()["loss"] == [1.0] and read.history()["loss/l:w2"] == [2.0]
    assert [row["run_id"] for row in api.store.runs("p")] == ["orphan"]
    shown = CliRunner().invoke(cli, ["--dir", str(tmp_path), "show", "p/orphan"])
    assert shown.exit_code == 0, shown.output
    assert "not started" in shown.output and "w1 (finished" in shown.output
    from tracklet.reproduce.plan import make_plan

    plan = make_plan(read, tmp_path, directory=tmp_path / "again")  # nothing to reproduce it from: said so
    assert plan.no_primary and any("primary never started" in problem for problem in plan.problems)
    assert "written by 2 secondary writer(s) only, w1, w2" in plan.render()

    failing = tracklet.init(project="p", id="orphan", reinit="create_new", settings={**quiet, "primary": False,
                                                                                      "label": "w3"})
    read, _ = _both(api, tmp_path, "orphan")
    assert read.state == "running"  # while any of its writers runs
    failing.finish(exit_code=3)
    read, _ = _both(api, tmp_path, "orphan")
    assert (read.state, read.exit_code) == ("failed", 3)

    primary = tracklet.init(project="p", id="orphan", name="the-run", reinit="create_new", settings=quiet)
    primary.log({"loss": 0.5})
    primary.finish()
    read, stored = _both(api, tmp_path, "orphan")
    assert (read.state, read.exit_code, read.name) == ("finished", 0, "the-run") == (
        stored["state"], stored["exit_code"], stored["name"])
    assert "no_primary" not in read.metadata and "no_primary" not in stored["metadata"]
    assert read.history()["loss"] == [0.5] and read.history()["loss/l:w1"] == [1.0]
    api.store.index(rebuild=True)
    assert api.store.run("p", "orphan")["summary"] == read.summary
    api.close()


def test_a_run_whose_primary_never_started_is_its_first_labels_however_indexed(tmp_path, store_url):
    """The parts of a run whose primary never started are indexed as they come (w2 before w1
    here): the run's name, tags, group, notes and start are still its first started part's in label
    order, with that part's later renames and not a restart's, in the store as in the log reader."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    (tmp_path / "projects/p/runs/late/parts").mkdir(parents=True)
    (tmp_path / "projects/p/runs/late/parts/a0.tlog").touch()  # first by label, but never started: not the run's
    late = tracklet.init(project="p", id="late", name="by-w2", tags=["w2"], group="g2", notes="n2", reinit="create_new",
                         settings={**quiet, "primary": False, "label": "w2"})
    late.finish()
    read, stored = _both(api, tmp_path, "late")
    assert stored["name"] == "by-w2" and stored["metadata"]["no_primary"]
    first = tracklet.init(project="p", id="late", name="by-w1", tags=["w1"], reinit="create_new",
                          settings={**quiet, "primary": False, "label": "w1"})
    assert first.flush()
    read, stored = _both(api, tmp_path, "late")
    assert (stored["name"], stored["tags"], stored["group_name"], stored["notes"]) == ("by-w1", ["w1"], "", "")
    first.name = "renamed"
    first.finish()
    assert _both(api, tmp_path, "late")[1]["name"] == "renamed"
    again = tracklet.init(project="p", id="late", group="g-again", resume="allow", reinit="create_new",
                          settings={**quiet, "primary": False, "label": "w1"})
    again.finish()
    assert _both(api, tmp_path, "late")[1]["name"] == "renamed"
    api.store.index(rebuild=True)
    assert api.store.run("p", "late")["name"] == "renamed"
    # the empty part's writer starts after all (the same label, resumed): first by label, it's the run's
    a0 = tracklet.init(project="p", id="late", name="by-a0", resume="allow", reinit="create_new",
                       settings={**quiet, "primary": False, "label": "a0"})
    a0.finish()
    read, stored = _both(api, tmp_path, "late")
    assert (stored["name"], stored["tags"], stored["group_name"]) == ("by-a0", [], "")
    api.close()


def test_a_primary_killed_as_it_created_its_log_leaves_the_run_its_parts(tmp_path, store_url):
    """The primary's ``run.tlog`` is empty (killed as it created it): it recorded no start, so the
    run is named as its first part by label (indexed out of order here), in the store as in the log
    reader; the run's state is the primary's (crashed), as ever."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    (tmp_path / "projects/p/runs/cut").mkdir(parents=True)
    (tmp_path / "projects/p/runs/cut/run.tlog").touch()
    for label in ("w2", "w1"):
        run = tracklet.init(project="p", id="cut", name=f"by-{label}", reinit="create_new",
                            settings={**quiet, "primary": False, "label": label})
        run.log({"acc": 1.0})
        run.finish()
        read, stored = _both(api, tmp_path, "cut")
        assert (stored["name"], stored["state"]) == (f"by-{label}", "crashed")
    api.close()


def test_a_primary_log_arriving_after_its_header_keeps_the_parts(tmp_path, store_url):
    """A server got the primary's log header alone first (its parts named the run meanwhile), then
    the rest: indexing the primary's log (as the server does after each upload) keeps what its
    parts recorded; the run is the primary's, not taken for a log recorded again from scratch."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import MAGIC
    from tracklet.server.indexing import StoreIndexer

    quiet = {"console": "off", "system_metrics": False}
    source = tmp_path / "primary-node"
    run = tracklet.init(project="p", id="hdr", name="the-run", reinit="create_new", settings={**quiet, "dir": str(source)})
    run.log({"loss": 1.0})
    run.finish()
    root = tmp_path / "server"
    part = tracklet.init(project="p", id="hdr", name="by-w1", reinit="create_new",
                         settings={**quiet, "dir": str(root), "primary": False, "label": "w1"})
    part.log({"acc": 1.0})
    part.finish()
    log = root / "projects/p/runs/hdr/run.tlog"
    log.write_bytes(MAGIC)
    api = tracklet.Api(root, store_url=store_url)
    assert _both(api, root, "hdr")[1]["name"] == "by-w1"
    log.write_bytes((source / "projects/p/runs/hdr/run.tlog").read_bytes())
    StoreIndexer(api.store, root).index_run(RunPaths(root, "p", "hdr"))
    stored = api.store.run("p", "hdr")
    assert (stored["name"], stored["summary"]) == ("the-run", {"loss": 1.0, "acc": 1.0})
    assert stored["metadata"]["parts"]["w1"]["state"] == "finished"
    _both(api, root, "hdr")
    api.close()


def test_a_damaged_part_is_named_as_the_part(tmp_path):
    """Bytes past a part's last intact frame (a disk's torn write, a copy cut short, garbage): the
    index reports the damage naming the part's label, not as if it were in the run's own log,
    and still indexes every record before it."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    for label in (None, "w2"):
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="torn", settings={**quiet, **extra}, reinit="create_new")
        run.log({"acc" if label else "loss": 1.0})
        run.finish()
    with open(tmp_path / "projects/p/runs/torn/parts/w2.tlog", "ab") as handle:
        handle.write(b"\x00\x01garbage")
    api = tracklet.Api(tmp_path, store_url=f"sqlite:///{tmp_path / 'store.sqlite'}")
    damaged = api.store.index(rebuild=True).damaged
    assert len(damaged) == 1 and damaged[0].startswith("p/torn part w2: damaged at byte"), damaged
    assert [list(h.values) for h in api.history(["p/torn"], keys=["acc"], buckets=None)] == [[1.0]]
    api.close()


def test_a_node_holding_only_a_part_indexes_it_into_the_runs_store(tmp_path, store_url):
    """A multi-node job whose nodes keep their own data roots and share one store (a team's
    PostgreSQL): node 0 holds the primary's log, node 1 only its secondary's part. Indexing on node
    1 adds its part to the run node 0 indexed, with no failure or warning about the primary's log
    it doesn't have, and keeps the run as node 0 indexed it."""
    import warnings

    def record(root: Path, label: str | None, key: str) -> None:
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="nodes", reinit="create_new", settings={
            "dir": str(root), "console": "off", "system_metrics": False, "capture_environment": False, **extra})
        run.log({key: 1.0})
        run.finish()

    node_0, node_1 = tmp_path / "node0", tmp_path / "node1"
    record(node_0, None, "loss")
    record(node_1, "rank_1", "grad")
    api_0 = tracklet.Api(node_0, store_url=store_url)
    assert not api_0.index().failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api_1 = tracklet.Api(node_1, store_url=store_url)
        report = api_1.index()
    assert not report.failed, report.failed
    stored = api_1.store.run("p", "nodes")
    assert (stored["state"], stored["summary"]) == ("finished", {"loss": 1.0, "grad": 1.0})
    assert "no_primary" not in stored["metadata"] and stored["metadata"]["parts"]["rank_1"]["state"] == "finished"
    assert [list(h.values) for h in api_1.history(["p/nodes"], keys=["loss"], buckets=None)] == [[1.0]]
    api_0.close()
    api_1.close()


def test_an_empty_part_is_crashed_once_not_indexed_every_pass(tmp_path, store_url):
    """A part's log left empty (its writer killed as it created it; a server's copy whose first
    write failed): the store shows it crashed, as the log reader does, and an index pass (the
    dashboard's periodic one) then skips it, instead of a transaction for it every pass."""
    import sqlalchemy as sa

    from tracklet.core.recordlog import writer_alive
    from tracklet.server.indexing import StoreIndexer

    run = tracklet.init(project="p", id="empty", reinit="create_new", settings={
        "dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False})
    run.log({"loss": 1.0})
    run.finish()
    (tmp_path / "projects/p/runs/empty/parts").mkdir()
    (tmp_path / "projects/p/runs/empty/parts/w9.tlog").touch()
    api = tracklet.Api(tmp_path, store_url=store_url)
    read, stored = _both(api, tmp_path, "empty")
    assert read.parts["w9"]["state"] == "crashed" == stored["metadata"]["parts"]["w9"]["state"]
    commits: list[int] = []
    sa.event.listen(api.store.engine, "commit", lambda connection: commits.append(1))
    StoreIndexer(api.store, tmp_path, liveness=writer_alive).index_all()
    assert commits == []
    api.close()


def test_secondaries_settle_a_config_or_summary_key_by_label_order(tmp_path, store_url):
    """Two secondaries set one config key and one summary-only key: the first label's values
    are the run's whichever was indexed first (the other's summary value reads <key>/l:<label>);
    a key the primary sets and then removes is the first part's again; the log reader and the
    store (incremental and rebuilt) agree."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)

    def write(label, config, best=None, resume=None, remove=()):
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="order", settings={**quiet, **extra}, resume=resume, reinit="create_new")
        run.config.update(config)
        for key in remove:
            del run.config[key]
        if best is not None:
            run.summary["best"] = best
        run.finish()
        return _both(api, tmp_path, "order")[0]

    write(None, {"a": 1})
    read = write("w2", {"k": 2}, best=2)
    assert read.config["k"] == 2 and read.summary["best"] == 2
    read = write("w1", {"k": 1}, best=1)  # indexed after w2, first in label order
    assert read.config == {"a": 1, "k": 1} and (read.summary["best"], read.summary["best/l:w2"]) == (1, 2)
    read = write("w2", {"k": 22}, best=22)
    assert read.config["k"] == 1 and (read.summary["best"], read.summary["best/l:w2"]) == (1, 22)
    read = write(None, {"k": 0}, resume="allow")
    assert read.config["k"] == 0
    read = write(None, {}, resume="allow", remove=["k"])  # the primary's gone: w1's again
    assert read.config == {"a": 1, "k": 1}
    api.store.index(rebuild=True)
    stored = api.store.run("p", "order")
    assert stored["config"] == read.config and stored["summary"] == read.summary
    api.close()


# Sessions of one shared run, in order: (label or None for the primary, summary keys set (a dict),
# summary keys removed, history keys logged). What the run's summary shows after each session.
_REMOVALS = {
    # a secondary's own summary-only key, removed in a later session (indexed in another pass)
    "secondary_removes_its_own": [("w1", {"best": 1}, (), ()), ("w1", {}, ("best",), ())],
    # a secondary whose value is labelled removes it: the owner's stays
    "non_owner_removes": [("w1", {"best": 1}, (), ()), ("w2", {"best": 2}, (), ()), ("w2", {}, ("best",), ())],
    # the secondary whose summary-only value shows removes it: the next label's value shows
    "owner_hands_to_next_label": [("w2", {"best": 2}, (), ()), ("w1", {"best": 1}, (), ()),
                                  ("w3", {"best": 3}, (), ()), ("w1", {}, ("best",), ())],
    # the primary's summary-only value removed: the first secondary's shows
    "primary_hands_to_a_secondary": [(None, {"best": 0}, (), ()), ("w2", {"best": 2}, (), ()),
                                     ("w1", {"best": 1}, (), ()), (None, {}, ("best",), ())],
    # the primary set a key a secondary logs; removed, the secondary's last value shows
    "primary_hands_to_the_history_owner": [(None, {"loss": 0}, (), ()), ("w2", {}, (), ("loss",)),
                                           (None, {}, ("loss",), ())],
    # the primary logs the key: removing its summary value leaves the key without one
    "primary_logs_and_removes": [(None, {}, (), ("loss",)), ("w1", {}, (), ("loss",)), (None, {}, ("loss",), ())],
    # the secondary that logs the key removes it: the key goes, the summary-only writer's stays labelled
    "history_owner_removes": [("w2", {}, (), ("loss",)), ("w1", {"loss": 1}, (), ()), ("w2", {}, ("loss",), ())],
    # set again after a removal
    "set_again": [("w1", {"best": 1}, (), ()), ("w2", {"best": 2}, (), ()), ("w1", {}, ("best",), ()),
                  ("w1", {"best": 11}, (), ())],
}


def test_a_removed_summary_key_shows_the_next_writers_value_in_the_store_too(tmp_path, store_url):
    """``del run.summary[key]`` in a shared run (docs/shared-runs.md): a writer's removal takes its
    own value away; a key it held as the writer that logs it goes without a value, one it only set
    falls to the next writer's (the primary's, then the secondary that logs it, then the first
    label's). The store agrees with the log reader after every session (each indexed in a pass of
    its own, and all at once by a rebuild); the store once kept removed values, and kept the
    next writer's labelled."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    shown = {}
    for case, sessions in _REMOVALS.items():
        run_id = case.replace("_", "")
        seen = set()
        for label, set_, removed, logged in sessions:
            extra = {"primary": False, "label": label} if label else {}
            run = tracklet.init(project="p", id=run_id, settings={**quiet, **extra}, reinit="create_new",
                                resume="allow" if label in seen else None)
            seen.add(label)
            for key in logged:
                run.log({key: 0.5})
            run.summary.update(set_)
            for key in removed:
                del run.summary[key]
            run.finish()
            read, stored = _both(api, tmp_path, run_id)
        shown[case] = {key: value for key, value in read.summary.items() if key.split("/")[0] in ("best", "loss")}
    assert shown == {
        "secondary_removes_its_own": {},
        "non_owner_removes": {"best": 1},
        "owner_hands_to_next_label": {"best": 2, "best/l:w3": 3},
        "primary_hands_to_a_secondary": {"best": 1, "best/l:w2": 2},
        "primary_hands_to_the_history_owner": {"loss": 0.5},
        "primary_logs_and_removes": {"loss/l:w1": 0.5},
        "history_owner_removes": {"loss/l:w1": 1},
        "set_again": {"best": 11, "best/l:w2": 2},
    }
    api.store.index(rebuild=True)
    for case in _REMOVALS:
        run_id = case.replace("_", "")
        assert api.store.run("p", run_id)["summary"] == tracklet.Api(tmp_path).run(f"p/{run_id}").summary, case
    api.close()


def test_summary_owner_is_the_first_claim_of_every_writer():
    """core/parts.summary_owner (the log reader's) and summary_claim/first_claim (the store's
    removals) are one rule: for every combination of three writers logging and having a key."""
    import itertools

    from tracklet.core.parts import PRIMARY, first_claim, summary_claim, summary_owner

    writers = [PRIMARY, "a", "b"]
    for logs, has in itertools.product(itertools.product([False, True], repeat=3), repeat=2):
        parts = {label: {"k"} if logs[at] else set() for at, label in enumerate(writers) if label}
        summaries = {label: {"k"} if has[at] else set() for at, label in enumerate(writers) if label}
        expected = first_claim(summary_claim(writer, logs[at], has[at]) for at, writer in enumerate(writers))
        assert summary_owner("k", {"k"} if logs[0] else set(), {"k"} if has[0] else set(), parts,
                             summaries) == expected, (logs, has)


def test_ownership_indexes_give_what_the_per_key_rules_give():
    """core/parts.Ownership (the indexes a merge builds once) names every key as owner, part_key
    and summary_owner do, for random writers: which log a key, which have it in their summary."""
    import random

    from tracklet.core.parts import Ownership, owner, part_key, summary_owner

    rng = random.Random(5)
    keys = ["k", "loss", "best", "x"]
    for _ in range(300):
        labels = rng.sample(["a", "b", "c", "d", "e"], rng.randint(0, 5))

        def some() -> set[str]:
            return {key for key in keys if rng.random() < 0.3}

        primary, primary_summary = some(), some()
        parts = {label: some() for label in labels}
        summaries = {label: some() for label in labels}
        owners = Ownership(primary, primary_summary, parts, summaries)
        for key in keys:
            assert owners.owner(key) == owner(key, primary, parts)
            assert owners.summary_owner(key) == summary_owner(key, primary, primary_summary, parts, summaries)
            for label in labels:
                assert owners.part_key(label, key) == part_key(label, key, primary, parts)


def test_reading_a_run_of_many_writers_costs_the_same_per_writer(tmp_path):
    """The log reader's merge of a shared run's parts does the same work per part however many
    parts there are (a run of 1,000 writers is read in linear time, benchmarks/shared_parts_read.py):
    counted as bytecode instructions run reading the run of 4, 8 and 16 writers,
    each logging the primary's key and 8 of its own and setting a summary-only key."""
    import shutil

    quiet = {"dir": str(tmp_path / "16"), "console": "off", "system_metrics": False, "capture_environment": False}
    primary = tracklet.init(project="p", id="many", settings=quiet, reinit="create_new", config={"lr": 1})
    primary.log({"loss": 1.0})
    primary.finish()
    for index in range(16):
        label = f"w{index:02d}"
        run = tracklet.init(project="p", id="many", reinit="create_new", config={"lr": 2, label: index},
                            settings={**quiet, "primary": False, "label": label})
        run.log({"loss": 2.0, **{f"own{key}/{label}": index for key in range(8)}})
        run.summary["best"] = index
        run.finish()
    for writers in (4, 8):  # the same run with its first 4, 8 parts
        shutil.copytree(tmp_path / "16", tmp_path / str(writers))
        for part in (tmp_path / str(writers) / "projects/p/runs/many/parts").iterdir():
            if int(part.name[1:3]) >= writers:
                shutil.rmtree(part) if part.is_dir() else part.unlink()

    def instructions(writers: int) -> int:
        run = tracklet.Api(tmp_path / str(writers)).run("p/many")
        count = 0

        def seen(frame, event, arg):  # every bytecode instruction run in a Python function
            nonlocal count
            if event == "call":
                frame.f_trace_opcodes = True
            elif event == "opcode":
                count += 1
            return seen

        assert tracklet.Api(tmp_path / str(writers)).run("p/many").summary  # (first uses: imports, caches)
        sys.settrace(seen)
        try:
            summary = run.summary
        finally:
            sys.settrace(None)
        assert summary["best"] == 0 and summary[f"best/l:w{writers - 1:02d}"] == writers - 1
        assert len(run.config) == writers + 1 and run.config["lr"] == 1
        return count

    small, medium, large = instructions(4), instructions(8), instructions(16)
    # linear: the 8 parts added from 8 to 16 cost twice the 4 added from 4 to 8 (2.00x; a merge that
    # scans every part for each part's each key, parts² x keys, costs 2.3x here)
    assert large - medium <= 2.1 * (medium - small), (small, medium, large)


_REMOVER = """
import os, sys, time
import tracklet
root, run_id, label = sys.argv[1:4]
extra = {"primary": False, "label": label} if label else {}
run = tracklet.init(project="p", id=run_id, resume="allow", settings={"dir": root, "console": "off",
                    "system_metrics": False, "capture_environment": False, **extra})
run.log({"x": 1.0})
del run.summary["best"]
run.flush()
open(os.path.join(root, run_id + ".removed"), "w").close()
time.sleep(120)
"""


def test_a_removal_by_a_writer_still_running_or_killed_is_applied(tmp_path, store_url):
    """A writer removes the summary key whose value shows, flushes, and is killed: indexed while
    it runs, then found crashed (run ``live``, a secondary), or first indexed once it was killed
    (its summary folded again from its log: run ``killed``, a secondary, and ``primary``), the
    store shows the next writer's value as the log reader does (the fold of a crashed part once
    ignored the removals in its last records; a crashed primary's dropped the value it handed on)."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    runs = {"killed": "w1", "live": "w1", "primary": ""}  # the run: who removes "best"
    for run_id, remover in runs.items():
        for label, best in ((remover, 1), ("w2", 2)):
            extra = {"primary": False, "label": label} if label else {}
            run = tracklet.init(project="p", id=run_id, reinit="create_new", settings={**quiet, **extra})
            run.summary["best"] = best
            run.finish()
        assert _both(api, tmp_path, run_id)[0].summary["best/l:w2"] == 2
    removers = {run_id: subprocess.Popen([sys.executable, "-c", _REMOVER, str(tmp_path), run_id, label], env=_env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for run_id, label in runs.items()}
    try:
        for run_id, remover in removers.items():
            _wait_for(tmp_path / f"{run_id}.removed", remover)
        for run_id in ("killed", "primary"):
            removers[run_id].kill()
            removers[run_id].communicate()
        for run_id, state in (("killed", "crashed"), ("live", "running"), ("primary", "crashed")):
            read, _ = _both(api, tmp_path, run_id)
            assert (read.parts["w1"]["state"] if run_id != "primary" else read.state) == state, run_id
            assert read.summary["best"] == 2 and "best/l:w2" not in read.summary, run_id
    finally:
        for remover in removers.values():
            remover.kill()
            remover.communicate()
    read, _ = _both(api, tmp_path, "live")
    assert read.parts["w1"]["state"] == "crashed" and read.summary["best"] == 2 and "best/l:w2" not in read.summary
    api.store.index(rebuild=True)
    for run_id in runs:
        assert api.store.run("p", run_id)["summary"] == tracklet.Api(tmp_path).run(f"p/{run_id}").summary
    api.close()

def test_a_secondary_with_update_finish_state_sets_the_runs_state(tmp_path, store_url):
    """W&B's ``x_update_finish_state=True`` (its default): the secondary's end sets the run's
    state too: the run reads running while it records after the primary finished, and failed
    when it fails; with ``False`` its end leaves the run's state the primary's."""
    import tracklet.compat.wandb as wandb

    quiet = {"x_disable_meta": True, "x_disable_stats": True, "console": "off"}
    api = tracklet.Api(tmp_path, store_url=store_url)
    primary = wandb.init(project="p", id="fin", dir=str(tmp_path), settings=wandb.Settings(mode="shared", **quiet))
    primary.log({"loss": 1.0})
    primary.finish()
    bystander = wandb.init(project="p", id="fin", dir=str(tmp_path), reinit="create_new", settings=wandb.Settings(
        mode="shared", x_primary=False, x_label="side", x_update_finish_state=False, **quiet))
    bystander.finish(exit_code=2)
    read, stored = _both(api, tmp_path, "fin")
    assert (read.state, read.parts["side"]["state"]) == ("finished", "failed")
    assert "sets_state" not in stored["metadata"]["parts"]["side"]
    finisher = wandb.init(project="p", id="fin", dir=str(tmp_path), reinit="create_new", settings=wandb.Settings(
        mode="shared", x_primary=False, x_label="last", **quiet))
    finisher.log({"eval/acc": 0.5})
    assert finisher._run.flush()  # what it recorded so far (its mark among it), in its part
    read, stored = _both(api, tmp_path, "fin")
    assert read.state == "running" and read.parts["last"]["sets_state"]
    assert "_tracklet_sets_run_state" not in read.config and "_tracklet_sets_run_state" not in finisher.config
    finisher.finish(exit_code=1)
    read, stored = _both(api, tmp_path, "fin")
    assert (read.state, read.exit_code) == ("failed", 1)
    again = tracklet.init(project="p", id="fin", dir=str(tmp_path), reinit="create_new", settings={
        "primary": False, "label": "last", "update_finish_state": True, "console": "off", "system_metrics": False})
    assert "_tracklet_sets_run_state" not in again.config  # a restarted writer's config: its own keys only
    again.finish()
    read, stored = _both(api, tmp_path, "fin")
    assert (read.state, read.exit_code) == ("finished", 0)  # its last exit: the part's state is its latest
    api.store.index(rebuild=True)
    assert (api.store.run("p", "fin")["state"], api.store.run("p", "fin")["exit_code"]) == ("finished", 0)
    api.close()


def test_tracklet_ui_lists_a_run_whose_primary_never_started(tmp_path):
    """The dashboard over a local data root (``tracklet ui``) lists such a run from its parts."""
    import re

    import httpx
    import serverproc

    orphan = tracklet.init(project="q", id="orphan", reinit="create_new", settings={
        "dir": str(tmp_path), "console": "off", "system_metrics": False, "primary": False, "label": "w1"})
    orphan.log({"acc": 1.0})
    orphan.finish(exit_code=1)
    ui = serverproc.cli_process("--dir", str(tmp_path), "ui", "--no-open", "--port", "0")
    try:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", ui.first_line())
        url, auth = found.group(1), {"Authorization": f"Bearer {found.group(2)}"}
        deadline = time.monotonic() + 30
        while not (listed := httpx.get(url + "api/v1/projects/q/runs", headers=auth, timeout=10)).json().get("runs"):
            assert time.monotonic() < deadline, f"tracklet ui never listed the run: {listed.text}"
            time.sleep(0.1)
        assert [(run["run_id"], run["state"], run["exit_code"]) for run in listed.json()["runs"]] == [
            ("orphan", "failed", 1)]
    finally:
        ui.terminate()
        ui.wait(timeout=10)
        ui.close()


def _wandb_online(monkeypatch, url: str, root: Path) -> None:
    for name, value in {"MODE": "online", "BASE_URL": url, "CONSOLE": "off", "SYSTEM_METRICS": "false",
                        "CAPTURE_ENVIRONMENT": "false", "UPLOAD_INTERVAL": "0.1", "DIR": str(root)}.items():
        monkeypatch.setenv(f"TRACKLET_{name}", value)


def test_wandb_shared_mode_on_another_node_asks_the_server(tmp_path, parts_server, monkeypatch):
    """Online, a shared-mode process on a node without the run's log claims the run's primary from
    the server (``POST .../primary``; tests/test_shared_primary.py): refused, without ``x_primary``
    it joins as a secondary (its records go to its part; the primary's log on the server is the
    primary's bytes), and ``x_primary=True``, granted once the primary finished, continues the run
    from the server's log (its steps go on) instead of starting a second one."""
    import httpx

    import tracklet.compat.wandb as wandb

    node_a, node_b, node_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _wandb_online(monkeypatch, parts_server.url, node_a)
    primary = wandb.init(project="p", id="nodes", reinit="create_new",
                         settings=wandb.Settings(mode="shared", x_primary=True))
    primary.log({"loss": 1.0})
    primary.log({"loss": 0.5})
    with httpx.Client(base_url=parts_server.url) as client:  # the primary's log reached the server
        deadline = time.monotonic() + 60
        while client.get("/api/v1/runs/p/nodes/log/offset").json()["offset"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    _wandb_online(monkeypatch, parts_server.url, node_b)
    with pytest.warns(Warning, match="joins run nodes, which another process started"):
        evaluator = wandb.init(project="p", id="nodes", reinit="create_new",
                               settings=wandb.Settings(mode="shared", x_label="eval"))
    evaluator.log({"eval/acc": 0.5})
    evaluator.finish()
    primary.finish()
    log = Path("projects/p/runs/nodes/run.tlog")
    assert not (node_b / log).exists() and (node_b / "projects/p/runs/nodes/parts/eval.tlog").is_file()
    assert (parts_server.root / log).read_bytes() == (node_a / log).read_bytes()
    _wandb_online(monkeypatch, parts_server.url, node_c)
    restarted = wandb.init(project="p", id="nodes", reinit="create_new",
                           settings=wandb.Settings(mode="shared", x_primary=True))
    assert restarted.step == 2  # continued from the server's log, as its primary
    restarted.log({"loss": 0.25})
    restarted.finish()
    assert (parts_server.root / log).read_bytes() == (node_c / log).read_bytes()
    with httpx.Client(base_url=parts_server.url) as client:
        run = client.get("/api/v1/runs/p/nodes").json()["run"]
        assert run["state"] == "finished" and run["metadata"]["parts"]["eval"]["state"] == "finished"
        history = client.get("/api/v1/runs/p/nodes/history", params={"keys": "loss", "buckets": 0}).json()
        assert history["series"][0]["values"] == [1.0, 0.5, 0.25]


def test_wandb_shared_mode_with_an_unreachable_server_decides_locally(tmp_path, monkeypatch):
    """When the server can't be reached, the shared-mode check falls back to the local log: no
    run here, so this process starts the run as its primary (and records)."""
    import tracklet.compat.wandb as wandb

    _wandb_online(monkeypatch, "http://127.0.0.1:9", tmp_path)
    monkeypatch.setenv("TRACKLET_UPLOAD_TIMEOUT", "0")
    run = wandb.init(project="p", id="alone", reinit="create_new", settings=wandb.Settings(mode="shared"))
    run.log({"loss": 1.0})
    run.finish()
    assert tracklet.Api(tmp_path).run("p/alone").parts == {}
    assert tracklet.Api(tmp_path).run("p/alone").history()["loss"] == [1.0]


def test_wandb_online_secondary_with_a_label_differing_in_case_from_the_servers(tmp_path, parts_server, monkeypatch):
    """An online secondary resumed on a node without its part, whose ``x_label`` differs only in
    case from a part the server holds, is recorded as ``<label>-<pid>`` (one warning), as W&B's
    ``x_label`` path does locally, instead of failing ``init()``."""
    import httpx

    import tracklet.compat.wandb as wandb

    first = tracklet.init(project="p", id="cased", reinit="create_new",
                          settings=_online(tmp_path / "a", parts_server, primary=False, label="w1"))
    first.log({"a": 1})
    first.finish()
    _wandb_online(monkeypatch, parts_server.url, tmp_path / "b")
    with pytest.warns(Warning, match="differs from it only in case"):
        run = wandb.init(project="p", id="cased", resume="allow", reinit="create_new",
                         settings=wandb.Settings(mode="shared", x_primary=False, x_label="W1"))
    run.log({"a": 2})
    run.finish()
    label = f"W1-{os.getpid()}"
    assert (tmp_path / f"b/projects/p/runs/cased/parts/{label}.tlog").is_file()
    with httpx.Client(base_url=parts_server.url) as client:
        assert client.get("/api/v1/runs/p/cased/log", params={"part": label}).status_code == 200


def test_a_secondarys_files_are_listed_locally_as_the_server_names_them(tmp_path, monkeypatch):
    """A secondary writer's files (its ``parts/<label>.files/``: ``run.dir``, ``wandb.save``) are the
    run's files ``parts/<label>/<name>`` locally too, as a server lists them: in ``tracklet.Api()``'s
    and ``wandb.Api()``'s run files (read back by that name) and in ``tracklet ui`` over the data
    root (listed, ``?under=parts/<label>``, downloaded)."""
    from fastapi.testclient import TestClient

    import tracklet.compat.wandb as wandb
    from tracklet.server.app import create_app

    quiet = {"x_disable_meta": True, "x_disable_stats": True, "console": "off"}
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path))
    primary = wandb.init(project="p", id="lfiles", settings=wandb.Settings(mode="shared", x_primary=True, **quiet))
    Path(primary.dir, "output.log").write_text("hello from the primary")
    for label in ("rank_1", "rank_2"):
        run = wandb.init(project="p", id="lfiles", reinit="create_new",
                         settings=wandb.Settings(mode="shared", x_primary=False, x_label=label, **quiet))
        Path(run.dir, "output.log").write_text(f"hello from {label}")
        Path(run.dir, "sub").mkdir()
        Path(run.dir, "sub", "last.txt").write_text(label)
        run.finish()
    primary.finish()
    parts = ["parts/rank_1/output.log", "parts/rank_1/sub/last.txt", "parts/rank_2/output.log",
             "parts/rank_2/sub/last.txt"]
    recorded = tracklet.Api(tmp_path).run("p/lfiles")
    assert recorded.files() == ["output.log", *parts]
    assert recorded.file_path("parts/rank_2/output.log").read_text() == "hello from rank_2"
    listed = wandb.Api().run("p/lfiles")
    assert [file.name for file in listed.files() if file.name.startswith("parts/")] == parts
    with listed.file("parts/rank_1/sub/last.txt").download(root=str(tmp_path / "got")) as handle:
        assert handle.read() == "rank_1"
    with TestClient(create_app(tmp_path, shared_root=True, auth=False, index_on_start=False)) as client:
        names = [entry["name"] for entry in client.get("/api/v1/runs/p/lfiles/files").json()["files"]]
        assert names == ["output.log", *parts]
        one = client.get("/api/v1/runs/p/lfiles/files", params={"under": "parts/rank_2"}).json()["files"]
        assert [entry["name"] for entry in one] == parts[2:]
        assert client.get("/api/v1/runs/p/lfiles/files/parts/rank_1/output.log").text == "hello from rank_1"
        assert client.get("/api/v1/runs/p/lfiles/files/output.log").text == "hello from the primary"
        assert client.get("/api/v1/runs/p/lfiles/files", params={"under": "parts/rank_9"}).json()["files"] == []


def test_a_primary_arriving_after_its_parts_were_indexed_takes_its_own_state(tmp_path, store_url):
    """A run first indexed from its parts alone (its primary hadn't started: the parts finished),
    then its primary's log arrives: empty (killed as it created it), or recorded without an exit
    and no writer holds it (killed mid-run). The run's state is the primary's (crashed), in the
    store from the first pass after it arrives, as in the log reader; the parts' state was never
    the primary's."""
    from tracklet.core.recordlog import writer_alive
    from tracklet.server.indexing import StoreIndexer

    quiet = {"console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path / "root", store_url=store_url)
    for run_id in ("empty", "killed"):
        part = tracklet.init(project="p", id=run_id, name="by-w1", reinit="create_new",
                             settings={**quiet, "dir": str(tmp_path / "root"), "primary": False, "label": "w1"})
        part.log({"acc": 1.0})
        part.finish()
        read, stored = _both(api, tmp_path / "root", run_id)
        assert stored["state"] == "finished" and stored["metadata"]["no_primary"]
    (tmp_path / "root/projects/p/runs/empty/run.tlog").touch()
    primary = tracklet.init(project="p", id="killed", name="the-run", reinit="create_new",
                            settings={**quiet, "dir": str(tmp_path / "source")})
    primary.log({"loss": 1.0})
    assert primary.flush()
    (tmp_path / "root/projects/p/runs/killed/run.tlog").write_bytes(
        (tmp_path / "source/projects/p/runs/killed/run.tlog").read_bytes())  # no exit, no writer: crashed
    primary.finish()
    # tracklet ui's periodic pass (which skips a run whose own log is as big as indexed) folds it too
    StoreIndexer(api.store, tmp_path / "root", liveness=writer_alive).index_all()
    assert api.store.run("p", "empty")["state"] == "crashed"
    read, stored = _both(api, tmp_path / "root", "empty")
    assert (read.state, stored["state"]) == ("crashed", "crashed") and "no_primary" not in stored["metadata"]
    read, stored = _both(api, tmp_path / "root", "killed")
    assert (read.state, stored["state"], stored["name"]) == ("crashed", "crashed", "the-run")
    assert stored["summary"] == read.summary == {"loss": 1.0, "acc": 1.0}
    api.close()


def test_a_part_recorded_again_from_scratch_is_indexed_again(tmp_path, store_url):
    """A part's log replaced by another under the same label (its file deleted and the label
    started again: a longer log, a shorter one, or one as long: a job run again) is not continued from the old log's offset,
    which read the new log from the middle (its start, config and first rows lost, reported as
    damage every pass): the run is indexed again, as the primary's log recorded again is, and the
    store shows what the log reader shows."""
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)

    def record(run_id, label, config, values):
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id=run_id, config=config, reinit="create_new", settings={**quiet, **extra})
        for value in values:
            run.log({"acc" if label else "loss": value})
        run.finish()

    for run_id, first, again in (("longer", [1.0], [float(v) for v in range(10, 60)]),
                                 ("shorter", [float(v) for v in range(10, 60)], [1.0]),
                                 ("same-size", [1.0, 2.0], [3.0, 4.0])):  # (a job run again: as long)
        record(run_id, None, {}, [0.5])
        record(run_id, "w1", {"c": 1}, first)
        record(run_id, "w2", {"d": 1}, [2.0])
        _both(api, tmp_path, run_id)
        size = (tmp_path / f"projects/p/runs/{run_id}/parts/w1.tlog").stat().st_size
        (tmp_path / f"projects/p/runs/{run_id}/parts/w1.tlog").unlink()
        record(run_id, "w1", {"c": 2}, again)
        if run_id == "same-size":
            assert (tmp_path / f"projects/p/runs/{run_id}/parts/w1.tlog").stat().st_size == size
        report = api.index()
        assert not report.damaged and not report.failed, report
        read, stored = _both(api, tmp_path, run_id)
        assert stored["config"] == {"c": 2, "d": 1}
        assert [list(h.values) for h in api.history([f"p/{run_id}"], keys=["loss", "acc", "acc/l:w2"],
                                                     buckets=None)] == [[0.5], again, [2.0]]
        assert read.history()["acc"] == again
    api.close()


def test_a_pass_over_many_grown_writers_reads_and_writes_the_run_once(tmp_path, store_url, fresh_url):
    """Every writer of a run of many grew (each a few rows; one of them now logs
    a key, sets a summary-only key and a config key a later label had): an index pass reads the
    run's row once and writes it once, however many parts grew (a run of 1,000 writers isn't
    quadratic to index); the store agrees with the log reader, and with a store whose indexer
    read the parts in chunks much smaller than a part (several transactions per pass)."""
    import sqlalchemy as sa

    from tracklet.store import Store
    from tracklet.store.ingest import Indexer

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    labels = [f"w{index:02d}" for index in range(8)]

    def record(label, steps, row, *, best=None, config=None):
        extra = {"primary": False, "label": label} if label else {}
        run = tracklet.init(project="p", id="many", settings={**quiet, **extra}, resume="allow", reinit="create_new")
        run.config.update(config or {})
        for step in steps:
            run.log(dict(row, step_value=step), step=step)
        if best is not None:
            run.summary["best"] = best
        run.finish()

    api = tracklet.Api(tmp_path, store_url=store_url)
    chunked = Store(fresh_url(tmp_path / "chunked"), root=tmp_path)
    small = Indexer(chunked.engine, tmp_path)
    small.chunk_bytes = 256  # smaller than any part: each part over several transactions
    statements: list[str] = []
    sa.event.listen(api.store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: statements.append(" ".join(statement.split()).upper()))

    def run_row_statements() -> tuple[int, int]:
        reads = sum(1 for s in statements if s.startswith("SELECT") and " FROM RUNS " in s + " " and "JOIN" not in s)
        writes = sum(1 for s in statements if s.startswith("UPDATE RUNS "))
        statements.clear()
        return reads, writes

    def agree() -> None:
        read, stored = _both(api, tmp_path, "many")
        assert not small.index().failed
        again = chunked.run("p", "many")
        history = read.history()
        for key in sorted(history.keys() - {"_step", "_timestamp", "_runtime"}):
            expected = [value for value in history[key] if value is not None]
            for store in (api.store, chunked):
                assert [list(h.values) for h in store.history("p/many", key, buckets=None)] == [expected], key
        for field in ("summary", "config", "keys", "state", "updated_at", "name"):
            assert again[field] == stored[field], field

        def shown(parts):  # what readers show of each part (the rest is the indexer's bookkeeping)
            return {label: {name: info.get(name) for name in ("state", "exit_code", "host", "keys")}
                    for label, info in parts.items()}

        assert shown(again["metadata"]["parts"]) == shown(stored["metadata"]["parts"])
        assert shown(stored["metadata"]["parts"]) == {label: {**shown(read.metadata["parts"])[label],
                                                              "keys": stored["metadata"]["parts"][label]["keys"]}
                                                      for label in labels}

    record(None, range(3), {"loss": 1.0})
    for at, label in enumerate(labels):
        record(label, range(3), {"loss": 2.0, f"own/{label}": at}, best=100 + at if label == "w07" else None,
               config={"k": 7} if label == "w07" else None)
        if label == "w07":
            record(label, [3], {"x": 7.0})  # w07's "x" until w01 logs it
    agree()
    read = tracklet.Api(tmp_path).run("p/many")
    assert read.summary["best"] == 107 and read.config["k"] == 7 and read.history(["x"])["x"][-1] == 7.0
    run_row_statements()

    for at, label in enumerate(labels):  # every writer grows, w01 takes "x", "best" and "k" from w07
        taking = label == "w01"
        record(label, range(4, 6), {"loss": 3.0, f"own/{label}": at, **({"x": 1.0} if taking else {})},
               best=1 if taking else 207 if label == "w07" else None, config={"k": 1} if taking else None)
    assert not api.index().failed
    reads, writes = run_row_statements()
    assert writes == 1 and reads <= 2, (reads, writes)  # not one per part that grew
    agree()
    read = tracklet.Api(tmp_path).run("p/many")
    assert (read.summary["best"], read.summary["best/l:w07"], read.config["k"]) == (1, 207, 1)
    assert read.history(["x/l:w07"])["x/l:w07"][3] == 7.0
    chunked.engine.dispose()
    api.close()


def test_a_part_that_fails_to_index_fails_alone(tmp_path, store_url):
    """Parts that grew are folded together, but a part the store refuses (a real trigger here, as
    bad data would) fails alone: the pass reports it by its label, the run's other parts are
    indexed, and once the store accepts it the next pass indexes it, the store agreeing with the
    log reader."""
    import sqlalchemy as sa

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    primary = tracklet.init(project="p", id="bad", settings=quiet, reinit="create_new")
    primary.log({"loss": 1.0})
    primary.finish()
    api = tracklet.Api(tmp_path, store_url=store_url)
    assert not api.index().failed
    for at, label in enumerate(("w1", "w2", "w3")):
        run = tracklet.init(project="p", id="bad", settings={**quiet, "primary": False, "label": label},
                            reinit="create_new")
        run.log({"loss": 10.0 + at, f"own/{label}": float(at)})
        run.summary["best"] = at
        run.finish()
    with api.store.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("CREATE FUNCTION reject_part() RETURNS trigger AS $$ BEGIN "
                                       "RAISE EXCEPTION 'rejected by the test trigger'; END $$ LANGUAGE plpgsql"))
            connection.execute(sa.text("CREATE TRIGGER reject_part BEFORE INSERT ON run_parts FOR EACH ROW "
                                       "WHEN (NEW.label = 'w2') EXECUTE FUNCTION reject_part()"))
        else:
            connection.execute(sa.text("CREATE TRIGGER reject_part BEFORE INSERT ON run_parts WHEN NEW.label = 'w2' "
                                       "BEGIN SELECT RAISE(ABORT, 'rejected by the test trigger'); END"))
    report = api.index()
    assert [line.split(": ")[0] for line in report.failed] == ["p/bad part w2"]
    stored = api.store.run("p", "bad")
    assert sorted(stored["metadata"]["parts"]) == ["w1", "w3"]
    assert (stored["summary"]["best"], stored["summary"]["best/l:w3"]) == (0, 2)
    assert {h.key: list(h.values) for h in api.history(["p/bad"], keys=["own/w1", "own/w3"], buckets=None)} == {
        "own/w1": [0.0], "own/w3": [2.0]}
    with api.store.engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER reject_part" + (" ON run_parts" if connection.dialect.name ==
                                                                  "postgresql" else "")))
    read, stored = _both(api, tmp_path, "bad")
    assert (read.summary["best"], read.summary["best/l:w2"], read.summary["best/l:w3"]) == (0, 1, 2)
    assert read.history(["loss/l:w2"])["loss/l:w2"][-1] == 11.0
    api.close()


def test_a_run_made_by_a_part_longer_than_a_chunk_is_indexed(tmp_path, store_url):
    """A run whose primary never started, made by its parts, one of them longer than a chunk of
    the index (here 2 KiB; 8 MiB by default: a long secondary writer): the parts' chunks folded in
    one transaction with the run's new row write each series once, not again as if the run had
    none; the store agrees with the log reader (it failed with a UNIQUE violation, every pass)."""
    from tracklet.store import Store
    from tracklet.store.ingest import Indexer

    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    for label, rows in (("w1", 400), ("w2", 3)):
        run = tracklet.init(project="p", id="long", reinit="create_new", settings={**quiet, "primary": False,
                                                                                   "label": label})
        for step in range(rows):
            run.log({"loss": float(step)})
            if step % 20 == 19:
                run.flush()  # a frame of rows: several frames to a chunk
        run.finish()
    store = Store(store_url, root=tmp_path)
    indexer = Indexer(store.engine, tmp_path)
    indexer.chunk_bytes = 2048
    assert (tmp_path / "projects/p/runs/long/parts/w1.tlog").stat().st_size > 3 * indexer.chunk_bytes
    report = indexer.index()
    assert not report.failed and not report.damaged, report
    read = tracklet.Api(tmp_path).run("p/long")
    stored = store.run("p", "long")
    assert (stored["state"], stored["summary"], stored["name"]) == (read.state, read.summary, read.name)
    assert [list(h.values) for h in store.history("p/long", "loss", buckets=None)] == [read.history()["loss"]]
    assert [list(h.values) for h in store.history("p/long", "loss/l:w2", buckets=None)] == [[0.0, 1.0, 2.0]]
    store.engine.dispose()


@pytest.mark.parametrize("seed", [11, 27])  # (two that caught a part-only run failing to index)
def test_random_sequences_of_writers_keep_the_store_and_the_reader_agreeing(tmp_path, store_url, seed):
    """A shared run written by a random sequence of sessions (its primary present or never started;
    parts in any order, resumed, renamed, left empty, recorded again from scratch under their label;
    history keys several writers log; summary-only keys and config keys; summary keys removed by the
    primary and by secondaries, before and after other writers set them), indexed after every
    session into the test's store and into a store whose index reads a few dozen bytes to a chunk:
    both show what the log reader shows (state, identity, start, config, summary, every series)."""
    import random

    from tracklet.store import Store
    from tracklet.store.ingest import Indexer

    rng = random.Random(seed)
    drop = random.Random(-seed)  # summary removals, drawn apart: each seed's sessions stay the ones it had
    quiet = {"dir": str(tmp_path), "console": "off", "system_metrics": False, "capture_environment": False}
    api = tracklet.Api(tmp_path, store_url=store_url)
    chunked = Store(f"sqlite:///{tmp_path / 'chunked.sqlite'}", root=tmp_path)
    small = Indexer(chunked.engine, tmp_path)
    small.chunk_bytes = rng.choice([40, 100, 256, 1000])
    writers = ["a", "b", "c"] + ([None] if rng.random() < 0.5 else [])
    started: set[str | None] = set()
    run_dir = tmp_path / "projects/p/runs/r"
    for step in range(12):
        who = rng.choice(writers)
        log = run_dir / ("run.tlog" if who is None else f"parts/{who}.tlog")
        if who is not None and not log.exists() and rng.random() < 0.15:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.touch()  # its writer killed as it created it
            if rng.random() < 0.5:
                continue
        elif who is not None and log.exists() and log.stat().st_size and rng.random() < 0.15:
            log.unlink()  # recorded again from scratch under its label
            started.discard(who)
        given = {"name": f"{who}-{step}"} if rng.random() < 0.5 else {}
        if rng.random() < 0.3:
            given["tags"] = [f"t{step}"]
        if rng.random() < 0.3:
            given["config"] = {rng.choice("kmn"): step}
        extra = {"primary": False, "label": who} if who else {}
        run = tracklet.init(project="p", id="r", reinit="create_new", settings={**quiet, **extra},
                            resume="allow" if who in started or rng.random() < 0.3 else None, **given)
        started.add(who)
        for _ in range(rng.randint(0, 4)):
            run.log({rng.choice(["loss", "acc", "x", f"own/{who}"]): rng.random()})
        if drop.random() < 0.35 and len(run.summary):  # a removal: of a key set or logged now or in a session before
            del run.summary[drop.choice(sorted(run.summary))]
        if rng.random() < 0.6:  # summary-only keys, and keys other writers (or this one) log as history keys
            run.summary[rng.choice(["best", "worst", "loss", "acc", "x"])] = step
        if drop.random() < 0.25 and len(run.summary):  # (after it set one: a removal in the same chunk or the next)
            del run.summary[drop.choice(sorted(run.summary))]
            if drop.random() < 0.3:
                run.log({drop.choice(["loss", "acc"]): drop.random()})  # logged again after its removal
        if rng.random() < 0.2:
            run.name = f"renamed-{who}-{step}"
        run.finish(exit_code=rng.choice([0, 0, 0, 1]))
        for report in (api.index(), small.index()):
            assert not report.failed and not report.damaged, (step, report)
        read = tracklet.Api(tmp_path).run("p/r")
        history = read.history()
        for store in (api.store, chunked):
            stored = store.run("p", "r")
            assert (stored["state"], stored["exit_code"], stored["name"], stored["tags"], stored["created_at"],
                    stored["updated_at"]) == (read.state, read.exit_code, read.name, read.tags, read.created_at,
                                              read.updated_at), step
            assert (stored["config"], stored["summary"]) == (read.config, read.summary), step
            for key in sorted(history.keys() - {"_step", "_timestamp", "_runtime"}):
                expected = [value for value in history[key] if value is not None]
                assert [list(h.values) for h in store.history("p/r", key, buckets=None)] == [expected], (step, key)
    chunked.engine.dispose()
    api.close()


def test_a_servers_histograms_and_values_read_every_writer(tmp_path, parts_server):
    """A shared run's histograms, strings and structured values through a server that keeps
    files (`tracklet sync`): its histogram and values routes, and `tracklet.Api` against it in a
    fresh interpreter, show every writer's under the names the local reader gives them."""
    import sharedvalues

    sharedvalues.record(tmp_path, "p", "vals")
    done = serverfork.run(["sync", "p/vals", "--url", parts_server.url], env={**_env(), "TRACKLET_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    sharedvalues.check(parts_server.url, tmp_path, "p", "vals")


def test_a_part_that_started_and_arrived_before_the_primary_keeps_the_primarys_start_and_times(
        tmp_path, parts_server):
    """A part recorded and uploaded before its primary, to a server that keeps files: the run's
    start and each step's ``_timestamp`` and ``_runtime`` through `tracklet.Api` against it are the
    local reader's (the primary's start; a step's time the latest of its writers')."""
    import sharedvalues

    sharedvalues.part_first(tmp_path, "p", "part-first", [parts_server.url])
    sharedvalues.check_times(parts_server.url, tmp_path, "p", "part-first")


def test_the_stores_time_axis_of_a_shared_run_is_each_steps_latest_writers_time(tmp_path):
    """A chart over time (``x="time"``/``"relative_time"``) maps each step to its time as the local
    reader's ``_timestamp`` has it: the latest of every writer's row at that step. The store's axis
    was the primary's times alone: a step a part logged later showed at the primary's time, and
    a step only a part logged at the primary's last time."""
    for label, steps in (("primary", range(0, 4)), ("rank_1", range(2, 8))):
        settings = {"system_metrics": False, "console": "off", "capture_environment": False, "dir": str(tmp_path)}
        if label != "primary":
            settings.update(primary=False, label=label)
        run = tracklet.init(project="p", id="axis", reinit="create_new", settings=settings)
        for step in steps:
            time.sleep(0.01)  # every row a time of its own
            run.log({"loss" if label == "primary" else "grad": float(step)}, step=step)
        run.finish()
    local = tracklet.Api(tmp_path).run("p/axis").history()
    times = dict(zip(local["_step"], local["_timestamp"]))
    api = tracklet.Api(tmp_path)
    assert not api.index().failed
    start = api.store.run("p", "axis")["created_at"]
    for x, offset in (("time", 0.0), ("relative_time", start)):
        for key in ("loss", "grad"):
            (series,) = api.store.history("p/axis", key, x=x, buckets=None)
            assert [value + offset for value in series.x] == pytest.approx([times[step] for step in series.steps],
                                                                           abs=1e-3), (x, key)
    api.close()
