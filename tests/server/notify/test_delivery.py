"""The outbox and dispatcher with real channels: the simulated modem over a pty, a local SMTP
server with STARTTLS, a local webhook receiver checking HMAC signatures."""

from __future__ import annotations

import asyncio
import email
import email.policy
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from firmware_sim.gsm_modem import STO_SENT, GsmModemSim, Stored
from hamlet.sms.modem import AsyncGsmModem, ModemConfig
from hamlet.sms.pdu import submit_pdus
from server.notify.channels import (
    DeliveryError,
    EmailSender,
    Sender,
    SmsSender,
    WebhookSender,
)
from server.notify.config import NotifyConfig, SmtpConfig
from server.notify.dispatcher import Dispatcher
from server.notify.model import AlertEvent, Channel, Phase, Severity
from server.notify.store import RESENT_NOTE, SMS_CONFIRMED_NOTE, NotifyStore
from tests.server.notify.receivers import smtp_server, webhook_receiver

FARMER = "+84912345678"
STAFF = "+84987654321"
MSG_VI = "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"
MSG_EN = "Salinity 0.7‰ — above the durian threshold 0.5‰"


def alert(
    n: int = 1, phase: Phase = Phase.START, severity: Severity = Severity.DANGER
) -> AlertEvent:
    return AlertEvent(
        alert_id=f"salinity:dm-field-3:{n}", rule="salinity_over_crop", severity=severity,
        hamlet="dinh-mon", phase=phase, at_ms=1_700_000_000_000 + n, message_vi=MSG_VI,
        message_en=MSG_EN, device="dm-sal-1", field="dm-field-3", metric="salinity_ppt",
    )  # fmt: skip


def cfg(**kw: object) -> NotifyConfig:
    base: dict[str, object] = {"backoff_s": 0.05, "backoff_max_s": 0.2, "rate_window_s": 60}
    return NotifyConfig(**(base | kw))


async def until(pred: object, timeout: float = 20.0) -> None:
    """Wait for a condition the dispatcher makes true (sync receivers have no event to await)."""
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[GsmModemSim]:
    async with GsmModemSim(tmp_path / "ttyUSB2") as s:
        yield s


@pytest.fixture
async def modem(sim: GsmModemSim) -> AsyncIterator[AsyncGsmModem]:
    async with AsyncGsmModem(ModemConfig(port=str(sim.link), command_timeout_s=2)) as m:
        await m.prepare()
        yield m


@pytest.fixture
def store(tmp_path: Path) -> NotifyStore:
    s = NotifyStore(tmp_path / "notify.sqlite3")
    yield s
    s.close()


def farmer(store: NotifyStore, **kw: object) -> int:
    sub = store.add_subscriber("Chú Bảy", phone=FARMER, language="vi", **kw)  # type: ignore[arg-type]
    store.subscribe(sub.id, "dinh-mon", rule="salinity_over_crop", field="dm-field-3")
    return sub.id


