"""Golden scenarios on a real store: values computed by hand here, compared with the engine.

Each scenario is ingested through ``Store.ingest`` (the code path ``POST /ingest`` runs) into
a real SQLite store, with the arrival clock given explicitly where delays matter. The same
suite runs on InfluxDB when one is configured (tests/server/store/test_store_conformance.py's
convention).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from hamlet.contract import RecordKind, TimeQuality
from server import registry
from server.indicators.compute import Level, Period, gather, summarize
from server.indicators.config import IndicatorsConfig
from server.models import DeviceIn, DeviceKind
from server.registry import GatewayRow
from server.store.base import Store
from tests.server.indicators.scenario import (
    DAY,
    HOUR,
    MIN,
    Seqs,
    batch,
    chunked,
    event,
    every,
    series,
    vn,
)
from tests.support.stores import BACKENDS, store_config

COMMUNE = "dinh-mon"
HAMLET = "dinh-phuoc"
GW = "gw-dp"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    from server.app import make_store

    async with make_store(store_config(tmp_path, request.param)) as st:
        await st.db.write(registry.add_hamlet, HAMLET, commune=COMMUNE)
        await st.db.write(registry.add_gateway, GW, HAMLET)
        yield st


async def _gw(st: Store) -> GatewayRow:
    gw = await st.db.read(registry.gateway_by_id, GW)
    assert gw is not None
    return gw


async def _device(st: Store, dev: str, kind: DeviceKind, **kw: object) -> None:
    await st.db.write(
        registry.upsert_device, HAMLET, DeviceIn.model_validate({"id": dev, "kind": kind, **kw})
    )


def _value(values: list, indicator: str, **where: object) -> float | None:  # type: ignore[type-arg]
    hits = [
        v
        for v in values
        if v.indicator == indicator and all(getattr(v, k) == w for k, w in where.items())
    ]
    assert len(hits) == 1, f"{indicator} {where}: {len(hits)} values"
    return hits[0].value  # type: ignore[no-any-return]


async def _summary(
    st: Store, first: date, last: date, level: Level, *, by_day: bool, now: int, **cfg: object
) -> list:  # type: ignore[type-arg]
    _, facts = await gather(
        st,
        IndicatorsConfig.model_validate(cfg),
        commune=COMMUNE,
        period=Period(first, last),
        now_ms=now,
        daily=by_day,  # monthly figures come from period totals, as in the report card
    )
    return summarize(facts, level, by_day=by_day)


LATER = vn(2026, 1, 1)  # "now" for reports about 2025: every day is over


async def test_kiosk_down_90_minutes_across_lunch(store: Store) -> None:
    """Tue 11 Mar 2025. kiosk-1 heartbeats at hh:mm:30 from 06:45 to 17:30 but is off
    10:45–12:15 (90 min). kiosk-2 is registered and sends nothing."""
    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    await _device(store, "kiosk-2", DeviceKind.KIOSK)
    gw = await _gw(store)
    seqs = Seqs()
    beats = [
        t
        for t in every(vn(2025, 3, 11, 6, 45, 30), vn(2025, 3, 11, 17, 30), MIN)
        if not vn(2025, 3, 11, 10, 45) <= t < vn(2025, 3, 11, 12, 15)
    ]
    hb = series(seqs, "kiosk-1", "uptime", beats, kind=RecordKind.HEARTBEAT)
    for part in chunked(hb, 100):
        await store.ingest(gw, batch(GW, [part]), LATER)
    # Service: 07:00–11:30 (270 min) + 13:30–17:00 (210 min) = 480 min. Last beat before the
    # outage 10:44:30 covers minute 10:45 (one minute of grace for a 60 s heartbeat), so
    # 10:46..11:29 are down: 44 min. The afternoon is untouched.
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=True, now=LATER)
    assert _value(vals, "kiosk_availability", device="kiosk-1") == (480 - 44) / 480
    assert _value(vals, "kiosk_availability", device="kiosk-2") == 0.0  # down, not absent
    ham = await _summary(store, day, day, Level.HAMLET, by_day=False, now=LATER)
    assert _value(ham, "kiosk_availability", hamlet=HAMLET) == (480 - 44) / (2 * 480)


async def test_holidays_and_tet_are_not_service_time(store: Store) -> None:
    """February 2026: a kiosk on only on working days (off at weekends and for Tết, 16–20 Feb)
    is 100% available; 20 weekdays minus 5 Tết days = 15 service days of 480 minutes."""
    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    gw = await _gw(store)
    seqs = Seqs()
    tet = {16, 17, 18, 19, 20}
    for d in range(1, 29):
        if date(2026, 2, d).weekday() >= 5 or d in tet:
            continue
        beats = every(vn(2026, 2, d, 6, 45, 30), vn(2026, 2, d, 17, 30), MIN)
        await store.ingest(
            gw,
            batch(GW, [series(seqs, "kiosk-1", "uptime", beats, kind=RecordKind.HEARTBEAT)]),
            vn(2026, 3, 1),
        )
    vals = await _summary(
        store, date(2026, 2, 1), date(2026, 2, 28), Level.DEVICE, by_day=False, now=vn(2026, 3, 1)
    )
    hit = [v for v in vals if v.indicator == "kiosk_availability"]
    assert len(hit) == 1
    assert hit[0].value == 1.0
    assert hit[0].den == 15 * 480
    # 30 April 2025 (a Wednesday, Reunification Day) has no service time: no value, not 0.
    days = await _summary(
        store, date(2025, 4, 29), date(2025, 4, 30), Level.DEVICE, by_day=True, now=LATER
    )
    per_day = {v.day: v.value for v in days if v.indicator == "kiosk_availability"}
    assert list(per_day) == [date(2025, 4, 29)]
    assert per_day[date(2025, 4, 29)] == 0.0  # a working day it sent nothing on


async def test_sensor_reboot_resets_its_counter(store: Store) -> None:
    """A salinity sensor reporting every minute on 11 Mar 2025 reboots at 10:00: silent for
    3 minutes, its uptime restarts at 0. Completeness = (1440 - 3) / 1440; the restarted
    uptime and the gateway's unbroken seqs lose nothing else."""
    await _device(store, "sal-1", DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    boot = vn(2025, 3, 11, 10, 3)
    times = [
        t
        for t in every(vn(2025, 3, 11), vn(2025, 3, 12), MIN)
        if not vn(2025, 3, 11, 10) <= t < boot
    ]
    uptime = [(t - vn(2025, 3, 10)) / 1000 if t < boot else (t - boot) / 1000 for t in times]
    for part in chunked(series(seqs, "sal-1", "salinity", times), 500):
        await store.ingest(gw, batch(GW, [part]), LATER)
    for part in chunked(
        series(seqs, "sal-1", "uptime", times, uptime, kind=RecordKind.HEARTBEAT), 500
    ):
        await store.ingest(gw, batch(GW, [part]), LATER)
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=True, now=LATER)
    assert _value(vals, "sensor_completeness", device="sal-1") == (1440 - 3) / 1440


