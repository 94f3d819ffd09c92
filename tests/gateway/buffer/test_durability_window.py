"""The durability window: how long a source waits for its commit (and so its ack), and
that a long window never costs an acknowledged reading on kill -9.

Real SQLite files, a real Mosquitto, the real gateway process and server.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from gateway.buffer import DurableBuffer
from gateway.buffer.config import DEFAULT_WINDOW_S, BufferConfig
from tests.gateway.conftest import accounting_for, reading
from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess, ServerProcess

GW = "gw-window"


def test_legacy_interval_is_the_window_and_default_suits_sd() -> None:
    assert BufferConfig.model_validate({"commit_interval_ms": 250}).window_s == 0.25
    assert BufferConfig().window_s == DEFAULT_WINDOW_S
    with pytest.raises(ValueError, match="not both"):
        BufferConfig.model_validate({"commit_interval_ms": 250, "durability_window_s": 1})


@pytest.mark.asyncio
async def test_one_record_waits_the_window_and_no_longer(tmp_path: Path) -> None:
    window = 1.5
    cfg = BufferConfig(durability_window_s=window)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        t0 = time.monotonic()
        # The bound a source relies on: committed (so acknowledgeable) within the window.
        # The slack is for a loaded CI machine, not for the buffer.
        first = await asyncio.wait_for(buf.append([reading()]), window + 10)
        waited = time.monotonic() - t0
        assert first == 1
        assert buf.counters.committed == 1
    # It did use the window: one reading alone is not worth an fsync of its own.
    assert waited >= window * 0.95, waited


@pytest.mark.asyncio
async def test_many_waiting_submits_do_not_wait_for_a_long_window(tmp_path: Path) -> None:
    """A serial reader keeps a bounded number of submits in flight and then stops reading
    the port: that many waiting submits are committed at once, whatever the window."""
    cfg = BufferConfig(durability_window_s=60, commit_max_waiters=8)
    async with DurableBuffer(cfg, tmp_path, "boot-a") as buf:
        appends = [asyncio.create_task(buf.append([reading(value=float(i))])) for i in range(8)]
        firsts = await asyncio.wait_for(asyncio.gather(*appends), 20)  # not 60 s
        assert sorted(firsts) == list(range(1, 9))
        assert buf.counters.commits == 1
        # Fewer than that: they wait for the window (not committed by the time a second,
        # independent commit of the same size would have been).
        late = asyncio.create_task(buf.append([reading(value=99.0)]))
        done, _ = await asyncio.wait({late}, timeout=1.0)
        assert not done
        assert buf.counters.committed == 8
    # Closing commits what waits: nothing handed to the buffer is dropped.
    assert late.done()
    assert late.result() == 9


class Field(threading.Thread):
    """Field nodes publishing QoS1 telemetry; each value encodes its per-device seq."""

    def __init__(self, broker: Broker, devices: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="field-window")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.devices, self.rate = devices, rate
        self.stop_flag = threading.Event()
        self.sent = dict.fromkeys(range(devices), 0)
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def run(self) -> None:
        self.client.loop_start()
        start, n = time.monotonic(), 0
        while not self.stop_flag.is_set():
            dev = n % self.devices
            seq = self.sent[dev] + 1
            body = {"id": f"wl-{dev}", "seq": seq, "readings": {"water_level": seq / 1000}}
            self.infos.append(
                self.client.publish(f"hamlet/wl-{dev}/telemetry", json.dumps(body), qos=1)
            )
            self.sent[dev] = seq
            n += 1
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0:
                self.stop_flag.wait(ahead)  # load shaping, not waiting for an event

    def finish(self) -> dict[int, int]:
        self.stop_flag.set()
        self.join(10)
        for info in self.infos:
            info.wait_for_publish(30)  # the broker owns every one now
        self.client.loop_stop()
        self.client.disconnect()
        return self.sent


def stored(url: str, device: str) -> list[int]:
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
    return [round(p["v"] * 1000) for p in resp.json()["points"]]


def session(broker: Broker) -> None:
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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill9_with_a_long_window_loses_nothing(
    tmp_path: Path, mqtt_broker: Broker, server: ServerProcess
) -> None:
    """With a 5 s window most of what the gateway holds at any moment is un-acked: a kill
    -9 must lose none of it (the broker redelivers), nor anything acked."""
    token = server.add_gateway(GW)
    conf = tmp_path / "gateway.toml"
    mqtt_src = {
        "name": "mqtt",
        "host": mqtt_broker.host,
        "port": mqtt_broker.port,
        "client_id": GW,
        "topics": ["hamlet/+/telemetry"],
    }
    uplink = {"url": server.url, "token": token, "backoff_base_s": 0.05, "backoff_cap_s": 0.5}
    conf.write_text(
        tomli_w.dumps(
            {
                "id": GW,
                "data_dir": str(tmp_path / "gw"),
                "heartbeat_interval_s": 3600,
                "buffer": {"durability_window_s": 5},
                "clock": {"sync": "always"},
                "uplink": uplink,
                "sources": {"mqtt": [mqtt_src]},
            }
        )
    )

    def start() -> ManagedProcess:
        gw = ManagedProcess([*HAMLET, "gateway", "run", "--config", str(conf)]).start()
        gw.wait_for(rf"gateway {GW} running", timeout=30)
        return gw

    rng = random.Random(17)
    session(mqtt_broker)
    gw = start()
    field = Field(mqtt_broker, devices=3, rate=30)  # a hamlet's burst, not its steady rate
    field.start()
    try:
        for _ in range(4):
            # Anywhere in a window: before, around and after the commits.
            time.sleep(rng.uniform(1.0, 7.0))
            gw.kill9()
            gw = start()
        sent = field.finish()
        deadline = time.monotonic() + 90
        got: dict[int, list[int]] = {}
        while time.monotonic() < deadline:
            got = {d: stored(server.url, f"wl-{d}") for d in range(3)}
            if all(set(got[d]) >= set(range(1, sent[d] + 1)) for d in range(3)):
                break
            time.sleep(0.5)
    finally:
        gw.stop()
    for d in range(3):
        want = list(range(1, sent[d] + 1))
        missing = sorted(set(want) - set(got[d]))
        assert not missing, (d, missing[:20])
    acc = accounting_for(server.url, GW)
    assert acc["missing"] == 0, acc["missing_ranges"][:10]
    assert sum(sent.values()) >= 300, sent
