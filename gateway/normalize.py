"""Device units and names -> the canonical metrics of :mod:`hamlet.metrics`.

Three declarative tables drive it:

- ``UNIT_ALIASES``: the spellings devices use for one unit (``uS/cm``, ``μS/cm``, ``us/cm``).
- ``CONVERSIONS``: linear conversions ``canonical = value * scale + offset`` between units.
- ``METRIC_ALIASES``: device key -> canonical metric (and the unit the key implies), for
  firmware that says ``level_cm`` or ``ec_us`` instead of ``water_level`` and ``ec``.

Salinity from conductivity uses PSS-78 (UNESCO 1981 practical salinity) with the Hill et al.
(1986) extension below S = 2, which is where Mekong Delta field water mostly is: the
1 g/L and 4 g/L lines farmers care about are both inside the extension's range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from gateway.records import Event, Reading, Record
from hamlet.metrics import GATEWAY_METRIC_PREFIX, METRICS, OutOfRange, check_value


class NormalizeError(ValueError):
    """A reading that cannot be made canonical; ``str(err)`` reads ``code: detail``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Conversion:
    unit: str  # the device's unit
    canonical: str  # the unit it converts to
    scale: float
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricAlias:
    key: str  # what a device calls it
    metric: str  # canonical metric
    unit: str | None = None  # the unit the key implies (None: canonical)


# Spellings -> one symbol. Keys are compared after .strip() (and case-folded, see _unit_key).
UNIT_ALIASES: Final[Mapping[str, str]] = {
    "us/cm": "µS/cm", "μs/cm": "µS/cm", "µs/cm": "µS/cm", "microsiemens/cm": "µS/cm",
    "ms/cm": "mS/cm", "ds/m": "dS/m", "s/m": "S/m",
    "c": "°C", "°c": "°C", "degc": "°C", "celsius": "°C", "℃": "°C",
    "f": "°F", "°f": "°F", "degf": "°F", "fahrenheit": "°F", "℉": "°F",
    "k": "K", "kelvin": "K",
    "m": "m", "cm": "cm", "mm": "mm", "in": "in", "ft": "ft",
    "‰": "‰", "ppt": "‰", "g/l": "‰", "g/kg": "‰", "psu": "‰", "permille": "‰",
    "mg/l": "mg/L", "ppm": "mg/L",
    "%": "%", "%rh": "%", "rh": "%", "percent": "%",
    "hpa": "hPa", "mbar": "hPa", "kpa": "kPa", "pa": "Pa",
    "v": "V", "mv": "mV",
    "dbm": "dBm", "s": "s", "ms": "ms",
    "mg/kg": "mg/kg", "ph": "pH",
    "m/s": "m/s", "km/h": "km/h",
}  # fmt: skip

CONVERSIONS: Final[tuple[Conversion, ...]] = (
    # Conductivity: field meters say µS/cm; canonical is mS/cm (1 dS/m = 1 mS/cm).
    Conversion("µS/cm", "mS/cm", 0.001),
    Conversion("dS/m", "mS/cm", 1.0),
    Conversion("S/m", "mS/cm", 10.0),
    # Temperature.
    Conversion("°F", "°C", 5 / 9, -32 * 5 / 9),
    Conversion("K", "°C", 1.0, -273.15),
    # Length: water level in m; rain in mm.
    Conversion("cm", "m", 0.01),
    Conversion("mm", "m", 0.001),
    Conversion("ft", "m", 0.3048),
    Conversion("in", "mm", 25.4),
    Conversion("cm", "mm", 10.0),
    # Salinity: mg/L of salt -> g/L (= ‰ at field densities).
    Conversion("mg/L", "‰", 0.001),
    # Pressure.
    Conversion("kPa", "hPa", 10.0),
    Conversion("Pa", "hPa", 0.01),
    # Battery.
    Conversion("mV", "V", 0.001),
    Conversion("km/h", "m/s", 1 / 3.6),
    Conversion("ms", "s", 0.001),
)
_CONV: Final[Mapping[tuple[str, str], Conversion]] = {(c.unit, c.canonical): c for c in CONVERSIONS}

METRIC_ALIASES: Final[tuple[MetricAlias, ...]] = (
    MetricAlias("level", "water_level"),
    MetricAlias("wl", "water_level"),
    MetricAlias("level_cm", "water_level", "cm"),
    MetricAlias("level_mm", "water_level", "mm"),
    MetricAlias("sal", "salinity"),
    MetricAlias("sal_mgl", "salinity", "mg/L"),
    MetricAlias("cond", "ec"),
    MetricAlias("conductivity", "ec"),
    MetricAlias("ec_us", "ec", "µS/cm"),
    MetricAlias("wtemp", "water_temp"),
    MetricAlias("water_temp_f", "water_temp", "°F"),
    MetricAlias("moisture", "soil_moisture"),
    MetricAlias("stemp", "soil_temp"),
    MetricAlias("soil_ec_us", "soil_ec", "µS/cm"),
    MetricAlias("ph", "soil_ph"),
    MetricAlias("atemp", "air_temp"),
    MetricAlias("air_temp_f", "air_temp", "°F"),
    MetricAlias("temp", "air_temp"),
    MetricAlias("temperature", "air_temp"),
    MetricAlias("hum", "humidity"),
    MetricAlias("rh", "humidity"),
    MetricAlias("rain_in", "rain", "in"),
    MetricAlias("vbat", "battery"),
    MetricAlias("batt", "battery"),
    MetricAlias("batt_mv", "battery", "mV"),
    MetricAlias("tds_ppm", "tds", "mg/L"),
)

_SPACE: Final = re.compile(r"\s+")


