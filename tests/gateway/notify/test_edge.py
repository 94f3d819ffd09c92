"""Alerts from the edge: the plan from a real server (ETag, disk cache), SMS through the
gateway's simulated modem while the uplink is down, and the report the server logs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from firmware_sim.gsm_modem import GsmModemSim, Stored
from gateway.notify.plan import EdgePlanCache, PlanUnavailable
from gateway.notify.sender import EdgeAlert, EdgeSender
from hamlet.edgeplan import EdgePlan, EdgeSubscriber, EdgeSubscription, natural_alert_id
from hamlet.sms.modem import STO_SENT, STO_UNSENT, AsyncGsmModem, ModemConfig
from hamlet.sms.pdu import submit_pdus
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


Modem = tuple[GsmModemSim, AsyncGsmModem]


@contextlib.asynccontextmanager
async def _modem(tmp_path: Path, **config: float) -> AsyncIterator[Modem]:
    async with (
        GsmModemSim(tmp_path / "ttyUSB2") as sim,
        AsyncGsmModem(ModemConfig(port=str(sim.link), command_timeout_s=2, **config)) as m,
    ):
        await m.prepare()
        yield sim, m


@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[tuple[GsmModemSim, AsyncGsmModem]]:
    async with _modem(tmp_path) as sm:
        yield sm


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


# -- exactly once through the modem's storage ------------------------------------------------

PLAN = EdgePlan(
    hamlet="dinh-mon", version="v1",
    subscribers=[EdgeSubscriber(id=7, phone=FARMER, subscriptions=[EdgeSubscription()])],
)  # fmt: skip


def _sender(tmp_path: Path, m: AsyncGsmModem) -> EdgeSender:
    """A sender over the gateway's journal, as a (re)started gateway builds it."""
    return EdgeSender(m, tmp_path / "gw" / "edge-sent.jsonl", uplink_down_after_s=300)


@pytest.fixture
async def slow_answer_modem(tmp_path: Path) -> AsyncIterator[tuple[GsmModemSim, AsyncGsmModem]]:
    """A modem whose send answers the host gives up on after half a second."""
    async with _modem(tmp_path, send_timeout_s=0.5) as sm:
        yield sm


async def test_a_lost_modem_answer_is_settled_from_storage_not_sent_again(
    tmp_path: Path, slow_answer_modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = slow_answer_modem
    sim.state.unanswered_sends = 1  # the SMS goes; the answer to AT+CMSS never comes
    sender = _sender(tmp_path, m)
    assert await sender.on_alert(ALERT, PLAN, uplink_down_for_s=301) == []
    assert len(sim.sent) == 1
    assert sender.errors  # the timeout, for the status page
    # The alert is offered again at the next reading: the stored status says it went.
    (m1,) = await sender.on_alert(ALERT, PLAN, uplink_down_for_s=302)
    assert m1.subscriber_id == 7
    assert len(sim.sent) == 1  # counted: one SMS, not two
    assert sim.stored == {}  # deleted from storage once journalled
    # A restart after that sends nothing either.
    assert await _sender(tmp_path, m).on_alert(ALERT, PLAN, uplink_down_for_s=900) == []
    assert len(sim.sent) == 1


async def test_a_gateway_killed_before_the_modem_sent_sends_once_after_restart(
    tmp_path: Path, slow_answer_modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = slow_answer_modem
    sim.state.stalled_sends = 1  # the modem hangs on AT+CMSS: nothing goes
    assert await _sender(tmp_path, m).on_alert(ALERT, PLAN, uplink_down_for_s=301) == []
    assert sim.sent == []
    assert [s.stat for s in sim.stored.values()] == [STO_UNSENT]
    # The process is gone (only its journal remains); the restarted gateway resumes it.
    again = _sender(tmp_path, m)
    assert await again.sweep() == 0  # held by the journal: not a leftover
    (m1,) = await again.on_alert(ALERT, PLAN, uplink_down_for_s=302)
    assert sim.messages() == [(FARMER, MSG_VI)]
    assert sim.stored == {}
    assert [x.key for x in _sender(tmp_path, m).unreported()] == [m1.key]


async def test_a_modem_that_lost_its_storage_gets_the_sms_again(
    tmp_path: Path, slow_answer_modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = slow_answer_modem
    sim.state.stalled_sends = 1
    assert await _sender(tmp_path, m).on_alert(ALERT, PLAN, uplink_down_for_s=301) == []
    sim.stored.clear()  # power-cycled with the message in RAM, or the SIM swapped
    again = _sender(tmp_path, m)
    assert len(await again.on_alert(ALERT, PLAN, uplink_down_for_s=302)) == 1
    assert sim.messages() == [(FARMER, MSG_VI)]
    assert any("lost the stored SMS" in e for e in again.errors)


async def test_a_refused_send_is_stored_anew_on_the_next_offer(
    tmp_path: Path, modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = modem
    sim.fail_next_sends(38)  # network out of order: the part did not go
    sender = _sender(tmp_path, m)
    assert await sender.on_alert(ALERT, PLAN, uplink_down_for_s=301) == []
    assert sim.stored == {}  # its stored copy was dropped with the refusal
    assert len(await sender.on_alert(ALERT, PLAN, uplink_down_for_s=302)) == 1
    assert sim.messages() == [(FARMER, MSG_VI)]
    assert _sender(tmp_path, m).stored == {}


async def test_leftovers_in_the_modem_storage_are_swept_at_start(
    tmp_path: Path, modem: tuple[GsmModemSim, AsyncGsmModem]
) -> None:
    sim, m = modem
    for i in (1, 2):  # sent and journalled, then the gateway died before deleting them
        (part,) = submit_pdus("+84900000009", f"old {i}")
        sim.stored[i] = Stored(STO_SENT, part.pdu_hex, part.tpdu_len)
    sender = _sender(tmp_path, m)
    assert await sender.sweep() == 2
    assert sim.stored == {}
    assert len(await sender.on_alert(ALERT, PLAN, uplink_down_for_s=301)) == 1
    assert len(sim.sent) == 1
