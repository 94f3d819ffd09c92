"""Dedup and loss accounting per gateway, in SQLite whatever the series backend.

Why SQL even when series go to InfluxDB: deciding "is (gateway, seq) new?" and recording the
answer must be one atomic step, and InfluxDB has no transactions or uniqueness; a point
written twice there silently overwrites. So the ledger of settled sequence ranges lives in
a SQL table, updated in the same transaction as (SQLite backend) or right after a confirmed
write of (InfluxDB backend) the series points.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from hamlet.contract import GatewayAccounting, SeqRange
from server.classify import Classified
from server.ranges import Range, RangeSet, holes, merge
from server.registry import GatewayRow

MISSING_RANGES_CAP: Final = 100
_I64_MAX: Final = 2**63 - 1


def load_settled(conn: sqlite3.Connection, gw: int, lo: int, hi: int) -> list[Range]:
    """Settled ranges touching [lo-1, hi+1] (all that can overlap or join the batch).

    Ranges are disjoint and sorted, so only the one starting at or before lo-1 and those
    starting inside the window can touch it: two index seeks, not a scan of the ledger.
    """
    (before,) = conn.execute(
        "SELECT max(first) FROM gw_ranges WHERE gw = ? AND first <= ?", (gw, lo - 1)
    ).fetchone()
    rows = conn.execute(
        "SELECT first, last FROM gw_ranges WHERE gw = ? AND first >= ? AND first <= ? "
        "AND last >= ? ORDER BY first",
        (gw, lo - 1 if before is None else before, hi + 1, lo - 1),
    ).fetchall()
    return [(a, b) for a, b in rows]


def save(
    conn: sqlite3.Connection, gw: int, c: Classified, loaded: list[Range], now_ms: int
) -> None:
    """Record the batch's outcome; call inside the write transaction."""
    fresh = c.all_new_ranges()
    if fresh:
        merged = merge([*loaded, *fresh])
        conn.executemany(
            "DELETE FROM gw_ranges WHERE gw = ? AND first = ?", [(gw, a) for a, _ in loaded]
        )
        conn.executemany(
            "INSERT INTO gw_ranges(gw, first, last) VALUES (?, ?, ?)",
            [(gw, a, b) for a, b in merged],
        )
    settled = len(RangeSet(c.new_ranges)) + sum(c.accounted.values())
    highest = max((b for _, b in fresh), default=0)
    conn.execute(
        "INSERT INTO gw_stats(gw, received, duplicates, rejected, settled, highest, last_seen) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT(gw) DO UPDATE SET "
        "received = received + excluded.received, duplicates = duplicates + excluded.duplicates, "
        "rejected = rejected + excluded.rejected, settled = settled + excluded.settled, "
        "highest = max(highest, excluded.highest), last_seen = excluded.last_seen",
        (gw, c.accepted, c.duplicates, len(c.rejected), settled, highest, now_ms),
    )
    if c.accounted:
        conn.executemany(
            "INSERT INTO gw_accounted(gw, reason, count) VALUES (?,?,?) "
            "ON CONFLICT(gw, reason) DO UPDATE SET count = count + excluded.count",
            [(gw, r, n) for r, n in c.accounted.items()],
        )


def record_rejections(
    conn: sqlite3.Connection, gw: int, c: Classified, now_ms: int, keep: int
) -> None:
    """Keep the newest ``keep`` rejections (all gateways) for inspection."""
    if not c.rejected or keep <= 0:
        return
    conn.executemany(
        "INSERT INTO rejections(gw, seq, reason, at_ms) VALUES (?,?,?,?)",
        # Clamped: a seq SQLite cannot hold is shown at the nearest bound (its reason says).
        [(gw, max(min(s, _I64_MAX), -_I64_MAX), r[:500], now_ms) for s, r in c.rejected[-keep:]],
    )
    conn.execute("DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?", (keep,))


def accounting(
    conn: sqlite3.Connection,
    gateways: list[GatewayRow],
    heartbeats: dict[str, dict[str, float]],
    cap: int = MISSING_RANGES_CAP,
) -> list[GatewayAccounting]:
    out: list[GatewayAccounting] = []
    for g in gateways:
        st = conn.execute(
            "SELECT received, duplicates, rejected, settled, highest, last_seen FROM gw_stats "
            "WHERE gw = ?",
            (g.num,),
        ).fetchone()
        received, dups, rejected, settled, highest, last_seen = st or (0, 0, 0, 0, 0, None)
        accounted = dict(
            conn.execute("SELECT reason, count FROM gw_accounted WHERE gw = ?", (g.num,)).fetchall()
        )
        missing_ranges: list[SeqRange] = []
        if highest > settled:
            # Only as many range rows as there are holes to list: cheap at any volume.
            rows = conn.execute(
                "SELECT first, last FROM gw_ranges WHERE gw = ? ORDER BY first LIMIT ?",
                (g.num, cap + 1),
            ).fetchall()
            missing_ranges = [SeqRange(first=a, last=b) for a, b in holes(rows, highest, cap)]
        out.append(
            GatewayAccounting(
                id=g.id,
                hamlet=g.hamlet,
                last_seen=last_seen,
                received=received,
                duplicates=dups,
                rejected=rejected,
                accounted=accounted,
                missing=highest - settled,
                missing_ranges=missing_ranges,
                highest_seq=highest,
                last_heartbeat=heartbeats.get(g.id, {}),
            )
        )
    return out


def rejections(conn: sqlite3.Connection, gw: int, limit: int) -> list[tuple[int, str, int]]:
    """Newest rejections of one gateway: (seq, reason, server time ms)."""
    rows = conn.execute(
        "SELECT seq, reason, at_ms FROM rejections WHERE gw = ? ORDER BY id DESC LIMIT ?",
        (gw, limit),
    ).fetchall()
    return [(s, r, t) for s, r, t in rows]