async def test_gateway_offline_two_days_delivers_late(store: Store) -> None:
    """12–14 Mar 2025. Day 1 live (each minute's heartbeat and reading stored 3 s after
    measurement); days 2 and 3 buffered on the gateway, all delivered at 00:00 on day 4."""
    await _device(store, "sal-1", DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    d1, d4 = vn(2025, 3, 12), vn(2025, 3, 15)
    for t in every(d1, d1 + DAY, MIN):
        b = batch(
            GW,
            [
                series(seqs, GW, "gw.buffer", [t], kind=RecordKind.HEARTBEAT),
                series(seqs, "sal-1", "salinity", [t]),
            ],
        )
        await store.ingest(gw, b, t + 3000)
    late = every(d1 + DAY, d4, MIN)
    for i in range(0, len(late), 600):
        part = late[i : i + 600]
        b = batch(
            GW,
            [
                series(seqs, GW, "gw.buffer", part, kind=RecordKind.HEARTBEAT),
                series(seqs, "sal-1", "salinity", part),
            ],
        )
        await store.ingest(gw, b, d4)
    vals = await _summary(
        store, date(2025, 3, 12), date(2025, 3, 14), Level.DEVICE, by_day=True, now=LATER
    )
    d = {k: date(2025, 3, 11 + k) for k in (1, 2, 3)}
    for k in (1, 2, 3):
        # Late data counts for when it was measured: the gateway was alive, the sensor
        # complete, on every day.
        assert _value(vals, "gateway_alive", device=GW, day=d[k]) == 1.0
        assert _value(vals, "sensor_completeness", device="sal-1", day=d[k]) == 1.0
    assert _value(vals, "uplink_connectivity", device=GW, day=d[1]) == 1.0
    assert _value(vals, "uplink_connectivity", device=GW, day=d[2]) == 0.0
    assert _value(vals, "uplink_connectivity", device=GW, day=d[3]) == 0.0
    # Day 1: every delay 3 s -> the "<= 5 s" bin.
    assert _value(vals, "freshness_p50_s", device=GW, day=d[1]) == 5
    assert _value(vals, "freshness_p95_s", device=GW, day=d[1]) == 5
    # Day 2: delays 24 h + 1 min .. 48 h -> all in the "<= 2 d" bin.
    assert _value(vals, "freshness_p50_s", device=GW, day=d[2]) == 172_800
    # Day 3: minute i (0..1439) arrives 1440 - i minutes late, two records a minute: 2880
    # records; the 1440th smallest delay is 720 min = 12 h (bin "<= 12 h"), the 2736th
    # (ceil(0.95 * 2880)) is 1368 min = 22.8 h (bin "<= 1 d").
    assert _value(vals, "freshness_p50_s", device=GW, day=d[3]) == 43_200
    assert _value(vals, "freshness_p95_s", device=GW, day=d[3]) == 86_400


async def test_stuck_sensor_and_out_of_range(store: Store) -> None:
    """11 Mar 2025, readings every minute. sal-1 reads exactly 0.8 from 08:00 to 13:00
    (5 flat hours >= 3: 5 stuck hours); sal-2 is flat only 08:00–10:00 (2 h: not stuck).
    sal-2 also sends three impossible values (99‰) at 14:10, 14:20 and 16:05: two fault hours."""
    for dev in ("sal-1", "sal-2"):
        await _device(store, dev, DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    times = every(vn(2025, 3, 11), vn(2025, 3, 12), MIN)

    def values(flat_from: int, flat_to: int) -> list[float]:
        return [
            0.8 if flat_from <= t < flat_to else 0.5 + (i % 7) * 0.01 for i, t in enumerate(times)
        ]

    s1 = series(seqs, "sal-1", "salinity", times, values(vn(2025, 3, 11, 8), vn(2025, 3, 11, 13)))
    s2 = series(seqs, "sal-2", "salinity", times, values(vn(2025, 3, 11, 8), vn(2025, 3, 11, 10)))
    bad = series(
        seqs,
        "sal-2",
        "salinity",
        [vn(2025, 3, 11, 14, 10, 5), vn(2025, 3, 11, 14, 20, 5), vn(2025, 3, 11, 16, 5, 5)],
        [99.0, 99.0, 99.0],
    )
    await store.ingest(gw, batch(GW, [s1, s2, bad]), LATER)
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=False, now=LATER)
    assert _value(vals, "stuck_hours", device="sal-1") == 5
    assert not [v for v in vals if v.indicator == "stuck_hours" and v.device == "sal-2"]
    assert _value(vals, "out_of_range_hours", device="sal-2") == 2
    assert _value(vals, "sensor_completeness", device="sal-2") == 1.0


async def test_salinity_hours_by_crop_and_water_alarms(store: Store) -> None:
    """Two fields read 0.7‰ from 09:00 to 12:00 and 0.3‰ otherwise: above durian's 0.5‰ for
    3 hours, never above rice's 4‰. A river gauge at 1.95 m for 2 hours (>= I 1.70, >= II
    1.90, < III 2.00) and 2.05 m for 1 hour (>= III)."""
    await _device(store, "durian-1", DeviceKind.SENSOR, crop="durian", expected_interval_s=60)
    await _device(store, "rice-1", DeviceKind.SENSOR, crop="rice", expected_interval_s=60)
    await _device(store, "level-1", DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    times = every(vn(2025, 3, 11), vn(2025, 3, 12), MIN)
    sal = [0.7 if vn(2025, 3, 11, 9) <= t < vn(2025, 3, 11, 12) else 0.3 for t in times]

    def level(t: int) -> float:
        if vn(2025, 3, 11, 18) <= t < vn(2025, 3, 11, 20):
            return 1.95
        if vn(2025, 3, 11, 20) <= t < vn(2025, 3, 11, 21):
            return 2.05
        return 1.2

    await store.ingest(
        gw,
        batch(
            GW,
            [
                series(seqs, "durian-1", "salinity", times, sal),
                series(seqs, "rice-1", "salinity", times, sal),
                series(seqs, "level-1", "water_level", times, [level(t) for t in times]),
            ],
        ),
        LATER,
    )
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=False, now=LATER)
    assert _value(vals, "salinity_hours_above", device="durian-1") == 3
    assert _value(vals, "salinity_hours_above", device="rice-1") == 0
    assert _value(vals, "water_hours_above_i", device="level-1") == 3
    assert _value(vals, "water_hours_above_ii", device="level-1") == 3
    assert _value(vals, "water_hours_above_iii", device="level-1") == 1
    # A commune that sets durian's threshold at 0.8‰ sees no exceedance.
    vals = await _summary(
        store,
        day,
        day,
        Level.DEVICE,
        by_day=False,
        now=LATER,
        salinity=[{"crop": "durian", "danger_ppt": 0.8}],
    )
    assert _value(vals, "salinity_hours_above", device="durian-1") == 0


async def test_dossiers_ratings_and_radio(store: Store) -> None:
    """10 dossiers (4 online, 3 assisted, 3 in person) -> 70% online. Ratings 3,3,2,1 on the
    3-level scale and 5,4,3 on the 5-level one -> 5 of 7 satisfied. A radio cluster
    broadcasts at 05:01 (on time) and 17:40 (40 min late, beyond 30) -> 1 of 2."""
    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    await _device(store, "radio-1", DeviceKind.RADIO)
    gw = await _gw(store)
    seqs = Seqs()
    t0 = vn(2025, 3, 11, 8)
    evs = [
        event(seqs, "kiosk-1", "dossier_submitted", t0 + i * MIN, channel=ch, procedure="x")
        for i, ch in enumerate(["online"] * 4 + ["assisted"] * 3 + ["in_person"] * 3)
    ]
    evs += [
        event(seqs, "kiosk-1", "rating", t0 + HOUR + i * MIN, scale=sc, score=s)
        for i, (sc, s) in enumerate([(3, 3), (3, 3), (3, 2), (3, 1), (5, 5), (5, 4), (5, 3)])
    ]
    evs += [
        event(seqs, "radio-1", "broadcast", vn(2025, 3, 11, 5, 1), program="morning_news"),
        event(seqs, "radio-1", "broadcast", vn(2025, 3, 11, 17, 40), program="evening_news"),
    ]
    await store.ingest(gw, batch(GW, events=evs), LATER)
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.COMMUNE, by_day=False, now=LATER)
    assert _value(vals, "dossiers_online") == 7 / 10
    assert _value(vals, "satisfaction") == 5 / 7
    assert _value(vals, "radio_availability") == 1 / 2


