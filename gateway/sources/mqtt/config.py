from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MqttSourceConfig(BaseModel):
    """The hamlet's local MQTT broker. Owned by gateway/sources/mqtt."""

    model_config = ConfigDict(extra="forbid")

    name: str = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = "hamlet-gateway"
    topics: list[str] = Field(default_factory=lambda: ["hamlet/#"])
