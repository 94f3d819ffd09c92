"""Notification settings, validated at start-up and passed down."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hamlet.sms.modem import ModemConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmtpConfig(_Section):
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True  # refuse to send credentials or alerts in clear unless turned off
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "canh-bao@hamlet.local"
    timeout_s: float = Field(30.0, gt=0)
    ca_file: str | None = None  # a private CA (or a test's self-signed cert)


class NotifyConfig(_Section):
    smtp: SmtpConfig | None = None
    modem: ModemConfig | None = None
    # Retries: first after backoff_s, doubling to backoff_max_s, at most max_attempts tries.
    backoff_s: float = Field(30.0, gt=0)
    backoff_max_s: float = Field(3600.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    # Per person and channel: at most rate_limit messages per rate_window_s; the rest wait and
    # leave as one digest when the window allows.
    rate_limit: int = Field(3, ge=1)
    rate_window_s: float = Field(3600.0, gt=0)
    # A message being sent is another process's for this long; after that (its process died)
    # it goes again. Longer than the slowest send (modem send_timeout_s × parts, SMTP timeout).
    claim_lease_s: float = Field(300.0, gt=0)
    escalate_after_s: float = Field(1800.0, gt=0)  # a danger alert nobody acknowledged
    webhook_timeout_s: float = Field(10.0, gt=0)
    public_url: str = "http://127.0.0.1:8000"  # for the stop link in messages
