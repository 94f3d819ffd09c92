"""Simulator figures: history generation speed, uplink bytes per record, frame encoding.

    python bench/sim_history.py [--quick]

Prints records/s and CPU-seconds per 10k records for the history generator (what
``hamlet sim backfill`` and ``hamlet sim fleet`` run), gzip bytes per record of the columnar
UplinkBatch against a row-per-record JSON baseline built from the same records in the same
process, and serial frames encoded per second against a plain f-string baseline.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report

from firmware_sim.frames import encode_frame
from firmware_sim.history import BatchBuilder, HistoryGenerator, batch_json
from firmware_sim.scenario import load_scenario
from firmware_sim.timebase import parse_start


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    days = 0.5 if args.quick else 3.0
    scn = load_scenario("dinh-mon")
    start = parse_start("2026-03-01")

    # 1. generation
    wall0, cpu0 = time.perf_counter(), cpu()
    gen = HistoryGenerator(scn, start, start + days * 86400)
    recs = [r for _t, window in gen.windows() for r in window]
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    n = len(recs)

    # 2. wire size: columnar batches vs one JSON object per record (baseline)
    b = BatchBuilder("gw-bench", max_records=20_000)
    columnar = 0
    for r in recs:
        b.add(r)
        if b.full:
            columnar += len(gzip.compress(batch_json(b.take(0)), 6))
    if not b.empty:
        columnar += len(gzip.compress(batch_json(b.take(0)), 6))
    rows = [
        {
            "seq": i + 1,
            "device": r.device,
            "metric": r.metric,
            "t": r.t_ms,
            "v": r.value,
            **({"attrs": r.attrs} if r.attrs else {}),
        }
        for i, r in enumerate(recs)
    ]
    naive = sum(
        len(gzip.compress(json.dumps(rows[i : i + 20_000]).encode(), 6))
        for i in range(0, len(rows), 20_000)
    )

    # 3. serial frames: our encoder vs a bare f-string + crc (baseline, no validation)
    import binascii

    k = 20_000 if args.quick else 100_000
    t0 = time.perf_counter()
    for i in range(k):
        encode_frame("sal-1", i, 1764309600.5, {"salinity": 2.35, "ec": 4.1, "water_temp": 29.4})
    ours = k / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(k):
        body = f"sal-1,{i},1764309600.5,salinity=2.35,ec=4.1,water_temp=29.4".encode()
        _ = b"$" + body + b"*" + f"{binascii.crc_hqx(body, 0xFFFF):04X}".encode() + b"\r\n"
    base = k / (time.perf_counter() - t0)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scenario dinh-mon, {len(gen.devices)} devices, {days:g} simulated days")
    print(f"{'figure':40} {'value':>14} {'baseline':>12} {'ratio':>7}")
    print(f"{'records generated':40} {n:>14,}")
    print(f"{'generation records/s':40} {n / wall:>14,.0f}")
    print(f"{'CPU-seconds per 10k records':40} {used / n * 10_000:>14.3f}")
    print(
        f"{'gzip bytes/record (columnar vs rows)':40} {columnar / n:>14.2f} "
        f"{naive / n:>12.2f} {columnar / naive:>7.2f}"
    )
    print(
        f"{'serial frames encoded/s (vs f-string)':40} {ours:>14,.0f} {base:>12,.0f} "
        f"{ours / base:>7.2f}"
    )
    print(f"{'max RSS MB':40} {rss_mb:>14.0f}")
    report("sim_history", "generation", n / wall, "records/s")
    report(
        "sim_history", "cpu_per_10k", used / n * 10_000, "CPU-s/10k records", higher_is_better=False
    )
    report(
        "sim_history",
        "uplink_bytes_per_record",
        columnar / n,
        "bytes",
        baseline=naive / n,
        higher_is_better=False,
    )
    report("sim_history", "serial_encode", ours, "frames/s", baseline=base)


if __name__ == "__main__":
    main()
