"""The table panel and the histogram-over-steps panel in a real headless Chromium (test_dashboard.py's
browser and page fixtures) against a real `tracklet server --dev` over runs logged by tracklet.

The table panel is checked through what is in the DOM (its rows, their cells) and what crossed the
wire (every table response's size and row window), never through timings: with a 1,000,000-row
table the DOM holds a screenful of rows wherever the view is, and no response carries more than a
page.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import QUIET
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, page, start_live_writer, start_ui  # noqa: F401

import tracklet

pytest.importorskip("duckdb")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

ROWS = 1_000_000
LABELS = [f"l{i}" for i in range(10)]
MAX_DOM_ROWS = 40  # a 420 px view of 28 px rows, plus overscan
PAGE_BYTES = 100_000  # a page of 200 rows of (id, label, score) is ~10 kB of JSON


def _big_columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    ids = np.arange(ROWS, dtype=np.int64)
    labels = rng.integers(0, len(LABELS), ROWS)
    scores = rng.random(ROWS)
    return {"id": ids, "label": labels, "score": scores}


@pytest.fixture(scope="module")
def tables_root(tmp_path_factory):
    """Run `a`: a 1M-row table `big`, a small table of images `cells`, a MUTABLE table `grow` logged
    three times; run `b`: a `cells`-like table with other values, to compare with `a`, and `preds`
    (other columns, sharing `id`) and `misc` (sharing none); run `s`, shared: its primary (1 row)
    and its part `rank_1` (2 rows) log table `shared` at one step."""
    import pyarrow as pa

    root = tmp_path_factory.mktemp("tables") / "data"
    columns = _big_columns()
    frame = pa.table({"id": columns["id"], "label": pa.array([LABELS[i] for i in columns["label"]]),
                      "score": columns["score"]})
    run = tracklet.init(project="tbl", id="a", name="first", dir=str(root), settings=QUIET)
    run.log({"big": tracklet.Table(dataframe=frame)})
    images = []
    for i in range(6):
        pixels = np.zeros((16, 16, 3), dtype=np.uint8)
        pixels[:, :, i % 3] = 40 * (i + 1)
        images.append(pixels)
    run.log({"cells": tracklet.Table(columns=["id", "img", "guess"],
                                     data=[[i, tracklet.Image(images[i], caption=f"img {i}"), f"g{i % 2}"]
                                           for i in range(6)])})
    grow = tracklet.Table(columns=["n", "sq"], log_mode="MUTABLE")
    for n in range(3):
        grow.add_data(n, n * n)
        run.log({"grow": grow})
    frames = np.zeros((3, 3, 16, 16), dtype=np.uint8)
    frames[:, 1] = 200
    run.log({"av": tracklet.Table(columns=["sound", "clip", "page", "plot"], data=[[
        tracklet.Audio(np.sin(np.linspace(0, 800, 8000)).astype(np.float32), sample_rate=8000),
        tracklet.Video(frames, fps=3), tracklet.Html("<p id='x'>hi</p>"),
        tracklet.Plotly({"data": [{"type": "scatter", "mode": "markers", "x": [0, 1, 2], "y": [2, 0, 1]}]})]])})
    run.finish()
    other = tracklet.init(project="tbl", id="b", name="second", dir=str(root), settings=QUIET)
    other.log({"cells": tracklet.Table(columns=["id", "guess"], data=[[i, f"h{i}"] for i in range(3, 9)])})
    other.log({"preds": tracklet.Table(columns=["key", "id", "pred"], data=[[f"k{i}", i, f"p{i}"] for i in range(4, 10)]),
               "misc": tracklet.Table(columns=["x"], data=[[1]])})
    other.finish()
    for label in ("primary", "rank_1"):  # run `s`, shared: two writers log `shared` at step 0
        settings = {**QUIET} if label == "primary" else {**QUIET, "primary": False, "label": label}
        writer = tracklet.init(project="tbl", id="s", dir=str(root), reinit="create_new", settings=settings)
        rows = 1 if label == "primary" else 2
        writer.log({"shared": tracklet.Table(columns=["who", "i"], data=[[label, i] for i in range(rows)])}, step=0)
        writer.finish()
    return root, columns


def _panel(key: str) -> str:
    return f".table-panel[data-key='{key}']"


def _probe(tab, key: str) -> dict:
    return tab.evaluate("key => window.__tracklet.probe('table:' + key)", key)


def _wait_rows(tab, key: str, predicate: str) -> dict:
    """Wait until the grid's drawn rows (none loading) satisfy `predicate` (JS over `p`, the probe)."""
    tab.wait_for_function(
        "([key, pred]) => { const p = window.__tracklet.probe('table:' + key); "
        "return p && p.rows.length > 0 && p.rows.every(r => !r.loading) && eval(pred); }", arg=[key, predicate])
    return _probe(tab, key)


