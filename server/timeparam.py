"""Times and months as people type them: ISO 8601 in Vietnam time by default, or epoch ms.

``2025-03-11`` (a Vietnamese day), ``2025-03-11T08:30`` (Vietnam time), ``2025-03-11T01:30Z``
or ``+07:00`` offsets, and plain epoch milliseconds (``1741656600000``, what the API took
before) all work. A date alone as the *end* of a range means the end of that day, so
``start=2025-03-01&end=2025-03-31`` covers all of March.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final

from fastapi import Query

from hamlet.vncalendar import VN_TZ, day_bounds_ms, local_day

MAX_MS: Final = 2**53
TimeQ = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO 8601 (2025-03-11, 2025-03-11T08:30; Vietnam time unless an offset "
        "is given) or ms since epoch. Default: today. A date alone as end means its end.",
        examples=["2025-03-11"],
    ),
]
_MONTH: Final = re.compile(r"^(\d{4})-(\d{2})$")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class TimeParamError(ValueError):
    """A time a person passed that cannot be read; the message shows what works."""


_HELP: Final = (
    "use an ISO 8601 date or time (2025-03-11, 2025-03-11T08:30, 2025-03-11T01:30Z, "
    "Vietnam time unless an offset is given) or milliseconds since 1970"
)


def parse_time(text: str, *, end: bool = False) -> int:
    """Epoch milliseconds for ``text``; a bare date is its start (or, with ``end``, its end)."""
    s = text.strip()
    if not s or len(s) > 40:
        raise TimeParamError(f"{text[:40]!r}: {_HELP}")
    if s.isascii() and s.isdigit():
        ms = int(s)
        if ms > MAX_MS:
            raise TimeParamError(f"{s[:20]}… is too large for milliseconds; {_HELP}")
        return ms
    if len(s) == 10:
        try:
            d = date.fromisoformat(s)
        except ValueError as err:
            raise TimeParamError(f"{s!r}: {_HELP}") from err
        a, b = day_bounds_ms(d)
        return b if end else a
    try:
        dt = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError as err:
        raise TimeParamError(f"{s!r}: {_HELP}") from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=VN_TZ)
    try:
        # Exact integer arithmetic: float seconds × 1000 can land a millisecond short.
        ms = (dt - _EPOCH) // _MS
    except (OverflowError, OSError, ValueError) as err:
        raise TimeParamError(f"{s!r} is out of range") from err
    if not 0 <= ms <= MAX_MS:
        raise TimeParamError(f"{s!r} is before 1970 or too far ahead")
    return ms


def time_range(
    start: str | None, end: str | None, now_ms: int, *, default_days: int = 1
) -> tuple[int, int]:
    """[start, end) in ms; defaults: today (Vietnam) from 00:00, ``default_days`` long."""
    a = parse_time(start) if start else day_bounds_ms(local_day(now_ms))[0]
    if end:
        b = parse_time(end, end=True)
    else:
        b = day_bounds_ms(local_day(a) + timedelta(days=default_days - 1))[1]
    if b <= a:
        raise TimeParamError("end must be after start")
    return a, b


def parse_month(text: str | None, now_ms: int) -> tuple[date, date]:
    """First and last day of ``YYYY-MM`` (default: this month in Vietnam)."""
    if not text:
        today = local_day(now_ms)
        y, m = today.year, today.month
    else:
        mm = _MONTH.match(text.strip())
        if mm is None:
            raise TimeParamError(f"{text[:20]!r}: a month is written YYYY-MM, e.g. 2026-03")
        y, m = int(mm[1]), int(mm[2])
        if not (1 <= m <= 12 and 2000 <= y <= 2200):
            raise TimeParamError(f"{text!r}: no such month")
    first = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def previous_month(first: date) -> tuple[date, date]:
    last = first - timedelta(days=1)
    return last.replace(day=1), last


def parse_day(text: str | None, now_ms: int) -> date:
    if not text:
        return local_day(now_ms)
    try:
        return date.fromisoformat(text.strip())
    except ValueError as err:
        raise TimeParamError(f"{text[:20]!r}: a day is written YYYY-MM-DD") from err


def iso_local(ms: int) -> str:
    """Vietnam-time ISO 8601 for people (``2025-03-11T08:30:00+07:00``)."""
    return datetime.fromtimestamp(ms / 1000, tz=VN_TZ).isoformat(timespec="seconds")


__all__ = [
    "TimeParamError",
    "TimeQ",
    "iso_local",
    "parse_day",
    "parse_month",
    "parse_time",
    "previous_month",
    "time_range",
]
