"""A corrupt buffer file is moved aside, a new one starts, the loss is reported, seq grows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.buffer import DurableBuffer
from gateway.buffer.seqstate import read_state
from hamlet.contract import GapReason
from tests.gateway_store.conftest import buffer_config, reading


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
    assert state.reserved > last

    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        first = await buf.append([reading(value=9.0)])
        gaps = await buf.pending_gaps()
        counters = buf.counters
    assert first == state.reserved, "seq resumes above everything possibly handed out"
    assert [(g.first, g.last, g.reason) for g in gaps] == [
        (state.floor, state.reserved - 1, GapReason.CORRUPT)
    ]
    assert state.floor <= 101
    assert counters.corrupt_files == 1
    assert counters.lost_corrupt == state.reserved - state.floor
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
