"""The buffer file's settings and tables: how a connection is opened, every pragma, the
schema, and the conversions of files an earlier release made.

Every SQLite setting the buffer uses is here, in :func:`configure`, and nowhere else; the
store (gateway/buffer/store.py) opens its one connection through :func:`connect`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from gateway import deadletter
from gateway.buffer.budget import PAGE_SIZE, Budget

DB_NAME: Final = "buffer.db"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
    UNIQUE (device, metric)
);
CREATE TABLE IF NOT EXISTS boots (id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS rec (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    value REAL,
    wall_ms INTEGER NOT NULL,
    tq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    mono_ns INTEGER NOT NULL,
    vmin REAL,
    vmax REAL,
    n INTEGER,
    attrs TEXT
);
CREATE TABLE IF NOT EXISTS gap (
    first INTEGER PRIMARY KEY, last INTEGER NOT NULL, reason TEXT NOT NULL
);
"""
# The receipt ring (gateway/buffer/identity.py, which also converts earlier layouts): 120
# slots a row, the keys packed little-endian; seq ``s`` in slot ``s % meta.receipt_slots``.
RECEIPT_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS receipt_block (blk INTEGER PRIMARY KEY, keys BLOB NOT NULL);
"""


def connect(path: Path, budget: Budget) -> tuple[sqlite3.Connection, Budget]:
    """The store's one connection, configured; and the budget sized by the file's pages."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        budget = configure(con, budget)
    except BaseException:
        con.close()
        raise
    return con, budget


def configure(con: sqlite3.Connection, budget: Budget) -> Budget:
    # One connection, holding the file exclusively: the WAL index then lives in this
    # process's memory, not in a -shm file the kernel writes back to the SD card after
    # every commit (bench/gateway_sd_writes.py). Must precede the first read. Another
    # process (a second gateway, `doctor`) gets SQLITE_BUSY while this one runs.
    con.execute("PRAGMA locking_mode = EXCLUSIVE")
    # page_size and auto_vacuum only take effect on a new file (before any table).
    con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    con.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.DatabaseError(f"cannot enable WAL (got {mode})")
    # A file made with another page size keeps it (WAL): size the budget by the file.
    page = int(con.execute("PRAGMA page_size").fetchone()[0])
    if page != budget.page_size:
        budget = Budget.for_max(budget.max_bytes, page)
    # FULL: the WAL is fsynced at every commit, so "committed" survives a power cut.
    con.execute("PRAGMA synchronous = FULL")
    # The WAL's share of the budget: see gateway/buffer/budget.py.
    ckpt = budget.checkpoint_frames
    con.execute(f"PRAGMA wal_autocheckpoint = {ckpt}")
    con.execute(f"PRAGMA journal_size_limit = {ckpt * budget.wal_frame}")
    con.execute("PRAGMA cache_size = -4096")  # 4 MB page cache: bounded RSS
    con.execute("PRAGMA mmap_size = 0")
    con.execute("PRAGMA temp_store = MEMORY")
    check = con.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise sqlite3.DatabaseError(f"quick_check: {check}")
    con.executescript(SCHEMA + deadletter.SCHEMA)
    # The database file's share: SQLite refuses to grow it further (SQLITE_FULL). It
    # cannot be set below the current size; Store.open() shrinks a file that outgrew it.
    con.execute(f"PRAGMA max_page_count = {budget.db_pages}")
    con.executescript(RECEIPT_SCHEMA)
    return budget


def meta(con: sqlite3.Connection, key: str) -> int | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def set_meta(con: sqlite3.Connection, key: str, value: int) -> None:
    # UPDATE leaves the key's index page alone: one page less per commit than REPLACE
    # (which deletes and reinserts the row), a quarter of a commit's WAL frames.
    cur = con.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    if cur.rowcount == 0:
        con.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))


class Txn:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (autocommit connection)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __enter__(self) -> None:
        self._con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._con.execute("COMMIT")
        elif self._con.in_transaction:
            self._con.execute("ROLLBACK")
