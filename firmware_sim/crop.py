"""The rice crop calendar that drives a paddy's water: flooding, AWD, drainage, fallow.

Thới Lai (Cần Thơ) grows three crops a year behind its dykes: Đông Xuân (sown early
December), Hè Thu (mid April) and Thu Đông (early August). Each crop: land preparation under
water, a shallow-flooded start, alternate wetting and drying (re-irrigate at 15 cm below
the surface), ponded water around flowering, drainage two weeks before harvest, then
fallow until the next crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final


class Stage(StrEnum):
    PREP = "prep"  # land preparation: flooded
    EARLY = "early"  # sowing to tillering: kept saturated
    AWD = "awd"  # alternate wetting and drying
    FLOWERING = "flowering"  # kept ponded: rice is most sensitive to drought now
    DRAIN = "drain"  # drained before harvest
    FALLOW = "fallow"  # between crops: no irrigation


@dataclass(frozen=True, slots=True)
class Crop:
    name: str
    sow_doy: int  # day of year it is sown
    days: int  # sowing to harvest


PREP_DAYS: Final = 7
EARLY_DAYS: Final = 10
FLOWERING_FROM: Final = 45  # days before harvest
FLOWERING_TO: Final = 30
DRAIN_DAYS: Final = 14

DEFAULT_CROPS: Final = (
    Crop("dong-xuan", 339, 100),  # 5 Dec -> mid March
    Crop("he-thu", 105, 95),  # 15 Apr -> mid July
    Crop("thu-dong", 217, 95),  # 5 Aug -> early November
)


def crop_from(sow_mmdd: str, days: int, name: str = "") -> Crop:
    month, day = (int(x) for x in sow_mmdd.split("-"))
    # Day of year in a common year: a crop is sown by the date, whatever the leap days.
    return Crop(name or sow_mmdd, date(2023, month, day).timetuple().tm_yday, days)


def stage_at(doy: float, crops: tuple[Crop, ...] = DEFAULT_CROPS) -> Stage:
    """The stage of the paddy on (fractional) day of year ``doy``."""
    for c in crops:
        das = (doy - c.sow_doy + PREP_DAYS) % 365.0 - PREP_DAYS  # days after sowing
        if das < 0:
            return Stage.PREP
        if das >= c.days:
            continue
        to_harvest = c.days - das
        if das < EARLY_DAYS:
            return Stage.EARLY
        if to_harvest <= DRAIN_DAYS:
            return Stage.DRAIN
        if FLOWERING_TO < to_harvest <= FLOWERING_FROM:
            return Stage.FLOWERING
        return Stage.AWD
    return Stage.FALLOW
