"""Serving the dashboard: the built front-end (``web/``, built into ``tracklet/server/static``).

The bundle is a single-page app: ``/assets/*`` are its content-hashed files (cached for good),
and each of its pages (``/``, ``/projects/<p>``, ``/projects/<p>/runs/<id>``, the artifact pages,
``/projects/<p>/sweeps/<id>``, ``/projects/<p>/traces[/<trace id>]``, ``/projects/<p>/run-diff``, ``/projects/<p>/reports[/<id>[/edit]]``) answers
``index.html``, whose script routes on the client. The JSON API under ``/api/v1`` and FastAPI's
``/docs`` and ``/openapi.json`` are registered first and are untouched. The bundle needs no key:
it holds no data; the browser sends its key with each API request. ``/vendor/plotly.min.js`` is
the installed plotly package's script, which the dashboard draws logged plotly figures with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGES = ("/", "/projects/{project}", "/projects/{project}/runs/{run_id}",
         # artifacts (pages/artifacts.ts): the list, a collection, a version, lineage graphs
         "/projects/{project}/artifacts", "/projects/{project}/artifacts/{name}",
         "/projects/{project}/artifacts/{name}/{version}", "/projects/{project}/artifacts/{name}/{version}/lineage",
         "/projects/{project}/runs/{run_id}/lineage",
         "/projects/{project}/sweeps/{sweep_id}",  # a sweep (pages/sweep.ts)
         "/projects/{project}/runs/{run_id}/tables/{key:path}",  # a logged table (pages/table.ts)
         "/projects/{project}/traces", "/projects/{project}/traces/{trace_id}",  # traces (pages/traces.ts)
         "/projects/{project}/run-diff",  # two runs compared, ?a=&b= (pages/run-diff.ts)
         # reports (pages/reports.ts, report.ts, report-edit.ts): the list, a report, its editor
         "/projects/{project}/reports", "/projects/{project}/reports/{report_id}",
         "/projects/{project}/reports/{report_id}/edit",
         # the model registry (pages/registry.ts): collections, requests, a collection, a version, its lineage
         "/registry", "/registry/requests", "/registry/{registry}/{collection}",
         "/registry/{registry}/{collection}/{version}", "/registry/{registry}/{collection}/{version}/lineage")

_MISSING = """<!doctype html><title>tracklet</title>
<p>The dashboard's bundle is missing from this installation ({where}). Build it with
<code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>; the JSON API is at
<a href="/docs">/docs</a>.</p>"""


def mount_dashboard(app: FastAPI, static_dir: Path = STATIC_DIR) -> None:
    """Serve the dashboard from ``static_dir`` at ``/``."""
    index = static_dir / "index.html"
    assets = static_dir / "assets"
    if assets.is_dir():
        app.mount("/assets", _ImmutableFiles(directory=assets), name="dashboard-assets")

    async def dashboard() -> FileResponse | HTMLResponse:
        if not index.is_file():
            return HTMLResponse(_MISSING.format(where=static_dir), status_code=503)
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/vendor/plotly.min.js", plotly_js, methods=["GET"], include_in_schema=False,
                      response_model=None)
    # The client's routes (web/src/router.ts), and nothing else: other paths stay the API's 404/405.
    for path in PAGES:
        app.add_api_route(path, dashboard, methods=["GET"], include_in_schema=False, response_model=None)


def plotly_js() -> Response:
    """The plotly.js that the ``plotly`` package installed beside the server ships, which the
    dashboard draws logged plotly figures with (``tracklet.media.plotly``: figures are stored as
    JSON, not with 4.6 MB of script each). Served from here, never a CDN, so it works offline;
    404 with what to install when the package is missing. Like the bundle it holds no data: no key."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js" if spec and spec.origin else None
    if path is None or not path.is_file():
        return Response("plotly is not installed beside the tracklet server: `pip install plotly` there to draw "
                        "logged plotly figures (they are recorded either way)", status_code=404,
                        media_type="text/plain")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


class _ImmutableFiles(StaticFiles):
    """Content-hashed assets: a changed file gets a new name, so a browser may keep them forever."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response
