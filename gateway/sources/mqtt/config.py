"""``[[sources.mqtt]]``: the hamlet's local broker and how its topics map to records."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Preset = Literal["hamlet", "tasmota", "esphome"]

# Subscriptions each preset needs when ``topics`` is not given ({prefix} is filled in).
PRESET_TOPICS: dict[str, tuple[str, ...]] = {
    "hamlet": (
        "{prefix}/+/telemetry",
        "{prefix}/+/heartbeat",
        "{prefix}/+/event",
        "{prefix}/+/status",
    ),
    "tasmota": ("{prefix}/+/SENSOR", "{prefix}/+/LWT"),
    "esphome": ("+/sensor/+/state", "+/status"),
}
PRESET_PREFIX: dict[str, str] = {"hamlet": "hamlet", "tasmota": "tele", "esphome": ""}


class FieldMapping(BaseModel):
    """One device field -> one metric.

    ``field`` is a dotted JSON path inside a Tasmota SENSOR payload (``DS18B20.Temperature``)
    or an ESPHome sensor object id (``water_temperature``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, max_length=128)
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    unit: str | None = Field(None, max_length=16, description="device unit if not canonical")
    device: str | None = Field(None, description="only for this device/node (default: any)")


# Tasmota sensors a hamlet meets most; a site adds its own under ``mappings``.
TASMOTA_DEFAULT_MAPPINGS: tuple[FieldMapping, ...] = (
    FieldMapping(field="DS18B20.Temperature", metric="water_temp"),
    FieldMapping(field="AM2301.Temperature", metric="air_temp"),
    FieldMapping(field="AM2301.Humidity", metric="humidity"),
    FieldMapping(field="SHT3X.Temperature", metric="air_temp"),
    FieldMapping(field="SHT3X.Humidity", metric="humidity"),
    FieldMapping(field="BME280.Temperature", metric="air_temp"),
    FieldMapping(field="BME280.Humidity", metric="humidity"),
    FieldMapping(field="BME280.Pressure", metric="pressure"),
)


class MqttSourceConfig(BaseModel):
    """The hamlet's local MQTT broker. Owned by gateway/sources/mqtt."""

    model_config = ConfigDict(extra="forbid")

    name: str = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # Fixed client id + persistent session: the broker keeps our QoS1 messages while the
    # gateway restarts, and redelivers the ones we had not acknowledged (not yet committed).
    client_id: str = Field("hamlet-gateway", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = None
    preset: Preset = "hamlet"
    prefix: str | None = Field(None, description="topic prefix (default per preset)")
    topics: list[str] | None = Field(None, description="subscriptions (default per preset)")
    qos: Literal[0, 1] = 1
    mappings: list[FieldMapping] = Field(default_factory=list)
    use_default_mappings: bool = True
    keepalive_s: int = Field(30, ge=5, le=3600)
    max_payload_bytes: int = Field(16 * 1024, ge=256, le=1024 * 1024)
    batch_max: int = Field(500, ge=1, le=10_000, description="messages per sink.submit")
    queue_max: int = Field(10_000, ge=10, description="bound for un-acknowledgeable QoS0 input")
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MqttSourceConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if self.topics is not None and not self.topics:
            raise ValueError("topics, when given, must not be empty")
        return self

    @property
    def topic_prefix(self) -> str:
        return self.prefix if self.prefix is not None else PRESET_PREFIX[self.preset]

    def subscriptions(self) -> list[str]:
        if self.topics is not None:
            return list(self.topics)
        return [t.format(prefix=self.topic_prefix) for t in PRESET_TOPICS[self.preset]]

    def field_mappings(self) -> list[FieldMapping]:
        defaults = TASMOTA_DEFAULT_MAPPINGS if self.preset == "tasmota" else ()
        return [*self.mappings, *(defaults if self.use_default_mappings else ())]
