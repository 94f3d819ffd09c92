"""Vietnam's calendar as the platform needs it: the local day, public holidays, service hours.

Shared by the server (indicators, alerts, report card), the simulator (kiosk traffic) and the
pages, so "a day", "a holiday" and "within service hours" mean one thing everywhere.

Holidays come from the maintained ``holidays`` package, which computes Tết from the lunar
calendar for any year (tested for 2024 and 2035 against independent calendars) and follows
the Labour Code's fixed days and the government's substitute days it knows of. Communes
sometimes get extra days off by decision; :class:`ServiceHours` takes those as ``extra_closed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import holidays as _holidays

VN_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")

_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ServiceHoursError(ValueError):
    """A service-hours string that cannot be read; the message says what is wrong."""


@lru_cache(maxsize=256)
def _holidays_for(year: int) -> dict[date, str]:
    # language="vi" gives the names people in a commune use ("Tết Nguyên Đán").
    return dict(_holidays.country_holidays("VN", years=year, language="vi").items())


def holiday_name(day: date) -> str | None:
    """The Vietnamese name of the public holiday on ``day``, or None on a working day."""
    return _holidays_for(day.year).get(day)


def is_public_holiday(day: date) -> bool:
    return holiday_name(day) is not None


def public_holidays(year: int) -> dict[date, str]:
    """Every public holiday (and substitute day off) of ``year``, by date."""
    return dict(sorted(_holidays_for(year).items()))


def local_day(t_ms: int) -> date:
    """The Vietnamese calendar day a UTC millisecond timestamp falls on."""
    return datetime.fromtimestamp(t_ms / 1000, tz=VN_TZ).date()


def day_bounds_ms(day: date) -> tuple[int, int]:
    """[start, end) of a Vietnamese day in UTC milliseconds (Vietnam has no DST)."""
    start = datetime.combine(day, time(0), tzinfo=VN_TZ)
    end = start + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def month_days(year: int, month: int) -> list[date]:
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return [first + timedelta(days=i) for i in range((nxt - first).days)]


@dataclass(frozen=True, slots=True)
class Window:
    start: time
    end: time


# "Mon-Fri 07:00-11:30,13:30-17:00"; several clauses separated by ";"
# ("Mon-Fri 07:00-11:30,13:30-17:00; Sat 07:30-11:30"). "holidays" as a clause opts into
# working on public holidays (a hotspot that serves every day).
_CLAUSE: Final = re.compile(
    r"^\s*(?P<days>[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?(?:\s*,\s*[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?)*)"
    r"\s+(?P<windows>\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}(?:\s*,\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2})*)\s*$"
)


def _parse_time(text: str, where: str) -> time:
    hh, mm = (int(x) for x in text.strip().split(":"))
    if hh == 24 and mm == 0:
        return time.max
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise ServiceHoursError(f"{where}: {text.strip()!r} is not a time of day (HH:MM)")
    return time(hh, mm)


def _parse_days(text: str, where: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        bounds = [p.strip().lower() for p in part.split("-")]
        for b in bounds:
            if b not in _WEEKDAYS:
                raise ServiceHoursError(f"{where}: {b!r} is not a weekday (Mon, Tue, ... Sun)")
        lo, hi = _WEEKDAYS.index(bounds[0]), _WEEKDAYS.index(bounds[-1])
        if hi < lo:
            raise ServiceHoursError(f"{where}: day range {part.strip()!r} runs backwards")
        out.update(range(lo, hi + 1))
    return out


@dataclass(frozen=True)
class ServiceHours:
    """When a service is expected to be up, in Vietnam local time.

    The default is the one-stop shop's intake hours: 07:00–11:30 and 13:30–17:00,
    Monday–Friday, closed on public holidays.
    """

    by_weekday: dict[int, tuple[Window, ...]]
    open_on_holidays: bool = False
    extra_closed: frozenset[date] = field(default_factory=frozenset)
    text: str = ""

    @classmethod
    def parse(cls, text: str | None, *, extra_closed: Iterable[date] = ()) -> ServiceHours:
        """Read ``"Mon-Fri 07:00-11:30,13:30-17:00"``; None or "" gives the default."""
        src = (text or DEFAULT_SERVICE_HOURS).strip()
        by_day: dict[int, list[Window]] = {}
        open_on_holidays = False
        for raw in src.split(";"):
            clause = raw.strip()
            if not clause:
                continue
            if clause.lower() in {"holidays", "incl. holidays", "+holidays"}:
                open_on_holidays = True
                continue
            m = _CLAUSE.match(clause)
            if m is None:
                raise ServiceHoursError(
                    f"service hours {clause!r}: expected e.g. 'Mon-Fri 07:00-11:30,13:30-17:00'"
                )
            days = _parse_days(m["days"], clause)
            wins: list[Window] = []
            for w in m["windows"].split(","):
                a, b = w.split("-")
                win = Window(_parse_time(a, clause), _parse_time(b, clause))
                if win.end <= win.start:
                    raise ServiceHoursError(f"{clause}: window {w.strip()!r} ends before it starts")
                wins.append(win)
            for d in days:
                by_day.setdefault(d, []).extend(wins)
        frozen = {d: tuple(sorted(ws, key=lambda w: w.start)) for d, ws in by_day.items()}
        return cls(frozen, open_on_holidays, frozenset(extra_closed), src)

    def is_service_day(self, day: date) -> bool:
        if day in self.extra_closed:
            return False
        if not self.open_on_holidays and is_public_holiday(day):
            return False
        return day.weekday() in self.by_weekday

    def windows_ms(self, day: date) -> list[tuple[int, int]]:
        """The day's service windows as [start, end) UTC milliseconds; [] when closed."""
        if not self.is_service_day(day):
            return []
        out: list[tuple[int, int]] = []
        for w in self.by_weekday[day.weekday()]:
            a = datetime.combine(day, w.start, tzinfo=VN_TZ)
            b = (
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=VN_TZ)
                if w.end == time.max
                else datetime.combine(day, w.end, tzinfo=VN_TZ)
            )
            out.append((int(a.timestamp() * 1000), int(b.timestamp() * 1000)))
        return out

    def iter_windows_ms(self, start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
        """Service windows clipped to [start_ms, end_ms)."""
        day = local_day(start_ms)
        last = local_day(max(start_ms, end_ms - 1))
        while day <= last:
            for a, b in self.windows_ms(day):
                lo, hi = max(a, start_ms), min(b, end_ms)
                if lo < hi:
                    yield lo, hi
            day += timedelta(days=1)

    def service_ms(self, start_ms: int, end_ms: int) -> int:
        """How many milliseconds of service time lie in [start_ms, end_ms)."""
        return sum(b - a for a, b in self.iter_windows_ms(start_ms, end_ms))

    def is_open(self, t_ms: int) -> bool:
        return any(a <= t_ms < b for a, b in self.windows_ms(local_day(t_ms)))


DEFAULT_SERVICE_HOURS: Final = "Mon-Fri 07:00-11:30,13:30-17:00"
