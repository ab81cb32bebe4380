"""Accounts over HTTP: who am I, my API keys, users (server admins), project members.

Every route here sits behind ``app.require_access`` like the rest of the API, so the sender is
authenticated before a handler runs; handlers check what more they need (server admin, project
admin). On a ``--dev`` server there are no accounts: these routes answer 404 except ``/me``.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from tracklet.server.auth import DEV_PRINCIPAL, Accounts, AuthError, Principal, requires
from tracklet.server.body import bounded_router
from tracklet.server.models import (
    ApiKey,
    ApiKeysResponse,
    KeyRequest,
    Me,
    Member,
    MembersResponse,
    NewKeyResponse,
    RoleRequest,
    User,
    UserRequest,
    UsersResponse,
    errors,
)

router = bounded_router(prefix="/api/v1", tags=["accounts"])


_ERRORS = errors(400, 401, 403, 404)


def _accounts(request: Request) -> Accounts:
    authorizer = request.app.state.tracklet.authorizer
    if authorizer is None:
        raise HTTPException(status_code=404, detail="this is a --dev server: it has no users or API keys")
    return authorizer.accounts


def _principal(request: Request) -> Principal:
    return getattr(request.state, "principal", DEV_PRINCIPAL)


def _require_admin(request: Request) -> Principal:
    principal = _principal(request)
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail=f"user {principal.name!r} is not a server admin")
    return principal


def _not_found(error: AuthError) -> HTTPException:
    return HTTPException(status_code=404, detail=str(error))


@router.get("/me", response_model=Me, responses=_ERRORS, summary="Who the API key belongs to")
async def me(request: Request) -> Me:
    principal = _principal(request)
    return Me(user=principal.name, is_admin=principal.is_admin, auth=request.app.state.tracklet.authorizer is not None,
              key_id=principal.key_id)


@router.get("/keys", response_model=ApiKeysResponse, responses=_ERRORS, summary="Your API keys (never their secrets)")
def list_keys(request: Request) -> ApiKeysResponse:
    accounts = _accounts(request)
    return ApiKeysResponse(keys=[ApiKey(**key) for key in accounts.keys(_principal(request).name)])


@router.post("/keys", response_model=NewKeyResponse, responses=_ERRORS, summary="Make yourself a new API key")
def create_key(request: Request, body: KeyRequest) -> NewKeyResponse:
    accounts = _accounts(request)
    new = accounts.create_key(_principal(request).name, label=body.label)
    return NewKeyResponse(key=new.key, key_id=new.key_id, user=new.user, label=new.label)


@router.delete("/keys/{key_id}", status_code=204, responses=_ERRORS, summary="Revoke one of your keys (admins: any)")
def revoke_key(request: Request, key_id: str) -> None:
    accounts = _accounts(request)
    principal = _principal(request)
    owner = None if principal.is_admin else principal.name
    try:
        accounts.revoke_key(key_id, owner=owner)
    except AuthError as error:
        raise _not_found(error) from None


@router.get("/users", response_model=UsersResponse, responses=_ERRORS, summary="Users (server admins)")
def list_users(request: Request) -> UsersResponse:
    accounts = _accounts(request)
    _require_admin(request)
    return UsersResponse(users=[User(**user) for user in accounts.users()])


@router.post("/users", response_model=NewKeyResponse, responses=_ERRORS,
             summary="Create a user and their first API key (server admins)")
def create_user(request: Request, body: UserRequest) -> NewKeyResponse:
    accounts = _accounts(request)
    _require_admin(request)
    new = accounts.create_user(body.name, admin=body.admin)
    return NewKeyResponse(key=new.key, key_id=new.key_id, user=new.user, label=new.label)


@router.delete("/users/{name}", status_code=204, responses=_ERRORS,
               summary="Disable a user and revoke their keys (server admins)")
def disable_user(request: Request, name: str) -> None:
    accounts = _accounts(request)
    _require_admin(request)
    try:
        accounts.disable_user(name)
    except AuthError as error:
        raise _not_found(error) from None


@router.get("/projects/{project}/members", response_model=MembersResponse, responses=_ERRORS,
            summary="A project's members and their roles")
def list_members(request: Request, project: str) -> MembersResponse:
    accounts = _accounts(request)
    return MembersResponse(members=[Member(**member) for member in accounts.members(project)])


@router.put("/projects/{project}/members/{user}", status_code=204, responses=_ERRORS,
            summary="Give a user a role in a project (project admins)")
@requires("admin")
def set_member(request: Request, project: str, user: str, body: RoleRequest) -> None:
    accounts = _accounts(request)  # the guard checked requires("admin")
    try:
        accounts.set_member(project, user, body.role)
    except AuthError as error:
        raise _not_found(error) from None


@router.delete("/projects/{project}/members/{user}", status_code=204, responses=_ERRORS,
               summary="Remove a user from a project (project admins)")
@requires("admin")
def remove_member(request: Request, project: str, user: str) -> None:
    accounts = _accounts(request)  # the guard checked requires("admin")
    try:
        accounts.remove_member(project, user)
    except AuthError as error:
        raise _not_found(error) from None