def _dom_rows(tab, key: str) -> int:
    return tab.eval_on_selector_all(f"{_panel(key)} .tp-row", "rows => rows.length")


def test_a_million_row_table_pages_scrolls_sorts_and_filters_with_bounded_dom(  # noqa: F811
        servers, tables_root, page, allowed_errors):  # noqa: F811
    allowed_errors.append("status of 400")  # the bad filter below
    root, columns = tables_root
    server = servers(root, dev=True)
    responses = []
    page.on("response", lambda response: responses.append(response)
            if "/tables/big" in response.url or "/table-groups/big" in response.url else None)
    page.goto(server.url + "/projects/tbl/runs/a")
    page.select_option(".tables-card select.tp-keys", "big")
    page.wait_for_selector(f"{_panel('big')}[data-total='{ROWS}']")
    first = _wait_rows(page, "big", "p.rows[0].index === 0")
    assert first["columns"] == ["id", "label", "score"] and first["total"] == ROWS
    assert first["rows"][0]["cells"][:2] == ["0", LABELS[columns["label"][0]]]
    assert page.text_content(f"{_panel('big')} .tp-count") == "1,000,000 rows"
    assert 0 < _dom_rows(page, "big") <= MAX_DOM_ROWS

    # Scroll to the very end: the last rows are drawn, fetched as one page near the end
    page.eval_on_selector(f"{_panel('big')} .tp-scroll", "s => { s.scrollTop = s.scrollHeight; }")
    end = _wait_rows(page, "big", f"p.rows[p.rows.length - 1].index === {ROWS - 1}")
    last = end["rows"][-1]["cells"]
    assert last[0] == str(ROWS - 1) and last[1] == LABELS[columns["label"][-1]]
    assert float(last[2]) == pytest.approx(columns["score"][-1], rel=1e-5)
    assert _dom_rows(page, "big") <= MAX_DOM_ROWS and end["pagesKept"] <= 12
    # and halfway: a row in the middle is the logged row at that index
    page.eval_on_selector(f"{_panel('big')} .tp-scroll", "s => { s.scrollTop = (s.scrollHeight - s.clientHeight) / 2; }")
    middle = _wait_rows(page, "big", "p.rows[0].index > 400000 && p.rows[0].index < 600000")
    for row in middle["rows"]:
        assert row["cells"][0] == str(row["index"]) and row["cells"][1] == LABELS[columns["label"][row["index"]]]
    assert _dom_rows(page, "big") <= MAX_DOM_ROWS

    # Sort by score, descending (two clicks): the largest scores first, as the server sorted them
    page.click(f"{_panel('big')} .tp-th[data-col='score']")
    page.wait_for_selector(f"{_panel('big')} .tp-th[data-col='score']:text('score ▲')")
    page.click(f"{_panel('big')} .tp-th[data-col='score']")
    page.wait_for_selector(f"{_panel('big')} .tp-th[data-col='score']:text('score ▼')")
    order = np.argsort(-columns["score"], kind="stable")
    top = _wait_rows(page, "big", f"p.rows[0].cells[0] === '{order[0]}'")
    assert [row["cells"][0] for row in top["rows"][:10]] == [str(i) for i in order[:10]]

    # Filter: the count and rows of the logged data matching it, still sorted
    page.fill(f"{_panel('big')} input.tp-filter", "label = 'l3' and score > 0.5")
    page.press(f"{_panel('big')} input.tp-filter", "Enter")
    mask = (columns["label"] == 3) & (columns["score"] > 0.5)
    page.wait_for_selector(f"{_panel('big')}[data-total='{int(mask.sum())}']")
    matching = order[mask[order]]
    filtered = _wait_rows(page, "big", f"p.rows[0].cells[0] === '{matching[0]}'")
    assert [row["cells"][0] for row in filtered["rows"][:10]] == [str(i) for i in matching[:10]]
    assert all(row["cells"][1] == "l3" for row in filtered["rows"])
    assert page.text_content(f"{_panel('big')} .tp-count") == f"{int(mask.sum()):,} of 1,000,000 rows"

    # A bad filter: the server's message is shown, the rows of the last good filter stay
    page.fill(f"{_panel('big')} input.tp-filter", "score >> 1")
    page.press(f"{_panel('big')} input.tp-filter", "Enter")
    page.wait_for_selector(f"{_panel('big')} .tp-error:not([hidden])")
    assert "expected a value" in page.text_content(f"{_panel('big')} .tp-error")  # the server's, with its caret
    assert page.get_attribute(_panel("big"), "data-total") == str(int(mask.sum()))
    assert 0 < _dom_rows(page, "big") <= MAX_DOM_ROWS
    page.fill(f"{_panel('big')} input.tp-filter", "label = 'l3' and score > 0.5 and id < 1000")
    page.press(f"{_panel('big')} input.tp-filter", "Enter")
    mask_small = mask & (columns["id"] < 1000)
    page.wait_for_selector(f"{_panel('big')}[data-total='{int(mask_small.sum())}']")
    assert page.is_hidden(f"{_panel('big')} .tp-error")

    # Group by label: a row per label, counts and means as pandas would give
    page.fill(f"{_panel('big')} input.tp-filter", "")
    page.press(f"{_panel('big')} input.tp-filter", "Enter")
    page.wait_for_selector(f"{_panel('big')}[data-total='{ROWS}']")
    page.select_option(f"{_panel('big')} select.tp-group", "label")
    page.wait_for_selector(f"{_panel('big')} .tp-group-row")
    groups = page.eval_on_selector_all(f"{_panel('big')} .tp-group-row",
                                       "rows => rows.map(r => Array.from(r.children).map(c => c.textContent))")
    assert len(groups) == len(LABELS)
    for label, count, mean_id, mean_score in groups:
        chosen = columns["label"] == LABELS.index(label)
        assert int(count) == int(chosen.sum())
        assert float(mean_id) == pytest.approx(columns["id"][chosen].mean(), rel=1e-5)
        assert float(mean_score) == pytest.approx(columns["score"][chosen].mean(), rel=1e-5)
    # a click on a group filters to it
    page.click(f"{_panel('big')} .tp-group-row[data-value='\"l7\"']")
    page.wait_for_selector(f"{_panel('big')}[data-total='{int((columns['label'] == 7).sum())}']")
    assert page.input_value(f"{_panel('big')} input.tp-filter") == 'label = "l7"'

    # What crossed the wire: pages of at most 200 rows, each response small; never the table
    bodies = []
    for response in responses:
        try:
            bodies.append((response.url, len(response.body())))
        except Exception:  # a request the panel aborted (scrolled past) has no body
            continue
    assert bodies and all(size <= PAGE_BYTES for _, size in bodies), max(size for _, size in bodies)
    limits = [int(url.split("limit=")[1].split("&")[0]) for url, _ in bodies if "limit=" in url and "/tables/" in url]
    assert limits and max(limits) <= 200
    sent = sum(size for _, size in bodies)
    assert sent < 3_000_000, sent  # the whole table as JSON would be ~30 MB
    probe = _probe(page, "big")
    assert sum(r["rows"] for r in probe["requests"]) < 10_000


