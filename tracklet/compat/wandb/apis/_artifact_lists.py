"""``wandb.Api()``'s artifact listings over ``tracklet.Api``: ``artifacts(type_name, name)`` (a
collection's versions), ``artifact_collections``, ``artifact_collection``, ``artifact_types``,
``artifact_type``, ``artifact_exists`` and ``artifact_collection_exists``, with W&B's names and
shapes (``ArtifactCollection``, ``ArtifactType``). Paths may carry W&B's entity
(``entity/project/name``); tracklet has none, so it is dropped.
"""

from __future__ import annotations

from typing import Any

from tracklet.compat.wandb.errors import CommError


def _project_and_name(path: str, default_project: str | None, what: str) -> tuple[str, str]:
    """``(project, name)`` of ``entity/project/name``, ``project/name`` or ``name`` (in the
    default project); the ``:alias`` part, if any, is kept on the name."""
    parts = [part for part in str(path).split("/") if part]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    if len(parts) == 1 and default_project:
        return default_project, parts[0]
    raise CommError(f"{what} needs 'project/name' (or 'entity/project/name'); got {path!r}")


def _project(path: str | None, default_project: str | None, what: str) -> str:
    parts = [part for part in str(path or "").split("/") if part]
    if parts:
        return parts[-1]
    if default_project:
        return default_project
    raise CommError(f"{what} needs a project: 'project' or 'entity/project'")


def _wrap(artifact: Any) -> Any:
    from tracklet.compat.wandb.data_types import Artifact

    return Artifact._wrap(artifact)


def versions(api: Any, project: str, name: str, type_name: str | None) -> list[Any]:
    """The collection's versions as ``wandb.Artifact``s, newest first (``CommError`` if it has
    none, or they are of another type)."""
    from tracklet.errors import ArtifactError

    try:
        found = api.artifact_versions(f"{project}/{name.partition(':')[0]}")
    except ArtifactError as error:
        raise CommError(str(error)) from None
    if not found:
        raise CommError(f"no artifact {project}/{name} (no version of it has been logged)")
    if type_name is not None and found[-1].type != type_name:
        raise CommError(f"artifact {project}/{name} has type {found[-1].type!r}, not {type_name!r}")
    return [_wrap(artifact) for artifact in reversed(found)]


