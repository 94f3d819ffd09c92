"""Durable buffer: fsyncs per second at 1,000 readings/s, commit cost, RSS with 1M buffered.

    python bench/gateway_buffer.py [--quick]

Baselines, same process and same SQLite settings (WAL, synchronous=FULL):
- fsyncs: a naive buffer that commits each reading on its own (what most gateways do);
- insert cost: raw ``executemany`` of the same rows in one transaction (the floor);
- RSS: this process after imports, before the gateway starts.
fsyncs are counted by strace (fsync + fdatasync) on a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._gateway_common import FIELD_METRICS, field_value, proc_status_mb, table
from bench._report import report

BENCH = "gateway_buffer"


# --------------------------------------------------------------------------- children
async def child_pipeline(seconds: float, rate: int, data_dir: Path) -> None:
    """Readings at ``rate``/s through the real pipeline, one reading per submit."""
    from gateway.buffer import DurableBuffer
    from gateway.buffer.config import BufferConfig
    from gateway.clock import Clock, ClockConfig
    from gateway.pipeline import Pipeline
    from gateway.records import Reading

    clock = Clock(ClockConfig(sync="always"))
    async with DurableBuffer(BufferConfig(), data_dir, clock.boot_id) as buf:
        pipe = Pipeline(buf, clock)
        start = time.monotonic()
        n = 0
        tasks: set[asyncio.Task[None]] = set()
        while time.monotonic() - start < seconds:
            # Each submit is a separate source message; they wait for the group commit
            # concurrently, as MQTT messages in flight do.
            t = asyncio.create_task(pipe.submit([Reading(f"wl-{n % 20}", "water_level", 1.0)]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*tasks)
        print(f"CHILD readings={n} commits={buf.counters.commits}", flush=True)


def child_naive(seconds: float, rate: int, data_dir: Path) -> None:
    con = sqlite3.connect(data_dir / "naive.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, dev TEXT, metric TEXT, v REAL, t INT)")
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        con.execute(
            "INSERT INTO r(dev, metric, v, t) VALUES (?,?,?,?)",
            (f"wl-{n % 20}", "water_level", 1.0, time.time_ns() // 1_000_000),
        )
        n += 1
        ahead = n / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    print(f"CHILD readings={n} commits={n}", flush=True)


def run_traced(mode: str, seconds: float, rate: int) -> tuple[int, int, float]:
    """(fsync calls, readings, seconds) for a child run under strace."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        cmd = [
            "strace",
            "-f",
            "-c",
            "-e",
            "trace=fsync,fdatasync",
            "-o",
            str(out),
            sys.executable,
            __file__,
            "--child",
            mode,
            "--seconds",
            str(seconds),
            "--rate",
            str(rate),
            "--dir",
            tmp,
        ]
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        took = time.monotonic() - t0
        m = re.search(r"CHILD readings=(\d+)", res.stdout)
        readings = int(m.group(1)) if m else 0
        calls = 0
        for line in out.read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                calls += int(parts[3]) if len(parts) >= 6 else int(parts[-2])
        return calls, readings, min(took, seconds)


