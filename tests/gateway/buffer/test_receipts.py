"""Receipts: what was received, committed with the record, so a copy never gets a new seq.

Real SQLite files; a restart is a close and a reopen of the same directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import struct
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import DUPLICATE, REFUSED, DurableBuffer, NewRecord
from gateway.buffer.identity import Receipt, Receipts, receipt_key, receipts_for
from gateway.buffer.schema import DB_NAME, RECEIPT_SCHEMA, SCHEMA, set_meta
from hamlet.contract import RecordKind
from tests.gateway.conftest import buffer_config, closed_buffer, reading

BOOT = "boot-1"


def _with(key: int, n: int = 3, check: bool = True, value0: float = 1.0) -> list[NewRecord]:
    return [
        dataclasses.replace(reading(value=value0 + i), receipt=rc)
        for i, rc in enumerate(receipts_for(key, n, check=check))
    ]


async def test_copy_after_restart_gets_no_new_seq(tmp_path: Path) -> None:
    key = receipt_key("mqtt", "hamlet/wl-1/telemetry", b'{"seq":7}')
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        first = await buf.store_records(_with(key))
        assert first == [1, 2, 3]
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        again = await buf.store_records(_with(key))
        assert again == [DUPLICATE] * 3
        assert buf.last_seq == 3
        assert buf.depth == 3
        assert buf.counters.duplicates_recognised == 3
        # Something new after the copies continues the seqs without a hole.
        assert await buf.store_records(_with(key + 1, 1)) == [4]
    # The count is kept across restarts: the heartbeat reports the total to the server.
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        assert buf.counters.duplicates_recognised == 3


async def test_copy_within_one_group_and_mixed_with_new(tmp_path: Path) -> None:
    async with DurableBuffer(buffer_config(commit_interval_ms=200), tmp_path, BOOT) as buf:
        recs = [*_with(11, 1), *_with(11, 1), *_with(12, 1)]
        assert await buf.store_records(recs) == [1, DUPLICATE, 2]


async def test_bare_message_is_checked_only_when_flagged_as_redelivered(tmp_path: Path) -> None:
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        assert await buf.store_records(_with(21, 1, check=False)) == [1]
        # The same bytes again, not flagged: a new reading that happens to repeat.
        assert await buf.store_records(_with(21, 1, check=False)) == [2]
        # Flagged (MQTT DUP): the copy of the last one.
        assert await buf.store_records(_with(21, 1, check=True)) == [DUPLICATE]


async def test_window_forgets_the_oldest(tmp_path: Path) -> None:
    cfg = buffer_config(receipt_window=1000)
    async with DurableBuffer(cfg, tmp_path, BOOT) as buf:
        for b in range(25):
            await buf.store_records([r for k in range(100) for r in _with(b * 100 + k, 1)])
        assert await buf.store_records(_with(2499, 1)) == [DUPLICATE]
        assert (await buf.store_records(_with(0, 1)))[0] > 0  # forgotten: stored anew
    with closed_buffer(tmp_path) as con:
        slots = _ring(con)
    # 1,000 rounded up to whole blocks of 120: exactly the newest 1,080 receipts, each in
    # the slot of its seq (seqs 1,422 to 2,501; the last is key 0 stored anew).
    assert len(slots) == 1080
    stored = {seq: receipts_for(seq - 1, 1, check=True)[0].key for seq in range(1, 2501)}
    stored[2501] = receipts_for(0, 1, check=True)[0].key
    assert all(slots[seq % 1080] == stored[seq] for seq in range(1422, 2502))


def _ring(con: sqlite3.Connection) -> list[int]:
    """The ring's slots as the file holds them (-1: empty), read independently."""
    (n,) = con.execute("SELECT value FROM meta WHERE key = 'receipt_slots'").fetchone()
    (per,) = con.execute("SELECT value FROM meta WHERE key = 'receipt_block'").fetchone()
    slots = [-1] * int(n)
    for blk, blob in con.execute("SELECT blk, keys FROM receipt_block"):
        for i, (key,) in enumerate(struct.iter_unpack("<q", blob)):
            slots[blk * per + i] = key
    return slots


