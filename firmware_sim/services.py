"""Public-service devices: commune kiosks, smart-radio clusters, Wi-Fi hotspots.

Events are pure functions of time: each local minute is a bucket whose sessions (and their
look-ups, dossiers and ratings) follow from the seed alone, so ``events_between(a, b)``
returns the same events however the interval is cut up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Final, Literal

from firmware_sim import noise
from firmware_sim.timebase import DAY_S, local, local_date, local_hour

Scalar = str | int | float | bool

# Vietnamese public holidays (official days off, incl. the Tết and Hùng Kings' lunar dates).
HOLIDAYS: Final[frozenset[date]] = frozenset(
    [
        date(2025, 1, 1),
        date(2025, 4, 7),
        date(2025, 4, 30),
        date(2025, 5, 1),
        date(2025, 9, 1),
        date(2025, 9, 2),
    ]
    + [date(2025, 1, d) for d in range(25, 32)]
    + [date(2025, 2, d) for d in (1, 2)]
    + [
        date(2026, 1, 1),
        date(2026, 4, 26),
        date(2026, 4, 27),
        date(2026, 4, 30),
        date(2026, 5, 1),
        date(2026, 9, 1),
        date(2026, 9, 2),
    ]
    + [date(2026, 2, d) for d in range(14, 23)]
    + [
        date(2027, 1, 1),
        date(2027, 4, 16),
        date(2027, 4, 30),
        date(2027, 5, 1),
        date(2027, 9, 2),
        date(2027, 9, 3),
    ]
    + [date(2027, 2, d) for d in range(5, 12)]
)

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


def is_working_day(t: float, extra_holidays: frozenset[date] = frozenset()) -> bool:
    d = local_date(t)
    return d.weekday() < 5 and d not in HOLIDAYS and d not in extra_holidays


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
    sessions_per_hour: float = 4.0
    dossier_share: float = 0.35  # of sessions that end in a dossier
    online_share: float = 0.55  # of dossiers: submitted online by the citizen
    assisted_share: float = 0.30  # ... online with staff help; the rest in person
    rating_share: float = 0.6  # of sessions that leave a rating
    rating_scale: Literal[3, 5] = 3
    satisfied_share: float = 0.95
    outages: list[Outage] = field(default_factory=list)
    random_outages_per_week: float = 0.0
    holidays: frozenset[date] = frozenset()
    # Live devices ask about the same minutes every tick: keep the last few hundred.
    _cache: dict[int, list[SimEvent]] = field(default_factory=dict, repr=False, compare=False)

    def _in_service(self, t: float) -> bool:
        return self.hours == "always" or in_service_hours(t, self.holidays)

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
        if noise.uniform(s, k, minute) >= self.sessions_per_hour / 60.0:
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
