"""Helpers for the store-and-forward tests: real SQLite files in tmp dirs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.buffer import NewRecord
from gateway.buffer.config import BufferConfig
from hamlet.contract import RecordKind, TimeQuality

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def reading(
    device: str = "wl-1",
    metric: str = "water_level",
    value: float = 1.25,
    kind: RecordKind = RecordKind.READING,
    wall_ms: int | None = None,
    tq: int = int(TimeQuality.SYNCED),
) -> NewRecord:
    return NewRecord(
        kind=kind,
        device=device,
        metric=metric,
        value=value,
        wall_ms=wall_ms if wall_ms is not None else time.time_ns() // 1_000_000,
        tq=tq,
        mono_ns=time.monotonic_ns(),
    )


def buffer_config(**kw: int) -> BufferConfig:
    base = {"commit_interval_ms": 20, "commit_max_records": 5000}
    base.update(kw)
    return BufferConfig.model_validate(base)


def db_files(data_dir: Path) -> int:
    total = 0
    for name in ("buffer.db", "buffer.db-wal"):
        p = data_dir / name
        if p.exists():
            total += p.stat().st_size
    return total


def gateway_config(
    data_dir: Path, url: str, token: str, gw_id: str = "gw-test", **uplink: object
) -> GatewayConfig:
    from gateway.config import GatewayConfig

    return GatewayConfig.model_validate(
        {
            "id": gw_id,
            "data_dir": str(data_dir),
            "heartbeat_interval_s": 3600,
            "buffer": {"commit_interval_ms": 20},
            "uplink": {
                "url": url,
                "token": token,
                "backoff_base_s": 0.05,
                "backoff_cap_s": 0.5,
                **uplink,
            },
            "clock": {"sync": "always"},
        }
    )


def accounting_for(url: str, gw_id: str) -> dict[str, Any]:
    import httpx

    resp = httpx.get(f"{url}/api/v1/gateways", timeout=10)
    resp.raise_for_status()
    for g in resp.json():
        if g["id"] == gw_id:
            return dict(g)
    raise AssertionError(f"gateway {gw_id} not in {resp.text[:500]}")
