"""Shared helpers for the server benchmarks: start a real server, make realistic batches."""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamlet.contract import Point, RecordKind, SeriesBlock, TimeQuality, UplinkBatch
from server import registry
from tests.support.procs import ServerProcess, start_server

METRICS = [
    "salinity",
    "water_level",
    "water_temp",
    "ec",
    "soil_moisture",
    "air_temp",
    "humidity",
    "battery",
]


def realistic_batch(
    gateway: str,
    first_seq: int,
    points: int,
    devices: int = 20,
    t0: int | None = None,
    step_ms: int = 60_000,
) -> UplinkBatch:
    """``points`` readings spread over devices x metrics, one a minute, values with noise."""
    rng = random.Random(first_seq)
    t0 = (time.time_ns() // 1_000_000 - points * step_ms) if t0 is None else t0
    series: dict[tuple[str, str], list[Point]] = {}
    keys = [(f"dev-{d}", m) for d in range(devices) for m in METRICS[:4]]
    for i in range(points):
        dev, metric = keys[i % len(keys)]
        base = {"salinity": 0.8, "water_level": 1.2, "water_temp": 28.0, "ec": 1.5}.get(metric, 5)
        v = round(base + rng.gauss(0, base * 0.05), 2)
        series.setdefault((dev, metric), []).append(
            Point(
                seq=first_seq + i,
                t=t0 + (i // len(keys)) * step_ms,
                v=max(v, 0.0),
                q=TimeQuality.SYNCED,
            )
        )
    return UplinkBatch(
        gateway=gateway,
        sent_at=time.time_ns() // 1_000_000,
        series=[
            SeriesBlock.from_points(d, m, RecordKind.READING, pts) for (d, m), pts in series.items()
        ],
    )


def gz(b: UplinkBatch) -> bytes:
    return gzip.compress(b.model_dump_json().encode(), 6)


@contextmanager
def bench_server(tmp: Path, *extra: str) -> Iterator[ServerProcess]:
    env = {
        "HAMLET_SERVER__INGEST__RATE_PER_GATEWAY": "100000",
        "HAMLET_SERVER__INGEST__BURST_PER_GATEWAY": "100000",
        "HAMLET_LOG_LEVEL": "WARNING",
    }
    with start_server(tmp, *extra, env=env) as srv:
        yield srv


def add_gateways(
    srv: ServerProcess, ids: list[str], hamlet_of: dict[str, str] | None = None
) -> dict[str, str]:
    conn = sqlite3.connect(srv.data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        return {g: registry.add_gateway(conn, g, (hamlet_of or {}).get(g, "bench")) for g in ids}
    finally:
        conn.close()


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) / 1024
    return float("nan")


def table(rows: list[tuple[str, str]]) -> None:
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: one connection, one request
    at a time. httpx's pool slows down badly with hundreds of connections in one process,
    which would measure the client, not the server."""

    def __init__(self, url: str) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        hdrs = {"Host": self.host, "Content-Length": str(len(body)), **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        data = await self.reader.readexactly(length) if length else b""
        return status, data
