"""Indicators from rollups: per device and local day, then pooled to any level and period.

:func:`gather` turns the rollups of a set of hamlets over a run of Vietnamese days into
:class:`Cell` s (numerator, denominator per indicator, device and day); :func:`summarize`
pools them — sums of counts, never averages of percentages — per device, hamlet or commune,
per day or for the whole period. Definitions: docs/indicators.md.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

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
    local_day_of_hour,
)
from server.models import DeviceKind, DeviceOut
from server.store.db import Database

EPOCH: Final = date(1970, 1, 1)


class Level(StrEnum):
    DEVICE = "device"
    HAMLET = "hamlet"
    COMMUNE = "commune"


def day_number(d: date) -> int:
    return (d - EPOCH).days


def day_of_number(n: int) -> date:
    return EPOCH + timedelta(days=n)


class Cell(NamedTuple):
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

    async def hours_above(
        self, metric: str, levels: src.Levels, *, start: int, end: int, strict: bool
    ) -> list[src.AboveRow]: ...


# --- minute arithmetic on hourly masks ---------------------------------------------------

FULL_HOUR: Final = (1 << 60) - 1
MAX_GRACE_MIN: Final = 60  # looks back at most one hour


def up_minutes(masks: dict[int, int], a_ms: int, b_ms: int, grace: int) -> tuple[int, int]:
    """(up minutes, minutes) of the window [a_ms, b_ms): minute m is up when the device was
    heard in m or in the ``grace`` minutes before it. ``masks``: epoch hour -> minute bits."""
    a = a_ms // MINUTE_MS
    b = -(-b_ms // MINUTE_MS)
    if b <= a:
        return 0, 0
    g = min(grace, MAX_GRACE_MIN)
    up = 0
    for hour in range(a // 60, (b - 1) // 60 + 1):
        lo = max(a - hour * 60, 0)
        hi = min(b - hour * 60, 60)
        cur = masks.get(hour, 0)
        if cur == FULL_HOUR:  # the common case: heard every minute of the hour
            up += hi - lo
            continue
        both = masks.get(hour - 1, 0) | cur << 60
        spread = both
        for i in range(1, g + 1):
            spread |= both << i
        bits = (spread >> 60) & FULL_HOUR
        up += ((bits >> lo) & ((1 << (hi - lo)) - 1)).bit_count()
    return up, b - a


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
    masks: dict[int, int],
    windows_of: Iterable[tuple[int, list[tuple[int, int]]]],
    grace: int,
) -> list[tuple[int, int, int]]:
    """(day number, up minutes, service minutes) for each day's windows."""
    out = []
    for dn, wins in windows_of:
        u = s = 0
        for a, b in wins:
            du, ds = up_minutes(masks, a, b, grace)
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
    daily: bool = True,
) -> tuple[src.Scope, Facts]:
    start, end = period.bounds_ms
    raw = await store.db.read(
        src.load,
        commune=commune,
        hamlet=hamlet,
        start=start,
        end=end,
        daily=daily,
        service_hours={DeviceKind.WIFI: cfg.hotspot_hours},
    )
    scope = raw.scope
    hamlets = scope.hamlets
    facts = Facts()
    if not hamlets:
        return scope, facts
    days = period.days
    bounds = {day: _clip(day, now_ms) for day in days}
    first_dn = day_number(period.first)

    def emit(ind: str, h: str, dev: str, rows: Iterable[tuple[int, int, int]]) -> None:
        """Cells of (day, num, den) rows: one per day, or (``daily=False``) one for the
        whole period, which is all a monthly figure needs and far fewer cells to pool."""
        if daily:
            cells.extend(Cell(ind, h, dev, dn, n, den, den) for dn, n, den in rows if den)
            return
        num = den = 0
        for _dn, n, dd in rows:
            num += n
            den += dd
        if den:
            cells.append(Cell(ind, h, dev, first_dn, num, den, den))

    windows: dict[str | None, list[tuple[int, list[tuple[int, int]]]]] = {}
    cells = facts.cells
    commune_of = scope.commune

    # Who is expected: registered devices by class, and every gateway of these hamlets.
    for d in scope.devices:
        facts.expected.setdefault(_kind_class(d), set()).add((d.hamlet, d.id))
    facts.expected["gateway"] = {(h, g) for g, h in scope.gateways.items()}
    alive_days, data_days = raw.alive_days, raw.data_days
    for keys in facts.expected.values():
        for key in keys:
            if not sum(alive_days.get(key, {}).values()):
                facts.silent.add(key)

    # Service devices: availability within service hours / broadcast schedule.
    bcs = raw.broadcasts
    for d in scope.devices:
        cls = _kind_class(d)
        if cls == "radio":
            emit(
                "radio_availability",
                d.hamlet,
                d.id,
                _radio_slots(cfg, days, bcs.get((d.hamlet, d.id), []), now_ms),
            )
            continue
        if cls not in ("kiosk", "wifi"):
            continue
        text = d.service_hours or (cfg.hotspot_hours if cls == "wifi" else None)
        if text not in windows:
            sh = ServiceHours.parse(text, extra_closed=cfg.extra_closed)
            windows[text] = _hours_of(sh, days, now_ms)
        interval = d.expected_interval_s or DEFAULT_SERVICE_INTERVAL_S
        masks = raw.masks.get((d.hamlet, d.id), {})
        ind = "kiosk_availability" if cls == "kiosk" else "hotspot_availability"
        emit(ind, d.hamlet, d.id, _availability(masks, windows[text], math.ceil(interval / 60)))

    # Kiosk events: dossiers online, satisfaction.
    for h, dev, dn, name, a_, b_, n in raw.events:
        if name == "dossier_submitted":
            online = n if a_ in ("online", "assisted") else 0
            cells.append(Cell("dossiers_online", h, dev, dn, online, n, n))
        elif a_ in (3, 5) and isinstance(b_, int):
            ok = n if b_ >= (2 if a_ == 3 else 4) else 0
            cells.append(Cell("satisfaction", h, dev, dn, ok, n, n))

    # Sensors: completeness from the per-day minute counts.
    expected_of: dict[int, list[tuple[int, int]]] = {}
    for d in scope.devices:
        if _kind_class(d) != "sensor":
            continue
        step_s = max(d.expected_interval_s or cfg.sensor_interval_s, 60)
        if step_s not in expected_of:
            per_step = [
                (day_number(day), (b - a) // 1000 // step_s) for day, (a, b) in bounds.items()
            ]
            if not daily:  # the period's minutes, capped at the period's expected count
                per_step = [(first_dn, sum(exp for _, exp in per_step))]
            expected_of[step_s] = per_step
        heard = data_days.get((d.hamlet, d.id), {})
        per_day = expected_of[step_s]
        if not daily and len(heard) > 1:
            heard = {first_dn: sum(heard.values())}
        emit(
            "sensor_completeness",
            d.hamlet,
            d.id,
            [(dn, min(heard.get(dn, 0), exp), exp) for dn, exp in per_day],
        )

    # Gateways: alive (own records, measurement time) and uplink (arrival time), minutes
    # from the per-day counts (a gateway heartbeats every minute).
    day_minutes = [(day_number(day), -(-(b - a) // MINUTE_MS)) for day, (a, b) in bounds.items()]
    if not daily:
        day_minutes = [(first_dn, sum(m for _, m in day_minutes))]
    for gw, h in scope.gateways.items():
        for ind, by_device in (
            ("gateway_alive", alive_days),
            ("uplink_connectivity", raw.uplink_days),
        ):
            got = by_device.get((h, gw), {})
            emit(ind, h, gw, [(dn, min(got.get(dn, 0), m), m) for dn, m in day_minutes])
    for h, gw, dn, b, n in raw.delays:
        facts.hist.setdefault((h, gw, dn), [0] * (len(DELAY_EDGES_S) + 1))[b] += n

    # Data quality: out-of-range hours, stuck hours; untrusted times for coverage.
    oor = {(h, dev, hour) for h, dev, hour, _ in raw.out_of_range}
    for h, dev, hour in oor:
        cells.append(Cell("out_of_range_hours", h, dev, local_day_of_hour(hour), 1, None, 1))
    for h, dev, _hour, n in raw.unsynced:
        facts.unsynced[(h, dev)] = facts.unsynced.get((h, dev), 0) + n
    # Stuck hours and hours above thresholds: the store's hourly rollups, three queries run
    # side by side on the reader threads.
    crop = {(d.hamlet, d.id): d.crop for d in scope.devices}

    def where(key: tuple[str, str]) -> Where:
        return Where(commune_of, key[0], key[1], crop.get(key))

    sal: src.Levels = {k: (salinity_threshold(cfg, where(k)),) for k in raw.salinity_devices}
    levels: src.Levels = {}
    for k in raw.level_devices:
        al = water_alarms(cfg, where(k))
        levels[k] = (al.level_i, al.level_ii, al.level_iii)
    margin = (cfg.stuck_hours - 1) * HOUR_MS
    flat, sal_rows, level_rows = await asyncio.gather(
        store.hourly_rollups(
            hamlets, cfg.stuck_metrics, start=start - margin, end=end + margin, flat_only=True
        ),
        store.hours_above("salinity", sal, start=start, end=end, strict=True),
        store.hours_above("water_level", levels, start=start, end=end, strict=False),
    )
    for h, dev, hour in _stuck_hours(flat, cfg.stuck_hours):
        if start <= hour * HOUR_MS < end:
            cells.append(Cell("stuck_hours", h, dev, local_day_of_hour(hour), 1, None, 1))
    levels_keys: tuple[str, ...] = (
        "water_hours_above_i",
        "water_hours_above_ii",
        "water_hours_above_iii",
    )
    sal_keys: tuple[str, ...] = ("salinity_hours_above",)
    for names, found in ((sal_keys, sal_rows), (levels_keys, level_rows)):
        for h, dev, dn, counts, hours in found if daily else _per_period(found, first_dn):
            for label, n in zip(names, counts, strict=True):
                cells.append(Cell(label, h, dev, dn, n, None, hours))
    return scope, facts


def _per_period(rows: list[src.AboveRow], dn: int) -> list[src.AboveRow]:
    """Per-day rows summed per device, stamped with the period's first day."""
    acc: dict[tuple[str, str], list[int]] = {}
    for h, dev, _day, counts, hours in rows:
        a = acc.setdefault((h, dev), [0] * (len(counts) + 1))
        for i, n in enumerate(counts):
            a[i] += n
        a[-1] += hours
    return [(h, dev, dn, tuple(a[:-1]), a[-1]) for (h, dev), a in acc.items()]


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