def test_media_cells_versions_and_a_join_of_two_runs(servers, tables_root, page):  # noqa: F811
    root, _ = tables_root
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/tbl/runs/a/tables/cells")
    cells = _wait_rows(page, "cells", "p.rows.length === 6")
    assert [row["cells"][0] for row in cells["rows"]] == [str(i) for i in range(6)]
    # the thumbnails are the logged images, as the browser decoded them
    page.wait_for_function("() => Array.from(document.querySelectorAll('img.tp-thumb'))"
                           ".filter(i => i.naturalWidth === 16).length === 6")
    colours = page.eval_on_selector_all(
        "img.tp-thumb", "imgs => imgs.map(img => { const c = document.createElement('canvas'); c.width = 16; "
        "c.height = 16; const g = c.getContext('2d'); g.drawImage(img, 0, 0); "
        "return Array.from(g.getImageData(8, 8, 1, 1).data); })")
    for i, colour in enumerate(colours):
        expected = [0, 0, 0, 255]
        expected[i % 3] = 40 * (i + 1)
        assert colour == expected
    assert page.get_attribute("img.tp-thumb", "title") == "img 0"
    # a click shows the image at full size
    page.click(f"{_panel('cells')} .tp-row[data-row='2'] img.tp-thumb")
    page.wait_for_function("() => { const i = document.querySelector('dialog.tp-dialog[open] img.tp-full'); "
                           "return i && i.naturalWidth === 16; }")
    assert page.text_content("dialog.tp-dialog p") == "img 2"
    page.click("dialog.tp-dialog button")
    page.wait_for_selector("dialog.tp-dialog", state="detached")

    # Compare with run b joined on id: a row per id of either, a.* and b.* side by side
    page.select_option(f"{_panel('cells')} select.tp-compare", "b")
    page.wait_for_selector(f"{_panel('cells')}[data-total='9']")
    joined = _wait_rows(page, "cells", "p.columns.includes('b.guess')")
    assert joined["columns"] == ["id", "a.img", "a.guess", "b.guess"]
    by_id = {row["cells"][0]: row["cells"] for row in joined["rows"]}
    assert by_id["4"][2:] == ["g0", "h4"] and by_id["1"][2:] == ["g1", ""] and by_id["8"][2:] == ["", "h8"]
    assert page.input_value(f"{_panel('cells')} select.tp-on") == "id"
    # filtering on joined columns
    page.fill(f"{_panel('cells')} input.tp-filter", "a.guess = 'g1' and b.guess is not null")
    page.press(f"{_panel('cells')} input.tp-filter", "Enter")
    page.wait_for_selector(f"{_panel('cells')}[data-total='2']")  # ids 3 and 5
    # the view is in the URL: a reload (or a link) shows the same join, filtered
    assert "vs=b" in page.url and "on=id" in page.url and "filter=" in page.url
    page.reload()
    page.wait_for_selector(f"{_panel('cells')}[data-total='2']")
    assert page.input_value(f"{_panel('cells')} input.tp-filter") == "a.guess = 'g1' and b.guess is not null"
    assert [row["cells"][0] for row in _wait_rows(page, "cells", "p.rows.length === 2")["rows"]] == ["3", "5"]

    # A MUTABLE table's versions: the selector reads each version by its number
    page.goto(server.url + "/projects/tbl/runs/a/tables/grow")
    page.wait_for_selector(f"{_panel('grow')}[data-total='3']")
    options = page.eval_on_selector_all(f"{_panel('grow')} select.tp-version option", "o => o.map(x => x.value)")
    assert options[1:] == ["2", "1", "0"]  # the three logs' versions, newest first
    assert page.text_content(f"{_panel('grow')} select.tp-version option[value='1']") == "v1 · step 3 · 2 rows"
    page.select_option(f"{_panel('grow')} select.tp-version", "1")
    page.wait_for_selector(f"{_panel('grow')}[data-total='2']")
    version = _wait_rows(page, "grow", "p.rows.length === 2")
    assert [row["cells"] for row in version["rows"]] == [["0", "0"], ["1", "1"]]
    assert "version=1" in page.url

    # A shared run whose two writers logged `shared` at one step: two choices, each its writer's rows
    page.goto(server.url + "/projects/tbl/runs/s/tables/shared")
    _wait_rows(page, "shared", "p.rows.length > 0")
    texts = page.eval_on_selector_all(f"{_panel('shared')} select.tp-version option", "o => o.map(x => x.textContent)")
    assert texts[1:] == ["v1 · step 0 · 2 rows", "v0 · step 0 · 1 rows"]
    for chosen, rows in (("0", [["primary", "0"]]), ("1", [["rank_1", "0"], ["rank_1", "1"]])):
        page.select_option(f"{_panel('shared')} select.tp-version", chosen)
        shown = _wait_rows(page, "shared", f"p.rows.length === {len(rows)} && p.rows[0].cells[0] === '{rows[0][0]}'")
        assert [row["cells"] for row in shown["rows"]] == rows
        assert page.text_content(f"{_panel('shared')} .tp-count") == f"{len(rows)} rows"
    page.goto(server.url + "/projects/tbl/runs/s/tables/shared?version=0")  # a link to a version
    assert [row["cells"] for row in _wait_rows(page, "shared", "p.rows.length === 1")["rows"]] == [["primary", "0"]]
    assert page.input_value(f"{_panel('shared')} select.tp-version") == "0"
    # grouped and joined views read a version by its number too
    import httpx

    base = f"{server.url}/api/v1"
    groups = httpx.get(f"{base}/runs/tbl/s/table-groups/shared", params={"by": "who", "version": 1}).json()
    assert [(group["value"], group["count"]) for group in groups["groups"]] == [("rank_1", 2)]
    joined = httpx.get(f"{base}/projects/tbl/table-join", params={
        "a_run": "s", "a_key": "shared", "a_version": 0, "b_run": "s", "b_key": "shared", "b_version": 1, "on": "i"}).json()
    assert joined["total"] == 2 and joined["rows"][0][1:] == ["primary", "rank_1"]
    assert httpx.get(f"{base}/runs/tbl/s/table-groups/shared", params={"by": "who", "version": 2}).status_code == 404

    # Audio, video and Html cells open a player, the GIF, a sandboxed frame (no allow-same-origin)
    page.goto(server.url + "/projects/tbl/runs/a/tables/av")
    _wait_rows(page, "av", "p.rows.length === 1")
    page.click(f"{_panel('av')} button.tp-media:has-text('audio')")
    page.wait_for_function("() => { const a = document.querySelector('dialog.tp-dialog[open] audio'); "
                           "return a && Math.abs(a.duration - 1) < 0.01; }")  # 8,000 samples at 8 kHz, decoded
    page.click("dialog.tp-dialog button")
    page.click(f"{_panel('av')} button.tp-media:has-text('video')")
    page.wait_for_function("() => { const i = document.querySelector('dialog.tp-dialog[open] img.tp-full'); "
                           "return i && i.naturalWidth === 16; }")
    page.click("dialog.tp-dialog button")
    page.click(f"{_panel('av')} button.tp-media:has-text('html')")
    frame = page.wait_for_selector("dialog.tp-dialog[open] iframe.media-html")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    assert frame.content_frame().wait_for_selector("#x").text_content() == "hi"
    page.click("dialog.tp-dialog button")
    if importlib.util.find_spec("plotly") is not None:  # the server draws figures with the package's plotly.js
        page.click(f"{_panel('av')} button.tp-media:has-text('plotly')")
        frame = page.wait_for_selector("dialog.tp-dialog[open] iframe.media-plotly")
        assert frame.get_attribute("sandbox") == "allow-scripts"
        drawn = frame.content_frame()
        drawn.wait_for_selector(".scatterlayer .trace")
        assert drawn.eval_on_selector_all(".scatterlayer .trace .point", "points => points.length") == 3


