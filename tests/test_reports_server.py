"""Reports over the server's API (tracklet/server/routes_reports.py), with keys and project roles,
on SQLite and a real PostgreSQL: create -> versions -> diff -> revert; a stale parent and a
published report are 409; freeze pins the runs (a new run changes nothing); view tokens read their
report only and a revoked one is 403; a panel of a project the viewer can't read is "denied" while
the others draw; bad panels say their error and the rest of the report renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QUIET
from fastapi.testclient import TestClient

import tracklet
from tracklet.reports.service import default_actor
from tracklet.server.app import create_app


def _record(root: Path, project: str, run_id: str, steps: int = 20, lr: float = 0.1) -> None:
    run = tracklet.init(project=project, id=run_id, dir=str(root), settings=QUIET, config={"lr": lr})
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps})
    run.finish()


def _panel(keys: str = "[loss]", runs: str = "") -> str:
    return f"```tracklet-panel\nkeys: {keys}\n{runs}```\n"


@pytest.fixture(scope="module")
def app(module_store, tmp_path_factory):
    """An app that needs keys over a data root with a run in project `secret`, shared by the module's
    tests; users `root` (the admin), `alice` and `bob`."""
    root = tmp_path_factory.mktemp("srv")
    _record(root, "secret", "s")
    app = create_app(root, store_url=module_store, automation_interval=60)
    accounts = app.state.tracklet.authorizer.accounts
    keys = {name: accounts.create_user(name, admin=name == "root").key for name in ("root", "alice", "bob")}
    with TestClient(app) as http:
        http.app_root = root  # type: ignore[attr-defined]
        http.keys = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}  # type: ignore[attr-defined]
        yield http
    app.state.tracklet.store.close()


_projects = iter(range(1_000_000))


@pytest.fixture
def server(app):
    """The module's app, with runs in a project of the test's own (``server.project``, its reports at
    ``server.base``): `a` and `b`; `root` has the admin's key, `alice` may read it only, `bob` write."""
    project = f"p{next(_projects)}"
    _record(app.app_root, project, "a", lr=0.1)
    _record(app.app_root, project, "b", lr=0.001)
    app.app.state.tracklet.indexer.index_all()
    accounts = app.app.state.tracklet.authorizer.accounts
    accounts.set_member(project, "alice", "read")
    accounts.set_member(project, "bob", "write")
    app.project = project  # type: ignore[attr-defined]
    app.base = f"/api/v1/projects/{project}/reports"  # type: ignore[attr-defined]
    return app


BASE = "/api/v1/projects/p/reports"  # tracklet ui's (a data root of its own)


def test_create_edit_versions_diff_revert_and_stale_parents(server):
    base = server.base
    admin = server.keys["root"]
    created = server.post(base, json={"title": "Findings", "markdown": "# Loss\n\n" + _panel()}, headers=admin)
    assert created.status_code == 200, created.text
    report = created.json()
    assert (report["version"], report["parent"], report["author"], report["title"]) == (1, None, "root", "Findings")
    assert [block["kind"] for block in report["blocks"]] == ["text", "panel"]
    assert report["blocks"][1]["spec"]["keys"] == ["loss"] and report["blocks"][1]["error"] is None
    url = f"{base}/{report['id']}"

    edited = server.put(url, json={"markdown": "# Loss, falling\n\n" + _panel("[loss, acc]"), "parent": 1},
                        headers=admin)
    assert edited.status_code == 200 and (edited.json()["version"], edited.json()["parent"]) == (2, 1)
    stale = server.put(url, json={"markdown": "lost edit", "parent": 1}, headers=admin)
    assert stale.status_code == 409 and "v2" in stale.json()["detail"]

    versions = server.get(f"{url}/versions", headers=admin).json()["versions"]
    assert [(v["version"], v["parent"], v["author"]) for v in versions] == [(1, None, "root"), (2, 1, "root")]
    diff = server.get(f"{url}/diff", params={"a": 1, "b": 2}, headers=admin).json()["diff"]
    assert "-# Loss\n" in diff and "+# Loss, falling\n" in diff and "+keys: [loss, acc]\n" in diff

    reverted = server.post(f"{url}/revert", json={"version": 1}, headers=admin).json()
    assert (reverted["version"], reverted["parent"]) == (3, 2)
    assert reverted["markdown"] == report["markdown"]
    assert server.get(url, params={"version": 2}, headers=admin).json()["markdown"].startswith("# Loss, falling")
    listed = server.get(base, headers=admin).json()["reports"]
    assert [(item["id"], item["version"], item["published_version"]) for item in listed] == [(report["id"], 3, None)]
    assert server.get(f"{base}/999", headers=admin).status_code == 404
    assert server.get(url, params={"version": 9}, headers=admin).status_code == 404
    assert server.get(f"/api/v1/projects/secret/reports/{report['id']}", headers=admin).status_code == 404


