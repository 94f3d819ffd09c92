"""The audit log: who did what to whom, from where. Logins and failures, token, user and
session changes. Written by the server and by ``hamlet server`` admin commands; the newest
``KEEP`` entries are kept, so a flood of failed logins cannot fill the disk."""

from __future__ import annotations

import sqlite3
import time
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field

KEEP: Final = 100_000
_TEXT: Final = 500


class Action(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 -- an action name, not a secret
    PASSWORD_RESET = "password_reset"  # noqa: S105
    USER_CREATED = "user_created"
    USER_CHANGED = "user_changed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_DELETED = "user_deleted"
    SESSIONS_REVOKED = "sessions_revoked"
    TOKEN_CREATED = "token_created"  # noqa: S105
    TOKEN_REVOKED = "token_revoked"  # noqa: S105
    GATEWAY_ADDED = "gateway_added"
    GATEWAY_TOKEN_ROTATED = "gateway_token_rotated"  # noqa: S105
    GATEWAY_REVOKED = "gateway_revoked"


class AuditEntry(BaseModel):
    id: int
    at: int = Field(description="server time, ms since epoch")
    actor: str = Field(examples=["admin", "cli", "anonymous"])
    action: Action
    target: str = ""
    address: str = ""
    detail: str = ""


def record(
    conn: sqlite3.Connection,
    actor: str,
    action: Action,
    target: str = "",
    *,
    address: str = "",
    detail: str = "",
) -> None:
    """Append one entry (in the caller's transaction if one is open)."""
    conn.execute(
        "INSERT INTO audit(at_ms, actor, action, target, address, detail) VALUES (?,?,?,?,?,?)",
        (
            time.time_ns() // 1_000_000,
            _text(actor),
            str(action),
            _text(target),
            _text(address),
            _text(detail),
        ),
    )
    conn.execute("DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?", (KEEP,))


def _text(value: str) -> str:
    return value[:_TEXT].encode("utf-8", "backslashreplace").decode("utf-8")


def entries(
    conn: sqlite3.Connection,
    *,
    limit: int = 100,
    action: str | None = None,
    target: str | None = None,
    since_ms: int | None = None,
) -> list[AuditEntry]:
    """Newest first."""
    where, args = ["1"], []
    if action is not None:
        where.append("action = ?")
        args.append(action)
    if target is not None:
        where.append("target = ?")
        args.append(target)
    if since_ms is not None:
        where.append("at_ms >= ?")
        args.append(str(since_ms))
    rows = conn.execute(
        "SELECT id, at_ms, actor, action, target, address, detail FROM audit "
        f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [
        AuditEntry(
            id=r[0], at=r[1], actor=r[2], action=r[3], target=r[4], address=r[5], detail=r[6]
        )
        for r in rows
    ]
