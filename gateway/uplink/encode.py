"""Buffered records -> one gzip JSON :class:`hamlet.contract.UplinkBatch` body.

Built as plain dicts in the contract's exact shape (the server validates it with the
pydantic models); skipping model construction on the gateway saves CPU on a Pi.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.buffer import PendingGap, StoredRecord
from gateway.clock import PENDING
from hamlet.contract import CONTRACT_VERSION, RecordKind, TimeQuality, delta_encode

_UNSYNCED = int(TimeQuality.UNSYNCED)
_SERIES_KINDS = frozenset({RecordKind.READING, RecordKind.AGGREGATE, RecordKind.HEARTBEAT})


@dataclass(frozen=True, slots=True)
class Encoded:
    body: bytes  # gzip-compressed JSON
    raw_bytes: int  # JSON size before compression
    seqs: list[int]
    gap_firsts: list[int]


def _q(tq: int) -> int:
    # PENDING is a local state: on the wire it is what it is now, not yet re-anchored.
    return _UNSYNCED if tq == PENDING else tq


def batch_dict(
    gateway: str, sent_at: int, records: Sequence[StoredRecord], gaps: Sequence[PendingGap]
) -> dict[str, Any]:
    series: dict[tuple[str, str, RecordKind], list[StoredRecord]] = {}
    events: list[dict[str, Any]] = []
    for r in records:
        if r.kind in _SERIES_KINDS:
            series.setdefault((r.device, r.metric, r.kind), []).append(r)
        else:
            ev: dict[str, Any] = {
                "seq": r.seq,
                "device": r.device,
                "kind": r.kind.value,
                "name": r.metric,
                "t": r.wall_ms,
                "attrs": json.loads(r.attrs) if r.attrs else {},
            }
            q = _q(r.tq)
            if q:
                ev["q"] = q
            events.append(ev)
    blocks: list[dict[str, Any]] = []
    for (device, metric, kind), rows in series.items():
        block: dict[str, Any] = {
            "device": device,
            "metric": metric,
            "seq": delta_encode([r.seq for r in rows]),
            "t": delta_encode([r.wall_ms for r in rows]),
            "v": [r.value for r in rows],
        }
        if kind != RecordKind.READING:
            block["kind"] = kind.value
        qs = [_q(r.tq) for r in rows]
        if any(qs):
            block["q"] = qs
        if kind == RecordKind.AGGREGATE:
            block["vmin"] = [r.vmin if r.vmin is not None else r.value for r in rows]
            block["vmax"] = [r.vmax if r.vmax is not None else r.value for r in rows]
            block["n"] = [r.n or 1 for r in rows]
        blocks.append(block)
    return {
        "v": CONTRACT_VERSION,
        "gateway": gateway,
        "sent_at": sent_at,
        "series": blocks,
        "events": events,
        "gaps": [{"first": g.first, "last": g.last, "reason": g.reason.value} for g in gaps],
    }


def encode_batch(
    gateway: str,
    sent_at: int,
    records: Sequence[StoredRecord],
    gaps: Sequence[PendingGap],
    level: int = 6,
) -> Encoded:
    raw = json.dumps(
        batch_dict(gateway, sent_at, records, gaps), separators=(",", ":"), allow_nan=False
    ).encode()
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip container
    body = comp.compress(raw) + comp.flush()
    return Encoded(body, len(raw), [r.seq for r in records], [g.first for g in gaps])
