"""``hamlet sim fleet``: many gateways posting uplinks at once, for the server's load tests.

Each gateway replays its own copy of a scenario (seed + index, so no two are identical)
from ``days`` ago towards now as fast as the server takes it, for ``duration_s`` seconds;
the totals give records/s, batches/s, latency percentiles and bytes per record.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.history import BatchBuilder, HistoryGenerator, batch_json
from firmware_sim.scenario import Scenario
from firmware_sim.uplink import PostStats, post_batch


class FleetError(Exception):
    """Bad fleet input (tokens file), with what to do about it."""


def read_tokens(path: Path) -> dict[str, str]:
    """A JSON object ``{"gw-1": "token", …}`` or lines ``gw-1 token``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FleetError(f"{path}: cannot read the tokens file: {err.strerror}") from err
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise FleetError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise FleetError(f"{path}: expected an object of gateway id -> token strings")
        return dict(data)
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FleetError(f"{path}:{n}: expected 'GATEWAY TOKEN'")
        out[parts[0]] = parts[1]
    if not out:
        raise FleetError(f"{path}: no gateways in the tokens file")
    return out


@dataclass
class FleetReport:
    gateways: int
    seconds: float
    stats: PostStats

    def lines(self) -> list[str]:
        s = self.stats
        lat = sorted(s.latencies) or [0.0]

        def p(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        return [
            f"gateways            {self.gateways}",
            f"seconds             {self.seconds:.1f}",
            f"batches             {s.batches} ({s.batches / self.seconds:.1f}/s)",
            f"records             {s.records} ({s.records / self.seconds:,.0f}/s)",
            f"accepted/dup/rej    {s.accepted}/{s.duplicates}/{s.rejected}",
            f"retries (429/503)   {s.retries}",
            f"latency p50/p95/max {p(0.5):.0f}/{p(0.95):.0f}/{lat[-1] * 1000:.0f} ms",
            f"bytes per record    {s.bytes_sent / max(1, s.records):.1f} (gzip on the wire)",
            f"mean batch          {s.records / max(1, s.batches):.0f} records",
        ]


async def run_fleet(
    scn: Scenario,
    server: str,
    tokens: dict[str, str],
    *,
    duration_s: float,
    days: float = 7.0,
    batch_records: int = 2000,
    concurrency: int = 64,
) -> FleetReport:
    import httpx

    from hamlet.ingest_client import IngestClient

    stats = PostStats()
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    end = time.time()

    async def one(index: int, gw: str, token: str, client: httpx.AsyncClient) -> None:
        mine = scn.model_copy(update={"seed": scn.seed + index})
        gen = HistoryGenerator(mine, end - days * 86400, end)
        builder = BatchBuilder(gw, max_records=batch_records)
        ingest = IngestClient(client, server, token)
        for _t1, recs in gen.windows():
            for r in recs:
                builder.add(r)
                if builder.full:
                    if time.monotonic() >= deadline:
                        return
                    batch = builder.take(int(time.time() * 1000))
                    async with sem:
                        await post_batch(
                            ingest,
                            batch_json(batch),
                            records=batch.record_count(),
                            stats=stats,
                        )

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client, asyncio.TaskGroup() as tg:
        for i, (gw, tok) in enumerate(tokens.items()):
            tg.create_task(one(i, gw, tok, client), name=f"fleet:{gw}")
    return FleetReport(len(tokens), time.monotonic() - started, stats)
