"""Reading what indicators rest on from the SQLite side both backends share.

Registry, events and the indicator rollups (:mod:`server.indicators.rollups`) live in the
SQLite database whichever series backend runs; only hourly series rollups come from the
store itself (:class:`HourRow`, via ``Store.hourly_rollups``). Plain synchronous functions
on a connection, run on the database's reader threads.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import time

from hamlet.vncalendar import ServiceHours
from server.indicators.rollups import HOUR_MS, OUT_OF_RANGE, UNSYNCED_KIND, VN_OFFSET_H, What
from server.models import DeviceKind, DeviceOut


@dataclass(frozen=True, slots=True)
class HourRow:
    """One hour of one series from the store's hourly rollup."""

    hamlet: str
    device: str
    metric: str
    hour_ms: int
    n: int
    mean: float
    min: float
    max: float


@dataclass(slots=True)
class Scope:
    """The hamlets a report covers, their commune, devices and gateways."""

    commune: str | None
    hamlets: list[str]
    devices: list[DeviceOut]
    gateways: dict[str, str] = field(default_factory=dict)  # gateway id -> hamlet


class ScopeError(LookupError):
    """No such commune or hamlet; the message says how to list them."""


def _in(values: list[str]) -> str:
    return ",".join("?" * len(values))


def scope_of(conn: sqlite3.Connection, *, commune: str | None, hamlet: str | None) -> Scope:
    if hamlet is not None:
        row = conn.execute("SELECT commune FROM hamlets WHERE id = ?", (hamlet,)).fetchone()
        if row is None:
            raise ScopeError(f"no hamlet {hamlet!r}; list them with GET /api/v1/hamlets")
        hamlets, commune = [hamlet], row[0]
    elif commune is not None:
        hamlets = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM hamlets WHERE commune = ? ORDER BY id", (commune,)
            ).fetchall()
        ]
        if (
            not hamlets
            and not conn.execute("SELECT 1 FROM communes WHERE id = ?", (commune,)).fetchone()
        ):
            raise ScopeError(
                f"no commune {commune!r}; add hamlets to it with "
                "'hamlet server add-hamlet HAMLET --commune COMMUNE'"
            )
    else:
        raise ScopeError("name a commune or a hamlet")
    devices = [
        DeviceOut(
            hamlet=r[0],
            id=r[1],
            confirmed=True,
            kind=DeviceKind(r[2]),
            crop=r[3],
            service_hours=r[4],
            expected_interval_s=r[5],
        )
        for r in conn.execute(
            "SELECT hamlet, id, kind, crop, service_hours, expected_interval_s FROM devices "
            f"WHERE hamlet IN ({_in(hamlets)}) ORDER BY hamlet, id",
            hamlets,
        ).fetchall()
    ]
    gws = conn.execute(
        f"SELECT id, hamlet FROM gateways WHERE hamlet IN ({_in(hamlets)}) ORDER BY id", hamlets
    ).fetchall()
    return Scope(commune, hamlets, devices, dict(gws))


DeviceKey = tuple[str, str]  # hamlet, device


def presence_days(  # noqa: PLR0917 -- run through Database.read, which passes positionally
    conn: sqlite3.Connection,
    hamlets: list[str],
    what: What,
    day0: int,
    day1: int,
    daily: bool = True,
) -> dict[DeviceKey, dict[int, int]]:
    """Minutes heard per device and local day (days since 1970-01-01) in [day0, day1);
    ``daily=False``: the period's total, under ``day0``."""
    out: dict[DeviceKey, dict[int, int]] = defaultdict(dict)
    day = "day" if daily else f"{int(day0)}"
    rows = conn.execute(
        f"SELECT hamlet, device, {day}, sum(minutes) FROM presence_day "
        f"WHERE hamlet IN ({_in(hamlets)}) AND what = ? AND day >= ? AND day < ? "
        "GROUP BY 1, 2, 3",
        [*hamlets, int(what), day0, day1],
    ).fetchall()
    for h, d, dn, n in rows:
        out[(h, d)][dn] = n
    return out


def _pairs_cte(pairs: Sequence[DeviceKey]) -> tuple[str, list[str]]:
    """A CTE ``k(h, d)`` of (hamlet, device) pairs, for one indexed join instead of a query
    per device."""
    return (
        f"WITH k(h, d) AS (VALUES {','.join(['(?,?)'] * len(pairs))}) ",
        [x for p in pairs for x in p],
    )


