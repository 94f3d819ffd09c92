"""Settle one batch against the dedup ledger: the part of ingest both backends share.

Classify every record (duplicate / rejected / accepted) against the gateway's settled seq
ranges, write what SQLite keeps (points and rollups for the SQLite backend; only the latest
values for InfluxDB), events, the ledger and the rejections. Runs inside the caller's
transaction or savepoint.
"""

from __future__ import annotations

import logging
import sqlite3

from hamlet.contract import IngestResult, Rejection, UplinkBatch
from server.classify import Classified, DeviceGate, classify, seq_bounds
from server.indicators import rollups as indicator_rollups
from server.ranges import Range, RangeSet
from server.registry import GatewayRow
from server.store import gw_status, ledger
from server.store import sqlite_series as ss

log = logging.getLogger("hamlet.server.ingest")


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


def device_gate(conn: sqlite3.Connection, gateway: GatewayRow, cap: int) -> DeviceGate:
    """Registered devices of the gateway's hamlet, its own id (heartbeats) and the devices it
    has sent before; how many of those are unregistered."""
    registered = {
        r[0] for r in conn.execute("SELECT id FROM devices WHERE hamlet = ?", (gateway.hamlet,))
    }
    registered.add(gateway.id)
    seen = {
        r[0] for r in conn.execute("SELECT device FROM gw_devices WHERE gw = ?", (gateway.num,))
    }
    return DeviceGate(known=registered | seen, unregistered=len(seen - registered), cap=cap)


def classify_batch(
    conn: sqlite3.Connection,
    gateway: GatewayRow,
    batch: UplinkBatch,
    now_ms: int,
    *,
    max_unregistered: int | None = None,
) -> tuple[Classified, list[Range], DeviceGate | None]:
    """The batch classified against the ledger ranges it touches (and those ranges)."""
    bounds = seq_bounds(batch)
    loaded = ledger.load_settled(conn, gateway.num, *bounds) if bounds else []
    gate = device_gate(conn, gateway, max_unregistered) if max_unregistered is not None else None
    return classify(batch, RangeSet(loaded), now_ms, devices=gate), loaded, gate


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
    max_unregistered: int | None = None,
) -> Classified:
    c, loaded, gate = classify_batch(
        conn, gateway, batch, now_ms, max_unregistered=max_unregistered
    )
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
    gw_status.save(conn, gateway.num, c.statuses, now_ms)
    indicator_rollups.fold(conn, gateway.hamlet, gateway.id, batch, c, now_ms=now_ms)
    ledger.save(conn, gateway.num, c, loaded, now_ms)
    ledger.record_rejections(conn, gateway.num, c, now_ms, keep_rejections)
    if gate is not None and gate.new:
        conn.executemany(
            "INSERT OR IGNORE INTO gw_devices(gw, device) VALUES (?, ?)",
            [(gateway.num, d) for d in gate.new],
        )
    if gate is not None and gate.refused:
        log.warning(
            "gateway %s: records of %d unregistered devices rejected (cap %d), e.g. %s",
            gateway.id,
            len(gate.refused),
            gate.cap,
            sorted(gate.refused)[0],
        )
    return c
