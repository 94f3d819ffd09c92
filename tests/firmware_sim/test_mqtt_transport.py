"""MQTT devices against a real broker, checked by an independent paho subscriber."""

from __future__ import annotations

import json
import math
import signal

from hamlet.metrics import METRICS
from tests.firmware_sim.conftest import scenario, signal_sim, sim_process, stats_of
from tests.firmware_sim.mqttwatch import Seen, watch
from tests.support.broker import Broker

EVENTS = {"session_start", "session_end", "lookup", "dossier_submitted", "rating", "broadcast"}
STATUS = ["kiosk-1", "radio-1", "wifi-1", "sal-1"]


def _check_envelope(m: Seen, kind: str) -> dict:
    dev = m.topic.split("/")[1]
    body = json.loads(m.payload)
    assert body["id"] == dev
    assert isinstance(body["seq"], int)
    assert body["seq"] >= 0
    assert isinstance(body["ts"], float)
    assert body["ts"] > 1.7e9
    if kind in ("telemetry", "heartbeat"):
        assert set(body) == {"id", "seq", "ts", "readings"}
        assert body["readings"]
        for k, v in body["readings"].items():
            assert k in METRICS
            assert isinstance(v, int | float)
            assert math.isfinite(v)
    else:
        assert set(body) == {"id", "seq", "ts", "event", "attrs"}
        assert body["event"] in EVENTS
    return body


def _is(topic: str):
    return lambda m: m.topic == topic


def test_project_json_tasmota_esphome_and_clean_shutdown(mqtt_broker: Broker) -> None:
    b = mqtt_broker
    with (
        watch(b.host, b.port) as w,
        sim_process(
            "-s",
            scenario("mqtt-all"),
            "--mqtt-port",
            str(b.port),
            "--speed",
            "30",
            "--interval-s",
            "3",
        ) as mp,
    ):
        for dev in STATUS:
            w.wait_for(lambda m, d=dev: m.topic == f"hamlet/{d}/status" and m.payload == b"online")
        tel = w.wait_for(_is("hamlet/sal-1/telemetry"))
        body = _check_envelope(tel, "telemetry")
        assert set(body["readings"]) == {"salinity", "ec", "water_temp", "battery", "rssi"}
        hb = _check_envelope(w.wait_for(_is("hamlet/wifi-1/heartbeat")), "heartbeat")
        assert "clients" in hb["readings"]
        assert "uptime" in hb["readings"]
        for name in ("session_start", "lookup", "rating", "session_end"):
            ev = w.wait_for(
                lambda m, n=name: (
                    m.topic == "hamlet/kiosk-1/event" and json.loads(m.payload)["event"] == n
                )
            )
            body = _check_envelope(ev, "event")
            if name == "rating":
                assert body["attrs"]["scale"] == 5
                assert 1 <= body["attrs"]["score"] <= 5
            if name == "lookup":
                assert isinstance(body["attrs"]["procedure"], str)
        bc = _check_envelope(w.wait_for(_is("hamlet/radio-1/event")), "event")
        assert bc["event"] == "broadcast"
        assert bc["attrs"]["program"] == "evening_news"
        # Tasmota and ESPHome layouts
        w.wait_for(lambda m: m.topic == "tele/wx-t/LWT" and m.payload == b"Online")
        tas = json.loads(w.wait_for(_is("tele/wx-t/SENSOR")).payload)
        assert {"Temperature", "Humidity"} <= set(tas["BME280"])
        assert "Time" in tas
        w.wait_for(lambda m: m.topic == "soil-e/status" and m.payload == b"online")
        state = w.wait_for(_is("soil-e/sensor/soil_moisture/state"))
        assert 0 < float(state.payload) < 100
        # per-device sequence numbers grow by one across message kinds
        seqs = [
            json.loads(m.payload)["seq"]
            for m in list(w.msgs)
            if m.topic.startswith("hamlet/sal-1/") and not m.topic.endswith("status")
        ]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        mp.stop()
        stats = stats_of(mp)
        assert mp.proc.returncode == 0
        for dev in STATUS:
            w.wait_for(lambda m, d=dev: m.topic == f"hamlet/{d}/status" and m.payload == b"offline")
        n_after = len(w.msgs)
    assert stats["mqtt_connects"] == 6
    # After the clean shutdown the retained status says offline; nothing else was sent.
    with watch(b.host, b.port, "hamlet/+/status") as late:
        for dev in STATUS:
            m = late.wait_for(_is(f"hamlet/{dev}/status"))
            assert m.retain
            assert m.payload == b"offline"
    assert n_after == len(w.msgs)


