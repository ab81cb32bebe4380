"""Delivering automations: the worker thread of each server process.

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

3. **prune** (hourly): the delivery log and the outbox are kept ``retention`` seconds (7 days by
   default) after they are done: finished deliveries (delivered or failed) with their attempts,
   then dispatched events that have no delivery left. Events with a ``dedupe`` key stay (they are
   what makes a derived event happen once: a run's alerts are derived again after a restart);
   pending deliveries and their events stay until they finish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import sqlalchemy as sa

from tracklet.server import events, wal_checkpoint, write_gate
from tracklet.server.automations import Automations, Rule, row_rule
from tracklet.server.schema import automation_attempts, automation_deliveries, automations, event_outbox

RETRY_STATUSES = frozenset({408, 429})
RECORD_EVERY = 1.0  # seconds a batch's attempt outcomes wait, at most, to be written together
COALESCE = 0.05  # seconds the delivery process lets wake-ups gather before a pass
RECHECKS = (0.05, 0.25)  # seconds after a wake-up that found no event (its transaction not yet committed)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Tracklet-Signature`` header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"



@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float = 10.0  # seconds per attempt
    retry_base: float = 2.0
    retry_cap: float = 600.0
    max_attempts: int = 10
    batch: int = 50
    retention: float = 7 * 86400.0  # seconds finished deliveries and dispatched events are kept
    prune_every: float = 3600.0

    def backoff(self, attempts: int) -> float:
        return min(self.retry_cap, self.retry_base * 2 ** (attempts - 1)) * random.uniform(0.9, 1.1)


_o, _d = event_outbox.c, automation_deliveries.c
# A pass's statements, built once (executed with parameters: no expression or cache key per pass).
_PENDING_EVENTS = (sa.select(_o.id, _o.kind, _o.subject, _o.project, _o.payload).where(_o.dispatched.is_(False))
                   .order_by(_o.id).limit(500).with_for_update(skip_locked=True))
_DELIVERY_OF = sa.select(_d.id).where(_d.event_id == sa.bindparam("event_id"),
                                      _d.automation_id == sa.bindparam("automation_id"))
_NEW_DELIVERY = automation_deliveries.insert()
_DISPATCHED = event_outbox.update().where(_o.id.in_(sa.bindparam("ids", expanding=True))).values(dispatched=True)
_DUE = (sa.select(_d.id, _d.event_id, _d.automation_id, _d.idempotency_key, _d.attempts)
        .where(_d.state == "pending", _d.next_attempt_at <= sa.bindparam("now"))
        .order_by(_d.next_attempt_at, _d.id).limit(sa.bindparam("batch")).with_for_update(skip_locked=True))
_NEW_ATTEMPT = automation_attempts.insert()
_OUTCOME = automation_deliveries.update().where(_d.id == sa.bindparam("b_id"))  # the values: each row's
_EVENT = sa.select(event_outbox).where(event_outbox.c.id == sa.bindparam("b_id"))
_RULE = sa.select(automations).where(automations.c.id == sa.bindparam("b_id"))
_NEXT_DUE = sa.select(sa.func.min(_d.next_attempt_at)).where(_d.state == "pending")
_LEASE = automation_deliveries.update().where(_d.id.in_(sa.bindparam("ids", expanding=True))).values(
    next_attempt_at=sa.bindparam("lease"))


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
        def wait(seconds: float) -> bool | None:
            woken = self.wakeup.wait(seconds)
            self.wakeup.clear()
            return None if self._stop.is_set() else woken

        self.serve(wait)

    def serve(self, wait: Callable[[float], bool | None]) -> None:
        """Passes (prune when due, dispatch, deliver) until ``wait(seconds)`` says stop (None);
        it sleeps until woken (True) or ``seconds`` passed (False). ``emit`` wakes the worker
        before the emitting transaction commits, so a wake-up that found no event looks again
        ``RECHECKS`` seconds later before going back to the polling interval."""
        pruned_at = -self.policy.prune_every
        rechecks: list[float] = []
        while True:
            pause = self.interval
            dispatched = 0
            try:
                if time.monotonic() - pruned_at >= self.policy.prune_every:
                    pruned_at = time.monotonic()
                    self.prune()
                dispatched, due = self.dispatch_and_deliver()
                if due is not None:
                    pause = min(pause, max(0.0, due - time.time()))
            except Exception as error:  # the database away a moment: the next pass tries again
                print(f"tracklet server: automations pass failed: {error!r}", file=sys.stderr)
            if dispatched:
                rechecks = []
            elif rechecks:
                pause = min(pause, rechecks.pop(0))
            woken = wait(pause)
            if woken is None:
                return
            if woken:
                rechecks = list(RECHECKS)

    def dispatch(self) -> int:
        """Make the deliveries of undispatched events; how many events were dispatched."""
        rules = self.automations.rules()
        with self.engine.begin() as connection:
            return self._dispatch(connection, rules)

    def dispatch_and_deliver(self) -> tuple[int, float | None]:
        """One pass: dispatch, claim what is due and send it (``deliver_due``); (events
        dispatched, when the next pending delivery is due). Dispatching and claiming share one
        transaction: on SQLite a pass takes the database's write lock once for both, not twice,
        and every take is one a request's COMMIT may have to wait for (SQLite's busy handler sleeps
        1, 2, 5, 10 ms steps: an alias move's p99, docs/registry.md)."""
        rules = self.automations.rules()
        with self.engine.begin() as connection:
            dispatched = self._dispatch(connection, rules)
            claimed = self._claim(connection)
        return dispatched, self._send(claimed)

    def _dispatch(self, connection: sa.Connection, rules: list[Rule]) -> int:
        pending = connection.execute(_PENDING_EVENTS).all()
        if not pending:
            return 0
        now = time.time()
        made = []
        for event in pending:
            payload = json.loads(event.payload)
            for rule in rules:
                if rule.matches(event.kind, event.subject, event.project, payload) and connection.execute(
                        _DELIVERY_OF, {"event_id": event.id, "automation_id": rule.id}).first() is None:
                    made.append({"event_id": event.id, "automation_id": rule.id, "idempotency_key": uuid.uuid4().hex,
                                 "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
        if made:
            connection.execute(_NEW_DELIVERY, made)
        connection.execute(_DISPATCHED, {"ids": [event.id for event in pending]})
        return len(pending)

    def prune(self, *, now: float | None = None, batch: int = 1000) -> int:
        """Delete what the retention bound lets go (see the module docstring), ``batch`` rows of
        each kind per transaction; how many deliveries and events were deleted."""
        cutoff = (time.time() if now is None else now) - self.policy.retention
        o, d, a = event_outbox.c, automation_deliveries.c, automation_attempts.c
        removed = 0
        while True:
            with self.engine.begin() as connection:
                finished = connection.execute(sa.select(d.id).where(d.state.in_(("delivered", "failed")),
                                                                    d.finished_at < cutoff)
                                              .order_by(d.id).limit(batch)).scalars().all()
                if finished:
                    connection.execute(automation_attempts.delete().where(a.delivery_id.in_(finished)))
                    connection.execute(automation_deliveries.delete().where(d.id.in_(finished)))
                done = connection.execute(sa.select(o.id).where(
                    o.dispatched.is_(True), o.time < cutoff, o.dedupe.is_(None),
                    ~sa.exists().where(d.event_id == o.id)).order_by(o.id).limit(batch)).scalars().all()
                if done:
                    connection.execute(event_outbox.delete().where(o.id.in_(done)))
            removed += len(finished) + len(done)
            if len(finished) < batch and len(done) < batch:
                return removed

    def deliver_due(self) -> float | None:
        """Send what is due; when the next pending delivery is due (None: nothing pending)."""
        with self.engine.begin() as connection:
            claimed = self._claim(connection)
        return self._send(claimed)

    def _claim(self, connection: sa.Connection) -> Sequence[Any]:
        """The due pending deliveries (a batch), leased to this worker for a send's timeout."""
        now = time.time()
        claimed = connection.execute(_DUE, {"now": now, "batch": self.policy.batch}).all()
        if claimed:
            connection.execute(_LEASE, {"ids": [row.id for row in claimed], "lease": now + self.policy.timeout + 30.0})
        return claimed

    def _send(self, claimed: Sequence[Any]) -> float | None:
        """Send ``claimed`` and record the outcomes; when the next pending delivery is due."""
        # Outcomes are recorded a batch at a time (at most RECORD_EVERY seconds after the first
        # unrecorded one): one write transaction for many attempts, so the delivery log takes
        # SQLite's write lock from the server's requests as seldom as it can.
        outcomes: list[tuple[dict[str, Any], dict[str, Any]]] = []
        since = time.monotonic()
        for row in claimed:
            outcomes.append(self._attempt(row))
            if time.monotonic() - since >= RECORD_EVERY:
                self._record(outcomes)
                outcomes, since = [], time.monotonic()
        self._record(outcomes)
        with self.engine.connect() as connection:
            due = connection.execute(_NEXT_DUE).scalar()
        return None if due is None else float(due)

    def _record(self, outcomes: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Log attempts and update their deliveries (``_attempt``'s outcomes), in one transaction."""
        if not outcomes:
            return
        # Built before the transaction, executed as two statements with many rows: the write lock
        # is held for the statements only (a request's COMMIT may be waiting for it).
        attempts = [attempt for attempt, _ in outcomes]
        updates = [{"b_id": attempt["delivery_id"], **values} for attempt, values in outcomes]
        with self.engine.begin() as connection:
            connection.execute(_NEW_ATTEMPT, attempts)
            connection.execute(_OUTCOME, updates)

    def _attempt(self, delivery: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send one delivery; its attempt row and the delivery's new values (``_record`` writes them)."""
        with self.engine.connect() as connection:
            event = connection.execute(_EVENT, {"b_id": delivery.event_id}).one()
            rule_row = connection.execute(_RULE, {"b_id": delivery.automation_id}).one()
        rule = row_rule(rule_row)
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
        return ({"delivery_id": delivery.id, "attempt": attempt, "time": now, "status": status, "error": error,
                 "duration": duration},
                {"state": state, "attempts": attempt, "next_attempt_at": next_at, "last_status": status,
                 "last_error": error, "finished_at": None if state == "pending" else now})

    @staticmethod
    def _body(rule: Rule, event: Any, idempotency_key: str) -> bytes:
        payload = json.loads(event.payload)
        if rule.action == "slack":
            return json.dumps({"text": slack_text(event.kind, event.subject, payload)}).encode()
        document = {"id": idempotency_key, "automation": rule.name,
                    "event": {"id": event.id, "kind": event.kind, "subject": event.subject, "project": event.project,
                              "actor": event.actor, "time": event.time, "payload": payload}}
        return json.dumps(document, separators=(",", ":")).encode()


class DeliveryProcess:
    """The automations worker in a process of its own (what ``tracklet server`` runs): sending
    webhooks, signing them and logging their attempts never takes the server's GIL or a core from
    its request threads, so no route waits for a delivery (an alias move's p99 with its webhook,
    docs/registry.md). The process reads the same tables over its own connections (``url``: the
    store's database), so dispatching, leases and retries are the thread's, restart or not.

    ``set`` (``emit``'s wake-up, from any request thread) writes a byte into a pipe the process
    waits on, never blocking: a full pipe has a wake-up pending already. Closing the pipe (``stop``)
    ends the process after its current pass; so does the server dying, however it dies (the pipe's
    last writer is gone), so no delivery process outlives its server.

    The process starts once there is something to deliver: at ``start`` if ``needed()`` (an
    automation rule exists), else at the first wake-up that finds one (a new interpreter costs
    ~0.6 s of CPU, which a server without rules, such as every test server, never pays)."""

    def __init__(self, url: str, root: str, *, policy: DeliveryPolicy = DeliveryPolicy(),
                 interval: float = 1.0, needed: Callable[[], bool] = lambda: True) -> None:
        self.url = url
        self.root = root
        self.policy = policy
        self.interval = interval
        self.needed = needed
        self.process: multiprocessing.process.BaseProcess | None = None
        self._writer: multiprocessing.connection.Connection | None = None
        self._guard = threading.Lock()  # a wake-up never writes to a descriptor ``stop`` closed
        self._stopped = False

    def start(self) -> None:
        self._stopped = False
        events.listen(self)
        if self.needed():
            with self._guard:
                self._spawn()

    def _spawn(self) -> None:
        """Start the process (under ``_guard``), once."""
        if self.process is not None or self._stopped:
            return
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of the server's threads
        reader, writer = context.Pipe(duplex=False)
        self.process = context.Process(target=_deliver_in_process, args=(self.url, self.root, self.policy, self.interval, reader),
                                       name="tracklet-automations", daemon=True)
        self.process.start()
        reader.close()
        os.set_blocking(writer.fileno(), False)
        self._writer = writer

    def set(self) -> None:
        """Wake the process (``events.listen``'s interface), starting it if a rule now exists."""
        if self.process is None and not self._stopped:
            try:
                wanted = self.needed()
            except Exception:  # noqa: BLE001 - the database is unreachable: the next event asks again
                wanted = False
            if wanted:
                with self._guard:
                    self._spawn()
        with self._guard:
            if self._writer is None:
                return
            try:
                os.write(self._writer.fileno(), b"\0")
            except OSError:  # full (a wake-up is pending) or the process gone: nothing to add
                pass

    def stop(self) -> None:
        with self._guard:
            self._stopped = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self.process is not None:
            self.process.join(timeout=self.policy.timeout + 5)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout=5)


def _deliver_in_process(url: str, root: str, policy: DeliveryPolicy, interval: float,
                        reader: multiprocessing.connection.Connection) -> None:
    """``DeliveryProcess``'s process: the worker's passes, woken by bytes on ``reader``, until
    its end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle: it closes the pipe
    from tracklet.store import Store

    store = Store(url, root=root)  # the server's database, with the store's connection settings
    engine = store.engine
    if wal_checkpoint.wanted(engine):  # the server's writers queue on the gate, its thread checkpoints
        wal_checkpoint.no_autocheckpoint(engine)
        write_gate.install(engine)
    worker = AutomationWorker(Automations(engine, migrate_schema=False), policy=policy, interval=interval)
    worker._http = httpx.Client(timeout=policy.timeout, follow_redirects=False)

    def wait(seconds: float) -> bool | None:
        if not multiprocessing.connection.wait([reader], seconds):
            return False
        time.sleep(COALESCE)  # the wake-ups of a burst of events: one pass for all of them
        try:
            return True if os.read(reader.fileno(), 4096) else None  # b"": the server closed the pipe or died
        except OSError:
            return None

    try:
        worker.serve(wait)
    finally:
        worker._http.close()
        store.close()


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
    if kind == "artifact.deleted":
        return f"artifact version {subject} deleted"
    if kind == "alias.removed":
        return f"alias {subject} removed (it named v{payload.get('previous')})"
    return f"{kind}: {subject}"
