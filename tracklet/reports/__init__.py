"""Reports (docs/reports.md): Markdown documents with live or frozen ``tracklet-panel`` blocks,
versioned (append-only), published, shared by view tokens, exported.

``document.py`` parses and validates the Markdown, ``sql.py`` (``ReportStore``) keeps reports and
their versions (a data root's ``reports.sqlite``: ``service.py``; a server's database:
``server/routes_reports.py``), ``runsets.py`` resolves a panel's runs and history against a store,
``textdiff.py`` diffs two versions in bounded time, ``report.py`` is ``tracklet.Report`` and what
``tracklet.Api().report(...)`` returns, kept locally or on a server (``backends.py``; a server
through ``client/reports.py``). ``export.py`` exports them (HTML, PDF, PNG, Markdown with images).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Report"]


def __getattr__(name: str) -> Any:
    if name == "Report":
        from tracklet.reports.report import Report

        return Report
    raise AttributeError(name)
