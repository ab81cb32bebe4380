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
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serverfork
import serverproc
from conftest import QUIET, REPO
from serverproc import Server

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


def _read_only_server(root: Path) -> Iterator[Server]:
    """One `tracklet server --dev` over ``root`` for a module's tests that only read (the project and
    run pages write nothing), checked at the end as the ``servers`` fixture checks its own."""
    server = Server(root).start()
    try:
        yield server
    finally:
        server.stop()
    assert "Exception in ASGI application" not in server.stderr_text(), server.stderr_text()[-6000:]
    server.log.unlink(missing_ok=True)


@pytest.fixture
def three_runs(tmp_path):
    """A server root with three finished runs: lr 0.1/0.01/0.001, 40 steps of `train/loss`."""
    return _three_runs(tmp_path / "srv")


@pytest.fixture(scope="module")
def three_runs_server(tmp_path_factory) -> Iterator[Server]:
    """A `--dev` server over ``three_runs``' runs, shared by the module's tests that only read them."""
    yield from _read_only_server(_three_runs(tmp_path_factory.mktemp("three-runs") / "srv"))


def _three_runs(root: Path) -> Path:
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
    # gamma (the newest) is first before the sort too: wait for the sorted header, not for gamma
    page.wait_for_selector(".th[data-col='config.lr']:text('config.lr ▲')")
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


