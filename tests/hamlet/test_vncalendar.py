"""The shared calendar and thresholds: holidays computed for any year, service hours, statuses."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamlet.thresholds import Status, crop_salinity, salinity_status, water_level_status
from hamlet.vncalendar import (
    VN_TZ,
    ServiceHours,
    ServiceHoursError,
    day_bounds_ms,
    is_public_holiday,
    local_day,
)


# Tết (first day of the lunar year) from published lunar calendars, not from our library.
@pytest.mark.parametrize(
    "tet", [date(2024, 2, 10), date(2025, 1, 29), date(2026, 2, 17), date(2035, 2, 8)]
)
def test_tet_is_a_holiday_in_any_year(tet: date) -> None:
    assert is_public_holiday(tet)
    assert ServiceHours.parse(None).windows_ms(tet) == []


def test_default_hours_split_around_lunch() -> None:
    sh = ServiceHours.parse(None)
    monday = date(2026, 11, 23)
    wins = sh.windows_ms(monday)
    assert [(b - a) // 60_000 for a, b in wins] == [270, 210]
    start = datetime.fromtimestamp(wins[0][0] / 1000, tz=VN_TZ)
    assert (start.hour, start.minute) == (7, 0)
    assert sh.windows_ms(date(2026, 11, 28)) == []  # Saturday
    lo, hi = day_bounds_ms(monday)
    assert sh.service_ms(lo, hi) == 480 * 60_000


@pytest.mark.parametrize("bad", ["Mon-Fry 07:00-11:00", "Mon 11:00-07:00", "Mon 25:00-26:00", "x"])
def test_bad_service_hours_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ServiceHoursError):
        ServiceHours.parse(bad)


@given(st.integers(1_577_836_800_000, 4_102_444_800_000), st.integers(0, 40 * 86_400_000))
def test_service_time_never_exceeds_the_span(start: int, span: int) -> None:
    sh = ServiceHours.parse("Mon-Sat 07:00-11:30,13:30-17:00; holidays")
    assert 0 <= sh.service_ms(start, start + span) <= span


@given(st.integers(1_577_836_800_000, 4_102_444_800_000))
def test_local_day_contains_its_timestamp(t: int) -> None:
    lo, hi = day_bounds_ms(local_day(t))
    assert lo <= t < hi


def test_crop_thresholds() -> None:
    assert salinity_status(14.17, "rice") is Status.DANGER
    assert salinity_status(2.81, "durian") is Status.DANGER
    assert salinity_status(0.13, "durian") is Status.SAFE
    assert salinity_status(0.8, None) is Status.WATCH
    assert crop_salinity("Rice").danger_ppt == 4.0
    assert water_level_status(2.05) is Status.DANGER