def test_a_published_report_refuses_edits(server):
    base = server.base
    admin = server.keys["root"]
    report = server.post(base, json={"title": "R", "markdown": "v1\n"}, headers=admin).json()
    url = f"{base}/{report['id']}"
    server.put(url, json={"markdown": "v2\n", "parent": 1}, headers=admin)
    published = server.post(f"{url}/publish", json={"version": 1}, headers=admin)
    assert published.status_code == 200 and published.json()["published_version"] == 1
    assert server.get(url, headers=admin).json()["markdown"] == "v1\n"  # what was published is what shows
    for method, path, body in (("PUT", url, {"markdown": "v3\n", "parent": 2}), ("POST", f"{url}/revert", {"version": 1}),
                               ("POST", f"{url}/freeze", None), ("POST", f"{url}/publish", {"version": 2})):
        refused = server.request(method, path, json=body, headers=admin)
        assert refused.status_code == 409, (path, refused.text)
        assert "published" in refused.json()["detail"]
    assert [v["version"] for v in server.get(f"{url}/versions", headers=admin).json()["versions"]] == [1, 2]


def test_a_frozen_run_set_ignores_a_new_run_and_new_steps(server):
    base, project = server.base, server.project
    admin = server.keys["root"]
    markdown = _panel(runs="runs:\n  filter: \"config.lr > 0.01\"\n")
    report = server.post(base, json={"title": "R", "markdown": markdown}, headers=admin).json()
    url = f"{base}/{report['id']}"
    live = server.get(f"{url}/panels/0/data", headers=admin).json()
    assert live["access"] == "ok" and live["error"] is None
    (only,) = live["runs"]
    assert (only["id"], only["project"], sorted(only)) == ("a", project, ["id", "name", "project"]) and only["name"]
    assert {series["run"] for series in live["history"]["series"]} == {"a"}
    assert live["history"]["series"][0]["values"] == [1.0 / (step + 1) for step in range(20)]

    frozen = server.post(f"{url}/freeze", headers=admin).json()
    assert frozen["version"] == 2 and frozen["blocks"][0]["runs"]["frozen"] == {"run_ids": ["a"], "max_step": 19}
    assert "frozen:" in frozen["markdown"]

    _record(server.app_root, project, "c", steps=40, lr=0.5)  # matches the filter, and logs past step 19
    server.app.state.tracklet.indexer.index_all()
    assert [run["id"] for run in server.get(f"{url}/panels/0/data", params={"version": 1}, headers=admin)
            .json()["runs"]] == ["c", "a"]  # the live version sees it
    pinned = server.get(f"{url}/panels/0/data", headers=admin).json()
    assert [run["id"] for run in pinned["runs"]] == ["a"]
    assert len(pinned["history"]["series"][0]["values"]) == 20


