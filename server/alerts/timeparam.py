"""Times people type: ISO 8601 (Vietnam time unless an offset is given) or epoch milliseconds."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Final

from hamlet.vncalendar import VN_TZ

_MS: Final = re.compile(r"^\d{1,16}$")
MAX_MS: Final = 2**53


class TimeParamError(ValueError):
    """A time that is neither ISO 8601 nor epoch milliseconds; the message shows both forms."""


def parse_time(text: str) -> int:
    """``"1764309600000"``, ``"2026-11-28"`` (start of that day in Vietnam),
    ``"2026-11-28T10:00"`` (Vietnam time), ``"2026-11-28T03:00Z"`` or ``"…+07:00"``
    → epoch milliseconds."""
    s = text.strip()
    if _MS.match(s):
        ms = int(s)
        if ms > MAX_MS:
            raise TimeParamError(f"{s} ms is beyond any plausible time")
        return ms
    try:
        if len(s) == 10:
            dt = datetime.combine(date.fromisoformat(s), time(0), tzinfo=VN_TZ)
        else:
            dt = datetime.fromisoformat(s.replace("z", "Z"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=VN_TZ)
    except ValueError as err:
        raise TimeParamError(
            f"{s[:40]!r} is not a time: use ISO 8601 (2026-11-28, 2026-11-28T10:00, "
            "2026-11-28T10:00+07:00) or milliseconds since 1970"
        ) from err
    return int(dt.timestamp() * 1000)
