"""Many gateways posting at once, into a server with two worker processes: nothing lost,
nothing doubled, every gateway's accounting exact."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from server import registry
from tests.server.helpers import batch, block, body
from tests.support.procs import start_server

GATEWAYS = 200
SECONDS = 60.0  # the issue: "200 gateways posting concurrently for a minute"
POINTS = 50


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_200_gateways_concurrently_without_loss(tmp_path: Path) -> None:
    # Keep-alive outlasts the run: an idle pooled connection that the server closes just as
    # the client reuses it is a client-side race (a gateway retries it), not loss, and a
    # loaded machine made it happen here.
    env = {"HAMLET_SERVER__HTTP__KEEP_ALIVE_S": "600"}
    with start_server(tmp_path / "srv", "--workers", "2", env=env) as srv:
        conn = sqlite3.connect(srv.data_dir / "hamlet.sqlite3", isolation_level=None)
        try:
            tokens = {
                f"gw-{i:03d}": registry.add_gateway(conn, f"gw-{i:03d}", f"hamlet-{i % 8}")
                for i in range(GATEWAYS)
            }
        finally:
            conn.close()
        sent: dict[str, int] = dict.fromkeys(tokens, 0)
        dups: dict[str, int] = dict.fromkeys(tokens, 0)
        statuses: dict[int, int] = {}
        deadline = time.monotonic() + SECONDS
        limits = httpx.Limits(max_connections=GATEWAYS)

        async def send(
            gid: str,
            client: httpx.AsyncClient,
            first: int,
            last: int,
            rng: random.Random,
            times: int = 1,
        ) -> None:
            b = batch(
                gid,
                [
                    block(
                        f"s-{gid}",
                        "water_level",
                        range(first, last + 1),
                        values=[rng.uniform(0, 2) for _ in range(last - first + 1)],
                    )
                ],
            )
            data, hdrs = body(b)
            hdrs["Authorization"] = f"Bearer {tokens[gid]}"
            for _ in range(times):
                while True:
                    r = await client.post("/api/v1/ingest", content=data, headers=hdrs)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        break
                    # Back-pressure is allowed (and retried, as a gateway does); nothing else.
                    assert r.status_code in (429, 503), f"{gid}: {r.status_code} {r.text}"
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                res = r.json()
                sent[gid] += res["accepted"]
                dups[gid] += res["duplicates"]

        async def gateway(gid: str, client: httpx.AsyncClient) -> None:
            rng = random.Random(gid)
            seq = 0
            pending: list[tuple[int, int]] = []  # batches held back to arrive out of order
            while time.monotonic() < deadline:
                if pending and rng.random() < 0.3:
                    first, last = pending.pop()
                else:
                    first, last = seq + 1, seq + POINTS
                    seq = last
                    if rng.random() < 0.1:
                        pending.append((first, last))
                        continue
                # 5 %: a lost ack, so the gateway sends the same batch again.
                await send(gid, client, first, last, rng, 2 if rng.random() < 0.05 else 1)
            for first, last in pending:  # flush what was held back
                await send(gid, client, first, last, rng)

        async with httpx.AsyncClient(base_url=srv.url, timeout=60, limits=limits) as client:
            async with asyncio.TaskGroup() as tg:
                for gid in tokens:
                    tg.create_task(gateway(gid, client))
            acct = (await client.get("/api/v1/gateways")).json()

        assert len(acct) == GATEWAYS
        total = 0
        for a in acct:
            gid = a["id"]
            assert a["received"] == sent[gid], (a, sent[gid], statuses)
            assert a["received"] == a["highest_seq"], (a, statuses)
            assert a["duplicates"] == dups[gid], (a, dups[gid], statuses)
            assert (a["missing"], a["rejected"]) == (0, 0), (a, statuses)
            total += a["received"]
        assert total >= GATEWAYS * POINTS, f"too little traffic to mean anything: {total}"
        check = sqlite3.connect(srv.data_dir / "hamlet.sqlite3")
        try:
            stored = check.execute("SELECT count(*) FROM points").fetchone()[0]
            distinct = check.execute(
                "SELECT count(*) FROM (SELECT DISTINCT gw, seq FROM points)"
            ).fetchone()[0]
        finally:
            check.close()
        assert stored == distinct == total
        print(
            f"\n{total} readings from {GATEWAYS} gateways in {SECONDS:.0f} s; statuses {statuses}"
        )
