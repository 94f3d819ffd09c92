"""The embedded default store: everything in one SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from types import TracebackType
from typing import Self

from hamlet.contract import IngestResult, UplinkBatch
from server.config import ServerConfig
from server.indicators.source import AboveRow, HourRow, Levels, hourly_rows, hours_above_sql
from server.models import Resolution, SeriesResult
from server.registry import GatewayRow
from server.store import sqlite_series as ss
from server.store.base import StoreError
from server.store.db import Database
from server.store.meta_reads import SqliteMetaReads
from server.store.settle import result_of, settle_batch

log = logging.getLogger("hamlet.server.store")


class SqliteStore(SqliteMetaReads):
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        sc = config.store.sqlite
        self.db = Database(
            config.ledger_path, readers=sc.readers, busy_timeout_ms=sc.busy_timeout_ms
        )
        self._ids = ss.SeriesIds()
        self._day_offset_ms = sc.day_offset_minutes * 60_000

    async def __aenter__(self) -> Self:
        await self.db.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.db.__aexit__(et, e, tb)

    # --- writes -------------------------------------------------------------------------

    def _ingest_tx(
        self, conn: sqlite3.Connection, gateway: GatewayRow, batch: UplinkBatch, now_ms: int
    ) -> IngestResult:
        """One batch, inside the writer's shared transaction (its own savepoint)."""
        try:
            c = settle_batch(
                conn,
                self._ids,
                gateway,
                batch,
                now_ms,
                day_offset_ms=self._day_offset_ms,
                keep_rejections=self.config.ingest.keep_rejections,
                max_unregistered=self.config.ingest.max_unregistered_devices,
            )
        except BaseException:
            # Series ids created in the rolled-back savepoint no longer exist.
            self._ids = ss.SeriesIds()
            raise
        return result_of(c)

    async def ingest(self, gateway: GatewayRow, batch: UplinkBatch, now_ms: int) -> IngestResult:
        try:
            return await self.db.write_grouped(self._ingest_tx, gateway, batch, now_ms)
        except sqlite3.Error as err:
            self._ids = ss.SeriesIds()
            raise StoreError(f"SQLite write failed: {err}") from err

    async def prune(self, before_ms: int) -> int:
        return await self.db.write(ss.prune_raw, before_ms)

    # --- reads --------------------------------------------------------------------------

    async def series(
        self,
        hamlet: str,
        device: str,
        metric: str,
        *,
        start: int,
        end: int,
        resolution: Resolution = Resolution.AUTO,
        limit: int = 10_000,
    ) -> SeriesResult:
        return await self.db.read(
            ss.read_series,
            (hamlet, device, metric),
            start=start,
            end=end,
            resolution=resolution,
            limit=limit,
        )

    async def hourly_rollups(
        self,
        hamlets: list[str],
        metrics: list[str],
        *,
        start: int,
        end: int,
        flat_only: bool = False,
    ) -> list[HourRow]:
        return await self.db.read(hourly_rows, hamlets, metrics, start, end, flat_only=flat_only)

    async def hours_above(
        self, metric: str, levels: Levels, *, start: int, end: int, strict: bool
    ) -> list[AboveRow]:
        return await self.db.read(hours_above_sql, metric, levels, start, end, strict)

    async def ping(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT count(*) FROM meta").fetchone()

        try:
            await self.db.read(run)
        except sqlite3.Error as err:
            raise StoreError(f"SQLite does not answer: {err}") from err
