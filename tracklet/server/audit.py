"""The audit log: one event for every mutating call of the server's API, whoever made it and
however it ended (docs/audit.md).

Nothing has to remember to audit: ``AuditMiddleware`` wraps the whole application and, for every
request that matched a route with a POST, PUT, PATCH or DELETE method (but the routine calls of
``ROUTINE`` routes that changed nothing: a sweep agent's lease renewal), writes exactly one row to
``audit_events`` (``schema.py``) before the response's first byte leaves, so a client that saw the
answer can read the event. The event says who (the user and API key ``require_access``
authenticated, or none on a 401), what (the route's name as ``action``, the path below
``/api/v1/`` as ``target``, the ``project``), when, from where (the client's address), and the
outcome (the status, and ``ok``/``denied``/``rejected``/``error``). A route may add detail or a
better target with ``note(request, ...)``.

Every route's change writes its event *in* the change's own transaction, through one mechanism,
a request-scoped unit of work (``install_unit_of_work``): while a mutating request's route runs
(``in_route``, a dependency after the access guard, arms it), the first transaction of the
server's database that writes (INSERT, UPDATE, DELETE) carries the request's event, inserted by a
``commit`` hook on the engine just before its COMMIT, as answered with the route's success status.
The event then commits with the change or not at all: a failing insert rolls the change back. A
route whose change is one transaction may also write the event itself (``record_in``, with its own
status: the model registry's move of a protected alias answers 409). The middleware writes nothing
more for such a request; a request that changed nothing in the database (refused, or a change of
files only: an upload's bytes) gets its event from the middleware, with the status answered.

**Changes that are files** (record log bytes, run files, artifact blobs, packs and upload parts,
artifact versions on a SQLite server: every mutating route but those in ``DATABASE_ONLY``) cannot
join a transaction, so such a request first commits an *intent* (``audit_intents``: the event it
is about to be, owned by this process) before its route changes anything (``in_route``), and
whatever writes the request's event (the unit of work's commit hook, or the middleware) deletes
the intent in the event's own transaction. A process killed between the change and its event
leaves the intent: a server starting over that database, and every server's periodic pass, turns
the intents of processes that died (``AuditLog.recover``) into events whose outcome is
``unknown`` (status 0): the change was about to be made and may have been. No mutation lands
without a committed trace in the database.

The table is append-only: this module only inserts, and triggers (migration ``s0004``) refuse
UPDATE, DELETE (and TRUNCATE on PostgreSQL) on both backends. ``AuditLog.query`` filters it (by
actor, action, project, target prefix, outcome and time), oldest or newest first by time (ties by
id), with an event's id as the pagination cursor; each filter has an index ending in ``(time, id)``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracklet.core.processes import pid_alive
from tracklet.errors import AuditUnavailable
from tracklet.server import one_hop
from tracklet.server.schema import audit_events, audit_intents, migrate

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1/"
MAX_PAGE = 10_000
SCAN_WINDOW = 20_000  # events a target-prefix query reads in order before it asks the prefix's index
# Above every character a target can hold: ``target >= p AND target < p + TOP`` is a prefix range an
# index serves on both backends (the column compares by code point: schema.py).
_TOP = "\U0010ffff"
_COLUMNS = ("id", "time", "actor", "key_id", "action", "method", "target", "project", "client", "status",
            "outcome", "detail")
# Mutating routes whose every change is a row of the server's database, so their event commits with
# it (the unit of work) and they need no intent; and two POSTs that only read. Every other mutating
# route, a route added later included, commits an intent before it runs (see the module docstring).
DATABASE_ONLY = frozenset({
    "create_automation", "remove_automation", "create_key", "revoke_key", "create_user", "disable_user",
    "set_member", "remove_member", "missing_blobs", "missing_chunks",
    "create_report", "preview", "delete_report", "save_report", "freeze_report", "publish_report", "revert_report",
    "create_token", "revoke_token",
    "create_sweep", "control", "heartbeat", "next_trial", "release", "tell",
    "link", "set_alias", "remove_alias", "save_aliases", "protect", "save_card", "set_registry_member",
    "remove_registry_member",
    "review",
    # A shared run's primary claim (primaries.py) is one row.
    "claim_primary",
    # OTLP spans are rows only (no blob, no file); the span writer's transaction carries the event.
    "receive_traces",
})
# Routine calls: state-preserving requests that clients repeat at a high rate (a sweep agent's
# lease renewal, once a second per agent: 64 agents wrote 5.5M events a day; its poll for the next
# trial of a paused or full sweep, answered "wait", at its poll interval). A request of one of these
# routes writes an event only when it did not end ok (denied, rejected or failed: always audited),
# or when its code said it changed state (``changed``: a lease granted, lapsed leases failed, a
# lease found lost, a trial the pruner stopped). Every other mutating route writes its event
# whatever it did. Each is a ``DATABASE_ONLY`` route: it commits no intent (an intent would become
# an event of its own).
ROUTINE = frozenset({"heartbeat", "next_trial"})
UNKNOWN = "unknown"  # the outcome of a recovered intent: its process died before the answer
INTENT_LAPSE = 6 * 3600.0  # an intent this old whose owner can't be checked (another host) is recovered
assert ROUTINE <= DATABASE_ONLY, "a routine route commits no intent"
# A test hook: a server process with TRACKLET_TEST_AUDIT_KILL=<action> kills itself (SIGKILL) just
# before it would write the event of a request of that route: after its change, before its outcome.
_KILL_BEFORE_OUTCOME = os.environ.get("TRACKLET_TEST_AUDIT_KILL") or None


def outcome_of(status: int) -> str:
    if status == 0:
        return UNKNOWN
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return "rejected" if status < 500 else "error"


def changed(what: str, **detail: Any) -> None:
    """Say that the routine request being handled (its route in ``ROUTINE``) changed state, so it
    is audited: ``what`` (e.g. "trial pruned") goes in its event's detail as ``change`` (a later
    call's replaces it), with ``detail`` (merged). Called by the request's own code, on the thread
    its route runs on: before the transaction that makes the change commits, so that transaction
    carries the event (the unit of work); nothing outside a request. On a request of any other
    route it only adds to the event's detail."""
    scope = _REQUEST_SCOPE.get()
    if scope is None:
        return
    state = scope.setdefault("state", {})
    state["audit_changed"] = True
    merged = dict(state.get("audit_detail") or {})
    merged.update(detail, change=what)
    state["audit_detail"] = merged


