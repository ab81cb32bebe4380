"""``ModelRegistry``: registries, collections, links, aliases with their history, model cards and
promotion requests, in SQL (``tables.py``): a local ``registry.sqlite`` or a server's database.

Rules:

- a collection's versions are links to artifact versions (no bytes are copied), numbered from 0;
  linking a version the collection already links returns that link; a collection keeps one type;
- ``latest`` is the highest version; ``vN`` names version N; a custom alias names one version of
  its collection at a time;
- every alias move (added, moved, removed) appends one event (actor, time, from -> to, reason);
- ``unlink`` removes a version (W&B's ``artifact.unlink()``): its aliases go first, each with its
  event, then an event of alias ``vN`` (``vN -> -``) records the removal; its number is never
  reused, and a version a protected alias or a pending promotion request names is refused;
  deleting the artifact version such a link names (``break_registry_links``) is refused the same
  way (``guarded``), whatever the role, so it is no way round them;
- a protected alias (``protect``) moves only through a promotion request approved by as many
  reviewers as it requires, none of them the requester, each holding the protection's approver
  role or a higher one (on a server, whose routes pass the reviewer's registry role; local mode has
  no roles); approving the last needed approval moves the alias and supersedes the alias's other
  pending requests, so of two concurrent promotions exactly one wins.

Every change starts by writing the collection's row (``_hold``): on PostgreSQL that row lock
serializes the writers of one collection (links, moves, reviews), on SQLite the database's write
lock does (and a process-wide lock keeps one process's threads from contending for it).

Locks are taken in one order: the registry collection's, then the artifact collection's
(``holding``) to the commit. A link holds its source's; so does whatever guards a registry version
(``protect`` on an alias naming it, a promotion request opened onto it: ``_hold_source``), since a
deletion with ``break_registry_links`` checks the guards holding only the artifact collection's
lock: one of the two sees the other, and neither waits for a lock the other holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import sqlalchemy as sa

from tracklet.core import forksafe

from tracklet.artifacts.names import (LATEST, check_alias, check_artifact_name, check_movable_alias, custom_aliases,
                                     version_number)
from tracklet.errors import (AliasMoved, ArtifactNotFound, LinkedVersionDeleted, PromotionCheckRequired, PromotionRequired,
                             PromotionReviewRefused, RegistryError, RegistryUnavailable)
from tracklet.registry.refs import check_registry_name
from tracklet.registry.tables import (registry_alias_events, registry_aliases, registry_cards, registry_collections,
                                      registry_links, registry_protections, registry_requests, registry_reviews)

MAX_CARD_CHARS = 1 << 20  # a model card is Markdown for people: 1 MiB is plenty
MAX_REASON_CHARS = 4096
MAX_HISTORY = 10_000  # events returned by one history call at most
REGISTRY_ROLES = ("viewer", "member", "admin")  # a registry's roles, lowest first (server/registry_roles.py)
DEFAULT_APPROVER_ROLE = "admin"


# ------------------------------------------------------------ the alias move's statements
# Built once, with bound parameters (``b_*``: a name that is also a column's would be taken for its
# SET value), so that a move neither builds expressions nor generates cache keys again: its
# statements hit SQLAlchemy's compiled cache as they are (profiled: building and keying them was
# about half of a move's CPU).


def _in(table: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.registry == sa.bindparam("b_registry"), table.c.collection == sa.bindparam("b_collection"))


# Writes the collection's row first (the lock: module docstring) and reads it in the same statement.
_HOLD = registry_collections.update().where(_in(registry_collections)).values(
    updated_at=sa.bindparam("b_now")).returning(*registry_collections.c)
_LATEST = sa.select(sa.func.max(registry_links.c.version)).where(_in(registry_links)).scalar_subquery()
_ALIASED = sa.select(registry_aliases.c.version).where(
    _in(registry_aliases), registry_aliases.c.alias == sa.bindparam("b_selector")).scalar_subquery()
_LINKED = sa.select(registry_links.c.version).where(_in(registry_links))
# The version a selector names, if the collection links it: ``vN``, ``latest``, another alias.
_LINKED_NUMBER = _LINKED.where(registry_links.c.version == sa.bindparam("b_number"))
_LINKED_LATEST = _LINKED.where(registry_links.c.version == _LATEST)
_LINKED_ALIAS = _LINKED.where(registry_links.c.version == _ALIASED)
_ALIAS_KEY = sa.and_(_in(registry_aliases), registry_aliases.c.alias == sa.bindparam("b_alias"))
# Where the alias points now and the approvals its protection needs: one round trip.
_CURRENT = sa.select(
    sa.select(registry_aliases.c.version).where(_ALIAS_KEY).scalar_subquery().label("current"),
    sa.select(registry_protections.c.approvals).where(
        _in(registry_protections), registry_protections.c.alias == sa.bindparam("b_alias")
    ).scalar_subquery().label("needed"))
_ALIAS_INSERT = registry_aliases.insert()
_ALIAS_UPDATE = registry_aliases.update().where(_ALIAS_KEY).values(version=sa.bindparam("b_version"))
_ALIAS_DELETE = registry_aliases.delete().where(_ALIAS_KEY)
_EVENT_INSERT = registry_alias_events.insert().returning(registry_alias_events.c.id)


class _Source(NamedTuple):
    """An artifact version a link names, as ``holding`` takes it."""

    project: str
    name: str
    version: int


def check_approver_role(role: str) -> str:
    """``role`` if it is a registry role; ``RegistryError`` otherwise."""
    if role not in REGISTRY_ROLES:
        raise RegistryError(f"an approver role is one of {', '.join(REGISTRY_ROLES)}; got {role!r}")
    return role


def role_at_least(role: str | None, needed: str) -> bool:
    """Whether registry role ``role`` (None: no role) is ``needed`` or a higher one."""
    return role in REGISTRY_ROLES and REGISTRY_ROLES.index(role) >= REGISTRY_ROLES.index(needed)


@dataclasses.dataclass
class Link:
    """One version of a registry collection: a link to an artifact version."""

    registry: str
    collection: str
    version: int
    source_project: str
    source_name: str
    source_version: int
    source_digest: str
    linked_at: float
    linked_by: str
    type: str = ""
    aliases: list[str] = dataclasses.field(default_factory=list)  # vN, latest, then custom ones
    requests: list[int] = dataclasses.field(default_factory=list)  # promotion requests a link opened

    @property
    def path(self) -> str:
        return f"{self.registry}/{self.collection}:v{self.version}"

    @property
    def source(self) -> str:
        return f"{self.source_project}/{self.source_name}:v{self.source_version}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": self.path, "source": self.source}


@dataclasses.dataclass
class AliasEvent:
    """One alias move: ``from_version`` None when the alias was new, ``to_version`` None when removed."""

    id: int
    registry: str
    collection: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: float
    reason: str
    request_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def name(number: int | None) -> str:
            return "-" if number is None else f"v{number}"

        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.at))
        return (f"{when} UTC  {self.alias}: {name(self.from_version)} -> {name(self.to_version)}  by {self.actor}"
                + (f"  ({self.reason})" if self.reason else ""))


@dataclasses.dataclass
class Card:
    registry: str
    collection: str
    version: int
    revision: int
    text: str
    author: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PromotionRequest:
    id: int
    registry: str
    collection: str
    alias: str
    to_version: int
    from_version: int | None
    requester: str
    reason: str
    state: str
    created_at: float
    decided_at: float | None
    approvals_required: int = 1
    reviews: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    approver_role: str = DEFAULT_APPROVER_ROLE  # who may review it: this registry role or a higher one

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Protection:
    """A protected alias's approval policy: ``approvals`` approvals from reviewers holding
    ``approver_role`` (or a higher registry role), never the requester."""

    alias: str
    approvals: int
    approver_role: str = DEFAULT_APPROVER_ROLE

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextmanager
def _refusals() -> Iterator[None]:
    """A database error inside a writing transaction as ``RegistryUnavailable`` (it rolled back)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
        raise RegistryUnavailable(f"the registry's database refused the change ({reason}): nothing was changed") \
            from error


