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

from tracklet.errors import RegistryError
from tracklet.server.automations import Automations, Rule
from tracklet.server.automations_worker import sign
from tracklet.server.schema import registry_checks

CHECK_KIND = "promotion.check"


DEFAULT_TIMEOUT = 10.0  # seconds a check may take to answer, unless its protection says otherwise
MIN_TIMEOUT, MAX_TIMEOUT = 0.5, 120.0  # the bounds of that setting: an approver waits for the answer


def check_timeout(timeout: float) -> float:
    """``timeout`` if it is a number of seconds within the bounds; ``RegistryError`` otherwise."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (MIN_TIMEOUT <= timeout <= MAX_TIMEOUT):
        raise RegistryError(f"a check's timeout is between {MIN_TIMEOUT:g} and {MAX_TIMEOUT:g} seconds; got {timeout!r}")
    return float(timeout)


@dataclasses.dataclass(frozen=True)
class Check:
    """An alias's check: the webhook automation asked, and how long it may take to answer."""

    automation_id: int
    timeout: float


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    detail: str  # "HTTP 200", "HTTP 503: <body start>", "ConnectError: ..."


class RegistryChecks:
    """``registry_checks`` in the server's database: which automation checks which alias."""

    def __init__(self, engine: sa.Engine, automations: Automations) -> None:
        self.engine = engine
        self.automations = automations

    def set(self, registry: str, collection: str, alias: str, automation_id: int | None, *,
            timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make automation ``automation_id`` (a webhook rule) the alias's check, answering within
        ``timeout`` seconds (``MIN_TIMEOUT``..``MAX_TIMEOUT``); None removes it. ``RegistryError``
        for no such rule, one that is not a webhook, or a timeout out of bounds."""
        timeout = check_timeout(timeout)
        if automation_id is not None:
            try:
                rule = self.automations.rule(automation_id)
            except LookupError:
                raise RegistryError(f"no automation #{automation_id} to check promotions with") from None
            if rule.action != "webhook":
                raise RegistryError(f"automation #{automation_id} ({rule.name}) is a {rule.action} rule: a check "
                                    "must be a webhook")
        key = (registry_checks.c.registry == registry, registry_checks.c.collection == collection,
               registry_checks.c.alias == alias)
        with self.engine.begin() as connection:
            connection.execute(registry_checks.delete().where(*key))
            if automation_id is not None:
                connection.execute(registry_checks.insert().values(
                    registry=registry, collection=collection, alias=alias, automation_id=automation_id,
                    timeout=timeout))

    def get(self, registry: str, collection: str, alias: str) -> Check | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(registry_checks.c.automation_id, registry_checks.c.timeout).where(
                registry_checks.c.registry == registry, registry_checks.c.collection == collection,
                registry_checks.c.alias == alias)).first()
        return None if row is None else Check(int(row.automation_id), float(row.timeout))

    def run(self, check: Check, request: dict[str, Any], *, actor: str) -> CheckOutcome:
        """POST the promotion request (``request``: its JSON) to the check's URL, waiting at most
        ``check.timeout`` seconds for the answer; passed on 2xx."""
        automation_id = check.automation_id
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
            with httpx.Client(timeout=check.timeout, follow_redirects=False) as client:
                answer = client.post(rule.url, content=body, headers=headers)
        except httpx.HTTPError as failure:
            return CheckOutcome(False, f"{rule.name}: {type(failure).__name__}: {failure}"[:500])
        if 200 <= answer.status_code < 300:
            return CheckOutcome(True, f"{rule.name}: HTTP {answer.status_code}")
        text = answer.text[:200].strip()
        return CheckOutcome(False, f"{rule.name}: HTTP {answer.status_code}" + (f": {text}" if text else ""))
