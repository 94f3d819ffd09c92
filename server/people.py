"""People administration: server-side sessions, roles and scopes, passwords, deletion.

Plain functions on a sqlite3 connection, like :mod:`server.registry`: the admin API runs
them on the writer thread, ``hamlet server`` commands on the database file. Every change
that takes rights away (disable, delete, password reset, role change, revoke) ends the
person's sessions in the same transaction, so it takes effect on their next request.
"""

from __future__ import annotations

import sqlite3
import time

from server import audit
from server.audit import Action
from server.registry import (
    NotFound,
    RegistryError,
    Role,
    UserRow,
    add_user,
    check_ident,
    list_users,
    transaction,
    user_by_id,
    user_by_name,
)
from server.secrets_ import hash_password, new_token, token_hash

SESSION_PREFIX = "hss_"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- sessions ---------------------------------------------------------------------------


def create_session(conn: sqlite3.Connection, user: UserRow, hours: float, address: str) -> str:
    """A new session for ``user``; returns the cookie value (only its hash is stored)."""
    token = new_token(SESSION_PREFIX)
    now = _now_ms()
    with transaction(conn):
        conn.execute("DELETE FROM sessions WHERE expires_ms < ?", (now,))
        conn.execute(
            "INSERT INTO sessions(hash, user_id, created_ms, expires_ms, address) "
            "VALUES (?,?,?,?,?)",
            (token_hash(token), user.id, now, now + int(hours * 3_600_000), address[:64]),
        )
        audit.record(conn, user.name, Action.LOGIN, user.name, address=address)
    return token


def user_of_session(conn: sqlite3.Connection, cookie: str) -> UserRow | None:
    if not cookie.startswith(SESSION_PREFIX) or len(cookie) > 100:
        return None
    r = conn.execute(
        "SELECT user_id, expires_ms FROM sessions WHERE hash = ?", (token_hash(cookie),)
    ).fetchone()
    if r is None or r[1] < _now_ms():
        return None
    user = user_by_id(conn, r[0])
    return user if user is not None and not user.disabled else None


def end_session(conn: sqlite3.Connection, cookie: str, address: str = "") -> None:
    with transaction(conn):
        r = conn.execute(
            "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?",
            (token_hash(cookie),),
        ).fetchone()
        conn.execute("DELETE FROM sessions WHERE hash = ?", (token_hash(cookie),))
        if r is not None:
            audit.record(conn, r[0], Action.LOGOUT, r[0], address=address)


def _revoke_all(conn: sqlite3.Connection, user_id: int) -> int:
    return conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount


def session_count(conn: sqlite3.Connection, user_id: int) -> int:
    (n,) = conn.execute(
        "SELECT count(*) FROM sessions WHERE user_id = ? AND expires_ms >= ?",
        (user_id, _now_ms()),
    ).fetchone()
    return int(n)


# --- administration -----------------------------------------------------------------------


def users_with_sessions(conn: sqlite3.Connection) -> list[tuple[UserRow, int]]:
    """Every person with their number of open sessions."""
    return [(u, session_count(conn, u.id)) for u in list_users(conn)]


def create_user(
    conn: sqlite3.Connection,
    name: str,
    role: Role,
    password: str,
    *,
    commune: str | None,
    hamlet: str | None,
    actor: str,
    address: str = "",
) -> None:
    """A new account whose ``password`` is temporary (changed at first login), audited."""
    add_user(conn, name, role, password, commune=commune, hamlet=hamlet)
    mark_must_change(conn, name)
    audit.record(conn, actor, Action.USER_CREATED, name, address=address, detail=str(role))


def _existing(conn: sqlite3.Connection, name: str) -> UserRow:
    user = user_by_name(conn, name)
    if user is None:
        raise NotFound(f"no user {name!r}; list them with 'hamlet server list-users'")
    return user


def revoke_sessions(conn: sqlite3.Connection, name: str, *, actor: str, address: str = "") -> int:
    with transaction(conn):
        user = _existing(conn, name)
        n = _revoke_all(conn, user.id)
        audit.record(conn, actor, Action.SESSIONS_REVOKED, name, address=address, detail=str(n))
    return n


def set_disabled(
    conn: sqlite3.Connection, name: str, disabled: bool, *, actor: str, address: str = ""
) -> None:
    with transaction(conn):
        user = _existing(conn, name)
        conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user.id))
        if disabled:
            _revoke_all(conn, user.id)
        action = Action.USER_DISABLED if disabled else Action.USER_ENABLED
        audit.record(conn, actor, action, name, address=address)


def delete_user(conn: sqlite3.Connection, name: str, *, actor: str, address: str = "") -> None:
    with transaction(conn):
        user = _existing(conn, name)
        _revoke_all(conn, user.id)
        conn.execute("DELETE FROM user_tokens WHERE user_id = ?", (user.id,))
        conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
        audit.record(conn, actor, Action.USER_DELETED, name, address=address)


def set_role(
    conn: sqlite3.Connection,
    name: str,
    role: Role,
    *,
    commune: str | None,
    hamlet: str | None,
    actor: str,
    address: str = "",
) -> None:
    if role == Role.VIEWER and hamlet is None:
        raise RegistryError("a viewer belongs to a hamlet: give a hamlet")
    if role == Role.STAFF and commune is None:
        raise RegistryError("staff belong to a commune: give a commune")
    if commune is not None:
        check_ident(commune, "commune id")
    if hamlet is not None:
        check_ident(hamlet, "hamlet id")
    with transaction(conn):
        user = _existing(conn, name)
        conn.execute(
            "UPDATE users SET role = ?, commune = ?, hamlet = ? WHERE id = ?",
            (str(role), commune, hamlet, user.id),
        )
        _revoke_all(conn, user.id)  # rights changed: log in again under the new ones
        detail = f"role {user.role}->{role}, commune {commune}, hamlet {hamlet}"
        audit.record(conn, actor, Action.USER_CHANGED, name, address=address, detail=detail)


def reset_password(
    conn: sqlite3.Connection, name: str, password: str, *, actor: str, address: str = ""
) -> None:
    """A temporary password set by an admin: the person must change it at their next login."""
    pw_hash = hash_password(password)
    with transaction(conn):
        user = _existing(conn, name)
        conn.execute(
            "UPDATE users SET pw_hash = ?, must_change_password = 1 WHERE id = ?",
            (pw_hash, user.id),
        )
        _revoke_all(conn, user.id)
        audit.record(conn, actor, Action.PASSWORD_RESET, name, address=address)


def change_own_password(
    conn: sqlite3.Connection, user_id: int, password: str, *, keep_session: str, address: str
) -> None:
    """The person's own new password; their other sessions end, this one stays."""
    pw_hash = hash_password(password)
    with transaction(conn):
        user = user_by_id(conn, user_id)
        if user is None:
            raise NotFound("no such user")
        conn.execute(
            "UPDATE users SET pw_hash = ?, must_change_password = 0 WHERE id = ?",
            (pw_hash, user_id),
        )
        conn.execute(
            "DELETE FROM sessions WHERE user_id = ? AND hash != ?",
            (user_id, token_hash(keep_session)),
        )
        audit.record(conn, user.name, Action.PASSWORD_CHANGED, user.name, address=address)


def mark_must_change(conn: sqlite3.Connection, name: str) -> None:
    with transaction(conn):
        conn.execute("UPDATE users SET must_change_password = 1 WHERE name = ?", (name,))
