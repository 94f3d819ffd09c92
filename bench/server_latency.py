"""Ingest latency with 200 gateways posting at once (gzip batches of 100 readings each), one
server worker on SQLite: paced (each gateway posts every 2 s, 100 requests/s in all) and
saturated (closed loop, no pause: latency = queueing). Baseline in the same process: the
same paced load against /healthz (HTTP + event loop with no work).

    python bench/server_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import report
from _server_common import (
    RawHttp,
    add_gateways,
    bench_server,
    gz,
    realistic_batch,
    table,
)

GATEWAYS = 200
POINTS = 100
BODIES = 60  # per gateway
INTERVAL = 2.0  # seconds between batches of one gateway in the paced run


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


async def load(
    url: str,
    tokens: dict[str, str],
    seconds: float,
    path: str | None = None,
    interval: float = 0.0,
    seq_base: int = 1,
) -> tuple[list[float], int]:
    lat: list[float] = []
    readings = 0
    # Bodies are built before the clock starts: the client must not be what is measured.
    bodies = {
        gid: [
            gz(realistic_batch(gid, seq_base + k * POINTS, POINTS, devices=5))
            for k in range(BODIES)
        ]
        for gid in tokens
    }
    deadline = time.monotonic() + seconds

    async def gateway(gid: str) -> None:
        nonlocal readings
        hdrs = {
            "Authorization": f"Bearer {tokens[gid]}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        }
        k = 0
        rng = random.Random(gid)
        if interval:
            await asyncio.sleep(rng.uniform(0, interval))  # gateways are not in lockstep
        async with RawHttp(url) as http:
            while time.monotonic() < deadline and k < BODIES:
                t = time.perf_counter()
                if path:
                    status, _ = await http.request("GET", path)
                else:
                    status, data = await http.request(
                        "POST", "/api/v1/ingest", bodies[gid][k], hdrs
                    )
                    readings += json.loads(data)["accepted"]
                    k += 1
                took = time.perf_counter() - t
                lat.append(took)
                assert status == 200, status
                if interval:
                    await asyncio.sleep(max(0.0, interval - took))  # a paced sender

    async with asyncio.TaskGroup() as tg:
        for gid in tokens:
            tg.create_task(gateway(gid))
    return lat, readings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = 10.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as td, bench_server(Path(td) / "srv") as srv:
        tokens = add_gateways(srv, [f"gw-{i:03d}" for i in range(GATEWAYS)])
        base, _ = asyncio.run(
            load(srv.url, tokens, min(seconds, 5.0), path="/healthz", interval=INTERVAL)
        )
        lat, readings = asyncio.run(load(srv.url, tokens, seconds, interval=INTERVAL))
        sat, sat_readings = asyncio.run(
            load(srv.url, tokens, min(seconds, 10.0), seq_base=1 + BODIES * POINTS)
        )
    print(
        f"ingest latency, {GATEWAYS} concurrent gateways, gzip batches of {POINTS} readings, "
        f"1 worker, SQLite (client on the same 2 cores)"
    )
    table(
        [
            (
                f"paced: each gateway every {INTERVAL:g} s",
                f"{seconds:.0f} s, {len(lat):,} requests, {readings:,} readings",
            ),
            ("  p50 / p99 latency", f"{pct(lat, 50):.1f} / {pct(lat, 99):.1f} ms"),
            ("  mean latency", f"{statistics.mean(lat) * 1000:.1f} ms"),
            ("  baseline /healthz p50 / p99", f"{pct(base, 50):.1f} / {pct(base, 99):.1f} ms"),
            (
                "saturated: closed loop, no pause",
                f"{len(sat):,} requests, {sat_readings:,} readings "
                f"({len(sat) / min(seconds, 10.0):,.0f} req/s)",
            ),
            ("  p50 / p99 latency", f"{pct(sat, 50):.1f} / {pct(sat, 99):.1f} ms"),
        ]
    )
    report(
        "server_latency",
        "ingest p50, 200 gateways paced",
        pct(lat, 50),
        "ms",
        baseline=pct(base, 50),
        higher_is_better=False,
    )
    report(
        "server_latency",
        "ingest p99, 200 gateways paced",
        pct(lat, 99),
        "ms",
        baseline=pct(base, 99),
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
