"""Where the server's artifact read routes find versions and manifests: ``artifact_source(request)``.

The read routes (``routes_artifacts_read.py``) only read, through the small ``ArtifactSource``
protocol: a project's collection names, a collection's version numbers, one version by selector
(with its aliases), and a version's manifest. A page of versions reads only its versions, each on
its own, so one damaged version file is reported on its row and doesn't hide the others. ``LocalArtifactSource`` is the registry and blob store of a local artifact
directory (``<data root>/artifacts``, or ``$TRACKLET_ARTIFACT_DIR``): what ``tracklet ui`` and a
plain ``tracklet server`` serve. It writes nothing (no stat cache, no lock file), so it suits the
read-only ``tracklet ui``. A deployment with another registry (server mode's SQL registry) puts
its own source in with ``set_artifact_source(app, source)``.

Manifests are immutable (named by their sha256), so the last few parsed ones are kept (at most
``MANIFESTS_KEPT``, holding ``ENTRIES_KEPT`` files in all besides the newest), and a file browser
paging through a large version parses its manifest once (100,000 files: 12 MB, ~3 s to read and
check on a loaded 2-core VM; then 30-200 ms a page).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request

from tracklet.artifacts.blobs import FsspecBlobStore
from tracklet.artifacts.fields import CollectionFields
from tracklet.artifacts.manifest import Manifest
from tracklet.artifacts.registry import LocalRegistry, VersionInfo
from tracklet.artifacts.storage import artifact_dir

MANIFESTS_KEPT = 8  # parsed manifests kept per source (a 10,000-file manifest is a few MB parsed)
ENTRIES_KEPT = 300_000  # ... and files in them at most, beyond the newest one (memory stays bounded)


class ArtifactSource(Protocol):
    """What the artifact read routes need of a registry and its blobs."""

    def collections(self, project: str) -> list[str]:
        """Names of the project's collections that have a version, sorted."""
        ...

    def version_numbers(self, project: str, name: str) -> list[int]:
        """The collection's version numbers, ascending (``[]`` if it has none)."""
        ...

    def version(self, project: str, name: str, selector: str) -> VersionInfo:
        """The version ``selector`` (``latest``, ``vN``, an alias) names; ``ArtifactNotFound`` if none."""
        ...

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        """The collection's own description and tags (empty if never edited)."""
        ...

    def manifest(self, info: VersionInfo) -> Manifest:
        """The version's manifest, checked (``ArtifactError`` if its blob is missing or damaged)."""
        ...


class LocalArtifactSource:
    """The registry and blobs of a local artifact directory, read-only."""

    def __init__(self, directory: str | Path, blobs: FsspecBlobStore | None = None, registry: Any = None) -> None:
        """``blobs``: where the manifests are, if not in ``directory`` (a server's ``--artifacts``
        URL); ``registry``: the versions, if not the directory's (a server's ``SqlRegistry``)."""
        self.directory = Path(directory)
        self.registry = registry if registry is not None else LocalRegistry(self.directory)
        self.blobs = blobs if blobs is not None else FsspecBlobStore(self.directory)
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._lock = threading.Lock()

    def collections(self, project: str) -> list[str]:
        return self.registry.collections(project)

    def version_numbers(self, project: str, name: str) -> list[int]:
        return self.registry.version_numbers(project, name)

    def version(self, project: str, name: str, selector: str) -> VersionInfo:
        return self.registry.version(project, name, selector)

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        return self.registry.collection_fields(project, name)

    def manifest(self, info: VersionInfo) -> Manifest:
        with self._lock:
            cached = self._manifests.get(info.manifest)
            if cached is not None:
                self._manifests.move_to_end(info.manifest)
                return cached
        manifest = Manifest.from_bytes(self.blobs.read_bytes(info.manifest),
                                       what=f"the manifest of {info.qualified_name}")
        with self._lock:
            self._manifests[info.manifest] = manifest
            while len(self._manifests) > 1 and (len(self._manifests) > MANIFESTS_KEPT or sum(
                    len(kept) for kept in self._manifests.values()) > ENTRIES_KEPT):
                self._manifests.popitem(last=False)
        return manifest


def set_artifact_source(app: FastAPI, source: ArtifactSource) -> None:
    """Serve artifacts from ``source`` instead of the data root's local artifact directory."""
    app.state.artifact_source = source


def artifact_source(request: Request) -> ArtifactSource:
    """The artifact source of the app serving ``request``: the one set with
    ``set_artifact_source``, else (made on first use) the local artifact directory of the data
    root the server serves (``artifact_dir``: ``<root>/artifacts`` or ``$TRACKLET_ARTIFACT_DIR``)."""
    state = request.app.state
    source: ArtifactSource | None = getattr(state, "artifact_source", None)
    if source is None:
        source = LocalArtifactSource(artifact_dir(state.tracklet.root))
        state.artifact_source = source
    return source
