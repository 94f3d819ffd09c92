"""Both backends count threshold hours the same way.

InfluxDB cannot run here, so the part of its path that is ours is checked against SQLite's:
the InfluxDB store counts hours above thresholds in Python (``count_above``) over the hourly
rows its Flux query returns, SQLite counts them in SQL (``hours_above_sql``). Fed the same
hourly rollups, they must agree exactly; and the Flux text must select what SQLite selects.
"""

from __future__ import annotations

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
    db = tmp_path / f"agree-{abs(hash((tuple(means), tuple(levels), strict)))}.sqlite3"
    conn = open_db(db)
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
    conn.close()


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
