"""The embedded default store: everything in one SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from types import TracebackType
from typing import Self

from hamlet.contract import IngestResult, Rejection, UplinkBatch
from server.classify import Classified, classify, seq_bounds
from server.config import ServerConfig
from server.models import Resolution, SeriesResult
from server.ranges import RangeSet
from server.registry import GatewayRow
from server.store import ledger
from server.store import sqlite_series as ss
from server.store.base import StoreError
from server.store.db import Database
from server.store.meta_reads import SqliteMetaReads

log = logging.getLogger("hamlet.server.store")


def result_of(c: Classified) -> IngestResult:
    return IngestResult(
        accepted=c.accepted,
        duplicates=c.duplicates,
        rejected=[Rejection(seq=s, reason=r) for s, r in c.rejected],
    )


def insert_events(conn: sqlite3.Connection, hamlet: str, gw: int, c: Classified) -> None:
    if c.events:
        conn.executemany(
            "INSERT INTO events(gw, seq, hamlet, device, kind, name, t, q, attrs) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (gw, e.seq, hamlet, e.device, e.kind, e.name, e.t, e.q, e.attrs_json)
                for e in c.events
            ],
        )


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
            bounds = seq_bounds(batch)
            loaded = ledger.load_settled(conn, gateway.num, *bounds) if bounds else []
            c = classify(batch, RangeSet(loaded), now_ms)
            ss.write_points(
                conn,
                self._ids,
                hamlet=gateway.hamlet,
                gateway=gateway.id,
                gw=gateway.num,
                blocks=c.blocks,
                now_ms=now_ms,
                day_offset_ms=self._day_offset_ms,
            )
            insert_events(conn, gateway.hamlet, gateway.num, c)
            ledger.save(conn, gateway.num, c, loaded, now_ms)
            ledger.record_rejections(
                conn, gateway.num, c, now_ms, self.config.ingest.keep_rejections
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

    async def ping(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT count(*) FROM meta").fetchone()

        try:
            await self.db.read(run)
        except sqlite3.Error as err:
            raise StoreError(f"SQLite does not answer: {err}") from err
