"""A server killed -9 while an SMS is in flight: at least once, never lost, and said so.

A modem gives no idempotency key: once the SMS has left, a host that dies before the modem's
``+CMGS`` answer cannot know it went. The project's decision (docs/notify.md, "SMS and
crashes"): a danger alert sent twice beats one never sent, so the SMS goes again after the
claim's lease runs out, and the delivery log says the phone may have got it twice.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from server.notify.model import Channel
from server.notify.store import RESENT_NOTE
from tests.server.notify.test_server_notify import admin_token, wait_for
from tests.support.procs import HAMLET, ManagedProcess, start_server

FARMER_A, FARMER_B = "+84900000001", "+84900000002"


def _records(path: Path) -> list[str]:
    """The numbers the modem sent to, one line per complete SMS, in order."""
    if not path.exists():
        return []
    return [json.loads(x)["number"] for x in path.read_text("utf-8").splitlines()]


def test_kill_9_mid_sms_resends_it_and_the_log_says_so(tmp_path: Path) -> None:
    link, record, data = tmp_path / "tty-modem", tmp_path / "sent.jsonl", tmp_path / "server"
    # The first send reaches the network but its answer never comes: the server is killed
    # while it waits, exactly between "the phone got it" and "the outbox knows".
    modem = ManagedProcess([*HAMLET, "sim", "modem", "--link", str(link), "--record",
                            str(record), "--unanswered-sends", "1"]).start()  # fmt: skip
    try:
        modem.wait_for(r"^modem ready")
        env = {
            "HAMLET_SERVER__NOTIFY__MODEM__PORT": str(link),
            "HAMLET_SERVER__NOTIFY__CLAIM_LEASE_S": "2",  # a dead claim goes again after 2 s
        }
        with start_server(data, env=env) as srv:
            h = {"Authorization": f"Bearer {admin_token(data)}"}
            with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
                for name, phone in (("Chú Bảy", FARMER_A), ("Cô Năm", FARMER_B)):
                    who = {"name": name, "phone": phone, "hamlet": "dinh-mon"}
                    sid = c.post("/api/v1/notify/subscribers", json=who).json()["id"]
                    r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions",
                               json={"hamlet": "dinh-mon"})  # fmt: skip
                    assert r.status_code == 201, r.text
                r = c.post("/api/v1/notify/test-message", json={"hamlet": "dinh-mon"})
                assert r.json() == {"queued": 2}
            modem.wait_for(rf"^modem sms to \{FARMER_A}:")
            srv.process.kill9()
        assert _records(record) == [FARMER_A]
        # The kill left both claimed rows mid-send: the outbox cannot know A's SMS went.
        conn = sqlite3.connect(data / "notify.sqlite3")
        try:
            states = conn.execute("SELECT status FROM outbox ORDER BY id").fetchall()
        finally:
            conn.close()
        assert states == [("sending",), ("sending",)]

        with start_server(data, env=env) as srv, httpx.Client(base_url=srv.url, headers=h) as c:

            def all_sent() -> bool:
                rows = c.get("/api/v1/notify/deliveries").json()
                return [r["status"] for r in rows] == ["sent", "sent"]

            wait_for(all_sent)
            log = c.get("/api/v1/notify/deliveries").json()
        modem.wait_for(rf"^modem sms to \{FARMER_B}:")
    finally:
        modem.stop()
    # Counted one by one: A got the SMS in flight at the kill twice (at least once), B once;
    # nothing lost, nothing else repeated.
    got = _records(record)
    assert sorted(got) == [FARMER_A, FARMER_A, FARMER_B]
    assert got.count(FARMER_A) == 2
    assert got.count(FARMER_B) == 1
    assert [r["attempts"] for r in log] == [2, 2]
    assert [r["note"] for r in log] == [RESENT_NOTE[Channel.SMS]] * 2
