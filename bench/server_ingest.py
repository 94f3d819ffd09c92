"""Ingest throughput of one server worker into SQLite over real HTTP.

Realistic uplink: gzip JSON batches of 5,000 readings (columnar, delta-encoded) from several
gateways at once. Baseline, in this same process: raw ``executemany`` of the same rows into
an SQLite table with the same primary key, no HTTP, no validation, no dedup, no rollups.

    python bench/server_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _report import report
from _server_common import (
    add_gateways,
    bench_server,
    gz,
    proc_cpu_seconds,
    proc_rss_mb,
    realistic_batch,
    table,
)

POINTS = 5_000


def baseline(batches: list, tmp: Path) -> float:  # type: ignore[type-arg]
    conn = sqlite3.connect(tmp / "baseline.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE points (series INTEGER NOT NULL, t INTEGER NOT NULL, gw INTEGER NOT NULL,"
        " seq INTEGER NOT NULL, v REAL NOT NULL, q INTEGER NOT NULL, vmin REAL, vmax REAL,"
        " n INTEGER, PRIMARY KEY (series, t, gw, seq)) WITHOUT ROWID"
    )
    rows_per_batch = []
    for gw, b in batches:
        rows = []
        for sid, blk in enumerate(b.series):
            rows.extend(
                (hash((gw, sid)) & 0xFFFF, p.t, gw, p.seq, p.v, 0, None, None, None)
                for p in blk.points()
            )
        rows_per_batch.append(rows)
    n = 0
    start = time.perf_counter()
    for rows in rows_per_batch:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO points VALUES (?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        n += len(rows)
    took = time.perf_counter() - start
    conn.close()
    return n / took


async def post_all(url: str, tokens: dict[str, str], bodies: dict[str, list[bytes]]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def one(gid: str) -> None:
            hdrs = {
                "Authorization": f"Bearer {tokens[gid]}",
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
            }
            for body in bodies[gid]:
                r = await client.post("/api/v1/ingest", content=body, headers=hdrs)
                r.raise_for_status()
                assert r.json()["accepted"] == POINTS, r.text

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for gid in tokens:
                tg.create_task(one(gid))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    gateways = 4
    per_gw = 10 if args.quick else 50
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        ids = [f"gw-{i}" for i in range(gateways)]
        # Each gateway's batches move forward in time, as a live uplink's do (one batch
        # covers POINTS / 80 series = 63 one-minute rounds); the last one ends about now.
        span_ms = (POINTS // 80 + 1) * 60_000
        t_start = time.time_ns() // 1_000_000 - (per_gw + 1) * span_ms
        batches = {
            g: [
                realistic_batch(g, 1 + k * POINTS, POINTS, t0=t_start + k * span_ms)
                for k in range(per_gw)
            ]
            for g in ids
        }
        bodies = {g: [gz(b) for b in bs] for g, bs in batches.items()}
        wire = sum(len(b) for bs in bodies.values() for b in bs)
        total = gateways * per_gw * POINTS
        with bench_server(tmp / "srv") as srv:
            tokens = add_gateways(srv, ids)
            pid = srv.process.proc.pid
            # Warm-up: first batch per gateway creates its series rows.
            warm = {g: [gz(realistic_batch(g, 10**9, POINTS))] for g in ids}
            asyncio.run(post_all(srv.url, tokens, {g: warm[g] for g in ids}))
            cpu0 = proc_cpu_seconds(pid)
            took = asyncio.run(post_all(srv.url, tokens, bodies))
            cpu = proc_cpu_seconds(pid) - cpu0
            rss = proc_rss_mb(pid)
        base = baseline([(i, b) for i, g in enumerate(ids) for b in batches[g]], tmp)
    rate = total / took
    print(
        f"server ingest, 1 worker, SQLite, {gateways} gateways x {per_gw} gzip batches "
        f"of {POINTS} readings"
    )
    table(
        [
            ("readings", f"{total:,}"),
            ("wall time", f"{took:.2f} s"),
            ("throughput", f"{rate:,.0f} readings/s (floor 100,000)"),
            ("server CPU", f"{cpu / total * 10_000:.3f} CPU-s per 10k readings"),
            ("server peak RSS", f"{rss:.0f} MB"),
            ("bytes on the wire", f"{wire / total:.2f} per reading (gzip JSON)"),
            ("baseline executemany", f"{base:,.0f} rows/s (same process, no HTTP)"),
            ("ratio server/baseline", f"{rate / base:.2f}"),
        ]
    )
    report(
        "server_ingest",
        "ingest readings/s (1 worker, SQLite, HTTP gzip)",
        rate,
        "readings/s",
        baseline=base,
        floor=">= 100000",
    )
    report(
        "server_ingest",
        "server CPU per 10k readings",
        cpu / total * 10_000,
        "CPU-s",
        higher_is_better=False,
    )
    report(
        "server_ingest",
        "bytes on the wire per reading",
        wire / total,
        "bytes",
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
