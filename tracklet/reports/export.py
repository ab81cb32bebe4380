"""Reports exported (``tracklet report export``, docs/reports.md): one offline HTML file, a PDF, a
PNG per panel, or the Markdown with its panels as PNG images.

Every format starts from a **snapshot**: the report (its blocks, as ``GET .../reports/{id}``
answers) and each panel's data (as ``GET .../reports/{id}/panels/{index}/data`` answers: the
bucketed history, min/max per bucket, so a one-step spike survives). A ``ReportSource`` gives
both: ``HttpReportSource`` asks a server, ``LocalReportSource`` reads a data root's reports and
store.

- **HTML**: the dashboard's bundle (``tracklet/server/static``: its script and styles inlined) and
  the snapshot (gzip, base64) in one file. The bundle sees the snapshot and draws the report from
  it (``web/src/reports/snapshot.ts``) without a request: it opens with the network off, with the
  same charts (hover values, bands, zoom) as the dashboard.
- **PDF, PNG, Markdown**: that file opened in Chromium (Playwright, Debian's ``chromium`` or
  ``$TRACKLET_CHROMIUM``) with networking off: ``page.pdf()``, each panel's screenshot at 2x device
  scale, and the Markdown with each ``tracklet-panel`` block replaced by its image.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from tracklet.errors import MissingDependency, ReportError, TrackletError

FORMATS = ("html", "pdf", "png", "md")
SNAPSHOT_ID = "tracklet-report-snapshot"
SNAPSHOT_FORMAT = 1
STATIC_DIR = Path(__file__).resolve().parents[1] / "server" / "static"
# Buckets per series in a snapshot, by panel size: about one per 2.5 CSS pixels of the panel's width on
# the export's page (s ≈ 330 px, m ≈ 500, l ≈ 1015), the band (min and max per bucket) keeping
# every spike. Full-precision values are ~8 bytes each even compressed, so this is what keeps a
# report of 20 panels × 50 runs near 5 MB; ``buckets=`` asks for more (or fewer) everywhere.
SNAPSHOT_BUCKETS = {"s": 128, "m": 200, "l": 400}
# The page the PDF and PNGs are rendered at: A4 landscape's printable width (10 mm margins) at 96 dpi.
PAGE_WIDTH_PX = 1047
DEVICE_SCALE = 2
RENDER_TIMEOUT_MS = 120_000
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run")


class ReportSource(Protocol):
    """Where a report and its panels' data come from (a server, a data root)."""

    def report(self, project: str, report_id: str, version: int | None = None) -> dict[str, Any]:
        """The report as ``GET /api/v1/projects/{project}/reports/{id}`` answers."""
        ...

    def panel_data(self, project: str, report_id: str, index: int, version: int, buckets: int) -> dict[str, Any]:
        """Panel ``index``'s data as ``GET .../reports/{id}/panels/{index}/data?buckets=`` answers."""
        ...


class HttpReportSource:
    """A tracking server's reports, through the one HTTP client (key, retries, refusals).
    ``token``: a report's view token instead of an API key."""

    def __init__(self, base_url: str, *, api_key: str | None = None, token: str | None = None) -> None:
        from tracklet.client.http import HttpClient

        self._client = HttpClient(base_url, api_key=api_key)
        self._headers = {"X-Tracklet-Report-Token": token} if token else {}

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        from tracklet.errors import ReportNotFound

        response = self._client.request("GET", path, headers=self._headers,
                                        params={k: v for k, v in params.items() if v is not None})
        if response.status_code != 200:
            raise self._client.refusal(response, missing=ReportNotFound)
        body: dict[str, Any] = response.json()
        return body

    def report(self, project: str, report_id: str, version: int | None = None) -> dict[str, Any]:
        return self._get(f"/api/v1/projects/{quote(project, safe='')}/reports/{quote(str(report_id), safe='')}",
                         version=version)

    def panel_data(self, project: str, report_id: str, index: int, version: int, buckets: int) -> dict[str, Any]:
        return self._get(f"/api/v1/projects/{quote(project, safe='')}/reports/{quote(str(report_id), safe='')}"
                         f"/panels/{int(index)}/data", version=version, buckets=buckets)

    def panels(self, project: str, report_id: str, version: int, wanted: list[tuple[int, int]]
               ) -> dict[int, dict[str, Any]]:
        """Several panels' data in one request (``GET .../reports/{id}/data``): ``wanted`` is
        (index, buckets) pairs; the answer by index."""
        from tracklet.errors import ReportNotFound

        if not wanted:
            return {}
        response = self._client.request(
            "GET", f"/api/v1/projects/{quote(project, safe='')}/reports/{quote(str(report_id), safe='')}/data",
            headers=self._headers, params={"version": version, "panels": [index for index, _ in wanted],
                                           "buckets": [count for _, count in wanted]})
        if response.status_code != 200:
            raise self._client.refusal(response, missing=ReportNotFound)
        lines = (json.loads(line) for line in response.text.splitlines() if line.strip())
        return {int(line["index"]): line["data"] for line in lines}


