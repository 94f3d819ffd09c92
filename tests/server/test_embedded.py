"""The server embedded in another program's event loop (what ``hamlet demo`` uses)."""

from __future__ import annotations

from pathlib import Path

import httpx

from server.config import ServerConfig
from server.runner import serve_in_process
from tests.server.helpers import batch, block, body


async def test_serve_in_process_then_stop(tmp_path: Path) -> None:
    cfg = ServerConfig.model_validate(
        {"environment": "development", "data_dir": str(tmp_path), "http": {"port": 0}}
    )
    from server import registry
    from server.store.schema import open_db

    async with serve_in_process(cfg) as url:
        conn = open_db(cfg.ledger_path)
        try:
            token = registry.add_gateway(conn, "gw-1", "h")
        finally:
            conn.close()
        async with httpx.AsyncClient(base_url=url) as c:
            data, hdrs = body(batch("gw-1", [block("d", "rain", [1, 2])]))
            r = await c.post(
                "/api/v1/ingest", content=data, headers={**hdrs, "Authorization": f"Bearer {token}"}
            )
            assert r.json()["accepted"] == 2
            assert (await c.get("/readyz")).status_code == 200
    # Stopped: the port no longer answers.
    async with httpx.AsyncClient(base_url=url) as c:
        try:
            await c.get("/healthz")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("server still answering after the block ended")
