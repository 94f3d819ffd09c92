"""Canonical metrics: one name, one unit, and the physically possible range for each.

A declarative table both sides share: the gateway normalizes device units into these and
dead-letters impossible values; the server validates against the same ranges. Ranges are
what the physics allows in a Mekong Delta hamlet, wide enough never to reject a real
reading, narrow enough to catch a byte-swapped register or a disconnected probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    lo: float
    hi: float
    en: str
    vi: str


_TABLE: Final[tuple[Metric, ...]] = (
    # Water. Salinity in per mille (g/L); seawater is ~35, so 45 is the hard ceiling.
    Metric("water_level", "m", -5.0, 10.0, "Water level", "Mực nước"),
    Metric("salinity", "‰", 0.0, 45.0, "Salinity", "Độ mặn"),
    Metric("ec", "mS/cm", 0.0, 100.0, "Electrical conductivity", "Độ dẫn điện"),
    Metric("tds", "mg/L", 0.0, 100_000.0, "Total dissolved solids", "Tổng chất rắn hòa tan"),
    Metric("water_temp", "°C", -5.0, 50.0, "Water temperature", "Nhiệt độ nước"),
    # Field water for alternate wetting and drying, relative to the soil surface.
    Metric("field_water", "m", -1.0, 1.0, "Field water depth", "Mực nước ruộng"),
    # Soil.
    Metric("soil_moisture", "%", 0.0, 100.0, "Soil moisture", "Độ ẩm đất"),
    Metric("soil_temp", "°C", -10.0, 70.0, "Soil temperature", "Nhiệt độ đất"),
    Metric("soil_ec", "mS/cm", 0.0, 30.0, "Soil EC", "Độ dẫn điện đất"),
    Metric("soil_ph", "pH", 0.0, 14.0, "Soil pH", "Độ pH đất"),
    Metric("soil_n", "mg/kg", 0.0, 2000.0, "Nitrogen", "Đạm (N)"),
    Metric("soil_p", "mg/kg", 0.0, 2000.0, "Phosphorus", "Lân (P)"),
    Metric("soil_k", "mg/kg", 0.0, 2000.0, "Potassium", "Kali (K)"),
    # Weather. Rain is the amount since the previous reading.
    Metric("air_temp", "°C", -10.0, 55.0, "Air temperature", "Nhiệt độ không khí"),
    Metric("humidity", "%", 0.0, 100.0, "Humidity", "Độ ẩm không khí"),
    Metric("rain", "mm", 0.0, 300.0, "Rain", "Lượng mưa"),
    Metric("pressure", "hPa", 850.0, 1100.0, "Air pressure", "Áp suất không khí"),
    Metric("wind_speed", "m/s", 0.0, 75.0, "Wind speed", "Tốc độ gió"),
    # Device health.
    Metric("battery", "V", 0.0, 30.0, "Battery voltage", "Điện áp pin"),
    Metric("rssi", "dBm", -150.0, 0.0, "Signal strength", "Cường độ tín hiệu"),
    Metric("heartbeat", "", 0.0, 1.0, "Alive", "Hoạt động"),
    Metric("uptime", "s", 0.0, 10 * 365 * 86400.0, "Uptime", "Thời gian chạy"),
    Metric("clients", "", 0.0, 10_000.0, "Connected clients", "Số thiết bị kết nối"),
)

METRICS: Final[dict[str, Metric]] = {m.name: m for m in _TABLE}

# Gateway self-reporting figures (buffer depth, counters, CPU temperature...) are free-form
# under this prefix: they are diagnostics, not field physics, so no range applies.
GATEWAY_METRIC_PREFIX: Final = "gw."


class OutOfRange(ValueError):
    """A value outside what the metric can physically be."""


def check_value(metric: str, value: float) -> None:
    """Raise :class:`OutOfRange` (with a reason a person can act on) if impossible.

    Unknown metrics pass: a site may add its own; only known physics is policed.
    """
    if not math.isfinite(value):
        raise OutOfRange(f"{metric}: value is not finite ({value})")
    m = METRICS.get(metric)
    if m is None:
        return
    if not m.lo <= value <= m.hi:
        raise OutOfRange(
            f"{metric}={value:g} {m.unit} is outside the possible range {m.lo:g}..{m.hi:g}"
        )
