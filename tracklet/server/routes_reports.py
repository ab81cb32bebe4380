"""Reports over HTTP (docs/reports.md): ``/api/v1/projects/{project}/reports...``, over
``tracklet.reports.sql.ReportStore`` (the server's database: migration ``s0008_reports``; for
``tracklet ui``, the data root's ``reports.sqlite``).

Who may do what: project roles, as on every ``{project}`` route (reading needs ``read``; saving,
reverting, publishing, freezing and managing view tokens ``write``; a preview parses only, so
``read``). A view token (``?token=`` or ``X-Tracklet-Report-Token``) stands in for a key on the GET
routes of its own report only (the report, its versions, a diff, a panel's data), never on its
token list; a revoked token, or one of another report, is 403. The actor of every change is the
API key's user, never a value the client sends.

A panel's data (``panels/{index}/data``) resolves its run set (live, or the frozen run ids and
max step) and answers the history ``GET /projects/{p}/history`` would for those runs and keys. A
panel whose project the viewer may not read answers ``access: "denied"`` (a view token reads the
report's own project only); a bad spec, a query error or a run set that matches nothing answer
``error`` with the reason. None of them fails the request: the rest of the report renders.
404: no such report, version or panel; 409: a stale parent, or a published report; 400: a bad body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter

from tracklet.core.layout import check_name
from tracklet.errors import MissingDependency, ReportConflict, ReportError, ReportNotFound
from tracklet.reports import columns
from tracklet.reports.cache import PanelCache, document_of, panel_key, run_stamp
from tracklet.reports.document import MAX_MARKDOWN_CHARS, MAX_PANELS, parse
from tracklet.reports.runsets import freeze_pins, panel_project
from tracklet.reports.runsets import ResolvedPanel, answer, resolve_panel, resolved_data
from tracklet.reports.sql import MAX_TITLE_CHARS, ReportStore
from tracklet.server.events import emit, wake
from tracklet.server.auth import DEV_PRINCIPAL, Principal, role_at_least
from tracklet.server.models import CompareHistoryResponse, ErrorResponse, RowId, errors
from tracklet.server.routes_compare import compact_series
from tracklet.server.body import bounded_router

TOKEN_HEADER = "x-tracklet-report-token"
MAX_VERSION = 2**31 - 1  # version numbers are 32-bit integers in the tables
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION, description="A version number (from 1)")]
PanelIndex = Annotated[int, Path(ge=0, le=MAX_PANELS - 1, description="The panel's index (from 0, in document order)")]
_ERRORS = errors(400, 404, 409)
PanelNumber = Annotated[int, Field(ge=0, le=MAX_PANELS - 1)]
BucketCount = Annotated[int, Field(ge=0, le=100_000)]
PanelList = Annotated[list[PanelNumber] | None, Query(description="the panels wanted (indexes); default: all")]
BucketList = Annotated[list[BucketCount] | None, Query(description="buckets per series (0: every point): one "
                                                             "count for every panel, or one per panel in `panels`")]
KnownList = Annotated[list[Annotated[str, Field(max_length=64)]] | None, Query(
    description="`index:stamp` of answers the caller has: a panel whose runs haven't changed answers `data: null`")]
_UNTYPED = TypeAdapter(dict[str, Any])
PanelFormat = Literal["json", "columns"]


def dump_json(content: dict[str, Any]) -> bytes:
    """``content`` as JSON bytes, unvalidated (as ``models.json_response``: millions of numbers)."""
    return _UNTYPED.dump_json(content)


# ------------------------------------------------------------------ request and response bodies


class CreateReportRequest(BaseModel):
    title: str | None = Field(default=None, max_length=MAX_TITLE_CHARS)
    markdown: str = Field(default="", max_length=MAX_MARKDOWN_CHARS)


class PreviewRequest(BaseModel):
    markdown: str = Field(max_length=MAX_MARKDOWN_CHARS)


class SaveReportRequest(BaseModel):
    markdown: str = Field(max_length=MAX_MARKDOWN_CHARS)
    title: str | None = Field(default=None, max_length=MAX_TITLE_CHARS, description="unchanged if left out")
    parent: VersionNumber = Field(description="the version this edit was made from: must be the latest (else 409)")


class VersionRequest(BaseModel):
    version: VersionNumber


class TokenRequest(BaseModel):
    label: str = Field(default="", max_length=300, description="who or what the token is for")


class ReportSummary(BaseModel):
    id: int
    project: str
    title: str
    version: int = Field(description="the latest version")
    author: str = Field(description="the latest version's author")
    created_at: float
    updated_at: float
    published_version: int | None = Field(description="set once published: the report is then immutable")


class ReportsResponse(BaseModel):
    reports: list[ReportSummary]


class TextBlockModel(BaseModel):
    kind: Literal["text"]
    markdown: str


class PanelBlockModel(BaseModel):
    """A `tracklet-panel` block: `spec` (title, keys, x, smoothing, log_y, size, defaults filled
    in), `runs` (project: null means the report's; filter, sort, limit, group, frozen), `error`
    naming every problem of the block (then spec and runs hold what could be read)."""

    kind: Literal["panel"]
    index: int
    spec: dict[str, Any]
    runs: dict[str, Any]
    error: str | None


Block = Annotated[TextBlockModel | PanelBlockModel, Field(discriminator="kind")]


class ReportModel(BaseModel):
    """One version of a report: `version` is the one shown (by default the published version,
    else the latest), `latest_version` the newest there is; `updated_at` when `version` was saved."""

    id: int
    project: str
    title: str
    version: int
    latest_version: int
    parent: int | None
    author: str
    created_at: float
    updated_at: float
    published_version: int | None
    note: str = Field(description="what made this version: created, edited, reverted to vN, froze run sets")
    markdown: str
    blocks: list[Block]


class PreviewResponse(BaseModel):
    blocks: list[Block]


class ReportVersionModel(BaseModel):
    version: int
    parent: int | None
    title: str
    author: str
    created_at: float
    note: str


class ReportVersionsResponse(BaseModel):
    versions: list[ReportVersionModel]


class ReportDiffResponse(BaseModel):
    diff: str = Field(description="a unified diff of the two versions' markdown (the title first)")


class PanelRun(BaseModel):
    id: str
    name: str
    project: str
    group: Any = Field(default=None, description="the run's value of the run set's `group`, when grouped")


class PanelDataResponse(BaseModel):
    """`access: "denied"`: the viewer may not read the panel's project (nothing else is said about
    it); `error`: why the panel shows nothing (a bad spec, a query error, no matching runs)."""

    access: Literal["ok", "denied"]
    error: str | None
    runs: list[PanelRun]
    history: CompareHistoryResponse


class TokenCreatedResponse(BaseModel):
    token_id: str
    token: str = Field(description="the view token: shown this once, kept hashed")


class ReportTokenModel(BaseModel):
    token_id: str
    label: str
    created_by: str
    created_at: float
    revoked_at: float | None


class ReportTokensResponse(BaseModel):
    tokens: list[ReportTokenModel]


class RevokedResponse(BaseModel):
    revoked: str


class DeletedReportResponse(BaseModel):
    """The report deleted: gone from listings and routes, its view tokens with it; its versions
    stay in the append-only table, unreachable."""

    id: int
    project: str
    title: str
    version: int = Field(description="its latest version")
    published_version: int | None


# ------------------------------------------------------------------ access


def reports_of(request: Request, *, create: bool = False) -> ReportStore | None:
    """The server's reports (its database); for ``tracklet ui`` the data root's reports.sqlite
    (None until a report was saved there, unless ``create``)."""
    state = request.app.state
    found = getattr(state, "report_store", None)
    if found is not None:
        return found
    root = getattr(state, "registry_root", None)  # set for a local data root (tracklet ui)
    if root is not None:
        from tracklet.reports.service import open_local

        found = open_local(root, create=create)
        if found is None:
            return None
    else:
        found = ReportStore(state.tracklet.artifacts.engine)
    state.report_store = found
    return found


def _store(request: Request) -> ReportStore:
    found = reports_of(request, create=request.method not in ("GET", "HEAD"))
    if found is None:
        raise HTTPException(status_code=404, detail="no reports: none was saved in this data root")
    return found


def _token(request: Request) -> str | None:
    return request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or None


def report_guard(request: Request) -> None:
    """This router's gate (in place of ``app.require_access``): a view token on its report's GET
    routes, else the API key's project role (read for GET and previews, write for the rest and for
    view tokens)."""
    project = check_name("project", request.path_params.get("project", ""))  # 400 for a bad name
    authorizer = request.app.state.tracklet.authorizer
    if authorizer is None:  # --dev and tracklet ui (whose own ?token= is not a report's): no roles to check
        request.state.principal = DEV_PRINCIPAL
        return
    token = _token(request)
    if token is not None:
        report_id = request.path_params.get("report_id")
        if request.method not in ("GET", "HEAD") or report_id is None or "/tokens" in request.url.path:
            raise HTTPException(status_code=403, detail="a report view token only reads its own report "
                                "(GET of the report, its versions, diffs and panel data)")
        found = reports_of(request)
        try:
            number = int(report_id)
        except ValueError:
            number = 0
        if found is None or not found.token_allows(project, number, token):
            raise HTTPException(status_code=403, detail=f"the view token is not valid for report {report_id} of "
                                f"project {project!r} (revoked, mistyped, or another report's)")
        request.state.report_token = True
        return
    path = request.url.path
    # Token listings are for those who may make tokens; a preview saves nothing.
    reading = "/tokens" not in path and (request.method in ("GET", "HEAD") or path.endswith("/reports/preview"))
    authorizer.check(request, project, "read" if reading else "write")


def _actor(request: Request) -> str:
    if getattr(request.app.state, "registry_root", None) is not None:  # tracklet ui: the user who started it
        from tracklet.reports.service import default_actor

        return default_actor()
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.name if principal is not None else "unknown"


def _may_read(request: Request, project: str, report_project: str) -> bool:
    """Whether the viewer may read ``project`` (a panel's): a view token reads only its report's."""
    if getattr(request.state, "report_token", False):
        return project == report_project
    authorizer = request.app.state.tracklet.authorizer
    if authorizer is None or project == report_project:  # the guard checked the report's project
        return True
    principal = authorizer.principal(request)
    exists, role = authorizer.accounts.role(principal, project)
    return not exists or role_at_least(role, "read")  # as Authorizer.check: a project not there holds nothing


def _status(error: ReportError) -> int:
    if isinstance(error, ReportNotFound):
        return 404
    if isinstance(error, ReportConflict):
        return 409
    return 400


def install_error_handlers(app: Any) -> None:
    """Answer every ``ReportError`` a route raises as its status (404 not found, 409 a conflict,
    else 400) with the error's message as ``detail``: one handler instead of a ``try`` per route.
    Registered before the app's ``ValueError`` handler is consulted (Starlette looks handlers up
    by the exception's class order, and ``ReportError`` comes before ``ValueError``)."""

    async def refused(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ReportError)
        return JSONResponse(status_code=_status(error), content=ErrorResponse(detail=str(error)).model_dump())

    app.add_exception_handler(ReportError, refused)


router = bounded_router(prefix="/api/v1/projects/{project}/reports", tags=["reports"],
                        dependencies=[Depends(report_guard)])


# ------------------------------------------------------------------ routes


@router.get("", response_model=ReportsResponse, responses=_ERRORS, summary="A project's reports")
def list_reports(request: Request, project: str) -> dict[str, Any]:
    """Most recently changed first."""
    found = reports_of(request)
    return {"reports": found.list_reports(project) if found is not None else []}


@router.post("", response_model=ReportModel, responses=_ERRORS, summary="Create a report")
def create_report(request: Request, project: str, body: CreateReportRequest) -> dict[str, Any]:
    """Version 1 of a new report. Bad panels don't refuse it: each says its error in `blocks`."""
    return _store(request).create(project, body.title, body.markdown, author=_actor(request))


@router.post("/preview", response_model=PreviewResponse, responses=_ERRORS, summary="Parse a report's markdown")
def preview(project: str, body: PreviewRequest) -> dict[str, Any]:
    """The blocks `markdown` parses into, each panel validated; nothing is saved."""
    return {"blocks": parse(body.markdown).to_json()}


@router.get("/{report_id}", response_model=ReportModel, responses=_ERRORS, summary="A report")
def get_report(request: Request, project: str, report_id: RowId,
               version: int | None = Query(None, ge=1, le=MAX_VERSION,
                                           description="default: the published version, else the latest")
               ) -> dict[str, Any]:
    return _store(request).get(project, report_id, version)


@router.put("/{report_id}", response_model=ReportModel, responses=_ERRORS, summary="Save a new version")
def save_report(request: Request, project: str, report_id: RowId, body: SaveReportRequest) -> dict[str, Any]:
    """A new version edited from `parent`: 409 if `parent` is not the latest, or the report is published."""
    return _store(request).save(project, report_id, body.markdown, parent=body.parent, title=body.title,
                                author=_actor(request))


@router.delete("/{report_id}", response_model=DeletedReportResponse, responses=_ERRORS, summary="Delete a report")
def delete_report(request: Request, project: str, report_id: RowId) -> dict[str, Any]:
    """Needs `write` on the project; a published report, `admin` (403 otherwise). The report and
    its view tokens go; its versions stay in the database (append-only), unreachable."""
    authorizer = request.app.state.tracklet.authorizer

    def admin_only(published: int) -> bool:
        if authorizer is not None:
            principal = authorizer.principal(request)
            exists, role = authorizer.accounts.role(principal, project)
            if not role_at_least(role, "admin"):
                raise HTTPException(status_code=403, detail=f"report {report_id} was published at v{published}: "
                                    f"only an admin of project {project!r} may delete it")
        return True

    return _store(request).delete(project, report_id, allow_published=admin_only)


@router.get("/{report_id}/versions", response_model=ReportVersionsResponse, responses=_ERRORS,
            summary="A report's versions")
def report_versions(request: Request, project: str, report_id: RowId) -> dict[str, Any]:
    return {"versions": _store(request).versions(project, report_id)}


@router.get("/{report_id}/diff", response_model=ReportDiffResponse, responses=_ERRORS,
            summary="Two versions compared")
def report_diff(request: Request, project: str, report_id: RowId,
                a: int = Query(..., ge=1, le=MAX_VERSION), b: int = Query(..., ge=1, le=MAX_VERSION)
                ) -> dict[str, Any]:
    return {"diff": _store(request).diff(project, report_id, a, b)}


@router.post("/{report_id}/revert", response_model=ReportModel, responses=_ERRORS,
             summary="A new version equal to an old one")
def revert_report(request: Request, project: str, report_id: RowId, body: VersionRequest) -> dict[str, Any]:
    return _store(request).revert(project, report_id, body.version, author=_actor(request))


@router.post("/{report_id}/publish", response_model=ReportModel, responses=_ERRORS,
             summary="Publish a version (the report becomes immutable)")
def publish_report(request: Request, project: str, report_id: RowId, body: VersionRequest) -> dict[str, Any]:
    local = getattr(request.app.state, "registry_root", None) is not None  # tracklet ui: no automations there

    def published(connection: Any, report: dict[str, Any]) -> None:
        emit(connection, "report.published", f"{project}/reports/{report_id}:v{report['version']}", report,
             project=project, actor=report["actor"])

    report = _store(request).publish(project, report_id, body.version, author=_actor(request),
                                     on_published=None if local else published)
    wake()  # the event is committed now: deliver it without waiting for the worker's next poll
    return report


@router.post("/{report_id}/freeze", response_model=ReportModel, responses=_ERRORS,
             summary="Pin every live panel's runs and max step (a new version)")
def freeze_report(request: Request, project: str, report_id: RowId) -> dict[str, Any]:
    """Each live panel's run set is resolved now and written into its block as `runs.frozen`
    (`run_ids`, `max_step`). Needs `read` on every panel's project (else 403)."""
    store = request.app.state.tracklet.store

    def resolve(runs: dict[str, Any], report_project: str) -> tuple[list[str], int | None]:
        project_name = panel_project(runs, report_project)
        if not _may_read(request, project_name, report_project):
            raise HTTPException(status_code=403, detail=f"freezing needs read access to project {project_name!r}")
        return freeze_pins(store, runs, report_project)

    return _store(request).freeze(project, report_id, resolve, author=_actor(request))


def panel_cache(request: Request) -> PanelCache:
    """This app's cache of panel answers (``reports/cache.py``), made on first use."""
    state = request.app.state
    found = getattr(state, "report_panel_cache", None)
    if found is None:
        found = state.report_panel_cache = PanelCache()
    return found


def _panel_body(request: Request, project: str, panel: Any, *, memo: dict[str, Any] | None = None,
                start: float | None = None, end: float | None = None, buckets: int | None = 1000,
                fmt: PanelFormat = "json") -> tuple[str | None, bytes]:
    """(stamp, bytes) of a panel's answer: JSON, or for ``fmt`` "columns" ``columns.pack`` of its
    data and body; from the cache when its runs haven't changed since (the stamp:
    ``cache.run_stamp``; None for an answer that draws nothing, never cached)."""
    store = request.app.state.tracklet.store
    resolved = resolve_panel(store, panel, project, lambda name: _may_read(request, name, project), memo=memo)
    if not isinstance(resolved, ResolvedPanel):
        return None, (dump_json(resolved) if fmt == "json" else columns.pack(*columns.encode_answer(resolved, True)))
    stamp = run_stamp(resolved.rows, resolved.entries)
    cache = panel_cache(request)
    key = panel_key(resolved.project, panel.spec, panel.runs, stamp, start=start, end=end, buckets=buckets, fmt=fmt)
    body = cache.get(key)
    if body is None:
        if fmt == "json":
            body = dump_json(resolved_data(store, panel, resolved, start=start, end=end, buckets=buckets,
                                           series_json=compact_series))
        else:
            answered = resolved_data(store, panel, resolved, start=start, end=end, buckets=buckets,
                                     series_json=columns.keep)
            body = columns.pack(*columns.encode_answer(answered, panel.spec.get("x", "step") == "step"))
        cache.put(key, body)
    return stamp, body


@router.get("/{report_id}/panels/{index}/data", response_model=PanelDataResponse, responses=_ERRORS,
            summary="A panel's runs and their history")
def panel_data(request: Request, project: str, report_id: RowId, index: PanelIndex,
               version: int | None = Query(None, ge=1, le=MAX_VERSION),
               start: float | None = Query(None, description="Window start, in the unit of the panel's x"),
               end: float | None = Query(None, description="Window end, in the unit of the panel's x"),
               buckets: int = Query(1000, ge=0, le=100_000, description="Buckets per series (0: every point)"),
               ) -> Response:
    """The runs the panel's run set names (live, or frozen: its run ids, up to its max step) and,
    per run and key, what `GET /projects/{p}/history` answers. `access: "denied"` when the viewer
    may not read the panel's project; `error` for a bad spec, a failed query or no matching runs."""
    _, markdown = _store(request).version_markdown(project, report_id, version)
    panel = document_of(markdown).panel(index)
    # Millions of numbers at most: serialised as they are (models.json_response), not validated.
    _, body = _panel_body(request, project, panel, start=start, end=end, buckets=buckets or None)
    return Response(body, media_type="application/json")


@router.get("/{report_id}/data", responses={**_ERRORS, 200: {
                "content": {"application/x-ndjson": {}, columns.MEDIA_TYPE: {}},
                "description": "One JSON line per panel, as each is ready: `{index, stamp, data}` (`data`: what "
                               "`panels/{index}/data` answers, or null when `stamp` is one the caller said it has); "
                               "with `format=columns`, one binary frame per panel instead (docs/reports.md)"}},
            response_class=StreamingResponse, summary="Every panel's data in one streamed answer")
def report_data(request: Request, project: str, report_id: RowId,
                version: int | None = Query(None, ge=1, le=MAX_VERSION),
                panels: PanelList = None, buckets: BucketList = None, known: KnownList = None,
                format: Annotated[PanelFormat, Query(description="json: JSON lines; columns: binary frames with "
                                                     "the numbers as raw little-endian columns (the dashboard's)")
                                  ] = "json",
                ) -> StreamingResponse:
    """The report's panels' data in document order, each line written as soon as it is ready, so
    the first panels draw while the others are read. Run sets that several panels share are
    resolved once; each panel's answer is cached until one of its runs logs more. A live page
    polls with `known` (the stamps it drew) and redraws only what changed. `format=columns`: the
    same answers with their numbers as binary columns (`tracklet/reports/columns.py`), a fraction
    of the bytes and nothing to parse."""
    _, markdown = _store(request).version_markdown(project, report_id, version)
    document = document_of(markdown)
    blocks = [block for block in document.blocks if block.kind == "panel"]
    wanted = panels or [block.index for block in blocks]  # type: ignore[union-attr]
    buckets, known = buckets or [1000], known or []
    if len(wanted) > MAX_PANELS or len(known) > MAX_PANELS:
        raise ReportError(f"a report has at most {MAX_PANELS} panels; asked for {len(wanted)}")
    if len(buckets) not in (1, len(wanted)):
        raise ReportError("buckets: one count for every panel, or one per panel asked for")
    counts = buckets * len(wanted) if len(buckets) == 1 else buckets
    have = dict(item.partition(":")[::2] for item in known)
    chosen = [(document.panel(index), count) for index, count in zip(wanted, counts)]  # 404 for a missing one

    def lines() -> Iterator[bytes]:
        memo: dict[str, Any] = {}
        for panel, count in chosen:
            try:
                stamp, body = _panel_body(request, project, panel, memo=memo, buckets=count or None, fmt=format)
            except Exception as problem:  # a database failure: this panel's, not the stream's
                failed = answer("ok", f"the panel's data could not be read: {problem}")
                stamp, body = None, (dump_json(failed) if format == "json"
                                     else columns.pack(*columns.encode_answer(failed, True)))
            unchanged = stamp is not None and have.get(str(panel.index)) == stamp
            if format == "columns":
                yield columns.frame(panel.index, stamp, None) if unchanged else columns.frame(
                    panel.index, stamp, *columns.unpack(body))
                continue
            head = dump_json({"index": panel.index, "stamp": stamp})[:-1]
            if unchanged:
                yield head + b',"data":null}\n'
            else:
                yield head + b',"data":' + body + b"}\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson" if format == "json" else columns.MEDIA_TYPE)