def note(request: Any, *, target: str | None = None, **detail: Any) -> None:
    """Add to the audit event of the request being handled: a ``target`` that says better than
    its path what it acted on, and JSON-able ``detail`` (e.g. the version a commit made)."""
    state = request.state
    if target is not None:
        state.audit_target = target
    if detail:
        merged = dict(getattr(state, "audit_detail", None) or {})
        merged.update(detail)
        state.audit_detail = merged


@dataclasses.dataclass(frozen=True)
class AuditQuery:
    """Filters of ``AuditLog.query``: each one given narrows the events (all must hold)."""

    actor: str | None = None
    action: str | None = None
    project: str | None = None
    target_prefix: str | None = None
    outcome: str | None = None
    since: float | None = None  # time >= since
    until: float | None = None  # time < until
    after: int | None = None  # the cursor: an event's id; the page starts after it (in the query's order)
    newest_first: bool = False
    limit: int = 100


class AuditLog:
    """Writes and reads ``audit_events`` in the store's database (the server's tables)."""

    def __init__(self, engine: sa.Engine, *, scan_window: int = SCAN_WINDOW) -> None:
        self.engine = engine
        self.scan_window = scan_window
        migrate(engine)

    def record(self, *, intent: int | None = None, **event: Any) -> int:
        """Append one event (the ``audit_events`` columns but ``id``); its id. ``intent``: the
        request's intent (``intend``), deleted in the same transaction."""
        with self.engine.begin() as connection:
            event_id = _insert(connection, event)
            if intent is not None:
                _forget(connection, intent)
            return event_id

    def intend(self, event: Mapping[str, Any]) -> int:
        """Commit the intent of a request about to change files: ``event`` (its audit event as
        far as known, owned by this process) stays until the event is written (``record``, or
        ``record_in``/the unit of work, which delete it) or ``recover`` turns it into one."""
        body = {name: event.get(name) for name in _COLUMNS if name not in ("id", "status", "outcome")}
        with self.engine.begin() as connection:
            key = connection.execute(_INSERT_INTENT, {
                "time": body.get("time") or time.time(), "owner": process_owner(),
                "event": json.dumps(body, default=str, separators=(",", ":"))}).inserted_primary_key
        assert key is not None
        return int(key[0])

    def recover(self, *, lapse: float = INTENT_LAPSE) -> int:
        """Turn the intents left by server processes that died (on this host: their process is
        gone; on another host: older than ``lapse`` seconds) into audit events with outcome
        ``unknown`` and status 0, each in the transaction that deletes its intent: the change was
        about to be made when its process stopped, and may have been. How many were recovered."""
        now = time.time()
        with self.engine.begin() as connection:
            select = sa.select(audit_intents).order_by(audit_intents.c.id)
            if connection.dialect.name == "postgresql":
                select = select.with_for_update(skip_locked=True)  # a live request is deleting it
            rows = connection.execute(select).all()
            dead = [row for row in rows if (alive := owner_alive(row.owner)) is False
                    or (alive is None and row.time < now - lapse)]
            for row in dead:
                event = json.loads(row.event)
                detail = dict(event.get("detail") or {})
                detail.update(recovered_intent=row.id, intent_owner=row.owner, recovered_at=now,
                              reason="the server process stopped between the change and its outcome: "
                                     "the change may have been made")
                _insert(connection, {**event, "time": row.time, "status": 0, "outcome": UNKNOWN, "detail": detail})
            if dead:
                connection.execute(audit_intents.delete().where(audit_intents.c.id.in_([row.id for row in dead])))
        return len(dead)

    def committed(self, event_ids: list[int]) -> bool:
        """Whether any of ``event_ids`` (written by ``record_in``) is in the table: its
        transaction committed."""
        with self.engine.connect() as connection:
            return connection.execute(_ANY_OF, {"ids": event_ids}).first() is not None

    def query(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Events matching ``query``, at most ``query.limit``, in time order (ties by id; ``newest_first``:
        the reverse), after the event ``query.after`` (the cursor) in that order.

        Each equality filter (actor, action, project) has an index ending in ``(time, id)``, and
        time alone one on ``(time, id)``: a page, time range or not, is read in order from one
        index. A target prefix is a range on its own index, whose matches would have to be
        sorted (slow when it matches much of the log); so a query with one first reads the next
        ``scan_window`` events in order (a broad prefix fills its page there) and asks the
        prefix's index only for what that leaves (a narrow prefix: few matches to sort)."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}; got {query.limit}")
        c = audit_events.c
        where: list[sa.ColumnElement[bool]] = []
        for column, value in ((c.actor, query.actor), (c.action, query.action), (c.project, query.project),
                              (c.outcome, query.outcome)):
            if value is not None:
                where.append(column == value)
        if query.since is not None:
            where.append(c.time >= query.since)
        if query.until is not None:
            where.append(c.time < query.until)
        key = sa.tuple_(c.time, c.id)
        order = (c.time.desc(), c.id.desc()) if query.newest_first else (c.time, c.id)

        def beyond(position: tuple[float, int] | None) -> list[sa.ColumnElement[bool]]:
            if position is None:
                return []
            return [key < sa.tuple_(*position)] if query.newest_first else [key > sa.tuple_(*position)]

        def page(conditions: list[sa.ColumnElement[bool]], limit: int) -> list[dict[str, Any]]:
            stmt = sa.select(*[c[name] for name in _COLUMNS]).where(*conditions).order_by(*order).limit(limit)
            return [dict(row) for row in connection.execute(stmt).mappings()]

        with self.engine.connect() as connection:
            cursor: tuple[float, int] | None = None
            if query.after is not None:
                found = connection.execute(sa.select(c.time).where(c.id == query.after)).scalar()
                if found is None:
                    raise ValueError(f"no audit event {query.after} to continue after")
                cursor = (found, query.after)
            if not query.target_prefix:
                rows = page([*beyond(cursor), *where], query.limit)
            else:
                edge_row = connection.execute(sa.select(c.time, c.id).where(*beyond(cursor), *where).order_by(*order)
                                              .offset(self.scan_window - 1).limit(1)).first()
                if edge_row is None:  # fewer events than the window are left: read them all in order
                    rows = page([*beyond(cursor), *where, *self._prefix(query.target_prefix, indexed=False)],
                                query.limit)
                else:
                    edge = (edge_row.time, edge_row.id)
                    within = [key >= sa.tuple_(*edge)] if query.newest_first else [key <= sa.tuple_(*edge)]
                    rows = page([*beyond(cursor), *within, *where, *self._prefix(query.target_prefix, indexed=False)],
                                query.limit)
                    if len(rows) < query.limit:
                        rows += page([*beyond(edge), *where, *self._prefix(query.target_prefix, indexed=True)],
                                     query.limit - len(rows))
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        return rows

    def _prefix(self, prefix: str, *, indexed: bool) -> list[sa.ColumnElement[bool]]:
        """``target`` starts with ``prefix``, as a range; not ``indexed``: written so that SQLite
        uses no index for it (``target || ''``) and reads the events it is given in order instead."""
        target: sa.ColumnElement[Any] = audit_events.c.target  # compared by code point (schema.py)
        if not indexed and self.engine.dialect.name == "sqlite":
            target = audit_events.c.target.concat("")
        return [target >= prefix, target < prefix + _TOP]

    def iterate(self, query: AuditQuery, page: int = 5_000) -> Iterator[dict[str, Any]]:
        """Every event matching ``query`` (its ``limit`` is the page size), page after page."""
        query = dataclasses.replace(query, limit=min(page, MAX_PAGE))
        while True:
            rows = self.query(query)
            yield from rows
            if len(rows) < query.limit:
                return
            query = dataclasses.replace(query, after=rows[-1]["id"])


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), which tells a process
    from a later one that got its pid; None where there is no ``/proc`` or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[1].split()[19].decode()  # field 22, counted after the command's ")"


