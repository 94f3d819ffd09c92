"""``hamlet gateway ports``: serial ports with their stable by-id names and USB identity."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True)
class PortInfo:
    device: str  # /dev/ttyUSB0
    by_id: list[str]  # /dev/serial/by-id/... symlinks pointing at it
    description: str
    vid: int | None
    pid: int | None
    manufacturer: str | None
    product: str | None
    serial_number: str | None

    @property
    def usb_id(self) -> str:
        if self.vid is None or self.pid is None:
            return ""
        return f"{self.vid:04x}:{self.pid:04x}"

    def as_json(self) -> dict[str, object]:
        return {
            "device": self.device, "by_id": self.by_id, "description": self.description,
            "usb_id": self.usb_id, "manufacturer": self.manufacturer, "product": self.product,
            "serial_number": self.serial_number,
        }  # fmt: skip


def by_id_links(by_id_dir: Path = BY_ID) -> dict[str, list[str]]:
    """Map each real device path to the by-id links that point at it."""
    links: dict[str, list[str]] = {}
    if not by_id_dir.is_dir():
        return links
    for link in sorted(by_id_dir.iterdir()):
        try:
            target = os.path.realpath(link)
        except OSError:
            continue
        links.setdefault(target, []).append(str(link))
    return links


def list_ports(by_id_dir: Path = BY_ID) -> list[PortInfo]:
    from serial.tools import list_ports as lp

    links = by_id_links(by_id_dir)
    out: list[PortInfo] = []
    for p in sorted(lp.comports(), key=lambda p: p.device):
        out.append(
            PortInfo(
                device=p.device,
                by_id=links.get(os.path.realpath(p.device), []),
                description=p.description or "",
                vid=p.vid,
                pid=p.pid,
                manufacturer=p.manufacturer,
                product=p.product,
                serial_number=p.serial_number,
            )
        )
    return out
