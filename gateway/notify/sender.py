"""Danger alerts through the gateway's own modem while the uplink is down.

Every SMS sent is written to a journal (fsync'd JSON lines) before anything else happens, so a
gateway that restarts never sends it again; the journal also holds what the server has not yet
been told, reported as :class:`hamlet.edgeplan.EdgeSent` when the uplink is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from hamlet.edgeplan import EdgePlan, EdgeSent, EdgeSentMessage, sms_key
from hamlet.sms.errors import ModemError
from hamlet.sms.modem import AsyncGsmModem

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
        self.errors: list[str] = []  # modem errors, newest last (bounded), for the status page
        self._load()

    def _load(self) -> None:
        if not self.journal.exists():
            return
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a power loss: the SMS it describes was not confirmed
            if "sent" in entry:
                m = EdgeSentMessage.model_validate(entry["sent"])
                self.sent[m.key] = m
            elif "reported" in entry:
                self.reported.update(entry["reported"])

    def _append(self, entry: dict[str, object]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

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
                continue
            text = alert.message_vi if sub.language == "vi" else alert.message_en
            try:
                await self.modem.send(sub.phone, text)
            except ModemError as err:
                self.errors = [*self.errors[-49:], f"{key}: {err}"]
                continue  # the server sends it when the uplink is back
            m = EdgeSentMessage(
                key=key, alert_id=alert.alert_id, rule=alert.rule, severity=alert.severity,
                phase=alert.phase, at_ms=alert.at_ms, subscriber_id=sub.id,
                sent_at=time.time(), message_vi=alert.message_vi,
                message_en=alert.message_en, device=alert.device, field=alert.field,
            )  # fmt: skip
            await asyncio.to_thread(self._append, {"sent": m.model_dump()})
            self.sent[key] = m
            out.append(m)
        return out

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
