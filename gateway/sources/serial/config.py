from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SerialSourceConfig(BaseModel):
    """A serial line-protocol input. Owned by gateway/sources/serial."""

    model_config = ConfigDict(extra="forbid")

    name: str = "serial"
    port: str = Field(description="/dev/serial/by-id/... path (stable across replugs)")
    baudrate: int = 115200
