"""Reports in the dashboard and their exports, in a real headless Chromium (test_dashboard.py's
browser and page fixtures) against real `tracklet server` processes over runs logged by tracklet.

Charts are read through `window.__tracklet` (each panel's data as drawn, page coordinates of a data
point) and hovered with the real mouse; the exported files are opened with networking off (every
request aborted and counted); the PDF's pages are rasterised with `pdftoppm` and their pixels read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import serverproc
from conftest import QUIET, REPO
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, chart, loss, page, probe, start_ui  # noqa: F401

import tracklet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

PDFTOPPM = shutil.which("pdftoppm")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CHROMIUM": CHROMIUM}


def panel(keys: str, extra: str = "") -> str:
    return f"```tracklet-panel\nkeys: {keys}\n{extra}```\n"


def record_cmp(root: Path, project: str = "cmp", server_url: str | None = None) -> None:
    """Runs r0, r1, r2 of ``project`` (names alpha, beta, gamma; lr 1, 0.1, 0.01): 40 steps of
    `train/loss` = loss(i, step) and `eval/acc`, under the data root ``root``; with ``server_url``
    online runs, sent to that server."""
    online = {"mode": "online"} if server_url else {}
    settings = {**QUIET, "base_url": server_url} if server_url else QUIET
    for index, name in enumerate(["alpha", "beta", "gamma"]):
        run = tracklet.init(project=project, id=f"r{index}", name=name, dir=str(root), config={"lr": 10.0 ** -index},
                            settings=settings, **online)
        for step in range(40):
            run.log({"train/loss": loss(index, step), "eval/acc": step / 40})
        run.finish()


@pytest.fixture
def runs_root(tmp_path):
    """A data root of the test's own: project `cmp` (record_cmp's runs); project `secret`: run s0."""
    root = tmp_path / "srv"
    record_cmp(root)
    run = tracklet.init(project="secret", id="s0", dir=str(root), settings=QUIET)
    for step in range(10):
        run.log({"train/loss": 100.0 + step})
    run.finish()
    return root


@pytest.fixture(scope="module")
def shared_server(module_servers, tmp_path_factory) -> serverproc.Server:
    """One `tracklet server --dev` the module's tests share: each test's runs and reports are in a
    project of its own (``cmp``), so the tests stay independent in any order."""
    return module_servers(tmp_path_factory.mktemp("shared") / "srv", dev=True)


_projects = iter(range(1_000_000))


def own_project(prefix: str = "cmp") -> str:
    """A project name no other test of the module uses."""
    return f"{prefix}{next(_projects)}"


@pytest.fixture
def cmp(shared_server, tmp_path) -> tuple[serverproc.Server, str]:
    """The shared server and a project of the test's own holding record_cmp's runs (logged online)."""
    project = own_project()
    record_cmp(tmp_path / "client", project, server_url=shared_server.url)
    return shared_server, project


def create(url: str, markdown: str, title: str = "Findings", headers: dict | None = None, project: str = "cmp") -> dict:
    made = httpx.post(f"{url}/api/v1/projects/{project}/reports", json={"title": title, "markdown": markdown},
                      headers=headers or {}, timeout=30)
    assert made.status_code == 200, made.text
    return made.json()


def wait_report_chart(tab, chart_id: str, runs: int, loads: int = 1) -> dict:
    tab.wait_for_function(
        "([id, runs, loads]) => { const c = window.__tracklet.chart(id); "
        "return c && c.loads >= loads && c.runs.length === runs }", arg=[chart_id, runs, loads])
    return chart(tab, chart_id)


def hover_values(tab, chart_id: str, x: float, y: float) -> list:
    point = tab.evaluate("([id, x, y]) => window.__tracklet.chart(id).pagePoint(x, y)", [chart_id, x, y])
    tab.mouse.move(point["x"], point["y"])
    selector = f".panel[data-key='{chart_id}'] .tooltip:not([hidden])"
    tab.wait_for_selector(selector)
    return tab.eval_on_selector_all(f".panel[data-key='{chart_id}'] .tip-row",
                                    "rows => rows.map(r => [r.dataset.run, r.dataset.step, Number(r.dataset.value)])")


MARKDOWN = ("# Loss study\n\nThe **loss** of three runs. <script>window.__pwned = 1</script>"
            "<img src=x onerror=\"window.__pwned = 2\"> [bad link](javascript:window.__pwned=3)\n\n"
            + panel("[train/loss]", "title: Training loss\nruns:\n  sort: run_id\n")
            + "\n## Accuracy\n\n"
            + panel("[eval/acc]", "size: s\nruns:\n  filter: \"config.lr < 0.5\"\n  sort: run_id\n"))


def test_report_page_renders_sanitised_markdown_and_live_panels_with_exact_hover_values(cmp, page):  # noqa: F811
    server, project = cmp
    report = create(server.url, MARKDOWN, project=project)
    page.goto(f"{server.url}/projects/{project}/reports")
    page.click(f".reports-list tr[data-report='{report['id']}'] a")
    page.wait_for_selector(".report-body h1:text('Loss study')")

    drawn = wait_report_chart(page, "report:0", runs=3)
    assert [r["run"] for r in drawn["runs"]] == ["r0", "r1", "r2"]
    for series, index in zip(drawn["runs"], range(3)):
        assert series["exact"] and series["x"] == list(range(40))
        assert series["line"] == [loss(index, step) for step in range(40)]
    assert hover_values(page, "report:0", 17, 3) == [["r0", "17", loss(0, 17)], ["r1", "17", loss(1, 17)],
                                                     ["r2", "17", loss(2, 17)]]
    assert page.locator(".report-panel[data-index='0'] .legend-item").all_text_contents() == ["alpha", "beta", "gamma"]
    assert [r["run"] for r in wait_report_chart(page, "report:1", runs=2)["runs"]] == ["r1", "r2"]  # its filter
    assert page.text_content(".report-panel[data-index='0'] h3") == "Training loss"

    # The Markdown is rendered, its script and handlers are not: nothing ran, no javascript: link.
    assert page.text_content(".report-text strong") == "loss"
    assert page.evaluate("() => window.__pwned") is None
    assert page.eval_on_selector_all(".report-text script, .report-text [onerror]", "els => els.length") == 0
    assert all(not (href or "").startswith("javascript:")
               for href in page.eval_on_selector_all(".report-text a", "links => links.map(a => a.getAttribute('href'))"))
    assert probe(page, "report")["painted"]
    # The page read its panels as binary columns (float64 values: the hover values above are exact).
    asked = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/data?'))")
    assert asked and all("format=columns" in name for name in asked)


def test_a_token_viewer_sees_no_access_and_error_cards_while_the_other_panels_draw(servers, runs_root, page,  # noqa: F811
                                                                                   allowed_errors):  # noqa: F811
    allowed_errors.append("status of 403")  # the revoked token, below
    made = serverproc.cli("admin", "--dir", str(runs_root), "create-user", "root", "--admin", env=ENV, timeout=60)
    assert made.returncode == 0, made.stderr
    admin = {"Authorization": f"Bearer {made.stdout.strip()}"}
    server = servers(runs_root, dev=False)
    markdown = ("Mixed panels\n\n" + panel("[train/loss]") + panel("[train/loss]", "runs:\n  project: secret\n")
                + panel("[train/loss]", "colour: red\n") + panel("[train/loss]", "runs:\n  filter: \"config.lr > 100\"\n")
                + panel("[eval/acc]", "runs:\n  sort: run_id\n"))
    report = create(server.url, markdown, headers=admin)
    url = f"{server.url}/api/v1/projects/cmp/reports/{report['id']}"
    token = httpx.post(f"{url}/tokens", headers=admin, json={}, timeout=30).json()

    page.goto(f"{server.url}/projects/cmp/reports/{report['id']}?token={token['token']}")
    page.wait_for_selector(".report-body[data-painted]")
    states = {p["index"]: (p["state"], p["reason"]) for p in probe(page, "report")["panels"]}
    assert states[0][0] == "drawn" and states[4][0] == "drawn"
    assert states[1] == ("denied", "No access: you may not read the runs of this panel (project secret).")
    assert states[2][0] == "error" and "colour" in states[2][1]
    assert states[3] == ("error", "the run set matches no runs in project 'cmp'")
    assert page.text_content(".report-panel[data-index='1'] .card-denied .reason").startswith("No access")
    assert "colour" in page.text_content(".report-panel[data-index='2'] .card-error .reason")
    assert len(wait_report_chart(page, "report:0", runs=3)["runs"]) == 3
    assert [r["run"] for r in wait_report_chart(page, "report:4", runs=3)["runs"]] == ["r0", "r1", "r2"]
    assert page.locator("a:text('Edit')").count() == 0  # a token only reads

    httpx.delete(f"{url}/tokens/{token['token_id']}", headers=admin, timeout=30).raise_for_status()
    page.reload()
    page.wait_for_selector("p.error")
    assert "HTTP 403" in page.text_content("p.error")


def test_editor_previews_live_saves_versions_diffs_freezes_reverts_and_publishes(cmp, page):  # noqa: F811
    server, project = cmp
    page.goto(f"{server.url}/projects/{project}/reports")
    page.fill("input.new-report-title", "Draft")
    page.click("form.new-report button")
    page.wait_for_url("**/reports/*/edit")
    page.wait_for_selector(".report-versions li[data-version='1']")
    first = page.input_value("textarea.report-markdown")
    assert first.startswith("# Draft")

    page.fill("textarea.report-markdown", first + "\nSome *findings*.\n\n" + panel("[train/loss]", "runs:\n  sort: run_id\n"))
    drawn = wait_report_chart(page, "preview:0", runs=3)  # the preview draws the unsaved panel
    assert drawn["runs"][1]["line"] == [loss(1, step) for step in range(40)]
    page.wait_for_selector(".report-preview em:text('findings')")
    assert "unsaved changes" in page.text_content(".editor-status")

    page.click("button.save")
    page.wait_for_selector(".report-versions li[data-version='2']")
    assert page.text_content(".editor-status").startswith("version 2")
    page.select_option(".report-versions select[name='a']", "1")
    page.select_option(".report-versions select[name='b']", "2")
    page.click("button.diff")
    page.wait_for_selector(".report-diff:not([hidden]) .add")
    added = page.locator(".report-diff .add").all_text_contents()
    assert any("```tracklet-panel" in line for line in added) and any("findings" in line for line in added)

    page.click("button.freeze")  # pins the panel's runs and max step, as version 3
    page.wait_for_selector(".report-versions li[data-version='3']")
    frozen = page.input_value("textarea.report-markdown")
    assert "frozen: {" in frozen and "max_step: 39" in frozen and all(run in frozen for run in ("r0", "r1", "r2"))
    assert len(wait_report_chart(page, "preview:0", runs=3)["runs"]) == 3

    page.click(".report-versions li[data-version='1'] button.revert")
    page.wait_for_selector(".report-versions li[data-version='4']")
    assert page.input_value("textarea.report-markdown") == first
    page.click("button.publish")
    page.wait_for_function("() => document.querySelector('button.save').disabled")
    assert "published: version 4" in page.text_content(".editor-status")
    saved = httpx.get(f"{server.url}/api/v1/projects/{project}/reports", timeout=30).json()["reports"]
    assert [(r["title"], r["version"], r["published_version"]) for r in saved] == [("Draft", 4, 4)]


def test_tracklet_ui_writes_reports_into_the_data_root(runs_root, page):  # noqa: F811
    """Over `tracklet ui` (its token, then its cookie) the editor saves into the data root's reports."""
    ui, url, token = start_ui(runs_root)
    try:
        page.goto(f"{url}projects/cmp/reports?token={token}")
        page.fill("input.new-report-title", "Local notes")
        page.click("form.new-report button")
        page.wait_for_url("**/reports/*/edit")
        page.fill("textarea.report-markdown", "# Local notes\n\n" + panel("[eval/acc]", "runs:\n  sort: run_id\n"))
        assert len(wait_report_chart(page, "preview:0", runs=3)["runs"]) == 3
        page.click("button.save")
        page.wait_for_selector(".report-versions li[data-version='2']")
    finally:
        ui.terminate()
        ui.wait(timeout=10)
    from tracklet.reports.service import open_local

    (saved,) = open_local(runs_root, create=False).list_reports("cmp")
    assert (saved["title"], saved["version"]) == ("Local notes", 2)


