"""The gateway's side of the notifier API: its hamlet's plan (ETag) and what it sent itself."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response

from hamlet.edgeplan import EdgeDevice, EdgePlan, EdgeSent
from server import registry
from server.alerts.apply import load_context
from server.deps import State
from server.notify.model import AlertEvent, Channel, Phase, Severity
from server.notify.service import Notifier
from server.secrets_ import GATEWAY_TOKEN_PREFIX

router = APIRouter(tags=["notify"])


async def _gateway(request: Request, state: State) -> registry.GatewayRow:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    gw = None
    if scheme.lower() == "bearer" and token.startswith(GATEWAY_TOKEN_PREFIX):
        gw = await state.store.db.read(registry.gateway_by_token, token.strip())
    if gw is None or gw.revoked:
        raise HTTPException(
            401, "a gateway token is needed", headers={"WWW-Authenticate": "Bearer"}
        )
    return gw


@router.get("/api/v1/notify/edge-plan", response_model=EdgePlan)
async def edge_plan(request: Request, response: Response, state: State) -> EdgePlan | Response:
    """Who in the gateway's hamlet gets SMS for what, with the alert settings and the
    devices' crops the rules need. Send ``If-None-Match`` with the last
    ETag: 304 when nothing changed."""
    gw = await _gateway(request, state)
    n: Notifier = request.app.state.notify
    plan = await asyncio.to_thread(n.store.edge_plan, gw.hamlet)
    ctx = await state.store.db.read(load_context, gw.hamlet)
    devices = {d: EdgeDevice(crop=crop) for d, (_k, crop, _i, _h) in ctx.devices.items()}
    plan = plan.with_rules(request.app.state.alerts.settings, ctx.commune, devices)
    etag = f'"{plan.version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return plan


@router.post("/api/v1/notify/edge-sent")
async def edge_sent(body: EdgeSent, request: Request, state: State) -> dict[str, int]:
    """Record SMS the gateway sent while its uplink was down; the server never sends them."""
    gw = await _gateway(request, state)
    if body.hamlet != gw.hamlet:
        raise HTTPException(403, f"this gateway reports for hamlet {gw.hamlet!r} only")
    for m in body.sent:  # all checked before any is recorded
        if m.key != f"{m.alert_id}:{m.phase}:{m.subscriber_id}:{Channel.SMS}":
            raise HTTPException(422, f"key {m.key!r} does not name this alert and subscriber")
    n: Notifier = request.app.state.notify
    recorded = 0
    for m in body.sent:
        ev = AlertEvent(
            alert_id=m.alert_id, rule=m.rule, severity=Severity(m.severity), hamlet=gw.hamlet,
            phase=Phase(m.phase), at_ms=m.at_ms, message_vi=m.message_vi,
            message_en=m.message_en, device=m.device, field=m.field,
        )  # fmt: skip
        recorded += await asyncio.to_thread(
            n.store.record_sent_elsewhere, m.key, ev, m.subscriber_id, Channel.SMS, m.sent_at
        )
    return {"recorded": recorded}
