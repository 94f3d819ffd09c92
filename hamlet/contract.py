"""The uplink contract: what a gateway posts to the server and what the server answers.

Both sides import this module, so it depends on pydantic and the standard library only
(the gateway must never need the server's dependencies).

Wire format (``POST /api/v1/ingest``, ``Content-Type: application/json``, usually
``Content-Encoding: gzip``): an :class:`UplinkBatch`. Readings travel *columnar*: one
:class:`SeriesBlock` per (device, metric, kind) with parallel lists, and ``seq`` and ``t``
delta-encoded (element 0 absolute, every later element the difference from the previous
one). Columnar + deltas + gzip is what keeps a reading under 15 bytes on a metered 3G link.

Every record (point or event) carries the gateway's sequence number. The server deduplicates
on (gateway, seq); the gateway also declares ranges it knowingly gave up (:class:`Gap`), so
the server can tell "missing" (lost in transit, still expected) from "accounted for".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

API_PREFIX: Final = "/api/v1"
INGEST_PATH: Final = f"{API_PREFIX}/ingest"
LIMITS_PATH: Final = f"{API_PREFIX}/limits"
CONTRACT_VERSION: Final = 1

# Bounds a server enforces and a gateway respects when sizing batches.
MAX_POINTS_PER_BATCH: Final = 100_000
MAX_EVENTS_PER_BATCH: Final = 10_000
MAX_SERIES_PER_BATCH: Final = 10_000
MAX_GAPS_PER_BATCH: Final = 10_000
# A reading may claim to be at most this far ahead of the receiver's clock (ms): more is a
# device or gateway clock gone wrong, and storing it would poison "latest value" queries.
MAX_FUTURE_SKEW_MS: Final = 5 * 60 * 1000
# Nothing older than 2020-01-01 is a real smart-hamlet reading: a Pi that boots without an
# RTC starts at 1970 and such stamps must be re-anchored, not stored.
MIN_PLAUSIBLE_TIME_MS: Final = 1_577_836_800_000

# Sequence numbers are positive signed 64-bit integers: what SQLite (and InfluxDB) can hold.
# JSON carries larger ones; the server rejects such a record alone, with this reason, and
# settles the rest of the batch (a gateway must not retry a batch forever over one record).
MIN_SEQ: Final = 1
MAX_SEQ: Final = 2**63 - 1


def seq_problem(seq: int) -> str | None:
    """Why ``seq`` is outside the sequence domain, or None."""
    if MIN_SEQ <= seq <= MAX_SEQ:
        return None
    return f"sequence number {seq} out of range (1..2^63-1)"


# No reading of any metric (gateway counters included) is larger than this: beyond it a
# value is a corrupt or hostile record, rejected alone, and sums behind hourly and daily
# means can never overflow a float (1e308 readings made a mean of "inf", sent as null).
MAX_ABS_VALUE: Final = 1e15


# Identifiers: short, printable, no spaces or quotes, so they are safe in file names, MQTT
# topics, InfluxDB tags and log lines.
IDENT_BODY: Final = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}"
# Anchored for pydantic and FastAPI, whose Rust regex ends `$` at the end of the text.
# Python's `re` `$` also matches before a trailing newline ("name\n"), so Python code never
# matches IDENT_PATTERN itself: it calls `is_ident`, the one check gateway and server share.
IDENT_PATTERN: Final = rf"^{IDENT_BODY}$"
Ident = Annotated[str, Field(pattern=IDENT_PATTERN, examples=["soil-1"])]
_IDENT_RE: Final = re.compile(IDENT_BODY)


def is_ident(value: str) -> bool:
    """True when the server accepts ``value`` as a gateway, device, metric or event name."""
    return _IDENT_RE.fullmatch(value) is not None


class RecordKind(StrEnum):
    """What a record is; decides how long a full gateway buffer keeps it."""

    READING = "reading"  # a raw measurement
    AGGREGATE = "aggregate"  # min/mean/max/count that replaced raw readings under budget
    HEARTBEAT = "heartbeat"  # a device or gateway saying "alive", with its figures
    EVENT = "event"  # kiosk sessions, dossiers, ratings, broadcasts
    ALERT = "alert"  # a threshold crossed, a device offline


class TimeQuality(IntEnum):
    """How far a record's wall time can be trusted (a Pi has no real-time clock)."""

    SYNCED = 0  # clock was NTP-synchronized when the reading was taken
    REANCHORED = 1  # taken before sync; time recomputed from monotonic clock at sync
    UNSYNCED = 2  # taken before sync and never re-anchored (boot ended before sync)
    DEVICE = 3  # time stamped by the device itself (node RTC / firmware clock)