_owner: tuple[int, str] | None = None


def process_owner() -> str:
    """This process, as the owner of its intents: ``host:pid:start``."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"{socket.gethostname()[:160]}:{pid}:{_proc_start(pid) or '?'}")
    return _owner[1]


def owner_alive(owner: str) -> bool | None:
    """Whether the process ``owner`` (``process_owner``) still runs: None when it is on another
    host (nothing here can tell)."""
    parts = owner.rsplit(":", 2)
    host, pid_text, start = parts if len(parts) == 3 else ("", "", "")
    if host != socket.gethostname()[:160] or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    now = _proc_start(pid)
    if now is not None:
        return start == "?" or now == start
    if os.path.isdir("/proc"):
        return False
    return pid_alive(pid)


def _forget(connection: sa.Connection, intent: int) -> None:
    connection.execute(_FORGET_INTENT, {"intent_id": intent})


def _kill_point(action: Any) -> None:
    """The test hook (``TRACKLET_TEST_AUDIT_KILL``): die as a crash would, after the change."""
    if _KILL_BEFORE_OUTCOME is not None and action == _KILL_BEFORE_OUTCOME:
        os.kill(os.getpid(), signal.SIGKILL)


def _claimed_key_id(headers: Mapping[str, str]) -> str | None:
    """The key id an unauthenticated request presented (never its secret), if well formed."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith("tlk_"):
        return None
    key_id, sep, _ = key[4:].partition("_")
    return key_id[:32] if sep and key_id else None


