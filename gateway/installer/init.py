"""``hamlet gateway init``: write a valid gateway config from flags or answers to prompts."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.config import GatewayConfig, load_gateway_config
from gateway.installer.tomlwrite import dumps
from gateway.profiles import BUILTIN_PROFILES
from hamlet.config import ConfigError

_DEVICE_SPEC: Final = re.compile(
    r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}):(?P<profile>[a-z0-9][a-z0-9_.\-]*)"
    r"(?::(?P<address>\d{1,3}))?(?::(?P<interval>\d+(?:\.\d+)?))?$"
)


class InitError(Exception):
    """Why a config could not be written, in words an installer can act on."""


@dataclass
class ModbusDeviceSpec:
    id: str
    profile: str
    address: int
    interval_s: float

    @classmethod
    def parse(cls, spec: str) -> ModbusDeviceSpec:
        """``id:profile[:address[:interval_s]]``, e.g. ``soil-1:soil-npk-7in1:1:300``."""
        m = _DEVICE_SPEC.match(spec.strip())
        if m is None:
            raise InitError(
                f"modbus device {spec!r}: write it as id:profile[:address[:interval_s]], "
                "e.g. soil-1:soil-npk-7in1:1:300"
            )
        profile = m["profile"]
        known = BUILTIN_PROFILES.get(profile)
        if known is None:
            raise InitError(
                f"modbus device {spec!r}: unknown profile {profile!r}; built-in profiles: "
                f"{', '.join(sorted(BUILTIN_PROFILES))}"
            )
        address = int(m["address"]) if m["address"] else known.default_address
        interval = float(m["interval"]) if m["interval"] else 60.0
        return cls(m["id"], profile, address, interval)


@dataclass
class InitAnswers:
    gateway_id: str
    server_url: str
    token: str
    hamlet: str | None = None
    data_dir: Path = Path("/var/lib/hamlet")
    serial_ports: list[str] = field(default_factory=list)
    serial_baudrate: int = 115200
    modbus_port: str | None = None
    modbus_baudrate: int = 9600
    modbus_devices: list[ModbusDeviceSpec] = field(default_factory=list)
    mqtt_host: str | None = "127.0.0.1"
    mqtt_port: int = 1883
    # Settings no question covers (heartbeat_interval_s, [clock], [buffer], ...): top-level
    # keys and tables written as given, validated with the rest.
    settings: Mapping[str, Any] = field(default_factory=dict)


def build_config(a: InitAnswers) -> dict[str, Any]:
    data: dict[str, Any] = {"id": a.gateway_id}
    if a.hamlet:
        data["hamlet"] = a.hamlet
    data["data_dir"] = str(a.data_dir)
    data["uplink"] = {"url": a.server_url, "token": a.token}
    sources: dict[str, Any] = {}
    if a.serial_ports:
        sources["serial"] = [
            {
                "name": "serial" if i == 0 else f"serial-{i + 1}",
                "port": p,
                "baudrate": a.serial_baudrate,
            }
            for i, p in enumerate(a.serial_ports)
        ]
    if a.modbus_devices and a.modbus_port is None:
        raise InitError("modbus devices given without --modbus-port (the RS485 adapter)")
    if a.modbus_port is not None:
        sources["modbus"] = [
            {
                "name": "modbus",
                "port": a.modbus_port,
                "baudrate": a.modbus_baudrate,
                "devices": [
                    {
                        "id": d.id,
                        "profile": d.profile,
                        "address": d.address,
                        "interval_s": d.interval_s,
                    }
                    for d in a.modbus_devices
                ],
            }
        ]
    if a.mqtt_host:
        sources["mqtt"] = [
            {
                "name": "mqtt",
                "host": a.mqtt_host,
                "port": a.mqtt_port,
                "client_id": f"hamlet-{a.gateway_id}"[:64],
                "preset": "hamlet",
            }
        ]
    data["sources"] = sources
    clash = sorted(set(a.settings) & set(data))
    if clash:
        raise InitError(
            f"settings {', '.join(clash)} are written from the answers; give them there"
        )
    return {**data, **a.settings}


_COMMENTS: Final = {
    "uplink": "Server and this gateway's token (secret) / Máy chủ và mã bí mật của gateway",
    "sources.serial": "LoRa/UART concentrator, serial line protocol / Bộ tập trung LoRa",
    "sources.modbus": "RS485 Modbus RTU bus / Bus RS485 Modbus RTU",
    "sources.modbus.devices": "One sensor on the bus / Một cảm biến trên bus",
    "sources.mqtt": "Local MQTT broker (ESP32 nodes, kiosks) / Broker MQTT trên Pi",
}


def write_config(
    path: Path, answers: InitAnswers, *, force: bool, by: str = "hamlet gateway init"
) -> GatewayConfig:
    """Write the config, load it back through the real loader, and return it.

    ``by`` names the command that wrote it, in the file's first lines.

    Refuses to overwrite an existing file unless ``force``. The file holds the token, so it
    is created 0600 (the gateway's own user reads it).
    """
    if path.exists() and not force:
        raise InitError(
            f"{path} already exists; use --force to replace it "
            f"(tệp đã tồn tại; dùng --force để ghi đè)"
        )
    text = (
        f"# Written by `{by}`. Check it with `hamlet gateway doctor`.\n"
        f"# Tạo bởi `{by}`. Kiểm tra bằng `hamlet gateway doctor`.\n\n"
        + dumps(build_config(answers), _COMMENTS)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        cfg = load_gateway_config(tmp)
    except ConfigError as err:
        tmp.unlink()
        raise InitError(f"the answers do not make a valid config:\n{err}") from err
    os.replace(tmp, path)
    return cfg
