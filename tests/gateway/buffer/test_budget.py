"""The byte budget: a hard cap on the files, every seq accounted for, heartbeats kept longest."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.buffer import DurableBuffer, NewRecord
from gateway.buffer import budget as policy
from gateway.buffer.budget import Budget
from gateway.buffer.store import Store
from gateway.config import GatewayConfig
from gateway.records import Event, Reading, Record
from hamlet.contract import GapReason, RecordKind, UplinkBatch
from tests.gateway.conftest import (
    FileWatch,
    accounting_for,
    buffer_config,
    closed_buffer,
    db_files,
    gateway_config,
    reading,
)
from tests.support.broker import free_port
from tests.support.procs import ServerProcess

MAX = 1024 * 1024
# 80 blocks of 2,000 readings: 160,000 readings, about 6.4 MB as buffer rows (a reading
# row is about 40 bytes): six times the 1 MiB budget, plus heartbeats, events and alerts.
BLOCKS = 80
READINGS = 2000
HEARTBEATS = 10
EVENTS = 8
ALERTS = 2
T0 = 1_764_000_000_000  # 2025-11-24: sparse readings carry device times from here


# The test's own heartbeats, events and alerts (the gateway adds heartbeats of its own).
OURS = (
    "SELECT r.kind, r.value, r.attrs FROM rec r JOIN series s ON s.id = r.sid "
    "WHERE r.kind >= 2 AND s.device = 'kiosk-1' OR s.metric = 'device_offline'"
)


def accounting(data_dir: Path) -> tuple[dict[int, int], dict[str, set[int]]]:
    con = sqlite3.connect(data_dir / "buffer.db")
    try:
        rows = dict(con.execute("SELECT seq, kind FROM rec"))
        gaps: dict[str, set[int]] = {}
        for first, last, reason in con.execute("SELECT first, last, reason FROM gap"):
            gaps.setdefault(reason, set()).update(range(first, last + 1))
        return rows, gaps
    finally:
        con.close()


def kept(data_dir: Path) -> dict[str, Counter[int]]:
    """Each heartbeat, event and alert still buffered, by its own number (duplicates show)."""
    out: dict[str, Counter[int]] = {k: Counter() for k in ("heartbeat", "event", "alert")}
    con = sqlite3.connect(data_dir / "buffer.db")
    try:
        for kind, value, attrs in con.execute(OURS):
            name = policy.CODE_KIND[kind].value
            out[name][int(value) if attrs is None else int(json.loads(attrs)["i"])] += 1
    finally:
        con.close()
    return out


def mixed_block(block: int) -> list[Record]:
    """A field's mix: dense readings (aggregate well), sparse ones (must be dropped),
    heartbeats, kiosk events and alerts, each of the last three numbered."""
    recs: list[Record] = []
    for i in range(READINGS):
        n = block * READINGS + i
        if i % 5 == 4:  # one series in five reports rarely: a reading per 2-minute bucket
            recs.append(
                Reading("rain-1", "water_level", 1.0 + (n % 9) / 10, device_time_ms=T0 + n * 30_000)
            )
        else:
            recs.append(Reading(f"wl-{i % 4}", "water_level", 1.0 + (n % 7) / 10))
        if i % (READINGS // HEARTBEATS) == 0:
            recs.append(
                Reading(
                    "kiosk-1",
                    "uptime_s",
                    float(block * HEARTBEATS + i // (READINGS // HEARTBEATS)),
                    kind=RecordKind.HEARTBEAT,
                )
            )
        if i % (READINGS // EVENTS) == 1:
            idx = block * EVENTS + i // (READINGS // EVENTS)
            note = "thủ tục hành chính " * (idx % 5)
            recs.append(Event("kiosk-1", "lookup", {"i": idx, "note": note}))
        if i % (READINGS // ALERTS) == 2:
            idx = block * ALERTS + i // (READINGS // ALERTS)
            recs.append(Event("gw-test", "device_offline", {"i": idx}, kind=RecordKind.ALERT))
    return recs


async def drained(gw: Gateway, timeout: float = 60) -> None:
    async def _wait() -> None:
        while gw.buffer.depth > 0:
            gw.uplink.uploaded.clear()
            if gw.buffer.depth == 0:
                return
            await gw.uplink.uploaded.wait()

    await asyncio.wait_for(_wait(), timeout)


async def six_times_the_budget(gw: Gateway, watch: FileWatch) -> None:
    """Feed the mix; after every commit the files are within the cap and every heartbeat,
    event and alert so far is still buffered while readings remain (raw or aggregated: the
    policy aggregates every raw reading before it drops any)."""
    for block in range(BLOCKS):
        await gw.pipeline.submit(mixed_block(block))
        size = watch.sample()
        assert size <= MAX, f"after block {block}: files {size} B > budget {MAX} B"
        kinds = await gw.buffer.count_kinds()
        # Readings (raw, or as aggregates) still there: they give way before heartbeats.
        assert kinds.get("reading", 0) + kinds.get("aggregate", 0) > 0
        # The test's own (the gateway adds heartbeats of its own, under its id).
        kiosk = await gw.buffer.count_kinds(device="kiosk-1")
        gateway = await gw.buffer.count_kinds(device="gw-test")
        assert kiosk.get("heartbeat") == (block + 1) * HEARTBEATS, (block, kiosk)
        assert kiosk.get("event") == (block + 1) * EVENTS, (block, kiosk)
        assert gateway.get("alert") == (block + 1) * ALERTS, (block, gateway)


def assert_each_file_within_its_share(watch: FileWatch) -> None:
    b = Budget.for_max(MAX)
    assert watch.peak <= MAX, f"files reached {watch.peak} B, budget {MAX} B"
    assert watch.peaks["buffer.db"] <= b.db_pages * policy.PAGE_SIZE, watch.peaks
    assert watch.peaks["buffer.db-wal"] <= b.wal_bytes, watch.peaks
    assert watch.peaks["buffer.db-shm"] <= b.shm_bytes, watch.peaks
    # A rollback journal only exists while a new file is switched to WAL: a page or two.
    assert watch.peaks["buffer.db-journal"] <= 4 * policy.PAGE_SIZE + 1024, watch.peaks


def assert_each_kept_once(data_dir: Path) -> None:
    got = kept(data_dir)
    assert got["heartbeat"] == Counter(range(BLOCKS * HEARTBEATS))
    assert got["event"] == Counter(range(BLOCKS * EVENTS))
    assert got["alert"] == Counter(range(BLOCKS * ALERTS))


def offline_config(data_dir: Path, url: str, token: str, **uplink: object) -> GatewayConfig:
    cfg = gateway_config(data_dir, url, token, **uplink)
    cfg.buffer.max_bytes = MAX
    cfg.buffer.aggregate_interval_s = 60
    return cfg


async def drain_and_account(data_dir: Path, server: ServerProcess, token: str, last: int) -> None:
    """Bring the uplink up against the real server: it must explain every seq."""
    cfg = gateway_config(data_dir, server.url, token)
    cfg.buffer.max_bytes = MAX
    async with Gateway(cfg, sources=[]) as gw:
        await drained(gw)
        last = gw.buffer.last_seq
    acc = accounting_for(server.url, "gw-test")
    assert acc["missing"] == 0, acc["missing_ranges"][:5]
    assert acc["duplicates"] == 0
    assert acc["highest_seq"] == last
    assert acc["received"] + sum(acc["accounted"].values()) == last, acc


async def test_uplink_down_six_times_the_budget(tmp_path: Path, server: ServerProcess) -> None:
    token = server.add_gateway("gw-test")
    data = tmp_path / "gw"
    cfg = offline_config(data, f"http://127.0.0.1:{free_port()}", token)
    with FileWatch(data) as watch:
        async with Gateway(cfg, sources=[]) as gw:
            await six_times_the_budget(gw, watch)
            counters = gw.buffer.counters
            last = gw.buffer.last_seq
            assert gw.uplink.status.state.value == "down"
    assert_each_file_within_its_share(watch)
    assert watch.samples > BLOCKS
    assert counters.over_budget == 0
    # Both ways a reading gives way were needed, and heartbeats/events never were.
    assert counters.aggregated > 0
    assert counters.dropped > 0
    assert_each_kept_once(data)
    rows, gaps = accounting(data)
    assert Counter(rows.values())[1] > 0, "readings remain, as aggregates"
    assert len(gaps.get("aggregated", set())) == counters.aggregated
    assert len(gaps.get("dropped", set())) == counters.dropped
    assert len(rows) + counters.aggregated + counters.dropped == last
    await drain_and_account(data, server, token, last)


class BlackHole:
    """An HTTP server that takes a request and answers nothing until released: a 3G link
    that swallows the post, so the uplink's batch stays in flight. Posts that carry no
    readings (the gateway's start heartbeat may come alone) get a 503: the uplink retries,
    and the batch it holds next has the oldest readings in it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.got = asyncio.Event()
        self.released = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            if not any(k == 0 for k in sent_kinds(body).values()):
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            elif not self.released.is_set():
                self.bodies.append(body)
                self.got.set()
                await self.released.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def sent_kinds(body: bytes) -> dict[int, int]:
    """Seq -> kind code of every record in a posted batch."""
    batch = UplinkBatch.model_validate_json(gzip.decompress(body))
    out = {p.seq: policy.KIND_CODE[s.kind] for s in batch.series for p in s.points()}
    out.update({e.seq: policy.KIND_CODE[e.kind] for e in batch.events})
    return out


async def test_oldest_batch_in_flight_keeps_heartbeats_and_events(
    tmp_path: Path, server: ServerProcess
) -> None:
    token = server.add_gateway("gw-test")
    data = tmp_path / "gw"
    async with BlackHole() as hole:
        cfg = offline_config(data, f"http://127.0.0.1:{hole.port}", token, timeout_s=600)
        with FileWatch(data) as watch:
            async with Gateway(cfg, sources=[]) as gw:
                # The oldest readings go out first and the post hangs: they are in flight.
                await gw.pipeline.submit(
                    [Reading(f"wl-{i % 4}", "water_level", 1.0 + i / 10_000) for i in range(3000)]
                )
                await asyncio.wait_for(hole.got.wait(), 30)
                inflight = sent_kinds(hole.bodies[0])
                # The oldest records, readings among them, are the batch in flight.
                assert min(inflight) == 1
                assert Counter(inflight.values())[0] >= 1000
                await six_times_the_budget(gw, watch)
                counters = gw.buffer.counters
                last = gw.buffer.last_seq
                hole.released.set()
    assert_each_file_within_its_share(watch)
    assert counters.aggregated + counters.dropped > 0
    assert_each_kept_once(data)
    rows, _gaps = accounting(data)
    # The batch in flight was never touched: each of its records is still there, as sent.
    assert {s: rows.get(s) for s in inflight} == inflight
    assert len(rows) + counters.aggregated + counters.dropped == last
    await drain_and_account(data, server, token, last)


async def test_group_bigger_than_the_wal_share_is_split(tmp_path: Path) -> None:
    """A group of large events (375 kB; the WAL's share is 256 KiB): committed in slices
    under the cap, consecutive seqs, every one kept."""
    cfg = buffer_config(max_bytes=MAX)
    attrs = json.dumps({"note": "x" * 200})
    group = [
        NewRecord(RecordKind.EVENT, "kiosk-1", "lookup", None, T0, 0, i, attrs) for i in range(1500)
    ]
    with FileWatch(tmp_path) as watch:
        async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
            first = await buf.append(group)
            assert buf.last_seq == first + len(group) - 1
            kinds = await buf.count_kinds()
            wal_peak = 0
            for _ in range(3):
                await buf.append([reading()])
                wal_peak = max(wal_peak, (tmp_path / "buffer.db-wal").stat().st_size)
    assert kinds == {"event": 1500}
    assert wal_peak <= Budget.for_max(MAX).wal_bytes
    assert_each_file_within_its_share(watch)


async def test_a_full_file_never_stops_the_committer(tmp_path: Path) -> None:
    """More heartbeats than the whole budget holds: SQLITE_FULL is met, the oldest give way
    (declared), the rest are committed, and the buffer goes on committing."""
    cfg = buffer_config(max_bytes=MAX)
    attrs = json.dumps({"note": "y" * 300})
    with FileWatch(tmp_path) as watch:
        async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
            for block in range(6):
                await buf.append(
                    [
                        NewRecord(RecordKind.EVENT, "kiosk-1", "lookup", None, T0, 0, i, attrs)
                        for i in range(block * 1000, block * 1000 + 1000)
                    ]
                )
            after = await buf.append([reading()])
            last = buf.last_seq
            counters = buf.counters
    assert after == last
    assert counters.file_full > 0, "the file's page cap was met"
    assert_each_file_within_its_share(watch)
    rows, gaps = accounting(tmp_path)
    assert counters.dropped > 0
    assert len(gaps["dropped"]) == counters.dropped
    assert not set(rows) & gaps["dropped"]
    assert set(rows) | gaps["dropped"] == set(range(1, last + 1))


@pytest.mark.parametrize(
    ("spacing_ms", "expect_drops"),
    [(1000, False), (40_000, True)],  # dense readings aggregate well; sparse ones must drop
)
async def test_budget_aggregates_then_drops_and_accounts_every_seq(
    tmp_path: Path, spacing_ms: int, expect_drops: bool
) -> None:
    cfg = buffer_config(max_bytes=MAX, aggregate_interval_s=60)
    t0 = 1_764_300_000_000
    heartbeats = 0
    biggest = 0
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        for block in range(120):
            recs = [
                reading(
                    device=f"wl-{i % 4}",
                    value=1.0 + (i % 7) / 10,
                    wall_ms=t0 + (block * 500 + i) * spacing_ms,
                )
                for i in range(500)
            ]
            recs.append(
                reading(
                    device="gw-1",
                    metric="gw.uptime_s",
                    value=float(block),
                    kind=RecordKind.HEARTBEAT,
                    wall_ms=t0 + block * 500_000,
                )
            )
            heartbeats += 1
            await buf.append(recs)
            biggest = max(biggest, db_files(tmp_path))
        last = buf.last_seq
        counters = buf.counters
        kinds = await buf.count_kinds()
    assert biggest <= MAX, f"buffer files reached {biggest} bytes, budget {MAX}"
    # Dense readings shrink into aggregates; sparse ones cannot and the oldest are dropped.
    assert (counters.aggregated > 0) != expect_drops
    assert (counters.dropped > 0) == expect_drops
    rows, gaps = accounting(tmp_path)
    # Every seq ever handed out is exactly one of: still buffered, or declared in a gap.
    declared = gaps.get(GapReason.AGGREGATED.value, set()) | gaps.get(
        GapReason.DROPPED.value, set()
    )
    assert not (set(rows) & declared)
    assert not (gaps.get("aggregated", set()) & gaps.get("dropped", set()))
    assert set(rows) | declared == set(range(1, last + 1))
    # Counters match the declared gaps exactly.
    assert len(gaps.get("aggregated", set())) == counters.aggregated
    assert len(gaps.get("dropped", set())) == counters.dropped
    # Heartbeats are kept while readings can still give way.
    assert kinds.get("heartbeat") == heartbeats
    assert counters.committed == 120 * 501


def test_aggregates_carry_min_mean_max_count(tmp_path: Path) -> None:
    cfg = buffer_config(max_bytes=MAX, aggregate_interval_s=3600)
    t0 = 1_764_300_000_000
    # The policy on the store itself (synchronously, as the buffer's thread runs it).
    store = Store(cfg, tmp_path, "boot-a")
    store.open()
    try:
        values = [float(v % 10) for v in range(600)]
        store.commit([reading(value=v, wall_ms=t0 + i) for i, v in enumerate(values)], [])
        # Aggregate exactly what is there (one series, one hour bucket).
        n = policy._aggregate_chunk(store, RecordKind.READING)
        assert n == 600
        recs, _ = store.read_batch(0, None, 10_000, hold_pending=False)
        aggs = [r for r in recs if r.kind == RecordKind.AGGREGATE]
        assert len(aggs) == 1
        a = aggs[0]
        assert (a.vmin, a.vmax, a.n) == (min(values), max(values), n)
        assert abs((a.value or 0) - sum(values) / n) < 1e-9
        assert a.seq == 601
    finally:
        store.shutdown()


def test_budget_split_is_within_max() -> None:
    for m in (MAX, 3 * MAX, 8 * MAX, 100 * MAX, 512 * MAX, 4096 * MAX):
        b = Budget.for_max(m)
        assert b.low < b.high < b.db_pages
        # A transaction that starts at `high` still fits the file's share.
        assert b.high + b.txn_frames <= b.db_pages
        # The WAL's peak: what earlier commits left before a checkpoint, plus one transaction.
        wal_peak = policy.WAL_HEADER + (b.checkpoint_frames - 1 + b.txn_frames) * policy.WAL_FRAME
        assert wal_peak <= b.wal_bytes
        # The wal-index stays one block: 4,062 frames.
        assert b.wal_bytes // policy.WAL_FRAME < 4062
        assert b.db_pages * policy.PAGE_SIZE + b.wal_bytes + b.shm_bytes <= m
        assert b.txn_bytes > 0


def test_every_record_kind_has_its_fixed_stored_code() -> None:
    """Files outlive releases: each kind keeps its code in ``rec.kind``, one code a kind."""
    assert [(c.name, c.value) for c in policy.KindCode] == [
        ("READING", 0),
        ("AGGREGATE", 1),
        ("HEARTBEAT", 2),
        ("EVENT", 3),
        ("ALERT", 4),
    ]
    assert [policy.KIND_CODE[k] for k in RecordKind] == [0, 1, 2, 3, 4]
    assert [policy.CODE_KIND[c] for c in range(5)] == list(RecordKind)


def test_stages_give_way_in_the_written_order() -> None:
    order = [(s.action.value, s.kind.value) for s in policy.STAGES]
    assert order == [
        ("aggregate", "reading"),
        ("drop", "reading"),
        ("drop", "aggregate"),
        ("drop", "heartbeat"),
        ("drop", "event"),
        ("drop", "alert"),
    ]


async def test_lowered_budget_shrinks_the_file(tmp_path: Path) -> None:
    big = buffer_config(max_bytes=8 * MAX)
    async with DurableBuffer(big, tmp_path, "boot-a") as buf:
        for _ in range(40):
            await buf.append(
                [
                    reading(value=1.0 + (i % 9) / 10, wall_ms=1_764_300_000_000 + i * 40_000)
                    for i in range(2000)
                ]
            )
    assert db_files(tmp_path) > MAX
    # The installer lowers the budget; the next start brings the files under it.
    async with DurableBuffer(buffer_config(max_bytes=MAX), tmp_path, "boot-a") as buf:
        assert buf.counters.dropped + buf.counters.aggregated > 0
        assert db_files(tmp_path) <= MAX
        await buf.append([reading()])
        assert db_files(tmp_path) <= MAX
    assert db_files(tmp_path) <= MAX


async def test_dead_letters_get_a_bounded_share(tmp_path: Path) -> None:
    """Dead letters cannot give way to the budget: they may use a sixteenth of it."""
    from gateway import deadletter

    cfg = buffer_config(max_bytes=MAX)  # dead_letter_max_bytes stays at its 1 MiB default
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        for i in range(200):
            buf.put_dead(deadletter.make(T0, "mqtt", "bad_json: x", b"z" * 2000 + bytes([i])))
        await buf.flush()
        counters = buf.counters
    with closed_buffer(tmp_path) as con:
        size = con.execute("SELECT sum(length(raw) + length(reason)) FROM dead").fetchone()[0]
    assert size <= MAX // 16
    assert counters.dead_evicted > 0


async def test_readings_meeting_a_full_file_never_push_out_events(tmp_path: Path) -> None:
    """Events fill most of the file; a burst of readings bigger than the room left meets
    the page cap: readings give way (declared), every event stays."""
    cfg = buffer_config(max_bytes=MAX)
    attrs = json.dumps({"note": "z" * 250})
    events = [
        NewRecord(RecordKind.EVENT, "kiosk-1", "lookup", None, T0, 0, i, attrs) for i in range(1200)
    ]
    budget = Budget.for_max(MAX)
    with FileWatch(tmp_path) as watch:
        async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
            await buf.append(events)
            used = await buf.used_bytes() // budget.page_size
            assert budget.low * 3 // 4 < used <= budget.low
            await buf.append([reading(value=float(i % 7)) for i in range(12_000)])
            kinds = await buf.count_kinds()
            counters = buf.counters
            last = buf.last_seq
    assert counters.file_full > 0, "the burst met the file's page cap"
    assert kinds["event"] == 1200
    assert_each_file_within_its_share(watch)
    rows, gaps = accounting(tmp_path)
    given_up = gaps.get("dropped", set()) | gaps.get("aggregated", set())
    assert counters.dropped > 0
    assert all(rows.get(s) is None for s in given_up)
    assert set(rows) | given_up == set(range(1, last + 1))
    assert sum(1 for k in rows.values() if k == 3) == 1200


async def test_a_file_made_with_4_kib_pages_keeps_them_and_its_budget(tmp_path: Path) -> None:
    """SQLite cannot change a WAL file's page size: a buffer made with 4 KiB pages (before
    the page size shrank) opens with its records, and its budget is sized by its own pages,
    so each file stays within its share."""
    cfg = buffer_config(max_bytes=MAX)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        await buf.append([reading(value=float(i), wall_ms=T0 + i) for i in range(100)])
    # The same file with 4 KiB pages, as the earlier release made it.
    con = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = DELETE")
        con.execute("PRAGMA page_size = 4096")
        con.execute("VACUUM")
        assert con.execute("PRAGMA page_size").fetchone()[0] == 4096
    finally:
        con.close()
    with FileWatch(tmp_path) as watch:
        async with DurableBuffer(cfg, tmp_path, "boot-b") as buf:
            assert buf.budget == Budget.for_max(MAX, 4096)
            recs, _ = await buf.read_batch(0, None, 1000, hold_pending=False)
            assert [r.value for r in recs] == [float(i) for i in range(100)]
            await buf.release()
            # Twice the budget in readings: enforcement runs, by 4 KiB pages.
            for block in range(50):
                t = T0 + 10_000_000 * (block + 1)
                await buf.append(
                    [reading(value=float(i), wall_ms=t + i * 1000) for i in range(1000)]
                )
            counters = buf.counters
    with closed_buffer(tmp_path) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]
    assert page == 4096
    assert counters.over_budget == 0
    assert counters.aggregated + counters.dropped > 0
    b = Budget.for_max(MAX, 4096)
    assert watch.peak <= MAX, watch.peaks
    assert watch.peaks["buffer.db"] <= b.db_pages * 4096, watch.peaks
    assert watch.peaks["buffer.db-wal"] <= b.wal_bytes, watch.peaks