def presence_masks_of(  # noqa: PLR0917 -- run through Database.read, which passes positionally
    conn: sqlite3.Connection,
    pairs: Sequence[DeviceKey],
    what: What,
    hour0: int,
    hour1: int,
    hours_of_day: frozenset[int] | None = None,
) -> dict[DeviceKey, dict[int, int]]:
    """Minute masks per device and epoch hour in [hour0, hour1), only of the local hours of
    day in ``hours_of_day`` when given (a kiosk's nights are never asked about)."""
    out: dict[DeviceKey, dict[int, int]] = {p: {} for p in pairs}
    only = ""
    if hours_of_day is not None and len(hours_of_day) < 24:
        only = f" AND (p.hour + {VN_OFFSET_H}) % 24 IN ({','.join(map(str, sorted(hours_of_day)))})"
    for i in range(0, len(pairs), 400):
        cte, args = _pairs_cte(pairs[i : i + 400])
        for h, d, hour, mask in conn.execute(
            f"{cte}SELECT p.hamlet, p.device, p.hour, p.mask FROM k CROSS JOIN presence p "
            "ON p.hamlet = k.h AND p.device = k.d AND p.what = ? AND p.hour >= ? "
            f"AND p.hour < ?{only}",
            [*args, int(what), hour0, hour1],
        ).fetchall():
            out[(h, d)][hour] = mask
    return out


def hours_of_day(sh: ServiceHours) -> frozenset[int]:
    """Local hours of day a service window touches, and the hour before each (grace)."""
    out: set[int] = set()
    for wins in sh.by_weekday.values():
        for w in wins:
            first = w.start.hour
            end_min = 24 * 60 if w.end == time.max else w.end.hour * 60 + w.end.minute
            last = (end_min - 1) // 60
            out.update(range(first - 1 if first else 0, last + 1))
            if not first:
                out.add(23)  # a window from midnight: grace reaches into the day before
    return frozenset(out)


def _day_sql() -> str:
    return f"(t / {HOUR_MS} + {VN_OFFSET_H}) / 24"


EventCounts = list[tuple[str, str, int, str, object, object, int]]
"""hamlet, device, local day, event name, channel or scale, score, count."""


def service_events(
    conn: sqlite3.Connection,
    devices: Sequence[tuple[str, str, DeviceKind | None]],
    start: int,
    end: int,
) -> tuple[EventCounts, dict[DeviceKey, list[int]]]:
    """Dossier and rating counts per device and day (kiosks, hotspots), and broadcast times
    (radios): an index range per device, as events are indexed by hamlet, device, time."""
    counts: EventCounts = []
    casts: dict[DeviceKey, list[int]] = defaultdict(list)
    radios = [(h, d) for h, d, kind in devices if kind == DeviceKind.RADIO]
    others = [(h, d) for h, d, kind in devices if kind != DeviceKind.RADIO]
    for i in range(0, len(radios), 400):
        cte, args = _pairs_cte(radios[i : i + 400])
        for h, d, t in conn.execute(
            f"{cte}SELECT e.hamlet, e.device, e.t FROM k CROSS JOIN events e "
            "ON e.hamlet = k.h AND e.device = k.d AND e.t >= ? AND e.t < ? "
            "WHERE e.q != 2 AND e.name = 'broadcast' ORDER BY e.t",
            [*args, start, end],
        ).fetchall():
            casts[(h, d)].append(t)
    for i in range(0, len(others), 400):
        cte, args = _pairs_cte(others[i : i + 400])
        for h, d, name, day, a, b, n in conn.execute(
            f"{cte}SELECT e.hamlet, e.device, e.name, (e.t / {HOUR_MS} + {VN_OFFSET_H}) / 24, "
            "CASE e.name WHEN 'dossier_submitted' THEN json_extract(e.attrs, '$.channel') "
            "ELSE json_extract(e.attrs, '$.scale') END, json_extract(e.attrs, '$.score'), "
            "count(*) FROM k CROSS JOIN events e ON e.hamlet = k.h AND e.device = k.d "
            "AND e.t >= ? AND e.t < ? WHERE e.q != 2 "
            "AND e.name IN ('dossier_submitted', 'rating') GROUP BY 1, 2, 3, 4, 5, 6",
            [*args, start, end],
        ).fetchall():
            counts.append((h, d, day, name, a, b, n))
    return counts, casts


def delays(
    conn: sqlite3.Connection, hamlets: list[str], day0: int, day1: int
) -> list[tuple[str, str, int, int, int]]:
    """(hamlet, gateway, day, bin, count) of the delay histogram."""
    return conn.execute(
        f"SELECT hamlet, gateway, day, bin, n FROM delay_day WHERE hamlet IN ({_in(hamlets)}) "
        "AND day >= ? AND day < ?",
        [*hamlets, day0, day1],
    ).fetchall()


