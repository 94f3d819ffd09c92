"""A commune's monthly report card over a year of data: 8 hamlets x 40 devices, one reading a
minute (168 million readings), on the SQLite store. Floor: 200 ms for the card.

The report reads only rollups, so the year is generated straight into them — the rows a year
of minute readings leaves behind, with the values ingest would have written: per device and
day the minute count (``presence_day``), per kiosk/hotspot/gateway and hour the minute mask
(``presence``), per series and hour n/sum/min/max (``hourly``), the delay histogram, and the
kiosks' dossier and rating events and the radios' broadcasts. Raw points are not generated
(the card never reads them; bench/server_query.py covers raw reads).

Baseline, same process: one SQL ``SELECT`` summing the month's ``presence_day`` rows of the
commune — the floor any report over these rollups pays.

    python bench/report_card.py [--quick]   # --quick: 8 x 10 devices, 62 days
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import report

from hamlet.vncalendar import day_bounds_ms
from server import registry
from server.config import ServerConfig
from server.indicators.card import build_card
from server.indicators.compute import day_number
from server.indicators.rollups import HOUR_MS
from server.models import DeviceIn, DeviceKind
from server.store.schema import open_db
from server.store.sqlite import SqliteStore

HAMLETS = 8
FULL = (1 << 60) - 1
# Per hamlet: 2 kiosks, 1 radio, 1 hotspot; the rest sensors (salinity, water level, soil).
SERVICE = (("kiosk-1", "kiosk"), ("kiosk-2", "kiosk"), ("radio-1", "radio"), ("wifi-1", "wifi"))
SENSOR_METRICS = ("salinity", "water_level", "soil_moisture", "air_temp")


def generate(path: Path, devices: int, first: date, days: int) -> int:
    conn = open_db(path)
    rng = random.Random(7)
    rows = 0
    conn.execute("BEGIN")
    for h in range(HAMLETS):
        hamlet = f"hamlet-{h}"
        registry_add(conn, hamlet, h)
        sensors = [f"sensor-{i}" for i in range(devices - len(SERVICE))]
        for name, kind in SERVICE:
            conn.execute(
                "INSERT INTO devices(hamlet, id, kind) VALUES (?,?,?)", (hamlet, name, kind)
            )
        for i, s in enumerate(sensors):
            conn.execute(
                "INSERT INTO devices(hamlet, id, kind, crop, expected_interval_s) "
                "VALUES (?,?,?,?,60)",
                (hamlet, s, "sensor", "durian" if i % 2 else "rice"),
            )
            conn.execute(
                "INSERT INTO series(hamlet, device, metric, kind) VALUES (?,?,?,'reading')",
                (hamlet, s, SENSOR_METRICS[i % len(SENSOR_METRICS)]),
            )
        sids = [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT id, metric FROM series WHERE hamlet = ? ORDER BY id", (hamlet,)
            )
        ]
        pday, masks, hourly, delays, events = [], [], [], [], []
        seq = 0
        for d in range(days):
            day = first + timedelta(days=d)
            dn = day_number(day)
            a, _ = day_bounds_ms(day)
            for s in sensors:
                got = 1440 - (rng.randrange(30) if rng.random() < 0.1 else 0)
                pday.append((hamlet, s, 0, dn, got))
                pday.append((hamlet, s, 1, dn, got))
            for name, _kind in SERVICE:
                pday.append((hamlet, name, 1, dn, 1440))
            pday.append((hamlet, f"gw-{h}", 1, dn, 1440))
            pday.append((hamlet, f"gw-{h}", 2, dn, 1440))
            for hr in range(24):
                hour = (a + hr * HOUR_MS) // HOUR_MS
                for name in ("kiosk-1", "kiosk-2", "wifi-1"):
                    masks.append((hamlet, name, 1, hour, FULL))
                masks.append((hamlet, f"gw-{h}", 1, hour, FULL))
                masks.append((hamlet, f"gw-{h}", 2, hour, FULL))
                for sid, metric in sids:
                    base = {"salinity": 0.4, "water_level": 1.5}.get(metric, 25.0)
                    v = base + rng.random() * 0.3
                    hourly.append((sid, hour * HOUR_MS, 60, v * 60, v - 0.05, v + 0.05))
            delays.append((hamlet, f"gw-{h}", dn, 3, 1440 * devices))
            for k in range(12):  # dossiers and ratings at the kiosks
                t = a + 8 * HOUR_MS + k * 600_000
                seq += 1
                ch = ("online", "assisted", "in_person")[k % 3]
                events.append((h, seq, hamlet, "kiosk-1", "dossier_submitted", t, ch))
                seq += 1
                events.append((h, seq, hamlet, "kiosk-2", "rating", t, json.dumps(k % 3 + 1)))
            for hh in (5, 17):
                seq += 1
                events.append((h, seq, hamlet, "radio-1", "broadcast", a + hh * HOUR_MS, ""))
        conn.executemany("INSERT INTO presence_day VALUES (?,?,?,?,?)", pday)
        conn.executemany("INSERT INTO presence VALUES (?,?,?,?,?)", masks)
        conn.executemany("INSERT INTO hourly VALUES (?,?,?,?,?,?)", hourly)
        conn.executemany("INSERT INTO delay_day VALUES (?,?,?,?,?)", delays)
        conn.executemany(
            "INSERT INTO events(gw, seq, hamlet, device, kind, name, t, q, attrs) "
            "VALUES (?,?,?,?,'event',?,?,0,?)",
            [
                (
                    gw,
                    s,
                    hm,
                    dev,
                    name,
                    t,
                    json.dumps({"channel": x})
                    if name == "dossier_submitted"
                    else json.dumps({"scale": 3, "score": int(x)})
                    if name == "rating"
                    else "{}",
                )
                for gw, s, hm, dev, name, t, x in events
            ],
        )
        rows += len(pday) + len(masks) + len(hourly) + len(delays) + len(events)
    conn.execute("COMMIT")
    conn.close()
    return rows


def registry_add(conn: object, hamlet: str, h: int) -> None:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    conn.execute("INSERT OR IGNORE INTO communes(id) VALUES ('commune')")
    conn.execute("INSERT INTO hamlets(id, commune) VALUES (?, 'commune')", (hamlet,))
    conn.execute(
        "INSERT INTO gateways(id, hamlet, created_ms) VALUES (?, ?, 0)", (f"gw-{h}", hamlet)
    )
    _ = registry, DeviceIn, DeviceKind  # the registry's tables, written directly for speed


async def measure(
    data_dir: Path, first: date, last: date, runs: int
) -> tuple[list[float], list[float], int]:
    cfg = ServerConfig.model_validate({"environment": "development", "data_dir": str(data_dir)})
    now = day_bounds_ms(last + timedelta(days=1))[0] + 3_600_000
    async with SqliteStore(cfg) as store:
        hamlets = [f"hamlet-{h}" for h in range(HAMLETS)]
        d0, d1 = day_number(first), day_number(last) + 1

        def baseline_q(conn: object) -> object:
            import sqlite3

            assert isinstance(conn, sqlite3.Connection)
            return conn.execute(
                "SELECT count(*), sum(minutes) FROM presence_day "
                f"WHERE hamlet IN ({','.join('?' * len(hamlets))}) AND day >= ? AND day < ?",
                [*hamlets, d0, d1],
            ).fetchone()

        card = await build_card(store, cfg.indicators, "commune", first, last, now_ms=now)
        assert card.rows[0].value is not None
        times, base = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            card = await build_card(store, cfg.indicators, "commune", first, last, now_ms=now)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await store.db.read(baseline_q)
            base.append(time.perf_counter() - t0)
        return times, base, len(card.rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="8 x 10 devices, 62 days")
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    devices, days = (10, 62) if args.quick else (40, 365)
    first = date(2025, 1, 1)
    # The report is for the last full month of the generated data, compared with the one before.
    last_day = first + timedelta(days=days - 1)
    month_first = last_day.replace(day=1)
    if (last_day + timedelta(days=1)).month == last_day.month:
        month_first = (month_first - timedelta(days=1)).replace(day=1)
    month_last = (month_first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hamlet.sqlite3"
        t0 = time.perf_counter()
        rows = generate(path, devices, first, days)
        gen = time.perf_counter() - t0
        print(
            f"generated {rows:,} rollup rows ({HAMLETS} hamlets x {devices} devices x {days} "
            f"days of minute data = {HAMLETS * devices * days * 1440:,} readings) in {gen:.1f} s"
        )
        times, base, n = asyncio.run(measure(Path(tmp), month_first, month_last, args.runs))
    card_s, base_s = statistics.median(times), statistics.median(base)
    print(
        f"report card {month_first:%Y-%m} (with {n} indicators and the month before): "
        f"{card_s * 1000:.1f} ms median, {min(times) * 1000:.1f} ms best of {args.runs} "
        f"(floor 200 ms); baseline presence_day SELECT {base_s * 1000:.2f} ms median, "
        f"{min(base) * 1000:.2f} ms best; ratio {card_s / base_s:.0f}x; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    report(
        "report_card",
        "commune_month_ms",
        card_s * 1000,
        "ms",
        baseline=base_s * 1000,
        floor="200 ms",
        higher_is_better=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
