from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BufferConfig(BaseModel):
    """Durable SQLite buffer. Owned by gateway/buffer."""

    model_config = ConfigDict(extra="forbid")

    commit_interval_ms: int = Field(200, ge=1, le=5000, description="group-commit window")
    commit_max_records: int = Field(2000, ge=1, le=100_000)
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024, description="hard byte budget")
