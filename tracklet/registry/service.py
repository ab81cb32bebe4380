"""The registry as runs, ``tracklet.Api`` and the CLI use it: linking committed artifact versions
into collections, finding a version by ``registry/collection:alias`` or ``models:/name@alias``,
and the registry of a data root or of a server.

Local mode keeps the registry in ``<artifact dir>/registry.sqlite`` (``tables.py``, created on the
first link); a version read through it is the artifact version it links, downloaded from the local
store as any other. An online run, and ``tracklet.Api(base_url=...)``, use the server's
(``remote.py``). This module is the ``"registry"`` part ``core/extensions.py`` hands the core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

from tracklet.core import forksafe
from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.names import LATEST
from tracklet.errors import ArtifactDeleted, ArtifactNotFound, ArtifactTypeMismatch, RegistryError
from tracklet.registry.refs import MODEL_REGISTRY, RegistryRef, parse_registry_ref, parse_target
from tracklet.registry.sql import Link, ModelRegistry

REGISTRY_FILE = "registry.sqlite"

# The last few roots' registries stay open; an older one goes once nothing holds it, its engine disposed
# (forksafe.Recent: a dict kept every root's connections for the process's life).
_opened = forksafe.recent()
_opened_lock = forksafe.lock()


def registry_file(root: str | os.PathLike) -> Path:
    from tracklet.artifacts.storage import artifact_dir

    return artifact_dir(Path(root).expanduser()) / REGISTRY_FILE


def open_local(root: str | os.PathLike, *, create: bool = True) -> ModelRegistry | None:
    """The registry of data root ``root`` (one per process and file); None if it has none and
    not ``create``."""
    from tracklet.store.engine import create_engine, is_read_only

    path = registry_file(root)
    key = str(path)
    with _opened_lock:
        registry = _opened.get(key)
        if registry is not None:
            return registry
        if not create and not path.is_file():
            return None
        engine = create_engine(f"sqlite:///{path}", what="the model registry")  # the store's SQLite settings (WAL, busy timeout)
        if not is_read_only(engine):  # one this user can't write is read as its writer left it
            _create_tables(engine)
        registry = _opened[key] = ModelRegistry(engine, holding=_local_holding(Path(root)))
        forksafe.release_with(registry, engine.dispose)
        return registry


def _local_holding(root: Path) -> Callable[[Any, Any], contextlib.AbstractContextManager[None]]:
    """A link's hold on its source version in data root ``root``'s store (``ModelRegistry(holding=)``):
    the collection's file lock, which ``tracklet artifact rm`` takes to check the links."""

    def holding(connection: Any, source: Any) -> contextlib.AbstractContextManager[None]:
        from tracklet.artifacts.storage import open_store

        return open_store(root).registry.holding(connection, source.project, source.name, source.version)

    return holding


_clients: dict[tuple[str, str | None], Any] = {}


def _create_tables(engine: Any) -> None:
    """The registry's tables, if missing. Processes opening a new file at once race to create them:
    a loser's "already exists" is their winner's work, so look again (``checkfirst``)."""
    import sqlalchemy as sa

    from tracklet.registry.tables import metadata

    for attempt in range(10):
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except sa.exc.OperationalError as error:
            if "already exists" not in str(error) or attempt == 9:
                raise
    _add_columns(engine)


def _add_columns(engine: Any) -> None:
    """Columns a newer tracklet added to a ``registry.sqlite`` made before them (the server's
    migrations do this for a server): ``registry_protections.approver_role`` (server ``s0011``)."""
    import sqlalchemy as sa

    columns = {column["name"] for column in sa.inspect(engine).get_columns("registry_protections")}
    if "approver_role" in columns:
        return
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE registry_protections "
                                       "ADD COLUMN approver_role VARCHAR(16) NOT NULL DEFAULT 'admin'"))
    except sa.exc.OperationalError as error:
        if "duplicate column" not in str(error):  # another process added it first
            raise


def open_remote(base_url: str, api_key: str | None = None, *, http: Any = None) -> Any:
    """The registry of the server at ``base_url`` (a ``RemoteRegistry``). Without ``http``, one
    client per server and key for the process (a run's lookups reuse its connections), retrying
    for 10 s at most: a lookup must not stall a training run on an unreachable server."""
    from tracklet.client.registry import RegistryClient
    from tracklet.registry.remote import RemoteRegistry

    if http is None:
        from tracklet.client.http import HttpClient, RetryPolicy
        from tracklet.errors import RemoteError

        with _opened_lock:
            http = _clients.get((base_url, api_key))
            if http is None:
                retry = RetryPolicy(base=0.25, cap=2.0, give_up_after=10.0, attempts=3)
                http = _clients[(base_url, api_key)] = HttpClient(base_url, api_key=api_key, retry=retry,
                                                                  error=RemoteError)
    return RemoteRegistry(RegistryClient(http))


