"""Posting UplinkBatches to the server's ingest API, as a gateway's uplink would.

gzip JSON, ``Authorization: Bearer``, and patience: 429 (honouring Retry-After), 503 and
connection errors are retried with capped, jittered backoff; anything else is an error
that names what to fix.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from hamlet.contract import IngestResult
from hamlet.ingest_client import IngestClient, Outcome, Unreachable


class UplinkError(Exception):
    """The server refused a batch for a reason retrying cannot fix."""


@dataclass
class PostStats:
    batches: int = 0
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    bytes_sent: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, res: IngestResult, records: int, size: int, latency: float) -> None:
        self.batches += 1
        self.records += records
        self.accepted += res.accepted
        self.duplicates += res.duplicates
        self.rejected += len(res.rejected)
        self.bytes_sent += size
        self.latencies.append(latency)


async def post_batch(
    client: IngestClient,
    body_json: bytes,
    *,
    records: int,
    stats: PostStats,
    max_attempts: int = 20,
) -> IngestResult:
    body = client.compress(body_json)
    delay = 0.2
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        try:
            answer = await client.post(body)
        except Unreachable as err:
            if attempt == max_attempts:
                raise UplinkError(f"server at {client.url} unreachable: {err}") from err
            stats.retries += 1
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)
            continue
        if answer.result is not None:
            stats.add(answer.result, records, len(body), time.perf_counter() - started)
            return answer.result
        if answer.outcome is Outcome.RETRY and attempt < max_attempts:
            stats.retries += 1
            wait = delay if answer.retry_after is None else answer.retry_after
            await asyncio.sleep(min(wait, 30.0) * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 10.0)
            continue
        hint = {
            401: "check the gateway token (hamlet server add-gateway / rotate-token)",
            403: "the token belongs to another gateway: pass the matching --gateway",
            413: "batches too large for the server: lower --batch-records",
        }.get(answer.status, "see the server log")
        raise UplinkError(f"ingest answered {answer.status}: {answer.detail} ({hint})")
    raise UplinkError(f"ingest kept answering busy after {max_attempts} attempts")
