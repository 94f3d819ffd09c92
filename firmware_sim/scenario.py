"""Scenario files (TOML) validated by pydantic at load: hamlets, devices, links and faults.

A scenario names *what* exists (hamlets with their river position, devices with a model,
a transport and firmware quirks); the command line says *where* (broker, pty paths).
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from firmware_sim.years import YearType
from hamlet.config import format_validation_error

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class ScenarioError(Exception):
    """A scenario that cannot be loaded; the message names the file and the problem."""


class Model(StrEnum):
    WATER_LEVEL = "water_level"
    SALINITY = "salinity"
    SOIL = "soil"
    FIELD_WATER = "field_water"
    WEATHER = "weather"
    KIOSK = "kiosk"
    RADIO = "radio"
    HOTSPOT = "hotspot"


SERVICE_MODELS = frozenset({Model.KIOSK, Model.RADIO, Model.HOTSPOT})


class Transport(StrEnum):
    MQTT = "mqtt"
    SERIAL = "serial"
    MODBUS = "modbus"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HamletSpec(_Strict):
    id: DeviceId
    name: str = ""
    distance_km: float = Field(80.0, ge=0, le=300, description="from the estuary mouth")
    tide_scale: float = Field(1.0, gt=0, le=3)
    flood_scale: float = Field(1.0, ge=0, le=3)
    salinity_scale: float = Field(1.0, ge=0, le=5)


class OutageSpec(_Strict):
    start: str = Field(description="ISO local datetime, or +SECONDS from the scenario start")
    end: str


class SerialFaults(_Strict):
    """Per-frame probabilities of line-level faults a noisy radio or UART produces."""

    corrupt: float = Field(0.0, ge=0, le=1, description="a payload byte changed, CRC kept")
    truncate: float = Field(0.0, ge=0, le=1, description="line cut short, no CRC/CRLF")
    bitflip: float = Field(0.0, ge=0, le=1, description="one random bit flipped anywhere")
    garbage: float = Field(0.0, ge=0, le=1, description="a burst of random bytes first")
    duplicate: float = Field(0.0, ge=0, le=1, description="the frame sent twice")
    reorder: float = Field(0.0, ge=0, le=1, description="held back and sent after the next")


class MqttFaults(_Strict):
    """Per-message probabilities of what flaky Wi-Fi firmware does on MQTT."""

    duplicate: float = Field(
        0.0, ge=0, le=1, description="a message published twice (same seq), as a retry"
    )


class ScheduledFault(_Strict):
    """A fault at a simulated offset (seconds after the start)."""

    at_s: float = Field(ge=0)
    kind: Literal["unplug", "dead_slave", "broker_drop", "clock_jump", "reboot"]
    target: str = Field("", description="device id or link name; empty = all")
    duration_s: float = Field(0.0, ge=0, description="unplug/dead/drop length")
    jump_s: float = Field(0.0, description="clock_jump size (negative = backwards)")


# Rates a sensor in a Mekong Delta field shows without anyone asking (our estimates,
# docs/simulator.md): conductivity probes foul in turbid water and are wiped fortnightly,
# a probe sticks now and then, a rare spike, and a few readings in a hundred never arrive.
REALISTIC_SENSOR_FAULTS: dict[str, float] = {
    "fouling_per_day": 0.015,
    "clean_every_days": 14.0,
    "stuck_per_month": 0.5,
    "stuck_hours": 6.0,
    "spikes": 0.0005,
    "dropouts": 0.02,
}


class SensorFaults(_Strict):
    """What goes wrong with a sensor itself (not its link): on demand or at realistic rates."""

    preset: Literal["none", "realistic"] = Field(
        "none", description="'realistic' fills every rate not given with field-typical ones"
    )
    fouling_per_day: float = Field(
        0.0, ge=0, le=0.2, description="conductivity readings lose this share a day"
    )
    clean_every_days: float = Field(14.0, gt=0, le=365, description="probe wiped clean")
    stuck_per_month: float = Field(0.0, ge=0, le=30, description="episodes of a frozen value")
    stuck_hours: float = Field(6.0, gt=0, le=240)
    spikes: float = Field(0.0, ge=0, le=1, description="probability a reading is a spike")
    spike_size: float = Field(4.0, gt=0, le=100, description="spike = v + size x max(|v|, 1)")
    dropouts: float = Field(0.0, ge=0, le=1, description="probability a reading is lost")
    dead_battery_at: str = Field(
        "", description="ISO local time or +SECONDS: the cell fails, the node dies a day later"
    )

    @field_validator("dead_battery_at")
    @classmethod
    def _when(cls, v: str) -> str:
        try:
            if v.startswith("+"):
                float(v[1:])
            elif v:
                datetime.fromisoformat(v)
        except ValueError as err:
            raise ValueError(f"{v!r}: use +SECONDS or an ISO local time") from err
        return v

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("preset") == "realistic":
            return {**REALISTIC_SENSOR_FAULTS, **data}
        return data

    @property
    def active(self) -> bool:
        return bool(
            self.fouling_per_day
            or self.stuck_per_month
            or self.spikes
            or self.dropouts
            or self.dead_battery_at
        )


class FaultSpec(_Strict):
    serial: SerialFaults = Field(default_factory=SerialFaults)
    sensor: SensorFaults = Field(
        default_factory=SensorFaults, description="for every sensor without its own"
    )
    mqtt: MqttFaults = Field(default_factory=MqttFaults)
    schedule: list[ScheduledFault] = Field(default_factory=list)


class CropSpec(_Strict):
    """One rice crop: sown on ``sow`` (MM-DD, every year), harvested ``days`` later."""

    name: str = ""
    sow: str = Field(pattern=r"^\d{2}-\d{2}$", examples=["12-05"])
    days: int = Field(95, ge=60, le=150)


class DeviceSpec(_Strict):
    id: DeviceId
    hamlet: str
    model: Model
    transport: Transport
    interval_s: float = Field(60.0, gt=0, le=86400)
    # MQTT
    flavour: Literal["json", "tasmota", "esphome"] = "json"
    # Modbus
    profile: str = ""
    address: int = Field(1, ge=1, le=247)
    link: str = Field("", description="serial or Modbus link name; empty = the first one")
    # Firmware
    has_clock: bool | None = None  # default: MQTT devices yes, serial nodes no
    drift_ppm: float = Field(0.0, ge=-10_000, le=10_000)
    reboots_per_day: float = Field(0.0, ge=0, le=100)
    battery: bool = False
    battery_sag_v_per_day: float = Field(0.0, ge=0, le=1)
    rssi_dbm: float = Field(-80.0, ge=-150, le=0)
    first_seq: int = Field(0, ge=0, lt=1 << 32)
    # Sensor specifics
    mm_per_tip: float = Field(0.2, ge=0.1, le=1.0)
    sensor_faults: SensorFaults | None = None
    crops: list[CropSpec] | None = Field(
        None, description="field_water: the rice crops of the year (default: three)"
    )
    # Kiosk specifics
    hours: Literal["office", "always"] = "office"
    people: int = Field(
        2000, ge=0, le=1_000_000, description="people the kiosk serves (hamlet ~2,000)"
    )
    sessions_per_person_year: float = Field(0.25, ge=0, le=20)
    sessions_per_hour: float | None = Field(
        None, ge=0, le=120, description="flat mean rate instead of people x sessions/person"
    )
    rating_share: float = Field(0.3, ge=0, le=1)
    online_share: float = Field(0.55, ge=0, le=1)
    assisted_share: float = Field(0.30, ge=0, le=1)
    rating_scale: Literal[3, 5] = 3
    satisfied_share: float = Field(0.95, ge=0, le=1)
    outages: list[OutageSpec] = Field(default_factory=list)
    random_outages_per_week: float = Field(0.0, ge=0, le=50)
    heartbeat_s: float = Field(60.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _transport_fits(self) -> DeviceSpec:
        if self.model in SERVICE_MODELS and self.transport != Transport.MQTT:
            raise ValueError(f"{self.model} devices speak MQTT, not {self.transport}")
        if self.transport == Transport.MODBUS and not self.profile:
            raise ValueError("a Modbus device needs a profile (see hamlet sim profiles)")
        if self.transport != Transport.MQTT and self.flavour != "json":
            raise ValueError("flavour applies to MQTT devices only")
        if self.flavour == "tasmota" and self.model != Model.WEATHER:
            raise ValueError("the Tasmota flavour is simulated for weather stations only")
        if self.flavour != "json" and self.model in SERVICE_MODELS:
            raise ValueError("kiosks, radios and hotspots speak the project JSON only")
        if self.online_share + self.assisted_share > 1.0:
            raise ValueError("online_share + assisted_share must be at most 1")
        if self.sensor_faults is not None:
            if self.model in SERVICE_MODELS:
                raise ValueError("sensor_faults apply to sensors, not kiosks, radios, hotspots")
            if self.sensor_faults.dead_battery_at and not self.battery:
                raise ValueError("dead_battery_at needs a battery node (battery = true)")
        if self.crops is not None and self.model != Model.FIELD_WATER:
            raise ValueError("crops apply to field_water devices only")
        return self

    @property
    def clock(self) -> bool:
        return self.has_clock if self.has_clock is not None else self.transport == "mqtt"


class LinkSpec(_Strict):
    name: str
    kind: Literal["serial", "modbus"]
    baudrate: int = 9600


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 1
    start: str = Field("now", description="'now' or ISO date/datetime (local time if naive)")
    year_type: YearType | Literal["auto"] = Field(
        "auto", description="ordinary | drought | record-flood, or auto: the seed draws"
    )
    topic_prefix: str = "hamlet"
    holidays: list[date] = Field(default_factory=list)
    hamlets: list[HamletSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(min_length=1)
    faults: FaultSpec = Field(default_factory=FaultSpec)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        from firmware_sim.profiles import PROFILES

        hamlets = {h.id for h in self.hamlets}
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
            if d.hamlet not in hamlets:
                raise ValueError(f"device {d.id!r}: unknown hamlet {d.hamlet!r}")
            if d.transport == Transport.MODBUS:
                if d.profile not in PROFILES:
                    raise ValueError(
                        f"device {d.id!r}: unknown profile {d.profile!r}; "
                        f"known: {', '.join(sorted(PROFILES))}"
                    )
                if not PROFILES[d.profile].fits(d.model):
                    raise ValueError(
                        f"device {d.id!r}: profile {d.profile!r} cannot carry a {d.model} model"
                    )
            if d.transport in (Transport.SERIAL, Transport.MODBUS):
                kind = d.transport.value
                names = [lk.name for lk in self.links if lk.kind == kind]
                if not names:
                    raise ValueError(f"device {d.id!r} needs a [[links]] entry of kind {kind!r}")
                if d.link and d.link not in names:
                    raise ValueError(f"device {d.id!r}: no {kind} link named {d.link!r}")
        for lk in self.links:
            if lk.kind != "modbus":
                continue
            addrs = [
                d.address
                for d in self.devices
                if d.transport == Transport.MODBUS and self.link_of(d) == lk.name
            ]
            if len(addrs) != len(set(addrs)):
                raise ValueError(f"Modbus link {lk.name!r} has two devices on one address")
        return self

    def first_link(self, kind: str) -> str:
        for lk in self.links:
            if lk.kind == kind:
                return lk.name
        return ""

    def link_of(self, d: DeviceSpec) -> str:
        return d.link or self.first_link(d.transport.value)

    def hamlet(self, hamlet_id: str) -> HamletSpec:
        return next(h for h in self.hamlets if h.id == hamlet_id)


def replicate(scn: Scenario, copies: int) -> Scenario:
    """The scenario with every MQTT and serial device ``copies`` times (``<id>-r<n>``).

    For load: many hamlets' devices on one broker or concentrator. Modbus devices are not
    copied (a bus has 247 addresses and polls them one at a time).
    """
    if copies <= 1:
        return scn
    extra = [
        d.model_copy(update={"id": f"{d.id}-r{n}"[:32]})
        for n in range(1, copies)
        for d in scn.devices
        if d.transport != Transport.MODBUS
    ]
    return Scenario.model_validate(
        {
            **scn.model_dump(),
            "devices": [*(d.model_dump() for d in scn.devices), *(d.model_dump() for d in extra)],
        }
    )


def builtin_dir() -> Path:
    return Path(str(resources.files("firmware_sim") / "scenarios"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A built-in scenario name (``demo``) or a path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    cand = builtin_dir() / f"{name_or_path}.toml"
    if not cand.exists():
        raise ScenarioError(
            f"no scenario {name_or_path!r}; built-in ones: {', '.join(builtin_names())} "
            f"(or give a path to a .toml file)"
        )
    return cand


def load_scenario(name_or_path: str) -> Scenario:
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ScenarioError(f"{path}: scenario file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from err
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(str(path), err)) from err
