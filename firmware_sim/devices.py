"""A simulated device: a physical or service model plus its firmware, as one unit.

Transports ask a device what it would say at simulated time ``t``; they never compute
physics themselves. Each device's behaviour depends on (scenario seed, device id) only.
"""

from __future__ import annotations

from datetime import date

from firmware_sim import physics
from firmware_sim.crop import DEFAULT_CROPS, crop_from
from firmware_sim.firmware import Firmware, FirmwareParams
from firmware_sim.noise import key_of
from firmware_sim.scenario import (
    SERVICE_MODELS,
    DeviceSpec,
    HamletSpec,
    Model,
    Scenario,
    SensorFaults,
)
from firmware_sim.sensorfaults import SensorFaultModel
from firmware_sim.services import HotspotModel, KioskModel, Outage, RadioModel, SimEvent
from firmware_sim.timebase import parse_start
from firmware_sim.years import YearType


def _offset_or_iso(value: str, start: float) -> float:
    if value.startswith("+"):
        return start + float(value[1:])
    return parse_start(value)


class Device:
    def __init__(
        self,
        spec: DeviceSpec,
        hamlet: HamletSpec,
        seed: int,
        start: float,
        holidays: frozenset[date] = frozenset(),
        *,
        year: YearType | None = None,
        sensor_faults: SensorFaults | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        dev_seed = seed ^ key_of(spec.id)
        self.site = physics.Site(
            seed=seed,  # one river per scenario: devices of a hamlet see the same water
            key=hamlet.id,
            distance_km=hamlet.distance_km,
            tide_scale=hamlet.tide_scale,
            flood_scale=hamlet.flood_scale,
            salinity_scale=hamlet.salinity_scale,
            year=year,
        )
        faults = spec.sensor_faults or sensor_faults
        self.faults = (
            SensorFaultModel(
                faults,
                dev_seed,
                spec.id,
                _offset_or_iso(faults.dead_battery_at, start)
                if faults.dead_battery_at and spec.battery
                else None,
            )
            if faults is not None and faults.active and spec.model not in SERVICE_MODELS
            else None
        )
        self.firmware = Firmware(
            seed,
            spec.id,
            FirmwareParams(
                has_clock=spec.clock,
                drift_ppm=spec.drift_ppm,
                reboots_per_day=spec.reboots_per_day,
                battery=spec.battery,
                battery_sag_v_per_day=spec.battery_sag_v_per_day,
                rssi_dbm=spec.rssi_dbm,
                first_seq=spec.first_seq,
            ),
            start,
        )
        self.soil = (
            physics.SoilModel(
                physics.Site(dev_seed, spec.id, hamlet.distance_km, year=year, years_seed=seed)
            )
            if spec.model == Model.SOIL
            else None
        )
        crops = (
            tuple(crop_from(c.sow, c.days, c.name) for c in spec.crops)
            if spec.crops is not None
            else DEFAULT_CROPS
        )
        self.field = (
            physics.FieldWaterModel(
                physics.Site(dev_seed, spec.id, year=year, years_seed=seed), crops
            )
            if spec.model == Model.FIELD_WATER
            else None
        )
        self.bucket = (
            physics.TippingBucket(self.site, spec.mm_per_tip)
            if spec.model == Model.WEATHER
            else None
        )
        self.kiosk = (
            KioskModel(
                seed=dev_seed,
                key=spec.id,
                hours=spec.hours,
                people=spec.people,
                sessions_per_person_year=spec.sessions_per_person_year,
                sessions_per_hour=spec.sessions_per_hour,
                rating_share=spec.rating_share,
                online_share=spec.online_share,
                assisted_share=spec.assisted_share,
                rating_scale=spec.rating_scale,
                satisfied_share=spec.satisfied_share,
                outages=[
                    Outage(_offset_or_iso(o.start, start), _offset_or_iso(o.end, start))
                    for o in spec.outages
                ],
                random_outages_per_week=spec.random_outages_per_week,
                holidays=holidays,
            )
            if spec.model == Model.KIOSK
            else None
        )
        self.radio = RadioModel(dev_seed, spec.id) if spec.model == Model.RADIO else None
        self.hotspot = HotspotModel(dev_seed, spec.id) if spec.model == Model.HOTSPOT else None

    @property
    def is_service(self) -> bool:
        return self.spec.model in (Model.KIOSK, Model.RADIO, Model.HOTSPOT)

    def sample(self, t: float) -> dict[str, float]:
        """Canonical readings at ``t`` (``t`` must not go backwards for stateful models)."""
        s = self.site
        m = self.spec.model
        out: dict[str, float]
        if m == Model.WATER_LEVEL:
            out = {"water_level": round(physics.water_level(t, s), 3)}
        elif m == Model.SALINITY:
            sal = physics.salinity(t, s)
            out = {
                "salinity": round(sal, 2),
                "ec": round(physics.ec_from_salinity(sal), 3),
                "water_temp": round(physics.water_temp(t, s), 1),
            }
        elif m == Model.SOIL and self.soil is not None:
            out = self.soil.sample(t)
        elif m == Model.FIELD_WATER and self.field is not None:
            out = self.field.sample(t)
        elif m == Model.WEATHER and self.bucket is not None:
            out = {
                "air_temp": round(physics.air_temp(t, s), 1),
                "humidity": round(physics.humidity(t, s), 1),
                "rain": self.bucket.read(t),
            }
        else:
            out = {}
        if self.spec.battery:
            out["battery"] = self.battery(t)
            out["rssi"] = self.firmware.rssi(t)
        if self.faults is not None:
            out = self.faults.apply(t, out)
        return out

    def battery(self, t: float) -> float:
        v = self.firmware.battery(t)
        return self.faults.battery(t, v) if self.faults is not None else v

    def heartbeat(self, t: float) -> dict[str, float]:
        hb: dict[str, float] = {"uptime": self.firmware.uptime(t), "rssi": self.firmware.rssi(t)}
        if self.spec.battery:
            hb["battery"] = self.battery(t)
        if self.hotspot is not None:
            hb["clients"] = float(self.hotspot.clients(t))
        return hb

    def events_between(self, t0: float, t1: float) -> list[SimEvent]:
        if self.kiosk is not None:
            return self.kiosk.events_between(t0, t1)
        if self.radio is not None:
            return self.radio.events_between(t0, t1)
        return []

    def powered(self, t: float) -> bool:
        if self.kiosk is not None:
            return self.kiosk.powered(t)
        return not (self.faults is not None and self.faults.dead(t))


def build_devices(scn: Scenario, start: float) -> list[Device]:
    holidays = frozenset(scn.holidays)
    year = None if scn.year_type == "auto" else YearType(scn.year_type)
    return [
        Device(
            d,
            scn.hamlet(d.hamlet),
            scn.seed,
            start,
            holidays,
            year=year,
            sensor_faults=scn.faults.sensor,
        )
        for d in scn.devices
    ]
