"""``hamlet server backup`` / ``restore``: the server's SQLite database, copied consistently
while the server keeps ingesting.

A backup is SQLite's online backup API run in one step: it reads the whole database inside
one read transaction, so the copy is one committed state (ledger, series and registry agree)
and, in WAL mode, never blocks the writer. (Copying in several steps would restart from the
beginning each time the server commits, which under steady ingest may never finish.) The copy
is checked with ``PRAGMA quick_check`` and renamed into place only when it passed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from server.store.schema import SCHEMA_VERSION, StoreUnavailable, connect

SUFFIX: Final = ".sqlite3"


class BackupError(Exception):
    """A backup or restore could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    path: Path
    bytes: int
    gateways: int
    points: int
    seconds: float


def default_name(now: datetime | None = None) -> str:
    t = now or datetime.now(UTC)
    return f"hamlet-{t.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def _check(conn: sqlite3.Connection, what: Path) -> None:
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if [r[0] for r in rows] != ["ok"]:
        raise BackupError(f"{what} fails quick_check: {rows[:3]}")
    try:
        got = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        raise BackupError(f"{what} is not a hamlet server database: {err}") from err
    if got is None or int(got[0]) > SCHEMA_VERSION:
        raise BackupError(
            f"{what} has schema {got[0] if got else 'none'}; this release reads up to "
            f"{SCHEMA_VERSION}: use the release that made it"
        )


def _summary(conn: sqlite3.Connection, path: Path, started: float) -> Summary:
    gateways = int(conn.execute("SELECT count(*) FROM gateways").fetchone()[0])
    points = int(conn.execute("SELECT count(*) FROM points").fetchone()[0])
    return Summary(path, path.stat().st_size, gateways, points, time.monotonic() - started)


def _copy(src: sqlite3.Connection, dest: Path) -> None:
    """One-step online backup into ``dest`` (a new file), made a standalone file."""
    out = sqlite3.connect(dest, isolation_level=None)
    try:
        src.backup(out, pages=-1)
        # The copy keeps the source's WAL mode; a backup file should be one file.
        out.execute("PRAGMA journal_mode=DELETE")
    finally:
        out.close()


def backup(db_path: Path, dest: Path) -> Summary:
    """Copy the live database to ``dest`` (a file path, or a directory to put a dated file)."""
    started = time.monotonic()
    if not db_path.exists():
        raise BackupError(f"no server database at {db_path}: check --data-dir / data_dir")
    if dest.is_dir():
        # Two backups within one second (a cron job and a person) must not collide: a dated
        # name that exists gets a counter, so a directory target never fails on a name.
        base = default_name()
        dest, n = dest / base, 1
        while dest.exists():
            dest = dest.with_name(base.replace(SUFFIX, f"-{n}{SUFFIX}"))
            n += 1
    if dest.exists():
        raise BackupError(f"{dest} exists: choose a new name (backups are never overwritten)")
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        src = connect(db_path, readonly=True)
    except StoreUnavailable as err:
        raise BackupError(str(err)) from err
    try:
        _copy(src, tmp)
        check = sqlite3.connect(tmp)
        try:
            _check(check, tmp)
            summary = _summary(check, tmp, started)
        finally:
            check.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(dest)
    except sqlite3.Error as err:
        raise BackupError(f"backup of {db_path} failed: {err}") from err
    finally:
        src.close()
        tmp.unlink(missing_ok=True)
    return Summary(dest, summary.bytes, summary.gateways, summary.points, summary.seconds)


def holders(path: Path) -> list[int]:
    """Processes that have ``path`` open (Linux /proc; empty elsewhere)."""
    target = str(path.resolve())
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    pids.append(int(proc.name))
                    break
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def restore(backup_file: Path, db_path: Path) -> tuple[Summary, Path | None]:
    """Put a backup in place of the server's database (the server must be stopped).

    The current database, if any, is moved aside (never deleted); returns where it went.
    """
    started = time.monotonic()
    if not backup_file.is_file():
        raise BackupError(f"no backup file at {backup_file}")
    busy = holders(db_path) if db_path.exists() else []
    if busy:
        raise BackupError(
            f"{db_path} is open in process(es) {busy}: stop the server first "
            "(docker compose stop server / systemctl stop), then restore"
        )
    try:
        src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise BackupError(f"cannot open {backup_file}: {err}") from err
    try:
        _check(src, backup_file)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        aside: Path | None = None
        if db_path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
            # The WAL holds committed pages not yet in the main file: fold them in first.
            live = sqlite3.connect(db_path, isolation_level=None)
            try:
                live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                live.close()
            db_path.replace(aside)
            for ext in ("-wal", "-shm"):
                Path(f"{db_path}{ext}").unlink(missing_ok=True)
        tmp = db_path.with_name(f".{db_path.name}.restoring")
        tmp.unlink(missing_ok=True)
        out = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(out, pages=-1)
            out.execute("PRAGMA journal_mode=WAL")
            summary = _summary(out, tmp, started)
        finally:
            out.close()
        tmp.replace(db_path)
    except sqlite3.Error as err:
        raise BackupError(f"restore from {backup_file} failed: {err}") from err
    finally:
        src.close()
    return Summary(db_path, summary.bytes, summary.gateways, summary.points, summary.seconds), (
        aside
    )
