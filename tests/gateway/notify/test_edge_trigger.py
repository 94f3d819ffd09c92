"""The edge trigger end to end: a real server (plan, report, its own modem), a real in-process
gateway with edge alerts on, and simulated GSM modems on real ptys for both.

Salinity crosses the durian threshold while the gateway's uplink is down → the SMS leaves the
gateway's modem; the uplink returns → the server logs it as sent by the gateway and sends no
second SMS; with the uplink up, the gateway sends nothing and the server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from firmware_sim.gsm_modem import GsmModemSim
from gateway import control_protocol
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.installer.render import edge_line
from gateway.records import Reading
from hamlet.edgeplan import EdgeSentMessage
from tests.gateway.conftest import gateway_config
from tests.gateway.test_gateway import SteadySource
from tests.server.notify.receivers import webhook_receiver
from tests.server.notify.test_server_notify import admin_token
from tests.support.procs import ServerProcess, run_hamlet, start_server

pytestmark = pytest.mark.timeout(60)

HAMLET = "dinh-mon"
GW = "gw-dm"
FARMER = "+84912345678"
DEAD_URL = "http://127.0.0.1:9"  # nothing listens: the uplink is down
SECRET = "commune-webhook-secret"


@dataclass
class World:
    srv: ServerProcess
    token: str  # the gateway's
    admin: dict[str, str]
    server_modem: GsmModemSim


@contextlib.contextmanager
def edge_server(
    tmp_path: Path, modem: GsmModemSim | None, gw: str = GW, device: str = "dm-sal-1"
) -> Iterator[tuple[ServerProcess, str, str]]:
    """A server with the hamlet, a gateway and a durian field's salinity probe, alerting at the
    first reading beyond the line (the gateway receives these settings in its plan), with its
    own modem if given. Yields (server, the gateway's token, an admin token)."""
    env = {"HAMLET_SERVER__ALERTS__SALINITY_MIN_DURATION_S": "0"}
    if modem is not None:
        env["HAMLET_SERVER__NOTIFY__MODEM__PORT"] = str(modem.link)
    data = tmp_path / "server"
    with start_server(data, env=env) as srv:
        d = str(data)
        run_hamlet("server", "add-hamlet", HAMLET, "--data-dir", d)
        token = srv.add_gateway(gw, hamlet=HAMLET)
        run_hamlet("server", "add-device", device, "--hamlet", HAMLET, "--crop", "durian",
                   "--data-dir", d)  # fmt: skip
        yield srv, token, admin_token(data)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with GsmModemSim(tmp_path / "ttyServer") as sm:
        stack = contextlib.ExitStack()
        try:
            # Started on a thread: the server prepares its modem at start-up, and the
            # simulated modem answers from this event loop.
            server = edge_server(tmp_path, sm)
            srv, token, admin = await asyncio.to_thread(stack.enter_context, server)
            url, _hook = stack.enter_context(webhook_receiver(SECRET))
            h = {"Authorization": f"Bearer {admin}"}
            async with httpx.AsyncClient(base_url=srv.url, headers=h, timeout=10) as c:
                r = await c.post("/api/v1/notify/subscribers",
                                 json={"name": "Chú Bảy", "phone": FARMER})  # fmt: skip
                await c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions",
                             json={"hamlet": HAMLET, "rule": "salinity.danger"})  # fmt: skip
                # A webhook (not in the gateway's plan): when its row is in the log, the
                # server has handled the alert, so a missing SMS row means "not sent".
                r = await c.post("/api/v1/notify/subscribers", json={
                    "name": "HTX", "webhook_url": url, "webhook_secret": SECRET})  # fmt: skip
                await c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions",
                             json={"hamlet": HAMLET, "rule": "salinity.danger"})  # fmt: skip
            yield World(srv, token, h, sm)
        finally:
            await asyncio.to_thread(stack.close)


def _config(
    tmp_path: Path, url: str, token: str, modem: GsmModemSim, refresh_s: float = 3600
) -> GatewayConfig:
    base = gateway_config(tmp_path / "gw", url, token, gw_id=GW)
    return base.model_copy(
        update={
            "hamlet": HAMLET,
            "edge_alerts": base.edge_alerts.model_validate(
                {
                    "enabled": True,
                    "uplink_down_after_s": 1,
                    "plan_refresh_s": refresh_s,
                    "modem": {"port": str(modem.link), "command_timeout_s": 2},
                }
            ),
        }
    )


async def _feed(src: SteadySource, value: float) -> None:
    """A salinity sensor reporting every 0.2 s (a reading per tick, as a real one does)."""
    while True:
        await src.queue.put([Reading("dm-sal-1", "salinity", value, source="mqtt")])
        await asyncio.sleep(0.2)


async def _deliveries(w: World, pred: object, timeout: float = 30) -> list[dict[str, object]]:
    """The server's delivery log, once ``pred(rows)`` holds (the server works on its own)."""
    assert callable(pred)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=w.srv.url, headers=w.admin, timeout=10) as c:
        while True:
            rows: list[dict[str, object]] = (await c.get("/api/v1/notify/deliveries")).json()
            if pred(rows) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)


