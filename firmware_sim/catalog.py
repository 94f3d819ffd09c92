"""What each device of a scenario says and where: for gateway configs and documentation."""

from __future__ import annotations

from typing import Any

from firmware_sim.profiles import PROFILES
from firmware_sim.scenario import Model, Scenario, Transport

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
            }
        )
    return rows
