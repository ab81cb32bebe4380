"""``SqlRegistry``: artifact versions and aliases in the server's database (the ``artifact_versions``
and ``artifact_aliases`` tables of ``schema.py``), for a server whose store is PostgreSQL, so every
process of a scaled-out deployment sees and assigns the same versions.

The rules are ``LocalRegistry``'s (``artifacts/registry.py``): versions' files are immutable (their
description, metadata and tags may be edited: ``edit_version``), versions are numbered
from 0 in each collection, ``latest`` is the highest, a custom alias names one version of its
collection at a time, a version whose content equals the latest's is not added again, a collection
keeps one type. Every server commit's id is kept with the version it answered, made or reused (the
latest had its content), in ``artifact_commits`` (migration s0023), whose rows go with their
version. Assigning a number takes a transaction-scoped advisory lock on the collection
(PostgreSQL; a process-wide lock on SQLite), and the primary key refuses a number twice anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from tracklet.artifacts.fields import MAX_TAGS, CollectionEdit, CollectionFields, VersionEdit
from tracklet.artifacts.names import LATEST, check_artifact_name, custom_aliases, version_number
from tracklet.artifacts.registry import BaseMoved, VersionInfo, not_found
from tracklet.core.layout import check_name
from tracklet.errors import ArtifactError, ArtifactNotFound
from tracklet.server.schema import (
    artifact_aliases,
    artifact_collections,
    artifact_commits,
    artifact_deleted_versions,
    artifact_versions,
    hold_xact_lock,
)

_FIELDS = ("type", "digest", "manifest", "size", "file_count", "description", "created_at", "logged_by", "history_step",
           "commit_id")


def recorded_commit(project: str, name: str, commit_id: str) -> sa.Select:
    """The ``artifact_commits`` row of the commit ``commit_id`` to ``project/name`` (version,
    logged_by), by its primary key."""
    table = artifact_commits
    return sa.select(table.c.version, table.c.logged_by).where(
        table.c.project == project, table.c.name == name, table.c.commit_id == commit_id)


class SqlRegistry:
    """Versions and aliases of artifact collections in the server's database (see the module)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # SQLite: one writer in the process at a time

    # ------------------------------------------------------------ reading

    def _aliases(self, connection: sa.Connection, project: str, name: str) -> dict[str, int]:
        rows = connection.execute(sa.select(artifact_aliases.c.alias, artifact_aliases.c.version).where(
            artifact_aliases.c.project == project, artifact_aliases.c.name == name))
        return {row.alias: row.version for row in rows}

    def _info(self, row: Any, aliases: dict[str, int], latest: int) -> VersionInfo:
        names = [alias for alias, target in sorted(aliases.items()) if target == row.version]
        if row.version == latest:
            names.insert(0, LATEST)
        tags = row._mapping["tags"]  # NULL: a version committed before migration s0017, or without tags
        return VersionInfo(project=row.project, name=row.name, version=row.version,
                           metadata=json.loads(row._mapping["metadata"]), aliases=[f"v{row.version}", *names],
                           tags=list(json.loads(tags)) if tags else [],
                           **{field: getattr(row, field) for field in _FIELDS})

    def version_numbers(self, project: str, name: str) -> list[int]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(artifact_versions.c.version).where(
                artifact_versions.c.project == project, artifact_versions.c.name == name
            ).order_by(artifact_versions.c.version)).scalars())

    def version(self, project: str, name: str, selector: str = LATEST) -> VersionInfo:
        """The version ``selector`` (``latest``, ``vN`` or an alias) names."""
        check_name("project", project)
        check_artifact_name(name)
        with self.engine.connect() as connection:
            return self._version(connection, project, name, selector)

    def _version(self, connection: sa.Connection, project: str, name: str, selector: str) -> VersionInfo:
        latest = connection.execute(sa.select(sa.func.max(artifact_versions.c.version)).where(
            artifact_versions.c.project == project, artifact_versions.c.name == name)).scalar()
        if latest is None:
            raise self._not_found(connection, project, name, version_number(selector))
        aliases = self._aliases(connection, project, name)
        number = latest if selector == LATEST else version_number(selector)
        if number is None:
            if selector not in aliases:
                raise ArtifactNotFound(f"artifact {project}/{name} has no alias {selector!r} (aliases: "
                                       f"{', '.join(['latest', *sorted(aliases)])})")
            number = aliases[selector]
        row = connection.execute(sa.select(artifact_versions).where(
            artifact_versions.c.project == project, artifact_versions.c.name == name,
            artifact_versions.c.version == number)).first()
        if row is None:
            raise self._not_found(connection, project, name, number)
        return self._info(row, aliases, latest)

    def alias_targets(self, project: str, name: str) -> dict[str, int]:
        """``LocalRegistry.alias_targets``: the version each alias names, ``latest`` included."""
        with self.engine.connect() as connection:
            latest = connection.execute(sa.select(sa.func.max(artifact_versions.c.version)).where(
                artifact_versions.c.project == project, artifact_versions.c.name == name)).scalar()
            return {**self._aliases(connection, project, name), LATEST: latest} if latest is not None else {}

    def versions(self, project: str, name: str) -> list[VersionInfo]:
        """Every version of a collection, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(artifact_versions).where(
                artifact_versions.c.project == project, artifact_versions.c.name == name
            ).order_by(artifact_versions.c.version)).all()
            if not rows:
                return []
            aliases = self._aliases(connection, project, name)
        return [self._info(row, aliases, rows[-1].version) for row in rows]

    def collections(self, project: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(artifact_versions.c.name).where(
                artifact_versions.c.project == project).distinct().order_by(artifact_versions.c.name)).scalars())

    # ------------------------------------------------------------ writing

    def _begin(self, connection: sa.Connection, project: str, name: str) -> None:
        """Hold the collection for the rest of the transaction (PostgreSQL: an advisory lock)."""
        hold_xact_lock(connection, "artifact", project, name)

    def _held_version(self, connection: sa.Connection, project: str, name: str, version: int) -> Any:
        """Hold the collection for the rest of ``connection``'s transaction (``_begin``) and answer
        ``project/name:v<version>``'s row (``ArtifactNotFound`` if there is none)."""
        self._begin(connection, project, name)
        row = connection.execute(sa.select(artifact_versions).where(
            artifact_versions.c.project == project, artifact_versions.c.name == name,
            artifact_versions.c.version == version)).first()
        if row is None:
            raise self._not_found(connection, project, name, version)
        return row

    def commit(self, info: VersionInfo, aliases: list[str], *, base: str | None = None,
               by_commit_id: bool = False) -> tuple[VersionInfo, bool]:
        """``LocalRegistry.commit``: the next version, unless the latest has the same digest;
        then ``aliases``; ``base`` and ``by_commit_id`` as there (``BaseMoved`` if the latest is not
        ``base``'s; the version a commit with ``info.commit_id`` answered already, made or reused,
        if it is still there: its ``artifact_commits`` row, written then). Returns (the version as
        stored, with its aliases; reused)."""
        custom = custom_aliases(aliases)
        with self._lock, self.engine.begin() as connection:
            self._begin(connection, info.project, info.name)
            recorded = None
            if by_commit_id and info.commit_id is not None:
                recorded = connection.execute(recorded_commit(info.project, info.name, info.commit_id)).first()
                if recorded is not None and recorded.logged_by in (None, info.logged_by):
                    # the same commit, sent again: the version it answered (its row goes with it)
                    self._move_aliases(connection, info.project, info.name, recorded.version, custom)
                    return self._version(connection, info.project, info.name, f"v{recorded.version}"), True
            latest = connection.execute(sa.select(artifact_versions).where(
                artifact_versions.c.project == info.project, artifact_versions.c.name == info.name
            ).order_by(artifact_versions.c.version.desc()).limit(1)).first()
            reused = False
            if base is not None and (latest.manifest if latest is not None else "") != base:
                raise BaseMoved(None if latest is None else self._version(
                    connection, info.project, info.name, f"v{latest.version}"))
            if latest is not None:
                if latest.type != info.type:
                    raise ArtifactError(f"artifact {info.project}/{info.name} has type {latest.type!r}; it can't take "
                                        f"a version of type {info.type!r} (use another name)")
                reused = latest.digest == info.digest
            highest = None if latest is None else int(latest.version)
            number = highest if reused and highest is not None else self._next_number(
                connection, info.project, info.name, highest)
            if not reused:
                connection.execute(artifact_versions.insert().values(
                    project=info.project, name=info.name, version=number,
                    metadata=json.dumps(info.metadata, sort_keys=True, default=str),
                    tags=json.dumps(info.tags) if info.tags else None,
                    **{**{field: getattr(info, field) for field in _FIELDS}, "created_at": info.created_at or time.time()}))
            if by_commit_id and info.commit_id is not None:
                # sent again, it is answered with this version, made or reused (an id another run sent
                # before, which random ids never are, is this run's from now on, as LocalRegistry's)
                if recorded is not None:
                    connection.execute(artifact_commits.delete().where(
                        artifact_commits.c.project == info.project, artifact_commits.c.name == info.name,
                        artifact_commits.c.commit_id == info.commit_id))
                connection.execute(artifact_commits.insert().values(
                    project=info.project, name=info.name, commit_id=info.commit_id, version=number,
                    logged_by=info.logged_by, created_at=time.time()))
            self._move_aliases(connection, info.project, info.name, number, custom)
            return self._version(connection, info.project, info.name, f"v{number}"), reused

    def was_deleted(self, project: str, name: str, version: int) -> bool:
        """Whether ``project/name:v<version>`` existed and was deleted (``artifact_deleted_versions``)."""
        table = artifact_deleted_versions
        with self.engine.connect() as connection:
            return connection.execute(sa.select(table.c.version).where(
                table.c.project == project, table.c.name == name, table.c.version == int(version))).first() is not None

    @staticmethod
    def _not_found(connection: sa.Connection, project: str, name: str, number: int | None) -> ArtifactNotFound:
        """``registry.not_found`` for ``project/name`` (at ``v<number>``), from ``artifact_deleted_versions``."""
        table = artifact_deleted_versions
        deleted = connection.execute(sa.select(table.c.version).where(
            table.c.project == project, table.c.name == name,
            *([table.c.version == number] if number is not None else [])).limit(1)).first() is not None
        return not_found(project, name, number, deleted=deleted and number is not None,
                         any_deleted=deleted if number is None else False)

    @staticmethod
    def _next_number(connection: sa.Connection, project: str, name: str, latest: int | None) -> int:
        """One more than any version ever created, deleted ones included (a number is never reused);
        ``latest``: the highest version there is (None: none), which the caller read already."""
        table = artifact_deleted_versions
        deleted = connection.execute(sa.select(sa.func.max(table.c.version)).where(
            table.c.project == project, table.c.name == name)).scalar()
        used = [number for number in (latest, deleted) if number is not None]
        return max(used) + 1 if used else 0

    @contextmanager
    def holding(self, connection: sa.Connection, project: str, name: str, version: int) -> Iterator[None]:
        """Hold the collection's lock in ``connection``'s transaction (to its end) and check that
        ``project/name:v<version>`` exists (``ArtifactNotFound`` if not): what a model registry's
        link does in its own transaction (the registry is in this database), so a deletion
        (``delete_version``'s ``check``, under the same lock) sees the link or the link sees the
        version gone, never neither."""
        self._held_version(connection, project, name, version)
        yield

    def delete_version(self, project: str, name: str, version: int, *, drop_aliases: bool = False,
                       check: Callable[[sa.Connection | None], None] | None = None) -> list[str]:
        """``LocalRegistry.delete_version``: the version's row goes (kept in
        ``artifact_deleted_versions``, so its number is never given again) and ``latest`` falls
        back to the highest version left; one with custom aliases only with ``drop_aliases``
        (they go with it; its commit ids' ``artifact_commits`` rows go by their foreign key, so
        its commits sent again are new commits). ``check(connection)`` runs in the deletion's transaction, holding the
        collection's lock, before anything changes (raising refuses the deletion; ``holding``).
        Returns the aliases dropped. Its blobs stay until a collection."""
        with self._lock, self.engine.begin() as connection:
            row = self._held_version(connection, project, name, version)
            if check is not None:
                check(connection)
            dropped = sorted(alias for alias, target in self._aliases(connection, project, name).items()
                             if target == version)
            if dropped and not drop_aliases:
                raise ArtifactError(f"artifact {project}/{name}:v{version} has alias(es) {', '.join(dropped)}: move "
                                    "them to another version first, or delete it with its aliases (delete(delete_aliases=True); "
                                    "tracklet artifact rm --force)")
            connection.execute(artifact_aliases.delete().where(
                artifact_aliases.c.project == project, artifact_aliases.c.name == name,
                artifact_aliases.c.version == version))
            connection.execute(artifact_deleted_versions.insert().values(
                project=project, name=name, version=version, digest=row.digest, manifest=row.manifest,
                deleted_at=time.time()))
            connection.execute(artifact_versions.delete().where(
                artifact_versions.c.project == project, artifact_versions.c.name == name,
                artifact_versions.c.version == version))
        return dropped

    def _move_aliases(self, connection: sa.Connection, project: str, name: str, version: int,
                      aliases: list[str]) -> None:
        for alias in aliases:
            connection.execute(artifact_aliases.delete().where(
                artifact_aliases.c.project == project, artifact_aliases.c.name == name,
                artifact_aliases.c.alias == alias))
            connection.execute(artifact_aliases.insert().values(project=project, name=name, alias=alias,
                                                                version=version))

    def set_aliases(self, project: str, name: str, version: int, add: list[str], remove: list[str]) -> None:
        """Give ``version`` the aliases ``add`` (moving them from other versions) and drop ``remove``."""
        custom = custom_aliases(add)
        with self._lock, self.engine.begin() as connection:
            self._held_version(connection, project, name, version)
            self._move_aliases(connection, project, name, version, custom)
            for alias in remove:
                connection.execute(artifact_aliases.delete().where(
                    artifact_aliases.c.project == project, artifact_aliases.c.name == name,
                    artifact_aliases.c.alias == alias, artifact_aliases.c.version == version))

    def edit_version(self, project: str, name: str, version: int, edit: VersionEdit) -> VersionInfo:
        """``LocalRegistry.edit_version``: ``edit`` (checked already) applied to the version's row
        and its aliases in one transaction holding the collection's lock. Returns the version after."""
        with self._lock, self.engine.begin() as connection:
            row = self._held_version(connection, project, name, version)
            if edit.changes_fields:
                info = self._info(row, {}, -1)
                tags = edit.applied_tags(info.tags)
                if len(tags) > MAX_TAGS:
                    raise ArtifactError(f"artifact {project}/{name}:v{version} would have {len(tags)} tags; a version "
                                        f"has at most {MAX_TAGS}")
                values: dict[str, Any] = {"tags": json.dumps(tags) if tags else None}
                if edit.description is not None:
                    values["description"] = edit.description
                if edit.changes_metadata:
                    values["metadata"] = json.dumps(edit.applied_metadata(info.metadata or {},
                                                                          f"artifact {project}/{name}:v{version}"),
                                                    sort_keys=True)
                connection.execute(artifact_versions.update().where(
                    artifact_versions.c.project == project, artifact_versions.c.name == name,
                    artifact_versions.c.version == version).values(**values))
            self._move_aliases(connection, project, name, version, edit.add_aliases)
            for alias in edit.remove_aliases:
                connection.execute(artifact_aliases.delete().where(
                    artifact_aliases.c.project == project, artifact_aliases.c.name == name,
                    artifact_aliases.c.alias == alias, artifact_aliases.c.version == version))
            return self._version(connection, project, name, f"v{version}")

    # ------------------------------------------------------------ whole collections

    def _held_numbers(self, connection: sa.Connection, project: str, name: str) -> list[int]:
        self._begin(connection, project, name)
        numbers = list(connection.execute(sa.select(artifact_versions.c.version).where(
            artifact_versions.c.project == project, artifact_versions.c.name == name
        ).order_by(artifact_versions.c.version)).scalars())
        if not numbers:
            raise self._not_found(connection, project, name, None)
        return numbers

    def delete_collection(self, project: str, name: str, *,
                          check: Callable[[sa.Connection | None, list[int]], None] | None = None
                          ) -> tuple[list[VersionInfo], dict[str, int]]:
        """``LocalRegistry.delete_collection``: every version's row goes (kept in
        ``artifact_deleted_versions``) with the collection's aliases (and commit ids: the foreign
        key), in one transaction holding the collection's lock; ``check(connection, numbers)`` first."""
        with self._lock, self.engine.begin() as connection:
            numbers = self._held_numbers(connection, project, name)
            if check is not None:
                check(connection, numbers)
            aliases = self._aliases(connection, project, name)
            rows = connection.execute(sa.select(artifact_versions).where(
                artifact_versions.c.project == project, artifact_versions.c.name == name
            ).order_by(artifact_versions.c.version)).all()
            infos = [self._info(row, aliases, numbers[-1]) for row in rows]
            now = time.time()
            connection.execute(artifact_aliases.delete().where(
                artifact_aliases.c.project == project, artifact_aliases.c.name == name))
            connection.execute(artifact_collections.delete().where(  # its description and tags go with it
                artifact_collections.c.project == project, artifact_collections.c.name == name))
            connection.execute(artifact_deleted_versions.insert(), [
                {"project": project, "name": name, "version": row.version, "digest": row.digest,
                 "manifest": row.manifest, "deleted_at": now} for row in rows])
            connection.execute(artifact_versions.delete().where(
                artifact_versions.c.project == project, artifact_versions.c.name == name))
        return infos, aliases

    def set_type(self, project: str, name: str, type: str, *,
                 check: Callable[[sa.Connection | None, list[int]], None] | None = None) -> str:
        """``LocalRegistry.set_type``: ``update_collection`` with the type alone. Returns the old type."""
        return self.update_collection(project, name, CollectionEdit(type=type), check=check)[0]

    def collection_fields(self, project: str, name: str) -> CollectionFields:
        """``LocalRegistry.collection_fields``: the collection's row (none: never edited)."""
        with self.engine.connect() as connection:
            return self._collection_fields(connection, project, name)

    @staticmethod
    def _collection_fields(connection: sa.Connection, project: str, name: str) -> CollectionFields:
        row = connection.execute(sa.select(artifact_collections).where(
            artifact_collections.c.project == project, artifact_collections.c.name == name)).first()
        if row is None:
            return CollectionFields()
        return CollectionFields(description=row.description, tags=list(json.loads(row.tags)),
                                updated_at=row.updated_at)

    def update_collection(self, project: str, name: str, edit: CollectionEdit, *,
                          check: Callable[[sa.Connection | None, list[int]], None] | None = None
                          ) -> tuple[str, CollectionFields]:
        """``LocalRegistry.update_collection``: every version's ``type`` and the collection's row,
        in one transaction holding the collection's lock (both or neither; a deletion meanwhile
        either drops the row or finds nothing to edit); tags added and removed against the row
        as it is then. ``check(connection, numbers)`` first when the type changes. Returns (the
        old type, the fields as stored)."""
        what = f"artifact collection {project}/{name}"
        edit = edit.checked(what)
        with self._lock, self.engine.begin() as connection:
            numbers = self._held_numbers(connection, project, name)
            if edit.type is not None and check is not None:
                check(connection, numbers)
            old = str(connection.execute(sa.select(artifact_versions.c.type).where(
                artifact_versions.c.project == project, artifact_versions.c.name == name,
                artifact_versions.c.version == numbers[-1])).scalar_one())
            fields = self._collection_fields(connection, project, name)
            exists = fields.updated_at is not None
            if edit.changes_fields:
                fields.tags = edit.applied_tags(fields.tags, what)
                if edit.description is not None:
                    fields.description = edit.description
                fields.updated_at = time.time()
            if edit.type is not None:
                connection.execute(artifact_versions.update().where(
                    artifact_versions.c.project == project, artifact_versions.c.name == name).values(type=edit.type))
            if edit.changes_fields:
                values = {"description": fields.description, "tags": json.dumps(fields.tags),
                          "updated_at": fields.updated_at}
                if exists:
                    connection.execute(artifact_collections.update().where(
                        artifact_collections.c.project == project,
                        artifact_collections.c.name == name).values(**values))
                else:  # the collection's lock is held: no one inserts it meanwhile
                    connection.execute(artifact_collections.insert().values(project=project, name=name, **values))
        return old, fields