async def test_unsynced_readings_count_in_no_minute(store: Store) -> None:
    """Readings whose time was never synchronised are kept but fill no minute; they are
    counted (by the hour they arrived) for the report's coverage."""
    await _device(store, "sal-1", DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    times = every(vn(2025, 3, 11, 10), vn(2025, 3, 11, 11), MIN)
    await store.ingest(
        gw,
        batch(GW, [series(seqs, "sal-1", "salinity", times, q=int(TimeQuality.UNSYNCED))]),
        vn(2025, 3, 11, 12),
    )
    day = date(2025, 3, 11)
    _, facts = await gather(
        store, IndicatorsConfig(), commune=COMMUNE, period=Period(day, day), now_ms=LATER
    )
    vals = summarize(facts, Level.DEVICE, by_day=False)
    assert _value(vals, "sensor_completeness", device="sal-1") == 0.0
    assert facts.unsynced == {(HAMLET, "sal-1"): 60}


async def test_simulated_kiosk_and_radio_traffic(store: Store) -> None:
    """What firmware_sim's kiosk and smart-radio models emit (the events real firmware sends)
    gives the shares one counts by hand from the same events."""
    from firmware_sim.services import KioskModel, RadioModel

    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    await _device(store, "radio-1", DeviceKind.RADIO)
    gw = await _gw(store)
    seqs = Seqs()
    kiosk = KioskModel(seed=11, key="kiosk-1", sessions_per_hour=12.0, rating_scale=5)
    radio = RadioModel(seed=11, key="radio-1")
    t0, t1 = vn(2025, 3, 10) / 1000, vn(2025, 3, 15) / 1000  # Monday to Friday
    k_events = kiosk.events_between(t0, t1)
    r_events = radio.events_between(t0, t1)
    evs = [event(seqs, "kiosk-1", e.name, int(e.t * 1000), **e.attrs) for e in k_events]  # type: ignore[arg-type]
    evs += [event(seqs, "radio-1", e.name, int(e.t * 1000), **e.attrs) for e in r_events]  # type: ignore[arg-type]
    for i in range(0, len(evs), 1000):
        await store.ingest(gw, batch(GW, events=evs[i : i + 1000]), LATER)
    dossiers = [e for e in k_events if e.name == "dossier_submitted"]
    online = [e for e in dossiers if e.attrs["channel"] in ("online", "assisted")]
    ratings = [e for e in k_events if e.name == "rating"]
    happy = [e for e in ratings if int(e.attrs["score"]) >= 4]
    assert dossiers
    assert ratings
    vals = await _summary(
        store, date(2025, 3, 10), date(2025, 3, 14), Level.COMMUNE, by_day=False, now=LATER
    )
    assert _value(vals, "dossiers_online") == len(online) / len(dossiers)
    assert _value(vals, "satisfaction") == len(happy) / len(ratings)
    # The radio starts each broadcast up to 2 minutes late: all 10 slots delivered.
    assert len(r_events) == 10
    assert _value(vals, "radio_availability") == 1.0


async def test_offline_status_is_not_a_sign_of_life(store: Store) -> None:
    """A kiosk beats every minute 07:00–08:00 on Tue 11 Mar 2025, then its broker publishes
    the last-will "offline" at 08:30: the will does not count as heard, so only 07:00–08:00
    (60 min, plus the 08:00 grace minute) of the 480 service minutes are up."""
    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    gw = await _gw(store)
    seqs = Seqs()
    beats = every(vn(2025, 3, 11, 7, 0, 30), vn(2025, 3, 11, 8), MIN)
    will = event(seqs, "kiosk-1", "status", vn(2025, 3, 11, 8, 30), state="offline")
    await store.ingest(
        gw,
        batch(GW, [series(seqs, "kiosk-1", "uptime", beats, kind=RecordKind.HEARTBEAT)], [will]),
        LATER,
    )
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=True, now=LATER)
    assert _value(vals, "kiosk_availability", device="kiosk-1") == 61 / 480


