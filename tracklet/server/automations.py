"""Automations: rules that turn server events (``events.py``) into signed webhooks or Slack-style
messages, delivered by a background worker with retries (docs/audit.md#automations).

A rule is an event kind (or ``*``), a filter (``project``, ``subject_prefix``; ``level`` for
``run.alert``: the lowest level that counts; ``metric``, ``op`` and ``value`` for
``metric.threshold``), an action (``webhook`` or ``slack``) and a URL. Rules live in the
``automations`` table; removing one keeps its delivery log.

Delivery (a worker thread per server process, retries, signatures): ``automations_worker.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from tracklet.server import events
from tracklet.server.schema import automation_attempts, automation_deliveries, automations, event_outbox, migrate

if TYPE_CHECKING:
    from tracklet.store import Store

ACTIONS = ("webhook", "slack")
OPS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
LEVELS = ("INFO", "WARN", "ERROR")
FILTER_KEYS = frozenset({"project", "subject_prefix", "level", "metric", "op", "value"})


@dataclasses.dataclass(frozen=True)
class Rule:
    """One automation (a row of ``automations``; ``secret`` never leaves the server but once)."""

    id: int
    name: str
    event: str
    filter: dict[str, Any]
    action: str
    url: str
    secret: str
    created_by: str | None
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "event": self.event, "filter": self.filter, "action": self.action,
                "url": self.url, "created_by": self.created_by, "created_at": self.created_at}

    def matches(self, kind: str, subject: str, project: str | None, payload: Mapping[str, Any]) -> bool:
        if kind == "metric.threshold":  # made for one rule: that rule's
            return payload.get("automation_id") == self.id
        if self.event not in ("*", kind):
            return False
        wanted = self.filter
        if "project" in wanted and wanted["project"] != project:
            return False
        if "subject_prefix" in wanted and not subject.startswith(wanted["subject_prefix"]):
            return False
        if kind == "run.alert" and "level" in wanted:
            level = str(payload.get("level", "INFO")).upper()
            return LEVELS.index(level if level in LEVELS else "INFO") >= LEVELS.index(wanted["level"])
        return True


def check_rule(name: str, event: str, filter: Mapping[str, Any], action: str, url: str) -> dict[str, Any]:
    """The rule's filter, validated; ``ValueError`` naming what is wrong."""
    if not name or len(name) > 128:
        raise ValueError("an automation's name is 1 to 128 characters")
    if event != "*" and event not in events.KINDS:
        raise ValueError(f"unknown event {event!r}: one of *, {', '.join(events.KINDS)}")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    try:
        parsed = httpx.URL(url) if len(url) <= 2048 else None
    except httpx.InvalidURL:  # control characters, a bad port, a malformed host: not a URL
        parsed = None
    if (parsed is None or parsed.scheme not in ("http", "https") or not parsed.host
            or not 0 < (parsed.port or 80) < 65536):
        raise ValueError(f"the URL must be an http(s) URL of at most 2048 characters; got {url[:100]!r}")
    unknown = set(filter) - FILTER_KEYS
    if unknown:
        raise ValueError(f"unknown filter keys {sorted(unknown)}: known are {sorted(FILTER_KEYS)}")
    checked = dict(filter)
    for key in ("project", "subject_prefix", "metric"):
        if key in checked and (not isinstance(checked[key], str) or not 0 < len(checked[key]) <= 1024):
            raise ValueError(f"filter {key!r} must be a non-empty string")
    if "level" in checked:
        checked["level"] = str(checked["level"]).upper()
        if checked["level"] not in LEVELS:
            raise ValueError(f"filter 'level' must be one of {', '.join(LEVELS)}")
    threshold_keys = {"metric", "op", "value"} & set(checked)
    if event == "metric.threshold":
        if threshold_keys != {"metric", "op", "value"}:
            raise ValueError("a metric.threshold automation needs filter keys metric, op and value")
        if checked["op"] not in OPS:
            raise ValueError(f"filter 'op' must be one of {', '.join(OPS)}")
        value = checked["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("filter 'value' must be a finite number")
    elif threshold_keys:
        raise ValueError("metric, op and value filter only metric.threshold automations")
    return checked


def row_rule(row: Any) -> Rule:
    return Rule(id=row.id, name=row.name, event=row.event, filter=json.loads(row.filter), action=row.action,
                url=row.url, secret=row.secret, created_by=row.created_by, created_at=row.created_at)


class Automations:
    """Rules, deliveries and the events derived from ingested runs, over the store's database."""

    RULES_TTL = 2.0  # seconds a process trusts its copy of the rules (other processes may change them)

    def __init__(self, engine: sa.Engine, *, migrate_schema: bool = True) -> None:
        """``migrate_schema=False``: the server migrated the database already (its delivery process)."""
        self.engine = engine
        if migrate_schema:
            migrate(engine)
        self._rules: tuple[float, list[Rule]] | None = None
        self._alerts_seen: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ rules

    def create(self, *, name: str, event: str, filter: Mapping[str, Any], action: str, url: str,
               secret: str | None = None, created_by: str | None = None,
               inserted: Callable[[int], None] | None = None) -> Rule:
        """A new rule; ``inserted`` is told its id inside the rule's transaction (the audit event's
        target, written in that transaction)."""
        checked = check_rule(name, event, filter, action, url)
        secret = secret or secrets.token_urlsafe(32)
        if len(secret) > 128:
            raise ValueError("a secret is at most 128 characters")
        with self.engine.begin() as connection:
            taken = connection.execute(sa.select(automations.c.id).where(automations.c.name == name)).first()
            if taken is not None:
                raise ValueError(f"an automation named {name!r} exists (names stay taken after removal)")
            key = connection.execute(automations.insert().values(
                name=name, event=event, filter=json.dumps(checked), action=action, url=url, secret=secret,
                created_by=created_by, created_at=time.time())).inserted_primary_key
            assert key is not None
            if inserted is not None:
                inserted(int(key[0]))
        self._rules = None
        return self.rule(int(key[0]))

    def rule(self, rule_id: int) -> Rule:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(automations).where(automations.c.id == rule_id,
                                                                  automations.c.deleted_at.is_(None))).first()
        if row is None:
            raise LookupError(f"no automation {rule_id}")
        return row_rule(row)

    def rules(self, *, cached: bool = False) -> list[Rule]:
        """The active rules (``cached``: a copy at most ``RULES_TTL`` old)."""
        if cached and self._rules is not None and time.monotonic() - self._rules[0] < self.RULES_TTL:
            return self._rules[1]
        with self.engine.connect() as connection:
            found = [row_rule(row) for row in connection.execute(
                sa.select(automations).where(automations.c.deleted_at.is_(None)).order_by(automations.c.id))]
        self._rules = (time.monotonic(), found)
        return found

    def remove(self, rule_id: int) -> None:
        with self.engine.begin() as connection:
            done = connection.execute(automations.update().where(
                automations.c.id == rule_id, automations.c.deleted_at.is_(None)).values(deleted_at=time.time()))
        self._rules = None
        if done.rowcount == 0:
            raise LookupError(f"no automation {rule_id}")

    def deliveries(self, rule_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
        """The rule's deliveries, newest first, each with its attempts."""
        d, a, e = automation_deliveries.c, automation_attempts.c, event_outbox.c
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(
                sa.select(d.id, d.event_id, e.kind, e.subject, d.idempotency_key, d.state, d.attempts,
                          d.last_status, d.last_error, d.created_at, d.finished_at)
                .select_from(automation_deliveries.join(event_outbox, e.id == d.event_id))
                .where(d.automation_id == rule_id).order_by(d.id.desc()).limit(limit)).mappings()]
            attempts: dict[int, list[dict[str, Any]]] = {}
            if rows:
                for attempt in connection.execute(
                        sa.select(a.delivery_id, a.attempt, a.time, a.status, a.error, a.duration)
                        .where(a.delivery_id.in_([row["id"] for row in rows])).order_by(a.attempt)).mappings():
                    attempts.setdefault(attempt["delivery_id"], []).append(
                        {key: attempt[key] for key in ("attempt", "time", "status", "error", "duration")})
        for row in rows:
            row["attempt_log"] = attempts.get(row["id"], [])
        return rows

    # ------------------------------------------------------------------ events from ingested runs

    def after_ingest(self, store: Store, project: str, run_id: str) -> None:
        """Emit the events an upload of ``project/run_id`` may have caused (the run finished or
        failed, new alerts, summary metrics past a threshold), once each (``dedupe``). Does nothing
        while no rule could want them."""
        rules = self.rules(cached=True)
        kinds = {rule.event for rule in rules}
        if not kinds:
            return
        every = "*" in kinds
        run = store.run(project, run_id, fields=("run_id", "state", "exit_code", "summary"))
        if run is None:
            return
        subject = f"{project}/{run_id}"
        state = run.get("state")
        summary = run.get("summary") or {}
        if state in ("finished", "failed", "crashed") and (every or f"run.{state}" in kinds):
            events.emit(self.engine, f"run.{state}", subject,
                        {"run_id": run_id, "state": state, "exit_code": run.get("exit_code"), "summary": summary},
                        project=project, dedupe=f"run.{state}:{subject}")
        if every or "run.alert" in kinds:
            self._emit_alerts(store, project, run_id)
        for rule in rules:
            if rule.event != "metric.threshold" or rule.filter.get("project", project) != project:
                continue
            value = summary.get(rule.filter["metric"])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                continue
            if OPS[rule.filter["op"]](float(value), float(rule.filter["value"])):
                events.emit(self.engine, "metric.threshold", subject,
                            {"run_id": run_id, "metric": rule.filter["metric"], "value": value,
                             "op": rule.filter["op"], "threshold": rule.filter["value"], "automation_id": rule.id},
                            project=project, dedupe=f"metric.threshold:{rule.id}:{subject}")

    def _emit_alerts(self, store: Store, project: str, run_id: str) -> None:
        key = (project, run_id)
        subject = f"{project}/{run_id}"
        after = self._alerts_seen.get(key, 0)  # after a restart: 0, and dedupe skips those sent
        while True:
            found = store.alerts(subject, after=after, limit=1000)
            for alert in found:
                events.emit(self.engine, "run.alert", subject,
                            {"run_id": run_id, "seq": alert.seq, "title": alert.title, "text": alert.text,
                             "level": alert.level, "time": alert.time},
                            project=project, dedupe=f"run.alert:{subject}:{alert.seq}")
                after = alert.seq
            if len(found) < 1000:
                break
        with self._guard:
            self._alerts_seen[key] = max(after, self._alerts_seen.get(key, 0))