async def test_ring_stops_growing_once_full(tmp_path: Path) -> None:
    """Slots are updated in place: storing and uploading three more windows adds no page to
    the receipts (the log it replaced appended pages and deleted them again)."""
    cfg = buffer_config(receipt_window=1000)

    async def store_window(buf: DurableBuffer, b0: int) -> None:
        for b in range(b0, b0 + 11):
            await buf.store_records([r for k in range(100) for r in _with(b * 100 + k, 1)])
        recs, _ = await buf.read_batch(0, None, 5000, hold_pending=False)
        await buf.confirm([r.seq for r in recs], [])

    async with DurableBuffer(cfg, tmp_path, BOOT) as buf:
        await store_window(buf, 0)
    with closed_buffer(tmp_path) as con:
        pages = _ring_pages(con)
    async with DurableBuffer(cfg, tmp_path, BOOT) as buf:
        for w in range(1, 4):
            await store_window(buf, w * 11)
    with closed_buffer(tmp_path) as con:
        assert _ring_pages(con) == pages
        assert sum(1 for k in _ring(con) if k >= 0) == 1080


def _ring_pages(con: sqlite3.Connection) -> int:
    (n,) = con.execute("SELECT count(*) FROM dbstat WHERE name = 'receipt_block'").fetchone()
    return int(n)


@pytest.mark.parametrize("layout", ["log", "keyed"])
async def test_earlier_receipt_layouts_are_converted_on_open(tmp_path: Path, layout: str) -> None:
    """A buffer written by an earlier release keeps recognising its copies."""
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        assert await buf.store_records(_with(31, 3)) == [1, 2, 3]
    # Rewrite the receipts as that release left them.
    rows = [(seq, rc.key) for seq, rc in enumerate(receipts_for(31, 3, check=True), 1)]
    con = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    try:
        con.execute("DROP TABLE receipt_block")
        con.execute("DELETE FROM meta WHERE key IN ('receipt_slots', 'receipt_block')")
        if layout == "log":
            con.execute("CREATE TABLE receipt (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL)")
        else:
            con.execute("CREATE TABLE receipt (key INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
            con.execute("CREATE INDEX receipt_seq ON receipt(seq)")
        con.executemany("INSERT INTO receipt(seq, key) VALUES (?, ?)", rows)
    finally:
        con.close()
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        assert await buf.store_records(_with(31, 3)) == [DUPLICATE] * 3
        assert await buf.store_records(_with(32, 1)) == [4]
    with closed_buffer(tmp_path) as con:
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
        assert sum(1 for k in _ring(con) if k >= 0) == 4
    assert "receipt" not in names
    assert "receipt_seq" not in names


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.integers(0, 40), min_size=1, max_size=12),  # keys; 0: no receipt
            st.sampled_from(["commit", "commit", "rollback", "reopen"]),
            st.integers(3, 9),  # the window after a reopen
            st.integers(1, 4),  # and its keys per block
        ),
        max_size=30,
    ),
    window=st.integers(3, 9),
    per_block=st.integers(1, 4),
)
def test_ring_remembers_at_least_the_last_window_and_nothing_unstored(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[list[int], str, int, int]],
    window: int,
    per_block: int,
) -> None:
    """Against a model: every receipt among the last ``window`` stored seqs is recognised,
    nothing that was never committed is, the file holds exactly the slots in memory, and
    all of it holds across reopening with another window or block size."""
    path = tmp_path_factory.mktemp("ring") / "r.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(SCHEMA + RECEIPT_SCHEMA)
    ring = Receipts(window, per_block)
    ring.load(con)
    stored: list[tuple[int, int | None]] = []  # (seq, key) committed, in seq order
    seq = 0
    floor = 0  # a larger window after a reopen remembers the old one's receipts only
    try:
        for keys, action, new_window, new_block in steps:
            if action == "reopen":
                con.close()
                con = sqlite3.connect(path, isolation_level=None)
                floor = max(floor, seq - window)
                window, per_block = new_window, new_block
                ring = Receipts(window, per_block)
                ring.load(con)
            else:
                con.execute("BEGIN IMMEDIATE")
                batch = [(k, seq + 1 + i) for i, k in enumerate(keys)]
                ring.remember(con, [(k, s) for k, s in batch if k])
                set_meta(con, "last_seq", seq + len(keys))
                if action == "commit":
                    con.execute("COMMIT")
                    ring.committed()
                    stored += [(s, k or None) for k, s in batch]
                    seq += len(keys)
                else:
                    con.execute("ROLLBACK")
                    ring.rolled_back()
            ever = {k for _, k in stored if k}
            recent = {k for s, k in stored if k and s > max(seq - window, floor)}
            known = {k for k in range(1, 41) if ring.seen(con, Receipt(k))}
            assert recent <= known <= ever
            in_file = _ring(con)
            assert len(in_file) == ring.slots >= window
            assert ring.count == sum(1 for k in in_file if k >= 0)
            assert {k for k in in_file if k >= 0} == known
    finally:
        con.close()