def test_add_to_report_appends_the_workspace_panel_with_the_selected_runs(cmp, page):  # noqa: F811
    server, project = cmp
    existing = create(server.url, "# Collected\n", project=project)
    page.goto(f"{server.url}/projects/{project}?sel=r0,r2&smooth=0.5&log=train%2Floss")
    page.wait_for_function("() => { const c = window.__tracklet.chart('train/loss'); return c && c.runs.length === 2 }")
    page.click(".panel[data-key='train/loss'] button.add-to-report")
    page.wait_for_selector("dialog.add-report-dialog[open]")
    page.select_option("dialog select[name='report']", str(existing["id"]))
    page.click("dialog button[value='add']")
    page.wait_for_selector("dialog .result a")

    report = httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{existing['id']}", timeout=30).json()
    assert report["version"] == 2 and report["markdown"].startswith("# Collected\n")
    (block,) = [b for b in report["blocks"] if b["kind"] == "panel"]
    assert block["error"] is None
    assert block["spec"]["keys"] == ["train/loss"] and block["spec"]["smoothing"] == 0.5 and block["spec"]["log_y"] is True
    data = httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{existing['id']}/panels/0/data", timeout=30).json()
    assert sorted(run["id"] for run in data["runs"]) == ["r0", "r2"]

    page.click("dialog .result a")  # the link goes to the report, which draws the chart
    drawn = wait_report_chart(page, "report:0", runs=2)
    assert sorted(r["run"] for r in drawn["runs"]) == ["r0", "r2"]

    # A run page's charts too: the panel charts that run.
    page.goto(f"{server.url}/projects/{project}/runs/r1")
    page.wait_for_function("() => { const c = window.__tracklet.chart('eval/acc'); return c && c.runs.length === 1 }")
    page.click(".panel[data-key='eval/acc'] button.add-to-report")
    page.wait_for_selector("dialog.add-report-dialog[open]")
    page.select_option("dialog select[name='report']", str(existing["id"]))
    page.click("dialog button[value='add']")
    page.wait_for_selector("dialog .result a")
    assert httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{existing['id']}", timeout=30).json()["version"] == 3
    data = httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{existing['id']}/panels/1/data", timeout=30).json()
    assert [run["id"] for run in data["runs"]] == ["r1"] and data["history"]["series"][0]["key"] == "eval/acc"


