"""MQTT -> committed buffer -> server throughput of ``hamlet gateway run``: its own ceiling.

    python bench/gateway_throughput.py [--quick] [--publishers N]

The load generator is Mosquitto's own compiled client: ``--publishers`` (default 8)
``mosquitto_pub -l -q 1 -M 1000`` processes, one device topic each, reading their messages
from a file, QoS1 pipelined (up to 1,000 unacknowledged messages each). It runs on the
cores the gateway is not pinned to (``taskset``).

1. The generator alone, into a bare compiled subscriber (``mosquitto_sub -q 1`` on the
   gateway's core): the rate it offers. It must exceed the gateway's figure below, or that
   figure is the generator's, not the gateway's.
2. The gateway (``hamlet gateway run``, pinned to one core with taskset) live, subscribed
   before the generator starts: readings per second from the generator's first message
   until the server has stored every reading (accounting: missing = 0, duplicates = 0).
   Because the generator is faster, Mosquitto queues the surplus for the gateway's
   persistent session and the gateway drains it flat out: the time is the gateway's own.
   The generator's rate during that run is printed too (it shares the machine with the
   server and broker then).

Baseline, same process: a bare paho QoS1 consumer (manual ack, no processing) draining the
same load from the same broker: the Python MQTT client's own ceiling.
Mosquitto runs with ``max_inflight_messages 1000`` (see docs/store-and-forward.md).
CPU-seconds are the gateway process's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
GATEWAY_CORE = 0


def other_cores() -> list[str]:
    """``taskset`` prefix for everything but the gateway: the cores it is not pinned to."""
    cores = sorted(os.sched_getaffinity(0) - {GATEWAY_CORE})
    if not cores or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", ",".join(map(str, cores))]


def gateway_core() -> list[str]:
    return ["taskset", "-c", str(GATEWAY_CORE)] if shutil.which("taskset") else []


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


def drop_session(port: int, client_id: str) -> None:
    """End a persistent session, so the broker queues nothing more for it."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.disconnect()


def load_files(tmp: Path, tag: str, messages: int, per_msg: int, devices: int) -> list[Path]:
    """One file per device, one telemetry message a line (``mosquitto_pub -l``)."""
    files = []
    for d in range(devices):
        dev = f"node-{tag}-{d:02d}"
        n = messages // devices + (1 if d < messages % devices else 0)
        lines = []
        for k in range(1, n + 1):
            readings = ",".join(
                f'"{m}":{1.0 + (k % 97) / 1000:.3f}' for m in FIELD_METRICS[:per_msg]
            )
            lines.append(f'{{"id":"{dev}","seq":{k},"readings":{{{readings}}}}}\n')
        path = tmp / f"load-{tag}-{d:02d}.txt"
        path.write_text("".join(lines))
        files.append(path)
    return files


