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

from hamlet.sms.errors import ModemError
from hamlet.sms.gsm7 import unaccent
from hamlet.sms.modem import AsyncGsmModem
from server.notify.config import SmtpConfig
from server.notify.store import Batch, NotifyStore

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
    takes effect before the next message to that phone."""

    def __init__(self, modem: AsyncGsmModem, store: NotifyStore) -> None:
        self.modem = modem
        self.store = store

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
        sub = await asyncio.to_thread(self.store.find_subscriber, batch.subscriber.id)
        if sub is None:
            raise DeliveryError("subscriber removed", retryable=False)
        if not sub.active:
            raise DeliveryError("unsubscribed (replied STOP)", retryable=False)
        text = batch.text()[:MAX_SMS_PARTS_TEXT]
        try:
            await self.modem.send(phone, text)
        except ModemError as err:
            raise DeliveryError(str(err), retryable=err.retryable) from err


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