def default_actor() -> str:
    """Who acts in local mode: ``$TRACKLET_ACTOR``, else the OS user. Nothing authenticates it
    (a data root is the user's own); a server names the API key's user instead."""
    configured = os.environ.get("TRACKLET_ACTOR", "").strip()
    if configured:
        return configured
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"


def linked_artifact(store: Any, info: Any, link: Link, backend: Any = None) -> Artifact:
    """The artifact version ``info`` (of ``store``) as read through ``link``: its files and
    lineage are the version's, its version and aliases the collection's. ``backend``: the
    registry it was read from (local or a server's), which ``save()`` moves its aliases in."""
    artifact = Artifact._from_version(store, dataclasses.replace(info))
    artifact._link = link
    artifact._registry = backend
    return artifact


def files_deleted(link: Link) -> str:
    """What reading registry version ``link`` says when the artifact version it links was deleted
    (``tracklet artifact rm --force`` / ``--break-registry-links``): the registry keeps it."""
    return (f"{link.path} links {link.source}, which was deleted (`tracklet artifact rm`): this registry version "
            "has no files; the registry keeps it and its alias history (unlink() removes it from its collection)")


def deleted_link(root: str | os.PathLike, reference: Any) -> Link | None:
    """The data root's registry version ``reference`` names when the artifact version it links was
    deleted (what ``resolve`` raises ``ArtifactDeleted`` for); None otherwise. ``tracklet artifact
    show`` presents it: the link, "files deleted", and the runs that logged and used that version."""
    from tracklet.artifacts.storage import open_store

    ref = parse_registry_ref(reference)
    registry = open_local(root, create=False) if ref is not None else None
    if ref is None or registry is None or not registry.has_collection(ref.registry, ref.collection):
        return None
    link = registry.resolve(ref.registry, ref.collection, ref.selector)
    deleted = open_store(Path(root).expanduser()).registry.was_deleted(link.source_project, link.source_name,
                                                                         link.source_version)
    return link if deleted else None


def _local_source(root: Path, link: Link) -> tuple[Any, Any]:
    from tracklet.artifacts.storage import open_store

    store = open_store(root)
    try:
        info = store.registry.read_version(link.source_project, link.source_name, link.source_version)
    except ArtifactNotFound:
        raise ArtifactDeleted(files_deleted(link)) from None
    if info.digest != link.source_digest:  # versions are immutable: only a damaged store gets here
        raise RegistryError(f"{link.path} links {link.source}, whose content no longer matches what was linked")
    return store, info


def resolve(root: str | os.PathLike, reference: Any, *, type: str | None = None,
            remote: tuple[str, str | None] | None = None) -> Artifact | None:
    """The version a registry reference names, or None if ``reference`` is no registry reference
    (then it is an artifact's: ``artifacts.lookup.resolve``). ``registry/collection`` forms name a
    registry collection when one of that name exists (else they are ``project/name``); W&B's
    ``wandb-registry-<registry>/...`` and ``models:/...`` always do. With ``remote`` (an online
    run's server) the server's registry answers."""
    ref = parse_registry_ref(reference)
    if ref is None:
        return None
    if remote is not None:
        from tracklet.errors import RemoteError

        try:
            return _resolve_remote(root, ref, remote, type)
        except RemoteError as error:  # unreachable, or refusing: the local registry, if it has it
            if not ref.explicit:
                return None  # an artifact's "project/name", maybe: its own lookup falls back locally
            try:
                return resolve(root, reference, type=type)
            except ArtifactNotFound:
                raise error from None
    registry = open_local(root, create=False)
    if registry is None or (not ref.explicit and not registry.has_collection(ref.registry, ref.collection)):
        if ref.explicit:
            raise ArtifactNotFound(f"no registry collection {ref.path} (nothing was linked to it)")
        return None
    link = registry.resolve(ref.registry, ref.collection, ref.selector)
    store, info = _local_source(Path(root).expanduser(), link)
    if type is not None and info.type != type:
        raise ArtifactTypeMismatch(f"{link.path} is of type {info.type!r}, not {type!r}", asked=type, found=info.type,
                                   name=link.path)
    return linked_artifact(store, info, link, registry)


