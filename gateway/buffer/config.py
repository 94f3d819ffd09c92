from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The default durability window, sized for an SD card: see docs/store-and-forward.md,
# "Durability window". At a hamlet's load (bench/gateway_sd_writes.py, 3.6 readings/s) 30 s
# wrote 313 B a reading, 115 MB a day; 60 s writes 265 B, 83 MB a day (issue 17: <= 100 MB).
DEFAULT_WINDOW_S = 60.0


class BufferConfig(BaseModel):
    """Durable SQLite buffer. Owned by gateway/buffer."""

    model_config = ConfigDict(extra="forbid")

    durability_window_s: float = Field(
        DEFAULT_WINDOW_S,
        ge=0.001,
        le=60.0,
        description=(
            "a power cut loses at most the readings of the last N seconds, which MQTT "
            "devices resend (they are acknowledged only after commit); nothing acknowledged "
            "is ever lost. Longer = fewer SD-card writes, later acknowledgements"
        ),
    )
    commit_max_records: int = Field(2000, ge=1, le=100_000)
    commit_min_group: int = Field(
        200,
        ge=1,
        le=100_000,
        description="a group this big is committed after commit_min_interval_ms already",
    )
    commit_min_interval_ms: int = Field(10, ge=0, le=5000)
    commit_max_waiters: int = Field(
        256,
        ge=1,
        le=10_000,
        description=(
            "a group awaited by this many submits is committed after commit_min_interval_ms: "
            "a source with a bounded number of submits in flight (serial, MQTT: 512) never "
            "stalls on the window; above the submits of one window at a hamlet's rate, so "
            "those meet in one commit"
        ),
    )
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024, description="hard byte budget")
    aggregate_interval_s: int = Field(
        900, ge=10, le=86400, description="bucket width when raw readings are aggregated"
    )
    keep_corrupt_files: int = Field(2, ge=0, le=10, description="corrupt files kept aside")
    receipt_window: int = Field(
        100_000,
        ge=1000,
        le=1_000_000,
        description="records whose receipt is remembered to recognise redeliveries; at least "
        "the broker's max_inflight_messages (see docs/store-and-forward.md)",
    )
    dead_letter_max_count: int = Field(1000, ge=10, le=100_000)
    dead_letter_max_bytes: int = Field(1024 * 1024, ge=10_000, le=64 * 1024 * 1024)

    @model_validator(mode="before")
    @classmethod
    def _legacy_interval(cls, data: Any) -> Any:
        # The window's earlier name, in milliseconds; still accepted from old config files.
        if isinstance(data, dict) and "commit_interval_ms" in data:
            data = dict(data)
            ms = data.pop("commit_interval_ms")
            if "durability_window_s" in data:
                raise ValueError("give durability_window_s or commit_interval_ms, not both")
            data["durability_window_s"] = float(ms) / 1000
        return data

    @property
    def window_s(self) -> float:
        return self.durability_window_s
