"""Webhook checks as an approval condition of a protected registry alias (docs/registry.md).

A registry admin names an automation (a ``webhook`` rule, which only a server admin can make, so
the server only ever calls URLs a server admin chose) as the check of a protected alias. When an
approval would complete a promotion request of that alias, the server first POSTs the request to
the rule's URL, signed like an automation's delivery (``X-Tracklet-Signature`` over the timestamp
and the body, docs/audit.md), outside any database transaction; only a 2xx answer lets the
approval go through (``ModelRegistry.review(..., checked=True)``). Any other answer, a timeout or
a connection error refuses the approval, records nothing and says why: the request stays pending
and can be approved again once the check passes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import httpx
import sqlalchemy as sa

from tracklet.server.automations import Automations, Rule
from tracklet.server.automations_worker import DeliveryPolicy, sign
from tracklet.server.schema import registry_checks

CHECK_KIND = "promotion.check"


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    detail: str  # "HTTP 200", "HTTP 503: <body start>", "ConnectError: ..."


class RegistryChecks:
    """``registry_checks`` in the server's database: which automation checks which alias."""

    def __init__(self, engine: sa.Engine, automations: Automations, *, timeout: float = DeliveryPolicy.timeout) -> None:
        self.engine = engine
        self.automations = automations
        self.timeout = timeout

    def set(self, registry: str, collection: str, alias: str, automation_id: int | None) -> None:
        """Make automation ``automation_id`` (a webhook rule) the alias's check; None removes it.
        ``LookupError`` for no such rule, ``ValueError`` for one that is not a webhook."""
        if automation_id is not None:
            rule = self.automations.rule(automation_id)
            if rule.action != "webhook":
                raise ValueError(f"automation #{automation_id} ({rule.name}) is a {rule.action} rule: a check must "
                                 "be a webhook")
        key = (registry_checks.c.registry == registry, registry_checks.c.collection == collection,
               registry_checks.c.alias == alias)
        with self.engine.begin() as connection:
            connection.execute(registry_checks.delete().where(*key))
            if automation_id is not None:
                connection.execute(registry_checks.insert().values(registry=registry, collection=collection,
                                                                   alias=alias, automation_id=automation_id))

    def get(self, registry: str, collection: str, alias: str) -> int | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(registry_checks.c.automation_id).where(
                registry_checks.c.registry == registry, registry_checks.c.collection == collection,
                registry_checks.c.alias == alias)).scalar()

    def run(self, automation_id: int, request: dict[str, Any], *, actor: str) -> CheckOutcome:
        """POST the promotion request (``request``: its JSON) to the check's URL; passed on 2xx."""
        try:
            rule: Rule = self.automations.rule(automation_id)
        except LookupError:
            return CheckOutcome(False, f"its check, automation #{automation_id}, was removed")
        subject = f"{request['registry']}/{request['collection']}:{request['alias']}"
        body = json.dumps({"id": f"check-{request['id']}-{time.time_ns()}", "automation": rule.name,
                           "event": {"kind": CHECK_KIND, "subject": subject, "actor": actor, "time": time.time(),
                                     "payload": request}}, separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Tracklet-Event": CHECK_KIND,
                   "X-Tracklet-Timestamp": timestamp, "X-Tracklet-Signature": sign(rule.secret, timestamp, body),
                   "User-Agent": "tracklet-registry-check"}
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
                answer = client.post(rule.url, content=body, headers=headers)
        except httpx.HTTPError as failure:
            return CheckOutcome(False, f"{rule.name}: {type(failure).__name__}: {failure}"[:500])
        if 200 <= answer.status_code < 300:
            return CheckOutcome(True, f"{rule.name}: HTTP {answer.status_code}")
        text = answer.text[:200].strip()
        return CheckOutcome(False, f"{rule.name}: HTTP {answer.status_code}" + (f": {text}" if text else ""))