class ArtifactCollection:
    """W&B's ``ArtifactCollection``: a named collection of versions of one type in a project.

    ``type`` may be set and ``save()``d (or ``change_type(new_type)``): every version gets it
    (``tracklet.Api.set_artifact_collection_type``); ``delete()`` deletes every version and alias.
    Both are refused while the model registry links one of its versions, and on a server need the
    project's admin role. ``description`` and ``tags`` are the collection's own (not its
    versions'), stored by ``save()`` (``tracklet.Api.edit_artifact_collection``; on a server the
    write role); a bad tag raises ``ValueError`` naming it, changing nothing. Collections are named
    for good: ``save()`` after changing ``name`` raises ``ArtifactError``, changing nothing."""

    def __init__(self, api: Any, project: str, name: str, type: str, entity: str | None = None,
                 description: str | None = None, tags: list[str] | None = None) -> None:
        """``description`` and ``tags`` as listed; None: read from the listing when first used."""
        self._api = api
        self.project = project
        self._name = self._saved_name = name
        self._type = self._saved_type = type
        self.entity = entity
        self._fields_read = description is not None
        self._description = self._saved_description = description or ""
        self._tags = list(tags or [])
        self._saved_tags = list(self._tags)

    def _read_fields(self) -> None:
        """The collection's own description and tags from its project's listing, once."""
        if self._fields_read:
            return
        self._fields_read = True
        for name, _, description, tags in _collection_rows(self._api, self.project, None):
            if name == self._saved_name:
                self._description = self._saved_description = description
                self._tags, self._saved_tags = list(tags), list(tags)

    def artifacts(self, per_page: int = 50) -> list[Any]:
        """The collection's versions, newest first."""
        return versions(self._api, self.project, self._saved_name, self._saved_type)

    versions = artifacts

    @property
    def id(self) -> str:
        """A stable id: ``project/name`` (W&B's is an opaque string)."""
        return f"{self.project}/{self._saved_name}"

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def type(self) -> str:
        return self._type

    @type.setter
    def type(self, value: str) -> None:
        """The type ``save()`` gives every version."""
        self._type = value

    @property
    def description(self) -> str:
        """The collection's own description (``save()`` stores a new one)."""
        self._read_fields()
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._read_fields()
        self._description = value or ""

    @property
    def tags(self) -> list[str]:
        """The collection's own tags (edit the list or set a new one, then ``save()``)."""
        self._read_fields()
        return self._tags

    @tags.setter
    def tags(self, value: Any) -> None:
        from tracklet.artifacts.fields import check_tags

        self._read_fields()
        self._tags = check_tags(value, f"artifact collection {self.project}/{self._saved_name}")

    @property
    def created_at(self) -> str:
        """When its oldest version still kept was stored (ISO 8601, UTC)."""
        return self.artifacts()[-1].created_at

    @property
    def updated_at(self) -> str:
        """When its latest version was stored (ISO 8601, UTC)."""
        return self.artifacts()[0].created_at

    def load(self) -> "ArtifactCollection":
        """Nothing cached to reload: every read goes to the store or the server."""
        return self

    @property
    def aliases(self) -> list[str]:
        """The custom aliases of its versions (``latest`` and ``vN`` left out, as W&B lists them)."""
        names: list[str] = []
        for artifact in self.artifacts():
            names.extend(alias for alias in artifact.aliases if alias != "latest" and alias not in names)
        return sorted(names)

    def is_sequence(self) -> bool:
        return True  # every tracklet collection is versioned; portfolios are registry collections

    def _path(self, doing: str) -> str:
        """``project/name`` of a project's collection; ``ArtifactError`` for a registry's (what
        W&B calls a portfolio), which tracklet's registry changes through its own calls."""
        from tracklet.errors import ArtifactError
        from tracklet.registry.refs import WANDB_PREFIX

        if self.project.startswith(WANDB_PREFIX):
            raise ArtifactError(f"registry collection {self.project}/{self._saved_name} can't be {doing} here: remove "
                                "its versions with artifact.unlink() (tracklet's registry keeps its collections, and "
                                "their alias history)")
        return f"{self.project}/{self._saved_name}"

    def delete(self) -> None:
        """W&B's ``delete``: every version of the collection and its aliases
        (``tracklet.Api.delete_artifact_collection``: their files stay stored until a garbage
        collection). Refused (``ArtifactError``) while the model registry links one of its versions."""
        self._api.delete_artifact_collection(self._path("deleted"))

    def change_type(self, new_type: str) -> None:
        """W&B's ``change_type`` (deprecated there for ``type = ...; save()``): every version gets
        ``new_type``."""
        self.type = new_type
        self._save_type()

    def save(self) -> None:
        """W&B's ``save``: a changed ``type`` (every version's), ``description`` and ``tags`` (the
        collection's own) in one call, one locked change: all of it or nothing (on a server a
        type change needs the admin role; a write-role user's save with one is refused, 403,
        changing nothing). Tags are sent as what changed since they were read: those added and
        those removed, so two scripts that each append a tag and save at once both keep theirs
        (a tag someone else added meanwhile stays; the tags read back are what is stored). Every
        field is checked first (a bad tag: ``ValueError`` naming it; a changed ``name``:
        ``ArtifactError``, as collection names are fixed), so a refusal changes nothing."""
        from tracklet.artifacts.fields import CollectionEdit
        from tracklet.errors import ArtifactError

        if self._name != self._saved_name:
            raise ArtifactError(f"artifact collection {self.project}/{self._saved_name}: save() can't rename it to "
                                f"{self._name!r} (collection names are fixed); nothing was changed")
        self._read_fields()
        edit = CollectionEdit(type=self._type if self._type != self._saved_type else None,
                              description=self._description if self._description != self._saved_description else None,
                              add_tags=[tag for tag in self._tags if tag not in self._saved_tags],
                              remove_tags=[tag for tag in self._saved_tags if tag not in self._tags])
        edit = edit.checked(f"artifact collection {self.project}/{self._saved_name}")
        if edit.empty:
            return
        stored = self._api.edit_artifact_collection(
            self._path("given another type" if edit.type is not None else "edited"), type=edit.type,
            description=edit.description, add_tags=edit.add_tags or None, remove_tags=edit.remove_tags or None)
        self._saved_type = self._type
        self._description = self._saved_description = stored["description"]
        self._tags = list(stored["tags"])
        self._saved_tags = list(self._tags)

    def _save_type(self) -> None:
        if self._type == self._saved_type:
            return
        self._api.set_artifact_collection_type(self._path("given another type"), self._type)
        self._saved_type = self._type

    def __repr__(self) -> str:
        return f"<ArtifactCollection {self.project}/{self._saved_name} ({self._saved_type})>"


