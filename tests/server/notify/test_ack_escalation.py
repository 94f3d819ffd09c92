"""Acknowledging an alert through the alerts API stops its escalation to staff: a real server,
two danger alerts, one acknowledged by a person, only the other reaches staff as unattended."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from hamlet.contract import RecordKind
from tests.server.helpers import batch, block, now_ms, post
from tests.server.notify.receivers import webhook_receiver
from tests.support.procs import run_hamlet, start_server

MIN = 60_000
HAMLET = "dinh-phuoc"
SECRET = "commune-webhook-secret"


def test_an_acknowledged_alert_is_not_escalated(tmp_path: Path) -> None:
    env = {"HAMLET_SERVER__NOTIFY__ESCALATE_AFTER_S": "2"}
    with start_server(tmp_path / "srv", env=env) as server:
        d = str(server.data_dir)
        gw = server.add_gateway("gw-1", HAMLET)
        run_hamlet("server", "add-hamlet", HAMLET, "--commune", "dinh-mon", "--data-dir", d)
        for dev in ("sal-1", "sal-2"):
            run_hamlet("server", "add-device", dev, "--hamlet", HAMLET, "--crop", "durian",
                       "--expected-interval", "60", "--data-dir", d)  # fmt: skip
        run_hamlet("server", "add-user", "boss", "--role", "admin", "--no-password",
                   "--data-dir", d)  # fmt: skip
        admin = json.loads(run_hamlet("server", "create-token", "boss", "--data-dir", d, "--json"))
        h = {"Authorization": f"Bearer {admin['token']}"}
        with (
            webhook_receiver(SECRET) as (staff_url, staff_hook),
            httpx.Client(base_url=server.url, timeout=30) as c,
        ):
            r = c.post("/api/v1/notify/subscribers", headers=h, json={
                "name": "UBND xã", "webhook_url": staff_url, "webhook_secret": SECRET,
                "staff": True})  # fmt: skip
            assert r.status_code in (200, 201), r.text
            c.post(f"/api/v1/notify/subscribers/{r.json()['id']}/subscriptions", headers=h,
                   json={"hamlet": HAMLET, "min_severity": "danger"})  # fmt: skip
            t0 = (now_ms() // MIN - 40) * MIN
            times = [t0 + m * MIN for m in range(30)]
            vals = [0.2] * 5 + [0.7] * 25  # above durian's 0.5‰ and still there: stays open
            blocks = [
                block(
                    dev,
                    "salinity",
                    list(range(i * 30 + 1, i * 30 + 31)),
                    times=times,
                    values=vals,
                    kind=RecordKind.READING,
                )
                for i, dev in enumerate(("sal-1", "sal-2"))
            ]
            assert post(c, gw, batch("gw-1", blocks)).status_code == 200
            c.post("/api/v1/alerts/sync", headers=h)
            open_ = c.get("/api/v1/alerts", headers=h,
                          params={"status": "open", "rule": "salinity.danger"}).json()  # fmt: skip
            by_dev = {a["device"]: a for a in open_}
            assert set(by_dev) == {"sal-1", "sal-2"}, open_
            acked = c.post(f"/api/v1/alerts/{by_dev['sal-1']['id']}/ack", headers=h)
            assert acked.status_code == 200, acked.text

            def escalations() -> list[str]:
                return [a["text"] for m in staff_hook.received for a in m["alerts"]
                        if a["text"].startswith("CHƯA AI XỬ LÝ")]  # fmt: skip

            deadline = time.monotonic() + 30
            while not escalations():
                assert time.monotonic() < deadline, staff_hook.received
                time.sleep(0.05)
            # The unacknowledged alert escalated; give the acknowledged one as long again.
            time.sleep(3)
            log = c.get("/api/v1/notify/deliveries", headers=h).json()
        esc = [r for r in log if r["phase"] == "escalation"]
        assert [r["alert_id"].split(":")[2] for r in esc] == ["sal-2"], log
        assert len(escalations()) == 1
