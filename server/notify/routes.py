"""The notifier's API: subscribers and subscriptions (staff), the delivery log, the stop link."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from server.deps import Caller, State, deny, readable, require_hamlet
from server.notify.model import AlertEvent, Phase, Severity
from server.notify.service import Notifier
from server.registry import Role

router = APIRouter(tags=["notify"])
_PHONE = r"^\+?[0-9]{3,20}$"


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, pattern=_PHONE)
    email: str | None = Field(None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = Field(None, max_length=500, pattern=r"^https?://")
    webhook_secret: str | None = Field(None, min_length=16, max_length=200)
    language: Literal["vi", "en"] = "vi"
    quiet: tuple[int, int] | None = Field(None, description="quiet hours, minutes after midnight")
    staff: bool = False


class SubscriberOut(BaseModel):
    id: int
    name: str
    stop_url: str


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hamlet: str = Field(min_length=1, max_length=64)
    rule: str = Field("*", max_length=64)
    field: str | None = Field(None, max_length=64)
    device: str | None = Field(None, max_length=64)
    min_severity: Literal["info", "warning", "danger"] = "warning"


class TestMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hamlet: str = Field(min_length=1, max_length=64)
    text_vi: str = Field("Tin nhắn thử của hệ thống cảnh báo.", max_length=300)
    text_en: str = Field("Test message from the alert system.", max_length=300)


def _notifier(request: Request) -> Notifier:
    n: Notifier = request.app.state.notify
    return n


def _staff(caller: Caller) -> None:
    if caller.role not in (Role.STAFF, Role.ADMIN):
        raise deny(caller)


@router.post("/api/v1/notify/subscribers", response_model=SubscriberOut, status_code=201)
async def add_subscriber(body: SubscriberIn, request: Request, caller: Caller) -> SubscriberOut:
    """Add a person (or a commune's webhook) who receives alerts."""
    _staff(caller)
    if not (body.phone or body.email or body.webhook_url):
        raise HTTPException(422, "give a phone, an e-mail or a webhook_url")
    if body.webhook_url and not body.webhook_secret:
        raise HTTPException(422, "a webhook needs a webhook_secret (16+ characters) to sign with")
    n = _notifier(request)
    sub = await asyncio.to_thread(n.store.add_subscriber, **body.model_dump())
    return SubscriberOut(
        id=sub.id, name=sub.name, stop_url=f"{n.config.public_url}/notify/stop/{sub.stop_token}"
    )


@router.post("/api/v1/notify/subscribers/{sid}/subscriptions", status_code=201)
async def subscribe(
    sid: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: SubscriptionIn,
    request: Request,
    caller: Caller,
    state: State,
) -> dict[str, int]:
    _staff(caller)
    await require_hamlet(state, caller, body.hamlet)  # staff: their commune's hamlets only
    n = _notifier(request)
    sev = Severity[body.min_severity.upper()]
    sub_id = await asyncio.to_thread(
        n.store.subscribe, sid, body.hamlet, rule=body.rule, field=body.field,
        device=body.device, min_severity=sev,
    )  # fmt: skip
    return {"id": sub_id}


@router.get("/api/v1/notify/deliveries")
async def deliveries(
    request: Request, caller: Caller, state: State, alert_id: str | None = None
) -> list[dict[str, object]]:
    """The delivery log: one row per alert, phase, person and channel, with its status
    (staff see their commune's hamlets)."""
    _staff(caller)
    allowed = await readable(state, caller)
    rows = await asyncio.to_thread(_notifier(request).store.deliveries, alert_id)
    return rows if allowed is None else [r for r in rows if r["hamlet"] in allowed]


@router.post("/api/v1/notify/test-message", status_code=202)
async def test_message(
    body: TestMessageIn, request: Request, caller: Caller, state: State
) -> dict[str, int]:
    """Send a test message to everyone subscribed in a hamlet (installers check the modem)."""
    _staff(caller)
    await require_hamlet(state, caller, body.hamlet)
    now = time.time()
    ev = AlertEvent(
        alert_id=f"test:{int(now * 1000)}", rule="test", severity=Severity.WARNING,
        hamlet=body.hamlet, phase=Phase.START, at_ms=int(now * 1000),
        message_vi=body.text_vi, message_en=body.text_en,
    )  # fmt: skip
    return {"queued": await _notifier(request).dispatcher.enqueue(ev)}


@router.get("/notify/stop/{token}", response_class=HTMLResponse)
async def stop_page(token: Annotated[str, Path(max_length=64)]) -> str:
    """The link in each message: a button (a GET changes nothing, so link previews cannot)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise HTTPException(404, "unknown link")
    return (
        '<!doctype html><meta charset="utf-8"><form method="post">'
        "<p>Ngừng nhận cảnh báo? / Stop receiving alerts?</p>"
        '<button type="submit">Ngừng / Stop</button></form>'
    )


@router.post("/notify/stop/{token}", response_class=PlainTextResponse)
async def stop_link(token: Annotated[str, Path(max_length=64)], request: Request) -> str:
    """Stops all alerts to the person the link was made for (the token is the credential)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise HTTPException(404, "unknown link")
    n = await asyncio.to_thread(_notifier(request).store.stop, token=token)
    if not n:
        raise HTTPException(404, "unknown link / liên kết không hợp lệ")
    return "Đã ngừng gửi cảnh báo cho bạn. / You will no longer receive alerts."