def quality(
    conn: sqlite3.Connection, hamlets: list[str], kind: str, hour0: int, hour1: int
) -> list[tuple[str, str, int, int]]:
    """(hamlet, device, hour, count) of a data-quality fault kind."""
    return conn.execute(
        f"SELECT hamlet, device, hour, n FROM quality_hour WHERE hamlet IN ({_in(hamlets)}) "
        "AND kind = ? AND hour >= ? AND hour < ?",
        [*hamlets, kind, hour0, hour1],
    ).fetchall()


def hourly_rows(
    conn: sqlite3.Connection,
    hamlets: list[str],
    metrics: list[str],
    start: int,
    end: int,
    *,
    flat_only: bool = False,
) -> list[HourRow]:
    """The SQLite backend's hourly rollups (``hourly`` table) for these hamlets and metrics."""
    if not hamlets or not metrics:
        return []
    # Flat hours come from the partial index that holds only them (schema.py).
    flat = " AND h.min = h.max AND h.n > 1" if flat_only else ""
    via = " INDEXED BY hourly_flat" if flat_only else ""
    rows = conn.execute(
        "SELECT s.hamlet, s.device, s.metric, h.bucket, h.n, h.sum, h.min, h.max "
        f"FROM series s JOIN hourly h{via} ON h.series = s.id "
        f"WHERE s.hamlet IN ({_in(hamlets)}) "
        f"AND s.metric IN ({_in(metrics)}) AND h.bucket >= ? AND h.bucket < ?{flat}",
        [*hamlets, *metrics, start, end],
    ).fetchall()
    return [HourRow(h, d, m, b, n, sm / n, lo, hi) for h, d, m, b, n, sm, lo, hi in rows if n]


Levels = dict[DeviceKey, tuple[float, ...]]
AboveRow = tuple[str, str, int, tuple[int, ...], int]
"""hamlet, device, local day, hours above each level, readings that day."""


def series_devices(conn: sqlite3.Connection, hamlets: list[str], metric: str) -> list[DeviceKey]:
    """Devices that ever sent ``metric`` (the series table is kept for both backends)."""
    return [
        (h, d)
        for h, d in conn.execute(
            f"SELECT hamlet, device FROM series WHERE hamlet IN ({_in(hamlets)}) AND metric = ?",
            [*hamlets, metric],
        ).fetchall()
    ]


def hours_above_sql(  # noqa: PLR0917 -- run through Database.read, which passes positionally
    conn: sqlite3.Connection, metric: str, levels: Levels, start: int, end: int, strict: bool
) -> list[AboveRow]:
    """Per device and local day, hours whose mean is above (``strict``) or at/above each of
    the device's levels, counted inside SQLite; and the readings behind them.

    The daily rollup is read first: an hour's mean never exceeds its day's maximum, so only
    days whose maximum reaches the lowest level are looked at hour by hour (in a normal
    month, none)."""
    if not levels:
        return []
    k = len(next(iter(levels.values())))
    names = ", ".join(f"l{i}" for i in range(k))
    values = ",".join(f"(?,?{',?' * (k + 1)})" for _ in levels)
    op = ">" if strict else ">="
    counts = ", ".join(f"sum(h.sum / h.n {op} c.l{i})" for i in range(k))
    args: list[object] = [x for key, lv in levels.items() for x in (*key, *lv, min(lv))]
    day = f"(b / {HOUR_MS} + {VN_OFFSET_H}) / 24"
    cte = (
        f"WITH t(hamlet, device, {names}, lmin) AS (VALUES {values}), "
        "d AS (SELECT s.id AS sid, s.hamlet AS hamlet, s.device AS device, d.bucket AS b, "
        f"d.n AS n, d.max AS mx, {', '.join(f't.l{i} AS l{i}' for i in range(k))}, "
        "t.lmin AS lmin FROM t JOIN series s ON s.hamlet = t.hamlet AND s.device = t.device "
        "AND s.metric = ? JOIN daily d ON d.series = s.id AND d.bucket >= ? AND d.bucket < ?) "
    )
    base = conn.execute(
        f"{cte}SELECT hamlet, device, {day}, sum(n) FROM d GROUP BY 1, 2, 3",
        [*args, metric, start, end],
    ).fetchall()
    hot = conn.execute(
        f"{cte}SELECT c.hamlet, c.device, (c.b / {HOUR_MS} + {VN_OFFSET_H}) / 24, {counts} "
        f"FROM d AS c JOIN hourly h ON h.series = c.sid AND h.bucket >= c.b "
        f"AND h.bucket < c.b + 86400000 WHERE c.mx {op} c.lmin AND h.n > 0 GROUP BY 1, 2, 3",
        [*args, metric, start, end],
    ).fetchall()
    above = {(r[0], r[1], r[2]): tuple(int(x) for x in r[3 : 3 + k]) for r in hot}
    zero = (0,) * k
    return [(h, d, dn, above.get((h, d, dn), zero), int(n)) for h, d, dn, n in base]


