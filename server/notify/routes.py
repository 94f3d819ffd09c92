"""The notifier's API: subscribers and subscriptions (staff), the delivery log, the stop link."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from server import registry
from server.auth import Principal
from server.deps import Caller, State, deny
from server.notify.model import TEST_RULE, AlertEvent, Phase, Severity
from server.notify.scope import NOTHING, NotifyScope, scope_of
from server.notify.service import Notifier
from server.notify.store import Subscriber, Subscription
from server.state import AppState

router = APIRouter(tags=["notify"])
_PHONE = r"^\+?[0-9]{3,20}$"


Quiet = tuple[Annotated[int, Field(ge=0, le=1439)], Annotated[int, Field(ge=0, le=1439)]]
SidPath = Annotated[int, Path(ge=1, le=2**63 - 1)]


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, pattern=_PHONE)
    email: str | None = Field(None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = Field(None, max_length=500, pattern=r"^https?://")
    webhook_secret: str | None = Field(None, min_length=16, max_length=200)
    language: Literal["vi", "en"] = "vi"
    quiet: Quiet | None = Field(None, description="quiet hours, minutes after midnight")
    staff: bool = False
    hamlet: str | None = Field(
        None, max_length=64, description="whose staff manage them (staff must give one)"
    )
    user: str | None = Field(
        None, max_length=64, description="a farmer's login, who may then manage it too"
    )


class SubscriberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    phone: str | None = Field(None, pattern=_PHONE)
    email: str | None = Field(None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    language: Literal["vi", "en"] | None = None
    quiet: Quiet | None = None
    active: bool | None = None
    staff: bool | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> SubscriberPatch:
        # null clears phone, e-mail and quiet hours; these always have a value (a 422, not
        # a NOT NULL error from the database).
        nulled = [f for f in ("name", "language", "active", "staff")
                  if f in self.model_fields_set and getattr(self, f) is None]  # fmt: skip
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null; leave it out to keep it")
        return self


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


class SubscriptionView(BaseModel):
    id: int
    hamlet: str
    rule: str
    field: str | None
    device: str | None
    min_severity: Literal["info", "warning", "danger"]


class SubscriberView(BaseModel):
    """A subscriber as the people who manage them see it (never the webhook's secret)."""

    id: int
    name: str
    hamlet: str | None
    phone: str | None
    email: str | None
    webhook_url: str | None
    language: str
    quiet: tuple[int, int] | None
    staff: bool
    active: bool
    mine: bool  # linked to the caller's own login
    subscriptions: list[SubscriptionView]


class TestMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hamlet: str = Field(min_length=1, max_length=64)
    text_vi: str = Field("Tin nhắn thử của hệ thống cảnh báo.", max_length=300)
    text_en: str = Field("Test message from the alert system.", max_length=300)


def _notifier(request: Request) -> Notifier:
    n: Notifier = request.app.state.notify
    return n


async def scope(state: AppState, caller: Principal) -> NotifyScope:
    """The caller's scope; 401 for no one, 403 for a role with no share in alerts."""
    sc = await state.store.db.read(scope_of, caller.user)
    if sc == NOTHING:
        raise deny(caller)
    return sc


def view(sub: Subscriber, subs: list[Subscription], sc: NotifyScope) -> SubscriberView:
    return SubscriberView(
        id=sub.id, name=sub.name, hamlet=sub.hamlet, phone=sub.phone, email=sub.email,
        webhook_url=sub.webhook_url, language=sub.language,
        quiet=None if sub.quiet_start is None or sub.quiet_end is None
        else (sub.quiet_start, sub.quiet_end),
        staff=sub.staff, active=sub.active,
        mine=sc.own_user is not None and sub.user_id == sc.own_user,
        subscriptions=[
            SubscriptionView(
                id=u.id, hamlet=u.hamlet, rule=u.rule, field=u.field, device=u.device,
                min_severity=u.min_severity.name.lower(),
            )
            for u in subs if sc.sees(u)
        ],
    )  # fmt: skip


async def managed(n: Notifier, sc: NotifyScope, sid: int) -> Subscriber:
    """The subscriber, if the caller manages them; 404 otherwise (whether they exist is not
    told to someone who may not see them)."""
    sub = await asyncio.to_thread(n.store.find_subscriber, sid)
    if sub is None or not sc.manages(sub):
        raise HTTPException(404, f"no subscriber {sid} that you manage")
    return sub


async def create_subscriber(
    state: AppState, n: Notifier, sc: NotifyScope, caller: Principal, body: SubscriberIn
) -> Subscriber:
    """Checks shared by the API and the admin page; raises HTTPException saying what is wrong."""
    if not (body.phone or body.email or body.webhook_url):
        raise HTTPException(422, "give a phone, an e-mail or a webhook_url")
    if body.webhook_url and not body.webhook_secret:
        raise HTTPException(422, "a webhook needs a webhook_secret (16+ characters) to sign with")
    fields = body.model_dump(exclude={"user"})
    user_id: int | None = None
    if sc.own_user is not None:  # a farmer adds themselves, in their own hamlet
        if body.webhook_url or body.staff or body.user:
            raise HTTPException(403, "a farmer may add their own phone or e-mail only")
        if body.hamlet is not None and not sc.covers(body.hamlet):
            raise deny(caller)
        fields["hamlet"] = next(iter(sc.hamlets))
        user_id = sc.own_user
    elif body.hamlet is None and not sc.everything:
        raise HTTPException(422, "give the hamlet this person belongs to")
    elif body.hamlet is not None and not sc.covers(body.hamlet):
        raise deny(caller)
    if body.user is not None:
        u = await state.store.db.read(registry.user_by_name, body.user)
        if u is None or u.hamlet is None or not sc.covers(u.hamlet):
            raise HTTPException(422, f"no farmer login {body.user!r} in your hamlets")
        user_id = u.id
    return await asyncio.to_thread(n.store.add_subscriber, **fields, user_id=user_id)


@router.get("/api/v1/notify/subscribers", response_model=list[SubscriberView])
async def list_subscribers(request: Request, caller: Caller, state: State) -> list[SubscriberView]:
    """The subscribers the caller manages, with the subscriptions they may see."""
    sc = await scope(state, caller)
    n = _notifier(request)
    subs = [s for s in await asyncio.to_thread(n.store.subscribers) if sc.manages(s)]
    all_subs = await asyncio.to_thread(n.store.subscriptions)
    by_sub: dict[int, list[Subscription]] = {}
    for u in all_subs:
        by_sub.setdefault(u.subscriber_id, []).append(u)
    return [view(s, by_sub.get(s.id, []), sc) for s in subs]


@router.post("/api/v1/notify/subscribers", response_model=SubscriberOut, status_code=201)
async def add_subscriber(
    body: SubscriberIn, request: Request, caller: Caller, state: State
) -> SubscriberOut:
    """Add a person (or a commune's webhook) who receives alerts. Staff give the hamlet the
    person belongs to; a farmer adds themselves."""
    sc = await scope(state, caller)
    n = _notifier(request)
    sub = await create_subscriber(state, n, sc, caller, body)
    return SubscriberOut(
        id=sub.id, name=sub.name, stop_url=f"{n.config.public_url}/notify/stop/{sub.stop_token}"
    )


@router.get("/api/v1/notify/subscribers/{sid}", response_model=SubscriberView)
async def get_subscriber(
    sid: SidPath, request: Request, caller: Caller, state: State
) -> SubscriberView:
    sc = await scope(state, caller)
    n = _notifier(request)
    sub = await managed(n, sc, sid)
    return view(sub, await asyncio.to_thread(n.store.subscriptions, sid), sc)


@router.patch("/api/v1/notify/subscribers/{sid}", response_model=SubscriberView)
async def change_subscriber(
    sid: SidPath, body: SubscriberPatch, request: Request, caller: Caller, state: State
) -> SubscriberView:
    """Change contact details, language, quiet hours; ``active: false`` stops their alerts."""
    sc = await scope(state, caller)
    n = _notifier(request)
    await managed(n, sc, sid)
    changes = body.model_dump(exclude_unset=True)
    if "staff" in changes and not sc.staff:
        raise deny(caller)
    sub = await asyncio.to_thread(n.store.update_subscriber, sid, changes)
    return view(sub, await asyncio.to_thread(n.store.subscriptions, sid), sc)


@router.delete("/api/v1/notify/subscribers/{sid}", status_code=204)
async def remove_subscriber(sid: SidPath, request: Request, caller: Caller, state: State) -> None:
    """Forget a person and their subscriptions; what waits for them is not sent."""
    sc = await scope(state, caller)
    n = _notifier(request)
    await managed(n, sc, sid)
    await asyncio.to_thread(n.store.remove_subscriber, sid)


@router.post("/api/v1/notify/subscribers/{sid}/subscriptions", status_code=201)
async def subscribe(
    sid: SidPath, body: SubscriptionIn, request: Request, caller: Caller, state: State
) -> dict[str, int]:
    sc = await scope(state, caller)
    n = _notifier(request)
    await managed(n, sc, sid)
    if not sc.covers(body.hamlet):  # staff: their commune's hamlets; a farmer: their own
        raise deny(caller)
    sev = Severity[body.min_severity.upper()]
    sub_id = await asyncio.to_thread(
        n.store.subscribe, sid, body.hamlet, rule=body.rule, field=body.field,
        device=body.device, min_severity=sev,
    )  # fmt: skip
    return {"id": sub_id}


@router.delete("/api/v1/notify/subscriptions/{sub_id}", status_code=204)
async def unsubscribe(sub_id: SidPath, request: Request, caller: Caller, state: State) -> None:
    sc = await scope(state, caller)
    n = _notifier(request)
    u = await asyncio.to_thread(n.store.find_subscription, sub_id)
    if u is None or not sc.sees(u):
        raise HTTPException(404, f"no subscription {sub_id} that you manage")
    await managed(n, sc, u.subscriber_id)
    await asyncio.to_thread(n.store.unsubscribe, sub_id)


async def visible_log(
    n: Notifier, sc: NotifyScope, alert_id: str | None = None
) -> list[dict[str, object]]:
    """Staff: their hamlets' rows; a farmer: the rows of their own subscribers."""
    own: list[int] | None = None
    if sc.own_user is not None:
        own = [s.id for s in await asyncio.to_thread(n.store.subscribers) if sc.manages(s)]
        return await asyncio.to_thread(lambda: n.store.deliveries(alert_id, subscriber_ids=own))
    hamlets = sc.log_hamlets()
    return await asyncio.to_thread(lambda: n.store.deliveries(alert_id, hamlets=hamlets))


@router.get("/api/v1/notify/deliveries")
async def deliveries(
    request: Request, caller: Caller, state: State, alert_id: str | None = None
) -> list[dict[str, object]]:
    """The delivery log: one row per alert, phase, person and channel, with its status
    (staff see their commune's hamlets, a farmer their own messages)."""
    sc = await scope(state, caller)
    return await visible_log(_notifier(request), sc, alert_id)


async def visible_replies(n: Notifier, sc: NotifyScope) -> list[dict[str, object]]:
    """Staff: replies from their hamlets' subscribers; a farmer: their own; admin: all (also
    from numbers that are nobody's)."""
    if sc.own_user is not None:
        own = [s.id for s in await asyncio.to_thread(n.store.subscribers) if sc.manages(s)]
        return await asyncio.to_thread(lambda: n.store.replies(subscriber_ids=own))
    hamlets = sc.log_hamlets()
    return await asyncio.to_thread(lambda: n.store.replies(hamlets=hamlets))


@router.get("/api/v1/notify/replies")
async def replies(request: Request, caller: Caller, state: State) -> list[dict[str, object]]:
    """What farmers wrote back to the modem other than STOP / HUY, newest first (the last
    1,000 are kept)."""
    sc = await scope(state, caller)
    return await visible_replies(_notifier(request), sc)


@router.post("/api/v1/notify/test-message", status_code=202)
async def test_message(
    body: TestMessageIn, request: Request, caller: Caller, state: State
) -> dict[str, int]:
    """Send a test message to everyone subscribed in a hamlet (installers check the modem)."""
    sc = await scope(state, caller)
    if not (sc.staff and sc.covers(body.hamlet)):
        raise deny(caller)
    now = time.time()
    ev = AlertEvent(
        alert_id=f"test:{int(now * 1000)}", rule=TEST_RULE, severity=Severity.WARNING,
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