async def test_uplink_down_the_gateway_sends_and_the_server_does_not_send_again(
    tmp_path: Path, world: World
) -> None:
    w = world
    async with GsmModemSim(tmp_path / "ttyGateway") as gm:
        # Started once with the server reachable: the plan is fetched and cached on disk.
        async with Gateway(_config(tmp_path, w.srv.url, w.token, gm), sources=[]) as gw:
            assert gw.edge is not None
            assert gw.edge.plan is None  # nothing cached yet
            await asyncio.wait_for(gw.edge.plan_asked.wait(), 30)
            assert gw.edge.plan is not None
            assert gw.edge.plan.devices["dm-sal-1"].crop == "durian"
        # The uplink is down (a closed port); the plan comes from the disk.
        src = SteadySource("mqtt")
        async with Gateway(_config(tmp_path, DEAD_URL, w.token, gm), sources=[src]) as gw:
            assert gw.edge is not None
            assert gw.edge.plan is not None
            feeder = asyncio.create_task(_feed(src, 0.7))
            try:
                # Sent and journalled (what is journalled is reported).
                await asyncio.wait_for(gw.edge.sms_sent.wait(), 60)
            finally:
                feeder.cancel()
            assert gw.edge.counters.alerts_opened == 2  # salinity.watch and .danger
            # What the installer sees: through the control socket, as rendered.
            st = await asyncio.to_thread(control_protocol.status, Path(gw.control_path))
        assert st.edge is not None
        assert (st.edge.modem_ready, st.edge.sms_sent, st.edge.sms_unreported) == (True, 1, 1)
        assert st.edge.plan_version is not None
        assert st.edge.sms_in_modem == 0
        line = edge_line(st.edge).plain
        assert line.startswith("ready / sẵn sàng")
        assert "1 SMS sent (1 not yet reported to the server)" in line
        assert gm.messages() == [(FARMER, "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰")]

        # The uplink is back: the backlog goes up, and the gateway reports its SMS.
        async with Gateway(_config(tmp_path, w.srv.url, w.token, gm), sources=[]) as gw:
            assert gw.edge is not None
            rows = await _deliveries(
                w, lambda rs: {r["channel"] for r in rs if r["status"] == "sent"}
                >= {"sms", "webhook"},
            )  # fmt: skip
            assert gw.edge.sender.unreported() == []
            assert gw.edge.counters.reports == 1
    # The gateway named the alert as the server's own engine did (the webhook row).
    alert_id = str(rows[0]["alert_id"])
    assert alert_id.startswith(f"salinity.danger:{HAMLET}:dm-sal-1:salinity:")
    mine = [(r["alert_id"], r["channel"], r["origin"], r["status"]) for r in rows]
    assert mine == [
        (alert_id, "sms", "gateway", "sent"),
        (alert_id, "webhook", "server", "sent"),
    ], rows
    assert w.server_modem.sent == []  # the server sent no second SMS
    assert len(gm.sent) == 1


async def _sent_or_repeated(gw: Gateway) -> None:
    """Until an SMS was sent, or the sender was offered an alert it had sent, twice (past
    the uplink's grace); checked each time the trigger offers the sender an alert."""
    edge = gw.edge
    assert edge is not None
    while not (edge.sms_sent.is_set() or edge.sender.repeats >= 2):
        edge.offered.clear()
        await asyncio.wait_for(edge.offered.wait(), 30)


async def test_a_gateway_restarted_during_an_episode_does_not_send_it_again(
    tmp_path: Path, world: World
) -> None:
    """A storm: the uplink is down, salinity stays high, and the gateway restarts (a power
    cut) after its SMS went. The restarted gateway goes on with the same episode, so the
    same alert (its natural id), already sent: no second SMS from it or from the server."""
    w = world
    async with GsmModemSim(tmp_path / "ttyGateway") as gm:
        async with Gateway(_config(tmp_path, w.srv.url, w.token, gm), sources=[]) as gw:
            assert gw.edge is not None
            await asyncio.wait_for(gw.edge.plan_asked.wait(), 30)  # the plan, cached on disk
        for run in ("before the power cut", "after it"):
            src = SteadySource("mqtt")
            async with Gateway(_config(tmp_path, DEAD_URL, w.token, gm), sources=[src]) as gw:
                edge = gw.edge
                assert edge is not None
                feeder = asyncio.create_task(_feed(src, 0.7))
                try:
                    await _sent_or_repeated(gw)
                finally:
                    feeder.cancel()
                assert edge.sms_sent.is_set() == (run == "before the power cut"), run
        assert len(gm.sent) == 1  # counted on the modem: one SMS

        # The uplink is back: the server's own engine names the same alert.
        async with Gateway(_config(tmp_path, w.srv.url, w.token, gm), sources=[]) as gw:
            rows = await _deliveries(
                w, lambda rs: {r["channel"] for r in rs if r["status"] == "sent"}
                >= {"sms", "webhook"},
            )  # fmt: skip
    mine = [(r["channel"], r["origin"], r["status"]) for r in rows]
    assert mine == [("sms", "gateway", "sent"), ("webhook", "server", "sent")], rows
    assert len({r["alert_id"] for r in rows}) == 1, rows
    assert w.server_modem.sent == []
    assert len(gm.sent) == 1


