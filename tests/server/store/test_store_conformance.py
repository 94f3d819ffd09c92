"""One behaviour, two backends: every Store must pass this suite.

SQLite always runs. InfluxDB runs when HAMLET_TEST_INFLUX_URL, _TOKEN and _ORG point at a
live InfluxDB 2 (docker compose up influxdb); it is skipped otherwise.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hamlet.contract import (
    MAX_FUTURE_SKEW_MS,
    EventRecord,
    GapReason,
    RecordKind,
    TimeQuality,
)
from server import registry
from server.models import DeviceIn, Resolution
from server.registry import GatewayRow
from server.store.base import Store
from tests.server.helpers import batch, block, now_ms
from tests.support.stores import BACKENDS, registered_gateway, store_config

HOUR = 3_600_000


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    from server.app import make_store

    async with make_store(store_config(tmp_path, request.param)) as st:
        yield st


async def _gateway(st: Store, hamlet: str | None = None) -> GatewayRow:
    # Unique names keep runs against a shared InfluxDB bucket apart.
    gid = f"gw-{uuid.uuid4().hex[:8]}"
    hamlet = hamlet or f"h-{uuid.uuid4().hex[:8]}"
    return await registered_gateway(st.db, gid, hamlet)


async def _acct(st: Store, gw: GatewayRow):  # type: ignore[no-untyped-def]
    (a,) = await st.accounting([gw])
    return a


async def test_ingest_then_read_back_raw(store: Store) -> None:
    gw = await _gateway(store)
    t0 = now_ms() - 10 * 60_000
    vals = [0.5, 0.7, 1.1, 0.9]
    res = await store.ingest(
        gw, batch(gw.id, [block("sal-1", "salinity", [1, 2, 3, 4], t0=t0, values=vals)]), now_ms()
    )
    assert (res.accepted, res.duplicates, res.rejected) == (4, 0, [])
    s = await store.series(
        gw.hamlet, "sal-1", "salinity", start=t0, end=t0 + HOUR, resolution=Resolution.RAW
    )
    assert [p.v for p in s.points] == vals
    assert [p.t for p in s.points] == [t0 + i * 60_000 for i in range(4)]
    assert s.unit == "‰"


async def test_duplicates_are_counted_not_stored(store: Store) -> None:
    gw = await _gateway(store)
    t0 = now_ms() - HOUR
    b = batch(gw.id, [block("sal-1", "salinity", range(1, 11), t0=t0)])
    first = await store.ingest(gw, b, now_ms())
    again = await store.ingest(gw, b, now_ms())
    assert (first.accepted, first.duplicates) == (10, 0)
    assert (again.accepted, again.duplicates) == (0, 10)
    # Same seqs with different values (a gateway bug) are still duplicates: first wins.
    other = batch(gw.id, [block("sal-1", "salinity", range(5, 15), t0=t0, values=[9.0] * 10)])
    third = await store.ingest(gw, other, now_ms())
    assert (third.accepted, third.duplicates) == (4, 6)
    s = await store.series(
        gw.hamlet, "sal-1", "salinity", start=t0, end=t0 + 2 * HOUR, resolution=Resolution.RAW
    )
    assert len(s.points) == 14
    a = await _acct(store, gw)
    assert (a.received, a.duplicates, a.missing, a.highest_seq) == (14, 16, 0, 14)


async def test_duplicate_seq_inside_one_batch(store: Store) -> None:
    gw = await _gateway(store)
    b = batch(gw.id, [block("a", "air_temp", [1, 2]), block("b", "air_temp", [2, 3])])
    res = await store.ingest(gw, b, now_ms())
    assert (res.accepted, res.duplicates) == (3, 1)


async def test_out_of_order_batches_fill_missing_ranges(store: Store) -> None:
    gw = await _gateway(store)
    for seqs in ([1, 2, 3], [10, 11], [20]):
        await store.ingest(gw, batch(gw.id, [block("d", "humidity", seqs)]), now_ms())
    a = await _acct(store, gw)
    assert a.highest_seq == 20
    assert a.missing == 20 - 6
    assert [(r.first, r.last) for r in a.missing_ranges] == [(4, 9), (12, 19)]
    await store.ingest(gw, batch(gw.id, [block("d", "humidity", range(4, 10))]), now_ms())
    await store.ingest(gw, batch(gw.id, [block("d", "humidity", range(12, 20))]), now_ms())
    a = await _acct(store, gw)
    assert (a.received, a.missing, a.missing_ranges) == (20, 0, [])


async def test_gaps_are_accounted_by_reason(store: Store) -> None:
    gw = await _gateway(store)
    b = batch(
        gw.id,
        [block("d", "humidity", [1, 2, 9])],
        gaps=[(3, 5, GapReason.DROPPED), (6, 8, GapReason.AGGREGATED), (2, 4, GapReason.CORRUPT)],
    )
    await store.ingest(gw, b, now_ms())
    a = await _acct(store, gw)
    # 2 is received, 3..5 already dropped: the corrupt gap adds nothing new.
    assert a.accounted == {"dropped": 3, "aggregated": 3}
    assert (a.received, a.missing, a.highest_seq) == (3, 0, 9)
    # A record in an accounted range counts as duplicate: the gateway said it was gone.
    res = await store.ingest(gw, batch(gw.id, [block("d", "humidity", [4])]), now_ms())
    assert (res.accepted, res.duplicates) == (0, 1)


async def test_rejections_have_specific_reasons_and_are_settled(store: Store) -> None:
    gw = await _gateway(store)
    now = now_ms()
    good_t = now - 60_000
    b = batch(
        gw.id,
        [
            block(
                "d",
                "salinity",
                [1, 2, 3, 4],
                times=[good_t] * 4,
                values=[math.nan, math.inf, 50.0, 1.0],
            ),
            block("d", "air_temp", [5], times=[now + MAX_FUTURE_SKEW_MS + 60_000]),
            block("d", "air_temp", [6], times=[1000]),
            block("d", "air_temp", [7], times=[1000], q=TimeQuality.UNSYNCED),
        ],
    )
    res = await store.ingest(gw, b, now)
    reasons = {r.seq: r.reason for r in res.rejected}
    assert set(reasons) == {1, 2, 3, 5, 6}
    assert "not finite" in reasons[1]
    assert "not finite" in reasons[2]
    assert "outside the possible range" in reasons[3]
    assert "ahead of the server clock" in reasons[5]
    assert "before 2020" in reasons[6]
    assert res.accepted == 2  # seq 4, and seq 7 (unsynced: stored, flagged)
    again = await store.ingest(gw, b, now)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 7, [])
    a = await _acct(store, gw)
    assert (a.received, a.rejected, a.missing) == (2, 5, 0)
    latest = {(v.device, v.metric): v for v in await store.latest([gw.hamlet])}
    assert latest[("d", "salinity")].v == 1.0
    assert latest[("d", "air_temp")].q == TimeQuality.UNSYNCED


async def test_same_millisecond_readings_are_not_merged(store: Store) -> None:
    gw = await _gateway(store)
    t = now_ms() - 5000
    b = batch(gw.id, [block("d", "rain", [1, 2], times=[t, t], values=[0.2, 0.4])])
    assert (await store.ingest(gw, b, now_ms())).accepted == 2
    s = await store.series(gw.hamlet, "d", "rain", start=t, end=t + 1, resolution=Resolution.RAW)
    assert sorted(p.v for p in s.points) == [0.2, 0.4]


async def test_latest_is_newest_by_time_not_arrival(store: Store) -> None:
    gw = await _gateway(store)
    t = now_ms() - HOUR
    await store.ingest(
        gw, batch(gw.id, [block("d", "water_level", [2], times=[t + 1000], values=[1.5])]), now_ms()
    )
    await store.ingest(
        gw, batch(gw.id, [block("d", "water_level", [1], times=[t], values=[0.5])]), now_ms()
    )
    (v,) = await store.latest([gw.hamlet])
    assert (v.v, v.t, v.unit, v.label_vi) == (1.5, t + 1000, "m", "Mực nước")


async def test_rollups_hourly_and_daily(store: Store) -> None:
    if type(store).__name__ == "InfluxStore":
        pytest.skip("InfluxDB rollups come from the downsampling task, which runs hourly")
    gw = await _gateway(store)
    day = (now_ms() // 86_400_000 - 3) * 86_400_000  # a UTC midnight, 3 days ago
    times = [day + i * 600_000 for i in range(12)]  # 2 hours of 10-minute readings
    vals = [float(i) for i in range(12)]
    await store.ingest(
        gw, batch(gw.id, [block("d", "air_temp", range(1, 13), times=times, values=vals)]), now_ms()
    )
    h = await store.series(
        gw.hamlet, "d", "air_temp", start=day, end=day + 86_400_000, resolution=Resolution.HOUR
    )
    assert [(p.t, p.n, p.min, p.max) for p in h.points] == [
        (day, 6, 0.0, 5.0),
        (day + HOUR, 6, 6.0, 11.0),
    ]
    assert h.points[0].v == pytest.approx(2.5)
    # Auto picks hourly for a week and daily for a year.
    wk = await store.series(
        gw.hamlet, "d", "air_temp", start=day - 3 * 86_400_000, end=day + 4 * 86_400_000
    )
    assert wk.resolution == Resolution.HOUR
    yr = await store.series(
        gw.hamlet, "d", "air_temp", start=day - 300 * 86_400_000, end=day + 60 * 86_400_000
    )
    assert yr.resolution == Resolution.DAY
    assert sum(p.n for p in yr.points) == 12
    assert yr.points[0].v == pytest.approx(5.5)


async def test_aggregate_records(store: Store) -> None:
    gw = await _gateway(store)
    t = now_ms() - HOUR
    from hamlet.contract import Point, SeriesBlock

    agg = SeriesBlock.from_points(
        "d", "salinity", RecordKind.AGGREGATE, [Point(1, t, 0.6, TimeQuality.SYNCED, 0.5, 0.9, 30)]
    )
    bad = SeriesBlock.from_points(
        "e", "salinity", RecordKind.AGGREGATE, [Point(2, t, 2.0, TimeQuality.SYNCED, 0.5, 0.9, 3)]
    )
    res = await store.ingest(gw, batch(gw.id, [agg, bad]), now_ms())
    assert res.accepted == 1
    assert res.rejected[0].seq == 2
    assert "not within" in res.rejected[0].reason


async def test_devices_unconfirmed_and_registered(store: Store) -> None:
    gw = await _gateway(store)
    await store.db.write(
        registry.upsert_device, gw.hamlet, DeviceIn(id="sal-1", crop="durian", name="Cống")
    )
    ev = EventRecord(seq=3, device="kiosk-9", name="rating", t=now_ms() - 1000, attrs={"score": 3})
    await store.ingest(
        gw,
        batch(gw.id, [block("sal-1", "salinity", [1]), block("mystery", "rain", [2])], [ev]),
        now_ms(),
    )
    (got,) = await store.events(gw.hamlet, start=ev.t, end=ev.t + 1, name="rating")
    assert (got.device, got.attrs) == ("kiosk-9", {"score": 3})
    assert await store.events(gw.hamlet, start=ev.t, end=ev.t + 1, device="other") == []
    devs = {d.id: d for d in await store.devices([gw.hamlet])}
    assert devs["sal-1"].confirmed
    assert devs["sal-1"].crop == "durian"
    assert devs["sal-1"].metrics == ["salinity"]
    assert not devs["mystery"].confirmed
    assert devs["mystery"].last_seen is not None
    assert not devs["kiosk-9"].confirmed
    assert await store.devices(["no-such-hamlet"]) == []


async def test_gateway_heartbeat_figures(store: Store) -> None:
    gw = await _gateway(store)
    b = batch(
        gw.id,
        [
            block(gw.id, "gw.buffer_depth", [1], values=[42.0], kind=RecordKind.HEARTBEAT),
            block(gw.id, "gw.cpu_temp", [2], values=[51.5], kind=RecordKind.HEARTBEAT),
        ],
    )
    await store.ingest(gw, b, now_ms())
    a = await _acct(store, gw)
    assert a.last_heartbeat == {"gw.buffer_depth": 42.0, "gw.cpu_temp": 51.5}
    assert a.last_seen is not None


async def test_gateways_do_not_share_seq_spaces(store: Store) -> None:
    hamlet = f"h-{uuid.uuid4().hex[:6]}"
    g1, g2 = await _gateway(store, hamlet), await _gateway(store, hamlet)
    b1 = batch(g1.id, [block("x", "rain", [1, 2])])
    b2 = batch(g2.id, [block("y", "rain", [1, 2])])
    assert (await store.ingest(g1, b1, now_ms())).accepted == 2
    assert (await store.ingest(g2, b2, now_ms())).accepted == 2


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_raw_retention_keeps_rollups(store: Store) -> None:
    prune = getattr(store, "prune", None)
    if prune is None:
        pytest.skip("retention of raw points is InfluxDB's bucket retention, not ours")
    gw = await _gateway(store)
    old = now_ms() - 40 * 86_400_000
    new = now_ms() - 60_000
    await store.ingest(
        gw,
        batch(gw.id, [block("d", "rain", [1, 2], times=[old, new], values=[1.0, 2.0])]),
        now_ms(),
    )
    assert await prune(now_ms() - 30 * 86_400_000) == 1
    raw = await store.series(
        gw.hamlet, "d", "rain", start=old - 1, end=new + 1, resolution=Resolution.RAW
    )
    assert [p.v for p in raw.points] == [2.0]
    day = await store.series(
        gw.hamlet, "d", "rain", start=old - 86_400_000, end=new + 1, resolution=Resolution.DAY
    )
    assert sum(p.n for p in day.points) == 2


async def test_concurrent_ingests_and_registry_writes(store: Store) -> None:
    import asyncio

    hamlet = f"h-{uuid.uuid4().hex[:6]}"
    gws = [await _gateway(store, hamlet) for _ in range(4)]

    async def ingest(i: int) -> int:
        gw = gws[i % 4]
        first = 1 + (i // 4) * 10
        b = batch(gw.id, [block("d", "rain", range(first, first + 10))])
        return (await store.ingest(gw, b, now_ms())).accepted

    async def register(i: int) -> int:
        await store.db.write(registry.upsert_device, hamlet, DeviceIn(id=f"dev-{i}"))
        return 0

    results = await asyncio.gather(
        *[ingest(i) for i in range(40)], *[register(i) for i in range(8)]
    )
    assert sum(results) == 400
    for a in await store.accounting(gws):
        assert (a.received, a.missing) == (100, 0)
    assert len([d for d in await store.devices([hamlet]) if d.confirmed]) == 8