def _protected_removal(registry: str, collection: str, alias: str) -> str:
    """Why a protected alias is not removed (every removal of one is refused the same way)."""
    return f"alias {alias!r} of {registry}/{collection} is protected: it can't be removed (unprotect it first)"


def _protected_move(registry: str, collection: str, alias: str, request_id: int, number: int) -> str:
    """Why a protected alias did not move: the promotion request opened (or pending) for it."""
    return (f"alias {alias!r} of {registry}/{collection} is protected: promotion request #{request_id} (to v{number}) "
            f"waits for approval by someone else (`tracklet registry approve {request_id}`)")


def _reason(reason: str | None) -> str:
    text = str(reason or "")
    if len(text) > MAX_REASON_CHARS:
        raise RegistryError(f"a reason or comment may have at most {MAX_REASON_CHARS} characters; got {len(text)}")
    return text.replace("\0", "\ufffd")


def _actor(actor: str | None) -> str:
    return (str(actor or "unknown")[:300]).replace("\0", "\ufffd")


#: A kind ``on_write`` may get without any event: a move that named the promotion request its
#: actor had already opened for it (the server's audit answers it 409, as the first).
REQUEST_PENDING = "promotion.pending"


def _engine_in_this_process(registry: Any, parents: sa.Engine) -> sa.Engine:
    """The engine, with a pool of this process's own (a forked child's: the parent's connections
    are left alone, never closed here, as SQLAlchemy advises)."""
    parents.dispose(close=False)
    return parents


