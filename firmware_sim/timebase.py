"""Simulated time: a live clock (real time, optional speed factor) and local-calendar helpers.

All models take epoch seconds (UTC). The hamlet's calendar is Asia/Ho_Chi_Minh (UTC+7, no
daylight saving), which decides service hours, broadcasts and the diurnal cycles.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final

LOCAL_TZ: Final = timezone(timedelta(hours=7), "ICT")  # Asia/Ho_Chi_Minh never uses DST
DAY_S: Final = 86400.0


class SimClock:
    """Maps the host's monotonic clock to simulated epoch seconds.

    ``start`` is the simulated instant when the clock was created; ``speed`` > 1 runs the
    hamlet faster than real time (a day in minutes for demos and backfill through MQTT).
    """

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.start = time.time() if start is None else start
        self.speed = speed
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._mono0) * self.speed

    def real_delay(self, sim_seconds: float) -> float:
        """How long to wait in real seconds for ``sim_seconds`` of simulated time."""
        return max(0.0, sim_seconds / self.speed)


def local(t: float) -> datetime:
    return datetime.fromtimestamp(t, LOCAL_TZ)


def local_hour(t: float) -> float:
    """Hour of the local day as a fraction, 0 <= h < 24."""
    return ((t + 7 * 3600) % DAY_S) / 3600.0


def day_of_year(t: float) -> float:
    """Fractional local day of the year (1.0 = 1 January 00:00)."""
    d = local(t)
    return d.timetuple().tm_yday + local_hour(t) / 24.0


def local_date(t: float) -> date:
    return local(t).date()


def parse_start(value: str) -> float:
    """``now``, or an ISO date/datetime (naive means local Vietnam time)."""
    if value == "now":
        return time.time()
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt.astimezone(UTC).timestamp()
