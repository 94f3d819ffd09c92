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