def test_last_will_fires_when_the_simulator_dies(mqtt_broker: Broker) -> None:
    b = mqtt_broker
    with (
        watch(b.host, b.port, "hamlet/+/status") as w,
        sim_process(
            "-s",
            scenario("mqtt-all"),
            "--mqtt-port",
            str(b.port),
            "--interval-s",
            "5",
        ) as mp,
    ):
        for dev in STATUS:
            w.wait_for(lambda m, d=dev: m.topic == f"hamlet/{d}/status" and m.payload == b"online")
        mp.kill9()  # no DISCONNECT packets: only the broker's last-will can say offline
        for dev in STATUS:
            w.wait_for(lambda m, d=dev: m.topic == f"hamlet/{d}/status" and m.payload == b"offline")


def test_broker_drop_fires_the_will_then_devices_come_back(mqtt_broker: Broker) -> None:
    b = mqtt_broker
    with (
        watch(b.host, b.port, "hamlet/sal-1/#") as w,
        sim_process(
            "-s",
            scenario("mqtt-all"),
            "--mqtt-port",
            str(b.port),
            "--interval-s",
            "0.5",
            "--speed",
            "5",
        ) as mp,
    ):
        w.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"online")
        signal_sim(mp, signal.SIGUSR2)
        mp.wait_for(r"^sim broker drop all$")
        off = w.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"offline")
        idx = w.index(off)
        w.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"online", after=idx)
        w.wait_for(lambda m: m.topic.endswith("/telemetry"), after=idx)
        mp.stop()
        stats = stats_of(mp)
    assert stats["mqtt_drops"] >= 6
    assert stats["mqtt_connects"] >= 12


def test_mqtt_duplicates_arrive_with_the_same_seq_and_replicas_scale(
    mqtt_broker: Broker,
) -> None:
    b = mqtt_broker
    ids = [f"{d}{r}" for d in ("sal-1", "wx-1") for r in ("", "-r1", "-r2")]
    with (
        watch(b.host, b.port, "hamlet/#") as w,
        sim_process(
            "-s",
            scenario("mqtt-json"),
            "--mqtt-port",
            str(b.port),
            "--interval-s",
            "0.1",
            "--mqtt-faults",
            "duplicate=0.2",
            "--replicate",
            "3",
        ) as mp,
    ):
        w.wait_for(lambda m: m.topic == "hamlet/wx-1-r2/telemetry")
        w.wait_for(lambda _m: len(w.msgs) >= 120)
        mp.stop()
        stats = stats_of(mp)
        # Each device's last word is its offline status: everything before it has arrived.
        for dev in ids:
            w.wait_for(lambda m, d=dev: m.topic == f"hamlet/{d}/status" and m.payload == b"offline")
        seen = [m for m in w.msgs if not m.topic.endswith("/status")]
    assert stats["mqtt_connects"] == 6  # 2 devices x 3 copies
    keys = [(json.loads(m.payload)["id"], json.loads(m.payload)["seq"]) for m in seen]
    assert {k[0] for k in keys} == set(ids)
    dupes = len(keys) - len(set(keys))
    assert dupes == stats["mqtt_duplicates"] > 0


def test_kiosk_power_cut_fires_the_will_and_silences_heartbeats(mqtt_broker: Broker) -> None:
    b = mqtt_broker
    with (
        watch(b.host, b.port, "hamlet/kiosk-9/#") as w,
        sim_process("-s", scenario("kiosk-blip"), "--mqtt-port", str(b.port)) as mp,
    ):
        off = w.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"offline")
        i = w.index(off)
        back = w.wait_for(lambda m: m.topic.endswith("/status") and m.payload == b"online", after=i)
        j = w.index(back)
        during = [m for m in w.msgs[i + 1 : j] if m.topic.endswith("/heartbeat")]
        assert during == []  # no power, no heartbeats
        w.wait_for(lambda m: m.topic.endswith("/heartbeat"), after=j)
        mp.stop()
        stats = stats_of(mp)
    assert stats["mqtt_drops"] == 1
    assert stats["mqtt_connects"] == 2