class BackendSource:
    """``tracklet.Report``'s backends (``reports/backends.py``: ``LocalReports``, ``RemoteReports``)
    as a ``ReportSource``: the same run-set resolution as the server's data route."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def close(self) -> None:
        self.backend.close()

    def report(self, project: str, report_id: str, version: int | None = None) -> dict[str, Any]:
        report: dict[str, Any] = self.backend.get(project, _report_number(report_id), version)
        return report

    def panel_data(self, project: str, report_id: str, index: int, version: int, buckets: int) -> dict[str, Any]:
        data: dict[str, Any] = self.backend.panel_data(project, _report_number(report_id), index, version=version,
                                                       buckets=buckets)
        return data


class LocalReportSource(BackendSource):
    """A data root's reports (``<root>/reports.sqlite``) and runs (its store, indexed first): what
    ``tracklet ui`` over that root answers, everything readable (a local root has no roles)."""

    def __init__(self, root: str | os.PathLike[str], *, store_url: str | None = None) -> None:
        from tracklet.reports.backends import LocalReports

        super().__init__(LocalReports(root, store_url=store_url))


def _report_number(report_id: str | int) -> int:
    try:
        return int(report_id)
    except ValueError:
        raise ReportError(f"a report id is a number; got {report_id!r}") from None


# ---------------------------------------------------------------------------------------- snapshot


def take_snapshot(source: ReportSource, project: str, report_id: str, version: int | None = None,
                  *, buckets: int | None = None, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """The report and every panel's data, as the exported file embeds them (``buckets`` per
    series, default by the panel's size: ``SNAPSHOT_BUCKETS``). A panel whose data can't be had
    carries the reason as its ``error`` (drawn as that panel's error card); the report itself
    must be readable."""
    if buckets is not None and not 1 <= buckets <= 100_000:
        raise ReportError(f"buckets must be between 1 and 100000; got {buckets}")
    report = source.report(project, report_id, version)
    wanted: list[tuple[int, int]] = []
    for block in report.get("blocks", []):
        if block.get("kind") != "panel" or block.get("error"):
            continue
        size = str((block.get("spec") or {}).get("size") or "m")
        wanted.append((int(block["index"]), buckets if buckets is not None
                       else SNAPSHOT_BUCKETS.get(size, SNAPSHOT_BUCKETS["m"])))
    found: dict[int, dict[str, Any]] = {}
    many = getattr(source, "panels", None)  # a server answers them all in one request
    if many is not None:
        try:
            found = many(project, report_id, int(report["version"]), wanted)
        except TrackletError:
            found = {}  # (an older server without the route) asked for one by one below
    panels: dict[str, Any] = {}
    for index, count in wanted:
        try:
            panels[str(index)] = found[index] if index in found else source.panel_data(
                project, report_id, index, int(report["version"]), count)
        except TrackletError as problem:
            panels[str(index)] = {"access": "ok", "error": str(problem), "runs": [], "history": None}
    return {"format": SNAPSHOT_FORMAT, "report": report, "panels": panels, "exported_at": int(clock())}


# gzip level of the snapshot in an HTML file someone keeps (6: within 0.3% of 9's size, in 3/4 of its
# time) and in the page Chromium renders for PDF/PNG/Markdown and throws away (1: a fifth of 6's time).
KEPT_LEVEL = 6
RENDER_LEVEL = 1


def encode_snapshot(snapshot: dict[str, Any], level: int = KEPT_LEVEL) -> str:
    """base64 of the gzip of the snapshot's JSON (deterministic: no timestamp in the gzip header).
    NaN and infinities are written as the API writes them ("NaN", "Infinity")."""
    text = json.dumps(snapshot, separators=(",", ":"), allow_nan=False, default=_not_json)
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=level, mtime=0)).decode("ascii")


def decode_snapshot(text: str) -> dict[str, Any]:
    """The snapshot ``encode_snapshot`` wrote."""
    snapshot: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(text)))
    return snapshot


def _not_json(value: Any) -> Any:
    raise TypeError(f"a report snapshot holds only JSON values; got {type(value).__name__}")


# -------------------------------------------------------------------------------------------- html


_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="/assets/([^"]+\.js)"[^>]*>\s*</script>')
_STYLE = re.compile(r'<link\b[^>]*\brel="stylesheet"[^>]*\bhref="/assets/([^"]+\.css)"[^>]*>')


def inline_script(js: str) -> str:
    """JavaScript safe inside ``<script>``: ``</script`` and ``<!--`` escaped (the same program)."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def offline_html(snapshot: dict[str, Any], static_dir: Path = STATIC_DIR, *, level: int = KEPT_LEVEL) -> str:
    """One HTML file: the dashboard bundle's script and styles inlined, and the snapshot (gzip
    ``level``)."""
    index = static_dir / "index.html"
    if not index.is_file():
        raise MissingDependency(f"the dashboard's bundle is missing from this installation ({static_dir}); "
                                "build it with 'npm ci && npm run build' in web/")
    page = index.read_text(encoding="utf-8")
    assets = static_dir / "assets"

    def asset(name: str) -> str:
        path = (assets / name).resolve()
        if path.parent != assets.resolve() or not path.is_file():
            raise MissingDependency(f"the dashboard's bundle names {name}, which is not in {assets}")
        return path.read_text(encoding="utf-8")

    scripts = [asset(name) for name in _SCRIPT.findall(page)]
    styles = [asset(name) for name in _STYLE.findall(page)]
    if not scripts:
        raise MissingDependency(f"no script in the dashboard's bundle ({index})")
    page = _SCRIPT.sub("", page)
    page = _STYLE.sub("", page)
    title = str(snapshot["report"].get("title") or snapshot["report"].get("id"))
    page = re.sub(r"<title>.*?</title>", lambda _: f"<title>{_escape(title)} · tracklet report</title>", page, count=1)
    page = re.sub(r'<a href="/" class="brand" data-link>', '<a class="brand">', page)
    head = "".join("<style>" + re.sub(r"</(style)", r"<\\/\1", css, flags=re.IGNORECASE) + "</style>\n"
                   for css in styles)
    body = (f'<script type="application/json" id="{SNAPSHOT_ID}">{encode_snapshot(snapshot, level)}</script>\n'
            + "".join(f'<script type="module">{inline_script(js)}</script>\n' for js in scripts))
    page = page.replace("</head>", head + "</head>", 1).replace("</body>", body + "</body>", 1)
    return page


# ------------------------------------------------------------------------------------- rendering


def chromium_path() -> str:
    """The Chromium to render with: ``$TRACKLET_CHROMIUM``, else ``chromium`` on the PATH."""
    path = os.environ.get("TRACKLET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        raise MissingDependency("PDF, PNG and Markdown export render the report in Chromium: install it "
                                "(apt-get install chromium) or set TRACKLET_CHROMIUM to its path")
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's ``Browser``), closed on leaving."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingDependency("PDF, PNG and Markdown export need Playwright: pip install playwright "
                                "(it drives the installed Chromium; no browser download)") from None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def rendered(html_path: Path, *, width: int = PAGE_WIDTH_PX, browser: Any = None) -> Iterator[Any]:
    """A Chromium page (offline, 2x device scale) with the exported file open and every panel
    drawn, in ``browser`` (default: one started for it)."""
    if browser is None:
        with chromium() as started, rendered(html_path, width=width, browser=started) as page:
            yield page
        return
    context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=DEVICE_SCALE,
                                  offline=True)
    try:
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:", "blob:"))
                      else route.abort())
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(html_path.resolve().as_uri())
        try:
            page.wait_for_selector(".report-body[data-painted]", timeout=RENDER_TIMEOUT_MS)
        except Exception as problem:  # playwright's TimeoutError; the page's own errors say more
            raise ReportError(f"the report did not render in Chromium: {'; '.join(errors) or problem}") from None
        yield page
    finally:
        context.close()


