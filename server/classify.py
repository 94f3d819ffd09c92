"""Decide, record by record, what an uplink batch does to the store.

Pure and synchronous: given a batch, the gateway's already-settled sequence numbers and the
receiver's clock, say which records are new and valid (to store), duplicates (already
settled, or repeated inside the batch), or rejected with a specific reason; and what the
batch's declared gaps add. The store runs this inside its write transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from hamlet.contract import (
    MAX_ABS_VALUE,
    MAX_FUTURE_SKEW_MS,
    MAX_SEQ,
    MIN_PLAUSIBLE_TIME_MS,
    MIN_SEQ,
    RecordKind,
    SeriesBlock,
    TimeQuality,
    UplinkBatch,
    seq_problem,
)
from hamlet.metrics import GATEWAY_METRIC_PREFIX, METRICS
from hamlet.status_report import STATUS_EVENT, ReportError, parse_attrs
from server.ranges import Range, RangeSet, compress, first_claims, merge

_UNSYNCED: Final = int(TimeQuality.UNSYNCED)
_QUALITIES: Final = frozenset(int(x) for x in TimeQuality)
_MIN_SEQ: Final = MIN_SEQ
_MAX_SEQ: Final = MAX_SEQ
_MAX_TIME_MS: Final = 2**53  # beyond this, JSON numbers stop being exact
_MAX_COUNT: Final = 2**31 - 1  # readings behind one aggregate; more is a corrupt record


@dataclass(slots=True)
class PointRow:
    """One accepted point (a convenience view; storage works on whole blocks)."""

    device: str
    metric: str
    kind: str
    seq: int
    t: int
    v: float
    q: int
    vmin: float | None
    vmax: float | None
    n: int | None


@dataclass(slots=True)
class AcceptedBlock:
    """Accepted points of one (device, metric), columnar like the wire format."""

    device: str
    metric: str
    kind: str
    seqs: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    qs: list[int] | None = None
    vmin: list[float] | None = None
    vmax: list[float] | None = None
    n: list[int] | None = None

    def __len__(self) -> int:
        return len(self.seqs)

    def rows(self) -> Iterator[PointRow]:
        for i, seq in enumerate(self.seqs):
            yield PointRow(
                self.device,
                self.metric,
                self.kind,
                seq,
                self.times[i],
                self.vals[i],
                self.qs[i] if self.qs is not None else 0,
                self.vmin[i] if self.vmin is not None else None,
                self.vmax[i] if self.vmax is not None else None,
                self.n[i] if self.n is not None else None,
            )


@dataclass(slots=True)
class EventRow:
    seq: int
    device: str
    kind: str
    name: str
    t: int
    q: int
    attrs_json: str


@dataclass(slots=True)
class StatusRow:
    """A gateway's own status report (hamlet/status_report.py), validated and re-encoded."""

    seq: int
    t: int
    report_json: str


@dataclass(slots=True)
class Classified:
    blocks: list[AcceptedBlock] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0
    # Sequence ranges newly settled by stored or rejected records.
    new_ranges: list[Range] = field(default_factory=list)
    # Seqs newly accounted for by declared gaps, as ranges per reason and counts.
    gap_ranges: list[Range] = field(default_factory=list)
    accounted: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(len(b) for b in self.blocks) + len(self.events) + len(self.statuses)

    @property
    def points(self) -> list[PointRow]:
        return [p for b in self.blocks for p in b.rows()]

    def all_new_ranges(self) -> list[Range]:
        return merge([*self.new_ranges, *self.gap_ranges])


@dataclass(slots=True)
class DeviceGate:
    """Caps the unregistered devices one gateway may create (each new one costs a series, a
    row on every live page, ...): registered devices and those already seen pass; new ones
    pass until ``cap`` unregistered devices exist; the records of any further one are
    rejected with a reason saying what to do."""

    known: set[str]
    unregistered: int
    cap: int
    new: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    def problem(self, device: str) -> str | None:
        if device in self.known:
            return None
        if self.unregistered >= self.cap:
            self.refused.add(device)
            return (
                f"device {device!r} is not registered and this gateway already sent "
                f"{self.unregistered} unregistered devices (limit {self.cap}): register it "
                f"('hamlet server add-device {device} --hamlet HAMLET') or raise "
                "ingest.max_unregistered_devices"
            )
        self.known.add(device)
        self.unregistered += 1
        self.new.append(device)
        return None


def _fmt_time(t: int) -> str:
    try:
        return datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{t} ms"


