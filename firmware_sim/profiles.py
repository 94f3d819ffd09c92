"""Modbus RTU register profiles of the cheap RS485 sensors a hamlet uses (DESIGN.md §4).

Declarative: each profile is a table of holding registers, starting at wire address 0.
``value = raw * scale`` in the device unit; the simulator inverts that to fill registers
from the canonical model values (``from_canonical`` converts units first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final


def _ident(v: float) -> float:
    return v


def _ms_to_us(v: float) -> float:
    return v * 1000.0


# The SenseCAP S-EC-01 reads up to 20,000 µS/cm: salinity and TDS saturate with it (~11–12 ‰).
EC_MAX_US: Final = 20000.0


def _ec_sat_us(v: float) -> float:
    return min(EC_MAX_US, v * 1000.0)


def _salinity_mgl(v: float) -> float:
    return min(v, EC_MAX_US / 1000.0 / 1.75) * 1000.0


@dataclass(frozen=True, slots=True)
class Register:
    address: int  # wire address (0-based)
    metric: str  # canonical metric the value comes from
    scale: float  # device value = raw * scale
    unit: str  # device unit after scaling
    signed: bool = False
    from_canonical: Callable[[float], float] = _ident
    source: str = ""  # model key when it differs from ``metric`` (e.g. tds from ec)

    def raw(self, sample: Mapping[str, float]) -> int:
        v = self.from_canonical(sample[self.source or self.metric]) / self.scale
        n = round(v)
        if self.signed:
            n = max(-32768, min(32767, n))
            return n & 0xFFFF
        return max(0, min(65535, n))


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    default_address: int
    baudrate: int
    models: tuple[str, ...]
    registers: tuple[Register, ...]

    @property
    def size(self) -> int:
        return max(r.address for r in self.registers) + 1

    def fits(self, model: str) -> bool:
        return model in self.models

    def fill(self, sample: Mapping[str, float]) -> list[int]:
        regs = [0] * self.size
        for r in self.registers:
            regs[r.address] = r.raw(sample)
        return regs


PROFILES: Final[dict[str, Profile]] = {
    p.name: p
    for p in (
        Profile(
            "soil-npk-7in1",
            "Generic 7-in-1 soil sensor (moisture, temperature, EC, pH, N, P, K)",
            1,
            9600,
            ("soil",),
            (
                Register(0, "soil_moisture", 0.1, "%"),
                Register(1, "soil_temp", 0.1, "°C", signed=True),
                Register(2, "soil_ec", 1.0, "µS/cm", from_canonical=_ms_to_us),
                Register(3, "soil_ph", 0.1, "pH"),
                Register(4, "soil_n", 1.0, "mg/kg"),
                Register(5, "soil_p", 1.0, "mg/kg"),
                Register(6, "soil_k", 1.0, "mg/kg"),
            ),
        ),
        Profile(
            "dfrobot-sen0604",
            "DFRobot SEN0604 soil sensor (moisture, temperature, EC, pH)",
            1,
            9600,
            ("soil",),
            (
                Register(0, "soil_moisture", 0.1, "%"),
                Register(1, "soil_temp", 0.1, "°C", signed=True),
                Register(2, "soil_ec", 1.0, "µS/cm", from_canonical=_ms_to_us),
                Register(3, "soil_ph", 0.01, "pH"),
            ),
        ),
        Profile(
            "sensecap-s-ec-01",
            "SenseCAP S-EC-01 water EC/salinity sensor",
            1,
            9600,
            ("salinity",),
            (
                Register(0, "water_temp", 0.01, "°C", signed=True),
                Register(2, "ec", 1.0, "µS/cm", from_canonical=_ec_sat_us),
                Register(3, "salinity", 1.0, "mg/L", from_canonical=_salinity_mgl),
                Register(
                    4,
                    "tds",
                    1.0,
                    "mg/L",
                    source="ec",
                    from_canonical=lambda v: _ec_sat_us(v) * 0.64,
                ),
            ),
        ),
        Profile(
            # Holding 4 = level in mm, int16, with the transmitter's zero set by the
            # installer to the station's gauge zero (so the level can be below 0 in the dry
            # season) and the factory decimal setting (0 places) - the layout the gateway's
            # built-in "s-yw-01b" profile reads. The 0-5 m span clips what it can report.
            "s-yw-01b",
            "S-YW-01B pressure water-level transmitter (0–5 m span)",
            0x1A,
            9600,
            ("water_level",),
            (
                Register(
                    4,
                    "water_level",
                    0.001,
                    "m",
                    signed=True,
                    from_canonical=lambda v: min(5.0, max(-5.0, v)),
                ),
            ),
        ),
    )
}
