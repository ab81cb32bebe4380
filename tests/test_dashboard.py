"""The web dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against real `tracklet server --dev` and `tracklet ui` processes over runs recorded by tracklet.

Charts are checked through `window.__tracklet` (web/src/debug.ts: each chart's data as drawn, its
scales, page coordinates of a data point) rather than pixels; hovering uses the real mouse.
Screenshots land in test-artifacts/dashboard/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import QUIET, REPO

import tracklet

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
STATIC = REPO / "tracklet" / "server" / "static" / "index.html"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def allowed_errors() -> list[str]:
    """Console errors a test expects (a substring each), e.g. the browser's note on a 400 it provoked."""
    return []


@pytest.fixture
def page(browser, request, allowed_errors):
    """A fresh page; fails the test on any browser console error, and saves a screenshot."""
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(15_000)
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    unexpected = [e for e in errors if not any(allowed in e for allowed in allowed_errors)]
    assert unexpected == [], f"browser console errors: {unexpected}"


def chart(tab, key: str) -> dict:
    return tab.evaluate("key => window.__tracklet.chart(key)", key)


def wait_chart(tab, key: str, runs: int, loads: int = 1) -> dict:
    tab.wait_for_function(
        "([key, runs, loads]) => { const c = window.__tracklet.chart(key); "
        "return c && c.loads >= loads && c.runs.length === runs }", arg=[key, runs, loads])
    return chart(tab, key)


def row_names(tab) -> list[str]:
    tab.wait_for_selector(".tr")
    rows = tab.eval_on_selector_all(
        ".tr", "rows => rows.map(r => [r.style.transform, r.querySelector('.name a').textContent])")
    return [name for _, name in sorted(rows, key=lambda r: float(re.search(r"[\d.]+", r[0]).group()))]


def loss(run: int, step: int) -> float:
    return 1.0 + run + step / 8  # exact in binary: what is shown is what was logged


@pytest.fixture
def three_runs(tmp_path):
    """A server root with three finished runs: lr 0.1/0.01/0.001, 40 steps of `train/loss`."""
    root = tmp_path / "srv"
    for index, (name, lr) in enumerate([("alpha", 0.1), ("beta", 0.01), ("gamma", 0.001)]):
        run = tracklet.init(project="cmp", id=f"r{index}", name=name, dir=str(root), config={"lr": lr, "layers": index},
                            tags=["sweep"], settings=QUIET)
        for step in range(40):
            run.log({"train/loss": loss(index, step), "eval/acc": step / 40})
        run.summary["best"] = 10 - index
        run.finish()
    return root


def test_project_page_lists_sorts_and_filters_runs(servers, three_runs, page, allowed_errors):
    allowed_errors.append("status of 400")  # the bad filter below
    server = servers(three_runs, dev=True)
    page.goto(server.url + "/")
    page.click("ul.projects a:text('cmp')")
    assert sorted(row_names(page)) == ["alpha", "beta", "gamma"]
    assert page.text_content(".pane-head .count") == "3 runs"
    headers = page.eval_on_selector_all(".thead .th", "cells => cells.map(c => c.dataset.col)")
    assert "config.lr" in headers and "summary.best" in headers

    page.click(".th[data-col='config.lr']")  # ascending lr
    page.wait_for_function("() => location.search.includes('sort=config.lr')")
    page.wait_for_function("() => document.querySelector('.tr .name a').textContent === 'gamma'")
    assert row_names(page) == ["gamma", "beta", "alpha"]
    page.click(".th[data-col='config.lr']")  # descending
    page.wait_for_function("() => document.querySelector('.tr .name a').textContent === 'alpha'")
    assert row_names(page) == ["alpha", "beta", "gamma"]

    page.fill("input.filter", "config.lr < 0.05")
    page.press("input.filter", "Enter")
    page.wait_for_function("() => document.querySelectorAll('.tr').length === 2")
    assert row_names(page) == ["beta", "gamma"]
    page.fill("input.search", "gam")
    page.wait_for_function("() => document.querySelectorAll('.tr').length === 1")
    assert row_names(page) == ["gamma"]
    assert "filter=config.lr" in page.url and "q=gam" in page.url

    page.fill("input.search", "")
    page.fill("input.filter", "config.lr >> 1")
    page.press("input.filter", "Enter")
    page.wait_for_selector(".filter-error:not([hidden])")
    assert "unexpected token" in page.text_content(".filter-error")