def test_a_dense_panel_keeps_every_series_min_and_max_on_screen_after_bucketing(shared_server, tmp_path, page):  # noqa: F811
    """Fidelity of the report page's bucketing: 12 runs of 6,000 noisy steps, each with a one-step
    spike up and one down, are asked for at one min/max bucket per device pixel column of the plot
    (far fewer points than logged), and every run's highest and lowest value is still in what is
    drawn and inked on the canvas at its place (its band's column reaches it)."""
    server, project = shared_server, own_project("dense")
    rng = np.random.default_rng(20)
    truth, logged = {}, {}
    for index in range(12):
        values = np.sin(np.arange(6000) / 300) + 0.2 * rng.standard_normal(6000) + index / 4
        up, down = rng.choice(np.arange(50, 5950), size=2, replace=False)
        values[up] += 8 + index
        values[down] -= 8 + index
        run = tracklet.init(project=project, id=f"d{index:02d}", dir=str(tmp_path / "client"), mode="online",
                            settings={**QUIET, "base_url": server.url})
        for value in values.tolist():
            run.log({"noise": value})
        run.finish()
        truth[f"d{index:02d}"] = (float(values.min()), float(values.max()))
        logged[f"d{index:02d}"] = values
    report = create(server.url, panel("[noise]", "size: m\nruns:\n  sort: run_id\n  limit: 12\n"), project=project)
    page.goto(f"{server.url}/projects/{project}/reports/{report['id']}")
    page.wait_for_selector(".report-body[data-painted]")
    drawn = wait_report_chart(page, "report:0", runs=12)
    columns = drawn["plotPixels"]
    height = drawn["height"]
    span = drawn["scales"]["yMax"] - drawn["scales"]["yMin"]
    for series in drawn["runs"]:
        low, high = truth[series["run"]]
        assert not series["exact"] and columns <= len(series["x"]) < 6000  # a bucket per column, not every point
        assert min(series["min"]) == pytest.approx(low, rel=1e-6) and max(series["max"]) == pytest.approx(high, rel=1e-6)
        # On the canvas: a pixel and a half inside each extreme, at its bucket's x, has a run's colour.
        for extreme, inward, values in ((high, -1, series["max"]), (low, 1, series["min"])):
            x = series["x"][values.index(max(values) if inward < 0 else min(values))]
            rgba = page.evaluate("([id, x, y]) => window.__tracklet.chart(id).pixel(x, y)",
                                 ["report:0", x, extreme + inward * 1.5 * span / height])
            # Not blank (transparent) nor the grey of a grid line (which a band tints: a spread of 14 seen).
            assert rgba[3] > 0 and max(rgba[:3]) - min(rgba[:3]) > 8, (series["run"], extreme, rgba)
    # Hovering a bucket shows its last point's logged value exactly (float64, not the bands' float32).
    hovered = hover_values(page, "report:0", 3001, 0)
    assert len(hovered) == 12 and all(value == logged[run][int(step)] for run, step, value in hovered), hovered


