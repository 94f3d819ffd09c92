"""Pages for people: hamlet chooser, farmer view (hamlet and field), installer view, API docs.

Every page is server-rendered; the same route with ``?partial=1`` returns only the part that
changes, which static/app.js asks for again on a schedule (with ETag, so mostly 304s).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hamlet.metrics import GATEWAY_METRIC_PREFIX
from hamlet.vncalendar import day_bounds_ms, local_day
from server import board, source_advice
from server.alerts.routes import AlertOut, list_alerts
from server.alerts.routes import Status as AlertStatus
from server.auth import Principal, PrincipalKind, can_manage_gateways
from server.deps import principal_of, readable
from server.i18n import SOURCE_STATE_WORDS, Lang
from server.indicators.card import ReportCard, build_card
from server.indicators.compute import Level, Period, gather, summarize
from server.indicators.source import ScopeError
from server.models import HamletOut, Resolution
from server.pagekit import PAGE_HEADERS, base_context, page_lang, render, static_url
from server.state import AppState
from server.store.gw_status import LatestReport
from server.timeparam import parse_month

router = APIRouter(include_in_schema=False)
RANGES: Final = {"24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
_RAW_ROWS: Final = 200
_HEALTH: Final = ("sources_failed", "components_failed", "previous_run_failed")
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


@dataclass(frozen=True, slots=True)
class Viewer:
    st: AppState
    p: Principal
    allowed: list[str] | None
    lang: Lang
    now: int


async def _viewer(request: Request) -> Viewer:
    st: AppState = request.app.state.hamlet
    p = await principal_of(request, st)
    allowed = await readable(st, p)
    return Viewer(st, p, allowed, page_lang(request), time.time_ns() // 1_000_000)


def _ctx(request: Request, v: Viewer, **extra: Any) -> dict[str, Any]:
    return {
        **base_context(request, v.lang),
        "user": v.p.user,
        "logged_in": v.p.kind == PrincipalKind.USER,
        "need_login": v.allowed is not None and not v.allowed and v.p.user is None,
        "refresh_s": v.st.config.pages.refresh_s,
        "partial": request.query_params.get("partial") == "1",
        "must_change": v.p.must_change_password,
        **extra,
    }


def _page(request: Request, name: str, ctx: dict[str, Any]) -> Response:
    """The whole page, or with ?partial=1 only its live part. A person who still has an
    admin-set temporary password changes it first."""
    if ctx["must_change"]:
        if ctx["partial"]:
            return Response(status_code=403)
        return RedirectResponse(f"/password?lang={ctx['lang']}", status_code=303)
    return render(request, f"{name}_live.html" if ctx["partial"] else f"{name}.html", ctx)


def _hamlet_page(
    request: Request,
    v: Viewer,
    name: str,
    hamlet_id: str,
    h: HamletOut | None,
    **extra: Any,
) -> Response:
    """A page about one hamlet, titled with its name (its id if it has none)."""
    title = h.name if h is not None and h.name else hamlet_id
    return _page(request, name, _ctx(request, v, hamlet_id=hamlet_id, hamlet_name=title, **extra))


def _not_found(request: Request, v: Viewer) -> Response:
    return render(request, "missing.html", _ctx(request, v), status=404)


async def _hamlet_cards(v: Viewer, hamlet: str) -> list[board.DeviceCard]:
    gws = frozenset(g.id for g in await v.st.registry.gateways([hamlet]))
    return board.cards(
        await v.st.store.devices([hamlet]),
        await v.st.store.latest([hamlet]),
        hamlet=hamlet,
        lang=v.lang,
        now=v.now,
        stale_intervals=v.st.config.pages.stale_intervals,
        gateways=gws,
    )


async def _alerts(
    v: Viewer, hamlet: str | None, *, open_only: bool, days: int = 30, limit: int = 50
) -> list[AlertOut]:
    """Alerts this viewer may read: the open ones (farmer view) or the history (staff)."""
    if v.allowed is not None and hamlet is not None and hamlet not in v.allowed:
        return []
    start = None if open_only else str(v.now - days * 86_400_000)
    status = AlertStatus.OPEN if open_only else AlertStatus.ALL
    return await list_alerts(
        state=v.st, caller=v.p, hamlet=hamlet, status=status, start=start, limit=limit
    )


async def _hamlet(v: Viewer, hamlet_id: str) -> HamletOut | None:
    """The registered hamlet, if this viewer may read it."""
    return next((h for h in await v.st.registry.hamlets(v.allowed) if h.id == hamlet_id), None)


@router.get("/", response_class=HTMLResponse)
async def chooser(request: Request) -> Response:
    v = await _viewer(request)
    hamlets = await v.st.registry.hamlets(v.allowed)
    # Hamlets that only appear in data (not yet registered) are still listed.
    known = {h.id for h in hamlets}
    seen = sorted({d.hamlet for d in await v.st.store.devices(v.allowed)} - known)
    rows = []
    for hid, name in [(h.id, h.name) for h in hamlets] + [(s, "") for s in seen]:
        cards = await _hamlet_cards(v, hid)
        fields, services = board.split(cards)
        rows.append(
            {
                "id": hid,
                "name": name or hid,
                "danger": sum(c.status == "danger" for c in fields),
                "watch": sum(c.status == "watch" for c in fields),
                "devices": len(cards),
                "services_down": sum(not c.online for c in services),
            }
        )
    return _page(request, "chooser", _ctx(request, v, hamlets=rows))


@router.get("/partials/live", response_class=HTMLResponse)
async def chooser_live(request: Request) -> Response:
    """The chooser's live part (kept at its old address for open pages of older releases)."""
    v = await _viewer(request)
    request.scope["query_string"] = b"partial=1&lang=" + v.lang.encode()
    return await chooser(Request(request.scope, request.receive))


