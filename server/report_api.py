"""Indicators, the monthly report card and CSV exports, for people.

Times are ISO 8601 in Vietnam time by default (epoch ms still accepted), with defaults a
person expects: today, this month. Access follows the read rules of the rest of the API: a
commune's figures need every hamlet of the commune to be readable (its staff, installers,
admins, or anyone when ``auth.open_read`` is on).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from hamlet.contract import IDENT_PATTERN
from server.api import (
    MAX_SERIES_LIMIT,
    HamletId,
    IdentQ,
    SeriesLimit,
    _err,
    now_ms,
    readable_range,
)
from server.deps import Caller, State, deny, readable, require_hamlet
from server.indicators import render
from server.indicators.card import ReportCard, build_card
from server.indicators.compute import Level, Period, gather, summarize
from server.indicators.config import Where, target_for
from server.indicators.definitions import BY_KEY, met
from server.indicators.source import ScopeError
from server.models import Resolution
from server.timeparam import TimeParamError, TimeQ, iso_local, parse_day, parse_month

router = APIRouter(prefix="/api/v1", tags=["indicators and reports"])

CommuneId = Annotated[str, Path(pattern=IDENT_PATTERN, examples=["dinh-mon"])]
MonthQ = Annotated[
    str | None,
    Query(max_length=7, description="YYYY-MM; default: this month", examples=["2026-03"]),
]
CSV_MEDIA: Final = "text/csv; charset=utf-8"
_CSV_RESPONSES: Final = {**_err(401, 403, 422), 200: {"content": {CSV_MEDIA: {}}}}


class IndicatorValue(BaseModel):
    indicator: str
    label_vi: str
    label_en: str
    unit: str
    hamlet: str | None = Field(None, description="None at commune level")
    device: str | None = Field(None, description="device or gateway; None above device level")
    day: date | None = Field(None, description="None for the whole period")
    value: float | None
    num: float
    den: float | None
    devices: int
    target: float | None = Field(None, description="the most specific configured target")
    met: bool | None = None


def _bad(err: Exception) -> HTTPException:
    return HTTPException(422, str(err))


async def _require_commune(state: State, caller: Caller, commune: str) -> list[str]:
    hamlets = await state.registry.hamlets_of_commune(commune)
    if not hamlets:
        raise HTTPException(
            404, f"no commune {commune!r} with hamlets; add one with 'hamlet server add-hamlet'"
        )
    allowed = await readable(state, caller)
    if allowed is not None and not set(hamlets) <= set(allowed):
        raise deny(caller)
    return hamlets


@router.get(
    "/indicators",
    response_model=list[IndicatorValue],
    summary="Indicators per device, hamlet or commune, per day or for the month",
    responses=_err(401, 403, 404, 422),
)
async def indicators(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    commune: Annotated[str | None, Query(pattern=IDENT_PATTERN)] = None,
    hamlet: Annotated[str | None, Query(pattern=IDENT_PATTERN)] = None,
    level: Level = Level.HAMLET,
    month: MonthQ = None,
    day: Annotated[
        str | None, Query(max_length=10, description="one day (YYYY-MM-DD) instead of a month")
    ] = None,
    by_day: Annotated[bool, Query(description="one value per day instead of per period")] = False,
) -> list[IndicatorValue]:
    now = now_ms()
    if (commune is None) == (hamlet is None):
        raise HTTPException(422, "pass exactly one of commune= or hamlet=")
    try:
        if day is not None:
            first = last = parse_day(day, now)
        else:
            first, last = parse_month(month, now)
    except TimeParamError as err:
        raise _bad(err) from err
    if commune is not None:
        await _require_commune(state, caller, commune)
    else:
        assert hamlet is not None
        await require_hamlet(state, caller, hamlet)
    try:
        scope, facts = await gather(
            state.store,
            state.config.indicators,
            commune=commune,
            hamlet=hamlet,
            period=Period(first, last),
            now_ms=now,
            daily=by_day,
        )
    except ScopeError as err:
        raise HTTPException(404, str(err)) from err
    out = []
    crops = {(d.hamlet, d.id): d.crop for d in scope.devices}
    cfg = state.config.indicators
    for v in summarize(facts, level, by_day=by_day):
        ind = BY_KEY[v.indicator]
        crop = crops.get((v.hamlet or "", v.device or ""))
        target = target_for(cfg, v.indicator, Where(scope.commune, v.hamlet, v.device, crop))
        out.append(
            IndicatorValue(
                indicator=v.indicator,
                label_vi=ind.vi,
                label_en=ind.en,
                unit=str(ind.unit),
                hamlet=v.hamlet,
                device=v.device,
                day=v.day,
                value=v.value,
                num=v.num,
                den=v.den,
                devices=v.devices,
                target=target,
                met=met(ind, v.value, target),
            )
        )
    return out


@router.get(
    "/communes/{commune_id}/report",
    response_model=ReportCard,
    summary="The commune's monthly report card (JSON, CSV, Excel or printable HTML)",
    responses={
        **_err(401, 403, 404, 422),
        200: {
            "content": {m: {} for m in render.MEDIA.values()},
            "description": "the card in the asked format",
        },
    },
)
async def report(
    state: State,
    caller: Caller,
    commune_id: CommuneId,
    month: MonthQ = None,
    format: Annotated[
        render.Format, Query(description="json, csv, xlsx or html")
    ] = render.Format.JSON,
) -> Response:
    now = now_ms()
    try:
        first, last = parse_month(month, now)
    except TimeParamError as err:
        raise _bad(err) from err
    if format == render.Format.TABLE:
        raise HTTPException(422, "format=table is for the command line; use json, csv, xlsx, html")
    await _require_commune(state, caller, commune_id)
    card = await build_card(
        state.store, state.config.indicators, commune_id, first, last, now_ms=now
    )
    name = f"report-{commune_id}-{card.month}"
    disp = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    if format == render.Format.CSV:
        return Response(render.to_csv(card), media_type=render.MEDIA[format], headers=disp)
    if format == render.Format.XLSX:
        return Response(render.to_xlsx(card), media_type=render.MEDIA[format], headers=disp)
    if format == render.Format.HTML:
        return Response(render.to_html(card), media_type=render.MEDIA[format])
    return Response(card.model_dump_json(), media_type=render.MEDIA[render.Format.JSON])


def _csv(rows: list[list[object]], header: list[str], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return Response(
        buf.getvalue(),
        media_type=CSV_MEDIA,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/hamlets/{hamlet_id}/readings.csv",
    summary="One series as CSV (Vietnam time and epoch ms columns)",
    response_class=Response,
    responses=_CSV_RESPONSES,
)
async def readings_csv(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    hamlet_id: HamletId,
    device: Annotated[str, Query(pattern=IDENT_PATTERN)],
    metric: Annotated[str, Query(pattern=IDENT_PATTERN)],
    start: TimeQ = None,
    end: TimeQ = None,
    resolution: Resolution = Resolution.RAW,
    limit: SeriesLimit = MAX_SERIES_LIMIT,
) -> Response:
    a, b = await readable_range(state, caller, hamlet_id, start, end)
    res = await state.store.series(
        hamlet_id, device, metric, start=a, end=b, resolution=resolution, limit=limit
    )
    rows: list[list[object]] = [
        [iso_local(p.t), p.t, p.v, p.min, p.max, p.n, p.q] for p in res.points
    ]
    return _csv(
        rows,
        ["time_vn", "t_ms", "value", "min", "max", "n", "time_quality"],
        f"{hamlet_id}-{device}-{metric}.csv",
    )


@router.get(
    "/hamlets/{hamlet_id}/events.csv",
    summary="Events of a hamlet as CSV (kiosk sessions, dossiers, ratings, broadcasts)",
    response_class=Response,
    responses=_CSV_RESPONSES,
)
async def events_csv(  # noqa: PLR0917 -- FastAPI passes them by name
    state: State,
    caller: Caller,
    hamlet_id: HamletId,
    start: TimeQ = None,
    end: TimeQ = None,
    device: IdentQ = None,
    name: IdentQ = None,
    limit: SeriesLimit = MAX_SERIES_LIMIT,
) -> Response:
    a, b = await readable_range(state, caller, hamlet_id, start, end)
    evs = await state.store.events(hamlet_id, start=a, end=b, device=device, name=name, limit=limit)
    rows: list[list[object]] = [
        [
            iso_local(e.t),
            e.t,
            e.device,
            e.kind,
            e.name,
            e.q,
            json.dumps(e.attrs, ensure_ascii=False),
        ]
        for e in evs
    ]
    return _csv(
        rows,
        ["time_vn", "t_ms", "device", "kind", "name", "time_quality", "attrs"],
        f"{hamlet_id}-events.csv",
    )
