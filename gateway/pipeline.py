"""Sources -> normalize/validate -> stamp -> durable buffer; and a fan-out for ``tail``.

Normalization happens here and only here: sources hand over device units and names
(:mod:`gateway.records`), so a conversion can never be applied twice or skipped.
A bad record is dead-lettered with its reason and never fails the records around it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gateway import deadletter
from gateway.buffer import DUPLICATE, REFUSED, DurableBuffer, NewRecord
from gateway.buffer.identity import Receipt, receipt_key
from gateway.clock import Anchor, Clock, TimeRejected, stamp_quality
from gateway.normalize import NormalizeError, Normalizer
from gateway.records import Event, Reading, Record
from hamlet.contract import is_ident

log = logging.getLogger(__name__)

# A tail line is a plain JSON-ready dict; subscribers get them after commit.
TailItem = dict[str, Any]
TAIL_QUEUE: int = 2000
# What a record's own content can make preparing it raise (e.g. float() of a 400-digit int).
_RECORD_ERRORS: Final = (UnicodeError, ValueError, TypeError, OverflowError, RecursionError)


class BadIdent(ValueError):
    """A device or metric name the uplink contract would refuse."""


@dataclass
class PipelineCounters:
    received: int = 0
    committed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # copies of stored records (by receipt): no new seq


@dataclass(eq=False)  # identity-hashed: kept in a set
class TailSubscriber:
    queue: asyncio.Queue[TailItem] = field(default_factory=lambda: asyncio.Queue(TAIL_QUEUE))
    dropped: int = 0


class Pipeline:
    """Implements :class:`gateway.records.Sink`."""

    def __init__(
        self,
        buffer: DurableBuffer,
        clock: Clock,
        normalizer: Normalizer | None = None,
    ) -> None:
        self._buffer = buffer
        self._clock = clock
        self._normalizer = normalizer if normalizer is not None else Normalizer()
        self.counters = PipelineCounters()
        self._subs: set[TailSubscriber] = set()
        self._anchored: Anchor | None = None
        self._reanchoring: asyncio.Future[None] | None = None
        self._in_order = asyncio.Lock()
        # Set on every dead letter, for whoever reports them (gateway/status_report.py).
        self.dead_letter_added = asyncio.Event()

    # -- Sink -----------------------------------------------------------------------
    async def submit(self, records: Sequence[Record]) -> None:
        if not records:
            await self._buffer.durable()  # dead letters a source just handed over, on disk
            return
        self.counters.received += len(records)
        stamp = self._clock.now()
        # Submits reach the buffer in the order they were made (a later batch overtaking an
        # earlier one could store a redelivered copy before its original, or a device's
        # status before its earlier event). Only a re-anchor makes a submit wait in here,
        # and asyncio's lock is FIFO: one made just as the lock is released queues behind
        # the submits already waiting instead of overtaking them.
        async with self._in_order:
            if self._clock.anchor is not None and self._clock.anchor is not self._anchored:
                self._anchored = self._clock.anchor
                self._reanchoring = asyncio.ensure_future(self._reanchor(self._anchored))
            if self._reanchoring is not None and not self._reanchoring.done():
                # Shielded: a submit cancelled while it waits must not cancel the re-anchor.
                await asyncio.shield(self._reanchoring)
            out, kept = self._prepared(records, stamp)
            committed = self._buffer.enqueue(out) if out else None
        if committed is None:
            # Every record was dead-lettered here: on disk before the source acknowledges.
            await self._buffer.durable()
            return
        outcomes = await committed
        self.counters.committed += sum(1 for o in outcomes if o > 0)
        self.counters.duplicates += outcomes.count(DUPLICATE)
        self.counters.dead_lettered += outcomes.count(REFUSED)
        if REFUSED in outcomes:
            self.dead_letter_added.set()
        if self._subs:
            self._fan_out(outcomes, out, kept)

    def _prepared(
        self, records: Sequence[Record], stamp: Any
    ) -> tuple[list[NewRecord], list[Record]]:
        """What the buffer stores for ``records``, and their canonical forms; the rest is
        dead-lettered, each with its reason."""
        # Device units -> canonical, once per record; then what a frame implies (salinity).
        canonical: list[tuple[Record, Record]] = []  # (as received, canonical)
        for rec in records:
            self._canonical(rec, canonical)
        derived = self._derive([c for _, c in canonical])
        self.counters.received += len(derived)
        for rec in derived:
            self._canonical(rec, canonical)
        out: list[NewRecord] = []
        kept: list[Record] = []
        for rec, norm in canonical:
            try:
                new = self._prepare(norm, stamp)
            except (TimeRejected, BadIdent) as err:
                self._dead(rec, str(err))
                continue
            except _RECORD_ERRORS as err:
                # Whatever one record's content makes fail, it fails alone (finding 2).
                self._dead(rec, f"prepare_failed: {type(err).__name__}: {err}")
                continue
            out.append(new)
            kept.append(norm)
        return out, kept

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        self.counters.dead_lettered += 1
        self.dead_letter_added.set()
        self._buffer.put_dead(deadletter.make(self._clock.wall_ms(), source, reason, raw))

    # -- internals ------------------------------------------------------------------
    async def _reanchor(self, anchor: Anchor) -> None:
        moved = await self._buffer.reanchor(anchor)
        if moved:
            log.info("clock: re-anchored %d records taken before sync", moved)

    def _canonical(self, rec: Record, into: list[tuple[Record, Record]]) -> None:
        """Append ``(rec, canonical rec)`` to ``into``, or dead-letter ``rec`` with the reason."""
        try:
            into.append((rec, self._normalizer.normalize(rec)))
        except NormalizeError as err:
            self._dead(rec, str(err))
        except _RECORD_ERRORS as err:
            self._dead(rec, f"prepare_failed: {type(err).__name__}: {err}")

    def _derive(self, canonical: Sequence[Record]) -> list[Record]:
        """Readings a frame implies, each with a receipt of its own derived from its
        source's: a retransmitted frame derives the same reading, recognised as a copy."""
        return [
            d if d.receipt is None
            else replace(d, receipt=Receipt(receipt_key(d.receipt.key, d.metric), d.receipt.check))
            for d in self._normalizer.derive(canonical)
        ]  # fmt: skip

    def _prepare(self, rec: Record, stamp: Any) -> NewRecord:
        """``rec`` (canonical) checked and stamped, as the buffer stores it."""
        # An id the contract refuses would make the server refuse the whole batch.
        name = rec.metric if isinstance(rec, Reading) else rec.name
        if not is_ident(rec.device) or not is_ident(name):
            raise BadIdent(
                f"bad_ident: device {rec.device[:70]!r} / {name[:70]!r} is not a valid "
                "identifier (letters, digits, _ . : -, at most 64)"
            )
        wall, tq = stamp_quality(stamp, rec.device_time_ms)
        if isinstance(rec, Reading):
            return NewRecord(
                rec.kind,
                rec.device,
                rec.metric,
                float(rec.value),
                wall,
                tq,
                stamp.mono_ns,
                receipt=rec.receipt,
                source=rec.source,
            )
        attrs = json.dumps(dict(rec.attrs), separators=(",", ":"), ensure_ascii=False)
        return NewRecord(
            rec.kind,
            rec.device,
            rec.name,
            None,
            wall,
            tq,
            stamp.mono_ns,
            attrs,
            receipt=rec.receipt,
            source=rec.source,
        )

    def _dead(self, rec: Record, reason: str) -> None:
        self.counters.dead_lettered += 1
        self.dead_letter_added.set()
        raw = json.dumps(_record_json(rec), ensure_ascii=False, default=str)
        self._buffer.put_dead(deadletter.make(self._clock.wall_ms(), rec.source, reason, raw))

    # -- tail -----------------------------------------------------------------------
    def subscribe(self) -> TailSubscriber:
        sub = TailSubscriber()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: TailSubscriber) -> None:
        self._subs.discard(sub)

    def _fan_out(self, outcomes: list[int], out: list[NewRecord], kept: list[Record]) -> None:
        items: list[TailItem] = []
        for seq, new, rec in zip(outcomes, out, kept, strict=True):
            if seq <= 0:
                continue  # a copy, or refused: nothing new was committed
            item: TailItem
            if isinstance(rec, Event):
                item = {
                    "seq": seq,
                    "kind": new.kind.value,
                    "device": new.device,
                    "name": new.metric,
                    "attrs": dict(rec.attrs),
                    "t": new.wall_ms,
                    "source": rec.source,
                }
            else:
                item = {
                    "seq": seq,
                    "kind": new.kind.value,
                    "device": new.device,
                    "metric": new.metric,
                    "value": new.value,
                    "t": new.wall_ms,
                    "tq": new.tq,
                    "source": rec.source,
                }
            items.append(item)
        for sub in self._subs:
            for item in items:
                try:
                    sub.queue.put_nowait(item)
                except asyncio.QueueFull:
                    # A slow terminal must never slow the pipeline: count and move on.
                    sub.dropped += 1


def _record_json(rec: Record) -> dict[str, Any]:
    if isinstance(rec, Reading):
        return {
            "device": rec.device,
            "metric": rec.metric,
            "value": rec.value,
            "unit": rec.unit,
            "kind": rec.kind.value,
            "device_time_ms": rec.device_time_ms,
        }
    return {
        "device": rec.device,
        "name": rec.name,
        "attrs": dict(rec.attrs),
        "kind": rec.kind.value,
        "device_time_ms": rec.device_time_ms,
    }