async def test_unstorable_record_is_refused_alone(tmp_path: Path) -> None:
    poison = NewRecord(
        RecordKind.EVENT, "kiosk-1", "lookup", None, 1, 0, 1, attrs='{"note":"\ud800"}'
    )
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        out = await buf.store_records([reading(value=1.0), poison, reading(value=2.0)])
        assert out == [1, REFUSED, 2]
        _, by_code, letters = await buf.dead_summary(5)
        assert by_code == {"bad_text": 1}
        assert b"\\ud800" in letters[0].raw
        assert json.loads(letters[0].raw)["name"] == "lookup"


async def test_driver_error_is_isolated_to_its_record(tmp_path: Path) -> None:
    # A value no check foresaw (SQLite refuses to bind it): the group is redone one record
    # at a time under savepoints, and only that record is refused.
    odd = dataclasses.replace(reading(), attrs=cast(str, object()))
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        out = await buf.store_records([reading(value=1.0), odd, reading(value=2.0)])
        assert out == [1, REFUSED, 2]
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
        assert [r.value for r in recs] == [1.0, 2.0]
        _, by_code, _ = await buf.dead_summary(5)
        assert by_code == {"unstorable": 1}
    # The refused record left nothing behind: the file reopens with the same seqs.
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        assert buf.last_seq == 2


def test_receipt_key_is_length_prefixed() -> None:
    assert receipt_key("ab", "c") != receipt_key("a", "bc")
    assert 0 <= receipt_key(b"\xff" * 100) < 2**63
    assert Receipt(receipt_key("x")).check is True


class _Cursed(str):
    """Stands in for a fault of ours that one record triggers (not bad data)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        raise RuntimeError("a fault no check foresaw")


async def test_record_that_fails_twice_is_dead_lettered_and_committer_lives(
    tmp_path: Path,
) -> None:
    cursed = dataclasses.replace(reading(), device=_Cursed("wl-9"))
    async with DurableBuffer(buffer_config(), tmp_path, BOOT) as buf:
        out = await buf.store_records([reading(value=1.0), cursed, reading(value=2.0)])
        assert out == [1, REFUSED, 2]
        _, by_code, letters = await buf.dead_summary(5)
        assert by_code == {"failed_twice": 1}
        assert "RuntimeError" in letters[0].reason
        assert buf.task is not None
        assert not buf.task.done()
        assert await buf.store_records([reading(value=3.0)]) == [3]


def test_a_ring_with_no_room_to_grow_keeps_its_size(tmp_path: Path) -> None:
    """A larger window needs pages the byte budget may not have at start: the ring keeps its
    size and its receipts instead of failing the open (which would set the buffer aside)."""
    path = tmp_path / "r.db"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.executescript(SCHEMA + RECEIPT_SCHEMA)
        # One key every 120 seqs in a ring of one-key rows: in blocks of 120 each key takes
        # a block of its own, ten 960-byte rows where ten small ones were.
        small = Receipts(1200, 1)
        small.load(con)
        con.execute("BEGIN IMMEDIATE")
        small.remember(con, [(k, 1 + 120 * (k - 1)) for k in range(1, 11)])
        set_meta(con, "last_seq", 1200)
        con.execute("COMMIT")
        small.committed()
        # The file at its page cap and full to the last bytes.
        con.execute("CREATE TABLE filler (b BLOB)")
        (pages,) = con.execute("PRAGMA page_count").fetchone()
        con.execute(f"PRAGMA max_page_count = {pages + 1}")
        for size in (500, 100, 20, 1):
            with contextlib.suppress(sqlite3.OperationalError):
                while True:
                    con.execute("INSERT INTO filler VALUES (randomblob(?))", (size,))
        big = Receipts(200_000)
        big.load(con)
        assert (big.slots, big.per_block) == (1200, 1)
        assert big.count == 10
        assert all(big.seen(con, Receipt(k)) for k in range(1, 11))
        # And it keeps working at that size.
        con.execute("DELETE FROM filler")
        con.execute("BEGIN IMMEDIATE")
        big.remember(con, [(11, 1201)])
        con.execute("COMMIT")
        big.committed()
        assert big.seen(con, Receipt(11))
        assert not big.seen(con, Receipt(1))  # slot 1 now holds seq 1201
    finally:
        con.close()
