"""FastAPI dependencies: the app state and the caller, as ``Annotated`` aliases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from server.auth import SESSION_COOKIE, AuthProblem, Principal, PrincipalKind
from server.registry import NotFound, RegistryError
from server.state import AppState

# What a person with a temporary password may still reach through their session.
PASSWORD_CHANGE_PATHS = frozenset({"/api/v1/me", "/api/v1/me/password"})


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.hamlet
    return state


State = Annotated[AppState, Depends(get_state)]


async def principal_of(request: Request, state: AppState) -> Principal:
    """Who sends this request (bearer token or session cookie), with no checks."""
    return await state.registry.principal(
        state.config.secret,
        request.headers.get("authorization"),
        request.cookies.get(SESSION_COOKIE),
    )


async def get_principal(request: Request, state: State) -> Principal:
    p = await principal_of(request, state)
    if p.problem == AuthProblem.BAD_TOKEN:
        raise HTTPException(
            401, "unknown, revoked or malformed token", headers={"WWW-Authenticate": "Bearer"}
        )
    if p.kind == PrincipalKind.GATEWAY:
        raise HTTPException(403, "gateway tokens may only post to /api/v1/ingest")
    if p.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise HTTPException(
            403,
            "change your temporary password first (the /password page, or "
            "POST /api/v1/me/password)",
        )
    return p


Caller = Annotated[Principal, Depends(get_principal)]


async def readable(state: AppState, p: Principal) -> list[str] | None:
    return await state.registry.readable_hamlets(p, open_read=bool(state.config.auth.open_read))


@contextlib.contextmanager
def registry_refusals(*, invalid: int | None = None) -> Iterator[None]:
    """The registry's refusals as HTTP errors: ``NotFound`` as 404 and, with ``invalid``,
    any other ``RegistryError`` as that status (without, it propagates)."""
    try:
        yield
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except RegistryError as err:
        if invalid is None:
            raise
        raise HTTPException(invalid, str(err)) from err


def deny(p: Principal) -> HTTPException:
    """401 for someone not logged in (logging in may help), 403 for someone who is."""
    if p.user is None:
        return HTTPException(
            401, "log in or send an API token to see this", headers={"WWW-Authenticate": "Bearer"}
        )
    return HTTPException(403, f"role {p.role} may not do this here")


async def require_hamlet(state: AppState, p: Principal, hamlet: str) -> None:
    allowed = await readable(state, p)
    if allowed is not None and hamlet not in allowed:
        raise deny(p)
