"""``ReportStore`` (tracklet/reports/sql.py) on SQLite and a real PostgreSQL, in the server's
database as its migration makes it: concurrent saves on one parent (exactly one wins), versions
that can't be changed or removed even with SQL, view tokens kept hashed; and a data root's
reports.sqlite with the same rules. Run sets frozen on a time axis keep their steps."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from conftest import QUIET

import tracklet
from tracklet.errors import ReportConflict, ReportError, ReportNotFound
from tracklet.reports.runsets import panel_data
from tracklet.reports.document import parse
from tracklet.reports.service import open_local
from tracklet.reports.sql import ReportStore
from tracklet.reports.tables import report_versions
from tracklet.server.auth import Accounts
from tracklet.store import Store


@pytest.fixture
def server_reports(store_url, tmp_path):
    store = Store(store_url, root=tmp_path)
    Accounts(store)  # what a server opens: its migrations run (s0008_reports)
    yield ReportStore(store.engine)
    store.close()


def test_of_concurrent_saves_on_one_parent_exactly_one_wins(server_reports):
    report = server_reports.create("p", "R", "v1\n", author="a")
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def save(n: int) -> None:
        start.wait()
        try:
            server_reports.save("p", report["id"], f"edit {n}\n", parent=1, author=f"user{n}")
            outcomes.append("saved")
        except ReportConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["saved"]
    assert [v["version"] for v in server_reports.versions("p", report["id"])] == [1, 2]


def test_versions_are_append_only_even_with_sql(server_reports):
    report = server_reports.create("p", "R", "v1\n")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with server_reports.engine.begin() as connection:
            connection.execute(report_versions.update().values(markdown="rewritten"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with server_reports.engine.begin() as connection:
            connection.execute(report_versions.delete())
    assert server_reports.get("p", report["id"])["markdown"] == "v1\n"


def test_the_rules_in_a_data_root(tmp_path):
    reports = open_local(tmp_path)
    assert reports is open_local(tmp_path)  # one per file and process
    report = reports.create("p", None, "v1\n")
    assert report["title"] == "Untitled report" and report["note"] == "created"
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with reports.engine.begin() as connection:
            connection.execute(report_versions.delete())
    with pytest.raises(ReportError, match="one line"):
        reports.save("p", report["id"], "x", parent=1, title="two\nlines")
    with pytest.raises(ReportNotFound):
        reports.save("other", report["id"], "x", parent=1)  # a report is its project's
    with pytest.raises(ReportNotFound, match="no version 5"):
        reports.publish("p", report["id"], 5)
    token = reports.create_token("p", report["id"])["token"]
    assert reports.token_allows("p", report["id"], token)
    assert not reports.token_allows("other", report["id"], token)
    assert not reports.token_allows("p", report["id"], token[:-2] + "xx")
    assert not reports.token_allows("p", report["id"], "trv_nonsense")


def test_a_frozen_panel_on_a_time_axis_keeps_only_its_steps(tmp_path):
    root = tmp_path / "data"
    run = tracklet.init(project="p", id="a", dir=str(root), settings=QUIET)
    for step in range(10):
        run.log({"loss": float(step)})
    run.finish()
    store = Store(root=root)
    store.index()
    markdown = "```tracklet-panel\nkeys: [loss]\nx: relative_time\nruns:\n  frozen: {run_ids: [a], max_step: 4}\n```\n"
    answer = panel_data(store, parse(markdown).panel(0), "p", lambda project: True)
    (series,) = answer["history"]["series"]
    assert series["steps"] == [0, 1, 2, 3, 4] and series["values"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    denied = panel_data(store, parse(markdown).panel(0), "p", lambda project: False)
    assert denied["access"] == "denied" and denied["runs"] == []
    store.close()
