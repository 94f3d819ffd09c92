"""Power cuts under load: ``hamlet gateway run`` killed -9 at random moments, 20+ times.

Real processes throughout: Mosquitto, the gateway CLI, the server. At the end the server's
accounting for the gateway must show every gateway seq exactly once (missing = 0), and every
device reading published (QoS1, acked by the broker) must be stored.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from tests.gateway_store.conftest import accounting_for
from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess, ServerProcess

GW = "gw-kill"
DEVICES = 4
KILLS = int(os.environ.get("HAMLET_TEST_KILLS", "20"))


class Publisher(threading.Thread):
    """Field nodes: QoS1 telemetry with per-device seq; value encodes the seq."""

    def __init__(self, broker: Broker, rate: float) -> None:
        super().__init__(daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="field-nodes")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.rate = rate
        self.stop_flag = threading.Event()
        self.sent = dict.fromkeys(range(DEVICES), 0)
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def run(self) -> None:
        self.client.loop_start()
        start = time.monotonic()
        n = 0
        while not self.stop_flag.is_set():
            dev = n % DEVICES
            seq = self.sent[dev] + 1
            payload = {"id": f"wl-{dev}", "seq": seq, "readings": {"water_level": seq / 1000}}
            self.infos.append(
                self.client.publish(f"hamlet/wl-{dev}/telemetry", json.dumps(payload), qos=1)
            )
            self.sent[dev] = seq
            n += 1
            # Pace to the target rate (this is load shaping, not waiting for an event).
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0:
                self.stop_flag.wait(ahead)

    def finish(self) -> dict[int, int]:
        self.stop_flag.set()
        self.join(10)
        for info in self.infos:
            info.wait_for_publish(30)  # every one acked by the broker: it owns them now
        self.client.loop_stop()
        self.client.disconnect()
        return self.sent


def write_config(tmp_path: Path, broker: Broker, url: str, token: str) -> Path:
    conf = {
        "id": GW,
        "data_dir": str(tmp_path / "gw"),
        "heartbeat_interval_s": 3600,
        "buffer": {"commit_interval_ms": 20},
        "clock": {"sync": "always"},
        "uplink": {
            "url": url,
            "token": token,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
            "max_batch_records": 2000,
        },
        "sources": {
            "mqtt": [
                {
                    "name": "mqtt",
                    "host": broker.host,
                    "port": broker.port,
                    "client_id": GW,
                    "topics": ["hamlet/+/telemetry"],
                }
            ]
        },
    }
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(conf))
    return path


def create_session(broker: Broker) -> None:
    """Make the broker hold the gateway's persistent session and subscription before any
    reading is published (as after any first run on a Pi), so none precede the subscription."""
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GW, clean_session=False)
    c.on_subscribe = lambda *_a: done.set()
    c.on_connect = lambda cl, *_a: cl.subscribe("hamlet/+/telemetry", qos=1)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert done.wait(10), "no SUBACK from the broker"
    finally:
        c.disconnect()
        c.loop_stop()


def start_gateway(conf: Path) -> ManagedProcess:
    gw = ManagedProcess([*HAMLET, "gateway", "run", "--config", str(conf)]).start()
    gw.wait_for(rf"gateway {GW} running", timeout=30)
    return gw


def stored_values(url: str, device: str) -> set[int]:
    now = int(time.time() * 1000)
    resp = httpx.get(
        f"{url}/api/v1/hamlets/dinh-phuoc/series",
        params={
            "device": device,
            "metric": "water_level",
            "start": now - 3_600_000,
            "end": now + 3_600_000,
            "resolution": "raw",
            "limit": 50_000,
        },
        timeout=10,
    )
    resp.raise_for_status()
    return {round(p["v"] * 1000) for p in resp.json()["points"]}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill9_under_load_loses_nothing(
    tmp_path: Path, mqtt_broker: Broker, server: ServerProcess
) -> None:
    token = server.add_gateway(GW)
    conf = write_config(tmp_path, mqtt_broker, server.url, token)
    rng = random.Random(20261128)
    create_session(mqtt_broker)
    gw = start_gateway(conf)
    pub = Publisher(mqtt_broker, rate=600)
    pub.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.9))  # a random moment under load
            gw.kill9()
            gw = start_gateway(conf)
        sent = pub.finish()
        # Nothing arrives by event across three processes: poll the server, with a deadline.
        deadline = time.monotonic() + 60
        missing: dict[int, set[int]] = {}
        while time.monotonic() < deadline:
            missing = {
                d: set(range(1, sent[d] + 1)) - stored_values(server.url, f"wl-{d}")
                for d in range(DEVICES)
            }
            acc = accounting_for(server.url, GW)
            if not any(missing.values()) and acc["missing"] == 0:
                break
            time.sleep(0.5)
    finally:
        gw.stop()
    acc = accounting_for(server.url, GW)
    assert not any(missing.values()), {d: sorted(m)[:10] for d, m in missing.items()}
    assert acc["missing"] == 0, acc["missing_ranges"][:10]
    assert acc["missing_ranges"] == []
    # Every seq the gateway handed out is stored exactly once or declared (none here).
    assert acc["received"] + acc["rejected"] + sum(acc["accounted"].values()) == acc["highest_seq"]
    assert sum(sent.values()) >= 5000, sent