@router.get("/h/{hamlet_id}", response_class=HTMLResponse)
async def farmer(request: Request, hamlet_id: str) -> Response:
    v = await _viewer(request)
    h = await _hamlet(v, hamlet_id)
    cards = await _hamlet_cards(v, hamlet_id) if h is not None or v.allowed is None else []
    if h is None and not cards:
        return _not_found(request, v)
    fields, services = board.split(cards)
    alerts = await _alerts(v, hamlet_id, open_only=True)
    return _hamlet_page(
        request, v, "farmer", hamlet_id, h, fields=fields, services=services, alerts=alerts
    )


@router.get("/h/{hamlet_id}/d/{device_id}", response_class=HTMLResponse)
async def field_view(
    request: Request,
    hamlet_id: str,
    device_id: str,
    range_: Annotated[str, Query(alias="range", pattern="^(24h|7d|30d)$")] = "24h",
) -> Response:
    v = await _viewer(request)
    h = await _hamlet(v, hamlet_id)
    if h is None and v.allowed is not None:
        return _not_found(request, v)
    card = next((c for c in await _hamlet_cards(v, hamlet_id) if c.id == device_id), None)
    if card is None:
        return _not_found(request, v)
    return _hamlet_page(
        request,
        v,
        "field",
        hamlet_id,
        h,
        card=card,
        charted=[r for r in card.readings if r.metric in board.PRIMARY],
        range=range_,
        ranges=list(RANGES),
        limits=board.limits(card.crop),
        start=v.now - RANGES[range_],
        end=v.now + 60_000,
    )


def _status_view(latest: LatestReport | None, lang: Lang, manage: bool) -> dict[str, Any] | None:
    """A gateway's latest status report as the installer page shows it: each source's state
    in words, icon and colour with what to do; dead letters' contents only to installers."""
    if latest is None:
        return None
    r = latest.report
    sources = []
    for s in r.sources:
        words = SOURCE_STATE_WORDS[s.state]
        sources.append(
            {
                "s": s,
                "cls": words["class"],
                "words": words[lang],
                "icon": words["icon"],
                "advice": source_advice.advice(s, lang),
                "device_advice": source_advice.device_advice(s, lang),
            }
        )
    return {
        "at": r.at,
        "received_ms": latest.received_ms,
        "sources": sources,
        "omitted": r.sources_omitted,
        "components": [c for c in r.components if c.state == "failed"],
        "dead": r.dead,
        "letters": r.dead.recent if manage else [],
    }


@router.get("/installer", response_class=HTMLResponse)
async def installer(request: Request) -> Response:
    v = await _viewer(request)
    gws = await v.st.registry.gateways(v.allowed)
    acct = {a.id: a for a in await v.st.store.accounting(gws)}
    manage = can_manage_gateways(v.p)
    reports = await v.st.registry.status_reports(gws)
    rows = []
    for g in gws:
        a = acct.get(g.id)
        hb = a.last_heartbeat if a else {}
        figures = {
            k.removeprefix(GATEWAY_METRIC_PREFIX): x
            for k, x in hb.items()
            if k.startswith(GATEWAY_METRIC_PREFIX)
        }
        rejections = await v.st.registry.rejections(g, 5) if manage else []
        rows.append(
            {
                "id": g.id,
                "hamlet": g.hamlet,
                "revoked": g.revoked,
                "last_seen": a.last_seen if a else None,
                "acct": a,
                "buffer_depth": figures.pop("buffer_depth", None),
                "oldest_unsent_s": figures.pop("oldest_unsent_age_s", None),
                # Source and component health as the gateway's heartbeat reports it.
                "sources": {k: figures.pop(k) for k in _HEALTH if k in figures},
                "dead_lettered": figures.pop("dead_lettered", None),
                "figures": dict(sorted(figures.items())),
                "rejections": rejections,
                "status": _status_view(reports.get(g.num), v.lang, manage),
            }
        )
    devices = sorted(await v.st.store.devices(v.allowed), key=lambda d: (d.hamlet, d.id))
    gw_ids = {g.id for g in gws}
    return _page(
        request,
        "installer",
        _ctx(
            request,
            v,
            gateways=rows,
            devices=[d for d in devices if d.id not in gw_ids],
            can_manage=manage,
            stale_ms=board.DEFAULT_STALE_MS,
        ),
    )


