"""Finding committed artifact versions by reference: what ``use_artifact`` and ``tracklet.Api``
call (``"project/name:alias"``, ``"name:v3"``, ``"name"`` for latest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.names import LATEST, check_artifact_name, parse_ref
from tracklet.errors import ArtifactError, ArtifactNotFound, ArtifactTypeMismatch


def open_store(root: Path) -> Any:
    """The store of a data root. Imported here, not at module level: ``run.log_artifact`` imports
    this module on the training thread, and the store's modules are the background thread's to load."""
    from tracklet.artifacts.storage import open_store as open_root

    return open_root(root)


def resolve(root: str | os.PathLike, reference: str, *, default_project: str | None = None,
            type: str | None = None, remote: tuple[str, str | None] | None = None) -> Artifact:
    """The committed version ``reference`` names (``ArtifactNotFound`` if none). With ``remote``
    (an online run's server URL and key) it is looked up on the server first (where ``latest``
    is everyone's latest), then in the local store (also when the server can't be reached: then
    the server's error is raised only if the local store has no such version); a server's version
    downloads through the blob cache."""
    if remote is not None:
        from tracklet.artifacts.remote import RemoteArtifacts, connect

        from tracklet.errors import RemoteError

        base_url, api_key = remote
        try:
            return RemoteArtifacts(connect(base_url, root, api_key=api_key, give_up_after=10.0, attempts=3), root).artifact(
                reference, default_project=default_project, type=type)
        except ArtifactNotFound:
            pass  # not on the server (yet): a version of the local store
        except RemoteError as error:  # the server is unreachable or refuses: the local store, if it has it
            try:
                return resolve(root, reference, default_project=default_project, type=type)
            except ArtifactNotFound:
                raise error from None
    ref = parse_ref(reference)
    project = ref.project or default_project
    if project is None:
        raise ArtifactError(f"artifact reference {reference!r} needs a project: use 'project/name:alias'")
    store = open_store(Path(root))
    info = store.registry.version(project, ref.name, ref.selector)
    if type is not None and info.type != type:
        raise ArtifactTypeMismatch.of(info.qualified_name, info.type, type)
    return Artifact._from_version(store, info)


def versions(root: str | os.PathLike, project: str, name: str) -> list[Artifact]:
    store = open_store(Path(root))
    return [Artifact._from_version(store, info) for info in store.registry.versions(project, check_artifact_name(name))]


def collections(root: str | os.PathLike, project: str, type: str | None = None) -> list[dict]:
    """A project's collections: ``{"name", "type", "versions", "latest", "description", "tags"}``
    each (the collection's own description and tags, not a version's)."""
    store = open_store(Path(root))
    listed = []
    for name in store.registry.collections(project):
        latest = store.registry.version(project, name)
        if type is None or latest.type == type:
            fields = store.registry.collection_fields(project, name)
            listed.append({"name": name, "type": latest.type, "versions": latest.version + 1,
                           "latest": f"v{latest.version}", "description": fields.description, "tags": fields.tags})
    return listed


def delete_version(root: str | os.PathLike, info: Any, *, drop_aliases: bool = False,
                   break_links: bool = False) -> tuple[list[str], list[str]]:
    """Delete the local version ``info`` (``tracklet artifact rm``, ``Artifact.delete``): its number
    is never given again, its files stay stored until ``tracklet artifact gc``. A version with
    custom aliases is refused with ``ArtifactError`` naming them unless ``drop_aliases`` (they are
    dropped); one registered in the data root's registry is refused naming its registry versions
    unless ``break_links`` (``tracklet artifact rm --force``: they are left without files). The
    two are apart because W&B's ``delete(delete_aliases=True)`` is about aliases only: it must
    never break a registry's versions. Returns (the aliases dropped, the registry versions linking it)."""
    links: list[str] = []

    def check(_: None) -> None:  # under the collection's lock, which a new link holds until it commits
        links[:] = check_deletable(root, info, drop_aliases=drop_aliases, break_links=break_links)

    dropped = open_store(Path(root)).registry.delete_version(info.project, info.name, info.version,
                                                             drop_aliases=drop_aliases, check=check)
    return dropped, links


def refused_guarded(source: str, guarded: list[str]) -> str:
    """Why ``source`` can't be deleted even breaking its registry links: ``guarded`` registry
    versions (``ModelRegistry.guarded``), kept as ``unlink()`` keeps them, whatever the role."""
    return (f"{source} can't be deleted, even breaking its registry links: {', '.join(guarded)} keep(s) it, as they "
            "keep a registry version from being unlinked; promote another version or lift the protection, and "
            "approve or reject the pending request, first; nothing was changed")


def check_deletable(root: str | os.PathLike, info: Any, *, drop_aliases: bool = False,
                    break_links: bool = False) -> list[str]:
    """``delete_version``'s refusals, checked without deleting (what an online run's version
    checks before its server copy is deleted, so the two are deleted or neither is): the
    ``ArtifactError`` it would raise; else the registry versions linking it."""
    from tracklet.core.extensions import load

    registry = load("registry").open_local(Path(root), create=False)
    linked = registry.links_to(info.project, info.name, info.version) if registry else []
    links = [link.path for link in linked]
    if links and not break_links:
        raise ArtifactError(f"{info.qualified_name} is registered as {', '.join(links)}: deleting it would leave "
                            "those registry versions without files (`tracklet artifact rm` with --force deletes it anyway; "
                            "from Python: delete(break_registry_links=True))")
    guarded = registry.guarded(linked) if linked else []
    if guarded:
        raise ArtifactError(refused_guarded(info.qualified_name, guarded))
    current = open_store(Path(root)).registry.version(info.project, info.name, f"v{info.version}")
    custom = sorted(alias for alias in current.aliases if alias not in (LATEST, f"v{info.version}"))
    if custom and not drop_aliases:
        raise ArtifactError(f"artifact {info.qualified_name} has alias(es) {', '.join(custom)}: move them to another "
                            "version first, or delete it with its aliases (delete(delete_aliases=True); "
                            "tracklet artifact rm --force)")
    return links


def _refuse_linked(root: str | os.PathLike, project: str, name: str, numbers: list[int], doing: str) -> None:
    """``ArtifactError`` naming the data root's registry versions that link a version of
    ``project/name`` (of ``numbers``): a collection's deletion or type change would leave them
    without files, or of another type than their registry collection keeps."""
    from tracklet.core.extensions import load

    registry = load("registry").open_local(Path(root), create=False)
    links = sorted(link.path for number in numbers
                   for link in (registry.links_to(project, name, number) if registry else []))
    if links:
        raise ArtifactError(f"artifact collection {project}/{name} can't be {doing}: the model registry links "
                            f"{', '.join(links)} to its versions (unlink them first); nothing was changed")


def delete_collection(root: str | os.PathLike, project: str, name: str) -> list[Any]:
    """Delete every version of the data root's collection ``project/name`` and its aliases (W&B's
    ``ArtifactCollection.delete()``; their numbers are never given again, their files stay stored
    until ``tracklet artifact gc``). Refused with ``ArtifactError`` naming them while the model
    registry links one of its versions. Returns the versions deleted (``VersionInfo``s)."""
    from tracklet.core.settings import check_name

    project, name = check_name("project", project), check_artifact_name(name)

    def check(_: None, numbers: list[int]) -> None:  # under the collection's lock, which a new link holds too
        _refuse_linked(root, project, name, numbers, "deleted")

    infos, _ = open_store(Path(root)).registry.delete_collection(project, name, check=check)
    return infos


def edit_collection(root: str | os.PathLike, project: str, name: str, edit: Any) -> tuple[str, Any]:
    """Apply ``edit`` (a ``CollectionEdit``: W&B's ``ArtifactCollection.save()``) to the data
    root's collection ``project/name`` in one locked change, both or neither
    (``LocalRegistry.update_collection``): a bad field or tag refused with the error naming it and
    nothing changed; a type change refused with ``ArtifactError`` while the model registry links
    one of its versions. Returns (the old type, the ``CollectionFields`` stored)."""
    from tracklet.core.settings import check_name

    project, name = check_name("project", project), check_artifact_name(name)

    def check(_: None, numbers: list[int]) -> None:
        _refuse_linked(root, project, name, numbers, "given another type")

    return open_store(Path(root)).registry.update_collection(project, name, edit, check=check)


def set_collection_type(root: str | os.PathLike, project: str, name: str, type: str) -> str:
    """Give every version of the data root's collection ``project/name`` the type ``type`` (W&B's
    ``ArtifactCollection.change_type``): a version of the old type logged to it later is refused,
    as a collection keeps one type. Refused with ``ArtifactError`` while the model registry links
    one of its versions (a registry collection keeps one type too). Returns the old type."""
    from tracklet.artifacts.names import check_artifact_type
    from tracklet.core.settings import check_name

    project, name, type = check_name("project", project), check_artifact_name(name), check_artifact_type(type)

    def check(_: None, numbers: list[int]) -> None:
        _refuse_linked(root, project, name, numbers, "given another type")

    return str(open_store(Path(root)).registry.set_type(project, name, type, check=check))
