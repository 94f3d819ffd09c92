"""Golden alert scenarios, expected values computed by hand in each test.

Real SQLite store, real engine; only the clock is set by the test (silences need "two days
later"). Defaults under test (hamlet/alertrules.py): durian 0.3‰ watch / 0.5‰ danger,
salinity band 0.1‰ and 10 min minimum; stuck after 6 h; device down after 10 min of
service time; gateway silent after 15 min.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hamlet.alertrules import AlertSettings, Override
from hamlet.contract import RecordKind
from server.models import DeviceIn, DeviceKind
from tests.server.alerts.alerts_env import DAY, HOUR, MIN, Row, alert_env, vn

DURIAN = DeviceIn(id="sal-1", crop="durian", expected_interval_s=60)


def only(rows: list[Row], rule: str) -> list[Row]:
    return [r for r in rows if r.rule == rule]


def hysteresis_values() -> list[float]:
    v = [0.2] * 10  # m0-9 safe
    v += [0.55, 0.45, 0.56, 0.42, 0.60]  # m10-14: across 0.5, dips stay above 0.4
    v += [0.47 if m % 2 == 0 else 0.58 for m in range(15, 30)]  # m15-29: back and forth
    v[20] = 0.70  # the peak
    v += [0.35]  # m30: below the danger clear level 0.4, above the watch clear level 0.2
    v += [0.25] * 9  # m31-39
    v += [0.15] * 6  # m40-45: below 0.2, watch ends
    return v


async def test_salinity_back_and_forth_inside_the_band_is_one_alert(tmp_path: Path) -> None:
    t0 = vn(2026, 3, 4, 8, 0)
    async with alert_env(tmp_path, now=t0 + 46 * MIN) as env:  # a minute after the last
        await env.device(DURIAN)
        vals = hysteresis_values()
        await env.send(
            [env.block("sal-1", "salinity", [(t0 + m * MIN, v) for m, v in enumerate(vals)])]
        )
        rows = await env.alerts()
    (danger,) = only(rows, "salinity.danger")
    assert (danger.start, danger.end) == (t0 + 10 * MIN, t0 + 30 * MIN)
    assert (danger.peak, danger.peak_t) == (0.70, t0 + 20 * MIN)
    assert danger.message_vi == "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"
    assert danger.message_en == "Salinity 0.7‰ — above the durian limit 0.5‰"
    (watch,) = only(rows, "salinity.watch")
    assert (watch.start, watch.end, watch.peak) == (t0 + 10 * MIN, t0 + 40 * MIN, 0.70)
    assert len(rows) == 2  # nothing else: no stale (1-min readings), no stuck


async def test_without_band_and_minimum_the_same_data_flaps(tmp_path: Path) -> None:
    """The control: band 0 and no minimum duration turn the one alert into nine."""
    t0 = vn(2026, 3, 4, 8, 0)
    settings = AlertSettings(
        overrides=[Override(rule="salinity.danger", clear_band=0, min_duration_s=0)]
    )
    async with alert_env(tmp_path, settings, now=t0 + 46 * MIN) as env:
        await env.device(DURIAN)
        vals = hysteresis_values()
        await env.send(
            [env.block("sal-1", "salinity", [(t0 + m * MIN, v) for m, v in enumerate(vals)])]
        )
        rows = only(await env.alerts(), "salinity.danger")
    # Readings > 0.5 after one <= 0.5: m10, m12, m14 (with m15), m17, m19 (to m21), m23,
    # m25, m27, m29.
    assert [(r.start - t0) // MIN for r in rows] == [10, 12, 14, 17, 19, 23, 25, 27, 29]


async def test_minimum_duration_a_short_spike_gives_none(tmp_path: Path) -> None:
    t0 = vn(2026, 3, 4, 8, 0)
    vals = [0.2] * 5 + [0.9] * 5 + [0.2] * 10 + [0.9] * 10 + [0.2] * 6
    async with alert_env(tmp_path, now=t0 + 36 * MIN) as env:
        await env.device(DURIAN)
        await env.send(
            [env.block("sal-1", "salinity", [(t0 + m * MIN, v) for m, v in enumerate(vals)])]
        )
        rows = await env.alerts()
    # Spike m5-m9 ends at m10: 5 min < 10 -> none. Spike m20-m29 ends at m30: 10 min -> one.
    for rule in ("salinity.danger", "salinity.watch"):
        (a,) = only(rows, rule)
        assert (a.start, a.end, a.peak, a.peak_t) == (
            t0 + 20 * MIN,
            t0 + 30 * MIN,
            0.9,
            t0 + 20 * MIN,
        )


@pytest.mark.parametrize(
    ("hours", "minutes", "words"),
    [(None, 90, "90 phút"), ("Mon-Fri 07:00-17:00", 210, "3 giờ 30 phút")],
    ids=["lunch", "no-lunch"],
)
async def test_kiosk_down_90_minutes_across_the_lunch_break(
    tmp_path: Path, hours: str | None, minutes: int, words: str
) -> None:
    # Wednesday 4 March 2026, not a holiday. Heartbeats every minute 07:00-11:00 and
    # 14:30-17:00. Default hours 07:00-11:30, 13:30-17:00: the silence 11:00-14:30 holds
    # 30 + 60 = 90 min of service time (210 min of wall time).
    day = (2026, 3, 4)
    am = range(vn(*day, 7, 0), vn(*day, 11, 0) + 1, MIN)
    pm = range(vn(*day, 14, 30), vn(*day, 17, 0) + 1, MIN)
    async with alert_env(tmp_path, now=vn(*day, 17, 1)) as env:
        await env.device(DeviceIn(id="kiosk-1", kind=DeviceKind.KIOSK, service_hours=hours))
        beats = [(t, 1.0) for t in [*am, *pm]]
        await env.send([env.block("kiosk-1", "heartbeat", beats, RecordKind.HEARTBEAT)])
        (a,) = await env.alerts()
        assert (a.rule, a.device) == ("device.down", "kiosk-1")
        assert (a.start, a.end, a.peak) == (vn(*day, 11, 0), vn(*day, 14, 30), float(minutes))
        assert a.message_vi == f"Ki-ốt kiosk-1 ngừng hoạt động {words} trong giờ phục vụ"
        if hours is not None:
            return
        # Silent since 17:00; the gateway still reports. Thursday 07:20: 20 min of service
        # time have passed (none overnight) -> an open alert from 07:00.
        env.clock.now = vn(2026, 3, 5, 7, 19)
        await env.send(
            [env.block("gw-1", "gw.uptime_s", [(env.clock.now, 1.0)], RecordKind.HEARTBEAT)]
        )
        env.clock.now = vn(2026, 3, 5, 7, 20)
        rows = await env.alerts()
    (opened,) = [r for r in rows if r.end is None]
    assert (opened.rule, opened.start, opened.peak) == ("device.down", vn(2026, 3, 5, 7, 0), 20.0)


def level(t: int) -> float:
    """A fresh-water canal: 0.20-0.24‰, never the same value twice in a row."""
    return 0.2 + (t // MIN % 5) / 100


async def test_gateway_offline_two_days_then_its_backlog_arrives(tmp_path: Path) -> None:
    mon10 = vn(2026, 3, 2, 10, 0)
    async with alert_env(tmp_path, now=mon10) as env:
        await env.device(DURIAN)
        await env.send(
            [
                env.block(
                    "sal-1",
                    "salinity",
                    [(t, level(t)) for t in range(mon10 - HOUR, mon10 + 1, MIN)],
                )
            ]
        )
        assert await env.alerts() == []
        # Two days without contact: the gateway is silent; its sensor's silence is not
        # reported on its own (behind a silent gateway it says nothing).
        env.clock.now = mon10 + 2 * DAY
        (silent,) = await env.alerts()
        assert (silent.rule, silent.device, silent.start, silent.end) == (
            "gateway.silent",
            "gw-1",
            mon10,
            None,
        )
        # The backlog: every minute of the two days, salinity 0.8 on Tuesday 03:00-04:59
        # (0.20-0.24 otherwise),
        # sent newest chunk first (the gateway drains live data first).
        tue3, tue5 = vn(2026, 3, 3, 3, 0), vn(2026, 3, 3, 5, 0)
        pts = [
            (t, 0.8 if tue3 <= t < tue5 else level(t))
            for t in range(mon10 + MIN, mon10 + 2 * DAY + 1, MIN)
        ]
        chunks = [pts[i : i + 720] for i in range(0, len(pts), 720)]
        for chunk in reversed(chunks):
            await env.send([env.block("sal-1", "salinity", chunk)])
        rows = await env.alerts()
        retracted = [r for r in await env.alerts(retracted=True) if r.state == "retracted"]
    assert [r.rule for r in rows] == ["gateway.silent", "salinity.danger", "salinity.watch"]
    gw, danger, watch = rows
    assert gw.id == silent.id  # the same alert, now closed
    assert (gw.start, gw.end, gw.peak) == (mon10, mon10 + 2 * DAY, 2 * 24 * 60.0)
    assert gw.message_en == "Gateway gw-1 silent for 2 d"
    for a in (danger, watch):
        assert (a.start, a.end, a.peak, a.peak_t) == (tue3, tue5, 0.8, tue3)  # reading times
        assert a.created == mon10 + 2 * DAY  # recorded on arrival, dated by the readings
    # While only the newest chunk had arrived, the sensor looked silent for 36 h; the older
    # chunks filled that in, so that alert was retracted (kept, not deleted).
    assert [r.rule for r in retracted] == ["sensor.stale"], retracted


async def test_stuck_sensor(tmp_path: Path) -> None:
    t0 = vn(2026, 3, 4, 0, 0)
    step = 10 * MIN
    vals = [1.0 + 0.01 * i for i in range(12)]  # i 0-11: moving
    vals += [1.234] * 43  # i 12-54: stuck, equal readings span 42 × 10 min = 7 h >= 6 h
    vals += [1.3 + 0.01 * i for i in range(6)]  # i 55-60: moving
    vals += [0.9] * 31  # i 61-91: equal readings span 30 × 10 min = 5 h < 6 h: no alert
    vals += [0.95, 0.96, 0.97, 0.98]  # i 92-95
    async with alert_env(tmp_path, now=t0 + DAY) as env:
        await env.device(DeviceIn(id="wl-1", expected_interval_s=600))
        await env.send(
            [env.block("wl-1", "water_level", [(t0 + i * step, v) for i, v in enumerate(vals)])]
        )
        env.clock.now = t0 + 95 * step + MIN
        rows = [r for r in await env.alerts() if r.rule != "gateway.silent"]
    (a,) = rows
    assert (a.rule, a.device, a.metric) == ("sensor.stuck", "wl-1", "water_level")
    assert (a.start, a.end, a.peak) == (t0 + 12 * step, t0 + 55 * step, 1.234)
    assert (
        a.message_en == "Sensor wl-1 (Water level) stuck at 1.23 m for 6 h or more — needs a check"
    )
