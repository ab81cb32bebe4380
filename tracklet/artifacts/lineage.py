"""Which runs logged and used an artifact version, from the store's ``artifact_edges`` table
(derived from the runs' ``ArtifactLogged`` / ``ArtifactUsed`` records; indexed on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _edges(root: Path, info: Any, direction: str) -> list[Any]:
    from tracklet.core.api import Api, RecordedRun
    from tracklet.core.layout import RunPaths
    from tracklet.store.lineage import runs_with_edge

    api = Api(root)
    try:
        paths = runs_with_edge(api.store.engine, info.project, info.name, info.version, direction)
    finally:
        if api._store is not None:
            api._store.close()
    return [RecordedRun(RunPaths(root, project, run_id)) for project, run_id in paths]


def logged_by(root: Path, info: Any) -> Any:
    found = _edges(root, info, "logged")
    return found[0] if found else None


def used_by(root: Path, info: Any) -> list[Any]:
    return _edges(root, info, "used")