def versions(root: str | os.PathLike, reference: Any, *, type: str | None = None, http: Any = None) -> list[Artifact] | None:
    """Every version of the registry collection ``reference`` names, oldest first, each as read
    through the collection (``resolve``'s); None if ``reference`` names no registry collection
    (then it is an artifact's ``project/name``: ``artifacts.lookup.versions``). The same forms as
    ``resolve``; an alias or version in ``reference`` is ignored. With ``http``, the server's
    registry answers (one request for the list, one per version)."""
    ref = parse_registry_ref(reference)
    if ref is None:
        return None
    if http is not None:
        from tracklet.artifacts.remote import ServerVersionStore, version_info
        from tracklet.client.artifacts import ArtifactClient
        from tracklet.registry.remote import link_of

        from tracklet.errors import RegistryForbidden

        backend = open_remote(http.base_url, http=http)
        try:
            links = backend.versions(ref.registry, ref.collection)
        except (ArtifactNotFound, RegistryForbidden):  # forbidden: no role in a registry named like the project,
            if not ref.explicit:  # so "project/name" is the artifact's (as resolve_on_server decides)
                return None
            raise
        store = ServerVersionStore(ArtifactClient(http), root)
        found = []
        deleted: list[str] = []
        for link in links:
            document = backend.resolve_document(ref.registry, ref.collection, f"v{link.version}")
            if document.get("files_deleted") or document.get("version") is None:
                deleted.append(link_of(document["link"]).path)
                continue
            found.append(linked_artifact(store, version_info(document["version"]), link_of(document["link"]),
                                         backend))
    else:
        registry = open_local(root, create=False)
        if registry is None or not registry.has_collection(ref.registry, ref.collection):
            if ref.explicit:
                raise ArtifactNotFound(f"no registry collection {ref.path} (nothing was linked to it)")
            return None
        found, deleted = [], []
        for link in registry.versions(ref.registry, ref.collection):
            try:
                found.append(linked_artifact(*_local_source(Path(root).expanduser(), link), link, registry))
            except ArtifactDeleted:
                deleted.append(link.path)
    if deleted:  # listed as W&B lists a collection: the versions that can be read
        import warnings

        from tracklet.core.stack import user_stacklevel
        from tracklet.errors import TrackletWarning

        warnings.warn(f"tracklet: {', '.join(deleted)} left out: the artifact version each links was deleted "
                      "(`tracklet artifact rm --break-registry-links`), so it has no files", TrackletWarning,
                      stacklevel=user_stacklevel())
    return [artifact for artifact in found if type is None or artifact.type == type]


def _resolve_remote(root: str | os.PathLike, ref: RegistryRef, remote: tuple[str, str | None], type: str | None,
                    http: Any = None) -> Artifact | None:
    from tracklet.artifacts.remote import ServerVersionStore, version_info
    from tracklet.client.artifacts import ArtifactClient
    from tracklet.registry.remote import link_of

    backend = open_remote(remote[0], remote[1], http=http)
    try:
        document = backend.resolve_document(ref.registry, ref.collection, ref.selector)
    except ArtifactNotFound as error:
        # "registry collection x/y has no alias ..." means the collection exists; anything else
        # (no such collection, a server without a registry) leaves "x/y" to be an artifact's.
        if not ref.explicit and not str(error).startswith("registry collection"):
            return None
        raise
    if document.get("files_deleted") or document.get("version") is None:
        raise ArtifactDeleted(files_deleted(link_of(document["link"])))
    info = version_info(document["version"])
    if type is not None and info.type != type:
        raise ArtifactTypeMismatch(f"{ref} is of type {info.type!r}, not {type!r}", asked=type, found=info.type,
                                   name=str(ref))
    store = ServerVersionStore(ArtifactClient(backend.client.http), root)
    return linked_artifact(store, info, link_of(document["link"]), backend)


def resolve_on_server(http: Any, data_root: str | os.PathLike, reference: Any, *,
                      type: str | None = None) -> Artifact | None:
    """``resolve`` against the server ``http`` talks to (``RemoteApi.artifact``)."""
    from tracklet.errors import RegistryForbidden

    ref = parse_registry_ref(reference)
    if ref is None:
        return None
    try:
        return _resolve_remote(data_root, ref, (http.base_url, None), type, http=http)
    except RegistryForbidden:  # no role in a registry named like the project: "project/name" is the artifact's
        # (any other failure, an unreachable server or a 5xx, is raised: falling back would name another artifact)
        if ref.explicit:
            raise
        return None


