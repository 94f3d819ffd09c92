"""What the notifier is told about an alert, and the messages it makes from it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hamlet.edgeplan import natural_alert_id

__all__ = ["TEST_RULE", "AlertEvent", "Channel", "Phase", "Severity", "natural_alert_id"]
# The rule of a test message: it goes to everyone subscribed in the hamlet, whatever they chose.
TEST_RULE = "test"


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
