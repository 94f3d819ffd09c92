"""Physics of the simulated hamlet: ranges, periods, seasons, determinism by seed."""

from __future__ import annotations

import cmath
import math
import statistics

import pytest

from firmware_sim import physics as P
from firmware_sim.firmware import Firmware, FirmwareParams
from firmware_sim.timebase import local, parse_start
from firmware_sim.years import YearType

CAN_THO = P.Site(seed=1, key="can-tho", distance_km=80.0, year=YearType.RECORD_FLOOD)
HOUR = 3600.0
DAY = 86400.0


def _series(f, start: str, days: float, step: float = 600.0) -> list[float]:
    t0 = parse_start(start)
    return [f(t0 + i * step) for i in range(int(days * DAY / step))]


def _peak_period(xs: list[float], step_h: float, lo_h: float, hi_h: float) -> float:
    """Period (h) of the strongest sinusoid between lo_h and hi_h (a direct periodogram)."""
    mean = statistics.fmean(xs)
    best, best_p = -1.0, 0.0
    p = lo_h
    while p <= hi_h:
        w = 2 * math.pi / p
        amp = abs(sum((x - mean) * cmath.exp(-1j * w * i * step_h) for i, x in enumerate(xs)))
        if amp > best:
            best, best_p = amp, p
        p += 0.005 if hi_h < 30 else 0.02 * 24
    return best_p


