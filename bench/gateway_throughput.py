"""Sustained MQTT -> committed buffer -> server throughput of ``hamlet gateway run``.

    python bench/gateway_throughput.py [--quick]

Mosquitto holds a backlog of QoS1 telemetry for the gateway's persistent session; the
gateway process (pinned to one core with taskset) drains it through its real MQTT source,
pipeline, durable buffer and uplink into a real server on this machine. The figure is
readings per second from the gateway's start until the server has stored every one of
them (accounting: missing = 0). CPU-seconds are the gateway process's own.
Baseline, same process: a bare paho QoS1 consumer (manual ack, no processing) draining the
same backlog from the same broker: the Python MQTT client's ceiling.
Mosquitto runs with ``max_inflight_messages 1000`` (see docs/store-and-forward.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from bench._gateway_common import (
    FIELD_METRICS,
    HAMLET,
    Tee,
    add_gateway,
    mosquitto,
    proc_cpu_seconds,
    proc_status_mb,
    server,
    table,
)
from bench._report import report
from gateway import control_protocol

BENCH = "gateway_throughput"
TOPIC = "hamlet/{}/telemetry"


def subscribe_session(port: int, client_id: str) -> None:
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *_a: done.set()
    c.on_connect = lambda cl, *_a: cl.subscribe("hamlet/+/telemetry", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def preload(port: int, messages: int, per_msg: int) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.max_inflight_messages_set(5000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = []
    seqs: dict[int, int] = {}
    for i in range(messages):
        node = i % 50
        seqs[node] = seqs.get(node, 0) + 1
        readings = {m: round(1.0 + (i % 97) / 1000, 3) for m in FIELD_METRICS[:per_msg]}
        body = json.dumps({"id": f"node-{node:02d}", "seq": seqs[node], "readings": readings})
        infos.append(c.publish(TOPIC.format(f"node-{node:02d}"), body, qos=1))
        if len(infos) >= 20_000:  # message ids are 16 bit: never more than that outstanding
            for info in infos:
                info.wait_for_publish(60)
            infos.clear()
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def bare_consumer(port: int, messages: int) -> float:
    """Messages/s a bare paho QoS1 consumer with manual ack drains (the baseline)."""
    client_id = "bare-consumer"
    subscribe_session(port, client_id)
    preload(port, messages, 1)
    got = 0
    done = threading.Event()
    t0 = 0.0

    def on_message(c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal got, t0
        if got == 0:
            t0 = time.monotonic()
        c.ack(m.mid, m.qos)
        got += 1
        if got >= messages:
            done.set()

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True
    )
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(300)
    took = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    return got / took


def status(sock: Path) -> dict[str, object]:
    out: dict[str, object] = control_protocol.status(sock).model_dump(mode="json")
    return out


def run_gateway(
    tmp: Path, port: int, srv: object, messages: int, per_msg: int, profile: Path | None = None
) -> dict[str, Any]:
    gw_id = f"gw-bench-{per_msg}"
    token = add_gateway(srv, gw_id)  # type: ignore[arg-type]
    url = srv.url  # type: ignore[attr-defined]
    data = tmp / f"gw-{per_msg}"
    conf = {
        "id": gw_id,
        "data_dir": str(data),
        "heartbeat_interval_s": 3600,
        "clock": {"sync": "always"},
        "buffer": {"commit_interval_ms": 200},
        "uplink": {"url": url, "token": token, "max_batch_records": 10_000},
        "sources": {
            "mqtt": [
                {
                    "name": "mqtt",
                    "host": "127.0.0.1",
                    "port": port,
                    "client_id": gw_id,
                    "topics": ["hamlet/+/telemetry"],
                    "batch_max": 2000,
                }
            ]
        },
    }
    path = tmp / f"gw-{per_msg}.toml"
    path.write_text(tomli_w.dumps(conf))
    subscribe_session(port, gw_id)
    preload(port, messages, per_msg)
    import subprocess

    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    env = dict(os.environ, HAMLET_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    argv = [HAMLET[0], *prof, *HAMLET[1:]] if not prof else [HAMLET[0], *prof, "-m", "hamlet"]
    proc = subprocess.Popen(
        [*pin, *argv, "gateway", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    tee = Tee(proc.stdout)
    tee.start()
    try:
        while not any("running" in ln for ln in tee.lines):
            if proc.poll() is not None:
                raise RuntimeError("\n".join(tee.lines))
            time.sleep(0.01)
        t0 = time.monotonic()
        cpu0 = proc_cpu_seconds(proc.pid)
        sock = data / "control.sock"
        want = messages * per_msg
        st: dict[str, object] = {}
        deadline = time.monotonic() + 600
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not upload {want} readings in 600 s: {st}")
            st = status(sock)
            counters = st["counters"]
            assert isinstance(counters, dict)
            if counters["uploaded"] >= want and st["buffer"]["depth"] == 0:  # type: ignore[index]
                break
            time.sleep(0.05)
        took = time.monotonic() - t0
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        rss = proc_status_mb(proc.pid, "VmHWM")
        return {
            "took": took,
            "cpu": cpu,
            "rss": rss,
            "readings": want,
            "uploaded": float(counters["uploaded"]),
            "committed": float(counters["committed"]),
            "gw": gw_id,
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", help="write a cProfile of the gateway's main thread here")
    args = ap.parse_args()
    # Preloading the broker is the slow part (a paho publisher); keep --quick under a minute.
    messages = 12_000 if args.quick else 60_000
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with mosquitto(tmp) as broker, server(tmp) as srv:
            base = bare_consumer(broker.port, messages)
            prof = Path(args.profile) if args.profile else None
            one = run_gateway(tmp, broker.port, srv, messages, 1, prof)
            four = run_gateway(tmp, broker.port, srv, messages // 2, 4)
            from tests.gateway_store.conftest import accounting_for

            accs = [accounting_for(srv.url, str(r["gw"])) for r in (one, four)]
            acc = {k: sum(a[k] for a in accs) for k in ("missing", "duplicates", "received")}
    r1 = one["readings"] / one["took"]
    r4 = four["readings"] / four["took"]
    rows = [
        ("1 reading/message: readings/s end to end", f"{r1:,.0f}", "floor 10,000/s, no loss"),
        (
            "  CPU-s per 10,000 readings",
            f"{one['cpu'] / one['readings'] * 10_000:.2f}",
            "gateway process, 1 core",
        ),
        ("4 readings/message: readings/s end to end", f"{r4:,.0f}", f"{r4 / 4:,.0f} messages/s"),
        ("  CPU-s per 10,000 readings", f"{four['cpu'] / four['readings'] * 10_000:.2f}", ""),
        ("baseline: bare paho QoS1 consumer, msg/s", f"{base:,.0f}", "no processing at all"),
        ("gateway peak RSS", f"{max(one['rss'], four['rss']):.1f} MB", ""),
        (
            "server accounting: missing / duplicates",
            f"{acc['missing']} / {acc['duplicates']}",
            f"received {acc['received']:,}",
        ),
    ]
    table("MQTT -> buffer -> server (" + ("quick" if args.quick else "full") + ")", rows)
    report(
        BENCH,
        "readings/s (1 per message)",
        round(r1),
        "readings/s",
        baseline=base,
        floor=">= 10000/s, no loss",
    )
    report(BENCH, "readings/s (4 per message)", round(r4), "readings/s", baseline=base)
    report(
        BENCH,
        "CPU-s per 10k readings (1/msg)",
        round(one["cpu"] / one["readings"] * 10_000, 3),
        "s",
        higher_is_better=False,
    )
    report(BENCH, "missing at server", acc["missing"], "seqs", floor="0")


if __name__ == "__main__":
    main()
