"""Build the configured sources. The gateway app supervises what this returns.

Source modules are imported here, on demand, so a gateway without (say) Modbus devices
never imports pymodbus.
"""

from __future__ import annotations

from gateway.config import SourcesConfig
from gateway.sources.base import Source


class DuplicateSourceName(ValueError):
    """Two sources share a name: their state and dead letters would be indistinguishable."""


def build_sources(cfg: SourcesConfig) -> list[Source]:
    sources: list[Source] = []
    if cfg.mqtt:
        from gateway.sources.mqtt.source import MqttSource

        sources.extend(MqttSource(c) for c in cfg.mqtt)
    if cfg.serial:
        from gateway.sources.serial.source import SerialSource

        sources.extend(SerialSource(c) for c in cfg.serial)
    if cfg.modbus:
        from gateway.sources.modbus.source import ModbusSource

        sources.extend(ModbusSource(c) for c in cfg.modbus)
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            raise DuplicateSourceName(
                f"two sources are named {s.name!r}; give each [[sources.*]] a unique name"
            )
        seen.add(s.name)
    return sources
