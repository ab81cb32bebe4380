"""What ``tracklet.core.run.Run``'s artifact methods call (through ``core/extensions.py``: the
core never imports this package itself)."""

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.lookup import resolve
from tracklet.artifacts.names import parse_ref
from tracklet.artifacts.worker import ArtifactWorker, prepare, used_record

__all__ = ["Artifact", "ArtifactWorker", "parse_ref", "prepare", "resolve", "used_record"]