async def test_aggregates_count_their_minute_and_today_counts_up_to_now(store: Store) -> None:
    """A sensor (60 s) reports 06:00–11:59 on 11 Mar 2025, plus one aggregate record of 60
    readings stamped 12:00 (its gateway ran out of space). Asked at 13:00 that day: 780
    minutes have passed, 361 had data (the aggregate fills one minute)."""
    from hamlet.contract import Point, SeriesBlock

    await _device(store, "sal-1", DeviceKind.SENSOR, expected_interval_s=60)
    gw = await _gw(store)
    seqs = Seqs()
    times = every(vn(2025, 3, 11, 6), vn(2025, 3, 11, 12), MIN)
    (s,) = seqs.take(1)
    agg = SeriesBlock.from_points(
        "sal-1",
        "salinity",
        RecordKind.AGGREGATE,
        [Point(seq=s, t=vn(2025, 3, 11, 12), v=0.4, q=0, vmin=0.3, vmax=0.5, n=60)],  # type: ignore[arg-type]
    )
    now = vn(2025, 3, 11, 13)
    await store.ingest(gw, batch(GW, [series(seqs, "sal-1", "salinity", times), agg]), now)
    day = date(2025, 3, 11)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=True, now=now)
    hit = [v for v in vals if v.indicator == "sensor_completeness"]
    assert len(hit) == 1
    assert (hit[0].num, hit[0].den) == (361, 780)