def _write_pdf(page: Any, out: Path) -> None:
    page.pdf(path=str(out), format="A4", landscape=True, print_background=True,
             margin={"top": "10mm", "bottom": "10mm", "left": "10mm", "right": "10mm"})


def _write_pngs(page: Any, directory: Path) -> list[Path]:
    """One PNG per panel (chart or card), in panel order: ``panel-1.png``, ``panel-2.png``, ..."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for element in page.query_selector_all(".report-panel"):
        index = int(element.get_attribute("data-index"))
        path = directory / f"panel-{index + 1}.png"
        element.screenshot(path=str(path), animations="disabled")
        written.append(path)
    return written


def panel_title(block: dict[str, Any]) -> str:
    """The title a panel shows: its own, else its keys, else ``Panel N``."""
    spec = block.get("spec") or {}
    if spec.get("title"):
        return str(spec["title"])
    if spec.get("keys"):
        return ", ".join(str(key) for key in spec["keys"])
    return f"Panel {int(block['index']) + 1}"


def markdown_with_images(report: dict[str, Any], image_dir: str) -> str:
    """The report's Markdown with each ``tracklet-panel`` block replaced by its image
    (``image_dir/panel-N.png``, a path relative to the Markdown file)."""
    parts: list[str] = []
    for block in report.get("blocks", []):
        if block.get("kind") == "text":
            parts.append(str(block.get("markdown", "")))
            continue
        title = panel_title(block).replace("[", "\\[").replace("]", "\\]")
        target = f"{image_dir}/panel-{int(block['index']) + 1}.png"
        lead = "" if not parts or parts[-1].endswith("\n\n") else "\n" if parts[-1].endswith("\n") else "\n\n"
        parts.append(f"{lead}![{title}](<{target}>)\n\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------- export


def export_snapshot(snapshot: dict[str, Any], fmt: str, out: str | os.PathLike[str]) -> list[Path]:
    """Write ``snapshot`` as ``fmt`` to ``out``; the paths written. ``png``: ``out`` is a
    directory (a PNG per panel); ``md``: ``out`` and the images in ``<out stem>_files/``."""
    return _export(lambda: snapshot, fmt, out)


def _export(snapshot_of: Callable[[], dict[str, Any]], fmt: str, out: str | os.PathLike[str]) -> list[Path]:
    """``export_snapshot`` of ``snapshot_of()``. For pdf, png and md, Chromium starts (in a thread
    of its own) while the snapshot is taken and the page written: its start-up is most of a
    second, or several on a busy machine, that the export no longer waits for."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    target = Path(out)
    if fmt == "html":
        html = offline_html(snapshot_of(), level=KEPT_LEVEL)
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, html.encode("utf-8"))
        return [target]
    # Playwright's sync API refuses to run in a thread with a running event loop (Jupyter, an
    # async caller, another sync Playwright): Chromium is driven from a thread of its own.
    page: Future[str | None] = Future()  # the page to render; None: nothing to render (the snapshot failed)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracklet-report-export") as pool:
        rendering = pool.submit(_render, page, fmt, target)
        try:
            snapshot = snapshot_of()
            page.set_result(offline_html(snapshot, level=RENDER_LEVEL))
        except BaseException:
            page.set_result(None)
            raise
        written, images = rendering.result()
    if fmt != "md":
        return written
    _atomic_write(target, markdown_with_images(snapshot["report"], quote(images.name)).encode("utf-8"))
    return [target, *written]


