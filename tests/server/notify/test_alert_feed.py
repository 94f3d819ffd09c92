"""Alerts from the engine reach subscribers: a real server, readings posted as a gateway
posts them, salinity above the durian threshold → a signed webhook with the alert's message."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from hamlet.contract import RecordKind
from tests.server.helpers import batch, block, now_ms, post
from tests.server.notify.receivers import webhook_receiver
from tests.support.procs import ServerProcess, run_hamlet

MIN = 60_000
HAMLET = "dinh-phuoc"
SECRET = "commune-webhook-secret"


def test_a_durian_salinity_alert_reaches_the_webhook_once(server: ServerProcess) -> None:
    d = str(server.data_dir)
    gw = server.add_gateway("gw-1", HAMLET)
    run_hamlet("server", "add-hamlet", HAMLET, "--commune", "dinh-mon", "--data-dir", d)
    run_hamlet("server", "add-device", "sal-1", "--hamlet", HAMLET, "--crop", "durian",
               "--expected-interval", "60", "--data-dir", d)  # fmt: skip
    run_hamlet("server", "add-user", "boss", "--role", "admin", "--no-password", "--data-dir", d)
    admin = json.loads(run_hamlet("server", "create-token", "boss", "--data-dir", d, "--json"))
    h = {"Authorization": f"Bearer {admin['token']}"}
    with (
        webhook_receiver(SECRET) as (url, hook),
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        r = c.post("/api/v1/notify/subscribers", headers=h, json={
            "name": "HTX", "webhook_url": url, "webhook_secret": SECRET})  # fmt: skip
        c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions", headers=h,
               json={"hamlet": HAMLET, "min_severity": "danger"})  # fmt: skip
        t0 = (now_ms() // MIN - 60) * MIN
        vals = [0.2] * 10 + [0.7] * 20 + [0.2] * 10  # 20 minutes above 0.5‰, then back
        times = [t0 + m * MIN for m in range(40)]
        b = block("sal-1", "salinity", list(range(1, 41)), times=times, values=vals,
                  kind=RecordKind.READING)  # fmt: skip
        assert post(c, gw, batch("gw-1", [b])).status_code == 200
        deadline = time.monotonic() + 30
        while sum(len(m["alerts"]) for m in hook.received) < 2:
            assert time.monotonic() < deadline, hook.received
            time.sleep(0.05)
        # The same readings again (a gateway retry): no new alert, no new message.
        assert post(c, gw, batch("gw-1", [b])).status_code == 200
        c.post("/api/v1/alerts/sync", headers=h)
        log = c.get("/api/v1/notify/deliveries", headers=h).json()
    # Start and end were both known when the batch settled: one message carries both.
    texts = [a["text"] for m in hook.received for a in m["alerts"]]
    assert texts == ["Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰",
                     "Đã hết: Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"]  # fmt: skip
    assert [(r["phase"], r["status"]) for r in log] == [("start", "sent"), ("end", "sent")]
    assert log[0]["alert_id"].startswith("salinity.danger:dinh-phuoc:sal-1:salinity:")


def test_a_gateway_gone_silent_is_announced_without_waiting_for_another_batch(
    tmp_path: Path,
) -> None:
    """The engine's sweeper opens "gateway silent" with no batch arriving (the gateway is the
    thing that went quiet): the notifier hears it from the engine, not at the next ingest."""
    from tests.support.procs import start_server

    env = {"HAMLET_SERVER__ALERTS__GATEWAY_SILENT_S": "2"}
    with start_server(tmp_path / "server", env=env) as srv:
        d = str(srv.data_dir)
        gw = srv.add_gateway("gw-1", HAMLET)
        run_hamlet("server", "add-user", "boss", "--role", "admin", "--no-password",
                   "--data-dir", d)  # fmt: skip
        admin = json.loads(run_hamlet("server", "create-token", "boss", "--data-dir", d, "--json"))
        h = {"Authorization": f"Bearer {admin['token']}"}
        with (
            webhook_receiver(SECRET) as (url, hook),
            httpx.Client(base_url=srv.url, timeout=30) as c,
        ):
            r = c.post("/api/v1/notify/subscribers", headers=h, json={
                "name": "HTX", "webhook_url": url, "webhook_secret": SECRET})  # fmt: skip
            c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions", headers=h,
                   json={"hamlet": HAMLET, "rule": "gateway.silent"})  # fmt: skip
            b = block("gw-1", "uptime_s", [1], times=[now_ms()], values=[1.0],
                      kind=RecordKind.HEARTBEAT)  # fmt: skip
            assert post(c, gw, batch("gw-1", [b])).status_code == 200
            # No further batch: only the sweeper can open the alert, two seconds on.
            assert hook.arrived.wait(60), "the silent gateway's alert never reached the webhook"
            log = c.get("/api/v1/notify/deliveries", headers=h).json()
    alerts = [a for m in hook.received for a in m["alerts"]]
    assert [a["alert_id"].split(":")[0] for a in alerts] == ["gateway.silent"]
    assert [r["alert_id"].split(":")[0] for r in log] == ["gateway.silent"]
