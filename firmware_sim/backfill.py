"""``hamlet sim backfill``: N days of a scenario's history straight into the server."""

from __future__ import annotations

import time
from dataclasses import dataclass

from firmware_sim.history import BatchBuilder, HistoryGenerator, batch_json
from firmware_sim.scenario import Scenario
from firmware_sim.uplink import PostStats, post_batch


@dataclass
class BackfillOptions:
    server: str
    token: str
    gateway: str
    days: float
    end: float | None = None  # default: now
    interval_s: float | None = None
    hamlet: str | None = None
    seq_start: int = 1
    batch_records: int = 20_000
    timeout_s: float = 60.0


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

    end = opts.end if opts.end is not None else time.time()
    start = end - opts.days * 86400.0
    gen = HistoryGenerator(scn, start, end, interval_s=opts.interval_s, hamlet=opts.hamlet)
    builder = BatchBuilder(opts.gateway, next_seq=opts.seq_start, max_records=opts.batch_records)
    stats = PostStats()
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

        async def flush() -> None:
            batch = builder.take(int(time.time() * 1000))
            n = batch.record_count()
            await post_batch(
                client, opts.server, opts.token, batch_json(batch), records=n, stats=stats
            )

        with progress:
            task = progress.add_task("", total=end - start, gw=opts.gateway, days=opts.days, recs=0)
            for t1, recs in gen.windows():
                for r in recs:
                    builder.add(r)
                    if builder.full:
                        await flush()
                progress.update(task, completed=t1 - start, recs=stats.records)
            if not builder.empty:
                await flush()
            progress.update(task, completed=end - start, recs=stats.records)
    return stats