def test_histograms_over_steps_draw_the_logged_distributions(servers, tmp_path, page):  # noqa: F811
    root = tmp_path / "data"
    run = tracklet.init(project="hist", id="h", dir=str(root), settings=QUIET)
    bins = 48  # the panel's bins: logged on the same edges, each step comes back unchanged
    edges = np.linspace(-1.0, 1.0, bins + 1)
    logged = []
    for step in range(30):
        counts = np.zeros(bins, dtype=np.int64)
        counts[step] = 100  # a peak moving up one bin per step
        counts[(step + 10) % bins] = 50  # a smaller second one
        logged.append(counts)
        run.log({"weights": tracklet.Histogram(np_histogram=(counts, edges)), "loss": 1.0})
    run.log({f"layer{i}/w": tracklet.Histogram([i, i + 1]) for i in range(30)})
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/hist/runs/h")
    page.wait_for_selector(".hist-panel[data-key='weights'][data-steps='30']")
    probe = page.evaluate("() => { const p = window.__tracklet.probe('histogram:weights'); "
                          "return {steps: p.steps, edges: p.edges, counts: p.counts}; }")
    assert probe["steps"] == list(range(30))
    assert probe["edges"] == pytest.approx(edges.tolist())
    assert probe["counts"] == [pytest.approx(row.astype(float).tolist()) for row in logged]
    # The canvas: each step's peak bin in the darkest colour, its second peak half way, empty bins blank
    pixel = "([i, j]) => window.__tracklet.probe('histogram:weights').pixel(i, j)"
    heat = "(s) => window.__tracklet.probe('histogram:weights').heat(s)"
    darkest, half, blank = (page.evaluate(heat, s) for s in (1.0, 0.5, 0.0))
    for step in (0, 7, 29):
        assert page.evaluate(pixel, [step, step])[:3] == darkest
        assert page.evaluate(pixel, [step, (step + 10) % bins])[:3] == half
        assert page.evaluate(pixel, [step, (step + 20) % bins])[:3] == blank
    assert json.loads(json.dumps(page.text_content(".hist-panel[data-key='weights'] .hist-info"))).startswith("30 steps")
    # Many keys (a watched model's layers): the first 24 are drawn, the filter picks others
    panels = page.eval_on_selector_all(".hist-panel", "ps => ps.map(p => p.dataset.key)")
    assert panels == ["weights"] + [f"layer{i}/w" for i in range(23)]
    assert page.text_content(".hist-note") == "24 of 31 keys shown: filter to see others"
    page.fill("input.hist-filter", "layer2")
    page.wait_for_function("() => document.querySelectorAll('.hist-panel').length === 11")  # layer2, layer20..29
    assert page.eval_on_selector_all(".hist-panel", "ps => ps.map(p => p.dataset.key)")[0] == "layer2/w"


