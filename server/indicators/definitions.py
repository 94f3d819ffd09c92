"""The indicators a commune is scored on: one declarative table (docs/indicators.md).

Each row says what the number is, which way is better, its default target and where that
target comes from. Computation lives in :mod:`server.indicators.compute`; targets a commune
configures override the defaults through :mod:`server.indicators.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Better(StrEnum):
    HIGHER = "higher"  # met when value >= target
    LOWER = "lower"  # met when value <= target


class Unit(StrEnum):
    RATIO = "ratio"  # 0..1, shown as a percentage
    SECONDS = "s"
    HOURS = "h"


@dataclass(frozen=True, slots=True)
class Indicator:
    key: str
    vi: str
    en: str
    unit: Unit
    better: Better
    target: float | None  # None: reported, not scored
    source: str
    devices: str  # which devices it rests on: kiosk, wifi, radio, sensor, gateway


INDICATORS: Final[tuple[Indicator, ...]] = (
    Indicator(
        "kiosk_availability",
        "Thời gian hoạt động kiosk trong giờ phục vụ",
        "Kiosk availability in service hours",
        Unit.RATIO,
        Better.HIGHER,
        0.95,
        "project default (no official uptime figure)",
        "kiosk",
    ),
    Indicator(
        "hotspot_availability",
        "Thời gian hoạt động Wi-Fi công cộng",
        "Public Wi-Fi availability",
        Unit.RATIO,
        Better.HIGHER,
        0.95,
        "project default",
        "wifi",
    ),
    Indicator(
        "radio_availability",
        "Tỷ lệ buổi phát thanh đúng lịch",
        "Smart-radio broadcasts delivered",
        Unit.RATIO,
        Better.HIGHER,
        0.95,
        "project default",
        "radio",
    ),
    Indicator(
        "dossiers_online",
        "Tỷ lệ hồ sơ nộp trực tuyến",
        "Dossiers submitted online",
        Unit.RATIO,
        Better.HIGHER,
        0.60,
        "Plan 113/KH-UBND Cần Thơ (commune ≥60%); QĐ 924/QĐ-TTg: ≥65%",
        "kiosk",
    ),
    Indicator(
        "satisfaction",
        "Mức độ hài lòng của người dân",
        "Citizen satisfaction",
        Unit.RATIO,
        Better.HIGHER,
        0.986,
        "benchmark: Định Môn model-NTM commune, 98.6%",
        "kiosk",
    ),
    Indicator(
        "sensor_completeness",
        "Độ đầy đủ dữ liệu cảm biến",
        "Sensor data completeness",
        Unit.RATIO,
        Better.HIGHER,
        0.95,
        "project default",
        "sensor",
    ),
    Indicator(
        "stuck_hours",
        "Số giờ cảm biến bị treo giá trị",
        "Stuck-sensor hours",
        Unit.HOURS,
        Better.LOWER,
        None,
        "data-quality fault, reported",
        "sensor",
    ),
    Indicator(
        "out_of_range_hours",
        "Số giờ có giá trị ngoài ngưỡng vật lý",
        "Hours with out-of-range values",
        Unit.HOURS,
        Better.LOWER,
        None,
        "data-quality fault, reported",
        "sensor",
    ),
    Indicator(
        "gateway_alive",
        "Thời gian hoạt động của gateway",
        "Gateway alive time",
        Unit.RATIO,
        Better.HIGHER,
        0.99,
        "project default",
        "gateway",
    ),
    Indicator(
        "uplink_connectivity",
        "Thời gian kết nối đường truyền",
        "Uplink connectivity",
        Unit.RATIO,
        Better.HIGHER,
        0.95,
        "project default",
        "gateway",
    ),
    Indicator(
        "freshness_p50_s",
        "Độ trễ dữ liệu (trung vị)",
        "Data delay, median",
        Unit.SECONDS,
        Better.LOWER,
        60.0,
        "project default",
        "gateway",
    ),
    Indicator(
        "freshness_p95_s",
        "Độ trễ dữ liệu (95%)",
        "Data delay, 95th percentile",
        Unit.SECONDS,
        Better.LOWER,
        300.0,
        "project default",
        "gateway",
    ),
    Indicator(
        "salinity_hours_above",
        "Số giờ độ mặn vượt ngưỡng cây trồng",
        "Hours of salinity above the crop's threshold",
        Unit.HOURS,
        Better.LOWER,
        None,
        "thresholds: hamlet/thresholds.py (DESIGN §5)",
        "sensor",
    ),
    Indicator(
        "water_hours_above_i",
        "Số giờ mực nước ≥ báo động I",
        "Hours of water level at or above alarm I",
        Unit.HOURS,
        Better.LOWER,
        None,
        "station alarm levels (configurable)",
        "sensor",
    ),
    Indicator(
        "water_hours_above_ii",
        "Số giờ mực nước ≥ báo động II",
        "Hours of water level at or above alarm II",
        Unit.HOURS,
        Better.LOWER,
        None,
        "Cần Thơ station II 1.90 m (2020 revision)",
        "sensor",
    ),
    Indicator(
        "water_hours_above_iii",
        "Số giờ mực nước ≥ báo động III",
        "Hours of water level at or above alarm III",
        Unit.HOURS,
        Better.LOWER,
        None,
        "Cần Thơ station III 2.00 m (2020 revision)",
        "sensor",
    ),
)

BY_KEY: Final[dict[str, Indicator]] = {i.key: i for i in INDICATORS}


def met(ind: Indicator, value: float | None, target: float | None) -> bool | None:
    """Whether ``value`` meets ``target``; None when either is missing."""
    if value is None or target is None:
        return None
    return value >= target if ind.better == Better.HIGHER else value <= target
