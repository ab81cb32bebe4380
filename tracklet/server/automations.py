"""Automations: rules that turn server events (``events.py``) into signed webhooks or Slack-style
messages, delivered by a background worker with retries (docs/audit.md#automations).

A rule is an event kind (or ``*``), a filter (``project``, ``subject_prefix``; ``level`` for
``run.alert``: the lowest level that counts; ``metric``, ``op`` and ``value`` for
``metric.threshold``), an action (``webhook`` or ``slack``) and a URL. Rules live in the
``automations`` table; removing one keeps its delivery log.

The worker (``AutomationWorker``, a thread per server process) does two things, each from the
database, so a restart or a second server process carries on where the last left off:

1. **dispatch**: each event of the outbox not yet dispatched gets one row in
   ``automation_deliveries`` per matching rule (unique per event and rule), and is marked
   dispatched, in one transaction.
2. **deliver**: due pending deliveries are claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) by
   moving their ``next_attempt_at`` past the send timeout (a lease), then sent. Each attempt is
   logged in ``automation_attempts`` (time, status code or error, duration). A 2xx marks the
   delivery ``delivered`` for good, so nothing sends it again, restart or not; a 5xx, 408, 429, a
   timeout or a connection error schedules the next attempt with exponential backoff
   (``retry_base`` * 2^(attempt-1), at most ``retry_cap``, ±10 % jitter) up to ``max_attempts``;
   any other answer fails it. Delivery is at least once: should a process die between the
   receiver's 2xx and recording it, the lease lapses and it is sent again with the same
   ``Idempotency-Key`` header, by which the receiver tells a repeat.

A webhook is a POST of JSON ``{"id": <idempotency key>, "automation": name, "event": {...}}``
with headers ``X-Tracklet-Timestamp`` (Unix seconds of this attempt), ``X-Tracklet-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed with the rule's secret>``,
``Idempotency-Key`` and ``X-Tracklet-Event`` (the kind). A Slack-style message is a POST of
``{"text": ...}`` (Slack's incoming webhooks, and the many chat tools that copy them), with the
same headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import random
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Mapping
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
RETRY_STATUSES = frozenset({408, 429})
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
    parsed = httpx.URL(url) if len(url) <= 2048 else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
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


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Tracklet-Signature`` header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _row_rule(row: Any) -> Rule:
    return Rule(id=row.id, name=row.name, event=row.event, filter=json.loads(row.filter), action=row.action,
                url=row.url, secret=row.secret, created_by=row.created_by, created_at=row.created_at)


class Automations:
    """Rules, deliveries and the events derived from ingested runs, over the store's database."""

    RULES_TTL = 2.0  # seconds a process trusts its copy of the rules (other processes may change them)

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        migrate(engine)
        self._rules: tuple[float, list[Rule]] | None = None
        self._alerts_seen: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ rules

    def create(self, *, name: str, event: str, filter: Mapping[str, Any], action: str, url: str,
               secret: str | None = None, created_by: str | None = None) -> Rule:
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
        self._rules = None
        assert key is not None
        return self.rule(int(key[0]))

    def rule(self, rule_id: int) -> Rule:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(automations).where(automations.c.id == rule_id,
                                                                  automations.c.deleted_at.is_(None))).first()
        if row is None:
            raise LookupError(f"no automation {rule_id}")
        return _row_rule(row)

    def rules(self, *, cached: bool = False) -> list[Rule]:
        """The active rules (``cached``: a copy at most ``RULES_TTL`` old)."""
        if cached and self._rules is not None and time.monotonic() - self._rules[0] < self.RULES_TTL:
            return self._rules[1]
        with self.engine.connect() as connection:
            found = [_row_rule(row) for row in connection.execute(
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
        if state in ("finished", "failed") and (every or f"run.{state}" in kinds):
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


@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float = 10.0  # seconds per attempt
    retry_base: float = 2.0
    retry_cap: float = 600.0
    max_attempts: int = 10
    batch: int = 50

    def backoff(self, attempts: int) -> float:
        return min(self.retry_cap, self.retry_base * 2 ** (attempts - 1)) * random.uniform(0.9, 1.1)


class AutomationWorker:
    """The delivery thread of one server process (see the module docstring)."""

    def __init__(self, automations_: Automations, *, policy: DeliveryPolicy = DeliveryPolicy(),
                 interval: float = 1.0) -> None:
        self.automations = automations_
        self.engine = automations_.engine
        self.policy = policy
        self.interval = interval
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        events.listen(self.wakeup)

    def start(self) -> None:
        self._http = httpx.Client(timeout=self.policy.timeout, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="tracklet-automations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout + 5)
        if self._http is not None:
            self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.interval
            try:
                self.dispatch()
                due = self.deliver_due()
                if due is not None:
                    wait = min(wait, max(0.0, due - time.time()))
            except Exception as error:  # the database away a moment: the next pass tries again
                print(f"tracklet server: automations pass failed: {error!r}", file=sys.stderr)
            self.wakeup.wait(wait)
            self.wakeup.clear()

    def dispatch(self) -> int:
        """Make the deliveries of undispatched events; how many events were dispatched."""
        rules = self.automations.rules()
        o, d = event_outbox.c, automation_deliveries.c
        with self.engine.begin() as connection:
            pending = connection.execute(
                sa.select(o.id, o.kind, o.subject, o.project, o.payload).where(o.dispatched.is_(False))
                .order_by(o.id).limit(500).with_for_update(skip_locked=True)).all()
            if not pending:
                return 0
            now = time.time()
            for event in pending:
                payload = json.loads(event.payload)
                for rule in rules:
                    if not rule.matches(event.kind, event.subject, event.project, payload):
                        continue
                    exists = connection.execute(sa.select(d.id).where(d.event_id == event.id,
                                                                      d.automation_id == rule.id)).first()
                    if exists is None:
                        connection.execute(automation_deliveries.insert().values(
                            event_id=event.id, automation_id=rule.id, idempotency_key=uuid.uuid4().hex,
                            state="pending", attempts=0, next_attempt_at=now, created_at=now))
            connection.execute(event_outbox.update().where(o.id.in_([event.id for event in pending]))
                               .values(dispatched=True))
        return len(pending)

    def deliver_due(self) -> float | None:
        """Send what is due; when the next pending delivery is due (None: nothing pending)."""
        d = automation_deliveries.c
        now = time.time()
        lease = now + self.policy.timeout + 30.0
        with self.engine.begin() as connection:
            claimed = connection.execute(
                sa.select(d.id, d.event_id, d.automation_id, d.idempotency_key, d.attempts)
                .where(d.state == "pending", d.next_attempt_at <= now)
                .order_by(d.next_attempt_at, d.id).limit(self.policy.batch).with_for_update(skip_locked=True)).all()
            if claimed:
                connection.execute(automation_deliveries.update().where(d.id.in_([row.id for row in claimed]))
                                   .values(next_attempt_at=lease))
        for row in claimed:
            self._attempt(row)
        with self.engine.connect() as connection:
            due = connection.execute(sa.select(sa.func.min(d.next_attempt_at)).where(d.state == "pending")).scalar()
        return None if due is None else float(due)

    def _attempt(self, delivery: Any) -> None:
        with self.engine.connect() as connection:
            event = connection.execute(sa.select(event_outbox).where(event_outbox.c.id == delivery.event_id)).one()
            rule_row = connection.execute(sa.select(automations).where(
                automations.c.id == delivery.automation_id)).one()
        rule = _row_rule(rule_row)
        attempt = delivery.attempts + 1
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        if rule_row.deleted_at is not None:
            error = "the automation was removed"
        else:
            body = self._body(rule, event, delivery.idempotency_key)
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.idempotency_key,
                       "X-Tracklet-Event": event.kind, "X-Tracklet-Timestamp": timestamp,
                       "X-Tracklet-Signature": sign(rule.secret, timestamp, body),
                       "User-Agent": "tracklet-automations"}
            assert self._http is not None
            try:
                status = self._http.post(rule.url, content=body, headers=headers).status_code
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"[:1000]
        duration = time.monotonic() - started
        now = time.time()
        if status is not None and 200 <= status < 300:
            state, next_at = "delivered", now
        elif rule_row.deleted_at is None and attempt < self.policy.max_attempts and (
                status is None or status >= 500 or status in RETRY_STATUSES):
            state, next_at = "pending", now + self.policy.backoff(attempt)
        else:
            state, next_at = "failed", now
        d = automation_deliveries.c
        with self.engine.begin() as connection:
            connection.execute(automation_attempts.insert().values(
                delivery_id=delivery.id, attempt=attempt, time=now, status=status, error=error, duration=duration))
            connection.execute(automation_deliveries.update().where(d.id == delivery.id).values(
                state=state, attempts=attempt, next_attempt_at=next_at, last_status=status, last_error=error,
                finished_at=None if state == "pending" else now))

    @staticmethod
    def _body(rule: Rule, event: Any, idempotency_key: str) -> bytes:
        payload = json.loads(event.payload)
        if rule.action == "slack":
            return json.dumps({"text": slack_text(event.kind, event.subject, payload)}).encode()
        document = {"id": idempotency_key, "automation": rule.name,
                    "event": {"id": event.id, "kind": event.kind, "subject": event.subject, "project": event.project,
                              "actor": event.actor, "time": event.time, "payload": payload}}
        return json.dumps(document, separators=(",", ":")).encode()


def slack_text(kind: str, subject: str, payload: Mapping[str, Any]) -> str:
    """One line of chat for an event."""
    if kind == "run.alert":
        text = f" {payload.get('text')}" if payload.get("text") else ""
        return f"[{payload.get('level', 'INFO')}] {subject}: {payload.get('title')}{text}"
    if kind == "metric.threshold":
        return (f"{subject}: {payload.get('metric')} = {payload.get('value')} "
                f"({payload.get('op')} {payload.get('threshold')})")
    if kind in ("run.finished", "run.failed"):
        return f"run {subject} {payload.get('state')} (exit code {payload.get('exit_code')})"
    if kind == "artifact.version":
        return f"new artifact version {subject}"
    if kind == "alias.moved":
        return f"alias {subject} now points to v{payload.get('version')} (was {payload.get('previous')})"
    return f"{kind}: {subject}"
