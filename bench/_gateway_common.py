"""Shared by the gateway benchmarks: real server, real Mosquitto, process figures, tables.

Not a benchmark itself: run_all.py skips files starting with an underscore.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.broker import free_port  # noqa: E402
from tests.support.procs import HAMLET, ServerProcess, run_hamlet, start_server  # noqa: E402

DEV_ENV = {
    "HAMLET_SERVER__ENVIRONMENT": "development",
    # The server's per-gateway ingest rate limit protects it from a runaway gateway; a
    # benchmark measuring the gateway's ceiling lifts it.
    "HAMLET_SERVER__INGEST__RATE_PER_GATEWAY": "1000000",
    "HAMLET_SERVER__INGEST__BURST_PER_GATEWAY": "1000000",
    "HAMLET_LOG_LEVEL": "WARNING",
}


@contextmanager
def server(tmp: Path) -> Iterator[ServerProcess]:
    with start_server(tmp / "server", env=DEV_ENV) as srv:
        yield srv


def add_gateway(srv: ServerProcess, gw: str) -> str:
    import json

    out = run_hamlet(
        "server",
        "add-gateway",
        gw,
        "--hamlet",
        "bench",
        "--data-dir",
        str(srv.data_dir),
        "--json",
        env=DEV_ENV,
    )
    return str(json.loads(out)["token"])


@dataclass
class Mosquitto:
    proc: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@contextmanager
def mosquitto(tmp: Path, inflight: int = 1000) -> Iterator[Mosquitto]:
    """Mosquitto as a Pi would run it, with max_inflight_messages raised (see the doc)."""
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages {inflight}\n"
        "max_queued_messages 10000000\nlog_dest stdout\nlog_type error\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Ready when the port accepts a connection (its log is block-buffered into a pipe).
    import socket

    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)
    m = Mosquitto(proc, port)
    try:
        yield m
    finally:
        m.stop()


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, key: str = "VmRSS") -> float:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith(key + ":"):
            return int(ln.split()[1]) / 1024
    return math.nan


def field_value(metric: str, i: int, rng: random.Random) -> float:
    """Realistic values at realistic resolution (what sensors actually report)."""
    hours = i / 60
    if metric == "water_level":  # semi-diurnal tide (M2 12.42 h), mm resolution
        return round(1.1 + 0.7 * math.sin(2 * math.pi * hours / 12.42) + rng.gauss(0, 0.004), 3)
    if metric == "salinity":  # per mille, 0.01 resolution
        return round(
            max(0.0, 0.9 + 0.4 * math.sin(2 * math.pi * hours / 12.42) + rng.gauss(0, 0.01)), 2
        )
    if metric == "water_temp":
        return round(28 + 2 * math.sin(2 * math.pi * hours / 24) + rng.gauss(0, 0.05), 1)
    return round(12.6 + rng.gauss(0, 0.02), 2)  # battery volts


FIELD_METRICS = ("water_level", "salinity", "water_temp", "battery")


def table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        print(f"  {a:<{w0}}  {b:>{w1}}  {c}")


class Tee(threading.Thread):
    """Drain a child's output so it never blocks on a full pipe."""

    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip())


__all__ = ["HAMLET", "ServerProcess"]
