"""History without transports: what a gateway would have uplinked, computed quickly.

Used by ``hamlet sim backfill`` (a month of data for a demo or a report card at once) and
``hamlet sim fleet`` (load for the server). Records are produced window by window in time
order and numbered with the gateway's sequence 1, 2, 3 … exactly as a gateway would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from firmware_sim.devices import Device, build_devices
from firmware_sim.scenario import Scenario
from hamlet.contract import (
    MAX_EVENTS_PER_BATCH,
    MAX_POINTS_PER_BATCH,
    MAX_SERIES_PER_BATCH,
    EventRecord,
    IngestLimits,
    Point,
    RecordKind,
    SeriesBlock,
    TimeQuality,
    UplinkBatch,
)

SeriesKind = Literal[RecordKind.READING, RecordKind.HEARTBEAT]


@dataclass(frozen=True, slots=True)
class Rec:
    """One record before it gets a gateway sequence number."""

    t_ms: int
    device: str
    metric: str  # metric name, or event name for events
    kind: RecordKind
    value: float = 0.0
    attrs: dict[str, str | int | float | bool] | None = None


@dataclass(slots=True)
class DeviceSeqStats:
    """What a gateway learns from one device's own sequence numbers (u32, per message)."""

    messages: int = 0
    lost: int = 0  # messages the device numbered but that never arrived (dropouts)
    gaps: int = 0  # runs of lost messages
    resets: int = 0  # reboots: the counter restarted at 0
    last_seq: int | None = None
    _missing: int = 0

    def sent(self, seq: int, *, arrived: bool, rebooted: bool) -> None:
        if rebooted:
            self.resets += 1
            self._missing = 0  # a gateway cannot see losses across a reset
        if not arrived:
            self._missing += 1
            return
        self.messages += 1
        if self._missing:
            self.gaps += 1
            self.lost += self._missing
            self._missing = 0
        self.last_seq = seq


class HistoryGenerator:
    """Walks simulated time from ``start`` to ``end`` producing each device's records.

    Each device numbers its messages with its firmware counter (restarting at 0 after a
    reboot), as it would over MQTT or serial; :attr:`seq_stats` holds what a gateway
    would count from those numbers (losses, resets).
    """

    def __init__(
        self,
        scn: Scenario,
        start: float,
        end: float,
        *,
        interval_s: float | None = None,
        hamlet: str | None = None,
        window_s: float = 3600.0,
    ) -> None:
        self.start = start
        self.end = end
        self.window_s = window_s
        self.devices: list[Device] = [
            d for d in build_devices(scn, start) if hamlet is None or d.spec.hamlet == hamlet
        ]
        self.interval = {
            d.id: interval_s or (d.spec.heartbeat_s if d.is_service else d.spec.interval_s)
            for d in self.devices
        }
        self._next = {d.id: start + _phase(d.id) * self.interval[d.id] for d in self.devices}
        self._up = {d.id: True for d in self.devices}
        self.seq_stats = {d.id: DeviceSeqStats() for d in self.devices}

    def windows(self) -> Iterator[tuple[float, list[Rec]]]:
        """(window end, records in it sorted by time) until ``end``."""
        t0 = self.start
        while t0 < self.end:
            t1 = min(self.end, t0 + self.window_s)
            recs: list[Rec] = []
            for d in self.devices:
                recs.extend(self._device_window(d, t0, t1))
            recs.sort(key=lambda r: (r.t_ms, r.device, r.metric))
            yield t1, recs
            t0 = t1

    def _device_window(self, d: Device, t0: float, t1: float) -> list[Rec]:
        out: list[Rec] = []
        stats = self.seq_stats[d.id]
        step = self.interval[d.id]
        t = self._next[d.id]
        while t < t1:
            ms = int(t * 1000)
            up = d.powered(t)
            if up != self._up[d.id]:
                self._up[d.id] = up
                state = "online" if up else "offline"
                out.append(Rec(ms, d.id, "status", RecordKind.EVENT, attrs={"state": state}))
            if up:
                rebooted = d.firmware.maybe_reboot(t)
                seq = d.firmware.next_seq()
                if d.is_service:
                    hb = {"heartbeat": 1.0, **d.heartbeat(t)}
                    out.extend(
                        Rec(ms, d.id, k, RecordKind.HEARTBEAT, float(v)) for k, v in hb.items()
                    )
                    stats.sent(seq, arrived=True, rebooted=rebooted)
                else:
                    readings = d.sample(t)  # {} when the sensor dropped the reading
                    out.extend(
                        Rec(ms, d.id, k, RecordKind.READING, float(v)) for k, v in readings.items()
                    )
                    stats.sent(seq, arrived=bool(readings), rebooted=rebooted)
            t += step
        self._next[d.id] = t
        for e in d.events_between(t0, t1):
            attrs = dict(e.attrs)
            stats.sent(d.firmware.next_seq(), arrived=True, rebooted=False)
            out.append(Rec(int(e.t * 1000), d.id, e.name, RecordKind.EVENT, attrs=attrs))
        return out


