"""``[[sources.modbus]]``: one RS485 bus polled over Modbus RTU, and its devices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.profiles import DeviceProfile, ProfileError, ProfileModel, resolve_profiles
from hamlet.contract import Ident


class ModbusDeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    profile: str
    address: int = Field(1, ge=1, le=247)
    interval_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(0.5, gt=0, le=10, description="per-request answer timeout")
    retries: int = Field(1, ge=0, le=5, description="extra tries within one poll")


class ModbusSourceConfig(BaseModel):
    """One RS485 bus polled over Modbus RTU. Owned by gateway/sources/modbus."""

    model_config = ConfigDict(extra="forbid")

    name: str = "modbus"
    port: str = Field(description="/dev/serial/by-id/... path of the RS485 adapter")
    baudrate: int = Field(9600, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    # RTU needs >= 3.5 character times of silence between frames; cheap sensors want more.
    inter_frame_delay_s: float = Field(0.01, ge=0, le=1)
    # After this many failed polls in a row a device is 'dead': probed with growing gaps
    # (capped) so it costs the bus one timeout per probe, not one per cycle.
    dead_after: int = Field(3, ge=1)
    dead_probe_max_s: float = Field(300.0, gt=0)
    backoff_initial_s: float = Field(0.5, gt=0, description="reopen the port after this")
    backoff_max_s: float = Field(30.0, gt=0)
    profiles_file: Path | None = Field(None, description="TOML file with site profiles")
    profiles: list[ProfileModel] = Field(default_factory=list, description="inline profiles")
    devices: list[ModbusDeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ModbusSourceConfig:
        table = self.profile_table()
        ids: set[str] = set()
        for d in self.devices:
            if d.profile not in table:
                known = ", ".join(sorted(table))
                raise ValueError(f"device {d.id!r}: unknown profile {d.profile!r}; known: {known}")
            if d.id in ids:
                raise ValueError(f"device id {d.id!r} appears twice on this bus")
            ids.add(d.id)
        return self

    def profile_table(self) -> dict[str, DeviceProfile]:
        try:
            return dict(resolve_profiles(self.profiles, self.profiles_file))
        except ProfileError as err:
            raise ValueError(str(err)) from err
