"""The audit log and automations over HTTP (server admins only; docs/audit.md).

``GET /api/v1/audit`` pages through audit events with filters (the last event's id is the
cursor ``after``; pages of up to 10,000: ``tracklet audit export`` writes them as JSON lines).
``/api/v1/automations`` lists, creates (answering the webhook secret, the only time it is shown)
and removes rules; ``/api/v1/automations/{id}/deliveries`` is a rule's delivery log.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel, Field

from tracklet.server import audit
from tracklet.server.auth import DEV_PRINCIPAL, Principal
from tracklet.server.automations import Automations
from tracklet.server.models import INT64_MAX, RowId, errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1", tags=["audit"])
_ERRORS = errors(400, 401, 403, 404)


class AuditEvent(BaseModel):
    id: int
    time: float
    actor: str | None = Field(description="The user; null when the request was not authenticated")
    key_id: str | None = Field(description="The API key used")
    action: str = Field(description="The route's name, e.g. create_key, put_log, commit_version")
    method: str
    target: str = Field(description="What it acted on: the path below /api/v1/, unless the route said better")
    project: str | None
    client: str | None = Field(description="The client's address")
    status: int
    outcome: str = Field(description="ok, denied (401/403), rejected (other 4xx), error (5xx), or unknown (status 0: "
                         "a file change whose server process died before it answered)")
    detail: dict[str, Any] | None


class AuditResponse(BaseModel):
    events: list[AuditEvent]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last")


class AutomationRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    event: str = Field(description="An event kind (events.KINDS) or *")
    filter: dict[str, Any] = Field(default_factory=dict)
    action: Literal["webhook", "slack"] = "webhook"
    url: str = Field(max_length=2048)
    secret: str | None = Field(default=None, max_length=128, description="Default: a new random secret")


class Automation(BaseModel):
    id: int
    name: str
    event: str
    filter: dict[str, Any]
    action: str
    url: str
    created_by: str | None
    created_at: float


class NewAutomation(Automation):
    secret: str = Field(description="The HMAC key of the webhook's signature: shown only now")


class AutomationsResponse(BaseModel):
    automations: list[Automation]


class Attempt(BaseModel):
    attempt: int
    time: float
    status: int | None
    error: str | None
    duration: float


class Delivery(BaseModel):
    id: int
    event_id: int
    kind: str
    subject: str
    idempotency_key: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None
    attempt_log: list[Attempt]


class DeliveriesResponse(BaseModel):
    deliveries: list[Delivery]


def _admin(request: Request) -> Principal:
    principal: Principal = getattr(request.state, "principal", DEV_PRINCIPAL)
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail=f"user {principal.name!r} is not a server admin")
    return principal


def _query(actor: str | None, action: str | None, project: str | None, target: str | None, outcome: str | None,
           since: float | None, until: float | None, after: int | None, order: str, limit: int) -> audit.AuditQuery:
    return audit.AuditQuery(actor=actor, action=action, project=project, target_prefix=target, outcome=outcome,
                            since=since, until=until, after=after, newest_first=order == "desc", limit=limit)


_ACTOR = Query(None, max_length=128, description="Only this user's calls")
_ACTION = Query(None, max_length=128, description="Only this action (a route's name)")
_PROJECT = Query(None, max_length=128, description="Only calls on this project")
_TARGET = Query(None, max_length=1024, description="Only targets starting with this")
_OUTCOME = Query(None, pattern="^(ok|denied|rejected|error|unknown)$")
_SINCE = Query(None, description="Only events at or after this Unix time")
_UNTIL = Query(None, description="Only events before this Unix time")
_AFTER = Query(None, ge=0, le=INT64_MAX, description="The cursor: the previous page's next_after")
_ORDER = Query("asc", pattern="^(asc|desc)$", description="asc: oldest first; desc: newest first")


@router.get("/audit", response_model=AuditResponse, responses=_ERRORS, summary="Audit events (server admins)")
def list_audit(request: Request, actor: str | None = _ACTOR, action: str | None = _ACTION,
               project: str | None = _PROJECT, target: str | None = _TARGET, outcome: str | None = _OUTCOME,
               since: float | None = _SINCE, until: float | None = _UNTIL, after: int | None = _AFTER,
               order: str = _ORDER, limit: int = Query(100, ge=1, le=audit.MAX_PAGE)) -> AuditResponse:
    """One page of the audit log, filtered; every mutating API call is one event."""
    _admin(request)
    log: audit.AuditLog = request.app.state.tracklet.audit
    rows = log.query(_query(actor, action, project, target, outcome, since, until, after, order, limit))
    return AuditResponse(events=[AuditEvent(**row) for row in rows],
                         next_after=rows[-1]["id"] if len(rows) == limit else None)


def _automations(request: Request) -> Automations:
    return request.app.state.tracklet.automations


@router.get("/automations", response_model=AutomationsResponse, responses=_ERRORS,
            summary="Automation rules (server admins)")
def list_automations(request: Request) -> AutomationsResponse:
    _admin(request)
    return AutomationsResponse(automations=[Automation(**rule.public()) for rule in _automations(request).rules()])


@router.post("/automations", response_model=NewAutomation, status_code=201, responses=_ERRORS,
             summary="Add an automation rule (server admins)")
def create_automation(request: Request, body: AutomationRequest) -> NewAutomation:
    principal = _admin(request)
    try:
        # Noted before the rule's transaction commits: its audit event is written in it.
        audit.note(request, name=body.name, event=body.event, url=body.url)
        rule = _automations(request).create(
            name=body.name, event=body.event, filter=body.filter, action=body.action, url=body.url,
            secret=body.secret, created_by=principal.name,
            inserted=lambda rule_id: audit.note(request, target=f"automations/{rule_id}"))
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    return NewAutomation(**rule.public(), secret=rule.secret)


@router.delete("/automations/{automation_id}", status_code=204, responses=_ERRORS,
               summary="Remove an automation rule; its delivery log stays (server admins)")
def remove_automation(request: Request, automation_id: RowId) -> None:
    _admin(request)
    try:
        _automations(request).remove(automation_id)
    except LookupError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


@router.get("/automations/{automation_id}/deliveries", response_model=DeliveriesResponse, responses=_ERRORS,
            summary="A rule's deliveries and their attempts, newest first (server admins)")
def list_deliveries(request: Request, automation_id: RowId,
                    limit: int = Query(100, ge=1, le=1000)) -> DeliveriesResponse:
    _admin(request)
    return DeliveriesResponse(deliveries=[Delivery(**row) for row in
                                          _automations(request).deliveries(automation_id, limit=limit)])
