"""The dispatcher: sends what the outbox holds, woken by new rows or the next due time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from hamlet.tasks import TaskOwner
from server.notify.channels import DeliveryError, Sender
from server.notify.config import NotifyConfig
from server.notify.model import AlertEvent, Channel
from server.notify.store import Batch, NotifyStore

log = logging.getLogger(__name__)


class Dispatcher(TaskOwner):
    """Owns one task; ``enqueue`` records an alert's messages and wakes it."""

    def __init__(
        self,
        store: NotifyStore,
        senders: Mapping[Channel, Sender],
        config: NotifyConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.senders = senders
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()

    def _start(self) -> None:
        self._spawn(self._run(), "notify-dispatcher")

    def wake(self) -> None:
        self._wake.set()

    async def enqueue(self, ev: AlertEvent) -> int:
        n = await asyncio.to_thread(
            self.store.enqueue, ev, self.config.escalate_after_s, self.clock()
        )
        self.wake()
        return n

    def _backoff(self, attempts: int) -> float:
        return float(min(self.config.backoff_s * 2 ** (attempts - 1), self.config.backoff_max_s))

    async def _deliver(self, batch: Batch) -> None:
        sender = self.senders.get(batch.channel)
        error: str | None = None
        retry_at: float | None = None
        attempts = max(r.attempts for r in batch.rows)
        if sender is None:
            # Not configured, or the modem was not ready at start-up: keep trying for a while.
            error = f"no {batch.channel} channel is working on this server"
            if attempts < self.config.max_attempts:
                retry_at = self.clock() + self._backoff(attempts)
        else:
            try:
                await sender.send(batch)
            except DeliveryError as err:
                error = str(err)
                if err.retryable and attempts < self.config.max_attempts:
                    retry_at = self.clock() + self._backoff(attempts)
        await asyncio.to_thread(self.store.settle, batch, self.clock(), error, retry_at)
        if error is None and sender is not None:
            await sender.settled(batch)
        if error is not None:
            log.warning(
                "notify: %s to subscriber %d failed (%s)%s",
                batch.channel, batch.subscriber.id, error,
                "" if retry_at is None else f"; retry in {retry_at - self.clock():.0f} s",
            )  # fmt: skip

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            modem = self.config.modem
            sms_stored = modem is not None and modem.mode == "pdu"
            n = await asyncio.to_thread(self.store.recover, now, sms_stored=sms_stored)
            if n:
                log.warning("notify: %d messages were cut off mid-send; settling them again", n)
            await asyncio.to_thread(self.store.escalate_due, now)
            batches = await asyncio.to_thread(
                self.store.claim, now, self.config.rate_limit, self.config.rate_window_s,
                self.config.claim_lease_s,
            )  # fmt: skip
            # Channels in parallel (a slow SMTP server does not hold an SMS back); within a
            # channel in order, since one modem sends one message at a time anyway.
            by_channel: dict[Channel, list[Batch]] = {}
            for b in batches:
                by_channel.setdefault(b.channel, []).append(b)
            async with asyncio.TaskGroup() as tg:
                for chan_batches in by_channel.values():
                    tg.create_task(self._deliver_all(chan_batches))
            nxt = await asyncio.to_thread(self.store.next_wake)
            timeout = None if nxt is None else max(0.0, nxt - self.clock())
            if timeout == 0.0:
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and the dispatcher would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _deliver_all(self, batches: list[Batch]) -> None:
        for b in batches:
            await self._deliver(b)