# Built once: executed with the row as its parameters, it hits SQLAlchemy's compiled cache without
# building an expression or a cache key per event or intent.
_INSERT_EVENT = audit_events.insert()
_INSERT_INTENT = audit_intents.insert()
_FORGET_INTENT = audit_intents.delete().where(audit_intents.c.id == sa.bindparam("intent_id"))
_ANY_OF = sa.select(audit_events.c.id).where(audit_events.c.id.in_(sa.bindparam("ids", expanding=True))).limit(1)


def _insert(connection: sa.Connection, event: Mapping[str, Any]) -> int:
    row = {name: event.get(name) for name in _COLUMNS if name != "id"}
    row["time"] = row["time"] if row["time"] is not None else time.time()
    row["target"] = str(row["target"] or "")[:1024]
    for name, size in (("actor", 128), ("key_id", 32), ("action", 128), ("project", 128), ("client", 64)):
        if row[name] is not None:
            row[name] = str(row[name])[:size]
    if row["detail"] is not None and not isinstance(row["detail"], str):
        row["detail"] = json.dumps(row["detail"], default=str, separators=(",", ":"))
    key = connection.execute(_INSERT_EVENT, row).inserted_primary_key
    assert key is not None
    return int(key[0])


def record_in(connection: sa.Connection, request: Any, *, status: int = 200) -> int | None:
    """Write the audit event of ``request`` (being handled) through ``connection``, the change's
    own transaction, as answered with ``status`` (the answer once it commits); what ``note``
    added so far goes in. Once per request: a later transaction of the same request writes
    nothing when an earlier one's event committed. None if the request is not audited."""
    return _record_scope(connection, request.scope, status)


