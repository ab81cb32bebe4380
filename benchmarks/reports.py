"""Reports (issue #20): a report of 20 panels × 50 runs in a real browser, and its exports.

    python benchmarks/reports.py [--panels 20] [--runs 50] [--steps 1000] [--repeat 3] [--json PATH]
                                 [--baseline CHECKOUT]

Writes ``--runs`` record logs directly (benchmarks/store.py: ``--steps`` rows of ``--panels``
metrics each), indexes them, starts ``tracklet server --dev``, creates a report with one panel per
metric over all the runs (``runs: {limit: --runs}``), and measures:

- paint: navigation start → every panel of the report drawn (the report's ``report-painted`` mark:
  each panel's data answered and its chart drawn; then the next frame made, which rasterises the
  charts' canvases), in Debian's chromium through Playwright;
- HTML export: ``take_snapshot`` (the report and every panel's bucketed data from the server) then
  ``export_snapshot(..., "html")`` (the bundle inlined): time (and the snapshot's share) and size;
- PDF export: ``export_report(..., "pdf")`` as the CLI runs it: the snapshot, the page rendered in
  Chromium (started meanwhile) and printed (``page.pdf()``).

Paint is also reported as the CPU seconds Chromium and the server spent per paint: on a shared
machine the wall time is mostly waiting for a core (the load average is printed with the table).

Targets: paint ≤ 1.5 s; HTML ≤ 5 s and ≤ 5 MB; PDF ≤ 10 s. Reported, not asserted. Median (and
best) of ``--repeat``.

``--baseline CHECKOUT`` (a copy of another commit with its dashboard bundle built, e.g. ``git
archive main | tar -x -C /tmp/base``) measures that code in the same run, alternating with this
one, over the same data: a second server for paint, and ``tracklet report export --format pdf``
run as a command by each (wall time, and the CPU of its whole process tree, Chromium included).
On a shared machine only such same-run ratios mean much.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from report import print_table, write_json  # noqa: E402
from store import write_run  # noqa: E402  (a record log written directly)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def record(root: Path, runs: int, panels: int, steps: int) -> float:
    started = time.perf_counter()
    for index in range(runs):
        write_run(root, "bench", f"r{index:03d}", steps=steps, keys=panels, seed=index)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tracklet", "--dir", str(root), "index"], env=env, check=True,
                   capture_output=True, timeout=3600)
    return time.perf_counter() - started


def report_markdown(panels: int, runs: int) -> str:
    blocks = ["# Benchmark report\n\nEvery metric of every run.\n"]
    for key in range(panels):
        blocks.append(f"```tracklet-panel\ntitle: metric {key}\nkeys: [metric_{key}]\nsize: s\n"
                      f"runs:\n  limit: {runs}\n```\n")
    return "\n".join(blocks)


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of these processes and their children, by kind:
    "server", "chromium" (every Chromium process)."""
    import psutil

    found = {"server": 0.0, "chromium": 0.0}
    for kind, pid in zip(("server", "chromium"), pids):
        try:
            parent = psutil.Process(pid)
            family = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            continue
        for process in family:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            if kind == "server" or "chrom" in process.name():
                found[kind] += times.user + times.system
    return found


DATA_BYTES = ("() => performance.getEntriesByType('resource').filter(e => e.name.includes('/data?'))"
              ".reduce((sum, e) => [sum[0] + e.encodedBodySize, sum[1] + e.decodedBodySize], [0, 0])")