class ModelRegistry:
    """The registry in the database at ``engine`` (its tables must exist: ``local.open_registry``
    creates them for a data root, the server's migration for a server)."""

    # A forked child holding the registry (an artifact read through a link, a Pool worker's Api)
    # opens its own connections, and its lock is free there (core/forksafe.own).
    engine = forksafe.own(_engine_in_this_process)
    _lock = forksafe.own(lambda registry, parents: threading.Lock())

    def __init__(self, engine: sa.Engine, on_event: Callable[[sa.Connection, str, dict[str, Any]], None] | None = None,
                 on_write: Callable[[sa.Connection, list[str]], None] | None = None,
                 holding: Callable[[sa.Connection, Any], contextlib.AbstractContextManager[None]] | None = None) -> None:
        """``holding(connection, source)``, entered in a link's transaction once the collection is
        held and left after it commits, holds artifact version ``source`` where its store keeps it
        (raising ``ArtifactNotFound`` if it was deleted meanwhile): the store's deletion checks
        ``links_to`` holding the same lock, so a version is never deleted under a new link.
        ``on_event(connection, kind, payload)`` is called inside the transaction of each change
        (``alias.moved``, ``version.linked``, ``promotion.requested``, ``promotion.decided``), and
        ``on_write(connection, kinds)`` at the end of every writing transaction (a link, a move, a
        card, a protection, a review; ``kinds``: the events it emitted), just before it commits:
        what they write (a server's audit event, an automation's outbox row) commits with the
        change or not at all."""
        self.engine = engine
        self.on_event = on_event
        self.on_write = on_write
        self.holding = holding
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._emitted = threading.local()  # the kinds the current thread's transaction emitted

    def _emit(self, connection: sa.Connection, kind: str, payload: dict[str, Any]) -> None:
        kinds = getattr(self._emitted, "kinds", None)
        if kinds is not None:
            kinds.append(kind)
        if self.on_event is not None:
            self.on_event(connection, kind, payload)

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A writing transaction; ``on_write`` runs at its end, inside it."""
        with contextlib.ExitStack() as stack:
            if self._lock is not None:
                stack.enter_context(self._lock)
            try:
                # Entered before the transaction, so the sources it holds are let go after the commit.
                self._emitted.sources = (stack.enter_context(contextlib.ExitStack()), set())
                stack.enter_context(_refusals())
                connection = stack.enter_context(self.engine.begin())
                kinds: list[str] = []
                self._emitted.kinds = kinds
                yield connection
                if self.on_write is not None:
                    self.on_write(connection, list(kinds))
            finally:
                self._emitted.kinds = None
                self._emitted.sources = None

    def _hold_source(self, connection: sa.Connection, source: Any) -> None:
        """Hold artifact version ``source`` (project, name, version) where its store keeps it, to
        the end of the current ``_write`` (past its commit): ``holding``, once per version and
        transaction. ``ArtifactNotFound`` if it was deleted."""
        if self.holding is None:
            return
        held, keys = self._emitted.sources
        key = (source.project, source.name, int(source.version))
        if key not in keys:
            held.enter_context(self.holding(connection, source))
            keys.add(key)

    def _guarding(self, connection: sa.Connection, registry: str, collection: str, version: int,
                  what: str) -> None:
        """Before the collection's version ``version`` is guarded (``what``: an alias protected on
        it, a promotion request opened onto it): hold its artifact version, as a link does, so a
        deletion breaking the link either sees the guard or deleted first; ``LinkedVersionDeleted``
        if it did (a guard on a version without files would guard nothing)."""
        row = connection.execute(sa.select(registry_links).where(
            self._key(registry_links, registry, collection), registry_links.c.version == version)).first()
        if row is None:
            return
        source = _Source(row.source_project, row.source_name, row.source_version)
        try:
            self._hold_source(connection, source)
        except ArtifactNotFound:
            raise LinkedVersionDeleted(
                f"{registry}/{collection}:v{version} links {source.project}/{source.name}:v{source.version}, which "
                f"was deleted (its files are gone): {what} refused; nothing was changed") from None

    @staticmethod
    def _key(table: sa.Table, registry: str, collection: str) -> Any:
        return sa.and_(table.c.registry == registry, table.c.collection == collection)

    def _hold(self, connection: sa.Connection, registry: str, collection: str, *, type: str | None = None) -> Any:
        """Lock the collection's row for the rest of the transaction and return it; with ``type``
        the collection is created if it doesn't exist. ``ArtifactNotFound`` if it doesn't."""
        now = time.time()
        row = connection.execute(_HOLD, {"b_registry": registry, "b_collection": collection, "b_now": now}).first()
        if row is not None:
            return row
        if type is None:
            raise ArtifactNotFound(f"no registry collection {registry}/{collection} (nothing was linked to it)")
        connection.execute(registry_collections.insert().values(
            registry=registry, collection=collection, type=type, next_version=0, created_at=now, updated_at=now))
        return connection.execute(sa.select(registry_collections).where(
            self._key(registry_collections, registry, collection))).one()

    # ------------------------------------------------------------ reading

    def _aliases_of(self, connection: sa.Connection, registry: str, collection: str, version: int,
                    latest: int) -> list[str]:
        names = sorted(connection.execute(sa.select(registry_aliases.c.alias).where(
            self._key(registry_aliases, registry, collection), registry_aliases.c.version == version)).scalars())
        return [f"v{version}", *([LATEST] if version == latest else []), *names]

    def _latest(self, connection: sa.Connection, registry: str, collection: str) -> int | None:
        return connection.execute(sa.select(sa.func.max(registry_links.c.version)).where(
            self._key(registry_links, registry, collection))).scalar()

    def _link(self, connection: sa.Connection, row: Any, latest: int, type: str = "") -> Link:
        return Link(registry=row.registry, collection=row.collection, version=row.version,
                    source_project=row.source_project, source_name=row.source_name,
                    source_version=row.source_version, source_digest=row.source_digest, linked_at=row.linked_at,
                    linked_by=row.linked_by, type=type,
                    aliases=self._aliases_of(connection, row.registry, row.collection, row.version, latest))

    def _number(self, connection: sa.Connection, registry: str, collection: str, selector: str) -> tuple[int, int]:
        """(the version ``selector`` names, the latest version)."""
        latest = self._latest(connection, registry, collection)
        if latest is None:
            raise ArtifactNotFound(f"no registry collection {registry}/{collection} (nothing was linked to it)")
        if selector == LATEST:
            return latest, latest
        number = version_number(selector)
        if number is None:
            number = connection.execute(sa.select(registry_aliases.c.version).where(
                self._key(registry_aliases, registry, collection), registry_aliases.c.alias == selector)).scalar()
            if number is None:
                known = connection.execute(sa.select(registry_aliases.c.alias).where(
                    self._key(registry_aliases, registry, collection)).order_by(registry_aliases.c.alias)
                    .limit(20)).scalars()
                raise ArtifactNotFound(f"registry collection {registry}/{collection} has no alias {selector!r} "
                                       f"(aliases: {', '.join(['latest', *known])})")
        return number, latest

    def resolve(self, registry: str, collection: str, selector: str = LATEST) -> Link:
        """The link ``selector`` (``latest``, ``vN``, an alias) names; ``ArtifactNotFound`` if none.
        Two indexed queries when it exists (the link with its collection's type and latest version;
        its aliases): what serving ``models:/name@production`` costs."""
        with self.engine.connect() as connection:
            latest_query = sa.select(sa.func.max(registry_links.c.version)).where(
                self._key(registry_links, registry, collection)).scalar_subquery()
            number = version_number(selector)
            wanted: Any = (latest_query if selector == LATEST else sa.literal(number) if number is not None else
                           sa.select(registry_aliases.c.version).where(
                               self._key(registry_aliases, registry, collection),
                               registry_aliases.c.alias == selector).scalar_subquery())
            found = connection.execute(
                sa.select(registry_links, registry_collections.c.type.label("collection_type"),
                          latest_query.label("latest"))
                .join(registry_collections, sa.and_(registry_collections.c.registry == registry_links.c.registry,
                                                    registry_collections.c.collection == registry_links.c.collection))
                .where(self._key(registry_links, registry, collection), registry_links.c.version == wanted)).first()
            if found is not None:
                return self._link(connection, found, found.latest, found.collection_type)
            # Not there: say precisely what is missing.
            number, latest = self._number(connection, registry, collection, selector)
            row = connection.execute(sa.select(registry_links).where(
                self._key(registry_links, registry, collection), registry_links.c.version == number)).first()
            if row is None:
                raise ArtifactNotFound(f"registry collection {registry}/{collection} has no version v{number}")
            return self._link(connection, row, latest, self._type(connection, registry, collection))

    def _type(self, connection: sa.Connection, registry: str, collection: str) -> str:
        return connection.execute(sa.select(registry_collections.c.type).where(
            self._key(registry_collections, registry, collection))).scalar() or ""

    def has_collection(self, registry: str, collection: str) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(registry_collections.c.collection).where(
                self._key(registry_collections, registry, collection))).first() is not None

    def versions(self, registry: str, collection: str, *, limit: int | None = None, offset: int = 0) -> list[Link]:
        """The collection's versions, oldest first."""
        with self.engine.connect() as connection:
            latest = self._latest(connection, registry, collection)
            if latest is None:
                raise ArtifactNotFound(f"no registry collection {registry}/{collection} (nothing was linked to it)")
            type = self._type(connection, registry, collection)
            aliases: dict[int, list[str]] = {}
            for alias, version in connection.execute(sa.select(registry_aliases.c.alias, registry_aliases.c.version)
                                                     .where(self._key(registry_aliases, registry, collection))):
                aliases.setdefault(version, []).append(alias)
            rows = connection.execute(sa.select(registry_links).where(self._key(registry_links, registry, collection))
                                      .order_by(registry_links.c.version).limit(limit).offset(offset)).all()
        return [Link(registry=row.registry, collection=row.collection, version=row.version,
                     source_project=row.source_project, source_name=row.source_name,
                     source_version=row.source_version, source_digest=row.source_digest, linked_at=row.linked_at,
                     linked_by=row.linked_by, type=type,
                     aliases=[f"v{row.version}", *([LATEST] if row.version == latest else []),
                              *sorted(aliases.get(row.version, []))]) for row in rows]

    def collections(self, registry: str | None = None) -> list[dict[str, Any]]:
        """Collections (of one registry, or all): ``registry``, ``collection``, ``type``,
        ``versions`` (how many), ``latest`` (``vN``) and ``aliases`` ({alias: vN})."""
        with self.engine.connect() as connection:
            counts = sa.select(registry_links.c.registry, registry_links.c.collection,
                               sa.func.count().label("versions"), sa.func.max(registry_links.c.version).label("latest")
                               ).group_by(registry_links.c.registry, registry_links.c.collection).subquery()
            query = sa.select(registry_collections.c.registry, registry_collections.c.collection,
                              registry_collections.c.type, counts.c.versions, counts.c.latest).join(
                counts, sa.and_(counts.c.registry == registry_collections.c.registry,
                                counts.c.collection == registry_collections.c.collection))
            if registry is not None:
                query = query.where(registry_collections.c.registry == registry)
            rows = connection.execute(query.order_by(registry_collections.c.registry,
                                                     registry_collections.c.collection)).all()
            aliases: dict[tuple[str, str], dict[str, str]] = {}
            alias_query = sa.select(registry_aliases)
            if registry is not None:
                alias_query = alias_query.where(registry_aliases.c.registry == registry)
            for row in connection.execute(alias_query.order_by(registry_aliases.c.alias)):
                aliases.setdefault((row.registry, row.collection), {})[row.alias] = f"v{row.version}"
        return [{"registry": row.registry, "collection": row.collection, "type": row.type, "versions": row.versions,
                 "latest": f"v{row.latest}", "aliases": aliases.get((row.registry, row.collection), {})}
                for row in rows]

    def links_to(self, project: str, name: str, version: int, *, connection: sa.Connection | None = None) -> list[Link]:
        """Every registry version that links artifact version ``project/name:v<version>``; read in
        ``connection`` if given (a deletion's transaction, in the registry's database)."""
        with contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.engine.connect())
            rows = connection.execute(sa.select(registry_links).where(
                registry_links.c.source_project == project, registry_links.c.source_name == name,
                registry_links.c.source_version == version)).all()
            return [self._link(connection, row, self._latest(connection, row.registry, row.collection) or 0)
                    for row in rows]

    def history(self, registry: str, collection: str, alias: str | None = None, *,
                limit: int = MAX_HISTORY) -> list[AliasEvent]:
        """Every alias move of the collection (of ``alias`` only, if given), oldest first."""
        with self.engine.connect() as connection:
            if not connection.execute(sa.select(registry_collections.c.collection).where(
                    self._key(registry_collections, registry, collection))).first():
                raise ArtifactNotFound(f"no registry collection {registry}/{collection} (nothing was linked to it)")
            query = sa.select(registry_alias_events).where(self._key(registry_alias_events, registry, collection))
            if alias is not None:
                query = query.where(registry_alias_events.c.alias == alias)
            rows = connection.execute(query.order_by(registry_alias_events.c.id).limit(limit)).all()
        return [AliasEvent(**row._asdict()) for row in rows]

    # ------------------------------------------------------------ writing

    def link(self, registry: str, collection: str, source: Any, aliases: list[str] | tuple[str, ...] = (), *,
             actor: str | None = None, reason: str | None = None) -> Link:
        """Link artifact version ``source`` (a ``VersionInfo``: project, name, version, digest,
        type) into ``registry/collection`` as its next version, or return the link it has, then
        give it ``aliases``. A protected alias is not moved: a promotion request is opened
        (``Link.requests``)."""
        registry, collection = check_registry_name(registry), check_artifact_name(collection)
        custom = custom_aliases(aliases)
        actor, why = _actor(actor), _reason(reason)
        with self._write() as connection:
            held = self._hold(connection, registry, collection, type=source.type)
            if held.type != source.type:
                raise RegistryError(f"registry collection {registry}/{collection} holds versions of type "
                                    f"{held.type!r}; {source.project}/{source.name}:v{source.version} is a "
                                    f"{source.type!r}")
            self._hold_source(connection, source)
            row = connection.execute(sa.select(registry_links).where(
                self._key(registry_links, registry, collection), registry_links.c.source_project == source.project,
                registry_links.c.source_name == source.name,
                registry_links.c.source_version == source.version)).first()
            if row is None:
                number = held.next_version
                connection.execute(registry_links.insert().values(
                    registry=registry, collection=collection, version=number, source_project=source.project,
                    source_name=source.name, source_version=source.version, source_digest=source.digest,
                    linked_at=time.time(), linked_by=actor))
                connection.execute(registry_collections.update().where(
                    self._key(registry_collections, registry, collection)).values(next_version=number + 1))
                # events: version.linked
                self._emit(connection, "version.linked", {
                    "registry": registry, "collection": collection, "version": number, "actor": actor,
                    "source": f"{source.project}/{source.name}:v{source.version}", "digest": source.digest})
            else:
                number = row.version
            requests = []
            for alias in custom:
                outcome = self._move(connection, registry, collection, alias, number, actor, why)
                if isinstance(outcome, int):
                    requests.append(outcome)
            row = connection.execute(sa.select(registry_links).where(
                self._key(registry_links, registry, collection), registry_links.c.version == number)).one()
            link = self._link(connection, row, self._latest(connection, registry, collection) or 0, held.type)
        link.requests = requests
        return link

    def _move(self, connection: sa.Connection, registry: str, collection: str, alias: str, version: int | None,
              actor: str, reason: str, *, request_id: int | None = None) -> AliasEvent | int | None:
        """Point ``alias`` at ``version`` (None: remove it), appending the event; None if it
        already did. A protected alias (without an approved ``request_id``) is not moved: a
        promotion request is opened and its id returned. The collection is held."""
        key = {"b_registry": registry, "b_collection": collection, "b_alias": alias}
        current, needed = connection.execute(_CURRENT, key).one()
        if current == version:
            return None
        if request_id is None and needed:
            if version is None:
                raise PromotionRequired(_protected_removal(registry, collection, alias))
            pending = connection.execute(sa.select(registry_requests.c.id).where(
                self._key(registry_requests, registry, collection), registry_requests.c.alias == alias,
                registry_requests.c.to_version == version, registry_requests.c.requester == actor,
                registry_requests.c.state == "pending").order_by(registry_requests.c.id).limit(1)).scalar()
            if pending is not None:  # the same promotion asked again (a retry): its request, not a second one
                kinds = getattr(self._emitted, "kinds", None)
                if kinds is not None:  # no event (nothing changed), but on_write is told the move was refused
                    kinds.append(REQUEST_PENDING)
                return int(pending)
            self._guarding(connection, registry, collection, version, f"a promotion request onto it (alias {alias!r})")
            request_id = connection.execute(registry_requests.insert().values(
                registry=registry, collection=collection, alias=alias, to_version=version, from_version=current,
                requester=actor, reason=reason, state="pending", created_at=time.time())
                .returning(registry_requests.c.id)).scalar_one()
            # events: promotion.requested
            self._emit(connection, "promotion.requested", {
                "id": request_id, "registry": registry, "collection": collection, "alias": alias,
                "from_version": current, "to_version": version, "actor": actor, "reason": reason})
            return int(request_id)
        if version is None:
            connection.execute(_ALIAS_DELETE, key)
        elif current is None:
            connection.execute(_ALIAS_INSERT, {"registry": registry, "collection": collection, "alias": alias,
                                               "version": version})
        else:
            connection.execute(_ALIAS_UPDATE, {**key, "b_version": version})
        event: dict[str, Any] = {"registry": registry, "collection": collection, "alias": alias, "from_version": current,
                                 "to_version": version, "actor": actor, "at": time.time(), "reason": reason,
                                 "request_id": request_id}
        event_id = connection.execute(_EVENT_INSERT, event).scalar_one()
        # events: alias.moved -- the server passes on_event (server/events.emit) to ModelRegistry
        self._emit(connection, "alias.moved", {"id": event_id, **event})
        return AliasEvent(id=event_id, **event)

    def _linked(self, connection: sa.Connection, registry: str, collection: str, selector: str) -> int:
        """The version ``selector`` names, which the collection links: one query when it does;
        ``ArtifactNotFound`` saying what is missing when it doesn't."""
        key = {"b_registry": registry, "b_collection": collection}
        number = version_number(selector)
        if selector == LATEST:
            found = connection.execute(_LINKED_LATEST, key).scalar()
        elif number is not None:
            found = connection.execute(_LINKED_NUMBER, {**key, "b_number": number}).scalar()
        else:
            found = connection.execute(_LINKED_ALIAS, {**key, "b_selector": selector}).scalar()
        if found is not None:
            return int(found)
        number, _ = self._number(connection, registry, collection, selector)
        raise ArtifactNotFound(f"registry collection {registry}/{collection} has no version v{number}")

    def set_alias(self, registry: str, collection: str, alias: str, selector: str, *, actor: str | None = None,
                  reason: str | None = None) -> AliasEvent | None:
        """Point ``alias`` at the version ``selector`` names (moving it from another version);
        the event appended, or None if it named that version already. A protected alias raises
        ``PromotionRequired`` naming the promotion request it opened."""
        alias = check_movable_alias(alias)
        actor, why = _actor(actor), _reason(reason)
        request_id = None
        with self._write() as connection:
            self._hold(connection, registry, collection)
            number = self._linked(connection, registry, collection, selector)
            outcome = self._move(connection, registry, collection, alias, number, actor, why)
            if isinstance(outcome, int):
                request_id = outcome
        if request_id is not None:
            raise PromotionRequired(_protected_move(registry, collection, alias, request_id, number), request_id)
        return outcome if isinstance(outcome, AliasEvent) else None

    def remove_alias(self, registry: str, collection: str, alias: str, *, expected: int | None = None,
                     unconditional: bool = False, actor: str | None = None,
                     reason: str | None = None) -> AliasEvent | None:
        """Remove ``alias`` from the collection if it still names version ``expected`` (the one
        the caller read), in the removal's transaction: one someone moved or removed meanwhile
        raises ``AliasMoved`` and nothing changes, so a stale caller never removes an alias
        from the version someone else put it on. ``unconditional=True`` (and no ``expected``)
        removes it wherever it points: what an explicit ``tracklet registry alias --remove``
        without a version asks for. The event, or None if it had no such alias (unconditional)."""
        if expected is None and not unconditional:
            raise RegistryError(f"removing alias {alias!r} of {registry}/{collection}: name the version you read it "
                                "on (expected=N), or pass unconditional=True to remove it wherever it points now")
        actor, why = _actor(actor), _reason(reason)
        with self._write() as connection:
            self._hold(connection, registry, collection)
            if expected is not None:
                current = connection.execute(_CURRENT, {"b_registry": registry, "b_collection": collection,
                                                        "b_alias": alias}).one()[0]
                if current is None:
                    raise AliasMoved(f"alias {alias!r} of {registry}/{collection} names no version, not "
                                     f"v{int(expected)}: it was never set or someone removed it; nothing was removed")
                if current != int(expected):
                    raise AliasMoved(f"alias {alias!r} of {registry}/{collection} names v{current} now, not "
                                     f"v{int(expected)} as read: someone moved it meanwhile; nothing was removed "
                                     "(read it again)")
            outcome = self._move(connection, registry, collection, alias, None, actor, why)
        return outcome if isinstance(outcome, AliasEvent) else None

    def save_aliases(self, registry: str, collection: str, version: int, added: list[str] | tuple[str, ...] = (),
                     removed: list[str] | tuple[str, ...] = (), *, actor: str | None = None,
                     reason: str | None = None) -> list[AliasEvent]:
        """Move the aliases of the collection's version ``version`` in one transaction (what
        ``artifact.aliases`` edits + ``save()`` do): point each of ``added`` at it, take each of
        ``removed`` off it. Everything is checked before anything changes, so a refused save
        changes nothing: a bad alias raises ``ArtifactNameError``, a protected alias to remove
        ``PromotionRequired``; a protected alias to add opens a promotion request (or names the
        pending one this actor opened for that alias and version) and raises
        ``PromotionRequired`` naming it, with no alias moved. An alias in ``removed`` is removed
        only if it still names this version: one someone else moved since it was read stays
        where they put it (W&B removes an alias from the edited artifact only). Returns the
        events appended."""
        adding = custom_aliases(added)
        removing = [check_alias(alias) for alias in dict.fromkeys(removed) if alias not in adding]
        actor, why = _actor(actor), _reason(reason)
        opened: list[tuple[str, int]] = []
        events: list[AliasEvent] = []
        with self._write() as connection:
            self._hold(connection, registry, collection)
            number = self._linked(connection, registry, collection, f"v{int(version)}")
            state = {alias: tuple(connection.execute(_CURRENT, {"b_registry": registry, "b_collection": collection,
                                                                "b_alias": alias}).one())
                     for alias in [*adding, *removing]}
            removing = [alias for alias in removing if state[alias][0] == number]
            for alias in removing:
                if state[alias][1]:
                    raise PromotionRequired(f"{_protected_removal(registry, collection, alias)}; no alias was changed")
            protected = [alias for alias in adding if state[alias][1] and state[alias][0] != number]
            if protected:
                for alias in protected:
                    outcome = self._move(connection, registry, collection, alias, number, actor, why)
                    assert isinstance(outcome, int)
                    opened.append((alias, outcome))
            else:
                for alias in [*removing, *adding]:
                    moved = self._move(connection, registry, collection, alias, None if alias in removing else number,
                                       actor, why)
                    if isinstance(moved, AliasEvent):
                        events.append(moved)
        if opened:
            named = "; ".join(_protected_move(registry, collection, alias, request_id, number)
                              for alias, request_id in opened)
            raise PromotionRequired(f"{named}; no alias was moved", opened[0][1])
        return events

    def _guards(self, connection: sa.Connection, registry: str, collection: str,
                number: int) -> tuple[list[str], list[str], list[int]]:
        """The collection's version ``number``: its custom aliases, those of them protected, and the
        pending promotion requests targeting it. The last two keep it in its collection whatever
        the role: ``unlink`` refuses, and so does deleting its artifact version (``guarded``)."""
        aliases = sorted(connection.execute(sa.select(registry_aliases.c.alias).where(
            self._key(registry_aliases, registry, collection), registry_aliases.c.version == number)).scalars())
        protected = sorted(connection.execute(sa.select(registry_protections.c.alias).where(
            self._key(registry_protections, registry, collection), registry_protections.c.alias.in_(aliases),
            registry_protections.c.approvals > 0)).scalars()) if aliases else []
        pending = list(connection.execute(sa.select(registry_requests.c.id).where(
            self._key(registry_requests, registry, collection), registry_requests.c.to_version == number,
            registry_requests.c.state == "pending").order_by(registry_requests.c.id)).scalars())
        return aliases, protected, pending

    def guarded(self, links: list[Link], *, connection: sa.Connection | None = None) -> list[str]:
        """Why any of ``links`` can't be left without files (its artifact version deleted with
        ``break_registry_links``): each one a protected alias names or a pending promotion request
        targets, as ``registry/collection:vN (protected alias production)``. These are what
        ``unlink`` refuses for every role too, so deleting through the links is never a way round
        them (docs/registry.md, "Who may do what"). Read in ``connection`` if given (a deletion's
        transaction, in the registry's database)."""
        found: list[str] = []
        with contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.engine.connect())
            for link in links:
                _, protected, pending = self._guards(connection, link.registry, link.collection, link.version)
                why = [f"protected alias {alias}" for alias in protected]
                why += [f"pending promotion request #{request}" for request in pending]
                if why:
                    found.append(f"{link.path} ({', '.join(why)})")
        return found

    def unlink(self, registry: str, collection: str, version: int, *, actor: str | None = None,
               reason: str | None = None) -> list[AliasEvent]:
        """Remove the collection's version ``version`` (a link: the artifact version it names is
        untouched), W&B's ``artifact.unlink()``. Its custom aliases are removed first, each with
        its event, and the removal itself is appended to the history as an event of alias ``vN``
        (``vN -> -``), so the collection's history still tells what was there. Its number is never
        given again (``latest`` falls back to the highest version left). Refused, changing
        nothing: a version a protected alias names (``PromotionRequired``: unprotect the alias or
        promote another version first) or a pending promotion request targets (``RegistryError``:
        decide it first); ``ArtifactNotFound`` if the collection has no such version. Returns the
        events appended, the unlink's last."""
        actor, why = _actor(actor), _reason(reason or "unlinked")
        with self._write() as connection:
            self._hold(connection, registry, collection)
            number = self._linked(connection, registry, collection, f"v{int(version)}")
            aliases, protected, pending = self._guards(connection, registry, collection, number)
            if protected:
                raise PromotionRequired(f"{registry}/{collection}:v{number} is named by protected alias(es) "
                                        f"{', '.join(protected)}: they can't be removed, so it can't be unlinked "
                                        "(promote another version, or unprotect them, first); nothing was changed")
            if pending:
                raise RegistryError(f"{registry}/{collection}:v{number} is the target of pending promotion request(s) "
                                    f"{', '.join(f'#{request}' for request in pending)}: approve or reject them first "
                                    "(`tracklet registry approve|reject ID`); nothing was changed")
            events: list[AliasEvent] = []
            for alias in aliases:
                moved = self._move(connection, registry, collection, alias, None, actor, why)
                if isinstance(moved, AliasEvent):
                    events.append(moved)
            event: dict[str, Any] = {"registry": registry, "collection": collection, "alias": f"v{number}",
                                     "from_version": number, "to_version": None, "actor": actor, "at": time.time(),
                                     "reason": why, "request_id": None}
            event_id = connection.execute(_EVENT_INSERT, event).scalar_one()
            # events: alias.moved -- the version's own name taken off it: the collection no longer has it
            self._emit(connection, "alias.moved", {"id": event_id, **event})
            events.append(AliasEvent(id=event_id, **event))
            connection.execute(registry_links.delete().where(
                self._key(registry_links, registry, collection), registry_links.c.version == number))
        return events

    # ------------------------------------------------------------ model cards

    def card(self, registry: str, collection: str, version: int, revision: int | None = None) -> Card | None:
        """The card of a version (its newest revision, or ``revision``), None if it has none."""
        with self.engine.connect() as connection:
            query = sa.select(registry_cards).where(self._key(registry_cards, registry, collection),
                                                    registry_cards.c.version == version)
            if revision is not None:
                query = query.where(registry_cards.c.revision == revision)
            row = connection.execute(query.order_by(registry_cards.c.revision.desc()).limit(1)).first()
        return Card(**row._asdict()) if row is not None else None

    def card_revisions(self, registry: str, collection: str, version: int) -> list[Card]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(registry_cards).where(
                self._key(registry_cards, registry, collection), registry_cards.c.version == version)
                .order_by(registry_cards.c.revision)).all()
        return [Card(**row._asdict()) for row in rows]

    def save_card(self, registry: str, collection: str, version: int, text: str, *,
                  author: str | None = None) -> Card:
        """Store ``text`` as the next revision of the version's card (earlier ones are kept)."""
        if not isinstance(text, str) or len(text) > MAX_CARD_CHARS:
            raise RegistryError(f"a model card is text of at most {MAX_CARD_CHARS} characters")
        with self._write() as connection:
            self._hold(connection, registry, collection)
            if connection.execute(sa.select(registry_links.c.version).where(
                    self._key(registry_links, registry, collection), registry_links.c.version == version)).first() is None:
                raise ArtifactNotFound(f"registry collection {registry}/{collection} has no version v{version}")
            revision = (connection.execute(sa.select(sa.func.max(registry_cards.c.revision)).where(
                self._key(registry_cards, registry, collection), registry_cards.c.version == version)).scalar() or 0) + 1
            card = Card(registry=registry, collection=collection, version=version, revision=revision,
                        text=text.replace("\0", "\ufffd"), author=_actor(author), created_at=time.time())
            connection.execute(registry_cards.insert().values(**dataclasses.asdict(card)))
        return card

    # ------------------------------------------------------------ protected aliases, promotion requests

    def protect(self, registry: str, collection: str, alias: str, approvals: int = 1, *,
                approver_role: str = DEFAULT_APPROVER_ROLE) -> Protection | None:
        """Require ``approvals`` approvals to move ``alias``, by others than the requester who
        hold ``approver_role`` (``viewer``, ``member`` or ``admin``) or a higher registry role;
        0 lifts the protection. Returns the policy it replaced (None: the alias was not protected).
        Pending requests follow the new policy from their next review on."""
        alias = check_movable_alias(alias)
        if isinstance(approvals, bool) or not isinstance(approvals, int) or not 0 <= approvals <= 100:
            raise RegistryError(f"approvals must be a whole number from 0 to 100; got {approvals!r}")
        check_approver_role(approver_role)
        with self._write() as connection:
            self._hold(connection, registry, collection)
            where = sa.and_(self._key(registry_protections, registry, collection), registry_protections.c.alias == alias)
            before = connection.execute(sa.select(registry_protections).where(where)).first()
            if approvals:
                named = connection.execute(_CURRENT, {"b_registry": registry, "b_collection": collection,
                                                      "b_alias": alias}).one()[0]
                if named is not None:
                    self._guarding(connection, registry, collection, named, f"protecting alias {alias!r} on it")
            connection.execute(registry_protections.delete().where(where))
            if approvals:
                connection.execute(registry_protections.insert().values(
                    registry=registry, collection=collection, alias=alias, approvals=approvals,
                    approver_role=approver_role))
        return None if before is None else Protection(alias, before.approvals, before.approver_role)

    def protections(self, registry: str, collection: str) -> dict[str, Protection]:
        """The collection's protected aliases, each with its approval policy; ``ArtifactNotFound``
        for a collection nothing was linked to (as ``protect`` and ``history``)."""
        with self.engine.connect() as connection:
            found = {row.alias: Protection(row.alias, row.approvals, row.approver_role)
                     for row in connection.execute(sa.select(registry_protections).where(
                         self._key(registry_protections, registry, collection)))}
            if not found and not connection.execute(sa.select(registry_collections.c.collection).where(
                    self._key(registry_collections, registry, collection))).first():
                raise ArtifactNotFound(f"no registry collection {registry}/{collection} (nothing was linked to it)")
            return found

    def _request(self, connection: sa.Connection, request_id: int) -> PromotionRequest:
        row = connection.execute(sa.select(registry_requests).where(registry_requests.c.id == request_id)).first()
        if row is None:
            raise ArtifactNotFound(f"no promotion request #{request_id}")
        policy = connection.execute(sa.select(registry_protections.c.approvals, registry_protections.c.approver_role)
                                    .where(self._key(registry_protections, row.registry, row.collection),
                                           registry_protections.c.alias == row.alias)).first()
        reviews = [row_._asdict() for row_ in connection.execute(sa.select(registry_reviews).where(
            registry_reviews.c.request_id == request_id).order_by(registry_reviews.c.at))]
        return PromotionRequest(**row._asdict(), approvals_required=policy.approvals if policy else 0, reviews=reviews,
                                approver_role=policy.approver_role if policy else DEFAULT_APPROVER_ROLE)

    def request(self, request_id: int) -> PromotionRequest:
        with self.engine.connect() as connection:
            return self._request(connection, request_id)

    def requests(self, registry: str | None = None, collection: str | None = None, *,
                 state: str | None = "pending") -> list[PromotionRequest]:
        with self.engine.connect() as connection:
            query = sa.select(registry_requests.c.id)
            if registry is not None:
                query = query.where(registry_requests.c.registry == registry)
            if collection is not None:
                query = query.where(registry_requests.c.collection == collection)
            if state is not None:
                query = query.where(registry_requests.c.state == state)
            ids = connection.execute(query.order_by(registry_requests.c.id).limit(1000)).scalars().all()
            return [self._request(connection, request_id) for request_id in ids]

    def review(self, request_id: int, decision: str, *, reviewer: str | None = None,
               comment: str | None = None, checked: bool = True, reviewer_role: str | None = None,
               roles: bool = False) -> PromotionRequest:
        """Approve or reject a pending promotion request (``decision``: ``approve``/``reject``).
        The requester can't review their own request, nor anyone review twice. With ``roles`` (a
        server with registry roles) the reviewer must hold the alias's approver role or a higher
        one (``reviewer_role``: theirs in the registry, None for none), checked under the
        collection's lock with the policy in force then: ``PromotionReviewRefused`` otherwise,
        as for the requester. The approval that
        completes the count moves the alias (its event names the request) and supersedes the
        alias's other pending requests. With ``checked=False`` that approval raises
        ``PromotionCheckRequired`` instead, recording nothing (decided under the collection's
        lock): the caller runs the alias's check outside any transaction and reviews again."""
        if decision not in ("approve", "reject"):
            raise RegistryError(f"a review is 'approve' or 'reject'; got {decision!r}")
        reviewer, why = _actor(reviewer), _reason(comment)
        with self._engine_request(request_id) as (connection, registry, collection):
            request = self._request(connection, request_id)  # read again under the collection's lock
            if request.state != "pending":
                raise RegistryError(f"promotion request #{request_id} is {request.state}: it can't be reviewed")
            if reviewer == request.requester:
                raise PromotionReviewRefused(f"promotion request #{request_id} was made by {reviewer}: someone else "
                                             "must review it")
            if roles and not role_at_least(reviewer_role, request.approver_role):
                raise PromotionReviewRefused(
                    f"{reviewer} may not review promotion request #{request_id}: alias {request.alias!r} of "
                    f"{registry}/{collection} takes approvals from the {request.approver_role} role or a higher one "
                    f"in registry {registry!r}, and {reviewer} "
                    + (f"has {reviewer_role}" if reviewer_role else "has no role there"))
            if any(review["reviewer"] == reviewer for review in request.reviews):
                raise RegistryError(f"{reviewer} has reviewed promotion request #{request_id} already")
            now = time.time()
            connection.execute(registry_reviews.insert().values(request_id=request_id, reviewer=reviewer,
                                                                decision=decision, comment=why, at=now))
            approvals = sum(review["decision"] == "approve" for review in request.reviews) + (decision == "approve")
            state = "rejected" if decision == "reject" else "approved" if approvals >= request.approvals_required \
                else "pending"
            if state == "approved":  # the alias, protected, is moved onto it: as protecting it there
                self._guarding(connection, registry, collection, request.to_version,
                               f"promotion request #{request_id} moving protected alias {request.alias!r} onto it")
            if state == "approved" and not checked:
                raise PromotionCheckRequired(f"approving promotion request #{request_id} would move alias "
                                             f"{request.alias!r} of {registry}/{collection}: its check must pass first")
            if state != "pending":
                connection.execute(registry_requests.update().where(registry_requests.c.id == request_id)
                                   .values(state=state, decided_at=now))
                # events: promotion.decided
                self._emit(connection, "promotion.decided", {
                    "id": request_id, "registry": registry, "collection": collection, "alias": request.alias,
                    "to_version": request.to_version, "state": state, "actor": reviewer, "comment": why})
            if state == "approved":
                self._move(connection, registry, collection, request.alias, request.to_version, request.requester,
                           request.reason, request_id=request_id)
                connection.execute(registry_requests.update().where(
                    self._key(registry_requests, registry, collection), registry_requests.c.alias == request.alias,
                    registry_requests.c.state == "pending", registry_requests.c.id != request_id)
                    .values(state="superseded", decided_at=now))
            return self._request(connection, request_id)

    @contextmanager
    def _engine_request(self, request_id: int) -> Iterator[tuple[sa.Connection, str, str]]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(registry_requests.c.registry, registry_requests.c.collection).where(
                registry_requests.c.id == request_id)).first()
        if row is None:
            raise ArtifactNotFound(f"no promotion request #{request_id}")
        with self._write() as connection:
            self._hold(connection, row.registry, row.collection)
            yield connection, row.registry, row.collection