async def test_a_danger_alert_reaches_the_farmer_by_sms_once(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
        assert await d.enqueue(alert()) == 1
        assert await d.enqueue(alert()) == 0  # the same alert again: nothing new
        await sim.wait_sent(1)
        await until(lambda: store.deliveries()[0]["status"] == "sent")
    assert sim.messages() == [(FARMER, MSG_VI)]
    (row,) = store.deliveries()
    assert (row["channel"], row["attempts"], row["origin"]) == ("sms", 1, "server")


async def test_sms_goes_from_the_modem_storage_deleted_once_settled(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
        await d.enqueue(alert())
        await sim.wait_sent(1)
        await until(lambda: sim.deleted == [1])
    assert store.deliveries()[0]["status"] == "sent"
    assert sim.stored == {}  # nothing left behind in the modem
    sms = [c for c in sim.commands if c.startswith(("AT+CMGW", "AT+CMSS", "AT+CMGD"))]
    assert [c.split("=")[0] for c in sms] == ["AT+CMGW", "AT+CMSS", "AT+CMGD"]


async def test_full_modem_storage_is_cleared_of_leftovers_then_the_sms_goes(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    # Sent messages a crash left behind before they were deleted: no outbox row wants them.
    sim.state.storage_slots = 2
    for i in (1, 2):
        (part,) = submit_pdus("+84900000009", f"old {i}")
        sim.stored[i] = Stored(STO_SENT, part.pdu_hex, part.tpdu_len)
    farmer(store)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
        await d.enqueue(alert())
        await sim.wait_sent(1)
        await until(lambda: store.deliveries()[0]["status"] == "sent")
    assert sim.messages() == [(FARMER, MSG_VI)]
    assert store.deliveries()[0]["attempts"] == 1  # cleared and sent in the same attempt


async def test_a_lost_modem_answer_is_settled_from_storage_not_resent(
    store: NotifyStore, sim: GsmModemSim
) -> None:
    farmer(store)
    sim.state.unanswered_sends = 1  # the SMS goes; its +CMSS answer never comes
    config = ModemConfig(port=str(sim.link), command_timeout_s=2, send_timeout_s=0.5)
    async with AsyncGsmModem(config) as modem:
        await modem.prepare()
        async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
            await d.enqueue(alert())
            await sim.wait_sent(1)
            await until(lambda: store.deliveries()[0]["status"] == "sent")
    (row,) = store.deliveries()
    assert (row["attempts"], row["note"]) == (2, SMS_CONFIRMED_NOTE)
    assert len(sim.sent) == 1  # counted: the retry read the storage instead of resending


async def test_sms_retried_after_network_out_of_order(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    sim.fail_next_sends(38, count=2)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
        await d.enqueue(alert())
        await sim.wait_sent(1)
        await until(lambda: store.deliveries()[0]["status"] == "sent")
    (row,) = store.deliveries()
    assert row["attempts"] == 3
    assert len(sim.sent) == 1


async def test_sms_not_retried_when_the_sim_cannot_send(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    sim.fail_next_sends(50)  # no credit: a person must act
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, cfg()) as d:
        await d.enqueue(alert())
        await until(lambda: store.deliveries()[0]["status"] == "failed")
    (row,) = store.deliveries()
    assert "top up" in str(row["last_error"])
    assert row["attempts"] == 1
    assert sim.sent == []


async def test_flapping_sensor_sends_one_message_then_one_digest(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    # One message a window; the window is short so the digest leaves within the test.
    config = cfg(rate_limit=1, rate_window_s=1.0)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, config) as d:
        await d.enqueue(alert(0))
        await sim.wait_sent(1)
        for n in range(1, 26):  # the sensor flaps: 25 more starts and their ends
            await d.enqueue(alert(n, severity=Severity.WARNING))
            await d.enqueue(alert(n, Phase.END, severity=Severity.WARNING))
        await until(lambda: all(r["status"] == "sent" for r in store.deliveries()))
    assert len(store.deliveries()) == 51
    assert len(sim.messages()) == 2
    assert sim.messages()[1][1].startswith("50 cảnh báo: ")


async def test_email_over_starttls(tmp_path: Path, store: NotifyStore) -> None:
    sub = store.add_subscriber("Cán bộ xã", email="canbo@xa.example", language="en")
    store.subscribe(sub.id, "dinh-mon")
    with smtp_server(tmp_path) as (port, box, cert):
        smtp = SmtpConfig(host="localhost", port=port, ca_file=str(cert))
        async with Dispatcher(store, {Channel.EMAIL: EmailSender(smtp)}, cfg()) as d:
            await d.enqueue(alert())
            await until(lambda: len(box.messages) == 1)
            await until(lambda: store.deliveries()[0]["status"] == "sent")
    rcpts, data, tls = box.messages[0]
    assert rcpts == ["canbo@xa.example"]
    assert tls, "the message must have travelled after STARTTLS"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"].startswith("[Alert] Salinity 0.7‰")
    assert msg.get_content().strip() == MSG_EN
    assert "salinity.dm-field-3.1" in msg["Message-ID"]


async def test_email_refused_without_starttls(tmp_path: Path, store: NotifyStore) -> None:
    sub = store.add_subscriber("Cán bộ xã", email="canbo@xa.example")
    store.subscribe(sub.id, "dinh-mon")
    with smtp_server(tmp_path, starttls=False) as (port, box, _):
        sender = EmailSender(SmtpConfig(host="localhost", port=port))
        batch = store.claim(time.time() + 1, 3, 60) if store.enqueue(alert(), 60) else []
        with pytest.raises(DeliveryError) as err:
            await sender.send(batch[0])
    assert not err.value.retryable
    assert "STARTTLS" in str(err.value)
    assert box.messages == []


async def test_webhook_signed_and_retried(store: NotifyStore) -> None:
    secret = "commune-secret-123"
    with webhook_receiver(secret, fail_first=2) as (url, hook):
        sub = store.add_subscriber("Zalo OA", webhook_url=url, webhook_secret=secret, language="en")
        store.subscribe(sub.id, "dinh-mon")
        async with (
            httpx.AsyncClient(timeout=5) as client,
            Dispatcher(store, {Channel.WEBHOOK: WebhookSender(client)}, cfg()) as d,
        ):
            await d.enqueue(alert())
            await until(lambda: len(hook.received) == 1)
            await until(lambda: store.deliveries()[0]["status"] == "sent")
    assert hook.status_codes == [500, 500, 204]
    assert hook.rejected == 0
    assert hook.keys == ["salinity:dm-field-3:1:start:1:webhook"]
    assert hook.received[0]["alerts"][0]["text"] == MSG_EN


async def test_webhook_with_a_wrong_secret_is_rejected_and_not_retried(store: NotifyStore) -> None:
    with webhook_receiver("the-right-one") as (url, hook):
        sub = store.add_subscriber("Telegram", webhook_url=url, webhook_secret="a-wrong-one")
        store.subscribe(sub.id, "dinh-mon")
        async with (
            httpx.AsyncClient(timeout=5) as client,
            Dispatcher(store, {Channel.WEBHOOK: WebhookSender(client)}, cfg()) as d,
        ):
            await d.enqueue(alert())
            await until(lambda: store.deliveries()[0]["status"] == "failed")
    assert hook.rejected == 1
    assert hook.received == []


async def test_escalation_to_staff_when_nobody_acknowledges(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    farmer(store)
    staff = store.add_subscriber("Trưởng ấp", phone=STAFF, staff=True)
    store.subscribe(staff.id, "dinh-mon", rule="water_level_alarm")  # not this rule itself
    config = cfg(escalate_after_s=0.3)
    async with Dispatcher(store, {Channel.SMS: SmsSender(modem, store)}, config) as d:
        await d.enqueue(alert(1))
        await d.enqueue(alert(2))
        assert store.acknowledge("salinity:dm-field-3:2", by="chu-bay")
        await sim.wait_sent(3)  # two to the farmer, one escalation to staff
        await until(lambda: all(r["status"] == "sent" for r in store.deliveries()))
    assert sorted(sim.messages()) == sorted(
        [(FARMER, MSG_VI), (FARMER, MSG_VI), (STAFF, "CHƯA AI XỬ LÝ: " + MSG_VI)]
    )


async def test_quiet_hours_hold_warnings_but_not_danger(store: NotifyStore) -> None:
    now = time.time()
    local = datetime.fromtimestamp(now, ZoneInfo("Asia/Ho_Chi_Minh"))
    minute = local.hour * 60 + local.minute
    sid = farmer(store, quiet=(minute, (minute + 120) % 1440))  # quiet from now for two hours
    store.enqueue(alert(1, severity=Severity.WARNING), 60, now)
    store.enqueue(alert(2, severity=Severity.DANGER), 60, now)
    batches = store.claim(now, 3, 60)
    assert [r.alert_id for b in batches for r in b.rows] == ["salinity:dm-field-3:2"]
    held = [r for r in store.deliveries() if r["status"] == "pending"]
    assert len(held) == 1
    assert store.claim(now + 119 * 60 - local.second, 3, 60) == []
    (later,) = store.claim(now + 120 * 60 - local.second, 3, 60)  # quiet hours over
    assert [r.alert_id for r in later.rows] == ["salinity:dm-field-3:1"]
    assert sid


async def test_stop_link_cancels_what_was_waiting(store: NotifyStore) -> None:
    sid = farmer(store)
    store.enqueue(alert(), 60)
    assert store.stop(token=store.subscriber(sid).stop_token) == 1
    assert store.claim(time.time() + 1, 3, 60) == []
    assert store.enqueue(alert(2), 60) == 0
    assert [r["last_error"] for r in store.deliveries()] == ["unsubscribed"]


async def test_what_the_gateway_sent_is_never_sent_again(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    sid = farmer(store)
    ev = alert()
    key = f"{ev.alert_id}:{ev.phase}:{sid}:sms"
    assert store.record_sent_elsewhere(key, ev, sid, Channel.SMS, time.time())
    senders: dict[Channel, Sender] = {Channel.SMS: SmsSender(modem, store)}
    async with Dispatcher(store, senders, cfg()) as d:
        assert await d.enqueue(ev) == 0
        await d.enqueue(alert(2))  # something the server does send, to know it ran
        await sim.wait_sent(1)
        await until(lambda: all(r["status"] == "sent" for r in store.deliveries()))
    assert [(r["alert_id"], r["origin"], r["status"]) for r in store.deliveries()] == [
        ("salinity:dm-field-3:1", "gateway", "sent"),
        ("salinity:dm-field-3:2", "server", "sent"),
    ]
    assert len(sim.sent) == 1


async def test_restart_sends_what_was_in_flight_and_nothing_that_was_sent(
    tmp_path: Path, sim: GsmModemSim, modem: AsyncGsmModem
) -> None:
    path = tmp_path / "notify.sqlite3"
    first = NotifyStore(path)
    farmer(first)
    first.enqueue(alert(1), 60)
    first.enqueue(alert(2), 60)
    (batch,) = first.claim(time.time(), 3, 60)  # both claimed as one digest...
    first.settle(batch, time.time())  # ...and sent
    first.enqueue(alert(3), 60)
    first.claim(time.time(), 3, 60, lease_s=0.5)  # claimed, then the process dies
    first.close()
    second = NotifyStore(path)
    async with Dispatcher(second, {Channel.SMS: SmsSender(modem, second)}, cfg()) as d:
        assert d is not None
        await sim.wait_sent(1)
        await until(lambda: all(r["status"] == "sent" for r in second.deliveries()))
    second.close()
    assert [t for _, t in sim.messages()] == [MSG_VI]
    assert len(sim.sent) == 1


def test_natural_ids_match_between_gateway_and_server(store: NotifyStore) -> None:
    from server.notify.model import natural_alert_id

    sid = farmer(store)
    aid = natural_alert_id("salinity_over_crop", "dinh-mon", "dm-sal-1", "salinity_ppt", 1_700_000)
    ev = AlertEvent(aid, "salinity_over_crop", Severity.DANGER, "dinh-mon", Phase.START,
                    1_700_000, MSG_VI, MSG_EN, device="dm-sal-1", field="dm-field-3")  # fmt: skip
    # The gateway's report arrives first (uplink back), the server's own evaluation second.
    assert store.record_sent_elsewhere(f"{aid}:start:{sid}:sms", ev, sid, Channel.SMS, 1.0)
    assert store.enqueue(ev, 60) == 0
    assert store.claim(time.time() + 1, 3, 60) == []


async def test_an_alert_that_ended_does_not_escalate(store: NotifyStore) -> None:
    farmer(store)
    staff = store.add_subscriber("Trưởng ấp", phone=STAFF, staff=True)
    store.subscribe(staff.id, "dinh-mon")
    now = time.time()
    store.enqueue(alert(1), 60, now)
    store.enqueue(alert(2), 60, now)
    store.enqueue(alert(1, Phase.END), 60, now + 10)
    assert store.escalate_due(now + 61) == 1  # alert 2 only
    phases = [(r["alert_id"], r["phase"], r["name"]) for r in store.deliveries()]
    assert phases.count(("salinity:dm-field-3:2", "escalation", "Trưởng ấp")) == 1
    assert ("salinity:dm-field-3:1", "escalation", "Trưởng ấp") not in phases


async def test_no_working_channel_retries_then_fails(store: NotifyStore) -> None:
    farmer(store)
    async with Dispatcher(store, {}, cfg(max_attempts=3)) as d:
        await d.enqueue(alert())
        await until(lambda: store.deliveries()[0]["status"] == "failed")
    (row,) = store.deliveries()
    assert row["attempts"] == 3
    assert "no sms channel" in str(row["last_error"])


@pytest.mark.parametrize("reply", ["STOP", "Hủy", "huy."])
async def test_a_stop_reply_stops_the_next_message(
    store: NotifyStore, sim: GsmModemSim, modem: AsyncGsmModem, reply: str
) -> None:
    farmer(store)
    sender = SmsSender(modem, store)
    async with Dispatcher(store, {Channel.SMS: sender}, cfg()) as d:
        await d.enqueue(alert(1))
        await sim.wait_sent(1)
        sim.receive("0912345678", "Đúng rồi")  # not a stop word (unaccented: "Dung roi")
        sim.receive("0912345678", reply)  # the same phone, spelled nationally
        await d.enqueue(alert(2))
        await until(
            lambda: len(store.deliveries()) == 2 and store.deliveries()[1]["status"] == "failed"
        )
    assert len(sim.sent) == 1
    assert "STOP" in str(store.deliveries()[1]["last_error"])
    assert sim.inbox == {}
    # The other reply is kept durably for staff (a new connection reads it), with its sender.
    again = NotifyStore(store.path)
    try:
        kept = again.replies()
    finally:
        again.close()
    assert [(r["text"], r["name"]) for r in kept] == [("Đúng rồi", "Chú Bảy")]


def test_alert_engine_rows_become_events_with_natural_ids(store: NotifyStore) -> None:
    from server.notify.bridge import UnknownAlertShape, event_from_alert

    row: dict[str, object] = {
        "id": 17, "rule": "salinity_over_crop", "severity": "danger", "hamlet": "dinh-mon",
        "device": "dm-sal-1", "metric": "salinity_ppt", "start_ms": 1_700_000_000_000,
        "end_ms": None, "message_vi": MSG_VI, "message_en": MSG_EN,
    }  # fmt: skip
    start = event_from_alert(row, Phase.START)
    assert start.alert_id == "salinity_over_crop:dinh-mon:dm-sal-1:salinity_ppt:1700000000000"
    assert start.severity is Severity.DANGER
    end = event_from_alert({**row, "id": 99, "end_ms": 1_700_000_900_000}, Phase.END)
    assert (end.alert_id, end.at_ms) == (start.alert_id, 1_700_000_900_000)
    sid = store.add_subscriber("Chú Bảy", phone=FARMER).id
    store.subscribe(sid, "dinh-mon", rule="salinity_over_crop")
    assert store.enqueue(start, 60) == 1
    assert store.enqueue(event_from_alert({**row, "id": 18}, Phase.START), 60) == 0
    with pytest.raises(UnknownAlertShape):
        event_from_alert({**row, "severity": "apocalyptic"}, Phase.START)
    with pytest.raises(UnknownAlertShape):
        event_from_alert(row, Phase.END)  # an end needs end_ms


def test_a_live_claim_is_not_taken_by_another_worker(tmp_path: Path) -> None:
    path = tmp_path / "notify.sqlite3"
    a, b = NotifyStore(path), NotifyStore(path)  # two server workers, one outbox
    try:
        farmer(a)
        now = time.time()
        a.enqueue(alert(), 60, now)
        (batch,) = a.claim(now, 3, 60, lease_s=300)
        assert b.recover(now + 299) == 0
        assert b.claim(now + 299, 3, 60) == []
        assert b.recover(now + 300) == 1  # the lease ran out: worker a died
        (again,) = b.claim(now + 300, 3, 60)
        assert again.key == batch.key
    finally:
        a.close()
        b.close()


def test_a_digest_cut_off_by_a_crash_goes_again_unchanged_with_its_key(store: NotifyStore) -> None:
    """Exactly once at a receiver that drops repeated Idempotency-Keys: the digest in flight at
    a crash goes again with the same rows and key; an alert that came meanwhile goes with a key
    of its own (merged into the old digest under the old key, a receiver would drop it)."""
    sub = store.add_subscriber("Zalo OA", webhook_url="https://example.invalid/hook",
                               webhook_secret="s" * 16, language="en")  # fmt: skip
    store.subscribe(sub.id, "dinh-mon")
    t = 1_000.0
    for n in (1, 2):
        store.enqueue(alert(n), 60, now=t)
    (first,) = store.claim(t, rate_limit=5, rate_window_s=60, lease_s=10)
    assert [r.alert_id for r in first.rows] == [alert(1).alert_id, alert(2).alert_id]
    # The process dies mid-send; a third alert arrives; the lease runs out.
    store.enqueue(alert(3), 60, now=t + 1)
    assert store.recover(t + 11) == 2
    again = store.claim(t + 11, rate_limit=5, rate_window_s=60, lease_s=10)
    assert [[r.alert_id for r in b.rows] for b in again] == [
        [alert(1).alert_id, alert(2).alert_id],
        [alert(3).alert_id],
    ]
    assert again[0].key == first.key
    assert again[1].key not in (first.key, again[0].key)
    notes = [r["note"] for r in store.deliveries()]
    assert notes == [RESENT_NOTE[Channel.WEBHOOK]] * 2 + [None]


def test_a_notify_file_from_before_the_modem_storage_opens_and_gains_the_column(
    tmp_path: Path,
) -> None:
    # An outbox as the first release made it: no note, no sms_slots.
    path = tmp_path / "notify.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
        " subscriber_id INTEGER NOT NULL, channel TEXT NOT NULL, alert_id TEXT NOT NULL,"
        " phase TEXT NOT NULL, severity INTEGER NOT NULL, hamlet TEXT NOT NULL,"
        " text TEXT NOT NULL, status TEXT NOT NULL, origin TEXT NOT NULL DEFAULT 'server',"
        " attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, last_error TEXT,"
        " created_at REAL NOT NULL, sent_at REAL, batch INTEGER, lease_until REAL)"
    )
    conn.execute(
        "INSERT INTO outbox(key, subscriber_id, channel, alert_id, phase, severity, hamlet,"
        " text, status, next_at, created_at) VALUES ('k', 1, 'sms', 'a', 'start', 3, 'dinh-mon',"
        " 'x', 'sent', 0, 0)"
    )
    conn.commit()
    conn.close()
    store = NotifyStore(path)
    try:
        (row,) = store.deliveries()
        assert (row["key"], row["status"], row["note"]) == ("k", "sent", None)
        assert store.held_sms_slots() == set()
    finally:
        store.close()
