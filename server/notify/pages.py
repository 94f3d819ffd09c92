"""The alerts admin page: staff list, add and remove subscribers and their subscriptions and
read the delivery log message by message; a farmer sees their own subscriptions and can stop
or resume their alerts. Same policy (``scope.py``) and checks (``routes.py``) as the API;
plain same-origin HTML forms, which the CSRF middleware checks (``server/security.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from hamlet.alertrules import RULES
from hamlet.contract import is_ident
from server import registry
from server.admin_pages import _form, gate
from server.notify.model import Severity
from server.notify.routes import (
    SubscriberIn,
    create_subscriber,
    managed,
    view,
    visible_log,
    visible_replies,
)
from server.notify.scope import NOTHING, NotifyScope, scope_of
from server.notify.service import Notifier
from server.notify.store import VN
from server.pagekit import render
from server.views import Viewer, _ctx, _viewer

router = APIRouter(include_in_schema=False)
PAGE: Final = "/admin/alerts"
LOG_MESSAGES: Final = 30  # the most recent messages shown, each with every recipient's status
_WORDS: Final = {
    "title": {"vi": "Đăng ký nhận cảnh báo", "en": "Alert subscriptions"},
    "mine": {"vi": "Cảnh báo của tôi", "en": "My alerts"},
    "new": {"vi": "Thêm người nhận", "en": "Add a recipient"},
    "name": {"vi": "Họ tên", "en": "Name"},
    "phone": {"vi": "Số điện thoại (SMS)", "en": "Phone (SMS)"},
    "email": {"vi": "Thư điện tử", "en": "E-mail"},
    "hamlet": {"vi": "Ấp", "en": "Hamlet"},
    "language": {"vi": "Ngôn ngữ", "en": "Language"},
    "quiet": {"vi": "Giờ yên lặng (chỉ cảnh báo nguy hiểm)", "en": "Quiet hours (danger only)"},
    "from": {"vi": "từ", "en": "from"},
    "to": {"vi": "đến", "en": "to"},
    "staff": {"vi": "Cán bộ (nhận báo chưa xử lý)", "en": "Staff (gets escalations)"},
    "add": {"vi": "Thêm", "en": "Add"},
    "kind": {"vi": "Loại cảnh báo", "en": "Alert kind"},
    "all_kinds": {"vi": "Mọi loại", "en": "All kinds"},
    "device": {"vi": "Thiết bị", "en": "Device"},
    "field": {"vi": "Thửa ruộng (mã, tùy chọn)", "en": "Field (id, optional)"},
    "channels": {"vi": "Nhận qua", "en": "Receives by"},
    "all_devices": {"vi": "Mọi thiết bị", "en": "All devices"},
    "severity": {"vi": "Từ mức", "en": "From level"},
    "subscribe": {"vi": "Đăng ký", "en": "Subscribe"},
    "remove": {"vi": "Xóa", "en": "Remove"},
    "stop": {"vi": "Ngừng nhận cảnh báo", "en": "Stop alerts"},
    "resume": {"vi": "Nhận lại cảnh báo", "en": "Resume alerts"},
    "stopped": {"vi": "đã ngừng", "en": "stopped"},
    "none_yet": {"vi": "Chưa đăng ký loại cảnh báo nào.", "en": "No subscriptions yet."},
    "nobody": {"vi": "Chưa có người nhận.", "en": "No recipients yet."},
    "log": {"vi": "Nhật ký gửi (theo tin nhắn)", "en": "Delivery log (by message)"},
    "no_log": {"vi": "Chưa gửi tin nào.", "en": "Nothing sent yet."},
    "replies": {"vi": "Bà con nhắn lại", "en": "Replies from farmers"},
    "saved": {"vi": "Đã lưu", "en": "Saved"},
    "forbidden": {
        "vi": "Tài khoản của bạn không quản lý cảnh báo.",
        "en": "Your account does not manage alerts.",
    },
}
SEVERITY_WORDS: Final = {
    "info": ("Theo dõi", "Watch"),
    "warning": ("Cảnh báo", "Warning"),
    "danger": ("Nguy hiểm", "Danger"),
}
STATUS_WORDS: Final = {
    "pending": ("đang chờ", "waiting"),
    "sending": ("đang gửi", "sending"),
    "sent": ("đã gửi", "sent"),
    "failed": ("không gửi được", "failed"),
}


def _w(lang: str) -> Any:
    return lambda k: _WORDS[k]["vi" if lang == "vi" else "en"]


def _pick(words: tuple[str, str], lang: str) -> str:
    return words[0] if lang == "vi" else words[1]


def _minutes(text: str) -> int | None:
    """``HH:MM`` from an ``<input type=time>``; None when empty; ValueError when malformed."""
    if not text:
        return None
    hh, sep, mm = text.partition(":")
    if (
        not sep
        or not (hh.isdigit() and mm.isdigit())
        or not (0 <= int(hh) < 24 and 0 <= int(mm) < 60)
    ):
        raise ValueError(f"time {text!r}: use HH:MM")
    return int(hh) * 60 + int(mm)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


async def _scope(v: Viewer) -> NotifyScope:
    return await v.st.store.db.read(scope_of, v.p.user)


def _notifier(request: Request) -> Notifier:
    n: Notifier = request.app.state.notify
    return n


def _messages(rows: list[dict[str, object]], lang: str) -> list[dict[str, Any]]:
    """The log grouped by message (alert and phase), newest first, each with its recipients."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (str(r["alert_id"]), str(r["phase"]))
        g = groups.setdefault(key, {"alert_id": key[0], "phase": key[1], "hamlet": r["hamlet"],
                                    "text": r["text"], "rows": []})  # fmt: skip
        g["rows"].append({**r, "status_word": _pick(STATUS_WORDS[str(r["status"])], lang)})
    return list(reversed(groups.values()))[:LOG_MESSAGES]


