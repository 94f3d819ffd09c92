"""``[edge_alerts]``: danger alerts through the gateway's own modem while the uplink is down."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hamlet.sms.modem import ModemConfig


class EdgeAlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    modem: ModemConfig | None = None
    uplink_down_after_s: float = Field(
        300.0, ge=0, description="send from the gateway only once the uplink is down this long"
    )
    plan_refresh_s: float = Field(
        3600.0, gt=0, description="ask the server for a new plan at most this often"
    )

    @model_validator(mode="after")
    def _modem_when_enabled(self) -> Self:
        if self.enabled and self.modem is None:
            raise ValueError(
                "edge_alerts.enabled needs [edge_alerts.modem] port = '/dev/serial/by-id/…' "
                "/ Cần khai báo cổng modem GSM trong [edge_alerts.modem]"
            )
        return self
