"""Alerts end to end: a real ``hamlet server run`` process, real HTTP, the admin CLI.

Data is posted the way a gateway posts it; ``POST /api/v1/alerts/sync`` returns once the
engine has evaluated everything received (an event, not a sleep); alerts are read back
through the API with its filters and roles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from hamlet.contract import RecordKind
from hamlet.vncalendar import VN_TZ, is_public_holiday
from tests.server.helpers import batch, block, now_ms, post
from tests.support.procs import ServerProcess, run_hamlet

MIN = 60_000
HAMLET = "dinh-phuoc"


@dataclass
class Site:
    client: httpx.Client
    gw_token: str
    staff: dict[str, str]
    viewer: dict[str, str]
    seq: int = 0

    def send(self, device: str, points: list[tuple[int, float]], kind: RecordKind) -> None:
        seqs = list(range(self.seq + 1, self.seq + 1 + len(points)))
        self.seq += len(points)
        b = block(
            device, "salinity" if kind == RecordKind.READING else "heartbeat", seqs,
            times=[t for t, _ in points], values=[v for _, v in points], kind=kind,
        )  # fmt: skip
        r = post(self.client, self.gw_token, batch("gw-1", [b]))
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(points)

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        r = self.client.post("/api/v1/alerts/sync", headers=self.staff)
        assert r.status_code == 200, r.text
        r = self.client.get("/api/v1/alerts", params={"hamlet": HAMLET, **params})
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()
        return out


def _cli(server: ServerProcess, *args: str) -> str:
    return run_hamlet("server", *args, "--data-dir", str(server.data_dir))


@pytest.fixture
def site(server: ServerProcess) -> Iterator[Site]:
    token = server.add_gateway("gw-1", HAMLET)
    _cli(server, "add-hamlet", HAMLET, "--commune", "dinh-mon")
    _cli(server, "add-hamlet", "other", "--commune", "elsewhere")
    _cli(server, "add-device", "sal-1", "--hamlet", HAMLET, "--crop", "durian",
         "--expected-interval", "60")  # fmt: skip
    _cli(server, "add-device", "kiosk-1", "--hamlet", HAMLET, "--kind", "kiosk")
    _cli(server, "add-user", "staff1", "--role", "staff", "--commune", "dinh-mon", "--no-password")
    _cli(server, "add-user", "farmer2", "--role", "viewer", "--hamlet", "other", "--no-password")
    staff = json.loads(_cli(server, "create-token", "staff1", "--json"))["token"]
    viewer = json.loads(_cli(server, "create-token", "farmer2", "--json"))["token"]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield Site(
            c,
            token,
            {"Authorization": f"Bearer {staff}"},
            {"Authorization": f"Bearer {viewer}"},
        )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=VN_TZ).isoformat(timespec="minutes")


def test_salinity_in_the_band_arrives_out_of_order_one_alert(site: Site) -> None:
    t0 = (now_ms() // MIN - 180) * MIN  # three hours ago, on the minute
    vals = [0.2] * 10 + [0.55, 0.45, 0.56, 0.42, 0.60]
    vals += [0.47 if m % 2 == 0 else 0.58 for m in range(15, 30)]
    vals[20] = 0.70
    vals += [0.35] + [0.25] * 9 + [0.15] * 6
    pts = [(t0 + m * MIN, v) for m, v in enumerate(vals)]
    site.send("sal-1", pts[25:], RecordKind.READING)  # the later half first
    site.send("sal-1", pts[:25], RecordKind.READING)
    (a,) = site.alerts(rule="salinity.danger")
    assert (a["start"], a["end"], a["peak"], a["peak_time"]) == (
        t0 + 10 * MIN, t0 + 30 * MIN, 0.70, t0 + 20 * MIN,
    )  # fmt: skip
    assert a["severity"] == "danger"
    assert a["message_vi"] == "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰"
    assert a["message_en"] == "Salinity 0.7‰ — above the durian limit 0.5‰"
    # Filters: the family, the severity, a time range in ISO 8601 or in ms, open/closed.
    (w,) = site.alerts(rule="salinity.watch")
    family = site.alerts(rule="salinity", status="closed")
    assert sorted(x["id"] for x in family) == sorted([w["id"], a["id"]])
    assert site.alerts(rule="salinity", status="open") == []
    assert [x["id"] for x in site.alerts(severity="danger", device="sal-1")] == [a["id"]]
    iso = site.alerts(rule="salinity.danger", start=_iso(t0 + 25 * MIN), end=_iso(t0 + 26 * MIN))
    ms = site.alerts(rule="salinity.danger", start=t0 + 25 * MIN, end=t0 + 26 * MIN)
    assert [x["id"] for x in iso] == [x["id"] for x in ms] == [a["id"]]
    assert site.alerts(rule="salinity.danger", start=_iso(t0 + 31 * MIN)) == []
    r = site.client.get("/api/v1/alerts", params={"start": "yesterday"})
    assert r.status_code == 422
    assert "ISO 8601" in r.text
    # Roles: a viewer of another hamlet cannot see it; anonymous cannot acknowledge; staff of
    # the commune can, and the first acknowledgement stands.
    assert site.client.get(f"/api/v1/alerts/{a['id']}", headers=site.viewer).status_code == 403
    assert site.client.get("/api/v1/alerts", headers=site.viewer,
                           params={"hamlet": HAMLET}).status_code == 403  # fmt: skip
    assert site.client.post(f"/api/v1/alerts/{a['id']}/ack").status_code == 401
    assert site.client.post(f"/api/v1/alerts/{a['id']}/ack", headers=site.viewer).status_code == 403
    r = site.client.post(f"/api/v1/alerts/{a['id']}/ack", headers=site.staff)
    assert r.status_code == 200, r.text
    assert r.json()["acked_by"] == "staff1"
    first = r.json()["acked"]
    r = site.client.post(f"/api/v1/alerts/{a['id']}/ack", headers=site.staff)
    assert r.json()["acked"] == first
    assert site.client.get("/api/v1/alerts/999999").status_code == 404


def test_late_backlog_from_two_days_offline_is_dated_by_its_readings(site: Site) -> None:
    now = now_ms()
    start = (now // MIN - 2 * 24 * 60) * MIN  # two days ago, every 5 minutes since
    ep0, ep1 = start + 20 * 60 * MIN, start + 22 * 60 * MIN  # 0.8‰ for two hours
    pts = [
        (t, 0.8 if ep0 <= t < ep1 else 0.2 + (t // MIN % 3) / 100)
        for t in range(start, now - 5 * MIN, 5 * MIN)
    ]
    chunks = [pts[i : i + 150] for i in range(0, len(pts), 150)]
    for chunk in reversed(chunks):  # newest first, as a gateway drains after an outage
        site.send("sal-1", chunk, RecordKind.READING)
    (a,) = site.alerts(rule="salinity.danger")
    assert (a["start"], a["end"], a["peak"]) == (ep0, ep1, 0.8)
    assert a["created"] >= now > a["end"]  # recorded on arrival, dated by the readings


def _past_wednesday() -> date:
    """A Wednesday at least a week ago whose Thursday is a working day too."""
    day = date.today() - timedelta(days=7)
    while day.weekday() != 2 or is_public_holiday(day) or is_public_holiday(day + timedelta(1)):
        day -= timedelta(days=1)
    return day


def _vn(day: date, h: int, m: int) -> int:
    return int(datetime(day.year, day.month, day.day, h, m, tzinfo=VN_TZ).timestamp() * 1000)


def test_kiosk_down_across_the_lunch_break_over_http(site: Site) -> None:
    wed = _past_wednesday()
    am = range(_vn(wed, 7, 0), _vn(wed, 11, 0) + 1, MIN)
    pm = range(_vn(wed, 14, 30), _vn(wed, 17, 0) + 1, MIN)
    site.send("kiosk-1", [(t, 1.0) for t in [*am, *pm]], RecordKind.HEARTBEAT)
    rows = site.alerts(rule="device.down")
    closed = [r for r in rows if r["end"] is not None]
    opened = [r for r in rows if r["end"] is None]
    (a,) = closed
    # 11:00-11:30 and 13:30-14:30 are service time: 90 min (the lunch break is not).
    assert (a["start"], a["end"], a["peak"]) == (_vn(wed, 11, 0), _vn(wed, 14, 30), 90.0)
    assert a["message_vi"] == "Ki-ốt kiosk-1 ngừng hoạt động 90 phút trong giờ phục vụ"
    # Silent since Wednesday 17:00 and still, but this server started seconds ago: the
    # silence counts from when it began listening, so nothing is open yet (10 minutes of
    # service time must pass first).
    assert opened == []
