"""Field thresholds a farmer's status and alerts are judged against: one declarative table.

Shared by the server (alerts, indicators, pages) and, through the rules the server hands down,
the gateway (alerts from the edge), so "dangerous for rice" means one number everywhere.
These are the defaults; a commune configures its own per hamlet, field and crop on the server.

Sources (DESIGN.md §5): durian and other sensitive fruit trees tolerate at most 0.5‰; most
crops 1‰; livestock drinking water < 1.5‰; rice is stressed from 2‰ and not viable above 4‰;
official salinity bulletins draw the 1 g/L and 4 g/L lines. The "watch" level is where a
farmer should get ready (close a sluice, store fresh water) before the crop is harmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Status(StrEnum):
    """A reading's status for a person: colour, words and icon all follow from this."""

    SAFE = "safe"
    WATCH = "watch"
    DANGER = "danger"
    UNKNOWN = "unknown"  # no threshold applies, or no recent data


@dataclass(frozen=True, slots=True)
class CropSalinity:
    """Salinity (‰) at which a crop needs watching and at which it is harmed."""

    crop: str
    watch_ppt: float
    danger_ppt: float
    vi: str
    en: str
    source: str


CROP_SALINITY: Final[dict[str, CropSalinity]] = {
    c.crop: c
    for c in (
        CropSalinity("durian", 0.3, 0.5, "sầu riêng", "durian", "DESIGN §5: ≤0.5‰"),
        CropSalinity(
            "fruit", 0.3, 0.5, "cây ăn trái", "fruit trees", "DESIGN §5: sensitive fruit ≤0.5‰"
        ),
        CropSalinity("vegetable", 0.7, 1.0, "rau màu", "vegetables", "DESIGN §5: most crops ≤1‰"),
        CropSalinity("general", 0.7, 1.0, "cây trồng", "crops", "bulletins' 1 g/L line"),
        CropSalinity("livestock", 1.0, 1.5, "nước cho gia súc", "livestock water", "<1.5‰"),
        CropSalinity("rice", 2.0, 4.0, "lúa", "rice", "stressed from 2‰, not viable above 4‰"),
    )
}
# A field with no crop registered is judged as "most crops": the bulletins' 1 g/L line.
DEFAULT_CROP: Final = "general"


def crop_salinity(crop: str | None) -> CropSalinity:
    """The thresholds for ``crop`` (case-insensitive); unknown or None → most crops."""
    return CROP_SALINITY.get((crop or "").strip().lower(), CROP_SALINITY[DEFAULT_CROP])


def salinity_status(value_ppt: float, crop: str | None) -> Status:
    c = crop_salinity(crop)
    if value_ppt > c.danger_ppt:
        return Status.DANGER
    if value_ppt > c.watch_ppt:
        return Status.WATCH
    return Status.SAFE


@dataclass(frozen=True, slots=True)
class WaterLevelAlarms:
    """A station's flood alarm levels (m), with where the numbers come from."""

    station: str
    level_i: float
    level_ii: float
    level_iii: float
    source: str


# Cần Thơ station on the Hậu river. The 2020 revision of the alarm levels put III at 2.00 m and
# II at 1.90 m (before it, III was 1.90 m; bulletins still quote both), record 2.29 m on
# 22 Oct 2025. Level I is this project's assumption: configure every station from its
# bulletin.
CAN_THO_ALARMS: Final = WaterLevelAlarms(
    "can-tho", 1.70, 1.90, 2.00, "2020 revision (II, III); level I assumed, configure per station"
)


def water_level_status(level_m: float, alarms: WaterLevelAlarms = CAN_THO_ALARMS) -> Status:
    if level_m >= alarms.level_ii:
        return Status.DANGER
    if level_m >= alarms.level_i:
        return Status.WATCH
    return Status.SAFE


# Rice alternate wetting and drying: re-irrigate when the field water is 15 cm below the soil
# surface (field_water is measured relative to the surface, negative below it).
AWD_REIRRIGATE_M: Final = -0.15


def field_water_status(depth_m: float) -> Status:
    if depth_m <= AWD_REIRRIGATE_M:
        return Status.DANGER
    if depth_m <= AWD_REIRRIGATE_M / 2:
        return Status.WATCH
    return Status.SAFE
