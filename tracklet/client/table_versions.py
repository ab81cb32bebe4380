"""Every version of a run's table key as a server lists them (``GET .../table-versions/{key}``,
docs/server.md), a page at a time: ``tracklet.Api``'s ``table_versions`` and the run-table
resolver (``artifacts/run_tables.py``) follow the pages, so a key of any number of versions is
read whole and each request costs the server its page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

PAGE = 10_000  # versions asked for a page (the server's most)
LISTINGS = 5  # listings of a key tried while versions come in behind the cursor (the last is answered as it is)


def table_version_pages(http: Any, project_run: str, key: str, missing: Any = None) -> tuple[list[dict[str, Any]], int]:
    """Each version of ``key`` of run ``project_run`` (``<project>/<run id>``) as the server
    lists them, oldest first, and the place of the first among all of them: 0 from a server that
    pages (every version, its pages followed), ``total`` less those listed from one before session
    34, which ignores ``limit`` and lists the last 10,000 (no ``next_cursor``). Listed again from
    the start where versions came in behind the cursor meanwhile (the last page's ``total`` says
    so), up to ``LISTINGS`` times. ``missing``: what ``http.get_json`` raises on 404."""
    url = f"/api/v1/runs/{project_run}/table-versions/{quote(key, safe='/')}"
    for _ in range(LISTINGS):
        data = http.get_json(url, missing=missing, limit=PAGE)
        versions: list[dict[str, Any]] = list(data["versions"])
        if "next_cursor" not in data:  # a server before pages
            return versions, int(data["total"]) - len(versions)
        page = data
        while len(page["versions"]) == PAGE and page.get("next_cursor"):
            page = http.get_json(url, missing=missing, limit=PAGE, cursor=page["next_cursor"])
            versions += page["versions"]
        # The pages follow the readers' order (each writer's log in turn): a version logged
        # meanwhile by a writer the cursor had passed (or a new writer whose label sorts before)
        # is in no page; the last page's total then counts more than were listed: list again.
        if int(page["total"]) == len(versions):
            break
    return versions, 0
