"""What the gateway writes to its SD card, how often it fsyncs and wakes, at a hamlet's load.

    python bench/gateway_sd_writes.py [--quick [--with-fast]] [--windows 0.2,default] [--seconds N]
        [--code NAME=DIR ...]

``--code`` compares code in the same run: each load runs once per checkout given (the first
is the baseline of the others; ``NAME=.`` is this one), prefilled by that checkout's code.

Runs the real ``hamlet gateway run`` process against real Mosquitto and a real server on
this machine, with its data directory on a block device (``--data-root``, default
/var/tmp: ``write_bytes`` in ``/proc/<pid>/io`` counts only what reaches a block device's
page cache, so a tmpfs would read 0). For each durability window it offers two loads:

* **hamlet**: 45 field sensors at 1 message a minute with 4 readings each, a radio cluster
  of 8 nodes at 1 message a minute with 2 readings, one kiosk sending an event every 20 s,
  the gateway's own heartbeat every 60 s, and one burst (a node's backfill of 200 messages)
  halfway through; about 3.3 readings a second.
* **1,000 readings/s**: one reading a message, QoS1.

Figures, all of the gateway process (every thread) over the measured span only (start-up
excluded): bytes written to the block device per committed record and projected per day
and year, fsync/fdatasync calls per hour (the gateway runs under ``strace --seccomp-bpf``
when it is installed, which stops it only at those calls), wake-ups
per hour (voluntary context switches summed over its threads) and CPU-seconds per hour.
The baseline is the same load with the 200 ms group-commit window every commit used before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
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
    field_value,
    mosquitto,
    proc_cpu_seconds,
    server,
    table,
)
from bench._report import report
from bench.gateway_throughput import status

BENCH = "gateway_sd_writes"


def io_write_bytes(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/io").read_text().splitlines():
        if ln.startswith("write_bytes:"):
            return int(ln.split()[1])
    raise RuntimeError("no write_bytes in /proc/<pid>/io")


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread: each is a sleep that ended."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M)
        total += int(m.group(1)) if m else 0
    return total


def fs_of(path: Path) -> str:
    out = subprocess.run(
        ["df", "--output=fstype,source", str(path)], capture_output=True, text=True, check=False
    )
    lines = out.stdout.split("\n")
    return " ".join(lines[1].split()) if len(lines) > 1 else "?"


def traced(argv: list[str], log: Path) -> list[str]:
    """Run under ``strace`` (when installed) recording every fsync/fdatasync with its time.

    Started under strace, not attached: with seccomp-bpf only the traced calls stop the
    process, so the wake-ups and CPU measured meanwhile are the gateway's own.
    """
    if not shutil.which("strace"):
        return argv
    return ["strace", "--seccomp-bpf", "-f", "-ttt", "-qq", "-e", "trace=fsync,fdatasync",
            "-o", str(log), *argv]  # fmt: skip


def fsyncs_between(log: Path, t0: float, t1: float) -> int | None:
    if not log.exists():
        return None
    n = 0
    for ln in log.read_text().splitlines():
        parts = ln.split()
        # "<pid> <epoch.us> fsync(12) = 0"; an interrupted call shows as "<unfinished ...>".
        if (
            len(parts) >= 3
            and parts[2].startswith(("fsync(", "fdatasync("))
            and t0 <= float(parts[1]) <= t1
        ):
            n += 1
    return n


def gateway_pid(proc: subprocess.Popen[str]) -> int:
    """The gateway's pid: the process itself, or strace's child."""
    if Path(f"/proc/{proc.pid}/comm").read_text().strip() != "strace":
        return proc.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("strace started no gateway")


@dataclass
class Publisher:
    """QoS1 publisher (paho, its own network thread)."""

    port: int

    def __post_init__(self) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{time.monotonic_ns()}")
        self.c.max_inflight_messages_set(2000)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        self.seq: dict[str, int] = {}
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.records = 0  # records the gateway will commit for what was published

    def telemetry(self, dev: str, readings: dict[str, float]) -> None:
        self.seq[dev] = self.seq.get(dev, 0) + 1
        body = {"id": dev, "seq": self.seq[dev], "readings": readings}
        self.records += len(readings)
        self.infos.append(self.c.publish(f"hamlet/{dev}/telemetry", json.dumps(body), qos=1))

    def event(self, dev: str, name: str) -> None:
        body = json.dumps({"id": dev, "event": name, "attrs": {"page": "salinity"}})
        self.records += 1
        self.infos.append(self.c.publish(f"hamlet/{dev}/event", body, qos=1))

    def close(self) -> None:
        for info in self.infos:
            info.wait_for_publish(60)
        self.c.disconnect()
        self.c.loop_stop()


def hamlet_load(pub: Publisher, seconds: float, stop: threading.Event) -> None:
    """The schedule above, spread evenly (devices are not synchronised)."""
    rng = random.Random(7)
    events: list[tuple[float, str, int]] = []
    for i in range(45):
        off = rng.uniform(0, 60)
        events += [(off + 60 * k, "sensor", i) for k in range(int(seconds / 60) + 1)]
    for i in range(8):
        off = rng.uniform(0, 60)
        events += [(off + 60 * k, "radio", i) for k in range(int(seconds / 60) + 1)]
    events += [(rng.uniform(0, 20) + 20 * k, "kiosk", 0) for k in range(int(seconds / 20) + 1)]
    events.append((seconds / 2, "burst", 0))
    events = sorted(e for e in events if e[0] < seconds)
    t0 = time.monotonic()
    for n, (at, kind, i) in enumerate(events, 1):
        left = t0 + at - time.monotonic()
        if left > 0 and stop.wait(left):
            return
        if kind == "sensor":
            pub.telemetry(f"sensor-{i:02d}", {m: field_value(m, n, rng) for m in FIELD_METRICS})
        elif kind == "radio":
            pub.telemetry(f"radio-{i}", {"water_level": field_value("water_level", n, rng),
                                         "battery": field_value("battery", n, rng)})  # fmt: skip
        elif kind == "kiosk":
            pub.event("kiosk-01", "lookup")
        else:
            for k in range(200):
                pub.telemetry("sensor-backfill", {"salinity": field_value("salinity", k, rng)})


def steady_load(pub: Publisher, seconds: float, rate: float, stop: threading.Event) -> None:
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        now = time.monotonic() - t0
        if now >= seconds:
            return
        due = int(now * rate)
        while i < due:
            pub.telemetry(f"node-{i % 50:02d}", {"salinity": round(1.0 + (i % 97) / 1000, 3)})
            i += 1
        time.sleep(0.005)


PREFILL = """
import asyncio, sys, time
from pathlib import Path
from gateway.buffer import DurableBuffer, NewRecord
from gateway.buffer.config import BufferConfig
from gateway.buffer.identity import Receipt, receipt_key
from hamlet.contract import RecordKind