def test_delay_beyond_a_week_reports_a_week() -> None:
    from server.indicators.compute import percentile_edge
    from server.indicators.rollups import DELAY_EDGES_S, delay_bin

    hist = [0] * (len(DELAY_EDGES_S) + 1)
    hist[delay_bin(30 * 86_400_000)] += 1  # a month late
    assert percentile_edge(hist, 0.95) == 7 * 86_400
    assert percentile_edge([0] * len(hist), 0.5) is None


async def test_hotspot_serves_every_day_including_holidays(store: Store) -> None:
    """30 April 2025 (Reunification Day, a Wednesday): the kiosk is closed, the cultural
    house's Wi-Fi hotspot is expected 06:00–22:00 (960 min); it was heard until 14:00 only."""
    await _device(store, "wifi-1", DeviceKind.WIFI)
    gw = await _gw(store)
    seqs = Seqs()
    beats = every(vn(2025, 4, 30, 5, 0, 30), vn(2025, 4, 30, 14), MIN)
    await store.ingest(
        gw, batch(GW, [series(seqs, "wifi-1", "clients", beats, kind=RecordKind.HEARTBEAT)]), LATER
    )
    day = date(2025, 4, 30)
    vals = await _summary(store, day, day, Level.DEVICE, by_day=True, now=LATER)
    # 06:00..13:59 heard (480 min) plus the 14:00 grace minute.
    assert _value(vals, "hotspot_availability", device="wifi-1") == 481 / 960


async def test_a_commune_day_off_is_not_service_time(store: Store) -> None:
    """A day off by the commune's decision (``extra_closed``) expects no kiosk service, like
    a public holiday: a silent kiosk is not down that day."""
    await _device(store, "kiosk-1", DeviceKind.KIOSK)
    day = date(2025, 3, 11)
    normal = await _summary(store, day, day, Level.DEVICE, by_day=True, now=LATER)
    assert _value(normal, "kiosk_availability", device="kiosk-1") == 0.0
    closed = await _summary(
        store, day, day, Level.DEVICE, by_day=True, now=LATER, extra_closed=["2025-03-11"]
    )
    assert not [v for v in closed if v.indicator == "kiosk_availability"]