def test_view_tokens_read_their_report_only_and_a_revoked_one_is_refused(server):
    base = server.base
    admin = server.keys["root"]
    report = server.post(base, json={"title": "R", "markdown": "# shared\n" + _panel()}, headers=admin).json()
    other = server.post(base, json={"title": "other", "markdown": "x\n"}, headers=admin).json()
    url = f"{base}/{report['id']}"
    made = server.post(f"{url}/tokens", json={"label": "reviewers"}, headers=admin).json()
    token = made["token"]
    assert token.startswith("trv_")
    assert server.get(url).status_code == 401  # no key, no token
    assert server.get(url, params={"token": token}).json()["title"] == "R"
    assert server.get(url, headers={"X-Tracklet-Report-Token": token}).status_code == 200
    data = server.get(f"{url}/panels/0/data", params={"token": token}).json()
    assert data["access"] == "ok" and {run["id"] for run in data["runs"]} == {"a", "b"}
    assert server.get(f"{url}/versions", params={"token": token}).status_code == 200
    # Not another report, not a write, not the token list.
    assert server.get(f"{base}/{other['id']}", params={"token": token}).status_code == 403
    assert server.put(url, params={"token": token}, json={"markdown": "x", "parent": 1}).status_code == 403
    assert server.get(f"{url}/tokens", params={"token": token}).status_code == 403
    for other_id in (2**64, -1, "x"):  # ids no report has, some past 64 bits: refused, never a 500
        assert server.get(f"{base}/{other_id}", params={"token": token}).status_code in (403, 422), other_id
    listed = server.get(f"{url}/tokens", headers=admin).json()["tokens"]
    assert [(item["token_id"], item["label"], item["revoked_at"]) for item in listed] == [(made["token_id"], "reviewers", None)]
    assert token.split("_", 2)[2] not in str(listed)  # the secret (urlsafe: it may hold "_" itself)

    assert server.delete(f"{url}/tokens/{made['token_id']}", headers=admin).status_code == 200
    revoked = server.get(url, params={"token": token})
    assert revoked.status_code == 403 and "revoked" in revoked.json()["detail"]
    assert server.get(f"{url}/panels/0/data", params={"token": token}).status_code == 403
    # Hashed at rest: the secret is in no column.
    import sqlalchemy as sa

    from tracklet.reports.tables import report_tokens
    with server.app.state.tracklet.store.engine.connect() as connection:
        stored = connection.execute(sa.select(report_tokens)).all()
    assert token.split("_", 2)[2] not in str(stored)


def test_a_panel_of_a_project_the_viewer_cannot_read_is_denied_and_the_others_draw(server):
    base = server.base
    admin, alice = server.keys["root"], server.keys["alice"]
    markdown = ("# Mixed\n" + _panel() + _panel(runs="runs:\n  project: secret\n")
                + _panel("[loss]", runs="runs:\n  project: nowhere-at-all\n"))
    report = server.post(base, json={"title": "R", "markdown": markdown}, headers=admin).json()
    url = f"{base}/{report['id']}"
    assert server.get(url, headers=alice).status_code == 200
    mine = server.get(f"{url}/panels/0/data", headers=alice).json()
    assert mine["access"] == "ok" and mine["history"]["series"]
    denied = server.get(f"{url}/panels/1/data", headers=alice)
    assert denied.status_code == 200
    assert denied.json() == {"access": "denied", "error": "no access to project 'secret'", "runs": [],
                             "history": {"series": []}}
    assert server.get(f"{url}/panels/1/data", headers=admin).json()["access"] == "ok"  # the admin reads it
    nowhere = server.get(f"{url}/panels/2/data", headers=alice).json()  # a project not there holds nothing
    assert (nowhere["access"], nowhere["error"]) == ("ok", "the run set matches no runs in project 'nowhere-at-all'")
    # A token reads its report's project only.
    token = server.post(f"{url}/tokens", headers=admin).json()["token"]
    assert server.get(f"{url}/panels/1/data", params={"token": token}).json()["access"] == "denied"
    assert server.get(f"{url}/panels/0/data", params={"token": token}).json()["access"] == "ok"
    # Read-only users can't edit; a writer of `p` can't freeze what they can't read.
    assert server.put(url, json={"markdown": "x", "parent": 1}, headers=alice).status_code == 403
    refused = server.post(f"{url}/freeze", headers=server.keys["bob"])
    assert refused.status_code == 403 and "project 'secret'" in refused.json()["detail"]
    assert [v["version"] for v in server.get(f"{url}/versions", headers=alice).json()["versions"]] == [1]
    assert server.get(f"{url}/panels/3/data", headers=alice).status_code == 404


