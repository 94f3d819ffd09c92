"""The MQTT source against a real broker: presets, hostile payloads, restarts, redelivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import DurableBuffer
from gateway.buffer.config import BufferConfig
from gateway.clock import Clock, ClockConfig
from gateway.pipeline import Pipeline
from gateway.records import Reading, Record
from gateway.sources.base import SourceStatus
from gateway.sources.mqtt.config import FieldMapping, MqttSourceConfig
from gateway.sources.mqtt.source import MqttSource
from tests.gateway.sources.conftest import Committed, Publisher, RecordingSink
from tests.support.broker import Broker
from tests.support.tasks import cancel_and_wait


def _cfg(broker: Broker, client_id: str, **kw: Any) -> MqttSourceConfig:
    return MqttSourceConfig(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        **kw,
    )


@contextlib.asynccontextmanager
async def running(src: MqttSource, sink: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(src.run(sink), name=src.name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


async def _until_running(src: MqttSource, timeout: float = 15.0) -> None:
    await src.state.wait_until(lambda st: st.status == SourceStatus.RUNNING, timeout)


def _tele(dev: str, seq: int, **readings: float) -> str:
    return json.dumps({"id": dev, "seq": seq, "ts": 1764309600.5, "readings": readings})


async def test_hamlet_preset_end_to_end(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    sink = committed
    src = MqttSource(_cfg(mqtt_broker, "gw-e2e"))
    async with running(src, sink):
        await _until_running(src)
        publisher.publish(
            "hamlet/sal-1/telemetry", _tele("sal-1", 1, salinity=0.8, water_temp=28.1)
        )
        publisher.publish(
            "hamlet/kiosk-1/heartbeat",
            json.dumps({"id": "kiosk-1", "seq": 2, "readings": {"uptime": 3600, "rssi": -70}}),
        )
        publisher.publish(
            "hamlet/kiosk-1/event",
            json.dumps(
                {
                    "id": "kiosk-1",
                    "seq": 3,
                    "ts": 1764309601,
                    "event": "dossier_submitted",
                    "attrs": {"channel": "online"},
                }
            ),
        )
        publisher.publish("hamlet/kiosk-1/status", "offline", retain=True)
        await sink.wait_until(lambda: len(sink.items) >= 6)
        # PUBACKs follow the commit from the acker task, so they may land just after it.
        await src.state.wait_until(lambda st: st.counters.get("acked", 0) >= 4, timeout=10)

    by_metric = {r["metric"]: r for r in sink.readings}
    assert by_metric["salinity"]["value"] == 0.8
    assert by_metric["salinity"]["device"] == "sal-1"
    assert by_metric["salinity"]["t"] == 1764309600500  # the device's own clock
    assert by_metric["salinity"]["kind"] == "reading"
    assert by_metric["uptime"]["kind"] == "heartbeat"
    assert [(e["name"], e["attrs"]) for e in sink.events] == [
        ("dossier_submitted", {"channel": "online"}),
        ("status", {"state": "offline"}),
    ]
    seqs = [i["seq"] for i in sink.items]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 6  # gateway seqs, committed
    assert src.state.counters["acked"] == 4
    assert src.state.devices["kiosk-1"]["status"] == "offline"
    assert not sink.rejects


HOSTILE: list[tuple[str, bytes, str]] = [
    ("hamlet/d1/telemetry", b"not json", "not valid JSON"),
    ("hamlet/d1/telemetry", b"\xff\xfe\x00", "not UTF-8"),
    ("hamlet/d1/telemetry", b'{"id":"d1","readings":{"salinity":NaN}}', "NaN"),
    ("hamlet/d1/telemetry", b'{"id":"d1","readings":{"salinity":"high"}}', "must be a number"),
    ("hamlet/d1/telemetry", b'{"id":"d1","readings":{"salinity":1e999}}', "not finite"),
    ("hamlet/d1/telemetry", b"[" * 5000 + b"]" * 5000, "nested"),
    ("hamlet/d1/telemetry", b'{"id":"d1","readings":{"s":' + b"1" * 20000 + b"}}", "exceeds"),
    ("hamlet/d1/telemetry", b'{"id":"d2","readings":{"salinity":1}}', "does not match"),
    ("hamlet/d1/telemetry", b'{"id":"d1","seq":-4,"readings":{"salinity":1}}', "'seq'"),
    ("hamlet/d1/event", b'{"id":"d1","event":"rating","attrs":{"scale":4,"score":1}}', "scale"),
    ("hamlet/d1/event", b'{"id":"d1","event":"x","attrs":{"a":{"b":1}}}', "attribute"),
    ("hamlet/d1/status", b"maybe", "'online' or 'offline'"),
    ("hamlet/d1/firmware", b"{}", "unknown topic kind"),
    ("hamlet/d1/x/y", b"{}", "unknown topic"),
]


async def test_hostile_payloads_rejected_good_ones_kept(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    sink = committed
    # A wildcard subscription, so topics no device should use reach the decoder too.
    src = MqttSource(_cfg(mqtt_broker, "gw-hostile", topics=["hamlet/#"]))
    async with running(src, sink):
        await _until_running(src)
        for i, (topic, payload, _) in enumerate(HOSTILE):
            publisher.publish("hamlet/good/telemetry", _tele("good", i, salinity=0.1 * i))
            publisher.publish(topic, payload)
        publisher.publish("hamlet/good/telemetry", _tele("good", len(HOSTILE), salinity=9))
        await sink.wait_until(
            lambda: len(sink.rejects) == len(HOSTILE) and len(sink.items) == len(HOSTILE) + 1
        )
        await src.state.wait_until(
            lambda st: st.counters.get("acked", 0) >= 2 * len(HOSTILE) + 1, timeout=10
        )
    for (_, reason, raw), (topic, _, expected) in zip(sink.rejects, HOSTILE, strict=True):
        assert expected in reason, (topic, reason)
        assert len(raw) <= 2048 + 201
    assert sink.readings[-1]["value"] == 9
    assert src.state.counters["rejected"] == len(HOSTILE)
    codes = await sink.dead_codes()  # kept in the buffer's dead-letter store, per code
    assert sum(codes.values()) == len(HOSTILE)
    assert codes["bad_json"] == 1
    assert codes["unknown_topic"] == 2
    assert src.state.devices["good"]["gaps"] == 0


async def test_seq_gaps_and_resets_counted(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    sink = committed
    src = MqttSource(_cfg(mqtt_broker, "gw-seq"))
    async with running(src, sink):
        await _until_running(src)
        for seq in (5, 6, 9, 10, 0, 1):  # 7 and 8 lost on the radio, then a reboot
            publisher.publish("hamlet/n1/telemetry", _tele("n1", seq, rain=0.2))
        await sink.wait_until(lambda: len(sink.items) == 6)
    dev = src.state.devices["n1"]
    assert (dev["gaps"], dev["lost"], dev["resets"], dev["last_seq"]) == (1, 2, 1, 1)


async def test_broker_restart_reconnects(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    sink = committed
    src = MqttSource(_cfg(mqtt_broker, "gw-restart"))
    async with running(src, sink):
        await _until_running(src)
        publisher.publish("hamlet/w1/telemetry", _tele("w1", 1, water_level=1.2))
        await sink.wait_until(lambda: len(sink.items) == 1)
        publisher.close()
        mqtt_broker.stop()
        await src.state.wait_until(lambda st: st.status == SourceStatus.RECONNECTING, timeout=15)
        assert "broker" in (src.state.last_error or "")
        mqtt_broker.start_again()
        await _until_running(src)
        pub2 = Publisher(mqtt_broker, "test-device-2")
        try:
            pub2.publish("hamlet/w1/telemetry", _tele("w1", 2, water_level=1.3))
            await sink.wait_until(lambda: len(sink.items) == 2)
        finally:
            pub2.close()
    assert src.state.counters["reconnects"] >= 1
    assert [r["value"] for r in sink.readings] == [1.2, 1.3]


class _StuckSink(RecordingSink):
    """The crash window: the gateway dies after delivery, before its group commit.

    (A real kill -9 of ``hamlet gateway run`` is helper A's end-to-end test; here the
    window is held open deterministically so the assertion cannot race.)
    """

    async def submit(self, records: Sequence[Record]) -> None:
        self.submits += 1
        self._changed.set()
        await asyncio.Event().wait()


async def test_unacked_messages_redelivered_to_restarted_client(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    stuck = _StuckSink()
    src = MqttSource(_cfg(mqtt_broker, "gw-persist"))
    async with running(src, stuck):
        await _until_running(src)
        for seq in range(1, 4):
            publisher.publish("hamlet/s1/telemetry", _tele("s1", seq, salinity=seq / 10))
        await stuck.wait_until(lambda: stuck.submits >= 1)
    assert src.state.counters.get("acked", 0) == 0
    # More arrive while the gateway is down: the persistent session queues them.
    publisher.publish("hamlet/s1/telemetry", _tele("s1", 4, salinity=0.4))

    sink = committed
    again = MqttSource(_cfg(mqtt_broker, "gw-persist"))
    async with running(again, sink):
        await sink.wait_until(lambda: len(sink.items) >= 4)
    values = sorted(r["value"] for r in sink.readings)
    assert values == [0.1, 0.2, 0.3, 0.4]
    assert again.state.counters.get("redelivered", 0) >= 1


async def test_tasmota_and_esphome_presets(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    sink = committed
    tas = MqttSource(
        _cfg(
            mqtt_broker,
            "gw-tas",
            name="tasmota",
            preset="tasmota",
            mappings=[FieldMapping(field="ANALOG.A0", metric="water_level", unit="cm")],
        )
    )
    esp = MqttSource(
        _cfg(
            mqtt_broker,
            "gw-esp",
            name="esphome",
            preset="esphome",
            mappings=[FieldMapping(field="pond_temperature", metric="water_temp")],
        )
    )
    async with running(tas, sink), running(esp, sink):
        await _until_running(tas)
        await _until_running(esp)
        publisher.publish(
            "tele/pond-1/SENSOR",
            json.dumps(
                {
                    "Time": "2025-11-28T12:00:00",
                    "DS18B20": {"Temperature": 82.4},
                    "ANALOG": {"A0": 153},
                    "TempUnit": "F",
                }
            ),
        )
        publisher.publish("tele/pond-1/LWT", "Online", retain=True)
        publisher.publish("pondnode/sensor/pond_temperature/state", "28.25")
        publisher.publish("pondnode/sensor/humidity/state", "81")
        publisher.publish("pondnode/sensor/wifi_signal/state", "-60")  # unmapped
        publisher.publish("pondnode/sensor/pond_temperature/state", "nan")
        publisher.publish("pondnode/status", "online")
        # Each source counts its records once its own submit returns; one source's read-back
        # can already show the other's records, so wait for the counts too.
        await sink.wait_until(
            lambda: (
                len(sink.items) >= 6
                and len(sink.rejects) >= 2
                and tas.state.counters.get("records", 0) + esp.state.counters.get("records", 0) >= 6
            )
        )
    # Normalized by the pipeline: °F -> °C, cm -> m.
    got = {(r["device"], r["metric"], round(r["value"], 6)) for r in sink.readings}
    assert got == {
        ("pond-1", "water_temp", 28.0),
        ("pond-1", "water_level", 1.53),
        ("pondnode", "water_temp", 28.25),
        ("pondnode", "humidity", 81.0),
    }
    statuses = {(r["device"], r["attrs"]["state"]) for r in sink.events}
    assert statuses == {("pond-1", "online"), ("pondnode", "online")}
    assert tas.state.counters["records"] == 3
    assert esp.state.counters["records"] == 3
    reasons = sorted(reason for _, reason, _ in sink.rejects)
    assert reasons[0].startswith("not_finite: ")
    assert reasons[1].startswith("unmapped: ESPHome sensor 'wifi_signal' has no mapping")


@pytest.mark.parametrize("preset", ["hamlet", "tasmota", "esphome"])
def test_preset_subscriptions(preset: str) -> None:
    cfg = MqttSourceConfig.model_validate({"preset": preset})
    assert cfg.subscriptions()
    assert all(t.count("/") >= 1 for t in cfg.subscriptions())


async def test_embedded_amqtt_broker(amqtt_broker: Broker, committed: Committed) -> None:
    # `hamlet demo` runs the embedded amqtt broker: the same session and ack flow must work.
    pub = Publisher(amqtt_broker, "kiosk-amqtt")
    src = MqttSource(_cfg(amqtt_broker, "gw-amqtt"))
    try:
        async with running(src, committed):
            await _until_running(src)
            pub.publish("hamlet/kiosk-2/event", json.dumps(
                {"id": "kiosk-2", "seq": 1, "event": "rating", "attrs": {"scale": 3, "score": 3}}
            ))  # fmt: skip
            pub.publish("hamlet/wl-2/telemetry", _tele("wl-2", 1, water_level=2.05))
            await committed.wait_until(lambda: len(committed.items) == 2)
            await src.state.wait_until(lambda st: st.counters.get("acked", 0) >= 2, timeout=10)
    finally:
        pub.close()
    assert committed.events[0]["attrs"] == {"scale": 3, "score": 3}
    assert committed.readings[0]["value"] == 2.05


async def test_device_retransmission_is_kept_once(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    src = MqttSource(_cfg(mqtt_broker, "gw-dup"))
    rating = json.dumps(
        {"id": "kiosk-3", "seq": 8, "event": "rating", "attrs": {"scale": 5, "score": 5}}
    )
    async with running(src, committed):
        await _until_running(src)
        publisher.publish("hamlet/kiosk-3/event", rating)
        publisher.publish("hamlet/kiosk-3/event", rating)  # retry after a lost PUBACK
        # Same seq, different content: a firmware bug, kept and counted, not silently lost.
        publisher.publish("hamlet/kiosk-3/telemetry", _tele("kiosk-3", 8, rssi=-60))
        publisher.publish("hamlet/kiosk-3/telemetry", _tele("kiosk-3", 9, rssi=-61))
        await committed.wait_until(lambda: len(committed.items) == 3)
        await src.state.wait_until(lambda st: st.counters.get("acked", 0) >= 4, timeout=10)
    assert [e["name"] for e in committed.events] == ["rating"]
    # Recognised by its receipt in the buffer (durable), not by a check in memory.
    assert committed.pipeline.counters.duplicates == 1
    assert committed.buffer.counters.duplicates_recognised == 1
    # Both repeats of seq 8 are seen by the tracker: the copy, and the different content.
    assert src.state.counters["seq_repeats"] == 2


def _wakeups(tid: int) -> int:
    """Voluntary context switches of one thread of this process: each is a sleep that ended."""
    text = Path(f"/proc/self/task/{tid}/status").read_text()
    return int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("voluntary_")))


def _network_thread(client_id: str) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == f"paho-mqtt-client-{client_id}")


async def test_network_thread_sleeps_while_the_hamlet_is_quiet(
    mqtt_broker: Broker, committed: Committed
) -> None:
    """No polling: with nothing to send or receive, paho's network thread sleeps a quarter of
    the keepalive, not a second at a time (paho's own loop_start wakes every second)."""
    src = MqttSource(_cfg(mqtt_broker, "gw-quiet", keepalive_s=60))
    async with running(src, committed):
        await _until_running(src)
        tid = _network_thread("gw-quiet").native_id
        assert tid is not None
        before = _wakeups(tid)
        await asyncio.sleep(3.5)  # the span measured: a quiet hamlet, nothing happens
        woke = _wakeups(tid) - before
    assert woke <= 1  # every second, it was 3 or 4


async def test_stops_promptly_while_the_network_thread_sleeps(
    mqtt_broker: Broker, committed: Committed
) -> None:
    """A stop wakes paho's network thread instead of waiting out its sleep (a quarter of the
    keepalive: 15 minutes at the largest keepalive allowed, far past systemd's stop)."""
    src = MqttSource(_cfg(mqtt_broker, "gw-stop", keepalive_s=3600))
    task = asyncio.create_task(src.run(committed), name=src.name)
    await _until_running(src)
    tid = _network_thread("gw-stop").native_id
    assert tid is not None
    # Asleep is only seen as quiet over time: no wake-up of the thread for half a second.
    async with asyncio.timeout(15):
        while True:
            before = _wakeups(tid)
            await asyncio.sleep(0.5)
            if _wakeups(tid) == before:
                break
    t0 = time.monotonic()
    await cancel_and_wait(task)  # fails the test if the source is still running after 10 s
    assert time.monotonic() - t0 < 5
    assert src.state.status == SourceStatus.STOPPED


async def test_keepalive_holds_the_connection_while_the_thread_sleeps(
    mqtt_broker: Broker, publisher: Publisher, committed: Committed
) -> None:
    """The longer sleep still pings in time: idle for longer than the broker allows without a
    PINGREQ (1.5 keepalives), the connection stays up and still delivers."""
    src = MqttSource(_cfg(mqtt_broker, "gw-ping", keepalive_s=5))
    async with running(src, committed):
        await _until_running(src)
        await asyncio.sleep(9)  # 1.8 keepalives of silence: the broker would have cut us
        assert src.state.status == SourceStatus.RUNNING
        assert src.state.counters.get("reconnects", 0) == 0
        publisher.publish("hamlet/sal-1/telemetry", _tele("sal-1", 1, salinity=0.8))
        await committed.wait_until(lambda: len(committed.items) >= 1)
    assert src.state.counters.get("reconnects", 0) == 0


class _TimedSink:
    """The real pipeline; notes when each message's reading was committed (its value)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.committed_at: dict[float, float] = {}
        self.changed = asyncio.Event()

    async def submit(self, records: Sequence[Record]) -> None:
        await self.pipeline.submit(records)
        now = time.monotonic()
        for r in records:
            if isinstance(r, Reading):
                self.committed_at[float(r.value)] = now
        self.changed.set()

    def reject(self, source: str, reason: str, raw: bytes | str) -> None:
        self.pipeline.reject(source, reason, raw)


async def test_each_message_is_committed_within_one_window_of_arriving(
    mqtt_broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """The durability window is the longest a message waits for its commit (and so for its
    PUBACK): messages that arrive while a commit is pending join the next group at once.
    When the source awaited each commit before reading on, a message arriving just after a
    group opened waited for that group and then a whole window of its own: 2 windows."""
    window = 2.0
    clock = Clock(ClockConfig(sync="always"))
    cfg = BufferConfig(durability_window_s=window)
    async with DurableBuffer(cfg, tmp_path, clock.boot_id) as buffer:
        sink = _TimedSink(Pipeline(buffer, clock))
        src = MqttSource(_cfg(mqtt_broker, "gw-window"))
        async with running(src, sink):
            await _until_running(src)
            commits0 = buffer.counters.commits
            published: dict[float, float] = {}
            for i in range(60):  # a message every 0.1 s for 6 s: three windows
                value = round(0.01 * (i + 1), 2)
                payload = _tele("win-1", i + 1, salinity=value)
                await asyncio.to_thread(publisher.publish, "hamlet/win-1/telemetry", payload)
                published[value] = time.monotonic()
                await asyncio.sleep(0.1)  # the load's schedule
            async with asyncio.timeout(4 * window):
                while len(sink.committed_at) < 60:
                    sink.changed.clear()
                    await sink.changed.wait()
            commits = buffer.counters.commits - commits0
    waits = {v: sink.committed_at[v] - t for v, t in published.items()}
    assert len(waits) == 60
    assert max(waits.values()) <= window + 1.0, sorted(waits.values())[-5:]
    assert commits <= 5  # one a window (three), not one a message
