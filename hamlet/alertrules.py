"""Alert rules as plain data: what fires, at which threshold, with which hysteresis and delay.

Pydantic and the standard library only, so the gateway can read the same rules the server
evaluates (alerts from the edge, later). The server's ``[alerts]`` config section is an
:class:`AlertSettings`; every threshold a rule uses is found by one function,
:func:`resolve`, so the lookup (defaults → station → declarative overrides per commune,
hamlet, device and crop) lives in one place.

Semantics every evaluator follows (docs/server.md, "Alerts"):

- An *episode* starts at the first reading beyond the threshold and lasts while readings stay
  beyond the clear level (threshold moved back by ``clear_band``: the hysteresis); it ends at
  the first reading past the clear level. Dips inside the band do not end it.
- An episode becomes an alert only if it lasts at least ``min_duration_s`` (reading time).
- One open alert per rule × subject; an alert's start, end and peak are readings' times.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from hamlet.contract import Ident
from hamlet.thresholds import AWD_REIRRIGATE_M, CAN_THO_ALARMS, crop_salinity


class Severity(StrEnum):
    WATCH = "watch"  # get ready
    WARNING = "warning"  # act soon / equipment needs a visit
    DANGER = "danger"  # harm now


class RuleKind(StrEnum):
    THRESHOLD = "threshold"  # a value beyond a line (salinity, water level, AWD)
    STUCK = "stuck"  # the same value for too long
    STALE = "stale"  # a sensor sent nothing for k × its interval
    DOWN = "down"  # a kiosk / service device silent within its service hours
    SILENT = "silent"  # a gateway the server has not heard from


Op = Literal[">", ">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class RuleDef:
    """One rule of the catalogue; thresholds are defaults that :func:`resolve` refines."""

    id: str
    kind: RuleKind
    severity: Severity
    metric: str | None = None  # the metric a value rule watches
    op: Op = ">"
    vi: str = ""
    en: str = ""


RULES: Final[dict[str, RuleDef]] = {
    r.id: r
    for r in (
        RuleDef("salinity.watch", RuleKind.THRESHOLD, Severity.WATCH, "salinity", ">",
                "Độ mặn gần ngưỡng", "Salinity near the limit"),
        RuleDef("salinity.danger", RuleKind.THRESHOLD, Severity.DANGER, "salinity", ">",
                "Độ mặn vượt ngưỡng", "Salinity above the limit"),
        RuleDef("water_level.i", RuleKind.THRESHOLD, Severity.WATCH, "water_level", ">=",
                "Mực nước báo động I", "Water level alarm I"),
        RuleDef("water_level.ii", RuleKind.THRESHOLD, Severity.WARNING, "water_level", ">=",
                "Mực nước báo động II", "Water level alarm II"),
        RuleDef("water_level.iii", RuleKind.THRESHOLD, Severity.DANGER, "water_level", ">=",
                "Mực nước báo động III", "Water level alarm III"),
        RuleDef("field_water.awd", RuleKind.THRESHOLD, Severity.WATCH, "field_water", "<=",
                "Ruộng cần bơm nước lại", "Field needs re-irrigation"),
        RuleDef("sensor.stuck", RuleKind.STUCK, Severity.WARNING, None, ">=",
                "Cảm biến bị kẹt số", "Sensor stuck"),
        RuleDef("sensor.stale", RuleKind.STALE, Severity.WARNING, None, ">=",
                "Cảm biến không gửi số liệu", "Sensor sends no data"),
        RuleDef("device.down", RuleKind.DOWN, Severity.WARNING, None, ">=",
                "Thiết bị dịch vụ ngừng hoạt động", "Service device down"),
        RuleDef("gateway.silent", RuleKind.SILENT, Severity.DANGER, None, ">=",
                "Gateway mất liên lạc", "Gateway silent"),
    )
}  # fmt: skip

# Metrics a stuck check makes sense for: physics that always moves a little. Rain (zero for
# weeks in the dry season), counters and health figures are left out.
STUCK_METRICS: Final = frozenset(
    {
        "salinity", "water_level", "ec", "water_temp", "field_water", "soil_moisture",
        "soil_temp", "soil_ec", "soil_ph", "air_temp", "humidity", "pressure",
    }
)  # fmt: skip
SERVICE_KINDS: Final = frozenset({"kiosk", "radio", "wifi"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Params(_Model):
    """What one rule needs for one subject, after every override is applied."""

    enabled: bool = True
    threshold: float = 0.0
    clear_band: float = Field(0.0, ge=0, description="hysteresis: distance back to clear")
    min_duration_s: float = Field(0.0, ge=0)
    label_vi: str = ""  # what the threshold is: "sầu riêng", "báo động III"
    label_en: str = ""


class Station(_Model):
    """A water-level station's alarm levels (m), with their source."""

    hamlet: Ident
    device: Ident | None = None  # None: every water-level device of the hamlet
    level_i: float
    level_ii: float
    level_iii: float
    source: str = ""


class Override(_Model):
    """One row of the override table: the most specific matching row wins, field by field.

    Specificity: device (8) > hamlet (4) > commune (2) > crop (1), summed; a later row wins a
    tie. ``rule`` may name one rule or a family (``"salinity"`` matches ``salinity.*``).
    """

    rule: str
    commune: Ident | None = None
    hamlet: Ident | None = None
    device: Ident | None = None
    crop: str | None = None
    enabled: bool | None = None
    threshold: float | None = None
    clear_band: float | None = Field(None, ge=0)
    min_duration_s: float | None = Field(None, ge=0)

    def matches(self, rule: str, s: Subject) -> bool:
        if self.rule not in (rule, rule.split(".", maxsplit=1)[0]):
            return False
        for want, have in (
            (self.commune, s.commune),
            (self.hamlet, s.hamlet),
            (self.device, s.device),
            (self.crop, (s.crop or "").lower() or None),
        ):
            if want is not None and want.lower() != (have or "").lower():
                return False
        return True

    @property
    def specificity(self) -> int:
        return (
            8 * (self.device is not None)
            + 4 * (self.hamlet is not None)
            + 2 * (self.commune is not None)
            + (self.crop is not None)
        )