def test_bad_panels_say_their_error_and_the_rest_renders(server):
    base, project = server.base, server.project
    admin = server.keys["root"]
    markdown = ("intro\n" + _panel() + "```tracklet-panel\nkeys: [loss]\nbogus: 1\nsmoothing: 1.5\n```\n"
                + _panel(runs="runs:\n  filter: \"config.lr >\"\n") + _panel("[nothing/logged]")
                + _panel(runs="runs:\n  filter: \"config.lr > 100\"\n") + "outro\n")
    preview = server.post(f"{base}/preview", json={"markdown": markdown}, headers=server.keys["alice"])
    assert preview.status_code == 200
    errors = [block["error"] for block in preview.json()["blocks"] if block["kind"] == "panel"]
    assert errors[0] is None
    assert "unknown key 'bogus'" in errors[1] and "smoothing must be at least 0 and less than 1" in errors[1]
    assert errors[2].startswith("runs.filter:")
    assert server.get(base, headers=admin).json() == {"reports": []}  # a preview saves nothing

    report = server.post(base, json={"title": "R", "markdown": markdown}, headers=admin).json()
    url = f"{base}/{report['id']}"
    answers = [server.get(f"{url}/panels/{index}/data", headers=admin).json() for index in range(5)]
    assert answers[0]["error"] is None and answers[0]["history"]["series"]
    assert "unknown key 'bogus'" in answers[1]["error"] and not answers[1]["runs"]
    assert answers[2]["error"].startswith("runs.filter:")
    assert answers[3]["error"] is None and answers[3]["runs"] and answers[3]["history"]["series"] == []
    assert answers[4]["error"] == f"the run set matches no runs in project '{project}'"
    assert {answer["access"] for answer in answers} == {"ok"}


def test_integer_parameters_are_bounded(server):
    base = server.base
    admin = server.keys["root"]
    for path in (f"{base}/{2**63}", f"{base}/0", f"{base}/1/panels/{2**63}/data", f"{base}/1?version={2**40}"):
        assert server.get(path, headers=admin).status_code == 422, path


def test_a_grouped_run_set_names_each_runs_group(server):
    base = server.base
    admin = server.keys["root"]
    report = server.post(base, json={"markdown": _panel(runs="runs:\n  group: config.lr\n  sort: config.lr\n")},
                         headers=admin).json()
    data = server.get(f"{base}/{report['id']}/panels/0/data", headers=admin).json()
    assert [(run["id"], run["group"]) for run in data["runs"]] == [("b", 0.001), ("a", 0.1)]
    assert report["title"] == "Untitled report"


def test_tracklet_ui_serves_the_data_roots_reports(tmp_path):
    """`tracklet ui`'s app (a data root, no keys): its reports.sqlite; nothing made by reading."""
    root = tmp_path / "data"
    _record(root, "p", "a")
    app = create_app(root, auth=False, shared_root=True)
    with TestClient(app) as http:
        assert http.get(BASE).json() == {"reports": []}
        assert http.get(f"{BASE}/1").status_code == 404
        assert not (root / "reports.sqlite").exists()
        made = http.post(BASE, json={"title": "From the dashboard", "markdown": "x\n"})
        assert made.json()["author"] == default_actor()  # the user who runs tracklet ui, not "dev"
        rep = tracklet.Report("p", title="Local", dir=root)
        rep.add_panel({"keys": ["loss"]}).save()
        assert [item["title"] for item in http.get(BASE).json()["reports"]] == ["Local", "From the dashboard"]
        data = http.get(f"{BASE}/{rep.id}/panels/0/data").json()
        assert data["access"] == "ok" and [run["id"] for run in data["runs"]] == ["a"]
    app.state.tracklet.store.close()


