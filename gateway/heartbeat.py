"""The gateway's own heartbeat: its figures as HEARTBEAT readings, through the pipeline.

Device = the gateway id; metrics under ``gw.`` (diagnostics, no physical range applies).
Going through the same pipeline and buffer means a heartbeat is sequenced, survives an
outage and is counted like any reading.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway import status
from gateway.buffer import BufferError
from gateway.records import Reading
from hamlet.contract import RecordKind
from hamlet.metrics import GATEWAY_METRIC_PREFIX
from hamlet.tasks import TaskOwner

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

SOURCE = "heartbeat"


async def readings(gw: Gateway) -> list[Reading]:
    figures: dict[str, float | None] = {
        "uptime_s": round(asyncio.get_running_loop().time() - gw.started_loop, 3),
        "buffer_depth": gw.buffer.depth,
        "buffer_bytes": await gw.buffer.file_bytes(),
        "oldest_unsent_age_s": await status.oldest_unsent_age_s(gw),
        "cpu_temp_c": status.cpu_temp_c(),
        "disk_free_bytes": status.disk_free_bytes(gw.config.data_dir),
        "clock_synced": 1.0 if gw.clock.synced else 0.0,
    }
    figures.update({k: float(v) for k, v in status.counters(gw).items()})
    figures.update({k: float(v) for k, v in status.health(gw).items()})
    return [
        Reading(
            device=gw.config.id,
            metric=f"{GATEWAY_METRIC_PREFIX}{name}",
            value=float(value),
            kind=RecordKind.HEARTBEAT,
            source=SOURCE,
        )
        for name, value in figures.items()
        if value is not None
    ]


class Heartbeat(TaskOwner):
    """Async context manager: one heartbeat at start, then every ``interval_s``."""

    def __init__(self, gw: Gateway, interval_s: float) -> None:
        super().__init__()
        self._gw = gw
        self._interval = interval_s
        self.sent = 0

    def _start(self) -> None:
        self._spawn(self._run(), "heartbeat")

    async def beat(self) -> None:
        """One heartbeat now (also the last word of a gateway whose component died)."""
        try:
            await self._gw.pipeline.submit(await readings(self._gw))
            self.sent += 1
        except BufferError as err:
            log.error("heartbeat: could not commit: %s", err)  # noqa: TRY400 - reason suffices

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._interval)
