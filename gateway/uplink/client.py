"""Buffer -> server: gzip JSON batches, live data first, a backlog that drains behind it.

Promises:
- A record leaves the buffer only after the server answered 200 for the batch holding it
  (stored, duplicate, or rejected with a reason: rejected ones become dead letters).
- Never gives up: every failure backs off (exponential, full jitter, capped) and retries.
- Live first: records committed after the link came back go out ahead of the backlog, which
  drains in between, optionally capped in bytes per second for metered 3G.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import httpx

from gateway import deadletter
from gateway.buffer import DurableBuffer, PendingGap, StoredRecord
from gateway.clock import Clock
from gateway.control_protocol import UplinkInfo, UplinkState
from gateway.uplink.config import UplinkConfig
from gateway.uplink.encode import Encoded, encode_batch
from hamlet.backoff import Backoff
from hamlet.contract import IngestResult
from hamlet.ingest_client import IngestClient, Outcome, Unreachable
from hamlet.tasks import TaskOwner

log = logging.getLogger(__name__)

MIN_BATCH = 1


class UplinkError(Exception):
    """One post failed; the batch stays in the buffer.

    ``retry_after``: seconds the server asked us to wait (429/503 ``Retry-After``), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthRefused(UplinkError):
    pass


class TooLarge(UplinkError):
    pass


@dataclass
class UplinkStatus:
    state: UplinkState = UplinkState.STARTING
    last_upload_at: float | None = None
    last_error: str | None = None
    uploaded: int = 0
    rejected: int = 0
    batches: int = 0
    bytes_sent: int = 0
    backoff_s: float = 0.0
    batch_size: int = 0
    live_from: int = 0
    backlog_sent: int = 0
    backlog_bytes: int = 0
    live_sent: int = 0
    # time.monotonic() of the first failure since the last successful post; None while up.
    down_since: float | None = None

    def info(self) -> UplinkInfo:
        return UplinkInfo(
            state=self.state,
            last_upload_at=self.last_upload_at,
            last_error=self.last_error,
            uploaded=self.uploaded,
            rejected=self.rejected,
            batches=self.batches,
            bytes_sent=self.bytes_sent,
            backoff_s=round(self.backoff_s, 3),
            batch_size=self.batch_size,
        )