def test_every_report_refusal_answers_its_status_with_the_reason(server):
    """One app-level handler maps ReportError to 404 / 409 / 400 for every route (no route of its own)."""
    base, project = server.base, server.project
    admin = server.keys["root"]
    too_many = _panel() * 201
    for method, path, body in (("POST", base, {"markdown": too_many}), ("POST", f"{base}/preview", {"markdown": too_many})):
        refused = server.request(method, path, json=body, headers=admin)
        assert refused.status_code == 400 and "200 panels" in refused.json()["detail"], refused.text
    missing = f"{base}/999"
    for method, path, body in (("GET", missing, None), ("PUT", missing, {"markdown": "x", "parent": 1}),
                               ("GET", f"{missing}/versions", None), ("GET", f"{missing}/diff?a=1&b=1", None),
                               ("POST", f"{missing}/revert", {"version": 1}), ("POST", f"{missing}/publish", {"version": 1}),
                               ("POST", f"{missing}/freeze", None), ("GET", f"{missing}/panels/0/data", None),
                               ("POST", f"{missing}/tokens", {}), ("GET", f"{missing}/tokens", None),
                               ("DELETE", f"{missing}/tokens/abc", None)):
        refused = server.request(method, path, json=body, headers=admin)
        assert refused.status_code == 404 and f"no report 999 in project '{project}'" in refused.json()["detail"], (path, refused.text)
    report = server.post(base, json={"markdown": "x\n"}, headers=admin).json()
    stale = server.put(f"{base}/{report['id']}", json={"markdown": "y\n", "parent": 2}, headers=admin)
    assert stale.status_code == 409 and "is at v1, not v2" in stale.json()["detail"]


