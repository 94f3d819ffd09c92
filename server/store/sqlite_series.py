"""Series in SQLite: raw points indexed by (series, time), hourly and daily rollups kept
up to date as data arrives, and the latest value per series.

Synchronous functions on a connection; :class:`server.store.sqlite.SqliteStore` runs them
on the writer / reader threads.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from itertools import chain, repeat
from typing import Final

from hamlet.metrics import METRICS
from server.classify import AcceptedBlock
from server.models import LatestValue, Resolution, SeriesPoint, SeriesResult

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
# Span thresholds for automatic resolution: a phone chart wants a few hundred points.
RAW_MAX_SPAN_MS: Final = 2 * DAY_MS
HOURLY_MAX_SPAN_MS: Final = 92 * DAY_MS

SeriesKey = tuple[str, str, str]  # hamlet, device, metric


def pick_resolution(resolution: Resolution, start: int, end: int) -> Resolution:
    if resolution != Resolution.AUTO:
        return resolution
    span = end - start
    if span <= RAW_MAX_SPAN_MS:
        return Resolution.RAW
    if span <= HOURLY_MAX_SPAN_MS:
        return Resolution.HOUR
    return Resolution.DAY


class SeriesIds:
    """Cache of series ids; ids never change, so a per-process cache is always right."""

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}

    def get(self, conn: sqlite3.Connection, key: SeriesKey, kind: str, gateway: str) -> int:
        sid = self._ids.get(key)
        if sid is None:
            conn.execute(
                "INSERT OR IGNORE INTO series(hamlet, device, metric, kind, gateway) "
                "VALUES (?,?,?,?,?)",
                (*key, kind, gateway),
            )
            sid = int(
                conn.execute(
                    "SELECT id FROM series WHERE hamlet = ? AND device = ? AND metric = ?", key
                ).fetchone()[0]
            )
            self._ids[key] = sid
        return sid


_UPSERT: Final = (
    "INSERT INTO {table}(series, bucket, n, sum, min, max) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT(series, bucket) DO UPDATE SET n = n + excluded.n, sum = sum + excluded.sum, "
    "min = min(min, excluded.min), max = max(max, excluded.max)"
)

Acc = list[float]  # n, sum, min, max


def _fold(into: dict[tuple[int, int], Acc], key: tuple[int, int], part: Acc) -> None:
    cur = into.get(key)
    if cur is None:
        into[key] = part
    else:
        cur[0] += part[0]
        cur[1] += part[1]
        cur[2] = min(cur[2], part[2])
        cur[3] = max(cur[3], part[3])


def _hourly_of_block(sid: int, b: AcceptedBlock, into: dict[tuple[int, int], Acc]) -> None:
    """Fold a block into per-hour aggregates: runs of equal hours are summed by slices,
    so the per-point Python work is one list comprehension."""
    times, vals = b.times, b.vals
    if b.n is not None:  # aggregates: weight by count, bounds from vmin/vmax
        assert b.vmin is not None
        assert b.vmax is not None
        for t, v, lo, hi, n in zip(times, vals, b.vmin, b.vmax, b.n, strict=True):
            _fold(into, (sid, t - t % HOUR_MS), [n, v * n, lo, hi])
        return
    buckets = [t - t % HOUR_MS for t in times]
    start = 0
    size = len(buckets)
    while start < size:
        bucket = buckets[start]
        end = start + 1
        while end < size and buckets[end] == bucket:
            end += 1
        chunk = vals[start:end]
        _fold(into, (sid, bucket), [end - start, sum(chunk), min(chunk), max(chunk)])
        start = end


def write_points(
    conn: sqlite3.Connection,
    ids: SeriesIds,
    *,
    hamlet: str,
    gateway: str,
    gw: int,
    blocks: Iterable[AcceptedBlock],
    now_ms: int,
    day_offset_ms: int,
    raw: bool = True,
    rollups: bool = True,
) -> int:
    """Insert points, fold them into rollups and latest values. Inside a transaction."""
    total = 0
    latest: dict[int, tuple[int, float, int]] = {}
    hourly: dict[tuple[int, int], Acc] = {}
    plain: list[Iterable[tuple[object, ...]]] = []
    for b in blocks:
        sid = ids.get(conn, (hamlet, b.device, b.metric), b.kind, gateway)
        k = len(b.seqs)
        total += k
        tmax = max(b.times)
        i = b.times.index(tmax)
        cur = latest.get(sid)
        if cur is None or tmax >= cur[0]:
            latest[sid] = (tmax, b.vals[i], b.qs[i] if b.qs is not None else 0)
        if rollups:
            _hourly_of_block(sid, b, hourly)
        if not raw:
            continue
        qs = b.qs if b.qs is not None else repeat(0, k)
        if b.vmin is None:
            plain.append(zip(repeat(sid, k), b.times, b.seqs, b.vals, qs, strict=False))
        else:
            conn.executemany(
                "INSERT INTO points(series, t, gw, seq, v, q, vmin, vmax, n) "
                f"VALUES ({int(sid)}, ?, {int(gw)}, ?, ?, ?, ?, ?, ?)",
                zip(
                    b.times,
                    b.seqs,
                    b.vals,
                    qs,
                    b.vmin,
                    b.vmax or repeat(None, k),
                    b.n or repeat(None, k),
                    strict=False,
                ),
            )
    if plain:
        # Plain readings of every block in one statement (a batch may hold 10,000 small
        # blocks); the gateway number is inlined (our own integer).
        conn.executemany(
            f"INSERT INTO points(series, t, gw, seq, v, q) VALUES (?, ?, {int(gw)}, ?, ?, ?)",
            chain.from_iterable(plain),
        )
    if not total:
        return 0
    if rollups:
        daily: dict[tuple[int, int], Acc] = {}
        off = int(day_offset_ms)
        for (sid, hour), (n, sm, lo, hi) in hourly.items():
            # Exact when the offset is whole hours (Vietnam: +7 h); config enforces it.
            _fold(daily, (sid, (hour + off) // DAY_MS * DAY_MS - off), [n, sm, lo, hi])
        conn.executemany(
            _UPSERT.format(table="hourly"), [(s, bk, *a) for (s, bk), a in hourly.items()]
        )
        conn.executemany(
            _UPSERT.format(table="daily"), [(s, bk, *a) for (s, bk), a in daily.items()]
        )
    conn.executemany(
        "INSERT INTO latest(series, t, v, q, received_ms) VALUES (?,?,?,?,?) "
        "ON CONFLICT(series) DO UPDATE SET t = excluded.t, v = excluded.v, q = excluded.q, "
        "received_ms = excluded.received_ms WHERE excluded.t >= latest.t",
        [(sid, *newest, now_ms) for sid, newest in latest.items()],
    )
    return total


def bucket_mean(total: float, n: int, lo: float, hi: float) -> float:
    """The mean of a rollup bucket, always a number within [lo, hi]: a sum that overflowed
    (rows written before values were bounded) must not turn into null in the answer."""
    mean = total / n if n else lo
    if not math.isfinite(mean):
        return hi if mean > 0 else lo
    return min(max(mean, lo), hi)


def _series_id(conn: sqlite3.Connection, key: SeriesKey) -> int | None:
    r = conn.execute(
        "SELECT id FROM series WHERE hamlet = ? AND device = ? AND metric = ?", key
    ).fetchone()
    return int(r[0]) if r else None


def read_series(
    conn: sqlite3.Connection,
    key: SeriesKey,
    *,
    start: int,
    end: int,
    resolution: Resolution,
    limit: int,
) -> SeriesResult:
    res = pick_resolution(resolution, start, end)
    m = METRICS.get(key[2])
    out = SeriesResult(
        hamlet=key[0],
        device=key[1],
        metric=key[2],
        unit=m.unit if m else "",
        resolution=res,
        start=start,
        end=end,
    )
    sid = _series_id(conn, key)
    if sid is None:
        return out
    if res == Resolution.RAW:
        rows = conn.execute(
            "SELECT t, v, vmin, vmax, n, q FROM points WHERE series = ? AND t >= ? AND t < ? "
            "ORDER BY t, gw, seq LIMIT ?",
            (sid, start, end, limit + 1),
        ).fetchall()
        pts = [SeriesPoint(t=r[0], v=r[1], min=r[2], max=r[3], n=r[4] or 1, q=r[5]) for r in rows]
    else:
        table = "hourly" if res == Resolution.HOUR else "daily"
        rows = conn.execute(
            f"SELECT bucket, sum, min, max, n FROM {table} "
            "WHERE series = ? AND bucket >= ? AND bucket < ? ORDER BY bucket LIMIT ?",
            (sid, start, end, limit + 1),
        ).fetchall()
        pts = [
            SeriesPoint(t=r[0], v=bucket_mean(r[1], r[4], r[2], r[3]), min=r[2], max=r[3], n=r[4])
            for r in rows
        ]
    out.truncated = len(pts) > limit
    out.points = pts[:limit]
    return out


def _in_clause(hamlets: list[str] | None) -> tuple[str, list[str]]:
    if hamlets is None:
        return "", []
    if not hamlets:
        return " AND 0", []
    return f" AND s.hamlet IN ({','.join('?' * len(hamlets))})", list(hamlets)


def read_latest(conn: sqlite3.Connection, hamlets: list[str] | None) -> list[LatestValue]:
    where, args = _in_clause(hamlets)
    rows = conn.execute(
        "SELECT s.hamlet, s.device, s.metric, l.t, l.v, l.q FROM latest l "
        f"JOIN series s ON s.id = l.series WHERE 1{where} ORDER BY s.hamlet, s.device, s.metric",
        args,
    ).fetchall()
    out = []
    for h, d, metric, t, v, q in rows:
        m = METRICS.get(metric)
        out.append(
            LatestValue(
                hamlet=h,
                device=d,
                metric=metric,
                t=t,
                v=v,
                q=q,
                unit=m.unit if m else "",
                label_vi=m.vi if m else metric,
                label_en=m.en if m else metric,
            )
        )
    return out


def read_seen_devices(
    conn: sqlite3.Connection, hamlets: list[str] | None
) -> list[tuple[str, str, int | None, list[str]]]:
    """(hamlet, device, last time, metrics) for every device that sent series or events."""
    where, args = _in_clause(hamlets)
    rows = conn.execute(
        "SELECT s.hamlet, s.device, max(l.t), group_concat(s.metric, ' ') FROM series s "
        f"LEFT JOIN latest l ON l.series = s.id WHERE 1{where} GROUP BY s.hamlet, s.device",
        args,
    ).fetchall()
    seen = {(h, d): (t, sorted(ms.split())) for h, d, t, ms in rows}
    ev = conn.execute(
        "SELECT s.hamlet, s.device, max(s.t) FROM events s "
        f"WHERE 1{where} GROUP BY s.hamlet, s.device",
        args,
    ).fetchall()
    for h, d, t in ev:
        last, metrics = seen.get((h, d), (None, []))
        seen[(h, d)] = (max(last or t, t), metrics)
    return [(h, d, t, ms) for (h, d), (t, ms) in sorted(seen.items())]


def gateway_heartbeats(
    conn: sqlite3.Connection, gateways: list[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """Latest ``gw.*`` figures per gateway (its heartbeat series: device == gateway id)."""
    out: dict[str, dict[str, float]] = {}
    for gid, hamlet in gateways:
        rows = conn.execute(
            "SELECT s.metric, l.v FROM series s JOIN latest l ON l.series = s.id "
            "WHERE s.hamlet = ? AND s.device = ? AND s.metric LIKE 'gw.%'",
            (hamlet, gid),
        ).fetchall()
        out[gid] = dict(rows)
    return out


def prune_raw(conn: sqlite3.Connection, before_ms: int) -> int:
    """Delete raw points older than ``before_ms`` (rollups stay). Returns rows deleted."""
    total = 0
    for (sid,) in conn.execute("SELECT id FROM series").fetchall():
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("DELETE FROM points WHERE series = ? AND t < ?", (sid, before_ms))
            total += cur.rowcount
        finally:
            conn.execute("COMMIT")
    return total
