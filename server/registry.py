"""Registry and people: communes -> hamlets -> gateways -> devices; users and tokens.

Plain synchronous functions on a sqlite3 connection: the admin CLI calls them directly on
the database file (safe beside a running server thanks to WAL and busy timeouts), and the
server calls them on its writer / reader threads.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum

from hamlet.contract import is_ident
from server.models import DeviceIn, DeviceKind, DeviceOut, HamletOut
from server.secrets_ import (
    GATEWAY_TOKEN_PREFIX,
    USER_TOKEN_PREFIX,
    hash_password,
    new_token,
    token_hash,
)

DEFAULT_HAMLET = "unassigned"


class RegistryError(Exception):
    """A registry change that cannot be made; the message says why and what to do."""


class NotFound(RegistryError):
    pass


class Role(StrEnum):
    VIEWER = "viewer"
    STAFF = "staff"
    INSTALLER = "installer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class GatewayRow:
    num: int
    id: str
    hamlet: str
    revoked: bool
    created_ms: int


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    name: str
    role: Role
    commune: str | None
    hamlet: str | None
    pw_hash: str | None
    disabled: bool
    must_change_password: bool = False


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_ident(value: str, what: str) -> str:
    if not is_ident(value):
        raise RegistryError(
            f"{what} {value!r} is not a valid identifier: letters, digits, '_', '.', ':' or "
            f"'-', starting with a letter or digit, at most 64 characters"
        )
    return value


class _Tx:
    """``with _Tx(conn):`` -- BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def transaction(conn: sqlite3.Connection) -> _Tx:
    return _Tx(conn)


# --- communes and hamlets ---------------------------------------------------------------


def add_commune(conn: sqlite3.Connection, commune_id: str, name: str = "") -> None:
    check_ident(commune_id, "commune id")
    with transaction(conn):
        conn.execute(
            "INSERT INTO communes(id, name) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = CASE WHEN excluded.name = '' THEN name "
            "ELSE excluded.name END",
            (commune_id, name),
        )


def add_hamlet(
    conn: sqlite3.Connection,
    hamlet_id: str,
    *,
    commune: str | None = None,
    name: str = "",
    public: bool | None = None,
) -> None:
    check_ident(hamlet_id, "hamlet id")
    with transaction(conn):
        if commune is not None:
            check_ident(commune, "commune id")
            conn.execute("INSERT OR IGNORE INTO communes(id) VALUES (?)", (commune,))
        conn.execute("INSERT OR IGNORE INTO hamlets(id) VALUES (?)", (hamlet_id,))
        if commune is not None:
            conn.execute("UPDATE hamlets SET commune = ? WHERE id = ?", (commune, hamlet_id))
        if name:
            conn.execute("UPDATE hamlets SET name = ? WHERE id = ?", (name, hamlet_id))
        if public is not None:
            conn.execute("UPDATE hamlets SET public = ? WHERE id = ?", (int(public), hamlet_id))


def list_hamlets(conn: sqlite3.Connection) -> list[HamletOut]:
    rows = conn.execute("SELECT id, commune, name, public FROM hamlets ORDER BY id").fetchall()
    return [HamletOut(id=r[0], commune=r[1], name=r[2], public=bool(r[3])) for r in rows]


def hamlets_of_commune(conn: sqlite3.Connection, commune: str) -> list[str]:
    rows = conn.execute("SELECT id FROM hamlets WHERE commune = ?", (commune,)).fetchall()
    return [r[0] for r in rows]


