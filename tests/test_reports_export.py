"""The report export's file assembly without a browser (tracklet/reports/export.py): the offline HTML
file inlines the bundle so that no text in the report or the bundle ends a script or the title
early, and carries the snapshot it was given; the Markdown export replaces exactly the panel blocks.
What the files look like in Chromium is tests/test_dashboard_reports.py's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracklet.errors import MissingDependency, ReportError
from tracklet.reports.export import (
    SNAPSHOT_ID,
    decode_snapshot,
    export_snapshot,
    markdown_with_images,
    offline_html,
)

HOSTILE = '</title><script>window.x = 1</script><!-- </script>'


def _bundle(tmp_path: Path, js: str) -> Path:
    """A dashboard bundle laid out as Vite writes it (index.html naming hashed assets)."""
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "assets" / "index-abc.js").write_text(js)
    (static / "assets" / "index-abc.css").write_text("body { color: red } /* </style> */")
    (static / "index.html").write_text(
        '<!doctype html>\n<html lang="en">\n  <head>\n    <title>tracklet</title>\n'
        '    <script type="module" crossorigin src="/assets/index-abc.js"></script>\n'
        '    <link rel="stylesheet" crossorigin href="/assets/index-abc.css">\n  </head>\n  <body>\n'
        '    <header id="top">\n      <a href="/" class="brand" data-link>tracklet</a>\n    </header>\n'
        '    <main id="app"></main>\n  </body>\n</html>\n')
    return static


def _snapshot(title: str, blocks: list[dict]) -> dict:
    report = {"id": 7, "project": "p", "title": title, "version": 1, "markdown": "", "blocks": blocks}
    return {"format": 1, "report": report, "panels": {"0": {"access": "ok", "error": None, "runs": [],
                                                             "history": {"series": [{"x": ["NaN"]}]}}},
            "exported_at": 0}


def test_offline_html_inlines_the_bundle_and_no_text_ends_a_script_or_the_title(tmp_path):
    js = 'const a = "</script><script>evil()</ScRiPt>"; const b = "<!--"; console.log(a, b);'
    snapshot = _snapshot(HOSTILE, [{"kind": "text", "markdown": HOSTILE}])
    html = offline_html(snapshot, _bundle(tmp_path, js))

    assert "/assets/" not in html and 'src="' not in html  # nothing left to fetch
    # Two scripts end, the snapshot and the module: the bundle's "</script" texts are escaped, and
    # without "<!--" a "<script" inside one is only text (HTML's script data states).
    assert len(re.findall(r"</script", html, re.IGNORECASE)) == 2
    assert re.search(r"<title>([^<]*)</title>", html).group(1) == (
        "&lt;/title&gt;&lt;script&gt;window.x = 1&lt;/script&gt;&lt;!-- &lt;/script&gt; · tracklet report")
    assert "<!--" not in html.split("<body>", 1)[1]
    assert html.count("</style>") == 1
    payload = html.split(f'id="{SNAPSHOT_ID}">', 1)[1].split("</script>", 1)[0]
    assert decode_snapshot(payload) == snapshot  # NaN stays the API's "NaN" text


def test_offline_html_without_a_bundle_says_how_to_build_it(tmp_path):
    with pytest.raises(MissingDependency, match="npm run build"):
        offline_html(_snapshot("t", []), tmp_path / "nowhere")


def test_markdown_export_replaces_each_panel_block_with_its_image():
    report = {"blocks": [
        {"kind": "text", "markdown": "# Title\n\nIntro"},  # no newline before the panel
        {"kind": "panel", "index": 0, "spec": {"title": "Loss [train]", "keys": ["loss"]}, "error": None},
        {"kind": "panel", "index": 1, "spec": {"keys": ["a", "b"]}, "error": "bad"},
        {"kind": "text", "markdown": "Outro\n"},
    ]}
    assert markdown_with_images(report, "r_files") == (
        "# Title\n\nIntro\n\n![Loss \\[train\\]](<r_files/panel-1.png>)\n\n![a, b](<r_files/panel-2.png>)\n\nOutro\n")


def test_an_unknown_format_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ReportError, match="unknown export format 'docx'"):
        export_snapshot(_snapshot("t", []), "docx", tmp_path / "out.docx")
    assert list(tmp_path.iterdir()) == []


def test_a_saved_report_exports_itself_from_python(tmp_path):
    """`Report.export(fmt, out)`: the issue's "the same from Python" (here html from a data root)."""
    import tracklet
    from conftest import QUIET
    from tracklet.reports.export import STATIC_DIR

    if not (STATIC_DIR / "index.html").is_file():
        pytest.skip("the dashboard bundle is not built (npm run build in web/)")
    root = tmp_path / "data"
    run = tracklet.init(project="p", id="a", dir=str(root), settings=QUIET)
    for step in range(5):
        run.log({"loss": 10.0 - step})
    run.finish()
    rep = tracklet.Report("p", title="From Python", dir=root).add_panel({"keys": ["loss"]})
    with pytest.raises(ReportError, match="not saved"):
        rep.export("html", tmp_path / "early.html")
    rep.save()
    (written,) = rep.export("html", tmp_path / "out.html")
    encoded = re.search(rf'<script type="application/json" id="{SNAPSHOT_ID}">([^<]+)</script>', written.read_text())
    snapshot = decode_snapshot(encoded.group(1))
    assert snapshot["report"]["title"] == "From Python"
    (series,) = snapshot["panels"]["0"]["history"]["series"]
    assert series["run"] == "a" and series["values"] == [10.0, 9.0, 8.0, 7.0, 6.0]
