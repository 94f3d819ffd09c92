"""Danger alerts through the gateway's own modem while the uplink is down.

Every SMS goes through the modem's storage (PDU mode, ``hamlet.sms.storage``): it is stored,
its indexes journalled (fsync'd JSON lines), then sent from storage, and journalled as sent.
A gateway killed at any point, or a modem answer that never came, leaves either nothing
stored (it goes again) or indexes whose stored status says whether it went: it is never sent
twice. The journal also holds what the server has not yet been told, reported as
:class:`hamlet.edgeplan.EdgeSent` when the uplink is back. Text mode has no storage path and
stays at least once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from hamlet.edgeplan import EdgePlan, EdgeSent, EdgeSentMessage, sms_key
from hamlet.sms import storage
from hamlet.sms.errors import ModemError
from hamlet.sms.modem import AsyncGsmModem

log = logging.getLogger(__name__)

SENT_PATH = "/api/v1/notify/edge-sent"
DANGER = 3


@dataclass(frozen=True)
class EdgeAlert:
    """An alert as the gateway's evaluation of the hamlet's rules names it."""

    alert_id: str  # hamlet.edgeplan.natural_alert_id(...)
    rule: str
    severity: int
    phase: str  # start | end
    at_ms: int
    message_vi: str
    message_en: str
    device: str | None = None
    field: str | None = None


class EdgeSender:
    def __init__(
        self, modem: AsyncGsmModem, journal: Path, *, uplink_down_after_s: float = 300.0
    ) -> None:
        self.modem = modem
        self.journal = journal
        self.uplink_down_after_s = uplink_down_after_s
        self.sent: dict[str, EdgeSentMessage] = {}
        self.reported: set[str] = set()
        self.stored: dict[str, list[int]] = {}  # key -> storage indexes of a send not settled
        self.errors: list[str] = []  # modem errors, newest last (bounded), for the status page
        self.repeats = 0  # offers of an alert already sent: each one an SMS not sent twice
        self._load()

    def _load(self) -> None:
        if not self.journal.exists():
            return
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a power loss: what it describes was not confirmed
            if "sent" in entry:
                m = EdgeSentMessage.model_validate(entry["sent"])
                self.sent[m.key] = m
                self.stored.pop(m.key, None)
            elif "stored" in entry:
                self.stored[entry["stored"]] = [int(i) for i in entry["slots"]]
            elif "unstored" in entry:
                self.stored.pop(entry["unstored"], None)
            elif "reported" in entry:
                self.reported.update(entry["reported"])

    def _append(self, entry: dict[str, object]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _note(self, err: str) -> None:
        self.errors = [*self.errors[-49:], err]

    async def _held(self) -> set[int]:
        return {i for slots in self.stored.values() for i in slots}

    async def sweep(self) -> int:
        """At start-up, before anything is sent: delete outgoing messages in the modem's
        storage that no unsettled send holds (``hamlet.sms.storage.sweep``)."""
        if self.modem.config.mode == "text":
            return 0
        return await storage.sweep(self.modem, await self._held())

    async def on_alert(
        self, alert: EdgeAlert, plan: EdgePlan, uplink_down_for_s: float
    ) -> list[EdgeSentMessage]:
        """Send ``alert`` to its subscribers when it is a danger alert starting and the uplink
        has been down long enough (otherwise the server sends it); what was sent now."""
        if (
            alert.severity < DANGER
            or alert.phase != "start"
            or uplink_down_for_s < self.uplink_down_after_s
        ):
            return []
        out: list[EdgeSentMessage] = []
        for sub in plan.recipients(alert.rule, alert.severity, alert.field, alert.device):
            key = sms_key(alert.alert_id, alert.phase, sub.id)
            if key in self.sent:
                self.repeats += 1
                continue
            text = alert.message_vi if sub.language == "vi" else alert.message_en
            try:
                slots, how = await self._deliver(key, sub.phone, text)
            except ModemError as err:
                # Offered again at the next reading; a send whose answer was lost is then
                # settled from the stored status, not sent again.
                self._note(f"{key}: {err}")
                continue
            m = EdgeSentMessage(
                key=key, alert_id=alert.alert_id, rule=alert.rule, severity=alert.severity,
                phase=alert.phase, at_ms=alert.at_ms, subscriber_id=sub.id,
                sent_at=time.time(), message_vi=alert.message_vi,
                message_en=alert.message_en, device=alert.device, field=alert.field,
            )  # fmt: skip
            await asyncio.to_thread(self._append, {"sent": m.model_dump()})
            self.sent[key] = m
            self.stored.pop(key, None)
            out.append(m)
            log.info("edge alerts: SMS to subscriber %d %s (%s)", sub.id, how, key)
            await self._delete(slots)
        return out

    async def _deliver(self, key: str, phone: str, text: str) -> tuple[list[int], str]:
        """Send ``text`` once; the storage indexes to delete once it is journalled as sent,
        and how it went (for the log)."""
        if self.modem.config.mode == "text":
            await self.modem.send(phone, text)  # no storage: at least once
            return [], "sent (text mode)"

        async def forget() -> None:
            self.stored.pop(key, None)
            await asyncio.to_thread(self._append, {"unstored": key})

        slots = self.stored.get(key)
        if slots is not None:
            stats = await storage.statuses(self.modem, slots)
            if stats is not None:  # stored before a crash or a lost answer: what it says
                await storage.send(self.modem, slots, stats, forget)
                went = storage.already_went(stats)
                return slots, "confirmed from the modem's storage" if went else "sent from storage"
            await forget()
            self._note(f"{key}: the modem lost the stored SMS (power-cycled?); sent again")
        slots = await storage.store(self.modem, phone, text, self._held)
        await asyncio.to_thread(self._append, {"stored": key, "slots": slots})
        self.stored[key] = slots
        await storage.send(self.modem, slots, [None] * len(slots), forget)
        return slots, "sent"

    async def _delete(self, slots: list[int]) -> None:
        try:
            for index in slots:
                await self.modem.delete(index)
        except ModemError as err:  # left in storage: the next start-up's sweep deletes it
            self._note(f"deleting a sent SMS from the modem's storage: {err}")

    def unreported(self) -> list[EdgeSentMessage]:
        return [m for k, m in self.sent.items() if k not in self.reported]

    async def report(
        self, client: httpx.AsyncClient, server_url: str, token: str, hamlet: str
    ) -> int:
        """Tell the server what was sent; how many it had not known. Raises httpx errors."""
        todo = self.unreported()
        if not todo:
            return 0
        body = EdgeSent(hamlet=hamlet, sent=todo[:500])
        resp = await client.post(
            server_url.rstrip("/") + SENT_PATH,
            content=body.model_dump_json(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp.raise_for_status()
        keys = [m.key for m in body.sent]
        await asyncio.to_thread(self._append, {"reported": keys})
        self.reported.update(keys)
        return int(resp.json()["recorded"])
