"""Who may do what on a tracking server: users, API keys and project roles.

A key is ``tlk_<key id>_<secret>``. The server keeps the key id (to find the key) and the SHA-256
of the secret, never the secret itself, so a key is shown once, when it is made. Keys are 256-bit
random secrets, so a fast hash is enough: there is nothing to brute-force. A revoked key stays
in the table (so its id keeps identifying it in listings) and never authenticates again.

Roles are per project, ordered ``read`` < ``write`` < ``admin``; a server admin (``users.is_admin``)
holds every role on every project. Any authenticated user may create a project by uploading the
first run to it and becomes its admin. ``Authorizer.check`` is what every route relies on: it is
applied to the project-scoped routers in ``app.py`` with the role the route needs
(``route_access``: GET and HEAD need ``read``, other methods ``write``, unless the route declares
its own with ``requires``: managing members needs ``admin``, the upload's offset probe ``write``),
so a 403 always names the role that route needs.

``--dev`` servers have no ``Authorizer``: every request acts as the server admin, and the CLI
allows that on loopback addresses only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import sqlalchemy as sa
from fastapi import HTTPException, Request

from tracklet.core.layout import check_name
from tracklet.errors import AuthError  # noqa: F401  (defined there; imported from here too)
from tracklet.server.schema import api_keys, migrate, project_members, users

if TYPE_CHECKING:
    from tracklet.store import Store

_Route = TypeVar("_Route", bound=Callable[..., Any])

KEY_PREFIX = "tlk_"
ROLES = ("read", "write", "admin")
_ROUTE_ACCESS = "tracklet_route_access"  # the attribute ``requires`` sets on a route function
LAST_USED_EVERY = 60.0  # seconds between writes of a key's last_used_at
# Seconds a passed check (a key, a project, a role) admits the same key's next requests to that
# project without the database (``Authorizer.admits``): a key revoked, a user disabled or a member
# removed by another process sharing the database (``tracklet admin``, another server process) is
# refused within this; through this server's own API, at once.
ADMITTED_FOR = 5.0
ADMITTED_MAX = 10_000  # passed checks remembered at most (when full: the expired go, else the oldest half)


@dataclasses.dataclass(frozen=True)
class RouteAccess:
    """The project role a route needs (``role``), and whether a project that doesn't exist yet is
    open to it (``missing_ok``: nothing is in it to protect; a read, or the upload's offset probe)."""

    role: str
    missing_ok: bool = False
    #: Whether a write to a project that doesn't exist yet creates it, with the sender as its admin:
    #: only the routes that declare it (``requires(..., creates=True)``: a run's or an artifact's
    #: upload, a server sweep). Any other write to an unknown project is refused (403), never creates it.
    creates: bool = False


_READ = RouteAccess("read", missing_ok=True)
_WRITE = RouteAccess("write")


def requires(role: str, *, missing_ok: bool = False, creates: bool = False) -> Callable[[_Route], _Route]:
    """Declare the project role a route function needs where its method's rule (``read`` for GET
    and HEAD, ``write`` for the rest) isn't it: the guard (``app.require_access``) checks that
    role, so its 403 names it, before the route runs. ``creates``: the route is an upload that
    creates a project that doesn't exist yet (``RouteAccess.creates``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")

    def mark(route: _Route) -> _Route:
        setattr(route, _ROUTE_ACCESS, RouteAccess(role, missing_ok, creates))
        return route

    return mark


def route_access(request: Request) -> RouteAccess:
    """The role the request's route needs: the one it declares (``requires``; the one-hop wrapper
    copies the attribute), else ``read`` for GET and HEAD and ``write`` for the other methods."""
    declared = getattr(request.scope.get("endpoint"), _ROUTE_ACCESS, None)
    if declared is not None:
        return declared
    return _READ if request.method in ("GET", "HEAD") else _WRITE


# The store's projects table, named as the server's own tables name it (project_members' foreign
# key, schema.py): the server reads the store through Store methods but for this join.
projects = sa.table("projects", sa.column("id", sa.Integer), sa.column("name", sa.String))

# Every request's lookups, built once with bound parameters: executing them hits SQLAlchemy's
# compiled cache without building the expression and its cache key again (issue #18: the web
# stack's CPU per alias move).
_KEY_OWNER = (sa.select(api_keys.c.secret_hash, api_keys.c.revoked_at, users.c.id, users.c.name, users.c.is_admin,
                        users.c.disabled)
              .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
              .where(api_keys.c.key_id == sa.bindparam("b_key_id")))
# The same with the project's id and the key owner's role in it: a request's whole check, one statement.
_KEY_OWNER_ROLE = (_KEY_OWNER.add_columns(projects.c.id.label("project_id"), project_members.c.role)
                   .outerjoin(projects, projects.c.name == sa.bindparam("b_project"))
                   .outerjoin(project_members, sa.and_(project_members.c.project_id == projects.c.id,
                                                       project_members.c.user_id == users.c.id)))
# A project's id and the user's role in it, one statement (was two lookups on two connections).
_PROJECT_ROLE = (sa.select(projects.c.id, project_members.c.role)
                 .select_from(projects.outerjoin(project_members, sa.and_(
                     project_members.c.project_id == projects.c.id,
                     project_members.c.user_id == sa.bindparam("b_user_id"))))
                 .where(projects.c.name == sa.bindparam("b_project")))


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who sent a request."""

    user_id: int | None  # None for the --dev server's implicit admin
    name: str
    is_admin: bool
    key_id: str | None = None


