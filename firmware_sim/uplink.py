"""Posting UplinkBatches to the server's ingest API, as a gateway's uplink would.

gzip JSON, ``Authorization: Bearer``, and patience: 429 (honouring Retry-After), 503 and
connection errors are retried with capped, jittered backoff; anything else is an error
that names what to fix.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hamlet.contract import INGEST_PATH, IngestResult

if TYPE_CHECKING:
    import httpx


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
    client: httpx.AsyncClient,
    base_url: str,
    token: str,
    body_json: bytes,
    *,
    records: int,
    stats: PostStats,
    max_attempts: int = 20,
) -> IngestResult:
    import httpx

    body = gzip.compress(body_json, compresslevel=6)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    url = base_url.rstrip("/") + INGEST_PATH
    delay = 0.2
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        try:
            resp = await client.post(url, content=body, headers=headers)
        except httpx.TransportError as err:
            if attempt == max_attempts:
                raise UplinkError(f"server at {base_url} unreachable: {err!r}") from err
            stats.retries += 1
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)
            continue
        if resp.status_code == 200:
            res = IngestResult.model_validate_json(resp.content)
            stats.add(res, records, len(body), time.perf_counter() - started)
            return res
        if resp.status_code in (429, 503) and attempt < max_attempts:
            stats.retries += 1
            after = resp.headers.get("retry-after")
            wait = float(after) if after and after.isdigit() else delay
            await asyncio.sleep(min(wait, 30.0) * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 10.0)
            continue
        hint = {
            401: "check the gateway token (hamlet server add-gateway / rotate-token)",
            403: "the token belongs to another gateway: pass the matching --gateway",
            413: "batches too large for the server: lower --batch-records",
        }.get(resp.status_code, "see the server log")
        raise UplinkError(f"ingest answered {resp.status_code}: {resp.text[:300]} ({hint})")
    raise UplinkError(f"ingest kept answering busy after {max_attempts} attempts")
