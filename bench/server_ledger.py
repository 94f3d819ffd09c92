"""Worst-shaped ingest batches against normal ones of the same size: the ledger (dedup,
gaps, loss accounting) must cost about the same whatever a batch's shape.

Each case settles batches straight into a fresh SQLite server database with the store's own
``settle_batch`` (classification, points, rollups, ledger, rejections, one commit), no HTTP,
and compares with a normal batch holding the same number of records, in the same run:

- gaps: 10,000 records and 10,000 disjoint one-seq gaps between them, vs 20,000 records;
- straddling blocks: after 30,000 alternating seqs (15,000 ledger ranges), 3,000 blocks of
  two seqs each spanning all of them, vs the same 3,000 blocks of two consecutive seqs
  after 30,000 contiguous ones;
- 100k interleaved: 10,000 blocks of 10 seqs, block i holding i, i+10,000, i+20,000, ...
  vs the same 10,000 blocks holding 10 consecutive seqs each.

The normal batch has the same devices and blocks, so the ratio isolates the seq layout.

    python bench/server_ledger.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import report
from _server_common import table

from hamlet.contract import Gap, GapReason, Point, RecordKind, SeriesBlock, TimeQuality, UplinkBatch
from server.registry import GatewayRow
from server.store import sqlite_series as ss
from server.store.schema import open_db
from server.store.settle import settle_batch

NOW = 1_764_309_600_000
T0 = NOW - 3 * 86_400_000
GW = GatewayRow(num=1, id="gw-bench", hamlet="h", revoked=False, created_ms=0)


def blk(device: str, seqs: list[int], t0: int = T0) -> SeriesBlock:
    """Readings one second apart from ``t0``: times do not depend on the seqs, so the worst
    and normal batches write the same rollups and differ only in seq layout."""
    q = TimeQuality.SYNCED
    pts = [Point(seq=s, t=t0 + j * 1000, v=1.0 + (s % 7) * 0.1, q=q) for j, s in enumerate(seqs)]
    return SeriesBlock.from_points(device, "rain", RecordKind.READING, pts)


def mk(series: list[SeriesBlock], gaps: Sequence[tuple[int, int]] = ()) -> UplinkBatch:
    return UplinkBatch.model_construct(
        v=1,
        gateway=GW.id,
        sent_at=NOW,
        series=series,
        events=[],
        gaps=[Gap(first=a, last=b, reason=GapReason.DROPPED) for a, b in gaps],
    )


def settle(tmp: Path, name: str, batches: list[UplinkBatch]) -> float:
    """Seconds to settle the last batch (earlier ones prepare the ledger)."""
    conn = open_db(tmp / f"{name}.sqlite3")
    ids = ss.SeriesIds()
    took = 0.0
    for b in batches:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        settle_batch(conn, ids, GW, b, NOW, day_offset_ms=7 * 3_600_000, keep_rejections=1000)
        conn.execute("COMMIT")
        took = time.perf_counter() - t0
    conn.close()
    return took


def chunks(seqs: list[int], n: int) -> list[SeriesBlock]:
    size = -(-len(seqs) // n)
    return [blk(f"d{i}", seqs[i * size : (i + 1) * size]) for i in range(n)]


def cases(
    scale: int,
) -> list[tuple[str, Callable[[], list[UplinkBatch]], Callable[[], list[UplinkBatch]]]]:
    n_gaps = 10_000 // scale
    alt = 30_000 // scale
    n_blocks = 3_000 // scale
    inter = 10_000 // scale

    def gaps_worst() -> list[UplinkBatch]:
        recs = list(range(1, 2 * n_gaps + 1, 2))
        return [mk(chunks(recs, 10), [(s, s) for s in range(2, 2 * n_gaps + 1, 2)])]

    def gaps_normal() -> list[UplinkBatch]:
        return [mk(chunks(list(range(1, 2 * n_gaps + 1)), 10))]

    base = 1_000_000

    def straddle_worst() -> list[UplinkBatch]:
        first = mk(chunks(list(range(base + 1, base + 2 * alt + 1, 2)), 10))
        hi = base + 2 * alt
        second = mk([blk(f"x{i}", [base + 2 + 2 * i, hi - 2 * i]) for i in range(n_blocks)])
        return [first, second]

    def straddle_normal() -> list[UplinkBatch]:
        first = mk(chunks(list(range(base + 1, base + alt + 1)), 10))
        after = base + alt
        second = mk([blk(f"x{i}", [after + 2 * i + 1, after + 2 * i + 2]) for i in range(n_blocks)])
        return [first, second]

    def inter_worst() -> list[UplinkBatch]:
        return [mk([blk(f"y{i}", [i + 1 + k * inter for k in range(10)]) for i in range(inter)])]

    def inter_normal() -> list[UplinkBatch]:
        return [mk([blk(f"y{i}", list(range(10 * i + 1, 10 * i + 11))) for i in range(inter)])]

    return [
        (f"{n_gaps:,} one-seq gaps", gaps_worst, gaps_normal),
        (f"{n_blocks:,} blocks over {alt:,} alternating", straddle_worst, straddle_normal),
        (f"{10 * inter:,} records, {inter:,} interleaved blocks", inter_worst, inter_normal),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i, (name, worst, normal) in enumerate(cases(10 if args.quick else 1)):
            w = settle(tmp, f"w{i}", worst())
            n = settle(tmp, f"n{i}", normal())
            figure = f"{w * 1000:8.1f} ms  (normal batch: {n * 1000:.1f} ms, ratio {w / n:.2f})"
            rows.append((name, figure))
            report(
                "server_ledger",
                f"settle: {name}",
                w * 1000,
                "ms",
                baseline=n * 1000,
                higher_is_better=False,
                floor="well under 1 s",
            )
    print("Worst-shaped batch vs normal batch of the same size (settle_batch into SQLite):")
    table(rows)


if __name__ == "__main__":
    main()