DEV_PRINCIPAL = Principal(user_id=None, name="dev", is_admin=True)


@dataclasses.dataclass(frozen=True)
class NewKey:
    """A key as made: ``key`` is the only time its secret exists outside the client."""

    key: str
    key_id: str
    user: str
    label: str


def _new_id(connection: sa.Connection, insert: sa.Insert) -> Any:
    """The primary key of the row that ``insert`` adds."""
    key = connection.execute(insert).inserted_primary_key
    assert key is not None  # every table inserted into here has a primary key
    return key[0]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def role_at_least(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


class Accounts:
    """Users, keys and project members: the server's own tables (``schema.py``) in ``store``'s
    database (the server's and the CLI's view). Projects are the store's: members refer to a
    project by its id, which ``store`` gives (and creates for a project's first upload)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine: sa.Engine = store.engine
        # Bumped by each change that can take access away (a key revoked, a user disabled, a role
        # set or removed), once it committed: what ``Authorizer.admits`` remembers is from before.
        self.revision = 0
        migrate(self.engine)

    # ------------------------------------------------------------------ users and keys

    def create_user(self, name: str, *, admin: bool = False, label: str = "initial") -> NewKey:
        """A new user with a first key; ``ValueError`` if the name is taken or not a valid name."""
        check_name("user name", name)
        with self.engine.begin() as connection:
            if connection.execute(sa.select(users.c.id).where(users.c.name == name)).first():
                raise ValueError(f"user {name!r} exists already")
            user_id = _new_id(
                connection, users.insert().values(name=name, is_admin=admin, created_at=time.time(), disabled=False)
            )
            return self._insert_key(connection, user_id, name, label)

    def create_key(self, user: str, *, label: str = "") -> NewKey:
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(users.c.id).where(users.c.name == user, users.c.disabled.is_(False))).first()
            if row is None:
                raise AuthError(f"no active user {user!r}")
            return self._insert_key(connection, row.id, user, label)

    @staticmethod
    def _insert_key(connection: sa.Connection, user_id: int, user: str, label: str) -> NewKey:
        if len(label) > 256:
            raise ValueError("a key label is at most 256 characters")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        connection.execute(api_keys.insert().values(
            key_id=key_id, user_id=user_id, secret_hash=_hash(secret), label=label, created_at=time.time(),
        ))
        return NewKey(key=f"{KEY_PREFIX}{key_id}_{secret}", key_id=key_id, user=user, label=label)

    def users(self) -> list[dict[str, Any]]:
        stmt = sa.select(users.c.name, users.c.is_admin, users.c.created_at, users.c.disabled).order_by(users.c.name)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def disable_user(self, name: str) -> None:
        """Disable a user and revoke all their keys (their runs and memberships stay)."""
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(users.c.id).where(users.c.name == name)).first()
            if row is None:
                raise AuthError(f"no user {name!r}")
            connection.execute(users.update().where(users.c.id == row.id).values(disabled=True))
            connection.execute(api_keys.update().where(api_keys.c.user_id == row.id, api_keys.c.revoked_at.is_(None))
                               .values(revoked_at=time.time()))
        self.revision += 1

    def keys(self, user: str | None = None) -> list[dict[str, Any]]:
        """Keys (never their secrets): all, or one user's."""
        stmt = (sa.select(api_keys.c.key_id, users.c.name.label("user"), api_keys.c.label, api_keys.c.created_at,
                          api_keys.c.last_used_at, api_keys.c.revoked_at)
                .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
                .order_by(api_keys.c.created_at))
        if user is not None:
            stmt = stmt.where(users.c.name == user)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def revoke_key(self, key_id: str, *, owner: str | None = None) -> None:
        """Revoke a key (``owner``: only if it is that user's); ``AuthError`` if there is no such key."""
        with self.engine.begin() as connection:
            stmt = sa.select(api_keys.c.id).select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
            stmt = stmt.where(api_keys.c.key_id == key_id)
            if owner is not None:
                stmt = stmt.where(users.c.name == owner)
            row = connection.execute(stmt).first()
            if row is None:
                raise AuthError(f"no key {key_id!r}" + (f" of user {owner!r}" if owner else ""))
            connection.execute(api_keys.update().where(api_keys.c.id == row.id, api_keys.c.revoked_at.is_(None))
                               .values(revoked_at=time.time()))
        self.revision += 1

    def authenticate(self, key: str) -> tuple[Principal | None, str]:
        """The key's owner, or None and why not."""
        principal, reason, _ = self.authenticate_for(key, None)
        return principal, reason

    def authenticate_for(self, key: str, project: str | None) -> tuple[Principal | None, str, tuple[bool, str | None]]:
        """``authenticate`` and, for ``project``, ``role`` (what the principal's ``role`` would
        answer; (False, None) without a project or a principal): one statement, as each request
        needs both."""
        parts = _split_key(key)
        if parts is None:
            return None, f"malformed API key: keys look like {KEY_PREFIX}<id>_<secret>", (False, None)
        key_id, secret = parts
        with self.engine.connect() as connection:
            if project is None:
                row = connection.execute(_KEY_OWNER, {"b_key_id": key_id}).first()
            else:
                row = connection.execute(_KEY_OWNER_ROLE, {"b_key_id": key_id, "b_project": project}).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            return None, "invalid API key", (False, None)
        if row.revoked_at is not None:
            return None, f"API key {key_id} was revoked", (False, None)
        if row.disabled:
            return None, f"user {row.name!r} is disabled", (False, None)
        principal = Principal(user_id=row.id, name=row.name, is_admin=row.is_admin, key_id=key_id)
        if project is None:
            return principal, "", (False, None)
        exists = row.project_id is not None
        return principal, "", (exists, "admin" if principal.is_admin else row.role if exists else None)

    def touch(self, key_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(api_keys.update().where(api_keys.c.key_id == key_id).values(last_used_at=time.time()))

    # ------------------------------------------------------------------ projects and members

    def role(self, principal: Principal, project: str) -> tuple[bool, str | None]:
        """(whether the project exists, the principal's role in it)."""
        with self.engine.connect() as connection:
            row = connection.execute(_PROJECT_ROLE, {"b_project": project, "b_user_id": principal.user_id}).first()
        if row is None:
            return False, "admin" if principal.is_admin else None
        return True, "admin" if principal.is_admin else row.role

    def create_project(self, project: str, owner: Principal) -> str:
        """Create ``project`` with ``owner`` as its admin; if someone created it meanwhile, the
        owner's role in it (or None)."""
        check_name("project", project)

        def owner_is_admin(connection: sa.Connection, project_id: int) -> None:  # committed with the project
            if owner.user_id is not None:
                connection.execute(project_members.insert().values(
                    project_id=project_id, user_id=owner.user_id, role="admin"))

        _, created = self.store.add_project(project, owner_is_admin)
        if not created:  # a concurrent first upload won
            return self.role(owner, project)[1]  # type: ignore[return-value]
        return "admin"

    def readable_projects(self, principal: Principal) -> set[str] | None:
        """Names of the projects the principal may read; None means all of them."""
        if principal.is_admin:
            return None
        stmt = sa.select(project_members.c.project_id).where(project_members.c.user_id == principal.user_id)
        with self.engine.connect() as connection:
            ids = [row.project_id for row in connection.execute(stmt)]
        return set(self.store.project_names(ids).values())

    def members(self, project: str) -> list[dict[str, str]]:
        project_id = self.store.project_id(project)
        if project_id is None:
            return []
        stmt = (sa.select(users.c.name.label("user"), project_members.c.role)
                .select_from(project_members.join(users, users.c.id == project_members.c.user_id))
                .where(project_members.c.project_id == project_id).order_by(users.c.name))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def set_member(self, project: str, user: str, role: str) -> None:
        """Give ``user`` ``role`` in ``project`` (creating the project if needed)."""
        check_role(role)
        check_name("project", project)
        with self.engine.connect() as connection:
            user_row = connection.execute(sa.select(users.c.id).where(users.c.name == user)).first()
        if user_row is None:
            raise AuthError(f"no user {user!r}")
        project_id = self.store.project_id(project)
        if project_id is None:
            project_id, _ = self.store.add_project(project)
        with self.engine.begin() as connection:
            where = (project_members.c.project_id == project_id, project_members.c.user_id == user_row.id)
            if connection.execute(sa.select(project_members.c.role).where(*where)).first():
                connection.execute(project_members.update().where(*where).values(role=role))
            else:
                connection.execute(project_members.insert().values(project_id=project_id, user_id=user_row.id, role=role))
        self.revision += 1

    def remove_member(self, project: str, user: str) -> None:
        project_id = self.store.project_id(project)
        with self.engine.begin() as connection:
            user_row = connection.execute(sa.select(users.c.id).where(users.c.name == user)).first()
            if project_id is None or user_row is None:
                raise AuthError(f"{user!r} is not a member of {project!r}")
            connection.execute(project_members.delete().where(
                project_members.c.project_id == project_id, project_members.c.user_id == user_row.id))
        self.revision += 1


def _key_digest(request: Request) -> bytes | None:
    """The sha256 of the request's API key as ``_authenticate`` reads it (any case of ``Bearer``,
    the key stripped): one entry per key however its header is spelled. None without one."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return hashlib.sha256(key.encode()).digest()


class Authorizer:
    """Checks each request's ``Authorization: Bearer <key>`` against ``Accounts``."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self._touched: dict[str, float] = {}
        self._guard = threading.Lock()
        self.admitted_for = ADMITTED_FOR
        # Passed checks by (the Authorization header's digest, project): when, at which
        # ``Accounts.revision``, who, with what role (``admits``).
        self._admitted: dict[tuple[bytes, str], tuple[float, int, Principal, str]] = {}

    def admits(self, request: Request, project: str, needed: str) -> bool:
        """Whether the request's key passed the check for ``project`` with at least ``needed``
        within ``admitted_for`` seconds (``ADMITTED_FOR``), with no change to access made through this server since:
        then the request is admitted without the database (no lookups, no trip to the thread pool,
        on every upload of an online run), else ``check`` decides. Only passed checks are
        remembered; a key whose last use is due to be written goes through ``check``."""
        digest = _key_digest(request)
        entry = self._admitted.get((digest, project)) if digest is not None else None
        if entry is None:
            return False
        at, revision, principal, role = entry
        now = time.monotonic()
        if now - at >= self.admitted_for or revision != self.accounts.revision or not role_at_least(role, needed):
            return False
        assert principal.key_id is not None  # a principal of a key
        if now - self._touched.get(principal.key_id, -LAST_USED_EVERY) >= LAST_USED_EVERY:
            return False
        request.state.principal = principal
        return True

    def _admit(self, request: Request, project: str, revision: int, principal: Principal, role: str) -> None:
        """Remember a passed check (``admits``), as of ``revision`` (read before its lookups)."""
        digest = _key_digest(request)
        if digest is None:
            return
        now = time.monotonic()
        if len(self._admitted) >= ADMITTED_MAX:  # the expired go first; if none has, the oldest half
            kept = [(at_key, entry) for at_key, entry in self._admitted.items() if now - entry[0] < self.admitted_for]
            if len(kept) >= ADMITTED_MAX:
                kept.sort(key=lambda item: item[1][0])
                kept = kept[len(kept) // 2:]
            self._admitted = dict(kept)
        self._admitted[(digest, project)] = (now, revision, principal, role)

    def principal(self, request: Request) -> Principal:
        """The request's sender; 401 when the key is missing, malformed, wrong or revoked."""
        return self._authenticate(request, None)[0]

    def _authenticate(self, request: Request, project: str | None) -> tuple[Principal, tuple[bool, str | None] | None]:
        """``principal``, and with ``project`` the principal's ``Accounts.role`` there, looked up
        together on a request's first check (None: look it up)."""
        cached = getattr(request.state, "principal", None)
        if cached is not None:
            return cached, None
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            self._unauthorized("missing API key: send 'Authorization: Bearer <key>' (or run `tracklet login`)")
        if scheme.lower() != "bearer" or not key.strip():
            self._unauthorized("the Authorization header must be 'Bearer <API key>'")
        principal, reason, access = self.accounts.authenticate_for(key.strip(), project)
        if principal is None:
            self._unauthorized(reason)
        assert principal is not None and principal.key_id is not None
        self._note_use(principal.key_id)
        request.state.principal = principal
        return principal, access if project is not None else None

    def _note_use(self, key_id: str) -> None:
        now = time.monotonic()
        with self._guard:
            if now - self._touched.get(key_id, -LAST_USED_EVERY) < LAST_USED_EVERY:
                return
            self._touched[key_id] = now
        self.accounts.touch(key_id)

    @staticmethod
    def _unauthorized(detail: str) -> None:
        raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})

    def check(self, request: Request, project: str, needed: str, *, create: bool = False,
              missing_ok: bool | None = None) -> Principal:
        """The sender, if they hold ``needed`` on ``project``; 403 naming ``needed`` otherwise. A
        project that doesn't exist yet may be read by anyone (there is nothing in it; also any
        check with ``missing_ok``) and, with ``create``, is created for a write, with the sender
        as its admin (an upload)."""
        revision = self.accounts.revision
        principal, access = self._authenticate(request, project)
        check_name("project", project)
        exists, role = access if access is not None else self.accounts.role(principal, project)
        if not exists:
            if needed == "read" if missing_ok is None else missing_ok:  # nothing to see: 404 (or offset 0)
                return principal
            if create:
                role = self.accounts.create_project(project, principal)
        if not role_at_least(role, needed):
            raise HTTPException(
                status_code=403,
                detail=f"user {principal.name!r} needs {needed} access to project {project!r}"
                + (f" (has {role})" if role else " (not a member; a project admin can add them)"),
            )
        if exists and role is not None:
            self._admit(request, project, revision, principal, role)
        return principal