# Exports that render in Chromium at once (each a browser and a page: ~0.3 GB and a core while it
# runs); more wait for a turn, up to EXPORT_WAIT_S, then answer 503.
EXPORT_SLOTS = threading.BoundedSemaphore(2)
EXPORT_WAIT_S = 60.0
ExportFormat = Literal["html", "pdf", "png", "md"]


class _RequestSource:
    """The report and its panels as this request may read them (``ReportSource`` of
    ``reports/export.py``): the same answers, access checks and panel cache as the GET routes, in
    process."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def report(self, project: str, report_id: str, version: int | None = None) -> dict[str, Any]:
        return _store(self.request).get(project, int(report_id), version)

    def panel_data(self, project: str, report_id: str, index: int, version: int, buckets: int) -> dict[str, Any]:
        return self.panels(project, report_id, version, [(index, buckets)])[index]

    def panels(self, project: str, report_id: str, version: int, wanted: list[tuple[int, int]]
               ) -> dict[int, dict[str, Any]]:
        _, markdown = _store(self.request).version_markdown(project, int(report_id), version)
        document = document_of(markdown)
        memo: dict[str, Any] = {}
        found: dict[int, dict[str, Any]] = {}
        for index, count in wanted:
            _, body = _panel_body(self.request, project, document.panel(index), memo=memo, buckets=count or None)
            found[index] = json.loads(body)
        return found


@router.get("/{report_id}/export", responses={**errors(400, 404, 409, 500, 503), 200: {
                "content": {"text/html": {}, "application/pdf": {}, "application/zip": {}},
                "description": "The file `tracklet report export --format FORMAT` writes, as an attachment: html "
                               "(one offline file), pdf; png (a PNG per panel) and md (the Markdown with its panels "
                               "as PNGs) as a zip"}},
            response_class=Response, summary="Export a report (HTML, PDF, PNGs, Markdown)")
def report_export(request: Request, project: str, report_id: RowId,
                  format: Annotated[ExportFormat, Query(description="html, pdf, png or md")] = "html",
                  version: int | None = Query(None, ge=1, le=MAX_VERSION,
                                              description="default: the published version, else the latest"),
                  ) -> Response:
    """What `tracklet report export` writes, made here by the same code (`reports/export.py`)
    from the panels' data as this caller may read them (a view token's too). PDF, PNG and Markdown
    render in the server's Chromium: 500 when it has none; 503 when too many exports are running."""
    from tracklet.reports.export import export_download

    if not EXPORT_SLOTS.acquire(timeout=EXPORT_WAIT_S):
        raise HTTPException(status_code=503, detail="the server is busy with other exports; try again in a minute",
                            headers={"Retry-After": "30"})
    try:
        download = export_download(_RequestSource(request), project, str(report_id), format, version=version)
    except MissingDependency as problem:
        raise HTTPException(status_code=500, detail=str(problem)) from None
    finally:
        EXPORT_SLOTS.release()
    return Response(download.data, media_type=download.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{download.filename}"'})


@router.post("/{report_id}/tokens", response_model=TokenCreatedResponse, responses=_ERRORS,
             summary="Create a view token")
def create_token(request: Request, project: str, report_id: RowId, body: TokenRequest | None = None
                 ) -> dict[str, Any]:
    """A token that reads this report (and its panels of this project) without an account."""
    return _store(request).create_token(project, report_id, author=_actor(request),
                                        label=body.label if body is not None else "")


@router.get("/{report_id}/tokens", response_model=ReportTokensResponse, responses=_ERRORS,
            summary="A report's view tokens (never their secrets)")
def list_tokens(request: Request, project: str, report_id: RowId) -> dict[str, Any]:
    return {"tokens": _store(request).tokens(project, report_id)}


@router.delete("/{report_id}/tokens/{token_id}", response_model=RevokedResponse, responses=_ERRORS,
               summary="Revoke a view token")
def revoke_token(request: Request, project: str, report_id: RowId,
                 token_id: str = Path(..., max_length=32, pattern="^[A-Za-z0-9]+$")) -> dict[str, Any]:
    _store(request).revoke_token(project, report_id, token_id)
    return {"revoked": token_id}
