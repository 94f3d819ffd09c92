"""Does alert evaluation keep up with ingest? One server worker, SQLite, real HTTP.

Three runs of the same workload (4 gateways posting gzip batches of 5,000 readings, the
server_ingest mix: salinity, water level, water temperature, EC), each on a fresh server:

1. baseline: alerts disabled (``HAMLET_SERVER__ALERTS__ENABLED=false``): ingest readings/s;
2. alerts on, live data in time order: ingest readings/s, and readings evaluated per second
   from the first post until ``POST /api/v1/alerts/sync`` says everything is evaluated;
3. alerts on, a late backlog: the same batches posted newest first, so every batch after the
   first lands before what was evaluated and its series replay from stored readings.

"Keeps up" = evaluated readings/s >= ingest readings/s of the baseline in the same run.

    python bench/alert_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _report import report
from _server_common import add_gateways, bench_server, gz, realistic_batch, table

from hamlet.alertrules import AlertSettings
from hamlet.contract import UplinkBatch
from server import registry
from server.alerts import apply
from server.alerts import table as alert_table
from server.alerts.engine import work_of
from server.config import ServerConfig
from server.registry import Role
from server.store.sqlite import SqliteStore

POINTS = 5_000
GATEWAYS = 4


async def _post(url: str, tokens: dict[str, str], bodies: dict[str, list[bytes]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(gid: str) -> None:
            hdrs = {
                "Authorization": f"Bearer {tokens[gid]}",
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
            }
            for body in bodies[gid]:
                r = await client.post("/api/v1/ingest", content=body, headers=hdrs)
                r.raise_for_status()

        async with asyncio.TaskGroup() as tg:
            for gid in tokens:
                tg.create_task(one(gid))


def _user_token(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "hamlet.sqlite3", isolation_level=None)
    try:
        registry.add_user(conn, "bench", Role.ADMIN, None)
        return registry.create_user_token(conn, "bench")
    finally:
        conn.close()


def run(
    tmp: Path, bodies: dict[str, list[bytes]], *, alerts: bool
) -> tuple[float, float | None, dict[str, float]]:
    """(ingest s, ingest + evaluation s, engine counters) for one fresh server."""
    # The server process inherits this environment (config override by environment).
    os.environ["HAMLET_SERVER__ALERTS__ENABLED"] = "true" if alerts else "false"
    with bench_server(tmp) as srv:
        # One hamlet per gateway, as in the field: their devices are distinct series.
        tokens = add_gateways(srv, list(bodies), {g: f"hamlet-{g}" for g in bodies})
        user = _user_token(srv.data_dir)
        t0 = time.perf_counter()
        asyncio.run(_post(srv.url, tokens, bodies))
        ingest = time.perf_counter() - t0
        if not alerts:
            return ingest, None, {}
        r = httpx.post(
            f"{srv.url}/api/v1/alerts/sync",
            headers={"Authorization": f"Bearer {user}"},
            timeout=600,
        )
        r.raise_for_status()
        both = time.perf_counter() - t0
        return ingest, both, r.json()


async def in_process(tmp: Path, batches: dict[str, list[UplinkBatch]]) -> float:
    """Readings/s of the evaluation step alone (work_of + apply_batch), no HTTP, no ingest
    in the timed part: what one batch costs the evaluator."""
    config = ServerConfig.model_validate({"environment": "development", "data_dir": str(tmp)})
    async with SqliteStore(config) as store:
        await store.db.write(alert_table.ensure_schema)
        settled = []
        for g, bs in batches.items():
            await store.db.write(registry.add_gateway, g, f"hamlet-{g}")
            gw = await store.db.read(registry.gateway_by_id, g)
            assert gw is not None
            for b in bs:
                settled.append((gw, b, await store.ingest(gw, b, b.sent_at)))
        settings = AlertSettings()
        start = time.perf_counter()
        for gw, b, res in settled:
            await store.db.write(apply.apply_batch, settings, work_of(gw, b, res, b.sent_at))
        took = time.perf_counter() - start
    return sum(b.record_count() for bs in batches.values() for b in bs) / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    per_gw = 5 if args.quick else 25
    ids = [f"gw-{i}" for i in range(GATEWAYS)]
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
    total = GATEWAYS * per_gw * POINTS
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        base_s, _, _ = run(tmp / "base", bodies, alerts=False)
        live_s, live_all, live = run(tmp / "live", bodies, alerts=True)
        late = {g: list(reversed(b)) for g, b in bodies.items()}
        late_s, late_all, late_c = run(tmp / "late", late, alerts=True)
        alone = asyncio.run(in_process(tmp / "alone", batches))
    assert live_all is not None
    assert late_all is not None
    base_rate = total / base_s
    # Every reading ingested is evaluated by the time sync returns: readings / that time.
    assert live["points_evaluated"] >= total, live
    live_eval = total / live_all
    late_eval = total / late_all
    capacity = total / live["busy_seconds"]
    print(
        f"alert evaluation vs ingest, 1 worker, SQLite, {GATEWAYS} gateways x {per_gw} "
        f"gzip batches of {POINTS} readings ({total:,} readings)"
    )
    table(
        [
            ("ingest, alerts off (baseline)", f"{base_rate:,.0f} readings/s"),
            ("ingest, alerts on (live)", f"{total / live_s:,.0f} readings/s"),
            (
                "evaluated, live",
                f"{live_eval:,.0f} readings/s (all {total:,} evaluated {live_all:.2f} s after "
                f"the first post, {live_all - live_s:.2f} s after the last)",
            ),
            ("ingest, alerts on (late backlog)", f"{total / late_s:,.0f} readings/s"),
            (
                "evaluated, late backlog",
                f"{late_eval:,.0f} readings/s ({late_c['replays']} series replays re-read "
                f"{late_c['points_evaluated']:,} readings; {late_all - late_s:.2f} s after "
                "the last post)",
            ),
            (
                "evaluator alone, live",
                f"{capacity:,.0f} readings/s ({live['busy_seconds']:.2f} s of evaluation work)",
            ),
            ("ratio evaluator alone/ingest", f"{capacity / base_rate:.2f}"),
            ("evaluation step in process", f"{alone:,.0f} readings/s (no HTTP, no ingest)"),
            ("ratio in-process step/ingest", f"{alone / base_rate:.2f}"),
            ("ratio evaluated/ingest (live)", f"{live_eval / base_rate:.2f}"),
            ("ratio evaluated/ingest (late)", f"{late_eval / base_rate:.2f}"),
            ("evaluation failures", f"{live['failures'] + late_c['failures']}"),
        ]
    )
    report(
        "alert_eval",
        "evaluator capacity, live (vs ingest with alerts off)",
        capacity,
        "readings/s",
        baseline=base_rate,
        floor="ratio >= 1",
    )
    report(
        "alert_eval",
        "evaluation step in process (vs server ingest over HTTP)",
        alone,
        "readings/s",
        baseline=base_rate,
    )
    report(
        "alert_eval",
        "readings ingested and evaluated/s, live (vs ingest with alerts off)",
        live_eval,
        "readings/s",
        baseline=base_rate,
    )
    report(
        "alert_eval",
        "readings evaluated/s, late backlog with replays (vs ingest)",
        late_eval,
        "readings/s",
        baseline=base_rate,
    )
    report(
        "alert_eval",
        "ingest readings/s with alerts on (vs off)",
        total / live_s,
        "readings/s",
        baseline=base_rate,
    )


if __name__ == "__main__":
    main()
