"""Time without an RTC: re-anchoring at sync, earlier boots flagged, clock steps harmless."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.buffer import DurableBuffer
from gateway.clock import PENDING, Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Event, Reading
from hamlet.contract import MAX_FUTURE_SKEW_MS, TimeQuality
from tests.gateway.conftest import buffer_config, closed_buffer

YEAR_MS = 365 * 86400 * 1000


def make_clock(tmp_path: Path, boot: str = "boot-a") -> tuple[Clock, Path, Path]:
    flag = tmp_path / "synced"
    offset = tmp_path / "offset"
    cfg = ClockConfig(sync=f"file:{flag}", wall_offset_file=offset)
    return Clock(cfg, boot_id=boot), flag, offset


def step(offset_file: Path, ms: int) -> None:
    offset_file.write_text(str(ms))
    # The clock re-reads on mtime change; make sure a rewrite within one tick is seen.
    st = offset_file.stat()
    import os

    os.utime(offset_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def test_records_before_sync_are_reanchored(tmp_path: Path) -> None:
    clock, flag, offset = make_clock(tmp_path)
    # A Pi without RTC: boots decades in the past, unsynchronized.
    step(offset, -50 * YEAR_MS)
    async with DurableBuffer(buffer_config(), tmp_path / "buf", clock.boot_id) as buf:
        pipe = Pipeline(buf, clock)
        await pipe.submit([Reading("wl-1", "water_level", 1.0)])
        await pipe.submit([Reading("wl-1", "water_level", 1.1)])
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
        assert [r.tq for r in recs] == [PENDING, PENDING]
        assert all(r.wall_ms < 1_000_000_000_000 for r in recs)
        # NTP syncs: the clock jumps 50 years forward.
        step(offset, 0)
        flag.touch()
        await pipe.submit([Reading("wl-1", "water_level", 1.2)])
        anchor = clock.anchor
        assert anchor is not None
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
    with closed_buffer(tmp_path / "buf") as con:
        monos = [r[0] for r in con.execute("SELECT mono_ns FROM rec ORDER BY seq")]
    assert [r.seq for r in recs] == [1, 2, 3]
    assert [r.tq for r in recs] == [
        TimeQuality.REANCHORED,
        TimeQuality.REANCHORED,
        TimeQuality.SYNCED,
    ]
    for r, mono in zip(recs[:2], monos[:2], strict=True):
        assert r.wall_ms == anchor.wall_ms - (anchor.mono_ns - mono) // 1_000_000
    now = time.time_ns() // 1_000_000
    assert all(abs(r.wall_ms - now) < 60_000 for r in recs)


async def test_unsynced_records_of_an_earlier_boot_are_flagged(tmp_path: Path) -> None:
    clock, _flag, offset = make_clock(tmp_path, boot="boot-1")
    step(offset, -50 * YEAR_MS)
    async with DurableBuffer(buffer_config(), tmp_path / "buf", "boot-1") as buf:
        await Pipeline(buf, clock).submit([Reading("wl-1", "water_level", 1.0)])
    # Power cut; the next boot has a different boot id: that record can never be anchored.
    async with DurableBuffer(buffer_config(), tmp_path / "buf", "boot-2") as buf:
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
    assert [r.tq for r in recs] == [TimeQuality.UNSYNCED]


async def test_clock_steps_neither_delete_nor_reorder(tmp_path: Path) -> None:
    clock, flag, offset = make_clock(tmp_path)
    flag.touch()
    async with DurableBuffer(
        buffer_config(max_bytes=1024 * 1024), tmp_path / "buf", clock.boot_id
    ) as buf:
        pipe = Pipeline(buf, clock)
        walls = []
        for i, jump in enumerate([0, -3_600_000, 7_200_000, -YEAR_MS, 0]):
            step(offset, jump)
            await pipe.submit([Reading("wl-1", "water_level", float(i))])
            walls.append(clock.wall_ms())
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
        assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
        assert [r.value for r in recs] == [0.0, 1.0, 2.0, 3.0, 4.0]
        # Wall times went back and forth; order and presence follow seq only.
        assert recs[1].wall_ms < recs[0].wall_ms < recs[2].wall_ms
        assert buf.depth == 5


async def test_far_future_device_time_dead_lettered_rest_committed(tmp_path: Path) -> None:
    clock, flag, _offset = make_clock(tmp_path)
    flag.touch()
    now = time.time_ns() // 1_000_000
    async with DurableBuffer(buffer_config(), tmp_path / "buf", clock.boot_id) as buf:
        pipe = Pipeline(buf, clock)
        await pipe.submit(
            [
                Reading(
                    "wl-1",
                    "water_level",
                    1.0,
                    device_time_ms=now + MAX_FUTURE_SKEW_MS * 3,
                    source="mqtt",
                ),
                Reading("wl-1", "water_level", 99.0, source="mqtt"),  # impossible level
                Reading("wl-1", "water_level", float("nan"), source="mqtt"),
                Reading("wl-1", "water_level", 1.5, device_time_ms=now - 5000, source="mqtt"),
                Reading("wl-1", "water_level", 1.6, device_time_ms=12345, source="mqtt"),
                Event("kiosk-1", "rating", {"score": 3}, source="mqtt"),
            ]
        )
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
        stored, by, recent = await buf.dead_summary(10)
    assert [(r.value, r.tq) for r in recs] == [
        (1.5, TimeQuality.DEVICE),
        (1.6, TimeQuality.SYNCED),
        (None, TimeQuality.SYNCED),
    ]
    assert recs[0].wall_ms == now - 5000
    assert stored == 3
    assert by == {"far_future": 1, "out_of_range": 1, "not_finite": 1}
    assert pipe.counters.dead_lettered == 3
    assert all(d.source == "mqtt" for d in recent)


async def test_record_stamped_before_sync_but_committed_after_is_anchored(
    tmp_path: Path,
) -> None:
    clock, flag, offset = make_clock(tmp_path)
    step(offset, -50 * YEAR_MS)
    async with DurableBuffer(
        buffer_config(commit_interval_ms=200), tmp_path / "buf", clock.boot_id
    ) as buf:
        pipe = Pipeline(buf, clock)
        # Source A's reading is stamped unsynced and waits in the group-commit window...
        slow = asyncio.create_task(pipe.submit([Reading("wl-1", "water_level", 1.0)]))
        await asyncio.sleep(0)  # let it be stamped and queued
        # ...while source B's submit is the first to see sync.
        step(offset, 0)
        flag.touch()
        await pipe.submit([Reading("wl-2", "water_level", 2.0)])
        await slow
        recs, _ = await buf.read_batch(0, None, 10, hold_pending=False)
    assert {r.device: r.tq for r in recs} == {
        "wl-1": TimeQuality.REANCHORED,
        "wl-2": TimeQuality.SYNCED,
    }
    now = time.time_ns() // 1_000_000
    assert all(abs(r.wall_ms - now) < 60_000 for r in recs)
