"""Who created each run on a server: the user behind the API key of the run's first upload.

The server records it (``record``) when an authenticated upload starts a run's record log (the
append at offset 0), from the key it authenticated: nothing the client sends names the user, so
a client cannot claim another's name. The first upload's user stays the creator; a later upload by
another member (a resumed run) changes nothing. A ``--dev`` server has no keys and records none.

``joined_fields`` reads them back, for the run routes' listings and for filters and sorts on ``user``. What a run without a row reads back as is
``RunUser``'s rule: a run uploaded before migration s0016, or to a server without keys, has no
verified user; a server without keys shows the user name the client recorded in the run's metadata
(``metadata.username``, the OS user as W&B's metadata has it), marked unverified.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tracklet.server.schema import run_creators, users
from tracklet.store import JoinedFields, JoinedSort


def record(engine: sa.Engine, project: str, run_id: str, user_id: int) -> None:
    """Record ``user_id`` as the creator of ``project/run_id`` unless a creator is recorded already
    (a run whose copy was lost and uploaded again keeps its first creator)."""
    name = sa.select(users.c.name).where(users.c.id == user_id).scalar_subquery()
    try:
        with engine.begin() as connection:
            connection.execute(run_creators.insert().values(project=project, run_id=run_id, user_id=user_id,
                                                            user_name=name, created_at=time.time()))
    except IntegrityError:
        pass  # recorded already


def joined_fields(project: str) -> JoinedFields:
    """The field ``user`` of ``project``'s runs on a server with keys, as the store's
    ``project_joined_fields`` takes it: the recorded creator's name, "" for a run without one.

    The store LEFT OUTER JOINs ``run_creators`` once per query on its primary key (project, run_id),
    which holds the user's name (migration s0020), so a listing reads each run's creator in the same
    query, and a filter or sort on ``user`` costs a join, never a subquery per run. A page sorted by
    ``user`` reads the credited runs in the order of ``ix_run_creators_project_user_run``
    (project, user_name, run_id), then the runs without a creator (``JoinedSort``)."""
    on_project = run_creators.c.project == project

    def join(runs_from: sa.FromClause, run_id: sa.ColumnElement[str]) -> sa.FromClause:
        return (runs_from
                .outerjoin(run_creators, sa.and_(on_project, run_creators.c.run_id == run_id))
                .outerjoin(users, users.c.id == run_creators.c.user_id))

    def credited(runs_from: sa.FromClause, run_id: sa.ColumnElement[str]) -> sa.FromClause:
        return (run_creators.join(runs_from, sa.and_(on_project, run_creators.c.run_id == run_id))
                .outerjoin(users, users.c.id == run_creators.c.user_id))

    sort = JoinedSort(join=credited, key=run_creators.c.user_name, run_id=run_creators.c.run_id,
                      missing=run_creators.c.run_id.is_(None), rows=on_project)
    # The listed and filtered name is the users table's (a filter on the copy in run_creators let
    # PostgreSQL's estimates turn "the newest 10 of one user" into a hash join of every run).
    return JoinedFields(join=join, columns={"user": sa.func.coalesce(users.c.name, "")}, sorts={"user": sort})


def run_user(verified_name: str | None, claimed_name: str | None, *, keys: bool) -> dict[str, Any] | None:
    """A run's ``user`` as the run routes give it: ``{"name", "verified"}``, or None.

    The recorded creator is verified. Without one, a server with keys gives None (a name the client
    recorded proves nothing there, and a run from before s0016 has no creator), while a server
    without keys (``--dev``, which authenticates nobody) gives ``claimed_name``, the OS user name
    the client recorded (``metadata.username``), unverified."""
    if verified_name is not None:
        return {"name": verified_name, "verified": True}
    if keys:
        return None
    if isinstance(claimed_name, str) and claimed_name:
        return {"name": claimed_name, "verified": False}
    return None