def test_tide_is_semidiurnal_m2_from_zero_crossings() -> None:
    # Remove the daily mean (flood, diurnal inequality) then count zero crossings.
    xs = _series(lambda t: P.water_level(t, CAN_THO), "2025-01-05", 30, 600.0)
    win = int(24.84 * 6)
    hp = [
        xs[i] - statistics.fmean(xs[i - win // 2 : i + win // 2])
        for i in range(win // 2, len(xs) - win // 2)
    ]
    ups = [i for i in range(1, len(hp)) if hp[i - 1] < 0 <= hp[i]]
    period_h = (ups[-1] - ups[0]) / (len(ups) - 1) / 6.0
    assert 12.0 < period_h < 12.9, period_h  # semi-diurnal, not diurnal
    # and the periodogram pins it to M2 (12.42 h), not S2 (12.00 h)
    assert abs(_peak_period(xs, 1 / 6, 11.5, 13.5) - P.M2_H) < 0.05


def test_spring_neap_cycle_is_about_14_8_days() -> None:
    xs = _series(lambda t: P.water_level(t, CAN_THO), "2025-01-01", 60, 600.0)
    per_day = 144
    ranges = [
        max(xs[d * per_day : (d + 1) * per_day]) - min(xs[d * per_day : (d + 1) * per_day])
        for d in range(60)
    ]
    period_d = _peak_period(ranges, 1.0, 10.0, 20.0)
    assert 13.5 < period_d < 16.0, period_d


def test_october_flood_peak_reaches_alarm_iii_but_stays_plausible() -> None:
    t0 = parse_start("2025-10-01")
    xs = [(P.water_level(t0 + i * 600, CAN_THO), t0 + i * 600) for i in range(144 * 45)]
    peak, when = max(xs)
    assert 2.0 <= peak <= 2.35  # alarm III 2.00 m, record 2.29 m
    assert local(when).month in (10, 11)
    dry = max(_series(lambda t: P.water_level(t, CAN_THO), "2025-03-01", 45))
    assert dry < 1.8  # no flood in the dry season


def test_salinity_season_gradient_and_tide() -> None:
    near = P.Site(seed=1, key="r", distance_km=25, year=YearType.ORDINARY)
    far = P.Site(seed=1, key="r", distance_km=80, year=YearType.ORDINARY)
    march_near = _series(lambda t: P.salinity(t, near), "2026-03-10", 7)
    march_far = _series(lambda t: P.salinity(t, far), "2026-03-10", 7)
    august_near = _series(lambda t: P.salinity(t, near), "2026-08-10", 7)
    assert max(august_near) < 0.5  # fresh water in the flood season
    assert statistics.fmean(march_near) > 4.0  # above the 4 g/L rice line near the estuary
    assert statistics.fmean(march_far) < statistics.fmean(march_near) / 3
    assert all(0 <= v <= 45 for v in march_near)
    # Salinity rises with the (lagged) flood tide.
    t0 = parse_start("2026-03-10")
    sal = [P.salinity(t0 + i * 600, near) for i in range(144 * 4)]
    tide = [P.astronomical_tide(t0 + i * 600 - HOUR) for i in range(144 * 4)]
    assert statistics.correlation(sal, tide) > 0.6


def test_weather_temperature_humidity_rain() -> None:
    site = P.Site(seed=5, key="wx")
    year = _series(lambda t: P.air_temp(t, site), "2025-01-01", 365, 1800.0)
    assert 26.0 < statistics.fmean(year) < 28.5
    swings = [
        max(year[d * 48 : (d + 1) * 48]) - min(year[d * 48 : (d + 1) * 48]) for d in range(365)
    ]
    assert 5.5 < statistics.fmean(swings) < 9.0  # ≈7 °C daily swing
    march = statistics.fmean(_series(lambda t: P.humidity(t, site), "2025-03-01", 30, 1800.0))
    sept = statistics.fmean(_series(lambda t: P.humidity(t, site), "2025-09-01", 30, 1800.0))
    assert 75 < march < 81
    assert 85 < sept < 91
    t0 = parse_start("2025-01-01")
    totals = [P.rain_between(t0, t0 + 365 * DAY, P.Site(seed=s, key="wx")) for s in range(10)]
    assert 1600 <= statistics.fmean(totals) <= 1950
    wet = P.rain_between(parse_start("2025-05-01"), parse_start("2025-12-01"), site)
    assert wet > 0.8 * P.rain_between(t0, t0 + 365 * DAY, site)  # rainy season May–Nov


def test_tipping_bucket_reports_whole_tips_and_loses_nothing() -> None:
    site = P.Site(seed=2, key="wx")
    gauge = P.TippingBucket(site, mm_per_tip=0.28)
    t0 = parse_start("2025-09-01")
    gauge.read(t0)
    total = 0.0
    for i in range(1, 24 * 12 * 5):
        r = gauge.read(t0 + i * 300)
        assert abs(r / 0.28 - round(r / 0.28)) < 1e-6
        total += r
    expected = P.rain_between(t0, t0 + (24 * 12 * 5 - 1) * 300, site)
    assert expected > 5
    assert abs(total + gauge.carry_mm - expected) < 1e-6


def test_soil_and_awd_stay_physical_and_irrigate() -> None:
    soil = P.SoilModel(P.Site(seed=3, key="soil-1"))
    t0 = parse_start("2026-02-01")
    samples = [soil.sample(t0 + i * 3600) for i in range(24 * 40)]
    for s in samples:
        assert 8 <= s["soil_moisture"] <= 60
        assert 4.5 < s["soil_ph"] < 7.0
        assert 0 < s["soil_ec"] < 30
    assert soil.irrigations > 0  # the dry season needs irrigation
    # The Đông Xuân crop's AWD weeks (sown 5 Dec): flooded to +5 cm, re-irrigated at -15 cm.
    awd = P.FieldWaterModel(P.Site(seed=3, key="awd-1"))
    t1 = parse_start("2025-12-20")
    depths = [awd.sample(t1 + i * 3600)["field_water"] for i in range(24 * 35)]
    assert min(depths) >= -0.151
    assert max(depths) <= 0.12
    assert awd.irrigations >= 2  # re-irrigated at -15 cm, repeatedly


def test_same_seed_same_hamlet_other_seed_other_hamlet() -> None:
    def run(seed: int) -> list[float]:
        site = P.Site(seed=seed, key="x", distance_km=40)
        soil = P.SoilModel(P.Site(seed=seed, key="s"))
        t0 = parse_start("2026-03-01")
        return [
            P.water_level(t0 + i * 997, site)
            + P.salinity(t0 + i * 997, site)
            + P.rain_rate(t0 + i * 997, site)
            + soil.sample(t0 + i * 997)["soil_moisture"]
            for i in range(1200)
        ]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_firmware_counters_reboots_drift_battery() -> None:
    t0 = parse_start("2026-03-01")
    fw = Firmware(
        1,
        "n",
        FirmwareParams(
            has_clock=True,
            drift_ppm=100,
            reboots_per_day=2,
            battery=True,
            battery_sag_v_per_day=0.01,
        ),
        t0,
    )
    seqs = [fw.next_seq() for _ in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    assert fw.maybe_reboot(t0 + 10 * DAY)  # 2 a day: 10 days surely saw one
    assert fw.next_seq() == 0
    t = t0 + DAY
    drift = fw.device_time(t)
    assert drift is not None
    assert 5 < drift - t < 12
    fw.clock_jump(-3600)
    jumped = fw.device_time(t)
    assert jumped is not None
    assert jumped - t < -3590
    volts = [fw.battery(t0 + i * 1800) for i in range(48)]
    assert 3.4 < min(volts) < max(volts) <= 4.2
    assert Firmware(1, "n", FirmwareParams(), t0).device_time(t0) is None
    wrap = Firmware(1, "w", FirmwareParams(first_seq=2**32 - 1), t0)
    assert [wrap.next_seq(), wrap.next_seq()] == [2**32 - 1, 0]


@pytest.mark.parametrize("start", ["2025-10-22", "2026-03-15"])
def test_metric_ranges_respect_the_shared_table(start: str) -> None:
    from hamlet.metrics import check_value

    site = P.Site(seed=9, key="z", distance_km=10)
    for t in [parse_start(start) + i * 1800 for i in range(48 * 7)]:
        check_value("water_level", P.water_level(t, site))
        check_value("salinity", P.salinity(t, site))
        check_value("ec", P.ec_from_salinity(P.salinity(t, site)))
        check_value("air_temp", P.air_temp(t, site))
        check_value("humidity", P.humidity(t, site))
        check_value("water_temp", P.water_temp(t, site))
