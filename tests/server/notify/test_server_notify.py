"""The notifier inside a real server process: API, delivery log, and a kill -9 mid-delivery."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.server.notify.receivers import webhook_receiver
from tests.support.procs import run_hamlet, start_server

SECRET = "commune-webhook-secret"


def admin_token(data_dir: Path) -> str:
    run_hamlet("server", "add-user", "boss", "--role", "admin", "--no-password",
               "--data-dir", str(data_dir))  # fmt: skip
    out = run_hamlet("server", "create-token", "boss", "--data-dir", str(data_dir), "--json")
    return str(json.loads(out)["token"])


def wait_for(pred: object, timeout: float = 30.0) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_kill_9_mid_delivery_loses_nothing_and_resends_with_the_same_key(tmp_path: Path) -> None:
    data = tmp_path / "server"
    lease = {"HAMLET_SERVER__NOTIFY__CLAIM_LEASE_S": "2"}  # how long until a dead claim goes
    with webhook_receiver(SECRET) as (url, hook):
        hook.hold = threading.Event()  # the first request hangs: the server dies meanwhile
        with start_server(data, env=lease) as srv:
            token = admin_token(data)
            h = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
                ids = []
                for name in ("Zalo OA", "Telegram"):
                    r = c.post("/api/v1/notify/subscribers", json={
                        "name": name, "webhook_url": url, "webhook_secret": SECRET,
                        "language": "en"})  # fmt: skip
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["id"])
                    r = c.post(
                        f"/api/v1/notify/subscribers/{ids[-1]}/subscriptions",
                        json={"hamlet": "dinh-mon"},
                    )
                    assert r.status_code == 201, r.text
                r = c.post("/api/v1/notify/test-message", json={"hamlet": "dinh-mon"})
                assert r.json() == {"queued": 2}
                assert hook.arrived.wait(30)
            srv.process.kill9()
        hook.hold.set()  # the receiver got it, but the server never heard back
        hook.hold = None
        wait_for(lambda: len(hook.keys) == 1)
        with start_server(data, env=lease) as srv, httpx.Client(base_url=srv.url, headers=h) as c:
            wait_for(lambda: len(hook.keys) == 3)

            def all_sent() -> bool:
                return all(r["status"] == "sent" for r in c.get("/api/v1/notify/deliveries").json())

            wait_for(all_sent)
            log = c.get("/api/v1/notify/deliveries").json()
    # Nothing lost: both subscribers got it. The one in flight at the kill went again with the
    # same Idempotency-Key (a receiver drops the repeat); the other exactly once.
    assert len(log) == 2
    # Both were claimed together before the kill (one digest round), so both count 2 attempts.
    assert [r["attempts"] for r in log] == [2, 2]
    keys = hook.keys
    assert len(set(keys)) == 2
    assert sorted(keys.count(k) for k in set(keys)) == [1, 2]
    assert keys[0] == keys[1]
    assert hook.rejected == 0


def test_stop_link_page_then_post(tmp_path: Path) -> None:
    data = tmp_path / "server"
    with start_server(data) as srv:
        token = admin_token(data)
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post(
                "/api/v1/notify/subscribers", json={"name": "Chú Bảy", "phone": "+84912345678"}
            )
            stop = r.json()["stop_url"].split("/notify/", 1)[1]
            c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions",
                   json={"hamlet": "dinh-mon"})  # fmt: skip
            with httpx.Client(base_url=srv.url) as anon:
                assert "Stop" in anon.get(f"/notify/{stop}").text  # a GET changes nothing
                assert c.post(
                    "/api/v1/notify/test-message", json={"hamlet": "dinh-mon"}
                ).json() == {"queued": 1}
                r = anon.post(f"/notify/{stop}")
                assert r.status_code == 200, r.text
                assert anon.post("/notify/stop/not-a-token").status_code == 404
            assert c.post("/api/v1/notify/test-message", json={"hamlet": "dinh-mon"}).json() == {
                "queued": 0
            }
            assert c.post("/api/v1/notify/subscribers", json={"name": "x", "phone": "+84912345678"},
                          headers={"Authorization": "Bearer nope"}).status_code == 401  # fmt: skip


def test_cli_manages_subscribers_and_reads_the_log(tmp_path: Path) -> None:
    d = str(tmp_path / "server")
    env = {"HOOK_SECRET": SECRET}
    out = run_hamlet("server", "notify", "add-subscriber", "Chú Bảy", "--phone", "+84912345678",
                     "--quiet", "21:00-05:30", "--data-dir", d)  # fmt: skip
    sub = json.loads(out)
    run_hamlet("server", "notify", "subscribe", str(sub["id"]), "--hamlet", "dinh-mon",
               "--rule", "salinity_over_crop", "--data-dir", d)  # fmt: skip
    out = run_hamlet("server", "notify", "add-subscriber", "Zalo", "--webhook-url",
                     "https://example.invalid/hook", "--webhook-secret-env", "HOOK_SECRET",
                     "--data-dir", d, env=env)  # fmt: skip
    assert json.loads(out)["id"] == sub["id"] + 1
    from server.notify.model import AlertEvent, Phase, Severity
    from server.notify.store import NotifyStore

    s = NotifyStore(tmp_path / "server" / "notify.sqlite3")
    try:
        assert s.subscriber(sub["id"]).quiet_start == 21 * 60
        ev = AlertEvent("a1", "salinity_over_crop", Severity.DANGER, "dinh-mon", Phase.START,
                        0, "mặn", "salty")  # fmt: skip
        assert s.enqueue(ev, 60) == 1
    finally:
        s.close()
    rows = [
        json.loads(x)
        for x in run_hamlet("server", "notify", "deliveries", "--data-dir", d).splitlines()
    ]
    assert [(r["alert_id"], r["channel"], r["status"]) for r in rows] == [("a1", "sms", "pending")]
    assert "stopped 1" in run_hamlet(
        "server", "notify", "stop", "--phone", "+84912345678", "--data-dir", d
    )
    rows = [
        json.loads(x)
        for x in run_hamlet("server", "notify", "deliveries", "--data-dir", d).splitlines()
    ]
    assert rows[0]["last_error"] == "unsubscribed"


def test_staff_manage_and_read_only_their_communes_hamlets(tmp_path: Path) -> None:
    data = tmp_path / "server"
    d = str(data)
    with start_server(data, env={"HAMLET_SERVER__AUTH__OPEN_READ": "false"}) as srv:
        for commune, hamlet in (("dinh-mon", "dm-1"), ("thoi-lai", "tl-1")):
            run_hamlet("server", "add-commune", commune, "--data-dir", d)
            run_hamlet("server", "add-hamlet", hamlet, "--commune", commune, "--data-dir", d)
        run_hamlet("server", "add-user", "can-bo-tl", "--role", "staff", "--commune", "thoi-lai",
                   "--no-password", "--data-dir", d)  # fmt: skip
        staff = json.loads(run_hamlet("server", "create-token", "can-bo-tl", "--data-dir", d,
                                      "--json"))["token"]  # fmt: skip
        admin = admin_token(data)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            a = {"Authorization": f"Bearer {admin}"}
            s = {"Authorization": f"Bearer {staff}"}
            farmer = {"name": "Chú Bảy", "phone": "+84912345678"}
            sid = c.post("/api/v1/notify/subscribers", headers=a, json=farmer).json()["id"]
            for hamlet in ("dm-1", "tl-1"):
                r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions", headers=a,
                           json={"hamlet": hamlet})  # fmt: skip
                assert r.status_code == 201
                assert c.post("/api/v1/notify/test-message", headers=a,
                              json={"hamlet": hamlet}).json() == {"queued": 1}  # fmt: skip
            r = c.post(f"/api/v1/notify/subscribers/{sid}/subscriptions", headers=s,
                       json={"hamlet": "dm-1"})  # fmt: skip
            assert r.status_code == 404  # Chú Bảy belongs to dm-1 (their first subscription)
            assert c.post("/api/v1/notify/test-message", headers=s,
                          json={"hamlet": "dm-1"}).status_code == 403  # fmt: skip
            seen = c.get("/api/v1/notify/deliveries", headers=s).json()
            assert [r["hamlet"] for r in seen] == ["tl-1"]
            assert len(c.get("/api/v1/notify/deliveries", headers=a).json()) == 2