def link_artifact(artifact: Artifact, target_path: str, aliases: list[str] | None = None, *,
                  actor: str | None = None, reason: str | None = None,
                  remote: tuple[str, str | None] | None = None) -> Artifact:
    """Link committed ``artifact`` (waited for) into ``target_path`` (``registry/collection``)
    as its next version, or find the link it has; returns the version as read through the
    collection. Nothing is copied. An artifact read from a server, or logged by an online run
    (``remote``: uploaded when ``wait()`` returns), is linked in that server's registry."""
    from tracklet.artifacts.remote import ServerVersionStore

    registry, collection = parse_target(target_path)
    artifact.wait()
    store, info = artifact._store, artifact._info
    backend: Any
    source = info
    if isinstance(store, ServerVersionStore):
        backend = open_remote(store.client.http.base_url, http=store.client.http)
    elif remote is not None:
        number = getattr(artifact, "_server_version", None)
        if number is None:
            raise RegistryError(f"can't link {info.qualified_name} into {registry}/{collection} on {remote[0]}: it "
                                f"is not on the server ({artifact.upload_error or 'not uploaded'})")
        backend, source = open_remote(*remote), dataclasses.replace(info, version=number)
    else:
        assert store is not None  # committed: wait() returned
        backend = open_local(store.data_root)
    link = backend.link(registry, collection, source, list(aliases or []), actor=actor or default_actor(),
                        reason=reason)
    return linked_artifact(store, info, link)


def linked_versions(artifact: Artifact) -> list[Artifact]:
    """``artifact.linked_artifacts``: the registry versions linking committed ``artifact``, each
    as read through its collection, by registry, collection and version. A version read from a
    server: the server's registry's links (of registries the caller may read). A version of the
    data root: its registry's (none where nothing was ever linked); one an online run uploaded
    also the server's links of its server copy (``run.link_artifact`` links it there,
    ``artifact.link()`` in the data root), the server's first."""
    from tracklet.artifacts.remote import ServerVersionStore

    store, info = artifact._store, artifact._info
    assert store is not None
    found: list[Artifact] = []
    if isinstance(store, ServerVersionStore):
        backends: list[tuple[Any, int]] = [(open_remote(store.client.http.base_url, http=store.client.http),
                                            info.version)]
    else:
        backends = []
        if artifact._server_remote is not None and artifact._server_version is not None:
            backends.append((open_remote(*artifact._server_remote[:2]), artifact._server_version))
        local = open_local(store.data_root, create=False)
        if local is not None:
            backends.append((local, info.version))
    for backend, number in backends:
        links = sorted(backend.links_to(info.project, info.name, number),
                       key=lambda link: (link.registry, link.collection, link.version))
        found.extend(linked_artifact(store, info, link, backend) for link in links)
    return found


def linked_record(linked: Artifact, when: float) -> Any:
    """The ``ArtifactLinked`` record a run writes when it links a version (its lineage)."""
    from tracklet.proto import records_pb2 as pb

    link = linked._link
    record = pb.Record()
    message = record.artifact_linked
    ref = message.artifact
    ref.project, ref.name, ref.version, ref.digest = (link.source_project, link.source_name, link.source_version,
                                                      link.source_digest)
    ref.type = linked.type
    message.registry, message.collection, message.version = link.registry, link.collection, link.version
    message.aliases.extend(alias for alias in link.aliases if alias != f"v{link.version}")
    message.time = when
    return record


def model_target(registered_model_name: str) -> str:
    """``link_model``'s target: a bare name is a collection of the ``model`` registry."""
    if not isinstance(registered_model_name, str) or not registered_model_name:
        raise RegistryError(f"registered_model_name must be a non-empty string; got {registered_model_name!r}")
    return registered_model_name if "/" in registered_model_name else f"{MODEL_REGISTRY}/{registered_model_name}"


def parse_collection(text: str) -> RegistryRef:
    """``registry/collection[:alias]`` or ``models:/...`` as the CLI and ``Api`` take them (a
    bare ``collection`` is in the ``model`` registry)."""
    ref = parse_registry_ref(text if "/" in text or text.startswith("models:") else f"{MODEL_REGISTRY}/{text}")
    if ref is None:
        raise RegistryError(f"{text!r} is not a registry collection: use 'registry/collection[:alias]'")
    return ref._replace(explicit=True)


__all__ = ["LATEST", "default_actor", "link_artifact", "linked_artifact", "linked_record", "linked_versions", "model_target", "open_local",
           "open_remote", "parse_collection", "registry_file", "resolve", "resolve_on_server"]
