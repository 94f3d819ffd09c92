"""`hamlet demo --scenario NAME` replays a scenario so that its moment of interest is now:
a newcomer opens the page and sees the danger, the flood or the kiosk outage at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hamlet.demo import replay_scenario
from tests.support.procs import start_server

pytestmark = pytest.mark.timeout(300)


def _page(url: str, hamlet: str) -> str:
    r = httpx.get(f"{url}/h/{hamlet}", params={"lang": "vi"}, timeout=30)
    r.raise_for_status()
    return r.text


def test_kiosk_outage_is_current(tmp_path: Path) -> None:
    with start_server(tmp_path / "server") as srv:
        replay = asyncio.run(replay_scenario(srv.url, srv.data_dir, "kiosk-outage"))
        assert replay.records > 0
        assert "dinh-mon" in replay.hamlets
        page = _page(srv.url, "dinh-mon")
        row = page[page.index('data-device="kiosk-onestop"') :].split("</tr>")[0]
        assert "Mất liên lạc" in row  # the power cut is happening "now"


def test_salinity_and_flood_show_danger(tmp_path: Path) -> None:
    with start_server(tmp_path / "server") as srv:
        asyncio.run(replay_scenario(srv.url, srv.data_dir, "dry-season-salinity"))
        estuary = _page(srv.url, "vam-ray")
        assert 'class="badge danger"' in estuary
        assert "Độ mặn" in estuary
        asyncio.run(replay_scenario(srv.url, srv.data_dir, "october-flood"))
        river = _page(srv.url, "can-tho")
        assert 'data-metric="water_level"' in river
        assert "vượt báo động II" in river  # over alarm level II: danger advice


def test_demo_scenario_sends_the_farmer_an_sms_through_the_simulated_modem() -> None:
    """`hamlet demo --scenario dry-season-salinity`: the server's SMS channel uses the
    simulated modem on a pty; the salinity danger reaches the demo farmer's phone, the demo
    prints it, and what the modem sent matches the server's delivery log message by message."""
    import json
    import re
    import shutil

    from hamlet.demo import DEMO_PHONE
    from server.notify.store import NotifyStore
    from tests.support.procs import run_hamlet

    out = run_hamlet(
        "demo", "--scenario", "dry-season-salinity", "--port", "0", "--minutes", "0.05",
        env={"COLUMNS": "400"}, timeout=240,
    )  # fmt: skip
    run_dir = Path(re.search(r"files in (\S+)", out).group(1))  # type: ignore[union-attr]
    shown = re.search(r"SMS sent / đã gửi SMS to (\S+): (.*?)  \(delivery log", out)
    assert shown is not None, out
    assert shown.group(1) == DEMO_PHONE
    records = [
        json.loads(line)
        for line in (run_dir / "logs" / "sms-sent.jsonl").read_text("utf-8").splitlines()
    ]
    store = NotifyStore(run_dir / "server" / "notify.sqlite3")
    try:
        sent = [r for r in store.deliveries() if r["channel"] == "sms" and r["status"] == "sent"]
    finally:
        store.close()
        shutil.rmtree(run_dir)
    assert records
    assert [r["number"] for r in records] == [DEMO_PHONE] * len(records)
    assert records[0]["text"] == shown.group(2)
    # One SMS per outbox row, or one digest ("N cảnh báo: …") for N rows: nothing twice.
    per_record = [
        int(m.group(1)) if (m := re.match(r"(\d+) cảnh báo: ", r["text"])) else 1 for r in records
    ]
    assert sum(per_record) == len(sent)
    singles = sorted(r["text"] for r, n in zip(records, per_record, strict=True) if n == 1)
    assert all(t in [str(row["text"]) for row in sent] for t in singles)
    assert any(str(row["alert_id"]).startswith("salinity.danger:") for row in sent)
    assert any("Độ mặn" in r["text"] for r in records)