def _unit_key(unit: str) -> str:
    return _SPACE.sub("", unit).lower()


def canonical_unit(unit: str) -> str | None:
    """The one symbol for a device's unit spelling, or None if we do not know it."""
    u = _SPACE.sub("", unit)
    if u in ("mS/cm", "MS/cm"):  # case matters only between milli and mega
        return "mS/cm"
    return UNIT_ALIASES.get(_unit_key(u))


# ---------------------------------------------------------------- PSS-78

# UNESCO (1981) practical salinity scale 1978, pressure term omitted (surface water).
_C35_15: Final = 42.914  # conductivity of standard seawater S=35, 15 °C, 0 dbar, mS/cm
_A: Final = (0.0080, -0.1692, 25.3851, 14.0941, -7.0261, 2.7081)
_B: Final = (0.0005, -0.0056, -0.0066, -0.0375, 0.0636, -0.0144)
_C: Final = (0.6766097, 2.00564e-2, 1.104259e-4, -6.9698e-7, 1.0031e-9)
_K: Final = 0.0162


def practical_salinity(ec_ms_cm: float, temp_c: float) -> float:
    """PSS-78 practical salinity from conductivity (mS/cm) and temperature (°C, ITS-90).

    Surface pressure. Below S = 2 applies the Hill et al. (1986) extension so fresh and
    brackish water (what a delta canal carries) comes out smooth and non-negative.
    """
    if ec_ms_cm <= 0:
        return 0.0
    t68 = temp_c * 1.00024
    r = ec_ms_cm / _C35_15
    rt_t = sum(c * t68**i for i, c in enumerate(_C))
    rt = r / rt_t
    srt = math.sqrt(rt)
    ft = (t68 - 15) / (1 + _K * (t68 - 15))
    s = sum(a * srt**i for i, a in enumerate(_A)) + ft * sum(b * srt**i for i, b in enumerate(_B))
    if s < 2:
        x = 400 * rt
        y = 100 * rt
        s -= _A[0] / (1 + 1.5 * x + x * x) + _B[0] * ft / (1 + math.sqrt(y) + y**1.5)
    return max(s, 0.0)


# ---------------------------------------------------------------- the normalizer


class Normalizer:
    """Callable by the pipeline per record; :meth:`expand` adds derived readings per frame."""

    def __init__(self, aliases: Mapping[str, MetricAlias] | None = None) -> None:
        table = {a.key: a for a in METRIC_ALIASES}
        if aliases:
            table.update(aliases)
        self._aliases = table

    def __call__(self, record: Record) -> Record:
        return self.normalize(record)

    def normalize(self, record: Record) -> Record:
        if isinstance(record, Event):
            return record
        metric, unit = record.metric, record.unit
        if metric.startswith(GATEWAY_METRIC_PREFIX):
            return record
        alias = self._aliases.get(metric)
        if alias is not None and metric not in METRICS:
            metric = alias.metric
            if unit is None:
                unit = alias.unit
        value = record.value
        if not math.isfinite(value):
            raise NormalizeError("not_finite", f"{record.device}/{metric}: value is {value}")
        m = METRICS.get(metric)
        if m is None:
            # A site-specific figure (free heap, fan speed...): passed through untouched.
            if metric == record.metric and unit == record.unit:
                return record
            return replace(record, metric=metric, unit=unit)
        if unit is not None:
            value = self._convert(record.device, metric, value, unit, m.unit)
        try:
            check_value(metric, value)
        except OutOfRange as err:
            raise NormalizeError("out_of_range", f"{record.device}/{err}") from err
        if metric == record.metric and record.unit is None and value == record.value:
            return record  # already canonical: the common case, and a copy costs ~20 µs
        return replace(record, metric=metric, value=value, unit=None)

    @staticmethod
    def _convert(device: str, metric: str, value: float, unit: str, target: str) -> float:
        sym = canonical_unit(unit)
        if sym is None:
            raise NormalizeError(
                "unknown_unit", f"{device}/{metric}: unit {unit[:20]!r} is not one we know"
            )
        if sym == target or (target == "" and sym in ("", "%")):
            return value
        conv = _CONV.get((sym, target))
        if conv is None:
            raise NormalizeError(
                "bad_unit", f"{device}/{metric}: cannot convert {sym} to {target or 'a count'}"
            )
        return value * conv.scale + conv.offset

    def derive(self, canonical: Sequence[Record]) -> list[Reading]:
        """A PSS-78 salinity reading for each frame in ``canonical`` (records already
        normalized, in the order received) that has water EC and water temperature but no
        salinity of its own.

        A frame is one device's readings of one instant: a source hands over a serial frame,
        a Modbus poll or an MQTT message together, and several may meet in one submit. A
        device's frame ends where one of its metrics comes again or its device time changes.
        """
        frames: dict[str, dict[str, Reading]] = {}  # device -> its open frame, by metric
        out: list[Reading] = []
        for r in canonical:
            if not isinstance(r, Reading):
                continue
            frame = frames.get(r.device)
            if frame is not None and (
                r.metric in frame or next(iter(frame.values())).device_time_ms != r.device_time_ms
            ):
                out += _salinity(frame)
                frame = None
            if frame is None:
                frame = frames[r.device] = {}
            frame[r.metric] = r
        for frame in frames.values():
            out += _salinity(frame)
        return out


def _salinity(frame: Mapping[str, Reading]) -> list[Reading]:
    ec, temp = frame.get("ec"), frame.get("water_temp")
    if ec is None or temp is None or "salinity" in frame:
        return []
    sal = practical_salinity(ec.value, temp.value)
    return [replace(ec, metric="salinity", value=round(sal, 4), unit=None)]
