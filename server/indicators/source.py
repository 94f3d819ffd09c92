"""Reading what indicators rest on from the SQLite side both backends share.

Registry, events and the indicator rollups (:mod:`server.indicators.rollups`) live in the
SQLite database whichever series backend runs; only hourly series rollups come from the
store itself (:class:`HourRow`, via ``Store.hourly_rollups``). Plain synchronous functions
on a connection, run on the database's reader threads.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field

from server.indicators.rollups import HOUR_MS, VN_OFFSET_H, What
from server.models import DeviceKind, DeviceOut
from server.registry import registered_devices


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
    devices = registered_devices(conn, hamlets)
    gws = conn.execute(
        f"SELECT id, hamlet FROM gateways WHERE hamlet IN ({_in(hamlets)}) ORDER BY id", hamlets
    ).fetchall()
    return Scope(commune, hamlets, devices, dict(gws))


DeviceKey = tuple[str, str]  # hamlet, device


def presence_days(
    conn: sqlite3.Connection, hamlets: list[str], what: What, day0: int, day1: int
) -> dict[DeviceKey, dict[int, int]]:
    """Minutes heard per device and local day (days since 1970-01-01) in [day0, day1)."""
    out: dict[DeviceKey, dict[int, int]] = defaultdict(dict)
    rows = conn.execute(
        f"SELECT hamlet, device, day, minutes FROM presence_day WHERE hamlet IN ({_in(hamlets)}) "
        "AND what = ? AND day >= ? AND day < ?",
        [*hamlets, int(what), day0, day1],
    ).fetchall()
    for h, d, day, n in rows:
        out[(h, d)][day] = n
    return out


def presence_masks(  # noqa: PLR0917 -- run through Database.read, which passes positionally
    conn: sqlite3.Connection, hamlet: str, device: str, what: What, hour0: int, hour1: int
) -> list[tuple[int, int]]:
    """(epoch hour, minute mask) of one device in [hour0, hour1)."""
    rows = conn.execute(
        "SELECT hour, mask FROM presence WHERE hamlet = ? AND device = ? AND what = ? "
        "AND hour >= ? AND hour < ? ORDER BY hour",
        (hamlet, device, int(what), hour0, hour1),
    ).fetchall()
    return [(int(h), int(m)) for h, m in rows]


def _day_sql() -> str:
    return f"(t / {HOUR_MS} + {VN_OFFSET_H}) / 24"


def dossiers(
    conn: sqlite3.Connection, hamlets: list[str], start: int, end: int
) -> list[tuple[str, str, int, str, int]]:
    """(hamlet, device, day, channel, count) of ``dossier_submitted`` events."""
    return conn.execute(
        f"SELECT hamlet, device, {_day_sql()}, "
        "coalesce(json_extract(attrs, '$.channel'), ''), count(*) FROM events "
        f"WHERE hamlet IN ({_in(hamlets)}) AND name = 'dossier_submitted' AND t >= ? AND t < ? "
        "AND q != 2 GROUP BY 1, 2, 3, 4",
        [*hamlets, start, end],
    ).fetchall()


def ratings(
    conn: sqlite3.Connection, hamlets: list[str], start: int, end: int
) -> list[tuple[str, str, int, int, int, int]]:
    """(hamlet, device, day, scale, score, count) of ``rating`` events."""
    rows = conn.execute(
        f"SELECT hamlet, device, {_day_sql()}, json_extract(attrs, '$.scale'), "
        "json_extract(attrs, '$.score'), count(*) FROM events "
        f"WHERE hamlet IN ({_in(hamlets)}) AND name = 'rating' AND t >= ? AND t < ? "
        "AND q != 2 GROUP BY 1, 2, 3, 4, 5",
        [*hamlets, start, end],
    ).fetchall()
    out = []
    for h, d, day, scale, score, n in rows:
        if isinstance(scale, int) and isinstance(score, int):
            out.append((h, d, day, scale, score, n))
    return out


def broadcasts(
    conn: sqlite3.Connection, hamlets: list[str], start: int, end: int
) -> dict[DeviceKey, list[int]]:
    """Times of ``broadcast`` events per device."""
    out: dict[DeviceKey, list[int]] = defaultdict(list)
    for h, d, t in conn.execute(
        f"SELECT hamlet, device, t FROM events WHERE hamlet IN ({_in(hamlets)}) "
        "AND name = 'broadcast' AND t >= ? AND t < ? AND q != 2 ORDER BY t",
        [*hamlets, start, end],
    ).fetchall():
        out[(h, d)].append(t)
    return out


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
    flat = " AND h.min = h.max AND h.n > 1" if flat_only else ""
    rows = conn.execute(
        "SELECT s.hamlet, s.device, s.metric, h.bucket, h.n, h.sum, h.min, h.max "
        f"FROM series s JOIN hourly h ON h.series = s.id WHERE s.hamlet IN ({_in(hamlets)}) "
        f"AND s.metric IN ({_in(metrics)}) AND h.bucket >= ? AND h.bucket < ?{flat}",
        [*hamlets, *metrics, start, end],
    ).fetchall()
    return [HourRow(h, d, m, b, n, sm / n, lo, hi) for h, d, m, b, n, sm, lo, hi in rows if n]


SERVICE_KINDS = (DeviceKind.KIOSK, DeviceKind.WIFI, DeviceKind.RADIO)
