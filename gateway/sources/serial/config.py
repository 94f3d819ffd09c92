from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SerialSourceConfig(BaseModel):
    """A serial line-protocol input. Owned by gateway/sources/serial."""

    model_config = ConfigDict(extra="forbid")

    name: str = "serial"
    port: str = Field(description="/dev/serial/by-id/... path (stable across replugs)")
    baudrate: int = Field(115200, ge=300, le=4_000_000)
    backoff_initial_s: float = Field(0.5, gt=0, description="first wait before reopening")
    backoff_max_s: float = Field(10.0, gt=0, description="longest wait between reopen tries")
    read_chunk: int = Field(4096, ge=64, le=65536)
    # Noise lines (no '$') and overlong lines (too_long) are always counted; at most this
    # many a minute of each are also dead-lettered, so a noisy radio cannot push real CRC
    # failures out of the store.
    noise_dead_letters_per_min: int = Field(6, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SerialSourceConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self