@pytest.mark.parametrize("refresh_fails_once", [False, True], ids=["plain", "a-refresh-fails-once"])
def test_a_live_runs_table_and_histograms_grow_without_reload(root, tmp_path, page, allowed_errors,  # noqa: F811
                                                              refresh_fails_once):
    # the test stops its server while the page still polls the live run (the page closes after)
    allowed_errors.append("ERR_CONNECTION_REFUSED")
    go, stop, ready = tmp_path / "go", tmp_path / "stop", tmp_path / "ready"
    code = f"""
        import os, time, tracklet
        run = tracklet.init(project="live", id="growing", dir={str(root)!r},
                            settings={{"console": "off", "system_metrics": False, "flush_interval": 0.1}})
        def wait(path):
            while not os.path.exists(path):
                time.sleep(0.02)
        preds = tracklet.Table(columns=["id", "score"], log_mode="INCREMENTAL")
        def log(step):
            for i in range(10):
                preds.add_data(step * 10 + i, i / 10)
            run.log({{"preds": preds, "w": tracklet.Histogram(np_histogram=([step, 1], [0.0, 1.0, 2.0]))}})
        for step in range(2):
            log(step)
        run.flush()
        open({str(ready)!r}, "w").close()
        wait({str(go)!r})
        for step in range(2, 4):
            log(step)
        run.flush()
        wait({str(stop)!r})
        run.finish()
    """
    writer = start_live_writer(code, ready)
    ui, url, token = start_ui(root)
    try:
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url) if "/table-versions/preds" in request.url else None)
        page.goto(url + "projects/live/runs/growing?token=" + token)
        page.wait_for_selector(f"{_panel('preds')}[data-total='20']")
        page.wait_for_selector(".hist-panel[data-key='w'][data-steps='2']")
        if refresh_fails_once:  # the rows of the new version fail once (a server busy, a dropped connection)
            allowed_errors.append("ERR_FAILED")
            failures = [1]

            def fail_once(route):
                if failures and "/tables/" in route.request.url:
                    failures.pop()
                    route.abort()
                else:
                    route.continue_()

            page.route("**/api/v1/runs/live/growing/tables/**", fail_once)
        go.touch()
        page.wait_for_selector(f"{_panel('preds')}[data-total='40']")  # the latest version, asked again
        assert not refresh_fails_once or failures == []  # a later poll asked again
        page.wait_for_selector(".hist-panel[data-key='w'][data-steps='4']")
        page.eval_on_selector(f"{_panel('preds')} .tp-scroll", "s => { s.scrollTop = s.scrollHeight; }")
        rows = _wait_rows(page, "preds", "p.rows[p.rows.length - 1].index === 39")
        assert all(row["cells"][0] == str(row["index"]) for row in rows["rows"])  # the new rows, in order
        options = page.eval_on_selector_all(f"{_panel('preds')} select.tp-version option", "o => o.map(x => x.value)")
        assert options == ["", "3", "2", "1", "0"]
        # the first ask is one request for the latest versions (not every page of a long key), with the
        # cursor where later ones start; each poll asks only from where the last answer ended
        assert "cursor=" not in asked[0] and "limit=" not in asked[0], asked
        assert asked[1:] and all("cursor=" in ask for ask in asked[1:]), asked
    finally:
        go.touch()
        stop.touch()
        writer.wait(timeout=30)
        ui.terminate()
        ui.wait(timeout=10)


