"""Settle one batch against the dedup ledger: the part of ingest both backends share.

Classify every record (duplicate / rejected / accepted) against the gateway's settled seq
ranges, write what SQLite keeps (points and rollups for the SQLite backend; only the latest
values for InfluxDB), events, the ledger and the rejections. Runs inside the caller's
transaction or savepoint.
"""

from __future__ import annotations

import sqlite3

from hamlet.contract import IngestResult, Rejection, UplinkBatch
from server.classify import Classified, classify, seq_bounds
from server.indicators import rollups as indicator_rollups
from server.ranges import Range, RangeSet
from server.registry import GatewayRow
from server.store import ledger
from server.store import sqlite_series as ss


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


def classify_batch(
    conn: sqlite3.Connection, gateway: GatewayRow, batch: UplinkBatch, now_ms: int
) -> tuple[Classified, list[Range]]:
    """The batch classified against the ledger ranges it touches (and those ranges)."""
    bounds = seq_bounds(batch)
    loaded = ledger.load_settled(conn, gateway.num, *bounds) if bounds else []
    return classify(batch, RangeSet(loaded), now_ms), loaded


def settle_batch(
    conn: sqlite3.Connection,
    ids: ss.SeriesIds,
    gateway: GatewayRow,
    batch: UplinkBatch,
    now_ms: int,
    *,
    day_offset_ms: int,
    keep_rejections: int,
    raw: bool = True,
    rollups: bool = True,
) -> Classified:
    c, loaded = classify_batch(conn, gateway, batch, now_ms)
    ss.write_points(
        conn,
        ids,
        hamlet=gateway.hamlet,
        gateway=gateway.id,
        gw=gateway.num,
        blocks=c.blocks,
        now_ms=now_ms,
        day_offset_ms=day_offset_ms,
        raw=raw,
        rollups=rollups,
    )
    insert_events(conn, gateway.hamlet, gateway.num, c)
    indicator_rollups.fold(conn, gateway.hamlet, gateway.id, batch, c, now_ms=now_ms)
    ledger.save(conn, gateway.num, c, loaded, now_ms)
    ledger.record_rejections(conn, gateway.num, c, now_ms, keep_rejections)
    return c
