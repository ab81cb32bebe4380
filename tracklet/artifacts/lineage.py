"""Which runs logged and used an artifact version, from the store's ``artifact_edges`` table
(derived from the runs' ``ArtifactLogged`` / ``ArtifactUsed`` records; indexed on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INDEX_WAIT = 2.0  # seconds a lineage read waits for another process's indexing (as tracklet.Api does)


def _edges(root: Path, info: Any, direction: str) -> list[Any]:
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.store import Store
    from tracklet.store.lineage import runs_with_edge

    store = Store(None, root=root)
    try:
        store.index(wait=INDEX_WAIT)  # what the logs gained; another process indexing: what it committed
        paths = runs_with_edge(store.engine, info.project, info.name, info.version, direction)
    finally:
        store.close()
    return [RecordedRun(RunPaths(root, project, run_id)) for project, run_id in paths]


def logged_by(root: Path, info: Any) -> Any:
    """From the store; else (a run not indexed yet, or whose log lacks the record because it
    finished before the version was committed) the run the version file names, if its log exists."""
    found = _edges(root, info, "logged")
    if found:
        return found[0]
    if info.logged_by and info.logged_by.count("/") == 1:
        from tracklet.core.api import RecordedRun
        from tracklet.core.layout import RunPaths
        from tracklet.core.settings import is_valid_name

        project, run_id = info.logged_by.split("/")
        paths = RunPaths(root, project, run_id)
        if is_valid_name(project) and is_valid_name(run_id) and paths.log_file.is_file():
            return RecordedRun(paths)
    return None


def used_by(root: Path, info: Any) -> list[Any]:
    return _edges(root, info, "used")


def run_paths(root: Path, project: str, name: str, version: int, direction: str) -> list[str]:
    """``project/run_id`` of the runs that ``logged`` (or ``used``) ``project/name:v<version>``,
    from the store's edges (the runs' records): known after the version itself was deleted."""
    from types import SimpleNamespace

    info = SimpleNamespace(project=project, name=name, version=version)
    return [run.path for run in _edges(root, info, direction)]
