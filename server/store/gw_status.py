"""The latest status report of each gateway (hamlet/status_report.py), for the installer page.

Only the newest is kept (by the gateway's seq, so a report re-sent after an outage never
replaces a later one); the report was validated at ingest (server/classify.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from hamlet.status_report import GatewayReport, ReportError, parse_report
from server.classify import StatusRow


@dataclass(frozen=True, slots=True)
class LatestReport:
    seq: int
    t: int  # the gateway's time of the report, ms
    received_ms: int
    report: GatewayReport


def save(conn: sqlite3.Connection, gw: int, rows: Sequence[StatusRow], now_ms: int) -> None:
    """Keep the newest of ``rows`` unless a newer one is stored (inside the ingest transaction)."""
    if not rows:
        return
    row = max(rows, key=lambda r: r.seq)
    conn.execute(
        "INSERT INTO gw_status(gw, seq, t, received_ms, report) VALUES (?,?,?,?,?) "
        "ON CONFLICT(gw) DO UPDATE SET seq = excluded.seq, t = excluded.t, "
        "received_ms = excluded.received_ms, report = excluded.report "
        "WHERE excluded.seq > gw_status.seq",
        (gw, row.seq, row.t, now_ms, row.report_json),
    )


def latest(conn: sqlite3.Connection, gws: Sequence[int]) -> dict[int, LatestReport]:
    """{gateway num: its latest report} for ``gws`` (those that ever sent one)."""
    out: dict[int, LatestReport] = {}
    for gw in gws:
        r = conn.execute(
            "SELECT seq, t, received_ms, report FROM gw_status WHERE gw = ?", (gw,)
        ).fetchone()
        if r is None:
            continue
        try:
            out[gw] = LatestReport(int(r[0]), int(r[1]), int(r[2]), parse_report(str(r[3])))
        except ReportError:
            continue  # stored by an older release with another report version: none to show
    return out
