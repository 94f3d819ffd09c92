"""``hamlet sim backfill``: N days of a scenario's history straight into the server.

The server files a gateway's devices under the gateway's hamlet, so each of the
scenario's hamlets is posted as its own gateway (as in the field: one gateway a hamlet).
Batches are sized from the server's own limits (``GET /api/v1/limits``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from firmware_sim.history import BatchBuilder, HistoryGenerator, Rec, batch_json
from firmware_sim.scenario import Scenario
from firmware_sim.uplink import PostStats, UplinkError, post_batch
from hamlet.contract import LIMITS_PATH, IngestLimits, RecordKind
from hamlet.metrics import GATEWAY_METRIC_PREFIX

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class GatewayCred:
    gateway: str
    token: str


@dataclass
class BackfillOptions:
    server: str
    # Hamlet id -> the gateway (and its token) that hamlet's devices are posted as.
    gateways: dict[str, GatewayCred]
    days: float
    end: float | None = None  # default: now
    interval_s: float | None = None
    seq_start: int = 1
    batch_records: int = 10_000
    timeout_s: float = 60.0
    # Added to every record's time: `hamlet demo --scenario` replays a past week as if it
    # ended now, so its danger states and outages show as current.
    shift_s: float = 0.0
    per_gateway: dict[str, PostStats] = field(default_factory=dict)


async def fetch_limits(client: httpx.AsyncClient, server: str) -> IngestLimits:
    """The server's ingest bounds; a clear error when it cannot say."""
    import httpx

    url = server.rstrip("/") + LIMITS_PATH
    try:
        resp = await client.get(url)
    except httpx.TransportError as err:
        raise UplinkError(f"server at {server} unreachable: {err!r}") from err
    if resp.status_code != 200:
        raise UplinkError(
            f"{url} answered {resp.status_code}: cannot learn the server's batch limits "
            "(is it an older server? upgrade it, or check --server)"
        )
    return IngestLimits.model_validate_json(resp.content)


def _seq_heartbeat(gateway: str, t_ms: int, gen: HistoryGenerator, devices: set[str]) -> list[Rec]:
    """The gateway's own counters of what its devices' sequence numbers showed."""
    stats = [gen.seq_stats[d] for d in devices]
    figures = {
        "seq_gaps": sum(s.gaps for s in stats),
        "seq_lost": sum(s.lost for s in stats),
        "seq_resets": sum(s.resets for s in stats),
    }
    return [
        Rec(t_ms, gateway, f"{GATEWAY_METRIC_PREFIX}{k}", RecordKind.HEARTBEAT, float(v))
        for k, v in figures.items()
    ]


async def backfill(
    scn: Scenario, opts: BackfillOptions, *, show_progress: bool = True
) -> PostStats:
    """Generate and post; returns the totals. Idempotent: a rerun yields duplicates only."""
    import httpx
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hamlet.ingest_client import IngestClient

    end = opts.end if opts.end is not None else time.time()
    start = end - opts.days * 86400.0
    hamlets = set(opts.gateways)
    gen = HistoryGenerator(scn, start, end, interval_s=opts.interval_s)
    gen.devices = [d for d in gen.devices if d.spec.hamlet in hamlets]
    hamlet_of = {d.id: d.spec.hamlet for d in gen.devices}
    devices_of = {h: {d for d, dh in hamlet_of.items() if dh == h} for h in hamlets}
    stats = PostStats()
    names = ", ".join(c.gateway for c in opts.gateways.values())
    progress = Progress(
        TextColumn("[bold]backfill[/] {task.fields[gw]}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}% of {task.fields[days]:g} days"),
        TextColumn("{task.fields[recs]:,} records / nhật ký"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    )
    async with httpx.AsyncClient(timeout=opts.timeout_s) as client:
        limits = await fetch_limits(client, opts.server)
        builders = {
            h: BatchBuilder(
                c.gateway, next_seq=opts.seq_start, max_records=opts.batch_records, limits=limits
            )
            for h, c in opts.gateways.items()
        }

        async def flush(hamlet: str) -> None:
            builder = builders[hamlet]
            cred = opts.gateways[hamlet]
            batch = builder.take(int(time.time() * 1000))
            mine = opts.per_gateway.setdefault(cred.gateway, PostStats())
            body = batch_json(batch)
            n = batch.record_count()
            ingest = IngestClient(client, opts.server, cred.token)
            res = await post_batch(ingest, body, records=n, stats=stats)
            mine.add(res, n, len(body), 0.0)

        shift_ms = round(opts.shift_s * 1000)

        def shifted(r: Rec) -> Rec:
            return dataclasses.replace(r, t_ms=r.t_ms + shift_ms) if shift_ms else r

        with progress:
            task = progress.add_task("", total=end - start, gw=names, days=opts.days, recs=0)
            for t1, recs in gen.windows():
                for r in recs:
                    h = hamlet_of[r.device]
                    builders[h].add(shifted(r))
                    if builders[h].full:
                        await flush(h)
                for h, c in opts.gateways.items():
                    # Hourly, as a gateway's heartbeat would report them.
                    for r in _seq_heartbeat(c.gateway, int(t1 * 1000) - 1, gen, devices_of[h]):
                        builders[h].add(shifted(r))
                    if builders[h].full:
                        await flush(h)
                progress.update(task, completed=t1 - start, recs=stats.records)
            for h, b in builders.items():
                if not b.empty:
                    await flush(h)
            progress.update(task, completed=end - start, recs=stats.records)
    return stats
