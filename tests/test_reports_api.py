"""``tracklet.Report`` and ``tracklet.Api().report(s)``: in a data root (reports.sqlite) and
against a real server process; versions, diff, revert, publish, freeze, view tokens."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import QUIET

import tracklet
from tracklet.errors import ReportConflict, ReportError, ReportNotFound


def _record(root: Path, project: str, run_id: str, steps: int = 10, lr: float = 0.1) -> None:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET, config={"lr": lr})
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()


def _build(**where) -> tracklet.Report:
    rep = tracklet.Report("p", title="LR sweep", **where)
    rep.add_text("# Loss\nThe higher rates diverge.")
    rep.add_panel({"keys": ["loss"], "x": "step", "smoothing": 0.5},
                  runs={"filter": "config.lr > 0.01", "sort": "-summary.loss", "limit": 5})
    return rep


def _exercise(rep: tracklet.Report, api: tracklet.Api, new_run) -> None:
    """The same story locally and on a server."""
    assert rep.id is None
    rep.save()
    assert rep.id is not None and (rep.version, rep.parent) == (1, None)
    assert [block["kind"] for block in rep.blocks] == ["text", "panel"] and rep.errors == {}

    read = api.report(rep.path)
    assert (read.title, read.version, read.markdown) == ("LR sweep", 1, rep.markdown)
    assert [(item["id"], item["title"]) for item in api.reports("p")] == [(rep.id, "LR sweep")]

    rep.add_text("Second thoughts.")
    rep.save()
    assert (rep.version, rep.parent) == (2, 1)
    read.add_text("A concurrent edit from version 1.")
    with pytest.raises(ReportConflict, match="v2"):
        read.save()
    assert "+Second thoughts.\n" in rep.diff(1, 2)
    rep.revert(1)
    assert rep.version == 3 and "Second thoughts" not in rep.markdown
    assert [v["version"] for v in rep.versions()] == [1, 2, 3]

    data = rep.panel_data(0)
    assert data["access"] == "ok" and [run["id"] for run in data["runs"]] == ["a"]
    rep.freeze()
    assert rep.version == 4 and rep.blocks[1]["runs"]["frozen"] == {"run_ids": ["a"], "max_step": 9}
    new_run()  # matches the filter
    assert {run["id"] for run in rep.panel_data(0, version=3)["runs"]} == {"a", "c"}
    assert [run["id"] for run in rep.panel_data(0)["runs"]] == ["a"]

    rep.publish()
    assert rep.published_version == 4
    rep.add_text("after publishing")
    with pytest.raises(ReportConflict, match="published"):
        rep.save()
    made = rep.create_token("team")
    assert made["token"].startswith("trv_")
    rep.revoke_token(made["token_id"])
    assert [token["revoked_at"] is not None for token in rep.tokens()] == [True]
    with pytest.raises(ReportNotFound):
        api.report(f"p/{rep.id + 100}")


def test_reports_in_a_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.delenv("TRACKLET_BASE_URL", raising=False)
    monkeypatch.setenv("TRACKLET_ACTOR", "ada")
    _record(root, "p", "a", lr=0.1)
    _record(root, "p", "b", lr=0.001)
    rep = _build(dir=root)
    api = tracklet.Api(root)
    assert api.reports("p") == [] and not (root / "reports.sqlite").exists()  # reading makes nothing
    with pytest.raises(ReportNotFound, match="no report 1"):
        api.report(1)
    with pytest.raises(ReportNotFound, match="none was saved"):
        api.report("p/1")
    assert not (root / "reports.sqlite").exists()
    _exercise(rep, api, lambda: _record(root, "p", "c", lr=0.5))
    assert rep.author == "ada"
    assert (root / "reports.sqlite").is_file()
    assert api.report(rep.id).id == rep.id  # locally an id alone names it
    api.close()


def test_reports_on_a_server(tmp_path, servers, monkeypatch):
    server_root = tmp_path / "srv"
    _record(server_root, "p", "a", lr=0.1)
    _record(server_root, "p", "b", lr=0.001)
    server = servers(server_root)
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    rep = _build()  # TRACKLET_BASE_URL: the server's
    api = tracklet.Api(base_url=server.url)

    def new_run() -> None:
        run = tracklet.init(project="p", id="c", dir=str(tmp_path / "client"), mode="online", config={"lr": 0.5},
                            settings={**QUIET, "base_url": server.url})
        for step in range(10):
            run.log({"loss": 1.0 / (step + 1)})
        run.finish()

    _exercise(rep, api, new_run)
    assert not (tmp_path / "client" / "reports.sqlite").exists()
    with pytest.raises(ReportNotFound, match="project/"):
        api.report(rep.id)  # a server's report is named with its project
    assert httpx.get(f"{server.url}/api/v1/projects/p/reports/{rep.id}").json()["published_version"] == 4
    # The CLI on the server's reports.
    from test_cli import invoke

    shown = invoke(tmp_path / "client", "report", "show", str(rep.id), "-p", "p", "--url", server.url)
    assert shown.exit_code == 0 and f"p/{rep.id}  v4 (latest v4, published v4)" in shown.output
    assert "published v4" in invoke(tmp_path / "client", "report", "ls", "p", "--url", server.url).output
    api.close()


def test_add_panel_refuses_a_bad_spec_naming_the_problem(tmp_path):
    rep = tracklet.Report("p", dir=tmp_path)
    with pytest.raises(ReportError, match="panel 0: unknown key 'colour'"):
        rep.add_panel({"keys": ["loss"], "colour": "red"})
    with pytest.raises(ReportError, match="runs.limit must be between 1 and 200"):
        rep.add_panel({"keys": "loss"}, runs={"limit": 1000})
    rep.add_panel({"keys": "loss"})  # one key as text is a list of one
    assert rep.markdown == "```tracklet-panel\nkeys: [loss]\n```\n"
    with pytest.raises(ReportError, match="save"):
        rep.freeze()
    # Hand-written Markdown with a bad panel saves; the panel says its error.
    rep.markdown += "```tracklet-panel\nkeys: [a]\nsmoothing: 3\n```\n"
    rep.save()
    assert rep.errors == {1: "smoothing must be at least 0 and less than 1; got 3"}