def _record_scope(connection: sa.Connection, scope: Scope, status: int) -> int | None:
    if scope.get("type") != "http" or scope.get("method") not in MUTATING:
        return None
    state = scope.setdefault("state", {})
    written: list[int] = state.setdefault("audit_in_tx", [])
    if written:
        pending = connection.info.get(_PENDING)
        if pending is not None and pending[1] in written:  # this transaction carries the event already
            return None
        if connection.execute(_ANY_OF, {"ids": written}).first() is not None:  # an earlier one committed it
            return None
    event = AuditMiddleware._event(scope, status)
    if event is None:
        return None
    _kill_point(event["action"])
    event_id = _insert(connection, event)
    intent = state.get("audit_intent")
    if intent is not None:  # the intent ends with the event, in its transaction
        _forget(connection, intent)
    written.append(event_id)
    connection.info[_PENDING] = (written, event_id)  # until its transaction ends: see _lost
    return event_id


# The mutating request whose route is running (set by the middleware; threads the route runs on
# copy it): the unit of work the engine's commit hook joins the request's audit event to.
_REQUEST_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("audit_scope", default=None)
_WROTE = "tracklet_audit_wrote"  # Connection.info: this transaction wrote (not only to audit_events)
_PENDING = "tracklet_audit_pending"  # Connection.info: (the request's written ids, the id this transaction inserted)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT", "WITH")


async def in_route(request: Request) -> None:
    """A dependency, after the access guard: from here on the request's writes to the server's
    database carry its audit event (the guard's own, such as creating a project on its first
    upload, are before the route's change and audited by the middleware, with the answer). A
    route not in ``DATABASE_ONLY`` first commits its intent (the module docstring). On a route
    that runs its guards' steps in its own worker call (``one_hop.py``) this is one of them."""
    if one_hop.defer(request, functools.partial(arm, request)):
        one_hop.after(request, functools.partial(record_answer, request))
        return
    if getattr(getattr(request.scope.get("route"), "endpoint", None), _ARMS_ITSELF, False):
        return  # the route calls ``arm`` in its worker call, before its change (``arms_itself``)
    intent = _intent(request)
    if intent is not None:
        log, event = intent
        request.state.audit_intent = await anyio.to_thread.run_sync(log.intend, event)
    request.state.audit_armed = True


_ARMS_ITSELF = "__tracklet_arms_itself__"


