"""Restart to first upload after ``kill -9`` of ``hamlet gateway run`` under load.

    python bench/gateway_restart.py [--quick]

A publisher sends QoS1 telemetry at a steady rate through Mosquitto; the gateway is killed
-9 at a random moment, and started again at once (as systemd does). Measured from the new
process's spawn: "running" printed (buffer opened, sources started), and the server's
count of records received from the gateway first moving (the first upload of the new
process). Then: every reading counted once at the server (exactly once, issue 9).
Baseline, same process: the same restart after a clean stop (SIGTERM), so the ratio shows
what recovery after a power cut costs over a planned restart.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from bench._gateway_common import HAMLET, Tee, add_gateway, mosquitto, server, table
from bench._report import report

BENCH = "gateway_restart"
GW = "gw-restart"
RATE = 750.0


def _session(port: int) -> None:
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GW, clean_session=False)
    c.on_subscribe = lambda *_a: done.set()
    c.on_connect = lambda cl, *_a: cl.subscribe("hamlet/+/telemetry", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


class Load(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-nodes")
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", port)
        self.stop = threading.Event()
        self.sent = 0
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def run(self) -> None:
        self.c.loop_start()
        t0 = time.monotonic()
        while not self.stop.is_set():
            self.sent += 1
            body = json.dumps({"id": "wl-1", "seq": self.sent, "readings": {"water_level": 1.0}})
            self.infos.append(self.c.publish("hamlet/wl-1/telemetry", body, qos=1))
            ahead = self.sent / RATE - (time.monotonic() - t0)
            if ahead > 0:
                self.stop.wait(ahead)

    def finish(self) -> int:
        self.stop.set()
        self.join(10)
        for info in self.infos:
            info.wait_for_publish(60)
        self.c.loop_stop()
        self.c.disconnect()
        return self.sent


def _received(url: str) -> int:
    for g in httpx.get(f"{url}/api/v1/gateways", timeout=10).json():
        if g["id"] == GW:
            return int(g["received"])
    return 0


def _spawn(conf: Path) -> tuple[subprocess.Popen[str], Tee]:
    proc = subprocess.Popen(
        [*HAMLET, "gateway", "run", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tee = Tee(proc.stdout)
    tee.start()
    return proc, tee


def _restart(conf: Path, url: str) -> tuple[subprocess.Popen[str], float, float]:
    """Spawn; return the process, seconds to "running" and to the first upload."""
    before = _received(url)
    t0 = time.monotonic()
    proc, tee = _spawn(conf)
    running = first = 0.0
    while not first:
        if proc.poll() is not None:
            raise RuntimeError("\n".join(tee.lines))
        if not running and any("running" in ln for ln in tee.lines):
            running = time.monotonic() - t0
        if _received(url) > before:
            first = time.monotonic() - t0
        time.sleep(0.01)  # a measurement's sampling interval (10 ms resolution)
    return proc, running, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 3 if args.quick else 10
    rng = random.Random(9)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with mosquitto(tmp) as mq, server(tmp) as srv:
            token = add_gateway(srv, GW)
            conf = tmp / "gw.toml"
            conf.write_text(
                tomli_w.dumps(
                    {
                        "id": GW,
                        "data_dir": str(tmp / "gw"),
                        "heartbeat_interval_s": 3600,
                        "clock": {"sync": "always"},
                        "uplink": {"url": srv.url, "token": token},
                        "sources": {
                            "mqtt": [
                                {
                                    "name": "mqtt",
                                    "port": mq.port,
                                    "client_id": GW,
                                    "topics": ["hamlet/+/telemetry"],
                                }
                            ]
                        },
                    }
                )
            )
            _session(mq.port)
            load = Load(mq.port)
            load.start()
            proc, _, _ = _restart(conf, srv.url)
            kill: list[tuple[float, float]] = []
            clean: list[tuple[float, float]] = []
            for _ in range(rounds):
                for how, out in (("kill", kill), ("term", clean)):
                    time.sleep(rng.uniform(0.3, 1.5))  # a random moment under load
                    if how == "kill":
                        proc.kill()
                    else:
                        proc.terminate()
                    proc.wait(30)
                    proc, running, first = _restart(conf, srv.url)
                    out.append((running, first))
            sent = load.finish()
            deadline = time.monotonic() + 120
            while _received(srv.url) < sent and time.monotonic() < deadline:
                time.sleep(0.1)
            proc.terminate()
            proc.wait(30)
            now = int(time.time() * 1000)
            pts = httpx.get(
                f"{srv.url}/api/v1/hamlets/bench/series",
                params={"device": "wl-1", "metric": "water_level", "start": now - 3_600_000,
                        "end": now + 60_000, "resolution": "raw", "limit": 100_000},
                timeout=30,
            ).json()["points"]  # fmt: skip
    k_first = statistics.median(f for _, f in kill)
    c_first = statistics.median(f for _, f in clean)
    k_max = max(f for _, f in kill)
    table(
        f"Restart to first upload, {rounds} rounds at {RATE:.0f} msg/s (median; max)",
        [
            ("after kill -9: running", f"{statistics.median(r for r, _ in kill):.2f} s", ""),
            ("after kill -9: first upload", f"{k_first:.2f} s", f"max {k_max:.2f} s"),
            ("baseline, after SIGTERM: first upload", f"{c_first:.2f} s",
             f"max {max(f for _, f in clean):.2f} s"),
            ("readings sent / stored at server", f"{sent} / {len(pts)}", "exactly once: equal"),
        ],
    )  # fmt: skip
    report(BENCH, "restart to first upload after kill -9", round(k_first, 3), "s",
           baseline=round(c_first, 3), higher_is_better=False)  # fmt: skip
    report(BENCH, "readings stored twice or lost", abs(len(pts) - sent), "readings", floor="0")


if __name__ == "__main__":
    main()
