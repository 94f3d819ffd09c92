"""Year types: an ordinary year, a drought year and a record-flood year on the Hậu river.

A scenario names its year type, or leaves it to the seed, which draws one per calendar
year. Each type fixes the annual flood peak at Cần Thơ station and how far salt water
reaches inland in the dry season; the figures and their sources are in docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from firmware_sim import noise


class YearType(StrEnum):
    ORDINARY = "ordinary"
    DROUGHT = "drought"  # like 2016 and 2020: low flood, salt far inland
    RECORD_FLOOD = "record-flood"  # like 2025: 2.29 m at Cần Thơ on 22 October


@dataclass(frozen=True, slots=True)
class YearParams:
    """What a year type means at the reference station (Cần Thơ, 80 km from the sea)."""

    peak_lo_m: float  # annual maximum water level, drawn in [lo, hi] per year
    peak_hi_m: float
    salt_4ppt_km: float  # where the 4 ‰ line stands at the mid-March peak (daily mean)
    salt_decay_km: float  # e-folding length of salinity upstream of that line
    rain_factor: tuple[float, ...]  # per month, Jan..Dec, on the ordinary climatology


_FLAT: Final = (1.0,) * 12

YEARS: Final[dict[YearType, YearParams]] = {
    # Recent ordinary years peak near alarm III (2.00 m): a few days above it at most.
    YearType.ORDINARY: YearParams(1.95, 2.03, 35.0, 10.0, _FLAT),
    # El Niño years: the flood stays low, the rains start late, the 4 ‰ line reaches
    # 60-70 km up the Hậu (2016) and 1 ‰ water reaches Cần Thơ.
    YearType.DROUGHT: YearParams(
        1.82, 1.92, 65.0, 13.0, (0.5, 0.3, 0.3, 0.4, 0.6, 0.8, 1.0, 1.0, 0.95, 0.9, 0.9, 0.8)
    ),
    # A record flood: high water from upstream meets the October spring tides (2.29 m).
    YearType.RECORD_FLOOD: YearParams(
        2.29, 2.29, 35.0, 10.0, (1, 1, 1, 1, 1, 1, 1, 1.05, 1.15, 1.2, 1.15, 1)
    ),
}

# When the seed draws: most years are ordinary (shares are our own estimate of how often
# 2016/2020-like droughts and 2.2 m+ floods came in the last decade).
DRAW_SHARES: Final = ((YearType.DROUGHT, 0.15), (YearType.RECORD_FLOOD, 0.10))
_DRAW_KEY: Final = noise.key_of("year-type")
_PEAK_KEY: Final = noise.key_of("year-peak")


def year_type(seed: int, year: int, fixed: YearType | None) -> YearType:
    """The scenario's year type, or the one the seed draws for ``year``."""
    if fixed is not None:
        return fixed
    u = noise.uniform(seed, _DRAW_KEY, year)
    acc = 0.0
    for kind, share in DRAW_SHARES:
        acc += share
        if u < acc:
            return kind
    return YearType.ORDINARY


def flood_peak_m(seed: int, year: int, kind: YearType) -> float:
    """The annual maximum water level at the reference station for this year."""
    p = YEARS[kind]
    return p.peak_lo_m + (p.peak_hi_m - p.peak_lo_m) * noise.uniform(seed, _PEAK_KEY, year)