class GapReason(StrEnum):
    """Why a gateway gave up a range of its own sequence numbers."""

    AGGREGATED = "aggregated"  # raw readings replaced by an aggregate record (budget)
    DROPPED = "dropped"  # deleted to keep the buffer within its byte budget
    CORRUPT = "corrupt"  # lost with a corrupt buffer file that had to be moved aside
    REJECTED = "rejected"  # refused by the server earlier and dead-lettered
    # reserved for records but never given to one: the gateway resumed above a lost buffer
    # file, whose last seq it could still read
    UNUSED = "unused"


def delta_encode(values: Sequence[int]) -> list[int]:
    """First value absolute, the rest differences: small numbers gzip well."""
    out: list[int] = []
    prev = 0
    for v in values:
        out.append(v - prev)
        prev = v
    return out


def delta_decode(values: Sequence[int]) -> list[int]:
    out: list[int] = []
    acc = 0
    for d in values:
        acc += d
        out.append(acc)
    return out


@dataclass(frozen=True, slots=True)
class Point:
    """One decoded point of a series block (convenience view, not on the wire)."""

    seq: int
    t: int
    v: float
    q: TimeQuality
    vmin: float | None = None
    vmax: float | None = None
    n: int | None = None


class SeriesBlock(BaseModel):
    """Points of one (device, metric, kind) in one batch, columnar and delta-encoded."""

    model_config = ConfigDict(extra="forbid")

    device: Ident
    metric: Ident
    kind: Literal[RecordKind.READING, RecordKind.AGGREGATE, RecordKind.HEARTBEAT] = (
        RecordKind.READING
    )
    seq: list[int] = Field(description="gateway sequence numbers, delta-encoded")
    t: list[int] = Field(description="wall time, ms since epoch (UTC), delta-encoded")
    # Non-finite values are allowed through parsing so the server can reject the single
    # point with a reason instead of the whole batch; JSON itself cannot carry them
    # except as the non-standard NaN/Infinity tokens some encoders emit.
    v: list[float]
    q: list[int] | None = Field(
        default=None, description="TimeQuality per point; omitted when all are SYNCED"
    )
    vmin: list[float] | None = None
    vmax: list[float] | None = None
    n: list[int] | None = None

    @model_validator(mode="after")
    def _parallel(self) -> SeriesBlock:
        size = len(self.seq)
        if size == 0:
            raise ValueError("a series block needs at least one point")
        cols: dict[str, Sequence[object] | None] = {
            "t": self.t,
            "v": self.v,
            "q": self.q,
            "vmin": self.vmin,
            "vmax": self.vmax,
            "n": self.n,
        }
        for name, col in cols.items():
            if col is not None and len(col) != size:
                raise ValueError(f"column {name!r} has {len(col)} values, seq has {size}")
        if self.kind == RecordKind.AGGREGATE and (
            self.vmin is None or self.vmax is None or self.n is None
        ):
            raise ValueError("an aggregate block needs vmin, vmax and n")
        return self

    def points(self) -> Iterator[Point]:
        seqs = delta_decode(self.seq)
        times = delta_decode(self.t)
        qs = self.q or [0] * len(seqs)
        for i, s in enumerate(seqs):
            yield Point(
                seq=s,
                t=times[i],
                v=self.v[i],
                q=TimeQuality(qs[i]) if qs[i] in _TQ_VALUES else TimeQuality.UNSYNCED,
                vmin=self.vmin[i] if self.vmin is not None else None,
                vmax=self.vmax[i] if self.vmax is not None else None,
                n=self.n[i] if self.n is not None else None,
            )

    @classmethod
    def from_points(
        cls,
        device: str,
        metric: str,
        kind: Literal[RecordKind.READING, RecordKind.AGGREGATE, RecordKind.HEARTBEAT],
        points: Iterable[Point],
    ) -> SeriesBlock:
        pts = sorted(points, key=lambda p: p.seq)
        qs = [int(p.q) for p in pts]
        agg = kind == RecordKind.AGGREGATE
        return cls.model_construct(
            device=device,
            metric=metric,
            kind=kind,
            seq=delta_encode([p.seq for p in pts]),
            t=delta_encode([p.t for p in pts]),
            v=[p.v for p in pts],
            q=qs if any(qs) else None,
            vmin=[p.vmin if p.vmin is not None else p.v for p in pts] if agg else None,
            vmax=[p.vmax if p.vmax is not None else p.v for p in pts] if agg else None,
            n=[p.n or 1 for p in pts] if agg else None,
        )


