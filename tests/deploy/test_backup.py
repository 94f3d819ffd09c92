"""``hamlet server backup`` while a real server ingests, and ``restore``: the copy is one
committed state (the ledger and the stored points agree), and a restored server serves it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import run_hamlet, start_server

BATCH = 200  # points a batch; each batch is one ledger transaction
# A gateway draining a backlog as fast as it can (the default rate limit would slow it).
FAST = {"HAMLET_SERVER__INGEST__RATE_PER_GATEWAY": "10000"}


def _agree(db: Path) -> tuple[int, int]:
    """(ledger's received count, stored points) of the database file: equal if consistent."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        received = conn.execute("SELECT coalesce(sum(received), 0) FROM gw_stats").fetchone()[0]
        points = conn.execute("SELECT count(*) FROM points").fetchone()[0]
    finally:
        conn.close()
    return int(received), int(points)


def test_backup_while_ingesting_is_consistent_and_restores(tmp_path: Path) -> None:
    data = tmp_path / "server"
    backups = tmp_path / "backups"
    backups.mkdir()
    with start_server(data, env=FAST) as server:
        token = server.add_gateway("gw-backup")
        stop = threading.Event()
        sent = [0]
        errors: list[str] = []
        acked = threading.Condition()

        def ingest() -> None:
            seq = 1
            t0 = now_ms() - 10_000_000
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set():
                    seqs = list(range(seq, seq + BATCH))
                    blk = block("sal-1", "salinity", seqs, t0=t0 + seq * 10, step_ms=10)
                    b = batch("gw-backup", [blk])
                    r = post(c, token, b)
                    if r.status_code != 200:
                        errors.append(r.text)
                        return
                    seq += BATCH
                    with acked:
                        sent[0] += BATCH
                        acked.notify_all()

        writer = threading.Thread(target=ingest, daemon=True)
        writer.start()
        try:
            with acked:
                assert acked.wait_for(lambda: sent[0] >= 5 * BATCH or bool(errors), 60)
            outs = [run_hamlet("server", "backup", str(backups), "--data-dir", str(data))
                    for _ in range(3)]  # fmt: skip
            during = sent[0]
            # Two more acknowledged batches: the second was sent after the last backup ended,
            # so the live database surely holds records no backup has.
            with acked:
                assert acked.wait_for(lambda: sent[0] >= during + 2 * BATCH or bool(errors), 60)
        finally:
            stop.set()
            writer.join(30)
        assert not errors, errors
        assert during >= 5 * BATCH
        files = sorted(backups.iterdir())
        assert len(files) >= 1
        for out in outs:
            assert out.startswith("backup written: ")
        for f in files:
            received, points = _agree(f)
            # One committed state: every record the ledger counts is in the copy, and only
            # those, and it holds whole batches.
            assert received == points, f
            assert points % BATCH == 0
            assert points > 0
        live_received, live_points = _agree(data / "hamlet.sqlite3")
        assert live_received == live_points == sent[0]
        chosen = files[-1]
        chosen_points = _agree(chosen)[1]
        assert chosen_points < sent[0]

        # The server has the database open: restore refuses rather than pull it away.
        with pytest.raises(RuntimeError, match="stop the server first"):
            run_hamlet("server", "restore", str(chosen), "--data-dir", str(data))

    out = run_hamlet("server", "restore", str(chosen), "--data-dir", str(data))
    assert "previous database kept as" in out
    aside = [p for p in data.iterdir() if ".before-restore-" in p.name]
    assert len(aside) == 1
    assert _agree(aside[0])[1] == sent[0]  # nothing thrown away
    # The gateway resends what the restore lost; the ledger takes it as new, not dups.
    with start_server(data) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        seqs = list(range(chosen_points + 1, chosen_points + 1 + BATCH))
        r = post(c, token, batch("gw-backup", [block("sal-1", "salinity", seqs)]))
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == BATCH
    assert _agree(data / "hamlet.sqlite3")[1] == chosen_points + BATCH


def test_backup_refuses_to_overwrite_and_restore_rejects_a_non_database(tmp_path: Path) -> None:
    data = tmp_path / "server"
    run_hamlet("server", "add-gateway", "gw-x", "--hamlet", "h", "--data-dir", str(data))
    dest = tmp_path / "b.sqlite3"
    run_hamlet("server", "backup", str(dest), "--data-dir", str(data))
    with pytest.raises(RuntimeError, match="never overwritten"):
        run_hamlet("server", "backup", str(dest), "--data-dir", str(data))
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RuntimeError, match=r"junk\.sqlite3"):
        run_hamlet("server", "restore", str(junk), "--data-dir", str(data))
    # The live database is untouched by the refused restore.
    assert _agree(data / "hamlet.sqlite3") == (0, 0)
    assert not [p for p in data.iterdir() if ".before-restore-" in p.name]


def test_backups_into_a_directory_in_the_same_second_get_distinct_names(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from server.backup import backup, default_name
    from server.store.schema import open_db

    db = tmp_path / "ledger.sqlite3"
    open_db(db).close()
    out = tmp_path / "backups"
    out.mkdir()
    # Occupy this second's and the next second's dated names, as an earlier backup would.
    for t in (datetime.now(UTC), datetime.fromtimestamp(datetime.now(UTC).timestamp() + 1, UTC)):
        (out / default_name(t)).write_bytes(b"earlier backup")
    first = backup(db, out)
    second = backup(db, out)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4, names
    assert first.path != second.path
    assert all(
        (out / n).read_bytes() != b"earlier backup" for n in (first.path.name, second.path.name)
    )
