"""What a gateway needs to send alerts itself while its uplink is down, and what it reports.

The server serves an :class:`EdgePlan` per hamlet (``GET /api/v1/notify/edge-plan``, with an
ETag); the gateway caches it on disk. What the gateway sent goes back as :class:`EdgeSent`
(``POST /api/v1/notify/edge-sent``), so the server logs it and never sends it again. Shared by
server and gateway, so it lives here (no server imports).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from hamlet.alertrules import AlertSettings

MAX_SENT_PER_REPORT = 500


def natural_alert_id(rule: str, hamlet: str, device: str, metric: str, start_ms: int) -> str:
    """An alert's id from what defines it (the alert engine's identity: rule, subject, start
    reading time), not from a row number: a gateway evaluating the same rules on the same
    readings names the same alert, so what it already sent is recognised by the server."""
    return f"{rule}:{hamlet}:{device}:{metric}:{start_ms}"


def sms_key(alert_id: str, phase: str, subscriber_id: int) -> str:
    """The outbox key of one SMS (server/notify/store.py builds the same for every channel)."""
    return f"{alert_id}:{phase}:{subscriber_id}:sms"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EdgeSubscription(_Model):
    rule: str = "*"
    field: str | None = None
    device: str | None = None
    min_severity: int = Field(2, ge=1, le=3)  # 1 info, 2 warning, 3 danger

    def matches(self, rule: str, severity: int, field: str | None, device: str | None) -> bool:
        """The same test the server's outbox applies (server/notify/store.py ``_matching``)."""
        return (
            self.rule in ("*", rule)
            and severity >= self.min_severity
            and self.field in (None, field)
            and self.device in (None, device)
        )


class EdgeSubscriber(_Model):
    id: int
    phone: str
    language: str = "vi"
    subscriptions: list[EdgeSubscription]


class EdgeDevice(_Model):
    """What the rules need to know about one of the hamlet's devices (its crop: the
    salinity threshold)."""

    crop: str | None = None


class EdgePlan(_Model):
    hamlet: str
    version: str  # a digest of the content; also the ETag
    subscribers: list[EdgeSubscriber]
    # The server's alert settings and the hamlet's devices, so the gateway evaluates the same
    # thresholds (hamlet.alertrules.resolve) as the server.
    commune: str | None = None
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    devices: dict[str, EdgeDevice] = Field(default_factory=dict)

    def with_rules(
        self, alerts: AlertSettings, commune: str | None, devices: dict[str, EdgeDevice]
    ) -> EdgePlan:
        """This plan with the rules' inputs added; the version covers them too."""
        extra = json.dumps(
            [self.version, commune, alerts.model_dump(mode="json"),
             {k: v.model_dump() for k, v in sorted(devices.items())}],
            sort_keys=True,
        )  # fmt: skip
        version = hashlib.sha256(extra.encode()).hexdigest()[:32]
        return self.model_copy(
            update={"version": version, "commune": commune, "alerts": alerts, "devices": devices}
        )

    def recipients(
        self, rule: str, severity: int, field: str | None, device: str | None
    ) -> list[EdgeSubscriber]:
        return [
            s
            for s in self.subscribers
            if any(u.matches(rule, severity, field, device) for u in s.subscriptions)
        ]


class EdgeSentMessage(_Model):
    """One SMS the gateway's modem sent: enough for the server to log it under the same key."""

    key: str = Field(max_length=300)  # alert_id:phase:subscriber:sms
    alert_id: str = Field(max_length=200)
    rule: str = Field(max_length=64)
    severity: int = Field(ge=1, le=3)
    phase: str = Field(pattern="^(start|end)$")
    at_ms: int
    subscriber_id: int
    sent_at: float
    message_vi: str = Field(max_length=1000)
    message_en: str = Field(max_length=1000)
    device: str | None = Field(None, max_length=64)
    field: str | None = Field(None, max_length=64)


class EdgeSent(_Model):
    hamlet: str
    sent: list[EdgeSentMessage] = Field(max_length=MAX_SENT_PER_REPORT)