def arms_itself(route: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an ``async`` route function that receives a body and then makes one worker call for
    its change (a pack upload): ``in_route`` leaves its intent and arming to that call, which must
    run ``arm(request)`` before it changes anything. The intent is still committed before the
    change, in the same trip to the thread pool instead of one of its own (a pack upload made two)."""
    setattr(route, _ARMS_ITSELF, True)
    return route


def armed(request: Request, change: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``change(*args, **kwargs)`` after ``arm(request)``: the worker call of a route marked
    ``arms_itself``, its audit intent committed first."""
    arm(request)
    return change(*args, **kwargs)


def arm(request: Request) -> None:
    """``in_route``'s work, blocking: commit the request's intent if it needs one, then arm."""
    intent = _intent(request)
    if intent is not None:
        log, event = intent
        request.state.audit_intent = log.intend(event)
    request.state.audit_armed = True


def record_answer(request: Request, result: Any) -> None:
    """In a route's worker call, once it returned ``result`` (``one_hop.after``): the audit event
    of a mutating request whose route wrote none in its own transaction (a refusal it answered,
    a change of files only, or nothing changed), as answered with the route's success status or
    the status of the response it returned. Written here, in the same worker call, instead of by
    the middleware in one more; the middleware then writes nothing (the event is written, as
    when a transaction carried it). A route that takes FastAPI's ``Response`` parameter (it may
    set the status) is left to the middleware."""
    scope = request.scope
    state: dict[str, Any] = scope.get("state") or {}
    log: AuditLog | None = state.get("audit_log")
    route = scope.get("route")
    if (log is None or scope.get("method") not in MUTATING or not state.get("audit_armed")
            or state.get("audit_in_tx") or route is None or getattr(route.dependant, "response_param_name", None)):
        return
    status = result.status_code if isinstance(result, Response) else int(getattr(route, "status_code", None) or 200)
    event = AuditMiddleware._event(scope, status)
    if event is None:
        return
    _kill_point(event["action"])
    event_id = log.record(intent=state.get("audit_intent"), **event)
    state.setdefault("audit_in_tx", []).append(event_id)


def _intent(request: Request) -> tuple[AuditLog, dict[str, Any]] | None:
    """The audit log and the intent a mutating request of a route not in ``DATABASE_ONLY``
    commits before its route runs; None when it needs none."""
    scope = request.scope
    log = (scope.get("state") or {}).get("audit_log")
    name = getattr(scope.get("route"), "name", None)
    if log is not None and scope.get("method") in MUTATING and name not in DATABASE_ONLY:
        event = AuditMiddleware._event(scope, 0)
        if event is not None:
            return log, event
    return None


def _armed() -> Scope | None:
    scope = _REQUEST_SCOPE.get()
    if scope is None or not (scope.get("state") or {}).get("audit_armed"):
        return None
    return scope


def _begin(connection: sa.Connection) -> None:
    """A new transaction: the connection's last one ended, committed unless ``_lost`` said otherwise."""
    connection.info.pop(_WROTE, None)
    connection.info.pop(_PENDING, None)


def _lost(connection: sa.Connection) -> None:
    """The transaction rolled back, or its COMMIT failed: the event it inserted is not written,
    so the request's ids no longer name it (the middleware then writes the event of the answer)."""
    connection.info.pop(_WROTE, None)
    pending = connection.info.pop(_PENDING, None)
    if pending is not None and pending[1] in pending[0]:
        pending[0].remove(pending[1])


def _error(context: Any) -> None:
    """A failed COMMIT (no statement: SQLAlchemy fires no rollback event after one)."""
    if context.connection is not None and context.statement is None:
        _lost(context.connection)


def _after_execute(connection: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                   executemany: bool) -> None:
    """Mark the transaction as a change once a statement changed a row (an UPDATE that matched
    nothing changed nothing: the route will likely answer 404, and its event says so)."""
    if _REQUEST_SCOPE.get() is None or _WROTE in connection.info:
        return
    head = statement.lstrip()[:80]
    if (head[:7].upper().startswith(_WRITES) and "audit_events" not in head and "audit_intents" not in head
            and getattr(cursor, "rowcount", -1) != 0):
        connection.info[_WROTE] = True


def _commit(connection: sa.Connection) -> None:
    """Just before a transaction's COMMIT: if it wrote, for a mutating request whose route runs, and
    the request's event is not written yet, insert it here (a failure rolls the change back)."""
    if not connection.info.pop(_WROTE, False):
        return
    scope = _armed()
    if scope is None:
        return
    route = scope.get("route")
    try:
        _record_scope(connection, scope, int(getattr(route, "status_code", None) or 200))
    except sa.exc.SQLAlchemyError as error:  # the transaction rolls back: nothing changed
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise AuditUnavailable(f"the change was not made: its audit event could not be written ({reason})") from error


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(error)})


