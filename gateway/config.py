"""The gateway's whole configuration, validated once at start-up and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from gateway.buffer.config import BufferConfig
from gateway.clock import ClockConfig
from gateway.notify.config import EdgeAlertsConfig
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.serial.config import SerialSourceConfig
from gateway.status_report import StatusReportConfig
from gateway.uplink.config import UplinkConfig
from hamlet.config import load_config
from hamlet.contract import Ident

ENV_PREFIX: Final = "HAMLET_GATEWAY"


class SourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: list[SerialSourceConfig] = Field(default_factory=list)
    modbus: list[ModbusSourceConfig] = Field(default_factory=list)
    mqtt: list[MqttSourceConfig] = Field(default_factory=list)


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Ident = Field(description="gateway id as registered on the server")
    hamlet: Ident | None = None
    data_dir: Path = Field(Path("/var/lib/hamlet"), description="buffer, dead letters, state")
    heartbeat_interval_s: float = Field(60.0, ge=1.0)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    uplink: UplinkConfig
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    edge_alerts: EdgeAlertsConfig = Field(default_factory=EdgeAlertsConfig)
    status_report: StatusReportConfig = Field(default_factory=StatusReportConfig)


def load_gateway_config(path: Path | None) -> GatewayConfig:
    return load_config(GatewayConfig, path, env_prefix=ENV_PREFIX)