@router.get("/installer/d/{hamlet_id}/{device_id}", response_class=HTMLResponse)
async def raw_readings(request: Request, hamlet_id: str, device_id: str) -> Response:
    v = await _viewer(request)
    if v.allowed is not None and hamlet_id not in v.allowed:
        return _not_found(request, v)
    dev = next(
        (
            d
            for d in await v.st.store.devices([hamlet_id])
            if d.id == device_id and d.hamlet == hamlet_id
        ),
        None,
    )
    if dev is None:
        return _not_found(request, v)
    start = v.now - RANGES["24h"]
    rows: list[dict[str, Any]] = []
    for metric in dev.metrics:
        s = await v.st.store.series(
            hamlet_id,
            device_id,
            metric,
            start=start,
            end=v.now + 60_000,
            resolution=Resolution.RAW,
            limit=_RAW_ROWS,
        )
        rows.extend(
            {"metric": metric, "unit": s.unit, "t": p.t, "v": p.v, "q": p.q} for p in s.points
        )
    rows.sort(key=lambda r: -int(r["t"]))
    return _page(
        request,
        "raw",
        _ctx(request, v, device=dev, rows=rows[:_RAW_ROWS], hamlet_id=hamlet_id),
    )


AVAILABILITY: Final = ("kiosk_availability", "hotspot_availability", "radio_availability")


async def _availability(v: Viewer, commune: str, period: Period) -> dict[tuple[str, str], float]:
    """{(hamlet, device): availability in service hours} over ``period``."""
    try:
        _, facts = await gather(
            v.st.store,
            v.st.config.indicators,
            commune=commune,
            period=period,
            now_ms=v.now,
            daily=False,
        )
    except ScopeError:
        return {}
    return {
        (x.hamlet or "", x.device or ""): x.value
        for x in summarize(facts, Level.DEVICE, by_day=False)
        if x.indicator in AVAILABILITY and x.value is not None
    }


async def _card(v: Viewer, commune: str, month: tuple[dt.date, dt.date]) -> ReportCard | None:
    try:
        return await build_card(v.st.store, v.st.config.indicators, commune, *month, now_ms=v.now)
    except ScopeError:
        return None


@router.get("/staff", response_class=HTMLResponse)
async def staff(request: Request) -> Response:
    """Commune staff: every kiosk and service device, online or not, and today's use."""
    v = await _viewer(request)
    hamlets = await v.st.registry.hamlets(v.allowed)
    day = local_day(v.now)
    today = day_bounds_ms(day)[0]
    month = parse_month(None, v.now)
    communes: dict[str, list[dict[str, Any]]] = {}
    avail_day: dict[tuple[str, str], float] = {}
    avail_month: dict[tuple[str, str], float] = {}
    cards: dict[str, ReportCard] = {}
    for commune in sorted({h.commune for h in hamlets if h.commune}):
        avail_day |= await _availability(v, commune, Period(day, day))
        avail_month |= await _availability(v, commune, Period(*month))
        card = await _card(v, commune, month)
        if card is not None:
            cards[commune] = card
    for h in hamlets:
        _, services = board.split(await _hamlet_cards(v, h.id))
        if not services:
            continue
        events = await v.st.store.events(h.id, start=today, end=v.now + 60_000)
        rows = []
        for c in services:
            mine = [e for e in events if e.device == c.id]
            dossiers = [e for e in mine if e.name == "dossier_submitted"]
            ratings = [
                float(e.attrs["score"]) / float(e.attrs["scale"])
                for e in mine
                if e.name == "rating"
                and isinstance(e.attrs.get("score"), int | float)
                and isinstance(e.attrs.get("scale"), int | float)
                and e.attrs["scale"]
            ]
            rows.append(
                {
                    "card": c,
                    "sessions": sum(e.name == "session_start" for e in mine),
                    "dossiers": len(dossiers),
                    "online": sum(e.attrs.get("channel") == "online" for e in dossiers),
                    "ratings": len(ratings),
                    "satisfaction": (sum(ratings) / len(ratings) if ratings else None),
                    "avail_day": avail_day.get((h.id, c.id)),
                    "avail_month": avail_month.get((h.id, c.id)),
                }
            )
        communes.setdefault(h.commune or "", []).append(
            {"id": h.id, "name": h.name or h.id, "services": rows}
        )
    return _page(
        request,
        "staff",
        _ctx(
            request,
            v,
            communes=communes,
            today=today,
            cards=cards,
            month=f"{month[0]:%Y-%m}",
            alerts=await _alerts(v, None, open_only=False, limit=100),
        ),
    )


_DOCS: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} – API</title>
<link rel="stylesheet" href="{css}"><link rel="icon" href="{icon}" type="image/svg+xml"></head>
<body><div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="{js}"></script><script src="{init}"></script></body></html>
"""


def docs_page(title: str) -> HTMLResponse:
    """Swagger UI from the server's own files: no CDN, and no inline script (strict CSP)."""
    html = _DOCS.format(
        title=title,
        css=static_url("vendor/swagger-ui/swagger-ui.css"),
        js=static_url("vendor/swagger-ui/swagger-ui-bundle.js"),
        init=static_url("docs.js"),
        icon=static_url("favicon.svg"),
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)
