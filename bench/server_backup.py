"""Backup and migration speed of the server's SQLite database (what an operator plans
around): ``hamlet server backup``'s one-step online backup against a plain file copy of the
same file, and ``hamlet server migrate``'s copy engine (SQLite -> SQLite target, the code the
InfluxDB target runs) against a raw ``INSERT ... SELECT`` of the same rows.

Data: 8 hamlets x N devices, one reading a minute, written through the store's own write path
(bench/server_query.py's generator).

    python bench/server_backup.py [--quick]   # --quick: 8 x 5 devices x 30 days (1.7 M)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import report
from _server_common import table
from server_query import DAY, generate

from server.backup import backup
from server.migrate import Progress, SqliteHistory, SqliteHistoryTarget, migrate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    devices, days = (5, 30) if args.quick else (10, 90)
    end = (time.time_ns() // 1_000_000) // DAY * DAY
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        db = root / "src" / "hamlet.sqlite3"
        db.parent.mkdir()
        points = generate(db, devices, days, end)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size_mb = db.stat().st_size / 1e6

        t = time.perf_counter()
        shutil.copyfile(db, root / "plain-copy")
        copy_s = time.perf_counter() - t
        t = time.perf_counter()
        s = backup(db, root / "backup.sqlite3")
        backup_s = time.perf_counter() - t
        assert s.points == points

        # Baseline: SQLite copying the same rows table to table, no Python in the loop.
        raw = sqlite3.connect(root / "raw.sqlite3")
        raw.execute(f"ATTACH '{db}' AS src")
        t = time.perf_counter()
        raw.execute("CREATE TABLE p AS SELECT * FROM src.points")
        raw.commit()
        raw_s = time.perf_counter() - t
        raw.close()

        async def run_migrate() -> int:
            source = SqliteHistory(db)
            state = Progress(root / "state.sqlite3", "bench")
            try:
                async with SqliteHistoryTarget(root / "dst" / "hamlet.sqlite3") as target:
                    outcome = await migrate(source, target, state)
            finally:
                source.close()
                state.close()
            assert outcome.ok
            return outcome.copied

        (root / "dst").mkdir()
        t = time.perf_counter()
        copied = asyncio.run(run_migrate())
        migrate_s = time.perf_counter() - t
        assert copied == points

    rows = [
        ("database", f"{points:,} points, {size_mb:,.0f} MB", ""),
        ("backup (online, one step, checked)", f"{size_mb / backup_s:,.0f} MB/s ({backup_s:.1f} s)",
         f"plain file copy: {size_mb / copy_s:,.0f} MB/s"),
        ("migrate, SQLite target (resumable, verified)", f"{copied / migrate_s:,.0f} points/s",
         f"raw INSERT SELECT: {points / raw_s:,.0f} rows/s"),
    ]  # fmt: skip
    print("server backup and migration")
    table([(k, f"{v}   (baseline, same run: {b})" if b else v) for k, v, b in rows])
    report("server_backup", "backup MB/s", size_mb / backup_s, "MB/s", baseline=size_mb / copy_s)
    report("server_backup", "migrate points/s", copied / migrate_s, "points/s",
           baseline=points / raw_s)  # fmt: skip


if __name__ == "__main__":
    main()
