"""What the notifier is told about an alert, and the messages it makes from it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    DANGER = 3


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    WEBHOOK = "webhook"


class Phase(enum.StrEnum):
    START = "start"
    END = "end"
    ESCALATION = "escalation"


def natural_alert_id(rule: str, hamlet: str, device: str, metric: str, start_ms: int) -> str:
    """An alert's id from what defines it (the alert engine's identity: rule, subject, start
    reading time), not from a row number: a gateway evaluating the same rules on the same
    readings names the same alert, so what it already sent is recognised here."""
    return f"{rule}:{hamlet}:{device}:{metric}:{start_ms}"


@dataclass(frozen=True)
class AlertEvent:
    """An alert starting or ending, as the alert engine records it (its id is stable)."""

    alert_id: str
    rule: str  # the alert kind, e.g. "salinity_over_crop"
    severity: Severity
    hamlet: str
    phase: Phase
    at_ms: int  # reading time of the start / end
    message_vi: str
    message_en: str
    device: str | None = None
    field: str | None = None
    metric: str | None = None

    def message(self, language: str) -> str:
        text = self.message_vi if language == "vi" else self.message_en
        if self.phase is Phase.END:
            return ("Đã hết: " if language == "vi" else "Ended: ") + text
        if self.phase is Phase.ESCALATION:
            prefix = "CHƯA AI XỬ LÝ: " if language == "vi" else "NOT ACKNOWLEDGED: "
            return prefix + text
        return text
