"""Run tables in lineage (docs/tables.md#lineage): a table a run logs is version ``v<n>`` of
``run-<run id>-<key>``, type ``run_table``, as W&B names it; a run that uses one (tracklet's or
W&B's ``use_artifact``) records the use in its log, the store indexes both, and the lineage
views (the server's lineage route, ``tracklet artifact show``, the dashboard's graph) show
producer run -> table -> consumer run, several hops on. Real runs, in local mode and against a
real ``tracklet server`` process; the dashboard graph in real Chromium."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import QUIET
from fastapi.testclient import TestClient
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, page  # noqa: F401

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.cli.main import main as cli_main
from tracklet.core.run_tables import table_artifact_name
from tracklet.errors import ArtifactNameError, ArtifactNotFound
from tracklet.server.app import create_app


def _lineage_graph(body: dict) -> tuple[dict[str, dict], set[tuple[str, str, str]]]:
    return ({node["id"]: node for node in body["nodes"]},
            {(edge["source"], edge["target"], edge["kind"]) for edge in body["edges"]})


def _record_local(root: Path, monkeypatch) -> None:
    """prod logs `preds` 3 times (and `val/preds` once); cons (W&B's API) reads preds:v1 and logs
    model:v0; final (tracklet's API) uses model:latest and preds:latest."""
    prod = tracklet.init(project="tl", id="prod", dir=str(root), settings=QUIET)
    for step in range(3):
        prod.log({"preds": tracklet.Table(columns=["x", "y"], data=[[step, step * 10]])}, step=step)
    prod.log({"val/preds": tracklet.Table(columns=["x"], data=[[7]])}, step=3)
    prod.finish()

    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="tl", id="cons", settings={"console": "off"}) as cons:
        table = cons.use_artifact("run-prod-preds:v1").get("preds")
        assert table.data == [[1, 10]]
        assert cons.use_artifact(f"tl/{table_artifact_name('prod', 'val/preds')}:latest").get("val/preds").data == [[7]]
        model = wandb.Artifact("model", type="model")
        with model.new_file("weights.txt") as handle:
            handle.write("w")
        cons.log_artifact(model)

    final = tracklet.init(project="tl", id="final", dir=str(root), settings=QUIET)
    final.use_artifact("model:latest")
    latest = final.use_artifact("run-prod-preds:latest")
    assert (latest.name, latest.version, latest.type, latest.key, latest.run_path) == (
        "run-prod-preds", 2, "run_table", "preds", "tl/prod")
    assert latest.table().to_pandas()["y"].tolist() == [20]
    with pytest.raises(ArtifactNotFound):  # a run table is of type run_table, nothing else
        final.use_artifact("run-prod-preds:v1", type="dataset")
    with pytest.raises(ArtifactNotFound):  # no such version, key or run
        final.use_artifact("run-prod-preds:v3")
    with pytest.raises(ArtifactNotFound):
        final.use_artifact("run-prod-nothing:latest")
    with pytest.raises(ArtifactNotFound):
        final.use_artifact("run-nobody-preds:latest")
    final.finish()
    with wandb.init(project="tl", mode="disabled") as off:  # a disabled run reads it, records nothing
        assert off.use_artifact("run-prod-preds:v0").get("preds").data == [[0, 0]]


def test_a_local_run_tables_use_is_lineage_through_the_apis_the_cli_and_the_lineage_route(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _record_local(root, monkeypatch)

    # The runs' own records: the use is an ArtifactUsed naming the run table.
    used = [(a["name"], a["version"], a["type"]) for a in tracklet.Api(root).run("tl/cons").used_artifacts]
    assert used == [("run-prod-preds", 1, "run_table"), (table_artifact_name("prod", "val/preds"), 0, "run_table")]
    # W&B's API: cons used preds:v1; prod's logged artifacts list each table version once.
    api = wandb.Api(overrides={"root": str(root)})
    assert [a.name for a in api.run("tl/cons").used_artifacts()][:1] == ["run-prod-preds:v1"]
    assert [a.name for a in api.run("tl/prod").logged_artifacts() if a.type == "run_table"] == [
        "run-prod-preds:v0", "run-prod-preds:v1", "run-prod-preds:v2", f"{table_artifact_name('prod', 'val/preds')}:v0"]

    # The lineage route: prod -> preds:v1 -> cons -> model:v0 -> final, and preds:v2 -> final;
    # preds:v0, which no run read, is prod's table, not lineage.
    with TestClient(create_app(root, auth=False, shared_root=True)) as http:
        answer = http.get("/api/v1/projects/tl/lineage", params={"run": "prod", "hops": 4})
        assert answer.status_code == 200, answer.text
        nodes, edges = _lineage_graph(answer.json())
        v1, v2 = "artifact:tl/run-prod-preds:v1", "artifact:tl/run-prod-preds:v2"
        assert {(v1, "run:tl/cons", "used"), ("run:tl/prod", v1, "logged"), ("run:tl/cons", "artifact:tl/model:v0",
                "logged"), ("artifact:tl/model:v0", "run:tl/final", "used"), ("run:tl/prod", v2, "logged"),
                (v2, "run:tl/final", "used")} <= edges
        assert "artifact:tl/run-prod-preds:v0" not in nodes
        assert (nodes[v1]["type"], nodes[v1]["version"], nodes[v1]["aliases"]) == ("run_table", "v1", [])
        assert nodes[v2]["aliases"] == ["latest"] and nodes["run:tl/final"]["depth"] == 2
        # From the table itself (by alias or number), and a version no run logged is a 404.
        for name in ("run-prod-preds:v1", "tl/run-prod-preds:v1"):
            start = http.get("/api/v1/projects/tl/lineage", params={"artifact": name, "hops": 1}).json()
            assert start["root"] == v1 and {n["id"] for n in start["nodes"]} == {v1, "run:tl/prod", "run:tl/cons"}
        latest = http.get("/api/v1/projects/tl/lineage", params={"artifact": "run-prod-preds:latest", "hops": 1})
        assert latest.json()["root"] == v2
        assert http.get("/api/v1/projects/tl/lineage", params={"artifact": "run-prod-preds:v9"}).status_code == 404
        # A run's artifacts: the tables it used, not every table it logged.
        assert http.get("/api/v1/runs/tl/prod/artifacts").json()["logged"] == []
        assert [u["name"] for u in http.get("/api/v1/runs/tl/cons/artifacts").json()["used"]][:1] == ["run-prod-preds"]

    # The CLI: `tracklet artifact show` names the table's run, key and step and who used it.
    shown = CliRunner().invoke(cli_main, ["--dir", str(root), "artifact", "show", "tl/run-prod-preds:v1", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) | {"created": None} == {
        "name": "tl/run-prod-preds:v1", "type": "run_table", "key": "preds", "step": 1, "aliases": [],
        "created": None, "logged_by": "tl/prod", "used_by": ["tl/cons"]}
    missing = CliRunner().invoke(cli_main, ["--dir", str(root), "artifact", "show", "tl/run-prod-preds:v9"])
    assert missing.exit_code != 0 and "does not exist" in missing.output

    # A reproduction of final pins the table version it read, as it pins an artifact's.
    from types import SimpleNamespace

    from tracklet.reproduce.plan import _plan_inputs

    plan = SimpleNamespace(root=root, problems=[], differences=[], artifacts={})
    _plan_inputs(plan, tracklet.Api(root).run("tl/final"))
    assert plan.problems == [] and plan.artifacts == {"tl/model": 0, "tl/run-prod-preds": 2}

    # A rebuilt index numbers the versions the same.
    from tracklet.store import Store

    store = Store(None, root=root)
    try:
        store.index(rebuild=True)
        assert store.run_table_last("tl", "run-prod-preds") == 2
    finally:
        store.close()


def _wait_lineage(url: str, params: dict, want: set) -> tuple[dict, set]:
    """The server's lineage once it holds ``want`` (its indexing follows the uploads)."""
    deadline = time.monotonic() + 60
    while True:
        body = httpx.get(url + "/api/v1/projects/tl/lineage", params=params, timeout=30).json()
        nodes, edges = _lineage_graph(body)
        if want <= edges or time.monotonic() > deadline:
            return nodes, edges
        time.sleep(0.2)


def _record_online(server_url: str, tmp_path: Path, monkeypatch) -> None:
    """As _record_local, each run online from its own data root: the consumer finds the table on
    the server only."""
    online = {**QUIET, "base_url": server_url}
    prod = tracklet.init(project="tl", id="prod", dir=str(tmp_path / "a"), mode="online", settings=online)
    for step in range(2):
        prod.log({"preds": tracklet.Table(columns=["x"], data=[[step]])}, step=step)
    prod.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("TRACKLET_BASE_URL", server_url)
    monkeypatch.setenv("TRACKLET_MODE", "online")
    with wandb.init(project="tl", id="cons", settings={"console": "off"}) as cons:
        assert cons.use_artifact("run-prod-preds:v0").get("preds").data == [[0]]
        model = wandb.Artifact("model", type="model")
        with model.new_file("weights.txt") as handle:
            handle.write("w")
        cons.log_artifact(model)
    final = tracklet.init(project="tl", id="final", dir=str(tmp_path / "c"), mode="online", settings=online)
    final.use_artifact("model:latest")
    assert final.use_artifact("run-prod-preds:latest").version == 1
    final.finish()


CHAIN = {("run:tl/prod", "artifact:tl/run-prod-preds:v0", "logged"), ("artifact:tl/run-prod-preds:v0", "run:tl/cons", "used"),
         ("run:tl/cons", "artifact:tl/model:v0", "logged"), ("artifact:tl/model:v0", "run:tl/final", "used"),
         ("run:tl/prod", "artifact:tl/run-prod-preds:v1", "logged"), ("artifact:tl/run-prod-preds:v1", "run:tl/final", "used")}


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)")
@pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)")
def test_online_runs_tables_lineage_on_a_server_and_in_the_dashboard_graph(servers, tmp_path, monkeypatch,
                                                                            page):  # noqa: F811
    server = servers(tmp_path / "server", dev=True)
    _record_online(server.url, tmp_path, monkeypatch)
    nodes, edges = _wait_lineage(server.url, {"run": "prod", "hops": 4}, CHAIN)
    assert CHAIN <= edges
    assert nodes["artifact:tl/run-prod-preds:v1"]["aliases"] == ["latest"]
    shown = CliRunner().invoke(cli_main, ["artifact", "show", "tl/run-prod-preds:v0", "--json", "--url", server.url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) | {"created": None} == {
        "name": "tl/run-prod-preds:v0", "type": "run_table", "key": "preds", "step": 0, "aliases": [],
        "created": None, "logged_by": "tl/prod", "used_by": ["tl/cons"]}

    page.goto(server.url + "/projects/tl/runs/cons/lineage")
    page.wait_for_selector("svg.lineage-graph g.lineage-node[data-id='run:tl/final']")
    table = page.locator("g.lineage-node[data-id='artifact:tl/run-prod-preds:v0']")
    assert table.locator("text.title").text_content() == "run-prod-preds:v0"
    assert "run table" in table.locator("text.subtitle").text_content()
    drawn = set(page.eval_on_selector_all("svg.lineage-graph path.lineage-edge",
                                          "ps => ps.map(p => p.dataset.source + ' ' + p.dataset.target)"))
    assert {"run:tl/prod artifact:tl/run-prod-preds:v0", "artifact:tl/run-prod-preds:v0 run:tl/cons",
            "run:tl/cons artifact:tl/model:v0"} <= drawn
    lefts = [page.locator(f"g.lineage-node[data-id='{node}'] rect").bounding_box()["x"]
             for node in ("run:tl/prod", "artifact:tl/run-prod-preds:v0", "run:tl/cons", "artifact:tl/model:v0")]
    assert lefts == sorted(lefts) and len(set(lefts)) == 4  # data flows left to right
    table.locator("rect").click()  # a run table links to the run that logged it
    page.wait_for_url(server.url + "/projects/tl/runs/prod")
    page.goto(server.url + "/projects/tl/runs/cons")  # the consumer's Artifacts card: the table it used
    page.click(".run-artifacts-card tr[data-artifact='tl/run-prod-preds:v0'] a")  # -> the table's own graph
    page.wait_for_selector("g.lineage-node.root[data-id='artifact:tl/run-prod-preds:v0']")
    assert page.url == server.url + "/projects/tl/artifacts/run-prod-preds/v0/lineage"
    assert page.text_content(".lineage-page .pane-head a") == "← run prod"


def test_a_run_indexed_while_it_logs_a_table_numbers_the_versions_on(tmp_path):
    """Each indexing pass numbers a run's new table logs after those it stored (one pass over the
    whole log, a rebuild, numbers them the same)."""
    from tracklet.store import Store

    root = tmp_path / "data"
    run = tracklet.init(project="tl", id="live", dir=str(root), settings=QUIET)
    store = Store(None, root=root)
    try:
        for step in range(3):
            run.log({"t": tracklet.Table(columns=["x"], data=[[step]])}, step=step)
            assert run.flush(timeout=30)
            store.index()
            assert store.run_table_last("tl", "run-live-t") == step
        run.finish()
        store.index()
        edges, _ = store.artifact_edges(versions=[("tl", "run-live-t", v) for v in range(3)])
        assert sorted((e["direction"], e["version"], e["run_id"]) for e in edges) == [
            ("logged", 0, "live"), ("logged", 1, "live"), ("logged", 2, "live")]
        store.index(rebuild=True)
        assert store.run_table_last("tl", "run-live-t") == 2
    finally:
        store.close()


def test_long_table_keys_get_one_name_each_within_128_characters_everywhere(tmp_path, monkeypatch):
    """A key making ``run-<id>-<key>`` longer than W&B's 128 characters (W&B's ``log`` refuses
    such a table; tracklet records it) is named by its first 116 characters, ``-`` and a hash of
    the whole: two keys sharing a 150-character prefix are two tables, each numbered on its own,
    found under that one name by tracklet's ``use_artifact``, W&B's (run and ``Api``), the
    store's edges and the lineage route (which saw them cut to one name before)."""
    root = tmp_path / "data"
    key_a, key_b = "k" * 150 + "/a", "k" * 150 + "/b"
    name_a, name_b = table_artifact_name("prod", key_a), table_artifact_name("prod", key_b)
    assert len(name_a) == len(name_b) == 128 and name_a != name_b and name_a.startswith("run-prod-kkk")
    assert table_artifact_name("prod", "k" * 150) not in (name_a, name_b)
    prod = tracklet.init(project="tl", id="prod", dir=str(root), settings=QUIET)
    prod.log({key_a: tracklet.Table(columns=["x"], data=[[0]])}, step=0)
    prod.log({key_b: tracklet.Table(columns=["x"], data=[[10]])}, step=1)
    prod.log({key_a: tracklet.Table(columns=["x"], data=[[1]])}, step=2)
    prod.finish()

    cons = tracklet.init(project="tl", id="cons", dir=str(root), settings=QUIET)
    a1 = cons.use_artifact(f"{name_a}:v1")
    b0 = cons.use_artifact(f"tl/{name_b}:latest")
    assert (a1.key, a1.version, a1.step, b0.key, b0.version, b0.step) == (key_a, 1, 2, key_b, 0, 1)
    assert a1.table().to_pandas()["x"].tolist() == [1] and b0.table().to_pandas()["x"].tolist() == [10]
    with pytest.raises(ArtifactNotFound):  # b has one version
        cons.use_artifact(f"{name_b}:v1")
    with pytest.raises(ArtifactNameError, match="1-128"):  # the uncut name is no artifact name
        cons.use_artifact(f"run-prod-{key_a.replace('/', '')}:v0")
    cons.finish()

    monkeypatch.setenv("TRACKLET_DIR", str(root))
    with wandb.init(project="tl", id="wbcons", settings={"console": "off"}) as run:
        assert run.use_artifact(f"{name_b}:v0").get(key_b).data == [[10]]
    api = wandb.Api(overrides={"root": str(root)})
    assert [a.name for a in api.run("tl/prod").logged_artifacts() if a.type == "run_table"] == [
        f"{name_a}:v0", f"{name_b}:v0", f"{name_a}:v1"]
    assert api.artifact(f"tl/{name_a}:latest").get(key_a).data == [[1]]
    assert api.artifact(f"tl/{name_b}:latest").get(key_b).data == [[10]]
    assert [a.name for a in api.run("tl/wbcons").used_artifacts()] == [f"{name_b}:v0"]

    with TestClient(create_app(root, auth=False, shared_root=True)) as http:
        for name, version, users in ((name_a, "v1", {"run:tl/cons"}), (name_b, "v0", {"run:tl/cons", "run:tl/wbcons"})):
            answer = http.get("/api/v1/projects/tl/lineage", params={"artifact": f"{name}:latest", "hops": 1})
            assert answer.status_code == 200, answer.text
            nodes, edges = _lineage_graph(answer.json())
            node = f"artifact:tl/{name}:{version}"
            assert answer.json()["root"] == node and nodes[node]["aliases"] == ["latest"]
            assert edges == {("run:tl/prod", node, "logged")} | {(node, user, "used") for user in users}
        assert http.get("/api/v1/projects/tl/lineage", params={"artifact": f"{name_b}:v1"}).status_code == 404


def test_use_artifact_of_a_run_table_reads_the_logs_table_records_not_the_whole_log(tmp_path, monkeypatch):
    """``use_artifact("run-<id>-<key>:vN")`` runs on the caller's training thread: it reads each
    frame's header and kind and the producer's table records, never the rest of its log (a log of
    millions of rows would stall training), nor replays it; ``table()`` likewise. A shared run's
    parts are read too, in the reader's order. W&B's ``use_artifact(...).get(key)`` likewise."""
    import tracklet.core.run_tables as run_tables
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.core.recordlog import FRAME_HEADER, MAGIC, read_log

    root = tmp_path / "data"
    prod = tracklet.init(project="tl", id="prod", dir=str(root), settings=QUIET)
    for step in range(3000):
        prod.log({"loss": 1.0 / (step + 1), "acc": step * 1e-3}, step=step)
        if step % 1000 == 999:
            prod.log({"preds": tracklet.Table(columns=["x"], data=[[step]])}, step=step)
    prod.finish()
    log = RunPaths(root, "tl", "prod").log_file
    frames = read_log(log).payloads
    table_bytes = sum(len(payload) for _, payload in frames if payload[0] == (14 << 3) | 2)
    assert sum(1 for _, payload in frames if payload[0] == (14 << 3) | 2) == 3
    # what reading only headers, kinds and table records costs, against the log's size
    bounded = len(MAGIC) + len(frames) * (FRAME_HEADER.size + 1) + table_bytes
    assert bounded < log.stat().st_size / 3

    read: list[int] = []
    real_pread = run_tables._pread

    def counting_pread(fd, length, offset):
        data = real_pread(fd, length, offset)
        read.append(len(data))
        return data

    def no_replay(self):
        raise AssertionError("the producer's log was replayed whole")

    consumer = tracklet.init(project="tl", id="cons", dir=str(root), settings=QUIET)
    monkeypatch.setattr(run_tables, "_pread", counting_pread)
    monkeypatch.setattr(RecordedRun, "refresh", no_replay)
    used = consumer.use_artifact("run-prod-preds:v1")
    assert (used.key, used.version, used.step) == ("preds", 1, 1999)
    assert sum(read) == bounded
    assert used.table().to_pandas()["x"].tolist() == [1999]
    consumer.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(root))  # W&B's API: the same reads
    with wandb.init(project="tl", id="wbcons", settings={"console": "off"}) as run:
        assert run.use_artifact("run-prod-preds:v2").get("preds").data == [[2999]]
    monkeypatch.undo()
    assert [(a["name"], a["version"]) for a in tracklet.Api(root).run("tl/cons").used_artifacts] == [
        ("run-prod-preds", 1)]


def test_a_damaged_producer_log_is_read_past_its_damage(tmp_path):
    """A producer log with a damaged frame: the table records after it are found (the lookup
    falls back to the reader, which resyncs), a torn tail ends the log."""
    from tracklet.core.layout import RunPaths
    from tracklet.core.run_tables import run_logged_tables

    root = tmp_path / "data"
    prod = tracklet.init(project="tl", id="prod", dir=str(root), settings=QUIET)
    prod.log({"preds": tracklet.Table(columns=["x"], data=[[0]])}, step=0)
    assert prod.flush(timeout=30)
    log = RunPaths(root, "tl", "prod").log_file
    middle = log.stat().st_size
    for step in range(1, 3):
        prod.log({"loss": 1.0, "preds": tracklet.Table(columns=["x"], data=[[step]])}, step=step)
    prod.finish()
    with log.open("ab") as handle:  # a torn last frame, as a live writer's: the log ends before it
        handle.write(b"\x10\0\0")
    assert [t.step for t in run_logged_tables(RunPaths(root, "tl", "prod"))] == [0, 1, 2]
    data = bytearray(log.read_bytes())
    data[middle:middle + 4] = b"\0\0\0\0"  # a zeroed frame length
    log.write_bytes(bytes(data))
    assert run_logged_tables(RunPaths(root, "tl", "prod")) is None
    cons = tracklet.init(project="tl", id="cons", dir=str(root), settings=QUIET)
    with pytest.warns(Warning, match="damaged"):
        assert cons.use_artifact("run-prod-preds:latest").table().to_pandas()["x"].tolist() == [2]
    cons.finish()


def test_a_shared_runs_tables_are_read_from_its_parts_in_the_readers_order(tmp_path):
    """A shared run's writers each log a table key: the bounded read lists the primary's table
    records, then each part's by label, as the log reader does; ``:vN`` is the number the writers
    took from the run's counter, in the order they logged (w2 first), not the order read."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.core.run_tables import run_logged_tables

    root = tmp_path / "data"
    settings = {**QUIET, "dir": str(root)}
    for label, value in (("w2", 2), (None, 0), ("w1", 1)):
        writer = tracklet.init(project="tl", id="shared", reinit="create_new",
                               settings=settings if label is None else {**settings, "primary": False, "label": label})
        writer.log({"preds": tracklet.Table(columns=["x"], data=[[value]])}, step=value)
        writer.finish()
    paths = RunPaths(root, "tl", "shared")
    assert [t.step for t in run_logged_tables(paths)] == [t.step for t in RecordedRun(paths)._read.tables] == [0, 1, 2]
    cons = tracklet.init(project="tl", id="cons", dir=str(root), settings=QUIET)
    assert [cons.use_artifact(f"run-shared-preds:v{n}").table().to_pandas()["x"].tolist() for n in range(3)] == [
        [2], [0], [1]]
    assert cons.use_artifact("run-shared-preds:latest").version == 2
    cons.finish()


def test_a_table_of_a_run_id_over_111_characters_is_found_from_its_cut_name(module_servers, tmp_path,
                                                                              monkeypatch):
    """A run id of 120 characters with a key that cuts ``run-<id>-<key>`` to 128: the name keeps
    only the id's first 112 characters, so the id is found from the project's runs (a data root's
    directory, a server's listing) and checked against the name. tracklet's ``use_artifact``,
    W&B's (run and ``Api``) and ``tracklet artifact show`` find it, offline and online; another
    run whose id shares those 112 characters is not mistaken for it."""
    run_id, twin = "r" * 115 + "-long", "r" * 115 + "-twin"
    key = "predictions/" + "k" * 20
    name = table_artifact_name(run_id, key)
    assert len(name) == 128 and run_id not in name and name != table_artifact_name(twin, key)
    root = tmp_path / "data"
    for writer in (twin, run_id):  # the twin logs the key too: its name differs in the hash only
        run = tracklet.init(project="tl", id=writer, dir=str(root), settings=QUIET)
        run.log({key: tracklet.Table(columns=["x"], data=[[len(writer) if writer == twin else 0]])}, step=0)
        run.log({key: tracklet.Table(columns=["x"], data=[[1]])}, step=1) if writer == run_id else None
        run.finish()

    cons = tracklet.init(project="tl", id="cons", dir=str(root), settings=QUIET)
    found = cons.use_artifact(f"{name}:v0")
    assert (found.run_id, found.key, found.version, found.step) == (run_id, key, 0, 0)
    assert found.table().to_pandas()["x"].tolist() == [0]
    with pytest.raises(ArtifactNotFound):
        cons.use_artifact(f"{name}:v2")
    cons.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    shown = CliRunner().invoke(cli_main, ["artifact", "show", f"tl/{name}:latest", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["logged_by"] == f"tl/{run_id}"
    with wandb.init(project="tl", id="wbcons", settings={"console": "off"}) as wb_run:
        assert wb_run.use_artifact(f"{name}:latest").get(key).data == [[1]]
    assert wandb.Api(overrides={"root": str(root)}).artifact(f"tl/{name}:v0").get(key).data == [[0]]

    server = module_servers(tmp_path / "server")
    online = {**QUIET, "base_url": server.url}
    for writer in (twin, run_id):
        run = tracklet.init(project="tl", id=writer, dir=str(tmp_path / "a"), mode="online", settings=online)
        run.log({key: tracklet.Table(columns=["x"], data=[[7 if writer == run_id else 8]])}, step=0)
        run.finish()
    reader = tracklet.init(project="tl", id="oncons", dir=str(tmp_path / "b"), mode="online", settings=online)
    assert reader.use_artifact(f"{name}:latest").run_id == run_id
    reader.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    monkeypatch.setenv("TRACKLET_MODE", "online")
    with wandb.init(project="tl", id="wboncons", settings={"console": "off"}) as wb_run:
        assert wb_run.use_artifact(f"{name}:v0").get(key).data == [[7]]
    assert wandb.Api(overrides={"base_url": server.url}).artifact(f"tl/{name}:latest").get(key).data == [[7]]


def test_a_shared_runs_table_versions_on_a_server_are_its_writers(module_servers, tmp_path):
    """Two writers of one run online (real processes, logging one key at the same steps): the
    server's table-versions route numbers each version as the writers did (and as the local
    reader does), ``tracklet.Api``, W&B's ``Api().artifact`` and the lineage route name the same
    version by ``:vN``, and its rows are that writer's, not another's logged at that step."""
    from test_table_versions import _read, _writers

    server = module_servers(tmp_path / "server")
    root = tmp_path / "data"
    _writers(root, "shsrv", ["primary", "rank_1"], 3, server=server.url)
    local = [(label, step, n) for key, label, step, n in _read(root, "shsrv") if key == "preds"]
    assert sorted(n for *_, n in local) == list(range(6))
    url = f"{server.url}/api/v1/runs/p/shsrv/table-versions/preds"
    deadline = time.monotonic() + 60
    while True:  # the server indexes the run and receives its part as they are uploaded
        response = httpx.get(url, timeout=30)
        if response.status_code == 200 and response.json()["total"] == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    listed = response.json()["versions"]
    assert [(item["step"], item["version"]) for item in listed] == [(step, n) for _, step, n in local]
    with tracklet.Api(base_url=server.url) as api:
        run = api.run("p/shsrv")
        assert [(v["step"], v["version"]) for v in run.table_versions("preds")] == [(s, n) for _, s, n in local]
        for label, _, n in local:
            assert run.table("preds", version=n).to_pandas()["label"].tolist() == [label]
    label, step, n = local[-2]  # rank_1's, at a step the primary logged the key too
    found = wandb.Api(overrides={"base_url": server.url}).artifact(f"p/run-shsrv-preds:v{n}")
    assert found.version == f"v{n}" and found.get("preds").data == [[label, step]]
    nodes, _ = _wait_lineage_of(server.url, "p", {"artifact": "run-shsrv-preds:latest", "hops": 1})
    assert "artifact:p/run-shsrv-preds:v5" in nodes
    assert httpx.get(f"{server.url}/api/v1/runs/p/shsrv/tables/preds", params={"version": 9}).status_code == 404


def _versions_when_indexed(url: str, run_id: str, key: str, total: int) -> None:
    deadline = time.monotonic() + 60
    while True:  # the server indexes the run and receives its parts as they are uploaded
        response = httpx.get(f"{url}/api/v1/runs/p/{run_id}/table-versions/{key}", timeout=30)
        if response.status_code == 200 and response.json()["total"] == total:
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


@pytest.mark.parametrize("old", [False, True], ids=["numbered", "before-numbers"])
def test_table_versions_on_a_server_come_in_pages_each_version_once_in_order(module_servers, tmp_path, monkeypatch,
                                                                           old):
    """A shared run of three writers online (real processes; numbered by their counter, or as
    writers before session 32 without numbers): ``table-versions`` with a ``limit``, followed by
    each page's ``next_cursor``, lists every version exactly once in the readers' order, numbered as
    the local reader numbers them, with an INCREMENTAL version's rows so far; the last page's cursor
    lists nothing until more is logged; without a limit the answer is what it always was (no
    cursor); ``tracklet.Api`` follows the pages; a version read by step or number is the local
    reader's; a cursor that isn't one is 400."""
    import tracklet.client.table_versions as pager
    from test_table_versions import _read, _writers

    server = module_servers(tmp_path / "server")
    root = tmp_path / "data"
    run_id = "pages-old" if old else "pages"
    _writers(root, run_id, ["primary", "rank_1", "rank_2"], 5, old=old, server=server.url)
    for key in ("preds", "inc"):
        local = [(step, n) for k, _, step, n in _read(root, run_id) if k == key]
        _versions_when_indexed(server.url, run_id, key, len(local))
        url = f"{server.url}/api/v1/runs/p/{run_id}/table-versions/{key}"
        whole = httpx.get(url, timeout=30).json()
        assert whole["total"] == len(local) and whole["next_cursor"]  # where versions logged later start
        assert httpx.get(url, params={"limit": 4, "cursor": whole["next_cursor"]}, timeout=30).json()["versions"] == []
        assert [(v["step"], v["version"]) for v in whole["versions"]] == local
        listed, cursor, pages = [], None, 0
        while True:
            answer = httpx.get(url, params={"limit": 4, **({"cursor": cursor} if cursor else {})}, timeout=30).json()
            assert answer["total"] == len(local)
            listed += answer["versions"]
            cursor, pages = answer["next_cursor"], pages + 1
            if len(answer["versions"]) < 4:
                break
        assert listed == whole["versions"] and pages == len(local) // 4 + 1
        assert httpx.get(url, params={"cursor": cursor}, timeout=30).json()["versions"] == []
        if key == "inc":  # an INCREMENTAL version's rows: every increment of its table up to it
            assert [v["rows"] for v in listed] == [n + 1 for n in range(5)] * 3
        monkeypatch.setattr(pager, "PAGE", 3)
        with tracklet.Api(base_url=server.url) as api:
            run = api.run(f"p/{run_id}")
            versions = run.table_versions(key)
            assert [(v["step"], v["version"]) for v in versions] == local
            assert [v["index"] for v in versions] == list(range(len(local)))
            from tracklet.core.api import RecordedRun
            from tracklet.core.layout import RunPaths

            recorded = RecordedRun(RunPaths(root, "p", run_id))
            for step, n in local[::4]:
                expected = recorded.table(key, version=n).to_arrow().to_pylist()
                assert run.table(key, version=n).to_arrow().to_pylist() == expected
                by_step = recorded.table(key, step=step).to_arrow().to_pylist()
                assert run.table(key, step).to_arrow().to_pylist() == by_step
        monkeypatch.undo()
    bad = httpx.get(f"{server.url}/api/v1/runs/p/{run_id}/table-versions/preds", params={"cursor": "x"}, timeout=30)
    assert bad.status_code == 400, bad.text


def _wait_lineage_of(url: str, project: str, params: dict) -> tuple[dict[str, dict], set]:
    """The server's lineage of ``params`` once it answers (its indexing follows the uploads)."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(f"{url}/api/v1/projects/{project}/lineage", params=params, timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            return _lineage_graph(response.json())
        time.sleep(0.2)


def test_table_versions_logged_behind_the_cursor_between_pages_are_listed(module_servers, tmp_path, monkeypatch):
    """Pages follow the readers' order (the primary's log, then each part's): a version the primary
    logs after the cursor moved on to a part's entries is in no later page, so a listing that
    followed the pages missed it (``tracklet.Api``'s ``table_versions``, a run table's ``:vN``
    resolved on a server); the last page's total says more were logged than listed, and the
    listing is made again: every version, once, in order."""
    import tracklet.client.table_versions as pager
    from test_table_versions import _read, _writers

    from tracklet.client.http import HttpClient

    server = module_servers(tmp_path / "server")
    root = tmp_path / "data"
    _writers(root, "behind", ["primary", "rank_1"], 3, server=server.url)
    _versions_when_indexed(server.url, "behind", "preds", 6)
    monkeypatch.setattr(pager, "PAGE", 4)
    http = HttpClient(server.url)
    asked: list[object] = []
    get_json = http.get_json

    def paged(url: str, **params: object) -> object:
        asked.append(params.get("cursor"))
        if len(asked) == 2:  # between the first page (the primary's 3, rank_1's first) and the next
            _writers(root, "behind", ["primary"], 2, first=3, server=server.url)
            _versions_when_indexed(server.url, "behind", "preds", 8)
        return get_json(url, **params)

    monkeypatch.setattr(http, "get_json", paged)
    try:
        listed, first = pager.table_version_pages(http, "p/behind", "preds")
    finally:
        http.close()
    local = [(step, n) for key, _, step, n in _read(root, "behind") if key == "preds"]
    assert len(local) == 8 and first == 0
    assert [(item["step"], item["version"]) for item in listed] == local