# What went wrong, in the reader's language, before the specific reason (which names the
# field or id at fault).
_PROBLEM: Final = {
    400: ("Chưa lưu: kiểm tra lại ô đã nhập", "Not saved: check the form"),
    403: ("Tài khoản của bạn không được sửa mục này", "Your account may not change this"),
    404: ("Không thấy mục này trong các ấp bạn quản lý", "Not found among what you manage"),
    413: ("Biểu mẫu quá lớn", "The form is too large"),
    422: ("Chưa lưu: thiếu thông tin", "Not saved: something is missing"),
}


async def _page(request: Request, v: Viewer, *, error: str = "", status: int = 200) -> Response:
    sc = await _scope(v)
    w = _w(v.lang)
    if error and status in _PROBLEM:
        error = f"{_pick(_PROBLEM[status], v.lang)} — {error}"
    if sc == NOTHING:
        ctx = _ctx(request, v, w=w, error=w("forbidden"), subscribers=[], scope=None)
        return render(request, "admin_alerts.html", ctx, status=403)
    n = _notifier(request)
    subs = [s for s in await asyncio.to_thread(n.store.subscribers) if sc.manages(s)]
    all_subs = await asyncio.to_thread(n.store.subscriptions)
    views = [view(s, [u for u in all_subs if u.subscriber_id == s.id], sc) for s in subs]
    hamlets = [h.id for h in await v.st.store.db.read(registry.list_hamlets) if sc.covers(h.id)]
    devices = sorted(
        (d.hamlet, d.id, d.name or d.id)
        for d in await v.st.store.devices(hamlets)
        if d.hamlet in hamlets
    )
    log = await visible_log(n, sc, None)
    ctx = _ctx(
        request,
        v,
        w=w,
        scope=sc,
        farmer=sc.own_user is not None,
        subscribers=views,
        hamlets=hamlets,
        devices=devices,
        rules=[(r.id, _pick((r.vi, r.en), v.lang)) for r in RULES.values()],
        severities=[(k, _pick(words, v.lang)) for k, words in SEVERITY_WORDS.items()],
        severity_word={k: _pick(words, v.lang) for k, words in SEVERITY_WORDS.items()},
        rule_word={r.id: _pick((r.vi, r.en), v.lang) for r in RULES.values()},
        hhmm=_hhmm,
        messages=_messages(log, v.lang),
        replies=(await visible_replies(n, sc))[:LOG_MESSAGES],
        when=lambda t: datetime.fromtimestamp(float(t), VN).strftime("%d/%m %H:%M"),
        error=error,
        saved=request.query_params.get("saved", ""),
    )
    return render(request, "admin_alerts.html", ctx, status=status)


def _done(v: Viewer, what: str) -> Response:
    return RedirectResponse(f"{PAGE}?lang={v.lang}&saved={quote(what)}", status_code=303)


async def _start(request: Request) -> tuple[Viewer, NotifyScope, dict[str, str]] | Response:
    """Logged in, may manage alerts, a form of bounded size: else the page with the reason."""
    v = await _viewer(request)
    if (stop := gate(v, PAGE)) is not None:
        return stop
    sc = await _scope(v)
    if sc == NOTHING:
        return await _page(request, v, status=403)
    form = await _form(request)
    if form is None:
        return await _page(request, v, error="form too large", status=413)
    return v, sc, form


