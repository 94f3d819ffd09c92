"""What a farmer's page shows: each reading judged against the field's crop, worst first.

Pure functions over the store's rows (latest values, registered devices), so the pages and
their tests share one notion of "danger for rice" with the alerts (hamlet/thresholds.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from hamlet import thresholds
from hamlet.contract import TimeQuality
from hamlet.metrics import GATEWAY_METRIC_PREFIX
from hamlet.thresholds import Status
from server.i18n import Lang, advice
from server.models import DeviceKind, DeviceOut, LatestValue

# The readings that matter to a farmer, in the order a farmer looks for them.
PRIMARY: Final = (
    "water_level",
    "salinity",
    "field_water",
    "soil_moisture",
    "soil_ec",
    "soil_ph",
    "soil_temp",
    "soil_n",
    "soil_p",
    "soil_k",
    "rain",
    "air_temp",
    "humidity",
    "wind_speed",
    "pressure",
    "ec",
    "tds",
    "water_temp",
)
# Figures an installer needs and a farmer does not: folded away.
TECHNICAL: Final = frozenset({"battery", "rssi", "uptime", "heartbeat", "clients"})
SERVICE_KINDS: Final = frozenset({DeviceKind.KIOSK, DeviceKind.RADIO, DeviceKind.WIFI})
_RANK: Final = {Status.DANGER: 0, Status.WATCH: 1, Status.SAFE: 2, Status.UNKNOWN: 3}
DEFAULT_STALE_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    label: str
    v: float
    unit: str
    t: int
    status: Status
    advice: str
    stale: bool
    unsynced: bool


@dataclass(slots=True)
class DeviceCard:
    id: str
    name: str
    kind: str | None
    crop: str | None
    crop_name: str
    confirmed: bool
    last_seen: int | None
    stale_ms: int
    now: int
    readings: list[Reading] = field(default_factory=list)
    technical: list[Reading] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """The worst status of its readings (unknown when none can be judged)."""
        judged = [r.status for r in self.readings if r.status != Status.UNKNOWN]
        return min(judged, key=_RANK.__getitem__) if judged else Status.UNKNOWN

    @property
    def online(self) -> bool:
        return self.last_seen is not None and not self.is_stale(self.last_seen, self.now)

    def is_stale(self, t: int, now: int) -> bool:
        return now - t > self.stale_ms


def judge(metric: str, v: float, crop: str | None) -> Status:
    """A reading's status for the field's crop; metrics with no threshold are unknown."""
    if metric == "salinity":
        return thresholds.salinity_status(v, crop)
    if metric == "water_level":
        return thresholds.water_level_status(v)
    if metric == "field_water":
        return thresholds.field_water_status(v)
    return Status.UNKNOWN


def limits(crop: str | None) -> dict[str, tuple[float, float]]:
    """(watch, danger) lines for the trend charts of a field with ``crop``."""
    c = thresholds.crop_salinity(crop)
    a = thresholds.CAN_THO_ALARMS
    aw = thresholds.AWD_REIRRIGATE_M
    return {
        "salinity": (c.watch_ppt, c.danger_ppt),
        "water_level": (a.level_i, a.level_ii),
        "field_water": (aw / 2, aw),
    }


def _order(metric: str) -> int:
    return PRIMARY.index(metric) if metric in PRIMARY else len(PRIMARY)


def cards(
    devices: Iterable[DeviceOut],
    latest: Iterable[LatestValue],
    *,
    hamlet: str,
    lang: Lang,
    now: int,
    stale_intervals: float,
    gateways: frozenset[str] = frozenset(),
) -> list[DeviceCard]:
    """One card per device of ``hamlet`` (registered or not, with data or not), worst first."""
    by_id: dict[str, DeviceCard] = {}
    for d in devices:
        if d.hamlet != hamlet or d.id in gateways:
            continue
        c = thresholds.crop_salinity(d.crop)
        stale = (
            int(d.expected_interval_s * 1000 * stale_intervals)
            if d.expected_interval_s
            else DEFAULT_STALE_MS
        )
        by_id[d.id] = DeviceCard(
            id=d.id,
            name=d.name or d.id,
            kind=str(d.kind) if d.kind else None,
            crop=d.crop,
            crop_name=c.vi if lang == "vi" else c.en,
            confirmed=d.confirmed,
            last_seen=d.last_seen,
            stale_ms=max(stale, 60_000),
            now=now,
        )
    for v in latest:
        if v.hamlet != hamlet or v.metric.startswith(GATEWAY_METRIC_PREFIX):
            continue
        card = by_id.get(v.device)
        if card is None:
            continue
        stale = card.is_stale(v.t, now)
        status = Status.UNKNOWN if stale else judge(v.metric, v.v, card.crop)
        r = Reading(
            metric=v.metric,
            label=v.label_vi if lang == "vi" else v.label_en,
            v=v.v,
            unit=v.unit,
            t=v.t,
            status=status,
            advice="" if stale else advice(v.metric, str(status), card.crop_name, lang),
            stale=stale,
            unsynced=v.q == int(TimeQuality.UNSYNCED),
        )
        (card.technical if v.metric in TECHNICAL else card.readings).append(r)
    for card in by_id.values():
        card.readings.sort(key=lambda r: (_order(r.metric), r.metric))
        card.technical.sort(key=lambda r: r.metric)
    return sorted(
        by_id.values(),
        key=lambda c: (
            _RANK[c.status],
            min((_order(r.metric) for r in c.readings), default=len(PRIMARY) + 1),
            c.name,
        ),
    )


def split(all_cards: list[DeviceCard]) -> tuple[list[DeviceCard], list[DeviceCard]]:
    """(field sensors, kiosks and other services)."""
    services = [c for c in all_cards if c.kind in SERVICE_KINDS]
    return [c for c in all_cards if c.kind not in SERVICE_KINDS], services