def public_hamlets(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM hamlets WHERE public = 1").fetchall()]


# --- gateways ---------------------------------------------------------------------------


def add_gateway(conn: sqlite3.Connection, gateway_id: str, hamlet: str | None) -> str:
    """Register a gateway; return its token (the only time it exists in clear)."""
    check_ident(gateway_id, "gateway id")
    hamlet = check_ident(hamlet or DEFAULT_HAMLET, "hamlet id")
    token = new_token(GATEWAY_TOKEN_PREFIX)
    with transaction(conn):
        if conn.execute("SELECT 1 FROM gateways WHERE id = ?", (gateway_id,)).fetchone():
            raise RegistryError(
                f"gateway {gateway_id!r} already exists; use 'hamlet server rotate-token "
                f"{gateway_id}' for a new token"
            )
        conn.execute("INSERT OR IGNORE INTO hamlets(id) VALUES (?)", (hamlet,))
        conn.execute(
            "INSERT INTO gateways(id, hamlet, token_hash, created_ms) VALUES (?, ?, ?, ?)",
            (gateway_id, hamlet, token_hash(token), now_ms()),
        )
    return token


def rotate_gateway_token(conn: sqlite3.Connection, gateway_id: str) -> str:
    token = new_token(GATEWAY_TOKEN_PREFIX)
    with transaction(conn):
        cur = conn.execute(
            "UPDATE gateways SET token_hash = ?, revoked = 0, rotated_ms = ? WHERE id = ?",
            (token_hash(token), now_ms(), gateway_id),
        )
        if cur.rowcount == 0:
            raise NotFound(
                f"no gateway {gateway_id!r}; list them with 'hamlet server list-gateways'"
            )
    return token


def revoke_gateway(conn: sqlite3.Connection, gateway_id: str) -> None:
    with transaction(conn):
        cur = conn.execute("UPDATE gateways SET revoked = 1 WHERE id = ?", (gateway_id,))
        if cur.rowcount == 0:
            raise NotFound(
                f"no gateway {gateway_id!r}; list them with 'hamlet server list-gateways'"
            )


def _gateway(r: tuple[int, str, str, int, int]) -> GatewayRow:
    return GatewayRow(num=r[0], id=r[1], hamlet=r[2], revoked=bool(r[3]), created_ms=r[4])


def gateway_by_token(conn: sqlite3.Connection, token: str) -> GatewayRow | None:
    r = conn.execute(
        "SELECT num, id, hamlet, revoked, created_ms FROM gateways WHERE token_hash = ?",
        (token_hash(token),),
    ).fetchone()
    return _gateway(r) if r else None


def gateway_by_id(conn: sqlite3.Connection, gateway_id: str) -> GatewayRow | None:
    r = conn.execute(
        "SELECT num, id, hamlet, revoked, created_ms FROM gateways WHERE id = ?", (gateway_id,)
    ).fetchone()
    return _gateway(r) if r else None


def list_gateways(conn: sqlite3.Connection, hamlets: list[str] | None = None) -> list[GatewayRow]:
    rows = conn.execute(
        "SELECT num, id, hamlet, revoked, created_ms FROM gateways ORDER BY id"
    ).fetchall()
    out = [_gateway(r) for r in rows]
    if hamlets is not None:
        allowed = set(hamlets)
        out = [g for g in out if g.hamlet in allowed]
    return out


# --- devices ----------------------------------------------------------------------------


def upsert_device(conn: sqlite3.Connection, hamlet: str, dev: DeviceIn) -> None:
    check_ident(hamlet, "hamlet id")
    with transaction(conn):
        if not conn.execute("SELECT 1 FROM hamlets WHERE id = ?", (hamlet,)).fetchone():
            raise NotFound(f"no hamlet {hamlet!r}; add it with 'hamlet server add-hamlet'")
        conn.execute(
            "INSERT INTO devices(hamlet, id, kind, gateway, name, crop, service_hours, "
            "expected_interval_s, lat, lon) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(hamlet, id) DO UPDATE SET kind=excluded.kind, "
            "gateway=excluded.gateway, name=excluded.name, crop=excluded.crop, "
            "service_hours=excluded.service_hours, "
            "expected_interval_s=excluded.expected_interval_s, lat=excluded.lat, "
            "lon=excluded.lon",
            (
                hamlet,
                dev.id,
                str(dev.kind),
                dev.gateway,
                dev.name,
                dev.crop,
                dev.service_hours,
                dev.expected_interval_s,
                dev.lat,
                dev.lon,
            ),
        )


def registered_devices(conn: sqlite3.Connection, hamlets: list[str] | None) -> list[DeviceOut]:
    rows = conn.execute(
        "SELECT hamlet, id, kind, gateway, name, crop, service_hours, expected_interval_s, "
        "lat, lon FROM devices ORDER BY hamlet, id"
    ).fetchall()
    allowed = set(hamlets) if hamlets is not None else None
    return [
        DeviceOut(
            hamlet=r[0],
            id=r[1],
            confirmed=True,
            kind=DeviceKind(r[2]),
            gateway=r[3],
            name=r[4],
            crop=r[5],
            service_hours=r[6],
            expected_interval_s=r[7],
            lat=r[8],
            lon=r[9],
        )
        for r in rows
        if allowed is None or r[0] in allowed
    ]


# --- users and their API tokens ---------------------------------------------------------


def add_user(
    conn: sqlite3.Connection,
    name: str,
    role: Role,
    password: str | None,
    *,
    commune: str | None = None,
    hamlet: str | None = None,
) -> int:
    check_ident(name, "user name")
    if role == Role.VIEWER and hamlet is None:
        raise RegistryError("a viewer belongs to a hamlet: pass --hamlet")
    if role == Role.STAFF and commune is None:
        raise RegistryError("staff belong to a commune: pass --commune")
    pw_hash = hash_password(password) if password else None
    with transaction(conn):
        if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise RegistryError(f"user {name!r} already exists")
        if hamlet is not None:
            conn.execute("INSERT OR IGNORE INTO hamlets(id) VALUES (?)", (hamlet,))
        if commune is not None:
            conn.execute("INSERT OR IGNORE INTO communes(id) VALUES (?)", (commune,))
        cur = conn.execute(
            "INSERT INTO users(name, role, commune, hamlet, pw_hash, created_ms) "
            "VALUES (?,?,?,?,?,?)",
            (name, str(role), commune, hamlet, pw_hash, now_ms()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid


def _user(r: tuple[int, str, str, str | None, str | None, str | None, int, int]) -> UserRow:
    return UserRow(
        id=r[0],
        name=r[1],
        role=Role(r[2]),
        commune=r[3],
        hamlet=r[4],
        pw_hash=r[5],
        disabled=bool(r[6]),
        must_change_password=bool(r[7]),
    )


_USER_COLS = "id, name, role, commune, hamlet, pw_hash, disabled, must_change_password"


def user_by_name(conn: sqlite3.Connection, name: str) -> UserRow | None:
    r = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
    return _user(r) if r else None


def user_by_id(conn: sqlite3.Connection, user_id: int) -> UserRow | None:
    r = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
    return _user(r) if r else None


def user_by_token(conn: sqlite3.Connection, token: str) -> UserRow | None:
    r = conn.execute(
        f"SELECT {', '.join('u.' + c.strip() for c in _USER_COLS.split(','))} "
        "FROM user_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.hash = ? AND t.revoked = 0",
        (token_hash(token),),
    ).fetchone()
    return _user(r) if r else None


def create_user_token(conn: sqlite3.Connection, name: str, label: str = "") -> str:
    token = new_token(USER_TOKEN_PREFIX)
    with transaction(conn):
        user = user_by_name(conn, name)
        if user is None:
            raise NotFound(f"no user {name!r}; add one with 'hamlet server add-user'")
        conn.execute(
            "INSERT INTO user_tokens(hash, user_id, label, created_ms) VALUES (?,?,?,?)",
            (token_hash(token), user.id, label, now_ms()),
        )
    return token


def revoke_user_token(conn: sqlite3.Connection, token: str) -> bool:
    with transaction(conn):
        cur = conn.execute(
            "UPDATE user_tokens SET revoked = 1 WHERE hash = ?", (token_hash(token),)
        )
        return cur.rowcount > 0


def set_user_disabled(conn: sqlite3.Connection, name: str, disabled: bool) -> None:
    with transaction(conn):
        cur = conn.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
        if cur.rowcount == 0:
            raise NotFound(f"no user {name!r}")


def list_users(conn: sqlite3.Connection) -> list[UserRow]:
    return [_user(r) for r in conn.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name")]