def test_two_selected_runs_overlay_with_exact_hover_values(servers, three_runs, page):
    server = servers(three_runs, dev=True)
    page.goto(server.url + "/projects/cmp")
    page.wait_for_selector(".tr")
    page.click("button:text('None')")
    page.check(".tr[data-run='r0'] input.select")
    page.check(".tr[data-run='r2'] input.select")
    assert "sel=r0%2Cr2" in page.url or "sel=r0,r2" in page.url
    drawn = wait_chart(page, "train/loss", runs=2)
    assert [r["run"] for r in drawn["runs"]] == ["r0", "r2"]
    for series, index in zip(drawn["runs"], (0, 2)):
        assert series["exact"] and series["x"] == list(range(40))
        assert series["line"] == [loss(index, step) for step in range(40)]

    point = page.evaluate("() => window.__tracklet.chart('train/loss').pagePoint(17, 3)")
    page.mouse.move(point["x"], point["y"])
    page.wait_for_selector(".panel[data-key='train/loss'] .tooltip:not([hidden])")
    tips = page.eval_on_selector_all(".panel[data-key='train/loss'] .tip-row",
                                     "rows => rows.map(r => [r.dataset.run, r.dataset.step, Number(r.dataset.value)])")
    assert tips == [["r0", "17", loss(0, 17)], ["r2", "17", loss(2, 17)]]
    assert page.locator(".panel[data-key='train/loss'] .legend-item").all_text_contents() == ["alpha", "gamma"]

    page.reload()  # the view is in the URL
    assert [r["run"] for r in wait_chart(page, "train/loss", runs=2)["runs"]] == ["r0", "r2"]


def test_spike_visible_at_full_zoom_out_and_zoom_requeries(servers, tmp_path, page):
    root = tmp_path / "srv"
    run = tracklet.init(project="big", id="long", dir=str(root), settings=QUIET)
    for step in range(20_000):
        run.log({"loss": 50.0 if step == 12_345 else 1.0 + (step % 7) / 100})
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/big")
    drawn = wait_chart(page, "loss", runs=1)
    (series,) = drawn["runs"]
    assert not series["exact"] and len(series["x"]) < 2_000  # buckets, not 20,000 points
    assert max(series["max"]) == 50.0  # the one-step spike survives bucketing...
    assert drawn["scales"]["yMax"] >= 50.0  # ...and is inside the drawn y range
    assert max(v for v in series["line"] if v is not None) < 50.0  # the line alone would have hidden it

    box = page.locator(".panel[data-key='loss'] .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/api/v1/projects/big/history" in r.url and "start=" in r.url) as zoomed:
        page.mouse.move(box["x"] + box["width"] * 0.55, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.65, y, steps=5)
        page.mouse.up()
    query = dict(p.split("=", 1) for p in zoomed.value.url.split("?", 1)[1].split("&"))
    start, end = float(query["start"]), float(query["end"])
    assert 9_000 < start < 12_345 < end < 14_000
    drawn = wait_chart(page, "loss", runs=1, loads=2)
    (series,) = drawn["runs"]
    assert series["x"][0] >= start - 1 and series["x"][-1] <= end + 1
    assert drawn["scales"]["xMin"] == pytest.approx(start) and drawn["scales"]["xMax"] == pytest.approx(end)
    assert "zoom=" in page.url
    page.dblclick(".panel[data-key='loss'] .u-over")
    assert wait_chart(page, "loss", runs=1, loads=3)["scales"]["xMax"] >= 19_000


