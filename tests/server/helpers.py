"""Building uplink batches and posting them the way a gateway does (gzip JSON, bearer)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterable, Sequence

import httpx

from hamlet.contract import (
    INGEST_PATH,
    EventRecord,
    Gap,
    GapReason,
    Point,
    RecordKind,
    SeriesBlock,
    TimeQuality,
    UplinkBatch,
)
from hamlet.status_report import REPORT_ATTR, STATUS_EVENT, GatewayReport, SourceReport


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def block(
    device: str,
    metric: str,
    seqs: Sequence[int],
    *,
    t0: int | None = None,
    step_ms: int = 60_000,
    values: Sequence[float] | None = None,
    q: TimeQuality = TimeQuality.SYNCED,
    kind: RecordKind = RecordKind.READING,
    times: Sequence[int] | None = None,
) -> SeriesBlock:
    t0 = now_ms() - step_ms * len(seqs) if t0 is None else t0
    vals = values if values is not None else [1.0 + (i % 7) * 0.1 for i in range(len(seqs))]
    ts = times if times is not None else [t0 + i * step_ms for i in range(len(seqs))]
    pts = [Point(seq=s, t=ts[i], v=vals[i], q=q) for i, s in enumerate(seqs)]
    return SeriesBlock.from_points(device, metric, kind, pts)


def status_event(
    gateway: str, seq: int, report: str | None = None, t: int | None = None
) -> EventRecord:
    """The gateway's own status report as it sends it (hamlet/status_report.py); by default
    one healthy MQTT source."""
    t = now_ms() if t is None else t
    if report is None:
        src = SourceReport(name="mqtt", kind="mqtt", state="running", since=t)
        report = GatewayReport(at=t, sources=[src]).encode()
    return EventRecord(seq=seq, device=gateway, name=STATUS_EVENT, t=t, attrs={REPORT_ATTR: report})


def batch(
    gateway: str,
    series: Iterable[SeriesBlock] = (),
    events: Iterable[EventRecord] = (),
    gaps: Iterable[tuple[int, int, GapReason]] = (),
) -> UplinkBatch:
    return UplinkBatch(
        gateway=gateway,
        sent_at=now_ms(),
        series=list(series),
        events=list(events),
        gaps=[Gap(first=a, last=b, reason=r) for a, b, r in gaps],
    )


def body(b: UplinkBatch, *, compress: bool = True) -> tuple[bytes, dict[str, str]]:
    raw = b.model_dump_json().encode()
    headers = {"Content-Type": "application/json"}
    if compress:
        return gzip.compress(raw, 6), {**headers, "Content-Encoding": "gzip"}
    return raw, headers


def post(
    client: httpx.Client,
    token: str | None,
    b: UplinkBatch | bytes,
    *,
    compress: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(b, UplinkBatch):
        data, hdrs = body(b, compress=compress)
    else:
        data, hdrs = b, {"Content-Type": "application/json"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    return client.post(INGEST_PATH, content=data, headers=hdrs)


def raw_json(obj: object) -> bytes:
    return json.dumps(obj).encode()
