"""Turning evaluated episodes into alert rows: the jobs the engine runs on the writer thread.

Each public function is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), so several
server workers evaluating at once serialize on SQLite's lock and never both open an alert.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hamlet.alerteval import (
    Episode,
    feed_stuck,
    feed_threshold,
    fired,
    silence_due,
    silence_qualifies,
    silence_start,
    silence_value_ms,
)
from hamlet.alertmessages import message
from hamlet.alertrules import (
    RULES,
    AlertSettings,
    Params,
    RuleDef,
    RuleKind,
    Subject,
    resolve,
    rules_for_metric,
)
from hamlet.vncalendar import ServiceHours, ServiceHoursError
from server.alerts import table
from server.alerts.table import Draft, Key
from server.registry import registered_devices

log = logging.getLogger("hamlet.server.alerts")
SILENCE_RULES = ("gateway.silent", "sensor.stale", "device.down")
Points = list[tuple[int, float]]


@contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass
class HamletContext:
    """What the rules need to know about a hamlet's devices (from the registry)."""

    hamlet: str
    commune: str | None = None
    devices: dict[str, tuple[str, str | None, int | None, str | None]] = field(
        default_factory=dict
    )  # id -> (kind, crop, interval_s, service_hours)

    def subject(self, device: str, metric: str = "") -> Subject:
        kind, crop, interval, hours = self.devices.get(device, (None, None, None, None))
        return Subject(
            hamlet=self.hamlet,
            device=device,
            metric=metric,
            commune=self.commune,
            crop=crop,
            kind=kind,
            interval_s=float(interval) if interval else None,
            service_hours=hours,
        )


def load_context(conn: sqlite3.Connection, hamlet: str) -> HamletContext:
    row = conn.execute("SELECT commune FROM hamlets WHERE id = ?", (hamlet,)).fetchone()
    ctx = HamletContext(hamlet, row[0] if row else None)
    for d in registered_devices(conn, [hamlet]):
        ctx.devices[d.id] = (
            str(d.kind) if d.kind else "sensor",
            d.crop,
            d.expected_interval_s,
            d.service_hours,
        )
    return ctx


def hours_of(s: Subject) -> ServiceHours:
    try:
        return ServiceHours.parse(s.service_hours)
    except ServiceHoursError as err:
        # Registered before validation existed: judge by the default hours, say so.
        log.warning("device %s/%s: %s; using the default service hours", s.hamlet, s.device, err)
        return ServiceHours.parse(None)


# --- value rules ---------------------------------------------------------------------------


def feed(
    rule: RuleDef, p: Params, state: Episode | None, pts: Points
) -> tuple[list[Episode], Episode | None]:
    if rule.kind == RuleKind.STUCK:
        return feed_stuck(p, state, pts)
    return feed_threshold(rule.op, p, state, pts)


