"""Public-service devices: commune kiosks, smart-radio clusters, Wi-Fi hotspots.

Events are pure functions of time: each local minute is a bucket whose sessions (and their
look-ups, dossiers and ratings) follow from the seed alone, so ``events_between(a, b)``
returns the same events however the interval is cut up. A kiosk's mean rate follows the
people it serves; arrivals peak in the morning, on Mondays and before Tết, and stop on
public holidays (``hamlet.vncalendar``, any year). Figures: docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Final, Literal

from firmware_sim import noise
from firmware_sim.timebase import DAY_S, local, local_date, local_hour
from hamlet.vncalendar import is_public_holiday, public_holidays

Scalar = str | int | float | bool

# Intake hours of the one-stop shop (bộ phận một cửa), local time, Monday–Friday.
SERVICE_WINDOWS: Final = ((7.0, 11.5), (13.5, 17.0))

PROCEDURES: Final = (
    "birth_registration",
    "residence_confirmation",
    "land_use_certificate",
    "marriage_registration",
    "social_allowance",
    "business_household",
    "construction_permit",
)


@dataclass(frozen=True, slots=True)
class SimEvent:
    t: float
    name: str
    attrs: dict[str, Scalar] = field(default_factory=dict)


# When people come to the one-stop shop (our estimate from one-stop-shop queue patterns;
# docs/simulator.md): relative arrivals per half hour of the intake windows, a morning
# peak at 08:00–09:30 and a quiet end of the afternoon.
HALF_HOUR_WEIGHTS: Final[dict[float, float]] = {
    7.0: 0.9, 7.5: 1.4, 8.0: 1.7, 8.5: 1.8, 9.0: 1.7, 9.5: 1.5, 10.0: 1.2, 10.5: 0.9,
    11.0: 0.6, 13.5: 0.6, 14.0: 0.9, 14.5: 1.0, 15.0: 0.9, 15.5: 0.7, 16.0: 0.5, 16.5: 0.3,
}  # fmt: skip
_HALF_HOUR_MEAN: Final = sum(HALF_HOUR_WEIGHTS.values()) / len(HALF_HOUR_WEIGHTS)
# Monday brings the weekend's errands; Friday afternoon is quiet.
WEEKDAY_WEIGHTS: Final = (1.3, 1.05, 1.0, 0.9, 0.75, 1.0, 1.0)
# People settle their papers before Tết: arrivals rise over the three weeks before it,
# to this factor in its last days, and stay low for a week after the break.
PRE_TET_DAYS: Final = 21
PRE_TET_PEAK: Final = 1.9
POST_TET_DAYS: Final = 7
POST_TET_FACTOR: Final = 0.7
# Working days a year (52 weeks x 5 days less ~14 weekday holidays) and intake hours a day.
WORKING_DAYS_PER_YEAR: Final = 246
SERVICE_HOURS_PER_DAY: Final = 8.0


@lru_cache(maxsize=64)
def tet_break(year: int) -> tuple[date, date]:
    """First and last day of the Tết holiday of ``year`` (lunar, from hamlet.vncalendar)."""
    names = public_holidays(year).items()
    days = sorted(d for d, n in names if "Nguyên Đán" in n or n.endswith(" Tết"))
    return days[0], days[-1]


@lru_cache(maxsize=4096)
def season_factor(day: date) -> float:
    """Arrivals on ``day`` relative to an ordinary day: the rush before Tết, the lull after."""
    first, last = tet_break(day.year)
    if day > last and day.month > 6:  # December: next year's Tết
        first, last = tet_break(day.year + 1)
    before = (first - day).days
    if 1 <= before <= PRE_TET_DAYS:
        return 1.0 + (PRE_TET_PEAK - 1.0) * (PRE_TET_DAYS - before + 1) / PRE_TET_DAYS
    after = (day - last).days
    if 1 <= after <= POST_TET_DAYS:
        return POST_TET_FACTOR
    return 1.0


def arrival_weight(t: float) -> float:
    """Relative session arrivals at ``t`` (mean 1 over the intake hours of ordinary weeks)."""
    h = local_hour(t)
    w = HALF_HOUR_WEIGHTS.get(math.floor(h * 2) / 2)
    if w is None:
        return 0.0
    d = local_date(t)
    return w / _HALF_HOUR_MEAN * WEEKDAY_WEIGHTS[d.weekday()] * season_factor(d)


@lru_cache(maxsize=4096)
def _closed(d: date) -> bool:
    return d.weekday() >= 5 or is_public_holiday(d)


def is_working_day(t: float, extra_holidays: frozenset[date] = frozenset()) -> bool:
    d = local_date(t)
    return not _closed(d) and d not in extra_holidays


def in_service_hours(t: float, extra_holidays: frozenset[date] = frozenset()) -> bool:
    if not is_working_day(t, extra_holidays):
        return False
    h = local_hour(t)
    return any(a <= h < b for a, b in SERVICE_WINDOWS)


@dataclass(frozen=True, slots=True)
class Outage:
    start: float
    end: float


@dataclass(slots=True)
class KioskModel:
    """A self-service kiosk at the one-stop shop or a hamlet cultural house."""

    seed: int
    key: str
    hours: Literal["office", "always"] = "office"
    # People served: a hamlet of ~500 households is ~2,000 people; a commune 10–20,000.
    people: int = 2000
    # Kiosk sessions per person a year (our estimate, docs/simulator.md): ~15 a working
    # day at the one-stop shop of a 15,000-people commune, ~2 at a hamlet's.
    sessions_per_person_year: float = 0.25
    sessions_per_hour: float | None = None  # a set mean rate instead of people x rate
    dossier_share: float = 0.35  # of sessions that end in a dossier
    online_share: float = 0.55  # of dossiers: submitted online by the citizen
    assisted_share: float = 0.30  # ... online with staff help; the rest in person
    rating_share: float = 0.3  # of sessions that leave a rating (most people walk away)
    rating_scale: Literal[3, 5] = 3
    satisfied_share: float = 0.95
    outages: list[Outage] = field(default_factory=list)
    random_outages_per_week: float = 0.0
    holidays: frozenset[date] = frozenset()
    # Live devices ask about the same minutes every tick: keep the last few hundred.
    _cache: dict[int, list[SimEvent]] = field(default_factory=dict, repr=False, compare=False)

    def _in_service(self, t: float) -> bool:
        return self.hours == "always" or in_service_hours(t, self.holidays)

    @property
    def mean_per_hour(self) -> float:
        """Mean sessions per open hour of an ordinary week."""
        if self.sessions_per_hour is not None:
            return self.sessions_per_hour
        per_year = self.people * self.sessions_per_person_year
        if self.hours == "always":
            return per_year / (365.0 * 24.0)
        return per_year / (WORKING_DAYS_PER_YEAR * SERVICE_HOURS_PER_DAY)

    def rate_per_minute(self, t: float) -> float:
        """Expected session starts in the minute at ``t``."""
        if self.hours == "always":
            return self.mean_per_hour / 60.0  # round the clock: a flat demo
        return self.mean_per_hour / 60.0 * arrival_weight(t)

    def powered(self, t: float) -> bool:
        """Switched on (06:45–17:30 on working days for office kiosks) and not in an outage."""
        if any(o.start <= t < o.end for o in self.outages):
            return False
        if self.random_outages_per_week > 0:
            k = noise.key_of(self.key + ":out")
            day = math.floor((t + 7 * 3600) / DAY_S)
            if noise.uniform(self.seed, k, day) < self.random_outages_per_week / 7.0:
                start_h = 7.0 + 8.0 * noise.uniform(self.seed, k, day, 1)
                dur_h = 0.5 + 3.0 * noise.uniform(self.seed, k, day, 2)
                if start_h <= local_hour(t) < start_h + dur_h:
                    return False
        if self.hours == "always":
            return True
        return is_working_day(t, self.holidays) and 6.75 <= local_hour(t) < 17.5

    def _sessions_starting_in(self, minute: int) -> list[SimEvent]:
        hit = self._cache.get(minute)
        if hit is None:
            if len(self._cache) > 512:
                self._cache.clear()
            hit = self._cache[minute] = self._compute_sessions(minute)
        return hit

    def _compute_sessions(self, minute: int) -> list[SimEvent]:
        t0 = minute * 60.0
        if not self._in_service(t0) or not self.powered(t0):
            return []
        k = noise.key_of(self.key + ":sess")
        s = self.seed
        if noise.uniform(s, k, minute) >= self.rate_per_minute(t0):
            return []
        start = t0 + 59.0 * noise.uniform(s, k, minute, 1)
        dur = 120.0 + 600.0 * noise.uniform(s, k, minute, 2)
        sid = f"{minute % 100000:05d}"
        out = [SimEvent(start, "session_start", {"session": sid})]
        n_lookups = int(noise.uniform(s, k, minute, 3) * 4)
        for i in range(n_lookups):
            proc = PROCEDURES[int(noise.uniform(s, k, minute, 10 + i) * len(PROCEDURES))]
            at = start + dur * (i + 1) / (n_lookups + 2)
            out.append(SimEvent(at, "lookup", {"procedure": proc, "session": sid}))
        if noise.uniform(s, k, minute, 4) < self.dossier_share:
            u = noise.uniform(s, k, minute, 5)
            channel = (
                "online"
                if u < self.online_share
                else "assisted"
                if u < self.online_share + self.assisted_share
                else "in_person"
            )
            proc = PROCEDURES[int(noise.uniform(s, k, minute, 6) * len(PROCEDURES))]
            out.append(
                SimEvent(
                    start + dur * 0.85,
                    "dossier_submitted",
                    {"channel": channel, "procedure": proc, "session": sid},
                )
            )
        if noise.uniform(s, k, minute, 7) < self.rating_share:
            happy = noise.uniform(s, k, minute, 8) < self.satisfied_share
            if self.rating_scale == 3:
                # 3 = rất hài lòng, 2 = hài lòng, 1 = không hài lòng
                score = (3 if noise.uniform(s, k, minute, 9) < 0.6 else 2) if happy else 1
            else:
                score = (
                    (5 if noise.uniform(s, k, minute, 9) < 0.5 else 4)
                    if happy
                    else (1 + int(noise.uniform(s, k, minute, 9) * 3))
                )
            out.append(
                SimEvent(start + dur * 0.95, "rating", {"scale": self.rating_scale, "score": score})
            )
        out.append(SimEvent(start + dur, "session_end", {"session": sid, "seconds": round(dur)}))
        return out

    def events_between(self, t0: float, t1: float) -> list[SimEvent]:
        """All kiosk events with ``t0 <= t < t1`` (sessions last at most 12 minutes)."""
        first = math.floor(t0 / 60.0) - 13
        last = math.floor(t1 / 60.0)
        out = [
            e
            for m in range(first, last + 1)
            for e in self._sessions_starting_in(m)
            if t0 <= e.t < t1 and self.powered(e.t)
        ]
        out.sort(key=lambda e: e.t)
        return out


@dataclass(slots=True)
class RadioModel:
    """A smart-radio loudspeaker cluster: scheduled broadcasts about 05:00 and 17:00."""

    seed: int
    key: str
    schedule: tuple[tuple[float, str, int], ...] = (
        (5.0, "morning_news", 30),
        (17.0, "evening_news", 45),
    )

    def events_between(self, t0: float, t1: float) -> list[SimEvent]:
        out: list[SimEvent] = []
        k = noise.key_of(self.key + ":bc")
        day0 = math.floor((t0 + 7 * 3600) / DAY_S)
        day1 = math.floor((t1 + 7 * 3600) / DAY_S)
        for day in range(day0, day1 + 1):
            midnight = day * DAY_S - 7 * 3600
            for i, (hour, program, minutes) in enumerate(self.schedule):
                late = 120.0 * noise.uniform(self.seed, k, day, i)  # operator starts a bit late
                at = midnight + hour * 3600.0 + late
                if t0 <= at < t1:
                    out.append(SimEvent(at, "broadcast", {"program": program, "minutes": minutes}))
        return out


@dataclass(slots=True)
class HotspotModel:
    """A public Wi-Fi hotspot at the cultural house: client count by time of day."""

    seed: int
    key: str
    capacity: int = 40

    def clients(self, t: float) -> int:
        h = local_hour(t)
        day = 6.0 * math.exp(-0.5 * ((h - 10.0) / 2.5) ** 2)
        evening = 18.0 * math.exp(-0.5 * ((h - 20.0) / 1.8) ** 2)
        weekend = 1.3 if local(t).weekday() >= 5 else 1.0
        mean = (1.0 + day + evening) * weekend
        k = noise.key_of(self.key + ":cl")
        jitter = noise.gauss(self.seed, k, math.floor(t / 300.0))
        return max(0, min(self.capacity, round(mean + jitter * math.sqrt(mean))))