def _offline_page(chromium, path: Path):
    """A page showing the file at ``path`` with every network request aborted (and recorded)."""
    context = chromium.new_context(viewport={"width": 1300, "height": 900}, offline=True)
    asked: list[str] = []

    def refuse(route):
        asked.append(route.request.url)
        route.abort()

    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else refuse(route))
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(path.as_uri())
    return context, tab, asked, errors


def test_html_export_renders_its_charts_with_networking_disabled(cmp, browser, tmp_path, page):  # noqa: F811
    server, project = cmp
    report = create(server.url, MARKDOWN + panel("[train/loss]", "runs:\n  project: nowhere\n"),
                    project=project)
    out = tmp_path / "report.html"
    done = serverproc.cli("report", "export", f"{project}/{report['id']}", "--url", server.url, "-o", str(out), env=ENV)
    assert done.returncode == 0, done.stderr
    server.stop()  # the file needs no server (the module's: started again whatever happens)
    try:
        html = out.read_text()
        assert "<script type=\"module\" crossorigin src=" not in html and "/assets/" not in html

        context, tab, asked, errors = _offline_page(browser, out)
        try:
            tab.wait_for_selector(".report-body[data-painted]")
            drawn = wait_report_chart(tab, "report:0", runs=3)
            assert drawn["runs"][2]["line"] == [loss(2, step) for step in range(40)]
            assert hover_values(tab, "report:0", 25, 3) == [["r0", "25", loss(0, 25)], ["r1", "25", loss(1, 25)],
                                                            ["r2", "25", loss(2, 25)]]
            states = [p["state"] for p in probe(tab, "report")["panels"]]
            assert states == ["drawn", "drawn", "error"]  # the third's project has no runs: its card, not a blank
            assert tab.title() == "Findings · tracklet report"
            assert asked == [] and errors == []
        finally:
            context.close()
    finally:
        server.start()

    # The dashboard's own "Download HTML" writes the same kind of file.
    page.goto(f"{server.url}/projects/{project}/reports/{report['id']}")
    page.wait_for_selector(".report-body[data-painted]")
    with page.expect_download() as download:
        page.click("button.export-html")
    saved = tmp_path / "downloaded.html"
    download.value.save_as(saved)
    context, tab, asked, errors = _offline_page(browser, saved)
    try:
        assert wait_report_chart(tab, "report:1", runs=2)["runs"][0]["line"] == [step / 40 for step in range(40)]
        assert asked == [] and errors == []
    finally:
        context.close()


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm is not installed (apt-get install poppler-utils)")
def test_pdf_export_has_non_blank_pages_showing_the_charts(cmp, tmp_path):
    from PIL import Image

    server, project = cmp
    report = create(server.url, MARKDOWN + "\n## More\n\n" + "\n".join(
        panel("[train/loss]", f"title: copy {i}\nsize: l\n") for i in range(3)), project=project)
    out = tmp_path / "report.pdf"
    done = serverproc.cli("report", "export", str(report["id"]), "-p", project, "--url", server.url, "--format", "pdf",
                          "-o", str(out), env=ENV, timeout=180)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF-")
    subprocess.run([PDFTOPPM, "-r", "50", "-png", str(out), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2  # five panels, three of them full-width, don't fit one A4 page
    for path in pages:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=int)
        inked = (pixels.sum(axis=2) < 600).mean()
        assert inked > 0.002, f"{path.name} is blank"
    # The first page holds the first chart: its lines' colours are there, not only text and grey.
    first = np.asarray(Image.open(pages[0]).convert("RGB"), dtype=int).reshape(-1, 3)
    saturated = first[first.max(axis=1) - first.min(axis=1) > 80]
    assert len({tuple(c // 32) for c in saturated}) >= 3  # at least three distinct hues


def test_png_per_panel_at_twice_the_css_size_and_markdown_with_images(cmp, tmp_path):
    from PIL import Image

    from tracklet.reports.export import HttpReportSource, export_report

    server, project = cmp
    report = create(server.url, MARKDOWN + panel("[train/loss]", "colour: red\n"), project=project)
    source = HttpReportSource(server.url)
    try:
        pngs = export_report(source, project, str(report["id"]), "png", tmp_path / "pngs")
        written = export_report(source, project, str(report["id"]), "md", tmp_path / "md" / "report.md")
    finally:
        source.close()
    assert [p.name for p in pngs] == ["panel-1.png", "panel-2.png", "panel-3.png"]
    wide, small = Image.open(pngs[0]), Image.open(pngs[1])
    # Panel 1 is medium (half of the 1047 px page), panel 2 small (a third): PNGs at 2x device scale.
    assert 2 * 480 < wide.width < 2 * 540 and 2 * 300 < small.width < 2 * 360
    text = (tmp_path / "md" / "report.md").read_text()
    assert text.startswith("# Loss study\n")
    assert "```tracklet-panel" not in text
    assert "![Training loss](<report_files/panel-1.png>)" in text and "![eval/acc](<report_files/panel-2.png>)" in text
    assert [p.name for p in written[1:]] == ["panel-1.png", "panel-2.png", "panel-3.png"]
    assert all(p.stat().st_size > 1000 for p in written[1:])


def _inked(image) -> tuple[float, int]:
    """(share of the image's pixels that are ink: not white or near it, count of distinct saturated
    hues): how a blank page or panel is told from a drawn one."""
    from PIL import Image

    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=int)
    flat = pixels.reshape(-1, 3)
    saturated = flat[flat.max(axis=1) - flat.min(axis=1) > 80]
    return float((pixels.sum(axis=2) < 600).mean()), len({tuple(c // 32) for c in saturated})


def _download(tab, selector: str, saved: Path) -> str:
    """Click an export button and save what it downloads as ``saved``; the file name suggested."""
    with tab.expect_download(timeout=180_000) as download:
        tab.click(selector)
    download.value.save_as(saved)
    return download.value.suggested_filename


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm is not installed (apt-get install poppler-utils)")
def test_the_report_page_exports_html_pdf_markdown_and_png_as_the_cli_does(cmp, browser, tmp_path,  # noqa: F811
                                                                          page):  # noqa: F811
    """Each Export button downloads what `tracklet report export` writes (made by the server with
    the same code): the HTML draws offline, the PDF's pages are not blank, the Markdown zip holds the
    text with a PNG per panel, the PNG zip one decodable, drawn PNG per panel at 2x."""
    import io
    import zipfile

    from PIL import Image

    server, project = cmp
    report = create(server.url, MARKDOWN, project=project)
    page.goto(f"{server.url}/projects/{project}/reports/{report['id']}")
    page.wait_for_selector(".report-body[data-painted]")
    assert page.locator(".report-export button").all_text_contents() == ["HTML", "PDF", "Markdown", "PNG"]

    assert _download(page, "button.export-html", tmp_path / "r.html") == "Findings.html"
    context, tab, asked, errors = _offline_page(browser, tmp_path / "r.html")
    try:
        assert wait_report_chart(tab, "report:0", runs=3)["runs"][2]["line"] == [loss(2, step) for step in range(40)]
        assert asked == [] and errors == []
    finally:
        context.close()

    assert _download(page, "button.export-pdf", tmp_path / "r.pdf") == "Findings.pdf"
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    subprocess.run([PDFTOPPM, "-r", "50", "-png", str(tmp_path / "r.pdf"), str(tmp_path / "page")], check=True,
                   timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages and all(_inked(Image.open(path))[0] > 0.002 for path in pages)
    assert _inked(Image.open(pages[0]))[1] >= 3  # the first chart's three runs' colours

    assert _download(page, "button.export-md", tmp_path / "md.zip") == "Findings-md.zip"
    with zipfile.ZipFile(tmp_path / "md.zip") as zipped:
        assert sorted(zipped.namelist()) == ["Findings.md", "Findings_files/panel-1.png", "Findings_files/panel-2.png"]
        text = zipped.read("Findings.md").decode()
        images = {name: Image.open(io.BytesIO(zipped.read(name))) for name in zipped.namelist() if name.endswith(".png")}
    assert text.startswith("# Loss study\n") and "## Accuracy" in text and "```tracklet-panel" not in text
    assert "![Training loss](<Findings_files/panel-1.png>)" in text and "![eval/acc](<Findings_files/panel-2.png>)" in text
    for name, image in images.items():
        ink, hues = _inked(image)
        assert ink > 0.01 and hues >= 2, name  # a drawn chart with its runs' colours, not a blank card

    assert _download(page, "button.export-png", tmp_path / "png.zip") == "Findings-png.zip"
    with zipfile.ZipFile(tmp_path / "png.zip") as zipped:
        assert sorted(zipped.namelist()) == ["Findings/panel-1.png", "Findings/panel-2.png"]
        pngs = [Image.open(io.BytesIO(zipped.read(name))) for name in sorted(zipped.namelist())]
    for image in pngs:
        image.load()  # decodes in full
        assert _inked(image)[0] > 0.01
    # Panel 1 is medium (half of the 1047 px page), panel 2 small (a third): at 2x device scale.
    assert 2 * 480 < pngs[0].width < 2 * 540 and 2 * 300 < pngs[1].width < 2 * 360


def test_export_from_a_data_root_without_a_server(runs_root, tmp_path):
    """A `tracklet.Report` saved in a data root exports from Python and, by its id alone, from
    `tracklet report export` (the root's store answers its panels)."""
    from tracklet.reports.export import SNAPSHOT_ID, decode_snapshot, export

    report = tracklet.Report("cmp", "Local", dir=str(runs_root))
    report.add_text("# Local\n")
    report.add_panel({"keys": ["train/loss"], "x": "step"}, runs={"sort": "run_id"})
    report.save()

    def snapshot_of(path: Path) -> dict:
        return decode_snapshot(path.read_text().split(f'id="{SNAPSHOT_ID}">', 1)[1].split("</script>", 1)[0])

    (from_python,) = export(report, "html", tmp_path / "python.html")
    out = tmp_path / "local.html"
    done = serverproc.cli("--dir", str(runs_root), "report", "export", str(report.id), "-o", str(out), env=ENV)
    assert done.returncode == 0, done.stderr
    for path in (from_python, out):
        snapshot = snapshot_of(path)
        assert snapshot["report"]["title"] == "Local"
        series = snapshot["panels"]["0"]["history"]["series"]
        assert [s["run"] for s in series] == ["r0", "r1", "r2"]
        assert series[1]["values"] == [loss(1, step) for step in range(40)]


def test_a_live_run_set_redraws_as_runs_log_and_a_frozen_one_does_not(runs_root, page):  # noqa: F811
    """Over `tracklet ui` (which indexes the data root as runs log): a run logged while the report is
    open joins the live panel without a reload; the frozen panel keeps its runs and is never redrawn."""
    rep = tracklet.Report("cmp", title="Live", dir=runs_root)
    rep.add_text("# Live\n")
    rep.add_panel({"keys": ["train/loss"]}, runs={"sort": "run_id"})
    rep.add_panel({"keys": ["train/loss"]}, runs={"sort": "run_id", "frozen": {"run_ids": ["r0", "r1", "r2"],
                                                                               "max_step": 39}})
    rep.save()
    ui, url, token = start_ui(runs_root)
    try:
        page.goto(f"{url}projects/cmp/reports/{rep.id}?token={token}")
        wait_report_chart(page, "report:0", runs=3)
        wait_report_chart(page, "report:1", runs=3)
        assert "token" not in page.url  # the ui's token became its cookie: not a report view token
        run = tracklet.init(project="cmp", id="r3", name="delta", dir=str(runs_root), settings=QUIET)
        for step in range(40):
            run.log({"train/loss": loss(3, step)})
        run.finish()
        page.wait_for_function("() => window.__tracklet.chart('report:0').runs.length === 4", timeout=30_000)
        live = chart(page, "report:0")
        assert [r["run"] for r in live["runs"]] == ["r0", "r1", "r2", "r3"]
        assert live["runs"][3]["line"] == [loss(3, step) for step in range(40)]
        page.wait_for_timeout(6_000)  # at least one more poll
        frozen = chart(page, "report:1")
        assert [r["run"] for r in frozen["runs"]] == ["r0", "r1", "r2"] and frozen["loads"] == 1
        panels = {p["index"]: p for p in probe(page, "report")["panels"]}
        assert panels[0]["refreshes"] >= 1 and panels[1]["refreshes"] == 0
        # Only the live panel was asked again, in one streamed request per poll.
        assert page.evaluate("() => performance.getEntriesByType('resource')"
                             ".filter(e => e.name.includes('/panels/')).length") == 0
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_delete_button_removes_the_report_after_confirmation(cmp, page):  # noqa: F811
    server, project = cmp
    keep = create(server.url, "kept\n", title="Kept", project=project)
    report = create(server.url, MARKDOWN, title="To delete", project=project)
    page.goto(f"{server.url}/projects/{project}/reports/{report['id']}")
    page.wait_for_selector(".report-body[data-painted]")
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Cancel": nothing happens
    page.click("button.delete-report")
    assert httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{report['id']}", timeout=30).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button.delete-report")
    page.wait_for_url(f"**/projects/{project}/reports")
    page.wait_for_selector(f".reports-list tr[data-report='{keep['id']}']")
    assert page.locator(f".reports-list tr[data-report='{report['id']}']").count() == 0
    assert httpx.get(f"{server.url}/api/v1/projects/{project}/reports/{report['id']}", timeout=30).status_code == 404
