from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr


class UplinkConfig(BaseModel):
    """HTTPS uplink to the server. Owned by gateway/uplink."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="server base URL, e.g. https://hamlet.example.vn")
    token: SecretStr = Field(
        description="this gateway's bearer token (from 'hamlet server add-gateway')"
    )
    ca_file: Path | None = None
    max_batch_records: int = Field(5000, ge=1, le=100_000)
    backlog_bytes_per_s: int | None = Field(None, ge=100, description="cap for metered links")
    timeout_s: float = Field(30.0, ge=1.0, le=600.0, description="per request")
    backoff_base_s: float = Field(1.0, gt=0, le=60.0)
    backoff_cap_s: float = Field(60.0, ge=0.1, le=3600.0)
    slow_post_s: float = Field(
        10.0, gt=0, description="a post slower than this halves the batch size (slow link)"
    )
    gzip_level: int = Field(6, ge=1, le=9)
