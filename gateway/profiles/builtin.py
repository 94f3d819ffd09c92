"""The device profiles a gateway ships with (DESIGN.md §4). Users add theirs in TOML.

Register maps are the vendors' defaults; a unit the installer re-programmed (address,
baud rate, decimal places) needs a site profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from gateway.profiles.model import DeviceProfile, Register

_SOIL_3IN1: Final = (
    # Moisture and temperature in tenths; temperature signed (the soil can be below 0 °C
    # only in a fridge, but a disconnected probe reads negative: keep the sign).
    Register("soil_moisture", 0, "u16", 0.1),
    Register("soil_temp", 1, "s16", 0.1),
    Register("soil_ec", 2, "u16", 1.0, unit="µS/cm"),
)

BUILTIN_PROFILES: Final[Mapping[str, DeviceProfile]] = {
    p.name: p
    for p in (
        DeviceProfile(
            "soil-3in1",
            "Generic RS485 3-in-1 soil sensor (moisture, temperature, EC); slave 1, 4800/9600 8N1",
            _SOIL_3IN1,
            default_baudrate=4800,
        ),
        DeviceProfile(
            "soil-npk-7in1",
            "Generic RS485 7-in-1 'NPK' soil sensor (moisture, temperature, EC, pH, N, P, K)",
            (
                *_SOIL_3IN1,
                Register("soil_ph", 3, "u16", 0.1),
                Register("soil_n", 4, "u16", 1.0),
                Register("soil_p", 5, "u16", 1.0),
                Register("soil_k", 6, "u16", 1.0),
            ),
            default_baudrate=4800,
        ),
        DeviceProfile(
            "dfrobot-sen0604",
            "DFRobot SEN0604 RS485 soil sensor (moisture, temperature, EC, pH); 9600 8N1",
            (
                Register("soil_moisture", 0x0000, "u16", 0.1),
                Register("soil_temp", 0x0001, "s16", 0.1),
                Register("soil_ec", 0x0002, "u16", 1.0, unit="µS/cm"),
                Register("soil_ph", 0x0003, "u16", 0.01),
            ),
        ),
        DeviceProfile(
            "sensecap-s-ec-01",
            "SenseCAP S-EC-01 water EC/salinity sensor; salinity saturates near 11-12 ‰",
            (
                Register("water_temp", 0, "s16", 0.01),
                Register("ec", 2, "u16", 1.0, unit="µS/cm"),
                Register("salinity", 3, "u16", 1.0, unit="mg/L"),
                Register("tds", 4, "u16", 1.0, unit="mg/L"),
            ),
        ),
        DeviceProfile(
            "s-yw-01b",
            "Pressure water-level transmitter (S-YW-01B style, 0-5 m), slave 0x1A; "
            "level register in mm with the factory decimal setting (0 places)",
            (Register("water_level", 0x0004, "s16", 1.0, unit="mm"),),
            default_address=0x1A,
        ),
    )
}
