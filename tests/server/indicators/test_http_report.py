"""The monthly report card end to end: data posted over real HTTP into a running server,
the card read back through the API in every format and through ``hamlet server report``.

Scenario (commune dinh-mon, hamlet dinh-phuoc), every expected value worked out by hand:
- kiosk-1 heartbeats every minute 06:45–17:30 on Tue 11 Feb 2025 (all 480 service minutes)
  and on Tue 11 Mar 2025 except a 90-minute outage 10:45–12:15 across the lunch break
  (44 service minutes down, see test_golden_store); kiosk-2 is registered, sends nothing.
- Service days: February 2025 has 20 weekdays (1 Feb, a Saturday, is a Tết day anyway);
  March 2025 has 21 weekdays and no holiday.
- sal-1 (60 s interval) reports all of 11 Mar except the 3 minutes of a reboot at 10:00.
- 10 dossiers (7 online or assisted) and 7 ratings (5 satisfied) on 11 Mar.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hamlet.contract import RecordKind
from tests.conftest import require_tool
from tests.server.helpers import post
from tests.server.indicators.scenario import (
    HOUR,
    MIN,
    Seqs,
    batch,
    chunked,
    event,
    every,
    series,
    vn,
)
from tests.support.procs import ServerProcess, run_hamlet

COMMUNE = "dinh-mon"
HAMLET = "dinh-phuoc"
GW = "gw-dp"
FEB_SERVICE = 20 * 480
MAR_SERVICE = 21 * 480


def _admin(srv: ServerProcess, *args: str) -> str:
    return run_hamlet("server", *args, "--data-dir", str(srv.data_dir))


def _kiosk_day(seqs: Seqs, y: int, m: int, d: int, *, outage: bool) -> list[int]:
    beats = every(vn(y, m, d, 6, 45, 30), vn(y, m, d, 17, 30), MIN)
    if outage:
        beats = [t for t in beats if not vn(y, m, d, 10, 45) <= t < vn(y, m, d, 12, 15)]
    return beats


@pytest.fixture
def loaded(server: ServerProcess) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    _admin(server, "add-hamlet", HAMLET, "--commune", COMMUNE)
    token = server.add_gateway(GW, HAMLET)
    _admin(server, "add-device", "kiosk-1", "--hamlet", HAMLET, "--kind", "kiosk")
    _admin(server, "add-device", "kiosk-2", "--hamlet", HAMLET, "--kind", "kiosk")
    _admin(
        server, "add-device", "sal-1", "--hamlet", HAMLET, "--crop", "durian",
        "--expected-interval", "60",
    )  # fmt: skip
    seqs = Seqs()
    blocks = [
        series(seqs, "kiosk-1", "uptime", _kiosk_day(seqs, 2025, 2, 11, outage=False),
               kind=RecordKind.HEARTBEAT),
        series(seqs, "kiosk-1", "uptime", _kiosk_day(seqs, 2025, 3, 11, outage=True),
               kind=RecordKind.HEARTBEAT),
    ]  # fmt: skip
    sal = [
        t
        for t in every(vn(2025, 3, 11), vn(2025, 3, 12), MIN)
        if not vn(2025, 3, 11, 10) <= t < vn(2025, 3, 11, 10, 3)
    ]
    blocks.append(series(seqs, "sal-1", "salinity", sal, [0.3] * len(sal)))
    t0 = vn(2025, 3, 11, 8)
    evs = [
        event(seqs, "kiosk-1", "dossier_submitted", t0 + i * MIN, channel=ch, procedure="x")
        for i, ch in enumerate(["online"] * 4 + ["assisted"] * 3 + ["in_person"] * 3)
    ]
    evs += [
        event(seqs, "kiosk-1", "rating", t0 + HOUR + i * MIN, scale=sc, score=s)
        for i, (sc, s) in enumerate([(3, 3), (3, 3), (3, 2), (3, 1), (5, 5), (5, 4), (5, 3)])
    ]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for b in blocks:
            for part in chunked(b, 1000):
                r = post(client, token, batch(GW, [part]))
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == len(part.seq)
        r = post(client, token, batch(GW, events=evs))
        assert r.status_code == 200, r.text
        yield server, client


def _rows(card: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["indicator"]: r for r in card["rows"]}


def test_report_card_json_over_http(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = loaded
    r = client.get(f"/api/v1/communes/{COMMUNE}/report", params={"month": "2025-03"})
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["month"] == "2025-03"
    assert card["hamlets"] == [HAMLET]
    rows = _rows(card)
    k = rows["kiosk_availability"]
    assert k["value"] == pytest.approx(436 / (2 * MAR_SERVICE))
    assert k["previous"] == pytest.approx(480 / (2 * FEB_SERVICE))
    assert k["change"] == pytest.approx(436 / (2 * MAR_SERVICE) - 480 / (2 * FEB_SERVICE))
    assert k["target"] == 0.95
    assert k["met"] is False
    assert k["coverage"]["basis"] == 2 * MAR_SERVICE
    assert k["coverage"]["devices_expected"] == 2
    assert k["coverage"]["missing"] == [f"{HAMLET}/kiosk-2"]  # down, never absent
    c = rows["sensor_completeness"]
    assert c["value"] == pytest.approx((1440 - 3) / (31 * 1440))
    assert c["coverage"]["missing"] == []
    assert rows["dossiers_online"]["value"] == pytest.approx(0.7)
    assert rows["dossiers_online"]["met"] is True  # >= 60% (Plan 113)
    assert rows["satisfaction"]["value"] == pytest.approx(5 / 7)
    assert rows["satisfaction"]["met"] is False  # < 98.6%
    assert rows["dossiers_online"]["previous"] is None  # no dossiers in February
    assert rows["salinity_hours_above"]["value"] == 0  # 0.3‰ < durian's 0.5‰


def test_report_card_formats(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    from openpyxl import load_workbook

    _, client = loaded
    base = f"/api/v1/communes/{COMMUNE}/report"
    r = client.get(base, params={"month": "2025-03", "format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 16
    kiosk = next(x for x in rows if x["indicator"] == "kiosk_availability")
    assert float(kiosk["value"]) == pytest.approx(436 / (2 * MAR_SERVICE))
    assert kiosk["met"] == "no"
    assert kiosk["missing_devices"] == f"{HAMLET}/kiosk-2"

    r = client.get(base, params={"month": "2025-03", "format": "xlsx"})
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb["2025-03"]
    header = [c.value for c in ws[5]]
    assert header[0] == "indicator"
    found = {ws.cell(row=i, column=1).value: ws.cell(row=i, column=5).value for i in range(6, 22)}
    assert found["dossiers_online"] == pytest.approx(0.7)
    assert [c.value for c in wb["Thiếu dữ liệu - Missing"][2]] == [
        "kiosk_availability",
        f"{HAMLET}/kiosk-2",
    ]

    r = client.get(base, params={"month": "2025-03", "format": "html"})
    assert r.status_code == 200
    assert "size: A4" in r.text
    assert "Báo cáo chỉ số tháng 2025-03" in r.text
    assert "Monthly indicator report 2025-03" in r.text
    assert "70.0%" in r.text  # dossiers online, formatted for people

    bad = client.get(base, params={"month": "2025-13"})
    assert bad.status_code == 422
    assert "no such month" in bad.text


def test_cli_report_matches_the_api(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    srv, client = loaded
    out = run_hamlet(
        "server", "report", "--commune", COMMUNE, "--month", "2025-03", "--format", "json",
        "--data-dir", str(srv.data_dir),
    )  # fmt: skip
    cli = _rows(json.loads(out))
    api = _rows(client.get(f"/api/v1/communes/{COMMUNE}/report?month=2025-03").json())
    for key, row in api.items():
        assert cli[key]["value"] == row["value"], key
        assert cli[key]["coverage"] == row["coverage"], key
    table = run_hamlet(
        "server", "report", "--commune", COMMUNE, "--month", "2025-03",
        "--data-dir", str(srv.data_dir),
    )  # fmt: skip
    assert "Kiosk availability" in table
    assert "71.4%" in table  # satisfaction 5 / 7
    assert "2.2%" in table  # kiosks: 436 of 2 x 21 x 480 service minutes


def test_iso_times_and_csv_exports(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = loaded
    # A bare end date means the end of that day (Vietnam time): all 17 events of 11 March.
    r = client.get(
        f"/api/v1/hamlets/{HAMLET}/events.csv", params={"start": "2025-03-11", "end": "2025-03-11"}
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 17
    assert rows[0]["time_vn"] == "2025-03-11T08:00:00+07:00"
    assert rows[0]["t_ms"] == str(vn(2025, 3, 11, 8))
    # The sensor rebooted at 10:00 and was silent for 3 minutes: 10:03..10:09 remain.
    r = client.get(
        f"/api/v1/hamlets/{HAMLET}/readings.csv",
        params={"device": "sal-1", "metric": "salinity", "start": "2025-03-11T10:00",
                "end": "2025-03-11T03:10Z"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    got = [x["time_vn"] for x in csv.DictReader(io.StringIO(r.text))]
    assert got == [f"2025-03-11T10:{m:02d}:00+07:00" for m in range(3, 10)]
    # The JSON series takes the same ISO times, and still takes epoch milliseconds.
    iso = client.get(
        f"/api/v1/hamlets/{HAMLET}/series",
        params={"device": "sal-1", "metric": "salinity", "start": "2025-03-11T10:00",
                "end": "2025-03-11T10:10", "resolution": "raw"},
    )  # fmt: skip
    ms = client.get(
        f"/api/v1/hamlets/{HAMLET}/series",
        params={"device": "sal-1", "metric": "salinity", "start": vn(2025, 3, 11, 10),
                "end": vn(2025, 3, 11, 10, 10), "resolution": "raw"},
    )  # fmt: skip
    assert iso.status_code == ms.status_code == 200
    assert len(iso.json()["points"]) == 7
    assert iso.json()["points"] == ms.json()["points"]
    bad = client.get(f"/api/v1/hamlets/{HAMLET}/events", params={"start": "11/03/2025"})
    assert bad.status_code == 422
    assert "ISO 8601" in bad.text


def test_indicators_per_device_and_day(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    _, client = loaded
    r = client.get(
        "/api/v1/indicators",
        params={"hamlet": HAMLET, "day": "2025-03-11", "level": "device"},
    )
    assert r.status_code == 200, r.text
    got = {(v["indicator"], v["device"]): v["value"] for v in r.json()}
    met = {(v["indicator"], v["device"]): (v["target"], v["met"]) for v in r.json()}
    assert met[("kiosk_availability", "kiosk-1")] == (0.95, False)
    assert met[("sensor_completeness", "sal-1")] == (0.95, True)
    assert got[("kiosk_availability", "kiosk-1")] == pytest.approx(436 / 480)
    assert got[("kiosk_availability", "kiosk-2")] == 0.0
    assert got[("sensor_completeness", "sal-1")] == pytest.approx(1437 / 1440)


def test_report_needs_the_whole_commune(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    srv, client = loaded
    _admin(srv, "add-hamlet", "other-hamlet", "--commune", "other")
    _admin(srv, "add-user", "staff-other", "--role", "staff", "--commune", "other", "--no-password")
    _admin(srv, "add-user", "staff-dm", "--role", "staff", "--commune", COMMUNE, "--no-password")
    tok = {
        u: json.loads(_admin(srv, "create-token", u, "--json"))["token"]
        for u in ("staff-other", "staff-dm")
    }
    url = f"/api/v1/communes/{COMMUNE}/report?month=2025-03"
    other = client.get(url, headers={"Authorization": f"Bearer {tok['staff-other']}"})
    assert other.status_code == 403
    own = client.get(url, headers={"Authorization": f"Bearer {tok['staff-dm']}"})
    assert own.status_code == 200
    assert client.get("/api/v1/communes/nowhere/report").status_code == 404


@pytest.mark.browser
def test_html_card_prints_on_a4_in_a_real_browser(
    loaded: tuple[ServerProcess, httpx.Client], tmp_path: Path
) -> None:
    chromium = require_tool("chromium")
    srv, _ = loaded
    pdf = tmp_path / "card.pdf"
    res = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
         f"--print-to-pdf={pdf}",
         f"{srv.url}/api/v1/communes/{COMMUNE}/report?month=2025-03&format=html"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
    assert boxes, "no page in the PDF"
    for w, h in boxes:  # A4 is 210 x 297 mm = 595 x 842 pt
        assert abs(float(w) - 595) < 2
        assert abs(float(h) - 842) < 2
    assert len(boxes) <= 2  # sixteen indicators fit on a page or two


def test_cli_report_errors_tell_what_to_do(loaded: tuple[ServerProcess, httpx.Client]) -> None:
    from tests.support.procs import HAMLET

    srv, _ = loaded

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HAMLET, "server", "report", *args, "--data-dir", str(srv.data_dir)],
            capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    res = run("--commune", "nowhere", "--month", "2025-03")
    assert res.returncode == 2
    assert "no commune 'nowhere'" in res.stderr
    assert "add-hamlet" in res.stderr
    res = run("--commune", COMMUNE, "--month", "March")
    assert res.returncode == 2
    assert "YYYY-MM" in res.stderr
    res = run("--commune", COMMUNE, "--format", "pdf")
    assert res.returncode == 2
    assert "table, json, csv, xlsx, html" in res.stderr or "--format must be one of" in res.stderr
    out = srv.data_dir / "card.xlsx"
    res = run("--commune", COMMUNE, "--month", "2025-03", "--format", "xlsx", "--output", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:2] == b"PK"  # a zip: an Office Open XML workbook
