"""Server events: what happened, for automations (docs/audit.md#events).

``emit`` is the one call the server makes after a mutation::

    emit(connection_or_engine, kind, subject, payload, project=..., actor=..., dedupe=None) -> int | None

It appends a row to the ``event_outbox`` table. Given the ``sa.Connection`` of the mutation's own
transaction, the event commits (or rolls back) with it: an event is never lost nor sent for a
change that did not happen. Given an ``sa.Engine`` (the mutation committed elsewhere, e.g. to
files), it writes in a transaction of its own right after. ``dedupe`` (a string unique per
event) makes emitting idempotent: a second ``emit`` with the same key does nothing and returns
None, which is how events derived from ingested data (a run finished, an alert, a threshold
crossed) happen once however often a run is indexed, across restarts and server processes. It
then wakes the automations worker of this process (``automations.py``), which makes one delivery
per matching rule, persisted before any is sent.

The audit log is apart: every mutating API call is audited by ``audit.AuditMiddleware`` whether
or not it emits an event.

Event kinds (``KINDS``; the subject in parentheses):

- ``artifact.version`` (``project/name:vN``): a new artifact version was committed; payload
  ``{"name", "version", "digest", "aliases", "reused": false}``.
- ``alias.moved`` (``project/name:alias``): an alias was added or moved; payload
  ``{"name", "alias", "version", "previous"}`` (``previous``: None when added).
- ``artifact.deleted`` (``project/name:vN``): a version was deleted (``DELETE .../versions/vN``);
  payload ``{"name", "version", "digest", "aliases_dropped"}``.
- ``alias.removed`` (``project/name:alias``): a custom alias was taken off a version (``remove`` of
  ``POST .../versions/vN/aliases``, or dropped with its deleted version); payload ``{"name",
  "alias", "previous", "deleted"}`` (``previous``: the version it named; ``deleted``: whether
  that version was deleted). A registry collection's alias removal stays an ``alias.moved`` with
  ``to_version`` None (below).
- ``run.finished`` / ``run.failed`` (``project/run_id``): the server indexed the run's exit;
  payload ``{"run_id", "state", "exit_code", "summary"}``.
- ``run.crashed`` (``project/run_id``): the heartbeat sweep found the run silent past the lapse
  without an exit; the same payload (``exit_code`` None, the summary its history implies).
- ``run.alert`` (``project/run_id``): the run called ``run.alert(title, text, level)``; payload
  ``{"run_id", "seq", "title", "text", "level", "time"}``.
- ``metric.threshold`` (``project/run_id``): a run's summary metric crossed a rule's threshold
  (rules of this kind say ``metric``, ``op`` and ``value``); payload ``{"run_id", "metric",
  "value", "op", "threshold", "automation_id"}``.
- ``version.linked`` (``registry/collection:vN``): a version was linked into a model registry
  collection; payload ``{"registry", "collection", "version", "actor", "source", "digest"}``.
- ``alias.moved`` is also emitted for a registry collection's alias (subject
  ``registry/collection:alias``; payload ``{"id", "registry", "collection", "alias",
  "from_version", "to_version", "actor", "at", "reason", "request_id"}``).
- ``promotion.requested`` / ``promotion.decided`` (``registry/collection:alias``): a promotion
  request of a protected registry alias was opened / approved or rejected; payload ``{"id",
  "registry", "collection", "alias", "to_version", "actor", ...}`` plus ``reason`` or
  ``state`` and ``comment``. The registry (``ModelRegistry(on_event=registry_event)``) emits
  these inside the transaction of the change.
- ``report.published`` (``project/reports/id:vN``): a report's version was published (it is
  immutable from then on; docs/reports.md); payload ``{"id", "project", "title", "version",
  "actor"}``, in the publishing transaction.
- ``promotion.check`` is never emitted: a rule of this kind is only a protected alias's webhook
  check, called by the server before an approval moves the alias (``registry_checks.py``).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa

from tracklet.server.schema import event_outbox

KINDS = ("artifact.version", "alias.moved", "artifact.deleted", "alias.removed", "run.finished", "run.failed", "run.crashed", "run.alert", "metric.threshold",
         "promotion.requested", "promotion.decided", "version.linked", "promotion.check",
         "report.published")

class Wakeup(Protocol):
    def set(self) -> None: ...


_listeners: weakref.WeakSet[Wakeup] = weakref.WeakSet()


def listen(wakeup: Wakeup) -> None:
    """Have ``emit`` set ``wakeup`` (an automations worker's ``threading.Event``, or its delivery
    process's pipe) after each event it writes."""
    _listeners.add(wakeup)


def wake() -> None:
    """Wake this process's automations workers: after a transaction in which ``emit`` was given
    the ``sa.Connection`` has committed (``emit``'s own wake-up comes before that commit, and a
    worker that looks then sees nothing yet and sleeps until its next poll)."""
    for wakeup in list(_listeners):
        wakeup.set()


def emit(bind: sa.Connection | sa.Engine, kind: str, subject: str, payload: Mapping[str, Any], *,
         project: str | None = None, actor: str | None = None, dedupe: str | None = None) -> int | None:
    """Append an event to the outbox (see the module docstring); its id, or None when ``dedupe``
    was emitted before. ``payload`` must be JSON-able."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(KINDS)}")
    row = {"time": time.time(), "kind": kind, "subject": subject[:1024], "project": project, "actor": actor,
           "payload": json.dumps(dict(payload), default=str, separators=(",", ":")),
           "dedupe": dedupe[:512] if dedupe is not None else None, "dispatched": False}
    if isinstance(bind, sa.Engine):
        with bind.begin() as connection:
            event_id = _insert(connection, row)
    else:
        event_id = _insert(bind, row)
    if event_id is not None:
        for wakeup in list(_listeners):
            wakeup.set()
    return event_id


# Built once: executed with the row as its parameters, it hits SQLAlchemy's compiled cache without
# building an expression or a cache key per event (an alias move's hot path).
_INSERT = event_outbox.insert()


def _insert(connection: sa.Connection, row: dict[str, Any]) -> int | None:
    if row["dedupe"] is None:
        key = connection.execute(_INSERT, row).inserted_primary_key
        return int(key[0]) if key is not None else None
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(event_outbox).values(**row).on_conflict_do_nothing(index_elements=["dedupe"])
    result = connection.execute(stmt.returning(event_outbox.c.id))
    found = result.first()
    return None if found is None else int(found[0])


# ---------------------------------------------------------------------- artifact versions and aliases


def alias_versions(artifacts: Any, project: str, name: str, aliases: list[str]) -> dict[str, int | None]:
    """The version each of ``aliases`` of ``project/name`` points to now (None: not set), read
    before a commit moves them (``artifacts``: the server's ``ServerArtifacts``)."""
    try:  # one read of the collection's aliases, whatever their number
        targets = artifacts.registry.alias_targets(project, name)
    except Exception:  # no such collection yet, or a damaged aliases file: as if none were set
        targets = {}
    return {alias: targets.get(alias) for alias in aliases}


def version_events(request: Any, info: Any, reused: bool, previous: Mapping[str, int | None]) -> None:
    """Emit ``artifact.version`` for a new version and ``alias.moved`` for each alias that now
    points elsewhere, after the commit (the server's versions are files on SQLite: not in its
    transaction). A failure is reported and never fails the commit."""
    actor = _actor(request)
    engine = request.app.state.tracklet.store.engine
    subject = f"{info.project}/{info.name}"
    try:
        if not reused:
            emit(engine, "artifact.version", f"{subject}:v{info.version}",
                 {"name": info.name, "version": info.version, "digest": info.digest,
                  "aliases": list(info.aliases), "reused": False}, project=info.project, actor=actor)
        for alias, before in previous.items():
            if before != info.version:
                emit(engine, "alias.moved", f"{subject}:{alias}",
                     {"name": info.name, "alias": alias, "version": info.version, "previous": before},
                     project=info.project, actor=actor)
    except Exception as error:
        import sys

        print(f"tracklet server: events of {subject} v{info.version} not written: {error!r}", file=sys.stderr)


def _actor(request: Any) -> str | None:
    principal = getattr(request.state, "principal", None)
    return principal.name if principal is not None else None


def removal_events(request: Any, project: str, name: str, removed: Mapping[str, int], *,
                   deleted: VersionInfoLike | None = None, links_broken: list[str] | None = None) -> None:
    """Emit ``alias.removed`` for each alias of ``removed`` (alias: the version it named), then
    ``artifact.deleted`` for ``deleted``, the version deleted with them if any (its
    ``registry_links_broken``: the registry versions it leaves without files); after the change,
    like ``version_events`` (on SQLite the versions are files). A failure is reported and never
    fails the change."""
    engine = request.app.state.tracklet.store.engine
    subject = f"{project}/{name}"
    actor = _actor(request)
    try:
        for alias, before in removed.items():
            emit(engine, "alias.removed", f"{subject}:{alias}",
                 {"name": name, "alias": alias, "previous": before, "deleted": deleted is not None},
                 project=project, actor=actor)
        if deleted is not None:
            emit(engine, "artifact.deleted", f"{subject}:v{deleted.version}",
                 {"name": name, "version": deleted.version, "digest": deleted.digest,
                  "aliases_dropped": sorted(removed), "registry_links_broken": list(links_broken or [])},
                 project=project, actor=actor)
    except Exception as error:
        import sys

        print(f"tracklet server: events of {subject} not written: {error!r}", file=sys.stderr)


class VersionInfoLike(Protocol):
    version: int
    digest: str


def registry_event(connection: sa.Connection, kind: str, payload: dict[str, Any]) -> None:
    """``ModelRegistry``'s ``on_event``: a registry change as an event, in the change's transaction."""
    where = f"{payload.get('registry')}/{payload.get('collection')}"
    tail = f"v{payload.get('version')}" if kind == "version.linked" else str(payload.get("alias"))
    emit(connection, kind, f"{where}:{tail}", payload, actor=payload.get("actor"))