def _render(page: Future[str | None], fmt: str, target: Path) -> tuple[list[Path], Path]:
    """Start Chromium, then open the page ``page`` gives and write ``fmt`` (pdf, png, md's
    images); (paths, image directory)."""
    with chromium() as browser, tempfile.TemporaryDirectory(prefix="tracklet-report-") as work:
        html = page.result()
        if html is None:
            return [], target
        page_path = Path(work) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        with rendered(page_path, browser=browser) as shown:
            if fmt == "pdf":
                temporary = Path(work) / "report.pdf"
                _write_pdf(shown, temporary)
                _atomic_write(target, temporary.read_bytes())
                return [target], target.parent
            if fmt == "png":
                return _write_pngs(shown, target), target
            images = target.parent / f"{target.stem}_files"
            return _write_pngs(shown, images), images


def export(report: Any, fmt: str, out: str | os.PathLike[str], *, version: int | None = None,
           buckets: int | None = None) -> list[Path]:
    """Export a saved ``tracklet.Report`` (from its data root or server) as ``fmt`` (html, pdf,
    png, md) to ``out``; the paths written. ``version``: default the one its page shows."""
    if report.id is None:
        raise ReportError("the report is not saved yet: call save() first")
    return export_report(BackendSource(report._backend), report.project, str(report.id), fmt, out, version=version,
                         buckets=buckets)


