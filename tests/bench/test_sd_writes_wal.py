"""The SD-card bench reads a live buffer's WAL to see which pages its checkpoint will write:
the frames it reads must be the ones SQLite itself counts, across a checkpoint that restarts
the WAL from its start (bench/gateway_sd_writes.py, ``Wal``)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from bench.gateway_sd_writes import BLOCK, Wal, WalRestarts


def _open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    # As the gateway: one connection holding the file, 1 KiB pages, no auto-checkpoint here.
    con.execute("PRAGMA locking_mode = EXCLUSIVE")
    con.execute("PRAGMA page_size = 1024")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return con


def _write(con: sqlite3.Connection, first: int, n: int) -> None:
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO t VALUES (?, zeroblob(300))", [(k,) for k in range(first, first + n)]
    )
    con.execute("COMMIT")


def _log_frames(con: sqlite3.Connection) -> int:
    """Frames SQLite finds in the WAL (``wal_checkpoint`` reports them; it also checkpoints)."""
    return int(con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_frames_are_the_ones_sqlite_counts(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    con = _open(db)
    start = Wal.read(db)
    for i in range(5):
        _write(con, i * 40, 40)
    wal = Wal.read(db)
    assert wal.page_size == 1024
    frames = wal.since(start)
    assert len(wal.commits) == 5
    assert wal.transactions_since(start) == 5
    assert Wal.read(db).transactions_since(wal) == 0
    assert len(frames) == _log_frames(con)
    # 200 rows of ~300 bytes: about 67 leaves written once or twice, and the interior page.
    distinct = set(frames)
    assert 60 <= len(distinct) < len(frames)
    blocks = {(p - 1) * 1024 // BLOCK for p in distinct}
    assert wal.checkpoint_bytes(frames) == len(blocks) * BLOCK
    # One checkpoint per commit writes the pages rewritten by later commits again.
    assert wal.checkpoints_every(start, 1) > wal.checkpoints_every(start, len(frames))
    con.close()


def test_a_restarted_wal_counts_only_its_new_frames(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    con = _open(db)
    start = Wal.read(db)
    _write(con, 0, 200)
    _log_frames(con)  # checkpointed: the next commit writes the WAL from its start again
    before = Wal.read(db)
    _write(con, 1000, 3)
    after = Wal.read(db)
    assert after.salt != before.salt
    assert after.transactions_since(before) == 1
    # The old, longer generation's frames are still in the file, under the old salt.
    assert (db.parent / "buffer.db-wal").stat().st_size > 32 + len(after.pages) * (24 + 1024)
    assert len(after.since(start)) == len(after.pages) == _log_frames(con)
    con.close()


def test_checkpoints_that_restart_the_wal_are_counted(tmp_path: Path) -> None:
    """``--time-scale`` spans hold real checkpoints: the bench counts them by the WAL's salt,
    whether SQLite reset the WAL in place or truncated it."""
    db = tmp_path / "buffer.db"
    con = _open(db)
    _write(con, 0, 5)
    restarts = WalRestarts(db, threading.Event())
    for i, mode in enumerate(["PASSIVE", "TRUNCATE", "RESTART"], 1):
        restarts.poll()
        con.execute(f"PRAGMA wal_checkpoint({mode})")
        restarts.poll()  # before the next write: the WAL has not restarted yet
        _write(con, i * 10, 5)
        restarts.poll()
        assert restarts.count == i, mode
    _write(con, 100, 5)  # no checkpoint: no restart
    restarts.poll()
    assert restarts.count == 3
    con.close()
