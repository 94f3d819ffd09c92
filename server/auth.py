"""Who is asking, and which hamlets they may read or change.

Roles: viewer (a hamlet's farmers), staff (a commune), installer (all hamlets, can register
gateways and devices), admin (everything). Anonymous visitors read public hamlets, or all
hamlets when ``auth.open_read`` is on (the development demo).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from server import registry
from server.people import user_of_session
from server.registry import Role, UserRow
from server.secrets_ import GATEWAY_TOKEN_PREFIX

SESSION_COOKIE = "hamlet_session"


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    USER = "user"
    GATEWAY = "gateway"


class AuthProblem(StrEnum):
    NONE = "none"
    BAD_TOKEN = "bad_token"  # noqa: S105 -- a label, not a secret  # presented a token that is unknown or revoked


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    user: UserRow | None = None
    problem: AuthProblem = AuthProblem.NONE
    session: str | None = None  # the session cookie, when that is how they came

    @property
    def must_change_password(self) -> bool:
        return (
            self.session is not None and self.user is not None and (self.user.must_change_password)
        )

    @property
    def role(self) -> Role | None:
        return self.user.role if self.user else None


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)


def identify(
    conn: sqlite3.Connection, secret: bytes, authorization: str | None, cookie: str | None
) -> Principal:
    """Resolve bearer token (user API token) or session cookie to a principal.

    ``secret`` is unused since sessions became server-side (the cookie is a random id
    looked up in the database); kept so callers need not change."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Principal(PrincipalKind.ANONYMOUS, problem=AuthProblem.BAD_TOKEN)
        if token.startswith(GATEWAY_TOKEN_PREFIX):
            gw = registry.gateway_by_token(conn, token)
            if gw is not None and not gw.revoked:
                return Principal(PrincipalKind.GATEWAY)
            return Principal(PrincipalKind.ANONYMOUS, problem=AuthProblem.BAD_TOKEN)
        user = registry.user_by_token(conn, token)
        if user is None or user.disabled:
            return Principal(PrincipalKind.ANONYMOUS, problem=AuthProblem.BAD_TOKEN)
        return Principal(PrincipalKind.USER, user=user)
    if cookie:
        user = user_of_session(conn, cookie)
        if user is not None:
            return Principal(PrincipalKind.USER, user=user, session=cookie)
    return ANONYMOUS


def readable_hamlets(conn: sqlite3.Connection, p: Principal, open_read: bool) -> list[str] | None:
    """Hamlets ``p`` may read; None means all."""
    if p.kind == PrincipalKind.GATEWAY:
        return []
    if p.user is not None and p.user.role in (Role.ADMIN, Role.INSTALLER):
        return None
    if p.user is None and open_read:
        return None
    allowed = set(registry.public_hamlets(conn))
    if p.user is not None:
        if p.user.role == Role.STAFF and p.user.commune:
            allowed.update(registry.hamlets_of_commune(conn, p.user.commune))
        if p.user.hamlet:
            allowed.add(p.user.hamlet)
    return sorted(allowed)


def can_edit_devices(conn: sqlite3.Connection, p: Principal, hamlet: str) -> bool:
    if p.user is None:
        return False
    if p.user.role in (Role.ADMIN, Role.INSTALLER):
        return True
    if p.user.role == Role.STAFF and p.user.commune:
        return hamlet in registry.hamlets_of_commune(conn, p.user.commune)
    return False


def can_manage_gateways(p: Principal) -> bool:
    return p.user is not None and p.user.role in (Role.ADMIN, Role.INSTALLER)


def is_admin(p: Principal) -> bool:
    return p.user is not None and p.user.role == Role.ADMIN