@dataclass
class Generator:
    """``mosquitto_pub`` processes, one a device file, QoS1 with 1,000 messages in flight."""

    port: int
    files: list[Path]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    t0: float = 0.0
    t1: float = 0.0
    _inputs: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.t0 = time.monotonic()
        for f in self.files:
            dev = f.stem.removeprefix("load-")
            stdin = f.open("rb")
            self._inputs.append(stdin)
            argv = [*other_cores(), "mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port),
                    "-q", "1", "-M", "1000", "-l", "-i", f"gen-{dev}",
                    "-t", TOPIC.format(f"node-{dev}")]  # fmt: skip
            self.procs.append(subprocess.Popen(argv, stdin=stdin, stderr=subprocess.PIPE))

    def done(self) -> bool:
        """All published and acknowledged by the broker (each exits after its last PUBACK)."""
        if self.t1:
            return True
        if any(p.poll() is None for p in self.procs):
            return False
        self.t1 = time.monotonic()
        for p, f in zip(self.procs, self._inputs, strict=True):
            f.close()
            err = p.stderr.read().decode() if p.stderr else ""
            if p.returncode != 0:
                raise RuntimeError(f"mosquitto_pub exited {p.returncode}: {err}")
        return True

    def run(self) -> float:
        self.start()
        return self.wait()

    def wait(self, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while not self.done():
            if time.monotonic() > deadline:
                raise TimeoutError("load generator did not finish")
            time.sleep(0.005)
        return self.t1 - self.t0


def generator_alone(port: int, files: list[Path], messages: int) -> dict[str, float]:
    """The generator into a bare compiled subscriber on the gateway's core."""
    sub_id = "bare-sub"
    subscribe_session(port, sub_id)
    sub = subprocess.Popen(
        [*gateway_core(), "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-c", "-i", sub_id, "-t", "hamlet/+/telemetry", "-C", str(messages)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    gen = Generator(port, files)
    took = gen.run()
    sub.wait(300)
    got = time.monotonic() - gen.t0
    drop_session(port, sub_id)
    return {"offered": messages / took, "delivered": messages / got}


def bare_consumer(tmp: Path, port: int, messages: int) -> float:
    """Messages/s a bare paho QoS1 consumer with manual ack drains (the baseline)."""
    client_id = "bare-consumer"
    subscribe_session(port, client_id)
    Generator(port, load_files(tmp, "paho", messages, 1, 8)).run()
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
    drop_session(port, client_id)
    return got / took


def status(sock: Path) -> dict[str, object]:
    out: dict[str, object] = control_protocol.status(sock).model_dump(mode="json")
    return out


def run_gateway(
    tmp: Path,
    port: int,
    srv: object,
    files: list[Path],
    readings: int,
    per_msg: int,
    profile: Path | None = None,
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
    env = dict(os.environ, HAMLET_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    argv = [HAMLET[0], *prof, *HAMLET[1:]] if not prof else [HAMLET[0], *prof, "-m", "hamlet"]
    proc = subprocess.Popen(
        [*gateway_core(), *argv, "gateway", "run", "--config", str(path)],
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
        sock = data / "control.sock"
        cpu0 = proc_cpu_seconds(proc.pid)
        gen = Generator(port, files)
        gen.start()
        st: dict[str, object] = {}
        deadline = time.monotonic() + 600
        while True:
            gen.done()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not upload {readings} readings in 600 s: {st}")
            st = status(sock)
            counters = st["counters"]
            assert isinstance(counters, dict)
            if counters["uploaded"] >= readings and st["buffer"]["depth"] == 0:  # type: ignore[index]
                break
            time.sleep(0.02)
        took = time.monotonic() - gen.t0
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        rss = proc_status_mb(proc.pid, "VmHWM")
        return {
            "took": took,
            "gen_took": gen.wait(),
            "cpu": cpu,
            "rss": rss,
            "readings": readings,
            "uploaded": float(counters["uploaded"]),
            "committed": float(counters["committed"]),
            "gw": gw_id,
        }
    finally:
        proc.terminate()
        proc.wait(30)
        drop_session(port, gw_id)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--publishers", type=int, default=8, help="mosquitto_pub processes")
    ap.add_argument("--profile", help="write a cProfile of the gateway's main thread here")
    args = ap.parse_args()
    if not shutil.which("mosquitto_pub") or not shutil.which("mosquitto_sub"):
        sys.exit("needs mosquitto_pub and mosquitto_sub (Debian: mosquitto-clients)")
    messages = 60_000 if args.quick else 240_000
    n = args.publishers
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with mosquitto(tmp) as broker, server(tmp) as srv:
            one_files = load_files(tmp, "a", messages, 1, n)
            four_files = load_files(tmp, "b", messages // 4, 4, n)
            alone = generator_alone(broker.port, load_files(tmp, "s", messages, 1, n), messages)
            base = bare_consumer(tmp, broker.port, messages)
            prof = Path(args.profile) if args.profile else None
            one = run_gateway(tmp, broker.port, srv, one_files, messages, 1, prof)
            four = run_gateway(tmp, broker.port, srv, four_files, messages // 4 * 4, 4)
            from tests.gateway.conftest import accounting_for

            accs = [accounting_for(srv.url, str(r["gw"])) for r in (one, four)]
            acc = {k: sum(a[k] for a in accs) for k in ("missing", "duplicates", "received")}
    r1 = one["readings"] / one["took"]
    r4 = four["readings"] / four["took"]
    g1 = one["readings"] / one["gen_took"]
    rows = [
        (
            f"generator alone ({n} mosquitto_pub, QoS1): msg/s",
            f"{alone['offered']:,.0f}",
            f"into a bare mosquitto_sub ({alone['delivered']:,.0f} msg/s delivered)",
        ),
        ("1 reading/message: readings/s end to end", f"{r1:,.0f}", "the gateway's ceiling"),
        (
            "  generator during that run, msg/s",
            f"{g1:,.0f}",
            f"done {one['gen_took']:.1f} s in; gateway uploaded all {one['took']:.1f} s in",
        ),
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
    if alone["offered"] <= r1:
        print("  NOTE: the generator alone was not faster than the gateway: raise --publishers")
    report(BENCH, "generator alone, msg/s", round(alone["offered"]), "msg/s", baseline=r1)
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
