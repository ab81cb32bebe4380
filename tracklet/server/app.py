"""``create_app``: the tracking server's FastAPI application.

The server keeps its own data root, laid out like a client's (``projects/<p>/runs/<id>/run.tlog``
holds its copy of each uploaded record log), and a ``Store`` over it (SQLite in the root by
default, or PostgreSQL). Uploads append to the copies (``routes_ingest``); reads go to the store
(``routes_read``). Every API route requires an API key (``auth.py``) unless the app is made
with ``auth=False`` (``tracklet server --dev``, loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tracklet import __version__
from tracklet.errors import BlobCollected
from tracklet.server import db_unavailable, query_warm, sweeps_warm
from tracklet.server.artifact_blobs import ServerArtifacts
from tracklet.server.artifact_source import ServerArtifactSource, set_artifact_source
from tracklet.server.audit import AuditLog, AuditMiddleware, in_route, install_unit_of_work
from tracklet.server.auth import DEV_PRINCIPAL, Accounts, Authorizer, route_access
from tracklet.server.automations import Automations
from tracklet.server.automations_worker import AutomationWorker, DeliveryPolicy, DeliveryProcess
from tracklet.server.body import DEFAULT_MAX_BODY_BYTES
from tracklet.server.files import DATA_ROOT_LAYOUT, RunFiles
from tracklet.server.indexing import HEARTBEAT_LAPSE, StoreIndexer
from tracklet.server.logs import MAX_PARTS_PER_RUN, BadRequest, KeyCounts, LogCopies
from tracklet.server.media_blobs import set_media_blobs
from tracklet.server.models import ErrorResponse, HealthResponse, errors
from tracklet.server.segments import SegmentCopies
from tracklet.server import dispatch, heap, one_hop, write_gate
from tracklet.server.wal_checkpoint import Checkpointer, wanted
from tracklet.store import Store


@dataclasses.dataclass
class ServerState:
    """What the routes share (``app.state.tracklet``)."""

    root: Path
    store: Store
    copies: LogCopies | SegmentCopies
    indexer: StoreIndexer
    max_body_bytes: int
    files: RunFiles  # run files (files.py): <root>/files, or any fsspec URL such as s3://bucket/prefix
    authorizer: Authorizer | None  # None: a --dev server, no keys
    artifacts: ServerArtifacts  # artifact blobs (<root>/artifacts or --artifacts URL), upload sessions, versions
    audit: AuditLog  # one event per mutating API call (audit.py)
    automations: Automations  # rules and deliveries (automations.py); the worker runs in the lifespan


async def require_access(request: Request) -> None:
    """Every API route's gate: the sender must present a valid key, and on a route with a
    ``{project}`` hold the role the route needs there (``auth.route_access``: ``read`` for GET and
    HEAD, ``write`` for other methods, unless the route declares another with ``auth.requires``);
    a 403 names that role. A route that declares ``requires(..., creates=True)`` (a run's log or
    file upload, an artifact's upload or commit, a server sweep) creates a project that doesn't
    exist yet for the sender; no other route does. The check blocks on the database: it runs in the route function's own
    worker call where the route has one (``one_hop.py``), else in a worker call of its own."""
    authorizer: Authorizer | None = request.app.state.tracklet.authorizer
    if authorizer is None:
        request.state.principal = DEV_PRINCIPAL
        return
    project = request.path_params.get("project")
    if project is not None and authorizer.admits(request, project, route_access(request).role):
        return  # the same key passed the same check moments ago (auth.ADMITTED_FOR)
    if not one_hop.defer(request, functools.partial(check_access, request, authorizer)):
        await run_in_threadpool(check_access, request, authorizer)


def check_access(request: Request, authorizer: Authorizer) -> None:
    """``require_access``'s check (blocking: the key and role lookups)."""
    project = request.path_params.get("project")
    if project is None:
        authorizer.principal(request)
        return
    access = route_access(request)
    # The first upload of a run, or of an artifact, creates its project (else no role could guard its
    # reads): the routes that declare ``creates``, none by its path.
    authorizer.check(request, project, access.role, create=access.creates, missing_ok=access.missing_ok)


def create_app(root: Path, *, store_url: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               index_on_start: bool = True, sweep_interval: float = 30.0,
               files_url: str | None = None, files_options: dict[str, object] | None = None,
               heartbeat_lapse: float = HEARTBEAT_LAPSE, auth: bool = True,
               liveness: Callable[[Path], bool | None] | None = None, shared_root: bool = False,
               logs_url: str | None = None, artifacts_url: str | None = None,
               delivery: DeliveryPolicy | None = None, automation_interval: float = 1.0,
               delivery_process: bool = False, freeze_heap: bool = False,
               max_pack_buffer_bytes: int | None = None, max_parts_per_run: int = MAX_PARTS_PER_RUN) -> FastAPI:
    """The server over data root ``root`` (created if missing); ``store_url`` picks the store
    (default: SQLite at ``<root>/store.sqlite``; ``postgresql://...`` for PostgreSQL). Request
    bodies over ``max_body_bytes`` (on the wire or decompressed) get 413. Every ``sweep_interval``
    seconds the store is brought up to date and runs silent for ``heartbeat_lapse`` seconds
    without an exit record become ``crashed``. With ``auth`` (the default) every API request
    needs a user's API key and project role; ``auth=False`` lets anyone do anything. ``liveness``
    replaces the heartbeat rule (``tracklet ui`` passes the writer's lock, ``writer_alive``), and
    ``shared_root`` says other processes index ``root`` too (a local data root, whose runs' files
    are served from beside their logs unless ``files_url`` says otherwise). The dashboard
    (``web.py``) is served at ``/``. ``logs_url`` (an fsspec URL such as ``s3://bucket/logs``,
    opened with ``files_options``) keeps the record log copies there as segments indexed in the
    PostgreSQL store (``segments.py``), so several server processes can share one deployment.
    ``artifacts_url`` (an fsspec URL, opened with ``files_options``) keeps artifact blobs there
    instead of ``<root>/artifacts`` (``artifact_blobs.py``). Every mutating API call writes an audit
    event (``audit.py``); automations deliver events (``automations.py``: ``delivery`` sets the
    timeout and retries, ``automation_interval`` the worker's polling period; not for a
    ``shared_root``): in a thread of this process, or with ``delivery_process`` (``tracklet
    server``) in a process of its own, so that no request waits for a delivery. With
    ``freeze_heap`` (``tracklet server``'s own process) the start-up's objects are moved out of the
    garbage collector's full collections once the warm-ups are done (``heap.py``).
    ``max_pack_buffer_bytes`` caps the memory lent to pack uploads at once (default
    ``artifact_chunks.MAX_PACK_BUFFER_BYTES``; past it a pack gets 503 and is sent again).
    ``max_parts_per_run``: the most parts (secondary writers' logs) one shared run may have here
    (docs/shared-runs.md); the upload that would start one more gets 400 naming the limit."""
    from tracklet.server import (routes_artifacts_read, routes_artifacts_write, routes_audit, routes_auth,
                                 routes_compare, routes_files, routes_histograms, routes_ingest, routes_log_read, routes_media, routes_media_compare, routes_read, routes_registry,
                                 routes_reports, routes_reproduce,
                                 routes_run_data, routes_sweeps, routes_sweeps_write,
                                 routes_table_views, routes_tables, routes_traces, routes_values)
    from tracklet.server.web import mount_dashboard

    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    # An explicit default: the server's store must not follow a TRACKLET_STORE meant for clients.
    store = Store(store_url or f"sqlite:///{root / 'store.sqlite'}", root=root)
    if auth:  # every query of runs filters and sorts `user` by the creator a key verified (run_creators.py)
        from tracklet.server import run_creators

        store.project_joined_fields = run_creators.joined_fields
    copies: LogCopies | SegmentCopies = LogCopies(root, KeyCounts(store), max_parts=max_parts_per_run)
    if logs_url is not None:
        location = RunFiles.connect(logs_url, files_options)
        copies = SegmentCopies(store.engine, location.fs, location.base, root, heartbeat_lapse=heartbeat_lapse,
                               key_counts=KeyCounts(store), max_parts=max_parts_per_run)
    state = ServerState(root=root, store=store, copies=copies,
                        indexer=StoreIndexer(store, root, heartbeat_lapse=heartbeat_lapse, liveness=liveness,
                                             shared_root=shared_root,
                                             source=copies if isinstance(copies, SegmentCopies) else None),
                        max_body_bytes=max_body_bytes,
                        files=(RunFiles.connect(files_url, files_options) if files_url is not None
                               # a data root's runs keep their files beside their logs
                               else RunFiles.connect(root, layout=DATA_ROOT_LAYOUT) if shared_root
                               else RunFiles.connect(root / "files", files_options)),
                        authorizer=Authorizer(Accounts(store)) if auth else None,
                        artifacts=ServerArtifacts.connect(root, artifacts_url, files_options, store.engine),
                        audit=AuditLog(store.engine), automations=Automations(store.engine))
    if max_pack_buffer_bytes is not None:
        state.artifacts.pack_buffers.max_out_bytes = max_pack_buffer_bytes
    # A run the heartbeat sweep marks crashed emits run.crashed (docs/audit.md), as an upload's exit would.
    state.indexer.on_crashed = lambda project, run_id: state.automations.after_ingest(store, project, run_id)
    worker: AutomationWorker | DeliveryProcess | None = None
    if shared_root:
        pass
    elif delivery_process:
        worker = DeliveryProcess(store.engine.url.render_as_string(hide_password=False), str(root),
                                 policy=delivery or DeliveryPolicy(), interval=automation_interval,
                                 needed=lambda: bool(state.automations.rules(cached=True)))
    else:
        worker = AutomationWorker(state.automations, policy=delivery or DeliveryPolicy(), interval=automation_interval)
    # SQLite: writers queue on a write gate (write_gate.py) and checkpoints leave the request path
    # (wal_checkpoint.py), unless TRACKLET_SERVER_WAL_CHECKPOINT=commit.
    checkpointer = (Checkpointer(store.engine, gate=write_gate.install(store.engine))
                    if not shared_root and wanted(store.engine) else None)
    if index_on_start:
        state.indexer.index_all()
    if not shared_root:  # requests a process killed mid-change left as intents (audit.py): now events
        state.audit.recover()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()

        def sweep() -> None:
            while not stop.wait(sweep_interval):
                if state.indexer.read_only:  # a data root this user can't write: nothing to index or clean
                    continue
                state.indexer.index_all()
                try:
                    if not shared_root:
                        state.audit.recover()  # intents of a sibling process that died (audit.py)
                except Exception as error:  # the database gone a moment: the next pass tries again
                    print(f"tracklet server: recovering audit intents failed: {error!r}", file=sys.stderr)
                try:
                    state.artifacts.sweep_uploads()
                except Exception as error:  # e.g. the artifacts bucket unreachable: the next pass tries again
                    print(f"tracklet server: sweeping artifact uploads failed: {error!r}", file=sys.stderr)

        sweeper = threading.Thread(target=sweep, name="tracklet-server-sweep", daemon=True)
        sweeper.start()
        if checkpointer is not None:
            checkpointer.start()
        if worker is not None:
            worker.start()
        # The table query stack's imports, off the first table request (query_warm.py), and the
        # routes' state FastAPI readies on the first request (dispatch.prepare), a moment after start.
        query_warm.start()
        # A restarted server's GP sweeps: their GP's imports begin now, not at an agent's first call.
        app.state.sweeps_warm = sweeps_warm.start(store.engine, root) if not shared_root else None
        prepared = threading.Event()

        def prepare() -> None:
            try:
                dispatch.prepare(app)
            finally:
                prepared.set()

        routes_ready = asyncio.get_running_loop().call_later(query_warm.DELAY, prepare)
        if freeze_heap:
            heap.freeze_when_ready([query_warm.WARM_UP.done, prepared])
        yield
        routes_ready.cancel()
        stop.set()
        if worker is not None:
            worker.stop()
        if checkpointer is not None:
            checkpointer.stop()
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="tracklet server",
        version=__version__,
        description="Uploads of record logs by byte offset, and a read API over the server's store. "
        "See docs/server.md.",
    )
    app.state.tracklet = state
    if shared_root:  # a local data root (tracklet ui): its own model registry file, not the server tables
        app.state.registry_root = root
    if not shared_root:  # the read routes see the server's artifacts: its registry, its blobs (--artifacts)
        set_artifact_source(app, ServerArtifactSource(root / "artifacts", state.artifacts))
    # Media and table blobs: the server's artifacts (grants checked), or a local data root's (tracklet ui).
    set_media_blobs(app, root, None if shared_root else state.artifacts)
    # After the guard, a mutating route's writes carry its audit event (audit.install_unit_of_work).
    guarded = [Depends(require_access), Depends(in_route)]
    # What the guard can answer on every guarded route: a bad project name, no valid key, no role.
    guard_errors = errors(400, 401, 403)
    for module in (routes_ingest, routes_log_read, routes_read, routes_compare, routes_run_data, routes_auth, routes_files,
                   routes_artifacts_read, routes_artifacts_write, routes_sweeps, routes_sweeps_write, routes_tables, routes_table_views, routes_media, routes_media_compare, routes_histograms,
                   routes_values, routes_registry, routes_traces, routes_audit, routes_reproduce):
        # Nothing but these two guards may run before a sync route: they defer their blocking
        # steps to its worker call (one_hop.py), so one trip to the thread pool serves the request.
        one_hop.wrap_router(module.router)
        app.include_router(module.router, dependencies=guarded, responses=guard_errors)
    one_hop.wrap_router(routes_media.projects_router)
    app.include_router(routes_media.projects_router, dependencies=guarded, responses=guard_errors)  # media prune
    # A request failing validation runs its deferred guard steps first (a 401 before a 422, as before).
    app.add_exception_handler(RequestValidationError, one_hop.validation_error)
    # Reports guard themselves (routes_reports.report_guard): a report's view token stands in for a key there.
    app.include_router(routes_reports.router, dependencies=[Depends(in_route)], responses=guard_errors)
    routes_reports.install_error_handlers(app)  # ReportError: 404, 409 or 400 with its message

    @app.get("/api/v1/health", tags=["server"], summary="Liveness probe (no key needed)")
    async def health() -> HealthResponse:
        return HealthResponse(status="ok", version=__version__)

    routes_registry.install_error_handlers(app)  # the registry's refusals: 400, 404, 409, 503
    db_unavailable.install(app)  # the database unreachable: 503 + Retry-After, one line, no traceback

    @app.exception_handler(BlobCollected)
    async def blob_collected(request: Request, error: BlobCollected) -> JSONResponse:  # clients send it again
        return JSONResponse(status_code=503, headers={"Retry-After": str(db_unavailable.RETRY_AFTER_S)},
                            content=ErrorResponse(detail=str(error)).model_dump())

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return JSONResponse(status_code=400, content=ErrorResponse(detail=str(error)).model_dump())

    @app.exception_handler(ValueError)
    async def value_error(request: Request, error: ValueError) -> JSONResponse:
        # Bad filters, sorts, axes and buckets from the store's query side.
        return JSONResponse(status_code=400, content=ErrorResponse(detail=str(error)).model_dump())

    if not shared_root:  # a local data root's dashboard (tracklet ui) is read-only: nothing to audit
        # Outermost but for Starlette's error handler: every mutating route, present or future, is audited.
        app.add_middleware(AuditMiddleware, log=state.audit)
        install_unit_of_work(app, store.engine)  # each route's change and its audit event: one transaction
    mount_dashboard(app)  # the single-page app at / (its pages and /assets)
    dispatch.install(app)  # routes tried by literal path prefix (dispatch.py)
    return app
