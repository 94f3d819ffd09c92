"""Building fixed scenarios for the indicator tests: Vietnam-time clocks and uplink batches."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal

from hamlet.contract import EventRecord, Point, RecordKind, SeriesBlock, UplinkBatch
from hamlet.vncalendar import VN_TZ

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    """Epoch ms of a Vietnamese wall-clock time."""
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=VN_TZ).timestamp() * 1000)


class Seqs:
    """A gateway's sequence numbers: they only grow (a node's reboot does not touch them)."""

    def __init__(self) -> None:
        self._it = itertools.count(1)

    def take(self, n: int) -> list[int]:
        return [next(self._it) for _ in range(n)]


def every(start: int, end: int, step: int) -> list[int]:
    return list(range(start, end, step))


def series(
    seqs: Seqs,
    device: str,
    metric: str,
    times: list[int],
    values: Iterable[float] | None = None,
    *,
    kind: Literal[
        RecordKind.READING, RecordKind.AGGREGATE, RecordKind.HEARTBEAT
    ] = RecordKind.READING,
    q: int = 0,
) -> SeriesBlock:
    vals = list(values) if values is not None else [1.0 + (i % 5) * 0.01 for i in range(len(times))]
    pts = [
        Point(seq=s, t=t, v=v, q=q)  # type: ignore[arg-type]
        for s, t, v in zip(seqs.take(len(times)), times, vals, strict=True)
    ]
    return SeriesBlock.from_points(device, metric, kind, pts)


def event(seqs: Seqs, device: str, name: str, t: int, **attrs: str | int) -> EventRecord:
    return EventRecord(seq=seqs.take(1)[0], device=device, name=name, t=t, attrs=attrs)


def batch(
    gateway: str,
    blocks: Iterable[SeriesBlock] = (),
    events: Iterable[EventRecord] = (),
    sent_at: int = 0,
) -> UplinkBatch:
    return UplinkBatch(gateway=gateway, sent_at=sent_at, series=list(blocks), events=list(events))


def chunked(block: SeriesBlock, size: int) -> Iterator[SeriesBlock]:
    """Split a block into blocks of at most ``size`` points (gateways send in batches)."""
    pts = list(block.points())
    for i in range(0, len(pts), size):
        yield SeriesBlock.from_points(block.device, block.metric, block.kind, pts[i : i + size])