class ArtifactType:
    """W&B's ``ArtifactType``: the collections of one type in a project."""

    def __init__(self, api: Any, project: str, name: str, entity: str | None = None) -> None:
        self._api = api
        self.project = project
        self.name = name
        self.entity = entity

    def collections(self, per_page: int = 50) -> list[ArtifactCollection]:
        return collections(self._api, self.project, self.name, self.entity)

    def collection(self, name: str) -> ArtifactCollection:
        for found in self.collections():
            if found.name == name:
                return found
        raise CommError(f"no artifact collection {self.project}/{name} of type {self.name!r}")

    def __repr__(self) -> str:
        return f"<ArtifactType {self.name} in {self.project}>"


def _collection_rows(api: Any, project: str, type_name: str | None) -> list[tuple[str, str, str, list[str]]]:
    """``(name, type, description, tags)`` of the project's collections, by name; a W&B
    registry's "project" (``wandb-registry-model``) lists that registry's collections, as W&B's
    registries are projects."""
    from tracklet.registry.refs import WANDB_PREFIX

    if project.startswith(WANDB_PREFIX):
        rows = [(row["collection"], row["type"], str(row.get("description") or ""), list(row.get("tags") or []))
                for row in api.registry.collections(project[len(WANDB_PREFIX):])]
    else:
        rows = [(row["name"], row["type"], str(row.get("description", "")), list(row.get("tags", [])))
                for row in api.artifact_collections(project)]
    return sorted((row for row in rows if type_name is None or row[1] == type_name), key=lambda row: row[0])


def collections(api: Any, project: str, type_name: str | None, entity: str | None) -> list[ArtifactCollection]:
    """The project's collections (of ``type_name`` only, if given), by name."""
    return [ArtifactCollection(api, project, name, type, entity, description, tags)
            for name, type, description, tags in _collection_rows(api, project, type_name)]


def types(api: Any, project: str, entity: str | None) -> list[ArtifactType]:
    """The artifact types the project's collections have, by name."""
    names = sorted({row[1] for row in _collection_rows(api, project, None)})
    return [ArtifactType(api, project, name, entity) for name in names]


def exists(api: Any, name: str, type_name: str | None) -> bool:
    """Whether ``project/name:alias`` names a version (of ``type_name``, if given)."""
    from tracklet.errors import ArtifactError

    try:
        api.artifact(name, type=type_name)
    except ArtifactError:  # ArtifactNotFound, a bad name, a project-less reference
        return False
    return True


__all__ = ["ArtifactCollection", "ArtifactType", "collections", "exists", "types", "versions"]