def export_report(source: ReportSource, project: str, report_id: str, fmt: str, out: str | os.PathLike[str], *,
                  version: int | None = None, buckets: int | None = None) -> list[Path]:
    """Export report ``report_id`` of ``project`` (the version its page shows: the published one,
    else the newest; or ``version``) from ``source`` as ``fmt`` (html, pdf, png, md) to ``out``;
    the paths written. ``buckets``: per series (default: by panel size, ``SNAPSHOT_BUCKETS``)."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return _export(lambda: take_snapshot(source, project, report_id, version, buckets=buckets), fmt, out)


@dataclass(frozen=True)
class Download:
    """One exported file to hand to a browser: its bytes, media type and file name."""

    data: bytes
    media_type: str
    filename: str


MEDIA_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "png": "application/zip",
               "md": "application/zip"}


def file_stem(report: dict[str, Any]) -> str:
    """A file name for the report (its title, ASCII letters, digits, ``.``, ``-`` and ``_``)."""
    stem = re.sub(r"[^\w.-]+", "_", str(report.get("title") or ""), flags=re.ASCII).strip("._")[:80]
    return stem or f"report-{report.get('id')}"


def export_download(source: ReportSource, project: str, report_id: str, fmt: str, *, version: int | None = None,
                    buckets: int | None = None) -> Download:
    """``export_report`` as one file for a browser to download (the dashboard's *Export*): html
    and pdf as they are; png (a PNG per panel) and md (the Markdown and its images) as a zip of
    what ``tracklet report export`` writes, laid out as it lays them out."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    source.report(project, report_id, version)  # a report that isn't there fails before Chromium starts
    taken: list[dict[str, Any]] = []

    def snapshot_of() -> dict[str, Any]:
        taken.append(take_snapshot(source, project, report_id, version, buckets=buckets))
        return taken[-1]

    with tempfile.TemporaryDirectory(prefix="tracklet-report-download-") as work:
        base = Path(work) / "report"
        target = {"html": base.with_suffix(".html"), "pdf": base.with_suffix(".pdf"), "png": base,
                  "md": base / "report.md"}[fmt]
        written = _export(snapshot_of, fmt, target)
        stem = file_stem(taken[-1]["report"])
        if fmt in ("html", "pdf"):
            return Download(written[0].read_bytes(), MEDIA_TYPES[fmt], f"{stem}.{fmt}")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:  # PNGs are compressed already: stored, the .md deflated
            for path in written:
                name = path.name if fmt == "png" else f"{stem}.md" if path == target else f"{stem}_files/{path.name}"
                if fmt == "md" and path == target:  # its image links name <stem>_files/, not report_files/
                    text = markdown_with_images(taken[-1]["report"], quote(f"{stem}_files"))
                    zipped.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)
                else:
                    zipped.write(path, f"{stem}/{name}" if fmt == "png" else name)
        suffix = "png" if fmt == "png" else "md"
        return Download(archive.getvalue(), MEDIA_TYPES[fmt], f"{stem}-{suffix}.zip")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
