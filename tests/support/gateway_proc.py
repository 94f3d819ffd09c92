"""`hamlet gateway run` as an operator runs it, and what the server stored, counted one by one."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.support.procs import HAMLET, ManagedProcess, run_hamlet


def write_config(
    path: Path,
    gw_id: str,
    broker: Broker,
    url: str,
    token: str,
    topics: list[str],
    heartbeat_s: float = 3600,
) -> Path:
    conf = {
        "id": gw_id,
        "data_dir": str(path.parent / "gw"),
        "heartbeat_interval_s": heartbeat_s,
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
                    "client_id": gw_id,
                    "topics": topics,
                }
            ]
        },
    }
    path.write_text(tomli_w.dumps(conf))
    return path


def create_session(broker: Broker, client_id: str, topics: list[str]) -> None:
    """Make the broker hold the gateway's persistent session and subscriptions before any
    reading is published (as after any first run on a Pi), so none precede them."""
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *_a: done.set()
    c.on_connect = lambda cl, *_a: cl.subscribe([(t, 1) for t in topics])
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert done.wait(10), "no SUBACK from the broker"
    finally:
        c.disconnect()
        c.loop_stop()


def start_gateway(conf: Path, gw_id: str) -> ManagedProcess:
    gw = ManagedProcess([*HAMLET, "gateway", "run", "--config", str(conf)]).start()
    gw.wait_for(rf"gateway {gw_id} running", timeout=60)
    return gw


def gateway_status(conf: Path) -> dict[str, Any]:
    return dict(json.loads(run_hamlet("gateway", "status", "--config", str(conf), "--json")))


def stored_points(url: str, device: str, metric: str, hamlet: str = "dinh-phuoc") -> list[float]:
    """Every point the server stored for one series: a list, so duplicates stay visible."""
    now = int(time.time() * 1000)
    resp = httpx.get(
        f"{url}/api/v1/hamlets/{hamlet}/series",
        params={
            "device": device,
            "metric": metric,
            "start": now - 3_600_000,
            "end": now + 3_600_000,
            "resolution": "raw",
            "limit": 100_000,
        },
        timeout=30,
    )
    resp.raise_for_status()
    return [float(p["v"]) for p in resp.json()["points"]]


def count_ids(values: list[float], scale: int) -> Counter[int]:
    return Counter(round(v * scale) for v in values)
