from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BufferConfig(BaseModel):
    """Durable SQLite buffer. Owned by gateway/buffer."""

    model_config = ConfigDict(extra="forbid")

    commit_interval_ms: int = Field(200, ge=1, le=5000, description="group-commit window")
    commit_max_records: int = Field(2000, ge=1, le=100_000)
    commit_min_group: int = Field(
        200,
        ge=1,
        le=100_000,
        description="a group this big is committed after commit_min_interval_ms already",
    )
    commit_min_interval_ms: int = Field(10, ge=0, le=5000)
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
