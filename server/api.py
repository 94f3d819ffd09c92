"""The JSON API: ingest for gateways, reads for people, registry changes for installers."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from hamlet.contract import (
    IDENT_PATTERN,
    GatewayAccounting,
    IngestResult,
    UplinkBatch,
)
from server.audit import Action
from server.auth import can_manage_gateways, is_admin
from server.body import BodyError, read_bounded
from server.clientaddr import client_address
from server.deps import Caller, State, deny, readable, registry_refusals, require_hamlet
from server.errors import ErrorOut, ValidationErrorOut, validation_body
from server.models import (
    DeviceIn,
    DeviceOut,
    EventOut,
    GatewayIn,
    GatewayStatusOut,
    GatewayToken,
    HamletOut,
    LatestValue,
    Me,
    RejectionOut,
    Resolution,
    SeriesResult,
)
from server.registry import RegistryError
from server.store.base import StoreError
from server.timeparam import TimeParamError, TimeQ, time_range

log = logging.getLogger("hamlet.server.api")
router = APIRouter(prefix="/api/v1")

HamletId = Annotated[str, Path(pattern=IDENT_PATTERN, examples=["dinh-phuoc"])]
GatewayId = Annotated[str, Path(pattern=IDENT_PATTERN, examples=["gw-dinh-phuoc"])]
DeviceId = Annotated[str, Path(pattern=IDENT_PATTERN, examples=["salinity-1"])]
MAX_SERIES_LIMIT: Final = 100_000
SeriesLimit = Annotated[int, Query(ge=1, le=MAX_SERIES_LIMIT)]
IdentQ = Annotated[str | None, Query(pattern=IDENT_PATTERN)]
_extra = UplinkBatch.model_config.get("json_schema_extra")
_examples = _extra.get("examples") if isinstance(_extra, dict) else None
INGEST_EXAMPLE: Final[object] = _examples[0] if isinstance(_examples, list) and _examples else {}


def _err(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "malformed body (bad gzip, bad JSON)",
        401: "missing, unknown or revoked token",
        403: "authenticated but not allowed",
        404: "no such object",
        409: "conflict with an existing object",
        413: "body too large, compressed or inflated",
        415: "unsupported Content-Encoding",
        422: "structurally invalid request",
        429: "rate limited; retry after Retry-After seconds",
        503: "store unavailable; retry later",
    }
    return {
        c: {"model": ValidationErrorOut if c == 422 else ErrorOut, "description": text[c]}
        for c in codes
    }


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def readable_range(
    state: State, caller: Caller, hamlet_id: str, start: str | None, end: str | None
) -> tuple[int, int]:
    """The asked time range in ms (422 if it is not one), for a caller who may read the
    hamlet (401/403 otherwise)."""
    await require_hamlet(state, caller, hamlet_id)
    try:
        return time_range(start, end, now_ms())
    except TimeParamError as err:
        raise HTTPException(422, str(err)) from err


def _error(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


@router.post(
    "/ingest",
    response_model=IngestResult,
    summary="Post a gateway's uplink batch (gzip or plain JSON)",
    description=(
        "Body: an `UplinkBatch` as JSON, optionally `Content-Encoding: gzip`. "
        "`Authorization: Bearer <gateway token>`. A 200 means every record in the batch is "
        "settled: stored durably, recognised as a duplicate of (gateway, seq), or rejected "
        "with a reason it will never be accepted for."
    ),
    responses=_err(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/UplinkBatch"},
                    "example": INGEST_EXAMPLE,
                }
            },
        }
    },
)
async def ingest(request: Request, state: State) -> Any:
    m = state.metrics
    started = time.perf_counter()
    resp = await _ingest(request, state)
    status = resp.status_code if isinstance(resp, JSONResponse) else 200
    m.requests.labels(str(status)).inc()
    m.ingest_seconds.observe(time.perf_counter() - started)
    return resp


async def _ingest(request: Request, state: State) -> IngestResult | JSONResponse:
    cfg = state.config.ingest
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _error(
            401, "send Authorization: Bearer <gateway token>", {"WWW-Authenticate": "Bearer"}
        )
    gw = await state.registry.gateway_by_token(token)
    if gw is None or gw.revoked:
        return _error(
            401,
            "unknown or revoked gateway token; ask an installer for a new one "
            "('hamlet server rotate-token GATEWAY')",
            {"WWW-Authenticate": "Bearer"},
        )
    wait = state.ingest_limiter.take(gw.id)
    if wait > 0:
        return _error(
            429,
            f"gateway {gw.id} is over its request rate",
            {"Retry-After": str(max(1, round(wait)))},
        )
    try:
        body = await read_bounded(
            request.stream(),
            encoding=request.headers.get("content-encoding"),
            content_length=request.headers.get("content-length"),
            max_body=cfg.max_body_bytes,
            max_inflated=cfg.max_decompressed_bytes,
        )
    except BodyError as err:
        return _error(err.status, err.message)
    try:
        batch = UplinkBatch.model_validate_json(body)
    except ValidationError as err:
        return JSONResponse(
            validation_body(err.errors(include_url=False, include_input=False)), status_code=422
        )
    if batch.gateway != gw.id:
        return _error(403, f"token belongs to gateway {gw.id!r}, batch claims {batch.gateway!r}")
    now = now_ms()
    try:
        result = await state.store.ingest(gw, batch, now)
    except StoreError:
        log.exception("ingest from %s failed", gw.id)
        return _error(503, "store unavailable, retry later", {"Retry-After": "5"})
    for hook in state.on_settled:
        await hook(gw, batch, result, now)
    m = state.metrics
    m.records.labels("accepted").inc(result.accepted)
    m.records.labels("duplicate").inc(result.duplicates)
    m.records.labels("rejected").inc(len(result.rejected))
    if result.rejected:
        log.info(
            "gateway %s: %d rejected, first: seq %d: %s",
            gw.id,
            len(result.rejected),
            result.rejected[0].seq,
            result.rejected[0].reason,
        )
    return result


@router.get(
    "/gateways",
    response_model=list[GatewayAccounting],
    summary="Gateways with loss accounting (received, duplicates, missing ranges)",
    responses=_err(401, 403),
)
async def gateways(state: State, caller: Caller) -> list[GatewayAccounting]:
    allowed = await readable(state, caller)
    gws = await state.registry.gateways(allowed)
    return await state.store.accounting(gws)


@router.post(
    "/gateways",
    response_model=GatewayToken,
    status_code=201,
    summary="Register a gateway; the token is shown once",
    responses=_err(401, 403, 409, 422),
)
async def add_gateway(
    request: Request, state: State, caller: Caller, body: GatewayIn
) -> GatewayToken:
    if not can_manage_gateways(caller):
        raise deny(caller)
    try:
        token = await state.registry.add_gateway(body.id, body.hamlet)
    except RegistryError as err:
        raise HTTPException(409, str(err)) from err
    await _audit(request, state, caller, Action.GATEWAY_ADDED, body.id)
    return GatewayToken(id=body.id, token=token)


async def _audit(
    request: Request, state: State, caller: Caller, action: Action, target: str
) -> None:
    actor = caller.user.name if caller.user else "anonymous"
    address = client_address(request, state.trusted_proxies)
    await state.registry.audit(actor, action, target, address=address)


@router.post(
    "/gateways/{gateway_id}/revoke",
    status_code=204,
    summary="Revoke a gateway's token (admin)",
    responses=_err(401, 403, 404, 422),
)
async def revoke_gateway(
    request: Request, state: State, caller: Caller, gateway_id: GatewayId
) -> None:
    if not is_admin(caller):
        raise deny(caller)
    with registry_refusals():
        await state.registry.revoke_gateway(gateway_id)
    await _audit(request, state, caller, Action.GATEWAY_REVOKED, gateway_id)


@router.get(
    "/gateways/{gateway_id}/rejections",
    response_model=list[RejectionOut],
    summary="Newest records this gateway sent that were rejected, with reasons",
    responses=_err(401, 403, 404, 422),
)
async def gateway_rejections(
    state: State,
    caller: Caller,
    gateway_id: GatewayId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RejectionOut]:
    if not can_manage_gateways(caller):
        raise deny(caller)
    gw = await state.registry.gateway(gateway_id)
    if gw is None:
        raise HTTPException(404, f"no gateway {gateway_id!r}")
    rows = await state.registry.rejections(gw, limit)
    return [RejectionOut(seq=s, reason=r, at=t) for s, r, t in rows]


@router.get(
    "/gateways/{gateway_id}/status",
    response_model=GatewayStatusOut,
    summary="The gateway's latest status report: its sources, components and dead letters",
    responses=_err(401, 403, 404, 422),
)
async def gateway_status(state: State, caller: Caller, gateway_id: GatewayId) -> GatewayStatusOut:
    gw = await state.registry.gateway(gateway_id)
    if gw is None:
        raise HTTPException(404, f"no gateway {gateway_id!r}")
    if gw.hamlet is not None:
        await require_hamlet(state, caller, gw.hamlet)  # who may read its hamlet
    elif not can_manage_gateways(caller):
        raise deny(caller)  # not placed yet: installers' and admins' business
    latest = (await state.registry.status_reports([gw])).get(gw.num)
    if latest is None:
        raise HTTPException(404, f"gateway {gateway_id!r} has sent no status report yet")
    report = latest.report
    if not can_manage_gateways(caller):
        # What devices sent is for installers and admins, as on the installer page.
        report = report.model_copy(update={"dead": report.dead.model_copy(update={"recent": []})})
    return GatewayStatusOut(
        seq=latest.seq, at=latest.t, received_ms=latest.received_ms, report=report
    )


@router.get(
    "/hamlets",
    response_model=list[HamletOut],
    summary="Hamlets you may read",
    responses=_err(401, 403),
)
async def hamlets(state: State, caller: Caller) -> list[HamletOut]:
    return await state.registry.hamlets(await readable(state, caller))


@router.get(
    "/hamlets/{hamlet_id}/latest",
    response_model=list[LatestValue],
    summary="Latest value of every device and metric in a hamlet",
    responses=_err(401, 403, 422),
)
async def latest(state: State, caller: Caller, hamlet_id: HamletId) -> list[LatestValue]:
    await require_hamlet(state, caller, hamlet_id)
    return await state.store.latest([hamlet_id])


@router.get(
    "/hamlets/{hamlet_id}/devices",
    response_model=list[DeviceOut],
    summary="Devices of a hamlet, registered and unconfirmed",
    responses=_err(401, 403, 422),
)
async def hamlet_devices(state: State, caller: Caller, hamlet_id: HamletId) -> list[DeviceOut]:
    await require_hamlet(state, caller, hamlet_id)
    return await state.store.devices([hamlet_id])


@router.put(
    "/hamlets/{hamlet_id}/devices/{device_id}",
    response_model=DeviceOut,
    summary="Register or update (confirm) a device",
    responses=_err(401, 403, 404, 422),
)
async def put_device(
    state: State, caller: Caller, hamlet_id: HamletId, device_id: DeviceId, body: DeviceIn
) -> DeviceOut:
    if not await state.registry.can_edit_devices(caller, hamlet_id):
        raise deny(caller)
    if body.id != device_id:
        raise HTTPException(422, "device id in the path and the body differ")
    with registry_refusals(invalid=422):
        await state.registry.upsert_device(hamlet_id, body)
    devs = await state.store.devices([hamlet_id])
    return next(d for d in devs if d.id == device_id)


@router.get(
    "/devices",
    response_model=list[DeviceOut],
    summary="All devices you may see; confirmed=false marks unregistered senders",
    responses=_err(401, 403),
)
async def devices(state: State, caller: Caller) -> list[DeviceOut]:
    return await state.store.devices(await readable(state, caller))


@router.get(
    "/hamlets/{hamlet_id}/series",
    response_model=SeriesResult,
    summary="One series over a time range, downsampled by span (raw, hourly, daily)",
    responses=_err(401, 403, 422),
)
async def series(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    hamlet_id: HamletId,
    device: Annotated[str, Query(pattern=IDENT_PATTERN, examples=["salinity-1"])],
    metric: Annotated[str, Query(pattern=IDENT_PATTERN, examples=["salinity"])],
    start: TimeQ = None,
    end: TimeQ = None,
    resolution: Resolution = Resolution.AUTO,
    limit: SeriesLimit = 10_000,
) -> SeriesResult:
    a, b = await readable_range(state, caller, hamlet_id, start, end)
    return await state.store.series(
        hamlet_id, device, metric, start=a, end=b, resolution=resolution, limit=limit
    )


@router.get(
    "/hamlets/{hamlet_id}/events",
    response_model=list[EventOut],
    summary="Events (kiosk sessions, dossiers, ratings, alerts) of a hamlet over a range",
    responses=_err(401, 403, 422),
)
async def events(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    hamlet_id: HamletId,
    start: TimeQ = None,
    end: TimeQ = None,
    device: IdentQ = None,
    name: Annotated[str | None, Query(pattern=IDENT_PATTERN, examples=["rating"])] = None,
    limit: SeriesLimit = 10_000,
) -> list[EventOut]:
    a, b = await readable_range(state, caller, hamlet_id, start, end)
    return await state.store.events(
        hamlet_id, start=a, end=b, device=device, name=name, limit=limit
    )


@router.get("/me", response_model=Me, summary="Who you are", responses=_err(401, 403))
async def me(caller: Caller) -> Me:
    if caller.user is None:
        raise deny(caller)
    u = caller.user
    return Me(name=u.name, role=str(u.role), commune=u.commune, hamlet=u.hamlet)
