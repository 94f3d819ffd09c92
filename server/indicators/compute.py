"""Indicators from rollups: per device and local day, then pooled to any level and period.

:func:`gather` turns the rollups of a set of hamlets over a run of Vietnamese days into
:class:`Cell` s (numerator, denominator per indicator, device and day); :func:`summarize`
pools them — sums of counts, never averages of percentages — per device, hamlet or commune,
per day or for the whole period. Definitions: docs/indicators.md.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, Protocol

from hamlet.vncalendar import VN_TZ, ServiceHours, day_bounds_ms
from server.indicators import source as src
from server.indicators.config import (
    DEFAULT_SERVICE_INTERVAL_S,
    IndicatorsConfig,
    Where,
    salinity_threshold,
    water_alarms,
)
from server.indicators.definitions import BY_KEY, Unit
from server.indicators.rollups import (
    DELAY_EDGES_S,
    HOUR_MS,
    MINUTE_MS,
    OUT_OF_RANGE,
    UNSYNCED_KIND,
    What,
    local_day_of_hour,
)
from server.models import DeviceKind, DeviceOut
from server.store.db import Database

EPOCH: Final = date(1970, 1, 1)
GATEWAY_GRACE_MIN: Final = 1  # a gateway heartbeats every 60 s: one late beat is not down


class Level(StrEnum):
    DEVICE = "device"
    HAMLET = "hamlet"
    COMMUNE = "commune"


def day_number(d: date) -> int:
    return (d - EPOCH).days


def day_of_number(n: int) -> date:
    return EPOCH + timedelta(days=n)


@dataclass(frozen=True, slots=True)
class Cell:
    """One indicator's counts for one device (or gateway) on one local day."""

    indicator: str
    hamlet: str
    device: str
    day: int
    num: float
    den: float | None  # None: the value is the count itself (hours)
    basis: float  # how much data it rests on (minutes, dossiers, hours of readings...)


@dataclass(slots=True)
class Facts:
    cells: list[Cell] = field(default_factory=list)
    hist: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    silent: set[tuple[str, str]] = field(default_factory=set)  # sent nothing in the period
    expected: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # by device class
    unsynced: dict[tuple[str, str], int] = field(default_factory=dict)


class HourlySource(Protocol):
    """What :func:`gather` needs from a store: its SQLite database and hourly rollups."""

    db: Database

    async def hourly_rollups(
        self,
        hamlets: list[str],
        metrics: list[str],
        *,
        start: int,
        end: int,
        flat_only: bool = False,
    ) -> list[src.HourRow]: ...


# --- minute arithmetic on big integers ----------------------------------------------------


def heard_bits(masks: Iterable[tuple[int, int]], origin_min: int) -> int:
    """One integer whose bit i says the device was heard in minute ``origin_min + i``."""
    bits = 0
    for hour, mask in masks:
        off = hour * 60 - origin_min
        bits |= mask << off if off >= 0 else mask >> -off
    return bits


def spread(bits: int, grace: int) -> int:
    """Minute m counts as up when heard in m or in the ``grace`` minutes before it."""
    out = bits
    for i in range(1, grace + 1):
        out |= bits << i
    return out


