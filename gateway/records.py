"""What sources hand to the pipeline, and the pipeline's promise back to them.

Sources decode their transport into :class:`Reading` and :class:`Event` values in the
*device's* units and names; the pipeline normalizes, stamps time, assigns sequence numbers
and commits. A source acknowledges its transport (MQTT PUBACK, serial frame, Modbus cycle)
only after :meth:`Sink.submit` has returned: by then the records are on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hamlet.contract import RecordKind, Scalar

if TYPE_CHECKING:
    from gateway.buffer.identity import Receipt


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement as the device gave it."""

    device: str
    metric: str
    value: float
    unit: str | None = None  # the device's unit; None means already canonical
    kind: RecordKind = RecordKind.READING
    # Time stamped by the device itself (ms since epoch), if it has a trustworthy clock.
    device_time_ms: int | None = None
    source: str = ""  # which source produced it, for counters and dead letters
    # What was received, when the transport can deliver it twice: a copy gets no new seq.
    receipt: Receipt | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A discrete happening (kiosk session, dossier, rating, status, alert)."""

    device: str
    name: str
    attrs: Mapping[str, Scalar] = field(default_factory=dict)
    kind: RecordKind = RecordKind.EVENT
    device_time_ms: int | None = None
    source: str = ""
    receipt: Receipt | None = None


Record = Reading | Event


class Sink(Protocol):
    """The pipeline as a source sees it."""

    async def submit(self, records: Sequence[Record]) -> None:
        """Normalize, stamp, sequence and durably commit ``records``.

        Returns once they are committed (group commit: may wait up to the commit interval).
        Records that fail normalization (or cannot be stored) are dead-lettered with a
        reason, not raised; the rest of the group is still committed. A record whose
        ``receipt`` shows it is a copy of one already stored is not stored again.
        """

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        """Dead-letter input that could not even be decoded into records."""
