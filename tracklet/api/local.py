"""``LocalApi``: ``tracklet.Api`` over a data root, reading runs straight from their record logs.

Listing a project and opening a run read the logs (``tracklet.core.api.RecordedRun``); filters,
sorts, paging and cross-run history are answered by the store (``tracklet.store``), indexed on
first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracklet.api import Api
from tracklet.core import forksafe
from tracklet.core.api import RecordedRun
from tracklet.core.layout import RunPaths, check_name, has_log, is_valid_name, iter_runs, projects_dir
from tracklet.core.settings import default_data_root
from tracklet.errors import RunNotFound, TrackletWarning

# Seconds a query waits for another process's index pass (``tracklet ui`` runs one every second)
# before answering from what that process committed; see ``LocalApi.store``.
READER_INDEX_WAIT = 2.0


INDEX_NOTICE_AFTER = 2.0  # seconds a query's implicit indexing goes on before it says so


def _notice_later(seconds: float, message: str) -> Any:
    """A daemon timer printing ``message`` on stderr after ``seconds`` (``cancel()`` it when done)."""
    import sys

    from tracklet.core import threads

    return threads.later(seconds, lambda: print(message, file=sys.stderr, flush=True))


def _warn_failed(report: Any) -> None:
    """One warning per run the store could not index (queries leave it out until it can be)."""
    import warnings

    for failure in report.failed:
        warnings.warn(f"tracklet: could not index {failure}; store queries leave this run out",
                      TrackletWarning, stacklevel=4)


class LocalApi(Api):
    """Read access to the runs under a data root (default: ``TRACKLET_DIR`` or the per-user one);
    the store at ``store_url`` (default: SQLite in the data root) answers cross-run queries."""

    # A forked child (a Pool worker holding this Api) opens the store again: the parent's engine
    # holds the parent's SQLite connections (core/forksafe.own).
    _store = forksafe.own(lambda api, parents: None)

    def __init__(self, root: str | Path | None = None, *, store_url: str | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        if base_url is not None:
            raise ValueError("a LocalApi reads a data root; tracklet.Api(base_url=...) reads a server")
        if root is None:
            root = os.environ.get("TRACKLET_DIR") or default_data_root()
        self.root = Path(root).expanduser()
        self._store_url = store_url
        self._store = None

    @property
    def store(self) -> Any:
        """The store for cross-run queries (``tracklet.store.Store``), indexed on first use;
        :meth:`index` brings it up to date again. A query never fails because another process
        (``tracklet ui``, ``tracklet index``) is indexing: after waiting up to
        ``READER_INDEX_WAIT`` seconds for it, the store answers from what that process committed."""
        if self._store is None:
            from tracklet.store import Store

            self._store = Store(self._store_url, root=self.root)
            if not self._store.read_only:  # a root this user can't write is read as it was last indexed
                # A first query after long runs (a crashed one's whole log) indexes for a while: said
                # once it lasts, so it doesn't read as a hang.
                notice = _notice_later(INDEX_NOTICE_AFTER, f"tracklet: indexing what the record logs under {self.root} "
                                       "gained since the last index, for this query (once; `tracklet index` does it "
                                       "ahead of time)...")
                try:
                    _warn_failed(self._store.index(wait=READER_INDEX_WAIT))
                finally:
                    notice.cancel()
        return self._store

    def index(self, *, wait: float = READER_INDEX_WAIT) -> Any:
        """Ingest what the record logs gained since the last index into the store; an
        ``IndexReport`` (``busy`` if another process was indexing for all of ``wait`` seconds,
        ``failed``: the runs that could not be indexed, and why)."""
        return self.store.index(wait=wait)

    def _reports_backend(self) -> Any:
        from tracklet.core.extensions import load

        return load("reports").local_backend(self.root, self._store_url)

    def close(self) -> None:
        """Close the store's connections, if it was opened (it opens again on the next query)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def projects(self) -> list[str]:
        """The projects with runs under the data root."""
        base = projects_dir(self.root)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if is_valid_name(p.name) and (p / "runs").is_dir())

    def runs(
        self,
        project: str,
        filter: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RecordedRun]:
        """A project's runs, newest first. With ``filter`` (e.g. ``config.lr < 1e-3 and state =
        "finished"``), ``order_by`` (e.g. ``-summary.val/loss``), ``limit`` or ``offset`` the
        store answers (see docs/store.md for the expression syntax)."""
        check_name("project", project)
        if filter or order_by or limit is not None or offset:
            rows = self.store.runs(project, filter=filter, order_by=order_by, limit=limit, offset=offset)
            return [RecordedRun(RunPaths(self.root, project, row["run_id"])) for row in rows]
        found = [RecordedRun(paths) for paths in iter_runs(self.root, project, parts=True)]
        found.sort(key=lambda r: (r.created_at or 0.0, r.id), reverse=True)
        return found

    def history(
        self,
        runs: Sequence[str | RecordedRun] | str | RecordedRun,
        keys: Sequence[str] | str,
        *,
        x: str = "step",
        start: float | None = None,
        end: float | None = None,
        buckets: int | None = 1000,
    ) -> list[Any]:
        """Cross-run history from the store: per run and key, ``buckets`` buckets of min, max,
        last and count over the window (exact points when the window holds fewer), or every
        point with ``buckets=None``. See ``tracklet.store.query.SeriesHistory``."""
        items = [runs] if isinstance(runs, (str, RecordedRun)) else list(runs)
        paths = [r.path if isinstance(r, RecordedRun) else r for r in items]
        return self.store.history(paths, keys, x=x, start=start, end=end, buckets=buckets)

    # ------------------------------------------------------------ artifacts (docs/artifacts.md)

    def artifact(self, name: str, type: str | None = None) -> Any:
        """A committed artifact version: ``"project/name:alias"``, ``"project/name:v3"`` or
        ``"project/name"`` (latest); or a registry collection's: ``"registry/collection:alias"``,
        ``"wandb-registry-model/name:v2"``, ``"models:/name@alias"``, ``"models:/name/3"``
        (docs/registry.md). ``ArtifactNotFound`` if there is none."""
        from tracklet.artifacts.lookup import resolve
        from tracklet.registry.service import resolve as resolve_registry

        found = resolve_registry(self.root, name, type=type)
        return found if found is not None else resolve(self.root, name, type=type)

    # ------------------------------------------------------------ the model registry (docs/registry.md)

    @property
    def registry(self) -> Any:
        """The data root's model registry (``tracklet.registry.sql.ModelRegistry``): links,
        aliases, history, cards, promotion requests."""
        from tracklet.registry.service import open_local

        return open_local(self.root)

    def alias_history(self, collection: str, alias: str | None = None) -> list[Any]:
        """Every move of the collection's aliases (of ``alias`` only, if given), oldest first:
        ``AliasEvent``s (actor, at, from_version, to_version, reason). ``collection`` is
        ``"registry/collection"`` (``":alias"`` may name the alias)."""
        from tracklet.errors import ArtifactNotFound
        from tracklet.registry.service import open_local, parse_collection

        ref = parse_collection(collection)
        registry = open_local(self.root, create=False)  # reading makes no registry file
        if registry is None:
            raise ArtifactNotFound(f"no registry collection {ref.path} (nothing was linked to it)")
        return registry.history(ref.registry, ref.collection, alias or (None if ":" not in collection
                                                                         else ref.selector))

    def registry_collections(self, registry: str | None = None) -> list[dict[str, Any]]:
        """The registry's collections (of ``registry`` only, if given): name, type, versions, aliases."""
        from tracklet.registry.service import open_local

        found = open_local(self.root, create=False)
        return found.collections(registry) if found is not None else []

    def artifact_versions(self, name: str, type: str | None = None) -> list[Any]:
        """Every version of ``"project/name"``, oldest first; or of a registry collection
        (``"registry/collection"``, ``"wandb-registry-model/name"``, ``"models:/name"``, as
        ``artifact()`` reads them), each as read through it."""
        from tracklet.artifacts.lookup import versions
        from tracklet.artifacts.names import parse_ref
        from tracklet.errors import ArtifactError
        from tracklet.registry.service import versions as registry_versions

        linked = registry_versions(self.root, name, type=type)
        if linked is not None:
            return linked
        ref = parse_ref(name)
        if ref.project is None:
            raise ArtifactError(f"artifact_versions() needs 'project/name'; got {name!r}")
        found = versions(self.root, ref.project, ref.name)
        return [artifact for artifact in found if type is None or artifact.type == type]

    def artifact_collections(self, project: str, type: str | None = None) -> list[dict[str, Any]]:
        """A project's artifact collections: ``{"name", "type", "versions", "latest", "description",
        "tags"}`` each (the collection's own description and tags)."""
        from tracklet.artifacts.lookup import collections

        return collections(self.root, check_name("project", project), type=type)

    def delete_artifact_collection(self, name: str) -> list[Any]:
        """Delete every version of the collection ``"project/name"`` and its aliases (W&B's
        ``ArtifactCollection.delete()``; ``artifacts.lookup.delete_collection``): their files stay
        stored until ``tracklet artifact gc``. Refused while the model registry links one of its
        versions. Returns the versions deleted (``VersionInfo``s)."""
        from tracklet.artifacts.lookup import delete_collection

        project, collection = _collection_path(name, "delete_artifact_collection()")
        return delete_collection(self.root, project, collection)

    def set_artifact_collection_type(self, name: str, type: str) -> str:  # noqa: A002
        """Give every version of the collection ``"project/name"`` the artifact type ``type`` (W&B's
        ``ArtifactCollection.change_type``); refused while the model registry links one of its
        versions. Returns its type before."""
        from tracklet.artifacts.lookup import set_collection_type

        project, collection = _collection_path(name, "set_artifact_collection_type()")
        return set_collection_type(self.root, project, collection, type)

    def edit_artifact_collection(self, name: str, *, description: str | None = None, tags: list[str] | None = None,
                                 add_tags: list[str] | None = None, remove_tags: list[str] | None = None,
                                 type: str | None = None) -> dict[str, Any]:  # noqa: A002
        """Edit the collection ``"project/name"`` (W&B's ``ArtifactCollection.save()``) in one
        locked change, all of it or nothing: its own ``description``, its tags replaced whole
        (``tags``) or only those named added and removed (``add_tags``, ``remove_tags``: against
        the tags stored when the edit lands, so concurrent edits of different tags all land), and
        its ``type`` (every version's; refused while the model registry links one of them). None:
        left as it is. W&B's tag names, at most 256; a bad tag raises ``ArtifactNameError`` naming
        it, changing nothing. Returns ``{"description", "tags"}`` as stored."""
        from tracklet.artifacts.fields import CollectionEdit
        from tracklet.artifacts.lookup import edit_collection

        project, collection = _collection_path(name, "edit_artifact_collection()")
        edit = CollectionEdit(type=type, description=description, tags=tags, add_tags=list(add_tags or []),
                              remove_tags=list(remove_tags or []))
        fields = edit_collection(self.root, project, collection, edit)[1]
        return {"description": fields.description, "tags": list(fields.tags)}

    def sweep(self, path: str) -> dict[str, Any]:
        """See :meth:`tracklet.Api.sweep`; here a sweep id alone also names it (ids are unique under
        a data root)."""
        from tracklet.core.extensions import load

        view = load("sweep_view")
        if "/" not in path.strip("/"):
            found = view.reader(self.root, path.strip("/"))
            return view.read_sweep(self.root, found.controller.project, found.sweep_id, found=found)
        project, sweep_id = _sweep_path(path)
        return view.read_sweep(self.root, check_name("project", project), sweep_id)

    def traces(self, project: str, filter: Any = None, run: Any = None, limit: int = 100) -> list[Any]:
        """See :meth:`tracklet.Api.traces`; payloads over 8 KiB are read from the data root's blob store."""
        from tracklet.api.traces import check_filter, run_id_of, trace_of

        check_name("project", project)
        rows = self.store.traces(project, run_id=run_id_of(run), filters=check_filter(filter), limit=limit)
        return [trace_of(row, self._read_blob) for row in rows]

    def _read_blob(self, digest: str) -> bytes:
        from tracklet.artifacts.blobs import FsspecBlobStore
        from tracklet.artifacts.storage import artifact_dir

        return bytes(FsspecBlobStore(artifact_dir(self.root)).read_bytes(digest))

    def run(self, path: str) -> RecordedRun:
        """A run by ``project/run_id`` or ``project/run_name``, or by a run id (or name) that is
        unique under the root. An id wins over a name; a name several runs share is refused,
        naming them."""
        if "/" in path:
            project, _, reference = path.partition("/")
            check_name("project", project)
            if is_valid_name(reference):
                paths = RunPaths(self.root, project, reference)
                if has_log(paths):  # its run.tlog, or the parts of a shared run whose primary never started
                    return RecordedRun(paths)
            matches = [r for r in self.runs(project) if r.name == reference]
            if not matches:
                raise RunNotFound(f"no run {path} under {self.root} (no run id or name {reference!r} in "
                                  f"project {project!r})")
            return _only(path, matches)
        matches = [r for project in self.projects() for r in self.runs(project) if r.id == path]
        if not matches:
            matches = [r for project in self.projects() for r in self.runs(project) if r.name == path]
        if not matches:
            raise RunNotFound(f"no run with id or name {path!r} under {self.root}")
        return _only(path, matches)

    def __repr__(self) -> str:
        return f"<tracklet LocalApi {self.root}>"


def _only(reference: str, matches: list[RecordedRun]) -> RecordedRun:
    if len(matches) > 1:
        raise RunNotFound(f"{reference!r} matches {len(matches)} runs: " + ", ".join(r.path for r in matches))
    return matches[0]


def _sweep_path(path: str) -> tuple[str, str]:
    project, _, sweep_id = path.strip("/").rpartition("/")
    if not project or not sweep_id:
        raise ValueError(f"a sweep is named project/sweep_id; got {path!r}")
    return project, sweep_id


def _collection_path(name: str, what: str) -> tuple[str, str]:
    """``(project, name)`` of ``"project/name"`` (an alias or version after ``:`` is refused: the
    call is about the whole collection)."""
    from tracklet.errors import ArtifactError

    project, slash, collection = str(name).partition("/")
    if not slash or not project or not collection or "/" in collection or ":" in collection:
        raise ArtifactError(f"{what} needs a collection as 'project/name'; got {name!r}")
    return check_name("project", project), collection