def count_above(rows: list[HourRow], levels: Levels, strict: bool) -> list[AboveRow]:
    """:func:`hours_above_sql` over hourly rows a store returned (the InfluxDB path)."""
    acc: dict[tuple[str, str, int], list[int]] = {}
    for r in rows:
        lv = levels.get((r.hamlet, r.device))
        if lv is None or not r.n:
            continue
        key = (r.hamlet, r.device, (r.hour_ms // HOUR_MS + VN_OFFSET_H) // 24)
        a = acc.setdefault(key, [0] * (len(lv) + 1))
        for i, level in enumerate(lv):
            a[i] += r.mean > level if strict else r.mean >= level
        a[-1] += r.n
    return [(h, d, day, tuple(a[:-1]), a[-1]) for (h, d, day), a in acc.items()]


SERVICE_KINDS = (DeviceKind.KIOSK, DeviceKind.WIFI, DeviceKind.RADIO)
MaskKey = tuple[str, str, int]  # hamlet, device, What


@dataclass(slots=True)
class Raw:
    """Everything a period's indicators read from SQLite, fetched in one reader call."""

    scope: Scope
    alive_days: dict[DeviceKey, dict[int, int]]
    data_days: dict[DeviceKey, dict[int, int]]
    uplink_days: dict[DeviceKey, dict[int, int]]
    masks: dict[DeviceKey, dict[int, int]]
    events: EventCounts
    broadcasts: dict[DeviceKey, list[int]]
    delays: list[tuple[str, str, int, int, int]]
    out_of_range: list[tuple[str, str, int, int]]
    unsynced: list[tuple[str, str, int, int]]
    salinity_devices: list[DeviceKey]
    level_devices: list[DeviceKey]


def load(
    conn: sqlite3.Connection,
    *,
    commune: str | None,
    hamlet: str | None,
    start: int,
    end: int,
    daily: bool = True,
    service_hours: dict[DeviceKind, str | None] | None = None,
) -> Raw:
    """One reader-thread call for a period [start, end) (whole local days); ``daily=False``
    sums the minute counts over the period in SQLite. ``service_hours``: the service hours
    of devices registered without their own, by kind (None: the one-stop shop's)."""
    service_hours = service_hours or {}
    scope = scope_of(conn, commune=commune, hamlet=hamlet)
    hs = scope.hamlets
    d0 = (start // HOUR_MS + VN_OFFSET_H) // 24
    d1 = (end // HOUR_MS + VN_OFFSET_H) // 24
    h0, h1 = start // HOUR_MS, end // HOUR_MS
    service = [(d.hamlet, d.id, d.kind) for d in scope.devices if d.kind in SERVICE_KINDS]
    # An hour of margin before the period for the grace minutes.
    masks: dict[DeviceKey, dict[int, int]] = {}
    by_hours: dict[frozenset[int], list[DeviceKey]] = defaultdict(list)
    for d in scope.devices:
        if d.kind in (DeviceKind.KIOSK, DeviceKind.WIFI):
            text = service_hours.get(d.kind, None) if d.service_hours is None else d.service_hours
            sh = ServiceHours.parse(text)
            by_hours[hours_of_day(sh)].append((d.hamlet, d.id))
    for hod, pairs in by_hours.items():
        masks.update(presence_masks_of(conn, pairs, What.ALIVE, h0 - 1, h1, hod))
    events, casts = service_events(conn, service, start, end)
    empty = not hs
    return Raw(
        scope=scope,
        alive_days={} if empty else presence_days(conn, hs, What.ALIVE, d0, d1, daily),
        data_days={} if empty else presence_days(conn, hs, What.DATA, d0, d1, daily),
        uplink_days={} if empty else presence_days(conn, hs, What.UPLINK, d0, d1, daily),
        masks=masks,
        events=events,
        broadcasts=casts,
        delays=[] if empty else delays(conn, hs, d0, d1),
        out_of_range=[] if empty else quality(conn, hs, OUT_OF_RANGE, h0, h1),
        unsynced=[] if empty else quality(conn, hs, UNSYNCED_KIND, h0, h1),
        salinity_devices=[] if empty else series_devices(conn, hs, "salinity"),
        level_devices=[] if empty else series_devices(conn, hs, "water_level"),
    )