async def fill(data: Path, n: int) -> None:
    cfg = BufferConfig(durability_window_s=0.01)
    async with DurableBuffer(cfg, data, "prefill") as buf:
        now = int(time.time() * 1000)
        for g in range(0, n, 2000):
            recs = [
                NewRecord(RecordKind.READING, f"old-{i % 45}", "salinity", 1.0, now, 0,
                          time.monotonic_ns(), receipt=Receipt(receipt_key("old", i)))
                for i in range(g, min(g + 2000, n))
            ]
            await buf.append(recs)
        while recs_out := (await buf.read_batch(0, None, 100_000, hold_pending=False))[0]:
            await buf.confirm([r.seq for r in recs_out], [])

asyncio.run(fill(Path(sys.argv[1]), int(sys.argv[2])))
"""


def code_env(root: Path | None) -> dict[str, str]:
    """Environment that runs the gateway from ``root`` (another checkout), or from this one."""
    env = dict(os.environ, HAMLET_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    if root is not None:
        env["PYTHONPATH"] = str(root.resolve())
    return env


def prefill(data: Path, n: int, root: Path | None) -> None:
    """A buffer as after hours of running: ``n`` records stored (with their receipts) and
    uploaded, so the receipt window is full, as it is in the field after a day. Written by
    the code under test (its page size and layout), in a process of its own."""
    subprocess.run(
        [sys.executable, "-c", PREFILL, str(data), str(n)],
        env=code_env(root),
        cwd=root or Path(__file__).resolve().parents[1],
        check=True,
    )


def run(
    tmp: Path,
    data_root: Path,
    port: int,
    srv: Any,
    window_s: float,
    load: str,
    seconds: float,
    receipts: int,
    code: tuple[str, Path | None] = ("", None),
) -> dict[str, Any]:
    name, root = code
    gw_id = f"gw-sd-{load.replace('/', '')}-{str(window_s).replace('.', '-')}{name}"
    token = add_gateway(srv, gw_id)
    data = Path(tempfile.mkdtemp(prefix="hamlet-sd-", dir=data_root))
    if receipts:
        prefill(data, receipts, root)
    conf = {
        "id": gw_id,
        "data_dir": str(data),
        "heartbeat_interval_s": 60,
        "clock": {"sync": "always"},
        "buffer": {"durability_window_s": window_s},
        "uplink": {"url": srv.url, "token": token},
        "sources": {
            "mqtt": [
                {
                    "name": "mqtt",
                    "host": "127.0.0.1",
                    "port": port,
                    "client_id": gw_id,
                    "topics": ["hamlet/+/telemetry", "hamlet/+/event"],
                }
            ]
        },
    }
    path = tmp / f"{gw_id}.toml"
    path.write_text(tomli_w.dumps(conf))
    trace = tmp / f"{gw_id}.strace"
    proc = subprocess.Popen(
        traced([*HAMLET, "gateway", "run", "--config", str(path)], trace),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=code_env(root),
        cwd=root,
    )
    tee = Tee(proc.stdout)
    tee.start()
    sock = data / "control.sock"
    stop = threading.Event()
    pid = proc.pid
    try:
        while not any("running" in ln for ln in tee.lines):
            if proc.poll() is not None:
                raise RuntimeError("\n".join(tee.lines))
            time.sleep(0.05)
        time.sleep(2)  # start-up writes (schema, first heartbeat) are not the steady state
        pid = gateway_pid(proc)
        pub = Publisher(port)
        st0 = status(sock)
        w0, cpu0, wake0 = io_write_bytes(pid), proc_cpu_seconds(pid), wakeups(pid)
        t0, wall0 = time.monotonic(), time.time()
        if load == "hamlet":
            hamlet_load(pub, seconds, stop)
        else:
            steady_load(pub, seconds, 1000.0, stop)
        # The span ends when everything offered is committed and uploaded (same for both).
        pub.close()
        want = int(st0["counters"]["committed"]) + pub.records  # type: ignore[call-overload]
        deadline = time.monotonic() + 120 + window_s
        while True:
            st = status(sock)
            done = int(st["counters"]["committed"])  # type: ignore[call-overload]
            if done >= want and st["buffer"]["depth"] == 0:  # type: ignore[call-overload]
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not commit and upload {want}: {st}")
            time.sleep(0.2)
        took = time.monotonic() - t0
        written = io_write_bytes(pid) - w0
        cpu = proc_cpu_seconds(pid) - cpu0
        wake = wakeups(pid) - wake0
        fsyncs = fsyncs_between(trace, wall0, time.time())
        records = int(st["counters"]["committed"]) - int(st0["counters"]["committed"])  # type: ignore[index]
        return {
            "code": name,
            "window": window_s,
            "load": load,
            "took": took,
            "records": records,
            "written": written,
            "cpu": cpu,
            "wake": wake,
            "fsyncs": fsyncs,
            "fs": fs_of(data),
        }
    finally:
        stop.set()
        # The gateway itself (under strace it is strace's child): a clean stop.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="about 2 minutes")
    ap.add_argument("--with-fast", action="store_true", help="--quick: also 1,000 readings/s")
    ap.add_argument("--windows", default="0.2,default", help="durability windows, s")
    ap.add_argument("--seconds", type=float, help="hamlet span per window")
    ap.add_argument("--data-root", default="/var/tmp", help="a directory on a block device")
    ap.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run the gateway from another checkout DIR (same loads, same run; the "
        "first one given is the baseline of the others); 'NAME=.' is this checkout",
    )
    ap.add_argument(
        "--receipts",
        type=int,
        default=None,
        help="records stored and uploaded before the run (default: the receipt window)",
    )
    args = ap.parse_args()
    from gateway.buffer.config import BufferConfig

    default_w = BufferConfig().durability_window_s
    receipts = BufferConfig().receipt_window if args.receipts is None else args.receipts
    windows = [default_w if w == "default" else float(w) for w in args.windows.split(",")]
    hamlet_s = args.seconds or (30.0 if args.quick else 600.0)
    fast_s = 60.0
    # --quick (about 2 minutes): the hamlet load only, a 30 s span; --with-fast adds 1,000/s.
    loads = [("hamlet", hamlet_s)]
    if not args.quick or args.with_fast:
        loads.append(("1000/s", 8.0 if args.quick else fast_s))
    codes: list[tuple[str, Path | None]] = [("", None)]
    if args.code:
        codes = []
        for spec in args.code:
            name, _, d = spec.partition("=")
            codes.append((f"-{name}", None if d in ("", ".") else Path(d)))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with mosquitto(tmp) as broker, server(tmp) as srv:
            for w in windows:
                for load, span in loads:
                    for code in codes:
                        results.append(
                            run(tmp, Path(args.data_root), broker.port, srv, w, load, span,
                                receipts, code)
                        )  # fmt: skip
    rows: list[tuple[str, str, str]] = [
        ("data directory on", results[0]["fs"], ""),
        ("records stored and uploaded before each run", f"{receipts:,}", "receipt window full"),
    ]
    base: dict[str, dict[str, Any]] = {}
    for r in results:
        per = r["written"] / max(r["records"], 1)
        day = r["written"] / r["took"] * 86400
        h = 3600 / r["took"]
        tag = f"window {r['window']:g} s, {r['load']}" + (
            f" [{r['code'][1:]}]" if r["code"] else ""
        )
        fs = "n/a (no strace)" if r["fsyncs"] is None else f"{r['fsyncs'] * h:,.0f}"
        rows += [
            (f"{tag}: records", f"{r['records']:,}", f"in {r['took']:.0f} s"),
            ("  bytes written per record", f"{per:,.0f}", "write_bytes / committed"),
            ("  projected MB/day, GB/year", f"{day / 1e6:,.1f}", f"{day * 365 / 1e9:,.1f} GB/year"),
            ("  fsyncs per hour", fs, ""),
            ("  wake-ups per hour", f"{r['wake'] * h:,.0f}", "voluntary ctxt switches"),
            ("  CPU-seconds per hour", f"{r['cpu'] * h:,.1f}", ""),
        ]
        key = r["load"]
        if r["code"]:  # variants: the first code given is the baseline, window by window
            key = f"{r['load']}, window {r['window']:g} s"
        if key not in base:
            base[key] = r
        b = base[key]
        b_per = b["written"] / max(b["records"], 1)
        what = f"{r['load']}, window {r['window']:g} s{' ' + r['code'][1:] if r['code'] else ''}"
        if b is not r:
            rows.append(
                (
                    "  ratio to the baseline run",
                    f"{b_per / max(per, 1e-9):.2f}×",
                    f"{b_per:,.0f} B before",
                )
            )
        report(BENCH, f"bytes/record ({what})", round(per), "B",
               baseline=b_per if b is not r else None, higher_is_better=False,
               floor="<= 300 B" if key == "hamlet" else None)  # fmt: skip
        report(BENCH, f"MB/day ({what})", round(day / 1e6, 1), "MB",
               higher_is_better=False, floor="<= 100 MB" if key == "hamlet" else None)  # fmt: skip
        report(BENCH, f"CPU-s/hour ({what})", round(r["cpu"] * h, 1),
               "s", higher_is_better=False)  # fmt: skip
    table("Gateway disk writes (" + ("quick" if args.quick else "full") + ")", rows)


if __name__ == "__main__":
    main()
