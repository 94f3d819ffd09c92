"""A server killed -9 while an SMS is in flight: exactly once, from the modem's own storage.

The server writes each SMS to the modem's storage (AT+CMGW) and commits the storage index on
the outbox row before it asks the modem to send it from there (AT+CMSS). The modem marks the
stored message STO SENT once it has gone, whether or not the host lives to read the answer, so
the restarted server reads the status (AT+CMGR) instead of guessing (docs/notify.md, "SMS and
crashes"). Only a modem that lost its storage meanwhile makes it send again, and the log says so.

Each test runs a real ``hamlet server run`` against ``hamlet sim modem`` on a real pty and
counts the modem's own record of what went, line by line.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from server.notify.store import (
    SMS_CONFIRMED_NOTE,
    SMS_FROM_STORAGE_NOTE,
    SMS_LOST_NOTE,
    SMS_UNSTORED_NOTE,
)
from tests.server.notify.test_server_notify import admin_token, wait_for
from tests.support.procs import HAMLET, ManagedProcess, start_server

FARMER_A, FARMER_B = "+84900000001", "+84900000002"


def _records(path: Path) -> list[str]:
    """The numbers the modem sent to, one line per complete SMS, in order."""
    if not path.exists():
        return []
    return [json.loads(x)["number"] for x in path.read_text("utf-8").splitlines()]


def _outbox(data: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(data / "notify.sqlite3")
    try:
        return conn.execute("SELECT status, sms_slots FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def _modem(link: Path, record: Path, *faults: str) -> ManagedProcess:
    argv = [*HAMLET, "sim", "modem", "--link", str(link), "--record", str(record), *faults]
    modem = ManagedProcess(argv).start()
    modem.wait_for(r"^modem ready")
    return modem


def _env(link: Path) -> dict[str, str]:
    return {
        "HAMLET_SERVER__NOTIFY__MODEM__PORT": str(link),
        "HAMLET_SERVER__NOTIFY__CLAIM_LEASE_S": "2",  # a dead claim is taken up after 2 s
    }


def _send_to_both_then_kill(data: Path, link: Path, modem: ManagedProcess, cut: str) -> str:
    """A test message for farmers A and B; the server is killed -9 once ``cut`` is printed by
    the modem (while it waits for A's answer). The admin token, for the restart."""
    with start_server(data, env=_env(link)) as srv:
        token = admin_token(data)
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
            for name, phone in (("Chú Bảy", FARMER_A), ("Cô Năm", FARMER_B)):
                who = {"name": name, "phone": phone, "hamlet": "dinh-mon"}
                sid = c.post("/api/v1/notify/subscribers", json=who).json()["id"]
                r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions",
                           json={"hamlet": "dinh-mon"})  # fmt: skip
                assert r.status_code == 201, r.text
            r = c.post("/api/v1/notify/test-message", json={"hamlet": "dinh-mon"})
            assert r.json() == {"queued": 2}
        modem.wait_for(cut)
        srv.process.kill9()
    return token


def _restart_until_settled(data: Path, link: Path, token: str) -> list[dict[str, object]]:
    h = {"Authorization": f"Bearer {token}"}
    with (
        start_server(data, env=_env(link)) as srv,
        httpx.Client(base_url=srv.url, headers=h, timeout=10) as c,
    ):

        def all_sent() -> bool:
            rows = c.get("/api/v1/notify/deliveries").json()
            return [r["status"] for r in rows] == ["sent", "sent"]

        wait_for(all_sent)
        log: list[dict[str, object]] = c.get("/api/v1/notify/deliveries").json()
    return log


def test_kill_9_after_the_sms_went_settles_it_from_the_modem_storage(tmp_path: Path) -> None:
    link, record, data = tmp_path / "tty-modem", tmp_path / "sent.jsonl", tmp_path / "server"
    # A's SMS goes from storage but the answer never comes: the server is killed while it
    # waits, exactly between "the phone got it" and "the outbox knows".
    modem = _modem(link, record, "--unanswered-sends", "1")
    try:
        token = _send_to_both_then_kill(data, link, modem, rf"^modem sms to \{FARMER_A}:")
        assert _records(record) == [FARMER_A]
        # Both rows were claimed; A's storage index was committed before it was sent.
        assert _outbox(data) == [("sending", "[1]"), ("sending", None)]
        log = _restart_until_settled(data, link, token)
        modem.wait_for(rf"^modem sms to \{FARMER_B}:")
    finally:
        modem.stop()
    got = _records(record)  # counted one by one: each farmer exactly once
    assert got.count(FARMER_A) == 1
    assert got.count(FARMER_B) == 1
    assert len(got) == 2
    assert [r["attempts"] for r in log] == [2, 2]
    assert [r["note"] for r in log] == [SMS_CONFIRMED_NOTE, SMS_UNSTORED_NOTE]
    assert _outbox(data) == [("sent", None), ("sent", None)]


def test_kill_9_before_the_modem_sent_it_sends_it_once_after_restart(tmp_path: Path) -> None:
    link, record, data = tmp_path / "tty-modem", tmp_path / "sent.jsonl", tmp_path / "server"
    # A's SMS is stored and the modem asked to send it, but it hangs: still STO UNSENT.
    modem = _modem(link, record, "--stalled-sends", "1")
    try:
        token = _send_to_both_then_kill(data, link, modem, r"^modem stalled send from storage 1")
        assert _records(record) == []
        assert _outbox(data) == [("sending", "[1]"), ("sending", None)]
        log = _restart_until_settled(data, link, token)
        modem.wait_for(rf"^modem sms to \{FARMER_B}:")
    finally:
        modem.stop()
    got = _records(record)
    assert got.count(FARMER_A) == 1
    assert got.count(FARMER_B) == 1
    assert len(got) == 2
    assert [r["note"] for r in log] == [SMS_FROM_STORAGE_NOTE, SMS_UNSTORED_NOTE]


def test_a_modem_that_lost_its_storage_sends_again_and_the_log_says_so(tmp_path: Path) -> None:
    link, record, data = tmp_path / "tty-modem", tmp_path / "sent.jsonl", tmp_path / "server"
    modem = _modem(link, record, "--unanswered-sends", "1")
    try:
        token = _send_to_both_then_kill(data, link, modem, rf"^modem sms to \{FARMER_A}:")
    finally:
        modem.stop()
    # The modem is swapped (or power-cycled with storage in RAM): index 1 is empty now.
    modem = _modem(link, record)
    try:
        log = _restart_until_settled(data, link, token)
        modem.wait_for(rf"^modem sms to \{FARMER_B}:")
    finally:
        modem.stop()
    got = _records(record)  # the one exception to exactly once: A twice, and the log says so
    assert got.count(FARMER_A) == 2
    assert got.count(FARMER_B) == 1
    assert len(got) == 3
    assert [r["note"] for r in log] == [SMS_LOST_NOTE, SMS_UNSTORED_NOTE]
