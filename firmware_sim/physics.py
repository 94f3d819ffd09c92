"""Physical models of a Mekong Delta hamlet, deterministic for a seed.

Tide, salinity, air temperature, humidity and rain are pure functions of simulated time
(plus a seed), so any instant can be computed directly: that is what lets a backfill of a
month and a live run agree. Soil moisture and field water carry state (they integrate rain,
irrigation and evaporation) and advance in fixed steps from where they were.

Sources for the shapes and magnitudes: DESIGN.md §5 (Cần Thơ station on the Hậu river:
alarm level III 2.00 m, record 2.29 m on 22 Oct 2025, semi-diurnal tide; dry-season salinity
Feb–Apr; mean air temperature ≈27 °C with a ≈7 °C daily swing; humidity 78–88 %; rainy
season May–Nov with ≈1,600–1,950 mm a year from tipping buckets of 0.2–0.28 mm). Year
types (``firmware_sim/years.py``) set each year's flood peak and salt reach; the calibration
figures and their sources are in docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Final

from firmware_sim import noise
from firmware_sim.crop import DEFAULT_CROPS, Crop, Stage, stage_at
from firmware_sim.timebase import DAY_S, day_of_year, local, local_hour, parse_start
from firmware_sim.years import YEARS, YearType, flood_peak_m, year_type

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
    year: YearType | None = None  # None: the seed draws each calendar year's type
    years_seed: int | None = None  # the river's seed (default ``seed``): one year per scenario

    def year_type(self, t: float) -> YearType:
        seed = self.seed if self.years_seed is None else self.years_seed
        return year_type(seed, local(t).year, self.year)


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


# River discharge damps the tide: at the flood peak the range is this much smaller (our
# estimate; it gives a mean daily range of ≈1.7 m in March and ≈1.2 m in October).
FLOOD_TIDE_DAMPING: Final = 0.3
LOW_WATER_MEAN_M: Final = 0.18  # dry-season mean level at the station (national datum)


def tide_damping(t: float) -> float:
    """Factor (0.7..1) on the astronomical tide: discharge damps it in Sep–Nov."""
    return 1.0 - FLOOD_TIDE_DAMPING * flood_season(t)


@lru_cache(maxsize=64)
def _flood_rise(year: int, tide_scale: float, peak_m: float) -> float:
    """Flood-season mean rise (m) that makes the year's highest water equal ``peak_m``.

    The highest water is a spring tide on top of the flood; which spring tide, and how
    high, depends on the year's tidal calendar, so the rise is solved for each year.
    """
    t0 = parse_start(date(year, 8, 15).isoformat())
    ts = [t0 + i * 900.0 for i in range(120 * 96)]
    f = [flood_season(t) for t in ts]
    g = [LOW_WATER_MEAN_M + astronomical_tide(t, tide_scale) * tide_damping(t) for t in ts]
    rise = peak_m - LOW_WATER_MEAN_M - 1.0
    for _ in range(6):  # fixed point of rise = (peak - g(t*)) / f(t*), t* the highest water
        i = max(range(len(ts)), key=lambda j: rise * f[j] + g[j])
        rise = (peak_m - g[i]) / f[i]
    return rise


def water_level(t: float, site: Site) -> float:
    """River water level (m, national datum) at the site.

    The flood-season mean rise is solved per year so that a Cần Thơ-like station
    (``flood_scale`` 1) peaks at the year type's annual maximum (docs/simulator.md), and the
    tide is damped by the discharge at the flood peak.
    """
    k = noise.key_of(site.key + ":wl")
    year = local(t).year
    seed = site.seed if site.years_seed is None else site.years_seed
    peak = flood_peak_m(seed, year, site.year_type(t))
    rise = _flood_rise(year, site.tide_scale, round(peak, 3))
    mean = LOW_WATER_MEAN_M + rise * site.flood_scale * flood_season(t)
    wind = 0.015 * noise.smooth(site.seed, k, t, 6 * HOUR_S)
    return mean + astronomical_tide(t, site.tide_scale) * tide_damping(t) + wind


def dry_season(t: float) -> float:
    """0..1 salinity-intrusion season: February to April, peaking in mid March."""
    return _bump(day_of_year(t), centre=76.0, width=30.0)


SEA_SALINITY: Final = 34.0


def salinity(t: float, site: Site) -> float:
    """Salinity (‰ = g/L) at the site: intrusion season × distance × tide.

    At the mid-March peak the daily mean is 4 ‰ where the year type puts the 4 ‰ line and
    decays upstream of it (docs/simulator.md). Salt water creeps in on the flood tide
    about an hour after high water, so salinity follows the tide with a lag.
    """
    k = noise.key_of(site.key + ":sal")
    p = YEARS[site.year_type(t)]
    season = dry_season(t)
    reach = 4.0 * math.exp(-(site.distance_km - p.salt_4ppt_km) / p.salt_decay_km)
    base = season * reach * site.salinity_scale
    tide = astronomical_tide(t - HOUR_S, site.tide_scale) / 1.3  # about -1..1
    jitter = 1.0 + 0.05 * noise.smooth(site.seed, k, t, 3 * HOUR_S)
    return min(SEA_SALINITY, max(0.05, 0.12 + base * (1.0 + 0.45 * tide) * jitter))


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


# Cần Thơ rain climatology of an ordinary year, per month Jan..Dec (docs/simulator.md):
# total ≈1,750 mm; wet days (≥1 mm) ≈127; a July–August lull ("hạn Bà Chằng") between the
# June and the September–October peaks.
MONTH_MM: Final = (12.0, 4.0, 14.0, 50.0, 200.0, 230.0, 215.0, 205.0, 285.0, 310.0, 170.0, 55.0)
MONTH_WET_DAYS: Final = (1.2, 0.5, 1.2, 4.0, 14.0, 17.0, 17.0, 16.5, 19.0, 19.0, 12.0, 4.5)
# A wet day's rain beyond the first millimetre: a mix of ordinary showers and, one day in
# five or six, a heavy convective storm 3.5 times as wet; that tail gives annual maxima of
# 80–150 mm a day.
HEAVY_SHARE: Final = 0.18
HEAVY_RATIO: Final = 3.5
_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class RainDay:
    mm: float  # the day's total (0 on a dry day)
    start_h: int  # local hour the rain starts
    hours: int  # how many hours it lasts


@lru_cache(maxsize=4096)
def rain_day(site: Site, day_index: int) -> RainDay:
    """The rain of one local day (``day_index`` = local days since the epoch)."""
    k = noise.key_of(site.key + ":rainday")
    s = site.seed
    midday = day_index * DAY_S - 7 * 3600 + 12 * 3600
    month = local(midday).month - 1
    factor = YEARS[site.year_type(midday)].rain_factor[month]
    p_wet = min(0.95, MONTH_WET_DAYS[month] * factor / _DAYS_IN_MONTH[month])
    if noise.uniform(s, k, day_index) >= p_wet:
        return RainDay(0.0, 0, 0)
    mean_extra = MONTH_MM[month] / MONTH_WET_DAYS[month] - 1.0
    light = mean_extra / (1.0 - HEAVY_SHARE + HEAVY_SHARE * HEAVY_RATIO)
    heavy = noise.uniform(s, k, day_index, 1) < HEAVY_SHARE
    mean = light * HEAVY_RATIO if heavy else light
    mm = 1.0 + -mean * math.log(max(noise.uniform(s, k, day_index, 2), 1e-12))
    # Showers mostly in the afternoon (13–18 h), some at night; heavy storms last longer.
    hours = 1 + int(noise.uniform(s, k, day_index, 3) * (4 if heavy else 3))
    if noise.uniform(s, k, day_index, 4) < 0.7:
        start = 13 + int(noise.uniform(s, k, day_index, 5) * 5)
    else:
        start = int(noise.uniform(s, k, day_index, 5) * 24)
    return RainDay(round(mm, 3), min(start, 24 - hours), hours)


def rain_rate(t: float, site: Site) -> float:
    """Rain (mm/h) in the local hour containing ``t``: the day's rain, front-loaded."""
    local_s = t + 7 * 3600
    day = math.floor(local_s / DAY_S)
    rd = rain_day(site, day)
    if rd.mm <= 0.0:
        return 0.0
    i = int((local_s - day * DAY_S) // HOUR_S) - rd.start_h
    if not 0 <= i < rd.hours:
        return 0.0
    n = rd.hours
    weight = (n - i) / (n * (n + 1) / 2)  # a storm is heaviest in its first hour
    return rd.mm * weight


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


# The perforated AWD tube the sensor sits in reaches 30 cm below the surface: it reads no
# lower than that, however dry the fallow field gets.
AWD_TUBE_M: Final = -0.30


@dataclass(slots=True)
class FieldWaterModel:
    """Paddy water depth (m, + above the soil surface) following the rice crop calendar.

    Land preparation floods the field to +8 cm; after sowing it is kept saturated; then
    alternate wetting and drying: flooded to +5 cm, drying (percolation +
    evapotranspiration, ≈1.5–2 cm a day) until the water is 15 cm below the surface, when
    the farmer re-irrigates; ponded around flowering; drained two weeks before harvest;
    fallow (rain only) until the next crop (``firmware_sim/crop.py``).
    """

    site: Site
    crops: tuple[Crop, ...] = DEFAULT_CROPS
    flood_to_m: float = 0.05
    reirrigate_at_m: float = -0.15
    t: float | None = None
    depth: float = 0.0
    irrigations: int = 0

    def stage(self, t: float) -> Stage:
        return stage_at(day_of_year(t), self.crops)

    def advance(self, t: float) -> None:
        if self.t is None:
            k = noise.key_of(self.site.key + ":awd0")
            self.t = t
            self.depth = -0.05 + 0.08 * noise.uniform(self.site.seed, k, 0)
            return
        while self.t + STEP_S <= t:
            t0 = self.t
            stage = self.stage(t0)
            rain_m = rain_between(t0, t0 + STEP_S, self.site) / 1000.0
            loss = (0.012 + 0.016 * sunlight(t0)) * STEP_S / DAY_S
            if stage in (Stage.DRAIN, Stage.FALLOW):
                loss += 0.02 * STEP_S / DAY_S  # drains open: the field empties in days
            self.depth = min(0.15, max(AWD_TUBE_M, self.depth + rain_m * 1.1 - loss))
            refill = _REFILL.get(stage)
            if refill is not None:
                below, to = refill
                if below is None:
                    below = self.reirrigate_at_m
                if self.depth <= below:
                    self.depth = max(self.depth, self.flood_to_m if to is None else to)
                    self.irrigations += 1
            self.t = t0 + STEP_S

    def sample(self, t: float) -> dict[str, float]:
        self.advance(t)
        return {"field_water": round(self.depth, 3)}


# Stage -> (irrigate when depth <= this (None: the AWD mark), up to this (None: flood_to_m)).
_REFILL: Final[dict[Stage, tuple[float | None, float | None]]] = {
    Stage.PREP: (0.05, 0.08),
    Stage.EARLY: (0.0, 0.03),
    Stage.AWD: (None, None),
    Stage.FLOWERING: (0.02, None),
}