def test_two_selected_runs_overlay_with_exact_hover_values(three_runs_server, page):
    server = three_runs_server
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
        import time
        deadline = time.monotonic() + 30  # a loaded machine starts the monitor late: wait for 3+ windows
        while run._monitor.samples_taken < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.finish()
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env={**os.environ, "PYTHONPATH": str(REPO), "LOGNAME": "trainer"},  # the OS user it records
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_run_page_shows_overview_config_console_and_system_charts(servers, tmp_path, page):
    root = tmp_path / "srv"
    _record_with_console_and_system(root)
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/sys")
    user = page.wait_for_selector(".tr .td[data-col='user'] .user")
    assert (user.text_content(), user.get_attribute("data-verified")) == ("trainer?", "false")
    page.click(".tr .name a")
    page.wait_for_url("**/projects/sys/runs/withsys")
    page.wait_for_selector("table.config")
    config = dict(page.eval_on_selector_all(
        "table.config tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert config == {"optimizer.name": "adamw", "optimizer.lr": "0.003", "batch_size": "64"}
    assert page.text_content(".overview dd[data-field='state']").startswith("finished")
    assert "python" in page.text_content(".overview dd[data-field='command']")
    # A --dev server verifies nobody: the OS user the run recorded, said to be unverified.
    assert page.text_content(".overview dd[data-field='user']") == "trainer (unverified: the OS user its client recorded)"
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
    go, stop, ready = tmp_path / "go", tmp_path / "stop", tmp_path / "ready"
    code = f"""
        import os, time, tracklet
        run = tracklet.init(project="live", id="growing", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False, "flush_interval": 0.1}})
        def wait(path):
            while not os.path.exists(path):
                time.sleep(0.02)
        for step in range(10):
            run.log({{"loss": float(step)}})
        run.flush()
        open({str(ready)!r}, "w").close()
        wait({str(go)!r})
        for step in range(10, 25):
            run.log({{"loss": float(step)}})
        wait({str(stop)!r})
        run.finish()
    """
    writer = start_live_writer(code, ready)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/live?token=" + token)  # the cookie it sets carries the dashboard's requests
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
    made = serverproc.cli("admin", "--dir", str(three_runs), "create-user", "root", "--admin", timeout=60)
    assert made.returncode == 0, made.stderr
    server = servers(three_runs, dev=False)
    page.goto(server.url + "/")
    page.wait_for_selector("dialog.key-dialog[open]")
    assert "missing API key" in page.text_content("dialog .reason")
    page.fill("dialog input[name='key']", made.stdout.strip())
    page.click("dialog button[value='ok']")
    page.wait_for_selector("ul.projects a:text('cmp')")
    assert page.evaluate("() => localStorage.getItem('tracklet.apiKey')").startswith("tlk_")


def test_runs_table_and_run_page_show_who_created_each_run(servers, tmp_path, root, page):
    """On a server with keys: each run's creator (the user of the key that uploaded it); a run that
    was on the server before it recorded users (here: indexed from its root) says so."""
    import httpx

    from tracklet.client.sync import SyncClient
    from tracklet.core.layout import RunPaths

    server_root = _three_runs(tmp_path / "srv")  # r0-r2, in the server's root: no creator recorded
    made = serverproc.cli("admin", "--dir", str(server_root), "create-user", "root", "--admin", timeout=60)
    assert made.returncode == 0, made.stderr
    admin_key = made.stdout.strip()
    server = servers(server_root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_key}"}) as http:
        keys = {name: http.post("/api/v1/users", json={"name": name}).json()["key"] for name in ("alice", "bob")}
        for name in ("alice", "bob"):
            assert http.put(f"/api/v1/projects/cmp/members/{name}", json={"role": "write"}).status_code == 204
    for name in ("alice", "bob"):
        run = tracklet.init(project="cmp", id=f"by-{name}", name=f"{name}s", dir=str(root), settings=QUIET)
        run.log({"train/loss": 1.0})
        run.finish()
        with SyncClient(server.url, api_key=keys[name]) as client:
            client.sync_run(RunPaths(root, "cmp", f"by-{name}"))

    page.add_init_script(f"localStorage.setItem('tracklet.apiKey', {admin_key!r})")
    page.goto(server.url + "/projects/cmp")
    page.wait_for_selector(".tr[data-run='by-bob']")
    users = dict(page.eval_on_selector_all(
        ".tr", "rows => rows.map(r => [r.dataset.run, r.querySelector(\".td[data-col='user']\").textContent])"))
    assert users == {"by-alice": "alice", "by-bob": "bob", "r0": "", "r1": "", "r2": ""}
    page.click(".th[data-col='user']")  # sorted by the server's `user` field (unknown is "")
    page.wait_for_selector(".th[data-col='user']:text('User ▲')")
    page.wait_for_function("() => document.querySelector('.tr .name a').textContent === 'alices'")
    assert row_names(page)[:2] == ["alices", "bobs"]  # runs without a creator come last both ways
    page.click(".th[data-col='user']")
    page.wait_for_selector(".th[data-col='user']:text('User ▼')")
    page.wait_for_function("() => document.querySelector('.tr .name a').textContent === 'bobs'")
    assert row_names(page)[:2] == ["bobs", "alices"]
    page.click(".tr[data-run='by-bob'] .name a")
    page.wait_for_url("**/projects/cmp/runs/by-bob")
    assert page.text_content(".overview dd[data-field='user']") == "bob"
    page.goto(server.url + "/projects/cmp/runs/r0")
    assert page.text_content(".overview dd[data-field='user']") == "unknown (not recorded)"


SWEEP = [  # run id -> config; `seed` is the same everywhere, so it is no difference
    ("s0", {"opt": "adam", "lr": 0.1, "width": 64, "seed": 7}),
    ("s1", {"opt": "adam", "lr": 0.01, "width": 128, "seed": 7}),
    ("s2", {"opt": "sgd", "lr": 0.001, "width": 64, "seed": 7}),
    ("s3", {"opt": "adam", "lr": 0.001, "width": 256, "seed": 7}),
    ("s4", {"opt": "sgd", "lr": 0.1, "width": 128, "seed": 7}),
]


@pytest.fixture(scope="module")
def sweep_server(tmp_path_factory) -> Iterator[Server]:
    """A `--dev` server over five finished runs of a small sweep: `train/loss` and `epoch` (step / 8) for
    24 steps, summary `best` = 1.5 × the run's index; shared by the module's tests (they only read)."""
    root = tmp_path_factory.mktemp("sweep") / "srv"
    for index, (run_id, config) in enumerate(SWEEP):
        run = tracklet.init(project="sweep", id=run_id, name=f"run-{run_id}", dir=str(root), config=config,
                            settings=QUIET)
        for step in range(24):
            run.log({"train/loss": loss(index, step), "epoch": step / 8})
        run.summary["best"] = 1.5 * index
        run.finish()
    yield from _read_only_server(root)


def probe(tab, name: str) -> dict:
    return tab.evaluate("name => { const p = window.__tracklet.probe(name); "
                        "return p && JSON.parse(JSON.stringify(p)) }", name)


def test_compare_diffs_configs_and_draws_parallel_coordinates(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep?sel=s0,s2&tab=compare")
    page.wait_for_selector("table.diff")
    diff = page.eval_on_selector_all(
        "table.diff tbody tr", "rows => rows.map(r => [r.dataset.key, [...r.querySelectorAll('td')]"
        ".map(c => [c.textContent, c.classList.contains('differs')])])")
    # only the keys that differ between s0 and s2 (not seed, not width: 64 both), s2's cells marked
    assert diff == [["lr", [["0.1", False], ["0.001", True]]], ["opt", [["adam", False], ["sgd", True]]]]
    assert page.text_content(".config-diff p.muted").startswith("2 of 4 config keys differ")
    assert page.is_hidden(".workspace")

    page.wait_for_function("() => { const p = window.__tracklet.probe('parcoords'); return p && p.lines.length === 5 }")
    drawn = probe(page, "parcoords")
    assert [(a["key"], a["kind"]) for a in drawn["axes"]] == [
        ("config.lr", "log"), ("config.opt", "category"), ("config.width", "number"), ("summary.best", "number")]
    assert drawn["axes"][1]["categories"] == ["adam", "sgd"] and drawn["metric"] == "best"
    lines = {line["run"]: line["t"] for line in drawn["lines"]}
    assert lines["s2"] == [0, 1, 0, 0.5] and lines["s0"] == [1, 0, 0, 0]
    assert lines["s1"][0] == pytest.approx(0.5) and lines["s3"][2] == 1 and lines["s4"][3] == 1
    assert drawn["highlighted"] == ["s0", "s1", "s2", "s3", "s4"]

    # brushing the top of the opt axis (sgd) leaves the sgd runs highlighted
    top = page.evaluate("() => window.__tracklet.probe('parcoords').pagePoint(1, 1.0)")
    low = page.evaluate("() => window.__tracklet.probe('parcoords').pagePoint(1, 0.8)")
    page.mouse.move(low["x"], low["y"])
    page.mouse.down()
    page.mouse.move(top["x"], top["y"] - 5, steps=4)
    page.mouse.up()
    assert probe(page, "parcoords")["highlighted"] == ["s2", "s4"]
    page.mouse.click(low["x"], low["y"])  # a click clears the axis' brush
    assert len(probe(page, "parcoords")["highlighted"]) == 5

    page.select_option("select[name='pc-metric']", "train/loss")
    drawn = probe(page, "parcoords")
    assert drawn["metric"] == "train/loss" and drawn["axes"][-1]["key"] == "summary.train/loss"
    assert "pc=train%2Floss" in page.url
    page.reload()  # the tab and the metric are in the URL
    page.wait_for_function("() => { const p = window.__tracklet.probe('parcoords'); return p && p.lines.length === 5 }")
    assert probe(page, "parcoords")["metric"] == "train/loss" and page.is_visible("table.diff")


def test_runs_table_groups_by_a_config_key_and_charts_colour_by_group(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep")
    wait_chart(page, "train/loss", runs=5)
    page.select_option("select[name='group']", "opt")
    page.wait_for_selector(".tr.group-row")
    table = probe(page, "table")
    assert table["groupBy"] == "opt"
    groups = {g["label"]: sorted(g["runs"]) for g in table["groups"]}
    assert groups == {"opt = adam": ["s0", "s1", "s3"], "opt = sgd": ["s2", "s4"]}
    assert page.locator(".group-row .group-count").all_text_contents() == ["3 runs", "2 runs"]
    assert "group=opt" in page.url and page.is_hidden(".compare")

    legend = page.eval_on_selector_all(
        ".panel[data-key='train/loss'] .legend-group",
        "items => items.map(i => [i.textContent, i.querySelector('.swatch').style.background])")
    colors = {g["label"]: g["color"] for g in table["groups"]}
    assert [text for text, _ in legend] == ["opt = adam (3)", "opt = sgd (2)"]
    swatch = page.eval_on_selector(".tr[data-run='s2'] .swatch", "s => s.style.background")
    assert swatch == legend[1][1] and colors["opt = sgd"] != colors["opt = adam"]

    page.click(".group-toggle[data-group='\"adam\"']")  # collapse adam: only sgd's runs are rows
    page.wait_for_function("() => document.querySelectorAll('.tr[data-run]').length === 2")
    shown = page.eval_on_selector_all(".tr[data-run]", "rows => rows.map(r => r.dataset.run).sort()")
    assert shown == ["s2", "s4"]
    assert probe(page, "table")["groups"][0]["collapsed"] is True
    page.reload()
    page.wait_for_selector(".tr.group-row")
    assert probe(page, "table")["groupBy"] == "opt"


def test_x_axis_can_be_another_metric(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep?sel=s1")
    wait_chart(page, "train/loss", runs=1)
    options = page.eval_on_selector_all("select[name='x'] option", "os => os.map(o => o.value)")
    assert options[:3] == ["step", "relative_time", "time"] and "epoch" in options
    with page.expect_request(lambda r: "/history" in r.url and "x=epoch" in r.url):
        page.select_option("select[name='x']", "epoch")
    drawn = wait_chart(page, "train/loss", runs=1, loads=2)
    (series,) = drawn["runs"]
    assert series["x"] == [step / 8 for step in range(24)]
    assert series["line"] == [loss(1, step) for step in range(24)]
    assert "x=epoch" in page.url
    point = page.evaluate("() => window.__tracklet.chart('train/loss').pagePoint(1.5, 3)")
    page.mouse.move(point["x"], point["y"])
    page.wait_for_selector(".panel[data-key='train/loss'] .tooltip:not([hidden])")
    tip_x = page.text_content(".panel[data-key='train/loss'] .tip-x")  # the cursor's x, in epochs
    assert tip_x.startswith("epoch ") and float(tip_x.split()[1]) == pytest.approx(1.5, abs=0.02)
    step = page.eval_on_selector(".panel[data-key='train/loss'] .tip-row", "r => r.dataset.step")
    assert step == "12"


def test_panel_size_is_chosen_and_kept_in_the_url(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep?sel=s0")
    wait_chart(page, "train/loss", runs=1)
    plot = ".panel[data-key='train/loss'] .u-over"
    before = page.locator(plot).bounding_box()
    page.select_option("select[name='size']", "l")
    page.wait_for_function("h => document.querySelector(\".panel[data-key='train/loss'] .u-over\")"
                           ".getBoundingClientRect().height > h + 100", arg=before["height"])
    after = page.locator(plot).bounding_box()
    assert after["width"] >= before["width"] and "size=l" in page.url  # a group's lone panel fills its row at any size
    page.reload()
    wait_chart(page, "train/loss", runs=1)
    assert page.locator(plot).bounding_box()["height"] == pytest.approx(after["height"], abs=1)
    page.select_option("select[name='size']", "s")
    page.wait_for_function("h => document.querySelector(\".panel[data-key='train/loss'] .u-over\")"
                           ".getBoundingClientRect().height < h - 40", arg=before["height"])


def test_a_panel_is_resized_by_dragging_its_corner(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep?sel=s0")
    wait_chart(page, "train/loss", runs=1)
    wait_chart(page, "epoch", runs=1)
    before = {key: chart(page, key) for key in ("train/loss", "epoch")}
    assert before["train/loss"]["height"] == before["epoch"]["height"] == 220  # the size selector's medium
    handle = page.locator(".panel[data-key='train/loss'] .resize-handle")
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 60, steps=4)
    page.mouse.move(x, y + 150, steps=4)
    page.mouse.up()
    page.wait_for_function("() => location.search.includes('psize=')")
    after = {key: chart(page, key) for key in ("train/loss", "epoch")}
    assert after["train/loss"]["height"] == pytest.approx(370, abs=2)  # redrawn at the new size
    assert after["train/loss"]["width"] == before["train/loss"]["width"] and after["train/loss"]["span"] == 1
    assert after["epoch"]["height"] == 220 and after["epoch"]["width"] == before["epoch"]["width"]
    assert after["train/loss"]["runs"] == before["train/loss"]["runs"]  # the same data, only resized
    plot = page.locator(".panel[data-key='train/loss'] .u-over").bounding_box()
    assert plot["height"] > 250
    height = after["train/loss"]["height"]
    assert f"psize=train%252Floss%3A{height}" in page.url or f"psize=train%2Floss%3A{height}" in page.url

    page.reload()  # the link reproduces it; the other panel keeps the default
    wait_chart(page, "train/loss", runs=1)
    wait_chart(page, "epoch", runs=1)
    assert chart(page, "train/loss")["height"] == height and chart(page, "epoch")["height"] == 220

    page.dblclick(".panel[data-key='train/loss'] .resize-handle")  # back to the default size
    page.wait_for_function("() => !location.search.includes('psize=')")
    assert chart(page, "train/loss")["height"] == 220


def test_run_page_draws_a_logged_plotly_figure_with_the_servers_own_plotly_js(root, page):
    go = pytest.importorskip("plotly.graph_objects")
    figure = go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[4.0, 1.0, 3.0, 2.0], mode="lines+markers", name="loss"),
                       layout={"title": {"text": "val loss </script> by epoch"}})
    run = tracklet.init(project="plots", id="fig", dir=str(root), settings=QUIET)
    run.log({"curve": tracklet.Plotly(figure), "loss": 1.0})
    run.finish()
    requested: list[str] = []
    page.context.on("request", lambda request: requested.append(request.url))  # the frame's too
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/plots/runs/fig?token=" + token)
        frame_el = page.wait_for_selector(".media-panel[data-key='curve'] iframe.media-plotly")
        assert frame_el.get_attribute("sandbox") == "allow-scripts"  # no access to the dashboard's origin
        frame = frame_el.content_frame()
        frame.wait_for_selector(".js-plotly-plot .scatterlayer .trace")
        assert frame.eval_on_selector_all(".scatterlayer .trace .point", "points => points.length") == 4
        assert frame.text_content(".gtitle") == "val loss </script> by epoch"  # the JSON can't end the script
        assert all(request.startswith(url) for request in requested if request.startswith("http")), requested
        loaded = frame.evaluate("() => performance.getEntriesByType('resource').map(entry => entry.name)")
        assert loaded == [url + "vendor/plotly.min.js"]  # the server's plotly.js, not a CDN's
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def start_live_writer(code: str, ready: Path) -> subprocess.Popen:
    """A process running ``code`` (a script that records a live run and creates ``ready`` once its first
    records are flushed), returned when ``ready`` exists: a page opened before the run's project exists
    answers 404 (a forked `tracklet ui` starts at once, before a cold writer has logged)."""
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists() and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not ready.exists():
        writer.kill()
        raise AssertionError(f"the live writer never got ready: {writer.communicate()[1][-2000:]}")
    return writer


def start_ui(root: Path) -> tuple[subprocess.Popen | serverfork.ForkedProcess, str, str]:
    """A `tracklet ui` process, its base URL and the token in the URL it printed. Forked from the server
    template (tests/serverfork.py) under the rule a server is (the same command line, without the cold
    interpreter start and imports: ~1.5 s of CPU each); its output goes to files, read until the URL."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--dir", str(root), "ui", "--no-open", "--port", "0"]
    logs = Path(tempfile.gettempdir()) / "tracklet-test-servers"
    logs.mkdir(exist_ok=True)
    out, err = (logs / f"ui-{os.getpid()}-{time.monotonic_ns()}.{name}" for name in ("stdout", "stderr"))
    out.touch()
    ui: subprocess.Popen | serverfork.ForkedProcess
    if serverproc._forkable(env):
        ui = serverfork.spawn(args, env=env, stderr=str(err), stdout=str(out))
    else:
        with out.open("ab") as stdout, err.open("ab") as stderr:
            ui = subprocess.Popen([sys.executable, "-m", "tracklet", *args], env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 180  # a readiness limit (cold imports on a loaded machine), not a check
        while not (found := re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", out.read_text())):
            assert ui.poll() is None, f"tracklet ui exited: {err.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"tracklet ui printed no URL: {err.read_text(errors='replace')}"
            time.sleep(0.02)  # readiness polling only
    except BaseException:
        ui.kill()
        raise
    finally:
        out.unlink()
        err.unlink()
    return ui, found.group(1), found.group(2)


def test_run_page_lists_and_downloads_run_files(root, page):
    run = tracklet.init(project="files", id="withfiles", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    files = Path(run.dir) / "files"
    (files / "logs").mkdir(parents=True, exist_ok=True)
    (files / "notes.txt").write_text("hello files\n")
    (files / "logs" / "epoch-1.txt").write_bytes(bytes(range(256)) * 8)
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/files/runs/withfiles?token=" + token)
        page.wait_for_selector(".files tr[data-name='notes.txt']")
        assert page.url == url + "projects/files/runs/withfiles"  # the token left the address bar
        listed = dict(page.eval_on_selector_all(".files tr", "rows => rows.map(r => [r.dataset.name, "
                                                "r.querySelector('.size').textContent])"))
        assert listed["notes.txt"] == "12 B" and listed["logs/epoch-1.txt"] == "2.0 kB"
        for name, content in (("notes.txt", b"hello files\n"), ("logs/epoch-1.txt", bytes(range(256)) * 8)):
            with page.expect_download() as download:
                page.click(f".files a[data-name='{name}']")
            assert download.value.suggested_filename == name.split("/")[-1]
            assert Path(download.value.path()).read_bytes() == content
    finally:
        ui.terminate()
        ui.wait(timeout=10)


# --- issue #13: the dashboard as a person sees it -------------------------------------------------------------


def drawn_series(tab, key: str) -> list[dict]:
    """uPlot's own series of a chart (label, stroke colour, marker), as it draws them."""
    return chart(tab, key)["series"]


def test_a_table_filter_removes_its_runs_from_the_charts(three_runs_server, page):
    server = three_runs_server
    page.goto(server.url + "/projects/cmp")
    assert sorted(r["run"] for r in wait_chart(page, "train/loss", runs=3)["runs"]) == ["r0", "r1", "r2"]
    page.fill("input.filter", "config.lr < 0.05")
    page.press("input.filter", "Enter")
    page.wait_for_function("() => window.__tracklet.chart('train/loss').runs.length === 2")
    drawn = chart(page, "train/loss")
    assert sorted(r["run"] for r in drawn["runs"]) == ["r1", "r2"]
    assert sorted(s["label"] for s in drawn["series"]) == ["beta", "gamma"]  # no line left for alpha
    legend = page.locator(".panel[data-key='train/loss'] .legend-item").all_text_contents()
    assert sorted(legend) == ["beta", "gamma"]
    page.fill("input.search", "gam")  # the name search hides runs from the charts too
    page.wait_for_function("() => window.__tracklet.chart('train/loss').runs.length === 1")
    assert [s["label"] for s in drawn_series(page, "train/loss")] == ["gamma"]
    page.fill("input.search", "")
    page.fill("input.filter", "")
    page.press("input.filter", "Enter")  # the runs are still selected: they come back
    page.wait_for_function("() => window.__tracklet.chart('train/loss').runs.length === 3")


def test_grouping_recolours_the_chart_lines_without_a_reload(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep")
    wait_chart(page, "train/loss", runs=5)
    own = {s["label"]: s["stroke"] for s in drawn_series(page, "train/loss")}
    assert len(set(own.values())) > 2  # per-run colours before grouping
    page.select_option("select[name='group']", "opt")
    page.wait_for_selector(".tr.group-row")
    colors = {g["label"]: g["color"] for g in probe(page, "table")["groups"]}
    expected = {f"run-{run_id}": colors[f"opt = {config['opt']}"] for run_id, config in SWEEP}
    page.wait_for_function("expected => { const s = window.__tracklet.chart('train/loss').series; "
                           "return s.every(x => x.stroke === expected[x.label]) }", arg=expected)
    assert {s["label"]: s["stroke"] for s in drawn_series(page, "train/loss")} == expected
    page.select_option("select[name='group']", "")  # ungrouped: each run's own colour again
    page.wait_for_function("own => window.__tracklet.chart('train/loss').series.every(x => x.stroke === own[x.label])",
                           arg=own)


def _hex_rgb(color: str) -> list[int]:
    return [int(color[i:i + 2], 16) for i in (1, 3, 5)]


def test_a_single_point_is_a_marker_and_short_runtimes_have_distinct_ticks(servers, tmp_path, page):
    root = tmp_path / "srv"
    code = f"""
        import tracklet
        run = tracklet.init(project="one", id="single", dir={str(root)!r},
                            settings={{"console": "off", "capture_environment": False, "system_interval": 0.02,
                                       "system_window": 60, "capture_wait": 60}})
        run.log({{"loss": 0.5}})
        import time
        while not run._monitor.sampled:  # a run that ends before its first system sample records none
            time.sleep(0.005)
        run.finish()  # one system window: the partial one at finish
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/one/runs/single")
    page.wait_for_function("() => { const c = window.__tracklet.chart('system:cpu.percent'); return c && c.loads > 0 }")
    cpu = chart(page, "system:cpu.percent")
    assert len(cpu["runs"][0]["x"]) == 1  # one window
    assert cpu["series"][0]["points"] is True  # drawn as a marker, not left as a faint band
    x, y = cpu["runs"][0]["x"][0], cpu["runs"][0]["line"][0]
    rgba = page.evaluate("([x, y]) => window.__tracklet.chart('system:cpu.percent').pixel(x, y)", [x, y])
    color = page.evaluate("() => window.__tracklet.chart('system:cpu.percent').series[0].stroke")
    assert rgba[3] > 200 and all(abs(a - b) < 40 for a, b in zip(rgba, _hex_rgb(color)))  # opaque, the run's colour
    ticks = cpu["xTicks"]
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), ticks  # not "0.1s 0.1s 0.1s"
    assert all(re.fullmatch(r"\d+(\.\d+)?s", t) for t in ticks), ticks  # short runtimes in seconds, never negative
    assert_rows_filled(page, ".grid.system")
    loss = wait_chart(page, "loss", runs=1)  # a metric with one point: a marker too, in the middle
    assert loss["series"][0]["points"] is True
    assert loss["scales"]["xMin"] < 0 < loss["scales"]["xMax"] and loss["scales"]["xMax"] - loss["scales"]["xMin"] <= 2
    assert cpu["scales"]["xMin"] == 0 and cpu["scales"]["xMax"] == pytest.approx(2 * x)


def test_runs_table_columns_fit_and_the_split_is_resizable(sweep_server, page):
    server = sweep_server
    page.goto(server.url + "/projects/sweep?cols=config.opt,config.width,summary.best,summary.train/loss")
    page.wait_for_selector(".tr[data-run='s0']")
    wait_chart(page, "train/loss", runs=5)
    cut = page.evaluate("""() => [...document.querySelectorAll('.th[data-col], .tr .td[data-col]')]
        .filter(c => ['created', 'runtime', 'name', 'state'].includes(c.dataset.col) || c.dataset.col.includes('.'))
        .filter(c => c.scrollWidth > c.clientWidth).map(c => c.dataset.col + ': ' + c.textContent)""")
    assert cut == []  # nothing truncated: dates, runtimes, config/summary headers
    headers = page.eval_on_selector_all(".th[data-col]", "cells => cells.map(c => c.textContent)")
    assert "config.width" in headers and "summary.train/loss" in headers
    # a wide table takes about half the width (it scrolls sideways); a narrower one is shown whole
    pane = page.locator(".runs-pane").bounding_box()
    assert pane["width"] == pytest.approx(0.55 * page.locator(".project").bounding_box()["width"], abs=3)
    page.goto(server.url + "/projects/sweep?cols=config.opt,summary.best")
    page.wait_for_selector(".tr[data-run='s0']")
    pane = page.locator(".runs-pane").bounding_box()
    table = page.evaluate("() => document.querySelector('.tbody .spacer').getBoundingClientRect().width")
    assert pane["width"] >= table
    before = chart(page, "train/loss")["width"]
    handle = page.locator(".splitter").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + 200
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 150, y, steps=5)
    page.mouse.up()
    after = page.locator(".runs-pane").bounding_box()
    assert after["width"] == pytest.approx(pane["width"] - 150, abs=3)
    page.wait_for_function("w => window.__tracklet.chart('train/loss').width > w + 100", arg=before)
    page.reload()  # the split is kept
    page.wait_for_selector(".tr[data-run='s0']")
    assert page.locator(".runs-pane").bounding_box()["width"] == pytest.approx(after["width"], abs=3)
    page.dblclick(".splitter")  # back to the table's width
    assert page.locator(".runs-pane").bounding_box()["width"] == pytest.approx(pane["width"], abs=3)


def test_chart_rows_have_no_empty_columns(servers, tmp_path, page):
    root = tmp_path / "srv"
    run = tracklet.init(project="grid", id="g", dir=str(root), settings=QUIET)
    for step in range(5):
        run.log({f"m/{name}": float(step) for name in "abcde"})
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/grid?size=s")
    for name in "abcde":
        wait_chart(page, f"m/{name}", runs=1)
    assert_rows_filled(page, ".group[data-group='m'] .grid")


def assert_rows_filled(tab, grid: str) -> None:
    """Every row of panels in `grid`, the last included, reaches the grid's right edge."""
    rows: dict[float, list[dict]] = {}
    for box in tab.eval_on_selector_all(grid + " > .panel", "ps => ps.map(p => { "
                                        "const r = p.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width} })"):
        rows.setdefault(round(box["y"]), []).append(box)
    frame = tab.locator(grid).bounding_box()
    assert len(rows) >= 2  # more panels than fit in one row
    for panels in rows.values():
        right = max(p["x"] + p["w"] for p in panels)
        assert right == pytest.approx(frame["x"] + frame["width"], abs=2)


def test_tooltip_shows_whole_run_names(servers, tmp_path, page):
    root = tmp_path / "srv"
    names = ["adam-lr3e-4-warmup", "sgd-momentum-0.9-cosine", "adamw-wd0.1"]
    for index, name in enumerate(names):
        run = tracklet.init(project="tips", id=f"t{index}", name=name, dir=str(root), settings=QUIET)
        for step in range(5000):  # bucketed: every row also shows its bucket's [min – max]
            run.log({"loss": 1.0 / (step + 1) + index + (step % 13) / 1000})
        run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/tips?smooth=0.5")
    drawn = wait_chart(page, "loss", runs=3)
    assert not drawn["runs"][0]["exact"]
    point = page.evaluate("() => window.__tracklet.chart('loss').pagePoint(2500, 1.5)")
    page.mouse.move(point["x"], point["y"])
    page.wait_for_selector(".panel[data-key='loss'] .tooltip:not([hidden])")
    shown = page.eval_on_selector_all(
        ".panel[data-key='loss'] .tip-name",
        "cells => cells.map(c => [c.textContent, c.scrollWidth <= c.clientWidth, c.clientWidth])")
    assert sorted(text for text, _, _ in shown) == sorted(names)  # every entry named...
    assert all(whole and width > 0 for _, whole, width in shown), shown  # ...in full
    tip = page.locator(".panel[data-key='loss'] .tooltip").bounding_box()
    panel = page.locator(".panel[data-key='loss']").bounding_box()
    assert panel["x"] <= tip["x"] and tip["x"] + tip["width"] <= panel["x"] + panel["width"]  # not cut by the edge


def test_parallel_coordinates_default_to_the_metric_that_varies(servers, tmp_path, page):
    root = tmp_path / "srv"
    for index in range(4):  # epoch: the same for all (and first by name); loss: nearly; val_acc: spread out
        run = tracklet.init(project="pc", id=f"p{index}", dir=str(root), config={"lr": 10.0 ** -index}, settings=QUIET)
        run.log({"x": 1.0})
        run.summary.update({"epoch": 3, "loss": 1.0 + index / 100, "val_acc": 0.5 + index / 10})
        run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/pc?tab=compare")
    page.wait_for_function("() => { const p = window.__tracklet.probe('parcoords'); return p && p.lines.length === 4 }")
    drawn = probe(page, "parcoords")
    assert drawn["metric"] == "val_acc" and drawn["axes"][-1]["key"] == "summary.val_acc"
    assert page.eval_on_selector("select[name='pc-metric']", "s => s.value") == "val_acc"
    assert "pc=" not in page.url  # a default, not a choice: a link doesn't pin it


def test_a_histogram_summary_is_one_entry(servers, tmp_path, page):
    import numpy as np

    root = tmp_path / "srv"
    run = tracklet.init(project="hist", id="h", dir=str(root), settings=QUIET)
    run.log({"loss": 0.25, "weights": tracklet.Histogram(np.array([1.0, 2.0, 2.0, np.nan, np.inf]))})
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/hist/runs/h")
    page.wait_for_selector("table.summary")
    summary = dict(page.eval_on_selector_all(
        "table.summary tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert set(summary) == {"loss", "weights"}  # no weights.nan_count / weights.inf_count rows
    assert summary["weights"].startswith("Histogram(") and "1 NaN" in summary["weights"]
    assert "1 inf" in summary["weights"] and "3 values" in summary["weights"]
    page.goto(server.url + "/projects/hist")
    page.wait_for_selector(".tr[data-run='h']")
    page.click("details.columns > summary")
    offered = page.eval_on_selector_all(".column-list input", "boxes => boxes.map(b => b.value)")
    assert not [c for c in offered if "nan_count" in c or "inf_count" in c], offered


def test_structured_values_are_text_in_the_summary_and_runs_table_and_never_charted(servers, tmp_path, page):
    root = tmp_path / "srv"
    run = tracklet.init(project="sv", id="s", dir=str(root), settings=QUIET)
    for step in range(6):
        run.log({"loss": 1.0 + step / 8, "generated": ["a cat", f"dog {step}"],
                 "mixed": [0.5, 1.5, 2.5, [[1, 2], [3, 4]], 4.5, "five"][step]})  # a number key, then a list
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/sv/runs/s")
    mixed = wait_chart(page, "mixed", runs=1)  # the numbers of a key that also held a list are charted
    assert mixed["runs"][0]["x"] == [0, 1, 2, 4] and mixed["runs"][0]["line"] == [0.5, 1.5, 2.5, 4.5]
    wait_chart(page, "loss", runs=1)
    assert "generated" not in page.evaluate("() => window.__tracklet.charts()")
    summary = dict(page.eval_on_selector_all(
        "table.summary tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert summary["generated"] == '["a cat","dog 5"]' and summary["mixed"] == "five"
    page.goto(server.url + "/projects/sv")
    page.wait_for_selector(".tr[data-run='s']")
    page.click("details.columns > summary")
    offered = page.eval_on_selector_all(".column-list input", "boxes => boxes.map(b => b.value)")
    assert "summary.generated" in offered
    page.goto(server.url + "/projects/sv?cols=summary.generated")
    cell = page.wait_for_selector(".tr[data-run='s'] .td[data-col='summary.generated']")
    assert cell.text_content() == '["a cat","dog 5"]'


def test_run_page_shows_alerts(servers, tmp_path, page):
    root = tmp_path / "srv"
    run = tracklet.init(project="al", id="a", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.alert("loss is NaN", "at step 3: check the learning rate", "ERROR")
    run.alert("slow epoch", level="WARN")
    run.finish()
    quiet = tracklet.init(project="al", id="quiet", dir=str(root), settings=QUIET)
    quiet.log({"loss": 1.0})
    quiet.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/al/runs/a")
    page.wait_for_selector(".alerts .alert")
    shown = page.eval_on_selector_all(".alerts .alert", "rows => rows.map(r => [r.dataset.level, "
                                      "r.querySelector('.title').textContent, r.querySelector('.text')?.textContent ?? ''])")
    assert shown == [["ERROR", "loss is NaN", "at step 3: check the learning rate"], ["WARN", "slow epoch", ""]]
    assert page.text_content(".alerts-card h2") == "Alerts (2)"
    page.goto(server.url + "/projects/al/runs/quiet")  # a run without alerts has no alerts card
    wait_chart(page, "loss", runs=1)
    assert page.is_hidden(".alerts-card")


def test_nan_and_infinities_are_gaps_in_a_chart(servers, tmp_path, page):
    """The server writes NaN/±inf as the strings "NaN"/"Infinity"/"-Infinity" (strict JSON): the
    chart draws them as gaps, never as points, and the finite points around them as logged."""
    root = tmp_path / "srv"
    run = tracklet.init(project="nf", id="r", dir=str(root), settings=QUIET)
    values = [1.0, float("nan"), 2.0, float("inf"), 3.0, float("-inf"), 4.0]
    for value in values:
        run.log({"loss": value})
    run.summary["best"] = float("inf")
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/nf/runs/r")
    drawn = wait_chart(page, "loss", runs=1)
    assert drawn["runs"][0]["x"] == list(range(7))
    assert drawn["runs"][0]["line"] == [1.0, None, 2.0, None, 3.0, None, 4.0]
    assert drawn["scales"]["yMin"] <= 1.0 and 4.0 <= drawn["scales"]["yMax"] < 100


# --- issue #16: logged media on the run page ----------------------------------------------------------------------


def test_run_page_shows_images_with_masks_and_boxes_at_the_right_pixels(root, page):
    import numpy as np

    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[:10] = 1
    boxes = {"pred": {"box_data": [{"position": {"minX": 0.5, "maxX": 1.0, "minY": 0.5, "maxY": 1.0}, "class_id": 2,
                                    "scores": {"conf": 0.9}},
                                   {"position": {"minX": 0, "maxX": 15, "minY": 0, "maxY": 20}, "domain": "pixel",
                                    "class_id": 1}],
                      "class_labels": {1: "cat", 2: "dog"}}}
    run = tracklet.init(project="media", id="seg", dir=str(root), settings=QUIET)
    run.log({"pred": tracklet.Image(pixels[::-1, ::-1].copy(), caption="step zero"), "loss": 1.0})
    run.log({"pred": tracklet.Image(pixels, caption="step one", masks={"truth": {"mask_data": mask}}, boxes=boxes),
             "page": tracklet.Html("<body><script>try { parent.document.title = 'owned' } catch (e) "
                                   "{ document.body.dataset.blocked = 'yes' }</script></body>"),
             "loss": 0.5})
    run.finish()
    ui, url, token = start_ui(root)
    try:
        page.goto(url + "projects/media/runs/seg?token=" + token)
        panel = ".media-panel[data-key='pred']"
        page.wait_for_selector(f"{panel}[data-step='1'] .media-mask")
        page.wait_for_function(f"() => document.querySelector(\"{panel} img.media-image\").naturalWidth === 60")
        # The image as the browser decoded it: the logged pixels
        colour_at = ("([x, y]) => { const img = document.querySelector(\"" + panel + " img.media-image\"); "
                     "const c = document.createElement('canvas'); c.width = img.naturalWidth; "
                     "c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0); "
                     "return Array.from(g.getImageData(x, y, 1, 1).data); }")
        assert page.evaluate(colour_at, [5, 5]) == [255, 0, 0, 255]
        assert page.evaluate(colour_at, [50, 35]) == [0, 0, 255, 255]
        # The mask: class 1 over the first ten rows, coloured; class 0 clear
        mask_at = ("([x, y]) => Array.from(document.querySelector(\"" + panel + " canvas.media-mask\")"
                   ".getContext('2d').getImageData(x, y, 1, 1).data)")
        coloured = page.evaluate(mask_at, [5, 5])  # class 1's colour at alpha 110 (premultiplied: +-2)
        assert coloured[3] == 110 and all(abs(a - b) <= 2 for a, b in zip(coloured, [230, 25, 75]))
        assert page.evaluate(mask_at, [5, 20])[3] == 0
        # The boxes: where the image is drawn, fractions and pixels alike
        geometry = page.evaluate("sel => { const img = document.querySelector(sel + ' img.media-image')"
                                 ".getBoundingClientRect(); return [img.left, img.top, img.width, img.height, "
                                 "Array.from(document.querySelectorAll(sel + ' .media-boxes rect')).map(r => { "
                                 "const b = r.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; })]; }",
                                 panel)
        left, top, width, height, rects = geometry
        scale = width / 60
        expected = [[left + 30 * scale, top + 20 * scale, 30 * scale, 20 * scale],
                     [left, top, 15 * scale, 20 * scale]]
        for got, want in zip(rects, expected):
            assert all(abs(g - w) <= 1.5 for g, w in zip(got, want)), (got, want)
        # Toggling a layer hides it
        page.uncheck(f"{panel} input[data-layer='truth']")
        assert page.is_hidden(f"{panel} canvas.media-mask")
        # The step slider shows the step before
        assert page.text_content(f"{panel} figcaption") == "step one"
        page.eval_on_selector(f"{panel} input.media-step",
                              "s => { s.value = '0'; s.dispatchEvent(new Event('input')); }")
        page.wait_for_selector(f"{panel}[data-step='0']")
        assert page.text_content(f"{panel} figcaption") == "step zero"
        # Html runs sandboxed: it can't reach the dashboard
        frame_el = page.wait_for_selector(".media-panel[data-key='page'] iframe.media-html")
        assert frame_el.get_attribute("sandbox") == "allow-scripts"
        frame = frame_el.content_frame()
        frame.wait_for_selector("body[data-blocked='yes']", state="attached")
        assert page.title() != "owned"
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def test_summary_keys_holding_dots_show_in_the_runs_table_and_sort(servers, tmp_path, page):
    """An evaluation names a scorer's field ``<scorer>.<key>`` in the summary (``exact.correct``),
    as W&B scripts name keys ``val.acc``: the runs table showed those columns empty (it looked the
    name up as nested keys) and sorted by a field the server doesn't have. Nested keys still work."""
    root = tmp_path / "srv"
    for index, score in enumerate([0.25, 0.75, 0.5]):
        run = tracklet.init(project="evals", id=f"e{index}", dir=str(root), settings=QUIET)
        run.summary.update({"exact.correct": score, "nested": {"depth": index}})
        run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/evals?cols=summary.exact.correct,summary.nested.depth")
    page.wait_for_selector(".tr .td[data-col='summary.exact.correct']:text('0.75')")

    def column(name: str) -> list[str]:
        return page.eval_on_selector_all(f".tr .td[data-col='{name}']", "cells => cells.map(c => c.textContent)")

    assert sorted(column("summary.exact.correct")) == ["0.25", "0.5", "0.75"]
    assert sorted(column("summary.nested.depth")) == ["0", "1", "2"]
    header = page.locator(".th[data-col='summary.exact.correct']")
    assert header.get_attribute("title") == 'Sort by summary."exact.correct"'
    header.click()
    page.wait_for_selector(".th[data-col='summary.exact.correct']:text('summary.exact.correct ▲')")
    page.wait_for_function("""() => [...document.querySelectorAll(".tr .td[data-col='summary.exact.correct']")]
                              .map(c => c.textContent).join(",") === "0.25,0.5,0.75" """)
