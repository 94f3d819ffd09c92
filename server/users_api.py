"""The people API: admins list, create, change, disable, enable and delete users, reset
passwords and end sessions, and read the audit log; everyone changes their own password."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hamlet.contract import IDENT_PATTERN, Ident
from server.audit import Action, AuditEntry
from server.auth import Principal, is_admin
from server.clientaddr import client_address
from server.deps import Caller, State, deny, registry_refusals
from server.errors import ErrorOut, ValidationErrorOut
from server.registry import RegistryError, Role
from server.secrets_ import MIN_PASSWORD_LEN, verify_password

router = APIRouter(prefix="/api/v1", tags=["people"])
UserName = Annotated[str, Path(pattern=IDENT_PATTERN, examples=["ana"])]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LEN, max_length=1024)]


def _err(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ValidationErrorOut if c == 422 else ErrorOut} for c in codes}


class UserOut(BaseModel):
    name: str
    role: Role
    commune: str | None = None
    hamlet: str | None = None
    disabled: bool = False
    must_change_password: bool = Field(False, description="temporary password not yet changed")
    sessions: int = Field(0, description="open sessions")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Ident
    role: Role
    commune: Ident | None = None
    hamlet: Ident | None = None
    password: Password = Field(description="temporary: changed by the person at first login")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    commune: Ident | None = None
    hamlet: Ident | None = None
    disabled: bool | None = None


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: str = Field(max_length=1024)
    new: Password


class Revoked(BaseModel):
    sessions: int


def _admin(caller: Principal) -> str:
    if not is_admin(caller):
        raise deny(caller)
    assert caller.user is not None
    return caller.user.name


def _admin_at(request: Request, state: State, caller: Principal) -> tuple[str, str]:
    """The admin's name and the address they act from (403 for anyone else)."""
    return _admin(caller), client_address(request, state.trusted_proxies)


async def _user_out(state: State) -> list[UserOut]:
    return [
        UserOut(
            name=u.name,
            role=u.role,
            commune=u.commune,
            hamlet=u.hamlet,
            disabled=u.disabled,
            must_change_password=u.must_change_password,
            sessions=sessions,
        )
        for u, sessions in await state.registry.users_with_sessions()
    ]


async def _one(state: State, name: str) -> UserOut:
    users = await _user_out(state)
    for u in users:
        if u.name == name:
            return u
    raise HTTPException(404, f"no user {name!r}")


@router.get(
    "/users", response_model=list[UserOut], summary="People (admin)", responses=_err(401, 403)
)
async def list_users(state: State, caller: Caller) -> list[UserOut]:
    _admin(caller)
    return await _user_out(state)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    summary="Add a person with a temporary password (admin)",
    responses=_err(401, 403, 409, 422),
)
async def add_user(request: Request, state: State, caller: Caller, body: UserIn) -> UserOut:
    actor, address = _admin_at(request, state, caller)
    try:
        await state.registry.create_user(
            body.name,
            body.role,
            body.password,
            commune=body.commune,
            hamlet=body.hamlet,
            actor=actor,
            address=address,
        )
    except RegistryError as err:
        raise HTTPException(409, str(err)) from err
    return await _one(state, body.name)


@router.patch(
    "/users/{name}",
    response_model=UserOut,
    summary="Change a person's role and scope, or disable / enable them (admin)",
    responses=_err(401, 403, 404, 422),
)
async def change_user(
    request: Request, state: State, caller: Caller, name: UserName, body: UserChange
) -> UserOut:
    actor, address = _admin_at(request, state, caller)
    if body.disabled and caller.user is not None and caller.user.name == name:
        raise HTTPException(409, "you cannot disable yourself")
    current = await state.registry.user(name)
    if current is None:
        raise HTTPException(404, f"no user {name!r}")
    with registry_refusals(invalid=422):
        if body.role is not None or body.commune is not None or body.hamlet is not None:
            await state.registry.set_role(
                name,
                body.role or current.role,
                commune=body.commune if body.commune is not None else current.commune,
                hamlet=body.hamlet if body.hamlet is not None else current.hamlet,
                actor=actor,
                address=address,
            )
        if body.disabled is not None:
            await state.registry.set_disabled(name, body.disabled, actor=actor, address=address)
    return await _one(state, name)


@router.delete(
    "/users/{name}",
    status_code=204,
    summary="Delete a person, their API tokens and sessions (admin)",
    responses=_err(401, 403, 404, 409, 422),
)
async def delete_user(request: Request, state: State, caller: Caller, name: UserName) -> None:
    actor, address = _admin_at(request, state, caller)
    if caller.user is not None and caller.user.name == name:
        raise HTTPException(409, "you cannot delete yourself")
    with registry_refusals():
        await state.registry.delete_user(name, actor=actor, address=address)


@router.post(
    "/users/{name}/password",
    status_code=204,
    summary="Set a temporary password; the person changes it at next login (admin)",
    responses=_err(401, 403, 404, 422),
)
async def reset_password(
    request: Request, state: State, caller: Caller, name: UserName, body: PasswordReset
) -> None:
    actor, address = _admin_at(request, state, caller)
    with registry_refusals():
        await state.registry.reset_password(name, body.password, actor=actor, address=address)


@router.post(
    "/users/{name}/revoke-sessions",
    response_model=Revoked,
    summary="End every session of a person at once (admin)",
    responses=_err(401, 403, 404, 422),
)
async def revoke_sessions(
    request: Request, state: State, caller: Caller, name: UserName
) -> Revoked:
    actor, address = _admin_at(request, state, caller)
    with registry_refusals():
        n = await state.registry.revoke_sessions(name, actor=actor, address=address)
    return Revoked(sessions=n)


@router.post(
    "/me/password",
    status_code=204,
    summary="Change your own password (ends your other sessions)",
    responses=_err(401, 403, 422),
)
async def change_password(
    request: Request, state: State, caller: Caller, body: PasswordChange
) -> None:
    if caller.user is None:
        raise deny(caller)
    address = client_address(request, state.trusted_proxies)
    user = caller.user
    wait = state.login_throttle.admit(address, user.name)
    if wait > 0:
        raise HTTPException(
            429, "too many attempts; wait and retry", {"Retry-After": str(max(1, round(wait)))}
        )
    if not await asyncio.to_thread(verify_password, user.pw_hash, body.current):
        raise HTTPException(403, "the current password is wrong")
    state.login_throttle.succeeded(address, user.name)
    await state.registry.change_own_password(
        user.id,
        body.new,
        keep_session=caller.session or "",
        address=address,
    )


@router.get(
    "/audit",
    response_model=list[AuditEntry],
    summary="Audit log, newest first (admin)",
    responses=_err(401, 403, 422),
)
async def audit_log(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    action: Action | None = None,
    target: Annotated[str | None, Query(pattern=IDENT_PATTERN)] = None,
    since: Annotated[int | None, Query(ge=0, le=2**53, description="ms since epoch")] = None,
) -> list[AuditEntry]:
    _admin(caller)
    return await state.registry.audit_entries(
        limit=limit,
        action=str(action) if action else None,
        target=target,
        since_ms=since,
    )
