"""What the buffer takes and hands out: records in, records out, the outcomes of a commit,
and the one error a committer must act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.buffer.identity import Receipt
from hamlet.contract import GapReason, RecordKind


class BufferError(Exception):
    """The buffer could not commit; the caller must not acknowledge its source."""


# Per-record outcomes of a commit besides a seq (seqs start at 1).
DUPLICATE: Final = 0
REFUSED: Final = -1


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A stamped record on its way into the buffer (the pipeline builds these)."""

    kind: RecordKind
    device: str
    metric: str  # metric name, or event name for events/alerts
    value: float | None
    wall_ms: int
    tq: int
    mono_ns: int
    attrs: str | None = None  # JSON object, events only
    receipt: Receipt | None = None  # identity as received: a copy gets no new seq
    source: str = ""  # for the dead letter, should the record prove unstorable


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    kind: RecordKind
    device: str
    metric: str
    value: float | None
    wall_ms: int
    tq: int
    vmin: float | None = None
    vmax: float | None = None
    n: int | None = None
    attrs: str | None = None


@dataclass(frozen=True, slots=True)
class PendingGap:
    first: int
    last: int
    reason: GapReason
