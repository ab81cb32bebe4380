"""Registry roles: who may do what in one registry of the model registry (docs/registry.md).

Each user holds at most one role per registry, ordered ``viewer`` < ``member`` < ``admin``; a
server admin (and a ``--dev`` server's implicit user) is every registry's admin. The first user to
link into a new registry (no collections, no members) becomes its admin, as the first upload to a
project makes its uploader the project's admin. ``ACTIONS`` is the whole matrix: every registry route names
its action and ``RegistryRoles.role``/``allows`` decide; nothing else grants a registry right, but
for reviewing a promotion request, which the alias's protection decides: its approver role (admin
unless the protection names another) or a higher one, never the requester
(``ModelRegistry.review``, under the collection's lock).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracklet.registry.sql import REGISTRY_ROLES, role_at_least
from tracklet.server.auth import Principal
from tracklet.server.schema import hold_xact_lock, registry_members, users

# action -> the lowest registry role that may do it
ACTIONS: dict[str, str] = {
    "read": "viewer",  # collections, versions, a version, alias history, model cards, promotion requests
    "link": "member",  # link an artifact version into a collection (also needs `read` on its project)
    "move_alias": "member",  # point an alias at a version; a protected one opens a promotion request
    "remove_alias": "member",  # delete an alias (a protected one can't be removed by anyone)
    "edit_card": "member",  # save a model card revision
    # Remove a version from its collection (its aliases too, each in the history; the artifact
    # version stays). W&B's registry lets members unlink; a protected alias or a pending
    # promotion request still refuses it, whatever the role.
    "unlink": "member",
    "protect": "admin",  # protect an alias, change its approvals or webhook check, lift it
    "manage_members": "admin",  # give, change or take a registry role
    # Delete an artifact version this registry links (``DELETE .../artifacts/{name}/versions/vN
    # ?break_registry_links=true``), leaving its registry versions without files: the role of every
    # registry linking it that may unlink them, since unlinking and then deleting reaches the same
    # end; a protected alias or a pending promotion request refuses both, whatever the role
    # (routes_artifacts_write.py, ModelRegistry.guarded).
    "break_links": "member",
}


def check_registry_role(role: str) -> str:
    if role not in REGISTRY_ROLES:
        raise ValueError(f"registry role {role!r} is not one of {', '.join(REGISTRY_ROLES)}")
    return role


def role_allows(role: str | None, action: str) -> bool:
    """Whether ``role`` (None: no role) may do ``action`` (a key of ``ACTIONS``)."""
    return role_at_least(role, ACTIONS[action])


# A registry route's role lookup, built once (bound parameters: no expression or cache key per request).
_ROLE = sa.select(registry_members.c.role).where(registry_members.c.registry == sa.bindparam("b_registry"),
                                                 registry_members.c.user_id == sa.bindparam("b_user_id"))


class RegistryRoles:
    """``registry_members`` in the server's database (``engine``: the store's, migrated)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def role(self, principal: Principal, registry: str) -> str | None:
        if principal.is_admin:
            return "admin"
        with self.engine.connect() as connection:
            return connection.execute(_ROLE, {"b_registry": registry, "b_user_id": principal.user_id}).scalar()

    def roles(self, principal: Principal) -> dict[str, str] | None:
        """{registry: role} of the principal; None for a server admin (every registry's admin)."""
        if principal.is_admin:
            return None
        with self.engine.connect() as connection:
            return {row.registry: row.role for row in connection.execute(sa.select(
                registry_members.c.registry, registry_members.c.role).where(
                registry_members.c.user_id == principal.user_id))}

    def claim(self, principal: Principal, registry: str) -> str | None:
        """Make ``principal`` the admin of ``registry`` if it has no members yet (the caller knows
        it has no collections either: its first link); the principal's role afterwards."""
        if principal.is_admin or principal.user_id is None:
            return "admin" if principal.is_admin else None
        with self.engine.begin() as connection:
            hold_xact_lock(connection, "registry-claim", registry)  # two first links: one admin
            taken = connection.execute(sa.select(registry_members.c.user_id).where(
                registry_members.c.registry == registry).limit(1)).first()
            if taken is None:
                try:
                    with connection.begin_nested():
                        connection.execute(registry_members.insert().values(
                            registry=registry, user_id=principal.user_id, role="admin"))
                except sa.exc.IntegrityError:  # a concurrent first link won
                    pass
        return self.role(principal, registry)

    def members(self, registry: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(users.c.name.label("user"), registry_members.c.role)
                                      .join(users, users.c.id == registry_members.c.user_id)
                                      .where(registry_members.c.registry == registry).order_by(users.c.name))
            return [dict(row._mapping) for row in rows]

    def set_member(self, registry: str, user: str, role: str) -> None:
        """Give ``user`` ``role`` in ``registry``; ``LookupError`` if there is no such active user."""
        check_registry_role(role)
        with self.engine.begin() as connection:
            user_id = connection.execute(sa.select(users.c.id).where(users.c.name == user,
                                                                     users.c.disabled.is_(False))).scalar()
            if user_id is None:
                raise LookupError(f"no active user {user!r}")
            where = (registry_members.c.registry == registry, registry_members.c.user_id == user_id)
            if connection.execute(sa.select(registry_members.c.role).where(*where)).first() is not None:
                connection.execute(registry_members.update().where(*where).values(role=role))
            else:
                connection.execute(registry_members.insert().values(registry=registry, user_id=user_id, role=role))

    def remove_member(self, registry: str, user: str) -> bool:
        with self.engine.begin() as connection:
            user_id = connection.execute(sa.select(users.c.id).where(users.c.name == user)).scalar()
            if user_id is None:
                return False
            return bool(connection.execute(registry_members.delete().where(
                registry_members.c.registry == registry, registry_members.c.user_id == user_id)).rowcount)
