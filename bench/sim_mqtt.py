"""Simulated MQTT devices against Mosquitto: messages/s the simulator can generate.

    python bench/sim_mqtt.py [--quick]

Runs the demo scenario's MQTT devices replicated N times (one aiomqtt client each, QoS 1)
at a short reporting interval for a fixed time and reports published messages/s and
CPU-seconds per 10k messages, against a baseline in the same process: one bare paho client
publishing QoS 1 messages of the same size as fast as it can. Needs ``mosquitto`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report

from firmware_sim.runner import RunOptions, Simulation
from firmware_sim.scenario import Transport, load_scenario


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = workdir / "m.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"
        "log_type error\nlog_type notice\nlog_type information\n"
        "max_queued_messages 1000000\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        if b" running" in line:
            break
    # Keep draining its log so a full pipe never blocks the broker.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, port


async def sim_rate(port: int, copies: int, seconds: float) -> tuple[int, float, float]:
    scn = load_scenario("demo")
    scn = scn.model_copy(
        update={"devices": [d for d in scn.devices if d.transport == Transport.MQTT]}
    )
    opts = RunOptions(mqtt_port=port, interval_s=0.05, replicate=copies)
    async with Simulation(scn, opts, say=lambda _s: None) as sim:
        c0, n0, t0 = cpu(), sim.stats["mqtt_published"], time.perf_counter()
        await asyncio.sleep(seconds)
        n = sim.stats["mqtt_published"] - n0
        return n, time.perf_counter() - t0, cpu() - c0


def paho_rate(port: int, seconds: float, size: int) -> tuple[int, float, float]:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    payload = b"x" * size
    n, c0, t0 = 0, cpu(), time.perf_counter()
    pending = []
    while time.perf_counter() - t0 < seconds:
        pending.append(c.publish("bench/baseline", payload, qos=1))
        n += 1
        if len(pending) >= 1000:
            for p in pending:
                p.wait_for_publish(5)
            pending.clear()
    for p in pending:
        p.wait_for_publish(5)
    dt, used = time.perf_counter() - t0, cpu() - c0
    c.loop_stop()
    c.disconnect()
    return n, dt, used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        print("mosquitto is not installed (apt-get install mosquitto)")
        sys.exit(1)
    seconds = 8.0 if args.quick else 30.0
    copies = 20 if args.quick else 60
    with tempfile.TemporaryDirectory() as d:
        proc, port = start_mosquitto(Path(d))
        try:
            n, dt, used = asyncio.run(sim_rate(port, copies, seconds))
            bn, bdt, bused = paho_rate(port, seconds, size=130)
        finally:
            proc.terminate()
            proc.wait(10)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate, base = n / dt, bn / bdt
    print(f"{copies * 5} simulated MQTT clients, {seconds:g} s, QoS 1, Mosquitto")
    print(f"{'figure':36} {'value':>12} {'baseline':>12} {'ratio':>7}")
    print(
        f"{'messages/s (sim vs 1 bare paho)':36} {rate:>12,.0f} {base:>12,.0f} {rate / base:>7.2f}"
    )
    print(
        f"{'CPU-s per 10k messages':36} {used / max(n, 1) * 1e4:>12.3f} "
        f"{bused / max(bn, 1) * 1e4:>12.3f}"
    )
    print(f"{'max RSS MB':36} {rss:>12.0f}")
    report("sim_mqtt", "publish_rate", rate, "msg/s", baseline=base)
    report(
        "sim_mqtt",
        "cpu_per_10k",
        used / max(n, 1) * 1e4,
        "CPU-s/10k msg",
        baseline=bused / max(bn, 1) * 1e4,
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
