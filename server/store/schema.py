"""The server's SQLite database: registry, people, dedup ledger, and (SQLite backend) series.

One file in the data dir. WAL lets readers run beside the single writer; ``synchronous=FULL``
makes a commit survive a power cut, which is what a 200 to a gateway promises (at ~20
commits a second the extra fsync costs nothing measurable).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

SCHEMA_VERSION: Final = 1

_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS communes (
    id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS hamlets (
    id TEXT PRIMARY KEY, commune TEXT REFERENCES communes(id), name TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS gateways (
    num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, hamlet TEXT NOT NULL,
    token_hash TEXT, revoked INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,
    rotated_ms INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS gateways_token ON gateways(token_hash);
CREATE TABLE IF NOT EXISTS devices (
    hamlet TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, gateway TEXT,
    name TEXT NOT NULL DEFAULT '', crop TEXT, service_hours TEXT, expected_interval_s INTEGER,
    lat REAL, lon REAL, PRIMARY KEY (hamlet, id)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    commune TEXT, hamlet TEXT, pw_hash TEXT, disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS user_tokens (
    hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), label TEXT,
    created_ms INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);

-- Dedup ledger: settled seq ranges per gateway, merged (a handful of rows per gateway).
CREATE TABLE IF NOT EXISTS gw_ranges (
    gw INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (gw, first)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_stats (
    gw INTEGER PRIMARY KEY, received INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    settled INTEGER NOT NULL DEFAULT 0, highest INTEGER NOT NULL DEFAULT 0,
    last_seen INTEGER);
CREATE TABLE IF NOT EXISTS gw_accounted (
    gw INTEGER NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (gw, reason)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY, gw INTEGER NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL);

-- Series (SQLite backend; with InfluxDB only 'series' and 'latest' bookkeeping is used).
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, hamlet TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    kind TEXT NOT NULL, gateway TEXT, UNIQUE (hamlet, device, metric));
CREATE TABLE IF NOT EXISTS points (
    series INTEGER NOT NULL, t INTEGER NOT NULL, gw INTEGER NOT NULL, seq INTEGER NOT NULL,
    v REAL NOT NULL, q INTEGER NOT NULL, vmin REAL, vmax REAL, n INTEGER,
    PRIMARY KEY (series, t, gw, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hourly (
    series INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, sum REAL NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, bucket)) WITHOUT ROWID;
-- Hours whose value never changed (stuck-sensor candidates): a partial index, so the monthly
-- report finds them without scanning every hour of every series (server/indicators).
CREATE INDEX IF NOT EXISTS hourly_flat ON hourly(series, bucket) WHERE min = max AND n > 1;
CREATE TABLE IF NOT EXISTS daily (
    series INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, sum REAL NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    series INTEGER PRIMARY KEY, t INTEGER NOT NULL, v REAL NOT NULL, q INTEGER NOT NULL,
    received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    gw INTEGER NOT NULL, seq INTEGER NOT NULL, hamlet TEXT NOT NULL, device TEXT NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, t INTEGER NOT NULL, q INTEGER NOT NULL,
    attrs TEXT NOT NULL, PRIMARY KEY (gw, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_device ON events(hamlet, device, t);
-- The latest status report of each gateway (hamlet/status_report.py): its highest seq wins.
CREATE TABLE IF NOT EXISTS gw_status (
    gw INTEGER PRIMARY KEY, seq INTEGER NOT NULL, t INTEGER NOT NULL,
    received_ms INTEGER NOT NULL, report TEXT NOT NULL);

-- Indicator rollups, kept for both backends (server/indicators/rollups.py): minutes a device
-- was heard (60-bit mask per hour, and the count per local day), the measurement -> arrival
-- delay histogram per gateway and day, and data-quality fault counts per hour. Keys lead with
-- what a report ranges over (hamlet, then kind and time), so a month is one range scan.
CREATE TABLE IF NOT EXISTS presence (
    hamlet TEXT NOT NULL, device TEXT NOT NULL, what INTEGER NOT NULL, hour INTEGER NOT NULL,
    mask INTEGER NOT NULL, PRIMARY KEY (hamlet, device, what, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS presence_day (
    hamlet TEXT NOT NULL, device TEXT NOT NULL, what INTEGER NOT NULL, day INTEGER NOT NULL,
    minutes INTEGER NOT NULL, PRIMARY KEY (hamlet, what, day, device)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delay_day (
    hamlet TEXT NOT NULL, gateway TEXT NOT NULL, day INTEGER NOT NULL, bin INTEGER NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (hamlet, day, gateway, bin)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quality_hour (
    hamlet TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, hour INTEGER NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (hamlet, kind, hour, device)) WITHOUT ROWID;
-- People: server-side sessions (the cookie holds a random id; only its hash is kept) and
-- the audit log of logins, failures, token, user and session changes (newest kept).
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, address TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '');
-- Devices each gateway has sent, so unregistered ones can be capped per gateway.
CREATE TABLE IF NOT EXISTS gw_devices (
    gw INTEGER NOT NULL, device TEXT NOT NULL, PRIMARY KEY (gw, device)) WITHOUT ROWID;
"""

# Columns added after the first release: (table, column, definition).
_ADDED_COLUMNS: Final = (("users", "must_change_password", "INTEGER NOT NULL DEFAULT 0"),)


class StoreUnavailable(Exception):
    """The database cannot be opened or answered; the message says what to check."""


def _unusable(path: Path, err: sqlite3.DatabaseError) -> StoreUnavailable:
    return StoreUnavailable(
        f"{path}: not a usable hamlet server database ({err}); move it aside and restart"
    )


def connect(
    path: Path, *, busy_timeout_ms: int = 30_000, readonly: bool = False
) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), WAL, FULL sync."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
    except (sqlite3.Error, OSError) as err:
        raise StoreUnavailable(f"cannot open {path}: {err}") from err
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys=OFF")
        if not readonly:
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA wal_autocheckpoint=16384")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _unusable(path, err) from err
    return conn


def open_db(path: Path, *, busy_timeout_ms: int = 30_000) -> sqlite3.Connection:
    """Open (creating if needed) the server database and bring its schema up to date."""
    conn = connect(path, busy_timeout_ms=busy_timeout_ms)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreUnavailable(f"{path}: cannot switch to WAL mode (got {mode})")
        # One transaction, so several workers starting at once create the schema once.
        conn.executescript(
            f"BEGIN IMMEDIATE;{_DDL}"
            f"INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
            "COMMIT;"
        )
        conn.execute("BEGIN IMMEDIATE")
        for table, column, definition in _ADDED_COLUMNS:
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _unusable(path, err) from err
    return conn
