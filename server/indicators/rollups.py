"""Indicator rollups folded in as a batch is settled (both backends keep them in SQLite).

- ``presence``: per device and hour, a 60-bit mask of the minutes it was heard; OR-ing masks
  is idempotent and commutative, so duplicates and arrival order cannot change a result.
  ``presence_day`` keeps the count of such minutes per local day, maintained exactly from the
  bits a batch newly sets, so a month's report reads ~30 rows per device, not 744.
- ``delay_day``: the measurement -> arrival delay histogram per gateway and measured day.
- ``quality_hour``: data-quality faults per device and hour (out-of-range values rejected).

Readings whose time was never synchronised (``TimeQuality.UNSYNCED``) are counted, not
placed in time: they fill no minute (docs/indicators.md).
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from enum import IntEnum
from typing import Final

from hamlet.contract import RecordKind, TimeQuality, UplinkBatch
from server.classify import Classified

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
# Vietnam has kept UTC+7 without daylight saving since 1975: a local day is a fixed offset.
VN_OFFSET_H: Final = 7
# Upper edges (seconds) of the delay histogram bins; the last bin is everything beyond.
DELAY_EDGES_S: Final = (
    1,
    2,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    21600,
    43200,
    86400,
    172800,
    259200,
    604800,
)
_DELAY_EDGES_MS: Final = tuple(e * 1000 for e in DELAY_EDGES_S)
_UNSYNCED: Final = int(TimeQuality.UNSYNCED)
OUT_OF_RANGE: Final = "out_of_range"
UNSYNCED_KIND: Final = "unsynced"
_LOOKUP_CHUNK: Final = 300  # keys per presence lookup (3 parameters each)


class What(IntEnum):
    """What a presence mask records."""

    DATA = 0  # readings and aggregates, by measurement time
    ALIVE = 1  # any record (heartbeats, events too), by measurement time
    UPLINK = 2  # a batch from the gateway arrived, by arrival time


def local_day_of_hour(hour: int) -> int:
    """Days since 1970-01-01 (local) of the Vietnamese day an epoch hour falls in."""
    return (hour + VN_OFFSET_H) // 24


def delay_bin(delay_ms: int) -> int:
    return bisect_left(_DELAY_EDGES_MS, delay_ms)


MaskKey = tuple[str, int, int]  # device, what, hour


def _hour_masks(minutes: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for m in minutes:
        h, bit = divmod(m, 60)
        out[h] = out.get(h, 0) | 1 << bit
    return out


def _mark(into: dict[MaskKey, int], device: str, what: What, hours: dict[int, int]) -> None:
    w = int(what)
    for h, mask in hours.items():
        key = (device, w, h)
        into[key] = into.get(key, 0) | mask


def _is_offline_status(name: str, attrs_json: str) -> bool:
    if name != "status":
        return False
    try:
        attrs = json.loads(attrs_json)
    except ValueError:
        return False
    return isinstance(attrs, dict) and attrs.get("state") == "offline"


def _out_of_range(batch: UplinkBatch, c: Classified) -> Counter[tuple[str, int]]:
    """(device, hour) of readings rejected as physically impossible."""
    bad = {seq for seq, reason in c.rejected if "outside the possible range" in reason}
    out: Counter[tuple[str, int]] = Counter()
    if not bad:
        return out
    for b in batch.series:
        for p in b.points():
            if p.seq in bad and p.q != TimeQuality.UNSYNCED:
                out[(b.device, p.t // HOUR_MS)] += 1
    return out


def _count_delays(into: Counter[tuple[int, int]], times: list[int], now_ms: int) -> None:
    lo, hi = min(times), max(times)
    first = (local_day_of_hour(lo // HOUR_MS), delay_bin(max(0, now_ms - hi)))
    if first == (local_day_of_hour(hi // HOUR_MS), delay_bin(max(0, now_ms - lo))):
        into[first] += len(times)  # a live block: one day, one bin (most batches)
        return
    into.update((local_day_of_hour(t // HOUR_MS), delay_bin(max(0, now_ms - t))) for t in times)


def fold(
    conn: sqlite3.Connection,
    hamlet: str,
    gateway: str,
    batch: UplinkBatch,
    c: Classified,
    *,
    now_ms: int,
) -> None:
    """Fold one settled batch into the indicator rollups. Inside the caller's transaction."""
    masks: dict[MaskKey, int] = {}
    delays: Counter[tuple[int, int]] = Counter()
    unsynced: Counter[tuple[str, int]] = Counter()
    now_hour = now_ms // HOUR_MS
    for b in c.blocks:
        qs = b.qs
        if qs is not None and _UNSYNCED in qs:
            times = [t for t, q in zip(b.times, qs, strict=True) if q != _UNSYNCED]
            unsynced[(b.device, now_hour)] += len(b.times) - len(times)
        else:
            times = b.times
        if not times:
            continue
        hours = _hour_masks({t // MINUTE_MS for t in times})
        _mark(masks, b.device, What.ALIVE, hours)
        if b.kind in (RecordKind.READING, RecordKind.AGGREGATE):
            _mark(masks, b.device, What.DATA, hours)
        _count_delays(delays, times, now_ms)
    for e in c.events:
        if e.q == _UNSYNCED:
            unsynced[(e.device, now_hour)] += 1
            continue
        delays[(local_day_of_hour(e.t // HOUR_MS), delay_bin(max(0, now_ms - e.t)))] += 1
        if not _is_offline_status(e.name, e.attrs_json):
            _mark(masks, e.device, What.ALIVE, _hour_masks((e.t // MINUTE_MS,)))
    if c.accepted or c.duplicates or c.rejected:
        _mark(masks, gateway, What.UPLINK, _hour_masks((now_ms // MINUTE_MS,)))
    _write_masks(conn, hamlet, masks)
    if delays:
        conn.executemany(
            "INSERT INTO delay_day(hamlet, gateway, day, bin, n) VALUES (?,?,?,?,?) "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n",
            [(hamlet, gateway, d, b, n) for (d, b), n in delays.items()],
        )
    quality = [
        (hamlet, dev, OUT_OF_RANGE, hour, n) for (dev, hour), n in _out_of_range(batch, c).items()
    ]
    quality += [(hamlet, dev, UNSYNCED_KIND, hour, n) for (dev, hour), n in unsynced.items()]
    if quality:
        conn.executemany(
            "INSERT INTO quality_hour(hamlet, device, kind, hour, n) VALUES (?,?,?,?,?) "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n",
            quality,
        )


def _write_masks(conn: sqlite3.Connection, hamlet: str, masks: dict[MaskKey, int]) -> None:
    """OR the masks in, and add the newly set minutes to the per-day counts."""
    if not masks:
        return
    days: Counter[tuple[str, int, int]] = Counter()
    updates: list[tuple[str, str, int, int, int]] = []
    keys = list(masks)
    known: dict[MaskKey, int] = {}
    for i in range(0, len(keys), _LOOKUP_CHUNK):
        part = keys[i : i + _LOOKUP_CHUNK]
        # One statement per chunk: a primary-key probe per key, without a round trip each.
        rows = conn.execute(
            f"WITH k(d, w, h) AS (VALUES {','.join(['(?,?,?)'] * len(part))}) "
            "SELECT p.device, p.what, p.hour, p.mask FROM k CROSS JOIN presence p "
            "ON p.hamlet = ? AND p.device = k.d AND p.what = k.w AND p.hour = k.h",
            [*(x for k in part for x in k), hamlet],
        ).fetchall()
        known.update({(d, w, h): m for d, w, h, m in rows})
    for key, add in masks.items():
        device, what, hour = key
        old = known.get(key, 0)
        new_bits = add & ~old
        if not new_bits:
            continue
        updates.append((hamlet, device, what, hour, old | add))
        days[(device, what, local_day_of_hour(hour))] += new_bits.bit_count()
    conn.executemany(
        "INSERT INTO presence(hamlet, device, what, hour, mask) VALUES (?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET mask = excluded.mask",
        updates,
    )
    conn.executemany(
        "INSERT INTO presence_day(hamlet, device, what, day, minutes) VALUES (?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET minutes = minutes + excluded.minutes",
        [(hamlet, d, w, day, n) for (d, w, day), n in days.items()],
    )
