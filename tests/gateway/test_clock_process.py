"""A real ``hamlet gateway run`` whose wall clock boots in the past, syncs, then jumps.

The OS clock is the boundary we cannot move without root, so the gateway's documented
test seam adds an offset (``clock.wall_offset_file``) and ``clock.sync = "file:…"`` plays
systemd-timesyncd's flag. Everything else is real: Mosquitto, gateway process, server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from gateway.control_protocol import StatusSnapshot, status
from tests.gateway.conftest import accounting_for
from tests.support.broker import Broker
from tests.support.gateway_proc import create_session
from tests.support.procs import HAMLET, ManagedProcess, ServerProcess

GW = "gw-kill"  # create_session() subscribes for this client id
DAY = 86_400_000
PER_PHASE = 40


def wait_status(sock: Path, pred: Callable[[StatusSnapshot], bool], timeout: float = 30) -> None:
    # The gateway is another process: poll its control socket, with a deadline.
    deadline = time.monotonic() + timeout
    while True:
        st = status(sock)
        if pred(st):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(st.model_dump_json()[:2000])
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_boot_in_the_past_sync_and_clock_steps(
    tmp_path: Path, mqtt_broker: Broker, server: ServerProcess
) -> None:
    token = server.add_gateway(GW)
    flag = tmp_path / "timesync-synchronized"
    offset = tmp_path / "wall-offset-ms"
    offset.write_text(str(-10 * 365 * DAY))  # a Pi without RTC boots years in the past
    conf = {
        "id": GW,
        "data_dir": str(tmp_path / "gw"),
        "heartbeat_interval_s": 3600,
        "buffer": {"commit_interval_ms": 20},
        "clock": {
            "sync": f"file:{flag}",
            "wall_offset_file": str(offset),
            "hold_unsynced_s": 10**7,
        },
        "uplink": {"url": server.url, "token": token, "backoff_base_s": 0.05, "backoff_cap_s": 0.5},
        "sources": {
            "mqtt": [
                {
                    "name": "mqtt",
                    "host": mqtt_broker.host,
                    "port": mqtt_broker.port,
                    "client_id": GW,
                    "topics": ["hamlet/+/telemetry"],
                }
            ]
        },
    }
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(conf))
    create_session(mqtt_broker, GW, ["hamlet/+/telemetry"])
    gw = ManagedProcess([*HAMLET, "gateway", "run", "--config", str(path)]).start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="node")
    pub.connect(mqtt_broker.host, mqtt_broker.port)
    pub.loop_start()
    sock = tmp_path / "gw" / "control.sock"
    seq = 0

    def phase(offset_ms: int | None) -> None:
        nonlocal seq
        if offset_ms is not None:
            offset.write_text(str(offset_ms))
        for _ in range(PER_PHASE):
            seq += 1
            body = json.dumps({"id": "wl-9", "seq": seq, "readings": {"water_level": seq / 1000}})
            pub.publish("hamlet/wl-9/telemetry", body, qos=1).wait_for_publish(10)
        want = seq
        wait_status(sock, lambda st: st.sources[0].counters.get("records", 0) >= want)

    try:
        gw.wait_for(rf"gateway {GW} running", timeout=30)
        phase(None)  # 1: unsynchronized, 10 years in the past: held back, PENDING
        st = status(sock)
        assert st.clock.synced is False
        assert st.buffer.depth >= PER_PHASE
        flag.touch()
        synced_at = int(time.time() * 1000)
        phase(0)  # 2: NTP synced: phase 1 is re-anchored
        phase(-DAY)  # 3: clock stepped back a day
        phase(+DAY)  # 4: clock stepped forward a day: the server refuses those
        phase(0)  # 5: back to normal
        wait_status(
            sock,
            lambda st: st.buffer.depth == 0 and st.counters["rejected_by_server"] >= PER_PHASE,
        )
        st = status(sock)
    finally:
        pub.loop_stop()
        pub.disconnect()
        gw.stop()

    acc = accounting_for(server.url, GW)
    assert acc["missing"] == 0
    assert acc["received"] + acc["rejected"] == acc["highest_seq"]
    assert acc["rejected"] == PER_PHASE
    assert st.dead_letters.by_reason == {"rejected_by_server": PER_PHASE}
    now = int(time.time() * 1000)
    resp = httpx.get(
        f"{server.url}/api/v1/hamlets/dinh-phuoc/series",
        params={
            "device": "wl-9",
            "metric": "water_level",
            "start": now - 3 * DAY,
            "end": now + 3 * DAY,
            "resolution": "raw",
        },
        timeout=10,
    )
    resp.raise_for_status()
    points = {round(p["v"] * 1000): p for p in resp.json()["points"]}
    # Nothing deleted: every reading but the far-future phase is stored.
    assert sorted(points) == [*range(1, 3 * PER_PHASE + 1), *range(4 * PER_PHASE + 1, seq + 1)]
    for s in range(1, PER_PHASE + 1):  # re-anchored to real time, flagged as such
        assert points[s]["q"] == 1
        assert abs(points[s]["t"] - synced_at) < 60_000
    for s in range(PER_PHASE + 1, 2 * PER_PHASE + 1):
        assert points[s]["q"] == 0
    for s in range(2 * PER_PHASE + 1, 3 * PER_PHASE + 1):  # the day-back step, kept as is
        assert abs(points[s]["t"] - (synced_at - DAY)) < 60_000
