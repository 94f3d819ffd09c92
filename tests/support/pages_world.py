"""A hamlet seeded for the pages: registered devices with crops, and readings whose status a
farmer must see (salinity dangerous for durian, watch for rice, a dry rice field, old data, a
kiosk gone silent), posted through the real ingest API as a gateway does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from hamlet.contract import EventRecord, RecordKind
from server.i18n import VN_TZ
from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import ServerProcess, run_hamlet, start_server

HAMLET = "dinh-phuoc"
HAMLET_NAME = "Ấp Định Phước"
GATEWAY = "gw-pages"
HOUR = 3_600_000
HB = RecordKind.HEARTBEAT
COMMUNE = "dinh-mon"
STAFF = ("canbo", "mùa-khô-2026-đo-mặn")  # a commune staff account (name, password)

# id, kind, name, crop, interval (s)
DEVICES = (
    ("sal-1", "sensor", "Độ mặn cống ấp", "durian", 300),
    ("sal-2", "sensor", "Độ mặn ao lấy nước", "rice", 300),
    ("wl-1", "sensor", "Mực nước kênh", None, 300),
    ("awd-1", "sensor", "Ruộng lúa ướt khô", "rice", 300),
    ("soil-1", "sensor", "Đất vườn sầu riêng", "durian", 600),
    ("sal-old", "sensor", "Độ mặn cống cũ", "durian", 300),
    ("kiosk-1", "kiosk", "Ki-ốt nhà văn hóa", None, 60),
    ("kiosk-2", "kiosk", "Ki-ốt UBND xã", None, 60),
)
# kiosk-2 today: 3 sessions, 2 dossiers (1 online), ratings 5/5 and 4/5 (90 %).
KIOSK_EVENTS = (
    ("session_start", {"session": 1}),
    ("dossier_submitted", {"channel": "online", "procedure": "birth", "session": 1}),
    ("rating", {"scale": 5, "score": 5}),
    ("session_start", {"session": 2}),
    ("dossier_submitted", {"channel": "assisted", "procedure": "land", "session": 2}),
    ("rating", {"scale": 5, "score": 4}),
    ("session_start", {"session": 3}),
)


@dataclass(frozen=True)
class World:
    server: ServerProcess
    token: str
    now: int


def _register(server: ServerProcess) -> None:
    d = str(server.data_dir)
    run_hamlet(
        "server", "add-hamlet", HAMLET, "--name", HAMLET_NAME, "--commune", COMMUNE,
        "--data-dir", d,
    )  # fmt: skip
    run_hamlet(
        "server", "add-user", STAFF[0], "--role", "staff", "--commune", COMMUNE,
        "--password-env", "STAFF_PW", "--data-dir", d, env={"STAFF_PW": STAFF[1]},
    )  # fmt: skip
    for dev, kind, name, crop, every in DEVICES:
        args = ["--kind", kind, "--name", name, "--expected-interval", str(every)]
        args += ["--crop", crop] if crop else []
        run_hamlet("server", "add-device", dev, "--hamlet", HAMLET, *args, "--data-dir", d)


def seed(server: ServerProcess, token: str, client: httpx.Client) -> int:
    """Post the readings; return the 'now' they are relative to."""
    now = now_ms()
    seq = iter(range(1, 1_000_000))

    def s(n: int) -> list[int]:
        return [next(seq) for _ in range(n)]

    # A week of hourly salinity at sal-1, rising to 0.7 ‰ (over durian's 0.5 ‰) now.
    week = [0.1 + 0.6 * i / 167 for i in range(168)]
    blocks = [
        block("sal-1", "salinity", s(168), t0=now - 167 * HOUR - 60_000, step_ms=HOUR, values=week),
        block("sal-2", "salinity", s(1), t0=now - 60_000, values=[2.81]),  # rice: watch
        block("wl-1", "water_level", s(1), t0=now - 60_000, values=[1.35]),  # safe
        block("awd-1", "field_water", s(1), t0=now - 60_000, values=[-0.2]),  # dry: danger
        block("soil-1", "soil_moisture", s(1), t0=now - 60_000, values=[1350.0 / 100]),
        block("soil-1", "battery", s(1), t0=now - 60_000, values=[3.71]),
        block("sal-old", "salinity", s(1), t0=now - 3 * 24 * HOUR, values=[0.2]),  # stale
        block(
            "kiosk-1", "heartbeat", s(1), t0=now - 5 * HOUR, values=[1], kind=HB
        ),
        block(GATEWAY, "gw.buffer_depth", s(1), t0=now - 30_000, values=[1350], kind=HB),
        block(GATEWAY, "gw.oldest_unsent_age_s", s(1), t0=now - 30_000, values=[42.5], kind=HB),
        block(GATEWAY, "gw.sources_failed", s(1), t0=now - 30_000, values=[1], kind=HB),
        block(GATEWAY, "gw.dead_lettered", s(1), t0=now - 30_000, values=[4], kind=HB),
    ]  # fmt: skip
    blocks.append(block("kiosk-2", "heartbeat", s(1), t0=now - 20_000, values=[1], kind=HB))
    vn_midnight = dt.datetime.fromtimestamp(now / 1000, VN_TZ).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    first = max(int(vn_midnight.timestamp() * 1000), now - 60_000)
    events = [
        EventRecord(seq=next(seq), device="kiosk-2", name=name, t=first + i * 1000, attrs=attrs)
        for i, (name, attrs) in enumerate(KIOSK_EVENTS)
    ]
    r = post(client, token, batch(GATEWAY, blocks, events))
    r.raise_for_status()
    return now


@contextmanager
def pages_world(tmp: Path, *, refresh_s: float = 1.0) -> Iterator[World]:
    env = {"HAMLET_SERVER__PAGES__REFRESH_S": str(refresh_s)}
    with start_server(tmp / "server", env=env) as server:
        _register(server)
        token = server.add_gateway(GATEWAY, hamlet=HAMLET)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            now = seed(server, token, client)
        yield World(server, token, now)
