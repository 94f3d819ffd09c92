"""DurableBuffer on real SQLite files: seqs, group commit, confirm, reopen."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.buffer import BufferError, DurableBuffer
from gateway.buffer.store import Store
from tests.gateway.conftest import buffer_config, closed_buffer, reading


async def test_seq_grows_across_reopen_and_confirm(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        first = await buf.append([reading(value=i / 10) for i in range(10)])
        assert first == 1
        recs, gaps = await buf.read_batch(0, None, 100, hold_pending=False)
        assert [r.seq for r in recs] == list(range(1, 11))
        assert gaps == []
        # Confirm everything: the table is empty, but seq must not go back to 1.
        assert await buf.confirm([r.seq for r in recs], []) == 10
        assert buf.depth == 0
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        first = await buf.append([reading()])
        assert first == 11
        assert buf.depth == 1


async def test_unconfirmed_records_survive_reopen(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=float(i)) for i in range(5)])
    async with DurableBuffer(cfg, tmp_path, "boot-b") as buf:
        recs, _ = await buf.read_batch(0, None, 100, hold_pending=False)
        assert [r.value for r in recs] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    cfg = buffer_config(commit_interval_ms=100, commit_max_records=100_000)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        firsts = await asyncio.gather(*(buf.append([reading(value=float(i))]) for i in range(500)))
        # 500 appends in one window: a handful of commits, not 500.
        assert buf.counters.commits <= 3
        assert sorted(firsts) == list(range(1, 501))
        assert buf.counters.committed == 500


async def test_commit_max_records_triggers_early_commit(tmp_path: Path) -> None:
    cfg = buffer_config(commit_interval_ms=5000, commit_max_records=50)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        # With a 5 s window this returns fast only because 50 records fill a group.
        await asyncio.wait_for(
            asyncio.gather(*(buf.append([reading()]) for _ in range(50))), timeout=2
        )
        assert buf.counters.commits == 1


async def test_confirm_deletes_by_seq_only(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=float(i)) for i in range(10)])
        assert await buf.confirm([2, 3, 7], []) == 3
        recs, _ = await buf.read_batch(0, None, 100, hold_pending=False)
        assert [r.seq for r in recs] == [1, 4, 5, 6, 8, 9, 10]
        # Confirming seqs that are gone changes nothing.
        assert await buf.confirm([2, 3, 99], []) == 0


async def test_committed_rows_are_on_disk_before_append_returns(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=4.5)])
        # The files as they are on disk now (the buffer holds them exclusively, so copy
        # them, as a power cut would leave them) already hold it: committed, not queued.
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("buffer.db", "buffer.db-wal"):
            shutil.copyfile(tmp_path / name, copy / name)
        con = sqlite3.connect(copy / "buffer.db")
        try:
            assert con.execute("SELECT value FROM rec").fetchall() == [(4.5,)]
        finally:
            con.close()


async def test_a_second_process_cannot_take_the_buffer_nor_move_it_aside(
    tmp_path: Path,
) -> None:
    """The buffer holds its file exclusively; a second gateway on the same data_dir gets a
    clear error, and the file in use is never mistaken for a corrupt one and moved aside."""
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=4.5)])
        second = Store(cfg, tmp_path, "boot-b")
        with pytest.raises(BufferError, match="in use by another process"):
            second.open()
        assert not list(tmp_path.glob("buffer.db.corrupt-*"))
        await buf.append([reading(value=5.5)])
    async with DurableBuffer(cfg, tmp_path, "boot-c") as buf:
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
        assert [r.value for r in recs] == [4.5, 5.5]


async def test_dead_letters_bounded_and_counted(tmp_path: Path) -> None:
    from gateway import deadletter

    cfg = buffer_config(dead_letter_max_count=10)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        for i in range(25):
            buf.put_dead(deadletter.make(i, "mqtt", f"bad_json: payload {i}", b"{" * 10))
        await buf.append([reading()])
        stored, by, recent = await buf.dead_summary(5)
        assert stored == 10
        assert by["bad_json"] == 25
        assert by[deadletter.EVICTED] == 15
        assert recent[0].reason == "bad_json: payload 24"
        assert buf.counters.dead_evicted == 15


async def test_drained_buffer_gives_space_back(tmp_path: Path) -> None:
    cfg = buffer_config()
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        for _ in range(50):
            await buf.append([reading(value=float(i)) for i in range(2000)])
        # A batch is at most one WAL-sized transaction's worth: drain in batches.
        confirmed = 0
        while recs := (await buf.read_batch(0, None, 100_000, hold_pending=False))[0]:
            confirmed += await buf.confirm([r.seq for r in recs], [])
        assert confirmed == 100_000
    with closed_buffer(tmp_path) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
    # A few pages stay free for reuse; the rest went back to the file system.
    assert free <= 256
    assert pages < 400


async def test_doctor_says_the_buffer_is_in_use_while_the_gateway_holds_it(
    tmp_path: Path,
) -> None:
    """`hamlet gateway doctor` cannot read a buffer held exclusively: it says so (skip, in
    use), never that the file is corrupt; once the gateway is stopped it checks it."""
    from gateway.installer.doctor import Outcome, check_buffer
    from tests.gateway.conftest import gateway_config

    cfg = gateway_config(tmp_path, "http://127.0.0.1:9", "t")
    async with DurableBuffer(cfg.buffer, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=4.5)])
        held = await asyncio.to_thread(check_buffer, cfg)
    assert held.outcome is Outcome.SKIP, held
    assert "in use by the running gateway" in held.detail
    free = check_buffer(cfg)
    assert free.outcome is Outcome.PASS, free
