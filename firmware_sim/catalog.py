"""What each device of a scenario says and where: for gateway configs and documentation."""

from __future__ import annotations

from typing import Any

from firmware_sim.crop import DEFAULT_CROPS
from firmware_sim.profiles import PROFILES
from firmware_sim.scenario import SERVICE_MODELS, DeviceSpec, Model, Scenario, Transport
from firmware_sim.services import SERVICE_HOURS_PER_DAY, KioskModel, RadioModel
from hamlet.vncalendar import DEFAULT_SERVICE_HOURS

METRICS_OF: dict[Model, tuple[str, ...]] = {
    Model.WATER_LEVEL: ("water_level",),
    Model.SALINITY: ("salinity", "ec", "water_temp"),
    Model.SOIL: ("soil_moisture", "soil_temp", "soil_ec", "soil_ph", "soil_n", "soil_p", "soil_k"),
    Model.FIELD_WATER: ("field_water",),
    Model.WEATHER: ("air_temp", "humidity", "rain"),
    Model.KIOSK: ("uptime", "rssi"),
    Model.RADIO: ("uptime", "rssi"),
    Model.HOTSPOT: ("uptime", "rssi", "clients"),
}

EVENTS_OF: dict[Model, tuple[str, ...]] = {
    Model.KIOSK: ("session_start", "lookup", "dossier_submitted", "rating", "session_end"),
    Model.RADIO: ("broadcast",),
}


def describe_devices(scn: Scenario) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for d in scn.devices:
        metrics = list(METRICS_OF[d.model])
        where = ""
        if d.transport == Transport.MODBUS:
            p = PROFILES[d.profile]
            metrics = [r.metric for r in p.registers]
            where = f"{scn.link_of(d)} addr {d.address} ({d.address:#04x}) profile {d.profile}"
        elif d.transport == Transport.SERIAL:
            where = f"{scn.link_of(d)} node {d.id}"
        elif d.flavour == "tasmota":
            where = f"tele/{d.id}/SENSOR"
        elif d.flavour == "esphome":
            where = f"{d.id}/sensor/<metric>/state"
        else:
            where = f"{scn.topic_prefix}/{d.id}/..."
        if d.battery and d.transport != Transport.MODBUS and d.model not in EVENTS_OF:
            metrics += ["battery", "rssi"]
        rows.append(
            {
                "id": d.id,
                "hamlet": d.hamlet,
                "model": d.model.value,
                "transport": d.transport.value,
                "flavour": d.flavour if d.transport == Transport.MQTT else None,
                "where": where,
                "link": scn.link_of(d) or None,
                "profile": d.profile or None,
                "address": d.address if d.transport == Transport.MODBUS else None,
                "interval_s": d.interval_s,
                "clock": d.clock,
                "metrics": metrics,
                "events": list(EVENTS_OF.get(d.model, ())),
                "year_type": scn.year_type,
                "heartbeat_s": d.heartbeat_s if d.model in SERVICE_MODELS else None,
                **_service(d),
                **_sensor(scn, d),
            }
        )
    return rows


def _service(d: DeviceSpec) -> dict[str, Any]:
    """Service hours, session rates and rating scales of a kiosk; schedules of a radio."""
    if d.model == Model.KIOSK:
        k = KioskModel(
            seed=0,
            key=d.id,
            hours=d.hours,
            people=d.people,
            sessions_per_person_year=d.sessions_per_person_year,
            sessions_per_hour=d.sessions_per_hour,
        )
        always = d.hours == "always"
        return {
            "service_hours": "Mon-Sun 00:00-24:00; holidays" if always else DEFAULT_SERVICE_HOURS,
            "people": d.people,
            "sessions_per_hour": round(k.mean_per_hour, 3),
            "sessions_per_day": round(
                k.mean_per_hour * (24 if always else SERVICE_HOURS_PER_DAY), 2
            ),
            "dossier_share": k.dossier_share,
            "online_share": d.online_share,
            "assisted_share": d.assisted_share,
            "rating_scale": d.rating_scale,
            "rating_share": d.rating_share,
            "satisfied_share": d.satisfied_share,
            "random_outages_per_week": d.random_outages_per_week,
        }
    if d.model == Model.RADIO:
        sched = RadioModel(seed=0, key=d.id).schedule
        return {
            "service_hours": "Mon-Sun 00:00-24:00; holidays",
            "broadcasts": [{"hour": h, "program": p, "minutes": m} for h, p, m in sched],
        }
    if d.model == Model.HOTSPOT:
        return {"service_hours": "Mon-Sun 00:00-24:00; holidays"}
    return {}


def _sensor(scn: Scenario, d: DeviceSpec) -> dict[str, Any]:
    if d.model in SERVICE_MODELS:
        return {}
    faults = d.sensor_faults or scn.faults.sensor
    out: dict[str, Any] = {
        "sensor_faults": faults.model_dump(exclude_defaults=True) if faults.active else None
    }
    if d.model == Model.FIELD_WATER:
        out["crops"] = (
            [c.model_dump() for c in d.crops]
            if d.crops is not None
            else [{"name": c.name, "sow_doy": c.sow_doy, "days": c.days} for c in DEFAULT_CROPS]
        )
    return out
