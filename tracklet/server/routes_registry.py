"""The model registry over HTTP (docs/registry.md): collections, links, aliases and their
history, model cards, protected aliases and promotion requests, in the server's own database
(``tracklet.registry.sql.ModelRegistry`` over the ``registry_*`` tables of migration ``s0003``).

Who may do what: registry roles (``registry_roles.ACTIONS``: viewer reads; member links, moves and
removes aliases, edits cards, unlinks versions, may delete an artifact version the registry links
(what unlinking and then deleting would do), and so requests promotions; admin protects aliases and
manages the registry's members), checked by
every route through ``_require``; a promotion request is reviewed by holders of its alias's approver
role or a higher one (the protection's policy, admin unless it names another), never its requester:
``ModelRegistry.review`` decides under the collection's lock. Linking also needs ``read`` on the
artifact version's project: no one registers what they can't read. The actor of every change is the
API key's user, never a value the client sends. 401: no key; 403: no
role, or too low a one; 404: no such collection, version or alias; 409: a protected alias (the
promotion request opened is named); 400: a bad name or a refused change.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tracklet.artifacts.names import check_artifact_name
from tracklet.errors import (AliasMoved, ArtifactNameError, ArtifactNotFound, LinkedVersionDeleted, PromotionCheckRequired,
                             PromotionRequired, PromotionReviewRefused, RegistryError, RegistryUnavailable)
from tracklet.registry.refs import check_registry_name, check_selector
from tracklet.registry.sql import (DEFAULT_APPROVER_ROLE, REQUEST_PENDING, Link, ModelRegistry, Protection,
                                   role_at_least)
from tracklet.server.auth import DEV_PRINCIPAL, Principal
from tracklet.server.models import INT64_MAX, ArtifactVersion, ErrorResponse, LineageResponse, RowId, errors
from tracklet.server import audit
from tracklet.server.registry_lineage import registered_lineage
from tracklet.server.registry_checks import DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, RegistryChecks
from tracklet.server.registry_roles import ACTIONS, RegistryRoles, role_allows
from tracklet.server.routes_artifacts_read import _version_model
from tracklet.server.body import bounded_router
from tracklet.server.params import version_param

router = bounded_router(prefix="/api/v1", tags=["registry"])
_ERRORS = errors(400, 403, 404, 409, 503)
_COLLECTION = "/registries/{registry}/collections/{collection}"


class LinkRequest(BaseModel):
    project: str = Field(max_length=128)
    name: str = Field(max_length=128)
    version: int = Field(ge=0, description="N of the project's artifact version vN")
    digest: str | None = Field(default=None, max_length=64, description="its content digest, checked if given")
    aliases: list[str] = Field(default_factory=list, max_length=100)
    reason: str = Field(default="", max_length=4096)


class AliasRequest(BaseModel):
    version: str = Field(max_length=128, description="`vN`, `latest` or another alias of the collection")
    reason: str = Field(default="", max_length=4096)


class SaveAliasesRequest(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=100, description="aliases to point at the version")
    remove: list[str] = Field(default_factory=list, max_length=100,
                              description="aliases to take off it (one that names another version now stays)")
    reason: str = Field(default="", max_length=4096)


class SaveAliasesResponse(BaseModel):
    events: list[AliasMove] = Field(description="the moves made, in order")


class CardRequest(BaseModel):
    text: str = Field(max_length=1 << 20)


class ProtectRequest(BaseModel):
    approvals: int = Field(ge=0, le=100, description="approvals a move needs; 0 lifts the protection")
    check: int | None = Field(default=None, ge=1, le=INT64_MAX, description="a webhook automation's id: it must answer 2xx before "
                                "an approved promotion moves the alias (server admins make automations)")
    check_timeout: float = Field(default=DEFAULT_TIMEOUT, ge=MIN_TIMEOUT, le=MAX_TIMEOUT, strict=True,
                                 description="seconds the check may take to answer (a timeout fails it)")
    approver_role: str = Field(default=DEFAULT_APPROVER_ROLE, pattern="^(viewer|member|admin)$",
                               description="the registry role whose holders (and holders of higher roles) may "
                                           "approve or reject a promotion, never its requester")


class ReviewRequest(BaseModel):
    decision: str = Field(pattern="^(approve|reject)$")
    comment: str = Field(default="", max_length=4096)


class RegistryLink(BaseModel):
    """One version of a registry collection: a link to an artifact version (nothing copied)."""

    registry: str
    collection: str
    version: int = Field(description="N of the collection's vN")
    source_project: str
    source_name: str
    source_version: int = Field(description="N of the artifact's vN in its project")
    source_digest: str
    linked_at: float
    linked_by: str
    type: str
    aliases: list[str] = Field(description="`vN`, `latest` if it is the latest, then custom aliases")
    requests: list[int] = Field(description="promotion requests this link opened (protected aliases)")
    path: str = Field(description="`registry/collection:vN`")
    source: str = Field(description="`project/name:vN` of the artifact version")


class LinkResponse(BaseModel):
    link: RegistryLink


class LinksResponse(BaseModel):
    links: list[RegistryLink]


class RegistryVersionResponse(BaseModel):
    link: RegistryLink
    version: ArtifactVersion | None = Field(description="the linked artifact version: its blobs are its project's "
                                            "(null when `files_deleted`)")
    files_deleted: bool = Field(default=False, description=(
        "the linked artifact version was deleted (`break_registry_links`): the registry keeps this version and "
        "its alias history, but it has no files"))


class RegistryCollection(BaseModel):
    registry: str
    collection: str
    type: str
    versions: int
    latest: str
    aliases: dict[str, str] = Field(description="alias -> `vN`")
    role: str = Field(description="the caller's role in the registry: viewer, member or admin")


class RegistryCollectionsResponse(BaseModel):
    collections: list[RegistryCollection]


class AliasMove(BaseModel):
    """One alias move: `from_version` null when the alias was new, `to_version` null when removed."""

    id: int
    registry: str
    collection: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: float
    reason: str
    request_id: int | None = Field(description="the approved promotion request that moved it")


class AliasMoveResponse(BaseModel):
    event: AliasMove | None = Field(description="null: the alias named that version already")


class AliasHistoryResponse(BaseModel):
    events: list[AliasMove]


class ModelCard(BaseModel):
    registry: str
    collection: str
    version: int
    revision: int
    text: str = Field(description="Markdown with YAML front matter")
    author: str
    created_at: float


class ModelCardResponse(BaseModel):
    card: ModelCard | None


class ProtectionResponse(BaseModel):
    alias: str
    approvals: int
    approver_role: str = Field(default=DEFAULT_APPROVER_ROLE, description="who may review a promotion: holders of "
                               "this registry role or a higher one (viewer < member < admin)")
    check: int | None = Field(default=None, description="the webhook automation that checks promotions")
    check_timeout: float | None = Field(default=None, description="seconds the check may take to answer")


class PromotionReview(BaseModel):
    request_id: int
    reviewer: str
    decision: str
    comment: str
    at: float


class PromotionRequestModel(BaseModel):
    id: int
    registry: str
    collection: str
    alias: str
    to_version: int
    from_version: int | None
    requester: str
    reason: str
    state: str = Field(description="pending, approved, rejected or superseded")
    created_at: float
    decided_at: float | None
    approvals_required: int
    approver_role: str = Field(description="who may review it: holders of this registry role or a higher one")
    reviews: list[PromotionReview]
    role: str | None = Field(default=None, description="the caller's role in its registry")
    may_review: bool = Field(default=False, description="whether the caller may approve or reject it now: it is "
                             "pending, theirs to review by role, not their own, and not reviewed by them yet")


class PromotionRequestResponse(BaseModel):
    request: PromotionRequestModel


class PromotionRequestsResponse(BaseModel):
    requests: list[PromotionRequestModel]


_REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar("registry_request", default=None)


def _audit_in_transaction(connection: Any, kinds: list[str]) -> None:
    """``ModelRegistry``'s ``on_write``: the request's audit event, in the change's transaction
    (``audit.record_in``), so a change never commits without its event nor an event without its
    change. A move of a protected alias commits the request it opened and answers 409."""
    request = _REQUEST.get()
    if request is None:
        return
    route = request.scope.get("route")
    opened = getattr(route, "name", None) in ("set_alias", "save_aliases") and (
        "promotion.requested" in kinds or REQUEST_PENDING in kinds)
    audit.record_in(connection, request, status=409 if opened else 200)


def registry_of(request: Request) -> ModelRegistry:
    """The server's registry, over its database (the artifacts' engine: migrated at start); for
    ``tracklet ui`` over a data root, that root's ``registry.sqlite`` (404 until something is linked).
    Every registry route calls it first: it makes ``request`` the one whose audit event the
    registry's next writing transaction carries."""
    _REQUEST.set(request)
    state = request.app.state
    registry = getattr(state, "model_registry", None)
    if registry is not None:
        return registry
    root = getattr(state, "registry_root", None)
    if root is not None:
        from tracklet.registry.service import open_local

        found = open_local(root, create=False)
        if found is None:
            raise HTTPException(status_code=404, detail="no registry collection: nothing was linked in this data root")
        registry = found
    else:
        from tracklet.server.events import registry_event

        artifacts = state.tracklet.artifacts
        registry = ModelRegistry(artifacts.engine, on_event=registry_event, on_write=_audit_in_transaction,
                                 holding=artifacts.hold_version)
    state.model_registry = registry
    return registry


