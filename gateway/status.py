"""One place that gathers the gateway's figures: for ``hamlet gateway status`` and heartbeats."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gateway.control_protocol import (
    BufferInfo,
    ClockInfo,
    DeadLetterInfo,
    DeadLetters,
    Health,
    SourceInfo,
    StatusSnapshot,
)
from gateway.sources.base import SourceStatus

if TYPE_CHECKING:
    from gateway.app import Gateway

THERMAL_ZONE: Final = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temp_c(path: Path = THERMAL_ZONE) -> float | None:
    try:
        return int(path.read_text(encoding="ascii").strip()) / 1000
    except (OSError, ValueError):
        return None


def disk_free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def counters(gw: Gateway) -> dict[str, int]:
    b = gw.buffer.counters
    p = gw.pipeline.counters
    u = gw.uplink.status
    return {
        "received": p.received,
        "committed": b.committed,
        "uploaded": u.uploaded,
        "dead_lettered": b.dead_lettered,
        "duplicates_recognised": b.duplicates_recognised,
        "refused": b.refused,
        "aggregated": b.aggregated,
        "dropped": b.dropped,
        "lost_corrupt": b.lost_corrupt,
        "corrupt_files": b.corrupt_files,
        "unused": b.unused,
        "file_full": b.file_full,
        "over_budget": b.over_budget,
        "rejected_by_server": u.rejected,
        "commits": b.commits,
        "tail_dropped": gw.tail_dropped,
    }


def health(gw: Gateway) -> dict[str, int]:
    """Dead components and failed sources: 0 everywhere is a healthy gateway."""
    sv = gw.supervision
    return {
        "components_failed": len(sv.failures),
        "sources_failed": sum(1 for s in gw.sources if s.state.status is SourceStatus.FAILED),
        "previous_run_failed": 0 if sv.previous is None else 1,
    }


async def oldest_unsent_age_s(gw: Gateway) -> float | None:
    """Age by the monotonic clock (same boot); wall time is not trusted for this."""
    oldest = await gw.buffer.oldest()
    if oldest is None:
        return None
    _seq, boot, mono_ns, wall_ms = oldest
    if boot == gw.clock.boot_id:
        return max((time.monotonic_ns() - mono_ns) / 1e9, 0.0)
    if gw.clock.synced:
        return max((gw.clock.wall_ms() - wall_ms) / 1000, 0.0)
    return None


async def snapshot(gw: Gateway, recent: int = 20) -> StatusSnapshot:
    stored, by_reason, letters = await gw.buffer.dead_summary(recent)
    sources = [
        SourceInfo(
            name=s.state.name,
            kind=s.state.kind,
            status=s.state.status,
            since=s.state.since,
            last_reading_at=s.state.last_reading_at,
            last_error=s.state.last_error,
            counters=dict(s.state.counters),
            devices={k: dict(v) for k, v in s.state.devices.items()},
        )
        for s in gw.sources
    ]
    return StatusSnapshot(
        gateway=gw.config.id,
        pid=os.getpid(),
        uptime_s=round(time.monotonic() - gw.started_mono, 3),
        clock=ClockInfo(synced=gw.clock.synced, boot_id=gw.clock.boot_id),
        buffer=BufferInfo(
            depth=gw.buffer.depth,
            bytes=await gw.buffer.file_bytes(),
            max_bytes=gw.config.buffer.max_bytes,
            oldest_unsent_age_s=await oldest_unsent_age_s(gw),
            last_seq=gw.buffer.last_seq,
        ),
        uplink=gw.uplink.status.info(),
        counters=counters(gw),
        health=Health.model_validate({**gw.supervision.as_json(), **health(gw)}),
        sources=sources,
        dead_letters=DeadLetters(
            count=stored,
            by_reason=by_reason,
            recent=[DeadLetterInfo.model_validate(d.as_json()) for d in letters],
        ),
        edge=gw.edge.info() if gw.edge is not None else None,
    )