def time_problem(t: int, q: int, now_ms: int) -> str | None:
    """A reason the record's time cannot be stored, or None."""
    if q not in _QUALITIES:
        return f"unknown time quality {q} (expected one of {sorted(_QUALITIES)})"
    if t > now_ms + MAX_FUTURE_SKEW_MS:
        ahead = (t - now_ms) / 1000
        return (
            f"time {_fmt_time(t)} is {ahead:.0f} s ahead of the server clock "
            f"(limit {MAX_FUTURE_SKEW_MS // 1000} s): check the gateway's or device's clock"
        )
    if t < MIN_PLAUSIBLE_TIME_MS and q != _UNSYNCED:
        return (
            f"time {_fmt_time(t)} is before 2020-01-01: the clock was not set; "
            f"re-anchor it or mark it unsynced (q={_UNSYNCED})"
        )
    return None


def value_problem(metric: str, v: float) -> str | None:
    if math.isnan(v) or math.isinf(v):
        return f"{metric}: value is not finite ({v})"
    if abs(v) > MAX_ABS_VALUE:
        return f"{metric}={v:g} is beyond ±{MAX_ABS_VALUE:g}: not a reading"
    if metric.startswith(GATEWAY_METRIC_PREFIX):
        return None
    m = METRICS.get(metric)
    if m is not None and not m.lo <= v <= m.hi:
        return f"{metric}={v:g} {m.unit} is outside the possible range {m.lo:g}..{m.hi:g}"
    return None


def _decode(deltas: list[int]) -> list[int]:
    out: list[int] = []
    acc = 0
    for d in deltas:
        acc += d
        out.append(acc)
    return out


def _block_is_clean(
    block: SeriesBlock,
    seqs: list[int],
    times: list[int],
    *,
    seen: set[int],
    settled: RangeSet,
    now_ms: int,
) -> bool:
    """Whole-block checks with C-speed builtins; False sends the block point by point."""
    if block.kind == RecordKind.AGGREGATE:
        return False
    lo, hi = min(seqs), max(seqs)
    if lo < _MIN_SEQ or hi > _MAX_SEQ or settled.count_in(lo, hi):
        return False
    if len(set(seqs)) != len(seqs) or not seen.isdisjoint(seqs):
        return False
    if min(times) < MIN_PLAUSIBLE_TIME_MS or max(times) > now_ms + MAX_FUTURE_SKEW_MS:
        return False
    if block.q is not None and not _QUALITIES.issuperset(block.q):
        return False
    vals = block.v
    if not math.isfinite(sum(vals)):
        return False  # a NaN/inf, or a sum that overflowed: let the slow path say which
    if max(vals) > MAX_ABS_VALUE or min(vals) < -MAX_ABS_VALUE:
        return False
    metric = block.metric
    if metric.startswith(GATEWAY_METRIC_PREFIX):
        return True
    m = METRICS.get(metric)
    return m is None or (m.lo <= min(vals) and max(vals) <= m.hi)


def _slow_block(
    block: SeriesBlock,
    seqs: list[int],
    times: list[int],
    *,
    seen: set[int],
    settled: RangeSet,
    now_ms: int,
    out: Classified,
    reject: Callable[[int, str], None],
) -> AcceptedBlock:
    qs = block.q
    agg = block.kind == RecordKind.AGGREGATE
    metric = block.metric
    acc = AcceptedBlock(block.device, metric, str(block.kind))
    acc.qs = []
    if agg:
        acc.vmin, acc.vmax, acc.n = [], [], []
    for i, seq in enumerate(seqs):
        if seq in seen or seq in settled:
            out.duplicates += 1
            continue
        if (p := seq_problem(seq)) is not None:
            reject(seq, p)
            continue
        t = times[i]
        q = qs[i] if qs is not None else 0
        v = block.v[i]
        if abs(t) > _MAX_TIME_MS:
            reject(seq, f"time {t} is not a plausible ms timestamp")
            continue
        if (p := time_problem(t, q, now_ms)) is not None or (
            p := value_problem(metric, v)
        ) is not None:
            reject(seq, p)
            continue
        if agg:
            assert block.vmin is not None
            assert block.vmax is not None
            assert block.n is not None
            vmin, vmax, n = block.vmin[i], block.vmax[i], block.n[i]
            if (p := value_problem(metric, vmin)) is not None or (
                p := value_problem(metric, vmax)
            ) is not None:
                reject(seq, f"aggregate bound: {p}")
                continue
            if not vmin <= v <= vmax:
                reject(seq, f"aggregate mean {v:g} is not within min {vmin:g}..max {vmax:g}")
                continue
            if not 1 <= n <= _MAX_COUNT:
                reject(seq, f"aggregate count {n} must be 1..{_MAX_COUNT}")
                continue
            assert acc.vmin is not None
            assert acc.vmax is not None
            assert acc.n is not None
            acc.vmin.append(vmin)
            acc.vmax.append(vmax)
            acc.n.append(n)
        seen.add(seq)
        acc.seqs.append(seq)
        acc.times.append(t)
        acc.vals.append(v)
        acc.qs.append(q)
    return acc