def _actor(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return principal.name if principal is not None else "unknown"


def _allow(request: Request, project: str, needed: str) -> None:
    authorizer = request.app.state.tracklet.authorizer
    if authorizer is not None:
        authorizer.check(request, project, needed)


def _roles(request: Request) -> RegistryRoles | None:
    """The registry roles, None on a server without keys (``--dev``, ``tracklet ui``): everyone is admin."""
    app = request.app.state.tracklet
    if app.authorizer is None:
        return None
    roles = getattr(request.app.state, "registry_roles", None)
    if roles is None:
        roles = request.app.state.registry_roles = RegistryRoles(app.authorizer.accounts.engine)
    return roles


def _checks(request: Request) -> RegistryChecks | None:
    """The webhook checks of a tracking server (None for ``tracklet ui`` over a data root)."""
    if getattr(request.app.state, "registry_root", None) is not None:
        return None
    checks = getattr(request.app.state, "registry_checks", None)
    if checks is None:
        app = request.app.state.tracklet
        checks = request.app.state.registry_checks = RegistryChecks(app.store.engine, app.automations)
    return checks


def _principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or DEV_PRINCIPAL


def _role(request: Request, registry: str) -> str | None:
    roles = _roles(request)
    return "admin" if roles is None else roles.role(_principal(request), registry)


def role_of(request: Request, registry: str, action: str) -> tuple[bool, str | None, str]:
    """Whether the caller's role in ``registry`` allows ``action``, that role (None: none), and
    the caller's name, for a refusal that says more than ``_require``'s (everyone is admin on a
    server without keys)."""
    roles = _roles(request)
    principal = _principal(request)
    if roles is None:
        return True, "admin", principal.name
    role = roles.role(principal, registry)
    return role_allows(role, action), role, principal.name


def _require(request: Request, registry: str, action: str, *, claim: bool = False) -> str:
    """The caller's role in ``registry`` if it allows ``action``; 403 otherwise. With ``claim``
    (a link), a registry without members yet makes the caller its admin."""
    roles = _roles(request)
    if roles is None:
        return "admin"
    principal = _principal(request)
    role = roles.role(principal, registry)
    if role is None and claim:
        role = roles.claim(principal, registry)
    if not role_allows(role, action):
        raise HTTPException(status_code=403, detail=(
            f"user {principal.name!r} needs the {ACTIONS[action]} role in registry {registry!r} to "
            f"{action.replace('_', ' ')}" + (f" (has {role})" if role else " (not a member; a registry admin can add them)")))
    return role  # type: ignore[return-value]


# The registry's refusals, each family answered by one app-level handler (install_error_handlers):
# routes raise them as they come. ArtifactNameError (a bad name) is also a ValueError: 400.
REFUSALS: dict[type[Exception], int] = {ArtifactNameError: 400, ArtifactNotFound: 404, RegistryError: 400,
                                        AliasMoved: 412, LinkedVersionDeleted: 409,
                                        PromotionRequired: 409, PromotionReviewRefused: 403,
                                        RegistryUnavailable: 503}


async def _refusal(request: Request, error: Exception) -> JSONResponse:
    status = next(REFUSALS[kind] for kind in type(error).__mro__ if kind in REFUSALS)
    return JSONResponse(status_code=status, content=ErrorResponse(detail=str(error)).model_dump())


def install_error_handlers(app: FastAPI) -> None:
    """Answer the registry's errors wherever they are raised: a bad name 400, no such collection,
    version or alias 404, a refused change 400, a protected alias 409 (the request opened is
    named), as is guarding a version whose artifact version was deleted, a review its reviewer may not make 403, the registry's database refusing a change 503
    (nothing changed)."""
    for kind in REFUSALS:
        app.add_exception_handler(kind, _refusal)


def _names(registry: str, collection: str) -> tuple[str, str]:
    return check_registry_name(registry), check_artifact_name(collection)


def _resolve(request: Request, registry: str, collection: str, selector: str) -> Link:
    registry, collection = _names(registry, collection)
    return registry_of(request).resolve(registry, collection, check_selector(selector))


@router.get("/registries", response_model=RegistryCollectionsResponse, responses=_ERRORS,
            summary="Registry collections")
def list_collections(request: Request, registry: str | None = Query(None, max_length=128)) -> dict[str, Any]:
    """Every collection (of `registry`, if given): type, version count, latest, aliases."""
    try:
        model_registry = registry_of(request)
    except HTTPException:  # a data root nothing was linked in yet
        return {"collections": []}
    roles = _roles(request)
    mine = None if roles is None else roles.roles(_principal(request))  # None: every registry's admin
    found = model_registry.collections(check_registry_name(registry) if registry else None)
    return {"collections": [{**item, "role": "admin" if mine is None else mine[item["registry"]]}
                            for item in found if mine is None or item["registry"] in mine]}


@router.post(_COLLECTION + "/links", response_model=LinkResponse, responses=_ERRORS,
             summary="Link an artifact version into a collection")
def link(request: Request, registry: str, collection: str, body: LinkRequest) -> dict[str, Any]:
    """Link `project/name:vN` as the collection's next version (or return its link), then give
    it `aliases`. Nothing is copied. Needs the member role in the registry (the first link into a
    new registry, one without collections or members, makes the caller its admin) and `read` on
    the version's project."""
    registry, collection = _names(registry, collection)
    _allow(request, body.project, "read")
    artifacts = request.app.state.tracklet.artifacts
    info = artifacts.registry.version(body.project, check_artifact_name(body.name), f"v{body.version}")
    if body.digest is not None and info.digest != body.digest:
        raise RegistryError(f"{info.qualified_name} has digest {info.digest}, not {body.digest}")
    # Only a new registry is claimed: one whose links were made before roles, by no user of
    # this server (a --dev server's), keeps waiting for a server admin to give roles.
    _require(request, registry, "link", claim=not registry_of(request).collections(registry))
    found = registry_of(request).link(registry, collection, info, body.aliases, actor=_actor(request),
                                      reason=body.reason)
    return {"link": found.to_json()}


@router.get(_COLLECTION + "/versions", response_model=LinksResponse, responses=_ERRORS,
            summary="A collection's versions")
def versions(request: Request, registry: str, collection: str, limit: int = Query(1000, ge=1, le=10_000),
             offset: int = Query(0, ge=0, le=2**62)) -> dict[str, Any]:
    registry, collection = _names(registry, collection)
    _require(request, registry, "read")
    links = registry_of(request).versions(registry, collection, limit=limit, offset=offset)
    return {"links": [item.to_json() for item in links]}


@router.get("/projects/{project}/artifacts/{name}/versions/{version}/links", response_model=LinksResponse,
            responses=_ERRORS, summary="The registry versions that link an artifact version")
def version_links(request: Request, project: str, name: str, version: str) -> dict[str, Any]:
    """The registry collections' versions that link artifact version `version` (`vN`) of
    `project/name` (W&B's `artifact.linked_artifacts`), by registry, collection and version; only
    those of registries where the caller has a role that reads (viewer or higher): the others
    are left out, unnamed. Needs `read` on the project. None (an empty list) where nothing was
    ever linked; 404 if the version doesn't exist."""
    number = version_param(version)
    info = request.app.state.tracklet.artifacts.registry.version(project, check_artifact_name(name), f"v{number}")
    try:
        model_registry = registry_of(request)
    except HTTPException:  # a data root nothing was linked in yet
        return {"links": []}
    found = model_registry.links_to(info.project, info.name, info.version)
    readable = {registry for registry in {link.registry for link in found} if role_of(request, registry, "read")[0]}
    listed = sorted((link for link in found if link.registry in readable),
                    key=lambda link: (link.registry, link.collection, link.version))
    return {"links": [link.to_json() for link in listed]}


@router.get(_COLLECTION + "/versions/{selector}", response_model=RegistryVersionResponse, responses=_ERRORS,
            summary="One version: the link and its artifact")
def version(request: Request, registry: str, collection: str, selector: str) -> dict[str, Any]:
    """The link `selector` (`vN`, `latest`, an alias) names and the artifact version it links
    (an `ArtifactVersion`: download its blobs from its project, which needs `read` there). A
    link whose artifact version was deleted (`DELETE .../versions/vN?break_registry_links=true`)
    answers `files_deleted` and a null `version`: the registry keeps it, its aliases and their history."""
    _require(request, check_registry_name(registry), "read")
    found = _resolve(request, registry, collection, selector)
    artifacts = request.app.state.tracklet.artifacts
    try:
        info = artifacts.registry.version(found.source_project, found.source_name, f"v{found.source_version}")
    except ArtifactNotFound:
        if not artifacts.registry.was_deleted(found.source_project, found.source_name, found.source_version):
            raise
        return {"link": found.to_json(), "version": None, "files_deleted": True}
    return {"link": found.to_json(), "version": _version_model(info).model_dump()}


@router.get(_COLLECTION + "/versions/{selector}/lineage", response_model=LineageResponse, responses=_ERRORS,
            response_model_exclude_unset=True, summary="A registered model's lineage graph")
def version_lineage(request: Request, registry: str, collection: str, selector: str,
                    hops: int = Query(3, ge=1, le=10, description="Edges out from the linked artifact version, at most"),
                    max_nodes: int = Query(200, ge=1, le=1000, description="Runs and versions at most (then `truncated`)"),
                    ) -> LineageResponse:
    """The registry version, the artifact version it links, the run that logged it, that run's
    inputs (dataset versions) and further hops, and the code commit of each run
    (server/registry_lineage.py). Needs the viewer role and `read` on the version's project (the
    graph leaves out runs and versions of projects the caller may not read)."""
    _require(request, check_registry_name(registry), "read")
    found = _resolve(request, registry, collection, selector)
    _allow(request, found.source_project, "read")
    return registered_lineage(request, found, hops=hops, max_nodes=max_nodes)


@router.put(_COLLECTION + "/aliases/{alias}", response_model=AliasMoveResponse, responses=_ERRORS,
            summary="Point an alias at a version")
def set_alias(request: Request, registry: str, collection: str, alias: str, body: AliasRequest) -> dict[str, Any]:
    """Move `alias` to the version `version` names, appending the move to the alias's history.
    A protected alias answers 409 naming the promotion request opened (for every role: only
    reviews move it). Needs the member role."""
    registry, collection = _names(registry, collection)
    _require(request, registry, "move_alias")
    # `version` is resolved inside the move's transaction (no read before it): one transaction a move.
    event = registry_of(request).set_alias(registry, collection, alias, check_selector(body.version),
                                           actor=_actor(request), reason=body.reason)
    return {"event": event.to_json() if event is not None else None}


@router.delete(_COLLECTION + "/aliases/{alias}", response_model=AliasMoveResponse, responses={**_ERRORS, 412: {
                   "model": ErrorResponse, "description": "The alias names another version (or none) than `version` "
                   "now: someone moved it since the caller read it; nothing was removed"}},
               summary="Remove an alias")
def remove_alias(request: Request, registry: str, collection: str, alias: str,
                 reason: str = Query("", max_length=4096),
                 version: str | None = Query(None, max_length=32, description=(
                     "`vN`: remove the alias only if it still names that version (the one the caller read), "
                     "checked in the removal's transaction; 412 if it names another one (or none) now. "
                     "Without it the alias is removed wherever it points (an explicit removal)."))) -> dict[str, Any]:
    """Remove `alias` from the collection, appending the removal to its history; a protected
    alias answers 409. With `version`, only if it still names that version (412 otherwise,
    nothing changed): what `RemoteRegistry.remove_alias(expected=N)` sends, so a client that
    read the alias a while ago never removes it from the version someone moved it to since.
    Needs the member role."""
    _require(request, check_registry_name(registry), "remove_alias")
    expected = None
    if version is not None:
        expected = version_param(version)
    if expected is None:
        _resolve(request, registry, collection, alias)  # 404 naming what is missing
    registry, collection = _names(registry, collection)
    event = registry_of(request).remove_alias(registry, collection, alias, expected=expected,
                                              unconditional=expected is None, actor=_actor(request), reason=reason)
    return {"event": event.to_json() if event is not None else None}


@router.post(_COLLECTION + "/versions/{version}/aliases", response_model=SaveAliasesResponse, responses=_ERRORS,
             summary="Move a version's aliases at once")
def save_aliases(request: Request, registry: str, collection: str, version: str,
                 body: SaveAliasesRequest) -> dict[str, Any]:
    """Point `add` at version `version` (`vN`) and take `remove` off it, in one transaction
    (`artifact.aliases` edits + `save()`): all or nothing. An alias of `remove` that names
    another version now is left there; a protected alias to remove answers 409, one to add 409
    naming the promotion request opened (or the caller's pending one for it), and nothing
    moves. Needs the member role."""
    registry, collection = _names(registry, collection)
    number = version_param(version)
    _require(request, registry, "move_alias")
    if body.remove:
        _require(request, registry, "remove_alias")
    events = registry_of(request).save_aliases(registry, collection, number, body.add, body.remove,
                                               actor=_actor(request), reason=body.reason)
    return {"events": [event.to_json() for event in events]}


@router.delete(_COLLECTION + "/versions/{version}", response_model=SaveAliasesResponse, responses=_ERRORS,
               summary="Unlink a version from its collection")
def unlink_version(request: Request, registry: str, collection: str, version: str,
                   reason: str = Query("", max_length=4096)) -> dict[str, Any]:
    """Remove version `version` (`vN`) from the collection (W&B's `artifact.unlink()`): its
    aliases are removed first, each in the alias history, then the version (an event of alias
    `vN`); the artifact version it linked stays, and its number is never given again. A version a
    protected alias names answers 409, one a pending promotion request targets 400; nothing
    changes then. Needs the member role (as W&B's registry)."""
    registry, collection = _names(registry, collection)
    number = version_param(version)
    _require(request, registry, "unlink")
    events = registry_of(request).unlink(registry, collection, number, actor=_actor(request),
                                         reason=reason or "unlinked")
    return {"events": [event.to_json() for event in events]}


@router.get(_COLLECTION + "/history", response_model=AliasHistoryResponse, responses=_ERRORS,
            summary="Every alias move, oldest first")
def history(request: Request, registry: str, collection: str,
            alias: str | None = Query(None, max_length=128)) -> dict[str, Any]:
    registry, collection = _names(registry, collection)
    _require(request, registry, "read")
    events = registry_of(request).history(registry, collection, alias)
    return {"events": [event.to_json() for event in events]}


@router.get(_COLLECTION + "/versions/{selector}/card", response_model=ModelCardResponse, responses=_ERRORS,
            summary="A version's model card")
def card(request: Request, registry: str, collection: str, selector: str) -> dict[str, Any]:
    _require(request, check_registry_name(registry), "read")
    found = _resolve(request, registry, collection, selector)
    saved = registry_of(request).card(found.registry, found.collection, found.version)
    return {"card": saved.to_json() if saved is not None else None}


@router.put(_COLLECTION + "/versions/{selector}/card", response_model=ModelCardResponse, responses=_ERRORS,
            summary="Save a model card revision")
def save_card(request: Request, registry: str, collection: str, selector: str, body: CardRequest) -> dict[str, Any]:
    _require(request, check_registry_name(registry), "edit_card")
    found = _resolve(request, registry, collection, selector)
    saved = registry_of(request).save_card(found.registry, found.collection, found.version, body.text,
                                           author=_actor(request))
    return {"card": saved.to_json()}


class ProtectionsResponse(BaseModel):
    protections: list[ProtectionResponse] = Field(description="the collection's protected aliases, by name")


@router.get(_COLLECTION + "/protections", response_model=ProtectionsResponse, responses=_ERRORS,
            summary="A collection's protected aliases")
def protections(request: Request, registry: str, collection: str) -> dict[str, Any]:
    """Each protected alias: the approvals a move needs, the registry role that may approve, and
    its webhook check (an automation id)."""
    registry, collection = _names(registry, collection)
    _require(request, registry, "read")
    found = registry_of(request).protections(registry, collection)
    return {"protections": [_policy(request, registry, collection, found[alias]) for alias in sorted(found)]}


def _policy(request: Request, registry: str, collection: str, protection: Protection | None) -> dict[str, Any] | None:
    """A protected alias's policy as ``ProtectionResponse`` says it (None: not protected)."""
    if protection is None:
        return None
    checks = _checks(request)
    check = checks.get(registry, collection, protection.alias) if checks is not None else None
    return {**protection.to_json(), "check": check.automation_id if check else None,
            "check_timeout": check.timeout if check else None}


@router.put(_COLLECTION + "/protections/{alias}", response_model=ProtectionResponse, responses=_ERRORS,
            summary="Protect an alias")
def protect(request: Request, registry: str, collection: str, alias: str, body: ProtectRequest) -> dict[str, Any]:
    """Require `approvals` approvals to move `alias` (0 lifts it, and its check) from holders of
    `approver_role` or a higher registry role, and with `check` a webhook automation's 2xx before
    an approved promotion moves it. The audit event says the policy before and after
    (`detail.previous`, `detail.policy`). Needs the admin role."""
    _require(request, check_registry_name(registry), "protect")
    latest = _resolve(request, registry, collection, "latest")
    if body.check is not None and not body.approvals:
        raise HTTPException(status_code=400, detail="a check guards promotions: it needs approvals of at least 1")
    checks = _checks(request)
    if body.check is not None and checks is None:
        raise HTTPException(status_code=400, detail="webhook checks need a tracking server (tracklet server)")
    alias = check_selector(alias)
    model_registry = registry_of(request)
    approver_role = body.approver_role if body.approvals else DEFAULT_APPROVER_ROLE
    policy = {"alias": alias, "approvals": body.approvals, "approver_role": approver_role,
              "check": body.check, "check_timeout": body.check_timeout if body.check is not None else None}
    previous = _policy(request, latest.registry, latest.collection,
                       model_registry.protections(latest.registry, latest.collection).get(alias))
    # The audit event of this change (written in protect's transaction) says what it replaced.
    audit.note(request, previous=previous, policy=policy if body.approvals else None)
    if checks is not None:
        checks.set(latest.registry, latest.collection, alias, body.check, timeout=body.check_timeout)
    model_registry.protect(latest.registry, latest.collection, alias, body.approvals,
                           approver_role=approver_role)
    return policy


@router.get("/registry-requests", response_model=PromotionRequestsResponse, responses=_ERRORS,
            summary="Promotion requests")
def requests(request: Request, registry: str | None = Query(None, max_length=128),
             state: str | None = Query("pending", pattern="^(pending|approved|rejected|superseded)$")) -> dict[str, Any]:
    """Promotion requests (of `registry`, in `state`) of the registries the caller has a role in,
    each with that role and whether the caller may review it (`may_review`)."""
    roles = _roles(request)
    mine = None if roles is None else roles.roles(_principal(request))  # None: every registry's admin
    found = registry_of(request).requests(check_registry_name(registry) if registry else None, state=state)
    me = _actor(request)
    return {"requests": [_request_json(item, "admin" if mine is None else mine[item.registry], me)
                         for item in found if mine is None or item.registry in mine]}


def _request_json(item: Any, role: str | None, me: str) -> dict[str, Any]:
    """A promotion request as the caller (``me``, holding ``role`` in its registry) sees it."""
    may_review = (item.state == "pending" and item.requester != me and role_at_least(role, item.approver_role)
                  and all(review["reviewer"] != me for review in item.reviews))
    return {**item.to_json(), "role": role, "may_review": may_review}


@router.post("/registry-requests/{request_id}/reviews", response_model=PromotionRequestResponse, responses=_ERRORS,
             summary="Approve or reject a request")
def review(request: Request, request_id: RowId, body: ReviewRequest) -> dict[str, Any]:
    """Approve or reject promotion request `request_id` (not your own). The approval that completes
    the count moves the alias. Needs the alias's approver role (admin unless its protection names
    another) or a higher one in the request's registry: 403 otherwise, naming both roles."""
    model_registry = registry_of(request)
    checks = _checks(request)
    pending = model_registry.request(request_id)
    role = _role(request, pending.registry)
    check = None if checks is None else checks.get(pending.registry, pending.collection, pending.alias)
    review = functools.partial(model_registry.review, request_id, body.decision, reviewer=_actor(request),
                               comment=body.comment, reviewer_role=role, roles=True)
    try:
        decided = review(checked=check is None)
    except PromotionCheckRequired:
        # This approval completes the request: the alias's check must pass first, asked
        # outside any transaction (it may take up to its timeout).
        assert checks is not None and check is not None
        outcome = checks.run(check, pending.to_json(), actor=_actor(request))
        audit.note(request, check=outcome.detail, check_passed=outcome.passed)
        if not outcome.passed:
            raise HTTPException(status_code=409, detail=(
                f"promotion request #{request_id} stays pending: its check failed ({outcome.detail}); "
                "approve again once it passes")) from None
        decided = review(checked=True)
    return {"request": _request_json(decided, role, _actor(request))}


class RegistryMember(BaseModel):
    user: str
    role: str = Field(description="viewer, member or admin")


class RegistryMembersResponse(BaseModel):
    registry: str
    members: list[RegistryMember]


class RegistryRoleRequest(BaseModel):
    role: str = Field(pattern="^(viewer|member|admin)$")


def _member_roles(request: Request) -> RegistryRoles:
    roles = _roles(request)
    if roles is None:
        raise HTTPException(status_code=400, detail="this server has no API keys (--dev): registry roles don't apply")
    return roles


@router.get("/registries/{registry}/members", response_model=RegistryMembersResponse, responses=_ERRORS,
            summary="A registry's members and their roles")
def registry_members(request: Request, registry: str) -> dict[str, Any]:
    registry = check_registry_name(registry)
    _require(request, registry, "read")
    return {"registry": registry, "members": _member_roles(request).members(registry)}


@router.put("/registries/{registry}/members/{user}", response_model=RegistryMembersResponse, responses=_ERRORS,
            summary="Give a user a registry role")
def set_registry_member(request: Request, registry: str, user: str, body: RegistryRoleRequest) -> dict[str, Any]:
    """Give `user` the role `viewer`, `member` or `admin` in `registry`. Needs the admin role."""
    registry = check_registry_name(registry)
    _require(request, registry, "manage_members")
    roles = _member_roles(request)
    try:
        roles.set_member(registry, user, body.role)
    except LookupError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    return {"registry": registry, "members": roles.members(registry)}


@router.delete("/registries/{registry}/members/{user}", response_model=RegistryMembersResponse, responses=_ERRORS,
               summary="Take a user's registry role")
def remove_registry_member(request: Request, registry: str, user: str) -> dict[str, Any]:
    registry = check_registry_name(registry)
    _require(request, registry, "manage_members")
    roles = _member_roles(request)
    if not roles.remove_member(registry, user):
        raise HTTPException(status_code=404, detail=f"{user!r} has no role in registry {registry!r}")
    return {"registry": registry, "members": roles.members(registry)}
