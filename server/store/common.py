"""Pieces both backends share: the registry/ledger side that always lives in SQLite."""

from __future__ import annotations

import json
import sqlite3

from server.models import DeviceOut, EventOut
from server.registry import registered_devices


def merge_devices(
    conn: sqlite3.Connection,
    hamlets: list[str] | None,
    seen: list[tuple[str, str, int | None, list[str]]],
) -> list[DeviceOut]:
    """Registered devices, annotated with what they sent, plus unconfirmed senders."""
    reg = {(d.hamlet, d.id): d for d in registered_devices(conn, hamlets)}
    for hamlet, dev, last, metrics in seen:
        d = reg.get((hamlet, dev))
        if d is None:
            reg[(hamlet, dev)] = DeviceOut(
                hamlet=hamlet, id=dev, confirmed=False, last_seen=last, metrics=metrics
            )
        else:
            d.last_seen = last
            d.metrics = metrics
    return [reg[k] for k in sorted(reg)]


def read_events(
    conn: sqlite3.Connection,
    hamlet: str,
    *,
    start: int,
    end: int,
    device: str | None = None,
    name: str | None = None,
    limit: int = 10_000,
) -> list[EventOut]:
    """Events (kiosk sessions, dossiers, ratings, alerts) of a hamlet in [start, end)."""
    sql = "SELECT device, kind, name, t, q, attrs FROM events WHERE hamlet = ? AND t >= ? AND t < ?"
    args: list[object] = [hamlet, start, end]
    if device is not None:
        sql += " AND device = ?"
        args.append(device)
    if name is not None:
        sql += " AND name = ?"
        args.append(name)
    sql += " ORDER BY t, gw, seq LIMIT ?"
    args.append(limit)
    return [
        EventOut(device=d, kind=k, name=n, t=t, q=q, attrs=json.loads(a))
        for d, k, n, t, q, a in conn.execute(sql, args).fetchall()
    ]
