"""The notifier as the server's lifespan owns it: store, channels and dispatcher together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hamlet.sms.errors import ModemError
from hamlet.sms.modem import AsyncGsmModem
from server.notify.channels import EmailSender, Sender, SmsSender, WebhookSender
from server.notify.config import NotifyConfig
from server.notify.dispatcher import Dispatcher
from server.notify.model import Channel
from server.notify.store import NotifyStore

log = logging.getLogger("hamlet.server.notify")


@dataclass
class Notifier:
    store: NotifyStore
    dispatcher: Dispatcher
    config: NotifyConfig


@contextlib.asynccontextmanager
async def open_notifier(config: NotifyConfig, data_dir: Path) -> AsyncIterator[Notifier]:
    store = NotifyStore(data_dir / "notify.sqlite3")
    senders: dict[Channel, Sender] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=config.webhook_timeout_s, follow_redirects=False)
            )
            senders[Channel.WEBHOOK] = WebhookSender(client)
            if config.smtp is not None:
                senders[Channel.EMAIL] = EmailSender(config.smtp)
            if config.modem is not None:
                try:
                    modem = await stack.enter_async_context(AsyncGsmModem(config.modem))
                    await modem.prepare()
                    sms = SmsSender(modem, store, stored=config.modem.mode == "pdu")
                    if sms.stored:
                        swept = await sms.sweep()
                        if swept:
                            log.info("notify: %d stored SMS not in the outbox deleted", swept)
                    senders[Channel.SMS] = sms
                except ModemError as err:
                    # The server runs without SMS; SMS rows wait (retried) until it is fixed.
                    log.error("notify: the GSM modem is not usable, SMS waits: %s", err)  # noqa: TRY400
            dispatcher = await stack.enter_async_context(Dispatcher(store, senders, config))
            yield Notifier(store, dispatcher, config)
    finally:
        await asyncio.to_thread(store.close)
