"""Hostile input through the whole path: MQTT source -> pipeline -> durable buffer (finding 2).

Every good payload is committed; every bad one is dead-lettered, each found one by one by its
marker, with its reason code; nothing raises out of the path, so nothing can stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gateway.buffer import DurableBuffer
from gateway.clock import Clock, ClockConfig
from gateway.deadletter import DeadLetter
from gateway.pipeline import Pipeline
from gateway.sources.base import SourceStatus
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import MqttSource
from hamlet.contract import RecordKind
from tests.conftest import require_tool
from tests.gateway.conftest import buffer_config
from tests.support.broker import Broker
from tests.support.hostile import (
    EVENT_TOPIC,
    GOOD_NOTE,
    HOSTILE,
    KIOSK,
    TELEMETRY_TOPIC,
    good_event,
    good_reading,
    reading_id,
)

# One payload: topic, bytes, what must happen ("good", "good_value", "any" or a reason code),
# and the key its dead letter is found by: "m:<marker>", or "v:<value>" for a reading the
# pipeline refused after decoding (its dead letter holds the record, not the bytes).
Item = tuple[str, bytes, str, str]
_MARK_RX: Final = re.compile(rb'"m": ?"([^"]+)"')
_VALUE_RX: Final = re.compile(rb'"value": ([^,}]+)')


def letter_key(raw: bytes) -> str:
    m = _MARK_RX.search(raw)
    if m:
        return "m:" + m.group(1).decode()
    v = _VALUE_RX.search(raw)
    return "v:" + v.group(1).decode() if v else "?"


@dataclass
class Expect:
    good_events: Counter[str] = field(default_factory=Counter)
    good_readings: Counter[int] = field(default_factory=Counter)
    dead: Counter[tuple[str, str]] = field(default_factory=Counter)  # (key, code) -> n


def _pipeline(buffer: DurableBuffer, clock: Clock) -> Pipeline:
    return Pipeline(buffer, clock)


def _buffer(data: Path, clock: Clock) -> DurableBuffer:
    cfg = buffer_config(dead_letter_max_count=100_000, dead_letter_max_bytes=64 * 1024 * 1024)
    return DurableBuffer(cfg, data, clock.boot_id)


def _marker(m: str) -> bytes:
    return f'"m":"{m}"'.encode()


def _mkey(m: str) -> str:
    return f"m:{m}"


def _table_item(marker: str, k: int, kind: int) -> Item:
    h = HOSTILE[kind % len(HOSTILE)]
    topic, payload = h.build(marker, k)
    key = f"v:{1e6 + k!r}" if h.code == "out_of_range" else _mkey(marker)
    return topic, payload, h.code, key


def _expect(items: list[Item]) -> Expect:
    want = Expect()
    for _topic, payload, expected, needle in items:
        if expected == "good":
            marker = payload.split(b'"m": "', 1)[1].split(b'"', 1)[0].decode()
            want.good_events[marker] += 1
        elif expected not in ("good_text", "good_value", "any"):
            want.dead[needle, expected] += 1
    return want


async def _check(
    buffer: DurableBuffer,
    after: int,
    want: Expect,
    letters: list[DeadLetter],
    *,
    exact: bool,
) -> int:
    """Compare records with seq > ``after`` and ``letters`` with ``want``; return the last seq."""
    recs, _ = await buffer.read_batch(after, None, 10_000_000, hold_pending=False)
    await buffer.release()
    events: Counter[str] = Counter()
    readings: Counter[int] = Counter()
    for r in recs:
        if r.kind is RecordKind.EVENT:
            attrs = json.loads(r.attrs or "{}")
            if "m" in attrs:
                events[str(attrs["m"])] += 1
                if str(attrs["m"]).startswith("G"):  # the 10,000 run's good events
                    assert attrs["note"] == GOOD_NOTE  # NUL, Vietnamese: text, kept as sent
        elif r.kind is RecordKind.READING and r.value is not None:
            readings[reading_id(r.value)] += 1
    assert {m: events[m] for m in want.good_events} == dict(want.good_events)
    if exact:
        assert readings == want.good_readings
    got = Counter((letter_key(d.raw), d.code) for d in letters)
    if exact:
        assert got == want.dead
    else:  # other letters (arbitrary bytes) may be there too: compare only what is wanted
        assert {k: got[k] for k in want.dead} == dict(want.dead)
    return max((r.seq for r in recs), default=after)


# ------------------------------------------------------------------ the property test

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)


@st.composite
def _items(draw: st.DrawFn) -> list[Item]:
    out: list[Item] = []
    for i in range(draw(st.integers(0, 25))):
        marker = f"P{draw(st.integers(0, 10**9))}x{i}"
        choice = draw(st.integers(0, 4))
        if choice == 0:  # a table kind, any variation
            kind, k = draw(st.integers(0, len(HOSTILE) - 1)), draw(st.integers(0, 10_000))
            out.append(_table_item(marker, k, kind))
        elif choice == 1:  # generated attribute text: lone surrogates, NULs, anything
            note = draw(_text)
            attrs = {"m": marker, "note": note}
            payload = json.dumps({"id": KIOSK, "event": "lookup", "attrs": attrs}).encode()
            try:
                note.encode("utf-8")
                want = "good_text" if len(note) <= 256 else "bad_attrs"
            except UnicodeEncodeError:
                want = "bad_text"
            out.append((EVENT_TOPIC, payload, want, _mkey(marker)))
        elif choice == 2:  # generated numbers: huge, tiny, non-finite
            value = draw(
                st.one_of(
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-(10**600), 10**600),
                )
            )
            text = json.dumps({"m": marker, "id": "wl-1", "readings": {"water_level": value}})
            out.append((TELEMETRY_TOPIC, text.encode(), *_number_outcome(value, marker)))
        elif choice == 3:  # arbitrary bytes wearing a marker
            junk = draw(st.binary(max_size=200))
            out.append((EVENT_TOPIC, b"{" + _marker(marker) + b"," + junk, "any", ""))
        else:
            out.append((*good_event(marker), "good", ""))
    return out


def _number_outcome(value: float, marker: str) -> tuple[str, str]:
    needle = _mkey(marker)
    if isinstance(value, float) and not math.isfinite(value):
        return "json_nan", needle  # json.dumps wrote NaN / Infinity
    try:
        f = float(value)
    except OverflowError:
        return "not_finite", needle
    if not -5.0 <= f <= 10.0:
        return "out_of_range", f"v:{f!r}"
    return "good_value", ""


def test_property_whole_path_never_raises(tmp_path: Path) -> None:
    clock = Clock(ClockConfig(sync="always"))
    runner = asyncio.Runner()
    buffer = _buffer(tmp_path / "gw", clock)
    runner.run(buffer.__aenter__())
    pipeline = _pipeline(buffer, clock)
    source = MqttSource(MqttSourceConfig(name="mqtt"))

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(items=_items())
    def prop(items: list[Item]) -> None:
        want = _expect(items)
        # Generated text: good ones are found by marker too.
        for _t, payload, expected, _n in items:
            if expected == "good_text":
                marker = payload.split(b'"m": "', 1)[1].split(b'"', 1)[0].decode()
                want.good_events[marker] += 1
        anyway = sum(1 for *_x, e, _n in items if e == "any")

        async def feed() -> None:
            after = buffer.last_seq  # each example on its own, whatever the last one did
            before = (await buffer.dead_summary(0))[1]
            records = []
            for topic, payload, _e, _n in items:
                records.extend(source.receive(topic, payload, pipeline))
            await pipeline.submit(records)
            await buffer.flush()
            _stored, by_code, letters = await buffer.dead_summary(100_000)
            new = sum(by_code.values()) - sum(before.values())
            recs, _ = await buffer.read_batch(after, None, 1_000_000, hold_pending=False)
            await buffer.release()
            values = sum(1 for r in recs if r.kind is RecordKind.READING)
            assert values == sum(1 for *_x, e, _n in items if e == "good_value"), items
            # Every payload is either committed or dead-lettered: none lost, none raised.
            events = sum(1 for r in recs if r.kind is RecordKind.EVENT)
            assert events + new == len(items) - values
            assert events >= sum(want.good_events.values())
            assert new >= sum(want.dead.values())
            assert anyway >= 0
            await _check(buffer, after, want, letters[:new], exact=False)

        runner.run(feed())

    try:
        prop()
    finally:
        runner.run(buffer.__aexit__(None, None, None))
        runner.close()


# ------------------------------------------------------------------ 10,000 through a broker


def _publish_all(broker: Broker, items: list[Item]) -> None:
    """A third-party device publisher (plain paho), QoS1, every PUBACK awaited."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-devices")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, payload, qos=1) for topic, payload, _e, _k in items]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_ten_thousand_hostile_payloads_among_good_ones(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    if mqtt_broker.kind != "mosquitto":
        require_tool("mosquitto")
    clock = Clock(ClockConfig(sync="always"))
    rng = random.Random(20261129)
    items: list[Item] = []
    good_readings: Counter[int] = Counter()
    for i in range(10_000):
        items.append(_table_item(f"B{i}", rng.randrange(10_000), i))
        if i % 2:
            items.append((*good_event(f"G{i}"), "good", ""))
        else:
            items.append((*good_reading(i), "good_value", ""))
            good_readings[i] += 1
    want = _expect(items)
    want.good_readings = good_readings
    cfg = MqttSourceConfig(
        name="mqtt",
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        client_id="gw-hostile",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
    )
    src = MqttSource(cfg)
    async with _buffer(tmp_path / "gw", clock) as buffer:
        pipeline = _pipeline(buffer, clock)
        task = asyncio.create_task(src.run(pipeline))
        try:
            await src.state.wait_until(lambda s: s.status is SourceStatus.RUNNING, 15)
            await asyncio.to_thread(_publish_all, mqtt_broker, items)
            # Acked only after commit (or dead letter): every message accounted for.
            await src.state.wait_until(lambda s: s.counters.get("acked", 0) >= len(items), 120)
            assert task.done() is False  # the source never stopped
            await buffer.flush()
            stored, by_code, letters = await buffer.dead_summary(100_000)
            assert stored == sum(want.dead.values()) == 10_000
            await _check(buffer, 0, want, letters, exact=True)
            assert sum(by_code.values()) == 10_000
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
