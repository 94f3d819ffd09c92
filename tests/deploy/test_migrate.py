"""``hamlet server migrate``: the copy engine over :class:`HistoryTarget`, run SQLite ->
SQLite (the same code the InfluxDB target runs), resumed after an interruption, verified by
counts per series; and SQLite -> InfluxDB when a live InfluxDB is configured."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from hamlet.contract import Point, RecordKind, SeriesBlock, TimeQuality, UplinkBatch
from server import registry
from server.app import make_store
from server.config import ServerConfig
from server.migrate import (
    HistoryTarget,
    InfluxHistoryTarget,
    Progress,
    SqliteHistory,
    SqliteHistoryTarget,
    migrate,
)
from server.models import Resolution
from tests.deploy.influx_standin import TOKEN as STANDIN_TOKEN
from tests.deploy.influx_standin import InfluxState, influx_standin
from tests.server.helpers import batch, block, now_ms
from tests.support.procs import run_hamlet
from tests.support.stores import influx_settings, needs_live_influx

DAY = 86_400_000
DB = "hamlet.sqlite3"


def _config(data: Path) -> ServerConfig:
    return ServerConfig.model_validate({"environment": "development", "data_dir": str(data)})


async def _fill(data: Path, hamlet: str = "dinh-phuoc", start_seq: int = 1) -> int:
    """History through the real ingest path: two gateways, plain readings over 3 days,
    aggregates (min/mean/max/n), and two readings in the same millisecond."""
    t0 = now_ms() - 3 * DAY
    n = 0
    async with make_store(_config(data)) as st:
        for gid in (f"gw-a-{hamlet}", f"gw-b-{hamlet}"):
            if await st.db.read(registry.gateway_by_id, gid) is None:
                await st.db.write(registry.add_gateway, gid, hamlet)
        gw_a = await st.db.read(registry.gateway_by_id, f"gw-a-{hamlet}")
        gw_b = await st.db.read(registry.gateway_by_id, f"gw-b-{hamlet}")
        assert gw_a is not None
        assert gw_b is not None
        seqs = list(range(start_seq, start_seq + 700))
        b = batch(gw_a.id, [
            block("sal-1", "salinity", seqs, t0=t0 + start_seq, step_ms=360_000),
            block("wl-1", "water_level", [s + 10_000 for s in seqs], t0=t0, step_ms=360_000),
        ])  # fmt: skip
        n += (await st.ingest(gw_a, b, now_ms())).accepted
        agg = SeriesBlock.from_points(
            "soil-1", "soil_moisture", RecordKind.AGGREGATE,
            [Point(seq=start_seq + i, t=t0 + i * 3_600_000 + start_seq, v=30.0 + i % 5,
                   vmin=25.0, vmax=35.0, n=60, q=TimeQuality.SYNCED) for i in range(50)],
        )  # fmt: skip
        same_ms = block("sal-1", "salinity", [start_seq + 100, start_seq + 101],
                        times=[t0 + 7 + start_seq, t0 + 7 + start_seq])  # fmt: skip
        b2 = UplinkBatch(gateway=gw_b.id, sent_at=now_ms(), series=[agg, same_ms])
        n += (await st.ingest(gw_b, b2, now_ms())).accepted
    return n


def _count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM points").fetchone()[0])
    finally:
        conn.close()


async def _reads(data: Path) -> dict[tuple[str, str, str, str], list[tuple[object, ...]]]:
    """Every series read back through the Store interface at every resolution."""
    out = {}
    async with make_store(_config(data)) as st:
        conn = sqlite3.connect(data / DB)
        keys = conn.execute("SELECT hamlet, device, metric FROM series").fetchall()
        conn.close()
        end = now_ms() + DAY
        for h, d, m in keys:
            for res in (Resolution.RAW, Resolution.HOUR, Resolution.DAY):
                s = await st.series(h, d, m, start=0, end=end, resolution=res, limit=100_000)
                out[(h, d, m, res.value)] = [(p.t, p.v, p.min, p.max, p.n, p.q) for p in s.points]
    return out


async def test_sqlite_to_sqlite_copies_everything_and_verifies(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    n = await _fill(src)
    assert n == 700 * 2 + 50 + 2
    out = run_hamlet(
        "server", "migrate", "--to", "sqlite", "--data-dir", str(src),
        "--target-data-dir", str(dst),
    )  # fmt: skip
    assert f"copied {n} point(s) this run; verified 3 series, {n} point(s): all counts match" in (
        out
    )
    assert _count(dst / DB) == n
    # Read through the Store interface: raw, hourly and daily answers are identical.
    before, after = await _reads(src), await _reads(dst)
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == before[key], key
    assert len(before[("dinh-phuoc", "sal-1", "salinity", "raw")]) == 702
    # A second run copies nothing and still verifies.
    again = run_hamlet(
        "server", "migrate", "--to", "sqlite", "--data-dir", str(src),
        "--target-data-dir", str(dst),
    )  # fmt: skip
    assert "copied 0 point(s) this run" in again
    assert "all counts match" in again


class Interrupted(Exception):
    pass


async def test_an_interrupted_migration_resumes_where_it_stopped(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    n = await _fill(src)
    source = SqliteHistory(src / DB)
    state = Progress(tmp_path / "state.sqlite3", "test")
    seen = [0]

    def stop_after_three(_label: str, k: int) -> None:
        seen[0] += k
        if seen[0] >= 3 * 100:
            raise Interrupted  # as Ctrl-C would, between two chunks

    target: HistoryTarget = SqliteHistoryTarget(dst / DB)
    with pytest.raises(Interrupted):
        async with target:
            await migrate(source, target, state, on_chunk=stop_after_three, chunk=100)
    assert _count(dst / DB) == 300
    started: list[tuple[int, int]] = []
    async with SqliteHistoryTarget(dst / DB) as target2:
        outcome = await migrate(
            source, target2, state, chunk=100, on_start=lambda t, d: started.append((t, d))
        )
    assert started == [(n, 300)]  # the progress bar starts where the first run stopped
    assert outcome.copied == n - 300
    assert outcome.ok
    assert [c.source for c in outcome.checks] == [c.target for c in outcome.checks]
    assert _count(dst / DB) == n
    source.close()
    state.close()


async def test_new_history_is_copied_on_the_next_run_and_a_loss_is_caught(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    args = ("server", "migrate", "--to", "sqlite", "--data-dir", str(src),
            "--target-data-dir", str(dst))  # fmt: skip
    first = await _fill(src)
    run_hamlet(*args)
    # The server kept ingesting meanwhile, some of it late data older than what was copied.
    more = await _fill(src, start_seq=5_000)
    out = run_hamlet(*args)
    assert "all counts match" in out
    assert "copied again in full (counts differed)" in out
    assert _count(dst / DB) == first + more
    # Points lost on the target side are put back by the next run.
    conn = sqlite3.connect(dst / DB)
    conn.execute("DELETE FROM points WHERE (series, t) IN (SELECT series, t FROM points LIMIT 3)")
    conn.commit()
    conn.close()
    assert _count(dst / DB) == first + more - 3
    assert "all counts match" in run_hamlet(*args)
    assert _count(dst / DB) == first + more
    # A target holding points the source never had cannot be repaired by copying: the
    # count check names the series and fails the run.
    conn = sqlite3.connect(dst / DB)
    conn.execute(
        "INSERT INTO points(series, t, gw, seq, v, q) SELECT series, t + 1, gw, seq + 1000000, "
        "v, q FROM points LIMIT 1"
    )
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match=r"MISMATCH dinh-phuoc/\S+: source \d+, target \d+"):
        run_hamlet(*args)


@needs_live_influx
async def test_sqlite_to_live_influxdb_copies_and_verifies(tmp_path: Path) -> None:
    from server.config import InfluxConfig

    src = tmp_path / "src"
    hamlet = f"h-{uuid.uuid4().hex[:8]}"  # keeps runs apart in a shared bucket
    n = await _fill(src, hamlet=hamlet)
    cfg = InfluxConfig.model_validate(influx_settings())
    source = SqliteHistory(src / DB)
    state = Progress(tmp_path / "state.sqlite3", "influx")
    try:
        async with InfluxHistoryTarget(cfg) as target:
            outcome = await migrate(source, target, state, chunk=500)
    finally:
        source.close()
        state.close()
    assert outcome.copied == n
    assert outcome.ok, [(c.series.label, c.source, c.target) for c in outcome.checks]


async def test_sqlite_to_influxdb_through_influxdb_client_against_a_stand_in(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    n = await _fill(src)
    state = InfluxState()
    with influx_standin(state) as url:
        env = {
            "HAMLET_SERVER__STORE__INFLUXDB__URL": url,
            "HAMLET_SERVER__STORE__INFLUXDB__TOKEN": STANDIN_TOKEN,
        }
        args = ("server", "migrate", "--to", "influxdb", "--data-dir", str(src))
        out = run_hamlet(*args, env=env)
        assert (
            f"copied {n} point(s) this run; verified 3 series, {n} point(s): all counts match"
            in (out)
        )
        raw = state.points["hamlet"]
        assert len(raw) == n
        # Same-millisecond readings of one series stay two points (timestamp carries the seq).
        conn = sqlite3.connect(src / DB)
        hourly = conn.execute("SELECT count(*) FROM hourly").fetchone()[0]
        conn.close()
        rollups = state.points["hamlet_hourly"]
        assert len(rollups) == hourly
        assert all(k.startswith("reading_1h,") for k, _ in rollups)
        for fields in rollups.values():
            assert {f.split("=")[0] for f in fields.split(",")} == {"mean", "min", "max", "n"}
        again = run_hamlet(*args, env=env)
        assert "copied 0 point(s) this run" in again
        assert len(state.points["hamlet"]) == n