_TQ_VALUES: Final = frozenset(int(x) for x in TimeQuality)

Scalar = str | int | float | bool


class EventRecord(BaseModel):
    """A discrete happening: a kiosk session, a dossier, a rating, an alert, a status."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    device: Ident
    kind: Literal[RecordKind.EVENT, RecordKind.ALERT] = RecordKind.EVENT
    name: Ident = Field(examples=["dossier_submitted", "rating", "status"])
    t: int
    q: int = 0
    attrs: dict[Ident, Scalar] = Field(default_factory=dict, max_length=32)


class Gap(BaseModel):
    """A range of the gateway's own sequence numbers it knowingly gave up, and why."""

    model_config = ConfigDict(extra="forbid")

    first: int = Field(ge=1)
    last: int = Field(ge=1)
    reason: GapReason

    @model_validator(mode="after")
    def _ordered(self) -> Gap:
        if self.last < self.first:
            raise ValueError("gap last < first")
        return self


class UplinkBatch(BaseModel):
    """One POST from a gateway. Idempotent: re-sending it changes nothing on the server."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "v": 1,
                    "gateway": "gw-dinh-phuoc",
                    "sent_at": 1764309600000,
                    "series": [
                        {
                            "device": "salinity-1",
                            "metric": "salinity",
                            "seq": [1001, 3, 3],
                            "t": [1764309540000, 60000, 60000],
                            "v": [0.8, 0.82, 0.85],
                        }
                    ],
                    "events": [
                        {
                            "seq": 1002,
                            "device": "kiosk-1",
                            "name": "rating",
                            "t": 1764309550000,
                            "attrs": {"scale": 3, "score": 3},
                        }
                    ],
                    "gaps": [],
                }
            ]
        },
    )

    v: Literal[1] = CONTRACT_VERSION
    gateway: Ident
    sent_at: int = Field(description="gateway wall time at sending, ms since epoch")
    series: list[SeriesBlock] = Field(default_factory=list, max_length=MAX_SERIES_PER_BATCH)
    events: list[EventRecord] = Field(default_factory=list, max_length=MAX_EVENTS_PER_BATCH)
    gaps: list[Gap] = Field(default_factory=list, max_length=MAX_GAPS_PER_BATCH)

    @model_validator(mode="after")
    def _bounded(self) -> UplinkBatch:
        total = sum(len(s.seq) for s in self.series)
        if total > MAX_POINTS_PER_BATCH:
            raise ValueError(f"{total} points in one batch; at most {MAX_POINTS_PER_BATCH}")
        return self

    def record_count(self) -> int:
        return sum(len(s.seq) for s in self.series) + len(self.events)


class IngestLimits(BaseModel):
    """What one ingest request may carry on this server (``GET /api/v1/limits``), so a
    client sizes its batches from the server's own figures rather than guessing."""

    contract_version: int = CONTRACT_VERSION
    max_points_per_batch: int = MAX_POINTS_PER_BATCH
    max_events_per_batch: int = MAX_EVENTS_PER_BATCH
    max_series_per_batch: int = MAX_SERIES_PER_BATCH
    max_gaps_per_batch: int = MAX_GAPS_PER_BATCH
    max_body_bytes: int = Field(description="compressed request body, bytes")
    max_decompressed_bytes: int = Field(description="inflated request body, bytes")
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS


class Rejection(BaseModel):
    seq: int
    reason: str = Field(examples=["value is not finite (nan)"])


class IngestResult(BaseModel):
    """The server's answer. A 200 means every seq in the batch is durably settled:
    stored, recognised as a duplicate, or rejected with a reason (never to be retried)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = Field(default_factory=list)


class SeqRange(BaseModel):
    first: int
    last: int


class GatewayAccounting(BaseModel):
    """Loss accounting for one gateway: 'nothing lost' as a number anyone can check."""

    id: str
    hamlet: str | None = None
    last_seen: int | None = Field(default=None, description="server time of last batch, ms")
    received: int = Field(0, description="records accepted and stored")
    duplicates: int = 0
    rejected: int = 0
    accounted: dict[str, int] = Field(
        default_factory=dict, description="seqs the gateway declared given up, by reason"
    )
    missing: int = Field(0, description="seqs below the highest seen that never arrived")
    missing_ranges: list[SeqRange] = Field(default_factory=list)
    highest_seq: int = 0
    last_heartbeat: dict[str, float] = Field(default_factory=dict)