def value_drafts(
    rule: RuleDef, s: Subject, p: Params, done: list[Episode], cur: Episode | None
) -> list[Draft]:
    out = []
    for ep in [*done, *([cur] if cur is not None else [])]:
        if not fired(ep, p, readings_only=rule.kind == RuleKind.STUCK):
            continue
        peak = ep.value if rule.kind == RuleKind.STUCK else ep.peak
        kw = {"device": s.device, "metric": s.metric, "peak": peak, "params": p}
        out.append(
            Draft(
                severity=str(rule.severity),
                start=ep.start,
                end=ep.end,
                peak=peak,
                peak_t=ep.peak_t if rule.kind != RuleKind.STUCK else ep.last_t,
                threshold=p.threshold if rule.kind == RuleKind.THRESHOLD else None,
                message_vi=message(rule.id, "vi", **kw),  # type: ignore[arg-type]
                message_en=message(rule.id, "en", **kw),  # type: ignore[arg-type]
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Replay:
    """A series whose new points fall at or before what was evaluated: replay these rules
    from stored data, from before ``t0`` (the oldest new point) to past ``t1`` (the newest)."""

    rules: tuple[str, ...]
    hamlet: str
    device: str
    metric: str
    t0: int
    t1: int


def _time(p: tuple[int, float]) -> int:
    return p[0]


@dataclass
class BatchWork:
    hamlet: str
    gateway: str
    values: dict[tuple[str, str], list[tuple[int, float]]]  # (device, metric) -> (t, v)
    life: dict[str, list[int]]  # device -> times it showed life
    now_ms: int


def apply_batch(
    conn: sqlite3.Connection, settings: AlertSettings, w: BatchWork, listening_since: int = 0
) -> tuple[list[Replay], bool]:
    """Evaluate one settled batch. Returns series that need a replay, and whether the
    sweeper should recompute its schedule (a new silence subject, an alert closed)."""
    replays: list[Replay] = []
    resched = False
    with _tx(conn):
        ctx = load_context(conn, w.hamlet)
        marks = table.hamlet_marks(conn, w.hamlet, [m for _d, m in w.values])
        saves: list[tuple[Key, int, Episode | None]] = []
        for (device, metric), raw in w.values.items():
            # Usually in time order already (then sorting is one linear pass in C).
            pts = sorted(raw, key=_time)
            s = ctx.subject(device, metric)
            late: list[str] = []
            for rule in rules_for_metric(metric):
                p = resolve(settings, rule.id, s)
                if not p.enabled:
                    continue
                key = Key(rule.id, w.hamlet, device, metric)
                mark = marks.get(key)
                if mark is not None and pts[0][0] <= mark.hwm:
                    late.append(rule.id)
                    continue
                state = mark.state if mark is not None else None
                since = state.start if state is not None else pts[0][0]
                stuck = rule.kind == RuleKind.STUCK
                had_alert = state is not None and fired(state, p, readings_only=stuck)
                done, cur = feed(rule, p, state, pts)
                drafts = value_drafts(rule, s, p, done, cur)
                # Alerts exist from ``since`` on only if the episode carried in had fired.
                if drafts or had_alert:
                    table.reconcile(conn, key, since, drafts, w.now_ms)
                saves.append((key, pts[-1][0], cur))
            if late:
                replays.append(Replay(tuple(late), w.hamlet, device, metric, pts[0][0], pts[-1][0]))
        table.save_marks(conn, saves)
        for device, times in w.life.items():
            s = ctx.subject(device)
            for rid in ("sensor.stale", "device.down"):
                p = resolve(settings, rid, s)
                if p.enabled:
                    key = Key(rid, w.hamlet, device)
                    resched |= _silence_points(conn, key, s, p, sorted(set(times)), w.now_ms)
        resched |= _contact(conn, settings, ctx, w.gateway, w.now_ms, listening_since)
    return replays, resched


@dataclass(frozen=True, slots=True)
class ReplayResult:
    since: int
    until: int | None  # None: ran to the newest reading; the mark moves to ``hwm``
    drafts: list[Draft]
    hwm: int
    state: Episode | None


def commit_replay(
    conn: sqlite3.Connection, key: Key, version: int, r: ReplayResult, now_ms: int
) -> int | None:
    """Write a replay's result. Returns None when written; else the time to replay from
    instead (an alert recorded earlier spans ``since``: the store held data evaluation had
    not reached), or ``since`` itself when someone evaluated the series meanwhile."""
    with _tx(conn):
        mark = table.load_mark(conn, key)
        if (mark.version if mark else 0) != version:
            return r.since
        spanning = table.spanning_start(conn, key, r.since)
        if spanning is not None:
            return spanning
        table.reconcile(conn, key, r.since, r.drafts, now_ms, r.until)
        if r.until is None and (mark is None or r.hwm >= mark.hwm):
            table.save_mark(conn, key, r.hwm, r.state)
    return None


# --- silences ------------------------------------------------------------------------------


def silence_draft(
    rule: RuleDef, s: Subject, p: Params, gap_from: int, gap_to: int, *, open_: bool
) -> Draft:
    hours = hours_of(s) if rule.kind == RuleKind.DOWN else None
    value = silence_value_ms(rule.kind, gap_from, gap_to, hours)
    kw = {"device": s.device, "metric": "", "peak": value, "params": p, "device_kind": s.kind}
    return Draft(
        severity=str(rule.severity),
        start=silence_start(rule.kind, gap_from, gap_to, hours),
        end=None if open_ else gap_to,
        peak=value / 60_000,  # minutes of (service) silence
        peak_t=gap_to,
        threshold=p.min_duration_s / 60,
        message_vi=message(rule.id, "vi", **kw),  # type: ignore[arg-type]
        message_en=message(rule.id, "en", **kw),  # type: ignore[arg-type]
        gap_from=gap_from,
        gap_to=None if open_ else gap_to,
    )


def _close_gap(  # noqa: PLR0917 -- one call site, read as a sentence
    conn: sqlite3.Connection, key: Key, s: Subject, p: Params, gap_from: int, t: int, now: int
) -> bool:
    """A sign of life at ``t`` after the last one at ``gap_from``. True if an alert closed."""
    rule = RULES[key.rule]
    hours = hours_of(s) if rule.kind == RuleKind.DOWN else None
    opened = [a for a in table.silences(conn, key) if a.gap_to is None]
    aid = opened[0].id if opened else None
    if silence_qualifies(rule.kind, p, gap_from, t, hours):
        table.write_draft(conn, key, aid, silence_draft(rule, s, p, gap_from, t, open_=False), now)
    elif aid is not None:
        table.retract(conn, aid, now)  # opened on arrival time; reading time says no
    return aid is not None


def _split_gaps(  # noqa: PLR0917 -- one call site, read as a sentence
    conn: sqlite3.Connection, key: Key, s: Subject, p: Params, late: list[int], now: int
) -> None:
    """Late signs of life inside alerted silences: split each, keep the pieces that count."""
    rule = RULES[key.rule]
    hours = hours_of(s) if rule.kind == RuleKind.DOWN else None
    for a in table.silences(conn, key):
        if a.gap_to is None:
            continue
        inside = late[bisect_right(late, a.gap_from) : bisect_left(late, a.gap_to)]
        if not inside:
            continue
        bounds = [a.gap_from, *inside, a.gap_to]
        reuse: int | None = a.id
        for lo, hi in itertools.pairwise(bounds):
            if silence_qualifies(rule.kind, p, lo, hi, hours):
                d = silence_draft(rule, s, p, lo, hi, open_=False)
                table.write_draft(conn, key, reuse, d, now)
                reuse = None
        if reuse is not None:
            table.retract(conn, a.id, now)


def _silence_points(  # noqa: PLR0917
    conn: sqlite3.Connection, key: Key, s: Subject, p: Params, times: list[int], now: int
) -> bool:
    """Signs of life (sorted, distinct) of one device: extend, close or split its silences.

    Between the earliest and the latest sign of life known, late data can only split
    silences; before the earliest, it reveals silences never seen; after the latest, each
    new sign of life closes the silence since the one before.
    """
    mark = table.load_mark(conn, key)
    if mark is None:
        first, hwm = times[0], times[0]
        resched = True
    else:
        first = mark.first if mark.first is not None else mark.hwm
        hwm = mark.hwm
        resched = False
    rule = RULES[key.rule]
    hours = hours_of(s) if rule.kind == RuleKind.DOWN else None
    before = [t for t in times if t < first]
    for lo, hi in itertools.pairwise([*before, first]):
        if silence_qualifies(rule.kind, p, lo, hi, hours):
            d = silence_draft(rule, s, p, lo, hi, open_=False)
            table.write_draft(conn, key, None, d, now)
    late = [t for t in times if first < t < hwm]
    if late:
        _split_gaps(conn, key, s, p, late, now)
    for t in times:
        if t > hwm:
            resched |= _close_gap(conn, key, s, p, hwm, t, now)
            hwm = t
    first = min(first, times[0])
    if mark is None or (hwm, first) != (mark.hwm, mark.first):
        table.save_mark(conn, key, hwm, None, first)
    return resched


def _contact(  # noqa: PLR0917 -- one call site
    conn: sqlite3.Connection,
    settings: AlertSettings,
    ctx: HamletContext,
    gateway: str,
    now: int,
    listening_since: int,
) -> bool:
    """The gateway made contact now (server time: silence is about the link, not readings).

    Time the server itself was not listening (stopped, restarting) is not the gateway's
    silence: a gap counts from ``listening_since`` at the earliest.
    """
    key = Key("gateway.silent", ctx.hamlet, gateway)
    s = ctx.subject(gateway)
    p = resolve(settings, key.rule, s)
    mark = table.load_mark(conn, key)
    resched = mark is None
    if mark is not None and p.enabled and now > mark.hwm:
        basis = max(mark.hwm, min(listening_since, now))
        resched |= _close_gap(conn, key, s, p, basis, now, now)
    if mark is None or now > mark.hwm:
        table.save_mark(conn, key, now, None)
    return resched


def sweep(
    conn: sqlite3.Connection, settings: AlertSettings, now: int, listening_since: int = 0
) -> int | None:
    """Open alerts for silences that are due now; return the next due time (None: none).

    A silence is judged only over time the server was listening (``listening_since``): after
    a restart nobody is reported silent for the server's own downtime.
    """
    nxt: int | None = None
    with _tx(conn):
        opened = table.open_keys(conn)
        silent_hamlets = {k.hamlet for k in opened if k.rule == "gateway.silent"}
        marks = table.silence_marks(conn, SILENCE_RULES)
        marks.sort(key=lambda m: m[0].rule != "gateway.silent")  # gateways first
        ctxs: dict[str, HamletContext] = {}
        for key, hwm in marks:
            if key in opened:
                continue
            ctx = ctxs.get(key.hamlet) or ctxs.setdefault(
                key.hamlet, load_context(conn, key.hamlet)
            )
            s = ctx.subject(key.device)
            p = resolve(settings, key.rule, s)
            rule = RULES[key.rule]
            if not p.enabled:
                continue
            hours = hours_of(s) if rule.kind == RuleKind.DOWN else None
            due = silence_due(rule.kind, p, max(hwm, listening_since), hours)
            if due is None:
                continue
            if due > now:
                nxt = due if nxt is None else min(nxt, due)
                continue
            # Behind a silent gateway a device's silence says nothing: the gateway alert does.
            if rule.kind != RuleKind.SILENT and key.hamlet in silent_hamlets:
                continue
            # A device's silence is a gap in its readings (the gateway may hold them); a
            # gateway's is a gap in contact, which the server saw only while listening.
            gap_from = max(hwm, listening_since) if rule.kind == RuleKind.SILENT else hwm
            d = silence_draft(rule, s, p, gap_from, now, open_=True)
            table.write_draft(conn, key, None, d, now)
            if rule.kind == RuleKind.SILENT:
                silent_hamlets.add(key.hamlet)
    return nxt


def behind(conn: sqlite3.Connection) -> list[Replay]:
    """Value series the store holds newer data for than evaluation reached (after a crash)."""
    rows = conn.execute(
        "SELECT m.rule, m.hamlet, m.device, m.metric, m.hwm FROM alert_marks m "
        "JOIN series s ON s.hamlet = m.hamlet AND s.device = m.device AND s.metric = m.metric "
        "JOIN latest l ON l.series = s.id WHERE m.metric != '' AND l.t > m.hwm"
    ).fetchall()
    grouped: dict[tuple[str, str, str], tuple[list[str], int]] = {}
    for rule, hamlet, device, metric, hwm in rows:
        rules, t0 = grouped.setdefault((hamlet, device, metric), ([], int(hwm) + 1))
        rules.append(rule)
        grouped[(hamlet, device, metric)] = (rules, min(t0, int(hwm) + 1))
    return [Replay(tuple(r), *k, t0, t0) for k, (r, t0) in grouped.items()]