def _phase(device_id: str) -> float:
    """Devices do not all report on the same second."""
    return (sum(device_id.encode()) * 0.618034) % 1.0


# Bytes of JSON a record takes at most, to keep a batch under the server's inflated-body
# bound: a point is a few delta-encoded numbers (~30 B); an event carries its attributes.
POINT_JSON_BYTES: Final = 40
EVENT_JSON_BYTES: Final = 320
SERIES_JSON_BYTES: Final = 160


@dataclass
class BatchBuilder:
    """Numbers records with the gateway's sequence and packs them into UplinkBatches.

    A batch is full at ``max_records`` or at whichever of the server's limits (points,
    events, series blocks, inflated bytes) it would reach first.
    """

    gateway: str
    next_seq: int = 1
    max_records: int = 10_000
    limits: IngestLimits | None = None
    _points: dict[tuple[str, str, SeriesKind], list[Point]] = field(default_factory=dict)
    _events: list[EventRecord] = field(default_factory=list)
    _count: int = 0
    _bytes: int = 0

    def __post_init__(self) -> None:
        lim = self.limits
        self._max_points = lim.max_points_per_batch if lim else MAX_POINTS_PER_BATCH
        self._max_events = lim.max_events_per_batch if lim else MAX_EVENTS_PER_BATCH
        self._max_series = lim.max_series_per_batch if lim else MAX_SERIES_PER_BATCH
        # Half the bound: the estimate must never be the reason for a 413.
        self._max_bytes = lim.max_decompressed_bytes // 2 if lim else 1 << 62

    def add(self, rec: Rec) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self._count += 1
        if rec.kind == RecordKind.EVENT:
            self._bytes += EVENT_JSON_BYTES
            self._events.append(
                EventRecord(
                    seq=seq, device=rec.device, name=rec.metric, t=rec.t_ms, attrs=rec.attrs or {}
                )
            )
        else:
            kind: SeriesKind = (
                RecordKind.HEARTBEAT if rec.kind == RecordKind.HEARTBEAT else RecordKind.READING
            )
            key = (rec.device, rec.metric, kind)
            if key not in self._points:
                self._bytes += SERIES_JSON_BYTES
            self._bytes += POINT_JSON_BYTES
            self._points.setdefault(key, []).append(
                Point(seq=seq, t=rec.t_ms, v=rec.value, q=TimeQuality.SYNCED)
            )

    @property
    def full(self) -> bool:
        """One more record could break a limit: take the batch now."""
        return (
            self._count >= min(self.max_records, self._max_points)
            or len(self._events) >= self._max_events
            or len(self._points) >= self._max_series
            or self._bytes + EVENT_JSON_BYTES + SERIES_JSON_BYTES >= self._max_bytes
        )

    @property
    def empty(self) -> bool:
        return self._count == 0

    def take(self, sent_at_ms: int) -> UplinkBatch:
        series = [
            SeriesBlock.from_points(dev, metric, kind, pts)
            for (dev, metric, kind), pts in self._points.items()
        ]
        batch = UplinkBatch.model_construct(
            v=1,
            gateway=self.gateway,
            sent_at=sent_at_ms,
            series=series,
            events=list(self._events),
            gaps=[],
        )
        self._points.clear()
        self._events.clear()
        self._count = 0
        self._bytes = 0
        return batch


def batch_json(batch: UplinkBatch) -> bytes:
    return batch.model_dump_json(exclude_none=True).encode()
