"""A corrupt buffer file is moved aside, a new one starts, the loss is reported, seq grows."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.buffer import DurableBuffer
from gateway.buffer.seqstate import SeqState, read_state
from gateway.records import Reading
from hamlet.contract import GapReason
from tests.conftest import REPO
from tests.gateway.conftest import accounting_for, buffer_config, gateway_config, reading
from tests.support.procs import ServerProcess


def garble(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(os.urandom(size))


@pytest.mark.parametrize("where", ["header", "pages"])
async def test_corrupt_file_is_replaced_and_loss_reported(tmp_path: Path, where: str) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        for _ in range(20):
            await buf.append([reading(value=float(i % 5)) for i in range(500)])
        await buf.confirm(list(range(1, 101)), [])  # the server had the first 100
        last = buf.last_seq
    # Make sure the WAL is folded in, then damage the main file.
    db = tmp_path / "buffer.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    if where == "header":
        garble(db, 0, 4096)
    else:
        garble(db, 8192, db.stat().st_size - 8192)
    state = read_state(tmp_path / "buffer.seq")
    assert state is not None
    # A clean shutdown leaves the seq state exact: nothing reserved beyond what was used.
    assert state.reserved == last + 1
    assert state.floor == 101

    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        first = await buf.append([reading(value=9.0)])
        gaps = await buf.pending_gaps()
        counters = buf.counters
    assert first == state.reserved, "seq resumes above everything possibly handed out"
    # Exactly the records the file held unsent: not a whole reserved block of seqs.
    assert [(g.first, g.last, g.reason) for g in gaps] == [(101, last, GapReason.CORRUPT)]
    assert counters.corrupt_files == 1
    assert counters.lost_corrupt == last - 100
    moved = list(tmp_path.glob("buffer.db.corrupt-*"))
    assert len(moved) == 1


async def test_never_more_than_keep_corrupt_files(tmp_path: Path) -> None:
    cfg = buffer_config(keep_corrupt_files=2)
    for _ in range(4):
        async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
            await buf.append([reading()])
        garble(tmp_path / "buffer.db", 0, 100)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading()])
        seqs = (await buf.read_batch(0, None, 10, hold_pending=False))[0]
    moved = [
        p for p in tmp_path.glob("buffer.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    ]
    assert len(moved) == 2
    # Four replacements later, seq is still strictly above everything before.
    assert seqs[0].seq > 4


async def test_deleted_file_with_state_resumes_above(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading() for _ in range(10)])
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "buffer.db") + suffix).unlink(missing_ok=True)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        first = await buf.append([reading()])
        gaps = await buf.pending_gaps()
    assert first > 10
    assert gaps[0].reason == GapReason.CORRUPT
    assert gaps[0].first == 1


CRASH = """
import asyncio, os, sys
from pathlib import Path
from gateway.buffer import DurableBuffer
from tests.gateway.conftest import buffer_config, reading

async def main() -> None:
    buf = DurableBuffer(buffer_config(), Path(sys.argv[1]), "boot-a")
    await buf.__aenter__()
    for _ in range(6):
        await buf.append([reading(value=float(i % 5)) for i in range(500)])
    confirmed = [int(x) for x in sys.argv[2:]]
    await buf.confirm(confirmed, [])
    os._exit(0)  # a power cut: no shutdown, the seq state keeps its reserved block

asyncio.run(main())
"""


def crash_after(data: Path, confirmed: list[int]) -> SeqState:
    """A gateway process that committed 3,000 readings, had ``confirmed`` confirmed and died."""
    subprocess.run(
        [sys.executable, "-c", CRASH, str(data), *map(str, confirmed)],
        cwd=REPO,
        check=True,
        timeout=60,
    )
    state = read_state(data / "buffer.seq")
    assert state is not None
    assert state.reserved > 3000 + 10_000, "the crash left a reserved block"
    return state


def garble_page_of(db: Path, name: str) -> None:
    """Overwrite one page of table or index ``name`` (a leaf in its middle) with noise."""
    con = sqlite3.connect(db)  # also folds the crashed WAL into the file
    try:
        size = int(con.execute("PRAGMA page_size").fetchone()[0])
        pages = [
            int(p)
            for (p,) in con.execute(
                "SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno", (name,)
            )
        ]
    finally:
        con.close()
    assert pages, name
    garble(db, (pages[len(pages) // 2] - 1) * size, size)


async def test_crash_then_lost_records_declares_the_range_used(
    tmp_path: Path, server: ServerProcess
) -> None:
    """After a crash the seq state only knows the reserved block; the moved file still says
    which seq it had reached: lost = floor..that seq, the rest of the block is ``unused``.
    The server's accounting explains every seq."""
    token = server.add_gateway("gw-test")
    data = tmp_path / "gw"
    state = crash_after(data, list(range(1, 101)))
    garble_page_of(data / "buffer.db", "rec")
    cfg = gateway_config(data, server.url, token)
    async with Gateway(cfg, sources=[]) as gw:
        gaps = await gw.buffer.pending_gaps()
        counters = gw.buffer.counters
        await gw.pipeline.submit([reading_of(i) for i in range(50)])
        while gw.buffer.depth > 0 or await gw.buffer.pending_gaps():
            gw.uplink.uploaded.clear()
            await gw.uplink.uploaded.wait()
        last = gw.buffer.last_seq
    assert [(g.first, g.last, g.reason) for g in gaps] == [
        (state.floor, 3000, GapReason.CORRUPT),
        (3001, state.reserved - 1, GapReason.UNUSED),
    ]
    assert counters.lost_corrupt == 3000 - state.floor + 1
    assert counters.unused == state.reserved - 3001
    acc = accounting_for(server.url, "gw-test")
    assert acc["missing"] == 0, acc["missing_ranges"][:5]
    assert acc["highest_seq"] == last
    assert acc["received"] + sum(acc["accounted"].values()) == last
    assert acc["accounted"] == {"corrupt": 3000 - state.floor + 1, "unused": state.reserved - 3001}


async def test_readable_records_of_a_corrupt_file_are_declared_exactly(tmp_path: Path) -> None:
    """The file fails its check, but its records' seqs can still be read: the loss is those
    seqs exactly (confirmed ones in between are not declared)."""
    confirmed = list(range(1, 101)) + list(range(301, 401))
    state = crash_after(tmp_path, confirmed)
    garble_page_of(tmp_path / "buffer.db", "sqlite_autoindex_series_1")
    async with DurableBuffer(buffer_config(), tmp_path, "boot-a") as buf:
        gaps = await buf.pending_gaps()
        counters = buf.counters
    assert counters.corrupt_files == 1
    assert [(g.first, g.last, g.reason) for g in gaps] == [
        (101, 300, GapReason.CORRUPT),
        (401, 3000, GapReason.CORRUPT),
        (3001, state.reserved - 1, GapReason.UNUSED),
    ]
    assert counters.lost_corrupt == 3000 - len(confirmed)


def reading_of(i: int) -> Reading:
    return Reading("wl-1", "water_level", 1.0 + i / 100)
