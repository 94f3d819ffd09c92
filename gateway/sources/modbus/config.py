from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModbusDeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    profile: str
    address: int = Field(1, ge=1, le=247)
    interval_s: float = Field(60.0, gt=0)


class ModbusSourceConfig(BaseModel):
    """One RS485 bus polled over Modbus RTU. Owned by gateway/sources/modbus."""

    model_config = ConfigDict(extra="forbid")

    name: str = "modbus"
    port: str
    baudrate: int = 9600
    devices: list[ModbusDeviceConfig] = Field(default_factory=list)
