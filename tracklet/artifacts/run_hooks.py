"""What ``tracklet.core.run.Run``'s artifact methods call (through ``core/extensions.py``: the
core never imports this package itself). ``log_artifact`` needs only ``prepare`` and
``ArtifactWorker`` on the caller's thread; ``resolve`` and ``resolve_run_table`` (``use_artifact``)
are imported when first used."""

from typing import Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.names import parse_ref
from tracklet.artifacts.worker import ArtifactWorker, prepare, used_record

__all__ = ["Artifact", "ArtifactWorker", "parse_ref", "prepare", "used_record"]


def __getattr__(name: str) -> Any:
    if name == "resolve":
        from tracklet.artifacts.lookup import resolve

        return resolve
    if name == "resolve_run_table":
        from tracklet.artifacts.run_tables import resolve_run_table

        return resolve_run_table
    raise AttributeError(name)
