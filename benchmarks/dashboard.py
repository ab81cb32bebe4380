"""The dashboard's speed in a real browser (issue #7), from the Performance API.

    python benchmarks/dashboard.py [--wide 1000] [--long 100] [--steps 100000] [--repeat 3] [--json PATH]

Writes record logs directly (benchmarks/store.py): a project of ``--wide`` runs, and one of
``--long`` runs × ``--steps`` steps of one metric; indexes them (`tracklet index`), starts
`tracklet ui --no-open`, and drives Debian's chromium with Playwright:

- first paint of the 1,000-run project: navigation start → the runs table's rows drawn (and →
  the first chart of the default selection drawn);
- the 100 long runs selected and overlaid: navigation start → the chart drawn (one history request
  for all runs, min/max/last buckets at about one per pixel);
- a zoom: the mouse released after a drag → the re-queried window drawn; each page load zooms
  into a window no earlier request read (cold), then zooms out and into it again (its decoded
  blocks cached by the server).

Targets: ≤ 1 s, ≤ 1 s, ≤ 300 ms. Reported, not asserted. Median (and best) of ``--repeat`` page
loads, each in a fresh browser context (no cache).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from report import print_table, write_json  # noqa: E402
from store import write_run  # noqa: E402  (a record log written directly)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def record(root: Path, wide: int, long: int, steps: int) -> float:
    started = time.perf_counter()
    for index in range(wide):
        write_run(root, "wide", f"w{index:05d}", steps=200, keys=3, seed=index)
    for index in range(long):
        write_run(root, "long", f"l{index:03d}", steps=steps, keys=1, seed=index)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tracklet", "--dir", str(root), "index"], env=env, check=True,
                   capture_output=True, timeout=3600)
    return time.perf_counter() - started


def start_ui(root: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ui = subprocess.Popen([sys.executable, "-m", "tracklet", "ui", "--dir", str(root), "--no-open", "--port", "0"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ui.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not match:
        ui.kill()
        raise SystemExit(f"tracklet ui did not start: {line}{ui.stderr.read()}")
    return ui, match.group()


def wait_chart(page, key: str, loads: int) -> dict:
    page.wait_for_function("([k, n]) => { const c = window.__tracklet.chart(k); return c && c.loads >= n }",
                           arg=[key, loads], timeout=120_000)
    return page.evaluate("k => window.__tracklet.chart(k)", key)


def drag_zoom(page, key: str, at: float, loads: int) -> float:
    """Drag across [at, at + 5 %] of the panel's width; ms from the mouse released to the
    re-queried window drawn (the chart's ``loads``-th draw)."""
    page.evaluate("() => { window.__released = null; addEventListener('mouseup', "
                  "() => { window.__released = performance.now() }, {capture: true, once: true}) }")
    box = page.locator(f".panel[data-key='{key}'] .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * at, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (at + 0.05), y, steps=4)
    page.mouse.up()
    zoomed = wait_chart(page, key, loads)
    return zoomed["drawnAt"] - page.evaluate("() => window.__released")


def measure(browser, url: str, long_ids: list[str], zoom_at: float) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    try:
        page.goto(url + "projects/wide")
        page.wait_for_function("() => window.__tracklet.marks['first-rows'] !== undefined", timeout=120_000)
        rows = page.evaluate("() => window.__tracklet.marks['first-rows']")
        first_chart = wait_chart(page, "metric_0", 1)["drawnAt"]
        page.goto(url + "projects/long?sel=" + ",".join(long_ids))
        overlay = wait_chart(page, "metric_0", 1)
        assert len(overlay["runs"]) == len(long_ids), len(overlay["runs"])
        zoom = drag_zoom(page, "metric_0", zoom_at, 2)  # a window no request has read yet
        page.dblclick(".panel[data-key='metric_0'] .u-over")  # zoom out, then into the same window again
        wait_chart(page, "metric_0", 3)
        zoom_again = drag_zoom(page, "metric_0", zoom_at, 4)
        return {"rows": rows, "first_chart": first_chart, "overlay": overlay["drawnAt"], "zoom": zoom,
                "zoom_again": zoom_again}
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wide", type=int, default=1000, help="runs in the wide project")
    parser.add_argument("--long", type=int, default=100, help="runs overlaid")
    parser.add_argument("--steps", type=int, default=100_000, help="steps per overlaid run")
    parser.add_argument("--repeat", type=int, default=3, help="page loads measured")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tracklet-dashboard-bench-") as tmp:
        root = Path(tmp)
        prepared = record(root, args.wide, args.long, args.steps)
        print(f"recorded and indexed {args.wide} + {args.long} × {args.steps:,} steps in {prepared:.1f} s")
        ui, url = start_ui(root)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                ids = [f"l{i:03d}" for i in range(args.long)]
                measure(browser, url, ids, 0.10)  # warm up the server (imports, connections)
                # Each page load zooms into a window not read before: the zoom is measured cold.
                runs = [measure(browser, url, ids, 0.20 + 0.60 * n / max(args.repeat, 1)) for n in range(args.repeat)]
                browser.close()
        finally:
            ui.terminate()
            ui.wait(timeout=10)

    def cell(name: str) -> str:
        values = [run[name] for run in runs]
        return f"{statistics.median(values):,.0f} ms (best {min(values):,.0f})"

    rows = [
        [f"first paint, {args.wide:,} runs: table rows drawn", cell("rows"), "target ≤ 1,000 ms"],
        ["  … and the first chart drawn", cell("first_chart"), ""],
        [f"{args.long} runs × {args.steps:,} steps overlaid and drawn", cell("overlay"), "target ≤ 1,000 ms"],
        ["zoom: mouse released → re-queried window drawn", cell("zoom"), "target ≤ 300 ms"],
        ["  … the same window again (decoded blocks cached)", cell("zoom_again"), ""],
    ]
    print_table(rows, header=[f"measure (median of {args.repeat} page loads)", "time", "target"])
    write_json(args.json, {"runs": runs, "wide": args.wide, "long": args.long, "steps": args.steps})


if __name__ == "__main__":
    main()
