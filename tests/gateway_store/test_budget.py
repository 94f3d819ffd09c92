"""The byte budget: the file stays bounded, every seq is accounted for, heartbeats stay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.buffer import DurableBuffer
from gateway.buffer.store import Budget
from hamlet.contract import GapReason, RecordKind
from tests.gateway_store.conftest import buffer_config, db_files, reading

MAX = 1024 * 1024


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


async def test_aggregates_carry_min_mean_max_count(tmp_path: Path) -> None:
    cfg = buffer_config(max_bytes=MAX, aggregate_interval_s=3600)
    t0 = 1_764_300_000_000
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        values = [float(v % 10) for v in range(600)]
        await buf.append([reading(value=v, wall_ms=t0 + i) for i, v in enumerate(values)])
        # Force aggregation of exactly what is there (one series, one hour bucket).
        n = await buf._run(buf.store._aggregate_chunk)
        assert n == 600 or n == buf.store._chunk()
        recs, _ = await buf.read_batch(0, None, 10_000, hold_pending=False)
        aggs = [r for r in recs if r.kind == RecordKind.AGGREGATE]
        assert len(aggs) == 1
        a = aggs[0]
        covered = values[:n]
        assert (a.vmin, a.vmax, a.n) == (min(covered), max(covered), n)
        assert abs((a.value or 0) - sum(covered) / n) < 1e-9
        assert a.seq == 601


def test_budget_split_is_within_max() -> None:
    for m in (MAX, 8 * MAX, 512 * MAX):
        b = Budget.for_max(m)
        assert b.low < b.high < m
        assert b.high + b.wal_cap < m


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
    # The installer lowers the budget; the next start and commit bring the files under it.
    async with DurableBuffer(buffer_config(max_bytes=MAX), tmp_path, "boot-a") as buf:
        await buf.append([reading()])
        assert buf.counters.dropped + buf.counters.aggregated > 0
    assert db_files(tmp_path) <= MAX