def install_unit_of_work(app: FastAPI, engine: sa.Engine) -> None:
    """Make every writing transaction on ``engine`` (the server's database, which holds
    ``audit_events``) during a mutating request's route of ``app`` carry that request's audit
    event, once per request (the module docstring); a change whose event can't be written rolls
    back and answers 503."""
    app.add_exception_handler(AuditUnavailable, _unavailable)
    if sa.event.contains(engine, "commit", _commit):
        return
    sa.event.listen(engine, "begin", _begin)
    sa.event.listen(engine, "after_cursor_execute", _after_execute)
    sa.event.listen(engine, "commit", _commit)
    sa.event.listen(engine, "rollback", _lost)
    sa.event.listen(engine, "handle_error", _error)


class AuditMiddleware:
    """ASGI middleware writing one audit event per request that matched a mutating route (see the
    module docstring). Must wrap the router (``app.add_middleware``), so the route is known."""

    def __init__(self, app: ASGIApp, *, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        recorded = False

        async def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            (scope.get("state") or {}).pop("audit_armed", None)  # the route is done: its own writes are past
            event = self._event(scope, status)
            if event is None:
                return
            written = (scope.get("state") or {}).get("audit_in_tx")
            intent = (scope.get("state") or {}).get("audit_intent")
            # Written in the change's own transaction, which committed: a rollback or a failed
            # COMMIT takes its id out of the list (_lost). A 5xx asks the table all the same.
            if written and status < 500:
                return
            try:
                if written and await anyio.to_thread.run_sync(lambda: self.log.committed(written)):
                    return
                _kill_point(event["action"])
                await anyio.to_thread.run_sync(lambda: self.log.record(intent=intent, **event))
            except Exception as error:  # the mutation happened: answer it, and say loudly what is missing
                kept = " (its intent stays: a later pass records it as unknown)" if intent is not None else ""
                print(f"tracklet server: could not write the audit event {event!r}{kept}: {error!r}", file=sys.stderr)

        async def send_audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                await record(int(message["status"]))
            await send(message)

        scope.setdefault("state", {})["audit_log"] = self.log  # in_route's intents
        token = _REQUEST_SCOPE.set(scope)
        try:
            await self.app(scope, receive, send_audited)
        except BaseException:
            await record(500)  # an unhandled error: the server's error middleware answers 500
            raise
        finally:
            _REQUEST_SCOPE.reset(token)

    @staticmethod
    def _event(scope: Scope, status: int) -> dict[str, Any] | None:
        route = scope.get("route")
        if route is None:  # no route matched (404/405 from the router): nothing was acted on
            return None
        state: dict[str, Any] = scope.get("state") or {}
        if getattr(route, "name", None) in ROUTINE and 0 < status < 400 and not state.get("audit_changed"):
            return None  # a routine call that changed nothing (ROUTINE)
        principal = state.get("principal")
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
        path: str = scope.get("path", "")
        target = state.get("audit_target") or (path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path)
        detail = dict(state.get("audit_detail") or {})
        key_id = None
        if principal is not None:
            key_id = principal.key_id
        else:
            claimed = _claimed_key_id(headers)
            if claimed:
                detail["claimed_key_id"] = claimed
        client = scope.get("client")
        params = scope.get("path_params") or {}
        return {
            "time": time.time(),
            "actor": principal.name if principal is not None else None,
            "key_id": key_id,
            "action": state.get("audit_action") or getattr(route, "name", None) or path,
            "method": scope["method"],
            "target": target,
            "project": params.get("project"),
            "client": client[0] if client else None,
            "status": status,
            "outcome": outcome_of(status),
            "detail": detail or None,
        }
