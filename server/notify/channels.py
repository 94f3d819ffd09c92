"""The ways a message leaves: SMS through the modem, e-mail over SMTP+STARTTLS, signed webhooks.

Each sender raises :class:`DeliveryError` saying whether trying again can help.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

import httpx

from hamlet.sms import storage
from hamlet.sms.errors import ModemError
from hamlet.sms.gsm7 import unaccent
from hamlet.sms.modem import AsyncGsmModem
from server.notify.config import SmtpConfig
from server.notify.store import (
    SMS_CONFIRMED_NOTE,
    SMS_FROM_STORAGE_NOTE,
    SMS_LOST_NOTE,
    Batch,
    NotifyStore,
)

log = logging.getLogger(__name__)
# Not "DUNG": unaccented, "dừng" (stop) is "đúng" (yes, right).
STOP_WORDS = frozenset({"STOP", "HUY", "HUY DK", "TU CHOI"})
SIGNATURE_HEADER = "X-Hamlet-Signature"
TIMESTAMP_HEADER = "X-Hamlet-Timestamp"
MAX_SMS_PARTS_TEXT = 400  # a digest longer than this is cut (about 6 UCS-2 parts)


class DeliveryError(Exception):
    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


class Sender(Protocol):
    async def send(self, batch: Batch) -> None: ...

    async def settled(self, batch: Batch) -> None:
        """Called once the outbox has recorded ``batch`` as sent."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``<timestamp>.<body>``: a receiver recomputes it and rejects old
    timestamps, so a captured request cannot be replayed later."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def is_stop(text: str) -> bool:
    """A reply asking for no more messages: STOP, HUY, HỦY, Hủy… (any case, any accents)."""
    return unaccent(text).strip().strip(".!").upper() in STOP_WORDS


class SmsSender:
    """Sends through the modem; replies waiting in the modem are read first, so a STOP always
    takes effect before the next message to that phone.

    In PDU mode each SMS is written to the modem's storage first and its indexes committed on
    the outbox rows, then sent from storage: the modem marks it STO SENT once it has gone, so
    after a crash the stored status says whether it went (exactly once, docs/notify.md).
    """

    def __init__(self, modem: AsyncGsmModem, store: NotifyStore, *, stored: bool = True) -> None:
        self.modem = modem
        self.store = store
        self.stored = stored  # False in text mode: AT+CMGS, at least once after a crash
        self._sent_slots: dict[str, tuple[int, ...]] = {}  # batch key -> to delete once settled

    async def sweep(self) -> int:
        """At start-up, before anything is sent: delete outgoing messages in storage that no
        unsettled outbox row points at (``hamlet.sms.storage.sweep``)."""
        return await storage.sweep(self.modem, await self._held())

    async def _held(self) -> set[int]:
        return await asyncio.to_thread(self.store.held_sms_slots)

    async def settled(self, batch: Batch) -> None:
        slots = self._sent_slots.pop(batch.key, ())
        try:
            for index in slots:
                await self.modem.delete(index)
        except ModemError as err:  # left in storage: the next start-up's sweep deletes it
            log.warning("notify: could not delete sent SMS from the modem's storage: %s", err)

    async def read_replies(self) -> None:
        try:
            inbox = await self.modem.inbox()
        except ModemError as err:
            raise DeliveryError(str(err), retryable=err.retryable) from err
        for msg in inbox:
            if is_stop(msg.text):
                n = await asyncio.to_thread(self.store.stop, phone=msg.sender)
                log.info("notify: STOP from %s: %d subscriber(s) stopped", msg.sender, n)
            else:  # kept for staff (the notify page, GET /api/v1/notify/replies)
                await asyncio.to_thread(self.store.add_reply, msg.sender, msg.text)
            await self.modem.delete(msg.index)

    async def send(self, batch: Batch) -> None:
        phone = batch.subscriber.phone
        if not phone:
            raise DeliveryError("subscriber has no phone", retryable=False)
        await self.read_replies()
        if batch.sms_slots and await self._resume(batch):
            return  # decided before the crash: it goes (or went) whatever happened since
        sub = await asyncio.to_thread(self.store.find_subscriber, batch.subscriber.id)
        if sub is None:
            raise DeliveryError("subscriber removed", retryable=False)
        if not sub.active:
            raise DeliveryError("unsubscribed (replied STOP)", retryable=False)
        text = batch.text()[:MAX_SMS_PARTS_TEXT]
        try:
            if not self.stored:
                await self.modem.send(phone, text)
                return
            slots = await storage.store(self.modem, phone, text, self._held)
            await asyncio.to_thread(self.store.keep_sms_slots, batch, slots)
            await self._send_stored(batch, tuple(slots), [None] * len(slots))
        except ModemError as err:
            raise DeliveryError(str(err), retryable=err.retryable) from err

    async def _resume(self, batch: Batch) -> bool:
        """A batch a crash cut off after the modem stored it: what the storage says. False
        when the modem no longer has it (power-cycled, swapped): it must go again."""
        try:
            stats = await storage.statuses(self.modem, batch.sms_slots)
            if stats is None:
                await asyncio.to_thread(self.store.forget_sms_slots, batch)
                await asyncio.to_thread(self.store.note, batch, SMS_LOST_NOTE)
                return False
            gone = storage.already_went(stats)
            await self._send_stored(batch, batch.sms_slots, stats)
        except ModemError as err:
            raise DeliveryError(str(err), retryable=err.retryable) from err
        note = SMS_CONFIRMED_NOTE if gone else SMS_FROM_STORAGE_NOTE
        await asyncio.to_thread(self.store.note, batch, note)
        return True

    async def _send_stored(
        self, batch: Batch, slots: tuple[int, ...], stats: list[int | None]
    ) -> None:
        async def forget() -> None:
            await asyncio.to_thread(self.store.forget_sms_slots, batch)

        await storage.send(self.modem, slots, stats, forget)
        self._sent_slots[batch.key] = slots