# --------------------------------------------------------------------------- RSS
async def rss_with_buffered(
    total: int, max_bytes: int | None = None
) -> tuple[float, float, float, float]:
    """(RSS before, RSS after, peak, seconds) buffering ``total`` readings in a Gateway
    whose server is unreachable (everything stays buffered, unless ``max_bytes`` is a budget
    they outgrow: then the buffer aggregates and drops as they arrive)."""
    from gateway.app import Gateway
    from gateway.config import GatewayConfig
    from gateway.records import Reading

    before = proc_status_mb(os.getpid())
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GatewayConfig.model_validate(
            {
                "id": "gw-bench",
                "data_dir": tmp,
                "heartbeat_interval_s": 3600,
                "clock": {"sync": "always"},
                "uplink": {"url": "http://127.0.0.1:9", "token": "x" * 40, "backoff_cap_s": 60},
            }
        )
        if max_bytes is not None:
            cfg.buffer.max_bytes = max_bytes
        async with Gateway(cfg, sources=[]) as gw:
            t0 = time.monotonic()
            i = 0
            while i < total:
                recs = []
                for _ in range(1000):
                    m = FIELD_METRICS[i % 4]
                    recs.append(Reading(f"node-{(i // 4) % 20}", m, field_value(m, i // 80, rng)))
                    i += 1
                await gw.pipeline.submit(recs)
            took = time.monotonic() - t0
            after = proc_status_mb(os.getpid())
            peak = proc_status_mb(os.getpid(), "VmHWM")
            assert max_bytes is not None or gw.buffer.depth >= total
    return before, after, peak, took


def insert_baseline(total: int) -> float:
    """Raw executemany of ``total`` rows (same columns) in one transaction: rows/s."""
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(
            "CREATE TABLE rec (seq INTEGER PRIMARY KEY, kind INT, sid INT, value REAL,"
            " wall_ms INT, tq INT, boot INT, mono_ns INT, attrs TEXT)"
        )
        rows = [
            (i, 0, i % 80, 1.0, 1_764_300_000_000 + i, 0, 1, i, None) for i in range(1, total + 1)
        ]
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO rec VALUES (?,?,?,?,?,?,?,?,?)", rows)
        con.execute("COMMIT")
        took = time.perf_counter() - t0
        con.close()
        return total / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--dir")
    args = ap.parse_args()
    if args.child == "pipeline":
        asyncio.run(child_pipeline(args.seconds, args.rate, Path(args.dir)))
        return
    if args.child == "naive":
        child_naive(args.seconds, args.rate, Path(args.dir))
        return

    seconds = 5.0 if args.quick else 20.0
    total = 200_000 if args.quick else 1_000_000
    if args.child is None and os.environ.get("BENCH_ONLY_RSS"):
        before, after, peak, took = asyncio.run(rss_with_buffered(total))
        print(before, after, peak, total / took)
        return
    calls, n, secs = run_traced("pipeline", seconds, 1000)
    base_calls, base_n, base_secs = run_traced("naive", seconds, 1000)
    fsync_rate = calls / secs
    base_rate = base_calls / base_secs
    before, after, peak, took = asyncio.run(rss_with_buffered(total))
    raw_rate = insert_baseline(min(total, 200_000))
    ours_rate = total / took
    # The same stream into a 4 MiB budget it outgrows (about 2x in --quick, 10x in a full
    # run): once full, every commit also aggregates or drops. Cost against the run with room.
    _, _, _, full_took = asyncio.run(rss_with_buffered(total, max_bytes=4 * 1024 * 1024))
    full_rate = total / full_took
    rows = [
        (
            "fsyncs/s at 1,000 readings/s (group commit)",
            f"{fsync_rate:.1f}",
            f"{n} readings in {secs:.0f} s",
        ),
        ("  baseline: commit per reading", f"{base_rate:.1f}", f"{base_n} readings"),
        (
            f"RSS with {total:,} readings buffered",
            f"{after:.1f} MB",
            f"peak {peak:.1f} MB; floor < 80 MB (1M)",
        ),
        ("  baseline: same process before start", f"{before:.1f} MB", ""),
        ("pipeline -> committed, readings/s", f"{ours_rate:,.0f}", "batches of 1,000, full path"),
        ("  baseline: raw executemany, rows/s", f"{raw_rate:,.0f}", "one transaction, no logic"),
        (
            "same, budget full (4 MiB), readings/s",
            f"{full_rate:,.0f}",
            f"{total:,} readings; ratio {full_rate / ours_rate:.2f} of the run with room",
        ),
    ]
    table("Durable buffer (" + ("quick" if args.quick else "full") + ")", rows)
    report(
        BENCH,
        "fsyncs/s at 1k readings/s",
        round(fsync_rate, 1),
        "1/s",
        baseline=base_rate,
        higher_is_better=False,
    )
    report(
        BENCH,
        f"RSS with {total} buffered",
        round(after, 1),
        "MB",
        baseline=before,
        floor="< 80 MB at 1M",
        higher_is_better=False,
    )
    report(BENCH, "pipeline commit rate", round(ours_rate), "readings/s", baseline=raw_rate)
    report(BENCH, "commit rate, budget full", round(full_rate), "readings/s", baseline=ours_rate)


if __name__ == "__main__":
    main()