def classify(
    batch: UplinkBatch,
    settled: RangeSet,
    now_ms: int,
    *,
    fast: bool = True,
    devices: DeviceGate | None = None,
) -> Classified:
    """``fast=False`` checks every block point by point (the reference the fast path must
    agree with; tests compare the two). ``devices`` caps unregistered devices."""
    out = Classified()
    seen: set[int] = set()
    taken: list[int] = []  # seqs newly settled (stored or rejected)
    rejected = out.rejected

    def reject(seq: int, reason: str) -> None:
        rejected.append((seq, reason))
        if _MIN_SEQ <= seq <= _MAX_SEQ:
            taken.append(seq)
            seen.add(seq)

    def refuse(seqs: list[int], reason: str) -> None:
        for seq in seqs:
            if seq in seen or seq in settled:
                out.duplicates += 1
            elif (p := seq_problem(seq)) is not None:
                reject(seq, p)
            else:
                reject(seq, reason)

    for block in batch.series:
        seqs = _decode(block.seq)
        times = _decode(block.t)
        if devices is not None and (p := devices.problem(block.device)) is not None:
            refuse(seqs, p)
            continue
        if fast and _block_is_clean(block, seqs, times, seen=seen, settled=settled, now_ms=now_ms):
            # Fast path (the normal case): the whole block is new and valid.
            seen.update(seqs)
            taken.extend(seqs)
            out.blocks.append(
                AcceptedBlock(
                    block.device,
                    block.metric,
                    str(block.kind),
                    seqs,
                    times,
                    list(block.v),
                    list(block.q) if block.q is not None and any(block.q) else None,
                )
            )
            continue
        acc = _slow_block(
            block, seqs, times, seen=seen, settled=settled, now_ms=now_ms, out=out, reject=reject
        )
        taken.extend(acc.seqs)
        if acc.seqs:
            out.blocks.append(acc)

    for ev in batch.events:
        seq = ev.seq
        if devices is not None and (p := devices.problem(ev.device)) is not None:
            refuse([seq], p)
            continue
        if seq in seen or seq in settled:
            out.duplicates += 1
            continue
        if (p := seq_problem(seq)) is not None:
            reject(seq, p)
            continue
        if abs(ev.t) > _MAX_TIME_MS:
            reject(seq, f"time {ev.t} is not a plausible ms timestamp")
            continue
        if (p := time_problem(ev.t, ev.q, now_ms)) is not None:
            reject(seq, p)
            continue
        bad = [k for k, a in ev.attrs.items() if isinstance(a, float) and not math.isfinite(a)]
        if bad:
            reject(seq, f"event attribute {bad[0]!r} is not finite")
            continue
        if ev.name == STATUS_EVENT and ev.device == batch.gateway:
            try:
                report = parse_attrs(ev.attrs)
            except ReportError as err:
                reject(seq, str(err))
                continue
            seen.add(seq)
            taken.append(seq)
            out.statuses.append(StatusRow(seq, ev.t, report.encode()))
            continue
        seen.add(seq)
        taken.append(seq)
        out.events.append(
            EventRow(
                seq,
                ev.device,
                str(ev.kind),
                ev.name,
                ev.t,
                ev.q,
                json.dumps(ev.attrs, ensure_ascii=False, sort_keys=True),
            )
        )

    taken.sort()
    out.new_ranges = compress(taken)
    if batch.gaps:
        claims = [(g.first, min(g.last, _MAX_SEQ)) for g in batch.gaps]
        valid = [(g, c) for g, c in zip(batch.gaps, claims, strict=True) if c[0] <= c[1]]
        # In the order declared: the first reason for a seq wins.
        fresh = first_claims([c for _, c in valid], settled.union(out.new_ranges))
        for (gap, claim), n in zip(valid, fresh, strict=True):
            if n > 0:
                out.accounted[str(gap.reason)] = out.accounted.get(str(gap.reason), 0) + n
                out.gap_ranges.append(claim)
    return out


def seq_bounds(batch: UplinkBatch) -> tuple[int, int] | None:
    """Lowest and highest seq the batch mentions (records and gaps), or None if empty."""
    lo: int | None = None
    hi: int | None = None
    for block in batch.series:
        s = _decode(block.seq)
        a, b = min(s), max(s)
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    for ev in batch.events:
        lo = ev.seq if lo is None else min(lo, ev.seq)
        hi = ev.seq if hi is None else max(hi, ev.seq)
    for g in batch.gaps:
        lo = g.first if lo is None else min(lo, g.first)
        hi = g.last if hi is None else max(hi, g.last)
    if lo is None or hi is None:
        return None
    # Clamp to what SQLite can hold (lo-1 and hi+1 included); out-of-range seqs are
    # rejected record by record.
    return min(max(lo, 0), _MAX_SEQ - 1), max(min(hi, _MAX_SEQ - 1), 0)