class AlertSettings(_Model):
    """The ``[alerts]`` section of the server config (and, later, what a gateway receives)."""

    enabled: bool = True
    salinity_clear_band_ppt: float = Field(0.1, ge=0)
    salinity_min_duration_s: float = Field(600, ge=0)
    water_level_clear_band_m: float = Field(0.05, ge=0)
    water_level_min_duration_s: float = Field(600, ge=0)
    awd_clear_band_m: float = Field(0.03, ge=0)
    awd_min_duration_s: float = Field(1800, ge=0)
    stuck_after_s: float = Field(6 * 3600, gt=0, description="same value this long = stuck")
    stuck_tolerance: float = Field(1e-9, ge=0)
    stale_intervals: float = Field(3.0, ge=1, description="k: stale after k × interval")
    default_interval_s: float = Field(300, gt=0, description="for sensors registered without")
    down_after_service_s: float = Field(600, gt=0, description="silent service time = down")
    gateway_silent_s: float = Field(900, gt=0)
    stations: list[Station] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    # Re-evaluating a late batch looks back at most this far for the state before it.
    max_lookback_s: float = Field(31 * 86400, gt=0)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a rule is evaluated for, with what the lookup needs to know about it."""

    hamlet: str
    device: str
    metric: str = ""
    commune: str | None = None
    crop: str | None = None
    kind: str | None = None  # registered device kind; None = unregistered
    interval_s: float | None = None
    service_hours: str | None = None


def _station(settings: AlertSettings, s: Subject) -> Station:
    best: Station | None = None
    for st in settings.stations:
        fits = st.hamlet == s.hamlet and st.device in (None, s.device)
        if fits and (best is None or (st.device is not None and best.device is None)):
            best = st
    if best is not None:
        return best
    a = CAN_THO_ALARMS
    return Station(
        hamlet=s.hamlet,
        level_i=a.level_i,
        level_ii=a.level_ii,
        level_iii=a.level_iii,
        source=a.source,
    )


def _defaults(settings: AlertSettings, rule: RuleDef, s: Subject) -> Params:
    st = settings
    if rule.id.startswith("salinity."):
        c = crop_salinity(s.crop)
        return Params(
            threshold=c.watch_ppt if rule.id == "salinity.watch" else c.danger_ppt,
            clear_band=st.salinity_clear_band_ppt,
            min_duration_s=st.salinity_min_duration_s,
            label_vi=c.vi,
            label_en=c.en,
        )
    if rule.id.startswith("water_level."):
        station = _station(settings, s)
        level = rule.id.rsplit(".", 1)[1]
        return Params(
            threshold=getattr(station, f"level_{level}"),
            clear_band=st.water_level_clear_band_m,
            min_duration_s=st.water_level_min_duration_s,
            label_vi=f"báo động {level.upper()}",
            label_en=f"alarm level {level.upper()}",
        )
    if rule.id == "field_water.awd":
        return Params(
            threshold=AWD_REIRRIGATE_M,
            clear_band=st.awd_clear_band_m,
            min_duration_s=st.awd_min_duration_s,
            label_vi="mức tưới lại",
            label_en="re-irrigation mark",
        )
    if rule.id == "sensor.stuck":
        return Params(
            enabled=s.metric in STUCK_METRICS,
            clear_band=st.stuck_tolerance,
            min_duration_s=st.stuck_after_s,
        )
    if rule.id == "sensor.stale":
        interval = s.interval_s or st.default_interval_s
        # Only registered sensors have an expected interval worth holding them to.
        return Params(
            enabled=s.kind == "sensor",
            threshold=interval,
            min_duration_s=st.stale_intervals * interval,
        )
    if rule.id == "device.down":
        return Params(enabled=s.kind in SERVICE_KINDS, min_duration_s=st.down_after_service_s)
    return Params(min_duration_s=st.gateway_silent_s)


def resolve(settings: AlertSettings, rule_id: str, subject: Subject) -> Params:
    """The parameters of ``rule_id`` for ``subject``: the one place thresholds are looked up."""
    rule = RULES[rule_id]
    p = _defaults(settings, rule, subject)
    if not settings.enabled:
        return p.model_copy(update={"enabled": False})
    rows = [o for o in settings.overrides if o.matches(rule_id, subject)]
    for o in sorted(rows, key=lambda o: o.specificity):  # stable: later rows win ties
        upd = {
            k: v
            for k, v in (
                ("enabled", o.enabled),
                ("threshold", o.threshold),
                ("clear_band", o.clear_band),
                ("min_duration_s", o.min_duration_s),
            )
            if v is not None
        }
        p = p.model_copy(update=upd)
    return p


def rules_for_metric(metric: str) -> list[RuleDef]:
    """Value rules that watch ``metric`` (threshold rules, and the stuck check)."""
    out = [r for r in RULES.values() if r.kind == RuleKind.THRESHOLD and r.metric == metric]
    if metric in STUCK_METRICS:
        out.append(RULES["sensor.stuck"])
    return out
