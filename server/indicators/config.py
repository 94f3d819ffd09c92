"""What a commune configures: targets and thresholds per commune, hamlet, field and crop.

Part of the server's TOML config (``[indicators]``), validated at start-up. The most specific
match wins: device > hamlet > commune > crop > default (docs/indicators.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from typing import Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hamlet.thresholds import CAN_THO_ALARMS, WaterLevelAlarms, crop_salinity
from hamlet.vncalendar import ServiceHours, ServiceHoursError
from server.indicators.definitions import BY_KEY

# A Wi-Fi hotspot at the cultural house serves every day, evenings included.
DEFAULT_HOTSPOT_HOURS: Final = "Mon-Sun 06:00-22:00; holidays"
# Service devices heartbeat about once a minute (firmware_sim, ESP32 kiosks).
DEFAULT_SERVICE_INTERVAL_S: Final = 60
DEFAULT_STUCK_METRICS: Final = (
    "salinity",
    "water_level",
    "ec",
    "water_temp",
    "field_water",
    "soil_moisture",
    "soil_temp",
    "air_temp",
    "humidity",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Scope(_Section):
    commune: str | None = None
    hamlet: str | None = None
    device: str | None = None
    crop: str | None = None

    @model_validator(mode="after")
    def _device_needs_hamlet(self) -> _Scope:
        if self.device is not None and self.hamlet is None:
            raise ValueError("a device override needs its hamlet too (device ids are per hamlet)")
        return self

    def rank(
        self, commune: str | None, hamlet: str | None, device: str | None, crop: str | None
    ) -> int:
        """How specifically this entry matches (higher wins); -1 when it does not apply."""
        if self.device is not None and (self.device != device or self.hamlet != hamlet):
            return -1
        if self.hamlet is not None and self.hamlet != hamlet:
            return -1
        if self.commune is not None and self.commune != commune:
            return -1
        if self.crop is not None and (crop or "").lower() != self.crop.lower():
            return -1
        if self.device is not None:
            return 4
        if self.hamlet is not None:
            return 3
        if self.commune is not None:
            return 2
        return 1 if self.crop is not None else 0


class TargetOverride(_Scope):
    indicator: str
    target: float | None = Field(description="None: report without scoring")

    @field_validator("indicator")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BY_KEY:
            raise ValueError(f"unknown indicator {v!r}; one of: {', '.join(sorted(BY_KEY))}")
        return v


class SalinityOverride(_Scope):
    danger_ppt: float = Field(gt=0, le=45)


class WaterAlarmOverride(_Scope):
    level_i: float
    level_ii: float
    level_iii: float
    source: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> WaterAlarmOverride:
        if not self.level_i <= self.level_ii <= self.level_iii:
            raise ValueError("alarm levels must satisfy level_i <= level_ii <= level_iii")
        return self


class IndicatorsConfig(_Section):
    sensor_interval_s: int = Field(300, ge=1, le=7 * 86400)
    stuck_hours: int = Field(3, ge=1, le=24 * 31)
    stuck_metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_STUCK_METRICS))
    radio_schedule: list[str] = Field(default_factory=lambda: ["05:00", "17:00"])
    radio_tolerance_min: int = Field(30, ge=1, le=720)
    hotspot_hours: str = DEFAULT_HOTSPOT_HOURS
    extra_closed: list[date] = Field(default_factory=list)
    targets: list[TargetOverride] = Field(default_factory=list)
    salinity: list[SalinityOverride] = Field(default_factory=list)
    water_alarms: list[WaterAlarmOverride] = Field(default_factory=list)

    @field_validator("radio_schedule")
    @classmethod
    def _times(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                time.fromisoformat(s)
            except ValueError as err:
                raise ValueError(f"radio_schedule: {s!r} is not a time of day (HH:MM)") from err
        return v

    @field_validator("hotspot_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        try:
            ServiceHours.parse(v)
        except ServiceHoursError as err:
            raise ValueError(str(err)) from err
        return v


S = TypeVar("S", bound=_Scope)


@dataclass(frozen=True, slots=True)
class Where:
    """Where a value is judged: the device's commune, hamlet, id and crop."""

    commune: str | None
    hamlet: str | None = None
    device: str | None = None
    crop: str | None = None


def _best(entries: list[S], w: Where) -> S | None:
    best: S | None = None
    best_rank = -1
    for e in entries:
        r = e.rank(w.commune, w.hamlet, w.device, w.crop)
        if r > best_rank:
            best, best_rank = e, r
    return best


def target_for(cfg: IndicatorsConfig, indicator: str, w: Where) -> float | None:
    hit = _best([t for t in cfg.targets if t.indicator == indicator], w)
    return hit.target if hit is not None else BY_KEY[indicator].target


def salinity_threshold(cfg: IndicatorsConfig, w: Where) -> float:
    hit = _best(cfg.salinity, w)
    return hit.danger_ppt if hit is not None else crop_salinity(w.crop).danger_ppt


def water_alarms(cfg: IndicatorsConfig, w: Where) -> WaterLevelAlarms:
    hit = _best(cfg.water_alarms, w)
    if hit is None:
        return CAN_THO_ALARMS
    return WaterLevelAlarms(
        w.device or w.hamlet or "", hit.level_i, hit.level_ii, hit.level_iii, hit.source
    )