class Uplink(TaskOwner):
    """Async context manager owning the upload task."""

    def __init__(
        self, config: UplinkConfig, gateway_id: str, buffer: DurableBuffer, clock: Clock
    ) -> None:
        super().__init__()
        self._cfg = config
        self._gw = gateway_id
        self._buffer = buffer
        self._clock = clock
        self.status = UplinkStatus(batch_size=config.max_batch_records)
        self._client: httpx.AsyncClient | None = None
        self._ingest: IngestClient | None = None
        self._backoff = Backoff(base_s=config.backoff_base_s, cap_s=config.backoff_cap_s)
        # Set after every successful post: tests and the status page can wait on it.
        self.uploaded = asyncio.Event()
        # Awaited before every post: what the server must know before the readings land
        # (the SMS a gateway sent while down, so the server does not send them again).
        self.before_post: list[Callable[[], Awaitable[None]]] = []

    def _start(self) -> None:
        # httpx logs every request at INFO: a line per batch would bury the journal.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        verify: ssl.SSLContext | bool = True
        if self._cfg.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self._cfg.ca_file))
        self._client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(self._cfg.timeout_s),
            headers={"User-Agent": "hamlet-gateway"},
        )
        self._ingest = IngestClient(
            self._client, str(self._cfg.url), self._cfg.token.get_secret_value()
        )
        self._spawn(self._run(), "uplink")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._client is not None:
                await self._client.aclose()

    # -- the loop -------------------------------------------------------------------
    async def _run(self) -> None:
        st = self.status
        # Everything already buffered at start is backlog; new records are live.
        st.live_from = self._buffer.last_seq
        down = False
        next_backlog_at = 0.0
        backlog_left = True
        while True:
            self._buffer.committed.clear()
            hold = self._clock.hold_unsynced()
            sent = False
            try:
                live, gaps = await self._buffer.read_batch(
                    st.live_from, None, st.batch_size, hold_pending=hold
                )
                if live or gaps:
                    await self._post(live, gaps)
                    st.live_sent += len(live)
                    sent = True
                if down:
                    # The link is back: what piled up is backlog, what comes now is live.
                    down = False
                    st.live_from = max(st.live_from, self._buffer.last_seq)
                    backlog_left = True
                now = time.monotonic()
                if backlog_left and now >= next_backlog_at:
                    back, gaps = await self._buffer.read_batch(
                        0, st.live_from, st.batch_size, hold_pending=hold
                    )
                    if back or gaps:
                        enc = await self._post(back, gaps)
                        st.backlog_sent += len(back)
                        st.backlog_bytes += len(enc.body)
                        sent = True
                        rate = self._cfg.backlog_bytes_per_s
                        if rate:
                            next_backlog_at = time.monotonic() + len(enc.body) / rate
                    else:
                        backlog_left = False
                self._backoff.reset()
                st.backoff_s = 0.0
            except TooLarge:
                st.batch_size = max(MIN_BATCH, st.batch_size // 2)
                log.warning("uplink: server says batch too large; now %d records", st.batch_size)
                await self._buffer.release()
                continue
            except UplinkError as err:
                down = True
                await self._buffer.release()
                await self._sleep_backoff(err)
                continue
            if sent:
                continue
            await self._idle(backlog_left, next_backlog_at, hold)

    async def _idle(self, backlog_left: bool, next_backlog_at: float, hold: bool) -> None:
        timeout: float | None = None
        if backlog_left:
            timeout = max(next_backlog_at - time.monotonic(), 0.01)
        if hold:
            # Re-check the clock now and then: sync (or the end of the hold) needs no commit.
            timeout = min(timeout or 5.0, 5.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._buffer.committed.wait()

    async def _sleep_backoff(self, err: UplinkError) -> None:
        delay = self._backoff.next_delay()
        if err.retry_after is not None:
            # The server said when: never sooner (a busy server is not hammered), never past
            # the cap (a wild header must not park the gateway for days).
            delay = min(self._cfg.backoff_cap_s, max(err.retry_after, delay))
        self.status.backoff_s = delay
        self.status.last_error = str(err)
        if self.status.down_since is None:
            self.status.down_since = time.monotonic()
        if isinstance(err, AuthRefused):
            self.status.state = UplinkState.AUTH_FAILED
        else:
            self.status.state = UplinkState.DOWN
        log.warning("uplink: %s; retrying in %.1f s (data is kept)", err, delay)
        await asyncio.sleep(delay)

    # -- one post -------------------------------------------------------------------
    async def _post(self, records: list[StoredRecord], gaps: list[PendingGap]) -> Encoded:
        assert self._ingest is not None
        for hook in self.before_post:
            await hook()
        enc = encode_batch(
            self._gw, self._clock.wall_ms(), records, gaps, level=self._cfg.gzip_level
        )
        started = time.monotonic()
        try:
            answer = await self._ingest.post(enc.body)
        except Unreachable as err:
            raise UplinkError(f"cannot reach {self._cfg.url}: {err}") from err
        took = time.monotonic() - started
        code = answer.status
        match answer.outcome:
            case Outcome.OK:
                assert answer.result is not None
                await self._settle(records, enc, answer.result)
                self._adapt(took, len(records))
                return enc
            case Outcome.AUTH_REFUSED:
                log.error(
                    "uplink: the server refused this gateway's token (HTTP %d). Check "
                    "uplink.token in the gateway config ('hamlet gateway doctor'). / Máy chủ "
                    "từ chối mã truy cập của gateway; kiểm tra uplink.token.",
                    code,
                )
                raise AuthRefused(f"token refused (HTTP {code})")
            case Outcome.TOO_LARGE:
                raise TooLarge(answer.detail)
            case Outcome.INVALID:
                await self._invalid(records, answer.detail)
                return enc
            case Outcome.RETRY:
                raise UplinkError(
                    f"server answered HTTP {code}: {answer.detail}", retry_after=answer.retry_after
                )
            case Outcome.FAILED if code == 200:
                raise UplinkError(answer.detail)
            case _:
                raise UplinkError(f"server answered HTTP {code}: {answer.detail}")

    async def _settle(
        self, records: list[StoredRecord], enc: Encoded, result: IngestResult
    ) -> None:
        st = self.status
        if result.rejected:
            by_seq = {r.seq: r for r in records}
            for rej in result.rejected:
                rec = by_seq.get(rej.seq)
                raw = json.dumps(_rec_json(rec) if rec else {"seq": rej.seq})
                self._buffer.put_dead(
                    deadletter.make(
                        self._clock.wall_ms(), "uplink", f"rejected_by_server: {rej.reason}", raw
                    )
                )
            st.rejected += len(result.rejected)
        await self._buffer.confirm(enc.seqs, enc.gap_firsts)
        st.uploaded += len(records)
        st.batches += 1
        st.bytes_sent += len(enc.body)
        st.last_upload_at = time.time()
        st.state = UplinkState.UP
        st.down_since = None
        st.last_error = None
        self.uploaded.set()

    async def _invalid(self, records: list[StoredRecord], detail: str) -> None:
        """422: the batch itself is invalid. Bisect down to the record the server refuses."""
        st = self.status
        if len(records) > 1:
            st.batch_size = max(MIN_BATCH, min(st.batch_size, len(records)) // 2)
            await self._buffer.release()
            log.warning("uplink: server refused a batch (422); isolating with %d", st.batch_size)
            return
        if not records:
            raise UplinkError(f"server refused pending gaps (422): {detail}")
        rec = records[0]
        letter = deadletter.make(
            self._clock.wall_ms(),
            "uplink",
            f"rejected_by_server: {detail}",
            json.dumps(_rec_json(rec)),
        )
        await self._buffer.give_up([rec.seq], [letter])
        st.rejected += 1
        st.batch_size = self._cfg.max_batch_records
        log.error("uplink: server refused record seq %d: %s (dead-lettered)", rec.seq, detail)

    def _adapt(self, took: float, n: int) -> None:
        st = self.status
        if took > self._cfg.slow_post_s and st.batch_size > 100:
            st.batch_size //= 2
        elif n >= st.batch_size and took < self._cfg.slow_post_s / 4:
            st.batch_size = min(self._cfg.max_batch_records, st.batch_size * 2)


def _rec_json(rec: StoredRecord) -> dict[str, object]:
    return {
        "seq": rec.seq,
        "kind": rec.kind.value,
        "device": rec.device,
        "metric": rec.metric,
        "value": rec.value,
        "t": rec.wall_ms,
        "q": rec.tq,
        "attrs": rec.attrs,
    }
