"""Year types and rain against the statistics docs/simulator.md states (Cần Thơ station)."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date

import pytest

from firmware_sim import physics as P
from firmware_sim.timebase import local, local_date, parse_start
from firmware_sim.years import DRAW_SHARES, YearType, year_type

DAY = 86400.0
ALARM_III = 2.00  # Cần Thơ station, since the 2020 revision (DESIGN.md §5)


def _daily_max(site: P.Site, year: int, first: str = "08-01", last: str = "12-31") -> list[float]:
    """Daily maxima of the water level (10-minute samples) over part of a year."""
    t0 = parse_start(f"{year}-{first}")
    t1 = parse_start(f"{year}-{last}") + DAY
    by_day: dict[date, float] = {}
    t = t0
    while t < t1:
        d = local_date(t)
        by_day[d] = max(by_day.get(d, -9.0), P.water_level(t, site))
        t += 600.0
    return list(by_day.values())


def _station(kind: YearType, seed: int = 1) -> P.Site:
    return P.Site(seed=seed, key="can-tho", distance_km=80.0, year=kind)


@pytest.mark.parametrize("year", [2024, 2027])
def test_alarm_iii_days_per_year_type(year: int) -> None:
    ordinary = _daily_max(_station(YearType.ORDINARY), year)
    drought = _daily_max(_station(YearType.DROUGHT), year)
    record = _daily_max(_station(YearType.RECORD_FLOOD), year)
    # Ordinary: the peak comes near alarm III, a few days above it at most.
    assert 1.93 <= max(ordinary) <= 2.06, max(ordinary)
    assert sum(v >= ALARM_III for v in ordinary) <= 5
    # Drought (2016/2020): a low flood, no day at alarm III.
    assert max(drought) < 1.95
    assert sum(v >= ALARM_III for v in drought) == 0
    # Record flood: 2.29 m, and weeks of days above alarm III.
    assert 2.26 <= max(record) <= 2.32, max(record)
    assert sum(v >= ALARM_III for v in record) >= 10
    # The dry season stays far below: no alarm outside the flood season in any year type.
    dry = _daily_max(_station(YearType.RECORD_FLOOD), year, "01-01", "06-30")
    assert max(dry) < 1.8


def test_discharge_damps_the_tidal_range_in_the_flood_season() -> None:
    site = _station(YearType.ORDINARY)

    def mean_daily_range(start: str) -> float:
        t0 = parse_start(start)
        xs = [P.water_level(t0 + i * 600, site) for i in range(144 * 30)]
        return statistics.fmean(
            max(xs[d * 144 : (d + 1) * 144]) - min(xs[d * 144 : (d + 1) * 144]) for d in range(30)
        )

    march, october = mean_daily_range("2026-03-01"), mean_daily_range("2026-10-01")
    assert 1.5 < march < 2.2
    assert october < 0.8 * march


def _season_max(km: float, kind: YearType, daily_mean: bool = False) -> float:
    site = P.Site(seed=4, key="h", distance_km=km, year=kind)
    t0 = parse_start("2026-02-01")
    xs = [P.salinity(t0 + i * 3600, site) for i in range(89 * 24)]  # February-April
    if daily_mean:
        return max(statistics.fmean(xs[d * 24 : (d + 1) * 24]) for d in range(89))
    return max(xs)


def test_salinity_fresh_at_dinh_mon_in_ordinary_years_far_inland_in_droughts() -> None:
    # Định Môn (Thới Lai) is ~85 km up the Hậu: fresh all dry season in an ordinary year.
    assert _season_max(85, YearType.ORDINARY) < 0.5
    assert _season_max(80, YearType.ORDINARY) < 0.5
    # Ordinary: the 4 ‰ line (daily mean) stands near 35 km.
    assert _season_max(33, YearType.ORDINARY, daily_mean=True) > 4.0
    assert _season_max(40, YearType.ORDINARY, daily_mean=True) < 4.0
    # Drought (2016): 4 ‰ 60-70 km inland, and over 1 ‰ at Cần Thơ and Định Môn.
    assert _season_max(63, YearType.DROUGHT, daily_mean=True) > 4.0
    assert _season_max(80, YearType.DROUGHT) > 1.0
    assert _season_max(85, YearType.DROUGHT) > 1.0
    # Flood season: fresh everywhere, whatever the year.
    site = P.Site(seed=4, key="h", distance_km=40, year=YearType.DROUGHT)
    t0 = parse_start("2026-09-01")
    assert max(P.salinity(t0 + i * 3600, site) for i in range(24 * 30)) < 0.5


def test_the_seed_draws_year_types_in_the_stated_shares() -> None:
    draws = Counter(year_type(seed, 2026, None) for seed in range(600))
    for kind, share in DRAW_SHARES:
        assert abs(draws[kind] / 600 - share) < 0.05, draws
    assert draws[YearType.ORDINARY] / 600 > 0.6
    # One seed, many years: not every year alike; a fixed type overrides the draw.
    assert len({year_type(7, y, None) for y in range(2020, 2040)}) >= 2
    assert {year_type(7, y, YearType.DROUGHT) for y in range(2020, 2040)} == {YearType.DROUGHT}


def _rain_year(seed: int, kind: YearType, year: int = 2026) -> list[P.RainDay]:
    site = P.Site(seed=seed, key="wx", year=kind)
    day0 = int((parse_start(f"{year}-01-01") + 7 * 3600) // DAY)
    n = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    return [P.rain_day(site, day0 + i) for i in range(n)]


def test_rain_wet_days_heavy_tail_and_total() -> None:
    years = [_rain_year(seed, YearType.ORDINARY) for seed in range(12)]
    totals = [sum(d.mm for d in y) for y in years]
    wet = [sum(d.mm >= 1.0 for d in y) for y in years]
    annual_max = [max(d.mm for d in y) for y in years]
    assert 1600 <= statistics.fmean(totals) <= 1950, totals
    assert 110 <= statistics.fmean(wet) <= 140, wet
    assert all(95 <= w <= 160 for w in wet), wet
    assert 80 <= statistics.fmean(annual_max) <= 150, annual_max
    assert min(annual_max) >= 50


def test_rain_seasonal_shape_lull_and_peak() -> None:
    months = [0.0] * 12
    for seed in range(12):
        t0 = parse_start("2026-01-01")
        for i, d in enumerate(_rain_year(seed, YearType.ORDINARY)):
            months[local(t0 + i * DAY + DAY / 2).month - 1] += d.mm / 12
    may_nov = sum(months[4:11])
    assert may_nov > 0.9 * sum(months)
    jun, jul, aug, sep, octo = months[5], months[6], months[7], months[8], months[9]
    assert max(jul, aug) < jun  # the July-August lull ("hạn Bà Chằng")
    assert min(sep, octo) > 1.2 * max(jul, aug)  # the September-October peak
    assert months[4] > 120  # May: the rains have started
    assert max(months[0:3]) < 30  # a dry January-March


def test_drought_year_rains_less_and_later() -> None:
    ordinary = [sum(d.mm for d in _rain_year(s, YearType.ORDINARY)[:181]) for s in range(8)]
    drought = [sum(d.mm for d in _rain_year(s, YearType.DROUGHT)[:181]) for s in range(8)]
    assert statistics.fmean(drought) < 0.8 * statistics.fmean(ordinary)


def test_hourly_rain_adds_up_to_the_day() -> None:
    site = P.Site(seed=3, key="wx", year=YearType.ORDINARY)
    t0 = parse_start("2026-09-01")
    for i in range(30):
        day = int((t0 + i * DAY + 7 * 3600) // DAY)
        assert P.rain_between(t0 + i * DAY, t0 + (i + 1) * DAY, site) == pytest.approx(
            P.rain_day(site, day).mm
        )
