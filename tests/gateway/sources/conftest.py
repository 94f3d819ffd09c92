"""Fixtures for source tests: devices on the wire, and the gateway's real pipeline.

``committed`` is the real :class:`gateway.pipeline.Pipeline` over a real SQLite
:class:`DurableBuffer` with the real :class:`Normalizer`; the test watches it through the
pipeline's own ``tail`` subscription (records as committed) and the dead-letter calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Record
from tests.support.broker import Broker


@dataclass
class RecordingSink:
    records: list[Record] = field(default_factory=list)
    rejects: list[tuple[str, str, bytes | str]] = field(default_factory=list)
    submits: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, records: Sequence[Record]) -> None:
        self.submits += 1
        self.records.extend(records)
        self._changed.set()

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        self.rejects.append((source, reason, raw))
        self._changed.set()

    async def wait_until(self, cond: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


class Committed:
    """The real pipeline as a source sees it, plus what the test needs to observe."""

    def __init__(self, pipeline: Pipeline, buffer: DurableBuffer) -> None:
        self.pipeline = pipeline
        self.buffer = buffer
        self._after = 0
        self._read_lock = asyncio.Lock()
        self.items: list[dict[str, Any]] = []
        self.rejects: list[tuple[str, str, bytes | str]] = []
        self.submits = 0
        self._changed = asyncio.Event()

    async def submit(self, records: Sequence[Record]) -> None:
        self.submits += 1
        await self.pipeline.submit(records)
        # submit() returned: the records are committed; read them back from the file
        # (under a lock: two sources may submit at once).
        async with self._read_lock:
            stored, _ = await self.buffer.read_batch(self._after, None, 100_000, hold_pending=False)
            for r in stored:
                self._after = r.seq
                item: dict[str, Any] = {
                    "seq": r.seq, "kind": r.kind.value, "device": r.device,
                    "t": r.wall_ms, "tq": r.tq,
                }  # fmt: skip
                if r.value is None:
                    item.update(name=r.metric, attrs=json.loads(r.attrs or "{}"))
                else:
                    item.update(metric=r.metric, value=r.value)
                self.items.append(item)
        self._changed.set()

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        self.pipeline.reject(source, reason, raw)
        self.rejects.append((source, reason, raw))
        self._changed.set()

    @property
    def readings(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "metric" in i]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "name" in i]

    async def wait_until(self, cond: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()

    async def dead_codes(self) -> dict[str, int]:
        _, by_code, _ = await self.buffer.dead_summary(50)
        return by_code


@pytest.fixture
async def committed(tmp_path: Path) -> AsyncIterator[Committed]:
    clock = Clock(ClockConfig(sync="always"))
    data = tmp_path / "gateway"
    data.mkdir()
    async with DurableBuffer(BufferConfig(durability_window_s=0.2), data, clock.boot_id) as buffer:
        yield Committed(Pipeline(buffer, clock), buffer)


class Publisher:
    """A device on the broker (the device boundary): publishes and waits for PUBACK."""

    def __init__(self, broker: Broker, client_id: str = "test-device") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_broker: Broker) -> Iterator[Publisher]:
    pub = Publisher(mqtt_broker)
    try:
        yield pub
    finally:
        pub.close()
