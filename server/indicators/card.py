"""The commune's monthly report card: each indicator beside its target, trend and coverage."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Final

from pydantic import BaseModel, Field

from server.indicators.compute import Facts, HourlySource, Level, Period, gather, summarize
from server.indicators.config import IndicatorsConfig, Where, target_for
from server.indicators.definitions import INDICATORS, met
from server.timeparam import iso_local, previous_month

# What the coverage figure of each device class counts, in both languages.
BASIS: Final[dict[str, tuple[str, str]]] = {
    "kiosk_availability": ("phút phục vụ", "service minutes"),
    "hotspot_availability": ("phút phục vụ", "service minutes"),
    "radio_availability": ("buổi phát theo lịch", "scheduled broadcasts"),
    "dossiers_online": ("hồ sơ", "dossiers"),
    "satisfaction": ("lượt đánh giá", "ratings"),
    "sensor_completeness": ("bản tin dự kiến", "expected readings"),
    "stuck_hours": ("giờ", "hours"),
    "out_of_range_hours": ("giờ", "hours"),
    "gateway_alive": ("phút", "minutes"),
    "uplink_connectivity": ("phút", "minutes"),
    "freshness_p50_s": ("bản ghi", "records"),
    "freshness_p95_s": ("bản ghi", "records"),
    "salinity_hours_above": ("bản tin", "readings"),
    "water_hours_above_i": ("bản tin", "readings"),
    "water_hours_above_ii": ("bản tin", "readings"),
    "water_hours_above_iii": ("bản tin", "readings"),
}


class Coverage(BaseModel):
    basis: float = Field(description="how much data the value rests on")
    basis_vi: str
    basis_en: str
    devices_expected: int = Field(description="registered devices (or gateways) it covers")
    devices_reporting: int
    missing: list[str] = Field(
        default_factory=list, description="hamlet/device that sent nothing this month"
    )


class CardRow(BaseModel):
    indicator: str
    label_vi: str
    label_en: str
    unit: str
    value: float | None
    target: float | None
    better: str
    met: bool | None
    previous: float | None
    change: float | None
    source: str
    coverage: Coverage


class ReportCard(BaseModel):
    commune: str
    month: str = Field(examples=["2026-03"])
    first_day: date
    last_day: date
    generated_at: str = Field(description="Vietnam time; late data can change a re-run")
    hamlets: list[str]
    rows: list[CardRow]
    untrusted_time_readings: int = Field(
        0, description="readings whose clock was never synchronised (in no indicator)"
    )


def _commune_values(facts: Facts) -> dict[str, float | None]:
    return {v.indicator: v.value for v in summarize(facts, Level.COMMUNE, by_day=False)}


async def build_card(
    store: HourlySource,
    cfg: IndicatorsConfig,
    commune: str,
    first: date,
    last: date,
    *,
    now_ms: int,
) -> ReportCard:
    pfirst, plast = previous_month(first)
    # The two months are independent: let the reader threads work on both at once.
    (scope, facts), (_, prev) = await asyncio.gather(
        gather(store, cfg, commune=commune, period=Period(first, last), now_ms=now_ms, daily=False),
        gather(
            store, cfg, commune=commune, period=Period(pfirst, plast), now_ms=now_ms, daily=False
        ),
    )
    values = {v.indicator: v for v in summarize(facts, Level.COMMUNE, by_day=False)}
    before = _commune_values(prev)
    reporting: dict[str, set[tuple[str, str]]] = {}
    for c in facts.cells:
        reporting.setdefault(c.indicator, set()).add((c.hamlet, c.device))
    rows: list[CardRow] = []
    for ind in INDICATORS:
        v = values.get(ind.key)
        value = v.value if v else None
        expected = facts.expected.get(ind.devices, set())
        missing = sorted(f"{h}/{d}" for h, d in expected & facts.silent)
        target = target_for(cfg, ind.key, Where(commune, None))
        prev_v = before.get(ind.key)
        vi, en = BASIS[ind.key]
        heard = {k for k in reporting.get(ind.key, set()) if k not in facts.silent}
        rows.append(
            CardRow(
                indicator=ind.key,
                label_vi=ind.vi,
                label_en=ind.en,
                unit=str(ind.unit),
                value=value,
                target=target,
                better=str(ind.better),
                met=met(ind, value, target),
                previous=prev_v,
                change=value - prev_v if value is not None and prev_v is not None else None,
                source=ind.source,
                coverage=Coverage(
                    basis=v.basis if v else 0.0,
                    basis_vi=vi,
                    basis_en=en,
                    devices_expected=len(expected),
                    devices_reporting=len(heard & expected) if expected else len(heard),
                    missing=missing,
                ),
            )
        )
    return ReportCard(
        commune=commune,
        month=f"{first:%Y-%m}",
        first_day=first,
        last_day=last,
        generated_at=iso_local(now_ms),
        hamlets=scope.hamlets,
        rows=rows,
        untrusted_time_readings=sum(facts.unsynced.values()),
    )
