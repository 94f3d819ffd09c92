"""From the alert engine's records (issue 11's ``alerts`` table rows) to notifier events.

The engine numbers its rows; the notifier names an alert by what defines it (rule, hamlet,
device, metric, start reading time — the engine's own identity), so a gateway evaluating the
same rules names the same alert. Call :func:`event_from_alert` when the engine opens an alert
(phase start) and when it closes one (phase end), then ``Dispatcher.enqueue`` the result.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.notify.model import AlertEvent, Phase, Severity, natural_alert_id

# The engine's severities (hamlet/alertrules.Severity values) on the notifier's scale.
SEVERITY = {"watch": Severity.INFO, "warning": Severity.WARNING, "danger": Severity.DANGER}


class UnknownAlertShape(ValueError):
    """A row without the fields an alert must have."""


def event_from_alert(row: Mapping[str, object], phase: Phase) -> AlertEvent:
    try:
        rule, hamlet, device = str(row["rule"]), str(row["hamlet"]), str(row["device"])
        metric = str(row.get("metric") or "")
        start_ms = int(str(row["start_ms"]))
        severity = SEVERITY[str(row["severity"])]
        at_ms = start_ms if phase is Phase.START else int(str(row["end_ms"]))
        vi, en = str(row["message_vi"]), str(row["message_en"])
    except (KeyError, ValueError, TypeError) as err:
        raise UnknownAlertShape(f"alert row cannot be notified: {err!r}") from err
    field = row.get("field")
    return AlertEvent(
        alert_id=natural_alert_id(rule, hamlet, device, metric, start_ms),
        rule=rule, severity=severity, hamlet=hamlet, phase=phase, at_ms=at_ms,
        message_vi=vi, message_en=en, device=device,
        field=None if field is None else str(field), metric=metric or None,
    )  # fmt: skip
