"""Pure alert evaluation: readings in time order in, episodes out. No I/O, no server imports.

The server runs these on every settled batch (and re-runs them over stored data when a late
batch lands before what was already evaluated); the gateway can run the same functions at the
edge. Times are the readings' times (ms), never arrival times.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from hamlet.alertrules import Op, Params, RuleKind
from hamlet.vncalendar import ServiceHours

_CMP: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_SEARCH_DAYS: Final = 60  # a "down" due time further than this is treated as never


@dataclass(slots=True)
class Episode:
    """A run of readings beyond a line (or of one stuck value): a candidate alert."""

    start: int
    peak: float
    peak_t: int
    last_t: int
    value: float  # stuck: the run's value; threshold: the first value
    end: int | None = None  # the reading that ended it; None while it lasts

    def duration_ms(self) -> int:
        return (self.end if self.end is not None else self.last_t) - self.start

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "start": self.start,
            "peak": self.peak,
            "peak_t": self.peak_t,
            "last_t": self.last_t,
            "value": self.value,
            "end": self.end,
        }

    @classmethod
    def from_json(cls, d: dict[str, float | int | None]) -> Episode:
        end = d.get("end")
        return cls(
            start=int(d["start"] or 0),
            peak=float(d["peak"] or 0.0),
            peak_t=int(d["peak_t"] or 0),
            last_t=int(d["last_t"] or 0),
            value=float(d["value"] or 0.0),
            end=int(end) if end is not None else None,
        )


def clear_level(op: Op, p: Params) -> float:
    """Where an episode ends: the threshold moved back by the hysteresis band.

    Rounded to 9 decimals so 0.3 - 0.1 is 0.2, as the person who configured it meant.
    """
    level = p.threshold - p.clear_band if op in (">", ">=") else p.threshold + p.clear_band
    return round(level, 9)


def _higher_is_worse(op: Op) -> bool:
    return op in (">", ">=")


def feed_threshold(
    op: Op, p: Params, state: Episode | None, points: Iterable[tuple[int, float]]
) -> tuple[list[Episode], Episode | None]:
    """Episodes of readings beyond ``p.threshold`` (hysteresis ``p.clear_band``).

    ``points`` in time order. Returns the episodes that ended and the one still going.
    """
    cmp = _CMP[op]
    thr, clear = p.threshold, clear_level(op, p)
    worse = _higher_is_worse(op)
    pts = points if isinstance(points, list) else list(points)
    if state is None and pts:
        # Fast path, the usual case: nothing beyond the line (one pass in C).
        vals = [v for _t, v in pts]
        if not cmp(max(vals) if worse else min(vals), thr):
            return [], None
    cur = state
    done: list[Episode] = []
    for t, v in pts:
        if cur is None:
            if cmp(v, thr):
                cur = Episode(start=t, peak=v, peak_t=t, last_t=t, value=v)
        elif cmp(v, clear):
            cur.last_t = t
            if (v > cur.peak) if worse else (v < cur.peak):
                cur.peak, cur.peak_t = v, t
        else:
            cur.end = t
            done.append(cur)
            cur = None
    return done, cur


def feed_stuck(
    p: Params, state: Episode | None, points: Iterable[tuple[int, float]]
) -> tuple[list[Episode], Episode | None]:
    """Runs of one value (within ``p.clear_band``); every reading belongs to a run.

    Returns only the ended runs long enough to be alerts (a healthy sensor ends a run at
    almost every reading), and the run still going.
    """
    tol = p.clear_band
    need = p.min_duration_s * 1000
    pts = points if isinstance(points, list) else list(points)
    if len(pts) > 2 and need > 0:
        vals = [v for _t, v in pts]
        if min(map(abs, map(operator.sub, vals[1:], vals[:-1]))) > tol:
            # Fast path, a healthy sensor: every reading differs from the one before, so
            # only the run carried in can end (at the first reading, or at the second when
            # the first still continues it) and the last starts.
            first, _ = feed_stuck(p, state, pts[:2])
            t, v = pts[-1]
            return first, Episode(start=t, peak=v, peak_t=t, last_t=t, value=v)
    cur = state
    done: list[Episode] = []
    for t, v in pts:
        if cur is None:
            cur = Episode(start=t, peak=v, peak_t=t, last_t=t, value=v)
        elif -tol <= v - cur.value <= tol:
            cur.last_t = t
        else:
            if cur.last_t - cur.start >= need:
                cur.end = t
                done.append(cur)
            cur = Episode(start=t, peak=v, peak_t=t, last_t=t, value=v)
    return done, cur


def fired(ep: Episode, p: Params, *, readings_only: bool = False) -> bool:
    """An episode is an alert once it has lasted the minimum duration (reading time).

    ``readings_only`` (stuck runs): count from the first to the last equal reading, so a
    single reading followed by a gap in the data is never "stuck for a day".
    """
    span = ep.last_t - ep.start if readings_only else ep.duration_ms()
    return span >= p.min_duration_s * 1000


def restart_index(
    kind: RuleKind, op: Op, p: Params, points: list[tuple[int, float]]
) -> tuple[int, bool] | None:
    """Where a replay can start with no state, searching ``points`` (ascending) from the end.

    Returns (index, inclusive): feed from ``points[index]`` (inclusive) or after it. None
    when no reset point is in ``points``.
    """
    if kind == RuleKind.STUCK:
        for i in range(len(points) - 1, 0, -1):
            if abs(points[i][1] - points[i - 1][1]) > p.clear_band:
                return i, True  # a run starts here
        return None
    cmp = _CMP[op]
    clear = clear_level(op, p)
    for i in range(len(points) - 1, -1, -1):
        if not cmp(points[i][1], clear):
            return i, False  # outside any episode: nothing carries over
    return None


# --- silences (stale sensors, devices down in service hours, silent gateways) ------------


def silence_value_ms(kind: RuleKind, gap_from: int, gap_to: int, hours: ServiceHours | None) -> int:
    """How much of a silence counts: service time for a device, all of it otherwise."""
    if kind == RuleKind.DOWN:
        assert hours is not None
        return hours.service_ms(gap_from, gap_to)
    return gap_to - gap_from


def silence_start(kind: RuleKind, gap_from: int, gap_to: int, hours: ServiceHours | None) -> int:
    """When the alert starts: the first service instant of the silence for a device."""
    if kind == RuleKind.DOWN:
        assert hours is not None
        for a, _b in hours.iter_windows_ms(gap_from, gap_to):
            return a
    return gap_from


def silence_qualifies(
    kind: RuleKind, p: Params, gap_from: int, gap_to: int, hours: ServiceHours | None
) -> bool:
    return silence_value_ms(kind, gap_from, gap_to, hours) >= p.min_duration_s * 1000


def silence_due(kind: RuleKind, p: Params, last: int, hours: ServiceHours | None) -> int | None:
    """The moment a silence that began at ``last`` becomes an alert (None: not within 60 d)."""
    need = int(p.min_duration_s * 1000)
    if kind != RuleKind.DOWN:
        return last + need
    assert hours is not None
    got = 0
    for a, b in hours.iter_windows_ms(last, last + _SEARCH_DAYS * 86_400_000):
        if got + (b - a) >= need:
            return a + (need - got)
        got += b - a
    return None


def replay(
    kind: RuleKind,
    op: Op,
    p: Params,
    pts: list[tuple[int, float]],
    *,
    after: int,
    settled_to: int,
) -> tuple[list[Episode], Episode | None, int | None]:
    """Evaluate ``pts`` from no state and stop where the rest cannot change any more.

    Past ``after`` (the newest late reading) and no later than ``settled_to`` (how far the
    series had been evaluated), the first reset point makes everything from it on
    independent of the late data. Returns (episodes ended before that point, the episode
    going on if none was found, the point as an exclusive bound on alert starts, or None
    when the replay ran to the end of ``pts``).
    """
    cur: Episode | None = None
    done: list[Episode] = []
    stuck = kind == RuleKind.STUCK
    cmp, clear = _CMP[op], clear_level(op, p)
    prev_t: int | None = None
    for pt in pts:
        t, v = pt
        if stuck:
            ended, cur = feed_stuck(p, cur, [pt])
            # A run starts at t in the old evaluation too only if the reading before t was
            # there already (not late): then both agree from t on.
            if (
                prev_t is not None
                and prev_t > after
                and t <= settled_to
                and cur is not None
                and cur.start == t
            ):
                return [*done, *ended], None, t
        else:
            ended, cur = feed_threshold(op, p, cur, [pt])
            # A reading at or past the clear level ends any episode, old or new: from it on
            # both evaluations agree (it says nothing about the reading's predecessors).
            if after < t <= settled_to and not cmp(v, clear):
                return [*done, *ended], None, t + 1
        prev_t = t
        done.extend(ended)
    return done, cur, None
