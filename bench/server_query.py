"""Query latency over a year of a commune's data: 8 hamlets x 40 devices, one reading a
minute (168 million readings), generated straight into the SQLite store through the same
write path as ingest (minus HTTP), then queried over real HTTP.

Baseline, same process: the raw SQL ``SELECT`` of a day of points for one series.

    python bench/server_query.py [--quick]   # --quick: 8 x 5 devices, 30 days
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _report import report
from _server_common import bench_server, table
from rich.progress import Progress

from server import registry
from server.classify import AcceptedBlock
from server.store import sqlite_series as ss
from server.store.schema import open_db

HAMLETS = 8
MIN = 60_000
DAY = 86_400_000


def generate(db: Path, devices: int, days: int, end_ms: int) -> int:
    conn = open_db(db)
    ids = ss.SeriesIds()
    start = end_ms - days * DAY
    total = 0
    try:
        gws = []
        for h in range(HAMLETS):
            registry.add_gateway(conn, f"gw-{h}", f"hamlet-{h}")
            gw = registry.gateway_by_id(conn, f"gw-{h}")
            assert gw is not None
            gws.append(gw)
        with Progress() as progress:
            task = progress.add_task("generating", total=days * HAMLETS)
            for day in range(days):
                t0 = start + day * DAY
                times = list(range(t0, t0 + DAY, MIN))
                for h, gw in enumerate(gws):
                    conn.execute("BEGIN")
                    for d in range(devices):
                        vals = [0.5 + ((t // MIN + d) % 720) / 1000 for t in times]
                        base = 1 + (day * devices + d) * len(times)
                        blk = AcceptedBlock(
                            f"sal-{d}",
                            "salinity",
                            "reading",
                            list(range(base, base + len(times))),
                            times,
                            vals,
                            None,
                        )
                        total += ss.write_points(
                            conn,
                            ids,
                            hamlet=f"hamlet-{h}",
                            gateway=gw.id,
                            gw=gw.num,
                            blocks=[blk],
                            now_ms=end_ms,
                            day_offset_ms=7 * 3_600_000,
                        )
                    conn.execute("COMMIT")
                    progress.advance(task)
    finally:
        conn.close()
    return total


def timed(client: httpx.Client, path: str, params: dict[str, object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path, params=params)
        out.append(time.perf_counter() - t)
        r.raise_for_status()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    devices, days = (5, 30) if args.quick else (40, 365)
    end = (time.time_ns() // 1_000_000) // DAY * DAY
    with tempfile.TemporaryDirectory() as td:
        data = Path(td) / "srv"
        data.mkdir()
        t = time.perf_counter()
        total = generate(data / "hamlet.sqlite3", devices, days, end)
        gen_s = time.perf_counter() - t
        size_mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        with bench_server(data) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
            p = "/api/v1/hamlets/hamlet-3/series"
            q = {"device": "sal-2", "metric": "salinity"}
            rows = [
                (
                    "day of raw points (1,440)",
                    timed(c, p, {**q, "start": end - DAY, "end": end}, 20),
                ),
                ("week, hourly (168)", timed(c, p, {**q, "start": end - 7 * DAY, "end": end}, 20)),
                (
                    "30 days, hourly (720)",
                    timed(c, p, {**q, "start": end - 30 * DAY, "end": end}, 20),
                ),
                (
                    f"{days} days, daily",
                    timed(
                        c, p, {**q, "start": end - days * DAY, "end": end, "resolution": "day"}, 20
                    ),
                ),
                ("latest, one hamlet", timed(c, "/api/v1/hamlets/hamlet-3/latest", {}, 20)),
                ("devices, whole commune", timed(c, "/api/v1/devices", {}, 10)),
            ]
        conn = sqlite3.connect(data / "hamlet.sqlite3")
        sid = conn.execute(
            "SELECT id FROM series WHERE hamlet='hamlet-3' AND device='sal-2'"
        ).fetchone()[0]
        base = []
        for _ in range(20):
            t = time.perf_counter()
            conn.execute(
                "SELECT t, v FROM points WHERE series=? AND t>=? AND t<?", (sid, end - DAY, end)
            ).fetchall()
            base.append(time.perf_counter() - t)
        conn.close()
    print(
        f"query latency: {HAMLETS} hamlets x {devices} devices x {days} days, 1 reading/min "
        f"= {total:,} readings ({size_mb:,.0f} MB on disk, generated in {gen_s:.0f} s)"
    )
    table(
        [
            (name, f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms")
            for name, xs in rows
        ]
        + [
            ("baseline raw SELECT of a day", f"median {statistics.median(base) * 1000:.2f} ms"),
        ]
    )
    for name, xs in rows:
        report(
            "server_query",
            f"query {name}",
            statistics.median(xs) * 1000,
            "ms",
            baseline=statistics.median(base) * 1000 if name.startswith("day") else None,
            higher_is_better=False,
        )


if __name__ == "__main__":
    main()