def up_minutes(up: int, origin_min: int, a_ms: int, b_ms: int) -> tuple[int, int]:
    """(up minutes, minutes) of the window [a_ms, b_ms), whole minutes."""
    a = a_ms // MINUTE_MS - origin_min
    b = -(-b_ms // MINUTE_MS) - origin_min
    if b <= a:
        return 0, 0
    return ((up >> a) & ((1 << (b - a)) - 1)).bit_count(), b - a


# --- gathering ----------------------------------------------------------------------------


def _kind_class(d: DeviceOut) -> str:
    return {
        DeviceKind.KIOSK: "kiosk",
        DeviceKind.WIFI: "wifi",
        DeviceKind.RADIO: "radio",
    }.get(d.kind or DeviceKind.SENSOR, "sensor")


def _clip(day: date, now_ms: int) -> tuple[int, int]:
    a, b = day_bounds_ms(day)
    return a, min(b, max(a, now_ms))


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date  # inclusive

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    @property
    def bounds_ms(self) -> tuple[int, int]:
        return day_bounds_ms(self.first)[0], day_bounds_ms(self.last)[1]


def _availability(
    db_rows: list[tuple[int, int]],
    windows_of: Iterable[tuple[int, list[tuple[int, int]]]],
    origin_min: int,
    grace: int,
) -> list[tuple[int, int, int]]:
    """(day number, up minutes, service minutes) for each day's windows."""
    up = spread(heard_bits(db_rows, origin_min), grace)
    out = []
    for dn, wins in windows_of:
        u = s = 0
        for a, b in wins:
            du, ds = up_minutes(up, origin_min, a, b)
            u += du
            s += ds
        out.append((dn, u, s))
    return out


def _hours_of(
    sh: ServiceHours, days: list[date], now_ms: int
) -> list[tuple[int, list[tuple[int, int]]]]:
    out = []
    for d in days:
        wins = [(a, min(b, now_ms)) for a, b in sh.windows_ms(d) if a < now_ms]
        out.append((day_number(d), wins))
    return out


def _radio_slots(
    cfg: IndicatorsConfig, days: list[date], times: list[int], now_ms: int
) -> list[tuple[int, int, int]]:
    tol = cfg.radio_tolerance_min * MINUTE_MS
    slots = [time.fromisoformat(s) for s in cfg.radio_schedule]
    out = []
    for d in days:
        done = due = 0
        for s in slots:
            a = int(datetime.combine(d, s, tzinfo=VN_TZ).timestamp() * 1000)
            if a + tol > now_ms:
                continue  # not due yet
            due += 1
            i = bisect_left(times, a)
            done += i < len(times) and times[i] < a + tol
        out.append((day_number(d), done, due))
    return out


async def gather(
    store: HourlySource,
    cfg: IndicatorsConfig,
    *,
    commune: str | None = None,
    hamlet: str | None = None,
    period: Period,
    now_ms: int,
) -> tuple[src.Scope, Facts]:
    db = store.db
    scope = await db.read(src.scope_of, commune=commune, hamlet=hamlet)
    hamlets = scope.hamlets
    facts = Facts()
    if not hamlets:
        return scope, facts
    days = period.days
    d0, d1 = day_number(period.first), day_number(period.last) + 1
    start, end = period.bounds_ms
    h0, h1 = start // HOUR_MS, end // HOUR_MS
    origin_min = start // MINUTE_MS - 60  # one hour of margin for the grace minutes
    cells = facts.cells
    commune_of = scope.commune

    # Who is expected: registered devices by class, and every gateway of these hamlets.
    for d in scope.devices:
        facts.expected.setdefault(_kind_class(d), set()).add((d.hamlet, d.id))
    facts.expected["gateway"] = {(h, g) for g, h in scope.gateways.items()}
    alive_days = await db.read(src.presence_days, hamlets, What.ALIVE, d0, d1)
    data_days = await db.read(src.presence_days, hamlets, What.DATA, d0, d1)
    for keys in facts.expected.values():
        for key in keys:
            if not sum(alive_days.get(key, {}).values()):
                facts.silent.add(key)

    # Service devices: availability within service hours / broadcast schedule.
    radios = [d for d in scope.devices if d.kind == DeviceKind.RADIO]
    bcs = await db.read(src.broadcasts, hamlets, start, end) if radios else {}
    for d in scope.devices:
        cls = _kind_class(d)
        if cls == "radio":
            for dn, done, due in _radio_slots(cfg, days, bcs.get((d.hamlet, d.id), []), now_ms):
                if due:
                    cells.append(Cell("radio_availability", d.hamlet, d.id, dn, done, due, due))
            continue
        if cls not in ("kiosk", "wifi"):
            continue
        text = d.service_hours or (cfg.hotspot_hours if cls == "wifi" else None)
        sh = ServiceHours.parse(text, extra_closed=cfg.extra_closed)
        interval = d.expected_interval_s or DEFAULT_SERVICE_INTERVAL_S
        masks = await db.read(src.presence_masks, d.hamlet, d.id, What.ALIVE, h0 - 1, h1)
        ind = "kiosk_availability" if cls == "kiosk" else "hotspot_availability"
        for dn, u, s in _availability(
            masks, _hours_of(sh, days, now_ms), origin_min, math.ceil(interval / 60)
        ):
            if s:
                cells.append(Cell(ind, d.hamlet, d.id, dn, u, s, s))

    # Kiosk events: dossiers online, satisfaction.
    for h, dev, dn, channel, n in await db.read(src.dossiers, hamlets, start, end):
        online = n if channel in ("online", "assisted") else 0
        cells.append(Cell("dossiers_online", h, dev, dn, online, n, n))
    for h, dev, dn, scale, score, n in await db.read(src.ratings, hamlets, start, end):
        if scale not in (3, 5):
            continue
        ok = n if score >= (2 if scale == 3 else 4) else 0
        cells.append(Cell("satisfaction", h, dev, dn, ok, n, n))

    # Sensors: completeness from the per-day minute counts.
    for d in scope.devices:
        if _kind_class(d) != "sensor":
            continue
        step_s = max(d.expected_interval_s or cfg.sensor_interval_s, 60)
        heard = data_days.get((d.hamlet, d.id), {})
        for day in days:
            a, b = _clip(day, now_ms)
            expected = (b - a) // 1000 // step_s
            if expected:
                got = min(heard.get(day_number(day), 0), expected)
                cells.append(
                    Cell(
                        "sensor_completeness",
                        d.hamlet,
                        d.id,
                        day_number(day),
                        got,
                        expected,
                        expected,
                    )
                )

    # Gateways: alive (own records, measurement time) and uplink (arrival time).
    for gw, h in scope.gateways.items():
        windows = [(day_number(day), [_clip(day, now_ms)]) for day in days]
        for what, ind in ((What.ALIVE, "gateway_alive"), (What.UPLINK, "uplink_connectivity")):
            masks = await db.read(src.presence_masks, h, gw, what, h0 - 1, h1)
            for dn, u, s in _availability(masks, windows, origin_min, GATEWAY_GRACE_MIN):
                if s:
                    cells.append(Cell(ind, h, gw, dn, u, s, s))
    for h, gw, dn, b, n in await db.read(src.delays, hamlets, d0, d1):
        facts.hist.setdefault((h, gw, dn), [0] * (len(DELAY_EDGES_S) + 1))[b] += n

    # Data quality: out-of-range hours, stuck hours; untrusted times for coverage.
    oor = {
        (h, dev, hour)
        for h, dev, hour, _ in await db.read(src.quality, hamlets, OUT_OF_RANGE, h0, h1)
    }
    for h, dev, hour in oor:
        cells.append(Cell("out_of_range_hours", h, dev, local_day_of_hour(hour), 1, None, 1))
    for h, dev, _hour, n in await db.read(src.quality, hamlets, UNSYNCED_KIND, h0, h1):
        facts.unsynced[(h, dev)] = facts.unsynced.get((h, dev), 0) + n
    margin = (cfg.stuck_hours - 1) * HOUR_MS
    flat = await store.hourly_rollups(
        hamlets, cfg.stuck_metrics, start=start - margin, end=end + margin, flat_only=True
    )
    for h, dev, hour in _stuck_hours(flat, cfg.stuck_hours):
        if start <= hour * HOUR_MS < end:
            cells.append(Cell("stuck_hours", h, dev, local_day_of_hour(hour), 1, None, 1))

    # Hours above thresholds, judged from hourly means.
    reg = {(d.hamlet, d.id): d for d in scope.devices}
    rows = await store.hourly_rollups(hamlets, ["salinity", "water_level"], start=start, end=end)
    for r in rows:
        dn = local_day_of_hour(r.hour_ms // HOUR_MS)
        regd = reg.get((r.hamlet, r.device))
        w = Where(commune_of, r.hamlet, r.device, regd.crop if regd else None)
        if r.metric == "salinity":
            above = r.mean > salinity_threshold(cfg, w)
            cells.append(Cell("salinity_hours_above", r.hamlet, r.device, dn, above, None, 1))
            continue
        al = water_alarms(cfg, w)
        for ind, level in (
            ("water_hours_above_i", al.level_i),
            ("water_hours_above_ii", al.level_ii),
            ("water_hours_above_iii", al.level_iii),
        ):
            cells.append(Cell(ind, r.hamlet, r.device, dn, r.mean >= level, None, 1))
    return scope, facts


def _stuck_hours(rows: list[src.HourRow], min_run: int) -> set[tuple[str, str, int]]:
    """(hamlet, device, epoch hour) inside runs of >= ``min_run`` consecutive flat hours."""
    by_series: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for r in rows:
        by_series[(r.hamlet, r.device, r.metric)].append(r.hour_ms // HOUR_MS)
    out: set[tuple[str, str, int]] = set()
    for (h, dev, _m), hours in by_series.items():
        hours.sort()
        run = [hours[0]]
        for x in [*hours[1:], None]:
            if x is not None and x == run[-1] + 1:
                run.append(x)
                continue
            if len(run) >= min_run:
                out.update((h, dev, y) for y in run)
            if x is not None:
                run = [x]
    return out


# --- pooling ------------------------------------------------------------------------------


@dataclass(slots=True)
class Value:
    indicator: str
    hamlet: str | None
    device: str | None
    day: date | None
    value: float | None
    num: float
    den: float | None
    basis: float
    devices: int


def percentile_edge(hist: list[int], q: float) -> float | None:
    """Upper edge (s) of the bin holding the q-quantile record; None with no records."""
    total = sum(hist)
    if not total:
        return None
    rank = math.ceil(q * total)
    acc = 0
    for i, n in enumerate(hist):
        acc += n
        if acc >= rank:
            return float(DELAY_EDGES_S[min(i, len(DELAY_EDGES_S) - 1)])
    return float(DELAY_EDGES_S[-1])


def summarize(facts: Facts, level: Level, *, by_day: bool) -> list[Value]:
    """Pool cells per ``level`` (device / hamlet / commune), per day or over the period."""

    def group(h: str, dev: str, dn: int) -> tuple[str | None, str | None, int | None]:
        return (
            h if level != Level.COMMUNE else None,
            dev if level == Level.DEVICE else None,
            dn if by_day else None,
        )

    acc: dict[tuple[str, str | None, str | None, int | None], list[float]] = {}
    devs: dict[tuple[str, str | None, str | None, int | None], set[tuple[str, str]]] = defaultdict(
        set
    )
    ratio: dict[str, bool] = {}
    for c in facts.cells:
        k = (c.indicator, *group(c.hamlet, c.device, c.day))
        a = acc.setdefault(k, [0.0, 0.0, 0.0])
        a[0] += c.num
        a[1] += c.den or 0.0
        a[2] += c.basis
        ratio[c.indicator] = c.den is not None
        devs[k].add((c.hamlet, c.device))
    out: list[Value] = []
    for (ind, h, dev, dn), (num, den, basis) in acc.items():
        is_ratio = ratio[ind]
        value = (num / den if den else None) if is_ratio else num
        out.append(
            Value(
                ind,
                h,
                dev,
                day_of_number(dn) if dn is not None else None,
                value,
                num,
                den if is_ratio else None,
                basis,
                len(devs[(ind, h, dev, dn)]),
            )
        )
    hists: dict[tuple[str | None, str | None, int | None], list[int]] = {}
    hdevs: dict[tuple[str | None, str | None, int | None], set[str]] = defaultdict(set)
    for (fh, fgw, fdn), hist in facts.hist.items():
        hk = group(fh, fgw, fdn)
        cur = hists.setdefault(hk, [0] * len(hist))
        for i, n in enumerate(hist):
            cur[i] += n
        hdevs[hk].add(fgw)
    for (h, gw, dn), hist in hists.items():
        total = float(sum(hist))
        for ind, q in (("freshness_p50_s", 0.5), ("freshness_p95_s", 0.95)):
            out.append(
                Value(
                    ind,
                    h,
                    gw,
                    day_of_number(dn) if dn is not None else None,
                    percentile_edge(hist, q),
                    total,
                    None,
                    total,
                    len(hdevs[(h, gw, dn)]),
                )
            )
    order = {k: i for i, k in enumerate(BY_KEY)}
    out.sort(key=lambda v: (v.hamlet or "", v.device or "", v.day or EPOCH, order[v.indicator]))
    return out


def is_ratio(indicator: str) -> bool:
    return BY_KEY[indicator].unit == Unit.RATIO