async def test_uplink_up_the_server_sends_and_the_gateway_does_not(
    tmp_path: Path, world: World
) -> None:
    w = world
    src = SteadySource("mqtt")
    async with (
        GsmModemSim(tmp_path / "ttyGateway") as gm,
        Gateway(_config(tmp_path, w.srv.url, w.token, gm, refresh_s=0.01), sources=[src]) as gw,
    ):
        assert gw.edge is not None
        feeder = asyncio.create_task(_feed(src, 0.7))
        try:
            await w.server_modem.wait_sent(1, timeout=60)
        finally:
            feeder.cancel()
        assert gw.edge.counters.alerts_opened == 2  # the gateway saw them open too
        assert gw.edge.sender.sent == {}
        rows = await _deliveries(w, lambda rs: True)
        assert w.server_modem.messages() == [(FARMER, "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰")]
        # A new subscriber reaches the gateway's plan before its next upload.
        assert gw.edge.plan is not None
        assert len(gw.edge.plan.subscribers) == 1
        async with httpx.AsyncClient(base_url=w.srv.url, headers=w.admin, timeout=10) as c:
            r = await c.post("/api/v1/notify/subscribers",
                             json={"name": "Chị Tư", "phone": "+84900000001"})  # fmt: skip
            await c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions",
                         json={"hamlet": HAMLET, "rule": "salinity.danger"})  # fmt: skip
        # An upload already in flight fetched its plan before the POST; the next one cannot
        # have, so at most two uploads pass before the plan must show the new subscriber.
        for _ in range(2):
            gw.uplink.uploaded.clear()
            await src.queue.put([Reading("dm-sal-1", "salinity", 0.7, source="mqtt")])
            await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
            if len(gw.edge.plan.subscribers) == 2:
                break
        assert [s.phone for s in gw.edge.plan.subscribers] == [FARMER, "+84900000001"]
    assert gm.sent == []
    sms = [(r["channel"], r["origin"]) for r in rows if r["channel"] == "sms"]
    assert sms == [("sms", "server")]


def test_edge_alerts_are_off_by_default_and_need_a_modem_when_on(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.notify.config import EdgeAlertsConfig

    assert gateway_config(tmp_path, DEAD_URL, "t" * 40).edge_alerts.enabled is False
    with pytest.raises(ValidationError, match=r"\[edge_alerts.modem\] port"):
        EdgeAlertsConfig(enabled=True)


async def test_a_gateway_whose_modem_is_missing_runs_on_without_sms(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "gw", DEAD_URL, "t" * 40)
    cfg = cfg.model_copy(
        update={
            "edge_alerts": cfg.edge_alerts.model_validate(
                {"enabled": True, "modem": {"port": str(tmp_path / "no-such-tty")}}
            )
        }
    )
    async with Gateway(cfg, sources=[]) as gw:
        assert gw.edge is not None
        await asyncio.wait_for(gw.edge.plan_asked.wait(), 30)
        assert gw.edge.plan is None  # no server, nothing cached
        errors = gw.edge.counters.errors
        assert [e.split(":")[0] for e in errors] == ["modem", "plan"], errors
        assert not gw.supervision.failures
        st = await asyncio.to_thread(control_protocol.status, Path(gw.control_path))
    assert st.edge is not None
    assert not st.edge.modem_ready
    line = edge_line(st.edge)
    assert line.plain.startswith("modem NOT ready / modem chưa sẵn sàng — check its power")
    assert "last error: plan:" in line.plain


async def test_a_refused_report_does_not_hold_the_readings_back(
    tmp_path: Path, world: World
) -> None:
    w = world
    journal = tmp_path / "gw" / "notify" / "edge-sent.jsonl"
    journal.parent.mkdir(parents=True)
    sent = EdgeSentMessage(
        key="a:start:1:sms", alert_id="a", rule="salinity.danger", severity=3, phase="start",
        at_ms=1, subscriber_id=1, sent_at=1.0, message_vi="x", message_en="x",
    )  # fmt: skip
    journal.write_text(json.dumps({"sent": sent.model_dump()}) + "\n", encoding="utf-8")
    src = SteadySource("mqtt")
    async with GsmModemSim(tmp_path / "ttyGateway") as gm:
        cfg = _config(tmp_path, w.srv.url, w.token, gm)
        # This gateway is registered for dinh-mon: a report for another hamlet is refused.
        cfg = cfg.model_copy(update={"hamlet": "elsewhere"})
        async with Gateway(cfg, sources=[src]) as gw:
            assert gw.edge is not None
            await src.queue.put([Reading("dm-sal-1", "salinity", 0.2, source="mqtt")])
            await asyncio.wait_for(gw.uplink.uploaded.wait(), 30)
            assert gw.uplink.status.uploaded >= 1
            assert [e.split(":")[0] for e in gw.edge.counters.errors] == ["report"]
            assert len(gw.edge.sender.unreported()) == 1  # tried again before the next post
