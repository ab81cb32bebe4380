"""Reproducing and comparing runs from the dashboard (docs/reproduce.md, #21), read-only.

``GET /api/v1/runs/{project}/{run_id}/reproduce-plan`` answers what ``tracklet reproduce RUN
--dry-run`` prints for a run of the server's data root: the planner (``reproduce/plan.py``) reads
the run's log and ``files/``, asks git about the recorded repository on this machine and reads
this interpreter's packages; it writes nothing. ``GET /api/v1/projects/{project}/run-diff?a=&b=``
answers what ``tracklet diff`` computes (``reproduce/compare.py``): the code diff is built in a
temporary directory that is removed before the answer goes. Both are ``{project}`` routes, so
``app.py``'s guard asks for ``read`` there. Each runs git with a timeout (30 s a call) and the
code diff covers at most 200 files; at most ``MAX_AT_ONCE`` of them run at a time (503 beyond).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import HTTPException, Query, Request

from tracklet.core.api import RecordedRun
from tracklet.reproduce.snapshot import BlobReader, server_blobs
from tracklet.server.jsonable import json_value
from tracklet.server.logs import run_paths
from tracklet.server.models import ReproducePlanResponse, RunDiffResponse, errors
from tracklet.server.body import bounded_router

router = bounded_router(tags=["read"])

MAX_AT_ONCE = 2
_slots = threading.BoundedSemaphore(MAX_AT_ONCE)
_ERRORS = errors(400, 404, 503)
T = TypeVar("T")


@contextmanager
def _slot() -> Iterator[None]:
    if not _slots.acquire(blocking=False):
        raise HTTPException(status_code=503, detail=f"{MAX_AT_ONCE} plans or comparisons are being made; "
                            "try again in a moment")
    try:
        yield
    finally:
        _slots.release()


def _recorded(request: Request, project: str, run_id: str, files: ExitStack) -> RecordedRun:
    """The run's record log in the server's data root: 400 for a bad name, 404 when it has none
    here (unknown, or a server keeping its logs elsewhere: ``--logs``). A run synced to the server
    has its files (``diff.patch``, an older run's code snapshot) in the server's file store, not
    beside its log: those are copied into a temporary directory that ``files`` removes (a newer
    run's snapshot is a ``code`` artifact: read from the server's artifacts, ``_blobs``)."""
    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    if not paths.log_file.is_file():
        raise HTTPException(status_code=404, detail=f"no record log of run {project}/{run_id} in this server's "
                            "data root")
    store = getattr(app, "files", None)
    if store is None or paths.files_dir.is_dir():
        return RecordedRun(paths)
    directory = Path(files.enter_context(tempfile.TemporaryDirectory(prefix="tracklet-plan-")))
    copy_source_files(store, project, run_id, directory)
    return RecordedRun(paths, files_dir=directory)


SOURCE_FILES_MAX_BYTES = 64 * 2**20  # what a plan reads of a run's files: diff.patch and an older code snapshot


def copy_source_files(store: Any, project: str, run_id: str, directory: Path) -> None:
    """Copy the run's ``diff.patch`` and ``code/...`` files from the server's file store into
    ``directory``, at most ``SOURCE_FILES_MAX_BYTES`` in all (the plan reports what is missing)."""
    left = SOURCE_FILES_MAX_BYTES
    for info in store.list(project, run_id):
        if info.name != "diff.patch" and not info.name.startswith("code/"):
            continue
        if info.size > left:
            break
        try:
            handle, size = store.open(project, run_id, info.name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue  # removed since it was listed
        target = directory / info.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with handle, target.open("wb") as out:
            shutil.copyfileobj(handle, out)
        left -= size


def _blobs(request: Request) -> BlobReader | None:
    """Where a run's code snapshot artifact is read: a server's artifact store (its grants, its
    ``--artifacts`` location, small blobs in packs); None for ``tracklet ui`` (the data root's own)."""
    if getattr(request.app.state, "registry_root", None) is not None:
        return None
    artifacts = getattr(request.app.state.tracklet, "artifacts", None)
    return server_blobs(artifacts) if artifacts is not None else None


def _guarded(work: Callable[[], T]) -> T:
    with _slot():
        return work()


@router.get("/api/v1/runs/{project}/{run_id}/reproduce-plan", response_model=ReproducePlanResponse,
            responses=_ERRORS, summary="What reproducing a run would do (a dry run)")
def reproduce_plan(request: Request, project: str, run_id: str,
                   env: Literal["current", "venv", "uv"] = Query("current", description="The environment to "
                                                                 "reproduce in: current, venv or uv")
                   ) -> ReproducePlanResponse:
    """`tracklet reproduce RUN --dry-run --env ENV` on this server's machine: what would be checked
    out, applied, restored, installed and run (`plan`, and its parts), what differs from the
    machine the run ran on, and what can't be restored and why (`problems`; `ok` when none); the
    seeds the program set (`seeds`, and for a distributed run the other ranks': `rank_seeds`,
    `ranks_unrecorded`). The `command` runs it where the data root and the repository are.
    Nothing is written."""
    from tracklet.reproduce.plan import make_plan

    root: Path = request.app.state.tracklet.root
    # A directory that is never created: the target is the caller's, not a path on the server.
    never = root / "reproductions" / f".plan-{run_id}-never-created"
    with ExitStack() as files:
        run = _recorded(request, project, run_id, files)
        blobs = _blobs(request)
        plan = _guarded(lambda: make_plan(run, root, env=env, directory=never, blobs=blobs))
        plan.directory = Path(f"reproduce-{run_id}")
        rendered = plan.render()
        copied = str(run.files_dir)
        if run.files_dir != run_paths(root, project, run_id).files_dir:  # name the copies as the server's files
            label = f"<server files of {project}/{run_id}>"
            rendered = rendered.replace(copied, label)
            plan.problems = [problem.replace(copied, label) for problem in plan.problems]
            plan.diff = Path(str(plan.diff).replace(copied, label)) if plan.diff is not None else None
    local = getattr(request.app.state, "registry_root", None) is not None  # tracklet ui over a data root
    command = ["tracklet", *(["--dir", str(root)] if local else []), "reproduce", run.path,
               *(["--env", env] if env != "current" else [])]
    data = plan.to_dict()
    return ReproducePlanResponse.model_validate(json_value({
        **{key: data[key] for key in ("run", "ok", "env", "repository", "commit", "branch", "diff", "code_files",
                                      "program", "arguments", "workdir", "requirements", "artifacts", "variables",
                                      "config", "problems", "differences", "seeds", "seeds_dropped",
                                      "seeds_unknown", "rank", "world", "rank_seeds", "ranks_unrecorded")},
        "command": shlex.join(command), "plan": rendered}))


@router.get("/api/v1/projects/{project}/run-diff", response_model=RunDiffResponse, response_model_exclude_unset=True,
            responses=_ERRORS,
            summary="What differs between two runs of a project")
def run_diff(request: Request, project: str,
             a: str = Query(..., max_length=128, description="The first run's id"),
             b: str = Query(..., max_length=128, description="The second run's id")) -> RunDiffResponse:
    """What `tracklet diff A B` computes: config (nested keys joined with dots), environment,
    packages, inputs (artifact versions used), summary metrics (with `difference` and `relative`
    difference `(b - a) / |a|`) and `code` (a unified diff of the sources as each ran). Each
    section lists only what differs."""
    from tracklet.reproduce.compare import compare

    with ExitStack() as files:
        left, right = _recorded(request, project, a, files), _recorded(request, project, b, files)
        blobs = _blobs(request)
        result: dict[str, Any] = _guarded(lambda: compare(left, right, blobs))
    return RunDiffResponse.model_validate(json_value(result))
