"""Finding 2: one MQTT message must never stop the gateway, neither now nor after a restart.

The message an independent harness found: ``{"event":"lookup","attrs":{"note":"\\ud800"}}``
published QoS1 on a kiosk's event topic. It used to kill the buffer's committer (SQLite
cannot encode a lone surrogate), and the broker redelivered it after every restart. Real
processes: Mosquitto, ``hamlet gateway run`` and the server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import require_tool
from tests.support.broker import Broker
from tests.support.gateway_proc import (
    count_ids,
    create_session,
    gateway_status,
    start_gateway,
    stored_points,
    write_config,
)
from tests.support.procs import ServerProcess

GW = "gw-poison"
TOPICS = ["hamlet/+/telemetry", "hamlet/+/event"]
# Byte for byte what the harness sent: a JSON escape that decodes to a lone surrogate.
POISON = b'{"event":"lookup","attrs":{"note":"\\ud800"}}'


def _publish(broker: Broker, msgs: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-and-nodes")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for info in [pub.publish(t, p, qos=1) for t, p in msgs]:
            info.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _good(first: int, n: int) -> list[tuple[str, bytes]]:
    return [
        ("hamlet/wl-1/telemetry", json.dumps({"readings": {"water_level": i / 1000}}).encode())
        for i in range(first, first + n)
    ]


def _wait_stored(url: str, want: range, deadline_s: float = 60) -> None:
    """Poll the server (three processes: no event crosses them) until ``want`` is stored."""
    deadline = time.monotonic() + deadline_s
    while True:
        got = count_ids(stored_points(url, "wl-1", "water_level"), 1000)
        if all(got[i] >= 1 for i in want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [i for i in want if got[i] != 1] == [], "readings missing or stored twice"


def _heartbeats(url: str) -> int:
    return len(stored_points(url, GW, "gw.uptime_s"))


@pytest.mark.timeout(180)
def test_poison_message_is_dead_lettered_and_never_wedges(
    tmp_path: Path, mqtt_broker: Broker, server: ServerProcess
) -> None:
    if mqtt_broker.kind != "mosquitto":
        require_tool("mosquitto")
    token = server.add_gateway(GW)
    conf = write_config(
        tmp_path / "gateway.toml", GW, mqtt_broker, server.url, token, TOPICS, heartbeat_s=1
    )
    create_session(mqtt_broker, GW, TOPICS)
    gw = start_gateway(conf, GW)
    try:
        # The poison, then good data: the good data is committed and uploaded.
        _publish(mqtt_broker, [("hamlet/kiosk-1/event", POISON), *_good(1, 50)])
        _wait_stored(server.url, range(1, 51))
        # Heartbeats keep being committed after it (1 s interval).
        beats = _heartbeats(server.url)
        deadline = time.monotonic() + 30
        while _heartbeats(server.url) < beats + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _heartbeats(server.url) >= beats + 2, "heartbeats stopped after the poison"
        st = gateway_status(conf)
        assert st["dead_letters"]["by_reason"].get("bad_text") == 1, st["dead_letters"]
        letter = next(d for d in st["dead_letters"]["recent"] if d["reason"].startswith("bad_text"))
        assert "note" in letter["reason"]
        assert "\\ud800" in letter["raw"], letter  # the raw bytes, kept and readable
        assert st["health"]["failures"] == {}
        assert all(s["status"] == "running" for s in st["sources"])

        # A restart with the poison waiting in the broker's session (as after a crash):
        # the first thing the new process receives. It must not wedge again.
        gw.kill9()
        _publish(mqtt_broker, [("hamlet/kiosk-1/event", POISON), *_good(51, 50)])
        gw = start_gateway(conf, GW)
        _wait_stored(server.url, range(1, 101))
        st = gateway_status(conf)
        assert st["dead_letters"]["by_reason"].get("bad_text") == 2, st["dead_letters"]
        assert st["health"]["failures"] == {}
        assert gw.proc.poll() is None, "the gateway exited"
        # One more heartbeat after the restart: the committer is alive.
        beats = _heartbeats(server.url)
        deadline = time.monotonic() + 30
        while _heartbeats(server.url) <= beats and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _heartbeats(server.url) > beats
    finally:
        gw.stop()
    acc = httpx.get(f"{server.url}/api/v1/gateways", timeout=10).json()
    mine = next(g for g in acc if g["id"] == GW)
    assert mine["missing"] == 0, mine