def _record_with_console_and_system(root: Path) -> None:
    code = f"""
        import tracklet
        run = tracklet.init(project="sys", id="withsys", name="sys-run", dir={str(root)!r},
                            config={{"optimizer": {{"name": "adamw", "lr": 0.003}}, "batch_size": 64}},
                            settings={{"system_interval": 0.05, "system_window": 0.1}})
        for step in range(30):
            run.log({{"train/loss": 1.0 / (step + 1)}})
            print(f"step {{step}}: training")
        print("a needle in the console")
        import time; time.sleep(0.6)
        run.finish()
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_run_page_shows_overview_config_console_and_system_charts(servers, tmp_path, page):
    root = tmp_path / "srv"
    _record_with_console_and_system(root)
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/sys")
    page.click(".tr .name a")
    page.wait_for_url("**/projects/sys/runs/withsys")
    page.wait_for_selector("table.config")
    config = dict(page.eval_on_selector_all(
        "table.config tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert config == {"optimizer.name": "adamw", "optimizer.lr": "0.003", "batch_size": "64"}
    assert page.text_content(".overview dd[data-field='state']").startswith("finished")
    assert "python" in page.text_content(".overview dd[data-field='command']")
    page.wait_for_selector(".console .line")
    lines = page.locator(".console .line").all_text_contents()
    assert any(line.endswith("step 29: training") for line in lines)
    page.fill("input.console-search", "needle")
    page.wait_for_function("() => document.querySelectorAll('.console .line').length === 1")
    assert page.text_content(".console .line").endswith("a needle in the console")
    system = page.evaluate("() => window.__tracklet.charts().filter(id => id.startsWith('system:'))")
    assert "system:cpu.percent" in system and "system:memory.percent" in system
    cpu = chart(page, "system:cpu.percent")
    assert cpu["loads"] >= 1 and len(cpu["runs"][0]["x"]) >= 2
    assert wait_chart(page, "train/loss", runs=1)["runs"][0]["line"][:2] == [1.0, 0.5]


def test_tracklet_ui_shows_a_live_run_growing_without_reload(root, tmp_path, page):
    go, stop = tmp_path / "go", tmp_path / "stop"
    code = f"""
        import os, time, tracklet
        run = tracklet.init(project="live", id="growing", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False, "flush_interval": 0.1}})
        def wait(path):
            while not os.path.exists(path):
                time.sleep(0.02)
        for step in range(10):
            run.log({{"loss": float(step)}})
        wait({str(go)!r})
        for step in range(10, 25):
            run.log({{"loss": float(step)}})
        wait({str(stop)!r})
        run.finish()
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stderr=subprocess.PIPE, text=True)
    ui = subprocess.Popen([sys.executable, "-m", "tracklet", "--dir", str(root), "ui", "--no-open", "--port", "0"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ui.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group()
        page.goto(url + "projects/live")
        page.wait_for_selector(".tr[data-run='growing'] .state[data-state='running']")
        page.wait_for_function("() => { const c = window.__tracklet.chart('loss'); "
                               "return c && c.runs.length === 1 && c.runs[0].x.length === 10 }")
        go.touch()
        page.wait_for_function("() => window.__tracklet.chart('loss').runs[0].x.length === 25")
        assert chart(page, "loss")["runs"][0]["line"] == [float(s) for s in range(25)]
        live = page.evaluate("() => window.__tracklet.requests.filter(r => r.startsWith('live loss'))")
        assert any("start=10" in request for request in live), live  # only what came after step 9
        stop.touch()
        page.wait_for_selector(".tr[data-run='growing'] .state[data-state='finished']")
    finally:
        go.touch()
        stop.touch()
        writer.wait(timeout=30)
        ui.terminate()
        ui.wait(timeout=10)


def test_a_server_with_keys_asks_for_one(servers, three_runs, page, allowed_errors):
    allowed_errors.append("status of 401")  # the first request, before the key is entered
    made = subprocess.run([sys.executable, "-m", "tracklet", "admin", "--dir", str(three_runs), "create-user", "root",
                           "--admin"], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60, check=True)
    server = servers(three_runs, dev=False)
    page.goto(server.url + "/")
    page.wait_for_selector("dialog.key-dialog[open]")
    assert "missing API key" in page.text_content("dialog .reason")
    page.fill("dialog input[name='key']", made.stdout.strip())
    page.click("dialog button[value='ok']")
    page.wait_for_selector("ul.projects a:text('cmp')")
    assert page.evaluate("() => localStorage.getItem('tracklet.apiKey')").startswith("tlk_")
