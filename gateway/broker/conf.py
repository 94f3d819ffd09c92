"""Render the shipped Mosquitto configuration (``gateway/share/mosquitto/hamlet.conf.in``).

The template is the one place the broker's settings live: the installer renders it with
``hamlet gateway broker conf``, and the tests start real Mosquitto from the same rendering.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.broker.paths import DEFAULT_ACL_FILE, DEFAULT_PASSWORD_FILE

TEMPLATE: Final = "share/mosquitto/hamlet.conf.in"
# See the arithmetic in the template.
MAX_QUEUED_MESSAGES: Final = 100_000
_PLACEHOLDER: Final = re.compile(r"@[A-Z_]+@")


class BrokerConfError(ValueError):
    """The broker configuration cannot be rendered as asked."""


class BrokerSite(BaseModel):
    """What differs between hamlets (and between a Pi and a test)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(1883, ge=1, le=65535)
    # The Pi's address on the hamlet LAN (ESP32 nodes, kiosks); None: loopback only.
    lan_address: str | None = None
    password_file: Path = DEFAULT_PASSWORD_FILE
    acl_file: Path = DEFAULT_ACL_FILE
    # None on a Debian install: its mosquitto.conf already sets /var/lib/mosquitto/ (and
    # Mosquitto refuses the option twice).
    persistence_dir: Path | None = None
    max_queued_messages: int = Field(MAX_QUEUED_MESSAGES, ge=1)

    @field_validator("lan_address")
    @classmethod
    def _one_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            addr = ipaddress.ip_address(v)
        except ValueError as err:
            raise ValueError(
                f"{v!r} is not an IP address: give the Pi's own address on the hamlet LAN "
                "(e.g. 192.168.10.1), never 0.0.0.0"
            ) from err
        if addr.is_unspecified:
            raise ValueError("0.0.0.0 / :: would listen on every interface, the hotspot's too")
        return str(addr)


def template_text() -> str:
    return resources.files("gateway").joinpath(TEMPLATE).read_text(encoding="utf-8")


def render(site: BrokerSite, overrides: Mapping[str, str] | None = None) -> str:
    """The configuration for ``site``. ``overrides`` replace a setting's value (tests use it
    to shorten ``sys_interval``); a setting the template lacks is appended."""
    lan = (
        f"listener {site.port} {site.lan_address}"
        if site.lan_address
        else "# (no LAN listener: loopback only; add one with --lan-address)"
    )
    persistence = (
        f"persistence_location {site.persistence_dir}/"
        if site.persistence_dir is not None
        else "# persistence_location: set by Debian's mosquitto.conf (/var/lib/mosquitto/)"
    )
    values = {
        "@PORT@": str(site.port),
        "@LAN_LISTENER@": lan,
        "@PASSWORD_FILE@": str(site.password_file),
        "@ACL_FILE@": str(site.acl_file),
        "@PERSISTENCE_LOCATION@": persistence,
        "@MAX_QUEUED_MESSAGES@": str(site.max_queued_messages),
    }
    text = template_text()
    for key, value in values.items():
        text = text.replace(key, value)
    left = _PLACEHOLDER.findall(text)
    if left:
        raise BrokerConfError(f"template placeholders not filled: {sorted(set(left))}")
    for key, value in (overrides or {}).items():
        line = re.compile(rf"^{re.escape(key)} .*$", re.MULTILINE)
        text, n = line.subn(f"{key} {value}", text)
        if n == 0:
            text += f"{key} {value}\n"
    return text


def settings(text: str) -> dict[str, list[str]]:
    """The settings a configuration text sets (comments and blank lines skipped)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value.strip())
    return out