def paint(browser, url: str, panels: int, pids: list[int]) -> tuple[float, float, dict[str, float]]:
    """(ms from navigation start to every panel drawn, ms to the first panel drawn, CPU seconds
    spent meanwhile by the server and by Chromium, and the panel data's bytes as sent and as
    decoded: "sent", "decoded"), in a fresh context (no cache)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        before = cpu_seconds(pids)
        page.goto(url)
        page.wait_for_function("() => window.__tracklet.marks['report-painted'] !== undefined", timeout=120_000)
        # The charts' canvases are rasterised when the next frame is made (Chromium's FinalizeFrame):
        # painted means that frame is done, a requestAnimationFrame after it.
        shown = page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame("
                              "() => done(performance.now()))))")
        after = cpu_seconds(pids)
        states = page.evaluate("() => window.__tracklet.probe('report').panels.map(p => p.state)")
        assert states == ["drawn"] * panels, states
        first = page.evaluate("() => window.__tracklet.marks['report-first-panel']")
        sent, decoded = page.evaluate(DATA_BYTES)
        return float(shown), float(first or shown), {**{kind: after[kind] - before[kind] for kind in after},
                                                     "sent": sent, "decoded": decoded}
    finally:
        context.close()


def baseline_server(root: Path, checkout: Path):
    """``tracklet server --dev`` over ``root`` running the code (and dashboard bundle) of ``checkout``."""
    from serverproc import Server

    class Baseline(Server):
        def spawn(self) -> None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("ab") as stderr:
                # cwd too: `python -m` puts the working directory first on sys.path, so a baseline
                # started from this checkout's root would import this checkout's tracklet.
                self.proc = subprocess.Popen(self.args, env={**os.environ, "PYTHONPATH": str(checkout)},
                                             cwd=checkout, stdout=subprocess.DEVNULL, stderr=stderr)

    return Baseline(root).start()


def cli_pdf(checkout: Path, url: str, report_id: str, out: Path) -> tuple[float, float]:
    """(wall s, CPU s of its process tree) of ``tracklet report export --format pdf`` run with
    ``checkout``'s code against the server at ``url``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tracklet", "report", "export", f"bench/{report_id}", "--url", url,
                    "--format", "pdf", "-o", str(out)], env={**os.environ, "PYTHONPATH": str(checkout)},
                   cwd=checkout, check=True, capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (each panel: runs × steps points)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--paint-only", action="store_true", help="measure paint only (no exports)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout (bundle built) to measure in the same run, alternating with this one")
    args = parser.parse_args()
    import httpx
    from playwright.sync_api import sync_playwright
    from serverproc import Server

    from tracklet.reports.export import HttpReportSource, export_report, export_snapshot, take_snapshot

    os.environ.setdefault("TRACKLET_CHROMIUM", args.chromium)
    with tempfile.TemporaryDirectory(prefix="tracklet-reports-bench-") as tmp:
        root = Path(tmp) / "srv"
        prepared = record(root, args.runs, args.panels, args.steps)
        print(f"recorded and indexed {args.runs} runs × {args.steps:,} steps × {args.panels} metrics in {prepared:.1f} s")
        server = Server(root).start()
        try:
            made = httpx.post(f"{server.url}/api/v1/projects/bench/reports", timeout=60,
                              json={"title": "Benchmark", "markdown": report_markdown(args.panels, args.runs)})
            made.raise_for_status()
            report_id = str(made.json()["id"])
            page_url = f"{server.url}/projects/bench/reports/{report_id}"
            base = baseline_server(root, args.baseline) if args.baseline else None
            base_url = f"{base.url}/projects/bench/reports/{report_id}" if base else ""
            base_measured = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                pids = [server.proc.pid, os.getpid()]  # Chromium runs under Playwright's driver, a child of ours
                cold = paint(browser, page_url, args.panels, pids)  # the server's first: imports, cold caches
                if base:
                    paint(browser, base_url, args.panels, [base.proc.pid, os.getpid()])
                measured = []
                for _ in range(args.repeat):  # alternating, so both see the same load
                    measured.append(paint(browser, page_url, args.panels, pids))
                    if base:
                        base_measured.append(paint(browser, base_url, args.panels, [base.proc.pid, os.getpid()]))
                browser.close()
            cli_this, cli_base = [], []
            if base and not args.paint_only:
                for _ in range(args.repeat):
                    cli_this.append(cli_pdf(ROOT, server.url, report_id, Path(tmp) / "this.pdf"))
                    cli_base.append(cli_pdf(args.baseline, base.url, report_id, Path(tmp) / "base.pdf"))
            if base:
                base.stop()
            paints = [ms for ms, _, _ in measured]
            firsts = [first for _, first, _ in measured]
            browser_cpu = [cpu["chromium"] for _, _, cpu in measured]
            server_cpu = [cpu["server"] for _, _, cpu in measured]
            source = HttpReportSource(server.url)
            html_times, pdf_times, snap_times, size = [], [], [], 0
            for _ in range(0 if args.paint_only else args.repeat):
                started = time.perf_counter()
                snapshot = take_snapshot(source, "bench", report_id)
                fetched = time.perf_counter()
                (html,) = export_snapshot(snapshot, "html", Path(tmp) / "report.html")
                html_times.append(time.perf_counter() - started)
                snap_times.append(fetched - started)
                size = html.stat().st_size
                started = time.perf_counter()
                export_report(source, "bench", report_id, "pdf", Path(tmp) / "report.pdf")  # as the CLI does
                pdf_times.append(time.perf_counter() - started)
            source.close()
        finally:
            server.stop()

    def cell(values: list[float], unit: str, scale: float = 1.0) -> str:
        if not values:
            return "not measured"
        return f"{statistics.median(values) * scale:,.2f} {unit} (best {min(values) * scale:,.2f})"

    rows = [
        [f"paint: {args.panels} panels × {args.runs} runs × {args.steps:,} steps drawn", cell(paints, "s", 1e-3),
         "target ≤ 1.5 s"],
        ["  … the first panel drawn", cell(firsts, "s", 1e-3), ""],
        ["  … CPU of Chromium (all its processes) per paint", cell(browser_cpu, "s"), ""],
        ["  … CPU of the server per paint (warm)", cell(server_cpu, "s"), f"cold: {cold[2]['server']:.2f} s"],
        ["  … panel data per paint, as sent / decoded", f"{cold[2]['sent'] / 1e6:,.2f} / {cold[2]['decoded'] / 1e6:,.2f} MB",
         ""],
        ["HTML export (offline file)", cell(html_times, "s"), "target ≤ 5 s"],
        ["  … of which the panels' data from the server", cell(snap_times, "s"), ""],
        ["  … its size", f"{size / 1e6:,.2f} MB", "target ≤ 5 MB"],
        ["PDF export (Chromium start included)", cell(pdf_times, "s"), "target ≤ 10 s"],
    ]
    if base_measured:
        rows += [
            ["baseline: paint", cell([ms for ms, _, _ in base_measured], "s", 1e-3), str(args.baseline)],
            ["baseline: … CPU of Chromium per paint", cell([cpu["chromium"] for _, _, cpu in base_measured], "s"), ""],
            ["baseline: … panel data, as sent / decoded", f"{base_measured[0][2]['sent'] / 1e6:,.2f} / "
             f"{base_measured[0][2]['decoded'] / 1e6:,.2f} MB", ""],
            ["this: `report export --format pdf` (a command)", cell([wall for wall, _ in cli_this], "s"), ""],
            ["  … CPU of its process tree", cell([cpu for _, cpu in cli_this], "s"), ""],
            ["baseline: `report export --format pdf`", cell([wall for wall, _ in cli_base], "s"), ""],
            ["  … CPU of its process tree", cell([cpu for _, cpu in cli_base], "s"), ""],
        ]
    print_table(rows, header=[f"measure (median of {args.repeat})", "value", "target"])
    print(f"load average (1, 5, 15 min): {', '.join(f'{value:.1f}' for value in os.getloadavg())} on {os.cpu_count()} CPUs")
    write_json(args.json, {"paint_ms": paints, "first_panel_ms": firsts, "chromium_cpu_s": browser_cpu,
                           "server_cpu_s": server_cpu, "data_bytes": [cpu["sent"] for _, _, cpu in measured],
                           "baseline_data_bytes": [cpu["sent"] for _, _, cpu in base_measured], "load": os.getloadavg(), "html_s": html_times, "snapshot_s": snap_times, "html_bytes": size, "pdf_s": pdf_times,
                           "panels": args.panels, "runs": args.runs, "steps": args.steps,
                           "baseline_paint_ms": [ms for ms, _, _ in base_measured],
                           "baseline_chromium_cpu_s": [cpu["chromium"] for _, _, cpu in base_measured],
                           "cli_pdf": cli_this, "baseline_cli_pdf": cli_base})


if __name__ == "__main__":
    main()
