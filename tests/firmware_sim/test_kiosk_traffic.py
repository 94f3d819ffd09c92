"""Kiosk traffic by population and channel, its hourly/weekday/Tết shape, and holidays.

Holiday dates here come from published calendars, not from our library: the government's
Tết 2024 break (8-14 February 2024, announced by the Ministry of Labour) and the lunar new
year of 2035 (mùng 1 Tết Ất Mão = Thursday 8 February 2035).
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, timedelta

import pytest

from firmware_sim.services import KioskModel, SimEvent
from firmware_sim.timebase import local, local_date, local_hour, parse_start

TET_BREAK_2024 = [date(2024, 2, 8) + timedelta(days=i) for i in range(7)]  # Thu 8 - Wed 14
TET_2035_FIRST_DAYS = [date(2035, 2, 8), date(2035, 2, 9)]  # mùng 1, mùng 2 (Thu, Fri)
FIXED_DAYS_OFF = [(4, 30), (5, 1), (9, 2)]  # Reunification Day, Labour Day, National Day


def _year(k: KioskModel, year: int) -> list[SimEvent]:
    return k.events_between(parse_start(f"{year}-01-01"), parse_start(f"{year + 1}-01-01"))


@pytest.fixture(scope="module")
def onestop_2026() -> list[SimEvent]:
    """A commune of 15,000 people at its one-stop-shop kiosk, a whole year."""
    return _year(KioskModel(seed=1, key="onestop", people=15000), 2026)


def _open_days(events: list[SimEvent]) -> set[date]:
    return {local_date(e.t) for e in events if e.name == "session_start"}


def test_sessions_and_dossiers_per_commune_population(onestop_2026: list[SimEvent]) -> None:
    names = Counter(e.name for e in onestop_2026)
    days = _open_days(onestop_2026)
    per_day = names["session_start"] / len(days)
    assert 10 <= per_day <= 25, per_day  # was 64 a day before calibration
    assert 900 <= names["dossier_submitted"] <= 2500
    # A hamlet of ~500 households (~2,000 people): a couple of sessions a day.
    hamlet = Counter(e.name for e in _year(KioskModel(seed=2, key="h", people=2000), 2026))
    assert 100 <= hamlet["dossier_submitted"] <= 300  # was 1,345 a year
    assert 1.0 <= hamlet["session_start"] / 250 <= 3.5


def test_rating_rate_is_well_below_sixty_percent(onestop_2026: list[SimEvent]) -> None:
    names = Counter(e.name for e in onestop_2026)
    share = names["rating"] / names["session_start"]
    assert 0.2 <= share <= 0.4, share


def test_morning_peak_and_quiet_late_afternoon(onestop_2026: list[SimEvent]) -> None:
    starts = [local_hour(e.t) for e in onestop_2026 if e.name == "session_start"]
    per_hour_morning = sum(8.0 <= h < 10.0 for h in starts) / 2.0
    per_hour_late = sum(15.5 <= h < 17.0 for h in starts) / 1.5
    per_hour_early = sum(7.0 <= h < 7.5 for h in starts) / 0.5
    assert per_hour_morning > 2.0 * per_hour_late
    assert per_hour_morning > 1.3 * per_hour_early
    assert all(7.0 <= h < 11.5 or 13.5 <= h < 17.0 for h in starts)


def test_monday_peak(onestop_2026: list[SimEvent]) -> None:
    by_weekday = Counter(local(e.t).weekday() for e in onestop_2026 if e.name == "session_start")
    days = Counter(d.weekday() for d in _open_days(onestop_2026))
    rate = {wd: by_weekday[wd] / days[wd] for wd in range(5)}
    assert rate[0] == max(rate.values())
    assert rate[0] > 1.3 * rate[4]
    assert 5 not in by_weekday
    assert 6 not in by_weekday


def test_rush_before_tet_and_closed_during_it_2024() -> None:
    ev = _year(KioskModel(seed=3, key="onestop", people=15000), 2024)
    days = Counter(local_date(e.t) for e in ev if e.name == "session_start")
    for d in TET_BREAK_2024:
        assert days[d] == 0, d
    for m, dd in FIXED_DAYS_OFF:
        assert days[date(2024, m, dd)] == 0
    before = [date(2024, 1, 24) + timedelta(days=i) for i in range(14)]  # the last two weeks
    march = [date(2024, 3, 4) + timedelta(days=i) for i in range(28)]

    def per_working_day(span: list[date]) -> float:
        return statistics.fmean(days[d] for d in span if d.weekday() < 5)

    assert per_working_day(before) > 1.3 * per_working_day(march)


def test_tet_2035_from_the_lunar_calendar() -> None:
    k = KioskModel(seed=4, key="onestop", people=15000)
    ev = k.events_between(parse_start("2035-01-22"), parse_start("2035-03-01"))
    days = Counter(local_date(e.t) for e in ev if e.name == "session_start")
    for d in TET_2035_FIRST_DAYS:
        assert days[d] == 0, d
        assert not k.powered(parse_start(f"{d.isoformat()}T09:00"))
    # The working week before is open (and busy).
    assert all(days[date(2035, 1, 22) + timedelta(days=i)] > 0 for i in range(5))
    # The fixed days off of 2035 (Mon 30 April, Tue 1 May) too.
    spring = k.events_between(parse_start("2035-04-29"), parse_start("2035-05-03"))
    spring_days = Counter(local_date(e.t) for e in spring if e.name == "session_start")
    assert spring_days[date(2035, 4, 30)] == 0
    assert spring_days[date(2035, 5, 1)] == 0
    assert spring_days[date(2035, 5, 2)] > 0
