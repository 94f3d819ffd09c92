"""A long outage: everything buffers within budget, then drains; live data goes first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.records import Reading
from tests.gateway.conftest import accounting_for, db_files, gateway_config
from tests.support.broker import free_port
from tests.support.procs import HAMLET, ManagedProcess, run_hamlet

BACKLOG = 20_000
MAX_BYTES = 4 * 1024 * 1024
DEV_ENV = {"HAMLET_SERVER__ENVIRONMENT": "development"}


async def live_points(client: httpx.AsyncClient, url: str) -> int:
    now = int(time.time() * 1000)
    resp = await client.get(
        f"{url}/api/v1/hamlets/dinh-phuoc/series",
        params={
            "device": "live-1",
            "metric": "water_level",
            "start": now - 3_600_000,
            "end": now + 3_600_000,
            "resolution": "raw",
        },
    )
    resp.raise_for_status()
    return len(resp.json()["points"])


@pytest.mark.timeout(120)
async def test_outage_then_drain_live_first(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv_dir = tmp_path / "server"
    srv_dir.mkdir()
    out = run_hamlet(
        "server",
        "add-gateway",
        "gw-test",
        "--hamlet",
        "dinh-phuoc",
        "--data-dir",
        str(srv_dir),
        "--json",
        env=DEV_ENV,
    )
    import json

    token = json.loads(out)["token"]
    # Metered 3G: the backlog may use 30 kB/s; live data is not capped.
    cfg = gateway_config(
        tmp_path / "gw", url, token, max_batch_records=500, backlog_bytes_per_s=30_000
    )
    cfg.buffer.max_bytes = MAX_BYTES
    server: ManagedProcess | None = None
    async with Gateway(cfg, sources=[]) as gw, httpx.AsyncClient(timeout=10) as client:
        try:
            # The server is down (nothing listens on the port): readings pile up.
            for _ in range(BACKLOG // 1000):
                await gw.pipeline.submit(
                    [Reading("backlog-1", "water_level", 1.0 + (i % 50) / 100) for i in range(1000)]
                )
                assert db_files(cfg.data_dir) <= MAX_BYTES
            assert gw.buffer.depth >= BACKLOG
            assert gw.uplink.status.state.value == "down"
            backlog_last = gw.buffer.last_seq

            server = ManagedProcess(
                [
                    *HAMLET,
                    "server",
                    "run",
                    "--data-dir",
                    str(srv_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=DEV_ENV,
            ).start()
            await asyncio.to_thread(server.wait_for, r"listening on", 60)

            # Wait for the link to come back (first confirmed upload).
            gw.uplink.uploaded.clear()
            await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
            back_at = time.monotonic()

            seen_live_at: int | None = None

            async def produce_live() -> None:
                i = 0
                while True:
                    i += 1
                    await gw.pipeline.submit([Reading("live-1", "water_level", i / 1000)])
                    await asyncio.sleep(0.05)  # a field node's pace, not a wait

            producer = asyncio.create_task(produce_live())
            try:
                while seen_live_at is None:
                    gw.uplink.uploaded.clear()
                    await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
                    if await live_points(client, url):
                        seen_live_at = accounting_for(url, "gw-test")["received"]
            finally:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
            # Live readings reached the server while most of the backlog had not.
            assert seen_live_at < backlog_last // 2, (seen_live_at, backlog_last)

            while gw.buffer.depth > 0:
                gw.uplink.uploaded.clear()
                if gw.buffer.depth == 0:
                    break
                await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
            took = time.monotonic() - back_at
            # The metered-link cap held: the backlog (all but its first batch) took at
            # least its size divided by the cap.
            st = gw.uplink.status
            assert st.backlog_bytes > 0
            assert took >= (st.backlog_bytes - 20_000) / 30_000
            last = gw.buffer.last_seq
            acc = accounting_for(url, "gw-test")
            assert acc["missing"] == 0
            assert acc["received"] == last
            assert gw.uplink.status.backlog_sent >= BACKLOG - 500
            assert gw.uplink.status.live_sent > 0
        finally:
            if server is not None:
                server.stop()
