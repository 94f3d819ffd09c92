"""Response and request models of the read and admin APIs (the ingest ones live in
:mod:`hamlet.contract`, shared with the gateway)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hamlet.contract import Ident
from hamlet.status_report import GatewayReport


class Resolution(StrEnum):
    AUTO = "auto"
    RAW = "raw"
    HOUR = "hour"
    DAY = "day"


class SeriesPoint(BaseModel):
    t: int = Field(description="ms since epoch (UTC); bucket start for rollups")
    v: float = Field(description="value, or mean over the bucket")
    min: float | None = None
    max: float | None = None
    n: int = Field(1, description="readings behind this point")
    q: int | None = Field(None, description="TimeQuality of a raw point")


class SeriesResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hamlet": "dinh-phuoc",
                    "device": "salinity-1",
                    "metric": "salinity",
                    "unit": "‰",
                    "resolution": "hour",
                    "start": 1764288000000,
                    "end": 1764374400000,
                    "truncated": False,
                    "points": [{"t": 1764288000000, "v": 0.81, "min": 0.7, "max": 0.9, "n": 60}],
                }
            ]
        }
    )

    hamlet: str
    device: str
    metric: str
    unit: str = ""
    resolution: Resolution
    start: int
    end: int
    truncated: bool = False
    points: list[SeriesPoint] = Field(default_factory=list)


class LatestValue(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hamlet": "dinh-phuoc",
                    "device": "salinity-1",
                    "metric": "salinity",
                    "t": 1764309540000,
                    "v": 0.85,
                    "q": 0,
                    "unit": "‰",
                    "label_vi": "Độ mặn",
                    "label_en": "Salinity",
                }
            ]
        }
    )

    hamlet: str
    device: str
    metric: str
    t: int
    v: float
    q: int = 0
    unit: str = ""
    label_vi: str = ""
    label_en: str = ""


class DeviceKind(StrEnum):
    SENSOR = "sensor"
    KIOSK = "kiosk"
    RADIO = "radio"
    WIFI = "wifi"


class DeviceIn(BaseModel):
    """A device to register (or an unconfirmed one to confirm) in a hamlet."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "salinity-1",
                    "kind": "sensor",
                    "name": "Cống ấp Định Phước",
                    "crop": "durian",
                    "expected_interval_s": 60,
                    "lat": 10.06,
                    "lon": 105.62,
                }
            ]
        },
    )

    id: Ident
    kind: DeviceKind = DeviceKind.SENSOR
    gateway: Ident | None = None
    name: str = Field("", max_length=200)
    crop: str | None = Field(None, max_length=64, description="crop, for salinity thresholds")
    service_hours: str | None = Field(
        None, max_length=200, examples=["Mon-Fri 07:00-11:30,13:30-17:00"]
    )
    expected_interval_s: int | None = Field(None, ge=1, le=7 * 86400)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class DeviceOut(BaseModel):
    hamlet: str
    id: str
    confirmed: bool = Field(description="registered; false = sent data but is not registered")
    kind: DeviceKind | None = None
    gateway: str | None = None
    name: str = ""
    crop: str | None = None
    service_hours: str | None = None
    expected_interval_s: int | None = None
    lat: float | None = None
    lon: float | None = None
    last_seen: int | None = Field(None, description="time of its latest reading, ms")
    metrics: list[str] = Field(default_factory=list)


class HamletOut(BaseModel):
    id: str
    commune: str | None = None
    name: str = ""
    public: bool = False


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Ident
    hamlet: Ident


class GatewayToken(BaseModel):
    id: str
    token: str = Field(description="shown once; the server keeps only its hash")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str = ""


class Me(BaseModel):
    name: str
    role: str
    commune: str | None = None
    hamlet: str | None = None


class RejectionOut(BaseModel):
    seq: int
    reason: str = Field(examples=["salinity=99 ‰ is outside the possible range 0..45"])
    at: int = Field(description="server time of the rejection, ms")


class GatewayStatusOut(BaseModel):
    """A gateway's latest status report (hamlet/status_report.py), as it sent it."""

    seq: int = Field(description="the report's seq: a newer report always has a higher one")
    at: int = Field(description="the gateway's time of the report, ms")
    received_ms: int = Field(description="server time it arrived, ms (late after an outage)")
    report: GatewayReport = Field(
        description="each source's state and last error, failed components, dead letters "
        "(their recent contents only for installers and admins)"
    )


class EventOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device": "kiosk-1",
                    "kind": "event",
                    "name": "rating",
                    "t": 1764309550000,
                    "q": 0,
                    "attrs": {"scale": 3, "score": 3},
                }
            ]
        }
    )

    device: str
    kind: str
    name: str
    t: int
    q: int = 0
    attrs: dict[str, str | int | float | bool] = Field(default_factory=dict)