class EmailSender:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, batch: Batch) -> None:
        to = batch.subscriber.email
        if not to:
            raise DeliveryError("subscriber has no e-mail", retryable=False)
        msg = EmailMessage()
        vi = batch.subscriber.language == "vi"
        first = batch.text().split(" | ")[0]
        msg["Subject"] = ("[Cảnh báo] " if vi else "[Alert] ") + first[:80]
        msg["From"] = self.config.sender
        msg["To"] = to
        # The outbox key in the Message-ID: a message resent after a crash is recognisable.
        msg["Message-ID"] = make_msgid(idstring=batch.key.replace(":", "."), domain="hamlet")
        msg.set_content(batch.text())
        await asyncio.to_thread(self._deliver, msg)

    async def settled(self, batch: Batch) -> None:
        pass

    def _deliver(self, msg: EmailMessage) -> None:
        c = self.config
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
                smtp.ehlo()
                if c.starttls:
                    ctx = ssl.create_default_context(cafile=c.ca_file)
                    smtp.starttls(context=ctx)
                    smtp.ehlo()
                if c.username and c.password:
                    smtp.login(c.username, c.password.get_secret_value())
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as err:
            # 4xx: try later; 5xx: the server refuses this message or address for good.
            raise DeliveryError(
                f"SMTP {err.smtp_code}: {err.smtp_error!r}", retryable=err.smtp_code < 500
            ) from err
        except smtplib.SMTPNotSupportedError as err:
            raise DeliveryError(
                "the SMTP server does not offer STARTTLS; fix the server or set starttls=false",
                retryable=False,
            ) from err
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryError(f"SMTP: {err}", retryable=True) from err


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, batch: Batch) -> None:
        sub = batch.subscriber
        if not sub.webhook_url or not sub.webhook_secret:
            raise DeliveryError("webhook has no URL or secret", retryable=False)
        body = json.dumps(
            {
                "key": batch.key,
                "text": batch.text(),
                "alerts": [
                    {
                        "alert_id": r.alert_id,
                        "phase": r.phase,
                        "severity": r.severity,
                        "text": r.text,
                        "key": r.key,
                    }
                    for r in batch.rows
                ],
            },
            ensure_ascii=False,
        ).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(sub.webhook_secret, ts, body),
            "Idempotency-Key": batch.key,
        }
        try:
            resp = await self.client.post(sub.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise DeliveryError(f"webhook: {err!r}", retryable=True) from err
        if resp.is_success:
            return
        retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
        raise DeliveryError(f"webhook answered {resp.status_code}", retryable=retryable)

    async def settled(self, batch: Batch) -> None:
        pass
