"""Physical models of a Mekong Delta hamlet, deterministic for a seed.

Tide, salinity, air temperature, humidity and rain are pure functions of simulated time
(plus a seed), so any instant can be computed directly: that is what lets a backfill of a
month and a live run agree. Soil moisture and field water carry state (they integrate rain,
irrigation and evaporation) and advance in fixed steps from where they were.

Sources for the shapes and magnitudes: DESIGN.md §5 (Cần Thơ station on the Hậu river:
alarm level III 2.00 m, record 2.29 m on 22 Oct 2025, semi-diurnal tide; dry-season salinity
Feb–Apr; mean air temperature ≈27 °C with a ≈7 °C daily swing; humidity 78–88 %; rainy
season May–Nov with ≈1,600–1,950 mm a year from tipping buckets of 0.2–0.28 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from firmware_sim import noise
from firmware_sim.timebase import DAY_S, day_of_year, local_hour

HOUR_S: Final = 3600.0
# Tidal constituents (periods in hours). M2 dominates the Hậu river; S2 beats with it into
# the 14.77-day spring–neap cycle; K1/O1 give the diurnal inequality of the Mekong tide.
M2_H: Final = 12.4206
S2_H: Final = 12.0
K1_H: Final = 23.9345
O1_H: Final = 25.8193
# Spring tide aligned with the record flood peak of 22 Oct 2025 (about 17:00 local).
SPRING_EPOCH: Final = 1761127200.0  # 2025-10-22T10:00:00Z


def _bump(doy: float, centre: float, width: float) -> float:
    """A smooth seasonal bump in [0, 1] around ``centre`` (day of year), wrapping the year."""
    d = (doy - centre + 182.5) % 365.0 - 182.5
    return math.exp(-0.5 * (d / width) ** 2)


@dataclass(frozen=True, slots=True)
class Site:
    """Where a sensor sits: drives tide amplitude, flood height and salinity."""

    seed: int
    key: str
    distance_km: float = 80.0  # from the estuary mouth along the river
    tide_scale: float = 1.0
    flood_scale: float = 1.0
    salinity_scale: float = 1.0


def astronomical_tide(t: float, scale: float = 1.0) -> float:
    """Tide height (m) about the mean, from M2, S2, K1 and O1."""
    h = (t - SPRING_EPOCH) / HOUR_S
    return scale * (
        0.72 * math.cos(2 * math.pi * h / M2_H)
        + 0.26 * math.cos(2 * math.pi * h / S2_H)
        + 0.18 * math.cos(2 * math.pi * h / K1_H + 0.4)
        + 0.12 * math.cos(2 * math.pi * h / O1_H - 0.3)
    )


def flood_season(t: float) -> float:
    """0..1 river flood stage: rising from August, peaking in mid/late October."""
    return _bump(day_of_year(t), centre=293.0, width=32.0)


def water_level(t: float, site: Site) -> float:
    """River water level (m, national datum) at the site.

    The mean rises by ~0.86 m at the flood peak; with a spring tide a Cần Thơ-like station
    then reaches ~2.0–2.3 m (alarm III is 2.00 m) in late October.
    """
    k = noise.key_of(site.key + ":wl")
    mean = 0.18 + 0.86 * site.flood_scale * flood_season(t)
    wind = 0.04 * noise.smooth(site.seed, k, t, 6 * HOUR_S)
    return mean + astronomical_tide(t, site.tide_scale) + wind


def dry_season(t: float) -> float:
    """0..1 salinity-intrusion season: February to April, peaking in mid March."""
    return _bump(day_of_year(t), centre=76.0, width=30.0)


def salinity(t: float, site: Site) -> float:
    """Salinity (‰ = g/L) at the site: intrusion season × distance decay × tide.

    Salt water creeps in on the flood tide about an hour after high water, so salinity
    follows the tide with a lag; inland it decays with a ~28 km length scale.
    """
    k = noise.key_of(site.key + ":sal")
    season = dry_season(t)
    reach = math.exp(-site.distance_km / 28.0)
    base = 30.0 * season * reach * site.salinity_scale
    tide = astronomical_tide(t - HOUR_S, site.tide_scale) / 1.3  # about -1..1
    jitter = 1.0 + 0.05 * noise.smooth(site.seed, k, t, 3 * HOUR_S)
    return max(0.05, 0.12 + base * (1.0 + 0.45 * tide) * jitter)


def ec_from_salinity(sal_ppt: float) -> float:
    """Electrical conductivity (mS/cm at 25 °C) from salinity: inverse of the PSS-78 slope
    near fresh water, roughly 1 ‰ ≈ 1.8 mS/cm (DESIGN.md §5)."""
    return sal_ppt * 1.8 if sal_ppt < 5 else 9.0 + (sal_ppt - 5.0) * 1.6


def water_temp(t: float, site: Site) -> float:
    k = noise.key_of(site.key + ":wt")
    seasonal = 1.2 * math.cos(2 * math.pi * (day_of_year(t) - 120.0) / 365.0)
    diurnal = 0.8 * math.cos(2 * math.pi * (local_hour(t) - 15.0) / 24.0)
    return 28.5 + seasonal + diurnal + 0.2 * noise.smooth(site.seed, k, t, 2 * HOUR_S)


def air_temp(t: float, site: Site) -> float:
    """Air temperature (°C): mean ≈27, warmest in April, ≈7 °C swing peaking at 14:30."""
    k = noise.key_of(site.key + ":at")
    seasonal = 1.5 * math.cos(2 * math.pi * (day_of_year(t) - 110.0) / 365.0)
    diurnal = 3.5 * math.cos(2 * math.pi * (local_hour(t) - 14.5) / 24.0)
    cooling = -2.5 * min(1.0, rain_rate(t, site) / 5.0)  # a shower cools the air
    return 27.0 + seasonal + diurnal + cooling + 0.6 * noise.smooth(site.seed, k, t, 3 * HOUR_S)


def humidity(t: float, site: Site) -> float:
    """Relative humidity (%): monthly means 78 (March) to 88 (September), higher at night."""
    k = noise.key_of(site.key + ":rh")
    seasonal = 83.0 + 5.0 * math.cos(2 * math.pi * (day_of_year(t) - 255.0) / 365.0)
    diurnal = -9.0 * math.cos(2 * math.pi * (local_hour(t) - 14.5) / 24.0)
    wet = 6.0 * min(1.0, rain_rate(t, site) / 3.0)
    v = seasonal + diurnal + wet + 2.0 * noise.smooth(site.seed, k, t, 3 * HOUR_S)
    return min(100.0, max(35.0, v))


def rainy_season(t: float) -> float:
    """0..1: May to November (two monsoon peaks averaged into one plateau)."""
    doy = day_of_year(t)
    return 1.0 / (1.0 + math.exp(-(doy - 128.0) / 6.0)) / (1.0 + math.exp((doy - 330.0) / 8.0))


def rain_rate(t: float, site: Site) -> float:
    """Rain (mm/h) in the local hour containing ``t``: showers mostly in the afternoon."""
    k = noise.key_of(site.key + ":rain")
    hour_index = math.floor(t / HOUR_S)
    t_h = hour_index * HOUR_S  # one rate for the whole hour, however it is sliced
    season = rainy_season(t_h)
    h = local_hour(t_h) + 0.5
    afternoon = 1.0 + 1.6 * math.exp(-0.5 * ((h - 16.0) / 2.5) ** 2)
    p = (0.008 + 0.041 * season) * afternoon
    if noise.uniform(site.seed, k, hour_index) >= p:
        return 0.0
    mean_mm = 2.0 + 3.3 * season
    u = max(noise.uniform(site.seed, k, hour_index, 7), 1e-9)
    return min(80.0, -mean_mm * math.log(u))


def rain_between(t0: float, t1: float, site: Site) -> float:
    """Rain (mm) that fell in [t0, t1), integrating the hourly rates."""
    total = 0.0
    t = t0
    while t < t1:
        edge = min(t1, (math.floor(t / HOUR_S) + 1) * HOUR_S)
        total += rain_rate(t, site) * (edge - t) / HOUR_S
        t = edge
    return total


def sunlight(t: float) -> float:
    """0..1 solar input (for batteries and evaporation): a half-sine from 06:00 to 18:00."""
    h = local_hour(t)
    return math.sin(math.pi * (h - 6.0) / 12.0) if 6.0 <= h <= 18.0 else 0.0


@dataclass(slots=True)
class TippingBucket:
    """A tipping-bucket gauge: reports whole tips, carrying the remainder to the next read."""

    site: Site
    mm_per_tip: float = 0.2
    last_t: float | None = None
    carry_mm: float = 0.0

    def read(self, t: float) -> float:
        """Rain (mm) since the previous read, in whole tips."""
        if self.last_t is None or t <= self.last_t:
            self.last_t = t
            return 0.0
        self.carry_mm += rain_between(self.last_t, t, self.site)
        self.last_t = t
        tips = math.floor(self.carry_mm / self.mm_per_tip + 1e-9)
        self.carry_mm -= tips * self.mm_per_tip
        return round(tips * self.mm_per_tip, 3)


STEP_S: Final = 600.0  # state integration step for soil and field water


@dataclass(slots=True)
class SoilModel:
    """Topsoil moisture (%, volumetric), temperature, EC and pH; irrigated when dry."""

    site: Site
    irrigate_below: float = 24.0
    field_capacity: float = 48.0
    t: float | None = None
    moisture: float = 0.0
    irrigations: int = field(default=0)

    def _init(self, t: float) -> None:
        self.t = t
        k = noise.key_of(self.site.key + ":soil0")
        self.moisture = 30.0 + 8.0 * rainy_season(t) + 3.0 * noise.gauss(self.site.seed, k, 0)

    def advance(self, t: float) -> None:
        if self.t is None:
            self._init(t)
            return
        k = noise.key_of(self.site.key + ":irr")
        while self.t + STEP_S <= t:
            t0 = self.t
            rain = rain_between(t0, t0 + STEP_S, self.site)
            et_mm_h = 0.05 + 0.55 * sunlight(t0)  # evapotranspiration, ~5 mm on a sunny day
            self.moisture += rain * 0.9 - et_mm_h * STEP_S / HOUR_S * 0.45
            # Drainage above field capacity.
            if self.moisture > self.field_capacity:
                self.moisture -= (self.moisture - self.field_capacity) * 0.25
            # A farmer irrigates in the morning once the soil is dry.
            h = local_hour(t0)
            step = int(t0 // STEP_S)
            if (
                self.moisture < self.irrigate_below
                and 6.0 <= h < 9.0
                and (noise.uniform(self.site.seed, k, step) < 0.2)
            ):
                self.moisture += 14.0
                self.irrigations += 1
            self.moisture = min(58.0, max(8.0, self.moisture))
            self.t = t0 + STEP_S

    def sample(self, t: float) -> dict[str, float]:
        self.advance(t)
        k = noise.key_of(self.site.key + ":soilx")
        s = self.site.seed
        m = self.moisture + 0.3 * noise.smooth(s, k, t, 1800.0)
        temp = air_temp(t - 2 * HOUR_S, self.site) * 0.6 + 11.5  # damped and lagged
        sal = salinity(t, self.site)
        ec = 0.35 + 0.012 * m + 0.25 * sal + 0.03 * noise.smooth(s, k, t, 7200.0, 1)
        ph = 5.6 - 0.004 * (m - 30.0) + 0.05 * noise.smooth(s, k, t, 86400.0, 2)
        return {
            "soil_moisture": round(m, 1),
            "soil_temp": round(temp, 1),
            "soil_ec": round(ec, 3),
            "soil_ph": round(ph, 2),
            "soil_n": round(38.0 + 6.0 * noise.smooth(s, k, t, 3 * DAY_S, 3)),
            "soil_p": round(14.0 + 3.0 * noise.smooth(s, k, t, 3 * DAY_S, 4)),
            "soil_k": round(95.0 + 12.0 * noise.smooth(s, k, t, 3 * DAY_S, 5)),
        }


@dataclass(slots=True)
class FieldWaterModel:
    """Paddy water depth (m, + above the soil surface) under alternate wetting and drying.

    The field is flooded to +5 cm, then dries (percolation + evapotranspiration, ~1.2 cm a
    day) until the water is 15 cm below the surface, when the farmer re-irrigates.
    """

    site: Site
    flood_to_m: float = 0.05
    reirrigate_at_m: float = -0.15
    t: float | None = None
    depth: float = 0.0
    irrigations: int = 0

    def advance(self, t: float) -> None:
        if self.t is None:
            k = noise.key_of(self.site.key + ":awd0")
            self.t = t
            self.depth = -0.05 + 0.08 * noise.uniform(self.site.seed, k, 0)
            return
        while self.t + STEP_S <= t:
            t0 = self.t
            rain_m = rain_between(t0, t0 + STEP_S, self.site) / 1000.0
            loss = (0.006 + 0.01 * sunlight(t0)) * STEP_S / DAY_S
            self.depth = min(0.12, self.depth + rain_m * 1.1 - loss)
            if self.depth <= self.reirrigate_at_m:
                self.depth = self.flood_to_m
                self.irrigations += 1
            self.t = t0 + STEP_S

    def sample(self, t: float) -> dict[str, float]:
        self.advance(t)
        return {"field_water": round(self.depth, 3)}
