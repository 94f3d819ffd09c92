"""A gateway killed -9 mid-storm while its edge SMS is in flight: the farmer gets it once.

Real processes: the broker, ``hamlet sim modem`` on a real pty, ``hamlet gateway run`` with
edge alerts on and its uplink down, salinity published over MQTT as a field node does. The
plan of whom to warn comes from a real server, cached by the gateway's own code, and the
server is gone before the storm (the uplink is down). The gateway is killed at the modem's
cue, restarted with salinity still high, and the modem's own record is counted line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from gateway.notify.plan import EdgePlanCache
from tests.gateway.notify.test_edge_trigger import HAMLET, edge_server
from tests.server.notify.test_server_notify import wait_for
from tests.support import procs
from tests.support.broker import Broker
from tests.support.gateway_proc import create_session, gateway_status, start_gateway, write_config
from tests.support.procs import ManagedProcess

pytestmark = pytest.mark.timeout(240)

GW = "gw-storm"
FARMER = "+84912345678"
TOPICS = ["hamlet/+/telemetry"]
DEAD_URL = "http://127.0.0.1:9"  # nothing listens: the uplink is down
SENT_CUE = rf"^modem sms to \{FARMER}:"
CONFIRMED_CUE = r"edge alerts: SMS to subscriber \d+ confirmed from the modem's storage"
FROM_STORAGE_CUE = r"edge alerts: SMS to subscriber \d+ sent from storage"


def _records(path: Path) -> list[str]:
    """The numbers the modem sent to, one line per complete SMS, in order."""
    if not path.exists():
        return []
    return [json.loads(x)["number"] for x in path.read_text("utf-8").splitlines()]


def _modem(link: Path, record: Path, *faults: str) -> ManagedProcess:
    argv = [*procs.HAMLET, "sim", "modem", "--link", str(link), "--record", str(record), *faults]
    modem = ManagedProcess(argv).start()
    modem.wait_for(r"^modem ready")
    return modem


def _cache_plan(tmp_path: Path, data_dir: Path) -> str:
    """The hamlet, its durian field's probe and a farmer on a real server; the gateway's
    plan cache fetches the plan from it (as on any run with the uplink up). Its token."""
    with edge_server(tmp_path, None, gw=GW, device="sal-1") as (srv, token, admin):
        h = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
            sid = c.post("/api/v1/notify/subscribers",
                         json={"name": "Chú Bảy", "phone": FARMER}).json()["id"]  # fmt: skip
            r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions",
                       json={"hamlet": HAMLET, "rule": "salinity.danger"})  # fmt: skip
            assert r.status_code == 201, r.text

        async def fetch() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                cache = EdgePlanCache(data_dir / "notify" / "edge-plan.json", srv.url, token,
                                      client)  # fmt: skip
                plan = await cache.refresh()
                assert [s.phone for s in plan.subscribers] == [FARMER]

        asyncio.run(fetch())
    return token


def _config(tmp_path: Path, broker: Broker, link: Path) -> Path:
    data_dir = tmp_path / "gw"
    token = _cache_plan(tmp_path, data_dir)
    path = write_config(tmp_path / "gateway.toml", GW, broker, DEAD_URL, token, TOPICS)
    conf = tomllib.loads(path.read_text())
    conf["hamlet"] = HAMLET
    conf["edge_alerts"] = {
        "enabled": True,
        "uplink_down_after_s": 1,
        "modem": {"port": str(link), "command_timeout_s": 2},
    }
    path.write_text(tomli_w.dumps(conf))
    return path


@contextlib.contextmanager
def _salinity(broker: Broker, value: float) -> Iterator[None]:
    """The durian field's probe reporting ``value`` every 0.2 s (QoS1) until the block ends."""
    stop = threading.Event()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sal-1")
    pub.connect(broker.host, broker.port)
    pub.loop_start()

    def run() -> None:
        body = json.dumps({"readings": {"salinity": value}})
        while not stop.wait(0.2):  # the node's schedule
            pub.publish("hamlet/sal-1/telemetry", body, qos=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        pub.disconnect()
        pub.loop_stop()


def _edge(conf: Path) -> dict[str, object]:
    edge = gateway_status(conf)["edge"]
    assert isinstance(edge, dict)
    return edge


def _offered_again_as_sent(conf: Path) -> None:
    """The restarted gateway goes on with the episode: the alert is offered to the sender at
    later readings, recognised as sent each time, and nothing waits in the modem."""

    def settled() -> bool:
        e = _edge(conf)
        return int(str(e["repeats"])) >= 3 and e["sms_in_modem"] == 0

    wait_for(settled, timeout=60)


@dataclass(frozen=True)
class Storm:
    conf: Path  # the gateway's config: uplink down, edge alerts on, the plan cached
    broker: Broker  # holding the gateway's session
    link: Path  # where the modem is to appear
    record: Path  # the modem's record of what it sent


@pytest.fixture
def storm(tmp_path: Path, mqtt_broker: Broker) -> Storm:
    link = tmp_path / "tty-modem"
    conf = _config(tmp_path, mqtt_broker, link)
    create_session(mqtt_broker, GW, TOPICS)
    return Storm(conf, mqtt_broker, link, tmp_path / "sms.jsonl")


def _kill_9_mid_storm(storm: Storm, modem: ManagedProcess, kill_at: str, cue: str) -> None:
    """Salinity over the line: the gateway runs until the modem prints ``kill_at`` and is
    killed -9; restarted, it runs until it prints ``cue``, the SMS has left the modem and
    the alert was offered again as already sent."""
    with _salinity(storm.broker, 0.7):
        gw = start_gateway(storm.conf, GW)
        try:
            modem.wait_for(kill_at, timeout=60)
        finally:
            gw.kill9()
        gw = start_gateway(storm.conf, GW)
        try:
            gw.wait_for(cue, timeout=60)
            modem.wait_for(SENT_CUE, timeout=30)
            _offered_again_as_sent(storm.conf)
        finally:
            gw.stop()


def test_kill_9_after_the_sms_went_the_restarted_gateway_does_not_send_it_again(
    storm: Storm,
) -> None:
    # The SMS goes but the modem's answer never comes: the gateway dies while it waits,
    # between "the phone got it" and "the journal knows".
    modem = _modem(storm.link, storm.record, "--unanswered-sends", "1")
    try:
        _kill_9_mid_storm(storm, modem, SENT_CUE, CONFIRMED_CUE)
    finally:
        modem.stop()
    assert _records(storm.record) == [FARMER]  # counted: once


def test_kill_9_before_the_modem_sent_it_the_restarted_gateway_sends_it_once(
    storm: Storm,
) -> None:
    # Stored in the modem and asked to go, but the modem hangs: still unsent when it dies.
    modem = _modem(storm.link, storm.record, "--stalled-sends", "1")
    try:
        _kill_9_mid_storm(storm, modem, r"^modem stalled send from storage", FROM_STORAGE_CUE)
    finally:
        modem.stop()
    assert _records(storm.record) == [FARMER]  # counted: once
