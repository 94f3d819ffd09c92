"""Alerts from the edge: the plan from a real server (ETag, disk cache), SMS through the
gateway's simulated modem while the uplink is down, and the report the server logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from firmware_sim.gsm_modem import GsmModemSim
from gateway.notify.plan import EdgePlanCache, PlanUnavailable
from gateway.notify.sender import EdgeAlert, EdgeSender
from hamlet.edgeplan import natural_alert_id
from hamlet.sms.modem import AsyncGsmModem, ModemConfig
from tests.server.notify.test_server_notify import admin_token
from tests.support.procs import run_hamlet, start_server

FARMER = "+84912345678"
MSG_VI = "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"
MSG_EN = "Salinity 0.7‰ — above the durian threshold 0.5‰"
ALERT = EdgeAlert(
    alert_id=natural_alert_id("salinity_over_crop", "dinh-mon", "dm-sal-1", "salinity_ppt", 1),
    rule="salinity_over_crop", severity=3, phase="start", at_ms=1, message_vi=MSG_VI,
    message_en=MSG_EN, device="dm-sal-1", field="dm-field-3",
)  # fmt: skip


@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[tuple[GsmModemSim, AsyncGsmModem]]:
    async with (
        GsmModemSim(tmp_path / "ttyUSB2") as sim,
        AsyncGsmModem(ModemConfig(port=str(sim.link), command_timeout_s=2)) as m,
    ):
        await m.prepare()
        yield sim, m


async def test_gateway_sends_while_the_uplink_is_down_and_the_server_logs_it(
    tmp_path: Path, modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = modem
    data = tmp_path / "server"
    with start_server(data) as srv:
        run_hamlet("server", "add-hamlet", "dinh-mon", "--data-dir", str(data))
        gw_token = srv.add_gateway("gw-dm", hamlet="dinh-mon")
        h = {"Authorization": f"Bearer {admin_token(data)}"}
        async with httpx.AsyncClient(base_url=srv.url, headers=h, timeout=10) as c:
            r = await c.post(
                "/api/v1/notify/subscribers", json={"name": "Chú Bảy", "phone": FARMER}
            )
            sid = r.json()["id"]
            await c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions",
                         json={"hamlet": "dinh-mon", "rule": "salinity_over_crop"})  # fmt: skip
            other = await c.post("/api/v1/notify/subscribers",
                                 json={"name": "Chị Tư", "phone": "+84900000001"})  # fmt: skip
            await c.post(f"/api/v1/notify/subscribers/{other.json()['id']}/subscriptions",
                         json={"hamlet": "dinh-mon", "rule": "water_level_alarm"})  # fmt: skip
        async with httpx.AsyncClient(timeout=5) as gw:
            cache = EdgePlanCache(tmp_path / "gw" / "edge-plan.json", srv.url, gw_token, gw)
            plan = await cache.refresh()
            assert [s.phone for s in plan.subscribers] == [FARMER, "+84900000001"]
            assert (await cache.refresh()).version == plan.version
            assert cache.not_modified == 1  # the ETag matched: 304
            r = await gw.get(srv.url + "/api/v1/notify/edge-plan")
            assert r.status_code == 401  # no gateway token

            sender = EdgeSender(m, tmp_path / "gw" / "edge-sent.jsonl", uplink_down_after_s=300)
            assert await sender.on_alert(ALERT, plan, uplink_down_for_s=60) == []  # server's job
            sent = await sender.on_alert(ALERT, plan, uplink_down_for_s=301)
            assert [x.subscriber_id for x in sent] == [sid]
            assert sim.messages() == [(FARMER, MSG_VI)]
            assert await sender.on_alert(ALERT, plan, uplink_down_for_s=900) == []
            # A restarted gateway reads its journal and does not send again.
            again = EdgeSender(m, tmp_path / "gw" / "edge-sent.jsonl", uplink_down_after_s=300)
            assert await again.on_alert(ALERT, plan, uplink_down_for_s=900) == []
            assert len(sim.sent) == 1

            # The uplink is back: the server learns what the gateway sent.
            assert await again.report(gw, srv.url, gw_token, "dinh-mon") == 1
            assert again.unreported() == []
            assert await again.report(gw, srv.url, gw_token, "dinh-mon") == 0
            bad = await gw.post(srv.url + "/api/v1/notify/edge-sent",
                                json={"hamlet": "elsewhere", "sent": []},
                                headers={"Authorization": f"Bearer {gw_token}"})  # fmt: skip
            assert bad.status_code == 403
        async with httpx.AsyncClient(base_url=srv.url, headers=h, timeout=10) as c:
            log = (await c.get("/api/v1/notify/deliveries")).json()
    assert [(r["alert_id"], r["origin"], r["status"], r["subscriber_id"]) for r in log] == [
        (ALERT.alert_id, "gateway", "sent", sid)
    ]
    # With the server stopped, a restarted gateway still has the plan from its disk.
    async with httpx.AsyncClient(timeout=2) as gw:
        cold = EdgePlanCache(tmp_path / "gw" / "edge-plan.json", srv.url, gw_token, gw)
        assert (await cold.refresh()).version == plan.version
        empty = EdgePlanCache(tmp_path / "nothing.json", srv.url, gw_token, gw)
        with pytest.raises(PlanUnavailable):
            await empty.refresh()


def test_journal_survives_a_torn_last_line(tmp_path: Path) -> None:
    j = tmp_path / "edge-sent.jsonl"
    j.write_text(
        json.dumps({"reported": ["k1"]}) + "\n" + '{"sent": {"key": "k2"', encoding="utf-8"
    )
    s = EdgeSender(None, j)  # type: ignore[arg-type]
    assert s.reported == {"k1"}
    assert s.sent == {}