@router.get(PAGE, response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    v = await _viewer(request)
    if (stop := gate(v, PAGE)) is not None:
        return stop
    return await _page(request, v)


@router.post(f"{PAGE}/subscribers")
async def add(request: Request) -> Response:
    started = await _start(request)
    if isinstance(started, Response):
        return started
    v, sc, form = started
    try:
        start, end = _minutes(form.get("quiet_start", "")), _minutes(form.get("quiet_end", ""))
        body = SubscriberIn.model_validate({
            "name": form.get("name", "").strip(),
            "phone": form.get("phone", "").strip() or None,
            "email": form.get("email", "").strip() or None,
            "language": form.get("language", "vi"),
            "quiet": None if start is None or end is None else (start, end),
            "staff": form.get("staff") == "1",
            "hamlet": form.get("hamlet") or None,
        })  # fmt: skip
        sub = await create_subscriber(v.st, _notifier(request), sc, v.p, body)
    except (ValueError, ValidationError) as err:
        return await _page(request, v, error=str(err), status=400)
    except HTTPException as err:
        return await _page(request, v, error=str(err.detail), status=err.status_code)
    return _done(v, sub.name)


@router.post(PAGE + "/subscribers/{sid}/active")
async def set_active(request: Request, sid: int) -> Response:
    """Stop or resume someone's alerts (a farmer: their own)."""
    return await _on_subscriber(
        request,
        sid,
        lambda n, form: n.store.update_subscriber(sid, {"active": form.get("active") == "1"}),
    )


@router.post(PAGE + "/subscribers/{sid}/remove")
async def remove(request: Request, sid: int) -> Response:
    return await _on_subscriber(request, sid, lambda n, _form: n.store.remove_subscriber(sid))


async def _on_subscriber(
    request: Request, sid: int, change: Callable[[Notifier, Mapping[str, str]], object]
) -> Response:
    """A form that changes one subscriber the caller manages, then back to the page."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    v, sc, form = started
    n = _notifier(request)
    try:
        sub = await managed(n, sc, sid)
    except HTTPException as err:
        return await _page(request, v, error=str(err.detail), status=err.status_code)
    await asyncio.to_thread(change, n, form)
    return _done(v, sub.name)


@router.post(PAGE + "/subscribers/{sid}/subscriptions")
async def subscribe(request: Request, sid: int) -> Response:
    started = await _start(request)
    if isinstance(started, Response):
        return started
    v, sc, form = started
    n = _notifier(request)
    hamlet = form.get("hamlet", "")
    rule = form.get("rule") or "*"
    device = form.get("device") or None
    field = form.get("field", "").strip() or None
    severity = form.get("min_severity", "warning")
    try:
        sub = await managed(n, sc, sid)
    except HTTPException as err:
        return await _page(request, v, error=str(err.detail), status=err.status_code)
    if not sc.covers(hamlet):
        return await _page(request, v, error=f"hamlet {hamlet!r}: not yours", status=403)
    if rule != "*" and rule not in RULES:
        return await _page(request, v, error=f"alert kind {rule!r} is not a choice", status=400)
    if severity not in SEVERITY_WORDS:
        return await _page(request, v, error=f"level {severity!r} is not a choice", status=400)
    if field is not None and not is_ident(field):
        return await _page(request, v, error=f"field {field!r}: letters, digits, -", status=400)
    if device is not None:
        devices = {d.id for d in await v.st.store.devices([hamlet]) if d.hamlet == hamlet}
        if device not in devices:
            return await _page(
                request, v, error=f"device {device!r} is not in {hamlet}", status=400
            )
    await asyncio.to_thread(
        n.store.subscribe, sid, hamlet, rule=rule, device=device, field=field,
        min_severity=Severity[severity.upper()],
    )  # fmt: skip
    return _done(v, sub.name)


@router.post(PAGE + "/subscriptions/{sub_id}/remove")
async def unsubscribe(request: Request, sub_id: int) -> Response:
    started = await _start(request)
    if isinstance(started, Response):
        return started
    v, sc, _unused = started
    n = _notifier(request)
    u = await asyncio.to_thread(n.store.find_subscription, sub_id)
    if u is None or not sc.sees(u):
        return await _page(
            request, v, error=f"no subscription {sub_id} that you manage", status=404
        )
    try:
        sub = await managed(n, sc, u.subscriber_id)
    except HTTPException as err:
        return await _page(request, v, error=str(err.detail), status=err.status_code)
    await asyncio.to_thread(n.store.unsubscribe, sub_id)
    return _done(v, sub.name)