def _lines(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_every_panels_data_in_one_streamed_answer_cached_until_its_runs_log_more(server):
    """GET .../data: a line per panel (in document order) equal to what panels/{i}/data answers; a
    `known` stamp answers `data: null` until one of the panel's runs logs more (or a run joins a
    live run set); an answer that draws nothing has no stamp; a frozen panel's data stays pinned."""
    base, project = server.base, server.project
    admin = server.keys["root"]
    markdown = (_panel(runs="runs:\n  sort: run_id\n") + _panel("[acc]", "runs:\n  sort: run_id\n")
                + _panel(runs="runs:\n  project: secret\n") + _panel("[loss]", "runs:\n  sort: run_id\n  frozen: "
                                                                      "{run_ids: [a], max_step: 10}\n")
                + _panel(runs="runs:\n  filter: \"config.lr > 100\"\n"))
    report = server.post(base, json={"markdown": markdown}, headers=server.keys["bob"]).json()
    url = f"{base}/{report['id']}"
    lines = _lines(server.get(f"{url}/data", params={"buckets": 0}, headers=server.keys["alice"]))
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    for line in lines:
        alone = server.get(f"{url}/panels/{line['index']}/data", params={"buckets": 0}, headers=server.keys["alice"])
        assert line["data"] == alone.json(), line["index"]
    assert lines[2]["data"]["access"] == "denied" and lines[2]["stamp"] is None  # alice may not read `secret`
    assert lines[4]["data"]["error"] and lines[4]["stamp"] is None
    assert [run["id"] for run in lines[0]["data"]["runs"]] == ["a", "b"]
    assert len(lines[3]["data"]["history"]["series"][0]["values"]) == 11
    assert lines[0]["stamp"] == lines[1]["stamp"] != lines[3]["stamp"]  # the same runs, as far as logged

    known = [f"{line['index']}:{line['stamp']}" for line in lines if line["stamp"]]
    again = _lines(server.get(f"{url}/data", params={"buckets": 0, "known": known}, headers=admin))
    assert [line["data"] for line in again if line["index"] in (0, 1, 3)] == [None, None, None]
    picked = _lines(server.get(f"{url}/data", params={"panels": [3, 0], "buckets": [5, 0]}, headers=admin))
    assert [line["index"] for line in picked] == [3, 0]
    assert len(picked[0]["data"]["history"]["series"][0]["x"]) <= 5 < len(picked[1]["data"]["history"]["series"][0]["x"])

    _record(server.app_root, project, "c", steps=40, lr=0.5)  # a new run: the live sets gain it; the frozen one doesn't
    server.app.state.tracklet.indexer.index_all()
    after = _lines(server.get(f"{url}/data", params={"buckets": 0, "known": known}, headers=admin))
    assert [run["id"] for run in after[0]["data"]["runs"]] == ["a", "b", "c"]
    assert after[0]["stamp"] != lines[0]["stamp"]
    assert after[3]["data"] is None  # run a logged nothing more
    refused = server.get(f"{url}/data", params={"panels": [0, 1], "buckets": [1, 2, 3]}, headers=admin)
    assert refused.status_code == 400 and "one per panel" in refused.json()["detail"]
    assert server.get(f"{url}/data", params={"panels": [9]}, headers=admin).status_code == 404
    assert server.get(f"{base}/999/data", headers=admin).status_code == 404


def test_publishing_emits_report_published_to_a_webhook_once(server):
    """`report.published` goes through the automations path (outbox, worker, signed webhook) to a
    real receiver; a refused publish (already published) emits nothing."""
    base, project = server.base, server.project
    from test_automations import SECRET, Receiver, wait_for

    admin = server.keys["root"]
    hook = Receiver()
    made = None
    try:
        rule = {"name": "reports", "event": "report.published", "url": f"{hook.url}/published", "secret": SECRET}
        answer = server.post("/api/v1/automations", json=rule, headers=admin)
        assert answer.status_code == 201
        made = answer.json()
        report = server.post(base, json={"title": "Q3 results", "markdown": "v1\n"}, headers=server.keys["bob"]).json()
        url = f"{base}/{report['id']}"
        server.put(url, json={"markdown": "v2\n", "parent": 1}, headers=admin)
        assert server.post(f"{url}/publish", json={"version": 2}, headers=server.keys["bob"]).status_code == 200
        assert server.post(f"{url}/publish", json={"version": 1}, headers=admin).status_code == 409
        (delivered,) = wait_for(lambda: hook.delivered("/published"), "the report.published webhook")
        event = delivered["body"]["event"]
        assert delivered["verified"] and delivered["event"] == "report.published"
        assert event["subject"] == f"{project}/reports/{report['id']}:v2"
        assert event["payload"] == {"id": report["id"], "project": project, "title": "Q3 results", "version": 2,
                                    "actor": "bob"}
        import sqlalchemy as sa

        from tracklet.server.schema import event_outbox

        with server.app.state.tracklet.store.engine.connect() as connection:  # the refused publish emitted nothing
            kinds = connection.execute(sa.select(event_outbox.c.kind).where(
                event_outbox.c.subject.startswith(f"{project}/reports/"))).scalars().all()
        assert kinds.count("report.published") == 1
    finally:
        if made is not None:  # the module's app is shared: no other test's publish goes to this receiver
            assert server.delete(f"/api/v1/automations/{made['id']}", headers=admin).status_code == 204
        hook.close()


def test_deleting_a_report_needs_write_and_admin_once_published_and_its_id_is_never_reused(server):
    """DELETE: write on the project (admin for a published report); the report leaves listings and
    routes, its view tokens stop working, its versions stay (append-only) and a new report never
    takes its id (SQLite would reuse the highest rowid)."""
    base, project = server.base, server.project
    admin, bob, alice = server.keys["root"], server.keys["bob"], server.keys["alice"]
    draft = server.post(base, json={"title": "Draft", "markdown": "v1\n"}, headers=bob).json()
    final = server.post(base, json={"title": "Final", "markdown": _panel()}, headers=bob).json()
    token = server.post(f"{base}/{final['id']}/tokens", json={}, headers=bob).json()["token"]
    assert server.get(f"{base}/{final['id']}", params={"token": token}).status_code == 200
    server.post(f"{base}/{final['id']}/publish", json={"version": 1}, headers=bob)

    assert server.delete(f"{base}/{draft['id']}", headers=alice).status_code == 403  # read only
    assert server.delete(f"{base}/{draft['id']}", params={"token": token}).status_code == 403
    refused = server.delete(f"{base}/{final['id']}", headers=bob)  # write, but it is published
    assert refused.status_code == 403 and f"only an admin of project '{project}'" in refused.json()["detail"]
    assert server.get(f"{base}/{final['id']}", headers=bob).status_code == 200

    gone = server.delete(f"{base}/{draft['id']}", headers=bob)
    assert gone.status_code == 200 and gone.json() == {"id": draft["id"], "project": project, "title": "Draft",
                                                       "version": 1, "published_version": None}
    deleted = server.delete(f"{base}/{final['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["published_version"] == 1
    assert server.get(base, headers=admin).json() == {"reports": []}
    for path in ("", "/versions", "/panels/0/data", "/data"):
        assert server.get(f"{base}/{final['id']}{path}", headers=admin).status_code == 404, path
    assert server.get(f"{base}/{final['id']}", params={"token": token}).status_code == 403
    assert server.delete(f"{base}/{final['id']}", headers=admin).status_code == 404

    import sqlalchemy as sa

    from tracklet.reports.tables import report_versions

    with server.app.state.tracklet.store.engine.connect() as connection:  # the versions stay
        kept = connection.execute(sa.select(report_versions.c.report_id).where(
            report_versions.c.report_id.in_([draft["id"], final["id"]]))).scalars().all()
    assert sorted(kept) == sorted([draft["id"], final["id"]])
    fresh = server.post(base, json={"title": "Next", "markdown": "x\n"}, headers=bob)
    assert fresh.status_code == 200 and fresh.json()["id"] not in (draft["id"], final["id"])
    assert server.get(f"{base}/{fresh.json()['id']}/versions", headers=bob).json()["versions"][0]["title"] == "Next"


def test_the_export_route_answers_the_clis_file_as_the_caller_may_read_it(server):
    """`GET .../export` is `tracklet report export` on the server: the offline HTML embeds each
    panel's data as this caller may read it (a reader: the secret project's panel denied; an admin:
    drawn; a view token: its report's project only), as an attachment named after the title."""
    base = server.base
    from tracklet.reports.export import SNAPSHOT_ID, decode_snapshot

    admin, alice = server.keys["root"], server.keys["alice"]
    markdown = "# Mixed\n" + _panel() + _panel(runs="runs:\n  project: secret\n")
    report = server.post(base, json={"title": "Loss / study", "markdown": markdown}, headers=admin).json()
    url = f"{base}/{report['id']}/export"
    token = server.post(f"{base}/{report['id']}/tokens", headers=admin).json()["token"]

    def panels(response) -> dict:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-disposition"] == 'attachment; filename="Loss_study.html"'
        payload = response.text.split(f'id="{SNAPSHOT_ID}">', 1)[1].split("</script>", 1)[0]
        snapshot = decode_snapshot(payload)
        assert snapshot["report"]["title"] == "Loss / study"
        return {index: data["access"] for index, data in snapshot["panels"].items()}

    assert panels(server.get(url, params={"format": "html"}, headers=admin)) == {"0": "ok", "1": "ok"}
    assert panels(server.get(url, params={"format": "html"}, headers=alice)) == {"0": "ok", "1": "denied"}
    assert panels(server.get(url, params={"token": token})) == {"0": "ok", "1": "denied"}  # html: the default
    assert server.get(url).status_code == 401  # no key, no token
    assert server.get(url, params={"format": "docx"}, headers=admin).status_code in (400, 422)
    assert server.get(f"{base}/999/export", headers=admin).status_code == 404


def test_exporting_a_report_that_is_not_there_starts_no_browser(server, monkeypatch):
    """A 404 (a missing report or version) is answered before Chromium would start: asking for
    PDFs of made-up ids costs the server a query, not a browser each."""
    base = server.base
    import tracklet.reports.export as export

    started = []
    monkeypatch.setattr(export, "chromium", lambda: started.append(1) or (_ for _ in ()).throw(AssertionError))
    admin = server.keys["root"]
    report = server.post(base, json={"title": "R", "markdown": _panel()}, headers=admin).json()
    for fmt in ("pdf", "png", "md"):
        assert server.get(f"{base}/{report['id'] + 1}/export", params={"format": fmt}, headers=admin).status_code == 404
        assert server.get(f"{base}/{report['id']}/export", params={"format": fmt, "version": 9},
                          headers=admin).status_code == 404
    assert started == []
