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
from tracklet.errors import ArtifactNotFound
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
