"""An in-process alert engine on a real SQLite store, with a clock the test sets.

The clock is the one fake: time-based rules (silences) need "two days later" without waiting
two days. Everything else is the real store, the real engine and real SQLite files.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hamlet.alertrules import AlertSettings
from hamlet.contract import (
    EventRecord,
    Point,
    RecordKind,
    SeriesBlock,
    TimeQuality,
    UplinkBatch,
)
from hamlet.vncalendar import VN_TZ
from server import registry
from server.alerts.engine import AlertEngine
from server.config import ServerConfig
from server.models import DeviceIn
from server.registry import GatewayRow
from server.store.sqlite import SqliteStore
from tests.support.stores import registered_gateway

HAMLET = "dinh-phuoc"
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def vn(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    """Vietnam local time → epoch ms (what a person would compute by hand)."""
    return int(datetime(y, mo, d, h, mi, tzinfo=VN_TZ).timestamp() * 1000)


@dataclass(frozen=True)
class Row:
    rule: str
    device: str
    metric: str
    start: int
    end: int | None
    peak: float
    peak_t: int
    state: str
    message_vi: str
    message_en: str
    id: int = 0
    created: int = 0


@dataclass
class Clock:
    now: int

    def __call__(self) -> int:
        return self.now


@dataclass
class Env:
    store: SqliteStore
    engine: AlertEngine
    clock: Clock
    gw: GatewayRow
    seqs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def device(self, dev: DeviceIn) -> None:
        await self.store.db.write(registry.upsert_device, HAMLET, dev)

    def block(
        self,
        device: str,
        metric: str,
        points: Sequence[tuple[int, float]],
        kind: RecordKind = RecordKind.READING,
    ) -> SeriesBlock:
        pts = [Point(seq=next(self.seqs), t=t, v=v, q=TimeQuality.SYNCED) for t, v in points]
        return SeriesBlock.from_points(device, metric, kind, pts)  # type: ignore[arg-type]

    def event(self, device: str, name: str, t: int) -> EventRecord:
        return EventRecord(seq=next(self.seqs), device=device, name=name, t=t)

    async def send(
        self, series: Sequence[SeriesBlock] = (), events: Sequence[EventRecord] = ()
    ) -> None:
        """Ingest like the route does (store, then the settled hook) at the clock's time."""
        b = UplinkBatch(
            gateway=self.gw.id, sent_at=self.clock.now, series=list(series), events=list(events)
        )
        result = await self.store.ingest(self.gw, b, self.clock.now)
        assert not result.rejected, result.rejected
        await self.engine.submit(self.gw, b, result, self.clock.now)

    async def alerts(self, *, retracted: bool = False) -> list[Row]:
        def run(conn: sqlite3.Connection) -> list[Row]:
            rows = conn.execute(
                "SELECT rule, device, metric, start_ms, end_ms, peak, peak_ms, state, "
                "message_vi, message_en, id, created_ms FROM alerts "
                "ORDER BY rule, device, metric, start_ms, id"
            ).fetchall()
            return [Row(*r) for r in rows if retracted or r[7] == "active"]

        await self.engine.flush()
        return await self.store.db.read(run)


@asynccontextmanager
async def alert_env(
    tmp: Path, settings: AlertSettings | None = None, *, now: int
) -> AsyncIterator[Env]:
    config = ServerConfig.model_validate({"environment": "development", "data_dir": str(tmp)})
    clock = Clock(now)
    async with (
        SqliteStore(config) as store,
        AlertEngine(settings or AlertSettings(), store, clock=clock) as engine,
    ):
        gw = await registered_gateway(store.db, "gw-1", HAMLET)
        yield Env(store, engine, clock, gw)
