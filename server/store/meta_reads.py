"""Reads both backends answer from SQLite: events, latest values, devices, accounting.

InfluxDB holds only the series; the registry, the dedup ledger, events and the latest-value
table stay in SQLite for both backends (docs/server.md says why), so these reads are one
piece of code shared by inheritance.
"""

from __future__ import annotations

import sqlite3

from hamlet.contract import GatewayAccounting
from server.models import DeviceOut, EventOut, LatestValue
from server.registry import GatewayRow
from server.store import ledger
from server.store import sqlite_series as ss
from server.store.common import merge_devices, read_events
from server.store.db import Database


class SqliteMetaReads:
    """Mixin: needs ``self.db``, the store's SQLite :class:`Database`."""

    db: Database

    async def events(
        self,
        hamlet: str,
        *,
        start: int,
        end: int,
        device: str | None = None,
        name: str | None = None,
        limit: int = 10_000,
    ) -> list[EventOut]:
        return await self.db.read(
            read_events, hamlet, start=start, end=end, device=device, name=name, limit=limit
        )

    async def latest(self, hamlets: list[str] | None) -> list[LatestValue]:
        return await self.db.read(ss.read_latest, hamlets)

    async def devices(self, hamlets: list[str] | None) -> list[DeviceOut]:
        def run(conn: sqlite3.Connection) -> list[DeviceOut]:
            return merge_devices(conn, hamlets, ss.read_seen_devices(conn, hamlets))

        return await self.db.read(run)

    async def accounting(self, gateways: list[GatewayRow]) -> list[GatewayAccounting]:
        def run(conn: sqlite3.Connection) -> list[GatewayAccounting]:
            hb = ss.gateway_heartbeats(conn, [(g.id, g.hamlet) for g in gateways])
            return ledger.accounting(conn, gateways, hb)

        return await self.db.read(run)
