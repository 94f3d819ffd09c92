"""One client of the server's ``POST /api/v1/ingest``, and what each answer means.

Used by the gateway's uplink, the simulator's uplink and ``hamlet gateway doctor``, so the
meaning of an HTTP status is worked out once (:func:`classify`). Needs ``httpx`` (the
gateway, server and sim extras all carry it). The caller owns the ``httpx.AsyncClient``
(TLS, timeouts, connection limits; tests inject a transport through it); one
:class:`IngestClient` speaks for one gateway token.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import httpx

from hamlet.contract import INGEST_PATH, IngestResult
from hamlet.retry_after import parse_retry_after

DETAIL_CHARS: Final = 300  # of the server's answer, kept for logs and dead letters


class Outcome(StrEnum):
    OK = "ok"  # 200: the batch is settled (stored, duplicate, or rejected with reasons)
    RETRY = "retry"  # 429/503: busy; ``retry_after`` is what the server asked, if it said
    AUTH_REFUSED = "auth_refused"  # 401/403: the token is wrong or belongs to another gateway
    TOO_LARGE = "too_large"  # 413: the batch is over the server's bounds
    INVALID = "invalid"  # 422: the batch itself is refused
    FAILED = "failed"  # anything else (incl. a 200 we cannot read): back off and retry


@dataclass(frozen=True)
class IngestOutcome:
    outcome: Outcome
    status: int
    detail: str = ""
    result: IngestResult | None = None
    retry_after: float | None = None


def classify(
    status: int, body: bytes, retry_after: str | None, now: float | None = None
) -> IngestOutcome:
    """The meaning of one ingest answer (``now``: epoch seconds, for an HTTP-date)."""
    detail = body[: 4 * DETAIL_CHARS].decode("utf-8", errors="replace")[:DETAIL_CHARS]
    if status == 200:
        try:
            result = IngestResult.model_validate_json(body)
        except ValueError as err:
            why = f"server answered 200 with an unreadable body: {err}"
            return IngestOutcome(Outcome.FAILED, status, why[:DETAIL_CHARS])
        return IngestOutcome(Outcome.OK, status, result=result)
    if status in (401, 403):
        return IngestOutcome(Outcome.AUTH_REFUSED, status, detail)
    if status == 413:
        return IngestOutcome(Outcome.TOO_LARGE, status, detail)
    if status == 422:
        return IngestOutcome(Outcome.INVALID, status, detail)
    if status in (429, 503):
        wait = parse_retry_after(retry_after, time.time() if now is None else now)
        return IngestOutcome(Outcome.RETRY, status, detail, retry_after=wait)
    return IngestOutcome(Outcome.FAILED, status, detail)


class Unreachable(Exception):
    """No HTTP answer at all (DNS, TCP, TLS, timeout)."""


class IngestClient:
    """Posts JSON batches gzip-compressed with one gateway's bearer token."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, token: str, *, gzip_level: int = 6
    ) -> None:
        self._http = http
        self.url = base_url.rstrip("/") + INGEST_PATH
        self._gzip_level = gzip_level
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }

    def compress(self, body_json: bytes) -> bytes:
        return gzip.compress(body_json, compresslevel=self._gzip_level)

    async def post(self, body_gz: bytes) -> IngestOutcome:
        """POST an already gzip-compressed batch; raises :class:`Unreachable`."""
        try:
            resp = await self._http.post(self.url, content=body_gz, headers=self._headers)
        except httpx.HTTPError as err:
            raise Unreachable(f"{type(err).__name__}: {err}") from err
        return classify(resp.status_code, resp.content, resp.headers.get("Retry-After"))
