"""Uplink: backlog drain rate to a local server, and bytes on the wire per reading.

    python bench/gateway_uplink.py [--quick]

A buffer is filled with realistic field readings (20 nodes x 4 metrics, one a minute, tide
and salinity curves at sensor resolution, gateway receive-time jitter), then the real
Uplink drains it into a real ``hamlet server run`` on this machine.
Baselines, same process: the same batches posted by a bare httpx loop (pre-encoded, no
buffer reads or deletes) for the drain rate; the same readings as one gzip JSON object per
reading (row-oriented, the usual format) for bytes per reading.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._gateway_common import (
    FIELD_METRICS,
    add_gateway,
    field_value,
    proc_cpu_seconds,
    server,
    table,
)
from bench._report import report

BENCH = "gateway_uplink"
NODES = 20
T0 = 1_764_300_000_000


def records(total: int) -> list[object]:
    from gateway.buffer import NewRecord
    from hamlet.contract import RecordKind

    rng = random.Random(7)
    out: list[object] = []
    per_minute = NODES * len(FIELD_METRICS)
    for i in range(total):
        minute, k = divmod(i, per_minute)
        node, m = divmod(k, len(FIELD_METRICS))
        metric = FIELD_METRICS[m]
        # Stamped when the gateway received it: the node's minute plus radio/queue jitter.
        wall = T0 + minute * 60_000 + node * 1500 + rng.randint(0, 250)
        out.append(
            NewRecord(
                RecordKind.READING,
                f"node-{node:02d}",
                metric,
                field_value(metric, minute, rng),
                wall,
                0,
                i,
            )
        )
    return out


async def fill(data_dir: Path, total: int) -> None:
    from gateway.buffer import DurableBuffer
    from gateway.buffer.config import BufferConfig

    recs = records(total)
    cfg = BufferConfig(max_bytes=1024 * 1024 * 1024)
    async with DurableBuffer(cfg, data_dir, "bench-boot") as buf:
        for i in range(0, total, 20_000):
            await buf.append(recs[i : i + 20_000])  # type: ignore[arg-type]


async def drain(data_dir: Path, url: str, token: str, total: int) -> tuple[float, float, int, int]:
    """(seconds, gateway CPU seconds, bytes sent, records uploaded)."""
    from gateway.buffer import DurableBuffer
    from gateway.buffer.config import BufferConfig
    from gateway.clock import Clock, ClockConfig
    from gateway.uplink import Uplink
    from gateway.uplink.config import UplinkConfig

    clock = Clock(ClockConfig(sync="always"), boot_id="bench-boot")
    ucfg = UplinkConfig.model_validate({"url": url, "token": token, "max_batch_records": 10_000})
    cfg = BufferConfig(max_bytes=1024 * 1024 * 1024)
    async with DurableBuffer(cfg, data_dir, clock.boot_id) as buf:
        cpu0 = proc_cpu_seconds(os.getpid())
        t0 = time.monotonic()
        async with Uplink(ucfg, "gw-bench", buf, clock) as up:
            while buf.depth > 0:
                up.uploaded.clear()
                if buf.depth == 0:
                    break
                await asyncio.wait_for(up.uploaded.wait(), 60)
            took = time.monotonic() - t0
            cpu = proc_cpu_seconds(os.getpid()) - cpu0
            return took, cpu, up.status.bytes_sent, up.status.uploaded


async def baseline_post(url: str, token: str, total: int) -> float:
    """Readings/s posting the same content pre-encoded with bare httpx (no buffer)."""
    import httpx

    from gateway.buffer import StoredRecord
    from gateway.uplink.encode import encode_batch
    from hamlet.contract import RecordKind

    recs = records(total)
    bodies = []
    seq = 10_000_000  # fresh seqs: the server must store them, not dedupe them
    for i in range(0, total, 10_000):
        chunk = [
            StoredRecord(
                seq + j,
                RecordKind.READING,
                r.device,
                r.metric,
                r.value,  # type: ignore[attr-defined]
                r.wall_ms,
                0,
            )
            for j, r in enumerate(recs[i : i + 10_000])
        ]  # type: ignore[attr-defined]
        seq += len(chunk)
        bodies.append(encode_batch("gw-base", T0, chunk, []).body)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient(timeout=120) as client:
        t0 = time.monotonic()
        for b in bodies:
            r = await client.post(f"{url}/api/v1/ingest", content=b, headers=headers)
            r.raise_for_status()
        return total / (time.monotonic() - t0)


def row_oriented_bytes(total: int) -> float:
    recs = records(min(total, 100_000))
    body = json.dumps(
        [
            {
                "device": r.device,
                "metric": r.metric,
                "value": r.value,  # type: ignore[attr-defined]
                "ts": r.wall_ms,
                "seq": i,
            }
            for i, r in enumerate(recs)
        ]
    ).encode()  # type: ignore[attr-defined]
    # Per-batch gzip of 10,000-reading batches, like ours.
    size = sum(len(gzip.compress(body[i : i + 10_000 * 80])) for i in range(0, len(body), 800_000))
    return size / len(recs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    total = 200_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        asyncio.run(fill(tmp / "gw", total))
        with server(tmp) as srv:
            token = add_gateway(srv, "gw-bench")
            base_token = add_gateway(srv, "gw-base")
            srv_cpu0 = proc_cpu_seconds(srv.process.proc.pid)
            took, cpu, sent, uploaded = asyncio.run(drain(tmp / "gw", srv.url, token, total))
            srv_cpu = proc_cpu_seconds(srv.process.proc.pid) - srv_cpu0
            base_rate = asyncio.run(baseline_post(srv.url, base_token, total))
    rate = uploaded / took
    per_reading = sent / uploaded
    row_bytes = row_oriented_bytes(total)
    rows = [
        (f"backlog drain, {total:,} readings", f"{rate:,.0f}/s", "floor 20,000/s"),
        ("  baseline: same batches, bare httpx", f"{base_rate:,.0f}/s", "server-bound ceiling"),
        ("gateway CPU-s per 10,000 drained", f"{cpu / uploaded * 10_000:.3f}", ""),
        ("server CPU-s per 10,000 drained", f"{srv_cpu / uploaded * 10_000:.3f}", ""),
        ("bytes on the wire per reading", f"{per_reading:.2f}", "floor < 15 (gzip columnar)"),
        ("  baseline: row-oriented gzip JSON", f"{row_bytes:.2f}", ""),
    ]
    table("Uplink (" + ("quick" if args.quick else "full") + ")", rows)
    report(
        BENCH,
        f"backlog drain ({total})",
        round(rate),
        "readings/s",
        baseline=base_rate,
        floor=">= 20000/s",
    )
    report(
        BENCH,
        "bytes on the wire per reading",
        round(per_reading, 2),
        "B",
        baseline=row_bytes,
        floor="< 15",
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
