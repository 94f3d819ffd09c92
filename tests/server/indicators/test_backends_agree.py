"""Both backends count threshold hours the same way.

InfluxDB cannot run here, so the part of its path that is ours is checked against SQLite's:
the InfluxDB store counts hours above thresholds in Python (``count_above``) over the hourly
rows its Flux query returns, SQLite counts them in SQL (``hours_above_sql``). Fed the same
hourly rollups, they must agree exactly; and the Flux text must select what SQLite selects.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.indicators.source import count_above, hourly_rows, hours_above_sql
from server.store.influx import hourly_rollups_flux
from server.store.schema import open_db

HOUR = 3_600_000
T0 = 1_741_626_000_000  # 2025-03-11 00:00 Vietnam time (17:00 UTC the day before)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    means=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 71), st.floats(0, 5, allow_nan=False)),
        max_size=80,
    ),
    levels=st.lists(st.floats(0.1, 4.5, allow_nan=False), min_size=3, max_size=3).map(sorted),
    strict=st.booleans(),
)
def test_sql_and_python_counting_agree(
    tmp_path: Path, means: list[tuple[int, int, float]], levels: list[float], strict: bool
) -> None:
    # A fresh file per call: Hypothesis may run the same example twice (replay, shrinking).
    db = tmp_path / f"agree-{uuid.uuid4().hex}.sqlite3"
    conn = open_db(db)
    try:
        _check_agreement(conn, means, levels, strict)
    finally:
        conn.close()


def _check_agreement(
    conn: sqlite3.Connection, means: list[tuple[int, int, float]], levels: list[float], strict: bool
) -> None:
    conn.execute("BEGIN")
    for d in range(3):
        conn.execute(
            "INSERT INTO series(id, hamlet, device, metric, kind) "
            "VALUES (?, 'h', ?, 'salinity', 'r')",
            (d + 1, f"d{d}"),
        )
    seen = set()
    for dev, hour, mean in means:
        if (dev, hour) in seen:
            continue
        seen.add((dev, hour))
        conn.execute(
            "INSERT INTO hourly(series, bucket, n, sum, min, max) VALUES (?,?,?,?,?,?)",
            (dev + 1, T0 + hour * HOUR, 60, mean * 60, mean, mean),
        )
    for dev in range(3):  # the daily rollup, folded from the hours as ingest does
        conn.execute(
            "INSERT INTO daily(series, bucket, n, sum, min, max) SELECT series, "
            "(bucket + 25200000) / 86400000 * 86400000 - 25200000, sum(n), sum(sum), min(min), "
            "max(max) FROM hourly WHERE series = ? GROUP BY 2",
            (dev + 1,),
        )
    conn.execute("COMMIT")
    lv = {("h", f"d{d}"): tuple(levels) for d in range(3)}
    end = T0 + 72 * HOUR
    sql = sorted(hours_above_sql(conn, "salinity", lv, T0, end, strict))
    rows = hourly_rows(conn, ["h"], ["salinity"], T0, end)
    py = sorted(count_above(rows, lv, strict))
    assert sql == py
    assert sum(r[4] for r in sql) == 60 * len(seen)  # every reading counted once


def test_flux_selects_the_same_rollups() -> None:
    q = hourly_rollups_flux(
        "hamlet_hourly",
        hamlets=['dinh-phuoc", x: "'],
        metrics=["salinity", "water_level"],
        start=0,
        end=HOUR,
        flat_only=True,
    )
    assert 'from(bucket: "hamlet_hourly")' in q
    assert 'r._measurement == "reading_1h"' in q
    assert 'r.hamlet == "dinh-phuoc\\", x: \\""' in q  # a hamlet id cannot break out
    assert 'r.metric == "salinity" or r.metric == "water_level"' in q
    assert "range(start: time(v: 0), stop: time(v: 3600000000000))" in q
    assert "filter(fn: (r) => r.min == r.max and r.n > 1)" in q
    assert "r.min == r.max" not in hourly_rollups_flux(
        "b", hamlets=["h"], metrics=["salinity"], start=0, end=HOUR, flat_only=False
    )


# --- the InfluxDB store's own parsing, against a fake InfluxDB 2 query endpoint -----------


class _FakeQuery(ThreadingHTTPServer):
    """Answers /api/v2/query with annotated CSV, as InfluxDB 2 does; records the Flux."""

    def __init__(self, csv_body: str) -> None:
        super().__init__(("127.0.0.1", 0), _QueryHandler)
        self.csv_body = csv_body
        self.queries: list[str] = []


class _QueryHandler(BaseHTTPRequestHandler):
    server: _FakeQuery

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # /ping
        self.send_response(204)
        self.end_headers()

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        assert self.path.startswith("/api/v2/query"), self.path
        self.server.queries.append(json.loads(raw)["query"])
        body = self.server.csv_body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _annotated_csv(rows: list[tuple[str, str, int, int, float, float, float]]) -> str:
    lines = [
        "#datatype,string,long,dateTime:RFC3339,string,string,string,double,double,double,long",
        "#group,false,false,false,true,true,true,false,false,false,false",
        "#default,_result,,,,,,,,,",
        ",result,table,_time,hamlet,device,metric,mean,min,max,n",
    ]
    for dev, metric, t_ms, n, mean, lo, hi in rows:
        ts = datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f",,0,{ts},h,{dev},{metric},{mean!r},{lo!r},{hi!r},{n}")
    return "\r\n".join(lines) + "\r\n\r\n"


async def test_influx_store_reads_rollups_like_sqlite(tmp_path: Path) -> None:
    from server import registry
    from server.config import ServerConfig
    from server.store.influx import InfluxStore

    # Hour means around Vietnam's 11 March: 0.7 from 09:00 to 12:00 (3 h above 0.5), else 0.3;
    # the last hour belongs to 12 March, local time.
    hours = [(T0 + i * HOUR, 0.7 if 9 <= i < 12 else 0.3) for i in range(25)]
    fake = _FakeQuery(_annotated_csv([("d0", "salinity", t, 60, m, m, m) for t, m in hours]))
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = fake.server_address[:2]
        cfg = ServerConfig.model_validate(
            {
                "environment": "development",
                "data_dir": str(tmp_path),
                "store": {
                    "backend": "influxdb",
                    "influxdb": {"url": f"http://{host}:{port}", "token": "t", "org": "o"},
                },
            }
        )
        async with InfluxStore(cfg) as st:
            await st.db.write(registry.add_hamlet, "h")
            got = await st.hours_above(
                "salinity", {("h", "d0"): (0.5,)}, start=T0, end=T0 + 25 * HOUR, strict=True
            )
            rows = await st.hourly_rollups(["h"], ["salinity"], start=T0, end=T0 + 25 * HOUR)
    finally:
        fake.shutdown()
        fake.server_close()
        thread.join()
    day = (T0 // HOUR + 7) // 24
    assert sorted(got) == [("h", "d0", day, (3,), 24 * 60), ("h", "d0", day + 1, (0,), 60)]
    assert [r.hour_ms for r in rows] == [t for t, _ in hours]
    assert 'r.hamlet == "h"' in fake.queries[0]