def test_masks_and_boxes_are_drawn_over_image_cells(servers, tmp_path, page):  # noqa: F811
    """An image cell logged with a mask and boxes shows them over its thumbnail: the mask's class
    ids as the class colours (id 0 clear) at the logged pixels, each box where it was logged; at
    full size each mask and box group has a toggle."""
    root = tmp_path / "data"
    pixels = np.full((30, 40, 3), 20, dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 2
    run = tracklet.init(project="ov", id="r", dir=str(root), settings=QUIET)
    image = tracklet.Image(pixels, masks={"truth": {"mask_data": mask, "class_labels": {2: "cat"}}},
                           boxes={"pred": {"box_data": [{"position": {"minX": 0.25, "maxX": 0.75, "minY": 0.1, "maxY": 0.5},
                                                         "class_id": 2, "box_caption": "cat", "scores": {"p": 0.9}}],
                                           "class_labels": {2: "cat"}}})
    run.log({"seg": tracklet.Table(columns=["id", "img"], data=[[0, image], [1, tracklet.Image(pixels)]])})
    run.finish()
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/ov/runs/r/tables/seg")
    _wait_rows(page, "seg", "p.rows.length === 2")
    cell = f"{_panel('seg')} .tp-row[data-row='0'] .tp-frame"
    page.wait_for_selector(f"{cell} canvas.media-mask")
    # the mask canvas holds the class colours at the logged pixels, clear elsewhere
    colours = page.eval_on_selector(f"{cell} canvas.media-mask", "c => { const g = c.getContext('2d'); "
                                    "return [c.width, c.height, Array.from(g.getImageData(20, 10, 1, 1).data), "
                                    "Array.from(g.getImageData(2, 2, 1, 1).data), Array.from(g.getImageData(20, 20, 1, 1).data)]; }")
    assert colours[:2] == [40, 30] and colours[3:] == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert colours[2] == pytest.approx([60, 180, 75, 110], abs=2)  # classColour(2) at alpha 110 (premultiplied: ±1)
    # the box, in the image's coordinates, labelled
    rect = page.eval_on_selector(f"{cell} svg.media-boxes rect", "r => [r.closest('svg').getAttribute('viewBox'), "
                                 "['x', 'y', 'width', 'height'].map(a => Number(r.getAttribute(a))), r.textContent]")
    assert rect[0] == "0 0 40 30" and rect[1] == pytest.approx([10, 3, 20, 12]) and rect[2].startswith("cat · cat · p 0.900")
    # both layers cover the thumbnail exactly (they stretch with it)
    boxes = page.eval_on_selector(cell, "f => [f.querySelector('img'), f.querySelector('canvas'), f.querySelector('svg')]"
                                  ".map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })")
    assert boxes[0][1] > 0 and boxes[1] == pytest.approx(boxes[0], abs=0.5) and boxes[2] == pytest.approx(boxes[0], abs=0.5)
    assert page.query_selector(f"{_panel('seg')} .tp-row[data-row='1'] .tp-frame") is None  # no overlays: a plain thumbnail
    # at full size: the layers again, each with a toggle that hides it
    page.click(cell)
    page.wait_for_selector("dialog.tp-dialog[open] .tp-frame canvas.media-mask")
    page.wait_for_function("() => document.querySelectorAll('dialog.tp-dialog .media-toggles input').length === 2")
    assert sorted(page.eval_on_selector_all("dialog.tp-dialog .media-toggles input", "i => i.map(x => x.dataset.layer)")) == [
        "pred", "truth"]
    page.uncheck("dialog.tp-dialog .media-toggles input[data-layer='truth']")
    assert page.eval_on_selector("dialog.tp-dialog canvas.media-mask", "c => getComputedStyle(c).display") == "none"
    assert page.eval_on_selector("dialog.tp-dialog svg.media-boxes", "s => getComputedStyle(s).display") != "none"


def test_a_table_compared_with_another_key_joins_on_a_column_both_have(servers, tables_root, page):  # noqa: F811
    """Compare offers the chosen run's table keys (this panel's key first); a table of another key
    with columns of its own joins on a column both tables have; the choice is in the URL; a table
    sharing no column says so and keeps the rows shown."""
    root, _ = tables_root
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/tbl/runs/a/tables/cells")
    _wait_rows(page, "cells", "p.rows.length === 6")
    page.select_option(f"{_panel('cells')} select.tp-compare", "b")
    page.wait_for_selector(f"{_panel('cells')}[data-total='9']")  # b's `cells`, joined on id
    keys = page.eval_on_selector_all(f"{_panel('cells')} select.tp-compare-key option", "o => o.map(x => x.value)")
    assert sorted(keys) == ["cells", "misc", "preds"] and page.input_value(f"{_panel('cells')} select.tp-compare-key") == "cells"
    page.select_option(f"{_panel('cells')} select.tp-compare-key", "preds")
    page.wait_for_selector(f"{_panel('cells')}[data-total='10']")  # ids 0-5 and 4-9
    joined = _wait_rows(page, "cells", "p.columns.includes('b.pred')")
    assert joined["columns"] == ["id", "a.img", "a.guess", "b.key", "b.pred"]
    assert page.eval_on_selector_all(f"{_panel('cells')} select.tp-on option", "o => o.map(x => x.value)") == ["id"]
    by_id = {row["cells"][0]: row["cells"] for row in joined["rows"]}
    assert by_id["5"][2:] == ["g1", "k5", "p5"] and by_id["0"][3:] == ["", ""] and by_id["9"][2:] == ["", "k9", "p9"]
    assert "vs=b" in page.url and "vs_key=preds" in page.url and "on=id" in page.url
    page.reload()
    page.wait_for_selector(f"{_panel('cells')}[data-total='10']")
    assert _wait_rows(page, "cells", "p.columns.includes('b.pred')")["columns"][-1] == "b.pred"
    # `misc` shares no column with `cells`: said, and the join shown stays
    page.select_option(f"{_panel('cells')} select.tp-compare-key", "misc")
    page.wait_for_selector(f"{_panel('cells')} .tp-error:not([hidden])")
    assert "no column in common" in page.text_content(f"{_panel('cells')} .tp-error")
    assert page.get_attribute(_panel("cells"), "data-total") == "10"
    # another table of this run can be chosen too
    assert "a" in page.eval_on_selector_all(f"{_panel('cells')} select.tp-compare option", "o => o.map(x => x.value)")


def test_a_table_opened_at_its_url_asks_for_its_rows_without_waiting_for_its_versions(  # noqa: F811
        servers, tables_root, page):  # noqa: F811
    """The first page is asked for beside the versions list, not after it: with the versions'
    response held back, the rows' request is made anyway, and once both are in, the panel shows
    the filtered rows and their count against the version's rows."""
    root, _ = tables_root
    server = servers(root, dev=True)
    held = []
    page.route(lambda url: "/table-versions/cells" in url, lambda route: held.append(route))
    with page.expect_request(lambda request: "/api/v1/runs/tbl/a/tables/cells?" in request.url,
                             timeout=30_000) as asked:
        page.goto(server.url + "/projects/tbl/runs/a/tables/cells?filter=id+%3E%3D+2&sort=id&desc=1")
    assert "offset=0" in asked.value.url and held, "the rows were asked for while the versions were held back"
    for route in held:
        route.continue_()
    cells = _wait_rows(page, "cells", "p.rows.length === 4")
    assert [row["cells"][0] for row in cells["rows"]] == ["5", "4", "3", "2"]
    assert page.text_content(f"{_panel('cells')} .tp-count") == "4 of 6 rows"


def test_a_versions_media_cells_are_asked_for_by_that_version(servers, tables_root, page):  # noqa: F811
    """A media cell's file is asked for with the version the panel shows (`table-blobs?version=`):
    the server looks in that version's records alone, not in the key's last logs (an old version's
    cell past them would not be found)."""
    root, _ = tables_root
    server = servers(root, dev=True)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/table-blobs/" in request.url else None)
    page.goto(server.url + "/projects/tbl/runs/a/tables/cells?version=0")
    page.wait_for_function("() => Array.from(document.querySelectorAll('img.tp-thumb'))"
                           ".filter(i => i.naturalWidth === 16).length === 6")
    assert len(asked) == 6 and all("key=cells" in url and "version=0" in url for url in asked), asked


def test_a_media_cell_whose_file_failed_is_asked_for_again_by_the_next_view(
        servers, tables_root, page, allowed_errors):  # noqa: F811
    """A cell's file that could not be fetched (the connection dropped; a 404 under the version shown)
    is not kept as failed: the next view showing that digest (here the same table at version 0)
    asks for it again and shows it. Before, the failure was kept per digest until a reload, so a
    digest missing under one version showed as unavailable under every other."""
    root, _ = tables_root
    server = servers(root, dev=True)
    failing = [True]
    allowed_errors.append("Failed to load resource")

    def blobs(route):
        if failing[0]:
            route.abort()
        else:
            route.continue_()

    page.route("**/table-blobs/**", blobs)
    page.goto(server.url + "/projects/tbl/runs/a/tables/cells")
    page.wait_for_function("() => Array.from(document.querySelectorAll('span.muted'))"
                           ".filter(s => s.textContent === 'image unavailable').length === 6")
    failing[0] = False
    # the same page at version 0, in the app (the router's popstate render; a reload would start afresh)
    page.evaluate("() => { history.pushState(null, '', '?version=0'); dispatchEvent(new PopStateEvent('popstate')); }")
    page.wait_for_function("() => Array.from(document.querySelectorAll('img.tp-thumb'))"
                           ".filter(i => i.naturalWidth === 16).length === 6")
